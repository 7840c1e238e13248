//! [`LineReader`]: JSON-lines input, plain or gzip, one event per line (read by
//! [`crate::source::FileSource`]).
//!
//! Nothing is lost silently: every line is either an event, a blank line, or a
//! [`BadLine`] with its line number and reason, which callers count and report.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

/// Default cap on one line. Audit events are a few KiB; a larger line is reported and
/// skipped rather than buffered without bound.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// One line of input.
#[derive(Debug)]
pub enum Line {
    /// A JSON object.
    Event(Value),
    /// Empty or whitespace only: skipped and counted, not an error.
    Blank,
    /// Anything else.
    Bad(BadLine),
}

/// Why a line was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadLine {
    /// Not valid UTF-8.
    Utf8,
    /// Longer than the cap.
    TooLong(usize),
    /// Not JSON (the parser's message, with column).
    Json(String),
    /// JSON, but not an object.
    NotObject(&'static str),
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadLine::Utf8 => write!(f, "not valid UTF-8"),
            BadLine::TooLong(max) => write!(f, "line longer than {max} bytes"),
            BadLine::Json(e) => write!(f, "invalid JSON: {e}"),
            BadLine::NotObject(kind) => write!(f, "expected a JSON object, found {kind}"),
        }
    }
}

/// Reads events line by line.
pub struct LineReader {
    reader: Box<dyn BufRead + Send>,
    max_line: usize,
    line_number: u64,
    buf: Vec<u8>,
}

impl LineReader {
    /// Opens `path` (`-` for stdin); `.gz` files are decompressed.
    pub fn open(path: &Path, max_line: usize) -> io::Result<Self> {
        Ok(Self::new(open_text(path)?, max_line))
    }

    /// Reads from any buffered reader.
    pub fn new(reader: Box<dyn BufRead + Send>, max_line: usize) -> Self {
        LineReader {
            reader,
            max_line,
            line_number: 0,
            buf: Vec::new(),
        }
    }

    /// The next line and its 1-based number; `None` at the end. An I/O error (such as a
    /// truncated gzip stream) ends the file: it is returned with the number of the line
    /// being read. (To parse on other threads, read with [`LineReader::read_batch`].)
    pub fn next_line(&mut self) -> Option<Result<(u64, Line), (u64, io::Error)>> {
        self.buf.clear();
        let number = self.line_number + 1;
        let too_long = match read_capped_line(&mut self.reader, &mut self.buf, self.max_line) {
            Ok(None) => return None,
            Ok(Some(too_long)) => too_long,
            Err(e) => return Some(Err((number, e))),
        };
        self.line_number = number;
        let line = if too_long {
            Line::Bad(BadLine::TooLong(self.max_line))
        } else {
            parse_line(&self.buf)
        };
        Some(Ok((number, line)))
    }
}

/// `path` (`-` for stdin) as text: `.gz` files are decompressed.
fn open_text(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    Ok(if path == Path::new("-") {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file = File::open(path)?;
        if path.extension().is_some_and(|e| e == "gz") {
            Box::new(BufReader::with_capacity(
                256 << 10,
                flate2::read::MultiGzDecoder::new(BufReader::new(file)),
            ))
        } else {
            Box::new(BufReader::with_capacity(256 << 10, file))
        }
    })
}

/// How much of a file's first line [`head_digest`] reads.
const HEAD_BYTES: u64 = 4096;

/// A digest of the file's first line (at most 4 KiB of it, decompressed): `eval --state`
/// resumes a file only if this is unchanged, so a new file at an old path (a rotated log)
/// is evaluated from its start. Appending to a file keeps its digest.
pub fn head_digest(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut head = Vec::new();
    open_text(path)?
        .take(HEAD_BYTES)
        .read_until(b'\n', &mut head)?;
    let digest = Sha256::digest(&head);
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// Lines of one input, all in one buffer: what [`LineReader::read_batch`] fills. One
/// allocation per batch instead of one per line, and a dropped batch's buffer is reused by
/// a later one ([`LineBatch::with_capacity`]).
#[derive(Debug, Default, Clone)]
pub struct LineBatch {
    /// Every line's bytes, back to back, without newlines.
    pub bytes: Vec<u8>,
    /// Each line in order: its number (its offset in its source: a file's 1-based line
    /// number, see [`crate::source::Position`]) and its byte range in `bytes`, or
    /// `too_long` when the line was longer than the reader's cap (its bytes were not kept).
    pub lines: Vec<BatchLine>,
}

/// One line of a [`LineBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLine {
    /// Its offset in its source (for files and stdin: the 1-based line number).
    pub number: u64,
    /// Start of the line in [`LineBatch::bytes`].
    pub start: usize,
    /// End (exclusive) of the line in [`LineBatch::bytes`].
    pub end: usize,
    /// The line was longer than the reader's cap; it has no bytes.
    pub too_long: bool,
}

impl LineBatch {
    /// An empty batch with room for `lines` lines of `bytes` bytes in all: a reader that
    /// sizes each batch like the last one does not grow the buffer by doubling (a
    /// reallocation and a copy each time).
    pub fn with_capacity(bytes: usize, lines: usize) -> Self {
        let spare = SPARE_BUFFERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let buffer = match spare {
            Some(buffer) if buffer.capacity() >= bytes => buffer,
            // Not grown: growing copies the whole old buffer (the allocator cannot know it
            // is empty) into fresh pages. Sizes are rounded up so that the next batches,
            // about as long, fit in it.
            _ => Vec::with_capacity(bytes.next_multiple_of(SPARE_GRAIN)),
        };
        LineBatch {
            bytes: buffer,
            lines: Vec::with_capacity(lines),
        }
    }

    /// Appends a whole line: its bytes, numbered `number`.
    pub fn push_line(&mut self, number: u64, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.lines.push(BatchLine {
            number,
            start,
            end: self.bytes.len(),
            too_long: false,
        });
    }

    /// A line's bytes (empty for a line that was too long).
    pub fn bytes_of(&self, line: &BatchLine) -> &[u8] {
        &self.bytes[line.start..line.end]
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }
}

/// The byte buffers of dropped batches, for the next batches to reuse. A batch's buffer
/// (about 1 MiB) is too large for the allocator to keep: freed and allocated again, its pages
/// were faulted in and zeroed again for every batch (3% of `eval`'s time in perf).
static SPARE_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Buffers kept at most. A buffer is made only when none is spare, so the buffers there
/// are never more than the batches once in flight at the same time (channels, workers,
/// the stage's reordering: bounded by the threads); this only caps an odd peak. Fewer
/// than the batches in flight, and every batch past them was a fresh allocation whose
/// pages the kernel zeroes (`clear_page` was 5% of `perf` samples with 8).
const MAX_SPARE_BUFFERS: usize = 64;
/// A new buffer's size is rounded up to a multiple of this.
const SPARE_GRAIN: usize = 64 << 10;
/// Smaller buffers are left to the allocator.
const MIN_SPARE_BYTES: usize = 64 << 10;

impl Drop for LineBatch {
    fn drop(&mut self) {
        if self.bytes.capacity() >= MIN_SPARE_BYTES {
            let mut spare = SPARE_BUFFERS.lock().unwrap_or_else(PoisonError::into_inner);
            if spare.len() < MAX_SPARE_BUFFERS {
                let mut buffer = std::mem::take(&mut self.bytes);
                buffer.clear();
                spare.push(buffer);
            }
        }
    }
}

impl LineReader {
    /// Appends up to `max_lines` lines to `batch`, numbered on from the last line read.
    /// Returns `Ok(true)` at the end of the input. An I/O error ends the input: the lines
    /// read before it stay in `batch`, and the error comes with the number of the line
    /// being read.
    pub fn read_batch(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
    ) -> Result<bool, (u64, io::Error)> {
        // Whole buffered chunks at a time: every line that ends in a chunk is cut out of it
        // there (one read call per chunk, not per line).
        let mut read = 0;
        let mut line = PartLine {
            start: batch.bytes.len(),
            seen: false,
            too_long: false,
        };
        while read < max_lines {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    batch.bytes.truncate(line.start);
                    return Err((self.line_number + 1, e));
                }
            };
            if chunk.is_empty() {
                if line.seen {
                    line.end(batch, &mut self.line_number);
                }
                return Ok(true);
            }
            let mut used = 0;
            for newline in memchr::memchr_iter(b'\n', chunk) {
                line.append(batch, &chunk[used..newline], self.max_line);
                used = newline + 1;
                line.end(batch, &mut self.line_number);
                read += 1;
                if read == max_lines {
                    break;
                }
            }
            if read < max_lines {
                line.append(batch, &chunk[used..], self.max_line);
                used = chunk.len();
            }
            self.reader.consume(used);
        }
        Ok(false)
    }
}

/// The line [`LineReader::read_batch`] is reading: where it starts in the batch, whether any
/// of it was read, and whether it is too long (its bytes are then dropped).
struct PartLine {
    start: usize,
    seen: bool,
    too_long: bool,
}

impl PartLine {
    /// Ends the line: numbered after `last` and added to `batch`; the next one starts.
    fn end(&mut self, batch: &mut LineBatch, last: &mut u64) {
        *last += 1;
        batch.lines.push(BatchLine {
            number: *last,
            start: self.start,
            end: batch.bytes.len(),
            too_long: self.too_long,
        });
        *self = PartLine {
            start: batch.bytes.len(),
            seen: false,
            too_long: false,
        };
    }

    /// Appends `bytes` of the line, unless that makes it longer than `max`.
    fn append(&mut self, batch: &mut LineBatch, bytes: &[u8], max: usize) {
        if bytes.is_empty() {
            return;
        }
        self.seen = true;
        if self.too_long {
            return;
        }
        if batch.bytes.len() - self.start + bytes.len() > max {
            self.too_long = true;
            batch.bytes.truncate(self.start);
        } else {
            batch.bytes.extend_from_slice(bytes);
        }
    }
}

/// Appends one line to `buf` (without its newline), keeping at most `max` bytes of it.
/// Returns `None` at end of input, else whether the line was longer than `max`; an overlong
/// line, or an I/O error, leaves `buf` as it was before the call.
pub fn read_capped_line(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    let start = buf.len();
    let mut seen_any = false;
    let mut too_long = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        if chunk.is_empty() {
            return Ok(seen_any.then_some(too_long));
        }
        seen_any = true;
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() - start + take > max {
                too_long = true;
                buf.truncate(start);
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(too_long));
        }
    }
}

/// Classifies one line's bytes.
pub fn parse_line(bytes: &[u8]) -> Line {
    let text = match line_text(bytes) {
        Ok(Some(text)) => text,
        Ok(None) => return Line::Blank,
        Err(bad) => return Line::Bad(bad),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(value) => match refuse_root(&value) {
            Ok(()) => Line::Event(value),
            Err(bad) => Line::Bad(bad),
        },
        Err(e) => Line::Bad(BadLine::Json(e.to_string())),
    }
}

/// A line's text without surrounding whitespace; `None` when that leaves nothing.
pub fn line_text(bytes: &[u8]) -> Result<Option<&str>, BadLine> {
    let text = simdutf8::basic::from_utf8(bytes)
        .map_err(|_| BadLine::Utf8)?
        .trim();
    Ok((!text.is_empty()).then_some(text))
}

/// Refuses a line's JSON value that is not an object.
pub fn refuse_root(value: &Value) -> Result<(), BadLine> {
    Err(BadLine::NotObject(match value {
        Value::Object(_) => return Ok(()),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    }))
}

/// Reads everything from a reader (used for small inputs in tests).
pub fn from_reader(r: impl Read + Send + 'static, max_line: usize) -> LineReader {
    LineReader::new(Box::new(BufReader::new(r)), max_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &'static [u8], max: usize) -> Vec<String> {
        let mut r = from_reader(input, max);
        let mut out = Vec::new();
        while let Some(item) = r.next_line() {
            out.push(match item {
                Ok((n, Line::Event(v))) => format!("{n}:event:{v}"),
                Ok((n, Line::Blank)) => format!("{n}:blank"),
                Ok((n, Line::Bad(b))) => format!("{n}:bad:{b}"),
                Err((n, e)) => format!("{n}:io:{e}"),
            });
        }
        out
    }

    #[test]
    fn classifies_every_line() {
        let input = b"{\"a\":1}\n\n[1]\n42\n{bad\n\xff\xfe\n{\"b\":2}";
        let got = lines(input, 1 << 20);
        assert_eq!(got.len(), 7);
        assert_eq!(got[0], r#"1:event:{"a":1}"#);
        assert_eq!(got[1], "2:blank");
        assert_eq!(got[2], "3:bad:expected a JSON object, found an array");
        assert_eq!(got[3], "4:bad:expected a JSON object, found a number");
        assert!(
            got[4].starts_with("5:bad:invalid JSON: key must be a string at line 1 column 2"),
            "{}",
            got[4]
        );
        assert_eq!(got[5], "6:bad:not valid UTF-8");
        assert_eq!(got[6], r#"7:event:{"b":2}"#);
    }

    #[test]
    fn overlong_lines_are_skipped_not_buffered() {
        let got = lines(b"{\"a\":\"0123456789\"}\n{\"b\":1}\n", 10);
        assert_eq!(
            got,
            vec!["1:bad:line longer than 10 bytes", r#"2:event:{"b":1}"#]
        );
    }

    #[test]
    fn batches_number_lines_on_and_keep_overlong_ones_as_markers() {
        let mut r = from_reader(&b"{\"a\":1}\n0123456789ab\n\n{\"b\":2}\n{\"c\":3}"[..], 10);
        let mut batch = LineBatch::default();
        assert!(!r.read_batch(&mut batch, 3).unwrap());
        let got: Vec<_> = batch
            .lines
            .iter()
            .map(|l| (l.number, l.too_long, batch.bytes_of(l).to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, false, b"{\"a\":1}".to_vec()),
                (2, true, Vec::new()),
                (3, false, Vec::new()),
            ]
        );
        batch.clear();
        assert!(r.read_batch(&mut batch, 3).unwrap());
        let numbers: Vec<_> = batch.lines.iter().map(|l| l.number).collect();
        assert_eq!(numbers, vec![4, 5]);
        assert_eq!(batch.bytes_of(&batch.lines[1]), b"{\"c\":3}");
    }

    #[test]
    fn batches_cut_lines_across_chunks_as_line_reads_do() {
        let input: &[u8] =
            b"{\"a\":1}\n\n0123456789abcdef\r\n{\"b\":2}\n\n\n12345678901\n{}\n  \n{\"c\":3}";
        for chunk in [1, 2, 3, 5, 7, 64] {
            for max_lines in [1, 2, 3, 100] {
                let mut by_line = from_reader(input, 10);
                let mut want = Vec::new();
                while let Some(Ok((number, _))) = by_line.next_line() {
                    want.push((number, by_line.buf.clone()));
                }
                let mut r = LineReader::new(Box::new(BufReader::with_capacity(chunk, input)), 10);
                let mut got = Vec::new();
                let mut batch = LineBatch::default();
                loop {
                    batch.clear();
                    let end = r.read_batch(&mut batch, max_lines).unwrap();
                    assert!(batch.lines.len() <= max_lines);
                    for line in &batch.lines {
                        let bytes = batch.bytes_of(line).to_vec();
                        // `next_line` keeps no bytes of an overlong line either.
                        got.push((line.number, if line.too_long { Vec::new() } else { bytes }));
                    }
                    if end {
                        break;
                    }
                }
                let want: Vec<_> = want
                    .into_iter()
                    .map(|(n, b)| (n, if b.len() > 10 { Vec::new() } else { b }))
                    .collect();
                assert_eq!(got, want, "chunks of {chunk}, {max_lines} lines a batch");
            }
        }
    }

    #[test]
    fn deep_nesting_is_a_bad_line() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let line = parse_line(format!("{{\"a\":{deep}}}").as_bytes());
        assert!(
            matches!(line, Line::Bad(BadLine::Json(ref e)) if e.contains("recursion limit")),
            "{line:?}"
        );
    }
}
