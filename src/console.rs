//! The admin console: `psql "dbname=pgward"` on pgward's own address.
//!
//! Approvers (identities holding a role with `approver = true` or
//! `approve_for`) sign in like any client and decide held statements,
//! list and end sessions, and reload the rules. Simple Query only, one
//! command per statement, case-insensitive; results are ordinary rows, so
//! psql's `\x`, `\watch` and scripts work as with PgBouncer's console.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;

use crate::approval::{Approved, Request};
use crate::auth::Identity;
use crate::net::Conn;
use crate::policy::Role;
use crate::protocol::encode::{self, oid, Column};
use crate::protocol::frontend::Message;
use crate::protocol::messages::ready_for_query;
use crate::protocol::{sqlstate, PgError};
use crate::server::{Phase, Shared};

/// The database name that reaches the console instead of the upstream.
pub const DATABASE: &str = "pgward";

/// An approver's roles under the current rules.
struct Approver {
    name: String,
    roles: Vec<Arc<Role>>,
}

impl Approver {
    fn of(shared: &Shared, identity: &Identity) -> Result<Approver, PgError> {
        let rules = shared.rules();
        let names = rules.roles_of(identity).map_err(|e| denied(&e))?;
        let roles: Vec<Arc<Role>> = names
            .iter()
            .filter_map(|n| rules.roles.get(n).cloned())
            .filter(|r| r.approves_any())
            .collect();
        if roles.is_empty() {
            return Err(denied(&format!(
                "identity \"{}\" may not use the admin console: none of its roles [{}] has approver = true or approve_for",
                identity.name,
                names.join(", ")
            )));
        }
        Ok(Approver {
            name: identity.name.clone(),
            roles,
        })
    }

    fn may_approve(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.may_approve(role))
    }
}

fn denied(m: &str) -> PgError {
    PgError::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, format!("pgward: {m}"))
}

fn error(code: &'static str, m: impl Into<String>) -> PgError {
    PgError::error(code, m)
}

/// Whether `identity` may use the console now (checked at sign-in; every
/// command checks again, so a rules reload takes effect at once).
pub fn admit(shared: &Shared, identity: &Identity) -> Result<(), PgError> {
    Approver::of(shared, identity).map(|_| ())
}

/// Serves one console session after sign-in (AuthenticationOk is queued in
/// `conn`).
pub async fn serve(mut conn: Conn, identity: Identity, shared: Arc<Shared>) {
    for (name, value) in [
        ("server_version", "15.0 (pgward console)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
        ("application_name", "pgward"),
    ] {
        encode::parameter_status(&mut conn.wbuf, name, value);
    }
    encode::backend_key_data(&mut conn.wbuf, 0, rand::random());
    ready_for_query(&mut conn.wbuf, b'I');
    if conn.flush().await.is_err() {
        return;
    }
    let mut phase = shared.phase.clone();
    let max = shared.config.server.max_message_bytes;
    // After an extended-protocol message, everything up to Sync is skipped.
    let mut skipping = false;
    loop {
        let frame = tokio::select! {
            f = conn.read_frame(max) => f,
            _ = phase.changed() => {
                if *phase.borrow() != Phase::Running {
                    conn.send_error(&PgError::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command",
                    ))
                    .await;
                    return;
                }
                continue;
            }
        };
        let Ok((tag, body)) = frame else {
            return;
        };
        match tag {
            b'X' => return,
            b'Q' => {
                skipping = false;
                match Message::parse(tag, &body) {
                    Ok(Message::Query(q)) => run_query(q.sql, &identity, &shared, &mut conn.wbuf),
                    _ => {
                        conn.send_error(&PgError::fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            "invalid message format in message of type Q",
                        ))
                        .await;
                        return;
                    }
                }
                ready_for_query(&mut conn.wbuf, b'I');
            }
            b'S' => {
                skipping = false;
                ready_for_query(&mut conn.wbuf, b'I');
            }
            b'H' => {}
            b'P' | b'B' | b'D' | b'E' | b'C' | b'F' | b'd' | b'c' | b'f' => {
                if !skipping {
                    skipping = true;
                    error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the pgward console takes simple queries only",
                    )
                    .with_hint("use psql, or send one command per simple Query")
                    .encode(&mut conn.wbuf);
                }
            }
            other => {
                conn.send_error(&PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!(
                        "invalid frontend message type {}",
                        crate::protocol::frame::printable(other)
                    ),
                ))
                .await;
                return;
            }
        }
        if conn.flush().await.is_err() {
            return;
        }
    }
}

/// Runs each command of a Query; the first error ends it.
fn run_query(text: &str, identity: &Identity, shared: &Shared, out: &mut BytesMut) {
    let commands = match split(text) {
        Ok(c) => c,
        Err(e) => return e.encode(out),
    };
    if commands.is_empty() {
        encode::empty_query_response(out);
        return;
    }
    for words in commands {
        let result = Approver::of(shared, identity)
            .map_err(|e| PgError {
                severity: crate::protocol::messages::Severity::Error,
                ..e
            })
            .and_then(|who| run(&words, &who, shared, out));
        if let Err(e) = result {
            e.encode(out);
            return;
        }
    }
}

/// A word of a command: a keyword or number, or a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Bare(String),
    Quoted(String),
}

/// Splits a Query into commands (at `;`) of words; `'...'` quotes, with
/// `''` for a quote, and `--` comments run to the end of the line.
fn split(text: &str) -> Result<Vec<Vec<Word>>, PgError> {
    let mut commands = Vec::new();
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ';' => {
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => s.push(c),
                        None => {
                            return Err(error(sqlstate::SYNTAX_ERROR, "unterminated quoted string"))
                        }
                    }
                }
                words.push(Word::Quoted(s));
            }
            c if c.is_whitespace() => {}
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || n == ';' || n == '\'' {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                words.push(Word::Bare(s.to_ascii_lowercase()));
            }
        }
    }
    if !words.is_empty() {
        commands.push(words);
    }
    Ok(commands)
}

const HELP: &[(&str, &str)] = &[
    (
        "SHOW PENDING",
        "statements waiting for approval that you may decide",
    ),
    ("SHOW REQUEST n", "one request, pending or decided"),
    ("APPROVE n", "run held statement n now"),
    (
        "APPROVE n FOR '1 hour'",
        "run it, and let the same statements (any constants) from the same identity run without asking for that long",
    ),
    ("SHOW GRANTS", "live grants: who, what, until when, uses"),
    ("REVOKE GRANT n", "end grant n now"),
    (
        "DENY n ['reason']",
        "refuse held statement n (the client gets 42501 with the reason)",
    ),
    ("SHOW APPROVALS", "decided requests, newest last"),
    ("SHOW SESSIONS", "live client sessions"),
    (
        "CANCEL n",
        "withdraw the statement session n holds for approval",
    ),
    ("TERMINATE n", "end session n (FATAL 57P01)"),
    ("SHOW STATS", "sessions and requests, counted"),
    ("RELOAD", "reload the rules directory (as SIGHUP does)"),
    ("SHOW HELP", "this list"),
];

fn run(words: &[Word], who: &Approver, shared: &Shared, out: &mut BytesMut) -> Result<(), PgError> {
    let bare: Vec<Option<&str>> = words
        .iter()
        .map(|w| match w {
            Word::Bare(s) => Some(s.as_str()),
            Word::Quoted(_) => None,
        })
        .collect();
    match bare.as_slice() {
        [Some("show"), Some("pending")] => show_pending(who, shared, out),
        [Some("show"), Some("request"), Some(n)] => show_request(id(n)?, who, shared, out),
        [Some("show"), Some("approvals")] => show_approvals(who, shared, out),
        [Some("show"), Some("sessions")] => show_sessions(who, shared, out),
        [Some("show"), Some("stats")] => show_stats(shared, out),
        [Some("show"), Some("help")] | [Some("help")] => {
            let rows = HELP
                .iter()
                .map(|(c, w)| vec![Some(c.to_string()), Some(w.to_string())]);
            rows_out(
                out,
                &[Column::text("command"), Column::text("does")],
                rows,
                "SHOW",
            )
        }
        [Some("approve"), Some(n)] => approve(id(n)?, None, who, shared, out),
        [Some("approve"), Some(n), Some("for"), None] => {
            let Word::Quoted(window) = &words[3] else {
                return Err(usage());
            };
            let window = grant_window(window, shared.config.approval.max_grant_secs)?;
            approve(id(n)?, Some(window), who, shared, out)
        }
        [Some("show"), Some("grants")] => show_grants(who, shared, out),
        [Some("revoke"), Some("grant"), Some(n)] => revoke_grant(id(n)?, who, shared, out),
        [Some("deny"), Some(n)] => deny(id(n)?, "", who, shared, out),
        [Some("deny"), Some(n), None] => {
            let Word::Quoted(reason) = &words[2] else {
                return Err(usage());
            };
            deny(id(n)?, reason, who, shared, out)
        }
        [Some("cancel"), Some(n)] => {
            let s = session(id(n)?, who, shared)?;
            if !s.control.is_holding() {
                return Err(error(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("session {} holds no statement for approval; to stop a running statement use pg_cancel_backend({})", s.id, s.backend_pid),
                ));
            }
            s.control.post(crate::session::registry::Command::Cancel);
            encode::command_complete(out, "CANCEL");
            Ok(())
        }
        [Some("terminate"), Some(n)] => {
            let s = session(id(n)?, who, shared)?;
            s.control.terminate(&who.name);
            encode::command_complete(out, "TERMINATE");
            Ok(())
        }
        [Some("reload")] => {
            if !who.roles.iter().any(|r| r.approver) {
                return Err(error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    "pgward: RELOAD needs a role with approver = true (approve_for is not enough)",
                ));
            }
            let dir = &shared.config.rules.dir;
            let rules = crate::rules::Rules::load(dir).map_err(|e| {
                error(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("rules reload failed, the old rules stay: {e}"),
                )
            })?;
            tracing::info!(by = %who.name, "rules reloaded from the console");
            shared.set_rules(rules);
            encode::command_complete(out, "RELOAD");
            Ok(())
        }
        _ => Err(usage()),
    }
}

fn usage() -> PgError {
    let commands: Vec<&str> = HELP.iter().map(|(c, _)| *c).collect();
    error(sqlstate::SYNTAX_ERROR, "pgward console: unknown command")
        .with_hint(format!("commands: {}", commands.join("; ")))
}

fn id(word: &str) -> Result<u64, PgError> {
    word.parse().map_err(|_| {
        error(
            sqlstate::SYNTAX_ERROR,
            format!("pgward console: {word:?} is not a request or session number"),
        )
    })
}

fn session(
    id: u64,
    who: &Approver,
    shared: &Shared,
) -> Result<Arc<crate::session::registry::SessionEntry>, PgError> {
    let s = shared
        .sessions
        .get(id)
        .ok_or_else(|| error(sqlstate::UNDEFINED_OBJECT, format!("no live session {id}")))?;
    if !who.may_approve(&s.role) {
        return Err(error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("pgward: you may not act on sessions of role \"{}\"", s.role),
        ));
    }
    Ok(s)
}

/// `request` as one row of `SHOW PENDING`'s columns.
const REQUEST_COLUMNS: [&str; 13] = [
    "id",
    "requested_at",
    "identity",
    "role",
    "session",
    "database",
    "classes",
    "statement",
    "risk",
    "why",
    "reason",
    "approvals",
    "waited",
];

fn request_columns() -> Vec<Column<'static>> {
    REQUEST_COLUMNS
        .iter()
        .map(|&name| match name {
            "id" | "session" => Column::computed(name, oid::INT8, 8),
            "requested_at" => Column::computed(name, oid::TIMESTAMPTZ, 8),
            _ => Column::text(name),
        })
        .collect()
}

fn request_row(r: &Request, approvers: &[String]) -> Vec<Option<String>> {
    let waited = SystemTime::now()
        .duration_since(r.requested_at)
        .unwrap_or_default();
    vec![
        Some(r.id.to_string()),
        Some(timestamp(r.requested_at)),
        Some(r.identity.clone()),
        Some(r.role.clone()),
        Some(r.session.to_string()),
        Some(r.database.clone()),
        Some(r.classes.clone()),
        Some(r.statement.to_string()),
        (!r.risk.is_empty()).then(|| r.risk.clone()),
        Some(r.why.clone()),
        r.reason.as_deref().map(|r| shown(r, false)),
        Some(format!(
            "{}/{}{}",
            approvers.len(),
            r.approvals_needed,
            if approvers.is_empty() {
                String::new()
            } else {
                format!(" ({})", approvers.join(", "))
            }
        )),
        Some(interval(waited)),
    ]
}

fn show_pending(who: &Approver, shared: &Shared, out: &mut BytesMut) -> Result<(), PgError> {
    let rows = shared
        .approvals
        .pending()
        .into_iter()
        .filter(|(r, _)| who.may_approve(&r.role))
        .map(|(r, a)| request_row(&r, &a));
    rows_out(out, &request_columns(), rows, "SHOW")
}

fn show_request(
    id: u64,
    who: &Approver,
    shared: &Shared,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    let r = shared
        .approvals
        .get(id)
        .filter(|r| who.may_approve(&r.role))
        .ok_or_else(|| {
            error(
                sqlstate::UNDEFINED_OBJECT,
                format!("no request {id} that you may see"),
            )
        })?;
    let pending = shared.approvals.pending();
    let approvers = pending
        .iter()
        .find(|(p, _)| p.id == id)
        .map(|(_, a)| a.clone());
    let decided = shared
        .approvals
        .history()
        .into_iter()
        .rev()
        .find(|d| d.request.id == id);
    let mut columns = request_columns();
    columns.push(Column::text("status"));
    let mut row = request_row(&r, approvers.as_deref().unwrap_or_default());
    row.push(Some(match (&approvers, &decided) {
        (Some(_), _) => "pending".to_owned(),
        (None, Some(d)) => describe(&d.verdict),
        (None, None) => "unknown".to_owned(),
    }));
    rows_out(out, &columns, std::iter::once(row), "SHOW")
}

fn describe(v: &crate::approval::Verdict) -> String {
    use crate::approval::Verdict;
    match v {
        Verdict::Approved { by } => format!("approved by {}", by.join(", ")),
        Verdict::Denied { by, reason } => format!("denied by {by}: {reason}"),
        Verdict::Expired => "expired".into(),
        Verdict::Withdrawn => "withdrawn".into(),
    }
}

fn show_approvals(who: &Approver, shared: &Shared, out: &mut BytesMut) -> Result<(), PgError> {
    let columns = [
        Column::computed("id", oid::INT8, 8),
        Column::computed("requested_at", oid::TIMESTAMPTZ, 8),
        Column::computed("decided_at", oid::TIMESTAMPTZ, 8),
        Column::text("identity"),
        Column::text("role"),
        Column::text("classes"),
        Column::text("verdict"),
        Column::text("by"),
        Column::text("reason"),
        Column::text("statement"),
    ];
    use crate::approval::Verdict;
    let rows = shared
        .approvals
        .history()
        .into_iter()
        .filter(|d| who.may_approve(&d.request.role))
        .map(|d| {
            let (by, reason) = match &d.verdict {
                Verdict::Approved { by } => (Some(by.join(", ")), None),
                Verdict::Denied { by, reason } => (Some(by.clone()), Some(reason.clone())),
                _ => (None, None),
            };
            vec![
                Some(d.request.id.to_string()),
                Some(timestamp(d.request.requested_at)),
                Some(timestamp(d.decided_at)),
                Some(d.request.identity.clone()),
                Some(d.request.role.clone()),
                Some(d.request.classes.clone()),
                Some(d.verdict.as_str().to_owned()),
                by,
                reason,
                Some(d.request.statement.to_string()),
            ]
        });
    rows_out(out, &columns, rows, "SHOW")
}

/// The sessions of roles `who` may approve (all for `approver = true`).
fn show_sessions(who: &Approver, shared: &Shared, out: &mut BytesMut) -> Result<(), PgError> {
    let columns = [
        Column::computed("id", oid::INT8, 8),
        Column::text("identity"),
        Column::text("role"),
        Column::text("database"),
        Column::text("client"),
        Column::text("application_name"),
        Column::computed("backend_pid", oid::INT4, 4),
        Column::computed("started", oid::TIMESTAMPTZ, 8),
        Column::text("state"),
        Column::computed("held_request", oid::INT8, 8),
        Column::text("held_statement"),
        Column::computed("statements", oid::INT8, 8),
        Column::computed("denied", oid::INT8, 8),
        Column::text("audit_session"),
    ];
    let rows = shared
        .sessions
        .list()
        .into_iter()
        .filter(|s| who.may_approve(&s.role))
        .map(|s| {
            vec![
                Some(s.id.to_string()),
                Some(s.identity),
                Some(s.role),
                Some(s.database),
                Some(s.client.to_string()),
                Some(s.application_name),
                Some(s.backend_pid.to_string()),
                Some(timestamp(s.started)),
                Some(s.state.to_owned()),
                s.held.as_ref().map(|(id, _)| id.to_string()),
                s.held.as_ref().map(|(_, st)| st.to_string()),
                Some(s.statements.to_string()),
                Some(s.denied.to_string()),
                Some(s.audit_id),
            ]
        });
    rows_out(out, &columns, rows, "SHOW")
}

fn show_stats(shared: &Shared, out: &mut BytesMut) -> Result<(), PgError> {
    let history = shared.approvals.history();
    let count = |v: &str| history.iter().filter(|d| d.verdict.as_str() == v).count();
    let rows = [
        ("sessions", shared.sessions.len()),
        ("pending", shared.approvals.pending().len()),
        ("approved", count("approved")),
        ("denied", count("denied")),
        ("expired", count("expired")),
        ("withdrawn", count("withdrawn")),
    ]
    .into_iter()
    .map(|(k, v)| vec![Some(k.to_owned()), Some(v.to_string())]);
    rows_out(
        out,
        &[
            Column::text("name"),
            Column::computed("value", oid::INT8, 8),
        ],
        rows,
        "SHOW",
    )
}

fn approve(
    id: u64,
    window: Option<Duration>,
    who: &Approver,
    shared: &Shared,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    may_decide(id, who, shared)?;
    match shared.approvals.approve(id, &who.name, window) {
        Ok(Approved::Released(grant)) => {
            tracing::info!(request = id, by = %who.name, ?grant, "request approved");
            let also = match (grant, window) {
                (Some(g), Some(w)) => format!(
                    "; grant {g} lets the same statements from the same identity run without asking for {}",
                    interval(w)
                ),
                (None, Some(_)) => {
                    "; no grant: not every approver of it gave a window".to_owned()
                }
                _ => String::new(),
            };
            PgError::notice(
                "00000",
                format!("request {id} approved: the statement runs now{also}"),
            )
            .encode(out);
        }
        Ok(Approved::NeedsMore(n)) => {
            PgError::notice(
                "00000",
                format!("request {id}: your approval is counted; it needs {n} more approver(s)"),
            )
            .encode(out);
        }
        Err(e) => return Err(answer_error(e)),
    }
    encode::command_complete(out, "APPROVE");
    Ok(())
}

/// `'1 hour'`, `'30 minutes'`, `'90 s'`, `'2 days'`: a grant's window,
/// at most `max_secs`.
fn grant_window(text: &str, max_secs: u64) -> Result<Duration, PgError> {
    let bad = || {
        error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("pgward console: {text:?} is not a window such as '30 minutes', '1 hour' or '2 days'"),
        )
    };
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| bad())?;
    let unit = match t[split..].trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit).ok_or_else(bad)?;
    if secs == 0 {
        return Err(bad());
    }
    if secs > max_secs {
        return Err(error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("pgward console: a grant lasts at most {max_secs} seconds (approval.max_grant_secs)"),
        ));
    }
    Ok(Duration::from_secs(secs))
}

fn show_grants(who: &Approver, shared: &Shared, out: &mut BytesMut) -> Result<(), PgError> {
    let now = SystemTime::now();
    let rows = shared
        .approvals
        .grants()
        .into_iter()
        .filter(|g| who.may_approve(&g.request.role))
        .map(|g| {
            vec![
                Some(g.id.to_string()),
                Some(g.request.identity.clone()),
                Some(g.request.role.clone()),
                Some(g.request.statement.to_string()),
                Some(g.request.id.to_string()),
                Some(g.granted_by.join(", ")),
                Some(timestamp(g.granted_at)),
                Some(timestamp(g.expires_at)),
                Some(interval(
                    g.expires_at.duration_since(now).unwrap_or_default(),
                )),
                Some(g.uses.to_string()),
            ]
        });
    let columns = [
        Column::computed("id", oid::INT8, 8),
        Column::text("identity"),
        Column::text("role"),
        Column::text("statement"),
        Column::computed("request", oid::INT8, 8),
        Column::text("granted_by"),
        Column::computed("granted_at", oid::TIMESTAMPTZ, 8),
        Column::computed("expires_at", oid::TIMESTAMPTZ, 8),
        Column::text("left"),
        Column::computed("uses", oid::INT8, 8),
    ];
    rows_out(out, &columns, rows, "SHOW")
}

fn revoke_grant(
    id: u64,
    who: &Approver,
    shared: &Shared,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    let visible = shared
        .approvals
        .grants()
        .into_iter()
        .any(|g| g.id == id && who.may_approve(&g.request.role));
    if !visible || shared.approvals.revoke(id).is_none() {
        return Err(error(
            sqlstate::UNDEFINED_OBJECT,
            format!("no live grant {id} that you may revoke"),
        ));
    }
    tracing::info!(grant = id, by = %who.name, "grant revoked");
    encode::command_complete(out, "REVOKE");
    Ok(())
}

fn deny(
    id: u64,
    reason: &str,
    who: &Approver,
    shared: &Shared,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    may_decide(id, who, shared)?;
    shared
        .approvals
        .deny(id, &who.name, reason)
        .map_err(answer_error)?;
    tracing::info!(request = id, by = %who.name, "request denied");
    encode::command_complete(out, "DENY");
    Ok(())
}

fn may_decide(id: u64, who: &Approver, shared: &Shared) -> Result<(), PgError> {
    let r = shared
        .approvals
        .get(id)
        .ok_or_else(|| answer_error(crate::approval::AnswerError::NoSuchRequest(id)))?;
    if !who.may_approve(&r.role) {
        return Err(error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("pgward: you may not decide requests of role \"{}\"", r.role),
        ));
    }
    Ok(())
}

fn answer_error(e: crate::approval::AnswerError) -> PgError {
    use crate::approval::AnswerError;
    let code = match e {
        AnswerError::NoSuchRequest(_) => sqlstate::UNDEFINED_OBJECT,
        AnswerError::OwnRequest(_) | AnswerError::AlreadyApproved(_) => {
            sqlstate::INSUFFICIENT_PRIVILEGE
        }
        AnswerError::NoFingerprint(_) => sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
    };
    error(code, format!("pgward: {e}"))
}

/// RowDescription, the rows, and CommandComplete (`tag n`).
fn rows_out(
    out: &mut BytesMut,
    columns: &[Column<'_>],
    rows: impl Iterator<Item = Vec<Option<String>>>,
    tag: &str,
) -> Result<(), PgError> {
    let encoding = |e: encode::EncodeError| error(sqlstate::PROGRAM_LIMIT_EXCEEDED, e.to_string());
    encode::row_description(out, columns).map_err(encoding)?;
    let mut n = 0;
    for row in rows {
        let row: Vec<Option<String>> = row
            .into_iter()
            .map(|cell| cell.map(|c| shown(&c, true)))
            .collect();
        encode::data_row(out, row).map_err(encoding)?;
        n += 1;
    }
    encode::command_complete(out, &format!("{tag} {n}"));
    Ok(())
}

/// `text` as the console prints it: psql passes a field's bytes to the
/// approver's terminal unchanged, so what requesters wrote (statements,
/// reasons, application names) must not carry escape sequences, carriage
/// returns or bidi controls that hide or reorder what is shown. Those are
/// written out (`\x1b`, `\u{202e}`); newlines and tabs stay when
/// `newlines` (a statement's lines), else they are written out too.
fn shown(text: &str, newlines: bool) -> String {
    let hidden = |c: char| {
        (c.is_control() && !(newlines && (c == '\n' || c == '\t')))
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hidden) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hidden(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    out
}

/// A time as PostgreSQL prints a timestamptz in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    chrono::DateTime::from_timestamp(d.as_secs() as i64, d.subsec_nanos())
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        .unwrap_or_default()
}

/// A duration as PostgreSQL prints an interval under one day: `00:01:23`.
fn interval(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_at_semicolons_with_quotes() {
        let c = split("deny 7 'it''s; not safe'; SHOW pending -- a comment ; here\n").unwrap();
        assert_eq!(
            c,
            vec![
                vec![
                    Word::Bare("deny".into()),
                    Word::Bare("7".into()),
                    Word::Quoted("it's; not safe".into())
                ],
                vec![Word::Bare("show".into()), Word::Bare("pending".into())],
            ]
        );
        assert!(split("deny 1 'open").is_err());
        assert!(split(" ; ;").unwrap().is_empty());
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(shown("SELECT 1", true), "SELECT 1");
        assert_eq!(
            shown("a\x1b[8m\r\u{202e}b\u{2066}\n\tc", true),
            "a\\x1b[8m\\x0d\\u{202e}b\\u{2066}\n\tc"
        );
        assert_eq!(shown("INC-1\nfake row\t", false), "INC-1\\x0afake row\\x09");
        // C1 controls too (a terminal may read U+009B as CSI).
        assert_eq!(shown("\u{9b}2J", true), "\\x9b2J");
    }

    #[test]
    fn times_print_as_postgres_does() {
        assert_eq!(interval(Duration::from_secs(3723)), "01:02:03");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        assert_eq!(timestamp(t), "1970-01-02 00:00:00.000000+00");
    }
}
