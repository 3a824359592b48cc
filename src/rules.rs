//! The rules directory: every `*.toml` file in it, read in name order.
//! This part holds the identities clients sign in as; roles and policy
//! build on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::scram::Verifier;

/// A person or agent declared in the rules.
#[derive(Debug, Clone)]
pub struct IdentitySpec {
    pub name: String,
    pub verifier: Verifier,
    pub roles: Vec<String>,
    /// The file that declared it, for messages.
    pub source: PathBuf,
}

#[derive(Debug, Default, Clone)]
pub struct Rules {
    pub identities: HashMap<String, IdentitySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    identity: Vec<RawIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: String,
    scram: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct RulesError {
    pub file: String,
    pub message: String,
}

fn rules_err(file: &Path, message: impl Into<String>) -> RulesError {
    RulesError {
        file: file.display().to_string(),
        message: message.into(),
    }
}

impl Rules {
    /// Loads every `*.toml` file of `dir`.
    pub fn load(dir: &Path) -> Result<Rules, RulesError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| rules_err(dir, format!("cannot read the rules directory: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut rules = Rules::default();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| rules_err(&file, format!("cannot read: {e}")))?;
            rules.add_file(&file, &text)?;
        }
        Ok(rules)
    }

    /// Adds the declarations of one file.
    pub fn add_file(&mut self, file: &Path, text: &str) -> Result<(), RulesError> {
        let parsed: RuleFile = toml::from_str(text).map_err(|e| rules_err(file, e.to_string()))?;
        for raw in parsed.identity {
            if raw.name.is_empty() || raw.name.contains('\0') {
                return Err(rules_err(file, "identity.name must be a non-empty name"));
            }
            let verifier = Verifier::parse(&raw.scram)
                .map_err(|m| rules_err(file, format!("identity {:?}: scram: {m}", raw.name)))?;
            if let Some(prev) = self.identities.get(&raw.name) {
                return Err(rules_err(
                    file,
                    format!(
                        "identity {:?} is already declared in {}; each name once",
                        raw.name,
                        prev.source.display()
                    ),
                ));
            }
            self.identities.insert(
                raw.name.clone(),
                IdentitySpec {
                    name: raw.name,
                    verifier,
                    roles: raw.roles,
                    source: file.to_path_buf(),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_load_and_duplicates_are_refused() {
        let v = Verifier::generate("pw", 4096).to_string();
        let mut r = Rules::default();
        let text =
            format!("[[identity]]\nname = \"alice\"\nscram = \"{v}\"\nroles = [\"analyst\"]\n");
        r.add_file(Path::new("a.toml"), &text).unwrap();
        assert_eq!(r.identities["alice"].roles, vec!["analyst"]);
        let e = r
            .add_file(Path::new("b.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.toml") && e.contains("a.toml"), "{e}");
    }

    #[test]
    fn plaintext_passwords_are_refused() {
        let mut r = Rules::default();
        let e = r
            .add_file(
                Path::new("a.toml"),
                "[[identity]]\nname = \"bob\"\nscram = \"hunter2\"\n",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("hash-password"), "{e}");
        let e = r
            .add_file(
                Path::new("a.toml"),
                "[[identity]]\nname = \"bob\"\npassword = \"x\"\n",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("password"), "{e}");
    }
}
