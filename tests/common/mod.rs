//! Test harness: a throwaway PostgreSQL (localpg) with pgward in front of it
//! on a free port, the example identities, and helpers for real clients.
#![allow(dead_code)]

pub mod corpus;
pub mod idp;
pub mod webs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgward::config::Config;
use pgward::localpg::{LocalPg, Options};
use pgward::server::Shared;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ALICE: (&str, &str) = ("alice", "alice-demo-password");
pub const BOB: (&str, &str) = ("bob", "bob-demo-password");
/// The example DBA: every class allowed (the identity for tests that are not about policy).
pub const DANA: (&str, &str) = ("dana", "dana-demo-password");
/// The example AI agent: read-only, restricted tables.
pub const AGENT: (&str, &str) = ("agent", "agent-demo-password");

pub struct Harness {
    pub pg: LocalPg,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// How to set up a harness.
#[derive(Default)]
pub struct Setup {
    /// Extra TOML for [server] (e.g. "max_connections = 2").
    pub server: String,
    /// Extra TOML for [upstream] (e.g. "sslmode = \"require\"").
    pub upstream: String,
    /// Extra TOML for [audit] (e.g. "record_parameters = true").
    pub audit: String,
    /// Whole [tls] section; when empty, TLS is optional with a fresh cert.
    pub tls: Option<String>,
    /// Upstream user instead of the superuser (its password in `upstream_password`).
    pub upstream_user: Option<String>,
    pub upstream_password: Option<String>,
    pub pg: Options,
    /// SQL run as superuser before pgward starts.
    pub setup_sql: Vec<String>,
    /// Files (name, contents) written beside pgward.toml.
    pub files: Vec<(String, String)>,
    /// Rules instead of the example rules (which are used without their
    /// `upstream_user`s).
    pub rules: Option<pgward::rules::Rules>,
    /// More TOML at the end of pgward.toml (e.g. an [oidc] section).
    pub extra: String,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Setup::default()).await
    }

    /// pgward with `rules` in front of a database holding the demo's
    /// sample schema (customers, orders, api_keys), loaded before it starts.
    pub async fn with_sample(rules: pgward::rules::Rules) -> Harness {
        Harness::start_with(Setup {
            rules: Some(rules),
            setup_sql: vec![pgward::demo::SAMPLE_SCHEMA.into()],
            ..Setup::default()
        })
        .await
    }

    pub async fn start_with(setup: Setup) -> Harness {
        let pg_opts = setup.pg.clone();
        let pg = tokio::task::spawn_blocking(move || LocalPg::start_with(pg_opts))
            .await
            .unwrap()
            .expect("start localpg");
        for sql in &setup.setup_sql {
            pg.psql("postgres", sql).expect("setup sql");
        }
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pgward::tls::self_signed().unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        for (name, text) in &setup.files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let password = setup
            .upstream_password
            .clone()
            .unwrap_or(pg.password.clone());
        std::fs::write(dir.path().join("upstream-password"), password).unwrap();
        let user = setup.upstream_user.clone().unwrap_or(pg.superuser.clone());
        let tls = setup.tls.clone().unwrap_or_else(|| {
            "mode = \"optional\"\ncert = \"cert.pem\"\nkey = \"key.pem\"".into()
        });
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n\n[tls]\n{tls}\n\n[upstream]\nurl = \"postgres://{user}@127.0.0.1:{}/postgres\"\npassword_file = \"upstream-password\"\n{}\n\n[audit]\ninstance = \"test\"\n{}\n\n{}\n",
            setup.server, pg.port, setup.upstream, setup.audit, setup.extra
        );
        let path = dir.path().join("pgward.toml");
        std::fs::write(&path, toml).unwrap();
        let config = Config::load(&path).expect("config");
        let rules = match setup.rules {
            Some(r) => r,
            // The test clusters have no example users: every role
            // connects as the harness's upstream user (tests/demo.rs runs
            // the example roles as their own users). Statements that need
            // approval are refused, as without an approver; tests of the
            // approval queue pass the example rules as they are.
            None => pgward::demo::example_rules()
                .unwrap()
                .without_upstream_users()
                .without_approvers(),
        };
        let shared = Shared::new(config, rules).unwrap();
        shared.start_workers().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(pgward::server::run(listener, shared.clone(), async {
            let _ = stopped.await;
        }));
        Harness {
            pg,
            addr,
            shared,
            dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Everything audited so far, from the Parquet files, in chain order.
    pub fn audit_events(&self) -> Vec<pgward::audit::Event> {
        let log = self.shared.audit.as_ref().expect("audit is on");
        assert!(
            log.rotate_now(Duration::from_secs(20)),
            "the audit writer did not rotate"
        );
        let dir = self.dir.path().join("audit");
        let mut events = pgward::audit::files::read_all(&dir).unwrap();
        events.sort_by_key(|e| e.seq);
        events
    }

    /// A libpq connection string for pgward.
    pub fn conninfo(&self, (user, password): (&str, &str)) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=postgres sslmode=disable",
            self.addr.port()
        )
    }

    /// Whether an error is pgward's denial (42501 from pgward, or a
    /// statement pgward's parser refused and the server's parses).
    pub fn is_denial(e: &tokio_postgres::Error) -> bool {
        e.as_db_error().is_some_and(|d| {
            (d.code().code() == "42501" && d.message().starts_with("pgward"))
                || (d.code().code() == "42601" && d.hint().is_some_and(|h| h.contains("pgward")))
        })
    }

    /// Whether an error is the server's raw parser rejecting the text
    /// (which is also what a client gets for text pgward's parser refuses:
    /// the server's own syntax error).
    pub fn is_syntax_error(e: &tokio_postgres::Error) -> bool {
        e.as_db_error().is_some_and(|d| {
            d.code().code() == "42601"
                && matches!(d.routine(), Some("scanner_yyerror" | "base_yyerror"))
        })
    }

    pub async fn connect(&self, who: (&str, &str)) -> tokio_postgres::Client {
        self.try_connect(who).await.expect("connect through pgward")
    }

    pub async fn try_connect(
        &self,
        who: (&str, &str),
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.conninfo(who), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// A direct connection to the upstream, bypassing pgward.
    pub async fn direct(&self) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.pg.conninfo("postgres"), tokio_postgres::NoTls)
                .await
                .expect("direct connect");
        tokio::spawn(conn);
        client
    }

    /// Runs a client program (psql, pgbench) and returns (status ok, stdout, stderr).
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, String, String) {
        let path = pgward::localpg::find_program(program).unwrap_or_else(|| PathBuf::from(program));
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .env_remove("PGPASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
            .await
            .expect("program timed out")
            .expect("run program");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// psql through pgward as `who`.
    pub async fn psql(&self, who: (&str, &str), args: &[&str]) -> (bool, String, String) {
        let conn = self.conninfo(who);
        let mut all = vec!["-X", "-v", "ON_ERROR_STOP=1", "-d", conn.as_str()];
        all.extend_from_slice(args);
        self.run("psql", &all, &[]).await
    }

    /// psql as `who`, unaligned and tuples only, without stopping at
    /// errors, with extra environment (PGOPTIONS, say).
    pub async fn psql_env(
        &self,
        who: (&str, &str),
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, String, String) {
        let conn = self.conninfo(who);
        let mut all = vec!["-X", "-A", "-t", "-d", conn.as_str()];
        all.extend_from_slice(args);
        self.run("psql", &all, env).await
    }

    /// psql on pgward's admin console (`dbname=pgward`) as `who`, rows
    /// unaligned with `|` between fields: (ok, stdout, stderr).
    pub async fn console(&self, who: (&str, &str), args: &[&str]) -> (bool, String, String) {
        let conn = self
            .conninfo(who)
            .replace("dbname=postgres", "dbname=pgward");
        let mut all = vec![
            "-X",
            "-A",
            "-t",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conn.as_str(),
        ];
        all.extend_from_slice(args);
        self.run("psql", &all, &[]).await
    }

    /// Waits up to 10 s until dana sees `n` pending approval requests on
    /// the console: (id, statement) of each, oldest first.
    pub async fn pending_requests(&self, n: usize) -> Vec<(u64, String)> {
        for _ in 0..200 {
            let (ok, out, err) = self.console(DANA, &["-c", "SHOW PENDING"]).await;
            assert!(ok, "{err}");
            let pending: Vec<(u64, String)> = out
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split('|').collect();
                    Some((f.first()?.parse().ok()?, f.get(7)?.to_string()))
                })
                .collect();
            if pending.len() >= n {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} requests never became pending");
    }

    /// Whether the upstream holds a relation of this name (asked directly).
    pub async fn table_exists(&self, name: &str) -> bool {
        self.direct()
            .await
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .unwrap()
            .get(0)
    }

    /// Stops pgward (as on SIGTERM) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), h).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

/// The SQLSTATE of a server error (or why it is not one).
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("not a server error: {e}"))
}

/// One protocol message: its tag, length and body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub async fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Reads messages up to and including the next ReadyForQuery.
pub async fn until_ready(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), read_msg(s))
            .await
            .expect("an answer within 10 s");
        let done = m.0 == b'Z';
        out.push(m);
        if done {
            return out;
        }
    }
}

/// Signs in over a raw socket with SCRAM and waits for ReadyForQuery.
pub async fn login(h: &Harness, (user, password): (&str, &str)) -> TcpStream {
    login_with(h, &[("user", user), ("database", "postgres")], password)
        .await
        .unwrap_or_else(|(code, msg)| panic!("login failed: {code} {msg}"))
}

/// Sends a StartupMessage of `params` over a raw socket, signs in with
/// SCRAM, and waits for ReadyForQuery; or the error's (code, message).
pub async fn login_with(
    h: &Harness,
    params: &[(&str, &str)],
    password: &str,
) -> Result<TcpStream, (String, String)> {
    login_keyed(h, params, password).await.map(|(s, _)| s)
}

/// `login_with`, also returning the BackendKeyData (pid, secret) the
/// client was given.
pub async fn login_keyed(
    h: &Harness,
    params: &[(&str, &str)],
    password: &str,
) -> Result<(TcpStream, (i32, i32)), (String, String)> {
    let mut key = (0, 0);
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut b = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    loop {
        let (tag, body) = read_msg(&mut s).await;
        let mut out = BytesMut::new();
        if tag == b'Z' {
            return Ok((s, key));
        }
        if tag == b'K' {
            let word =
                |i: usize| i32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
            key = (word(0), word(4));
        }
        if tag == b'E' {
            return Err((error_field(&body, b'C'), error_field(&body, b'M')));
        }
        let code = (tag == b'R').then(|| i32::from_be_bytes([body[0], body[1], body[2], body[3]]));
        match (tag, code.unwrap_or(-1)) {
            (b'R', 10) => {
                frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap()
            }
            (b'R', 11) => {
                scram.update(&body[4..]).unwrap();
                frontend::sasl_response(scram.message(), &mut out).unwrap();
            }
            (b'R', 12) => scram.finish(&body[4..]).unwrap(),
            _ => {}
        }
        s.write_all(&out).await.unwrap();
    }
}

/// One field of an ErrorResponse body ('C' the code, 'M' the message).
pub fn error_field(body: &[u8], field: u8) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&field))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// Connects with tokio-postgres to a pgward that is still starting (a
/// spawned binary), retrying for up to ten seconds.
pub async fn connect_when_up(info: &str) -> tokio_postgres::Client {
    for _ in 0..100 {
        if let Ok((c, conn)) = tokio_postgres::connect(info, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pgward did not come up for {info}");
}

/// The single bigint a query returns (`SELECT count(*) FROM t`).
pub async fn one_number(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Reads a ~20 MB COPY result slowly, pausing after each MiB so that the
/// socket toward the client fills, pgward's queue reaches its limit and it
/// stops reading the server, then resumes when the client reads again.
/// Meanwhile another session keeps answering. Checks every row arrives.
pub async fn slow_reader_gets_every_row(h: &Harness, who: (&str, &str)) {
    use futures_util::StreamExt;
    const ROWS: u64 = 20_000;
    let c = h.connect(who).await;
    let other = h.connect(who).await;
    let stream = c
        .copy_out("copy (select g, repeat('x', 1000) from generate_series(1, 20000) g) to stdout")
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let (mut rows, mut sum, mut unpaused, mut pauses) = (0u64, 0u64, 0usize, 0u32);
    let mut data = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(chunk) = tokio::time::timeout_at(deadline, stream.next())
        .await
        .expect("the whole result within a minute")
    {
        let chunk = chunk.unwrap();
        unpaused += chunk.len();
        data.extend_from_slice(&chunk);
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let line = std::str::from_utf8(&data[..end]).unwrap().to_owned();
            data.drain(..=end);
            let (id, payload) = line.split_once('\t').expect("two columns");
            assert_eq!(payload.len(), 1000, "row {id}");
            sum += id.parse::<u64>().unwrap();
            rows += 1;
        }
        if unpaused >= 1 << 20 {
            unpaused = 0;
            pauses += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if pauses % 4 == 0 {
                let answer =
                    tokio::time::timeout(Duration::from_secs(5), other.simple_query("select 1"))
                        .await
                        .expect("another session answers while this one is stalled");
                assert!(answer.is_ok());
            }
        }
    }
    assert!(data.is_empty());
    assert_eq!((rows, sum), (ROWS, ROWS * (ROWS + 1) / 2));
    assert!(pauses >= 15, "{pauses} pauses");
    assert_eq!(one_number(&c, "select 42::bigint").await, 42);
}

/// A copy of the repository's `rules/` at `dir/rules` without the example
/// roles' `upstream_user` lines (test clusters do not have those users, so
/// every role connects as the config's upstream user), for a pgward binary
/// to serve. Returns the copy's path.
pub fn example_rules_dir(dir: &std::path::Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("upstream_user"))
                .collect();
            std::fs::write(rules.join(path.file_name().unwrap()), kept.join("\n")).unwrap();
        }
    }
    rules
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A harness whose `[server]` section is `server`.
pub async fn start_server(server: &str) -> Harness {
    Harness::start_with(Setup {
        server: server.into(),
        ..Setup::default()
    })
    .await
}

/// A Python virtualenv under the target directory (`CARGO_TARGET_TMPDIR`)
/// holding `packages` from PyPI, made once and kept between test runs: a
/// marker file in the venv records the package list it was made with, so a
/// changed list installs again. Returns the venv's `python`, or why it
/// could not be made (no python3, no venv module, no PyPI).
pub fn python_venv(name: &str, packages: &[&str]) -> Result<PathBuf, String> {
    // Tests of one binary run in parallel: one at a time makes venvs.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = venv.join("bin/python");
    let marker = venv.join(".pgward-packages");
    let wanted = packages.join("\n");
    if python.exists() && std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(python);
    }
    let run = |cmd: &mut std::process::Command, what: &str| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if !python.exists() {
        run(
            std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv),
            "python3 -m venv",
        )?;
    }
    run(
        std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
        &format!("pip install {}", packages.join(" ")),
    )?;
    std::fs::write(&marker, wanted).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(python)
}
