//! The PostgreSQL wire protocol as pgward sees it: framing with size caps,
//! first packets, and the few messages pgward decodes or originates.

pub mod encoding;
pub mod frame;
pub mod messages;
pub mod startup;

pub use frame::{check, Frame, FrameError};
pub use messages::{sqlstate, PgError, Severity};
