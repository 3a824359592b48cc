//! OIDC token validation: which configured issuer signed a JWT, with
//! which of its keys, and whether its claims hold now.
//!
//! Only asymmetric algorithms are accepted (never `none`, never HMAC: an
//! HMAC "signature" keyed with the provider's public key is forgeable by
//! anyone), the key must fit the algorithm, and `iss`, `aud`, `exp`, `nbf`
//! and `iat` are checked with the issuer's leeway.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::binding::{claim, scalar_text};
use super::jwks::{KeyError, Provider};
use crate::config::{OidcConfig, ASYMMETRIC_ALGORITHMS};

/// A token that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub issuer: String,
    /// The identity's name: the issuer's `identity_claim`.
    pub name: String,
    pub claims: Value,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// The issuer's clock-skew allowance: the token is accepted until
    /// `expires_at + leeway`, and a session lasts as long.
    pub leeway: u64,
}

pub struct Oidc {
    pub config: OidcConfig,
    providers: Vec<Provider>,
}

impl Oidc {
    /// The validator for the configured issuers; `None` when there are none.
    pub fn new(config: &OidcConfig) -> Result<Option<Oidc>, String> {
        if config.issuer.is_empty() {
            return Ok(None);
        }
        let providers = config
            .issuer
            .iter()
            .map(|i| {
                Provider::new(
                    i.clone(),
                    Duration::from_secs(config.http_timeout_secs),
                    Duration::from_secs(config.jwks_min_refresh_secs),
                    Duration::from_secs(config.jwks_max_age_secs.max(1)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Oidc {
            config: config.clone(),
            providers,
        }))
    }

    /// Fetches every issuer's keys in the background.
    pub fn warm_up(self: &Arc<Self>) {
        for n in 0..self.providers.len() {
            let me = self.clone();
            tokio::spawn(async move { me.providers[n].warm_up().await });
        }
    }

    /// The issuer a libpq OAUTHBEARER client is sent to when it has no
    /// token yet: the first configured one.
    pub fn discovery(&self) -> (String, String) {
        let first = &self.providers[0].config;
        (first.discovery_url(), first.scope.clone())
    }

    /// Checks a token; the error says exactly why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Verified, String> {
        let token = token.trim();
        if token.len() > self.config.max_token_bytes {
            return Err(format!(
                "the token is {} bytes, more than oidc.max_token_bytes ({})",
                token.len(),
                self.config.max_token_bytes
            ));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, _signature] = parts.as_slice() else {
            return Err(
                "the password is not a JWT (three base64url parts joined by '.'); pgward expects an OIDC token from your identity provider".into(),
            );
        };
        let header = decode_part(header, "header")?;
        let peek = decode_part(payload, "payload")?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or("the token header has no alg")?;
        if alg.eq_ignore_ascii_case("none") {
            return Err("the token is unsigned (alg \"none\"), which is never accepted".into());
        }
        if alg.starts_with("HS") {
            return Err(format!(
                "the token is HMAC-signed (alg {alg:?}); pgward accepts only signatures made with the identity provider's private key"
            ));
        }
        if header.get("crit").is_some() {
            return Err(
                "the token header has critical extensions (crit), which pgward does not understand"
                    .into(),
            );
        }
        let iss = peek
            .get("iss")
            .and_then(Value::as_str)
            .ok_or("the token has no iss claim")?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.config.issuer == iss)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .providers
                    .iter()
                    .map(|p| p.config.issuer.as_str())
                    .collect();
                format!(
                    "the token's issuer {iss:?} is not configured in pgward (configured: {})",
                    known.join(", ")
                )
            })?;
        let cfg = &provider.config;
        if !ASYMMETRIC_ALGORITHMS.contains(&alg) || !cfg.algorithms.iter().any(|a| a == alg) {
            return Err(format!(
                "the token's alg {alg:?} is not accepted for issuer {iss:?} (accepted: {})",
                cfg.algorithms.join(", ")
            ));
        }
        let algorithm: Algorithm = alg
            .parse()
            .map_err(|_| format!("the token's alg {alg:?} is unknown"))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = provider.key(kid, algorithm).await.map_err(|e| match e {
            KeyError::Provider(m) | KeyError::Unknown(m) | KeyError::Mismatch(m) => m,
        })?;
        let mut v = Validation::new(algorithm);
        v.set_issuer(&[iss]);
        v.set_audience(&cfg.audience);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = cfg.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| explain(e.kind(), &peek, &cfg.audience, kid))?;
        let claims = data.claims;
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(iat) = claims.get("iat") {
            let iat = iat.as_u64().ok_or("the token's iat is not a number")?;
            if iat > now + cfg.leeway_secs {
                return Err(format!(
                    "the token was issued in the future ({}); check the clocks",
                    utc(iat)
                ));
            }
        }
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("the token's exp is not a number")?;
        let name = claim(&claims, &cfg.identity_claim)
            .and_then(scalar_text)
            // The name goes into logs and audit events: no control
            // characters that could forge lines there.
            .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
            .ok_or_else(|| {
                format!(
                    "the token's {:?} claim, which names the identity (oidc.issuer.identity_claim), is missing, empty, not a string or has control characters",
                    cfg.identity_claim
                )
            })?;
        Ok(Verified {
            issuer: iss.to_owned(),
            name,
            claims,
            expires_at,
            leeway: cfg.leeway_secs,
        })
    }

    /// The startup user name check: with `username_claim` configured, the
    /// user name must equal that claim.
    pub fn check_user(&self, v: &Verified, user: &str) -> Result<(), String> {
        let Some(cfg) = self.providers.iter().find(|p| p.config.issuer == v.issuer) else {
            return Err(format!("issuer {:?} is no longer configured", v.issuer));
        };
        let Some(name) = &cfg.config.username_claim else {
            return Ok(());
        };
        match claim(&v.claims, name).and_then(scalar_text) {
            Some(value) if value == user => Ok(()),
            Some(value) => Err(format!(
                "the user name {user:?} does not match the token's {name} claim ({value:?}); connect with user={value:?}"
            )),
            None => Err(format!(
                "the token has no {name} claim to match the user name against"
            )),
        }
    }
}

fn decode_part(part: &str, what: &str) -> Result<Value, String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| format!("the token {what} is not base64url: {e}"))?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("the token {what} is not JSON: {e}"))?;
    if !v.is_object() {
        return Err(format!("the token {what} is not a JSON object"));
    }
    Ok(v)
}

pub fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

fn explain(
    kind: &jsonwebtoken::errors::ErrorKind,
    claims: &Value,
    audience: &[String],
    kid: Option<&str>,
) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    let time = |c: &str| {
        claims
            .get(c)
            .and_then(Value::as_u64)
            .map(utc)
            .unwrap_or_default()
    };
    match kind {
        K::ExpiredSignature => format!("the token expired at {}", time("exp")),
        K::ImmatureSignature => format!("the token is not valid before {}", time("nbf")),
        K::InvalidAudience => format!(
            "the token's audience {} is not pgward's ({})",
            claims.get("aud").map(Value::to_string).unwrap_or_default(),
            audience.join(", ")
        ),
        K::InvalidIssuer => "the token's issuer does not match".into(),
        K::InvalidSignature => format!(
            "the token's signature does not verify with the issuer's key {}",
            kid.map_or_else(String::new, |k| format!("{k:?}"))
        ),
        K::InvalidAlgorithm => "the token's alg does not fit the issuer's key".into(),
        K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        other => format!("the token is malformed: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn oidc() -> Oidc {
        let config: OidcConfig = toml::from_str(
            "[[issuer]]\nissuer = \"https://idp.example.com\"\naudience = [\"pgward\"]\n",
        )
        .expect("config");
        Oidc::new(&config).expect("oidc").expect("issuers")
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// Malformed tokens are refused with a reason before any key is
    /// fetched, and nothing in them can make validation panic.
    #[tokio::test]
    async fn malformed_tokens_are_refused_without_panicking() {
        let o = oidc();
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let other_iss = b64(r#"{"iss":"https://evil.example.com"}"#);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "not a JWT"),
            ("a.b".into(), "not a JWT"),
            ("a.b.c.d".into(), "not a JWT"),
            ("!!!.b.c".into(), "not base64url"),
            (
                format!("{}.{}.x", b64("[1]"), b64("{}")),
                "not a JSON object",
            ),
            (format!("{}.{}.x", b64(&deep), b64("{}")), "not JSON"),
            (format!("{}.{}.x", b64("{}"), b64("{}")), "no alg"),
            (format!("{}.{}.x", b64(r#"{"alg":7}"#), b64("{}")), "no alg"),
            (
                format!("{}.{}.x", b64(r#"{"alg":"RS256"}"#), b64("{}")),
                "no iss",
            ),
            (
                format!(
                    "{}.{}.x",
                    b64(r#"{"alg":"RS256"}"#),
                    b64(r#"{"iss":["a"]}"#)
                ),
                "no iss",
            ),
            (
                format!("{}.{other_iss}.x", b64(r#"{"alg":"RS256"}"#)),
                "not configured",
            ),
            (
                format!("{}.{other_iss}.", b64(r#"{"alg":"NONE"}"#)),
                "unsigned",
            ),
            (
                format!("{}.{other_iss}.x", b64(r#"{"alg":"HS512"}"#)),
                "HMAC",
            ),
            (
                format!("{}.{other_iss}.x", b64(r#"{"alg":"RS256","crit":["exp"]}"#)),
                "crit",
            ),
            (
                format!(
                    "{}.{}.x",
                    b64(r#"{"alg":"ES512"}"#),
                    b64(r#"{"iss":"https://idp.example.com"}"#)
                ),
                "not accepted",
            ),
            ("x".repeat(70_000), "more than oidc.max_token_bytes"),
        ];
        for (token, expected) in cases {
            let e = o.verify(&token).await.expect_err("refused");
            assert!(e.contains(expected), "{expected:?} not in {e:?}");
        }
    }
}
