//! An attacker's view of column masking (issue 30): every way we tried to
//! read a masked value through pgward. Attacks that leak are tests marked
//! `#[ignore = "leak: ..."]` until fixed; attacks that are refused assert
//! the refusal and that no masked byte reached the client. The findings
//! are written up in /work/atk-masking-report.md.

mod common;

use common::*;

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
        "PROBE agent: {}\nPROBE bob: {}\nPROBE direct: port {}",
        h.conninfo(AGENT),
        h.conninfo(BOB),
        h.pg.port
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
