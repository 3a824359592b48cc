//! How the server reads the session's text: its client encoding (and the
//! database's), and `standard_conforming_strings`.
//!
//! The server reports both in ParameterStatus at startup and whenever
//! they change (before the ReadyForQuery of the message that changed
//! them), so those reports are what pgward follows. Between a message that
//! may change them and that ReadyForQuery, a pipelined message may be read
//! by the server with the old settings or the new: pgward then judges only
//! text that means the same under both (ASCII for the encoding, no
//! backslash for the strings), and refuses the rest with an error that
//! says why.

use std::borrow::Cow;

use crate::policy::{Lexer, Statement};
use crate::protocol::backend;
use crate::protocol::encoding::{DecodeError, Decoder, Encoding};
use crate::protocol::{sqlstate, PgError};

#[derive(Debug, Clone)]
pub struct SessionText {
    server: Encoding,
    /// The client encoding the server reported last (None: a name pgward
    /// does not know: only ASCII is read).
    client: Option<Encoding>,
    decoder: Decoder,
    lexer: Lexer,
    /// The owed index of the last message let through that may change
    /// the client encoding (standard_conforming_strings); cleared by the
    /// ReadyForQuery that answers it.
    encoding_unsettled: Option<u64>,
    strings_unsettled: Option<u64>,
    /// A change was let through in the transaction block still open: its
    /// end (COMMIT, ROLLBACK...) may undo it.
    changed_in_block: bool,
    /// Only UTF-8 text, read as it is, with nothing unsettled: messages
    /// need no decoding at all (the common case, checked once per message).
    pub plain: bool,
}

impl Default for SessionText {
    fn default() -> Self {
        SessionText {
            server: Encoding::UTF8,
            client: Some(Encoding::UTF8),
            decoder: Decoder::UTF8,
            lexer: Lexer::STANDARD,
            encoding_unsettled: None,
            strings_unsettled: None,
            changed_in_block: false,
            plain: true,
        }
    }
}

/// A message body as pgward reads it, or why it cannot, with the body
/// as far as it could be read (for the record).
pub type View<'a> = Result<Cow<'a, [u8]>, (Unreadable, Cow<'a, [u8]>)>;

/// Which of the two a message may change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextChange {
    pub encoding: bool,
    pub strings: bool,
}

impl TextChange {
    pub fn any(self) -> bool {
        self.encoding || self.strings
    }
}

/// Why a message's text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    Decode(DecodeError),
    /// Non-ASCII text while the client encoding may be changing.
    EncodingChanging,
    /// A backslash while standard_conforming_strings may be changing.
    StringsChanging,
}

impl Unreadable {
    pub fn to_pg_error(&self) -> PgError {
        let changing = |what: &str, text: &str| {
            PgError::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "pgward: {what} may be changing (a statement that changes it has not completed), so pgward cannot tell how the server will read this {text}"
                ),
            )
            .with_hint("wait for the result of the statement that changes it before sending this")
        };
        match self {
            Unreadable::Decode(e) => e.to_pg_error(),
            Unreadable::EncodingChanging => changing("client_encoding", "non-ASCII text"),
            Unreadable::StringsChanging => {
                changing("standard_conforming_strings", "text with a backslash")
            }
        }
    }
}

impl SessionText {
    /// The settings the server reported at startup (its ParameterStatus
    /// messages among `frames`).
    pub fn from_startup(frames: &[u8]) -> SessionText {
        let mut text = SessionText::default();
        let mut rest = frames;
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let Some(body) = rest.get(5..1 + len) else {
                break;
            };
            if let backend::Message::ParameterStatus(p) = backend::Message::parse(rest[0], body) {
                text.on_parameter_status(p);
            }
            rest = &rest[1 + len.max(4)..];
        }
        text
    }

    /// A ParameterStatus from the server.
    pub fn on_parameter_status(&mut self, status: backend::ParameterStatus<'_>) {
        let Some((name, value)) = status.get() else {
            return;
        };
        match name {
            "client_encoding" => self.client = Encoding::lookup(value),
            // A server encoding pgward does not know is read as SQL_ASCII
            // would be; every server encoding is ASCII-safe.
            "server_encoding" => {
                self.server = Encoding::lookup(value).unwrap_or(Encoding::SQL_ASCII)
            }
            "standard_conforming_strings" => {
                self.lexer = Lexer {
                    escapes_in_strings: !value.eq_ignore_ascii_case("on"),
                }
            }
            _ => return,
        }
        self.update();
    }

    fn update(&mut self) {
        let client = self.client.unwrap_or(Encoding::UNKNOWN);
        self.decoder = Decoder::for_session(client, self.server);
        self.plain = self.decoder.is_utf8()
            && self.encoding_unsettled.is_none()
            && self.strings_unsettled.is_none();
    }

    /// The lexer the server reads this session's SQL with.
    pub fn lexer(&self) -> Lexer {
        self.lexer
    }

    pub fn decoder(&self) -> Decoder {
        self.decoder
    }

    /// A text value of a Bind (a parameter) as the server will read it;
    /// None when it cannot be read (not valid in the encoding, or
    /// non-ASCII while the encoding may be changing).
    pub fn value(&self, bytes: &[u8]) -> Option<String> {
        if self.encoding_unsettled.is_some() && !bytes.is_ascii() {
            return None;
        }
        self.decoder.decode(bytes).ok().map(Cow::into_owned)
    }

    /// What running `statements` may change (see `changes_text`).
    pub fn changes<'a>(&self, statements: impl IntoIterator<Item = &'a Statement>) -> TextChange {
        let mut change = TextChange::default();
        for st in statements {
            let (e, s) = changes_text(st, self.changed_in_block);
            change.encoding |= e;
            change.strings |= s;
        }
        change
    }

    /// The message at owed index `index`, let through, may make `change`:
    /// until its ReadyForQuery, later text is read with care.
    pub fn note_change(&mut self, index: u64, change: TextChange) {
        if change.encoding {
            self.encoding_unsettled = Some(index);
        }
        if change.strings {
            self.strings_unsettled = Some(index);
        }
        if change.any() {
            // Made in a block (even one begun by messages still queued), a
            // change lasts only if the block commits: until a
            // ReadyForQuery says no block is open, ending one is a change.
            self.changed_in_block = true;
            self.update();
        }
    }

    /// A ReadyForQuery answering the message at owed index `index` (the
    /// Sync or Query it ends), with transaction status `status`: what the
    /// server reported before it is what it reads with now.
    pub fn on_ready(&mut self, index: u64, status: u8) {
        if !self.changed_in_block {
            // Nothing was let through that could change them.
            return;
        }
        for unsettled in [&mut self.encoding_unsettled, &mut self.strings_unsettled] {
            if unsettled.is_some_and(|u| u <= index) {
                *unsettled = None;
            }
        }
        if status == b'I' && self.encoding_unsettled.is_none() && self.strings_unsettled.is_none() {
            self.changed_in_block = false;
        }
        self.update();
    }

    /// The body of a client message as pgward reads it: its SQL text and
    /// names in UTF-8, the way the server will read them. Borrowed when
    /// nothing needs decoding. Err(reason, the body with what could not be
    /// read replaced, for the record).
    pub fn view<'a>(&self, tag: u8, body: &'a [u8]) -> View<'a> {
        // Bytes before the C strings, and which of those are SQL text.
        let (skip, fields): (usize, &[bool]) = match tag {
            b'Q' => (0, &[true]),
            b'P' => (0, &[false, true]),
            b'B' => (0, &[false, false]),
            b'E' => (0, &[false]),
            b'D' | b'C' => (1, &[false]),
            _ => return Ok(Cow::Borrowed(body)),
        };
        self.decode_fields(body, skip, fields)
    }

    fn decode_fields<'a>(&self, body: &'a [u8], skip: usize, fields: &[bool]) -> View<'a> {
        // Split off the C strings; a malformed body is left to the
        // protocol state, which ends the session over it.
        let Some(mut rest) = body.get(skip..) else {
            return Ok(Cow::Borrowed(body));
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(fields.len());
        for _ in fields {
            let Some(end) = rest.iter().position(|b| *b == 0) else {
                return Ok(Cow::Borrowed(body));
            };
            parts.push(&rest[..end]);
            rest = &rest[end + 1..];
        }
        let mut error = None;
        let mut decoded: Vec<Cow<'a, str>> = Vec::with_capacity(parts.len());
        let mut changed = false;
        for (part, &sql) in parts.iter().zip(fields) {
            if sql && error.is_none() {
                if self.encoding_unsettled.is_some() && !part.is_ascii() {
                    error = Some(Unreadable::EncodingChanging);
                } else if self.strings_unsettled.is_some() && part.contains(&b'\\') {
                    error = Some(Unreadable::StringsChanging);
                }
            }
            match self.decoder.decode(part) {
                Ok(text) => {
                    changed |= matches!(text, Cow::Owned(_));
                    decoded.push(text);
                }
                Err(e) => {
                    if error.is_none() {
                        error = Some(Unreadable::Decode(e));
                    }
                    changed = true;
                    decoded.push(self.decoder.decode_lossy(part));
                }
            }
        }
        let view = if changed {
            let mut out = Vec::with_capacity(body.len() + 16);
            out.extend_from_slice(&body[..skip]);
            for text in &decoded {
                out.extend_from_slice(text.as_bytes());
                out.push(0);
            }
            out.extend_from_slice(rest);
            Cow::Owned(out)
        } else {
            Cow::Borrowed(body)
        };
        match error {
            None => Ok(view),
            Some(e) => Err((e, view)),
        }
    }
}

/// Whether a statement let through may change the client encoding, and
/// standard_conforming_strings: it sets or resets one (or all settings, or
/// one whose name pgward cannot read), DISCARDs ALL, or ends a transaction
/// block in which one was changed (ROLLBACK undoes a SET; COMMIT ends a SET
/// LOCAL).
fn changes_text(st: &Statement, changed_in_block: bool) -> (bool, bool) {
    let sets = |name: &str| {
        st.settings.iter().any(|c| {
            c.name.eq_ignore_ascii_case(name) || c.name.eq_ignore_ascii_case("all") || c.name == "?"
        })
    };
    let every = st.kind == "DiscardStmt" || (changed_in_block && st.kind == "TransactionStmt");
    (
        every || sets("client_encoding"),
        every || sets("standard_conforming_strings"),
    )
}
