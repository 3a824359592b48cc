//! Sessions with `standard_conforming_strings = off`: a backslash escapes
//! the next character in every string, so the same text splits into other
//! statements. pgward parses each session's SQL with the setting the
//! server reports for it, before and after a switch, and never shares a
//! classification between the two readings.

mod common;

use common::{error_field, login_with, until_ready, Harness, Setup, ALICE};
use tokio::io::AsyncWriteExt;

/// The example rules, with the read-only analyst (alice) allowed to turn
/// standard_conforming_strings off.
async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = common::example_rules_dir(dir.path());
    let roles = rules_dir.join("roles.toml");
    let text = std::fs::read_to_string(&roles).unwrap();
    let line = "allow = [\"read\", \"session\", \"transaction\", \"copy_out\"]";
    assert!(text.contains(line));
    let text = text.replacen(
        line,
        &format!("{line}\nsettings = [\"standard_conforming_strings\", \"backslash_quote\"]"),
        1,
    );
    std::fs::write(&roles, text).unwrap();
    let rules = pgward::rules::Rules::load(&rules_dir).expect("rules");
    Harness::start_with(Setup {
        setup_sql: vec![
            "CREATE TABLE scratch (a int); INSERT INTO scratch VALUES (1), (2)".into(),
            "CREATE FUNCTION flips() RETURNS int STABLE LANGUAGE sql AS \
             $$ SELECT length('a\\''); DELETE FROM scratch; SELECT 1; --') $$"
                .into(),
        ],
        rules: Some(rules.without_upstream_users()),
        ..Setup::default()
    })
    .await
}

async fn rows(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM scratch", &[])
        .await
        .unwrap()
        .get(0)
}

/// The values of the simple query's rows (first column).
async fn values(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for m in c.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.push(r.get(0).unwrap_or("NULL").to_owned());
        }
    }
    Ok(out)
}

/// One string with escapes off: `'a\'; DELETE ...; --'`.
const ONE_STRING: &str = "SELECT 'a\\'; DELETE FROM scratch; --'";
/// Two statements with escapes off (`\\` is a backslash).
const TWO_STATEMENTS: &str = "SELECT 'a\\\\'; DELETE FROM scratch; --'";
/// One string with escapes on (`''` is a quote), two statements off.
const FLIPS: &str = "SELECT 'a\\''; DELETE FROM scratch; --'";

#[tokio::test(flavor = "multi_thread")]
async fn strings_are_read_as_the_session_reads_them() {
    let h = harness().await;
    let direct = h.direct().await;
    let alice = h.connect(ALICE).await;

    // Standard strings: FLIPS is one harmless string, and cached as such.
    let on = values(&alice, FLIPS).await.expect("one string");
    assert_eq!(on, values(&direct, FLIPS).await.unwrap());
    for sql in [ONE_STRING, TWO_STATEMENTS] {
        let e = values(&alice, sql).await.unwrap_err();
        assert!(Harness::is_denial(&e), "{sql}: {e:?}");
    }

    // Switched off mid-session: what was one string is now a DELETE.
    values(&alice, "SET standard_conforming_strings = off")
        .await
        .expect("the analyst may turn it off");
    direct
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    let got = values(&alice, ONE_STRING).await.expect("one string now");
    assert_eq!(got, values(&direct, ONE_STRING).await.unwrap());
    assert_eq!(got, ["a'; DELETE FROM scratch; --"]);
    for sql in [TWO_STATEMENTS, FLIPS] {
        let e = values(&alice, sql).await.unwrap_err();
        assert!(Harness::is_denial(&e), "{sql}: {e:?}");
        // The extended protocol is judged the same way.
        let e = alice.prepare(sql).await.unwrap_err();
        assert!(Harness::is_denial(&e), "{sql}: {e:?}");
    }
    assert_eq!(rows(&direct).await, 2, "a DELETE ran");
    // The server does read a DELETE there.
    direct.batch_execute("BEGIN").await.unwrap();
    values(&direct, FLIPS).await.unwrap();
    assert_eq!(rows(&direct).await, 0);
    direct.batch_execute("ROLLBACK").await.unwrap();
    // A function whose body the server reads at each call, with the
    // session's strings: one harmless SELECT on, a DELETE off (which the
    // server would refuse in a STABLE function; pgward does not count on
    // it). pgward does not judge such a body with escapes: unknown.
    let e = values(&alice, "SELECT flips()").await.unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    assert!(format!("{e:?}").contains("backslash"), "{e:?}");

    // Back on: the cached readings of on-mode texts apply again.
    values(&alice, "SET standard_conforming_strings = on")
        .await
        .unwrap();
    assert_eq!(values(&alice, FLIPS).await.expect("one string"), on);
    let e = values(&alice, ONE_STRING).await.unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    assert_eq!(rows(&direct).await, 2);
    values(&alice, "SELECT flips()")
        .await
        .expect("a read, with standard strings");
}

fn query(sql: &[u8]) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    m.extend_from_slice(sql);
    m.push(0);
    m
}

/// The setting from the startup packet, and text pipelined behind a
/// change the server has not yet confirmed.
#[tokio::test(flavor = "multi_thread")]
async fn startup_and_pipelined_changes() {
    let h = harness().await;
    let mut s = login_with(
        &h,
        &[
            ("user", ALICE.0),
            ("database", "postgres"),
            ("standard_conforming_strings", "off"),
        ],
        ALICE.1,
    )
    .await
    .expect("login");
    s.write_all(&query(ONE_STRING.as_bytes())).await.unwrap();
    let a = until_ready(&mut s).await;
    assert!(a.iter().any(|(t, _)| *t == b'D'), "{a:?}");
    s.write_all(&query(TWO_STATEMENTS.as_bytes()))
        .await
        .unwrap();
    let a = until_ready(&mut s).await;
    let err = a.iter().find(|(t, _)| *t == b'E').expect("denied");
    assert_eq!(error_field(&err.1, b'C'), "42501");

    // Switched on, with text behind the switch: a backslash may mean
    // either, so that text is refused; text without one is not.
    let mut pipeline = query(b"SET standard_conforming_strings = on");
    pipeline.extend(query(ONE_STRING.as_bytes()));
    pipeline.extend(query(b"SELECT 'plain'"));
    s.write_all(&pipeline).await.unwrap();
    let a = until_ready(&mut s).await;
    assert!(!a.iter().any(|(t, _)| *t == b'E'), "{a:?}");
    let a = until_ready(&mut s).await;
    let err = a.iter().find(|(t, _)| *t == b'E').expect("refused");
    assert_eq!(error_field(&err.1, b'C'), "55000", "{a:?}");
    let a = until_ready(&mut s).await;
    assert!(a.iter().any(|(t, _)| *t == b'D'), "{a:?}");
    // Confirmed on: ONE_STRING is a string and a DELETE.
    s.write_all(&query(ONE_STRING.as_bytes())).await.unwrap();
    let a = until_ready(&mut s).await;
    let err = a.iter().find(|(t, _)| *t == b'E').expect("denied");
    assert_eq!(error_field(&err.1, b'C'), "42501");

    // A role that does not list it may not turn it off.
    let bob = h.connect(common::BOB).await;
    let e = values(&bob, "SET standard_conforming_strings = off")
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
}
