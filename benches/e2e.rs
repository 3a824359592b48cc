//! End-to-end benchmark: pgbench -S straight to PostgreSQL, through
//! PgBouncer (session mode) and through pgward, in one run, on one machine.
//!
//!     cargo bench --bench e2e            # 3 rounds of 2 + 5 s per target and cell
//!     PGWARD_BENCH_SECS=4 PGWARD_BENCH_ROUNDS=9 cargo bench --bench e2e
//!     cargo bench --bench e2e -- idle    # what 500 idle sessions cost (below)
//!     cargo bench --bench e2e -- orm     # ORM-shaped queries: added latency (below)
//!
//! The second form (about 20 minutes) is what the closing notes report: on
//! a shared 2-core machine one short pgbench run can differ from the next
//! by 10-25%, so many rounds and their median.
//!
//! Each run's first PGWARD_BENCH_WARMUP seconds (default 2; 0 counts the
//! whole run) are not counted. At 8 clients, new sessions through pgward
//! (on each relay pgward had then) ran at about half their steady rate for their first 1-3 s
//! (per-second pgbench progress, 2-core machine: 25-30k TPS, then 48-54k),
//! until the scheduler had settled the 32 threads into an order in which
//! PostgreSQL's backends are no longer preempted (docs/architecture.md);
//! PgBouncer's and PostgreSQL's rates were flat. In 4 s runs that start-up
//! decided most of a round's result and most of the spread between rounds.
//! Also: PGWARD_BENCH_ONLY
//! (targets), PGWARD_BENCH_MODES (simple,prepared), PGWARD_BENCH_CLIENTS
//! (1,8), PGWARD_BENCH_WORKERS (session threads, for A/B runs),
//! PGWARD_BENCH_AUDIT_DIR (where the audit files go; default: the run's
//! temporary directory).
//!
//! Compare ratios within a run; absolute numbers depend on the machine.
//! Every pgbench run gets a proxy started for it (a new PgBouncer process,
//! a new pgward instance in this process with threads of its own), so no
//! target keeps a lucky or unlucky placement for the whole run.
//!
//! The `idle` mode opens PGWARD_IDLE_SESSIONS (default 500) authenticated
//! sessions through the `pgward serve` binary (policy and audit log on)
//! and through PgBouncer, each in a process of its own, leaves them idle,
//! and prints each proxy's extra resident memory and threads
//! (docs/benchmarks.md).
//! The `orm` mode sends what psycopg 3 and Django send per query, an
//! unnamed Parse, Bind (a new parameter value each time), Describe of the
//! portal, Execute and Sync, one query at a time over one connection,
//! PGWARD_ORM_QUERIES (default 5,000) per run after 500 of warm-up, to
//! PostgreSQL directly, through PgBouncer (session mode) and through
//! pgward (policy on; policy and audit on), PGWARD_BENCH_ROUNDS runs each
//! in random order; it prints each target's median time per query and
//! what it adds to the direct one.
//! Two tables: ratios of the targets' medians, and the same ratios paired
//! by round (the median of each round's ratio of two targets, both run
//! within that round), which drift in the machine's load over the run does
//! not skew.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pgward::localpg::{find_program, non_root_user, LocalPg};
use rand::seq::SliceRandom;

struct Row {
    mode: String,
    clients: u32,
    /// (target, TPS, latency ms, CPU µs per transaction of the proxy)
    results: Vec<(String, f64, f64, Option<f64>)>,
    /// Each target's TPS per round, in round order.
    per_round: Vec<(String, Vec<f64>)>,
}

/// The ratios the issues set targets on: (label, numerator, denominator).
const RATIOS: &[(&str, &str, &str)] = &[
    ("pgward/direct", "pgward", "direct"),
    ("policy/pgward", "pgward+policy", "pgward"),
    ("audit/policy", "pgward+policy+audit", "pgward+policy"),
    ("pgward/PgBouncer", "pgward", "pgbouncer"),
    ("policy/PgBouncer", "pgward+policy", "pgbouncer"),
];

/// Prints a Markdown table: the header row, its rule, then the rows.
fn print_table(header: &str, rows: impl Iterator<Item = String>) {
    println!("{header}");
    println!("|{}", "---|".repeat(header.matches('|').count() - 1));
    for row in rows {
        println!("{row}");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Row {
    fn tps(&self, target: &str) -> f64 {
        self.results
            .iter()
            .find(|r| r.0 == target)
            .map_or(f64::NAN, |r| r.1)
    }

    fn rounds(&self, target: &str) -> Option<&[f64]> {
        self.per_round
            .iter()
            .find(|r| r.0 == target)
            .map(|r| r.1.as_slice())
    }

    /// The median over rounds of `a`'s TPS over `b`'s in the same round.
    /// Within a round the targets run back to back, so drift in the
    /// machine's load over the run (other tenants, page cache, CPU
    /// frequency) cancels in each ratio instead of landing in one
    /// target's median.
    fn paired(&self, a: &str, b: &str) -> f64 {
        median(self.ratios(a, b))
    }

    /// Each round's TPS of `a` over `b`.
    fn ratios(&self, a: &str, b: &str) -> Vec<f64> {
        match (self.rounds(a), self.rounds(b)) {
            (Some(x), Some(y)) => x.iter().zip(y).map(|(x, y)| x / y).collect(),
            _ => Vec::new(),
        }
    }
}

/// A confidence interval of at least 95% for the median of the
/// distribution `v` was drawn from: the k-th smallest and k-th largest
/// values, for the largest k with P(Binomial(n, 1/2) < k) <= 2.5%. It
/// needs no assumption about the distribution (rounds on a shared machine
/// are far from normal); None under 6 values.
fn median_interval(mut v: Vec<f64>) -> Option<(f64, f64)> {
    let n = v.len();
    // P(B = i) for i = 0.., summed while the tail stays within 2.5%.
    let mut p = 0.5f64.powi(n as i32);
    let (mut tail, mut k) = (0.0, 0);
    while k < n / 2 && tail + p <= 0.025 {
        tail += p;
        p *= (n - k) as f64 / (k + 1) as f64;
        k += 1;
    }
    if k == 0 {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some((v[k - 1], v[n - k]))
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One pgbench -S run of `warmup` + `secs` seconds: TPS and mean latency
/// (ms) over the last `secs` seconds only, from pgbench's per-second
/// progress reports, and the transactions of the whole run. The latency is
/// pgbench's "latency average" (clients / TPS), not its per-second "lat",
/// which leaves out the time a client thread waits to be run.
fn pgbench(
    bin: &PathBuf,
    conn: &str,
    password: &str,
    mode: &str,
    clients: u32,
    (warmup, secs): (u64, u64),
) -> (f64, f64, f64) {
    let out = Command::new(bin)
        .args(["-n", "-S", "-M", mode, "-P", "1", "-T"])
        .arg((warmup + secs).to_string())
        .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
        // The database (a conninfo string) is positional: pgbench's -d is --debug.
        .arg(conn)
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pgbench failed: {progress}\n{text}");
    let field = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output:\n{text}"))
    };
    let txs = field("number of transactions actually processed: ");
    if warmup == 0 {
        return (field("tps = "), field("latency average = "), txs);
    }
    // "progress: 3.0 s, 48213.9 tps, lat 0.166 ms stddev 0.052, 0 failed"
    // (pgbench may leave out the last second's report).
    let seconds: Vec<f64> = progress
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.strip_prefix("progress: ")?.split_whitespace().collect();
            let at: f64 = f.first()?.parse().ok()?;
            let tps: f64 = f.get(2)?.parse().ok()?;
            (at > warmup as f64).then_some(tps)
        })
        .collect();
    assert!(
        !seconds.is_empty(),
        "no progress report after the warm-up in pgbench's output:\n{progress}"
    );
    let tps = seconds.iter().sum::<f64>() / seconds.len() as f64;
    (tps, f64::from(clients) * 1000.0 / tps, txs)
}

/// PgBouncer, stopped when dropped: also when a pgbench run panics.
struct Bouncer(Child);

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_pgbouncer() -> Option<PathBuf> {
    find_program("pgbouncer").or_else(|| {
        ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// One target of the benchmark: how pgbench reaches PostgreSQL.
struct Target {
    name: &'static str,
    user: String,
    password: String,
    proxy: Proxy,
}

enum Proxy {
    /// None: straight to PostgreSQL.
    Direct,
    Bouncer,
    /// pgward with or without its policy and audit log.
    Pgward {
        enforce: bool,
        audit: bool,
    },
}

/// The proxy started for one pgbench run.
enum Running {
    Nothing,
    Bouncer(Bouncer),
    Pgward(Pgward),
}

/// A pgward instance in this process: its own session threads, listener
/// and (when on) audit log, started for one pgbench run. A fresh instance
/// per run because a long-lived one kept whatever placement its threads
/// got (the scheduler's, the cache's) for the whole run: in one run the
/// instance without a policy was 5% slower than the one with it in every
/// round, in another the other way round.
struct Pgward {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Pgward {
    fn start(
        rt: &tokio::runtime::Runtime,
        config: pgward::config::Config,
        enforce: bool,
    ) -> (u16, Pgward) {
        let shared = pgward::server::Shared::new(
            config,
            // The roles connect as the benchmark's upstream user.
            pgward::demo::example_rules()
                .unwrap()
                .without_upstream_users(),
        )
        .unwrap();
        shared.start_workers().unwrap();
        if !enforce {
            shared.disable_policy_for_benchmarks();
        }
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = rt.spawn(pgward::server::run(listener, shared, async move {
            let _ = stopped.await;
        }));
        (port, Pgward { stop, done })
    }

    /// Shuts the instance down (its sessions have ended) and waits until
    /// its threads and audit log are gone.
    fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        rt.block_on(self.done).unwrap();
    }
}

fn start_pgbouncer(
    pg: &LocalPg,
    dir: &std::path::Path,
    user: &str,
    password: &str,
) -> Option<(Bouncer, u16)> {
    start_pgbouncer_for(pg, dir, user, password, (200, 50))
}

/// PgBouncer in session mode for up to `clients` clients at once and
/// `pool` server connections.
fn start_pgbouncer_for(
    pg: &LocalPg,
    dir: &std::path::Path,
    user: &str,
    password: &str,
    (clients, pool): (usize, usize),
) -> Option<(Bouncer, u16)> {
    let bin = find_pgbouncer()?;
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
             max_client_conn = {clients}\ndefault_pool_size = {pool}\nlogfile = {}\n",
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
    let child = Bouncer(cmd.spawn().ok()?);
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
    if std::env::args().any(|a| a == "idle") {
        idle_sessions();
        return;
    }
    if std::env::args().any(|a| a == "orm") {
        orm_latency();
        return;
    }
    if std::env::args().any(|a| a == "mask") {
        mask_throughput();
        return;
    }
    // pgward runs in this process: tuned as the binary tunes itself.
    pgward::keep_freed_memory();
    let secs: u64 = std::env::var("PGWARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // Each run starts with this many seconds that are not counted: new
    // sessions through pgward reach their steady rate only after the
    // scheduler has settled (see the module comment).
    let warmup: u64 = std::env::var("PGWARD_BENCH_WARMUP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    // Each cell runs every target this many times, in random order, and
    // reports the median: a shared 2-core machine drifts within a run.
    let rounds: usize = std::env::var("PGWARD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
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

    // pgward runs in this process, on one runtime, in three set-ups: relaying
    // only (the policy switched off: the baseline), enforcing the example
    // read-only role "analyst" (alice), and also recording every session
    // and statement to the audit log.
    let (user, password) = ("bob", "bob-demo-password");
    let (ro_user, ro_password) = ("alice", "alice-demo-password");
    std::fs::write(dir.path().join("pw"), &pg.password).unwrap();
    std::fs::write(
        dir.path().join("pgward.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\npassword_file = \"pw\"\nsslmode = \"disable\"\n",
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
    // PGWARD_BENCH_AUDIT_DIR puts the audit files elsewhere (a tmpfs
    // separates the recording's own cost from the disk's).
    if let Ok(d) = std::env::var("PGWARD_BENCH_AUDIT_DIR") {
        config.audit.dir = PathBuf::from(d);
    }
    let rt = config.server.runtime().unwrap();
    let bouncer_found = find_pgbouncer().is_some();
    if !bouncer_found {
        eprintln!("PgBouncer not found (Debian: apt-get install pgbouncer); its rows are skipped");
    }

    // Every pgward runs in this process: its CPU time is the process's.
    let me = std::process::id();
    let mut targets = vec![Target {
        name: "direct",
        user: pg.superuser.clone(),
        password: pg.password.clone(),
        proxy: Proxy::Direct,
    }];
    if bouncer_found {
        targets.push(Target {
            name: "pgbouncer",
            user: user.into(),
            password: password.into(),
            proxy: Proxy::Bouncer,
        });
    }
    for (name, user, password, enforce, audit) in [
        ("pgward", user, password, false, false),
        ("pgward+policy", ro_user, ro_password, true, false),
        ("pgward+policy+audit", ro_user, ro_password, true, true),
    ] {
        targets.push(Target {
            name,
            user: user.into(),
            password: password.into(),
            proxy: Proxy::Pgward { enforce, audit },
        });
    }

    // PGWARD_BENCH_ONLY=name,name runs only those targets (for profiling).
    if let Ok(only) = std::env::var("PGWARD_BENCH_ONLY") {
        let keep: Vec<&str> = only.split(',').collect();
        targets.retain(|t| keep.contains(&t.name));
    }
    let modes: Vec<String> = std::env::var("PGWARD_BENCH_MODES")
        .map(|m| m.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|_| vec!["simple".into(), "prepared".into()]);
    let client_counts: Vec<u32> = std::env::var("PGWARD_BENCH_CLIENTS")
        .map(|c| c.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![1, 8]);
    let mut rows = Vec::new();
    for mode in modes.iter().map(String::as_str) {
        for &clients in &client_counts {
            let mut runs: Vec<Vec<(f64, f64, Option<f64>)>> = vec![Vec::new(); targets.len()];
            for round in 0..rounds {
                // A new random order each round: in a fixed (even a
                // rotating) order each target always follows the same
                // one, and what the previous run leaves behind (its
                // backends and proxy exiting, the caches it warmed) then
                // favours or hurts the same target every round.
                let mut order: Vec<usize> = (0..targets.len()).collect();
                order.shuffle(&mut rand::rng());
                for t in order {
                    let target = &targets[t];
                    let name = target.name;
                    // Each run gets a proxy of its own, started for it.
                    let (port, pid, running) = match target.proxy {
                        Proxy::Direct => (pg.port, None, Running::Nothing),
                        Proxy::Bouncer => {
                            let (b, port) = start_pgbouncer(&pg, dir.path(), user, password)
                                .expect("PgBouncer did not start");
                            (port, Some(b.0.id()), Running::Bouncer(b))
                        }
                        Proxy::Pgward { enforce, audit } => {
                            let mut config = config.clone();
                            config.audit.enabled = audit;
                            let (port, p) = Pgward::start(&rt, config, enforce);
                            (port, Some(me), Running::Pgward(p))
                        }
                    };
                    let c = format!(
                        "host=127.0.0.1 port={port} user={} dbname=postgres sslmode=disable",
                        target.user
                    );
                    let before = pid.and_then(cpu_secs);
                    let (tps, lat, txs) = pgbench(
                        &pgbench_bin,
                        &c,
                        &target.password,
                        mode,
                        clients,
                        (warmup, secs),
                    );
                    let cpu = before
                        .zip(pid.and_then(cpu_secs))
                        .map(|(b, a)| (a - b) * 1e6 / txs);
                    match running {
                        Running::Pgward(p) => p.stop(&rt),
                        Running::Bouncer(b) => drop(b),
                        Running::Nothing => {}
                    }
                    eprintln!(
                        "{mode:>8} c={clients} round {round} {name:>14}: {tps:>10.0} tps {lat:>7.3} ms {:>6.1} µs CPU/tx",
                        cpu.unwrap_or(f64::NAN)
                    );
                    runs[t].push((tps, lat, cpu));
                }
            }
            let per_round = targets
                .iter()
                .zip(&runs)
                .map(|(t, r)| (t.name.to_owned(), r.iter().map(|x| x.0).collect()))
                .collect();
            let results = targets
                .iter()
                .zip(runs)
                .map(|(t, r)| {
                    let cpu: Vec<f64> = r.iter().filter_map(|x| x.2).collect();
                    (
                        t.name.to_owned(),
                        median(r.iter().map(|x| x.0).collect()),
                        median(r.iter().map(|x| x.1).collect()),
                        (!cpu.is_empty()).then(|| median(cpu)),
                    )
                })
                .collect();
            rows.push(Row {
                mode: mode.to_owned(),
                clients,
                results,
                per_round,
            });
        }
    }

    println!("\npgbench -S, scale 10, median of {rounds} runs per target and cell (targets in random order); each run {warmup} s of warm-up, then {secs} s counted (TPS and latency of those seconds; CPU per transaction over the whole run), connections excluded\n");
    let mut header = String::from("| mode | clients |");
    for t in &targets {
        let n = t.name;
        header.push_str(&format!(" {n} TPS | {n} ms |"));
        if !matches!(t.proxy, Proxy::Direct) {
            header.push_str(&format!(" {n} CPU µs/tx |"));
        }
    }
    // Ratios with a target that did not run (PgBouncer missing) are left out.
    let ratios: Vec<_> = RATIOS
        .iter()
        .filter(|(_, a, b)| [a, b].iter().all(|t| targets.iter().any(|x| x.name == **t)))
        .collect();
    let ratio_header: String = ratios.iter().map(|(l, _, _)| format!(" {l} |")).collect();
    header.push_str(&ratio_header);
    print_table(
        &header,
        rows.iter().map(|row| {
            let mut line = format!("| {} | {} |", row.mode, row.clients);
            for r in &row.results {
                line.push_str(&format!(" {:.0} | {:.3} |", r.1, r.2));
                if let Some(cpu) = r.3 {
                    line.push_str(&format!(" {cpu:.1} |"));
                }
            }
            for (_, a, b) in &ratios {
                line.push_str(&format!(" {:.2} |", row.tps(a) / row.tps(b)));
            }
            line
        }),
    );

    println!("\nThe same ratios paired by round: the median over the {rounds} rounds of the two targets' TPS ratio within the round, and in brackets a 95% confidence interval for that median (order statistics; from 6 rounds)\n");
    print_table(
        &format!("| mode | clients |{ratio_header}"),
        rows.iter().map(|row| {
            let mut line = format!("| {} | {} |", row.mode, row.clients);
            for (_, a, b) in &ratios {
                line.push_str(&format!(" {:.2}", row.paired(a, b)));
                if let Some((lo, hi)) = median_interval(row.ratios(a, b)) {
                    line.push_str(&format!(" ({lo:.2}-{hi:.2})"));
                }
                line.push_str(" |");
            }
            line
        }),
    );
    drop(rt);
    drop(pg);
}

/// Resident memory (kB) and thread count of a process, from /proc.
fn rss_and_threads(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

/// A proxy process, killed when dropped (also when the measurement panics).
struct Child2(Child);

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections on `port`.
fn wait_for_port(port: u16) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// What a proxy process costs with `n` idle sessions.
struct IdleCost {
    name: &'static str,
    idle: (u64, u64),
    loaded: (u64, u64),
    answered: usize,
}

/// Opens `n` authenticated sessions through `port` (each runs one query,
/// so each is past its startup), leaves them idle, and reads the proxy's
/// RSS and threads before (after one session came and went) and with them
/// all open; then checks each session still answers.
fn measure_idle(
    rt: &tokio::runtime::Runtime,
    name: &'static str,
    pid: u32,
    conninfo: &str,
    n: usize,
) -> IdleCost {
    use futures_util::stream::{self, StreamExt};
    let connect = |conninfo: String| async move {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        tokio::spawn(conn);
        client
            .simple_query("SELECT 1")
            .await
            .unwrap_or_else(|e| panic!("{name}: first query: {e}"));
        client
    };
    // One session first: what any first session loads (pgward: the
    // database's catalog) is not a cost per session.
    rt.block_on(async { drop(connect(conninfo.to_owned()).await) });
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_and_threads(pid).expect("proxy's /proc status");
    let clients: Vec<_> = rt.block_on(
        stream::iter((0..n).map(|_| connect(conninfo.to_owned())))
            .buffer_unordered(16)
            .collect(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let loaded = rss_and_threads(pid).expect("proxy's /proc status");
    let answered = rt.block_on(async {
        let mut ok = 0;
        for c in &clients {
            if c.simple_query("SELECT 1").await.is_ok() {
                ok += 1;
            }
        }
        ok
    });
    drop(clients);
    IdleCost {
        name,
        idle,
        loaded,
        answered,
    }
}

/// `cargo bench --bench e2e -- idle`: what idle sessions cost a proxy.
/// PGWARD_IDLE_SESSIONS (default 500) sessions through pgward (the built
/// binary, `pgward serve`, as the read-only role with the policy and the
/// audit log on) and through PgBouncer (session mode), each proxy in a
/// process of its own, one after the other.
fn idle_sessions() {
    let n: usize = std::env::var("PGWARD_IDLE_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let pg = LocalPg::start_with(pgward::localpg::Options {
        conf: vec![format!("max_connections = {}", n + 50)],
        ..Default::default()
    })
    .expect("start PostgreSQL");
    let dir = tempfile::Builder::new()
        .prefix("pgward-idle-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut costs = Vec::new();

    // pgward: the example rules, the roles connecting as the superuser.
    let (child, port) = serve_example_rules(
        &pg,
        dir.path(),
        |rules| rules,
        &format!("max_connections = {}\n", n + 10),
    );
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=alice password=alice-demo-password dbname=postgres sslmode=disable"
    );
    costs.push(measure_idle(&rt, "pgward", child.0.id(), &conninfo, n));
    drop(child);

    match find_pgbouncer() {
        Some(_) => {
            let (user, password) = ("bob", "bob-demo-password");
            let (b, port) = start_pgbouncer_for(&pg, dir.path(), user, password, (n + 10, n + 10))
                .expect("PgBouncer did not start");
            let conninfo = format!(
                "host=127.0.0.1 port={port} user={user} password={password} dbname=postgres sslmode=disable"
            );
            costs.push(measure_idle(&rt, "PgBouncer", b.0.id(), &conninfo, n));
        }
        None => {
            eprintln!("PgBouncer not found (Debian: apt-get install pgbouncer); its row is skipped")
        }
    }

    println!("\n{n} idle sessions, each authenticated and past one query; the proxy's resident memory and threads after one session came and went, and with the {n} open (3 s after the last opened)\n");
    print_table(
        "| proxy | RSS idle (MB) | RSS with sessions (MB) | extra RSS (MB) | per session (kB) | threads idle | threads with sessions | sessions answering after |",
        costs.iter().map(|c| {
            let extra = c.loaded.0 as f64 - c.idle.0 as f64;
            format!(
                "| {} | {:.1} | {:.1} | {:+.1} | {:.1} | {} | {} | {}/{n} |",
                c.name,
                c.idle.0 as f64 / 1024.0,
                c.loaded.0 as f64 / 1024.0,
                extra / 1024.0,
                extra / n as f64,
                c.idle.1,
                c.loaded.1,
                c.answered,
            )
        }),
    );
    drop(rt);
    drop(pg);
}

/// Appends one protocol message.
fn put_msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

/// Reads one message (type, body) from a blocking socket.
fn read_msg(s: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("read a message header");
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).expect("read a message body");
    (head[0], body)
}

/// A blocking connection signed in with SCRAM-SHA-256 (or trust), ready
/// for queries.
fn orm_connect(port: u16, user: &str, password: &str) -> std::net::TcpStream {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::frontend;
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).unwrap();
    let mut b = bytes::BytesMut::new();
    frontend::startup_message([("user", user), ("database", "postgres")], &mut b).unwrap();
    s.write_all(&b).unwrap();
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    loop {
        let (tag, body) = read_msg(&mut s);
        let mut out = bytes::BytesMut::new();
        match tag {
            b'Z' => return s,
            b'E' => panic!("sign-in refused: {}", String::from_utf8_lossy(&body)),
            b'R' => match i32::from_be_bytes([body[0], body[1], body[2], body[3]]) {
                10 => frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)
                    .unwrap(),
                11 => {
                    scram.update(&body[4..]).unwrap();
                    frontend::sasl_response(scram.message(), &mut out).unwrap();
                }
                12 => scram.finish(&body[4..]).unwrap(),
                _ => {}
            },
            _ => {}
        }
        s.write_all(&out).unwrap();
    }
}

/// One ORM-shaped query: Parse (unnamed), Bind with `id`, Describe of the
/// portal, Execute, Sync; reads the answer up to ReadyForQuery.
fn orm_query(s: &mut std::net::TcpStream, out: &mut Vec<u8>, id: u64) {
    use std::io::Write;
    out.clear();
    put_msg(
        out,
        b'P',
        b"\0SELECT \"pgbench_accounts\".\"aid\", \"pgbench_accounts\".\"abalance\" FROM \"pgbench_accounts\" WHERE \"pgbench_accounts\".\"aid\" = $1 LIMIT 21\0\0\x01\0\0\0\x14",
    );
    let value = id.to_string();
    let mut bind = b"\0\0\0\x01\0\0\0\x01".to_vec();
    bind.extend_from_slice(&(value.len() as u32).to_be_bytes());
    bind.extend_from_slice(value.as_bytes());
    bind.extend_from_slice(b"\0\0");
    put_msg(out, b'B', &bind);
    put_msg(out, b'D', b"P\0");
    put_msg(out, b'E', b"\0\0\0\0\0");
    put_msg(out, b'S', b"");
    s.write_all(out).unwrap();
    loop {
        match read_msg(s) {
            (b'Z', _) => return,
            (b'E', body) => panic!("query failed: {}", String::from_utf8_lossy(&body)),
            _ => {}
        }
    }
}

/// Mean microseconds per ORM-shaped query over `n` queries (after a
/// warm-up), one at a time on one connection.
fn orm_run(port: u16, user: &str, password: &str, n: u64) -> f64 {
    let mut s = orm_connect(port, user, password);
    let mut buf = Vec::new();
    for i in 0..500 {
        orm_query(&mut s, &mut buf, 1 + i % 100_000);
    }
    let started = std::time::Instant::now();
    for i in 0..n {
        orm_query(&mut s, &mut buf, 1 + (i * 7919) % 100_000);
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// `cargo bench --bench e2e -- orm`: the time per ORM-shaped query, direct
/// and through each proxy (see the module comment).
fn orm_latency() {
    pgward::keep_freed_memory();
    let n: u64 = std::env::var("PGWARD_ORM_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let rounds: usize = std::env::var("PGWARD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let pgbench_bin =
        find_program("pgbench").expect("pgbench not found: install PostgreSQL's client tools");
    let pg = LocalPg::start().expect("start PostgreSQL");
    let init = Command::new(&pgbench_bin)
        .args(["-i", "-q", "-s", "1", &pg.conninfo("postgres")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(init.success(), "pgbench -i failed");
    let dir = tempfile::Builder::new()
        .prefix("pgward-orm-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.path().join("pw"), &pg.password).unwrap();
    std::fs::write(
        dir.path().join("pgward.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\npassword_file = \"pw\"\nsslmode = \"disable\"\n",
            pg.url("postgres")
        ),
    )
    .unwrap();
    let config = pgward::config::Config::load(&dir.path().join("pgward.toml")).unwrap();
    let rt = config.server.runtime().unwrap();
    let (bouncer_user, bouncer_password) = ("bob", "bob-demo-password");
    let (user, password) = ("alice", "alice-demo-password");
    let mut targets: Vec<(&str, Proxy)> = vec![("direct", Proxy::Direct)];
    if find_pgbouncer().is_some() {
        targets.push(("pgbouncer", Proxy::Bouncer));
    } else {
        eprintln!("PgBouncer not found (Debian: apt-get install pgbouncer); its row is skipped");
    }
    targets.push((
        "pgward+policy",
        Proxy::Pgward {
            enforce: true,
            audit: false,
        },
    ));
    targets.push((
        "pgward+policy+audit",
        Proxy::Pgward {
            enforce: true,
            audit: true,
        },
    ));
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.shuffle(&mut rand::rng());
        for t in order {
            let (name, proxy) = &targets[t];
            let us = match proxy {
                Proxy::Direct => orm_run(pg.port, &pg.superuser, &pg.password, n),
                Proxy::Bouncer => {
                    let (b, port) =
                        start_pgbouncer(&pg, dir.path(), bouncer_user, bouncer_password)
                            .expect("PgBouncer did not start");
                    let us = orm_run(port, bouncer_user, bouncer_password, n);
                    drop(b);
                    us
                }
                Proxy::Pgward { enforce, audit } => {
                    let mut config = config.clone();
                    config.audit.enabled = *audit;
                    let (port, p) = Pgward::start(&rt, config, *enforce);
                    let us = orm_run(port, user, password, n);
                    p.stop(&rt);
                    us
                }
            };
            eprintln!("orm round {round} {name:>20}: {us:>8.1} µs/query");
            times[t].push(us);
        }
    }
    let medians: Vec<f64> = times.into_iter().map(median).collect();
    let direct = medians[0];
    println!("\nORM-shaped queries (unnamed Parse, Bind, Describe portal, Execute, Sync; one at a time, one connection), {n} per run, median of {rounds} runs per target in random order\n");
    print_table(
        "| target | µs per query | added to direct, µs |",
        targets
            .iter()
            .zip(&medians)
            .map(|((name, _), us)| format!("| {name} | {us:.1} | {:.1} |", us - direct)),
    );
    drop(rt);
    drop(pg);
}

/// `cargo bench --bench e2e -- mask`: what masking costs a large result.
/// PGWARD_MASK_ROWS (default 1,000,000) customers rows read through one
/// pgward (`pgward serve`, the example rules, audit on) as dana, who sees
/// them in clear, and as the agent, who sees `email` and `ssn` masked:
/// `SELECT *` with binary results (tokio-postgres) and `COPY ... TO
/// STDOUT` (text), each the median of PGWARD_BENCH_ROUNDS (3) runs.
fn mask_throughput() {
    let n: u64 = std::env::var("PGWARD_MASK_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("PGWARD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let pg = LocalPg::start().expect("start PostgreSQL");
    let dir = tempfile::Builder::new()
        .prefix("pgward-mask-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute(&format!(
            "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, ssn text NOT NULL);
             INSERT INTO customers SELECT i, 'Customer ' || i, 'user' || i || '@example.com',
               lpad((i % 1000)::text, 3, '0') || '-' || lpad((i % 100)::text, 2, '0') || '-' || lpad((i % 10000)::text, 4, '0')
             FROM generate_series(1, {n}) i"
        ))
        .await
        .unwrap();
        c.batch_execute("VACUUM ANALYZE customers").await.unwrap();
    });

    // The example rules, every role as the superuser; the agent may also
    // COPY out (its example rules allow only reads).
    let (child, port) = serve_example_rules(
        &pg,
        dir.path(),
        |rules| {
            let (from, to) = (
                "[role.agent]\nallow = [\"read\", \"session\", \"transaction\"]",
                "[role.agent]\nallow = [\"read\", \"session\", \"transaction\", \"copy_out\"]",
            );
            rules.replace(from, to)
        },
        "",
    );

    let through = |user: &str, password: &str| {
        format!("host=127.0.0.1 port={port} user={user} password={password} dbname=postgres sslmode=disable")
    };
    let who = [
        ("direct", pg.conninfo("postgres")),
        ("dana (clear)", through("dana", "dana-demo-password")),
        ("agent (masked)", through("agent", "agent-demo-password")),
    ];
    // (who, what) -> seconds per run
    let mut times: Vec<(String, &str, Vec<f64>)> = Vec::new();
    for (name, conninfo) in &who {
        for what in ["select", "copy"] {
            times.push((name.to_string(), what, Vec::new()));
        }
        let _ = conninfo;
    }
    let mut order: Vec<usize> = (0..times.len()).collect();
    for _ in 0..rounds {
        order.shuffle(&mut rand::rng());
        for &i in &order {
            let (name, what, _) = &times[i];
            let conninfo = &who.iter().find(|(n, _)| n == name).unwrap().1;
            let (secs, got) = rt.block_on(read_all(conninfo, what));
            assert_eq!(got, n, "{name} {what}: every row");
            times[i].2.push(secs);
        }
    }
    drop(child);
    println!("\n{n} rows of customers (id, name, email, ssn), read whole; the agent sees email and ssn masked (email, partial(0,4)); median of {rounds}\n");
    let rate = |name: &str, what: &str| {
        let t = times
            .iter()
            .find(|(n, w, _)| n == name && *w == what)
            .unwrap();
        n as f64 / median(t.2.clone())
    };
    print_table(
        "| through | SELECT * (binary), rows/s | COPY TO (text), rows/s |",
        who.iter().map(|(name, _)| {
            format!(
                "| {name} | {:.0} | {:.0} |",
                rate(name, "select"),
                rate(name, "copy")
            )
        }),
    );
    println!(
        "\nmasked / clear through pgward: SELECT {:.2}, COPY {:.2} (target: at least 0.8)",
        rate("agent (masked)", "select") / rate("dana (clear)", "select"),
        rate("agent (masked)", "copy") / rate("dana (clear)", "copy"),
    );
    drop(rt);
    drop(pg);
}

/// Reads the whole table once: (seconds, rows).
async fn read_all(conninfo: &str, what: &str) -> (f64, u64) {
    use futures_util::{StreamExt, TryStreamExt};
    let (c, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let start = std::time::Instant::now();
    let rows = match what {
        "select" => {
            let stream = c
                .query_raw(
                    "SELECT id, name, email, ssn FROM customers",
                    std::iter::empty::<i32>(),
                )
                .await
                .expect("select");
            futures_util::pin_mut!(stream);
            let mut n = 0u64;
            while let Some(row) = stream.next().await {
                let row = row.expect("a row");
                let _: &str = row.get(3);
                n += 1;
            }
            n
        }
        _ => {
            let stream = c.copy_out("COPY customers TO STDOUT").await.expect("copy");
            stream
                .try_fold(0u64, |n, b| async move {
                    Ok(n + b.iter().filter(|&&x| x == b'\n').count() as u64)
                })
                .await
                .expect("copy data")
        }
    };
    (start.elapsed().as_secs_f64(), rows)
}

/// `pgward serve` (the built binary, audit log on) in front of `pg` with
/// the example rules, each file passed through `edit`, every role
/// connecting as the superuser (no `upstream_user`); `server` is extra
/// TOML for `[server]`. The running child and its port.
fn serve_example_rules(
    pg: &LocalPg,
    dir: &std::path::Path,
    edit: impl Fn(String) -> String,
    server: &str,
) -> (Child2, u16) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = edit(std::fs::read_to_string(&path).unwrap());
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("upstream_user"))
                .collect();
            std::fs::write(rules.join(path.file_name().unwrap()), kept.join("\n")).unwrap();
        }
    }
    std::fs::write(dir.join("pw"), &pg.password).unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("pgward.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{server}\
             [upstream]\nurl = \"{}\"\npassword_file = \"{}\"\nsslmode = \"disable\"\n\
             [rules]\ndir = \"{}\"\n[audit]\nenabled = true\ndir = \"{}\"\n",
            pg.url("postgres"),
            dir.join("pw").display(),
            rules.display(),
            dir.join("audit").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("pgward.log")).unwrap();
    let child = Child2(
        Command::new(env!("CARGO_BIN_EXE_pgward"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("pgward.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pgward"),
    );
    assert!(wait_for_port(port), "pgward did not start");
    (child, port)
}
