//! The audit trail of one session: one event when it starts and ends, and
//! one per statement, emitted when the statement's outcome is known (its
//! CommandComplete or error, or that it never ran).
//!
//! A statement waiting for its outcome is kept on the response it is owed
//! in `ProtocolState` (`Answering::audit`): a Query owes a sequence of
//! completions ended by ReadyForQuery, an Execute one completion, a
//! FunctionCall one result. The recorder keeps no table of its own to
//! pair them: the entry at the front of the queue is the one answered,
//! and entries the server skipped come back through
//! `ProtocolState::retired`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::state::{Answering, Prepared};
use crate::audit::event::{list, lit, static_list, text, List, Str, Text};
use crate::audit::record::{Described, Failure, Outcome, SessionContext, StatementRecord};
use crate::audit::{now_us, AuditLog, Event, Kind};
use crate::policy::{Analysis, Statement};
use crate::protocol::{backend, frontend, PgError};

/// What the guard judged for the message just seen.
#[derive(Debug, Default, Clone)]
pub struct Judged {
    /// The statements of a Query or Parse (or of the call a FunctionCall
    /// was judged as).
    pub analysis: Option<Arc<Analysis>>,
    /// SQL pgward judged in place of the message (FunctionCall).
    pub sql: Option<Arc<str>>,
    /// The message's own text as the guard keeps it (an allowed Parse's),
    /// for the owed response to share rather than copy.
    pub text: Option<Arc<str>>,
    /// For an Execute: the prepared statement it is expected to run.
    pub execute: Option<Arc<Prepared>>,
    /// For SQL `EXECUTE name` statements: what each name holds, so the
    /// event shows what runs.
    pub executed: Vec<(String, Arc<Prepared>)>,
}

impl Judged {
    /// How many statements the judged message holds (1 unless a Query or
    /// Parse that parsed into more).
    pub fn statements(&self) -> usize {
        self.analysis
            .as_ref()
            .map_or(1, |a| a.as_ref().as_ref().map_or(1, Vec::len))
    }
}

/// Fields every event of the session carries.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub session_id: Text,
    pub identity: Text,
    pub role: Text,
    pub database: Text,
    pub auth_method: Text,
    pub client_addr: Text,
    pub application_name: Text,
    pub tls: bool,
    pub upstream_user: Text,
    /// How the sign-in was proven beyond the method (a token's issuer).
    pub detail: Text,
}

impl SessionInfo {
    /// The `session_start` event, with everything known about the session.
    fn start_event(&self, who: &SessionContext) -> Event {
        let mut e = who.event(Kind::SessionStart, now_us());
        e.auth_method = self.auth_method.clone();
        e.client_addr = self.client_addr.clone();
        e.application_name = self.application_name.clone();
        e.tls = Some(self.tls);
        e.upstream_user = self.upstream_user.clone();
        e.detail = self.detail.clone();
        e
    }
}

/// One statement waiting for its outcome.
struct Item {
    statement: Str,
    described: Option<Arc<Described>>,
    parameters: Option<Box<(List, List)>>,
    /// Approved under this request, by these approvers.
    approval: Option<Arc<(Str, Str)>>,
}

pub use crate::audit::record::PREPARED;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Query,
    /// A Parse: done at its ParseComplete.
    Parse,
    Execute,
    Call,
}

/// The statements of one message waiting for their outcome, kept on its
/// owed response (`Answering::audit`).
pub struct Pending {
    flow: Flow,
    items: VecDeque<Item>,
    /// When the current item started (the message went upstream, or the
    /// item before it completed).
    mark: Instant,
    data_rows: i64,
    failed: bool,
    /// For an Execute: the statement its portal was bound to is known (the
    /// guess made when it was sent is replaced by what the server holds).
    resolved: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("flow", &self.flow)
            .field("statements", &self.items.len())
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// One statement of a Query waiting for its outcome (unit tests of
    /// the protocol state).
    #[cfg(test)]
    pub(crate) fn waiting_for_test() -> Box<Pending> {
        Pending::new(
            Flow::Query,
            VecDeque::from([bare_item(Str::Static("test"))]),
        )
    }

    fn new(flow: Flow, items: VecDeque<Item>) -> Box<Pending> {
        Box::new(Pending {
            flow,
            items,
            mark: Instant::now(),
            data_rows: 0,
            failed: false,
            resolved: false,
        })
    }
}

pub struct Recorder {
    log: Arc<AuditLog>,
    context: Arc<SessionContext>,
    /// Messages whose statements wait for their outcome on their owed
    /// responses (`Answering::audit`).
    waiting_outcomes: usize,
    /// Bind parameters and their formats by portal, when the config asks.
    params: HashMap<String, Box<(List, List)>>,
    described: DescribedCache,
    /// `session_end` is recorded.
    ended: bool,
    /// The approval the next message runs under (`approved`).
    approval: Option<Arc<(Str, Str)>>,
    /// Events reserved in the audit queue (`admit`) and not yet recorded.
    unused: usize,
    /// The message admitted last is recorded as one event (its
    /// statements did not get room each).
    whole: bool,
    /// Since when a message waits for room, and the writer's count of
    /// events taken then.
    waiting: Option<(Instant, u64)>,
}

/// Whether a message may go on, as far as the audit log is concerned.
#[derive(Debug)]
pub enum Admission {
    Go,
    /// No room for its events now: read nothing more from the client
    /// until there is.
    Wait,
    /// Refused (`on_failure = "deny"`): the log cannot take its events.
    Refuse(PgError),
}

impl Drop for Recorder {
    /// A session whose task was dropped without ending (aborted when the
    /// shutdown's last wait ran out, or a bug that panicked) still ends in
    /// the log (its unfinished statements are handed over by `Core`'s drop).
    fn drop(&mut self) {
        self.close(
            "aborted: the session's task stopped without closing it",
            Vec::new(),
        );
    }
}

impl Recorder {
    pub fn new(log: Arc<AuditLog>, info: SessionInfo) -> Recorder {
        let context = Arc::new(SessionContext {
            session_id: info.session_id.clone(),
            identity: info.identity.clone(),
            role: info.role.clone(),
            database: info.database.clone(),
            allow_rule: text(format!(
                "role {}: allowed",
                info.role.as_deref().unwrap_or("?")
            )),
            quota: Default::default(),
        });
        log.record(info.start_event(&context));
        log.session_opened();
        Recorder {
            log,
            context,
            waiting_outcomes: 0,
            params: HashMap::new(),
            described: DescribedCache::default(),
            ended: false,
            approval: None,
            unused: 0,
            whole: false,
            waiting: None,
        }
    }

    /// Room in the audit queue for the events of the next message, of
    /// `statements` statements, which the guard `denied` or not; `runs`
    /// when, allowed, it runs a statement (not a Parse), so that a log
    /// that cannot be written refuses it under `on_failure = "deny"`.
    ///
    /// A session that has no room waits: it reads no more of its client
    /// until the writer has taken enough of its events (its share is the
    /// queue's capacity over the sessions). Waiting turns into the
    /// `on_failure` behaviour only when the writer has taken nothing from
    /// a non-empty queue for `STALL`.
    pub fn admit(&mut self, statements: usize, denied: bool, runs: bool) -> Admission {
        let refusable = runs && !denied;
        if refusable {
            if let Err(e) = self.log.admit(statements) {
                // Refused: one event says so, whatever it held.
                self.whole = statements > 1;
                return Admission::Refuse(e);
            }
        }
        let capacity = self.log.capacity();
        // A denied message of more statements than fit is one event.
        let want = if denied && statements > capacity {
            1
        } else {
            statements
        };
        if want > capacity {
            // Allowed with on_failure = "allow": recorded as it goes.
            return Admission::Go;
        }
        let quota = &self.context.quota;
        if self.log.reserve(quota, want) {
            self.unused += want;
            self.whole = want < statements;
            self.waiting = None;
            return Admission::Go;
        }
        if denied && want > 1 && self.log.reserve(quota, 1) {
            self.unused += 1;
            self.whole = true;
            self.waiting = None;
            return Admission::Go;
        }
        let (taken, queued) = self.log.progress();
        let now = Instant::now();
        match self.waiting {
            Some((since, t)) if t == taken && queued => {
                if now.saturating_duration_since(since) >= crate::audit::writer::STALL {
                    // The writer is stuck, not slow.
                    self.waiting = None;
                    self.whole = statements > 1;
                    if refusable && self.log.denies_on_failure() {
                        return Admission::Refuse(self.log.stalled());
                    }
                    return Admission::Go;
                }
            }
            _ => self.waiting = Some((now, taken)),
        }
        Admission::Wait
    }

    /// Records a statement's event, in room reserved for it if any is left.
    fn put(&mut self, r: StatementRecord) {
        if self.unused > 0 {
            self.unused -= 1;
            self.log.record_reserved(r);
        } else {
            self.log.record_statement(r);
        }
    }

    /// Nothing waits for its outcome: room reserved and not used is given
    /// back.
    fn settle(&mut self) {
        if self.unused > 0 && self.waiting_outcomes == 0 {
            self.log.release(&self.context.quota, self.unused);
            self.unused = 0;
        }
    }

    /// A client message, after the guard judged it and the protocol state
    /// recorded it: `owed` is its owed response (None when the server
    /// skips it, so what it holds never runs), whose `sql`, when set, is
    /// the message's text (shared, not copied again).
    pub fn on_client(
        &mut self,
        msg: &frontend::Message<'_>,
        owed: Option<&mut Answering>,
        judged: Option<&Judged>,
        denial: Option<&PgError>,
    ) {
        let text = owed.as_ref().and_then(|a| a.sql.clone());
        if let Some(p) = self.on_client_message(msg, text, judged, denial) {
            match owed {
                Some(a) => {
                    self.waiting_outcomes += 1;
                    if let Some(old) = a.audit.replace(p) {
                        self.retire(*old);
                    }
                }
                None => {
                    self.waiting_outcomes += 1;
                    self.retire(*p);
                }
            }
        }
        self.settle();
    }

    /// What waits for the message's outcome, if anything does.
    fn on_client_message(
        &mut self,
        msg: &frontend::Message<'_>,
        text: Option<Arc<str>>,
        judged: Option<&Judged>,
        denial: Option<&PgError>,
    ) -> Option<Box<Pending>> {
        use frontend::Message as M;
        let whole = std::mem::take(&mut self.whole);
        let approval = self.approval.take();
        let approve = |mut items: Vec<Item>| {
            for item in &mut items {
                item.approval = approval.clone();
            }
            items
        };
        match msg {
            M::Query(_) | M::Parse(_) | M::FunctionCall(_) => {
                let sql = match (text, msg.sql()) {
                    (Some(text), _) => Some(Str::Shared(text)),
                    (None, Some(sql)) => Some(Str::from(sql)),
                    (None, None) => judged.and_then(|j| j.sql.clone()).map(Str::Shared),
                };
                let sql = sql.unwrap_or(Str::Static(""));
                let analysis = judged.and_then(|j| j.analysis.as_ref());
                let count = judged.map_or(1, Judged::statements);
                if let (Some(err), true) = (denial, count > 1 && whole) {
                    // More denied statements than the queue had room for:
                    // the message as one event, whole, rather than a gap.
                    self.emit_denied(bare_item(sql), err);
                    return None;
                }
                let executed = judged.map_or(&[][..], |j| &j.executed[..]);
                let items = approve(self.described.items(&sql, analysis, executed));
                match denial {
                    Some(err) => {
                        for item in items {
                            self.emit_denied(item, err);
                        }
                        None
                    }
                    // An allowed Parse runs nothing yet, but puts a statement
                    // on record: done when the server confirms it.
                    None => {
                        let flow = match msg {
                            M::Query(_) => Flow::Query,
                            M::Parse(_) => Flow::Parse,
                            _ => Flow::Call,
                        };
                        Some(Pending::new(flow, items.into()))
                    }
                }
            }
            // A Bind refused with its values (a statement judged at Bind):
            // the statement as judged, with the values, is the event.
            M::Bind(bind) if denial.is_some() => {
                let err = denial?;
                let sql = judged
                    .and_then(|j| j.sql.clone())
                    .map_or(Str::Static(""), Str::Shared);
                let analysis = judged.and_then(|j| j.analysis.as_ref());
                let parameters = bind_parameters(bind)
                    .filter(|_| self.log.records_parameters())
                    .map(Box::new);
                for mut item in self.described.items(&sql, analysis, &[]) {
                    item.parameters = parameters.clone();
                    self.emit_denied(item, err);
                }
                None
            }
            M::Bind(bind) if self.log.records_parameters() => {
                if let Some((params, formats)) = bind_parameters(bind) {
                    self.params
                        .insert(bind.portal.to_owned(), Box::new((params, formats)));
                }
                None
            }
            M::Execute(execute) => {
                let portal = execute.portal;
                let parameters = self.params.get(portal).cloned();
                let mut item = match judged.and_then(|j| j.execute.as_ref()) {
                    Some(p) => self.described.prepared_item(p),
                    None => bare_item(Str::from(format!("EXECUTE portal \"{portal}\""))),
                };
                item.parameters = parameters;
                item.approval = approval.clone();
                match denial {
                    Some(err) => {
                        self.emit_denied(item, err);
                        None
                    }
                    None => Some(Pending::new(Flow::Execute, VecDeque::from([item]))),
                }
            }
            _ => None,
        }
    }

    /// Messages the server read without an answer (skipped after an error
    /// until Sync, taken from `ProtocolState::retired`): their statements
    /// never ran.
    pub fn catch_up(&mut self, retired: &mut Vec<Pending>) {
        for p in retired.drain(..) {
            self.retire(p);
        }
        self.settle();
    }

    fn retire(&mut self, p: Pending) {
        self.waiting_outcomes = self.waiting_outcomes.saturating_sub(1);
        self.finish_rest(p, Outcome::NotRun, None);
    }

    /// A server message, before the protocol state consumes it; `front`
    /// is what the message it answers answers (`ProtocolState::
    /// front_answering_mut`, after `ProtocolState::prepare_front`).
    pub fn on_backend(&mut self, msg: &backend::Message<'_>, front: Option<&mut Answering>) {
        if let Some(a) = front {
            let Answering {
                audit, prepared, ..
            } = a;
            if let Some(p) = audit.as_deref_mut() {
                if let Some(outcome) = self.on_backend_message(msg, p, prepared.as_ref()) {
                    if let Some(p) = audit.take() {
                        self.waiting_outcomes = self.waiting_outcomes.saturating_sub(1);
                        self.finish_rest(*p, outcome, None);
                    }
                }
            }
        }
        self.settle();
    }

    /// Handles `msg` for the statements `p` waiting on the front entry;
    /// when the message is done with, the outcome of those left.
    fn on_backend_message(
        &mut self,
        msg: &backend::Message<'_>,
        p: &mut Pending,
        bound: Option<&Arc<Prepared>>,
    ) -> Option<Outcome> {
        use backend::Message as M;
        if p.flow == Flow::Execute && !p.resolved {
            p.resolved = true;
            // The audit names the statement the server ran.
            if let (Some(prepared), Some(item)) = (bound, p.items.front_mut()) {
                let parameters = item.parameters.take();
                *item = self.described.prepared_item(prepared);
                item.parameters = parameters;
            }
        }
        match msg {
            M::ParseComplete if p.flow == Flow::Parse => {
                let duration = p.mark.elapsed();
                if let Some(item) = p.items.pop_front() {
                    let mut r = self.statement(item, Outcome::Ok, Some(PREPARED));
                    r.duration_us = Some(duration.as_micros() as i64);
                    self.put(r);
                }
                return Some(Outcome::Ok);
            }
            M::DataRow(_) => p.data_rows += 1,
            M::CommandComplete(_)
            | M::PortalSuspended
            | M::EmptyQueryResponse
            | M::FunctionCallResponse(_) => {
                let rows = match msg {
                    M::CommandComplete(c) => c.rows(),
                    M::PortalSuspended => Some(p.data_rows),
                    _ => None,
                };
                let detail = matches!(msg, M::PortalSuspended).then_some("portal suspended");
                let now = Instant::now();
                let duration = now.saturating_duration_since(p.mark);
                p.mark = now;
                p.data_rows = 0;
                let done = p.flow == Flow::Execute;
                if let Some(item) = p.items.pop_front() {
                    let mut r = self.statement(item, Outcome::Ok, detail);
                    r.duration_us = Some(duration.as_micros() as i64);
                    r.rows = rows;
                    self.put(r);
                }
                if done {
                    return Some(Outcome::Ok);
                }
            }
            M::ErrorResponse(e) => {
                let (code, message) = (e.code(), e.message());
                let duration = p.mark.elapsed();
                p.failed = true;
                let done = matches!(p.flow, Flow::Execute | Flow::Parse);
                let detail = (p.flow == Flow::Parse).then_some(PREPARED);
                if let Some(item) = p.items.pop_front() {
                    let mut r = self.statement(item, Outcome::Error, detail);
                    r.duration_us = Some(duration.as_micros() as i64);
                    r.failure = Some(Box::new(Failure {
                        sqlstate: text(&*code),
                        message: text(&*message),
                        rule: None,
                    }));
                    self.put(r);
                }
                if done {
                    return Some(Outcome::Ok);
                }
            }
            M::ReadyForQuery(_) => {
                return Some(if p.failed {
                    Outcome::NotRun
                } else {
                    Outcome::Ok
                });
            }
            _ => {}
        }
        None
    }

    /// The next client message (the one held) runs under approval `id`,
    /// given by `by`: its statements' events say so.
    pub fn approved(&mut self, id: u64, by: &[String]) {
        self.approval = Some(Arc::new((text_of(id), Str::from(by.join(", ")))));
    }

    /// A statement held for approval as request `id`.
    /// `why`: the role's rule that asked; `reason`: the requester's.
    pub fn approval_requested(
        &mut self,
        id: u64,
        statement: &Arc<str>,
        classes: &str,
        why: &str,
        reason: Option<&str>,
    ) {
        let mut e = self.context.event(Kind::ApprovalRequest, now_us());
        e.approval_id = Some(text_of(id));
        e.statement = Some(Str::Shared(statement.clone()));
        e.classes = list(classes.split(',').map(str::trim).filter(|c| !c.is_empty()));
        e.decision = lit("hold");
        e.rule = text(why);
        e.detail = reason.map(Str::from);
        self.log.record(e);
    }

    /// How request `id` ended: `outcome` is approved, denied, expired or
    /// withdrawn; `by` who decided; `detail` the reason.
    pub fn approval_decided(
        &mut self,
        id: u64,
        outcome: &'static str,
        by: Option<String>,
        detail: Option<String>,
    ) {
        let mut e = self.context.event(Kind::ApprovalDecision, now_us());
        e.approval_id = Some(text_of(id));
        e.outcome = lit(outcome);
        e.approver = by.map(Str::from);
        e.detail = detail.map(Str::from);
        self.log.record(e);
    }

    /// The session is over: the statements still waiting (taken from
    /// what the session still owed) were interrupted.
    pub fn end(mut self, how: &str, waiting: Vec<Pending>) {
        self.close(how, waiting);
    }

    fn close(&mut self, how: &str, waiting: Vec<Pending>) {
        if self.ended {
            return;
        }
        self.ended = true;
        for p in waiting {
            self.finish_rest(
                p,
                Outcome::Interrupted,
                Some("the session ended before the statement finished"),
            );
        }
        self.waiting_outcomes = 0;
        let mut e = self.context.event(Kind::SessionEnd, now_us());
        e.detail = text(how);
        self.log.record(e);
        self.log.release(&self.context.quota, self.unused);
        self.unused = 0;
        self.log.session_closed();
    }

    fn finish_rest(&mut self, p: Pending, outcome: Outcome, detail: Option<&'static str>) {
        let detail = detail.or((p.flow == Flow::Parse).then_some(PREPARED));
        for item in p.items {
            let r = self.statement(item, outcome, detail);
            self.put(r);
        }
    }

    /// The event of `item`, as the writer's queue takes it.
    fn statement(
        &self,
        item: Item,
        outcome: Outcome,
        detail: Option<&'static str>,
    ) -> StatementRecord {
        StatementRecord {
            time_us: now_us(),
            session: self.context.clone(),
            statement: item.statement,
            described: item.described,
            outcome,
            detail,
            rows: None,
            duration_us: None,
            failure: None,
            parameters: item.parameters,
            approval: item.approval,
        }
    }

    fn emit_denied(&mut self, item: Item, err: &PgError) {
        let mut r = self.statement(item, Outcome::Denied, None);
        r.failure = Some(Box::new(Failure {
            sqlstate: text(err.code.as_ref()),
            message: text(err.message.as_str()),
            rule: err
                .hint
                .as_deref()
                .map(|h| Str::from(h.strip_prefix("rule: ").unwrap_or(h))),
        }));
        self.put(r);
    }
}

/// What the audit log says about a classified statement, built once per
/// cached classification: its fingerprint, classes and tables.
fn describe(st: &Statement) -> Arc<Described> {
    let mut classes: Vec<&'static str> = st.reasons.iter().map(|r| r.class.name()).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut tables: Vec<String> = st.relations.iter().map(|r| r.qualified()).collect();
    tables.sort_unstable();
    tables.dedup();
    Arc::new(Described {
        fingerprint: Some(st.fingerprint())
            .filter(|f| !f.is_empty())
            .map(Str::from),
        classes: static_list(classes),
        tables: list(tables),
    })
}

fn item(described: Arc<Described>, statement: Str) -> Item {
    Item {
        statement,
        described: Some(described),
        parameters: None,
        approval: None,
    }
}

/// Keeps a cached classification alive while its description is cached,
/// so the address it is cached under cannot be reused by another.
#[allow(dead_code)]
enum Holder {
    Analysis(Arc<Analysis>),
}

/// Descriptions a session keeps, by the address of the classification.
const DESCRIBED: usize = 64;

#[derive(Default)]
struct DescribedCache(HashMap<(usize, usize), (Holder, Arc<Described>)>);

impl DescribedCache {
    fn get(
        &mut self,
        key: (usize, usize),
        holder: impl FnOnce() -> Holder,
        st: &Statement,
    ) -> Arc<Described> {
        if let Some((_, d)) = self.0.get(&key) {
            return d.clone();
        }
        if self.0.len() >= DESCRIBED {
            self.0.clear();
        }
        let d = describe(st);
        self.0.insert(key, (holder(), d.clone()));
        d
    }

    /// The statements of a message as audit items. A single statement
    /// shows the text the client sent (its classification may be shared
    /// with another text of the same shape).
    fn items(
        &mut self,
        sql: &Str,
        analysis: Option<&Arc<Analysis>>,
        executed: &[(String, Arc<Prepared>)],
    ) -> Vec<Item> {
        let Some(a) = analysis else {
            return vec![bare_item(sql.clone())];
        };
        let Ok(statements) = a.as_ref() else {
            // Did not parse: the text as sent.
            return vec![bare_item(sql.clone())];
        };
        let base = Arc::as_ptr(a) as usize;
        statements
            .iter()
            .enumerate()
            .map(|(i, st)| {
                // `EXECUTE name` is described by what it runs.
                let runs = st.executes.as_ref().and_then(|name| {
                    let (_, p) = executed.iter().find(|(n, _)| n == name)?;
                    Some((p.analysis(), p.statement()?))
                });
                let d = match runs {
                    Some(((analysis, index), prepared)) => {
                        let key = (Arc::as_ptr(analysis) as usize, index);
                        self.get(key, || Holder::Analysis(analysis.clone()), prepared)
                    }
                    None => self.get((base, i), || Holder::Analysis(a.clone()), st),
                };
                let text = if statements.len() == 1 {
                    sql.clone()
                } else {
                    Str::from(st.text.as_str())
                };
                item(d, text)
            })
            .collect()
    }

    /// A prepared statement as an audit item: its text as the client sent
    /// it, with its classification's description.
    fn prepared_item(&mut self, p: &Arc<Prepared>) -> Item {
        let sql = Str::Shared(p.sql.clone());
        let (analysis, index) = p.analysis();
        match p.statement() {
            Some(st) => {
                let key = (Arc::as_ptr(analysis) as usize, index);
                let d = self.get(key, || Holder::Analysis(analysis.clone()), st);
                item(d, sql)
            }
            None => bare_item(sql),
        }
    }
}

fn bare_item(statement: Str) -> Item {
    Item {
        statement,
        described: None,
        parameters: None,
        approval: None,
    }
}

/// A Bind's parameters (text as is, binary as `\x` hex, NULL as NULL) and
/// their formats ("text" or "binary").
fn bind_parameters(bind: &frontend::Bind<'_>) -> Option<(List, List)> {
    let values = bind.values()?;
    let mut out = Vec::with_capacity(values.len());
    let mut shown_formats = Vec::with_capacity(values.len());
    for v in &values {
        shown_formats.push(Some(Str::Static(if v.binary { "binary" } else { "text" })));
        let Some(bytes) = v.bytes else {
            out.push(None);
            continue;
        };
        let shown: Str = if v.binary {
            crate::protocol::messages::bytea_hex(bytes).into()
        } else {
            Str::from(&*String::from_utf8_lossy(bytes))
        };
        out.push(Some(shown));
    }
    Some((Some(out.into()), Some(shown_formats.into())))
}

fn text_of(id: u64) -> Str {
    Str::from(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> SessionInfo {
        SessionInfo {
            session_id: text(id),
            identity: text("alice"),
            role: text("analyst"),
            database: text("db"),
            auth_method: text("scram-sha-256"),
            client_addr: text("127.0.0.1:5"),
            application_name: None,
            tls: false,
            upstream_user: text("reader"),
            detail: None,
        }
    }

    #[test]
    fn a_session_dropped_without_ending_still_ends_in_the_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::AuditConfig {
            dir: dir.path().to_owned(),
            instance: Some("t".into()),
            ..Default::default()
        };
        let log = Arc::new(AuditLog::start(&cfg).unwrap());
        // A Query went upstream and its answer never came back: the
        // statement waits on its owed response, in the session's core.
        let aborted = Recorder::new(log.clone(), info("a"));
        let mut core = super::super::relay::Core::new(None, Some(aborted), b'I', 1 << 20, 100);
        let mut cin = bytes::BytesMut::from(&b"Q\0\0\0\x18SELECT pg_sleep(60)\0"[..]);
        let mut to_up = bytes::BytesMut::new();
        assert!(core.on_client_data(&mut cin, &mut to_up).is_ok());
        assert_eq!(core.state.owed.len(), 1);
        drop(core);
        let mut ended = Recorder::new(log.clone(), info("b"));
        let query = |body| frontend::Message::parse(b'Q', body).unwrap();
        let mut owed = Answering::default();
        ended.on_client(&query(b"SELECT 1\0"), Some(&mut owed), None, None);
        assert!(owed.audit.is_some(), "the statement waits on its response");
        ended.end(
            "client terminated the session",
            owed.audit.take().map(|p| *p).into_iter().collect(),
        );
        assert!(log.rotate_now(std::time::Duration::from_secs(20)));
        let events = crate::audit::files::read_all(dir.path()).unwrap();
        let of = |id: &str, kind: Kind| -> Vec<&Event> {
            events
                .iter()
                .filter(|e| e.session_id.as_deref() == Some(id) && e.kind == kind)
                .collect()
        };
        let end = of("a", Kind::SessionEnd);
        assert_eq!(end.len(), 1);
        assert!(end[0].detail.as_deref().unwrap().starts_with("aborted"));
        assert_eq!(end[0].identity.as_deref(), Some("alice"));
        let st = of("a", Kind::Statement);
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].statement.as_deref(), Some("SELECT pg_sleep(60)"));
        assert_eq!(st[0].outcome.as_deref(), Some("interrupted"));
        // Ended the usual way: one end, not a second one from the drop.
        let end = of("b", Kind::SessionEnd);
        assert_eq!(end.len(), 1);
        assert_eq!(
            end[0].detail.as_deref(),
            Some("client terminated the session")
        );
        log.close();
    }

    fn rows_of_tag(body: &[u8]) -> Option<i64> {
        match backend::Message::parse(b'C', body) {
            backend::Message::CommandComplete(c) => c.rows(),
            _ => unreachable!("'C' is a CommandComplete"),
        }
    }

    /// The Bind `body` is, for `bind_parameters`.
    fn bind_of(body: &[u8]) -> frontend::Bind<'_> {
        match frontend::Message::parse(b'B', body) {
            Ok(frontend::Message::Bind(b)) => b,
            other => panic!("not a Bind: {other:?}"),
        }
    }

    #[test]
    fn row_counts_come_from_command_tags() {
        assert_eq!(rows_of_tag(b"SELECT 3\0"), Some(3));
        assert_eq!(rows_of_tag(b"INSERT 0 7\0"), Some(7));
        assert_eq!(rows_of_tag(b"COPY 12\0"), Some(12));
        assert_eq!(rows_of_tag(b"CREATE TABLE\0"), None);
        assert_eq!(rows_of_tag(b"BEGIN\0"), None);
        assert_eq!(rows_of_tag(b"SELECT\0"), None);
    }

    #[test]
    fn bind_parameters_are_decoded_and_bad_binds_are_not() {
        // Portal "p", statement "s", formats [text, binary, binary], 3 params.
        let mut b = b"p\0s\0\0\x03\0\0\0\x01\0\x01\0\x03".to_vec();
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(b"42");
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&[0xab, 0x01]);
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        let (params, formats) = bind_parameters(&bind_of(&b)).unwrap();
        let formats: Vec<&str> = formats
            .iter()
            .flat_map(|f| f.iter())
            .flatten()
            .map(|f| &**f)
            .collect();
        assert_eq!(formats, vec!["text", "binary", "binary"]);
        let shown: Vec<Option<&str>> = params
            .iter()
            .flat_map(|p| p.iter())
            .map(|p| p.as_deref())
            .collect();
        assert_eq!(shown, vec![Some("42"), Some("\\xab01"), None]);
        let mut ok = b"p\0s\0\0\x01\0\0\0\x03".to_vec();
        ok.extend_from_slice(&2i32.to_be_bytes());
        ok.extend_from_slice(b"42");
        ok.extend_from_slice(&0i32.to_be_bytes());
        ok.extend_from_slice(&(-1i32).to_be_bytes());
        let bind = bind_of(&ok);
        let (params, _) = bind_parameters(&bind).unwrap();
        assert_eq!(bind.portal, "p");
        let params = params.unwrap();
        assert_eq!(params[0].as_deref(), Some("42"));
        assert_eq!(params[1].as_deref(), Some(""));
        assert_eq!(params[2], None);
        assert_eq!(
            bind_parameters(&bind_of(b"p\0s\0\0\x01\0\0\0\x01\0\0\0\x09ab")),
            None
        );
        // Two format codes for three parameters: not a valid Bind.
        let mut bad = b"p\0s\0\0\x02\0\0\0\x01\0\x03".to_vec();
        bad.extend_from_slice(&ok[12..]);
        assert_eq!(bind_parameters(&bind_of(&bad)), None);
    }
}
