//! `pgward explain`: the classification of each statement and the
//! decision for a role, with the rule that made it.

use std::fmt::Write;

use super::catalog::Catalog;
use super::class::Class;
use super::classify::Analysis;
use super::decide::{decide_all, Verdict};
use super::role::Role;

/// One statement's outcome, for tests and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub text: String,
    pub classes: String,
    pub verdict: Verdict,
}

/// Classifies `sql` and decides it for `role`. A string that does not
/// parse is one denied outcome carrying the parser's message.
pub fn outcomes(role: &Role, sql: &str, cat: &Catalog) -> Vec<Outcome> {
    outcomes_of(role, sql, &cat.analyze(sql), cat)
}

fn outcomes_of(role: &Role, sql: &str, analysis: &Analysis, cat: &Catalog) -> Vec<Outcome> {
    let statements = match analysis {
        Ok(s) => s,
        Err(message) => {
            return vec![Outcome {
                text: sql.trim().to_owned(),
                classes: "unparsable".into(),
                verdict: Verdict::Deny(super::Denial {
                    class: Class::Unknown,
                    why: format!("the parser says: {message}"),
                    rule: "built-in: what does not parse is denied".into(),
                    subject: None,
                }),
            }]
        }
    };
    let verdicts = decide_all(role, statements, cat, &|_| Vec::new());
    statements
        .iter()
        .zip(verdicts)
        .map(|(st, verdict)| Outcome {
            text: st.text.clone(),
            classes: st.classes().to_string(),
            verdict,
        })
        .collect()
}

/// The human-readable report `pgward explain` prints.
pub fn report(role: &Role, sql: &str, cat: &Catalog) -> String {
    let mut out = String::new();
    // Classified once: a string too large for the cache would be twice.
    let analysis = cat.analyze(sql);
    let outcomes = outcomes_of(role, sql, &analysis, cat);
    let statements = analysis.as_ref().as_ref().ok();
    let plans = if role.masks.is_empty() {
        Vec::new()
    } else {
        crate::mask::plan_sql(sql, role, cat)
    };
    for (i, o) in outcomes.iter().enumerate() {
        let _ = writeln!(out, "statement {}: {}", i + 1, o.text);
        if let Some(st) = statements.and_then(|s| s.get(i)) {
            let _ = writeln!(out, "  parse node: {}", st.kind);
            let _ = writeln!(out, "  classes:    {}", o.classes);
            for r in &st.reasons {
                let _ = writeln!(out, "    {:<15} {}", r.class.name(), r.why);
            }
            if !st.relations.is_empty() {
                let rels: Vec<String> = st
                    .relations
                    .iter()
                    .map(|r| {
                        let name = match &r.schema {
                            Some(s) => format!("{s}.{}", r.name),
                            None => r.name.clone(),
                        };
                        format!("{name} ({})", r.access)
                    })
                    .collect();
                let _ = writeln!(out, "  relations:  {}", rels.join(", "));
            }
            for why in &st.hidden_reads {
                let _ = writeln!(out, "  reads:      {why}");
            }
            if !st.functions.is_empty() {
                let _ = writeln!(out, "  functions:  {}", st.functions.join(", "));
            }
            for s in &st.settings {
                let _ = writeln!(
                    out,
                    "  setting:    {} = {}",
                    s.name,
                    s.value.as_deref().unwrap_or("DEFAULT")
                );
            }
        } else {
            let _ = writeln!(out, "  classes:    {}", o.classes);
        }
        if let Some(plan) = plans.get(i) {
            masking(&mut out, plan);
        }
        match &o.verdict {
            Verdict::Allow => {
                let _ = writeln!(out, "  decision:   ALLOW for role {}", role.name);
            }
            Verdict::NeedsApproval(d) | Verdict::Deny(d) => {
                let word = if matches!(o.verdict, Verdict::Deny(_)) {
                    "DENY"
                } else {
                    "NEEDS APPROVAL"
                };
                let _ = writeln!(
                    out,
                    "  decision:   {word} for role {} (class {}: {})",
                    role.name, d.class, d.why
                );
                let _ = writeln!(out, "  rule:       {}", d.rule);
            }
        }
    }
    let _ = writeln!(out, "catalog: {}", cat.source);
    out
}

/// The masking lines of a statement: each output column's sources and
/// mask, or why the statement is refused to a role with masks.
fn masking(out: &mut String, plan: &crate::mask::StatementPlan) {
    use crate::mask::StatementPlan as P;
    let columns = |out: &mut String, cols: &[crate::mask::ColumnPlan]| {
        for (i, c) in cols.iter().enumerate() {
            let sources = if c.sources.is_empty() {
                "no column".to_owned()
            } else {
                c.sources.join(", ")
            };
            let mask = match c.mask {
                Some(m) if c.mask_nulls => format!("{m} (NULLs too)"),
                Some(m) => m.to_string(),
                None => "pass".to_owned(),
            };
            let _ = writeln!(
                out,
                "    {:>2}. {:<20} {:<22} from {}",
                i + 1,
                c.name,
                mask,
                sources
            );
        }
    };
    match plan {
        P::Pass { columns: None } => {
            let _ = writeln!(
                out,
                "  masking:    none (no masked column reaches the result)"
            );
        }
        P::Pass {
            columns: Some(cols),
        } => {
            let _ = writeln!(out, "  masking:    none; columns:");
            columns(out, cols);
        }
        P::Rows(r) => {
            let _ = writeln!(out, "  masking:    columns:");
            columns(out, &r.columns);
        }
        P::Declare { cursor, rows } => {
            let _ = writeln!(out, "  masking:    FETCH from cursor {cursor} uses:");
            match rows {
                Some(r) => columns(out, &r.columns),
                None => {
                    let _ = writeln!(out, "    (no masked column)");
                }
            }
        }
        P::Fetch { cursor } => {
            let _ = writeln!(out, "  masking:    as cursor {cursor} was declared");
        }
        P::Refuse(why) => {
            let _ = writeln!(out, "  masking:    REFUSED: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn explain_shows_each_columns_sources_and_mask() {
        let mut rules = crate::rules::Rules::default();
        rules
            .add_file(
                std::path::Path::new("r.toml"),
                "[role.agent]\nallow = [\"read\"]\n[role.agent.mask]\n\"public.customers.ssn\" = \"partial(0,4)\"\n",
            )
            .unwrap();
        let mut cat = super::Catalog::builtin();
        cat.add_relation("public", "customers", b'r');
        cat.add_columns("public", "customers", &[("id", 23), ("ssn", 25)]);
        let role = &rules.roles["agent"];
        let r = super::report(
            role,
            "SELECT id, ssn AS s FROM customers; SELECT c FROM customers c",
            &cat,
        );
        assert!(
            r.contains("partial(0,4)") && r.contains("from public.customers.ssn"),
            "{r}"
        );
        assert!(
            r.contains("pass") && r.contains("from public.customers.id"),
            "{r}"
        );
        assert!(r.contains("REFUSED") && r.contains("whole-row"), "{r}");
    }
}
