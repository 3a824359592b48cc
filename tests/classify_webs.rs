//! Webs of functions and triggers in a real database (issue 26, DoS): a
//! statement that reaches one body on exponentially many paths is judged
//! with each body judged once, its verdict still finds what the deepest
//! body does, and pgward refuses it end to end. The cost is asserted as a
//! count of SQL texts judged, never as time.

mod common;

use common::webs;
use common::*;
use pgward::policy::classify::classify;
use pgward::policy::Class;

const FUNCTIONS: usize = 14;
const TABLES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webs_are_judged_once_per_body_and_still_refused() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            webs::functions(FUNCTIONS),
            webs::triggers(TABLES),
            "CREATE TABLE web_plain (id int)".into(),
        ],
        ..Setup::default()
    })
    .await;
    let cat = webs::catalog(&h.pg, "postgres").await;

    // 14 functions each calling the next two: 377 paths to the last one,
    // whose body alone reads a server file.
    let st = classify("SELECT web_f0(1)", &cat).unwrap().remove(0);
    assert!(
        st.dangerous.iter().any(|d| d.name == "pg_read_file"),
        "{:?}",
        st.classes()
    );
    assert_eq!(st.judged, FUNCTIONS, "one text per body");

    // 10 tables whose triggers update the next two and the first: the
    // last one's trigger writes a server file.
    let st = classify("INSERT INTO web_t0 VALUES (1, 1)", &cat)
        .unwrap()
        .remove(0);
    assert!(
        st.dangerous.iter().any(|d| d.name == "copy_file"),
        "{:?}",
        st.classes()
    );
    assert!(st.classes().contains(Class::FileOrProgram));
    for i in 0..TABLES {
        let t = format!("web_t{i}");
        assert!(st.relations.iter().any(|r| r.name == t), "{t}");
    }
    // Each body's UPDATEs, COPY and RETURN, judged once (several bodies
    // share a text).
    assert!(st.judged <= 4 * TABLES, "{} judged", st.judged);

    // End to end, for a role that may write but not touch server files.
    let c = h.connect(BOB).await;
    for sql in ["SELECT web_f0(1)", "INSERT INTO web_t0 VALUES (1, 1)"] {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert!(Harness::is_denial(&e), "{sql}: {e:?}");
    }
    c.simple_query("INSERT INTO web_plain VALUES (1)")
        .await
        .expect("a plain write is allowed");
    assert_eq!(one_number(&c, "SELECT count(*) FROM web_plain").await, 1);
}
