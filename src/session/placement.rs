//! Which CPU a session's two relay threads run on. Both threads of one
//! session share a CPU: they take turns (request, then response), so the
//! session's state stays in one core's cache and the kernel does not move
//! the threads between cores on every wake-up. Sessions go to the CPU with
//! the fewest of pgward's sessions, among those the process may use.
//!
//! Measured on the 2-core benchmark machine with pgbench -S at one client:
//! unpinned, the two threads migrated 0.9 times per transaction (the async
//! relay 0.004) and relayed 2-5% fewer transactions than PgBouncer; pinned,
//! at parity or above (docs/architecture.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs pgward may use and how many sessions each has now.
struct Cpus {
    ids: Vec<usize>,
    sessions: Vec<AtomicUsize>,
}

static CPUS: OnceLock<Option<Arc<Cpus>>> = OnceLock::new();

/// The CPUs this process may run on, when there is a choice: with one,
/// placement has nothing to decide.
fn cpus() -> Option<Arc<Cpus>> {
    CPUS.get_or_init(|| {
        let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
        let ids: Vec<usize> = (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect();
        (ids.len() > 1).then(|| {
            Arc::new(Cpus {
                sessions: ids.iter().map(|_| AtomicUsize::new(0)).collect(),
                ids,
            })
        })
    })
    .clone()
}

/// The index of the least loaded of `loads` (the first of equals).
fn least_loaded(loads: impl Iterator<Item = usize>) -> Option<usize> {
    loads
        .enumerate()
        .min_by_key(|&(i, load)| (load, i))
        .map(|(i, _)| i)
}

/// A session's CPU, counted as in use until dropped.
pub struct Seat {
    cpus: Arc<Cpus>,
    slot: usize,
}

impl Seat {
    /// The least loaded CPU, or `None` when the process may use only one.
    pub fn take() -> Option<Seat> {
        let cpus = cpus()?;
        // Two sessions starting at once may pick the same CPU; the count
        // stays right and the next ones even it out.
        let slot = least_loaded(cpus.sessions.iter().map(|n| n.load(Ordering::Relaxed)))?;
        cpus.sessions[slot].fetch_add(1, Ordering::Relaxed);
        Some(Seat { cpus, slot })
    }

    pub fn cpu(&self) -> usize {
        self.cpus.ids[self.slot]
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.cpus.sessions[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Binds the calling thread to `cpu`. Failing (a cgroup changed the
/// process's CPUs since) leaves the thread unbound: the session is relayed
/// all the same.
pub fn bind_current_thread(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = sched_setaffinity(Pid::from_raw(0), &set) {
            tracing::debug!("cannot bind a session thread to CPU {cpu}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_cpu_and_the_first_of_equals() {
        assert_eq!(least_loaded([3, 1, 2].into_iter()), Some(1));
        assert_eq!(least_loaded([2, 0, 0].into_iter()), Some(1));
        assert_eq!(least_loaded([0, 0].into_iter()), Some(0));
        assert_eq!(least_loaded(std::iter::empty()), None);
    }

    #[test]
    fn seats_spread_over_the_cpus_and_are_given_back() {
        let Some(cpus) = cpus() else {
            return; // one CPU: nothing to place
        };
        let loads = || -> Vec<usize> {
            cpus.sessions
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect()
        };
        let before = loads();
        let seats: Vec<Seat> = (0..cpus.ids.len()).filter_map(|_| Seat::take()).collect();
        assert_eq!(seats.len(), cpus.ids.len());
        if before.iter().all(|&n| n == before[0]) {
            // Evenly loaded: one seat on each CPU.
            let mut on: Vec<usize> = seats.iter().map(Seat::cpu).collect();
            on.sort_unstable();
            on.dedup();
            assert_eq!(on, cpus.ids);
        }
        let total = || loads().iter().sum::<usize>();
        let before_total: usize = before.iter().sum();
        assert_eq!(total(), before_total + seats.len());
        drop(seats);
        assert_eq!(total(), before_total);
    }
}
