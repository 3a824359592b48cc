//! Sessions share pgward's session threads: a session, busy or idle,
//! costs no thread of its own. In a binary of its own, so the threads
//! counted are this test's alone.

mod common;
use common::*;

/// The threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_add_no_threads_and_each_still_answers() {
    const SESSIONS: usize = 100;
    let h = Harness::start().await;
    // What the first session starts (the catalog's control connection,
    // tokio's blocking pool for the address lookup) is not per session.
    let first = h.connect(ALICE).await;
    first.simple_query("select 1").await.unwrap();
    let before = threads();
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let c = h.connect(ALICE).await;
        c.simple_query("select 1").await.unwrap();
        sessions.push(c);
    }
    let after = threads();
    // A relay with threads of its own would add 2 * SESSIONS here.
    assert!(
        after <= before + 4,
        "{SESSIONS} sessions took the process from {before} to {after} threads"
    );
    for (i, c) in sessions.iter().enumerate() {
        let rows = c.simple_query("select 41 + 1").await.unwrap();
        let answer = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(answer.as_deref(), Some("42"), "session {i}");
    }
}
