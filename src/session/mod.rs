//! One client connection, from its first byte to its last: TLS negotiation,
//! startup, authentication, the upstream connection, then the relay.

pub mod commit_review;
pub mod guard;
pub mod recorder;
pub mod registry;
pub mod relay;
pub mod rows;
pub mod state;
pub mod text;

#[cfg(test)]
mod core_tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{self, Identity};
use crate::cancel::BackendKey;
use crate::config::TlsMode;
use crate::net::{Conn, Stream};
use crate::policy::settings::{self, SettingChange};
use crate::protocol::messages::{self, negotiate_protocol_version};
use crate::protocol::startup::{self, StartupMessage, StartupPacket};
use crate::protocol::{sqlstate, PgError};
use crate::server::Shared;
use crate::upstream::UpstreamError;

/// What the first phase of a connection produced.
enum Opening {
    /// A CancelRequest was handled; the connection is done.
    Cancelled,
    Startup {
        stream: Stream,
        message: StartupMessage,
    },
}

/// Serves one client connection to its end. Never panics on input; every
/// failure is reported to this client alone.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, admitted: bool) {
    let _ = tcp.set_nodelay(true);
    // Where this client reached pgward: a held client is told to approve there.
    let local = tcp.local_addr().unwrap_or(shared.config.server.listen);
    let auth_timeout = shared.config.server.auth_timeout();
    let opened = crate::timer::timeout(auth_timeout, open(tcp, &shared)).await;
    let (stream, message) = match opened {
        Ok(Ok(Opening::Startup { stream, message })) => (stream, message),
        Ok(Ok(Opening::Cancelled)) => return,
        Ok(Err((Some(mut conn), err))) => {
            tracing::info!(%peer, "startup refused: {err}");
            conn.send_error(&err).await;
            return;
        }
        Ok(Err((None, err))) => {
            tracing::info!(%peer, "startup failed: {err}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "startup timed out");
            return;
        }
    };
    let mut conn = Conn::new(stream);
    if !admitted {
        conn.send_error(&PgError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        ))
        .await;
        return;
    }
    let ready =
        crate::timer::timeout(auth_timeout, establish(&mut conn, &message, peer, &shared)).await;
    let established = match ready {
        Ok(Ok(Opened::Session(e))) => e,
        Ok(Ok(Opened::Console(identity))) => {
            tracing::info!(%peer, identity = %identity.name, "console session started");
            crate::console::serve(conn, identity, shared).await;
            return;
        }
        Ok(Err(err)) => {
            tracing::info!(%peer, user = message.get("user").unwrap_or(""), "connection refused: {err}");
            record_refusal(&shared, &message, peer, &err);
            conn.send_error(&err).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "authentication timed out");
            conn.send_error(&PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                "canceling authentication due to timeout",
            ))
            .await;
            return;
        }
    };
    let Established {
        identity,
        role,
        upstream,
        registration,
        guard,
        info,
        listed,
    } = *established;
    tracing::info!(%peer, identity = %identity.name, %role, "session started");
    let enforce = shared.enforces_policy();
    let recorder = match &shared.audit {
        Some(log) if enforce => Some(recorder::Recorder::new(log.clone(), info)),
        _ => None,
    };
    let mut core = relay::Core::new(
        enforce.then_some(guard),
        recorder,
        upstream.status,
        shared.config.server.max_message_bytes,
        shared.config.server.max_session_pending,
    );
    // How the server reads the session's text, as it reported at startup.
    core.state.text = text::SessionText::from_startup(&upstream.startup_frames);
    let relay = relay::Relay::new(
        core,
        conn.stream,
        conn.rbuf,
        upstream.conn.stream,
        upstream.conn.rbuf,
    );
    let relay = relay.with_link(relay::Link {
        entry: listed.entry.clone(),
        queue: shared.approvals.clone(),
        timeout: shared.config.approval.timeout(),
        how_to_approve: how_to_approve(&local),
        webhook: shared.webhook.clone(),
    });
    let relay = match token_expiry(&identity, &shared.config.oidc) {
        Some((at, err)) => relay.end_at(at, err),
        None => relay,
    };
    let end = relay
        .run(shared.config.server.idle_timeout(), shared.phase.clone())
        .await;
    drop(registration);
    drop(listed);
    tracing::info!(%peer, identity = %identity.name, "session ended: {end:?}");
}

/// What a held client is told an approver runs.
fn how_to_approve(listen: &SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() {
        "<pgward's host>".to_owned()
    } else {
        listen.ip().to_string()
    };
    format!(
        "an approver runs: psql \"host={host} port={} dbname=pgward\" -c \"APPROVE {{id}}\"",
        listen.port()
    )
}

/// When a token-signed session ends, and what the client is told then.
fn token_expiry(
    identity: &Identity,
    config: &crate::config::OidcConfig,
) -> Option<(tokio::time::Instant, PgError)> {
    let token = identity.token.as_ref()?;
    let grace = config.expiry_grace_secs;
    let err = PgError::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        format!(
            "pgward: the OIDC token of identity \"{}\" expired; sign in again with a new token",
            identity.name
        ),
    )
    .with_detail(format!(
        "the token expired at {} (exp {}); the issuer's leeway_secs = {}, oidc.expiry_grace_secs = {grace}",
        crate::auth::oidc::utc(token.expires_at),
        token.expires_at,
        token.leeway
    ));
    Some((
        token_deadline(token.expires_at, token.leeway.saturating_add(grace)),
        err,
    ))
}

/// The runtime instant a token's `exp` (Unix seconds) plus grace falls on.
fn token_deadline(exp: u64, grace: u64) -> tokio::time::Instant {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let end = std::time::Duration::from_secs(exp.saturating_add(grace));
    tokio::time::Instant::now() + end.saturating_sub(now_unix)
}

type OpenError = (Option<Conn>, PgError);

/// Reads first packets until a StartupMessage, upgrading to TLS on the way.
async fn open(tcp: TcpStream, shared: &Shared) -> Result<Opening, OpenError> {
    let protocol = |m: String| PgError::fatal(sqlstate::PROTOCOL_VIOLATION, m);
    let mut stream = Stream::Plain(tcp);
    // PostgreSQL 17 direct TLS: the first byte is a TLS handshake record.
    let mut first = [0u8; 1];
    let peeked = match &stream {
        Stream::Plain(tcp) => tcp.peek(&mut first).await,
        _ => Ok(0),
    };
    if let Ok(1) = peeked {
        if first[0] == 0x16 {
            let Some(tls) = shared.tls.as_ref() else {
                return Err((
                    None,
                    protocol("direct TLS attempted, but TLS is off".into()),
                ));
            };
            stream = accept_tls(stream, tls, true).await?;
        }
    }
    loop {
        let mut header = [0u8; 4];
        if stream.read_exact(&mut header).await.is_err() {
            return Err((None, protocol("incomplete startup packet".into())));
        }
        let len = match startup::packet_len(header) {
            Ok(len) => len,
            Err(e) => return Err((Some(Conn::new(stream)), protocol(e.to_string()))),
        };
        let mut body = vec![0u8; len - 4];
        if stream.read_exact(&mut body).await.is_err() {
            return Err((None, protocol("incomplete startup packet".into())));
        }
        match startup::parse(&body) {
            Err(e) => {
                let code = match e {
                    startup::StartupError::UnsupportedProtocol { .. } => {
                        sqlstate::FEATURE_NOT_SUPPORTED
                    }
                    _ => sqlstate::PROTOCOL_VIOLATION,
                };
                return Err((Some(Conn::new(stream)), PgError::fatal(code, e.to_string())));
            }
            Ok(StartupPacket::Ssl) => {
                let offer = match (&shared.tls, &stream) {
                    (Some(_), Stream::Plain(_)) if shared.config.tls.mode != TlsMode::Off => true,
                    (_, Stream::Plain(_)) => false,
                    _ => {
                        return Err((
                            Some(Conn::new(stream)),
                            protocol("SSLRequest on an encrypted connection".into()),
                        ))
                    }
                };
                let answer = if offer { b"S" } else { b"N" };
                if stream.write_all(answer).await.is_err() {
                    return Err((None, protocol("client went away".into())));
                }
                if offer {
                    if let Some(tls) = shared.tls.as_ref() {
                        stream = accept_tls(stream, tls, false).await?;
                    }
                }
            }
            Ok(StartupPacket::GssEnc) => {
                if stream.write_all(b"N").await.is_err() {
                    return Err((None, protocol("client went away".into())));
                }
            }
            Ok(StartupPacket::Cancel {
                process_id,
                secret_key,
            }) => {
                let key = BackendKey {
                    process_id,
                    secret_key,
                };
                match shared.cancels.find(key) {
                    // A statement held for approval has not reached the
                    // server: the session withdraws it.
                    Some((_, control)) if control.is_holding() => {
                        control.post(registry::Command::Cancel);
                    }
                    Some((up, _)) => {
                        if let Err(e) = shared.upstream.cancel(up.process_id, up.secret_key).await {
                            tracing::warn!("forwarding a cancel request failed: {e}");
                        }
                    }
                    None => tracing::debug!("cancel request with an unknown key ignored"),
                }
                return Ok(Opening::Cancelled);
            }
            Ok(StartupPacket::Startup(message)) => {
                return Ok(Opening::Startup { stream, message });
            }
        }
    }
}

async fn accept_tls(
    stream: Stream,
    tls: &crate::tls::ServerTls,
    direct: bool,
) -> Result<Stream, OpenError> {
    let Stream::Plain(tcp) = stream else {
        return Err((
            None,
            PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "TLS inside TLS"),
        ));
    };
    let tls_stream = tls.acceptor.accept(tcp).await.map_err(|e| {
        (
            None,
            PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("TLS handshake failed: {e}"),
            ),
        )
    })?;
    let alpn = tls_stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let stream = Stream::ServerTls(Box::new(tls_stream));
    if direct && alpn.as_deref() != Some(crate::tls::ALPN_POSTGRESQL) {
        // PostgreSQL requires ALPN on direct TLS, so a TLS connection meant
        // for another protocol cannot be confused with ours.
        return Err((
            Some(Conn::new(stream)),
            PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "received direct SSL connection request without ALPN protocol negotiation extension",
            ),
        ));
    }
    Ok(stream)
}

/// What a signed-in client gets: a session relayed upstream, or the
/// admin console (database `pgward`).
enum Opened {
    Session(Box<Established>),
    Console(Identity),
}

struct Established {
    identity: Identity,
    role: String,
    upstream: crate::upstream::UpstreamConn,
    registration: crate::cancel::Registration,
    guard: guard::Guard,
    info: recorder::SessionInfo,
    listed: registry::Listed,
}

/// Records a connection that did not become a session.
fn record_refusal(shared: &Shared, message: &StartupMessage, peer: SocketAddr, err: &PgError) {
    let Some(log) = &shared.audit else {
        return;
    };
    use crate::audit::event::text;
    let mut e =
        crate::audit::Event::new(crate::audit::Kind::SessionRefused, crate::audit::now_us());
    e.identity = message.get("user").map(Into::into);
    e.database = message.get("database").map(Into::into);
    e.application_name = message.get("application_name").map(Into::into);
    e.client_addr = text(peer.to_string());
    e.sqlstate = text(err.code.as_ref());
    e.error_message = text(err.message.as_str());
    log.record(e);
}

/// Authenticates the client, connects upstream and sends the client what a
/// PostgreSQL server sends before its first ReadyForQuery.
async fn establish(
    conn: &mut Conn,
    message: &StartupMessage,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<Opened, PgError> {
    let tls = conn.stream.is_tls();
    if shared.config.tls.mode == TlsMode::Required && !tls {
        return Err(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "pgward accepts only TLS connections",
        )
        .with_hint("connect with sslmode=require (tls.mode = \"required\" in pgward.toml)"));
    }
    let unsupported: Vec<&str> = message
        .params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if message.minor > 0 || !unsupported.is_empty() {
        negotiate_protocol_version(&mut conn.wbuf, 0, &unsupported);
    }
    let user = message
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
    if let Some(r) = message.get("replication") {
        if !matches!(
            r.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        ) {
            return Err(PgError::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "pgward does not relay replication connections",
            ));
        }
    }
    let end_point = match &conn.stream {
        Stream::ServerTls(_) => shared.tls.as_ref().map(|t| t.end_point.clone()),
        _ => None,
    };
    // Declared identities sign in with SCRAM; any other name, when OIDC
    // is configured, with a token.
    let rules = shared.rules();
    let identity = match &shared.oidc {
        Some(oidc) if !rules.identities.contains_key(user) => {
            auth::token_sign_in(conn, user, oidc, &rules, peer.ip().is_loopback()).await?
        }
        _ => auth::authenticate(conn, user, &rules, end_point, &shared.instance_secret).await?,
    };
    drop(rules);
    if message.get("database") == Some(crate::console::DATABASE) {
        crate::console::admit(shared, &identity)?;
        return Ok(Opened::Console(identity));
    }

    let database = shared
        .upstream
        .pinned_database
        .clone()
        .or_else(|| {
            message
                .get("database")
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
        })
        .or_else(|| shared.upstream.target.database.clone())
        .unwrap_or_else(|| user.to_owned());
    // The role, and the settings the client asks for: judged like SETs,
    // so `options=-c default_transaction_read_only=off` is no way around.
    let denied =
        |m: String| PgError::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, format!("pgward: {m}"));
    let startup = settings::from_startup(&message.params).map_err(denied)?;
    // PostgreSQL matches `user`, `database`, `options` and `replication`
    // exactly; any other key (`DATABASE`, `-c USER=x` in options) is a
    // setting name, and no setting has these names. Lower-cased, they would
    // reach the upstream startup packet as the real keys.
    if let Some((name, _)) = startup.settings.iter().find(|(n, _)| is_reserved_key(n)) {
        let sent = message
            .params
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| k.eq_ignore_ascii_case(name))
            .unwrap_or(name.as_str());
        return Err(PgError::fatal(
            sqlstate::UNDEFINED_OBJECT,
            format!("unrecognized configuration parameter \"{sent}\""),
        ));
    }
    let role = shared
        .rules()
        .session_role(&identity, startup.role.as_deref())
        .map_err(denied)?;
    for (name, value) in &startup.settings {
        let change = SettingChange::set(name.clone(), Some(value.clone()), false);
        if let Err(r) = settings::check(&change, &role) {
            return Err(denied(format!(
                "startup setting {name}={value} refused for role \"{}\": {} (rule: {})",
                role.name, r.why, r.rule
            )));
        }
    }
    // The role's own session settings go last, so they win.
    let mut params = startup.settings;
    for (name, value) in &role.session {
        params.retain(|(n, _)| n != name);
        params.push((name.clone(), value.clone()));
    }
    let upstream_target = shared.upstream_for(&role);
    let upstream = upstream_target
        .connect(&database, &params)
        .await
        .map_err(|e| upstream_error_for_client(e, peer))?;
    let catalog = shared.catalogs.slot(&shared.upstream, &database).await;
    let guard = guard::Guard::new(
        shared.guard_context(),
        identity.clone(),
        Some(role.name.clone()),
        catalog,
    );
    let control = Arc::new(registry::Control::default());
    let registration = shared.cancels.register(
        BackendKey {
            process_id: upstream.process_id,
            secret_key: upstream.secret_key,
        },
        control.clone(),
    );
    conn.wbuf.extend_from_slice(&upstream.startup_frames);
    messages::backend_key_data(
        &mut conn.wbuf,
        registration.key.process_id,
        registration.key.secret_key,
    );
    messages::ready_for_query(&mut conn.wbuf, upstream.status);
    conn.flush().await.map_err(|e| {
        PgError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("client went away: {e}"),
        )
    })?;
    use crate::audit::event::text;
    let info = recorder::SessionInfo {
        session_id: text(format!("{:016x}", rand::random::<u64>())),
        identity: text(identity.name.as_str()),
        role: text(role.name.as_str()),
        database: text(database.as_str()),
        auth_method: text(identity.method.as_str()),
        client_addr: text(peer.to_string()),
        application_name: message.get("application_name").map(Into::into),
        tls,
        upstream_user: text(upstream_target.target.user.as_str()),
        detail: identity.token.as_ref().map(|t| {
            format!(
                "issuer {}; token expires {}",
                t.issuer,
                crate::auth::oidc::utc(t.expires_at)
            )
            .into()
        }),
    };
    let listed = shared.sessions.add(
        registry::NewSession {
            audit_id: info.session_id.as_deref().unwrap_or_default().to_owned(),
            identity: identity.name.clone(),
            role: role.name.clone(),
            database: database.clone(),
            client: peer,
            application_name: message.get("application_name").unwrap_or("").to_owned(),
            backend_pid: registration.key.process_id,
        },
        control,
    );
    Ok(Opened::Session(Box::new(Established {
        identity,
        role: role.name.clone(),
        upstream,
        registration,
        guard,
        info,
        listed,
    })))
}

/// Startup keys PostgreSQL reads as something other than a setting, in
/// the lower case `settings::from_startup` gives setting names.
fn is_reserved_key(name: &str) -> bool {
    matches!(name, "user" | "database" | "options" | "replication") || name.starts_with("_pq_.")
}

/// What the client learns when pgward cannot open its upstream session.
/// The server's own refusal (no such database, too many connections) is
/// relayed as is; a refusal of pgward's credentials is not the client's
/// business beyond "pgward could not connect".
fn upstream_error_for_client(e: UpstreamError, peer: SocketAddr) -> PgError {
    tracing::warn!(%peer, "upstream connection failed: {e}");
    match e {
        UpstreamError::Server { code, message, .. } if !code.starts_with("28") => PgError {
            code: code.into(),
            ..PgError::fatal(sqlstate::CONNECTION_FAILURE, message)
        },
        UpstreamError::Server { .. } | UpstreamError::Auth(_) => PgError::fatal(
            sqlstate::CONNECTION_REJECTED,
            "pgward could not authenticate to the upstream server",
        )
        .with_hint("the pgward operator should check upstream.url and the upstream password"),
        other => PgError::fatal(
            sqlstate::CONNECTION_REJECTED,
            "pgward could not connect to the upstream server",
        )
        .with_detail(other.to_string()),
    }
}
