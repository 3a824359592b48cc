//! `pgward replay`: one recorded session as a readable transcript, or
//! re-executed against another database with a report of where the row
//! counts or errors differ from the recording.

use std::fmt::Write as _;
use std::path::Path;

use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

use super::event::{Event, Kind};
use super::files;

/// A session's events, in the order they happened.
pub fn session_events(dir: &Path, session_id: &str) -> Result<Vec<Event>, String> {
    let mut found = Vec::new();
    for path in files::list(dir)? {
        let (_, events) = files::read(&path)?;
        found.extend(
            events
                .into_iter()
                .filter(|e| e.session_id.as_deref() == Some(session_id)),
        );
    }
    if found.is_empty() {
        return Err(format!(
            "no events of session {session_id} in {} (session ids are in the session_id column)",
            dir.display()
        ));
    }
    found.sort_by_key(|e| e.seq);
    Ok(found)
}

fn time_of(e: &Event) -> String {
    chrono::DateTime::from_timestamp_micros(e.time_us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| e.time_us.to_string())
}

/// The transcript: one line per event, statements with their decision
/// and outcome.
pub fn transcript(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let who = format!(
            "{} as {}",
            e.identity.as_deref().unwrap_or("?"),
            e.role.as_deref().unwrap_or("?")
        );
        let _ = match e.kind {
            Kind::SessionStart => writeln!(
                out,
                "{}  {who}  session start: database {}, from {}, {}, auth {}, upstream user {}",
                time_of(e),
                e.database.as_deref().unwrap_or("?"),
                e.client_addr.as_deref().unwrap_or("?"),
                if e.tls == Some(true) { "TLS" } else { "no TLS" },
                e.auth_method.as_deref().unwrap_or("?"),
                e.upstream_user.as_deref().unwrap_or("?"),
            ),
            Kind::SessionEnd => writeln!(
                out,
                "{}  {who}  session end: {}",
                time_of(e),
                e.detail.as_deref().unwrap_or("")
            ),
            Kind::Statement => {
                let decision = e.decision.as_deref().unwrap_or("?").to_uppercase();
                let mut outcome = e.outcome.as_deref().unwrap_or("?").to_owned();
                if let Some(rows) = e.rows {
                    let _ = write!(outcome, ", {rows} rows");
                }
                if let Some(us) = e.duration_us {
                    let _ = write!(outcome, ", {:.3} ms", us as f64 / 1000.0);
                }
                if let (Some(code), Some(msg)) = (&e.sqlstate, &e.error_message) {
                    let _ = write!(outcome, ", {code}: {msg}");
                }
                writeln!(
                    out,
                    "{}  {who}  {decision}  {}\n    -> {outcome}",
                    time_of(e),
                    one_line(e.statement.as_deref().unwrap_or(""))
                )
            }
            Kind::ApprovalRequest => writeln!(
                out,
                "{}  {who}  HOLD  {}\n    -> held for approval as request {}: {}",
                time_of(e),
                one_line(e.statement.as_deref().unwrap_or("")),
                e.approval_id.as_deref().unwrap_or("?"),
                e.detail.as_deref().unwrap_or(""),
            ),
            Kind::ApprovalDecision => {
                let mut line = format!(
                    "request {} {}",
                    e.approval_id.as_deref().unwrap_or("?"),
                    e.outcome.as_deref().unwrap_or("?")
                );
                if let Some(by) = &e.approver {
                    let _ = write!(line, " by {by}");
                }
                if let Some(d) = e.detail.as_deref().filter(|d| !d.is_empty()) {
                    let _ = write!(line, ": {d}");
                }
                writeln!(out, "{}  {who}  {line}", time_of(e))
            }
            Kind::SessionRefused | Kind::Gap => writeln!(
                out,
                "{}  {}  {}",
                time_of(e),
                e.kind.as_str(),
                e.error_message
                    .as_deref()
                    .or(e.detail.as_deref())
                    .unwrap_or("")
            ),
        };
    }
    out
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What re-executing a session found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub replayed: usize,
    /// (event seq, why it was not replayed)
    pub skipped: Vec<(u64, String)>,
    /// (event seq, statement, what differs)
    pub diverged: Vec<(u64, String, String)>,
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (seq, why) in &self.skipped {
            writeln!(f, "skipped event {seq}: {why}")?;
        }
        for (seq, sql, what) in &self.diverged {
            writeln!(f, "DIVERGED event {seq}: {what}\n    {}", one_line(sql))?;
        }
        write!(
            f,
            "{} statements replayed, {} skipped, {} diverged",
            self.replayed,
            self.skipped.len(),
            self.diverged.len()
        )
    }
}

/// What one statement did: rows, or an error's SQLSTATE and message.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok(Option<i64>),
    Error(String, String),
}

/// A recorded bind parameter, sent again exactly as it was: the same
/// bytes in the same format, whatever the parameter's type.
#[derive(Debug)]
struct RawParam {
    value: Option<Vec<u8>>,
    binary: bool,
}

impl ToSql for RawParam {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.value {
            None => Ok(IsNull::Yes),
            Some(v) => {
                out.extend_from_slice(v);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        if self.binary {
            Format::Binary
        } else {
            Format::Text
        }
    }

    to_sql_checked!();
}

type Texts = [Option<super::event::Str>];

/// The parameters as recorded: text as is, binary from its `\x` hex.
fn raw_params(values: &Texts, formats: &Texts) -> Option<Vec<RawParam>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let binary = formats.get(i).and_then(|f| f.as_deref()) == Some("binary");
            let value = match v.as_deref() {
                None => None,
                Some(v) if binary => Some(unhex(v.strip_prefix("\\x")?)?),
                Some(v) => Some(v.as_bytes().to_vec()),
            };
            Some(RawParam { value, binary })
        })
        .collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn error_outcome(err: &tokio_postgres::Error) -> Outcome {
    match err.as_db_error() {
        Some(d) => Outcome::Error(d.code().code().to_owned(), d.message().to_owned()),
        None => Outcome::Error(String::new(), err.to_string()),
    }
}

/// A statement sent as a simple Query, as most were.
async fn run_simple(client: &tokio_postgres::Client, sql: &str) -> Outcome {
    match client.simple_query(sql).await {
        Ok(messages) => Outcome::Ok(messages.iter().rev().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n as i64),
            _ => None,
        })),
        Err(e) => error_outcome(&e),
    }
}

/// A statement with parameters, through Parse/Bind/Execute as recorded.
async fn run_extended(client: &tokio_postgres::Client, sql: &str, params: &[RawParam]) -> Outcome {
    let statement = match client.prepare(sql).await {
        Ok(s) => s,
        Err(e) => return error_outcome(&e),
    };
    match client.execute_raw(&statement, params.iter()).await {
        Ok(n) => Outcome::Ok(Some(n as i64)),
        Err(e) => error_outcome(&e),
    }
}

/// Re-executes the session's allowed statements, in order, on `client`.
pub async fn replay(events: &[Event], client: &tokio_postgres::Client) -> ReplayReport {
    let mut report = ReplayReport::default();
    for e in events {
        if e.kind != Kind::Statement || e.decision.as_deref() != Some("allow") {
            continue;
        }
        if e.detail.as_deref() == Some(crate::audit::record::PREPARED) {
            // A Parse ran nothing; its Executes are events of their own.
            continue;
        }
        let recorded = match e.outcome.as_deref() {
            Some("ok") => Outcome::Ok(e.rows),
            Some("error") => Outcome::Error(
                e.sqlstate.as_deref().unwrap_or("").to_owned(),
                e.error_message.as_deref().unwrap_or("").to_owned(),
            ),
            other => {
                report
                    .skipped
                    .push((e.seq, format!("it did not run ({})", other.unwrap_or("?"))));
                continue;
            }
        };
        let sql = e.statement.as_deref().unwrap_or("");
        let classes = e.classes.as_deref().unwrap_or(&[]);
        if classes
            .iter()
            .any(|c| matches!(c.as_deref(), Some("copy_in" | "copy_out")))
        {
            report
                .skipped
                .push((e.seq, "COPY data is not recorded".into()));
            continue;
        }
        let got = match (&e.parameters, &e.parameter_formats) {
            (None, _) if sql.contains('$') && is_parameterized(sql) => {
                report.skipped.push((
                    e.seq,
                    "its bind parameters were not recorded (audit.record_parameters = false)"
                        .into(),
                ));
                continue;
            }
            (Some(values), formats) if !values.is_empty() => {
                let formats = formats.as_deref().unwrap_or(&[]);
                match raw_params(values, formats) {
                    Some(params) => run_extended(client, sql, &params).await,
                    None => {
                        report
                            .skipped
                            .push((e.seq, "its recorded parameters are malformed".into()));
                        continue;
                    }
                }
            }
            _ => run_simple(client, sql).await,
        };
        report.replayed += 1;
        let differs = match (&recorded, &got) {
            // Commands without a row count report 0 through this client.
            (Outcome::Ok(a), Outcome::Ok(b)) => a.is_some() && a != b,
            (Outcome::Error(a, _), Outcome::Error(b, _)) => a != b,
            _ => true,
        };
        if differs {
            let show = |o: &Outcome| match o {
                Outcome::Ok(Some(n)) => format!("{n} rows"),
                Outcome::Ok(None) => "ok".into(),
                Outcome::Error(c, m) => format!("error {c}: {m}"),
            };
            report.diverged.push((
                e.seq,
                sql.to_owned(),
                format!("recorded {}, replay {}", show(&recorded), show(&got)),
            ));
        }
    }
    report
}

/// Whether `sql` uses `$n` parameters outside quotes and dollar quotes.
fn is_parameterized(sql: &str) -> bool {
    // On a stack large enough for however deep the statement nests.
    crate::policy::classify::with_parse(sql, |parsed| {
        parsed
            .map(|p| {
                let json = serde_json::to_string(&p.protobuf).unwrap_or_default();
                json.contains("\"ParamRef\"")
            })
            .unwrap_or(true)
    })
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{list, text};

    #[test]
    fn transcripts_show_decision_outcome_and_error() {
        let mut e = Event::new(Kind::Statement, 1_700_000_000_000_000);
        e.identity = text("agent");
        e.role = text("agent");
        e.statement = text("DELETE\n  FROM orders");
        e.decision = text("deny");
        e.outcome = text("denied");
        e.sqlstate = text("42501");
        e.error_message = text("pgward: permission denied");
        e.classes = list(["write"]);
        let t = transcript(&[e]);
        assert!(
            t.contains("agent as agent  DENY  DELETE FROM orders"),
            "{t}"
        );
        assert!(
            t.contains("-> denied, 42501: pgward: permission denied"),
            "{t}"
        );
    }

    #[test]
    fn transcripts_show_holds_and_their_decisions() {
        let mut req = Event::new(Kind::ApprovalRequest, 1_700_000_000_000_000);
        req.identity = text("bob");
        req.role = text("app");
        req.approval_id = text("7");
        req.statement = text("DROP TABLE t");
        req.detail = text("class ddl needs approval");
        let mut dec = Event::new(Kind::ApprovalDecision, 1_700_000_001_000_000);
        dec.approval_id = text("7");
        dec.outcome = text("denied");
        dec.approver = text("dana");
        dec.detail = text("not today");
        let t = transcript(&[req, dec]);
        assert!(t.contains("bob as app  HOLD  DROP TABLE t"), "{t}");
        assert!(
            t.contains("held for approval as request 7: class ddl needs approval"),
            "{t}"
        );
        assert!(t.contains("request 7 denied by dana: not today"), "{t}");
    }

    #[test]
    fn parameters_are_found_by_the_parser_not_by_a_dollar_sign() {
        assert!(is_parameterized("select * from t where id = $1"));
        assert!(!is_parameterized("select '$1', $$ $2 $$"));
        let texts = |v: &[Option<&str>]| -> Vec<Option<crate::audit::event::Str>> {
            v.iter().map(|s| s.map(Into::into)).collect()
        };
        let params = raw_params(
            &texts(&[Some("\\x0000002a"), Some("x"), None]),
            &texts(&[Some("binary"), Some("text"), Some("text")]),
        )
        .unwrap();
        assert_eq!(params[0].value.as_deref(), Some(&[0, 0, 0, 42][..]));
        assert!(params[0].binary && !params[1].binary);
        assert_eq!(params[1].value.as_deref(), Some(&b"x"[..]));
        assert_eq!(params[2].value, None);
        assert!(raw_params(&texts(&[Some("\\xzz")]), &texts(&[Some("binary")])).is_none());
    }
}
