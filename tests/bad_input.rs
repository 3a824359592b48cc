//! Garbage, truncated and oversized input: each gets a clear FATAL error for
//! that connection alone, and pgward keeps serving everyone else.

mod common;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::*;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads backend messages until the server closes; returns (type, body) pairs.
async fn read_until_close(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= buf.len() {
        let len = i32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
        if at + 1 + len > buf.len() {
            break;
        }
        out.push((buf[at], buf[at + 5..at + 1 + len].to_vec()));
        at += 1 + len;
    }
    out
}

fn fatal_code(msgs: &[(u8, Vec<u8>)]) -> Option<(String, String)> {
    let (_, body) = msgs.iter().rev().find(|(t, _)| *t == b'E')?;
    let (mut sev, mut code, mut msg) = (String::new(), String::new(), String::new());
    for f in body.split(|b| *b == 0) {
        if f.is_empty() {
            continue;
        }
        let v = String::from_utf8_lossy(&f[1..]).into_owned();
        match f[0] {
            b'V' => sev = v,
            b'C' => code = v,
            b'M' => msg = v,
            _ => {}
        }
    }
    assert_eq!(sev, "FATAL", "{msg}");
    Some((code, msg))
}

async fn still_serving(h: &Harness) {
    let c = h.connect(ALICE).await;
    let v: i32 = c.query_one("select 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_startup() {
    let h = Harness::start().await;
    // Length field below the minimum.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 2, 1, 2, 3, 4]).await.unwrap();
    let (code, msg) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "08P01");
    assert!(msg.contains("invalid length of startup packet"), "{msg}");
    // An HTTP request is not a startup packet.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (code, _) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "08P01");
    // Unsupported protocol version.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut b = BytesMut::new();
    b.put_i32(9);
    b.put_i32(2 << 16);
    b.put_u8(0);
    s.write_all(&b).await.unwrap();
    let (code, msg) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "0A000");
    assert!(msg.contains("unsupported frontend protocol 2.0"), "{msg}");
    // A truncated startup packet, then silence and close.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 100, 0, 3]).await.unwrap();
    s.shutdown().await.unwrap();
    let _ = read_until_close(&mut s).await;
    // Missing user.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut b = BytesMut::new();
    frontend::startup_message([("database", "postgres")], &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    let (code, msg) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "28000");
    assert!(msg.contains("no PostgreSQL user name"), "{msg}");
    // Replication connections are refused.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut b = BytesMut::new();
    frontend::startup_message([("user", "alice"), ("replication", "database")], &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    let (code, _) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "0A000");
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_during_authentication() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut b = BytesMut::new();
    frontend::startup_message([("user", "alice")], &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    let (tag, _) = read_msg(&mut s).await;
    assert_eq!(tag, b'R');
    // A Query instead of a SASL response.
    s.write_all(b"Q\0\0\0\x0dselect 1\0").await.unwrap();
    let (code, msg) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "08P01");
    assert!(msg.contains("expected SASL response"), "{msg}");
    // A SASL message declaring a huge length.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&b).await.unwrap();
    let _ = read_msg(&mut s).await;
    s.write_all(b"p\x7f\0\0\0").await.unwrap();
    let (code, _) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "54000");
    // Malformed SCRAM client-first.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&b).await.unwrap();
    let _ = read_msg(&mut s).await;
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", b"garbage", &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let (code, _) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "08P01");
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_login() {
    let h = start_server("max_message_bytes = 1048576").await;
    let cases: Vec<(&[u8], &str, &str)> = vec![
        (
            b"\x00\0\0\0\x04",
            "08P01",
            "invalid frontend message type 0x00",
        ),
        (
            b"Z\0\0\0\x05I",
            "08P01",
            "invalid frontend message type 'Z'",
        ),
        (b"Q\0\0\0\x02", "08P01", "invalid message length"),
        (
            b"Q\x7f\xff\xff\xff",
            "54000",
            "over the limit of 1048576 bytes",
        ),
        (b"Q\0\0\0\x08abcd", "08P01", "invalid message format"),
        // A second SSLRequest or StartupMessage mid-session: type 0x00 and
        // a length that would be waited for until the idle timeout.
        (
            b"\0\0\0\x08\x04\xd2\x16\x2f",
            "08P01",
            "invalid frontend message type 0x00",
        ),
        (
            b"\0\0\0\x15\0\x03\0\0user\0alice\0\0",
            "08P01",
            "invalid frontend message type 0x00",
        ),
        (b"P\0\0\0\x09s\0x\0\xff", "08P01", "invalid message format"),
    ];
    for (bytes, want_code, want_msg) in cases {
        let mut s = login(&h, ALICE).await;
        s.write_all(bytes).await.unwrap();
        let (code, msg) = fatal_code(&read_until_close(&mut s).await)
            .unwrap_or_else(|| panic!("no error for {bytes:?}"));
        assert_eq!(code, want_code, "{msg}");
        assert!(msg.contains(want_msg), "{msg}");
    }
    // An allowed large message (just under the cap) still works.
    let c = h.connect(ALICE).await;
    let big = "x".repeat(1_000_000);
    let n: i32 = c
        .query_one(&format!("select length('{big}')"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1_000_000);
    // Over the cap through a real client: refused, connection closed.
    let c2 = h.connect(ALICE).await;
    let huge = "x".repeat(1_100_000);
    let err = c2
        .simple_query(&format!("select '{huge}'"))
        .await
        .unwrap_err();
    let db = err
        .as_db_error()
        .expect("pgward's FATAL reaches the client");
    assert_eq!(db.code().code(), "54000");
    assert!(db.message().contains("over the limit"), "{db:?}");
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_negotiation() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut b = BytesMut::new();
    let body = b"user\0alice\0_pq_.future_option\0on\0\0";
    b.put_i32((8 + body.len()) as i32);
    b.put_i32((3 << 16) | 2);
    b.put_slice(body);
    s.write_all(&b).await.unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'v', "NegotiateProtocolVersion comes first");
    assert_eq!(&body[..8], &[0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(&body[8..], b"_pq_.future_option\0");
    let (tag, _) = read_msg(&mut s).await;
    assert_eq!(tag, b'R');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_time_out() {
    let h = start_server("auth_timeout_secs = 1\nidle_timeout_secs = 1").await;
    // Connects and never speaks.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let start = std::time::Instant::now();
    let _ = read_until_close(&mut s).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    // Starts SCRAM and stalls.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut b = BytesMut::new();
    frontend::startup_message([("user", "alice")], &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    let (code, msg) = fatal_code(&read_until_close(&mut s).await).unwrap();
    assert_eq!(code, "08006");
    assert!(msg.contains("timeout"), "{msg}");
    still_serving(&h).await;
}

/// Idle after login: closed with 57P05; a busy session is not, nor one
/// that keeps sending statements less than a timeout apart. (Sign-in has
/// its own, longer allowance here: SCRAM in a debug build on a loaded
/// machine can take longer than the second the test above allows.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_time_out_and_busy_ones_do_not() {
    let h = start_server("auth_timeout_secs = 60\nidle_timeout_secs = 1").await;
    let idle = h.connect(ALICE).await;
    let busy = h.connect(BOB).await;
    let active = h.connect(ALICE).await;
    let chatty = async {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            active.query("select 1", &[]).await.unwrap();
        }
    };
    let (slept, ()) = tokio::join!(busy.query("select pg_sleep(2.5)", &[]), chatty);
    slept.unwrap();
    let err = idle.query("select 1", &[]).await.unwrap_err();
    assert!(idle.is_closed(), "{err}");
    still_serving(&h).await;
}

/// Statements nested as deep as the parser allows (and deeper): classified
/// or refused with the parser's error; pgward neither crashes nor hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_statements() {
    let h = Harness::start().await;
    let c = h.connect(DANA).await;
    let concat = format!("SELECT {}", vec!["'a'"; 300].join(" || "));
    let rows = c.simple_query(&concat).await.unwrap();
    assert!(rows.len() >= 2, "the long expression ran");
    let parens = format!("SELECT {}1{}", "(".repeat(2_000), ")".repeat(2_000));
    c.simple_query(&parens).await.unwrap();
    // Deeper than the server's parser goes: its own error, as direct.
    let direct = h.direct().await;
    for n in [50_000, 500_000] {
        let deep = format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
        let e = c.simple_query(&deep).await.unwrap_err();
        let d = direct.simple_query(&deep).await.unwrap_err();
        assert_eq!(e.code().unwrap().code(), "42601", "{n}: {e:?}");
        // The probe's prefix holds two entries of the parser's stack, so
        // its depth limit is met two tokens early.
        assert_eq!(
            e.as_db_error().map(|e| e.message()),
            d.as_db_error().map(|e| e.message()),
        );
    }
    still_serving(&h).await;
}

/// SQL text larger than pgward classifies (a parse tree takes hundreds of
/// times its text's size in memory) is refused with an error for that
/// statement alone, in simple and extended protocol; the session goes on,
/// and a statement under the limit runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_larger_than_the_classification_limit() {
    let h = Harness::start_with(Setup {
        server: "max_sql_bytes = 4096".into(),
        ..Setup::default()
    })
    .await;
    let c = h.connect(ALICE).await;
    let big = "SELECT 1;".repeat(500);
    let completed = |m: Vec<tokio_postgres::SimpleQueryMessage>| {
        m.iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_)))
            .count()
    };
    let direct = h.direct().await;
    assert_eq!(completed(direct.simple_query(&big).await.unwrap()), 500);
    for err in [
        c.simple_query(&big).await.unwrap_err(),
        c.prepare(&format!(
            "SELECT 1 WHERE 1 IN ({})",
            "1,".repeat(2100) + "1"
        ))
        .await
        .unwrap_err(),
    ] {
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "54000");
        assert!(
            db.message()
                .contains("larger than pgward classifies (4096 bytes)"),
            "{db:?}"
        );
        assert!(db
            .hint()
            .unwrap_or_default()
            .contains("server.max_sql_bytes"));
    }
    let fits = "SELECT 1;".repeat(400);
    assert_eq!(completed(c.simple_query(&fits).await.unwrap()), 400);
    still_serving(&h).await;
}

/// A long SQL text is classified on a thread of its own, not on the
/// session thread: with one session thread, another session keeps running
/// statements while it is classified, and its own session is not closed as
/// idle. Then it is judged as usual, in both protocols: denied when one of
/// its statements is, run otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_classifications_hold_up_no_other_session() {
    let h = Harness::start_with(Setup {
        // A session waiting for its text's classification is not idle.
        server: "worker_threads = 1\nidle_timeout_secs = 1".into(),
        setup_sql: vec!["CREATE TABLE customers (id int); INSERT INTO customers VALUES (1)".into()],
        ..Setup::default()
    })
    .await;
    let slow = h.connect(ALICE).await;
    let other = h.connect(ALICE).await;
    // Alice may not delete: nothing of this string runs upstream, so its
    // answer waits only for its classification.
    let text = "SELECT 1;".repeat(80_000) + "DELETE FROM customers";
    let started = std::time::Instant::now();
    let task = tokio::spawn(async move {
        let result = slow.simple_query(&text).await;
        (result, slow)
    });
    let mut ran = 0;
    while !task.is_finished() {
        other.simple_query("SELECT 1").await.unwrap();
        ran += 1;
    }
    let (result, slow) = task.await.unwrap();
    let took = started.elapsed();
    let e = result.unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    let message = e.as_db_error().map(|d| d.message()).unwrap_or_default();
    assert!(
        message.contains("write"),
        "the denial names the class: {message}"
    );
    assert!(
        ran >= 20,
        "only {ran} statements ran on the other session in the {took:?} the long text took"
    );
    assert!(
        took > std::time::Duration::from_secs(1),
        "{took:?}: the idle timeout was not tested"
    );

    // Allowed long texts run, in simple and extended protocol.
    let reads = "SELECT 1;".repeat(5_000);
    assert!(reads.len() > pgward::session::guard::CLASSIFY_APART);
    let answers = slow.simple_query(&reads).await.unwrap();
    let completed = answers
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completed, 5_000);
    let list = vec!["1"; 12_000].join(",");
    let rows = slow
        .query(
            &format!("SELECT count(*) FROM customers WHERE id IN ({list})"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    let e = slow
        .prepare(&format!("DELETE FROM customers WHERE id IN ({list})"))
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    assert_eq!(slow.simple_query("SELECT 1").await.unwrap().len(), 3);
    still_serving(&h).await;
}
