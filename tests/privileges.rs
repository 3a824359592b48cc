//! The second lock's warnings: `pgward check --config` and `pgward serve`
//! name every role that does not allow everything yet connects upstream as
//! a superuser (or a member of one) or a member of a role that reaches the
//! server's files and programs, against a real cluster.

mod common;

use std::path::Path;
use std::time::Duration;

use common::free_port;
use pgward::localpg::LocalPg;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Users of every kind, and roles that connect as them.
const SETUP: &str = "
CREATE ROLE plain LOGIN;
CREATE ROLE reader LOGIN IN ROLE pg_read_server_files;
CREATE ROLE runner LOGIN;
CREATE ROLE middle NOLOGIN NOINHERIT IN ROLE pg_execute_server_program;
GRANT middle TO runner;
CREATE ROLE hidden_admin NOLOGIN SUPERUSER;
CREATE ROLE climber LOGIN NOINHERIT IN ROLE hidden_admin;
";

const ROLES: &str = r#"
[role.fine]
allow = ["read"]
upstream_user = "plain"

[role.files]
allow = ["read", "write"]
upstream_user = "reader"

[role.programs]
allow = ["read"]
upstream_user = "runner"

[role.escalates]
allow = ["read"]
upstream_user = "climber"

[role.default_user]
allow = ["read", "session"]

[role.missing]
allow = ["read"]
upstream_user = "nobody_here"

[role.boss]
allow = ["*"]
"#;

/// A cluster with `SETUP`, and a config whose own upstream user is the
/// superuser, with the rules in `ROLES`.
fn prepare(dir: &Path) -> LocalPg {
    let pg = LocalPg::start().expect("start localpg");
    pg.psql("postgres", SETUP).expect("setup");
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/roles.toml"), ROLES).unwrap();
    std::fs::write(
        dir.join("pgward.toml"),
        format!(
            "[upstream]\nurl = \"{}\"\npassword_env = \"PGWARD_TEST_UPSTREAM_PW\"\nsslmode = \"disable\"\n\n[audit]\nenabled = false\n",
            pg.url("postgres")
        ),
    )
    .unwrap();
    pg
}

/// The findings, one line each, that both commands must report.
fn expected() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("files", "reader", "is a member of pg_read_server_files"),
        (
            "programs",
            "runner",
            "is a member of pg_execute_server_program",
        ),
        (
            "escalates",
            "climber",
            "is a member of superuser role \"hidden_admin\"",
        ),
        ("default_user", "postgres", "which is a superuser:"),
        ("missing", "nobody_here", "does not exist upstream"),
    ]
}

fn line_for<'a>(out: &'a str, role: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.contains(&format!("role \"{role}\"")))
}

#[test]
fn check_with_config_names_each_role_its_user_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let pg = prepare(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["check", "--config"])
        .arg(dir.path().join("pgward.toml"))
        .env("PGWARD_TEST_UPSTREAM_PW", &pg.password)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The rules come from the config's rules.dir.
    assert!(stdout.contains("rules: OK"), "{stdout}");
    for (role, user, why) in expected() {
        let line = line_for(&stdout, role).unwrap_or_else(|| panic!("{role}: {stdout}"));
        assert!(
            line.starts_with("warning: ")
                && line.contains(&format!("\"{user}\""))
                && line.contains(why),
            "{role}: {line}"
        );
    }
    // A user without dangerous memberships passes, a role that allows
    // everything is not judged, and a finding names only what is true.
    assert!(line_for(&stdout, "fine").is_none(), "{stdout}");
    assert!(line_for(&stdout, "boss").is_none(), "{stdout}");
    assert!(stdout.contains("OK for fine as plain"), "{stdout}");
    assert!(stdout.contains("not checked for boss"), "{stdout}");
    let files = line_for(&stdout, "files").unwrap();
    assert!(!files.contains("superuser"), "{files}");

    // The check needs the upstream: unreachable, it fails and says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["check", "--config"])
        .arg(dir.path().join("pgward.toml"))
        .env("PGWARD_TEST_UPSTREAM_PW", "wrong")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("checking the upstream users' privileges as \"postgres\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_at_start_naming_role_user_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let pg = tokio::task::spawn_blocking(move || prepare(&path))
        .await
        .unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["serve", "--config"])
        .arg(dir.path().join("pgward.toml"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PGWARD_TEST_UPSTREAM_PW", &pg.password)
        .env("RUST_LOG", "pgward=info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let mut pending = expected();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            pending.retain(|(role, user, why)| {
                !(line.contains("WARN")
                    && line.contains(&format!("role \"{role}\""))
                    && line.contains(&format!("\"{user}\""))
                    && line.contains(why))
            });
            log.push(line);
            if pending.is_empty() {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "missing {pending:?} in:\n{}",
        log.join("\n")
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("role \"fine\"") || l.contains("role \"boss\"")),
        "{}",
        log.join("\n")
    );
    // Rules reloaded on SIGHUP are checked again: "fine" now connects as
    // the superuser.
    std::fs::write(
        dir.path().join("rules/roles.toml"),
        ROLES.replace("upstream_user = \"plain\"\n", ""),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let reloaded = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("WARN")
                && line.contains("role \"fine\"")
                && line.contains("\"postgres\", which is a superuser")
            {
                return true;
            }
            log.push(line);
        }
        false
    })
    .await;
    assert!(matches!(reloaded, Ok(true)), "{}", log.join("\n"));
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// docker/initdb/pgward-users.sh, run as the postgres image runs it, gives
/// the example roles users the check finds nothing wrong with, and that
/// PostgreSQL holds to their roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_init_script_creates_users_with_only_what_their_roles_need() {
    let pg = tokio::task::spawn_blocking(|| LocalPg::start().expect("start localpg"))
        .await
        .unwrap();
    let bindir = pgward::localpg::find_bindir().expect("PostgreSQL binaries");
    let path = std::env::join_paths(std::iter::once(bindir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/initdb/pgward-users.sh");
    let out = tokio::process::Command::new("sh")
        .arg(script)
        .env("PATH", path)
        .env("POSTGRES_USER", &pg.superuser)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGPASSWORD", &pg.password)
        .env("PGWARD_DBA_PASSWORD", "dba-pw")
        .env("PGWARD_APP_PASSWORD", "app-pw")
        .env("PGWARD_ANALYST_PASSWORD", "it's-analyst")
        .env("PGWARD_AGENT_PASSWORD", "agent-pw")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let config = pgward::config::Config::parse(
        &format!(
            "[upstream]\nurl = \"postgres://{}@127.0.0.1:{}/app\"\nsslmode = \"disable\"\n",
            pg.superuser, pg.port
        ),
        Path::new("docker.toml"),
    )
    .unwrap();
    let mut control = pgward::upstream::Upstream::from_config(&config).unwrap();
    control.password = Some(pg.password.clone());
    let findings = pgward::privileges::check(&control, &pgward::demo::example_rules().unwrap())
        .await
        .unwrap();
    assert!(findings.is_empty(), "{findings:?}");

    let connect = |user: &str, password: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=app",
            pg.port
        )
    };
    let open = |info: String| async move {
        let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{info}: {e}"));
        tokio::spawn(conn);
        c
    };
    let dba = open(connect("pgward_dba", "dba-pw")).await;
    dba.batch_execute(
        "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) VALUES ('a')",
    )
    .await
    .unwrap();
    let app = open(connect("pgward_app", "app-pw")).await;
    app.batch_execute(
        "INSERT INTO t (v) VALUES ('b'); UPDATE t SET v = 'c'; DELETE FROM t WHERE v = 'x'",
    )
    .await
    .unwrap();
    let analyst = open(connect("pgward_analyst", "it's-analyst")).await;
    let n: i64 = analyst
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    for sql in [
        "INSERT INTO t (v) VALUES ('z')",
        "CREATE TEMP TABLE x (a int)",
        "SELECT lo_create(0)",
        "SELECT pg_read_file('/etc/passwd')",
    ] {
        let e = analyst.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            e.as_db_error().map(|d| d.code().code()),
            Some("42501"),
            "{sql}: {e}"
        );
    }
}
