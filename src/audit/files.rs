//! Audit files: names that sort by time and carry the instance, Parquet
//! written under a temporary name and renamed into place only when its
//! footer is down (so every `*.parquet` in the directory is readable), and
//! the chain metadata each file records.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::event::{hex, parse_hex, Event, Hash};
use super::schema;

const KEY_INSTANCE: &str = "pgward.audit.instance";
const KEY_FIRST_SEQ: &str = "pgward.audit.first_seq";
const KEY_LAST_SEQ: &str = "pgward.audit.last_seq";
const KEY_CHAIN_PREV: &str = "pgward.audit.chain_prev";
const KEY_CHAIN_HEAD: &str = "pgward.audit.chain_head";

/// Rows per Parquet row group.
const ROW_GROUP: usize = 65_536;

/// What a file says about its place in its instance's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub instance: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hash of the event before this file's first (zero at genesis).
    pub chain_prev: Hash,
    /// The hash of this file's last event.
    pub chain_head: Hash,
}

/// Whether `name` may name an instance: it is part of file names.
pub fn valid_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `20261127T235959.123456Z_<instance>_<first seq>.parquet`: names sort by
/// the time of their first event, then instance, then position.
pub fn file_name(first_time_us: i64, instance: &str, first_seq: u64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(first_time_us).unwrap_or_default();
    format!(
        "{}_{instance}_{first_seq:016}.parquet",
        t.format("%Y%m%dT%H%M%S%.6fZ")
    )
}

/// The instance a file name carries.
pub fn instance_of(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?.strip_suffix(".parquet")?;
    let mut parts = name.split('_');
    let (_, instance, _) = (parts.next()?, parts.next()?, parts.next()?);
    Some(instance)
}

/// The audit files in `dir`, in name order (time order).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet") && instance_of(p).is_some())
        .collect();
    files.sort();
    Ok(files)
}

/// Columns that repeat (who, where, what kind): dictionary-encoded.
const DICTIONARY: &[&str] = &[
    "kind",
    "instance",
    "session_id",
    "identity",
    "auth_method",
    "role",
    "client_addr",
    "application_name",
    "database",
    "upstream_user",
    "fingerprint",
    "decision",
    "rule",
    "outcome",
    "sqlstate",
    "classes",
    "tables",
];
/// Columns auditors filter on: min/max statistics per row group, so
/// readers skip row groups. Others (statement texts, hashes) get none,
/// which saves comparing every value.
const STATISTICS: &[&str] = &[
    "seq",
    "time",
    "kind",
    "session_id",
    "identity",
    "role",
    "decision",
];

fn writer_properties() -> WriterProperties {
    let path = |c: &str| {
        // List columns' values live under `<name>.list.item`.
        if c == "classes" || c == "tables" {
            parquet::schema::types::ColumnPath::new(vec![c.into(), "list".into(), "item".into()])
        } else {
            parquet::schema::types::ColumnPath::from(c)
        }
    };
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_created_by(format!("pgward {}", env!("CARGO_PKG_VERSION")))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None);
    for c in DICTIONARY {
        b = b.set_column_dictionary_enabled(path(c), true);
    }
    for c in STATISTICS {
        b = b.set_column_statistics_enabled(path(c), EnabledStatistics::Chunk);
    }
    b.build()
}

/// Writes one Parquet file in batches, under a hidden temporary name.
pub struct ParquetSink {
    dir: PathBuf,
    tmp: PathBuf,
    writer: Option<ArrowWriter<File>>,
    meta: Option<FileMeta>,
    first_time_us: i64,
}

impl ParquetSink {
    pub fn create(dir: &Path, instance: &str) -> Result<ParquetSink, String> {
        // Unique: one file may be published while the next is written.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{instance}.{n}{TMP_SUFFIX}"));
        let file =
            File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let props = writer_properties();
        let writer = ArrowWriter::try_new(file, schema::schema(), Some(props))
            .map_err(|e| format!("cannot start {}: {e}", tmp.display()))?;
        Ok(ParquetSink {
            dir: dir.to_owned(),
            tmp,
            writer: Some(writer),
            meta: None,
            first_time_us: 0,
        })
    }

    /// Appends events; they must continue the chain of what came before.
    pub fn push(&mut self, events: &[Event]) -> Result<(), String> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let batch = schema::to_batch(events)?;
        let writer = self.writer.as_mut().ok_or("the file is already finished")?;
        writer
            .write(&batch)
            .map_err(|e| format!("writing {}: {e}", self.tmp.display()))?;
        match &mut self.meta {
            None => {
                self.first_time_us = first.time_us;
                self.meta = Some(FileMeta {
                    instance: first.instance.as_deref().unwrap_or_default().to_owned(),
                    first_seq: first.seq,
                    last_seq: last.seq,
                    chain_prev: first.prev_hash,
                    chain_head: last.hash,
                });
            }
            Some(m) => {
                m.last_seq = last.seq;
                m.chain_head = last.hash;
            }
        }
        Ok(())
    }

    /// Writes the footer, syncs and renames the file into place. Returns
    /// None when no event was pushed (and leaves no file).
    pub fn finish(self) -> Result<Option<(PathBuf, FileMeta)>, String> {
        match self.finish_deferred()? {
            None => Ok(None),
            Some(done) => {
                let meta = done.meta.clone();
                Ok(Some((done.publish()?, meta)))
            }
        }
    }

    /// Writes the footer; making it durable and putting it in place is
    /// left to `Finished::publish`, which may run on another thread.
    pub fn finish_deferred(mut self) -> Result<Option<Finished>, String> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(None);
        };
        let Some(meta) = self.meta.take() else {
            drop(writer);
            let _ = std::fs::remove_file(&self.tmp);
            return Ok(None);
        };
        for (k, v) in meta_pairs(&meta) {
            writer.append_key_value_metadata(KeyValue::new(k.to_owned(), v));
        }
        let file = writer
            .into_inner()
            .map_err(|e| format!("finishing {}: {e}", self.tmp.display()))?;
        let name = file_name(self.first_time_us, &meta.instance, meta.first_seq);
        Ok(Some(Finished {
            file,
            tmp: self.tmp.clone(),
            path: self.dir.join(name),
            dir: self.dir.clone(),
            meta,
        }))
    }
}

/// A complete Parquet file still under its temporary name.
pub struct Finished {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    pub meta: FileMeta,
}

impl Finished {
    /// Syncs the file and renames it into place.
    pub fn publish(self) -> Result<PathBuf, String> {
        let fail = |e: std::io::Error| format!("publishing {}: {e}", self.tmp.display());
        self.file.sync_all().map_err(fail)?;
        std::fs::rename(&self.tmp, &self.path).map_err(fail)?;
        sync_dir(&self.dir);
        Ok(self.path)
    }
}

/// Temporary audit files end so; readers' `*.parquet` globs skip them.
pub const TMP_SUFFIX: &str = ".parquet.tmp";

impl Drop for ParquetSink {
    fn drop(&mut self) {
        if self.writer.is_some() {
            // Abandoned (an error on the way): leave no partial file.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `events` to `path` with `meta` as its chain metadata, as is: for
/// tests that play the part of someone editing the files.
#[doc(hidden)]
pub fn write_raw(path: &Path, events: &[Event], meta: &FileMeta) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer =
        ArrowWriter::try_new(file, schema::schema(), None).map_err(|e| e.to_string())?;
    writer
        .write(&schema::to_batch(events)?)
        .map_err(|e| e.to_string())?;
    for (k, v) in meta_pairs(meta) {
        writer.append_key_value_metadata(KeyValue::new(k.to_owned(), v));
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}

fn meta_pairs(meta: &FileMeta) -> [(&'static str, String); 5] {
    [
        (KEY_INSTANCE, meta.instance.clone()),
        (KEY_FIRST_SEQ, meta.first_seq.to_string()),
        (KEY_LAST_SEQ, meta.last_seq.to_string()),
        (KEY_CHAIN_PREV, hex(&meta.chain_prev)),
        (KEY_CHAIN_HEAD, hex(&meta.chain_head)),
    ]
}

/// Makes a rename or a new file durable.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Opens an audit file: its reader and its chain metadata.
fn open(path: &Path) -> Result<(ParquetRecordBatchReaderBuilder<File>, FileMeta), String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{} is not a readable Parquet file: {e}", path.display()))?;
    let meta = meta_from(builder.metadata().file_metadata().key_value_metadata())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((builder, meta))
}

/// A file's chain metadata, from its footer alone.
pub fn read_meta(path: &Path) -> Result<FileMeta, String> {
    open(path).map(|(_, meta)| meta)
}

fn meta_from(kv: Option<&Vec<KeyValue>>) -> Result<FileMeta, String> {
    let get = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.clone())
            .ok_or_else(|| format!("no {key} in the file metadata (not a pgward audit file?)"))
    };
    let num = |key: &str| {
        get(key)?
            .parse::<u64>()
            .map_err(|_| format!("{key} is not a number"))
    };
    let hash = |key: &str| parse_hex(&get(key)?).ok_or_else(|| format!("{key} is not a hash"));
    Ok(FileMeta {
        instance: get(KEY_INSTANCE)?,
        first_seq: num(KEY_FIRST_SEQ)?,
        last_seq: num(KEY_LAST_SEQ)?,
        chain_prev: hash(KEY_CHAIN_PREV)?,
        chain_head: hash(KEY_CHAIN_HEAD)?,
    })
}

/// Every event of a file, with its metadata.
pub fn read(path: &Path) -> Result<(FileMeta, Vec<Event>), String> {
    let (builder, meta) = open(path)?;
    let reader = builder
        .build()
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut events = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("reading {}: {e}", path.display()))?;
        events.extend(schema::from_batch(&batch).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    Ok((meta, events))
}

/// Every event of every audit file in `dir`, in file order.
pub fn read_all(dir: &Path) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for path in list(dir)? {
        events.extend(read(&path)?.1);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::sample;

    #[test]
    fn names_sort_by_time_and_carry_the_instance() {
        let a = file_name(1_700_000_000_000_000, "db-1.east", 1);
        let b = file_name(1_700_000_000_000_001, "a", 99);
        assert_eq!(
            a,
            "20231114T221320.000000Z_db-1.east_0000000000000001.parquet"
        );
        assert!(a < b);
        assert_eq!(instance_of(Path::new(&a)), Some("db-1.east"));
        assert!(valid_instance("db-1.east"));
        assert!(!valid_instance("a_b") && !valid_instance("a/b") && !valid_instance(""));
    }

    #[test]
    fn a_file_is_in_place_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut events: Vec<Event> = (1..=5).map(sample).collect();
        let mut prev = [3; 32];
        for (i, e) in events.iter_mut().enumerate() {
            e.seal(i as u64 + 10, prev, &mut Vec::new());
            prev = e.hash;
        }
        let mut sink = ParquetSink::create(dir.path(), "test").unwrap();
        sink.push(&events[..2]).unwrap();
        sink.push(&events[2..]).unwrap();
        assert!(list(dir.path()).unwrap().is_empty(), "nothing in place yet");
        let (path, meta) = sink.finish().unwrap().unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![path.clone()]);
        assert_eq!((meta.first_seq, meta.last_seq), (10, 14));
        assert_eq!(meta.chain_prev, [3; 32]);
        let (read_meta, back) = read(&path).unwrap();
        assert_eq!(read_meta, meta);
        assert_eq!(back, events);

        let empty = ParquetSink::create(dir.path(), "test").unwrap();
        assert!(empty.finish().unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
