//! psql through pgward: -c, scripts, \copy, large objects (FunctionCall),
//! errors and recovery, TLS with channel binding.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_commands_scripts_and_copy() {
    let h = Harness::start().await;
    let (ok, out, err) = h
        .psql(DANA, &["-A", "-t", "-c", "select current_user, 40 + 2"])
        .await;
    assert!(ok, "{err}");
    // pgward signs in upstream with its own account, never the client's.
    assert_eq!(out.trim(), format!("{}|42", h.pg.superuser));

    let script = h.dir.path().join("script.sql");
    std::fs::write(
        &script,
        "create table t (id int primary key, note text);\n\
         insert into t select g, 'row ' || g from generate_series(1, 500) g;\n\
         begin;\n update t set note = 'changed' where id <= 10;\n commit;\n\
         select count(*) filter (where note = 'changed'), count(*) from t;\n",
    )
    .unwrap();
    let (ok, out, err) = h
        .psql(DANA, &["-A", "-t", "-f", script.to_str().unwrap()])
        .await;
    assert!(ok, "{err}");
    assert!(out.trim().ends_with("10|500"), "{out}");

    // \copy out to a file and back in (COPY TO STDOUT / FROM STDIN).
    let csv = h.dir.path().join("t.csv");
    let copy_out = format!("\\copy t to '{}' csv", csv.display());
    let (ok, _, err) = h.psql(DANA, &["-c", &copy_out]).await;
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 500);
    let copy_in = format!("\\copy t2 from '{}' csv", csv.display());
    let (ok, out, err) = h
        .psql(
            DANA,
            &[
                "-A",
                "-t",
                "-c",
                "create table t2 (like t)",
                "-c",
                &copy_in,
                "-c",
                "select count(*), sum(id) from t2",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.trim().ends_with("COPY 500\n500|125250"), "{out}");

    // Bad COPY data fails the COPY (CopyFail path server-side) and the
    // session carries on.
    std::fs::write(&csv, "1,ok\nnot-a-number,x\n").unwrap();
    let (ok, _, err) = h
        .psql(
            DANA,
            &["-c", &format!("\\copy t2 from '{}' csv", csv.display())],
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("invalid input syntax for type integer"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_do_not_break_the_session() {
    let h = Harness::start().await;
    let (ok, out, err) = h
        .psql(
            DANA,
            &[
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=0",
                "-c",
                "select 1/0",
                "-c",
                "select 'still here'",
                "-c",
                "select 1; select nosuchcolumn; select 3",
                "-c",
                "select 'and here'",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert!(err.contains("division by zero"), "{err}");
    assert!(err.contains("nosuchcolumn"), "{err}");
    assert_eq!(out.trim(), "still here\n1\nand here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_use_function_call() {
    // psql's \lo_import and \lo_export go through libpq's PQfn, i.e. the
    // FunctionCall message, which pgward must relay.
    let h = Harness::start().await;
    let src = h.dir.path().join("blob.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let (ok, out, err) = h
        .psql(DANA, &["-c", &format!("\\lo_import '{}'", src.display())])
        .await;
    assert!(ok, "{err}");
    let oid: u32 = out
        .split_whitespace()
        .last()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no oid in {out}"));
    let dst = h.dir.path().join("back.bin");
    let (ok, _, err) = h
        .psql(
            DANA,
            &["-c", &format!("\\lo_export {oid} '{}'", dst.display())],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_channel_binding() {
    let h = Harness::start().await;
    let conn = format!(
        "host=127.0.0.1 port={} user=alice password=alice-demo-password dbname=postgres sslmode=require channel_binding=require",
        h.addr.port()
    );
    let (ok, out, err) = h
        .run(
            "psql",
            &[
                "-X",
                "-A",
                "-t",
                "-d",
                &conn,
                "-c",
                "select 'over tls'",
                "-c",
                "\\conninfo",
            ],
            &[],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("over tls"), "{out}");
    assert!(out.contains("SSL connection"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let h = Harness::start().await;
    let bad = h.psql(("alice", "nope"), &["-c", "select 1"]).await;
    let unknown = h.psql(("mallory", "nope"), &["-c", "select 1"]).await;
    assert!(!bad.0 && !unknown.0);
    assert!(
        bad.2
            .contains("password authentication failed for user \"alice\""),
        "{}",
        bad.2
    );
    assert!(
        unknown
            .2
            .contains("password authentication failed for user \"mallory\""),
        "{}",
        unknown.2
    );
    let err = h.try_connect(("alice", "nope")).await.err().unwrap();
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"));
    let err = h.try_connect(("mallory", "nope")).await.err().unwrap();
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"));
}
