//! A throwaway PostgreSQL cluster: initdb and pg_ctl from the installed
//! PostgreSQL, a temp directory, a free port on 127.0.0.1, SCRAM auth.
//! `pgward demo` and the test suite both use this one implementation.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rand::distr::{Alphanumeric, SampleString};

/// Extra settings for a cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// pg_hba.conf lines placed before the default SCRAM lines.
    pub hba: Vec<String>,
    /// postgresql.conf lines appended after pgward's defaults.
    pub conf: Vec<String>,
    /// Files (name, contents) written into the data directory before start,
    /// e.g. a TLS certificate and key.
    pub files: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error("PostgreSQL server binaries not found (looked for initdb and pg_ctl on PATH, via pg_config --bindir, and under /usr/lib/postgresql/*/bin); install them, e.g. `apt-get install postgresql` on Debian/Ubuntu or `brew install postgresql@15` on macOS")]
    NotInstalled,
    #[error("{step}: {detail}")]
    Step { step: String, detail: String },
}

fn step(step: &str, detail: impl std::fmt::Display) -> LocalPgError {
    LocalPgError::Step {
        step: step.to_owned(),
        detail: detail.to_string(),
    }
}

/// A running cluster; stopped and deleted on drop.
pub struct LocalPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    pub port: u16,
    pub superuser: String,
    pub password: String,
    stopped: bool,
}

impl LocalPg {
    pub fn start() -> Result<LocalPg, LocalPgError> {
        LocalPg::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Result<LocalPg, LocalPgError> {
        let bin = find_bindir().ok_or(LocalPgError::NotInstalled)?;
        let run_as = non_root_user()?;
        let dir = tempfile::Builder::new()
            .prefix("pgward-localpg-")
            .tempdir()
            .map_err(|e| step("creating a temp directory", e))?;
        let password = Alphanumeric.sample_string(&mut rand::rng(), 24);
        let mut pg = LocalPg {
            dir,
            bin,
            run_as,
            port: 0,
            superuser: "postgres".into(),
            password,
            stopped: true,
        };
        pg.chown(pg.dir.path())?;
        let pwfile = pg.dir.path().join("pwfile");
        write_file(&pwfile, &pg.password)?;
        pg.chown(&pwfile)?;
        let data = pg.data_dir();
        pg.run(
            "initdb",
            Command::new(pg.bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .arg("--no-sync"),
        )?;
        let mut hba = String::new();
        for line in &options.hba {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n");
        write_file(&data.join("pg_hba.conf"), &hba)?;
        for (name, contents) in &options.files {
            let path = data.join(name);
            write_file(&path, contents)?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| step("chmod", e))?;
            pg.chown(&path)?;
        }
        let base_conf = format!(
            "\n# added by pgward localpg\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\nshared_buffers = 64MB\n",
            pg.dir.path().display()
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|e| step("opening postgresql.conf", e))?;
        conf.write_all(base_conf.as_bytes())
            .and_then(|()| options.conf.iter().try_for_each(|l| writeln!(conf, "{l}")))
            .map_err(|e| step("writing postgresql.conf", e))?;

        // A port can be taken between probing and binding: try a few.
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let log = pg.dir.path().join("postgres.log");
            let started = pg.run(
                "pg_ctl start",
                Command::new(pg.bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "60", "-o"])
                    .arg(format!("-p {port}"))
                    .arg("start"),
            );
            match started {
                Ok(_) => {
                    pg.port = port;
                    pg.stopped = false;
                    return Ok(pg);
                }
                Err(e) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    last = Some(step(
                        "pg_ctl start",
                        format!(
                            "{e}\nserver log:\n{}",
                            tail.lines().rev().take(10).collect::<Vec<_>>().join("\n")
                        ),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| step("pg_ctl start", "failed")))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The cluster's directory (socket, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A URL without the password, for pgward's `upstream.url`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            self.superuser, self.port
        )
    }

    /// A libpq connection string with the password, for direct clients.
    pub fn conninfo(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={database}",
            self.port, self.superuser, self.password
        )
    }

    /// Runs SQL as the superuser with psql; fails on the first error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, LocalPgError> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", &self.superuser, "-d", database, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| step("running psql", e))?;
        if !out.status.success() {
            return Err(step(
                "psql",
                format!("{sql}: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let data = self.data_dir();
        let _ = self.run(
            "pg_ctl stop",
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"]),
        );
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<Output, LocalPgError> {
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(Stdio::null()).env_remove("PGDATA");
        let out = cmd.output().map_err(|e| step(what, e))?;
        if !out.status.success() {
            return Err(step(
                what,
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(out)
    }

    fn chown(&self, path: &Path) -> Result<(), LocalPgError> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(
                path,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| step(&format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), LocalPgError> {
    std::fs::write(path, contents).map_err(|e| step(&format!("writing {}", path.display()), e))
}

fn free_port() -> Result<u16, LocalPgError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| step("finding a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| step("finding a free port", e))
}

/// PostgreSQL (and PgBouncer) refuse to run as root: when we are root, the
/// uid and gid of the `postgres` user (or `nobody`) to run them as.
pub fn non_root_user() -> Result<Option<(u32, u32)>, LocalPgError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            return Ok(Some((u.uid.as_raw(), u.gid.as_raw())));
        }
    }
    Err(step(
        "running as root",
        "PostgreSQL refuses to run as root and there is no `postgres` or `nobody` user to run it as; create one (useradd postgres) or run as a normal user",
    ))
}

/// Finds the directory with initdb and pg_ctl.
pub fn find_bindir() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_tools(&d) {
                // Prefer the real directory so psql and pgbench sit beside it.
                let real = std::fs::canonicalize(d.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|r| has_tools(r));
                return Some(real.unwrap_or(d));
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_tools(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// Finds a client program (psql, pgbench): beside the server, or on PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if let Some(d) = find_bindir() {
        if d.join(name).is_file() {
            return Some(d.join(name));
        }
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
