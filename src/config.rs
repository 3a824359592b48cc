//! `pgward.toml`: the server's configuration. Unknown keys are errors, and
//! every error names the file, the key and what to do about it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub oidc: OidcConfig,
    #[serde(default)]
    pub approval: ApprovalConfig,
    #[serde(default)]
    pub mask: MaskConfig,
}

/// Column masking (`[role.NAME.mask]` in the rules; docs/masking.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskConfig {
    /// The environment variable holding the secret `hash` masks are keyed
    /// with (at least 16 bytes). Unset: `hash` masks show NULL.
    pub hash_key_env: Option<String>,
}

impl MaskConfig {
    /// The `hash` key, when configured; an error when the variable is
    /// named but unset or too short.
    pub fn hash_key(&self) -> Result<Option<crate::mask::HashKey>, String> {
        self.hash_key_env
            .as_deref()
            .map(crate::mask::HashKey::from_env)
            .transpose()
    }
}

/// The approval queue (see `approval`): on when a role may approve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    /// Seconds a held statement waits for a decision before it fails.
    pub timeout_secs: u64,
    /// The longest grant window `APPROVE n FOR '...'` may give.
    pub max_grant_secs: u64,
    /// Where each new request is POSTed as JSON (Slack-compatible `text`).
    pub webhook_url: Option<String>,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig {
            timeout_secs: 900,
            max_grant_secs: 86_400,
            webhook_url: None,
        }
    }
}

impl ApprovalConfig {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.max(1))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address clients connect to.
    pub listen: SocketAddr,
    /// Connections served at once; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Largest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Largest SQL text (a Query or Parse) pgward classifies, in bytes;
    /// larger ones are refused. A parse tree takes hundreds of times its
    /// text's size in memory while it is classified.
    pub max_sql_bytes: usize,
    /// Most messages a session may have waiting for the server's answer,
    /// and most prepared statements and portals it may hold; past either
    /// the session ends with FATAL 54000.
    pub max_session_pending: usize,
    /// Seconds a client has to finish authentication.
    pub auth_timeout_secs: u64,
    /// Seconds without client traffic outside a transaction before the
    /// session is closed; 0 turns it off.
    pub idle_timeout_secs: u64,
    /// Seconds sessions get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Session threads; 0 means one per CPU core.
    pub worker_threads: usize,
    /// Removed (every session now runs on the session threads); accepted
    /// so that an older config keeps loading, with a warning.
    #[serde(rename = "relay_threads")]
    removed_relay_threads: Option<bool>,
    /// Removed with `relay_threads`; accepted the same way.
    #[serde(rename = "pin_relay_threads")]
    removed_pin_relay_threads: Option<bool>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            max_connections: 1000,
            max_message_bytes: 64 << 20,
            max_sql_bytes: 1 << 20,
            max_session_pending: 100_000,
            auth_timeout_secs: 10,
            idle_timeout_secs: 0,
            shutdown_grace_secs: 30,
            worker_threads: 0,
            removed_relay_threads: None,
            removed_pin_relay_threads: None,
        }
    }
}

impl ServerConfig {
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }
    /// Builds the tokio runtime pgward serves on.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        // The listener, signals and background work; sessions run on their
        // own threads (`Shared::start_workers`).
        let mut b = crate::policy::runtime_builder();
        b.worker_threads(1);
        b.build()
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The removed keys this `[server]` section still sets; they are
    /// ignored.
    pub fn removed_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.removed_relay_threads.is_some() {
            keys.push("relay_threads");
        }
        if self.removed_pin_relay_threads.is_some() {
            keys.push("pin_relay_threads");
        }
        keys
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Refuse SSLRequest; plain TCP only.
    #[default]
    Off,
    /// Accept TLS when the client asks; allow plain TCP too.
    Optional,
    /// Refuse clients that do not use TLS.
    Required,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// postgres://user@host:port/db; never with a password in it.
    pub url: String,
    /// Environment variable holding the upstream password.
    pub password_env: Option<String>,
    /// File holding the upstream password (first line).
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub sslmode: SslMode,
    /// CA bundle for `verify-full`.
    pub ca_file: Option<PathBuf>,
    /// Pin every session to this database, whatever the client asks for.
    pub database: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Reload a database's catalog (functions, views) when older than this.
    #[serde(default = "default_catalog_refresh")]
    pub catalog_refresh_secs: u64,
    /// Other PostgreSQL users pgward connects as (a role's `upstream_user`),
    /// with where their passwords come from.
    #[serde(default)]
    pub users: Vec<UpstreamUser>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamUser {
    pub name: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
}

fn default_catalog_refresh() -> u64 {
    60
}

fn default_connect_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Directory of rule files (identities, roles).
    pub dir: PathBuf,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: PathBuf::from("rules"),
        }
    }
}

/// What happens to new statements when the audit log cannot be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse new statements until the writer recovers (fail closed).
    #[default]
    Deny,
    /// Keep serving; events that do not fit in memory are counted as lost.
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Where Parquet files (and the `wal/` subdirectory) go.
    pub dir: PathBuf,
    /// Name in file names and events; default: the host name.
    pub instance: Option<String>,
    /// Events reach the write-ahead segment at least this often.
    pub flush_interval_ms: u64,
    /// A Parquet file is closed at this many bytes of events ...
    pub rotate_bytes: u64,
    /// ... or this age, whichever comes first.
    pub rotate_secs: u64,
    pub on_failure: OnFailure,
    /// Record Bind parameters of extended-protocol executions.
    pub record_parameters: bool,
    /// Events waiting for the writer, at most.
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            dir: PathBuf::from("audit"),
            instance: None,
            flush_interval_ms: 1000,
            rotate_bytes: 64 << 20,
            rotate_secs: 60,
            on_failure: OnFailure::Deny,
            record_parameters: false,
            queue_capacity: 65536,
        }
    }
}

impl AuditConfig {
    /// `instance`, else the host name with characters unfit for file
    /// names replaced.
    pub fn instance_name(&self) -> String {
        if let Some(i) = &self.instance {
            return i.clone();
        }
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let clean: String = host
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if clean.is_empty() {
            "pgward".into()
        } else {
            clean
        }
    }
}

/// How pgward asks a client for its OIDC token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OidcMethod {
    /// AuthenticationCleartextPassword: the token is the password (any libpq).
    #[default]
    Password,
    /// SASL OAUTHBEARER (RFC 7628), as libpq 18 speaks it natively.
    Oauthbearer,
}

/// Sign-in with tokens from OpenID Connect identity providers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The providers whose tokens pgward accepts; none turns OIDC off.
    pub issuer: Vec<IssuerConfig>,
    pub method: OidcMethod,
    /// Accept tokens over unencrypted connections from loopback addresses
    /// (a local agent, tests); anything else needs TLS.
    pub allow_loopback_cleartext: bool,
    /// Seconds a session may outlive its token (exp + the issuer's leeway)
    /// before pgward ends it.
    pub expiry_grace_secs: u64,
    /// An unknown key id refetches the issuer's keys at most this often.
    pub jwks_min_refresh_secs: u64,
    /// Keys older than this are refetched on the next sign-in.
    pub jwks_max_age_secs: u64,
    /// Each request to an identity provider gives up after this long.
    pub http_timeout_secs: u64,
    /// Largest token accepted, in bytes.
    pub max_token_bytes: usize,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: Vec::new(),
            method: OidcMethod::Password,
            allow_loopback_cleartext: false,
            expiry_grace_secs: 0,
            jwks_min_refresh_secs: 30,
            jwks_max_age_secs: 3600,
            http_timeout_secs: 5,
            max_token_bytes: 64 << 10,
        }
    }
}

/// One identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` value of its tokens, exactly.
    pub issuer: String,
    /// Tokens must name one of these in `aud`.
    pub audience: Vec<String>,
    /// Signature algorithms accepted; only asymmetric ones may be named.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Seconds of clock skew tolerated for `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Default: `<issuer>/.well-known/openid-configuration`.
    pub discovery_url: Option<String>,
    /// Extra CA certificates (PEM) for a provider with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The claim that names the identity in logs and audit events.
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    /// When set, the startup user name must equal this claim's value;
    /// when not, the startup user name is ignored.
    pub username_claim: Option<String>,
    /// Scope libpq asks for in the OAUTHBEARER flow.
    #[serde(default = "default_scope")]
    pub scope: String,
}

/// Every asymmetric JWS algorithm; HMAC and `none` are never accepted.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn default_algorithms() -> Vec<String> {
    ASYMMETRIC_ALGORITHMS
        .iter()
        .map(|a| a.to_string())
        .collect()
}

fn default_leeway() -> u64 {
    30
}

fn default_identity_claim() -> String {
    "sub".into()
}

fn default_scope() -> String {
    "openid".into()
}

impl IssuerConfig {
    pub fn discovery_url(&self) -> String {
        self.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            )
        })
    }
}

/// A configuration error with the file and key it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.display().to_string(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths inside it
    /// are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
        let mut cfg = Config::parse(&text, path)?;
        for key in cfg.server.removed_keys() {
            tracing::warn!(
                "{}: server.{key} is no longer used and is ignored: every session is relayed on \
                 the session threads (server.worker_threads); remove the key",
                path.display()
            );
        }
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate(path)?;
        Ok(cfg)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::new(path, e.to_string()))
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.tls.cert.as_mut() {
            fix(p)
        }
        if let Some(p) = self.tls.key.as_mut() {
            fix(p)
        }
        if let Some(p) = self.upstream.password_file.as_mut() {
            fix(p)
        }
        if let Some(p) = self.upstream.ca_file.as_mut() {
            fix(p)
        }
        for u in &mut self.upstream.users {
            if let Some(p) = u.password_file.as_mut() {
                fix(p)
            }
        }
        fix(&mut self.rules.dir);
        fix(&mut self.audit.dir);
        for i in &mut self.oidc.issuer {
            if let Some(p) = i.ca_file.as_mut() {
                fix(p)
            }
        }
    }

    /// Checks what serde cannot: cross-key rules and sane bounds.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(path, m));
        if self.tls.mode != TlsMode::Off && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return err(format!(
                "tls.mode = {:?} needs tls.cert and tls.key (PEM files); set both or set tls.mode = \"off\"",
                self.tls.mode
            ));
        }
        if self.server.max_message_bytes < 1024
            || self.server.max_message_bytes > crate::protocol::frame::POSTGRES_MAX_MESSAGE
        {
            return err(format!(
                "server.max_message_bytes = {} is out of range; use 1024 to {}",
                self.server.max_message_bytes,
                crate::protocol::frame::POSTGRES_MAX_MESSAGE
            ));
        }
        if self.server.max_sql_bytes < 1024
            || self.server.max_sql_bytes > self.server.max_message_bytes
        {
            return err(format!(
                "server.max_sql_bytes = {} is out of range; use 1024 to server.max_message_bytes ({})",
                self.server.max_sql_bytes, self.server.max_message_bytes
            ));
        }
        if self.server.max_session_pending < 16 {
            return err("server.max_session_pending must be at least 16".into());
        }
        if self.server.max_connections == 0 {
            return err("server.max_connections must be at least 1".into());
        }
        if self.upstream.sslmode == SslMode::VerifyFull && self.upstream.ca_file.is_none() {
            return err(
                "upstream.sslmode = \"verify-full\" needs upstream.ca_file (the CA that signed the server certificate)".into(),
            );
        }
        if self.upstream.password_env.is_some() && self.upstream.password_file.is_some() {
            return err(
                "upstream.password_env and upstream.password_file are both set; keep one".into(),
            );
        }
        for (i, u) in self.upstream.users.iter().enumerate() {
            if u.name.is_empty() || u.password_env.is_some() && u.password_file.is_some() {
                return err(format!(
                    "upstream.users[{i}]: give a name and at most one of password_env, password_file"
                ));
            }
        }
        if let Some(i) = &self.audit.instance {
            if !crate::audit::files::valid_instance(i) {
                return err(format!(
                    "audit.instance = {i:?}: use letters, digits, '-' and '.' (at most 64 characters)"
                ));
            }
        }
        if self.audit.flush_interval_ms == 0 || self.audit.flush_interval_ms > 60_000 {
            return err("audit.flush_interval_ms must be 1 to 60000".into());
        }
        if self.audit.queue_capacity < 1024 {
            return err("audit.queue_capacity must be at least 1024".into());
        }
        self.validate_oidc()
            .map_err(|m| ConfigError::new(path, m))?;
        crate::upstream::UpstreamTarget::from_url(&self.upstream.url)
            .map_err(|m| ConfigError::new(path, format!("upstream.url: {m}")))?;
        Ok(())
    }

    fn validate_oidc(&self) -> Result<(), String> {
        let o = &self.oidc;
        if o.max_token_bytes < 1024 || o.max_token_bytes > 1 << 20 {
            return Err("oidc.max_token_bytes must be 1024 to 1048576".into());
        }
        if o.http_timeout_secs == 0 {
            return Err("oidc.http_timeout_secs must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (n, i) in o.issuer.iter().enumerate() {
            let at = format!("oidc.issuer[{n}] ({:?})", i.issuer);
            let url = url::Url::parse(&i.issuer)
                .map_err(|e| format!("{at}: issuer is not a URL: {e}"))?;
            if !crate::auth::jwks::trusted_url(url.as_str()) {
                return Err(format!(
                    "{at}: issuer must be an https:// URL (plain http:// only to a loopback address, for a local test issuer)"
                ));
            }
            if !seen.insert(i.issuer.as_str()) {
                return Err(format!("{at}: issuer is configured twice"));
            }
            if i.audience.is_empty() || i.audience.iter().any(String::is_empty) {
                return Err(format!(
                    "{at}: audience must name the audience pgward's tokens carry (for example [\"pgward\"]); without it a token minted for any other application would do"
                ));
            }
            if i.algorithms.is_empty() {
                return Err(format!(
                    "{at}: algorithms is empty; omit it for the default"
                ));
            }
            for a in &i.algorithms {
                if !ASYMMETRIC_ALGORITHMS.contains(&a.as_str()) {
                    return Err(format!(
                        "{at}: algorithm {a:?} is not accepted; use any of {} (HMAC and none are never safe with a provider's public keys)",
                        ASYMMETRIC_ALGORITHMS.join(", ")
                    ));
                }
            }
            if i.leeway_secs > 300 {
                return Err(format!("{at}: leeway_secs must be at most 300"));
            }
            if i.identity_claim.is_empty() {
                return Err(format!("{at}: identity_claim must name a claim"));
            }
            if !crate::auth::jwks::trusted_url(&i.discovery_url()) {
                return Err(format!(
                    "{at}: discovery_url {:?} must be an https:// URL",
                    i.discovery_url()
                ));
            }
        }
        Ok(())
    }

    /// The upstream password from the env var or file the config names.
    pub fn upstream_password(&self) -> Result<Option<String>, String> {
        read_password(
            "upstream",
            self.upstream.password_env.as_deref(),
            self.upstream.password_file.as_deref(),
        )
    }

    /// Passwords of the extra upstream users, by user name.
    pub fn upstream_user_passwords(&self) -> Result<Vec<(String, Option<String>)>, String> {
        self.upstream
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                read_password(
                    &format!("upstream.users[{i}] ({})", u.name),
                    u.password_env.as_deref(),
                    u.password_file.as_deref(),
                )
                .map(|p| (u.name.clone(), p))
            })
            .collect()
    }
}

fn read_password(
    key: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    if let Some(var) = env {
        return std::env::var(var).map(Some).map_err(|_| {
            format!("{key}.password_env names {var}, but that environment variable is not set")
        });
    }
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("{key}.password_file {}: cannot read: {e}", file.display()))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let p = Path::new("pgward.toml");
        let c = Config::parse(text, p)?;
        c.validate(p)?;
        Ok(c)
    }

    #[test]
    fn removed_relay_keys_still_load_and_are_named() {
        let base = "[upstream]\nurl = \"postgres://a@h/db\"\n";
        let c = parse(base).unwrap();
        assert!(c.server.removed_keys().is_empty());
        let c = parse(&format!(
            "[server]\nrelay_threads = false\npin_relay_threads = true\n{base}"
        ))
        .unwrap();
        assert_eq!(
            c.server.removed_keys(),
            ["relay_threads", "pin_relay_threads"]
        );
        // Still only the keys that were: a misspelling is an error.
        let e = parse(&format!("[server]\nrelay_thread = false\n{base}")).unwrap_err();
        assert!(e.to_string().contains("relay_thread"), "{e}");
    }

    #[test]
    fn oidc_issuers_are_checked() {
        let base = "[upstream]\nurl = \"postgres://a@h/db\"\n";
        let issuer = |rest: &str| {
            format!("{base}[[oidc.issuer]]\nissuer = \"https://idp.example.com\"\n{rest}")
        };
        let c = parse(&issuer("audience = [\"pgward\"]\n")).unwrap();
        let i = &c.oidc.issuer[0];
        assert_eq!(i.identity_claim, "sub");
        assert!(i.algorithms.iter().all(|a| !a.starts_with("HS")));
        assert_eq!(
            i.discovery_url(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
        for (bad, expected) in [
            ("audience = []\n", "audience"),
            (
                "audience = [\"pgward\"]\nalgorithms = [\"HS256\"]\n",
                "HS256",
            ),
            ("audience = [\"pgward\"]\nalgorithms = [\"none\"]\n", "none"),
            ("audience = [\"pgward\"]\nleeway_secs = 3600\n", "leeway"),
        ] {
            let e = parse(&issuer(bad)).unwrap_err().to_string();
            assert!(e.contains("oidc.issuer[0]") && e.contains(expected), "{e}");
        }
        let twice = format!(
            "{}[[oidc.issuer]]\nissuer = \"https://idp.example.com\"\naudience = [\"x\"]\n",
            issuer("audience = [\"pgward\"]\n")
        );
        assert!(parse(&twice).unwrap_err().to_string().contains("twice"));
        let not_url = format!("{base}[[oidc.issuer]]\nissuer = \"idp\"\naudience = [\"x\"]\n");
        assert!(parse(&not_url)
            .unwrap_err()
            .to_string()
            .contains("not a URL"));
        // Keys over plain HTTP only from a loopback test issuer.
        let plain = |host: &str| {
            format!(
                "{base}[[oidc.issuer]]\nissuer = \"http://{host}/realms/x\"\naudience = [\"x\"]\n"
            )
        };
        for host in ["idp.example.com", "10.0.0.5:8080", "127.0.0.1.nip.io"] {
            let e = parse(&plain(host)).unwrap_err().to_string();
            assert!(e.contains("https://"), "{host}: {e}");
        }
        for host in ["127.0.0.1:8080", "localhost", "[::1]:9000"] {
            parse(&plain(host)).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        let plain_discovery = issuer(
            "audience = [\"pgward\"]\ndiscovery_url = \"http://idp.example.com/.well-known/openid-configuration\"\n",
        );
        assert!(parse(&plain_discovery)
            .unwrap_err()
            .to_string()
            .contains("discovery_url"));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("[upstream]\nurl = \"postgres://pgward@127.0.0.1:5432/app\"\n").unwrap();
        assert_eq!(c.server.max_message_bytes, 64 << 20);
        assert_eq!(c.tls.mode, TlsMode::Off);
        assert_eq!(c.upstream.sslmode, SslMode::Prefer);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[upstream]\nurl = \"postgres://a@h/db\"\nsslmod = \"require\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pgward.toml"), "{e}");
        assert!(e.contains("sslmod"), "{e}");
    }

    #[test]
    fn tls_needs_cert_and_key() {
        let e = parse("[tls]\nmode = \"required\"\n[upstream]\nurl = \"postgres://a@h/db\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.cert"), "{e}");
    }

    #[test]
    fn passwords_in_the_url_are_refused() {
        let e = parse("[upstream]\nurl = \"postgres://a:secret@h/db\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("password"), "{e}");
        assert!(
            !e.contains("secret"),
            "the error must not echo the secret: {e}"
        );
    }

    #[test]
    fn the_example_config_is_valid_and_audits() {
        let c = parse(include_str!("../pgward.toml")).unwrap();
        assert!(c.audit.enabled);
        assert_eq!(c.audit.on_failure, OnFailure::Deny);
        // The container's config keeps the audit log on its volume.
        let d = parse(include_str!("../docker/pgward.toml")).unwrap();
        assert_eq!(d.audit.dir, PathBuf::from("/var/lib/pgward/audit"));
    }

    #[test]
    fn sql_limit_stays_within_the_message_limit() {
        let base = "[upstream]\nurl = \"postgres://a@h/db\"\n[server]\n";
        assert_eq!(parse(base).unwrap().server.max_sql_bytes, 1 << 20);
        for bad in [
            "max_sql_bytes = 10",
            "max_message_bytes = 2048\nmax_sql_bytes = 4096",
        ] {
            let e = parse(&format!("{base}{bad}\n")).unwrap_err().to_string();
            assert!(e.contains("server.max_sql_bytes"), "{e}");
        }
    }

    #[test]
    fn audit_keys_are_checked() {
        let base = "[upstream]\nurl = \"postgres://a@h/db\"\n[audit]\n";
        let e = parse(&format!("{base}instance = \"a/b\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("audit.instance"), "{e}");
        let e = parse(&format!("{base}on_failure = \"ignore\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("on_failure") || e.contains("ignore"), "{e}");
        let e = parse(&format!("{base}flush_interval_ms = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("flush_interval_ms"), "{e}");
        let c = parse(&format!("{base}enabled = false\n")).unwrap();
        assert!(!c.audit.enabled);
        assert!(!parse(base).unwrap().audit.instance_name().is_empty());
    }

    #[test]
    fn verify_full_needs_a_ca() {
        let e = parse("[upstream]\nurl = \"postgres://a@h/db\"\nsslmode = \"verify-full\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca_file"), "{e}");
    }
}
