//! One `Tests:` case: every function on the event, as `pat test` runs it, then the batch
//! call on the spec's events, compared with the functions.

use std::sync::Arc;

use serde_json::Value;

use super::{CaseKind, CaseResult, FunctionResult};
use crate::calls::{BatchFailure, Function, RuleCalls};
use crate::clock::Clock;
use crate::eval::{Verdict, disagreement};
use crate::event::Event;
use crate::ruleset::LoadedRule;
use crate::runtime::{Mock, Output, Respawning, RuleComponent};
use crate::semantics::{self, CallResult};
use crate::spec::{Severity, TestCase};

/// Shows a result and, when the test asserts a value, compares it.
fn line<T: PartialEq + std::fmt::Display>(
    function: &str,
    value: Result<Option<T>, String>,
    expected: Option<&T>,
) -> Option<FunctionResult> {
    let function = function.to_owned();
    Some(match (value, expected) {
        (Err(text), _) => FunctionResult {
            function,
            passed: false,
            text,
        },
        (Ok(None), None) => return None,
        (Ok(None), Some(want)) => FunctionResult {
            function,
            passed: false,
            text: format!("not defined, expected `{want}`"),
        },
        (Ok(Some(got)), Some(want)) if got != *want => FunctionResult {
            function,
            passed: false,
            text: format!("`{got}`, expected `{want}`"),
        },
        (Ok(Some(got)), _) => FunctionResult {
            function,
            passed: true,
            text: got.to_string(),
        },
    })
}

/// The rule's component for `case`: a Python rule with the case's `Mocks:` in place
/// (names of the rule's module that return the YAML value when called, as in `pat test`).
fn for_case(rule: &LoadedRule, case: &TestCase) -> RuleComponent {
    if case.mocks.is_empty() {
        return rule.component.clone();
    }
    let mocks = case
        .mocks
        .iter()
        .map(|m| Mock {
            name: m.object_name.clone(),
            value: m.return_value.to_string(),
        })
        .collect();
    rule.component.with_mocks(mocks)
}

/// Whether every key of `want` is in `got` with an equal value (objects compared the same
/// way, recursively).
pub fn is_subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| is_subset(wv, gv))),
        _ => want == got,
    }
}

/// Runs one test case the way `pat test` does: every function runs (test mode), and
/// - `ExpectedResult: true` passes when `rule` returns true and no function failed,
///   `unique` included (pat ignores a failing `unique`: a known bug);
/// - `ExpectedResult: false` passes when `rule` returns false without failing.
///
/// `InlineFilters` run first, as in production (pat ignores them without a backend).
/// The optional `Expected*` fields are checked whatever `ExpectedResult` is.
pub fn run_case(rule: &LoadedRule, case: &TestCase) -> CaseResult {
    let spec = &rule.spec;
    let event = Arc::new(Event::whole(case.log.clone()));
    // Every function on one instance, replaced after a trap, keeping what the rule printed.
    let mut calls = Respawning::new(for_case(rule, case), Output::Capture);
    // The rule's clocks report the event's time ([`Clock::default`], else 0).
    let time_ms = Clock::default().event_time_ms(&*event).unwrap_or(0);
    calls.set_time(time_ms);
    let filtered_out = spec
        .inline_filters
        .as_ref()
        .is_some_and(|f| !f.matches(&*event));
    let matched = if filtered_out {
        Ok(false)
    } else {
        calls.rule(&event)
    };
    // In Panther's test order: every function runs, whatever `rule` returned.
    let title = calls.text(Function::Title, &event);
    let dedup = calls.text(Function::Dedup, &event);
    let context = calls.text(Function::AlertContext, &event);
    let description = calls.text(Function::Description, &event);
    let reference = calls.text(Function::Reference, &event);
    let severity = calls.text(Function::Severity, &event);
    let runbook = calls.text(Function::Runbook, &event);
    let destinations = calls.destinations(&event);
    let unique = calls.text(Function::Unique, &event);
    let output = calls.take_output();

    let rule_line = match &matched {
        Ok(m) => FunctionResult {
            function: "rule".into(),
            passed: *m == case.expected_result,
            text: if filtered_out {
                "false (ruled out by InlineFilters)".into()
            } else {
                m.to_string()
            },
        },
        Err(f) => FunctionResult {
            function: "rule".into(),
            passed: false,
            text: f.to_string(),
        },
    };
    let mut functions = vec![rule_line];
    let show_all = case.expected_result || case.has_output_assertions();
    let plain = |c: &CallResult<String>| c.clone().map_err(|f| f.to_string());
    if show_all && spec.create_alert {
        let resolved_title = match &title {
            Err(f) => Err(f.to_string()),
            Ok(None) if case.expected_title.is_some() => Ok(Some(semantics::title(spec, &title))),
            Ok(t) => Ok(t.clone()),
        };
        functions.extend(line("title", resolved_title, case.expected_title.as_ref()));
        // The dedup line always shows, with its fallback, as pat prints it.
        let resolved_dedup = match &dedup {
            Err(f) => Err(f.to_string()),
            Ok(_) => Ok(Some(semantics::dedup(spec, dedup.clone(), &title))),
        };
        functions.extend(line("dedup", resolved_dedup, case.expected_dedup.as_ref()));
    }
    if show_all {
        let context_line = match &context {
            Ok(None) if case.expected_alert_context.is_none() => None,
            _ => Some(
                match (
                    semantics::alert_context(&context),
                    &case.expected_alert_context,
                ) {
                    ((_, Some(e)), _) => FunctionResult {
                        function: "alertContext".into(),
                        passed: false,
                        text: e,
                    },
                    ((v, None), Some(want)) if !is_subset(want, &v) => FunctionResult {
                        function: "alertContext".into(),
                        passed: false,
                        text: format!("{v}, expected it to contain {want}"),
                    },
                    ((v, None), _) => FunctionResult {
                        function: "alertContext".into(),
                        passed: true,
                        text: v.to_string(),
                    },
                },
            ),
        };
        functions.extend(context_line);
    }
    if show_all && spec.create_alert {
        functions.extend(line("description", plain(&description), None));
        functions.extend(line("reference", plain(&reference), None));
        let resolved_severity = match &severity {
            Ok(None) if case.expected_severity.is_none() => Ok(None),
            _ => match semantics::severity(spec, &severity) {
                (sev, None) => Ok(Some(SeverityText(sev))),
                (_, Some(e)) => Err(e),
            },
        };
        let want_severity = case.expected_severity.map(SeverityText);
        functions.extend(line("severity", resolved_severity, want_severity.as_ref()));
        functions.extend(line("runbook", plain(&runbook), None));
        let resolved_destinations = match &destinations {
            Err(f) => Err(f.to_string()),
            Ok(None) if case.expected_destinations.is_none() => Ok(None),
            Ok(_) => Ok(Some(ListText(
                semantics::destinations(spec, &destinations).0,
            ))),
        };
        let want_destinations = case.expected_destinations.clone().map(ListText);
        functions.extend(line(
            "destinations",
            resolved_destinations,
            want_destinations.as_ref(),
        ));
        functions.extend(line(
            "unique",
            plain(&unique),
            case.expected_unique.as_ref(),
        ));
    }
    if spec.create_alert && !filtered_out {
        let truth = Verdict::from_calls(&matched, &dedup, &title, &unique);
        functions.extend(fast_paths(rule, case, &event, time_ms, &truth));
    }
    let mut result = CaseResult::new(&case.name, CaseKind::Test, functions);
    result.stdout = output.stdout;
    result.stderr = output.stderr;
    result.stdout_dropped = output.stdout_dropped;
    result.stderr_dropped = output.stderr_dropped;
    result
}

/// What `eval`'s fast path makes of a test's event, against one call per function
/// (`truth`): `evaluate-batch` on the events of all the spec's tests that pass its filters
/// (as in a line batch), on a fresh instance and again on the same instance (which now
/// packs the fields the first call read). A disagreement, or a failure the functions do not
/// have, is a failing line named `evaluate-batch`. Nothing for a component without it.
fn fast_paths(
    rule: &LoadedRule,
    case: &TestCase,
    event: &Arc<Event>,
    time_ms: i64,
    truth: &Verdict,
) -> Vec<FunctionResult> {
    if !rule.component.has_batch() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut fail = |text: String| {
        lines.push(FunctionResult {
            function: Function::EvaluateBatch.name().to_owned(),
            passed: false,
            text,
        });
    };
    let fresh = || {
        let mut calls = Respawning::new(for_case(rule, case), Output::Discard);
        calls.set_time(time_ms);
        calls
    };
    let clean = truth.failures().is_empty();
    // The batch: every test event that passes the filters, this one at its place.
    let spec = &rule.spec;
    let mut batch: Vec<Arc<Event>> = Vec::new();
    let mut at = None;
    for test in &spec.tests {
        if spec
            .inline_filters
            .as_ref()
            .is_some_and(|f| !f.matches(&test.log))
        {
            continue;
        }
        if std::ptr::eq(test, case) {
            at = Some(batch.len());
            batch.push(event.clone());
        } else {
            batch.push(Arc::new(Event::whole(test.log.clone())));
        }
    }
    let (batch, at) = match at {
        Some(at) => (batch, at),
        None => (vec![event.clone()], 0),
    };
    let mut calls = fresh();
    for _ in 0..2 {
        match calls.batch(&batch) {
            Ok(results) => {
                if let Some(detail) = disagreement(&results[at], truth) {
                    fail(format!("it {detail}"));
                    break;
                }
            }
            // Another test's event may fail the whole batch: this event alone decides.
            Err(BatchFailure::Call(_)) if batch.len() > 1 => {
                let alone = fresh()
                    .batch(std::slice::from_ref(event))
                    .map_err(|e| format!("{e:?}"));
                match alone {
                    Ok(results) => {
                        if let Some(detail) = disagreement(&results[0], truth) {
                            fail(format!("it {detail}"));
                        }
                    }
                    Err(e) if clean => {
                        fail(format!(
                            "it failed ({e}) where one call per function does not"
                        ));
                    }
                    Err(_) => {}
                }
                break;
            }
            Err(BatchFailure::Call(failure)) => {
                if clean {
                    fail(format!(
                        "it failed ({failure}) where one call per function does not"
                    ));
                }
                break;
            }
            // `eval` evaluates such a batch's events one call per function.
            Err(_) => break,
        }
    }
    lines
}

/// A severity shown and compared by its upper-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeverityText(Severity);

impl std::fmt::Display for SeverityText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A list shown as `["a", "b"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListText(Vec<String>);

impl std::fmt::Display for ListText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_match_is_recursive() {
        let got = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        assert!(is_subset(&serde_json::json!({}), &got));
        assert!(is_subset(&serde_json::json!({"b": {"c": 2}}), &got));
        assert!(is_subset(&serde_json::json!({"e": [1]}), &got));
        assert!(!is_subset(&serde_json::json!({"b": {"c": 3}}), &got));
        assert!(!is_subset(&serde_json::json!({"z": null}), &got));
    }
}
