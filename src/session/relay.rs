//! The steady-state relay of one session: client and upstream bytes are
//! framed, recorded in the protocol state and passed on untouched, in one
//! task, with back-pressure in both directions.

use std::borrow::Cow;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;

use super::guard::{self, Classified, Guard};
use super::recorder::{Admission, Recorder};
use super::registry::{Command, SessionEntry};
use super::rows;
use super::state::{self, Answer, ProtocolState};
use crate::approval::{Ask, Queue, Ticket, Verdict};
use crate::net::Stream;
use crate::protocol::frame::{self, printable, FrameError, POSTGRES_MAX_MESSAGE};
use crate::protocol::messages::shift_error_position;
use crate::protocol::tag::{backend as btag, frontend as ftag, status};
use crate::protocol::{backend, frontend, sqlstate, PgError};
use crate::server::Phase;

/// Stop reading a side while this much is waiting to be written to the other.
const HIGH_WATER: usize = 256 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// How long the client gets to read pgward's last words (and the server
/// to take its goodbye) before the socket is shut regardless.
const LAST_WORDS: Duration = Duration::from_secs(5);
/// How long the client gets to hang up after its last words.
const LINGER: Duration = Duration::from_secs(2);
/// Terminate, passed upstream so the server logs a clean end, not an EOF.
const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// How a session ended.
#[derive(Debug)]
pub enum End {
    ClientTerminated,
    ClientGone(Option<io::Error>),
    UpstreamGone(Option<io::Error>),
    /// pgward ended it with this error (sent to the client).
    Closed(PgError),
}

/// A long text's classification, running apart from the session.
pub type Apart = Pin<Box<dyn std::future::Future<Output = Classified> + Send>>;

/// A wait for the database's catalog to be reloaded after a change.
pub type Reload = Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Why the message at the head of the client's input waits.
pub enum Blocked {
    /// Its text is being classified apart.
    Classify(Apart),
    /// A change to the catalog committed (in any session of the database)
    /// and the catalog is being reloaded: judged against the new one.
    Catalog(Reload),
    /// The audit queue has no room for its events (this session's share
    /// is taken): the client is not read until there is.
    AuditRoom,
    /// It needs approval: it waits, unsent, until an approver decides (or
    /// the client cancels or goes).
    Hold(Box<guard::Hold>),
}

/// How a held message was decided, for `Core::release`.
#[derive(Debug, Clone)]
pub enum Release {
    /// Approved under request `id`: it is judged again with approval
    /// given for these texts (what the approver was shown), and runs
    /// unless something else refuses it or it would now run another
    /// statement (then it asks again).
    Approved {
        id: u64,
        texts: Vec<Arc<str>>,
        /// Who approved it, for the statement's audit event.
        by: Vec<String>,
    },
    /// Refused with this error (denied, expired, withdrawn).
    Refused(PgError),
}

impl Drop for Core {
    /// A session whose task was dropped without ending still ends in the
    /// audit log, with the statements it was waiting on.
    fn drop(&mut self) {
        if let Some(mut rec) = self.recorder.take() {
            rec.catch_up(&mut self.state.retired);
            let waiting = self.state.take_waiting();
            rec.end(
                "aborted: the session's task stopped without closing it",
                waiting,
            );
        }
    }
}

/// How often a session waiting for room in the audit queue looks again.
const AUDIT_RETRY: Duration = Duration::from_millis(5);

/// The protocol work of both directions of a session: the protocol state,
/// the guard and the audit trail. It reads no socket: `Relay` hands it the
/// bytes read and writes what it queues (and the property tests drive it
/// with bytes alone).
pub struct Core {
    max_message: usize,
    /// The server's last message was a FATAL/PANIC error.
    upstream_said_fatal: bool,
    pub state: ProtocolState,
    /// None only in the benchmark's no-policy baseline.
    guard: Option<Guard>,
    /// The session's audit trail, when the audit log is on.
    recorder: Option<Recorder>,
    /// A message waits for a classification running apart, or for the
    /// catalog's reload.
    apart: bool,
    /// When the client last sent something or was last answered with
    /// ReadyForQuery (a session is idle from then, as PostgreSQL's
    /// idle_session_timeout counts); kept only with an idle timeout.
    last_client: Option<Instant>,
    /// pgward is shutting down: end the session when it is next idle.
    draining: bool,
    /// The decision on the message at the head of the client's input,
    /// which was held for approval.
    release: Option<Release>,
    /// The session's entry in the registry (its counters).
    entry: Option<Arc<SessionEntry>>,
}

pub struct Relay {
    client: Stream,
    upstream: Stream,
    cin: BytesMut,
    uin: BytesMut,
    to_up: BytesMut,
    to_client: BytesMut,
    dirty_up: bool,
    dirty_client: bool,
    core: Core,
    /// When pgward ends the session, and with which error (a token's expiry).
    deadline: Option<(Instant, PgError)>,
    /// The classification of a long text at the head of `cin`, running
    /// apart; the client is not read meanwhile.
    classifying: Option<Apart>,
    /// The head of `cin` waits for the catalog's reload; the client is not
    /// read meanwhile.
    reloading: Option<Reload>,
    /// The message at the head of `cin` waits for room in the audit
    /// queue; the timer of its next try. The client is read meanwhile only
    /// while `cin` is small (to see it hang up).
    audit_wait: Option<crate::timer::Sleep>,
    /// Wakers that tell which socket woke the task (see `SocketWakers`).
    wakers: Option<SocketWakers>,
    /// The session's place in the registry and the approval queue.
    link: Option<Link>,
    /// The request the message at the head of `cin` waits on; the client
    /// is read meanwhile only while `cin` is small (to see it hang up).
    holding: Option<Ticket>,
    /// What the held message's approval covers (the hold's texts).
    held_texts: Vec<Arc<str>>,
}

/// What a session needs to hold statements for approval and to be
/// reached from elsewhere in the process (the admin console, a
/// CancelRequest for a held statement).
pub struct Link {
    pub entry: Arc<SessionEntry>,
    pub queue: Arc<Queue>,
    /// How long a held statement waits for a decision.
    pub timeout: Duration,
    /// How an approver decides, shown to the held client; `{id}` is
    /// replaced by the request's id.
    pub how_to_approve: String,
    pub webhook: Option<Arc<crate::webhook::Webhook>>,
}

impl Core {
    pub fn new(
        mut guard: Option<Guard>,
        recorder: Option<Recorder>,
        status: u8,
        max_message: usize,
        max_pending: usize,
    ) -> Core {
        if let Some(g) = &mut guard {
            g.keep_judged = recorder.is_some() || g.plans();
        }
        let state = ProtocolState::with_status(status).with_limit(max_pending);
        Core {
            max_message,
            upstream_said_fatal: false,
            state,
            guard,
            recorder,
            apart: false,
            last_client: None,
            draining: false,
            release: None,
            entry: None,
        }
    }

    /// Counts this session's statements in its registry entry.
    pub fn set_entry(&mut self, entry: Arc<SessionEntry>) {
        self.entry = Some(entry);
    }

    /// Decides the message held at the head of the client's input; the
    /// next `on_client_data` acts on it.
    pub fn release(&mut self, release: Release) {
        self.release = Some(release);
    }

    /// Nothing in flight, and no message waiting for its classification.
    fn is_idle(&self) -> bool {
        self.state.is_idle() && !self.apart
    }

    /// The catalog's reload the head message waited for is done (or
    /// failed: then that message is refused).
    fn catalog_ready(&mut self, result: Result<(), String>) {
        self.apart = false;
        if let Some(g) = &mut self.guard {
            g.catalog_ready(result);
        }
    }

    /// Hands over a classification that ran apart (see `on_client_data`).
    pub(crate) fn provide(&mut self, c: Classified) {
        self.apart = false;
        if let Some(g) = &mut self.guard {
            g.provide(c);
        }
    }

    /// Records how the session ended in its audit trail.
    /// Puts how held request `id` ended on the audit record.
    fn record_decision(&mut self, id: u64, verdict: &Verdict, why: Option<&str>) {
        let Some(rec) = &mut self.recorder else {
            return;
        };
        let (by, detail) = match verdict {
            Verdict::Approved { by } => (Some(by.join(", ")), why.map(str::to_owned)),
            Verdict::Denied { by, reason } => (Some(by.clone()), Some(reason.clone())),
            Verdict::Expired => (
                None,
                Some("not decided within approval.timeout_secs".to_owned()),
            ),
            Verdict::Withdrawn => (None, why.map(str::to_owned)),
        };
        rec.approval_decided(id, verdict.as_str(), by, detail);
    }

    fn record_end(&mut self, end: &End) {
        if let Some(mut rec) = self.recorder.take() {
            rec.catch_up(&mut self.state.retired);
            let waiting = self.state.take_waiting();
            rec.end(
                &match end {
                    End::ClientTerminated => "client terminated the session".to_owned(),
                    End::ClientGone(_) => "client went away".to_owned(),
                    End::UpstreamGone(_) => "upstream server closed the connection".to_owned(),
                    End::Closed(err) => format!("closed by pgward: {}", err.message),
                },
                waiting,
            );
        }
    }

    /// The error the client is told last, when pgward or the server ends
    /// the session.
    fn last_words(&self, end: &End) -> Option<PgError> {
        match end {
            End::Closed(err) => Some(err.clone()),
            End::UpstreamGone(_) if !self.upstream_said_fatal => Some(
                PgError::fatal(
                    sqlstate::CONNECTION_FAILURE,
                    "server closed the connection unexpectedly",
                )
                .with_detail("pgward lost its connection to the upstream PostgreSQL server"),
            ),
            _ => None,
        }
    }
}

impl Relay {
    /// `client_pending` and `upstream_pending` are bytes each side sent
    /// beyond the startup phase (a pipelined first query, say).
    pub fn new(
        core: Core,
        client: Stream,
        client_pending: BytesMut,
        upstream: Stream,
        upstream_pending: BytesMut,
    ) -> Relay {
        Relay {
            client,
            upstream,
            cin: client_pending,
            uin: upstream_pending,
            to_up: BytesMut::new(),
            to_client: BytesMut::new(),
            dirty_up: false,
            dirty_client: false,
            core,
            deadline: None,
            classifying: None,
            reloading: None,
            audit_wait: None,
            wakers: None,
            link: None,
            holding: None,
            held_texts: Vec::new(),
        }
    }

    /// Lists the session for the console and lets it hold statements.
    pub fn with_link(mut self, link: Link) -> Relay {
        self.core.set_entry(link.entry.clone());
        self.link = Some(link);
        self
    }

    /// Ends the session at `at` with `err`, whatever it is doing then.
    pub fn end_at(mut self, at: Instant, err: PgError) -> Relay {
        self.deadline = Some((at, err));
        self
    }

    /// Runs until either side ends or pgward closes the session.
    pub async fn run(
        mut self,
        idle_timeout: Option<Duration>,
        mut phase: watch::Receiver<Phase>,
    ) -> End {
        // Timers only when configured; they run on the timer thread.
        let mut idle = idle_timeout.map(crate::timer::sleep);
        self.core.last_client = idle_timeout.map(|_| Instant::now());
        let mut deadline = self.deadline.take();
        let mut expiry = deadline
            .as_ref()
            .map(|(at, _)| crate::timer::sleep_until(*at));
        let pending = if self.uin.is_empty() {
            Ok(())
        } else {
            self.core
                .on_upstream_data(&mut self.uin, &mut self.to_client)
        };
        let pending = pending.and_then(|()| {
            if self.cin.is_empty() {
                Ok(())
            } else {
                self.on_client_data()
            }
        });
        if let Err(end) = pending {
            return self.finish(end).await;
        }
        // The phase is read once and then only when it changes: reading a
        // watch channel or arming its notification on every message would
        // make all sessions touch one shared lock per message.
        let mut current = *phase.borrow_and_update();
        let mut changed = PhaseWatch::new(phase);
        let end = loop {
            self.core.draining = current == Phase::Draining;
            if let Some(t) = self.holding.as_ref().filter(|_| self.core.draining) {
                let id = t.id();
                self.core
                    .record_decision(id, &Verdict::Withdrawn, Some("pgward is shutting down"));
                // A held statement could wait for minutes: it is withdrawn,
                // and the session ends at its ReadyForQuery.
                let err = PgError::error(
                    sqlstate::ADMIN_SHUTDOWN,
                    "pgward is shutting down: the statement held for approval was withdrawn",
                );
                if let Err(end) = self.unhold(Release::Refused(err)) {
                    break end;
                }
            }
            if current == Phase::Force || (self.core.draining && self.is_idle()) {
                break End::Closed(shutting_down());
            }
            // Biased: no random order to draw per wake-up; the control
            // branches go first so a busy stream cannot starve them.
            tokio::select! {
                biased;
                (result, mut rx) = poll_fn(|cx| changed.poll(cx)) => {
                    if result.is_err() {
                        // The server is gone entirely: treat as forced.
                        break End::Closed(PgError::fatal(
                            sqlstate::ADMIN_SHUTDOWN,
                            "terminating connection due to administrator command",
                        ));
                    }
                    current = *rx.borrow_and_update();
                    changed = PhaseWatch::new(rx);
                }
                () = fired(&mut idle), if idle.is_some() => {
                    match idle_recheck(self.core.last_client, idle_timeout, self.is_idle()) {
                        None => break End::Closed(idle_timeout_error()),
                        Some(at) => idle = Some(crate::timer::sleep_until(at)),
                    }
                }
                () = fired(&mut expiry), if expiry.is_some() => {
                    expiry = None;
                    if let Some((_, err)) = deadline.take() {
                        break End::Closed(err);
                    }
                }
                end = poll_fn(|cx| self.poll_io(cx)) => break end,
            }
        };
        self.finish(end).await
    }

    /// Delivers what is owed, tells the client why the session ends, and
    /// says goodbye upstream.
    async fn finish(mut self, end: End) -> End {
        if let Some(t) = self.holding.take() {
            self.core
                .record_decision(t.id(), &Verdict::Withdrawn, Some("the session ended"));
        }
        self.core.record_end(&end);
        match &end {
            End::ClientTerminated | End::ClientGone(_) => {
                // Pass a clean Terminate on so the server logs no EOF.
                if matches!(end, End::ClientGone(_)) {
                    self.to_up.extend_from_slice(TERMINATE);
                }
                let _ = crate::timer::timeout(LAST_WORDS, async {
                    self.upstream.write_all(&self.to_up).await?;
                    self.upstream.shutdown().await
                })
                .await;
            }
            End::UpstreamGone(_) | End::Closed(_) => {
                if let Some(err) = self.core.last_words(&end) {
                    err.encode(&mut self.to_client);
                }
                let _ = crate::timer::timeout(LAST_WORDS, async {
                    self.client.write_all(&self.to_client).await?;
                    self.client.shutdown().await
                })
                .await;
                linger(&mut self.client).await;
                if matches!(end, End::Closed(_)) {
                    let _ = crate::timer::timeout(LAST_WORDS, async {
                        self.upstream.write_all(TERMINATE).await?;
                        self.upstream.shutdown().await
                    })
                    .await;
                }
            }
        }
        end
    }

    /// Nothing in flight, and no message waiting for its classification
    /// or an approval.
    fn is_idle(&self) -> bool {
        self.core.is_idle() && self.holding.is_none()
    }

    /// Frames and judges what the client sent; a long text waits for its
    /// classification, made apart, and a statement that needs approval for
    /// an approver.
    fn on_client_data(&mut self) -> Result<(), End> {
        match self.core.on_client_data(&mut self.cin, &mut self.to_up)? {
            Some(Blocked::Classify(work)) => self.classifying = Some(work),
            Some(Blocked::Catalog(wait)) => self.reloading = Some(wait),
            Some(Blocked::AuditRoom) => {
                self.audit_wait = Some(crate::timer::sleep(AUDIT_RETRY));
            }
            Some(Blocked::Hold(hold)) => return self.hold(*hold),
            None => {}
        }
        Ok(())
    }

    /// Files the request for a held message and tells the client.
    fn hold(&mut self, hold: guard::Hold) -> Result<(), End> {
        if self.core.draining {
            // Shutting down: nobody will decide it in time.
            self.core.release(Release::Refused(PgError::error(
                sqlstate::ADMIN_SHUTDOWN,
                "pgward is shutting down: the statement needs approval and was not held",
            )));
            return self.on_client_data();
        }
        let Some(link) = &self.link else {
            // Not listed (only the relay's own tests): nobody could decide.
            self.core.release(Release::Refused(PgError::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "pgward: this statement needs approval, and this session cannot wait for one",
            )));
            return self.on_client_data();
        };
        // Grant keys: equal for the same statement with other constants
        // (see `approval::grant_key`). A text that has none is never
        // granted.
        let fingerprints = hold
            .texts
            .iter()
            .map(|t| crate::approval::grant_key(t))
            .collect::<Option<Vec<u64>>>()
            .unwrap_or_default();
        let granted = match hold.after_approval {
            false => link.queue.granted(
                &link.entry.identity,
                &hold.role,
                &link.entry.database,
                &fingerprints,
            ),
            true => None,
        };
        if let Some(g) = granted {
            PgError::notice(
                "00000",
                format!(
                    "pgward: statement runs under grant {} (approved by {} with request {}, until {})",
                    g.grant,
                    g.by.join(", "),
                    g.request,
                    crate::console::timestamp(g.expires_at)
                ),
            )
            .encode(&mut self.to_client);
            let verdict = Verdict::Approved { by: g.by.clone() };
            let why = format!("grant {}", g.grant);
            self.core.record_decision(g.request, &verdict, Some(&why));
            self.core.release(Release::Approved {
                id: g.request,
                texts: hold.texts,
                by: g.by,
            });
            return self.on_client_data();
        }
        let ticket = link.queue.request(
            Ask {
                identity: link.entry.identity.clone(),
                role: hold.role,
                session: link.entry.id,
                database: link.entry.database.clone(),
                classes: hold.classes.clone(),
                why: hold.why.clone(),
                reason: hold.reason.clone(),
                statement: hold.statement.clone(),
                risk: crate::risk::summary(&hold.texts),
                fingerprints,
                approvals_needed: hold.approvals_needed,
            },
            link.timeout,
        );
        let id = ticket.id();
        tracing::info!(identity = %link.entry.identity, request = id, "statement held for approval");
        if let Some(w) = &link.webhook {
            w.notify(&ticket.request, &link.how_to_approve);
        }
        if let Some(rec) = &mut self.core.recorder {
            rec.approval_requested(
                id,
                &hold.statement,
                &hold.classes,
                &hold.why,
                hold.reason.as_deref(),
            );
        }
        PgError::notice(
            "00000",
            format!(
                "pgward: statement held for approval as request {id} (class {})",
                hold.classes
            ),
        )
        .with_detail(hold.why)
        .with_hint(link.how_to_approve.replace("{id}", &id.to_string()))
        .encode(&mut self.to_client);
        link.entry.set_held(Some((id, hold.statement)));
        self.holding = Some(ticket);
        self.held_texts = hold.texts;
        Ok(())
    }

    /// Ends the wait of a held message with `release` (dropping the ticket
    /// withdraws a request still pending) and goes on with the input.
    fn unhold(&mut self, release: Release) -> Result<(), End> {
        self.holding = None;
        self.held_texts = Vec::new();
        if let Some(link) = &self.link {
            link.entry.set_held(None);
        }
        self.core.release(release);
        self.on_client_data()
    }

    /// Acts on what the console or a CancelRequest posted.
    fn on_command(&mut self, command: Command) -> Result<(), End> {
        match command {
            Command::Cancel => match &self.holding {
                // Decided just before the cancel came: the verdict stands
                // (the ticket resolves with it), as a cancel that reaches
                // PostgreSQL after its query ended does nothing.
                Some(t) if !t.withdraw() => Ok(()),
                Some(t) => {
                    let id = t.id();
                    self.core.record_decision(
                        id,
                        &Verdict::Withdrawn,
                        Some("the client cancelled it"),
                    );
                    self.unhold(Release::Refused(withdrawn(id)))
                }
                // Nothing held: the cancel went upstream.
                None => Ok(()),
            },
            Command::Terminate => {
                let by = self
                    .link
                    .as_ref()
                    .and_then(|l| l.entry.control.terminated_by())
                    .unwrap_or_default();
                Err(End::Closed(
                    PgError::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command",
                    )
                    .with_detail(format!("pgward: terminated by {by} on the admin console")),
                ))
            }
        }
    }

    /// The verdict on a held message, as what the client gets.
    fn released(id: u64, verdict: Verdict, texts: Vec<Arc<str>>) -> Release {
        match verdict {
            Verdict::Approved { by } => Release::Approved { id, texts, by },
            Verdict::Denied { by, reason } => Release::Refused(
                PgError::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!("pgward: approval request {id} was denied by {by}"),
                )
                .with_detail(if reason.is_empty() {
                    "no reason given".to_owned()
                } else {
                    format!("reason: {reason}")
                }),
            ),
            Verdict::Expired => Release::Refused(
                PgError::error(
                    sqlstate::QUERY_CANCELED,
                    format!("pgward: approval request {id} was not decided in time"),
                )
                .with_hint("ask an approver to decide sooner, or raise approval.timeout_secs"),
            ),
            Verdict::Withdrawn => Release::Refused(withdrawn(id)),
        }
    }

    /// Moves bytes both ways until neither socket has anything to do now;
    /// ready with how the session ends. Each socket gets its own waker, so
    /// a wake-up polls only the socket that caused it (and any socket not
    /// yet waiting): tokio registers interest on every Pending poll, and
    /// polling an idle socket on each wake-up cost a third of the relay's
    /// instructions.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        let mut wakers = match self.wakers.take() {
            Some(w) if w.task.will_wake(cx.waker()) => w,
            // First poll, or the task's waker changed: poll both anew.
            _ => {
                if let Some(link) = &self.link {
                    link.entry.control.register(cx.waker());
                }
                SocketWakers::new(cx.waker())
            }
        };
        let result = self.poll_sockets(cx, &mut wakers);
        self.wakers = Some(wakers);
        result
    }

    fn poll_sockets(&mut self, cx: &mut Context<'_>, w: &mut SocketWakers) -> Poll<End> {
        loop {
            if let Some(command) = self.link.as_ref().and_then(|l| l.entry.control.take()) {
                if let Err(end) = self.on_command(command) {
                    return Poll::Ready(end);
                }
            }
            if let Some(ticket) = &mut self.holding {
                if let Poll::Ready(verdict) = std::future::Future::poll(Pin::new(&mut *ticket), cx)
                {
                    let texts = std::mem::take(&mut self.held_texts);
                    let id = ticket.id();
                    self.core.record_decision(id, &verdict, None);
                    let release = Relay::released(id, verdict, texts);
                    if let Err(end) = self.unhold(release) {
                        return Poll::Ready(end);
                    }
                    continue;
                }
            }
            if let Some(work) = &mut self.classifying {
                if let Poll::Ready(c) = work.as_mut().poll(cx) {
                    self.classifying = None;
                    self.core.provide(c);
                    if let Err(end) = self.on_client_data() {
                        return Poll::Ready(end);
                    }
                    continue;
                }
            }
            if let Some(wait) = &mut self.reloading {
                if let Poll::Ready(result) = wait.as_mut().poll(cx) {
                    self.reloading = None;
                    self.core.catalog_ready(result);
                    if let Err(end) = self.on_client_data() {
                        return Poll::Ready(end);
                    }
                    continue;
                }
            }
            if let Some(retry) = &mut self.audit_wait {
                if std::future::Future::poll(Pin::new(retry), cx).is_ready() {
                    self.audit_wait = None;
                    if let Err(end) = self.on_client_data() {
                        return Poll::Ready(end);
                    }
                    // A new wait's timer is polled (armed) at the top.
                    continue;
                }
            }
            let mut ccx = Context::from_waker(&w.client.waker);
            let mut ucx = Context::from_waker(&w.upstream.waker);
            if let Err(end) = self.write_both(&mut ccx, &mut ucx) {
                return Poll::Ready(end);
            }
            // Read a side only while its destination has room (and the
            // client not while its message waits for its classification;
            // while it waits for audit room, only enough to see it hang up).
            let waiting = self.audit_wait.is_some() || self.holding.is_some();
            if self.to_up.len() < HIGH_WATER
                && self.classifying.is_none()
                && self.reloading.is_none()
                && (!waiting || self.cin.len() < HIGH_WATER)
                && w.client.due()
            {
                reserve(&mut self.cin);
                match poll_read_buf(Pin::new(&mut self.client), &mut ccx, &mut self.cin) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(End::ClientGone(None)),
                    Poll::Ready(Ok(_)) => {
                        w.client.waiting = false;
                        if self.core.last_client.is_some() {
                            self.core.last_client = Some(Instant::now());
                        }
                        if waiting {
                            // Judged when the retry finds room.
                            continue;
                        }
                        if let Err(end) = self.on_client_data() {
                            return Poll::Ready(end);
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(End::ClientGone(Some(e))),
                    Poll::Pending => w.client.waiting = true,
                }
            }
            if self.to_client.len() < HIGH_WATER && w.upstream.due() {
                reserve(&mut self.uin);
                match poll_read_buf(Pin::new(&mut self.upstream), &mut ucx, &mut self.uin) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(End::UpstreamGone(None)),
                    Poll::Ready(Ok(_)) => {
                        w.upstream.waiting = false;
                        if let Err(end) = self
                            .core
                            .on_upstream_data(&mut self.uin, &mut self.to_client)
                        {
                            return Poll::Ready(end);
                        }
                        if self.core.draining && self.is_idle() {
                            // Its last response is queued; `finish` sends it.
                            return Poll::Ready(End::Closed(shutting_down()));
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(End::UpstreamGone(Some(e))),
                    Poll::Pending => w.upstream.waiting = true,
                }
            }
            return Poll::Pending;
        }
    }

    /// Writes what is queued for each side, as far as each takes it now.
    fn write_both(&mut self, ccx: &mut Context<'_>, ucx: &mut Context<'_>) -> Result<(), End> {
        write_some(&mut self.upstream, &mut self.to_up, &mut self.dirty_up, ucx)
            .map_err(|e| End::UpstreamGone(Some(e)))?;
        write_some(
            &mut self.client,
            &mut self.to_client,
            &mut self.dirty_client,
            ccx,
        )
        .map_err(|e| End::ClientGone(Some(e)))
    }
}

impl Core {
    /// Frames what the client sent and queues whole messages upstream.
    /// Returns the classification to wait for when a long text at the head
    /// of `cin` must be classified apart; the rest of `cin` stays unread
    /// until it is provided.
    pub fn on_client_data(
        &mut self,
        cin: &mut BytesMut,
        to_up: &mut BytesMut,
    ) -> Result<Option<Blocked>, End> {
        let mut at = 0;
        let mut terminate = false;
        let mut apart = None;
        let mut blocked = None;
        // The decision on a held message is for the head message alone.
        let mut release = self.release.take();
        loop {
            let released = release.take();
            let mut plan = None;
            // The type byte is judged before the length: a StartupMessage or
            // SSLRequest sent mid-session begins with 0x00 and a length that
            // would otherwise be waited for until the idle timeout.
            if let Some(&tag) = cin.get(at) {
                if !frame::is_frontend_type(tag) {
                    return Err(End::Closed(frame_error(FrameError::UnknownType { tag })));
                }
            }
            let total = match frame::check(&cin[at..], self.max_message) {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => return Err(End::Closed(frame_error(e))),
            };
            let tag = cin[at];
            let raw = &cin[at + 5..at + total];
            // What pgward reads of it: its text in UTF-8, as the server will
            // read it. A UTF-8 session (with nothing about to change that)
            // reads the bytes as they are.
            let (body, unreadable) = if self.state.text.plain {
                (Cow::Borrowed(raw), None)
            } else {
                match self.state.text.view(tag, raw) {
                    Ok(view) => (view, None),
                    Err((why, view)) => (view, Some(why.to_pg_error())),
                }
            };
            let body = body.as_ref();
            if self.state.doomed
                && matches!(
                    tag,
                    ftag::PARSE
                        | ftag::BIND
                        | ftag::DESCRIBE
                        | ftag::EXECUTE
                        | ftag::CLOSE
                        | ftag::QUERY
                        | ftag::FUNCTION_CALL
                )
            {
                // After a denied Parse or Execute the server skips all up to
                // Sync (the stand-in fails): these would never run, so they
                // are neither judged, recorded nor sent.
                move_frames(cin, at, to_up);
                cin.advance(total);
                at = 0;
                continue;
            }
            // Read once, for the guard, the protocol state and the audit.
            let Ok(msg) = frontend::Message::parse(tag, body) else {
                return Err(End::Closed(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!(
                        "invalid message format in message of type {}",
                        printable(tag)
                    ),
                )));
            };
            if let Some(g) = self
                .guard
                .as_mut()
                .filter(|_| body.len() >= guard::CLASSIFY_APART)
            {
                if let Some(work) = g.classify_apart(&msg, self.state.text.lexer()) {
                    // Judged when its classification is done; what came
                    // before it goes on now.
                    apart = Some(Box::pin(work) as Apart);
                    self.release = released;
                    break;
                }
            }
            if let (Some(g), None) = (&self.guard, &unreadable) {
                if matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'F') {
                    if let Some(wait) = g.catalog_wait(self.state.tx_status != b'I') {
                        // Judged against the reloaded catalog; what came
                        // before it goes on now.
                        blocked = Some(Blocked::Catalog(Box::pin(wait)));
                        self.release = released;
                        break;
                    }
                }
            }
            let mut denial = match (&mut self.guard, unreadable, &released) {
                (Some(g), _, Some(Release::Refused(err))) => {
                    g.skip();
                    Some(err.clone())
                }
                (Some(g), Some(err), _) => {
                    g.skip();
                    Some(err)
                }
                // Without a guard nothing is judged, but what cannot be read
                // would not run: refused all the same.
                (None, Some(err), _) => Some(err),
                (Some(g), None, _)
                    if matches!(
                        msg,
                        frontend::Message::Query(_)
                            | frontend::Message::Parse(_)
                            | frontend::Message::Bind(_)
                            | frontend::Message::Execute(_)
                            | frontend::Message::FunctionCall(_)
                            | frontend::Message::Close(_)
                    ) =>
                {
                    if let Some(Release::Approved { texts, .. }) = &released {
                        g.approved = texts.clone();
                    }
                    let decision = g.check(&msg, &self.state);
                    // Rows are looked at only for a role whose rows a
                    // planner may rewrite (the role of this check).
                    self.state.rewrites = g.rewrites_rows();
                    self.state.shows_values = g.shows_values();
                    match decision {
                        guard::Decision::Pass => None,
                        guard::Decision::Rewrite(p) => {
                            plan = Some(p);
                            None
                        }
                        guard::Decision::Deny(err) => Some(err),
                        guard::Decision::Hold(hold) => {
                            // Nothing of it is sent or recorded until it is
                            // decided; what came before it goes on now.
                            blocked = Some(Blocked::Hold(hold));
                            break;
                        }
                    }
                }
                _ => None,
            };
            let recorded = matches!(
                msg,
                frontend::Message::Query(_)
                    | frontend::Message::Parse(_)
                    | frontend::Message::Execute(_)
                    | frontend::Message::FunctionCall(_)
            ) || denial.is_some();
            if let (Some(rec), true) = (&mut self.recorder, recorded) {
                // Room for its events, or the message waits; and with
                // audit.on_failure = "deny", nothing runs unrecorded.
                let statements = match (&msg, &self.guard) {
                    (frontend::Message::Execute(_), _) | (_, None) => 1,
                    (_, Some(g)) => g.last.statements(),
                };
                let refusable = !matches!(msg, frontend::Message::Parse(_));
                match rec.admit(statements, denial.is_some(), refusable) {
                    Admission::Go => {}
                    Admission::Refuse(err) => denial = Some(err),
                    Admission::Wait => {
                        // Judged again when there is room: nothing of it
                        // has taken effect.
                        blocked = Some(Blocked::AuditRoom);
                        self.release = released;
                        break;
                    }
                }
            }
            let counted = matches!(
                msg,
                frontend::Message::Query(_)
                    | frontend::Message::Execute(_)
                    | frontend::Message::FunctionCall(_)
            );
            if let (Some(e), true) = (&self.entry, counted) {
                e.count(1, denial.is_some());
            }
            let mut no_effects = Vec::new();
            let effects = match &mut self.guard {
                Some(g) if denial.is_none() => &mut g.effects,
                _ => &mut no_effects,
            };
            self.state.on_frontend_message(&msg, effects);
            if let Some(g) = &self.guard {
                // The response owed knows its statement.
                let keep_text = self.recorder.is_some() || g.plans();
                if let Some(a) = self.state.last_answering_mut() {
                    a.ruling = match (&denial, &plan, &released) {
                        (Some(_), _, _) => state::Ruling::Denied,
                        (None, Some(_), _) => state::Ruling::Rewrite,
                        (None, None, Some(Release::Approved { id, .. })) => {
                            state::Ruling::Approved(*id)
                        }
                        (None, None, _) => state::Ruling::Pass,
                    };
                    a.plan = plan.take();
                    if g.keep_judged {
                        a.analysis = g.last.analysis.clone();
                    }
                    if keep_text {
                        a.sql = match (msg.sql(), &g.last.text) {
                            (Some(sql), Some(text)) if **text == *sql => Some(text.clone()),
                            (Some(sql), _) => Some(sql.into()),
                            (None, _) => g.last.sql.clone(),
                        };
                    }
                }
            }
            if let (Some(g), None) = (&self.guard, &denial) {
                if g.text_change.any() {
                    // Until its ReadyForQuery, what follows may be read
                    // with other settings.
                    self.state
                        .text
                        .note_change(self.state.last_index(), g.text_change);
                }
            }
            if let Some(rec) = &mut self.recorder {
                if let Some(Release::Approved { id, by, .. }) = &released {
                    rec.approved(*id, by);
                }
                let judged = self.guard.as_ref().map(|g| &g.last);
                let owed = self.state.last_answering_mut();
                rec.on_client(&msg, owed, judged, denial.as_ref());
                rec.catch_up(&mut self.state.retired);
            }
            if let Some(err) = self.state.over_limit() {
                return Err(End::Closed(err));
            }
            if let Some(err) = denial {
                if matches!(
                    msg,
                    frontend::Message::Parse(_)
                        | frontend::Message::Bind(_)
                        | frontend::Message::Describe(_)
                        | frontend::Message::Close(_)
                        | frontend::Message::Execute(_)
                ) {
                    self.state.doomed = true;
                }
                // Nothing of a denied message goes upstream: a stand-in
                // that fails in the parser takes its place, and its error
                // is swapped for this one on the way back.
                let probe = match &self.guard {
                    Some(g) if g.unparsed => guard::syntax_probe(tag, raw),
                    _ => None,
                };
                let stand_in = guard::stand_in(&msg);
                match &probe {
                    Some(_) => self.state.deny_last_unparsed(err),
                    None => self.state.deny_last(err),
                }
                move_frames(cin, at, to_up);
                cin.advance(total);
                match probe {
                    Some(p) => to_up.extend_from_slice(&p),
                    None => to_up.extend_from_slice(stand_in),
                }
                at = 0;
                continue;
            }
            at += total;
            if let frontend::Message::Terminate = msg {
                terminate = true;
                break;
            }
        }
        move_frames(cin, at, to_up);
        if terminate {
            return Err(End::ClientTerminated);
        }
        self.apart = apart.is_some() || matches!(blocked, Some(Blocked::Catalog(_)));
        Ok(apart.map(Blocked::Classify).or(blocked))
    }

    /// Frames what the server sent and queues whole messages to the client.
    pub fn on_upstream_data(
        &mut self,
        uin: &mut BytesMut,
        to_client: &mut BytesMut,
    ) -> Result<(), End> {
        let mut at = 0;
        loop {
            let total = match frame::check(&uin[at..], POSTGRES_MAX_MESSAGE) {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("upstream sent a bad frame: {e}");
                    return Err(End::Closed(PgError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        "pgward received an invalid message from the upstream server",
                    )));
                }
            };
            let tag = uin[at];
            let body = &uin[at + 5..at + total];
            if tag == b'Z' && self.last_client.is_some() {
                // Idle from its answer on, however long it ran or was held.
                self.last_client = Some(Instant::now());
            }
            // Read once, for the protocol state and the audit.
            let msg = backend::Message::parse(tag, body);
            self.state.prepare_front();
            // An error or notice answering a statement whose rows are
            // rewritten may echo their values: its rewriter scrubs it
            // (looked up before the answer retires the statement).
            let scrubber = match tag {
                btag::ERROR_RESPONSE | btag::NOTICE_RESPONSE if self.state.rewrites => {
                    self.state.front_rewriter().map(|(_, r)| r.clone())
                }
                _ => None,
            };
            if let Some(rec) = &mut self.recorder {
                rec.catch_up(&mut self.state.retired);
                rec.on_backend(&msg, self.state.front_answering_mut());
            }
            let answer = self.state.on_backend_message(&msg);
            if let (Some(rec), false) = (&mut self.recorder, self.state.retired.is_empty()) {
                rec.catch_up(&mut self.state.retired);
            }
            if tag == b'Z' {
                if let (Some(g), Some(&status)) = (&mut self.guard, body.first()) {
                    // A block that changed the catalog ended: before its
                    // ReadyForQuery reaches the client, every session's
                    // next judgment waits for the reload.
                    g.on_ready(status, self.state.is_idle(), self.state.owed.is_empty());
                }
            }
            if let Some(why) = self.state.lost {
                tracing::error!("session closed: {why}");
                move_frames(uin, at, to_client);
                uin.advance(total);
                return Err(End::Closed(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("pgward: {why}; the session cannot go on"),
                )));
            }
            let error = match &msg {
                backend::Message::ErrorResponse(e) => Some(e),
                _ => None,
            };
            self.upstream_said_fatal = error.is_some_and(|e| e.is_fatal());
            // In an aborted block PostgreSQL answers 25P02 to anything but
            // the end of the block, without looking further; so does pgward.
            let replacement = match answer {
                Answer::Pass => None,
                Answer::Deny(_) if self.state.tx_status == status::FAILED => Some(PgError::error(
                    sqlstate::IN_FAILED_SQL_TRANSACTION,
                    "current transaction is aborted, commands ignored until end of transaction block",
                )),
                Answer::Deny(err) => Some(err),
                Answer::ProbeError => {
                let mut shifted = BytesMut::new();
                let by = guard::PROBE_PREFIX.len() as u32;
                shift_error_position(tag, body, by, &mut shifted);
                move_frames(uin, at, to_client);
                    to_client.extend_from_slice(&shifted);
                    uin.advance(total);
                    at = 0;
                    continue;
                }
            };
            let in_failed_block =
                error.is_some_and(|e| e.code() == sqlstate::IN_FAILED_SQL_TRANSACTION);
            if let Some(err) = replacement.filter(|_| !in_failed_block && !self.upstream_said_fatal)
            {
                move_frames(uin, at, to_client);
                uin.advance(total);
                err.encode(to_client);
                at = 0;
                continue;
            }
            if let Some(rewriter) = scrubber {
                let mut fields =
                    rows::message_fields(&uin[at + 5..at + total]).unwrap_or_else(|| {
                        vec![
                            (b'S', "ERROR".to_owned()),
                            (b'V', "ERROR".to_owned()),
                            (b'C', sqlstate::INTERNAL_ERROR.to_owned()),
                            (
                                b'M',
                                "pgward: an unreadable message was withheld".to_owned(),
                            ),
                        ]
                    });
                rewriter.scrub(&mut fields);
                move_frames(uin, at, to_client);
                rows::put_fields(to_client, tag, &fields);
                uin.advance(total);
                at = 0;
                continue;
            }
            if self.state.rewrites && matches!(tag, btag::DATA_ROW | btag::COPY_DATA) {
                if let Some((answering, rewriter)) = self
                    .state
                    .front_rewriter()
                    .filter(|(_, r)| !(tag == btag::DATA_ROW && r.passes_rows()))
                {
                    // The rows of a statement decided Rewrite: the client
                    // gets what its rewriter writes, never the row itself.
                    move_frames(uin, at, to_client);
                    let body = &uin[5..total];
                    let written = rows::write_rewritten(to_client, tag, |out| {
                        if tag == btag::DATA_ROW {
                            rewriter.data_row(answering, body, out)
                        } else {
                            rewriter.copy_data(answering, body, out)
                        }
                    });
                    uin.advance(total);
                    if let Err(mut err) = written {
                        tracing::warn!(
                            "session closed: a row could not be rewritten: {}",
                            err.message
                        );
                        err.severity = crate::protocol::messages::Severity::Fatal;
                        return Err(End::Closed(err));
                    }
                    at = 0;
                    continue;
                }
            }
            at += total;
        }
        move_frames(uin, at, to_client);
        // Statements and portals are held once the server confirms them.
        match self.state.over_limit() {
            Some(err) => Err(End::Closed(err)),
            None => Ok(()),
        }
    }
}

type PhaseChange = Pin<
    Box<
        dyn std::future::Future<
                Output = (Result<(), watch::error::RecvError>, watch::Receiver<Phase>),
            > + Send,
    >,
>;

/// Resolves at the next change of the server's phase, handing the receiver
/// back. The channel is shared by every session, and polling its wait takes
/// its lock; so the wait is polled only after it has woken this session
/// (its waker raises a flag), not on every wake-up of the relay.
struct PhaseWatch {
    wait: PhaseChange,
    waker: Option<Arc<FlagWaker>>,
}

/// A waker per socket, each raising its own flag before waking the task,
/// so the relay knows which socket has news.
struct SocketWakers {
    /// The task's waker they were made for.
    task: Waker,
    client: SocketWaker,
    upstream: SocketWaker,
}

struct SocketWaker {
    flag: Arc<FlagWaker>,
    waker: Waker,
    /// The socket's last read was Pending, so tokio holds `waker` and will
    /// wake it (raising the flag) when there is something to read.
    waiting: bool,
}

impl SocketWakers {
    fn new(task: &Waker) -> SocketWakers {
        SocketWakers {
            task: task.clone(),
            client: SocketWaker::new(task),
            upstream: SocketWaker::new(task),
        }
    }
}

impl SocketWaker {
    fn new(task: &Waker) -> SocketWaker {
        let flag = FlagWaker::new(task);
        SocketWaker {
            waker: Waker::from(flag.clone()),
            flag,
            waiting: false,
        }
    }

    /// Whether the socket must be read: it has not been polled to Pending
    /// since its last data, or its waker fired (for a read or a write).
    fn due(&self) -> bool {
        !self.waiting || self.flag.fired.swap(false, Ordering::AcqRel)
    }
}

struct FlagWaker {
    fired: AtomicBool,
    task: Waker,
}

impl FlagWaker {
    fn new(task: &Waker) -> Arc<FlagWaker> {
        Arc::new(FlagWaker {
            fired: AtomicBool::new(false),
            task: task.clone(),
        })
    }
}

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl PhaseWatch {
    fn new(mut rx: watch::Receiver<Phase>) -> PhaseWatch {
        PhaseWatch {
            wait: Box::pin(async move {
                let result = rx.changed().await;
                (result, rx)
            }),
            waker: None,
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(Result<(), watch::error::RecvError>, watch::Receiver<Phase>)> {
        let flag = match &self.waker {
            Some(w) if w.task.will_wake(cx.waker()) => {
                if !w.fired.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                w.clone()
            }
            // First poll, or the task's waker changed: register anew.
            _ => {
                let w = FlagWaker::new(cx.waker());
                self.waker = Some(w.clone());
                w
            }
        };
        let waker = Waker::from(flag);
        self.wait.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// Resolves when `timer` fires; never without one.
async fn fired(timer: &mut Option<crate::timer::Sleep>) {
    match timer {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Reads and discards what the client is still sending, for a moment, after
/// our last words. Closing a socket with unread input makes the kernel send
/// a reset, which can destroy the error message before the client reads it.
async fn linger(client: &mut Stream) {
    const MAX_DRAIN: usize = 64 << 20;
    let mut scratch = vec![0u8; 64 * 1024];
    let mut drained = 0;
    let _ = crate::timer::timeout(LINGER, async {
        while drained < MAX_DRAIN {
            match tokio::io::AsyncReadExt::read(client, &mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// The idle timer fired: `None` if the session has been idle (`is_idle`,
/// nothing from the client) for the whole timeout, else when to look again.
/// The client spoke since, or a statement is running: look again when it
/// could next have been idle that long.
fn idle_recheck(
    last_client: Option<Instant>,
    timeout: Option<Duration>,
    is_idle: bool,
) -> Option<Instant> {
    let t = timeout.unwrap_or_default();
    let now = Instant::now();
    let due = last_client.unwrap_or(now) + t;
    if now >= due && is_idle {
        None
    } else if now >= due {
        Some(now + t)
    } else {
        Some(due)
    }
}

/// What a client whose held statement was withdrawn (its cancel, or the
/// request closed without a verdict) gets: PostgreSQL's own cancel error.
fn withdrawn(id: u64) -> PgError {
    PgError::error(
        sqlstate::QUERY_CANCELED,
        "canceling statement due to user request",
    )
    .with_detail(format!("pgward withdrew approval request {id}"))
}

fn idle_timeout_error() -> PgError {
    PgError::fatal(
        sqlstate::IDLE_SESSION_TIMEOUT,
        "terminating connection due to idle-session timeout",
    )
    .with_detail("pgward closes sessions idle longer than server.idle_timeout_secs")
}

fn shutting_down() -> PgError {
    PgError::fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection due to administrator command",
    )
    .with_detail("pgward is shutting down")
}

fn frame_error(e: FrameError) -> PgError {
    let code = match e {
        FrameError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
        _ => sqlstate::PROTOCOL_VIOLATION,
    };
    PgError::fatal(code, e.to_string())
}

/// Moves the first `n` bytes of `from` to the end of `to`, without copying
/// when `to` is empty.
fn move_frames(from: &mut BytesMut, n: usize, to: &mut BytesMut) {
    if n == 0 {
        return;
    }
    let chunk = from.split_to(n);
    if to.is_empty() {
        *to = chunk;
    } else {
        to.extend_from_slice(&chunk);
    }
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
}

/// Writes as much of `buf` as the stream takes now, then flushes.
fn write_some(
    stream: &mut Stream,
    buf: &mut BytesMut,
    dirty: &mut bool,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    if buf.is_empty() && !*dirty {
        return Ok(());
    }
    while !buf.is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, buf) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                *dirty = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(()),
        }
    }
    if buf.capacity() > 0 {
        // Drop our share of the read buffer so it can be reused in place.
        *buf = BytesMut::new();
    }
    if *dirty {
        match Pin::new(&mut *stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => *dirty = false,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
    }
    Ok(())
}
