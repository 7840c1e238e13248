//! [`Sink`]: where alert, rule-error and signal records go. JSON lines to a file or stdout
//! ([`JsonLines`]) and memory ([`MemorySink`], for tests) implement it; a Kafka topic or a
//! webhook will next, each in its own file (as ripgrep's printers implement its `Sink`).
//!
//! A checkpoint of `eval --state` records how far the sink had got ([`Sink::sync`] returns
//! a [`SinkMark`], opaque to the core) and, at the start of a run, where it writes
//! ([`SinkTarget`]). After a crash, [`recover`] hands the recorded target to the kind of
//! sink that wrote it, which alone knows what its mark means (JSON lines: cut the file back
//! to that length). Each sink states what that gives ([`Delivery`]).

mod jsonl;
#[cfg(feature = "serve")]
mod kafka;
mod memory;

use std::io::{self, BufWriter};
use std::path::PathBuf;

use serde::Serialize;

pub use jsonl::JsonLines;
#[cfg(feature = "serve")]
pub use kafka::KafkaSink;
pub use memory::MemorySink;

use crate::alert::{AlertRecord, SignalRecord};

/// One record for a sink.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum Record<'r> {
    /// An alert or a rule error (its `kind` says which).
    Alert(&'r AlertRecord<'r>),
    /// A match of a `CreateAlert: false` rule.
    Signal(&'r SignalRecord<'r>),
}

impl Record<'_> {
    /// The stable id a downstream consumer deduplicates by (`alert_id`); signals have none.
    pub fn alert_id(&self) -> Option<&str> {
        match self {
            Record::Alert(record) => Some(&record.alert_id),
            Record::Signal(_) => None,
        }
    }
}

/// How far a sink had delivered at a checkpoint. What it counts is the sink's own (JSON
/// lines: the file's length); only the sink kind that wrote it reads it back ([`recover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SinkMark(pub u64);

/// Where a sink writes, as a state records it for recovery after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkTarget {
    /// The sink kind that wrote it (`jsonl` for [`JsonLines`]): it alone reads `target` and `mark`.
    pub kind: String,
    /// Where (a JSON-lines file: its canonical path). Data from the state, never trusted
    /// to name a file to change by itself.
    pub target: String,
    /// How far it had got.
    pub mark: SinkMark,
}

/// What a sink promises about records written after the last checkpoint when a run is
/// killed and the next run resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// With a state each record is delivered once: recovery removes what was written after
    /// the last checkpoint, and the resumed run writes it again (a JSON-lines file that the
    /// resuming run writes too).
    ExactlyOnceWithState,
    /// Records after the last checkpoint may be delivered again by the resumed run, with
    /// the same `alert_id` to deduplicate by (stdout, memory, a message queue).
    AtLeastOnce,
}

/// Where records go; see the module docs.
pub trait Sink: Send {
    /// Writes one record.
    fn write(&mut self, record: &Record<'_>) -> io::Result<()>;

    /// Hands what was written on (a buffered writer's flush): the end of a run without a
    /// state.
    fn flush(&mut self) -> io::Result<()>;

    /// Makes what was written durable and returns how far that is: what a checkpoint
    /// records with the state, so that a resumed run starts from both together.
    fn sync(&mut self) -> io::Result<SinkMark>;

    /// What a resumed run promises about records after the last checkpoint.
    fn delivery(&self) -> Delivery;

    /// Where it writes and its mark now, when a later run could find it again to recover
    /// it; `None` for a stream (stdout, memory).
    fn target(&self) -> Option<SinkTarget> {
        None
    }
}

/// Where this run's records go, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// stdout.
    Stdout,
    /// A file (`-o PATH`).
    File(PathBuf),
}

/// Why a sink could not be opened or recovered; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Creating the output failed.
    #[error("failed to create `{}`", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the output's length failed.
    #[error("failed to read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Its canonical path could not be found.
    #[error("failed to resolve `{}`", path.display())]
    Resolve {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Syncing the output to disk failed.
    #[error("failed to sync `{}`", path.display())]
    Sync {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Opening the output failed.
    #[error("failed to open `{}`", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Cutting the output back to its last checkpoint failed.
    #[error("failed to truncate `{}`", path.display())]
    Truncate {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Opens the sink for `output`: a file is appended to when a state records it, else
/// created; stdout is a stream.
pub fn open(output: &Output, with_state: bool) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match (output, with_state) {
        (Output::File(path), true) => Box::new(JsonLines::append(path)?),
        (Output::File(path), false) => Box::new(JsonLines::create(path)?),
        (Output::Stdout, _) => Box::new(JsonLines::new(BufWriter::new(io::stdout()))),
    })
}

/// After a run that was killed, recovers the sink it wrote to (`recorded`) through that sink's
/// kind, given where this run writes. Returns what the user should be told.
pub fn recover(recorded: &SinkTarget, this_run: &Output) -> Result<Option<String>, SinkError> {
    match recorded.kind.as_str() {
        jsonl::KIND => jsonl::recover(recorded, this_run),
        kind => Ok(Some(format!(
            "the last run on this state was interrupted while writing to {kind} `{}`, which \
             this rulehost cannot recover: records after its last checkpoint may be \
             duplicated",
            recorded.target
        ))),
    }
}
