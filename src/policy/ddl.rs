//! What a session's uncommitted catalog changes make uncertain.
//!
//! pgward judges statements against a catalog loaded over a control
//! connection, which sees only committed changes. From the moment a session
//! sends a statement that changes the catalog until its transaction block
//! ends (and the catalog is reloaded, see `CatalogSlot::changed`), what
//! that statement changed is unknown to pgward: for that session, the
//! statements that may run what it changed are refused as `unknown`
//! (`Window::refusal`).
//!
//! DDL that only adds tables, columns, indexes and constraints built from
//! built-in computations, enum types, domains and composite types of them,
//! and empty schemas (what a migration mostly runs) leaves everything
//! certain: PostgreSQL runs nothing new for it that pgward would judge,
//! except that a new foreign key makes writes of the table it references
//! reach the referencing table (`Window::writes_referenced`).
//! DDL that creates or changes functions, triggers, rules, policies, views
//! and the like makes every statement that could run user code uncertain;
//! DDL that changes other types, casts, operators, names or event triggers
//! makes everything uncertain but transaction control and DDL that runs
//! nothing.

use pg_query::protobuf::node::Node;
use pg_query::protobuf::{self, AlterTableType, ConstrType};

use super::catalog::Catalog;
use super::classify::{self, Statement};
use super::{stack, Class};

/// The uncommitted catalog changes of one session.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// A catalog-changing statement was let through and the block it ran
    /// in has not ended: at its end the catalog is stale.
    pub open: bool,
    /// The first change that makes statements running user code uncertain
    /// (as SQL words, for the message).
    tainted: Option<String>,
    /// The first change that makes every statement but transaction control
    /// and DDL that runs nothing uncertain.
    deep: Option<String>,
    /// An event trigger was created or changed: DDL runs it.
    event_trigger: Option<String>,
    /// Functions created or changed (bare names).
    functions: Vec<String>,
    /// Tables created by DDL that runs only built-in computations, and not
    /// touched since by DDL that may change what they run (bare names).
    created: Vec<String>,
    /// Tables a foreign key added in this block references (bare names),
    /// with the DDL that added it and whether the key's ON DELETE / ON
    /// UPDATE action writes: a DELETE or UPDATE of one may now write the
    /// referencing table, and `TRUNCATE ... CASCADE` empties it, which
    /// the catalog does not know.
    referenced: Vec<Referenced>,
}

/// A table referenced by a foreign key added in the block.
#[derive(Debug, Clone)]
struct Referenced {
    table: String,
    /// The referencing table (bare name).
    from: String,
    /// The DDL that added the key (as SQL words).
    by: String,
    /// Its ON DELETE or ON UPDATE action writes the referencing table
    /// (CASCADE, SET NULL, SET DEFAULT).
    writes: bool,
}

/// Whether a statement may change what the catalog says: DDL, privileges,
/// event triggers, and anything pgward cannot classify.
pub fn changes_catalog(st: &Statement) -> bool {
    st.reasons
        .iter()
        .any(|r| matches!(r.class, Class::Ddl | Class::Dcl | Class::Unknown))
        || matches!(
            st.kind.as_str(),
            "CreateEventTrigStmt" | "AlterEventTrigStmt"
        )
}

/// DDL that runs nothing on existing rows or functions when it runs
/// (it only records something in the catalog).
fn runs_nothing(kind: &str) -> bool {
    matches!(
        kind,
        "CreateStmt"
            | "CreateTrigStmt"
            | "RuleStmt"
            | "CreatePolicyStmt"
            | "AlterPolicyStmt"
            | "CommentStmt"
            | "GrantStmt"
            | "GrantRoleStmt"
            | "CreateFunctionStmt"
            | "AlterFunctionStmt"
            | "ViewStmt"
            | "DropStmt"
            | "CreateSeqStmt"
            | "AlterSeqStmt"
            | "CreateDomainStmt"
            | "DefineStmt"
            | "CreateCastStmt"
            | "CompositeTypeStmt"
            | "CreateEnumStmt"
            | "CreateRangeStmt"
    )
}

/// An ALTER TABLE whose subcommands only record something (an owner,
/// options, a default, which triggers or rules fire): it neither rewrites
/// nor checks the table's rows, so it runs none of the table's
/// expressions.
fn alters_nothing_run(st: &Statement) -> bool {
    use AlterTableType::*;
    let Some(Node::AlterTableStmt(a)) = parse_one(st) else {
        return false;
    };
    a.cmds.iter().all(|c| match &c.node {
        Some(Node::AlterTableCmd(cmd)) => matches!(
            AlterTableType::try_from(cmd.subtype),
            Ok(AtChangeOwner
                | AtSetRelOptions
                | AtResetRelOptions
                | AtReplaceRelOptions
                | AtEnableTrig
                | AtEnableAlwaysTrig
                | AtEnableReplicaTrig
                | AtDisableTrig
                | AtEnableTrigAll
                | AtDisableTrigAll
                | AtEnableTrigUser
                | AtDisableTrigUser
                | AtEnableRule
                | AtEnableAlwaysRule
                | AtEnableReplicaRule
                | AtDisableRule
                | AtEnableRowSecurity
                | AtDisableRowSecurity
                | AtForceRowSecurity
                | AtNoForceRowSecurity
                | AtReplicaIdentity
                | AtClusterOn
                | AtDropCluster
                | AtSetStatistics
                | AtSetOptions
                | AtResetOptions
                | AtSetStorage
                | AtSetCompression
                | AtDropConstraint
                | AtDropNotNull
                | AtColumnDefault
                | AtDropColumn
                | AtDropIdentity
                | AtSetIdentity
                | AtGenericOptions
                | AtAlterConstraint)
        ),
        _ => false,
    })
}

/// The statement's parse tree (its text, parsed again as it was read).
fn parse_one(st: &Statement) -> Option<Node> {
    let text = st.text.clone();
    let lexer = st.lexer;
    stack::on(stack::for_sql(text.len()), move || {
        classify::with_lexer(lexer, || classify::parse(&text))
            .ok()
            .and_then(|p| p.protobuf.stmts.into_iter().next())
            .and_then(|raw| raw.stmt)
            .and_then(|n| n.node)
    })
    .ok()
    .flatten()
}

/// How a catalog-changing statement leaves the session's view.
enum Change {
    /// Only built-in computations; a table of this name is new.
    Plain(Option<String>),
    /// Changes what statements running user code (or using these tables
    /// or functions) run.
    Code {
        relations: Vec<String>,
        functions: Vec<String>,
    },
    /// May change anything (types, casts, operators, names, unknown code).
    Anything,
    /// Creates or changes an event trigger.
    EventTrigger,
}

impl Window {
    /// Whether anything is uncertain for the session's statements (what
    /// its DDL changed, or writes of tables its new foreign keys reference).
    pub fn uncertain(&self) -> bool {
        self.tainted.is_some() || !self.referenced.is_empty()
    }

    /// Folds a statement that was let through into the window.
    pub fn add(&mut self, st: &Statement, cat: &Catalog) {
        if !changes_catalog(st) {
            return;
        }
        self.open = true;
        let what = what(st);
        for (from, table, writes) in fk_references(st) {
            match self
                .referenced
                .iter_mut()
                .find(|r| r.table == table && r.from == from)
            {
                Some(r) if writes && !r.writes => {
                    r.writes = true;
                    r.by = what.clone();
                }
                Some(_) => {}
                None => self.referenced.push(Referenced {
                    table,
                    from,
                    by: what.clone(),
                    writes,
                }),
            }
        }
        match change(st, cat, &self.created) {
            Change::Plain(created) => {
                if let Some(t) = created {
                    if !self.created.contains(&t) {
                        self.created.push(t);
                    }
                }
            }
            Change::Code {
                relations,
                functions,
            } => {
                self.tainted.get_or_insert_with(|| what.clone());
                // A key's checks look rows up in the other table of the
                // key, with what may now be user code (an index's
                // operator class): writes of that table are uncertain too.
                let touched: Vec<&str> = self
                    .referenced
                    .iter()
                    .filter_map(|k| {
                        if relations.contains(&k.from) {
                            Some(k.table.as_str())
                        } else if relations.contains(&k.table) {
                            Some(k.from.as_str())
                        } else {
                            None
                        }
                    })
                    .collect();
                self.created
                    .retain(|t| !relations.contains(t) && !touched.contains(&t.as_str()));
                for f in functions {
                    if !self.functions.contains(&f) {
                        self.functions.push(f);
                    }
                }
            }
            Change::Anything => {
                self.tainted.get_or_insert_with(|| what.clone());
                self.deep.get_or_insert(what);
            }
            Change::EventTrigger => {
                self.tainted.get_or_insert_with(|| what.clone());
                self.deep.get_or_insert_with(|| what.clone());
                self.event_trigger.get_or_insert(what);
            }
        }
    }

    /// Why `st` cannot be judged now, if it cannot: it may run something
    /// this session changed in its open transaction block.
    pub fn refusal(&self, st: &Statement, cat: &Catalog) -> Option<String> {
        if let Some(why) = self.writes_referenced(st, cat) {
            return Some(why);
        }
        let changed = self.tainted.as_deref()?;
        let after = |what: String| {
            format!(
                "{what} may run what {changed} changed in this transaction, which pgward cannot judge before the transaction ends; run it after COMMIT"
            )
        };
        let ddl = st.reasons.iter().any(|r| r.class == Class::Ddl);
        if let (Some(et), true) = (&self.event_trigger, ddl) {
            return Some(format!(
                "DDL runs the event triggers {et} changed in this transaction, which pgward cannot judge before the transaction ends; run it after COMMIT"
            ));
        }
        let control = st
            .reasons
            .iter()
            .all(|r| matches!(r.class, Class::Transaction | Class::Session));
        if control && st.functions.is_empty() && st.executes.is_none() && st.fetches.is_none() {
            return None;
        }
        if runs_nothing(&st.kind) || (st.kind == "AlterTableStmt" && alters_nothing_run(st)) {
            return None;
        }
        if let Some(deep) = &self.deep {
            return Some(format!(
                "{} may run what {deep} changed in this transaction (types, casts, operators, names or code pgward cannot see), which pgward cannot judge before the transaction ends; run it after COMMIT",
                what(st)
            ));
        }
        if let Some(name) = st.executes.as_deref().or(st.fetches.as_deref()) {
            return Some(after(format!("running \"{name}\"")));
        }
        for f in &st.functions {
            let (schema, name) = match f.rsplit_once('.') {
                Some((s, n)) => (Some(s), n),
                None => (None, f.as_str()),
            };
            if self.functions.iter().any(|c| c == name) {
                return Some(format!(
                    "{name} was changed in this transaction, which pgward cannot judge before the transaction ends; run it after COMMIT"
                ));
            }
            if !is_builtin(cat, schema, name) {
                return Some(after(format!("{name}()")));
            }
        }
        if st.unknown_function || !st.hidden_reads.is_empty() {
            return Some(after(what(st)));
        }
        for r in &st.relations {
            let system = match &r.schema {
                Some(s) => matches!(s.as_str(), "pg_catalog" | "information_schema"),
                None => cat.relation_schemas(&r.name).is_some_and(|places| {
                    places
                        .iter()
                        .all(|s| matches!(*s, "pg_catalog" | "information_schema"))
                }),
            };
            if !system && !self.created.contains(&r.name) {
                return Some(after(format!("using {}", r.qualified())));
            }
        }
        None
    }
}

impl Window {
    /// A write to a table that a foreign key added in this block
    /// references, which may now write the referencing table (as its
    /// owner, running what writing it runs) where the catalog does not
    /// know it: `TRUNCATE ... CASCADE` empties it, and by a key's ON
    /// DELETE / ON UPDATE action a DELETE or UPDATE deletes or updates its
    /// rows. DML with only built-in functions truncates nothing; with a
    /// key whose action writes, only a plain INSERT (no ON CONFLICT, no
    /// WITH) goes on, so a migration may still fill a new lookup table.
    fn writes_referenced(&self, st: &Statement, cat: &Catalog) -> Option<String> {
        if self.referenced.is_empty() {
            return None;
        }
        let plain_dml = matches!(
            st.kind.as_str(),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"
        ) && !st.unknown_function
            && st.dangerous.is_empty()
            && builtin_calls(st, cat);
        // Code pgward cannot see (DO, EXECUTE of computed text) may write
        // any table, and so may a prepared statement or a cursor judged
        // before the key was added.
        let opaque = st.unknown_function
            || st.executes.is_some()
            || st.fetches.is_some()
            || st.reasons.iter().any(|r| r.class == Class::Unknown);
        if opaque {
            let key = &self.referenced[0];
            return Some(format!(
                "{} may write {}, which the foreign key added by {} in this transaction references (TRUNCATE ... CASCADE and its ON DELETE / ON UPDATE actions write the referencing table), which pgward cannot judge before the transaction ends; run it after COMMIT",
                what(st),
                key.table,
                key.by
            ));
        }
        for r in st
            .relations
            .iter()
            .filter(|r| !matches!(r.access, Class::Read | Class::CopyOut | Class::Ddl))
        {
            let Some(key) = self.referenced.iter().find(|k| k.table == r.name) else {
                continue;
            };
            let fine = plain_dml && (!key.writes || plain_insert(st));
            if !fine {
                return Some(format!(
                    "{} writes {}, which the foreign key added by {} in this transaction references (TRUNCATE ... CASCADE and its ON DELETE / ON UPDATE actions write the referencing table), which pgward cannot judge before the transaction ends; run it after COMMIT",
                    what(st),
                    key.table,
                    key.by
                ));
            }
        }
        None
    }
}

/// An INSERT that writes only its target: no ON CONFLICT, no WITH
/// queries.
fn plain_insert(st: &Statement) -> bool {
    matches!(
        parse_one(st),
        Some(Node::InsertStmt(i)) if i.on_conflict_clause.is_none() && i.with_clause.is_none()
    )
}

/// Every function the statement calls (as written, and below it) is
/// PostgreSQL's own.
fn builtin_calls(st: &Statement, cat: &Catalog) -> bool {
    st.functions.iter().all(|f| match f.rsplit_once('.') {
        Some((s, n)) => is_builtin(cat, Some(s), n),
        None => is_builtin(cat, None, f),
    })
}

/// The foreign keys a CREATE TABLE or ALTER TABLE adds: the referencing
/// and the referenced table (bare names), and whether the key's ON DELETE
/// or ON UPDATE action writes.
fn fk_references(st: &Statement) -> Vec<(String, String, bool)> {
    if !matches!(st.kind.as_str(), "CreateStmt" | "AlterTableStmt") {
        return Vec::new();
    }
    let mut constraints: Vec<&protobuf::Node> = Vec::new();
    let node = parse_one(st);
    let from = match &node {
        Some(Node::CreateStmt(c)) => rel_name(c.relation.as_ref()),
        Some(Node::AlterTableStmt(a)) => rel_name(a.relation.as_ref()),
        _ => None,
    };
    let Some(from) = from else {
        return Vec::new();
    };
    match &node {
        Some(Node::CreateStmt(c)) => {
            for e in c.table_elts.iter().chain(&c.constraints) {
                match &e.node {
                    Some(Node::ColumnDef(col)) => constraints.extend(&col.constraints),
                    Some(Node::Constraint(_)) => constraints.push(e),
                    _ => {}
                }
            }
        }
        Some(Node::AlterTableStmt(a)) => {
            for c in &a.cmds {
                let Some(Node::AlterTableCmd(cmd)) = &c.node else {
                    continue;
                };
                match cmd.def.as_deref() {
                    Some(
                        d @ protobuf::Node {
                            node: Some(Node::Constraint(_)),
                        },
                    ) => constraints.push(d),
                    Some(protobuf::Node {
                        node: Some(Node::ColumnDef(col)),
                    }) => constraints.extend(&col.constraints),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    constraints
        .into_iter()
        .filter_map(|n| match &n.node {
            Some(Node::Constraint(c)) if c.contype == ConstrType::ConstrForeign as i32 => {
                let quiet = |a: &str| matches!(a, "" | "a" | "r");
                rel_name(c.pktable.as_ref()).map(|t| {
                    let writes = !quiet(&c.fk_del_action) || !quiet(&c.fk_upd_action);
                    (from.clone(), t, writes)
                })
            }
            _ => None,
        })
        .collect()
}

/// A function as built-in: every function of that name (in that schema)
/// is PostgreSQL's own.
fn is_builtin(cat: &Catalog, schema: Option<&str>, name: &str) -> bool {
    let found = cat.functions(schema, name);
    !found.is_empty()
        && found
            .iter()
            .all(|f| matches!(&*f.schema, "pg_catalog" | "information_schema"))
}

/// The statement in a few SQL words ("CREATE FUNCTION", ...).
fn what(st: &Statement) -> String {
    let words: String = st
        .text
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    let words: String = words.chars().take(60).collect();
    format!("\"{words}\"")
}

/// What a catalog-changing statement changes; `created` are the tables
/// the block created plainly so far.
fn change(st: &Statement, cat: &Catalog, created: &[String]) -> Change {
    match st.kind.as_str() {
        "CreateEventTrigStmt" | "AlterEventTrigStmt" => return Change::EventTrigger,
        "CreateSeqStmt"
        | "AlterSeqStmt"
        | "DropStmt"
        | "CommentStmt"
        | "GrantStmt"
        | "GrantRoleStmt"
        | "AlterDefaultPrivilegesStmt"
        | "SecLabelStmt"
        // An enum's values are labels, read and written by built-in
        // functions: a migration's CREATE TYPE ... AS ENUM runs no code.
        | "CreateEnumStmt"
        | "AlterEnumStmt" => return Change::Plain(None),
        "CreateStmt" | "IndexStmt" | "AlterTableStmt" | "CreateFunctionStmt"
        | "AlterFunctionStmt" | "CreateTrigStmt" | "RuleStmt" | "CreatePolicyStmt"
        | "AlterPolicyStmt" | "ViewStmt" | "CreateTableAsStmt" | "SelectStmt"
        | "CreateSchemaStmt" | "CreateDomainStmt" | "CompositeTypeStmt" => {}
        _ => return Change::Anything,
    }
    let builtin_only = !st.unknown_function && st.dangerous.is_empty() && builtin_calls(st, cat);
    let Some(node) = parse_one(st) else {
        return Change::Anything;
    };
    // The table whose keys a CREATE TABLE or ALTER TABLE adds: a new table
    // has only the indexes its own constraints make.
    let from = match &node {
        Node::AlterTableStmt(a) => a.relation.as_ref().map(|r| {
            let schema = Some(r.schemaname.as_str()).filter(|s| !s.is_empty());
            created.contains(&r.relname) || clean_table(cat, schema, &r.relname)
        }),
        _ => Some(true),
    }
    .unwrap_or(false);
    let plain_constraint = |n: &protobuf::Node| plain_constraint(n, cat, created, from);
    let plain_column = |c: &protobuf::ColumnDef| {
        plain_type(c.type_name.as_ref(), cat) && c.constraints.iter().all(plain_constraint)
    };
    let code = |relations: Vec<String>, functions: Vec<String>| Change::Code {
        relations,
        functions,
    };
    match node {
        Node::CreateStmt(c) => {
            let name = rel_name(c.relation.as_ref());
            let plain = builtin_only
                && c.inh_relations.is_empty()
                && c.partbound.is_none()
                && c.of_typename.is_none()
                && c.table_elts.iter().all(|e| match &e.node {
                    // No LIKE, which copies another table's expressions.
                    Some(Node::ColumnDef(c)) => plain_column(c),
                    Some(Node::Constraint(_)) => plain_constraint(e),
                    _ => false,
                })
                && c.constraints.iter().all(plain_constraint);
            if plain {
                Change::Plain(name)
            } else {
                code(name.into_iter().collect(), Vec::new())
            }
        }
        Node::IndexStmt(i) => {
            let plain = builtin_only
                && i.index_params.iter().all(|p| match &p.node {
                    Some(Node::IndexElem(e)) => builtin_opclass(&e.opclass),
                    _ => false,
                });
            if plain {
                Change::Plain(None)
            } else {
                code(
                    rel_name(i.relation.as_ref()).into_iter().collect(),
                    Vec::new(),
                )
            }
        }
        Node::AlterTableStmt(a) => {
            let plain = builtin_only
                && a.cmds.iter().all(|c| match &c.node {
                    Some(Node::AlterTableCmd(cmd)) => {
                        plain_alter(cmd, &plain_column, &plain_constraint)
                    }
                    _ => false,
                });
            if plain {
                Change::Plain(None)
            } else {
                code(
                    rel_name(a.relation.as_ref()).into_iter().collect(),
                    Vec::new(),
                )
            }
        }
        Node::CreateFunctionStmt(f) => {
            code(Vec::new(), last_name(&f.funcname).into_iter().collect())
        }
        Node::AlterFunctionStmt(f) => code(
            Vec::new(),
            f.func
                .as_ref()
                .and_then(|o| last_name(&o.objname))
                .into_iter()
                .collect(),
        ),
        Node::CreateTrigStmt(t) => code(
            rel_name(t.relation.as_ref()).into_iter().collect(),
            Vec::new(),
        ),
        Node::RuleStmt(r) => code(
            rel_name(r.relation.as_ref()).into_iter().collect(),
            Vec::new(),
        ),
        Node::CreatePolicyStmt(p) => {
            code(rel_name(p.table.as_ref()).into_iter().collect(), Vec::new())
        }
        Node::AlterPolicyStmt(p) => {
            code(rel_name(p.table.as_ref()).into_iter().collect(), Vec::new())
        }
        Node::ViewStmt(v) => code(rel_name(v.view.as_ref()).into_iter().collect(), Vec::new()),
        // An empty schema: what is created in it later is judged as it
        // comes (a function there that shadows a built-in changes the
        // function's name, `Change::Code`). Schema elements are not
        // looked into.
        Node::CreateSchemaStmt(s) if s.schema_elts.is_empty() => Change::Plain(None),
        // A domain over a plain type whose CHECK and DEFAULT call only
        // built-in functions, and a composite type of plain columns: their
        // values run nothing but built-in functions. A column of one is a
        // plain column (`plain_type` finds no functions for a type the
        // catalog does not hold yet).
        Node::CreateDomainStmt(d)
            if builtin_only && plain_type(d.type_name.as_ref(), cat) && d.coll_clause.is_none() =>
        {
            Change::Plain(None)
        }
        Node::CompositeTypeStmt(c)
            if c.coldeflist.iter().all(|e| match &e.node {
                Some(Node::ColumnDef(c)) => plain_column(c),
                _ => false,
            }) =>
        {
            Change::Plain(None)
        }
        // CREATE TABLE AS and SELECT INTO: a new table with no defaults.
        Node::CreateTableAsStmt(_) => Change::Plain(None),
        Node::SelectStmt(s) if s.into_clause.is_some() => Change::Plain(None),
        // A statement whose functions run DDL.
        _ => Change::Anything,
    }
}

/// No operator class, or one of PostgreSQL's own that ORMs name (Django's
/// `*_like` indexes use `varchar_pattern_ops`): its support functions are
/// built-in. Creating an operator class needs a superuser, and one made
/// in this block makes everything uncertain already (`Change::Anything`).
fn builtin_opclass(names: &[protobuf::Node]) -> bool {
    const BUILTIN: &[&str] = &[
        "text_pattern_ops",
        "varchar_pattern_ops",
        "bpchar_pattern_ops",
        "text_ops",
        "varchar_ops",
        "bpchar_ops",
        "int2_ops",
        "int4_ops",
        "int8_ops",
        "numeric_ops",
        "timestamptz_ops",
        "timestamp_ops",
        "date_ops",
        "uuid_ops",
        "bool_ops",
        "jsonb_ops",
        "jsonb_path_ops",
        "array_ops",
        "tsvector_ops",
        "inet_ops",
        "range_ops",
    ];
    let parts: Vec<&str> = names
        .iter()
        .filter_map(|n| match &n.node {
            Some(Node::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [] => names.is_empty(),
        [name] | ["pg_catalog", name] => BUILTIN.contains(name),
        _ => false,
    }
}

fn rel_name(r: Option<&protobuf::RangeVar>) -> Option<String> {
    r.map(|r| r.relname.clone())
}

fn last_name(names: &[protobuf::Node]) -> Option<String> {
    match names.last().and_then(|n| n.node.as_ref()) {
        Some(Node::String(s)) => Some(s.sval.clone()),
        _ => None,
    }
}

/// A column type whose values run nothing pgward would judge: a built-in
/// type, or a user type with no domain checks or defaults calling user
/// functions, input functions or casts.
fn plain_type(t: Option<&protobuf::TypeName>, cat: &Catalog) -> bool {
    let Some(t) = t else { return true };
    if t.pct_type {
        return false;
    }
    let names: Vec<&str> = t
        .names
        .iter()
        .filter_map(|n| match &n.node {
            Some(Node::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    // A domain's DEFAULT is what an INSERT that leaves the column out
    // evaluates.
    match names.as_slice() {
        [name] => {
            cat.type_functions(None, name).is_empty() && cat.domain_defaults(None, name).is_empty()
        }
        ["pg_catalog", _] => true,
        [schema, name] => {
            cat.type_functions(Some(schema), name).is_empty()
                && cat.domain_defaults(Some(schema), name).is_empty()
        }
        _ => false,
    }
}

/// A constraint of built-in computations (its expressions judged by the
/// statement's functions): not an exclusion constraint (its operators
/// may be a user's); a foreign key only when its checks run built-in
/// equality operators and built-in index lookups, i.e. both the
/// referencing and the referenced table were created plainly in this
/// block or are held by the catalog with no user operator class in their
/// indexes, with no user casts PostgreSQL could apply to compare the keys
/// (`clean_from`: the referencing table is such a table).
/// What its ON DELETE / ON UPDATE action writes is judged with the
/// writes of the referenced table (`Window::referenced`).
fn plain_constraint(
    n: &protobuf::Node,
    cat: &Catalog,
    created: &[String],
    clean_from: bool,
) -> bool {
    let Some(Node::Constraint(c)) = &n.node else {
        return false;
    };
    match ConstrType::try_from(c.contype) {
        Ok(ConstrType::ConstrExclusion) | Err(_) => false,
        Ok(ConstrType::ConstrForeign) => {
            let Some(pk) = c.pktable.as_ref() else {
                return false;
            };
            let schema = Some(pk.schemaname.as_str()).filter(|s| !s.is_empty());
            clean_from
                && (created.contains(&pk.relname) || clean_table(cat, schema, &pk.relname))
                && cat.implicit_casts().is_empty()
        }
        Ok(_) => true,
    }
}

/// A table the catalog holds whose indexes use no user operator class
/// (and that has no exclusion constraint with user operators): a foreign
/// key's check looks rows up in it with built-in functions. A table the
/// block created is not in the catalog; see `Window::created`.
fn clean_table(cat: &Catalog, schema: Option<&str>, name: &str) -> bool {
    cat.holds_relation(schema, name)
        && cat
            .write_effects(schema, name)
            .iter()
            .all(|(_, e)| e.functions.is_empty())
}

/// ALTER TABLE subcommands that add or drop columns, defaults,
/// constraints and indexes (their expressions judged by the statement's
/// functions), or change storage details.
fn plain_alter(
    cmd: &protobuf::AlterTableCmd,
    plain_column: &dyn Fn(&protobuf::ColumnDef) -> bool,
    plain_constraint: &dyn Fn(&protobuf::Node) -> bool,
) -> bool {
    use AlterTableType::*;
    let Ok(kind) = AlterTableType::try_from(cmd.subtype) else {
        return false;
    };
    let def = cmd.def.as_deref();
    match kind {
        AtAddColumn | AtAlterColumnType => match def.and_then(|d| d.node.as_ref()) {
            Some(Node::ColumnDef(c)) => plain_column(c),
            _ => false,
        },
        AtAddConstraint => def.is_some_and(plain_constraint),
        AtColumnDefault | AtDropNotNull | AtSetNotNull | AtSetStatistics | AtSetOptions
        | AtResetOptions | AtSetStorage | AtSetCompression | AtDropColumn | AtAddIndex
        | AtValidateConstraint | AtAddIndexConstraint | AtDropConstraint | AtClusterOn
        | AtDropCluster | AtSetRelOptions | AtResetRelOptions | AtReplaceRelOptions
        | AtAddIdentity | AtSetIdentity | AtDropIdentity | AtDropExpression | AtReplicaIdentity
        | AtSetLogged | AtSetUnLogged => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str, cat: &Catalog) -> Statement {
        let mut stmts = classify::classify(sql, cat).expect("parses");
        assert_eq!(stmts.len(), 1, "{sql}");
        stmts.remove(0)
    }

    fn window(sqls: &[&str], cat: &Catalog) -> Window {
        let mut w = Window::default();
        for sql in sqls {
            let st = statement(sql, cat);
            assert!(w.refusal(&st, cat).is_none(), "{sql} refused");
            w.add(&st, cat);
        }
        w
    }

    #[test]
    fn a_migration_of_new_tables_stays_certain() {
        let cat = Catalog::builtin();
        let w = window(
            &[
                "CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL DEFAULT lower('X'), CHECK (length(name) < 10))",
                "CREATE INDEX t_name ON t (lower(name))",
                "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
                "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES t (id) DEFERRABLE INITIALLY DEFERRED",
                "INSERT INTO t (name) VALUES ('a')",
                "SELECT * FROM t",
            ],
            &cat,
        );
        assert!(w.open && w.tainted.is_none());
    }

    #[test]
    fn alembic_and_schema_migrations_stay_certain() {
        let cat = Catalog::builtin();
        // Alembic's first revision: an enum, two tables, a foreign key with
        // ON DELETE CASCADE, an index on the referencing table.
        let w = window(
            &[
                "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)",
                "CREATE TYPE post_kind AS ENUM ('note', 'page')",
                "CREATE TABLE users (id SERIAL NOT NULL, email VARCHAR(200) NOT NULL, created TIMESTAMP WITH TIME ZONE DEFAULT now(), PRIMARY KEY (id), UNIQUE (email))",
                "CREATE TABLE posts (id SERIAL NOT NULL, user_id INTEGER, body TEXT, kind post_kind, PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE)",
                "CREATE INDEX ix_posts_user_id ON posts (user_id)",
                "INSERT INTO alembic_version (version_num) VALUES ('abc') RETURNING alembic_version.version_num",
                "INSERT INTO users (email) VALUES ('a@example.com')",
                "INSERT INTO posts (user_id, kind) VALUES (1, 'note')",
                "SELECT * FROM users JOIN posts ON posts.user_id = users.id",
                "CREATE DOMAIN positive AS int CHECK (VALUE > 0) DEFAULT 1",
                "CREATE TYPE pair AS (a int, b text)",
                "ALTER TABLE posts ADD COLUMN score positive, ADD COLUMN p pair",
                "CREATE SCHEMA app",
                "CREATE SCHEMA IF NOT EXISTS app2 AUTHORIZATION CURRENT_USER",
                "CREATE TABLE app.things (id int REFERENCES posts)",
                "INSERT INTO app.things VALUES (1)",
                "DROP TABLE posts",
            ],
            &cat,
        );
        // Writes of the referenced tables are uncertain (see below).
        assert!(w.open && w.uncertain());
        // What the keys' actions (and TRUNCATE ... CASCADE) now write is
        // not in the catalog: writes of the referenced tables wait for
        // COMMIT, but for a plain INSERT.
        for refused in [
            "DELETE FROM users",
            "UPDATE users SET id = id + 1",
            "TRUNCATE users CASCADE",
            "INSERT INTO users (email) VALUES ('b') ON CONFLICT (email) DO UPDATE SET id = 7",
            "WITH d AS (DELETE FROM users RETURNING id) INSERT INTO users (email) SELECT 'x' FROM d",
            "MERGE INTO users u USING (SELECT 1 AS id) s ON u.id = s.id WHEN MATCHED THEN DELETE",
            "COPY users FROM STDIN",
            "TRUNCATE posts CASCADE",
            "DO $$ BEGIN DELETE FROM users; END $$",
            "EXECUTE purge",
            "FETCH 1 FROM c",
        ] {
            let why = w.refusal(&statement(refused, &cat), &cat);
            assert!(
                why.as_deref().is_some_and(|w| w.contains("foreign key")),
                "{refused}: {why:?}"
            );
        }
        for fine in [
            "SELECT * FROM users",
            "INSERT INTO users (email) VALUES ('b')",
            "UPDATE alembic_version SET version_num = 'def'",
            "CREATE INDEX ON users (created)",
            "DELETE FROM posts",
            "COMMIT",
        ] {
            let why = w.refusal(&statement(fine, &cat), &cat);
            assert!(why.is_none(), "{fine}: {why:?}");
        }
    }

    #[test]
    fn keys_without_actions_only_hold_back_truncate_and_user_code() {
        let cat = Catalog::builtin();
        let w = window(
            &[
                "CREATE TABLE a (id int PRIMARY KEY)",
                "CREATE TABLE b (a int REFERENCES a ON DELETE RESTRICT ON UPDATE NO ACTION)",
            ],
            &cat,
        );
        assert!(w.tainted.is_none());
        for fine in [
            "UPDATE a SET id = id + 1",
            "DELETE FROM a WHERE id = 1",
            "INSERT INTO a VALUES (1) ON CONFLICT DO NOTHING",
        ] {
            let why = w.refusal(&statement(fine, &cat), &cat);
            assert!(why.is_none(), "{fine}: {why:?}");
        }
        for refused in [
            "TRUNCATE a CASCADE",
            "TRUNCATE a",
            "DO $$ BEGIN DELETE FROM a; END $$",
        ] {
            let why = w.refusal(&statement(refused, &cat), &cat);
            assert!(why.is_some(), "{refused}");
        }
    }

    #[test]
    fn user_operator_classes_on_either_side_of_a_key_reach_the_other() {
        let cat = Catalog::builtin();
        let parent = "CREATE TABLE parent (id int PRIMARY KEY)";
        let key = "ALTER TABLE child ADD FOREIGN KEY (p) REFERENCES parent";
        for ddl in [
            [
                parent,
                "CREATE TABLE child (p int)",
                key,
                "CREATE INDEX ON child (p my_ops)",
            ],
            [
                parent,
                "CREATE TABLE child (p int)",
                key,
                "CREATE UNIQUE INDEX ON parent (id my_ops)",
            ],
        ] {
            let w = window(&ddl, &cat);
            for write in ["UPDATE parent SET id = 2", "INSERT INTO child VALUES (1)"] {
                assert!(
                    w.refusal(&statement(write, &cat), &cat).is_some(),
                    "{ddl:?}; {write}"
                );
            }
        }
        // A key added after the user operator class waits for COMMIT.
        let w = window(
            &[
                parent,
                "CREATE TABLE child (p int)",
                "CREATE INDEX ON child (p my_ops)",
            ],
            &cat,
        );
        assert!(w.refusal(&statement(key, &cat), &cat).is_some());
    }

    #[test]
    fn code_in_types_schemas_and_keys_stays_uncertain() {
        let cat = Catalog::builtin();
        for ddl in [
            "CREATE DOMAIN d AS int DEFAULT f()",
            "CREATE DOMAIN d AS int CHECK (VALUE > 0) DEFAULT nextval(f()::regclass)",
            "CREATE SCHEMA s CREATE TABLE t (x int)",
            "CREATE TYPE r AS RANGE (subtype = int)",
        ] {
            let w = window(&[ddl], &cat);
            let st = statement("SELECT 1 + length('x')", &cat);
            assert!(w.refusal(&st, &cat).is_some(), "{ddl}");
        }
        // A key referencing a table neither created in the block nor in
        // the catalog: its check's operators are unknown.
        let w = window(
            &[
                "CREATE TABLE t (x int)",
                "CREATE TABLE u (x int REFERENCES elsewhere)",
            ],
            &cat,
        );
        assert!(w.uncertain());
        assert!(w
            .refusal(&statement("INSERT INTO u VALUES (1)", &cat), &cat)
            .is_some());
        assert!(w
            .refusal(&statement("INSERT INTO t VALUES (1)", &cat), &cat)
            .is_none());
    }

    #[test]
    fn functions_triggers_and_views_make_their_users_uncertain() {
        let cat = Catalog::builtin();
        let f = "SELECT f()";
        let t = "INSERT INTO t VALUES (1)";
        for (ddl, used) in [
            (
                "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                f,
            ),
            ("ALTER FUNCTION f() SECURITY DEFINER", f),
            (
                "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "SELECT * FROM customers",
            ),
            (
                "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
                t,
            ),
            ("CREATE RULE r AS ON INSERT TO t DO ALSO SELECT 1", t),
            ("CREATE POLICY p ON t USING (true)", "SELECT * FROM t"),
            (
                "CREATE OR REPLACE VIEW v AS SELECT 1 AS a",
                "SELECT * FROM v",
            ),
            ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", "SELECT * FROM t"),
            ("ALTER TABLE t ADD CONSTRAINT c CHECK (f(x) > 0)", t),
            ("ALTER TABLE t ALTER COLUMN x SET DEFAULT f()", t),
            ("CREATE INDEX ON t (f(x))", t),
            (
                "CREATE TABLE t2 (LIKE customers INCLUDING ALL)",
                "INSERT INTO t2 VALUES (1)",
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES u ON DELETE CASCADE",
                t,
            ),
        ] {
            let w = window(&["CREATE TABLE t (x int)", ddl], &cat);
            assert!(w.uncertain(), "{ddl}");
            let st = statement(used, &cat);
            let why = w.refusal(&st, &cat);
            assert!(why.is_some(), "{ddl}; {used} allowed");
            // Built-in work, the system catalogs and transaction control go on.
            for fine in [
                "SELECT 1 + length('x')",
                "SELECT relname FROM pg_class",
                "COMMIT",
                "ROLLBACK",
                "SAVEPOINT s",
            ] {
                let st = statement(fine, &cat);
                assert!(w.refusal(&st, &cat).is_none(), "{ddl}; {fine} refused");
            }
        }
        // ALTER TABLE that records only (an owner, a default) runs
        // nothing; one that checks or rewrites rows runs the table's
        // expressions.
        let w = window(
            &["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
            &cat,
        );
        for quiet in [
            "ALTER TABLE customers OWNER TO someone",
            "ALTER TABLE customers ALTER COLUMN id SET DEFAULT f()",
            "ALTER TABLE customers ENABLE TRIGGER ALL",
        ] {
            assert!(
                w.refusal(&statement(quiet, &cat), &cat).is_none(),
                "{quiet}"
            );
        }
        for busy in [
            "ALTER TABLE customers ADD CHECK (id > 0)",
            "ALTER TABLE customers ALTER COLUMN id TYPE bigint",
        ] {
            assert!(w.refusal(&statement(busy, &cat), &cat).is_some(), "{busy}");
        }
        // A function change leaves a new plain table usable.
        let w = window(
            &[
                "CREATE TABLE t (x int)",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            ],
            &cat,
        );
        assert!(w
            .refusal(&statement("INSERT INTO t VALUES (1)", &cat), &cat)
            .is_none());
        let why = w.refusal(&statement("SELECT f()", &cat), &cat).unwrap();
        assert!(
            why.starts_with("f was changed in this transaction"),
            "{why}"
        );
    }

    #[test]
    fn types_casts_operators_renames_and_event_triggers_make_everything_uncertain() {
        let cat = Catalog::builtin();
        for ddl in [
            "CREATE CAST (int AS text) WITH FUNCTION f(int)",
            "CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = f)",
            "CREATE DOMAIN d AS int CHECK (f(VALUE) > 0)",
            "ALTER DOMAIN d ADD CHECK (f(VALUE) > 0)",
            "ALTER FUNCTION f() RENAME TO g",
            "ALTER FUNCTION f() SET SCHEMA s",
            "ALTER TABLE a RENAME TO b",
            "DO $$ BEGIN END $$",
        ] {
            let w = window(&[ddl], &cat);
            for used in ["SELECT 1 + length('x')", "SELECT relname FROM pg_class"] {
                let st = statement(used, &cat);
                assert!(w.refusal(&st, &cat).is_some(), "{ddl}; {used} allowed");
            }
            let st = statement("COMMIT", &cat);
            assert!(w.refusal(&st, &cat).is_none());
        }
        let w = window(
            &["CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()"],
            &cat,
        );
        let st = statement("CREATE TABLE x (a int)", &cat);
        assert!(w.refusal(&st, &cat).is_some());
        // A function of the name of a built-in shadows it.
        let w = window(
            &["CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS 'SELECT 1'"],
            &cat,
        );
        let st = statement("SELECT lower('x')", &cat);
        assert!(w.refusal(&st, &cat).is_some());
    }
}
