//! `pgward audit verify`: checks every file and every row of an audit
//! directory against the hash chain, and says what was done to it.
//!
//! Each instance's events form one chain: event n carries the hash of
//! event n-1 and its own hash over its content. So an edited row no longer
//! matches its hash; a deleted row leaves a hole in the numbering and a
//! broken link; an inserted row has a number already taken or a link that
//! fits nothing; reordered rows come out of order; and a missing file shows
//! as a hole at a file boundary, where the next file's recorded chain start
//! matches no file present.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::event::{hex, Event, Hash, GENESIS};
use super::files;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Unreadable {
        file: PathBuf,
        why: String,
    },
    /// The row's content does not match its hash.
    Modified {
        file: PathBuf,
        row: usize,
        seq: u64,
    },
    /// Rows `first..=last` are gone from within a file or across files.
    Deleted {
        file: PathBuf,
        row: usize,
        first: u64,
        last: u64,
    },
    /// A row that is not part of the chain (its number is taken or out of
    /// range, or it links to nothing).
    Inserted {
        file: PathBuf,
        row: usize,
        seq: u64,
    },
    /// A row out of order.
    Reordered {
        file: PathBuf,
        row: usize,
        seq: u64,
    },
    /// The event does not carry its predecessor's hash: the row before it
    /// was replaced, or its hash recomputed after an edit.
    BrokenLink {
        file: PathBuf,
        row: usize,
        seq: u64,
    },
    /// A whole file is missing: events `first..=last` would be in it.
    MissingFile {
        before: PathBuf,
        first: u64,
        last: u64,
    },
    /// The file's metadata disagrees with its rows.
    BadMetadata {
        file: PathBuf,
        why: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |p: &PathBuf| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        match self {
            Problem::Unreadable { file, why } => write!(f, "{}: unreadable: {why}", name(file)),
            Problem::Modified { file, row, seq } => {
                write!(f, "{} row {row}: modified (event {seq} does not match its hash)", name(file))
            }
            Problem::Deleted { file, row, first, last } => {
                let n = last.saturating_sub(*first).saturating_add(1);
                write!(f, "{} row {row}: {n} row(s) deleted before it (events {first}..={last})", name(file))
            }
            Problem::Inserted { file, row, seq } => {
                write!(f, "{} row {row}: inserted (a second event {seq}, or one that is not part of the chain)", name(file))
            }
            Problem::BrokenLink { file, row, seq } => write!(
                f,
                "{} row {row}: event {seq} does not link to the event before it (that one was replaced, or re-hashed after an edit)",
                name(file)
            ),
            Problem::Reordered { file, row, seq } => {
                write!(f, "{} row {row}: reordered (event {seq} is out of place)", name(file))
            }
            Problem::MissingFile { before, first, last } => write!(
                f,
                "a file is missing before {} (events {first}..={last})",
                name(before)
            ),
            Problem::BadMetadata { file, why } => write!(f, "{}: metadata: {why}", name(file)),
        }
    }
}

/// What verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub events: u64,
    /// Per instance: first and last event number seen and the chain head.
    pub chains: BTreeMap<String, (u64, u64, Hash)>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "FAIL {p}")?;
        }
        for (instance, (first, last, head)) in &self.chains {
            writeln!(
                f,
                "instance {instance}: events {first}..={last}, chain head {}",
                hex(head)
            )?;
        }
        if self.ok() {
            write!(
                f,
                "OK: {} files, {} events, every hash and link checks",
                self.files, self.events
            )
        } else {
            write!(
                f,
                "FAILED: {} problem(s) in {} files",
                self.problems.len(),
                self.files
            )
        }
    }
}

/// One instance's files (with their metadata) and rows.
type Instance = (Vec<(PathBuf, files::FileMeta)>, Vec<Row>);

struct Row {
    file: usize,
    row: usize,
    event: Event,
}

/// Verifies every audit file in `dir`.
pub fn verify(dir: &Path) -> Result<Report, String> {
    let paths = files::list(dir)?;
    let mut report = Report {
        files: paths.len(),
        ..Report::default()
    };
    // Per instance: its files (with metadata) and rows, in file order.
    let mut instances: BTreeMap<String, Instance> = BTreeMap::new();
    for path in &paths {
        match files::read(path) {
            Err(why) => report.problems.push(Problem::Unreadable {
                file: path.clone(),
                why,
            }),
            Ok((meta, events)) => {
                report.events += events.len() as u64;
                let entry = instances.entry(meta.instance.clone()).or_default();
                let file = entry.0.len();
                entry
                    .1
                    .extend(events.into_iter().enumerate().map(|(row, event)| Row {
                        file,
                        row,
                        event,
                    }));
                entry.0.push((path.clone(), meta));
            }
        }
    }
    for (instance, (files, mut rows)) in instances {
        check_chain(&files, &mut rows, &mut report.problems);
        if let (Some(first), Some(last)) = (rows.first(), rows.iter().max_by_key(|r| r.event.seq)) {
            report
                .chains
                .insert(instance, (first.event.seq, last.event.seq, last.event.hash));
        }
    }
    Ok(report)
}

fn check_chain(
    files: &[(PathBuf, files::FileMeta)],
    rows: &mut [Row],
    problems: &mut Vec<Problem>,
) {
    let mut scratch = Vec::new();
    // Files in the order of the first event each claims, rows in file order.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| (files[i].1.first_seq, i));
    let mut rank = vec![0; files.len()];
    for (pos, &i) in order.iter().enumerate() {
        rank[i] = pos;
    }
    rows.sort_by_key(|r| (rank[r.file], r.row));
    let at = |r: &Row| (files[r.file].0.clone(), r.row, r.event.seq);

    // 1. Content: every row must match its own hash.
    for r in rows.iter() {
        if r.event.compute_hash(&mut scratch) != r.event.hash {
            let (file, row, seq) = at(r);
            problems.push(Problem::Modified { file, row, seq });
        }
    }

    // 2. One row per number: of several, the one the chain links is real.
    let mut by_seq: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut by_hash: HashMap<Hash, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_seq.entry(r.event.seq).or_default().push(i);
        by_hash.insert(r.event.hash, i);
    }
    let mut inserted = vec![false; rows.len()];
    let prevs: HashMap<Hash, u64> = rows
        .iter()
        .map(|r| (r.event.prev_hash, r.event.seq))
        .collect();
    for (&seq, idxs) in &by_seq {
        if idxs.len() < 2 {
            continue;
        }
        let linked = |i: &usize| {
            prevs.get(&rows[*i].event.hash) == Some(&seq.wrapping_add(1))
                || by_hash
                    .get(&rows[*i].event.prev_hash)
                    .is_some_and(|&p| rows[p].event.seq.wrapping_add(1) == seq)
        };
        let keep = idxs.iter().copied().find(linked).unwrap_or(idxs[0]);
        for &i in idxs.iter().filter(|&&i| i != keep) {
            inserted[i] = true;
            let (file, row, seq) = at(&rows[i]);
            problems.push(Problem::Inserted { file, row, seq });
        }
    }

    // 3. Links, in number order: each event must carry its predecessor's
    //    hash; a hole is a deletion or a missing file.
    let mut last: Option<usize> = None;
    for idxs in by_seq.values() {
        let Some(&q) = idxs.iter().find(|&&i| !inserted[i]) else {
            continue;
        };
        let e = &rows[q].event;
        let Some(p) = last else {
            let meta = &files[rows[q].file].1;
            if e.seq > 1 {
                problems.push(Problem::MissingFile {
                    before: files[rows[q].file].0.clone(),
                    first: 1,
                    last: e.seq - 1,
                });
            } else if e.prev_hash != GENESIS {
                let (file, row, seq) = at(&rows[q]);
                problems.push(Problem::BrokenLink { file, row, seq });
            }
            if meta.first_seq == e.seq && meta.chain_prev != e.prev_hash {
                problems.push(Problem::BadMetadata {
                    file: files[rows[q].file].0.clone(),
                    why: "the first row does not continue the chain the file records".into(),
                });
            }
            last = Some(q);
            continue;
        };
        let pe = &rows[p].event;
        if e.seq == pe.seq.wrapping_add(1) {
            if e.prev_hash != pe.hash && by_hash.contains_key(&e.prev_hash) {
                // It links to a row that has its successor already.
                inserted[q] = true;
                let (file, row, seq) = at(&rows[q]);
                problems.push(Problem::Inserted { file, row, seq });
                continue;
            }
            if e.prev_hash != pe.hash {
                let (file, row, seq) = at(&rows[q]);
                problems.push(Problem::BrokenLink { file, row, seq });
            }
            last = Some(q);
            continue;
        }
        // A hole before `e`. If `e` links to a row that is present, it was
        // put there (numbered ahead); otherwise events are gone.
        if by_hash.contains_key(&e.prev_hash) {
            inserted[q] = true;
            let (file, row, seq) = at(&rows[q]);
            problems.push(Problem::Inserted { file, row, seq });
            continue;
        }
        // Here pe.seq + 1 < e.seq, so neither overflows.
        let (first, lastn) = (pe.seq + 1, e.seq - 1);
        let (fp, fq) = (&files[rows[p].file].1, &files[rows[q].file].1);
        let between_files = rows[p].file != rows[q].file
            && fp.last_seq == pe.seq
            && fq.first_seq == e.seq
            && fq.chain_prev == e.prev_hash;
        if between_files {
            problems.push(Problem::MissingFile {
                before: files[rows[q].file].0.clone(),
                first,
                last: lastn,
            });
        } else {
            let (file, row, _) = at(&rows[q]);
            problems.push(Problem::Deleted {
                file,
                row,
                first,
                last: lastn,
            });
        }
        last = Some(q);
    }

    // 4. Order: a row is out of place when the event numbered before it
    //    comes later in the files, or the one after it comes earlier.
    let mut position: HashMap<u64, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if !inserted[i] {
            position.entry(r.event.seq).or_insert(i);
        }
    }
    for (i, r) in rows.iter().enumerate() {
        if inserted[i] {
            continue;
        }
        let seq = r.event.seq;
        let before_is_later = seq > 0 && position.get(&(seq - 1)).is_some_and(|&p| p > i);
        let after_is_earlier = position.get(&seq.wrapping_add(1)).is_some_and(|&p| p < i);
        if before_is_later || after_is_earlier {
            let (file, row, seq) = at(r);
            problems.push(Problem::Reordered { file, row, seq });
        }
    }

    // 5. Each file's metadata must describe its rows.
    for (i, (path, meta)) in files.iter().enumerate() {
        let mine: Vec<&Event> = rows
            .iter()
            .enumerate()
            .filter(|(j, r)| r.file == i && !inserted[*j])
            .map(|(_, r)| &r.event)
            .collect();
        let first = mine.iter().map(|e| e.seq).min();
        let last_row = mine.iter().max_by_key(|e| e.seq);
        if first != Some(meta.first_seq) || last_row.map(|e| e.seq) != Some(meta.last_seq) {
            problems.push(Problem::BadMetadata {
                file: path.clone(),
                why: format!(
                    "it records events {}..={}, its rows hold {}..={}",
                    meta.first_seq,
                    meta.last_seq,
                    first.unwrap_or(0),
                    last_row.map_or(0, |e| e.seq)
                ),
            });
        } else if last_row.is_some_and(|e| e.hash != meta.chain_head) {
            problems.push(Problem::BadMetadata {
                file: path.clone(),
                why: "its last event is not the chain head it records".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{sample, text};
    use crate::audit::files::{read, write_raw, ParquetSink};

    /// Three files of 4 events each, one chain, events 1..=12.
    fn chain(dir: &Path) -> Vec<PathBuf> {
        let mut prev = GENESIS;
        let mut paths = Vec::new();
        for f in 0..3u64 {
            let mut sink = ParquetSink::create(dir, "test").unwrap();
            let events: Vec<Event> = (1..=4)
                .map(|i| {
                    let seq = f * 4 + i;
                    let mut e = sample(seq);
                    e.seal(seq, prev, &mut Vec::new());
                    prev = e.hash;
                    e
                })
                .collect();
            sink.push(&events).unwrap();
            paths.push(sink.finish().unwrap().unwrap().0);
        }
        paths
    }

    fn edit(path: &Path, f: impl FnOnce(&mut Vec<Event>)) {
        let (meta, mut events) = read(path).unwrap();
        f(&mut events);
        write_raw(path, &events, &meta).unwrap();
    }

    fn problems(dir: &Path) -> Vec<Problem> {
        let r = verify(dir).unwrap();
        assert_eq!(r.ok(), r.problems.is_empty());
        r.problems
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        chain(dir.path());
        let r = verify(dir.path()).unwrap();
        assert!(r.ok(), "{r}");
        assert_eq!((r.files, r.events), (3, 12));
        assert_eq!(r.chains["test"].1, 12);
        assert!(r.to_string().starts_with("instance test: events 1..=12"));
    }

    #[test]
    fn a_modified_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        edit(&p[1], |ev| ev[2].statement = text("DROP TABLE evidence"));
        assert_eq!(
            problems(dir.path()),
            vec![Problem::Modified {
                file: p[1].clone(),
                row: 2,
                seq: 7
            }]
        );
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        edit(&p[1], |ev| {
            ev[2].rows = Some(0);
            ev[2].hash = ev[2].compute_hash(&mut Vec::new());
        });
        assert_eq!(
            problems(dir.path()),
            vec![Problem::BrokenLink {
                file: p[1].clone(),
                row: 3,
                seq: 8
            }]
        );
    }

    #[test]
    fn deleted_rows_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        edit(&p[1], |ev| {
            ev.drain(1..3);
        });
        let found = problems(dir.path());
        assert_eq!(
            found,
            vec![Problem::Deleted {
                file: p[1].clone(),
                row: 1,
                first: 6,
                last: 7
            }]
        );
        assert!(
            found[0].to_string().contains("2 row(s) deleted"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn inserted_rows_are_found_copied_or_forged() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        // A copy of an existing row.
        edit(&p[2], |ev| {
            let copy = ev[0].clone();
            ev.insert(2, copy);
        });
        assert_eq!(
            problems(dir.path()),
            vec![Problem::Inserted {
                file: p[2].clone(),
                row: 2,
                seq: 9
            }]
        );

        // A forged row, well hashed, numbered past the end, linked to a
        // row in the middle.
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        edit(&p[0], |ev| {
            let mut forged = sample(99);
            forged.seal(13, ev[1].hash, &mut Vec::new());
            ev.insert(2, forged);
        });
        let found = problems(dir.path());
        assert!(
            found.contains(&Problem::Inserted {
                file: p[0].clone(),
                row: 2,
                seq: 13
            }),
            "{found:?}"
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn reordered_rows_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        edit(&p[0], |ev| ev.swap(1, 2));
        assert_eq!(
            problems(dir.path()),
            vec![
                Problem::Reordered {
                    file: p[0].clone(),
                    row: 1,
                    seq: 3
                },
                Problem::Reordered {
                    file: p[0].clone(),
                    row: 2,
                    seq: 2
                }
            ]
        );
        // A row moved to the end of the last file: only it and its old
        // neighbour are out of place, not everything after.
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        let (meta, mut first) = read(&p[0]).unwrap();
        let moved = first.remove(1);
        write_raw(&p[0], &first, &meta).unwrap();
        edit(&p[2], |ev| ev.push(moved));
        let found = problems(dir.path());
        let reordered: Vec<u64> = found
            .iter()
            .filter_map(|p| match p {
                Problem::Reordered { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(reordered, vec![3, 2], "{found:?}");
    }

    #[test]
    fn a_missing_file_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        std::fs::remove_file(&p[1]).unwrap();
        assert_eq!(
            problems(dir.path()),
            vec![Problem::MissingFile {
                before: p[2].clone(),
                first: 5,
                last: 8
            }]
        );
        std::fs::remove_file(&p[0]).unwrap();
        assert_eq!(
            problems(dir.path()),
            vec![Problem::MissingFile {
                before: p[2].clone(),
                first: 1,
                last: 8
            }]
        );
    }

    #[test]
    fn extreme_sequence_numbers_are_reported_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        edit(&p[2], |ev| {
            ev[3].seq = u64::MAX;
            ev[2].seq = 0;
        });
        let found = problems(dir.path());
        assert!(!found.is_empty());
    }

    #[test]
    fn a_file_that_is_not_parquet_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let p = chain(dir.path());
        std::fs::write(&p[1], b"not parquet").unwrap();
        let found = problems(dir.path());
        assert!(
            matches!(&found[0], Problem::Unreadable { file, .. } if *file == p[1]),
            "{found:?}"
        );
    }
}
