//! Criterion benchmarks of the policy engine: classification (parse and
//! walk, uncached), the cached path a session takes for a repeated
//! statement (cache lookup plus decision), and the decision alone.

use criterion::{black_box, criterion_group, Criterion};
use pgward::policy::classify::classify;
use pgward::policy::stack::THREAD_STACK;
use pgward::policy::{decide, Catalog};

#[path = "../tests/common/webs.rs"]
mod webs;

const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
const PSQL_DESCRIBE: &str = "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(orders)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3";
const CTE_WRITE: &str = "WITH d AS (DELETE FROM orders WHERE created_at < now() - interval '1 year' RETURNING *) SELECT count(*), sum(amount) FROM d JOIN customers c ON c.id = d.customer_id";

fn benches(c: &mut Criterion) {
    let cat = Catalog::builtin();
    let rules = pgward::demo::example_rules().unwrap();
    let analyst = rules.roles["analyst"].clone();
    let agent = rules.roles["agent"].clone();
    let mut g = c.benchmark_group("classify_uncached");
    for (name, sql) in [
        ("pgbench_select", PGBENCH_SELECT),
        ("psql_describe", PSQL_DESCRIBE),
        ("cte_write", CTE_WRITE),
    ] {
        g.bench_function(name, |b| b.iter(|| classify(black_box(sql), &cat)));
    }
    // What an ORM's batch insert sends: 1,000 rows, about 40 kB.
    let rows: Vec<String> = (0..1000)
        .map(|i| format!("({i}, 'customer {i}', '2024-01-01', {i}.5)"))
        .collect();
    let bulk = format!(
        "INSERT INTO orders (id, note, created_at, amount) VALUES {}",
        rows.join(", ")
    );
    g.sample_size(20);
    g.bench_function("bulk_insert_1000_rows", |b| {
        b.iter(|| classify(black_box(&bulk), &cat))
    });
    // A migration script's worth of statements in one Query (about 50 kB):
    // parsed one statement at a time.
    let script = "UPDATE orders SET amount = amount + 1 WHERE id = 7;\n".repeat(1000);
    g.bench_function("script_1000_statements", |b| {
        b.iter(|| classify(black_box(&script), &cat))
    });
    g.finish();

    let mut g = c.benchmark_group("decision_cached");
    for (name, sql) in [
        ("pgbench_select", PGBENCH_SELECT),
        ("psql_describe", PSQL_DESCRIBE),
    ] {
        cat.analyze(sql);
        // What a session does for a statement it has seen: cache lookup
        // by the whole text, then the decision for its role.
        g.bench_function(format!("{name}/analyst"), |b| {
            b.iter(|| {
                let a = cat.analyze(black_box(sql));
                let st = &a.as_ref().as_ref().unwrap()[0];
                decide(&analyst, st, &cat)
            })
        });
        // The agent has table patterns to match as well.
        g.bench_function(format!("{name}/agent_with_table_patterns"), |b| {
            b.iter(|| {
                let a = cat.analyze(black_box(sql));
                let st = &a.as_ref().as_ref().unwrap()[0];
                decide(&agent, st, &cat)
            })
        });
    }
    g.finish();

    // pgbench -S in simple mode: a new literal every time. The shape cache
    // (literals blanked) serves them all from one classification.
    let texts: Vec<String> = (0..4096)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                i * 7919 % 100_000
            )
        })
        .collect();
    let mut i = 0;
    let texts = &texts;
    c.bench_function("decision_cached/pgbench_select_new_literal/analyst", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            let a = cat.analyze(black_box(&texts[i]));
            let st = &a.as_ref().as_ref().unwrap()[0];
            decide(&analyst, st, &cat)
        })
    });
    c.bench_function("shape/pgbench_select", |b| {
        b.iter(|| pgward::policy::shape::shape(black_box(PGBENCH_SELECT)))
    });

    let a = cat.analyze(PGBENCH_SELECT);
    let st = &a.as_ref().as_ref().unwrap()[0];
    c.bench_function("decide_only/pgbench_select/analyst", |b| {
        b.iter(|| decide(&analyst, black_box(st), &cat))
    });

    guard_benches(c, texts);
    web_benches(c);
}

/// Classification of statements that reach webs of functions and
/// triggers (`tests/common/webs.rs`) in a live catalog: each body is
/// judged once per statement, however many call paths reach it. Needs
/// PostgreSQL's binaries (skipped without them). PGWARD_WEB_N sets the
/// webs' size (default 12).
fn web_benches(c: &mut Criterion) {
    let n: usize = std::env::var("PGWARD_WEB_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let pg = match pgward::localpg::LocalPg::start() {
        Ok(pg) => pg,
        Err(e) => return eprintln!("web benches skipped: {e}"),
    };
    pg.psql("postgres", &webs::functions(n))
        .expect("function web");
    pg.psql("postgres", &webs::triggers(n))
        .expect("trigger web");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cat = rt.block_on(webs::catalog(&pg, "postgres"));
    let mut g = c.benchmark_group("classify_web");
    g.sample_size(10);
    for (name, sql) in [
        (format!("functions_{n}"), "SELECT web_f0(1)"),
        (format!("triggers_{n}"), "INSERT INTO web_t0 VALUES (1, 1)"),
    ] {
        g.bench_function(name, |b| b.iter(|| classify(black_box(sql), &cat)));
    }
    // PGWARD_WEB_SETUP (a file of SQL) and PGWARD_WEB_STATEMENT: one more
    // case, e.g. the start of PostgreSQL's plpgsql regression test (its
    // "patch field" tables, whose triggers update each other) and
    // `insert into WSlot values ('WS.001.1a', '001', '', '')`.
    if let (Ok(file), Ok(sql)) = (
        std::env::var("PGWARD_WEB_SETUP"),
        std::env::var("PGWARD_WEB_STATEMENT"),
    ) {
        let setup = std::fs::read_to_string(&file).expect("PGWARD_WEB_SETUP");
        pg.psql("postgres", "CREATE DATABASE web_setup")
            .expect("database");
        pg.psql("web_setup", &setup).expect("PGWARD_WEB_SETUP runs");
        let cat = rt.block_on(webs::catalog(&pg, "web_setup"));
        let st = &classify(&sql, &cat).expect("parses")[0];
        eprintln!("{sql}: {} judged, classes {}", st.judged, st.classes());
        g.bench_function("custom", |b| b.iter(|| classify(black_box(&sql), &cat)));
    }
    g.finish();
}

/// The whole per-message check a session makes (role lookup, catalog,
/// caches, decision), on a Query frame body.
fn guard_benches(c: &mut Criterion, texts: &[String]) {
    let config = pgward::config::Config::parse(
        "[upstream]\nurl = \"postgres://nobody@127.0.0.1:1/postgres\"\nsslmode = \"disable\"\nconnect_timeout_secs = 1\n",
        std::path::Path::new("bench.toml"),
    )
    .unwrap();
    let shared =
        pgward::server::Shared::new(config, pgward::demo::example_rules().unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // No upstream here: the catalog falls back to the built-in snapshot.
    let slot = rt.block_on(shared.catalogs.slot(&shared.upstream, "postgres"));
    let mut guard = pgward::session::guard::Guard::new(
        shared.guard_context(),
        pgward::auth::Identity {
            name: "alice".into(),
            method: pgward::auth::AuthMethod::Scram,
            token: None,
        },
        Some("analyst".into()),
        slot,
    );
    let state = pgward::session::state::ProtocolState::default();
    let bodies: Vec<Vec<u8>> = texts
        .iter()
        .map(|t| {
            let mut b = t.clone().into_bytes();
            b.push(0);
            b
        })
        .collect();
    assert!(matches!(
        guard.check(&query(&bodies[0]), &state),
        pgward::session::guard::Decision::Pass
    ));
    let mut i = 0;
    c.bench_function("guard_check/query_new_literal/analyst", |b| {
        b.iter(|| {
            i = (i + 1) % bodies.len();
            guard.check(&query(black_box(&bodies[i])), &state)
        })
    });
    c.bench_function("guard_check/query_same_text/analyst", |b| {
        b.iter(|| guard.check(&query(black_box(&bodies[0])), &state))
    });
}

/// A Query's body, read as the relay reads it (once per frame).
fn query(body: &[u8]) -> pgward::protocol::frontend::Message<'_> {
    pgward::protocol::frontend::Message::parse(b'Q', body).expect("a well-formed Query")
}

criterion_group!(policy, benches);

fn main() {
    // Classification runs on threads with a large stack (as pgward's own
    // runtime threads are); without one it would start a helper thread per
    // call, which is not what a session does.
    std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(|| {
            policy();
            Criterion::default().configure_from_args().final_summary();
        })
        .expect("bench thread")
        .join()
        .expect("bench thread panicked");
}
