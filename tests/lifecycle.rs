//! Connection limits, graceful shutdown, direct TLS (PostgreSQL 17 style),
//! and the real `pgward serve` binary under SIGTERM.

mod common;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit() {
    let h = Harness::start_with(Setup {
        server: "max_connections = 2".into(),
        ..Setup::default()
    })
    .await;
    let a = h.connect(DANA).await;
    let b = h.connect(DANA).await;
    let err = h.try_connect(DANA).await.err().unwrap();
    assert_eq!(err.code().unwrap().code(), "53300");
    // A cancel request is still served when full.
    let token = a.cancel_token();
    let sleeper = tokio::spawn(async move { a.query("select pg_sleep(30)", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.unwrap_err().code().unwrap().code(), "57014");
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.connect(DANA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_transactions_finish_then_closes() {
    let mut h = start_server("shutdown_grace_secs = 20").await;
    let idle = h.connect(DANA).await;
    let busy = h.connect(DANA).await;
    busy.batch_execute("create table done (x int); begin; insert into done values (1)")
        .await
        .unwrap();
    let addr = h.addr;
    let stopping = tokio::spawn(async move {
        h.stop().await;
        h
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No new clients once draining.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The idle session was closed at its idle point.
    assert!(idle.query("select 1", &[]).await.is_err());
    // The open transaction may finish, and then the session is closed.
    busy.batch_execute("insert into done values (2); commit")
        .await
        .unwrap();
    let h = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
    assert!(busy.query("select 1", &[]).await.is_err());
    assert_eq!(
        h.pg.psql("postgres", "select count(*) from done").unwrap(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_expires_for_stuck_sessions() {
    let mut h = start_server("shutdown_grace_secs = 1").await;
    let stuck = h.connect(DANA).await;
    stuck.batch_execute("begin; select 1").await.unwrap();
    let started = std::time::Instant::now();
    h.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = stuck.query("select 1", &[]).await.unwrap_err();
    assert!(
        stuck.is_closed() || err.code().map(|c| c.code()) == Some("57P01"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_requires_alpn() {
    let h = Harness::start().await;
    // pgward's own unverified client config (what sslmode=require uses).
    let config = (*pgward::tls::upstream_client(None).unwrap()).clone();
    for alpn in [Some(b"postgresql".to_vec()), None] {
        let mut config = config.clone();
        if let Some(a) = &alpn {
            config.alpn_protocols = vec![a.clone()];
        }
        let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let mut b = bytes::BytesMut::new();
        postgres_protocol::message::frontend::startup_message([("user", "alice")], &mut b).unwrap();
        tls.write_all(&b).await.unwrap();
        let mut reply = Vec::new();
        if alpn.is_some() {
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_buf(&mut reply)).await;
        } else {
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply)).await;
        }
        if alpn.is_some() {
            // AuthenticationSASL offering channel binding: TLS is live.
            assert_eq!(reply[0], b'R');
            assert!(String::from_utf8_lossy(&reply).contains("SCRAM-SHA-256-PLUS"));
        } else {
            assert_eq!(reply[0], b'E');
            let text = String::from_utf8_lossy(&reply);
            assert!(text.contains("ALPN"), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_plain_clients() {
    let h = Harness::start_with(Setup {
        tls: Some("mode = \"required\"\ncert = \"cert.pem\"\nkey = \"key.pem\"".into()),
        ..Setup::default()
    })
    .await;
    let err = h.try_connect(DANA).await.err().unwrap();
    assert_eq!(err.code().unwrap().code(), "28000");
    let conn = h
        .conninfo(DANA)
        .replace("sslmode=disable", "sslmode=require");
    let (ok, out, err) = h
        .run(
            "psql",
            &["-X", "-A", "-t", "-d", &conn, "-c", "select 1"],
            &[],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binary_with_config_overrides_and_sigterm() {
    let h = Harness::start().await;
    let dir = h.dir.path();
    // Beside serve.toml, where its rules.dir (default "rules") finds it.
    example_rules_dir(dir);
    let port = free_port();
    std::fs::write(
        dir.join("serve.toml"),
        "[upstream]\nurl = \"postgres://nobody@127.0.0.1:1/x\"\npassword_env = \"PGWARD_TEST_UPSTREAM_PW\"\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["serve", "--config"])
        .arg(dir.join("serve.toml"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &h.pg.url("postgres")])
        .env("PGWARD_TEST_UPSTREAM_PW", &h.pg.password)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let info = format!(
        "host=127.0.0.1 port={port} user=alice password=alice-demo-password dbname=postgres"
    );
    let c = connect_when_up(&info).await;
    assert_eq!(
        c.query_one("select 5", &[]).await.unwrap().get::<_, i32>(0),
        5
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(
        !stderr.contains(&h.pg.password),
        "the upstream password must not be logged"
    );
}
