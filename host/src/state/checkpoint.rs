//! [`Checkpointer`]: when the alert stage commits to its [`StateBackend`], and what: every
//! so many lines and at the end, the changed windows, the counters, the last position
//! applied of each tracked source, the sink's mark and the held line.

use std::collections::HashMap;
use std::sync::Arc;

use super::AlertState;
use super::backend::{BackendError, Checkpoint, HeldLine, Restored, StateBackend, WindowChange};
use crate::alert::WindowFields;
use crate::sink::SinkMark;
use crate::source::{Position, Tracked};

/// The default of `eval --checkpoint-lines`.
pub const DEFAULT_CHECKPOINT_LINES: u64 = 50_000;

/// What happens to live windows at the end of a run with a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtEnd {
    /// They stay in the state for the next run (the default).
    KeepWindows,
    /// They close and write their alerts, as at the end of a run without a state
    /// (`--flush`).
    CloseWindows,
}

/// Commits the alert stage's state every `every_lines` input lines and at the end.
pub struct Checkpointer {
    backend: Box<dyn StateBackend>,
    rule_ids: Vec<String>,
    tracked: Tracked,
    /// Per tracked source (by name): the offset of the last line applied since the last
    /// commit.
    progress: HashMap<Arc<str>, u64>,
    every_lines: u64,
    since: u64,
    at_end: AtEnd,
    /// An undecided event left for the next run ([`HeldLine`]).
    held: Option<HeldLine>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("every_lines", &self.every_lines)
            .field("at_end", &self.at_end)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// A checkpointer for `backend`. `tracked` names the sources whose progress is recorded
    /// (the source of each [`Position`]); others (stdin) are not.
    pub fn new(
        backend: Box<dyn StateBackend>,
        tracked: Tracked,
        every_lines: u64,
        at_end: AtEnd,
    ) -> Self {
        Checkpointer {
            backend,
            rule_ids: Vec::new(),
            tracked,
            progress: HashMap::new(),
            every_lines: every_lines.max(1),
            since: 0,
            at_end,
            held: None,
        }
    }

    /// Restores the windows of `rule_ids` (in the evaluator's rule order).
    pub fn restore(&mut self, rule_ids: Vec<String>) -> Result<Restored, BackendError> {
        let mut restored = self.backend.restore(&rule_ids)?;
        restored.state.track_changes();
        self.rule_ids = rule_ids;
        Ok(restored)
    }

    /// What happens to live windows at the end.
    pub fn at_end(&self) -> AtEnd {
        self.at_end
    }

    /// Keeps `line` for the next run: written with the last commit.
    pub fn hold(&mut self, line: HeldLine) {
        self.held = Some(line);
    }

    /// Records that the line at `position` was applied; true when a checkpoint is due.
    pub fn saw(&mut self, position: &Position) -> bool {
        if let Some(offset) = self.progress.get_mut(&position.source) {
            *offset = position.offset;
        } else if self.tracked.contains_key(&position.source) {
            self.progress
                .insert(position.source.clone(), position.offset);
        }
        self.since += 1;
        self.since >= self.every_lines
    }

    /// Commits the windows changed in `state`, the progress, and `sink`, the mark of the
    /// sink synced with them, in one checkpoint.
    pub fn commit(
        &mut self,
        state: &mut AlertState<Position, WindowFields>,
        sink: SinkMark,
        finished: bool,
    ) -> Result<(), BackendError> {
        let changed = state.take_changed();
        let windows = changed
            .iter()
            .map(|key| WindowChange {
                rule_id: &self.rule_ids[key.rule],
                key,
                window: state.live(key),
            })
            .collect();
        let progress = self
            .progress
            .iter()
            .map(|(name, &offset)| (&self.tracked[name], offset))
            .collect();
        self.backend.commit(Checkpoint {
            windows,
            counters: state.counters(),
            progress,
            sink,
            held: self.held.as_ref(),
            finished,
        })?;
        self.progress.clear();
        self.since = 0;
        Ok(())
    }
}
