//! The policy at the door of one session: every Query, Parse, Execute and
//! FunctionCall is judged before a byte of it goes upstream.
//!
//! The hot path touches no shared lock and no shared reference count: the
//! session keeps its own snapshot of the rules (with its role) and of the
//! catalog, checked against a generation number, and its own small cache
//! of classifications in front of the catalog's shared one.

use std::collections::HashMap;
use std::sync::Arc;

use super::commit_review;
use super::recorder::Judged;
use super::rows::{RowDecision, RowPlan, RowPlanner, RowRewriter};
use super::state::{Effect, Prepared, ProtocolState, NEVER_ALLOWED};
use super::text::TextChange;
use crate::auth::Identity;
use crate::policy::catalog::ParamType;
use crate::policy::ddl::{self, Window};
use crate::policy::{
    self, Analysis, Catalog, CatalogSlot, Lexer, Role, Statement, TxControl, Verdict,
};
use crate::protocol::frontend::{self, Message};
use crate::protocol::tag::frontend as tag;
use crate::protocol::{sqlstate, PgError};
use crate::server::RulesCell;
use crate::upstream::Upstream;

/// Classifications a session keeps to itself (exact texts and shapes).
const LOCAL_CACHE: usize = 64;

/// SQL texts at least this long are classified on a thread of their own
/// while their session waits: classifying 32 KiB takes milliseconds (1 MiB,
/// up to seconds), and on the session thread it would hold up every other
/// session there. Texts this long are never cached.
pub const CLASSIFY_APART: usize = 32 << 10;

/// What a guard needs of the server: the rules in force, a few settings,
/// the slots for classifications apart, and how to refresh the catalog.
/// Built from the server's state (`Shared::guard_context`), or in a test
/// from rules and settings alone.
#[derive(Clone)]
pub struct GuardContext {
    pub rules: Arc<RulesCell>,
    /// `server.max_sql_bytes`: longer texts are refused unparsed.
    pub max_sql_bytes: usize,
    /// Classifications of long texts running apart, at most one per core.
    pub classify_slots: Arc<tokio::sync::Semaphore>,
    /// The audit log is on: a long text's statements get their
    /// fingerprints apart too.
    pub fingerprints: bool,
    /// Where to reload the catalog from when a statement names what it
    /// does not hold, and at most how often; None: the catalog is fixed.
    pub refresh: Option<(Upstream, std::time::Duration)>,
    /// Decides which statements' rows are rewritten; none by default.
    pub planner: Option<Arc<dyn RowPlanner>>,
}

impl GuardContext {
    /// A context of `rules` alone: the default settings, a fixed catalog,
    /// no row planner (unit tests and tools).
    pub fn of_rules(rules: crate::rules::Rules) -> GuardContext {
        GuardContext {
            rules: Arc::new(RulesCell::new(rules)),
            max_sql_bytes: crate::config::ServerConfig::default().max_sql_bytes,
            classify_slots: Arc::new(tokio::sync::Semaphore::new(1)),
            fingerprints: false,
            refresh: None,
            planner: None,
        }
    }

    fn approvals_enabled(&self) -> bool {
        self.rules.get().has_approvers()
    }
}

pub struct Guard {
    ctx: GuardContext,
    identity: Identity,
    /// The role chosen at startup (`-c pgward.role=...`), else the first.
    wanted_role: Option<String>,
    catalog: Arc<CatalogSlot>,
    /// Rules generation and the session's role under it (or why none).
    rules_gen: u64,
    role: Result<Arc<Role>, String>,
    /// Catalog generation and the catalog.
    cat_gen: u64,
    cat: Arc<Catalog>,
    /// Session-private copies of classifications, by text and by shape.
    local: LocalCache,
    local_shapes: LocalCache,
    /// Texts judged lately (by `catalog::cache_key`, which tells the
    /// lexers apart) and their shape keys, so that a text judged again is
    /// not scanned for its shape again. A shape depends on the text and
    /// the lexer alone, so nothing else empties it but its size.
    local_texts: TextShapes,
    /// The shape of the text being judged (a buffer kept between texts).
    shape: String,
    /// What the message judged last does to prepared statements once the
    /// server completes it (handed to `ProtocolState::on_frontend_with`):
    /// the statement an allowed Parse prepares, or one entry per statement
    /// of a Query that prepares or deallocates.
    pub effects: Vec<Effect>,
    /// What the last `check` judged, for the audit log.
    pub last: Judged,
    /// Whether `check` fills `last`: only the audit log reads it, and
    /// filling it costs reference counting on every message.
    pub keep_judged: bool,
    /// A classification done apart for the next text to judge.
    provided: Option<Classified>,
    /// What the message judged last, let through, may change of how the
    /// server reads text (see `SessionText`).
    pub text_change: TextChange,
    /// Whether this session prepared a statement judged at Bind: until it
    /// does, a Bind costs nothing here.
    bind_judging: bool,
    /// Set by `check` when it refused the message because pgward's parser
    /// could not parse it (see `syntax_probe`).
    pub unparsed: bool,
    /// What this session's catalog changes not yet committed (and
    /// reloaded) make uncertain.
    window: Window,
    /// Why the catalog could not be reloaded after a change: the next
    /// message judged is refused with it.
    reload_failed: Option<String>,
    /// What the message being judged would wait for: approval of a
    /// statement the role's rules hold (`refusal` sets it).
    hold: Option<Hold>,
    /// The message being judged was approved, as these texts (a hold's
    /// `texts`): a statement that needs approval passes this once when its
    /// text is among them, and asks again otherwise (set by the caller,
    /// cleared by `check`).
    pub approved: Vec<Arc<str>>,
    /// The session's last `SET pgward.reason` (see `settings::REASON`).
    reason: Option<String>,
    /// An approval let a statement of the message pass, so its verdict
    /// must not be remembered as allowed.
    used_approval: bool,
    /// The row plan of the Query judged last, when its rows are rewritten.
    plan: Option<Arc<RowPlan>>,
    /// SQL cursors this session declared, with their rows' rewriters, for
    /// the planner's `FETCH`es (see `RowDecision::Declare`).
    cursors: HashMap<String, Option<Arc<dyn RowRewriter>>>,
    /// For a role whose statements may be held: the values of each
    /// portal's Bind as an approver is shown them (`params::shown`).
    bound_values: HashMap<String, Arc<[String]>>,
    /// For a role with `approve_commit`: what the open block changed.
    block: commit_review::Block,
    /// What the message being judged does to the block, applied when it
    /// passes (`refusal` sets it).
    block_step: Option<commit_review::Step>,
}

/// The most portals whose Bind values are kept for approvers.
const MAX_BOUND_VALUES: usize = 256;

/// What `check` decided for a message.
#[derive(Debug)]
pub enum Decision {
    Pass,
    /// It passes, and the rows of its statements are rewritten by the
    /// plan (a Query's; a Parse's plan goes with its prepared statement,
    /// and each Execute of it takes it from what its portal runs).
    Rewrite(Arc<RowPlan>),
    Deny(PgError),
    /// It waits, unsent, for an approver (see `approval`).
    Hold(Box<Hold>),
}

/// A statement that needs approval: what the request shows.
#[derive(Debug, Clone)]
pub struct Hold {
    /// What the approver is shown: every statement the message may run
    /// that needs approval.
    pub statement: Arc<str>,
    /// Those statements, each as the text an approval covers.
    pub texts: Vec<Arc<str>>,
    pub role: String,
    pub classes: String,
    pub why: String,
    pub approvals_needed: usize,
    /// Why, as the client said: a leading `/* reason: ... */` comment or
    /// the session's `SET pgward.reason`.
    pub reason: Option<String>,
    /// Held again right after an approval or grant of the same message
    /// (what would run is not what was approved): a grant must not
    /// release it again, or the two would loop.
    pub after_approval: bool,
}

/// A classification done off the session thread (`classify_apart`), for
/// `provide`.
pub struct Classified {
    sql: Box<str>,
    /// The lexer it was read with.
    lexer: Lexer,
    /// The catalog generation it was made under.
    cat_gen: u64,
    analysis: Arc<Analysis>,
}

/// Small, per session and cleared when full, so a fast hasher is safe:
/// colliding keys could only slow their own session, by at most 64 probes.
type LocalCache = HashMap<Box<str>, Cached, foldhash::fast::RandomState>;

/// Text keys to shape keys (see `Guard::local_texts`); hashed as
/// `LocalCache` is, for the same reason.
type TextShapes = HashMap<Box<str>, Box<str>, foldhash::fast::RandomState>;

/// A classification, and the rules generation under which all of its
/// statements were last allowed for this session's role (the verdict
/// depends only on the role, the statement and the catalog, and the cache
/// is emptied when the catalog changes).
struct Cached {
    analysis: Arc<Analysis>,
    allowed_under: Option<u64>,
}

/// Where `analyze` found a classification, to record its verdict there.
enum Found {
    Text,
    /// Under the shape left in `Guard::shape`.
    Shape,
    Nowhere,
}

/// The message pgward sends upstream instead of a denied one: it fails in
/// the parser, so it has no effect beyond what any failing statement has
/// (the transaction block is aborted, the rest up to Sync is discarded),
/// and PostgreSQL itself keeps the protocol state exact.
pub fn stand_in(msg: &Message<'_>) -> &'static [u8] {
    match msg {
        // A Query (also for a FunctionCall: both end in ReadyForQuery).
        Message::Query(_) | Message::FunctionCall(_) => b"Q\0\0\0\x12PGWARD DENIED\0",
        // A denied Parse of the unnamed statement: a failing Parse of it,
        // which drops the one held before, as the client's own would.
        Message::Parse(p) if p.name.is_empty() => b"P\0\0\0\x15\0PGWARD DENIED\0\0\0",
        // A Parse of a name no client can have used: it fails, and what the
        // server holds under other names stays.
        _ => b"P\0\0\0\x22pgward.denied\0PGWARD DENIED\0\0\0",
    }
}

/// What `syntax_probe` puts before the client's text: two statements, so
/// that whatever follows makes the string more than one.
pub const PROBE_PREFIX: &str = "SELECT;SELECT;";

/// For a Query or Parse pgward's parser refused: the stand-in that lets
/// the server's parser have its say on the same text, without running or
/// even analysing anything. The text is sent as a Parse (under the name the
/// client gave, or the unnamed statement, which a simple Query drops
/// anyway) behind two empty SELECTs: PostgreSQL raw-parses the whole string
/// first, so a syntax error comes back as the server words it (its
/// position moved back past the prefix, its hint, its version's grammar),
/// and a string it can parse fails at once as more than one statement,
/// before analysis. After a `;` the scanner starts afresh, so the text
/// scans as it would alone.
pub fn syntax_probe(msg_type: u8, body: &[u8]) -> Option<Vec<u8>> {
    // As bytes: the text is in the client's encoding, which the server
    // converts as it would the client's own message.
    let cstr = |b: &[u8]| b.iter().position(|&c| c == 0);
    let (name, sql): (&[u8], &[u8]) = match msg_type {
        tag::QUERY => (b"", &body[..cstr(body)?]),
        tag::PARSE => {
            let n = cstr(body)?;
            let rest = &body[n + 1..];
            (&body[..n], &rest[..cstr(rest)?])
        }
        _ => return None,
    };
    let mut out = Vec::with_capacity(PROBE_PREFIX.len() + sql.len() + name.len() + 16);
    let len = 4 + name.len() + 1 + PROBE_PREFIX.len() + sql.len() + 1 + 2;
    out.push(tag::PARSE);
    out.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
    out.extend_from_slice(name);
    out.push(0);
    out.extend_from_slice(PROBE_PREFIX.as_bytes());
    out.extend_from_slice(sql);
    out.extend_from_slice(&[0, 0, 0]);
    if msg_type == tag::QUERY {
        // A Query ends in ReadyForQuery: so does Parse, Sync.
        out.extend_from_slice(b"S\0\0\0\x04");
    }
    Some(out)
}

impl Guard {
    pub fn new(
        ctx: GuardContext,
        identity: Identity,
        wanted_role: Option<String>,
        catalog: Arc<CatalogSlot>,
    ) -> Guard {
        let cat_gen = catalog.generation();
        let cat = catalog.get();
        let rules_gen = ctx.rules.generation();
        let role = private_role(&ctx.rules, &identity, wanted_role.as_deref());
        Guard {
            ctx,
            identity,
            wanted_role,
            catalog,
            rules_gen,
            role,
            cat_gen,
            cat,
            local: LocalCache::default(),
            local_shapes: LocalCache::default(),
            local_texts: TextShapes::default(),
            shape: String::new(),
            effects: Vec::new(),
            last: Judged::default(),
            keep_judged: true,
            provided: None,
            text_change: TextChange::default(),
            bind_judging: false,
            unparsed: false,
            window: Window::default(),
            reload_failed: None,
            hold: None,
            approved: Vec::new(),
            reason: None,
            used_approval: false,
            plan: None,
            cursors: HashMap::new(),
            bound_values: HashMap::new(),
            block: commit_review::Block::default(),
            block_step: None,
        }
    }

    /// Before a message is judged: when a catalog change some session saw
    /// commit is not in the catalog yet, the wait for its reload (the
    /// message is judged after it, see `catalog_ready`). A session inside
    /// a transaction block does not wait: it may hold locks the reload
    /// needs (deparsing a view locks the tables it names), and pg_restore
    /// -j's workers would wait for each other's reloads; its statements are
    /// judged against the catalog it has until the reload, which starts at
    /// the commit, lands. A fixed catalog (no upstream to reload it
    /// from) is never waited for.
    pub fn catalog_wait(
        &self,
        in_block: bool,
    ) -> Option<impl std::future::Future<Output = Result<(), String>> + Send + 'static> {
        let (upstream, _) = self.ctx.refresh.as_ref()?;
        if in_block || self.reload_failed.is_some() || !self.catalog.is_stale() {
            return None;
        }
        Some(self.catalog.clone().wait_fresh(upstream.clone()))
    }

    /// The wait from `catalog_wait` ended: a failed reload refuses the
    /// next message judged (never judged against the stale catalog).
    pub fn catalog_ready(&mut self, result: Result<(), String>) {
        if let Err(why) = result {
            self.reload_failed = Some(why);
        }
    }

    /// A ReadyForQuery with transaction status `status`; `idle` when no
    /// response is owed after it. The end of a block that changed the
    /// catalog makes the database's catalog stale for every session (each
    /// waits for the reload before its next judgment); once nothing more
    /// is in flight, this session's window of uncertainty closes.
    /// `settled` when no response is owed, whatever the status.
    pub fn on_ready(&mut self, status: u8, idle: bool, settled: bool) {
        self.block.on_ready(status, settled);
        if status != b'I' || !self.window.open {
            return;
        }
        if let Some((upstream, _)) = &self.ctx.refresh {
            self.catalog.changed(upstream);
        }
        if idle {
            self.window = Window::default();
        }
    }

    /// The generation verdicts on prepared statements are kept under: the
    /// rules' and the catalog's.
    fn verdict_gen(&self) -> u64 {
        (self.cat_gen << 32) ^ self.rules_gen
    }

    /// Why the window of uncertainty refuses `st`, as an `unknown` denial.
    fn window_refusal(&self, st: &Statement) -> Option<PgError> {
        let why = self.window.refusal(st, &self.cat)?;
        Some(unknown(why))
    }

    /// Whether some statement's rows may be rewritten.
    pub fn plans(&self) -> bool {
        self.ctx.planner.is_some()
    }

    /// Whether this session's rows may be rewritten now: a planner is
    /// installed and may rewrite the session's role's rows.
    pub fn rewrites_rows(&self) -> bool {
        match (&self.ctx.planner, &self.role) {
            (Some(p), Ok(role)) => p.rewrites_for(role),
            _ => false,
        }
    }

    /// Asks the catalog to reload soon (a statement named what it does
    /// not hold), unless it is fixed.
    fn refresh_catalog(&self) {
        if let Some((upstream, min_gap)) = &self.ctx.refresh {
            self.catalog.refresh(upstream, *min_gap);
        }
    }

    /// The row plan of `statements` for `role`, if any of them is
    /// rewritten; an error refuses them.
    fn row_plan(
        &mut self,
        role: &Role,
        statements: &[Statement],
    ) -> Result<Option<Arc<RowPlan>>, PgError> {
        let Some(planner) = self.ctx.planner.clone() else {
            if !role.masks.is_empty() {
                // Masks added by a rules reload after this session began:
                // its rows were never going to be looked at.
                return Err(denied(format!(
                    "the rules now mask columns for role {}; reconnect to see its results",
                    role.name
                )));
            }
            return Ok(None);
        };
        let mut plans = Vec::with_capacity(statements.len());
        for st in statements {
            plans.push(match planner.plan(role, st, &self.cat)? {
                RowDecision::Pass => None,
                RowDecision::Rewrite(r) => Some(r),
                RowDecision::Declare(cursor, rows) => {
                    self.cursors.insert(cursor, rows);
                    None
                }
                RowDecision::Fetch(cursor) => match self.cursors.get(&cursor) {
                    Some(rows) => rows.clone(),
                    // Declared some other way (a function's cursor, a
                    // protocol portal): what its rows are is unknown.
                    None => {
                        return Err(denied(format!(
                            "cursor \"{cursor}\" was not declared by SQL DECLARE through pgward in this session, so its rows cannot be masked"
                        )))
                    }
                },
            });
        }
        Ok(plans
            .iter()
            .any(Option::is_some)
            .then(|| Arc::new(RowPlan(plans.into_boxed_slice()))))
    }

    /// For a Query or Parse whose text is slow to classify and has not been
    /// classified: the classification, to be run by the caller while this
    /// message waits, and handed to `provide` before the message is judged.
    pub fn classify_apart(
        &mut self,
        msg: &Message<'_>,
        lexer: Lexer,
    ) -> Option<impl std::future::Future<Output = Classified> + Send + 'static> {
        let sql = msg.sql()?;
        if sql.len() < CLASSIFY_APART || sql.len() > self.ctx.max_sql_bytes {
            return None;
        }
        self.refresh_snapshots();
        if let Some(p) = &self.provided {
            // Done, unless the catalog changed meanwhile: then again, so
            // the session thread never classifies it.
            if *p.sql == *sql && p.cat_gen == self.cat_gen && p.lexer == lexer {
                return None;
            }
        }
        let cat = self.cat.clone();
        let cat_gen = self.cat_gen;
        let slots = self.ctx.classify_slots.clone();
        // The audit log describes each statement by its fingerprint, one
        // more parse each: done there too, not on the session thread.
        let fingerprints = self.ctx.fingerprints;
        let sql: Box<str> = sql.into();
        Some(async move {
            // At most one classification apart per core at once: each may
            // hold hundreds of times its text's size in memory. The thread
            // keeps its slot until it is done, even if the session is gone.
            let slot = slots.acquire_owned().await;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let text = sql.clone();
            let stack = policy::stack::for_sql(text.len());
            let started = policy::stack::thread(stack).spawn(move || {
                let analysis = cat.analyze_with(&text, lexer);
                if let (true, Ok(statements)) = (fingerprints, analysis.as_ref()) {
                    for st in statements {
                        st.fingerprint();
                    }
                }
                let _ = tx.send(analysis);
                drop(slot);
            });
            let analysis = match started {
                Ok(_) => rx
                    .await
                    .unwrap_or_else(|_| Arc::new(Err("the classifier failed".into()))),
                Err(e) => Arc::new(Err(format!("cannot start a classifier thread: {e}"))),
            };
            Classified {
                sql,
                lexer,
                cat_gen,
                analysis,
            }
        })
    }

    /// Hands over a classification from `classify_apart`: the next judgment
    /// of its text uses it, if the catalog is still the one it was made
    /// under.
    pub fn provide(&mut self, classified: Classified) {
        self.provided = Some(classified);
    }

    /// Picks up reloaded rules and a refreshed catalog.
    fn refresh_snapshots(&mut self) {
        let rules_gen = self.ctx.rules.generation();
        if rules_gen != self.rules_gen {
            self.role = private_role(&self.ctx.rules, &self.identity, self.wanted_role.as_deref());
            self.rules_gen = rules_gen;
        }
        let cat_gen = self.catalog.generation();
        if cat_gen != self.cat_gen {
            self.cat = self.catalog.get();
            self.cat_gen = cat_gen;
            self.local.clear();
            self.local_shapes.clear();
        }
    }

    fn current_role(&self) -> Result<Arc<Role>, PgError> {
        self.role.clone().map_err(denied)
    }

    /// The classification of `sql` read by `lexer`: from this session's
    /// cache, else from the catalog's shared one (copied, so later uses
    /// stay private). `key` is its key by text (`catalog::cache_key`).
    /// Also says whether it is known to be allowed under the current rules.
    fn analyze(&mut self, sql: &str, key: &str, lexer: Lexer) -> (Arc<Analysis>, bool, Found) {
        if let Some(p) = &self.provided {
            if *p.sql == *sql && p.cat_gen == self.cat_gen && p.lexer == lexer {
                // Too long to cache; kept until another text is judged, in
                // case its message waits for audit room and is judged again.
                return (p.analysis.clone(), false, Found::Nowhere);
            }
        }
        self.provided = None;
        let gen = Some(self.rules_gen);
        // By shape first: a text with a shape is in `local` only when its
        // classification may not be shared, which is rare. Shapes of text
        // read with escapes in strings begin with a NUL, as their keys do
        // in the catalog's caches.
        let escapes = lexer.escapes_in_strings;
        let has_shape = match self.local_texts.get(key) {
            // Judged lately: its shape is known (`key` tells the lexers apart).
            Some(shape) => {
                self.shape.clear();
                self.shape.push_str(shape);
                true
            }
            None => {
                let has_shape = sql.len() <= policy::catalog::MAX_CACHED_TEXT
                    && policy::shape::shape_into_with(sql, &mut self.shape, escapes);
                if has_shape && escapes {
                    self.shape.insert(0, '\0');
                }
                if has_shape {
                    if self.local_texts.len() >= LOCAL_CACHE {
                        self.local_texts.clear();
                    }
                    self.local_texts
                        .insert(key.into(), self.shape.as_str().into());
                }
                has_shape
            }
        };
        if has_shape {
            if let Some(c) = self.local_shapes.get(self.shape.as_str()) {
                return (c.analysis.clone(), c.allowed_under == gen, Found::Shape);
            }
        }
        if let Some(c) = self.local.get(key) {
            return (c.analysis.clone(), c.allowed_under == gen, Found::Text);
        }
        let shared = self.cat.analyze_with(sql, lexer);
        let private = if sql.len() > policy::catalog::MAX_CACHED_TEXT {
            // Not in the shared cache: already this session's alone.
            shared
        } else {
            Arc::new((*shared).clone())
        };
        let (map, key, found) = if has_shape && policy::catalog::shareable(&private) {
            (&mut self.local_shapes, self.shape.as_str(), Found::Shape)
        } else {
            (&mut self.local, key, Found::Text)
        };
        if map.len() >= LOCAL_CACHE {
            map.clear();
        }
        let found = if key.len() <= policy::catalog::MAX_CACHED_TEXT + 1 {
            map.insert(
                key.into(),
                Cached {
                    analysis: private.clone(),
                    allowed_under: None,
                },
            );
            found
        } else {
            Found::Nowhere
        };
        (private, false, found)
    }

    /// Records that the classification `analyze` found under text key
    /// `key` was allowed under the current rules.
    fn mark_allowed(&mut self, key: &str, found: Found) {
        let entry = match found {
            Found::Text => self.local.get_mut(key),
            Found::Shape => self.local_shapes.get_mut(self.shape.as_str()),
            Found::Nowhere => None,
        };
        if let Some(c) = entry {
            c.allowed_under = Some(self.rules_gen);
        }
    }

    /// A message refused before it was judged (its text could not be
    /// read): nothing of the last judgment applies to it.
    pub fn skip(&mut self) {
        if self.keep_judged {
            self.last = Judged::default();
        }
        self.effects.clear();
        self.text_change = TextChange::default();
        self.unparsed = false;
    }

    /// Judges one client message: it passes, is denied with an error, or
    /// waits for approval. A Parse or Bind of a statement that needs
    /// approval passes (it runs nothing) and its Execute waits.
    pub fn check(&mut self, msg: &Message<'_>, state: &ProtocolState) -> Decision {
        self.hold = None;
        self.used_approval = false;
        self.plan = None;
        let after_approval = !self.approved.is_empty();
        self.block_step = None;
        let refused = self.judge(msg, state);
        self.approved.clear();
        if let Some(step) = self.block_step.take() {
            // A Parse or Bind runs nothing; what runs is judged again.
            let runs = matches!(
                msg,
                Message::Query(_) | Message::Execute(_) | Message::FunctionCall(_)
            );
            if refused.is_none() && runs {
                self.block.apply(step);
            }
        }
        match (refused, self.hold.take()) {
            (None, _) => match self.plan.take() {
                Some(plan) => Decision::Rewrite(plan),
                None => Decision::Pass,
            },
            // Also after an approval, when what would run is not what the
            // approver saw: asked again.
            (Some(_), Some(hold)) => Decision::Hold(Box::new(Hold {
                after_approval,
                ..hold
            })),
            (Some(e), None) => Decision::Deny(e),
        }
    }

    fn judge(&mut self, msg: &Message<'_>, state: &ProtocolState) -> Option<PgError> {
        if self.keep_judged {
            self.last = Judged::default();
        }
        self.effects.clear();
        self.text_change = TextChange::default();
        self.unparsed = false;
        if matches!(
            msg,
            Message::Query(_)
                | Message::Parse(_)
                | Message::Bind(_)
                | Message::Execute(_)
                | Message::FunctionCall(_)
        ) {
            if let Some(why) = self.reload_failed.take() {
                return Some(unknown(format!(
                    "the catalog of database \"{}\" changed and could not be reloaded ({why}); pgward does not judge statements against a stale catalog",
                    self.catalog.database()
                )));
            }
        }
        match msg {
            Message::Query(q) => self.judge_sql(q.sql, None, state),
            Message::Parse(p) => match self.judge_sql(p.sql, Some(p.name), state) {
                None => self.judge_param_types(p, state),
                Some(refused) => self.judge_at_bind(p, refused, state),
            },
            Message::Bind(b) => self.judge_bind(b, state),
            Message::Execute(e) => self.judge_execute(e.portal, state),
            Message::FunctionCall(f) => self.judge_function_call(f, state),
            _ => None,
        }
    }

    /// A Parse may declare its parameters' types by OID, and PostgreSQL
    /// converts each value to its type (its input function, its domain
    /// checks) although no type is named in the SQL.
    fn judge_param_types(
        &mut self,
        parse: &frontend::Parse<'_>,
        state: &ProtocolState,
    ) -> Option<PgError> {
        if parse.param_types().len() == 0 {
            return None;
        }
        let types: Vec<u32> = parse.param_types().collect();
        self.judge_types(&types, state)
    }

    /// Judges the parameter types `types` (0: left to the server) as
    /// their values will run: each user type that runs functions as a
    /// cast to it would be; a type the catalog does not hold (created
    /// since it was loaded) is refused, since what its values run is not
    /// known.
    fn judge_types(&mut self, types: &[u32], state: &ProtocolState) -> Option<PgError> {
        for (i, &oid) in types.iter().enumerate().filter(|(_, o)| **o != 0) {
            let sql = match self.cat.param_type(oid) {
                ParamType::Plain => continue,
                ParamType::Unknown => {
                    // It may be new: look again soon.
                    self.refresh_catalog();
                    return Some(
                        denied(format!(
                            "parameter ${} is of type OID {oid}, which is not in pgward's catalog, so what its values run cannot be judged",
                            i + 1
                        ))
                        .with_hint("a type created since pgward loaded the catalog is known after its next load (within a minute); try again then"),
                    );
                }
                ParamType::Runs(schema, name) => format!(
                    "SELECT NULL::\"{}\".\"{}\"",
                    schema.replace('"', "\"\""),
                    name.replace('"', "\"\"")
                ),
            };
            let role = match self.current_role() {
                Ok(r) => r,
                Err(e) => return Some(e),
            };
            let analysis = self.cat.analyze(&sql);
            let statements = match analysis.as_ref() {
                Ok(s) => s,
                Err(m) => return Some(denied(format!("parameter type {oid}: {m}"))),
            };
            if let Some(e) = self.refusal(&role, statements, Some(&sql), state) {
                return Some(e);
            }
        }
        None
    }

    /// A Parse refused as written whose verdict may depend on its
    /// parameters (`set_config('TimeZone', $1, false)`): it goes upstream,
    /// where a Parse only parses and analyses, and each Bind of it is
    /// judged with the values in place. Anything else keeps its refusal.
    fn judge_at_bind(
        &mut self,
        parse: &frontend::Parse<'_>,
        refused: PgError,
        state: &ProtocolState,
    ) -> Option<PgError> {
        let (name, sql) = (parse.name, parse.sql);
        if refused.code != sqlstate::INSUFFICIENT_PRIVILEGE
            || !sql.contains('$')
            || policy::params::placeholders(sql).is_empty()
        {
            return Some(refused);
        }
        // The declared types' own functions run at Bind, whatever the values.
        if let Some(e) = self.judge_param_types(parse, state) {
            return Some(e);
        }
        let types: Vec<u32> = parse.param_types().collect();
        // Read with escapes in strings, a text with a backslash may hide
        // or show a `$n` the scanner (standard strings only) would not:
        // such a Parse keeps its refusal.
        let lexer = state.text.lexer();
        if lexer != Lexer::STANDARD && sql.contains('\\') {
            return Some(refused);
        }
        let key = policy::catalog::cache_key(sql, lexer);
        let (analysis, _, _) = self.analyze(sql, &key, lexer);
        // Only a SELECT whose classification read a constant's value waits
        // for its values (what ORMs send: set_config, current_setting,
        // query_to_xml). A write, or `SELECT * FROM denied_table WHERE id =
        // $1`, stays refused at its Parse: its analysis upstream would lock
        // the tables and its Describe would show them. (A `$1` in PREPARE
        // or CREATE FUNCTION is the statement's own.)
        let takes_parameters = |st: &[Statement]| {
            matches!(
                st,
                [s] if s.literal_sensitive && s.kind == "SelectStmt"
            )
        };
        if !analysis
            .as_ref()
            .as_ref()
            .is_ok_and(|s| takes_parameters(s))
        {
            return Some(refused);
        }
        let p = Prepared::judged_at_bind(analysis, sql.into(), types);
        self.effects
            .push(Effect::Prepare(name.to_owned(), Arc::new(p)));
        self.bind_judging = true;
        None
    }

    /// A Bind: its statement must be one pgward judged (the server plans
    /// it here, and SQL `FETCH` can run its portal); a statement judged at
    /// Bind must be allowed with the Bind's values in place, and its portal
    /// runs that.
    fn judge_bind(&mut self, bind: &frontend::Bind<'_>, state: &ProtocolState) -> Option<PgError> {
        let name = bind.statement;
        let mut unknown = false;
        let mut waiting: Vec<Arc<Prepared>> = Vec::new();
        let mut stale_plans: Vec<Arc<Prepared>> = Vec::new();
        let plans = self.plans();
        if plans {
            self.refresh_snapshots();
        }
        let generation = self.verdict_gen();
        let mut last = None;
        let n = state.statement_candidates(name, state.owed.len(), &mut |p| {
            last = p.cloned();
            match p {
                None => unknown = true,
                Some(p) if p.judged_at_bind.is_some() => waiting.push(p.clone()),
                Some(p) if plans && p.planned_under() != generation => stale_plans.push(p.clone()),
                Some(_) => {}
            }
        });
        self.keep_values(bind, last.as_deref(), state);
        if n == 0 {
            // The server holds none either (pgward follows what it holds):
            // its own error, without asking it.
            return Some(PgError::error(
                sqlstate::INVALID_SQL_STATEMENT_NAME,
                match name {
                    "" => "unnamed prepared statement does not exist".to_owned(),
                    _ => format!("prepared statement \"{name}\" does not exist"),
                },
            ));
        }
        if unknown {
            return Some(denied(format!(
                "statement \"{name}\" was not prepared through pgward, so it was never judged"
            )));
        }
        if let Some(e) = self.plan_again(&stale_plans) {
            return Some(e);
        }
        if waiting.is_empty() {
            return None;
        }
        let Some(values) = bind.values() else {
            return Some(denied("a Bind whose values pgward cannot read".into()));
        };
        self.refresh_snapshots();
        let role = match self.current_role() {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        for p in waiting {
            // The types the server described (or the Parse declared) run
            // their own functions on each value, whatever it is.
            if let Some(e) = self.judge_types(&p.param_types(), state) {
                return Some(e);
            }
            // The values are in the client's encoding; the statement is
            // read as it was at its Parse.
            let text = |b: &[u8]| state.text.value(b);
            let sql = policy::params::with_values_in(&p.sql, &p.param_types(), &values, &text)
                .unwrap_or_else(|| p.sql.to_string());
            let lexer = p.statement().map_or(Lexer::STANDARD, |st| st.lexer);
            let key = policy::catalog::cache_key(&sql, lexer);
            let (analysis, _, _) = self.analyze(&sql, &key, lexer);
            if self.keep_judged {
                self.last.analysis = Some(analysis.clone());
                self.last.sql = Some(sql.as_str().into());
            }
            let statements = match analysis.as_ref() {
                Ok(s) if s.len() == 1 => s,
                Ok(_) => {
                    return Some(denied(
                        "a parameter value changed how many statements there are".into(),
                    ))
                }
                Err(m) => return Some(denied(format!("with its parameter values: {m}"))),
            };
            let mut generation = self.verdict_gen();
            if let Some(e) = self.refusal(&role, statements, Some(&sql), state) {
                if self.hold.take().is_none() {
                    return Some(e);
                }
                // Needs approval: bound, and its Execute waits for it.
                generation = NEVER_ALLOWED;
            }
            if let Some(e) = statements.iter().find_map(|st| self.window_refusal(st)) {
                return Some(e);
            }
            // Its rows are planned with the values in place, as any
            // statement's (SQL text given as a value is traced too).
            let plan = match self.row_plan(&role, statements) {
                Ok(plan) => plan,
                Err(e) => return Some(e),
            };
            let bound = Prepared::bound(analysis.clone(), p.clone(), generation, self.cat_gen)
                .with_plan(plan, self.verdict_gen());
            self.effects.push(Effect::Bound(p, Arc::new(bound)));
        }
        None
    }

    /// Whether the session's role has `approve_commit`: its verdicts
    /// depend on the open block, so none is taken from a cache.
    fn reviews_commits(&self) -> bool {
        self.role.as_ref().is_ok_and(|r| r.approve_commit)
    }

    /// Whether the session's role may have statements held, whose
    /// requests show their Bind's values.
    pub fn shows_values(&self) -> bool {
        self.role.as_ref().is_ok_and(|r| r.holds_any())
    }

    /// Keeps a Bind's values for its portal's Execute, when the role's
    /// statements may be held: the approver sees what would run.
    fn keep_values(
        &mut self,
        bind: &frontend::Bind<'_>,
        runs: Option<&Prepared>,
        state: &ProtocolState,
    ) {
        if !self.shows_values() {
            return;
        }
        self.bound_values.remove(bind.portal);
        let Some(runs) = runs else {
            return;
        };
        // A statement allowed under these rules and this catalog is not
        // judged again at its Execute, so it is never held (a role whose
        // COMMITs are reviewed has every Execute judged): its values are
        // not needed, and a Bind costs nothing more.
        if runs.allowed_under() == self.verdict_gen() && !self.reviews_commits() {
            return;
        }
        let Some(values) = bind.values() else {
            return;
        };
        if values.is_empty() {
            return;
        }
        if self.bound_values.len() >= MAX_BOUND_VALUES {
            // Portals never closed: the oldest values are not worth the
            // memory (an Execute then shows its `$n`).
            self.bound_values.clear();
        }
        let text = |b: &[u8]| state.text.value(b);
        let shown = policy::params::shown(&runs.param_types(), &values, &text);
        self.bound_values
            .insert(bind.portal.to_owned(), shown.into());
    }

    /// Plans again the rows of prepared statements planned under other
    /// rules or another catalog, before a Bind: the server fixes a portal's
    /// plan at its Bind, so a view replaced since the Parse (under the same
    /// column names) changes what its rows are.
    fn plan_again(&mut self, stale: &[Arc<Prepared>]) -> Option<PgError> {
        if stale.is_empty() {
            return None;
        }
        let role = match self.current_role() {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        let generation = self.verdict_gen();
        for p in stale {
            let st = match self.reclassified(p) {
                Ok(st) => st,
                Err(why) => return Some(denied(why)),
            };
            if st.prepares.is_some() && !role.masks.is_empty() {
                // PREPAREd in SQL: its rows are those of the statement
                // inside, which SQL EXECUTE is refused for too.
                return Some(denied(format!(
                    "role {} sees masked columns, and a statement PREPAREd in SQL cannot be traced; send it with Parse",
                    role.name
                )));
            }
            match self.row_plan(&role, std::slice::from_ref(&st)) {
                Ok(plan) => p.set_plan(plan, generation),
                Err(e) => return Some(e),
            }
        }
        None
    }

    /// Execute of `portal`: every statement the server may run for it must
    /// be allowed under the current rules (a statement is judged again
    /// after a reload).
    fn judge_execute(&mut self, portal: &str, state: &ProtocolState) -> Option<PgError> {
        self.judge_portal(portal, state, true)
    }

    /// What a portal runs, for an Execute or an SQL `FETCH`. A name that
    /// was never bound through the protocol is refused to an Execute and
    /// left to a FETCH (a cursor DECLAREd in SQL, judged then).
    fn judge_portal(
        &mut self,
        portal: &str,
        state: &ProtocolState,
        execute: bool,
    ) -> Option<PgError> {
        self.refresh_snapshots();
        let mut candidates: Vec<Option<Arc<Prepared>>> = Vec::new();
        let n = state.execute_candidates(portal, &mut |p| candidates.push(p.cloned()));
        if n == 0 {
            return execute.then(|| {
                denied(format!(
                    "portal \"{portal}\" was not bound through pgward, so its statement was never judged"
                ))
            });
        }
        if self.keep_judged && execute {
            // Until the server says which one ran, the latest is the guess.
            self.last.execute = candidates.last().cloned().flatten();
        }
        let generation = self.verdict_gen();
        self.text_change = state
            .text
            .changes(candidates.iter().flatten().filter_map(|p| p.statement()));
        if !self.window.uncertain()
            && !self.reviews_commits()
            && candidates
                .iter()
                .all(|c| c.as_ref().is_some_and(|p| p.allowed_under() == generation))
        {
            return None;
        }
        let role = match self.current_role() {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        let mut held = None;
        let mut window = self.window.clone();
        for candidate in &candidates {
            let Some(p) = candidate.as_ref().filter(|p| p.statement().is_some()) else {
                return Some(denied(format!(
                    "portal \"{portal}\" may run a statement that was not prepared through pgward"
                )));
            };
            // Classified again when the catalog changed since.
            let st = match self.reclassified(p) {
                Ok(st) => st,
                Err(why) => return Some(denied(format!("portal \"{portal}\": {why}"))),
            };
            if let Some(e) = self.window_refusal(&st) {
                return Some(e);
            }
            // The text the client sent (a statement from the shape cache
            // carries another text's literals), with its Bind's values
            // when they were kept for an approver.
            let shown = self
                .bound_values
                .get(portal)
                .map(|v| policy::params::inline(&p.sql, v));
            let sql = shown.as_deref().unwrap_or(&p.sql);
            if let Some(e) = self.refusal(&role, std::slice::from_ref(&st), Some(sql), state) {
                if self.hold.is_none() {
                    return Some(e);
                }
                // Needs approval: the request lists every statement the
                // portal may run that needs it, so the approver sees what
                // runs (a Parse of the same name may be queued).
                held.get_or_insert(e);
            }
            window.add(&st, &self.cat);
        }
        if let Some(e) = held {
            return Some(e);
        }
        self.window = window;
        if !self.used_approval {
            for p in candidates.iter().flatten() {
                p.set_allowed_under(generation);
            }
        }
        None
    }

    /// A prepared statement's classification under the current catalog:
    /// the one it was judged by, classified again from its text (from the
    /// cache when the catalog is unchanged). A statement judged with a
    /// Bind's values cannot be: refused when the catalog changed since.
    fn reclassified(&self, p: &Prepared) -> Result<Statement, String> {
        let Some(st) = p.statement() else {
            return Err("it was not prepared through pgward".into());
        };
        if let Some(catalog) = p.values_bound {
            if catalog == self.cat_gen {
                return Ok(st.clone());
            }
            return Err("the catalog changed since its Bind; bind it again".into());
        }
        let (_, index) = p.analysis();
        let analysis = self.cat.analyze_with(&p.sql, st.lexer);
        match analysis.as_ref() {
            Ok(v) if v.len() == 1 => Ok(v[0].clone()),
            Ok(v) => v
                .get(index)
                .cloned()
                .ok_or_else(|| "its text no longer classifies as it did".into()),
            Err(m) => Err(m.clone()),
        }
    }

    /// The error for the first statement `role` may not run, if any. When
    /// the only ones it may not run need approval and approvers exist, the
    /// error is for a hold, described in `self.hold`; a message the caller
    /// approved passes them.
    fn refusal(
        &mut self,
        role: &Role,
        statements: &[Statement],
        sql: Option<&str>,
        state: &ProtocolState,
    ) -> Option<PgError> {
        // What `EXECUTE name` may run: what the server holds under the name
        // now and what queued messages may put there. One pgward does not
        // know makes the list empty, so the EXECUTE is denied.
        let prepared = |name: &str| {
            let mut out = Vec::new();
            let mut unknown = false;
            state.statement_candidates(name, state.owed.len(), &mut |p| match p
                .map(|p| self.reclassified(p))
            {
                Some(Ok(st)) => out.push(Arc::new(st)),
                _ => unknown = true,
            });
            if unknown {
                out.clear();
            }
            out
        };
        let mut verdicts = policy::decide::decide_all(role, statements, &self.cat, &prepared);
        if role.approve_commit {
            let step = self
                .block
                .review(statements, sql, &mut verdicts, state.tx_status);
            match &mut self.block_step {
                Some(s) => s.merge(step),
                None => self.block_step = Some(step),
            }
        }
        // A denial anywhere in the message wins over approval: nobody is
        // asked about a message that would be refused anyway.
        let mut approval: Option<(policy::decide::Denial, String)> = None;
        let mut needs: Vec<String> = Vec::new();
        for (st, verdict) in statements.iter().zip(verdicts) {
            // A single statement may come from the shape cache, with
            // another text's literals: show the text the client sent.
            let text = match (sql, statements.len()) {
                (Some(sql), 1) => sql.trim(),
                _ => st.text.as_str(),
            };
            match verdict {
                Verdict::Allow => {}
                Verdict::NeedsApproval(d) => {
                    // What an approval of it covers: its text and, for
                    // `EXECUTE name`, every statement the name may hold.
                    let mut key = text.to_owned();
                    if role.approve_commit && st.tx == Some(TxControl::Commit) {
                        // What it commits, which the approver reviews (a
                        // text that does not parse: no grant covers it).
                        self.block.list(self.block_step.as_ref(), &mut key);
                    }
                    if let Some(name) = &st.executes {
                        let mut i = 0;
                        state.statement_candidates(name, state.owed.len(), &mut |p| {
                            key.push_str(if i == 0 {
                                "  ==> which runs: "
                            } else {
                                "  ==> or: "
                            });
                            key.push_str(
                                p.map_or("(a statement pgward did not judge)", |p| p.sql.trim()),
                            );
                            i += 1;
                        });
                    }
                    if self.approved.iter().any(|a| **a == *key) {
                        self.used_approval = true;
                    } else {
                        needs.push(key);
                        approval.get_or_insert((d, text.to_owned()));
                    }
                }
                Verdict::Deny(d) => {
                    tracing::info!(identity = %self.identity.name, role = %role.name, class = %d.class, "denied: {}", d.why);
                    // Nothing of the message is held.
                    self.hold = None;
                    return Some(d.to_error(&role.name, text, false));
                }
            }
        }
        for st in statements {
            if let Some(reason) = policy::settings::reason_change(&st.settings) {
                self.reason = reason;
            }
        }
        let (d, text) = approval?;
        if !self.ctx.approvals_enabled() {
            return Some(d.to_error(&role.name, &text, true));
        }
        let mut classes: Vec<&str> = statements
            .iter()
            .flat_map(|st| st.classes().iter())
            .filter(|c| role.approve.contains(*c))
            .map(|c| c.name())
            .collect();
        // Several calls may add to one hold: each candidate statement of
        // an Execute (see `judge_portal`).
        let hold = self.hold.get_or_insert_with(|| Hold {
            statement: "".into(),
            texts: Vec::new(),
            role: role.name.clone(),
            classes: String::new(),
            why: d.why.clone(),
            approvals_needed: role.approvals,
            reason: None,
            after_approval: false,
        });
        if hold.reason.is_none() {
            hold.reason = policy::settings::comment_reason(&text)
                .or_else(|| sql.and_then(policy::settings::comment_reason))
                .or_else(|| self.reason.clone());
        }
        if role.require_reason && hold.reason.is_none() {
            self.hold = None;
            return Some(
                PgError::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!(
                        "pgward: role {} must say why before a statement is held for approval",
                        role.name
                    ),
                )
                .with_detail(d.why.clone())
                .with_hint(format!(
                    "run SET {} = 'INC-1234: why' first, or begin the statement with /* reason: why */",
                    policy::settings::REASON
                )),
            );
        }
        for key in needs {
            if !hold.texts.iter().any(|t| **t == *key) {
                hold.texts.push(key.into());
            }
        }
        hold.statement = hold
            .texts
            .iter()
            .map(|t| t.as_ref())
            .collect::<Vec<_>>()
            .join("  <== or, as the server holds that name when it runs ==>  ")
            .into();
        if let (Some(sql), true) = (sql, statements.len() > 1) {
            // An approval runs the whole message: the approver sees all of
            // it (a `SET search_path` before the held DELETE changes what
            // it deletes), not only the statements that asked.
            hold.statement = format!(
                "{}  <== the whole message; approval runs all of it, the statements that need approval: {}",
                sql.trim(),
                hold.statement
            )
            .into();
        }
        classes.extend(hold.classes.split(',').filter(|c| !c.is_empty()));
        if classes.is_empty() {
            classes.push(d.class.name());
        }
        classes.sort_unstable();
        classes.dedup();
        hold.classes = classes.join(",");
        Some(d.to_error(&role.name, &text, true))
    }

    /// Judges SQL text: every statement must be allowed, or nothing runs.
    /// `parse_name` is the statement name of a Parse message.
    fn judge_sql(
        &mut self,
        sql: &str,
        parse_name: Option<&str>,
        state: &ProtocolState,
    ) -> Option<PgError> {
        let limit = self.ctx.max_sql_bytes;
        if sql.len() > limit {
            // Classifying it would hold this session thread, and memory
            // hundreds of times its size, for seconds.
            return Some(
                PgError::error(
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!(
                        "pgward: statement text of {} bytes is larger than pgward classifies ({limit} bytes)",
                        sql.len()
                    ),
                )
                .with_hint("send fewer statements or rows per message, or raise server.max_sql_bytes"),
            );
        }
        self.refresh_snapshots();
        let role = match self.current_role() {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        let lexer = state.text.lexer();
        let key = policy::catalog::cache_key(sql, lexer);
        let (analysis, known_allowed, found) = self.analyze(sql, &key, lexer);
        if self.keep_judged {
            self.last.analysis = Some(analysis.clone());
        }
        let statements = match analysis.as_ref() {
            Ok(s) => s,
            // Deeper than pgward can judge: PostgreSQL's own code for a
            // statement deeper than its max_stack_depth.
            Err(message) if message.starts_with(policy::classify::TOO_DEEP) => {
                return Some(
                    PgError::error(sqlstate::STATEMENT_TOO_COMPLEX, format!("pgward: {message}"))
                        .with_hint(
                            "pgward judges expressions nested up to about 5,000 levels (PostgreSQL 15 runs about 4,000 at its default max_stack_depth); nest less",
                        ),
                )
            }
            Err(message) => {
                self.unparsed = true;
                return Some(
                    PgError::error(sqlstate::SYNTAX_ERROR, format!("pgward: {message}")).with_hint(
                        "pgward's parser (PostgreSQL 18's) cannot parse it, though the server's can",
                    ),
                );
            }
        };
        if statements.iter().any(|st| st.unknown_function) {
            // A function pgward has not seen may be new: look again soon.
            self.refresh_catalog();
        }
        // This session's catalog changes not yet committed: what may run
        // them is uncertain, statement by statement (a later statement of
        // the same string runs after an earlier one's change).
        let mut window = None;
        if self.window.open || statements.iter().any(ddl::changes_catalog) {
            let mut w = self.window.clone();
            for st in statements.iter() {
                if let Some(why) = w.refusal(st, &self.cat) {
                    return Some(unknown(why));
                }
                w.add(st, &self.cat);
            }
            window = Some(w);
        }
        // EXECUTE is judged by what is prepared now, which changes: never
        // from the cache.
        let cacheable = statements
            .iter()
            .all(|st| st.executes.is_none() && st.fetches.is_none());
        for portal in statements.iter().filter_map(|st| st.fetches.as_deref()) {
            if let Some(e) = self.judge_portal(portal, state, false) {
                return Some(e);
            }
        }
        if !cacheable && self.keep_judged {
            for name in statements.iter().filter_map(|st| st.executes.as_deref()) {
                let mut last = None;
                state.statement_candidates(name, state.owed.len(), &mut |p| last = p.cloned());
                if let Some(p) = last {
                    self.last.executed.push((name.to_owned(), p));
                }
            }
        }
        let mut held_for_execute = false;
        // A role whose COMMITs are reviewed is judged every time: its
        // verdicts depend on the open block.
        if !(known_allowed && cacheable) || self.reviews_commits() {
            let unplaced = statements.iter().flat_map(|st| &st.relations);
            if unplaced
                .filter(|r| r.schema.is_none())
                .any(|r| !self.cat.places(&r.name))
            {
                // A relation created since the catalog was loaded: look again.
                self.refresh_catalog();
            }
            if let Some(e) = self.refusal(&role, statements, Some(sql), state) {
                // A Parse of a statement that needs approval runs nothing:
                // it is prepared, and each Execute of it waits.
                if parse_name.is_none() || self.hold.take().is_none() {
                    return Some(e);
                }
                held_for_execute = true;
            } else if cacheable && !self.used_approval {
                self.mark_allowed(&key, found);
            }
        }
        if let Some(w) = window {
            self.window = w;
        }
        // Allowed: what it prepares or deallocates takes effect when the
        // server completes it (see `ProtocolState`); a Query may change how
        // the server reads what follows (a Parse runs nothing).
        let generation = if held_for_execute || self.used_approval {
            NEVER_ALLOWED
        } else {
            self.verdict_gen()
        };
        if parse_name.is_none() {
            self.text_change = state.text.changes(statements);
        }
        let plan = match self.row_plan(&role, statements) {
            Ok(plan) => plan,
            Err(e) => return Some(e),
        };
        match parse_name {
            Some(name) => {
                if !statements.is_empty() {
                    let text: Arc<str> = sql.into();
                    if self.keep_judged {
                        // The owed response keeps the same text, not a copy.
                        self.last.text = Some(text.clone());
                    }
                    let p = Prepared::new(analysis.clone(), 0, text, generation)
                        .with_plan(plan, self.verdict_gen());
                    self.effects
                        .push(Effect::Prepare(name.to_owned(), Arc::new(p)));
                }
            }
            None => {
                self.plan = plan;
                let changes = |st: &Statement| st.prepares.is_some() || st.deallocates.is_some();
                if statements.iter().any(changes) {
                    // A single statement may come from the shape cache with
                    // another text's literals: keep the text the client
                    // sent, which the audit of its EXECUTE shows.
                    let single = statements.len() == 1;
                    for (i, st) in statements.iter().enumerate() {
                        self.effects.push(match (&st.prepares, &st.deallocates) {
                            (Some(name), _) => {
                                let text =
                                    if single { sql.trim() } else { st.text.as_str() }.into();
                                let p = Prepared::new(analysis.clone(), i, text, generation);
                                Effect::Prepare(name.clone(), Arc::new(p))
                            }
                            (None, Some(Some(name))) => Effect::Deallocate(name.clone()),
                            (None, Some(None)) => Effect::DeallocateAll,
                            (None, None) => Effect::None,
                        });
                    }
                }
            }
        }
        None
    }

    /// A FunctionCall message names its function by OID: judge it as a
    /// call of that function.
    fn judge_function_call(
        &mut self,
        call: &frontend::FunctionCall<'_>,
        state: &ProtocolState,
    ) -> Option<PgError> {
        let oid = call.oid()?;
        self.refresh_snapshots();
        let Some(f) = self.cat.function_by_oid(oid) else {
            return Some(denied(format!(
                "function call by OID {oid}, which is not in pgward's catalog"
            )));
        };
        let sql = format!(
            "SELECT \"{}\".\"{}\"()",
            f.schema.replace('"', "\"\""),
            f.name.replace('"', "\"\"")
        );
        let verdict = self.judge_sql(&sql, None, state);
        if self.keep_judged {
            self.last.sql = Some(sql.as_str().into());
        }
        if verdict.is_none() && self.plan.take().is_some() {
            // Its result is one value, not a row the plan could rewrite.
            return Some(denied(format!(
                "a function call whose result would be masked ({sql}); call it with SELECT"
            )));
        }
        verdict
    }
}

/// The session's role, as a copy of its own: the shared one's reference
/// count would otherwise be written by every session on every statement.
fn private_role(
    rules: &RulesCell,
    identity: &Identity,
    wanted: Option<&str>,
) -> Result<Arc<Role>, String> {
    rules
        .get()
        .session_role(identity, wanted)
        .map(|r| Arc::new((*r).clone()))
}

fn denied(m: String) -> PgError {
    PgError::error(sqlstate::INSUFFICIENT_PRIVILEGE, format!("pgward: {m}"))
}

/// A statement pgward cannot judge now: refused as `unknown`.
fn unknown(m: String) -> PgError {
    PgError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("pgward: unknown: {m}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name and text of the Parse that `m` (a whole message) is.
    fn parse_of(m: &[u8]) -> (&str, &str) {
        match Message::parse(m[0], &m[5..]) {
            Ok(Message::Parse(p)) => (p.name, p.sql),
            other => panic!("not a Parse: {other:?}"),
        }
    }

    #[test]
    fn syntax_probes_are_well_framed() {
        let q = syntax_probe(tag::QUERY, b"SELEC 1\0").unwrap();
        assert_eq!(q, b"P\0\0\0\x1d\0SELECT;SELECT;SELEC 1\0\0\0S\0\0\0\x04");
        let p = syntax_probe(tag::PARSE, b"s1\0SELEC $1\0\0\x01\0\0\0\x17").unwrap();
        assert_eq!(parse_of(&p), ("s1", "SELECT;SELECT;SELEC $1"));
        assert_eq!(
            p.len(),
            1 + u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize
        );
        assert!(syntax_probe(tag::QUERY, b"no terminator").is_none());
        assert!(syntax_probe(tag::EXECUTE, b"\0\0\0\0\0").is_none());
    }

    #[test]
    fn stand_ins_are_well_framed() {
        let query = Message::parse(tag::QUERY, b"select 1\0").unwrap();
        let named = Message::parse(tag::PARSE, b"s\0select 1\0\0\0").unwrap();
        let unnamed = Message::parse(tag::PARSE, b"\0select 1\0\0\0").unwrap();
        let call = Message::parse(tag::FUNCTION_CALL, b"").unwrap();
        let execute = Message::parse(tag::EXECUTE, b"\0\0\0\0\0").unwrap();
        for msg in [query, named, unnamed, call, execute] {
            let m = stand_in(&msg);
            let len = u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize;
            assert_eq!(len + 1, m.len(), "{msg:?}");
        }
        for msg in [query, call] {
            let m = stand_in(&msg);
            let Ok(Message::Query(q)) = Message::parse(m[0], &m[5..]) else {
                panic!("not a Query")
            };
            assert!(
                pg_query::parse(q.sql, 0).is_err(),
                "the stand-in must fail to parse"
            );
        }
        for (msg, want) in [
            (named, "pgward.denied"),
            (execute, "pgward.denied"),
            (unnamed, ""),
        ] {
            let (name, sql) = parse_of(stand_in(&msg));
            assert_eq!(name, want);
            assert!(pg_query::parse(sql, 0).is_err());
        }
    }
}
