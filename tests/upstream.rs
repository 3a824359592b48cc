//! The upstream side: every authentication method pgward speaks, TLS to the
//! server (require, verify-full, wrong CA), and the server going away.

mod common;
use std::time::Duration;

use common::*;
use pgward::localpg::Options;

fn setup_user(user: &str, method: &str) -> Setup {
    let mut s = Setup::default();
    s.pg.hba = vec![format!("host all {user} 127.0.0.1/32 {method}")];
    s.upstream_user = Some(user.into());
    s.upstream_password = Some(format!("{user}-secret"));
    let encryption = if method == "md5" {
        "md5"
    } else {
        "scram-sha-256"
    };
    s.setup_sql = vec![format!(
        "set password_encryption = '{encryption}'; create role {user} login password '{user}-secret'; grant all on schema public to {user}"
    )];
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_authentication_methods() {
    for (user, method) in [
        ("u_trust", "trust"),
        ("u_password", "password"),
        ("u_md5", "md5"),
        ("u_scram", "scram-sha-256"),
    ] {
        let h = Harness::start_with(setup_user(user, method)).await;
        let c = h.connect(ALICE).await;
        let who: String = c
            .query_one("select current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user, "{method}");
        // The client never learns pgward's upstream secret, and a wrong one
        // is reported as pgward's problem, not the client's password.
        drop(c);
        if method != "trust" {
            let mut bad = setup_user(user, method);
            bad.upstream_password = Some("wrong".into());
            let h = Harness::start_with(bad).await;
            let err = h.try_connect(ALICE).await.err().unwrap();
            let db = err.as_db_error().unwrap();
            assert_eq!(db.code().code(), "08004", "{method}");
            assert!(db
                .message()
                .contains("pgward could not authenticate to the upstream"));
            assert!(!db.message().contains("wrong"));
        }
    }
}

/// Whether pgward's upstream connection for this client is encrypted.
async fn upstream_uses_tls(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

fn tls_cluster() -> (Options, String, String) {
    // A CA and a server certificate it signed, for verify-full.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgward test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let options = Options {
        conf: vec![
            "ssl = on".into(),
            "ssl_cert_file = 'server.crt'".into(),
            "ssl_key_file = 'server.key'".into(),
        ],
        files: vec![
            ("server.crt".into(), cert.pem()),
            ("server.key".into(), key.serialize_pem()),
        ],
        ..Options::default()
    };
    let other_ca = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
    (options, ca.pem(), other_ca.cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_modes() {
    let (options, ca_pem, other_pem) = tls_cluster();
    for (mode, expect_ssl) in [("disable", false), ("prefer", true), ("require", true)] {
        let h = Harness::start_with(Setup {
            pg: options.clone(),
            upstream: format!("sslmode = \"{mode}\""),
            ..Setup::default()
        })
        .await;
        let c = h.connect(ALICE).await;
        let ssl = upstream_uses_tls(&c).await;
        assert_eq!(ssl, expect_ssl, "sslmode {mode}");
        if mode == "require" {
            // Back-pressure through TLS: rustls buffers records of its own.
            slow_reader_gets_every_row(&h, DANA).await;
        }
    }

    for (ca, ok) in [(&ca_pem, true), (&other_pem, false)] {
        let h = Harness::start_with(Setup {
            pg: options.clone(),
            upstream: "sslmode = \"verify-full\"\nca_file = \"ca.pem\"".into(),
            files: vec![("ca.pem".into(), ca.clone())],
            ..Setup::default()
        })
        .await;
        match (h.try_connect(ALICE).await, ok) {
            (Ok(c), true) => {
                let ssl = upstream_uses_tls(&c).await;
                assert!(ssl);
            }
            (Err(e), false) => {
                let db = e.as_db_error().expect("a server error");
                assert_eq!(db.code().code(), "08004");
                assert!(db.detail().unwrap_or("").contains("TLS"), "{db:?}");
            }
            (Ok(_), false) => panic!("verify-full accepted a server signed by another CA"),
            (Err(e), true) => panic!("verify-full with the right CA failed: {e}"),
        }
    }

    // sslmode=require against a server without TLS: refused, clearly.
    let h = Harness::start_with(Setup {
        upstream: "sslmode = \"require\"".into(),
        ..Setup::default()
    })
    .await;
    let err = h.try_connect(ALICE).await.err().unwrap();
    let db = err.as_db_error().unwrap();
    assert!(
        db.detail().unwrap_or("").contains("does not support TLS"),
        "{db:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_going_away_gives_the_client_an_error_not_a_hang() {
    let mut h = Harness::start().await;
    let victim = h.connect(ALICE).await;
    let pid: i32 = victim
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let direct = h.direct().await;
    direct
        .execute("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), victim.query("select 1", &[]))
        .await
        .expect("no hang")
        .unwrap_err();
    // PostgreSQL's own FATAL 57P01 is relayed.
    assert!(
        err.code().map(|c| c.code()) == Some("57P01") || victim.is_closed(),
        "{err}"
    );

    // The whole server dies mid-query.
    let c = h.connect(ALICE).await;
    let running = tokio::spawn(async move { c.query("select pg_sleep(30)", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.pg.stop();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("no hang")
        .unwrap();
    assert!(result.is_err());
    // New clients get a clear error that pgward cannot reach the server.
    let err = h.try_connect(ALICE).await.err().unwrap();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "08004");
    assert!(
        db.message().contains("could not connect to the upstream"),
        "{db:?}"
    );
    h.stop().await;
}
