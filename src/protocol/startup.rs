//! The untyped first packet a client sends: StartupMessage, SSLRequest,
//! GSSENCRequest or CancelRequest. Each is an i32 length then an i32 code.

use std::fmt;

/// PostgreSQL refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_PACKET: usize = 10_000;

pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196_608;

/// A decoded first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Ssl,
    GssEnc,
    Cancel { process_id: i32, secret_key: i32 },
    Startup(StartupMessage),
}

/// The parameters of a StartupMessage, in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub major: u16,
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupError {
    BadLength(i32),
    UnsupportedProtocol { major: u16, minor: u16 },
    Malformed(&'static str),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::BadLength(n) => write!(f, "invalid length of startup packet: {n}"),
            StartupError::UnsupportedProtocol { major, minor } => write!(
                f,
                "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
            ),
            StartupError::Malformed(why) => write!(f, "invalid startup packet layout: {why}"),
        }
    }
}

impl std::error::Error for StartupError {}

/// Reads the length prefix of a startup packet and checks it is sane.
pub fn packet_len(header: [u8; 4]) -> Result<usize, StartupError> {
    let len = i32::from_be_bytes(header);
    if len < 8 || len as usize > MAX_STARTUP_PACKET {
        return Err(StartupError::BadLength(len));
    }
    Ok(len as usize)
}

/// Decodes the packet body (everything after the length field).
pub fn parse(body: &[u8]) -> Result<StartupPacket, StartupError> {
    if body.len() < 4 {
        return Err(StartupError::Malformed("missing protocol code"));
    }
    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let rest = &body[4..];
    match code {
        SSL_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::Ssl),
        GSSENC_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::GssEnc),
        CANCEL_REQUEST_CODE if rest.len() == 8 => Ok(StartupPacket::Cancel {
            process_id: i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            secret_key: i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        }),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            Err(StartupError::Malformed("wrong length for a request code"))
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol { major, minor });
            }
            Ok(StartupPacket::Startup(StartupMessage {
                major,
                minor,
                params: parse_params(rest)?,
            }))
        }
    }
}

/// Name/value pairs of C strings ended by an empty name.
fn parse_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        let (name, after) = cstr(rest)?;
        if name.is_empty() {
            if !after.is_empty() {
                return Err(StartupError::Malformed("bytes after the terminator"));
            }
            return Ok(params);
        }
        let (value, after) = cstr(after)?;
        if params.iter().any(|(k, _)| k == name) {
            return Err(StartupError::Malformed("a parameter is given twice"));
        }
        params.push((name.to_owned(), value.to_owned()));
        rest = after;
    }
}

fn cstr(buf: &[u8]) -> Result<(&str, &[u8]), StartupError> {
    let end = buf
        .iter()
        .position(|b| *b == 0)
        .ok_or(StartupError::Malformed("missing terminator"))?;
    let s = std::str::from_utf8(&buf[..end])
        .map_err(|_| StartupError::Malformed("parameter is not valid UTF-8"))?;
    Ok((s, &buf[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn startup_params_in_order() {
        let b = body(PROTOCOL_3_0, b"user\0alice\0database\0app\0\0");
        let StartupPacket::Startup(m) = parse(&b).unwrap() else {
            panic!("not a startup")
        };
        assert_eq!(m.get("user"), Some("alice"));
        assert_eq!(m.get("database"), Some("app"));
        assert_eq!(m.params[0].0, "user");
    }

    #[test]
    fn request_codes() {
        assert_eq!(parse(&body(SSL_REQUEST_CODE, b"")), Ok(StartupPacket::Ssl));
        assert_eq!(
            parse(&body(GSSENC_REQUEST_CODE, b"")),
            Ok(StartupPacket::GssEnc)
        );
        assert_eq!(
            parse(&body(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 0, 0, 0, 9])),
            Ok(StartupPacket::Cancel {
                process_id: 7,
                secret_key: 9
            })
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(parse(&body(PROTOCOL_3_0, b"user\0alice")).is_err());
        assert!(parse(&body(PROTOCOL_3_0, b"user\0a\0user\0b\0\0")).is_err());
        assert!(parse(&body(PROTOCOL_3_0, b"user\0a\0\0junk")).is_err());
        assert!(parse(&body(CANCEL_REQUEST_CODE, &[0, 0, 0, 1])).is_err());
        assert_eq!(
            parse(&body(2 << 16, b"\0")),
            Err(StartupError::UnsupportedProtocol { major: 2, minor: 0 })
        );
        assert!(packet_len([0, 0, 0, 3]).is_err());
        assert!(packet_len([0, 1, 0, 0]).is_err());
        assert_eq!(packet_len([0, 0, 0, 8]), Ok(8));
    }
}
