//! Which relay a plain session gets, checked in a binary of its own: the
//! relay threads counted here are this test's alone.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_threads_false_keeps_plain_sessions_on_the_async_relay() {
    let h = start_relay(ASYNC_RELAY, "").await;
    let c = h.connect(DANA).await;
    c.simple_query("select 1").await.unwrap();
    assert!(relay_thread_cpus().is_empty(), "{:?}", relay_thread_cpus());
    drop(c);
    // The default: this binary's first relay threads appear.
    let h = start_relay("", "").await;
    let c = h.connect(DANA).await;
    c.simple_query("select 1").await.unwrap();
    let names: Vec<String> = relay_thread_cpus().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"pgward-client".to_owned()), "{names:?}");
    assert!(names.contains(&"pgward-upstream".to_owned()), "{names:?}");
}
