//! Borrowed views of the messages a client sends after authentication,
//! read once per frame (`Message::parse`) and handed to every consumer:
//! the guard, the protocol state and the audit recorder.
//!
//! `parse` reads and checks the fixed fields every consumer needs (names,
//! SQL text, a Describe's target), so a message that passes it is well
//! formed as far as pgward follows it. The rest (a Bind's values and
//! formats, a Parse's parameter types, a FunctionCall's arguments) is read
//! only when asked for.

use super::messages::Reader;
use super::tag::{frontend as tag, target};

/// A client message pgward could not read: its type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub u8);

/// One client message.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    Query(Query<'a>),
    Parse(Parse<'a>),
    Bind(Bind<'a>),
    Describe(Target<'a>),
    Close(Target<'a>),
    Execute(Execute<'a>),
    FunctionCall(FunctionCall<'a>),
    CopyData(&'a [u8]),
    CopyDone,
    CopyFail(&'a [u8]),
    Sync,
    Flush,
    Terminate,
    /// A type byte that is not a frontend message's (the relay refuses
    /// those before parsing; kept for callers that do not).
    Other {
        tag: u8,
        body: &'a [u8],
    },
}

/// A simple Query: one string that may hold many statements.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub sql: &'a str,
}

/// A Parse: a statement name, its text, and declared parameter types.
#[derive(Debug, Clone, Copy)]
pub struct Parse<'a> {
    pub name: &'a str,
    pub sql: &'a str,
    /// The declared types: 4 bytes each (checked by `parse`).
    types: &'a [u8],
}

/// A Bind: portal and statement names; the parameters and result formats
/// behind them are read on demand.
#[derive(Debug, Clone, Copy)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Everything after the two names.
    rest: &'a [u8],
}

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// `tag::target::STATEMENT` or `tag::target::PORTAL`.
    pub kind: u8,
    pub name: &'a str,
}

/// An Execute: the portal and how many rows at most (0: all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a str,
    pub max_rows: i32,
}

/// A FunctionCall: read on demand (only its OID is ever needed).
#[derive(Debug, Clone, Copy)]
pub struct FunctionCall<'a> {
    body: &'a [u8],
}

/// One parameter value of a Bind: NULL, or its bytes in text (format 0)
/// or binary (any other format code) form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindValue<'a> {
    pub binary: bool,
    pub bytes: Option<&'a [u8]>,
}

impl<'a> Message<'a> {
    /// Reads the message of type `tag` whose body (after the length) is
    /// `body`. Err when a field pgward follows cannot be read: PostgreSQL
    /// would refuse the message too.
    #[inline]
    pub fn parse(tag: u8, body: &'a [u8]) -> Result<Message<'a>, Malformed> {
        let bad = Malformed(tag);
        let mut r = Reader::new(body);
        let msg = match tag {
            tag::QUERY => {
                let sql = r.cstr().ok_or(bad)?;
                if !r.is_empty() {
                    return Err(bad);
                }
                Message::Query(Query { sql })
            }
            tag::PARSE => {
                let name = r.cstr().ok_or(bad)?;
                let sql = r.cstr().ok_or(bad)?;
                let n = r.i16().ok_or(bad)?;
                let n = usize::try_from(n).map_err(|_| bad)?;
                let types = r.take(n * 4).ok_or(bad)?;
                if !r.is_empty() {
                    return Err(bad);
                }
                Message::Parse(Parse { name, sql, types })
            }
            tag::BIND => {
                let portal = r.cstr().ok_or(bad)?;
                let statement = r.cstr().ok_or(bad)?;
                Message::Bind(Bind {
                    portal,
                    statement,
                    rest: r.rest(),
                })
            }
            tag::DESCRIBE | tag::CLOSE => {
                let kind = r.u8().ok_or(bad)?;
                let name = r.cstr().ok_or(bad)?;
                if !matches!(kind, target::STATEMENT | target::PORTAL) || !r.is_empty() {
                    return Err(bad);
                }
                let t = Target { kind, name };
                if tag == tag::DESCRIBE {
                    Message::Describe(t)
                } else {
                    Message::Close(t)
                }
            }
            tag::EXECUTE => {
                let portal = r.cstr().ok_or(bad)?;
                let max_rows = r.i32().ok_or(bad)?;
                if !r.is_empty() {
                    return Err(bad);
                }
                Message::Execute(Execute { portal, max_rows })
            }
            tag::FUNCTION_CALL => Message::FunctionCall(FunctionCall { body }),
            tag::COPY_DATA => Message::CopyData(body),
            tag::COPY_DONE => Message::CopyDone,
            tag::COPY_FAIL => Message::CopyFail(body),
            tag::SYNC => Message::Sync,
            tag::FLUSH => Message::Flush,
            tag::TERMINATE => Message::Terminate,
            _ => Message::Other { tag, body },
        };
        Ok(msg)
    }

    /// The message's type byte.
    pub fn tag(&self) -> u8 {
        match self {
            Message::Query(_) => tag::QUERY,
            Message::Parse(_) => tag::PARSE,
            Message::Bind(_) => tag::BIND,
            Message::Describe(_) => tag::DESCRIBE,
            Message::Close(_) => tag::CLOSE,
            Message::Execute(_) => tag::EXECUTE,
            Message::FunctionCall(_) => tag::FUNCTION_CALL,
            Message::CopyData(_) => tag::COPY_DATA,
            Message::CopyDone => tag::COPY_DONE,
            Message::CopyFail(_) => tag::COPY_FAIL,
            Message::Sync => tag::SYNC,
            Message::Flush => tag::FLUSH,
            Message::Terminate => tag::TERMINATE,
            Message::Other { tag, .. } => *tag,
        }
    }

    /// The SQL text of a Query or a Parse.
    pub fn sql(&self) -> Option<&'a str> {
        match self {
            Message::Query(q) => Some(q.sql),
            Message::Parse(p) => Some(p.sql),
            _ => None,
        }
    }
}

impl<'a> Parse<'a> {
    /// How many parameter types the Parse declares.
    pub fn param_type_count(&self) -> usize {
        self.types.len() / 4
    }

    /// The declared parameter type OIDs (0: unspecified), in order.
    pub fn param_types(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.types
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl<'a> Bind<'a> {
    /// The parameter values. None when malformed, including a format list
    /// whose length is neither 0, 1 nor the number of values (PostgreSQL
    /// refuses those too).
    pub fn values(&self) -> Option<Vec<BindValue<'a>>> {
        let mut r = Reader::new(self.rest);
        // Counts are unsigned 16-bit, as PostgreSQL reads them.
        let nformats = r.i16()? as u16 as usize;
        let formats = r.take(2 * nformats)?;
        let nvalues = r.i16()? as u16 as usize;
        if nformats > 1 && nformats != nvalues {
            return None;
        }
        let binary = |i: usize| {
            let at = if nformats == 1 { 0 } else { 2 * i };
            nformats > 0 && formats.get(at..at + 2).is_some_and(|f| f != [0, 0])
        };
        let mut values = Vec::with_capacity(nvalues.min(1024));
        for i in 0..nvalues {
            let len = r.i32()?;
            let bytes = match usize::try_from(len) {
                Ok(n) => Some(r.take(n)?),
                Err(_) => None,
            };
            values.push(BindValue {
                binary: binary(i),
                bytes,
            });
        }
        Some(values)
    }

    /// The result formats it asks for (after the parameters); None when
    /// malformed. Reads past the parameter values without copying them.
    pub fn result_formats(&self) -> Option<crate::session::rows::Formats> {
        use crate::session::rows::Formats;
        let mut r = Reader::new(self.rest);
        let nformats = r.i16()? as u16 as usize;
        r.take(2 * nformats)?;
        let nvalues = r.i16()? as u16 as usize;
        for _ in 0..nvalues {
            if let Ok(n) = usize::try_from(r.i32()?) {
                r.take(n)?;
            }
        }
        let n = r.i16()? as u16 as usize;
        let codes = r.take(2 * n)?;
        let code = |i: usize| i16::from_be_bytes([codes[2 * i], codes[2 * i + 1]]);
        Some(match n {
            0 => Formats::All(0),
            1 => Formats::All(code(0)),
            _ => Formats::Each((0..n).map(code).collect()),
        })
    }
}

impl FunctionCall<'_> {
    /// The OID of the function called.
    pub fn oid(&self) -> Option<u32> {
        Reader::new(self.body).i32().map(|oid| oid as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tag: u8, body: &[u8]) -> Result<Message<'_>, Malformed> {
        Message::parse(tag, body)
    }

    #[test]
    fn fixed_fields_are_read_and_checked() {
        assert!(matches!(
            parse(b'Q', b"select 1\0"),
            Ok(Message::Query(Query { sql: "select 1" }))
        ));
        assert_eq!(parse(b'Q', b"select 1").unwrap_err(), Malformed(b'Q'));
        assert_eq!(parse(b'Q', b"a\0b\0").unwrap_err(), Malformed(b'Q'));
        assert_eq!(parse(b'Q', b"\xff\0").unwrap_err(), Malformed(b'Q'));

        let Ok(Message::Parse(p)) = parse(b'P', b"s1\0select $1\0\0\x02\0\0\0\x17\0\0\0\0") else {
            panic!("a Parse")
        };
        assert_eq!((p.name, p.sql), ("s1", "select $1"));
        assert_eq!(p.param_type_count(), 2);
        assert_eq!(p.param_types().collect::<Vec<_>>(), [23, 0]);
        assert!(parse(b'P', b"s1\0select $1\0\0\x02\0\0\0\x17").is_err());
        assert!(parse(b'P', b"s1\0select\0\xff\xff").is_err());
        assert!(parse(b'P', b"s1\0select\0\0\0extra").is_err());

        let Ok(Message::Describe(t)) = parse(b'D', b"Sabc\0") else {
            panic!("a Describe")
        };
        assert_eq!(
            t,
            Target {
                kind: b'S',
                name: "abc"
            }
        );
        assert!(matches!(
            parse(b'C', b"P\0"),
            Ok(Message::Close(Target {
                kind: b'P',
                name: ""
            }))
        ));
        assert!(parse(b'D', b"Xabc\0").is_err());
        assert!(parse(b'C', b"Sabc\0\0").is_err());

        let Ok(Message::Execute(e)) = parse(b'E', b"p\0\0\0\0\x0a") else {
            panic!("an Execute")
        };
        assert_eq!(
            e,
            Execute {
                portal: "p",
                max_rows: 10
            }
        );
        assert!(parse(b'E', b"\0\0\0").is_err());
        assert!(parse(b'E', b"\0\0\0\0\0\0").is_err());

        // Bind: only the names are needed to pass.
        let Ok(Message::Bind(b)) = parse(b'B', b"p\0s\0garbage") else {
            panic!("a Bind")
        };
        assert_eq!((b.portal, b.statement), ("p", "s"));
        assert_eq!(b.values(), None);
        assert!(parse(b'B', b"p\0s").is_err());

        for (t, m) in [
            (b'S', "Sync"),
            (b'H', "Flush"),
            (b'X', "Terminate"),
            (b'c', "CopyDone"),
        ] {
            let got = format!("{:?}", parse(t, b"").unwrap());
            assert_eq!(got, m);
            assert_eq!(parse(t, b"").unwrap().tag(), t);
        }
        assert!(matches!(
            parse(b'Z', b"I"),
            Ok(Message::Other { tag: b'Z', .. })
        ));
    }

    #[test]
    fn bind_values_are_read_on_demand() {
        // One format (binary) for two values: a NULL and four bytes.
        let body = b"\0s\0\0\x01\0\x01\0\x02\xff\xff\xff\xff\0\0\0\x04abcd\0\0";
        let Ok(Message::Bind(b)) = parse(b'B', body) else {
            panic!("a Bind")
        };
        assert_eq!(
            b.values().unwrap(),
            [
                BindValue {
                    binary: true,
                    bytes: None
                },
                BindValue {
                    binary: true,
                    bytes: Some(b"abcd")
                }
            ]
        );
        // Two formats for one value: refused, as PostgreSQL does.
        let Ok(Message::Bind(b)) = parse(b'B', b"\0s\0\0\x02\0\0\0\0\0\x01\0\0\0\x01x") else {
            panic!("a Bind")
        };
        assert_eq!(b.values(), None);
        // Counts are unsigned: 40,000 values need 40,000 lengths.
        let Ok(Message::Bind(b)) = parse(b'B', b"\0s\0\0\0\x9c\x40") else {
            panic!("a Bind")
        };
        assert_eq!(b.values(), None);
    }

    #[test]
    fn function_call_oid() {
        let Ok(Message::FunctionCall(f)) = parse(b'F', b"\0\0\x04\xd2rest") else {
            panic!("a FunctionCall")
        };
        assert_eq!(f.oid(), Some(1234));
        let Ok(Message::FunctionCall(f)) = parse(b'F', b"\0\0") else {
            panic!("a FunctionCall")
        };
        assert_eq!(f.oid(), None);
    }
}
