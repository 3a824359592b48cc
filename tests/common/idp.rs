//! A throwaway OpenID Connect issuer on loopback: a discovery document and
//! a JWK set over HTTP, and tokens signed with test RSA and EC keys.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The test RSA key (2048 bits, PKCS#1). Test-only: it signs nothing real.
const RSA_PEM: &[u8] = include_bytes!("../fixtures/oidc-test-rsa.pem");

pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    /// The public half as a JWK.
    pub jwk: Value,
    /// The public key as PEM-ish bytes, for the HMAC-with-public-key attack.
    pub public_bytes: Vec<u8>,
}

impl SigningKey {
    pub fn rsa(kid: &str) -> SigningKey {
        let der = rustls_pki_types::PrivatePkcs1KeyDer::from_pem_slice(RSA_PEM)
            .expect("test RSA key")
            .secret_pkcs1_der()
            .to_vec();
        let pair = RsaKeyPair::from_der(&der).expect("ring RSA key");
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        });
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(&der),
            jwk,
            public_bytes: pair.public().as_ref().to_vec(),
        }
    }

    /// A fresh P-256 key.
    pub fn ec(kid: &str) -> SigningKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate EC key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("EC key");
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
            public_bytes: point.to_vec(),
        }
    }

    /// A token with these claims, signed by this key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign token")
    }
}

/// What the issuer does with requests.
pub struct Idp {
    pub issuer: String,
    /// Keys published in the JWK set.
    pub published: Mutex<Vec<Value>>,
    /// Requests for the JWK set so far.
    pub jwks_fetches: AtomicUsize,
    /// Accept connections but never answer.
    pub hang: AtomicBool,
    /// A jwks_uri to announce instead of its own.
    pub jwks_uri: Mutex<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    pub async fn start(keys: &[&SigningKey]) -> Arc<Idp> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind idp");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let idp = Arc::new_cyclic(|weak: &std::sync::Weak<Idp>| {
            let weak = weak.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        return;
                    };
                    let Some(idp) = weak.upgrade() else { return };
                    tokio::spawn(async move { idp.answer(&mut sock).await });
                }
            });
            Idp {
                issuer,
                published: Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
                jwks_fetches: AtomicUsize::new(0),
                hang: AtomicBool::new(false),
                jwks_uri: Mutex::new(None),
                task,
            }
        });
        idp
    }

    async fn answer(&self, sock: &mut tokio::net::TcpStream) {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let line = String::from_utf8_lossy(&req);
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let (status, body) = match path {
            "/.well-known/openid-configuration" => (
                "200 OK",
                json!({
                    "issuer": self.issuer,
                    "jwks_uri": self
                        .jwks_uri
                        .lock()
                        .expect("jwks_uri")
                        .clone()
                        .unwrap_or_else(|| format!("{}/jwks", self.issuer)),
                    "token_endpoint": format!("{}/token", self.issuer),
                    "device_authorization_endpoint": format!("{}/device", self.issuer),
                    "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"],
                }),
            ),
            "/jwks" => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let keys = self.published.lock().expect("keys").clone();
                ("200 OK", json!({ "keys": keys }))
            }
            _ => ("404 Not Found", json!({})),
        };
        let body = body.to_string();
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = sock.write_all(resp.as_bytes()).await;
        let _ = sock.shutdown().await;
    }

    pub fn publish(&self, key: &SigningKey) {
        self.published.lock().expect("keys").push(key.jwk.clone());
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Claims valid now for `sub`, for pgward's audience.
    pub fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": "pgward",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        })
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A token with the given header and claims and no valid signature.
pub fn unsigned(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}
