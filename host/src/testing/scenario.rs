//! One `Scenarios:` entry: timed events through the real [`Evaluator`], once per way
//! `eval` may call the rule, and the alerts against `ExpectedAlerts`.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{CaseKind, CaseResult, FunctionResult};
use crate::calls::Function;
use crate::clock::{Clock, parse_offset_ms, parse_time_ms};
use crate::eval::{ClockGuard, Evaluator, Location, Paths, Verify};
use crate::ruleset::LoadedRule;
use crate::spec::{ExpectedAlert, Scenario};

/// What one run of a scenario wrote.
struct ScenarioRun {
    records: Vec<Value>,
    warnings: Vec<String>,
    error: Option<String>,
}

/// Runs a scenario's events through an [`Evaluator`] of this rule alone, with `paths`.
fn scenario_run(rule: &LoadedRule, scenario: &Scenario, paths: Paths) -> ScenarioRun {
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    let mut out = Vec::new();
    let mut eval = Evaluator::new(
        vec![rule.clone()],
        Clock::default(),
        Box::new(crate::sink::JsonLines::new(&mut out)),
        Box::new(move |w: &str| sink.lock().expect("not poisoned").push(w.to_owned())),
    )
    .with_paths(paths)
    .with_verify(Verify::Every)
    // Scenario times are made up: only the event-time clock guards them.
    .with_clock_guard(ClockGuard::default().without_machine_clock());
    let start = scenario
        .start
        .as_ref()
        .and_then(parse_time_ms)
        .unwrap_or(DEFAULT_SCENARIO_START);
    let file: Arc<str> = format!("{}#{}", rule.spec.path.display(), scenario.name).into();
    let mut number = 0;
    let mut events = Vec::new();
    for event in &scenario.events {
        let base = event.time.as_ref().and_then(|t| {
            parse_time_ms(t).or_else(|| t.as_str().and_then(parse_offset_ms).map(|o| start + o))
        });
        let every = event
            .every
            .as_deref()
            .and_then(parse_offset_ms)
            .unwrap_or(0);
        for i in 0..event.repeat.unwrap_or(1) {
            number += 1;
            let time = base.map(|t| t + i64::from(i) * every);
            let location = Location {
                file: file.clone(),
                line: number,
            };
            events.push((location, event.log.clone(), time));
        }
    }
    let written = eval.events_at(events);
    let summary = eval.finish();
    let error = written
        .err()
        .or_else(|| summary.err())
        .map(|e| e.to_string());
    let records = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warnings = warnings.lock().expect("not poisoned").clone();
    ScenarioRun {
        records,
        warnings,
        error,
    }
}

/// Runs a scenario: its events go through the same [`Evaluator`] as `rulehost eval`, with
/// this rule alone, and the alerts written must match `ExpectedAlerts` one to one. The
/// events go through each path `eval` may call the rule by (one call per function, then
/// `evaluate-batch` when the component has it, every batch checked): a path whose alerts
/// or failures differ from one call per function's fails the scenario, named.
pub fn run_scenario(rule: &LoadedRule, scenario: &Scenario) -> CaseResult {
    let reference = scenario_run(rule, scenario, Paths::Functions);
    let mut functions = Vec::new();
    if let Some(e) = &reference.error {
        functions.push(FunctionResult {
            function: "alerts".into(),
            passed: false,
            text: e.clone(),
        });
    }
    for warning in &reference.warnings {
        functions.push(FunctionResult {
            function: "rule".into(),
            passed: false,
            text: warning.clone(),
        });
    }
    let records = &reference.records;
    let mut alerts: Vec<Option<&Value>> = records
        .iter()
        .filter(|r| r["kind"] == "alert")
        .map(Some)
        .collect();
    let count_ok = alerts.len() == scenario.expected_alerts.len();
    functions.push(FunctionResult {
        function: "alerts".into(),
        passed: count_ok,
        text: if count_ok {
            format!("{} alert(s)", alerts.len())
        } else {
            format!(
                "{} alert(s), expected {}",
                alerts.len(),
                scenario.expected_alerts.len()
            )
        },
    });
    for (i, want) in scenario.expected_alerts.iter().enumerate() {
        let found = alerts
            .iter_mut()
            .find(|a| a.is_some_and(|a| alert_matches(want, a)))
            .and_then(Option::take);
        functions.push(FunctionResult {
            function: format!("alert {}", i + 1),
            passed: found.is_some(),
            text: match found {
                Some(a) => describe_alert(a),
                None => format!("no alert with {}", describe_expected(want)),
            },
        });
    }
    for extra in alerts.into_iter().flatten() {
        functions.push(FunctionResult {
            function: "unexpected alert".into(),
            passed: false,
            text: describe_alert(extra),
        });
    }
    if rule.spec.create_alert && rule.component.has_batch() {
        {
            let path = Function::EvaluateBatch;
            let run = scenario_run(rule, scenario, Paths::Auto);
            let mut fail = |text: String| {
                functions.push(FunctionResult {
                    function: path.name().to_owned(),
                    passed: false,
                    text,
                });
            };
            for warning in run
                .warnings
                .iter()
                .filter(|w| !reference.warnings.contains(w))
            {
                fail(warning.clone());
            }
            if let Some(e) = run.error.filter(|_| reference.error.is_none()) {
                fail(e);
            }
            if run.records != reference.records {
                let differs = run
                    .records
                    .iter()
                    .zip(&reference.records)
                    .position(|(a, b)| a != b)
                    .unwrap_or(run.records.len().min(reference.records.len()));
                let shown = |r: Option<&Value>| r.map_or("nothing".to_owned(), describe_record);
                fail(format!(
                    "its records differ from one call per function's: record {} is {}, not {}",
                    differs + 1,
                    shown(run.records.get(differs)),
                    shown(reference.records.get(differs)),
                ));
            }
        }
    }
    CaseResult::new(&scenario.name, CaseKind::Scenario, functions)
}

/// A record in a line: its kind, then what identifies it.
fn describe_record(r: &Value) -> String {
    match r["kind"].as_str() {
        Some("alert") => format!("an alert with {}", describe_alert(r)),
        Some(kind) => format!("a {kind} record ({})", r["title"].as_str().unwrap_or("")),
        None => r.to_string(),
    }
}

/// Where `+offset` scenario times count from when `Start` is not given.
pub const DEFAULT_SCENARIO_START: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

fn alert_matches(want: &ExpectedAlert, got: &Value) -> bool {
    want.dedup
        .as_ref()
        .is_none_or(|d| got["dedup"] == *d.as_str())
        && want
            .title
            .as_ref()
            .is_none_or(|t| got["title"] == *t.as_str())
        && want.severity.is_none_or(|s| got["severity"] == s.as_str())
        && want.event_count.is_none_or(|n| got["event_count"] == n)
        && want.unique_count.is_none_or(|n| got["unique_count"] == n)
}

fn describe_alert(a: &Value) -> String {
    let mut text = format!("dedup={} event_count={}", a["dedup"], a["event_count"]);
    if let Some(u) = a.get("unique_count") {
        text.push_str(&format!(" unique_count={u}"));
    }
    text.push_str(&format!(
        " window={}..{}",
        a["window_start"].as_str().unwrap_or(""),
        a["window_end"].as_str().unwrap_or("")
    ));
    text
}

fn describe_expected(want: &ExpectedAlert) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &want.dedup {
        parts.push(format!("dedup={d:?}"));
    }
    if let Some(t) = &want.title {
        parts.push(format!("title={t:?}"));
    }
    if let Some(s) = want.severity {
        parts.push(format!("severity={}", s.as_str()));
    }
    if let Some(n) = want.event_count {
        parts.push(format!("event_count={n}"));
    }
    if let Some(n) = want.unique_count {
        parts.push(format!("unique_count={n}"));
    }
    if parts.is_empty() {
        "any fields".to_owned()
    } else {
        parts.join(" ")
    }
}
