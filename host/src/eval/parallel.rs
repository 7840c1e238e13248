//! [`run_parallel`]: worker threads that parse and call rules, and the one ordered stage.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use super::Evaluator;
use super::summary::Summary;
use super::verdict::Judged;
use super::worker::CHECK_EVERY_BATCHES;
use crate::alert::Location;
use crate::input::LineBatch;

/// One item of input for [`run_parallel`].
#[derive(Debug)]
pub enum Input {
    /// A new file begins.
    FileStarted,
    /// Lines of the current file, to parse and evaluate ([`LineReader::read_batch`]:
    /// a few hundred lines in one buffer, so that channels and allocations are per batch).
    ///
    /// [`LineReader::read_batch`]: crate::input::LineReader::read_batch
    Lines {
        /// The file's name as given.
        file: Arc<str>,
        /// The lines.
        batch: LineBatch,
        /// The cap the reader applied, for the message of a line that was too long.
        max_line: usize,
    },
    /// A line already classified (unreadable).
    Bad(Location, String),
}

/// Evaluates `input` with `threads` worker threads (at least 1) and an ordered alert stage:
/// the output is byte-identical to [`Evaluator::event`] over the same input.
pub fn run_parallel<W: Write + Send>(
    evaluator: Evaluator<W>,
    threads: usize,
    input: impl Iterator<Item = Input>,
) -> io::Result<Summary> {
    let Evaluator {
        worker,
        mut stage,
        settings,
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
                        Input::FileStarted => Judged::FileStarted,
                        Input::Bad(location, reason) => Judged::Bad { location, reason },
                        Input::Lines {
                            file,
                            batch,
                            max_line,
                        } => {
                            let sampled = batch_seq.is_multiple_of(CHECK_EVERY_BATCHES);
                            worker.lines(file, batch, max_line, sampled)
                        }
                    };
                    if tx.send((seq, evaluated)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let stage_thread = scope.spawn(move || -> io::Result<Summary> {
            let mut pending: BTreeMap<u64, Judged> = BTreeMap::new();
            let mut next = 0u64;
            for (seq, item) in done_rx {
                pending.insert(seq, item);
                while let Some(item) = pending.remove(&next) {
                    stage.apply(item)?;
                    next += 1;
                }
            }
            stage.finish()
        });
        // Line batches are numbered apart from other items, in input order: which of them
        // are sampled ([`CHECK_EVERY_BATCHES`]) depends only on the input.
        let mut batches = 0u64;
        for (seq, item) in (0u64..).zip(input) {
            let batch_seq = batches;
            if let Input::Lines { .. } = item {
                batches += 1;
            }
            if work_tx.send((seq, batch_seq, item)).is_err() {
                break;
            }
        }
        drop(work_tx);
        stage_thread.join().expect("alert stage thread")
    })
}
