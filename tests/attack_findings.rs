//! Bypasses an independent attack found in Bind-time judging, the syntax
//! probes and the classifier, each tried end to end: a read-only role must
//! not read a denied table, switch read-only off or write through them.
//!
//! The harness connects upstream as a superuser (as a misconfigured or
//! single-user deployment would), so what pgward lets through really runs:
//! these tests judge pgward's verdict, not PostgreSQL's permissions.

mod common;

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio_postgres::SimpleQueryMessage;

const SECRET: &str = "sk_live_attack_secret";

fn setup_sql() -> Vec<String> {
    vec![format!(
        "CREATE TABLE public.api_keys (id int, secret text); \
         INSERT INTO public.api_keys VALUES (1, '{SECRET}'); \
         CREATE TABLE public.customers (id int, name text); \
         INSERT INTO public.customers VALUES (1, 'Ada');"
    )]
}

async fn harness_with(extra_sql: &[&str], server: &str) -> Harness {
    let mut sql = setup_sql();
    sql.extend(extra_sql.iter().map(|s| s.to_string()));
    Harness::start_with(Setup {
        setup_sql: sql,
        server: server.into(),
        ..Setup::default()
    })
    .await
}

/// Every DataRow's bytes and every error's (code, message) in `msgs`.
fn rows_and_errors(msgs: &[(u8, Vec<u8>)]) -> (String, Vec<(String, String)>) {
    let mut rows = String::new();
    let mut errors = Vec::new();
    for (tag, body) in msgs {
        match tag {
            b'D' => rows.push_str(&String::from_utf8_lossy(body)),
            b'E' => errors.push((error_field(body, b'C'), error_field(body, b'M'))),
            _ => {}
        }
    }
    (rows, errors)
}

async fn simple(s: &mut tokio::net::TcpStream, sql: &str) -> Vec<(u8, Vec<u8>)> {
    let mut b = BytesMut::new();
    frontend::query(sql, &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    until_ready(s).await
}

/// Finding 1: `'...'::name` is treated as a faithful copy of the text when
/// pgward reads SQL text given to `query_to_xml` (classify.rs `text_arg`),
/// but `name`'s input function truncates to 63 bytes. pgward judges the
/// whole string (a read of `api_keys_not_a_table`, which no rule denies),
/// the server runs its first 63 bytes (`... FROM api_keys`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_cast_truncation_hides_a_denied_table_from_query_to_xml() {
    let h = harness_with(&[], "").await;
    let c = h.connect(ALICE).await;
    let head = "select * from api_keys";
    let pad = " ".repeat(63 - head.len());
    let sql =
        format!("SELECT query_to_xml('{pad}{head}_not_a_table'::name, true, false, '')::text AS x");
    // The server runs the first 63 bytes only.
    let direct = h.direct().await;
    let row = direct.query_one(sql.as_str(), &[]).await.unwrap();
    assert!(row.get::<_, String>(0).contains(SECRET), "premise");

    match c.simple_query(&sql).await {
        Err(e) => assert!(Harness::is_denial(&e), "{e:?}"),
        Ok(msgs) => {
            let leaked = msgs.iter().any(|m| {
                matches!(m, SimpleQueryMessage::Row(r) if r.get(0).is_some_and(|v| v.contains(SECRET)))
            });
            panic!("pgward allowed it (secret leaked: {leaked}): {sql}");
        }
    }
    // The same through a Bind value declared as `name` (OID 19).
    let mut s = login(&h, ALICE).await;
    let value = format!("{pad}{head}_not_a_table");
    let mut b = BytesMut::new();
    frontend::parse(
        "",
        "SELECT query_to_xml($1, true, false, '')::text",
        [19],
        &mut b,
    )
    .unwrap();
    let mut bind = b"\0\0\0\0\0\x01".to_vec();
    bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
    bind.extend_from_slice(value.as_bytes());
    bind.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&frame(b'B', &bind));
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let (rows, errors) = rows_and_errors(&until_ready(&mut s).await);
    assert!(
        !rows.contains(SECRET),
        "Bind of a name value leaked api_keys"
    );
    assert!(
        errors
            .iter()
            .any(|(code, m)| code == "42501" && m.starts_with("pgward")),
        "{errors:?}"
    );
}

/// Finding 2: a Bind pgward cannot decode is let through unjudged
/// (guard.rs `judge_bind`: `parse_bind_values(body)?` returns None, which
/// `check` reads as "allow"). With 32768 parameters, the format-code and
/// value counts no longer fit pgward's signed i16 (messages.rs
/// `parse_bind_values`) but are valid to PostgreSQL (uint16). The Execute
/// judge would refuse the portal, but SQL `FETCH` runs a protocol portal
/// and is judged as a plain read: the statement runs with values pgward
/// never saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_with_32768_parameters_is_not_judged_and_fetch_runs_it() {
    let h = harness_with(&[], "").await;
    let mut s = login(&h, ALICE).await;
    simple(&mut s, "BEGIN").await;
    // $1 is SQL text for query_to_xml: refused as written, judged at Bind.
    // 32767 declared types (the most pgward's i16 accepts) and one more
    // parameter named in the SQL: 32768 in all.
    let n: usize = 32768;
    let mut types = vec![25u32];
    types.extend(std::iter::repeat_n(23u32, 32766));
    let mut b = BytesMut::new();
    frontend::parse(
        "s",
        "SELECT query_to_xml($1, true, false, '')::text WHERE $32768::int IS NULL",
        types,
        &mut b,
    )
    .unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let (_, errors) = rows_and_errors(&until_ready(&mut s).await);
    assert!(errors.is_empty(), "the Parse is judged at Bind: {errors:?}");

    let mut bind = b"p\0s\0".to_vec();
    bind.extend_from_slice(&(n as u16).to_be_bytes());
    bind.extend(std::iter::repeat_n(0u8, 2 * n));
    bind.extend_from_slice(&(n as u16).to_be_bytes());
    let v = b"select * from api_keys";
    bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
    bind.extend_from_slice(v);
    for _ in 1..n {
        bind.extend_from_slice(&(-1i32).to_be_bytes());
    }
    bind.extend_from_slice(&[0, 0]);
    let mut b = BytesMut::from(&frame(b'B', &bind)[..]);
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let bind_answer = until_ready(&mut s).await;
    let fetched = simple(&mut s, "FETCH ALL p").await;
    let (rows, errors) = rows_and_errors(&fetched);
    assert!(
        !rows.contains(SECRET),
        "FETCH of an unjudged portal read api_keys; Bind answer: {:?}",
        rows_and_errors(&bind_answer).1
    );
    let _ = errors;
}

/// Finding 3: pgward parses with PostgreSQL 18's grammar, where
/// `json_scalar(...)`, `json_serialize(...)`, `json(...)`, `json_array(...)`,
/// `json_arrayagg(...)`, `json_value/json_query/json_exists(...)` are SQL/JSON
/// syntax with no function call in the tree. PostgreSQL 15 parses them as
/// ordinary calls, which resolve to user functions of those names. pgward
/// does not judge the call at all: a user function that reads a denied
/// table (or writes) runs for a read-only role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqljson_keyword_names_hide_user_function_calls() {
    let body = "$$ SELECT string_agg(secret, ',') FROM public.api_keys $$";
    let h = harness_with(
        &[
            &format!("CREATE FUNCTION public.json_scalar(text) RETURNS text LANGUAGE sql STABLE AS {body}"),
            &format!("CREATE FUNCTION public.json_value(jsonb, text) RETURNS text LANGUAGE sql STABLE AS {body}"),
            "CREATE TABLE public.hits (n int); \
             CREATE FUNCTION public.json_serialize(int) RETURNS int LANGUAGE sql VOLATILE \
             AS $$ INSERT INTO public.hits VALUES ($1) RETURNING $1 $$",
        ],
        "",
    )
    .await;
    let c = h.connect(ALICE).await;
    // Judged when called by its qualified name: refused.
    let e = c
        .simple_query("SELECT public.json_scalar('x'::text)")
        .await
        .unwrap_err();
    assert!(Harness::is_denial(&e), "premise: {e:?}");
    for sql in [
        "SELECT json_scalar('x'::text)",
        "SELECT json_value('{}'::jsonb, 'x')",
        "SELECT json_serialize(7)",
    ] {
        match c.simple_query(sql).await {
            Err(e) => assert!(Harness::is_denial(&e), "{sql}: not pgward's denial: {e:?}"),
            Ok(msgs) => {
                let leaked = msgs.iter().any(|m| {
                    matches!(m, SimpleQueryMessage::Row(r) if r.get(0).is_some_and(|v| v.contains(SECRET)))
                });
                panic!("{sql}: allowed by pgward (secret leaked: {leaked})");
            }
        }
    }
}

/// Finding 4: SQL text built at Bind (`with_values`) is classified on the
/// session thread whatever its size: `server.max_sql_bytes` and the
/// classify-apart threshold are applied to Query and Parse texts only
/// (guard.rs `judge_bind`). A Bind value of a few MiB (up to
/// `max_message_bytes`, 64 MiB by default) costs gigabytes of memory and
/// tens of seconds per Bind; measured on a debug build, 1.2 MB took 43 s
/// and 1.4 GB of RSS. A read-only user can exhaust pgward's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_values_are_held_to_max_sql_bytes() {
    let h = harness_with(&[], "max_sql_bytes = 4096").await;
    let mut s = login(&h, ALICE).await;
    let value = format!("SELECT '{}' AS v", "x".repeat(20_000));
    let mut b = BytesMut::new();
    frontend::parse(
        "",
        "SELECT length(query_to_xml($1, true, false, '')::text)",
        [],
        &mut b,
    )
    .unwrap();
    let mut bind = b"\0\0\0\0\0\x01".to_vec();
    bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
    bind.extend_from_slice(value.as_bytes());
    bind.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&frame(b'B', &bind));
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let started = std::time::Instant::now();
    let (rows, errors) = rows_and_errors(&until_ready(&mut s).await);
    // A value too long to classify on the session thread stays `$n`: the
    // statement is refused as SQL text pgward cannot see, at once.
    assert!(
        errors
            .iter()
            .any(|(code, m)| code == "42501" && m.contains("not a constant")),
        "a Bind value larger than pgward classifies was classified anyway \
         (rows: {} bytes, errors: {errors:?})",
        rows.len()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// Finding 5: a Parse refused as written but with a `$n` goes upstream to
/// be judged at Bind (guard.rs `judge_at_bind`), whatever made it refused:
/// `DELETE FROM api_keys WHERE id = $1 AND set_config('application_name',
/// 'x', false) IS NOT NULL` is refused for a read-only role whatever the
/// value (main's 3bb48e5 keeps plain DML refused at Parse, but any
/// constant-reading call, here a harmless set_config, makes the statement
/// wait for its Bind again), yet its Parse reaches the server, whose parse
/// analysis takes a RowExclusiveLock on `api_keys` (held to the end of the
/// transaction, with no privilege check: PostgreSQL checks those when the
/// statement runs) and whose Describe reveals the denied table's columns.
/// A read-only role that may not even read `api_keys` can hold a lock that
/// blocks CREATE INDEX, CREATE TRIGGER, REFRESH ... on it indefinitely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_dml_with_parameters_does_not_reach_the_server() {
    let h = harness_with(&[], "").await;
    let mut s = login(&h, ALICE).await;
    simple(&mut s, "BEGIN").await;
    let mut b = BytesMut::new();
    frontend::parse(
        "d",
        // Since main's 3bb48e5 only a statement whose classification read a
        // constant waits for its Bind: a harmless set_config() makes any
        // refused DML one.
        "DELETE FROM api_keys WHERE id = $1 \
         AND set_config('application_name', 'x', false) IS NOT NULL RETURNING *",
        [],
        &mut b,
    )
    .unwrap();
    frontend::describe(b'S', "d", &mut b).unwrap();
    frontend::sync(&mut b);
    s.write_all(&b).await.unwrap();
    let answer = until_ready(&mut s).await;
    let direct = h.direct().await;
    let locks: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE relation = 'public.api_keys'::regclass \
             AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let described_columns = answer
        .iter()
        .any(|(tag, body)| *tag == b'T' && String::from_utf8_lossy(body).contains("secret"));
    assert_eq!(
        locks, 0,
        "a refused DELETE holds a RowExclusiveLock on api_keys (columns described: {described_columns})"
    );
    assert!(
        !described_columns,
        "a refused Parse described api_keys' columns"
    );
}

/// Finding 6: a denied Parse of the unnamed statement makes pgward forget
/// the unnamed statement the server still holds. The stand-in pgward sends
/// for it (guard.rs `stand_in`) is a Parse of the *named* statement
/// `pgward.denied`, which leaves the server's unnamed statement alone, but
/// `ProtocolState::on_error` (state.rs) drops "" as if the client's own
/// Parse had failed. A Bind of "" then meets no statement pgward would
/// judge at Bind (guard.rs `judge_bind` lets it through), the server binds
/// the statement judged at Bind with values nobody judged, and SQL `FETCH`
/// runs the portal (an Execute would be refused, FETCH is a plain read).
/// Here: read-only mode switched off, a denied table read, and a DELETE,
/// all as the read-only analyst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_unnamed_parse_does_not_unhide_the_previous_statement() {
    let h = harness_with(
        &["CREATE TABLE public.orders (id int); INSERT INTO public.orders VALUES (1), (2);"],
        "",
    )
    .await;
    let mut s = login(&h, ALICE).await;
    async fn unjudged(
        s: &mut tokio::net::TcpStream,
        sql: &str,
        values: &[&str],
    ) -> Vec<(u8, Vec<u8>)> {
        let mut b = BytesMut::new();
        // Judged at Bind: goes upstream as the unnamed statement.
        frontend::parse("", sql, [], &mut b).unwrap();
        frontend::sync(&mut b);
        // Denied: pgward forgets "", the server keeps the statement above.
        frontend::parse("", "DELETE FROM orders", [], &mut b).unwrap();
        frontend::sync(&mut b);
        s.write_all(&b).await.unwrap();
        until_ready(s).await;
        until_ready(s).await;
        let mut bind = b"p\0\0\0\0".to_vec();
        bind.extend_from_slice(&(values.len() as u16).to_be_bytes());
        for v in values {
            bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
            bind.extend_from_slice(v.as_bytes());
        }
        bind.extend_from_slice(&[0, 0]);
        let mut b = BytesMut::from(&frame(b'B', &bind)[..]);
        // FETCH in the same implicit transaction as the Bind.
        frontend::query("FETCH ALL p", &mut b).unwrap();
        frontend::sync(&mut b);
        s.write_all(&b).await.unwrap();
        let mut out = until_ready(s).await;
        // A refused Bind makes the server skip the Query too: then only
        // the Sync is answered.
        if !out.iter().any(|m| m.0 == b'E') {
            out.extend(until_ready(s).await);
        }
        out
    }
    let read = unjudged(
        &mut s,
        "SELECT query_to_xml($1, true, false, '')::text",
        &["select * from api_keys"],
    )
    .await;
    let (rows, _) = rows_and_errors(&read);
    let secret_read = rows.contains(SECRET);

    unjudged(
        &mut s,
        "SELECT set_config($1, $2, false)",
        &["default_transaction_read_only", "off"],
    )
    .await;
    let show = simple(&mut s, "SHOW default_transaction_read_only").await;
    let (mode, _) = rows_and_errors(&show);
    unjudged(
        &mut s,
        "DELETE FROM orders WHERE id = $1 \
         AND set_config('application_name', 'x', false) IS NOT NULL RETURNING id",
        &["1"],
    )
    .await;
    let direct = h.direct().await;
    let left: i64 = direct
        .query_one("SELECT count(*) FROM public.orders", &[])
        .await
        .unwrap()
        .get(0);
    let read_only_kept = mode.contains("on");
    assert!(
        !secret_read && read_only_kept && left == 2,
        "FETCH of unjudged Binds: api_keys read: {secret_read}, read-only mode kept: \
         {read_only_kept}, orders left: {left} of 2"
    );
}
