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

/// Strings and numbers a literal may be replaced with: what a shared
/// verdict could be wrong about (an empty or a real file name, a setting
/// value or name, SQL text, a large-object mode).
const STRINGS: [&str; 7] = [
    "'zz'",
    "''",
    "'/tmp/pgward-mutant'",
    "'off'",
    "'archive_command'",
    "'SELECT pg_read_file(''/etc/passwd'')'",
    "'131072'",
];
const NUMBERS: [&str; 3] = ["7", "0", "131072"];

/// Changes every literal PostgreSQL's own lexer finds: numbers become
/// `number`, strings `string`.
fn with_other_literals(sql: &str, string: &str, number: &str) -> Option<String> {
    use pg_query::protobuf::Token;
    let scan = pg_query::scan(sql).ok()?;
    let mut out = String::new();
    let mut at = 0;
    for t in &scan.tokens {
        let (start, end) = (t.start as usize, t.end as usize);
        let replacement = match Token::try_from(t.token) {
            Ok(Token::Iconst) | Ok(Token::Fconst) => number,
            Ok(Token::Sconst) => string,
            _ => continue,
        };
        out.push_str(&sql[at..start]);
        out.push_str(replacement);
        at = end;
    }
    out.push_str(&sql[at..]);
    Some(out)
}

/// What a classification decides with: everything but the text.
fn judged(a: &pgward::policy::Analysis) -> Result<Vec<String>, String> {
    a.as_ref().map_err(Clone::clone).map(|stmts| {
        stmts
            .iter()
            .map(|st| {
                let dangerous: Vec<&str> = st.dangerous.iter().map(|d| d.name).collect();
                format!(
                    "{} {dangerous:?} {:?} {:?} {:?} {:?} {:?} {}",
                    st.classes(),
                    st.relations,
                    st.functions,
                    st.settings,
                    st.hidden_reads,
                    (&st.prepares, &st.executes, &st.deallocates),
                    st.unknown_function
                )
            })
            .collect()
    })
}

/// A cached verdict is reused only where classifying the text afresh
/// gives the same: every corpus statement, with its literals replaced by
/// each of `STRINGS` and `NUMBERS`, is classified through a cache that
/// has seen the original (and so may answer by shape) and without one.
#[test]
fn the_cache_never_changes_a_classification() {
    let warm = Catalog::builtin();
    let cold = Catalog::builtin();
    let mut failures = Vec::new();
    let mut mutants = 0;
    for case in corpus() {
        let _ = warm.analyze(&case.sql);
        for (i, string) in STRINGS.iter().enumerate() {
            let number = NUMBERS[i % NUMBERS.len()];
            let Some(mutant) = with_other_literals(&case.sql, string, number) else {
                continue;
            };
            if mutant == case.sql {
                continue;
            }
            mutants += 1;
            let cached = judged(&warm.analyze(&mutant));
            let fresh = judged(&pgward::policy::classify::classify(&mutant, &cold));
            if cached != fresh {
                failures.push(format!(
                    "line {}: {mutant}\n  cached: {cached:?}\n  fresh:  {fresh:?}",
                    case.line
                ));
            }
        }
    }
    assert!(mutants >= 1000, "{mutants} mutants");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Statements that share a shape (literals blanked by pgward's scanner)
/// share a classification: pgward's scanner finds the literals exactly
/// where PostgreSQL's lexer does, across the whole corpus.
#[test]
fn shape_sharing_is_sound_over_the_corpus() {
    let cat = Catalog::builtin();
    let mut shaped = 0;
    for case in corpus() {
        let Some(shape) = pgward::policy::shape::shape(&case.sql) else {
            continue;
        };
        let Some(variant) = with_other_literals(&case.sql, "'zz'", "7") else {
            continue;
        };
        assert_eq!(
            pgward::policy::shape::shape(&variant).as_deref(),
            Some(shape.as_str()),
            "line {}: {} vs {variant}",
            case.line,
            case.sql
        );
        let a = pgward::policy::classify::classify(&case.sql, &cat);
        let b = pgward::policy::classify::classify(&variant, &cat);
        if let (Ok(a), Ok(b)) = (&a, &b) {
            for (x, y) in a.iter().zip(b) {
                if !x.literal_sensitive {
                    assert_eq!(x.classes(), y.classes(), "line {}", case.line);
                    assert_eq!(x.functions, y.functions, "line {}", case.line);
                    assert_eq!(x.relations, y.relations, "line {}", case.line);
                    assert_eq!(x.dangerous.len(), y.dangerous.len(), "line {}", case.line);
                }
            }
            shaped += 1;
        }
    }
    assert!(shaped >= 100, "{shaped} corpus statements have a shape");
}
