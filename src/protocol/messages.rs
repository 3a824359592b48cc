//! Typed views of the messages pgward inspects, and the errors and notices
//! pgward itself originates (other encoders: `protocol::encode`).
//! Everything else is relayed as raw bytes.

use bytes::{BufMut, BytesMut};

use super::encode::field;
pub use super::encode::{
    auth_cleartext_password, auth_ok, auth_sasl, auth_sasl_continue, auth_sasl_final,
    backend_key_data, message, negotiate_protocol_version, ready_for_query,
};
pub use super::frontend::BindValue;
use super::tag::{backend, field as efield};

/// Severity of an ErrorResponse or NoticeResponse pgward sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Warning,
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
        }
    }

    /// Whether a message of this severity is an ErrorResponse (else a NoticeResponse).
    pub fn is_error(self) -> bool {
        matches!(self, Severity::Error | Severity::Fatal)
    }
}

/// An error (or, with a notice severity, a notice) pgward reports to a
/// client in PostgreSQL's own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: Severity,
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> PgError {
        PgError {
            severity: Severity::Fatal,
            code: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> PgError {
        PgError {
            severity: Severity::Error,
            ..PgError::fatal(code, message)
        }
    }

    /// A NoticeResponse of severity NOTICE (SQLSTATE class 00 or 01, as a rule).
    pub fn notice(code: &'static str, message: impl Into<String>) -> PgError {
        PgError {
            severity: Severity::Notice,
            ..PgError::fatal(code, message)
        }
    }

    /// A NoticeResponse of severity WARNING.
    pub fn warning(code: &'static str, message: impl Into<String>) -> PgError {
        PgError {
            severity: Severity::Warning,
            ..PgError::fatal(code, message)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> PgError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> PgError {
        self.hint = Some(hint.into());
        self
    }

    /// Appends this as an ErrorResponse ('E'), or as a NoticeResponse
    /// ('N') when its severity is a notice's.
    pub fn encode(&self, buf: &mut BytesMut) {
        let tag = if self.severity.is_error() {
            backend::ERROR_RESPONSE
        } else {
            backend::NOTICE_RESPONSE
        };
        message(buf, tag, |b| {
            let sev = self.severity.as_str();
            field(b, efield::SEVERITY, sev);
            field(b, efield::SEVERITY_RAW, sev);
            field(b, efield::CODE, &self.code);
            field(b, efield::MESSAGE, &self.message);
            if let Some(d) = &self.detail {
                field(b, efield::DETAIL, d);
            }
            if let Some(h) = &self.hint {
                field(b, efield::HINT, h);
            }
            b.put_u8(0);
        });
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for PgError {}

/// SQLSTATE codes pgward uses.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CONNECTION_REJECTED: &str = "08004";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    pub const QUERY_CANCELED: &str = "57014";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const UNTRANSLATABLE_CHARACTER: &str = "22P05";
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    pub const IO_ERROR: &str = "58030";
    pub const INSUFFICIENT_RESOURCES: &str = "53000";
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// A reader over a message body that never panics on short input.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn cstr(&mut self) -> Option<&'a str> {
        let end = self.buf.iter().position(|b| *b == 0)?;
        let s = std::str::from_utf8(&self.buf[..end]).ok()?;
        self.buf = &self.buf[end + 1..];
        Some(s)
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(*first)
    }

    pub fn i16(&mut self) -> Option<i16> {
        let b = self.take(2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The severity, SQLSTATE and message of an ErrorResponse or NoticeResponse
/// body (see `backend::ErrorFields`, which reads them without copying).
pub fn parse_error_fields(body: &[u8]) -> (String, String, String) {
    let f = super::backend::ErrorFields::read(body);
    (
        f.severity().into_owned(),
        f.code().into_owned(),
        f.message().into_owned(),
    )
}

/// An ErrorResponse or NoticeResponse (tag and body) with its position
/// field moved back by `by` characters (a text the server saw behind a
/// prefix of that many).
pub fn shift_error_position(tag: u8, body: &[u8], by: u32, out: &mut BytesMut) {
    message(out, tag, |b| {
        let mut r = Reader::new(body);
        while let Some(kind) = r.u8() {
            if kind == 0 {
                break;
            }
            let Some(v) = r.cstr() else { break };
            match (kind, v.parse::<u32>()) {
                (efield::POSITION, Ok(p)) => field(
                    b,
                    efield::POSITION,
                    &p.saturating_sub(by).max(1).to_string(),
                ),
                _ => field(b, kind, v),
            }
        }
        b.put_u8(0);
    });
}

/// Bytes as PostgreSQL prints a bytea: `\x` and lower-case hex.
pub fn bytea_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(2 + 2 * bytes.len());
    hex.push_str("\\x");
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Mechanism and initial data of a SASLInitialResponse ('p').
pub fn parse_sasl_initial(body: &[u8]) -> Option<(&str, &[u8])> {
    let mut r = Reader::new(body);
    let mechanism = r.cstr()?;
    let len = r.i32()?;
    if len < 0 {
        return Some((mechanism, &[]));
    }
    let data = r.take(len as usize)?;
    r.is_empty().then_some((mechanism, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_layout() {
        let mut b = BytesMut::new();
        PgError::fatal(sqlstate::INVALID_PASSWORD, "no\0pe").encode(&mut b);
        assert_eq!(b[0], b'E');
        let len = i32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len + 1, b.len());
        assert_eq!(&b[5..], b"SFATAL\0VFATAL\0C28P01\0Mnope\0\0");
    }

    #[test]
    fn decoders_reject_truncated_bodies() {
        assert_eq!(
            parse_sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x03abc"),
            Some(("SCRAM-SHA-256", &b"abc"[..]))
        );
        assert_eq!(parse_sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x09abc"), None);
    }
}
