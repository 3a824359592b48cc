//! Client authentication: who is connecting, proven how.

pub mod binding;
pub mod jwks;
pub mod oauthbearer;
pub mod oidc;
pub mod scram;

use crate::net::{Conn, ReadError};
use crate::protocol::messages::{self, parse_sasl_initial};
use crate::protocol::{sqlstate, PgError};
use crate::rules::Rules;
use scram::{Binding, ScramError, ScramServer, Verifier};

/// How a client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Scram,
    ScramPlus,
    /// An OIDC token sent as the password.
    OidcPassword,
    /// An OIDC token sent through SASL OAUTHBEARER.
    OauthBearer,
}

impl AuthMethod {
    /// The name in logs and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Scram => "scram-sha-256",
            AuthMethod::ScramPlus => "scram-sha-256-plus",
            AuthMethod::OidcPassword => "oidc",
            AuthMethod::OauthBearer => "oauthbearer",
        }
    }
}

/// An authenticated client. Its roles come from the rules: a declared
/// identity's list, or the bindings that match its token's claims.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub method: AuthMethod,
    pub token: Option<std::sync::Arc<oidc::Verified>>,
}

/// SASL messages are small; anything larger is not a SCRAM message.
const MAX_AUTH_MESSAGE: usize = 8 * 1024;

fn password_failed(user: &str) -> PgError {
    PgError::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Runs SCRAM-SHA-256 with the client. An unknown user goes through the
/// same exchange against a mock verifier and gets the same error as a wrong
/// password, so names cannot be probed.
pub async fn authenticate(
    conn: &mut Conn,
    user: &str,
    rules: &Rules,
    end_point: Option<Vec<u8>>,
    instance_secret: &[u8],
) -> Result<Identity, PgError> {
    let known = rules.identities.get(user);
    let verifier = known
        .map(|i| i.verifier.clone())
        .unwrap_or_else(|| Verifier::mock(user, instance_secret));
    let binding = match end_point {
        Some(ep) => Binding::TlsServerEndPoint(ep),
        None => Binding::None,
    };
    let mut server = ScramServer::new(verifier, binding);
    messages::auth_sasl(&mut conn.wbuf, server.mechanisms());
    flush(conn).await?;

    let body = read_auth_message(conn, MAX_AUTH_MESSAGE, "SASL response").await?;
    let (mechanism, data) = parse_sasl_initial(&body).ok_or_else(|| {
        PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "malformed SASLInitialResponse message",
        )
    })?;
    let plus = mechanism == scram::MECHANISM_PLUS;
    let first = server
        .client_first(mechanism, data)
        .map_err(|e| scram_error(e, user))?;
    messages::auth_sasl_continue(&mut conn.wbuf, &first);
    flush(conn).await?;

    let body = read_auth_message(conn, MAX_AUTH_MESSAGE, "SASL response").await?;
    let last = server
        .client_final(&body)
        .map_err(|e| scram_error(e, user))?;
    let Some(spec) = known else {
        return Err(password_failed(user));
    };
    messages::auth_sasl_final(&mut conn.wbuf, &last);
    messages::auth_ok(&mut conn.wbuf);
    Ok(Identity {
        name: spec.name.clone(),
        method: if plus {
            AuthMethod::ScramPlus
        } else {
            AuthMethod::Scram
        },
        token: None,
    })
}

/// Signs a client in with an OIDC token, as its password or through SASL
/// OAUTHBEARER. Tokens are bearer secrets: pgward asks for one only over
/// TLS, or from a loopback address when `oidc.allow_loopback_cleartext`.
pub async fn token_sign_in(
    conn: &mut Conn,
    user: &str,
    oidc: &oidc::Oidc,
    rules: &Rules,
    loopback: bool,
) -> Result<Identity, PgError> {
    let allowed = conn.stream.is_tls() || (oidc.config.allow_loopback_cleartext && loopback);
    if !allowed {
        return Err(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "pgward accepts OIDC tokens only over TLS",
        )
        .with_hint("connect with sslmode=require"));
    }
    let refused = |m: String| token_refused(user, m);
    // A token, its framing, and a SASL header.
    let max = oidc.config.max_token_bytes + 1024;
    let (token, method) = match oidc.config.method {
        crate::config::OidcMethod::Password => {
            messages::auth_cleartext_password(&mut conn.wbuf);
            flush(conn).await?;
            let body = read_auth_message(conn, max, "password message").await?;
            let text = body
                .strip_suffix(b"\0")
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| {
                    PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "malformed password message")
                })?;
            (text.to_owned(), AuthMethod::OidcPassword)
        }
        crate::config::OidcMethod::Oauthbearer => {
            messages::auth_sasl(&mut conn.wbuf, &[oauthbearer::MECHANISM]);
            flush(conn).await?;
            let body = read_auth_message(conn, max, "SASL response").await?;
            let protocol = |m: String| PgError::fatal(sqlstate::PROTOCOL_VIOLATION, m);
            let (mechanism, data) = parse_sasl_initial(&body)
                .ok_or_else(|| protocol("malformed SASLInitialResponse message".into()))?;
            if mechanism != oauthbearer::MECHANISM {
                return Err(protocol(format!(
                    "client selected an invalid SASL authentication mechanism {mechanism:?}"
                )));
            }
            // Without an initial response, the client sends it after an
            // empty challenge (RFC 4422).
            let later;
            let data = if data.is_empty() {
                messages::auth_sasl_continue(&mut conn.wbuf, b"");
                flush(conn).await?;
                later = read_auth_message(conn, max, "SASL response").await?;
                &later[..]
            } else {
                data
            };
            match oauthbearer::parse_initial(data).map_err(protocol)? {
                oauthbearer::Initial::Token(t) => (t.to_owned(), AuthMethod::OauthBearer),
                oauthbearer::Initial::Discovery => {
                    let (url, scope) = sasl_error_exchange(conn, oidc).await?;
                    return Err(refused(format!(
                        "no token was sent; get one from {url} (scope {scope:?})"
                    )));
                }
            }
        }
    };
    let signed_in = admit_token(&token, method, user, oidc, rules).await;
    if signed_in.is_err() && method == AuthMethod::OauthBearer {
        // RFC 7628 3.2.2: a refused token gets the error document, which
        // the client acknowledges before the exchange fails.
        sasl_error_exchange(conn, oidc).await?;
    }
    let identity = signed_in?;
    messages::auth_ok(&mut conn.wbuf);
    Ok(identity)
}

/// A token sign-in refused, saying why.
fn token_refused(user: &str, why: String) -> PgError {
    PgError::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        format!("pgward: OIDC sign-in failed for user \"{user}\": {why}"),
    )
}

/// The identity a token proves, if it may have a session.
async fn admit_token(
    token: &str,
    method: AuthMethod,
    user: &str,
    oidc: &oidc::Oidc,
    rules: &Rules,
) -> Result<Identity, PgError> {
    let refused = |why: String| token_refused(user, why);
    let verified = oidc.verify(token).await.map_err(refused)?;
    oidc.check_user(&verified, user).map_err(refused)?;
    let identity = Identity {
        name: verified.name.clone(),
        method,
        token: Some(std::sync::Arc::new(verified)),
    };
    // No binding, no role: refused here, not after connecting upstream.
    if let Err(why) = rules.session_role(&identity, None) {
        return Err(refused(why).with_hint(
            "add a [[binding]] for this identity's claims to the rules (docs/auth.md)",
        ));
    }
    Ok(identity)
}

/// Sends the OAUTHBEARER error document (where to get a token, and its
/// scope) and reads the client's acknowledgement. Returns the discovery
/// URL and scope it named.
async fn sasl_error_exchange(
    conn: &mut Conn,
    oidc: &oidc::Oidc,
) -> Result<(String, String), PgError> {
    let (url, scope) = oidc.discovery();
    let doc = oauthbearer::error_document(&url, &scope);
    messages::auth_sasl_continue(&mut conn.wbuf, &doc);
    flush(conn).await?;
    let ack = read_auth_message(conn, MAX_AUTH_MESSAGE, "SASL response").await?;
    if !oauthbearer::is_error_ack(&ack) {
        return Err(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "malformed OAUTHBEARER error acknowledgement",
        ));
    }
    Ok((url, scope))
}

fn scram_error(e: ScramError, user: &str) -> PgError {
    match e {
        ScramError::BadProof => password_failed(user),
        ScramError::Protocol(m) => PgError::fatal(sqlstate::PROTOCOL_VIOLATION, m),
    }
}

async fn flush(conn: &mut Conn) -> Result<(), PgError> {
    conn.flush().await.map_err(|e| {
        PgError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("client went away: {e}"),
        )
    })
}

async fn read_auth_message(
    conn: &mut Conn,
    max: usize,
    what: &str,
) -> Result<bytes::BytesMut, PgError> {
    match conn.read_frame(max).await {
        Ok((b'p', body)) => Ok(body),
        Ok((tag, _)) => Err(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "expected {what}, got message type {}",
                crate::protocol::frame::printable(tag)
            ),
        )),
        // psql closes here to ask the user for a password; not an error.
        Err(ReadError::Closed) => Err(PgError::fatal(
            sqlstate::CONNECTION_FAILURE,
            "client closed the connection during authentication",
        )),
        Err(ReadError::Frame(e @ crate::protocol::FrameError::TooLarge { .. })) => Err(
            PgError::fatal(sqlstate::PROGRAM_LIMIT_EXCEEDED, e.to_string()),
        ),
        Err(e) => Err(PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())),
    }
}
