//! [`Source`]: where events come from. Files (plain or gzip) and stdin implement it
//! ([`FileSource`]); a Kafka partition will next.
//!
//! A source yields [`Input`]s: batches of lines, each line with an offset the source chooses
//! (a line number for files, a Kafka offset tomorrow), and lines it could not read. The core
//! sees a line's [`Position`] (the source's name and that offset) and only compares, stores
//! and displays it, never parses it (as rust-analyzer's core knows a `FileId`, not a path).
//!
//! With `eval --state`, what was read is the source's business too: [`Source::tracking`]
//! says how the state knows the source across runs, [`Source::resume`] skips what the
//! state already holds (or starts again, for a file rotated since), and the state records
//! the last position applied per source ([`track`] ties them to a [`StateBackend`]).

mod file;
#[cfg(feature = "serve")]
pub mod kafka;
mod position;
mod replay;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use file::FileSource;
pub use position::{Location, Position, STDIN_NAME, display_name};
pub use replay::Replay;

use crate::input::LineBatch;
use crate::state::backend::{BackendError, StateBackend};

/// One item a [`Source`] yields, in order; what `run_parallel` hands its workers.
#[derive(Debug)]
pub enum Input {
    /// A new input begins (counted in the summary's files).
    Started,
    /// Lines to parse and evaluate: a few hundred in one buffer, so that channels and
    /// allocations are per batch. Each line's number in the batch is its offset in the
    /// source ([`Position::offset`]).
    Lines {
        /// The source's name: the positions of these lines.
        source: Arc<str>,
        /// The lines.
        batch: LineBatch,
        /// The cap the reader applied, for the message of a line that was too long.
        max_line: usize,
    },
    /// A line the source could not read, and why.
    Bad(Position, String),
}

/// How a state knows a source across runs ([`Source::tracking`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// What the state files its progress under (a file's canonical path).
    pub key: String,
    /// What tells a later source under the same key apart from this one (a file's first
    /// line: a rotated log has another).
    pub identity: String,
}

/// What a state recorded of a source's key: the identity then, and the offset of the last
/// position it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// [`SourceKey::identity`] when it was recorded.
    pub identity: String,
    /// [`Position::offset`] of the last line applied into the state.
    pub offset: u64,
}

/// Whether a state follows a source across runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracking {
    /// Its progress is recorded under this key.
    Tracked(SourceKey),
    /// It is read anew every run; the note, if any, tells the user what that means.
    Untracked(Option<String>),
}

/// Why a source could not be tracked; each names the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Its name did not resolve to a key (a file's canonical path).
    #[error("failed to resolve `{name}`")]
    Resolve {
        /// The source.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading what identifies it failed.
    #[error("failed to read `{name}`")]
    Read {
        /// The source.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where events come from: yields batches of lines with the offsets it chooses.
pub trait Source: Send {
    /// The name every position of this source carries.
    fn name(&self) -> &Arc<str>;

    /// The next item: [`Input::Started`] first, then batches of lines and lines that could
    /// not be read, in order; `None` at the end.
    fn read(&mut self) -> Option<Input>;

    /// How a state knows this source across runs (untracked by default).
    fn tracking(&self) -> Result<Tracking, SourceError> {
        Ok(Tracking::Untracked(None))
    }

    /// Continues after what a state recorded under this source's `key`: skips the positions
    /// it applied, or starts over when [`Recorded::identity`] is not `key`'s. Returns
    /// what the user should be told, if anything.
    fn resume(&mut self, key: &SourceKey, recorded: &Recorded) -> Option<String> {
        let _ = (key, recorded);
        None
    }

    /// Bytes it will read in all, when known (a progress display's total).
    fn size(&self) -> Option<u64> {
        None
    }

    /// Bytes read so far (for a progress display).
    fn bytes_read(&self) -> u64 {
        0
    }
}

/// Why [`track`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// A source could not be identified.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The state could not be read.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Sources a state follows, by name: what a checkpoint records the progress of.
pub type Tracked = HashMap<Arc<str>, SourceKey>;

/// Looks each source up in `backend`: a source the state has read before resumes after it
/// ([`Source::resume`]); a second source with the key of an earlier one is dropped (its
/// lines would count twice). Returns the sources to read and those to track; `note`
/// receives what the user should be told, in order.
pub fn track<'a>(
    sources: Vec<Box<dyn Source + 'a>>,
    backend: &dyn StateBackend,
    note: &mut dyn FnMut(&str),
) -> Result<(Vec<Box<dyn Source + 'a>>, Tracked), TrackError> {
    let mut tracked = HashMap::new();
    let mut seen = HashSet::new();
    let mut keep = Vec::with_capacity(sources.len());
    for mut source in sources {
        let key = match source.tracking()? {
            Tracking::Untracked(message) => {
                if let Some(message) = message {
                    note(&message);
                }
                keep.push(source);
                continue;
            }
            Tracking::Tracked(key) => key,
        };
        if !seen.insert(key.key.clone()) {
            note(&format!(
                "`{}` is given twice; it is evaluated once",
                source.name()
            ));
            continue;
        }
        if let Some(recorded) = backend.progress(&key.key)?
            && let Some(message) = source.resume(&key, &recorded)
        {
            note(&message);
        }
        tracked.insert(source.name().clone(), key);
        keep.push(source);
    }
    Ok((keep, tracked))
}
