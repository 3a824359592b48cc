//! SQL text with a Bind's parameter values in place of `$n`, so that a
//! statement whose verdict depends on its values (`set_config('jit', $1,
//! false)`, `current_setting($1::varchar)`, `query_to_xml($1, ...)`) is
//! judged with them, as the server will run it.
//!
//! A text-format value is written as a string literal: the server reads a
//! text parameter with its type's input function, as it reads a literal of
//! that type, so the two mean the same. A binary value is decoded only when
//! its type is known (declared by the Parse, or reported by the server's
//! ParameterDescription) and is one pgward can print; any other `$n` stays
//! as it is, and the statement is judged as if it had not been bound
//! (refused where a constant was needed: fail closed).

use crate::protocol::messages::BindValue;

/// The largest value written in place of its `$n`.
const MAX_VALUE: usize = 16 << 10;
/// The longest text the values may make (a Query this long is still
/// classified on the session thread).
const MAX_TEXT: usize = 32 << 10;

/// Where the `$n` placeholders are in `sql`: (byte start, byte end, n).
pub fn placeholders(sql: &str) -> Vec<(usize, usize, usize)> {
    // The scanner knows strings, comments and dollar quotes: a `$1` inside
    // them is no parameter.
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return Vec::new();
    };
    tokens
        .iter()
        .filter(|t| t.token == pg_query::protobuf::Token::Param as i32)
        .filter_map(|t| {
            let (start, end) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
            let n = sql.get(start..end)?.strip_prefix('$')?.parse().ok()?;
            Some((start, end, n))
        })
        .collect()
}

/// `sql` with every `$n` whose value can be written replaced by it (as a
/// parenthesised, cast literal). `types[i]` is parameter i+1's type OID (0:
/// not known). None when no placeholder could be replaced.
pub fn with_values(sql: &str, types: &[u32], values: &[BindValue<'_>]) -> Option<String> {
    with_values_in(sql, types, values, &|b| {
        std::str::from_utf8(b).ok().map(str::to_owned)
    })
}

/// `with_values` for a session whose text values (a text-format value, or
/// the binary form of a text type) are in another encoding: `text` reads
/// one as the server will (None: it cannot be read, and its `$n` stays).
pub fn with_values_in(
    sql: &str,
    types: &[u32],
    values: &[BindValue<'_>],
    text: &dyn Fn(&[u8]) -> Option<String>,
) -> Option<String> {
    let mut out = String::with_capacity(sql.len() + 16 * values.len());
    // What the classifier reads is bounded as a Query's text is on the
    // session thread: a larger value stays `$n` (a setting's name or value
    // is short; SQL text that long is refused as not seen).
    let mut room = MAX_TEXT.saturating_sub(sql.len());
    let mut last = 0;
    let mut replaced = false;
    for (start, end, n) in placeholders(sql) {
        let Some(value) = n.checked_sub(1).and_then(|i| values.get(i)) else {
            continue;
        };
        let ty = n
            .checked_sub(1)
            .and_then(|i| types.get(i))
            .copied()
            .unwrap_or(0);
        if value.bytes.map_or(0, <[u8]>::len) > MAX_VALUE {
            continue;
        }
        let Some(literal) = literal(value, ty, text) else {
            continue;
        };
        let Some(left) = room.checked_sub(literal.len()) else {
            continue;
        };
        room = left;
        out.push_str(&sql[last..start]);
        out.push_str(&literal);
        last = end;
        replaced = true;
    }
    if !replaced {
        return None;
    }
    out.push_str(&sql[last..]);
    Some(out)
}

/// The value as SQL: `(NULL::t)`, `(E'...'::t)`, or None when it cannot be
/// written faithfully.
fn literal(
    value: &BindValue<'_>,
    ty: u32,
    text: &dyn Fn(&[u8]) -> Option<String>,
) -> Option<String> {
    let cast = type_name(ty);
    let text = match value.bytes {
        None => {
            return Some(match cast {
                Some(t) => format!("(NULL::{t})"),
                None => "(NULL)".to_owned(),
            })
        }
        Some(bytes) if !value.binary => text(bytes)?,
        Some(bytes) => binary_text(bytes, ty, text)?,
    };
    // PostgreSQL refuses a NUL in text; an E'' literal cannot hold one.
    if text.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 24);
    out.push_str("(E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    if let Some(t) = cast {
        out.push_str("::");
        out.push_str(t);
    }
    out.push(')');
    Some(out)
}

/// A binary value as its type's text form, for the types pgward can read.
fn binary_text(b: &[u8], ty: u32, text: &dyn Fn(&[u8]) -> Option<String>) -> Option<String> {
    Some(match ty {
        // text, varchar, bpchar, name, json: the bytes are the text.
        25 | 1043 | 1042 | 19 | 114 => text(b)?,
        // jsonb: a version byte, then the text.
        3802 => text(b.strip_prefix(&[1])?)?,
        16 => match b {
            [0] => "false".to_owned(),
            [1] => "true".to_owned(),
            _ => return None,
        },
        21 => i16::from_be_bytes(b.try_into().ok()?).to_string(),
        23 => i32::from_be_bytes(b.try_into().ok()?).to_string(),
        20 => i64::from_be_bytes(b.try_into().ok()?).to_string(),
        26 => u32::from_be_bytes(b.try_into().ok()?).to_string(),
        700 => float_text(f32::from_be_bytes(b.try_into().ok()?) as f64),
        701 => float_text(f64::from_be_bytes(b.try_into().ok()?)),
        17 => crate::protocol::messages::bytea_hex(b),
        _ => return None,
    })
}

/// The longest value shown whole to an approver.
const MAX_SHOWN: usize = 200;

/// Each value as an approver is shown it, written as SQL: `NULL`, `true`
/// or `false`, a number as it is, else a quoted string (a binary value of
/// a type pgward cannot read: its bytes in hex). A long value is cut, with
/// its size in a comment. `types[i]` is parameter i+1's type (0: not known).
pub fn shown(
    types: &[u32],
    values: &[BindValue<'_>],
    text: &dyn Fn(&[u8]) -> Option<String>,
) -> Vec<String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty = types.get(i).copied().unwrap_or(0);
            let Some(bytes) = v.bytes else {
                return "NULL".to_owned();
            };
            // Only the head of a long value is read (cut where it decodes).
            let head = &bytes[..bytes.len().min(4 * MAX_SHOWN)];
            let backs = if head.len() < bytes.len() { 0..4 } else { 0..1 };
            let read = backs
                .filter_map(|back| head.len().checked_sub(back))
                .find_map(|end| match v.binary {
                    false => text(&head[..end]),
                    true => binary_text(&head[..end], ty, text),
                });
            let value = read.unwrap_or_else(|| {
                crate::protocol::messages::bytea_hex(&bytes[..bytes.len().min(MAX_SHOWN)])
            });
            if let (16, Some(b)) = (ty, bool_text(&value)) {
                return b.to_owned();
            }
            let number = matches!(ty, 20 | 21 | 23 | 26 | 700 | 701 | 1700)
                && !value.is_empty()
                && value.len() <= MAX_SHOWN
                && value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                && value.parse::<f64>().is_ok();
            if number {
                return value;
            }
            let cut = value
                .char_indices()
                .nth(MAX_SHOWN)
                .map_or(value.len(), |(at, _)| at);
            let mut out = format!("'{}", value[..cut].replace('\'', "''"));
            match cut < value.len() || head.len() < bytes.len() {
                true => out.push_str(&format!("...' /* {} bytes */", bytes.len())),
                false => out.push('\''),
            }
            out
        })
        .collect()
}

/// A boolean's text as PostgreSQL reads it (`t`, `yes`, `on`, `1`, ...).
fn bool_text(v: &str) -> Option<&'static str> {
    let v = v.trim().to_ascii_lowercase();
    let is = |word: &str| !v.is_empty() && word.starts_with(v.as_str());
    if is("true") || is("yes") || v == "on" || v == "1" {
        Some("true")
    } else if is("false") || is("no") || v == "off" || v == "of" || v == "0" {
        Some("false")
    } else {
        None
    }
}

/// `sql` with each `$n` that has a value in `shown` replaced by it.
pub fn inline(sql: &str, shown: &[String]) -> String {
    let mut out = String::with_capacity(sql.len() + shown.iter().map(String::len).sum::<usize>());
    let mut last = 0;
    for (start, end, n) in placeholders(sql) {
        if let Some(v) = n.checked_sub(1).and_then(|i| shown.get(i)) {
            out.push_str(&sql[last..start]);
            out.push_str(v);
            last = end;
        }
    }
    out.push_str(&sql[last..]);
    out
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        format!("{f:?}")
    }
}

/// Built-in types a value may be cast to by name.
fn type_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        16 => "pg_catalog.bool",
        17 => "pg_catalog.bytea",
        18 => "pg_catalog.\"char\"",
        19 => "pg_catalog.name",
        20 => "pg_catalog.int8",
        21 => "pg_catalog.int2",
        23 => "pg_catalog.int4",
        24 => "pg_catalog.regproc",
        25 => "pg_catalog.text",
        26 => "pg_catalog.oid",
        114 => "pg_catalog.json",
        142 => "pg_catalog.xml",
        700 => "pg_catalog.float4",
        701 => "pg_catalog.float8",
        1042 => "pg_catalog.bpchar",
        1043 => "pg_catalog.varchar",
        1082 => "pg_catalog.date",
        1083 => "pg_catalog.time",
        1114 => "pg_catalog.timestamp",
        1184 => "pg_catalog.timestamptz",
        1186 => "pg_catalog.interval",
        1700 => "pg_catalog.numeric",
        2202 => "pg_catalog.regprocedure",
        2205 => "pg_catalog.regclass",
        2206 => "pg_catalog.regtype",
        2950 => "pg_catalog.uuid",
        3734 => "pg_catalog.regconfig",
        3802 => "pg_catalog.jsonb",
        4089 => "pg_catalog.regnamespace",
        4096 => "pg_catalog.regrole",
        1000 => "pg_catalog.bool[]",
        1005 => "pg_catalog.int2[]",
        1007 => "pg_catalog.int4[]",
        1009 => "pg_catalog.text[]",
        1015 => "pg_catalog.varchar[]",
        1016 => "pg_catalog.int8[]",
        1021 => "pg_catalog.float4[]",
        1022 => "pg_catalog.float8[]",
        1028 => "pg_catalog.oid[]",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> BindValue<'_> {
        BindValue {
            binary: false,
            bytes: Some(s.as_bytes()),
        }
    }

    #[test]
    fn values_are_shown_as_sql_an_approver_reads() {
        let bin = |b: &'static [u8]| BindValue {
            binary: true,
            bytes: Some(b),
        };
        let long = "x".repeat(300);
        let v = [
            bin(&[0, 0, 0, 1]),
            text("t"),
            BindValue {
                binary: false,
                bytes: None,
            },
            text("it's"),
            text("--1"),
            bin(&[1, 2]),
            text(&long),
        ];
        let shown = shown(&[23, 16, 25, 25, 23, 0, 25], &v, &|b| {
            std::str::from_utf8(b).ok().map(str::to_owned)
        });
        assert_eq!(
            &shown[..6],
            ["1", "true", "NULL", "'it''s'", "'--1'", "'\\x0102'"]
        );
        assert!(shown[6].ends_with("...' /* 300 bytes */") && shown[6].len() < 240);
        let sql = "DELETE FROM t WHERE id = $1 OR $2 AND note = '$3' -- $4";
        assert_eq!(
            inline(sql, &shown),
            "DELETE FROM t WHERE id = 1 OR true AND note = '$3' -- $4"
        );
        // Shown values parse as the constants they are.
        assert!(pg_query::parse(&inline("SELECT $1, $2, $3, $4, $5, $6, $7", &shown), 0).is_ok());
    }

    #[test]
    fn placeholders_skip_strings_comments_and_dollar_quotes() {
        let sql = "SELECT $1, '$2', \"$3\", $$ $4 $$ /* $5 */ -- $6\n, $7";
        let found: Vec<usize> = placeholders(sql).iter().map(|p| p.2).collect();
        assert_eq!(found, vec![1, 7]);
    }

    #[test]
    fn values_become_escaped_literals_cast_to_their_type() {
        let sql = "SELECT set_config('jit', $1, false), current_setting($2::varchar), $3";
        let v = [
            text("o'ff\\"),
            text("default_table_access_method"),
            BindValue {
                binary: false,
                bytes: None,
            },
        ];
        assert_eq!(
            with_values(sql, &[0, 1043, 23], &v).unwrap(),
            "SELECT set_config('jit', (E'o''ff\\\\'), false), \
             current_setting((E'default_table_access_method'::pg_catalog.varchar)::varchar), \
             (NULL::pg_catalog.int4)"
        );
        let parsed = pg_query::parse(&with_values(sql, &[0, 1043, 23], &v).unwrap(), 0);
        assert!(parsed.is_ok());
    }

    /// A binary value is read by its type; without one it stays a
    /// placeholder, since four bytes mean one thing as int4 and another
    /// as text.
    #[test]
    fn binary_values_need_a_type() {
        let four = 0x3132_3334i32.to_be_bytes();
        let v = [BindValue {
            binary: true,
            bytes: Some(&four),
        }];
        assert_eq!(with_values("SELECT lo_open(1, $1)", &[0], &v), None);
        assert_eq!(
            with_values("SELECT lo_open(1, $1)", &[23], &v).unwrap(),
            "SELECT lo_open(1, (E'825373492'::pg_catalog.int4))"
        );
        assert_eq!(
            with_values(
                "SELECT $1",
                &[25],
                &[BindValue {
                    binary: true,
                    bytes: Some(b"off")
                }]
            )
            .unwrap(),
            "SELECT (E'off'::pg_catalog.text)"
        );
    }

    #[test]
    fn large_values_leave_the_placeholder() {
        let big = "x".repeat(MAX_VALUE + 1);
        assert_eq!(with_values("SELECT $1", &[], &[text(&big)]), None);
        let half = "y".repeat(MAX_VALUE - 8);
        let both = with_values(
            "SELECT $1, $2, $3",
            &[],
            &[text(&half), text(&half), text("z")],
        );
        assert_eq!(
            both.unwrap(),
            format!("SELECT (E'{half}'), $2, (E'z')"),
            "the text stays under MAX_TEXT"
        );
    }

    #[test]
    fn unwritable_values_leave_the_placeholder() {
        let nul = [text("a\0b")];
        assert_eq!(with_values("SELECT $1", &[], &nul), None);
        let bad = [BindValue {
            binary: false,
            bytes: Some(&[0xff, 0xfe]),
        }];
        assert_eq!(with_values("SELECT $1", &[], &bad), None);
        // $2 has no value: only $1 is replaced.
        assert_eq!(
            with_values("SELECT $1, $2", &[], &[text("x")]).unwrap(),
            "SELECT (E'x'), $2"
        );
    }
}
