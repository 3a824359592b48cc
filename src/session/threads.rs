//! A plain-TCP session relayed on two threads of its own: one carries
//! client → upstream, the other upstream → client, each blocked in its own
//! read. A message costs one read and one write (an event loop adds a
//! readiness wait), and each session direction gets its own share of the
//! CPU from the kernel's scheduler, instead of queueing behind other
//! sessions on a shared worker. On a 2-core machine shared with pgbench
//! and PostgreSQL this relayed 8 clients about 1.5× faster than one event
//! loop per core (docs/architecture.md has the figures).
//!
//! The session's task stays on its worker as the supervisor: it owns the
//! timers and the shutdown phase, and ends the session by shutting the
//! upstream socket, which wakes the upstream thread; that thread is the only
//! writer to the client, so it sends the last words after everything
//! already relayed. The client thread is the only writer upstream and,
//! once the session is ending, reads and discards what the client still
//! sends until it hangs up (closing a socket with unread input sends a
//! reset that can destroy the error before the client reads it).

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::placement::{self, Seat};
use super::relay::{
    fired, idle_recheck, idle_timeout_error, shutting_down, Blocked, Core, End, Parts, PhaseWatch,
    Relay, AUDIT_RETRY, LAST_WORDS, LINGER, READ_CHUNK, TERMINATE,
};
use crate::net::Stream;
use crate::policy::stack::THREAD_STACK;
use crate::protocol::{sqlstate, PgError};
use crate::server::Phase;

/// The upstream thread only frames, records and writes: a small stack.
const UPSTREAM_STACK: usize = 256 << 10;

struct Inner {
    locked: Mutex<Locked>,
    client: TcpStream,
    upstream: TcpStream,
    /// Held while writing upstream, so a Terminate never lands inside a
    /// message.
    up_writer: Mutex<()>,
}

struct Locked {
    core: Core,
    /// How the session ends; the first to decide wins.
    end: Option<End>,
    /// The end is in the audit log.
    recorded: bool,
}

impl Locked {
    /// Records the session's end once it is decided, once.
    fn record_end(&mut self) {
        if let (Some(end), false) = (&self.end, self.recorded) {
            self.core.record_end(end);
            self.recorded = true;
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Locked> {
        // A thread that panicked holding the lock left the core as it was
        // between two messages' worth of work; the session is ending then.
        self.locked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how the session ends unless that is already decided;
    /// whether this call decided it.
    fn set_end(&self, end: End) -> bool {
        let mut l = self.lock();
        if l.end.is_some() {
            return false;
        }
        l.end = Some(end);
        true
    }

    fn ending(&self) -> bool {
        self.lock().end.is_some()
    }

    fn send_up(&self, buf: &mut BytesMut) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let _w = self.up_writer.lock().unwrap_or_else(|p| p.into_inner());
        let r = (&self.upstream).write_all(buf);
        buf.clear();
        r
    }

    /// Says goodbye upstream (when no write is half done) and shuts the
    /// socket, which also wakes the upstream thread from its read.
    fn close_upstream(&self) {
        if let Ok(_w) = self.up_writer.try_lock() {
            // Never blocks: a server that is not reading gets no goodbye.
            let _ = nix::sys::socket::send(
                self.upstream.as_raw_fd(),
                TERMINATE,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            );
        }
        let _ = self.upstream.shutdown(Shutdown::Both);
    }

    /// pgward ends the session with `err`.
    fn close(&self, err: PgError) {
        if self.set_end(End::Closed(err)) {
            self.close_upstream();
        }
    }
}

/// Relays `relay`'s session on two threads until it ends; for plain TCP
/// on both sides only (`Relay::is_plain`).
/// With `pin`, both threads run on the CPU with the fewest sessions
/// (`placement.rs`).
pub async fn run(
    relay: Relay,
    idle_timeout: Option<Duration>,
    phase: watch::Receiver<Phase>,
    pin: bool,
) -> End {
    let Parts {
        core,
        client,
        client_pending: cin,
        upstream,
        upstream_pending: uin,
        deadline,
    } = relay.into_parts();
    let (client, upstream) = match (blocking(client), blocking(upstream)) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot hand a session to its threads: {e}");
            return End::ClientGone(Some(e));
        }
    };
    let inner = Arc::new(Inner {
        locked: Mutex::new(Locked {
            core,
            end: None,
            recorded: false,
        }),
        client,
        upstream,
        up_writer: Mutex::new(()),
    });
    // Held until the session ends: counts it on its CPU.
    let seat = if pin { Seat::take() } else { None };
    let cpu = seat.as_ref().map(Seat::cpu);
    let (up_tx, mut up_done) = oneshot::channel::<()>();
    let (cl_tx, cl_done) = oneshot::channel::<()>();
    let mut cl_done = Some(cl_done);
    let started = spawn(
        &inner,
        "pgward-upstream",
        UPSTREAM_STACK,
        cpu,
        move |inner| {
            upstream_side(inner, uin);
            drop(up_tx);
        },
    );
    if let Err(e) = started {
        let err = no_threads(e);
        {
            let mut l = inner.lock();
            l.end = Some(End::Closed(err.clone()));
            l.record_end();
        }
        say_last_words(&inner, &mut BytesMut::new(), Some(&err), true);
        return End::Closed(err);
    }
    // Classification runs on this thread's stack (see classify.rs).
    let started = spawn(&inner, "pgward-client", THREAD_STACK, cpu, move |inner| {
        client_side(inner, cin);
        drop(cl_tx);
    });
    if let Err(e) = started {
        inner.close(no_threads(e));
    }
    supervise(
        &inner,
        idle_timeout,
        phase,
        deadline,
        &mut up_done,
        &mut cl_done,
    )
    .await;
    {
        let mut l = inner.lock();
        if l.end.is_none() {
            l.end = Some(End::Closed(thread_failed()));
        }
        l.record_end();
    }
    // The client has its last words; it hangs up, or is hung up on.
    if let Some(mut cl_done) = cl_done {
        if crate::timer::timeout(LINGER, &mut cl_done).await.is_err() {
            let _ = inner.client.shutdown(Shutdown::Both);
            let _ = cl_done.await;
        }
    }
    let end = inner.lock().end.take();
    end.unwrap_or(End::ClientGone(None))
}

/// Starts one of the session's threads, on `cpu` if given, inside this
/// runtime (the guard spawns catalog reloads onto it).
fn spawn(
    inner: &Arc<Inner>,
    name: &str,
    stack: usize,
    cpu: Option<usize>,
    body: impl FnOnce(&Inner) + Send + 'static,
) -> io::Result<()> {
    let inner = inner.clone();
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(stack)
        .spawn(move || {
            if let Some(cpu) = cpu {
                placement::bind_current_thread(cpu);
            }
            let _rt = rt.enter();
            body(&inner);
        })
        .map(drop)
}

/// Runs the session's timers and follows the server's phase until the
/// upstream thread is done.
async fn supervise(
    inner: &Inner,
    idle_timeout: Option<Duration>,
    mut phase: watch::Receiver<Phase>,
    mut deadline: Option<(Instant, PgError)>,
    up_done: &mut oneshot::Receiver<()>,
    cl_done: &mut Option<oneshot::Receiver<()>>,
) {
    let mut idle = idle_timeout.map(crate::timer::sleep);
    if idle_timeout.is_some() {
        inner.lock().core.last_client = Some(Instant::now());
    }
    let mut expiry = deadline
        .as_ref()
        .map(|(at, _)| crate::timer::sleep_until(*at));
    // Once the session is closing, the upstream thread gets this long to
    // deliver the last words to a client that may not be reading.
    let mut hang_up: Option<crate::timer::Sleep> = None;
    let mut current = *phase.borrow_and_update();
    let mut changed = PhaseWatch::new(phase);
    loop {
        if current != Phase::Running {
            let idle_now = {
                let mut l = inner.lock();
                l.core.draining = true;
                l.core.is_idle()
            };
            if current == Phase::Force || idle_now {
                inner.close(shutting_down());
            }
        }
        if hang_up.is_none() && inner.ending() {
            hang_up = Some(crate::timer::sleep(LAST_WORDS));
        }
        tokio::select! {
            biased;
            _ = &mut *up_done => return,
            _ = async { if let Some(rx) = cl_done.as_mut() { let _ = rx.await; } }, if cl_done.is_some() => {
                *cl_done = None;
                // The client thread ends only after deciding the end; if
                // it failed without, the session cannot go on.
                inner.close(thread_failed());
            }
            (result, mut rx) = poll_fn(|cx| changed.poll(cx)) => {
                if result.is_err() {
                    // The server is gone entirely: treat as forced.
                    current = Phase::Force;
                    changed = PhaseWatch::new(rx);
                    continue;
                }
                current = *rx.borrow_and_update();
                changed = PhaseWatch::new(rx);
            }
            () = fired(&mut idle), if idle.is_some() => {
                let next = {
                    let l = inner.lock();
                    idle_recheck(l.core.last_client, idle_timeout, l.core.is_idle())
                };
                idle = next.map(crate::timer::sleep_until);
                if idle.is_none() {
                    inner.close(idle_timeout_error());
                }
            }
            () = fired(&mut expiry), if expiry.is_some() => {
                expiry = None;
                if let Some((_, err)) = deadline.take() {
                    inner.close(err);
                }
            }
            () = fired(&mut hang_up), if hang_up.is_some() => {
                // Unblocks a write to a client that stopped reading.
                let _ = inner.client.shutdown(Shutdown::Both);
                let _ = inner.upstream.shutdown(Shutdown::Both);
                let _ = (&mut *up_done).await;
                return;
            }
        }
    }
}

/// Client → upstream: frames, judges and records what the client sends
/// and writes it upstream; then, when the session ends, discards the rest.
fn client_side(inner: &Inner, mut cin: BytesMut) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut to_up = BytesMut::new();
    let mut lingering = false;
    loop {
        if !cin.is_empty() && !lingering {
            let mut l = inner.lock();
            if l.end.is_some() {
                lingering = true;
                continue;
            }
            if l.core.last_client.is_some() {
                l.core.last_client = Some(Instant::now());
            }
            match l.core.on_client_data(&mut cin, &mut to_up) {
                Ok(apart) => {
                    drop(l);
                    // What came before a long text goes on while it is
                    // classified.
                    if let Err(e) = inner.send_up(&mut to_up) {
                        upstream_failed(inner, Some(e));
                        lingering = true;
                        continue;
                    }
                    match apart {
                        Some(Blocked::Classify(work)) => {
                            let classified = block_on(work);
                            inner.lock().core.provide(classified);
                            continue;
                        }
                        Some(Blocked::AuditRoom) => {
                            // Reads nothing until the retry finds room;
                            // but a client that hangs up ends the session.
                            if hung_up(&inner.client, AUDIT_RETRY) {
                                lingering = client_ended(inner, End::ClientGone(None), &mut to_up);
                                if !lingering {
                                    return;
                                }
                            }
                            continue;
                        }
                        None => {}
                    }
                }
                Err(end) => {
                    drop(l);
                    lingering = client_ended(inner, end, &mut to_up);
                    if !lingering {
                        return;
                    }
                    continue;
                }
            }
        }
        match (&inner.client).read(&mut buf) {
            Ok(0) => {
                if !lingering && !inner.ending() {
                    client_ended(inner, End::ClientGone(None), &mut to_up);
                }
                return;
            }
            Ok(n) => {
                if !lingering {
                    cin.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if !lingering && !inner.ending() {
                    client_ended(inner, End::ClientGone(Some(e)), &mut to_up);
                }
                return;
            }
        }
    }
}

/// The client side ended the session (or broke the protocol); returns
/// whether the client thread should linger for the client to hang up.
fn client_ended(inner: &Inner, end: End, to_up: &mut BytesMut) -> bool {
    match end {
        End::ClientTerminated | End::ClientGone(_) => {
            let gone = matches!(end, End::ClientGone(_));
            if inner.set_end(end) {
                // Pass a clean Terminate on so the server logs no EOF.
                if gone {
                    to_up.extend_from_slice(TERMINATE);
                }
                let _ = inner.send_up(to_up);
                let _ = inner.upstream.shutdown(Shutdown::Both);
            }
            false
        }
        End::Closed(err) => {
            inner.close(err);
            true
        }
        End::UpstreamGone(e) => {
            upstream_failed(inner, e);
            true
        }
    }
}

fn upstream_failed(inner: &Inner, e: Option<io::Error>) {
    if inner.set_end(End::UpstreamGone(e)) {
        let _ = inner.upstream.shutdown(Shutdown::Both);
    }
}

/// Upstream → client: frames and records what the server sends and writes
/// it to the client; when the session ends, the client's last words.
fn upstream_side(inner: &Inner, mut uin: BytesMut) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut to_client = BytesMut::new();
    loop {
        if !uin.is_empty() {
            let mut l = inner.lock();
            if l.end.is_some() {
                break;
            }
            let result = l.core.on_upstream_data(&mut uin, &mut to_client);
            let last = match result {
                Err(end) => {
                    l.end = Some(end);
                    true
                }
                // Its last response goes out first, then the goodbye.
                Ok(()) if l.core.draining && l.core.is_idle() => {
                    l.end = Some(End::Closed(shutting_down()));
                    true
                }
                Ok(()) => false,
            };
            drop(l);
            if let Err(e) = (&inner.client).write_all(&to_client) {
                to_client.clear();
                if inner.set_end(End::ClientGone(Some(e))) {
                    inner.close_upstream();
                }
                break;
            }
            to_client.clear();
            if last {
                break;
            }
        }
        match (&inner.upstream).read(&mut buf) {
            Ok(0) => {
                inner.set_end(End::UpstreamGone(None));
                break;
            }
            Ok(n) => uin.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                inner.set_end(End::UpstreamGone(Some(e)));
                break;
            }
        }
    }
    let words = {
        let mut l = inner.lock();
        // In the audit log before the client hears of it.
        l.record_end();
        match &l.end {
            Some(end @ (End::UpstreamGone(_) | End::Closed(_))) => {
                Some((l.core.last_words(end), matches!(end, End::Closed(_))))
            }
            _ => None,
        }
    };
    if let Some((err, closed)) = words {
        say_last_words(inner, &mut to_client, err.as_ref(), closed);
    }
}

/// Tells the client why the session ends (after `to_client`, which it is
/// still owed) and stops writing to it; says goodbye upstream when pgward
/// `closed` the session, or just shuts the socket when the server is gone.
fn say_last_words(inner: &Inner, to_client: &mut BytesMut, err: Option<&PgError>, closed: bool) {
    if let Some(err) = err {
        err.encode(to_client);
        let _ = (&inner.client).write_all(to_client);
    }
    let _ = inner.client.shutdown(Shutdown::Write);
    if closed {
        inner.close_upstream();
    } else {
        let _ = inner.upstream.shutdown(Shutdown::Both);
    }
}

/// Waits up to `wait` for the client to hang up, without reading what it
/// sent; whether it did.
fn hung_up(client: &TcpStream, wait: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: client.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid, initialized pollfd for the duration of the call;
    // the socket outlives it.
    let n = unsafe { libc::poll(&mut fd, 1, ms) };
    n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// The session's socket as a blocking std socket.
fn blocking(stream: Stream) -> io::Result<TcpStream> {
    match stream {
        Stream::Plain(s) => {
            let s = s.into_std()?;
            s.set_nonblocking(false)?;
            Ok(s)
        }
        _ => Err(io::Error::other(
            "a TLS stream cannot be relayed on threads",
        )),
    }
}

fn thread_failed() -> PgError {
    PgError::fatal(sqlstate::INTERNAL_ERROR, "pgward's session thread failed")
}

fn no_threads(e: io::Error) -> PgError {
    PgError::fatal(
        sqlstate::INSUFFICIENT_RESOURCES,
        format!("pgward could not start the session's threads: {e}"),
    )
}

/// Waits on this thread for a future that needs no runtime (the
/// classification apart: a semaphore and a channel).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
