//! Classification of SQL text with PostgreSQL's own parser (libpg_query).
//!
//! The whole parse tree is walked, not just its top node: a data-modifying
//! CTE, a `SELECT ... INTO`, a locking clause or a function call can sit
//! anywhere. The tree is visited through its serde form so that no node
//! type can be skipped by a hand-written traversal that forgot it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::builtins::{self, Dangerous};
use super::catalog::{events, Catalog, FuncName};
use super::class::{Class, ClassSet};
use super::settings::SettingChange;
use super::stack;
use super::tree::{Map, Value};

/// Why a statement has a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub class: Class,
    pub why: String,
    /// The function call that brought this class, if one did: a role's
    /// `functions.allow` can vouch for it.
    pub function: Option<String>,
}

/// A table, view or sequence a statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationUse {
    pub schema: Option<String>,
    pub name: String,
    /// How it is used: read, write (DML target), ddl, copy_in, ...
    pub access: Class,
}

/// Whether a DML statement (`kind`, its node `n`) reads its target's rows
/// back: RETURNING, a WHERE (its matches are counted), a FROM or USING
/// join, an ON CONFLICT, MERGE's join condition.
fn reads_target(kind: &str, n: &Value) -> bool {
    let given = |k: &str| match n.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    match kind {
        "InsertStmt" => given("returning_clause") || given("on_conflict_clause"),
        "UpdateStmt" => given("returning_clause") || given("where_clause") || given("from_clause"),
        "DeleteStmt" => given("returning_clause") || given("where_clause") || given("using_clause"),
        _ => true,
    }
}

impl RelationUse {
    /// `schema.name`, or `name` when it was not qualified.
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Transaction control, as it bears on a block's COMMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxControl {
    /// BEGIN, START TRANSACTION.
    Begin,
    /// COMMIT, END, COMMIT AND CHAIN, and PREPARE TRANSACTION (whose
    /// COMMIT PREPARED commits what the block did).
    Commit,
    /// ROLLBACK, ABORT.
    Rollback,
    /// SAVEPOINT, RELEASE, ROLLBACK TO, COMMIT/ROLLBACK PREPARED.
    Other,
}

/// One classified statement.
#[derive(Debug, Clone, Default)]
pub struct Statement {
    /// The statement's own text within the string that held it.
    pub text: String,
    /// The parse node at the top ("SelectStmt", "DeleteStmt", ...).
    pub kind: String,
    /// pg_query's fingerprint, once asked for (see `fingerprint`).
    fingerprint: OnceLock<String>,
    pub reasons: Vec<Reason>,
    pub relations: Vec<RelationUse>,
    /// Functions called, as written (`schema.name` or `name`).
    pub functions: Vec<String>,
    pub settings: Vec<SettingChange>,
    /// Dangerous functions and commands used.
    pub dangerous: Vec<&'static Dangerous>,
    /// `PREPARE name AS ...`: the statement is what `name` will run.
    pub prepares: Option<String>,
    /// `EXECUTE name`: judged by what was prepared under `name`.
    pub executes: Option<String>,
    /// `FETCH`/`MOVE` reads this portal: a protocol portal is judged by
    /// the statement it was bound to.
    pub fetches: Option<String>,
    /// `DEALLOCATE name` (`Some(None)` for ALL, DISCARD ALL).
    pub deallocates: Option<Option<String>>,
    /// Reads of tables pgward cannot name (a table given to table_to_xml
    /// at run time, every table of a schema, column statistics of every
    /// table): why, for each. Table rules cannot vouch for them.
    pub hidden_reads: Vec<String>,
    /// A function was not in the catalog (it may be new: refresh).
    pub unknown_function: bool,
    /// The classification read a literal's value (SET, set_config, EXPLAIN
    /// option values, lo_open modes): it may not be shared by shape.
    pub literal_sensitive: bool,
    /// The lexer its text was read with (for the fingerprint's parse).
    pub lexer: Lexer,
    /// What it does to the transaction block, when it is transaction
    /// control.
    pub tx: Option<TxControl>,
    /// How many SQL texts it runs were parsed and judged for it: function
    /// and trigger bodies, rules, defaults, SQL text given to executors.
    /// Each is judged once per statement, however many paths reach it
    /// (see `Judging`).
    pub judged: usize,
}

impl Statement {
    /// pg_query's fingerprint: the same for statements that differ only
    /// in literal values. The audit log records it; it parses the text
    /// again, so it is worked out when first asked for, not by `classify`.
    pub fn fingerprint(&self) -> &str {
        self.fingerprint.get_or_init(|| {
            if self.text.is_empty() {
                return String::new();
            }
            let options = self.lexer.options();
            stack::on(stack::for_sql(self.text.len()), || {
                pg_query::fingerprint(&self.text, options, 0)
            })
            .ok()
            .and_then(Result::ok)
            .map(|f| f.hex)
            .unwrap_or_default()
        })
    }

    pub fn classes(&self) -> ClassSet {
        self.reasons.iter().map(|r| r.class).collect()
    }

    fn reason(&mut self, class: Class, why: impl Into<String>) {
        let why = why.into();
        if !self
            .reasons
            .iter()
            .any(|r| r.class == class && r.why == why && r.function.is_none())
        {
            self.reasons.push(Reason {
                class,
                why,
                function: None,
            });
        }
    }

    /// A reason brought by a call of `function` (which a role's
    /// `functions.allow` can vouch for), once.
    fn reason_of(&mut self, class: Class, why: String, function: &str) {
        let r = Reason {
            class,
            why,
            function: Some(function.to_owned()),
        };
        if !self.reasons.contains(&r) {
            self.reasons.push(r);
        }
    }

    fn dangerous(&mut self, d: &'static Dangerous) {
        if !self.dangerous.iter().any(|x| std::ptr::eq(*x, d)) {
            self.dangerous.push(d);
        }
    }
}

/// The classification of one SQL string: its statements, or the parser's
/// error (a string that does not parse runs nothing in PostgreSQL either).
pub type Analysis = Result<Vec<Statement>, String>;

/// How the server's lexer reads a session's SQL: the settings that change
/// where a string literal ends. `backslash_quote` only decides whether
/// `\'` is an error, and `escape_string_warning` only warns, so neither
/// changes what a text means; `standard_conforming_strings` does (off, a
/// backslash escapes the next character in every `'...'` string).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Lexer {
    /// `standard_conforming_strings = off`.
    pub escapes_in_strings: bool,
}

impl Lexer {
    /// PostgreSQL's default (and the control connection's).
    pub const STANDARD: Lexer = Lexer {
        escapes_in_strings: false,
    };

    pub fn options(self) -> pg_query::ParserOptions {
        if self.escapes_in_strings {
            pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS
        } else {
            pg_query::ParserOptions::DEFAULT
        }
    }
}

thread_local! {
    /// The lexer of the session whose SQL this thread classifies now.
    static LEXER: std::cell::Cell<Lexer> = const { std::cell::Cell::new(Lexer::STANDARD) };
}

/// The lexer the SQL being classified is read with.
pub fn current_lexer() -> Lexer {
    LEXER.with(|l| l.get())
}

/// Runs `f` with SQL read by `lexer` (restored after, even on a panic).
pub fn with_lexer<R>(lexer: Lexer, f: impl FnOnce() -> R) -> R {
    struct Restore(Lexer);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEXER.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LEXER.with(|l| l.replace(lexer)));
    f()
}

/// Parses SQL as the session's lexer reads it. libpg_query sets its
/// lexer's globals from the options for the parse and puts the defaults
/// back only when the parse succeeds: after a failed parse with other
/// options, a trivial parse puts them back, so no later scan or PL/pgSQL
/// parse on this thread reads with them.
pub fn parse(sql: &str) -> pg_query::Result<pg_query::ParseResult> {
    let options = current_lexer().options();
    let parsed = pg_query::parse(sql, options);
    if parsed.is_err() && options != pg_query::ParserOptions::DEFAULT {
        let _ = pg_query::parse("", pg_query::ParserOptions::DEFAULT);
    }
    parsed
}

/// Parses and classifies `sql` as PostgreSQL's default lexer reads it.
pub fn classify(sql: &str, cat: &Catalog) -> Analysis {
    classify_with(sql, cat, Lexer::STANDARD)
}

/// Parses and classifies `sql` as a session with `lexer` has it read.
pub fn classify_with(sql: &str, cat: &Catalog, lexer: Lexer) -> Analysis {
    // On a stack large enough for it (see `stack.rs`), which may be
    // another thread's: the lexer goes with it.
    stack::on(stack::for_sql(sql.len()), || {
        with_lexer(lexer, || classify_here(sql, cat))
    })?
}

/// Parses `sql` and hands the result to `f`, on a stack large enough to
/// decode, use and drop the tree (see `stack.rs`).
pub fn with_parse<R: Send>(
    sql: &str,
    f: impl FnOnce(Result<pg_query::ParseResult, pg_query::Error>) -> R + Send,
) -> Result<R, String> {
    let lexer = current_lexer();
    stack::on(stack::for_sql(sql.len()), || {
        with_lexer(lexer, || f(parse(sql)))
    })
}

fn classify_here(sql: &str, cat: &Catalog) -> Analysis {
    // libpg_query's splitter parses with the standard lexer whatever the
    // session's: a session with escapes in strings is parsed whole (its
    // memory bounded by server.max_sql_bytes, not by the largest piece).
    if current_lexer() != Lexer::STANDARD {
        return classify_pieces(vec![sql], cat);
    }
    classify_pieces(pieces(sql)?, cat)
}

/// Classifies the statements of each piece, in order.
fn classify_pieces(pieces: Vec<&str>, cat: &Catalog) -> Analysis {
    let mut out = Vec::new();
    for piece in pieces {
        let parsed = parse(piece).map_err(parser_message)?;
        for raw in &parsed.protobuf.stmts {
            let judging = Judging::default();
            let mut st = classify_statement(piece, raw, cat, 0, &[], &[], &judging)?;
            st.judged = judging.judged.load(Ordering::Relaxed);
            if judging.over.load(Ordering::Relaxed) {
                st.reason(Class::Unknown, OVER_BUDGET);
                if !st.hidden_reads.iter().any(|h| h == OVER_BUDGET) {
                    st.hidden_reads.push(OVER_BUDGET.into());
                }
            }
            out.push(st);
        }
    }
    if out.is_empty() {
        // An empty query string: PostgreSQL answers EmptyQueryResponse.
        out.push(Statement {
            kind: "Empty".into(),
            reasons: vec![Reason {
                class: Class::Read,
                why: "empty query".into(),
                function: None,
            }],
            ..Statement::default()
        });
    }
    Ok(out)
}

fn parser_message(e: pg_query::Error) -> String {
    let m = match e {
        pg_query::Error::Parse(m) | pg_query::Error::Split(m) => m,
        other => other.to_string(),
    };
    // libpg_query's limits: its parser's stack depth (2 MB, like
    // PostgreSQL's default max_stack_depth) and 10,000 protobuf levels.
    if m.contains("stack depth limit exceeded") || m.contains("nested too deeply") {
        format!("{TOO_DEEP}: {m}")
    } else {
        m
    }
}

/// How a parser error for a statement nested deeper than pgward can judge
/// begins.
pub const TOO_DEEP: &str = "statement is nested too deeply for pgward to judge";

/// Strings longer than this that hold more than one statement are parsed
/// one statement at a time.
const SPLIT_ABOVE: usize = 16 << 10;

/// What to hand the parser: the whole string, or each of its statements.
/// pg_query's result for a string is many times the string's size (1 MiB
/// of `SELECT 1;` came to 460 MB and 1 s as one parse; split, 65 MB and
/// 0.45 s), so a long string of many statements is split first, by the
/// parser itself, which is exact where a scanner may not be. Each piece
/// is the text the whole parse would have given its statement.
fn pieces(sql: &str) -> Result<Vec<&str>, String> {
    // A cheap hint: no semicolon before the end means one statement (a
    // semicolon inside a literal only costs a split).
    if sql.len() <= SPLIT_ABOVE || !sql.trim_end().trim_end_matches(';').contains(';') {
        return Ok(vec![sql]);
    }
    // pg_query slices the string at the parser's offsets; should that
    // ever panic, the whole string is parsed as one instead.
    match std::panic::catch_unwind(|| pg_query::split_with_parser(sql)) {
        Ok(split) => split.map_err(parser_message),
        Err(_) => Ok(vec![sql]),
    }
}

/// At most this many SQL texts (function and trigger bodies, rules,
/// defaults, SQL text given to executors) are parsed and judged for one
/// statement; each costs a parse and a walk.
pub const MAX_JUDGED: usize = 1_000;
/// At most this many calls of user functions and runs of SQL text are
/// followed for one statement, judged or taken from what was judged
/// before in it (each reuse costs a copy of what it runs).
pub const MAX_STEPS: usize = 20_000;
/// Reasons of one class brought by one function that a statement keeps
/// from the SQL it runs (see `take_nested`).
const NESTED_REASONS_KEPT: usize = 4;
/// Hidden reads a statement keeps from the SQL it runs.
const NESTED_HIDDEN_READS_KEPT: usize = 32;
/// Why a statement over those limits is unknown.
pub const OVER_BUDGET: &str = "it runs more function bodies, triggers, rules or SQL text than pgward judges for one statement (a web of functions or triggers too large to judge)";

/// What a statement's nested SQL has cost and what it came to, shared by
/// the walks of everything the statement runs (bodies, triggers, rules,
/// defaults, SQL text; on whichever thread has the stack for them).
///
/// Webs of functions and triggers reach one body on many paths, as many
/// as 2^n for n functions that each call the next two: each SQL text is
/// judged once per statement and its statements reused on the other
/// paths. That is sound although a text judged while a function was
/// already being judged above it (a cycle) leaves that function's body
/// out: that body is judged in the same statement all the same, and a
/// statement's verdict is the union of everything it runs. The total work
/// is bounded (`MAX_JUDGED`, `MAX_STEPS`): beyond it the statement is
/// unknown (`OVER_BUDGET`) and nothing more is judged for it.
#[derive(Default)]
struct Judging {
    /// Nested SQL texts judged in this statement, by lexer and text.
    done: Mutex<HashMap<TextKey, Arc<Judged>>>,
    /// Function bodies taken apart in this statement, by language and
    /// definition.
    bodies: Mutex<HashMap<BodyKey, Arc<super::body::Body>>>,
    /// SQL texts parsed and judged.
    judged: AtomicUsize,
    /// Calls of user functions and runs of SQL text followed.
    steps: AtomicUsize,
    /// The limits were reached.
    over: AtomicBool,
    /// Walks cut short for depth (`Walker::too_deep`).
    cutoffs: AtomicUsize,
}

/// A nested SQL text: the lexer it is read with, and the text.
type TextKey = (Lexer, Box<str>);
/// A function body: its language and definition.
type BodyKey = (Box<str>, Box<str>);

/// A nested SQL text judged in a statement: what it runs, the depth of
/// the walk that judged it, and whether that walk was cut short for
/// depth (then it is judged again where the walk is shallower).
struct Judged {
    nested: Nested,
    depth: usize,
    cut: bool,
}

/// The statements of a nested SQL text, and why it could not all be
/// judged (or why none of it could).
type Nested = Result<(Vec<Statement>, Option<String>), String>;

impl Judging {
    /// Counts a step (and a text to judge, with `judge`); false once the
    /// statement is over its limits.
    fn spend(&self, judge: bool) -> bool {
        if self.over.load(Ordering::Relaxed) {
            return false;
        }
        let steps = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        let judged = if judge {
            self.judged.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.judged.load(Ordering::Relaxed)
        };
        if steps > MAX_STEPS || judged > MAX_JUDGED {
            self.over.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// What a text came to when judged before in this statement, if that
    /// holds at `depth`: a walk cut short for depth holds only as deep.
    fn judged_before(&self, key: &TextKey, depth: usize) -> Option<Arc<Judged>> {
        let judged = self
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()?;
        if judged.cut {
            if judged.depth > depth {
                return None;
            }
            // What takes it in was cut short too.
            self.cutoffs.fetch_add(1, Ordering::Relaxed);
        }
        Some(judged)
    }

    fn remember(&self, key: TextKey, nested: Arc<Judged>) {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, nested);
    }

    /// The SQL of a function body, taken apart once per statement.
    fn body(&self, language: &str, definition: &str) -> Arc<super::body::Body> {
        let key: BodyKey = (language.into(), definition.into());
        if let Some(b) = self
            .bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return b.clone();
        }
        let body = Arc::new(super::body::statements(language, definition));
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, body.clone());
        body
    }
}

/// Classifies one statement of the parse of `sql`.
fn classify_statement(
    sql: &str,
    raw: &pg_query::protobuf::RawStmt,
    cat: &Catalog,
    depth: usize,
    calling: &[u32],
    rules: &[String],
    judging: &Judging,
) -> Result<Statement, String> {
    // One statement's tree at a time: as a tree of values it is many
    // times the size of its text, and a string may hold thousands.
    let raw = Value::of(raw).map_err(|e| e.to_string())?;
    let start = raw["stmt_location"].as_u64().unwrap_or(0) as usize;
    let len = raw["stmt_len"].as_u64().unwrap_or(0) as usize;
    let text = slice_text(sql, start, len);
    let mut st = Statement {
        text: text.trim().to_owned(),
        lexer: current_lexer(),
        ..Statement::default()
    };
    let (kind, inner) = variant(&raw["stmt"]).ok_or("empty statement")?;
    st.kind = kind.to_owned();
    let mut w = Walker {
        cat,
        st: &mut st,
        ctes: Vec::new(),
        depth,
        compares: false,
        calling: calling.to_vec(),
        idiom: None,
        rules: rules.to_vec(),
        events: 0,
        truncate_cascade: false,
        written: Vec::new(),
        judging,
    };
    w.top(kind, inner, false);
    w.type_ddl(kind, inner);
    w.row_ddl(kind, inner);
    if w.compares {
        w.implicit_operators();
    }
    w.implicit_casts();
    w.event_triggers(kind);
    // EXECUTE takes the classes of what was prepared (the session
    // knows); anything else without a class is unknown.
    if st.reasons.is_empty() && st.executes.is_none() {
        st.reason(Class::Unknown, format!("{kind} has no class"));
    }
    Ok(st)
}

fn slice_text(sql: &str, start: usize, len: usize) -> &str {
    let end = if len == 0 { sql.len() } else { start + len };
    sql.get(start..end.min(sql.len())).unwrap_or(sql)
}

/// `{"node": {"Kind": {...}}}` → ("Kind", {...}).
fn variant(node: &Value) -> Option<(&str, &Value)> {
    let map = node.get("node")?.as_object()?;
    map.iter().next()
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The strings of a name list (`[{"node":{"String":{"sval":"x"}}}, ...]`).
fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| variant(n))
                .filter(|(k, _)| *k == "String")
                .map(|(_, s)| str_field(s, "sval").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A possibly qualified name list as (schema, name): `[name]` or
/// `[..., schema, name]` (a leading catalog name is ignored).
fn qualified(parts: &[String]) -> Option<(Option<&str>, &str)> {
    match parts {
        [name] => Some((None, name.as_str())),
        [.., schema, name] => Some((Some(schema.as_str()), name.as_str())),
        [] => None,
    }
}

/// How a call hidden in SQL/JSON syntax is named on the record.
const SQL_JSON: &str = "SQL/JSON syntax, a call on servers before PostgreSQL 16";

/// The value of a constant node as PostgreSQL would print it.
pub(crate) fn const_text(node: &Value) -> Option<String> {
    let (kind, c) = variant(node)?;
    let c = match kind {
        "AConst" => c.get("val")?,
        "String" | "Integer" | "Float" | "Boolean" => return simple_value(kind, c),
        _ => return None,
    };
    let (k, v) = c.as_object()?.iter().next()?;
    let kind = match k {
        "Sval" => "String",
        "Ival" => "Integer",
        "Fval" => "Float",
        "Boolval" => "Boolean",
        _ => return None,
    };
    simple_value(kind, v)
}

/// A function argument's constant value, also through a cast to a
/// built-in string type (`'SELECT ...'::text`), whose input function only
/// copies the text. Not `name`: it cuts the text to 63 bytes, so the
/// server would run less than pgward read.
fn text_arg(node: &Value) -> Option<String> {
    if let Some(v) = const_text(node) {
        return Some(v);
    }
    let (kind, cast) = variant(node)?;
    if kind != "TypeCast" {
        return None;
    }
    let ty = names(&cast["type_name"]["names"]);
    let string_type = match ty.as_slice() {
        [t] | [_, t] if ty.len() == 1 || ty[0] == "pg_catalog" => {
            matches!(t.as_str(), "text" | "varchar")
        }
        _ => false,
    };
    // A type modifier (varchar(3)) would cut the text.
    let modified = cast["type_name"]["typmods"]
        .as_array()
        .is_some_and(|m| !m.is_empty());
    if string_type
        && !modified
        && cast["type_name"]["array_bounds"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    {
        text_arg(&cast["arg"])
    } else {
        None
    }
}

fn simple_value(kind: &str, v: &Value) -> Option<String> {
    match kind {
        "String" => Some(str_field(v, "sval").to_owned()),
        "Integer" => Some(
            v.get("ival")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
        ),
        "Float" => Some(str_field(v, "fval").to_owned()),
        "Boolean" => Some(
            if v.get("boolval").and_then(Value::as_bool).unwrap_or(false) {
                "on"
            } else {
                "off"
            }
            .to_owned(),
        ),
        _ => None,
    }
}

/// A DefElem list as (name, value) pairs; value None when absent or not a
/// constant.
fn def_elems(v: &Value) -> Vec<(String, Option<String>, bool)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| variant(n))
                .filter(|(k, _)| *k == "DefElem")
                .map(|(_, d)| {
                    let arg = d.get("arg").filter(|a| !a.is_null());
                    (
                        str_field(d, "defname").to_owned(),
                        arg.and_then(const_text),
                        arg.is_some(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The modes of BEGIN, SET TRANSACTION and SET SESSION CHARACTERISTICS as
/// settings: READ WRITE arrives as transaction_read_only = 0, shown (and
/// compared) as off.
fn transaction_modes(v: &Value) -> Vec<(String, Option<String>)> {
    def_elems(v)
        .into_iter()
        .map(|(opt, value, _)| {
            let value = value.map(|v| match v.as_str() {
                "0" => "off".to_owned(),
                "1" => "on".to_owned(),
                _ => v,
            });
            (opt, value)
        })
        .collect()
}

/// PostgreSQL's boolean parsing (parse_bool): on/off/true/false/yes/no/1/0
/// and any unambiguous prefix ("of" is off, "t" is true).
pub fn parse_pg_bool(s: &str) -> Option<bool> {
    let s = s.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| s.len() >= min && word.starts_with(s.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || s == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || s == "0" {
        Some(false)
    } else {
        None
    }
}

/// LockStmt's mode for ACCESS SHARE (AccessShareLock).
const ACCESS_SHARE_LOCK: i64 = 1;

/// Statements pg_dump sends that pgward recognises by their exact shape
/// (the parse tree of the template below, apart from source positions and
/// the constants marked `'?'`), nothing looser, and judges for what they
/// are rather than for the catalogs they name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DumpIdiom {
    /// `SELECT set_config(name, 'v', false) FROM pg_settings WHERE name =
    /// 'x'` sets x (if the server has it) like `SET x = 'v'`: the WHERE
    /// binds the name, and set_config, being VOLATILE, runs only for the
    /// rows that pass it. It returns the new value, not the settings.
    SetConfig(String),
    /// pg_dump's count of the database's subscriptions (as a user who may
    /// not read them): a number, not their connection strings.
    CountSubscriptions,
}

const SET_CONFIG_FROM_PG_SETTINGS: &str =
    "SELECT set_config(name, '?', '?') FROM pg_settings WHERE name = '?'";
const COUNT_SUBSCRIPTIONS: &str = "SELECT count(*) FROM pg_subscription WHERE subdbid = \
     (SELECT oid FROM pg_database WHERE datname = current_database())";

impl DumpIdiom {
    /// The idiom a SelectStmt node is, if it is one.
    fn of(select: &Value) -> Option<DumpIdiom> {
        static TEMPLATES: OnceLock<Option<(Value, Value)>> = OnceLock::new();
        let (set_config, count) = TEMPLATES
            .get_or_init(|| {
                Some((
                    template(SET_CONFIG_FROM_PG_SETTINGS)?,
                    template(COUNT_SUBSCRIPTIONS)?,
                ))
            })
            .as_ref()?;
        if same_tree(set_config, select) {
            let setting = const_text(&select["where_clause"]["node"]["AExpr"]["rexpr"])?;
            return Some(DumpIdiom::SetConfig(setting.to_ascii_lowercase()));
        }
        same_tree(count, select).then_some(DumpIdiom::CountSubscriptions)
    }
}

/// The SelectStmt node of a template's parse.
fn template(sql: &str) -> Option<Value> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let raw = Value::of(parsed.protobuf.stmts.first()?).ok()?;
    let (_, select) = variant(&raw["stmt"])?;
    Some(select.clone())
}

/// Whether `v` is the tree `template`, apart from source positions; a
/// constant `'?'` in the template stands for any constant that is not NULL.
fn same_tree(template: &Value, v: &Value) -> bool {
    match (template, v) {
        (Value::Object(t), Value::Object(c)) => {
            if let (Some(tc), Some(cc)) = (t.get("AConst"), c.get("AConst")) {
                if tc["val"]["Sval"]["sval"].as_str() == Some("?") {
                    return !cc["isnull"].as_bool().unwrap_or(false) && !cc["val"].is_null();
                }
            }
            t.iter().count() == c.iter().count()
                && t.iter()
                    .zip(c.iter())
                    .all(|((tk, tv), (ck, cv))| tk == ck && (tk == "location" || same_tree(tv, cv)))
        }
        (Value::Array(t), Value::Array(c)) => {
            t.len() == c.len() && t.iter().zip(c).all(|(t, c)| same_tree(t, c))
        }
        _ => template == v,
    }
}

/// How deep views may refer to views before pgward gives up (fail closed).
const MAX_DEPTH: usize = 16;
/// How a call made by a table's row security policies is shown.
const POLICY_OF: &str = "row security policies of ";

struct Walker<'a> {
    cat: &'a Catalog,
    st: &'a mut Statement,
    /// The WITH query names visible where the walk is, innermost last:
    /// an unqualified name in FROM that is one of them is no table.
    ctes: Vec<String>,
    depth: usize,
    /// The statement compares values without naming an operator (ORDER
    /// BY, GROUP BY, DISTINCT, JOIN USING, UNION, CASE x WHEN, BETWEEN,
    /// GREATEST, min()): PostgreSQL looks the operators up by name.
    compares: bool,
    /// The user functions whose bodies are being judged, outermost first
    /// (a function that calls itself is judged once).
    calling: Vec<u32>,
    /// The statement is one of pg_dump's idioms that pgward recognises by
    /// their exact shape (see `DumpIdiom`).
    idiom: Option<DumpIdiom>,
    /// The rules whose actions are being judged (`schema.table.rule`):
    /// PostgreSQL refuses a rule that fires itself again.
    rules: Vec<String>,
    /// The kinds of write (`events::*`) of the table being walked, while
    /// the walk is at a statement's target; 0 elsewhere.
    events: u8,
    /// TRUNCATE ... CASCADE: the referencing tables are emptied too.
    truncate_cascade: bool,
    /// Tables whose write effects were judged in this statement, with
    /// the kinds of write (so cascades that loop end).
    written: Vec<(String, u8)>,
    /// What the whole statement has judged and spent (see `Judging`).
    judging: &'a Judging,
}

impl Walker<'_> {
    /// Whether an idiom's names can only be the built-ins it takes them
    /// for. A role may be allowed a search_path that puts a schema ahead
    /// of pg_catalog, and pgward does not track the path: a user relation
    /// named pg_settings, or a user `=` on text (what `name = 'x'` would
    /// call, choosing for which settings set_config runs), could take
    /// their place.
    fn idiom_holds(&self, idiom: &DumpIdiom) -> bool {
        match idiom {
            DumpIdiom::SetConfig(_) => {
                !self.cat.user_text_equals
                    && self
                        .cat
                        .relation_schemas("pg_settings")
                        .is_some_and(|places| places == ["pg_catalog"])
            }
            DumpIdiom::CountSubscriptions => true,
        }
    }

    /// Classifies a statement node. `plan_only` is set under EXPLAIN without
    /// ANALYZE: the statement is planned, not run.
    fn top(&mut self, kind: &str, n: &Value, plan_only: bool) {
        use Class::*;
        let base = match kind {
            "SelectStmt" => {
                self.st.reason(Read, "SELECT");
                if let Some(idiom) = DumpIdiom::of(n).filter(|i| self.idiom_holds(i)) {
                    // Its exact shape is known: one call, one relation.
                    self.idiom = Some(idiom);
                    self.node(kind, n, Read, plan_only);
                    self.idiom = None;
                    return;
                }
                Read
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => Write,
            "ExplainStmt" => return self.explain(n, plan_only),
            "CopyStmt" => return self.copy(n),
            "VariableSetStmt" => return self.set(n),
            "VariableShowStmt" => {
                self.st.reason(Read, "SHOW");
                let name = str_field(n, "name");
                if name.eq_ignore_ascii_case("all") || builtins::is_secret_setting(name) {
                    self.server_secrets(format!("SHOW {name}"));
                }
                return;
            }
            "TransactionStmt" => return self.transaction(n),
            "PrepareStmt" => {
                self.st.prepares = Some(str_field(n, "name").to_owned());
                if let Some((k, q)) = n.get("query").and_then(variant) {
                    self.top(k, q, plan_only);
                }
                return;
            }
            "ExecuteStmt" => {
                self.st.executes = Some(str_field(n, "name").to_owned());
                self.walk(&n["params"], Read, plan_only);
                return;
            }
            "DeallocateStmt" => {
                self.st.reason(Session, "DEALLOCATE");
                self.st.deallocates = Some(if n["isall"].as_bool().unwrap_or(false) {
                    None
                } else {
                    Some(str_field(n, "name").to_owned())
                });
                return;
            }
            "DeclareCursorStmt" => {
                self.st.reason(Read, "DECLARE CURSOR");
                if let Some((k, q)) = n.get("query").and_then(variant) {
                    self.top(k, q, plan_only);
                }
                return;
            }
            "FetchStmt" | "ClosePortalStmt" => {
                self.st.reason(Read, "FETCH, MOVE or CLOSE of a cursor");
                if kind == "FetchStmt" {
                    self.st.fetches = Some(str_field(n, "portalname").to_owned());
                }
                return;
            }
            "DoStmt" => {
                self.st.reason(
                    Unknown,
                    "DO runs procedural code that pgward cannot inspect",
                );
                self.hidden_read("DO runs code that may read any table".to_owned());
                return;
            }
            "CallStmt" => {
                self.st
                    .reason(Write, "CALL runs a procedure, which may write and commit");
                Write
            }
            "TruncateStmt" => {
                self.st.reason(Write, "TRUNCATE");
                Write
            }
            "RefreshMatViewStmt" => {
                self.st
                    .reason(Write, "REFRESH MATERIALIZED VIEW rewrites its data");
                Write
            }
            "NotifyStmt" => {
                self.st.reason(Write, "NOTIFY signals other sessions");
                Write
            }
            "ListenStmt" | "UnlistenStmt" => {
                self.st.reason(Session, "LISTEN/UNLISTEN");
                return;
            }
            "DiscardStmt" => {
                self.st.reason(Session, "DISCARD");
                // DISCARD ALL deallocates every prepared statement.
                if n["target"].as_i64() == Some(1) {
                    self.st.deallocates = Some(None);
                }
                return;
            }
            // ACCESS SHARE is the lock a SELECT takes on what it reads
            // (pg_dump takes it on every table it dumps): a read of those
            // tables, judged by the read rules. Every other mode is a lock.
            "LockStmt" if n["mode"].as_i64() == Some(ACCESS_SHARE_LOCK) => {
                self.st.reason(
                    Read,
                    "LOCK TABLE ... IN ACCESS SHARE MODE takes the lock a SELECT takes",
                );
                Read
            }
            "LockStmt" => {
                self.st.reason(Lock, "LOCK TABLE");
                Lock
            }
            "ConstraintsSetStmt" => {
                self.st.reason(Transaction, "SET CONSTRAINTS");
                return;
            }
            "VacuumStmt" => {
                let what = if n["is_vacuumcmd"].as_bool().unwrap_or(true) {
                    "VACUUM"
                } else {
                    "ANALYZE writes statistics"
                };
                self.st.reason(Admin, what);
                Admin
            }
            "ClusterStmt" | "ReindexStmt" | "CheckPointStmt" => {
                self.st
                    .reason(Admin, format!("{} is maintenance", sql_name(kind)));
                Admin
            }
            "AlterSystemStmt" => {
                self.st
                    .dangerous(builtins::dangerous_command("alter_system"));
                self.st.reason(Admin, "ALTER SYSTEM");
                return;
            }
            "LoadStmt" => {
                self.st.dangerous(builtins::dangerous_command("load"));
                self.st.reason(Admin, "LOAD");
                return;
            }
            k if is_admin(k) => {
                self.st
                    .reason(Admin, format!("{} changes the cluster", sql_name(k)));
                Admin
            }
            k if is_dcl(k) => {
                self.st
                    .reason(Dcl, format!("{} changes privileges", sql_name(k)));
                Dcl
            }
            // Plain EXPLAIN of CREATE TABLE AS plans the query only.
            "CreateTableAsStmt" if plan_only => Read,
            k if is_ddl(k) => {
                self.st
                    .reason(Ddl, format!("{} changes the schema", sql_name(k)));
                if k == "AlterTableStmt" && gives_away_ownership(n) {
                    self.st
                        .reason(Dcl, "ALTER ... OWNER TO changes who holds the privileges");
                }
                Ddl
            }
            other => {
                self.st.reason(
                    Unknown,
                    format!("pgward does not classify {other} statements"),
                );
                Unknown
            }
        };
        self.node(kind, n, base, plan_only);
    }

    fn explain(&mut self, n: &Value, plan_only: bool) {
        // ANALYZE runs the statement: `ANALYZE`, `(ANALYZE)`, `(ANALYZE on)`,
        // `(ANALYZE 1)` and `(ANALYZE 'of')` (off) all parse differently.
        let options = def_elems(&n["options"]);
        if options.iter().any(|(_, _, has_arg)| *has_arg) {
            self.st.literal_sensitive = true;
        }
        let analyze = options.into_iter().any(|(name, value, has_arg)| {
            name == "analyze"
                && (!has_arg || value.as_deref().and_then(parse_pg_bool).unwrap_or(true))
        });
        let Some((k, q)) = n.get("query").and_then(variant) else {
            return;
        };
        if analyze && !plan_only {
            self.st.reason(
                Class::Read,
                "EXPLAIN ANALYZE runs the statement it explains",
            );
            self.top(k, q, false);
        } else {
            self.st
                .reason(Class::Read, "EXPLAIN without ANALYZE only plans");
            // Planning still folds constant calls of IMMUTABLE functions,
            // so functions stay judged as if they ran.
            self.top(k, q, true);
        }
    }

    fn copy(&mut self, n: &Value) {
        let from = n["is_from"].as_bool().unwrap_or(false);
        let (class, what) = if from {
            (Class::CopyIn, "COPY FROM loads rows")
        } else {
            (Class::CopyOut, "COPY TO returns rows")
        };
        self.st.reason(class, what);
        // Never shared by shape: pg_query's tree shows `TO ''` like `TO
        // STDOUT`, so the file name's literal decides.
        self.st.literal_sensitive = true;
        if n["is_program"].as_bool().unwrap_or(false) {
            let d = builtins::dangerous_command("copy_program");
            self.st.dangerous(d);
            self.st.reason(Class::FileOrProgram, d.why);
        } else if !str_field(n, "filename").is_empty() || copy_names_a_file(&self.st.text) {
            let d = builtins::dangerous_command("copy_file");
            self.st.dangerous(d);
            self.st.reason(Class::FileOrProgram, d.why);
        }
        if from {
            self.st
                .reason(Class::Write, "COPY FROM writes rows into a table");
        }
        let access = if from { Class::Write } else { Class::Read };
        if let Some(rel) = n.get("relation").filter(|r| !r.is_null()) {
            let events = if from {
                events::INSERT | events::NO_RULES
            } else {
                0
            };
            let saved = std::mem::replace(&mut self.events, events);
            self.relation(rel, access);
            self.events = saved;
        }
        if let Some((k, q)) = n.get("query").and_then(variant) {
            self.top(k, q, false);
        }
        self.walk(&n["where_clause"], Class::Read, false);
    }

    fn set(&mut self, n: &Value) {
        self.st.literal_sensitive = true;
        let kind = n["kind"].as_i64().unwrap_or(0);
        let name = str_field(n, "name").to_ascii_lowercase();
        let local = n["is_local"].as_bool().unwrap_or(false);
        match kind {
            // SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION
            4 => {
                let session = name == "session characteristics";
                let class = if session {
                    Class::Session
                } else {
                    Class::Transaction
                };
                self.st
                    .reason(class, format!("SET {}", name.to_uppercase()));
                for (opt, value) in transaction_modes(&n["args"]) {
                    let target = if session {
                        format!("default_{opt}")
                    } else {
                        opt
                    };
                    self.st
                        .settings
                        .push(SettingChange::set(target, value, local || !session));
                }
            }
            // RESET ALL
            6 => {
                self.st.reason(Class::Session, "RESET ALL");
                self.st.settings.push(SettingChange::reset("all"));
            }
            // RESET name, SET name TO DEFAULT
            2 | 5 => {
                self.st.reason(Class::Session, format!("RESET {name}"));
                self.st.settings.push(SettingChange::reset(&name));
            }
            _ => {
                self.st.reason(Class::Session, format!("SET {name}"));
                let values: Option<Vec<String>> = n["args"]
                    .as_array()
                    .map(|a| a.iter().map(const_text).collect())
                    .unwrap_or(Some(Vec::new()));
                let value = values.map(|v| v.join(", "));
                self.st
                    .settings
                    .push(SettingChange::set(name, value, local));
            }
        }
    }

    fn transaction(&mut self, n: &Value) {
        let kind = n["kind"].as_i64().unwrap_or(0);
        // pg_query's TransactionStmtKind.
        self.st.tx = Some(match kind {
            1 | 2 => TxControl::Begin,
            3 | 8 => TxControl::Commit,
            4 => TxControl::Rollback,
            _ => TxControl::Other,
        });
        match kind {
            8 => self.st.reason(
                Class::Admin,
                "PREPARE TRANSACTION leaves a two-phase transaction behind",
            ),
            9 | 10 => self.st.reason(
                Class::Admin,
                "COMMIT/ROLLBACK PREPARED finishes a two-phase transaction",
            ),
            _ => self.st.reason(Class::Transaction, "transaction control"),
        }
        for (opt, value) in transaction_modes(&n["options"]) {
            self.st.settings.push(SettingChange::set(opt, value, true));
        }
    }

    /// Walks a statement node's fields. Relations under `relation` of a
    /// DML node are written; everything else is read unless `base` says
    /// otherwise (DDL targets, COPY, LOCK...).
    fn node(&mut self, kind: &str, n: &Value, base: Class, plan_only: bool) {
        let dml = matches!(
            kind,
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"
        );
        if dml && !plan_only {
            self.st
                .reason(Class::Write, format!("{} modifies data", sql_name(kind)));
        }
        let Some(map) = n.as_object() else { return };
        if kind == "SelectStmt" {
            self.select(map, plan_only);
        }
        let scope = self.with_clause(map, plan_only);
        for (key, value) in map {
            // The statement's target gets its class; what it reads from
            // (sub-selects, USING, FROM) is read.
            let access = match key {
                "with_clause" => continue,
                "relation" if dml && plan_only => Class::Read,
                "relation" | "relations" | "objects" | "rels" | "into" => base,
                _ => Class::Read,
            };
            let events = match (kind, key) {
                ("InsertStmt", "relation") => {
                    let upsert = n.get("on_conflict_clause").is_some_and(|c| !c.is_null());
                    events::INSERT | if upsert { events::UPDATE } else { 0 }
                }
                ("UpdateStmt", "relation") => events::UPDATE,
                ("DeleteStmt", "relation") => events::DELETE,
                ("MergeStmt", "relation") => events::INSERT | events::UPDATE | events::DELETE,
                ("TruncateStmt", "relations") => events::TRUNCATE,
                (
                    "AlterTableStmt" | "ClusterStmt" | "VacuumStmt" | "ReindexStmt",
                    "relation" | "rels",
                ) => events::MAINTAIN,
                _ => 0,
            };
            let saved = std::mem::replace(&mut self.events, events);
            if kind == "TruncateStmt" {
                // DropBehavior: DROP_CASCADE is 2.
                self.truncate_cascade = n["behavior"].as_i64() == Some(2);
            }
            // A DML statement's target is a table even where a WITH query
            // has its name: PostgreSQL never resolves it to the WITH query.
            if dml && key == "relation" {
                self.outside_ctes(|w| w.walk(value, access, plan_only));
                // RETURNING, a WHERE or a join shows the target's rows (a
                // count of the rows a WHERE matched is an oracle): a read
                // of it too, as PostgreSQL asks SELECT on it for those.
                if !plan_only && reads_target(kind, n) {
                    self.events = 0;
                    self.outside_ctes(|w| w.walk(value, Class::Read, plan_only));
                }
            } else if key == "into_clause" {
                self.select_into(value, plan_only);
            } else {
                self.walk(value, access, plan_only);
            }
            self.events = saved;
        }
        self.ctes.truncate(scope);
    }

    /// Walks a statement's WITH queries as PostgreSQL scopes them, and
    /// leaves their names visible for the rest of the statement. Returns
    /// the scope to restore once the statement is walked. Without
    /// RECURSIVE a WITH query sees only the ones before it (its own name
    /// in its body is a table); with it, all of them.
    fn with_clause(&mut self, map: &Map, plan_only: bool) -> usize {
        let scope = self.ctes.len();
        let Some(with) = map.get("with_clause").filter(|w| !w.is_null()) else {
            return scope;
        };
        let recursive = with["recursive"].as_bool().unwrap_or(false);
        let queries: Vec<(&str, &Value)> = with["ctes"]
            .as_array()
            .map(|a| a.iter().filter_map(variant).collect())
            .unwrap_or_default();
        if recursive {
            for (_, n) in &queries {
                self.ctes.push(str_field(n, "ctename").to_owned());
            }
        }
        for (kind, n) in &queries {
            // Anything but a WITH query here is walked like any node, and
            // adds no name (so a name it would have had means a table).
            self.walk(n, Class::Read, plan_only);
            if !recursive && *kind == "CommonTableExpr" {
                self.ctes.push(str_field(n, "ctename").to_owned());
            }
        }
        scope
    }

    /// SELECT ... INTO creates the table it names (unless only planned),
    /// which is never a WITH query.
    fn select_into(&mut self, into: &Value, plan_only: bool) {
        let access = if plan_only { Class::Read } else { Class::Ddl };
        self.outside_ctes(|w| w.walk(into, access, plan_only));
    }

    /// Runs `f` with no WITH query name visible: for names that always
    /// mean a table (DML targets, SELECT INTO).
    fn outside_ctes(&mut self, f: impl FnOnce(&mut Self)) {
        let ctes = std::mem::take(&mut self.ctes);
        f(self);
        self.ctes = ctes;
    }

    /// Visits every node below `v`.
    fn walk(&mut self, v: &Value, access: Class, plan_only: bool) {
        match v {
            Value::Array(items) => {
                for item in items {
                    self.walk(item, access, plan_only);
                }
            }
            Value::Object(map) => self.object(map, access, plan_only),
            _ => {}
        }
    }

    fn object(&mut self, map: &Map, access: Class, plan_only: bool) {
        // A Node: {"node": {"Kind": {...}}}.
        if let Some(Value::Object(inner)) = map.get("node") {
            if let Some((kind, n)) = inner.iter().next() {
                return self.nested(kind, n, access, plan_only);
            }
            return;
        }
        // Structs held directly (not as a Node) are recognised by shape.
        if map.contains_key("relname") && map.contains_key("relpersistence") {
            return self.relation(&Value::Object(map.clone()), access);
        }
        if map.contains_key("funcname") && map.contains_key("agg_star") {
            self.func_call(map);
        } else if map.contains_key("names") && map.contains_key("typemod") {
            self.type_name(map);
        } else if map.contains_key("into_clause") && map.contains_key("locking_clause") {
            self.select(map, plan_only);
        } else if map
            .get("partition_clause")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            // OVER (PARTITION BY ...), held directly by its FuncCall.
            self.compares = true;
        }
        let scope = self.with_clause(map, plan_only);
        for (key, value) in map {
            match key {
                "with_clause" => {}
                "into_clause" => self.select_into(value, plan_only),
                _ => self.walk(value, access, plan_only),
            }
        }
        self.ctes.truncate(scope);
    }

    fn nested(&mut self, kind: &str, n: &Value, access: Class, plan_only: bool) {
        match kind {
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                return self.node(kind, n, Class::Write, plan_only)
            }
            "ColumnRef" => {
                // `t.f` may call f(t) (attribute notation).
                let fields = names(&n["fields"]);
                if fields.len() >= 2 {
                    if let Some(last) = fields.last() {
                        self.attribute_call(last);
                    }
                }
            }
            "AIndirection" => {
                for name in names(&n["indirection"]) {
                    self.attribute_call(&name);
                }
            }
            "AExpr" => {
                self.operator(&names(&n["name"]));
                // BETWEEN uses >= and <= without naming them.
                if (11..=14).contains(&n["kind"].as_i64().unwrap_or(0)) {
                    self.compares = true;
                }
                // `x NOT IN (...)` names `<>`, but a hashed NOT IN runs
                // the function of its negator (`=`).
                if n["kind"].as_i64() == Some(7)
                    && names(&n["name"]).last().is_some_and(|o| o == "<>")
                {
                    self.operator(&["=".to_owned()]);
                }
            }
            "SortBy" | "MinMaxExpr" | "GroupingSet" | "WindowDef" => {
                self.compares = true;
                self.operator(&names(&n["use_op"]));
            }
            "CaseExpr" if n.get("arg").is_some_and(|a| !a.is_null()) => self.compares = true,
            "JoinExpr"
                if n["is_natural"].as_bool().unwrap_or(false)
                    || n["using_clause"].as_array().is_some_and(|u| !u.is_empty()) =>
            {
                self.compares = true
            }
            // `x op ANY (SELECT ...)`, `x OPERATOR(s.op) ALL (...)`; `x IN
            // (SELECT ...)` is ANY with the `=` left unnamed.
            "SubLink" => {
                let op = names(&n["oper_name"]);
                let quantified = matches!(n["sub_link_type"].as_i64(), Some(2 | 3));
                if op.is_empty() && quantified {
                    self.operator(&["=".to_owned()]);
                    self.compares = true;
                } else {
                    self.operator(&op);
                }
            }

            // CREATE TABLE ... AS EXECUTE name runs what is prepared.
            "ExecuteStmt" => {
                self.st.executes = Some(str_field(n, "name").to_owned());
            }
            // SQL/JSON syntax of PostgreSQL 16-18, which an older server
            // parses as a plain call of a function of that name (a user
            // function in any schema of the path).
            "JsonScalarExpr" => self.call_if_it_matters(None, "json_scalar", SQL_JSON),
            "JsonSerializeExpr" => self.call_if_it_matters(None, "json_serialize", SQL_JSON),
            "JsonParseExpr" => self.call_if_it_matters(None, "json", SQL_JSON),
            "JsonArrayConstructor" | "JsonArrayQueryConstructor" => {
                self.call_if_it_matters(None, "json_array", SQL_JSON)
            }
            "JsonObjectConstructor" => self.call_if_it_matters(None, "json_object", SQL_JSON),
            "JsonArrayAgg" => self.call_if_it_matters(None, "json_arrayagg", SQL_JSON),
            "JsonObjectAgg" => self.call_if_it_matters(None, "json_objectagg", SQL_JSON),
            "JsonFuncExpr" => {
                for name in ["json_value", "json_query", "json_exists"] {
                    self.call_if_it_matters(None, name, SQL_JSON);
                }
            }
            "JsonTable" => self.call_if_it_matters(None, "json_table", SQL_JSON),
            "MergeSupportFunc" => self.call_if_it_matters(None, "merge_action", SQL_JSON),
            "SQLValueFunction" | "AConst" | "String" | "ParamRef" => return,
            // A column of a domain with a default takes it: ADD COLUMN
            // fills every existing row with it, and each later INSERT
            // that leaves the column out runs it.
            "ColumnDef" => self.domain_default(n),
            "Constraint"
                if n["contype"].as_i64()
                    == Some(i64::from(
                        pg_query::protobuf::ConstrType::ConstrForeign as i32,
                    )) =>
            {
                self.foreign_key_added(n)
            }
            _ => {}
        }
        self.walk(n, access, plan_only);
    }

    fn select(&mut self, map: &Map, plan_only: bool) {
        let listed = |key: &str| {
            map.get(key)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        };
        let set_op = map
            .get("op")
            .and_then(Value::as_i64)
            .is_some_and(|op| op > 1);
        if listed("group_clause") || listed("distinct_clause") || set_op {
            self.compares = true;
        }
        if plan_only {
            return;
        }
        if map.get("into_clause").is_some_and(|v| !v.is_null()) {
            self.st
                .reason(Class::Ddl, "SELECT ... INTO creates a table");
        }
        if map
            .get("locking_clause")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            self.st
                .reason(Class::Lock, "SELECT ... FOR UPDATE/SHARE locks rows");
        }
    }

    fn relation(&mut self, rv: &Value, access: Class) {
        let schema = Some(str_field(rv, "schemaname"))
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let name = str_field(rv, "relname").to_owned();
        if schema.is_none() && self.ctes.contains(&name) {
            // A WITH query of this statement: what it reads was walked.
            return;
        }
        self.relation_named(schema, name, access);
    }

    fn relation_named(&mut self, schema: Option<String>, name: String, access: Class) {
        let builtin_scope = schema.as_deref().is_none_or(|s| s == "pg_catalog");
        if let Some(why) = builtins::hidden_read(&name, builtin_scope) {
            self.hidden_read(format!("{name} {why}"));
        }
        if schema.as_deref() == Some("pg_toast") {
            self.hidden_read(format!(
                "pg_toast.{name} holds the out-of-line values of another table's columns"
            ));
        }
        if matches!(access, Class::Write | Class::CopyIn)
            && self.is_system_relation(schema.as_deref(), &name)
        {
            let d = builtins::dangerous_command("catalog_write");
            self.st.dangerous(d);
            self.st
                .reason(d.class, format!("a write to {name} {}", d.why));
        }
        if builtin_scope {
            // pg_dump's set_config idiom returns set_config's result, not
            // the settings.
            if name == "pg_settings" && !matches!(self.idiom, Some(DumpIdiom::SetConfig(_))) {
                self.server_secrets(format!("the view {name}"));
            }
            let counted = name == "pg_subscription"
                && matches!(self.idiom, Some(DumpIdiom::CountSubscriptions));
            if let Some(d) = builtins::dangerous_catalog(&name).filter(|_| !counted) {
                self.st.dangerous(d);
                self.st.reason(d.class, format!("{name} {}", d.why));
            }
            if let Some((_, func)) = builtins::DANGEROUS_RELATIONS
                .iter()
                .find(|(view, _)| *view == name)
            {
                if let Some(d) = builtins::dangerous_function(func) {
                    self.st.dangerous(d);
                    self.st
                        .reason(d.class, format!("the view {name} {}", d.why));
                }
            }
        }
        if matches!(access, Class::Read | Class::CopyOut) {
            if let Some(program) = self.cat.file_table(schema.as_deref(), &name) {
                let d: &'static Dangerous = if program {
                    &builtins::FILE_FDW_PROGRAM
                } else {
                    &builtins::FILE_FDW_FILE
                };
                self.st.dangerous(d);
                self.st.reason(d.class, format!("{name}: {}", d.why));
            }
        }
        // Writes run more than the write: triggers, defaults, checks,
        // index expressions, rules, foreign key actions (see `written`).
        if matches!(access, Class::Write | Class::CopyIn) {
            let events = match self.events {
                0 => events::ANY,
                e => e,
            };
            self.written(schema.as_deref(), &name, events);
            self.written_through_view(schema.as_deref(), &name, events);
        } else if self.events == events::MAINTAIN {
            self.written(schema.as_deref(), &name, events::MAINTAIN);
        }
        // Views run their definition, and tables their row security
        // policies: judge the functions they call.
        if !self.too_deep() {
            if let Some(refs) = self.cat.view_functions(schema.as_deref(), &name) {
                let via = if self.cat.is_view(schema.as_deref(), &name) {
                    format!("view {name}")
                } else {
                    format!("{POLICY_OF}{name}")
                };
                self.calls_below(refs, &via);
            }
        } else {
            self.st
                .reason(Class::Unknown, "views nested too deeply to inspect");
        }
        let r = RelationUse {
            schema,
            name,
            access,
        };
        if !self.st.relations.contains(&r) {
            self.st.relations.push(r);
        }
    }

    /// What a write of the kinds `events` to a table runs besides the
    /// write, for the table and the partitions and children below it, all
    /// judged as part of the statement: its user triggers (in the writing
    /// statement's transaction, with its privileges unless SECURITY
    /// DEFINER); on INSERT and UPDATE (and a rewrite) the expressions of
    /// its defaults, generated columns, CHECK constraints, column types
    /// and indexes, and its indexes' operator classes; its rules (their
    /// actions run with the table owner's rights); and the foreign keys
    /// whose ON DELETE / ON UPDATE actions, or TRUNCATE ... CASCADE,
    /// write other tables (as their owner): those tables count as written
    /// by the statement, with all they run in turn.
    fn written(&mut self, schema: Option<&str>, name: &str, ev: u8) {
        let effects = self.cat.write_effects(schema, name);
        if effects.is_empty() {
            return;
        }
        if self.too_deep() {
            return self.st.reason(
                Class::Unknown,
                "triggers, rules or foreign key actions nested too deeply to inspect",
            );
        }
        for (table, e) in effects {
            if self
                .written
                .iter()
                .any(|(t, done)| *t == table && done & ev == ev)
            {
                continue;
            }
            self.written.push((table.clone(), ev));
            if ev != events::MAINTAIN && !e.triggers.is_empty() {
                let refs = e.triggers.iter().map(|(s, f)| (Some(s.clone()), f.clone()));
                self.calls_below(refs, &format!("a trigger on {table}"));
            }
            if ev & (events::INSERT | events::UPDATE | events::MAINTAIN) != 0 {
                if let Some(sql) = &e.expressions {
                    let label = format!("the defaults, constraints and indexes of {table}");
                    self.run_sql(None, &label, sql, true);
                }
                if !e.functions.is_empty() {
                    let refs = e
                        .functions
                        .iter()
                        .map(|(s, f)| (Some(s.clone()), f.clone()));
                    self.calls_below(
                        refs,
                        &format!("an index or exclusion constraint of {table}"),
                    );
                }
            }
            let keys: Vec<(Option<String>, String)> = e
                .key_functions
                .iter()
                .filter(|(on, _)| on & ev != 0)
                .map(|(_, (s, f))| (Some(s.clone()), f.clone()))
                .collect();
            if !keys.is_empty() {
                self.calls_below(keys, &format!("a foreign key check of {table}"));
            }
            if ev & events::NO_RULES == 0 {
                for rule in e.rules.iter().filter(|r| r.events & ev != 0) {
                    let id = format!("{table}.{}", rule.name);
                    if self.rules.contains(&id) {
                        continue;
                    }
                    self.rules.push(id);
                    let label = format!("the rule {} on {table}", rule.name);
                    if let Some(sql) = &rule.condition {
                        self.run_sql(None, &label, sql, true);
                    }
                    for sql in &rule.actions {
                        self.run_sql(None, &label, sql, false);
                    }
                    self.rules.pop();
                }
            }
            for fk in &e.referenced_by {
                let acts = |action: u8| match action {
                    b'c' => 1,
                    b'n' | b'd' => 2,
                    _ => 0,
                };
                let mut child = 0;
                if ev & events::DELETE != 0 {
                    child |= match acts(fk.on_delete) {
                        1 => events::DELETE,
                        2 => events::UPDATE,
                        _ => 0,
                    };
                }
                if ev & events::UPDATE != 0 && acts(fk.on_update) != 0 {
                    child |= events::UPDATE;
                }
                if ev & events::TRUNCATE != 0 && self.truncate_cascade {
                    child |= events::TRUNCATE;
                }
                if child == 0 {
                    continue;
                }
                let target = format!("{}.{}", fk.schema, fk.table);
                self.st.reason(
                    Class::Write,
                    format!("a foreign key of {target} referencing {table} writes {target} (as its owner)"),
                );
                let saved = std::mem::replace(&mut self.events, child);
                self.depth += 1;
                self.relation_named(Some(fk.schema.clone()), fk.table.clone(), Class::Write);
                self.depth -= 1;
                self.events = saved;
            }
        }
    }

    /// A write to an updatable view writes its base table (as the view's
    /// owner), which runs what writing that table runs. The view is the
    /// relation the statement writes (as GRANT sees it); what its base
    /// table runs is judged with it.
    fn written_through_view(&mut self, schema: Option<&str>, name: &str, ev: u8) {
        let bases = self.cat.view_relations(schema, name);
        if bases.is_empty() {
            return;
        }
        if self.too_deep() {
            return self
                .st
                .reason(Class::Unknown, "views nested too deeply to inspect");
        }
        self.depth += 1;
        for (s, n) in bases {
            self.written(s.as_deref(), &n, ev);
            self.written_through_view(s.as_deref(), &n, ev);
        }
        self.depth -= 1;
    }

    /// DDL fires the enabled event triggers, whose functions run
    /// arbitrary code: judged as calls of the statement, whatever tags
    /// they filter on. So do the statements of other classes that
    /// PostgreSQL runs through the same path (`ProcessUtilitySlow`):
    /// GRANT, default privileges, policies, user mappings, `ALTER ...
    /// OWNER TO`, `DROP OWNED`, publications, subscriptions, REFRESH
    /// MATERIALIZED VIEW. Roles, databases, tablespaces and event
    /// triggers themselves fire none.
    fn event_triggers(&mut self, kind: &str) {
        let funcs = self.cat.event_trigger_functions();
        if funcs.is_empty() {
            return;
        }
        let fires = self.st.classes().contains(Class::Ddl)
            || matches!(
                kind,
                "GrantStmt"
                    | "AlterDefaultPrivilegesStmt"
                    | "RefreshMatViewStmt"
                    | "CreatePolicyStmt"
                    | "AlterPolicyStmt"
                    | "CreateUserMappingStmt"
                    | "AlterUserMappingStmt"
                    | "DropUserMappingStmt"
                    | "AlterOwnerStmt"
                    | "DropOwnedStmt"
                    | "DropStmt"
                    | "CreatePublicationStmt"
                    | "AlterPublicationStmt"
                    | "CreateSubscriptionStmt"
                    | "AlterSubscriptionStmt"
                    | "DropSubscriptionStmt"
                    | "SecLabelStmt"
                    | "CommentStmt"
            );
        if fires {
            let refs = funcs.iter().map(|(s, f)| (Some(s.clone()), f.clone()));
            self.calls_below(refs.collect::<Vec<_>>(), "an event trigger");
        }
    }

    /// Whether a relation is one of the system's: in pg_catalog,
    /// information_schema or pg_toast, or unqualified with a pg_catalog
    /// relation of that name (which it is, unless a role allowed to put a
    /// schema ahead of pg_catalog has one of that name there: counted as
    /// the system's all the same).
    fn is_system_relation(&self, schema: Option<&str>, name: &str) -> bool {
        match schema {
            Some(s) => matches!(s, "pg_catalog" | "information_schema" | "pg_toast"),
            None => self
                .cat
                .relation_schemas(name)
                .is_some_and(|places| places.contains(&"pg_catalog")),
        }
    }

    /// Whether the walk is as deep as pgward follows (fail closed: the
    /// caller says what it did not judge). Counted, so that what was
    /// judged here is not reused where the walk is shallower.
    fn too_deep(&self) -> bool {
        if self.depth < MAX_DEPTH {
            return false;
        }
        self.judging.cutoffs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Judges the calls a relation makes when it is used (its view
    /// definition, row security policies, triggers), one level deeper.
    fn calls_below(&mut self, refs: impl IntoIterator<Item = FuncName>, via: &str) {
        self.depth += 1;
        for (fs, fname) in refs {
            self.function(fs.as_deref(), &fname, &[], via);
        }
        self.depth -= 1;
    }

    /// A read of server settings that may hold credentials.
    fn server_secrets(&mut self, what: String) {
        let d = builtins::dangerous_command("server_secrets");
        self.st.dangerous(d);
        self.st.reason(d.class, format!("{what} {}", d.why));
    }

    /// `current_setting(name)` of a secret setting, or of a name known
    /// only at run time; `pg_show_all_settings()`, behind pg_settings.
    fn reads_settings(&mut self, name: &str, args: &[Option<String>], via: &str) {
        match name {
            "current_setting" => {
                // The verdict depends on the literal: never share it by shape.
                self.st.literal_sensitive = true;
                match args.first() {
                    Some(Some(setting)) if !builtins::is_secret_setting(setting) => {}
                    Some(Some(setting)) => {
                        self.server_secrets(format!("current_setting('{setting}'){via}"))
                    }
                    _ => self.server_secrets(format!(
                        "current_setting(){via} of a setting named at run time"
                    )),
                }
            }
            "pg_show_all_settings" => self.server_secrets(format!("{name}(){via}")),
            _ => {}
        }
    }

    fn hidden_read(&mut self, why: String) {
        if !self.st.hidden_reads.contains(&why) {
            self.st.hidden_reads.push(why);
        }
    }

    /// The table-to-XML built-ins read the rows of the tables they are
    /// given by name: a constant table name is a read of that table; any
    /// other argument, a schema or the database is a read pgward cannot
    /// name.
    fn reads_by_name(&mut self, name: &str, args: &[Option<String>]) {
        if let Some(family) = name.strip_suffix("_to_xml").or_else(|| {
            name.strip_suffix("_to_xmlschema")
                .or_else(|| name.strip_suffix("_to_xml_and_xmlschema"))
        }) {
            // The verdict depends on the literal: never share it by shape.
            self.st.literal_sensitive = true;
            match (family, args.first()) {
                ("table", Some(Some(table))) => match regclass_name(table) {
                    Some((schema, table)) => self.relation_named(schema, table, Class::Read),
                    None => self.hidden_read(format!(
                        "{name}() reads the table {table:?}, an OID or a name pgward cannot resolve"
                    )),
                },
                ("table", _) => self.hidden_read(format!(
                    "{name}() reads a table given by an expression, not a plain string"
                )),
                ("schema", Some(Some(schema))) => {
                    self.hidden_read(format!("{name}() reads every table of schema {schema}"))
                }
                ("schema", _) => self.hidden_read(format!(
                    "{name}() reads every table of a schema named at run time"
                )),
                ("database", _) => {
                    self.hidden_read(format!("{name}() reads every table of the database"))
                }
                _ => {}
            }
        }
    }

    /// A function given a table or an index by name (`relation_arg`):
    /// a read or a write of the table, or of the index's table, for
    /// table rules. A name pgward cannot resolve (an OID, an expression,
    /// a relation the catalog does not hold) is `unknown`.
    fn relation_arg(
        &mut self,
        shown: &str,
        via: &str,
        uses: builtins::RelationArg,
        arg: Option<String>,
    ) {
        // The verdict depends on the literal: never share it by shape.
        self.st.literal_sensitive = true;
        let named = arg.as_deref().and_then(regclass_name);
        let Some((schema, name)) = named else {
            let given = match &arg {
                Some(text) => format!("{text:?}, an OID or a name pgward cannot resolve"),
                None => "a relation given by an expression, not a plain string".to_owned(),
            };
            return self.unresolved_relation(shown, format!("{shown}(){via} uses {given}"));
        };
        // The tables of indexes of that name, and a table of that name
        // itself (pgstattuple and the like take either).
        let mut tables: Vec<(Option<String>, String)> = Vec::new();
        if let Some(found) = self.cat.index_tables(schema.as_deref(), &name) {
            tables.extend(
                found
                    .into_iter()
                    .map(|(s, t)| (Some(s.to_owned()), t.to_owned())),
            );
        }
        if self.cat.holds_relation(schema.as_deref(), &name) {
            tables.push((schema.clone(), name.clone()));
        }
        if tables.is_empty() {
            // Not in the catalog (created since it was loaded, or none):
            // an unplaced name, so pgward looks again.
            self.relation_named(schema, name.clone(), Class::Read);
            return self.unresolved_relation(
                shown,
                format!(
                    "{shown}(){via} uses {name:?}, which is neither an index nor a table pgward's catalog holds"
                ),
            );
        }
        let saved = self.events;
        for (schema, table) in tables {
            if uses.reads {
                self.events = 0;
                self.relation_named(schema.clone(), table.clone(), Class::Read);
            }
            if uses.writes {
                // Rows or index entries change as in maintenance: the
                // index's expressions and operator classes run, no trigger.
                self.events = events::MAINTAIN;
                self.relation_named(schema, table, Class::Write);
            }
        }
        self.events = saved;
    }

    fn unresolved_relation(&mut self, shown: &str, why: String) {
        self.hidden_read(why.clone());
        self.st.reason_of(Class::Unknown, why, shown);
    }

    /// A foreign key a CREATE TABLE or ALTER TABLE adds: the existing
    /// rows are checked against the referenced table at once, with the
    /// equality operator of its unique index's operator family, through
    /// a join or a lookup there (`WriteEffects::lookup_functions`). User
    /// casts the key's types need are implicit ones, judged with every
    /// statement (`implicit_casts`).
    /// A new table has no rows to check, nor has a key added NOT VALID.
    fn foreign_key_added(&mut self, n: &Value) {
        if self.st.kind != "AlterTableStmt" || n["skip_validation"].as_bool() == Some(true) {
            return;
        }
        let pk = &n["pktable"];
        let name = str_field(pk, "relname");
        if name.is_empty() {
            return;
        }
        let schema = Some(str_field(pk, "schemaname")).filter(|s| !s.is_empty());
        for (table, e) in self.cat.write_effects(schema, name) {
            if e.lookup_functions.is_empty() {
                continue;
            }
            let refs = e
                .lookup_functions
                .iter()
                .map(|(s, f)| (Some(s.clone()), f.clone()))
                .collect::<Vec<_>>();
            self.calls_below(
                refs,
                &format!("the check of existing rows against {table} for a new foreign key"),
            );
        }
    }

    /// DDL that evaluates expressions over a table's existing rows (a
    /// validated CHECK, ALTER COLUMN TYPE ... USING, an index's or an
    /// exclusion constraint's expressions and predicate, extended
    /// statistics on expressions, which ANALYZE computes) hands each row's
    /// values to the functions it calls. When one is a user function,
    /// which may copy them anywhere, the statement reads the table, for
    /// `tables.read` rules.
    fn row_ddl(&mut self, kind: &str, n: &Value) {
        let table = match kind {
            "AlterTableStmt"
                if n["objtype"].as_i64()
                    != Some(i64::from(pg_query::protobuf::ObjectType::ObjectType as i32)) =>
            {
                &n["relation"]
            }
            "IndexStmt" => &n["relation"],
            // Extended statistics on expressions: ANALYZE computes them
            // over the table's sampled rows.
            "CreateStatsStmt" => match n["relations"].as_array().map(Vec::as_slice) {
                Some([one]) => &one["node"]["RangeVar"],
                _ => return,
            },
            _ => return,
        };
        let cat = self.cat;
        let user = self.st.functions.iter().any(|f| {
            let (schema, name) = match f.rsplit_once('.') {
                Some((s, n)) => (Some(s), n),
                None => (None, f.as_str()),
            };
            cat.functions(schema, name)
                .iter()
                .any(|fi| fi.oid >= crate::policy::catalog::FIRST_USER_OID)
        });
        let name = str_field(table, "relname");
        if !user || name.is_empty() {
            return;
        }
        let schema = Some(str_field(table, "schemaname"))
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let saved = self.events;
        self.events = 0;
        self.relation_named(schema, name.to_owned(), Class::Read);
        self.events = saved;
    }

    /// DDL on a type that goes through the rows of tables it does not
    /// name: ALTER DOMAIN ... ADD CONSTRAINT (unless NOT VALID), VALIDATE
    /// CONSTRAINT and SET NOT NULL check every row of the tables with a
    /// column of the domain (a read of them, whose values its CHECK
    /// expression sees); ALTER TYPE ... CASCADE changes the typed tables
    /// of a composite type (rewriting their rows, as ALTER TABLE does).
    fn type_ddl(&mut self, kind: &str, n: &Value) {
        let (names_of, access) = match kind {
            "AlterDomainStmt" => {
                let checks = match str_field(n, "subtype") {
                    "C" => {
                        n["def"]["node"]["Constraint"]["skip_validation"].as_bool() != Some(true)
                    }
                    "V" | "O" => true,
                    _ => false,
                };
                if !checks {
                    return;
                }
                (names(&n["type_name"]), Class::Read)
            }
            "AlterTableStmt"
                if n["objtype"].as_i64()
                    == Some(i64::from(pg_query::protobuf::ObjectType::ObjectType as i32)) =>
            {
                // DropBehavior: DROP_CASCADE is 2.
                let cascade = n["cmds"].as_array().is_some_and(|cmds| {
                    cmds.iter()
                        .any(|c| c["node"]["AlterTableCmd"]["behavior"].as_i64() == Some(2))
                });
                if !cascade {
                    return;
                }
                let r = &n["relation"];
                let mut parts = Vec::new();
                if !str_field(r, "schemaname").is_empty() {
                    parts.push(str_field(r, "schemaname").to_owned());
                }
                parts.push(str_field(r, "relname").to_owned());
                (parts, Class::Ddl)
            }
            _ => return,
        };
        let Some((schema, name)) = qualified(&names_of) else {
            return;
        };
        let tables: Vec<(String, String)> = self
            .cat
            .type_tables(schema, name)
            .into_iter()
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
            .collect();
        let saved = self.events;
        self.events = if access == Class::Ddl {
            events::MAINTAIN
        } else {
            0
        };
        for (s, t) in tables {
            self.relation_named(Some(s), t, access);
        }
        self.events = saved;
    }

    fn func_call(&mut self, map: &Map) {
        let parts = names(map.get("funcname").unwrap_or(&Value::Null));
        let Some((schema, name)) = qualified(&parts) else {
            return;
        };
        if map.get("agg_distinct").and_then(Value::as_bool) == Some(true)
            || matches!(name, "min" | "max")
        {
            self.compares = true;
        }
        let mut args: Vec<Option<String>> = map
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(text_arg).collect())
            .unwrap_or_default();
        // `set_config(name, ...) FROM pg_settings WHERE name = 'x'` sets x.
        if let (Some(DumpIdiom::SetConfig(setting)), "set_config") = (&self.idiom, name) {
            if let Some(first) = args.first_mut() {
                *first = Some(setting.clone());
            }
        }
        self.function(schema, name, &args, "");
    }

    /// `x.name` and `(expr).name` call `name(x)` when no column of that
    /// name exists: any function taking one argument, or more with
    /// defaults or VARIADIC. pgward does not know the columns, so such a
    /// name is judged as the plain call with an argument it cannot see;
    /// it is kept on record only when that call does something a column
    /// read does not.
    fn attribute_call(&mut self, name: &str) {
        let candidates = self.cat.functions(None, name);
        let named = builtins::dangerous_function(name).is_some()
            || builtins::builtin_effect(name).is_some()
            || builtins::sql_text_args(name, true, 1).is_some()
            || builtins::hidden_read(name, true).is_some();
        if !named && candidates.iter().all(|f| f.nargs == 0) {
            return;
        }
        // A harmless function, or just a column of that name, leaves no
        // record.
        self.call_if_it_matters(None, name, "attribute notation");
    }

    /// Judges the default of a column definition's domain (when it calls a
    /// function) as evaluated by the statement.
    fn domain_default(&mut self, column: &Value) {
        let Some(Value::Object(ty)) = column.get("type_name") else {
            return;
        };
        let parts = names(ty.get("names").unwrap_or(&Value::Null));
        let Some((schema, name)) = qualified(&parts) else {
            return;
        };
        let defaults: Vec<String> = self
            .cat
            .domain_defaults(schema, name)
            .into_iter()
            .map(str::to_owned)
            .collect();
        for sql in defaults {
            self.run_sql(None, &format!("the default of domain {name}"), &sql, true);
        }
    }

    fn type_name(&mut self, map: &Map) {
        let parts = names(map.get("names").unwrap_or(&Value::Null));
        let Some((schema, name)) = qualified(&parts) else {
            return;
        };
        // Built-in type names too: a user cast into int4 runs on `::int`.
        for (fs, fname) in self.cat.type_functions(schema, name).to_vec() {
            self.function(Some(&fs), &fname, &[], &format!("type {name}"));
        }
    }

    /// Judges SQL text that `func` runs (query_to_xml, ts_stat, crosstab,
    /// ...) as the statements it is, and takes their classes, tables,
    /// functions, settings and dangers as this statement's own.
    fn sql_text(&mut self, func: &str, via: &str, sql: &str) {
        self.run_sql(Some(func), &format!("{func}(){via}"), sql, false);
    }

    /// Judges SQL that runs as part of this statement: run by the function
    /// `func`, or by the server (`func` None: a rule's actions, a table's
    /// defaults and constraints). `label` says what runs it. `values`:
    /// the SQL is a `SELECT` of expressions the server evaluates, which
    /// returns nothing to the client (its own `SELECT` is no read).
    fn run_sql(&mut self, func: Option<&str>, label: &str, sql: &str, values: bool) {
        if self.too_deep() {
            return self.unseen(
                func,
                label,
                format!("{label} runs SQL text nested too deeply to inspect"),
            );
        }
        let lexer = current_lexer();
        let key = (lexer, Box::<str>::from(sql));
        let before = self.judging.judged_before(&key, self.depth);
        // Over the statement's limits: nothing more is judged, and the
        // statement is unknown (`classify_pieces`).
        if !self.judging.spend(before.is_none()) {
            return;
        }
        let judged = match before {
            Some(judged) => judged,
            None => {
                let cutoffs = self.judging.cutoffs.load(Ordering::Relaxed);
                let nested = self.judge_sql(sql, lexer);
                let judged = Arc::new(Judged {
                    nested,
                    depth: self.depth,
                    cut: self.judging.cutoffs.load(Ordering::Relaxed) != cutoffs,
                });
                self.judging.remember(key, judged.clone());
                judged
            }
        };
        let (statements, failed) = match &judged.nested {
            Ok((statements, failed)) => (statements.clone(), failed.clone()),
            Err(e) => {
                return self.unseen(
                    func,
                    label,
                    format!("{label} runs SQL text that does not parse: {e}"),
                )
            }
        };
        for mut inner in statements {
            if values {
                inner
                    .reasons
                    .retain(|r| !(r.class == Class::Read && r.why == "SELECT"));
            }
            self.take_nested(func, label, inner);
        }
        if let Some(e) = failed {
            self.unseen(func, label, format!("{label} runs SQL text: {e}"));
        }
    }

    /// Parses and classifies SQL this statement runs, on a stack large
    /// enough for the text (it may nest deeper than what called it).
    fn judge_sql(&self, sql: &str, lexer: Lexer) -> Nested {
        let (cat, depth, calling, rules) = (self.cat, self.depth + 1, &self.calling, &self.rules);
        let judging = self.judging;
        let nested = stack::on(stack::for_sql(sql.len()), || -> Nested {
            with_lexer(lexer, || {
                let parsed = parse(sql).map_err(parser_message)?;
                let mut statements = Vec::new();
                for raw in &parsed.protobuf.stmts {
                    match classify_statement(sql, raw, cat, depth, calling, rules, judging) {
                        Ok(st) => statements.push(st),
                        Err(e) => return Ok((statements, Some(e))),
                    }
                }
                Ok((statements, None))
            })
        });
        match nested {
            Ok(done) => done,
            Err(e) => Ok((Vec::new(), Some(e))),
        }
    }

    /// SQL that `func` runs and pgward cannot judge: unknown, and a read
    /// of tables pgward cannot name.
    fn unseen_sql(&mut self, func: &str, why: String) {
        self.unseen(Some(func), &format!("{func}()"), why);
    }

    fn unseen(&mut self, func: Option<&str>, label: &str, why: String) {
        match func {
            Some(f) => self.st.reason_of(Class::Unknown, why, f),
            None => self.st.reason(Class::Unknown, why),
        }
        self.hidden_read(format!("{label} runs SQL pgward cannot see"));
    }

    /// Makes what a statement run by `func` (or by the server, for a rule
    /// or a table's expressions) does part of this statement.
    fn take_nested(&mut self, func: Option<&str>, label: &str, mut inner: Statement) {
        if inner.executes.is_some() || inner.prepares.is_some() || inner.deallocates.is_some() {
            let why = format!("{label} runs a prepared-statement command");
            match func {
                Some(f) => self.st.reason_of(Class::Unknown, why, f),
                None => self.st.reason(Class::Unknown, why),
            }
        }
        if func.is_none() {
            // A rule's NEW and OLD are the rows of the statement that
            // fired it, not tables.
            inner
                .relations
                .retain(|r| r.schema.is_some() || !matches!(r.name.as_str(), "new" | "old"));
        }
        for r in inner.reasons {
            let function = r.function.or_else(|| func.map(str::to_owned));
            // The verdict rests on a reason's class and function, and a
            // web of functions brings one reason on each of its paths,
            // exponentially many: a few of each are kept.
            let same = self
                .st
                .reasons
                .iter()
                .filter(|o| o.class == r.class && o.function == function)
                .count();
            if same >= NESTED_REASONS_KEPT {
                continue;
            }
            let r = Reason {
                class: r.class,
                why: format!("{label} runs: {}", r.why),
                function,
            };
            if !self.st.reasons.contains(&r) {
                self.st.reasons.push(r);
            }
        }
        for rel in inner.relations {
            if !self.st.relations.contains(&rel) {
                self.st.relations.push(rel);
            }
        }
        for f in inner.functions {
            if !self.st.functions.contains(&f) {
                self.st.functions.push(f);
            }
        }
        for change in inner.settings {
            if !self.st.settings.contains(&change) {
                self.st.settings.push(change);
            }
        }
        for d in inner.dangerous {
            self.st.dangerous(d);
        }
        // The first is what a refusal names; the rest are kept for
        // `pgward explain`, up to a bound (one per path of a web).
        for h in inner.hidden_reads {
            if self.st.hidden_reads.len() >= NESTED_HIDDEN_READS_KEPT {
                break;
            }
            self.hidden_read(h);
        }
        self.st.unknown_function |= inner.unknown_function;
        // SQL text a function is given may be a literal of this statement;
        // a rule's or a table's comes from the catalog.
        if func.is_some() {
            self.st.literal_sensitive = true;
        }
    }

    /// User-defined comparison operators run where no operator is written:
    /// ORDER BY, GROUP BY, DISTINCT, JOIN USING, UNION, CASE x WHEN,
    /// BETWEEN, GREATEST, min()/max(), window PARTITION BY. Which ones run
    /// depends on column types pgward does not track, so a statement that
    /// compares values that way is judged to call every user operator of
    /// those names.
    fn implicit_operators(&mut self) {
        for op in ["=", "<>", "<", ">", "<=", ">="] {
            // The statement may not compare values of the operator's
            // types at all: harmless operators (an extension's) leave no
            // trace on the statement's record.
            for (schema, func) in self.cat.operator_functions(op).to_vec() {
                self.call_if_it_matters(
                    Some(&schema),
                    &func,
                    &format!(
                        "the comparison operator {op}, which sorting, grouping and matching use"
                    ),
                );
            }
        }
    }

    /// User casts PostgreSQL applies without one written (IMPLICIT or AS
    /// ASSIGNMENT): judged for every statement, on record only where the
    /// call does something.
    fn implicit_casts(&mut self) {
        for (schema, func) in self.cat.implicit_casts().to_vec() {
            self.call_if_it_matters(Some(&schema), &func, "an implicit cast");
        }
    }

    /// Judges a call that may not happen (attribute notation that may be a
    /// column, a cast that may not apply): kept on record only when it
    /// adds something to the statement.
    fn call_if_it_matters(&mut self, schema: Option<&str>, name: &str, via: &str) {
        let before = (
            self.st.reasons.len(),
            self.st.dangerous.len(),
            self.st.hidden_reads.len(),
            self.st.settings.len(),
            self.st.relations.len(),
            self.st.functions.len(),
        );
        self.function(schema, name, &[None], via);
        let after = (
            self.st.reasons.len(),
            self.st.dangerous.len(),
            self.st.hidden_reads.len(),
            self.st.settings.len(),
            self.st.relations.len(),
        );
        if after == (before.0, before.1, before.2, before.3, before.4) {
            self.st.functions.truncate(before.5);
        }
    }

    /// A call of the functions behind an operator written by name.
    fn operator(&mut self, names: &[String]) {
        if let Some(op) = names.last() {
            for (schema, func) in self.cat.operator_functions(op).to_vec() {
                self.function(Some(&schema), &func, &[], &format!("operator {op}"));
            }
        }
    }

    /// Judges one function call. `via` says how it was reached when not by
    /// a plain call (a view, a cast, an operator).
    fn function(&mut self, schema: Option<&str>, name: &str, args: &[Option<String>], via: &str) {
        let shown = match schema {
            Some(s) => format!("{s}.{name}"),
            None => name.to_owned(),
        };
        let in_view = via.starts_with("view ") || via.starts_with(POLICY_OF);
        let via = if via.is_empty() {
            String::new()
        } else {
            format!(" (through {via})")
        };
        if !self.st.functions.contains(&shown) {
            self.st.functions.push(shown.clone());
        }
        let push = |st: &mut Statement, class: Class, why: String| st.reason_of(class, why, &shown);
        let builtin_scope = schema.is_none_or(|s| s == "pg_catalog");
        let mut known = false;
        // In any schema: extensions such as dblink install where they are
        // told, so `public.dblink_exec` is the same danger.
        if let Some(d) = builtins::dangerous_function(name) {
            self.st.dangerous(d);
            push(self.st, d.class, format!("{shown}(){via} {}", d.why));
            known = true;
        }
        if let Some(why) = builtins::hidden_read(name, builtin_scope) {
            self.hidden_read(format!("{shown}(){via} {why}"));
        }
        if let Some(text_args) = builtins::sql_text_args(name, builtin_scope, args.len()) {
            known = true;
            self.st.literal_sensitive = true;
            if text_args.is_empty() {
                self.unseen_sql(
                    &shown,
                    format!(
                        "{shown}(){via} builds SQL from its arguments, which pgward cannot judge"
                    ),
                );
            }
            for i in text_args {
                match args.get(i) {
                    // crosstab(text, integer): the second is a column count.
                    Some(Some(n)) if i > 0 && n.bytes().all(|b| b.is_ascii_digit()) => {}
                    Some(Some(sql)) => self.sql_text(&shown, &via, sql),
                    _ => self.unseen_sql(
                        &shown,
                        format!(
                            "{shown}(){via} runs SQL text that is not a constant, which pgward cannot see"
                        ),
                    ),
                }
            }
        }
        if let Some(uses) = builtins::relation_arg(name, builtin_scope) {
            self.relation_arg(&shown, &via, uses, args.first().cloned().flatten());
        }
        // ts_rewrite(query, target, substitute) only rewrites a tsquery;
        // the catalog's VOLATILE is its other form's, which runs SQL.
        if builtin_scope && name == "ts_rewrite" && args.len() == 3 {
            known = true;
        }
        if builtin_scope && matches!(name, "cursor_to_xml" | "cursor_to_xmlschema") {
            known = true;
            push(
                self.st,
                Class::Read,
                format!("{shown}(){via} reads an open cursor by name"),
            );
            self.hidden_read(format!(
                "{shown}() reads a cursor named at run time, whose query pgward does not pair with it"
            ));
        }
        if builtin_scope {
            if let Some((class, why)) = builtins::builtin_effect(name) {
                push(self.st, class, format!("{name}(){via} {why}"));
                known = true;
                if name == "set_config" {
                    self.st.literal_sensitive = true;
                    // A name or value that is not a constant cannot be
                    // judged: set_config(x, current_setting(..), ..).
                    let change = match args {
                        [Some(setting), Some(value), local] => SettingChange::set(
                            setting.to_ascii_lowercase(),
                            Some(value.clone()),
                            local.as_deref().and_then(parse_pg_bool).unwrap_or(false),
                        ),
                        _ => SettingChange::computed(),
                    };
                    self.st.settings.push(change);
                }
            }
            self.reads_by_name(name, args);
            // A view's own calls are its owner's, as are the tables it
            // reads: views commonly read current_setting('app.tenant').
            if !in_view {
                self.reads_settings(name, args, &via);
            }
            if name == "lo_open" {
                self.st.literal_sensitive = true;
                // INV_WRITE is 0x20000; a mode pgward cannot read is a write.
                let writes = match args.get(1) {
                    Some(Some(mode)) => mode.parse::<i64>().map_or(true, |m| m & 0x20000 != 0),
                    _ => true,
                };
                if writes {
                    push(
                        self.st,
                        Class::Write,
                        format!("lo_open(){via} opens a large object for writing"),
                    );
                }
            }
        }
        let candidates = self.cat.functions(schema, name);
        if candidates.is_empty() {
            if !known {
                self.st.unknown_function = true;
                push(
                    self.st,
                    Class::Unknown,
                    format!("{shown}(){via} is not in pgward's catalog"),
                );
            }
            return;
        }
        for f in candidates {
            let builtin = matches!(&*f.schema, "pg_catalog" | "information_schema");
            // A user function's body and what it implies are followed:
            // a step of the statement's budget (see `Judging`).
            if !builtin && !self.judging.spend(false) {
                return;
            }
            if builtin {
                if f.volatility == b'v' && !known && !builtins::harmless_volatile(name) {
                    push(
                        self.st,
                        Class::Write,
                        format!("{shown}(){via} is a VOLATILE built-in that may change state"),
                    );
                }
                continue;
            }
            // An aggregate's entry for a support function speaks of that.
            let what = match &f.support {
                Some(support) => format!("{}.{}(){via} runs {support}(), which", f.schema, f.name),
                None => format!("{}.{}(){via}", f.schema, f.name),
            };
            if matches!(
                &*f.language,
                "plperlu" | "plpython3u" | "plpythonu" | "plpython2u" | "pltclu"
            ) {
                push(
                    self.st,
                    Class::Unknown,
                    format!("{what} is written in the untrusted language {}", f.language),
                );
            } else if f.volatility == b'v' {
                push(
                    self.st,
                    Class::Write,
                    format!("{what} is VOLATILE, so it may write"),
                );
            }
            if let Some(body) = f.body.clone() {
                let (oid, language) = (f.oid, f.language.to_string());
                self.function_body(
                    &format!("{}.{}", f.schema, f.name),
                    oid,
                    &language,
                    &body,
                    &via,
                );
            }
            if !f.implied.is_empty() && !self.calling.contains(&f.oid) {
                let (oid, implied) = (f.oid, f.implied.clone());
                let via = format!(
                    "the arguments, result or defaults of {}.{}",
                    f.schema, f.name
                );
                self.calling.push(oid);
                for (schema, name) in implied {
                    self.function(Some(&schema), &name, &[], &via);
                }
                self.calling.pop();
            }
        }
    }

    /// Judges what a user function's body runs as part of the statement
    /// that calls it: STABLE and IMMUTABLE are promises, not enforcement.
    fn function_body(&mut self, func: &str, oid: u32, language: &str, definition: &str, via: &str) {
        if self.calling.contains(&oid) {
            return;
        }
        if self.too_deep() {
            return self.st.reason_of(
                Class::Unknown,
                format!("{func}(){via} calls functions nested too deeply to inspect"),
                func,
            );
        }
        // A standard SQL body (BEGIN ATOMIC, RETURN) was parsed when it was
        // created, and the catalog shows it as the server deparses it, for
        // the standard lexer. Other bodies are read at each call, with the
        // session's settings; a backslash in one may then mean what pgward
        // cannot see (libpg_query reads PL/pgSQL with the standard lexer).
        let lexer = if super::body::is_parsed_sql_body(language, definition) {
            Lexer::STANDARD
        } else {
            current_lexer()
        };
        if lexer != Lexer::STANDARD && definition.contains('\\') {
            return self.unseen_sql(
                func,
                format!(
                    "{func}(){via}: its body has a backslash, which standard_conforming_strings = off reads as an escape; pgward does not judge it so"
                ),
            );
        }
        let body = self.judging.body(language, definition);
        for why in &body.hidden {
            self.unseen_sql(func, format!("{func}(){via}: {why}"));
        }
        self.calling.push(oid);
        with_lexer(lexer, || {
            for sql in &body.statements {
                self.sql_text(func, via, sql);
            }
        });
        self.calling.pop();
    }
}

/// A table name as `regclass` input reads it: dot-separated identifiers,
/// unquoted ones folded to lower case, quoted ones kept with `""` for a
/// quote. None for an OID, a database-qualified or a malformed name.
fn regclass_name(text: &str) -> Option<(Option<String>, String)> {
    let mut parts = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let part;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') if quoted[i + 1..].starts_with('"') => {
                        out.push('"');
                        chars.next();
                    }
                    (i, '"') => break i + 1,
                    (_, c) => out.push(c),
                }
            };
            part = out;
            rest = &quoted[end..];
        } else {
            let end = rest
                .find(|c: char| c == '.' || c.is_ascii_whitespace() || c == '"')
                .unwrap_or(rest.len());
            // PostgreSQL folds only ASCII letters in UTF-8 databases.
            part = rest[..end].to_ascii_lowercase();
            rest = &rest[end..];
            if part.bytes().all(|b| b.is_ascii_digit()) {
                // All digits: an OID (or nothing at all).
                return None;
            }
        }
        if part.is_empty() {
            // `""`, a zero-length name PostgreSQL refuses.
            return None;
        }
        parts.push(part);
        rest = rest.trim_start();
        match rest.strip_prefix('.') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => break,
            None => return None,
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Some((Some(schema), name)),
        Err(parts) => match <[String; 1]>::try_from(parts) {
            Ok([name]) => Some((None, name)),
            Err(_) => None,
        },
    }
}

/// Whether a COPY statement's text names a file where its tree shows none:
/// pg_query gives `TO ''` an empty file name, as it gives `TO STDOUT`, while
/// PostgreSQL takes it for a file. The first TO or FROM outside
/// parentheses is the direction; a string after it is a file name. Text
/// the scanner refuses counts as a file (fail closed).
fn copy_names_a_file(text: &str) -> bool {
    use pg_query::protobuf::Token;
    // The scanner reads strings as standard_conforming_strings = on does:
    // where a backslash may mean otherwise, count it as a file.
    if current_lexer() != Lexer::STANDARD && text.contains('\\') {
        return true;
    }
    let Ok(scan) = pg_query::scan(text) else {
        return true;
    };
    let mut depth = 0i32;
    let mut tokens = scan.tokens.iter().map(|t| t.token);
    while let Some(t) = tokens.next() {
        match Token::try_from(t) {
            Ok(Token::Ascii40) => depth += 1,
            Ok(Token::Ascii41) => depth -= 1,
            Ok(Token::To | Token::From) if depth == 0 => {
                return !matches!(
                    tokens.next().map(Token::try_from),
                    Some(Ok(Token::Stdin | Token::Stdout | Token::Program))
                );
            }
            _ => {}
        }
    }
    true
}

/// Whether an ALTER TABLE has an `OWNER TO` subcommand.
fn gives_away_ownership(n: &Value) -> bool {
    n["cmds"].as_array().is_some_and(|cmds| {
        cmds.iter()
            .filter_map(variant)
            .any(|(_, cmd)| cmd.get("newowner").is_some_and(|o| !o.is_null()))
    })
}

/// "DeleteStmt" → "DELETE", "CreateTableAsStmt" → "CREATE TABLE AS".
fn sql_name(kind: &str) -> String {
    let base = kind.strip_suffix("Stmt").unwrap_or(kind);
    let mut out = String::new();
    for (i, ch) in base.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn is_dcl(kind: &str) -> bool {
    matches!(
        kind,
        "GrantStmt"
            | "GrantRoleStmt"
            | "CreateRoleStmt"
            | "AlterRoleStmt"
            | "AlterRoleSetStmt"
            | "DropRoleStmt"
            | "AlterDefaultPrivilegesStmt"
            | "ReassignOwnedStmt"
            | "DropOwnedStmt"
            | "CreateUserMappingStmt"
            | "AlterUserMappingStmt"
            | "DropUserMappingStmt"
            | "AlterOwnerStmt"
            | "CreatePolicyStmt"
            | "AlterPolicyStmt"
    )
}

fn is_admin(kind: &str) -> bool {
    matches!(
        kind,
        "CreatedbStmt"
            | "DropdbStmt"
            | "AlterDatabaseStmt"
            | "AlterDatabaseSetStmt"
            | "AlterDatabaseRefreshCollStmt"
            | "CreateTableSpaceStmt"
            | "DropTableSpaceStmt"
            | "AlterTableSpaceOptionsStmt"
            | "AlterTableMoveAllStmt"
            | "CreateSubscriptionStmt"
            | "AlterSubscriptionStmt"
            | "DropSubscriptionStmt"
            | "CreatePublicationStmt"
            | "AlterPublicationStmt"
            | "CreateEventTrigStmt"
            | "AlterEventTrigStmt"
            | "AlterCollationStmt"
    )
}

fn is_ddl(kind: &str) -> bool {
    matches!(
        kind,
        "CreateStmt"
            | "AlterTableStmt"
            | "DropStmt"
            | "IndexStmt"
            | "ViewStmt"
            | "CreateTableAsStmt"
            | "CreateSeqStmt"
            | "AlterSeqStmt"
            | "CreateFunctionStmt"
            | "AlterFunctionStmt"
            | "CreateTrigStmt"
            | "RuleStmt"
            | "CreateSchemaStmt"
            | "CreateExtensionStmt"
            | "AlterExtensionStmt"
            | "AlterExtensionContentsStmt"
            | "CreateDomainStmt"
            | "AlterDomainStmt"
            | "DefineStmt"
            | "CompositeTypeStmt"
            | "CreateEnumStmt"
            | "AlterEnumStmt"
            | "CreateRangeStmt"
            | "RenameStmt"
            | "AlterObjectSchemaStmt"
            | "AlterObjectDependsStmt"
            | "CommentStmt"
            | "SecLabelStmt"
            | "CreateCastStmt"
            | "CreateConversionStmt"
            | "CreateOpClassStmt"
            | "CreateOpFamilyStmt"
            | "AlterOpFamilyStmt"
            | "CreatePLangStmt"
            | "CreateFdwStmt"
            | "AlterFdwStmt"
            | "CreateForeignServerStmt"
            | "AlterForeignServerStmt"
            | "CreateForeignTableStmt"
            | "ImportForeignSchemaStmt"
            | "CreateTransformStmt"
            | "CreateAmStmt"
            | "CreateStatsStmt"
            | "AlterStatsStmt"
            | "AlterTSDictionaryStmt"
            | "AlterTSConfigurationStmt"
            | "AlterTypeStmt"
            | "AlterOperatorStmt"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let cat = Catalog::builtin();
        let mut v = classify(sql, &cat).expect(sql);
        assert_eq!(v.len(), 1, "{sql}");
        v.remove(0)
    }

    fn classes(sql: &str) -> String {
        one(sql).classes().to_string()
    }

    /// A long string of many statements is parsed one statement at a time;
    /// that gives the same statements, texts and classes as one parse of
    /// the whole string, and the same error for one that does not parse.
    #[test]
    fn long_strings_split_like_one_parse() {
        let cat = Catalog::builtin();
        let corpus = include_str!("../../tests/corpus/statements.txt");
        let mut sql = String::from("/* ñandú; */ SELECT 'é;' AS \"ü;\" -- trailing; \n;;\n");
        for line in corpus.lines().filter(|l| !l.starts_with('#')) {
            let Some(st) = line.splitn(3, '|').nth(2) else {
                continue;
            };
            let st = st.trim().trim_start_matches('!');
            if pg_query::parse(st, 0).is_ok() {
                sql.push_str(st);
                sql.push_str("\n;\n  -- next; one\n");
            }
        }
        sql.push_str("SELECT 2 /* the end; */");
        assert!(sql.len() > SPLIT_ABOVE, "only {} bytes", sql.len());
        let parts = pieces(&sql).expect("splits");
        assert!(parts.len() > 300, "only {} pieces", parts.len());
        let split = classify_pieces(parts, &cat).expect("classifies");
        let whole = classify_pieces(vec![&sql], &cat).expect("classifies");
        assert_eq!(split.len(), whole.len());
        for (a, b) in split.iter().zip(&whole) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        // As PostgreSQL reports it: from the first token to the semicolon.
        assert_eq!(split[0].text, "SELECT 'é;' AS \"ü;\" -- trailing;");
        assert_eq!(
            split.last().map(|s| s.text.as_str()),
            Some("SELECT 2 /* the end; */")
        );

        // With standard_conforming_strings off, parsed whole: a string
        // holding `\';` stays one string.
        let lexer = Lexer {
            escapes_in_strings: true,
        };
        let off = format!("SELECT 'a\\'; DELETE FROM t; --';\n{sql}");
        let whole = classify_with(&off, &cat, lexer).expect("classifies");
        assert_eq!(whole.len(), split.len() + 1);
        assert_eq!(whole[0].text, "SELECT 'a\\'; DELETE FROM t; --'");
        assert_eq!(whole[0].classes().to_string(), "read");

        sql.push_str("; SELECT FROM WHERE;");
        let split = classify(&sql, &cat).expect_err("does not parse");
        let whole = classify_pieces(vec![&sql], &cat).expect_err("does not parse");
        assert_eq!(split, whole);
        assert!(split.contains("syntax error"), "{split}");
    }

    /// A parse with escapes in strings that fails leaves libpg_query's
    /// lexer settings behind on its thread; pgward's `parse` puts the
    /// standard ones back, so a later scan (COPY's file check) or PL/pgSQL
    /// parse on the thread reads as the server's default does.
    #[test]
    fn a_failed_parse_with_escapes_leaves_the_standard_lexer() {
        let lexer = Lexer {
            escapes_in_strings: true,
        };
        with_lexer(lexer, || {
            assert!(parse("SELECT 'a\\'").is_err());
            assert!(parse("SELECT 'a\\'b'").is_ok());
        });
        assert_eq!(current_lexer(), Lexer::STANDARD);
        assert_eq!(pg_query::scan("SELECT 'a\\'").unwrap().tokens.len(), 2);
        assert!(parse("SELECT 'a\\'").is_ok());
    }

    /// The fingerprint, worked out on demand, ignores literal values and
    /// layout but not the statement's structure; an empty query has none.
    #[test]
    fn fingerprints_on_demand() {
        let a = one("SELECT x FROM t WHERE id = 5").fingerprint().to_owned();
        assert_eq!(a.len(), 16, "{a:?}");
        assert_eq!(one("select x  from t where id = 7").fingerprint(), a);
        assert_ne!(one("SELECT y FROM t WHERE id = 5").fingerprint(), a);
        // Computed on a thread without a big stack, too (a helper runs it).
        let st = one("SELECT x FROM t WHERE id = 5");
        let other = std::thread::spawn(move || st.fingerprint().to_owned())
            .join()
            .expect("no panic");
        assert_eq!(other, a);
        assert_eq!(one("").fingerprint(), "");
    }

    #[test]
    fn tree_walk_finds_nested_effects() {
        assert_eq!(classes("SELECT * FROM t"), "read");
        assert_eq!(
            classes("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
            "read,write"
        );
        assert_eq!(
            classes("SELECT * FROM (SELECT * FROM ((WITH x AS (UPDATE t SET a=1 RETURNING a) SELECT a FROM x))) s"),
            "read,write"
        );
        assert_eq!(classes("SELECT 1 INTO t2"), "read,ddl");
        assert_eq!(classes("SELECT * FROM t FOR UPDATE"), "read,lock");
        assert_eq!(classes("SELECT * FROM t FOR KEY SHARE"), "read,lock");
        assert_eq!(classes("SELECT nextval('s')"), "read,write");
        assert_eq!(classes("SELECT pg_catalog.setval('s', 1)"), "read,write");
        assert_eq!(classes("SELECT pg_advisory_lock(1)"), "read,lock");
        assert_eq!(classes("SELECT pg_notify('c', 'x')"), "read,write");
        assert_eq!(classes("SELECT txid_current()"), "read,write");
        assert_eq!(classes("SELECT lo_from_bytea(0, 'x')"), "read,write");
        assert_eq!(classes("SELECT lo_open(1, 262144)"), "read");
        assert_eq!(classes("SELECT lo_open(1, 131072)"), "read,write");
        assert_eq!(
            classes("SELECT query_to_xml('delete from t', true, true, '')"),
            "read,write"
        );
        assert_eq!(classes("SELECT random(), now(), lower('A')"), "read");
        assert_eq!(classes("SELECT pg_switch_wal()"), "read,admin");
        assert_eq!(classes("SELECT no_such_function()"), "read,unknown");
    }

    /// A name in FROM is a WITH query only where PostgreSQL would find
    /// one: in the statement the WITH belongs to and below it, after the
    /// query's own definition unless RECURSIVE. Elsewhere it is a table.
    #[test]
    fn with_queries_are_scoped_as_postgres_scopes_them() {
        let uses = |sql: &str| -> Vec<String> {
            one(sql)
                .relations
                .iter()
                .map(|r| format!("{} {}", r.access, r.qualified()))
                .collect()
        };
        let none: [&str; 0] = [];
        for sql in [
            "WITH k AS (SELECT 1) SELECT * FROM k",
            "WITH k AS (SELECT 1) SELECT * FROM k UNION SELECT * FROM k",
            "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 3) SELECT * FROM k",
            "WITH b AS (SELECT 1), k AS (SELECT * FROM b) SELECT * FROM k",
            "WITH k AS (SELECT 1), b AS (SELECT * FROM k) SELECT * FROM b",
            "WITH RECURSIVE b AS (SELECT * FROM k), k AS (SELECT 1) SELECT * FROM b",
            "WITH k AS (SELECT 1) SELECT * FROM (SELECT * FROM k) s WHERE EXISTS (SELECT FROM k)",
        ] {
            assert_eq!(uses(sql), none, "{sql}");
        }
        for sql in [
            "SELECT * FROM (WITH k AS (SELECT 1) SELECT 1) s, k",
            "SELECT (WITH k AS (SELECT 1) SELECT 1), * FROM k",
            "SELECT * FROM k WHERE EXISTS (WITH k AS (SELECT 1) SELECT * FROM k)",
            "WITH a AS (WITH k AS (SELECT 1) SELECT * FROM k) SELECT * FROM a, k",
            "WITH k AS (SELECT * FROM k) SELECT * FROM k",
            "WITH b AS (SELECT * FROM k), k AS (SELECT 1) SELECT * FROM b",
            "(WITH k AS (SELECT 1) SELECT * FROM k) UNION SELECT * FROM k",
            "SELECT * FROM k UNION (WITH k AS (SELECT 1) SELECT * FROM k)",
            "WITH k AS (SELECT 1) SELECT table_to_xml('k', true, true, '')",
        ] {
            assert_eq!(uses(sql), ["read k"], "{sql}");
        }
        // Targets are tables whatever the WITH queries are called (and
        // read too when the statement reads their rows back).
        assert_eq!(
            uses("WITH k AS (SELECT 1) DELETE FROM k USING k AS x"),
            ["write k", "read k"]
        );
        assert_eq!(
            uses("WITH k AS (SELECT 1) UPDATE k SET a = 1 FROM k AS x"),
            ["write k", "read k"]
        );
        assert_eq!(
            uses("WITH k AS (SELECT 1) INSERT INTO k SELECT * FROM k"),
            ["write k"]
        );
        assert_eq!(
            uses("WITH k AS (SELECT 1) MERGE INTO k USING k AS s ON true WHEN MATCHED THEN DELETE"),
            ["write k", "read k"]
        );
        assert_eq!(
            uses("WITH k AS (SELECT 1) SELECT * INTO k FROM k"),
            ["ddl k"]
        );
        // A data-modifying WITH query's target too.
        assert_eq!(
            uses("WITH k AS (SELECT 1), d AS (DELETE FROM k RETURNING *) SELECT * FROM d, k"),
            ["write k", "read k"]
        );
    }

    /// A write that shows its target's rows (RETURNING, or a WHERE whose
    /// matches it counts) reads the target too: `tables.read` rules apply
    /// to it, as SELECT privilege does in PostgreSQL.
    #[test]
    fn writes_that_read_their_target_back_read_it() {
        let uses = |sql: &str| -> Vec<String> {
            one(sql)
                .relations
                .iter()
                .map(|r| format!("{} {}", r.access, r.name))
                .collect()
        };
        for sql in [
            "UPDATE k SET a = a RETURNING secret",
            "UPDATE k SET a = 1 WHERE secret LIKE 'sk%'",
            "DELETE FROM k WHERE id = 1",
            "DELETE FROM k RETURNING *",
            "INSERT INTO k VALUES (1) RETURNING *",
            "INSERT INTO k VALUES (1) ON CONFLICT (id) DO UPDATE SET a = k.secret",
            "MERGE INTO k USING (SELECT 1 AS id) s ON k.id = s.id WHEN MATCHED THEN DELETE",
        ] {
            assert_eq!(uses(sql), ["write k", "read k"], "{sql}");
        }
        for sql in [
            "UPDATE k SET a = 1",
            "DELETE FROM k",
            "INSERT INTO k VALUES (1)",
        ] {
            assert_eq!(uses(sql), ["write k"], "{sql}");
        }
    }

    #[test]
    fn reads_of_tables_named_in_arguments() {
        let rels = |sql: &str| -> Vec<String> {
            one(sql)
                .relations
                .iter()
                .map(RelationUse::qualified)
                .collect()
        };
        assert_eq!(
            rels("SELECT table_to_xml(' Public . \"Api\"\"Keys\" ', true, true, '')"),
            ["public.Api\"Keys"]
        );
        assert_eq!(
            rels("SELECT pg_catalog.table_to_xmlschema('API_KEYS', true, true, '')"),
            ["api_keys"]
        );
        let st = one("SELECT table_to_xml('api_keys', true, true, '')");
        assert!(st.hidden_reads.is_empty() && st.literal_sensitive);
        for sql in [
            "SELECT table_to_xml('db.public.t', true, true, '')",
            "SELECT table_to_xml('16384', true, true, '')",
            "SELECT table_to_xml('\"unterminated', true, true, '')",
            "SELECT table_to_xml('a..b', true, true, '')",
            "SELECT table_to_xml('public.\"\"', true, true, '')",
            "SELECT table_to_xml('t'::regclass, true, true, '')",
            "SELECT schema_to_xml_and_xmlschema('public', true, true, '')",
            "SELECT database_to_xml(true, true, '')",
            "SELECT * FROM pg_stats",
            "DO $$BEGIN PERFORM 1; END$$",
            "SELECT * FROM pg_catalog.pg_statistic",
            "SELECT query FROM pg_stat_activity",
            "SELECT * FROM pg_stat_get_activity(NULL)",
            "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
            // Extensions, in whatever schema they were installed.
            "SELECT * FROM ext.connectby('api_keys', 'secret', 'service', 'x', 0) AS t(k text, p text, l int)",
            "SELECT * FROM xpath_table('id', 'doc', 'api_keys', '/a', 'true') AS t(id int, a text)",
            "SELECT get_raw_page('api_keys', 0)",
            "SELECT * FROM tools.bt_page_items('api_keys_pkey', 1)",
        ] {
            assert_eq!(one(sql).hidden_reads.len(), 1, "{sql}");
        }
        // SQL text that is a constant is judged as what it reads.
        for sql in [
            "SELECT query_to_xml('select * from api_keys', true, true, '')",
            "SELECT * FROM crosstab('select 1, 1, secret from api_keys') AS t(r int, v text)",
            "SELECT * FROM ext.crosstab('select 1, 1, secret from api_keys') AS t(r int, v text)",
        ] {
            assert!(one(sql).hidden_reads.is_empty(), "{sql}");
            assert_eq!(rels(sql), ["api_keys"], "{sql}");
        }
        // Declared STABLE, but the SQL they run is the client's.
        assert_eq!(
            classes("SELECT * FROM public.crosstab2('select nextval(''s'')')"),
            "read,write"
        );
        assert_eq!(
            one("SELECT chunk_data FROM pg_toast.pg_toast_16390")
                .hidden_reads
                .len(),
            1
        );
        // A user's own table of that name in another schema is just a table.
        assert!(one("SELECT * FROM app.pg_stats").hidden_reads.is_empty());
    }

    #[test]
    fn explain_analyze_runs_and_plain_explain_plans() {
        assert_eq!(classes("EXPLAIN DELETE FROM t"), "read");
        for opt in [
            "ANALYZE",
            "(ANALYZE)",
            "(analyze on)",
            "(ANALYZE true)",
            "(ANALYZE 1)",
            "(ANALYZE 'on')",
            "(ANALYZE 'y')",
        ] {
            assert_eq!(
                classes(&format!("EXPLAIN {opt} DELETE FROM t")),
                "read,write",
                "{opt}"
            );
        }
        assert_eq!(classes("EXPLAIN (ANALYZE false) DELETE FROM t"), "read");
        assert_eq!(classes("EXPLAIN (ANALYZE 'of') DELETE FROM t"), "read");
        assert_eq!(
            classes("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1"),
            "read,ddl"
        );
        assert_eq!(classes("EXPLAIN ANALYZE SELECT 1 INTO x"), "read,ddl");
        assert_eq!(
            classes("EXPLAIN SELECT pg_read_file('/etc/passwd')"),
            "read,file_or_program"
        );
    }

    #[test]
    fn names_reach_the_tree_folded_or_unescaped() {
        let st = one("SELECT U&\"pg\\005fread\\005ffile\"('/etc/passwd')");
        assert_eq!(st.dangerous[0].name, "pg_read_file");
        let st = one("SELECT PG_READ_FILE('/etc/passwd')");
        assert_eq!(st.dangerous[0].name, "pg_read_file");
        let st = one("SELECT \"PG_READ_FILE\"('/etc/passwd')");
        assert!(st.dangerous.is_empty());
        assert!(
            st.classes().contains(Class::Unknown),
            "not a known function"
        );
        let st = one("SELECT pg_catalog.pg_read_file('/etc/passwd')");
        assert_eq!(st.dangerous[0].name, "pg_read_file");
    }

    #[test]
    fn copy_variants() {
        assert_eq!(classes("COPY t TO STDOUT"), "copy_out");
        assert_eq!(classes("COPY t FROM STDIN"), "write,copy_in");
        assert_eq!(classes("COPY t TO '/tmp/x'"), "copy_out,file_or_program");
        let st = one("COPY t FROM PROGRAM 'id'");
        assert_eq!(st.dangerous[0].name, "copy_program");
        assert_eq!(
            classes("COPY (DELETE FROM t RETURNING *) TO STDOUT"),
            "write,copy_out"
        );
    }

    #[test]
    fn settings_and_transactions() {
        let st = one("SET LOCAL transaction_read_only = 'of'");
        assert_eq!(st.settings[0].name, "transaction_read_only");
        assert_eq!(st.settings[0].value.as_deref(), Some("of"));
        let st = one("BEGIN READ WRITE");
        assert_eq!(st.settings[0].name, "transaction_read_only");
        assert_eq!(st.settings[0].value.as_deref(), Some("off"));
        let st = one("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE");
        assert_eq!(st.settings[0].name, "default_transaction_read_only");
        assert_eq!(st.settings[0].value.as_deref(), Some("off"));
        let st = one("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY");
        let modes: Vec<_> = st
            .settings
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref()))
            .collect();
        assert_eq!(
            modes,
            [
                ("transaction_isolation", Some("serializable")),
                ("transaction_read_only", Some("on"))
            ]
        );
        let st = one("SELECT set_config('default_transaction_read_only', 'off', false)");
        assert_eq!(st.settings[0].name, "default_transaction_read_only");
        assert_eq!(classes("PREPARE TRANSACTION 'x'"), "admin");
        assert_eq!(classes("COMMIT"), "transaction");
    }

    #[test]
    fn prepare_execute_and_parse_errors() {
        let st = one("PREPARE p AS DELETE FROM t");
        assert_eq!(st.prepares.as_deref(), Some("p"));
        assert!(st.classes().contains(Class::Write));
        let st = one("EXECUTE p(1)");
        assert_eq!(st.executes.as_deref(), Some("p"));
        let e = classify("SELECT FROM WHERE", &Catalog::builtin()).unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
        let v = classify("SELECT 1; DELETE FROM t", &Catalog::builtin()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].text, "DELETE FROM t");
    }

    #[test]
    fn deep_trees_are_classified_or_refused_never_crash() {
        let cat = Catalog::builtin();
        // Long operator chains and nested sub-selects nest the tree deeply.
        let concat = format!("SELECT {}", vec!["'a'"; 1000].join(" || "));
        assert_eq!(
            classify(&concat, &cat).unwrap()[0].classes().to_string(),
            "read"
        );
        let nested = format!("SELECT {}1{}", "(SELECT ".repeat(200), ")".repeat(200));
        assert_eq!(
            classify(&nested, &cat).unwrap()[0].classes().to_string(),
            "read"
        );
        let hidden = format!(
            "SELECT {}(WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d){}",
            "(SELECT ".repeat(300),
            ")".repeat(300)
        );
        assert!(classify(&hidden, &cat).unwrap()[0]
            .classes()
            .contains(Class::Write));
        for n in [10_000, 100_000] {
            let deep = format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
            assert!(
                classify(&deep, &cat).is_err(),
                "{n} levels are refused by the parser"
            );
        }
    }

    #[test]
    fn bool_parsing_matches_postgres() {
        for t in ["on", "ON", "t", "tr", "true", "y", "yes", "1"] {
            assert_eq!(parse_pg_bool(t), Some(true), "{t}");
        }
        for f in ["of", "off", "f", "false", "n", "no", "0"] {
            assert_eq!(parse_pg_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_pg_bool("o"), None);
        assert_eq!(parse_pg_bool("maybe"), None);
    }

    fn dangerous_names(sql: &str) -> Vec<&'static str> {
        one(sql).dangerous.iter().map(|d| d.name).collect()
    }

    /// Attribute notation `x.f` and `(expr).f` is judged as the call f(x).
    #[test]
    fn attribute_notation_is_a_call() {
        assert_eq!(
            classes("SELECT s.lo_create FROM unnest(ARRAY[0::oid]) s"),
            "read,write"
        );
        assert_eq!(
            classes("SELECT (s).nextval FROM unnest(ARRAY['t_id_seq'::regclass]) s"),
            "read,write"
        );
        assert_eq!(
            classes("SELECT k.pg_advisory_lock FROM unnest(ARRAY[1::int8]) k"),
            "read,lock"
        );
        assert_eq!(
            dangerous_names("SELECT n.current_setting FROM unnest(ARRAY['archive_command']) n"),
            ["server_secrets"]
        );
        assert!(
            !one("SELECT b.pg_stat_get_backend_activity FROM unnest(ARRAY[1]) b")
                .hidden_reads
                .is_empty()
        );
        assert!(
            !one("SELECT (s.pg_stat_get_activity).query FROM unnest(ARRAY[1]) s")
                .hidden_reads
                .is_empty()
        );
        let st = one("SELECT (('SELECT secret FROM api_keys'::text).ts_stat).word");
        assert!(st.classes().contains(Class::Unknown), "{:?}", st.reasons);
        assert_eq!(
            dangerous_names("SELECT ('/etc/passwd'::text).pg_read_file"),
            ["pg_read_file"]
        );
        // Columns that share no name with a function with an effect stay
        // plain reads, with no function on record.
        let st = one("SELECT c.name, c.lower, (c).upper, c.id FROM customers c");
        assert_eq!(st.classes().to_string(), "read");
        assert!(st.functions.is_empty(), "{:?}", st.functions);
    }

    /// SQL given as text to an executor is judged as what it runs.
    #[test]
    fn sql_text_is_judged_as_what_it_runs() {
        let st =
            one("SELECT query_to_xml('SELECT pg_read_file(''/etc/hostname'')', true, false, '')");
        assert_eq!(
            st.dangerous.iter().map(|d| d.name).collect::<Vec<_>>(),
            ["pg_read_file"]
        );
        assert!(st.literal_sensitive, "never shared by shape");
        // `name` cuts text to 63 bytes: the server would run less than
        // pgward read, so it is text pgward cannot see.
        let padded = format!("{}SELECT * FROM api_keys_not_a_table", " ".repeat(41));
        let st = one(&format!(
            "SELECT query_to_xml('{padded}'::name, true, false, '')"
        ));
        assert!(st.classes().contains(Class::Unknown), "{:?}", st.reasons);
        let st = one("SELECT query_to_xml('SELECT rolpassword FROM pg_authid', true, false, '')");
        assert_eq!(
            st.dangerous.iter().map(|d| d.name).collect::<Vec<_>>(),
            ["pg_authid"]
        );
        assert!(st.relations.iter().any(|r| r.name == "pg_authid"));
        let st = one("SELECT query_to_xml('SELECT name FROM customers', true, false, '')");
        assert_eq!(st.classes().to_string(), "read");
        assert_eq!(st.relations.len(), 1);
        assert_eq!(st.relations[0].name, "customers");
        assert!(st.hidden_reads.is_empty(), "{:?}", st.hidden_reads);
        // Nested, dollar-quoted, through a cast: still seen.
        let st = one(
            "SELECT query_to_xml($a$SELECT ts_stat($b$SELECT setval('s', 1)$b$::text)$a$, true, false, '')",
        );
        assert!(st.classes().contains(Class::Write), "{:?}", st.reasons);
        assert!(
            st.functions.iter().any(|f| f == "setval"),
            "{:?}",
            st.functions
        );
        // Settings changed by the text are the statement's.
        let st = one("SELECT query_to_xml('SELECT set_config(''default_transaction_read_only'', ''off'', false)', true, false, '')");
        assert_eq!(st.settings.len(), 1);
        assert_eq!(st.settings[0].name, "default_transaction_read_only");
        // Text pgward cannot see: unknown, never read.
        for sql in [
            "SELECT query_to_xml($1, true, false, '')",
            "SELECT query_to_xml(current_setting('x'), true, false, '')",
            "SELECT query_to_xml(convert_from(decode('U0VMRUNUIDE=', 'base64'), 'UTF8'), true, false, '')",
            "SELECT * FROM ts_stat('SELEC oops')",
            "SELECT * FROM connectby('t', 'id', 'parent', '1', 0) AS t(id int, parent int, level int)",
        ] {
            let st = one(sql);
            assert!(st.classes().contains(Class::Unknown), "{sql}: {:?}", st.reasons);
            assert!(!st.hidden_reads.is_empty(), "{sql}");
        }
        // Deep nesting ends in unknown, not a stack overflow.
        let mut sql = "SELECT 1".to_owned();
        for i in 0..40 {
            sql = format!("SELECT query_to_xml($q{i}${sql}$q{i}$, true, false, '')");
        }
        assert!(one(&sql).classes().contains(Class::Unknown));
    }

    /// Trees as deep as libpg_query hands over (about 5,000 levels, deeper
    /// than PostgreSQL 15 runs) classify on any thread, this test's small
    /// stack included, also SQL text nested deep inside a deep statement;
    /// deeper ones are refused as too deep. None overflows the stack.
    #[test]
    fn deep_trees_classify_without_overflowing() {
        let plus = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
        for sql in [
            plus(4_900),
            format!("SELECT {}1", "+".repeat(4_990)),
            format!("SELECT {}1{}", "(SELECT ".repeat(1_600), ")".repeat(1_600)),
            format!("SELECT {}1{}", "ARRAY[".repeat(2_400), "]".repeat(2_400)),
            format!("SELECT {}true", "NOT ".repeat(4_900)),
        ] {
            assert_eq!(one(&sql).classes().to_string(), "read", "{}", &sql[..30]);
        }
        // SQL text nested deep in a deep statement: judged as what it runs.
        let inner = format!("SELECT {}nextval(''s'')", "+".repeat(4_900));
        let sql = format!(
            "SELECT {}length(query_to_xml('{inner}', true, false, '')::text)",
            "+".repeat(4_000)
        );
        let st = one(&sql);
        assert!(st.classes().contains(Class::Write), "{:?}", st.reasons);
        assert!(st.functions.iter().any(|f| f == "nextval"));
        // Deeper than libpg_query hands over, or than its 2 MB parser
        // stack takes: refused, saying so.
        let cat = Catalog::builtin();
        for sql in [plus(5_000), plus(1_000_000)] {
            let e = classify(&sql, &cat).unwrap_err();
            assert!(e.starts_with(TOO_DEEP), "{e}");
        }
        // Too deep inside SQL text: unknown, never read.
        let inner = format!("SELECT {}1", "+".repeat(6_000));
        let st = one(&format!("SELECT query_to_xml('{inner}', true, false, '')"));
        assert!(st.classes().contains(Class::Unknown), "{:?}", st.reasons);
    }

    #[test]
    fn catalog_writes_are_dangerous() {
        for sql in [
            "INSERT INTO pg_catalog.pg_proc SELECT * FROM pg_catalog.pg_proc WHERE proname = 'pg_read_file'",
            "INSERT INTO pg_proc SELECT * FROM pg_proc WHERE false",
            "UPDATE pg_catalog.pg_authid SET rolsuper = true",
            "DELETE FROM information_schema.sql_parts",
            "COPY information_schema.sql_parts (feature_id) FROM STDIN",
            "WITH x AS (DELETE FROM pg_catalog.pg_description RETURNING 1) SELECT * FROM x",
            "MERGE INTO pg_catalog.pg_description d USING (SELECT 1) s ON false WHEN NOT MATCHED THEN DO NOTHING",
        ] {
            assert!(dangerous_names(sql).contains(&"catalog_write"), "{sql}");
            assert!(one(sql).classes().contains(Class::Admin), "{sql}");
        }
        // Reading the catalogs is not writing them; a user table is not one.
        assert!(dangerous_names("SELECT * FROM pg_proc").is_empty());
        assert!(dangerous_names("INSERT INTO public.pg_things VALUES (1)").is_empty());
    }

    /// pg_query shows `TO ''` like `TO STDOUT`; PostgreSQL takes it for a
    /// file name.
    #[test]
    fn copy_with_an_empty_file_name_is_a_file() {
        for sql in [
            "COPY orders (id, amount) TO ''",
            "COPY information_schema.sql_parts (feature_id) FROM ''",
            "COPY (SELECT 'STDOUT') TO ''",
            "COPY t FROM '' WHERE a IS DISTINCT FROM b",
        ] {
            assert!(dangerous_names(sql).contains(&"copy_file"), "{sql}");
            assert!(one(sql).literal_sensitive, "{sql}");
        }
        for sql in [
            "COPY orders TO STDOUT",
            "COPY (SELECT 'x' FROM t) TO STDOUT WITH (FORMAT csv)",
            "COPY t (a, b) FROM STDIN WHERE a IS DISTINCT FROM b",
        ] {
            assert!(dangerous_names(sql).is_empty(), "{sql}");
        }
    }

    /// pg_dump's set_config idiom is `SET x` only while `pg_settings` and
    /// `=` can only be the built-ins: a user relation named pg_settings, or
    /// a user `=` on text, ahead of pg_catalog on a search_path a role may
    /// be allowed, would pick other settings.
    #[test]
    fn set_config_idiom_needs_the_builtin_names() {
        let sql = "SELECT set_config(name, 'off', false) FROM pg_settings WHERE name = 'application_name'";
        let mut cat = Catalog::builtin();
        assert_eq!(
            classify(sql, &cat).unwrap()[0].settings[0].name,
            "application_name"
        );
        cat.user_text_equals = true;
        assert_eq!(
            classify(sql, &cat).unwrap()[0].settings,
            [SettingChange::computed()]
        );
        let mut cat = Catalog::builtin();
        cat.add_relation("public", "pg_settings", b'v');
        assert_eq!(
            classify(sql, &cat).unwrap()[0].settings,
            [SettingChange::computed()]
        );
    }

    /// pg_dump's `set_config(name, ...) FROM pg_settings WHERE name = 'x'`
    /// is `SET x`, in exactly that shape: anything looser stays a
    /// set_config of a name pgward cannot read, and a read of pg_settings.
    #[test]
    fn set_config_from_pg_settings_in_pg_dump_shape_sets_that_setting() {
        let st = one("SELECT set_config(name, 'view, foreign-table', false) \
             FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'");
        assert_eq!(
            st.settings,
            [SettingChange::set(
                "restrict_nonsystem_relation_kind",
                Some("view, foreign-table".into()),
                false
            )]
        );
        assert!(st.dangerous.is_empty(), "{:?}", st.dangerous);
        assert!(st.literal_sensitive);
        assert_eq!(st.classes().to_string(), "read,session");
        let st = one(
            "select SET_CONFIG(name,'off',true) from PG_SETTINGS where NAME='Default_Transaction_Read_Only'",
        );
        assert_eq!(
            st.settings,
            [SettingChange::set(
                "default_transaction_read_only",
                Some("off".into()),
                true
            )]
        );
        for looser in [
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name LIKE 'application_name'",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name' OR true",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE 'application_name' = name",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name' COLLATE \"C\"",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name'::text",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = NULL",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = $1",
            "SELECT set_config(name, $1, false) FROM pg_settings WHERE name = 'application_name'",
            "SELECT set_config(name, setting, false) FROM pg_settings WHERE name = 'application_name'",
            "SELECT set_config(name, 'x', false), setting FROM pg_settings WHERE name = 'application_name'",
            "SELECT set_config(s.name, 'x', false) FROM pg_settings s WHERE s.name = 'application_name'",
            "SELECT set_config(name, 'x', false) FROM pg_catalog.pg_settings WHERE name = 'application_name'",
            "SELECT set_config(name, 'x', false) FROM pg_settings, pg_class WHERE name = 'application_name'",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name' LIMIT 1",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name' ORDER BY 1",
            "SELECT DISTINCT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name'",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name' UNION SELECT setting FROM pg_settings",
            "WITH s AS (SELECT 1) SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name'",
            "SELECT set_config(name, 'x', false) FROM public.pg_settings WHERE name = 'application_name'",
            "SELECT public.set_config(name, 'x', false) FROM pg_settings WHERE name = 'application_name'",
            "SELECT set_config(name, 'x', false, 1) FROM pg_settings WHERE name = 'application_name'",
            "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name <> 'application_name'",
        ] {
            let st = one(looser);
            assert!(
                st.settings.iter().all(|s| s.name != "application_name"),
                "{looser}: {:?}",
                st.settings
            );
        }
        // Where the statement reads pg_settings unqualified but differs
        // from the idiom, the read of the settings stays server_secrets.
        assert_eq!(
            dangerous_names(
                "SELECT set_config(name, 'x', false), setting FROM pg_settings WHERE name = 'application_name'"
            ),
            ["server_secrets"]
        );
    }

    /// pg_dump's count of subscriptions (as a user who may not see them)
    /// is not a read of their connection strings; any other read is.
    #[test]
    fn counting_subscriptions_as_pg_dump_does_reads_no_credentials() {
        let count = "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database                 WHERE datname = current_database())";
        assert!(dangerous_names(count).is_empty());
        let names: Vec<String> = one(count)
            .relations
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(names, ["pg_subscription", "pg_database"]);
        for other in [
            "SELECT count(*) FROM pg_subscription",
            "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND subconninfo LIKE 'a%'",
            "SELECT count(subconninfo) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) GROUP BY subconninfo",
            "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = 'x')",
        ] {
            assert_eq!(dangerous_names(other), ["pg_subscription"], "{other}");
        }
    }

    /// LOCK ... IN ACCESS SHARE MODE takes the lock a SELECT takes: a read
    /// of the tables, judged by the read rules; other modes lock.
    #[test]
    fn access_share_lock_is_a_read() {
        for sql in [
            "LOCK TABLE public.t IN ACCESS SHARE MODE",
            "LOCK t, u IN ACCESS SHARE MODE NOWAIT",
            "LOCK TABLE ONLY t IN ACCESS SHARE MODE",
        ] {
            let st = one(sql);
            assert_eq!(st.classes().to_string(), "read", "{sql}");
            assert!(
                st.relations.iter().all(|r| r.access == Class::Read),
                "{sql}"
            );
        }
        for sql in [
            "LOCK TABLE t",
            "LOCK TABLE t IN ROW SHARE MODE",
            "LOCK TABLE t IN ROW EXCLUSIVE MODE",
            "LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE",
            "LOCK TABLE t IN SHARE MODE",
            "LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE",
            "LOCK TABLE t IN EXCLUSIVE MODE",
            "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        ] {
            let st = one(sql);
            assert_eq!(st.classes().to_string(), "lock", "{sql}");
            assert!(
                st.relations.iter().all(|r| r.access == Class::Lock),
                "{sql}"
            );
        }
    }

    /// `n` STABLE functions `f0` .. `f{n-1}`, each calling the next two;
    /// the last reads a server file.
    fn function_web(n: usize) -> Catalog {
        let mut cat = Catalog::builtin();
        for i in 0..n {
            let body = if i == n - 1 {
                "RETURN length(pg_read_file('/etc/hostname'));".to_owned()
            } else {
                let calls: Vec<String> = [i + 1, i + 2]
                    .into_iter()
                    .filter(|j| *j < n)
                    .map(|j| format!("f{j}(x)"))
                    .collect();
                format!("RETURN {};", calls.join(" + "))
            };
            cat = cat.with_function(&format!("f{i}"), b's', "plpgsql", &body);
        }
        cat
    }

    fn one_with(sql: &str, cat: &Catalog) -> Statement {
        let mut sts = classify(sql, cat).unwrap();
        assert_eq!(sts.len(), 1);
        sts.remove(0)
    }

    /// 14 functions each calling the next two reach the last on 377
    /// paths, 24 on 46,368: each body is judged once (again only where a
    /// walk cut short for depth can go deeper), and the danger at the
    /// bottom is still found.
    #[test]
    fn webs_of_functions_judge_each_body_once() {
        for n in [14, 24] {
            let cat = function_web(n);
            let st = one_with("SELECT f0(1)", &cat);
            assert!(
                st.dangerous.iter().any(|d| d.name == "pg_read_file"),
                "{n}: {:?}",
                st.classes()
            );
            for i in 0..n {
                let f = format!("f{i}");
                assert!(
                    st.functions
                        .iter()
                        .any(|g| *g == f || g.ends_with(&format!(".{f}"))),
                    "{f}"
                );
            }
            assert!(!st.reasons.iter().any(|r| r.why.contains(OVER_BUDGET)));
            // The reasons stay few, though every path brings its own words.
            assert!(
                st.reasons.len() <= 6 * n,
                "{n}: {} reasons",
                st.reasons.len()
            );
            if n == 14 {
                // Within the depth pgward follows: one SQL text per body
                // (its RETURN expression), no more.
                assert_eq!(st.judged, n);
            } else {
                // Deeper than it follows (unknown, fail closed): a body
                // met first at the limit is judged again from higher up.
                assert!(st.classes().contains(Class::Unknown));
                assert!(st.judged <= MAX_DEPTH * n, "{n}: {} judged", st.judged);
            }
        }
        // From the middle, the same.
        let cat = function_web(14);
        let st = one_with("SELECT f6(1) + f7(1)", &cat);
        assert!(st.dangerous.iter().any(|d| d.name == "pg_read_file"));
        assert_eq!(st.judged, 14 - 6);
    }

    /// Tables whose triggers write each other, in cycles: each trigger
    /// body is judged once per statement, and what the last one does is
    /// found from the first table.
    /// ALTER TABLE and CREATE INDEX whose expressions over the rows call a
    /// user function read the table (the function sees every row's
    /// values); with built-ins only they do not.
    #[test]
    fn ddl_that_hands_rows_to_user_functions_reads_the_table() {
        let cat = Catalog::builtin()
            .with_table("secrets", &[])
            .with_function("leak", b'i', "sql", "SELECT 1");
        let reads = |sql: &str| {
            one_with(sql, &cat)
                .relations
                .iter()
                .any(|r| r.name == "secrets" && r.access == Class::Read)
        };
        for sql in [
            "ALTER TABLE secrets ADD CONSTRAINT c CHECK (leak(v) > 0)",
            "ALTER TABLE public.secrets ALTER COLUMN v TYPE int USING leak(v)",
            "CREATE INDEX ON secrets (leak(v))",
            "CREATE INDEX ON secrets (v) WHERE leak(v) > 0",
            "CREATE STATISTICS s ON (leak(v)) FROM secrets",
        ] {
            assert!(reads(sql), "{sql}");
        }
        for sql in [
            "ALTER TABLE secrets ADD CONSTRAINT c CHECK (v > 0)",
            "CREATE INDEX ON secrets (lower(v))",
        ] {
            assert!(!reads(sql), "{sql}");
        }
    }

    /// ALTER DOMAIN checks the rows of the tables with a column of the
    /// domain (a read of them); ALTER TYPE ... CASCADE rewrites the typed
    /// tables of a composite type. Neither names those tables.
    #[test]
    fn ddl_on_a_type_goes_through_the_tables_using_it() {
        let cat = Catalog::builtin()
            .with_table("secrets", &[])
            .with_type_table("posint", "secrets")
            .with_table("typed", &[])
            .with_type_table("shape", "typed");
        let rels = |sql: &str| -> Vec<String> {
            let mut r: Vec<String> = one_with(sql, &cat)
                .relations
                .iter()
                .map(|r| format!("{}:{}", r.qualified(), r.access))
                .collect();
            r.sort();
            r
        };
        for sql in [
            "ALTER DOMAIN posint ADD CONSTRAINT c CHECK (VALUE > 0)",
            "ALTER DOMAIN public.posint ADD CHECK (leak(VALUE))",
            "ALTER DOMAIN posint VALIDATE CONSTRAINT c",
            "ALTER DOMAIN posint SET NOT NULL",
        ] {
            assert_eq!(rels(sql), ["public.secrets:read"], "{sql}");
        }
        for sql in [
            "ALTER DOMAIN posint ADD CONSTRAINT c CHECK (VALUE > 0) NOT VALID",
            "ALTER DOMAIN posint DROP NOT NULL",
            "ALTER DOMAIN posint SET DEFAULT 1",
            "ALTER DOMAIN posint DROP CONSTRAINT c",
            "ALTER DOMAIN other.posint SET NOT NULL",
        ] {
            assert!(rels(sql).is_empty(), "{sql}: {:?}", rels(sql));
        }
        // The type is named as a relation of ALTER TABLE's tree.
        assert_eq!(
            rels("ALTER TYPE shape ALTER ATTRIBUTE a TYPE text"),
            ["shape:ddl"]
        );
        assert_eq!(
            rels("ALTER TYPE shape ALTER ATTRIBUTE a TYPE text CASCADE"),
            ["public.typed:ddl", "shape:ddl"]
        );
    }

    /// BRIN summarization, GIN cleanup and the extension functions that
    /// take a relation by name read or write the table of the index (or
    /// the table) they are given: table rules apply to that table. What
    /// pgward cannot resolve to one is unknown.
    #[test]
    fn functions_given_an_index_use_its_table() {
        let cat = Catalog::builtin()
            .with_table("secrets", &[])
            .with_index("secrets_brin", "secrets");
        let uses = |sql: &str| {
            let st = one_with(sql, &cat);
            let mut r: Vec<String> = st
                .relations
                .iter()
                .map(|r| {
                    format!(
                        "{}.{}:{}",
                        r.schema.as_deref().unwrap_or("?"),
                        r.name,
                        r.access
                    )
                })
                .collect();
            r.sort();
            (r, st)
        };
        let (r, st) = uses("SELECT brin_summarize_range('secrets_brin', 2)");
        assert_eq!(r, ["public.secrets:read", "public.secrets:write"]);
        assert!(st.literal_sensitive && st.hidden_reads.is_empty());
        assert!(!st.classes().contains(Class::Unknown));
        let (r, _) = uses("SELECT pg_catalog.brin_summarize_new_values('public.secrets_brin')");
        assert_eq!(r, ["public.secrets:read", "public.secrets:write"]);
        let (r, _) = uses("SELECT gin_clean_pending_list('secrets_brin')");
        assert_eq!(r, ["public.secrets:write"]);
        let (r, _) = uses("SELECT brin_desummarize_range('secrets_brin', 0)");
        assert_eq!(r, ["public.secrets:write"]);
        // Extensions' functions, in whatever schema, take a table too.
        let (r, _) = uses("SELECT * FROM ext.pgstattuple('secrets')");
        assert_eq!(r, ["?.secrets:read"]);
        let (r, _) = uses("SELECT bt_index_check('secrets_brin', true)");
        assert_eq!(r, ["public.secrets:read"]);
        let (r, _) = uses("SELECT heap_force_kill('secrets', ARRAY['(0,1)'::tid])");
        assert_eq!(r, ["?.secrets:write"]);
        // Attribute notation is the same call, of a value pgward does not see.
        let st = one_with(
            "SELECT x.brin_summarize_new_values FROM (SELECT 'secrets_brin'::regclass) x",
            &cat,
        );
        assert!(st.classes().contains(Class::Unknown));
        // What pgward cannot resolve to a table is unknown.
        for sql in [
            "SELECT brin_summarize_range('no_such_index', 2)",
            "SELECT brin_summarize_range('16384', 2)",
            "SELECT brin_summarize_range(16384::regclass, 2)",
            "SELECT brin_summarize_new_values(relname::regclass) FROM pg_class",
            "SELECT brin_summarize_new_values('db.public.secrets_brin')",
            "SELECT brin_summarize_new_values('other.secrets_brin')",
        ] {
            let st = one_with(sql, &cat);
            assert!(st.classes().contains(Class::Unknown), "{sql}");
            assert!(!st.hidden_reads.is_empty(), "{sql}");
        }
        // A user function of that name in another schema is the user's.
        let (r, _) = uses("SELECT lower('secrets_brin')");
        assert!(r.is_empty());
    }

    #[test]
    fn webs_of_triggers_judge_each_body_once() {
        let n = 10;
        let mut cat = Catalog::builtin();
        for i in 0..n {
            let mut body: Vec<String> = [i + 1, i + 2, 0]
                .into_iter()
                .filter(|j| *j < n && *j != i)
                .map(|j| format!("UPDATE t{j} SET v = v + 1 WHERE id = NEW.id;"))
                .collect();
            if i == n - 1 {
                body.push("COPY (SELECT 1) TO '/tmp/x';".into());
            }
            body.push("RETURN NEW;".into());
            cat = cat.with_function(&format!("t{i}_trg"), b'v', "plpgsql", &body.join(" "));
        }
        for i in 0..n {
            cat = cat.with_table(&format!("t{i}"), &[&format!("t{i}_trg")]);
        }
        let st = one_with("INSERT INTO t0 VALUES (1, 1)", &cat);
        assert!(
            st.dangerous.iter().any(|d| d.name == "copy_file"),
            "{:?}",
            st.classes()
        );
        assert!(st.classes().contains(Class::FileOrProgram));
        for i in 0..n {
            let table = format!("t{i}");
            assert!(st.relations.iter().any(|r| r.name == table), "{table}");
        }
        // Each trigger's UPDATEs and its RETURN, once.
        assert!(st.judged <= 4 * n, "{} judged", st.judged);
        assert!(!st.reasons.iter().any(|r| r.why.contains(OVER_BUDGET)));
    }

    /// A body judged while a function that calls it was being judged
    /// leaves that function out (it is judged already); reused elsewhere
    /// in the statement, the verdict is still the union of all of it.
    #[test]
    fn cycles_stay_complete_when_bodies_are_reused() {
        let cat = Catalog::builtin()
            .with_function(
                "f",
                b's',
                "plpgsql",
                "PERFORM g(x); PERFORM pg_read_file('/x'); RETURN 1;",
            )
            .with_function("g", b's', "plpgsql", "RETURN f(x);")
            .with_function("h", b's', "plpgsql", "RETURN g(x);");
        for sql in [
            "SELECT f(1)",
            "SELECT g(1)",
            "SELECT h(1)",
            "SELECT f(1) + h(1)",
            "SELECT h(1) + f(1)",
            "SELECT g(1) + h(1) + f(1)",
        ] {
            let st = one_with(sql, &cat);
            assert!(
                st.dangerous.iter().any(|d| d.name == "pg_read_file"),
                "{sql}: {:?}",
                st.reasons
            );
            // f has three texts, g and h one each.
            assert!(st.judged <= 5, "{sql}: {} judged", st.judged);
        }
    }

    /// More bodies than pgward judges for one statement, or more calls
    /// than it follows: unknown, with a message that says why, and the
    /// work stops at the limit.
    #[test]
    fn webs_over_the_budget_are_unknown() {
        // One body calls 1,100 functions with bodies of their own.
        let wide = 1_100;
        let calls: Vec<String> = (0..wide).map(|i| format!("w{i}(x)")).collect();
        let mut cat = Catalog::builtin().with_function(
            "top",
            b's',
            "plpgsql",
            &format!("RETURN {};", calls.join(" + ")),
        );
        for i in 0..wide {
            cat = cat.with_function(&format!("w{i}"), b'i', "sql", &format!("SELECT x + {i}"));
        }
        let st = one_with("SELECT top(1)", &cat);
        assert!(st.classes().contains(Class::Unknown), "{:?}", st.reasons);
        assert!(st.reasons.iter().any(|r| r.why == OVER_BUDGET));
        assert!(st.hidden_reads.iter().any(|h| h == OVER_BUDGET));
        assert_eq!(st.judged, MAX_JUDGED + 1);
        // A few bodies, called very many times.
        let fan = 150;
        let calls: Vec<String> = (0..fan).map(|i| format!("m{i}(x)")).collect();
        let leaf: Vec<String> = (0..fan).map(|i| format!("leaf{i}(x)")).collect();
        let mut cat = Catalog::builtin().with_function(
            "top",
            b's',
            "plpgsql",
            &format!("RETURN {};", calls.join(" + ")),
        );
        for i in 0..fan {
            cat = cat
                .with_function(
                    &format!("m{i}"),
                    b's',
                    "sql",
                    &format!("SELECT {i} + {}", leaf.join(" + ")),
                )
                .with_function(&format!("leaf{i}"), b'i', "sql", "SELECT x");
        }
        let st = one_with("SELECT top(1)", &cat);
        assert!(st.reasons.iter().any(|r| r.why == OVER_BUDGET));
        // Each leaf's body is the same text: judged once.
        assert!(st.judged <= 2 + fan, "{} judged", st.judged);
        // Under the limits, the same web with fewer calls is judged.
        let st = one_with("SELECT m0(1)", &cat);
        assert!(!st.classes().contains(Class::Unknown));
        assert_eq!(st.judged, 2);
    }

    #[test]
    fn sql_names() {
        assert_eq!(sql_name("CreateTableAsStmt"), "CREATE TABLE AS");
        assert_eq!(sql_name("DeleteStmt"), "DELETE");
    }
}
