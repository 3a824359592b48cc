//! The approval queue: statements held in their live sessions until an
//! approver says yes or no on the admin console.
//!
//! A session whose statement needs approval asks the queue for a ticket
//! and waits on it (the statement stays unread at the head of its input,
//! see `session::relay`). The ticket resolves with the verdict; dropping
//! it (the client cancelled, hung up, or the session ended) withdraws the
//! request. Requests live in memory, in this process.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::timer::Sleep;

/// How many decided requests `SHOW APPROVALS` keeps.
const HISTORY: usize = 1000;
/// How much of a decided request's statement the history keeps: a
/// thousand 1 MiB texts would pin a gigabyte.
const HISTORY_TEXT: usize = 4096;

/// What a held statement asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: u64,
    pub requested_at: SystemTime,
    pub identity: String,
    pub role: String,
    /// The session's id in the registry.
    pub session: u64,
    pub database: String,
    /// The classes that need approval, comma-separated.
    pub classes: String,
    /// Why the role's rules ask for approval.
    pub why: String,
    pub statement: Arc<str>,
    /// What it would do while it runs (`risk::summary`).
    pub risk: String,
    /// How many distinct approvers it needs.
    pub approvals_needed: usize,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approved { by: Vec<String> },
    Denied { by: String, reason: String },
    Expired,
    Withdrawn,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Approved { .. } => "approved",
            Verdict::Denied { .. } => "denied",
            Verdict::Expired => "expired",
            Verdict::Withdrawn => "withdrawn",
        }
    }
}

/// A request with its decision, for `SHOW APPROVALS`.
#[derive(Debug, Clone)]
pub struct Decided {
    pub request: Arc<Request>,
    pub verdict: Verdict,
    pub decided_at: SystemTime,
}

struct Pending {
    request: Arc<Request>,
    approvers: Vec<String>,
    tx: oneshot::Sender<Verdict>,
}

/// Why an approver's answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    NoSuchRequest(u64),
    OwnRequest(u64),
    AlreadyApproved(u64),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::NoSuchRequest(id) => write!(f, "no pending request {id}"),
            AnswerError::OwnRequest(id) => write!(
                f,
                "request {id} is your own: another approver must decide it"
            ),
            AnswerError::AlreadyApproved(id) => {
                write!(
                    f,
                    "you already approved request {id}; it needs another approver"
                )
            }
        }
    }
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// The statement runs now.
    Released,
    /// It needs this many more approvers.
    NeedsMore(usize),
}

#[derive(Default)]
pub struct Queue {
    next: AtomicU64,
    pending: Mutex<BTreeMap<u64, Pending>>,
    history: Mutex<VecDeque<Decided>>,
}

/// What a new request says, before it has an id.
pub struct Ask {
    pub identity: String,
    pub role: String,
    pub session: u64,
    pub database: String,
    pub classes: String,
    pub why: String,
    pub statement: Arc<str>,
    pub risk: String,
    pub approvals_needed: usize,
}

impl Queue {
    /// Files a request; the ticket resolves with its verdict, or with
    /// `Expired` after `timeout`.
    pub fn request(self: &Arc<Self>, ask: Ask, timeout: Duration) -> Ticket {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let request = Arc::new(Request {
            id,
            requested_at: SystemTime::now(),
            identity: ask.identity,
            role: ask.role,
            session: ask.session,
            database: ask.database,
            classes: ask.classes,
            why: ask.why,
            statement: ask.statement,
            risk: ask.risk,
            approvals_needed: ask.approvals_needed.max(1),
        });
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            id,
            Pending {
                request: request.clone(),
                approvers: Vec::new(),
                tx,
            },
        );
        Ticket {
            request,
            rx,
            expiry: crate::timer::sleep(timeout),
            queue: self.clone(),
            done: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pending requests, oldest first.
    pub fn pending(&self) -> Vec<(Arc<Request>, Vec<String>)> {
        self.lock()
            .values()
            .map(|p| (p.request.clone(), p.approvers.clone()))
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Request>> {
        if let Some(p) = self.lock().get(&id) {
            return Some(p.request.clone());
        }
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|d| d.request.id == id)
            .map(|d| d.request.clone())
    }

    /// Decided requests, newest last.
    pub fn history(&self) -> Vec<Decided> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// `by` approves request `id` (nobody approves their own).
    pub fn approve(&self, id: u64, by: &str) -> Result<Approved, AnswerError> {
        let mut pending = self.lock();
        let p = pending.get_mut(&id).ok_or(AnswerError::NoSuchRequest(id))?;
        if p.request.identity == by {
            return Err(AnswerError::OwnRequest(id));
        }
        if p.approvers.iter().any(|a| a == by) {
            return Err(AnswerError::AlreadyApproved(id));
        }
        p.approvers.push(by.to_owned());
        if p.approvers.len() < p.request.approvals_needed {
            return Ok(Approved::NeedsMore(
                p.request.approvals_needed - p.approvers.len(),
            ));
        }
        let Some(p) = pending.remove(&id) else {
            return Err(AnswerError::NoSuchRequest(id));
        };
        drop(pending);
        let verdict = Verdict::Approved { by: p.approvers };
        self.decided(p.request, verdict.clone());
        // The session may have gone meanwhile: then nothing runs.
        let _ = p.tx.send(verdict);
        Ok(Approved::Released)
    }

    /// `by` denies request `id`, saying why.
    pub fn deny(&self, id: u64, by: &str, reason: &str) -> Result<(), AnswerError> {
        let mut pending = self.lock();
        if pending.get(&id).is_some_and(|p| p.request.identity == by) {
            return Err(AnswerError::OwnRequest(id));
        }
        let p = pending.remove(&id).ok_or(AnswerError::NoSuchRequest(id))?;
        drop(pending);
        let verdict = Verdict::Denied {
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        self.decided(p.request, verdict.clone());
        let _ = p.tx.send(verdict);
        Ok(())
    }

    /// Ends a request the session no longer waits for.
    fn close(&self, id: u64, verdict: Verdict) -> bool {
        let Some(p) = self.lock().remove(&id) else {
            return false;
        };
        self.decided(p.request, verdict);
        true
    }

    fn decided(&self, request: Arc<Request>, verdict: Verdict) {
        let request = if request.statement.len() > HISTORY_TEXT {
            let mut cut = HISTORY_TEXT;
            while !request.statement.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut r = (*request).clone();
            r.statement = format!(
                "{}... ({} bytes in all)",
                &request.statement[..cut],
                request.statement.len()
            )
            .into();
            Arc::new(r)
        } else {
            request
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(Decided {
            request,
            verdict,
            decided_at: SystemTime::now(),
        });
    }
}

/// A session's claim on its request: resolves with the verdict; dropped
/// before that, it withdraws the request.
pub struct Ticket {
    pub request: Arc<Request>,
    rx: oneshot::Receiver<Verdict>,
    expiry: Sleep,
    queue: Arc<Queue>,
    done: bool,
}

impl Ticket {
    pub fn id(&self) -> u64 {
        self.request.id
    }

    /// Withdraws the request unless it was decided already (then the
    /// verdict is on its way to this ticket); whether it was withdrawn.
    pub fn withdraw(&self) -> bool {
        self.queue.close(self.request.id, Verdict::Withdrawn)
    }
}

impl Future for Ticket {
    type Output = Verdict;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Verdict> {
        if let Poll::Ready(v) = Pin::new(&mut self.rx).poll(cx) {
            self.done = true;
            return Poll::Ready(v.unwrap_or(Verdict::Withdrawn));
        }
        if Pin::new(&mut self.expiry).poll(cx).is_ready() {
            let id = self.request.id;
            self.done = true;
            if self.queue.close(id, Verdict::Expired) {
                return Poll::Ready(Verdict::Expired);
            }
            // Decided just now: the verdict is in the channel.
            return Poll::Ready(self.rx.try_recv().unwrap_or(Verdict::Expired));
        }
        Poll::Pending
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.queue.close(self.request.id, Verdict::Withdrawn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(identity: &str, approvals_needed: usize) -> Ask {
        Ask {
            identity: identity.into(),
            role: "app".into(),
            session: 1,
            database: "postgres".into(),
            classes: "ddl".into(),
            why: "class ddl needs approval".into(),
            statement: "CREATE TABLE t (a int)".into(),
            risk: String::new(),
            approvals_needed,
        }
    }

    #[tokio::test]
    async fn approve_deny_and_four_eyes() {
        let q = Arc::new(Queue::default());
        let t = q.request(ask("bob", 1), Duration::from_secs(60));
        let id = t.id();
        assert_eq!(q.pending().len(), 1);
        assert_eq!(q.approve(id, "bob"), Err(AnswerError::OwnRequest(id)));
        assert_eq!(q.deny(id, "bob", "no"), Err(AnswerError::OwnRequest(id)));
        assert_eq!(q.approve(id, "dana"), Ok(Approved::Released));
        assert_eq!(
            t.await,
            Verdict::Approved {
                by: vec!["dana".into()]
            }
        );
        assert!(q.pending().is_empty());
        assert_eq!(q.approve(id, "dana"), Err(AnswerError::NoSuchRequest(id)));

        let t = q.request(ask("bob", 1), Duration::from_secs(60));
        let id = t.id();
        q.deny(id, "dana", "use CONCURRENTLY").unwrap();
        assert_eq!(
            t.await,
            Verdict::Denied {
                by: "dana".into(),
                reason: "use CONCURRENTLY".into()
            }
        );
        assert_eq!(
            q.history()
                .iter()
                .map(|d| d.verdict.as_str())
                .collect::<Vec<_>>(),
            ["approved", "denied"]
        );
    }

    #[tokio::test]
    async fn two_approvers_when_asked() {
        let q = Arc::new(Queue::default());
        let t = q.request(ask("bob", 2), Duration::from_secs(60));
        let id = t.id();
        assert_eq!(q.approve(id, "dana"), Ok(Approved::NeedsMore(1)));
        assert_eq!(q.approve(id, "dana"), Err(AnswerError::AlreadyApproved(id)));
        assert_eq!(q.approve(id, "erin"), Ok(Approved::Released));
        assert_eq!(
            t.await,
            Verdict::Approved {
                by: vec!["dana".into(), "erin".into()]
            }
        );
    }

    #[tokio::test]
    async fn dropped_tickets_withdraw_and_late_ones_expire() {
        let q = Arc::new(Queue::default());
        let t = q.request(ask("bob", 1), Duration::from_secs(60));
        let id = t.id();
        drop(t);
        assert!(q.pending().is_empty());
        assert_eq!(q.approve(id, "dana"), Err(AnswerError::NoSuchRequest(id)));
        assert_eq!(q.history()[0].verdict, Verdict::Withdrawn);

        let t = q.request(ask("bob", 1), Duration::from_millis(20));
        assert_eq!(t.await, Verdict::Expired);
        assert!(q.pending().is_empty());
        assert_eq!(q.history()[1].verdict, Verdict::Expired);
    }
}
