//! tokio-postgres through pgward: prepared statements, binary results,
//! transactions, pipelining, COPY, LISTEN/NOTIFY, cancel, many clients.

mod common;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt, TryStreamExt};

both_relays!(
    pipelined_queries_with_a_failure_in_the_middle,
    copy_in_and_out,
    a_slow_reader_gets_every_row,
    listen_notify_reaches_the_listener,
    cancel_request_cancels_only_with_the_right_key
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_binary_results_and_transactions() {
    let h = Harness::start().await;
    let mut c = h.connect(DANA).await;
    c.batch_execute("create table acct (id int primary key, balance bigint, data bytea, at timestamptz default now())")
        .await
        .unwrap();
    let ins = c
        .prepare("insert into acct (id, balance, data) values ($1, $2, $3)")
        .await
        .unwrap();
    for i in 0..20i32 {
        let blob: Vec<u8> = (0..=255u8).collect();
        c.execute(&ins, &[&i, &(i as i64 * 1000), &blob])
            .await
            .unwrap();
    }
    // Binary parameters and results round-trip exactly.
    let row = c
        .query_one(
            "select balance, data, id::float8 / 4 from acct where id = $1",
            &[&7i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 7000);
    assert_eq!(row.get::<_, Vec<u8>>(1), (0..=255u8).collect::<Vec<_>>());
    assert_eq!(row.get::<_, f64>(2), 1.75);

    // A rolled-back transaction leaves nothing; a committed one persists.
    let tx = c.transaction().await.unwrap();
    tx.execute("update acct set balance = 0", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let tx = c.transaction().await.unwrap();
    tx.execute("update acct set balance = balance + 1 where id = 1", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let sum: i64 = c
        .query_one("select sum(balance)::bigint from acct", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 190_001);

    // An error inside a transaction aborts it, as in PostgreSQL.
    let tx = c.transaction().await.unwrap();
    let err = tx.execute("select 1/0", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22012");
    let err = tx.execute("select 1", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "25P02");
    tx.rollback().await.unwrap();
    assert_eq!(
        c.query_one("select 1::int4", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

async fn pipelined_queries_with_a_failure_in_the_middle(relay: &str) {
    let h = start_relay(relay, "").await;
    let c = h.connect(DANA).await;
    if relay.is_empty() {
        c.simple_query("select 1").await.unwrap();
        // The default relays this plain session on threads of its own,
        // each bound to one CPU when there is more than one. (Other tests'
        // sessions start concurrently: a thread is briefly unbound between
        // its start and its binding, so look more than once.)
        let multi = std::thread::available_parallelism().map_or(1, |n| n.get()) > 1;
        let mut threads = Vec::new();
        for _ in 0..40 {
            threads = relay_thread_cpus();
            if !multi
                || threads
                    .iter()
                    .all(|(_, cpus)| cpus.parse::<usize>().is_ok())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(threads.iter().any(|(name, _)| name == "pgward-client"));
        assert!(threads.iter().any(|(name, _)| name == "pgward-upstream"));
        if multi {
            for (name, cpus) in &threads {
                assert!(cpus.parse::<usize>().is_ok(), "{name} may run on {cpus}");
            }
        }
    }
    let s = c.prepare("select $1::int4 * 2").await.unwrap();
    // tokio-postgres pipelines concurrent queries on one connection.
    let futs: Vec<_> = (0..50i32)
        .map(|i| {
            let c = &c;
            let s = &s;
            async move {
                if i == 25 {
                    c.query_one("select 1/0", &[]).await.map(|_| -1)
                } else {
                    c.query_one(s, &[&i]).await.map(|r| r.get::<_, i32>(0))
                }
            }
        })
        .collect();
    let results = futures_util::future::join_all(futs).await;
    for (i, r) in results.into_iter().enumerate() {
        if i == 25 {
            assert_eq!(r.unwrap_err().code().unwrap().code(), "22012");
        } else {
            assert_eq!(r.unwrap(), i as i32 * 2);
        }
    }
}

async fn copy_in_and_out(relay: &str) {
    let h = start_relay(relay, "").await;
    let c = h.connect(DANA).await;
    c.batch_execute("create table big (id int, payload text)")
        .await
        .unwrap();
    let sink = c.copy_in("copy big from stdin").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut expected = 0u64;
    for chunk in 0..50 {
        let mut data = String::new();
        for i in 0..1000 {
            let id = chunk * 1000 + i;
            data.push_str(&format!("{id}\t{}\n", "x".repeat(100)));
            expected += id as u64;
        }
        sink.send(Bytes::from(data)).await.unwrap();
    }
    let rows = sink.finish().await.unwrap();
    assert_eq!(rows, 50_000);
    let stream = c
        .copy_out("copy (select id, payload from big order by id) to stdout")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    let all: Vec<u8> = chunks.concat();
    let text = String::from_utf8(all).unwrap();
    assert_eq!(text.lines().count(), 50_000);
    let sum: u64 = text
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, expected);
}

async fn a_slow_reader_gets_every_row(relay: &str) {
    let h = start_relay(relay, "").await;
    slow_reader_gets_every_row(&h, DANA).await;
}

async fn listen_notify_reaches_the_listener(relay: &str) {
    let h = start_relay(relay, "").await;
    let (listener, mut conn) = tokio_postgres::connect(&h.conninfo(DANA), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(Ok(msg)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener.batch_execute("listen jobs").await.unwrap();
    let notifier = h.connect(DANA).await;
    notifier
        .batch_execute("notify jobs, 'first'; select pg_notify('jobs', 'second')")
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    assert_eq!(first, Some(("jobs".into(), "first".into())));
    assert_eq!(second, Some(("jobs".into(), "second".into())));
}

async fn cancel_request_cancels_only_with_the_right_key(relay: &str) {
    let h = start_relay(relay, "").await;
    let c = h.connect(DANA).await;
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { c.query("select pg_sleep(30)", &[]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A made-up key cancels nothing.
    let mut raw = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut req = bytes::BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(12345, 67890, &mut req);
    tokio::io::AsyncWriteExt::write_all(&mut raw, &req)
        .await
        .unwrap();
    drop(raw);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !sleeper.is_finished(),
        "a bogus key must not cancel the query"
    );

    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("cancel took effect")
        .unwrap();
    assert_eq!(result.unwrap_err().code().unwrap().code(), "57014");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for i in 0..50i64 {
        let info = h.conninfo(if i % 2 == 0 { ALICE } else { AGENT });
        tasks.push(tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let mut total = 0i64;
            for j in 0..20i64 {
                let row = c.query_one("select $1::int8 + $2::int8", &[&i, &j]).await?;
                total += row.get::<_, i64>(0);
            }
            Ok::<i64, tokio_postgres::Error>(total)
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let i = i as i64;
        assert_eq!(t.await.unwrap().unwrap(), 20 * i + 190);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_are_passed_on() {
    let h = Harness::start().await;
    let info = format!(
        "{} application_name=nightly-report options='-c work_mem=7MB'",
        h.conninfo(DANA)
    );
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = c
        .query_one("select current_setting('application_name'), current_setting('work_mem'), current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "nightly-report");
    assert_eq!(row.get::<_, String>(1), "7MB");
    assert_eq!(row.get::<_, String>(2), "postgres");
    // A database the client names is the one it gets.
    h.pg.psql("postgres", "create database other").unwrap();
    let info = h.conninfo(DANA).replace("dbname=postgres", "dbname=other");
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let db: String = c
        .query_one("select current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "other");
    // A database that does not exist: PostgreSQL's own error reaches the client.
    let info = h
        .conninfo(DANA)
        .replace("dbname=postgres", "dbname=nosuchdb");
    let err = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code().unwrap().code(), "3D000");
}

/// SQL the parser rejects gets the server's own error, position and hint
/// included, through the simple and the extended protocol, in and out of a
/// transaction block; the session goes on as it would direct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_errors_are_the_servers_own() {
    let h = Harness::start().await;
    let via = h.connect(DANA).await;
    let direct = h.direct().await;
    fn fields(e: &tokio_postgres::Error) -> String {
        let db = e.as_db_error().expect("a server error");
        format!(
            "{} {} {:?} {:?} {:?}",
            db.code().code(),
            db.message(),
            db.position(),
            db.hint(),
            db.detail()
        )
    }
    for sql in [
        "SELEC 1",
        "SELECT 1 +",
        "SELECT 'unterminated",
        "SELECT 1; SELEC 2",
        "SELECT 1 FROM pg_class WHERE",
        "/* an open comment",
        "SELECT $$ open",
        "SELECT 1 -- trailing comment\nFROM FROM",
        "SELECT 1 PGWARD DENIED",
        "SELECT U&'\\0000'",
        "SELECT 'a' 'b'",
        "CREATE TABLE t (a int) PARTITION BY",
    ] {
        let a = via.simple_query(sql).await.unwrap_err();
        let b = direct.simple_query(sql).await.unwrap_err();
        assert_eq!(fields(&a), fields(&b), "simple: {sql}");
        if !sql.contains(';') {
            let a = via.prepare(sql).await.unwrap_err();
            let b = direct.prepare(sql).await.unwrap_err();
            assert_eq!(fields(&a), fields(&b), "extended: {sql}");
        }
    }
    // PostgreSQL 15 parses this (system_user became a keyword in 16);
    // pgward's parser does not: refused with pgward's own error, and the
    // server's parse of the probe created nothing.
    for sql in [
        "CREATE TABLE system_user (a int)",
        "SELECT 1; CREATE TABLE system_user (a int)",
    ] {
        let e = via.simple_query(sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42601", "{sql}");
        assert!(db.message().starts_with("pgward: "), "{db:?}");
        assert!(db.hint().unwrap().contains("the server's can"), "{db:?}");
        let e = via.prepare(sql).await.unwrap_err();
        assert!(e.as_db_error().unwrap().message().starts_with("pgward: "));
    }
    let made = direct
        .query_one("SELECT to_regclass('public.system_user') IS NOT NULL", &[])
        .await
        .unwrap();
    assert!(!made.get::<_, bool>(0));
    // In a block: aborted, as direct.
    via.batch_execute("BEGIN").await.unwrap();
    let e = via.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42601");
    let e = via.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "25P02");
    via.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(one_number(&via, "SELECT 7::int8").await, 7);
    // A named statement prepared before survives a bad Parse, as direct.
    let kept = via.prepare("SELECT 8::int8").await.unwrap();
    via.prepare("SELEC 9").await.unwrap_err();
    assert_eq!(via.query_one(&kept, &[]).await.unwrap().get::<_, i64>(0), 8);
}
