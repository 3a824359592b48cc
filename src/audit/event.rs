//! One audit event, and its canonical encoding: the bytes that are hashed
//! into the chain and that the write-ahead log stores. Every reader (the
//! WAL recovery, `audit verify`, replay) rebuilds events from what it
//! reads and re-encodes them, so one encoding serves all of them.

use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Bumped whenever a column is added, removed or changes meaning.
pub const SCHEMA_VERSION: u16 = 1;

pub type Hash = [u8; 32];
pub const GENESIS: Hash = [0; 32];

/// A text value: a constant, or shared. Constants ("allow", "ok", class
/// names) cost sessions no allocation and no shared reference count.
#[derive(Clone)]
pub enum Str {
    Static(&'static str),
    Shared(Arc<str>),
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Str::Static(s) => s,
            Str::Shared(s) => s,
        }
    }
}

impl PartialEq for Str {
    fn eq(&self, other: &Str) -> bool {
        **self == **other
    }
}

impl Eq for Str {}

impl std::hash::Hash for Str {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (**self).hash(h)
    }
}

impl std::fmt::Display for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Str {
        Str::Shared(s.into())
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        Str::Shared(s.into())
    }
}

impl From<Arc<str>> for Str {
    fn from(s: Arc<str>) -> Str {
        Str::Shared(s)
    }
}

/// A text column (absent is NULL, never the empty string).
pub type Text = Option<Str>;
/// A list column whose items may be NULL (bind parameters can be).
pub type List = Option<Arc<[Option<Str>]>>;

/// A constant text column value.
pub const fn lit(s: &'static str) -> Text {
    Some(Str::Static(s))
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    SessionStart,
    SessionEnd,
    /// A connection that never became a session (bad password, no role).
    SessionRefused,
    /// One statement: allowed and run, denied, or not run.
    Statement,
    /// Events pgward had to drop (the queue was full); `rows` says how many.
    Gap,
    /// A statement was held for approval (`approval_id`, `statement`).
    ApprovalRequest,
    /// A held statement was approved, denied, expired or withdrawn
    /// (`outcome`), by whom (`approver`), why (`detail`).
    ApprovalDecision,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::SessionStart,
        Kind::SessionEnd,
        Kind::SessionRefused,
        Kind::Statement,
        Kind::Gap,
        Kind::ApprovalRequest,
        Kind::ApprovalDecision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SessionStart => "session_start",
            Kind::SessionEnd => "session_end",
            Kind::SessionRefused => "session_refused",
            Kind::Statement => "statement",
            Kind::Gap => "gap",
            Kind::ApprovalRequest => "approval_request",
            Kind::ApprovalDecision => "approval_decision",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn code(self) -> u8 {
        self as u8
    }
}

/// Declares the event struct from its column lists, so that the struct,
/// the canonical encoding and the Arrow schema cannot disagree on a column.
macro_rules! event {
    (texts: [$($t:ident),* $(,)?], lists: [$($l:ident),* $(,)?] $(,)?) => {
        /// One row of the audit log. Column meanings: `docs/audit.md`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Event {
            /// Position in this instance's chain, from 1, without gaps.
            pub seq: u64,
            /// Microseconds since the Unix epoch, UTC.
            pub time_us: i64,
            pub kind: Kind,
            $(pub $t: Text,)*
            pub tls: Option<bool>,
            /// Rows returned or affected (for `gap`: events lost).
            pub rows: Option<i64>,
            pub duration_us: Option<i64>,
            $(pub $l: List,)*
            /// The hash of the event before this one in the chain.
            pub prev_hash: Hash,
            /// SHA-256 of this event's canonical encoding.
            pub hash: Hash,
        }

        /// Names of the text columns, in canonical order.
        pub const TEXT_COLUMNS: &[&str] = &[$(stringify!($t)),*];
        /// Names of the list columns, in canonical order.
        pub const LIST_COLUMNS: &[&str] = &[$(stringify!($l)),*];

        impl Event {
            /// An event of `kind` with every optional column NULL.
            pub fn new(kind: Kind, time_us: i64) -> Event {
                Event {
                    seq: 0,
                    time_us,
                    kind,
                    $($t: None,)*
                    tls: None,
                    rows: None,
                    duration_us: None,
                    $($l: None,)*
                    prev_hash: GENESIS,
                    hash: GENESIS,
                }
            }
            pub fn texts(&self) -> [&Text; TEXT_COLUMNS.len()] {
                [$(&self.$t),*]
            }
            pub fn texts_mut(&mut self) -> [&mut Text; TEXT_COLUMNS.len()] {
                [$(&mut self.$t),*]
            }
            pub fn lists(&self) -> [&List; LIST_COLUMNS.len()] {
                [$(&self.$l),*]
            }
            pub fn lists_mut(&mut self) -> [&mut List; LIST_COLUMNS.len()] {
                [$(&mut self.$l),*]
            }
        }
    };
}

event! {
    texts: [
        instance, session_id, identity, auth_method, role, client_addr,
        application_name, database, upstream_user, statement, fingerprint,
        decision, rule, approval_id, approver, outcome, sqlstate,
        error_message, detail,
    ],
    lists: [classes, tables, masked_columns, parameters, parameter_formats],
}

/// Why a byte string is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed audit event: {0}")]
pub struct Malformed(pub &'static str);

impl Event {
    /// The canonical encoding: every column but `hash`, in a fixed order,
    /// each value length-prefixed and NULL distinct from empty.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SCHEMA_VERSION.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_us.to_be_bytes());
        out.push(self.kind.code());
        for t in self.texts() {
            put_text(out, t.as_deref());
        }
        match self.tls {
            None => out.push(0),
            Some(b) => out.push(1 + b as u8),
        }
        for n in [self.rows, self.duration_us] {
            match n {
                None => out.push(0),
                Some(n) => {
                    out.push(1);
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
        }
        for l in self.lists() {
            match l {
                None => out.push(0),
                Some(items) => {
                    out.push(1);
                    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                    for item in items.iter() {
                        put_text(out, item.as_deref());
                    }
                }
            }
        }
        out.extend_from_slice(&self.prev_hash);
    }

    /// The inverse of `encode`; `hash` is left zero.
    pub fn decode(mut b: &[u8]) -> Result<Event, Malformed> {
        let r = &mut b;
        if u16::from_be_bytes(take(r)?) != SCHEMA_VERSION {
            return Err(Malformed("unknown schema version"));
        }
        let seq = u64::from_be_bytes(take(r)?);
        let time_us = i64::from_be_bytes(take(r)?);
        let [code] = take::<1>(r)?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.code() == code)
            .ok_or(Malformed("unknown kind"))?;
        let mut e = Event::new(kind, time_us);
        e.seq = seq;
        for t in e.texts_mut() {
            *t = get_text(r)?;
        }
        e.tls = match take::<1>(r)? {
            [0] => None,
            [1] => Some(false),
            [2] => Some(true),
            _ => return Err(Malformed("bad boolean")),
        };
        for n in [&mut e.rows, &mut e.duration_us] {
            *n = match take::<1>(r)? {
                [0] => None,
                [1] => Some(i64::from_be_bytes(take(r)?)),
                _ => return Err(Malformed("bad integer marker")),
            };
        }
        for l in e.lists_mut() {
            *l = match take::<1>(r)? {
                [0] => None,
                [1] => {
                    let n = u32::from_be_bytes(take(r)?) as usize;
                    if n > r.len() {
                        return Err(Malformed("list longer than the event"));
                    }
                    let items = (0..n).map(|_| get_text(r)).collect::<Result<Vec<_>, _>>()?;
                    Some(items.into())
                }
                _ => return Err(Malformed("bad list marker")),
            };
        }
        e.prev_hash = take(r)?;
        if !r.is_empty() {
            return Err(Malformed("trailing bytes"));
        }
        Ok(e)
    }

    /// The hash this event must carry, from its content and `prev_hash`.
    pub fn compute_hash(&self, scratch: &mut Vec<u8>) -> Hash {
        scratch.clear();
        self.encode(scratch);
        Sha256::digest(&scratch[..]).into()
    }

    /// Links the event after `prev` in the chain.
    pub fn seal(&mut self, seq: u64, prev: Hash, scratch: &mut Vec<u8>) {
        self.seq = seq;
        self.prev_hash = prev;
        self.hash = self.compute_hash(scratch);
    }
}

fn put_text(out: &mut Vec<u8>, t: Option<&str>) {
    match t {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn take<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], Malformed> {
    if r.len() < N {
        return Err(Malformed("truncated"));
    }
    let (head, rest) = r.split_at(N);
    *r = rest;
    let mut a = [0u8; N];
    a.copy_from_slice(head);
    Ok(a)
}

fn get_text(r: &mut &[u8]) -> Result<Text, Malformed> {
    match take::<1>(r)? {
        [0] => Ok(None),
        [1] => {
            let n = u32::from_be_bytes(take(r)?) as usize;
            if n > r.len() {
                return Err(Malformed("text longer than the event"));
            }
            let (s, rest) = r.split_at(n);
            *r = rest;
            let s = std::str::from_utf8(s).map_err(|_| Malformed("text is not UTF-8"))?;
            Ok(Some(s.into()))
        }
        _ => Err(Malformed("bad text marker")),
    }
}

/// Lower-case hex of a hash, for messages and file metadata.
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, byte) in h.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(h)
}

/// A text column value.
pub fn text(s: impl Into<Str>) -> Text {
    Some(s.into())
}

/// A list column of non-NULL strings.
pub fn list<I, S>(items: I) -> List
where
    I: IntoIterator<Item = S>,
    S: Into<Str>,
{
    Some(items.into_iter().map(|s| Some(s.into())).collect())
}

/// A list column of constants.
pub fn static_list(items: impl IntoIterator<Item = &'static str>) -> List {
    Some(items.into_iter().map(|s| Some(Str::Static(s))).collect())
}

#[cfg(test)]
pub(crate) fn sample(seq: u64) -> Event {
    let mut e = Event::new(Kind::Statement, 1_700_000_000_000_000 + seq as i64);
    e.instance = text("test");
    e.session_id = text("s1");
    e.identity = text("alice");
    e.statement = text(format!("SELECT {seq}"));
    e.classes = list(["read"]);
    e.tables = Some(Arc::from(vec![]));
    e.parameters = Some(Arc::from(vec![None, Some("x".into())]));
    e.rows = Some(1);
    e.tls = Some(false);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_null_differs_from_empty() {
        let mut e = sample(7);
        e.seal(7, [9; 32], &mut Vec::new());
        let mut buf = Vec::new();
        e.encode(&mut buf);
        let mut back = Event::decode(&buf).unwrap();
        back.hash = back.compute_hash(&mut Vec::new());
        assert_eq!(back, e);

        let mut empty = e.clone();
        empty.detail = text("");
        assert_ne!(empty.compute_hash(&mut Vec::new()), e.hash);
        let mut no_list = e.clone();
        no_list.tables = None;
        assert_ne!(no_list.compute_hash(&mut Vec::new()), e.hash);
    }

    #[test]
    fn every_column_is_hashed() {
        let base = sample(1);
        let h = base.compute_hash(&mut Vec::new());
        for (i, name) in TEXT_COLUMNS.iter().enumerate() {
            let mut e = base.clone();
            *e.texts_mut()[i] = text("changed");
            assert_ne!(e.compute_hash(&mut Vec::new()), h, "{name}");
        }
        for (i, name) in LIST_COLUMNS.iter().enumerate() {
            let mut e = base.clone();
            *e.lists_mut()[i] = list(["changed"]);
            assert_ne!(e.compute_hash(&mut Vec::new()), h, "{name}");
        }
        let mut e = base.clone();
        e.prev_hash = [1; 32];
        assert_ne!(e.compute_hash(&mut Vec::new()), h);
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        sample(3).encode(&mut buf);
        for cut in 0..buf.len() {
            assert!(Event::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[2..10].copy_from_slice(&[0xff; 8]);
        bad[19] = 99;
        assert!(Event::decode(&bad).is_err());
        let mut huge = buf;
        // The first text's length says 4 GiB.
        huge[20..24].copy_from_slice(&[0xff; 4]);
        assert!(Event::decode(&huge).is_err());
    }

    #[test]
    fn hex_round_trips() {
        let h: Hash = core::array::from_fn(|i| i as u8 * 7);
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex("zz"), None);
    }
}
