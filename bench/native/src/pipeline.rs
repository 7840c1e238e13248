//! [`run`]: input files through [`match_event`] and [`Windows`], on one thread or on
//! `threads` workers.
//!
//! With one thread this is `rulehost eval`'s loop: [`LineReader`] parses each line, then the
//! rules and the windows see the event. With more, a reader thread cuts the input into
//! batches of raw lines (with [`LineReader`]'s line cap), workers parse and match batches
//! in parallel, and the calling thread puts the batches back in input order and runs the
//! windows: the output is the same byte for byte.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use rulehost::clock::Clock;
use rulehost::eval::{Location, Summary};
use rulehost::input::{BadLine, Line, LineReader, parse_line, read_capped_line};

use crate::engine::{EventRef, Match, Rule, Windows, match_event};

/// How to read the input.
#[derive(Debug, Clone)]
pub struct Settings {
    /// JSON-lines files, plain or `.gz`; `-` is stdin.
    pub inputs: Vec<PathBuf>,
    /// Event time fields.
    pub clock: Clock,
    /// Longer lines are skipped and reported.
    pub max_line_bytes: usize,
    /// Worker threads; 1 runs everything on the calling thread.
    pub threads: usize,
}

/// What a run counted.
#[derive(Debug)]
pub struct Outcome {
    /// Totals, as `rulehost eval` counts them.
    pub summary: Summary,
    /// Inputs that could not be opened.
    pub unreadable: u64,
}

/// Evaluates every input with `rules`, writing alert records to `out`.
pub fn run<W: Write>(rules: Vec<Rule>, settings: &Settings, out: W) -> io::Result<Outcome> {
    let windows = Windows::new(rules.into(), out);
    if settings.threads <= 1 {
        sequential(windows, settings)
    } else {
        parallel(windows, settings)
    }
}

fn open_failed(path: &Path, error: &dyn std::fmt::Display) {
    eprintln!("error: failed to open `{}`: {error}", path.display());
}

fn read_error(error: &dyn std::fmt::Display) -> String {
    format!("read error, rest of file skipped: {error}")
}

fn sequential<W: Write>(mut windows: Windows<W>, settings: &Settings) -> io::Result<Outcome> {
    let rules = windows.rules().clone();
    let mut unreadable = 0;
    let mut matches = Vec::new();
    for path in &settings.inputs {
        let file: Arc<str> = path.display().to_string().into();
        let mut reader = match LineReader::open(path, settings.max_line_bytes) {
            Ok(r) => r,
            Err(e) => {
                open_failed(path, &e);
                unreadable += 1;
                continue;
            }
        };
        windows.file_started();
        while let Some(item) = reader.next_line() {
            let (line, parsed) = match item {
                Ok(ok) => ok,
                Err((line, e)) => {
                    let location = Location { file, line };
                    windows.bad_line(&location, &read_error(&e));
                    break;
                }
            };
            let location = Location {
                file: file.clone(),
                line,
            };
            match parsed {
                Line::Event(event) => {
                    let time = settings.clock.event_time_ms(&event);
                    match_event(&rules, &event, &mut matches);
                    let event = EventRef::Parsed(&event);
                    windows.event(&location, time, event, matches.drain(..))?;
                }
                Line::Blank => windows.blank_line(),
                Line::Bad(reason) => windows.bad_line(&location, &reason),
            }
        }
    }
    Ok(Outcome {
        summary: windows.finish()?,
        unreadable,
    })
}

/// Lines per batch: large enough that channel and reorder costs vanish, small enough to
/// keep every worker busy.
const BATCH_LINES: usize = 1024;

/// A piece of input, numbered in input order.
struct Chunk {
    seq: u64,
    file: Arc<str>,
    body: Body,
}

enum Body {
    /// A file was opened.
    Opened,
    /// A file could not be opened.
    OpenFailed(PathBuf, String),
    /// Raw lines, before workers run; parsed and matched after.
    Raw(RawLines),
    Evaluated(Evaluated),
    /// Reading stopped at this line.
    ReadError(u64, String),
}

/// Lines as bytes, all in one buffer.
#[derive(Default)]
struct RawLines {
    bytes: Vec<u8>,
    /// (line number, byte range, longer than the cap).
    lines: Vec<(u64, usize, usize, bool)>,
}

struct Evaluated {
    /// The lines, for the rare match that opens a window.
    raw: RawLines,
    items: Vec<Item>,
    /// Every item's matches, in order.
    matches: Vec<Match>,
}

enum Item {
    Event {
        /// Index into `RawLines::lines`.
        index: usize,
        time: Option<i64>,
        matches: usize,
    },
    Blank,
    Bad(u64, BadLine),
}

fn parallel<W: Write>(mut windows: Windows<W>, settings: &Settings) -> io::Result<Outcome> {
    let rules = windows.rules().clone();
    let depth = 2 * settings.threads + 2;
    std::thread::scope(|scope| {
        let (raw_tx, raw_rx) = sync_channel::<Chunk>(depth);
        let (done_tx, done_rx) = sync_channel::<Chunk>(depth);
        scope.spawn(move || read_inputs(settings, &raw_tx));
        let raw_rx = Arc::new(Mutex::new(raw_rx));
        for _ in 0..settings.threads {
            let (raw_rx, done_tx, rules) = (raw_rx.clone(), done_tx.clone(), &rules);
            scope.spawn(move || work(&raw_rx, &done_tx, rules, settings));
        }
        drop(done_tx);
        // On an output error `done_rx` is dropped: workers, then the reader, stop on their
        // next send.
        let unreadable = in_order(&done_rx, &mut windows)?;
        Ok(Outcome {
            summary: windows.finish()?,
            unreadable,
        })
    })
}

fn read_inputs(settings: &Settings, tx: &SyncSender<Chunk>) {
    let mut seq = 0;
    let mut send = |file: &Arc<str>, body| {
        let chunk = Chunk {
            seq,
            file: file.clone(),
            body,
        };
        seq += 1;
        tx.send(chunk).is_ok()
    };
    for path in &settings.inputs {
        let file: Arc<str> = path.display().to_string().into();
        let mut reader = match open(path) {
            Ok(r) => r,
            Err(e) => {
                if !send(&file, Body::OpenFailed(path.clone(), e.to_string())) {
                    return;
                }
                continue;
            }
        };
        if !send(&file, Body::Opened) {
            return;
        }
        let mut number = 0;
        // Sized like rulehost's batches: room for the batch before plus 1/8.
        let mut last_size = 0;
        loop {
            let mut batch = RawLines {
                bytes: Vec::with_capacity(last_size + last_size / 8),
                lines: Vec::with_capacity(BATCH_LINES),
            };
            let result = read_batch(
                &mut reader,
                settings.max_line_bytes,
                &mut number,
                &mut batch,
            );
            let end = !matches!(result, Ok(false));
            last_size = batch.bytes.len();
            if !batch.lines.is_empty() && !send(&file, Body::Raw(batch)) {
                return;
            }
            if let Err(e) = result
                && !send(&file, Body::ReadError(number + 1, read_error(&e)))
            {
                return;
            }
            if end {
                break;
            }
        }
    }
}

/// `LineReader::open` without the parsing.
fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(io::stdin())));
    }
    let file = File::open(path)?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            256 << 10,
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
        ))
    } else {
        Box::new(BufReader::with_capacity(256 << 10, file))
    })
}

/// Reads up to [`BATCH_LINES`] lines (as `LineReader` cuts them); `Ok(true)` at the end of
/// the input. `number` is the last line number read.
fn read_batch(
    reader: &mut dyn BufRead,
    max: usize,
    number: &mut u64,
    batch: &mut RawLines,
) -> io::Result<bool> {
    while batch.lines.len() < BATCH_LINES {
        let start = batch.bytes.len();
        match read_capped_line(reader, &mut batch.bytes, max)? {
            None => return Ok(true),
            Some(too_long) => {
                *number += 1;
                batch
                    .lines
                    .push((*number, start, batch.bytes.len(), too_long));
            }
        }
    }
    Ok(false)
}

fn work(
    raw: &Mutex<Receiver<Chunk>>,
    done: &SyncSender<Chunk>,
    rules: &[Rule],
    settings: &Settings,
) {
    loop {
        let received = raw
            .lock()
            .expect("no worker panics holding the lock")
            .recv();
        let Ok(mut chunk) = received else {
            return;
        };
        if let Body::Raw(lines) = chunk.body {
            chunk.body = Body::Evaluated(evaluate(lines, rules, settings));
        }
        if done.send(chunk).is_err() {
            return;
        }
    }
}

fn evaluate(raw: RawLines, rules: &[Rule], settings: &Settings) -> Evaluated {
    let mut items = Vec::with_capacity(raw.lines.len());
    let mut matches = Vec::new();
    for (index, &(line, start, end, too_long)) in raw.lines.iter().enumerate() {
        let parsed = if too_long {
            Line::Bad(BadLine::TooLong(settings.max_line_bytes))
        } else {
            parse_line(&raw.bytes[start..end])
        };
        items.push(match parsed {
            Line::Event(event) => {
                let before = matches.len();
                match_event(rules, &event, &mut matches);
                let count = matches.len() - before;
                // The event is dropped here, on the thread that allocated it.
                Item::Event {
                    index,
                    time: settings.clock.event_time_ms(&event),
                    matches: count,
                }
            }
            Line::Blank => Item::Blank,
            Line::Bad(reason) => Item::Bad(line, reason),
        });
    }
    Evaluated {
        raw,
        items,
        matches,
    }
}

/// Feeds evaluated chunks to the windows in input order; returns the unreadable inputs.
fn in_order<W: Write>(done: &Receiver<Chunk>, windows: &mut Windows<W>) -> io::Result<u64> {
    let mut next = 0;
    let mut waiting = BTreeMap::new();
    let mut unreadable = 0;
    for chunk in done {
        waiting.insert(chunk.seq, chunk);
        while let Some(chunk) = waiting.remove(&next) {
            next += 1;
            let file = chunk.file;
            match chunk.body {
                Body::Opened => windows.file_started(),
                Body::OpenFailed(path, e) => {
                    open_failed(&path, &e);
                    unreadable += 1;
                }
                Body::ReadError(line, reason) => {
                    windows.bad_line(&Location { file, line }, &reason)
                }
                Body::Evaluated(batch) => feed(windows, &file, batch)?,
                Body::Raw(_) => unreachable!("workers evaluate every batch"),
            }
        }
    }
    Ok(unreadable)
}

fn feed<W: Write>(windows: &mut Windows<W>, file: &Arc<str>, batch: Evaluated) -> io::Result<()> {
    let mut matches = batch.matches.into_iter();
    for item in batch.items {
        match item {
            Item::Event {
                index,
                time,
                matches: count,
            } => {
                let (line, start, end, _) = batch.raw.lines[index];
                let location = Location {
                    file: file.clone(),
                    line,
                };
                let event = EventRef::Line(&batch.raw.bytes[start..end]);
                windows.event(&location, time, event, matches.by_ref().take(count))?;
            }
            Item::Blank => windows.blank_line(),
            Item::Bad(line, reason) => windows.bad_line(
                &Location {
                    file: file.clone(),
                    line,
                },
                &reason,
            ),
        }
    }
    Ok(())
}
