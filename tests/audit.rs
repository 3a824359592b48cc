//! The audit log end to end: events for every message flow, kill -9
//! recovery, tamper detection, disk failure, replay, and an independent
//! reader (DuckDB from PyPI) running the queries `docs/audit.md` documents.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, TryStreamExt};
use pgward::audit::{files, Event, Kind};

fn of_kind(events: &[Event], kind: Kind) -> Vec<&Event> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn statements(events: &[Event]) -> Vec<&Event> {
    of_kind(events, Kind::Statement)
}

/// The event of `sql` having run (not the one of its Parse).
fn find<'a>(events: &'a [Event], sql: &str) -> &'a Event {
    events
        .iter()
        .filter(|e| e.detail.as_deref() != Some(pgward::session::recorder::PREPARED))
        .find(|e| e.statement.as_deref() == Some(sql))
        .unwrap_or_else(|| panic!("no event for {sql:?} in {:#?}", statements(events)))
}

fn s(t: &pgward::audit::event::Text) -> Option<&str> {
    t.as_deref()
}

fn items(l: &pgward::audit::event::List) -> Vec<Option<String>> {
    l.as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|i| i.as_deref().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_flow_is_recorded() {
    let h = Harness::start_with(Setup {
        audit: "record_parameters = true\nflush_interval_ms = 50".into(),
        ..Setup::default()
    })
    .await;
    let c = h.connect(DANA).await;
    c.batch_execute("CREATE TABLE t (id int primary key, v text)")
        .await
        .unwrap();
    // Simple, multi-statement (one event each), and one failing midway.
    c.simple_query("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    c.simple_query("SELECT * FROM t; UPDATE t SET v = 'c' WHERE id = 2")
        .await
        .unwrap();
    c.simple_query("SELECT 1; SELECT 1/0; SELECT 3")
        .await
        .unwrap_err();
    // Extended protocol with a parameter, and a pipeline of three.
    let rows = c
        .query("SELECT v FROM t WHERE id >= $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let p = c.prepare("SELECT id FROM t WHERE v = $1").await.unwrap();
    let (a, b, d) = tokio::join!(
        c.query(&p, &[&"a"]),
        c.query(&p, &[&"c"]),
        c.query(&p, &[&"nope"])
    );
    assert_eq!(
        (a.unwrap().len(), b.unwrap().len(), d.unwrap().len()),
        (1, 1, 0)
    );
    // COPY both ways.
    let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"10\tx\n11\ty\n12\tz\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 3);
    let out: Vec<Bytes> = c
        .copy_out("COPY t TO STDOUT")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(out.concat().iter().filter(|b| **b == b'\n').count(), 5);
    // A server error in the extended protocol.
    let dup = c
        .execute("INSERT INTO t VALUES ($1, 'dup')", &[&1i32])
        .await;
    assert_eq!(dup.unwrap_err().code().unwrap().code(), "23505");
    // SQL PREPARE and EXECUTE: the EXECUTE's event shows what ran.
    c.batch_execute("PREPARE hid AS INSERT INTO t VALUES (99, 'p')")
        .await
        .unwrap();
    c.simple_query("EXECUTE hid").await.unwrap();
    // A denial, for another identity.
    let agent = h.connect(AGENT).await;
    let denied = agent.simple_query("DELETE FROM t").await.unwrap_err();
    assert!(Harness::is_denial(&denied));
    // Judged at Bind with its values: one allowed, one refused.
    let set = agent
        .prepare("SELECT set_config($1, $2, false)")
        .await
        .unwrap();
    agent
        .query_one(&set, &[&"application_name", &"audited"])
        .await
        .unwrap();
    let refused = agent
        .query_one(&set, &[&"default_transaction_read_only", &"off"])
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&refused), "{refused:?}");
    drop(agent);
    drop(c);

    // Session ends are recorded when the sessions notice the clients left.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = h.audit_events();
        if events.iter().filter(|e| e.kind == Kind::SessionEnd).count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let starts = of_kind(&events, Kind::SessionStart);
    assert_eq!(starts.len(), 2);
    let dana = starts
        .iter()
        .find(|e| s(&e.identity) == Some("dana"))
        .unwrap();
    assert_eq!(s(&dana.role), Some("dba"));
    assert_eq!(s(&dana.database), Some("postgres"));
    assert_eq!(s(&dana.auth_method), Some("scram-sha-256"));
    assert_eq!(dana.tls, Some(false));
    assert!(s(&dana.client_addr).unwrap().starts_with("127.0.0.1:"));
    assert!(s(&dana.upstream_user).is_some());
    let ends = of_kind(&events, Kind::SessionEnd);
    assert_eq!(ends.len(), 2);
    // A session's end says whose it was, as its start does.
    let dana_end = ends
        .iter()
        .find(|e| e.session_id == dana.session_id)
        .unwrap();
    assert_eq!(
        (s(&dana_end.identity), s(&dana_end.role)),
        (Some("dana"), Some("dba"))
    );

    let insert = find(&events, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    assert_eq!(s(&insert.decision), Some("allow"));
    assert_eq!(s(&insert.outcome), Some("ok"));
    assert_eq!(insert.rows, Some(2));
    assert_eq!(items(&insert.classes), vec![Some("write".into())]);
    assert_eq!(items(&insert.tables), vec![Some("t".into())]);
    assert!(s(&insert.fingerprint).is_some_and(|f| f.len() == 16));
    assert!(insert.duration_us.is_some());
    assert_eq!(s(&insert.session_id), s(&dana.session_id));
    assert_eq!(
        (s(&insert.identity), s(&insert.role), s(&insert.database)),
        (Some("dana"), Some("dba"), Some("postgres"))
    );
    assert_eq!(s(&insert.rule), Some("role dba: allowed"));

    assert_eq!(find(&events, "SELECT * FROM t").rows, Some(2));
    assert_eq!(
        find(&events, "UPDATE t SET v = 'c' WHERE id = 2").rows,
        Some(1)
    );
    assert_eq!(s(&find(&events, "SELECT 1").outcome), Some("ok"));
    let div = find(&events, "SELECT 1/0");
    assert_eq!(
        (s(&div.outcome), s(&div.sqlstate)),
        (Some("error"), Some("22012"))
    );
    assert_eq!(s(&find(&events, "SELECT 3").outcome), Some("not_run"));

    let ext = find(&events, "SELECT v FROM t WHERE id >= $1");
    assert_eq!(ext.rows, Some(2));
    // tokio-postgres binds an int4 in binary.
    assert_eq!(items(&ext.parameters), vec![Some("\\x00000001".into())]);
    let piped: Vec<&Event> = events
        .iter()
        .filter(|e| s(&e.statement) == Some("SELECT id FROM t WHERE v = $1"))
        .filter(|e| s(&e.detail) != Some(pgward::session::recorder::PREPARED))
        .collect();
    assert_eq!(piped.len(), 3);
    let params: Vec<Vec<Option<String>>> = piped.iter().map(|e| items(&e.parameters)).collect();
    // tokio-postgres binds text in binary too: "nope".
    assert!(
        params.contains(&vec![Some("\\x6e6f7065".into())]),
        "{params:?}"
    );
    assert_eq!(
        items(&piped[0].parameter_formats),
        vec![Some("binary".into())]
    );
    assert_eq!(
        piped.iter().map(|e| e.rows.unwrap()).sum::<i64>(),
        2,
        "1 + 1 + 0 rows"
    );

    let copy_in = find(&events, "COPY t FROM STDIN");
    assert_eq!((copy_in.rows, s(&copy_in.outcome)), (Some(3), Some("ok")));
    assert!(items(&copy_in.classes).contains(&Some("copy_in".into())));
    assert_eq!(find(&events, "COPY t TO STDOUT").rows, Some(5));
    let dup = find(&events, "INSERT INTO t VALUES ($1, 'dup')");
    assert_eq!(s(&dup.sqlstate), Some("23505"));

    let del = find(&events, "DELETE FROM t");
    assert_eq!(s(&del.identity), Some("agent"));
    assert_eq!(
        (s(&del.decision), s(&del.outcome), s(&del.sqlstate)),
        (Some("deny"), Some("denied"), Some("42501"))
    );
    assert!(
        s(&del.rule).unwrap().contains("roles.toml"),
        "{:?}",
        del.rule
    );
    assert!(s(&del.error_message).unwrap().contains("agent"));

    let hid = find(&events, "EXECUTE hid");
    assert_eq!(items(&hid.classes), vec![Some("write".into())]);
    assert_eq!(items(&hid.tables), vec![Some("t".into())]);
    assert_eq!(hid.rows, Some(1));
    let ran: Vec<&Event> = events
        .iter()
        .filter(|e| s(&e.statement) == Some("SELECT set_config($1, $2, false)"))
        .filter(|e| s(&e.detail) != Some(pgward::session::recorder::PREPARED))
        .collect();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(s(&ran[0].outcome), Some("ok"));
    assert!(items(&ran[0].classes).contains(&Some("session".into())));
    let at_bind = events
        .iter()
        .find(|e| s(&e.statement).is_some_and(|t| t.contains("'default_transaction_read_only'")))
        .expect("the refused Bind is on record");
    assert_eq!(
        (s(&at_bind.decision), s(&at_bind.outcome)),
        (Some("deny"), Some("denied"))
    );
    assert_eq!(
        items(&at_bind.parameters),
        vec![
            Some("\\x64656661756c745f7472616e73616374696f6e5f726561645f6f6e6c79".into()),
            Some("\\x6f6666".into())
        ]
    );

    // Every event of the instance is in one unbroken chain.
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let report = pgward::audit::verify::verify(&h.dir.path().join("audit")).unwrap();
    assert!(report.ok(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_refused_are_recorded() {
    let h = Harness::start().await;
    let bad = h.try_connect(("alice", "wrong-password")).await;
    assert!(bad.is_err());
    // The client may read its error before the session records it.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = h.audit_events();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = events
        .iter()
        .find(|e| e.kind == Kind::SessionRefused)
        .unwrap_or_else(|| panic!("no session_refused event in {events:#?}"));
    assert_eq!(s(&refused.identity), Some("alice"));
    assert_eq!(s(&refused.sqlstate), Some("28P01"));
}

/// pgward as a child process, with the harness's config but its own port
/// and audit settings, for kill -9.
struct Child {
    child: tokio::process::Child,
    port: u16,
}

async fn spawn_pgward(h: &Harness, audit: &str) -> Child {
    let port = free_port();
    let config = h.dir.path().join("pgward.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("[audit]\n", &format!("[audit]\n{audit}\n"))
        + &format!(
            "\n[rules]\ndir = \"{}\"\n",
            example_rules_dir(h.dir.path()).display()
        );
    let live = h.dir.path().join("child.toml");
    std::fs::write(&live, text).unwrap();
    let log = std::fs::File::create(h.dir.path().join("child.log")).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["serve", "--config"])
        .arg(&live)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio_postgres::connect(&conninfo(h, port), tokio_postgres::NoTls)
            .await
            .is_ok()
        {
            return Child { child, port };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "pgward did not come up: {}",
        std::fs::read_to_string(h.dir.path().join("child.log")).unwrap_or_default()
    );
}

fn conninfo(h: &Harness, port: u16) -> String {
    h.conninfo(DANA)
        .replace(&format!("port={}", h.addr.port()), &format!("port={port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_flush_interval_and_every_file_stays_readable() {
    let h = Harness::start().await;
    let child_audit = "dir = \"child-audit\"\nflush_interval_ms = 200\nrotate_secs = 3600";
    let dir = h.dir.path().join("child-audit");
    let mut child = spawn_pgward(&h, child_audit).await;
    let c = connect_when_up(&conninfo(&h, child.port)).await;
    // More than one Parquet batch (8192 events), so a partial temporary
    // Parquet file exists when the process dies.
    for i in 0..9000 {
        c.simple_query(&format!("SELECT {i} AS before_kill"))
            .await
            .unwrap();
    }
    // Past the flush interval, everything so far is in the segment.
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.child.start_kill().unwrap();
    child.child.wait().await.unwrap();
    drop(c);
    assert!(
        files::list(&dir).unwrap().is_empty(),
        "nothing rotated yet: the events are only in the write-ahead segment"
    );
    let segments = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count();
    assert_eq!(segments, 1, "one segment");
    let partial = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".parquet.tmp"));
    assert!(
        partial,
        "the killed run left no partial Parquet file to clean up"
    );

    // The next start recovers the segment into Parquet and continues the chain.
    let mut child = spawn_pgward(&h, child_audit).await;
    let c = connect_when_up(&conninfo(&h, child.port)).await;
    c.simple_query("SELECT 'after restart'").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.child.kill().await.unwrap();
    drop(c);
    // Recovery alone (no rotation by the second run, which was also killed):
    let events = files::read_all(&dir).unwrap();
    let seen: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|e| e.statement.as_deref())
        .collect();
    for i in 0..9000 {
        let sql = format!("SELECT {i} AS before_kill");
        assert!(seen.contains(sql.as_str()), "lost {sql}");
    }
    // A third start recovers the second run's segment too: one chain.
    let log = pgward::audit::AuditLog::start(&audit_config(&dir)).unwrap();
    log.close();
    let all = files::read_all(&dir).unwrap();
    assert!(all
        .iter()
        .any(|e| e.statement.as_deref() == Some("SELECT 'after restart'")));
    // After a start, no temporary or partial file is left: all are readable.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            assert!(
                p.extension().is_some_and(|x| x == "parquet"),
                "unexpected file {}",
                p.display()
            );
            files::read(&p).unwrap();
        }
    }
    let report = pgward::audit::verify::verify(&dir).unwrap();
    assert!(report.ok(), "{report}");
    // Each start after a kill put the possible loss on record, naming the
    // run that did not close; the third run closed, so nothing more.
    let gaps: Vec<&str> = all
        .iter()
        .filter(|e| e.kind == pgward::audit::Kind::Gap)
        .filter_map(|e| e.detail.as_deref())
        .collect();
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    for gap in gaps {
        assert!(
            gap.contains("stopped without closing the audit log") && gap.contains("pid "),
            "{gap}"
        );
    }
    let log = pgward::audit::AuditLog::start(&audit_config(&dir)).unwrap();
    log.close();
    let gaps = files::read_all(&dir)
        .unwrap()
        .iter()
        .filter(|e| e.kind == pgward::audit::Kind::Gap)
        .count();
    assert_eq!(gaps, 2, "a clean stop records no gap");
}

fn audit_config(dir: &Path) -> pgward::config::AuditConfig {
    pgward::config::AuditConfig {
        dir: dir.to_owned(),
        instance: Some("test".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_refuses_writes_denies_statements_until_it_recovers() {
    let h = Harness::start().await;
    let log = h.shared.audit.clone().unwrap();
    let c = h.connect(DANA).await;
    c.simple_query("SELECT 'written'").await.unwrap();
    assert!(log.rotate_now(Duration::from_secs(10)));
    // The next segment is opened on a device that is always full.
    let wal = h.dir.path().join("audit/wal");
    let next = wal.join(format!(
        "test_{:016}.wal",
        h.audit_events().last().unwrap().seq + 1
    ));
    std::os::unix::fs::symlink("/dev/full", &next).unwrap();
    c.simple_query("SELECT 'accepted before the failure'")
        .await
        .unwrap();
    let mut failing = false;
    for _ in 0..100 {
        if log.failure().is_some() {
            failing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failing, "the writer never hit the full disk");
    let err = c
        .simple_query("SELECT 'refused while failing'")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "58030");
    assert!(db.message().contains("audit log"), "{}", db.message());
    assert!(db.message().contains("No space left"), "{}", db.message());
    // Every statement is refused, BEGIN too.
    c.batch_execute("BEGIN").await.unwrap_err();

    // Space comes back.
    std::fs::remove_file(&next).unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if log.failure().is_none() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recovered);
    c.simple_query("SELECT 'after recovery'").await.unwrap();
    let events = h.audit_events();
    // Nothing accepted was lost, and the refusals are recorded too.
    find(&events, "SELECT 'accepted before the failure'");
    let refused = find(&events, "SELECT 'refused while failing'");
    assert_eq!(s(&refused.sqlstate), Some("58030"));
    assert_eq!(s(&refused.decision), Some("deny"));
    find(&events, "SELECT 'after recovery'");
    let report = pgward::audit::verify::verify(&h.dir.path().join("audit")).unwrap();
    assert!(report.ok(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_allow_keeps_serving_and_an_unusable_dir_is_a_clear_error() {
    let h = Harness::start_with(Setup {
        audit: "on_failure = \"allow\"".into(),
        ..Setup::default()
    })
    .await;
    let log = h.shared.audit.clone().unwrap();
    let c = h.connect(DANA).await;
    c.simple_query("SELECT 1").await.unwrap();
    assert!(log.rotate_now(Duration::from_secs(10)));
    let next = h.dir.path().join(format!(
        "audit/wal/test_{:016}.wal",
        h.audit_events().last().unwrap().seq + 1
    ));
    std::os::unix::fs::symlink("/dev/full", &next).unwrap();
    for _ in 0..20 {
        c.simple_query("SELECT 'served anyway'").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.failure().is_some());
    std::fs::remove_file(&next).unwrap();
    let events = h.audit_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.statement.as_deref() == Some("SELECT 'served anyway'"))
            .count(),
        20,
        "held in memory and written once the disk took them"
    );

    // A directory that cannot be created: pgward does not start, and says why.
    let file = h.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut cfg = h.shared.config.clone();
    cfg.audit.dir = file.join("audit");
    let err = match pgward::server::Shared::new(cfg, pgward::demo::example_rules().unwrap()) {
        Ok(_) => panic!("started with an unusable audit dir"),
        Err(e) => e,
    };
    assert!(err.contains("audit.dir") && err.contains("a-file"), "{err}");
}

fn pgward_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgward"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_prints_a_transcript_and_reexecutes_against_another_database() {
    let h = Harness::start_with(Setup {
        audit: "record_parameters = true".into(),
        ..Setup::default()
    })
    .await;
    let c = h.connect(DANA).await;
    c.batch_execute("CREATE TABLE r (id int primary key, v text)")
        .await
        .unwrap();
    c.simple_query("INSERT INTO r SELECT g, 'x' FROM generate_series(1, 5) g")
        .await
        .unwrap();
    // tokio-postgres binds in binary; replay sends the same bytes.
    let rows = c
        .query("SELECT * FROM r WHERE id > $1 AND v = $2", &[&2i32, &"x"])
        .await;
    assert_eq!(rows.unwrap().len(), 3);
    c.query("SELECT count(*) FROM r WHERE v = $1", &[&"x"])
        .await
        .unwrap();
    c.simple_query("UPDATE r SET v = 'y' WHERE id <= 2")
        .await
        .unwrap();
    c.simple_query("INSERT INTO r VALUES (1, 'duplicate')")
        .await
        .unwrap_err();
    let agent = h.connect(AGENT).await;
    agent.simple_query("DROP TABLE r").await.unwrap_err();
    let events = h.audit_events();
    let session = find(&events, "UPDATE r SET v = 'y' WHERE id <= 2")
        .session_id
        .clone()
        .unwrap();
    let dir = h.dir.path().join("audit");
    let dir_s = dir.to_str().unwrap();

    let (ok, out, err) = pgward_cli(&["replay", dir_s, "--session", &session], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("dana as dba  session start"), "{out}");
    assert!(
        out.contains("ALLOW  UPDATE r SET v = 'y' WHERE id <= 2"),
        "{out}"
    );
    assert!(out.contains("-> ok, 2 rows"), "{out}");
    assert!(out.contains("-> error") && out.contains("23505"), "{out}");
    assert!(
        !out.contains("DROP TABLE r"),
        "another session's statement: {out}"
    );

    // A second, empty PostgreSQL: the session replays without divergence.
    let other = tokio::task::spawn_blocking(pgward::localpg::LocalPg::start)
        .await
        .unwrap()
        .unwrap();
    let url = other.url("postgres");
    let (ok, out, err) = pgward_cli(
        &["replay", dir_s, "--session", &session, "--to", &url],
        &[("PGPASSWORD", &other.password)],
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("0 diverged"), "{out}");
    assert!(out.contains("0 skipped"), "{out}");

    // Again on the same database: now the table exists and rows differ.
    let (ok, out, _) = pgward_cli(
        &["replay", dir_s, "--session", &session, "--to", &url],
        &[("PGPASSWORD", &other.password)],
    );
    assert!(!ok);
    assert!(out.contains("DIVERGED") && out.contains("42P07"), "{out}");

    // Verify passes on the files and fails on an edited copy.
    let (ok, out, _) = pgward_cli(&["audit", "verify", dir_s], &[]);
    assert!(ok && out.contains("OK:"), "{out}");
    let copy = h.dir.path().join("edited");
    std::fs::create_dir(&copy).unwrap();
    let mut edited = false;
    for path in files::list(&dir).unwrap() {
        let target = copy.join(path.file_name().unwrap());
        let (meta, mut events) = files::read(&path).unwrap();
        if let Some(e) = events
            .iter_mut()
            .find(|e| e.statement.as_deref() == Some("DROP TABLE r"))
        {
            e.statement = Some("SELECT 1".into());
            edited = true;
        }
        files::write_raw(&target, &events, &meta).unwrap();
    }
    assert!(edited);
    let (ok, out, _) = pgward_cli(&["audit", "verify", copy.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("modified"), "{out}");
}

/// A Python with DuckDB from PyPI, in a venv kept between test runs.
fn python_with_duckdb() -> PathBuf {
    python_venv("pgward-audit-venv", &["duckdb"]).unwrap_or_else(|e| {
        panic!("{e} (the audit test needs python3 with venv and pip, and PyPI)")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_runs_the_documented_queries_on_the_files() {
    let h = Harness::start().await;
    let c = h.connect(DANA).await;
    c.batch_execute("CREATE TABLE audited (id int)")
        .await
        .unwrap();
    c.simple_query("INSERT INTO audited VALUES (1)")
        .await
        .unwrap();
    let agent = h.connect(AGENT).await;
    agent.simple_query("DROP TABLE audited").await.unwrap_err();
    agent
        .simple_query("SELECT * FROM api_keys")
        .await
        .unwrap_err();
    let events = h.audit_events();
    let session = events
        .iter()
        .find(|e| e.statement.as_deref() == Some("INSERT INTO audited VALUES (1)"))
        .unwrap()
        .session_id
        .clone()
        .unwrap();
    let dir = h.dir.path().join("audit");
    // A second instance in the same directory whose previous run crashed
    // (it left its lock marked): its start records a gap for the query
    // on gaps to find.
    std::fs::write(
        dir.join("wal/crashed.lock"),
        "pid 1, started 2026-01-01T00:00:00Z",
    )
    .unwrap();
    let crashed = pgward::config::AuditConfig {
        instance: Some("crashed".into()),
        ..audit_config(&dir)
    };
    pgward::audit::AuditLog::start(&crashed).unwrap().close();

    // The SQL blocks of docs/audit.md, run as written but for the path.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit.md"))
        .unwrap();
    let queries: Vec<String> = doc
        .split("```sql\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_owned())
        .map(|q| {
            q.replace("audit/*.parquet", &format!("{}/*.parquet", dir.display()))
                .replace("<session id>", &session)
        })
        .collect();
    assert!(queries.len() >= 3, "docs/audit.md lost its queries");
    let script = "import duckdb, json, sys\nout = []\nfor q in json.loads(sys.argv[1]):\n    out.append([list(map(str, r)) for r in duckdb.sql(q).fetchall()])\nprint(json.dumps(out))\n";
    let python = python_with_duckdb();
    let out = std::process::Command::new(python)
        .args(["-c", script, &serde_json::to_string(&queries).unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB failed on a documented query: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Vec<Vec<String>>> = serde_json::from_slice(&out.stdout).unwrap();
    let all = serde_json::to_string(&results).unwrap();
    // DDL by identity: dana's CREATE TABLE; denials: the agent's two;
    // the session timeline: the INSERT.
    assert!(all.contains("CREATE TABLE audited"), "{all}");
    assert!(all.contains("DROP TABLE audited"), "{all}");
    assert!(all.contains("SELECT * FROM api_keys"), "{all}");
    assert!(all.contains("INSERT INTO audited VALUES (1)"), "{all}");
    assert!(all.contains("pid 1, started 2026-01-01"), "{all}");
    assert!(
        results.iter().all(|r| !r.is_empty()),
        "a documented query found nothing: {results:?}"
    );
}

/// A message of more statements than the audit queue has room for would
/// overflow it (events lost, and every session refused while the writer
/// caught up). An allowed one is refused alone, with how many fit; a
/// denied one is recorded as one event holding the whole text. Nothing is
/// lost, other sessions are not refused, and one that fits runs and is
/// recorded statement by statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_more_statements_than_the_queue_holds() {
    let h = Harness::start_with(Setup {
        audit: "queue_capacity = 1024\nflush_interval_ms = 50".into(),
        setup_sql: vec!["CREATE TABLE t (id int)".into()],
        ..Setup::default()
    })
    .await;
    let dba = h.connect(DANA).await;
    let other = h.connect(ALICE).await;
    let inserts = "INSERT INTO t VALUES (1);".repeat(2000);
    let e = dba.simple_query(&inserts).await.unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "58030");
    assert!(
        db.message().contains("this message has 2000 statements"),
        "{db:?}"
    );
    assert!(
        db.hint()
            .unwrap_or_default()
            .contains("send at most 1024 statements in one message"),
        "{db:?}"
    );
    let direct = h.direct().await;
    let count = one_number(&direct, "SELECT count(*) FROM t").await;
    assert_eq!(count, 0, "nothing of the refused message ran");

    // Alice may not delete: 2,000 denied statements, one event.
    let deletes = "SELECT 1;".repeat(1999) + "DELETE FROM t";
    let e = other.simple_query(&deletes).await.unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    // The queue did not overflow: nobody is refused.
    other.simple_query("SELECT 'still served'").await.unwrap();
    let fits = "INSERT INTO t VALUES (2);".repeat(500);
    dba.simple_query(&fits).await.unwrap();

    let mut events = Vec::new();
    for _ in 0..50 {
        events = h.audit_events();
        if events
            .iter()
            .any(|e| e.statement.as_deref() == Some("SELECT 'still served'"))
            && statements(&events)
                .iter()
                .filter(|e| e.statement.as_deref() == Some("INSERT INTO t VALUES (2)"))
                .count()
                == 500
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = find(&events, &inserts);
    assert_eq!(s(&refused.decision), Some("deny"));
    assert_eq!(s(&refused.sqlstate), Some("58030"));
    let denied = find(&events, &deletes);
    assert_eq!(s(&denied.decision), Some("deny"));
    assert_eq!(
        statements(&events)
            .iter()
            .filter(|e| e.statement.as_deref() == Some("SELECT 1"))
            .count(),
        0,
        "the denied message is one event"
    );
    assert_eq!(
        statements(&events)
            .iter()
            .filter(|e| e.statement.as_deref() == Some("INSERT INTO t VALUES (2)"))
            .count(),
        500
    );
    assert!(of_kind(&events, Kind::Gap).is_empty(), "no events lost");
    assert_eq!(one_number(&direct, "SELECT count(*) FROM t").await, 500);
}

/// Reads one backend message from a raw connection's read half.
async fn read_backend(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let tag = r.read_u8().await.unwrap();
    let len = r.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    r.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Issue 26 item 10c: sessions flooding denied Parses fill a small audit
/// queue many times over. A session whose events cannot be queued waits
/// (pgward stops reading it) instead of dropping them or refusing other
/// sessions: another identity's statements keep running, no event is
/// lost (every one is counted in the files, and no `gap`), and the
/// flooders get every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_sessions_wait_for_audit_room_and_nobody_else_is_refused() {
    use tokio::io::{AsyncWriteExt, BufReader};
    const FLOODERS: usize = 4;
    const PARSES: usize = 6000;
    let h = Harness::start_with(Setup {
        audit: "queue_capacity = 1024\nflush_interval_ms = 1000".into(),
        setup_sql: vec!["CREATE TABLE t (id int)".into()],
        ..Setup::default()
    })
    .await;
    let log = h.shared.audit.clone().unwrap();
    // Parse of a statement alice may not run, then Sync: one denial each.
    let sql = "DELETE FROM t";
    let mut pair = Vec::new();
    pair.push(b'P');
    pair.extend_from_slice(&((4 + 1 + sql.len() + 1 + 2) as i32).to_be_bytes());
    pair.push(0);
    pair.extend_from_slice(sql.as_bytes());
    pair.extend_from_slice(&[0, 0, 0]);
    pair.extend_from_slice(b"S\0\0\0\x04");
    let flood = pair.repeat(PARSES);
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        let (r, mut w) = login(&h, ALICE).await.into_split();
        let bytes = flood.clone();
        // Written in one go while another task reads the answers.
        let writer = tokio::spawn(async move { w.write_all(&bytes).await.map(|_| w) });
        let reader = tokio::spawn(async move {
            let mut r = BufReader::new(r);
            let (mut ready, mut codes) = (0, std::collections::BTreeMap::new());
            while ready < PARSES {
                match read_backend(&mut r).await {
                    (b'Z', _) => ready += 1,
                    (b'E', body) => *codes.entry(error_field(&body, b'C')).or_insert(0) += 1,
                    _ => {}
                }
            }
            codes
        });
        flooders.push((writer, reader));
    }
    // Meanwhile another identity runs statement after statement.
    let dba = h.connect(DANA).await;
    let mut served = 0;
    for i in 0..300 {
        match dba.simple_query(&format!("SELECT {i} AS served")).await {
            Ok(_) => served += 1,
            Err(e) => panic!("statement {i} of another identity failed: {e:?}"),
        }
    }
    assert_eq!(served, 300);
    for (writer, reader) in flooders {
        let codes = tokio::time::timeout(Duration::from_secs(300), reader)
            .await
            .expect("a flooder did not get all its answers")
            .unwrap();
        // Every Parse was denied by the policy; none refused for the log.
        assert_eq!(
            codes,
            std::collections::BTreeMap::from([("42501".to_string(), PARSES)]),
        );
        let _w = writer.await.unwrap().unwrap();
    }
    assert_eq!(log.dropped(), 0, "no event was dropped");
    let events = h.audit_events();
    assert!(of_kind(&events, Kind::Gap).is_empty(), "no events lost");
    let denied: Vec<&Event> = statements(&events)
        .into_iter()
        .filter(|e| e.statement.as_deref() == Some(sql))
        .collect();
    assert_eq!(denied.len(), FLOODERS * PARSES, "every denial is on record");
    assert!(denied.iter().all(|e| s(&e.decision) == Some("deny")
        && s(&e.sqlstate) == Some("42501")
        && s(&e.identity) == Some("alice")));
    for i in 0..300 {
        let e = find(&events, &format!("SELECT {i} AS served"));
        assert_eq!(s(&e.outcome), Some("ok"));
    }
    let report = pgward::audit::verify::verify(&h.dir.path().join("audit")).unwrap();
    assert!(report.ok(), "{report}");
}
