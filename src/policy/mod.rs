//! The policy engine: statement classification with PostgreSQL's own
//! parser, roles, and the decision for each statement.

pub mod body;
pub mod builtins;
pub mod catalog;
pub mod class;
pub mod classify;
pub mod ddl;
pub mod decide;
pub mod explain;
pub mod params;
pub mod role;
pub mod settings;
pub mod shape;
pub mod stack;
pub mod tree;

pub use catalog::{Catalog, CatalogSlot, CatalogStore};
pub use class::{Class, ClassSet};
pub use classify::{Analysis, Lexer, Statement, TxControl};
pub use decide::{decide, Denial, Verdict};
pub use role::Role;

/// A multi-threaded tokio runtime whose threads can classify most SQL in
/// place (their stacks are `stack::THREAD_STACK` bytes).
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_stack_size(stack::THREAD_STACK);
    b
}
