//! Claim bindings: which pgward roles a token's claims grant.
//!
//! A binding lists claims and the values it accepts; every listed claim
//! must match (AND), a list of values means any of them (OR), and a claim
//! that is an array matches when any element does. Claim names are looked
//! up as given first (`https://example.com/groups` is one name), then as a
//! dotted path into nested objects (`realm_access.roles`).

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Binding {
    /// Only tokens of this issuer; any configured issuer when absent.
    pub issuer: Option<String>,
    pub claims: Vec<(String, Vec<String>)>,
    pub roles: Vec<String>,
    /// file:line, for messages.
    pub source: String,
}

impl Binding {
    /// Builds a binding from its TOML form; errors say what to fix.
    pub fn from_toml(
        issuer: Option<String>,
        claims: &toml::Table,
        roles: Vec<String>,
        source: String,
    ) -> Result<Binding, String> {
        if claims.is_empty() {
            return Err(
                "binding has no claims; a binding matching every token would grant its roles to anyone the issuer signs for".into(),
            );
        }
        if roles.is_empty() {
            return Err("binding grants no roles; list them in roles = [...]".into());
        }
        let scalar = |claim: &str, v: &toml::Value| {
            match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(format!(
                "claim {claim:?}: {} is not a value to compare; use a string, number, boolean or a list of them",
                other.type_str()
            )),
        }
        };
        let mut out = Vec::new();
        for (claim, v) in claims {
            let values = match v {
                toml::Value::Array(items) if items.is_empty() => {
                    return Err(format!("claim {claim:?}: the list of values is empty"))
                }
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| scalar(claim, i))
                    .collect::<Result<Vec<_>, _>>()?,
                one => vec![scalar(claim, one)?],
            };
            out.push((claim.clone(), values));
        }
        Ok(Binding {
            issuer,
            claims: out,
            roles,
            source,
        })
    }

    pub fn matches(&self, issuer: &str, claims: &Value) -> bool {
        if self.issuer.as_deref().is_some_and(|i| i != issuer) {
            return false;
        }
        self.claims.iter().all(|(name, accepted)| {
            claim(claims, name).is_some_and(|v| match v {
                Value::Array(items) => items.iter().any(|i| scalar_in(i, accepted)),
                one => scalar_in(one, accepted),
            })
        })
    }
}

fn scalar_in(v: &Value, accepted: &[String]) -> bool {
    match scalar_text(v) {
        Some(text) => accepted.contains(&text),
        None => false,
    }
}

/// A string, number or boolean claim as text; objects and arrays have none.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim by its exact name, else by its dotted path.
pub fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    name.split('.').try_fold(claims, |at, part| at.get(part))
}

/// The roles every matching binding grants, in binding order, each once.
pub fn roles_for(bindings: &[Binding], issuer: &str, claims: &Value) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for b in bindings.iter().filter(|b| b.matches(issuer, claims)) {
        for r in &b.roles {
            if !roles.contains(r) {
                roles.push(r.clone());
            }
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(issuer: Option<&str>, claims: &str, roles: &[&str]) -> Binding {
        let table: toml::Table = toml::from_str(claims).expect("toml");
        Binding::from_toml(
            issuer.map(str::to_owned),
            &table,
            roles.iter().map(|r| r.to_string()).collect(),
            "test:1".into(),
        )
        .expect("binding")
    }

    #[test]
    fn claims_match_by_value_array_element_and_nested_path() {
        let token = json!({
            "sub": "svc-42",
            "email": "a@example.com",
            "groups": ["staff", "db-readers"],
            "realm_access": {"roles": ["offline", "dba"]},
            "https://example.com/tier": 3,
            "email_verified": true,
        });
        let iss = "https://idp.example.com";
        let readers = binding(None, "groups = \"db-readers\"", &["analyst"]);
        assert!(readers.matches(iss, &token));
        let nested = binding(None, "\"realm_access.roles\" = [\"dba\", \"x\"]", &["dba"]);
        assert!(nested.matches(iss, &token));
        let namespaced = binding(None, "\"https://example.com/tier\" = 3", &["app"]);
        assert!(namespaced.matches(iss, &token));
        let both = binding(
            None,
            "email = \"a@example.com\"\nemail_verified = true",
            &["app"],
        );
        assert!(both.matches(iss, &token));
        let one_wrong = binding(None, "email = \"a@example.com\"\nsub = \"other\"", &["app"]);
        assert!(!one_wrong.matches(iss, &token));
        let other_issuer = binding(Some("https://other"), "sub = \"svc-42\"", &["app"]);
        assert!(!other_issuer.matches(iss, &token));
        let missing = binding(None, "\"realm_access.groups\" = \"dba\"", &["dba"]);
        assert!(!missing.matches(iss, &token));
        // An object is not a value: no accidental match on its text.
        let object = binding(None, "realm_access = \"{}\"", &["dba"]);
        assert!(!object.matches(iss, &token));
        assert_eq!(
            roles_for(&[readers, nested.clone(), nested, one_wrong], iss, &token),
            vec!["analyst".to_string(), "dba".to_string()]
        );
    }

    #[test]
    fn empty_bindings_are_refused() {
        let none = toml::Table::new();
        let e = Binding::from_toml(None, &none, vec!["x".into()], "f:1".into()).unwrap_err();
        assert!(e.contains("no claims"), "{e}");
        let t: toml::Table = toml::from_str("groups = []").expect("toml");
        let e = Binding::from_toml(None, &t, vec!["x".into()], "f:1".into()).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let t: toml::Table = toml::from_str("groups = \"a\"").expect("toml");
        let e = Binding::from_toml(None, &t, vec![], "f:1".into()).unwrap_err();
        assert!(e.contains("no roles"), "{e}");
        let t: toml::Table = toml::from_str("groups = { a = 1 }").expect("toml");
        let e = Binding::from_toml(None, &t, vec!["x".into()], "f:1".into()).unwrap_err();
        assert!(e.contains("not a value"), "{e}");
    }
}
