//! The demo's second lock: each example role reaches PostgreSQL as its own
//! user with only the grants it needs, so what pgward would let through by
//! mistake PostgreSQL refuses itself; and through pgward the example
//! identities still do what their roles allow.

mod common;

use std::sync::Arc;

use common::*;
use pgward::demo::Demo;
use pgward::server::Shared;

async fn start_demo() -> (Demo, Arc<Shared>, std::net::SocketAddr, tempfile::TempDir) {
    let audit = tempfile::tempdir().unwrap();
    let audit_dir = audit.path().to_owned();
    let demo = tokio::task::spawn_blocking(move || {
        pgward::demo::setup("127.0.0.1:0".parse().unwrap(), &audit_dir)
    })
    .await
    .unwrap()
    .expect("demo setup");
    let shared = Shared::new(demo.config.clone(), pgward::demo::example_rules().unwrap()).unwrap();
    shared.start_workers().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(pgward::server::run(
        listener,
        shared.clone(),
        std::future::pending(),
    ));
    (demo, shared, addr, audit)
}

async fn through_pgward(
    addr: std::net::SocketAddr,
    (user, password): (&str, &str),
) -> tokio_postgres::Client {
    let info = format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=demo sslmode=disable",
        addr.port()
    );
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{user} through pgward: {e}"));
    tokio::spawn(conn);
    c
}

/// As dana on the admin console: waits for the one pending request and
/// runs `command` with `{id}` replaced by its id.
async fn decide(addr: std::net::SocketAddr, command: &str) {
    let info = format!(
        "host=127.0.0.1 port={} user=dana password={} dbname=pgward sslmode=disable",
        addr.port(),
        DANA.1
    );
    let (console, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .expect("dana on the console");
    tokio::spawn(conn);
    let id = loop {
        let rows = console.simple_query("SHOW PENDING").await.unwrap();
        let id = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("id").map(str::to_owned),
            _ => None,
        });
        match id {
            Some(id) => break id,
            None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    console
        .simple_query(&command.replace("{id}", &id))
        .await
        .unwrap();
}

async fn direct(demo: &Demo, user: &str) -> tokio_postgres::Client {
    let info = demo.direct_conninfo(user).expect("a demo user");
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{user} directly: {e}"));
    tokio::spawn(conn);
    c
}

async fn text(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// PostgreSQL's own refusal (42501 not from pgward).
async fn refused_by_postgres(c: &tokio_postgres::Client, user: &str, sql: &str) {
    let e = c
        .batch_execute(sql)
        .await
        .expect_err(&format!("{user} may not run {sql}"));
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{user}: {sql}: {e}"));
    assert_eq!(db.code().code(), "42501", "{user}: {sql}: {}", db.message());
    assert!(!db.message().starts_with("pgward"), "{}", db.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_roles_meet_postgres_own_permission_checks() {
    let (demo, shared, addr, _audit) = start_demo().await;

    // No example role that may not do everything connects as a superuser
    // or with access to the server's files.
    let findings = pgward::privileges::check(&shared.upstream, &shared.rules())
        .await
        .unwrap();
    assert!(findings.is_empty(), "{findings:?}");

    // pgward bypassed (as a classification miss would leave it): the
    // read-only roles' users are refused by PostgreSQL itself, even
    // without the read-only session default pgward sets.
    for user in ["pgward_analyst", "pgward_agent"] {
        let c = direct(&demo, user).await;
        assert_eq!(text(&c, "SHOW default_transaction_read_only").await, "off");
        assert_eq!(text(&c, "SHOW is_superuser").await, "off");
        assert_eq!(
            text(&c, "SELECT count(*)::text FROM orders").await,
            "4",
            "{user} reads what its role may"
        );
        for sql in [
            "SELECT * FROM api_keys",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_ls_dir('.')",
            "INSERT INTO orders (customer_id, amount) VALUES (1, 1)",
            "UPDATE customers SET ssn = 'x'",
            "DELETE FROM orders",
            "TRUNCATE orders",
            "COPY orders TO '/tmp/pgward-demo-leak'",
            "COPY orders TO PROGRAM 'true'",
            "SELECT lo_from_bytea(0, 'x')",
            "SELECT lo_create(0)",
            "CREATE TABLE leak (a int)",
            "CREATE TEMP TABLE leak (a int)",
            "ALTER TABLE orders ADD COLUMN x int",
            "DROP TABLE orders",
        ] {
            refused_by_postgres(&c, user, sql).await;
        }
    }
    // The application's user writes rows but reaches no server files and
    // changes no schema.
    let app = direct(&demo, "pgward_app").await;
    for sql in [
        "SELECT pg_read_file('/etc/passwd')",
        "COPY orders TO PROGRAM 'true'",
        "DROP TABLE orders",
        "ALTER TABLE orders ADD COLUMN x int",
    ] {
        refused_by_postgres(&app, "pgward_app", sql).await;
    }
    // The DBA's user owns the tables but is no superuser either.
    let dba = direct(&demo, "pgward_dba").await;
    assert_eq!(text(&dba, "SHOW is_superuser").await, "off");
    refused_by_postgres(&dba, "pgward_dba", "SELECT pg_read_file('/etc/passwd')").await;

    // Through pgward every example identity signs in and does what its
    // role allows, as its own upstream user.
    let alice = through_pgward(addr, ALICE).await;
    assert_eq!(
        text(&alice, "SELECT current_user::text").await,
        "pgward_analyst"
    );
    assert_eq!(
        text(
            &alice,
            "SELECT string_agg(name, ',' ORDER BY id) FROM customers"
        )
        .await,
        "Ada Lovelace,Alan Turing,Grace Hopper"
    );
    let e = alice
        .simple_query("SELECT * FROM api_keys")
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "{e}");

    let agent = through_pgward(addr, AGENT).await;
    assert_eq!(
        text(&agent, "SELECT current_user::text").await,
        "pgward_agent"
    );
    assert_eq!(
        text(&agent, "SELECT sum(amount)::text FROM orders").await,
        "277.49"
    );
    // The agent's writes wait for approval: dana denies this one.
    let agent = Arc::new(agent);
    let held = {
        let agent = agent.clone();
        tokio::spawn(async move { agent.simple_query("DELETE FROM orders").await })
    };
    decide(addr, "DENY {id} 'agents do not delete orders'").await;
    let e = held.await.unwrap().unwrap_err();
    assert!(
        Harness::is_denial(&e)
            && e.as_db_error()
                .is_some_and(|d| d.message().contains("denied by dana")),
        "{e:?}"
    );

    let bob = through_pgward(addr, BOB).await;
    assert_eq!(text(&bob, "SELECT current_user::text").await, "pgward_app");
    let id = text(
        &bob,
        "INSERT INTO orders (customer_id, amount) VALUES (2, 10) RETURNING id::text",
    )
    .await;
    bob.batch_execute(&format!(
        "UPDATE orders SET amount = 11 WHERE id = {id}; DELETE FROM orders WHERE id = {id}"
    ))
    .await
    .unwrap();
    bob.batch_execute("BEGIN; LOCK orders IN SHARE MODE; SELECT lo_create(0); ROLLBACK")
        .await
        .unwrap();
    assert_eq!(text(&bob, "SELECT service FROM api_keys").await, "payments");
    // Schema changes wait for a DBA's approval, given on the console.
    let bob = Arc::new(bob);
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE t (a int)").await })
    };
    decide(addr, "APPROVE {id}").await;
    held.await.unwrap().expect("approved, the CREATE TABLE ran");

    let dana = through_pgward(addr, DANA).await;
    dana.batch_execute("DROP TABLE t").await.unwrap();
    assert_eq!(text(&dana, "SELECT current_user::text").await, "pgward_dba");
    dana.batch_execute(
        "CREATE TABLE notes (id serial PRIMARY KEY, body text); \
         ALTER TABLE orders ADD COLUMN note text; \
         GRANT SELECT ON notes TO pgward_analyst; \
         DROP TABLE notes; ALTER TABLE orders DROP COLUMN note",
    )
    .await
    .unwrap();
    assert_eq!(text(&dana, "SELECT pg_reload_conf()::text").await, "true");
    // Other sessions' work can be cancelled (pg_signal_backend).
    let bob_pid = text(&bob, "SELECT pg_backend_pid()::text").await;
    assert_eq!(
        text(&dana, &format!("SELECT pg_cancel_backend({bob_pid})::text")).await,
        "true"
    );
}
