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

/// Raises this process's open-file limit to at least `need` (the hard
/// limit too, where the process may: as root, up to fs.nr_open); Err says
/// why it cannot.
fn raise_open_files(need: u64) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur >= need {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: need,
        rlim_max: lim.rlim_max.max(need),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!(
            "the open-file limit is {} (hard {}) and this test needs {need}: raise the hard limit (ulimit -Hn) or run as root ({})",
            lim.rlim_cur,
            lim.rlim_max,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// PGWARD_IDLE_SESSIONS (default 10,000) sessions signed in and left idle,
/// then each answers a query. Each takes about three open files in this
/// process (the client's socket and pgward's two) and a PostgreSQL
/// backend: minutes of sign-ins and several GB of memory, so not in the
/// default run: `cargo test --test idle_sessions -- --ignored`. Skipped,
/// saying so, when the open-file limit cannot be raised far enough.
#[ignore = "10,000 sessions and PostgreSQL backends: minutes and GBs; run with --ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_sessions_each_answer_a_query() {
    use futures_util::stream::{self, StreamExt};
    use tokio::io::AsyncWriteExt;
    let sessions: usize = std::env::var("PGWARD_IDLE_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    if let Err(why) = raise_open_files(3 * sessions as u64 + 1024) {
        eprintln!("SKIPPED ten_thousand_idle_sessions_each_answer_a_query: {why}");
        return;
    }
    let h = Harness::start_with(Setup {
        // Sign-ins queue up behind each other on a small machine: each
        // gets time enough, whatever its place in the queue.
        server: format!(
            "max_connections = {}\nauth_timeout_secs = 600",
            sessions + 10
        ),
        pg: pgward::localpg::Options {
            conf: vec![format!("max_connections = {}", sessions + 20)],
            ..Default::default()
        },
        ..Setup::default()
    })
    .await;
    let before = threads();
    let mut open: Vec<tokio::net::TcpStream> = stream::iter(0..sessions)
        .map(|_| login(&h, ALICE))
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(open.len(), sessions);
    let after = threads();
    assert!(
        after <= before + 8,
        "{sessions} sessions took the process from {before} to {after} threads"
    );
    let query = b"Q\0\0\0\x12select 41 + 1\0";
    for (i, s) in open.iter_mut().enumerate() {
        s.write_all(query).await.unwrap();
        let answer = until_ready(s).await;
        let row = answer.iter().find(|(tag, _)| *tag == b'D');
        assert_eq!(
            row.map(|(_, body)| &body[6..]),
            Some(&b"42"[..]),
            "session {i}: {answer:?}"
        );
    }
}
