//! pgward follows the server's protocol state exactly: what the server
//! skips after an error, the Syncs a COPY swallows, which statement a name
//! stands for after a failed or skipped Parse. Each case is sent as raw
//! protocol bytes to a real PostgreSQL through pgward, and the answers and
//! the audit log are checked against what the server really did.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use pgward::audit::{Event, Kind};
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Protocol messages, built up and sent as one write.
#[derive(Default)]
struct Msgs(BytesMut);

impl Msgs {
    fn parse(mut self, name: &str, sql: &str) -> Self {
        frontend::parse(name, sql, [], &mut self.0).unwrap();
        self
    }
    /// Bind with no parameters and text results.
    fn bind(mut self, portal: &str, statement: &str) -> Self {
        let body = format!("{portal}\0{statement}\0\0\0\0\0\0\0");
        self.0.extend_from_slice(&frame(b'B', body.as_bytes()));
        self
    }
    fn execute(mut self, portal: &str) -> Self {
        frontend::execute(portal, 0, &mut self.0).unwrap();
        self
    }
    fn describe_statement(mut self, name: &str) -> Self {
        frontend::describe(b'S', name, &mut self.0).unwrap();
        self
    }
    fn sync(mut self) -> Self {
        frontend::sync(&mut self.0);
        self
    }
    fn flush(mut self) -> Self {
        frontend::flush(&mut self.0);
        self
    }
    fn query(mut self, sql: &str) -> Self {
        frontend::query(sql, &mut self.0).unwrap();
        self
    }
    fn copy_data(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(&frame(b'd', data));
        self
    }
    fn copy_done(mut self) -> Self {
        self.0.extend_from_slice(&frame(b'c', b""));
        self
    }
    async fn send(self, s: &mut TcpStream) {
        s.write_all(&self.0).await.unwrap();
    }
}

fn msgs() -> Msgs {
    Msgs::default()
}

type Reply = Vec<(u8, Vec<u8>)>;

/// Reads exactly `n` messages.
async fn read_n(s: &mut TcpStream, n: usize) -> Reply {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(10), read_msg(s))
            .await
            .expect("an answer within 10 s");
        out.push(m);
    }
    out
}

fn tags(r: &Reply) -> String {
    r.iter().map(|m| m.0 as char).collect()
}

/// The SQLSTATE of the first ErrorResponse.
fn code(r: &Reply) -> String {
    let e = r.iter().find(|m| m.0 == b'E').expect("an error");
    error_field(&e.1, b'C')
}

fn message(r: &Reply) -> String {
    let e = r.iter().find(|m| m.0 == b'E').expect("an error");
    error_field(&e.1, b'M')
}

/// The first column of the first DataRow, as text.
fn first_value(r: &Reply) -> String {
    let d = &r.iter().find(|m| m.0 == b'D').expect("a row").1;
    let len = i32::from_be_bytes([d[2], d[3], d[4], d[5]]) as usize;
    String::from_utf8_lossy(&d[6..6 + len]).into_owned()
}

fn command_tag(r: &Reply) -> String {
    let c = &r.iter().find(|m| m.0 == b'C').expect("a completion").1;
    String::from_utf8_lossy(&c[..c.len() - 1]).into_owned()
}

fn s(t: &pgward::audit::event::Text) -> Option<&str> {
    t.as_deref()
}

fn list(l: &pgward::audit::event::List) -> Vec<String> {
    l.as_deref()
        .unwrap_or(&[])
        .iter()
        .flatten()
        .map(|i| i.to_string())
        .collect()
}

/// Statement events whose text is `sql`.
fn events_for<'a>(events: &'a [Event], sql: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind == Kind::Statement && s(&e.statement) == Some(sql))
        .collect()
}

fn is_parse(e: &Event) -> bool {
    s(&e.detail) == Some(pgward::session::recorder::PREPARED)
}

/// The one event of `sql` that ran (not a Parse's), or a panic.
fn ran<'a>(events: &'a [Event], sql: &str) -> &'a Event {
    let found: Vec<&Event> = events_for(events, sql)
        .into_iter()
        .filter(|e| !is_parse(e))
        .collect();
    assert_eq!(found.len(), 1, "{sql}: {found:#?}");
    found[0]
}

async fn harness() -> Harness {
    Harness::start_with(Setup {
        audit: "flush_interval_ms = 50".into(),
        setup_sql: vec![
            "CREATE TABLE orders (id int primary key, amount int)".into(),
            "INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 9) g".into(),
            "CREATE TABLE t (id int, v text)".into(),
            "GRANT ALL ON orders, t TO PUBLIC".into(),
        ],
        ..Setup::default()
    })
    .await
}

/// Issue 26, item 4: after an error in the extended protocol the server
/// skips a simple Query up to Sync; pgward must not wait for its answer
/// (which shifted every later audit outcome by one).
const DIV: &str = "SELECT 1/g FROM generate_series(0, 0) g";

async fn error_skips_a_query(h: &Harness) {
    let mut c = login(h, DANA).await;
    // Fails in Execute (a constant 1/0 would already fail in Bind).
    msgs()
        .parse("", DIV)
        .bind("", "")
        .execute("")
        .query("SELECT 'skipped'")
        .sync()
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!(tags(&r), "12EZ");
    assert_eq!(code(&r), "22012");
    msgs().query("SELECT 'after'").send(&mut c).await;
    let r = until_ready(&mut c).await;
    assert_eq!(
        (tags(&r).as_str(), first_value(&r).as_str()),
        ("TDCZ", "after")
    );
    msgs()
        .parse("", "SELECT 'ext'")
        .bind("", "")
        .execute("")
        .sync()
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!(
        (tags(&r).as_str(), first_value(&r).as_str()),
        ("12DCZ", "ext")
    );
}

fn error_skips_a_query_audit(events: &[Event]) {
    let div = ran(events, DIV);
    assert_eq!(
        (s(&div.outcome), s(&div.sqlstate)),
        (Some("error"), Some("22012"))
    );
    let skipped = ran(events, "SELECT 'skipped'");
    assert_eq!(s(&skipped.outcome), Some("not_run"));
    for sql in ["SELECT 'after'", "SELECT 'ext'"] {
        let e = ran(events, sql);
        assert_eq!((s(&e.outcome), e.rows), (Some("ok"), Some(1)), "{sql}");
    }
}

/// Issue 26, item 4: a Parse skipped after an error does not replace the
/// unnamed statement; the Execute runs the one the server still holds,
/// and the audit names that one.
async fn skipped_parse_keeps_the_unnamed_statement(h: &Harness) {
    let mut c = login(h, DANA).await;
    msgs().parse("", "SELECT 'a'").sync().send(&mut c).await;
    assert_eq!(tags(&until_ready(&mut c).await), "1Z");
    // A Bind of a statement nobody prepared: the server's error (26000),
    // which pgward answers itself, and the rest up to Sync is skipped.
    msgs()
        .bind("", "no_such_statement")
        .parse("", "SELECT 'c'")
        .sync()
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!((tags(&r).as_str(), code(&r).as_str()), ("EZ", "26000"));
    // The server's own error: the Parse behind it is skipped and on record.
    msgs()
        .describe_statement("no_such_statement")
        .parse("", "SELECT 'b'")
        .sync()
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!((tags(&r).as_str(), code(&r).as_str()), ("EZ", "26000"));
    msgs().bind("", "").execute("").sync().send(&mut c).await;
    let r = until_ready(&mut c).await;
    assert_eq!((tags(&r).as_str(), first_value(&r).as_str()), ("2DCZ", "a"));
}

fn skipped_parse_audit(events: &[Event]) {
    let a = ran(events, "SELECT 'a'");
    assert_eq!((s(&a.outcome), a.rows), (Some("ok"), Some(1)));
    let b = events_for(events, "SELECT 'b'");
    assert_eq!(b.len(), 1, "{b:#?}");
    assert!(is_parse(b[0]));
    assert_eq!(s(&b[0].outcome), Some("not_run"));
}

/// Issue 26, item 4: COPY FROM STDIN the way pg8000 sends it (a Sync before
/// the data, which the COPY swallows). Afterwards every answer still pairs
/// with its statement: the denial is pgward's, not the stand-in's syntax
/// error, and a real error is the server's.
async fn copy_in_with_an_early_sync(h: &Harness) {
    let mut c = login(h, BOB).await;
    msgs()
        .parse("", "COPY t FROM STDIN")
        .bind("", "")
        .execute("")
        .flush()
        .sync()
        .send(&mut c)
        .await;
    assert_eq!(tags(&read_n(&mut c, 3).await), "12G");
    msgs()
        .copy_data(b"1\tx\n2\ty\n")
        .copy_done()
        .sync()
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!(
        (tags(&r).as_str(), command_tag(&r).as_str()),
        ("CZ", "COPY 2")
    );
    msgs()
        .query("GRANT SELECT ON t TO PUBLIC")
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!(tags(&r), "EZ");
    assert_eq!(code(&r), "42501");
    assert!(message(&r).starts_with("pgward"), "{}", message(&r));
    msgs().query("SELECT 1/0").send(&mut c).await;
    let r = until_ready(&mut c).await;
    assert_eq!((tags(&r).as_str(), code(&r).as_str()), ("EZ", "22012"));
    msgs().query("SELECT 5").send(&mut c).await;
    let r = until_ready(&mut c).await;
    assert_eq!((tags(&r).as_str(), first_value(&r).as_str()), ("TDCZ", "5"));
}

fn copy_in_audit(events: &[Event]) {
    let copy = ran(events, "COPY t FROM STDIN");
    assert_eq!((s(&copy.outcome), copy.rows), (Some("ok"), Some(2)));
    let grant = ran(events, "GRANT SELECT ON t TO PUBLIC");
    assert_eq!(s(&grant.outcome), Some("denied"));
    let div = ran(events, "SELECT 1/0");
    assert_eq!(
        (s(&div.outcome), s(&div.sqlstate)),
        (Some("error"), Some("22012"))
    );
    let five = ran(events, "SELECT 5");
    assert_eq!((s(&five.outcome), five.rows), (Some("ok"), Some(1)));
}

/// Issue 26, item 4: a Parse denied in a pipeline is one event; the Bind
/// and Execute behind it are skipped by the server, not denied.
async fn denied_parse_in_a_pipeline(h: &Harness) {
    let mut c = login(h, AGENT).await;
    msgs()
        .parse("", "DELETE FROM orders WHERE id = 9")
        .bind("", "")
        .execute("")
        .sync()
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!((tags(&r).as_str(), code(&r).as_str()), ("EZ", "42501"));
    msgs()
        .parse("", "SELECT 7")
        .bind("", "")
        .execute("")
        .sync()
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!(
        (tags(&r).as_str(), first_value(&r).as_str()),
        ("12DCZ", "7")
    );
}

fn denied_parse_audit(events: &[Event]) {
    let denied = ran(events, "DELETE FROM orders WHERE id = 9");
    assert_eq!(s(&denied.outcome), Some("denied"));
    let session: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == Kind::Statement && e.session_id == denied.session_id)
        .collect();
    let texts: Vec<Option<&str>> = session.iter().map(|e| s(&e.statement)).collect();
    // The denial once; then SELECT 7 prepared and run.
    assert_eq!(
        texts,
        vec![
            Some("DELETE FROM orders WHERE id = 9"),
            Some("SELECT 7"),
            Some("SELECT 7")
        ],
        "{session:#?}"
    );
}

/// Issue 26, item 7: a statement prepared by Parse alone and run by SQL
/// EXECUTE is on record, with its classes and tables.
async fn parse_then_sql_execute(h: &Harness) {
    let mut c = login(h, DANA).await;
    msgs()
        .parse("hid", "DELETE FROM orders WHERE id = 3")
        .sync()
        .send(&mut c)
        .await;
    assert_eq!(tags(&until_ready(&mut c).await), "1Z");
    msgs().query("EXECUTE hid").send(&mut c).await;
    let r = until_ready(&mut c).await;
    assert_eq!(
        (tags(&r).as_str(), command_tag(&r).as_str()),
        ("CZ", "DELETE 1")
    );
}

fn parse_then_sql_execute_audit(events: &[Event]) {
    let prepared = events_for(events, "DELETE FROM orders WHERE id = 3");
    assert_eq!(prepared.len(), 1, "{prepared:#?}");
    let p = prepared[0];
    assert!(is_parse(p));
    assert_eq!(s(&p.outcome), Some("ok"));
    assert!(list(&p.classes).contains(&"write".to_owned()), "{p:#?}");
    assert_eq!(list(&p.tables), vec!["orders".to_owned()]);
    assert_eq!(s(&ran(events, "EXECUTE hid").outcome), Some("ok"));
}

/// Issue 26, item 7: a Parse the server refuses (the name exists) does not
/// replace the statement pgward has on record under that name. Sent as
/// one pipeline, so pgward cannot know at send time which one will run.
async fn refused_parse_keeps_the_named_statement(h: &Harness) {
    let mut c = login(h, BOB).await;
    msgs()
        .parse("s", "DELETE FROM orders WHERE id = 4")
        .sync()
        .parse("s", "SELECT 1")
        .sync()
        .bind("", "s")
        .execute("")
        .sync()
        .send(&mut c)
        .await;
    assert_eq!(tags(&until_ready(&mut c).await), "1Z");
    let r = until_ready(&mut c).await;
    assert_eq!((tags(&r).as_str(), code(&r).as_str()), ("EZ", "42P05"));
    let r = until_ready(&mut c).await;
    assert_eq!(
        (tags(&r).as_str(), command_tag(&r).as_str()),
        ("2CZ", "DELETE 1")
    );
}

fn refused_parse_audit(events: &[Event]) {
    let del = ran(events, "DELETE FROM orders WHERE id = 4");
    assert_eq!((s(&del.outcome), del.rows), (Some("ok"), Some(1)));
    assert!(list(&del.classes).contains(&"write".to_owned()), "{del:#?}");
    assert_eq!(list(&del.tables), vec!["orders".to_owned()]);
    let select = events_for(events, "SELECT 1");
    assert_eq!(select.len(), 1, "{select:#?}");
    assert!(is_parse(select[0]));
    assert_eq!(
        (s(&select[0].outcome), s(&select[0].sqlstate)),
        (Some("error"), Some("42P05"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_and_audit_follow_the_server() {
    let h = harness().await;
    error_skips_a_query(&h).await;
    skipped_parse_keeps_the_unnamed_statement(&h).await;
    copy_in_with_an_early_sync(&h).await;
    denied_parse_in_a_pipeline(&h).await;
    parse_then_sql_execute(&h).await;
    refused_parse_keeps_the_named_statement(&h).await;
    // The rows really went where the server says.
    let direct = h.direct().await;
    let left: i64 = direct
        .query_one("SELECT count(*) FROM orders WHERE id IN (3, 4, 9)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "3 and 4 deleted, 9 not");
    let events = h.audit_events();
    error_skips_a_query_audit(&events);
    skipped_parse_audit(&events);
    copy_in_audit(&events);
    denied_parse_audit(&events);
    parse_then_sql_execute_audit(&events);
    refused_parse_audit(&events);
}

/// Issue 26, item 9: startup keys are matched as PostgreSQL matches them.
/// `user`, `database`, `options` and `replication` only in lower case; any
/// other spelling is a setting name, and no setting has those names. Before,
/// they were lower-cased into the real keys of the upstream startup packet:
/// `DATABASE=` beat the `upstream.database` pin, `USER=` changed the
/// upstream user, `OPTIONS=` carried settings past the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_keys_are_matched_exactly() {
    let h = Harness::start_with(Setup {
        upstream: "database = \"postgres\"".into(),
        ..Setup::default()
    })
    .await;
    let dana = |extra: (&'static str, &'static str)| {
        vec![("user", "dana"), ("database", "postgres"), extra]
    };
    for extra in [
        ("DATABASE", "template1"),
        ("USER", "nobody"),
        ("Options", "-c standard_conforming_strings=off"),
        ("REPLICATION", "database"),
        ("_PQ_.anything", "1"),
        ("options", "-c DATABASE=template1"),
        ("options", "-c user=nobody"),
    ] {
        let got = login_with(&h, &dana(extra), DANA.1).await;
        let (code, msg) = got
            .err()
            .unwrap_or_else(|| panic!("{extra:?} was accepted"));
        assert_eq!(code, "42704", "{extra:?}: {msg}");
        assert!(
            msg.starts_with("unrecognized configuration parameter"),
            "{msg}"
        );
    }
    // Any other case of a setting's name is that setting, judged as such:
    // the app role may set only app.* settings.
    let bob = [
        ("user", "bob"),
        ("database", "postgres"),
        ("STANDARD_CONFORMING_STRINGS", "off"),
    ];
    let (code, msg) = login_with(&h, &bob, BOB.1).await.expect_err("refused");
    assert_eq!(code, "42501", "{msg}");
    assert!(msg.contains("standard_conforming_strings"), "{msg}");
    // And applied as that setting when allowed.
    let mut c = login_with(&h, &dana(("Application_Name", "mixed-case")), DANA.1)
        .await
        .expect("signed in");
    msgs()
        .query("SELECT current_setting('application_name') || ' ' || current_database()")
        .send(&mut c)
        .await;
    let r = until_ready(&mut c).await;
    assert_eq!(first_value(&r), "mixed-case postgres");
}

/// Issue 26, item 10: one session cannot grow pgward's memory at everyone
/// else's expense. Denied Parses without Sync cost nothing per message
/// (the server skips them, so pgward drops them); past
/// `server.max_session_pending` owed answers or held statements the
/// session ends with FATAL 54000, and other sessions keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_cannot_hoard() {
    let h = Harness::start_with(Setup {
        server: "max_session_pending = 64".into(),
        ..Setup::default()
    })
    .await;
    let other = h.connect(DANA).await;

    // 100,000 denied Parses and one Sync: one error, one ReadyForQuery,
    // and the session goes on.
    let mut flood = login(&h, AGENT).await;
    let mut b = msgs();
    for i in 0..100_000 {
        b = b.parse("", &format!("DELETE FROM pg_class WHERE oid = {i}"));
    }
    let sender = tokio::spawn(async move {
        b.sync().send(&mut flood).await;
        flood
    });
    let answer: i32 = other.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
    assert_eq!(answer, 42);
    let mut flood = sender.await.unwrap();
    let r = until_ready(&mut flood).await;
    assert_eq!((tags(&r).as_str(), code(&r).as_str()), ("EZ", "42501"));
    msgs().query("SELECT 8").send(&mut flood).await;
    assert_eq!(first_value(&until_ready(&mut flood).await), "8");

    // More Queries in flight than a session may have owed: FATAL 54000.
    let mut greedy = login(&h, AGENT).await;
    let mut b = msgs();
    for _ in 0..200 {
        b = b.query("SELECT 1");
    }
    b.send(&mut greedy).await;
    let (code, msg) = fatal_after(&mut greedy).await;
    assert_eq!(code, "54000", "{msg}");
    assert!(msg.contains("waiting for the server's answer"), "{msg}");

    // More prepared statements held than a session may hold: FATAL 54000.
    let mut hoarder = login(&h, AGENT).await;
    for batch in 0..2 {
        let mut b = msgs();
        for i in 0..40 {
            b = b.parse(&format!("s{batch}_{i}"), "SELECT 1");
        }
        b.sync().send(&mut hoarder).await;
        if batch == 0 {
            assert_eq!(until_ready(&mut hoarder).await.len(), 41);
        }
    }
    let (code, msg) = fatal_after(&mut hoarder).await;
    assert_eq!(code, "54000", "{msg}");
    assert!(msg.contains("prepared statements"), "{msg}");

    let answer: i32 = other.query_one("SELECT 6 * 7", &[]).await.unwrap().get(0);
    assert_eq!(answer, 42);
}

/// Reads until a FATAL error and the end of the connection; its code and
/// message.
async fn fatal_after(s: &mut TcpStream) -> (String, String) {
    loop {
        let (tag, body) = tokio::time::timeout(Duration::from_secs(10), read_msg(s))
            .await
            .expect("a FATAL error within 10 s");
        if tag == b'E' && error_field(&body, b'V') == "FATAL" {
            return (error_field(&body, b'C'), error_field(&body, b'M'));
        }
    }
}
