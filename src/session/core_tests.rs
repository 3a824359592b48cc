//! `Core` driven with bytes alone: no socket and no PostgreSQL. The guard
//! gets a context of its own (the example rules, a fixed catalog built
//! from the PostgreSQL 15 snapshot), and the server's answers are bytes
//! written here as PostgreSQL would send them.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::guard::{Guard, GuardContext};
use super::relay::{Blocked, Core, End, Release};
use super::rows::{self, RowDecision, RowPlanner, RowRewriter};
use super::state::{Answering, Ruling};
use crate::auth::{AuthMethod, Identity};
use crate::policy::{Catalog, CatalogSlot, Role, Statement};
use crate::protocol::{sqlstate, PgError};

fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn query(sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    msg(&mut out, b'Q', format!("{sql}\0").as_bytes());
    out
}

/// Parse (unnamed), Bind with `result_formats`, Describe of the portal,
/// Execute, Sync: what psycopg 3 sends per query.
fn extended(sql: &str, result_formats: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    msg(&mut out, b'P', format!("\0{sql}\0\0\0").as_bytes());
    let mut bind = b"\0\0\0\0\0\0".to_vec();
    bind.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        bind.extend_from_slice(&f.to_be_bytes());
    }
    msg(&mut out, b'B', &bind);
    msg(&mut out, b'D', b"P\0");
    msg(&mut out, b'E', b"\0\0\0\0\0");
    msg(&mut out, b'S', b"");
    out
}

/// A RowDescription of text columns named `names`, in `format`.
fn row_description(names: &[&str], format: i16) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i16(names.len() as i16);
    for (i, n) in names.iter().enumerate() {
        body.put_slice(n.as_bytes());
        body.put_u8(0);
        body.put_u32(16384);
        body.put_i16(i as i16 + 1);
        body.put_u32(25);
        body.put_i16(-1);
        body.put_i32(-1);
        body.put_i16(format);
    }
    let mut out = Vec::new();
    msg(&mut out, b'T', &body);
    out
}

fn data_row(fields: &[&str]) -> Vec<u8> {
    let mut body = BytesMut::new();
    let fields: Vec<Option<&[u8]>> = fields.iter().map(|f| Some(f.as_bytes())).collect();
    rows::put_data_row(&mut body, &fields).unwrap();
    let mut out = Vec::new();
    msg(&mut out, b'D', &body);
    out
}

fn complete(tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    msg(&mut out, b'C', format!("{tag}\0").as_bytes());
    out
}

fn ready(status: u8) -> Vec<u8> {
    let mut out = Vec::new();
    msg(&mut out, b'Z', &[status]);
    out
}

fn stand_in_error() -> Vec<u8> {
    let mut out = Vec::new();
    msg(
        &mut out,
        b'E',
        b"SERROR\0VERROR\0C42601\0Msyntax error at or near \"PGWARD\"\0Rscanner_yyerror\0\0",
    );
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A session's core for `identity` (of the example rules), with
/// `planner` deciding which rows are rewritten, and no audit log.
fn core(identity: &str, planner: Option<Arc<dyn RowPlanner>>) -> Core {
    let rules = crate::demo::example_rules().expect("the example rules");
    let mut ctx = GuardContext::of_rules(rules);
    ctx.planner = planner;
    let guard = Guard::new(
        ctx,
        Identity {
            name: identity.into(),
            method: AuthMethod::Scram,
            token: None,
        },
        None,
        CatalogSlot::fixed("db", Catalog::builtin()),
    );
    Core::new(Some(guard), None, b'I', 1 << 20, 10_000)
}

/// What the core sends upstream for `input`; Err when it blocks or ends.
fn client(core: &mut Core, input: &[u8]) -> Result<(Vec<u8>, Option<Blocked>), End> {
    let mut cin = BytesMut::from(input);
    let mut to_up = BytesMut::new();
    let blocked = core.on_client_data(&mut cin, &mut to_up)?;
    Ok((to_up.to_vec(), blocked))
}

/// What the client gets for the server's `input`.
fn server(core: &mut Core, input: &[u8]) -> Result<Vec<u8>, End> {
    let mut uin = BytesMut::from(input);
    let mut to_client = BytesMut::new();
    core.on_upstream_data(&mut uin, &mut to_client)?;
    assert!(uin.is_empty(), "every whole frame is handled");
    Ok(to_client.to_vec())
}

/// The SQLSTATE and message of each ErrorResponse in `bytes`.
fn errors(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        if bytes[at] == b'E' {
            let (_, code, message) =
                crate::protocol::messages::parse_error_fields(&bytes[at + 5..at + 1 + len]);
            out.push((code, message));
        }
        at += 1 + len;
    }
    out
}

/// The type bytes of the messages in `bytes`.
fn tags(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push(bytes[at]);
        at += 1 + len;
    }
    out
}

#[test]
fn an_allowed_pipeline_passes_byte_for_byte_and_answers_know_their_statement() {
    // A planner that may rewrite alice's rows: her results' columns are
    // decoded (without one, nothing reads them).
    let mut core = core("alice", Some(Arc::new(Shout)));
    let sent = cat(&[
        &extended("SELECT relname FROM pg_class", &[]),
        &query("SELECT 1; SELECT 2"),
    ]);
    let (up, blocked) = client(&mut core, &sent).unwrap();
    assert!(blocked.is_none());
    assert_eq!(up, sent, "allowed traffic goes upstream untouched");
    // Parse, Bind, Describe, Execute, Sync, Query.
    assert_eq!(core.state.owed.len(), 6);
    let reply = cat(&[
        b"1\0\0\0\x042\0\0\0\x04",
        &row_description(&["relname"], 0),
        &data_row(&["pg_class"]),
    ]);
    assert_eq!(server(&mut core, &reply).unwrap(), reply);
    // The Execute answering now knows its statement and its columns.
    let a = core.state.front_answering().expect("the Execute");
    assert_eq!(a.ruling, Ruling::Pass);
    assert_eq!(a.columns.as_ref().map(|c| c.len()), Some(1));
    assert_eq!(&*a.columns.as_ref().unwrap()[0].name, "relname");
    assert_eq!(a.format(0), Some(0), "no result formats: text");
    assert_eq!(
        a.prepared.as_ref().map(|p| &*p.sql),
        Some("SELECT relname FROM pg_class")
    );
    let reply = cat(&[
        &complete("SELECT 1"),
        &ready(b'I'),
        &row_description(&["?column?"], 0),
        &data_row(&["1"]),
        &complete("SELECT 1"),
    ]);
    assert_eq!(server(&mut core, &reply).unwrap(), reply);
    let a = core.state.front_answering().expect("the Query");
    assert_eq!(
        a.current, 1,
        "the second statement of the Query answers now"
    );
    assert!(a.columns.is_none(), "not described yet");
    let reply = cat(&[
        &row_description(&["?column?"], 0),
        &data_row(&["2"]),
        &complete("SELECT 1"),
        &ready(b'I'),
    ]);
    assert_eq!(server(&mut core, &reply).unwrap(), reply);
    assert!(core.state.is_idle());
    assert_eq!(core.state.anomalies, 0);
}

#[test]
fn a_denied_query_becomes_a_stand_in_and_its_error_is_pgwards() {
    let mut core = core("alice", None);
    let (up, _) = client(&mut core, &query("DELETE FROM orders")).unwrap();
    assert_eq!(up, guard_stand_in_query());
    let got = server(&mut core, &cat(&[&stand_in_error(), &ready(b'I')])).unwrap();
    let errs = errors(&got);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, sqlstate::INSUFFICIENT_PRIVILEGE);
    assert!(errs[0].1.starts_with("pgward:"), "{errs:?}");
    assert_eq!(tags(&got), b"EZ");
    assert!(core.state.is_idle());
}

fn guard_stand_in_query() -> Vec<u8> {
    b"Q\0\0\0\x12PGWARD DENIED\0".to_vec()
}

#[test]
fn after_a_denied_parse_nothing_goes_upstream_until_sync() {
    let mut core = core("alice", None);
    let mut sent = extended("DELETE FROM orders", &[]);
    // A second statement pipelined before the Sync: skipped by the server,
    // so neither judged nor sent.
    let sync = sent.split_off(sent.len() - 5);
    sent.extend_from_slice(&extended("SELECT 1", &[])[..]);
    sent.truncate(sent.len() - 5);
    sent.extend_from_slice(&sync);
    let (up, _) = client(&mut core, &sent).unwrap();
    let mut want = Vec::new();
    msg(&mut want, b'P', b"\0PGWARD DENIED\0\0\0");
    msg(&mut want, b'S', b"");
    assert_eq!(up, want, "the stand-in, then only the Sync");
    let got = server(&mut core, &cat(&[&stand_in_error(), &ready(b'I')])).unwrap();
    assert_eq!(tags(&got), b"EZ");
    assert_eq!(errors(&got)[0].0, sqlstate::INSUFFICIENT_PRIVILEGE);
    assert!(core.state.is_idle());
    assert_eq!(core.state.anomalies, 0);
}

#[test]
fn a_server_error_skips_the_rest_up_to_sync() {
    let mut core = core("alice", None);
    let mut sent = extended("SELECT 1/0", &[]);
    sent.truncate(sent.len() - 5);
    sent.extend_from_slice(&extended("SELECT 2", &[]));
    let (up, _) = client(&mut core, &sent).unwrap();
    assert_eq!(up, sent);
    let mut err = Vec::new();
    msg(
        &mut err,
        b'E',
        b"SERROR\0VERROR\0C22012\0Mdivision by zero\0\0",
    );
    let reply = cat(&[
        b"1\0\0\0\x042\0\0\0\x04",
        &row_description(&["?column?"], 0),
        &err,
        &ready(b'I'),
    ]);
    assert_eq!(
        server(&mut core, &reply).unwrap(),
        reply,
        "the server's own error, as sent"
    );
    assert!(
        core.state.is_idle(),
        "the skipped messages are owed nothing"
    );
    assert_eq!(core.state.anomalies, 0);
}

#[test]
fn a_held_statement_waits_unsent_and_is_released_either_way() {
    let mut core = core("bob", None);
    let ddl = query("CREATE TABLE t (a int)");
    let then = query("SELECT 1");
    let sent = cat(&[&ddl, &then]);
    let (up, blocked) = client(&mut core, &sent).unwrap();
    assert!(up.is_empty(), "nothing of a held statement goes upstream");
    let Some(Blocked::Hold(hold)) = blocked else {
        panic!("held for approval")
    };
    assert!(hold.statement.contains("CREATE TABLE"));
    assert!(
        core.state.owed.is_empty(),
        "not entered in the protocol state"
    );
    // Refused: its stand-in, then what waited behind it.
    core.release(Release::Refused(PgError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        "pgward: approval request 1 was denied by dana",
    )));
    let (up, blocked) = client(&mut core, &sent).unwrap();
    assert!(blocked.is_none());
    assert_eq!(up, cat(&[&guard_stand_in_query(), &then]));
    let got = server(&mut core, &cat(&[&stand_in_error(), &ready(b'I')])).unwrap();
    assert_eq!(
        errors(&got)[0].1,
        "pgward: approval request 1 was denied by dana"
    );
    // Asked again and approved: it goes upstream as sent.
    let (_, blocked) = client(&mut core, &ddl).unwrap();
    let Some(Blocked::Hold(hold)) = blocked else {
        panic!("held again: an approval is never remembered")
    };
    core.release(Release::Approved {
        id: 2,
        texts: hold.texts.clone(),
        by: vec!["dana".into()],
    });
    let (up, _) = client(&mut core, &ddl).unwrap();
    assert_eq!(up, ddl);
    let owed = core.state.owed.back().and_then(|(_, o)| o.answering());
    assert_eq!(owed.map(|a| a.ruling), Some(Ruling::Approved(2)));
}

#[test]
fn a_long_text_is_classified_apart_while_its_session_waits() {
    let mut core = core("alice", None);
    let long = format!(
        "SELECT 1 /* {} */",
        "x".repeat(super::guard::CLASSIFY_APART)
    );
    let sent = cat(&[&query("SELECT 0"), &query(&long), &query("SELECT 2")]);
    let (up, blocked) = client(&mut core, &sent).unwrap();
    assert_eq!(up, query("SELECT 0"), "what came before it goes on");
    let Some(Blocked::Classify(work)) = blocked else {
        panic!("classified apart")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    core.provide(rt.block_on(work));
    let rest = &sent[query("SELECT 0").len()..];
    let (up, blocked) = client(&mut core, rest).unwrap();
    assert!(blocked.is_none());
    assert_eq!(up, rest, "judged with the classification made apart");
}

/// Upper-cases every text-format column; refuses binary ones (it cannot
/// read them), which ends the session.
#[derive(Debug)]
struct Upper;

impl RowRewriter for Upper {
    fn data_row(
        &self,
        answering: &Answering,
        row: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), PgError> {
        let bad = || PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "unreadable row");
        let fields = rows::data_row_fields(row).ok_or_else(bad)?;
        let mut upper: Vec<Option<Vec<u8>>> = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if answering.format(i) != Some(0) {
                return Err(PgError::fatal(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "cannot rewrite a binary column",
                ));
            }
            upper.push(f.map(|b| b.to_ascii_uppercase()));
        }
        let refs: Vec<Option<&[u8]>> = upper.iter().map(|f| f.as_deref()).collect();
        rows::put_data_row(out, &refs)
    }
}

/// Rewrites the rows of statements whose text mentions `shout`.
struct Shout;

impl RowPlanner for Shout {
    fn plan(
        &self,
        _role: &Role,
        st: &Statement,
        _cat: &Arc<crate::policy::Catalog>,
    ) -> Result<RowDecision, PgError> {
        Ok(match st.text.contains("shout") {
            true => RowDecision::Rewrite(Arc::new(Upper)),
            false => RowDecision::Pass,
        })
    }
}

#[test]
fn rows_of_a_rewritten_statement_are_rewritten_and_others_pass_untouched() {
    let mut core = core("alice", Some(Arc::new(Shout)));
    let sent = query("SELECT 'abc' AS shout; SELECT 'abc' AS quiet");
    let (up, _) = client(&mut core, &sent).unwrap();
    assert_eq!(up, sent);
    let a = core.state.front_answering().unwrap();
    assert_eq!(a.ruling, Ruling::Rewrite);
    assert_eq!(
        a.sql.as_deref(),
        Some("SELECT 'abc' AS shout; SELECT 'abc' AS quiet")
    );
    let first = cat(&[
        &row_description(&["shout"], 0),
        &data_row(&["abc"]),
        &data_row(&["xyz"]),
        &complete("SELECT 2"),
    ]);
    let second = cat(&[
        &row_description(&["quiet"], 0),
        &data_row(&["abc"]),
        &complete("SELECT 1"),
        &ready(b'I'),
    ]);
    let got = server(&mut core, &cat(&[&first, &second])).unwrap();
    let want = cat(&[
        &row_description(&["shout"], 0),
        &data_row(&["ABC"]),
        &data_row(&["XYZ"]),
        &complete("SELECT 2"),
        &second,
    ]);
    assert_eq!(
        got, want,
        "the first statement's rows rewritten, the second's as sent"
    );

    // The extended protocol: the plan goes with the prepared statement,
    // and the Execute takes it from what its portal runs.
    let sent = extended("SELECT 'abc' AS shout", &[]);
    assert_eq!(client(&mut core, &sent).unwrap().0, sent);
    let got = server(
        &mut core,
        &cat(&[
            b"1\0\0\0\x042\0\0\0\x04",
            &row_description(&["shout"], 0),
            &data_row(&["abc"]),
            &complete("SELECT 1"),
            &ready(b'I'),
        ]),
    )
    .unwrap();
    let want = cat(&[
        b"1\0\0\0\x042\0\0\0\x04",
        &row_description(&["shout"], 0),
        &data_row(&["ABC"]),
        &complete("SELECT 1"),
        &ready(b'I'),
    ]);
    assert_eq!(got, want);
    // Not rewritten: byte for byte.
    let sent = extended("SELECT 'abc' AS quiet", &[]);
    assert_eq!(client(&mut core, &sent).unwrap().0, sent);
    let reply = cat(&[
        b"1\0\0\0\x042\0\0\0\x04",
        &row_description(&["quiet"], 0),
        &data_row(&["abc"]),
        &complete("SELECT 1"),
        &ready(b'I'),
    ]);
    assert_eq!(server(&mut core, &reply).unwrap(), reply);
}

#[test]
fn a_row_the_rewriter_cannot_rewrite_ends_the_session_unsent() {
    let mut core = core("alice", Some(Arc::new(Shout)));
    // Binary results, as the Bind asks: the rewriter cannot read them.
    let sent = extended("SELECT 'abc' AS shout", &[1]);
    assert_eq!(client(&mut core, &sent).unwrap().0, sent);
    let head = cat(&[b"1\0\0\0\x042\0\0\0\x04", &row_description(&["shout"], 1)]);
    let mut uin = BytesMut::from(&cat(&[&head, &data_row(&["abc"])])[..]);
    let mut to_client = BytesMut::new();
    let end = core.on_upstream_data(&mut uin, &mut to_client);
    let Err(End::Closed(err)) = end else {
        panic!("the session ends: {end:?}")
    };
    assert_eq!(err.code, sqlstate::FEATURE_NOT_SUPPORTED);
    assert!(matches!(err.severity, crate::protocol::Severity::Fatal));
    assert_eq!(
        to_client.to_vec(),
        head,
        "the row itself never reaches the client"
    );
}

/// A ParameterStatus message.
fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for s in [name, value] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut out = Vec::new();
    msg(&mut out, b'S', &body);
    out
}

#[test]
fn a_text_judged_before_is_judged_again_under_other_string_settings() {
    // One text, two readings: with standard strings a SELECT, a DELETE and
    // a comment; with escapes in strings one SELECT of a literal. The guard
    // remembers texts it judged (their shapes, their verdicts): never across
    // the two readings, in either order.
    let sql = r"SELECT 'a\' ; DELETE FROM pg_class; --'";
    let mut core = core("alice", None);
    for standard in [false, true, false, true, true, false, false] {
        core.state.text = super::text::SessionText::from_startup(&cat(&[
            &parameter_status("client_encoding", "UTF8"),
            &parameter_status("server_encoding", "UTF8"),
            &parameter_status(
                "standard_conforming_strings",
                if standard { "on" } else { "off" },
            ),
        ]));
        assert_eq!(core.state.text.lexer().escapes_in_strings, !standard);
        for sent in [query(sql), extended(sql, &[])] {
            let (up, _) = client(&mut core, &sent).unwrap();
            assert_eq!(
                up == sent,
                !standard,
                "standard_conforming_strings {standard}: {}",
                String::from_utf8_lossy(&sent)
            );
            let answer = match (up == sent, sent[0]) {
                (true, b'Q') => cat(&[&complete("SELECT 1"), &ready(b'I')]),
                (true, _) => cat(&[
                    b"1\0\0\0\x04",
                    b"2\0\0\0\x04",
                    b"n\0\0\0\x04",
                    &complete("SELECT 1"),
                    &ready(b'I'),
                ]),
                (false, _) => cat(&[&stand_in_error(), &ready(b'I')]),
            };
            let got = server(&mut core, &answer).unwrap();
            assert_eq!(errors(&got).is_empty(), !standard);
            assert!(core.state.is_idle());
        }
    }
}

/// A planner that rewrites no role's rows.
struct Never;

impl RowPlanner for Never {
    fn rewrites_for(&self, _role: &Role) -> bool {
        false
    }

    fn plan(
        &self,
        _role: &Role,
        _st: &Statement,
        _cat: &Arc<crate::policy::Catalog>,
    ) -> Result<RowDecision, PgError> {
        Ok(RowDecision::Pass)
    }
}

/// Without a rewriter for the session's role, result columns are never
/// decoded: rows and their descriptions pass with no work per result.
#[test]
fn columns_are_decoded_only_for_a_role_whose_rows_may_be_rewritten() {
    for (planner, decoded) in [
        (Some(Arc::new(Never) as Arc<dyn RowPlanner>), false),
        (None, false),
        (Some(Arc::new(Shout) as Arc<dyn RowPlanner>), true),
    ] {
        let mut core = core("alice", planner);
        let sent = query("SELECT 1 AS one");
        client(&mut core, &sent).unwrap();
        let reply = row_description(&["one"], 0);
        assert_eq!(server(&mut core, &reply).unwrap(), reply);
        let a = core.state.front_answering().expect("the Query");
        assert_eq!(a.columns.is_some(), decoded);
    }
}
