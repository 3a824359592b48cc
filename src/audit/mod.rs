//! The audit log: every session and every statement, with the decision
//! and what happened, chained by hashes and written to Parquet files that
//! auditors query with their own tools. Schema: `docs/audit.md`.

pub mod event;
pub mod files;
mod lock;
pub mod record;
pub mod replay;
pub mod schema;
pub mod verify;
pub mod wal;
pub mod writer;

pub use event::{Event, Kind};
pub use writer::{now_us, AuditLog};
