//! [`FileSource`]: JSON lines from a file (plain or `.gz`) or stdin; a line's offset is its
//! 1-based line number, so its position shows as `file:line`.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Input, Position, Recorded, STDIN_NAME, Source, SourceError, SourceKey, Tracking, display_name,
};
use crate::input::{LineBatch, LineReader, head_digest};

/// Lines per [`Input::Lines`] batch: large enough to amortise channels and allocations,
/// small enough to keep every worker busy on short inputs.
const BATCH_LINES: usize = 1024;

/// A file or stdin, read in batches of lines.
pub struct FileSource {
    /// As positions and messages show it (`<stdin>` for `-`).
    name: Arc<str>,
    /// As given; `None` for stdin and readers.
    path: Option<PathBuf>,
    reader: LineReader,
    max_line: usize,
    /// Lines already in the state, read past without evaluating.
    skip: u64,
    started: bool,
    done: bool,
    /// An I/O error that ended the input: reported after the lines read before it.
    error: Option<(u64, io::Error)>,
    /// The last batch's size: each batch gets room for it plus 1/8 (batches go to other
    /// threads, so one buffer cannot simply be reused).
    last_size: usize,
    /// Bytes read from the file (compressed, for `.gz`) and its size.
    read: Arc<AtomicU64>,
    size: Option<u64>,
}

impl FileSource {
    /// Opens `path` (`-` for stdin); `.gz` files are decompressed. Lines longer than
    /// `max_line` bytes are reported, not buffered.
    pub fn open(path: &Path, max_line: usize) -> io::Result<Self> {
        let read = Arc::new(AtomicU64::new(0));
        let (reader, size): (Box<dyn BufRead + Send>, _) = if path == Path::new("-") {
            (Box::new(BufReader::new(io::stdin())), None)
        } else {
            let file = std::fs::File::open(path)?;
            let size = file.metadata().ok().map(|m| m.len());
            let file = Counting {
                inner: file,
                read: read.clone(),
            };
            let reader: Box<dyn BufRead + Send> = if path.extension().is_some_and(|e| e == "gz") {
                Box::new(BufReader::with_capacity(
                    256 << 10,
                    flate2::read::MultiGzDecoder::new(BufReader::new(file)),
                ))
            } else {
                Box::new(BufReader::with_capacity(256 << 10, file))
            };
            (reader, size)
        };
        let mut source = Self::from_reader(&path.display().to_string(), reader, max_line);
        source.path = (path != Path::new("-")).then(|| path.to_owned());
        source.read = read;
        source.size = size;
        Ok(source)
    }

    /// Reads `reader` as the input `name` (`-` shows as `<stdin>`); it is not tracked.
    pub fn from_reader(name: &str, reader: Box<dyn BufRead + Send>, max_line: usize) -> Self {
        FileSource {
            name: display_name(name),
            path: None,
            reader: LineReader::new(reader, max_line),
            max_line,
            skip: 0,
            started: false,
            done: false,
            error: None,
            last_size: 0,
            read: Arc::new(AtomicU64::new(0)),
            size: None,
        }
    }
}

impl Source for FileSource {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn read(&mut self) -> Option<Input> {
        if !self.started {
            self.started = true;
            return Some(Input::Started);
        }
        while !self.done {
            let capacity = self.last_size + self.last_size / 8;
            let mut batch = LineBatch::with_capacity(capacity, BATCH_LINES);
            match self.reader.read_batch(&mut batch, BATCH_LINES) {
                Ok(end) => self.done = end,
                Err(e) => (self.done, self.error) = (true, Some(e)),
            }
            self.last_size = batch.bytes.len();
            // Lines already in the state: their bytes stay unused in the buffer.
            let skip = self.skip;
            batch.lines.retain(|line| line.number > skip);
            if !batch.lines.is_empty() {
                return Some(Input::Lines {
                    source: self.name.clone(),
                    batch,
                    max_line: self.max_line,
                });
            }
        }
        // The lines read before an I/O error go first, then the error.
        self.error.take().map(|(line, e)| {
            Input::Bad(
                Position::new(self.name.clone(), line),
                format!("read error, rest of file skipped: {e}"),
            )
        })
    }

    /// A file is known by its canonical path and a digest of its first line; stdin is
    /// not tracked.
    fn tracking(&self) -> Result<Tracking, SourceError> {
        let Some(path) = &self.path else {
            let note = (&*self.name == STDIN_NAME).then(|| {
                "stdin is not tracked in the state: giving the same events again counts them \
                 again"
                    .to_owned()
            });
            return Ok(Tracking::Untracked(note));
        };
        let key = std::fs::canonicalize(path)
            .map_err(|source| SourceError::Resolve {
                name: self.name.to_string(),
                source,
            })?
            .to_string_lossy()
            .into_owned();
        let identity = head_digest(path).map_err(|source| SourceError::Read {
            name: self.name.to_string(),
            source,
        })?;
        Ok(Tracking::Tracked(SourceKey { key, identity }))
    }

    /// The same first line: the lines recorded are skipped. Another first line: a new file
    /// at an old path (a rotated log), read from the start.
    fn resume(&mut self, key: &SourceKey, recorded: &Recorded) -> Option<String> {
        let lines = recorded.offset;
        if lines == 0 {
            return None;
        }
        if key.identity == recorded.identity {
            self.skip = lines;
            Some(format!(
                "`{}`: lines 1-{lines} are already in the state; evaluating from line {}",
                self.name,
                lines + 1
            ))
        } else {
            Some(format!(
                "`{}` changed since it was evaluated into the state (its first line differs): \
                 evaluating it from the start",
                self.name
            ))
        }
    }

    fn size(&self) -> Option<u64> {
        self.size
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// A reader that counts the bytes read through it, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(source: &mut FileSource) -> Vec<String> {
        std::iter::from_fn(|| source.read())
            .map(|item| match item {
                Input::Started => "started".to_owned(),
                Input::Lines { source, batch, .. } => batch
                    .lines
                    .iter()
                    .map(|l| Position::new(source.clone(), l.number).to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                Input::Bad(position, reason) => format!("{position}: {reason}"),
            })
            .collect()
    }

    #[test]
    fn a_file_resumes_after_the_recorded_line_unless_its_first_line_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        let mut source = FileSource::open(&path, 1 << 20).unwrap();
        let Ok(Tracking::Tracked(key)) = source.tracking() else {
            panic!("a file is tracked")
        };
        let recorded = Recorded {
            identity: key.identity.clone(),
            offset: 2,
        };
        let note = source.resume(&key, &recorded).unwrap();
        assert!(note.ends_with("lines 1-2 are already in the state; evaluating from line 3"));
        let name = path.display().to_string();
        assert_eq!(
            items(&mut source),
            ["started".to_owned(), format!("{name}:3")]
        );
        assert_eq!(source.bytes_read(), source.size().unwrap());

        let mut rotated = FileSource::open(&path, 1 << 20).unwrap();
        let other = Recorded {
            identity: "another first line".to_owned(),
            offset: 2,
        };
        assert!(
            rotated
                .resume(&key, &other)
                .unwrap()
                .contains("evaluating it from the start")
        );
        assert_eq!(
            items(&mut rotated)[1],
            format!("{name}:1,{name}:2,{name}:3")
        );
    }

    #[test]
    fn stdin_is_named_and_not_tracked() {
        let reader = Box::new(&b"{}\n"[..]);
        let mut source = FileSource::from_reader("-", reader, 10);
        assert_eq!(&**source.name(), "<stdin>");
        assert!(matches!(source.tracking(), Ok(Tracking::Untracked(_))));
        assert_eq!(items(&mut source), ["started", "<stdin>:1"]);
    }
}
