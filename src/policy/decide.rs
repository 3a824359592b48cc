//! Decisions: may this role run this statement?

use super::catalog::Catalog;
use super::class::Class;
use super::classify::Statement;
use super::role::{Pattern, Role};
use super::settings;
use crate::protocol::{sqlstate, PgError};

/// The outcome for one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allowed only with a DBA's approval.
    NeedsApproval(Denial),
    Deny(Denial),
}

/// Why a statement is not simply allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub class: Class,
    pub why: String,
    /// The rule that decided, with where it is declared.
    pub rule: String,
    /// What was refused, when it is not the class as a whole (a setting
    /// change, a dangerous function, a table).
    pub subject: Option<&'static str>,
}

impl Denial {
    fn new(class: Class, why: impl Into<String>, rule: impl Into<String>) -> Denial {
        Denial {
            class,
            why: why.into(),
            rule: rule.into(),
            subject: None,
        }
    }

    fn about(mut self, subject: &'static str) -> Denial {
        self.subject = Some(subject);
        self
    }

    /// The ErrorResponse the client gets: SQLSTATE 42501, naming pgward,
    /// the role, the class and the rule.
    pub fn to_error(&self, role: &str, statement: &str, approval: bool) -> PgError {
        let what = match (approval, self.subject) {
            (true, _) => {
                "needs a DBA's approval, and pgward's approval queue is not enabled".into()
            }
            (false, Some(subject)) => format!("allowed, but not {subject}"),
            (false, None) => "is not allowed".into(),
        };
        let mut shown: String = statement.chars().take(200).collect();
        if shown.len() < statement.len() {
            shown.push_str("...");
        }
        PgError::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "pgward: permission denied for role \"{role}\": class {} {what} ({})",
                self.class, self.why
            ),
        )
        .with_detail(format!("statement: {shown}"))
        .with_hint(format!("rule: {}", self.rule))
    }
}

fn class_names(set: super::class::ClassSet) -> String {
    if set.is_empty() {
        "[]".into()
    } else {
        format!("[{set}]")
    }
}

/// Decides one statement for `role`. `EXECUTE` must already have been
/// replaced by the statement it runs (the session knows what was prepared).
pub fn decide(role: &Role, st: &Statement, cat: &Catalog) -> Verdict {
    let here = |key: &str| format!("role {} ({}) {key}", role.name, role.source);
    // When the class itself is allowed, say what was refused instead.
    let refuse = |d: Denial, subject: &'static str| {
        Verdict::Deny(if role.allow.contains(d.class) {
            d.about(subject)
        } else {
            d
        })
    };
    for d in &st.dangerous {
        if !role.allow_dangerous.iter().any(|a| a == d.name) {
            return refuse(
                Denial::new(
                    d.class,
                    format!("{}: {}", d.name, d.why),
                    format!(
                        "built-in dangerous list: {} is denied unless {} lists it",
                        d.name,
                        here("allow_dangerous")
                    ),
                ),
                "this dangerous built-in",
            );
        }
    }
    for f in &st.functions {
        if let Some(p) = role.functions_deny.iter().find(|p| p.matches(f)) {
            return refuse(
                Denial::new(
                    Class::Read,
                    format!("function {f} is denied"),
                    here(&format!("functions.deny {:?}", p.text)),
                ),
                "this function",
            );
        }
    }
    let mut approval = None;
    for r in &st.reasons {
        if let Some(f) = &r.function {
            if role.functions_allow.iter().any(|p| p.matches(f)) {
                continue;
            }
        }
        if role.allow.contains(r.class) {
            continue;
        }
        let denial = Denial::new(
            r.class,
            r.why.clone(),
            here(&format!("allow = {}", class_names(role.allow))),
        );
        if role.approve.contains(r.class) {
            approval.get_or_insert(denial);
        } else {
            return Verdict::Deny(denial);
        }
    }
    for change in &st.settings {
        if let Err(refusal) = settings::check(change, role) {
            return refuse(
                Denial::new(
                    Class::Session,
                    refusal.why,
                    format!("{} ({})", refusal.rule, role.source),
                ),
                "this setting change",
            );
        }
    }
    if role.tables.is_empty() {
        return approval.map_or(Verdict::Allow, Verdict::NeedsApproval);
    }
    // A read of tables pgward cannot name could be a read of any table.
    if let (Some(why), Some(rule)) = (
        st.hidden_reads.first(),
        role.tables
            .iter()
            .find(|r| r.class.is_none_or(|c| c == Class::Read)),
    ) {
        return refuse(
            Denial::new(
                Class::Read,
                format!("{why}: the role's table rules cannot check it"),
                here(&rule.key()),
            ),
            "on this table",
        );
    }
    for rel in &st.relations {
        // An unqualified name must pass under every schema it may resolve to.
        let schemas = match &rel.schema {
            Some(s) => vec![s.as_str()],
            None => match cat.relation_schemas(&rel.name) {
                Some(schemas) => schemas,
                None => {
                    let target = Target::Unplaced(&rel.name);
                    if let Some(d) = table_denial(role, target, rel.access, &here) {
                        return refuse(d, "on this table");
                    }
                    if approval.is_none() {
                        approval = table_approval(role, target, rel.access, &here);
                    }
                    continue;
                }
            },
        };
        for schema in schemas {
            let full = format!("{schema}.{}", rel.name);
            let target = Target::Placed {
                full: &full,
                deny_only: false,
            };
            if let Some(d) = table_denial(role, target, rel.access, &here) {
                return refuse(d, "on this table");
            }
            if approval.is_none() {
                approval = table_approval(role, target, rel.access, &here);
            }
            // A parent's rows include its children's, which must pass in
            // full; a child's rows are its parent's, which must not be
            // denied (an allow list need not name the parent).
            let down = cat
                .descendants(&full)
                .into_iter()
                .map(|t| (t, "inherits from or is a partition of", false));
            let up = cat
                .ancestors(&full)
                .into_iter()
                .map(|t| (t, "is inherited by or partitioned into", true));
            for (other, link, deny_only) in down.chain(up) {
                let target = Target::Placed {
                    full: other,
                    deny_only,
                };
                if let Some(mut d) = table_denial(role, target, rel.access, &here) {
                    d.why = format!("{other} {link} {full}: {}", d.why);
                    return refuse(d, "on this table");
                }
                // Rows of a table that needs approval, read through its
                // parent or child, need it too.
                let target = Target::Placed {
                    full: other,
                    deny_only: false,
                };
                if let (None, Some(mut d)) =
                    (&approval, table_approval(role, target, rel.access, &here))
                {
                    d.why = format!("{other} {link} {full}: {}", d.why);
                    approval = Some(d);
                }
            }
        }
    }
    match approval {
        Some(d) => Verdict::NeedsApproval(d),
        None => Verdict::Allow,
    }
}

/// A relation as table rules see it.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// `schema.name`; with `deny_only`, only deny patterns count.
    Placed { full: &'a str, deny_only: bool },
    /// An unqualified name the catalog does not hold (created since it was
    /// loaded, or missing): it may be in any schema, so it must pass in
    /// every one.
    Unplaced(&'a str),
}

impl Target<'_> {
    fn denied_by(self, p: &Pattern) -> bool {
        match self {
            Target::Placed { full, .. } => p.matches(full),
            Target::Unplaced(name) => p.matches_in_some_schema(name),
        }
    }

    /// Whether an allow pattern lets it through (any does, when only deny
    /// patterns count).
    fn allowed_by(self, p: &Pattern) -> bool {
        match self {
            Target::Placed { full, deny_only } => deny_only || p.matches(full),
            Target::Unplaced(name) => p.matches_in_every_schema(name),
        }
    }

    fn why(self, access: Class, verdict: &str) -> String {
        match self {
            Target::Placed { full, .. } => format!("{access} of {full} {verdict}"),
            Target::Unplaced(name) => format!("{access} of {name} {verdict} in some schema: pgward's catalog holds no relation of that name, so it may be in any schema on the search path (name its schema)"),
        }
    }
}

/// Why `role`'s table rules refuse `access` to `target`, if they do.
fn table_denial(
    role: &Role,
    target: Target,
    access: Class,
    here: &dyn Fn(&str) -> String,
) -> Option<Denial> {
    for rule in &role.tables {
        if rule.class.is_some_and(|c| c != access) {
            continue;
        }
        if let Some(p) = rule.deny.iter().find(|p| target.denied_by(p)) {
            return Some(Denial::new(
                access,
                target.why(access, "is denied"),
                here(&format!("{}.deny {:?}", rule.key(), p.text)),
            ));
        }
        if !rule.allow.is_empty()
            && !rule
                .allow
                .iter()
                .chain(&rule.approve)
                .any(|p| target.allowed_by(p))
        {
            return Some(Denial::new(
                access,
                target.why(access, "is not in the allowed tables"),
                here(&format!("{}.allow", rule.key())),
            ));
        }
    }
    None
}

/// Why `role`'s table rules hold `access` to `target` for approval, if
/// they do: an `approve` pattern matches it (an unplaced name: in some
/// schema it may resolve to).
fn table_approval(
    role: &Role,
    target: Target,
    access: Class,
    here: &dyn Fn(&str) -> String,
) -> Option<Denial> {
    role.tables
        .iter()
        .filter(|rule| rule.class.is_none_or(|c| c == access))
        .find_map(|rule| {
            let p = rule.approve.iter().find(|p| target.denied_by(p))?;
            Some(Denial::new(
                access,
                target.why(access, "needs approval"),
                here(&format!("{}.approve {:?}", rule.key(), p.text)),
            ))
        })
}

/// Decides every statement of one message, in order, the way the session
/// does: `EXECUTE name` is judged by the statement prepared under `name`,
/// earlier in the same string or before (`prepared`). Returns one verdict
/// per statement.
pub fn decide_all(
    role: &Role,
    statements: &[Statement],
    cat: &Catalog,
    prepared: &dyn Fn(&str) -> Vec<std::sync::Arc<Statement>>,
) -> Vec<Verdict> {
    let mut here: Vec<(String, &Statement)> = Vec::new();
    let mut out = Vec::with_capacity(statements.len());
    for st in statements {
        let mut verdict = decide(role, st, cat);
        if let (Verdict::Allow, Some(name)) = (&verdict, &st.executes) {
            // Everything that may be prepared under the name must pass.
            let mut candidates: Vec<Verdict> = here
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, s)| decide(role, s, cat))
                .collect();
            candidates.extend(prepared(name).iter().map(|s| decide(role, s, cat)));
            let worst = candidates
                .iter()
                .find(|v| matches!(v, Verdict::Deny(_)))
                .or_else(|| {
                    candidates
                        .iter()
                        .find(|v| matches!(v, Verdict::NeedsApproval(_)))
                })
                .or(candidates.first())
                .cloned();
            verdict = worst.unwrap_or_else(|| {
                Verdict::Deny(Denial::new(
                    Class::Unknown,
                    format!("prepared statement \"{name}\" was not prepared through pgward, so what it runs is unknown"),
                    "built-in: EXECUTE is judged by what was prepared",
                ))
            });
        }
        if let Some(name) = &st.prepares {
            here.push((name.clone(), st));
        }
        match &st.deallocates {
            Some(Some(name)) => here.retain(|(n, _)| n != name),
            Some(None) => here.clear(),
            None => {}
        }
        out.push(verdict);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::classify::classify;
    use crate::policy::role::{Pattern, TableRule};

    fn reader(allow: &[&str], deny: &[&str]) -> Role {
        Role {
            name: "r".into(),
            allow: [Class::Read].into_iter().collect(),
            tables: vec![TableRule {
                class: Some(Class::Read),
                allow: allow.iter().map(|p| Pattern::new(p)).collect(),
                deny: deny.iter().map(|p| Pattern::new(p)).collect(),
                approve: Vec::new(),
            }],
            ..Role::default()
        }
    }

    /// `tables.read = { approve = [...] }`: reading those tables waits for
    /// an approver, through a parent or child too; other tables do not.
    #[test]
    fn table_approve_patterns_hold_reads_of_those_tables() {
        let mut cat = Catalog::builtin();
        cat.add_relation("hr", "salaries", b'r');
        cat.add_relation("public", "orders", b'r');
        cat.add_relation("public", "payments", b'r');
        cat.add_relation("hr", "payments_hr", b'r');
        cat.add_inheritance("hr.payments_hr", "public.payments");
        let mut role = reader(&[], &["public.api_keys"]);
        role.tables[0].approve = vec![Pattern::new("hr.*")];
        let verdict_of = |role: &Role, sql: &str| {
            let st = classify(sql, &cat).expect(sql);
            decide(role, &st[0], &cat)
        };
        match verdict_of(&role, "SELECT amount FROM hr.salaries") {
            Verdict::NeedsApproval(d) => {
                assert!(d.why.contains("hr.salaries needs approval"), "{}", d.why);
                assert!(
                    d.rule.contains("tables.read.approve \"hr.*\""),
                    "{}",
                    d.rule
                );
            }
            v => panic!("{v:?}"),
        }
        // Unqualified: it resolves to hr.salaries.
        assert!(matches!(
            verdict_of(&role, "SELECT * FROM salaries"),
            Verdict::NeedsApproval(_)
        ));
        assert!(matches!(
            verdict_of(&role, "SELECT id FROM public.orders"),
            Verdict::Allow
        ));
        // The parent's rows include the child's.
        match verdict_of(&role, "SELECT * FROM public.payments") {
            Verdict::NeedsApproval(d) => assert!(d.why.starts_with("hr.payments_hr"), "{}", d.why),
            v => panic!("{v:?}"),
        }
        // Deny still wins over approve.
        role.tables[0].deny.push(Pattern::new("hr.salaries"));
        assert!(matches!(
            verdict_of(&role, "SELECT * FROM hr.salaries"),
            Verdict::Deny(_)
        ));
        // With an allow list, approve patterns pass it (and hold).
        role.tables[0].deny.clear();
        role.tables[0].allow = vec![Pattern::new("public.*")];
        assert!(matches!(
            verdict_of(&role, "SELECT * FROM hr.salaries"),
            Verdict::NeedsApproval(_)
        ));
        assert!(matches!(
            verdict_of(&role, "SELECT * FROM public.orders"),
            Verdict::Allow
        ));
        assert!(matches!(
            verdict_of(&role, "SELECT * FROM pg_catalog.pg_class"),
            Verdict::Deny(_)
        ));
    }

    fn allowed(role: &Role, sql: &str, cat: &Catalog) -> bool {
        let st = classify(sql, cat).expect(sql);
        matches!(decide(role, &st[0], cat), Verdict::Allow)
    }

    /// An unqualified name the loaded catalog lacks (a table created since
    /// it was loaded) could be in any schema on the search path: it must
    /// pass the rules in every schema.
    #[test]
    fn unplaced_relations_must_pass_in_every_schema() {
        let mut cat = Catalog::builtin();
        let sql = "SELECT note FROM payroll";
        let public_only = reader(&["public.*"], &[]);
        let no_hr = reader(&[], &["hr.*"]);
        let everywhere = reader(&["*.payroll"], &["*.api_keys"]);
        // The offline snapshot knows no user table and places it in public.
        assert!(allowed(&public_only, sql, &cat));
        assert!(allowed(&no_hr, sql, &cat));
        cat.lists_user_relations = true;
        assert!(!allowed(&public_only, sql, &cat));
        assert!(!allowed(&no_hr, sql, &cat));
        assert!(allowed(&everywhere, sql, &cat));
        assert!(!allowed(&everywhere, "SELECT * FROM api_keys", &cat));
        // Qualified names and system relations are placed.
        assert!(allowed(
            &public_only,
            "SELECT note FROM public.payroll",
            &cat
        ));
        assert!(allowed(&no_hr, "SELECT relname FROM pg_class", &cat));
        assert!(!allowed(&public_only, "SELECT relname FROM pg_class", &cat));
        // Names a WITH clause defines are not relations.
        assert!(allowed(
            &public_only,
            "WITH payroll AS (SELECT 1 AS note) SELECT note FROM payroll",
            &cat
        ));
        let err = match decide(&public_only, &classify(sql, &cat).unwrap()[0], &cat) {
            Verdict::Deny(d) => d.why,
            other => panic!("{other:?}"),
        };
        assert!(err.contains("may be in any schema"), "{err}");
    }

    /// Rows are shared along inheritance and partitioning: a read of a
    /// parent reads its children's rows, a read of a partition reads its
    /// parent's. Either is refused when the other is.
    #[test]
    fn inheritance_relatives_pass_the_rules_too() {
        let mut cat = Catalog::builtin();
        cat.add_inheritance("public.logs_2024", "public.logs");
        cat.add_inheritance("public.logs_2024_q1", "public.logs_2024");
        cat.add_inheritance("public.secret_child", "public.base");
        let no_logs = reader(&[], &["public.logs"]);
        assert!(!allowed(&no_logs, "SELECT * FROM logs_2024_q1", &cat));
        assert!(!allowed(&no_logs, "SELECT * FROM public.logs_2024", &cat));
        assert!(allowed(&no_logs, "SELECT * FROM base", &cat));
        let no_child = reader(&[], &["public.secret_child"]);
        assert!(!allowed(&no_child, "SELECT * FROM base", &cat));
        assert!(allowed(&no_child, "SELECT * FROM logs", &cat));
        let mid = reader(&[], &["public.logs_2024"]);
        assert!(!allowed(&mid, "SELECT * FROM logs", &cat));
        assert!(!allowed(&mid, "SELECT * FROM logs_2024_q1", &cat));
        assert_eq!(
            cat.descendants("public.logs"),
            ["public.logs_2024", "public.logs_2024_q1"]
        );
        assert_eq!(
            cat.ancestors("public.logs_2024_q1"),
            ["public.logs_2024", "public.logs"]
        );
        // An allow list need not name a partition's parent, but must name
        // a parent's partitions.
        cat.add_inheritance("public.old_logs", "archive.logs");
        let public_only = reader(&["public.*"], &[]);
        assert!(allowed(&public_only, "SELECT * FROM old_logs", &cat));
        cat.add_inheritance("archive.logs_2023", "public.logs");
        assert!(!allowed(&public_only, "SELECT * FROM logs", &cat));
    }
}
