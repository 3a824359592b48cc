//! End to end: a real pgward in front of a real PostgreSQL. Each case
//! opens a handful of connections that send recorded client sessions
//! (`tests/fuzz/*.rec`), mutated: some from their first byte (startup,
//! SSLRequest, SCRAM), some after a genuine sign-in. pgward answers each
//! with well-framed messages and ends it (a FATAL error when the client
//! broke the protocol), never panics or hangs, and a well-behaved client
//! connected throughout keeps getting correct answers.

mod common;
mod fuzzing;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use fuzzing::{apply, mutations, Dir, Mutation, Recording};
use pgward::protocol::frame;
use pgward::protocol::messages::parse_error_fields;
use pgward::protocol::startup::{self, StartupPacket};
use pgward::session::state::ProtocolState;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// pgward's cap on a client message in this test.
const MAX_MESSAGE: usize = 65_536;
/// How long pgward may take to finish with a connection.
const DEADLINE: Duration = Duration::from_secs(30);

/// Panics anywhere in the process (session tasks and threads included:
/// tokio would otherwise swallow a session task's panic).
/// The test's own code returns errors instead of panicking, so any count
/// here is pgward's.
static PANICS: AtomicUsize = AtomicUsize::new(0);
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn count_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            let mut first = FIRST_PANIC.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                let thread = std::thread::current().name().map(str::to_owned);
                *first = Some(format!("{info} (thread {thread:?})"));
            }
            default(info);
        }));
    });
}

fn panics() -> Result<(), TestCaseError> {
    let n = PANICS.load(Ordering::SeqCst);
    let first = FIRST_PANIC
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    prop_assert_eq!(n, 0, "pgward panicked: {:?}", first);
    Ok(())
}

/// Signs in as `who` with SCRAM over a raw socket, up to ReadyForQuery;
/// an error (not a panic) when pgward refuses or closes.
async fn sign_in(
    addr: std::net::SocketAddr,
    (user, password): (&str, &str),
) -> Result<TcpStream, TestCaseError> {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::frontend;
    let fail = |what: String| TestCaseError::fail(format!("sign-in as {user}: {what}"));
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut out = bytes::BytesMut::new();
    frontend::startup_message([("user", user), ("database", "postgres")], &mut out)
        .map_err(|e| fail(e.to_string()))?;
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    loop {
        s.write_all(&out).await.map_err(|e| fail(e.to_string()))?;
        out.clear();
        let mut head = [0u8; 5];
        s.read_exact(&mut head)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let body_len = usize::try_from(len - 4).map_err(|_| fail(format!("length {len}")))?;
        let mut body = vec![0u8; body_len];
        s.read_exact(&mut body)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let code = (head[0] == b'R' && body.len() >= 4)
            .then(|| i32::from_be_bytes([body[0], body[1], body[2], body[3]]));
        match (head[0], code) {
            (b'Z', _) => return Ok(s),
            (b'E', _) => return Err(fail(format!("{:?}", parse_error_fields(&body)))),
            (b'R', Some(10)) => {
                frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)
                    .map_err(|e| fail(e.to_string()))?
            }
            (b'R', Some(11)) => {
                scram.update(&body[4..]).map_err(|e| fail(e.to_string()))?;
                frontend::sasl_response(scram.message(), &mut out)
                    .map_err(|e| fail(e.to_string()))?;
            }
            (b'R', Some(12)) => scram.finish(&body[4..]).map_err(|e| fail(e.to_string()))?,
            _ => {}
        }
    }
}

/// One attacking connection.
#[derive(Debug, Clone)]
struct Attack {
    /// Sign in first (genuinely) and mutate only the session after it;
    /// otherwise mutate the whole recorded stream from its first byte.
    signed_in: bool,
    recording: Index,
    mutations: Vec<Mutation>,
}

fn attack() -> impl Strategy<Value = Attack> {
    (prop::bool::weighted(0.6), any::<Index>(), mutations()).prop_map(
        |(signed_in, recording, mutations)| Attack {
            signed_in,
            recording,
            mutations,
        },
    )
}

#[test]
fn mutated_client_streams_against_real_pgward() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let recordings: Vec<Recording> = fuzzing::recordings()
        .into_iter()
        .filter(|r| r.name != "cancel_request")
        .collect();
    let pool: Vec<Vec<u8>> = recordings.iter().map(|r| r.bytes(Dir::Frontend)).collect();
    let h = rt.block_on(Harness::start_with(Setup {
        // TLS off: an SSLRequest is answered 'N' and the stream goes on in
        // the clear, as recorded.
        tls: Some("mode = \"off\"".into()),
        server: format!(
            "max_message_bytes = {MAX_MESSAGE}\nmax_sql_bytes = {MAX_MESSAGE}\nauth_timeout_secs = 60"
        ),
        setup_sql: vec![
            "CREATE TABLE fuzz_t (id int PRIMARY KEY, v text); \
             INSERT INTO fuzz_t SELECT g, 'row ' || g FROM generate_series(1, 10) g; \
             GRANT SELECT ON fuzz_t TO PUBLIC"
                .into(),
        ],
        ..Setup::default()
    }));

    // The well-behaved client: checked answers, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let good = rt.block_on(h.connect(BOB));
    let watcher = {
        let stop = stop.clone();
        rt.spawn(async move {
            let mut answered = 0u64;
            let mut i = 0i32;
            while !stop.load(Ordering::SeqCst) {
                i = i.wrapping_add(1) % 1_000_000;
                let doubled: i32 = good
                    .query_one("SELECT $1::int * 2", &[&i])
                    .await
                    .map_err(|e| format!("extended query {i}: {e}"))?
                    .get(0);
                if doubled != i * 2 {
                    return Err(format!("{i} * 2 answered {doubled}"));
                }
                let rows = good
                    .simple_query("SELECT count(*) FROM fuzz_t")
                    .await
                    .map_err(|e| format!("simple query: {e}"))?;
                let counts: Vec<_> = rows
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0)),
                        _ => None,
                    })
                    .collect();
                if counts != [Some("10")] {
                    return Err(format!("count(*) answered {counts:?}"));
                }
                answered += 1;
            }
            Ok::<u64, String>(answered)
        })
    };

    let config = ProptestConfig {
        max_shrink_iters: 16,
        failure_persistence: None,
        ..fuzzing::config(4)
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(attack(), 3), |attacks| {
        rt.block_on(async {
            let mut tasks = Vec::new();
            for a in attacks {
                let rec = recordings[a.recording.index(recordings.len())].clone();
                let pool = pool.clone();
                let addr = h.addr;
                let login = if a.signed_in {
                    Some(sign_in(addr, ALICE).await?)
                } else {
                    None
                };
                tasks.push(tokio::spawn(async move {
                    run_attack(addr, login, &rec, &a.mutations, &pool).await
                }));
            }
            for t in tasks {
                t.await
                    .map_err(|e| TestCaseError::fail(format!("attack task: {e}")))??;
            }
            panics()
        })
    });
    stop.store(true, Ordering::SeqCst);
    let answered = rt
        .block_on(watcher)
        .unwrap()
        .expect("the well-behaved client got correct answers throughout");
    assert!(answered > 0, "the well-behaved client ran");
    if let Err(e) = result {
        panic!("{e}");
    }
    if let Err(e) = panics() {
        panic!("{e}");
    }
    // Still serving new clients.
    rt.block_on(async {
        let c = h.connect(ALICE).await;
        let n: i64 = c
            .query_one("SELECT count(*) FROM fuzz_t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 10);
    });
}

/// Sends one mutated stream, lets pgward answer until it goes quiet, then
/// ends the input and reads until pgward closes; checks the answer.
async fn run_attack(
    addr: std::net::SocketAddr,
    signed_in: Option<TcpStream>,
    rec: &Recording,
    muts: &[Mutation],
    pool: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let untyped = signed_in.is_none();
    let mut input = if untyped {
        rec.bytes(Dir::Frontend)
    } else {
        rec.client_parts().session
    };
    apply(&mut input, muts, untyped, pool);
    let mut s = match signed_in {
        Some(s) => s,
        None => TcpStream::connect(addr)
            .await
            .map_err(|e| TestCaseError::fail(format!("connect: {e}")))?,
    };
    // pgward may close before taking everything: a failed write is fine.
    let _ = s.write_all(&input).await;
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let started = tokio::time::Instant::now();
    let mut closed = false;
    // Read while pgward keeps talking (quiet for 300 ms ends it) ...
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
        match r {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        prop_assert!(started.elapsed() < DEADLINE, "pgward kept talking");
    }
    // ... then end the input: pgward must close.
    if !closed {
        let _ = s.shutdown().await;
        let rest = tokio::time::timeout(DEADLINE, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        prop_assert!(rest.is_ok(), "pgward did not close the connection (a hang)");
    }
    check_answer(&answer, &input, untyped)
}

/// pgward's answer is well framed; a FATAL error is its last message; and
/// a client that broke the framing or the message format got one.
fn check_answer(answer: &[u8], input: &[u8], untyped: bool) -> Result<(), TestCaseError> {
    // Each SSLRequest is answered with a lone 'N' (TLS is off) before the
    // framed messages; try each number of them.
    let leading = answer.iter().take_while(|b| **b == b'N').count();
    let framed = (0..=leading).find_map(|skip| {
        let frames = frames(&answer[skip..])?;
        Some(frames)
    });
    let Some(msgs) = framed else {
        return Err(TestCaseError::fail(format!(
            "pgward's answer is not well framed: {:?}",
            &answer[..answer.len().min(200)]
        )));
    };
    let fatal_at = msgs.iter().position(|(t, body)| {
        *t == b'E' && matches!(parse_error_fields(body).0.as_str(), "FATAL" | "PANIC")
    });
    if let Some(i) = fatal_at {
        let (_, body) = &msgs[i];
        let (_, code, message) = parse_error_fields(body);
        prop_assert!(
            code.len() == 5 && !message.is_empty(),
            "{} {}",
            code,
            message
        );
        prop_assert_eq!(i, msgs.len() - 1, "messages after a FATAL error");
    }
    if untyped && breaks_startup(input) {
        prop_assert!(
            fatal_at.is_some(),
            "a client whose first packets are malformed got no FATAL error; pgward said {:?}",
            msgs.iter().map(|(t, _)| *t as char).collect::<String>()
        );
    }
    if !untyped && breaks_protocol(input) {
        prop_assert!(
            fatal_at.is_some(),
            "a client that broke the protocol got no FATAL error; pgward said {:?}",
            msgs.iter().map(|(t, _)| *t as char).collect::<String>()
        );
    }
    Ok(())
}

/// Splits an answer into whole frames of backend types; None if it is not.
fn frames(buf: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let total = frame::check(&buf[at..], frame::POSTGRES_MAX_MESSAGE).ok()??;
        let tag = buf[at];
        if !b"RKSZTDCEINnst123AGHWcdvV".contains(&tag) {
            return None;
        }
        out.push((tag, buf[at + 5..at + total].to_vec()));
        at += total;
    }
    Some(out)
}

/// Whether pgward must refuse this stream's first packets with a FATAL
/// error: a length out of range, a packet it cannot parse, a startup
/// message without a user, read as `session::open` reads them.
fn breaks_startup(input: &[u8]) -> bool {
    if input.first() == Some(&0x16) {
        return false; // direct TLS while TLS is off: closed without a word
    }
    let mut at = 0;
    loop {
        let rest = &input[at..];
        if rest.len() < 4 {
            return false;
        }
        let len = match startup::packet_len([rest[0], rest[1], rest[2], rest[3]]) {
            Ok(len) => len,
            Err(_) => return true,
        };
        if rest.len() < len {
            return false;
        }
        match startup::parse(&rest[4..len]) {
            Err(_) => return true,
            Ok(StartupPacket::Ssl | StartupPacket::GssEnc) => at += len,
            Ok(StartupPacket::Cancel { .. }) => return false,
            Ok(StartupPacket::Startup(m)) => return m.get("user").is_none_or(str::is_empty),
        }
    }
}

/// Whether pgward must end this post-sign-in stream with a FATAL error: a
/// frame it cannot frame, of a type no client sends, or of a known type it
/// cannot decode, before any Terminate.
///
/// After an error in the extended protocol PostgreSQL skips every message
/// up to Sync without reading its contents (only an unknown type is still
/// FATAL), and pgward does the same. So a known message that cannot be
/// decoded demands a FATAL error only when no extended-protocol message
/// since the last Sync could have failed before it.
fn breaks_protocol(input: &[u8]) -> bool {
    let mut state = ProtocolState::default();
    let mut may_be_skipping = false;
    let mut at = 0;
    loop {
        match frame::check(&input[at..], MAX_MESSAGE) {
            Err(_) => return true,
            Ok(None) => return false,
            Ok(Some(total)) => {
                let tag = input[at];
                if !frame::is_frontend_type(tag) {
                    return true;
                }
                if state.on_frontend(tag, &input[at + 5..at + total]).is_err() && !may_be_skipping {
                    return true;
                }
                match tag {
                    b'X' => return false,
                    b'S' => may_be_skipping = false,
                    b'P' | b'B' | b'D' | b'E' | b'C' => may_be_skipping = true,
                    _ => {}
                }
                at += total;
            }
        }
    }
}

/// Regression for the COPY IN Sync found by the fuzz tests' replay of the
/// tokio-postgres recording: tokio-postgres sends Bind, Execute, Sync before
/// the COPY data, and PostgreSQL ignores that Sync. pgward owed a
/// ReadyForQuery for it, so after the COPY it matched each answer with the
/// message before its own: a denied statement got the raw error of its
/// stand-in, and the next statement's error was replaced by that denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_after_copy_in_answer_their_own_statement() {
    let h = Harness::start_with(Setup {
        setup_sql: vec!["CREATE TABLE copied (a int, b text)".into()],
        ..Setup::default()
    })
    .await;
    let c = h.connect(BOB).await;
    // A statement kept alive: no Close + Sync realigns the queue after the COPY.
    let copy = c.prepare("COPY copied FROM STDIN").await.unwrap();
    let sink = c.copy_in(&copy).await.unwrap();
    futures_util::pin_mut!(sink);
    use futures_util::SinkExt;
    sink.send(bytes::Bytes::from_static(b"1\tone\n2\ttwo\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    // Denied for the app role (a dangerous function): pgward's own error.
    let denied = c
        .simple_query("SELECT pg_cancel_backend(0)")
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&denied), "{denied:?}");
    // The next failing statement gets its own error, not the denial.
    let failed = c.simple_query("SELECT 1/0").await.unwrap_err();
    let db = failed.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22012", "{db:?}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM copied", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    drop(copy);
}
