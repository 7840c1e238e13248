//! [`MemoryBackend`]: a [`StateBackend`] in memory, with no persistence: what a run
//! without `--state` keeps past its end (nothing). Clones share one state, so evaluators
//! run one after another in a process continue each other as runs on one SQLite state do
//! (tests, a library caller).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::backend::{BackendError, Checkpoint, HeldLine, Restored, StateBackend};
use super::{AlertState, Counters, Namespace, Window, WindowKey};
use crate::alert::WindowFields;
use crate::sink::SinkTarget;
use crate::source::{Position, Recorded};

/// What a [`MemoryBackend`] holds: what the last commit wrote.
#[derive(Debug, Default)]
struct Held {
    /// Live windows by (RuleID, namespace, dedup).
    windows: BTreeMap<(String, Namespace, String), Window<Position, WindowFields>>,
    counters: Counters,
    progress: HashMap<String, Recorded>,
    sink: Option<SinkTarget>,
    held: Option<HeldLine>,
    running: bool,
}

/// A state in memory; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Held>>,
}

impl MemoryBackend {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live windows held, as of the last commit.
    pub fn live_windows(&self) -> usize {
        self.lock().windows.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner.lock().expect("not poisoned")
    }
}

impl StateBackend for MemoryBackend {
    fn restore(&mut self, rule_ids: &[String]) -> Result<Restored, BackendError> {
        let held = self.lock();
        let index: HashMap<&str, usize> = rule_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut windows = Vec::new();
        let mut other: BTreeMap<String, u64> = BTreeMap::new();
        for ((rule_id, namespace, dedup), window) in &held.windows {
            match index.get(rule_id.as_str()) {
                Some(&rule) => windows.push((
                    WindowKey {
                        rule,
                        namespace: *namespace,
                        dedup: dedup.clone(),
                    },
                    window.clone(),
                )),
                None => *other.entry(rule_id.clone()).or_default() += 1,
            }
        }
        Ok(Restored {
            state: AlertState::restore(windows, held.counters),
            other_rules: other.into_iter().collect(),
            held: held.held.clone(),
        })
    }

    fn progress(&self, key: &str) -> Result<Option<Recorded>, BackendError> {
        Ok(self.lock().progress.get(key).cloned())
    }

    fn interrupted(&self) -> Result<Option<SinkTarget>, BackendError> {
        let held = self.lock();
        Ok(held.sink.clone().filter(|_| held.running))
    }

    fn begin_run(&mut self, sink: Option<&SinkTarget>) -> Result<(), BackendError> {
        let mut held = self.lock();
        held.running = true;
        held.sink = sink.cloned();
        Ok(())
    }

    fn commit(&mut self, checkpoint: Checkpoint<'_>) -> Result<(), BackendError> {
        let mut held = self.lock();
        for change in checkpoint.windows {
            let key = (
                change.rule_id.to_owned(),
                change.key.namespace,
                change.key.dedup.clone(),
            );
            match change.window {
                Some(window) => held.windows.insert(key, window.clone()),
                None => held.windows.remove(&key),
            };
        }
        held.counters = checkpoint.counters;
        for (source, offset) in checkpoint.progress {
            held.progress.insert(
                source.key.clone(),
                Recorded {
                    identity: source.identity.clone(),
                    offset,
                },
            );
        }
        if let Some(sink) = &mut held.sink {
            sink.mark = checkpoint.sink;
        }
        held.held = checkpoint.held.cloned();
        held.running = !checkpoint.finished;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::SinkMark;
    use crate::source::SourceKey;
    use crate::spec::Severity;
    use crate::state::Hit;
    use crate::state::backend::WindowChange;

    fn fields() -> WindowFields {
        WindowFields::Frozen(crate::alert::AlertFields {
            title: "t".to_owned(),
            severity: Severity::Low,
            alert_context: serde_json::json!({}),
            description: String::new(),
            reference: String::new(),
            runbook: String::new(),
            destinations: Vec::new(),
            suppressed: false,
            error: None,
        })
    }

    #[test]
    fn a_commit_is_restored_by_rule_id_and_the_sink_is_interrupted_until_finished() {
        let mut state = AlertState::default();
        state.track_changes();
        let key = WindowKey {
            rule: 0,
            namespace: Namespace::Alert,
            dedup: "d".to_owned(),
        };
        let hit = Hit {
            time_ms: 5,
            location: Position::new("q/0", 1030),
            unique: None,
        };
        state
            .open(key.clone(), hit, 100, 2, false, fields())
            .unwrap();
        let mut backend = MemoryBackend::new();
        let sink = SinkTarget {
            kind: "toy".to_owned(),
            target: "t".to_owned(),
            mark: SinkMark(0),
        };
        backend.begin_run(Some(&sink)).unwrap();
        let source = SourceKey {
            key: "q/0".to_owned(),
            identity: "e".to_owned(),
        };
        let changed = state.take_changed();
        let checkpoint = Checkpoint {
            windows: changed
                .iter()
                .map(|key| WindowChange {
                    rule_id: "Rule.A",
                    key,
                    window: state.live(key),
                })
                .collect(),
            counters: state.counters(),
            progress: vec![(&source, 1030)],
            sink: SinkMark(7),
            held: None,
            finished: false,
        };
        backend.commit(checkpoint).unwrap();
        let interrupted = backend.interrupted().unwrap().unwrap();
        assert_eq!(interrupted.mark, SinkMark(7));

        // Another run loads `Rule.A` second and not `Rule.B`'s windows (it has none).
        let restored = backend
            .restore(&["Rule.B".to_owned(), "Rule.A".to_owned()])
            .unwrap();
        let key = WindowKey { rule: 1, ..key };
        let window = restored.state.live(&key).unwrap();
        assert_eq!(window.first_location.to_string(), "q/0:1030");
        assert_eq!(restored.state.counters(), state.counters());
        let restored = backend.restore(&[]).unwrap();
        assert_eq!(restored.other_rules, [("Rule.A".to_owned(), 1)]);
        assert_eq!(backend.progress("q/0").unwrap().unwrap().offset, 1030);

        let finish = Checkpoint {
            windows: Vec::new(),
            counters: state.counters(),
            progress: Vec::new(),
            sink: SinkMark(7),
            held: None,
            finished: true,
        };
        backend.commit(finish).unwrap();
        assert_eq!(backend.interrupted().unwrap(), None);
    }
}
