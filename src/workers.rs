//! Session threads: one single-threaded tokio runtime per thread, each
//! driving its own sessions and sockets. A session's client socket, its
//! upstream socket and its task live on one thread, so relaying wakes no
//! other thread (a work-stealing runtime spends several microseconds per
//! transaction waking idle workers). The listener deals connections out in
//! turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::policy::stack::THREAD_STACK;

pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stops: Mutex<Vec<oneshot::Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// Starts `n` session threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        // Session threads have no time driver of their own (see timer.rs).
        crate::timer::start()?;
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("pgward-session-{i}"))
                // Classification runs here, on this stack (see classify.rs).
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("a session thread died while starting"))??;
            handles.push(handle);
            stops.push(stop_tx);
            threads.push(thread);
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            stops: Mutex::new(stops),
            threads: Mutex::new(threads),
        })
    }

    /// The runtime the next session goes to.
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for stop in self
            .stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = stop.send(());
        }
        let me = std::thread::current().id();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            // A runtime thread cannot wait for itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}
