//! The policy engine end to end: real clients through pgward against a real
//! PostgreSQL, with denials inside transactions, in pipelines and in the
//! extended protocol, and the catalog-dependent cases only a live database
//! shows.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use common::corpus::{corpus, corpus_rules_with_identities};
use common::*;
use pgward::auth::scram::Verifier;
use pgward::rules::Rules;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio_postgres::SimpleQueryMessage;

/// The tables the corpus runs against (tests/corpus/schema.sql).
const SCHEMA: &str = include_str!("corpus/schema.sql");

const READER: (&str, &str) = ("reader", "reader-password");
const WRITER: (&str, &str) = ("writer", "writer-password");

async fn corpus_harness() -> Harness {
    Harness::start_with(Setup {
        setup_sql: vec![SCHEMA.into()],
        rules: Some(corpus_rules_with_identities()),
        ..Setup::default()
    })
    .await
}

/// Everything a denied statement could have changed, read directly.
async fn fingerprint(h: &Harness) -> Vec<String> {
    let c = h.direct().await;
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM scratch)::text, (SELECT sum(amount) FROM orders)::text, \
             (SELECT last_value FROM orders_id_seq)::text, (SELECT count(*) FROM pg_largeobject_metadata)::text, \
             (SELECT count(*) FROM pg_class)::text, (SELECT count(*) FROM pg_roles)::text, \
             (SELECT count(*) FROM pg_prepared_xacts)::text, (SELECT count(*) FROM pg_replication_slots)::text, \
             (SELECT count(*) FROM pg_file_settings)::text, (SELECT count(*) FROM pg_database)::text",
            &[],
        )
        .await
        .unwrap();
    (0..10).map(|i| row.get::<_, String>(i)).collect()
}

async fn outcome(c: &tokio_postgres::Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    c.simple_query(sql).await.map(|_| ())
}

/// Every corpus statement marked `!`, as the read-only and the writing
/// role, through the simple and the extended protocol: pgward denies
/// exactly what the corpus says, and a denied statement changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_end_to_end() {
    let h = corpus_harness().await;
    let cases: Vec<_> = corpus().into_iter().filter(|c| c.e2e).collect();
    assert!(cases.len() >= 250, "{} end-to-end cases", cases.len());
    let mut failures = Vec::new();
    for (role_index, who) in [READER, WRITER].into_iter().enumerate() {
        let before = fingerprint(&h).await;
        let mut c = h.connect(who).await;
        for case in &cases {
            if c.is_closed() {
                c = h.connect(who).await;
            }
            let expect_denied = case.expect[role_index] != 'A';
            let simple = outcome(&c, &case.sql).await;
            // Text pgward cannot parse gets the server's syntax error.
            let refused = |e: &tokio_postgres::Error| {
                Harness::is_denial(e)
                    || (case.classes == "unparsable" && Harness::is_syntax_error(e))
            };
            let denied = simple.as_ref().err().is_some_and(refused);
            if denied != expect_denied {
                failures.push(format!(
                    "line {} as {}: simple query expected denied={expect_denied}, got {simple:?}",
                    case.line, who.0
                ));
            }
            let _ = c.simple_query("ROLLBACK").await;
            if c.is_closed() {
                c = h.connect(who).await;
            }
            // Parse alone (no Execute) must be judged the same way.
            if !case.sql.contains(';') && !case.sql.trim().is_empty() {
                let prepared = c.prepare(&case.sql).await;
                let denied = prepared.as_ref().err().is_some_and(refused);
                if denied != expect_denied {
                    failures.push(format!(
                        "line {} as {}: Parse expected denied={expect_denied}, got {:?}",
                        case.line,
                        who.0,
                        prepared.err()
                    ));
                }
            }
        }
        if role_index == 0 {
            assert_eq!(
                before,
                fingerprint(&h).await,
                "the read-only role changed something"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_in_a_transaction_aborts_it_like_a_failing_statement() {
    let h = corpus_harness().await;
    let before = fingerprint(&h).await;
    let c = h.connect(READER).await;
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("SELECT 1").await.unwrap();
    let e = c.batch_execute("DELETE FROM scratch").await.unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    let db = e.as_db_error().unwrap();
    assert!(
        db.message().contains("role \"reader\"") && db.message().contains("class write"),
        "{}",
        db.message()
    );
    assert!(
        db.hint().unwrap().contains("tests/corpus/roles.toml"),
        "{:?}",
        db.hint()
    );
    // Later statements fail until the block ends, exactly as in PostgreSQL.
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "25P02", "{e:?}");
    let e = c.batch_execute("DELETE FROM scratch").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "25P02", "{e:?}");
    // COMMIT of an aborted block rolls back.
    let msgs = c.simple_query("COMMIT").await.unwrap();
    assert!(matches!(
        msgs.last(),
        Some(SimpleQueryMessage::CommandComplete(0))
    ));
    assert_eq!(
        c.query_one("SELECT 3", &[]).await.unwrap().get::<_, i32>(0),
        3
    );

    // A savepoint taken before the denial recovers the block.
    c.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    assert!(Harness::is_denial(
        &c.batch_execute("INSERT INTO scratch VALUES (1)")
            .await
            .unwrap_err()
    ));
    c.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    assert_eq!(
        c.query_one("SELECT 4", &[]).await.unwrap().get::<_, i32>(0),
        4
    );
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(before, fingerprint(&h).await);

    // The writer's own writes in a block die with the denied statement.
    let w = h.connect(WRITER).await;
    w.batch_execute("BEGIN; INSERT INTO scratch VALUES (99)")
        .await
        .unwrap();
    let e = w
        .batch_execute("CREATE TABLE needs_approval (a int)")
        .await
        .unwrap_err();
    assert!(
        Harness::is_denial(&e) && e.as_db_error().unwrap().message().contains("approval"),
        "{e:?}"
    );
    w.batch_execute("COMMIT").await.unwrap();
    assert_eq!(before, fingerprint(&h).await, "the block was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_query_is_all_or_nothing() {
    let h = corpus_harness().await;
    let before = fingerprint(&h).await;
    let w = h.connect(WRITER).await;
    let e = w
        .batch_execute("INSERT INTO scratch VALUES (42); CREATE TABLE zz (a int); INSERT INTO scratch VALUES (43)")
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    let r = h.connect(READER).await;
    for sql in [
        "SELECT 1; DELETE FROM scratch",
        "COMMIT; INSERT INTO scratch VALUES (1)",
        "SET TRANSACTION READ WRITE; INSERT INTO scratch VALUES (1)",
        "BEGIN; SET LOCAL transaction_read_only = off; INSERT INTO scratch VALUES (1); COMMIT",
        "SELECT 1; SELEC 2",
    ] {
        let e = r.batch_execute(sql).await.unwrap_err();
        assert!(
            Harness::is_denial(&e) || Harness::is_syntax_error(&e),
            "{sql}: {e:?}"
        );
        r.batch_execute("SELECT 1").await.unwrap();
    }
    assert_eq!(before, fingerprint(&h).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_extended_protocol_denials() {
    let h = corpus_harness().await;
    let c = h.connect(READER).await;
    // tokio-postgres pipelines these: Parse/Bind/Execute/Sync each.
    let (a, b, d) = tokio::join!(
        c.query_one("SELECT 1::int", &[]),
        c.execute("DELETE FROM scratch", &[]),
        c.query_one("SELECT 2::int", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert!(Harness::is_denial(&b.unwrap_err()));
    assert_eq!(d.unwrap().get::<_, i32>(0), 2);
    // Parse alone is denied; the connection goes on.
    assert!(Harness::is_denial(
        &c.prepare("UPDATE orders SET amount = 0").await.unwrap_err()
    ));
    let s = c
        .prepare("SELECT amount FROM orders WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(c.query(&s, &[&1i32]).await.unwrap().len(), 1);
    // SQL PREPARE/EXECUTE: EXECUTE is judged by what was prepared.
    c.batch_execute("PREPARE ok AS SELECT 1").await.unwrap();
    c.batch_execute("EXECUTE ok").await.unwrap();
    assert!(Harness::is_denial(
        &c.batch_execute("PREPARE bad AS DELETE FROM scratch")
            .await
            .unwrap_err()
    ));
    assert!(Harness::is_denial(
        &c.batch_execute("EXECUTE bad").await.unwrap_err()
    ));
}

/// Asserts a tokio-postgres error is pgward's denial (42501) saying `says`.
fn assert_denied(err: &tokio_postgres::Error, says: &str) {
    let db = err.as_db_error();
    assert!(
        db.is_some_and(
            |e| e.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
                && e.message().starts_with("pgward: ")
                && e.message().contains(says)
        ),
        "expected a denial saying {says:?}, got {err:?}"
    );
}

fn error_code(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&b'C'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// One pipeline, one Sync: the denied Parse in the middle gets the error,
/// everything after it up to Sync is discarded, as PostgreSQL does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sync_pipeline_discards_after_the_denial() {
    let h = corpus_harness().await;
    let mut s = login(&h, READER).await;
    let mut b = BytesMut::new();
    for sql in ["SELECT 1", "DELETE FROM scratch", "SELECT 3"] {
        frontend::parse("", sql, [], &mut b).unwrap();
        // Bind: unnamed portal and statement, no parameters, text results.
        b.extend_from_slice(&frame(b'B', &[0; 8]));
        frontend::execute("", 0, &mut b).unwrap();
    }
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let msgs = until_ready(&mut s).await;
    let tags: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(tags, b"12DCEZ", "{:?}", String::from_utf8_lossy(&tags));
    assert_eq!(error_code(&msgs[4].1), "42501");
    assert_eq!(msgs.last().unwrap().1, b"I");

    // In a block the same denial aborts it ('E'), and only ROLLBACK helps.
    s.write_all(&frame(b'Q', b"BEGIN\0")).await.unwrap();
    until_ready(&mut s).await;
    let mut b = BytesMut::new();
    frontend::parse("", "INSERT INTO scratch VALUES (1)", [], &mut b).unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let msgs = until_ready(&mut s).await;
    assert_eq!(error_code(&msgs[0].1), "42501");
    assert_eq!(msgs.last().unwrap().1, b"E");
    s.write_all(&frame(b'Q', b"ROLLBACK\0")).await.unwrap();
    assert_eq!(until_ready(&mut s).await.last().unwrap().1, b"I");

    // A portal pgward never saw bound (a WITH HOLD cursor) cannot be run.
    s.write_all(&frame(b'Q', b"DECLARE c CURSOR WITH HOLD FOR SELECT 1\0"))
        .await
        .unwrap();
    until_ready(&mut s).await;
    let mut b = BytesMut::new();
    frontend::execute("c", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let msgs = until_ready(&mut s).await;
    assert_eq!(msgs[0].0, b'E');
    assert_eq!(error_code(&msgs[0].1), "42501");
    // A FunctionCall by OID is judged like a call: lo_creat (OID 957) writes.
    let mut body = 957u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 4, 255, 255, 255, 255, 0, 0]);
    s.write_all(&frame(b'F', &body)).await.unwrap();
    let msgs = until_ready(&mut s).await;
    assert_eq!(error_code(&msgs[0].1), "42501", "{msgs:?}");
    s.write_all(&frame(b'Q', b"SELECT 5\0")).await.unwrap();
    let msgs = until_ready(&mut s).await;
    assert!(msgs.iter().any(|m| m.0 == b'D'));
}

/// psql and the catalog queries its backslash commands send, as the
/// example AI agent (read-only, restricted tables).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_as_the_example_agent() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![pgward::demo::SAMPLE_SCHEMA.into()],
        ..Setup::default()
    })
    .await;
    for cmd in [
        "\\d",
        "\\dt",
        "\\d orders",
        "\\d+ customers",
        "\\df",
        "\\dn",
        "\\du",
        "\\l",
        "\\dv",
        "\\di",
    ] {
        let (ok, out, err) = h.psql(AGENT, &["-c", cmd]).await;
        assert!(ok, "{cmd}: {err}");
        assert!(!err.contains("pgward"), "{cmd}: {err} {out}");
    }
    let script = h.dir.path().join("agent.sql");
    std::fs::write(
        &script,
        "SELECT count(*) AS n FROM orders;\nDELETE FROM orders;\nSELECT * FROM api_keys;\nSELECT 'still here' AS s;\n",
    )
    .unwrap();
    let (_, out, err) = h
        .psql_env(AGENT, &["-f", script.to_str().unwrap()], &[])
        .await;
    assert!(out.contains("4") && out.contains("still here"), "{out}");
    assert!(
        err.contains("pgward: permission denied for role \"agent\": class write"),
        "{err}"
    );
    assert!(
        err.contains(
            "class read allowed, but not on this table (read of public.api_keys is denied)"
        ),
        "{err}"
    );
    let direct = h.direct().await;
    let n: i64 = direct
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    // Startup options are judged like SET: switching read-only off, a role
    // the identity does not hold, and lifting the statement_timeout (30s)
    // the agent's session pins are refused.
    for (options, says) in [
        (
            "-c default_transaction_read_only=off",
            "default_transaction_read_only",
        ),
        ("-c pgward.role=dba", "does not hold role"),
        ("-c statement_timeout=0", "statement_timeout is set to 30s"),
    ] {
        let (ok, _, err) = h
            .psql_env(AGENT, &["-c", "select 1"], &[("PGOPTIONS", options)])
            .await;
        assert!(!ok && err.contains(says), "{options}: {err}");
    }
    // A harmless one is not.
    let (ok, out, err) = h
        .psql_env(
            AGENT,
            &["-c", "show default_transaction_read_only"],
            &[("PGOPTIONS", "-c lock_timeout=5s")],
        )
        .await;
    assert!(ok && out.trim() == "on", "{out} {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_under_a_read_only_role() {
    let h = Harness::start().await;
    let direct = h.pg.conninfo("postgres");
    let (ok, _, err) = h
        .run("pgbench", &["-i", "-s", "1", "-q", &direct], &[])
        .await;
    assert!(ok, "{err}");
    let info = h.conninfo(ALICE);
    let (ok, out, err) = h
        .run(
            "pgbench",
            &["-S", "-n", "-c", "2", "-t", "200", "-M", "prepared", &info],
            &[],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let (ok, _, err) = h
        .run("pgbench", &["-n", "-c", "1", "-t", "5", &info], &[])
        .await;
    assert!(!ok && err.contains("pgward: permission denied"), "{err}");
}

fn one_role_rules(role_toml: &str, identity: &str) -> Rules {
    let mut rules = Rules::default();
    let v = Verifier::generate(&format!("{identity}-password"), 4096);
    let text = format!(
        "{role_toml}\n[[identity]]\nname = \"{identity}\"\nscram = \"{v}\"\nroles = [\"r\"]\n"
    );
    rules.add_file(Path::new("test-rules.toml"), &text).unwrap();
    rules.validate().unwrap();
    rules
}

/// Defence in depth: the role connects upstream as its own PostgreSQL user
/// with read-only session defaults that RESET and DISCARD cannot undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_upstream_user_and_session_settings() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE ROLE pgward_ro LOGIN PASSWORD 'ro-secret'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgward_ro".into(),
        ],
        files: vec![("ro-password".into(), "ro-secret".into())],
        upstream: "[[upstream.users]]\nname = \"pgward_ro\"\npassword_file = \"ro-password\"\n".into(),
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"session\", \"transaction\"]\nupstream_user = \"pgward_ro\"\n[role.r.session]\ndefault_transaction_read_only = \"on\"\nstatement_timeout = \"5s\"\n",
            "ro",
        )),
        ..Setup::default()
    })
    .await;
    let c = h.connect(("ro", "ro-password")).await;
    let user: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "pgward_ro");
    // Resets return to the pinned value. Drivers that ask for read-only
    // sessions in their own words (pgjdbc's readOnlyMode=always sends SET
    // SESSION CHARACTERISTICS, which sets the value 1) restate it: allowed.
    for keeps in [
        "RESET ALL",
        "DISCARD ALL",
        "RESET default_transaction_read_only",
        "SET default_transaction_read_only TO DEFAULT",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "SET default_transaction_read_only = true",
        "SET default_transaction_read_only TO 'ON'",
        "SELECT set_config('default_transaction_read_only', 'yes', false)",
    ] {
        c.batch_execute(keeps).await.unwrap();
        let ro = c
            .simple_query("SHOW default_transaction_read_only")
            .await
            .unwrap();
        let value = ro.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(value.as_deref(), Some("on"), "after {keeps}");
    }
    // Turning it off is not allowed, however it is spelled; nor is lifting
    // a timeout the role sets (harmless to change otherwise).
    for (sql, why) in [
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "default_transaction_read_only is set to on",
        ),
        (
            "SET default_transaction_read_only = 0",
            "default_transaction_read_only is set to on",
        ),
        (
            "SET default_transaction_read_only = 'of'",
            "default_transaction_read_only is set to on",
        ),
        (
            "SET statement_timeout = 0",
            "statement_timeout is set to 5s",
        ),
        (
            "SET LOCAL statement_timeout = 0",
            "statement_timeout is set to 5s",
        ),
        (
            "SELECT set_config('statement_timeout', '0', false)",
            "statement_timeout is set to 5s",
        ),
    ] {
        assert_denied(&c.simple_query(sql).await.expect_err(sql), why);
    }
    let row = c
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on");
    assert_eq!(c.query("SELECT * FROM orders", &[]).await.unwrap().len(), 2);
    c.batch_execute("SET statement_timeout = '5s'; SET lock_timeout = 0")
        .await
        .unwrap();
    let row = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "5s");
    let lifted = format!(
        "{} options='-c statement_timeout=0'",
        h.conninfo(("ro", "ro-password"))
    );
    let err = tokio_postgres::connect(&lifted, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a startup setting lifting the timeout is refused");
    let message = err.as_db_error().map(|e| e.message()).unwrap_or_default();
    assert!(
        message.contains("statement_timeout is set to 5s"),
        "{err:?}"
    );
}

/// Table rules cannot be read around: built-ins that read tables named by
/// their arguments, and the column statistics views (whose sample values
/// are table data), are refused to a role with read table rules. Each
/// statement is first run directly, to show PostgreSQL would hand the
/// secret over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_rules_cannot_be_read_around() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            pgward::demo::SAMPLE_SCHEMA.into(),
            // Repeated values reach pg_stats.most_common_vals.
            "INSERT INTO api_keys (service, secret) SELECT 's' || i, 'sk_live_demo_only' FROM generate_series(1, 50) i; ANALYZE api_keys;".into(),
            // A secret too long to keep in the row lives in the TOAST table.
            "ALTER TABLE api_keys ALTER secret SET STORAGE EXTERNAL; INSERT INTO api_keys (service, secret) VALUES ('long', 'sk_live_demo_only' || repeat('x', 4000));".into(),
            // A search_path pgward is not told about: unqualified names
            // find tables outside public.
            "CREATE SCHEMA hr; CREATE TABLE hr.payroll (name text, note text); INSERT INTO hr.payroll VALUES ('Ada', 'sk_live_demo_only'); ALTER DATABASE postgres SET search_path = hr, public;".into(),
            // A large object holds data no table rule names.
            "SELECT lo_from_bytea(0, 'sk_live_demo_only')".into(),
            // Extensions whose STABLE functions run SQL given as text, or
            // read pages of a relation named as text.
            "CREATE SCHEMA ext; CREATE EXTENSION tablefunc SCHEMA ext; CREATE EXTENSION xml2; CREATE EXTENSION pageinspect".into(),
            // file_fdw tables run a program or read a server file per read.
            "CREATE EXTENSION file_fdw; CREATE SERVER files FOREIGN DATA WRAPPER file_fdw; \
             CREATE FOREIGN TABLE public.prog (line text) SERVER files OPTIONS (program 'echo sk_live_demo_only'); \
             DO $$BEGIN EXECUTE format('CREATE FOREIGN TABLE public.version_file (line text) SERVER files OPTIONS (filename %L)', \
             current_setting('data_directory') || '/PG_VERSION'); END$$; \
             CREATE VIEW public.prog_view AS SELECT * FROM public.prog; \
             CREATE VIEW public.prog_view_view AS SELECT * FROM public.prog_view".into(),
        ],
        ..Setup::default()
    })
    .await;
    let first_text = |rows: Vec<SimpleQueryMessage>| {
        rows.iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default()
    };
    let direct = h.direct().await;
    let toast: String = direct
        .query_one(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'api_keys'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let read_toast = format!("SELECT convert_from(string_agg(chunk_data, '' ORDER BY chunk_seq), 'UTF8') FROM {toast} GROUP BY chunk_id");
    // Another session's last statement, as pg_stat_activity shows it.
    let other = h.direct().await;
    other
        .simple_query("SELECT 'sk_live_demo_only' AS planted")
        .await
        .unwrap();
    // The example agent (allowed tables listed) and analyst (one table
    // denied).
    let agent = h.connect(AGENT).await;
    let analyst = h.connect(("alice", "alice-demo-password")).await;
    // A table created after pgward loaded the catalog (on connecting, and
    // not again for 2 s): the agent cannot read it as if it were in public
    // while pgward does not know where it is.
    direct
        .batch_execute(
            "CREATE TABLE hr.bonus (note text); INSERT INTO hr.bonus VALUES ('sk_live_demo_only')",
        )
        .await
        .unwrap();
    let sql = "SELECT note FROM bonus";
    let err = agent.simple_query(sql).await.unwrap_err();
    assert_denied(
        &err,
        "holds no relation of that name, so it may be in any schema",
    );
    // The analyst's rules deny no table of that name anywhere.
    assert_eq!(
        first_text(analyst.simple_query(sql).await.unwrap()),
        "sk_live_demo_only"
    );
    for sql in [
        "SELECT table_to_xml('api_keys', true, false, '')::text",
        "SELECT table_to_xml(' PUBLIC . API_KEYS ', true, false, '')::text",
        "SELECT table_to_xml('\"api_keys\"', true, false, '')::text",
        "SELECT table_to_xml('api_keys'::regclass, true, false, '')::text",
        "SELECT table_to_xml(c.oid, true, false, '')::text FROM pg_class c WHERE relname = 'api_keys'",
        "SELECT pg_catalog.table_to_xml_and_xmlschema('api_keys', true, false, '')::text",
        "SELECT schema_to_xml('public', true, false, '')::text",
        "SELECT database_to_xml(true, false, '')::text",
        "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'api_keys' AND attname = 'secret'",
        "SELECT most_common_vals::text FROM pg_catalog.pg_stats WHERE attname = 'secret'",
        &read_toast,
        "SELECT string_agg(query, ' ') FROM pg_stat_activity",
        "SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata",
        "SELECT convert_from(loread(lo_open(oid, 262144), 100), 'UTF8') FROM pg_largeobject_metadata",
        "SELECT convert_from(data, 'UTF8') FROM pg_largeobject",
        "SELECT v FROM ext.crosstab('SELECT 1, 1, secret FROM api_keys ORDER BY id LIMIT 1') AS t(r int, v text)",
        "SELECT string_agg(k, ' ') FROM ext.connectby('api_keys', 'secret', 'service', 'long', 1) AS t(k text, p text, l int)",
        "SELECT string_agg(s, ' ') FROM xpath_table('id', 'xmlelement(name a, secret)', 'api_keys', '/a', 'true') AS t(id int, s text)",
        "SELECT encode(get_raw_page('api_keys', 0), 'escape')",
        // A WITH query of the same name only shadows the table where
        // PostgreSQL's scoping says so.
        "SELECT secret FROM (WITH api_keys AS (SELECT 1) SELECT 1) s, api_keys",
        "WITH api_keys AS (SELECT secret FROM api_keys) SELECT secret FROM api_keys",
        "SELECT string_agg(secret, ' ') FROM ((WITH api_keys AS (SELECT 'x'::text AS secret) SELECT secret FROM api_keys) UNION ALL SELECT secret FROM api_keys) u",
    ] {
        let through_postgres = first_text(direct.simple_query(sql).await.unwrap());
        assert!(through_postgres.contains("sk_live_demo_only"), "{sql}: {through_postgres}");
        for who in [&agent, &analyst] {
            assert_denied(&who.simple_query(sql).await.expect_err(sql), "");
        }
    }
    // A file_fdw table is COPY FROM a program or a server file.
    assert_eq!(
        first_text(
            direct
                .simple_query("SELECT line FROM version_file")
                .await
                .unwrap()
        ),
        "15"
    );
    assert_eq!(
        first_text(
            direct
                .simple_query("SELECT line FROM prog_view_view")
                .await
                .unwrap()
        ),
        "sk_live_demo_only"
    );
    for (sql, why) in [
        (
            "SELECT line FROM prog",
            "copy_program: a read of a file_fdw foreign table with a program",
        ),
        (
            "COPY prog TO STDOUT",
            "copy_program: a read of a file_fdw foreign table with a program",
        ),
        (
            "SELECT line FROM prog_view_view",
            "copy_program: a read of a file_fdw foreign table with a program",
        ),
        (
            "SELECT line FROM public.version_file",
            "copy_file: a read of a file_fdw foreign table",
        ),
    ] {
        for who in [&agent, &analyst] {
            assert_denied(&who.simple_query(sql).await.expect_err(sql), why);
        }
    }
    // Where it does shadow the table, nothing of the table is read.
    let shadowed = "WITH api_keys AS (SELECT 'shadow'::text AS secret) SELECT secret FROM api_keys";
    assert_eq!(
        first_text(agent.simple_query(shadowed).await.unwrap()),
        "shadow"
    );
    // The database's search_path finds hr.payroll for an unqualified name:
    // the agent, whose allowed tables are in public, is refused it; the
    // analyst, who may read it, gets it.
    let sql = "SELECT note FROM payroll";
    assert_eq!(
        first_text(direct.simple_query(sql).await.unwrap()),
        "sk_live_demo_only"
    );
    let err = agent.simple_query(sql).await.unwrap_err();
    assert_denied(&err, "hr.payroll is not in the allowed tables");
    assert_eq!(
        first_text(analyst.simple_query(sql).await.unwrap()),
        "sk_live_demo_only"
    );
    // Any role may set its search_path (ORMs do when they connect): names
    // are judged in every schema that holds them whatever it is.
    agent
        .batch_execute("SET search_path = hr, public")
        .await
        .unwrap();
    let err = agent.simple_query(sql).await.unwrap_err();
    assert_denied(&err, "hr.payroll is not in the allowed tables");
    // But no schema may come ahead of pg_catalog, however it is spelled:
    // PostgreSQL lowercases the unquoted PG_CATALOG and puts it second.
    let shadow = "SELECT set_config('search_path', 'hr,PG_CATALOG', false)";
    direct.batch_execute(shadow).await.unwrap();
    assert_eq!(
        first_text(
            direct
                .simple_query("SELECT current_schemas(true)::text")
                .await
                .unwrap()
        ),
        "{hr,pg_catalog}"
    );
    direct.batch_execute("RESET search_path").await.unwrap();
    let err = agent.simple_query(shadow).await.unwrap_err();
    assert_denied(&err, "before pg_catalog");
    // Once the catalog is refreshed (the refusal asks for it), the new
    // table is placed in hr and refused as such.
    let sql = "SELECT note FROM bonus";
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let err = agent.simple_query(sql).await.unwrap_err();
        let message = err.as_db_error().map(|e| e.message()).unwrap_or_default();
        if message.contains("hr.bonus is not in the allowed tables") {
            break;
        }
        assert_denied(&err, "may be in any schema");
        assert!(
            std::time::Instant::now() < deadline,
            "the catalog was not refreshed: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Tables the rules allow still read through table_to_xml (for a role
    // without masks: to the agent, which has some, it is untraceable).
    let err = agent
        .simple_query("SELECT table_to_xml('orders', true, false, '')::text")
        .await
        .unwrap_err();
    let message = err.as_db_error().map(|e| e.message()).unwrap_or_default();
    assert!(message.contains("masked columns"), "{err:?}");
    let alice = h.connect(ALICE).await;
    let xml = first_text(
        alice
            .simple_query("SELECT table_to_xml('customers', true, false, '')::text")
            .await
            .unwrap(),
    );
    assert!(xml.contains("Ada Lovelace"), "{xml}");
}

/// A session keeps its verdicts, but not past a catalog reload: a table
/// created under an allowed name in a schema that comes first on the
/// search path is refused once the catalog (reloaded every
/// `catalog_refresh_secs` while sessions use it) shows it, even to a
/// session that runs nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_sessions_follow_tables_created_since_they_began() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            pgward::demo::SAMPLE_SCHEMA.into(),
            "CREATE SCHEMA hr; ALTER DATABASE postgres SET search_path = hr, public".into(),
        ],
        upstream: "catalog_refresh_secs = 1".into(),
        ..Setup::default()
    })
    .await;
    let agent = h.connect(AGENT).await;
    let sql = "SELECT name FROM customers ORDER BY name LIMIT 1";
    let first = agent.simple_query(sql).await.unwrap();
    assert!(matches!(&first[1], SimpleQueryMessage::Row(r) if r.get(0) == Some("Ada Lovelace")));
    h.direct()
        .await
        .batch_execute("CREATE TABLE hr.customers (name text); INSERT INTO hr.customers VALUES ('sk_live_demo_only')")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let err = loop {
        match agent.simple_query(sql).await {
            Err(e) => break e,
            Ok(rows) => {
                // Until the reload the verdict stands (and PostgreSQL
                // resolves the name to hr.customers).
                assert!(
                    std::time::Instant::now() < deadline,
                    "the catalog was not reloaded: {rows:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_denied(&err, "hr.customers is not in the allowed tables");
}

/// Inheritance and partitioning share rows between tables: a SELECT from a
/// parent returns its children's rows, and a partition's rows are its
/// parent's. Denying either one denies reading it through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_rows_cannot_be_read_through_parents_or_partitions() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            "CREATE TABLE ledger (id int, note text) PARTITION BY RANGE (id); \
             CREATE TABLE ledger_2024 PARTITION OF ledger FOR VALUES FROM (0) TO (100); \
             INSERT INTO ledger VALUES (1, 'sk_live_demo_only'); \
             CREATE TABLE notes (note text); CREATE TABLE private_notes () INHERITS (notes); \
             INSERT INTO private_notes VALUES ('sk_live_demo_only'); \
             CREATE TABLE memos (note text); CREATE TABLE memos_2024 () INHERITS (memos); \
             INSERT INTO memos_2024 VALUES ('hello')"
                .into(),
        ],
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"session\", \"transaction\"]\n\
             [role.r.tables]\nread = { deny = [\"public.ledger\", \"public.private_notes\"] }\n",
            "r",
        )),
        ..Setup::default()
    })
    .await;
    let direct = h.direct().await;
    let r = h.connect(("r", "r-password")).await;
    for (sql, says) in [
        (
            "SELECT note FROM ledger_2024",
            "public.ledger is inherited by or partitioned into public.ledger_2024",
        ),
        (
            "SELECT note FROM notes",
            "public.private_notes inherits from or is a partition of public.notes",
        ),
    ] {
        let row = direct.query_one(sql, &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "sk_live_demo_only");
        assert_denied(&r.query(sql, &[]).await.expect_err(sql), says);
    }
    // Families without a denied member stay readable.
    for sql in ["SELECT note FROM memos", "SELECT note FROM memos_2024"] {
        assert_eq!(r.query(sql, &[]).await.unwrap().len(), 1, "{sql}");
    }
}

/// SQL passed as text runs unseen: a role that may write (and so call
/// query_to_xml, or run DO blocks) still may not read a denied table
/// through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_passed_as_text_cannot_read_denied_tables() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            pgward::demo::SAMPLE_SCHEMA.into(),
            "CREATE EXTENSION pg_stat_statements".into(),
        ],
        pg: pgward::localpg::Options {
            conf: vec!["shared_preload_libraries = 'pg_stat_statements'".into()],
            ..Default::default()
        },
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"write\", \"unknown\", \"session\", \"transaction\"]\n\
             [role.r.tables]\nread = { deny = [\"public.api_keys\"] }\n",
            "w",
        )),
        ..Setup::default()
    })
    .await;
    let w = h.connect(("w", "w-password")).await;
    let direct = h.direct().await;
    // pg_stat_statements keeps utility statements as they were sent.
    direct
        .batch_execute("SET application_name = 'sk_live_demo_only'")
        .await
        .unwrap();
    for sql in [
        "SELECT string_agg(query, ' ') FROM pg_stat_statements",
        "SELECT string_agg(query, ' ') FROM public.pg_stat_statements(true)",
    ] {
        let row = direct.query_one(sql, &[]).await.unwrap();
        assert!(
            row.get::<_, String>(0).contains("sk_live_demo_only"),
            "{sql}"
        );
        assert_denied(
            &w.simple_query(sql).await.expect_err(sql),
            "pg_stat_statements",
        );
    }
    for sql in [
        "SELECT query_to_xml('SELECT secret FROM api_keys', true, false, '')::text",
        "SELECT ts_stat('SELECT to_tsvector(secret) FROM api_keys')::text",
        "DO $$BEGIN RAISE NOTICE '%', (SELECT secret FROM api_keys LIMIT 1); END$$",
    ] {
        direct.simple_query(sql).await.unwrap();
        assert_denied(&w.simple_query(sql).await.expect_err(sql), "");
    }
    // pgward judges constant text as what it runs: the same call over an
    // allowed table runs, and returns its rows.
    let rows = w
        .simple_query("SELECT query_to_xml('SELECT name FROM customers', true, false, '')::text")
        .await
        .unwrap();
    let xml = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row");
    assert!(xml.contains("<name>"), "{xml}");
    // Text it cannot see is unknown, whatever it says at run time.
    let err = w
        .simple_query(
            "SELECT query_to_xml(current_setting('application_name'), true, false, '')::text",
        )
        .await
        .unwrap_err();
    assert_denied(&err, "");
    // Plain reads of allowed tables run.
    assert_eq!(
        w.query("SELECT name FROM customers", &[])
            .await
            .unwrap()
            .len(),
        3
    );
}

/// Through a superuser upstream user, settings that hold credentials (a
/// replication password, keys in a restore command) are shown to anyone
/// who asks: by name, with SHOW ALL, current_setting() or pg_settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_hold_credentials_are_not_shown() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            "CREATE VIEW tenant AS SELECT current_setting('app.tenant', true) AS t".into(),
        ],
        pg: pgward::localpg::Options {
            conf: vec![
                "primary_conninfo = 'host=primary user=replicator password=sk_live_demo_only'"
                    .into(),
                "restore_command = 'AWS_SECRET_ACCESS_KEY=sk_live_demo_only wal-g wal-fetch %f %p'"
                    .into(),
            ],
            ..Default::default()
        },
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"session\", \"transaction\"]\nsettings = [\"app.tenant\"]\n",
            "r",
        )),
        ..Setup::default()
    })
    .await;
    let direct = h.direct().await;
    let r = h.connect(("r", "r-password")).await;
    for sql in [
        "SHOW primary_conninfo",
        "SHOW \"RESTORE_COMMAND\"",
        "SHOW ALL",
        "SELECT current_setting('Primary_Conninfo')",
        "SELECT current_setting(n) FROM (VALUES ('restore_command')) v(n)",
        "SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'",
        "SELECT setting FROM pg_show_all_settings() WHERE name = 'restore_command'",
    ] {
        let rows = direct.simple_query(sql).await.unwrap();
        let shown = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                (0..row.len()).any(|i| row.get(i).is_some_and(|v| v.contains("sk_live_demo_only")))
            }
            _ => false,
        });
        assert!(shown, "PostgreSQL shows the secret to {sql}");
        assert_denied(
            &r.simple_query(sql).await.expect_err(sql),
            "may hold passwords or keys",
        );
        // The extended protocol is judged the same way.
        assert_denied(&r.query(sql, &[]).await.expect_err(sql), "server_secrets");
    }
    // Other settings stay readable, and so do views that read settings.
    let row = r
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).starts_with("15"));
    r.simple_query("SHOW server_version").await.unwrap();
    r.batch_execute("SET app.tenant = 'acme'").await.unwrap();
    let row = r.query_one("SELECT t FROM tenant", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "acme");
}

/// A role whose session settings connect as another PostgreSQL role
/// (`role = ...`, a startup setting) cannot drop it: SET ROLE NONE would
/// return to the login user (here a superuser), RESET ROLE returns to the
/// connected role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_role_cannot_be_dropped() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE ROLE readers; GRANT SELECT ON ALL TABLES IN SCHEMA public TO readers; GRANT readers TO CURRENT_USER".into(),
        ],
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"session\", \"transaction\"]\n[role.r.session]\nrole = \"readers\"\n",
            "rr",
        )),
        ..Setup::default()
    })
    .await;
    let c = h.connect(("rr", "rr-password")).await;
    let current = || async {
        let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
        row.get::<_, String>(0)
    };
    assert_eq!(current().await, "readers");
    for sql in ["SET ROLE NONE", "SELECT set_config('role', 'none', false)"] {
        let err = c.simple_query(sql).await.expect_err(sql);
        assert_denied(&err, "would drop the role readers pgward connected as");
        assert_eq!(current().await, "readers", "after {sql}");
    }
    for sql in [
        "RESET ROLE",
        "SET ROLE TO DEFAULT",
        "RESET ALL",
        "DISCARD ALL",
    ] {
        c.batch_execute(sql).await.unwrap();
        assert_eq!(current().await, "readers", "after {sql}");
    }
}

/// SET ROLE NONE is harmless, but PostgreSQL matches "none" exactly: any
/// other spelling names a role, and switching to it is SET ROLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_none_is_spelled_exactly() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            pgward::demo::SAMPLE_SCHEMA.into(),
            "CREATE ROLE \"NONE\"; GRANT \"NONE\" TO CURRENT_USER".into(),
        ],
        ..Setup::default()
    })
    .await;
    let direct = h.direct().await;
    direct.batch_execute("SET ROLE 'NONE'").await.unwrap();
    let row = direct
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "NONE");
    let agent = h.connect(AGENT).await;
    for sql in [
        "SET ROLE 'NONE'",
        "SET ROLE \"NONE\"",
        "SELECT set_config('role', 'NONE', false)",
    ] {
        assert_denied(
            &agent.simple_query(sql).await.expect_err(sql),
            "SET ROLE switches to another database role",
        );
    }
    agent.batch_execute("SET ROLE NONE").await.unwrap();
}

/// What only the live catalog shows: volatile user functions (also through
/// attribute notation, views, casts, domains and operators), and a
/// user function that shadows a built-in's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_catalog_cases() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE TABLE log (at timestamptz DEFAULT now());
             CREATE FUNCTION touch(customers) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING 1';
             CREATE FUNCTION writes() RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING 1';
             CREATE FUNCTION pure(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
             CREATE FUNCTION looks(int) RETURNS int LANGUAGE sql STABLE AS 'SELECT $1';
             CREATE VIEW busy AS SELECT writes() AS w;
             CREATE VIEW busier AS SELECT * FROM busy;
             CREATE VIEW calm AS SELECT pure(id) FROM customers;
             CREATE FUNCTION check_it(text) RETURNS bool LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING true';
             CREATE DOMAIN audited_text AS text CHECK (check_it(VALUE));
             CREATE TYPE ticket AS (n int);
             CREATE FUNCTION int_to_ticket(int) RETURNS ticket LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING ROW($1)::ticket';
             CREATE CAST (int AS ticket) WITH FUNCTION int_to_ticket(int);
             CREATE FUNCTION text_plus(text, text) RETURNS text LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING $1 || $2';
             CREATE OPERATOR + (leftarg = text, rightarg = text, function = text_plus);
             CREATE FUNCTION public.lower(int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING 1';
             CREATE FUNCTION logging_step(int, int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING coalesce($1, 0) + $2';
             CREATE AGGREGATE logged_sum(int) (sfunc = logging_step, stype = int);
             CREATE FUNCTION pure_step(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT coalesce($1, 0) + $2';
             CREATE AGGREGATE plain_sum(int) (sfunc = pure_step, stype = int);
             CREATE TABLE watched (n int); INSERT INTO watched VALUES (1);
             CREATE FUNCTION noted() RETURNS bool LANGUAGE sql VOLATILE AS 'INSERT INTO log DEFAULT VALUES RETURNING true';
             ALTER TABLE watched ENABLE ROW LEVEL SECURITY;
             CREATE POLICY seen ON watched USING (noted());
             CREATE ROLE rls_reader; GRANT SELECT ON watched TO rls_reader; GRANT INSERT ON log TO rls_reader;
             CREATE TABLE tenants (id int); ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON tenants USING (id = current_setting('app.tenant', true)::int);
             CREATE MATERIALIZED VIEW busy_snapshot AS SELECT writes() AS w; TRUNCATE log;
             CREATE EXTENSION dblink;"
                .into(),
        ],
        rules: Some(corpus_rules_with_identities()),
        ..Setup::default()
    })
    .await;
    let c = h.connect(READER).await;
    for sql in [
        "SELECT writes()",
        "SELECT public.writes()",
        "SELECT u.touch FROM customers u",
        "SELECT touch(u) FROM customers u",
        "SELECT (u).touch FROM customers u",
        "SELECT * FROM busy",
        "TABLE busy",
        "SELECT * FROM busier",
        "SELECT 'x'::audited_text",
        "SELECT CAST('x' AS audited_text)",
        "SELECT 42::ticket",
        "SELECT 'a'::text + 'b'::text",
        "SELECT lower(1)",
        "SELECT lower('X')",
        // pg_proc calls every aggregate IMMUTABLE; this one's step writes.
        "SELECT logged_sum(x) FROM generate_series(1, 3) x",
        "REFRESH MATERIALIZED VIEW busy_snapshot",
        // Row security policies run on every read of their table.
        "SELECT * FROM watched",
        "SELECT count(*) FROM (SELECT 1 FROM watched) w",
    ] {
        let e = c.simple_query(sql).await.map(|_| ()).unwrap_err();
        assert!(Harness::is_denial(&e), "{sql}: {e:?}");
    }
    assert_denied(
        &c.simple_query("TABLE watched").await.unwrap_err(),
        "noted() (through row security policies of watched) is VOLATILE",
    );
    // Operators are matched by name: with a user `+` in the database, every
    // `+` is suspect (denied), while other operators stay allowed.
    assert!(Harness::is_denial(
        &c.simple_query("SELECT 1 + 2").await.unwrap_err()
    ));
    for sql in [
        "SELECT pure(2)",
        "SELECT looks(1)",
        "SELECT plain_sum(x) FROM generate_series(1, 3) x",
        "SELECT * FROM tenants",
        // Reading a materialized view runs nothing of its definition.
        "SELECT * FROM busy_snapshot",
        "SELECT * FROM calm",
        "SELECT 2 * 3",
        "SELECT 'a' || 'b'",
    ] {
        c.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let direct = h.direct().await;
    let n = one_number(&direct, "SELECT count(*) FROM log").await;
    assert_eq!(n, 0, "no denied call ran");
    // What pgward refused does write when PostgreSQL runs it (the policy
    // as a role it applies to: not a superuser).
    for (sql, rows) in [
        ("SELECT logged_sum(x) FROM generate_series(1, 3) x", 3),
        ("SET ROLE rls_reader; SELECT * FROM watched; RESET ROLE", 1),
    ] {
        direct.batch_execute(sql).await.unwrap();
        let n = one_number(&direct, "SELECT count(*) FROM log").await;
        assert_eq!(n, rows, "{sql} writes");
        direct.batch_execute("TRUNCATE log").await.unwrap();
    }

    // Extensions install where they are told: dblink in public, named with
    // its schema, is still on the dangerous list for a role that may write.
    let writer = h.connect(WRITER).await;
    let conninfo = h.pg.conninfo("postgres");
    for f in ["public.dblink_exec", "\"public\".\"dblink_exec\""] {
        let sql = format!("SELECT {f}('{conninfo}', 'INSERT INTO log DEFAULT VALUES')");
        assert_denied(&writer.simple_query(&sql).await.unwrap_err(), "dblink");
        direct.simple_query(&sql).await.unwrap();
    }
    let n = one_number(&direct, "SELECT count(*) FROM log").await;
    assert_eq!(n, 2, "PostgreSQL runs what pgward refused");
    direct.batch_execute("TRUNCATE log").await.unwrap();

    // A function created after the catalog was loaded is unknown at first
    // (denied), then seen after a refresh.
    direct
        .batch_execute("CREATE FUNCTION fresh() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 7'")
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..40 {
        match c.simple_query("SELECT fresh()").await {
            Ok(_) => {
                seen = true;
                break;
            }
            Err(e) => assert!(Harness::is_denial(&e), "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen, "the catalog refresh never saw fresh()");
}

/// `sql` is refused through pgward, and run directly it raises `effect`
/// (a number the server reports): what pgward refused really does
/// something.
async fn refused_yet_effective(
    c: &tokio_postgres::Client,
    direct: &tokio_postgres::Client,
    sql: &str,
    effect: &str,
) {
    let e = c.simple_query(sql).await.map(|_| ()).unwrap_err();
    assert!(Harness::is_denial(&e), "{sql}: {e:?}");
    let before = one_number(direct, effect).await;
    direct
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} directly: {e:?}"));
    let after = one_number(direct, effect).await;
    assert!(after > before, "{sql} had no effect when run directly");
}

/// Calls with no function-call node of their own (issue 26): attribute
/// notation of built-ins and of user functions with defaults, operators in
/// sub-links and ORDER BY USING, and the comparison operators that
/// CASE, IN and JOIN USING look up by name. Each refused statement is then
/// run directly, and PostgreSQL's own log shows it would have run the
/// function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_calls_are_judged_as_calls() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE TABLE log (n int);
             CREATE FUNCTION touch_later(customers, int DEFAULT 1) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log VALUES (1) RETURNING 1';
             CREATE FUNCTION touch_any(VARIADIC int[]) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log VALUES (1) RETURNING 1';
             CREATE FUNCTION noisy_eq(int, int) RETURNS bool LANGUAGE sql VOLATILE AS 'INSERT INTO log VALUES (1) RETURNING $1 = $2';
             CREATE OPERATOR === (leftarg = int, rightarg = int, function = noisy_eq);
             CREATE TYPE pair AS (a int);
             CREATE FUNCTION pair_eq(pair, pair) RETURNS bool LANGUAGE sql VOLATILE AS 'INSERT INTO log VALUES (1) RETURNING ($1).a = ($2).a';
             CREATE OPERATOR = (leftarg = pair, rightarg = pair, function = pair_eq);
             CREATE TABLE pairs (p pair); INSERT INTO pairs VALUES (ROW(1)::pair);
             CREATE FUNCTION json_scalar(int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log VALUES (1) RETURNING 1';
             CREATE FUNCTION json_serialize(int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log VALUES (1) RETURNING 1';
             CREATE FUNCTION json_array(int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO log VALUES (1) RETURNING 1';"
                .into(),
        ],
        rules: Some(corpus_rules_with_identities()),
        ..Setup::default()
    })
    .await;
    let c = h.connect(READER).await;
    let direct = h.direct().await;
    for sql in [
        "SELECT u.touch_later FROM customers u",
        "SELECT s.touch_any FROM unnest(ARRAY[1]) s",
        "SELECT s.lo_create FROM unnest(ARRAY[0::oid]) s",
        "SELECT s.nextval FROM unnest(ARRAY['orders_id_seq'::regclass]) s",
        "SELECT 2 === ANY (SELECT 2)",
        "SELECT 2 OPERATOR(public.===) ALL (SELECT 2)",
        "SELECT 2 === ANY (ARRAY[2])",
        "SELECT CASE p WHEN ROW(1)::pair THEN 1 END FROM pairs",
        "SELECT p IN (ROW(1)::pair) FROM pairs",
        "SELECT * FROM pairs a JOIN pairs b USING (p)",
        // PostgreSQL 16+ syntax, a plain call on this server (15).
        "SELECT json_scalar(1)",
        "SELECT json_serialize(1)",
        "SELECT json_array(1)",
    ] {
        refused_yet_effective(
            &c,
            &direct,
            sql,
            "SELECT (SELECT count(*) FROM log) + (SELECT count(*) FROM pg_largeobject_metadata) \
             + (SELECT last_value FROM orders_id_seq)",
        )
        .await;
    }
    // A column of a name no function has is a column.
    c.simple_query("SELECT u.name, (u).email FROM customers u")
        .await
        .unwrap();
}

/// What an independent attack found running unjudged: a domain's CHECK
/// through arrays, domains over it and composites; coercion of a
/// function's arguments and result to a domain, and its defaults; user
/// casts into built-in types, written or implicit; the `=` that `IN
/// (SELECT ...)` leaves unnamed. Each is refused, and run directly it
/// calls the writing function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_casts_and_defaults_are_judged_as_calls() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE SEQUENCE hits; SELECT nextval('hits');
             CREATE FUNCTION logit(t text) RETURNS boolean LANGUAGE plpgsql VOLATILE
               AS $$BEGIN PERFORM nextval('hits'); RETURN true; END$$;
             CREATE DOMAIN audited_text AS text CHECK (logit(VALUE));
             CREATE DOMAIN audited2 AS audited_text;
             CREATE TYPE comp AS (a audited_text);
             CREATE FUNCTION show_it(x audited_text) RETURNS text LANGUAGE sql STABLE AS 'SELECT x::text';
             CREATE FUNCTION deflt(x int DEFAULT (CASE WHEN logit('default') THEN 1 END)) RETURNS int LANGUAGE sql STABLE AS 'SELECT x';
             CREATE FUNCTION ret_dom() RETURNS audited_text LANGUAGE sql STABLE AS $$SELECT 'ret'$$;
             CREATE TYPE mood AS ENUM ('happy');
             CREATE FUNCTION mood_to_int(m mood) RETURNS int LANGUAGE plpgsql VOLATILE
               AS $$BEGIN PERFORM nextval('hits'); RETURN 1; END$$;
             CREATE CAST (mood AS int) WITH FUNCTION mood_to_int(mood) AS IMPLICIT;
             CREATE TABLE moods (m mood); INSERT INTO moods VALUES ('happy');
             CREATE FUNCTION mood_eq_int(mood, int) RETURNS boolean LANGUAGE plpgsql VOLATILE
               AS $$BEGIN PERFORM nextval('hits'); RETURN true; END$$;
             CREATE OPERATOR = (leftarg = mood, rightarg = int, function = mood_eq_int);"
                .into(),
        ],
        rules: Some(corpus_rules_with_identities()),
        ..Setup::default()
    })
    .await;
    let c = h.connect(READER).await;
    let direct = h.direct().await;
    for sql in [
        "SELECT '{x}'::_audited_text",
        "SELECT 'x'::audited2",
        "SELECT '(x)'::comp",
        "SELECT show_it('y')",
        "SELECT ret_dom()",
        "SELECT deflt()",
        "SELECT m::int FROM moods",
        "SELECT CAST(m AS integer) FROM moods",
        "SELECT m + 1 FROM moods",
        "SELECT 1 FROM moods WHERE m IN (SELECT 7)",
        "SELECT 1 FROM moods WHERE m NOT IN (SELECT 8)",
    ] {
        refused_yet_effective(&c, &direct, sql, "SELECT last_value FROM hits").await;
    }
    // Which values an IMPLICIT cast applies to depends on types pgward
    // does not track: a VOLATILE one makes every statement suspect, as a
    // VOLATILE user operator makes every use of its name.
    assert_denied(
        &c.simple_query("SELECT name FROM customers")
            .await
            .unwrap_err(),
        "through an implicit cast",
    );
}

/// Writing a table runs its triggers: a role that may write is still
/// refused what the trigger function does that the role may not (found by
/// the differential test: trigger functions were never judged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_are_judged_with_the_write() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE TABLE trig_log (n int);
             CREATE FUNCTION peeks() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO trig_log VALUES (1); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); RETURN NEW; END $$;
             CREATE TRIGGER peek BEFORE INSERT OR UPDATE ON scratch FOR EACH ROW EXECUTE FUNCTION peeks();
             CREATE TABLE quiet (a int);
             CREATE FUNCTION counts() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO trig_log VALUES (2); RETURN NEW; END $$;
             CREATE TRIGGER count_it AFTER INSERT ON quiet FOR EACH ROW EXECUTE FUNCTION counts();"
                .into(),
        ],
        rules: Some(corpus_rules_with_identities()),
        ..Setup::default()
    })
    .await;
    let w = h.connect(WRITER).await;
    let direct = h.direct().await;
    for sql in [
        "INSERT INTO scratch VALUES (1)",
        "UPDATE scratch SET a = 2",
        "WITH x AS (INSERT INTO scratch VALUES (3) RETURNING a) SELECT * FROM x",
    ] {
        assert_denied(&w.simple_query(sql).await.unwrap_err(), "pg_stat_file");
    }
    let before = one_number(&direct, "SELECT count(*) FROM trig_log").await;
    direct
        .batch_execute("INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        one_number(&direct, "SELECT count(*) FROM trig_log").await,
        before + 1,
        "PostgreSQL runs the trigger"
    );
    // A trigger that does only what the role may do lets the write run.
    w.simple_query("INSERT INTO quiet VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        one_number(&direct, "SELECT count(*) FROM trig_log WHERE n = 2").await,
        1
    );
}

/// A write runs more than the table's triggers: column defaults (also of
/// the column's domain), generated columns, CHECK constraints, the domain
/// checks of column types (also arrays of domains), index expressions,
/// partial-index predicates and the support functions of user operator
/// classes; through updatable views too. A role that may write is refused what they do that it may not
/// (here a dangerous built-in); run directly, each statement calls the
/// function (it moves a sequence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_run_defaults_checks_and_index_expressions() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE SEQUENCE hits; SELECT nextval('hits');
             CREATE FUNCTION peek(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
               BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); RETURN $1; END $$;
             CREATE FUNCTION peek_cmp(int, int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
               BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); RETURN btint4cmp($1, $2); END $$;
             CREATE OPERATOR CLASS peek_ops FOR TYPE int USING btree AS
               OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 peek_cmp(int, int);
             CREATE DOMAIN peeked AS int CHECK (peek(VALUE) > 0);
             CREATE DOMAIN peeked_default AS int DEFAULT peek(7);
             CREATE TABLE t_default (a int DEFAULT peek(1), b int);
             CREATE TABLE t_dom_default (a peeked_default, b int);
             CREATE TABLE t_generated (a int, b int GENERATED ALWAYS AS (peek(a)) STORED);
             INSERT INTO t_generated (a) VALUES (1);
             CREATE TABLE t_check (a int CHECK (peek(a) > 0));
             CREATE VIEW t_check_view AS SELECT a FROM t_check WHERE a > 0;
             CREATE VIEW t_check_view_view AS SELECT a FROM t_check_view;
             CREATE TABLE t_domain (a peeked);
             CREATE TABLE t_domain_array (a peeked[]);
             CREATE TABLE t_index (a int); CREATE INDEX ON t_index (peek(a));
             CREATE TABLE t_partial (a int); CREATE INDEX ON t_partial (a) WHERE peek(a) > 0;
             CREATE TABLE t_opclass (a int); CREATE INDEX ON t_opclass (a peek_ops);
             INSERT INTO t_opclass VALUES (1);
             CREATE TABLE t_plain (a int DEFAULT 1, b timestamptz DEFAULT now(), c serial CHECK (c > 0));
             CREATE INDEX ON t_plain (lower(a::text));"
                .into(),
        ],
        rules: Some(corpus_rules_with_identities()),
        ..Setup::default()
    })
    .await;
    let w = h.connect(WRITER).await;
    let direct = h.direct().await;
    for sql in [
        "INSERT INTO t_default (b) VALUES (1)",
        "INSERT INTO t_default DEFAULT VALUES",
        "UPDATE t_default SET a = DEFAULT",
        "MERGE INTO t_default t USING (SELECT 1 AS b) s ON false WHEN NOT MATCHED THEN INSERT (b) VALUES (s.b)",
        "INSERT INTO t_dom_default (b) VALUES (1)",
        "INSERT INTO t_generated (a) VALUES (2)",
        "UPDATE t_generated SET a = 3",
        "INSERT INTO t_check VALUES (1)",
        "INSERT INTO t_check_view VALUES (4)",
        "UPDATE t_check_view_view SET a = 5",
        "INSERT INTO t_domain VALUES (1)",
        "INSERT INTO t_domain_array VALUES ('{1}')",
        "INSERT INTO t_index VALUES (1)",
        "INSERT INTO t_partial VALUES (1)",
        "INSERT INTO t_opclass VALUES (2)",
        "WITH x AS (INSERT INTO t_check VALUES (2) RETURNING a) SELECT * FROM x",
    ] {
        let e = w.simple_query(sql).await.map(|_| ()).expect_err(sql);
        assert_denied(&e, "pg_stat_file");
        refused_yet_effective(&w, &direct, sql, "SELECT last_value FROM hits").await;
    }
    assert_denied(
        &w.simple_query("COPY t_check FROM STDIN").await.unwrap_err(),
        "pg_stat_file",
    );
    // A DELETE evaluates none of them; a table whose expressions are
    // built-in computations costs nothing and passes.
    w.simple_query("DELETE FROM t_check").await.unwrap();
    w.simple_query("INSERT INTO t_plain DEFAULT VALUES; UPDATE t_plain SET a = 2")
        .await
        .unwrap();
}

/// Foreign key actions write the referencing tables as their owner, and
/// rules run their actions as the table's owner: a role allowed to write
/// `fk_parent` but denied `fk_child` must not reach `fk_child` through ON
/// DELETE (a cascade that then sets NULL), ON UPDATE CASCADE or TRUNCATE
/// ... CASCADE, nor `rule_target` through a DO ALSO rule of a table, a
/// DO INSTEAD rule of a view or a view's INSTEAD OF trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_and_rules_write_what_table_rules_deny() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            "CREATE TABLE fk_parent (id int PRIMARY KEY);
             CREATE TABLE fk_mid (id int PRIMARY KEY, pid int REFERENCES fk_parent ON DELETE CASCADE);
             CREATE TABLE fk_child (mid int REFERENCES fk_mid ON DELETE SET NULL,
                                    pid int REFERENCES fk_parent ON UPDATE CASCADE);
             INSERT INTO fk_parent VALUES (1), (2); INSERT INTO fk_mid VALUES (1, 1);
             INSERT INTO fk_child VALUES (1, 2);
             CREATE TABLE plain_parent (id int PRIMARY KEY);
             CREATE TABLE plain_child (pid int REFERENCES plain_parent);
             INSERT INTO plain_parent VALUES (1), (5);
             CREATE TABLE ruled (a int); CREATE TABLE rule_target (a int);
             CREATE RULE copy_it AS ON INSERT TO ruled DO ALSO INSERT INTO rule_target VALUES (new.a);
             CREATE VIEW ruled_view AS SELECT a FROM ruled;
             CREATE RULE instead_it AS ON INSERT TO ruled_view DO INSTEAD INSERT INTO rule_target VALUES (new.a);
             CREATE VIEW trig_view AS SELECT 1 AS a;
             CREATE FUNCTION to_target() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO rule_target VALUES (NEW.a); RETURN NEW; END $$;
             CREATE TRIGGER instead_trig INSTEAD OF INSERT ON trig_view FOR EACH ROW EXECUTE FUNCTION to_target();"
                .into(),
        ],
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"write\", \"session\", \"transaction\"]\n\
             [role.r.tables]\nwrite = { deny = [\"public.fk_child\", \"public.rule_target\"] }\n",
            "w",
        )),
        ..Setup::default()
    })
    .await;
    let w = h.connect(("w", "w-password")).await;
    let direct = h.direct().await;
    let effect = "SELECT (SELECT count(*) FROM fk_child WHERE mid IS NULL) \
                  + (SELECT count(*) FROM fk_child WHERE pid = 10) + (SELECT count(*) FROM rule_target)";
    for (sql, denied) in [
        ("DELETE FROM fk_parent WHERE id = 1", "fk_child"),
        ("UPDATE fk_parent SET id = 10 WHERE id = 2", "fk_child"),
        ("INSERT INTO ruled VALUES (1)", "rule_target"),
        ("INSERT INTO ruled_view VALUES (1)", "rule_target"),
        ("INSERT INTO trig_view VALUES (1)", "rule_target"),
    ] {
        let e = w.simple_query(sql).await.map(|_| ()).expect_err(sql);
        assert_denied(&e, denied);
        refused_yet_effective(&w, &direct, sql, effect).await;
    }
    assert_denied(
        &w.simple_query("TRUNCATE fk_parent CASCADE")
            .await
            .unwrap_err(),
        "fk_child",
    );
    // Foreign keys without actions write nothing else: allowed.
    w.simple_query("DELETE FROM plain_parent WHERE id = 5")
        .await
        .unwrap();
    w.simple_query("INSERT INTO fk_parent VALUES (3); UPDATE ruled SET a = 2")
        .await
        .unwrap();
    assert_eq!(
        one_number(&direct, "SELECT count(*) FROM plain_parent").await,
        1
    );
}

/// DDL fires event triggers, whose functions run arbitrary code: a role
/// that may run DDL is refused what the event trigger does that it may
/// not; run directly, the DDL runs the trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_runs_event_triggers() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            "CREATE SEQUENCE hits; SELECT nextval('hits');
             CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); END $$;
             CREATE EVENT TRIGGER watch ON ddl_command_end EXECUTE FUNCTION on_ddl();
             CREATE TABLE t (a int);
             CREATE FOREIGN DATA WRAPPER w; CREATE SERVER s FOREIGN DATA WRAPPER w;
             CREATE ROLE evt_owner; CREATE SCHEMA sch; CREATE TABLE owned (a int); ALTER TABLE owned OWNER TO evt_owner;"
                .into(),
        ],
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"write\", \"ddl\", \"dcl\", \"session\", \"transaction\"]\n",
            "d",
        )),
        ..Setup::default()
    })
    .await;
    let d = h.connect(("d", "d-password")).await;
    let direct = h.direct().await;
    for sql in [
        "CREATE TABLE t2 (a int)",
        "ALTER TABLE t ADD COLUMN b int",
        "CREATE INDEX ON t (a)",
        "GRANT SELECT ON t TO PUBLIC",
        // Statements of the class dcl that PostgreSQL runs as DDL: the
        // differential test saw each run the event trigger.
        "CREATE POLICY p ON t USING (true)",
        "ALTER POLICY p ON t USING (false)",
        "CREATE USER MAPPING FOR PUBLIC SERVER s",
        "ALTER SCHEMA sch OWNER TO evt_owner",
        "DROP OWNED BY evt_owner",
    ] {
        let e = d.simple_query(sql).await.map(|_| ()).expect_err(sql);
        assert_denied(&e, "pg_stat_file");
        refused_yet_effective(&d, &direct, sql, "SELECT last_value FROM hits").await;
    }
    // Statements that are not DDL fire none (nor do roles, which are
    // shared objects).
    d.simple_query("INSERT INTO t (a) VALUES (1)")
        .await
        .unwrap();
    let before = one_number(&direct, "SELECT last_value FROM hits").await;
    direct.simple_query("CREATE ROLE evt_other").await.unwrap();
    assert_eq!(
        one_number(&direct, "SELECT last_value FROM hits").await,
        before,
        "CREATE ROLE ran the event trigger"
    );
    d.simple_query("DROP ROLE evt_other").await.unwrap();
}

/// STABLE and IMMUTABLE are promises PostgreSQL does not enforce: a user
/// function is judged by what its body runs (SQL and PL/pgSQL, through
/// other functions, with cycles), and a body pgward cannot see is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_bodies_are_judged_by_what_they_run() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            SCHEMA.into(),
            "CREATE TABLE log (n int);
             CREATE FUNCTION peek() RETURNS text LANGUAGE sql STABLE AS 'SELECT secret FROM api_keys LIMIT 1';
             CREATE FUNCTION peek_atomic() RETURNS text LANGUAGE sql STABLE BEGIN ATOMIC SELECT secret FROM api_keys LIMIT 1; END;
             CREATE FUNCTION sneaky(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM nextval('orders_id_seq'); RETURN $1; END $$;
             CREATE FUNCTION files() RETURNS text LANGUAGE sql STABLE AS $$ SELECT pg_read_file('/etc/hostname') $$;
             CREATE FUNCTION dynamic(t text) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN EXECUTE 'SELECT count(*) FROM ' || t; RETURN 1; END $$;
             CREATE FUNCTION constant_sql() RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN EXECUTE 'SELECT setval(''orders_id_seq'', 1000)'; RETURN 1; END $$;
             CREATE FUNCTION outer_f() RETURNS int LANGUAGE sql STABLE AS 'SELECT sneaky(1)';
             CREATE FUNCTION ping(n int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN IF n > 0 THEN RETURN pong(n - 1); END IF; RETURN 0; END $$;
             CREATE FUNCTION pong(n int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN ping(n); END $$;
             CREATE FUNCTION double_it(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
             CREATE SEQUENCE hits; SELECT nextval('hits');
             CREATE FUNCTION logit(t text) RETURNS boolean LANGUAGE plpgsql VOLATILE
               AS $$BEGIN PERFORM nextval('hits'); RETURN true; END$$;
             CREATE DOMAIN audited_text AS text CHECK (logit(VALUE));"
                .into(),
        ],
        rules: Some(one_role_rules(
            "[role.r]\nallow = [\"read\", \"session\", \"transaction\"]\n\
             [role.r.tables]\nread = { deny = [\"public.api_keys\"] }\n",
            "r",
        )),
        ..Setup::default()
    })
    .await;
    let c = h.connect(("r", "r-password")).await;
    for (sql, says) in [
        ("SELECT peek()", "api_keys"),
        ("SELECT peek_atomic()", "api_keys"),
        ("SELECT sneaky(1)", "class write"),
        ("SELECT outer_f()", "class write"),
        ("SELECT files()", "pg_read_file"),
        ("SELECT dynamic('customers')", "built at run time"),
        ("SELECT constant_sql()", "class write"),
    ] {
        assert_denied(&c.simple_query(sql).await.unwrap_err(), says);
    }
    for sql in [
        "SELECT double_it(2)",
        "SELECT ping(3)",
        "SELECT name FROM customers",
    ] {
        c.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let direct = h.direct().await;
    // A Parse that declares its parameter's type as the domain, with no
    // type in the SQL, runs the CHECK on the value.
    let oid: u32 = direct
        .query_one("SELECT 'audited_text'::regtype::oid", &[])
        .await
        .unwrap()
        .get(0);
    let domain = tokio_postgres::types::Type::new(
        "audited_text".into(),
        oid,
        tokio_postgres::types::Kind::Domain(tokio_postgres::types::Type::TEXT),
        "public".into(),
    );
    let e = c
        .prepare_typed("SELECT $1", &[domain])
        .await
        .map(|_| ())
        .unwrap_err();
    assert_denied(&e, "audited_text");
    let before = one_number(&direct, "SELECT last_value FROM hits").await;
    direct
        .batch_execute("PREPARE typed(audited_text) AS SELECT $1; EXECUTE typed('x')")
        .await
        .unwrap();
    assert!(one_number(&direct, "SELECT last_value FROM hits").await > before);
    // PostgreSQL runs the writes pgward refused (sequences move, which
    // no ROLLBACK undoes), STABLE or IMMUTABLE as they say they are.
    for sql in [
        "SELECT sneaky(1)",
        "SELECT outer_f()",
        "SELECT constant_sql()",
    ] {
        let seq = "SELECT last_value FROM orders_id_seq";
        let before = one_number(&direct, seq).await;
        direct.simple_query(sql).await.unwrap();
        let after = one_number(&direct, seq).await;
        assert_ne!(after, before, "{sql}");
    }
}

/// SIGHUP reloads the rules: sessions stay up and follow the new rules; a
/// broken rules file is refused and the old rules stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload() {
    let h = corpus_harness().await;
    let dir = h.dir.path().join("reload-rules");
    std::fs::create_dir(&dir).unwrap();
    let writer_v = Verifier::generate("writer-password", 4096);
    let write_rules = |allow: &str| {
        std::fs::write(
            dir.join("rules.toml"),
            format!("[role.writer]\nallow = [{allow}]\n[[identity]]\nname = \"writer\"\nscram = \"{writer_v}\"\nroles = [\"writer\"]\n"),
        )
        .unwrap();
    };
    write_rules("\"read\", \"write\", \"session\", \"transaction\"");
    let port = free_port();
    std::fs::write(
        h.dir.path().join("serve.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nurl = \"{}\"\npassword_env = \"PGWARD_TEST_UPSTREAM_PW\"\n[rules]\ndir = \"{}\"\n",
            h.pg.url("postgres"),
            dir.display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["serve", "--config"])
        .arg(h.dir.path().join("serve.toml"))
        .env("PGWARD_TEST_UPSTREAM_PW", &h.pg.password)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let info =
        format!("host=127.0.0.1 port={port} user=writer password=writer-password dbname=postgres");
    let c = connect_when_up(&info).await;
    c.batch_execute("INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    // The binary classifies on its own runtime threads: deep trees too.
    let concat = format!("SELECT {}", vec!["'a'"; 300].join(" || "));
    c.simple_query(&concat).await.unwrap();
    let deep = format!("SELECT {}1{}", "(".repeat(500_000), ")".repeat(500_000));
    let e = c.simple_query(&deep).await.unwrap_err();
    assert!(
        Harness::is_denial(&e) || Harness::is_syntax_error(&e),
        "{e:?}"
    );
    // Statements prepared while writes were allowed.
    let insert = c.prepare("INSERT INTO scratch VALUES ($1)").await.unwrap();
    c.execute(&insert, &[&5i32]).await.unwrap();
    c.batch_execute("PREPARE w AS INSERT INTO scratch VALUES (9)")
        .await
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    // A broken file: refused, old rules stay.
    std::fs::write(
        dir.join("rules.toml"),
        "[role.writer]\nallow = [\"wirte\"]\n",
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.batch_execute("INSERT INTO scratch VALUES (2)")
        .await
        .unwrap();
    // A valid file without write: the same session is now denied.
    write_rules("\"read\", \"session\", \"transaction\"");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut denied = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match c.batch_execute("INSERT INTO scratch VALUES (3)").await {
            Err(e) if Harness::is_denial(&e) => {
                denied = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
            Ok(()) => {}
        }
    }
    assert!(denied, "the reload never took effect");
    // What was prepared before the reload is judged under the new rules.
    assert!(Harness::is_denial(
        &c.execute(&insert, &[&6i32]).await.unwrap_err()
    ));
    assert!(Harness::is_denial(
        &c.batch_execute("EXECUTE w").await.unwrap_err()
    ));
    // Re-preparing the name as a read fails upstream (it exists), so the
    // old write is still what EXECUTE w would run: still denied.
    let e = c.batch_execute("PREPARE w AS SELECT 1").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42P05", "{e:?}");
    assert!(Harness::is_denial(
        &c.batch_execute("EXECUTE w").await.unwrap_err()
    ));
    let n: i64 = h
        .direct()
        .await
        .query_one("SELECT count(*) FROM scratch WHERE a IN (6, 9)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("rules reload failed, keeping the old rules") && stderr.contains("wirte"),
        "{stderr}"
    );
}

/// The built-in catalog snapshot (used without a live catalog) matches the
/// PostgreSQL the tests run: every built-in function with its OID, name
/// and volatility.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_snapshot_matches_the_server() {
    let h = Harness::start().await;
    let c = h.direct().await;
    let version: i32 = c
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let snapshot = pgward::policy::Catalog::builtin();
    let rows = c
        .query(
            "SELECT p.oid::int8, p.proname::text, p.provolatile::text FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pg_catalog'",
            &[],
        )
        .await
        .unwrap();
    let mut missing = Vec::new();
    for r in &rows {
        let (oid, name, vol): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
        match snapshot.function_by_oid(oid as u32) {
            Some(f) if *f.name == *name && f.volatility == vol.as_bytes()[0] => {}
            other => missing.push(format!("{oid} {name} {vol}: snapshot has {other:?}")),
        }
    }
    if version == 15 {
        assert!(
            missing.is_empty(),
            "{} differences:\n{}",
            missing.len(),
            missing.join("\n")
        );
    } else {
        // Another major version: new built-ins are unknown (denied) until
        // the live catalog is loaded; only report.
        eprintln!(
            "PostgreSQL {version}: {} built-ins differ from the 15 snapshot",
            missing.len()
        );
    }
    assert!(rows.len() > 2500);
}

/// A role that lists search_path (here through `settings = ["*"]`) may put
/// a schema ahead of pg_catalog, as pgjdbc and some ORMs do. What such a
/// path shadows is judged: a VOLATILE `public.lower(text)` that writes is
/// what `lower('x')` runs then, and a user view `public.pg_tables` is what
/// `pg_tables` reads; pgward judges every object of an unqualified name,
/// so a read-only role is refused both, while built-ins still work. A role
/// without the permission is refused the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_before_pg_catalog_for_roles_that_allow_it() {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users();
    let v = Verifier::generate("orm-password", 4096);
    rules
        .add_file(
            Path::new("orm.toml"),
            &format!(
                "[[identity]]\nname = \"orm\"\nscram = \"{v}\"\nroles = [\"orm\"]\n\n\
                 [role.orm]\nallow = [\"read\", \"session\", \"transaction\"]\nsettings = [\"*\"]\n"
            ),
        )
        .unwrap();
    rules.validate().unwrap();
    let h = Harness::start_with(Setup {
        setup_sql: vec!["CREATE TABLE calls (n int); \
             CREATE FUNCTION public.lower(text) RETURNS text VOLATILE LANGUAGE sql \
               AS $$ INSERT INTO calls VALUES (1); SELECT upper($1) $$; \
             CREATE FUNCTION public.touch() RETURNS int VOLATILE LANGUAGE sql \
               AS $$ INSERT INTO calls VALUES (2) RETURNING n $$; \
             CREATE VIEW public.pg_tables AS SELECT public.touch() AS tablename; \
             CREATE FUNCTION public.sneaky_eq(text, text) RETURNS boolean IMMUTABLE \
               LANGUAGE sql AS $$ SELECT pg_catalog.texteq($1, 'default_transaction_read_only') $$; \
             CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.sneaky_eq)"
            .into()],
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    const ORM: (&str, &str) = ("orm", "orm-password");
    let path = "SET search_path = public, pg_catalog";
    let direct = h.direct().await;
    let calls = || async {
        h.direct()
            .await
            .query_one("SELECT count(*) FROM calls", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // Directly, the path makes lower() and pg_tables the user's: both write.
    direct.batch_execute(path).await.unwrap();
    let lowered: String = direct
        .query_one("SELECT lower('x')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lowered, "X", "public.lower shadows the built-in");
    direct
        .batch_execute("SELECT * FROM pg_tables")
        .await
        .unwrap();
    assert_eq!(calls().await, 2);

    let orm = h.connect(ORM).await;
    orm.batch_execute(path).await.unwrap();
    let shown: String = orm
        .query_one("SELECT current_schemas(false)::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "{public,pg_catalog}");
    let err = orm.simple_query("SELECT lower('x')").await.unwrap_err();
    assert_denied(&err, "class write");
    assert_denied(&err, "public.lower");
    let err = orm
        .simple_query("SELECT * FROM pg_tables")
        .await
        .unwrap_err();
    assert_denied(&err, "class write");
    assert_eq!(calls().await, 2, "nothing of a refused statement ran");
    // Built-ins the path does not shadow still work.
    let row = orm
        .query_one(
            "SELECT upper('x'), length('abc'), 1 + 1, now() IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "X");
    assert_eq!(row.get::<_, i32>(1), 3);
    // set_config and startup options too.
    orm.batch_execute(
        "RESET search_path; SELECT set_config('search_path', 'public,PG_CATALOG', false)",
    )
    .await
    .unwrap();
    let info = format!(
        "{} options='-c search_path=public,pg_catalog'",
        h.conninfo(ORM)
    );
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let shown: String = c
        .query_one("SELECT current_schemas(false)::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "{public,pg_catalog}");
    assert!(c.simple_query("SELECT lower('x')").await.is_err());

    // A role that allows writing runs it, recorded as the write it is.
    let dana = h.connect(DANA).await;
    dana.batch_execute(path).await.unwrap();
    let lowered: String = dana
        .query_one("SELECT lower('y')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lowered, "Y");
    assert_eq!(calls().await, 3);
    let event = h
        .audit_events()
        .into_iter()
        .find(|e| e.statement.as_deref() == Some("SELECT lower('y')"))
        .expect("audited");
    let classes: Vec<_> = event
        .classes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|c| c.as_deref())
        .collect();
    assert!(classes.contains(&"write"), "{classes:?}");

    // pg_dump's `set_config(name, ...) FROM pg_settings WHERE name = 'x'`
    // is taken for `SET x` only while `=` is the built-in: a user `=` on
    // text, ahead of pg_catalog, picks which settings it sets. Directly,
    // with the path, it switches off read-only mode under a harmless name.
    let idiom =
        "SELECT set_config(name, 'off', false) FROM pg_settings WHERE name = 'application_name'";
    let sneaky = h.direct().await;
    sneaky
        .batch_execute(
            "SET default_transaction_read_only = on; SET search_path = public, pg_catalog",
        )
        .await
        .unwrap();
    sneaky.batch_execute(idiom).await.unwrap();
    let read_only: String = sneaky
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(read_only, "off", "the user's = chose the setting");
    // Through pgward, not the idiom: a read of pg_settings and a
    // set_config of names pgward cannot read, refused.
    let orm = h.connect(ORM).await;
    orm.batch_execute(path).await.unwrap();
    orm.batch_execute("SET default_transaction_read_only = on")
        .await
        .unwrap();
    let err = orm.simple_query(idiom).await.unwrap_err();
    assert_denied(&err, "server_secrets");
    let read_only: String = orm
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(read_only, "on", "still read-only");

    // A read-only role whose settings do not name search_path is refused
    // the path, however it is asked for.
    let agent = h.connect(AGENT).await;
    for sql in [
        path,
        "SET LOCAL search_path = public, pg_catalog",
        "SELECT set_config('search_path', 'public,pg_catalog', false)",
    ] {
        let err = agent.simple_query(sql).await.unwrap_err();
        assert_denied(&err, "before pg_catalog");
    }
    let info = format!(
        "{} options='-c search_path=public,pg_catalog'",
        h.conninfo(AGENT)
    );
    assert!(tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .is_err());
}

/// A statement whose verdict depends on its parameters is judged at each
/// Bind with the values in place (asyncpg's `set_config('jit', $1, false)`,
/// Django's TimeZone, SQLAlchemy's `current_setting($1::VARCHAR)`, SQL text
/// bound to `query_to_xml`): allowed values run, refused ones change
/// nothing, and a value pgward cannot read keeps the statement refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_judged_at_bind_with_their_values() {
    let h = corpus_harness().await;
    let before = fingerprint(&h).await;
    // tokio-postgres: Parse without types, Describe, binary values.
    let c = h.connect(READER).await;
    let set = c
        .prepare("SELECT set_config($1, $2, false)")
        .await
        .expect("prepared: judged at Bind");
    let row = c
        .query_one(&set, &[&"application_name", &"bound"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "bound");
    let e = c
        .query_one(&set, &[&"default_transaction_read_only", &"off"])
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    let show = "SHOW default_transaction_read_only";
    assert_eq!(
        c.query_one(show, &[]).await.unwrap().get::<_, String>(0),
        h.connect(READER)
            .await
            .query_one(show, &[])
            .await
            .unwrap()
            .get::<_, String>(0),
    );
    // The same statement, bound again with an allowed value, still runs.
    let row = c
        .query_one(&set, &[&"application_name", &"again"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "again");

    let setting = c
        .prepare("SELECT current_setting($1::VARCHAR)")
        .await
        .unwrap();
    let row = c
        .query_one(&setting, &[&"default_table_access_method"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "heap");
    let e = c
        .query_one(&setting, &[&"restore_command"])
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");

    let xml = c
        .prepare("SELECT query_to_xml($1, true, false, '')::text")
        .await
        .unwrap();
    let row = c
        .query_one(&xml, &[&"SELECT 41 + 1 AS answer"])
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).contains("<answer>42</answer>"));
    for hidden in [
        "SELECT nextval('orders_id_seq')",
        "INSERT INTO scratch VALUES (1) RETURNING a",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
    ] {
        let e = c.query_one(&xml, &[&hidden]).await.unwrap_err();
        assert!(Harness::is_denial(&e), "{hidden}: {e:?}");
    }
    // Refused whatever the values: refused at its Parse, as before.
    let e = c
        .prepare("DELETE FROM scratch WHERE a = $1")
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    assert_eq!(
        fingerprint(&h).await,
        before,
        "a refused Bind changed something"
    );

    // Raw protocol, one pipeline, no Describe: a text value needs no type;
    // a binary one of a type nobody declared cannot be read, so the
    // statement stays refused (four bytes are one value as int4 and
    // another as text).
    let mut s = login(&h, READER).await;
    let pipeline = |format: u8, value: &[u8]| {
        let mut b = BytesMut::new();
        frontend::parse("", "SELECT set_config($1, $2, false)", [], &mut b).unwrap();
        let mut bind = b"\0\0\0\x01\0".to_vec();
        bind.push(format);
        bind.extend_from_slice(&[0, 2]);
        for v in [&b"application_name"[..], value] {
            bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
            bind.extend_from_slice(v);
        }
        bind.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&frame(b'B', &bind));
        frontend::execute("", 0, &mut b).unwrap();
        frontend::sync(&mut b);
        b
    };
    s.write_all(&pipeline(0, b"raw-text")).await.unwrap();
    let msgs = until_ready(&mut s).await;
    let tags: Vec<u8> = msgs
        .iter()
        .map(|m| m.0)
        .filter(|t| !matches!(t, b'S' | b'N'))
        .collect();
    assert_eq!(tags, b"12DCZ", "{msgs:?}");
    s.write_all(&pipeline(1, b"raw-binary")).await.unwrap();
    let msgs = until_ready(&mut s).await;
    let tags: Vec<u8> = msgs
        .iter()
        .map(|m| m.0)
        .filter(|t| !matches!(t, b'S' | b'N'))
        .collect();
    assert_eq!(tags, b"1EZ", "{msgs:?}");
    assert_eq!(error_code(&msgs[1].1), "42501");
    // Values cannot break out of their literal.
    let mut b = BytesMut::new();
    frontend::parse(
        "q",
        "SELECT set_config('application_name', $1, false)",
        [],
        &mut b,
    )
    .unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    until_ready(&mut s).await;
    for value in [
        &b"x'), nextval('orders_id_seq') --"[..],
        b"x\\'), nextval('orders_id_seq') --",
    ] {
        let mut bind = b"\0q\0\0\0\0\x01".to_vec();
        bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
        bind.extend_from_slice(value);
        bind.extend_from_slice(&[0, 0]);
        let mut b = BytesMut::from(&frame(b'B', &bind)[..]);
        frontend::execute("", 0, &mut b).unwrap();
        frontend::sync(&mut b);
        s.write_all(&b).await.unwrap();
        let msgs = until_ready(&mut s).await;
        let tags: Vec<u8> = msgs
            .iter()
            .map(|m| m.0)
            .filter(|t| !matches!(t, b'S' | b'N'))
            .collect();
        assert_eq!(tags, b"2DCZ", "{msgs:?}");
        // The whole value is the name, as the server read it.
        let mut status = b"application_name\0".to_vec();
        status.extend_from_slice(value);
        status.push(0);
        assert!(
            msgs.iter().any(|m| m.0 == b'S' && m.1 == status),
            "{msgs:?}"
        );
    }
    assert_eq!(fingerprint(&h).await, before);
}
