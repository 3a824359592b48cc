//! The protocol state of one session, kept from the messages that pass:
//! transaction status, prepared statements and portals, and the queue of
//! messages the server has still to answer. It mirrors how the server reads
//! its input: after an error in the extended protocol it skips everything
//! up to Sync (a simple Query too), a COPY FROM STDIN swallows the Syncs
//! and Flushes sent during it, and a Parse, PREPARE, Close or DEALLOCATE
//! changes what a name stands for only once the server confirms it. Policy
//! decisions (which statement a portal runs, where an injected error must
//! go) and the audit read it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::policy::{Analysis, Statement};
pub use crate::protocol::frontend::Malformed;
use crate::protocol::tag::{status, target};
use crate::protocol::{backend, frontend, sqlstate, PgError};

pub use super::recorder::Pending;
use super::rows::{self, Columns, Formats, RowPlan, RowRewriter};
use super::text::SessionText;

/// Statement and portal names to what they stand for. Looked up for every
/// Bind and Execute, so hashed with foldhash (seeded per map, as the
/// session's statement cache is) rather than SipHash.
pub type NameMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;

/// A statement the server holds under a name, or will once its Parse or
/// PREPARE completes: the classification it was judged by, and its text.
#[derive(Debug)]
pub struct Prepared {
    analysis: Arc<Analysis>,
    /// Which statement of `analysis` (a PREPARE may sit in a longer Query).
    index: usize,
    pub sql: Arc<str>,
    /// The generation (of the rules and the catalog) it was last found
    /// allowed under.
    pub allowed_under: AtomicU64,
    /// Its classification is of `sql` with a Bind's values in place (so
    /// `sql` cannot be classified again for it), under this catalog
    /// generation.
    pub values_bound: Option<u64>,
    /// Set when its verdict waits for the parameter values: a Parse that
    /// would be refused as written, but has parameters, is judged again at
    /// each Bind with the values in place (the Parse's declared parameter
    /// types, to cast them as the server will). Never allowed as is.
    pub judged_at_bind: Option<Box<[u32]>>,
    /// Its parameter types as the server reported them (ParameterDescription
    /// of a Describe), for a statement judged at Bind: what a binary value
    /// of a type the Parse left open is.
    described: std::sync::OnceLock<Box<[u32]>>,
    /// Its result columns as the server described them (a Describe of the
    /// statement; formats not yet known there).
    columns: std::sync::OnceLock<Columns>,
    /// How its rows are rewritten, when they are (`Decision::Rewrite`):
    /// planned at its Parse (or Bind), and again at a Bind after the
    /// rules or the catalog changed, since a view replaced under the same
    /// column names changes what its rows are.
    plan: std::sync::Mutex<Option<Arc<RowPlan>>>,
    /// The generation (of the rules and the catalog) `plan` was made under.
    planned_under: AtomicU64,
    /// For a statement judged with a Bind's values: the one the server
    /// holds, which its Describe answered for.
    of: Option<Arc<Prepared>>,
}

impl Prepared {
    pub fn new(analysis: Arc<Analysis>, index: usize, sql: Arc<str>, allowed_under: u64) -> Self {
        Prepared {
            analysis,
            index,
            sql,
            allowed_under: AtomicU64::new(allowed_under),
            values_bound: None,
            judged_at_bind: None,
            described: std::sync::OnceLock::new(),
            columns: std::sync::OnceLock::new(),
            plan: std::sync::Mutex::new(None),
            planned_under: AtomicU64::new(NEVER_ALLOWED),
            of: None,
        }
    }

    /// The same statement, its rows rewritten by `plan`.
    pub fn with_plan(self, plan: Option<Arc<RowPlan>>, generation: u64) -> Self {
        self.set_plan(plan, generation);
        self
    }

    /// How its rows are rewritten now (None: they pass).
    pub fn plan(&self) -> Option<Arc<RowPlan>> {
        // A poisoned lock still holds a plan set whole: use it.
        match self.plan.lock() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces how its rows are rewritten, planned under `generation`.
    pub fn set_plan(&self, plan: Option<Arc<RowPlan>>, generation: u64) {
        match self.plan.lock() {
            Ok(mut p) => *p = plan,
            Err(p) => *p.into_inner() = plan,
        }
        self.planned_under.store(generation, Ordering::Relaxed);
    }

    /// The generation its plan was made under (`NEVER_ALLOWED`: none).
    pub fn planned_under(&self) -> u64 {
        self.planned_under.load(Ordering::Relaxed)
    }

    /// Its result columns, once a Describe of it was answered (for one
    /// judged with a Bind's values: the Describe of the statement bound).
    pub fn columns(&self) -> Option<&Columns> {
        self.columns
            .get()
            .or_else(|| self.of.as_ref().and_then(|of| of.columns.get()))
    }

    /// The type OID of each parameter as far as known (0: not known): the
    /// Parse's declaration, else the server's description.
    pub fn param_types(&self) -> Vec<u32> {
        let declared = self.judged_at_bind.as_deref().unwrap_or(&[]);
        let described = self.described.get().map_or(&[][..], |d| &d[..]);
        (0..declared.len().max(described.len()))
            .map(|i| match declared.get(i) {
                Some(&t) if t != 0 => t,
                _ => described.get(i).copied().unwrap_or(0),
            })
            .collect()
    }

    /// A statement judged with a Bind's values in place (`analysis`), for
    /// its portal.
    pub fn bound(
        analysis: Arc<Analysis>,
        of: Arc<Prepared>,
        allowed_under: u64,
        catalog: u64,
    ) -> Self {
        Prepared {
            values_bound: Some(catalog),
            of: Some(of.clone()),
            ..Prepared::new(analysis, 0, of.sql.clone(), allowed_under)
        }
    }

    /// A statement whose verdict waits for each Bind's values (see
    /// `judged_at_bind`).
    pub fn judged_at_bind(analysis: Arc<Analysis>, sql: Arc<str>, types: Vec<u32>) -> Self {
        Prepared {
            judged_at_bind: Some(types.into()),
            ..Prepared::new(analysis, 0, sql, NEVER_ALLOWED)
        }
    }

    pub fn statement(&self) -> Option<&Statement> {
        self.analysis.as_ref().as_ref().ok()?.get(self.index)
    }

    /// The classification and the statement's place in it (for caches
    /// keyed by where a classification lives).
    pub fn analysis(&self) -> (&Arc<Analysis>, usize) {
        (&self.analysis, self.index)
    }

    pub fn allowed_under(&self) -> u64 {
        self.allowed_under.load(Ordering::Relaxed)
    }

    pub fn set_allowed_under(&self, generation: u64) {
        self.allowed_under.store(generation, Ordering::Relaxed)
    }
}

/// Statements a Bind judged with its values, each with what a portal bound
/// to it runs instead.
pub type BoundAtBind = Box<[(Arc<Prepared>, Arc<Prepared>)]>;

/// What a portal bound to `held` runs: the statement judged with the
/// Bind's values when `held` waited for them (see `Effect::Bound`).
fn bound_in<'a>(
    bound: &'a Option<BoundAtBind>,
    held: Option<&'a Arc<Prepared>>,
) -> Option<&'a Arc<Prepared>> {
    let held = held?;
    match bound.as_deref() {
        Some(pairs) => Some(
            pairs
                .iter()
                .find(|(of, _)| Arc::ptr_eq(of, held))
                .map_or(held, |(_, to)| to),
        ),
        None => Some(held),
    }
}

/// An `allowed_under` no rules generation reaches.
pub const NEVER_ALLOWED: u64 = u64::MAX;

/// What a statement of a Query does to the names of prepared statements
/// once the server completes it.
#[derive(Debug, Clone)]
pub enum Effect {
    None,
    Prepare(String, Arc<Prepared>),
    Deallocate(String),
    DeallocateAll,
    /// A Bind of a statement judged at Bind: the portal runs the second,
    /// the statement judged with the Bind's values, when the name holds
    /// the first once the server reads the Bind.
    Bound(Arc<Prepared>, Arc<Prepared>),
}

/// How pgward let a message through (`Answering::ruling`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ruling {
    /// No guard judged it (the policy is off), or it runs nothing judged.
    #[default]
    Unjudged,
    Pass,
    /// Passed, its rows rewritten (`Answering::plan`).
    Rewrite,
    /// Passed after an approver said yes to it (request id).
    Approved(u64),
    /// Refused: a stand-in went upstream in its place, and the error
    /// answering it is swapped for pgward's.
    Denied,
}

/// What a response owed to the client answers: its statement as judged,
/// the result's columns and formats once known, how its rows are
/// rewritten, and what the audit log waits to hear of it. Kept on the
/// entry itself, so whoever handles a server message finds it at the
/// front of the queue.
#[derive(Debug, Default)]
pub struct Answering {
    /// The text the client sent: a Query's whole text, a Parse's or the
    /// SQL a FunctionCall was judged as, kept when the audit log or a row
    /// planner reads it; for an Execute or a Describe of a portal, the text
    /// of the statement the portal runs, once the server answers it.
    pub sql: Option<Arc<str>>,
    /// The classification of a Query's or Parse's text, when kept.
    pub analysis: Option<Arc<Analysis>>,
    /// For an Execute or a Describe of a portal: the statement the portal
    /// runs, once the server answers it.
    pub prepared: Option<Arc<Prepared>>,
    pub ruling: Ruling,
    /// The rows' rewriters (each statement of a Query may have its own).
    pub plan: Option<Arc<RowPlan>>,
    /// The columns of the rows being sent: a Query's current statement's
    /// RowDescription; an Execute's from the Describe of its portal (or
    /// else of its statement). None: not described to pgward.
    pub columns: Option<Columns>,
    /// The rows' formats: a Bind's result formats for an Execute.
    pub formats: Formats,
    /// Which statement of a Query answers now (0 for other messages).
    pub current: usize,
    /// The audit log's statements waiting for their outcome.
    pub audit: Option<Box<Pending>>,
    /// An Execute's portal was looked up (at the first answer to it).
    resolved: bool,
}

impl Answering {
    /// The rewriter for the rows being sent now, if they are rewritten.
    #[inline]
    pub fn rewriter(&self) -> Option<&Arc<dyn RowRewriter>> {
        self.plan.as_ref()?.get(self.current)
    }

    /// The format of column `i` of the rows being sent (None: unknown).
    pub fn format(&self, i: usize) -> Option<i16> {
        self.formats.of(self.columns.as_deref()?, i)
    }
}

/// A portal the server holds: the statement it runs, the result formats
/// of its Bind and the columns a Describe of it reported.
#[derive(Debug, Default)]
pub struct Portal {
    /// None: held, but its statement is not known to pgward.
    pub runs: Option<Arc<Prepared>>,
    pub formats: Formats,
    pub columns: Option<Columns>,
    /// How its rows are rewritten: its statement's plan when the server
    /// bound it (and fixed what its views are).
    pub plan: Option<Arc<RowPlan>>,
}

/// A client message the server has still to read or answer, in order.
#[derive(Debug)]
pub enum Owed {
    /// A simple Query: rows, completions and errors, then ReadyForQuery.
    /// `effects` holds one entry per statement when any of them prepares
    /// or deallocates.
    Query {
        effects: Option<Box<VecDeque<Effect>>>,
        answering: Answering,
    },
    Parse {
        name: String,
        /// None when no guard judged it: the name then stands for a
        /// statement pgward does not know.
        prepared: Option<Arc<Prepared>>,
        answering: Answering,
    },
    Bind {
        portal: String,
        statement: String,
        /// Statements judged at this Bind with its values, each with what
        /// its portal runs in its place (`Effect::Bound`).
        bound: Option<BoundAtBind>,
        /// The result formats it asks for.
        formats: Formats,
    },
    Describe {
        /// The statement of a Describe of a statement (not a portal).
        statement: Option<String>,
        /// The portal of a Describe of a portal.
        portal: Option<String>,
        answering: Answering,
    },
    Execute {
        portal: String,
        answering: Answering,
    },
    Close {
        kind: u8,
        name: String,
    },
    Sync,
    FunctionCall {
        answering: Answering,
    },
    /// CopyData (consecutive ones as one): read by a COPY FROM STDIN in
    /// progress, ignored by the server otherwise.
    CopyData,
    /// CopyDone or CopyFail: ends a COPY FROM STDIN, ignored otherwise.
    CopyEnd,
}

impl Owed {
    /// What it answers, for a message that runs or describes a statement.
    #[inline]
    pub fn answering(&self) -> Option<&Answering> {
        match self {
            Owed::Query { answering, .. }
            | Owed::Parse { answering, .. }
            | Owed::Describe { answering, .. }
            | Owed::Execute { answering, .. }
            | Owed::FunctionCall { answering } => Some(answering),
            _ => None,
        }
    }

    #[inline]
    pub fn answering_mut(&mut self) -> Option<&mut Answering> {
        match self {
            Owed::Query { answering, .. }
            | Owed::Parse { answering, .. }
            | Owed::Describe { answering, .. }
            | Owed::Execute { answering, .. }
            | Owed::FunctionCall { answering } => Some(answering),
            _ => None,
        }
    }
}

/// What the client gets for a server message (`on_backend_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The message as the server sent it.
    Pass,
    /// It answers a denied message's stand-in: this error instead.
    Deny(PgError),
    /// It is the server's own error for a syntax probe (see
    /// `guard::syntax_probe`): passed on with its position moved back
    /// past the probe's prefix.
    ProbeError,
}

/// Which way COPY data flows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    None,
    In,
    Out,
    Both,
}

#[derive(Debug)]
pub struct ProtocolState {
    /// Status byte of the last ReadyForQuery: 'I', 'T' or 'E'.
    pub tx_status: u8,
    /// Prepared statements the server holds, by name ("" is the unnamed
    /// one). Protocol Parse and SQL PREPARE share this namespace, as in
    /// PostgreSQL. None: held, but not known to pgward.
    pub statements: NameMap<Option<Arc<Prepared>>>,
    /// Portals by name: the statement each was bound to when its
    /// BindComplete arrived, its formats and description.
    pub portals: NameMap<Portal>,
    /// Messages sent upstream and not yet answered, with their index.
    pub owed: VecDeque<(u64, Owed)>,
    pub copy: CopyState,
    /// The server is skipping messages until Sync (an error in the
    /// extended protocol).
    pub skipping: bool,
    /// A denied extended-protocol message was sent since the last Sync:
    /// its stand-in makes the server skip everything up to the next Sync,
    /// so pgward drops those messages instead of judging them.
    pub doomed: bool,
    /// At most this many messages may wait for the server's answer, and
    /// at most this many statements and portals be held: past them the
    /// session ends (54000) instead of growing pgward's memory at everyone's
    /// expense (`server.max_session_pending`).
    pub limit: usize,
    /// Protocol mismatches seen.
    pub anomalies: u64,
    /// pgward can no longer pair the server's messages with the client's:
    /// the session must end.
    pub lost: Option<&'static str>,
    /// Entries pushed so far: the next entry's index.
    pushed: u64,
    /// A row planner may rewrite the rows of the session's role (as of
    /// the last message judged): only then are RowDescriptions decoded
    /// and DataRows, COPY data, errors and notices looked at.
    pub rewrites: bool,
    /// The session's role may have statements held (as of the last
    /// message judged): parameter types are kept to show Bind values.
    pub shows_values: bool,
    /// Audit statements of entries that went without an answer (skipped
    /// after an error, or out of step), for the recorder to close.
    pub retired: Vec<Pending>,
    /// Denied messages by owed index: the upstream error that answers the
    /// stand-in pgward sent is replaced by this one.
    /// Errors owed for denied messages, by index; `true`: the message was
    /// refused as unparsable and its stand-in let the server parse it, whose
    /// own syntax error (with its position and hint) goes to the client.
    denials: VecDeque<(u64, PgError, bool)>,
    /// How the server reads the session's text (client encoding,
    /// standard_conforming_strings), from its ParameterStatus reports.
    pub text: SessionText,
}

impl Default for ProtocolState {
    fn default() -> Self {
        ProtocolState {
            tx_status: status::IDLE,
            statements: NameMap::default(),
            portals: NameMap::default(),
            owed: VecDeque::new(),
            copy: CopyState::None,
            skipping: false,
            doomed: false,
            limit: 100_000,
            anomalies: 0,
            lost: None,
            pushed: 0,
            rewrites: false,
            shows_values: false,
            retired: Vec::new(),
            denials: VecDeque::new(),
            text: SessionText::default(),
        }
    }
}

impl ProtocolState {
    pub fn with_status(tx_status: u8) -> ProtocolState {
        ProtocolState {
            tx_status,
            ..ProtocolState::default()
        }
    }

    pub fn with_limit(self, limit: usize) -> ProtocolState {
        ProtocolState { limit, ..self }
    }

    /// Nothing in flight and outside a transaction block.
    pub fn is_idle(&self) -> bool {
        self.owed.is_empty() && self.tx_status == status::IDLE && self.copy == CopyState::None
    }

    /// Index of the entry pushed last.
    pub fn last_index(&self) -> u64 {
        self.pushed.saturating_sub(1)
    }

    /// Index of the message the server answers next (past the end when
    /// nothing is owed).
    pub fn front_index(&self) -> u64 {
        self.owed.front().map_or(self.pushed, |(i, _)| *i)
    }

    /// Why the session holds more than a session may, if it does.
    pub fn over_limit(&self) -> Option<PgError> {
        let max = self.limit;
        let what = if self.owed.len() > max {
            format!("more than {max} messages waiting for the server's answer")
        } else if self.statements.len() > max {
            format!("more than {max} prepared statements")
        } else if self.portals.len() > max {
            format!("more than {max} open portals")
        } else {
            return None;
        };
        Some(
            PgError::fatal(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("pgward: this session has {what}"),
            )
            .with_hint("send Sync and read the answers before sending more; close statements no longer needed"),
        )
    }

    fn push(&mut self, owed: Owed) {
        self.owed.push_back((self.pushed, owed));
        self.pushed += 1;
        // A message the server will skip is answered by nothing: let it go
        // now, so a client cannot pile them up.
        self.settle();
    }

    fn pop(&mut self) -> Option<Owed> {
        let mut front = self.owed.pop_front().map(|(_, o)| o);
        if let Some(audit) = front
            .as_mut()
            .and_then(Owed::answering_mut)
            .and_then(|a| a.audit.take())
        {
            self.retired.push(*audit);
        }
        self.prune_denials();
        front
    }

    /// The entry pushed last, if it is still owed (a message the server
    /// skips is let go at once).
    pub fn last_answering_mut(&mut self) -> Option<&mut Answering> {
        let last = self.last_index();
        match self.owed.back_mut() {
            Some((i, o)) if *i == last => o.answering_mut(),
            _ => None,
        }
    }

    /// What the message the server answers next answers, if it runs or
    /// describes a statement.
    #[inline]
    pub fn front_answering(&self) -> Option<&Answering> {
        self.owed.front()?.1.answering()
    }

    #[inline]
    pub fn front_answering_mut(&mut self) -> Option<&mut Answering> {
        self.owed.front_mut()?.1.answering_mut()
    }

    /// The rewriter of the rows the server sends now, if they are
    /// rewritten: one match on the front entry.
    #[inline]
    pub fn front_rewriter(&self) -> Option<(&Answering, &Arc<dyn RowRewriter>)> {
        let a = self.front_answering()?;
        Some((a, a.rewriter()?))
    }

    fn prune_denials(&mut self) {
        let front = self.front_index();
        while self.denials.front().is_some_and(|(i, _, _)| *i < front) {
            self.denials.pop_front();
        }
    }

    /// Marks the message just recorded as denied: the error answering it
    /// will be `err`.
    pub fn deny_last(&mut self, err: PgError) {
        self.deny_last_with(err, false)
    }

    /// Marks the message just recorded as refused because pgward's parser
    /// could not parse it, its stand-in a parse of the same text upstream
    /// (see `guard::syntax_probe`): the server's syntax error answers it,
    /// else `err`.
    pub fn deny_last_unparsed(&mut self, err: PgError) {
        self.deny_last_with(err, true)
    }

    fn deny_last_with(&mut self, err: PgError, server_syntax_wins: bool) {
        let last = self.last_index();
        if let Some((i, o)) = self.owed.back_mut() {
            if *i == last {
                if let Some(a) = o.answering_mut() {
                    a.ruling = Ruling::Denied;
                }
                self.denials.push_back((last, err, server_syntax_wins));
            }
        }
    }

    /// Drops the messages at the front the server reads without answering:
    /// everything but Sync while it skips after an error, and COPY messages
    /// outside a COPY.
    pub fn settle(&mut self) {
        while let Some((_, front)) = self.owed.front() {
            let silent = match front {
                Owed::Sync => false,
                // A COPY in progress would be the front, with these behind it.
                Owed::CopyData | Owed::CopyEnd => true,
                _ => self.skipping,
            };
            if !silent {
                break;
            }
            self.pop();
        }
    }

    /// The statements an Execute of `portal` may run, each passed to `f`
    /// (None: a statement pgward does not know). A portal still being
    /// bound may get the statement held now or any a queued Parse or
    /// PREPARE puts in its place. Returns how many; 0 for a portal pgward
    /// never saw bound.
    pub fn execute_candidates(
        &self,
        portal: &str,
        f: &mut dyn FnMut(Option<&Arc<Prepared>>),
    ) -> usize {
        let bind = self
            .owed
            .iter()
            .rposition(|(_, o)| matches!(o, Owed::Bind { portal: p, .. } if p == portal));
        match bind.map(|k| (k, &self.owed[k].1)) {
            Some((
                k,
                Owed::Bind {
                    statement, bound, ..
                },
            )) => self.statement_candidates(statement, k, &mut |p| f(bound_in(bound, p))),
            _ => match self.portals.get(portal) {
                Some(p) => {
                    f(p.runs.as_ref());
                    1
                }
                None => 0,
            },
        }
    }

    /// What `name` may stand for when the server reads the owed message at
    /// position `before`: the statement held now, and every statement the
    /// Parses and PREPAREs queued ahead of it may put in its place.
    pub fn statement_candidates(
        &self,
        name: &str,
        before: usize,
        f: &mut dyn FnMut(Option<&Arc<Prepared>>),
    ) -> usize {
        let mut n = 0;
        if let Some(held) = self.statements.get(name) {
            f(held.as_ref());
            n += 1;
        }
        for (_, o) in self.owed.iter().take(before) {
            match o {
                Owed::Parse {
                    name: queued,
                    prepared,
                    ..
                } if queued == name => {
                    f(prepared.as_ref());
                    n += 1;
                }
                Owed::Query {
                    effects: Some(effects),
                    ..
                } => {
                    for e in effects.iter() {
                        if let Effect::Prepare(queued, p) = e {
                            if queued == name {
                                f(Some(p));
                                n += 1;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        n
    }

    /// Gets the front entry ready for the next server message: drops what
    /// the server skips, and an Execute learns what its portal runs (so
    /// `front_answering` is what that message answers).
    pub fn prepare_front(&mut self) {
        self.settle();
        self.resolve_front();
    }

    /// Takes the audit statements of every entry still owed (the session
    /// is ending) and of those retired.
    pub fn take_waiting(&mut self) -> Vec<Pending> {
        let mut all = std::mem::take(&mut self.retired);
        all.extend(
            self.owed
                .iter_mut()
                .filter_map(|(_, o)| o.answering_mut()?.audit.take().map(|p| *p)),
        );
        all
    }

    /// The Execute the server answers now learns what its portal runs:
    /// the statement, its text and row plan, the Bind's formats and the
    /// columns described. Done once, at the first answer to it.
    fn resolve_front(&mut self) {
        let Some((_, Owed::Execute { portal, answering })) = self.owed.front_mut() else {
            return;
        };
        if answering.resolved {
            return;
        }
        answering.resolved = true;
        let Some(p) = self.portals.get(portal.as_str()) else {
            return;
        };
        answering.formats = p.formats.clone();
        answering.columns = p
            .columns
            .clone()
            .or_else(|| p.runs.as_ref().and_then(|s| s.columns().cloned()));
        if let Some(runs) = &p.runs {
            // What runs is what the server holds, not the guess made when
            // the Execute was sent (a Parse of the name may have come between).
            answering.plan = p.plan.clone();
            if answering.plan.is_some() && answering.ruling == Ruling::Pass {
                answering.ruling = Ruling::Rewrite;
            }
            answering.sql = Some(runs.sql.clone());
            answering.prepared = Some(runs.clone());
        } else {
            answering.plan = None;
        }
    }

    /// Records a client message about to go upstream (read here: the
    /// relay reads each message once and calls `on_frontend_message`).
    pub fn on_frontend(&mut self, tag: u8, body: &[u8]) -> Result<(), Malformed> {
        let msg = frontend::Message::parse(tag, body)?;
        self.on_frontend_message(&msg, &mut Vec::new());
        Ok(())
    }

    /// Records a client message about to go upstream, with what the guard
    /// found it does to prepared statements (taken from `effects`): one
    /// per statement of a Query, the statement a Parse prepares.
    pub fn on_frontend_message(&mut self, msg: &frontend::Message<'_>, effects: &mut Vec<Effect>) {
        use frontend::Message as M;
        match msg {
            M::Query(_) => {
                let effects = (!effects.is_empty())
                    .then(|| Box::new(effects.drain(..).collect::<VecDeque<_>>()));
                self.push(Owed::Query {
                    effects,
                    answering: Answering::default(),
                });
            }
            M::Parse(p) => {
                let prepared = effects.drain(..).find_map(|e| match e {
                    Effect::Prepare(_, p) => Some(p),
                    _ => None,
                });
                self.push(Owed::Parse {
                    name: p.name.to_owned(),
                    prepared,
                    answering: Answering::default(),
                });
            }
            M::Bind(b) => {
                let bound: Vec<_> = effects
                    .drain(..)
                    .filter_map(|e| match e {
                        Effect::Bound(of, to) => Some((of, to)),
                        _ => None,
                    })
                    .collect();
                self.push(Owed::Bind {
                    portal: b.portal.to_owned(),
                    statement: b.statement.to_owned(),
                    bound: (!bound.is_empty()).then(|| bound.into()),
                    formats: b.result_formats().unwrap_or_default(),
                });
            }
            M::Describe(t) => {
                let (statement, portal) = if t.kind == target::STATEMENT {
                    (Some(t.name.to_owned()), None)
                } else {
                    (None, Some(t.name.to_owned()))
                };
                self.push(Owed::Describe {
                    statement,
                    portal,
                    answering: Answering::default(),
                });
            }
            M::Execute(e) => {
                self.push(Owed::Execute {
                    portal: e.portal.to_owned(),
                    answering: Answering::default(),
                });
            }
            M::Close(t) => {
                self.push(Owed::Close {
                    kind: t.kind,
                    name: t.name.to_owned(),
                });
            }
            M::Sync => {
                self.doomed = false;
                self.push(Owed::Sync);
            }
            M::FunctionCall(_) => self.push(Owed::FunctionCall {
                answering: Answering::default(),
            }),
            // With nothing in flight no COPY can be running: ignored.
            M::CopyData(_)
                if !self.owed.is_empty()
                    && !matches!(self.owed.back(), Some((_, Owed::CopyData))) =>
            {
                self.push(Owed::CopyData)
            }
            M::CopyDone | M::CopyFail(_) if !self.owed.is_empty() => self.push(Owed::CopyEnd),
            _ => {}
        }
        effects.clear();
    }

    /// Records a server message about to go to the client (read here: the
    /// relay reads each message once and calls `on_backend_message`).
    pub fn on_backend(&mut self, tag: u8, body: &[u8]) -> Answer {
        self.on_backend_message(&backend::Message::parse(tag, body))
    }

    /// Records a server message about to go to the client, and says what
    /// the client gets for it.
    pub fn on_backend_message(&mut self, msg: &backend::Message<'_>) -> Answer {
        use backend::Message as M;
        self.settle();
        self.resolve_front();
        let mut replacement = None;
        let mut answers_denial = false;
        let mut probe_answered = false;
        if let M::ErrorResponse(e) = msg {
            if self
                .denials
                .front()
                .is_some_and(|(i, _, _)| *i == self.front_index())
            {
                answers_denial = true;
                replacement = self.denials.pop_front().and_then(|(_, err, syntax_wins)| {
                    // The probe parsed: its one complaint is then that it is
                    // more than one statement (raised in exec_parse_message,
                    // whatever language the server speaks). Any other error
                    // is its parser's (a syntax error, an invalid escape, an
                    // unsupported clause, stack depth): the client's answer.
                    let server_syntax =
                        syntax_wins && e.routine() != Some(&b"exec_parse_message"[..]);
                    probe_answered = server_syntax;
                    (!server_syntax).then_some(err)
                });
            }
        }
        match msg {
            M::ParseComplete => match self.pop() {
                Some(Owed::Parse { name, prepared, .. }) => {
                    self.statements.insert(name, prepared);
                }
                _ => self.anomalies += 1,
            },
            M::BindComplete => match self.pop() {
                Some(Owed::Bind {
                    portal,
                    statement,
                    bound,
                    formats,
                }) => {
                    let held = self.statements.get(&statement).and_then(Option::as_ref);
                    let runs = bound_in(&bound, held).cloned();
                    // Only a session whose rows may be rewritten has plans.
                    let plan = runs
                        .as_ref()
                        .filter(|_| self.rewrites)
                        .and_then(|r| r.plan());
                    self.portals.insert(
                        portal,
                        Portal {
                            runs,
                            formats,
                            columns: None,
                            plan,
                        },
                    );
                }
                _ => self.anomalies += 1,
            },
            M::CloseComplete => match self.pop() {
                Some(Owed::Close { kind, name }) => {
                    if kind == target::STATEMENT {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                }
                _ => self.anomalies += 1,
            },
            // RowDescription ends a Describe; in a Query it only announces
            // rows.
            M::RowDescription(_) | M::NoData
                if matches!(self.owed.front(), Some((_, Owed::Describe { .. }))) =>
            {
                if let M::RowDescription(d) = msg {
                    self.described(d);
                }
                self.pop();
            }
            M::RowDescription(d) => {
                // The columns of the rows of a Query's current statement.
                if let (Some((_, Owed::Query { answering, .. })), true) =
                    (self.owed.front_mut(), self.rewrites)
                {
                    answering.columns = rows::decode_columns(d);
                }
            }
            M::ParameterDescription(d) => {
                if let Some((
                    _,
                    Owed::Describe {
                        statement: Some(name),
                        ..
                    },
                )) = self.owed.front()
                {
                    // A statement judged at Bind reads binary values by
                    // them, and a held Execute shows its values with them.
                    if let Some(Some(p)) = self.statements.get(name) {
                        if p.judged_at_bind.is_some() || self.shows_values {
                            if let Some(types) = d.types() {
                                let _ = p.described.set(types.into());
                            }
                        }
                    }
                }
            }
            M::CommandComplete(_) | M::EmptyQueryResponse | M::PortalSuspended
                if matches!(self.owed.front(), Some((_, Owed::Execute { .. }))) =>
            {
                self.end_copy(false);
                self.pop();
            }
            M::CommandComplete(c) => {
                self.end_copy(false);
                self.apply_effect(c);
                self.next_statement();
            }
            M::EmptyQueryResponse => self.next_statement(),
            M::CopyInResponse(_) => self.copy = CopyState::In,
            M::CopyOutResponse(_) => self.copy = CopyState::Out,
            M::CopyBothResponse(_) => self.copy = CopyState::Both,
            M::ErrorResponse(e) => self.on_error(e, answers_denial),
            M::ParameterStatus(p) => self.text.on_parameter_status(*p),
            M::ReadyForQuery(status) => {
                let status = *status;
                let mut ended;
                loop {
                    ended = self.front_index();
                    match self.pop() {
                        Some(Owed::Sync | Owed::Query { .. } | Owed::FunctionCall { .. }) => break,
                        None => {
                            self.anomalies += 1;
                            break;
                        }
                        Some(_) => self.anomalies += 1,
                    }
                }
                self.skipping = false;
                self.tx_status = status;
                self.text.on_ready(ended, status);
                self.copy = CopyState::None;
                if status == status::IDLE {
                    // Portals do not outlive their transaction.
                    self.portals.clear();
                }
            }
            _ => {}
        }
        match (replacement, probe_answered) {
            (Some(err), _) => Answer::Deny(err),
            (None, true) => Answer::ProbeError,
            (None, false) => Answer::Pass,
        }
    }

    fn on_error(&mut self, e: &backend::ErrorFields<'_>, replaced: bool) {
        if !replaced && e.code() == sqlstate::SYNTAX_ERROR && e.message().contains("\"PGWARD\"") {
            // The error of a stand-in nobody is owed a denial for: pgward
            // paired a response with the wrong message.
            self.lost = Some("the server answered a denied message pgward did not expect");
        }
        if e.is_fatal() {
            return;
        }
        self.end_copy(true);
        match self.owed.front_mut() {
            // The rest of the Query does not run; ReadyForQuery follows.
            Some((_, Owed::Query { effects, .. })) => *effects = None,
            Some((_, Owed::FunctionCall { .. } | Owed::Sync)) => {}
            Some((_, Owed::Parse { name, .. })) => {
                // A failing Parse of the unnamed statement has already
                // dropped the one held before; a named one stays.
                if name.is_empty() {
                    self.statements.remove("");
                }
                self.pop();
                self.skipping = true;
            }
            Some(_) => {
                self.pop();
                self.skipping = true;
            }
            None => self.anomalies += 1,
        }
    }

    /// The COPY the front message started is over: the COPY FROM STDIN
    /// read the messages behind it up to its CopyDone (or CopyFail), and
    /// the Syncs and Flushes among them were ignored, not answered.
    fn end_copy(&mut self, failed: bool) {
        if self.copy != CopyState::In && self.copy != CopyState::Both {
            self.copy = CopyState::None;
            return;
        }
        self.copy = CopyState::None;
        let mut seen_data = false;
        while self.owed.len() > 1 {
            let last = match &self.owed[1].1 {
                Owed::CopyData => {
                    seen_data = true;
                    false
                }
                // After a failure in the data, a Sync among the data may have
                // come after the failing row: the server answers that one.
                Owed::Sync if failed && seen_data => return,
                Owed::Sync => false,
                Owed::CopyEnd => true,
                // Any other message fails the COPY, and is read by it.
                _ if failed => true,
                _ => {
                    self.anomalies += 1;
                    return;
                }
            };
            // A message the COPY read (and failed on) never runs.
            if let Some(audit) = self
                .owed
                .remove(1)
                .and_then(|(_, mut o)| o.answering_mut()?.audit.take())
            {
                self.retired.push(*audit);
            }
            if last {
                break;
            }
        }
    }

    /// A statement of the Query at the front is done: the next one's rows
    /// are its own.
    fn next_statement(&mut self) {
        if let Some((_, Owed::Query { answering, .. })) = self.owed.front_mut() {
            answering.current += 1;
            answering.columns = None;
        }
    }

    /// A Describe at the front is answered with `d`: the columns are kept
    /// with what it described (the statement, or the portal).
    fn described(&mut self, d: &backend::RowDescription<'_>) {
        let Some((
            _,
            Owed::Describe {
                statement,
                portal,
                answering,
            },
        )) = self.owed.front_mut()
        else {
            return;
        };
        if !self.rewrites {
            return;
        }
        let Some(columns) = rows::decode_columns(d) else {
            return;
        };
        answering.columns = Some(columns.clone());
        if let Some(name) = statement {
            if let Some(Some(p)) = self.statements.get(name.as_str()) {
                let _ = p.columns.set(columns);
            }
        } else if let Some(name) = portal {
            if let Some(p) = self.portals.get_mut(name.as_str()) {
                answering.prepared = p.runs.clone();
                p.columns = Some(columns);
            }
        }
    }

    /// A statement of the Query at the front completed: what it did to
    /// prepared statements takes effect.
    fn apply_effect(&mut self, done: &backend::CommandComplete<'_>) {
        let effect = match self.owed.front_mut() {
            Some((
                _,
                Owed::Query {
                    effects: Some(e), ..
                },
            )) => e.pop_front(),
            _ => None,
        };
        let command = done.tag().unwrap_or("");
        match effect {
            None | Some(Effect::None) => {}
            Some(Effect::Prepare(name, p)) if command == "PREPARE" => {
                self.statements.insert(name, Some(p));
            }
            Some(Effect::Deallocate(name)) if command == "DEALLOCATE" => {
                self.statements.remove(&name);
            }
            Some(Effect::DeallocateAll)
                if command == "DEALLOCATE ALL" || command == "DISCARD ALL" =>
            {
                self.statements.clear();
            }
            Some(_) => self.anomalies += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_slice(sql.as_bytes());
        b.put_u8(0);
        b.put_i16(0);
        b.to_vec()
    }

    fn bind(portal: &str, stmt: &str) -> Vec<u8> {
        format!("{portal}\0{stmt}\0\0\0\0\0\0\0").into_bytes()
    }

    fn prepared(sql: &str) -> Arc<Prepared> {
        Arc::new(Prepared::new(Arc::new(Ok(Vec::new())), 0, sql.into(), 0))
    }

    fn parse_as(s: &mut ProtocolState, name: &str, sql: &str) {
        let mut e = vec![Effect::Prepare(name.into(), prepared(sql))];
        let body = parse(name, sql);
        let msg = frontend::Message::parse(b'P', &body).unwrap();
        s.on_frontend_message(&msg, &mut e);
    }

    fn held(s: &ProtocolState, name: &str) -> Option<String> {
        let p = s.statements.get(name)?.as_ref()?;
        Some(p.sql.to_string())
    }

    const ERROR: &[u8] = b"SERROR\0C22012\0Mdivision by zero\0\0";

    #[test]
    fn pipeline_with_statements_and_portals() {
        let mut s = ProtocolState::default();
        parse_as(&mut s, "s1", "select 1");
        s.on_frontend(b'B', &bind("p1", "s1")).unwrap();
        s.on_frontend(b'E', b"p1\0\0\0\0\0").unwrap();
        s.on_frontend(b'S', b"").unwrap();
        s.on_frontend(b'Q', b"begin\0").unwrap();
        assert_eq!(s.owed.len(), 5);
        s.on_backend(b'1', b"");
        assert_eq!(held(&s, "s1").as_deref(), Some("select 1"));
        s.on_backend(b'2', b"");
        assert!(s.portals["p1"].runs.is_some());
        s.on_backend(b'D', b"");
        s.on_backend(b'C', b"SELECT 1\0");
        s.on_backend(b'Z', b"I");
        assert!(matches!(s.owed.front(), Some((_, Owed::Query { .. }))));
        assert!(s.portals.is_empty(), "portals end with the transaction");
        s.on_backend(b'C', b"BEGIN\0");
        s.on_backend(b'Z', b"T");
        assert_eq!(s.tx_status, b'T');
        assert!(!s.is_idle());
        assert_eq!(s.anomalies, 0);
    }

    #[test]
    fn an_error_skips_everything_up_to_sync_a_query_included() {
        let mut s = ProtocolState::default();
        parse_as(&mut s, "", "select 1/0");
        s.on_frontend(b'B', &bind("", "")).unwrap();
        s.on_frontend(b'E', b"\0\0\0\0\0").unwrap();
        s.on_frontend(b'Q', b"select 2\0").unwrap();
        s.on_frontend(b'S', b"").unwrap();
        s.on_frontend(b'Q', b"select 3\0").unwrap();
        s.on_backend(b'1', b"");
        s.on_backend(b'2', b"");
        s.on_backend(b'E', ERROR);
        // The Query in the skipped stretch gets no answer.
        s.on_backend(b'Z', b"I");
        assert!(matches!(s.owed.front(), Some((5, Owed::Query { .. }))));
        s.on_backend(b'T', b"");
        s.on_backend(b'D', b"");
        s.on_backend(b'C', b"SELECT 1\0");
        s.on_backend(b'Z', b"I");
        assert!(s.is_idle());
        assert_eq!(s.anomalies, 0);
    }

    #[test]
    fn a_skipped_or_failed_parse_keeps_what_the_server_holds() {
        let mut s = ProtocolState::default();
        parse_as(&mut s, "", "select 'a'");
        s.on_frontend(b'S', b"").unwrap();
        s.on_backend(b'1', b"");
        s.on_backend(b'Z', b"I");
        // Bind of a missing statement fails; the Parse behind it is skipped.
        s.on_frontend(b'B', &bind("", "nope")).unwrap();
        parse_as(&mut s, "", "select 'b'");
        s.on_frontend(b'S', b"").unwrap();
        s.on_backend(b'E', ERROR);
        s.on_backend(b'Z', b"I");
        assert_eq!(held(&s, "").as_deref(), Some("select 'a'"));
        // A named Parse refused (the name exists) keeps the old one.
        parse_as(&mut s, "n", "delete from t");
        parse_as(&mut s, "n", "select 1");
        s.on_frontend(b'S', b"").unwrap();
        s.on_backend(b'1', b"");
        s.on_backend(b'E', ERROR);
        s.on_backend(b'Z', b"I");
        assert_eq!(held(&s, "n").as_deref(), Some("delete from t"));
        // A failed Parse of the unnamed statement drops the old one.
        parse_as(&mut s, "", "selec");
        s.on_frontend(b'S', b"").unwrap();
        s.on_backend(b'E', ERROR);
        s.on_backend(b'Z', b"I");
        assert!(!s.statements.contains_key(""));
        assert_eq!(s.anomalies, 0);
    }

    #[test]
    fn syncs_sent_during_copy_in_are_not_answered() {
        // pg8000: Execute, Flush, Sync; then the data, CopyDone, Sync.
        let mut s = ProtocolState::default();
        parse_as(&mut s, "", "copy t from stdin");
        s.on_frontend(b'B', &bind("", "")).unwrap();
        s.on_frontend(b'E', b"\0\0\0\0\0").unwrap();
        s.on_frontend(b'H', b"").unwrap();
        s.on_frontend(b'S', b"").unwrap();
        s.on_backend(b'1', b"");
        s.on_backend(b'2', b"");
        s.on_backend(b'G', b"");
        assert_eq!(s.copy, CopyState::In);
        s.on_frontend(b'd', b"1\n").unwrap();
        s.on_frontend(b'd', b"2\n").unwrap();
        s.on_frontend(b'c', b"").unwrap();
        s.on_frontend(b'S', b"").unwrap();
        s.on_frontend(b'Q', b"select 1\0").unwrap();
        s.on_backend(b'C', b"COPY 2\0");
        s.on_backend(b'Z', b"I");
        assert!(matches!(s.owed.front(), Some((_, Owed::Query { .. }))));
        s.on_backend(b'C', b"SELECT 1\0");
        s.on_backend(b'Z', b"I");
        assert!(s.is_idle());
        assert_eq!(s.anomalies, 0);
        // The same COPY failing on its data: still one ReadyForQuery.
        s.on_frontend(b'Q', b"copy t from stdin\0").unwrap();
        s.on_backend(b'G', b"");
        s.on_frontend(b'S', b"").unwrap();
        s.on_frontend(b'd', b"x\n").unwrap();
        s.on_frontend(b'c', b"").unwrap();
        s.on_backend(b'E', ERROR);
        s.on_backend(b'Z', b"I");
        assert!(s.is_idle());
        assert_eq!(s.anomalies, 0);
    }

    #[test]
    fn prepare_and_deallocate_take_effect_when_completed() {
        let mut s = ProtocolState::default();
        let mut e = vec![
            Effect::None,
            Effect::Prepare("x".into(), prepared("delete from t")),
        ];
        let q = frontend::Message::parse(b'Q', b"select 1; prepare x as delete from t\0").unwrap();
        s.on_frontend_message(&q, &mut e);
        let mut n = 0;
        s.statement_candidates("x", s.owed.len(), &mut |_| n += 1);
        assert_eq!(n, 1, "a queued PREPARE is a candidate");
        s.on_backend(b'C', b"SELECT 1\0");
        assert!(!s.statements.contains_key("x"));
        s.on_backend(b'C', b"PREPARE\0");
        s.on_backend(b'Z', b"I");
        assert_eq!(held(&s, "x").as_deref(), Some("delete from t"));
        let mut e = vec![Effect::None, Effect::Deallocate("x".into())];
        let q = frontend::Message::parse(b'Q', b"select 1/0; deallocate x\0").unwrap();
        s.on_frontend_message(&q, &mut e);
        s.on_backend(b'E', ERROR);
        s.on_backend(b'Z', b"I");
        assert!(s.statements.contains_key("x"), "the DEALLOCATE never ran");
    }

    #[test]
    fn skipped_messages_do_not_pile_up() {
        let mut s = ProtocolState::default();
        s.on_frontend(b'B', &bind("", "nope")).unwrap();
        s.on_backend(b'E', ERROR);
        for _ in 0..1000 {
            s.on_frontend(b'E', b"\0\0\0\0\0").unwrap();
        }
        assert!(s.owed.is_empty());
        s.on_frontend(b'S', b"").unwrap();
        s.on_backend(b'Z', b"I");
        assert!(s.is_idle());
    }

    #[test]
    fn an_unexpected_stand_in_error_loses_the_session() {
        let mut s = ProtocolState::default();
        s.on_frontend(b'Q', b"select 1\0").unwrap();
        s.on_backend(
            b'E',
            b"SERROR\0C42601\0Msyntax error at or near \"PGWARD\"\0\0",
        );
        assert!(s.lost.is_some());
    }

    #[test]
    fn a_message_a_failed_copy_read_gives_back_its_audit() {
        let mut s = ProtocolState::default();
        s.on_frontend(b'Q', b"copy t from stdin\0").unwrap();
        s.on_backend(b'G', b"\0\0\0");
        s.on_frontend(b'd', b"1\n").unwrap();
        // Not a COPY message: the COPY reads it and fails on it.
        s.on_frontend(b'Q', b"select 1\0").unwrap();
        s.last_answering_mut().unwrap().audit = Some(Pending::waiting_for_test());
        s.on_backend(
            b'E',
            b"SERROR\0C08P01\0Munexpected message type 0x51 during COPY from stdin\0\0",
        );
        assert_eq!(s.retired.len(), 1, "its statement never runs");
        s.on_backend(b'Z', b"I");
        assert!(s.is_idle());
        assert_eq!(s.anomalies, 0);
    }

    #[test]
    fn malformed_messages_are_reported() {
        let mut s = ProtocolState::default();
        assert_eq!(s.on_frontend(b'Q', b"no terminator"), Err(Malformed(b'Q')));
        assert_eq!(s.on_frontend(b'P', b"x\0y\0\xff"), Err(Malformed(b'P')));
        assert_eq!(s.on_frontend(b'C', b"Zx\0"), Err(Malformed(b'C')));
    }
}
