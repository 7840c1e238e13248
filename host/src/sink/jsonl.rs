//! [`JsonLines`]: one JSON record per line, to a file or any writer (stdout, a buffer).
//!
//! A file appended to with a state is durable: [`Sink::sync`] flushes and syncs it, and its
//! mark is the file's length, which [`recover`] cuts the file back to after a crash (when
//! the resuming run writes that same file). Any other writer is a stream.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Delivery, Output, Record, Sink, SinkError, SinkMark, SinkTarget};

/// The kind a state records for a JSON-lines file ([`SinkTarget::kind`]).
pub(super) const KIND: &str = "jsonl";

/// A JSON-lines file a later run can find again: canonical path, length at the start.
struct Durable {
    path: PathBuf,
    base: u64,
    /// A handle of the same file, to sync it.
    file: File,
}

/// JSON lines to a writer; see the module docs.
pub struct JsonLines<W> {
    out: W,
    /// Bytes written through this sink.
    written: u64,
    durable: Option<Durable>,
    buf: Vec<u8>,
}

impl<W: Write + Send> JsonLines<W> {
    /// JSON lines to `out`, a stream: nothing to recover ([`Delivery::AtLeastOnce`]).
    pub fn new(out: W) -> Self {
        JsonLines {
            out,
            written: 0,
            durable: None,
            buf: Vec::new(),
        }
    }
}

impl JsonLines<BufWriter<File>> {
    /// Creates (or truncates) `path`: a run without a state.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::Create {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(BufWriter::new(file)))
    }

    /// Appends to `path` (created if missing): a run with a state, which records the file
    /// and cuts it back after a crash ([`Delivery::ExactlyOnceWithState`]).
    pub fn append(path: &Path) -> Result<Self, SinkError> {
        let open = |source| SinkError::Open {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open)?;
        let base = file
            .metadata()
            .map_err(|source| SinkError::Read {
                path: path.to_owned(),
                source,
            })?
            .len();
        let durable = Durable {
            path: std::fs::canonicalize(path).map_err(|source| SinkError::Resolve {
                path: path.to_owned(),
                source,
            })?,
            base,
            file: file.try_clone().map_err(open)?,
        };
        let mut sink = Self::new(BufWriter::new(file));
        sink.durable = Some(durable);
        Ok(sink)
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn write(&mut self, record: &Record<'_>) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, record)?;
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn sync(&mut self) -> io::Result<SinkMark> {
        self.out.flush()?;
        let Some(durable) = &self.durable else {
            return Ok(SinkMark(self.written));
        };
        durable.file.sync_data().map_err(|source| {
            io::Error::other(SinkError::Sync {
                path: durable.path.clone(),
                source,
            })
        })?;
        Ok(SinkMark(durable.base + self.written))
    }

    fn delivery(&self) -> Delivery {
        match self.durable {
            Some(_) => Delivery::ExactlyOnceWithState,
            None => Delivery::AtLeastOnce,
        }
    }

    fn target(&self) -> Option<SinkTarget> {
        let durable = self.durable.as_ref()?;
        Some(SinkTarget {
            kind: KIND.to_owned(),
            target: durable.path.to_string_lossy().into_owned(),
            mark: SinkMark(durable.base + self.written),
        })
    }
}

/// After a run that was killed, cuts its file back to the length committed with the state
/// when this run writes to that same file: the alerts past it are written again by this
/// run. The path comes from the state, which is only data: any other file it names is left
/// as it is, with a note (issue 11).
pub(super) fn recover(
    recorded: &SinkTarget,
    this_run: &Output,
) -> Result<Option<String>, SinkError> {
    let recorded_path = PathBuf::from(&recorded.target);
    let committed = recorded.mark.0;
    let Ok(meta) = std::fs::metadata(&recorded_path) else {
        return Ok(None);
    };
    if !meta.is_file() || meta.len() <= committed {
        return Ok(None);
    }
    let extra = meta.len() - committed;
    let output = match this_run {
        Output::File(path) => Some(path.as_path()),
        Output::Stdout => None,
    };
    let Some((path, file)) = output.and_then(|path| open_if_same(path, &recorded_path, &meta))
    else {
        let here = output.map_or("stdout".to_owned(), |p| format!("`{}`", p.display()));
        return Ok(Some(format!(
            "the last run on this state was interrupted; the {extra} byte(s) of alerts it \
             wrote to `{}` after its last checkpoint are left there, as this run writes to \
             {here}: they may be duplicated when their events are evaluated again",
            recorded_path.display()
        )));
    };
    file.set_len(committed)
        .map_err(|source| SinkError::Truncate {
            path: path.clone(),
            source,
        })?;
    file.sync_all().map_err(|source| SinkError::Sync {
        path: path.clone(),
        source,
    })?;
    Ok(Some(format!(
        "the last run on this state was interrupted; removed {extra} byte(s) of alerts it \
         wrote to `{}` after its last checkpoint (they are written again)",
        path.display()
    )))
}

/// Opens `path` for writing if it is the file `recorded` (whose metadata is `meta`): the same
/// canonical path and, on Unix, the same (device, inode), checked on the opened handle.
fn open_if_same(path: &Path, recorded: &Path, meta: &std::fs::Metadata) -> Option<(PathBuf, File)> {
    let canonical = std::fs::canonicalize(path).ok()?;
    if canonical != std::fs::canonicalize(recorded).ok()? {
        return None;
    }
    let file = OpenOptions::new().write(true).open(&canonical).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let opened = file.metadata().ok()?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return None;
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Some((path.to_owned(), file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::SignalRecord;

    fn signal(value: &serde_json::Value) -> SignalRecord<'_> {
        SignalRecord {
            kind: "signal",
            rule_id: "R",
            severity: "LOW",
            event_time: "t".to_owned(),
            event_location: "a:1".to_owned(),
            event: value,
        }
    }

    #[test]
    fn a_file_appended_with_a_state_is_recovered_to_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let event = serde_json::json!({"a": 1});
        let mut sink = JsonLines::append(&path).unwrap();
        assert_eq!(sink.delivery(), Delivery::ExactlyOnceWithState);
        sink.write(&Record::Signal(&signal(&event))).unwrap();
        let mark = sink.sync().unwrap();
        let line = std::fs::read_to_string(&path).unwrap();
        assert_eq!(mark.0, line.len() as u64);
        let target = SinkTarget {
            mark,
            ..sink.target().unwrap()
        };
        sink.write(&Record::Signal(&signal(&event))).unwrap();
        sink.sync().unwrap();
        drop(sink);

        // Another file: left alone. The same file: cut back to the mark.
        let other = Output::File(dir.path().join("other.jsonl"));
        let note = super::super::recover(&target, &other).unwrap().unwrap();
        assert!(note.contains("are left there"), "{note}");
        let note = super::super::recover(&target, &Output::File(path.clone()))
            .unwrap()
            .unwrap();
        assert!(note.contains("removed"), "{note}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
    }

    #[test]
    fn a_stream_is_at_least_once_and_counts_its_bytes() {
        let mut out = Vec::new();
        let event = serde_json::json!({});
        let mut sink = JsonLines::new(&mut out);
        sink.write(&Record::Signal(&signal(&event))).unwrap();
        assert_eq!(sink.delivery(), Delivery::AtLeastOnce);
        assert!(sink.target().is_none());
        let mark = sink.sync().unwrap();
        drop(sink);
        assert_eq!(mark.0, out.len() as u64);
        assert!(out.ends_with(b"}\n"));
    }
}
