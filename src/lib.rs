//! pgward: a PostgreSQL wire-protocol firewall.
//!
//! Clients connect to pgward as if it were PostgreSQL; pgward authenticates
//! them with its own identities, connects upstream with credentials only it
//! holds, and relays the protocol. See `docs/architecture.md`.

pub mod audit;
pub mod auth;
pub mod cancel;
pub mod config;
pub mod demo;
pub mod localpg;
pub mod net;
pub mod policy;
pub mod protocol;
pub mod rules;
pub mod server;
pub mod session;
pub mod tls;
pub mod upstream;
pub mod workers;

/// Sessions allocate what the audit writer frees (statement texts, events)
/// on another thread; glibc's malloc serves that pattern poorly (arena
/// locks, memory that returns to the freeing thread). mimalloc frees to
/// the owning thread's page without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
