//! Connecting to the upstream PostgreSQL with credentials only pgward holds:
//! TLS negotiation, startup, and trust/cleartext/md5/SCRAM authentication.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::SslMode;
use crate::net::{Conn, ReadError, Stream};
use crate::protocol::frame::POSTGRES_MAX_MESSAGE;
use crate::protocol::messages::{parse_error_fields, Reader};

/// Where and as whom pgward connects upstream (from `upstream.url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: Option<String>,
}

impl UpstreamTarget {
    pub fn from_url(text: &str) -> Result<UpstreamTarget, String> {
        let url = url::Url::parse(text)
            .map_err(|e| format!("not a URL ({e}); expected postgres://user@host:port/db"))?;
        if url.scheme() != "postgres" && url.scheme() != "postgresql" {
            return Err(format!(
                "scheme {:?} is not postgres://; expected postgres://user@host:port/db",
                url.scheme()
            ));
        }
        if url.password().is_some() {
            return Err(
                "contains a password; put it in upstream.password_env or upstream.password_file so it never shows in argv or logs".into(),
            );
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("has no host; expected postgres://user@host:port/db")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let user = percent_decode(url.username());
        if user.is_empty() {
            return Err("has no user; expected postgres://user@host:port/db".into());
        }
        let database = url
            .path()
            .strip_prefix('/')
            .filter(|d| !d.is_empty())
            .map(percent_decode);
        Ok(UpstreamTarget {
            host,
            port: url.port().unwrap_or(5432),
            user,
            database,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything needed to open upstream connections; shared by all sessions.
#[derive(Clone)]
pub struct Upstream {
    pub target: UpstreamTarget,
    pub password: Option<String>,
    pub sslmode: SslMode,
    pub tls: Arc<rustls::ClientConfig>,
    pub pinned_database: Option<String>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("target", &self.target)
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

/// Why an upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("upstream {addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("upstream TLS: {0}")]
    Tls(String),
    #[error("upstream authentication: {0}")]
    Auth(String),
    /// The server refused the startup with an ErrorResponse.
    #[error("upstream refused the connection: {severity} {code}: {message}")]
    Server {
        severity: String,
        code: String,
        message: String,
        /// The whole ErrorResponse frame, to relay byte for byte.
        frame: Bytes,
    },
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

/// An authenticated upstream connection, ready for queries.
pub struct UpstreamConn {
    pub conn: Conn,
    pub process_id: i32,
    pub secret_key: i32,
    /// ParameterStatus and NoticeResponse frames the server sent during
    /// startup, raw, to relay to the client.
    pub startup_frames: BytesMut,
    /// The ReadyForQuery status byte.
    pub status: u8,
}

impl UpstreamConn {
    /// Runs one simple query and returns its rows as text (the control
    /// connection's catalog lookups).
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        let proto = |e: io::Error| UpstreamError::Protocol(e.to_string());
        frontend::query(sql, &mut self.conn.wbuf).map_err(proto)?;
        self.conn.flush().await.map_err(proto)?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let (tag, body) = self
                .conn
                .read_frame(POSTGRES_MAX_MESSAGE)
                .await
                .map_err(|e| UpstreamError::Protocol(format!("control query: {e}")))?;
            match tag {
                b'D' => {
                    let mut r = Reader::new(&body);
                    let n = r.i16().unwrap_or(0).max(0) as usize;
                    let mut row = Vec::with_capacity(n);
                    for _ in 0..n {
                        let len = r.i32().unwrap_or(-1);
                        row.push(if len < 0 {
                            None
                        } else {
                            r.take(len as usize)
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        });
                    }
                    rows.push(row);
                }
                b'E' => {
                    let (severity, code, message) = parse_error_fields(&body);
                    failure = Some(UpstreamError::Server {
                        severity,
                        code,
                        message,
                        frame: reframe(tag, &body),
                    });
                }
                b'Z' => break,
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Says goodbye and closes the connection.
    pub async fn close(mut self) {
        self.conn.wbuf.extend_from_slice(b"X\0\0\0\x04");
        let _ = self.conn.flush().await;
        let _ = self.conn.stream.shutdown().await;
    }
}

impl Upstream {
    /// The upstream `[upstream]` describes: its URL, password, TLS.
    pub fn from_config(config: &crate::config::Config) -> Result<Upstream, String> {
        let target = UpstreamTarget::from_url(&config.upstream.url)
            .map_err(|e| format!("upstream.url: {e}"))?;
        Ok(Upstream {
            target,
            password: config.upstream_password()?,
            sslmode: config.upstream.sslmode,
            tls: crate::tls::upstream_client(config.upstream.ca_file.as_deref())?,
            pinned_database: config.upstream.database.clone(),
            connect_timeout: Duration::from_secs(config.upstream.connect_timeout_secs),
        })
    }

    /// The database to open when no client names one (catalog look-ups of
    /// `explain`, the privilege check): the pinned one, else the URL's,
    /// else the one named like the user, as libpq would pick.
    pub fn default_database(&self) -> String {
        self.pinned_database
            .clone()
            .or_else(|| self.target.database.clone())
            .unwrap_or_else(|| self.target.user.clone())
    }

    /// The same server, as another PostgreSQL user (a role's
    /// `upstream_user`).
    pub fn as_user(&self, user: &str, password: Option<String>) -> Upstream {
        let mut u = self.clone();
        u.target.user = user.to_owned();
        u.password = password;
        u
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.target.host, self.target.port)
    }

    async fn open_stream(&self) -> Result<Stream, UpstreamError> {
        let addr = self.addr();
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        if self.sslmode == SslMode::Disable {
            return Ok(Stream::Plain(tcp));
        }
        let mut tcp = tcp;
        let mut req = BytesMut::new();
        frontend::ssl_request(&mut req);
        let answer = async {
            tcp.write_all(&req).await?;
            tcp.read_u8().await
        }
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.clone(),
            source,
        })?;
        match answer {
            b'S' => {
                let name = ServerName::try_from(self.target.host.clone())
                    .map_err(|e| UpstreamError::Tls(format!("bad server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| UpstreamError::Tls(format!("handshake with {addr}: {e}")))?;
                Ok(Stream::ClientTls(Box::new(tls)))
            }
            b'N' if self.sslmode == SslMode::Prefer => Ok(Stream::Plain(tcp)),
            b'N' => Err(UpstreamError::Tls(format!(
                "upstream {addr} does not support TLS, but upstream.sslmode requires it"
            ))),
            other => Err(UpstreamError::Protocol(format!(
                "unexpected answer 0x{other:02x} to SSLRequest"
            ))),
        }
    }

    /// Opens, authenticates and starts a session upstream.
    /// `params` are the client's startup parameters to pass on.
    pub async fn connect(
        &self,
        database: &str,
        params: &[(String, String)],
    ) -> Result<UpstreamConn, UpstreamError> {
        let secs = self.connect_timeout.as_secs();
        crate::timer::timeout(self.connect_timeout, self.connect_inner(database, params))
            .await
            .map_err(|_| UpstreamError::Timeout {
                addr: self.addr(),
                secs,
            })?
    }

    async fn connect_inner(
        &self,
        database: &str,
        params: &[(String, String)],
    ) -> Result<UpstreamConn, UpstreamError> {
        let stream = self.open_stream().await?;
        let end_point = match &stream {
            Stream::ClientTls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| crate::tls::end_point_hash(c)),
            _ => None,
        };
        let mut conn = Conn::new(stream);
        let mut startup: Vec<(&str, &str)> =
            vec![("user", self.target.user.as_str()), ("database", database)];
        startup.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        frontend::startup_message(startup, &mut conn.wbuf)
            .map_err(|e| UpstreamError::Protocol(format!("startup message: {e}")))?;
        conn.flush().await.map_err(|e| self.io_err(e))?;

        let mut scram: Option<ScramSha256> = None;
        let mut key = None;
        let mut startup_frames = BytesMut::new();
        loop {
            let (tag, body) = conn
                .read_frame(POSTGRES_MAX_MESSAGE)
                .await
                .map_err(|e| match e {
                    ReadError::Io(e) => self.io_err(e),
                    other => UpstreamError::Protocol(other.to_string()),
                })?;
            match tag {
                b'R' => {
                    self.answer_auth(&mut conn, &body, &mut scram, end_point.as_deref())
                        .await?
                }
                b'E' => {
                    let (severity, code, message) = parse_error_fields(&body);
                    return Err(UpstreamError::Server {
                        severity,
                        code,
                        message,
                        frame: reframe(tag, &body),
                    });
                }
                b'K' => {
                    let mut r = Reader::new(&body);
                    key = r.i32().zip(r.i32());
                }
                b'S' | b'N' => startup_frames.extend_from_slice(&reframe(tag, &body)),
                b'v' => {} // the server offers an older minor: fine, we spoke 3.0
                b'Z' => {
                    let status = body.first().copied().unwrap_or(b'I');
                    let (process_id, secret_key) = key.ok_or_else(|| {
                        UpstreamError::Protocol("no BackendKeyData before ReadyForQuery".into())
                    })?;
                    return Ok(UpstreamConn {
                        conn,
                        process_id,
                        secret_key,
                        startup_frames,
                        status,
                    });
                }
                other => {
                    return Err(UpstreamError::Protocol(format!(
                        "unexpected message {} during startup",
                        crate::protocol::frame::printable(other)
                    )))
                }
            }
        }
    }

    fn io_err(&self, source: io::Error) -> UpstreamError {
        UpstreamError::Connect {
            addr: self.addr(),
            source,
        }
    }

    fn password(&self, method: &str) -> Result<&str, UpstreamError> {
        self.password.as_deref().ok_or_else(|| {
            UpstreamError::Auth(format!(
                "upstream asks for {method} authentication, but no password is configured (set upstream.password_env or upstream.password_file)"
            ))
        })
    }

    async fn answer_auth(
        &self,
        conn: &mut Conn,
        body: &[u8],
        scram: &mut Option<ScramSha256>,
        end_point: Option<&[u8]>,
    ) -> Result<(), UpstreamError> {
        let mut r = Reader::new(body);
        let code = r
            .i32()
            .ok_or_else(|| UpstreamError::Protocol("short authentication message".into()))?;
        let proto = |e: io::Error| UpstreamError::Protocol(e.to_string());
        match code {
            0 => return Ok(()),
            3 => {
                let pw = self.password("cleartext password")?;
                frontend::password_message(pw.as_bytes(), &mut conn.wbuf).map_err(proto)?;
            }
            5 => {
                let salt: [u8; 4] = r
                    .take(4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| UpstreamError::Protocol("short MD5 salt".into()))?;
                let pw = self.password("md5")?;
                let hash = postgres_protocol::authentication::md5_hash(
                    self.target.user.as_bytes(),
                    pw.as_bytes(),
                    salt,
                );
                frontend::password_message(hash.as_bytes(), &mut conn.wbuf).map_err(proto)?;
            }
            10 => {
                let mut mechanisms = Vec::new();
                while let Some(m) = r.cstr().filter(|m| !m.is_empty()) {
                    mechanisms.push(m);
                }
                let pw = self.password("SCRAM-SHA-256")?;
                let plus = mechanisms.contains(&"SCRAM-SHA-256-PLUS");
                let (mechanism, binding) = match end_point {
                    Some(ep) if plus => (
                        "SCRAM-SHA-256-PLUS",
                        ChannelBinding::tls_server_end_point(ep.to_vec()),
                    ),
                    Some(_) => ("SCRAM-SHA-256", ChannelBinding::unrequested()),
                    None => ("SCRAM-SHA-256", ChannelBinding::unsupported()),
                };
                if !mechanisms.contains(&"SCRAM-SHA-256") && !plus {
                    return Err(UpstreamError::Auth(format!(
                        "upstream offers SASL mechanisms {mechanisms:?}; pgward speaks SCRAM-SHA-256"
                    )));
                }
                let client = ScramSha256::new(pw.as_bytes(), binding);
                frontend::sasl_initial_response(mechanism, client.message(), &mut conn.wbuf)
                    .map_err(proto)?;
                *scram = Some(client);
            }
            11 => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Protocol("SASL continue before start".into()))?;
                client
                    .update(r.rest())
                    .map_err(|e| UpstreamError::Auth(format!("SCRAM: {e}")))?;
                frontend::sasl_response(client.message(), &mut conn.wbuf).map_err(proto)?;
            }
            12 => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Protocol("SASL final before start".into()))?;
                client.finish(r.rest()).map_err(|e| {
                    UpstreamError::Auth(format!("SCRAM: the server's signature is wrong: {e}"))
                })?;
                return Ok(());
            }
            other => {
                return Err(UpstreamError::Auth(format!(
                    "upstream asks for authentication method {other}, which pgward does not speak (trust, password, md5 and SCRAM-SHA-256 are supported)"
                )))
            }
        }
        conn.flush().await.map_err(|e| self.io_err(e))
    }

    /// Sends a CancelRequest for an upstream backend key.
    pub async fn cancel(&self, process_id: i32, secret_key: i32) -> Result<(), UpstreamError> {
        let mut stream = crate::timer::timeout(self.connect_timeout, self.open_stream())
            .await
            .map_err(|_| UpstreamError::Timeout {
                addr: self.addr(),
                secs: self.connect_timeout.as_secs(),
            })??;
        let mut buf = BytesMut::new();
        frontend::cancel_request(process_id, secret_key, &mut buf);
        stream.write_all(&buf).await.map_err(|e| self.io_err(e))?;
        stream.flush().await.map_err(|e| self.io_err(e))?;
        // The server closes the connection when done; wait for that briefly.
        let mut sink = [0u8; 16];
        let _ = crate::timer::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
        Ok(())
    }
}

/// Rebuilds a frame from a type byte and body.
pub fn reframe(tag: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.extend_from_slice(&[tag]);
    b.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    b.extend_from_slice(body);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let t = UpstreamTarget::from_url("postgres://pg%40ward@db.example:6543/app%2Fx").unwrap();
        assert_eq!(t.user, "pg@ward");
        assert_eq!(t.host, "db.example");
        assert_eq!(t.port, 6543);
        assert_eq!(t.database.as_deref(), Some("app/x"));
        let t = UpstreamTarget::from_url("postgresql://u@[::1]").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 5432);
        assert_eq!(t.database, None);
        assert!(UpstreamTarget::from_url("mysql://u@h/db").is_err());
        assert!(UpstreamTarget::from_url("postgres://h/db").is_err());
        let e = UpstreamTarget::from_url("postgres://u:hunter2@h/db").unwrap_err();
        assert!(!e.contains("hunter2"));
    }
}
