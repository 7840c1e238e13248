//! The evaluator with no file anywhere: records into a [`MemorySink`], state in a
//! [`MemoryBackend`], positions of a made-up source, a rule made of a closure.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::calls::{CallResult, RuleCalls, RuleFailure};
use crate::event::Event;
use crate::sink::MemorySink;
use crate::source::{Recorded, SourceKey};
use crate::state::backend::StateBackend;
use crate::state::checkpoint::AtEnd;
use crate::state::memory::MemoryBackend;

/// Matches every event; dedup is its `user`.
#[derive(Clone)]
struct ByUser;

impl RuleCode for ByUser {
    fn instance(&self) -> Box<dyn RuleCalls> {
        Box::new(ByUser)
    }
}

impl RuleCalls for ByUser {
    fn set_time(&mut self, _ms: i64) {}

    fn rule(&mut self, _event: &Arc<Event>) -> Result<bool, RuleFailure> {
        Ok(true)
    }

    fn text(&mut self, function: Function, event: &Arc<Event>) -> CallResult<String> {
        Ok((function == Function::Dedup)
            .then(|| event.get(&["user"]).unwrap().as_str().unwrap().to_owned()))
    }

    fn destinations(&mut self, _event: &Arc<Event>) -> CallResult<Vec<String>> {
        Ok(None)
    }
}

fn rule() -> Rule {
    let spec = Spec::parse(
        Path::new("by_user.yml"),
        "AnalysisType: rule\nFilename: by_user.wasm\nRuleID: By.User\nEnabled: true\n\
         LogTypes: [Test]\nSeverity: Low\nThreshold: 2\nDedupPeriodMinutes: 10\n",
    )
    .unwrap();
    Rule {
        spec,
        code: Arc::new(ByUser),
    }
}

/// Events of users `a` and `b`, a minute apart, at offsets 7, 14, 21, ... of the source
/// `mem`.
fn events() -> Vec<(Position, Value, Option<i64>)> {
    (0..12)
        .map(|i| {
            let user = ["a", "b", "a"][i % 3];
            let event = json!({"timestamp": 1_704_067_200_000 + i as i64 * 60_000, "user": user});
            (Position::new("mem", 7 * (i as u64 + 1)), event, None)
        })
        .collect()
}

/// Evaluates `events` into a memory sink, with `backend` as the state when given.
fn run(
    events: Vec<(Position, Value, Option<i64>)>,
    backend: Option<(&MemoryBackend, AtEnd)>,
) -> Vec<Value> {
    let sink = MemorySink::new();
    let mut eval = Evaluator::new(
        vec![rule()],
        Clock::default(),
        Box::new(sink.clone()),
        Box::new(|w| panic!("no warning expected: {w}")),
    );
    if let Some((backend, at_end)) = backend {
        let key = SourceKey {
            key: "mem-key".to_owned(),
            identity: "one".to_owned(),
        };
        let tracked = HashMap::from([(Arc::from("mem"), key)]);
        let checkpoints = Checkpointer::new(Box::new(backend.clone()), tracked, 2, at_end);
        eval = eval.with_checkpoints(checkpoints).unwrap().0;
    }
    eval.events_at(events).unwrap();
    eval.finish().unwrap();
    sink.records()
}

#[test]
fn split_runs_on_a_memory_backend_equal_one_run_into_a_memory_sink() {
    let one = run(events(), None);
    // `a` and `b` each reach the threshold in their first window.
    assert_eq!(one.len(), 2, "{one:#?}");
    assert_eq!(one[0]["first_event"], "mem:7");

    let backend = MemoryBackend::new();
    let (first, second) = {
        let mut all = events();
        let second = all.split_off(5);
        (all, second)
    };
    let before = run(first, Some((&backend, AtEnd::KeepWindows)));
    // The run ended with windows open: they, and the last position applied, are kept.
    assert!(backend.live_windows() > 0);
    assert_eq!(
        backend.progress("mem-key").unwrap(),
        Some(Recorded {
            identity: "one".to_owned(),
            offset: 35
        })
    );
    let after = run(second, Some((&backend, AtEnd::CloseWindows)));
    assert_eq!(backend.live_windows(), 0);
    let both: Vec<Value> = before.into_iter().chain(after).collect();
    assert_eq!(both, one);
}
