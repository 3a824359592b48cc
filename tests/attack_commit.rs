//! Attacks on `approve_commit` (issue 29): bob's role `app` has its
//! COMMITs reviewed; dana approves. Each test tries to get a change
//! committed (visible to another session) without dana seeing it, or to
//! make her see something other than what commits. Against a real
//! PostgreSQL.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::*;

async fn harness() -> Harness {
    let rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users()
        .with_role("app", |app| app.approve_commit = true);
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    h.direct()
        .await
        .batch_execute(pgward::demo::SAMPLE_SCHEMA)
        .await
        .unwrap();
    h
}

async fn orders(h: &Harness) -> i64 {
    one_number(&h.direct().await, "SELECT count(*) FROM orders").await
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("not a server error: {e}"))
}

/// Requests pending now, as (id, statement shown).
async fn pending_now(h: &Harness) -> Vec<(u64, String)> {
    let (ok, out, err) = h.console(DANA, &["-c", "SHOW PENDING"]).await;
    assert!(ok, "{err}");
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            Some((f.first()?.parse().ok()?, f.get(7)?.to_string()))
        })
        .collect()
}

/// Runs `attack` while dana denies every request it raises; returns what
/// she was shown and how the attack ended.
async fn denying<T: Send + 'static>(
    h: &Harness,
    attack: impl Future<Output = T> + Send + 'static,
) -> (Vec<String>, T) {
    let task = tokio::spawn(attack);
    let mut shown = Vec::new();
    for _ in 0..400 {
        if task.is_finished() {
            break;
        }
        for (id, text) in pending_now(h).await {
            h.console(DANA, &["-c", &format!("DENY {id}")]).await;
            shown.push(text);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the attack ended")
        .expect("the attack's task");
    (shown, out)
}

const INSERT: &str = "INSERT INTO orders (customer_id, amount) VALUES (1, 666)";

/// The statement of the hidden change is in what dana was shown, and
/// nothing committed.
async fn caught(h: &Harness, before: i64, shown: &[String], what: &str) {
    assert!(
        shown.iter().any(|s| s.contains("VALUES (1, 666)")),
        "{what}: dana was never shown the INSERT: {shown:?}"
    );
    assert_eq!(
        orders(h).await,
        before,
        "{what}: the INSERT committed without approval"
    );
}

/// `ROLLBACK TO SAVEPOINT` revives a failed block, with every change made
/// before the savepoint; a COMMIT in the same message must be reviewed
/// even though the block was failed when the message was judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_savepoint_then_commit_in_a_failed_block_is_reviewed() {
    let h = harness().await;
    let before = orders(&h).await;
    let bob = Arc::new(h.connect(BOB).await);
    bob.batch_execute(&format!("BEGIN; {INSERT}; SAVEPOINT s"))
        .await
        .unwrap();
    let e = bob.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(code(&e), "22012");
    let (shown, r) = {
        let bob = bob.clone();
        denying(&h, async move {
            bob.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT").await
        })
        .await
    };
    // Denied in a failed block: answered as PostgreSQL answers there.
    let e = r.unwrap_err();
    assert!(["42501", "25P02"].contains(&code(&e).as_str()), "{e:?}");
    let _ = bob.batch_execute("ROLLBACK").await;
    caught(&h, before, &shown, "ROLLBACK TO; COMMIT").await;
}

/// The same after dana DENIED the COMMIT: the denial aborts the block, and
/// a savepoint taken before the COMMIT must not bring its changes back
/// past her.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_commit_is_not_revived_by_a_savepoint() {
    let h = harness().await;
    let before = orders(&h).await;
    let bob = Arc::new(h.connect(BOB).await);
    bob.batch_execute(&format!("BEGIN; {INSERT}; SAVEPOINT s"))
        .await
        .unwrap();
    let (shown, r) = {
        let bob = bob.clone();
        denying(&h, async move { bob.batch_execute("COMMIT").await }).await
    };
    assert_eq!(code(&r.unwrap_err()), "42501");
    assert_eq!(shown.len(), 1, "{shown:?}");
    // Pipelined (judged while the block is still failed) and in one message.
    let (shown, (a, b)) = {
        let bob = bob.clone();
        denying(&h, async move {
            let a = bob.batch_execute("ROLLBACK TO SAVEPOINT s");
            let b = bob.batch_execute("COMMIT");
            futures_util::join!(a, b)
        })
        .await
    };
    assert!(a.is_ok(), "{a:?}");
    assert_eq!(code(&b.unwrap_err()), "42501");
    let _ = bob.batch_execute("ROLLBACK").await;
    caught(&h, before, &shown, "pipelined ROLLBACK TO, COMMIT").await;
}

/// A pipeline from an idle session: the COMMIT is judged before the
/// server has answered the message that began the block and changed
/// something in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_commit_after_begin_and_a_change_is_reviewed() {
    let h = harness().await;
    let before = orders(&h).await;
    let bob = Arc::new(h.connect(BOB).await);
    let (shown, (a, b)) = {
        let bob = bob.clone();
        denying(&h, async move {
            let sql = format!("BEGIN; {INSERT}");
            let a = bob.batch_execute(&sql);
            let b = bob.batch_execute("COMMIT");
            futures_util::join!(a, b)
        })
        .await
    };
    assert!(a.is_ok(), "{a:?}");
    assert_eq!(code(&b.unwrap_err()), "42501");
    let _ = bob.batch_execute("ROLLBACK").await;
    caught(&h, before, &shown, "pipelined BEGIN; INSERT, COMMIT").await;

    // Inside a block, after a ROLLBACK that may end it: a new block and
    // its COMMIT, all before the server answers.
    bob.batch_execute("BEGIN").await.unwrap();
    let (shown, (a, b, c)) = {
        let bob = bob.clone();
        denying(&h, async move {
            let a = bob.batch_execute("ROLLBACK");
            let sql = format!("BEGIN; {INSERT}");
            let b = bob.batch_execute(&sql);
            let c = bob.batch_execute("COMMIT");
            futures_util::join!(a, b, c)
        })
        .await
    };
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(code(&c.unwrap_err()), "42501");
    let _ = bob.batch_execute("ROLLBACK").await;
    caught(
        &h,
        before,
        &shown,
        "pipelined ROLLBACK, BEGIN; INSERT, COMMIT",
    )
    .await;
}
