//! Records the byte streams real clients (psql, pgbench, tokio-postgres)
//! exchange with pgward, through a tiny recording proxy, into the fixture
//! files under `tests/fuzz/` that the fuzz tests mutate. Run once, by hand,
//! when the fixtures should change:
//!
//! ```sh
//! PGWARD_RECORD_FUZZ=1 cargo test --test fuzz_record -- --ignored
//! ```

mod common;
mod fuzzing;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use fuzzing::Dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Log = Arc<Mutex<Vec<(Dir, Vec<u8>)>>>;

/// A proxy that forwards every connection to `target` and logs, per
/// connection, each chunk read from either side before passing it on.
struct Recorder {
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<Log>>>,
}

impl Recorder {
    async fn start(target: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let logs: Arc<Mutex<Vec<Log>>> = Arc::default();
        let all = logs.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log: Log = Arc::default();
                all.lock().unwrap().push(log.clone());
                let server = TcpStream::connect(target).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Dir::Frontend, log.clone()));
                tokio::spawn(pump(sr, cw, Dir::Backend, log));
            }
        });
        Recorder { addr, logs }
    }

    /// The logs of every connection so far, emptied.
    fn take(&self) -> Vec<Vec<(Dir, Vec<u8>)>> {
        let logs = std::mem::take(&mut *self.logs.lock().unwrap());
        logs.iter()
            .map(|l| std::mem::take(&mut *l.lock().unwrap()))
            .collect()
    }

    fn conninfo(&self, (user, password): (&str, &str), sslmode: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=postgres sslmode={sslmode} application_name=fuzz-record",
            self.addr.port()
        )
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dir: Dir,
    log: Log,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                log.lock().unwrap().push((dir, buf[..n].to_vec()));
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

fn save(name: &str, chunks: &[(Dir, Vec<u8>)]) {
    assert!(!chunks.is_empty(), "{name}: nothing recorded");
    let path = fuzzing::fixture_dir().join(format!("{name}.rec"));
    std::fs::write(&path, fuzzing::encode(chunks)).unwrap();
    println!("wrote {} ({} chunks)", path.display(), chunks.len());
}

/// Waits until the proxy has seen every connection close.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the fixtures; run by hand with PGWARD_RECORD_FUZZ=1"]
async fn record_client_sessions() {
    if std::env::var("PGWARD_RECORD_FUZZ").is_err() {
        eprintln!("set PGWARD_RECORD_FUZZ=1 to rewrite tests/fuzz/*.rec");
        return;
    }
    std::fs::create_dir_all(fuzzing::fixture_dir()).unwrap();
    let h = Harness::start_with(Setup {
        // TLS off: psql's SSLRequest is answered 'N' and the session stays
        // readable.
        tls: Some("mode = \"off\"".into()),
        setup_sql: vec!["CREATE TABLE fuzz_t (id int PRIMARY KEY, v text); \
             INSERT INTO fuzz_t SELECT g, 'row ' || g FROM generate_series(1, 10) g"
            .into()],
        ..Setup::default()
    })
    .await;
    let rec = Recorder::start(h.addr).await;

    // psql: SSLRequest first (sslmode=prefer), simple queries, a failing
    // statement, a transaction, COPY FROM STDIN through \copy and a \d.
    let script = h.dir.path().join("psql.sql");
    std::fs::write(
        &script,
        "SELECT 1 AS one;\n\
         SELECT id, v FROM fuzz_t ORDER BY id LIMIT 3;\n\
         SELECT no_such_column FROM fuzz_t;\n\
         BEGIN;\n\
         UPDATE fuzz_t SET v = v WHERE id = 1;\n\
         SAVEPOINT s;\n\
         SELECT 1/0;\n\
         ROLLBACK TO SAVEPOINT s;\n\
         COMMIT;\n\
         CREATE TEMP TABLE tt (a int, b text);\n\
         \\copy tt from stdin\n1\tone\n2\ttwo\n\\.\n\
         SELECT count(*) FROM tt;\n\
         \\d fuzz_t\n",
    )
    .unwrap();
    let path = pgward::localpg::find_program("psql").unwrap();
    let out = tokio::process::Command::new(path)
        .args(["-X", "-d", &rec.conninfo(DANA, "prefer"), "-f"])
        .arg(&script)
        .output()
        .await
        .unwrap();
    assert!(out.status.success() || !out.stdout.is_empty(), "{out:?}");
    settle().await;
    let mut psql = rec.take();
    assert_eq!(psql.len(), 1);
    save("psql", &psql.remove(0));

    // pgbench in each query mode, with a custom script.
    let bench = h.dir.path().join("bench.sql");
    std::fs::write(
        &bench,
        "\\set aid random(1, 10)\n\
         BEGIN;\n\
         SELECT v FROM fuzz_t WHERE id = :aid;\n\
         UPDATE fuzz_t SET v = v WHERE id = :aid;\n\
         END;\n",
    )
    .unwrap();
    for mode in ["simple", "extended", "prepared"] {
        let (ok, stdout, stderr) = h
            .run(
                "pgbench",
                &[
                    "-n",
                    "-t",
                    "3",
                    "-M",
                    mode,
                    "-f",
                    bench.to_str().unwrap(),
                    &rec.conninfo(DANA, "disable"),
                ],
                &[],
            )
            .await;
        assert!(ok, "{stdout}{stderr}");
        settle().await;
        // pgbench opens a connection of its own before the client's: keep
        // the one that ran the script (the longest).
        let logs = rec.take();
        let session = logs.iter().max_by_key(|l| l.len()).unwrap();
        save(&format!("pgbench_{mode}"), session);
    }

    // tokio-postgres: prepared statements with parameters, a transaction
    // with a failing statement, COPY both ways, pipelined queries.
    let (c, conn) = tokio_postgres::connect(&rec.conninfo(DANA, "disable"), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let n: i32 = c
        .query_one("SELECT $1::int + 1", &[&41i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42);
    let rows = c
        .query(
            "SELECT id, v FROM fuzz_t WHERE id < $1 ORDER BY id",
            &[&4i32],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let st = c
        .prepare("SELECT v FROM fuzz_t WHERE id = $1")
        .await
        .unwrap();
    let (a, b) = tokio::join!(c.query_one(&st, &[&1i32]), c.query_one(&st, &[&2i32]));
    a.unwrap();
    b.unwrap();
    c.batch_execute("BEGIN; CREATE TEMP TABLE tp (a int, b text)")
        .await
        .unwrap();
    assert!(c.execute("SELECT 1/0", &[]).await.is_err());
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("CREATE TEMP TABLE tp (a int, b text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY tp FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\tone\n2\ttwo\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    let out = c.copy_out("COPY tp TO STDOUT").await.unwrap();
    futures_util::pin_mut!(out);
    use futures_util::StreamExt;
    while let Some(chunk) = out.next().await {
        chunk.unwrap();
    }
    c.simple_query("SELECT 'a'; SELECT 'b'").await.unwrap();
    // A statement cancelled from a second connection (a CancelRequest).
    let token = c.cancel_token();
    let sleeping = c.simple_query("SELECT pg_sleep(30)");
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    };
    let (slept, ()) = tokio::join!(sleeping, cancel);
    assert!(slept.is_err(), "cancelled");
    drop(c);
    let _ = driver.await;
    settle().await;
    let mut logs = rec.take();
    assert_eq!(logs.len(), 2, "the session and its cancel request");
    save("tokio_postgres", &logs.remove(0));
    save("cancel_request", &logs.remove(0));
}
