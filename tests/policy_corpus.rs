//! The policy corpus (tests/corpus/statements.txt) through classification
//! and decision, as `pgward explain` does, against the built-in catalog.

mod common;

use common::corpus::{corpus, corpus_rules, ROLES};
use pgward::policy::explain::outcomes;
use pgward::policy::{Catalog, ClassSet, Verdict};

fn letter(verdicts: &[Verdict]) -> char {
    if verdicts.iter().any(|v| matches!(v, Verdict::Deny(_))) {
        'D'
    } else if verdicts
        .iter()
        .any(|v| matches!(v, Verdict::NeedsApproval(_)))
    {
        'P'
    } else {
        'A'
    }
}

#[test]
fn corpus_has_every_category_and_enough_statements() {
    let cases = corpus();
    assert!(cases.len() >= 300, "only {} statements", cases.len());
    let mut seen = ClassSet::EMPTY;
    let cat = Catalog::builtin();
    for c in &cases {
        if let Ok(stmts) = cat.analyze(&c.sql).as_ref() {
            for s in stmts {
                for class in s.classes().iter() {
                    seen.insert(class);
                }
            }
        }
    }
    assert_eq!(seen, ClassSet::all(), "every class appears in the corpus");
    let reader_allowed = cases.iter().filter(|c| c.expect[0] == 'A').count();
    let reader_denied = cases.iter().filter(|c| c.expect[0] == 'D').count();
    assert!(
        reader_allowed >= 100 && reader_denied >= 150,
        "{reader_allowed} {reader_denied}"
    );
}

#[test]
fn every_statement_gets_its_expected_classes_and_verdicts() {
    let rules = corpus_rules();
    let cat = Catalog::builtin();
    let mut failures = Vec::new();
    for case in corpus() {
        for (i, role_name) in ROLES.iter().enumerate() {
            let role = &rules.roles[*role_name];
            let outs = outcomes(role, &case.sql, &cat);
            let verdicts: Vec<Verdict> = outs.iter().map(|o| o.verdict.clone()).collect();
            let got = letter(&verdicts);
            if got != case.expect[i] {
                let why: Vec<String> = outs
                    .iter()
                    .filter_map(|o| match &o.verdict {
                        Verdict::Allow => None,
                        Verdict::Deny(d) | Verdict::NeedsApproval(d) => {
                            Some(format!("{}: {} [{}]", d.class, d.why, d.rule))
                        }
                    })
                    .collect();
                failures.push(format!(
                    "line {}: {role_name} expected {} got {got}: {} {why:?}",
                    case.line, case.expect[i], case.sql
                ));
            }
        }
        let analysis = cat.analyze(&case.sql);
        let classes = match analysis.as_ref() {
            Ok(stmts) => {
                let mut set = ClassSet::EMPTY;
                for s in stmts {
                    for c in s.classes().iter() {
                        set.insert(c);
                    }
                }
                set.to_string()
            }
            Err(_) => "unparsable".into(),
        };
        if classes != case.classes {
            failures.push(format!(
                "line {}: classes expected {} got {classes}: {}",
                case.line, case.classes, case.sql
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
