//! Property tests over what clients send: framing, first packets, SASL
//! (SCRAM and OAUTHBEARER), the per-session protocol state and the relay's
//! framing core, fed with recorded psql, pgbench and tokio-postgres
//! sessions (`tests/fuzz/*.rec`), mutated, and with random input.
//!
//! Each property: no panic, memory bounded, and every rejected input gets
//! an error that says what is wrong. Case counts are short here; set
//! `PROPTEST_CASES` for a long run (`scripts/fuzz-long.sh`).

mod fuzzing;

use std::sync::OnceLock;

use bytes::BytesMut;
use fuzzing::{apply, chunk_sizes, chunks, mutations, Dir, Mutation, Recording};
use pgward::auth::oauthbearer::{self, Initial};
use pgward::auth::scram::{self, Binding, ScramError, ScramServer, Verifier};
use pgward::protocol::frame::{self, FrameError};
use pgward::protocol::messages::parse_sasl_initial;
use pgward::protocol::startup::{self, StartupPacket, MAX_STARTUP_PACKET};
use pgward::protocol::{sqlstate, Severity};
use pgward::session::relay::{Core, End};
use pgward::session::state::{Owed, ProtocolState};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use proptest::prelude::*;
use proptest::sample::Index;

struct Corpus {
    recordings: Vec<Recording>,
    /// Every recorded byte stream, both directions: splice donors.
    pool: Vec<Vec<u8>>,
    /// Client streams after authentication.
    sessions: Vec<Vec<u8>>,
    /// Server streams.
    servers: Vec<Vec<u8>>,
    /// First packets (StartupMessage, SSLRequest, CancelRequest).
    first_packets: Vec<Vec<u8>>,
    /// SASL message bodies ('p' without type and length).
    sasl: Vec<Vec<u8>>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let recordings = fuzzing::recordings();
        let mut c = Corpus {
            recordings: recordings.clone(),
            pool: Vec::new(),
            sessions: Vec::new(),
            servers: Vec::new(),
            first_packets: Vec::new(),
            sasl: Vec::new(),
        };
        for r in &recordings {
            let parts = r.client_parts();
            c.first_packets.extend(parts.first_packets);
            c.sasl.extend(parts.auth.iter().map(|f| f[5..].to_vec()));
            if !parts.session.is_empty() {
                c.sessions.push(parts.session);
            }
            c.pool.push(r.bytes(Dir::Frontend));
            let server = r.bytes(Dir::Backend);
            if !server.is_empty() {
                c.servers.push(server.clone());
                c.pool.push(server);
            }
        }
        assert!(c.sessions.len() >= 4, "recorded sessions");
        assert!(
            c.first_packets.len() >= 5,
            "startup, SSL and cancel packets"
        );
        assert!(c.sasl.len() >= 8, "SASL messages");
        c
    })
}

/// A recorded stream picked by `i`, mutated.
fn mutated(from: &[Vec<u8>], i: &Index, muts: &[Mutation], untyped: bool) -> Vec<u8> {
    let mut buf = from[i.index(from.len())].clone();
    apply(&mut buf, muts, untyped, &corpus().pool);
    buf
}

/// Input for a framing property: a mutated recording or random bytes.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (any::<Index>(), any::<bool>(), mutations()).prop_map(|(i, server, muts)| {
            let c = corpus();
            mutated(if server { &c.servers } else { &c.sessions }, &i, &muts, false)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..2048),
    ]
}

/// Walks `buf` frame by frame as the relay does: the frames and how it ends.
fn walk(buf: &[u8], max: usize) -> (Vec<(u8, usize)>, Option<FrameError>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        match frame::check(&buf[at..], max) {
            Ok(Some(total)) => {
                assert!(total >= 5 && at + total <= buf.len() && total <= max + 1);
                let f = frame::Frame::view(&buf[at..], total);
                assert_eq!(f.body.len(), total - 5);
                frames.push((f.tag, total));
                at += total;
            }
            Ok(None) => return (frames, None, at),
            Err(e) => return (frames, Some(e), at),
        }
    }
}

proptest! {
    #![proptest_config(fuzzing::config(128))]

    /// Framing never panics, never claims bytes it does not have, and
    /// frames a stream the same however the socket splits it.
    #[test]
    fn framing_is_consistent(buf in stream(), sizes in chunk_sizes(), small in any::<bool>()) {
        let max = if small { 300 } else { 1 << 20 };
        let (frames, err, at) = walk(&buf, max);
        if let Some(e) = &err {
            let text = e.to_string();
            prop_assert!(!text.is_empty());
            match e {
                FrameError::BadLength { len, .. } => {
                    prop_assert!(*len < 4);
                    prop_assert!(text.contains("invalid message length"), "{}", text);
                }
                FrameError::TooLarge { len, .. } => {
                    prop_assert!(*len > max);
                    prop_assert!(text.contains("over the limit"), "{}", text);
                }
                FrameError::UnknownType { .. } => prop_assert!(false, "check never judges types"),
            }
        } else {
            // What is left is a frame still arriving, never more than the cap.
            prop_assert!(buf.len() - at <= max);
        }
        // The same bytes, as a socket might deliver them.
        let mut pending = BytesMut::new();
        let mut got = Vec::new();
        let mut got_err = None;
        'feed: for chunk in chunks(&buf, &sizes) {
            pending.extend_from_slice(chunk);
            loop {
                match frame::check(&pending, max) {
                    Ok(Some(total)) => {
                        got.push((pending[0], total));
                        let _ = pending.split_to(total);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        got_err = Some(e);
                        break 'feed;
                    }
                }
            }
            prop_assert!(pending.len() <= max.max(4), "buffered {} bytes", pending.len());
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(got_err, err);
    }

    /// First packets, read as `session::open` reads them: the length is
    /// checked before anything is buffered, and a parsed StartupMessage is
    /// exactly what the client sent.
    #[test]
    fn first_packets_are_parsed_exactly(
        pick in any::<Index>(),
        muts in mutations(),
        random in prop::collection::vec(any::<u8>(), 0..64),
        use_random in prop::bool::weighted(0.2),
    ) {
        let packet = if use_random {
            random
        } else {
            mutated(&corpus().first_packets, &pick, &muts, true)
        };
        if packet.len() < 4 {
            return Ok(());
        }
        let header = [packet[0], packet[1], packet[2], packet[3]];
        let declared = i32::from_be_bytes(header);
        let len = match startup::packet_len(header) {
            Ok(len) => {
                prop_assert!((8..=MAX_STARTUP_PACKET).contains(&len));
                len
            }
            Err(e) => {
                prop_assert!(declared < 8 || declared as i64 > MAX_STARTUP_PACKET as i64);
                prop_assert!(e.to_string().contains("invalid length of startup packet"));
                return Ok(());
            }
        };
        if packet.len() < len {
            return Ok(()); // the session waits for the rest (under its auth timeout)
        }
        let body = &packet[4..len];
        match startup::parse(body) {
            Ok(StartupPacket::Startup(m)) => {
                prop_assert_eq!(m.major, 3);
                let mut again = (((m.major as i32) << 16) | m.minor as i32).to_be_bytes().to_vec();
                for (k, v) in &m.params {
                    prop_assert!(!k.is_empty() && !k.contains('\0') && !v.contains('\0'));
                    again.extend_from_slice(k.as_bytes());
                    again.push(0);
                    again.extend_from_slice(v.as_bytes());
                    again.push(0);
                }
                again.push(0);
                prop_assert_eq!(&again[..], body);
            }
            Ok(StartupPacket::Cancel { .. }) => prop_assert_eq!(body.len(), 12),
            Ok(StartupPacket::Ssl | StartupPacket::GssEnc) => prop_assert_eq!(body.len(), 4),
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    text.starts_with("invalid startup packet layout: ")
                        || text.starts_with("unsupported frontend protocol "),
                    "{}", text
                );
            }
        }
    }

    /// SASLInitialResponse bodies, recorded and mutated or random: parsed
    /// or refused, and the SCRAM server refuses anything malformed with a
    /// protocol error that says what is wrong.
    #[test]
    fn sasl_initial_responses(pick in any::<Index>(), muts in mutations(), tls in any::<bool>()) {
        let body = mutated(&corpus().sasl, &pick, &muts, false);
        let Some((mechanism, data)) = parse_sasl_initial(&body) else {
            return Ok(());
        };
        prop_assert!(data.len() <= body.len());
        let binding = if tls { Binding::TlsServerEndPoint(vec![9; 32]) } else { Binding::None };
        let mut server = ScramServer::new(verifier().clone(), binding);
        match server.client_first(mechanism, data) {
            Ok(first) => {
                let text = String::from_utf8(first).expect("server-first is text");
                prop_assert!(text.starts_with("r="), "{}", text);
                // Whatever the client sends next that is not a valid proof fails.
                let r = server.client_final(data);
                prop_assert!(r.is_err());
            }
            Err(ScramError::Protocol(m)) => prop_assert!(!m.is_empty()),
            Err(ScramError::BadProof) => prop_assert!(false, "no proof was checked yet"),
        }
    }

    /// A real SCRAM exchange in which the client's messages are changed on
    /// the way: any change to client-first or client-final fails the
    /// exchange; only the exact bytes sign in.
    #[test]
    fn scram_only_the_exact_exchange_signs_in(
        muts in mutations(),
        which in any::<bool>(),
        tls in any::<bool>(),
    ) {
        let (binding, cb, mechanism) = if tls {
            (Binding::TlsServerEndPoint(vec![7; 32]), ChannelBinding::tls_server_end_point(vec![7; 32]), scram::MECHANISM_PLUS)
        } else {
            (Binding::None, ChannelBinding::unsupported(), scram::MECHANISM)
        };
        let mut server = ScramServer::new(verifier().clone(), binding);
        let mut client = ScramSha256::new(PASSWORD.as_bytes(), cb);
        let mut first = client.message().to_vec();
        let original_first = first.clone();
        if which {
            apply(&mut first, &muts, false, &[]);
        }
        let server_first = match server.client_first(mechanism, &first) {
            Ok(s) => s,
            Err(e) => {
                prop_assert!(first != original_first, "the genuine client-first was refused: {:?}", e);
                return Ok(());
            }
        };
        if client.update(&server_first).is_err() {
            // The client noticed its nonce was changed.
            prop_assert!(first != original_first);
            return Ok(());
        }
        let mut fin = client.message().to_vec();
        let original_final = fin.clone();
        if !which {
            apply(&mut fin, &muts, false, &[]);
        }
        let result = server.client_final(&fin);
        if first == original_first && fin == original_final {
            prop_assert!(result.is_ok(), "{:?}", result.err());
        } else {
            prop_assert!(result.is_err(), "a changed exchange signed in");
            if let Err(ScramError::Protocol(m)) = result {
                prop_assert!(!m.is_empty());
            }
        }
    }

    /// OAUTHBEARER initial responses, well-formed and mutated: a token is
    /// only ever one the client sent, whole; the rest is refused with a
    /// message.
    #[test]
    fn oauthbearer_initial_responses(
        token in "[A-Za-z0-9._~+/-]{1,40}",
        discovery in any::<bool>(),
        extra in prop::collection::vec(("[a-z]{1,6}", "[ -~]{0,10}"), 0..3),
        muts in prop::collection::vec(fuzzing::mutation(), 0..4),
    ) {
        let mut msg = b"n,,\x01".to_vec();
        for (k, v) in &extra {
            msg.extend_from_slice(format!("{k}={v}\x01").as_bytes());
        }
        if discovery {
            msg.extend_from_slice(b"auth=\x01\x01");
        } else {
            msg.extend_from_slice(format!("auth=Bearer {token}\x01\x01").as_bytes());
        }
        let original = msg.clone();
        apply(&mut msg, &muts, false, &[]);
        match oauthbearer::parse_initial(&msg) {
            Ok(Initial::Token(t)) => {
                prop_assert!(!t.is_empty() && t.trim() == t);
                let text = std::str::from_utf8(&msg).unwrap_or_default();
                prop_assert!(text.contains(t));
                if msg == original {
                    prop_assert!(!discovery && t == token);
                }
            }
            Ok(Initial::Discovery) => {
                if msg == original {
                    prop_assert!(discovery);
                }
            }
            Err(m) => {
                prop_assert!(!m.is_empty());
                // Extra keys of letters are allowed: the original parses.
                prop_assert!(msg != original || extra.iter().any(|(k, _)| k == "auth"), "{}", m);
            }
        }
        prop_assert_eq!(oauthbearer::is_error_ack(&msg), msg == b"\x01");
    }

    /// The protocol state fed the recorded sessions' messages in their
    /// recorded order, with either side's bytes mutated: no panic, and its
    /// tables never outgrow what the client sent.
    #[test]
    fn protocol_state_survives_mutated_sessions(
        pick in any::<Index>(),
        muts in mutations(),
        side in any::<bool>(),
    ) {
        let recs = &corpus().recordings;
        let rec = &recs[pick.index(recs.len())];
        let dir = if side { Dir::Frontend } else { Dir::Backend };
        // Mutate one side's stream, then deal it back into the recorded
        // chunk sizes so the interleaving stays as recorded.
        let mut whole = rec.bytes(dir);
        let untyped = dir == Dir::Frontend;
        apply(&mut whole, &muts, untyped, &corpus().pool);
        let mut rest = &whole[..];
        let mut events = Vec::new();
        for (d, c) in &rec.chunks {
            if *d == dir {
                let n = c.len().min(rest.len());
                events.push((*d, rest[..n].to_vec()));
                rest = &rest[n..];
            } else {
                events.push((*d, c.clone()));
            }
        }
        if !rest.is_empty() {
            events.push((dir, rest.to_vec()));
        }
        replay(&events, 1 << 20)?;
    }

    /// Random message sequences in both directions: the state never
    /// panics and stays bounded by what was sent.
    #[test]
    fn protocol_state_random_sequences(
        msgs in prop::collection::vec((any::<bool>(), fuzzing::tag(), message_body()), 0..200),
    ) {
        let mut s = ProtocolState::default();
        let mut bounds = Bounds::default();
        for (frontend, tag, body) in &msgs {
            if *frontend {
                if s.on_frontend(*tag, body).is_ok() {
                    bounds.count(*tag);
                }
            } else {
                let _ = s.on_backend(*tag, body);
            }
            bounds.check(&s)?;
        }
    }

    /// The relay's framing core (no policy), fed mutated client sessions in
    /// random chunks: it passes whole frames on byte for byte, buffers at
    /// most one frame under the cap, and ends a bad stream with a FATAL
    /// error that names the problem.
    #[test]
    fn relay_core_client_side(
        pick in any::<Index>(),
        muts in mutations(),
        sizes in chunk_sizes(),
        small in any::<bool>(),
    ) {
        let max = if small { 200 } else { 1 << 20 };
        let input = mutated(&corpus().sessions, &pick, &muts, false);
        let mut core = Core::new(None, None, b'I', max, 100_000);
        let mut cin = BytesMut::new();
        let mut to_up = BytesMut::new();
        let mut sent = Vec::new();
        let mut end = None;
        for chunk in chunks(&input, &sizes) {
            cin.extend_from_slice(chunk);
            let r = core.on_client_data(&mut cin, &mut to_up);
            sent.extend_from_slice(&to_up.split());
            match r {
                Ok(apart) => prop_assert!(apart.is_none(), "no guard, nothing classified apart"),
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
            prop_assert!(cin.len() <= max, "buffered {} with cap {}", cin.len(), max);
        }
        prop_assert!(input.starts_with(&sent), "only what the client sent goes upstream");
        let (frames, _, at) = walk(&sent, max);
        prop_assert_eq!(at, sent.len(), "whole frames only");
        prop_assert!(frames.iter().all(|(t, _)| frame::is_frontend_type(*t)));
        match end {
            None | Some(End::ClientTerminated) => {}
            Some(End::Closed(err)) => {
                prop_assert_eq!(err.severity, Severity::Fatal);
                prop_assert!(
                    [sqlstate::PROTOCOL_VIOLATION, sqlstate::PROGRAM_LIMIT_EXCEEDED]
                        .contains(&err.code.as_ref()),
                    "{}", err
                );
                prop_assert!(
                    ["invalid message length", "over the limit", "invalid frontend message type", "invalid message format"]
                        .iter()
                        .any(|m| err.message.contains(m)),
                    "{}", err.message
                );
                let mut encoded = BytesMut::new();
                err.encode(&mut encoded);
                prop_assert_eq!(walk(&encoded, 1 << 20).2, encoded.len());
            }
            Some(other) => prop_assert!(false, "unexpected end {:?}", other),
        }
    }

    /// The same core, fed mutated server streams: passed on as framed, or
    /// the session ends with a protocol-violation FATAL for the client.
    #[test]
    fn relay_core_server_side(pick in any::<Index>(), muts in mutations(), sizes in chunk_sizes()) {
        let input = mutated(&corpus().servers, &pick, &muts, false);
        let mut core = Core::new(None, None, b'I', 1 << 20, 100_000);
        let mut uin = BytesMut::new();
        let mut to_client = BytesMut::new();
        let mut sent = Vec::new();
        for chunk in chunks(&input, &sizes) {
            uin.extend_from_slice(chunk);
            let r = core.on_upstream_data(&mut uin, &mut to_client);
            sent.extend_from_slice(&to_client.split());
            if let Err(e) = r {
                match e {
                    End::Closed(err) => prop_assert_eq!(err.code.as_ref(), sqlstate::PROTOCOL_VIOLATION),
                    other => prop_assert!(false, "unexpected end {:?}", other),
                }
                break;
            }
        }
        prop_assert!(input.starts_with(&sent));
    }
}

const PASSWORD: &str = "fuzz-password";

/// A verifier with few iterations: the properties test the exchange, not
/// PBKDF2's cost.
fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::generate(PASSWORD, 16))
}

/// Bodies for random messages: empty, C strings, bytes.
fn message_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "[a-z ]{0,8}".prop_map(|s| format!("{s}\0").into_bytes()),
        ("[a-z]{0,3}", "[a-z ]{0,8}").prop_map(|(n, q)| format!("{n}\0{q}\0\0\0").into_bytes()),
        ("[SP]", "[a-z]{0,3}").prop_map(|(k, n)| format!("{k}{n}\0").into_bytes()),
        ("[a-z]{0,3}", "[a-z]{0,3}")
            .prop_map(|(p, s)| format!("{p}\0{s}\0\0\0\0\0\0\0").into_bytes()),
        "[a-z]{0,3}".prop_map(|p| format!("{p}\0\0\0\0\0").into_bytes()),
        prop::sample::select(vec![b"I".to_vec(), b"T".to_vec(), b"E".to_vec()]),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

/// What the client sent so far bounds what the state holds.
#[derive(Default)]
struct Bounds {
    accepted: usize,
    parses: usize,
    binds: usize,
}

impl Bounds {
    fn count(&mut self, tag: u8) {
        // COPY data and its end are owed a place too: the server's answer
        // to a COPY comes after them.
        if matches!(
            tag,
            b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'F' | b'd' | b'c' | b'f'
        ) {
            self.accepted += 1;
        }
        self.parses += usize::from(tag == b'P');
        self.binds += usize::from(tag == b'B');
    }

    fn check(&self, s: &ProtocolState) -> Result<(), TestCaseError> {
        prop_assert!(
            s.owed.len() <= self.accepted,
            "{} owed for {} sent",
            s.owed.len(),
            self.accepted
        );
        prop_assert!(s.statements.len() <= self.parses);
        prop_assert!(s.portals.len() <= self.binds);
        prop_assert!(s.front_index() <= s.last_index() + 1);
        Ok(())
    }
}

/// Plays recorded chunks through a fresh protocol state, framing each
/// direction as the relay does; a frontend stream that stops framing ends
/// the replay, as the relay would close the session. Returns the state.
fn replay(events: &[(Dir, Vec<u8>)], max: usize) -> Result<ProtocolState, TestCaseError> {
    let mut s = ProtocolState::default();
    let mut bounds = Bounds::default();
    let (mut fin, mut bin) = (BytesMut::new(), BytesMut::new());
    // The client's first packets and authentication are not the session's:
    // skip until the server's first ReadyForQuery, as the relay starts there.
    let mut started = false;
    let mut pre = Vec::new();
    for (dir, chunk) in events {
        if !started {
            match dir {
                Dir::Frontend => pre.extend_from_slice(chunk),
                Dir::Backend => {
                    bin.extend_from_slice(chunk);
                    let (frames, _, _) = walk(&bin, max);
                    if frames.iter().any(|(t, _)| *t == b'Z') {
                        // Drop everything up to and including that ReadyForQuery.
                        let mut at = 0;
                        for (t, total) in frames {
                            at += total;
                            if t == b'Z' {
                                break;
                            }
                        }
                        let _ = bin.split_to(at);
                        let parts = fuzzing::split_client(&pre);
                        fin.extend_from_slice(&parts.session);
                        started = true;
                    }
                }
            }
            continue;
        }
        let (buf, frontend) = match dir {
            Dir::Frontend => (&mut fin, true),
            Dir::Backend => (&mut bin, false),
        };
        buf.extend_from_slice(chunk);
        loop {
            match frame::check(buf, max) {
                Ok(Some(total)) => {
                    let f = buf.split_to(total);
                    let (tag, body) = (f[0], &f[5..]);
                    if frontend {
                        if !frame::is_frontend_type(tag) || s.on_frontend(tag, body).is_err() {
                            return Ok(s);
                        }
                        bounds.count(tag);
                    } else {
                        let before = s.anomalies;
                        let owed = format!("{:?}", s.owed);
                        let _ = s.on_backend(tag, body);
                        if s.anomalies != before && std::env::var("DEBUG_REPLAY").is_ok() {
                            eprintln!(
                                "anomaly at {} {:?}: owed {owed}",
                                tag as char,
                                String::from_utf8_lossy(body)
                            );
                        }
                    }
                    bounds.check(&s)?;
                }
                Ok(None) => break,
                Err(_) => return Ok(s),
            }
        }
    }
    Ok(s)
}

/// The recordings, unmutated: the state follows every real client without
/// a single mismatch and ends idle, with the statements they prepared.
#[test]
fn recorded_sessions_replay_cleanly() {
    for rec in &corpus().recordings {
        if rec.name == "cancel_request" {
            continue;
        }
        let s = replay(&rec.chunks, 1 << 20).expect("bounds hold");
        assert_eq!(s.anomalies, 0, "{}: protocol state mismatches", rec.name);
        assert!(s.is_idle(), "{}: {:?} {:?}", rec.name, s.owed, s.tx_status);
        if rec.name == "pgbench_prepared" {
            assert!(
                s.statements.len() >= 3,
                "{}: {:?}",
                rec.name,
                s.statements.keys()
            );
        }
    }
    let cancel = corpus()
        .recordings
        .iter()
        .find(|r| r.name == "cancel_request")
        .expect("a recorded CancelRequest");
    let parts = cancel.client_parts();
    assert!(matches!(
        startup::parse(&parts.first_packets[0][4..]),
        Ok(StartupPacket::Cancel { .. })
    ));
    assert!(corpus()
        .first_packets
        .iter()
        .any(|p| startup::parse(&p[4..]) == Ok(StartupPacket::Ssl)));
}

/// The owed queue drains on the server's answers: a Sync answered by
/// ReadyForQuery leaves nothing owed before it (a regression guard for the
/// properties above, in a shape that is easy to read).
#[test]
fn owed_entries_end_at_ready_for_query() {
    let mut s = ProtocolState::default();
    s.on_frontend(b'P', b"\0select 1\0\0\0").unwrap();
    s.on_frontend(b'S', b"").unwrap();
    s.on_backend(b'Z', b"I");
    assert_eq!(s.owed.len(), 0);
    assert_eq!(s.anomalies, 1, "a Parse answered by ReadyForQuery alone");
    s.on_frontend(b'Q', b"select 1\0").unwrap();
    assert!(
        matches!(s.owed.front(), Some((_, Owed::Query { .. }))),
        "{:?}",
        s.owed
    );
}

/// Regression (found by `recorded_sessions_replay_cleanly` on the
/// tokio-postgres recording): tokio-postgres sends Bind, Execute and Sync
/// for a COPY FROM STDIN before the server's CopyInResponse, and the server
/// ignores a Sync received in COPY IN mode. The state owed a ReadyForQuery
/// for it, and every answer after the COPY was matched with the message
/// before its own (a CloseComplete with a Sync, a pipelined Query's rows
/// with nothing), until the pipeline drained.
#[test]
fn sync_sent_before_copy_in_response_is_not_owed() {
    let mut s = ProtocolState::default();
    s.on_frontend(b'B', b"\0s4\0\0\0\0\0\0\x01\0\x01").unwrap();
    s.on_frontend(b'E', b"\0\0\0\0\0").unwrap();
    s.on_frontend(b'S', b"").unwrap();
    s.on_backend(b'2', b"");
    s.on_backend(b'G', b"\0\0\x02\0\0\0\0");
    s.on_frontend(b'd', b"1\tone\n").unwrap();
    s.on_frontend(b'c', b"").unwrap();
    s.on_frontend(b'S', b"").unwrap();
    s.on_frontend(b'C', b"Ss4\0").unwrap();
    s.on_frontend(b'S', b"").unwrap();
    s.on_frontend(b'Q', b"select 1\0").unwrap();
    let query_index = s.last_index();
    s.on_backend(b'C', b"COPY 1\0");
    s.on_backend(b'Z', b"I");
    assert!(
        matches!(s.owed.front(), Some((_, Owed::Close { .. }))),
        "the CloseComplete comes next: {:?}",
        s.owed
    );
    s.on_backend(b'3', b"");
    s.on_backend(b'Z', b"I");
    assert!(
        matches!(s.owed.front(), Some((_, Owed::Query { .. }))),
        "{:?}",
        s.owed
    );
    assert_eq!(s.front_index(), query_index, "the Query's rows are its own");
    s.on_backend(b'T', b"");
    s.on_backend(b'C', b"SELECT 1\0");
    s.on_backend(b'Z', b"I");
    assert!(s.is_idle());
    assert_eq!(s.anomalies, 0);
}
