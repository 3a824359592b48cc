//! The write-ahead segment: events are appended here at every flush, in
//! their canonical encoding, and turned into Parquet at rotation or, after
//! a crash, at the next start. A record is `u32 length | canonical event |
//! SHA-256 of it`, so a torn or garbled tail is recognised and cut off.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::event::{Event, Hash};

/// Appends one record for `event` to `buf`, sealing the event after
/// `prev` as number `seq`. Returns the event's hash.
pub fn append_record(buf: &mut Vec<u8>, event: &mut Event, seq: u64, prev: Hash) -> Hash {
    event.seq = seq;
    event.prev_hash = prev;
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    event.encode(buf);
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    let hash: Hash = Sha256::digest(&buf[at + 4..]).into();
    buf.extend_from_slice(&hash);
    event.hash = hash;
    hash
}

/// The open segment of the running instance.
pub struct Segment {
    pub path: PathBuf,
    file: File,
    /// Bytes known to be whole records.
    pub len: u64,
    pub events: u64,
    pub opened: Instant,
}

impl Segment {
    pub fn create(wal_dir: &Path, instance: &str, first_seq: u64) -> std::io::Result<Segment> {
        let path = wal_dir.join(format!("{instance}_{first_seq:016}.wal"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        super::files::sync_dir(wal_dir);
        Ok(Segment {
            path,
            file,
            len: 0,
            events: 0,
            opened: Instant::now(),
        })
    }

    /// Appends whole records. On failure the segment is cut back to its
    /// last whole record, so a retry does not leave garbage in between.
    pub fn append(&mut self, records: &[u8], count: u64) -> std::io::Result<()> {
        match self.file.write_all(records) {
            Ok(()) => {
                self.len += records.len() as u64;
                self.events += count;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                let _ = self.file.seek(SeekFrom::Start(self.len));
                Err(e)
            }
        }
    }

    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// A second handle on the file, to sync it from another thread.
    pub fn handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }
}

/// The segments of `instance` in `wal_dir`, oldest first.
pub fn segments(wal_dir: &Path, instance: &str) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("{instance}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(wal_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "wal")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Reads a segment's records in order. Stops at the first record that is
/// incomplete or does not match its hash (a tail torn by a crash).
pub struct Reader {
    input: BufReader<File>,
    pub torn_tail: bool,
    buf: Vec<u8>,
}

impl Reader {
    pub fn open(path: &Path) -> std::io::Result<Reader> {
        Ok(Reader {
            input: BufReader::with_capacity(1 << 20, File::open(path)?),
            torn_tail: false,
            buf: Vec::new(),
        })
    }

    fn next_record(&mut self) -> Option<Event> {
        let mut len = [0u8; 4];
        match read_full(&mut self.input, &mut len) {
            Ok(0) => return None,
            Ok(4) => {}
            _ => {
                self.torn_tail = true;
                return None;
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > 1 << 30 {
            self.torn_tail = true;
            return None;
        }
        self.buf.resize(len + 32, 0);
        if !matches!(read_full(&mut self.input, &mut self.buf), Ok(n) if n == len + 32) {
            self.torn_tail = true;
            return None;
        }
        let (body, stored) = self.buf.split_at(len);
        let hash: Hash = Sha256::digest(body).into();
        if hash[..] != stored[..] {
            self.torn_tail = true;
            return None;
        }
        match Event::decode(body) {
            Ok(mut e) => {
                e.hash = hash;
                Some(e)
            }
            Err(_) => {
                self.torn_tail = true;
                None
            }
        }
    }
}

impl Iterator for Reader {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.next_record()
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::sample;

    #[test]
    fn records_read_back_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), "i", 1).unwrap();
        let mut buf = Vec::new();
        let mut prev = [0; 32];
        let mut written = Vec::new();
        for seq in 1..=3 {
            let mut e = sample(seq);
            prev = append_record(&mut buf, &mut e, seq, prev);
            written.push(e);
        }
        seg.append(&buf, 3).unwrap();
        seg.sync().unwrap();
        let back: Vec<Event> = Reader::open(&seg.path).unwrap().collect();
        assert_eq!(back, written);
        // The hash each record carries is the event's own hash.
        assert_eq!(back[2].hash, back[2].compute_hash(&mut Vec::new()));

        // A crash in the middle of the last record.
        let full = std::fs::read(&seg.path).unwrap();
        for cut in [full.len() - 1, full.len() - 40, full.len() - 100] {
            std::fs::write(&seg.path, &full[..cut]).unwrap();
            let mut r = Reader::open(&seg.path).unwrap();
            let got: Vec<Event> = r.by_ref().collect();
            assert_eq!(got, written[..2], "cut at {cut}");
            assert!(r.torn_tail);
        }
        // A flipped byte inside a record ends the readable part there.
        let mut flipped = full.clone();
        flipped[10] ^= 1;
        std::fs::write(&seg.path, &flipped).unwrap();
        assert_eq!(Reader::open(&seg.path).unwrap().count(), 0);
        assert_eq!(segments(dir.path(), "i").unwrap(), vec![seg.path.clone()]);
        assert!(segments(dir.path(), "other").unwrap().is_empty());
    }
}
