//! What a session hands the audit writer. A statement's event travels in a
//! compact form: what is the same for every statement of the session (who,
//! which role) and of one cached classification (fingerprint, classes,
//! tables) is shared behind one reference each, and the writer expands it
//! into a full `Event`. A 656-byte `Event` built and copied per statement
//! on the session thread cost more than the rest of the recording.

use std::sync::Arc;

use super::event::{lit, Event, Kind, List, Str, Text};

/// The detail of a Parse's event: the statement was prepared (its classes
/// and tables are on record), not run.
pub const PREPARED: &str = "prepared (Parse)";

/// Who a session is: the same in each of its statement events.
#[derive(Debug)]
pub struct SessionContext {
    pub session_id: Text,
    pub identity: Text,
    pub role: Text,
    pub database: Text,
    /// The rule of an allowed statement ("role analyst: allowed").
    pub allow_rule: Text,
    /// The session's share of the writer's queue.
    pub quota: super::writer::Quota,
}

impl SessionContext {
    /// A new event of the session, saying whose it is.
    pub fn event(&self, kind: Kind, time_us: i64) -> Event {
        let mut e = Event::new(kind, time_us);
        self.stamp(&mut e);
        e
    }

    fn stamp(&self, e: &mut Event) {
        e.session_id = self.session_id.clone();
        e.identity = self.identity.clone();
        e.role = self.role.clone();
        e.database = self.database.clone();
    }
}

/// What the audit log says about a classified statement.
#[derive(Debug)]
pub struct Described {
    pub fingerprint: Text,
    pub classes: List,
    pub tables: List,
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
    /// Skipped: an earlier statement of its message or pipeline failed.
    NotRun,
    /// The session ended before the statement finished.
    Interrupted,
    /// pgward refused it.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::NotRun => "not_run",
            Outcome::Interrupted => "interrupted",
            Outcome::Denied => "denied",
        }
    }
}

/// The error of a statement that failed or was denied.
#[derive(Debug)]
pub struct Failure {
    pub sqlstate: Text,
    pub message: Text,
    /// For a denial: the rule that denied it.
    pub rule: Text,
}

/// One statement event as a session records it.
#[derive(Debug)]
pub struct StatementRecord {
    pub time_us: i64,
    pub session: Arc<SessionContext>,
    /// The text as the client sent it.
    pub statement: Str,
    pub described: Option<Arc<Described>>,
    pub outcome: Outcome,
    pub detail: Option<&'static str>,
    pub rows: Option<i64>,
    pub duration_us: Option<i64>,
    pub failure: Option<Box<Failure>>,
    /// Bind parameters and their formats, when the config asks for them.
    pub parameters: Option<Box<(List, List)>>,
    /// The approval it ran under: request id and approvers.
    pub approval: Option<Arc<(Str, Str)>>,
}

impl StatementRecord {
    /// The full event (its chain fields still unset).
    pub fn into_event(self) -> Event {
        let mut e = Event::new(Kind::Statement, self.time_us);
        self.fill(&mut e);
        e
    }

    /// Fills `e`, a new statement event, in place: an event is too big to
    /// build here and move into the writer's batch.
    pub fn fill(self, e: &mut Event) {
        e.time_us = self.time_us;
        let s = &*self.session;
        s.stamp(e);
        e.statement = Some(self.statement);
        if let Some(d) = self.described.as_deref() {
            e.fingerprint = d.fingerprint.clone();
            e.classes = d.classes.clone();
            e.tables = d.tables.clone();
        }
        e.outcome = lit(self.outcome.as_str());
        e.detail = self.detail.map(Str::Static);
        e.rows = self.rows;
        e.duration_us = self.duration_us;
        if self.outcome == Outcome::Denied {
            e.decision = lit("deny");
        } else {
            e.decision = lit("allow");
            e.rule = s.allow_rule.clone();
        }
        if let Some(f) = self.failure {
            let Failure {
                sqlstate,
                message,
                rule,
            } = *f;
            e.sqlstate = sqlstate;
            e.error_message = message;
            if self.outcome == Outcome::Denied {
                e.rule = rule;
            }
        }
        if let Some(p) = self.parameters {
            (e.parameters, e.parameter_formats) = *p;
        }
        if let Some(a) = self.approval {
            e.approval_id = Some(a.0.clone());
            e.approver = Some(a.1.clone());
        }
    }
}

/// An entry of the writer's queue.
pub enum Record {
    Event(Box<Event>),
    Statement(StatementRecord),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{list, static_list, text};

    fn session() -> Arc<SessionContext> {
        Arc::new(SessionContext {
            session_id: text("00ff"),
            identity: text("alice"),
            role: text("analyst"),
            database: text("shop"),
            allow_rule: text("role analyst: allowed"),
            quota: Default::default(),
        })
    }

    fn record(outcome: Outcome) -> StatementRecord {
        StatementRecord {
            time_us: 42,
            session: session(),
            statement: Str::Static("SELECT 1"),
            described: Some(Arc::new(Described {
                fingerprint: text("f00d"),
                classes: static_list(["read"]),
                tables: list(["public.t"]),
            })),
            outcome,
            detail: None,
            rows: Some(1),
            duration_us: Some(7),
            failure: None,
            parameters: None,
            approval: None,
        }
    }

    #[test]
    fn an_allowed_statement_expands_with_its_session_and_description() {
        let e = record(Outcome::Ok).into_event();
        assert_eq!(e.kind, Kind::Statement);
        assert_eq!(e.time_us, 42);
        assert_eq!(e.session_id.as_deref(), Some("00ff"));
        assert_eq!(e.identity.as_deref(), Some("alice"));
        assert_eq!(e.role.as_deref(), Some("analyst"));
        assert_eq!(e.database.as_deref(), Some("shop"));
        assert_eq!(e.statement.as_deref(), Some("SELECT 1"));
        assert_eq!(e.fingerprint.as_deref(), Some("f00d"));
        assert_eq!(e.tables.as_deref().map(|t| t.len()), Some(1));
        assert_eq!(e.decision.as_deref(), Some("allow"));
        assert_eq!(e.rule.as_deref(), Some("role analyst: allowed"));
        assert_eq!(e.outcome.as_deref(), Some("ok"));
        assert_eq!((e.rows, e.duration_us), (Some(1), Some(7)));
        assert_eq!(e.sqlstate, None);
    }

    #[test]
    fn a_queue_slot_stays_small() {
        // The queue's memory is slots times this; sessions write a slot per
        // statement. A full `Event` is over 600 bytes.
        assert!(std::mem::size_of::<Record>() <= 128);
        assert!(std::mem::size_of::<Event>() > 4 * std::mem::size_of::<Record>());
    }

    #[test]
    fn a_denial_carries_its_rule_and_error_and_an_error_keeps_the_allow_rule() {
        let failure = || {
            Some(Box::new(Failure {
                sqlstate: text("42501"),
                message: text("pgward: no"),
                rule: text("role analyst: class write is not allowed"),
            }))
        };
        let mut denied = record(Outcome::Denied);
        denied.failure = failure();
        let e = denied.into_event();
        assert_eq!(e.decision.as_deref(), Some("deny"));
        assert_eq!(
            e.rule.as_deref(),
            Some("role analyst: class write is not allowed")
        );
        assert_eq!(e.outcome.as_deref(), Some("denied"));
        assert_eq!(e.sqlstate.as_deref(), Some("42501"));

        let mut failed = record(Outcome::Error);
        failed.failure = failure();
        let e = failed.into_event();
        assert_eq!(e.decision.as_deref(), Some("allow"));
        assert_eq!(e.rule.as_deref(), Some("role analyst: allowed"));
        assert_eq!(e.error_message.as_deref(), Some("pgward: no"));
    }
}
