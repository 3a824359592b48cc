//! What pgward knows of a database's catalog: functions (volatility,
//! language), relations, views (and the functions they call), user casts,
//! domain checks and operators. Calls that have no function-call node in the
//! parse tree (attribute notation, casts, operators, views) are found
//! through it.
//!
//! A catalog comes from the live database over a control connection, or,
//! without one, from the PostgreSQL 15 snapshot built into pgward (built-ins
//! only: every user function is then unknown, and denied).
//!
//! Classifications depend on the catalog, so each catalog owns its cache of
//! them: a refreshed catalog starts with a fresh cache.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::classify::{self, Analysis, Lexer};
use crate::upstream::{Upstream, UpstreamError};

const SNAPSHOT: &str = include_str!("pg15_catalog.tsv");

/// Statements longer than this are classified every time, not cached.
pub const MAX_CACHED_TEXT: usize = 4 * 1024;
const CACHE_ENTRIES: usize = 4096;

#[derive(Debug, Clone)]
pub struct FuncInfo {
    pub oid: u32,
    pub schema: Box<str>,
    pub name: Box<str>,
    /// provolatile: b'i', b's' or b'v'.
    pub volatility: u8,
    pub language: Box<str>,
    pub nargs: i16,
    /// For an aggregate: the support function (`schema.name`) whose
    /// volatility and language this entry carries. pg_proc says every
    /// aggregate is IMMUTABLE; what it runs is its support functions.
    pub support: Option<Box<str>>,
    /// What a user function runs: a `LANGUAGE sql` body, or the CREATE
    /// FUNCTION text of a PL/pgSQL one (see `body.rs`). None for built-ins
    /// and C functions.
    pub body: Option<Arc<str>>,
    /// What else a call of this user function runs: the domain checks of
    /// its argument and result types (PostgreSQL coerces to them) and the
    /// functions in its argument defaults (run in the caller).
    pub implied: Vec<FuncRef>,
}

impl FuncInfo {
    /// From pg_proc's text: oid, schema, name, provolatile, language,
    /// pronargs. What does not parse errs towards VOLATILE.
    fn from_row(
        oid: &str,
        schema: &str,
        name: &str,
        vol: &str,
        lang: &str,
        nargs: &str,
    ) -> FuncInfo {
        FuncInfo {
            oid: oid.parse().unwrap_or(0),
            schema: schema.into(),
            name: name.into(),
            volatility: vol.bytes().next().unwrap_or(b'v'),
            language: lang.into(),
            nargs: nargs.parse().unwrap_or(0),
            support: None,
            body: None,
            implied: Vec::new(),
        }
    }
}

pub type FuncRef = (String, String);

/// The first OID PostgreSQL gives an object created after initdb
/// (`FirstNormalObjectId`): every type below it is built in.
pub const FIRST_USER_OID: u32 = 16384;

/// What a type OID is to pgward (`Catalog::param_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType<'a> {
    /// Built in, or a user type whose values run no user function.
    Plain,
    /// A user type whose values run functions (its input function, a
    /// domain's checks): (schema, name), judged as a cast to it.
    Runs(&'a str, &'a str),
    /// Not in the catalog: created since it was loaded, or never loaded
    /// (the offline snapshot knows no user type).
    Unknown,
}

/// What a write to a table runs besides the write itself (PostgreSQL runs
/// all of it in the writing statement, most of it with the table owner's
/// rights): found in the catalog once per load, judged with each write.
#[derive(Debug, Default)]
pub struct WriteEffects {
    /// The functions of its user triggers.
    pub triggers: Vec<FuncRef>,
    /// `SELECT e1, e2, ...` of the expressions an INSERT or UPDATE (and
    /// a rewrite or ANALYZE) evaluates: column defaults (the column's or
    /// its domain's), generated columns, CHECK constraints, the values of
    /// column types whose domain checks or input functions run, index
    /// expressions and partial-index predicates. None when none of them
    /// does more than a built-in computation.
    pub expressions: Option<String>,
    /// Functions an INSERT or UPDATE runs outside those expressions: the
    /// support functions of user operator classes its indexes use, the
    /// operators of exclusion constraints.
    pub functions: Vec<FuncRef>,
    /// Functions its foreign key checks run, with the kinds of write
    /// (`events`) that run them: the equality operators of the keys
    /// (their functions and selectivity estimators) and the support
    /// functions of the other table's indexes' operator classes, which
    /// the check's lookup there uses. An INSERT or UPDATE of a
    /// referencing table looks its keys up in the referenced table; an
    /// UPDATE or DELETE of a referenced table looks for referencing rows.
    pub key_functions: Vec<(u8, FuncRef)>,
    /// Functions a lookup of its rows through its indexes can run: the
    /// operators (and estimators) and support functions of its indexes'
    /// operator families, and the hash functions of hash families that
    /// hold those operators. A foreign key added to reference it checks
    /// the existing rows with them at once (ALTER TABLE ... ADD FOREIGN
    /// KEY, whose key is not in the catalog yet).
    pub lookup_functions: Vec<FuncRef>,
    /// Its rules (CREATE RULE ... DO ALSO / INSTEAD).
    pub rules: Vec<Rule>,
    /// The foreign keys of other tables that reference it.
    pub referenced_by: Vec<ForeignKey>,
}

/// A rewrite rule of a table or view.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// The events it fires on (`events::INSERT`, ...).
    pub events: u8,
    /// Its condition, as `SELECT WHERE cond`.
    pub condition: Option<String>,
    /// Its actions, as SQL.
    pub actions: Vec<String>,
}

/// A foreign key of `schema.table` referencing a table.
#[derive(Debug)]
pub struct ForeignKey {
    pub schema: String,
    pub table: String,
    /// confdeltype / confupdtype: `a` no action, `r` restrict, `c`
    /// cascade, `n` set null, `d` set default.
    pub on_delete: u8,
    pub on_update: u8,
}

/// Kinds of write, as bits.
pub mod events {
    pub const INSERT: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const DELETE: u8 = 4;
    pub const TRUNCATE: u8 = 8;
    /// A rewrite of the table's rows or statistics (ALTER TABLE, CLUSTER,
    /// VACUUM FULL, ANALYZE, REINDEX): its column, constraint and index
    /// expressions run, nothing else.
    pub const MAINTAIN: u8 = 16;
    /// COPY FROM: an INSERT that fires no rules.
    pub const NO_RULES: u8 = 32;
    /// What a write of unknown kind may be.
    pub const ANY: u8 = INSERT | UPDATE | DELETE | TRUNCATE;
}
/// A constraint whose errors compare a written value with the values of
/// other rows: a unique or exclusion index, or a foreign key. For column
/// masking, such a constraint over a masked column answers equality
/// questions about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConstraint {
    pub kind: KeyKind,
    /// Its names: the index's, and its constraint's when one owns it
    /// (`ON CONFLICT ON CONSTRAINT` names either); a foreign key's.
    pub names: Vec<String>,
    /// (schema, table) and the columns it involves: an index's key and
    /// INCLUDE columns, every column its expressions and predicate
    /// reference (all of them for a whole-row reference); a foreign key's
    /// referencing columns.
    pub table: (String, String),
    pub columns: Vec<String>,
    /// The columns among `columns` that an index compares as stored (a
    /// plain key column, not an expression over it), whose equality is
    /// what a `hash` mask shows anyway.
    pub plain: Vec<String>,
    /// A foreign key's referenced table and columns.
    pub referenced: Option<((String, String), Vec<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Unique,
    Exclusion,
    ForeignKey,
}

/// A column of a table or view, as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// Its attribute number (0 in a catalog built without one).
    pub attnum: i16,
}

/// Names user relations and their columns had in earlier loads of this
/// database's catalog, by OID and attribute number: a rule keyed by a
/// name (a mask) follows a rename made since pgward first loaded it.
#[derive(Debug, Default, Clone)]
pub struct FormerNames {
    relations: HashMap<u32, Vec<ViewKey>>,
    columns: HashMap<(u32, i16), Vec<String>>,
}

/// A function as written: (schema if qualified, name).
pub type FuncName = (Option<String>, String);
type ViewKey = (String, String);

pub struct Catalog {
    funcs: Vec<FuncInfo>,
    by_name: HashMap<Box<str>, Vec<usize>>,
    by_oid: HashMap<u32, usize>,
    /// relname → [(schema, relkind)]
    relations: HashMap<String, Vec<(String, u8)>>,
    /// index name → [(its schema, its table's name)] (an index lives in
    /// its table's schema): built-ins that take an index by name read or
    /// write its table.
    indexes: HashMap<String, Vec<(String, String)>>,
    /// type name → [(its schema, table schema, table)]: the tables whose
    /// rows DDL on the type goes through. For a domain, the tables with a
    /// column of it (or of a domain over it), which ALTER DOMAIN ... ADD
    /// CONSTRAINT, VALIDATE CONSTRAINT and SET NOT NULL check; for a
    /// composite type, its typed tables, which ALTER TYPE ... CASCADE
    /// rewrites.
    type_tables: HashMap<String, Vec<(String, String, String)>>,
    /// `schema.table` → the tables it inherits from or is a partition of,
    /// and the reverse: a read of one reads rows of the other.
    parents: HashMap<String, Vec<String>>,
    children: HashMap<String, Vec<String>>,
    /// Whether `relations` lists the database's own relations (a catalog
    /// loaded from it), so a name it lacks is one pgward cannot place.
    /// The offline snapshot knows only the system's.
    pub lists_user_relations: bool,
    /// (schema, view) → functions its definition calls, transitively.
    views: HashMap<ViewKey, Vec<FuncName>>,
    /// (schema, view) → the one relation its FROM names: a write through
    /// an updatable view writes that base table, which runs what writing
    /// that table runs.
    view_relations: HashMap<ViewKey, Vec<(Option<String>, String)>>,
    /// (schema, foreign table) of file_fdw, and views reading one through
    /// any depth of views → whether a read runs a program (else it reads
    /// a server file).
    file_tables: HashMap<ViewKey, bool>,
    /// type name → [(schema, functions a cast to it can run)]
    types: HashMap<String, Vec<(String, Vec<FuncRef>)>>,
    /// user operator name → its functions
    operators: HashMap<String, Vec<FuncRef>>,
    /// Whether a user operator `=` takes two text operands: on a
    /// search_path that puts its schema ahead of pg_catalog, it is what
    /// `text = 'x'` calls.
    pub(crate) user_text_equals: bool,
    /// User functions of casts PostgreSQL applies unasked (IMPLICIT and
    /// AS ASSIGNMENT casts).
    implicit_casts: Vec<FuncRef>,
    /// domain name → [(schema, `SELECT <its DEFAULT>`)], for domains whose
    /// default calls a function: a column of it takes the default (ADD
    /// COLUMN fills every existing row with it).
    domain_defaults: HashMap<String, Vec<(String, String)>>,
    /// User types whose values run functions (input functions, domain
    /// checks), by OID: a Parse message may name them for its parameters.
    types_by_oid: HashMap<u32, (String, String)>,
    /// The OIDs of the other user types (those whose values run no user
    /// function): with `types_by_oid`, every type the database had when
    /// the catalog was loaded. A type OID in neither, at or above
    /// `FIRST_USER_OID`, is one pgward cannot judge.
    plain_user_types: HashSet<u32>,
    /// `schema.table` → what writing it runs (triggers, defaults,
    /// constraints, index expressions, rules, foreign key actions); only
    /// tables that have any.
    writes: HashMap<String, Arc<WriteEffects>>,
    /// The functions of enabled event triggers, which DDL runs.
    event_triggers: Vec<FuncRef>,
    /// (schema, table or view) → its columns in attnum order (user
    /// schemas only), for column masking's lineage.
    columns: HashMap<ViewKey, Vec<Column>>,
    /// (schema, table or view) → its OID, and back (user schemas).
    rel_oids: HashMap<ViewKey, u32>,
    oid_rels: HashMap<u32, ViewKey>,
    /// Names they had in earlier loads (see `FormerNames`).
    former: Arc<FormerNames>,
    /// (schema, view or materialized view) → its definition
    /// (`pg_get_viewdef`), user schemas, for masking's lineage.
    view_defs: HashMap<ViewKey, Arc<str>>,
    /// (schema, table) → the unique and exclusion indexes on it and the
    /// foreign keys it is either side of (user schemas).
    keys: HashMap<ViewKey, Vec<Arc<KeyConstraint>>>,
    /// Where it came from, for `explain` and logs.
    pub source: String,
    /// Classifications by exact text.
    cache: Cache,
    /// Classifications by shape (literals blanked).
    shapes: Cache,
}

type Cache = Mutex<LruCache<Box<str>, Arc<Analysis>>>;

/// The shape a cached classification of `sql` would be shared under.
pub fn shape_key(sql: &str) -> Option<String> {
    if sql.len() <= MAX_CACHED_TEXT {
        super::shape::shape(sql)
    } else {
        None
    }
}

/// The key a classification of `sql` read by `lexer` is cached under:
/// the text itself for the standard lexer, else the text after a NUL.
pub fn cache_key(sql: &str, lexer: Lexer) -> std::borrow::Cow<'_, str> {
    if lexer == Lexer::STANDARD {
        std::borrow::Cow::Borrowed(sql)
    } else {
        std::borrow::Cow::Owned(format!("\0{sql}"))
    }
}

/// `shape_key` for a text read by `lexer` (after a NUL when it is not the
/// standard one).
pub fn shape_key_with(sql: &str, lexer: Lexer) -> Option<String> {
    if lexer == Lexer::STANDARD {
        return shape_key(sql);
    }
    if sql.len() > MAX_CACHED_TEXT {
        return None;
    }
    super::shape::shape_with(sql, lexer.escapes_in_strings).map(|s| format!("\0{s}"))
}

/// Whether a classification may be shared by shape: one statement that
/// read no literal value.
pub fn shareable(analysis: &Analysis) -> bool {
    matches!(analysis, Ok(s) if s.len() == 1 && !s[0].literal_sensitive)
}

fn lock(cache: &Cache) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Arc<Analysis>>> {
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("source", &self.source)
            .field("functions", &self.funcs.len())
            .finish_non_exhaustive()
    }
}

fn new_cache() -> Cache {
    Mutex::new(LruCache::new(
        NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
    ))
}

impl Catalog {
    fn empty(source: String) -> Catalog {
        Catalog {
            funcs: Vec::new(),
            by_name: HashMap::new(),
            by_oid: HashMap::new(),
            relations: HashMap::new(),
            indexes: HashMap::new(),
            type_tables: HashMap::new(),
            parents: HashMap::new(),
            children: HashMap::new(),
            lists_user_relations: false,
            views: HashMap::new(),
            view_relations: HashMap::new(),
            file_tables: HashMap::new(),
            types: HashMap::new(),
            operators: HashMap::new(),
            user_text_equals: false,
            implicit_casts: Vec::new(),
            domain_defaults: HashMap::new(),
            types_by_oid: HashMap::new(),
            plain_user_types: HashSet::new(),
            writes: HashMap::new(),
            event_triggers: Vec::new(),
            columns: HashMap::new(),
            rel_oids: HashMap::new(),
            oid_rels: HashMap::new(),
            former: Arc::default(),
            view_defs: HashMap::new(),
            keys: HashMap::new(),
            source,
            cache: new_cache(),
            shapes: new_cache(),
        }
    }

    /// The built-in PostgreSQL 15 catalog (pg_catalog, information_schema).
    pub fn builtin() -> Catalog {
        let mut cat = Catalog::empty("built-in PostgreSQL 15 catalog snapshot".into());
        for line in SNAPSHOT.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["f", oid, schema, name, vol, lang, nargs] => {
                    cat.add_function(FuncInfo::from_row(oid, schema, name, vol, lang, nargs))
                }
                ["r", schema, name, kind] => {
                    cat.add_relation(schema, name, kind.bytes().next().unwrap_or(b'r'))
                }
                _ => {}
            }
        }
        cat
    }

    fn add_function(&mut self, f: FuncInfo) {
        let i = self.funcs.len();
        self.by_name.entry(f.name.clone()).or_default().push(i);
        if f.support.is_none() {
            self.by_oid.insert(f.oid, i);
        }
        self.funcs.push(f);
    }

    pub(crate) fn add_relation(&mut self, schema: &str, name: &str, kind: u8) {
        self.relations
            .entry(name.to_owned())
            .or_default()
            .push((schema.to_owned(), kind));
    }

    /// The columns of `schema.name` in attnum order (dropped ones left
    /// out), when the catalog lists them (a loaded catalog: user schemas).
    pub fn columns(&self, schema: &str, name: &str) -> Option<&[Column]> {
        self.columns
            .get(&(schema.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
    }

    /// Where a column named `schema.table.column` in an earlier load of
    /// this catalog is now, when it was renamed since (its table or itself):
    /// (schema, table, column). The name as it is now comes first.
    pub fn now_named(
        &self,
        schema: &str,
        table: &str,
        column: &str,
    ) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let key = (schema.to_owned(), table.to_owned());
        let mut oids: Vec<u32> = self.rel_oids.get(&key).copied().into_iter().collect();
        for (oid, names) in &self.former.relations {
            if names.contains(&key) && !oids.contains(oid) {
                oids.push(*oid);
            }
        }
        for oid in oids {
            let Some(rel) = self.oid_rels.get(&oid) else {
                continue;
            };
            let Some(cols) = self.columns.get(rel) else {
                continue;
            };
            for c in cols {
                let was = self
                    .former
                    .columns
                    .get(&(oid, c.attnum))
                    .is_some_and(|n| n.iter().any(|n| n == column));
                if c.name == column || was {
                    out.push((rel.0.clone(), rel.1.clone(), c.name.clone()));
                }
            }
        }
        out
    }

    /// Carries the names of `older` (this database's previous load) over:
    /// a relation or column whose OID and attribute number stay but whose
    /// name changed keeps its former names.
    pub fn follow_renames(&mut self, older: &Catalog) {
        let mut former = (*older.former).clone();
        for (key, oid) in &older.rel_oids {
            let Some(now) = self.oid_rels.get(oid) else {
                continue;
            };
            if now != key {
                let names = former.relations.entry(*oid).or_default();
                if !names.contains(key) {
                    names.push(key.clone());
                }
            }
            let (Some(was), Some(is)) = (older.columns.get(key), self.columns.get(now)) else {
                continue;
            };
            for c in was {
                if c.attnum > 0 && is.iter().any(|n| n.attnum == c.attnum && n.name != c.name) {
                    let names = former.columns.entry((*oid, c.attnum)).or_default();
                    if !names.contains(&c.name) {
                        names.push(c.name.clone());
                    }
                }
            }
        }
        // Relations dropped since: their former names go with them.
        former
            .relations
            .retain(|oid, _| self.oid_rels.contains_key(oid));
        former
            .columns
            .retain(|(oid, _), _| self.oid_rels.contains_key(oid));
        self.former = Arc::new(former);
    }

    /// The definition of view `schema.name`, when the catalog holds it.
    pub fn view_definition(&self, schema: &str, name: &str) -> Option<&str> {
        self.view_defs
            .get(&(schema.to_owned(), name.to_owned()))
            .map(|d| &**d)
    }

    /// Adds a table's (or view's) columns; with a definition, a view's.
    /// For catalogs built by hand (tests, `explain` without a database).
    pub fn add_columns(&mut self, schema: &str, name: &str, columns: &[(&str, u32)]) {
        self.columns.insert(
            (schema.to_owned(), name.to_owned()),
            columns
                .iter()
                .zip(1..)
                .map(|((n, t), attnum)| Column {
                    name: (*n).to_owned(),
                    type_oid: *t,
                    attnum,
                })
                .collect(),
        );
    }

    /// Gives relation `schema.name` an OID (see `add_columns`).
    pub fn set_relation_oid(&mut self, schema: &str, name: &str, oid: u32) {
        let key = (schema.to_owned(), name.to_owned());
        self.rel_oids.insert(key.clone(), oid);
        self.oid_rels.insert(oid, key);
    }

    /// Records view `schema.name`'s definition (see `add_columns`).
    /// The unique and exclusion indexes on `schema.table` and the foreign
    /// keys it is either side of.
    pub fn key_constraints(&self, schema: &str, table: &str) -> &[Arc<KeyConstraint>] {
        self.keys
            .get(&(schema.to_owned(), table.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Records a unique or exclusion index or a foreign key (under both
    /// of a foreign key's tables).
    pub fn add_key_constraint(&mut self, k: KeyConstraint) {
        let k = Arc::new(k);
        let mut tables = vec![k.table.clone()];
        if let Some((r, _)) = &k.referenced {
            if *r != k.table {
                tables.push(r.clone());
            }
        }
        for t in tables {
            self.keys.entry(t).or_default().push(k.clone());
        }
    }

    pub fn add_view_definition(&mut self, schema: &str, name: &str, definition: &str) {
        self.view_defs
            .insert((schema.to_owned(), name.to_owned()), definition.into());
    }

    /// Adds a user function with its body and a user operator (tests).
    #[cfg(test)]
    pub(crate) fn add_test_function(&mut self, schema: &str, name: &str, lang: &str, body: &str) {
        let mut f = FuncInfo::from_row("99999", schema, name, "v", lang, "0");
        f.body = Some(body.into());
        self.add_function(f);
    }

    #[cfg(test)]
    pub(crate) fn add_test_operator(&mut self, op: &str, schema: &str, func: &str) {
        self.operators
            .entry(op.to_owned())
            .or_default()
            .push((schema.to_owned(), func.to_owned()));
    }

    /// Functions named `name` (in `schema` when given).
    pub fn functions(&self, schema: Option<&str>, name: &str) -> Vec<&FuncInfo> {
        self.by_name
            .get(name)
            .map(|ix| {
                ix.iter()
                    .map(|&i| &self.funcs[i])
                    .filter(|f| schema.is_none_or(|s| &*f.schema == s))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn function_by_oid(&self, oid: u32) -> Option<&FuncInfo> {
        self.by_oid.get(&oid).map(|&i| &self.funcs[i])
    }

    /// For a file_fdw foreign table of this name (in `schema` when given,
    /// else in any): whether reading it runs a program (else it reads a
    /// server file).
    pub fn file_table(&self, schema: Option<&str>, name: &str) -> Option<bool> {
        self.file_tables
            .iter()
            .filter(|((s, n), _)| n == name && schema.is_none_or(|want| want == s))
            .map(|(_, program)| *program)
            .reduce(|a, b| a || b)
    }

    /// Whether a relation of this name (in `schema` when given) is a view.
    /// The relkind of `schema.name` (b'r', b'v', b'm', b'p', b'f', b'S').
    pub fn relation_kind(&self, schema: &str, name: &str) -> Option<u8> {
        self.relations
            .get(name)?
            .iter()
            .find(|(s, _)| s == schema)
            .map(|(_, k)| *k)
    }

    /// The tables (schema, table) of the indexes of this name (in
    /// `schema` when given), for a catalog that lists the database's
    /// relations; None when it does not (the offline snapshot).
    pub fn index_tables(&self, schema: Option<&str>, name: &str) -> Option<Vec<(&str, &str)>> {
        if !self.lists_user_relations {
            return None;
        }
        Some(
            self.indexes
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(s, _)| schema.is_none_or(|want| want == s))
                .map(|(s, t)| (s.as_str(), t.as_str()))
                .collect(),
        )
    }

    /// The tables (schema, table) whose rows DDL on the type of this name
    /// (in `schema` when given) goes through (see `type_tables`).
    pub fn type_tables(&self, schema: Option<&str>, name: &str) -> Vec<(&str, &str)> {
        self.type_tables
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(s, _, _)| schema.is_none_or(|want| want == s))
            .map(|(_, s, t)| (s.as_str(), t.as_str()))
            .collect()
    }

    pub fn is_view(&self, schema: Option<&str>, name: &str) -> bool {
        self.relations.get(name).is_some_and(|places| {
            places
                .iter()
                .any(|(s, k)| *k == b'v' && schema.is_none_or(|want| want == s))
        })
    }

    /// Functions a view's definition, or a table's row security policies,
    /// call; for an unqualified name, those of every relation of that
    /// name.
    pub fn view_functions(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Option<Vec<(Option<String>, String)>> {
        if self.views.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for ((s, n), funcs) in &self.views {
            if n == name && schema.is_none_or(|want| want == s) {
                out.extend(funcs.iter().cloned());
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The base relations of the views of this name (in `schema` when
    /// given): the one relation each view's FROM names.
    pub fn view_relations(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Vec<(Option<String>, String)> {
        if self.view_relations.is_empty() {
            return Vec::new();
        }
        self.view_relations
            .iter()
            .filter(|((s, n), _)| n == name && schema.is_none_or(|want| want == s))
            .flat_map(|(_, r)| r.iter().cloned())
            .collect()
    }

    /// Functions a cast to (or a literal of) the type can run.
    pub fn type_functions(&self, schema: Option<&str>, name: &str) -> Vec<FuncRef> {
        self.types
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(s, _)| schema.is_none_or(|want| want == s))
                    .flat_map(|(_, f)| f.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Functions of user casts that PostgreSQL may apply without one being
    /// written.
    pub fn implicit_casts(&self) -> &[FuncRef] {
        &self.implicit_casts
    }

    /// What a write to the table `name` runs (in `schema` when given, else
    /// in every schema holding a table of that name), for it and every
    /// partition and inheritance child below it (a write through a parent
    /// reaches them): `schema.table` and its effects, for those that have
    /// any.
    pub fn write_effects(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Vec<(String, Arc<WriteEffects>)> {
        let mut out = Vec::new();
        if self.writes.is_empty() {
            return out;
        }
        let schemas = match schema {
            Some(s) => vec![s],
            None => self.relation_schemas(name).unwrap_or_default(),
        };
        for s in schemas {
            let full = format!("{s}.{name}");
            let below = self.descendants(&full);
            for t in std::iter::once(full.as_str()).chain(below) {
                if let Some(e) = self.writes.get(t) {
                    if !out.iter().any(|(n, _)| n == t) {
                        out.push((t.to_owned(), e.clone()));
                    }
                }
            }
        }
        out
    }

    /// The default of a domain of that name (in `schema` when given, else
    /// in any schema), as `SELECT <expression>`, when it calls a function.
    pub fn domain_defaults(&self, schema: Option<&str>, name: &str) -> Vec<&str> {
        self.domain_defaults
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(s, _)| schema.is_none_or(|want| want == s))
                    .map(|(_, sql)| sql.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The functions of the enabled event triggers, which DDL runs.
    pub fn event_trigger_functions(&self) -> &[FuncRef] {
        &self.event_triggers
    }

    /// What a value of the type `oid` (a parameter's, declared by a Parse
    /// or described by the server) runs, as far as this catalog knows.
    pub fn param_type(&self, oid: u32) -> ParamType<'_> {
        if let Some((s, n)) = self.types_by_oid.get(&oid) {
            return ParamType::Runs(s, n);
        }
        if oid < FIRST_USER_OID || self.plain_user_types.contains(&oid) {
            return ParamType::Plain;
        }
        ParamType::Unknown
    }

    /// Functions behind a user-defined operator of this name.
    pub fn operator_functions(&self, op: &str) -> &[FuncRef] {
        self.operators.get(op).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The schemas an unqualified relation name may resolve to upstream:
    /// every schema holding a relation of that name, since the session's
    /// search_path (set per database or user, or a schema named after the
    /// user, even ahead of pg_catalog) picks one and pgward does not know
    /// which. None when the catalog holds no relation of that name and
    /// lists the database's relations: it may be in any schema (created
    /// since the catalog was loaded) or nowhere. The offline snapshot
    /// places user relations it cannot know in public.
    pub fn relation_schemas(&self, name: &str) -> Option<Vec<&str>> {
        match self.relations.get(name) {
            // One relation per name and schema: no duplicates.
            Some(places) => Some(places.iter().map(|(s, _)| s.as_str()).collect()),
            None if self.lists_user_relations => None,
            None => Some(vec!["public"]),
        }
    }

    pub(crate) fn add_inheritance(&mut self, child: &str, parent: &str) {
        self.parents
            .entry(child.to_owned())
            .or_default()
            .push(parent.to_owned());
        self.children
            .entry(parent.to_owned())
            .or_default()
            .push(child.to_owned());
    }

    /// The tables whose rows a read of `full` (`schema.table`) also reads:
    /// its inheritance children and partitions, all the way down (a
    /// `SELECT` from a parent returns its children's rows).
    pub fn descendants(&self, full: &str) -> Vec<&str> {
        walk(&self.children, full)
    }

    /// The tables `full` inherits from or is a partition of, all the way
    /// up: its rows are theirs too.
    pub fn ancestors(&self, full: &str) -> Vec<&str> {
        walk(&self.parents, full)
    }

    /// Whether the catalog lists the database's relations and holds one
    /// of this name (in `schema` when given): the offline snapshot holds
    /// none.
    pub fn holds_relation(&self, schema: Option<&str>, name: &str) -> bool {
        self.lists_user_relations
            && self
                .relations
                .get(name)
                .is_some_and(|places| places.iter().any(|(s, _)| schema.is_none_or(|w| w == s)))
    }

    /// Whether `relation_schemas` can place the unqualified name.
    pub fn places(&self, name: &str) -> bool {
        !self.lists_user_relations || self.relations.contains_key(name)
    }

    /// Classifies `sql`, from a cache when it was seen before: by its exact
    /// text, or by its shape (literal values blanked out, see `shape.rs`)
    /// for a single statement whose classification read no literal value.
    /// So `WHERE id = 7` and `WHERE id = 8` share one classification, while
    /// `SET x = 'on'` and `SET x = 'of'` never do. Statement texts in a
    /// shared analysis are those of the first text seen.
    pub fn analyze(&self, sql: &str) -> Arc<Analysis> {
        self.analyze_with(sql, Lexer::STANDARD)
    }

    /// `analyze` for a session whose lexer reads `sql` as `lexer` says.
    /// With standard_conforming_strings off the same text means something
    /// else: its classification is cached under keys no standard text or
    /// shape has (they begin with a NUL, which no SQL text holds).
    pub fn analyze_with(&self, sql: &str, lexer: Lexer) -> Arc<Analysis> {
        if lexer == Lexer::STANDARD {
            return self.analyze_standard(sql);
        }
        let key = cache_key(sql, lexer);
        if let Some(hit) = lock(&self.cache).get(key.as_ref()) {
            return hit.clone();
        }
        let shape = shape_key_with(sql, lexer);
        if let Some(shape) = &shape {
            if let Some(hit) = lock(&self.shapes).get(shape.as_str()) {
                return hit.clone();
            }
        }
        let analysis = Arc::new(classify::classify_with(sql, self, lexer));
        if sql.len() > MAX_CACHED_TEXT {
            return analysis;
        }
        if let Some(shape) = shape.filter(|_| shareable(&analysis)) {
            lock(&self.shapes).put(shape.into(), analysis.clone());
        }
        lock(&self.cache).put(key.into(), analysis.clone());
        analysis
    }

    fn analyze_standard(&self, sql: &str) -> Arc<Analysis> {
        if let Some(hit) = lock(&self.cache).get(sql) {
            return hit.clone();
        }
        let key = shape_key(sql);
        if let Some(key) = &key {
            if let Some(hit) = lock(&self.shapes).get(key.as_str()) {
                return hit.clone();
            }
        }
        let analysis = Arc::new(classify::classify(sql, self));
        if sql.len() > MAX_CACHED_TEXT {
            return analysis;
        }
        let shareable = shareable(&analysis);
        if let Some(key) = key.filter(|_| shareable) {
            lock(&self.shapes).put(key.into(), analysis.clone());
        }
        lock(&self.cache).put(sql.into(), analysis.clone());
        analysis
    }

    /// Loads the catalog of `database` over a fresh upstream connection.
    pub async fn load(upstream: &Upstream, database: &str) -> Result<Catalog, UpstreamError> {
        let mut control = upstream.connect(database, &[]).await?;
        // Deparsing a view, a rule, a BEGIN ATOMIC body or an expression
        // with a sub-select locks the relations it names (ruleutils'
        // AcquireRewriteLocks). A session holding such a lock in its open
        // block may be waiting for this reload: never wait on it for long
        // (see `deparsed`).
        control.simple_query("SET lock_timeout = '1s'").await?;
        let conn = &mut control;
        let mut cat = Catalog::empty(format!(
            "live catalog of database {database:?}, loaded at {}",
            time_now()
        ));
        // (function index, its user argument/result types, its defaults)
        let mut implied: Vec<(usize, Option<String>, Option<String>)> = Vec::new();
        for row in deparsed(
            conn,
            "SELECT p.oid, n.nspname, p.proname, p.provolatile, l.lanname, p.pronargs, \
                 CASE WHEN n.nspname IN ('pg_catalog', 'information_schema') \
                 OR l.lanname IN ('internal', 'c') THEN NULL \
                 WHEN l.lanname = 'sql' AND p.prosqlbody IS NOT NULL \
                 THEN pg_catalog.pg_get_function_sqlbody(p.oid) \
                 WHEN l.lanname = 'plpgsql' AND p.prokind IN ('f', 'p') \
                 THEN pg_catalog.pg_get_functiondef(p.oid) \
                 ELSE p.prosrc END, \
                 (SELECT pg_catalog.string_agg(tn.nspname || '.' || t.typname, ' ') \
                 FROM pg_catalog.unnest(p.proargtypes::pg_catalog.oid[] || p.prorettype) u(o) \
                 JOIN pg_catalog.pg_type t ON t.oid = u.o \
                 JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
                 WHERE tn.nspname <> 'pg_catalog'), \
                 pg_catalog.pg_get_expr(p.proargdefaults, 0) \
                 FROM pg_catalog.pg_proc p \
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                 JOIN pg_catalog.pg_language l ON l.oid = p.prolang",
        )
        .await?
        {
            if let [Some(oid), Some(s), Some(n), Some(v), Some(l), Some(a), body, types, defaults] =
                row.as_slice()
            {
                let mut f = FuncInfo {
                    body: body.as_deref().map(Arc::from),
                    ..FuncInfo::from_row(oid, s, n, v, l, a)
                };
                if types.is_some() || defaults.is_some() {
                    implied.push((cat.funcs.len(), types.clone(), defaults.clone()));
                }
                f.implied = Vec::new();
                cat.add_function(f);
            }
        }
        // An aggregate runs its support functions: one more entry under
        // its name for each (pg_catalog's own are PostgreSQL's, trusted).
        for row in deparsed(
            conn,
            "SELECT ap.oid, an.nspname, ap.proname, ap.pronargs, \
                 fn.nspname || '.' || f.proname, f.provolatile, l.lanname \
                 FROM pg_catalog.pg_aggregate a \
                 JOIN pg_catalog.pg_proc ap ON ap.oid = a.aggfnoid \
                 JOIN pg_catalog.pg_namespace an ON an.oid = ap.pronamespace \
                 JOIN pg_catalog.pg_proc f ON f.oid IN (a.aggtransfn, a.aggfinalfn, \
                 a.aggcombinefn, a.aggserialfn, a.aggdeserialfn, a.aggmtransfn, \
                 a.aggminvtransfn, a.aggmfinalfn) \
                 JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace \
                 JOIN pg_catalog.pg_language l ON l.oid = f.prolang \
                 WHERE an.nspname <> 'pg_catalog'",
        )
        .await?
        {
            if let [Some(oid), Some(s), Some(n), Some(a), Some(support), Some(v), Some(l)] =
                row.as_slice()
            {
                cat.add_function(FuncInfo {
                    support: Some(support.as_str().into()),
                    ..FuncInfo::from_row(oid, s, n, v, l, a)
                });
            }
        }
        for row in deparsed(
            conn,
            "SELECT o.oprname, pn.nspname, p.proname, \
                 (o.oprleft = 'pg_catalog.text'::pg_catalog.regtype \
                 AND o.oprright = 'pg_catalog.text'::pg_catalog.regtype)::text \
                 FROM pg_catalog.pg_operator o \
                 JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
                 JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE n.nspname <> 'pg_catalog' OR pn.nspname <> 'pg_catalog'",
        )
        .await?
        {
            if let [Some(op), Some(s), Some(f), text] = row.as_slice() {
                if op == "=" && text.as_deref() == Some("true") {
                    cat.user_text_equals = true;
                }
                cat.operators
                    .entry(op.clone())
                    .or_default()
                    .push((s.clone(), f.clone()));
            }
        }
        for row in deparsed(
            conn,
            "SELECT pn.nspname, p.proname FROM pg_catalog.pg_cast c \
                 JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE pn.nspname <> 'pg_catalog' AND c.castcontext IN ('i', 'a')",
        )
        .await?
        {
            if let [Some(s), Some(f)] = row.as_slice() {
                cat.implicit_casts.push((s.clone(), f.clone()));
            }
        }
        // Functions a value of a user type can run: casts into it and its
        // input function.
        for row in deparsed(
            conn,
                "SELECT tn.nspname, t.typname, pn.nspname, p.proname \
                 FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_type t ON t.oid = c.casttarget \
                 JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
                 JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE pn.nspname <> 'pg_catalog' \
                 UNION ALL \
                 SELECT tn.nspname, t.typname, pn.nspname, p.proname \
                 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
                 JOIN pg_catalog.pg_proc p ON p.oid = t.typinput \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE pn.nspname <> 'pg_catalog'",
            )
            .await?
        {
            if let [Some(ts), Some(tn), Some(fs), Some(f)] = row.as_slice() {
                cat.add_type_function(ts, tn, (fs.clone(), f.clone()));
            }
        }
        let domain_checks = deparsed(
            conn,
            // A domain's CHECK runs for every value of a type that holds
            // it: domains over it, its arrays, composites (and tables'
            // row types) with a column of it, ranges and multiranges.
            "WITH RECURSIVE edge(inner_t, outer_t) AS ( \
                 SELECT typbasetype, oid FROM pg_catalog.pg_type WHERE typtype = 'd' \
                 UNION ALL SELECT typelem, oid FROM pg_catalog.pg_type WHERE typelem <> 0 \
                 UNION ALL SELECT a.atttypid, t.oid FROM pg_catalog.pg_type t \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid \
                 WHERE t.typrelid <> 0 AND a.attnum > 0 AND NOT a.attisdropped \
                 UNION ALL SELECT rngsubtype, rngtypid FROM pg_catalog.pg_range \
                 UNION ALL SELECT rngtypid, rngmultitypid FROM pg_catalog.pg_range), \
                 holds(t, con) AS ( \
                 SELECT c.contypid, c.oid FROM pg_catalog.pg_constraint c \
                 WHERE c.contype = 'c' AND c.contypid <> 0 \
                 UNION SELECT e.outer_t, h.con FROM holds h JOIN edge e ON e.inner_t = h.t) \
                 SELECT tn.nspname, t.typname, pg_catalog.pg_get_constraintdef(h.con) \
                 FROM holds h JOIN pg_catalog.pg_type t ON t.oid = h.t \
                 JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace",
        )
        .await?;
        // Row security policies run their expressions on every read of
        // the table, as a view runs its definition.
        let policies = deparsed(
            conn,
            "SELECT n.nspname, c.relname, pg_catalog.string_agg('(' || \
             coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true') || '), (' || \
             coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), 'true') || ')', ', ') \
             FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relrowsecurity GROUP BY n.nspname, c.relname",
        )
        .await?;
        // file_fdw foreign tables read a server file, or run a program,
        // on every read: COPY FROM in disguise.
        for row in deparsed(
            conn,
            "SELECT n.nspname, c.relname, EXISTS (SELECT FROM \
                 pg_catalog.pg_options_to_table(ft.ftoptions) o WHERE o.option_name = 'program') \
                 FROM pg_catalog.pg_foreign_table ft \
                 JOIN pg_catalog.pg_class c ON c.oid = ft.ftrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver \
                 JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw \
                 JOIN pg_catalog.pg_proc h ON h.oid = w.fdwhandler \
                 WHERE h.proname = 'file_fdw_handler'",
        )
        .await?
        {
            if let [Some(s), Some(n), Some(program)] = row.as_slice() {
                cat.file_tables
                    .insert((s.clone(), n.clone()), program == "t");
            }
        }
        // Views' definitions (a materialized view's read runs nothing of
        // its definition: only REFRESH does, and that is a write; its
        // definition is kept for masking's lineage only: its rows are
        // copies of the columns it names).
        let relations = deparsed(
            conn,
            "SELECT n.nspname, c.relname, c.relkind, \
             CASE WHEN c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             THEN pg_catalog.pg_get_viewdef(c.oid) END \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')",
        )
        .await?;
        // Indexes and their tables: brin_summarize_range('idx', ...) and
        // the like read or write the table of the index they are given.
        for row in deparsed(
            conn,
            "SELECT n.nspname, i.relname, t.relname FROM pg_catalog.pg_index x \
             JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace \
             JOIN pg_catalog.pg_class t ON t.oid = x.indrelid",
        )
        .await?
        {
            if let [Some(s), Some(i), Some(t)] = row.as_slice() {
                cat.indexes
                    .entry(i.clone())
                    .or_default()
                    .push((s.clone(), t.clone()));
            }
        }
        // Tables DDL on a type goes through (see `type_tables`).
        for row in deparsed(
            conn,
            "WITH RECURSIVE d(root, t) AS ( \
             SELECT oid, oid FROM pg_catalog.pg_type WHERE typtype = 'd' \
             UNION SELECT d.root, s.oid FROM d \
             JOIN pg_catalog.pg_type s ON s.typbasetype = d.t AND s.typtype = 'd'), \
             x(ty, rel) AS ( \
             SELECT d.root, a.attrelid FROM d JOIN pg_catalog.pg_attribute a ON a.atttypid = d.t \
             AND a.attnum > 0 AND NOT a.attisdropped \
             UNION SELECT c.reloftype, c.oid FROM pg_catalog.pg_class c WHERE c.reloftype <> 0) \
             SELECT tn.nspname, t.typname, n.nspname, c.relname FROM x \
             JOIN pg_catalog.pg_type t ON t.oid = x.ty \
             JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
             JOIN pg_catalog.pg_class c ON c.oid = x.rel AND c.relkind IN ('r', 'm', 'p', 'f') \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
        )
        .await?
        {
            if let [Some(ts), Some(t), Some(s), Some(r)] = row.as_slice() {
                cat.type_tables.entry(t.clone()).or_default().push((
                    ts.clone(),
                    s.clone(),
                    r.clone(),
                ));
            }
        }
        // Columns of user tables and views, for masking's lineage.
        for row in conn
            .simple_query(
                "SELECT n.nspname, c.relname, a.attname, a.atttypid, c.oid, a.attnum \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND a.attnum > 0 \
                 AND NOT a.attisdropped \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                 ORDER BY n.nspname, c.relname, a.attnum",
            )
            .await?
        {
            if let [Some(s), Some(t), Some(a), Some(ty), Some(oid), Some(attnum)] = row.as_slice() {
                let key = (s.clone(), t.clone());
                if let Ok(oid) = oid.parse::<u32>() {
                    cat.rel_oids.insert(key.clone(), oid);
                    cat.oid_rels.insert(oid, key.clone());
                }
                cat.columns.entry(key).or_default().push(Column {
                    name: a.clone(),
                    type_oid: ty.parse().unwrap_or(0),
                    attnum: attnum.parse().unwrap_or(0),
                });
            }
        }
        load_key_constraints(conn, &mut cat).await?;
        let mut writes: HashMap<String, WriteEffects> = HashMap::new();
        for row in deparsed(
            conn,
            "SELECT n.nspname || '.' || c.relname, pn.nspname, p.proname \
                 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE NOT t.tgisinternal",
        )
        .await?
        {
            if let [Some(t), Some(fs), Some(f)] = row.as_slice() {
                let triggers = &mut writes.entry(t.clone()).or_default().triggers;
                let f = (fs.clone(), f.clone());
                if !triggers.contains(&f) {
                    triggers.push(f);
                }
            }
        }
        // What an INSERT or UPDATE evaluates, per table, as SQL
        // expressions (judged below, once the catalog knows every
        // function, type and operator).
        let expressions = deparsed(
            conn,
                "SELECT n.nspname || '.' || c.relname, pg_catalog.string_agg(e.expr, ', ') \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 CROSS JOIN LATERAL ( \
                 SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expr \
                 FROM pg_catalog.pg_attrdef d WHERE d.adrelid = c.oid \
                 UNION ALL SELECT pg_catalog.pg_get_expr(k.conbin, k.conrelid) \
                 FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c' \
                 UNION ALL SELECT pg_catalog.pg_get_expr(i.indexprs, i.indrelid) \
                 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indexprs IS NOT NULL \
                 UNION ALL SELECT pg_catalog.pg_get_expr(i.indpred, i.indrelid) \
                 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indpred IS NOT NULL \
                 UNION ALL SELECT CASE WHEN tn.nspname NOT IN ('pg_catalog', 'information_schema') \
                 THEN 'NULL::' || pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(t.typname) END \
                 || coalesce(', ' || pg_catalog.pg_get_expr(t.typdefaultbin, 0), '') \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 AND (tn.nspname NOT IN ('pg_catalog', 'information_schema') OR t.typdefaultbin IS NOT NULL) \
                 ) e \
                 WHERE c.relkind IN ('r', 'p', 'm', 'f') AND e.expr IS NOT NULL \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                 GROUP BY 1",
            )
            .await?;
        // Functions an INSERT or UPDATE runs outside expressions: the
        // support functions of the user operator classes of the table's
        // indexes, the operators of its exclusion constraints.
        for row in deparsed(
            conn,
            "SELECT n.nspname || '.' || c.relname, pn.nspname, p.proname \
                 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_opclass oc ON oc.oid = ANY (i.indclass::pg_catalog.oid[]) \
                 JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily \
                 JOIN pg_catalog.pg_proc p ON p.oid = ap.amproc \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema') \
                 UNION \
                 SELECT n.nspname || '.' || c.relname, pn.nspname, p.proname \
                 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_operator o ON o.oid = ANY (k.conexclop) \
                 JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE k.contype = 'x' AND pn.nspname NOT IN ('pg_catalog', 'information_schema')",
        )
        .await?
        {
            if let [Some(t), Some(fs), Some(f)] = row.as_slice() {
                let funcs = &mut writes.entry(t.clone()).or_default().functions;
                let f = (fs.clone(), f.clone());
                if !funcs.contains(&f) {
                    funcs.push(f);
                }
            }
        }
        // Rules other than a view's own, on tables and views.
        for row in deparsed(
            conn,
            "SELECT n.nspname || '.' || c.relname, r.rulename, r.ev_type, \
             pg_catalog.pg_get_ruledef(r.oid) \
             FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE r.rulename <> '_RETURN' AND r.ev_enabled <> 'D'",
        )
        .await?
        {
            if let [Some(t), Some(name), Some(ev), Some(def)] = row.as_slice() {
                let events = match ev.as_str() {
                    "2" => events::UPDATE,
                    "3" => events::INSERT,
                    "4" => events::DELETE,
                    _ => events::ANY,
                };
                let (condition, actions) = rule_statements(def);
                writes.entry(t.clone()).or_default().rules.push(Rule {
                    name: name.clone(),
                    events,
                    condition,
                    actions,
                });
            }
        }
        // Foreign keys whose actions write the referencing table (as its
        // owner) when the referenced one is written; TRUNCATE ... CASCADE
        // empties every referencing table.
        for row in deparsed(
            conn,
            "SELECT rn.nspname || '.' || r.relname, cn.nspname, c.relname, \
                 k.confdeltype, k.confupdtype \
                 FROM pg_catalog.pg_constraint k \
                 JOIN pg_catalog.pg_class r ON r.oid = k.confrelid \
                 JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace \
                 JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
                 JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace \
                 WHERE k.contype = 'f'",
        )
        .await?
        {
            if let [Some(t), Some(cs), Some(cn), Some(del), Some(upd)] = row.as_slice() {
                writes
                    .entry(t.clone())
                    .or_default()
                    .referenced_by
                    .push(ForeignKey {
                        schema: cs.clone(),
                        table: cn.clone(),
                        on_delete: del.bytes().next().unwrap_or(b'c'),
                        on_update: upd.bytes().next().unwrap_or(b'c'),
                    });
            }
        }
        // What foreign key checks run: the keys' equality operators (with
        // their selectivity estimators, which planning the check's query
        // calls), the support functions of the operator classes of the
        // indexes of the table the check looks in, and the casts between
        // a key column's type and the operator's (a referencing column
        // whose type differs from the referenced one's is cast to it, as
        // `fk.c::type` in the check's query, through whatever cast
        // function pg_cast holds for that pair now, implicit or not; also
        // for a domain's base type and an array's elements). 'f': run by
        // writes of the referencing table, 'p': of the referenced one.
        for row in deparsed(
            conn,
            "WITH RECURSIVE k AS (SELECT conrelid, confrelid, conpfeqop, conppeqop, conffeqop \
                 FROM pg_catalog.pg_constraint WHERE contype = 'f'), \
                 kc(conrelid, confrelid, src, dst) AS ( \
                 SELECT c.conrelid, c.confrelid, a.atttypid, v.input FROM pg_catalog.pg_constraint c \
                 CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(c.conkey), pg_catalog.unnest(c.confkey), \
                 pg_catalog.unnest(c.conpfeqop), pg_catalog.unnest(c.conppeqop), \
                 pg_catalog.unnest(c.conffeqop)) AS u(fk, pk, pf, pp, ff) \
                 CROSS JOIN LATERAL (VALUES (c.conrelid, u.fk, u.pf), (c.conrelid, u.fk, u.ff), \
                 (c.confrelid, u.pk, u.pf), (c.confrelid, u.pk, u.pp)) AS w(rel, att, op) \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = w.rel AND a.attnum = w.att \
                 JOIN pg_catalog.pg_operator o ON o.oid = w.op \
                 CROSS JOIN LATERAL (VALUES (o.oprleft), (o.oprright)) AS v(input) \
                 WHERE c.contype = 'f' \
                 UNION \
                 SELECT kc.conrelid, kc.confrelid, n.src, n.dst FROM kc \
                 JOIN pg_catalog.pg_type s ON s.oid = kc.src JOIN pg_catalog.pg_type d ON d.oid = kc.dst \
                 CROSS JOIN LATERAL (VALUES \
                 (CASE WHEN s.typtype = 'd' THEN s.typbasetype END, kc.dst), \
                 (CASE WHEN s.typelem <> 0 AND d.typelem <> 0 AND s.typlen = -1 AND d.typlen = -1 \
                 THEN s.typelem END, d.typelem)) AS n(src, dst) \
                 WHERE n.src IS NOT NULL), \
                 casts(conrelid, confrelid, f) AS ( \
                 SELECT kc.conrelid, kc.confrelid, pc.castfunc::pg_catalog.oid FROM kc \
                 JOIN pg_catalog.pg_cast pc ON pc.castsource = kc.src AND pc.casttarget = kc.dst \
                 WHERE kc.src <> kc.dst AND pc.castfunc <> 0), \
                 x(rel, side, f) AS ( \
                 SELECT conrelid, 'f', f FROM casts UNION SELECT confrelid, 'p', f FROM casts UNION \
                 SELECT k.conrelid, 'f', v.f FROM k \
                 JOIN pg_catalog.pg_operator o ON o.oid = ANY (k.conpfeqop || k.conffeqop) \
                 CROSS JOIN LATERAL (VALUES (o.oprcode::pg_catalog.oid), (o.oprrest::pg_catalog.oid), \
                 (o.oprjoin::pg_catalog.oid)) v(f) \
                 UNION SELECT k.confrelid, 'p', v.f FROM k \
                 JOIN pg_catalog.pg_operator o ON o.oid = ANY (k.conpfeqop || k.conppeqop) \
                 CROSS JOIN LATERAL (VALUES (o.oprcode::pg_catalog.oid), (o.oprrest::pg_catalog.oid), \
                 (o.oprjoin::pg_catalog.oid)) v(f) \
                 UNION SELECT k.conrelid, 'f', ap.amproc::pg_catalog.oid FROM k \
                 JOIN pg_catalog.pg_index i ON i.indrelid = k.confrelid \
                 JOIN pg_catalog.pg_opclass oc ON oc.oid = ANY (i.indclass::pg_catalog.oid[]) \
                 JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily \
                 UNION SELECT k.confrelid, 'p', ap.amproc::pg_catalog.oid FROM k \
                 JOIN pg_catalog.pg_index i ON i.indrelid = k.conrelid \
                 JOIN pg_catalog.pg_opclass oc ON oc.oid = ANY (i.indclass::pg_catalog.oid[]) \
                 JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily) \
                 SELECT n.nspname || '.' || c.relname, x.side, pn.nspname, p.proname \
                 FROM x JOIN pg_catalog.pg_class c ON c.oid = x.rel \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_proc p ON p.oid = x.f \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema')",
        )
        .await?
        {
            if let [Some(t), Some(side), Some(fs), Some(f)] = row.as_slice() {
                let ev = match side.as_str() {
                    "f" => events::INSERT | events::UPDATE | events::MAINTAIN,
                    _ => events::UPDATE | events::DELETE,
                };
                let funcs = &mut writes.entry(t.clone()).or_default().key_functions;
                let f = (ev, (fs.clone(), f.clone()));
                if !funcs.contains(&f) {
                    funcs.push(f);
                }
            }
        }
        // What a lookup through a table's indexes runs (see
        // `WriteEffects::lookup_functions`).
        for row in deparsed(
            conn,
            "WITH uf(f, fn) AS ( \
                 SELECT a.amopfamily, v.fn FROM pg_catalog.pg_amop a \
                 JOIN pg_catalog.pg_operator o ON o.oid = a.amopopr \
                 CROSS JOIN LATERAL (VALUES (o.oprcode::pg_catalog.oid), (o.oprrest::pg_catalog.oid), \
                 (o.oprjoin::pg_catalog.oid)) v(fn) \
                 UNION SELECT ap.amprocfamily, ap.amproc::pg_catalog.oid FROM pg_catalog.pg_amproc ap \
                 UNION SELECT a.amopfamily, ap.amproc::pg_catalog.oid FROM pg_catalog.pg_amop a \
                 JOIN pg_catalog.pg_amop b ON b.amopopr = a.amopopr \
                 JOIN pg_catalog.pg_am am ON am.oid = b.amopmethod AND am.amname = 'hash' \
                 JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = b.amopfamily), \
                 u AS (SELECT uf.f, pn.nspname, p.proname FROM uf \
                 JOIN pg_catalog.pg_proc p ON p.oid = uf.fn \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema')) \
                 SELECT DISTINCT n.nspname || '.' || c.relname, u.nspname, u.proname \
                 FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_opclass oc ON oc.oid = ANY (i.indclass::pg_catalog.oid[]) \
                 JOIN u ON u.f = oc.opcfamily \
                 JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        )
        .await?
        {
            if let [Some(t), Some(fs), Some(f)] = row.as_slice() {
                let funcs = &mut writes.entry(t.clone()).or_default().lookup_functions;
                let f = (fs.clone(), f.clone());
                if !funcs.contains(&f) {
                    funcs.push(f);
                }
            }
        }
        // Domain defaults that call a function (checked once the
        // catalog knows every function).
        let domain_defaults = deparsed(
            conn,
            "SELECT tn.nspname, t.typname, pg_catalog.pg_get_expr(t.typdefaultbin, 0) \
                 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
                 WHERE t.typtype = 'd' AND t.typdefaultbin IS NOT NULL",
        )
        .await?;
        for row in deparsed(
            conn,
            "SELECT pn.nspname, p.proname FROM pg_catalog.pg_event_trigger e \
                 JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE e.evtenabled <> 'D'",
        )
        .await?
        {
            if let [Some(fs), Some(f)] = row.as_slice() {
                let f = (fs.clone(), f.clone());
                if !cat.event_triggers.contains(&f) {
                    cat.event_triggers.push(f);
                }
            }
        }
        let user_types = deparsed(
            conn,
            "SELECT t.oid, tn.nspname, t.typname FROM pg_catalog.pg_type t \
                 JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
                 WHERE tn.nspname NOT IN ('pg_catalog', 'information_schema') \
                 OR t.oid >= 16384",
        )
        .await?;
        let inherits = deparsed(
            conn,
            "SELECT cn.nspname || '.' || c.relname, pn.nspname || '.' || p.relname \
                 FROM pg_catalog.pg_inherits i \
                 JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace \
                 JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
                 JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'f')",
        )
        .await?;
        control.close().await;
        for row in &inherits {
            if let [Some(child), Some(parent)] = row.as_slice() {
                cat.add_inheritance(child, parent);
            }
        }
        for row in &domain_checks {
            if let [Some(ts), Some(tn), Some(def)] = row.as_slice() {
                let expr = def.strip_prefix("CHECK ").unwrap_or(def);
                for f in called_functions(&format!("SELECT {expr}"), &cat) {
                    let f = cat.placed(f);
                    cat.add_type_function(ts, tn, f);
                }
            }
        }
        // Only now are the types' functions known.
        for row in &user_types {
            if let [Some(oid), Some(s), Some(n)] = row.as_slice() {
                if let Ok(oid) = oid.parse::<u32>() {
                    if !cat.type_functions(Some(s), n).is_empty() {
                        cat.types_by_oid.insert(oid, (s.clone(), n.clone()));
                    } else {
                        cat.plain_user_types.insert(oid);
                    }
                }
            }
        }
        for (i, types, defaults) in implied {
            let mut funcs: Vec<FuncRef> = Vec::new();
            for ty in types.iter().flat_map(|t| t.split(' ')) {
                if let Some((schema, name)) = ty.split_once('.') {
                    funcs.extend(cat.type_functions(Some(schema), name));
                }
            }
            if let Some(defaults) = defaults {
                for f in called_functions(&format!("SELECT {defaults}"), &cat) {
                    funcs.push(cat.placed(f));
                }
            }
            funcs.dedup();
            cat.funcs[i].implied = funcs;
        }
        cat.lists_user_relations = true;
        let mut view_defs = Vec::new();
        for row in &relations {
            if let [Some(s), Some(n), Some(k), def] = row.as_slice() {
                cat.add_relation(s, n, k.bytes().next().unwrap_or(b'r'));
                if let Some(def) = def {
                    cat.view_defs
                        .insert((s.clone(), n.clone()), def.as_str().into());
                    if k == "v" {
                        view_defs.push(((s.clone(), n.clone()), def.clone()));
                    }
                }
            }
        }
        for row in &policies {
            if let [Some(s), Some(n), Some(exprs)] = row.as_slice() {
                view_defs.push(((s.clone(), n.clone()), format!("SELECT {exprs}")));
            }
        }
        cat.add_views(view_defs);
        for row in &domain_defaults {
            if let [Some(s), Some(n), Some(expr)] = row.as_slice() {
                let sql = format!("SELECT {expr}");
                if expressions_matter(&sql, &cat) {
                    cat.domain_defaults
                        .entry(n.clone())
                        .or_default()
                        .push((s.clone(), sql));
                }
            }
        }
        // A table's expressions are kept only when one of them does more
        // than a built-in computation (so a write to a table whose only
        // default is `now()` costs nothing more).
        for row in &expressions {
            if let [Some(t), Some(exprs)] = row.as_slice() {
                let sql = format!("SELECT {exprs}");
                if expressions_matter(&sql, &cat) {
                    writes.entry(t.clone()).or_default().expressions = Some(sql);
                }
            }
        }
        cat.writes = writes.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        Ok(cat)
    }

    /// A function named in a definition the catalog connection printed:
    /// an unqualified name is one visible on its search_path, pg_catalog
    /// first, then public.
    fn placed(&self, (schema, name): FuncName) -> FuncRef {
        let schema = schema.unwrap_or_else(|| {
            if self.functions(Some("pg_catalog"), &name).is_empty() {
                "public".into()
            } else {
                "pg_catalog".into()
            }
        });
        (schema, name)
    }

    fn add_type_function(&mut self, schema: &str, name: &str, f: FuncRef) {
        let entry = self.types.entry(name.to_owned()).or_default();
        match entry.iter_mut().find(|(s, _)| s == schema) {
            Some((_, v)) => v.push(f),
            None => entry.push((schema.to_owned(), vec![f])),
        }
    }

    /// Records the functions each view calls, including through the views
    /// it reads (iterated to a fixed point, bounded).
    fn add_views(&mut self, defs: Vec<((String, String), String)>) {
        let mut direct: HashMap<ViewKey, (Vec<FuncName>, Vec<String>)> = HashMap::new();
        let mut view_relations = HashMap::new();
        for (key, def) in defs {
            let (funcs, rels) = match classify::classify(&def, self) {
                Ok(stmts) => {
                    if self.is_view(Some(&key.0), &key.1) {
                        if let Some(base) = view_base(&def) {
                            view_relations.insert(key.clone(), vec![base]);
                        }
                    }
                    stmts
                        .into_iter()
                        .fold((Vec::new(), Vec::new()), |(mut f, mut r), st| {
                            f.extend(st.functions.iter().map(|n| split_name(n)));
                            r.extend(st.relations.into_iter().map(|r| r.name));
                            (f, r)
                        })
                }
                // A view pgward cannot parse is treated as calling an
                // unknown function: fail closed.
                Err(_) => (vec![(None, "pgward_unparsable_view".into())], Vec::new()),
            };
            direct.insert(key, (funcs, rels));
        }
        // Views reading file_fdw tables (by name, in any schema), through
        // views of views.
        for _ in 0..16 {
            let mut changed = false;
            for (key, (_, rels)) in &direct {
                let program = rels
                    .iter()
                    .filter_map(|r| self.file_table(None, r))
                    .reduce(|a, b| a || b);
                if let Some(program) = program {
                    let now = program || self.file_tables.get(key) == Some(&true);
                    changed |= self.file_tables.insert(key.clone(), now) != Some(now);
                }
            }
            if !changed {
                break;
            }
        }
        let mut full: HashMap<ViewKey, Vec<FuncName>> = direct
            .iter()
            .map(|(k, (f, _))| (k.clone(), f.clone()))
            .collect();
        for _ in 0..16 {
            let mut changed = false;
            for (key, (_, rels)) in &direct {
                let mut extra = Vec::new();
                for ((_, vn), vf) in &full {
                    if rels.contains(vn) {
                        extra.extend(vf.iter().cloned());
                    }
                }
                let mine = full.entry(key.clone()).or_default();
                for f in extra {
                    if !mine.contains(&f) {
                        mine.push(f);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        full.retain(|_, v| !v.is_empty());
        self.views = full;
        self.view_relations = view_relations;
    }
}

/// Runs a catalog query. Deparsing a view, a rule, a BEGIN ATOMIC body or
/// an expression with a sub-select locks the relations it names
/// (ruleutils' AcquireRewriteLocks). When a lock is not granted within the
/// Unique and exclusion indexes, and foreign keys, of user tables (see
/// `KeyConstraint`): which columns each involves. An index's columns are
/// its key columns and those its expressions and predicate depend on
/// (pg_depend), or every column when one of them references the whole
/// row.
async fn load_key_constraints(
    conn: &mut crate::upstream::UpstreamConn,
    cat: &mut Catalog,
) -> Result<(), UpstreamError> {
    const USER: &str = "NOT IN ('pg_catalog', 'information_schema', 'pg_toast')";
    // (index or constraint OID) → what it is so far.
    let mut found: std::collections::BTreeMap<u32, KeyConstraint> = Default::default();
    let rows = conn
        .simple_query(&format!(
            "SELECT x.indexrelid, n.nspname, c.relname, ic.relname, k.conname, \
                 x.indisexclusion, a.attname, a.attnum = ANY (x.indkey::pg_catalog.int2[]) \
             FROM pg_catalog.pg_index x \
             JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid \
             LEFT JOIN pg_catalog.pg_constraint k ON k.conindid = x.indexrelid \
                 AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x') \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum > 0 \
                 AND NOT a.attisdropped \
             WHERE (x.indisunique OR x.indisexclusion) AND n.nspname {USER} \
             AND (a.attnum = ANY (x.indkey::pg_catalog.int2[]) \
                 OR EXISTS (SELECT FROM pg_catalog.pg_depend d \
                     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                     AND d.objid = x.indexrelid \
                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                     AND d.refobjid = x.indrelid AND d.refobjsubid = a.attnum) \
                 OR pg_catalog.textregexeq(COALESCE(x.indexprs::pg_catalog.text, '') \
                     OPERATOR(pg_catalog.||) COALESCE(x.indpred::pg_catalog.text, ''), \
                     ':varattno 0[ }}]'))"
        ))
        .await?;
    for row in rows {
        let [Some(oid), Some(s), Some(t), Some(index), con, Some(excl), Some(a), Some(plain)] =
            row.as_slice()
        else {
            continue;
        };
        let Ok(oid) = oid.parse::<u32>() else {
            continue;
        };
        let k = found.entry(oid).or_insert_with(|| KeyConstraint {
            kind: if excl == "t" {
                KeyKind::Exclusion
            } else {
                KeyKind::Unique
            },
            names: std::iter::once(index.clone()).chain(con.clone()).collect(),
            table: (s.clone(), t.clone()),
            columns: Vec::new(),
            plain: Vec::new(),
            referenced: None,
        });
        k.columns.push(a.clone());
        if plain == "t" {
            k.plain.push(a.clone());
        }
    }
    for k in std::mem::take(&mut found).into_values() {
        cat.add_key_constraint(k);
    }
    // Foreign keys: one row per column of either side ('f': referencing,
    // 'p': referenced).
    let rows = conn
        .simple_query(&format!(
            "SELECT k.oid, k.conname, 'f', n.nspname, c.relname, a.attname \
             FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid \
                 AND a.attnum = ANY (k.conkey) \
             WHERE k.contype = 'f' AND n.nspname {USER} \
             UNION ALL SELECT k.oid, k.conname, 'p', n.nspname, c.relname, a.attname \
             FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class c ON c.oid = k.confrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid \
                 AND a.attnum = ANY (k.confkey) \
             WHERE k.contype = 'f' AND n.nspname {USER}"
        ))
        .await?;
    for row in rows {
        let [Some(oid), Some(name), Some(side), Some(s), Some(t), Some(a)] = row.as_slice() else {
            continue;
        };
        let Ok(oid) = oid.parse::<u32>() else {
            continue;
        };
        let k = found.entry(oid).or_insert_with(|| KeyConstraint {
            kind: KeyKind::ForeignKey,
            names: vec![name.clone()],
            table: (String::new(), String::new()),
            columns: Vec::new(),
            plain: Vec::new(),
            referenced: Some(((String::new(), String::new()), Vec::new())),
        });
        if side == "f" {
            k.table = (s.clone(), t.clone());
            k.columns.push(a.clone());
            k.plain.push(a.clone());
        } else if let Some((table, cols)) = &mut k.referenced {
            *table = (s.clone(), t.clone());
            cols.push(a.clone());
        }
    }
    for k in found.into_values() {
        cat.add_key_constraint(k);
    }
    Ok(())
}

/// control connection's `lock_timeout` (a session holds it in an open
/// block, and may be waiting for this very reload), the query runs again
/// with each `pg_catalog.pg_get_*(...)` call replaced by text pgward
/// judges `unknown` (a call of a function no catalog has, a definition
/// that does not parse): what could not be read is refused until a later
/// reload reads it, never taken as harmless.
async fn deparsed(
    conn: &mut crate::upstream::UpstreamConn,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
    match conn.simple_query(sql).await {
        Err(UpstreamError::Server { code, .. }) if code == "55P03" && sql.contains(DEPARSE) => {
            tracing::warn!(
                "catalog load: relations a definition names are locked; what it defines is unknown until a later reload"
            );
            conn.simple_query(&without_deparsing(sql)).await
        }
        other => other,
    }
}

const DEPARSE: &str = "pg_catalog.pg_get_";

/// Named by each marker `without_deparsing` puts in place of what it
/// could not read, but the one of rules and PL/pgSQL definitions.
const UNREAD: &str = "pgward_locked_at_load";
/// The marker of rules and PL/pgSQL definitions (neither parses).
const UNREAD_DEFINITION: &str = "pgward could not read this: locked at load";

/// Whether `text` (a view's definition, a function's body) is, or holds,
/// a marker of what the last load could not read (see `deparsed`): who
/// reads it for what it does (masking's lineage) must refuse it, never
/// take it as harmless.
pub fn unread_at_load(text: &str) -> bool {
    text.contains(UNREAD) || text.contains(UNREAD_DEFINITION)
}

/// `sql` with each `pg_catalog.pg_get_*(...)` call replaced by a marker
/// pgward judges unknown wherever the text lands: as an expression, a
/// view's or a body's SQL (`SELECT ...`), a CHECK, a PL/pgSQL definition
/// or a rule (neither of which then parses).
fn without_deparsing(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(DEPARSE) {
        out.push_str(&rest[..at]);
        let call = &rest[at..];
        let name_end = call.find('(').unwrap_or(call.len());
        let mut depth = 0usize;
        let mut end = call.len();
        for (i, ch) in call.char_indices().skip(name_end) {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let marker = match &call[DEPARSE.len()..name_end] {
            "viewdef" | "function_sqlbody" => format!("'SELECT {UNREAD}()'"),
            "constraintdef" => format!("'CHECK ({UNREAD}())'"),
            "ruledef" | "functiondef" => format!("'{UNREAD_DEFINITION}'"),
            _ => format!("'{UNREAD}()'"),
        };
        out.push_str(&marker);
        rest = &call[end..];
    }
    out.push_str(rest);
    out
}

fn split_name(n: &str) -> (Option<String>, String) {
    match n.rsplit_once('.') {
        Some((s, f)) => (Some(s.to_owned()), f.to_owned()),
        None => (None, n.to_owned()),
    }
}

fn called_functions(sql: &str, cat: &Catalog) -> Vec<(Option<String>, String)> {
    match classify::classify(sql, cat) {
        Ok(stmts) => stmts
            .iter()
            .flat_map(|s| s.functions.iter().map(|n| split_name(n)))
            .collect(),
        Err(_) => vec![(None, "pgward_unparsable_check".into())],
    }
}

/// The base relation of a view that PostgreSQL may write through: the one
/// table or view its top-level FROM names (a view with anything else in
/// FROM is not updatable).
fn view_base(def: &str) -> Option<(Option<String>, String)> {
    use pg_query::protobuf::node::Node;
    let parsed = pg_query::parse(def, 0).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    let Some(Node::SelectStmt(select)) = raw.stmt.as_ref()?.node.as_ref() else {
        return None;
    };
    let [from] = select.from_clause.as_slice() else {
        return None;
    };
    let Some(Node::RangeVar(rv)) = from.node.as_ref() else {
        return None;
    };
    let schema = Some(rv.schemaname.clone()).filter(|s| !s.is_empty());
    Some((schema, rv.relname.clone()))
}

/// Whether expressions a write evaluates (as one `SELECT`) do more than a
/// built-in computation: call a user function, run a dangerous built-in,
/// change or read settings, read tables, or anything but read and write
/// (a write runs them, so a VOLATILE built-in such as nextval adds
/// nothing). What does not parse matters (fail closed).
fn expressions_matter(sql: &str, cat: &Catalog) -> bool {
    let Ok(stmts) = classify::classify(sql, cat) else {
        return true;
    };
    stmts.iter().any(|st| {
        !st.dangerous.is_empty()
            || !st.settings.is_empty()
            || !st.hidden_reads.is_empty()
            || !st.relations.is_empty()
            || st.unknown_function
            || st
                .reasons
                .iter()
                .any(|r| !matches!(r.class, super::Class::Read | super::Class::Write))
            || st.functions.iter().any(|f| {
                let (schema, name) = split_name(f);
                cat.functions(schema.as_deref(), &name)
                    .iter()
                    .any(|fi| !matches!(&*fi.schema, "pg_catalog" | "information_schema"))
            })
    })
}

/// The condition (as `SELECT WHERE cond`) and actions of a rule, from
/// `pg_get_ruledef`, each as SQL. A definition pgward cannot take apart is
/// kept whole, to be judged unknown.
fn rule_statements(def: &str) -> (Option<String>, Vec<String>) {
    use pg_query::protobuf::node::Node;
    type Taken = (Option<String>, Vec<String>);
    let taken = std::panic::catch_unwind(|| -> Option<Taken> {
        let parsed = pg_query::parse(def, 0).ok()?;
        let [raw] = parsed.protobuf.stmts.as_slice() else {
            return None;
        };
        let Some(Node::RuleStmt(rule)) = raw.stmt.as_ref()?.node.as_ref() else {
            return None;
        };
        let mut condition = None;
        if let Some(cond) = &rule.where_clause {
            let template = pg_query::parse("SELECT WHERE true", 0).ok()?;
            let mut select = match template
                .protobuf
                .stmts
                .first()?
                .stmt
                .as_ref()?
                .node
                .as_ref()?
            {
                Node::SelectStmt(s) => s.clone(),
                _ => return None,
            };
            select.where_clause = Some(cond.clone());
            condition = Some(Node::SelectStmt(select).deparse(Default::default()).ok()?);
        }
        let mut actions = Vec::new();
        for action in &rule.actions {
            actions.push(action.node.as_ref()?.deparse(Default::default()).ok()?);
        }
        Some((condition, actions))
    });
    match taken {
        Ok(Some(taken)) => taken,
        // Not SQL: judged unknown.
        _ => (
            None,
            vec![format!("pgward cannot take this rule apart: {def}")],
        ),
    }
}

fn time_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix time {secs}")
}

/// The catalog of one database, refreshed in the background.
///
/// Besides the periodic reloads, a session that saw a statement change the
/// catalog commit (see `changed`) makes the catalog stale: every session
/// of the database then waits for a reload (`wait_fresh`) before its next
/// statement is judged. The common path costs two atomic loads
/// (`is_stale`).
pub struct CatalogSlot {
    database: String,
    current: RwLock<Arc<Catalog>>,
    /// Bumped after every reload, so sessions notice without locking.
    generation: AtomicU64,
    loaded_at: Mutex<Instant>,
    refreshing: AtomicBool,
    /// Catalog changes sessions saw commit, counted.
    changes: AtomicU64,
    /// The value of `changes` when the current catalog began loading:
    /// every change up to it is in the catalog.
    fresh_for: AtomicU64,
    /// Reloads that failed while the catalog was stale, counted, and the
    /// last one's error.
    failures: AtomicU64,
    failure: Mutex<String>,
    /// Wakes the sessions waiting for a reload.
    reloaded: tokio::sync::Notify,
}

/// How long a session waits for its database's catalog to be reloaded
/// after a change before its statement is refused.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

impl CatalogSlot {
    /// A slot holding `cat` for `database`, loaded now (the upstream to
    /// reload it from is handed to `refresh`, `changed` and `wait_fresh`).
    fn new(database: &str, cat: Catalog) -> CatalogSlot {
        CatalogSlot {
            database: database.to_owned(),
            current: RwLock::new(Arc::new(cat)),
            generation: AtomicU64::new(0),
            loaded_at: Mutex::new(Instant::now()),
            refreshing: AtomicBool::new(false),
            changes: AtomicU64::new(0),
            fresh_for: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failure: Mutex::new(String::new()),
            reloaded: tokio::sync::Notify::new(),
        }
    }

    /// A slot holding `cat` for `database`, loaded now (tests, and
    /// sessions without an upstream to load from).
    pub fn fixed(database: &str, cat: Catalog) -> Arc<CatalogSlot> {
        Arc::new(CatalogSlot::new(database, cat))
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn age(&self) -> Duration {
        self.loaded_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Whether a change some session saw commit is not in the catalog yet.
    pub fn is_stale(&self) -> bool {
        self.fresh_for.load(Ordering::Acquire) != self.changes.load(Ordering::Acquire)
    }

    /// A statement that changes the catalog has committed (a session saw
    /// its block end): reload now, and until the reload is done every
    /// session's next statement waits (`wait_fresh`).
    pub fn changed(self: &Arc<Self>, upstream: &Upstream) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.reload(upstream);
    }

    /// Reloads in the background unless a reload ran in the last `min_gap`
    /// (a flood of unknown names must not hammer the database).
    pub fn refresh(self: &Arc<Self>, upstream: &Upstream, min_gap: Duration) {
        if self.age() < min_gap {
            return;
        }
        self.reload(upstream);
    }

    /// Starts a reload unless one is running; the running one loads again
    /// when a change came in while it loaded.
    fn reload(self: &Arc<Self>, upstream: &Upstream) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let slot = self.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            loop {
                let target = slot.changes.load(Ordering::Acquire);
                let loaded = Catalog::load(&upstream, &slot.database).await;
                let ok = loaded.is_ok();
                match loaded {
                    Ok(mut cat) => {
                        // Outside the lock sessions read through: reloads
                        // of a slot run one at a time (`refreshing`).
                        cat.follow_renames(&slot.get());
                        *slot.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cat);
                        slot.generation.fetch_add(1, Ordering::AcqRel);
                        slot.fresh_for.fetch_max(target, Ordering::AcqRel);
                    }
                    Err(e) => {
                        tracing::warn!(
                            database = %slot.database,
                            "catalog reload failed, keeping the previous catalog: {e}"
                        );
                        *slot.failure.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                        slot.failures.fetch_add(1, Ordering::AcqRel);
                    }
                }
                *slot.loaded_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                slot.refreshing.store(false, Ordering::Release);
                slot.reloaded.notify_waiters();
                // A change noted while it loaded: load again (a failure is
                // retried by the next session that waits).
                if !(ok && slot.is_stale() && !slot.refreshing.swap(true, Ordering::AcqRel)) {
                    break;
                }
            }
        });
    }

    /// Waits until every change sessions saw commit is in the catalog,
    /// starting a reload if none is running. Errs (to be refused, never
    /// judged against the stale catalog) when the reload fails or takes
    /// longer than `RELOAD_WAIT`.
    pub async fn wait_fresh(self: Arc<Self>, upstream: Upstream) -> Result<(), String> {
        let waited = crate::timer::timeout(RELOAD_WAIT, async {
            loop {
                let notified = self.reloaded.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !self.is_stale() {
                    return Ok(());
                }
                let failures = self.failures.load(Ordering::Acquire);
                self.reload(&upstream);
                notified.await;
                if !self.is_stale() {
                    return Ok(());
                }
                if self.failures.load(Ordering::Acquire) != failures {
                    let why = self
                        .failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    return Err(why);
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(format!(
                "the reload took longer than {} s",
                RELOAD_WAIT.as_secs()
            ))
        })
    }
}

/// Every table reachable from `from` along `links`, once each.
fn walk<'a>(links: &'a HashMap<String, Vec<String>>, from: &str) -> Vec<&'a str> {
    let mut found: Vec<&str> = Vec::new();
    if links.is_empty() || !links.contains_key(from) {
        // Most tables: nothing to allocate.
        return found;
    }
    let mut next = vec![from];
    while let Some(at) = next.pop() {
        for r in links.get(at).into_iter().flatten() {
            if r != from && !found.contains(&r.as_str()) {
                found.push(r);
                next.push(r);
            }
        }
    }
    found
}

/// Catalogs by database, shared by all sessions.
pub struct CatalogStore {
    slots: tokio::sync::Mutex<HashMap<String, Arc<CatalogSlot>>>,
    /// Reload a catalog when it is older than this.
    pub max_age: Duration,
    /// Never reload more often than this.
    pub min_gap: Duration,
}

impl CatalogStore {
    pub fn new(max_age: Duration) -> CatalogStore {
        CatalogStore {
            slots: tokio::sync::Mutex::new(HashMap::new()),
            max_age,
            min_gap: Duration::from_secs(2),
        }
    }

    /// The catalog slot of `database`, loading it the first time (a failed
    /// load falls back to the built-in snapshot, which denies every user
    /// function).
    pub async fn slot(&self, upstream: &Upstream, database: &str) -> Arc<CatalogSlot> {
        let mut slots = self.slots.lock().await;
        if let Some(slot) = slots.get(database) {
            let slot = slot.clone();
            drop(slots);
            if slot.age() > self.max_age {
                slot.refresh(upstream, self.min_gap);
            }
            return slot;
        }
        let cat = match Catalog::load(upstream, database).await {
            Ok(cat) => cat,
            Err(e) => {
                tracing::warn!(
                    database,
                    "cannot load the catalog, using the built-in snapshot (user functions, and unqualified names of user relations where table rules apply, will be denied): {e}"
                );
                let mut cat = Catalog::builtin();
                cat.source = format!("built-in snapshot (loading {database:?} failed: {e})");
                // Fail closed: without the database's relations, pgward
                // cannot tell which schema an unqualified name is in.
                cat.lists_user_relations = true;
                cat
            }
        };
        let slot = Arc::new(CatalogSlot::new(database, cat));
        slots.insert(database.to_owned(), slot.clone());
        // Sessions reuse cached verdicts without looking at the catalog's
        // age: reload it every max_age while sessions use it, so a long
        // session's verdicts follow tables created since it began.
        let weak = Arc::downgrade(&slot);
        let (upstream, every, min_gap) = (
            upstream.clone(),
            self.max_age.max(self.min_gap),
            self.min_gap,
        );
        tokio::spawn(async move {
            loop {
                crate::timer::sleep(every).await;
                let Some(slot) = weak.upgrade() else { return };
                // One reference is the store's and one is this one: more
                // are sessions'.
                if Arc::strong_count(&slot) > 2 {
                    slot.refresh(&upstream, min_gap);
                }
            }
        });
        slot
    }
}

/// Catalogs built by hand, for tests of the classifier.
#[cfg(test)]
impl Catalog {
    /// The built-in catalog with a user function `public.name` (one
    /// argument) whose body is `body` (PL/pgSQL: the statements between
    /// its BEGIN and END; sql: the SQL).
    pub(crate) fn with_function(
        mut self,
        name: &str,
        volatility: u8,
        language: &str,
        body: &str,
    ) -> Catalog {
        let oid = FIRST_USER_OID + self.funcs.len() as u32;
        let definition = match language {
            "plpgsql" => format!(
                "CREATE OR REPLACE FUNCTION public.{name}(x integer)\n RETURNS integer\n LANGUAGE plpgsql\nAS $function$ BEGIN {body} END $function$"
            ),
            _ => body.to_owned(),
        };
        self.add_function(FuncInfo {
            oid,
            schema: "public".into(),
            name: name.into(),
            volatility,
            language: language.into(),
            nargs: 1,
            support: None,
            body: Some(definition.into()),
            implied: Vec::new(),
        });
        self
    }

    /// With an index `public.index` of the table `public.table`.
    pub(crate) fn with_index(mut self, index: &str, table: &str) -> Catalog {
        self.lists_user_relations = true;
        self.indexes
            .entry(index.to_owned())
            .or_default()
            .push(("public".to_owned(), table.to_owned()));
        self
    }

    /// With a table `public.table` that DDL on the type `public.ty` goes
    /// through (a column of a domain, a typed table).
    pub(crate) fn with_type_table(mut self, ty: &str, table: &str) -> Catalog {
        self.type_tables.entry(ty.to_owned()).or_default().push((
            "public".to_owned(),
            "public".to_owned(),
            table.to_owned(),
        ));
        self
    }

    /// With a table `public.table` whose writes fire the trigger
    /// functions `public.<trigger>` (already added).
    pub(crate) fn with_table(mut self, table: &str, triggers: &[&str]) -> Catalog {
        self.lists_user_relations = true;
        self.add_relation("public", table, b'r');
        if !triggers.is_empty() {
            let effects = WriteEffects {
                triggers: triggers
                    .iter()
                    .map(|t| ("public".to_owned(), (*t).to_owned()))
                    .collect(),
                ..WriteEffects::default()
            };
            self.writes
                .insert(format!("public.{table}"), Arc::new(effects));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename between two loads (same OID and attribute number, another
    /// name) is followed, through several loads; a dropped relation's
    /// former names go with it.
    #[test]
    fn renames_between_loads_are_followed() {
        let load = |table: &str, ssn: &str| {
            let mut cat = Catalog::builtin();
            cat.add_columns("public", table, &[("id", 23), (ssn, 25)]);
            cat.set_relation_oid("public", table, 16400);
            cat.add_columns("public", "other", &[("ssn", 25)]);
            cat.set_relation_oid("public", "other", 16500);
            cat
        };
        let first = load("customers", "ssn");
        let here = |cat: &Catalog| cat.now_named("public", "customers", "ssn");
        assert_eq!(
            here(&first),
            [("public".into(), "customers".into(), "ssn".into())]
        );
        let mut second = load("customers", "tax_id");
        second.follow_renames(&first);
        assert_eq!(
            here(&second),
            [("public".into(), "customers".into(), "tax_id".into())]
        );
        let mut third = load("clients", "tax_id");
        third.follow_renames(&second);
        assert_eq!(
            here(&third),
            [("public".into(), "clients".into(), "tax_id".into())]
        );
        // The id column was never called ssn; "other" keeps its own name.
        assert_eq!(third.now_named("public", "other", "ssn").len(), 1);
        let mut fourth = Catalog::builtin();
        fourth.follow_renames(&third);
        assert!(here(&fourth).is_empty() && fourth.former.relations.is_empty());
    }

    #[test]
    fn parameter_types_are_built_in_known_or_unknown() {
        let mut cat = Catalog::builtin();
        assert_eq!(cat.param_type(25), ParamType::Plain);
        assert_eq!(cat.param_type(FIRST_USER_OID - 1), ParamType::Plain);
        // The snapshot knows no user type: each is one pgward cannot judge.
        assert_eq!(cat.param_type(FIRST_USER_OID), ParamType::Unknown);
        cat.plain_user_types.insert(FIRST_USER_OID);
        cat.types_by_oid
            .insert(FIRST_USER_OID + 1, ("public".into(), "checked".into()));
        assert_eq!(cat.param_type(FIRST_USER_OID), ParamType::Plain);
        assert_eq!(
            cat.param_type(FIRST_USER_OID + 1),
            ParamType::Runs("public", "checked")
        );
        assert_eq!(cat.param_type(u32::MAX), ParamType::Unknown);
    }

    #[test]
    fn snapshot_has_builtins_with_volatility() {
        let cat = Catalog::builtin();
        let lower = cat.functions(None, "lower");
        assert!(!lower.is_empty() && lower.iter().all(|f| f.volatility == b'i'));
        assert_eq!(
            cat.functions(Some("pg_catalog"), "random")[0].volatility,
            b'v'
        );
        assert!(cat.functions(Some("public"), "lower").is_empty());
        assert_eq!(cat.relation_schemas("pg_class"), Some(vec!["pg_catalog"]));
        assert_eq!(cat.relation_schemas("orders"), Some(vec!["public"]));
        // A user table may shadow a system one for a search_path that puts
        // its schema first: both count.
        let mut cat = cat;
        cat.add_relation("hr", "pg_class", b'r');
        assert_eq!(
            cat.relation_schemas("pg_class"),
            Some(vec!["pg_catalog", "hr"])
        );
        // A loaded catalog lists every relation: one it lacks is unplaced.
        cat.lists_user_relations = true;
        assert_eq!(cat.relation_schemas("orders"), None);
        // lo_creat is OID 957 in every PostgreSQL release.
        assert_eq!(
            &*cat.function_by_oid(957).map(|f| f.name.clone()).unwrap(),
            "lo_creat"
        );
    }

    #[test]
    fn rules_are_taken_apart_into_condition_and_actions() {
        let (cond, actions) = rule_statements(
            "CREATE RULE r2 AS\n    ON UPDATE TO public.c\n   WHERE (old.x > 1) DO INSTEAD ( UPDATE p SET a = 1\n  WHERE (p.id = old.id);\n DELETE FROM p\n  WHERE (p.id = new.x);\n);",
        );
        let cond = cond.expect("a condition");
        assert!(
            cond.starts_with("SELECT") && cond.contains("old.x > 1"),
            "{cond}"
        );
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(actions[0].starts_with("UPDATE p SET a = 1"), "{actions:?}");
        assert!(actions[1].starts_with("DELETE FROM p"), "{actions:?}");
        let (cond, actions) =
            rule_statements("CREATE RULE r4 AS\n    ON DELETE TO public.p DO INSTEAD NOTHING;");
        assert!(cond.is_none() && actions.is_empty());
        // What pgward cannot take apart is kept as text that does not
        // parse: judged unknown.
        let (_, actions) = rule_statements("not a rule");
        assert!(actions.len() == 1 && pg_query::parse(&actions[0], 0).is_err());
    }

    #[test]
    fn deparsing_calls_are_replaced_by_what_is_judged_unknown() {
        let sql = "SELECT a, CASE WHEN x THEN pg_catalog.pg_get_viewdef(c.oid) END, \
                   coalesce(pg_catalog.pg_get_expr(p.q, p.r), 'true') FROM t";
        assert_eq!(
            without_deparsing(sql),
            "SELECT a, CASE WHEN x THEN 'SELECT pgward_locked_at_load()' END, \
             coalesce('pgward_locked_at_load()', 'true') FROM t"
        );
        let cat = Catalog::builtin();
        let unknown = |sql: &str| {
            classify::classify(sql, &cat)
                .map(|s| s.iter().any(|st| st.unknown_function))
                .unwrap_or(true)
        };
        assert!(unknown("SELECT pgward_locked_at_load()"));
        let (_, actions) = rule_statements("pgward could not read this: locked at load");
        assert!(actions.len() == 1 && pg_query::parse(&actions[0], 0).is_err());
    }

    #[test]
    fn a_view_is_written_through_the_one_relation_of_its_from() {
        assert_eq!(
            view_base(" SELECT t.a\n   FROM s.t\n  WHERE (t.a IN ( SELECT u.a FROM u));"),
            Some((Some("s".into()), "t".into()))
        );
        assert_eq!(view_base(" SELECT t.a FROM t, u;"), None);
        assert_eq!(view_base(" SELECT 1 AS a;"), None);
    }

    #[test]
    fn cache_returns_the_same_analysis_for_the_same_text_only() {
        let cat = Catalog::builtin();
        let a = cat.analyze("SET default_transaction_read_only = 'on'");
        let b = cat.analyze("SET default_transaction_read_only = 'on'");
        assert!(Arc::ptr_eq(&a, &b));
        let c = cat.analyze("SET default_transaction_read_only = 'of'");
        assert!(!Arc::ptr_eq(&a, &c));
        let value = |x: &Analysis| x.as_ref().unwrap()[0].settings[0].value.clone();
        assert_eq!(value(&c).as_deref(), Some("of"));
        // Other literals share a shape: one classification for both.
        let d = cat.analyze("SELECT * FROM t WHERE id = 7");
        let e = cat.analyze("SELECT * FROM t WHERE id = 8");
        assert!(Arc::ptr_eq(&d, &e));
        // ... but not when the classification read a literal.
        let f = cat.analyze("SELECT set_config('application_name', 'x', false)");
        let g = cat.analyze("SELECT set_config('transaction_read_only', 'off', false)");
        assert!(!Arc::ptr_eq(&f, &g));
        assert_eq!(
            g.as_ref().as_ref().unwrap()[0].settings[0].name,
            "transaction_read_only"
        );
        let h = cat.analyze("EXPLAIN (ANALYZE 'off') DELETE FROM t");
        let i = cat.analyze("EXPLAIN (ANALYZE 'on') DELETE FROM t");
        assert!(!Arc::ptr_eq(&h, &i));
        let write = |x: &Analysis| {
            x.as_ref().unwrap()[0]
                .classes()
                .contains(crate::policy::Class::Write)
        };
        assert!(!write(&h) && write(&i));
        // Multi-statement strings are cached by exact text only.
        let j = cat.analyze("SELECT 1; SELECT 2");
        let k = cat.analyze("SELECT 3; SELECT 4");
        assert!(!Arc::ptr_eq(&j, &k));
    }
}
