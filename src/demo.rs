//! `pgward demo`: a throwaway PostgreSQL with a small shop schema, pgward in
//! front of it with the example rules, and psql commands to paste.

use std::net::SocketAddr;
use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};

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

/// The PostgreSQL user each example role connects upstream as
/// (`upstream_user` in rules/roles.toml). Each has only what its role
/// needs, so a statement pgward misclassifies still meets PostgreSQL's own
/// permission checks: the second lock.
pub const UPSTREAM_USERS: &[(&str, &str)] = &[
    ("analyst", "pgward_analyst"),
    ("agent", "pgward_agent"),
    ("app", "pgward_app"),
    ("dba", "pgward_dba"),
];

/// Run as the superuser in `postgres`: the users, none a superuser or a
/// member of a role that reaches the server's files or programs.
/// `{password:USER}` stands for each user's password.
const USERS_SQL: &str = "
CREATE ROLE pgward_dba LOGIN CREATEDB PASSWORD '{password:pgward_dba}';
CREATE ROLE pgward_app LOGIN PASSWORD '{password:pgward_app}';
CREATE ROLE pgward_analyst LOGIN PASSWORD '{password:pgward_analyst}';
CREATE ROLE pgward_agent LOGIN PASSWORD '{password:pgward_agent}';
-- The dba role may cancel and end other sessions (allow_dangerous).
GRANT pg_signal_backend TO pgward_dba;
";

/// Run as the superuser in `postgres` after `CREATE DATABASE demo OWNER
/// pgward_dba` (which cannot share a transaction with other statements).
/// Nobody may connect to it or create temporary tables in it unless
/// granted here.
const DATABASE_SQL: &str = "
REVOKE ALL ON DATABASE demo FROM PUBLIC;
GRANT CONNECT ON DATABASE demo TO pgward_analyst, pgward_agent, pgward_app;
GRANT TEMPORARY ON DATABASE demo TO pgward_app;
";

/// Run as the superuser in `demo`, after the schema: what each user may
/// do with the demo's tables. The DBA's user created and owns them.
pub const GRANTS_SQL: &str = "
-- analyst and agent read the tables their rules allow; not api_keys.
-- The sequences too: pg_dump reads those a dumped table owns.
GRANT SELECT ON customers, orders, customers_id_seq, orders_id_seq TO pgward_analyst, pgward_agent;
-- app reads and writes rows, and draws ids from the sequences.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO pgward_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO pgward_app;
-- app's schema changes run once a DBA approves them (rules: approve = [\"ddl\"]):
-- it may create tables of its own, not alter or drop the DBA's.
GRANT CREATE ON SCHEMA public TO pgward_app;
-- Anyone may create large objects by default, even in a read-only
-- transaction: only the roles that may write.
REVOKE EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), lo_from_bytea(oid, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), lo_from_bytea(oid, bytea) TO pgward_app, pgward_dba;
-- The dba role may reload the configuration (allow_dangerous).
GRANT EXECUTE ON FUNCTION pg_reload_conf() TO pgward_dba;
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

/// A demo set up and ready to serve: the throwaway cluster with the sample
/// data and the example roles' upstream users, and pgward's config for it.
pub struct Demo {
    pub pg: LocalPg,
    /// pgward's files: its config, the upstream passwords, a certificate.
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The example roles' upstream users and their passwords.
    pub users: Vec<(String, String)>,
}

impl Demo {
    /// A libpq connection string straight to PostgreSQL (pgward bypassed)
    /// as one of the example roles' upstream users, in the demo database.
    pub fn direct_conninfo(&self, user: &str) -> Option<String> {
        let (_, password) = self.users.iter().find(|(u, _)| u == user)?;
        Some(format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=demo",
            self.pg.port
        ))
    }
}

/// Starts the throwaway cluster and prepares it: the example roles'
/// upstream users, the `demo` database owned by the DBA's user with the
/// sample schema, the grants, and a pgward config that maps each role to
/// its user. Blocking (initdb, pg_ctl, psql).
pub fn setup(listen: SocketAddr, audit_dir: &Path) -> Result<Demo, String> {
    let pg = LocalPg::start().map_err(|e| e.to_string())?;
    let users: Vec<(String, String)> = UPSTREAM_USERS
        .iter()
        .map(|(_, user)| {
            let password = Alphanumeric.sample_string(&mut rand::rng(), 24);
            (user.to_string(), password)
        })
        .collect();
    let mut users_sql = USERS_SQL.to_owned();
    for (user, password) in &users {
        // Alphanumeric: nothing to quote.
        users_sql = users_sql.replace(&format!("{{password:{user}}}"), password);
    }
    pg.psql("postgres", &users_sql)
        .and_then(|_| pg.psql("postgres", "CREATE DATABASE demo OWNER pgward_dba"))
        .and_then(|_| pg.psql("postgres", DATABASE_SQL))
        .and_then(|_| {
            pg.psql(
                "demo",
                &format!("SET ROLE pgward_dba;\n{SAMPLE_SCHEMA}\nRESET ROLE;\n{GRANTS_SQL}"),
            )
        })
        .map_err(|e| format!("preparing the demo database: {e}"))?;

    // pgward's own files: the upstream passwords and a self-signed certificate.
    let dir = tempfile::Builder::new()
        .prefix("pgward-demo-")
        .tempdir()
        .map_err(|e| format!("creating a temp directory: {e}"))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    write("upstream-password", &pg.password)?;
    let mut upstream_users = String::new();
    for (user, password) in &users {
        write(&format!("{user}.password"), password)?;
        upstream_users.push_str(&format!(
            "\n[[upstream.users]]\nname = \"{user}\"\npassword_file = \"{user}.password\"\n"
        ));
    }
    let (cert, key) = crate::tls::self_signed()?;
    write("cert.pem", &cert)?;
    write("key.pem", &key)?;
    // pgward's own upstream user (the catalog look-ups) stays the
    // superuser; every example role connects as its own user.
    let toml = format!(
        "[server]\nlisten = \"{listen}\"\n\n[tls]\nmode = \"optional\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n[upstream]\nurl = \"{}\"\npassword_file = \"upstream-password\"\nsslmode = \"disable\"\n{upstream_users}\n[audit]\ndir = \"{}\"\ninstance = \"demo\"\nrotate_secs = 10\n",
        pg.url("demo"),
        audit_dir.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
    );
    write("pgward.toml", &toml)?;
    let config = Config::load(&dir.path().join("pgward.toml")).map_err(|e| e.to_string())?;
    Ok(Demo {
        pg,
        dir,
        config,
        users,
    })
}

pub async fn run(listen: SocketAddr, audit_dir: &Path) -> Result<(), String> {
    // The audit log outlives the demo, so it can be queried afterwards.
    std::fs::create_dir_all(audit_dir)
        .map_err(|e| format!("--audit-dir {}: cannot create: {e}", audit_dir.display()))?;
    let audit_dir = audit_dir
        .canonicalize()
        .map_err(|e| format!("--audit-dir {}: {e}", audit_dir.display()))?;
    eprintln!("starting a throwaway PostgreSQL ...");
    let demo = {
        let audit_dir = audit_dir.clone();
        tokio::task::spawn_blocking(move || setup(listen, &audit_dir))
            .await
            .map_err(|e| e.to_string())??
    };
    let shared = crate::server::Shared::new(demo.config.clone(), example_rules()?)?;
    shared
        .start_workers()
        .map_err(|e| format!("starting the session threads: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (choose another with --listen)"))?;
    tokio::spawn(crate::privileges::warn_at_start(
        shared.upstream.clone(),
        shared.rules(),
    ));

    println!("\npgward is running on {listen}, in front of PostgreSQL on 127.0.0.1:{} (database \"demo\").", demo.pg.port);
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
    println!("The agent sees customers.email and customers.ssn masked (a***@example.com, ***-**-1120); dana sees them in clear.");
    println!(
        "\nbob's schema changes wait for approval. dana decides them on the console:\n  PGPASSWORD=dana-demo-password psql \"host={} port={} user=dana dbname=pgward\" -c \"SHOW PENDING\"   (then APPROVE <id> or DENY <id> 'why')",
        listen.ip(),
        listen.port()
    );
    println!("\nEach role reaches PostgreSQL as its own user with only the grants it needs");
    for (role, user) in UPSTREAM_USERS {
        println!("  {role:8} as {user}");
    }
    println!(
        "so PostgreSQL itself refuses what pgward might let through by mistake. Bypass pgward to see it:\n  psql \"{}\" -c \"SELECT * FROM api_keys\"",
        demo.direct_conninfo("pgward_agent").unwrap_or_default()
    );
    println!(
        "\nEvery session and statement is recorded to {} (Parquet, a file every 10 s and at exit):\n  pgward audit verify {0}\n  duckdb -c \"SELECT time, identity, decision, statement FROM read_parquet('{0}/*.parquet') ORDER BY seq\"\n",
        audit_dir.display()
    );
    crate::server::run(listener, shared, crate::server::termination()).await;
    drop(demo);
    eprintln!("stopped; the throwaway PostgreSQL and its files are gone.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::{Binding, ScramServer, MECHANISM};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// The example rules, both example configs and the docker init script
    /// name the same user for each example role.
    #[test]
    fn every_example_role_has_its_upstream_user_everywhere() {
        let rules = example_rules().unwrap();
        let mut mapped: Vec<&str> = rules.roles.keys().map(String::as_str).collect();
        mapped.sort();
        let mut listed: Vec<&str> = UPSTREAM_USERS.iter().map(|(r, _)| *r).collect();
        listed.sort();
        assert_eq!(mapped, listed, "every example role has a user here");
        let configs = [
            ("pgward.toml", include_str!("../pgward.toml")),
            ("docker/pgward.toml", include_str!("../docker/pgward.toml")),
        ];
        let init = include_str!("../docker/initdb/pgward-users.sh");
        for (role, user) in UPSTREAM_USERS {
            assert_eq!(
                rules.roles[*role].upstream_user.as_deref(),
                Some(*user),
                "rules/roles.toml, role {role}"
            );
            for (name, text) in configs {
                let c = Config::parse(text, Path::new(name)).unwrap();
                assert!(
                    c.upstream.users.iter().any(|u| u.name == *user
                        && (u.password_env.is_some() || u.password_file.is_some())),
                    "{name} gives no password for {user}"
                );
            }
            assert!(
                init.contains(&format!("CREATE ROLE {user} LOGIN")),
                "docker/initdb does not create {user}"
            );
            assert!(USERS_SQL.contains(&format!("CREATE ROLE {user} LOGIN")));
        }
    }

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
