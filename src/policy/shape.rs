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
//! control characters. pgward keeps `standard_conforming_strings` on, which
//! this relies on. A classification that read a literal's value (a SET, a
//! `set_config`, EXPLAIN option values) is never shared by shape.

// Blanked strings and numbers become these. Control characters never
// appear outside literals in a text that has a shape (the scanner gives
// up), so they cannot collide with anything else.
/// Identifier bytes: multibyte UTF-8 characters (all bytes >= 0x80) count
/// as letters, as in PostgreSQL's lexer.
fn ident_start(x: u8) -> bool {
    x.is_ascii_alphabetic() || x == b'_' || x >= 0x80
}

fn ident_cont(x: u8) -> bool {
    ident_start(x) || x.is_ascii_digit() || x == b'$'
}

/// The shape of `sql`, or None when the scanner is not certain (or there
/// is no literal to blank).
pub fn shape(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    // Text before `copied` is in `out`; literals are replaced as found.
    let mut copied = 0;
    let mut i = 0;
    let blank = |out: &mut String, copied: &mut usize, from: usize, to: usize, mark: &str| {
        out.push_str(&sql[*copied..from]);
        out.push_str(mark);
        *copied = to;
    };
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&x| x == b'\n' || x == b'\r')
                    .map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Comments nest in PostgreSQL.
                let mut depth = 0usize;
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
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                // A standard string: '' is the only escape.
                let end = quoted_end(b, i, b'\'')?;
                blank(&mut out, &mut copied, i, end, STRING_SHAPE);
                i = end;
            }
            b'"' => i = quoted_end(b, i, b'"')?,
            b'$' => {
                // $1 is a parameter; anything else may be dollar quoting.
                let digits = b[i + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
                if digits == 0 || b.get(i + 1 + digits).is_some_and(|&x| ident_cont(x)) {
                    return None;
                }
                i += 1 + digits;
            }
            b'0'..=b'9' => {
                let mut j = i + b[i..].iter().take_while(|x| x.is_ascii_digit()).count();
                if b.get(j) == Some(&b'.') {
                    if b.get(j + 1) == Some(&b'.') {
                        return None;
                    }
                    j += 1;
                    j += b[j..].iter().take_while(|x| x.is_ascii_digit()).count();
                }
                if matches!(b.get(j), Some(b'e' | b'E')) {
                    let mut k = j + 1;
                    if matches!(b.get(k), Some(b'+' | b'-')) {
                        k += 1;
                    }
                    let exp = b[k..].iter().take_while(|x| x.is_ascii_digit()).count();
                    if exp == 0 {
                        return None;
                    }
                    j = k + exp;
                }
                // 0x1F, 1_000, 123abc, 1.2.3: not plain numbers.
                if b.get(j).is_some_and(|&x| ident_cont(x) || x == b'.') {
                    return None;
                }
                blank(&mut out, &mut copied, i, j, NUMBER_SHAPE);
                i = j;
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => return None,
            x if x < 0x20 || x == 0x7f => return None,
            x if ident_start(x) => {
                let len = b[i..].iter().take_while(|&&y| ident_cont(y)).count();
                let next = b.get(i + len).copied();
                // E'..', B'..', X'..', N'..', U&'..', U&"..", UESCAPE.
                if matches!(next, Some(b'\'' | b'"' | b'&'))
                    || sql[i..i + len].eq_ignore_ascii_case("uescape")
                {
                    return None;
                }
                i += len;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        // Nothing blanked: the exact text is the key.
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
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
