//! The alerting core without compiled components: rules here are closures behind
//! [`RuleCode`], so windows, thresholds, the failure budget and the batch checks are tested
//! on their own.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::calls::{BatchFailure, BatchOutcome, CallResult, RuleCalls, RuleFailure};
use crate::event::Event;

/// A rule made of closures: `rule` and `dedup` read the event; a batch answers as the
/// functions do, or lies when `lie` is set.
#[derive(Clone)]
struct Fake {
    rule: fn(&Value) -> Result<bool, RuleFailure>,
    dedup: Option<fn(&Value) -> String>,
    lie: bool,
    /// Calls made, by function name: what the core asked of the rule.
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl RuleCode for Fake {
    fn instance(&self) -> Box<dyn RuleCalls> {
        Box::new(self.clone())
    }

    fn has_batch(&self) -> bool {
        true
    }
}

impl RuleCalls for Fake {
    fn set_time(&mut self, _ms: i64) {}

    fn rule(&mut self, event: &Arc<Event>) -> Result<bool, RuleFailure> {
        self.log.lock().unwrap().push("rule");
        (self.rule)(event.whole_value())
    }

    fn text(&mut self, function: Function, event: &Arc<Event>) -> CallResult<String> {
        self.log.lock().unwrap().push(function.name());
        Ok(match function {
            Function::Dedup => self.dedup.map(|d| d(event.whole_value())),
            Function::Title => Some(format!("title of {}", event.get(&["user"]).unwrap())),
            _ => None,
        })
    }

    fn destinations(&mut self, _event: &Arc<Event>) -> CallResult<Vec<String>> {
        Ok(None)
    }

    fn batch(&mut self, events: &[Arc<Event>]) -> Result<Vec<BatchOutcome>, BatchFailure> {
        self.log.lock().unwrap().push("evaluate-batch");
        events
            .iter()
            .map(|event| match (self.rule)(event.whole_value()) {
                Ok(true) if !self.lie => Ok(BatchOutcome::Match {
                    dedup: Ok(self.dedup.map(|d| d(event.whole_value()))),
                    title: Ok(None),
                    unique: Ok(None),
                }),
                Ok(_) => Ok(BatchOutcome::NoMatch),
                Err(RuleFailure::Returned(m)) => Ok(BatchOutcome::RuleError(m)),
                Err(other) => Err(BatchFailure::Call(other)),
            })
            .collect()
    }
}

fn fake(rule: fn(&Value) -> Result<bool, RuleFailure>) -> Fake {
    Fake {
        rule,
        dedup: Some(|e| e["user"].as_str().unwrap_or("").to_owned()),
        lie: false,
        log: Arc::default(),
    }
}

fn spec(extra: &str) -> Spec {
    Spec::parse(
        Path::new("fake.yml"),
        &format!(
            "AnalysisType: rule\nFilename: fake.wasm\nRuleID: Fake.Rule\nEnabled: true\n\
             LogTypes: [Test]\nSeverity: Low\n{extra}"
        ),
    )
    .unwrap()
}

/// Runs `events` (one per line) through an evaluator of one rule; the records and stats.
fn run(code: Fake, spec: Spec, events: &[Value]) -> (Vec<Value>, RuleStats, Vec<String>) {
    let mut out = Vec::new();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let rule = Rule {
        spec,
        code: Arc::new(code),
    };
    let mut eval = Evaluator::new(
        vec![rule],
        Clock::default(),
        Box::new(crate::sink::JsonLines::new(&mut out)),
        Box::new(move |w: &str| sink.lock().unwrap().push(w.to_owned())),
    );
    let located: Vec<(Location, Value, Option<i64>)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let at = Location {
                file: "fake.jsonl".into(),
                line: i as u64 + 1,
            };
            (at, e.clone(), None)
        })
        .collect();
    eval.events_at(located).unwrap();
    let summary = eval.finish().unwrap();
    let records = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let warnings = warnings.lock().unwrap().clone();
    (records, summary.rules[0].1.clone(), warnings)
}

const T0: i64 = 1_704_067_200_000;

fn event(i: i64, user: &str, matches: bool) -> Value {
    json!({"timestamp": T0 + i * 60_000, "user": user, "m": matches})
}

fn matches(e: &Value) -> Result<bool, RuleFailure> {
    Ok(e["m"] == true)
}

#[test]
fn windows_and_thresholds_come_out_of_the_core_alone() {
    let events: Vec<Value> = (0..6)
        .map(|i| event(i, if i % 2 == 0 { "a" } else { "b" }, i != 5))
        .collect();
    let (records, stats, _) = run(fake(matches), spec("Threshold: 3\n"), &events);
    // `a` matched three times (events 0, 2, 4), `b` twice (1, 3): one alert.
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["dedup"], "a");
    assert_eq!(records[0]["event_count"], 3);
    assert_eq!(records[0]["title"], "title of \"a\"");
    assert_eq!((stats.matches, stats.alerts), (5, 1));
}

#[test]
fn a_batch_that_drops_matches_is_caught_without_components() {
    let mut lying = fake(matches);
    lying.lie = true;
    let events: Vec<Value> = (0..4).map(|i| event(i, "a", true)).collect();
    let (records, stats, warnings) = run(lying, spec(""), &events);
    assert_eq!(stats.path_mismatches, 1);
    assert!(stats.quarantined_at.is_some(), "{warnings:?}");
    // The first event's match is kept: the checked batch's outcomes are the functions'.
    assert!(records.iter().any(|r| r["kind"] == "alert"), "{records:#?}");
}

#[test]
fn events_filtered_out_count_as_filtered_until_the_quarantine_then_as_skipped() {
    let failing = fake(|e| match e["m"].as_bool() {
        Some(true) => Err(RuleFailure::Trap("boom".into())),
        _ => Ok(false),
    });
    let filters = "InlineFilters:\n  - KeyPath: k\n    Condition: Equals\n    Value: yes\n";
    // Every third event is filtered out; the rule traps on even events it sees, and is
    // quarantined at its tenth trap (event 28, offset 29).
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let mut e = event(i, "a", i % 2 == 0);
            e["k"] = json!(if i % 3 == 2 { "no" } else { "yes" });
            e
        })
        .collect();
    let (_, stats, _) = run(failing, spec(filters), &events);
    assert_eq!(stats.rule_errors, 10);
    assert_eq!(stats.quarantined_at.as_ref().map(|p| p.offset), Some(29));
    // Events 2, 5, ..., 26 before it; after it, every event, filtered out or not.
    assert_eq!((stats.filtered, stats.skipped), (9, 11), "{stats:?}");
}

#[test]
fn costly_failures_spend_the_budget_and_quarantine_the_rule() {
    let failing = fake(|e| match e["m"].as_bool() {
        Some(true) => Err(RuleFailure::Trap("boom".into())),
        _ => Ok(false),
    });
    let log = failing.log.clone();
    // Traps alternate with clean events: the budget counts failures, not a streak.
    let events: Vec<Value> = (0..30).map(|i| event(i, "a", i % 2 == 0)).collect();
    let (_, stats, _) = run(failing, spec(""), &events);
    assert_eq!(stats.rule_errors, 10);
    assert_eq!(
        stats.quarantined_at.as_ref().map(|p| p.offset),
        Some(19),
        "{stats:?}"
    );
    assert_eq!(stats.skipped, 11);
    // The worker stopped calling the rule at the budget, within its batch of events.
    let rule_calls = log.lock().unwrap().iter().filter(|c| **c == "rule").count();
    assert_eq!(rule_calls, 19, "{:?}", log.lock().unwrap());
}
