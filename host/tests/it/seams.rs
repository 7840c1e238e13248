//! The I/O seams without files: the evaluator over a memory sink and a memory state
//! backend, and a second source (a toy message queue with its own offsets) whose positions
//! records and resumption use as the source defines them.

use std::sync::{Arc, Mutex};

use rulehost::clock::Clock;
use rulehost::eval::{Evaluator, run_parallel};
use rulehost::input::LineBatch;
use rulehost::ruleset::LoadedRule;
use rulehost::sink::{Delivery, MemorySink, Sink};
use rulehost::source::{self, Input, Recorded, Source, SourceKey, Tracking};
use rulehost::state::backend::StateBackend;
use rulehost::state::checkpoint::{AtEnd, Checkpointer};
use rulehost::state::memory::MemoryBackend;
use serde_json::{Value, json};

use crate::util::*;

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const HOUR: i64 = 3_600_000;

/// A toy partition of a message queue: offsets start at 1000 and step by 10, a batch is
/// at most three messages, and the state knows it by its topic and an epoch (a queue
/// recreated under the same name has another).
struct Queue {
    name: Arc<str>,
    epoch: String,
    messages: Vec<(u64, Value)>,
    next: usize,
    started: bool,
}

impl Queue {
    fn new(epoch: &str, events: &[Value]) -> Self {
        Queue {
            name: "orders/0".into(),
            epoch: epoch.to_owned(),
            messages: (0..).map(|i| 1000 + 10 * i).zip(events.to_vec()).collect(),
            next: 0,
            started: false,
        }
    }
}

impl Source for Queue {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn read(&mut self) -> Option<Input> {
        if !self.started {
            self.started = true;
            return Some(Input::Started);
        }
        let take = &self.messages[self.next..(self.next + 3).min(self.messages.len())];
        if take.is_empty() {
            return None;
        }
        self.next += take.len();
        let mut batch = LineBatch::default();
        for (offset, event) in take {
            batch.push_line(*offset, event.to_string().as_bytes());
        }
        Some(Input::Lines {
            source: self.name.clone(),
            batch,
            max_line: usize::MAX,
        })
    }

    fn tracking(&self) -> Result<Tracking, source::SourceError> {
        Ok(Tracking::Tracked(SourceKey {
            key: format!("queue:{}", self.name),
            identity: self.epoch.clone(),
        }))
    }

    fn resume(&mut self, key: &SourceKey, recorded: &Recorded) -> Option<String> {
        if key.identity != recorded.identity {
            return Some(format!("`{}` is a new queue: from its start", self.name));
        }
        self.next = self
            .messages
            .iter()
            .take_while(|(offset, _)| *offset <= recorded.offset)
            .count();
        Some(format!("`{}`: after offset {}", self.name, recorded.offset))
    }
}

fn access(hour: i64, email: &str, workspace: usize) -> Value {
    json!({
        "timestamp": T0 + hour * HOUR, "serviceName": "accounts", "actionName": "login",
        "workspaceId": format!("ws-{workspace}"), "userIdentity": {"email": email},
        "response": {"statusCode": 200}
    })
}

/// Five workspaces of one user (an alert at the end of their day), a library installed
/// (an alert an hour later), four workspaces of another user (none).
fn events() -> Vec<Value> {
    let mut events: Vec<Value> = (0..5)
        .map(|i| access(i, "a@example.com", i as usize))
        .collect();
    events.push(json!({
        "timestamp": T0 + 5 * HOUR, "serviceName": "clusters",
        "actionName": "installLibraryOnAllClusters", "workspaceId": "ws-0",
        "userIdentity": {"email": "a@example.com"}, "requestParams": {"clusterId": "c-1"}
    }));
    events.extend((0..4).map(|i| access(6 + i, "b@example.com", i as usize)));
    events
}

fn rules() -> Vec<LoadedRule> {
    let runtime = runtime();
    let dir = rule_dir(&[INSTALL, MULTI], &[]);
    // The components stay compiled in the rules; the runtime may go.
    load(&runtime, dir.path())
}

/// One run over `source` into a memory sink, with `backend` as its state when given.
/// Returns the records and the notes.
fn run(source: Queue, backend: Option<(&MemoryBackend, AtEnd)>) -> (Vec<Value>, Vec<String>) {
    let sink = MemorySink::new();
    assert_eq!(sink.delivery(), Delivery::AtLeastOnce);
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let seen = warnings.clone();
    let mut eval = Evaluator::new(
        rules(),
        Clock::default(),
        Box::new(sink.clone()),
        Box::new(move |w: &str| seen.lock().unwrap().push(w.to_owned())),
    );
    let mut sources: Vec<Box<dyn Source>> = vec![Box::new(source)];
    let mut notes = Vec::new();
    if let Some((backend, at_end)) = backend {
        let (kept, tracked) =
            source::track(sources, backend, &mut |n| notes.push(n.to_owned())).unwrap();
        sources = kept;
        let mut backend = backend.clone();
        backend.begin_run(None).unwrap();
        let checkpoints = Checkpointer::new(Box::new(backend), tracked, 2, at_end);
        let (resumed, _) = eval.with_checkpoints(checkpoints).unwrap();
        eval = resumed;
    }
    let summary = run_parallel(eval, 2, sources).unwrap();
    assert!(!summary.has_errors(), "{summary:?}");
    assert!(warnings.lock().unwrap().is_empty(), "{warnings:?}");
    (sink.records(), notes)
}

#[test]
fn the_evaluator_runs_on_a_memory_sink_and_backend_and_split_runs_equal_one() {
    let events = events();
    let (one, _) = run(Queue::new("epoch-1", &events), None);
    assert_eq!(one.len(), 2, "{one:#?}");

    let backend = MemoryBackend::new();
    let (first, notes) = run(
        Queue::new("epoch-1", &events[..6]),
        Some((&backend, AtEnd::KeepWindows)),
    );
    assert!(notes.is_empty(), "{notes:?}");
    assert!(first.is_empty(), "both windows are still open: {first:#?}");
    assert_eq!(backend.live_windows(), 2);
    // The backend recorded the last position applied, in the queue's own offsets.
    assert_eq!(
        backend.progress("queue:orders/0").unwrap(),
        Some(Recorded {
            identity: "epoch-1".to_owned(),
            offset: 1050
        })
    );

    let (second, notes) = run(
        Queue::new("epoch-1", &events),
        Some((&backend, AtEnd::CloseWindows)),
    );
    assert_eq!(notes, ["`orders/0`: after offset 1050"]);
    let both: Vec<Value> = first.into_iter().chain(second).collect();
    assert_eq!(both, one);
}

#[test]
fn records_show_the_sources_positions_as_it_defines_them() {
    let (records, _) = run(Queue::new("epoch-1", &events()), None);
    let first_events: Vec<&Value> = records.iter().map(|r| &r["first_event"]).collect();
    // The install window closes first, an hour after it opened; the other at the end.
    assert_eq!(
        first_events,
        [&json!("orders/0:1050"), &json!("orders/0:1000")]
    );

    // A new queue under the same name is read from its start.
    let backend = MemoryBackend::new();
    run(
        Queue::new("epoch-1", &events()[..3]),
        Some((&backend, AtEnd::KeepWindows)),
    );
    let (_, notes) = run(
        Queue::new("epoch-2", &events()),
        Some((&backend, AtEnd::CloseWindows)),
    );
    assert_eq!(notes, ["`orders/0` is a new queue: from its start"]);
}
