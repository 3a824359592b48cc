//! Roles: what the identities holding them may run.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::builtins;
use super::class::{Class, ClassSet};

/// A `*` glob over `schema.name` (or a bare name, any schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub text: String,
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_owned(),
        }
    }

    /// Matches `name`; a pattern without a dot matches the last part of a
    /// qualified name.
    pub fn matches(&self, name: &str) -> bool {
        if !self.text.contains('.') {
            if let Some((_, last)) = name.rsplit_once('.') {
                return glob(&self.text, last);
            }
        }
        glob(&self.text, name)
    }

    /// Whether `schema.name` matches for some schema.
    pub fn matches_in_some_schema(&self, name: &str) -> bool {
        match self.text.split_once('.') {
            Some((_, table)) => glob(table, name),
            None => glob(&self.text, name),
        }
    }

    /// Whether `schema.name` matches whatever the schema.
    pub fn matches_in_every_schema(&self, name: &str) -> bool {
        match self.text.split_once('.') {
            Some((schema, table)) => schema.bytes().all(|b| b == b'*') && glob(table, name),
            None => glob(&self.text, name),
        }
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(tail) = text.strip_prefix(head) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
}

#[derive(Debug, Clone, Default)]
pub struct TableRule {
    pub class: Option<Class>,
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
    /// Allowed once an approver says yes (they also pass `allow`).
    pub approve: Vec<Pattern>,
}

impl TableRule {
    /// The rule's key in the rules file: `tables.read`, `tables.*`, ...
    pub fn key(&self) -> String {
        format!("tables.{}", self.class.map_or("*", Class::name))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Role {
    pub name: String,
    pub allow: ClassSet,
    pub approve: ClassSet,
    /// Table patterns per class.
    pub tables: Vec<TableRule>,
    pub functions_allow: Vec<Pattern>,
    pub functions_deny: Vec<Pattern>,
    /// Settings the role may SET beyond the harmless built-in ones.
    pub settings: Vec<Pattern>,
    /// Names from the built-in dangerous list the role opts into.
    pub allow_dangerous: Vec<String>,
    /// PostgreSQL user pgward connects upstream as for this role.
    pub upstream_user: Option<String>,
    /// Settings pgward sets upstream when it connects (startup parameters).
    pub session: Vec<(String, String)>,
    /// Where it was declared ("rules/roles.toml:12").
    pub source: String,
    /// Identities with this role may approve held statements of any role
    /// on the admin console.
    pub approver: bool,
    /// Roles whose held statements identities with this role may approve.
    pub approve_for: Vec<String>,
    /// Distinct approvers a held statement of this role needs (at least 1).
    pub approvals: usize,
    /// A held statement must come with a reason (`SET pgward.reason` or a
    /// `/* reason: ... */` comment), or it is refused.
    pub require_reason: bool,
    /// Columns the role sees masked (`[role.NAME.mask]`), in file order.
    pub masks: Vec<crate::mask::ColumnMask>,
}

impl Role {
    /// Whether `allow` names every class (`"*"`): such a role needs an
    /// upstream user that may do everything it may.
    pub fn allows_every_class(&self) -> bool {
        self.allow == ClassSet::all()
    }

    /// Whether identities with this role may approve `role`'s requests.
    pub fn may_approve(&self, role: &str) -> bool {
        self.approver || self.approve_for.iter().any(|r| r == role)
    }

    /// Whether some statement of this role may be held for approval.
    pub fn holds_any(&self) -> bool {
        !self.approve.is_empty() || self.tables.iter().any(|t| !t.approve.is_empty())
    }

    /// Whether this role may approve anything.
    pub fn approves_any(&self) -> bool {
        self.approver || !self.approve_for.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRole {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    approve: Vec<Spanned<String>>,
    #[serde(default)]
    tables: BTreeMap<String, RawTables>,
    #[serde(default)]
    functions: RawFunctions,
    #[serde(default)]
    settings: Vec<String>,
    #[serde(default)]
    allow_dangerous: Vec<Spanned<String>>,
    upstream_user: Option<String>,
    #[serde(default)]
    session: BTreeMap<String, toml::Value>,
    #[serde(default)]
    approver: bool,
    #[serde(default)]
    approve_for: Vec<String>,
    approvals: Option<usize>,
    #[serde(default)]
    require_reason: bool,
    #[serde(default)]
    mask: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTables {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    approve: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFunctions {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Line number (1-based) of a byte offset.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn class_list(
    items: &[Spanned<String>],
    key: &str,
    text: &str,
) -> Result<ClassSet, (usize, String)> {
    let mut set = ClassSet::EMPTY;
    for item in items {
        let name = item.get_ref();
        if name == "*" {
            return Ok(ClassSet::all());
        }
        let class = Class::from_name(name).ok_or_else(|| {
            let valid: Vec<&str> = Class::ALL.iter().map(|c| c.name()).collect();
            (
                line_at(text, item.span().start),
                format!(
                    "{key}: unknown class {name:?}; use one of {} (or \"*\")",
                    valid.join(", ")
                ),
            )
        })?;
        set.insert(class);
    }
    Ok(set)
}

impl RawRole {
    /// Validates a role; errors carry the line they concern.
    pub(crate) fn build(
        self,
        name: &str,
        text: &str,
        decl_line: usize,
        file: &str,
    ) -> Result<Role, (usize, String)> {
        let allow = class_list(&self.allow, "allow", text)?;
        let approve = class_list(&self.approve, "approve", text)?;
        for d in &self.allow_dangerous {
            if !builtins::is_dangerous_name(d.get_ref()) {
                return Err((
                    line_at(text, d.span().start),
                    format!(
                        "allow_dangerous: {:?} is not on the built-in dangerous list; use one of {}",
                        d.get_ref(),
                        builtins::dangerous_names().join(", ")
                    ),
                ));
            }
        }
        let mut tables = Vec::new();
        for (class_name, raw) in self.tables {
            let class = if class_name == "*" {
                None
            } else {
                Some(Class::from_name(&class_name).ok_or_else(|| {
                    (
                        decl_line,
                        format!(
                            "tables.{class_name}: unknown class; use a class name such as read or write, or \"*\""
                        ),
                    )
                })?)
            };
            tables.push(TableRule {
                class,
                allow: raw.allow.iter().map(|p| Pattern::new(p)).collect(),
                deny: raw.deny.iter().map(|p| Pattern::new(p)).collect(),
                approve: raw.approve.iter().map(|p| Pattern::new(p)).collect(),
            });
        }
        let mut session = Vec::new();
        for (key, value) in self.session {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => if b { "on" } else { "off" }.to_owned(),
                toml::Value::Float(f) => f.to_string(),
                other => {
                    return Err((
                        decl_line,
                        format!("session.{key}: {other} is not a setting value; use a string"),
                    ))
                }
            };
            session.push((key.to_ascii_lowercase(), value));
        }
        if let Some(u) = &self.upstream_user {
            if u.is_empty() || u.contains('\0') {
                return Err((
                    decl_line,
                    "upstream_user must be a PostgreSQL user name".into(),
                ));
            }
        }
        if self.approvals == Some(0) {
            return Err((
                decl_line,
                "approvals must be at least 1 (the number of distinct approvers a held statement needs)".into(),
            ));
        }
        let mut masks: Vec<crate::mask::ColumnMask> = Vec::new();
        for (key, value) in self.mask {
            let line = line_at(text, key.span().start);
            let m = crate::mask::ColumnMask::parse(key.get_ref(), value.get_ref(), file, line)
                .map_err(|e| (line, format!("mask {:?}: {e}", key.get_ref())))?;
            if let Some(prev) = masks.iter().find(|p| p.same_column(&m)) {
                return Err((
                    line,
                    format!(
                        "mask {:?}: column already masked at {}; one mask per column",
                        key.get_ref(),
                        prev.source
                    ),
                ));
            }
            masks.push(m);
        }
        masks.sort_by_key(|m| m.line);
        Ok(Role {
            name: name.to_owned(),
            allow,
            approve,
            tables,
            functions_allow: self
                .functions
                .allow
                .iter()
                .map(|p| Pattern::new(p))
                .collect(),
            functions_deny: self
                .functions
                .deny
                .iter()
                .map(|p| Pattern::new(p))
                .collect(),
            settings: self.settings.iter().map(|p| Pattern::new(p)).collect(),
            allow_dangerous: self
                .allow_dangerous
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            upstream_user: self.upstream_user,
            session,
            source: format!("{file}:{decl_line}"),
            approver: self.approver,
            approve_for: self.approve_for,
            approvals: self.approvals.unwrap_or(1),
            require_reason: self.require_reason,
            masks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(Pattern::new("public.*").matches("public.orders"));
        assert!(!Pattern::new("public.*").matches("hr.orders"));
        assert!(Pattern::new("*.secrets").matches("hr.secrets"));
        assert!(Pattern::new("secrets").matches("hr.secrets"));
        assert!(Pattern::new("secrets").matches("secrets"));
        assert!(!Pattern::new("secrets").matches("hr.secretsx"));
        assert!(Pattern::new("pg_*").matches("pg_catalog.pg_class"));
        assert!(Pattern::new("a*b*c").matches("aXbYc"));
        assert!(!Pattern::new("a*b*c").matches("aXbY"));
        assert!(Pattern::new("*").matches("anything.at_all"));
    }

    #[test]
    fn globs_over_unknown_schemas() {
        let some = |p: &str, n: &str| Pattern::new(p).matches_in_some_schema(n);
        let every = |p: &str, n: &str| Pattern::new(p).matches_in_every_schema(n);
        assert!(some("hr.payroll", "payroll") && !every("hr.payroll", "payroll"));
        assert!(some("public.*", "x") && !every("public.*", "x"));
        assert!(!some("hr.payroll", "orders"));
        assert!(every("*.orders", "orders") && !every("*.orders", "order"));
        assert!(every("payroll", "payroll") && every("*", "x") && every("*.*", "x"));
        assert!(!every("p*.x", "x"));
    }
}
