//! Shared by the fuzz tests: the recorded client sessions under
//! `tests/fuzz/`, and the mutations applied to them (bit flips, truncation,
//! length-field changes, splicing, repeating).
//!
//! A recording is a sequence of chunks as a recording proxy read them, in
//! order: one direction byte (`F` client to server, `B` server to client),
//! a big-endian u32 length, then that many bytes. `tests/fuzz_record.rs`
//! writes them (see `tests/fuzz/README.md`).
#![allow(dead_code)]

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::sample::Index;

/// Chunks read from the client (frontend) or the server (backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Frontend,
    Backend,
}

#[derive(Debug, Clone)]
pub struct Recording {
    pub name: String,
    pub chunks: Vec<(Dir, Vec<u8>)>,
}

impl Recording {
    /// Everything one side sent, in order.
    pub fn bytes(&self, dir: Dir) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|(d, _)| *d == dir)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// What the client sent, split into its first packets (untyped:
    /// SSLRequest, StartupMessage, CancelRequest), its authentication
    /// messages ('p') and the rest (the session proper).
    pub fn client_parts(&self) -> ClientParts {
        split_client(&self.bytes(Dir::Frontend))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientParts {
    pub first_packets: Vec<Vec<u8>>,
    pub auth: Vec<Vec<u8>>,
    /// Typed frames after authentication, as one byte stream.
    pub session: Vec<u8>,
}

/// Splits a well-formed client stream; see `Recording::client_parts`.
pub fn split_client(buf: &[u8]) -> ClientParts {
    let mut parts = ClientParts::default();
    let mut at = 0;
    // Untyped packets: SSLRequest / GSSENCRequest come before the startup
    // message, a CancelRequest stands alone.
    while at + 8 <= buf.len() {
        let code = be32(&buf[at + 4..]);
        let len = match usize::try_from(be32(&buf[at..])) {
            Ok(len) if len >= 8 && len <= buf.len() - at => len,
            _ => break,
        };
        parts.first_packets.push(buf[at..at + len].to_vec());
        at += len;
        if code != 80_877_103 && code != 80_877_104 {
            break;
        }
    }
    while at + 5 <= buf.len() && buf[at] == b'p' {
        let total = match usize::try_from(be32(&buf[at + 1..])) {
            Ok(len) if len >= 4 && len < buf.len() - at => len + 1,
            _ => break,
        };
        parts.auth.push(buf[at..at + total].to_vec());
        at += total;
    }
    parts.session = buf[at..].to_vec();
    parts
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes a recording file.
pub fn decode(name: &str, bytes: &[u8]) -> Recording {
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let dir = match bytes[at] {
            b'F' => Dir::Frontend,
            b'B' => Dir::Backend,
            other => panic!("{name}: bad direction byte {other:#x} at {at}"),
        };
        let len = u32::from_be_bytes([bytes[at + 1], bytes[at + 2], bytes[at + 3], bytes[at + 4]])
            as usize;
        chunks.push((dir, bytes[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    Recording {
        name: name.to_owned(),
        chunks,
    }
}

/// Encodes a recording file.
pub fn encode(chunks: &[(Dir, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (dir, b) in chunks {
        out.push(match dir {
            Dir::Frontend => b'F',
            Dir::Backend => b'B',
        });
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

/// Every recording under `tests/fuzz/`, by file name.
pub fn recordings() -> Vec<Recording> {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("tests/fuzz/ holds the recorded sessions")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rec"))
        .collect();
    files.sort();
    let recs: Vec<Recording> = files
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap_or_default().to_string_lossy();
            decode(&name, &std::fs::read(p).expect("read a recording"))
        })
        .collect();
    assert!(
        recs.len() >= 4,
        "expected the recorded psql, pgbench and tokio-postgres sessions under {}",
        fixture_dir().display()
    );
    recs
}

/// Proptest cases: `PROPTEST_CASES` when set (the long run), else `short`.
pub fn cases(short: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(short)
}

pub fn config(short: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(short),
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// Values a mutated length field takes: edge cases and off-by-ones.
#[derive(Debug, Clone)]
pub enum NewLength {
    Fixed(i32),
    /// The current length plus this.
    Delta(i32),
}

/// One change to a byte stream.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        value: u8,
    },
    Truncate {
        at: Index,
    },
    Delete {
        at: Index,
        len: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    /// Rewrites the length field of the n-th frame.
    SetLength {
        frame: Index,
        len: NewLength,
    },
    /// Rewrites the type byte of the n-th frame.
    SetTag {
        frame: Index,
        tag: u8,
    },
    /// Repeats the n-th frame.
    Repeat {
        frame: Index,
        times: u8,
    },
    /// Drops the n-th frame.
    DropFrame {
        frame: Index,
    },
    SwapFrames {
        a: Index,
        b: Index,
    },
    /// Inserts bytes from another stream of the pool.
    Splice {
        at: Index,
        donor: Index,
        from: Index,
        len: u16,
    },
}

fn new_length() -> impl Strategy<Value = NewLength> {
    prop_oneof![
        prop::sample::select(vec![
            i32::MIN,
            -1,
            0,
            1,
            3,
            4,
            5,
            8,
            0x3fff_ffff,
            0x4000_0000,
            i32::MAX
        ])
        .prop_map(NewLength::Fixed),
        (-8i32..=8).prop_map(NewLength::Delta),
        any::<i32>().prop_map(NewLength::Fixed),
        (0i32..20_000).prop_map(NewLength::Fixed),
    ]
}

/// Tag bytes that mean something somewhere, and any other.
pub fn tag() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"BCdcfDEHFPQSXpZTRK1230nsIGWAN\0".to_vec()),
        any::<u8>(),
    ]
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        2 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        3 => (any::<Index>(), new_length()).prop_map(|(frame, len)| Mutation::SetLength { frame, len }),
        2 => (any::<Index>(), tag()).prop_map(|(frame, tag)| Mutation::SetTag { frame, tag }),
        1 => (any::<Index>(), 1u8..8).prop_map(|(frame, times)| Mutation::Repeat { frame, times }),
        1 => any::<Index>().prop_map(|frame| Mutation::DropFrame { frame }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapFrames { a, b }),
        2 => (any::<Index>(), any::<Index>(), any::<Index>(), 1u16..512)
            .prop_map(|(at, donor, from, len)| Mutation::Splice { at, donor, from, len }),
    ]
}

/// One to five mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

/// Where each frame starts, for frames whose length fields are sane;
/// `untyped` when the stream opens with a startup-style packet (no type
/// byte). Stops at the first frame that does not fit.
pub fn frame_spans(buf: &[u8], untyped: bool) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = 0;
    if untyped {
        if buf.len() < 4 {
            return spans;
        }
        let len = be32(buf);
        if len < 4 || len as usize > buf.len() {
            return spans;
        }
        spans.push((0, len as usize));
        at = len as usize;
    }
    while at + 5 <= buf.len() {
        let len = be32(&buf[at + 1..]);
        if len < 4 || at + 1 + len as usize > buf.len() {
            break;
        }
        let total = 1 + len as usize;
        spans.push((at, total));
        at += total;
    }
    spans
}

/// Applies `muts` to `buf`; `untyped` as for `frame_spans`, `pool` donates
/// splices. Lengths stay bounded: a stream never grows past 1 MiB.
pub fn apply(buf: &mut Vec<u8>, muts: &[Mutation], untyped: bool, pool: &[Vec<u8>]) {
    const CAP: usize = 1 << 20;
    for m in muts {
        let spans = frame_spans(buf, untyped);
        let frame = |i: &Index| (!spans.is_empty()).then(|| spans[i.index(spans.len())]);
        match m {
            Mutation::FlipBit { at, bit } if !buf.is_empty() => {
                let i = at.index(buf.len());
                buf[i] ^= 1 << bit;
            }
            Mutation::SetByte { at, value } if !buf.is_empty() => {
                let i = at.index(buf.len());
                buf[i] = *value;
            }
            Mutation::Truncate { at } => {
                let i = at.index(buf.len() + 1);
                buf.truncate(i);
            }
            Mutation::Delete { at, len } if !buf.is_empty() => {
                let i = at.index(buf.len());
                let end = (i + *len as usize).min(buf.len());
                buf.drain(i..end);
            }
            Mutation::Insert { at, bytes } => {
                let i = at.index(buf.len() + 1);
                buf.splice(i..i, bytes.iter().copied());
            }
            Mutation::SetLength { frame: f, len } => {
                if let Some((start, total)) = frame(f) {
                    // An untyped first packet has its length at 0, a frame at 1.
                    let field = if untyped && start == 0 { 0 } else { start + 1 };
                    let current = be32(&buf[field..]);
                    let value = match len {
                        NewLength::Fixed(v) => *v,
                        NewLength::Delta(d) => current.wrapping_add(*d),
                    };
                    buf[field..field + 4].copy_from_slice(&value.to_be_bytes());
                    let _ = total;
                }
            }
            Mutation::SetTag { frame: f, tag } => {
                if let Some((start, _)) = frame(f) {
                    if !(untyped && start == 0) {
                        buf[start] = *tag;
                    }
                }
            }
            Mutation::Repeat { frame: f, times } => {
                if let Some((start, total)) = frame(f) {
                    let copy = buf[start..start + total].to_vec();
                    let insert: Vec<u8> = copy
                        .iter()
                        .copied()
                        .cycle()
                        .take(copy.len() * *times as usize)
                        .collect();
                    if buf.len() + insert.len() <= CAP {
                        let end = start + total;
                        buf.splice(end..end, insert);
                    }
                }
            }
            Mutation::DropFrame { frame: f } => {
                if let Some((start, total)) = frame(f) {
                    buf.drain(start..start + total);
                }
            }
            Mutation::SwapFrames { a, b } => {
                if let (Some(x), Some(y)) = (frame(a), frame(b)) {
                    let (first, second) = if x.0 <= y.0 { (x, y) } else { (y, x) };
                    if first.0 + first.1 <= second.0 {
                        let fa = buf[first.0..first.0 + first.1].to_vec();
                        let fb = buf[second.0..second.0 + second.1].to_vec();
                        let middle = buf[first.0 + first.1..second.0].to_vec();
                        let mut swapped = fb;
                        swapped.extend_from_slice(&middle);
                        swapped.extend_from_slice(&fa);
                        buf.splice(first.0..second.0 + second.1, swapped);
                    }
                }
            }
            Mutation::Splice {
                at,
                donor,
                from,
                len,
            } => {
                if pool.is_empty() {
                    continue;
                }
                let d = &pool[donor.index(pool.len())];
                if d.is_empty() {
                    continue;
                }
                let s = from.index(d.len());
                let e = (s + *len as usize).min(d.len());
                let i = at.index(buf.len() + 1);
                if buf.len() + (e - s) <= CAP {
                    buf.splice(i..i, d[s..e].iter().copied());
                }
            }
            _ => {}
        }
    }
}

/// Splits `buf` into chunks whose sizes cycle through `sizes` (each at
/// least 1), as a socket might deliver it.
pub fn chunks<'a>(buf: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < buf.len() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(buf.len());
        let end = (at + n.max(1)).min(buf.len());
        out.push(&buf[at..end]);
        at = end;
        i += 1;
    }
    out
}

/// Chunk sizes: mostly small, sometimes whole reads.
pub fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![3 => 1usize..16, 2 => 16usize..512, 1 => Just(16 * 1024)],
        1..8,
    )
}
