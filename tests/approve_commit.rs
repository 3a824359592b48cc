//! `approve_commit`: bob's changes run inside his transaction block at
//! once, invisible to others, and its COMMIT waits for dana, who sees each
//! change; APPROVE commits, DENY leaves the block aborted so nothing of it
//! is ever committed. Changes that would commit by themselves are held
//! before they run. Against a real PostgreSQL.

mod common;

use std::sync::Arc;

use common::*;

async fn harness() -> Harness {
    Harness::with_sample(
        pgward::demo::example_rules()
            .unwrap()
            .without_upstream_users()
            .with_role("app", |app| app.approve_commit = true),
    )
    .await
}

async fn orders(h: &Harness) -> i64 {
    one_number(&h.direct().await, "SELECT count(*) FROM orders").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waits_for_review_of_what_the_block_changed() {
    let h = harness().await;
    let before = orders(&h).await;
    let bob = Arc::new(h.connect(BOB).await);

    // A block that only reads commits at once.
    bob.batch_execute("BEGIN; SELECT count(*) FROM orders; COMMIT")
        .await
        .unwrap();

    // Changes run at once inside the block, unseen by others.
    bob.batch_execute("BEGIN").await.unwrap();
    bob.execute(
        "INSERT INTO orders (customer_id, amount) VALUES ($1, 7)",
        &[&1i32],
    )
    .await
    .unwrap_or_else(|e| panic!("insert in the block: {e:?}"));
    bob.batch_execute("UPDATE orders SET amount = amount + 1 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(orders(&h).await, before, "not visible before COMMIT");
    let commit = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.batch_execute("COMMIT").await })
    };
    let pending = h.pending_requests(1).await;
    let (id, shown) = &pending[0];
    assert!(
        shown.starts_with("COMMIT")
            && shown.contains("[1] INSERT INTO orders (customer_id, amount) VALUES (1, 7)")
            && shown.contains("[2] UPDATE orders SET amount = amount + 1 WHERE id = 1"),
        "{shown}"
    );
    // No grant can cover a COMMIT: each one is reviewed.
    let (_, out, err) = h
        .console(DANA, &["-c", &format!("APPROVE {id} FOR '1 hour'")])
        .await;
    assert!(err.contains("cannot be granted for a time"), "{out} {err}");
    assert_eq!(orders(&h).await, before, "still not committed");
    let (ok, _, err) = h.console(DANA, &["-c", &format!("APPROVE {id}")]).await;
    assert!(ok, "{err}");
    commit.await.unwrap().expect("approved COMMIT");
    assert_eq!(orders(&h).await, before + 1, "committed when approved");

    // Denied: the block is aborted and nothing of it is committed.
    bob.batch_execute("BEGIN; DELETE FROM orders")
        .await
        .unwrap();
    let commit = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.batch_execute("COMMIT").await })
    };
    let pending = h.pending_requests(1).await;
    assert!(pending[0].1.contains("DELETE FROM orders"), "{pending:?}");
    h.console(DANA, &["-c", &format!("DENY {} 'not today'", pending[0].0)])
        .await;
    let e = commit.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    // The block is aborted: COMMIT now rolls back, as PostgreSQL does.
    let e = bob.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02", "{e:?}");
    bob.batch_execute("COMMIT").await.unwrap();
    assert_eq!(orders(&h).await, before + 1, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_would_not_wait_for_commit_are_held_before_they_run() {
    let h = harness().await;
    let before = orders(&h).await;
    let bob = Arc::new(h.connect(BOB).await);
    for sql in [
        // Outside a block it would commit by itself.
        "INSERT INTO orders (customer_id, amount) VALUES (1, 1)",
        // In one message with the COMMIT that ends its block.
        "BEGIN; INSERT INTO orders (customer_id, amount) VALUES (1, 1); COMMIT",
    ] {
        let task = {
            let bob = bob.clone();
            tokio::spawn(async move { bob.batch_execute(sql).await })
        };
        let pending = h.pending_requests(1).await;
        assert!(pending[0].1.contains("INSERT INTO orders"), "{pending:?}");
        assert_eq!(orders(&h).await, before, "{sql}: held before it ran");
        h.console(DANA, &["-c", &format!("DENY {}", pending[0].0)])
            .await;
        let e = task.await.unwrap().unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
        let _ = bob.batch_execute("ROLLBACK").await;
    }
    // A pipeline cannot run a change after a COMMIT it sent as if the
    // block were still open: the second Query is judged while the COMMIT
    // may have ended the block.
    bob.batch_execute("BEGIN").await.unwrap();
    let task = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let a = bob.batch_execute("SELECT 1");
            let b = bob.batch_execute("COMMIT");
            let c = bob.batch_execute("INSERT INTO orders (customer_id, amount) VALUES (1, 2)");
            futures_util::join!(a, b, c)
        })
    };
    let pending = h.pending_requests(1).await;
    assert!(pending[0].1.contains("INSERT INTO orders"), "{pending:?}");
    h.console(DANA, &["-c", &format!("DENY {}", pending[0].0)])
        .await;
    let (a, b, c) = task.await.unwrap();
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(sqlstate(&c.unwrap_err()), "42501");
    assert_eq!(orders(&h).await, before);
}

/// The other ways to end a block with its changes: COMMIT through the
/// extended protocol and PREPARE TRANSACTION (whose COMMIT PREPARED would
/// commit them later) wait too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_to_commit_waits() {
    let h = harness().await;
    let before = orders(&h).await;
    let bob = Arc::new(h.connect(BOB).await);
    // app may not run admin statements at all: refused at once.
    bob.batch_execute("BEGIN; INSERT INTO orders (customer_id, amount) VALUES (2, 3)")
        .await
        .unwrap();
    let e = bob
        .batch_execute("PREPARE TRANSACTION 'x'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    bob.batch_execute("ROLLBACK").await.unwrap();
    for end in ["COMMIT AND CHAIN", "END", "extended COMMIT"] {
        bob.batch_execute("BEGIN; INSERT INTO orders (customer_id, amount) VALUES (2, 3)")
            .await
            .unwrap();
        let task = {
            let bob = bob.clone();
            tokio::spawn(async move {
                match end {
                    "extended COMMIT" => bob.execute("COMMIT", &[]).await.map(|_| ()),
                    sql => bob.batch_execute(sql).await,
                }
            })
        };
        let pending = h.pending_requests(1).await;
        assert!(
            pending[0].1.contains("INSERT INTO orders"),
            "{end}: {pending:?}"
        );
        h.console(DANA, &["-c", &format!("DENY {}", pending[0].0)])
            .await;
        let e = task.await.unwrap().unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{end}: {e:?}");
        bob.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(orders(&h).await, before, "{end}");
    }
}
