//! Attacks on just-in-time approval (docs/approval.md), by an independent
//! attacker on 2026-12-07. Each test asserts the secure behaviour; a
//! FINDING's doc comment says what happened before it was fixed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn harness(setup: Setup) -> Harness {
    Harness::start_with(Setup {
        rules: Some(
            pgward::demo::example_rules()
                .unwrap()
                .without_upstream_users(),
        ),
        ..setup
    })
    .await
}

/// One command on the console as `who` (see `Harness::console`).
async fn console(h: &Harness, who: (&str, &str), cmd: &str) -> (bool, String, String) {
    h.console(who, &["-c", cmd]).await
}

fn query(sql: &str, b: &mut BytesMut) {
    frontend::query(sql, b).unwrap();
}

fn parse(name: &str, sql: &str, b: &mut BytesMut) {
    frontend::parse(name, sql, std::iter::empty(), b).unwrap();
}

fn bind_execute(stmt: &str, portal: &str, b: &mut BytesMut) {
    frontend::bind(
        portal,
        stmt,
        std::iter::empty::<i16>(),
        std::iter::empty::<Option<&[u8]>>(),
        |_: Option<&[u8]>, _: &mut BytesMut| {
            Ok::<_, Box<dyn std::error::Error + Sync + Send>>(postgres_protocol::IsNull::Yes)
        },
        std::iter::empty::<i16>(),
        b,
    )
    .map_err(|_| ())
    .unwrap();
    frontend::execute(portal, 0, b).unwrap();
}

/// Reads messages for up to `wait` or to the end of the stream; (tag,
/// body) of each read.
async fn read_for(s: &mut TcpStream, wait: Duration) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    async fn one(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let tag = s.read_u8().await.ok()?;
        let len = s.read_i32().await.ok()? as usize;
        let mut body = vec![0; len.checked_sub(4)?];
        s.read_exact(&mut body).await.ok()?;
        Some((tag, body))
    }
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(m)) = tokio::time::timeout_at(until, one(s)).await {
        out.push(m);
    }
    out
}

fn tags(ms: &[(u8, Vec<u8>)]) -> String {
    ms.iter()
        .map(|(t, b)| match t {
            b'E' | b'N' => format!("{}({})", *t as char, error_field(b, b'M')),
            b'C' => format!("C({})", String::from_utf8_lossy(&b[..b.len() - 1])),
            _ => (*t as char).to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn send(s: &mut TcpStream, b: BytesMut) {
    s.write_all(&b).await.unwrap();
}

/// FINDING (high): the approver is shown one statement and approves it;
/// another runs. bob prepares `CREATE TABLE harmless_t` as the unnamed
/// statement (a Parse of DDL passes), then pipelines Parse(unnamed,
/// `DROP TABLE important`), Bind, Execute, Sync. pgward judges the Execute
/// against every statement the unnamed name may stand for (the one held
/// now and the queued Parse) and files the request with the FIRST one's
/// text: SHOW PENDING says `CREATE TABLE harmless_t`. Approved, the
/// Execute is judged again with approval given, every candidate passes,
/// and the server runs the DROP: `important` is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_runs_only_the_statement_the_approver_saw() {
    let h = harness(Setup::default()).await;
    h.direct()
        .await
        .batch_execute("CREATE TABLE important (a int)")
        .await
        .unwrap();
    let mut s = login(&h, BOB).await;
    let mut b = BytesMut::new();
    parse("", "CREATE TABLE harmless_t (a int)", &mut b);
    frontend::sync(&mut b);
    send(&mut s, b).await;
    until_ready(&mut s).await;
    let mut b = BytesMut::new();
    parse("", "DROP TABLE important", &mut b);
    bind_execute("", "", &mut b);
    frontend::sync(&mut b);
    send(&mut s, b).await;
    let p = h.pending_requests(1).await;
    // The approver approves what it is shown only when it is harmless.
    let verdict = if p[0].1.contains("DROP") {
        "DENY"
    } else {
        "APPROVE"
    };
    console(&h, DANA, &format!("{verdict} {}", p[0].0)).await;
    let answer = tags(&read_for(&mut s, Duration::from_secs(2)).await);
    assert!(
        h.table_exists("important").await,
        "the request showed {:?}, the approver said {verdict}, and the server ran: {answer}",
        p[0].1
    );
}

/// FINDING (medium): SQL `EXECUTE s1` of a statement prepared with a
/// protocol Parse (`CREATE TABLE p1_t`) is held, but the request shows only
/// `EXECUTE s1`: the approver cannot see what would run (SHOW PENDING,
/// SHOW REQUEST and SHOW SESSIONS all say `EXECUTE s1`, classes `ddl`).
/// Combined with the finding above, the name may even stand for a
/// statement queued behind the one the approver could look up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_sql_execute_shows_what_it_runs() {
    let h = harness(Setup::default()).await;
    let mut s = login(&h, BOB).await;
    let mut b = BytesMut::new();
    parse("s1", "CREATE TABLE p1_t (a int)", &mut b);
    frontend::sync(&mut b);
    send(&mut s, b).await;
    until_ready(&mut s).await;
    let mut b = BytesMut::new();
    query("EXECUTE s1", &mut b);
    send(&mut s, b).await;
    let p = h.pending_requests(1).await;
    assert!(!h.table_exists("p1_t").await, "held, not run");
    assert!(
        p[0].1.contains("CREATE TABLE p1_t"),
        "the approver is shown {:?}",
        p[0].1
    );
}

/// FINDING (low/medium): an approver limited by `approve_for` (here alice
/// with `approve_for = ["agent"]`) sees every session on `SHOW SESSIONS`,
/// with the held statement text of roles it may not approve (bob's
/// `CREATE TABLE secret_plan_t`), client addresses and backend pids;
/// `SHOW STATS` counts them too. SHOW PENDING, SHOW REQUEST, SHOW
/// APPROVALS, APPROVE, DENY, CANCEL and TERMINATE are scoped correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_sessions_is_scoped_to_the_roles_one_may_approve() {
    let mut rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users();
    let analyst = rules.roles.get_mut("analyst").unwrap();
    Arc::make_mut(analyst).approve_for = vec!["agent".into()];
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        ..Setup::default()
    })
    .await;
    let bob = Arc::new(h.connect(BOB).await);
    let held = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.simple_query("CREATE TABLE secret_plan_t (a int)").await })
    };
    let p = h.pending_requests(1).await;
    // What is scoped today (stays so).
    for cmd in [
        format!("SHOW REQUEST {}", p[0].0),
        format!("APPROVE {}", p[0].0),
        format!("DENY {}", p[0].0),
        format!("CANCEL {}", p[0].0),
        "TERMINATE 1".to_owned(),
    ] {
        let (ok, _, err) = console(&h, ALICE, &cmd).await;
        assert!(!ok, "alice may not {cmd}: {err}");
    }
    let (ok, out, _) = console(&h, ALICE, "SHOW PENDING").await;
    assert!(ok && out.trim().is_empty(), "{out}");
    let (ok, out, err) = console(&h, ALICE, "SHOW SESSIONS").await;
    assert!(ok, "{err}");
    console(&h, DANA, &format!("DENY {}", p[0].0)).await;
    let _ = held.await;
    assert!(
        !out.contains("secret_plan_t") && !out.contains("|bob|"),
        "alice (approve_for agent) sees bob's session: {out}"
    );
}

/// FINDING (medium, memory): every decided or withdrawn request keeps its
/// whole statement text (up to `server.max_sql_bytes`, 1 MiB) in the
/// 1,000-entry history, so one non-approver that sends big DDL and
/// cancels it (or has it denied) a thousand times pins about 1 GiB of
/// pgward's memory for good. Here 16 requests of 1 MiB leave 16 MiB kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decided_requests_do_not_pin_their_whole_text() {
    let h = harness(Setup::default()).await;
    let mut s = login(&h, BOB).await;
    let padding = "x".repeat(1_000_000);
    for i in 0..16 {
        let mut b = BytesMut::new();
        query(
            &format!("CREATE TABLE big_{i} (a int) /* {padding} */"),
            &mut b,
        );
        send(&mut s, b).await;
        let mut id = None;
        for _ in 0..200 {
            id = h.shared.approvals.pending().first().map(|(r, _)| r.id);
            if id.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.shared
            .approvals
            .deny(id.expect("held"), "dana", "too big")
            .unwrap();
        until_ready(&mut s).await;
    }
    let kept: usize = h
        .shared
        .approvals
        .history()
        .iter()
        .map(|d| d.request.statement.len())
        .sum();
    assert!(
        kept < 4 << 20,
        "{kept} bytes of statement text kept by 16 decided requests"
    );
}

/// Held up: an approval is for one execution. The same prepared statement
/// bound and executed again, or run by SQL EXECUTE, asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_statement_asks_again() {
    let h = harness(Setup::default()).await;
    let mut s = login(&h, BOB).await;
    let mut b = BytesMut::new();
    parse("s2", "CREATE TABLE IF NOT EXISTS p2_t (a int)", &mut b);
    bind_execute("s2", "", &mut b);
    frontend::sync(&mut b);
    send(&mut s, b).await;
    let p = h.pending_requests(1).await;
    console(&h, DANA, &format!("APPROVE {}", p[0].0)).await;
    until_ready(&mut s).await;
    assert!(h.table_exists("p2_t").await);
    h.direct()
        .await
        .batch_execute("DROP TABLE p2_t")
        .await
        .unwrap();
    let mut b = BytesMut::new();
    bind_execute("s2", "", &mut b);
    frontend::sync(&mut b);
    send(&mut s, b).await;
    let p = h.pending_requests(1).await;
    assert_eq!(p.len(), 1);
    assert!(!h.table_exists("p2_t").await);
    console(&h, DANA, &format!("DENY {}", p[0].0)).await;
    until_ready(&mut s).await;
    let mut b = BytesMut::new();
    query("EXECUTE s2", &mut b);
    send(&mut s, b).await;
    h.pending_requests(1).await;
    assert!(!h.table_exists("p2_t").await);
}

/// Held up: of two pipelined Queries, approving the first runs only it;
/// the second is held on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_one_pipelined_query_runs_only_it() {
    let h = harness(Setup::default()).await;
    let mut s = login(&h, BOB).await;
    let mut b = BytesMut::new();
    query("CREATE TABLE p3_a (a int)", &mut b);
    query("CREATE TABLE p3_b (a int)", &mut b);
    send(&mut s, b).await;
    let p = h.pending_requests(1).await;
    assert_eq!(p[0].1, "CREATE TABLE p3_a (a int)");
    console(&h, DANA, &format!("APPROVE {}", p[0].0)).await;
    until_ready(&mut s).await;
    let p = h.pending_requests(1).await;
    assert_eq!(p[0].1, "CREATE TABLE p3_b (a int)");
    assert!(h.table_exists("p3_a").await && !h.table_exists("p3_b").await);
}

/// Held up: non-approvers cannot reach the console (nor by a look-alike
/// database name); the console refuses the extended protocol and odd input
/// without hanging, and stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_non_approvers_and_odd_input() {
    let h = harness(Setup::default()).await;
    for who in [ALICE, BOB, AGENT] {
        let (ok, _, err) = console(&h, who, "SHOW PENDING").await;
        assert!(
            !ok && err.contains("may not use the admin console"),
            "{err}"
        );
    }
    let conn = h.conninfo(DANA).replace("dbname=postgres", "dbname=pgward");
    let (c, conn) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert!(c.query("SHOW PENDING", &[]).await.is_err());
    for bad in [
        "APPROVE 99999999999999999999999",
        "APPROVE -1",
        "DENY 1 'open",
        "TERMINATE 0",
        "CANCEL 18446744073709551615",
    ] {
        assert!(c.simple_query(bad).await.is_err(), "{bad}");
    }
    let big = format!("DENY 1 '{}'", "x".repeat(900_000));
    assert!(c.simple_query(&big).await.is_err());
    assert_eq!(c.simple_query("SHOW STATS").await.unwrap().len(), 8);
}

/// FINDING (high, same cause as the unnamed case): with a named statement.
/// bob prepares `s` as `CREATE TABLE harmless_n`, then pipelines Query
/// `DEALLOCATE s`, Parse(`s`, `DROP TABLE important`), Bind, Execute,
/// Sync. The request shows the statement `s` holds now (harmless); once
/// approved, the DROP runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_runs_only_the_named_statement_the_approver_saw() {
    let h = harness(Setup::default()).await;
    h.direct()
        .await
        .batch_execute("CREATE TABLE important (a int)")
        .await
        .unwrap();
    let mut s = login(&h, BOB).await;
    let mut b = BytesMut::new();
    parse("s", "CREATE TABLE harmless_n (a int)", &mut b);
    frontend::sync(&mut b);
    send(&mut s, b).await;
    until_ready(&mut s).await;
    let mut b = BytesMut::new();
    query("DEALLOCATE s", &mut b);
    parse("s", "DROP TABLE important", &mut b);
    bind_execute("s", "", &mut b);
    frontend::sync(&mut b);
    send(&mut s, b).await;
    let p = h.pending_requests(1).await;
    let verdict = if p[0].1.contains("DROP") {
        "DENY"
    } else {
        "APPROVE"
    };
    console(&h, DANA, &format!("{verdict} {}", p[0].0)).await;
    let answer = tags(&read_for(&mut s, Duration::from_secs(2)).await);
    assert!(
        h.table_exists("important").await,
        "the request showed {:?}, the approver said {verdict}, and the server ran: {answer}",
        p[0].1
    );
}

/// FINDING (low, integrity): a cancel and an approval that meet. The
/// session takes posted commands before it looks at its ticket, so when
/// the client's CancelRequest (here posted as the listener posts it) and
/// APPROVE land together the statement is withdrawn (the client gets
/// 57014, nothing runs) while the queue records it "approved by dana" and
/// the approver was told "the statement runs now". In 9 runs of 10 here.
/// (Fail-safe: nothing runs unapproved; but SHOW APPROVALS lies, and the
/// statement the approver believes ran did not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_recorded_approved_ran() {
    let h = harness(Setup::default()).await;
    let mut s = login(&h, BOB).await;
    for i in 0..5 {
        let mut b = BytesMut::new();
        query(&format!("CREATE TABLE race_{i} (a int)"), &mut b);
        send(&mut s, b).await;
        let mut held = None;
        for _ in 0..200 {
            held = h
                .shared
                .approvals
                .pending()
                .first()
                .map(|(r, _)| (r.id, r.session));
            if held.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (id, session) = held.expect("held");
        let entry = h.shared.sessions.get(session).expect("listed");
        entry
            .control
            .post(pgward::session::registry::Command::Cancel);
        let approved = h.shared.approvals.approve(id, "dana", None).is_ok();
        let answer = tags(&until_ready(&mut s).await);
        let recorded = h
            .shared
            .approvals
            .history()
            .into_iter()
            .find(|d| d.request.id == id)
            .map(|d| d.verdict.as_str());
        let ran = h.table_exists(&format!("race_{i}")).await;
        assert_eq!(
            recorded == Some("approved"),
            ran,
            "run {i}: APPROVE answered ok={approved}, recorded {recorded:?}, client got {answer}"
        );
    }
}

/// FINDING (low/medium, availability): shutdown with two statements
/// held in a pipeline. Draining withdraws the held Query, then goes on
/// with the input: the next DDL in the pipeline is judged and HELD AGAIN,
/// filing a new request during the drain, and nothing looks at it until
/// `shutdown_grace_secs` (30 s) forces the end. One client keeps pgward
/// from stopping for the whole grace, and a request an approver could
/// still approve (by `h.shared`, or on another instance's console) sits
/// pending while pgward shuts down. (With one held statement followed by
/// a SELECT, pgward stops in 2 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_withdraws_every_held_statement_at_once() {
    let mut h = harness(Setup::default()).await;
    let shared = h.shared.clone();
    let mut s = login(&h, BOB).await;
    let mut b = BytesMut::new();
    query("CREATE TABLE shut_t (a int)", &mut b);
    query("CREATE TABLE shut_u (a int)", &mut b);
    send(&mut s, b).await;
    h.pending_requests(1).await;
    let watch = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        shared
            .approvals
            .pending()
            .iter()
            .map(|(r, _)| r.statement.to_string())
            .collect::<Vec<_>>()
    };
    let (stopped, still) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), h.stop()),
        watch
    );
    assert!(
        still.is_empty(),
        "3 s into the shutdown, requests pending: {still:?}"
    );
    assert!(stopped.is_ok(), "pgward did not stop within 10 s");
    let answer = tags(&read_for(&mut s, Duration::from_secs(2)).await);
    assert!(answer.contains("withdrawn"), "{answer}");
}
