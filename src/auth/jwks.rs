//! An identity provider's signing keys: discovered from its
//! `/.well-known/openid-configuration`, fetched from its `jwks_uri`, cached.
//!
//! A token whose key id is not in the cache refetches the key set, but at
//! most once per `jwks_min_refresh_secs`, so a flood of tokens with made-up
//! key ids cannot hammer the provider. Sign-ins with known keys never wait
//! for a fetch in progress.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::IssuerConfig;

/// Whether keys may be fetched from `url`: HTTPS, or plain HTTP to a
/// loopback host (a local test issuer). Keys fetched over the network in
/// the clear could be swapped by anyone on the path.
pub fn trusted_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => true,
        "http" => match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Discovery documents and key sets larger than this are refused.
const MAX_DOCUMENT: usize = 1 << 20;

/// Why no key could be found for a token.
#[derive(Debug)]
pub enum KeyError {
    /// The provider could not be reached or answered nonsense.
    Provider(String),
    /// The key set has no key for this token.
    Unknown(String),
    /// The key named by the token does not fit its algorithm.
    Mismatch(String),
}

struct Keys {
    keys: Vec<Jwk>,
    fetched: Instant,
}

/// What a refresh remembers, behind a lock only refreshes take.
struct Refresh {
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

pub struct Provider {
    pub config: IssuerConfig,
    http: reqwest::Client,
    min_refresh: Duration,
    max_age: Duration,
    keys: Mutex<Option<Arc<Keys>>>,
    refresh: tokio::sync::Mutex<Refresh>,
}

impl Provider {
    pub fn new(
        config: IssuerConfig,
        http_timeout: Duration,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Result<Provider, String> {
        let http = http_client(&config, http_timeout)?;
        Ok(Provider {
            config,
            http,
            min_refresh,
            max_age,
            keys: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(Refresh {
                jwks_uri: None,
                last_attempt: None,
                last_error: None,
            }),
        })
    }

    fn cached(&self) -> Option<Arc<Keys>> {
        self.keys.lock().ok().and_then(|k| k.clone())
    }

    /// The key that verifies a token with this `kid` and `alg`.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, KeyError> {
        if let Some(keys) = self.cached() {
            if keys.fetched.elapsed() < self.max_age {
                if let Some(k) = find(&keys.keys, kid, alg)? {
                    return Ok(k);
                }
            }
        }
        let asked = Instant::now();
        let mut r = self.refresh.lock().await;
        // Another sign-in may have refreshed while this one waited.
        let fresh = self.cached().filter(|k| k.fetched >= asked);
        let allowed = r
            .last_attempt
            .is_none_or(|t| t.elapsed() >= self.min_refresh);
        if fresh.is_none() && allowed {
            r.last_attempt = Some(Instant::now());
            match self.fetch(&mut r).await {
                Ok(keys) => {
                    tracing::info!(issuer = %self.config.issuer, keys = keys.len(), "fetched the issuer's signing keys");
                    r.last_error = None;
                    if let Ok(mut slot) = self.keys.lock() {
                        *slot = Some(Arc::new(Keys {
                            keys,
                            fetched: Instant::now(),
                        }));
                    }
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.config.issuer, "cannot fetch signing keys: {e}");
                    r.last_error = Some(e);
                }
            }
        }
        // Keys past their age are still used when the refetch failed: an
        // unreachable provider should not lock everyone out at once.
        if let Some(keys) = self.cached() {
            if let Some(k) = find(&keys.keys, kid, alg)? {
                return Ok(k);
            }
        }
        let named = kid.map_or_else(|| "(none)".to_owned(), |k| format!("{k:?}"));
        match (&r.last_error, self.cached()) {
            (Some(e), _) => Err(KeyError::Provider(format!(
                "cannot fetch the signing keys of issuer {}: {e}",
                self.config.issuer
            ))),
            (None, Some(keys)) => Err(KeyError::Unknown(format!(
                "issuer {} has no {alg:?} signing key with key id {named} (its key set was fetched {}s ago and is refetched at most every {}s)",
                self.config.issuer,
                keys.fetched.elapsed().as_secs(),
                self.min_refresh.as_secs()
            ))),
            (None, None) => Err(KeyError::Provider(format!(
                "the signing keys of issuer {} are not available yet; try again in {}s",
                self.config.issuer,
                self.min_refresh.as_secs()
            ))),
        }
    }

    /// Discovery (once), then the key set.
    async fn fetch(&self, r: &mut Refresh) -> Result<Vec<Jwk>, String> {
        let jwks_uri = match &r.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = self.config.discovery_url();
                let doc: serde_json::Value = self.get_json(&url).await?;
                let issuer = doc.get("issuer").and_then(|v| v.as_str());
                if issuer != Some(self.config.issuer.as_str()) {
                    return Err(format!(
                        "{url} names issuer {issuer:?}, not the configured {:?}",
                        self.config.issuer
                    ));
                }
                let uri = doc
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
                    .to_owned();
                if !trusted_url(&uri) {
                    return Err(format!(
                        "{url} names jwks_uri {uri:?}, which is not https://"
                    ));
                }
                r.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let set: serde_json::Value = self.get_json(&jwks_uri).await?;
        let raw = set
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| format!("{jwks_uri} is not a JWK set (no \"keys\" array)"))?;
        // One key of a kind this build does not know must not hide the rest.
        let keys: Vec<Jwk> = raw
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter(|k| {
                !matches!(k.algorithm, AlgorithmParameters::OctetKey(_))
                    && k.common
                        .public_key_use
                        .as_ref()
                        .is_none_or(|u| *u == PublicKeyUse::Signature)
            })
            .collect();
        if keys.is_empty() {
            return Err(format!("{jwks_uri} has no usable signing keys"));
        }
        Ok(keys)
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        // reqwest arms tokio timers, which session threads do not have.
        let (http, owned) = (self.http.clone(), url.to_owned());
        crate::timer::in_background(async move { get_json(&http, &owned).await })
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
    }

    /// Fetches the keys ahead of the first sign-in; failures are only logged.
    pub async fn warm_up(&self) {
        let _ = self.key(Some("\0warm-up"), Algorithm::RS256).await;
    }
}

/// One JSON document, at most MAX_DOCUMENT bytes.
async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let mut resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// The reason and its causes: reqwest's own message is only "error
/// sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The one key for `kid` and `alg`; `None` when the set has none (a
/// refetch may find it), an error when what is there cannot be used.
fn find(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, KeyError> {
    let named: Vec<&Jwk> = match kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => keys.iter().collect(),
    };
    let fitting: Vec<&Jwk> = named.iter().copied().filter(|k| fits(k, alg)).collect();
    let unusable = |m: String| Err(KeyError::Mismatch(m));
    match (kid, fitting.as_slice()) {
        (_, [one]) => match DecodingKey::from_jwk(one) {
            Ok(k) => Ok(Some(k)),
            Err(e) => unusable(format!("the issuer's key is unusable: {e}")),
        },
        (Some(kid), []) if !named.is_empty() => unusable(format!(
            "key {kid:?} cannot verify {alg:?} signatures (the token's alg does not fit its key)"
        )),
        (_, []) => Ok(None),
        (Some(kid), _) => unusable(format!("key id {kid:?} is ambiguous in the key set")),
        (None, _) => unusable(format!(
            "the token names no key id and the issuer has several {alg:?} keys"
        )),
    }
}

/// Whether a key may verify `alg`: the right key type and curve, and no
/// contradicting `alg` on the key itself.
fn fits(k: &Jwk, alg: Algorithm) -> bool {
    if let Some(ka) = &k.common.key_algorithm {
        if format!("{ka:?}") != format!("{alg:?}") {
            return false;
        }
    }
    use Algorithm::*;
    match (&k.algorithm, alg) {
        (AlgorithmParameters::RSA(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512) => true,
        (AlgorithmParameters::EllipticCurve(p), ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), EdDSA) => p.curve == EllipticCurve::Ed25519,
        _ => false,
    }
}

/// An HTTPS client trusting the system's roots and the issuer's `ca_file`.
fn http_client(config: &IssuerConfig, timeout: Duration) -> Result<reqwest::Client, String> {
    let at = |m: String| format!("oidc issuer {}: {m}", config.issuer);
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = &config.ca_file {
        crate::tls::add_pem_roots(
            &mut roots,
            ca,
            &format!("oidc issuer {}: ca_file", config.issuer),
        )?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| at(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        // A redirect could lead to plain HTTP or another host: none.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("pgward/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| at(format!("cannot build the HTTP client: {e}")))
}
