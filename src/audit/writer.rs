//! The audit writer: sessions hand events to a bounded lock-free queue; one
//! thread drains it, chains and appends the events to the
//! write-ahead segment at least every flush interval, and turns segments
//! into Parquet files when they reach their size or age.

use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::event::{text, Event, Hash, Kind, Str, GENESIS};
use super::files::{self, ParquetSink};
use super::lock::InstanceLock;
use super::record::{Record, StatementRecord};
use super::wal::{self, Segment};
use crate::config::{AuditConfig, OnFailure};
use crate::protocol::{sqlstate, PgError};

/// Events per record batch handed to the Parquet writer.
const CONVERT_BATCH: usize = 8192;
/// Encoded events kept in memory while the disk refuses them; past this
/// the writer stops draining the queue and drops are counted.
const MAX_PENDING_BYTES: usize = 256 << 20;
/// Turns with nothing to do (and everything synced) before the writer
/// parks until woken, instead of polling every tick.
const QUIET_TURNS: u32 = 20;
/// The longest an idle writer parks without being woken.
const IDLE_WAIT: Duration = Duration::from_secs(5);
/// How long sessions may wait for room while the writer takes nothing
/// from a non-empty queue before the log counts as broken
/// (`on_failure` then decides).
pub const STALL: Duration = Duration::from_secs(10);

/// One session's share of the queue: the events it has reserved (for
/// messages let through whose outcomes are still to come) or queued, and
/// the writer has not yet taken. A statement's record carries it (in its
/// `SessionContext`), so the writer gives the room back as it takes each.
#[derive(Debug, Default)]
pub struct Quota {
    inflight: AtomicUsize,
}

impl Quota {
    /// Events of this session reserved or queued, not yet taken.
    pub fn in_flight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}

/// The running audit log of this instance.
pub struct AuditLog {
    shared: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    queue: ArrayQueue<Record>,
    /// Events sessions may have reserved or queued at once
    /// (`audit.queue_capacity`); the queue holds an eighth more, for the
    /// events nobody reserves (session start and end, refused sign-ins).
    capacity: usize,
    /// Events reserved or queued by all sessions, not yet taken.
    inflight: AtomicUsize,
    /// Sessions with an audit trail open: each may hold
    /// `capacity / sessions` events, or more when it holds none.
    sessions: AtomicUsize,
    /// Events the writer has taken from the queue since start.
    taken: AtomicU64,
    instance: Arc<str>,
    on_failure: OnFailure,
    pub record_parameters: bool,
    /// False while the writer cannot write.
    open: AtomicBool,
    failure: Mutex<Option<String>>,
    /// A failure of the syncer thread (fsync, publishing a file).
    sync_failure: Mutex<Option<String>>,
    dropped: AtomicU64,
    /// Events dropped since start, for monitoring and benchmarks.
    dropped_total: AtomicU64,
    stop: AtomicBool,
    /// Rotation requests and completions (tests and shutdown wait on them).
    requested: AtomicU64,
    done: Mutex<u64>,
    done_cv: Condvar,
    writer: std::sync::OnceLock<std::thread::Thread>,
    /// The writer is parked until woken (nothing happened for a while):
    /// the next event wakes it. Otherwise it polls every tick, so a busy
    /// log costs no wake-up per event.
    sleeping: AtomicBool,
    /// Turns of the writer's loop, for tests of its idle behaviour.
    turns: AtomicU64,
}

impl AuditLog {
    /// Recovers what a previous run left, then starts the writer thread.
    pub fn start(cfg: &AuditConfig) -> Result<AuditLog, String> {
        let instance = cfg.instance_name();
        if !files::valid_instance(&instance) {
            return Err(format!(
                "audit.instance = {instance:?}: use letters, digits, '-' and '.' (at most 64)"
            ));
        }
        let dir = cfg.dir.clone();
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir)
            .map_err(|e| format!("audit.dir {}: cannot create: {e}", wal_dir.display()))?;
        let started = format!(
            "pid {}, started {}",
            std::process::id(),
            chrono::DateTime::from_timestamp_micros(now_us())
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        );
        let (lock, unclosed) = InstanceLock::acquire(&wal_dir, &instance, &started)?;
        let (next_seq, head) = recover(&dir, &wal_dir, &instance)?;
        let capacity = cfg.queue_capacity.max(16);
        let shared = Arc::new(Inner {
            queue: ArrayQueue::new(capacity + capacity / 8),
            capacity,
            inflight: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            instance: instance.as_str().into(),
            on_failure: cfg.on_failure,
            record_parameters: cfg.record_parameters,
            open: AtomicBool::new(true),
            failure: Mutex::new(None),
            sync_failure: Mutex::new(None),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            requested: AtomicU64::new(0),
            done: Mutex::new(0),
            done_cv: Condvar::new(),
            writer: std::sync::OnceLock::new(),
            sleeping: AtomicBool::new(false),
            turns: AtomicU64::new(0),
        });
        let mut writer = Writer {
            dir,
            wal_dir,
            instance,
            next_seq,
            head,
            segment: None,
            pending: Vec::new(),
            pending_count: 0,
            sink: None,
            batch: Vec::new(),
            sink_broken: false,
            last_sync: Instant::now(),
            unsynced: false,
            flush_interval: Duration::from_millis(cfg.flush_interval_ms.max(1)),
            rotate_bytes: cfg.rotate_bytes,
            rotate_age: Duration::from_secs(cfg.rotate_secs.max(1)),
            syncer: None,
            sent_ticket: 0,
            lock: Some(lock),
        };
        if let Some(previous) = unclosed {
            // The previous run's last events before its crash may be
            // missing: put that on record as the first event of this run.
            tracing::warn!("audit: the previous run ({previous}) did not close the audit log");
            let gap = gap_event(None, format!(
                "the previous run of this instance ({previous}) stopped without closing the audit log (a crash, kill -9 or power loss): up to one flush interval of its last events may be missing, and its open sessions have no session_end"
            ));
            let _ = shared.queue.push(Record::Event(Box::new(gap)));
        }
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pgward-audit".into())
            .spawn(move || {
                background_thread();
                writer.run(inner)
            })
            .map_err(|e| format!("starting the audit writer thread: {e}"))?;
        let _ = shared.writer.set(thread.thread().clone());
        Ok(AuditLog {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn instance(&self) -> &Arc<str> {
        &self.shared.instance
    }

    pub fn records_parameters(&self) -> bool {
        self.shared.record_parameters
    }

    /// Queues an event nobody reserved room for (session start and end, a
    /// refused sign-in); never blocks. The queue keeps an eighth of its
    /// capacity for these; if even that is full the event is dropped,
    /// counted, and the count is recorded as a `gap` event.
    pub fn record(&self, event: Event) {
        self.push(Record::Event(Box::new(event)));
    }

    /// Queues a statement's event, counting it against its session's
    /// share (without waiting: see `reserve` for that).
    pub fn record_statement(&self, statement: StatementRecord) {
        self.force(&statement.session.quota, 1);
        self.push(Record::Statement(statement));
    }

    /// Queues a statement's event for which `reserve` made room.
    pub fn record_reserved(&self, statement: StatementRecord) {
        self.push(Record::Statement(statement));
    }

    fn push(&self, record: Record) {
        // The writer names the instance: a count shared by every session
        // thread, touched per event, would bounce between their cores.
        if let Err(record) = self.shared.queue.push(record) {
            if let Record::Statement(s) = &record {
                self.release(&s.session.quota, 1);
            }
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.dropped_total.fetch_add(1, Ordering::Relaxed);
            self.wake();
            return;
        }
        // Pairs with the writer's fence between raising `sleeping` and
        // looking at the queue: it sees this event, or this sees the flag.
        fence(Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::Relaxed)
            && self.shared.sleeping.swap(false, Ordering::Relaxed)
        {
            self.wake();
        }
    }

    /// Reserves room for `events` events of the session holding `quota`,
    /// if its fair share and the queue have it now: a session may hold
    /// `queue_capacity / sessions` events (more only while it holds none,
    /// for a message of many statements), and all together at most
    /// `queue_capacity`. Two atomic additions when there is room.
    pub fn reserve(&self, quota: &Quota, events: usize) -> bool {
        let inner = &*self.shared;
        let own = quota.inflight.load(Ordering::Relaxed);
        if own != 0 {
            let share = inner.capacity / inner.sessions.load(Ordering::Relaxed).max(1);
            if own + events > share.max(1) {
                return false;
            }
        }
        let before = inner.inflight.fetch_add(events, Ordering::Relaxed);
        if before + events > inner.capacity {
            inner.inflight.fetch_sub(events, Ordering::Relaxed);
            return false;
        }
        quota.inflight.fetch_add(events, Ordering::Relaxed);
        true
    }

    /// Counts `events` against the session's share without waiting for
    /// room (an estimate that fell short, or the log is broken and
    /// `on_failure` says go on).
    pub fn force(&self, quota: &Quota, events: usize) {
        self.shared.inflight.fetch_add(events, Ordering::Relaxed);
        quota.inflight.fetch_add(events, Ordering::Relaxed);
    }

    /// Gives back room reserved and not used.
    pub fn release(&self, quota: &Quota, events: usize) {
        if events > 0 {
            quota.inflight.fetch_sub(events, Ordering::Relaxed);
            self.shared.inflight.fetch_sub(events, Ordering::Relaxed);
        }
    }

    /// A session with an audit trail opens (its share is counted).
    pub fn session_opened(&self) {
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// A session's audit trail closed.
    pub fn session_closed(&self) {
        self.shared.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Events sessions may reserve or queue at once (`audit.queue_capacity`).
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Whether the writer is taking events: a count that moves whenever it
    /// takes some, and whether anything waits in the queue.
    pub fn progress(&self) -> (u64, bool) {
        (
            self.shared.taken.load(Ordering::Relaxed),
            !self.shared.queue.is_empty(),
        )
    }

    /// Whether `on_failure = "deny"`.
    pub fn denies_on_failure(&self) -> bool {
        self.shared.on_failure == OnFailure::Deny
    }

    /// Whether an allowed message of `statements` statements may run with
    /// `on_failure = "deny"`: not while the log cannot be written, nor
    /// when it holds more statements than the queue has room for at all.
    /// (Room now is `reserve`'s: a session waits for it.)
    pub fn admit(&self, statements: usize) -> Result<(), PgError> {
        if self.shared.on_failure == OnFailure::Allow {
            return Ok(());
        }
        if !self.shared.open.load(Ordering::Relaxed) {
            let why = self
                .failure()
                .unwrap_or_else(|| "the audit writer is failing".into());
            return Err(PgError::error(
                sqlstate::IO_ERROR,
                format!("pgward: statement refused: the audit log cannot be written ({why})"),
            )
            .with_hint(
                "audit.on_failure = \"deny\": statements run again as soon as the audit log recovers",
            ));
        }
        let capacity = self.shared.capacity;
        if statements > capacity {
            return Err(PgError::error(
                sqlstate::IO_ERROR,
                format!(
                    "pgward: statement refused: the audit log has room for {capacity} events at most, and this message has {statements} statements"
                ),
            )
            .with_hint(format!(
                "send at most {capacity} statements in one message, or raise audit.queue_capacity"
            )));
        }
        Ok(())
    }

    /// The error for a message that waited `STALL` for room while the
    /// writer took nothing (`on_failure = "deny"`).
    pub fn stalled(&self) -> PgError {
        PgError::error(
            sqlstate::IO_ERROR,
            format!(
                "pgward: statement refused: the audit writer has taken no event for {} s",
                STALL.as_secs()
            ),
        )
        .with_hint(
            "audit.on_failure = \"deny\": statements run again as soon as the audit log recovers",
        )
    }

    /// Events the queue can take now.
    pub fn room(&self) -> usize {
        self.shared
            .capacity
            .saturating_sub(self.shared.inflight.load(Ordering::Relaxed))
    }

    /// Events dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped_total.load(Ordering::Relaxed)
    }

    /// The reason the log is failing now, if it is.
    pub fn failure(&self) -> Option<String> {
        let lock = |m: &Mutex<Option<String>>| m.lock().unwrap_or_else(|p| p.into_inner()).clone();
        lock(&self.shared.failure).or_else(|| lock(&self.shared.sync_failure))
    }

    fn wake(&self) {
        if let Some(t) = self.shared.writer.get() {
            t.unpark();
        }
    }

    /// Writes everything queued so far into Parquet files and waits for it
    /// (up to `timeout`). Returns whether it finished.
    pub fn rotate_now(&self, timeout: Duration) -> bool {
        let ticket = self.shared.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake();
        let done = self.shared.done.lock().unwrap_or_else(|p| p.into_inner());
        let (done, _) = self
            .shared
            .done_cv
            .wait_timeout_while(done, timeout, |d| *d < ticket)
            .unwrap_or_else(|p| p.into_inner());
        *done >= ticket
    }

    /// Stops the writer after it has written and rotated everything.
    pub fn close(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.wake();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    dir: PathBuf,
    wal_dir: PathBuf,
    instance: String,
    next_seq: u64,
    head: Hash,
    segment: Option<Segment>,
    /// Chained, encoded records not yet in the segment.
    pending: Vec<u8>,
    pending_count: u64,
    /// The Parquet file of the current segment, written as its events
    /// reach the segment (so rotation need not read the segment back).
    sink: Option<ParquetSink>,
    /// Events in the segment but not yet in `sink`.
    batch: Vec<Event>,
    /// The sink failed: rotation converts the segment instead.
    sink_broken: bool,
    last_sync: Instant,
    /// Written to the segment since its last sync was started.
    unsynced: bool,
    flush_interval: Duration,
    rotate_bytes: u64,
    rotate_age: Duration,
    syncer: Option<Syncer>,
    /// The last rotation request passed on to the syncer.
    sent_ticket: u64,
    /// Held while this run writes; marked closed after a clean stop.
    lock: Option<InstanceLock>,
}

/// Work that waits on the disk (fsync, publishing a file), done on its
/// own thread so that a slow disk never stops the writer from draining
/// the queue.
enum Job {
    /// Make the segment's writes so far durable.
    Sync(std::fs::File, PathBuf),
    /// Make a finished Parquet file durable, put it in place, then remove
    /// the segment it was written from.
    Publish(files::Finished, PathBuf),
    /// Rotation request `n` is complete once every job before it is.
    Done(u64),
}

/// Runs one job where it is; `sync_failure` records the outcome.
fn do_job(inner: &Inner, job: Job) {
    let report = |r: Result<(), String>| {
        let mut f = inner.sync_failure.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(()) => *f = None,
            Err(e) => {
                tracing::error!("audit: {e}");
                *f = Some(e);
            }
        }
    };
    match job {
        Job::Sync(file, path) => report(
            file.sync_data()
                .map_err(|e| format!("syncing {}: {e}", path.display())),
        ),
        Job::Publish(finished, segment) => {
            // Until the file is in place the segment stays: a crash now
            // recovers from it.
            report(finished.publish().and_then(|_| {
                std::fs::remove_file(&segment)
                    .map_err(|e| format!("removing {}: {e}", segment.display()))
            }))
        }
        Job::Done(n) => {
            let mut done = inner.done.lock().unwrap_or_else(|p| p.into_inner());
            *done = (*done).max(n);
            inner.done_cv.notify_all();
        }
    }
}

struct Syncer {
    tx: std::sync::mpsc::Sender<Job>,
    thread: JoinHandle<()>,
    /// A Sync job is waiting or running: do not queue another.
    busy: Arc<AtomicBool>,
}

/// Marks the calling thread as background work (SCHED_BATCH): when it
/// wakes it does not preempt a session thread mid-message, yet it keeps its
/// fair share of the CPU, so the writer cannot starve and fill the queue.
fn background_thread() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; the parameter is a valid,
        // initialized struct that outlives the call.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            tracing::debug!(
                "audit: SCHED_BATCH not set: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

impl Syncer {
    fn start(inner: Arc<Inner>) -> std::io::Result<Syncer> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let busy = Arc::new(AtomicBool::new(false));
        let flag = busy.clone();
        let thread = std::thread::Builder::new()
            .name("pgward-audit-sync".into())
            .spawn(move || {
                background_thread();
                for job in rx {
                    let was_sync = matches!(job, Job::Sync(..));
                    do_job(&inner, job);
                    if was_sync {
                        flag.store(false, Ordering::Release);
                    }
                }
            })?;
        Ok(Syncer { tx, thread, busy })
    }
}

impl Writer {
    fn run(&mut self, inner: Arc<Inner>) {
        match Syncer::start(inner.clone()) {
            Ok(s) => self.syncer = Some(s),
            Err(e) => tracing::error!("audit: cannot start the sync thread ({e}); syncing inline"),
        }
        let written = self.run_loop(&inner);
        if let Some(s) = self.syncer.take() {
            drop(s.tx);
            let _ = s.thread.join();
        }
        let published = inner
            .sync_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none();
        // Everything is in Parquet files: the next start has nothing to
        // report. Otherwise the lock stays marked and it will.
        if let (true, true, Some(lock)) = (written, published, self.lock.take()) {
            if let Err(e) = lock.closed() {
                tracing::warn!("audit: {e}");
            }
        }
    }

    /// Runs until stopped; returns whether every event was written.
    fn run_loop(&mut self, inner: &Inner) -> bool {
        let tick =
            (self.flush_interval / 4).clamp(Duration::from_millis(2), Duration::from_millis(10));
        let mut was_failing = false;
        let mut quiet_turns = 0;
        loop {
            inner.turns.fetch_add(1, Ordering::Relaxed);
            let stopping = inner.stop.load(Ordering::Acquire);
            let requested = inner.requested.load(Ordering::Acquire);
            let moved = self.drain(inner);
            let due = self.segment.as_ref().is_some_and(|s| {
                s.len >= self.rotate_bytes || s.opened.elapsed() >= self.rotate_age
            });
            let result = self.write_pending().and_then(|()| {
                if due || stopping || requested > self.sent_ticket {
                    self.rotate(inner)
                } else {
                    Ok(())
                }
            });
            match result {
                Ok(()) => {
                    if was_failing {
                        tracing::info!("audit log recovered: writing again");
                        was_failing = false;
                    }
                    *inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    // Caught up: the queue has room again.
                    inner.open.store(true, Ordering::Relaxed);
                    if requested > self.sent_ticket {
                        self.sent_ticket = requested;
                        self.after_disk(inner, Job::Done(requested));
                    }
                }
                Err(e) => {
                    if !was_failing {
                        tracing::error!("audit log cannot be written: {e}");
                        was_failing = true;
                    }
                    *inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    inner.open.store(false, Ordering::Relaxed);
                }
            }
            if stopping {
                if was_failing {
                    tracing::error!(
                        "audit writer stopping while failing: {} events not written",
                        self.pending_count + inner.queue.len() as u64
                    );
                }
                if inner.queue.is_empty() || was_failing {
                    return !was_failing;
                }
                continue;
            }
            let idle = moved == 0 && self.pending.is_empty() && !self.unsynced && !was_failing;
            quiet_turns = if idle { quiet_turns + 1 } else { 0 };
            if quiet_turns < QUIET_TURNS {
                std::thread::park_timeout(tick);
                continue;
            }
            // Idle: park until an event, a request or the segment's age.
            inner.sleeping.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if inner.queue.is_empty() {
                std::thread::park_timeout(self.idle_wait());
            }
            inner.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// How long an idle writer may park: until the open segment is due for
    /// rotation by age, and at most `IDLE_WAIT`.
    fn idle_wait(&self) -> Duration {
        match &self.segment {
            Some(s) if s.events > 0 => self
                .rotate_age
                .saturating_sub(s.opened.elapsed())
                .min(IDLE_WAIT),
            _ => IDLE_WAIT,
        }
    }

    /// Moves queued events into the chain, up to the memory bound; returns
    /// how many.
    fn drain(&mut self, inner: &Inner) -> usize {
        let mut moved = 0;
        let mut released = 0;
        while self.pending.len() < MAX_PENDING_BYTES {
            let Some(record) = inner.queue.pop() else {
                break;
            };
            if let Record::Statement(s) = &record {
                // Its session's room is free again.
                s.session.quota.inflight.fetch_sub(1, Ordering::Relaxed);
                released += 1;
            }
            self.chain(record, &inner.instance);
            moved += 1;
        }
        if moved > 0 {
            inner.inflight.fetch_sub(released, Ordering::Relaxed);
            inner.taken.fetch_add(moved as u64, Ordering::Relaxed);
        }
        let lost = inner.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let gap = gap_event(
                Some(lost as i64),
                format!("{lost} events were dropped: the audit queue was full"),
            );
            tracing::warn!("audit: {lost} events dropped (queue full)");
            self.chain(Record::Event(Box::new(gap)), &inner.instance);
            moved += 1;
        }
        moved
    }

    fn chain(&mut self, record: Record, instance: &Arc<str>) {
        // Built and sealed where it stays: an event is too big to move twice.
        match record {
            Record::Event(e) => self.batch.push(*e),
            Record::Statement(s) => {
                self.batch.push(Event::new(Kind::Statement, 0));
                if let Some(e) = self.batch.last_mut() {
                    s.fill(e);
                }
            }
        }
        let Some(event) = self.batch.last_mut() else {
            return;
        };
        event.instance = Some(Str::Shared(instance.clone()));
        self.head = wal::append_record(&mut self.pending, event, self.next_seq, self.head);
        self.next_seq = self.next_seq.saturating_add(1);
        self.pending_count += 1;
    }

    /// Hands the events already in the segment to the Parquet file. A
    /// failure here loses nothing: the segment is converted instead.
    fn feed_sink(&mut self, all: bool) {
        let due = self.batch.len() >= CONVERT_BATCH || (all && !self.batch.is_empty());
        if !due {
            return;
        }
        if !self.sink_broken {
            if self.sink.is_none() {
                match ParquetSink::create(&self.dir, &self.instance) {
                    Ok(s) => self.sink = Some(s),
                    Err(e) => {
                        tracing::warn!("audit: {e}; the segment will be converted at rotation");
                        self.sink_broken = true;
                    }
                }
            }
            if let Some(sink) = self.sink.as_mut() {
                if let Err(e) = sink.push(&self.batch) {
                    tracing::warn!("audit: {e}; the segment will be converted at rotation");
                    self.sink = None;
                    self.sink_broken = true;
                }
            }
        }
        self.batch.clear();
    }

    /// Appends pending records to the segment; syncs once per interval.
    fn write_pending(&mut self) -> Result<(), String> {
        if !self.pending.is_empty() {
            if self.segment.is_none() {
                let first = self.next_seq - self.pending_count;
                let seg = Segment::create(&self.wal_dir, &self.instance, first).map_err(|e| {
                    format!("cannot create a segment in {}: {e}", self.wal_dir.display())
                })?;
                self.segment = Some(seg);
            }
            let Some(seg) = self.segment.as_mut() else {
                return Ok(());
            };
            if let Err(e) = seg.append(&self.pending, self.pending_count) {
                let why = format!("writing {}: {e}", seg.path.display());
                if seg.len == 0 {
                    // Nothing of it is worth keeping open: the next try
                    // opens the file afresh (it may have been replaced).
                    self.segment = None;
                }
                return Err(why);
            }
            self.pending.clear();
            self.pending_count = 0;
            self.unsynced = true;
            self.feed_sink(false);
        }
        if self.last_sync.elapsed() >= self.flush_interval {
            if let Some(seg) = &self.segment {
                match &self.syncer {
                    Some(s) => {
                        if !s.busy.swap(true, Ordering::AcqRel) {
                            let file = seg.handle().map_err(|e| {
                                s.busy.store(false, Ordering::Release);
                                format!("syncing {}: {e}", seg.path.display())
                            })?;
                            let _ = s.tx.send(Job::Sync(file, seg.path.clone()));
                            self.unsynced = false;
                        }
                    }
                    None => {
                        seg.sync()
                            .map_err(|e| format!("syncing {}: {e}", seg.path.display()))?;
                        self.unsynced = false;
                    }
                }
            }
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Runs a job on the syncer thread, or here when there is none.
    fn after_disk(&self, inner: &Inner, job: Job) {
        match &self.syncer {
            // The syncer stops only when this sender is dropped.
            Some(s) => {
                let _ = s.tx.send(job);
            }
            None => do_job(inner, job),
        }
    }

    /// Turns the current segment into a Parquet file. The file is put in
    /// place (and the segment removed) by the syncer.
    fn rotate(&mut self, inner: &Inner) -> Result<(), String> {
        let Some(seg) = &self.segment else {
            return Ok(());
        };
        if seg.events == 0 {
            return Ok(());
        }
        let path = seg.path.clone();
        self.feed_sink(true);
        let finished = match self.sink.take() {
            Some(sink) if !self.sink_broken => sink.finish_deferred(),
            _ => Err("no complete Parquet file".into()),
        };
        match finished {
            Ok(Some(f)) => self.after_disk(inner, Job::Publish(f, path)),
            other => {
                if let Err(e) = other {
                    if !self.sink_broken {
                        tracing::warn!("audit: {e}; converting the segment instead");
                    }
                }
                if let Some(seg) = &self.segment {
                    seg.sync()
                        .map_err(|e| format!("syncing {}: {e}", seg.path.display()))?;
                }
                convert(&path, &self.dir, &self.instance, 0)?;
                std::fs::remove_file(&path)
                    .map_err(|e| format!("removing {} after conversion: {e}", path.display()))?;
            }
        }
        self.sink_broken = false;
        self.segment = None;
        Ok(())
    }
}

/// Converts a segment's events numbered above `after` into one Parquet
/// file. Returns how many events it held and whether its tail was torn.
fn convert(segment: &Path, dir: &Path, instance: &str, after: u64) -> Result<(u64, bool), String> {
    let mut reader =
        wal::Reader::open(segment).map_err(|e| format!("opening {}: {e}", segment.display()))?;
    let mut sink = ParquetSink::create(dir, instance)?;
    let mut batch = Vec::with_capacity(CONVERT_BATCH);
    let mut count = 0;
    for event in reader.by_ref() {
        if event.seq <= after {
            continue;
        }
        batch.push(event);
        if batch.len() == CONVERT_BATCH {
            sink.push(&batch)?;
            count += batch.len() as u64;
            batch.clear();
        }
    }
    sink.push(&batch)?;
    count += batch.len() as u64;
    sink.finish()?;
    Ok((count, reader.torn_tail))
}

/// Brings the directory to a consistent state after any previous run:
/// leftover temporary files go, segments become Parquet files. Returns the
/// next sequence number and the chain head to continue from.
fn recover(dir: &Path, wal_dir: &Path, instance: &str) -> Result<(u64, Hash), String> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            // Only this instance's: others may be writing theirs right now.
            let prefix = format!(".{instance}.");
            if name
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(files::TMP_SUFFIX))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let (mut last_seq, mut head) = chain_end(dir, instance);
    let segments = wal::segments(wal_dir, instance)
        .map_err(|e| format!("audit.dir {}: cannot list: {e}", wal_dir.display()))?;
    for seg in segments {
        let (count, torn) = convert(&seg, dir, instance, last_seq)?;
        if torn {
            tracing::warn!(
                "audit: {} ended in an incomplete record (a crash while writing); kept the {count} whole events before it",
                seg.display()
            );
        }
        if count > 0 {
            tracing::info!("audit: recovered {count} events from {}", seg.display());
        }
        std::fs::remove_file(&seg)
            .map_err(|e| format!("removing {} after recovery: {e}", seg.display()))?;
        (last_seq, head) = chain_end(dir, instance);
    }
    Ok((last_seq.saturating_add(1), head))
}

/// Where this instance's chain ends in the files already in place: the
/// highest sequence number among its newest files, and that event's hash.
fn chain_end(dir: &Path, instance: &str) -> (u64, Hash) {
    let files = files::list(dir).unwrap_or_default();
    let mut best = (0, GENESIS);
    let mine = files
        .iter()
        .rev()
        .filter(|p| files::instance_of(p) == Some(instance))
        .take(16);
    for path in mine {
        match files::read_meta(path) {
            Ok(m) if m.last_seq > best.0 => best = (m.last_seq, m.chain_head),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("audit: ignoring an unreadable file when resuming the chain: {e}")
            }
        }
    }
    best
}

/// A `gap` event: `lost` events (None: an unknown number) may be missing.
fn gap_event(lost: Option<i64>, detail: String) -> Event {
    let mut gap = Event::new(Kind::Gap, now_us());
    gap.rows = lost;
    gap.detail = text(detail);
    gap
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::sample;

    fn config(dir: &Path) -> AuditConfig {
        AuditConfig {
            dir: dir.to_owned(),
            instance: Some("unit".into()),
            flush_interval_ms: 20,
            ..AuditConfig::default()
        }
    }

    #[test]
    fn files_rotate_by_size_and_the_chain_runs_across_them_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            rotate_bytes: 1,
            ..config(dir.path())
        };
        let log = AuditLog::start(&cfg).unwrap();
        // One writer per instance name: a second is refused, not forked.
        let second = AuditLog::start(&cfg).err().unwrap_or_default();
        assert!(second.contains("already writing"), "{second:?}");
        for round in 0..3 {
            for i in 0..10 {
                log.record(sample(round * 10 + i));
            }
            // Within a few ticks the segment is written, found over its
            // size and rotated: a published file per round. Waited for, not
            // slept on: a loaded machine can stretch the ticks.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while (files::list(dir.path()).unwrap().len() as u64) < round + 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round} was not rotated into a file"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        log.close();
        let files = files::list(dir.path()).unwrap();
        assert!(files.len() >= 3, "{files:?}");
        // A second run continues the same chain.
        let log = AuditLog::start(&cfg).unwrap();
        log.record(sample(99));
        log.close();
        let report = crate::audit::verify::verify(dir.path()).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.events, 31);
        assert_eq!(report.chains["unit"].1, 31);
        // Both runs closed their log: no gap is on record.
        let events = files::read_all(dir.path()).unwrap();
        assert!(events.iter().all(|e| e.kind != Kind::Gap));
    }

    /// An idle writer parks until the next event instead of polling every
    /// tick (200 turns a second at this flush interval), and the next
    /// event wakes it at once.
    #[test]
    fn an_idle_writer_sleeps_until_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(&config(dir.path())).unwrap();
        let turns = || log.shared.turns.load(Ordering::Relaxed);
        log.record(sample(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !log.shared.sleeping.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never went idle"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = turns();
        std::thread::sleep(Duration::from_millis(1000));
        let idle_turns = turns() - before;
        assert!(idle_turns <= 2, "{idle_turns} turns in an idle second");
        // The event clears the flag and wakes the writer, which drains it.
        assert!(log.shared.sleeping.load(Ordering::SeqCst));
        log.record(sample(2));
        assert!(!log.shared.sleeping.load(Ordering::SeqCst));
        let woken = std::time::Instant::now();
        while !log.shared.queue.is_empty() {
            assert!(
                woken.elapsed() < Duration::from_secs(3),
                "the event was not drained"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        log.close();
        let report = crate::audit::verify::verify(dir.path()).unwrap();
        assert_eq!(report.events, 2, "{report}");
    }

    #[test]
    fn files_rotate_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            rotate_secs: 1,
            ..config(dir.path())
        };
        let log = AuditLog::start(&cfg).unwrap();
        log.record(sample(1));
        let mut rotated = false;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            if !files::list(dir.path()).unwrap().is_empty() {
                rotated = true;
                break;
            }
        }
        assert!(rotated, "no file after the rotation age");
        log.close();
    }

    /// Each session may hold its share of the queue (more only while it
    /// holds nothing), all together at most the capacity; the writer
    /// gives the room back as it takes the events.
    #[test]
    fn sessions_reserve_their_share_and_the_writer_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            queue_capacity: 1024,
            ..config(dir.path())
        };
        let log = AuditLog::start(&cfg).unwrap();
        let (a, b, c) = (Quota::default(), Quota::default(), Quota::default());
        for _ in 0..4 {
            log.session_opened();
        }
        // Share: 1024 / 4 = 256.
        assert!(log.reserve(&a, 200));
        assert!(log.reserve(&a, 56));
        assert!(!log.reserve(&a, 1), "over its share");
        // A session holding nothing may take a big message at once.
        assert!(log.reserve(&b, 700));
        assert!(!log.reserve(&b, 1));
        // The rest of the queue: 1024 - 956 = 68.
        assert!(!log.reserve(&c, 69), "over the capacity");
        assert!(log.reserve(&c, 68));
        assert_eq!(log.room(), 0);
        log.release(&b, 700);
        assert_eq!(b.in_flight(), 0);
        assert_eq!(log.room(), 700);
        // Events recorded in a's room: taken by the writer, room back.
        let context = Arc::new(crate::audit::record::SessionContext {
            session_id: text("0a"),
            identity: text("alice"),
            role: None,
            database: None,
            allow_rule: None,
            quota: Quota::default(),
        });
        assert!(log.reserve(&context.quota, 3));
        for _ in 0..3 {
            log.record_reserved(crate::audit::record::StatementRecord {
                time_us: 1,
                session: context.clone(),
                statement: Str::Static("SELECT 1"),
                described: None,
                outcome: crate::audit::record::Outcome::Ok,
                detail: None,
                rows: None,
                duration_us: None,
                failure: None,
                parameters: None,
                approval: None,
            });
        }
        assert!(log.rotate_now(Duration::from_secs(20)));
        assert_eq!(context.quota.in_flight(), 0);
        assert_eq!(log.room(), 700);
        log.close();
        assert_eq!(files::read_all(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn a_full_queue_drops_and_records_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            queue_capacity: 16,
            ..config(dir.path())
        };
        let log = AuditLog::start(&cfg).unwrap();
        for i in 0..10_000 {
            log.record(sample(i));
        }
        let dropped = log.dropped();
        assert!(dropped > 0);
        log.close();
        let events = files::read_all(dir.path()).unwrap();
        let lost: i64 = events
            .iter()
            .filter(|e| e.kind == Kind::Gap)
            .map(|e| e.rows.unwrap())
            .sum();
        assert_eq!(lost as u64, dropped);
        assert_eq!(
            events.len() as u64 + dropped,
            10_000 + events.iter().filter(|e| e.kind == Kind::Gap).count() as u64
        );
    }
}
