//! Attacks on just-in-time approval (docs/approval.md) after grant
//! windows, table holds, reasons, risk and the webhook were added, by an
//! independent attacker on 2026-12-08. Each test asserts the secure
//! behaviour; a FINDING's doc comment says what happened before it was
//! fixed (an `#[ignore]`d test is a finding not fixed yet).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pgward::policy::Class;

/// The example rules, with `app` (bob) also holding writes, DO blocks
/// (`unknown`) and DCL for approval; dana approves.
fn rules() -> pgward::rules::Rules {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users();
    rules = rules.with_role("app", |app| {
        app.allow = Default::default();
        for c in [Class::Read, Class::Session, Class::Transaction] {
            app.allow.insert(c);
        }
        for c in [Class::Write, Class::Ddl, Class::Dcl, Class::Unknown] {
            app.approve.insert(c);
        }
    });
    rules
}

async fn harness() -> Harness {
    Harness::start_with(Setup {
        rules: Some(rules()),
        setup_sql: vec!["CREATE SCHEMA scratch; \
             CREATE TABLE scratch.important (id int, note text); \
             CREATE TABLE public.important (id int, note text); \
             CREATE TABLE public.scratch (id int); \
             INSERT INTO public.important VALUES (1, 'keep'), (2, 'keep'); \
             CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; \
             CREATE ROLE payroll LOGIN PASSWORD 'payroll-pw'"
            .into()],
        ..Setup::default()
    })
    .await
}

/// The id of the first pending request dana sees, if any.
async fn first_pending(h: &Harness) -> Option<u64> {
    let (ok, out, err) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    assert!(ok, "{err}");
    out.lines().find_map(|l| l.split('|').next()?.parse().ok())
}

/// How a statement sent as bob went.
#[derive(Debug)]
enum Outcome {
    /// It was held (and dana denied it).
    Held,
    /// It ran, or was refused, without any request being filed.
    NotHeld(Result<(), String>),
}

/// Sends `sql` as bob and waits until it is held (then dana denies it)
/// or finishes without being held.
async fn send(h: &Harness, bob: &Arc<tokio_postgres::Client>, sql: &str) -> Outcome {
    let task = {
        let bob = bob.clone();
        let sql = sql.to_owned();
        tokio::spawn(async move { bob.simple_query(&sql).await })
    };
    for _ in 0..200 {
        if task.is_finished() {
            let r = task.await.unwrap();
            return Outcome::NotHeld(r.map(|_| ()).map_err(|e| format!("{e:?}")));
        }
        if let Some(id) = first_pending(h).await {
            h.console(DANA, &["-c", &format!("DENY {id}")]).await;
            let _ = task.await;
            return Outcome::Held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{sql}: neither held nor finished");
}

/// Sends `sql` as bob, has dana approve it with a one-hour grant, and
/// waits for it to run.
async fn grant(h: &Harness, bob: &Arc<tokio_postgres::Client>, sql: &str) {
    let task = {
        let bob = bob.clone();
        let sql = sql.to_owned();
        tokio::spawn(async move { bob.simple_query(&sql).await })
    };
    let id = h.pending_requests(1).await[0].0;
    let (ok, out, err) = h
        .console(DANA, &["-c", &format!("APPROVE {id} FOR '1 hour'")])
        .await;
    assert!(ok, "{sql}: {out}{err}");
    task.await
        .unwrap()
        .unwrap_or_else(|e| panic!("{sql} approved: {e:?}"));
}

/// FINDING (critical, fixed): a grant covered statements that do other
/// things than the one the approver saw. Grants were keyed by pg_query's
/// fingerprint (with full relation names), which is built to group
/// statements for statistics: it leaves out the table behind an alias
/// (`DELETE FROM scratch s` = `DELETE FROM important s`), the schema of a
/// table read or written (`scratch.important` = `public.important`), the
/// body and language of `DO` and `CREATE FUNCTION`, role names (`ALTER
/// ROLE reader PASSWORD ...` = `ALTER ROLE payroll PASSWORD ...`), the
/// names in `RENAME`, boolean constants (`WHERE false` = `WHERE true`),
/// list order and repeats, and everything more than 100 levels deep. An
/// approver who granted bob a harmless statement for an hour let bob run,
/// unasked, each of the attacks below: delete every row of another table,
/// drop tables from a DO block or a function body, take over another
/// login by setting its password. Now a grant covers only the same parse
/// tree with other number or string constants (`approval::grant_key`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_covers_only_what_the_approver_saw() {
    let h = harness().await;
    let bob = Arc::new(h.connect(BOB).await);
    let pairs = [
        // Another table behind the same alias.
        (
            "DELETE FROM scratch s WHERE s.id > 100",
            "DELETE FROM important s WHERE s.id > 0",
        ),
        // The same table name in another schema.
        (
            "DELETE FROM scratch.important WHERE id = 7",
            "DELETE FROM public.important WHERE id = 1",
        ),
        // WHERE false is not WHERE true.
        (
            "DELETE FROM scratch.important WHERE false",
            "DELETE FROM scratch.important WHERE true",
        ),
        // Another DO body.
        (
            "DO $$BEGIN PERFORM 1; END$$",
            "DO $$BEGIN DROP TABLE public.important; END$$",
        ),
        // Another function body and language.
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE plpgsql \
             AS 'BEGIN DROP TABLE public.important; RETURN 1; END'",
        ),
        // Another role's password.
        (
            "ALTER ROLE reader PASSWORD 'bob-knows-it'",
            "ALTER ROLE payroll PASSWORD 'bob-knows-it'",
        ),
        // Another column renamed.
        (
            "ALTER TABLE scratch.important RENAME COLUMN note TO memo",
            "ALTER TABLE scratch.important RENAME COLUMN id TO gone",
        ),
    ];
    let mut bypassed = Vec::new();
    for (approved, attack) in pairs {
        grant(&h, &bob, approved).await;
        match send(&h, &bob, attack).await {
            Outcome::Held => {}
            Outcome::NotHeld(r) => bypassed.push(format!("{attack} (after {approved}): {r:?}")),
        }
    }
    let rows: i64 = h
        .direct()
        .await
        .query_one("SELECT count(*) FROM public.important", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1);
    assert!(
        bypassed.is_empty() && rows == 2,
        "ran under a grant for another statement: {bypassed:#?}; public.important rows: {rows}"
    );
    // The same statements with other constants are still covered.
    for sql in [
        "DELETE FROM scratch s WHERE s.id > 200",
        "DELETE FROM scratch.important WHERE id = 8",
        "delete from scratch.important where FALSE",
    ] {
        match send(&h, &bob, sql).await {
            Outcome::NotHeld(Ok(())) => {}
            other => panic!("{sql} should run under its grant: {other:?}"),
        }
    }
}

/// FINDING (high, fixed): the console printed what the requester typed as
/// is, so a statement, reason or application_name could drive the
/// approver's terminal. psql prints a field's bytes unchanged (in aligned
/// output too, apart from newlines), so ESC sequences (`ESC[8m` hides the
/// rest, `ESC[1A ESC[2K` erases the lines above, `CR` goes back over a
/// line), and Unicode bidi overrides (U+202E) that reorder what is shown,
/// let bob show `CREATE TABLE harmless_t` while the text that runs drops
/// a table; a newline in a one-line reason faked a row of its own in
/// `psql -A -t` (what scripts read). Now control characters (but a
/// statement's newlines and tabs) and bidi controls are shown as `\x1b`,
/// `\u{202e}`, and a reason is one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_control_characters_instead_of_obeying_them() {
    let h = harness().await;
    let mut config: tokio_postgres::Config = h.conninfo(BOB).parse().unwrap();
    config.application_name("app\x1b]0;pwned\x07\x1b[2J");
    let (bob, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let bob = Arc::new(bob);
    bob.batch_execute(
        "SET pgward.reason = E'INC-1\\n99|2026-01-01|alice|analyst|1|postgres|read|SELECT 1'",
    )
    .await
    .unwrap();
    let sql = "DROP TABLE public.important /* \x1b[1A\x1b[2K\r\x1b[8m \u{202e}tnatropmi */";
    let task = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query(sql).await })
    };
    h.pending_requests(1).await;
    let mut shown = String::new();
    for cmd in ["SHOW PENDING", "SHOW SESSIONS", "SHOW REQUEST 1"] {
        let (ok, out, err) = h.console(DANA, &["-c", cmd]).await;
        assert!(ok, "{cmd}: {err}");
        shown.push_str(&out);
    }
    let (_, pending, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    h.console(DANA, &["-c", "DENY 1"]).await;
    let _ = task.await;
    let bad: Vec<char> = shown
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
        .collect();
    assert!(bad.is_empty(), "the console printed {bad:?}: {shown:?}");
    assert_eq!(
        pending.trim_end().lines().count(),
        1,
        "one request, one row: {pending:?}"
    );
    assert!(
        shown.contains("\\x1b[8m") && shown.contains("\\u{202e}"),
        "shown escaped: {shown:?}"
    );
}

/// `tables.read = { approve = ["public.api_keys"] }` for bob, whose role
/// may read, write and COPY out: every way to see api_keys' rows must be
/// held. Returns the statements that ran without being held.
async fn unheld_reads(statements: &[&str]) -> Vec<String> {
    let mut rules = rules();
    rules = rules.with_role("app", |app| {
        app.allow.insert(Class::Write);
        app.allow.insert(Class::CopyOut);
        app.approve = Default::default();
        app.approve.insert(Class::Ddl);
        app.tables = vec![pgward::policy::role::TableRule {
            class: Some(Class::Read),
            approve: vec![pgward::policy::role::Pattern::new("public.api_keys")],
            ..Default::default()
        }];
    });
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    h.direct()
        .await
        .batch_execute(&format!(
            "{}
             CREATE FUNCTION keys_fn() RETURNS SETOF api_keys LANGUAGE sql AS 'SELECT * FROM api_keys';
             CREATE TABLE key_log (secret text);
             CREATE SCHEMA shadow; CREATE TABLE shadow.api_keys (secret text);",
            pgward::demo::SAMPLE_SCHEMA
        ))
        .await
        .unwrap();
    let bob = Arc::new(h.connect(BOB).await);
    let mut unheld = Vec::new();
    for sql in statements {
        if let Outcome::NotHeld(r) = send(&h, &bob, sql).await {
            unheld.push(format!("{sql}: {r:?}"));
        }
    }
    unheld
}

/// Reads of an approval table in the forms pgward sees through: all held.
///
/// FINDING (high, fixed): a role that may write read an approval table's
/// rows without asking through its own write: `UPDATE api_keys SET
/// service = service RETURNING secret` returned every secret, and a
/// `DELETE ... WHERE secret LIKE 'sk_a%' AND false` counted matches (an
/// oracle, a character at a time). The write's target counted as written
/// only; `tables.read` rules never saw it (the same way round a
/// `tables.read.deny`). Now a write that reads its target back
/// (RETURNING, WHERE, FROM/USING, ON CONFLICT, MERGE) reads it too, as
/// PostgreSQL asks SELECT privilege for those.
///
/// Not a finding: `SELECT * FROM a_view_over_api_keys` runs unheld, as
/// docs/rules.md says (a view is a relation of its own, as for GRANT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_approval_tables_are_held_in_every_form() {
    let unheld = unheld_reads(&[
        "TABLE api_keys",
        "SELECT * FROM API_KEYS",
        "SELECT * FROM ONLY public.\"api_keys\"",
        "WITH k AS (SELECT * FROM api_keys) SELECT * FROM k",
        "SELECT * FROM keys_fn()",
        "SELECT * FROM customers WHERE EXISTS (SELECT 1 FROM api_keys WHERE secret LIKE 'sk%')",
        "COPY api_keys TO STDOUT",
        "COPY (SELECT secret FROM api_keys) TO STDOUT",
        "INSERT INTO key_log SELECT secret FROM api_keys",
        "UPDATE api_keys SET service = service RETURNING secret",
        "DELETE FROM api_keys WHERE secret LIKE 'sk_live%' AND false",
        "DELETE FROM key_log USING api_keys WHERE key_log.secret = api_keys.secret",
        "BEGIN; DECLARE c CURSOR FOR SELECT * FROM api_keys; FETCH ALL FROM c; COMMIT",
        "PREPARE p AS SELECT * FROM api_keys",
        "SET search_path = shadow, public; SELECT * FROM api_keys",
    ])
    .await;
    assert!(unheld.is_empty(), "read without approval: {unheld:#?}");
}

/// FINDING (medium, fixed): the webhook's chat text carried what the
/// requester wrote as is. Slack reads `<!channel>` as a mention of
/// everyone and `<https://evil.example|approve>` as a link labelled
/// "approve", so bob's reason or statement could page the whole channel
/// or put a forged link in the approvers' chat; a newline in a reason added
/// a line such as `risk: none` above the real risk line. Now `&`, `<`, `>`
/// are escaped as Slack asks and a reason stays on one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_text_cannot_mention_link_or_fake_lines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hook.local_addr().unwrap().port();
    let h = Harness::start_with(Setup {
        rules: Some(rules()),
        extra: format!("[approval]\nwebhook_url = \"http://127.0.0.1:{port}/hook\""),
        ..Setup::default()
    })
    .await;
    let posted = tokio::spawn(async move {
        let (mut s, _) = hook.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the webhook request ended early");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                if buf.len() >= end + 4 + length {
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    return text[end + 4..].to_owned();
                }
            }
        }
    });
    let bob = Arc::new(h.connect(BOB).await);
    bob.batch_execute(
        "SET pgward.reason = E'<!channel> <https://evil.example|approve>\\nrisk: none'",
    )
    .await
    .unwrap();
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE hooked (a int)").await })
    };
    let body = tokio::time::timeout(Duration::from_secs(20), posted)
        .await
        .expect("the webhook was called")
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = json["text"].as_str().unwrap();
    h.console(DANA, &["-c", "DENY 1"]).await;
    let _ = held.await;
    assert!(
        !text.contains('<') && !text.contains("\nrisk: none"),
        "the chat text: {text:?}"
    );
}

/// The statement column of the first pending request, once one is.
async fn pending_statement(h: &Harness) -> String {
    h.pending_requests(1).await[0].1.clone()
}

/// FINDING (medium, fixed): in a Simple Query of several statements
/// the request shows only the ones that need approval, yet the approval
/// runs the whole message. bob sends `SET search_path = scratch, public;
/// DELETE FROM important WHERE id = 1`: dana sees `DELETE FROM important
/// WHERE id = 1` (risk: on important), approves, and the DELETE runs
/// against `scratch.important`, chosen by a statement she never saw
/// (the same with any setting bob may change: `search_path`, a role's
/// `app.*` settings a trigger reads, ...). The request should show the
/// whole message (or each statement that runs before the held one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_shows_every_statement_its_approval_runs() {
    let h = harness().await;
    let bob = Arc::new(h.connect(BOB).await);
    let task = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.simple_query(
                "SET search_path = scratch, public; DELETE FROM important WHERE id = 1",
            )
            .await
        })
    };
    let shown = pending_statement(&h).await;
    h.console(DANA, &["-c", "DENY 1"]).await;
    let _ = task.await;
    assert!(
        shown.contains("search_path"),
        "the approver saw {shown:?}, the approval runs the SET too"
    );
}

/// FINDING (medium, fixed): an Execute of a statement with parameters
/// was held showing only its text: `DELETE FROM public.important WHERE id
/// = $1 OR $2`, bound with (1, true), showed no values, so the approver
/// could not tell one row from all of them. Now the request shows the
/// statement with its Bind's values in place (long values cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_shows_the_values_bound_to_its_parameters() {
    let h = harness().await;
    let bob = Arc::new(h.connect(BOB).await);
    let task = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.execute(
                "DELETE FROM public.important WHERE id = $1 OR $2",
                &[&1i32, &true],
            )
            .await
        })
    };
    let shown = pending_statement(&h).await;
    let (_, pending, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    h.console(DANA, &["-c", "DENY 1"]).await;
    let _ = task.await;
    assert!(
        shown.contains("WHERE id = 1 OR true") && pending.contains("WHERE id = 1 OR true"),
        "the approver saw {shown:?} and no values: {pending:?}"
    );
}

/// FINDING (medium, fixed): a grant covered its statement in every
/// database. dana granted bob `DELETE FROM important WHERE id = 1` for an
/// hour in `postgres` (the request says `database: postgres`); bob ran the
/// same statement unasked in the database `prod`, on other data. Now a
/// grant covers only the database of its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_covers_only_the_database_it_was_made_in() {
    let h = harness().await;
    h.direct()
        .await
        .batch_execute("CREATE DATABASE prod")
        .await
        .unwrap();
    let prod = h.pg.psql(
        "prod",
        "CREATE TABLE important (id int); INSERT INTO important VALUES (1)",
    );
    assert!(prod.is_ok(), "{prod:?}");
    let bob = Arc::new(h.connect(BOB).await);
    grant(&h, &bob, "DELETE FROM important WHERE id = 1").await;
    let (other, conn) = tokio_postgres::connect(
        &h.conninfo(BOB).replace("dbname=postgres", "dbname=prod"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let other = Arc::new(other);
    match send(&h, &other, "DELETE FROM important WHERE id = 1").await {
        Outcome::Held => {}
        Outcome::NotHeld(r) => panic!("ran in prod under a grant made in postgres: {r:?}"),
    }
}

/// FINDING (high for a role that may turn standard_conforming_strings
/// off, fixed): grant keys read texts as PostgreSQL does by default, the
/// server as the session says. Granted `UPDATE scratch.important SET note
/// = 'x' WHERE id = 1`, bob (whose role may set any setting) turned
/// `standard_conforming_strings` off and sent `UPDATE ... SET note =
/// 'x\' WHERE id = 1 --' WHERE true`: read by default, the same statement
/// with other constants (the rest is a comment); read by the server, a
/// string up to `--'` and then `WHERE true`. It ran unasked and updated
/// every row. Now a text that parses otherwise with escapes in strings
/// has no grant key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_not_fooled_by_escapes_in_strings() {
    let mut rules = rules();
    rules = rules.with_role("app", |app| {
        app.settings.push(pgward::policy::role::Pattern::new("*"));
    });
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        setup_sql: vec![
            "CREATE SCHEMA scratch; CREATE TABLE scratch.important (id int, note text); \
             INSERT INTO scratch.important VALUES (1, 'a'), (2, 'b'), (3, 'c')"
                .into(),
        ],
        ..Setup::default()
    })
    .await;
    let bob = Arc::new(h.connect(BOB).await);
    grant(
        &h,
        &bob,
        "UPDATE scratch.important SET note = 'x' WHERE id = 1",
    )
    .await;
    bob.batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    let attack = "UPDATE scratch.important SET note = 'x\\' WHERE id = 1 --' WHERE true";
    let outcome = send(&h, &bob, attack).await;
    let changed: i64 = h
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM scratch.important WHERE note LIKE 'x%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        matches!(outcome, Outcome::Held) && changed == 1,
        "{attack}: {outcome:?}, rows changed: {changed}"
    );
}
