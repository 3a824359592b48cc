//! Borrowed views of the messages a server sends in a session, read once
//! per frame (`Message::parse`) and handed to the protocol state and the
//! audit recorder. Parsing never fails: the server's messages are passed on
//! as they are, and a field pgward cannot read is `None` when asked for.

use std::borrow::Cow;

use super::messages::Reader;
use super::tag::{backend as tag, field, status};

/// One server message.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    EmptyQueryResponse,
    PortalSuspended,
    CommandComplete(CommandComplete<'a>),
    DataRow(&'a [u8]),
    RowDescription(RowDescription<'a>),
    ParameterDescription(ParameterDescription<'a>),
    ErrorResponse(ErrorFields<'a>),
    NoticeResponse(ErrorFields<'a>),
    ParameterStatus(ParameterStatus<'a>),
    /// The transaction status (`tag::status`).
    ReadyForQuery(u8),
    CopyInResponse(&'a [u8]),
    CopyOutResponse(&'a [u8]),
    CopyBothResponse(&'a [u8]),
    FunctionCallResponse(&'a [u8]),
    /// Anything pgward only relays (CopyData, NotificationResponse, ...).
    Other {
        tag: u8,
        body: &'a [u8],
    },
}

/// A CommandComplete: its command tag, read on demand.
#[derive(Debug, Clone, Copy)]
pub struct CommandComplete<'a> {
    body: &'a [u8],
}

/// A RowDescription: the columns of the rows that follow, read on demand.
#[derive(Debug, Clone, Copy)]
pub struct RowDescription<'a> {
    body: &'a [u8],
}

/// A ParameterDescription: the parameter types of a statement, read on demand.
#[derive(Debug, Clone, Copy)]
pub struct ParameterDescription<'a> {
    body: &'a [u8],
}

/// A ParameterStatus: a run-time parameter's name and value.
#[derive(Debug, Clone, Copy)]
pub struct ParameterStatus<'a> {
    body: &'a [u8],
}

/// The fields pgward reads of an ErrorResponse or NoticeResponse, found in
/// one pass. The server writes them in the client's encoding: a field that
/// is not UTF-8 is read with replacement characters, and the fields after
/// it still count.
#[derive(Debug, Clone, Copy)]
pub struct ErrorFields<'a> {
    body: &'a [u8],
    severity: Span,
    code: Span,
    message: Span,
    routine: Span,
}

/// Where a field's value lies in the body (kept small: every backend
/// message view is as large as this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    at: u32,
    len: u32,
}

impl Span {
    const NONE: Span = Span {
        at: u32::MAX,
        len: 0,
    };

    fn get(self, body: &[u8]) -> Option<&[u8]> {
        if self == Span::NONE {
            return None;
        }
        let at = self.at as usize;
        body.get(at..at + self.len as usize)
    }
}

impl<'a> Message<'a> {
    /// Views the message of type `tag` whose body (after the length) is `body`.
    #[inline]
    pub fn parse(tag: u8, body: &'a [u8]) -> Message<'a> {
        match tag {
            tag::PARSE_COMPLETE => Message::ParseComplete,
            tag::BIND_COMPLETE => Message::BindComplete,
            tag::CLOSE_COMPLETE => Message::CloseComplete,
            tag::NO_DATA => Message::NoData,
            tag::EMPTY_QUERY_RESPONSE => Message::EmptyQueryResponse,
            tag::PORTAL_SUSPENDED => Message::PortalSuspended,
            tag::COMMAND_COMPLETE => Message::CommandComplete(CommandComplete { body }),
            tag::DATA_ROW => Message::DataRow(body),
            tag::ROW_DESCRIPTION => Message::RowDescription(RowDescription { body }),
            tag::PARAMETER_DESCRIPTION => {
                Message::ParameterDescription(ParameterDescription { body })
            }
            tag::ERROR_RESPONSE => Message::ErrorResponse(ErrorFields::read(body)),
            tag::NOTICE_RESPONSE => Message::NoticeResponse(ErrorFields::read(body)),
            tag::PARAMETER_STATUS => Message::ParameterStatus(ParameterStatus { body }),
            // A ReadyForQuery without its status is read as idle.
            tag::READY_FOR_QUERY => {
                Message::ReadyForQuery(body.first().copied().unwrap_or(status::IDLE))
            }
            tag::COPY_IN_RESPONSE => Message::CopyInResponse(body),
            tag::COPY_OUT_RESPONSE => Message::CopyOutResponse(body),
            tag::COPY_BOTH_RESPONSE => Message::CopyBothResponse(body),
            tag::FUNCTION_CALL_RESPONSE => Message::FunctionCallResponse(body),
            _ => Message::Other { tag, body },
        }
    }

    /// The message's type byte.
    pub fn tag(&self) -> u8 {
        match self {
            Message::ParseComplete => tag::PARSE_COMPLETE,
            Message::BindComplete => tag::BIND_COMPLETE,
            Message::CloseComplete => tag::CLOSE_COMPLETE,
            Message::NoData => tag::NO_DATA,
            Message::EmptyQueryResponse => tag::EMPTY_QUERY_RESPONSE,
            Message::PortalSuspended => tag::PORTAL_SUSPENDED,
            Message::CommandComplete(_) => tag::COMMAND_COMPLETE,
            Message::DataRow(_) => tag::DATA_ROW,
            Message::RowDescription(_) => tag::ROW_DESCRIPTION,
            Message::ParameterDescription(_) => tag::PARAMETER_DESCRIPTION,
            Message::ErrorResponse(_) => tag::ERROR_RESPONSE,
            Message::NoticeResponse(_) => tag::NOTICE_RESPONSE,
            Message::ParameterStatus(_) => tag::PARAMETER_STATUS,
            Message::ReadyForQuery(_) => tag::READY_FOR_QUERY,
            Message::CopyInResponse(_) => tag::COPY_IN_RESPONSE,
            Message::CopyOutResponse(_) => tag::COPY_OUT_RESPONSE,
            Message::CopyBothResponse(_) => tag::COPY_BOTH_RESPONSE,
            Message::FunctionCallResponse(_) => tag::FUNCTION_CALL_RESPONSE,
            Message::Other { tag, .. } => *tag,
        }
    }
}

impl<'a> CommandComplete<'a> {
    /// The command tag: `SELECT 3`, `INSERT 0 1`, `SET`.
    pub fn tag(&self) -> Option<&'a str> {
        Reader::new(self.body).cstr()
    }

    /// The row count at the end of the tag, for the commands that report one.
    pub fn rows(&self) -> Option<i64> {
        let tag = self.tag()?;
        let mut words = tag.split(' ');
        let command = words.next()?;
        if !matches!(
            command,
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "FETCH" | "MOVE" | "COPY"
        ) {
            return None;
        }
        words.next_back()?.parse().ok()
    }
}

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    pub name: &'a str,
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_modifier: i32,
    pub format: i16,
}

impl<'a> RowDescription<'a> {
    /// The raw body, as the server sent it.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The columns; None when the body cannot be read whole.
    pub fn columns(&self) -> Option<Vec<Column<'a>>> {
        let mut r = Reader::new(self.body);
        let n = r.i16()? as u16 as usize;
        let mut columns = Vec::with_capacity(n.min(1664));
        for _ in 0..n {
            columns.push(Column {
                name: r.cstr()?,
                table_oid: r.i32()? as u32,
                column: r.i16()?,
                type_oid: r.i32()? as u32,
                type_len: r.i16()?,
                type_modifier: r.i32()?,
                format: r.i16()?,
            });
        }
        r.is_empty().then_some(columns)
    }
}

impl ParameterDescription<'_> {
    /// The parameter type OIDs; None when the body cannot be read whole.
    pub fn types(&self) -> Option<Vec<u32>> {
        let mut r = Reader::new(self.body);
        let n = r.i16()? as u16 as usize;
        let types: Option<Vec<u32>> = (0..n).map(|_| r.i32().map(|oid| oid as u32)).collect();
        r.is_empty().then_some(types?)
    }
}

impl<'a> ParameterStatus<'a> {
    /// Name and value; None when either cannot be read.
    pub fn get(&self) -> Option<(&'a str, &'a str)> {
        let mut r = Reader::new(self.body);
        Some((r.cstr()?, r.cstr()?))
    }
}

impl<'a> ErrorFields<'a> {
    /// Finds the fields pgward reads in the body of an ErrorResponse or
    /// NoticeResponse.
    pub fn read(body: &'a [u8]) -> ErrorFields<'a> {
        let mut f = ErrorFields {
            body,
            severity: Span::NONE,
            code: Span::NONE,
            message: Span::NONE,
            routine: Span::NONE,
        };
        let mut r = Reader::new(body);
        while let Some(kind) = r.u8() {
            if kind == 0 {
                break;
            }
            let Some(end) = r.rest().iter().position(|b| *b == 0) else {
                break;
            };
            // Frames are capped far below 4 GiB: a span always fits.
            let (Ok(at), Ok(len)) = (
                u32::try_from(body.len() - r.rest().len()),
                u32::try_from(end),
            ) else {
                break;
            };
            if r.take(end + 1).is_none() {
                break;
            }
            let v = Span { at, len };
            match kind {
                field::SEVERITY_RAW => f.severity = v,
                // The localized severity only until the raw one is seen
                // (PostgreSQL before 9.6 sends no raw one).
                field::SEVERITY if f.severity.len == 0 => f.severity = v,
                field::CODE => f.code = v,
                field::MESSAGE => f.message = v,
                field::ROUTINE => f.routine = v,
                _ => {}
            }
        }
        f
    }

    /// The raw body, as the server sent it.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The severity, never localized when the server says it so
    /// (`ERROR`, `FATAL`, `PANIC`, `NOTICE`, ...); empty when absent.
    pub fn severity(&self) -> Cow<'a, str> {
        lossy(self.severity.get(self.body))
    }

    /// Whether the session ends with it (FATAL or PANIC).
    pub fn is_fatal(&self) -> bool {
        matches!(self.severity.get(self.body), Some(b"FATAL" | b"PANIC"))
    }

    /// The SQLSTATE; empty when absent.
    pub fn code(&self) -> Cow<'a, str> {
        lossy(self.code.get(self.body))
    }

    /// The primary message; empty when absent.
    pub fn message(&self) -> Cow<'a, str> {
        lossy(self.message.get(self.body))
    }

    /// The name of the server routine that raised it, as bytes.
    pub fn routine(&self) -> Option<&'a [u8]> {
        self.routine.get(self.body)
    }
}

fn lossy(v: Option<&[u8]>) -> Cow<'_, str> {
    v.map_or(Cow::Borrowed(""), String::from_utf8_lossy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;
    use crate::protocol::{sqlstate, PgError};
    use bytes::BytesMut;

    /// The message at the start of `buf`, viewed.
    fn view(buf: &[u8]) -> Message<'_> {
        Message::parse(buf[0], &buf[5..])
    }

    #[test]
    fn error_fields_in_one_pass() {
        let mut buf = BytesMut::new();
        PgError::fatal(sqlstate::ADMIN_SHUTDOWN, "bye").encode(&mut buf);
        let Message::ErrorResponse(e) = view(&buf) else {
            panic!("an ErrorResponse")
        };
        assert_eq!(
            (&*e.severity(), &*e.code(), &*e.message()),
            ("FATAL", "57P01", "bye")
        );
        assert!(e.is_fatal());
        assert_eq!(e.routine(), None);

        // Localized severity first, raw after; a field that is not UTF-8
        // is read lossily and the ones after it still count.
        let body = b"SFEHLER\0VERROR\0C42601\0Mdoppelt \xe4\0Rexec_parse_message\0\0";
        let Message::ErrorResponse(e) = Message::parse(b'E', body) else {
            panic!("an ErrorResponse")
        };
        assert_eq!(&*e.severity(), "ERROR");
        assert!(!e.is_fatal());
        assert_eq!(&*e.code(), "42601");
        assert_eq!(&*e.message(), "doppelt \u{fffd}");
        assert_eq!(e.routine(), Some(&b"exec_parse_message"[..]));
        // Only a localized one (before 9.6).
        let Message::NoticeResponse(e) = Message::parse(b'N', b"SNOTICE\0Mhi\0\0") else {
            panic!("a NoticeResponse")
        };
        assert_eq!((&*e.severity(), &*e.code()), ("NOTICE", ""));
        // Truncated: what was read still counts.
        let Message::ErrorResponse(e) = Message::parse(b'E', b"VPANIC\0Cxx") else {
            panic!("an ErrorResponse")
        };
        assert!(e.is_fatal());
        assert_eq!(&*e.code(), "");
    }

    #[test]
    fn what_pgward_writes_reads_back() {
        let mut buf = BytesMut::new();
        encode::command_complete(&mut buf, "INSERT 0 7");
        let Message::CommandComplete(c) = view(&buf) else {
            panic!("a CommandComplete")
        };
        assert_eq!((c.tag(), c.rows()), (Some("INSERT 0 7"), Some(7)));
        let Message::CommandComplete(c) = Message::parse(b'C', b"SET\0") else {
            panic!("a CommandComplete")
        };
        assert_eq!(c.rows(), None);

        let mut buf = BytesMut::new();
        let cols = [
            encode::Column::text("a"),
            encode::Column::computed("b", 23, 4),
        ];
        encode::row_description(&mut buf, &cols).unwrap();
        let Message::RowDescription(r) = view(&buf) else {
            panic!("a RowDescription")
        };
        let got = r.columns().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[1].name, got[1].type_oid, got[1].type_len),
            ("b", 23, 4)
        );
        assert!(RowDescription {
            body: &buf[5..buf.len() - 1]
        }
        .columns()
        .is_none());

        let mut buf = BytesMut::new();
        encode::parameter_status(&mut buf, "TimeZone", "UTC");
        let Message::ParameterStatus(p) = view(&buf) else {
            panic!("a ParameterStatus")
        };
        assert_eq!(p.get(), Some(("TimeZone", "UTC")));

        let mut buf = BytesMut::new();
        encode::ready_for_query(&mut buf, b'T');
        assert!(matches!(view(&buf), Message::ReadyForQuery(b'T')));
        assert!(matches!(
            Message::parse(b'Z', b""),
            Message::ReadyForQuery(b'I')
        ));

        let Message::ParameterDescription(d) = Message::parse(b't', b"\0\x02\0\0\0\x17\0\0\0\x19")
        else {
            panic!("a ParameterDescription")
        };
        assert_eq!(d.types(), Some(vec![23, 25]));
        let Message::ParameterDescription(d) = Message::parse(b't', b"\0\x02\0\0\0\x17") else {
            panic!("a ParameterDescription")
        };
        assert_eq!(d.types(), None);

        for t in *b"123nIsCDTtENSZGHWVAd" {
            assert_eq!(Message::parse(t, b"").tag(), t);
        }
    }
}
