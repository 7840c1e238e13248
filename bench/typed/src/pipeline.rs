//! [`run`]: input files, in blocks of whole lines, through [`evaluate`] (parse and match,
//! on `threads` workers) and then, in input order, through [`Windows`].
//!
//! A worker turns a block into the matches found in it, each with its event's time and
//! the newest time seen earlier in the block, so that the windows (on the calling thread)
//! see time move exactly as they would one event at a time. Dedup and unique strings go
//! into one string per block: no allocation per match.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::event::Line;
use crate::rules;
use crate::windows::{Alert, Windows};

/// Bytes read at a time; a block holds the whole lines among them.
const BLOCK_BYTES: usize = 1 << 20;
/// Bad lines reported one by one; the rest are counted.
const REPORTED_BAD_LINES: u64 = 20;

/// What a run counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Input files read.
    pub files: u64,
    /// Inputs that could not be read.
    pub unreadable: u64,
    /// Events (JSON objects).
    pub events: u64,
    /// Empty or whitespace-only lines.
    pub blank_lines: u64,
    /// Lines skipped: not UTF-8, not JSON, or not an object.
    pub bad_lines: u64,
}

/// One match, as a worker found it.
#[derive(Debug, Clone, Copy)]
struct Found {
    /// The newest event time in the block before this event.
    before: Option<i64>,
    /// This event's time.
    time: Option<i64>,
    rule: usize,
    /// Ranges in [`Evaluated::strings`].
    dedup: (usize, usize),
    unique: Option<(usize, usize)>,
}

/// What a worker made of a block.
#[derive(Debug, Default)]
pub struct Evaluated {
    found: Vec<Found>,
    strings: String,
    /// The newest event time in the block.
    newest: Option<i64>,
    lines: u64,
    events: u64,
    blank_lines: u64,
    /// (line index in the block, why).
    bad: Vec<(u64, String)>,
}

/// Parses and matches every line of `block`.
pub fn evaluate(block: &[u8]) -> Evaluated {
    let mut out = Evaluated::default();
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', block)
        .chain((block.last() != Some(&b'\n')).then_some(block.len()));
    for end in ends {
        let line = &block[start..end];
        start = end + 1;
        let index = out.lines;
        out.lines += 1;
        let event = match Line::parse(line) {
            Line::Event(event) => event,
            Line::Blank => {
                out.blank_lines += 1;
                continue;
            }
            Line::Bad(why) => {
                out.bad.push((index, why));
                continue;
            }
        };
        out.events += 1;
        let time = event.time_ms();
        let before = out.newest;
        let (found, strings) = (&mut out.found, &mut out.strings);
        rules::evaluate(&event, |rule, dedup, unique| {
            let mut keep = |s: &str| {
                strings.push_str(s);
                (strings.len() - s.len(), strings.len())
            };
            found.push(Found {
                before,
                time,
                rule,
                dedup: keep(dedup),
                unique: unique.map(keep),
            });
        });
        out.newest = out.newest.max(time);
    }
    out
}

/// Feeds the windows, in input order, from evaluated blocks; writes alerts as they close.
struct Stage<'a> {
    windows: Windows,
    totals: Totals,
    emit: &'a mut dyn FnMut(&Alert) -> io::Result<()>,
}

impl Stage<'_> {
    fn feed(&mut self, file: &str, first_line: u64, block: &Evaluated) -> io::Result<()> {
        for f in &block.found {
            if let Some(before) = f.before {
                self.windows.advance(before);
            }
            let dedup = &block.strings[f.dedup.0..f.dedup.1];
            let unique = f.unique.map(|(a, b)| &block.strings[a..b]);
            self.windows.matched(f.time, f.rule, dedup, unique);
        }
        if let Some(newest) = block.newest {
            self.windows.advance(newest);
        }
        for alert in self.windows.take_closed() {
            (self.emit)(&alert)?;
        }
        let t = &mut self.totals;
        t.events += block.events;
        t.blank_lines += block.blank_lines;
        for (index, why) in &block.bad {
            t.bad_lines += 1;
            if t.bad_lines <= REPORTED_BAD_LINES {
                eprintln!(
                    "warning: `{file}:{}`: skipped: {why}",
                    first_line + index + 1
                );
            }
        }
        Ok(())
    }
}

/// Reads `file` in blocks of whole lines; `each(block)` sees them in order, and stops the
/// reading by returning false.
fn blocks(file: &mut dyn Read, mut each: impl FnMut(Vec<u8>) -> bool) -> io::Result<()> {
    let mut buf = Vec::with_capacity(BLOCK_BYTES);
    loop {
        let filled = buf.len();
        buf.resize(filled.max(BLOCK_BYTES / 2) + BLOCK_BYTES / 2, 0);
        let n = read_full(file, &mut buf[filled..])?;
        buf.truncate(filled + n);
        if n == 0 {
            if !buf.is_empty() {
                each(buf);
            }
            return Ok(());
        }
        // A line longer than the block grows the buffer until its newline is in.
        if let Some(last) = memchr::memrchr(b'\n', &buf[filled..]) {
            let cut = filled + last + 1;
            let mut next = Vec::with_capacity(BLOCK_BYTES);
            next.extend_from_slice(&buf[cut..]);
            buf.truncate(cut);
            if !each(std::mem::replace(&mut buf, next)) {
                return Ok(());
            }
        }
    }
}

fn read_full(file: &mut dyn Read, mut buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while !buf.is_empty() {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// A block on its way: which file, its position, its bytes or what became of them.
struct Job<T> {
    seq: u64,
    file: usize,
    body: T,
}

/// Evaluates `inputs` on `threads` workers (1: on the calling thread), calling `emit` for
/// each alert in the order rulehost writes them; returns the totals.
pub fn run(
    inputs: &[PathBuf],
    threads: usize,
    windows: Windows,
    emit: &mut dyn FnMut(&Alert) -> io::Result<()>,
) -> io::Result<Totals> {
    let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let mut stage = Stage {
        windows,
        totals: Totals::default(),
        emit,
    };
    let mut lines = vec![0u64; inputs.len()];
    if threads <= 1 {
        for (i, path) in inputs.iter().enumerate() {
            let Some(mut file) = open(path, &mut stage.totals) else {
                continue;
            };
            let mut fed = Ok(());
            let read = blocks(&mut file, |block| {
                let evaluated = evaluate(&block);
                fed = stage.feed(&names[i], lines[i], &evaluated);
                lines[i] += evaluated.lines;
                fed.is_ok()
            });
            fed?;
            if let Err(e) = read {
                read_failed(path, &e, &mut stage.totals);
            }
        }
    } else {
        parallel(inputs, threads, &names, &mut stage, &mut lines)?;
    }
    for alert in stage.windows.finish() {
        (stage.emit)(&alert)?;
    }
    Ok(stage.totals)
}

fn open(path: &Path, totals: &mut Totals) -> Option<File> {
    match File::open(path) {
        Ok(f) => {
            totals.files += 1;
            Some(f)
        }
        Err(e) => {
            eprintln!("error: failed to open `{}`: {e}", path.display());
            totals.unreadable += 1;
            None
        }
    }
}

fn read_failed(path: &Path, error: &io::Error, totals: &mut Totals) {
    eprintln!("error: failed to read `{}`: {error}", path.display());
    totals.unreadable += 1;
}

fn parallel(
    inputs: &[PathBuf],
    threads: usize,
    names: &[String],
    stage: &mut Stage,
    lines: &mut [u64],
) -> io::Result<()> {
    // Two blocks in flight per worker: enough to keep them busy, and memory stays
    // threads × a few MiB whatever the input size.
    let (raw_tx, raw_rx) = sync_channel::<Job<Vec<u8>>>(2 * threads);
    let (done_tx, done_rx) = sync_channel::<Job<Evaluated>>(2 * threads);
    let raw_rx = Arc::new(Mutex::new(raw_rx));
    std::thread::scope(move |scope| {
        for _ in 0..threads {
            let (raw_rx, done_tx) = (Arc::clone(&raw_rx), done_tx.clone());
            scope.spawn(move || work(&raw_rx, &done_tx));
        }
        // Only the workers hold the channels now: when the stage stops early, they stop,
        // and then so does the reader.
        drop((raw_rx, done_tx));
        let reader = scope.spawn(move || {
            let mut totals = Totals::default();
            let mut seq = 0;
            for (i, path) in inputs.iter().enumerate() {
                let Some(mut file) = open(path, &mut totals) else {
                    continue;
                };
                let mut sent = true;
                let read = blocks(&mut file, |body| {
                    // A send fails only when the workers are gone (the stage failed).
                    sent = raw_tx.send(Job { seq, file: i, body }).is_ok();
                    seq += 1;
                    sent
                });
                if let Err(e) = read {
                    read_failed(path, &e, &mut totals);
                }
                if !sent {
                    break;
                }
            }
            totals
        });
        let fed = in_order(&done_rx, stage, names, lines);
        drop(done_rx);
        let read = reader.join().expect("the reader does not panic");
        stage.totals.files += read.files;
        stage.totals.unreadable += read.unreadable;
        fed
    })
}

fn work(raw: &Mutex<Receiver<Job<Vec<u8>>>>, done: &SyncSender<Job<Evaluated>>) {
    loop {
        let job = raw
            .lock()
            .expect("no worker panics holding the lock")
            .recv();
        let Ok(Job { seq, file, body }) = job else {
            return;
        };
        let body = evaluate(&body);
        if done.send(Job { seq, file, body }).is_err() {
            return;
        }
    }
}

fn in_order(
    done: &Receiver<Job<Evaluated>>,
    stage: &mut Stage,
    names: &[String],
    lines: &mut [u64],
) -> io::Result<()> {
    let mut next = 0;
    let mut waiting = BTreeMap::new();
    for job in done {
        waiting.insert(job.seq, job);
        while let Some(job) = waiting.remove(&next) {
            next += 1;
            stage.feed(&names[job.file], lines[job.file], &job.body)?;
            lines[job.file] += job.body.lines;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RULES;

    fn alerts(input: &[u8], threads: usize) -> (Vec<Alert>, Totals) {
        let dir = std::env::temp_dir().join(format!(
            "rulehost-typed-{}-{threads}-{}",
            std::process::id(),
            input.len()
        ));
        std::fs::write(&dir, input).unwrap();
        let mut out = Vec::new();
        let totals = run(
            std::slice::from_ref(&dir),
            threads,
            Windows::new(&RULES),
            &mut |a| {
                out.push(a.clone());
                Ok(())
            },
        )
        .unwrap();
        std::fs::remove_file(dir).unwrap();
        (out, totals)
    }

    #[test]
    fn blocks_keep_lines_whole_and_threads_agree() {
        let mut input = Vec::new();
        for i in 0..40_000u64 {
            let ws = i % 7;
            let user = i % 13;
            input.extend_from_slice(
                format!(
                    r#"{{"timestamp":{},"workspaceId":"{ws}","userIdentity":{{"email":"u{user}"}},"pad":"{}"}}"#,
                    i * 1000,
                    "x".repeat((i % 97) as usize)
                )
                .as_bytes(),
            );
            input.push(b'\n');
            if i % 5000 == 0 {
                input.extend_from_slice(b"not json\n\n");
            }
        }
        input.extend_from_slice(br#"{"timestamp":1,"actionName":"installLibraryOnAllClusters"}"#);
        let (one, totals) = alerts(&input, 1);
        let (two, _) = alerts(&input, 2);
        assert_eq!(one, two);
        assert_eq!(
            (totals.events, totals.bad_lines, totals.blank_lines),
            (40_001, 8, 8)
        );
        // 13 users, 7 workspaces each, all within a day: one alert each; and the install
        // (its time is older than the newest seen: it opens a window at its own time).
        assert_eq!(one.len(), 13 + 1);
    }
}
