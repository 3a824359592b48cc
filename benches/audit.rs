//! The audit writer's throughput: events recorded by a session thread,
//! chained, appended to the write-ahead segment and converted to Parquet.
//! Target: at least 100,000 events/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgward::audit::event::{list, lit, static_list, text, Str};
use pgward::audit::record::{Described, Outcome, SessionContext, StatementRecord};
use pgward::audit::{AuditLog, Event, Kind};

const BATCH: u64 = 100_000;

/// A statement event as a session records it for pgbench -S.
fn statement_event() -> Event {
    let mut e = Event::new(Kind::Statement, pgward::audit::now_us());
    e.session_id = text("5f0c2a9d13e4b7aa");
    e.identity = text("alice");
    e.role = text("analyst");
    e.database = text("postgres");
    e.statement = text("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
    e.fingerprint = text("a1b2c3d4e5f60718");
    e.classes = static_list(["read"]);
    e.tables = list(["pgbench_accounts"]);
    e.decision = lit("allow");
    e.rule = text("role analyst: allowed");
    e.outcome = lit("ok");
    e.rows = Some(1);
    e.duration_us = Some(87);
    e
}

/// The same event as a session hands it to the writer.
fn statement_record(session: &Arc<SessionContext>, described: &Arc<Described>) -> StatementRecord {
    StatementRecord {
        time_us: pgward::audit::now_us(),
        session: session.clone(),
        statement: Str::from("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"),
        described: Some(described.clone()),
        outcome: Outcome::Ok,
        detail: None,
        rows: Some(1),
        duration_us: Some(87),
        failure: None,
        parameters: None,
        approval: None,
    }
}

fn writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pgward::config::AuditConfig {
        dir: dir.path().to_owned(),
        instance: Some("bench".into()),
        rotate_secs: 3600,
        queue_capacity: 1 << 20,
        ..Default::default()
    };
    let log = Arc::new(AuditLog::start(&cfg).unwrap());
    let template = statement_event();
    let session = Arc::new(SessionContext {
        session_id: template.session_id.clone(),
        identity: template.identity.clone(),
        role: template.role.clone(),
        database: template.database.clone(),
        allow_rule: template.rule.clone(),
        quota: Default::default(),
    });
    let described = Arc::new(Described {
        fingerprint: template.fingerprint.clone(),
        classes: template.classes.clone(),
        tables: template.tables.clone(),
    });
    let mut g = c.benchmark_group("audit_writer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("record_chain_wal_parquet_100k", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..BATCH {
                    log.record_statement(statement_record(&session, &described));
                }
                assert!(log.rotate_now(Duration::from_secs(120)));
            }
            start.elapsed()
        })
    });
    g.finish();
    assert_eq!(
        log.dropped(),
        0,
        "the queue overflowed: the figure would be wrong"
    );

    // The session side alone: what one statement's event costs the relay
    // (the compact record sessions send), and a full event for comparison.
    let mut g = c.benchmark_group("audit_record");
    g.throughput(Throughput::Elements(1));
    // Timed in chunks the queue holds; the writer catches up untimed.
    let timed = |iters: u64, record: &dyn Fn()| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let chunk = left.min(200_000);
            let start = Instant::now();
            for _ in 0..chunk {
                record();
            }
            total += start.elapsed();
            left -= chunk;
            assert!(log.rotate_now(Duration::from_secs(120)));
        }
        total
    };
    g.bench_function("record_one_statement", |b| {
        b.iter_custom(|iters| {
            timed(iters, &|| {
                log.record_statement(statement_record(&session, &described))
            })
        })
    });
    g.bench_function("record_one_full_event", |b| {
        b.iter_custom(|iters| {
            timed(iters, &|| {
                let mut e = template.clone();
                e.time_us = pgward::audit::now_us();
                e.statement = text("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
                log.record(e)
            })
        })
    });
    g.finish();
    log.close();
}

criterion_group!(benches, writer);
criterion_main!(benches);
