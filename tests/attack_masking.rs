//! An attacker's view of column masking (issue 30): every way we tried to
//! read a masked value through pgward. Attacks that leak are tests marked
//! `#[ignore = "leak: ..."]` until fixed; attacks that are refused assert
//! the refusal and that no masked byte reached the client. The findings
//! are written up in /work/atk-masking-report.md.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

/// Every masked value of the data below, and telling pieces of them.
const SECRETS: &[&str] = &[
    "078-05-1120",
    "219-09-9999",
    "457-55-5462",
    "078-05",
    "05-1120",
    "ada@example.com",
    "alan@example.com",
    "grace@",
    "lan@example",
    "tok-alpha-7731",
    "tok-beta-0042",
    "4242",
    "9001",
];

/// The example rules, with:
/// - agent (read-only, masks on customers.email/ssn) also allowed COPY out,
///   and `accounts.pin` redacted, `accounts.token` hashed;
/// - app (bob) given the same masks while it may write and change the
///   schema: an attacker with more classes.
pub async fn harness() -> Harness {
    std::env::set_var("PGWARD_ATK_HASH_KEY", "0123456789abcdef0123456789abcdef");
    let masks = || -> Vec<pgward::mask::ColumnMask> {
        [
            ("public.customers.email", "email"),
            ("public.customers.ssn", "partial(0,4)"),
            ("public.accounts.pin", "redact"),
            ("public.accounts.token", "hash"),
        ]
        .iter()
        .map(|(k, v)| pgward::mask::ColumnMask::parse(k, v, "atk.toml", 1).unwrap())
        .collect()
    };
    let rules = pgward::demo::example_rules()
        .unwrap()
        .without_upstream_users()
        .without_approvers()
        .with_role("agent", |agent| {
            agent.allow.insert(pgward::policy::Class::CopyOut);
            agent.masks = masks();
        })
        .with_role("app", |app| {
            app.allow.insert(pgward::policy::Class::Ddl);
            app.masks = masks();
        });
    let h = Harness::start_with(Setup {
        rules: Some(rules),
        extra: "[mask]\nhash_key_env = \"PGWARD_ATK_HASH_KEY\"\n".into(),
        ..Setup::default()
    })
    .await;
    let d = h.direct().await;
    d.batch_execute(pgward::demo::SAMPLE_SCHEMA).await.unwrap();
    d.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner int, pin int NOT NULL, token text NOT NULL);
         INSERT INTO accounts VALUES (1, 1, 4242, 'tok-alpha-7731'), (2, 2, 9001, 'tok-beta-0042');
         CREATE VIEW contacts AS SELECT id, email AS mail FROM customers;
         CREATE TABLE scratch (id int, v text);",
    )
    .await
    .unwrap();
    h
}

/// No masked value, nor a telling piece of one, in `text`.
pub fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what}: leaked {s:?} in {text}");
    }
}

/// A server for trying attacks by hand: prints its address and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "manual: a server to probe"]
async fn probe_server() {
    let h = harness().await;
    println!(
        "PROBE agent: {}\nPROBE bob: {}\nPROBE direct: port {} password {}",
        h.conninfo(AGENT),
        h.conninfo(BOB),
        h.pg.port,
        h.pg.password
    );
    tokio::time::sleep(std::time::Duration::from_secs(5400)).await;
}

/// Runs `sql` as a simple query and returns every value of every row,
/// joined (NULL as "NULL"), or the error.
async fn rows_text(c: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let mut out = String::new();
    for m in c.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            for i in 0..r.len() {
                out.push_str(r.get(i).unwrap_or("NULL"));
                out.push('|');
            }
            out.push('\n');
        }
    }
    Ok(out)
}

async fn copy_text(c: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let stream = c.copy_out(sql).await?;
    let got: Vec<u8> =
        futures_util::TryStreamExt::try_concat(futures_util::TryStreamExt::map_ok(stream, |b| {
            b.to_vec()
        }))
        .await?;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The refusal's message, after checking it is pgward's 42501 and that it
/// echoes no masked value.
fn refusal(sql: &str, e: &tokio_postgres::Error) -> String {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {e}"));
    assert_eq!(db.code().code(), "42501", "{sql}: {db:?}");
    assert!(db.message().starts_with("pgward"), "{sql}: {db:?}");
    let all = format!("{} {:?} {:?}", db.message(), db.detail(), db.hint());
    assert_no_secret(sql, &all);
    db.message().to_owned()
}

/// LEAK (fixed): `count()` of a value computed from a masked column is
/// the number of non-NULL results, and `substring(ssn from 'regex')` is
/// NULL exactly when the regex does not match: a regex oracle on every
/// row, one character at a time. The count of a computed masked value is
/// now masked itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_of_a_regex_substring_does_not_answer_the_regex() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    let probe =
        |re: &str| format!("SELECT count(substring(ssn from '{re}')) FROM customers WHERE id = 1");
    let yes = rows_text(&agent, &probe("^078")).await.unwrap();
    let no = rows_text(&agent, &probe("^079")).await.unwrap();
    assert_eq!(yes, no, "the count answers the regex: {yes} vs {no}");
    // The same through the extended protocol (binary results).
    for re in ["^078", "^079"] {
        let n: i64 = agent.query_one(&probe(re), &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "{re}: a masked count shows 0");
    }
    // Other shapes of the same question.
    for sql in [
        "SELECT count(substring(ssn, '^078')) FROM customers WHERE id = 1",
        "SELECT count(substring(ssn similar '078%' escape '#')) FROM customers WHERE id = 1",
        "SELECT count(substring(email from '^ada')) OVER () FROM customers WHERE id = 1",
    ] {
        assert_eq!(rows_text(&agent, sql).await.unwrap(), "0|\n", "{sql}");
    }
    // Used as a LIMIT, the count is refused (LIMIT of a masked value).
    let sql = "SELECT id FROM customers FETCH FIRST (SELECT count(substring(ssn from '^078')) FROM customers) ROWS ONLY";
    refusal(sql, &agent.simple_query(sql).await.unwrap_err());
    // count() of a masked column as stored still counts.
    assert_eq!(
        rows_text(&agent, "SELECT count(ssn) FROM customers")
            .await
            .unwrap(),
        "3|\n"
    );
}

/// LEAK (fixed): INTERSECT ALL and EXCEPT ALL compare whole rows like
/// their DISTINCT forms: the number of rows says whether a guess equals a
/// masked value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intersect_all_and_except_all_are_refused_over_masked_columns() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    for sql in [
        "SELECT ssn FROM customers INTERSECT ALL SELECT '078-05-1120'",
        "SELECT ssn FROM customers EXCEPT ALL SELECT '078-05-1120'",
        "SELECT 1 FROM (SELECT id, ssn FROM customers INTERSECT ALL SELECT 1, '078-05-1120') s",
        "SELECT mail FROM contacts INTERSECT ALL SELECT 'ada@example.com'",
        "SELECT pin FROM accounts EXCEPT ALL SELECT 4242",
    ] {
        let m = refusal(sql, &agent.simple_query(sql).await.unwrap_err());
        assert!(m.contains("masked"), "{sql}: {m}");
        refusal(sql, &agent.prepare(sql).await.unwrap_err());
    }
    // UNION ALL compares nothing and stays allowed; a hash-masked column
    // may be intersected (its equality is allowed).
    assert_eq!(
        rows_text(
            &agent,
            "SELECT ssn FROM customers WHERE id = 1 UNION ALL SELECT 'x'"
        )
        .await
        .unwrap(),
        "***-**-1120|\n*|\n"
    );
    let got = rows_text(
        &agent,
        "SELECT token FROM accounts INTERSECT ALL SELECT token FROM accounts WHERE id = 1",
    )
    .await
    .unwrap();
    assert_eq!(got.lines().count(), 1, "{got}");
    assert_no_secret("hash", &got);
}

/// LEAK (fixed): COPY in text format writes a value equal to the NULL
/// string as it is, so masking took it for a NULL and passed it:
/// `COPY customers (id, ssn) TO STDOUT (NULL '078-05-1120')` showed
/// `1\t078-05-1120` in clear and the other rows masked, an equality
/// oracle per row. A NULL string other than `\N` is now refused in text
/// format (csv quotes such a value, so it stays masked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_text_with_a_null_string_is_no_equality_oracle() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    for sql in [
        "COPY customers (id, ssn) TO STDOUT WITH (NULL '078-05-1120')",
        "COPY customers (id, ssn) TO STDOUT NULL '078-05-1120'",
        "COPY (SELECT id, ssn FROM customers) TO STDOUT WITH (NULL '078-05-1120')",
        "COPY (SELECT id, ssn FROM customers) TO STDOUT WITH (FORMAT text, NULL '078-05-1120')",
        "COPY accounts (id, pin) TO STDOUT WITH (NULL '4242')",
        "COPY customers (email) TO STDOUT WITH (NULL 'ada@example.com')",
    ] {
        match copy_text(&agent, sql).await {
            Ok(out) => panic!("{sql}: not refused: {out}"),
            Err(e) => {
                refusal(sql, &e);
            }
        }
    }
    // csv quotes a value equal to its NULL string: masked, allowed.
    let out = copy_text(
        &agent,
        "COPY customers (id, ssn) TO STDOUT WITH (FORMAT csv, NULL '078-05-1120')",
    )
    .await
    .unwrap();
    assert!(out.contains("1,\"***-**-1120\""), "{out}");
    assert_no_secret("csv", &out);
    // The default NULL string, and an explicit `\N`, pass.
    for sql in [
        "COPY customers (id, ssn) TO STDOUT",
        r"COPY customers (id, ssn) TO STDOUT WITH (NULL '\N')",
    ] {
        let out = copy_text(&agent, sql).await.unwrap();
        assert!(out.contains("1\t***-**-1120"), "{sql}: {out}");
        assert_no_secret(sql, &out);
    }
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Parse of a named statement with no parameter types.
fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b.push(0);
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'P', &b)
}

/// Bind of statement `name` to the unnamed portal, no parameters, all
/// results in `format` (0 text, 1 binary); Describe portal; Execute
/// (`max_rows`, 0 = all); Sync.
fn bind_execute(name: &str, format: i16, max_rows: i32) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&format.to_be_bytes());
    let mut m = msg(b'B', &b);
    m.extend(msg(b'D', b"P\0"));
    let mut e = vec![0];
    e.extend_from_slice(&max_rows.to_be_bytes());
    m.extend(msg(b'E', &e));
    m.extend(msg(b'S', b""));
    m
}

/// Everything the server sent back, as lossy text, for secret checks.
fn all_text(answers: &[(u8, Vec<u8>)]) -> String {
    let mut v = Vec::new();
    for (t, body) in answers {
        v.push(*t);
        v.extend_from_slice(body);
    }
    String::from_utf8_lossy(&v).into_owned()
}

/// LEAK (fixed on main for changes made through pgward): a
/// protocol-prepared statement kept the mask plan pgward made at Parse.
/// `CREATE OR REPLACE VIEW` of a view over an unmasked column, now over
/// the masked one, between Parse and Execute: PostgreSQL re-plans the
/// statement against the new definition; each Execute returned the SSN in
/// clear, in text and in binary format. `through_pgward` makes the change
/// in a pgward session (dana's), else directly in PostgreSQL, which pgward
/// sees only at its next catalog reload: still a leak (see
/// `a_schema_change_outside_pgward_does_not_move_masks`).
async fn prepared_statement_after_a_view_change(through_pgward: bool) {
    let h = harness().await;
    let setup = "CREATE VIEW names AS SELECT id, name AS n FROM customers;
         CREATE VIEW names2 AS SELECT id, name AS n FROM customers;";
    h.direct().await.batch_execute(setup).await.unwrap();
    let mut s = login(&h, AGENT).await;
    let mut sent = parse("v", "SELECT n FROM names WHERE id = 1");
    sent.extend(parse("v2", "SELECT n FROM names2 WHERE id = 1"));
    sent.extend(msg(b'S', b""));
    s.write_all(&sent).await.unwrap();
    let answers = until_ready(&mut s).await;
    assert!(
        answers.iter().all(|(t, _)| *t != b'E'),
        "{}",
        all_text(&answers)
    );
    let change = [
        "CREATE OR REPLACE VIEW names AS SELECT id, ssn AS n FROM customers",
        "CREATE OR REPLACE VIEW names2 AS SELECT id, ssn AS n FROM customers",
    ];
    let dba = match through_pgward {
        true => h.connect(DANA).await,
        false => h.direct().await,
    };
    for sql in change {
        dba.batch_execute(sql).await.unwrap();
    }
    let mut got = String::new();
    for (name, format) in [("v", 0), ("v2", 1)] {
        s.write_all(&bind_execute(name, format, 0)).await.unwrap();
        got.push_str(&all_text(&until_ready(&mut s).await));
    }
    assert_no_secret("Execute after a catalog change", &got);
    assert!(got.contains("***-**-1120"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_is_masked_by_the_catalog_at_execute() {
    prepared_statement_after_a_view_change(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "leak: a view changed outside pgward between Parse and Execute"]
async fn a_prepared_statement_after_a_change_outside_pgward() {
    prepared_statement_after_a_view_change(false).await;
}

/// LEAK (fixed for the masked role): masks are keyed by name
/// (`public.customers.ssn`). A masked role allowed DDL (bob, role app
/// here; the example agent's DDL waits for a DBA's approval) renamed the
/// column or its table and read it in clear; every other schema change
/// naming the table answered questions too: `ADD CONSTRAINT ... CHECK
/// (ssn NOT LIKE '078%')` failed exactly when a row matched, `CREATE
/// UNIQUE INDEX ON customers (left(ssn, 1))` succeeded exactly when the
/// first characters differ, a trigger copied `NEW.ssn` to a table
/// without masks, and a view the role created kept its own predicate
/// (`CREATE VIEW v AS SELECT id FROM customers WHERE ssn LIKE '078%'`),
/// which reads of the view did not judge. A masked role's schema changes
/// that name a masked table, and its views' predicates, are now refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masked_role_cannot_rename_or_probe_through_schema_changes() {
    let h = harness().await;
    let bob = h.connect(BOB).await;
    let agent = h.connect(AGENT).await;
    for sql in [
        "ALTER TABLE customers RENAME COLUMN ssn TO ssn2",
        "ALTER TABLE customers RENAME COLUMN name TO label",
        "ALTER TABLE customers RENAME TO cust2",
        "ALTER TABLE public.customers SET SCHEMA pg_temp",
        "ALTER TABLE customers ADD CONSTRAINT c CHECK (ssn NOT LIKE '078%')",
        "ALTER TABLE customers ADD CONSTRAINT c CHECK (ssn NOT LIKE '078%') NOT VALID",
        "ALTER TABLE customers DROP COLUMN ssn",
        "ALTER TABLE customers ADD COLUMN copy text GENERATED ALWAYS AS (ssn) STORED",
        "CREATE UNIQUE INDEX ux ON customers (left(ssn, 1))",
        "CREATE INDEX px ON customers (id) WHERE ssn LIKE '078%'",
        "CREATE STATISTICS st ON ssn, email FROM customers",
        "CREATE TABLE child () INHERITS (customers)",
        "CREATE RULE r AS ON UPDATE TO customers DO ALSO INSERT INTO scratch VALUES (NEW.id, NEW.ssn)",
        "CREATE RULE r AS ON INSERT TO scratch DO ALSO INSERT INTO scratch SELECT id, ssn FROM customers",
        "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO scratch SELECT id, ssn FROM customers; RETURN NEW; END$$",
        "CREATE FUNCTION peek() RETURNS SETOF text LANGUAGE sql AS 'SELECT mail FROM contacts'",
        "CREATE VIEW vpred AS SELECT id FROM customers WHERE ssn LIKE '078%'",
        "CREATE VIEW vord AS SELECT id FROM customers ORDER BY ssn",
        "CREATE VIEW vcontacts AS SELECT id FROM contacts WHERE mail LIKE 'ada%'",
        "CREATE OR REPLACE VIEW contacts AS SELECT id, email AS mail FROM customers WHERE ssn LIKE '078%'",
    ] {
        match bob.simple_query(sql).await {
            Ok(_) => panic!("{sql}: not refused"),
            Err(e) => {
                refusal(sql, &e);
            }
        }
    }
    let got = rows_text(&agent, "SELECT * FROM customers").await.unwrap();
    assert_no_secret("after the refused schema changes", &got);
    // A trigger whose function copies NEW.ssn: CREATE TRIGGER on the
    // masked table is refused (the function itself names no masked table).
    bob.batch_execute(
        "CREATE FUNCTION keep_new() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO scratch VALUES (NEW.id, NEW.ssn); RETURN NEW; END$$",
    )
    .await
    .unwrap();
    let sql =
        "CREATE TRIGGER keep BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION keep_new()";
    refusal(sql, &bob.simple_query(sql).await.unwrap_err());
    // A trigger on a table without masks whose (DBA's) function reads
    // a masked column.
    h.connect(DANA)
        .await
        .batch_execute(
            "CREATE FUNCTION copy_ssn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO scratch SELECT id, ssn FROM customers; RETURN NEW; END$$",
        )
        .await
        .unwrap();
    let sql = "CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION copy_ssn()";
    refusal(sql, &bob.simple_query(sql).await.unwrap_err());
    // Views without masked predicates, and changes to other tables, pass.
    for sql in [
        "CREATE VIEW mine AS SELECT id, ssn FROM customers WHERE id < 3",
        "ALTER TABLE scratch RENAME COLUMN v TO value",
        "CREATE INDEX ON scratch (value)",
        "BEGIN; LOCK TABLE customers IN ACCESS SHARE MODE; COMMIT",
    ] {
        bob.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let got = rows_text(&agent, "SELECT ssn FROM mine").await.unwrap();
    assert_eq!(got, "***-**-1120|\n***-**-9999|\n");
    let mut got = rows_text(
        &bob,
        "UPDATE customers SET name = name || '.' RETURNING ssn",
    )
    .await
    .unwrap();
    got.push_str(&rows_text(&bob, "SELECT * FROM scratch").await.unwrap());
    assert_no_secret("after the refused triggers", &got);
}

/// LEAK (fixed): a rename by the DBA (a role without masks, which may)
/// dropped the mask for every masked role until the rules were edited:
/// masks are keyed by name. Now each catalog load carries the former names
/// of relations and columns (by OID and attnum) from the previous load,
/// and a mask follows its column's renames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_by_the_dba_keeps_the_mask() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    // Through pgward, so its catalog sees the change at once.
    let dba = h.connect(DANA).await;
    for sql in [
        "ALTER TABLE customers RENAME COLUMN ssn TO tax_id",
        "ALTER TABLE customers RENAME TO clients",
    ] {
        dba.batch_execute(sql).await.unwrap();
        for read in ["SELECT * FROM customers", "SELECT * FROM clients"] {
            match rows_text(&agent, read).await {
                Ok(text) => assert_no_secret(sql, &text),
                Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "42P01") => {}
                Err(e) => {
                    refusal(read, &e);
                }
            }
        }
    }
}

/// LEAK (fixed): a user function was refused to a masked role only when its body
/// names a masked table (or runs dynamic SQL, or takes a masked value).
/// A STABLE SQL function the DBA wrote, whose body reads the masked
/// column through a view, another function, a `U&"..."` name or a
/// `BEGIN ATOMIC` body, returns it in clear to the read-only agent; so
/// does a view that calls such a function (functions in a view's
/// definition were not checked at all). Now a body is followed through
/// the views and user functions it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_that_read_masked_columns_indirectly_are_refused() {
    let h = harness().await;
    let dba = h.connect(DANA).await;
    dba.batch_execute(
        r#"CREATE VIEW ids AS SELECT id, ssn AS s FROM customers;
         CREATE FUNCTION via_view() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT s FROM ids';
         CREATE FUNCTION direct_read() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT ssn FROM customers';
         CREATE FUNCTION via_function() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT * FROM direct_read()';
         CREATE FUNCTION via_escape() RETURNS SETOF text LANGUAGE sql STABLE AS $$SELECT ssn FROM U&"\0063ustomers"$$;
         CREATE FUNCTION via_atomic() RETURNS SETOF text LANGUAGE sql STABLE BEGIN ATOMIC SELECT s FROM ids; END;
         CREATE VIEW calls AS SELECT via_view() AS s;"#,
    )
    .await
    .unwrap();
    let agent = h.connect(AGENT).await;
    // The direct one is refused, as documented.
    let sql = "SELECT * FROM direct_read()";
    refusal(sql, &agent.simple_query(sql).await.unwrap_err());
    for sql in [
        "SELECT * FROM via_view()",
        "SELECT via_view()",
        "SELECT * FROM via_function()",
        "SELECT * FROM via_escape()",
        "SELECT * FROM via_atomic()",
        "SELECT * FROM ROWS FROM (via_view())",
        "SELECT * FROM calls",
    ] {
        match rows_text(&agent, sql).await {
            Ok(text) => assert_no_secret(sql, &text),
            Err(e) => {
                refusal(sql, &e);
            }
        }
    }
}

/// Probes that are refused, each through the simple and the extended
/// protocol, with nothing of a masked value in the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_every_shape_are_refused_and_leak_nothing() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    for sql in [
        // Pattern and regex matches, in every spelling.
        "SELECT id FROM customers WHERE ssn ~ '^078'",
        "SELECT id FROM customers WHERE ssn SIMILAR TO '078%'",
        "SELECT id FROM customers WHERE ssn ILIKE '078%'",
        "SELECT id FROM customers WHERE ssn ^@ '078'",
        "SELECT id FROM customers WHERE ssn LIKE ALL (ARRAY['0%'])",
        "SELECT id FROM customers WHERE ssn OPERATOR(pg_catalog.~~) '078%'",
        "SELECT id FROM customers WHERE pg_catalog.textlike(ssn, '078%')",
        "SELECT id FROM customers WHERE texteq(ssn, '078-05-1120')",
        "SELECT id FROM customers WHERE starts_with(ssn, '078')",
        "SELECT id FROM customers WHERE position('078' in ssn) = 1",
        "SELECT id FROM customers WHERE ssn BETWEEN '0' AND '1'",
        // Computed values compared.
        "SELECT id FROM customers WHERE length(ssn) = 11",
        "SELECT id, length(ssn) > 10 FROM customers",
        "SELECT id FROM customers WHERE md5(ssn) = md5('078-05-1120')",
        "SELECT id FROM customers WHERE md5(ssn) IN (SELECT md5('078-05-1120'))",
        "SELECT id FROM customers WHERE to_json(ssn)::text = '\"078-05-1120\"'",
        "SELECT id FROM customers WHERE upper(ssn) LIKE '078%'",
        "SELECT id FROM customers WHERE coalesce(ssn, '') LIKE '078%'",
        "SELECT id FROM customers WHERE ssn || '' LIKE '078%'",
        "SELECT id FROM customers WHERE (SELECT ssn) LIKE '0%'",
        "SELECT id FROM customers WHERE id = (SELECT length(ssn) FROM customers WHERE id = 1)",
        "SELECT id FROM customers WHERE id IN (SELECT length(ssn) FROM customers)",
        "SELECT id FROM customers WHERE (SELECT substring(ssn from '^078')) IS NOT NULL",
        "SELECT substring(ssn from '^078') IS NULL FROM customers",
        "SELECT count(json_build_object('a', substring(ssn from '^078'))->>'a') FROM customers",
        // Equality of non-hash masks, in every form.
        "SELECT id FROM customers WHERE ssn IN ('078-05-1120')",
        "SELECT id FROM customers WHERE ssn = ANY(ARRAY['078-05-1120'])",
        "SELECT id FROM customers WHERE ARRAY[ssn] = ARRAY['078-05-1120']",
        "SELECT id FROM customers WHERE ARRAY[ssn] @> ARRAY['078-05-1120']",
        "SELECT id FROM customers WHERE ROW(ssn) = ROW('078-05-1120')",
        "SELECT id FROM customers WHERE (ssn, 1) = ('078-05-1120', 1)",
        "SELECT id FROM customers WHERE ssn IS NOT DISTINCT FROM '078-05-1120'",
        "SELECT id FROM customers c JOIN (VALUES ('078-05-1120')) v(s) ON v.s = c.ssn",
        "SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.ssn = c.ssn AND d.id <> c.id)",
        "SELECT id FROM accounts WHERE pin = 4242",
        "SELECT id FROM accounts WHERE token >= 'tok-a'",
        // Through subqueries, CTEs, LATERAL, views and column aliases.
        "SELECT id FROM customers c, LATERAL (SELECT c.ssn AS s) l WHERE l.s LIKE '0%'",
        "SELECT id FROM (SELECT id, ssn AS s FROM customers) x WHERE s LIKE '0%'",
        "WITH x AS (SELECT id, ssn s FROM customers) SELECT id FROM x WHERE s LIKE '0%'",
        "SELECT id FROM contacts WHERE mail LIKE 'ada%'",
        "SELECT a FROM customers AS c(a, b, cc, d) WHERE d LIKE '0%'",
        // Order, grouping, windows, aggregates.
        "SELECT id FROM customers ORDER BY 1, ssn",
        "SELECT id FROM customers ORDER BY md5(ssn)",
        "SELECT id, row_number() OVER (ORDER BY ssn) FROM customers",
        "SELECT id, rank() OVER (PARTITION BY left(ssn, 1)) FROM customers",
        "SELECT id, lag(ssn) OVER (ORDER BY id) FROM customers",
        "SELECT id, first_value(ssn) OVER (ORDER BY id) FROM customers",
        "SELECT left(ssn, 1), count(*) FROM customers GROUP BY 1",
        "SELECT DISTINCT left(ssn, 1) FROM customers",
        "SELECT id FROM customers GROUP BY ROLLUP(id, ssn)",
        "SELECT id FROM customers GROUP BY CUBE(ssn)",
        "SELECT count(*) FROM customers GROUP BY GROUPING SETS (ssn)",
        "SELECT count(DISTINCT ssn) FROM customers",
        "SELECT count(*) FILTER (WHERE ssn > '2') FROM customers",
        "SELECT sum(pin) FROM accounts",
        "SELECT avg(pin) FROM accounts",
        "SELECT bit_and(pin) FROM accounts",
        "SELECT id FROM customers LIMIT (SELECT length(ssn) FROM customers WHERE id = 1)",
        "SELECT id FROM customers OFFSET (SELECT length(ssn) FROM customers WHERE id = 1)",
        // Functions and casts that can fail or give NULL on the value.
        "SELECT ascii(ssn) FROM customers",
        "SELECT format('%s', ssn) FROM customers",
        "SELECT split_part(ssn, '-', 1) FROM customers",
        "SELECT string_to_array(ssn, '-') FROM customers",
        "SELECT regexp_replace(ssn, '-', '') FROM customers",
        "SELECT convert_to(ssn, 'UTF8') FROM customers",
        "SELECT ssn::bytea FROM customers",
        "SELECT sha256(ssn::bytea) FROM customers",
        "SELECT id FROM customers WHERE id = 1 AND ssn::int = 1",
        "SELECT num_nulls(substring(ssn from '^078')) FROM customers",
        "SELECT id FROM customers WHERE ssn IS NORMALIZED",
        "SELECT id FROM customers WHERE ssn IS JSON",
        "SELECT pin + 0 FROM accounts",
        "SELECT -pin FROM accounts",
        "SELECT * FROM generate_series(1, (SELECT length(ssn) FROM customers WHERE id = 1))",
        // Whole rows, sampled values, untraceable runners, side channels.
        "SELECT id, GROUPING(ssn) FROM customers GROUP BY GROUPING SETS ((id, ssn))",
        "SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers'",
        "SELECT stavalues1 FROM pg_statistic",
        "SELECT * FROM pg_stats_ext",
        "SELECT set_config('app.x', ssn, false) FROM customers",
        "SELECT pg_notify('c', ssn) FROM customers",
        "SELECT pg_advisory_lock(length(ssn)) FROM customers",
        "SELECT lo_from_bytea(0, convert_to(ssn, 'UTF8')) FROM customers",
    ] {
        let e = agent.simple_query(sql).await.unwrap_err();
        refusal(sql, &e);
        let e = agent.prepare(sql).await.unwrap_err();
        refusal(sql, &e);
    }
    // SQL PREPARE/EXECUTE and COPY options masking cannot follow.
    let sql = "PREPARE p AS SELECT ssn FROM customers; EXECUTE p";
    refusal(sql, &agent.simple_query(sql).await.unwrap_err());
    let sql = "COPY (SELECT ssn, ssn FROM customers) TO STDOUT WITH (FORMAT csv, FORCE_NULL (ssn))";
    refusal(sql, &copy_text(&agent, sql).await.unwrap_err());
}

/// Shapes that are allowed, and masked: cursors (scrollable, WITH HOLD,
/// quoted names, re-declared under the same name, binary), column alias
/// lists, `U&` names, `ONLY`, `(c).*`, NATURAL and USING joins, COPY with
/// unusual delimiters and quotes, and RETURNING of a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_shapes_stay_masked() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    for sql in [
        "BEGIN; DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT ssn FROM customers; COMMIT; FETCH ALL FROM c; FETCH ABSOLUTE 1 FROM c; MOVE FIRST c; FETCH PRIOR c; CLOSE c",
        "BEGIN; DECLARE \"C\" CURSOR FOR SELECT ssn FROM customers; FETCH 1 FROM \"C\"; COMMIT",
        "BEGIN; DECLARE c CURSOR FOR SELECT id FROM customers; CLOSE c; DECLARE c CURSOR FOR SELECT ssn FROM customers; FETCH 1 FROM c; COMMIT",
        "BEGIN; DECLARE c BINARY CURSOR FOR SELECT ssn FROM customers; FETCH 1 FROM c; COMMIT",
        "SELECT d FROM customers AS c(a, b, cc, d)",
        "SELECT x FROM (SELECT ssn FROM customers) AS s(x)",
        "WITH s(x) AS (SELECT ssn FROM customers) SELECT x FROM s",
        "SELECT U&\"\\0073sn\" FROM customers",
        "SELECT ssn FROM ONLY customers",
        "SELECT (c).* FROM customers c",
        "SELECT (c).ssn FROM customers c",
        "SELECT * FROM customers NATURAL JOIN (SELECT 1 AS id) s",
        "SELECT * FROM (VALUES (1)) v(id) JOIN customers USING (id)",
        "SELECT id, ssn::name, ssn::char(3), ssn COLLATE \"C\" FROM customers",
        "SELECT id, translate(ssn, '0123456789', 'abcdefghij'), reverse(ssn) FROM customers",
        "SELECT id, (ARRAY[ssn])[1], json_build_object(ssn, 1) FROM customers",
        "SELECT jsonb_object_agg(left(ssn, 1), 1) FROM customers",
        "SELECT xmin, ctid, tableoid, ssn FROM customers",
        "SELECT id, count(ssn) OVER (ORDER BY id) FROM customers",
    ] {
        let text = rows_text(&agent, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_no_secret(sql, &text);
        assert!(!text.is_empty(), "{sql}: no rows");
    }
    for sql in [
        "COPY customers TO STDOUT (FORMAT csv, DELIMITER '7')",
        "COPY customers TO STDOUT (FORMAT csv, QUOTE '0')",
        "COPY customers (ssn) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
        "COPY (SELECT ssn, email FROM customers) TO STDOUT (FORMAT binary)",
    ] {
        let text = copy_text(&agent, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_no_secret(sql, &text);
        assert!(text.contains("1120"), "{sql}: {text}");
    }
    // RETURNING of a write by the masked role that may write.
    let bob = h.connect(BOB).await;
    for sql in [
        "UPDATE customers SET ssn = ssn WHERE id = 1 RETURNING ssn, email",
        "UPDATE customers SET name = name || '' RETURNING *",
        "WITH u AS (UPDATE customers SET name = name RETURNING ssn) SELECT * FROM u",
        "INSERT INTO customers (name, email, ssn) VALUES ('n', 'e@x.org', '111-22-3333') RETURNING ssn, email",
    ] {
        let text = rows_text(&bob, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_no_secret(sql, &text);
        assert!(text.contains("***"), "{sql}: {text}");
    }
}

/// LEAK: a schema change made outside pgward (a migration tool or psql
/// connected to PostgreSQL directly, another pgward) is seen only at the
/// next catalog reload (`catalog_refresh_secs`, and then only after one
/// more statement). Until then `*` is expanded with the old columns: a
/// DROP and re-ADD of `name` moves `email` into `name`'s old place, which
/// passes, while `ssn` gets `email`'s mask. Checking each RowDescription
/// field's table OID and attnum against the plan (or masking by them)
/// would close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "leak: a stale catalog places masks on the wrong columns"]
async fn a_schema_change_outside_pgward_does_not_move_masks() {
    let h = harness().await;
    let agent = h.connect(AGENT).await;
    let before = rows_text(&agent, "SELECT * FROM customers").await.unwrap();
    assert_no_secret("before", &before);
    h.direct()
        .await
        .batch_execute(
            "ALTER TABLE customers DROP COLUMN name; ALTER TABLE customers ADD COLUMN name text",
        )
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM customers",
        "TABLE customers",
        "SELECT c.* FROM customers c",
    ] {
        match rows_text(&agent, sql).await {
            Ok(text) => assert_no_secret(sql, &text),
            Err(e) => {
                refusal(sql, &e);
            }
        }
    }
}

/// LEAK (fixed): a materialized view over masked columns (the DBA's) was
/// read in clear, and could be probed: its definition was not traced (a
/// read of it runs nothing of it, so the catalog kept only views'). Its
/// rows are copies of the columns it names: now traced like a view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_materialized_view_over_masked_columns_is_masked() {
    let h = harness().await;
    h.direct()
        .await
        .batch_execute(
            "CREATE MATERIALIZED VIEW mailing AS SELECT id, email AS address, upper(ssn) AS code FROM customers",
        )
        .await
        .unwrap();
    let agent = h.connect(AGENT).await;
    let got = rows_text(&agent, "SELECT * FROM mailing ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        got,
        "1|a***@example.com|***|\n2|a***@example.com|***|\n3|g***@example.com|***|\n"
    );
    let row = agent
        .query_one("SELECT address FROM mailing WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "a***@example.com");
    let sql = "SELECT id FROM mailing WHERE address LIKE 'ada%'";
    refusal(sql, &agent.simple_query(sql).await.unwrap_err());
    let out = copy_text(&agent, "COPY (SELECT * FROM mailing) TO STDOUT")
        .await
        .unwrap();
    assert_no_secret("COPY", &out);
}

/// LEAK (fixed): a role with masks that may write probed a masked column
/// that has a UNIQUE constraint (the DBA's, common for e-mail addresses) by
/// inserting a guess: 23505 (values scrubbed, but the error itself
/// answers) or `ON CONFLICT DO NOTHING` inserting no row meant some row
/// holds the guess. Now a write of a column such a constraint covers is
/// refused, as is an ON CONFLICT whose arbiter may be it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_constraint_is_no_equality_oracle() {
    let h = harness().await;
    let direct = h.direct().await;
    direct
        .batch_execute("ALTER TABLE customers ADD CONSTRAINT one_email UNIQUE (email)")
        .await
        .unwrap();
    let bob = h.connect(BOB).await;
    let guess = |email: &str| {
        format!(
            "INSERT INTO customers (name, email, ssn) VALUES ('x', '{email}', 'y') ON CONFLICT DO NOTHING RETURNING id"
        )
    };
    for sql in [
        guess("ada@example.com"),
        guess("nobody@example.com"),
        "INSERT INTO customers (name, email, ssn) VALUES ('x', 'alan@example.com', 'y')".into(),
        "INSERT INTO customers (id, name, email, ssn) VALUES (9, 'x', 'y', 'z') ON CONFLICT (id) DO NOTHING".into(),
        "INSERT INTO customers (id, name, email, ssn) VALUES (1, 'x', 'y', 'z') ON CONFLICT ON CONSTRAINT customers_pkey DO UPDATE SET email = 'alan@example.com'".into(),
        "INSERT INTO customers (id, name, email, ssn) SELECT 9, 'x', 'y', 'z' ON CONFLICT ON CONSTRAINT one_email DO NOTHING".into(),
        // Writing the column's own value back, through a function (or a
        // constant disguised as one) answers too.
        "UPDATE customers SET email = replace(email, email, 'alan@example.com') WHERE id = 1".into(),
        "UPDATE customers SET email = lower(email)".into(),
        "COPY customers (name, email, ssn) FROM STDIN".into(),
    ] {
        let e = bob
            .simple_query(&sql)
            .await
            .expect_err(&format!("{sql}: not refused"));
        let why = refusal(&sql, &e);
        assert!(why.contains("one_email"), "{sql}: {why}");
    }
    // Nothing ran.
    let n: i64 = direct
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // Writes of columns no such constraint covers still run, and so does
    // writing ssn's own masked value back (no constraint covers it).
    for sql in [
        "UPDATE customers SET name = 'Ada' WHERE id = 1",
        "UPDATE customers SET ssn = upper(ssn) WHERE id = 1",
        "INSERT INTO orders (customer_id, amount) VALUES (1, 1) ON CONFLICT (id) DO NOTHING",
        "DELETE FROM orders WHERE amount = 1",
    ] {
        bob.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Exclusion constraints, unique expression indexes, partial unique
/// indexes whose predicate tests a masked column, and indexes over the
/// whole row compare masked values too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusion_and_expression_indexes_are_no_equality_oracles() {
    let h = harness().await;
    h.direct()
        .await
        .batch_execute(
            "ALTER TABLE customers ADD CONSTRAINT ssn_apart EXCLUDE USING btree (ssn WITH =);
             CREATE UNIQUE INDEX lower_email ON customers (lower(email));
             CREATE UNIQUE INDEX name_if_078 ON customers (name) WHERE ssn LIKE '078%';
             CREATE FUNCTION pin_key(accounts) RETURNS int LANGUAGE sql IMMUTABLE
                 AS 'SELECT $1.pin % 7';
             CREATE UNIQUE INDEX by_pin ON accounts (pin_key(accounts));",
        )
        .await
        .unwrap();
    let bob = h.connect(BOB).await;
    for (sql, keys) in [
        (
            "UPDATE customers SET ssn = '219-09-9999' WHERE id = 1",
            &["ssn_apart", "name_if_078"][..],
        ),
        (
            "INSERT INTO customers (ssn) VALUES ('078-05-1120') ON CONFLICT DO NOTHING",
            &["ssn_apart", "name_if_078"],
        ),
        (
            "UPDATE customers SET email = 'ADA@EXAMPLE.COM' WHERE id = 2",
            &["lower_email"],
        ),
        (
            "INSERT INTO customers (id) VALUES (7) ON CONFLICT (lower(email)) DO NOTHING",
            &["lower_email"],
        ),
        // Conflicts only when both rows' ssn start with 078.
        (
            "UPDATE customers SET name = 'Ada Lovelace' WHERE id = 2",
            &["name_if_078"],
        ),
        // The index's expression takes the whole row, pin included.
        ("UPDATE accounts SET owner = 1 WHERE id = 2", &["by_pin"]),
    ] {
        let e = bob
            .simple_query(sql)
            .await
            .expect_err(&format!("{sql}: not refused"));
        let why = refusal(sql, &e);
        assert!(keys.iter().any(|k| why.contains(k)), "{sql}: {why}");
    }
    // A column none of them covers is written as before.
    bob.batch_execute("UPDATE customers SET id = id WHERE id = 2")
        .await
        .unwrap();
}

/// A foreign key compares a written value with the referenced column's,
/// and a delete of a referenced row fails when a referencing one holds
/// its value: either side masked makes it an oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_are_no_equality_oracles() {
    let h = harness().await;
    let direct = h.direct().await;
    direct
        .batch_execute(
            "ALTER TABLE customers ADD CONSTRAINT one_email UNIQUE (email);
             CREATE TABLE notes (id int, email text REFERENCES customers (email));
             CREATE TABLE pins (pin int PRIMARY KEY);
             INSERT INTO pins VALUES (4242), (9001), (1);
             ALTER TABLE accounts ADD CONSTRAINT pin_known FOREIGN KEY (pin) REFERENCES pins;",
        )
        .await
        .unwrap();
    let bob = h.connect(BOB).await;
    for (sql, key) in [
        // Referencing a masked column: the insert fails unless a row holds it.
        (
            "INSERT INTO notes VALUES (1, 'ada@example.com')",
            "notes_email_fkey",
        ),
        ("COPY notes FROM STDIN", "notes_email_fkey"),
        (
            "UPDATE notes SET email = 'alan@example.com'",
            "notes_email_fkey",
        ),
        // A masked referencing column: deleting a referenced row fails
        // when some account's pin is that value.
        ("DELETE FROM pins WHERE pin = 4242", "pin_known"),
        ("UPDATE pins SET pin = 5 WHERE pin = 4242", "pin_known"),
        ("UPDATE accounts SET pin = 1 WHERE id = 1", "pin_known"),
        ("DELETE FROM customers WHERE id = 3", "notes_email_fkey"),
    ] {
        let e = bob
            .simple_query(sql)
            .await
            .expect_err(&format!("{sql}: not refused"));
        let why = refusal(sql, &e);
        assert!(why.contains(key), "{sql}: {why}");
    }
    let n: i64 = direct
        .query_one("SELECT count(*) FROM pins", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // A foreign key between unmasked columns is no oracle.
    for sql in [
        "INSERT INTO orders (customer_id, amount) VALUES (3, 1)",
        "DELETE FROM orders WHERE customer_id = 3",
        "INSERT INTO notes (id) VALUES (1)",
        "DELETE FROM notes",
    ] {
        bob.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A `hash`-masked column shows equality by design: a unique index on it,
/// and ON CONFLICT over it, stay allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_hash_masked_column_may_still_be_written() {
    let h = harness().await;
    h.direct()
        .await
        .batch_execute("CREATE UNIQUE INDEX one_token ON accounts (token)")
        .await
        .unwrap();
    let bob = h.connect(BOB).await;
    let hit = rows_text(
        &bob,
        "INSERT INTO accounts (id, owner, pin, token) VALUES (3, 3, 1, 'tok-alpha-7731') ON CONFLICT (token) DO NOTHING RETURNING id",
    )
    .await
    .unwrap();
    assert_eq!(hit, "");
    let miss = rows_text(
        &bob,
        "INSERT INTO accounts (id, owner, pin, token) VALUES (3, 3, 1, 'tok-gamma') ON CONFLICT (token) DO NOTHING RETURNING id",
    )
    .await
    .unwrap();
    assert_eq!(miss, "3|\n");
    let e = bob
        .simple_query("UPDATE accounts SET token = 'tok-gamma' WHERE id = 1")
        .await
        .expect_err("a duplicate token");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("23505"));
}
