//! The shape of a statement: its text with the contents of plain string and
//! number literals blanked out, so `WHERE aid = 48213` and `WHERE aid = 7`
//! share one classification without parsing each.
//!
//! Two texts with the same shape differ only in literal values, so they
//! parse to the same tree up to constants. That holds only if literals are
//! found exactly where PostgreSQL's lexer finds them, so this scanner knows
//! the lexer's rules for what it handles (standard strings with `''`,
//! numbers, quoted identifiers, nested comments, `$n` parameters) and gives
//! up, returning None, on everything else: escape strings (`E'..'`), bit
//! strings, Unicode escapes and `UESCAPE`, dollar quoting, unusual numbers,
//! control characters. It reads `'...'` strings as the session's
//! `standard_conforming_strings` has them read: on, `''` is the only escape;
//! off, a backslash also escapes the character after it (`'\''` is one
//! string). A classification that read a literal's value (a SET, a
//! `set_config`, EXPLAIN option values) is never shared by shape.

// Blanked strings and numbers become STRING_SHAPE and NUMBER_SHAPE
// (below). Control characters never appear outside literals in a text
// that has a shape (the scanner gives up), so they cannot collide with
// anything else.

/// What a byte can start, for the scanner's dispatch: one table look-up
/// per token instead of a chain of comparisons per byte.
#[derive(Clone, Copy)]
enum Start {
    /// Whitespace and operator or punctuation characters with no special
    /// meaning here.
    Plain,
    /// A letter, `_` or any byte of a multibyte UTF-8 character (they all
    /// count as letters, as in PostgreSQL's lexer).
    Ident,
    Digit,
    Quote,
    DoubleQuote,
    Dollar,
    Dash,
    Slash,
    Dot,
    /// A control character: the scanner gives up.
    Control,
}

const fn start_of(x: u8) -> Start {
    match x {
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => Start::Plain,
        0..=0x1f | 0x7f => Start::Control,
        b'a'..=b'z' | b'A'..=b'Z' | b'_' | 0x80..=0xff => Start::Ident,
        b'0'..=b'9' => Start::Digit,
        b'\'' => Start::Quote,
        b'"' => Start::DoubleQuote,
        b'$' => Start::Dollar,
        b'-' => Start::Dash,
        b'/' => Start::Slash,
        b'.' => Start::Dot,
        _ => Start::Plain,
    }
}

static START: [Start; 256] = {
    let mut t = [Start::Plain; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = start_of(i as u8);
        i += 1;
    }
    t
};

/// Bytes that continue an identifier: letters, digits, `_`, `$`.
static IDENT_CONT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = matches!(start_of(i as u8), Start::Ident | Start::Digit) || i as u8 == b'$';
        i += 1;
    }
    t
};

fn ident_cont(x: u8) -> bool {
    IDENT_CONT[x as usize]
}

/// The number of ASCII digits at the start of `b`.
fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|x| x.is_ascii_digit()).count()
}

/// The shape of `sql`, or None when the scanner is not certain (or there
/// is no literal to blank).
pub fn shape(sql: &str) -> Option<String> {
    shape_with(sql, false)
}

/// The shape of `sql` as a session with `standard_conforming_strings` off
/// (`escapes` true) or on reads it.
pub fn shape_with(sql: &str, escapes: bool) -> Option<String> {
    let mut out = String::new();
    shape_into_with(sql, &mut out, escapes).then_some(out)
}

/// `shape` into a buffer the caller keeps (cleared first), so a cache hit
/// allocates nothing; false where `shape` gives None.
pub fn shape_into(sql: &str, out: &mut String) -> bool {
    shape_into_with(sql, out, false)
}

/// `shape_with` into a buffer the caller keeps.
pub fn shape_into_with(sql: &str, out: &mut String, escapes: bool) -> bool {
    out.clear();
    out.reserve(sql.len());
    shape_to(sql, out, escapes).is_some()
}

fn shape_to(sql: &str, out: &mut String, escapes: bool) -> Option<()> {
    let b = sql.as_bytes();
    // Text before `copied` is in `out`; literals are replaced as found.
    let mut copied = 0;
    let mut i = 0;
    let blank = |out: &mut String, copied: &mut usize, from: usize, to: usize, mark: &str| {
        out.push_str(&sql[*copied..from]);
        out.push_str(mark);
        *copied = to;
    };
    while i < b.len() {
        match START[b[i] as usize] {
            Start::Plain => i += 1,
            Start::Ident => {
                let start = i;
                i += 1;
                while i < b.len() && ident_cont(b[i]) {
                    i += 1;
                }
                // E'..', B'..', X'..', N'..', U&'..', U&"..", UESCAPE.
                if matches!(b.get(i), Some(b'\'' | b'"' | b'&'))
                    || (i - start == 7 && sql[start..i].eq_ignore_ascii_case("uescape"))
                {
                    return None;
                }
            }
            Start::Dash => {
                if b.get(i + 1) == Some(&b'-') {
                    i = b[i..]
                        .iter()
                        .position(|&x| x == b'\n' || x == b'\r')
                        .map_or(b.len(), |p| i + p);
                } else {
                    i += 1;
                }
            }
            Start::Slash => {
                if b.get(i + 1) == Some(&b'*') {
                    i = comment_end(b, i)?;
                } else {
                    i += 1;
                }
            }
            Start::Quote => {
                // A standard string: '' is the only escape; with
                // standard_conforming_strings off, \ is one too.
                let end = if escapes {
                    escaped_end(b, i)?
                } else {
                    quoted_end(b, i, b'\'')?
                };
                blank(out, &mut copied, i, end, STRING_SHAPE);
                i = end;
            }
            Start::DoubleQuote => i = quoted_end(b, i, b'"')?,
            Start::Dollar => {
                // $1 is a parameter; anything else may be dollar quoting.
                let n = digits(&b[i + 1..]);
                if n == 0 || b.get(i + 1 + n).is_some_and(|&x| ident_cont(x)) {
                    return None;
                }
                i += 1 + n;
            }
            Start::Digit => {
                let end = number_end(b, i)?;
                blank(out, &mut copied, i, end, NUMBER_SHAPE);
                i = end;
            }
            Start::Dot => {
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                i += 1;
            }
            Start::Control => return None,
        }
    }
    if copied == 0 {
        // Nothing blanked: the exact text is the key.
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(())
}

/// The end of the comment opening at `start` (comments nest in
/// PostgreSQL); None when it is not closed.
fn comment_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        if i + 1 >= b.len() {
            return None;
        }
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
}

/// The end of the plain number starting at `start`; None for anything
/// else that starts with a digit (0x1F, 1_000, 123abc, 1..2, 1e).
fn number_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start + digits(&b[start..]);
    if b.get(j) == Some(&b'.') {
        if b.get(j + 1) == Some(&b'.') {
            return None;
        }
        j += 1;
        j += digits(&b[j..]);
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let exp = digits(&b[k..]);
        if exp == 0 {
            return None;
        }
        j = k + exp;
    }
    if b.get(j).is_some_and(|&x| ident_cont(x) || x == b'.') {
        return None;
    }
    Some(j)
}

/// The end (one past the closing quote) of the token that opens with the
/// quote at `start`, where a doubled quote stands for itself; None when it
/// is not closed.
fn quoted_end(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut j = start + 1;
    loop {
        match b.get(j) {
            None => return None,
            Some(&c) if c == quote && b.get(j + 1) == Some(&quote) => j += 2,
            Some(&c) if c == quote => return Some(j + 1),
            Some(_) => j += 1,
        }
    }
}

/// The end of the string opening at `start` where a backslash escapes
/// the byte after it, as in PostgreSQL's lexer for strings with escapes
/// (every escape is a backslash and at least one more character); None
/// when it is not closed.
fn escaped_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        match b.get(j) {
            None => return None,
            Some(b'\\') => j += 2,
            Some(b'\'') if b.get(j + 1) == Some(&b'\'') => j += 2,
            Some(b'\'') => return Some(j + 1),
            Some(_) => j += 1,
        }
    }
}

const STRING_SHAPE: &str = "'\u{1}'";
const NUMBER_SHAPE: &str = "\u{2}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_blanked() {
        let a = shape("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;").unwrap();
        let b = shape("SELECT abalance FROM pgbench_accounts WHERE aid = 7;").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            shape("select 'it''s', 1.5e-3, 2 -- note 'x'\n").unwrap(),
            "select '\u{1}', \u{2}, \u{2} -- note 'x'\n"
        );
        assert_ne!(shape("SELECT '1'"), shape("SELECT 1"));
        assert_ne!(shape("SELECT 1 FROM t"), shape("SELECT 1 FROM u"));
        assert_eq!(
            shape("SELECT \"a'b\", $1, 3 /* /* 'x' */ */").unwrap(),
            "SELECT \"a'b\", $1, \u{2} /* /* 'x' */ */"
        );
    }

    #[test]
    fn anything_uncertain_gives_up() {
        for sql in [
            "SELECT E'\\''",
            "SELECT e'x'",
            "SELECT B'101'",
            "SELECT X'1F'",
            "SELECT N'x'",
            "SELECT U&'\\0061'",
            "SELECT U&\"a!0061\" UESCAPE '!'",
            "SELECT $$x$$",
            "SELECT $tag$x$tag$",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT 1..2",
            "SELECT .5",
            "SELECT 1e",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT 1 /* unterminated",
            "SELECT \u{1}",
            "SELECT 123abc",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
        assert_eq!(
            shape("SELECT a FROM t"),
            None,
            "no literal: nothing to share"
        );
    }

    #[test]
    fn a_reused_buffer_gives_the_same_shape() {
        let mut buf = String::from("left over from a longer statement");
        for sql in [
            "SELECT 1",
            "SELECT 'a', 2 FROM t",
            "SELECT a FROM t",
            "SELECT E'x'",
        ] {
            let found = shape_into(sql, &mut buf);
            assert_eq!(found.then(|| buf.clone()), shape(sql), "{sql}");
        }
    }

    /// `pg_query::scan` as a session with `standard_conforming_strings`
    /// off (`escapes`) or on reads: libpg_query's scanner reads the lexer
    /// settings the last parse left, and a failed parse leaves its own.
    fn scan_with(sql: &str, escapes: bool) -> pg_query::Result<pg_query::protobuf::ScanResult> {
        if escapes {
            let off = pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS;
            assert!(pg_query::parse("(", off).is_err());
        }
        let scanned = pg_query::scan(sql);
        if escapes {
            let _ = pg_query::parse("", 0);
        }
        scanned
    }

    #[test]
    fn the_scan_helper_reads_with_escapes() {
        assert_eq!(scan_with("SELECT 'a\\'b'", true).unwrap().tokens.len(), 2);
        assert!(scan_with("SELECT 'a\\'b'", false).is_err());
        assert_eq!(scan_with("SELECT 'a\\'", false).unwrap().tokens.len(), 2);
    }

    /// Random texts from lexically tricky pieces: wherever the scanner
    /// gives a shape, PostgreSQL's own lexer must see the same tokens in
    /// the text and in its shape, apart from the literals blanked.
    #[test]
    fn shapes_agree_with_postgres_lexer_on_random_texts() {
        agree_on_random_texts(false);
    }

    /// The same, for sessions with standard_conforming_strings off.
    #[test]
    fn shapes_agree_with_postgres_lexer_without_standard_strings() {
        agree_on_random_texts(true);
    }

    fn agree_on_random_texts(escapes: bool) {
        use pg_query::protobuf::Token;
        const PIECES: &[&str] = &[
            "a", "E", "e", "x", "U", "&", "'", "''", "\"", "$", "$1", "1", "0", "9", ".", "-",
            "--", "/", "*", "/*", "*/", " ", "\n", "\t", "é", "_", "uescape", "+", "(", ")", ",",
            "select ", "b", "N", "1.5", "2e3", "$$", "\r", ";", "=", "<", "::", "[", "\\", "\\'",
            "\\\\",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(escapes);
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for _ in 0..40_000 {
            let len = 1 + next() % 12;
            let sql: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            let Some(shaped) = shape_with(&sql, escapes) else {
                continue;
            };
            let Ok(original) = scan_with(&sql, escapes) else {
                continue;
            };
            let blanked = scan_with(&shaped, escapes).expect("a shape lexes");
            assert_eq!(
                original.tokens.len(),
                blanked.tokens.len(),
                "{sql:?} vs {shaped:?}"
            );
            for (a, b) in original.tokens.iter().zip(&blanked.tokens) {
                let literal = [Token::Iconst, Token::Fconst, Token::Sconst]
                    .iter()
                    .any(|t| *t as i32 == a.token);
                assert!(literal || a.token == b.token, "{sql:?} vs {shaped:?}");
                if !literal {
                    assert_eq!(
                        &sql[a.start as usize..a.end as usize],
                        &shaped[b.start as usize..b.end as usize]
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 1000, "only {checked} texts had a shape");
    }

    /// With standard_conforming_strings off, `'a\'; DELETE FROM t; --'` is
    /// one string; on, it is a string and a DELETE. Never one shape.
    #[test]
    fn escapes_change_where_strings_end() {
        let sql = "SELECT 'a\\'; DELETE FROM t; --'";
        assert_eq!(shape_with(sql, true).unwrap(), "SELECT '\u{1}'");
        assert_eq!(
            shape_with(sql, false).unwrap(),
            "SELECT '\u{1}'; DELETE FROM t; --'"
        );
        let two = "SELECT 'a\\\\'; DELETE FROM t; --'";
        assert_eq!(
            shape_with(two, true).unwrap(),
            "SELECT '\u{1}'; DELETE FROM t; --'"
        );
        assert_eq!(shape_with("SELECT 'a\\", true), None);
    }

    #[test]
    fn shapes_parse_like_their_texts() {
        // The blanked text must still lex the same way: same token count.
        for sql in [
            "SELECT * FROM t WHERE a = 'x' AND b > 10.5 AND c = $1",
            "INSERT INTO t VALUES (1, 'a''b', 2.5e10)",
            "SELECT 'a'\n'b'",
        ] {
            let s = shape(sql).unwrap();
            let t1 = pg_query::scan(sql).unwrap().tokens.len();
            let t2 = pg_query::scan(&s).unwrap().tokens.len();
            assert_eq!(t1, t2, "{sql} vs {s:?}");
        }
    }
}
