//! pgbench through pgward: initialisation (COPY), every query mode, and a
//! pipeline script, each with zero failed transactions.

mod common;
use common::*;

/// The database (a conninfo string) goes last: pgbench's -d is --debug.
fn pgbench_args<'a>(conn: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["-n"];
    v.extend_from_slice(extra);
    v.push(conn);
    v
}

/// The number after "number of failed transactions:" (0 when absent,
/// which pgbench 15 prints only when there are failures or retries).
fn failed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn processed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|s| s.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no processed count in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_all_modes_and_pipeline() {
    let h = Harness::start().await;
    let conn = h.conninfo(DANA);
    let (ok, _, err) = h
        .run("pgbench", &["-i", "-s", "1", conn.as_str()], &[])
        .await;
    assert!(ok, "pgbench -i: {err}");
    let direct: i64 =
        h.pg.psql("postgres", "select count(*) from pgbench_accounts")
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(direct, 100_000, "pgbench -i loaded every row through COPY");

    for mode in ["simple", "extended", "prepared"] {
        let (ok, out, err) = h
            .run(
                "pgbench",
                &pgbench_args(&conn, &["-M", mode, "-c", "4", "-j", "2", "-t", "200"]),
                &[],
            )
            .await;
        assert!(ok, "pgbench -M {mode}: {err}\n{out}");
        assert_eq!(processed(&out), 800, "-M {mode}:\n{out}");
        assert_eq!(failed(&out), 0, "-M {mode}:\n{out}");
    }

    let script = h.dir.path().join("pipeline.sql");
    std::fs::write(
        &script,
        "\\set aid random(1, 100000)\n\\set delta random(-5000, 5000)\n\\startpipeline\n\
         UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n\
         SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
         INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);\n\
         \\endpipeline\n",
    )
    .unwrap();
    let before: i64 =
        h.pg.psql("postgres", "select count(*) from pgbench_history")
            .unwrap()
            .parse()
            .unwrap();
    for mode in ["extended", "prepared"] {
        let (ok, out, err) = h
            .run(
                "pgbench",
                &pgbench_args(
                    &conn,
                    &[
                        "-M",
                        mode,
                        "-c",
                        "2",
                        "-t",
                        "100",
                        "-f",
                        script.to_str().unwrap(),
                    ],
                ),
                &[],
            )
            .await;
        assert!(ok, "pipeline -M {mode}: {err}\n{out}");
        assert_eq!(processed(&out), 200);
        assert_eq!(failed(&out), 0);
    }
    let after: i64 =
        h.pg.psql("postgres", "select count(*) from pgbench_history")
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(after - before, 400, "every pipelined INSERT arrived");
}
