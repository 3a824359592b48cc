//! The compatibility suite (issue 27): real clients and ORMs run the same
//! test program twice against a throwaway PostgreSQL, once direct and once
//! through pgward with a role that allows everything, and every test that
//! passes direct must pass through pgward.
//!
//! The programs live in tests/compat/ (python/, node/, java/). Each prints
//! one line per test, `COMPAT ok NAME` or `COMPAT fail NAME ERROR`, and
//! reads where to connect from the usual libpq variables (`PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`) and `COMPAT_MODE`
//! (`direct` or `pgward`). Direct runs sign in as the cluster's superuser,
//! the user pgward connects upstream as; each run has a database of its own.
//!
//! A test that fails through pgward today because a fix has not landed is
//! listed in tests/compat/known-failures.txt (`client test reason`): a
//! listed failure does not fail `cargo test`, a listed test that passes
//! prints a note to remove it, and any other failure through pgward fails.
//! A test that fails direct fails too: the program is wrong.
//!
//! Python packages are installed into venvs under the target directory and
//! Node packages with npm into a directory there, once. Without python3
//! (with venv) or PyPI the Python clients are skipped with a message, except
//! under `CI=true`, where that fails; without Node or Java (and Debian's
//! libpostgresql-jdbc-java) those clients are skipped with a message.
//! `PGWARD_COMPAT_FULL=1` (scripts/compat-full.sh) also runs the slow
//! parts (Django's test runner).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pgward::auth::scram::Verifier;
use pgward::rules::Rules;

/// The identity that allows everything, as pgward's rules can say it.
const ALL: (&str, &str) = ("compat", "compat-password");
/// A read-only identity (reads, session settings, transactions).
const READER: (&str, &str) = ("reader", "reader-password");

/// How long one run of one program may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// SQLAlchemy 2.0 and its companions (psycopg 3, psycopg2, asyncpg, pg8000,
/// Alembic, Django): one venv.
const PY_PACKAGES: &[&str] = &[
    "psycopg[binary]>=3.1",
    "psycopg2-binary",
    "asyncpg",
    "pg8000",
    "sqlalchemy[asyncio]>=2.0,<2.1",
    "alembic",
    "django>=4.2",
];
/// SQLAlchemy 2.1 cannot share a venv with 2.0.
const PY_PACKAGES_SA21: &[&str] = &[
    "psycopg[binary]>=3.1",
    "asyncpg",
    "sqlalchemy[asyncio]>=2.1,<2.2",
    "alembic",
];
const NODE_PACKAGES: &[&str] = &["pg", "pg-copy-streams", "postgres", "sequelize"];
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn full() -> bool {
    std::env::var("PGWARD_COMPAT_FULL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A runtime or package a client needs: its absence skips the client with
/// a message, or fails under CI when `required_in_ci`.
fn need<T>(client: &str, what: Result<T, String>, required_in_ci: bool) -> Option<T> {
    match what {
        Ok(t) => Some(t),
        Err(e) if required_in_ci && in_ci() => {
            panic!("compat {client}: {e} (CI installs it: see .ci/run)")
        }
        Err(e) => {
            println!("compat {client}: SKIPPED: {e}");
            None
        }
    }
}

fn python(client: &str) -> Option<PathBuf> {
    need(
        client,
        python_venv("pgward-compat-venv", PY_PACKAGES)
            .map_err(|e| format!("{e} (needs python3 with venv and pip, and PyPI)")),
        true,
    )
}

fn python_sa21(client: &str) -> Option<PathBuf> {
    need(
        client,
        python_venv("pgward-compat-venv-sa21", PY_PACKAGES_SA21)
            .map_err(|e| format!("{e} (needs python3 with venv and pip, and PyPI)")),
        true,
    )
}

/// Node packages installed with npm under the target directory, once;
/// the directory to give as NODE_PATH.
fn node_modules(client: &str) -> Option<PathBuf> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let made = (|| {
        let version = Command::new("node")
            .arg("--version")
            .output()
            .map_err(|e| format!("node is not installed ({e})"))?;
        if !version.status.success() {
            return Err("node does not run".to_owned());
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pgward-compat-node");
        let marker = dir.join(".pgward-packages");
        let wanted = NODE_PACKAGES.join("\n");
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
            return Ok(dir.join("node_modules"));
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(
            dir.join("package.json"),
            "{\"name\": \"pgward-compat\", \"private\": true}\n",
        )
        .map_err(|e| format!("package.json: {e}"))?;
        let out = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund"])
            .args(NODE_PACKAGES)
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm is not installed ({e})"))?;
        if !out.status.success() {
            return Err(format!(
                "npm install failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::fs::write(&marker, wanted).map_err(|e| format!("marker: {e}"))?;
        Ok(dir.join("node_modules"))
    })();
    need(client, made, false)
}

fn java(client: &str) -> Option<PathBuf> {
    let found = (|| {
        let out = Command::new("java")
            .arg("-version")
            .output()
            .map_err(|e| format!("java is not installed ({e}); pgjdbc needs Java 11 or newer"))?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let major: u32 = text
            .split('"')
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if major < 11 {
            return Err(format!("java is too old for source-file mode: {text}"));
        }
        let jar = PathBuf::from(JDBC_JAR);
        if !jar.exists() {
            return Err(format!(
                "{JDBC_JAR} is missing (Debian: apt-get install libpostgresql-jdbc-java)"
            ));
        }
        Ok(jar)
    })();
    need(client, found, false)
}

/// The rules: `compat` may do everything, `reader` only read.
fn rules_text() -> String {
    let dangerous: Vec<String> = pgward::policy::builtins::dangerous_names()
        .iter()
        .map(|d| format!("{d:?}"))
        .collect();
    format!(
        "[role.all]\nallow = [\"*\"]\nsettings = [\"*\"]\nallow_dangerous = [{}]\n\n\
         [role.reader]\nallow = [\"read\", \"session\", \"transaction\", \"copy_out\"]\n\n\
         [[identity]]\nname = \"{}\"\nscram = \"{}\"\nroles = [\"all\"]\n\n\
         [[identity]]\nname = \"{}\"\nscram = \"{}\"\nroles = [\"reader\"]\n",
        dangerous.join(", "),
        ALL.0,
        Verifier::generate(ALL.1, 4096),
        READER.0,
        Verifier::generate(READER.1, 4096),
    )
}

/// The same rules for the harness's own (idle) in-process pgward.
fn rules() -> Rules {
    let mut rules = Rules::default();
    rules
        .add_file(Path::new("compat-rules.toml"), &rules_text())
        .expect("compat rules");
    rules.validate().expect("compat rules are valid");
    rules
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Direct,
    Pgward,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Pgward => "pgward",
        }
    }
}

/// A cluster with pgward in front, and a database per client and mode.
/// pgward runs as a child process (the `pgward` binary, `serve`): a client
/// that crashes it fails its own tests, not the whole test binary.
struct Env {
    h: Harness,
    pgward: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Env {
    async fn start() -> Env {
        let h = Harness::start_with(Setup {
            rules: Some(rules()),
            ..Setup::default()
        })
        .await;
        let dir = h.dir.path();
        let rules_dir = dir.join("compat-rules");
        std::fs::create_dir_all(&rules_dir).expect("rules dir");
        std::fs::write(rules_dir.join("compat.toml"), rules_text()).expect("rules file");
        let port = free_port();
        let config = std::fs::read_to_string(dir.join("pgward.toml"))
            .expect("the harness's config")
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            .replace("[audit]\n", "[audit]\ndir = \"child-audit\"\n")
            + &format!("\n[rules]\ndir = \"{}\"\n", rules_dir.display());
        let config_path = dir.join("compat.toml");
        std::fs::write(&config_path, config).expect("config");
        let log = dir.join("pgward.log");
        let pgward = Command::new(env!("CARGO_BIN_EXE_pgward"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start pgward");
        let info = format!(
            "host=127.0.0.1 port={port} user={} password={} dbname=postgres sslmode=disable",
            ALL.0, ALL.1
        );
        let mut env = Env {
            h,
            pgward,
            port,
            log,
        };
        for _ in 0..150 {
            if tokio_postgres::connect(&info, tokio_postgres::NoTls)
                .await
                .is_ok()
            {
                return env;
            }
            if let Ok(Some(status)) = env.pgward.try_wait() {
                panic!("pgward exited ({status}): {}", env.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pgward did not come up: {}", env.log_tail());
    }

    fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 15)
    }

    /// Whether pgward is still running; else how it ended.
    fn pgward_exited(&mut self) -> Option<String> {
        match self.pgward.try_wait() {
            Ok(Some(status)) => Some(format!("{status}; its log ends:\n{}", self.log_tail())),
            _ => None,
        }
    }

    /// A fresh database for one run.
    fn database(&self, client: &str, mode: Mode) -> String {
        let db = format!("{}_{}", client.replace(['-', '.'], "_"), mode.name());
        self.h
            .pg
            .psql("postgres", &format!("CREATE DATABASE {db}"))
            .expect("create the run's database");
        db
    }

    /// The libpq environment of a run.
    fn vars(&self, mode: Mode, db: &str) -> Vec<(String, String)> {
        let (port, user, password, ro_user, ro_password) = match mode {
            Mode::Direct => (
                self.h.pg.port,
                self.h.pg.superuser.clone(),
                self.h.pg.password.clone(),
                self.h.pg.superuser.clone(),
                self.h.pg.password.clone(),
            ),
            Mode::Pgward => (
                self.port,
                ALL.0.to_owned(),
                ALL.1.to_owned(),
                READER.0.to_owned(),
                READER.1.to_owned(),
            ),
        };
        [
            ("PGHOST", "127.0.0.1".to_owned()),
            ("PGPORT", port.to_string()),
            ("PGUSER", user),
            ("PGPASSWORD", password),
            ("PGDATABASE", db.to_owned()),
            ("PGSSLMODE", "disable".to_owned()),
            ("COMPAT_MODE", mode.name().to_owned()),
            ("COMPAT_RO_USER", ro_user),
            ("COMPAT_RO_PASSWORD", ro_password),
            ("COMPAT_FULL", if full() { "1" } else { "0" }.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.pgward.kill();
        let _ = self.pgward.wait();
    }
}

/// What one run printed: each test's result, in order.
struct Outcome {
    results: Vec<(String, Result<(), String>)>,
    status: String,
    stderr: String,
    took: Duration,
}

impl Outcome {
    fn get(&self, name: &str) -> Option<&Result<(), String>> {
        self.results.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    fn passed(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.is_ok()).count()
    }
}

/// Runs a program to its end (or kills it after RUN_TIMEOUT), keeping what
/// it printed either way.
fn run_program(mut cmd: Command) -> Outcome {
    let started = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                results: Vec::new(),
                status: format!("could not start {cmd:?}: {e}"),
                stderr: String::new(),
                took: started.elapsed(),
            };
        }
    };
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.to_string(),
            Ok(None) if started.elapsed() > RUN_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break format!("killed after {} s", RUN_TIMEOUT.as_secs());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break format!("wait failed: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let mut results: Vec<(String, Result<(), String>)> = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("COMPAT ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (verdict, name, detail) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let result = if verdict == "ok" { Ok(()) } else { Err(detail) };
        // A name printed twice keeps its first failure.
        match results.iter_mut().find(|(n, _)| *n == name) {
            Some((_, r)) if r.is_ok() => *r = result,
            Some(_) => {}
            None => results.push((name, result)),
        }
    }
    Outcome {
        results,
        status,
        stderr,
        took: started.elapsed(),
    }
}

/// tests/compat/known-failures.txt: (client, test) pairs that fail through
/// pgward today, with the reason.
fn known_failures() -> BTreeMap<(String, String), String> {
    include_str!("compat/known-failures.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let client = parts.next()?.to_owned();
            let test = parts.next()?.to_owned();
            Some(((client, test), parts.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a client's program direct and through pgward and compares.
async fn compare(client: &str, program: impl Fn(&Env, Mode, &str) -> Command) {
    let mut env = Env::start().await;
    let mut outcomes = Vec::new();
    for mode in [Mode::Direct, Mode::Pgward] {
        let db = env.database(client, mode);
        let mut cmd = program(&env, mode, &db);
        for var in [
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGOPTIONS",
            "PGCLIENTENCODING",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.vars(mode, &db));
        let outcome = tokio::task::spawn_blocking(move || run_program(cmd))
            .await
            .expect("run the program");
        outcomes.push(outcome);
    }
    let crashed = env.pgward_exited();
    let (direct, through) = (&outcomes[0], &outcomes[1]);
    judge(client, direct, through, crashed);
}

fn judge(client: &str, direct: &Outcome, through: &Outcome, crashed: Option<String>) {
    let known = known_failures();
    let mut problems = Vec::new();
    // pgward ending during a run is a failure of its own, `pgward_exited`
    // in the known list (a client must never be able to end pgward).
    let exit_key = (client.to_owned(), "pgward_exited".to_owned());
    match (crashed, known.contains_key(&exit_key)) {
        (Some(how), true) => println!("  [known] pgward EXITED during the run: {how}"),
        (Some(how), false) => problems.push(format!("pgward EXITED during the run: {how}")),
        (None, true) => println!(
            "  [fixed] pgward no longer exits during the run: remove \"{client} pgward_exited\" from tests/compat/known-failures.txt"
        ),
        (None, false) => {}
    }
    if direct.results.is_empty() {
        panic!(
            "compat {client}: the program reported no tests direct ({}):\n{}",
            direct.status,
            tail(&direct.stderr, 30)
        );
    }
    let total = direct.results.len();
    let (mut known_failed, mut fixed) = (Vec::new(), Vec::new());
    println!(
        "compat {client}: {total} tests; direct {} passed ({:.1} s, {}); through pgward {} passed ({:.1} s, {})",
        direct.passed(),
        direct.took.as_secs_f64(),
        direct.status,
        through.passed(),
        through.took.as_secs_f64(),
        through.status
    );
    for (name, result) in &direct.results {
        if let Err(e) = result {
            problems.push(format!("{name} fails DIRECT (the program is wrong): {e}"));
            continue;
        }
        let key = (client.to_owned(), name.clone());
        let listed = known.get(&key);
        match (through.get(name), listed) {
            (Some(Ok(())), None) => {}
            (Some(Ok(())), Some(_)) => fixed.push(name.clone()),
            (Some(Err(e)), Some(_)) => known_failed.push(format!("{name}: {e}")),
            (None, Some(_)) => known_failed.push(format!("{name}: not reached")),
            (Some(Err(e)), None) => problems.push(format!("{name} fails through pgward: {e}")),
            (None, None) => problems.push(format!(
                "{name} was not reached through pgward ({})",
                through.status
            )),
        }
    }
    for line in &known_failed {
        println!("  [known] {line}");
    }
    for name in &fixed {
        println!(
            "  [fixed] {name} passes through pgward now: remove \"{client} {name}\" from tests/compat/known-failures.txt"
        );
    }
    for p in &problems {
        println!("  [NEW] {p}");
    }
    println!(
        "compat-table | {client} | {total} | {} | {} | {}",
        direct.passed(),
        through.passed(),
        known_failed.len()
    );
    let listed_here: BTreeSet<&String> = known
        .keys()
        .filter(|(c, _)| c == client)
        .map(|(_, t)| t)
        .collect();
    for t in listed_here {
        if direct.get(t).is_none() && t != "pgward_exited" {
            println!(
                "  [stale] {client} {t} is in tests/compat/known-failures.txt but the program has no such test"
            );
        }
    }
    if !problems.is_empty() {
        panic!(
            "compat {client}: {} failures not in tests/compat/known-failures.txt:\n{}\n\
             direct stderr:\n{}\nthrough pgward stderr:\n{}",
            problems.len(),
            problems.join("\n"),
            tail(&direct.stderr, 20),
            tail(&through.stderr, 20)
        );
    }
}

fn python_cmd(python: &Path, script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(suite_dir().join("python").join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    cmd
}

macro_rules! python_client {
    ($test:ident, $client:expr, $venv:ident, $script:expr $(, $arg:expr)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let Some(python) = $venv($client) else { return };
            compare($client, |_, _, _| python_cmd(&python, $script, &[$($arg),*])).await;
        }
    };
}

python_client!(psycopg3, "psycopg3", python, "psycopg3_compat.py");
python_client!(psycopg2, "psycopg2", python, "psycopg2_compat.py");
python_client!(asyncpg, "asyncpg", python, "asyncpg_compat.py");
python_client!(pg8000, "pg8000", python, "pg8000_compat.py");
python_client!(
    sqlalchemy20_psycopg,
    "sqlalchemy20-psycopg",
    python,
    "sqlalchemy_compat.py",
    "psycopg"
);
python_client!(
    sqlalchemy20_asyncpg,
    "sqlalchemy20-asyncpg",
    python,
    "sqlalchemy_compat.py",
    "asyncpg"
);
python_client!(
    sqlalchemy21_psycopg,
    "sqlalchemy21-psycopg",
    python_sa21,
    "sqlalchemy_compat.py",
    "psycopg"
);
python_client!(
    sqlalchemy21_asyncpg,
    "sqlalchemy21-asyncpg",
    python_sa21,
    "sqlalchemy_compat.py",
    "asyncpg"
);
python_client!(alembic20, "alembic-sa20", python, "alembic_compat.py");
python_client!(alembic21, "alembic-sa21", python_sa21, "alembic_compat.py");
python_client!(django, "django", python, "django_compat.py");
python_client!(
    django_server_side_binding,
    "django-ssb",
    python,
    "django_compat.py",
    "--server-side-binding"
);

/// psql, pgbench, pg_dump, pg_restore, pg_dumpall: in the full run only
/// (scripts/compat-full.sh); tests/psql.rs and tests/pgbench.rs cover
/// psql and pgbench through pgward in every `cargo test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgtools() {
    if !full() {
        println!("compat pgtools: runs in scripts/compat-full.sh (PGWARD_COMPAT_FULL=1)");
        return;
    }
    let Some(python) = python("pgtools") else {
        return;
    };
    compare("pgtools", |_, _, _| {
        python_cmd(&python, "pgtools_compat.py", &[])
    })
    .await;
}

fn node_cmd(modules: &Path, script: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(suite_dir().join("node").join(script))
        .env("NODE_PATH", modules);
    cmd
}

macro_rules! node_client {
    ($test:ident, $client:expr, $script:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let Some(modules) = node_modules($client) else {
                return;
            };
            compare($client, |_, _, _| node_cmd(&modules, $script)).await;
        }
    };
}

node_client!(node_postgres, "node-postgres", "pg_compat.js");
node_client!(postgres_js, "postgres.js", "postgresjs_compat.js");
node_client!(sequelize, "sequelize", "sequelize_compat.js");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc() {
    let Some(jar) = java("pgjdbc") else { return };
    compare("pgjdbc", |_, _, _| {
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(&jar)
            .arg(suite_dir().join("java/Compat.java"));
        cmd
    })
    .await;
}

/// The list names only clients this file runs, each test once.
#[test]
fn known_failures_list_is_well_formed() {
    let clients = [
        "psycopg3",
        "psycopg2",
        "asyncpg",
        "pg8000",
        "sqlalchemy20-psycopg",
        "sqlalchemy20-asyncpg",
        "sqlalchemy21-psycopg",
        "sqlalchemy21-asyncpg",
        "alembic-sa20",
        "alembic-sa21",
        "django",
        "django-ssb",
        "node-postgres",
        "postgres.js",
        "sequelize",
        "pgjdbc",
        "pgtools",
    ];
    let mut seen = BTreeSet::new();
    for line in include_str!("compat/known-failures.txt").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(
            parts.len() >= 3,
            "known-failures.txt: `client test reason` expected: {line}"
        );
        assert!(
            clients.contains(&parts[0]),
            "known-failures.txt: unknown client {}",
            parts[0]
        );
        assert!(
            seen.insert((parts[0], parts[1])),
            "known-failures.txt: listed twice: {line}"
        );
    }
}
