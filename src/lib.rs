//! pgward: a PostgreSQL wire-protocol firewall.
//!
//! Clients connect to pgward as if it were PostgreSQL; pgward authenticates
//! them with its own identities, connects upstream with credentials only it
//! holds, and relays the protocol. See `docs/architecture.md`.

pub mod approval;
pub mod audit;
pub mod auth;
pub mod cancel;
pub mod config;
pub mod console;
pub mod demo;
pub mod localpg;
pub mod mask;
pub mod net;
pub mod policy;
pub mod privileges;
pub mod protocol;
pub mod risk;
pub mod rules;
pub mod server;
pub mod session;
pub mod timer;
pub mod tls;
pub mod upstream;
pub mod webhook;
pub mod workers;

/// Sessions allocate what the audit writer frees (statement texts, events)
/// on another thread; glibc's malloc serves that pattern poorly (arena
/// locks, memory that returns to the freeing thread). mimalloc frees to
/// the owning thread's page without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same number in its v2 and v3
/// `mimalloc.h`, which `libmimalloc-sys` builds).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// Keeps freed memory for reuse instead of returning it to the OS, as
/// PgBouncer keeps its freed objects. By default mimalloc gives pages back
/// 10 ms after they empty: the audit writer's batches empty and refill
/// theirs every few seconds, and each give-back (madvise) interrupts every
/// core running a pgward thread to flush its TLB, then the pages fault back
/// in. On the 2-core benchmark machine, with audit on, this cost 5-12% of
/// pgbench -S TPS at 8 clients (5 of 5 paired runs); the price is that RSS
/// stays at its peak (143 MB against 94 MB there). `MIMALLOC_PURGE_DELAY`
/// (milliseconds) still overrides it.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: plain setter of a mimalloc option; any value is valid.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

/// The purge delay mimalloc uses now, in milliseconds (-1: never).
pub fn allocator_purge_delay() -> i64 {
    // SAFETY: plain getter of a mimalloc option.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_is_kept_unless_the_environment_says_otherwise() {
        super::keep_freed_memory();
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        assert_eq!(super::allocator_purge_delay(), expected);
    }
}
