//! Encoders for the backend messages pgward writes itself: authentication,
//! the end of the handshake, and what a console or a rewrite answers with
//! (RowDescription, DataRow, CommandComplete, EmptyQueryResponse,
//! ParameterStatus, ReadyForQuery). ErrorResponse and NoticeResponse are
//! `PgError::encode`.
//!
//! Every encoder appends one whole message to `buf`; one that can fail
//! (a count or a length the protocol cannot carry) appends nothing then.

use bytes::{BufMut, BytesMut};

use super::tag::backend;

/// Writes one message: type byte, length placeholder, body, patched length.
pub fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A message too big for the protocol's counts and lengths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{what}: {count} is more than the protocol can carry")]
    TooMany { what: &'static str, count: usize },
}

/// Like `message`, for a body that can fail: on error, `buf` is left as it was.
fn try_message(
    buf: &mut BytesMut,
    tag: u8,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_i32(0);
    let result = body(buf).and_then(|()| {
        i32::try_from(buf.len() - start - 1).map_err(|_| EncodeError::TooMany {
            what: "message length",
            count: buf.len() - start - 1,
        })
    });
    match result {
        Ok(len) => {
            buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// A count the protocol sends as an unsigned 16-bit number.
fn count16(what: &'static str, count: usize) -> Result<u16, EncodeError> {
    u16::try_from(count).map_err(|_| EncodeError::TooMany { what, count })
}

pub(crate) fn field(buf: &mut BytesMut, code: u8, value: &str) {
    buf.put_u8(code);
    cstring(buf, value);
}

pub(crate) fn cstring(buf: &mut BytesMut, s: &str) {
    // A NUL inside a value would end the string early on the client side.
    buf.extend(s.bytes().filter(|b| *b != 0));
    buf.put_u8(0);
}

pub fn auth_ok(buf: &mut BytesMut) {
    message(buf, backend::AUTHENTICATION, |b| b.put_i32(0));
}

pub fn auth_cleartext_password(buf: &mut BytesMut) {
    message(buf, backend::AUTHENTICATION, |b| b.put_i32(3));
}

pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    message(buf, backend::AUTHENTICATION, |b| {
        b.put_i32(10);
        for m in mechanisms {
            cstring(b, m);
        }
        b.put_u8(0);
    });
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    message(buf, backend::AUTHENTICATION, |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    message(buf, backend::AUTHENTICATION, |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

pub fn backend_key_data(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    message(buf, backend::BACKEND_KEY_DATA, |b| {
        b.put_i32(process_id);
        b.put_i32(secret_key);
    });
}

/// ReadyForQuery with a transaction status (`tag::status`).
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    message(buf, backend::READY_FOR_QUERY, |b| b.put_u8(status));
}

/// Tells a client which protocol minor version and `_pq_.` options pgward
/// does not support.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unsupported: &[&str]) {
    message(buf, backend::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32(minor);
        b.put_i32(unsupported.len() as i32);
        for o in unsupported {
            cstring(b, o);
        }
    });
}

/// ParameterStatus: a run-time parameter's name and value.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, backend::PARAMETER_STATUS, |b| {
        cstring(b, name);
        cstring(b, value);
    });
}

/// CommandComplete with its command tag (`SELECT 3`, `INSERT 0 1`, `SET`).
pub fn command_complete(buf: &mut BytesMut, command_tag: &str) {
    message(buf, backend::COMMAND_COMPLETE, |b| cstring(b, command_tag));
}

/// EmptyQueryResponse: the answer to a query string with no statement.
pub fn empty_query_response(buf: &mut BytesMut) {
    message(buf, backend::EMPTY_QUERY_RESPONSE, |_| {});
}

/// Result format codes.
pub mod format {
    pub const TEXT: i16 = 0;
    pub const BINARY: i16 = 1;
}

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    pub name: &'a str,
    /// The table's OID, or 0 when the column is not a table's column.
    pub table_oid: u32,
    /// The column's attribute number in that table, or 0.
    pub column: i16,
    pub type_oid: u32,
    /// The type's size (pg_type.typlen): negative for variable-width types.
    pub type_len: i16,
    /// The type modifier (pg_attribute.atttypmod), -1 when none.
    pub type_modifier: i32,
    /// `format::TEXT` or `format::BINARY`.
    pub format: i16,
}

/// Type OIDs of the few types pgward's own result sets use.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const INT8: u32 = 20;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const TIMESTAMPTZ: u32 = 1184;
}

impl<'a> Column<'a> {
    /// A computed column (no table) of type `text`, sent as text.
    pub fn text(name: &'a str) -> Column<'a> {
        Column::computed(name, oid::TEXT, -1)
    }

    /// A computed column (no table) of a type with this OID and typlen, sent as text.
    pub fn computed(name: &'a str, type_oid: u32, type_len: i16) -> Column<'a> {
        Column {
            name,
            table_oid: 0,
            column: 0,
            type_oid,
            type_len,
            type_modifier: -1,
            format: format::TEXT,
        }
    }
}

/// RowDescription: the columns of the rows that follow.
pub fn row_description(buf: &mut BytesMut, columns: &[Column<'_>]) -> Result<(), EncodeError> {
    try_message(buf, backend::ROW_DESCRIPTION, |b| {
        b.put_u16(count16("columns", columns.len())?);
        for c in columns {
            cstring(b, c.name);
            b.put_u32(c.table_oid);
            b.put_i16(c.column);
            b.put_u32(c.type_oid);
            b.put_i16(c.type_len);
            b.put_i32(c.type_modifier);
            b.put_i16(c.format);
        }
        Ok(())
    })
}

/// DataRow: one row's values in column order, `None` for NULL. The values
/// are written as they are (text format: the type's output text).
pub fn data_row<I, V>(buf: &mut BytesMut, values: I) -> Result<(), EncodeError>
where
    I: IntoIterator<Item = Option<V>>,
    V: AsRef<[u8]>,
{
    try_message(buf, backend::DATA_ROW, |b| {
        let count_at = b.len();
        b.put_u16(0);
        let mut count = 0usize;
        for v in values {
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    let v = v.as_ref();
                    let len = i32::try_from(v.len()).map_err(|_| EncodeError::TooMany {
                        what: "value length",
                        count: v.len(),
                    })?;
                    b.put_i32(len);
                    b.put_slice(v);
                }
            }
            count += 1;
        }
        let count = count16("values", count)?;
        b[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{sqlstate, PgError};
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::{ErrorFields, Message};

    /// Decodes exactly one message with postgres-protocol's parser.
    fn decode(mut buf: BytesMut) -> Message {
        let m = Message::parse(&mut buf)
            .expect("a valid message")
            .expect("a whole message");
        assert!(buf.is_empty(), "one message, nothing after it");
        m
    }

    fn fields(mut it: ErrorFields<'_>) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        while let Some(f) = it.next().expect("well-formed fields") {
            out.push((f.type_(), String::from_utf8_lossy(f.value_bytes()).into()));
        }
        out
    }

    #[test]
    fn row_description_round_trips() {
        let mut buf = BytesMut::new();
        let cols = [
            Column {
                name: "id",
                table_oid: 16384,
                column: 1,
                type_oid: oid::INT4,
                type_len: 4,
                type_modifier: -1,
                format: format::BINARY,
            },
            Column::text("na\0me"),
        ];
        row_description(&mut buf, &cols).unwrap();
        let Message::RowDescription(body) = decode(buf) else {
            panic!("not a RowDescription")
        };
        let got: Vec<_> = body.fields().collect().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name(), "id");
        assert_eq!(got[0].table_oid(), 16384);
        assert_eq!(got[0].column_id(), 1);
        assert_eq!(got[0].type_oid(), oid::INT4);
        assert_eq!(got[0].type_size(), 4);
        assert_eq!(got[0].type_modifier(), -1);
        assert_eq!(got[0].format(), 1);
        assert_eq!(got[1].name(), "name");
        assert_eq!(got[1].table_oid(), 0);
        assert_eq!(got[1].column_id(), 0);
        assert_eq!(got[1].type_oid(), oid::TEXT);
        assert_eq!(got[1].type_size(), -1);
        assert_eq!(got[1].format(), 0);
    }

    #[test]
    fn data_row_round_trips_values_and_nulls() {
        let mut buf = BytesMut::new();
        data_row(&mut buf, [Some("1"), None, Some(""), Some("é\0x")]).unwrap();
        let Message::DataRow(body) = decode(buf) else {
            panic!("not a DataRow")
        };
        let mut ranges = body.ranges();
        let mut got = Vec::new();
        while let Some(r) = ranges.next().unwrap() {
            got.push(r.map(|r| body.buffer()[r].to_vec()));
        }
        assert_eq!(
            got,
            vec![
                Some(b"1".to_vec()),
                None,
                Some(Vec::new()),
                // Values are bytes: a NUL inside one is kept.
                Some("é\0x".as_bytes().to_vec()),
            ]
        );
    }

    #[test]
    fn too_many_values_write_nothing() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let err = data_row(&mut buf, std::iter::repeat_n(None::<&[u8]>, 70_000)).unwrap_err();
        assert_eq!(
            err,
            EncodeError::TooMany {
                what: "values",
                count: 70_000
            }
        );
        assert_eq!(&buf[..], b"keep");
        let cols = vec![Column::text("c"); 65_536];
        assert!(row_description(&mut buf, &cols).is_err());
        assert_eq!(&buf[..], b"keep");
        // The most the protocol can count still encodes.
        data_row(&mut buf, std::iter::repeat_n(None::<&[u8]>, 65_535)).unwrap();
        assert_eq!(buf.len(), 4 + 1 + 4 + 2 + 65_535 * 4);
    }

    #[test]
    fn command_complete_and_empty_query_round_trip() {
        let mut buf = BytesMut::new();
        command_complete(&mut buf, "SELECT 3");
        let Message::CommandComplete(body) = decode(buf) else {
            panic!("not a CommandComplete")
        };
        assert_eq!(body.tag().unwrap(), "SELECT 3");

        let mut buf = BytesMut::new();
        empty_query_response(&mut buf);
        assert!(matches!(decode(buf), Message::EmptyQueryResponse));
    }

    #[test]
    fn parameter_status_and_ready_for_query_round_trip() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "client_encoding", "UTF8");
        let Message::ParameterStatus(body) = decode(buf) else {
            panic!("not a ParameterStatus")
        };
        assert_eq!(body.name().unwrap(), "client_encoding");
        assert_eq!(body.value().unwrap(), "UTF8");

        for status in [
            crate::protocol::tag::status::IDLE,
            crate::protocol::tag::status::IN_TRANSACTION,
            crate::protocol::tag::status::FAILED,
        ] {
            let mut buf = BytesMut::new();
            ready_for_query(&mut buf, status);
            let Message::ReadyForQuery(body) = decode(buf) else {
                panic!("not a ReadyForQuery")
            };
            assert_eq!(body.status(), status);
        }
    }

    #[test]
    fn errors_and_notices_round_trip() {
        let mut buf = BytesMut::new();
        PgError::error(sqlstate::INSUFFICIENT_PRIVILEGE, "denied")
            .with_detail("d")
            .with_hint("h")
            .encode(&mut buf);
        let Message::ErrorResponse(body) = decode(buf) else {
            panic!("not an ErrorResponse")
        };
        assert_eq!(
            fields(body.fields()),
            vec![
                (b'S', "ERROR".into()),
                (b'V', "ERROR".into()),
                (b'C', "42501".into()),
                (b'M', "denied".into()),
                (b'D', "d".into()),
                (b'H', "h".into()),
            ]
        );

        for (notice, sev) in [
            (PgError::notice("00000", "held for approval"), "NOTICE"),
            (PgError::warning("01000", "careful"), "WARNING"),
        ] {
            let mut buf = BytesMut::new();
            notice.encode(&mut buf);
            let Message::NoticeResponse(body) = decode(buf) else {
                panic!("not a NoticeResponse")
            };
            let f = fields(body.fields());
            assert_eq!(f[0], (b'S', sev.into()));
            assert_eq!(f[1], (b'V', sev.into()));
            assert_eq!(f[3].1, notice.message);
        }
    }

    #[test]
    fn handshake_messages_round_trip() {
        let mut buf = BytesMut::new();
        backend_key_data(&mut buf, 42, -7);
        let Message::BackendKeyData(body) = decode(buf) else {
            panic!("not a BackendKeyData")
        };
        assert_eq!((body.process_id(), body.secret_key()), (42, -7));

        let mut buf = BytesMut::new();
        auth_ok(&mut buf);
        assert!(matches!(decode(buf), Message::AuthenticationOk));

        let mut buf = BytesMut::new();
        auth_sasl(&mut buf, &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let Message::AuthenticationSasl(body) = decode(buf) else {
            panic!("not an AuthenticationSASL")
        };
        let m: Vec<&str> = body.mechanisms().collect().unwrap();
        assert_eq!(m, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
    }
}
