//! `approve_commit`: a role's changes run at once inside a transaction
//! block, invisible to other sessions, and the block's COMMIT waits for an
//! approver who sees each of them. A change outside a block (which would
//! commit by itself) or one whose effect does not wait for COMMIT (a file
//! written, a setting of the server, anything pgward cannot classify) is
//! held before it runs, as `approve` classes are.
//!
//! What is in a block is followed from the server's ReadyForQuery and the
//! statements pgward lets through: a statement that may end the block
//! (COMMIT, ROLLBACK, PREPARE TRANSACTION) makes every later change count
//! as outside one until the server is idle again, so a pipeline cannot run
//! a change after a COMMIT as if it were still inside the block. A COMMIT
//! is reviewed whenever changes were listed, whether or not the block is
//! known to be open, and a failed block counts as failed only until a
//! transaction statement is sent (`ROLLBACK TO SAVEPOINT` revives it).

use std::sync::Arc;

use crate::policy::decide::{Denial, Verdict};
use crate::policy::{Class, Statement, TxControl};

/// The most changes listed for one COMMIT; each further change of the
/// block is held before it runs.
const MAX_LISTED: usize = 100;

/// What the open block changed, as judged.
#[derive(Debug, Default)]
pub struct Block {
    /// Texts of the changes let through in the open block, in order.
    changes: Vec<Arc<str>>,
    /// Changes beyond `MAX_LISTED`, each approved before it ran.
    more: usize,
    /// A statement that may end the block was let through since the
    /// server was last idle.
    may_end: bool,
    /// A transaction statement was let through that the server has not
    /// answered yet: `ROLLBACK TO SAVEPOINT` revives a failed block, so
    /// its status is not known until then.
    tx_sent: bool,
}

/// What one message does to the block, applied if it passes.
#[derive(Debug, Default)]
pub struct Step {
    changes: Vec<Arc<str>>,
    /// Changes past `MAX_LISTED`, each approved before it ran.
    approved_apart: usize,
    ends: bool,
    tx: bool,
}

impl Step {
    /// Both steps: an Execute whose portal may run one of several
    /// statements does what any of them does.
    pub fn merge(&mut self, other: Step) {
        self.changes.extend(other.changes);
        self.approved_apart += other.approved_apart;
        self.ends |= other.ends;
        self.tx |= other.tx;
    }
}

/// Classes whose effects are undone by ROLLBACK: they may wait for COMMIT.
fn deferrable(c: Class) -> bool {
    matches!(c, Class::Write | Class::Ddl | Class::Dcl | Class::CopyIn)
}

/// Classes whose effects take place at once, whatever the block does.
fn immediate(c: Class) -> bool {
    matches!(c, Class::Admin | Class::FileOrProgram | Class::Unknown)
}

impl Block {
    /// Turns the verdicts of a message's statements for a role with
    /// `approve_commit`: a COMMIT of a block that changed something needs
    /// approval, and so does a change that would not wait for one.
    /// `sql` is the message's text as shown; `tx_status` is the server's
    /// at its last ReadyForQuery.
    pub fn review(
        &self,
        statements: &[Statement],
        sql: Option<&str>,
        verdicts: &mut [Verdict],
        tx_status: u8,
    ) -> Step {
        // In a failed block every statement fails and COMMIT rolls back;
        // but any transaction statement may change that (`ROLLBACK TO
        // SAVEPOINT` revives the block with the changes made before the
        // savepoint), so a block is known failed only until one is sent.
        let mut failed = tx_status == b'E' && !self.tx_sent;
        let mut in_block = (tx_status == b'T' || tx_status == b'E') && !self.may_end;
        let mut step = Step::default();
        for (st, verdict) in statements.iter().zip(verdicts.iter_mut()) {
            let was_failed = failed;
            if st.tx.is_some() {
                failed = false;
                step.tx = true;
            }
            match st.tx {
                Some(TxControl::Begin) => in_block = true,
                Some(TxControl::Commit) => {
                    // Whether or not pgward knows the block to be open (a
                    // pipelined message may have begun it unanswered), a
                    // COMMIT after listed changes commits them.
                    let changed = !self.changes.is_empty() || !step.changes.is_empty();
                    if !was_failed && changed && matches!(verdict, Verdict::Allow) {
                        *verdict = Verdict::NeedsApproval(denial(
                            Class::Transaction,
                            "its COMMIT waits for an approver who reviews what the transaction changed",
                        ));
                    }
                    in_block = false;
                    step.ends = true;
                }
                Some(TxControl::Rollback) => {
                    in_block = false;
                    step.ends = true;
                }
                Some(TxControl::Other) | None => {}
            }
            if !matches!(verdict, Verdict::Allow) {
                continue;
            }
            let classes = st.classes();
            if let Some(c) = classes.iter().find(|c| immediate(*c)) {
                *verdict = Verdict::NeedsApproval(denial(
                    c,
                    "its effect does not wait for COMMIT, so it is held before it runs",
                ));
            } else if st.executes.is_some() || classes.iter().any(deferrable) {
                if in_block && self.changes.len() + step.changes.len() >= MAX_LISTED {
                    // A COMMIT's request could not show it: asked for now.
                    step.approved_apart += 1;
                    *verdict = Verdict::NeedsApproval(denial(
                        classes.iter().find(|c| deferrable(*c)).unwrap_or(Class::Write),
                        "the block already lists 100 changes for its COMMIT, so each further one is held before it runs",
                    ));
                } else if in_block {
                    // As the client sent it (an Execute's with its values).
                    let text = match (sql, statements.len()) {
                        (Some(sql), 1) => sql,
                        _ => st.text.as_str(),
                    };
                    step.changes.push(text.into());
                } else {
                    let c = classes
                        .iter()
                        .find(|c| deferrable(*c))
                        .unwrap_or(Class::Write);
                    *verdict = Verdict::NeedsApproval(denial(
                        c,
                        "outside a transaction block it would commit at once, so it is held before it runs (BEGIN first to have the changes reviewed at COMMIT)",
                    ));
                }
            }
        }
        step
    }

    /// The message judged with `step` passed.
    pub fn apply(&mut self, step: Step) {
        self.changes.extend(step.changes);
        self.more += step.approved_apart;
        self.may_end |= step.ends;
        self.tx_sent |= step.tx;
    }

    /// The server said ReadyForQuery with `status`; `settled` when nothing
    /// else is owed. Only a settled server outside a block ends what is
    /// known of the block: a pipelined message may already have begun
    /// another. (A block that went on after a COMMIT AND CHAIN keeps
    /// `may_end`: its changes are held one by one.)
    pub fn on_ready(&mut self, status: u8, settled: bool) {
        if settled && status == b'I' {
            *self = Block::default();
        } else if settled {
            self.tx_sent = false;
        }
    }

    /// Appends to a COMMIT's text what it commits: the block's changes and
    /// those of its own message (`step`).
    pub fn list(&self, step: Option<&Step>, out: &mut String) {
        use std::fmt::Write;
        out.push_str("  <== commits a transaction that ran:");
        let own = step.map_or(&[][..], |s| &s.changes[..]);
        for (i, c) in self.changes.iter().chain(own).enumerate() {
            let _ = write!(out, " [{}] {};", i + 1, c.trim().trim_end_matches(';'));
        }
        if self.more > 0 {
            let _ = write!(
                out,
                " and {} more changes, each approved before it ran",
                self.more
            );
        }
    }
}

fn denial(class: Class, why: &str) -> Denial {
    Denial {
        class,
        why: format!("role approves commits: {why}"),
        rule: "approve_commit".into(),
        subject: None,
    }
}
