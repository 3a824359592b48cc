//! pg_dump, pg_restore and pg_dumpall through pgward, each compared with
//! the same run straight to PostgreSQL: the demo's database and upstream
//! users, the example roles (alice the analyst reads, dana the DBA does
//! everything), and a role that may write and create but not grant.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgward::auth::scram::Verifier;
use pgward::demo::Demo;
use pgward::server::Shared;

/// psql's `\restrict` key pg_dump writes into plain output: random unless
/// given, so both runs get the same one.
const KEY: &str = "--restrict-key=pgwardtest";

const LOADER: (&str, &str) = ("loader", "loader-password");

/// More of the demo database for the dumps to carry: a view, a function,
/// an index, a comment. Run as the DBA's user, who owns the database.
const MORE_SCHEMA: &str = "
CREATE VIEW order_totals AS
    SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id;
CREATE FUNCTION order_count(c int) RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT count(*) FROM orders WHERE customer_id = c $$;
CREATE INDEX orders_customer ON orders (customer_id);
COMMENT ON TABLE customers IS 'people who order';
";

struct Setup {
    demo: Demo,
    shared: Arc<Shared>,
    addr: SocketAddr,
    audit: tempfile::TempDir,
    work: tempfile::TempDir,
}

/// The demo with the example rules and one more role: `loader` may read,
/// write and create (pg_restore), connecting as the DBA's user.
async fn start() -> Setup {
    let audit = tempfile::tempdir().unwrap();
    let audit_dir = audit.path().to_owned();
    let demo = tokio::task::spawn_blocking(move || {
        let demo = pgward::demo::setup("127.0.0.1:0".parse().unwrap(), &audit_dir)?;
        demo.pg
            .psql(
                "demo",
                &format!("SET ROLE pgward_dba;\n{MORE_SCHEMA}\nRESET ROLE;"),
            )
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(demo)
    })
    .await
    .unwrap()
    .expect("demo setup");
    let mut rules = pgward::demo::example_rules().unwrap();
    let verifier = Verifier::generate(LOADER.1, 4096);
    rules
        .add_file(
            Path::new("loader.toml"),
            &format!(
                "[role.loader]\nallow = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\", \"copy_in\"]\n\
                 upstream_user = \"pgward_dba\"\n\n\
                 [[identity]]\nname = \"loader\"\nscram = \"{verifier}\"\nroles = [\"loader\"]\n"
            ),
        )
        .unwrap();
    rules.validate().unwrap();
    let shared = Shared::new(demo.config.clone(), rules).unwrap();
    shared.start_workers().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(pgward::server::run(
        listener,
        shared.clone(),
        std::future::pending(),
    ));
    Setup {
        demo,
        shared,
        addr,
        audit,
        work: tempfile::tempdir().unwrap(),
    }
}

/// What a client program did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Who runs a client program: through pgward as an identity, or straight
/// to PostgreSQL as an upstream user.
#[derive(Clone, Copy)]
enum Via<'a> {
    Pgward((&'a str, &'a str)),
    Direct(&'a str),
}

impl Setup {
    fn path(&self, name: &str) -> String {
        self.work.path().join(name).display().to_string()
    }

    /// Runs `program` (pg_dump, pg_restore, pg_dumpall) with `args`,
    /// connected as `via`.
    async fn run(&self, program: &str, via: Via<'_>, args: &[&str]) -> Run {
        let (port, user, password) = match via {
            Via::Pgward((user, password)) => (self.addr.port(), user, password.to_owned()),
            Via::Direct(user) => {
                let password = self
                    .demo
                    .users
                    .iter()
                    .find(|(u, _)| u == user)
                    .map(|(_, p)| p.clone())
                    .expect("a demo user");
                (self.demo.pg.port, user, password)
            }
        };
        let path = pgward::localpg::find_program(program).unwrap_or_else(|| PathBuf::from(program));
        let port = port.to_string();
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", user])
            .args(args)
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env_remove("PGOPTIONS")
            .stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{program} timed out"))
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs it and insists that it succeeds; its standard output.
    async fn ok(&self, program: &str, via: Via<'_>, args: &[&str]) -> String {
        let r = self.run(program, via, args).await;
        assert!(r.ok, "{program} {args:?} failed:\n{}", r.stderr);
        r.stdout
    }

    /// The SQL script of an archive (custom or directory format).
    async fn script(&self, archive: &str) -> String {
        let path =
            pgward::localpg::find_program("pg_restore").unwrap_or_else(|| "pg_restore".into());
        let out = tokio::process::Command::new(path)
            .args([KEY, "-f", "-", archive])
            .output()
            .await
            .expect("pg_restore");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Statements the audit log holds, with their decisions.
    fn audited(&self) -> Vec<(String, String, String)> {
        let log = self.shared.audit.as_ref().expect("audit is on");
        assert!(log.rotate_now(Duration::from_secs(20)));
        let mut events = pgward::audit::files::read_all(self.audit.path()).unwrap();
        events.sort_by_key(|e| e.seq);
        events
            .into_iter()
            .filter_map(|e| {
                Some((
                    e.identity.as_deref()?.to_owned(),
                    e.statement.as_deref()?.to_owned(),
                    e.decision.as_deref()?.to_owned(),
                ))
            })
            .collect()
    }
}

/// Two dumps as scripts: nothing may differ between a run through pgward
/// and the same run direct (the `\restrict` key is fixed, and custom and
/// directory archives are compared as the scripts pg_restore makes of
/// them, without their creation time).
fn assert_same(what: &str, through: &str, direct: &str) {
    assert!(!direct.trim().is_empty(), "{what}: empty dump");
    if through != direct {
        let diff: Vec<String> = through
            .lines()
            .zip(direct.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  pgward: {a}\n  direct: {b}", i + 1))
            .collect();
        panic!(
            "{what}: through pgward ({} lines) differs from direct ({} lines):\n{}",
            through.lines().count(),
            direct.lines().count(),
            diff.join("\n")
        );
    }
}

const ALICE: Via = Via::Pgward(common::ALICE);
const DANA: Via = Via::Pgward(common::DANA);
const ANALYST: Via = Via::Direct("pgward_analyst");
const DBA: Via = Via::Direct("pgward_dba");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumps_and_restores_through_pgward_equal_direct_runs() {
    let s = start().await;
    let tables = ["-t", "customers", "-t", "orders"];

    // A read-only role dumps the tables it may read, in every format.
    let plain = [&[KEY][..], &tables, &["demo"]].concat();
    assert_same(
        "analyst, plain",
        &s.ok("pg_dump", ALICE, &plain).await,
        &s.ok("pg_dump", ANALYST, &plain).await,
    );
    assert!(s
        .ok("pg_dump", ALICE, &plain)
        .await
        .contains("COPY public.customers (id, name, email, ssn) FROM stdin;\n1\tAda Lovelace"));
    for (name, format) in [("custom", &["-Fc"][..]), ("directory", &["-Fd", "-j", "4"])] {
        let mut archives = Vec::new();
        for (who, via) in [("pgward", ALICE), ("direct", ANALYST)] {
            let file = s.path(&format!("analyst-{name}-{who}"));
            let args = [format, &tables, &["-f", &file, "demo"]].concat();
            s.ok("pg_dump", via, &args).await;
            archives.push(s.script(&file).await);
        }
        assert_same(&format!("analyst, {name}"), &archives[0], &archives[1]);
    }
    // The directory format's workers took the leader's snapshot.
    let audited = s.audited();
    let snapshots = audited
        .iter()
        .filter(|(who, sql, decision)| {
            who == "alice" && sql.starts_with("SET TRANSACTION SNAPSHOT") && decision == "allow"
        })
        .count();
    assert_eq!(snapshots, 4, "one per worker");
    assert!(audited.iter().any(|(who, sql, decision)| who == "alice"
        && sql.starts_with("LOCK TABLE public.customers IN ACCESS SHARE MODE")
        && decision == "allow"));

    // A table it may not read stays refused, by pgward (PostgreSQL would
    // refuse it too: the analyst's user has no grant on it).
    for args in [&[KEY, "demo"][..], &[KEY, "-t", "api_keys", "demo"]] {
        let r = s.run("pg_dump", ALICE, args).await;
        assert!(!r.ok, "{args:?}: {}", r.stdout);
        assert!(
            r.stderr
                .contains("pgward: permission denied for role \"analyst\"")
                && r.stderr.contains("read of public.api_keys is denied"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stdout.contains("sk_live"), "{}", r.stdout);
        let direct = s.run("pg_dump", ANALYST, args).await;
        assert!(
            !direct.ok
                && direct
                    .stderr
                    .contains("permission denied for table api_keys"),
            "{}",
            direct.stderr
        );
    }
    assert!(s.audited().iter().any(|(who, sql, decision)| who == "alice"
        && sql == "LOCK TABLE public.api_keys IN ACCESS SHARE MODE"
        && decision == "deny"));

    // The DBA dumps everything, as a script and as archives; and the
    // whole cluster (as a user who is not a superuser: no passwords).
    let whole = [KEY, "demo"];
    assert_same(
        "dba, plain",
        &s.ok("pg_dump", DANA, &whole).await,
        &s.ok("pg_dump", DBA, &whole).await,
    );
    let custom = s.path("dba.dump");
    s.ok("pg_dump", DANA, &["-Fc", "-f", &custom, "demo"]).await;
    let custom_direct = s.path("dba-direct.dump");
    s.ok("pg_dump", DBA, &["-Fc", "-f", &custom_direct, "demo"])
        .await;
    assert_same(
        "dba, custom",
        &s.script(&custom).await,
        &s.script(&custom_direct).await,
    );
    let dir = s.path("dba.dir");
    s.ok("pg_dump", DANA, &["-Fd", "-j", "4", "-f", &dir, "demo"])
        .await;
    assert_same(
        "dba, directory",
        &s.script(&dir).await,
        &s.script(&custom_direct).await,
    );
    let all = [KEY, "--no-role-passwords"];
    let cluster = s.ok("pg_dumpall", DANA, &all).await;
    assert!(cluster.contains("CREATE ROLE pgward_analyst;"), "{cluster}");
    assert!(cluster.contains("\\connect demo"), "{cluster}");
    assert_same(
        "dba, pg_dumpall",
        &cluster,
        &s.ok("pg_dumpall", DBA, &all).await,
    );

    // A role that may write and create (not grant) restores the DBA's
    // archives into fresh databases, without owners and privileges; the
    // same restore direct, and the source, dump alike.
    for db in ["restored_custom", "restored_dir", "restored_direct"] {
        s.demo
            .pg
            .psql(
                "postgres",
                &format!("CREATE DATABASE {db} OWNER pgward_dba"),
            )
            .unwrap();
    }
    let loader = Via::Pgward(LOADER);
    s.ok(
        "pg_restore",
        loader,
        &["-O", "-x", "-d", "restored_custom", &custom],
    )
    .await;
    s.ok(
        "pg_restore",
        loader,
        &["-O", "-x", "-j", "2", "-d", "restored_dir", &dir],
    )
    .await;
    s.ok(
        "pg_restore",
        DBA,
        &["-O", "-x", "-d", "restored_direct", &custom_direct],
    )
    .await;
    let source = s.ok("pg_dump", DBA, &[KEY, "-O", "-x", "demo"]).await;
    assert!(
        source.contains("CREATE FUNCTION public.order_count"),
        "{source}"
    );
    for db in ["restored_custom", "restored_dir", "restored_direct"] {
        assert_same(
            db,
            &s.ok("pg_dump", DBA, &[KEY, "-O", "-x", db]).await,
            &source,
        );
    }
    // It may not grant: the privileges in the archive are refused.
    s.demo
        .pg
        .psql(
            "postgres",
            "CREATE DATABASE restored_grants OWNER pgward_dba",
        )
        .unwrap();
    let r = s
        .run(
            "pg_restore",
            loader,
            &["-O", "--exit-on-error", "-d", "restored_grants", &custom],
        )
        .await;
    assert!(
        !r.ok && r.stderr.contains("class dcl is not allowed"),
        "{}",
        r.stderr
    );
}
