//! Column masking end to end, against PostgreSQL: the example agent sees
//! `customers.email` and `customers.ssn` masked by lineage, through psql,
//! tokio-postgres (binary results) and the raw protocol, in rows, COPY,
//! cursors and errors; dana sees them in clear.

mod common;

use bytes::BytesMut;
use common::*;
use tokio::io::AsyncWriteExt;

/// Every masked value of the sample data, and pieces of them: none may
/// reach the agent in any form.
const SECRETS: &[&str] = &[
    "078-05-1120",
    "219-09-9999",
    "457-55-5462",
    "078-05",
    "ada@example.com",
    "alan@example.com",
    "grace@",
    "lan@example",
];

/// The example rules (the agent may also COPY out, to test COPY), the
/// sample data and a view over customers, loaded before any session.
async fn harness() -> Harness {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users()
        .without_approvers();
    rules = rules.with_role("agent", |agent| {
        agent.allow.insert(pgward::policy::Class::CopyOut);
    });
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    let d = h.direct().await;
    d.batch_execute(pgward::demo::SAMPLE_SCHEMA).await.unwrap();
    d.batch_execute("CREATE VIEW contacts AS SELECT id, email AS mail FROM customers")
        .await
        .unwrap();
    h
}

fn refused(e: &tokio_postgres::Error) -> String {
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501", "{db:?}");
    db.message().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sees_masked_values_and_dana_sees_them_in_clear() {
    let h = harness().await;
    let sql = "SELECT name, email, ssn FROM customers ORDER BY id";
    let (ok, out, err) = h.psql(AGENT, &["-A", "-t", "-c", sql]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Ada Lovelace|a***@example.com|***-**-1120",
            "Alan Turing|a***@example.com|***-**-9999",
            "Grace Hopper|g***@example.com|***-**-5462",
        ]
    );
    let (ok, out, _) = h.psql(DANA, &["-A", "-t", "-c", sql]).await;
    assert!(ok && out.contains("ada@example.com|078-05-1120"), "{out}");
    // By lineage, not by name: aliases, expressions, subqueries, views,
    // CTEs and set operations.
    for (sql, want) in [
        (
            "SELECT ssn AS id FROM customers WHERE id = 1",
            "***-**-1120",
        ),
        ("SELECT upper(email) FROM customers WHERE id = 1", "***"),
        (
            "SELECT x FROM (SELECT ssn AS x FROM customers WHERE id = 1) s",
            "***-**-1120",
        ),
        ("SELECT mail FROM contacts WHERE id = 1", "a***@example.com"),
        (
            "WITH c AS (SELECT id, ssn FROM customers) SELECT ssn FROM c WHERE id = 1",
            "***-**-1120",
        ),
        // A column is masked whole: the literal's row too.
        (
            "SELECT ssn FROM customers WHERE id = 1 UNION ALL SELECT 'plain'",
            "***-**-1120\n*lain",
        ),
        ("SELECT (SELECT ssn FROM customers WHERE id = 1)", "***"),
        ("SELECT string_agg(email, ',') FROM customers", "***"),
        ("SELECT count(ssn) FROM customers", "3"),
    ] {
        let (ok, out, err) = h.psql(AGENT, &["-A", "-t", "-c", sql]).await;
        assert!(ok, "{sql}: {err}");
        assert_eq!(out.trim(), want, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_whole_rows_and_untraceable_reads_are_refused() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    for sql in [
        "SELECT id FROM customers WHERE ssn LIKE '078%'",
        "SELECT id FROM customers ORDER BY email",
        "SELECT max(ssn) FROM customers",
        "SELECT CASE WHEN ssn > '2' THEN 1 END FROM customers",
        "SELECT c FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT c::text FROM customers c",
        "SELECT customers FROM customers",
        "SELECT ssn::int FROM customers",
        "SELECT query_to_xml('SELECT ssn FROM customers', true, false, '')",
    ] {
        let e = agent.simple_query(sql).await.unwrap_err();
        let m = refused(&e);
        assert!(m.contains("masked"), "{sql}: {m}");
        // The extended protocol too (a Parse is judged the same way).
        let e = agent.prepare(sql).await.unwrap_err();
        refused(&e);
    }
    // Unmasked columns and predicates on them pass.
    let rows = agent
        .simple_query("SELECT id FROM customers WHERE name LIKE 'A%' ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        4,
        "two rows, a RowDescription and a CommandComplete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_copy_and_cursors_are_masked() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    // tokio-postgres asks for binary results.
    let row = agent
        .query_one(
            "SELECT id, email, ssn FROM customers WHERE id = $1",
            &[&2i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(row.get::<_, String>(1), "a***@example.com");
    assert_eq!(row.get::<_, String>(2), "***-**-9999");
    // The same prepared statement, executed again.
    let st = agent
        .prepare("SELECT ssn FROM customers WHERE id = $1")
        .await
        .unwrap();
    for id in [1i32, 3] {
        let v: String = agent.query_one(&st, &[&id]).await.unwrap().get(0);
        assert!(v.starts_with("***-**-"), "{v}");
    }

    // COPY in text, csv (with a header) and binary.
    for (sql, want) in [
        ("COPY customers (id, ssn) TO STDOUT", "1\t***-**-1120\n"),
        (
            "COPY (SELECT id, email FROM customers WHERE id = 1) TO STDOUT (FORMAT csv, HEADER)",
            "id,email\n1,\"a***@example.com\"\n",
        ),
        // Computed from a masked column: its type is not known, NULL.
        (
            "COPY (SELECT id, upper(email) FROM customers WHERE id = 1) TO STDOUT (FORMAT csv)",
            "1,\n",
        ),
    ] {
        let stream = agent.copy_out(sql).await.unwrap();
        let got: Vec<u8> = futures_util::TryStreamExt::try_concat(
            futures_util::TryStreamExt::map_ok(stream, |b| b.to_vec()),
        )
        .await
        .unwrap();
        let got = String::from_utf8(got).unwrap();
        assert!(got.starts_with(want), "{sql}: {got}");
    }
    let stream = agent
        .copy_out("COPY customers (ssn) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let got: Vec<u8> =
        futures_util::TryStreamExt::try_concat(futures_util::TryStreamExt::map_ok(stream, |b| {
            b.to_vec()
        }))
        .await
        .unwrap();
    assert!(got.starts_with(b"PGCOPY\n\xff\r\n\0"));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("***-**-1120") && !text.contains("078-05"),
        "{text}"
    );

    // A cursor's FETCH uses its DECLARE's plan; a cursor pgward did not
    // see declared is refused.
    let (ok, out, err) = h
        .psql(
            AGENT,
            &[
                "-A",
                "-t",
                "-c",
                "BEGIN; DECLARE c CURSOR FOR SELECT ssn FROM customers ORDER BY id; FETCH 2 FROM c; COMMIT",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("***-**-1120\n***-**-9999"), "{out}");
    let e = agent
        .simple_query("BEGIN; FETCH 1 FROM never_declared")
        .await
        .unwrap_err();
    refused(&e);
}

/// Errors that echo values are scrubbed for a role with masks on the
/// table: a unique key's value (of a `hash`-masked column, whose writes
/// a unique index does not stop), a failing row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_that_echo_masked_values_are_scrubbed() {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users()
        .without_approvers();
    rules = rules.with_role("app", |app| {
        app.masks = [
            "public.people.email = redact",
            "public.people.ssn = redact",
            "public.people.token = hash",
        ]
        .iter()
        .map(|m| {
            let (k, v) = m.split_once(" = ").unwrap();
            pgward::mask::ColumnMask::parse(k, v, "test.toml", 1).unwrap()
        })
        .collect();
    });
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    h.direct()
        .await
        .batch_execute(
            "CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE, ssn text NOT NULL, note text NOT NULL, token text UNIQUE);
             INSERT INTO people VALUES (1, 'secret.person@example.com', '999-88-7777', 'n', 'secret.token')",
        )
        .await
        .unwrap();
    let bob = h.connect(BOB).await;
    let e = bob
        .simple_query(
            "INSERT INTO people (id, ssn, note, token) VALUES (2, '1', 'n', 'secret.token')",
        )
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "23505");
    let all = format!("{} {:?}", db.message(), db.detail());
    assert!(!all.contains("secret.token"), "{all}");
    // A write of the redacted unique column would answer whether the
    // value is there: refused before it runs.
    let e = bob
        .simple_query("INSERT INTO people VALUES (2, 'secret.person@example.com', '1', 'n')")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501", "{db:?}");
    assert!(db.message().contains("people_email_key"), "{db:?}");
    let e = bob
        .simple_query("UPDATE people SET note = NULL WHERE id = 1")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "23502");
    let all = format!("{} {:?}", db.message(), db.detail());
    assert!(
        !all.contains("999-88") && !all.contains("secret.person"),
        "{all}"
    );
    // RETURNING of a write is a result like any other.
    let rows = bob
        .query(
            "UPDATE people SET note = 'm' WHERE id = $1 RETURNING id, email, ssn",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            rows[0].get::<_, i32>(0),
            rows[0].get::<_, &str>(1),
            rows[0].get::<_, &str>(2)
        ),
        (1, "***", "***")
    );
    // A table without masks keeps its errors as the server wrote them.
    let e = bob
        .simple_query("SELECT 1/0 FROM customers_nope")
        .await
        .unwrap_err();
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("customers_nope"));
}

/// Whatever the agent does, no byte of a masked value reaches it: a raw
/// session of simple queries, extended-protocol binary results and COPY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_masked_value_reaches_the_agent_in_any_bytes() {
    let h = harness().await;
    let mut s = login(&h, AGENT).await;
    let mut received = Vec::new();
    let query = |sql: &str| {
        let mut m = vec![b'Q'];
        m.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        m.extend_from_slice(sql.as_bytes());
        m.push(0);
        m
    };
    for sql in [
        "SELECT * FROM customers",
        "SELECT email || ssn, lower(email), ssn FROM customers",
        "TABLE customers",
        "COPY customers TO STDOUT",
        "COPY customers TO STDOUT (FORMAT csv)",
        "SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id",
        "BEGIN; DECLARE b BINARY CURSOR FOR SELECT * FROM customers; FETCH ALL FROM b; COMMIT",
    ] {
        s.write_all(&query(sql)).await.unwrap();
        for (_, body) in until_ready(&mut s).await {
            received.extend_from_slice(&body);
        }
    }
    // Extended protocol, binary results for every column.
    let mut m = Vec::new();
    let sql = b"SELECT * FROM customers\0";
    m.push(b'P');
    m.extend_from_slice(&((4 + 1 + sql.len() + 2) as i32).to_be_bytes());
    m.push(0);
    m.extend_from_slice(sql);
    m.extend_from_slice(&0i16.to_be_bytes());
    m.push(b'B');
    m.extend_from_slice(&(4 + 1 + 1 + 2 + 2 + 2 + 2i32).to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&0i16.to_be_bytes());
    m.extend_from_slice(&0i16.to_be_bytes());
    m.extend_from_slice(&1i16.to_be_bytes());
    m.extend_from_slice(&1i16.to_be_bytes());
    m.extend_from_slice(&[b'D', 0, 0, 0, 6, b'P', 0]);
    m.extend_from_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    s.write_all(&m).await.unwrap();
    let answers = until_ready(&mut s).await;
    assert!(
        answers.iter().filter(|(t, _)| *t == b'D').count() == 3,
        "three binary rows: {:?}",
        answers.iter().map(|(t, _)| *t as char).collect::<String>()
    );
    for (_, body) in answers {
        received.extend_from_slice(&body);
    }
    let text = String::from_utf8_lossy(&received);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} reached the agent");
    }
    assert!(text.contains("Ada Lovelace") && text.contains("***-**-1120"));
}

/// psycopg 3 in binary and text mode, an independent client: masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_in_binary_mode_gets_masked_values() {
    let python = match python_venv("pgward-mask-venv", &["psycopg[binary]>=3.1"]) {
        Ok(p) => p,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("psycopg: {e} (CI installs python3-venv and reaches PyPI: see .ci/run)")
        }
        Err(e) => {
            println!("SKIPPED: psycopg: {e}");
            return;
        }
    };
    let h = harness().await;
    let script = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    for binary in (True, False):
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT id, email, ssn FROM customers WHERE id = %s", (1,))
        print(binary, *cur.fetchone())
"#;
    let out = tokio::process::Command::new(&python)
        .args(["-c", script, &h.conninfo(AGENT)])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "True 1 a***@example.com ***-**-1120",
            "False 1 a***@example.com ***-**-1120"
        ]
    );
}

/// The harness's rules with the agent's masks changed by `change`.
fn rules_with(change: impl FnOnce(&mut Vec<pgward::mask::ColumnMask>)) -> pgward::rules::Rules {
    pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users()
        .without_approvers()
        .with_role("agent", |agent| {
            agent.allow.insert(pgward::policy::Class::CopyOut);
            change(&mut agent.masks);
        })
}

/// The first column of the first row `sql` gives, as text.
async fn first(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// The masks a statement sees are those in force: a rules reload that
/// changes a role's masks takes effect at the session's next statement,
/// and a table that comes to inherit a masked one (a catalog reload) is
/// masked at once, however often the masks were looked up before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_changed_by_a_reload_take_effect_at_once() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    let sql = "SELECT ssn FROM customers WHERE id = 1";
    for _ in 0..3 {
        assert_eq!(first(&agent, sql).await, "***-**-1120");
    }
    h.shared.set_rules(rules_with(|masks| {
        for m in masks.iter_mut().filter(|m| m.column == "ssn") {
            m.func = pgward::mask::MaskFn::Redact;
        }
    }));
    assert_eq!(first(&agent, sql).await, "***");
    // A new session of the same role, under the same rules.
    let other = h.connect(AGENT).await;
    assert_eq!(first(&other, sql).await, "***");
    h.shared
        .set_rules(rules_with(|masks| masks.retain(|m| m.column != "ssn")));
    assert_eq!(first(&agent, sql).await, "078-05-1120");
    assert_eq!(
        first(&agent, "SELECT email FROM customers WHERE id = 1").await,
        "a***@example.com"
    );
    h.shared.set_rules(rules_with(|_| {}));
    assert_eq!(first(&agent, sql).await, "***-**-1120");

    // A table created through pgward that inherits customers: the catalog
    // is reloaded before the agent's next statement, and its ssn masked.
    let dana = h.connect(DANA).await;
    for sql in [
        "CREATE TABLE vip () INHERITS (customers)",
        "INSERT INTO vip SELECT * FROM customers WHERE id = 2",
    ] {
        dana.batch_execute(sql).await.unwrap();
    }
    assert_eq!(first(&agent, "SELECT ssn FROM vip").await, "***-**-9999");
    assert_eq!(
        first(&agent, "SELECT ssn FROM customers WHERE id = 2").await,
        "***-**-9999"
    );
}

/// A prepared statement's rows are planned again when what it reads
/// changes (a view replaced through pgward between its Parse and its
/// Execute), and a statement judged with its Bind's values is masked like
/// any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_are_masked_by_what_they_read_when_they_run() {
    let h = harness().await;
    let d = h.direct().await;
    d.batch_execute("CREATE VIEW people AS SELECT id, name AS who FROM customers")
        .await
        .unwrap();
    let agent = h.connect(AGENT).await;
    let st = agent
        .prepare("SELECT who FROM people WHERE id = 1")
        .await
        .unwrap();
    let v: String = agent.query_one(&st, &[]).await.unwrap().get(0);
    assert_eq!(v, "Ada Lovelace");
    // The view now shows a masked column under the same name and type.
    let dana = h.connect(DANA).await;
    dana.batch_execute(
        "CREATE OR REPLACE VIEW people AS SELECT id, email::text AS who FROM customers",
    )
    .await
    .unwrap();
    let v: String = agent.query_one(&st, &[]).await.unwrap().get(0);
    assert_eq!(v, "a***@example.com");
    // Again through a fresh Bind of a named statement in text format.
    let rows = agent
        .simple_query("SELECT who FROM people WHERE id = 1")
        .await
        .unwrap();
    assert!(
        matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("a***@example.com")),
        "{rows:?}"
    );

    // Judged at Bind (its verdict waits for the value): the rows are
    // still masked, and SQL text given as a value is traced.
    let row = agent
        .query_one(
            "SELECT email, current_setting($1) FROM customers WHERE id = 1",
            &[&"TimeZone"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "a***@example.com");
    let e = agent
        .query_one(
            "SELECT query_to_xml($1, true, false, '')::text",
            &[&"SELECT ssn FROM customers"],
        )
        .await
        .unwrap_err();
    assert!(refused(&e).contains("masked"), "{e:?}");
}

/// A statement PREPAREd in SQL runs the statement inside it, which is
/// not traced: SQL EXECUTE of it is refused, and so is a protocol Bind of
/// its name (which would otherwise run it with no mask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_prepared_in_sql_cannot_be_bound_by_a_masked_role() {
    let h = harness().await;
    let mut s = login(&h, AGENT).await;
    let mut m = BytesMut::new();
    postgres_protocol::message::frontend::query("PREPARE p AS SELECT ssn FROM customers", &mut m)
        .unwrap();
    s.write_all(&m).await.unwrap();
    let answers = until_ready(&mut s).await;
    assert!(
        answers.iter().all(|(t, _)| *t != b'E'),
        "PREPARE itself runs nothing"
    );
    let mut m = BytesMut::new();
    postgres_protocol::message::frontend::query("EXECUTE p", &mut m).unwrap();
    m.extend_from_slice(&frame(b'B', b"\0p\0\0\0\0\0\0\0"));
    m.extend_from_slice(&frame(b'E', b"\0\0\0\0\0"));
    m.extend_from_slice(&frame(b'S', b""));
    s.write_all(&m).await.unwrap();
    let mut received = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..2 {
        for (t, body) in until_ready(&mut s).await {
            if t == b'E' {
                errors.push(error_field(&body, b'C'));
            }
            received.extend_from_slice(&body);
        }
    }
    assert_eq!(errors, ["42501", "42501"], "both refused");
    let text = String::from_utf8_lossy(&received);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} reached the agent: {text}");
    }
}
