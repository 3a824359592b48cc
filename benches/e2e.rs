//! End-to-end benchmark: pgbench -S straight to PostgreSQL, through
//! PgBouncer (session mode) and through pgward, in one run, on one machine.
//!
//!     cargo bench --bench e2e            # 10 s per measurement
//!     PGWARD_BENCH_SECS=30 cargo bench --bench e2e
//!
//! Compare ratios within a run; absolute numbers depend on the machine.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pgward::localpg::{find_program, non_root_user, LocalPg};

struct Row {
    mode: &'static str,
    clients: u32,
    results: Vec<(String, f64, f64)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pgbench(
    bin: &PathBuf,
    conn: &str,
    password: &str,
    mode: &str,
    clients: u32,
    secs: u64,
) -> (f64, f64) {
    let out = Command::new(bin)
        .args(["-n", "-S", "-M", mode, "-T"])
        .arg(secs.to_string())
        .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
        // The database (a conninfo string) is positional: pgbench's -d is --debug.
        .arg(conn)
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output:\n{text}"))
    };
    (field("tps = "), field("latency average = "))
}

fn start_pgbouncer(
    pg: &LocalPg,
    dir: &std::path::Path,
    user: &str,
    password: &str,
) -> Option<(Child, u16)> {
    let bin = find_program("pgbouncer").or_else(|| {
        ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })?;
    let port = free_port();
    std::fs::write(
        dir.join("userlist.txt"),
        format!("\"{user}\" \"{password}\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres user={} password={}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {}\npool_mode = session\n\
             max_client_conn = 200\ndefault_pool_size = 50\nlogfile = {}\n",
            pg.port,
            pg.superuser,
            pg.password,
            dir.join("userlist.txt").display(),
            dir.join("pgbouncer.log").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(dir.join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(Some((uid, gid))) = non_root_user() {
        for f in ["", "userlist.txt", "pgbouncer.ini"] {
            let _ = nix::unistd::chown(&dir.join(f), Some(uid.into()), Some(gid.into()));
        }
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().ok()?;
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: u64 = std::env::var("PGWARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let pgbench_bin =
        find_program("pgbench").expect("pgbench not found: install PostgreSQL's client tools");
    let pg = LocalPg::start().expect("start PostgreSQL");
    let init = Command::new(&pgbench_bin)
        .args(["-i", "-q", "-s", "10", &pg.conninfo("postgres")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(init.success(), "pgbench -i failed");
    let dir = tempfile::Builder::new()
        .prefix("pgward-bench-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // pgward in this process, on its own runtime.
    let (user, password) = ("bob", "bob-demo-password");
    std::fs::write(dir.path().join("pw"), &pg.password).unwrap();
    let pgward_port = free_port();
    std::fs::write(
        dir.path().join("pgward.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{pgward_port}\"\n[upstream]\nurl = \"{}\"\npassword_file = \"pw\"\nsslmode = \"disable\"\n",
            pg.url("postgres")
        ),
    )
    .unwrap();
    let mut config = pgward::config::Config::load(&dir.path().join("pgward.toml")).unwrap();
    if let Some(n) = std::env::var("PGWARD_BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.server.worker_threads = n;
    }
    let rt = config.server.runtime().unwrap();
    let shared =
        pgward::server::Shared::new(config, pgward::demo::example_rules().unwrap()).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", pgward_port)))
        .unwrap();
    rt.spawn(pgward::server::run(
        listener,
        shared,
        std::future::pending(),
    ));

    let bouncer = start_pgbouncer(&pg, dir.path(), user, password);
    if bouncer.is_none() {
        eprintln!("PgBouncer not found or did not start (Debian: apt-get install pgbouncer); its rows are skipped");
    }

    let conn = |port: u16, u: &str| {
        format!("host=127.0.0.1 port={port} user={u} dbname=postgres sslmode=disable")
    };
    let mut targets: Vec<(String, String, String)> = vec![(
        "direct".into(),
        conn(pg.port, &pg.superuser),
        pg.password.clone(),
    )];
    if let Some((_, port)) = &bouncer {
        targets.push(("pgbouncer".into(), conn(*port, user), password.into()));
    }
    targets.push(("pgward".into(), conn(pgward_port, user), password.into()));

    let mut rows = Vec::new();
    for mode in ["simple", "prepared"] {
        for clients in [1u32, 8] {
            let mut results = Vec::new();
            for (name, c, pw) in &targets {
                let (tps, lat) = pgbench(&pgbench_bin, c, pw, mode, clients, secs);
                eprintln!("{mode:>8} c={clients} {name:>10}: {tps:>10.0} tps {lat:>7.3} ms");
                results.push((name.clone(), tps, lat));
            }
            rows.push(Row {
                mode,
                clients,
                results,
            });
        }
    }

    println!("\npgbench -S, scale 10, {secs} s per cell, connections excluded (tps without initial connection time)\n");
    let names: Vec<&str> = targets.iter().map(|t| t.0.as_str()).collect();
    let mut header = String::from("| mode | clients |");
    for n in &names {
        header.push_str(&format!(" {n} TPS | {n} ms |"));
    }
    header.push_str(" pgward/direct |");
    if bouncer.is_some() {
        header.push_str(" pgward/PgBouncer |");
    }
    println!("{header}");
    println!("|{}", "---|".repeat(header.matches('|').count() - 1));
    for row in &rows {
        let tps = |n: &str| {
            row.results
                .iter()
                .find(|r| r.0 == n)
                .map(|r| r.1)
                .unwrap_or(f64::NAN)
        };
        let mut line = format!("| {} | {} |", row.mode, row.clients);
        for r in &row.results {
            line.push_str(&format!(" {:.0} | {:.3} |", r.1, r.2));
        }
        line.push_str(&format!(" {:.2} |", tps("pgward") / tps("direct")));
        if bouncer.is_some() {
            line.push_str(&format!(" {:.2} |", tps("pgward") / tps("pgbouncer")));
        }
        println!("{line}");
    }
    if let Some((mut child, _)) = bouncer {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(rt);
    drop(pg);
}
