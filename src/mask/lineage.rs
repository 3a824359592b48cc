//! Lineage: where each output column of a statement comes from, from the
//! parse tree and the catalog, and what that means for a role with masks:
//! a plan per output column (its mask, or none), or a refusal.
//!
//! Fail closed: a masked value may flow only through what this module
//! knows (column references, casts to text, a list of functions that
//! cannot reveal their argument through errors or NULLs, aggregates,
//! CASE results, subqueries, CTEs, set operations, views); a masked
//! column compared, sorted, grouped (except `hash`, whose equality is
//! allowed), used whole-row, or fed to anything else is refused.

use std::collections::{BTreeSet, HashMap};

use pg_query::protobuf::node::Node as N;
use pg_query::protobuf::{self as pb, Node};

use super::func::MaskFn;
use crate::policy::catalog::{unread_at_load, FuncInfo, KeyConstraint, KeyKind};
use crate::policy::{Catalog, Role};

/// The masked columns of one role, keyed by table (inheritance applied:
/// a mask on a column of a parent table applies to its children's column
/// of that name, and the reverse, since a read of either shows the other's
/// rows).
#[derive(Debug, Clone, Default)]
pub struct MaskSet {
    tables: HashMap<(String, String), Vec<(String, MaskFn)>>,
}

impl MaskSet {
    pub fn of(role: &Role, cat: &Catalog) -> MaskSet {
        let mut set = MaskSet::default();
        for m in &role.masks {
            // By the rule's name, and by the names the column has now if
            // it (or its table) was renamed since pgward first saw it.
            let named = (m.schema.clone(), m.table.clone(), m.column.clone());
            let now = cat.now_named(&m.schema, &m.table, &m.column);
            for (schema, table, column) in std::iter::once(named).chain(now) {
                set.add(&schema, &table, &column, m.func);
                let full = format!("{schema}.{table}");
                let related: Vec<String> = cat
                    .ancestors(&full)
                    .into_iter()
                    .chain(cat.descendants(&full))
                    .map(str::to_owned)
                    .collect();
                for r in related {
                    if let Some((s, t)) = r.split_once('.') {
                        set.add(s, t, &column, m.func);
                    }
                }
            }
        }
        set
    }

    fn add(&mut self, schema: &str, table: &str, column: &str, func: MaskFn) {
        let cols = self
            .tables
            .entry((schema.to_owned(), table.to_owned()))
            .or_default();
        match cols.iter_mut().find(|(c, _)| c == column) {
            Some((_, f)) => *f = f.strictest(func),
            None => cols.push((column.to_owned(), func)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Whether table `name` (in `schema`, or in any schema when None) has
    /// masked columns.
    pub fn covers(&self, schema: Option<&str>, name: &str) -> bool {
        self.tables
            .keys()
            .any(|(s, t)| t == name && schema.is_none_or(|schema| schema == s))
    }

    /// The mask of `schema.table.column`, if any.
    pub fn mask(&self, schema: &str, table: &str, column: &str) -> Option<MaskFn> {
        self.tables
            .get(&(schema.to_owned(), table.to_owned()))?
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, f)| *f)
    }

    fn table_masked(&self, schema: &str, table: &str) -> bool {
        self.tables
            .contains_key(&(schema.to_owned(), table.to_owned()))
    }

    fn name_masked(&self, table: &str) -> bool {
        self.tables.keys().any(|(_, t)| t == table)
    }

    fn tables(&self) -> impl Iterator<Item = &(String, String)> {
        self.tables.keys()
    }

    fn table_names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(|(_, t)| t.as_str())
    }
}

/// What one output column shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPlan {
    /// The column's name as the statement gives it (for `explain`).
    pub name: String,
    /// The `schema.table.column`s it derives from.
    pub sources: Vec<String>,
    /// The mask to apply; None: the value passes.
    pub mask: Option<MaskFn>,
    /// Whether a NULL is masked too: for a value computed from a masked
    /// one, whose NULL-ness can answer a question about it
    /// (`substring(ssn from '^078')`).
    pub mask_nulls: bool,
}

/// The plan of a statement's rows, one entry per output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPlan {
    pub columns: Vec<ColumnPlan>,
}

impl RowPlan {
    pub fn masks_any(&self) -> bool {
        self.columns.iter().any(|c| c.mask.is_some())
    }
}

/// What the relay does with a statement's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementPlan {
    /// Forward rows (if any) byte for byte. `columns`: the lineage, when
    /// traced (for `explain`).
    Pass { columns: Option<Vec<ColumnPlan>> },
    /// Rewrite each DataRow (or COPY row) with this plan.
    Rows(RowPlan),
    /// `DECLARE cursor ...`: FETCH from it later uses `rows` (None: pass).
    Declare {
        cursor: String,
        rows: Option<RowPlan>,
    },
    /// `FETCH ... cursor`: the rows use the plan its DECLARE gave (the
    /// relay remembers it per session; a cursor it does not know is
    /// refused).
    Fetch { cursor: String },
    /// Refuse the statement with this message.
    Refuse(String),
}

/// Plans every statement of `sql` (parsed as PostgreSQL's standard lexer
/// does; a session with other lexer settings passes its own parse to
/// `plan_statement`). A string that does not parse is one refusal.
pub fn plan_sql(sql: &str, role: &Role, cat: &Catalog) -> Vec<StatementPlan> {
    let masks = MaskSet::of(role, cat);
    if masks.is_empty() {
        return vec![StatementPlan::Pass { columns: None }];
    }
    match pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) {
        Ok(parsed) => parsed
            .protobuf
            .stmts
            .iter()
            .map(|s| match &s.stmt {
                Some(n) => plan_statement(n, &masks, cat),
                None => StatementPlan::Pass { columns: None },
            })
            .collect(),
        Err(e) => vec![StatementPlan::Refuse(format!("the parser says: {e}"))],
    }
}

/// Plans one parsed statement (`RawStmt.stmt`) for a role's masks.
pub fn plan_statement(stmt: &Node, masks: &MaskSet, cat: &Catalog) -> StatementPlan {
    if masks.is_empty() {
        return StatementPlan::Pass { columns: None };
    }
    let mut cx = Cx {
        cat,
        masks,
        ctes: Vec::new(),
        views: HashMap::new(),
        depth: 0,
        in_view: false,
        oracles: None,
    };
    match cx.statement(stmt) {
        Ok(p) => p,
        Err(e) => StatementPlan::Refuse(e),
    }
}

type R<T> = Result<T, String>;

/// Named columns with their lineage.
type Cols = Vec<(String, Deps)>;

/// Where a value comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Deps {
    /// Every `schema.table.column` it derives from.
    sources: BTreeSet<String>,
    /// The masked ones among them.
    masked: BTreeSet<String>,
    mask: Option<MaskFn>,
    /// Computed (not the column itself, nor a cast of it to text).
    derived: bool,
}

impl Deps {
    fn column(full: String, mask: Option<MaskFn>) -> Deps {
        let mut d = Deps {
            mask,
            ..Deps::default()
        };
        if mask.is_some() {
            d.masked.insert(full.clone());
        }
        d.sources.insert(full);
        d
    }

    fn add(&mut self, other: Deps) {
        self.sources.extend(other.sources);
        self.masked.extend(other.masked);
        self.derived |= other.derived;
        self.mask = match (self.mask, other.mask) {
            (Some(a), Some(b)) => Some(a.strictest(b)),
            (a, b) => a.or(b),
        };
    }

    fn derive(mut self) -> Deps {
        self.derived = true;
        self
    }

    fn masked_names(&self) -> String {
        self.masked.iter().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Whether equality on this value may be allowed: a masked value only
    /// when it is a `hash`-masked column as stored.
    fn equality_ok(&self) -> bool {
        self.mask.is_none() || (self.mask == Some(MaskFn::Hash) && !self.derived)
    }

    /// What an equality's result keeps: the sources, no mask (it tells
    /// only what `hash` tells).
    fn compared(mut self) -> Deps {
        self.mask = None;
        self.masked.clear();
        self.derived = true;
        self
    }
}

/// An output column: known, or an unknown number of unmasked ones (`*`
/// over a relation whose columns the catalog does not list).
#[derive(Debug, Clone)]
enum Out {
    Col(String, Deps),
    Many,
}

#[derive(Debug, Clone)]
struct Item {
    /// The alias, or the relation's name.
    name: String,
    cols: Option<Vec<(String, Deps)>>,
    /// For a relation whose columns are unknown: its masks by name.
    table: Option<(String, String)>,
    /// What any column of an item with unknown columns derives from.
    opaque: Deps,
}

impl Item {
    fn col(&self, masks: &MaskSet, name: &str) -> Option<Deps> {
        match &self.cols {
            Some(cols) => cols.iter().find(|(n, _)| n == name).map(|(_, d)| d.clone()),
            None => {
                let mut d = self.opaque.clone();
                if let Some((s, t)) = &self.table {
                    d.add(Deps::column(
                        format!("{s}.{t}.{name}"),
                        masks.mask(s, t, name),
                    ));
                }
                Some(d)
            }
        }
    }

    fn sensitive(&self, masks: &MaskSet) -> bool {
        self.opaque.mask.is_some()
            || match &self.cols {
                Some(cols) => cols.iter().any(|(_, d)| d.mask.is_some()),
                None => self
                    .table
                    .as_ref()
                    .is_some_and(|(s, t)| masks.table_masked(s, t)),
            }
    }

    fn star(&self, masks: &MaskSet) -> R<Vec<Out>> {
        match &self.cols {
            Some(cols) => Ok(cols
                .iter()
                .map(|(n, d)| Out::Col(n.clone(), d.clone()))
                .collect()),
            None if self.sensitive(masks) => Err(format!(
                "cannot expand {}.*: pgward does not know its columns and some are masked; name the columns",
                self.name
            )),
            None => Ok(vec![Out::Many]),
        }
    }
}

/// The relations visible at one query level, and the levels around it.
struct Scope<'p> {
    items: Vec<Item>,
    /// What `*` expands to, in order.
    star: Vec<Out>,
    parent: Option<&'p Scope<'p>>,
}

impl Scope<'_> {
    fn any_sensitive(&self, masks: &MaskSet) -> bool {
        self.items.iter().any(|i| i.sensitive(masks))
            || self.parent.is_some_and(|p| p.any_sensitive(masks))
    }
}

struct Cx<'a> {
    cat: &'a Catalog,
    masks: &'a MaskSet,
    /// Visible CTEs, innermost last: name → columns.
    ctes: Vec<(String, Option<Cols>)>,
    /// Views traced so far: (schema, name) → columns.
    views: HashMap<(String, String), R<Cols>>,
    depth: usize,
    /// Tracing a view's definition: its own predicates are the DBA's, not
    /// the client's, and are not probes.
    in_view: bool,
    /// The constraints that compare masked values (computed at the first
    /// write).
    oracles: Option<Vec<Oracle>>,
}

/// A unique or exclusion index or a foreign key that compares the values
/// of a masked column (not `hash`, or `hash` through an expression or an
/// exclusion operator) with written ones: its errors, and ON CONFLICT,
/// answer whether a guessed value is there.
struct Oracle {
    kind: KeyKind,
    names: Vec<String>,
    /// Every `schema.table.column` it involves (both sides of a foreign
    /// key), also under the names of the tables its tables inherit from
    /// or are partitions of (a write to a parent reaches them).
    columns: BTreeSet<String>,
    /// A foreign key's referenced `schema.table`s (and their ancestors):
    /// deleting a row there fails when a row references it.
    referenced: Vec<String>,
    /// The masked column that makes it an oracle.
    masked: String,
}

impl Oracle {
    fn of(k: &KeyConstraint, masks: &MaskSet, cat: &Catalog) -> Option<Oracle> {
        let mut sides = vec![(&k.table, &k.columns)];
        if let Some((t, cols)) = &k.referenced {
            sides.push((t, cols));
        }
        let mut masked = None;
        let mut columns = BTreeSet::new();
        for ((s, t), cols) in &sides {
            let full = format!("{s}.{t}");
            let tables: Vec<String> = std::iter::once(full.clone())
                .chain(cat.ancestors(&full).into_iter().map(str::to_owned))
                .collect();
            for c in cols.iter() {
                for t in &tables {
                    columns.insert(format!("{t}.{c}"));
                }
                if masked.is_some() {
                    continue;
                }
                let Some(m) = masks.mask(s, t, c) else {
                    continue;
                };
                // `hash` shows equality anyway: a key that compares the
                // column as stored for equality tells no more.
                let equality = match k.kind {
                    KeyKind::Unique => k.plain.contains(c),
                    KeyKind::ForeignKey => true,
                    KeyKind::Exclusion => false,
                };
                if m != MaskFn::Hash || !equality {
                    masked = Some(format!("{s}.{t}.{c}"));
                }
            }
        }
        let masked = masked?;
        let referenced = match &k.referenced {
            Some(((s, t), _)) => {
                let full = format!("{s}.{t}");
                std::iter::once(full.clone())
                    .chain(cat.ancestors(&full).into_iter().map(str::to_owned))
                    .collect()
            }
            None => Vec::new(),
        };
        Some(Oracle {
            kind: k.kind,
            names: k.names.clone(),
            columns,
            referenced,
            masked,
        })
    }

    fn what(&self) -> String {
        let name = self.names.first().map(String::as_str).unwrap_or("");
        match self.kind {
            KeyKind::Unique => format!("unique index {name}"),
            KeyKind::Exclusion => format!("exclusion constraint {name}"),
            KeyKind::ForeignKey => format!("foreign key {name}"),
        }
    }

    fn refusal(&self, what: &str, column: &str) -> String {
        format!(
            "{what} would write {column}, which {} compares with the values of masked column {}: its errors (or ON CONFLICT) would answer whether a guessed value is there",
            self.what(),
            self.masked
        )
    }
}

/// Whether `item` is, or reads, table `full` (`schema.table`).
fn touches(item: &Item, full: &str) -> bool {
    if item
        .table
        .as_ref()
        .is_some_and(|(s, t)| format!("{s}.{t}") == full)
    {
        return true;
    }
    let prefix = format!("{full}.");
    let reads = |d: &Deps| d.sources.iter().any(|s| s.starts_with(&prefix));
    reads(&item.opaque) || item.cols.iter().flatten().any(|(_, d)| reads(d))
}

/// Views within views, subqueries within subqueries: deeper is refused.
const MAX_DEPTH: usize = 64;

/// Functions a masked value may flow through: none reveals its argument
/// through an error or a NULL that a NULL argument would not give (the
/// result is masked, NULLs included).
const SAFE_FUNCTIONS: &[&str] = &[
    "upper",
    "lower",
    "initcap",
    "btrim",
    "ltrim",
    "rtrim",
    "concat",
    "concat_ws",
    "textcat",
    "left",
    "right",
    "substr",
    "substring",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "md5",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "quote_literal",
    "quote_nullable",
    "quote_ident",
    "replace",
    "translate",
    "reverse",
    "lpad",
    "rpad",
    "to_json",
    "to_jsonb",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "array_to_string",
    "count",
];

/// Built-ins that run SQL text or read a relation or cursor by name: what
/// they return cannot be traced.
const SQL_RUNNERS: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "xpath_table",
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
    "dblink",
    "dblink_get_result",
    "dblink_fetch",
    "dblink_send_query",
];

/// System views that show sampled column values (planner statistics).
const STATISTICS_VIEWS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
];

/// Types a masked value may be cast to: text types, whose casts never fail.
const TEXT_TYPES: &[&str] = &["text", "varchar", "bpchar", "name", "char", "citext"];

fn sval(n: &Node) -> Option<&str> {
    match &n.node {
        Some(N::String(s)) => Some(&s.sval),
        _ => None,
    }
}

fn names(list: &[Node]) -> Vec<&str> {
    list.iter().filter_map(sval).collect()
}

/// The column names of a list of ResTargets (an INSERT's column list, a
/// SET list).
fn names_of_targets(list: &[Node]) -> Vec<&str> {
    list.iter()
        .filter_map(|t| match &t.node {
            Some(N::ResTarget(rt)) => Some(rt.name.as_str()),
            _ => None,
        })
        .collect()
}

fn is_star(n: &Node) -> bool {
    matches!(&n.node, Some(N::AStar(_)))
}

fn alias_cols(alias: &Option<pb::Alias>) -> Vec<String> {
    alias
        .as_ref()
        .map(|a| names(&a.colnames).into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Renames the first columns as an alias's column list says.
fn rename(cols: &mut [(String, Deps)], names: &[String]) {
    for (c, n) in cols.iter_mut().zip(names) {
        c.0 = n.clone();
    }
}

fn outs_to_cols(outs: Vec<Out>) -> Option<Vec<(String, Deps)>> {
    outs.into_iter()
        .map(|o| match o {
            Out::Col(n, d) => Some((n, d)),
            Out::Many => None,
        })
        .collect()
}

fn union_outs(outs: &[Out]) -> Deps {
    let mut d = Deps::default();
    for o in outs {
        if let Out::Col(_, x) = o {
            d.add(x.clone());
        }
    }
    d
}

impl Cx<'_> {
    fn statement(&mut self, stmt: &Node) -> R<StatementPlan> {
        let Some(node) = &stmt.node else {
            return Ok(StatementPlan::Pass { columns: None });
        };
        let outs = match node {
            N::SelectStmt(s) => {
                let outs = self.select(s, None)?;
                if s.into_clause.is_some() {
                    self.no_copy(&outs, "SELECT INTO")?;
                }
                outs
            }
            N::InsertStmt(_) | N::UpdateStmt(_) | N::DeleteStmt(_) => self.dml(node, None)?,
            N::CopyStmt(c) => {
                if c.is_from {
                    if let Some(rel) = &c.relation {
                        let item = self.relation(rel)?;
                        let wanted = names(&c.attlist);
                        let wanted = if wanted.is_empty() { None } else { Some(wanted) };
                        self.writes("COPY FROM", &item, wanted)?;
                    }
                    return Ok(StatementPlan::Pass { columns: None });
                }
                match (&c.relation, &c.query) {
                    (_, Some(q)) => self.query_outs(q, None)?,
                    (Some(rel), None) => {
                        let item = self.relation(rel)?;
                        let wanted = names(&c.attlist);
                        if wanted.is_empty() {
                            item.star(self.masks)?
                        } else {
                            wanted
                                .iter()
                                .map(|w| {
                                    Out::Col(
                                        (*w).to_owned(),
                                        item.col(self.masks, w).unwrap_or_default(),
                                    )
                                })
                                .collect()
                        }
                    }
                    (None, None) => return Ok(StatementPlan::Pass { columns: None }),
                }
            }
            N::DeclareCursorStmt(d) => {
                let outs = match &d.query {
                    Some(q) => self.query_outs(q, None)?,
                    None => Vec::new(),
                };
                let rows = match Self::finish(outs)? {
                    StatementPlan::Rows(r) => Some(r),
                    _ => None,
                };
                return Ok(StatementPlan::Declare {
                    cursor: d.portalname.clone(),
                    rows,
                });
            }
            N::FetchStmt(f) => {
                return Ok(if f.ismove {
                    StatementPlan::Pass { columns: None }
                } else {
                    StatementPlan::Fetch {
                        cursor: f.portalname.clone(),
                    }
                })
            }
            N::ExplainStmt(e) => {
                // EXPLAIN ANALYZE counts the rows a predicate keeps: the
                // statement explained is judged as if it ran.
                if let Some(q) = &e.query {
                    if let StatementPlan::Refuse(why) = self.statement(q)? {
                        return Err(why);
                    }
                }
                return Ok(StatementPlan::Pass { columns: None });
            }
            N::CreateTableAsStmt(c) => {
                if let Some(q) = &c.query {
                    let outs = self.query_outs(q, None)?;
                    self.no_copy(&outs, "CREATE TABLE AS")?;
                }
                return Ok(StatementPlan::Pass { columns: None });
            }
            N::PrepareStmt(p) => {
                if let Some(q) = &p.query {
                    if let StatementPlan::Refuse(why) = self.statement(q)? {
                        return Err(why);
                    }
                }
                return Ok(StatementPlan::Pass { columns: None });
            }
            N::ExecuteStmt(_) => {
                return Err("EXECUTE of a statement PREPAREd in SQL cannot be traced for a role with masked columns; send the statement itself (or use the protocol's Parse and Bind)".into())
            }
            N::DoStmt(_) => {
                return Err("DO blocks cannot be traced for a role with masked columns (their notices and errors can carry any value)".into())
            }
            N::CallStmt(c) => {
                if let Some(f) = &c.funccall {
                    let sc = Scope {
                        items: Vec::new(),
                        star: Vec::new(),
                        parent: None,
                    };
                    self.func_call(f, &sc)?;
                }
                return Ok(StatementPlan::Pass { columns: None });
            }
            N::MergeStmt(m) => {
                let mut sensitive = false;
                if let Some(rel) = &m.relation {
                    let target = self.relation(rel)?;
                    sensitive |= target.sensitive(self.masks);
                    self.writes("MERGE", &target, None)?;
                    self.deletes("MERGE", &target)?;
                }
                if let Some(src) = &m.source_relation {
                    let sc = self.scope_of(std::slice::from_ref(src.as_ref()), None)?;
                    sensitive |= sc.any_sensitive(self.masks);
                }
                if sensitive {
                    return Err("MERGE involving a table with masked columns cannot be traced; use INSERT, UPDATE or DELETE".into());
                }
                return Ok(StatementPlan::Pass { columns: None });
            }
            N::ViewStmt(v) => {
                // A view the role creates is its own query: the
                // predicates in it are probes (read through the view
                // later, by anyone, they would not be judged again).
                if let Some(q) = &v.query {
                    self.query_outs(q, None)?;
                }
                return Ok(StatementPlan::Pass { columns: None });
            }
            other => {
                self.schema_change(other)?;
                return Ok(StatementPlan::Pass { columns: None });
            }
        };
        Self::finish(outs)
    }

    /// Any other statement: refused when it names a table with masked
    /// columns (renames, constraints, indexes, triggers, rules,
    /// statistics, inheritance: each can drop a mask or answer a question
    /// about the values), when it creates a function whose body may read
    /// one, or a trigger that runs such a function. Locking, vacuuming,
    /// truncating and the like pass.
    fn schema_change(&self, node: &N) -> R<()> {
        if matches!(
            node,
            N::LockStmt(_)
                | N::VacuumStmt(_)
                | N::TruncateStmt(_)
                | N::ClusterStmt(_)
                | N::ReindexStmt(_)
        ) {
            return Ok(());
        }
        // Every field of every node, RangeVars wherever they sit (pg_query's
        // own node walk skips many statement kinds).
        let tree = format!("{node:?}");
        if let Some(t) = self
            .masks
            .table_names()
            .find(|t| tree.contains(&format!("relname: {t:?}")))
        {
            return Err(format!(
                "this statement names table {t} with masked columns, which a role with masks may not change (a rename drops the mask; a constraint, index, trigger or rule can reveal the values)"
            ));
        }
        let too = |what: &str| {
            Err(format!(
                "{what} may read masked columns (it reaches a masked table, also through views and other functions, or runs dynamic SQL), which a role with masks may not create"
            ))
        };
        match node {
            N::CreateFunctionStmt(f) => {
                let text = format!("{f:?}").to_ascii_lowercase();
                if text.contains("execute") || self.text_reaches_masked(&text, &mut Vec::new()) {
                    return too("the function's body");
                }
            }
            N::CreateTrigStmt(t) => {
                let fname = names(&t.funcname);
                let (schema, name) = match fname.as_slice() {
                    [s, n] => (Some(*s), *n),
                    [.., n] => (None, *n),
                    [] => (None, ""),
                };
                let funcs = self.cat.functions(schema, name);
                if funcs.is_empty()
                    || funcs
                        .iter()
                        .any(|f| self.function_reads_masked(f, &mut Vec::new()))
                {
                    return too("the trigger's function");
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(outs: Vec<Out>) -> R<StatementPlan> {
        let masked = outs
            .iter()
            .any(|o| matches!(o, Out::Col(_, d) if d.mask.is_some()));
        let Some(cols) = outs_to_cols(outs) else {
            if masked {
                return Err("cannot place the masked columns among columns pgward does not know (a * over a relation missing from the catalog); name the columns".into());
            }
            return Ok(StatementPlan::Pass { columns: None });
        };
        let columns: Vec<ColumnPlan> = cols
            .into_iter()
            .map(|(name, d)| ColumnPlan {
                name,
                sources: d.sources.into_iter().collect(),
                mask: d.mask.map(|m| if d.derived { m.derived() } else { m }),
                mask_nulls: d.mask.is_some() && d.derived,
            })
            .collect();
        Ok(if masked {
            StatementPlan::Rows(RowPlan { columns })
        } else {
            StatementPlan::Pass {
                columns: Some(columns),
            }
        })
    }

    fn no_copy(&self, outs: &[Out], what: &str) -> R<()> {
        let d = union_outs(outs);
        if d.mask.is_some() {
            return Err(format!(
                "{what} would copy masked column {} unmasked into another table",
                d.masked_names()
            ));
        }
        Ok(())
    }

    fn deeper(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the statement nests too deeply to trace its columns".into());
        }
        Ok(())
    }

    /// The outputs of a query node (SELECT, or a write with RETURNING).
    fn query_outs(&mut self, q: &Node, parent: Option<&Scope>) -> R<Vec<Out>> {
        match &q.node {
            Some(N::SelectStmt(s)) => self.select(s, parent),
            Some(n @ (N::InsertStmt(_) | N::UpdateStmt(_) | N::DeleteStmt(_))) => {
                self.dml(n, parent)
            }
            Some(N::MergeStmt(_)) => Err("MERGE in a subquery cannot be traced".into()),
            _ => Err("a query pgward cannot trace".into()),
        }
    }

    fn with(&mut self, w: &pb::WithClause, parent: Option<&Scope>) -> R<()> {
        for c in &w.ctes {
            let Some(N::CommonTableExpr(cte)) = &c.node else {
                continue;
            };
            let Some(q) = &cte.ctequery else { continue };
            let names: Vec<String> = names(&cte.aliascolnames)
                .into_iter()
                .map(str::to_owned)
                .collect();
            let at = self.ctes.len();
            // A recursive CTE reads itself: trace it until its columns'
            // lineage stops growing.
            self.ctes.push((cte.ctename.clone(), None));
            let mut last: Option<Vec<(String, Deps)>> = None;
            for _ in 0..8 {
                let outs = self.query_outs(q, parent)?;
                let mut cols = outs_to_cols(outs.clone());
                if cols.is_none() && union_outs(&outs).mask.is_some() {
                    return Err(format!(
                        "cannot place the masked columns of WITH {}",
                        cte.ctename
                    ));
                }
                if let Some(cols) = &mut cols {
                    rename(cols, &names);
                }
                let done = cols == last || !(w.recursive || cte.cterecursive);
                self.ctes.truncate(at);
                self.ctes.push((cte.ctename.clone(), cols.clone()));
                last = cols;
                if done {
                    break;
                }
            }
        }
        Ok(())
    }

    fn select(&mut self, s: &pb::SelectStmt, parent: Option<&Scope>) -> R<Vec<Out>> {
        self.deeper()?;
        let at = self.ctes.len();
        let r = (|| {
            if let Some(w) = &s.with_clause {
                self.with(w, parent)?;
            }
            self.select_body(s, parent)
        })();
        self.ctes.truncate(at);
        self.depth -= 1;
        r
    }

    fn select_body(&mut self, s: &pb::SelectStmt, parent: Option<&Scope>) -> R<Vec<Out>> {
        let op = s.op;
        if op > pb::SetOperation::SetopNone as i32 {
            let (Some(l), Some(r)) = (&s.larg, &s.rarg) else {
                return Err("a set operation without two sides".into());
            };
            let l = self.select(l, parent)?;
            let r = self.select(r, parent)?;
            let outs = match (outs_to_cols(l.clone()), outs_to_cols(r.clone())) {
                (Some(mut lc), Some(rc)) => {
                    for (a, b) in lc.iter_mut().zip(rc) {
                        a.1.add(b.1);
                    }
                    lc.into_iter().map(|(n, d)| Out::Col(n, d)).collect()
                }
                _ => {
                    let mut d = union_outs(&l);
                    d.add(union_outs(&r));
                    if d.mask.is_some() {
                        return Err("cannot place the masked columns of a set operation over columns pgward does not know".into());
                    }
                    vec![Out::Many]
                }
            };
            // INTERSECT ALL and EXCEPT ALL compare rows too: only UNION ALL
            // does not.
            if !s.all || op != pb::SetOperation::SetopUnion as i32 {
                for o in &outs {
                    if let Out::Col(_, d) = o {
                        self.group_ok(d, "UNION, INTERSECT or EXCEPT (which compare rows)")?;
                    }
                }
            }
            let sc = Scope {
                items: Vec::new(),
                star: Vec::new(),
                parent,
            };
            for sb in &s.sort_clause {
                self.sort_by(sb, &sc, &outs)?;
            }
            self.limit(s, &sc)?;
            return Ok(outs);
        }
        if !s.values_lists.is_empty() {
            let sc = Scope {
                items: Vec::new(),
                star: Vec::new(),
                parent,
            };
            let mut cols: Vec<Deps> = Vec::new();
            for row in &s.values_lists {
                let exprs: &[Node] = match &row.node {
                    Some(N::List(l)) => &l.items,
                    _ => std::slice::from_ref(row),
                };
                for (i, e) in exprs.iter().enumerate() {
                    let d = self.expr(e, &sc)?;
                    match cols.get_mut(i) {
                        Some(c) => c.add(d),
                        None => cols.push(d),
                    }
                }
            }
            let outs: Vec<Out> = cols
                .into_iter()
                .enumerate()
                .map(|(i, d)| Out::Col(format!("column{}", i + 1), d))
                .collect();
            for sb in &s.sort_clause {
                self.sort_by(sb, &sc, &outs)?;
            }
            return Ok(outs);
        }
        let sc = self.scope_of(&s.from_clause, parent)?;
        let mut outs = Vec::new();
        for t in &s.target_list {
            let Some(N::ResTarget(rt)) = &t.node else {
                continue;
            };
            let Some(val) = &rt.val else { continue };
            if let Some(stars) = self.star_target(val, &sc)? {
                outs.extend(stars);
                continue;
            }
            let d = self.expr(val, &sc)?;
            let name = if rt.name.is_empty() {
                output_name(val)
            } else {
                rt.name.clone()
            };
            outs.push(Out::Col(name, d));
        }
        if let Some(w) = &s.where_clause {
            self.predicate(w, &sc, "WHERE")?;
        }
        for g in &s.group_clause {
            self.group_item(g, &sc, &outs)?;
        }
        if let Some(h) = &s.having_clause {
            self.predicate(h, &sc, "HAVING")?;
        }
        if !s.distinct_clause.is_empty() {
            if s.distinct_clause.iter().all(|n| n.node.is_none()) {
                for o in &outs {
                    if let Out::Col(_, d) = o {
                        self.group_ok(d, "SELECT DISTINCT")?;
                    }
                }
            } else {
                for e in &s.distinct_clause {
                    let d = self.resolve_output(e, &sc, &outs)?;
                    self.group_ok(&d, "DISTINCT ON")?;
                }
            }
        }
        for w in &s.window_clause {
            if let Some(N::WindowDef(wd)) = &w.node {
                self.window(wd, &sc)?;
            }
        }
        for sb in &s.sort_clause {
            self.sort_by(sb, &sc, &outs)?;
        }
        self.limit(s, &sc)?;
        Ok(outs)
    }

    fn limit(&mut self, s: &pb::SelectStmt, sc: &Scope) -> R<()> {
        for l in [&s.limit_count, &s.limit_offset].into_iter().flatten() {
            let d = self.expr(l, sc)?;
            if d.mask.is_some() {
                return Err(format!(
                    "LIMIT or OFFSET computed from masked column {} would reveal it",
                    d.masked_names()
                ));
            }
        }
        Ok(())
    }

    /// `*`, `t.*`, `(t).*` in a target list: their columns.
    fn star_target(&mut self, val: &Node, sc: &Scope) -> R<Option<Vec<Out>>> {
        let fields: Vec<&Node> = match &val.node {
            Some(N::ColumnRef(c)) if c.fields.last().is_some_and(is_star) => {
                c.fields.iter().collect()
            }
            Some(N::AIndirection(ind)) if ind.indirection.last().is_some_and(is_star) => {
                match ind.arg.as_deref().and_then(|a| a.node.as_ref()) {
                    Some(N::ColumnRef(c)) if ind.indirection.len() == 1 => {
                        c.fields.iter().chain(ind.indirection.iter()).collect()
                    }
                    _ => {
                        // (expr).*: the columns of a composite value.
                        let d = match &ind.arg {
                            Some(a) => self.expr(a, sc)?,
                            None => Deps::default(),
                        };
                        if d.mask.is_some() {
                            return Err(format!(
                                "(...).* over a value from masked column {} cannot be traced",
                                d.masked_names()
                            ));
                        }
                        return Ok(Some(vec![Out::Many]));
                    }
                }
            }
            _ => return Ok(None),
        };
        if fields.len() == 1 {
            return Ok(Some(sc.star.clone()));
        }
        let qual = names(
            &fields[..fields.len() - 1]
                .iter()
                .map(|n| (*n).clone())
                .collect::<Vec<_>>(),
        )
        .last()
        .map(|s| (*s).to_owned())
        .unwrap_or_default();
        match self.find_item(sc, &qual) {
            Some(item) => Ok(Some(item.star(self.masks)?)),
            None => Ok(Some(vec![Out::Many])),
        }
    }

    fn find_item<'s>(&self, sc: &'s Scope, name: &str) -> Option<&'s Item> {
        let mut level = Some(sc);
        while let Some(l) = level {
            if let Some(i) = l.items.iter().rev().find(|i| i.name == name) {
                return Some(i);
            }
            level = l.parent;
        }
        None
    }

    fn scope_of<'p>(&mut self, from: &[Node], parent: Option<&'p Scope<'p>>) -> R<Scope<'p>> {
        let mut sc = Scope {
            items: Vec::new(),
            star: Vec::new(),
            parent,
        };
        for f in from {
            let (items, star) = self.range_item(f, &sc)?;
            sc.items.extend(items);
            sc.star.extend(star);
        }
        Ok(sc)
    }

    /// One FROM item: the relations it makes visible, and its `*`.
    fn range_item(&mut self, f: &Node, sc: &Scope) -> R<(Vec<Item>, Vec<Out>)> {
        match &f.node {
            Some(N::RangeVar(rv)) => {
                let item = self.relation(rv)?;
                let star = item.star(self.masks).unwrap_or_else(|_| vec![Out::Many]);
                Ok((vec![item], star))
            }
            Some(N::RangeSubselect(rs)) => {
                let Some(q) = &rs.subquery else {
                    return Err("a subquery without a query".into());
                };
                // LATERAL sees the items before it; otherwise only the
                // enclosing levels (a superset is harmless for lineage).
                let outs = self.query_outs(q, Some(sc))?;
                let name = rs
                    .alias
                    .as_ref()
                    .map(|a| a.aliasname.clone())
                    .unwrap_or_default();
                let item = self.item_of_outs(name, outs, &alias_cols(&rs.alias))?;
                let star = item.star(self.masks)?;
                Ok((vec![item], star))
            }
            Some(N::RangeFunction(rf)) => {
                let mut d = Deps::default();
                for fnode in &rf.functions {
                    let exprs: &[Node] = match &fnode.node {
                        Some(N::List(l)) => &l.items,
                        _ => std::slice::from_ref(fnode),
                    };
                    for e in exprs {
                        d.add(self.expr(e, sc)?);
                    }
                }
                if d.mask.is_some() {
                    d.derived = true;
                }
                let name = rf
                    .alias
                    .as_ref()
                    .map(|a| a.aliasname.clone())
                    .or_else(|| {
                        rf.functions.first().and_then(|fnode| match &fnode.node {
                            Some(N::List(l)) => l.items.first().and_then(|n| match &n.node {
                                Some(N::FuncCall(fc)) => {
                                    names(&fc.funcname).last().map(|s| (*s).to_owned())
                                }
                                _ => None,
                            }),
                            _ => None,
                        })
                    })
                    .unwrap_or_default();
                let item = Item {
                    name,
                    cols: None,
                    table: None,
                    opaque: d.clone(),
                };
                if d.mask.is_some() {
                    return Err(format!(
                        "a set-returning function over masked column {} cannot be traced",
                        d.masked_names()
                    ));
                }
                Ok((vec![item], vec![Out::Many]))
            }
            Some(N::JoinExpr(j)) => self.join(j, sc),
            Some(N::RangeTableSample(ts)) => match &ts.relation {
                Some(r) => self.range_item(r, sc),
                None => Err("TABLESAMPLE without a relation".into()),
            },
            _ => {
                if self.masks.is_empty() {
                    return Ok((Vec::new(), vec![Out::Many]));
                }
                Err("a FROM item pgward cannot trace (XMLTABLE, JSON_TABLE, ...) in a statement of a role with masked columns".into())
            }
        }
    }

    fn join(&mut self, j: &pb::JoinExpr, sc: &Scope) -> R<(Vec<Item>, Vec<Out>)> {
        let (Some(l), Some(r)) = (&j.larg, &j.rarg) else {
            return Err("a join without two sides".into());
        };
        let (mut items, lstar) = self.range_item(l, sc)?;
        let (ritems, rstar) = self.range_item(r, sc)?;
        items.extend(ritems);
        let mut using: Vec<String> = names(&j.using_clause)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let lcols = outs_to_cols(lstar.clone());
        let rcols = outs_to_cols(rstar.clone());
        if j.is_natural {
            match (&lcols, &rcols) {
                (Some(lc), Some(rc)) => {
                    using = lc
                        .iter()
                        .filter(|(n, _)| rc.iter().any(|(m, _)| m == n))
                        .map(|(n, _)| n.clone())
                        .collect();
                }
                _ => {
                    if items.iter().any(|i| i.sensitive(self.masks)) {
                        return Err("a NATURAL JOIN over a relation whose columns pgward does not know, with masked columns; join with ON or USING".into());
                    }
                }
            }
        }
        let star = match (lcols, rcols) {
            (Some(lc), Some(rc)) if !using.is_empty() => {
                let mut star = Vec::new();
                for u in &using {
                    let mut d = lc
                        .iter()
                        .find(|(n, _)| n == u)
                        .map(|(_, d)| d.clone())
                        .unwrap_or_default();
                    let rd = rc
                        .iter()
                        .find(|(n, _)| n == u)
                        .map(|(_, d)| d.clone())
                        .unwrap_or_default();
                    self.equality(&d, &rd, "JOIN USING")?;
                    d.add(rd);
                    star.push(Out::Col(u.clone(), d));
                }
                for (n, d) in lc.into_iter().chain(rc) {
                    if !using.contains(&n) {
                        star.push(Out::Col(n, d));
                    }
                }
                star
            }
            _ if !using.is_empty() => {
                if items.iter().any(|i| i.sensitive(self.masks)) {
                    return Err("a JOIN USING over a relation whose columns pgward does not know, with masked columns; join with ON".into());
                }
                vec![Out::Many]
            }
            _ => lstar.into_iter().chain(rstar).collect(),
        };
        if let Some(q) = &j.quals {
            let jsc = Scope {
                items: items.clone(),
                star: Vec::new(),
                parent: Some(sc),
            };
            self.predicate(q, &jsc, "JOIN ON")?;
        }
        if let Some(a) = &j.alias {
            let item =
                self.item_of_outs(a.aliasname.clone(), star.clone(), &alias_cols(&j.alias))?;
            items.push(item);
        }
        if let Some(a) = &j.join_using_alias {
            let cols: Vec<Out> = star
                .iter()
                .filter(|o| matches!(o, Out::Col(n, _) if using.contains(n)))
                .cloned()
                .collect();
            items.push(self.item_of_outs(a.aliasname.clone(), cols, &[])?);
        }
        Ok((items, star))
    }

    fn item_of_outs(&self, name: String, outs: Vec<Out>, rename_to: &[String]) -> R<Item> {
        let opaque = union_outs(&outs);
        Ok(match outs_to_cols(outs) {
            Some(mut cols) => {
                rename(&mut cols, rename_to);
                Item {
                    name,
                    cols: Some(cols),
                    table: None,
                    opaque: Deps::default(),
                }
            }
            None => Item {
                name,
                cols: None,
                table: None,
                opaque,
            },
        })
    }

    /// A relation named in FROM (or a write's target): a CTE, a view
    /// (traced through its definition), or a table.
    fn relation(&mut self, rv: &pb::RangeVar) -> R<Item> {
        let alias = rv.alias.as_ref().map(|a| a.aliasname.clone());
        let name = alias.clone().unwrap_or_else(|| rv.relname.clone());
        let renames = alias_cols(&rv.alias);
        if rv.schemaname.is_empty() {
            if let Some((_, cols)) = self.ctes.iter().rev().find(|(n, _)| *n == rv.relname) {
                let mut cols = cols.clone();
                if let Some(c) = &mut cols {
                    rename(c, &renames);
                }
                return Ok(Item {
                    name,
                    cols,
                    table: None,
                    opaque: Deps::default(),
                });
            }
        }
        if STATISTICS_VIEWS.contains(&rv.relname.as_str())
            && (rv.schemaname.is_empty() || rv.schemaname == "pg_catalog")
        {
            return Err(format!(
                "{} shows sampled column values (planner statistics), masked columns' included",
                rv.relname
            ));
        }
        let schemas: Vec<String> = if rv.schemaname.is_empty() {
            match self.cat.relation_schemas(&rv.relname) {
                Some(s) => s.into_iter().map(str::to_owned).collect(),
                None => {
                    if self.masks.name_masked(&rv.relname) {
                        return Err(format!(
                            "relation {} is not in the catalog pgward holds, and a table of that name has masked columns",
                            rv.relname
                        ));
                    }
                    return Ok(Item {
                        name,
                        cols: None,
                        table: None,
                        opaque: Deps::default(),
                    });
                }
            }
        } else {
            vec![rv.schemaname.clone()]
        };
        let mut found: Vec<Item> = Vec::new();
        for s in &schemas {
            found.push(self.relation_in(s, &rv.relname, name.clone())?);
        }
        let sensitive = found.iter().filter(|i| i.sensitive(self.masks)).count();
        if found.len() > 1 && sensitive > 0 {
            return Err(format!(
                "{} names relations in several schemas ({}), one with masked columns, and the session's search_path picks one: qualify it",
                rv.relname,
                schemas.join(", ")
            ));
        }
        let mut item = found.pop().unwrap_or(Item {
            name,
            cols: None,
            table: None,
            opaque: Deps::default(),
        });
        if let Some(c) = &mut item.cols {
            rename(c, &renames);
        }
        Ok(item)
    }

    fn relation_in(&mut self, schema: &str, rel: &str, name: String) -> R<Item> {
        if let Some(def) = self.cat.view_definition(schema, rel) {
            let cols = self.view(schema, rel, def.to_owned())?;
            return Ok(Item {
                name,
                cols: Some(cols),
                table: None,
                opaque: Deps::default(),
            });
        }
        let cols = self.cat.columns(schema, rel).map(|cols| {
            cols.iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        Deps::column(
                            format!("{schema}.{rel}.{}", c.name),
                            self.masks.mask(schema, rel, &c.name),
                        ),
                    )
                })
                .collect()
        });
        Ok(Item {
            name,
            cols,
            table: Some((schema.to_owned(), rel.to_owned())),
            opaque: Deps::default(),
        })
    }

    fn view(&mut self, schema: &str, rel: &str, def: String) -> R<Vec<(String, Deps)>> {
        let key = (schema.to_owned(), rel.to_owned());
        if let Some(r) = self.views.get(&key) {
            return r.clone();
        }
        // A view reading itself cannot be; a cycle is refused, not looped.
        self.views.insert(
            key.clone(),
            Err(format!("view {schema}.{rel} refers to itself")),
        );
        let r = self.view_uncached(schema, rel, &def);
        self.views.insert(key, r.clone());
        r
    }

    fn view_uncached(&mut self, schema: &str, rel: &str, def: &str) -> R<Vec<(String, Deps)>> {
        if unread_at_load(def) {
            return Err(format!(
                "view {schema}.{rel}: pgward could not read its definition when it last loaded the catalog (the relations it names were locked), so what it shows cannot be traced until a later load reads it"
            ));
        }
        let parsed = pg_query::parse(def, pg_query::ParserOptions::DEFAULT)
            .map_err(|e| format!("view {schema}.{rel}: its definition does not parse: {e}"))?;
        let Some(Some(q)) = parsed.protobuf.stmts.first().map(|s| s.stmt.as_deref()) else {
            return Err(format!("view {schema}.{rel} has an empty definition"));
        };
        let saved = (std::mem::take(&mut self.ctes), self.in_view);
        self.in_view = true;
        let outs = self.query_outs(q, None);
        self.ctes = saved.0;
        self.in_view = saved.1;
        let outs = outs.map_err(|e| format!("view {schema}.{rel}: {e}"))?;
        let mut cols = outs_to_cols(outs.clone())
            .ok_or_else(|| format!("view {schema}.{rel}: its columns cannot be placed"))?;
        if let Some(names) = self.cat.columns(schema, rel) {
            for (c, n) in cols.iter_mut().zip(names) {
                c.0 = n.name.clone();
            }
        }
        Ok(cols)
    }

    /// INSERT, UPDATE, DELETE: their RETURNING columns; refused when a
    /// masked value would be copied into another column.
    fn dml(&mut self, node: &N, parent: Option<&Scope>) -> R<Vec<Out>> {
        self.deeper()?;
        let at = self.ctes.len();
        let r = self.dml_body(node, parent);
        self.ctes.truncate(at);
        self.depth -= 1;
        r
    }

    fn dml_body(&mut self, node: &N, parent: Option<&Scope>) -> R<Vec<Out>> {
        let (with, rel, returning) = match node {
            N::InsertStmt(i) => (&i.with_clause, &i.relation, &i.returning_clause),
            N::UpdateStmt(u) => (&u.with_clause, &u.relation, &u.returning_clause),
            N::DeleteStmt(d) => (&d.with_clause, &d.relation, &d.returning_clause),
            _ => return Err("not a write".into()),
        };
        if let Some(w) = with {
            self.with(w, parent)?;
        }
        let Some(rel) = rel else {
            return Err("a write without a table".into());
        };
        let target = self.relation(rel)?;
        let mut sc = Scope {
            items: vec![target.clone()],
            star: target.star(self.masks).unwrap_or_else(|_| vec![Out::Many]),
            parent,
        };
        match node {
            N::InsertStmt(i) => {
                if i.select_stmt.is_some() {
                    let cols = names_of_targets(&i.cols);
                    let cols = if cols.is_empty() { None } else { Some(cols) };
                    self.writes("INSERT", &target, cols)?;
                }
                if let Some(q) = &i.select_stmt {
                    let outs = self.query_outs(q, parent)?;
                    let d = union_outs(&outs);
                    if d.mask.is_some() {
                        return Err(format!(
                            "INSERT would copy masked column {} into {}",
                            d.masked_names(),
                            rel.relname
                        ));
                    }
                }
                if let Some(oc) = &i.on_conflict_clause {
                    let mut csc = Scope {
                        items: vec![target.clone()],
                        star: Vec::new(),
                        parent,
                    };
                    csc.items.push(Item {
                        name: "excluded".into(),
                        cols: None,
                        table: None,
                        opaque: Deps::default(),
                    });
                    self.arbiter(oc, &target)?;
                    self.writes(
                        "ON CONFLICT DO UPDATE",
                        &target,
                        Some(names_of_targets(&oc.target_list)),
                    )?;
                    self.assignments(&oc.target_list, &csc, &target, &rel.relname)?;
                    if let Some(w) = &oc.where_clause {
                        self.predicate(w, &csc, "ON CONFLICT ... WHERE")?;
                    }
                }
            }
            N::UpdateStmt(u) => {
                for f in &u.from_clause {
                    let (items, star) = self.range_item(f, &sc)?;
                    sc.items.extend(items);
                    sc.star.extend(star);
                }
                self.writes("UPDATE", &target, Some(names_of_targets(&u.target_list)))?;
                self.assignments(&u.target_list, &sc, &target, &rel.relname)?;
                if let Some(w) = &u.where_clause {
                    self.predicate(w, &sc, "WHERE")?;
                }
            }
            N::DeleteStmt(d) => {
                self.deletes("DELETE", &target)?;
                for f in &d.using_clause {
                    let (items, star) = self.range_item(f, &sc)?;
                    sc.items.extend(items);
                    sc.star.extend(star);
                }
                if let Some(w) = &d.where_clause {
                    self.predicate(w, &sc, "WHERE")?;
                }
            }
            _ => {}
        }
        let mut outs = Vec::new();
        if let Some(ret) = returning {
            // RETURNING shows the target's rows (and in an UPDATE or
            // DELETE the FROM/USING items'): traced like a target list.
            for t in &ret.exprs {
                let Some(N::ResTarget(rt)) = &t.node else {
                    continue;
                };
                let Some(val) = &rt.val else { continue };
                if let Some(stars) = self.star_target(val, &sc)? {
                    outs.extend(stars);
                    continue;
                }
                let d = self.expr(val, &sc)?;
                let name = if rt.name.is_empty() {
                    output_name(val)
                } else {
                    rt.name.clone()
                };
                outs.push(Out::Col(name, d));
            }
        }
        Ok(outs)
    }

    /// `SET col = expr`: a masked value may only be written back into
    /// the column it came from.
    fn assignments(&mut self, list: &[Node], sc: &Scope, target: &Item, table: &str) -> R<()> {
        for t in list {
            let Some(N::ResTarget(rt)) = &t.node else {
                continue;
            };
            let Some(val) = &rt.val else { continue };
            let d = match &val.node {
                Some(N::MultiAssignRef(m)) => match &m.source {
                    Some(src) => self.expr(src, sc)?,
                    None => Deps::default(),
                },
                _ => self.expr(val, sc)?,
            };
            if d.mask.is_none() {
                continue;
            }
            let own = target
                .col(self.masks, &rt.name)
                .map(|c| c.masked)
                .unwrap_or_default();
            if !d.masked.iter().all(|m| own.contains(m)) || rt.name.is_empty() {
                return Err(format!(
                    "UPDATE would copy masked column {} into {table}.{}",
                    d.masked_names(),
                    rt.name
                ));
            }
        }
        Ok(())
    }

    // ---- constraints that compare written values with masked ones ----

    fn oracles(&mut self) -> &[Oracle] {
        let (masks, cat) = (self.masks, self.cat);
        self.oracles.get_or_insert_with(|| {
            let mut seen: Vec<*const KeyConstraint> = Vec::new();
            let mut out = Vec::new();
            for (s, t) in masks.tables() {
                for k in cat.key_constraints(s, t) {
                    let ptr = std::sync::Arc::as_ptr(k);
                    if seen.contains(&ptr) {
                        continue;
                    }
                    seen.push(ptr);
                    out.extend(Oracle::of(k, masks, cat));
                }
            }
            out
        })
    }

    /// A write (`what`) of the columns `names` of `target` (None: all of
    /// them): refused when one is a column of a constraint that compares
    /// masked values.
    fn writes(&mut self, what: &str, target: &Item, names: Option<Vec<&str>>) -> R<()> {
        let mut sources = BTreeSet::new();
        match names {
            Some(names) => {
                for n in names {
                    if let Some(d) = target.col(self.masks, n) {
                        sources.extend(d.sources);
                    }
                }
            }
            None => {
                sources.extend(target.opaque.sources.iter().cloned());
                for (_, d) in target.cols.iter().flatten() {
                    sources.extend(d.sources.iter().cloned());
                }
                if let (None, Some((s, t))) = (&target.cols, &target.table) {
                    // Columns pgward does not know: any of the table's.
                    let full = format!("{s}.{t}");
                    if let Some(o) = self.oracles().iter().find(|o| {
                        o.columns
                            .iter()
                            .any(|c| c.strip_prefix(&full).is_some_and(|r| r.starts_with('.')))
                    }) {
                        return Err(o.refusal(what, &full));
                    }
                }
            }
        }
        for src in &sources {
            if let Some(o) = self.oracles().iter().find(|o| o.columns.contains(src)) {
                return Err(o.refusal(what, src));
            }
        }
        Ok(())
    }

    /// DELETE (or MERGE) from `target`: refused when a foreign key that
    /// compares masked values references it (the delete fails, or not,
    /// by whether a row holds the value).
    fn deletes(&mut self, what: &str, target: &Item) -> R<()> {
        if let Some(o) = self
            .oracles()
            .iter()
            .find(|o| o.referenced.iter().any(|t| touches(target, t)))
        {
            return Err(format!(
                "{what} from a table that {} references: it fails, or not, by whether a row holds the value, and masked column {} is on one side",
                o.what(),
                o.masked
            ));
        }
        Ok(())
    }

    /// INSERT ... ON CONFLICT: refused when its arbiter may be a unique or
    /// exclusion index that compares masked values (whether it conflicts
    /// answers whether the value is there). No conflict target: every
    /// such index of the table is an arbiter.
    fn arbiter(&mut self, oc: &pb::OnConflictClause, target: &Item) -> R<()> {
        let key = |o: &&Oracle| o.kind != KeyKind::ForeignKey;
        let on_target = |o: &&Oracle| {
            o.columns
                .iter()
                .any(|c| c.rsplit_once('.').is_some_and(|(t, _)| touches(target, t)))
        };
        let refuse = |o: &Oracle| {
            Err(format!(
                "ON CONFLICT may use {} as its arbiter, which compares the values of masked column {}: whether a row conflicts would answer whether a guessed value is there",
                o.what(),
                o.masked
            ))
        };
        let infer = match &oc.infer {
            Some(i) => i,
            None => {
                if let Some(o) = self.oracles().iter().filter(key).find(on_target) {
                    return refuse(o);
                }
                return Ok(());
            }
        };
        if !infer.conname.is_empty() {
            let named = |o: &&Oracle| o.names.contains(&infer.conname);
            if let Some(o) = self.oracles().iter().filter(key).find(named) {
                return refuse(o);
            }
            let known = target.table.as_ref().is_some_and(|(s, t)| {
                self.cat
                    .key_constraints(s, t)
                    .iter()
                    .any(|k| k.names.contains(&infer.conname))
            });
            if !known {
                if let Some(o) = self.oracles().iter().filter(key).find(on_target) {
                    return refuse(o);
                }
            }
            return Ok(());
        }
        let sc = Scope {
            items: vec![target.clone()],
            star: Vec::new(),
            parent: None,
        };
        let mut sources = BTreeSet::new();
        for e in &infer.index_elems {
            let Some(N::IndexElem(ie)) = &e.node else {
                continue;
            };
            if !ie.name.is_empty() {
                match target.col(self.masks, &ie.name) {
                    Some(d) => sources.extend(d.sources),
                    None => {
                        return Err(format!(
                            "ON CONFLICT names column {}, which pgward cannot place",
                            ie.name
                        ))
                    }
                }
            }
            if let Some(x) = &ie.expr {
                sources.extend(self.expr(x, &sc)?.sources);
            }
        }
        if let Some(w) = &infer.where_clause {
            sources.extend(self.expr(w, &sc)?.sources);
        }
        for src in &sources {
            if let Some(o) = self
                .oracles()
                .iter()
                .filter(key)
                .find(|o| o.columns.contains(src))
            {
                return refuse(o);
            }
        }
        Ok(())
    }

    // ---- contexts that compare values ----

    fn predicate(&mut self, e: &Node, sc: &Scope, what: &str) -> R<()> {
        let d = self.expr(e, sc)?;
        if d.mask.is_some() && !self.in_view {
            return Err(format!(
                "{what} tests masked column {}, which would reveal it",
                d.masked_names()
            ));
        }
        Ok(())
    }

    /// Grouping and DISTINCT compare values for equality: allowed on a
    /// `hash`-masked column, whose equal values mask equal.
    fn group_ok(&self, d: &Deps, what: &str) -> R<()> {
        if d.equality_ok() || self.in_view {
            return Ok(());
        }
        Err(format!(
            "{what} over masked column {} would reveal which values are equal (allowed only for hash masks)",
            d.masked_names()
        ))
    }

    fn order_ok(&self, d: &Deps, what: &str) -> R<()> {
        if d.mask.is_none() || self.in_view {
            return Ok(());
        }
        Err(format!(
            "{what} over masked column {} would reveal the order of its values",
            d.masked_names()
        ))
    }

    fn equality(&self, a: &Deps, b: &Deps, what: &str) -> R<()> {
        if (a.equality_ok() && b.equality_ok()) || self.in_view {
            return Ok(());
        }
        let mut d = a.clone();
        d.add(b.clone());
        Err(format!(
            "{what} compares masked column {}, which would reveal it (only a hash-masked column may be compared, for equality)",
            d.masked_names()
        ))
    }

    /// An ORDER BY / GROUP BY / DISTINCT ON item: an output's name or
    /// position, or an expression.
    fn resolve_output(&mut self, e: &Node, sc: &Scope, outs: &[Out]) -> R<Deps> {
        match &e.node {
            Some(N::AConst(c)) => {
                if let Some(pb::a_const::Val::Ival(i)) = &c.val {
                    let at = usize::try_from(i.ival).unwrap_or(0);
                    return match outs.get(at.wrapping_sub(1)) {
                        Some(Out::Col(_, d)) => Ok(d.clone()),
                        Some(Out::Many) | None => {
                            let d = union_outs(outs);
                            Ok(d)
                        }
                    };
                }
                Ok(Deps::default())
            }
            Some(N::ColumnRef(c)) if c.fields.len() == 1 => {
                if let Some(name) = c.fields.first().and_then(sval) {
                    // An input column of that name wins in GROUP BY, an
                    // output in ORDER BY: take both.
                    let mut d = Deps::default();
                    let mut hit = false;
                    for o in outs {
                        if let Out::Col(n, od) = o {
                            if n == name {
                                d.add(od.clone());
                                hit = true;
                            }
                        }
                    }
                    if let Ok(x) = self.expr(e, sc) {
                        d.add(x);
                        hit = true;
                    }
                    if hit {
                        return Ok(d);
                    }
                }
                self.expr(e, sc)
            }
            _ => self.expr(e, sc),
        }
    }

    fn sort_by(&mut self, sb: &Node, sc: &Scope, outs: &[Out]) -> R<()> {
        let Some(N::SortBy(s)) = &sb.node else {
            return Ok(());
        };
        if let Some(n) = &s.node {
            let d = self.resolve_output(n, sc, outs)?;
            self.order_ok(&d, "ORDER BY")?;
        }
        Ok(())
    }

    fn group_item(&mut self, g: &Node, sc: &Scope, outs: &[Out]) -> R<()> {
        match &g.node {
            Some(N::GroupingSet(gs)) => {
                for c in &gs.content {
                    self.group_item(c, sc, outs)?;
                }
                Ok(())
            }
            Some(N::List(l)) => {
                for c in &l.items {
                    self.group_item(c, sc, outs)?;
                }
                Ok(())
            }
            _ => {
                let d = self.resolve_output(g, sc, outs)?;
                self.group_ok(&d, "GROUP BY")
            }
        }
    }

    fn window(&mut self, w: &pb::WindowDef, sc: &Scope) -> R<()> {
        for p in &w.partition_clause {
            let d = self.expr(p, sc)?;
            self.group_ok(&d, "a window's PARTITION BY")?;
        }
        for o in &w.order_clause {
            if let Some(N::SortBy(s)) = &o.node {
                if let Some(n) = &s.node {
                    let d = self.expr(n, sc)?;
                    self.order_ok(&d, "a window's ORDER BY")?;
                }
            }
        }
        for b in [&w.start_offset, &w.end_offset].into_iter().flatten() {
            let d = self.expr(b, sc)?;
            self.order_ok(&d, "a window frame")?;
        }
        Ok(())
    }

    // ---- expressions ----

    fn exprs(&mut self, list: &[Node], sc: &Scope) -> R<Deps> {
        let mut d = Deps::default();
        for e in list {
            d.add(self.expr(e, sc)?);
        }
        Ok(d)
    }

    fn opt(&mut self, e: &Option<Box<Node>>, sc: &Scope) -> R<Deps> {
        match e {
            Some(e) => self.expr(e, sc),
            None => Ok(Deps::default()),
        }
    }

    fn expr(&mut self, e: &Node, sc: &Scope) -> R<Deps> {
        let Some(node) = &e.node else {
            return Ok(Deps::default());
        };
        match node {
            N::ColumnRef(c) => self.column_ref(&c.fields, sc),
            N::AConst(_) | N::ParamRef(_) | N::SqlvalueFunction(_) | N::SetToDefault(_) => {
                Ok(Deps::default())
            }
            N::TypeCast(tc) => {
                let d = self.opt(&tc.arg, sc)?;
                if d.mask.is_some() {
                    let ty = tc
                        .type_name
                        .as_ref()
                        .and_then(|t| names(&t.names).last().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    let array = tc
                        .type_name
                        .as_ref()
                        .is_some_and(|t| !t.array_bounds.is_empty());
                    if array
                        || !TEXT_TYPES.contains(&ty.as_str())
                        || !self.cat.type_functions(None, &ty).is_empty()
                    {
                        return Err(format!(
                            "a cast of masked column {} to {ty} can fail on its value and reveal it; cast to text, or leave it",
                            d.masked_names()
                        ));
                    }
                }
                Ok(d)
            }
            N::CollateClause(c) => self.opt(&c.arg, sc),
            N::FuncCall(f) => self.func_call(f, sc),
            N::AExpr(a) => self.a_expr(a, sc),
            N::BoolExpr(b) => Ok(self.exprs(&b.args, sc)?.derive()),
            N::NullTest(t) => {
                let d = self.opt(&t.arg, sc)?;
                if d.mask.is_some() && d.derived {
                    return Err(format!(
                        "IS NULL of a value computed from masked column {} would reveal it",
                        d.masked_names()
                    ));
                }
                Ok(d.compared())
            }
            N::BooleanTest(t) => {
                let d = self.opt(&t.arg, sc)?;
                if d.mask.is_some() {
                    return Err(format!(
                        "IS TRUE/FALSE tests masked column {}",
                        d.masked_names()
                    ));
                }
                Ok(d.derive())
            }
            N::CaseExpr(c) => {
                let arg = self.opt(&c.arg, sc)?;
                let mut d = Deps::default();
                for w in &c.args {
                    let Some(N::CaseWhen(cw)) = &w.node else {
                        continue;
                    };
                    let cond = self.opt(&cw.expr, sc)?;
                    if c.arg.is_some() {
                        self.equality(&arg, &cond, "CASE")?;
                    } else if cond.mask.is_some() && !self.in_view {
                        return Err(format!(
                            "a CASE condition tests masked column {}, which would reveal it",
                            cond.masked_names()
                        ));
                    }
                    d.add(cond.compared());
                    d.add(self.opt(&cw.result, sc)?);
                }
                d.add(arg.compared());
                d.add(self.opt(&c.defresult, sc)?);
                Ok(d.derive())
            }
            N::CoalesceExpr(c) => Ok(self.exprs(&c.args, sc)?.derive()),
            N::MinMaxExpr(m) => {
                let d = self.exprs(&m.args, sc)?;
                self.order_ok(&d, "GREATEST/LEAST")?;
                Ok(d.derive())
            }
            N::SubLink(s) => self.sublink(s, sc),
            N::AArrayExpr(a) => Ok(self.exprs(&a.elements, sc)?.derive()),
            N::RowExpr(r) => {
                let d = self.exprs(&r.args, sc)?;
                if d.mask.is_some() {
                    return Err(format!(
                        "a row value holding masked column {} cannot be masked inside; select the columns",
                        d.masked_names()
                    ));
                }
                Ok(d.derive())
            }
            N::AIndirection(ind) => self.indirection(ind, sc),
            N::GroupingFunc(g) => Ok(self.exprs(&g.args, sc)?.compared()),
            N::List(l) => self.exprs(&l.items, sc),
            N::ResTarget(rt) => self.opt(&rt.val, sc),
            other => {
                if sc.any_sensitive(self.masks) {
                    let name = format!("{other:?}");
                    let kind = name.split('(').next().unwrap_or("expression");
                    return Err(format!(
                        "pgward cannot trace a {kind} expression over a relation with masked columns"
                    ));
                }
                Ok(Deps::default())
            }
        }
    }

    fn column_ref(&mut self, fields: &[Node], sc: &Scope) -> R<Deps> {
        if fields.last().is_some_and(is_star) {
            // t.* inside an expression: the whole row.
            let qual = names(&fields[..fields.len() - 1]);
            return match qual.last() {
                Some(q) => self.whole_row(sc, q),
                None => {
                    let d = union_outs(&sc.star);
                    if d.mask.is_some() || sc.items.iter().any(|i| i.sensitive(self.masks)) {
                        return Err("* inside an expression makes a row value of masked columns; select the columns".into());
                    }
                    Ok(d)
                }
            };
        }
        let parts = names(fields);
        match parts.as_slice() {
            [col] => {
                let mut level = Some(sc);
                while let Some(l) = level {
                    let mut d = Deps::default();
                    let mut hit = false;
                    for i in &l.items {
                        if i.cols.is_some() {
                            if let Some(x) = i.col(self.masks, col) {
                                d.add(x);
                                hit = true;
                            }
                        }
                    }
                    // Items whose columns are unknown may hold it too.
                    let unknown: Vec<&Item> = l.items.iter().filter(|i| i.cols.is_none()).collect();
                    if !hit || unknown.iter().any(|i| i.table.is_some()) {
                        for i in &unknown {
                            if let Some(x) = i.col(self.masks, col) {
                                if x.mask.is_some() || !x.sources.is_empty() || !hit {
                                    d.add(x);
                                }
                            }
                        }
                        hit |= !unknown.is_empty();
                    }
                    if hit {
                        return Ok(d);
                    }
                    if l.items.iter().any(|i| i.name == *col) {
                        return self.whole_row(sc, col);
                    }
                    level = l.parent;
                }
                Ok(Deps::default())
            }
            [.., qual, col] => {
                let Some(item) = self.find_item(sc, qual) else {
                    return Ok(Deps::default());
                };
                match item.col(self.masks, col) {
                    Some(d) => Ok(d),
                    // No such column: attribute notation, a call of
                    // function `col` with the whole row.
                    None => {
                        let d = self.whole_row(sc, qual)?;
                        self.function_allowed(None, col, &d, false)?;
                        Ok(d.derive())
                    }
                }
            }
            [] => Ok(Deps::default()),
        }
    }

    fn whole_row(&self, sc: &Scope, name: &str) -> R<Deps> {
        let Some(item) = self.find_item(sc, name) else {
            return Ok(Deps::default());
        };
        if item.sensitive(self.masks) {
            return Err(format!(
                "{name} is used as a whole-row value, and {name} has masked columns: select its columns (or {name}.*) instead"
            ));
        }
        let mut d = item.opaque.clone();
        for (_, c) in item.cols.iter().flatten() {
            d.add(c.clone());
        }
        Ok(d.derive())
    }

    fn indirection(&mut self, ind: &pb::AIndirection, sc: &Scope) -> R<Deps> {
        // (c).email: a field of a whole-row reference is that column.
        if let (Some(N::ColumnRef(c)), Some(first)) = (
            ind.arg.as_deref().and_then(|a| a.node.as_ref()),
            ind.indirection.first(),
        ) {
            if let (Some(field), false) = (sval(first), c.fields.last().is_some_and(is_star)) {
                let qual = names(&c.fields);
                if let Some(q) = qual.last() {
                    if let Some(item) = self.find_item(sc, q) {
                        if let Some(d) = item.col(self.masks, field) {
                            let rest = &ind.indirection[1..];
                            return self.subscripts(rest, d, sc);
                        }
                    }
                }
            }
        }
        let d = self.opt(&ind.arg, sc)?;
        if ind.indirection.iter().any(is_star) && d.mask.is_some() {
            return Err(format!(
                "(...).* of masked column {} cannot be traced",
                d.masked_names()
            ));
        }
        self.subscripts(&ind.indirection, d, sc)
    }

    fn subscripts(&mut self, list: &[Node], mut d: Deps, sc: &Scope) -> R<Deps> {
        for i in list {
            if let Some(N::AIndices(ix)) = &i.node {
                let mut idx = self.opt(&ix.lidx, sc)?;
                idx.add(self.opt(&ix.uidx, sc)?);
                if idx.mask.is_some() {
                    return Err(format!(
                        "a subscript computed from masked column {} would reveal it",
                        idx.masked_names()
                    ));
                }
                d.add(idx);
                d.derived = true;
            } else if sval(i).is_some() {
                // A field of a composite value: derived from the value.
                d.derived = true;
            }
        }
        Ok(d)
    }

    fn sublink(&mut self, s: &pb::SubLink, sc: &Scope) -> R<Deps> {
        let Some(q) = &s.subselect else {
            return Ok(Deps::default());
        };
        let outs = self.query_outs(q, Some(sc))?;
        let first = match outs.first() {
            Some(Out::Col(_, d)) => d.clone(),
            _ => union_outs(&outs),
        };
        use pb::SubLinkType as T;
        let t = s.sub_link_type;
        if t == T::ExistsSublink as i32 {
            Ok(Deps::default())
        } else if t == T::ExprSublink as i32 || t == T::ArraySublink as i32 {
            Ok(first.derive())
        } else if t == T::AnySublink as i32 || t == T::AllSublink as i32 {
            let test = self.opt(&s.testexpr, sc)?;
            let op = names(&s.oper_name);
            let eq = op.is_empty() || op.last().is_some_and(|o| *o == "=" || *o == "<>");
            if eq {
                self.equality(&test, &first, "IN / = ANY (subquery)")?;
            } else {
                let mut d = test.clone();
                d.add(first.clone());
                self.order_ok(&d, "a comparison with a subquery")?;
            }
            let mut d = test.compared();
            d.add(first.compared());
            Ok(d)
        } else {
            let mut d = self.opt(&s.testexpr, sc)?;
            d.add(first);
            if d.mask.is_some() {
                return Err(format!(
                    "a row comparison with a subquery tests masked column {}",
                    d.masked_names()
                ));
            }
            Ok(d.derive())
        }
    }

    fn a_expr(&mut self, a: &pb::AExpr, sc: &Scope) -> R<Deps> {
        use pb::AExprKind as K;
        let l = self.opt(&a.lexpr, sc)?;
        let r = self.opt(&a.rexpr, sc)?;
        let op = names(&a.name)
            .last()
            .map(|s| (*s).to_owned())
            .unwrap_or_default();
        let k = a.kind;
        let masked = l.mask.is_some() || r.mask.is_some();
        let mut both = l.clone();
        both.add(r.clone());
        if !masked {
            return Ok(both.derive());
        }
        if !self.cat.operator_functions(&op).is_empty() && !self.in_view {
            // A user operator under this name (ahead of pg_catalog on a
            // search_path) would get the masked value.
            return Err(format!(
                "operator {op} on masked column {}: a user-defined operator of that name exists, which would receive the value",
                both.masked_names()
            ));
        }
        let equality = (k == K::AexprOp as i32 && matches!(op.as_str(), "=" | "<>" | "!="))
            || ((k == K::AexprOpAny as i32 || k == K::AexprOpAll as i32)
                && matches!(op.as_str(), "=" | "<>"))
            || k == K::AexprDistinct as i32
            || k == K::AexprNotDistinct as i32
            || k == K::AexprIn as i32;
        if equality {
            self.equality(&l, &r, &format!("operator {op}"))?;
            return Ok(both.compared());
        }
        if k == K::AexprNullif as i32 {
            self.equality(&l, &r, "NULLIF")?;
            return Ok(l.derive());
        }
        if k == K::AexprOp as i32 && op == "||" {
            return Ok(both.derive());
        }
        if self.in_view {
            return Ok(both.derive());
        }
        Err(format!(
            "operator {} on masked column {} would reveal it",
            if op.is_empty() { "LIKE/BETWEEN" } else { &op },
            both.masked_names()
        ))
    }

    fn func_call(&mut self, f: &pb::FuncCall, sc: &Scope) -> R<Deps> {
        let fname = names(&f.funcname);
        let (schema, name) = match fname.as_slice() {
            [s, n] => (Some((*s).to_owned()), (*n).to_owned()),
            [.., n] => (None, (*n).to_owned()),
            [] => (None, String::new()),
        };
        let args = self.exprs(&f.args, sc)?;
        self.function_allowed(schema.as_deref(), &name, &args, true)?;
        if args.mask.is_some() && matches!(name.as_str(), "min" | "max") {
            return Err(format!(
                "{name}() of masked column {} would reveal the order of its values",
                args.masked_names()
            ));
        }
        if f.agg_distinct {
            self.group_ok(&args, &format!("{name}(DISTINCT ...)"))?;
        }
        for o in &f.agg_order {
            if let Some(N::SortBy(s)) = &o.node {
                if let Some(n) = &s.node {
                    let d = self.expr(n, sc)?;
                    self.order_ok(&d, "an aggregate's ORDER BY")?;
                }
            }
        }
        if let Some(filter) = &f.agg_filter {
            self.predicate(filter, sc, "an aggregate's FILTER")?;
        }
        if let Some(w) = &f.over {
            self.window(w, sc)?;
        }
        // count(col) tells only how many values are not NULL, which the
        // column shows anyway; count of a computed value tells how many
        // times the computation gave NULL, which can answer a question
        // about the value (`count(substring(ssn from '^078'))`): masked.
        if name == "count" && !(args.mask.is_some() && args.derived) {
            return Ok(args.compared());
        }
        Ok(args.derive())
    }

    /// Whether `schema.name` may be called, over `args`: SQL-text runners
    /// and user functions that may read a masked table are refused; a
    /// masked argument only flows through `SAFE_FUNCTIONS`.
    fn function_allowed(
        &self,
        schema: Option<&str>,
        name: &str,
        args: &Deps,
        explicit: bool,
    ) -> R<()> {
        // In a view's definition (the DBA's), anything may be done with
        // unmasked values; but what a function reads is checked there too:
        // a view may call a function that reads a masked column.
        let dba_view = self.in_view && args.mask.is_none();
        if SQL_RUNNERS.contains(&name) {
            return Err(format!(
                "{name}() runs SQL text or reads a relation by name, which pgward cannot trace for a role with masked columns"
            ));
        }
        let funcs = self.cat.functions(schema, name);
        if funcs.is_empty() && explicit && !dba_view {
            return Err(format!(
                "function {name} is not in the catalog pgward holds: what it reads cannot be traced for a role with masked columns"
            ));
        }
        for u in funcs.iter().filter(|f| !builtin_schema(&f.schema)) {
            if self.function_reads_masked(u, &mut Vec::new()) || args.mask.is_some() {
                return Err(format!(
                    "user function {}.{name} may read or reveal masked columns (its body reaches a masked table, also through views and other functions, runs dynamic SQL, is not SQL or PL/pgSQL, or takes a masked value)",
                    u.schema
                ));
            }
        }
        if dba_view {
            return Ok(());
        }
        if args.mask.is_some() && !SAFE_FUNCTIONS.contains(&name) {
            return Err(format!(
                "{name}() over masked column {} could reveal it (through its result's NULLs or its errors); pgward lets masked values through {}",
                args.masked_names(),
                "text functions such as upper, lower, concat, substr, length and aggregates such as count, string_agg, array_agg"
            ));
        }
        Ok(())
    }

    /// Whether user function `f` may read a masked column: its body is
    /// not SQL or PL/pgSQL, runs dynamic SQL, or names (as a word) a
    /// masked table, a view whose definition reaches one, or a user
    /// function that may (`seen`: the functions on the way, against
    /// cycles). Fail closed: too deep is a yes.
    fn function_reads_masked(&self, f: &FuncInfo, seen: &mut Vec<u32>) -> bool {
        let Some(body) = f.body.as_deref() else {
            return true;
        };
        if !matches!(&*f.language, "sql" | "plpgsql") {
            return true;
        }
        let b = body.to_ascii_lowercase();
        if b.contains("execute") || unread_at_load(&b) {
            return true;
        }
        if seen.contains(&f.oid) {
            return false;
        }
        seen.push(f.oid);
        let r = seen.len() > 16 || self.text_reaches_masked(&b, seen);
        seen.pop();
        r
    }

    /// Whether SQL text (lower case) names a masked table, a view that
    /// reaches one, or a user function that may read one. A `U&"..."`
    /// name can spell any of them: a yes.
    fn text_reaches_masked(&self, text: &str, seen: &mut Vec<u32>) -> bool {
        if self.masks.table_names().any(|t| text.contains(t)) || text.contains("u&") {
            return true;
        }
        let words: BTreeSet<&str> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .filter(|w| !w.is_empty())
            .collect();
        for w in words {
            for schema in self.cat.relation_schemas(w).unwrap_or_default() {
                if let Some(def) = self.cat.view_definition(schema, w) {
                    if seen.len() > 16 || self.text_reaches_masked(&def.to_ascii_lowercase(), seen)
                    {
                        return true;
                    }
                }
            }
            for g in self.cat.functions(None, w) {
                if !builtin_schema(&g.schema) && self.function_reads_masked(g, seen) {
                    return true;
                }
            }
        }
        false
    }
}

fn builtin_schema(s: &str) -> bool {
    s == "pg_catalog" || s == "information_schema"
}

/// The name PostgreSQL gives an output column without AS.
fn output_name(e: &Node) -> String {
    match &e.node {
        Some(N::ColumnRef(c)) => names(&c.fields)
            .last()
            .map(|s| (*s).to_owned())
            .unwrap_or_else(|| "?column?".into()),
        Some(N::FuncCall(f)) => names(&f.funcname)
            .last()
            .map(|s| (*s).to_owned())
            .unwrap_or_else(|| "?column?".into()),
        Some(N::TypeCast(t)) => match t.arg.as_deref() {
            Some(a) if output_name(a) != "?column?" => output_name(a),
            _ => t
                .type_name
                .as_ref()
                .and_then(|t| names(&t.names).last().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "?column?".into()),
        },
        Some(N::AIndirection(i)) => i
            .indirection
            .iter()
            .rev()
            .find_map(sval)
            .map(str::to_owned)
            .unwrap_or_else(|| "?column?".into()),
        Some(N::CaseExpr(_)) => "case".into(),
        Some(N::CoalesceExpr(_)) => "coalesce".into(),
        _ => "?column?".into(),
    }
}
