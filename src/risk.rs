//! What a statement held for approval would do to the database while it
//! runs: the table lock it takes, whether it rewrites or scans the table,
//! what that blocks, and the safer form where PostgreSQL has one. The
//! approver reads it next to the statement (`SHOW PENDING`, `SHOW
//! REQUEST`). Lock levels follow PostgreSQL 15's documentation of
//! explicit locking and `ALTER TABLE`.

use pg_query::protobuf::{AlterTableType as At, ConstrType, ObjectType};
use pg_query::NodeEnum;

use crate::policy::stack;

/// PostgreSQL's table lock modes, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lock {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl Lock {
    pub fn name(self) -> &'static str {
        match self {
            Lock::AccessShare => "ACCESS SHARE",
            Lock::RowShare => "ROW SHARE",
            Lock::RowExclusive => "ROW EXCLUSIVE",
            Lock::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Lock::Share => "SHARE",
            Lock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Lock::Exclusive => "EXCLUSIVE",
            Lock::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What other sessions cannot do on the table while it is held.
    pub fn blocks(self) -> &'static str {
        match self {
            Lock::AccessExclusive => "blocks reads and writes",
            // EXCLUSIVE lets plain SELECT (ACCESS SHARE) through.
            Lock::Exclusive | Lock::ShareRowExclusive | Lock::Share => "blocks writes",
            Lock::ShareUpdateExclusive => "blocks other DDL, VACUUM and ANALYZE",
            Lock::RowExclusive | Lock::RowShare | Lock::AccessShare => {
                "blocks only DDL on the table"
            }
        }
    }

    /// The lock `LOCK TABLE ... IN mode` takes (the parser's numbering,
    /// `AccessShareLock` = 1 ... `AccessExclusiveLock` = 8).
    fn from_mode(mode: i32) -> Lock {
        match mode {
            1 => Lock::AccessShare,
            2 => Lock::RowShare,
            3 => Lock::RowExclusive,
            4 => Lock::ShareUpdateExclusive,
            5 => Lock::Share,
            6 => Lock::ShareRowExclusive,
            7 => Lock::Exclusive,
            _ => Lock::AccessExclusive,
        }
    }
}

/// What one statement does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// The strongest table lock it takes, and on what.
    pub lock: Option<Lock>,
    pub tables: Vec<String>,
    /// Rewrites, scans, unbounded writes: what makes it slow or broad.
    pub notes: Vec<&'static str>,
    /// A form that does the same with less locking.
    pub safer: Vec<&'static str>,
}

impl Step {
    fn lock(&mut self, lock: Lock) {
        self.lock = self.lock.max(Some(lock));
    }

    fn note(&mut self, note: &'static str) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn safer(&mut self, safer: &'static str) {
        if !self.safer.contains(&safer) {
            self.safer.push(safer);
        }
    }

    fn table(&mut self, rv: Option<&pg_query::protobuf::RangeVar>) {
        if let Some(rv) = rv {
            let name = if rv.schemaname.is_empty() {
                rv.relname.clone()
            } else {
                format!("{}.{}", rv.schemaname, rv.relname)
            };
            if !self.tables.contains(&name) {
                self.tables.push(name);
            }
        }
    }

    /// One line: `ACCESS EXCLUSIVE on users (blocks reads and writes);
    /// rewrites the table; safer: ...`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(lock) = self.lock {
            let on = if self.tables.is_empty() {
                String::new()
            } else {
                format!(" on {}", self.tables.join(", "))
            };
            parts.push(format!("{}{on} ({})", lock.name(), lock.blocks()));
        }
        parts.extend(self.notes.iter().map(|n| n.to_string()));
        if !self.safer.is_empty() {
            parts.push(format!("safer: {}", self.safer.join("; ")));
        }
        parts.join("; ")
    }
}

/// The steps of every statement in `texts`; text that does not parse is
/// one step saying so (the server will refuse it, or it is something
/// pgward judged from its own reading).
pub fn assess(texts: &[impl AsRef<str>]) -> Vec<Step> {
    let mut steps = Vec::new();
    for text in texts {
        let text = text.as_ref();
        // Parse trees nest as deep as the text: parsed (and dropped) on a
        // stack sized for it, as every parse in pgward is.
        let parsed = stack::on(stack::for_sql(text.len()), || {
            pg_query::parse(text, 0).map(|parsed| {
                parsed
                    .protobuf
                    .stmts
                    .iter()
                    .filter_map(|raw| raw.stmt.as_ref().and_then(|s| s.node.as_ref()))
                    .map(step)
                    .collect::<Vec<Step>>()
            })
        });
        match parsed {
            Ok(Ok(more)) => steps.extend(more),
            _ => steps.push(Step {
                notes: vec!["not parsed: no risk analysis"],
                ..Step::default()
            }),
        }
    }
    steps
}

/// The approver's one-line summary of `texts`: each statement's line that
/// says anything, joined.
pub fn summary(texts: &[impl AsRef<str>]) -> String {
    let lines: Vec<String> = assess(texts)
        .iter()
        .map(Step::line)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" | ")
}

fn step(node: &NodeEnum) -> Step {
    let mut s = Step::default();
    match node {
        NodeEnum::AlterTableStmt(a) => {
            s.table(a.relation.as_ref());
            for cmd in &a.cmds {
                if let Some(NodeEnum::AlterTableCmd(c)) = cmd.node.as_ref() {
                    alter_table_cmd(&mut s, c);
                }
            }
        }
        NodeEnum::IndexStmt(i) => {
            s.table(i.relation.as_ref());
            if i.concurrent {
                s.lock(Lock::ShareUpdateExclusive);
                s.note("builds the index in several passes; cannot run in a transaction block");
            } else {
                s.lock(Lock::Share);
                s.note("scans the whole table to build the index");
                s.safer("CREATE INDEX CONCURRENTLY");
            }
        }
        NodeEnum::DropStmt(d) => {
            let tableish = [
                ObjectType::ObjectTable,
                ObjectType::ObjectIndex,
                ObjectType::ObjectView,
                ObjectType::ObjectMatview,
                ObjectType::ObjectSequence,
                ObjectType::ObjectForeignTable,
            ]
            .map(|t| t as i32);
            if tableish.contains(&d.remove_type) {
                for o in &d.objects {
                    if let Some(NodeEnum::List(l)) = o.node.as_ref() {
                        let parts: Vec<&str> = l
                            .items
                            .iter()
                            .filter_map(|i| match i.node.as_ref() {
                                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                                _ => None,
                            })
                            .collect();
                        if !s.tables.contains(&parts.join(".")) {
                            s.tables.push(parts.join("."));
                        }
                    }
                }
                if d.concurrent {
                    s.lock(Lock::ShareUpdateExclusive);
                } else {
                    s.lock(Lock::AccessExclusive);
                    if d.remove_type == ObjectType::ObjectIndex as i32 {
                        s.safer("DROP INDEX CONCURRENTLY");
                    }
                }
            }
            s.note("drops objects and their data: not undone by pgward");
        }
        NodeEnum::TruncateStmt(t) => {
            for r in &t.relations {
                if let Some(NodeEnum::RangeVar(rv)) = r.node.as_ref() {
                    s.table(Some(rv));
                }
            }
            s.lock(Lock::AccessExclusive);
            s.note("removes every row");
        }
        NodeEnum::RenameStmt(r) => {
            s.table(r.relation.as_ref());
            s.lock(Lock::AccessExclusive);
            s.note("renames: clients using the old name fail");
        }
        NodeEnum::CreateTrigStmt(t) => {
            s.table(t.relation.as_ref());
            s.lock(Lock::ShareRowExclusive);
        }
        NodeEnum::ClusterStmt(c) => {
            s.table(c.relation.as_ref());
            s.lock(Lock::AccessExclusive);
            s.note("rewrites the table");
        }
        NodeEnum::VacuumStmt(v) => {
            for r in &v.rels {
                if let Some(NodeEnum::VacuumRelation(vr)) = r.node.as_ref() {
                    s.table(vr.relation.as_ref());
                }
            }
            let full = v.options.iter().any(|o| {
                matches!(o.node.as_ref(), Some(NodeEnum::DefElem(d))
                    if d.defname.eq_ignore_ascii_case("full"))
            });
            if full {
                s.lock(Lock::AccessExclusive);
                s.note("rewrites the table");
            } else {
                s.lock(Lock::ShareUpdateExclusive);
            }
        }
        NodeEnum::ReindexStmt(r) => {
            s.table(r.relation.as_ref());
            let concurrent = r.params.iter().any(|o| {
                matches!(o.node.as_ref(), Some(NodeEnum::DefElem(d))
                    if d.defname.eq_ignore_ascii_case("concurrently"))
            });
            if concurrent {
                s.lock(Lock::ShareUpdateExclusive);
            } else {
                // SHARE on the table, ACCESS EXCLUSIVE on the index: reads
                // that would use the index wait too.
                s.lock(Lock::Share);
                s.note("locks the index against reads that use it");
                s.safer("REINDEX ... CONCURRENTLY");
            }
        }
        NodeEnum::RefreshMatViewStmt(r) => {
            s.table(r.relation.as_ref());
            if r.concurrent {
                s.lock(Lock::Exclusive);
            } else {
                s.lock(Lock::AccessExclusive);
                s.safer("REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index)");
            }
        }
        NodeEnum::LockStmt(l) => {
            for r in &l.relations {
                if let Some(NodeEnum::RangeVar(rv)) = r.node.as_ref() {
                    s.table(Some(rv));
                }
            }
            s.lock(Lock::from_mode(l.mode));
            s.note("holds the lock until the transaction ends");
        }
        NodeEnum::UpdateStmt(u) => {
            s.table(u.relation.as_ref());
            s.lock(Lock::RowExclusive);
            if u.where_clause.is_none() && u.from_clause.is_empty() {
                s.note("no WHERE clause: changes every row");
            }
        }
        NodeEnum::DeleteStmt(d) => {
            s.table(d.relation.as_ref());
            s.lock(Lock::RowExclusive);
            if d.where_clause.is_none() && d.using_clause.is_empty() {
                s.note("no WHERE clause: deletes every row");
            }
        }
        NodeEnum::InsertStmt(i) => {
            s.table(i.relation.as_ref());
            s.lock(Lock::RowExclusive);
        }
        NodeEnum::MergeStmt(m) => {
            s.table(m.relation.as_ref());
            s.lock(Lock::RowExclusive);
        }
        _ => {}
    }
    s
}

fn alter_table_cmd(s: &mut Step, c: &pg_query::protobuf::AlterTableCmd) {
    let Ok(kind) = At::try_from(c.subtype) else {
        s.lock(Lock::AccessExclusive);
        return;
    };
    match kind {
        // Lighter locks, per PostgreSQL's ALTER TABLE page.
        At::AtSetStatistics
        | At::AtClusterOn
        | At::AtDropCluster
        | At::AtSetRelOptions
        | At::AtResetRelOptions
        | At::AtReplaceRelOptions
        | At::AtValidateConstraint => s.lock(Lock::ShareUpdateExclusive),
        At::AtEnableTrig
        | At::AtEnableAlwaysTrig
        | At::AtEnableReplicaTrig
        | At::AtDisableTrig
        | At::AtEnableTrigAll
        | At::AtDisableTrigAll
        | At::AtEnableTrigUser
        | At::AtDisableTrigUser => s.lock(Lock::ShareRowExclusive),
        At::AtAttachPartition => {
            s.lock(Lock::ShareUpdateExclusive);
            s.note("scans the partition to check its bounds unless a matching CHECK exists");
        }
        At::AtDetachPartition => {
            s.lock(Lock::AccessExclusive);
            s.safer("DETACH PARTITION ... CONCURRENTLY");
        }
        At::AtAddColumn => {
            s.lock(Lock::AccessExclusive);
            if let Some(NodeEnum::ColumnDef(col)) = c.def.as_ref().and_then(|d| d.node.as_ref()) {
                column_def(s, col);
            }
        }
        At::AtAlterColumnType => {
            s.lock(Lock::AccessExclusive);
            s.note("rewrites the table unless the new type is binary-compatible");
            s.safer("add a new column, backfill it in batches, then switch");
        }
        At::AtSetNotNull => {
            s.lock(Lock::AccessExclusive);
            s.note("scans the whole table");
            s.safer("ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL");
        }
        At::AtAddConstraint => {
            s.lock(Lock::AccessExclusive);
            if let Some(NodeEnum::Constraint(k)) = c.def.as_ref().and_then(|d| d.node.as_ref()) {
                constraint(s, k);
            }
        }
        At::AtSetTableSpace | At::AtSetLogged | At::AtSetUnLogged | At::AtSetAccessMethod => {
            s.lock(Lock::AccessExclusive);
            s.note("rewrites the table");
        }
        _ => s.lock(Lock::AccessExclusive),
    }
}

fn column_def(s: &mut Step, col: &pg_query::protobuf::ColumnDef) {
    for k in &col.constraints {
        if let Some(NodeEnum::Constraint(k)) = k.node.as_ref() {
            match ConstrType::try_from(k.contype) {
                Ok(ConstrType::ConstrDefault) => {
                    if k.raw_expr.as_deref().is_some_and(|e| !plain_constant(e)) {
                        // A volatile default (random(), clock_timestamp())
                        // is computed per row: the table is rewritten.
                        s.note(
                            "a default that is not a constant may rewrite the table (if volatile)",
                        );
                    }
                }
                Ok(ConstrType::ConstrGenerated | ConstrType::ConstrIdentity) => {
                    s.note("rewrites the table to fill the column");
                }
                Ok(ConstrType::ConstrNotnull) if !has_default(col) => {}
                _ => constraint(s, k),
            }
        }
    }
}

fn has_default(col: &pg_query::protobuf::ColumnDef) -> bool {
    col.constraints.iter().any(|k| {
        matches!(k.node.as_ref(), Some(NodeEnum::Constraint(k))
            if k.contype == ConstrType::ConstrDefault as i32)
    })
}

/// A literal, possibly cast (`0`, `'x'::text`, `NULL`): evaluated once.
fn plain_constant(e: &pg_query::protobuf::Node) -> bool {
    match e.node.as_ref() {
        Some(NodeEnum::AConst(_)) => true,
        Some(NodeEnum::TypeCast(t)) => t.arg.as_deref().is_some_and(plain_constant),
        _ => false,
    }
}

fn constraint(s: &mut Step, k: &pg_query::protobuf::Constraint) {
    match ConstrType::try_from(k.contype) {
        Ok(ConstrType::ConstrForeign) => {
            // Both tables, SHARE ROW EXCLUSIVE: lower than the statement's
            // ACCESS EXCLUSIVE only when it is the sole subcommand, which
            // `lock` keeps as the maximum anyway.
            s.table(k.pktable.as_ref());
            if !k.skip_validation {
                s.note("scans the table to validate the foreign key");
                s.safer("ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT");
            }
        }
        Ok(ConstrType::ConstrCheck) if !k.skip_validation => {
            s.note("scans the whole table to validate the check");
            s.safer("ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT");
        }
        Ok(ConstrType::ConstrPrimary | ConstrType::ConstrUnique) if k.indexname.is_empty() => {
            s.note("builds a unique index while blocking reads and writes");
            s.safer("CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX");
        }
        Ok(ConstrType::ConstrExclusion) => {
            s.note("builds an index while blocking reads and writes");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Step {
        let mut steps = assess(&[sql]);
        assert_eq!(steps.len(), 1, "{sql}");
        steps.remove(0)
    }

    #[test]
    fn index_builds_name_their_lock_and_the_concurrent_form() {
        let s = one("CREATE INDEX i ON public.orders (customer_id)");
        assert_eq!(s.lock, Some(Lock::Share));
        assert_eq!(s.tables, ["public.orders"]);
        assert!(s.safer.contains(&"CREATE INDEX CONCURRENTLY"));
        let s = one("CREATE INDEX CONCURRENTLY i ON orders (customer_id)");
        assert_eq!(s.lock, Some(Lock::ShareUpdateExclusive));
        assert!(s.safer.is_empty());
    }

    #[test]
    fn alter_table_takes_the_strongest_lock_of_its_subcommands() {
        let s = one("ALTER TABLE t VALIDATE CONSTRAINT c");
        assert_eq!(s.lock, Some(Lock::ShareUpdateExclusive));
        let s = one("ALTER TABLE t VALIDATE CONSTRAINT c, DROP COLUMN x");
        assert_eq!(s.lock, Some(Lock::AccessExclusive));
        assert!(s.line().contains("blocks reads and writes"), "{}", s.line());
        let s = one("ALTER TABLE t DISABLE TRIGGER ALL");
        assert_eq!(s.lock, Some(Lock::ShareRowExclusive));
    }

    #[test]
    fn rewrites_and_scans_are_named_with_their_safer_forms() {
        let s = one("ALTER TABLE t ALTER COLUMN a TYPE bigint");
        assert!(s.notes.iter().any(|n| n.contains("rewrites")));
        let s = one("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()");
        assert!(s.notes.iter().any(|n| n.contains("rewrite")), "{s:?}");
        let s = one("ALTER TABLE t ADD COLUMN c int DEFAULT 0");
        assert!(s.notes.is_empty(), "{s:?}");
        let s = one("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id)");
        assert_eq!(s.tables, ["t", "u"]);
        assert!(s.safer.iter().any(|x| x.contains("NOT VALID")));
        let s = one("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id) NOT VALID");
        assert!(s.safer.is_empty(), "{s:?}");
        let s = one("ALTER TABLE t ADD PRIMARY KEY (id)");
        assert!(s.safer.iter().any(|x| x.contains("USING INDEX")));
        let s = one("ALTER TABLE t ALTER COLUMN a SET NOT NULL");
        assert!(s.notes.iter().any(|n| n.contains("scans")));
    }

    #[test]
    fn writes_say_when_they_touch_every_row() {
        let s = one("DELETE FROM orders");
        assert_eq!(s.lock, Some(Lock::RowExclusive));
        assert!(s.line().contains("deletes every row"));
        let s = one("DELETE FROM orders WHERE id = 3");
        assert!(s.notes.is_empty());
        let s = one("UPDATE orders SET total = 0");
        assert!(s.line().contains("changes every row"));
        let s = one("TRUNCATE a, b");
        assert_eq!(s.tables, ["a", "b"]);
        assert_eq!(s.lock, Some(Lock::AccessExclusive));
    }

    #[test]
    fn lock_table_names_its_mode_and_a_summary_joins_statements() {
        let s = one("LOCK TABLE t IN SHARE MODE");
        assert_eq!(s.lock, Some(Lock::Share));
        let s = one("LOCK TABLE t");
        assert_eq!(s.lock, Some(Lock::AccessExclusive));
        let sum = summary(&["CREATE INDEX i ON t (a); DROP TABLE u", "SELECT 1"]);
        assert!(sum.starts_with("SHARE on t"), "{sum}");
        assert!(sum.contains(" | ACCESS EXCLUSIVE on u "), "{sum}");
        assert_eq!(summary(&["SELECT 1"]), "");
        assert!(summary(&["CREATE TABLE x ("]).contains("not parsed"));
    }
}
