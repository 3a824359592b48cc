//! The PostgreSQL wire protocol as pgward sees it: framing with size caps,
//! first packets, message tags (`tag`), borrowed views of the messages
//! pgward reads (`frontend`, `backend`), and encoders for those it
//! originates (`encode`).

pub mod backend;
pub mod encode;
pub mod encoding;
pub mod frame;
pub mod frontend;
pub mod messages;
pub mod startup;
pub mod tag;

pub use frame::{check, Frame, FrameError};
pub use messages::{sqlstate, PgError, Severity};
