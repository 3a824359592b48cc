//! The policy engine: statement classification with PostgreSQL's own
//! parser, roles, and the decision for each statement.

pub mod builtins;
pub mod catalog;
pub mod class;
pub mod classify;
pub mod decide;
pub mod explain;
pub mod role;
pub mod settings;

pub use catalog::{Catalog, CatalogSlot, CatalogStore};
pub use class::{Class, ClassSet};
pub use classify::{Analysis, Statement};
pub use decide::{decide, Denial, Verdict};
pub use role::Role;
