//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, server side,
//! verified against stored verifiers in PostgreSQL's own format:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//! A verifier cannot be replayed as a password; only the proof can open it.
//!
//! Channel binding uses `tls-server-end-point` (RFC 5929), as libpq does.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub const MECHANISM: &str = "SCRAM-SHA-256";
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A stored SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(SCRAM-SHA-256, redacted)")
    }
}

impl Verifier {
    /// Derives a verifier from a password with a fresh random salt.
    pub fn generate(password: &str, iterations: u32) -> Verifier {
        let mut salt = vec![0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Verifier::derive(password.as_bytes(), salt, iterations)
    }

    fn derive(password: &[u8], salt: Vec<u8>, iterations: u32) -> Verifier {
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
            salt,
        }
    }

    /// Parses PostgreSQL's verifier text format.
    pub fn parse(text: &str) -> Result<Verifier, String> {
        let fail = |why: &str| {
            format!("not a SCRAM-SHA-256 verifier ({why}); expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as printed by `pgward hash-password`")
        };
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| fail("missing SCRAM-SHA-256$ prefix"))?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| fail("missing '$'"))?;
        let (iter, salt) = params
            .split_once(':')
            .ok_or_else(|| fail("missing ':' between iterations and salt"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or_else(|| fail("missing ':' between the keys"))?;
        let iterations: u32 = iter.parse().map_err(|_| fail("bad iteration count"))?;
        if iterations == 0 {
            return Err(fail("iteration count is zero"));
        }
        let salt = B64.decode(salt).map_err(|_| fail("salt is not base64"))?;
        let key = |s: &str| -> Result<[u8; 32], String> {
            B64.decode(s)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or_else(|| fail("key is not 32 bytes of base64"))
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// A verifier that no password opens, with a salt that is stable per user
    /// name, so an unknown user gets the same exchange as a known one.
    pub fn mock(user: &str, instance_secret: &[u8]) -> Verifier {
        let salt = hmac(instance_secret, user.as_bytes())[..16].to_vec();
        let mut keys = [0u8; 64];
        rand::rng().fill_bytes(&mut keys);
        let mut stored_key = [0u8; 32];
        let mut server_key = [0u8; 32];
        stored_key.copy_from_slice(&keys[..32]);
        server_key.copy_from_slice(&keys[32..]);
        Verifier {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key,
            server_key,
        }
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // SASLprep as PostgreSQL does: if the password is not valid UTF-8 or
    // SASLprep rejects it, the raw bytes are used.
    let prepped = std::str::from_utf8(password)
        .ok()
        .and_then(|s| stringprep::saslprep(s).ok());
    let bytes = prepped.as_ref().map(|c| c.as_bytes()).unwrap_or(password);
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(bytes, salt, iterations, &mut out);
    out
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Why an exchange ended without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// The client broke the protocol; the text says how.
    Protocol(String),
    /// The proof did not match: wrong password or unknown user.
    BadProof,
}

/// The channel binding the server can offer on this connection.
#[derive(Debug, Clone)]
pub enum Binding {
    /// Plain TCP: only SCRAM-SHA-256.
    None,
    /// TLS: `tls-server-end-point` data (hash of the server certificate).
    TlsServerEndPoint(Vec<u8>),
}

/// One server-side exchange.
pub struct ScramServer {
    verifier: Verifier,
    binding: Binding,
    state: State,
}

enum State {
    Initial,
    SentFirst {
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        plus: bool,
    },
    Done,
}

impl ScramServer {
    pub fn new(verifier: Verifier, binding: Binding) -> ScramServer {
        ScramServer {
            verifier,
            binding,
            state: State::Initial,
        }
    }

    /// Mechanisms to advertise, strongest first.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        match self.binding {
            Binding::None => &[MECHANISM],
            Binding::TlsServerEndPoint(_) => &[MECHANISM_PLUS, MECHANISM],
        }
    }

    /// Handles SASLInitialResponse; returns server-first-message.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let proto = |m: &str| ScramError::Protocol(m.to_owned());
        let plus = match mechanism {
            MECHANISM => false,
            MECHANISM_PLUS if matches!(self.binding, Binding::TlsServerEndPoint(_)) => true,
            _ => {
                return Err(proto(
                    "client selected an invalid SASL authentication mechanism",
                ))
            }
        };
        let text = std::str::from_utf8(data).map_err(|_| proto("client-first is not UTF-8"))?;
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().unwrap_or_default();
        let authzid = parts
            .next()
            .ok_or_else(|| proto("malformed SCRAM message"))?;
        let bare = parts
            .next()
            .ok_or_else(|| proto("malformed SCRAM message"))?;
        match (cbind, plus) {
            ("n", false) => {}
            // The client could bind but believes the server cannot: if we did
            // offer -PLUS, someone stripped it on the way (downgrade).
            ("y", false) if matches!(self.binding, Binding::None) => {}
            ("y", false) => {
                return Err(proto(
                    "SCRAM channel binding negotiation error: client supports channel binding but thinks the server does not",
                ))
            }
            ("p=tls-server-end-point", true) => {}
            (c, _) if c.starts_with("p=") => {
                return Err(proto("unsupported SCRAM channel-binding type"))
            }
            _ => return Err(proto("malformed SCRAM message: bad channel-binding flag")),
        }
        if !authzid.is_empty() {
            return Err(proto(
                "client uses authorization identity, but it is not supported",
            ));
        }
        if bare.starts_with("m=") {
            return Err(proto("client requires an unsupported SCRAM extension"));
        }
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
            .ok_or_else(|| proto("malformed SCRAM message: missing nonce"))?;
        let mut raw = [0u8; 18];
        rand::rng().fill_bytes(&mut raw);
        let nonce = format!("{client_nonce}{}", B64.encode(raw));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        let out = server_first.clone().into_bytes();
        self.state = State::SentFirst {
            gs2_header: format!("{cbind},{authzid},"),
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
            plus,
        };
        Ok(out)
    }

    /// Handles the SASLResponse; returns server-final-message on success.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let proto = |m: &str| ScramError::Protocol(m.to_owned());
        let State::SentFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
            plus,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(proto("unexpected SCRAM message"));
        };
        let text = std::str::from_utf8(data).map_err(|_| proto("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| proto("malformed SCRAM message: missing proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| proto("malformed SCRAM message: missing channel binding"))?;
        let got_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| proto("malformed SCRAM message: missing nonce"))?;
        let mut expected = gs2_header.into_bytes();
        if plus {
            if let Binding::TlsServerEndPoint(data) = &self.binding {
                expected.extend_from_slice(data);
            }
        }
        let got_cbind = B64
            .decode(cbind)
            .map_err(|_| proto("malformed SCRAM message: channel binding is not base64"))?;
        if got_cbind != expected {
            return Err(proto("SCRAM channel binding check failed"));
        }
        if got_nonce != nonce {
            return Err(proto("SCRAM nonce mismatch"));
        }
        let proof = B64
            .decode(proof)
            .ok()
            .filter(|p| p.len() == 32)
            .ok_or_else(|| proto("malformed SCRAM message: bad proof"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(computed.ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn run(
        password: &str,
        verifier: &Verifier,
        binding: Binding,
        client_binding: ChannelBinding,
        mechanism: &str,
    ) -> Result<(), ScramError> {
        let mut server = ScramServer::new(verifier.clone(), binding);
        let mut client = ScramSha256::new(password.as_bytes(), client_binding);
        let first = server.client_first(mechanism, client.message())?;
        client
            .update(&first)
            .map_err(|e| ScramError::Protocol(e.to_string()))?;
        let fin = server.client_final(client.message())?;
        client
            .finish(&fin)
            .map_err(|e| ScramError::Protocol(format!("client rejected server: {e}")))
    }

    #[test]
    fn verifier_round_trips_through_text() {
        let v = Verifier::generate("secret", 4096);
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(Verifier::parse(&text).unwrap(), v);
        assert!(Verifier::parse("md5abc").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$0:AA==$AA==:AA==").is_err());
    }

    #[test]
    fn right_password_succeeds_and_server_is_verified() {
        let v = Verifier::generate("pencil", 4096);
        run(
            "pencil",
            &v,
            Binding::None,
            ChannelBinding::unsupported(),
            MECHANISM,
        )
        .unwrap();
    }

    #[test]
    fn wrong_password_is_bad_proof() {
        let v = Verifier::generate("pencil", 4096);
        let err = run(
            "pen",
            &v,
            Binding::None,
            ChannelBinding::unsupported(),
            MECHANISM,
        );
        assert_eq!(err, Err(ScramError::BadProof));
    }

    #[test]
    fn mock_verifier_rejects_every_password_with_a_stable_salt() {
        let a = Verifier::mock("nobody", b"k");
        let b = Verifier::mock("nobody", b"k");
        assert_eq!(a.salt, b.salt);
        let err = run(
            "",
            &a,
            Binding::None,
            ChannelBinding::unsupported(),
            MECHANISM,
        );
        assert_eq!(err, Err(ScramError::BadProof));
    }

    #[test]
    fn channel_binding_plus() {
        let v = Verifier::generate("pencil", 4096);
        let cb = vec![7u8; 32];
        run(
            "pencil",
            &v,
            Binding::TlsServerEndPoint(cb.clone()),
            ChannelBinding::tls_server_end_point(cb),
            MECHANISM_PLUS,
        )
        .unwrap();
        // A client bound to a different certificate (a man in the middle).
        let err = run(
            "pencil",
            &v,
            Binding::TlsServerEndPoint(vec![7u8; 32]),
            ChannelBinding::tls_server_end_point(vec![8u8; 32]),
            MECHANISM_PLUS,
        );
        assert!(matches!(err, Err(ScramError::Protocol(m)) if m.contains("channel binding")));
    }

    #[test]
    fn downgrade_is_detected() {
        let v = Verifier::generate("pencil", 4096);
        // "y": the client could bind but was not offered -PLUS.
        let err = run(
            "pencil",
            &v,
            Binding::TlsServerEndPoint(vec![1; 32]),
            ChannelBinding::unrequested(),
            MECHANISM,
        );
        assert!(matches!(err, Err(ScramError::Protocol(m)) if m.contains("negotiation")));
        // -PLUS on plain TCP is refused.
        let err = run(
            "pencil",
            &v,
            Binding::None,
            ChannelBinding::tls_server_end_point(vec![1; 32]),
            MECHANISM_PLUS,
        );
        assert!(matches!(err, Err(ScramError::Protocol(_))));
    }

    #[test]
    fn garbage_messages_are_protocol_errors() {
        let v = Verifier::generate("pencil", 4096);
        for junk in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=,r=abc",
            b"n,a=bob,n=,r=abc",
            b"\xff\xfe",
        ] {
            let mut s = ScramServer::new(v.clone(), Binding::None);
            assert!(matches!(
                s.client_first(MECHANISM, junk),
                Err(ScramError::Protocol(_))
            ));
        }
        let mut s = ScramServer::new(v.clone(), Binding::None);
        s.client_first(MECHANISM, b"n,,n=,r=abc").unwrap();
        assert!(matches!(
            s.client_final(b"c=biws,r=abc,p=AAAA"),
            Err(ScramError::Protocol(_))
        ));
        assert!(matches!(
            s.client_final(b"c=biws"),
            Err(ScramError::Protocol(_))
        ));
    }
}
