//! Every live session, addressable by a small id: who it is, where from,
//! what it is doing, and a way to cancel or end it from elsewhere in the
//! process (the admin console, a CancelRequest for a held statement).
//!
//! A session's own task is the only writer of its state; others read it
//! and post commands. Posting sets an atomic and wakes the session's task,
//! which checks the atomic once per pass: nothing is locked per message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::SystemTime;

/// What another part of pgward asks of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Command {
    /// Withdraw the statement held for approval, if any (57014).
    Cancel = 1,
    /// End the session (FATAL 57P01).
    Terminate = 2,
}

/// The side of a session that others may touch.
#[derive(Default)]
pub struct Control {
    /// The strongest command posted and not yet taken (0: none).
    command: AtomicU8,
    /// The session's task, woken when a command is posted.
    waker: Mutex<Option<Waker>>,
    /// Who asked for a termination, for the session's last words.
    terminated_by: Mutex<Option<String>>,
    /// A statement is held for approval.
    holding: AtomicBool,
}

impl Control {
    /// Posts `command` and wakes the session.
    pub fn post(&self, command: Command) {
        self.command.fetch_max(command as u8, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waker.as_ref() {
            w.wake_by_ref();
        }
    }

    /// Posts a termination, saying who asked.
    pub fn terminate(&self, by: &str) {
        *self.terminated_by.lock().unwrap_or_else(|p| p.into_inner()) = Some(by.to_owned());
        self.post(Command::Terminate);
    }

    /// The command posted since the last call, if any.
    pub fn take(&self) -> Option<Command> {
        // A load first: the common case (nothing posted) writes nothing.
        if self.command.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.command.swap(0, Ordering::SeqCst) {
            1 => Some(Command::Cancel),
            2 => Some(Command::Terminate),
            _ => None,
        }
    }

    pub fn terminated_by(&self) -> Option<String> {
        self.terminated_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Remembers the session task's waker (once per waker: the relay calls
    /// this only when its task's waker changed).
    pub fn register(&self, waker: &Waker) {
        let mut w = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    pub fn set_holding(&self, holding: bool) {
        self.holding.store(holding, Ordering::SeqCst);
    }

    pub fn is_holding(&self) -> bool {
        self.holding.load(Ordering::SeqCst)
    }
}

/// One live session, as others see it.
pub struct SessionEntry {
    pub id: u64,
    /// The audit log's id of the session.
    pub audit_id: String,
    pub identity: String,
    pub role: String,
    pub database: String,
    pub client: SocketAddr,
    pub application_name: String,
    pub started: SystemTime,
    /// The upstream backend's pid (the one the client sees).
    pub backend_pid: i32,
    pub control: Arc<Control>,
    /// The statement held for approval, with its request id.
    held: Mutex<Option<(u64, Arc<str>)>>,
    /// Statements (Query, Execute, FunctionCall) judged and denied.
    statements: AtomicU64,
    denied: AtomicU64,
}

/// What `SHOW SESSIONS` shows of a session.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: u64,
    pub audit_id: String,
    pub identity: String,
    pub role: String,
    pub database: String,
    pub client: SocketAddr,
    pub application_name: String,
    pub started: SystemTime,
    pub backend_pid: i32,
    /// `held` while a statement waits for approval, else `active`.
    pub state: &'static str,
    pub held: Option<(u64, Arc<str>)>,
    pub statements: u64,
    pub denied: u64,
}

impl SessionEntry {
    pub fn set_held(&self, held: Option<(u64, Arc<str>)>) {
        self.control.set_holding(held.is_some());
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
    }

    /// Counts judged statements (`n`) and denials.
    pub fn count(&self, n: u64, denied: bool) {
        if n > 0 {
            self.statements.fetch_add(n, Ordering::Relaxed);
        }
        if denied {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn view(&self) -> SessionView {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        SessionView {
            id: self.id,
            audit_id: self.audit_id.clone(),
            identity: self.identity.clone(),
            role: self.role.clone(),
            database: self.database.clone(),
            client: self.client,
            application_name: self.application_name.clone(),
            started: self.started,
            backend_pid: self.backend_pid,
            state: if held.is_some() { "held" } else { "active" },
            held,
            statements: self.statements.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
        }
    }
}

/// Who a new session is, for `Sessions::add`.
pub struct NewSession {
    pub audit_id: String,
    pub identity: String,
    pub role: String,
    pub database: String,
    pub client: SocketAddr,
    pub application_name: String,
    pub backend_pid: i32,
}

/// Every live session.
#[derive(Default)]
pub struct Sessions {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<SessionEntry>>>,
}

/// Keeps a session listed while it lives.
pub struct Listed {
    sessions: Arc<Sessions>,
    pub entry: Arc<SessionEntry>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.sessions
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.entry.id);
    }
}

impl Sessions {
    /// Lists a new session; it is unlisted when the result is dropped.
    pub fn add(self: &Arc<Self>, s: NewSession, control: Arc<Control>) -> Listed {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(SessionEntry {
            id,
            audit_id: s.audit_id,
            identity: s.identity,
            role: s.role,
            database: s.database,
            client: s.client,
            application_name: s.application_name,
            started: SystemTime::now(),
            backend_pid: s.backend_pid,
            control,
            held: Mutex::new(None),
            statements: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        });
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, entry.clone());
        Listed {
            sessions: self.clone(),
            entry,
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<SessionEntry>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every live session, by id.
    pub fn list(&self) -> Vec<SessionView> {
        let live: Vec<_> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        live.iter().map(|e| e.view()).collect()
    }

    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(identity: &str) -> NewSession {
        NewSession {
            audit_id: "a".into(),
            identity: identity.into(),
            role: "r".into(),
            database: "d".into(),
            client: "127.0.0.1:5".parse().unwrap(),
            application_name: String::new(),
            backend_pid: 42,
        }
    }

    #[test]
    fn sessions_are_listed_while_they_live() {
        let s = Arc::new(Sessions::default());
        let a = s.add(new("alice"), Arc::default());
        let b = s.add(new("bob"), Arc::default());
        assert_ne!(a.entry.id, b.entry.id);
        assert_eq!(
            s.list()
                .iter()
                .map(|v| v.identity.as_str())
                .collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        b.entry.set_held(Some((7, "DROP TABLE t".into())));
        let v = s.get(b.entry.id).unwrap().view();
        assert_eq!(v.state, "held");
        assert!(b.entry.control.is_holding());
        drop(a);
        assert_eq!(s.len(), 1);
        drop(b);
        assert!(s.is_empty());
    }

    #[test]
    fn commands_wake_the_session_and_the_strongest_wins() {
        use std::task::Wake;
        struct Count(AtomicU64);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let c = Control::default();
        assert_eq!(c.take(), None);
        let count = Arc::new(Count(AtomicU64::new(0)));
        c.register(&Waker::from(count.clone()));
        c.post(Command::Cancel);
        c.terminate("dana");
        c.post(Command::Cancel);
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        assert_eq!(c.take(), Some(Command::Terminate));
        assert_eq!(c.take(), None);
        assert_eq!(c.terminated_by().as_deref(), Some("dana"));
    }
}
