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

/// What a grant made by approving `text` covers: a key equal for texts
/// that parse to the same statements with other number and string
/// constants, and different for anything else. Unlike pg_query's
/// fingerprint, which is made to group statements for statistics and so
/// ignores the table behind an alias and the schema of a table read or
/// written, the body of a `DO` or `CREATE FUNCTION`, role names, the new
/// name of a `RENAME`, prepared statement names, the order of arguments,
/// columns and select lists, repeated items, and everything nested more
/// than 100 levels deep, this is the whole parse tree: only constants
/// (other than booleans, NULL and type modifiers such as `varchar(10)`),
/// positions, whitespace and comments may differ. `None` when the text
/// does not parse, or parses otherwise with `standard_conforming_strings`
/// off. Keyed with a secret of this process, so nobody can
/// work out two texts with the same key.
pub fn grant_key(text: &str) -> Option<u64> {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    // Trees nest as deep as the text: built, walked and dropped on a stack
    // sized for it, as every parse in pgward is.
    let canonical = crate::policy::stack::on(crate::policy::stack::for_sql(text.len()), || {
        let tree = |options: pg_query::ParserOptions| {
            let parsed = pg_query::parse(text, options).ok()?;
            let mut tree = serde_json::to_value(&parsed.protobuf).ok()?;
            canonical(&mut tree, false);
            serde_json::to_string(&tree).ok()
        };
        let standard = tree(pg_query::ParserOptions::DEFAULT)?;
        // A session with standard_conforming_strings off reads `'a\' ...'`
        // otherwise: a text whose meaning depends on that has no key (the
        // same key could stand for two statements).
        if text.contains('\\')
            && tree(pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS).as_ref()
                != Some(&standard)
        {
            return None;
        }
        Some(standard)
    })
    .ok()
    .flatten()?;
    Some(
        KEY.get_or_init(std::collections::hash_map::RandomState::new)
            .hash_one(canonical),
    )
}

/// Strips from a parse tree (as JSON) what may differ between statements a
/// grant covers: positions, and the values of constants outside type
/// modifiers (booleans and NULL kept).
fn canonical(v: &mut serde_json::Value, in_typmods: bool) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            map.retain(|k, _| {
                !(k == "location"
                    || k.ends_with("_location")
                    || matches!(
                        k.as_str(),
                        "stmt_len"
                            | "list_start"
                            | "list_end"
                            | "rexpr_list_start"
                            | "rexpr_list_end"
                    ))
            });
            for (k, child) in map.iter_mut() {
                if k == "AConst" && !in_typmods {
                    if let Value::Object(c) = child {
                        c.remove("location");
                        // {"Ival": {"ival": 5}}: the kind stays, the value goes.
                        if let Some(Value::Object(val)) = c.get_mut("val") {
                            for (kind, value) in val.iter_mut() {
                                if kind != "Boolval" {
                                    *value = Value::Null;
                                }
                            }
                        }
                    }
                    continue;
                }
                canonical(child, in_typmods || k == "typmods");
            }
        }
        Value::Array(items) => {
            for item in items {
                canonical(item, in_typmods);
            }
        }
        _ => {}
    }
}

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
    /// Why the requester runs it, as they said (`pgward.reason`).
    pub reason: Option<String>,
    pub statement: Arc<str>,
    /// What it would do while it runs (`risk::summary`).
    pub risk: String,
    /// Grant keys of its statements (`grant_key`; empty when one does not
    /// parse): what a grant made by approving it covers.
    pub fingerprints: Vec<u64>,
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
    /// The grant window each approver asked for (`APPROVE n FOR ...`).
    windows: Vec<Option<Duration>>,
    tx: oneshot::Sender<Verdict>,
}

/// A standing approval: the same statements (by `grant_key`: constants
/// may differ) from the same identity and role, in the same database, run
/// without asking until it expires or is revoked.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: u64,
    /// The request whose approval made it.
    pub request: Arc<Request>,
    pub granted_by: Vec<String>,
    pub granted_at: SystemTime,
    pub expires_at: SystemTime,
    /// Statements it let run.
    pub uses: u64,
}

/// A grant a held statement ran under, for its audit events.
#[derive(Debug, Clone)]
pub struct Granted {
    pub grant: u64,
    pub request: u64,
    pub by: Vec<String>,
    pub expires_at: SystemTime,
}

/// Why an approver's answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    NoSuchRequest(u64),
    OwnRequest(u64),
    AlreadyApproved(u64),
    /// A grant window asked for a request whose statement has no
    /// fingerprint (it did not parse).
    NoFingerprint(u64),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::NoSuchRequest(id) => write!(f, "no pending request {id}"),
            AnswerError::OwnRequest(id) => write!(
                f,
                "request {id} is your own: another approver must decide it"
            ),
            AnswerError::NoFingerprint(id) => write!(
                f,
                "request {id} cannot be granted for a time: its statement could not be fingerprinted; approve it once"
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
    /// The statement runs now (and grant n covers it from now on).
    Released(Option<u64>),
    /// It needs this many more approvers.
    NeedsMore(usize),
}

#[derive(Default)]
pub struct Queue {
    next: AtomicU64,
    pending: Mutex<BTreeMap<u64, Pending>>,
    history: Mutex<VecDeque<Decided>>,
    next_grant: AtomicU64,
    grants: Mutex<Vec<Grant>>,
}

/// What a new request says, before it has an id.
pub struct Ask {
    pub identity: String,
    pub role: String,
    pub session: u64,
    pub database: String,
    pub classes: String,
    pub why: String,
    pub reason: Option<String>,
    pub statement: Arc<str>,
    pub risk: String,
    pub fingerprints: Vec<u64>,
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
            reason: ask.reason,
            statement: ask.statement,
            risk: ask.risk,
            fingerprints: ask.fingerprints,
            approvals_needed: ask.approvals_needed.max(1),
        });
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            id,
            Pending {
                request: request.clone(),
                approvers: Vec::new(),
                windows: Vec::new(),
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

    /// `by` approves request `id` (nobody approves their own); with a
    /// `window`, asks that the same statements from the same identity run
    /// without asking for that long (a grant, made only when every
    /// approver of the request asked for one: the shortest window wins).
    pub fn approve(
        &self,
        id: u64,
        by: &str,
        window: Option<Duration>,
    ) -> Result<Approved, AnswerError> {
        let mut pending = self.lock();
        let p = pending.get_mut(&id).ok_or(AnswerError::NoSuchRequest(id))?;
        if p.request.identity == by {
            return Err(AnswerError::OwnRequest(id));
        }
        if p.approvers.iter().any(|a| a == by) {
            return Err(AnswerError::AlreadyApproved(id));
        }
        if window.is_some() && p.request.fingerprints.is_empty() {
            return Err(AnswerError::NoFingerprint(id));
        }
        p.approvers.push(by.to_owned());
        p.windows.push(window);
        if p.approvers.len() < p.request.approvals_needed {
            return Ok(Approved::NeedsMore(
                p.request.approvals_needed - p.approvers.len(),
            ));
        }
        let Some(p) = pending.remove(&id) else {
            return Err(AnswerError::NoSuchRequest(id));
        };
        drop(pending);
        let window = p
            .windows
            .iter()
            .copied()
            .collect::<Option<Vec<Duration>>>()
            .and_then(|w| w.into_iter().min());
        let grant = window.map(|w| {
            let now = SystemTime::now();
            let id = self.next_grant.fetch_add(1, Ordering::Relaxed) + 1;
            self.lock_grants().push(Grant {
                id,
                request: p.request.clone(),
                granted_by: p.approvers.clone(),
                granted_at: now,
                expires_at: now + w,
                uses: 0,
            });
            id
        });
        let verdict = Verdict::Approved { by: p.approvers };
        self.decided(p.request, verdict.clone());
        // The session may have gone meanwhile: then nothing runs.
        let _ = p.tx.send(verdict);
        Ok(Approved::Released(grant))
    }

    fn lock_grants(&self) -> std::sync::MutexGuard<'_, Vec<Grant>> {
        let mut g = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        g.retain(|g| g.expires_at > now);
        g
    }

    /// The live grant that covers statements of these `fingerprints` from
    /// `identity` as `role` in `database`, if any (counted as used).
    pub fn granted(
        &self,
        identity: &str,
        role: &str,
        database: &str,
        fingerprints: &[u64],
    ) -> Option<Granted> {
        if fingerprints.is_empty() {
            return None;
        }
        let mut grants = self.lock_grants();
        let g = grants.iter_mut().find(|g| {
            g.request.identity == identity
                && g.request.role == role
                && g.request.database == database
                && fingerprints
                    .iter()
                    .all(|f| g.request.fingerprints.contains(f))
        })?;
        g.uses += 1;
        Some(Granted {
            grant: g.id,
            request: g.request.id,
            by: g.granted_by.clone(),
            expires_at: g.expires_at,
        })
    }

    /// The live grants, oldest first.
    pub fn grants(&self) -> Vec<Grant> {
        self.lock_grants().clone()
    }

    /// Ends grant `id` now; the grant, if it was live.
    pub fn revoke(&self, id: u64) -> Option<Grant> {
        let mut grants = self.lock_grants();
        let at = grants.iter().position(|g| g.id == id)?;
        Some(grants.remove(at))
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
            reason: None,
            statement: "CREATE TABLE t (a int)".into(),
            risk: String::new(),
            fingerprints: vec![1, 2],
            approvals_needed,
        }
    }

    /// Grant keys: other constants, whitespace and comments are the same
    /// statement; anything else that changes what runs is not (each pair
    /// below but the last had one pg_query fingerprint, the grant key
    /// before).
    #[test]
    fn grant_keys_differ_for_statements_that_do_other_things() {
        let key = |t: &str| grant_key(t).unwrap_or_else(|| panic!("{t} parses"));
        let same = [
            (
                "ALTER TABLE g1 ALTER COLUMN a SET DEFAULT 1",
                "alter table g1 alter column a set default 2",
            ),
            (
                "DELETE FROM t WHERE id = 5",
                "/* reason: INC-1 */ DELETE  FROM t\nWHERE id = 7 -- why",
            ),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a} / {b}");
        }
        let deep =
            |inner: &str| format!("SELECT {}{inner}{}", "1 + (".repeat(120), ")".repeat(120));
        let differ = [
            // The table behind an alias, the schema of a table in DML.
            ("DELETE FROM scratch s WHERE s.id = 1", "DELETE FROM important s WHERE s.id = 1"),
            ("SELECT * FROM hr.holidays h", "SELECT * FROM hr.salaries h"),
            ("DELETE FROM scratch.t WHERE id = 1", "DELETE FROM public.t WHERE id = 1"),
            // Bodies and languages.
            ("DO $$BEGIN PERFORM 1; END$$", "DO $$BEGIN DROP TABLE important; END$$"),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'BEGIN DROP TABLE important; RETURN 1; END'",
            ),
            // Names the fingerprint leaves out.
            ("GRANT SELECT ON t TO reader", "GRANT SELECT ON t TO postgres"),
            ("ALTER ROLE reader NOLOGIN", "ALTER ROLE dana NOLOGIN"),
            ("ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE t RENAME COLUMN id TO c"),
            ("EXECUTE s1", "EXECUTE s2"),
            ("DEALLOCATE s1", "DEALLOCATE s2"),
            ("COMMIT PREPARED 'a'", "COMMIT PREPARED 'b'"),
            ("NOTIFY a", "NOTIFY b"),
            // Order and repetition in lists.
            ("INSERT INTO t (a, b) VALUES (1, 2)", "INSERT INTO t (b, a) VALUES (1, 2)"),
            ("SELECT a FROM t", "SELECT a, a FROM t"),
            (
                "UPDATE t SET a = coalesce(b, a)",
                "UPDATE t SET a = coalesce(a, b)",
            ),
            // Deep nesting (the fingerprint stops at 100 levels).
            (&deep("1"), &deep("(SELECT count(*) FROM important)")),
            // Constants that are not just values.
            ("DELETE FROM t WHERE false", "DELETE FROM t WHERE true"),
            ("UPDATE t SET a = NULL", "UPDATE t SET a = 1"),
            ("ALTER TABLE t ALTER a TYPE varchar(100)", "ALTER TABLE t ALTER a TYPE varchar(1)"),
            ("SELECT 1", "SELECT 1; DROP TABLE important"),
        ];
        for (a, b) in differ {
            assert_ne!(key(a), key(b), "{a} / {b}");
        }
        assert_eq!(grant_key("SELEC 1"), None);
        // Read with standard_conforming_strings off, this updates every
        // row: no key, so no grant for the one-row form covers it.
        assert!(grant_key("UPDATE t SET a = 'x' WHERE id = 1").is_some());
        assert_eq!(
            grant_key("UPDATE t SET a = 'x\\' WHERE id = 1 --' WHERE true"),
            None
        );
        assert!(grant_key("UPDATE t SET a = E'x\\n' WHERE id = 1").is_some());
    }

    #[tokio::test]
    async fn approve_deny_and_four_eyes() {
        let q = Arc::new(Queue::default());
        let t = q.request(ask("bob", 1), Duration::from_secs(60));
        let id = t.id();
        assert_eq!(q.pending().len(), 1);
        assert_eq!(q.approve(id, "bob", None), Err(AnswerError::OwnRequest(id)));
        assert_eq!(q.deny(id, "bob", "no"), Err(AnswerError::OwnRequest(id)));
        assert_eq!(q.approve(id, "dana", None), Ok(Approved::Released(None)));
        assert_eq!(
            t.await,
            Verdict::Approved {
                by: vec!["dana".into()]
            }
        );
        assert!(q.pending().is_empty());
        assert_eq!(
            q.approve(id, "dana", None),
            Err(AnswerError::NoSuchRequest(id))
        );

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
        assert_eq!(q.approve(id, "dana", None), Ok(Approved::NeedsMore(1)));
        assert_eq!(
            q.approve(id, "dana", None),
            Err(AnswerError::AlreadyApproved(id))
        );
        assert_eq!(q.approve(id, "erin", None), Ok(Approved::Released(None)));
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
        assert_eq!(
            q.approve(id, "dana", None),
            Err(AnswerError::NoSuchRequest(id))
        );
        assert_eq!(q.history()[0].verdict, Verdict::Withdrawn);

        let t = q.request(ask("bob", 1), Duration::from_millis(20));
        assert_eq!(t.await, Verdict::Expired);
        assert!(q.pending().is_empty());
        assert_eq!(q.history()[1].verdict, Verdict::Expired);
    }

    #[tokio::test]
    async fn grants_cover_the_same_statements_of_the_same_identity_until_they_end() {
        let q = Arc::new(Queue::default());
        let hour = Some(Duration::from_secs(3600));
        // Two approvers, one without a window: no grant.
        let t = q.request(ask("bob", 2), Duration::from_secs(60));
        let id = t.id();
        q.approve(id, "dana", hour).unwrap();
        assert_eq!(q.approve(id, "erin", None), Ok(Approved::Released(None)));
        assert!(q.grants().is_empty());
        // Both with windows: the shorter one.
        let t = q.request(ask("bob", 2), Duration::from_secs(60));
        let id = t.id();
        q.approve(id, "dana", hour).unwrap();
        let Ok(Approved::Released(Some(g))) = q.approve(id, "erin", Some(Duration::from_secs(60)))
        else {
            panic!("a grant")
        };
        let grant = &q.grants()[0];
        assert_eq!(grant.id, g);
        let left = grant.expires_at.duration_since(grant.granted_at).unwrap();
        assert_eq!(left, Duration::from_secs(60));
        // Covers a subset of its fingerprints, for bob as app only.
        assert!(q.granted("bob", "app", "postgres", &[2]).is_some());
        assert!(q.granted("bob", "app", "postgres", &[1, 2]).is_some());
        assert!(q.granted("bob", "app", "postgres", &[1, 3]).is_none());
        assert!(q.granted("bob", "other", "postgres", &[1]).is_none());
        assert!(q.granted("carol", "app", "postgres", &[1]).is_none());
        assert!(q.granted("bob", "app", "shop", &[1]).is_none());
        assert!(q.granted("bob", "app", "postgres", &[]).is_none());
        assert_eq!(q.grants()[0].uses, 2);
        assert!(q.revoke(g).is_some());
        assert!(q.granted("bob", "app", "postgres", &[1]).is_none());
        assert!(q.revoke(g).is_none());
        // Expired grants are gone.
        let t = q.request(ask("bob", 1), Duration::from_secs(60));
        let id = t.id();
        q.approve(id, "dana", Some(Duration::from_millis(10)))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(q.granted("bob", "app", "postgres", &[1]).is_none());
        assert!(q.grants().is_empty());
        // A statement without fingerprints is approved once, not granted.
        let mut a = ask("bob", 1);
        a.fingerprints.clear();
        let t = q.request(a, Duration::from_secs(60));
        let id = t.id();
        assert_eq!(
            q.approve(id, "dana", hour),
            Err(AnswerError::NoFingerprint(id))
        );
        assert_eq!(q.approve(id, "dana", None), Ok(Approved::Released(None)));
    }
}
