//! The `pgward` command line. Everything it runs lives in the library.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pgward::auth::scram::{Verifier, DEFAULT_ITERATIONS};
use pgward::config::Config;
use pgward::rules::Rules;

#[derive(Parser)]
#[command(
    name = "pgward",
    version,
    about = "A PostgreSQL firewall for people and AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the firewall.
    Serve {
        /// The config file.
        #[arg(long, default_value = "pgward.toml")]
        config: PathBuf,
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Upstream URL postgres://user@host:port/db (overrides upstream.url).
        /// The password comes from upstream.password_env or password_file.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Start a throwaway PostgreSQL with sample data and pgward in front of it.
    Demo {
        /// Address pgward listens on.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: SocketAddr,
        /// Where the audit log goes (kept after the demo ends).
        #[arg(long, default_value = "pgward-demo-audit")]
        audit_dir: PathBuf,
    },
    /// Validate a rules directory: files, identities, roles, references.
    /// With --config, also ask the upstream whether a role that may not
    /// run everything connects as a superuser or a member of
    /// pg_read_server_files, pg_write_server_files or
    /// pg_execute_server_program.
    Check {
        /// The rules directory (default: the config's rules.dir, else "rules").
        dir: Option<PathBuf>,
        /// A config file: validate it, and check the upstream users'
        /// privileges over its upstream connection.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show how each statement is classified and what a role may do with it.
    Explain {
        /// The role to decide for.
        #[arg(long)]
        role: String,
        /// The rules directory.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// A config file: use the live catalog of its upstream database
        /// (user functions, views) instead of the built-in snapshot.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The SQL ("-" reads it from stdin).
        sql: String,
    },
    /// Print a recorded session as a transcript, or re-execute it elsewhere.
    Replay {
        /// The audit directory.
        dir: PathBuf,
        /// The session's id (the session_id column).
        #[arg(long)]
        session: String,
        /// Re-execute the session's allowed statements against this
        /// database (postgres://user@host:port/db; the password may come
        /// from PGPASSWORD) and report where results differ.
        #[arg(long)]
        to: Option<String>,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a SCRAM-SHA-256 verifier for a password read from stdin.
    HashPassword {
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every file and row of an audit directory against the hash
    /// chain; exit status 1 names what was modified, deleted, inserted,
    /// reordered or missing.
    Verify {
        /// The audit directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    pgward::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "pgward=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            upstream,
        } => serve(config, listen, upstream),
        Command::Demo { listen, audit_dir } => {
            runtime().and_then(|rt| rt.block_on(pgward::demo::run(listen, &audit_dir)))
        }
        Command::HashPassword { iterations } => hash_password(iterations),
        Command::Replay { dir, session, to } => replay(&dir, &session, to.as_deref()),
        Command::Audit {
            command: AuditCommand::Verify { dir },
        } => verify(&dir),
        Command::Check { dir, config } => check(dir, config),
        Command::Explain {
            role,
            rules,
            config,
            sql,
        } => explain(&role, rules, config, sql),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgward: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    pgward::policy::runtime_builder()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))
}

fn serve(
    path: PathBuf,
    listen: Option<SocketAddr>,
    upstream: Option<String>,
) -> Result<(), String> {
    let mut config = Config::load(&path).map_err(|e| e.to_string())?;
    if let Some(l) = listen {
        config.server.listen = l;
    }
    if let Some(u) = upstream {
        config.upstream.url = u;
        config
            .validate(&path)
            .map_err(|e| format!("--upstream: {e}"))?;
    }
    let rules = Rules::load(&config.rules.dir).map_err(|e| e.to_string())?;
    let rules_dir = config.rules.dir.clone();
    let rt = config
        .server
        .runtime()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async move {
        let shared = pgward::server::Shared::new(config, rules)?;
        shared
            .start_workers()
            .map_err(|e| format!("starting the session threads: {e}"))?;
        let addr = shared.config.server.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!(
            "pgward listening on {addr}, upstream {}",
            shared.config.upstream.url
        );
        // The second lock: warn about roles whose upstream user could do
        // what the role may not (in the background; serving starts now).
        tokio::spawn(pgward::privileges::warn_at_start(
            shared.upstream.clone(),
            shared.rules(),
        ));
        pgward::server::spawn_reload_on_sighup(shared.clone(), rules_dir);
        pgward::server::run(listener, shared, pgward::server::termination()).await;
        Ok(())
    })
}

fn check(dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<(), String> {
    let config = config
        .map(|path| Config::load(&path).map_err(|e| e.to_string()))
        .transpose()?;
    let dir = dir
        .or_else(|| config.as_ref().map(|c| c.rules.dir.clone()))
        .unwrap_or_else(|| PathBuf::from("rules"));
    let rules = Rules::load(&dir).map_err(|e| e.to_string())?;
    let mut roles: Vec<&String> = rules.roles.keys().collect();
    roles.sort();
    println!(
        "{}: OK ({} identities, {} OIDC bindings; roles: {})",
        dir.display(),
        rules.identities.len(),
        rules.bindings.len(),
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(config) = config {
        check_upstream_users(&config, &rules)?;
        check_masks(&config, &rules)?;
    } else if rules.roles.values().any(|r| !r.masks.is_empty()) {
        println!("masks: not checked against the database's catalog (give --config)");
    }
    Ok(())
}

/// Refuses masks on columns the live catalog lacks (file and line of
/// each), and `hash` masks without a usable key.
fn check_masks(config: &Config, rules: &Rules) -> Result<(), String> {
    let mut roles: Vec<&pgward::policy::Role> = rules
        .roles
        .values()
        .map(|r| r.as_ref())
        .filter(|r| !r.masks.is_empty())
        .collect();
    if roles.is_empty() {
        return Ok(());
    }
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    let uses_hash = roles
        .iter()
        .flat_map(|r| &r.masks)
        .any(|m| m.func == pgward::mask::MaskFn::Hash);
    match config.mask.hash_key() {
        Err(e) => return Err(format!("mask.hash_key_env: {e}")),
        Ok(None) if uses_hash => {
            println!("warning: hash masks show NULL: no key (set mask.hash_key_env in the config)")
        }
        Ok(_) => {}
    }
    let upstream = pgward::upstream::Upstream::from_config(config)?;
    let database = upstream.default_database();
    let catalog = runtime()?
        .block_on(pgward::policy::Catalog::load(&upstream, &database))
        .map_err(|e| format!("loading the catalog of {database} to check masks: {e}"))?;
    let missing: Vec<String> = roles
        .iter()
        .flat_map(|r| pgward::mask::missing_columns(r, &catalog))
        .collect();
    if !missing.is_empty() {
        return Err(missing.join("\n"));
    }
    let count: usize = roles.iter().map(|r| r.masks.len()).sum();
    println!("masks: OK ({count} columns, each in the catalog of {database})");
    Ok(())
}

/// Prints what `pgward::privileges::check` finds, or that each checked
/// role's upstream user is neither a superuser nor reaches server files.
fn check_upstream_users(config: &Config, rules: &Rules) -> Result<(), String> {
    let upstream = pgward::upstream::Upstream::from_config(config)?;
    let findings = runtime()?
        .block_on(pgward::privileges::check(&upstream, rules))
        .map_err(|e| {
            format!(
                "checking the upstream users' privileges as {:?}: {e}",
                upstream.target.user
            )
        })?;
    let checked = pgward::privileges::roles_to_check(rules, &upstream.target.user);
    for f in &findings {
        println!("warning: {f}");
    }
    let fine: Vec<String> = checked
        .iter()
        .filter(|(role, _)| !findings.iter().any(|f| &f.role == role))
        .map(|(role, user)| format!("{role} as {user}"))
        .collect();
    let mut everything: Vec<&str> = rules
        .roles
        .values()
        .filter(|r| r.allows_every_class())
        .map(|r| r.name.as_str())
        .collect();
    everything.sort();
    if !everything.is_empty() {
        println!(
            "upstream users: not checked for {} (allow every class)",
            everything.join(", ")
        );
    }
    if !fine.is_empty() {
        println!(
            "upstream users: OK for {} (neither superusers nor members of {})",
            fine.join(", "),
            pgward::privileges::SERVER_FILE_ROLES.join(", ")
        );
    }
    Ok(())
}

fn explain(
    role: &str,
    rules_dir: PathBuf,
    config: Option<PathBuf>,
    sql: String,
) -> Result<(), String> {
    let rules = Rules::load(&rules_dir).map_err(|e| e.to_string())?;
    let role = rules.roles.get(role).ok_or_else(|| {
        let mut known: Vec<&str> = rules.roles.keys().map(String::as_str).collect();
        known.sort();
        format!(
            "role {role:?} is not declared in {}; roles: {}",
            rules_dir.display(),
            known.join(", ")
        )
    })?;
    let sql = if sql == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("reading SQL from stdin: {e}"))?;
        text
    } else {
        sql
    };
    let catalog = match config {
        None => pgward::policy::Catalog::builtin(),
        Some(path) => {
            let mut config = Config::load(&path).map_err(|e| e.to_string())?;
            // Only the catalog is wanted here, not a second audit writer.
            config.audit.enabled = false;
            let shared = pgward::server::Shared::new(config, Rules::default())?;
            let database = shared.upstream.default_database();
            runtime()?
                .block_on(pgward::policy::Catalog::load(&shared.upstream, &database))
                .map_err(|e| format!("loading the catalog of {database}: {e}"))?
        }
    };
    print!("{}", pgward::policy::explain::report(role, &sql, &catalog));
    Ok(())
}

fn verify(dir: &std::path::Path) -> Result<(), String> {
    let report = pgward::audit::verify::verify(dir)?;
    println!("{report}");
    if report.ok() {
        Ok(())
    } else {
        Err(format!("{} failed verification", dir.display()))
    }
}

fn replay(dir: &std::path::Path, session: &str, to: Option<&str>) -> Result<(), String> {
    let events = pgward::audit::replay::session_events(dir, session)?;
    let Some(url) = to else {
        print!("{}", pgward::audit::replay::transcript(&events));
        return Ok(());
    };
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("--to {url}: not a PostgreSQL URL: {e}"))?;
    if config.get_password().is_none() {
        if let Ok(p) = std::env::var("PGPASSWORD") {
            config.password(p);
        }
    }
    let report = runtime()?.block_on(async {
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connecting to --to: {e}"))?;
        tokio::spawn(conn);
        Ok::<_, String>(pgward::audit::replay::replay(&events, &client).await)
    })?;
    println!("{report}");
    if report.diverged.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} statement(s) diverged from the recording",
            report.diverged.len()
        ))
    }
}

fn hash_password(iterations: u32) -> Result<(), String> {
    if iterations < 4096 {
        return Err("--iterations must be at least 4096".into());
    }
    let stdin = std::io::stdin();
    if std::io::IsTerminal::is_terminal(&stdin) {
        eprintln!("password (input is echoed; pipe it in to avoid that):");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err("empty password".into());
    }
    println!("{}", Verifier::generate(password, iterations));
    Ok(())
}
