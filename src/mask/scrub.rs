//! Scrubbing errors and notices that can echo column values
//! (`Key (email)=(a@b.c) already exists`, `Failing row contains (...)`,
//! `invalid input syntax for type integer: "078-05-1120"`), for a statement
//! that read a table with masked columns. Fail closed: every quoted text
//! and every echoed key or row is replaced, names included.

/// The ErrorResponse/NoticeResponse field codes scrubbed: message, detail,
/// hint, context, internal query. Others (severity, code, position,
/// schema/table/column/constraint names, file, line, routine) pass.
pub const SCRUBBED_FIELDS: &[u8] = b"MDHWq";

const HIDDEN: &str = "***";

/// Scrubs the fields of an ErrorResponse or NoticeResponse in place:
/// (field code, text).
pub fn scrub_fields(fields: &mut [(u8, String)]) {
    for (code, text) in fields.iter_mut() {
        if !SCRUBBED_FIELDS.contains(code) {
            continue;
        }
        *text = match code {
            b'W' | b'q' => "(hidden by pgward: the statement read masked columns)".to_owned(),
            _ => scrub_text(text),
        };
    }
}

/// One text with every echoed value replaced by `***`.
pub fn scrub_text(text: &str) -> String {
    let mut s = text.to_owned();
    // `Key (cols)=(values) ...`: values end at the matching parenthesis,
    // but a value may hold parentheses: drop everything after the first.
    if let Some(at) = s.find(")=(") {
        s.truncate(at + 3);
        s.push_str(HIDDEN);
        s.push_str(") (values hidden by pgward)");
    }
    if let Some(at) = s.find("row contains (") {
        s.truncate(at + "row contains (".len());
        s.push_str(HIDDEN);
        s.push_str(") (values hidden by pgward)");
    }
    if let Some(at) = s.find("JSON data, line ") {
        s.truncate(at);
        s.push_str("JSON data: *** (hidden by pgward)");
    }
    scrub_quoted(&s)
}

/// Replaces the inside of every double-quoted segment with `***` (an
/// unterminated quote hides the rest).
fn scrub_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find('"') {
            Some(close) => {
                out.push_str(HIDDEN);
                out.push('"');
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(HIDDEN);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_are_hidden() {
        let secret = "078-05-1120";
        let cases = [
            format!("Key (ssn)=({secret}) already exists."),
            format!("Key (a, b)=(1, {secret}) conflicts with existing key (a, b)=(1, x)."),
            format!("Failing row contains (1, alice, {secret}, (x))."),
            format!("invalid input syntax for type integer: \"{secret}\""),
            format!("value \"{secret}\" is out of range for type integer"),
            format!("JSON data, line 1: {secret}"),
            format!("Token \"{secret}"),
        ];
        for c in &cases {
            let s = scrub_text(c);
            assert!(!s.contains(secret), "{c} -> {s}");
            assert!(s.contains(HIDDEN), "{s}");
        }
        assert_eq!(
            scrub_text("Key (email)=(a@b.c) already exists."),
            "Key (email)=(***) (values hidden by pgward)"
        );
        assert_eq!(scrub_text("division by zero"), "division by zero");
    }

    #[test]
    fn fields_are_scrubbed_by_code() {
        let mut f = vec![
            (b'S', "ERROR".to_owned()),
            (b'C', "23505".to_owned()),
            (
                b'M',
                "duplicate key value violates unique constraint \"u\"".to_owned(),
            ),
            (
                b'D',
                "Key (email)=(bob@example.com) already exists.".to_owned(),
            ),
            (
                b'W',
                "SQL function \"f\" statement 1: bob@example.com".to_owned(),
            ),
            (b'n', "u".to_owned()),
        ];
        scrub_fields(&mut f);
        let all: String = f.iter().map(|(_, t)| t.as_str()).collect();
        assert!(!all.contains("bob@example.com"), "{all}");
        assert_eq!(f[0].1, "ERROR");
        assert_eq!(f[1].1, "23505");
        assert_eq!(f[5].1, "u");
    }
}
