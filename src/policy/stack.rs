//! Stack for parsing and classifying SQL.
//!
//! Parse trees nest as deep as the SQL does (`1+1+...`, `+++1`, nested
//! sub-selects), and decoding, converting, walking and dropping them all
//! recurse. Decoding dominates: pg_query's prost-generated `Node::merge`
//! alone has a 45 KiB frame, and each level of the tree takes one, so
//! about 50 KiB of stack per level (measured, debug and release builds
//! alike: pg_query is always built optimised). libpg_query refuses to hand
//! over more than 10,000 protobuf levels (two per tree level), so the
//! deepest tree pgward can meet takes about 250 MB of stack.
//!
//! A stack overflow would abort the whole process, every session with it,
//! so every parse runs on a stack known to be large enough for its text:
//! the current thread's, when enough of it is left (measured, not
//! assumed), else a helper thread's sized for the text. Short statements,
//! the common case, classify in place on the 64 MiB session threads.

/// Stack the long-lived threads that classify in place get (runtime and
/// session threads): statements up to a few hundred bytes, the common
/// case, fit on it; longer ones get a helper thread (see `on`).
pub const THREAD_STACK: usize = 64 << 20;

/// Stack per level of parse-tree nesting, with a margin over the 50 KiB
/// measured.
const PER_LEVEL: usize = 56 << 10;

/// libpg_query's own parser and serializer check their depth against up to
/// 2 MB of stack, plus 512 KiB of slop; the rest is room for the caller.
const PARSER: usize = 4 << 20;

/// The deepest tree libpg_query hands over: 10,000 protobuf message
/// levels (`PG_QUERY_PROTOBUF_MAX_DEPTH`), two per tree level.
const MAX_LEVELS: usize = 5_000;

/// Kept free below what a parse is given: the guard page and what runs
/// between the check and the parse.
const MARGIN: usize = 256 << 10;

/// Stack enough to parse and classify `len` bytes of SQL. A tree level
/// takes at least a byte of text (`+++1` and `ARRAY[[[1]]]` nest once per
/// byte; sub-selects, three levels per `(SELECT `), so two levels per byte
/// bound it with room to spare, and libpg_query's limit bounds long texts.
pub fn for_sql(len: usize) -> usize {
    PARSER + PER_LEVEL * len.saturating_mul(2).saturating_add(16).min(MAX_LEVELS)
}

/// A thread with stack enough for `need` (see `for_sql`).
pub fn thread(need: usize) -> std::thread::Builder {
    std::thread::Builder::new()
        .name("pgward-classify".into())
        .stack_size(need.saturating_add(MARGIN).max(THREAD_STACK))
}

/// Runs `f` with at least `need` bytes of stack: on this thread when it has
/// that much left, else on a helper thread with enough.
pub fn on<R: Send>(need: usize, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    if left().is_some_and(|left| left >= need.saturating_add(MARGIN)) {
        return Ok(f());
    }
    std::thread::scope(|scope| {
        thread(need)
            .spawn_scoped(scope, f)
            .map_err(|e| format!("cannot start a classifier thread: {e}"))?
            .join()
            .map_err(|_| "the classifier failed".to_string())
    })
}

thread_local! {
    /// The lowest usable address of this thread's stack (0: not known yet).
    static LOW: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Bytes of stack left below this point on the current thread, if known.
pub fn left() -> Option<usize> {
    let here = 0u8;
    let here = std::hint::black_box(&here) as *const u8 as usize;
    let low = LOW.with(|l| {
        if l.get() == 0 {
            l.set(lowest_address().unwrap_or(usize::MAX));
        }
        l.get()
    });
    here.checked_sub(low)
}

/// The lowest address of the current thread's stack above its guard page.
#[cfg(target_os = "linux")]
fn lowest_address() -> Option<usize> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread, which
    // is destroyed after use; pthread_attr_getstack only reads it.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got == 0 && !addr.is_null()).then_some(addr as usize)
    }
}

/// Elsewhere the stack's extent is not looked up: every parse gets a
/// helper thread.
#[cfg(not(target_os = "linux"))]
fn lowest_address() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_stack_left() {
        let sizes = [THREAD_STACK, 300 << 20];
        for size in sizes {
            let left = std::thread::Builder::new()
                .stack_size(size)
                .spawn(left)
                .unwrap()
                .join()
                .unwrap()
                .expect("known on Linux");
            assert!(left <= size && left > size - (1 << 20), "{left} of {size}");
        }
        // Deeper in, less is left.
        fn down(n: usize) -> usize {
            let pad = std::hint::black_box([0u8; 4096]);
            if n == 0 {
                left().unwrap() + pad[0] as usize
            } else {
                down(n - 1)
            }
        }
        let shallow = left().unwrap();
        assert!(down(16) + 16 * 4096 <= shallow);
    }

    #[test]
    fn runs_where_the_stack_suffices() {
        let main = std::thread::current().id();
        // A little: here.
        assert_eq!(on(1 << 10, || std::thread::current().id()).unwrap(), main);
        // More than a test thread has: a helper with enough.
        let (id, left) = on(for_sql(10_000), || (std::thread::current().id(), left())).unwrap();
        assert_ne!(id, main);
        assert!(left.unwrap() >= for_sql(10_000));
        // Long texts are bounded by libpg_query's limit.
        assert_eq!(for_sql(10_000), for_sql(usize::MAX));
        assert!(for_sql(10_000) < 300 << 20);
    }
}
