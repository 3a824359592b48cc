//! The rules directory: every `*.toml` file in it, read in name order:
//! the identities clients sign in as, the roles they hold, and the claim
//! bindings that grant roles to OIDC tokens.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::auth::binding::Binding;
use crate::auth::scram::Verifier;
use crate::auth::Identity;
use crate::policy::role::{line_at, RawRole, Role};

/// A person or agent declared in the rules.
#[derive(Debug, Clone)]
pub struct IdentitySpec {
    pub name: String,
    pub verifier: Verifier,
    pub roles: Vec<String>,
    /// The file that declared it, for messages.
    pub source: PathBuf,
    /// Where each role is named (file:line), to report a missing role.
    role_lines: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Rules {
    pub identities: HashMap<String, IdentitySpec>,
    pub roles: HashMap<String, Arc<Role>>,
    /// In file order, then declaration order.
    pub bindings: Vec<Binding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    identity: Vec<RawIdentity>,
    #[serde(default)]
    role: BTreeMap<String, RawRole>,
    #[serde(default)]
    binding: Vec<Spanned<RawBinding>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    issuer: Option<String>,
    #[serde(default)]
    claims: toml::Table,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: String,
    scram: String,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
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
        rules.validate()?;
        Ok(rules)
    }

    /// The same rules with every role connecting upstream as pgward's own
    /// upstream user (each `upstream_user` cleared): for test and benchmark
    /// clusters that do not have the users the example roles name.
    pub fn without_upstream_users(mut self) -> Rules {
        for role in self.roles.values_mut() {
            Arc::make_mut(role).upstream_user = None;
        }
        self
    }

    /// The same rules with nobody allowed to approve, so statements that
    /// need approval are refused instead of held (test harnesses).
    pub fn without_approvers(mut self) -> Rules {
        for role in self.roles.values_mut() {
            let role = Arc::make_mut(role);
            role.approver = false;
            role.approve_for.clear();
        }
        self
    }

    /// The same rules with role `name` changed by `change` (tests and
    /// benchmarks that need one rule different). Panics on an unknown role.
    pub fn with_role(mut self, name: &str, change: impl FnOnce(&mut Role)) -> Rules {
        let role = self
            .roles
            .get_mut(name)
            .unwrap_or_else(|| panic!("no role {name:?} in these rules"));
        change(Arc::make_mut(role));
        self
    }

    /// Checks what spans files: every role an identity holds is declared.
    pub fn validate(&self) -> Result<(), RulesError> {
        let mut names: Vec<&String> = self.identities.keys().collect();
        names.sort();
        for name in names {
            let id = &self.identities[name];
            for (role, at) in id.roles.iter().zip(&id.role_lines) {
                if !self.roles.contains_key(role) {
                    let mut known: Vec<&str> = self.roles.keys().map(String::as_str).collect();
                    known.sort();
                    return Err(RulesError {
                        file: at.clone(),
                        message: format!(
                            "identity {name:?} holds role {role:?}, which no rule file declares; declare [role.{role}] or use one of [{}]",
                            known.join(", ")
                        ),
                    });
                }
            }
        }
        let mut roles: Vec<&Arc<Role>> = self.roles.values().collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        for role in roles {
            if let Some(other) = role
                .approve_for
                .iter()
                .find(|r| !self.roles.contains_key(*r))
            {
                return Err(RulesError {
                    file: role.source.clone(),
                    message: format!(
                        "role {:?}: approve_for names role {other:?}, which no rule file declares",
                        role.name
                    ),
                });
            }
        }
        for b in &self.bindings {
            if let Some(role) = b.roles.iter().find(|r| !self.roles.contains_key(*r)) {
                return Err(RulesError {
                    file: b.source.clone(),
                    message: format!(
                        "binding grants role {role:?}, which no rule file declares; declare [role.{role}]"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether any role may approve held statements: without one, the
    /// approval queue is off and statements that need approval are refused.
    pub fn has_approvers(&self) -> bool {
        self.roles.values().any(|r| r.approves_any())
    }

    /// Whether any role sees columns masked: sessions then get the row
    /// planner (`mask::relay::Masker`).
    pub fn has_masks(&self) -> bool {
        self.roles.values().any(|r| !r.masks.is_empty())
    }

    /// The roles an identity holds under these rules: a declared
    /// identity's list, or what the bindings grant a token's claims (so a
    /// reload that changes bindings changes running sessions too).
    pub fn roles_of(&self, identity: &Identity) -> Result<Vec<String>, String> {
        match &identity.token {
            Some(t) => Ok(crate::auth::binding::roles_for(
                &self.bindings,
                &t.issuer,
                &t.claims,
            )),
            None => self
                .identities
                .get(&identity.name)
                .map(|i| i.roles.clone())
                .ok_or_else(|| format!("identity {:?} is no longer in the rules", identity.name)),
        }
    }

    /// The role a session runs as: `wanted` when the identity holds it,
    /// else the identity's first role.
    pub fn session_role(
        &self,
        identity: &Identity,
        wanted: Option<&str>,
    ) -> Result<Arc<Role>, String> {
        let roles = self.roles_of(identity)?;
        let who = &identity.name;
        let Some(first) = roles.first() else {
            return Err(match &identity.token {
                Some(t) => format!(
                    "no binding in the rules grants a role to identity {who:?} of issuer {:?}, and no role means no access",
                    t.issuer
                ),
                None => format!("identity {who:?} holds no role, and no role means no access"),
            });
        };
        let name = match wanted {
            Some(w) if roles.iter().any(|r| r == w) => w,
            Some(w) => {
                return Err(format!(
                    "identity {who:?} does not hold role {w:?} (it holds [{}])",
                    roles.join(", ")
                ))
            }
            None => first,
        };
        self.roles
            .get(name)
            .cloned()
            .ok_or_else(|| format!("role {name:?} is not declared"))
    }

    /// Adds the declarations of one file.
    pub fn add_file(&mut self, file: &Path, text: &str) -> Result<(), RulesError> {
        let parsed: RuleFile = toml::from_str(text).map_err(|e| rules_err(file, e.to_string()))?;
        let shown = file.display().to_string();
        for (name, raw) in parsed.role {
            let decl = [
                format!("[role.{name}]"),
                format!("[role.\"{name}\"]"),
                format!("[role.{name}."),
            ]
            .iter()
            .filter_map(|needle| text.find(needle.as_str()))
            .min()
            .map(|at| line_at(text, at))
            .unwrap_or(1);
            if let Some(prev) = self.roles.get(&name) {
                return Err(rules_err(
                    Path::new(&format!("{shown}:{decl}")),
                    format!(
                        "role {name:?} is already declared at {}; each role once",
                        prev.source
                    ),
                ));
            }
            let role = raw
                .build(&name, text, decl, &shown)
                .map_err(|(line, message)| {
                    rules_err(
                        Path::new(&format!("{shown}:{line}")),
                        format!("role {name:?}: {message}"),
                    )
                })?;
            self.roles.insert(name, Arc::new(role));
        }
        for raw in parsed.binding {
            let line = line_at(text, raw.span().start);
            let raw = raw.into_inner();
            let source = format!("{shown}:{line}");
            let b = Binding::from_toml(raw.issuer, &raw.claims, raw.roles, source.clone())
                .map_err(|m| rules_err(Path::new(&source), m))?;
            self.bindings.push(b);
        }
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
                    role_lines: raw
                        .roles
                        .iter()
                        .map(|r| format!("{shown}:{}", line_at(text, r.span().start)))
                        .collect(),
                    roles: raw.roles.into_iter().map(Spanned::into_inner).collect(),
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
    fn bindings_load_and_name_undeclared_roles() {
        let mut r = Rules::default();
        let text = "[role.analyst]\nallow = [\"read\"]\n\n[[binding]]\nclaims = { groups = \"a\" }\nroles = [\"analyst\"]\n\n[[binding]]\nissuer = \"https://idp\"\nclaims = { sub = \"x\" }\nroles = [\"ghost\"]\n";
        r.add_file(Path::new("b.toml"), text).unwrap();
        assert_eq!(r.bindings.len(), 2);
        let e = r.validate().unwrap_err().to_string();
        assert!(e.contains("b.toml:8") && e.contains("\"ghost\""), "{e}");
        let e = Rules::default()
            .add_file(Path::new("c.toml"), "[[binding]]\nroles = [\"analyst\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("no claims"), "{e}");
    }

    #[test]
    fn table_rules_take_approve_patterns() {
        let mut r = Rules::default();
        let text = "[role.agent]\nallow = [\"read\"]\n\n[role.agent.tables]\nread = { approve = [\"hr.*\"], deny = [\"hr.keys\"] }\n";
        r.add_file(Path::new("a.toml"), text).unwrap();
        let rule = &r.roles["agent"].tables[0];
        assert_eq!(rule.approve.len(), 1);
        assert!(rule.approve[0].matches("hr.salaries"));
        let e = Rules::default()
            .add_file(
                Path::new("b.toml"),
                "[role.x]\n[role.x.tables]\nread = { aprove = [\"hr.*\"] }\n",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.toml") && e.contains("aprove"), "{e}");
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
