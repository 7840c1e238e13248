//! [`StateBackend`]: where the alert state goes between runs. SQLite ([`super::sqlite`],
//! `eval --state PATH`) and memory ([`super::memory`]) implement it; Redis will next. The
//! alert stage restores from it and commits [`Checkpoint`]s to it (through
//! [`super::checkpoint::Checkpointer`]) and never names the backend, as spin's key-value
//! host calls a `StoreManager` and never Redis or SQLite.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AlertState, Counters, Window, WindowKey};
use crate::alert::WindowFields;
use crate::input::LineBatch;
use crate::sink::{SinkMark, SinkTarget};
use crate::source::{Input, Position, Recorded, SourceKey};

/// A backend's error; it names the state (the backend's own error, e.g.
/// [`super::sqlite::SqliteError`], is its source).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    /// Wraps a backend's own error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError(Box::new(error))
    }

    /// The backend's own error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

/// The windows of one state, restored for the rules of this run.
pub struct Restored {
    /// The live windows of the loaded rules, and the counters.
    pub state: AlertState<Position, WindowFields>,
    /// Rules with windows in the state that this run does not load: (RuleID, windows).
    /// Their windows are kept as they are.
    pub other_rules: Vec<(String, u64)>,
    /// An event the last run held, undecided: evaluate it first.
    pub held: Option<HeldLine>,
}

/// An input line whose event time was too far ahead of the event-time clock to trust
/// before the next event, when a run ended without one: the state keeps it for the next
/// run, whose first event decides it (`crate::eval`'s clock guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLine {
    /// Where it came from.
    pub position: Position,
    /// The line.
    pub text: String,
}

impl HeldLine {
    /// The line as a source of one line, to evaluate before any other.
    pub fn into_source(self) -> crate::source::Replay {
        let mut batch = LineBatch::default();
        batch.push_line(self.position.offset, self.text.as_bytes());
        let source = self.position.source;
        let lines = Input::Lines {
            source: source.clone(),
            batch,
            max_line: usize::MAX,
        };
        crate::source::Replay::new(source, [lines])
    }
}

/// [`HeldLine`] as backends store it (the layout of rulehost 0.1's `held_line`).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredHeld {
    file: String,
    line: u64,
    text: String,
}

impl From<&HeldLine> for StoredHeld {
    fn from(held: &HeldLine) -> Self {
        StoredHeld {
            file: held.position.source.to_string(),
            line: held.position.offset,
            text: held.text.clone(),
        }
    }
}

impl From<StoredHeld> for HeldLine {
    fn from(held: StoredHeld) -> Self {
        HeldLine {
            position: stored_position(&held.file, held.line),
            text: held.text,
        }
    }
}

/// A position as a backend stored it: (source, offset). States written before positions
/// were opaque named stdin `-`.
pub(super) fn stored_position(source: &str, offset: u64) -> Position {
    let source: Arc<str> = if source == "-" {
        crate::source::STDIN_NAME.into()
    } else {
        source.into()
    };
    Position { source, offset }
}

/// A window that changed since the last checkpoint.
pub struct WindowChange<'a> {
    /// Its rule's `RuleID` (what the state files it under; [`WindowKey::rule`] is an index
    /// into this run's rules).
    pub rule_id: &'a str,
    /// Its key.
    pub key: &'a WindowKey,
    /// The window as it is now, or `None` when it closed.
    pub window: Option<&'a Window<Position, WindowFields>>,
}

/// One checkpoint: all of it is committed, or none.
pub struct Checkpoint<'a> {
    /// Windows opened, counted into or closed since the last checkpoint.
    pub windows: Vec<WindowChange<'a>>,
    /// The counters that order later windows and alerts.
    pub counters: Counters,
    /// Per tracked source: the offset of the last line applied since the last checkpoint.
    pub progress: Vec<(&'a SourceKey, u64)>,
    /// How far the sink had got when these were applied ([`crate::sink::Sink::sync`]).
    pub sink: SinkMark,
    /// An undecided line to keep for the next run, if any (else none is kept).
    pub held: Option<&'a HeldLine>,
    /// The run ends with this checkpoint.
    pub finished: bool,
}

/// Alert state that outlives a run; see the module docs.
pub trait StateBackend: Send {
    /// The windows of `rule_ids` (index `i` becomes [`WindowKey::rule`] `== i`), the
    /// counters and the held line.
    fn restore(&mut self, rule_ids: &[String]) -> Result<Restored, BackendError>;

    /// What was recorded of a tracked source's key ([`SourceKey::key`]), if anything.
    fn progress(&self, key: &str) -> Result<Option<Recorded>, BackendError>;

    /// The sink of the last run and its mark at that run's last checkpoint, when the run
    /// stopped before its end (recovered through [`crate::sink::recover`]).
    fn interrupted(&self) -> Result<Option<SinkTarget>, BackendError>;

    /// Records that a run starts, writing to `sink` (where, and its mark now), or to a
    /// stream that nothing can recover (`None`).
    fn begin_run(&mut self, sink: Option<&SinkTarget>) -> Result<(), BackendError>;

    /// Commits one checkpoint, all or nothing.
    fn commit(&mut self, checkpoint: Checkpoint<'_>) -> Result<(), BackendError>;
}
