//! TLS for both sides with rustls: the server config clients meet, the
//! client configs pgward uses upstream, and channel-binding data.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The ALPN protocol name PostgreSQL 17 uses for direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// What the listener needs to terminate client TLS.
pub struct ServerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// `tls-server-end-point` channel-binding data of our certificate.
    pub end_point: Vec<u8>,
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a PEM certificate chain and key into a server config.
pub fn server_from_files(cert: &Path, key: &Path) -> Result<ServerTls, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls.cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert {}: no CERTIFICATE block found",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls.key {}: {e}", key.display()))?;
    server_from_der(certs, key)
}

pub fn server_from_der(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerTls, String> {
    let end_point = end_point_hash(&certs[0]);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: certificate and key do not fit together: {e}"))?;
    // Clients that offer ALPN must offer "postgresql" (PostgreSQL 17 rule);
    // older clients offer none and are accepted.
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(ServerTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        end_point,
    })
}

/// A self-signed certificate for `localhost`/127.0.0.1, for the demo and tests.
pub fn self_signed() -> Result<(String, String), String> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("generating a self-signed certificate: {e}"))?;
    Ok((cert.cert.pem(), cert.key_pair.serialize_pem()))
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its own
/// signature hash, where MD5 and SHA-1 are raised to SHA-256.
pub fn end_point_hash(cert: &[u8]) -> Vec<u8> {
    match signature_hash(cert) {
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
    }
}

enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// Reads the outer signatureAlgorithm OID of a DER certificate.
fn signature_hash(cert: &[u8]) -> Hash {
    const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 12];
    const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 13];
    const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 3];
    const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 4];
    let oid = (|| {
        let (_, cert_body) = der_item(cert, 0x30)?;
        let (rest, _tbs) = der_item(cert_body, 0x30)?;
        let (_, alg) = der_item(rest, 0x30)?;
        let (_, oid) = der_item(alg, 0x06)?;
        Some(oid)
    })();
    match oid {
        Some(o) if o == RSA_SHA384 || o == ECDSA_SHA384 => Hash::Sha384,
        Some(o) if o == RSA_SHA512 || o == ECDSA_SHA512 => Hash::Sha512,
        _ => Hash::Sha256,
    }
}

/// Splits one DER item with the expected tag off `buf`: (rest, contents).
fn der_item(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = buf.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((after, contents))
}

/// Adds every certificate of the PEM file `path` to `roots`; a file with
/// none is an error. `key` names the setting in messages.
pub fn add_pem_roots(
    roots: &mut rustls::RootCertStore,
    path: &Path,
    key: &str,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{key} {}: {e}", path.display());
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(&e))? {
        roots.add(cert.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
        added += 1;
    }
    if added == 0 {
        return Err(err(&"no CERTIFICATE block found"));
    }
    Ok(())
}

/// A client config for upstream: verifying against `ca_file` (verify-full),
/// or encrypting without verification (prefer/require, as libpq does).
pub fn upstream_client(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            add_pem_roots(&mut roots, ca, "upstream.ca_file")?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate: sslmode prefer/require encrypt without
/// authenticating the server, exactly like libpq without a root cert.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_roots_load_or_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, cert).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        add_pem_roots(&mut roots, &good, "upstream.ca_file").unwrap();
        assert_eq!(roots.len(), 1);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = add_pem_roots(&mut roots, &empty, "oidc issuer X: ca_file").unwrap_err();
        assert!(
            e.starts_with("oidc issuer X: ca_file ") && e.ends_with("no CERTIFICATE block found"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = add_pem_roots(&mut roots, &missing, "upstream.ca_file").unwrap_err();
        assert!(e.starts_with("upstream.ca_file "), "{e}");
    }

    #[test]
    fn end_point_of_an_ecdsa_p256_cert_is_sha256() {
        let (pem, _) = self_signed().unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert!(matches!(signature_hash(&der), Hash::Sha256));
        assert_eq!(end_point_hash(&der), Sha256::digest(&der).to_vec());
    }

    #[test]
    fn end_point_follows_a_sha384_signature() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert!(matches!(signature_hash(cert.der()), Hash::Sha384));
        assert_eq!(end_point_hash(cert.der()).len(), 48);
    }

    #[test]
    fn garbage_der_falls_back_to_sha256() {
        assert!(matches!(signature_hash(b"\x30\x82\xff"), Hash::Sha256));
        assert!(matches!(signature_hash(b""), Hash::Sha256));
    }
}
