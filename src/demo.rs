//! `pgward demo`: a throwaway PostgreSQL with a small shop schema, pgward in
//! front of it with the example rules, and psql commands to paste.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;
use crate::localpg::LocalPg;
use crate::rules::Rules;

/// The example rules shipped in `rules/`, built in so the demo runs from
/// any directory.
pub const EXAMPLE_RULES: &[(&str, &str)] = &[
    (
        "rules/identities.toml",
        include_str!("../rules/identities.toml"),
    ),
    ("rules/roles.toml", include_str!("../rules/roles.toml")),
    (
        "rules/bindings.toml",
        include_str!("../rules/bindings.toml"),
    ),
];

/// The example identities and their demo passwords (only for the demo: the
/// rules hold SCRAM verifiers, never these).
pub const DEMO_IDENTITIES: &[(&str, &str, &str)] = &[
    ("alice", "alice-demo-password", "analyst: reads reports"),
    (
        "bob",
        "bob-demo-password",
        "app: the application's own account",
    ),
    ("dana", "dana-demo-password", "dba: approves migrations"),
    ("agent", "agent-demo-password", "an AI coding agent"),
];

pub const SAMPLE_SCHEMA: &str = "
CREATE TABLE customers (
    id    serial PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL,
    ssn   text NOT NULL
);
CREATE TABLE orders (
    id          serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers(id),
    amount      numeric(10,2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers (name, email, ssn) VALUES
    ('Ada Lovelace', 'ada@example.com', '078-05-1120'),
    ('Alan Turing', 'alan@example.com', '219-09-9999'),
    ('Grace Hopper', 'grace@example.com', '457-55-5462');
INSERT INTO orders (customer_id, amount) VALUES (1, 120.50), (1, 15.00), (2, 99.99), (3, 42.00);
CREATE TABLE api_keys (
    id      serial PRIMARY KEY,
    service text NOT NULL,
    secret  text NOT NULL
);
INSERT INTO api_keys (service, secret) VALUES ('payments', 'sk_live_demo_only');
";

/// Loads the built-in example rules.
pub fn example_rules() -> Result<Rules, String> {
    let mut rules = Rules::default();
    for (name, text) in EXAMPLE_RULES {
        rules
            .add_file(Path::new(name), text)
            .map_err(|e| e.to_string())?;
    }
    rules.validate().map_err(|e| e.to_string())?;
    Ok(rules)
}

pub async fn run(listen: SocketAddr, audit_dir: &Path) -> Result<(), String> {
    // The audit log outlives the demo, so it can be queried afterwards.
    std::fs::create_dir_all(audit_dir)
        .map_err(|e| format!("--audit-dir {}: cannot create: {e}", audit_dir.display()))?;
    let audit_dir = audit_dir
        .canonicalize()
        .map_err(|e| format!("--audit-dir {}: {e}", audit_dir.display()))?;
    eprintln!("starting a throwaway PostgreSQL ...");
    let pg = tokio::task::spawn_blocking(LocalPg::start)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    pg.psql("postgres", "CREATE DATABASE demo")
        .and_then(|_| pg.psql("demo", SAMPLE_SCHEMA))
        .map_err(|e| e.to_string())?;

    // pgward's own files: the upstream password and a self-signed certificate.
    let dir = tempfile::Builder::new()
        .prefix("pgward-demo-")
        .tempdir()
        .map_err(|e| format!("creating a temp directory: {e}"))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    write("upstream-password", &pg.password)?;
    let (cert, key) = crate::tls::self_signed()?;
    write("cert.pem", &cert)?;
    write("key.pem", &key)?;
    let toml = format!(
        "[server]\nlisten = \"{listen}\"\n\n[tls]\nmode = \"optional\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n[upstream]\nurl = \"{}\"\npassword_file = \"upstream-password\"\nsslmode = \"disable\"\n\n[audit]\ndir = \"{}\"\ninstance = \"demo\"\nrotate_secs = 10\n",
        pg.url("demo"),
        audit_dir.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
    );
    write("pgward.toml", &toml)?;
    let config = Config::load(&dir.path().join("pgward.toml")).map_err(|e| e.to_string())?;
    let shared = crate::server::Shared::new(config, example_rules()?)?;
    shared
        .start_workers()
        .map_err(|e| format!("starting the session threads: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (choose another with --listen)"))?;

    println!("\npgward is running on {listen}, in front of PostgreSQL on 127.0.0.1:{} (database \"demo\").", pg.port);
    println!("Connect as one of the example identities from rules/:\n");
    for (name, password, what) in DEMO_IDENTITIES {
        println!("  # {name}: {what}");
        println!(
            "  PGPASSWORD={password} psql \"host={} port={} user={name} dbname=demo\"\n",
            listen.ip(),
            listen.port()
        );
    }
    println!("Try: SELECT * FROM customers;   Press Ctrl-C to stop and clean up.");
    println!(
        "\nEvery session and statement is recorded to {} (Parquet, a file every 10 s and at exit):\n  pgward audit verify {0}\n  duckdb -c \"SELECT time, identity, decision, statement FROM read_parquet('{0}/*.parquet') ORDER BY seq\"\n",
        audit_dir.display()
    );
    crate::server::run(listener, shared, crate::server::termination()).await;
    drop(pg);
    eprintln!("stopped; the throwaway PostgreSQL and its files are gone.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::{Binding, ScramServer, MECHANISM};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    #[test]
    fn every_demo_password_opens_its_example_verifier() {
        let rules = example_rules().unwrap();
        assert_eq!(rules.identities.len(), DEMO_IDENTITIES.len());
        for (name, password, _) in DEMO_IDENTITIES {
            let spec = &rules.identities[*name];
            let mut server = ScramServer::new(spec.verifier.clone(), Binding::None);
            let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
            let first = server.client_first(MECHANISM, client.message()).unwrap();
            client.update(&first).unwrap();
            let last = server.client_final(client.message());
            assert!(
                last.is_ok(),
                "{name}: the demo password does not match rules/"
            );
        }
    }
}
