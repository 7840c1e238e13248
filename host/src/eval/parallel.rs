//! [`run_parallel`]: reads the sources, and runs worker threads that parse and call rules
//! and the one ordered stage.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use super::Evaluator;
use super::summary::Summary;
use super::verdict::Judged;
use super::worker::CHECK_EVERY_BATCHES;
use crate::source::{Input, Source};

/// How far a [`run_parallel`] has got, for a progress display on another thread
/// ([`Evaluator::with_progress`]).
#[derive(Debug, Default)]
pub struct Progress {
    events: AtomicU64,
    alerts: AtomicU64,
    bytes_read: AtomicU64,
}

impl Progress {
    /// Events applied so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Alerts written so far.
    pub fn alerts(&self) -> u64 {
        self.alerts.load(Ordering::Relaxed)
    }

    /// Bytes the sources have read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
}

/// Evaluates what `sources` yield, in order, with `threads` worker threads (at least 1)
/// and an ordered alert stage: the output is byte-identical to [`Evaluator::event`] over
/// the same input.
pub fn run_parallel<'a>(
    evaluator: Evaluator<'a>,
    threads: usize,
    sources: Vec<Box<dyn Source + 'a>>,
) -> io::Result<Summary> {
    let Evaluator {
        worker,
        mut stage,
        settings,
        progress,
    } = evaluator;
    let threads = threads.max(1);
    let (work_tx, work_rx) = sync_channel::<(u64, u64, Input)>(threads * 4);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<(u64, Judged)>(threads * 4);
    std::thread::scope(|scope| -> io::Result<Summary> {
        for _ in 0..threads {
            let mut worker = worker.fork(&settings);
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = rx.lock().expect("worker queue").recv();
                    let Ok((seq, batch_seq, item)) = next else {
                        break;
                    };
                    let evaluated = match item {
                        Input::Started => Judged::FileStarted,
                        Input::Bad(location, reason) => Judged::Bad { location, reason },
                        Input::Lines {
                            source,
                            batch,
                            max_line,
                        } => {
                            let sampled = batch_seq.is_multiple_of(CHECK_EVERY_BATCHES);
                            worker.lines(source, batch, max_line, sampled)
                        }
                    };
                    if tx.send((seq, evaluated)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let stage_progress = progress.clone();
        let stage_thread = scope.spawn(move || -> io::Result<Summary> {
            let mut pending: BTreeMap<u64, Judged> = BTreeMap::new();
            let mut next = 0u64;
            for (seq, item) in done_rx {
                pending.insert(seq, item);
                while let Some(item) = pending.remove(&next) {
                    stage.apply(item)?;
                    next += 1;
                }
                if let Some(progress) = &stage_progress {
                    progress
                        .events
                        .store(stage.summary.events, Ordering::Relaxed);
                    let alerts = stage.rules.iter().map(|r| r.stats.alerts).sum();
                    progress.alerts.store(alerts, Ordering::Relaxed);
                }
            }
            stage.finish()
        });
        // Line batches are numbered apart from other items, in input order: which of them
        // are sampled ([`CHECK_EVERY_BATCHES`]) depends only on the input.
        let mut batches = 0u64;
        let mut seq = 0u64;
        let mut bytes_before = 0u64;
        'sources: for mut source in sources {
            while let Some(item) = source.read() {
                let batch_seq = batches;
                if let Input::Lines { .. } = item {
                    batches += 1;
                }
                if let Some(progress) = &progress {
                    let read = bytes_before + source.bytes_read();
                    progress.bytes_read.store(read, Ordering::Relaxed);
                }
                if work_tx.send((seq, batch_seq, item)).is_err() {
                    break 'sources;
                }
                seq += 1;
            }
            bytes_before += source.bytes_read();
        }
        drop(work_tx);
        stage_thread.join().expect("alert stage thread")
    })
}
