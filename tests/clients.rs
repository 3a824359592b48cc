//! tokio-postgres through pgward: prepared statements, binary results,
//! transactions, pipelining, COPY, LISTEN/NOTIFY, cancel, many clients.

mod common;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt, TryStreamExt};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_with_a_failure_in_the_middle() {
    let h = Harness::start().await;
    let c = h.connect(DANA).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    let h = Harness::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_row() {
    let h = Harness::start().await;
    slow_reader_gets_every_row(&h, DANA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_reaches_the_listener() {
    let h = Harness::start().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_cancels_only_with_the_right_key() {
    let h = Harness::start().await;
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
    // Fifty SCRAM sign-ins at once, both ends in a debug build on a shared
    // 2-core machine, can take longer than the default 10 s allowance.
    let h = start_server("auth_timeout_secs = 120").await;
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

/// A simple Query over a raw socket: the first column of its rows.
async fn raw_query(s: &mut tokio::net::TcpStream, sql: &str) -> Result<Vec<String>, String> {
    let mut b = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut b).unwrap();
    tokio::io::AsyncWriteExt::write_all(s, &b).await.unwrap();
    let mut rows = Vec::new();
    let mut error = None;
    for (tag, body) in until_ready(s).await {
        match tag {
            b'D' => {
                let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
                rows.push(String::from_utf8_lossy(&body[6..6 + len]).into_owned());
            }
            b'E' => {
                error = Some(format!(
                    "{} {}",
                    error_field(&body, b'C'),
                    error_field(&body, b'M')
                ))
            }
            _ => {}
        }
    }
    error.map_or(Ok(rows), Err)
}

/// Every process id a client sees is one number: BackendKeyData carries
/// the upstream backend's pid, which `pg_backend_pid()` returns, which a
/// NotificationResponse from that session carries, and which
/// `pg_cancel_backend()`/`pg_terminate_backend()` reach. The secret is
/// pgward's own: a CancelRequest with it works through pgward only, and a
/// wrong secret for the right pid cancels nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pid_a_client_sees_is_the_backends() {
    let h = Harness::start().await;
    let params = [("user", DANA.0), ("database", "postgres")];
    let (mut b, (b_pid, b_secret)) = login_keyed(&h, &params, DANA.1).await.unwrap();
    let backend_pid = raw_query(&mut b, "SELECT pg_backend_pid()").await.unwrap();
    assert_eq!(
        backend_pid,
        [b_pid.to_string()],
        "BackendKeyData pid = pg_backend_pid()"
    );
    // The upstream knows a backend of that pid, connected as this session.
    let direct = h.direct().await;
    let seen: i64 = direct
        .query_one(
            "select count(*) from pg_stat_activity where pid = $1",
            &[&b_pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 1);

    // A notification from B carries B's pid.
    let (listener, mut conn) = tokio_postgres::connect(&h.conninfo(DANA), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(Ok(msg)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                let _ = tx.send((n.process_id(), n.payload().to_owned()));
            }
        }
    });
    listener.batch_execute("listen jobs").await.unwrap();
    raw_query(&mut b, "NOTIFY jobs, 'from b'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some((b_pid, "from b".to_owned())));

    // Cancel: a wrong secret for B's pid cancels nothing, nor does B's key
    // sent to the server directly (its secret is pgward's); B's key through
    // pgward does.
    let send_cancel = |addr: std::net::SocketAddr, pid: i32, secret: i32| async move {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = bytes::BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(pid, secret, &mut req);
        tokio::io::AsyncWriteExt::write_all(&mut raw, &req)
            .await
            .unwrap();
        // The server closes the connection when it is done with it.
        let mut rest = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut rest).await;
    };
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = raw_query(&mut b, "SELECT pg_sleep(30)").await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_cancel(h.addr, b_pid, b_secret.wrapping_add(1)).await;
    let upstream_addr: std::net::SocketAddr = format!("127.0.0.1:{}", h.pg.port).parse().unwrap();
    send_cancel(upstream_addr, b_pid, b_secret).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !sleeper.is_finished(),
        "a wrong key must not cancel the query"
    );
    send_cancel(h.addr, b_pid, b_secret).await;
    let (mut b, result) = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the cancel took effect")
        .unwrap();
    assert!(result.unwrap_err().starts_with("57014"));
    assert!(started.elapsed() < Duration::from_secs(20));

    // pg_cancel_backend and pg_terminate_backend of the pid B was given
    // reach B's backend.
    let other = h.connect(DANA).await;
    let sleeper = tokio::spawn(async move {
        let r = raw_query(&mut b, "SELECT pg_sleep(30)").await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok: bool = other
        .query_one("select pg_cancel_backend($1)", &[&b_pid])
        .await
        .unwrap()
        .get(0);
    assert!(ok);
    let (mut b, result) = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("pg_cancel_backend took effect")
        .unwrap();
    assert!(result.unwrap_err().starts_with("57014"));
    let ok: bool = other
        .query_one("select pg_terminate_backend($1)", &[&b_pid])
        .await
        .unwrap()
        .get(0);
    assert!(ok);
    // B's session ends with the server's FATAL 57P01.
    let (tag, body) = tokio::time::timeout(Duration::from_secs(10), read_msg(&mut b))
        .await
        .expect("B hears of it");
    assert_eq!((tag, error_field(&body, b'C')), (b'E', "57P01".to_owned()));
    // pgward forgets B's key when its session ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.shared.cancels.len() != 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.shared.cancels.len(),
        2,
        "the listener's and other's keys remain"
    );
}

/// Deeply nested SQL: what PostgreSQL 15 runs at its default
/// max_stack_depth (about 4,090 terms of `1+1+...`, 2,111 nested
/// sub-selects) runs through pgward with the same result, in the simple
/// and the extended protocol, and what is deeper gets an error for that
/// statement alone (PostgreSQL's SQLSTATE 54001), never a crash: the
/// session and every other one go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_run_as_they_do_direct() {
    let h = Harness::start_with(Setup {
        // A million terms is 2 MB of SQL.
        server: "max_sql_bytes = 4194304".into(),
        ..Setup::default()
    })
    .await;
    let plus = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
    let direct = h.direct().await;
    let c = h.connect(DANA).await;
    let other = h.connect(DANA).await;
    let first = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };
    for sql in [
        plus(3_000),
        plus(4_000),
        format!("SELECT {}1", "+".repeat(3_000)),
        format!("SELECT {}1{}", "(SELECT ".repeat(1_500), ")".repeat(1_500)),
        format!("SELECT {}1{}", "abs(".repeat(1_000), ")".repeat(1_000)),
    ] {
        let want = first(direct.simple_query(&sql).await.unwrap());
        assert_eq!(
            first(c.simple_query(&sql).await.unwrap()),
            want,
            "{}",
            &sql[..40]
        );
        let row = c.query_one(sql.as_str(), &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0).to_string(), want);
    }
    // Deeper than PostgreSQL runs: its error directly, pgward's through
    // pgward, with the same SQLSTATE; deeper still, and far deeper.
    for sql in [plus(5_000), plus(1_000_000)] {
        let direct_err = direct.simple_query(&sql).await.unwrap_err();
        assert_eq!(direct_err.code().unwrap().code(), "54001", "{direct_err:?}");
        let err = c.simple_query(&sql).await.unwrap_err();
        let db = err.as_db_error().expect("an error response");
        assert_eq!(db.code().code(), "54001", "{err:?}");
        assert!(
            db.message().contains("nested too deeply"),
            "{}",
            db.message()
        );
        // The session goes on, and so does every other.
        assert_eq!(one_number(&c, "SELECT 7::bigint").await, 7);
        assert_eq!(one_number(&other, "SELECT 8::bigint").await, 8);
    }
    assert!(c.prepare(&plus(5_000)).await.is_err());
    assert_eq!(one_number(&c, "SELECT 9::bigint").await, 9);
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
        // An error the grammar raises with a code of its own, as
        // the server words it).
        "SELECT U&'\\D800'",
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
