//! Issue 26's remaining gaps, each tried end to end: parameter types the
//! catalog does not hold, the functions foreign key checks run, domain
//! defaults that ADD COLUMN evaluates, and the audit log's backpressure.
//!
//! The harness connects upstream as a superuser, so what pgward lets
//! through really runs: `peek` counts its calls in the sequence `hits`
//! (sequences ignore rollbacks) and reads a server file's metadata, which
//! no role here may do.

mod common;

use std::path::Path;

use bytes::BytesMut;
use common::*;
use pgward::auth::scram::Verifier;
use pgward::rules::Rules;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

const READER: (&str, &str) = ("reader", "reader-password");
const BUILDER: (&str, &str) = ("builder", "builder-password");
const GUARDED: (&str, &str) = ("guarded", "guarded-password");
const NOSY: (&str, &str) = ("nosy", "nosy-password");

/// `reader` reads; `builder` reads, writes and changes the schema. Neither
/// may read server files (pg_stat_file).
fn rules() -> Rules {
    let mut text = String::from(
        "[role.reader]\nallow = [\"read\", \"session\", \"transaction\"]\n\n\
         [role.builder]\nallow = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\"]\n\n\
         [role.guarded]\nallow = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\"]\n\
         [role.guarded.tables]\n\"*\" = { deny = [\"public.vault\"] }\n\n\
         [role.nosy]\nallow = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\"]\n\
         [role.nosy.tables]\nread = { deny = [\"public.vault\"] }\n\n",
    );
    for (name, password) in [READER, BUILDER, GUARDED, NOSY] {
        let v = Verifier::generate(password, 4096);
        text.push_str(&format!(
            "[[identity]]\nname = \"{name}\"\nscram = \"{v}\"\nroles = [\"{name}\"]\n"
        ));
    }
    let mut rules = Rules::default();
    rules
        .add_file(Path::new("security-gaps.toml"), &text)
        .expect("rules");
    rules.validate().expect("rules validate");
    rules
}

/// `peek(x)` counts its calls in `hits` and reads a server file's
/// metadata; `peek_cmp` and `peek_eq` do the same as btree support
/// function and equality operator of `peek_ops`.
const PEEK: &str = "CREATE SEQUENCE hits; SELECT nextval('hits');
    CREATE FUNCTION peek(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
      BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); RETURN $1; END $$;
    CREATE FUNCTION peek_text(text) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$
      BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); RETURN true; END $$;
    CREATE FUNCTION peek_cmp(int, int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
      BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); RETURN btint4cmp($1, $2); END $$;
    CREATE FUNCTION peek_eq(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$
      BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname'); RETURN $1 = $2; END $$;
    CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, PROCEDURE = peek_eq);";

async fn harness(sql: &str) -> Harness {
    Harness::start_with(Setup {
        setup_sql: vec![PEEK.into(), sql.into()],
        rules: Some(rules()),
        ..Setup::default()
    })
    .await
}

async fn hits(direct: &tokio_postgres::Client) -> i64 {
    direct
        .query_one("SELECT last_value FROM hits", &[])
        .await
        .expect("read hits")
        .get(0)
}

/// A Bind of the unnamed statement to the unnamed portal with text values.
fn bind_text(values: &[&str]) -> Vec<u8> {
    let mut body = b"\0\0\0\0".to_vec();
    body.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        body.extend_from_slice(&(v.len() as i32).to_be_bytes());
        body.extend_from_slice(v.as_bytes());
    }
    body.extend_from_slice(&[0, 0]);
    frame(b'B', &body)
}

/// Parse (with declared parameter types), Bind (text values), Execute,
/// Sync of one statement: its rows and its errors' (code, message).
async fn extended(
    s: &mut tokio::net::TcpStream,
    sql: &str,
    types: &[u32],
    values: &[&str],
) -> (Vec<String>, Vec<(String, String)>) {
    let mut b = BytesMut::new();
    frontend::parse("", sql, types.iter().copied(), &mut b).unwrap();
    b.extend_from_slice(&bind_text(values));
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (tag, body) in until_ready(s).await {
        match tag {
            b'D' => rows.push(String::from_utf8_lossy(&body).into_owned()),
            b'E' => errors.push((error_field(&body, b'C'), error_field(&body, b'M'))),
            _ => {}
        }
    }
    (rows, errors)
}

fn oid(row: &tokio_postgres::Row) -> u32 {
    row.get::<_, u32>(0)
}

/// A Parse may declare its parameters' types by OID, and the server runs
/// each value through its type's input function and domain checks. A type
/// created after pgward loaded the catalog was skipped (nothing known to
/// run): a domain whose CHECK calls `peek`, declared for `SELECT $1 IS
/// NOT NULL`, ran `peek` for a role that may not call it. Such a type is
/// now refused (the statement, and one judged at Bind, alike), while user
/// types the catalog holds and whose values run nothing pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_types_the_catalog_does_not_hold_are_refused() {
    let h = harness(
        "CREATE DOMAIN plain_dom AS text; CREATE TYPE plain_enum AS ENUM ('a', 'b'); \
         CREATE DOMAIN loaded_dom AS text CHECK (peek_text(VALUE));",
    )
    .await;
    let direct = h.direct().await;
    // The session's sign-in loads the catalog; the types below come later.
    let mut s = login(&h, READER).await;
    direct
        .batch_execute(
            "CREATE DOMAIN late_dom AS text CHECK (peek_text(VALUE)); \
             CREATE TYPE late_comp AS (a late_dom); CREATE TYPE late_enum AS ENUM ('x');",
        )
        .await
        .unwrap();
    let late_dom = oid(&direct
        .query_one("SELECT 'late_dom'::regtype::oid", &[])
        .await
        .unwrap());
    let late_comp = oid(&direct
        .query_one("SELECT 'late_comp'::regtype::oid", &[])
        .await
        .unwrap());
    let late_enum = oid(&direct
        .query_one("SELECT 'late_enum'::regtype::oid", &[])
        .await
        .unwrap());
    // Premise: a value of late_dom runs peek_text.
    let before = hits(&direct).await;
    direct.batch_execute("SELECT 'v'::late_dom").await.unwrap();
    assert!(
        hits(&direct).await > before,
        "premise: the domain check runs"
    );

    let before = hits(&direct).await;
    for (sql, ty, value) in [
        ("SELECT $1 IS NOT NULL", late_dom, "v"),
        ("SELECT $1 IS NOT NULL", late_comp, "(v)"),
        ("SELECT $1 IS NOT NULL", late_enum, "x"),
        // Judged at Bind (refused as written, a constant is needed).
        (
            "SELECT set_config('application_name', $1, false)",
            late_dom,
            "v",
        ),
    ] {
        let (rows, errors) = extended(&mut s, sql, &[ty], &[value]).await;
        assert!(rows.is_empty(), "{sql} with type {ty} ran: {rows:?}");
        assert!(
            errors.iter().any(|(code, m)| code == "42501"
                && m.contains(&format!("type OID {ty}"))
                && m.contains("not in pgward's catalog")),
            "{sql} with type {ty}: {errors:?}"
        );
    }
    assert_eq!(hits(&direct).await, before, "peek_text ran through pgward");

    // Types the catalog holds: the one that runs peek_text is refused as
    // a cast to it; those that run nothing pass.
    let loaded = oid(&direct
        .query_one("SELECT 'loaded_dom'::regtype::oid", &[])
        .await
        .unwrap());
    let (rows, errors) = extended(&mut s, "SELECT $1 IS NOT NULL", &[loaded], &["v"]).await;
    assert!(rows.is_empty(), "{rows:?}");
    assert!(
        errors
            .iter()
            .any(|(c, m)| c == "42501" && m.contains("pg_stat_file")),
        "{errors:?}"
    );
    assert_eq!(hits(&direct).await, before, "peek_text ran through pgward");
    for (ty, value) in [("plain_dom", "v"), ("plain_enum", "a"), ("text", "t")] {
        let ty_oid = oid(&direct
            .query_one(&format!("SELECT '{ty}'::regtype::oid"), &[])
            .await
            .unwrap());
        let (rows, errors) = extended(&mut s, "SELECT $1 IS NOT NULL", &[ty_oid], &[value]).await;
        assert!(errors.is_empty(), "{ty}: {errors:?}");
        assert_eq!(rows.len(), 1, "{ty}");
    }
}

/// A statement pgward must refuse (a denial naming `says`), which, run
/// directly, does run `peek` (so the refusal is what stopped it).
async fn refused_yet_effective(
    c: &tokio_postgres::Client,
    direct: &tokio_postgres::Client,
    sql: &str,
    says: &str,
) {
    let before = hits(direct).await;
    let e = c.simple_query(sql).await.map(|_| ()).expect_err(sql);
    let db = e.as_db_error();
    assert!(
        db.is_some_and(|d| d.code().code() == "42501"
            && d.message().starts_with("pgward: ")
            && d.message().contains(says)),
        "{sql}: expected a denial saying {says:?}, got {e:?}"
    );
    assert_eq!(hits(direct).await, before, "{sql} ran peek through pgward");
    direct
        .batch_execute(&format!("BEGIN; {sql}; ROLLBACK"))
        .await
        .unwrap_or_else(|e| panic!("{sql} directly: {e:?}"));
    assert!(hits(direct).await > before, "{sql} directly ran no peek");
}

/// A foreign key check looks the key up in the other table with the key's
/// equality operator, through that table's indexes: writing the
/// referencing table (INSERT, UPDATE) or the referenced one (UPDATE,
/// DELETE) runs the operator's function and the support functions of the
/// indexes' operator classes, though the statement names neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_checks_run_the_keys_operators() {
    let h = harness(
        "CREATE OPERATOR CLASS peek_ops FOR TYPE int USING btree AS
           OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 ===, OPERATOR 4 >=, OPERATOR 5 >,
           FUNCTION 1 peek_cmp(int, int);
         CREATE OPERATOR CLASS peek_hash_ops FOR TYPE int USING hash AS
           OPERATOR 1 =, FUNCTION 1 peek(int);
         CREATE TABLE fk_parent (k int); CREATE UNIQUE INDEX ON fk_parent (k peek_ops);
         INSERT INTO fk_parent VALUES (1), (2);
         CREATE TABLE fk_child (k int REFERENCES fk_parent (k));
         INSERT INTO fk_child VALUES (1);
         CREATE TABLE plain_parent (k int PRIMARY KEY); INSERT INTO plain_parent VALUES (1), (2);
         CREATE TABLE hashed_child (k int REFERENCES plain_parent (k), n int);
         CREATE INDEX ON hashed_child USING hash (k peek_hash_ops);
         INSERT INTO hashed_child VALUES (1, 0);
         CREATE TABLE plain_child (k int REFERENCES plain_parent (k));",
    )
    .await;
    let c = h.connect(BUILDER).await;
    let direct = h.direct().await;
    for sql in [
        // Referencing table: the lookup in fk_parent uses `===` and its
        // btree class.
        "INSERT INTO fk_child VALUES (2)",
        "UPDATE fk_child SET k = 2",
        // Referenced table: the lookup in fk_child uses `===`.
        "DELETE FROM fk_parent WHERE k = 2",
        "UPDATE fk_parent SET k = 3 WHERE k = 2",
    ] {
        refused_yet_effective(&c, &direct, sql, "pg_stat_file").await;
    }
    // Writing plain_parent looks for referencing rows in hashed_child with
    // `=`, through its hash index of a user class whose hash function is
    // peek (planned with that index when it is the cheaper scan).
    direct
        .batch_execute(
            "INSERT INTO hashed_child SELECT 1, g FROM generate_series(1, 2000) g; ANALYZE hashed_child",
        )
        .await
        .unwrap();
    refused_yet_effective(
        &c,
        &direct,
        "DELETE FROM plain_parent WHERE k = 2",
        "pg_stat_file",
    )
    .await;
    // Foreign keys of built-in types and classes run nothing more.
    c.simple_query("INSERT INTO plain_child VALUES (1); DELETE FROM plain_child")
        .await
        .unwrap();
}

/// A referencing column whose type differs from the referenced one's is
/// cast to it in every check (`fk.c::text` in the check's query), through
/// the cast function pg_cast holds for that pair when the check runs. The
/// key needs an implicit cast when it is added, but the cast can be made
/// explicit afterwards (DROP CAST, CREATE CAST without AS IMPLICIT): no
/// longer one PostgreSQL applies unasked, yet the checks still run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_checks_run_the_cast_between_key_types() {
    let h = harness(
        "CREATE TYPE shade AS ENUM ('1', '2', '3');
         CREATE FUNCTION shade_text(shade) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
           BEGIN PERFORM nextval('hits'); PERFORM pg_catalog.pg_stat_file('/etc/hostname');
           RETURN pg_catalog.textin(pg_catalog.enum_out($1)); END $$;
         CREATE CAST (shade AS text) WITH FUNCTION shade_text(shade) AS IMPLICIT;
         CREATE TABLE shade_parent (c text PRIMARY KEY); INSERT INTO shade_parent VALUES ('1'), ('2');
         CREATE DOMAIN dshade AS shade;
         CREATE TABLE shade_child (c shade REFERENCES shade_parent, d dshade REFERENCES shade_parent);
         INSERT INTO shade_child VALUES ('1', '1');
         DROP CAST (shade AS text);
         CREATE CAST (shade AS text) WITH FUNCTION shade_text(shade);",
    )
    .await;
    let c = h.connect(BUILDER).await;
    let direct = h.direct().await;
    for sql in [
        "INSERT INTO shade_child VALUES ('2', '1')",
        "INSERT INTO shade_child (d) VALUES ('2')",
        // The referenced table's checks cast the referencing column too.
        "DELETE FROM shade_parent WHERE c = '2'",
    ] {
        refused_yet_effective(&c, &direct, sql, "pg_stat_file").await;
    }
}

/// Adding a foreign key checks the existing rows with the key's equality
/// operator, the referenced index's operator class's: a user one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_foreign_key_runs_the_keys_operator() {
    let h = harness(
        "CREATE OPERATOR CLASS peek_ops FOR TYPE int USING btree AS
           OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 ===, OPERATOR 4 >=, OPERATOR 5 >,
           FUNCTION 1 peek_cmp(int, int);
         CREATE TABLE fk_parent (k int); CREATE UNIQUE INDEX ON fk_parent (k peek_ops);
         INSERT INTO fk_parent VALUES (1), (2);
         CREATE TABLE fk_late (k int); INSERT INTO fk_late VALUES (1);",
    )
    .await;
    let c = h.connect(BUILDER).await;
    let direct = h.direct().await;
    refused_yet_effective(
        &c,
        &direct,
        "ALTER TABLE fk_late ADD FOREIGN KEY (k) REFERENCES fk_parent (k)",
        "pg_stat_file",
    )
    .await;
    // A new table has no rows to check, nor has a key added NOT VALID:
    // nothing runs (their later writes are judged with the key).
    for sql in [
        "CREATE TABLE fk_new (k int REFERENCES fk_parent (k))",
        "ALTER TABLE fk_late ADD FOREIGN KEY (k) REFERENCES fk_parent (k) NOT VALID",
    ] {
        c.simple_query(sql).await.expect(sql);
    }
    refused_yet_effective(&c, &direct, "INSERT INTO fk_new VALUES (1)", "pg_stat_file").await;
}

/// Functions given an index by name read or write its table, and ALTER
/// DOMAIN checks the rows of every table with a column of the domain:
/// neither names the table, yet a role denied it is refused, as a
/// statement naming it would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_reached_through_its_index_or_a_domain_is_ruled() {
    let h = harness(
        "CREATE DOMAIN secret_int AS int; CREATE DOMAIN open_int AS int;
         CREATE TABLE vault (v secret_int); INSERT INTO vault SELECT g FROM generate_series(1, 100) g;
         CREATE INDEX vault_brin ON vault USING brin (v);
         CREATE TABLE open_t (v open_int); INSERT INTO open_t VALUES (1);
         CREATE INDEX open_brin ON open_t USING brin (v);",
    )
    .await;
    let c = h.connect(GUARDED).await;
    for sql in [
        "SELECT brin_summarize_range('vault_brin', 0)",
        "SELECT pg_catalog.brin_summarize_new_values('public.vault_brin')",
        "SELECT brin_desummarize_range('vault_brin', 0)",
        "ALTER DOMAIN secret_int ADD CONSTRAINT positive CHECK (VALUE > 0)",
        "ALTER DOMAIN secret_int SET NOT NULL",
    ] {
        let e = c.simple_query(sql).await.map(|_| ()).expect_err(sql);
        let db = e.as_db_error();
        assert!(
            db.is_some_and(|d| d.code().code() == "42501" && d.message().contains("vault")),
            "{sql}: expected a denial naming vault, got {e:?}"
        );
    }
    // A name pgward cannot resolve to a table is unknown.
    for sql in [
        "SELECT brin_summarize_range('no_such_index', 0)",
        "SELECT brin_summarize_new_values(c.oid::regclass) FROM pg_class c WHERE c.relname = 'vault_brin'",
    ] {
        let e = c.simple_query(sql).await.map(|_| ()).expect_err(sql);
        assert!(
            e.as_db_error()
                .is_some_and(|d| d.code().code() == "42501" && d.message().contains("unknown")),
            "{sql}: expected an unknown denial, got {e:?}"
        );
    }
    // The same on a table the role may use runs.
    for sql in [
        "SELECT brin_summarize_new_values('open_brin')",
        "ALTER DOMAIN open_int ADD CONSTRAINT positive CHECK (VALUE > 0)",
    ] {
        c.simple_query(sql).await.expect(sql);
    }
}

/// A domain's DEFAULT is evaluated for every row a new column of it gets:
/// `ALTER TABLE ... ADD COLUMN c some_domain` runs it at once (once for a
/// non-volatile default, per row otherwise), and a table created with such
/// a column runs it on each INSERT that leaves it out. A domain's CHECK
/// and a `USING` expression of ALTER COLUMN TYPE run too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_columns_run_their_domains_default_and_checks() {
    let h = harness(
        "CREATE DOMAIN peeked_default AS int DEFAULT peek(7);
         CREATE DOMAIN peeked_volatile AS int DEFAULT peek(7) + (random() * 0)::int;
         CREATE DOMAIN peeked_check AS int CHECK (peek(VALUE) > 0);
         CREATE DOMAIN plain_default AS int DEFAULT 7;
         CREATE TABLE filled (a int); INSERT INTO filled VALUES (1), (2);",
    )
    .await;
    let c = h.connect(BUILDER).await;
    let direct = h.direct().await;
    for sql in [
        "ALTER TABLE filled ADD COLUMN b peeked_default",
        "ALTER TABLE filled ADD COLUMN b peeked_volatile",
        "ALTER TABLE filled ADD COLUMN b peeked_check DEFAULT 1",
        "ALTER TABLE filled ADD COLUMN b public.peeked_default",
        "ALTER TABLE filled ALTER COLUMN a TYPE peeked_check",
        "ALTER TABLE filled ALTER COLUMN a TYPE bigint USING peek(a)",
    ] {
        refused_yet_effective(&c, &direct, sql, "pg_stat_file").await;
    }
    // In one Query, the new table is also uncertain until the block ends
    // (policy::ddl's window): refused either way, and nothing ran.
    refused_yet_effective(
        &c,
        &direct,
        "CREATE TABLE fresh (a int, b peeked_default); INSERT INTO fresh (a) VALUES (1)",
        "pgward: ",
    )
    .await;
    // A domain whose default is a constant runs nothing.
    c.simple_query("ALTER TABLE filled ADD COLUMN b plain_default")
        .await
        .unwrap();
}

// --- The audit log's backpressure (docs/audit.md, "When the writer is
// slow"). The writer is stalled by a FIFO in place of its next segment:
// it blocks opening it (no reader) and takes no event until the test opens
// the other end.

const AUDIT: &str = "queue_capacity = 1024\nflush_interval_ms = 50";
/// More statements than the queue has room for, even after the writer
/// took a queue's worth before it stalled.
const FLOOD: usize = 4000;

async fn audited() -> Harness {
    Harness::start_with(Setup {
        audit: AUDIT.into(),
        server: "shutdown_grace_secs = 1".into(),
        ..Setup::default()
    })
    .await
}

/// A stalled audit writer: a FIFO where the writer opens its next
/// segment, so the next event blocks it (no reader). Dropped (the test
/// over, or failed), it lets the writer go on: pgward's shutdown waits for
/// the writer.
struct Stall(Option<std::path::PathBuf>);

impl Stall {
    /// `s`: a session that has run a statement (so its session_start
    /// event is queued: it is recorded just after sign-in).
    async fn new(h: &Harness, s: &mut tokio::net::TcpStream) -> Stall {
        let mut b = BytesMut::new();
        frontend::query("SELECT 'before the stall'", &mut b).unwrap();
        s.write_all(&b).await.unwrap();
        until_ready(s).await;
        // Rotating puts everything so far in files: the next event opens
        // a new segment, numbered after the last event.
        let last = h.audit_events().last().expect("an event").seq;
        let fifo = h
            .dir
            .path()
            .join("audit/wal")
            .join(format!("test_{:016}.wal", last + 1));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        Stall(Some(fifo))
    }

    /// Opens the FIFO's reading end and reads until the writer closes the
    /// segment (on a plain thread, so nothing waits for it).
    fn release(&mut self) {
        let Some(fifo) = self.0.take() else { return };
        std::thread::spawn(move || {
            use std::io::Read;
            if let Ok(mut f) = std::fs::File::open(&fifo) {
                let mut sink = Vec::new();
                let _ = f.read_to_end(&mut sink);
            }
        });
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.release();
    }
}

/// Sends `n` simple queries `SELECT <i>` in one write.
async fn flood(s: &mut tokio::net::TcpStream, n: usize) {
    let mut b = BytesMut::new();
    for i in 0..n {
        frontend::query(&format!("SELECT {i} AS flood"), &mut b).unwrap();
    }
    s.write_all(&b).await.unwrap();
}

/// The next message, or None when none comes within `wait`.
async fn next_msg(
    s: &mut tokio::net::TcpStream,
    wait: std::time::Duration,
) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(wait, read_msg(s)).await.ok()
}

/// Reads ReadyForQuery after ReadyForQuery until none comes for `quiet`;
/// returns how many came.
async fn answers_until_quiet(s: &mut tokio::net::TcpStream, quiet: std::time::Duration) -> usize {
    let mut ready = 0;
    while let Some((tag, body)) = next_msg(s, quiet).await {
        match tag {
            b'Z' => ready += 1,
            b'E' => panic!(
                "unexpected error {} {}",
                error_field(&body, b'C'),
                error_field(&body, b'M')
            ),
            _ => {}
        }
    }
    ready
}

/// `on_failure = "deny"`: a writer that takes nothing makes a session
/// that has no room left wait, then, after 10 s, refuses its statement
/// with 58030 naming the stall; once the writer takes events again the
/// statements run, the waiting ones first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_writer_refuses_with_58030_then_statements_run_again() {
    use std::time::{Duration, Instant};
    let h = audited().await;
    let mut s = login(&h, DANA).await;
    let mut stall = Stall::new(&h, &mut s).await;
    let started = Instant::now();
    flood(&mut s, FLOOD).await;
    let mut ok = 0;
    let refused = loop {
        let (tag, body) = next_msg(&mut s, Duration::from_secs(30))
            .await
            .expect("an answer or the refusal within 30 s");
        match tag {
            b'Z' => ok += 1,
            b'E' => break (error_field(&body, b'C'), error_field(&body, b'M')),
            _ => {}
        }
    };
    assert!((1024..FLOOD).contains(&ok), "{ok} ran before the refusal");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "refused after {:?}, before the stall was 10 s long",
        started.elapsed()
    );
    assert_eq!(refused.0, "58030", "{refused:?}");
    assert!(refused.1.contains("has taken no event"), "{refused:?}");
    // The writer recovers: every statement left runs.
    stall.release();
    let mut rest = 0;
    loop {
        let (tag, body) = next_msg(&mut s, Duration::from_secs(30))
            .await
            .expect("the rest answered after recovery");
        match tag {
            b'Z' => rest += 1,
            b'E' => panic!("{} {}", error_field(&body, b'C'), error_field(&body, b'M')),
            _ => {}
        }
        // The refused query's ReadyForQuery, then the rest.
        if rest == FLOOD - ok {
            break;
        }
    }
    let c = h.connect(DANA).await;
    c.simple_query("SELECT 'after recovery'").await.unwrap();
    drop(c);
    let events = h.audit_events();
    let flooded: Vec<_> = events
        .iter()
        .filter(|e| {
            e.statement
                .as_deref()
                .is_some_and(|t| t.ends_with("AS flood"))
        })
        .collect();
    assert_eq!(
        flooded.len(),
        FLOOD,
        "every statement is on record, the refused one too"
    );
    assert!(events
        .iter()
        .any(|e| e.statement.as_deref() == Some("SELECT 'after recovery'")));
}

/// A client that hangs up while its messages wait for audit room ends
/// its session at once, writer still stalled: its upstream connection
/// closes, pgward goes on serving, and once the writer recovers the
/// session's end is on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_while_waiting_for_audit_room_ends_cleanly() {
    use std::time::Duration;
    let h = audited().await;
    let (mut s, (pid, _)) = login_keyed(&h, &[("user", DANA.0), ("database", "postgres")], DANA.1)
        .await
        .unwrap();
    let direct = h.direct().await;
    let mut stall = Stall::new(&h, &mut s).await;
    flood(&mut s, FLOOD).await;
    let ready = answers_until_quiet(&mut s, Duration::from_millis(1500)).await;
    assert!(ready < FLOOD, "nothing waited: {ready} answered");
    drop(s);
    let mut gone = false;
    for _ in 0..50 {
        let row = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the session's upstream connection outlived its client"
    );
    stall.release();
    // Other sessions are served.
    let c = h.connect(DANA).await;
    c.simple_query("SELECT 'still serving'").await.unwrap();
    let events = h.audit_events();
    let first = events
        .iter()
        .find(|e| e.kind == pgward::audit::Kind::SessionStart)
        .expect("the first session's start");
    assert!(
        events
            .iter()
            .any(|e| e.kind == pgward::audit::Kind::SessionEnd && e.session_id == first.session_id),
        "the session that hung up ended on record"
    );
    let flooded = events
        .iter()
        .filter(|e| {
            e.statement
                .as_deref()
                .is_some_and(|t| t.ends_with("AS flood"))
        })
        .count();
    assert!((ready..FLOOD).contains(&flooded), "{flooded} recorded");
}

/// Shutdown while a message waits for audit room: the waiting session
/// ends with the shutdown error when the grace is over, though the
/// writer still takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_session_waiting_for_audit_room() {
    use std::time::Duration;
    let mut h = audited().await;
    let mut s = login(&h, DANA).await;
    let mut stall = Stall::new(&h, &mut s).await;
    flood(&mut s, FLOOD).await;
    let ready = answers_until_quiet(&mut s, Duration::from_millis(1500)).await;
    assert!(ready < FLOOD, "nothing waited: {ready} answered");
    let stopping = tokio::spawn(async move {
        h.stop().await;
        h
    });
    let (tag, body) = next_msg(&mut s, Duration::from_secs(8))
        .await
        .expect("the shutdown error before the stall turns into a refusal");
    assert_eq!(tag, b'E');
    assert_eq!(error_field(&body, b'S'), "FATAL");
    assert_eq!(error_field(&body, b'C'), "57P01");
    assert!(
        error_field(&body, b'D').contains("shutting down"),
        "{}",
        error_field(&body, b'D')
    );
    stall.release();
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .expect("pgward stopped")
        .unwrap();
}

/// DDL that hands a table's rows to a user function (a CHECK, an index
/// expression or predicate, ALTER COLUMN TYPE ... USING) reads the table:
/// a role whose `tables.read` denies it, though it may change its schema,
/// is refused; the same DDL with built-ins only runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_that_hands_rows_to_a_user_function_reads_the_table() {
    let h = harness(
        "CREATE TABLE vault (v int); INSERT INTO vault VALUES (42);
         CREATE FUNCTION ident(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';",
    )
    .await;
    let c = h.connect(NOSY).await;
    for sql in [
        "ALTER TABLE vault ADD CONSTRAINT c CHECK (ident(v) > 0)",
        "ALTER TABLE vault ALTER COLUMN v TYPE bigint USING ident(v)",
        "CREATE INDEX ON vault (ident(v))",
        "CREATE INDEX ON vault (v) WHERE ident(v) > 0",
        "CREATE STATISTICS vault_s ON (ident(v)) FROM vault",
    ] {
        let e = c.simple_query(sql).await.map(|_| ()).expect_err(sql);
        assert!(
            e.as_db_error()
                .is_some_and(|d| d.code().code() == "42501" && d.message().contains("vault")),
            "{sql}: expected a denial naming vault, got {e:?}"
        );
    }
    let direct = h.direct().await;
    let constraints = one_number(
        &direct,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'vault'::regclass",
    )
    .await;
    assert_eq!(constraints, 0, "nothing of the refused DDL ran");
    c.simple_query("ALTER TABLE vault ADD CONSTRAINT positive CHECK (v > 0)")
        .await
        .expect("a CHECK with built-ins only");
}
