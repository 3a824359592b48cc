//! Framing of regular protocol messages: one type byte, then a big-endian
//! i32 length that counts itself but not the type byte.
//!
//! `check` is the cheap test the relay runs on every buffer: it says whether a
//! whole frame is present without copying or decoding anything.

use std::fmt;

/// PostgreSQL's own limit for a single message (MaxAllocSize - 1).
pub const POSTGRES_MAX_MESSAGE: usize = 0x3fff_ffff;

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below 4, so it cannot even cover itself.
    BadLength { tag: u8, len: i32 },
    /// The declared message is larger than the configured cap.
    TooLarge { tag: u8, len: usize, max: usize },
    /// A type byte that is not valid in this direction and phase.
    UnknownType { tag: u8 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadLength { tag, len } => write!(
                f,
                "invalid message length {len} for message type {}",
                printable(*tag)
            ),
            FrameError::TooLarge { tag, len, max } => write!(
                f,
                "message of type {} is {len} bytes, over the limit of {max} bytes",
                printable(*tag)
            ),
            FrameError::UnknownType { tag } => {
                write!(f, "invalid frontend message type {}", printable(*tag))
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Renders a type byte for an error message: `'Q'` or `0x00`.
pub fn printable(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("0x{tag:02x}")
    }
}

/// The length of the first complete frame in `buf` (type byte included), or
/// `None` when more bytes are needed.
#[inline]
pub fn check(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength { tag, len });
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { tag, len, max });
    }
    let total = len + 1;
    if buf.len() < total {
        Ok(None)
    } else {
        Ok(Some(total))
    }
}

/// Message types a client may send once the session is established.
#[inline]
pub fn is_frontend_type(tag: u8) -> bool {
    use super::tag::frontend::*;
    matches!(
        tag,
        BIND | CLOSE
            | COPY_DATA
            | COPY_DONE
            | COPY_FAIL
            | DESCRIBE
            | EXECUTE
            | FLUSH
            | FUNCTION_CALL
            | PARSE
            | QUERY
            | SYNC
            | TERMINATE
    )
}

/// A borrowed view of one frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub tag: u8,
    /// The bytes after the length field.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Views a buffer that `check` accepted.
    pub fn view(buf: &'a [u8], total: usize) -> Frame<'a> {
        Frame {
            tag: buf[0],
            body: &buf[5..total],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_frames_need_more() {
        assert_eq!(check(b"", 100), Ok(None));
        assert_eq!(check(b"Q\0\0\0", 100), Ok(None));
        assert_eq!(check(b"Q\0\0\0\x09abc", 100), Ok(None));
    }

    #[test]
    fn complete_frame_length_includes_type_byte() {
        assert_eq!(check(b"Q\0\0\0\x09abc\0rest", 100), Ok(Some(10)));
        assert_eq!(check(b"S\0\0\0\x04", 100), Ok(Some(5)));
    }

    #[test]
    fn lengths_below_four_are_rejected() {
        assert_eq!(
            check(b"Q\0\0\0\x03", 100),
            Err(FrameError::BadLength { tag: b'Q', len: 3 })
        );
        assert!(matches!(
            check(b"Q\xff\xff\xff\xff", 100),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn oversized_frames_are_rejected_before_buffering() {
        let err = check(b"Q\x10\0\0\0", 1024).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                tag: b'Q',
                len: 0x1000_0000,
                max: 1024
            }
        );
        assert!(err.to_string().contains("over the limit of 1024"));
    }

    #[test]
    fn frontend_types() {
        for t in b"BCdcfDEHFPQSX" {
            assert!(is_frontend_type(*t));
        }
        for t in crate::protocol::tag::frontend::ALL {
            assert!(is_frontend_type(t));
        }
        for t in [b'p', b'Z', 0u8, b'T', 0x16] {
            assert!(!is_frontend_type(t));
        }
    }
}
