//! Webs of functions and triggers whose call paths multiply: each node
//! reaches the next two, so there are exponentially many paths to the last
//! one. Judging every path again (as pgward did until December 2026) costs
//! time exponential in the web's size; judging each body once per
//! statement costs time linear in it. Shared by `tests/classify_webs.rs`
//! and `benches/policy.rs`.
#![allow(dead_code)]

use std::time::Duration;

use pgward::localpg::LocalPg;
use pgward::policy::Catalog;
use pgward::upstream::{Upstream, UpstreamTarget};

/// `n` STABLE PL/pgSQL functions `web_f0` .. `web_f{n-1}`: each calls the
/// next two, and the last reads a server file (`pg_read_file`), a danger
/// only its body shows. `SELECT web_f0(1)` reaches it on about 1.6^n paths.
pub fn functions(n: usize) -> String {
    let mut sql = String::new();
    for i in (0..n).rev() {
        let calls: Vec<String> = [i + 1, i + 2]
            .into_iter()
            .filter(|j| *j < n)
            .map(|j| format!("web_f{j}(x)"))
            .collect();
        let body = if i == n - 1 {
            "RETURN length(pg_read_file('/etc/hostname'));".to_owned()
        } else {
            format!("RETURN {};", calls.join(" + "))
        };
        sql.push_str(&format!(
            "CREATE FUNCTION web_f{i}(x int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN {body} END $$;\n"
        ));
    }
    sql
}

/// `n` tables `web_t0` .. `web_t{n-1}`, each with a trigger whose function
/// updates the next two tables and the first (a cycle back to the start);
/// the last table's trigger also writes a server file (`COPY ... TO`).
/// `INSERT INTO web_t0` fires them all, on exponentially many paths.
pub fn triggers(n: usize) -> String {
    let mut sql = String::new();
    for i in 0..n {
        sql.push_str(&format!("CREATE TABLE web_t{i} (id int, v int);\n"));
    }
    for i in 0..n {
        let mut body: Vec<String> = [i + 1, i + 2, 0]
            .into_iter()
            .filter(|j| *j < n && *j != i)
            .map(|j| format!("UPDATE web_t{j} SET v = v + 1 WHERE id = NEW.id;"))
            .collect();
        if i == n - 1 {
            body.push("COPY (SELECT 1) TO '/tmp/pgward-web-trigger';".into());
        }
        sql.push_str(&format!(
            "CREATE FUNCTION web_t{i}_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {} RETURN NEW; END $$;\n\
             CREATE TRIGGER web_t{i}_trg AFTER INSERT OR UPDATE ON web_t{i} FOR EACH ROW EXECUTE FUNCTION web_t{i}_trg();\n",
            body.join(" ")
        ));
    }
    sql
}

/// The catalog pgward loads from `database` of `pg`, as its superuser.
pub async fn catalog(pg: &LocalPg, database: &str) -> Catalog {
    let upstream = Upstream {
        target: UpstreamTarget::from_url(&pg.url(database)).expect("localpg's url"),
        password: Some(pg.password.clone()),
        sslmode: pgward::config::SslMode::Disable,
        tls: pgward::tls::upstream_client(None).expect("TLS config"),
        pinned_database: None,
        connect_timeout: Duration::from_secs(10),
    };
    Catalog::load(&upstream, database)
        .await
        .unwrap_or_else(|e| panic!("catalog of {database}: {e}"))
}
