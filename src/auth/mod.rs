//! Client authentication: who is connecting, proven how.

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
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub roles: Vec<String>,
    pub method: AuthMethod,
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

    let body = read_sasl(conn).await?;
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

    let body = read_sasl(conn).await?;
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
        roles: spec.roles.clone(),
        method: if plus {
            AuthMethod::ScramPlus
        } else {
            AuthMethod::Scram
        },
    })
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

async fn read_sasl(conn: &mut Conn) -> Result<bytes::BytesMut, PgError> {
    match conn.read_frame(MAX_AUTH_MESSAGE).await {
        Ok((b'p', body)) => Ok(body),
        Ok((tag, _)) => Err(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "expected SASL response, got message type {}",
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
