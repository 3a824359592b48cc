//! Timers for session threads, kept on one background thread.
//!
//! Session threads run tokio without its time driver. With it, every sleep
//! and wake-up of a thread (two per relayed pgbench transaction) also locks
//! and scans a timer wheel: about 550 of the transaction's 10k user-space
//! instructions, on the path between reading a message and passing it on.
//! Their timers fire rarely (authentication and connect timeouts, idle
//! sessions, a token's expiry), so they live on the background thread,
//! which wakes a session only when one fires. The same thread runs the
//! HTTP fetches of OIDC signing keys, whose client arms timers of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;

static BACKGROUND: OnceLock<Handle> = OnceLock::new();

/// Starts the background thread, once. Session threads have no time
/// driver, so they are started only after this succeeded.
pub fn start() -> std::io::Result<()> {
    static STARTING: Mutex<()> = Mutex::new(());
    let _once = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if BACKGROUND.get().is_some() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("pgward-timer".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    let _ = BACKGROUND.set(handle);
    Ok(())
}

/// Resolves at `at`. Before `start`, on the current runtime's own timer.
pub fn sleep_until(at: Instant) -> Sleep {
    match BACKGROUND.get() {
        Some(bg) => {
            let (tx, rx) = oneshot::channel();
            let task = bg.spawn(async move {
                tokio::time::sleep_until(at).await;
                let _ = tx.send(());
            });
            Sleep::Remote {
                rx,
                timer: AbortOnDrop(task.abort_handle()),
            }
        }
        None => Sleep::Local(Box::pin(tokio::time::sleep_until(at))),
    }
}

pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
}

/// A sleep from `sleep_until`; dropping it cancels the timer.
pub enum Sleep {
    Remote {
        rx: oneshot::Receiver<()>,
        timer: AbortOnDrop,
    },
    Local(Pin<Box<tokio::time::Sleep>>),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            // A closed channel (the background runtime gone) counts as
            // fired: a timeout that cannot be timed ends what it guards.
            Sleep::Remote { rx, .. } => Pin::new(rx).poll(cx).map(|_| ()),
            Sleep::Local(s) => s.as_mut().poll(cx),
        }
    }
}

/// `f` ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

/// `f`, unless `limit` passes first.
pub async fn timeout<F: Future>(limit: Duration, f: F) -> Result<F::Output, Elapsed> {
    let expired = sleep(limit);
    tokio::pin!(f);
    tokio::select! {
        biased;
        out = &mut f => Ok(out),
        () = expired => Err(Elapsed),
    }
}

/// Runs `f` on the background thread (on the current runtime before
/// `start`): for work that arms tokio timers of its own.
pub async fn in_background<F>(f: F) -> Result<F::Output, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = match BACKGROUND.get() {
        Some(bg) => bg.spawn(f),
        None => tokio::spawn(f),
    };
    let _cancel = AbortOnDrop(task.abort_handle());
    task.await
        .map_err(|e| format!("background task failed: {e}"))
}

/// Runs `f` on the background thread (on the current runtime before
/// `start`) to its end, unwatched: for work nobody waits for (a webhook).
pub fn spawn_background<F>(f: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match BACKGROUND.get() {
        Some(bg) => drop(bg.spawn(f)),
        None => match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(f)),
            Err(_) => tracing::warn!("no runtime for background work: dropped"),
        },
    }
}

/// Cancels background work (a timer, a fetch) when its owner is dropped.
pub struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime like a session thread's: no time driver of its own.
    fn session_like() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    }

    #[test]
    fn timeouts_work_on_a_runtime_without_a_time_driver() {
        start().unwrap();
        session_like().block_on(async {
            let t0 = std::time::Instant::now();
            assert_eq!(
                timeout(Duration::from_millis(50), std::future::pending::<()>()).await,
                Err(Elapsed)
            );
            assert!(t0.elapsed() >= Duration::from_millis(50));
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
            sleep(Duration::from_millis(10)).await;
            let fetched = in_background(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                3
            })
            .await;
            assert_eq!(fetched, Ok(3));
        });
    }

    #[test]
    fn a_dropped_sleep_cancels_its_timer() {
        start().unwrap();
        let timer = session_like().block_on(async {
            let s = sleep(Duration::from_secs(3600));
            let Sleep::Remote { timer, .. } = &s else {
                panic!("after start, sleeps are on the background thread");
            };
            let timer = timer.0.clone();
            drop(s);
            timer
        });
        // The abort is carried out on the background thread.
        let t0 = std::time::Instant::now();
        while !timer.is_finished() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(timer.is_finished(), "an hour's timer outlived its sleep");
    }
}
