//! The policy corpus (tests/corpus/statements.txt): statements with their
//! expected classes and verdicts for the roles in tests/corpus/roles.toml.

use std::path::Path;

use pgward::auth::scram::Verifier;
use pgward::rules::Rules;

pub struct Case {
    pub line: usize,
    /// Expected verdict letters for reader, writer, dba.
    pub expect: [char; 3],
    pub classes: String,
    pub sql: String,
    /// Marked `!`: also run end to end.
    pub e2e: bool,
}

pub const ROLES: [&str; 3] = ["reader", "writer", "dba"];

pub fn corpus() -> Vec<Case> {
    let text = include_str!("../corpus/statements.txt");
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, " | ");
        let (Some(verdicts), Some(classes), Some(sql)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("statements.txt:{}: malformed line: {line}", i + 1);
        };
        let letters: Vec<char> = verdicts
            .split(' ')
            .filter_map(|v| v.chars().next())
            .collect();
        assert_eq!(letters.len(), 3, "statements.txt:{}: three verdicts", i + 1);
        let (e2e, sql) = match sql.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, sql),
        };
        cases.push(Case {
            line: i + 1,
            expect: [letters[0], letters[1], letters[2]],
            classes: classes.trim().to_owned(),
            sql: sql.to_owned(),
            e2e,
        });
    }
    cases
}

pub fn corpus_rules() -> Rules {
    let mut rules = Rules::default();
    rules
        .add_file(
            Path::new("tests/corpus/roles.toml"),
            include_str!("../corpus/roles.toml"),
        )
        .expect("corpus roles");
    rules.validate().expect("corpus roles validate");
    rules
}

/// The corpus roles plus one identity per role, named after it, whose
/// password is "<role>-password".
pub fn corpus_rules_with_identities() -> Rules {
    let mut rules = corpus_rules();
    let mut text = String::new();
    for role in ROLES {
        let v = Verifier::generate(&format!("{role}-password"), 4096);
        text.push_str(&format!(
            "[[identity]]\nname = \"{role}\"\nscram = \"{v}\"\nroles = [\"{role}\"]\n"
        ));
    }
    rules
        .add_file(Path::new("corpus-identities.toml"), &text)
        .expect("corpus identities");
    rules.validate().expect("corpus identities validate");
    rules
}
