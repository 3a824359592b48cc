//! The protocol state of one session, kept from the messages that pass:
//! transaction status, prepared statements and portals, and the queue of
//! responses the server still owes the client. Policy decisions (which
//! statement a portal runs, where an injected error must go) read it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::protocol::messages::{
    parse_bind, parse_execute, parse_parse, parse_query, parse_target,
};
use crate::protocol::PgError;

/// Statement and portal names to what they stand for. Looked up for every
/// Bind and Execute, so hashed with foldhash (seeded per map, as the
/// session's statement cache is) rather than SipHash.
pub type NameMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// A response the client is waiting for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owed {
    /// A simple Query: rows, completions and errors, then ReadyForQuery.
    Query,
    Parse {
        name: String,
        sql: Arc<str>,
    },
    Bind {
        portal: String,
        statement: String,
    },
    Describe,
    Execute,
    Close {
        kind: u8,
        name: String,
    },
    Sync,
    FunctionCall,
}

/// Which way COPY data flows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    None,
    In,
    Out,
    Both,
}

#[derive(Debug)]
pub struct ProtocolState {
    /// Status byte of the last ReadyForQuery: 'I', 'T' or 'E'.
    pub tx_status: u8,
    /// Prepared statements by name ("" is the unnamed one): their SQL.
    pub statements: NameMap<Arc<str>>,
    /// Portals by name: the statement each was bound from.
    pub portals: NameMap<String>,
    pub owed: VecDeque<Owed>,
    pub copy: CopyState,
    /// Protocol mismatches seen (for diagnostics; the relay never trusts
    /// this state for correctness of relayed bytes).
    pub anomalies: u64,
    /// Entries pushed to and popped from `owed` so far: an entry's index
    /// is its position in this count.
    pushed: u64,
    popped: u64,
    /// Denied messages by owed index: the upstream error that answers the
    /// stand-in pgward sent is replaced by this one.
    denials: VecDeque<(u64, PgError)>,
}

impl Default for ProtocolState {
    fn default() -> Self {
        ProtocolState {
            tx_status: b'I',
            statements: NameMap::default(),
            portals: NameMap::default(),
            owed: VecDeque::new(),
            copy: CopyState::None,
            anomalies: 0,
            pushed: 0,
            popped: 0,
            denials: VecDeque::new(),
        }
    }
}

/// A client message pgward could not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub u8);

impl ProtocolState {
    pub fn with_status(tx_status: u8) -> ProtocolState {
        ProtocolState {
            tx_status,
            ..ProtocolState::default()
        }
    }

    /// Nothing in flight and outside a transaction block.
    pub fn is_idle(&self) -> bool {
        self.owed.is_empty() && self.tx_status == b'I' && self.copy == CopyState::None
    }

    /// Index of the response owed to the message recorded last.
    pub fn last_index(&self) -> u64 {
        self.pushed.saturating_sub(1)
    }

    /// Index of the response the server's next message belongs to.
    pub fn front_index(&self) -> u64 {
        self.popped
    }

    fn push(&mut self, owed: Owed) {
        self.owed.push_back(owed);
        self.pushed += 1;
    }

    fn pop(&mut self) -> Option<Owed> {
        let front = self.owed.pop_front();
        if front.is_some() {
            self.popped += 1;
            while self.denials.front().is_some_and(|(i, _)| *i < self.popped) {
                self.denials.pop_front();
            }
        }
        front
    }

    /// Marks the message just recorded as denied: the error answering it
    /// will be `err`.
    pub fn deny_last(&mut self, err: PgError) {
        if self.pushed > self.popped {
            self.denials.push_back((self.pushed - 1, err));
        }
    }

    /// The statement a portal the client bound (or is binding) through
    /// this connection runs; None for a portal pgward never saw bound.
    pub fn portal_statement(&self, portal: &str) -> Option<&str> {
        self.owed
            .iter()
            .rev()
            .find_map(|o| match o {
                Owed::Bind {
                    portal: p,
                    statement,
                } if p == portal => Some(statement.as_str()),
                _ => None,
            })
            .or_else(|| self.portals.get(portal).map(String::as_str))
    }

    /// Records a client message about to go upstream.
    pub fn on_frontend(&mut self, tag: u8, body: &[u8]) -> Result<(), Malformed> {
        let bad = || Malformed(tag);
        match tag {
            b'Q' => {
                parse_query(body).ok_or_else(bad)?;
                self.push(Owed::Query);
            }
            b'P' => {
                let (name, sql) = parse_parse(body).ok_or_else(bad)?;
                self.push(Owed::Parse {
                    name: name.to_owned(),
                    sql: sql.into(),
                });
            }
            b'B' => {
                let (portal, statement) = parse_bind(body).ok_or_else(bad)?;
                self.push(Owed::Bind {
                    portal: portal.to_owned(),
                    statement: statement.to_owned(),
                });
            }
            b'D' => {
                parse_target(body).ok_or_else(bad)?;
                self.push(Owed::Describe);
            }
            b'E' => {
                parse_execute(body).ok_or_else(bad)?;
                self.push(Owed::Execute);
            }
            b'C' => {
                let (kind, name) = parse_target(body).ok_or_else(bad)?;
                self.push(Owed::Close {
                    kind,
                    name: name.to_owned(),
                });
            }
            b'S' => self.push(Owed::Sync),
            b'F' => self.push(Owed::FunctionCall),
            b'c' | b'f' if self.copy == CopyState::In || self.copy == CopyState::Both => {
                // The server ignores a Sync that reaches it in COPY IN mode
                // (tokio-postgres sends Bind, Execute, Sync before the
                // data): no ReadyForQuery answers those sent after the
                // COPY's own message, which is at the front.
                if self.owed.len() > 1 && self.owed.iter().skip(1).all(|o| *o == Owed::Sync) {
                    let ignored = self.owed.len() - 1;
                    self.owed.truncate(1);
                    self.pushed -= ignored as u64;
                }
                self.copy = if self.copy == CopyState::Both {
                    CopyState::Out
                } else {
                    CopyState::None
                };
            }
            _ => {}
        }
        Ok(())
    }

    /// Records a server message about to go to the client. Returns the
    /// error to send instead when the message answers a denied one.
    pub fn on_backend(&mut self, tag: u8, body: &[u8]) -> Option<PgError> {
        let mut replacement = None;
        if tag == b'E' && self.denials.front().is_some_and(|(i, _)| *i == self.popped) {
            replacement = self.denials.pop_front().map(|(_, e)| e);
        }
        match tag {
            b'1' => match self.pop() {
                Some(Owed::Parse { name, sql }) => {
                    self.statements.insert(name, sql);
                }
                other => self.mismatch(other),
            },
            b'2' => match self.pop() {
                Some(Owed::Bind { portal, statement }) => {
                    self.portals.insert(portal, statement);
                }
                other => self.mismatch(other),
            },
            b'3' => match self.pop() {
                Some(Owed::Close { kind, name }) => {
                    if kind == b'S' {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                }
                other => self.mismatch(other),
            },
            // RowDescription ends a Describe; in a Query or Execute it only
            // announces rows.
            b'T' | b'n' if matches!(self.owed.front(), Some(Owed::Describe)) => {
                self.pop();
            }
            b'C' | b'I' | b's' if matches!(self.owed.front(), Some(Owed::Execute)) => {
                self.copy = CopyState::None;
                self.pop();
            }
            b'C' => self.copy = CopyState::None,
            b'G' => self.copy = CopyState::In,
            b'H' => self.copy = CopyState::Out,
            b'W' => self.copy = CopyState::Both,
            b'E' => {
                self.copy = CopyState::None;
                // In the extended protocol an error skips everything up to
                // the next Sync; a simple Query still ends in ReadyForQuery.
                while let Some(front) = self.owed.front() {
                    if matches!(front, Owed::Sync | Owed::Query | Owed::FunctionCall) {
                        break;
                    }
                    self.pop();
                }
            }
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                loop {
                    match self.pop() {
                        Some(Owed::Sync | Owed::Query | Owed::FunctionCall) | None => break,
                        Some(_) => self.anomalies += 1,
                    }
                }
                self.tx_status = status;
                self.copy = CopyState::None;
                if status == b'I' {
                    // Portals do not outlive their transaction.
                    self.portals.clear();
                }
            }
            _ => {}
        }
        replacement
    }

    fn mismatch(&mut self, _got: Option<Owed>) {
        self.anomalies += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_slice(sql.as_bytes());
        b.put_u8(0);
        b.put_i16(0);
        b.to_vec()
    }

    fn bind(portal: &str, stmt: &str) -> Vec<u8> {
        format!("{portal}\0{stmt}\0\0\0\0\0\0\0").into_bytes()
    }

    #[test]
    fn pipeline_with_statements_and_portals() {
        let mut s = ProtocolState::default();
        s.on_frontend(b'P', &parse("s1", "select 1")).unwrap();
        s.on_frontend(b'B', &bind("p1", "s1")).unwrap();
        s.on_frontend(b'E', b"p1\0\0\0\0\0").unwrap();
        s.on_frontend(b'S', b"").unwrap();
        s.on_frontend(b'Q', b"begin\0").unwrap();
        assert_eq!(s.owed.len(), 5);
        s.on_backend(b'1', b"");
        assert_eq!(s.statements["s1"].as_ref(), "select 1");
        s.on_backend(b'2', b"");
        assert_eq!(s.portals["p1"], "s1");
        s.on_backend(b'D', b"");
        s.on_backend(b'C', b"SELECT 1\0");
        s.on_backend(b'Z', b"I");
        assert_eq!(s.owed, VecDeque::from([Owed::Query]));
        assert!(s.portals.is_empty(), "portals end with the transaction");
        s.on_backend(b'C', b"BEGIN\0");
        s.on_backend(b'Z', b"T");
        assert_eq!(s.tx_status, b'T');
        assert!(!s.is_idle());
        assert_eq!(s.anomalies, 0);
    }

    #[test]
    fn error_skips_to_sync() {
        let mut s = ProtocolState::default();
        s.on_frontend(b'P', &parse("bad", "selec")).unwrap();
        s.on_frontend(b'B', &bind("", "bad")).unwrap();
        s.on_frontend(b'E', b"\0\0\0\0\0").unwrap();
        s.on_frontend(b'S', b"").unwrap();
        s.on_frontend(b'P', &parse("good", "select 1")).unwrap();
        s.on_frontend(b'S', b"").unwrap();
        s.on_backend(b'E', b"");
        assert_eq!(s.owed.front(), Some(&Owed::Sync));
        s.on_backend(b'Z', b"I");
        s.on_backend(b'1', b"");
        s.on_backend(b'Z', b"I");
        assert!(!s.statements.contains_key("bad"));
        assert!(s.statements.contains_key("good"));
        assert!(s.is_idle());
        assert_eq!(s.anomalies, 0);
    }

    #[test]
    fn copy_in_tracking() {
        let mut s = ProtocolState::default();
        s.on_frontend(b'Q', b"copy t from stdin\0").unwrap();
        s.on_backend(b'G', b"");
        assert_eq!(s.copy, CopyState::In);
        s.on_frontend(b'd', b"1\n").unwrap();
        s.on_frontend(b'c', b"").unwrap();
        assert_eq!(s.copy, CopyState::None);
        s.on_backend(b'C', b"COPY 1\0");
        s.on_backend(b'Z', b"I");
        assert!(s.is_idle());
    }

    #[test]
    fn malformed_messages_are_reported() {
        let mut s = ProtocolState::default();
        assert_eq!(s.on_frontend(b'Q', b"no terminator"), Err(Malformed(b'Q')));
        assert_eq!(s.on_frontend(b'P', b"x\0y\0\xff"), Err(Malformed(b'P')));
        assert_eq!(s.on_frontend(b'C', b"Zx\0"), Err(Malformed(b'C')));
    }
}
