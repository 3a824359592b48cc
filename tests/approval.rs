//! Just-in-time approval end to end: a statement held in its live session
//! until an approver decides it from psql on pgward's admin console
//! (`dbname=pgward`), against a real PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// A harness with the example rules as they are: dana (dba) approves.
async fn harness(setup: Setup) -> Harness {
    Harness::start_with(Setup {
        rules: Some(
            pgward::demo::example_rules()
                .unwrap()
                .without_upstream_users(),
        ),
        ..setup
    })
    .await
}

/// A client whose notices are collected (the hold is announced by one).
async fn connect_noticed(
    h: &Harness,
    who: (&str, &str),
) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut conn) = tokio_postgres::connect(&h.conninfo(who), NoTls)
        .await
        .expect("connect through pgward");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notice(n) = m {
                let _ = tx.send(format!("{} | {}", n.message(), n.hint().unwrap_or("")));
            }
        }
    });
    (client, rx)
}

/// Waits until `n` requests are pending; their ids, oldest first.
async fn pending(h: &Harness, n: usize) -> Vec<u64> {
    h.pending_requests(n)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_statements_run_when_approved_and_fail_when_denied() {
    let h = harness(Setup::default()).await;
    // bob's role (app) sends DDL for approval; dana's (dba) approves.
    let (bob, mut notices) = connect_noticed(&h, BOB).await;
    let bob = Arc::new(bob);
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE approved_t (a int)").await })
    };
    let ids = pending(&h, 1).await;
    let notice = notices.recv().await.unwrap();
    assert!(
        notice.contains(&format!("held for approval as request {}", ids[0]))
            && notice.contains(&format!("APPROVE {}", ids[0]))
            && notice.contains(&format!(
                "host=127.0.0.1 port={} dbname=pgward",
                h.addr.port()
            )),
        "{notice}"
    );
    // Nothing ran while held.
    assert!(!h.table_exists("approved_t").await);
    let (ok, out, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    assert!(
        ok && out.contains("CREATE TABLE approved_t (a int)") && out.contains("|bob|app|"),
        "{out}"
    );
    let (ok, out, err) = h
        .console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    assert!(ok, "{out} {err}");
    held.await.unwrap().expect("the approved statement ran");
    assert!(h.table_exists("approved_t").await);

    // Denied: 42501 with the approver and the reason; nothing ran.
    let denied = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE denied_t (a int)").await })
    };
    let ids = pending(&h, 1).await;
    let (ok, _, err) = h
        .console(
            DANA,
            &["-c", &format!("DENY {} 'use a migration tool'", ids[0])],
        )
        .await;
    assert!(ok, "{err}");
    let e = denied.await.unwrap().unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("denied by dana")
            && db.detail() == Some("reason: use a migration tool"),
        "{db:?}"
    );
    assert!(!h.table_exists("denied_t").await);
    // The session goes on, and the same statement asks again (an approval
    // is for one execution, never cached).
    assert_eq!(bob.simple_query("SELECT 1").await.unwrap().len(), 3);
    let again = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE approved_t2 (a int)").await })
    };
    let ids = pending(&h, 1).await;
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    again.await.unwrap().unwrap();

    let (ok, out, _) = h.console(DANA, &["-c", "SHOW APPROVALS"]).await;
    assert!(ok);
    let verdicts: Vec<&str> = out.lines().filter_map(|l| l.split('|').nth(6)).collect();
    assert_eq!(verdicts, ["approved", "denied", "approved"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_pipelines_and_transactions_hold_at_execute() {
    let h = harness(Setup::default()).await;
    let bob = Arc::new(h.connect(BOB).await);
    // Extended protocol: Parse passes, the Execute waits.
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.execute("CREATE TABLE ext_t (a int)", &[]).await })
    };
    let ids = pending(&h, 1).await;
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    held.await.unwrap().unwrap();
    assert!(h.table_exists("ext_t").await);

    // A pipeline: the SELECT sent after the held statement waits behind it.
    let pipeline = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let ddl = bob.prepare("CREATE TABLE pipe_t (a int)").await?;
            let seen = bob
                .prepare("SELECT count(*) FROM pg_class WHERE relname = 'pipe_t'")
                .await?;
            // Bind/Execute/Sync of both, pipelined.
            let (ddl, after) =
                futures_util::join!(bob.execute(&ddl, &[]), bob.query_one(&seen, &[]));
            ddl.map(|_| after.map(|r| r.get::<_, i64>(0)))
        })
    };
    let ids = pending(&h, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pipeline.is_finished(),
        "the pipeline waits behind the held statement"
    );
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    // The SELECT ran after the approved CREATE, in order.
    assert_eq!(pipeline.await.unwrap().unwrap().unwrap(), 1);

    // Inside a transaction block: approved, it runs in the block.
    bob.batch_execute("BEGIN; INSERT INTO ext_t VALUES (1)")
        .await
        .unwrap();
    let in_block = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.batch_execute("CREATE TABLE block_t (a int)").await })
    };
    let ids = pending(&h, 1).await;
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    in_block.await.unwrap().unwrap();
    assert!(!h.table_exists("block_t").await, "not committed yet");
    bob.batch_execute("COMMIT").await.unwrap();
    assert!(h.table_exists("block_t").await);
    let n: i64 = h
        .direct()
        .await
        .query_one("SELECT count(*) FROM ext_t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_disconnect_terminate_and_timeout_withdraw_the_request() {
    let h = harness(Setup {
        extra: "[approval]\ntimeout_secs = 2".into(),
        server: "idle_timeout_secs = 1".into(),
        ..Setup::default()
    })
    .await;
    // CancelRequest: 57014, and nothing runs. (Each step connects anew:
    // an idle session outlives the 1 s idle timeout only while held.)
    let bob = Arc::new(h.connect(BOB).await);
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE cancelled_t (a int)").await })
    };
    pending(&h, 1).await;
    bob.cancel_token().cancel_query(NoTls).await.unwrap();
    let e = held.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert!(!h.table_exists("cancelled_t").await);
    let (_, out, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    assert!(out.trim().is_empty(), "{out}");

    // Not decided in time (2 s; the 1 s idle timeout does not fire while
    // held): a clear error, and the session goes on.
    let bob = h.connect(BOB).await;
    let e = bob
        .simple_query("CREATE TABLE expired_t (a int)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("not decided in time"),
        "{e:?}"
    );
    assert_eq!(bob.simple_query("SELECT 1").await.unwrap().len(), 3);

    // The client hangs up: the request is withdrawn.
    let mut gone = login(&h, BOB).await;
    let sql = b"CREATE TABLE gone_t (a int)\0";
    let mut query = vec![b'Q'];
    query.extend_from_slice(&(4 + sql.len() as i32).to_be_bytes());
    query.extend_from_slice(sql);
    tokio::io::AsyncWriteExt::write_all(&mut gone, &query)
        .await
        .unwrap();
    pending(&h, 1).await;
    drop(gone);
    let mut left = usize::MAX;
    for _ in 0..100 {
        let (_, out, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
        left = out.lines().count();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "a hung-up client's request is withdrawn");
    assert!(!h.table_exists("gone_t").await);

    // TERMINATE from the console ends the session (FATAL 57P01).
    let victim = Arc::new(h.connect(BOB).await);
    let held = {
        let v = victim.clone();
        tokio::spawn(async move { v.simple_query("CREATE TABLE terminated_t (a int)").await })
    };
    pending(&h, 1).await;
    let (_, out, _) = h.console(DANA, &["-c", "SHOW SESSIONS"]).await;
    let session = out
        .lines()
        .find(|l| l.contains("|held|"))
        .and_then(|l| l.split('|').next())
        .expect("the held session is listed")
        .to_owned();
    let (ok, _, err) = h
        .console(DANA, &["-c", &format!("TERMINATE {session}")])
        .await;
    assert!(ok, "{err}");
    let e = held.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e), "57P01", "{e:?}");
    assert!(victim.is_closed() || victim.simple_query("SELECT 1").await.is_err());

    let (_, out, _) = h.console(DANA, &["-c", "SHOW APPROVALS"]).await;
    let verdicts: Vec<&str> = out.lines().filter_map(|l| l.split('|').nth(6)).collect();
    assert_eq!(
        verdicts,
        ["withdrawn", "expired", "withdrawn", "withdrawn"],
        "{out}"
    );
    // Each ending is on the audit record, with why.
    let decisions: Vec<(String, String)> = h
        .audit_events()
        .iter()
        .filter(|e| e.kind.as_str() == "approval_decision")
        .map(|e| {
            (
                e.outcome.as_deref().unwrap_or("").to_owned(),
                e.detail.as_deref().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want = [
        ("withdrawn", "the client cancelled it"),
        ("expired", "not decided within approval.timeout_secs"),
        ("withdrawn", "the session ended"),
        ("withdrawn", "the session ended"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(decisions, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_for_approvers_and_nobody_approves_their_own() {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users();
    // app may approve app's requests: bob could approve his own.
    rules = rules.with_role("app", |app| {
        app.approve_for = vec!["app".into()];
    });
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    // Not an approver: refused at sign-in.
    let (ok, _, err) = h.console(ALICE, &["-c", "SHOW PENDING"]).await;
    assert!(
        !ok && err.contains("may not use the admin console"),
        "{err}"
    );
    // Wrong password: the usual refusal.
    let (ok, _, err) = h.console(("dana", "wrong"), &["-c", "SHOW PENDING"]).await;
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );

    let bob = Arc::new(h.connect(BOB).await);
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE own_t (a int)").await })
    };
    let ids = pending(&h, 1).await;
    let (ok, _, err) = h
        .console(BOB, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    assert!(!ok && err.contains("is your own"), "{err}");
    let (ok, _, err) = h.console(BOB, &["-c", &format!("DENY {}", ids[0])]).await;
    assert!(!ok && err.contains("is your own"), "{err}");
    assert!(!held.is_finished());
    // bob may not act on dba sessions or decide other roles' requests.
    let (ok, _, err) = h.console(BOB, &["-c", "TERMINATE 999999"]).await;
    assert!(!ok && err.contains("no live session"), "{err}");
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    held.await.unwrap().unwrap();

    // Unknown commands and the extended protocol get clear errors.
    let (ok, _, err) = h.console(DANA, &["-c", "DROP TABLE x"]).await;
    assert!(
        !ok && err.contains("unknown command") && err.contains("SHOW PENDING"),
        "{err}"
    );
    let conn = h.conninfo(DANA).replace("dbname=postgres", "dbname=pgward");
    let (c, conn) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
    tokio::spawn(conn);
    let e = c.query("SHOW PENDING", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");
    let rows = c.simple_query("show help").await.unwrap();
    assert!(rows.len() > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_pending_at_once() {
    let h = harness(Setup::default()).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = h.connect(BOB).await;
        tasks.push(tokio::spawn(async move {
            c.simple_query(&format!("CREATE TABLE many_{i} (a int)"))
                .await
        }));
    }
    let ids = pending(&h, 50).await;
    assert_eq!(ids.len(), 50);
    // psql's expanded display works on the console's rows.
    let (ok, out, _) = h
        .console(DANA, &["-c", "\\x", "-c", "SHOW REQUEST 1"])
        .await;
    assert!(
        ok && out.contains("statement|CREATE TABLE many_") && out.contains("status|pending"),
        "{out}"
    );
    let approve_all: Vec<String> = ids.iter().map(|id| format!("APPROVE {id}")).collect();
    let (ok, _, err) = h.console(DANA, &["-c", &approve_all.join("; ")]).await;
    assert!(ok, "{err}");
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for i in [0, 25, 49] {
        assert!(h.table_exists(&format!("many_{i}")).await);
    }
}

/// Requests show what they would lock; every request and decision is on
/// the audit record, linked to the statement that ran under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_show_their_risk_and_are_audited_with_their_decisions() {
    let h = harness(Setup::default()).await;
    h.direct()
        .await
        .batch_execute("CREATE TABLE risky (a int); GRANT ALL ON risky TO PUBLIC")
        .await
        .unwrap();
    let (bob, _notices) = connect_noticed(&h, BOB).await;
    let bob = Arc::new(bob);
    let spawn = |sql: &'static str| {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query(sql).await })
    };

    // Approved: the index build, with its lock and the safer form shown.
    let held = spawn("CREATE INDEX risky_a ON risky (a)");
    let ids = pending(&h, 1).await;
    let (ok, out, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    let risk = out.split('|').nth(8).unwrap_or_default();
    assert!(
        ok && risk.contains("SHARE on risky (blocks writes)")
            && risk.contains("safer: CREATE INDEX CONCURRENTLY"),
        "{out}"
    );
    let (ok, _, err) = h
        .console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    assert!(ok, "{err}");
    held.await.unwrap().unwrap();
    let approved_id = ids[0].to_string();

    // Denied with a reason.
    let denied = spawn("ALTER TABLE risky ALTER COLUMN a TYPE bigint");
    let ids = pending(&h, 1).await;
    let (ok, out, _) = h
        .console(DANA, &["-c", &format!("SHOW REQUEST {}", ids[0])])
        .await;
    assert!(ok && out.contains("ACCESS EXCLUSIVE on risky (blocks reads and writes)"));
    assert!(out.contains("rewrites the table"), "{out}");
    h.console(DANA, &["-c", &format!("DENY {} 'off hours only'", ids[0])])
        .await;
    assert!(denied.await.unwrap().is_err());
    let denied_id = ids[0].to_string();

    // Withdrawn: the client cancels while it waits.
    let gone = spawn("DROP TABLE risky");
    let ids = pending(&h, 1).await;
    let withdrawn_id = ids[0].to_string();
    bob.cancel_token().cancel_query(NoTls).await.unwrap();
    let e = gone.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e), "57014");
    assert!(h.table_exists("risky").await);

    let events = h.audit_events();
    let of = |kind: &str, id: &str| {
        events
            .iter()
            .filter(|e| e.kind.as_str() == kind && e.approval_id.as_deref() == Some(id))
            .collect::<Vec<_>>()
    };
    for id in [&approved_id, &denied_id, &withdrawn_id] {
        let req = of("approval_request", id);
        assert_eq!(req.len(), 1, "one request event for {id}");
        assert_eq!(req[0].identity.as_deref(), Some("bob"));
        assert_eq!(req[0].decision.as_deref(), Some("hold"));
        assert!(req[0].session_id.is_some());
    }
    let decision = |id: &str| {
        let d = of("approval_decision", id);
        assert_eq!(d.len(), 1, "one decision event for {id}: {events:?}");
        d[0].clone()
    };
    let d = decision(&approved_id);
    assert_eq!(
        (d.outcome.as_deref(), d.approver.as_deref()),
        (Some("approved"), Some("dana"))
    );
    let d = decision(&denied_id);
    assert_eq!(
        (
            d.outcome.as_deref(),
            d.approver.as_deref(),
            d.detail.as_deref()
        ),
        (Some("denied"), Some("dana"), Some("off hours only"))
    );
    assert_eq!(
        decision(&withdrawn_id).outcome.as_deref(),
        Some("withdrawn")
    );
    // The statement that ran says under which request and whose yes.
    let ran: Vec<_> = of("statement", &approved_id);
    assert_eq!(ran.len(), 1, "{events:?}");
    assert_eq!(
        ran[0].statement.as_deref(),
        Some("CREATE INDEX risky_a ON risky (a)")
    );
    assert_eq!(
        (ran[0].outcome.as_deref(), ran[0].approver.as_deref()),
        (Some("ok"), Some("dana"))
    );
    // Nothing else carries an approval.
    assert!(events
        .iter()
        .filter(|e| e.kind.as_str() == "statement" && e.approval_id.is_some())
        .all(|e| e.approval_id.as_deref() == Some(approved_id.as_str())));
}

/// `APPROVE n FOR '...'`: the same statement (other constants) from the
/// same identity runs without asking until the grant ends; another table
/// is another statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_windows_cover_the_same_statement_until_revoked() {
    let h = harness(Setup::default()).await;
    let (bob, mut notices) = connect_noticed(&h, BOB).await;
    let bob = Arc::new(bob);
    let spawn = |sql: String| {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query(&sql).await })
    };
    // Two tables of bob's, created with plain approvals.
    for t in ["g1", "g2"] {
        let held = spawn(format!("CREATE TABLE {t} (a int)"));
        let ids = pending(&h, 1).await;
        h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
            .await;
        held.await.unwrap().unwrap();
    }
    assert!(h
        .console(DANA, &["-c", "SHOW GRANTS"])
        .await
        .1
        .trim()
        .is_empty());

    // Windows that are not windows, or too long, are refused.
    let held = spawn("ALTER TABLE g1 ALTER COLUMN a SET DEFAULT 1".into());
    let ids = pending(&h, 1).await;
    for bad in ["forever", "0 hours", "2 days"] {
        let (ok, _, err) = h
            .console(DANA, &["-c", &format!("APPROVE {} FOR '{bad}'", ids[0])])
            .await;
        assert!(
            !ok && (err.contains("window") || err.contains("at most")),
            "{bad}: {err}"
        );
    }
    let (ok, out, err) = h
        .console(DANA, &["-c", &format!("APPROVE {} FOR '1 hour'", ids[0])])
        .await;
    assert!(ok, "{out}{err}");
    held.await.unwrap().unwrap();
    let request = ids[0].to_string();

    // The same statement with another constant runs at once, and says so.
    while notices.try_recv().is_ok() {}
    bob.simple_query("ALTER TABLE g1 ALTER COLUMN a SET DEFAULT 2")
        .await
        .expect("runs under the grant");
    let notice = notices.recv().await.unwrap();
    assert!(
        notice.contains("runs under grant 1") && notice.contains("approved by dana"),
        "{notice}"
    );
    let d = h.direct().await;
    let default: String = d
        .query_one(
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'g1'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, "2");
    let (_, out, _) = h.console(DANA, &["-c", "SHOW GRANTS"]).await;
    let row: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(
        (row[0], row[1], row[2], row[4], row[5], row[9]),
        ("1", "bob", "app", request.as_str(), "dana", "1"),
        "{out}"
    );

    // Another table (the names differ only in a digit) asks again.
    let other = spawn("ALTER TABLE g2 ALTER COLUMN a SET DEFAULT 1".into());
    let ids = pending(&h, 1).await;
    h.console(DANA, &["-c", &format!("DENY {}", ids[0])]).await;
    assert!(other.await.unwrap().is_err());

    // Revoked: asked again.
    let (ok, _, err) = h.console(DANA, &["-c", "REVOKE GRANT 1"]).await;
    assert!(ok, "{err}");
    assert!(!h.console(DANA, &["-c", "REVOKE GRANT 1"]).await.0);
    let again = spawn("ALTER TABLE g1 ALTER COLUMN a SET DEFAULT 3".into());
    let ids = pending(&h, 1).await;
    h.console(DANA, &["-c", &format!("DENY {}", ids[0])]).await;
    assert!(again.await.unwrap().is_err());

    // On record: the use of the grant, as an approval by dana.
    let events = h.audit_events();
    let by_grant: Vec<_> = events
        .iter()
        .filter(|e| {
            e.kind.as_str() == "approval_decision" && e.detail.as_deref() == Some("grant 1")
        })
        .collect();
    assert_eq!(by_grant.len(), 1, "{events:?}");
    assert_eq!(by_grant[0].approval_id.as_deref(), Some(request.as_str()));
    let ran = events
        .iter()
        .find(|e| e.statement.as_deref() == Some("ALTER TABLE g1 ALTER COLUMN a SET DEFAULT 2"))
        .expect("the granted statement's event");
    assert_eq!(
        (
            ran.approval_id.as_deref(),
            ran.approver.as_deref(),
            ran.outcome.as_deref()
        ),
        (Some(request.as_str()), Some("dana"), Some("ok"))
    );
}

/// `tables.read = { approve = [...] }`: reading those tables waits for a
/// yes; the rest of the role's reads do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_approval_tables_are_held() {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users();
    rules = rules.with_role("app", |app| {
        app.tables = vec![pgward::policy::role::TableRule {
            class: Some(pgward::policy::Class::Read),
            approve: vec![pgward::policy::role::Pattern::new("public.api_keys")],
            ..Default::default()
        }];
    });
    let h = Harness::with_sample(rules).await;
    let bob = Arc::new(h.connect(BOB).await);
    // Other tables: at once.
    assert!(bob
        .simple_query("SELECT count(*) FROM customers")
        .await
        .is_ok());
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.query_one(
                "SELECT secret FROM api_keys WHERE service = $1",
                &[&"payments"],
            )
            .await
        })
    };
    let pending = h.pending_requests(1).await;
    // With its Bind's value in place: the approver sees which key.
    assert!(
        pending[0]
            .1
            .contains("SELECT secret FROM api_keys WHERE service = 'payments'"),
        "{pending:?}"
    );
    let (_, out, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    assert!(
        out.contains("read of public.api_keys needs approval"),
        "{out}"
    );
    h.console(DANA, &["-c", &format!("APPROVE {}", pending[0].0)])
        .await;
    let row = held.await.unwrap().expect("approved read");
    assert_eq!(row.get::<_, String>(0), "sk_live_demo_only");
}

/// `SET pgward.reason` or a leading `/* reason: ... */` travels with the
/// request; a role with `require_reason` gets nothing held without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasons_travel_with_requests_and_a_role_may_require_one() {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users();
    rules = rules.with_role("app", |app| {
        app.require_reason = true;
    });
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    let bob = Arc::new(h.connect(BOB).await);
    // No reason: refused at once, nothing held, nothing run.
    let e = bob
        .simple_query("CREATE TABLE no_reason (a int)")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("must say why") && db.hint().unwrap().contains("pgward.reason"),
        "{db:?}"
    );
    assert!(!h.table_exists("no_reason").await);

    let reason_of = |out: &str| out.trim().split('|').nth(10).unwrap_or_default().to_owned();
    // A leading comment.
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.simple_query(
                "/* reason: INC-7 add the audit table */ CREATE TABLE with_comment (a int)",
            )
            .await
        })
    };
    let ids = pending(&h, 1).await;
    let (_, out, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    assert_eq!(reason_of(&out), "INC-7 add the audit table", "{out}");
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    held.await.unwrap().unwrap();
    let comment_id = ids[0].to_string();

    // The session's setting (the server keeps it as a placeholder).
    bob.simple_query("SET pgward.reason = 'INC-8: backfill'")
        .await
        .expect("every role may set pgward.reason");
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE with_setting (a int)").await })
    };
    let ids = pending(&h, 1).await;
    let (_, out, _) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    assert_eq!(reason_of(&out), "INC-8: backfill", "{out}");
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    held.await.unwrap().unwrap();
    // RESET takes it back: refused again.
    bob.simple_query("RESET pgward.reason").await.unwrap();
    assert!(bob
        .simple_query("CREATE TABLE after_reset (a int)")
        .await
        .is_err());

    let events = h.audit_events();
    let req = events
        .iter()
        .find(|e| {
            e.kind.as_str() == "approval_request"
                && e.approval_id.as_deref() == Some(comment_id.as_str())
        })
        .expect("the request event");
    assert_eq!(req.detail.as_deref(), Some("INC-7 add the audit table"));
    assert_eq!(req.rule.as_deref(), Some("CREATE changes the schema"));
    let classes: Vec<_> = req
        .classes
        .as_deref()
        .unwrap()
        .iter()
        .flatten()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(classes, ["ddl"]);
}

/// `approval.webhook_url`: each new request is POSTed as JSON with a
/// Slack-style `text`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_requests_are_posted_to_the_webhook() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hook.local_addr().unwrap().port();
    let h = harness(Setup {
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
                    return (text[..end].to_owned(), text[end + 4..].to_owned());
                }
            }
        }
    });
    let bob = Arc::new(h.connect(BOB).await);
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE hooked (a int)").await })
    };
    let (head, body) = tokio::time::timeout(Duration::from_secs(20), posted)
        .await
        .expect("the webhook was called")
        .unwrap();
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = json["request"]["id"].as_u64().unwrap();
    let text = json["text"].as_str().unwrap();
    assert!(
        text.contains("bob (app) asks to run, on postgres: CREATE TABLE hooked (a int)")
            && text.contains(&format!("APPROVE {id}")),
        "{text}"
    );
    h.console(DANA, &["-c", &format!("APPROVE {id}")]).await;
    held.await.unwrap().unwrap();
}

/// The console's rows work with psql's `\x` and `\watch`, as a DBA keeps
/// the queue open in a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_expanded_output_and_watch_work_on_the_console() {
    use tokio::io::AsyncReadExt;
    let h = harness(Setup::default()).await;
    let bob = Arc::new(h.connect(BOB).await);
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE watched (a int)").await })
    };
    let ids = pending(&h, 1).await;
    let conn = h.conninfo(DANA).replace("dbname=postgres", "dbname=pgward");
    let psql = pgward::localpg::find_program("psql").expect("psql");
    let mut child = tokio::process::Command::new(psql)
        .args(["-X", "-d", &conn])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // As typed at the prompt (a -c option cannot mix SQL and \watch).
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"\\x on\nSHOW PENDING \\watch 0.3\n")
        .await
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    // Three refreshes, each a full expanded record.
    while String::from_utf8_lossy(&out)
        .matches("-[ RECORD 1 ]")
        .count()
        < 3
    {
        match tokio::time::timeout_at(deadline, stdout.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
            other => panic!("psql stopped: {other:?}: {}", String::from_utf8_lossy(&out)),
        }
    }
    child.kill().await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("Expanded display is on."), "{out}");
    assert!(out.contains("(every 0.3s)"), "{out}");
    for field in ["id", "statement", "risk", "reason", "waited"] {
        assert!(
            out.lines().any(|l| l.starts_with(field) && l.contains('|')),
            "{field}: {out}"
        );
    }
    assert!(out.contains("CREATE TABLE watched (a int)"), "{out}");
    h.console(DANA, &["-c", &format!("APPROVE {}", ids[0])])
        .await;
    held.await.unwrap().unwrap();
}
