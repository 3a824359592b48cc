//! One writer per instance name: the running instance holds an exclusive
//! lock on `wal/<instance>.lock`. A second process under the same name
//! would convert the first one's live segment at its start and fork the
//! chain, so it is refused instead.
//!
//! The file's content also tells whether the last holder closed its log:
//! a run writes who it is into it and empties it after its last file is
//! in place, so a run that crashed (or was killed) leaves it non-empty.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

pub struct InstanceLock {
    file: Flock<File>,
    path: PathBuf,
}

/// The lock, and what the previous holder wrote if it did not close.
pub type Acquired = (InstanceLock, Option<String>);

impl InstanceLock {
    /// Takes the lock of `instance` in `wal_dir`, or says who holds it.
    pub fn acquire(wal_dir: &Path, instance: &str, started: &str) -> Result<Acquired, String> {
        let path = wal_dir.join(format!("{instance}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let holder = read_all(&mut file).unwrap_or_default();
                return Err(format!(
                    "audit instance {instance:?} is already writing to {} ({}; it holds {}): give each pgward its own audit.instance",
                    wal_dir.parent().unwrap_or(wal_dir).display(),
                    if holder.is_empty() { "another process" } else { holder.trim() },
                    path.display()
                ));
            }
            Err((_, e)) => return Err(format!("locking {}: {e}", path.display())),
        };
        let previous =
            read_all(&mut file).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut lock = InstanceLock { file, path };
        lock.write(started)?;
        let unclosed = previous.trim();
        Ok((lock, (!unclosed.is_empty()).then(|| unclosed.to_owned())))
    }

    /// Records that this run closed its log: the next start finds the
    /// file empty. The lock itself goes when the value is dropped.
    pub fn closed(mut self) -> Result<(), String> {
        self.write("")
    }

    fn write(&mut self, content: &str) -> Result<(), String> {
        let f: &mut File = &mut self.file;
        f.set_len(0)
            .and_then(|()| f.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| f.write_all(content.as_bytes()))
            .and_then(|()| f.sync_data())
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }
}

fn read_all(file: &mut File) -> std::io::Result<String> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.take(4096).read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_an_unclosed_run_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (first, previous) = InstanceLock::acquire(dir.path(), "a", "pid 1").unwrap();
        assert_eq!(previous, None, "a fresh directory has no previous run");
        let refused = match InstanceLock::acquire(dir.path(), "a", "pid 2") {
            Err(e) => e,
            Ok(_) => panic!("two holders of one instance"),
        };
        assert!(
            refused.contains("already writing") && refused.contains("pid 1"),
            "{refused}"
        );
        // Another instance name is independent.
        let (_other, _) = InstanceLock::acquire(dir.path(), "b", "pid 3").unwrap();
        // Dropped without `closed`: what a crash leaves.
        drop(first);
        let (second, previous) = InstanceLock::acquire(dir.path(), "a", "pid 4").unwrap();
        assert_eq!(previous.as_deref(), Some("pid 1"));
        second.closed().unwrap();
        let (_third, previous) = InstanceLock::acquire(dir.path(), "a", "pid 5").unwrap();
        assert_eq!(previous, None, "the second run closed its log");
    }
}
