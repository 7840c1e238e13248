//! [`run_rule`]: runs a spec's `Tests:` and `Scenarios:` through its component, with
//! `pat test`'s pass rules plus output assertions, and [`SpecFilter`] for `--filter`.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::clock::{Clock, parse_offset_ms, parse_time_ms};
use crate::eval::{
    ClockGuard, Evaluator, Function, Location, Outcome, Paths, Verify, disagreement,
};
use crate::ruleset::LoadedRule;
use crate::runtime::{BatchFailure, CapturedOutput, Output, RuleFailure, RuleInstance};
use crate::semantics::{self, Called};
use crate::spec::{ExpectedAlert, Scenario, Severity, Spec, TestCase};

/// The outcome of one function (or one assertion) in one test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionResult {
    /// `rule`, `title`, `dedup`, `alertContext`, ... (Panther's names), or `alerts` and
    /// `alert N` for scenarios.
    pub function: String,
    /// Whether it counts as passing.
    pub passed: bool,
    /// The value shown, or what went wrong.
    pub text: String,
}

/// Which kind of test a [`CaseResult`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// One event from `Tests:`.
    Test,
    /// A sequence of events from `Scenarios:`.
    Scenario,
}

/// The outcome of one test case or scenario.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The test's `Name`.
    pub name: String,
    /// Test or scenario.
    pub kind: CaseKind,
    /// Whether the whole test passed.
    pub passed: bool,
    /// Per-function results, in Panther's display order.
    pub functions: Vec<FunctionResult>,
    /// What the rule printed to stdout.
    pub stdout: String,
    /// What the rule printed to stderr.
    pub stderr: String,
    /// Bytes of stdout dropped past the capture limit
    /// ([`crate::runtime::Limits::captured_output`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub stdout_dropped: u64,
    /// Bytes of stderr dropped past the capture limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub stderr_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CaseResult {
    fn new(name: &str, kind: CaseKind, functions: Vec<FunctionResult>) -> Self {
        let passed = functions.iter().all(|f| f.passed);
        CaseResult {
            name: name.to_owned(),
            kind,
            passed,
            functions,
            stdout: String::new(),
            stderr: String::new(),
            stdout_dropped: 0,
            stderr_dropped: 0,
        }
    }
}

/// Runs every function of a rule on an event, replacing the instance after a trap (a trap
/// poisons the Store), and keeps what the rule printed.
struct Runner<'a> {
    rule: &'a LoadedRule,
    instance: Option<RuleInstance>,
    /// The event's time ([`Clock::default`], else 0), which the rule's clocks report.
    time_ms: i64,
    output: CapturedOutput,
}

impl Runner<'_> {
    fn call<T>(
        &mut self,
        event: &Arc<Value>,
        f: impl FnOnce(&mut RuleInstance, &Arc<Value>) -> Result<T, RuleFailure>,
    ) -> Result<T, RuleFailure> {
        if self.instance.is_none() {
            let inst = self
                .rule
                .component
                .instantiate(Output::Capture)
                .map_err(|e| RuleFailure::Trap(format!("failed to instantiate: {e:#}")))?;
            self.instance = Some(inst);
        }
        let inst = self.instance.as_mut().expect("instantiated above");
        inst.set_event_time(self.time_ms);
        let result = f(inst, event);
        if result
            .as_ref()
            .is_err_and(RuleFailure::needs_fresh_instance)
        {
            self.collect_output();
        }
        result
    }

    fn collect_output(&mut self) {
        if let Some(inst) = self.instance.take()
            && let Some(captured) = inst.captured_output()
        {
            self.output.stdout.push_str(&captured.stdout);
            self.output.stderr.push_str(&captured.stderr);
            self.output.stdout_dropped += captured.stdout_dropped;
            self.output.stderr_dropped += captured.stderr_dropped;
        }
    }
}

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
    let event = Arc::new(case.log.clone());
    let mut runner = Runner {
        rule,
        instance: None,
        time_ms: Clock::default().event_time_ms(&event).unwrap_or(0),
        output: CapturedOutput::default(),
    };
    let filtered_out = spec
        .inline_filters
        .as_ref()
        .is_some_and(|f| !f.matches(&event));
    let matched = if filtered_out {
        Ok(false)
    } else {
        runner.call(&event, RuleInstance::rule)
    };
    let title = runner.call(&event, RuleInstance::call_title);
    let dedup = runner.call(&event, RuleInstance::call_dedup);
    let context = runner.call(&event, RuleInstance::call_alert_context);
    let description = runner.call(&event, RuleInstance::call_description);
    let reference = runner.call(&event, RuleInstance::call_reference);
    let severity = runner.call(&event, RuleInstance::call_severity);
    let runbook = runner.call(&event, RuleInstance::call_runbook);
    let destinations = runner.call(&event, RuleInstance::call_destinations);
    let unique = runner.call(&event, RuleInstance::call_unique);
    runner.collect_output();

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
    let plain = |c: &Called<String>| c.clone().map_err(|f| f.to_string());
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
            Ok(_) => Ok(Some(semantics::dedup(spec, &dedup, &title))),
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
        let truth = Outcome::from_calls(&matched, &dedup, &title, &unique);
        functions.extend(fast_paths(rule, case, &event, runner.time_ms, &truth));
    }
    let mut result = CaseResult::new(&case.name, CaseKind::Test, functions);
    let output = runner.output;
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
    event: &Arc<Value>,
    time_ms: i64,
    truth: &Outcome,
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
    let fresh = || -> Result<RuleInstance, String> {
        let mut inst = rule
            .component
            .instantiate(Output::Discard)
            .map_err(|e| format!("failed to instantiate: {e:#}"))?;
        inst.set_event_time(time_ms);
        Ok(inst)
    };
    let clean = truth.failures().is_empty();
    // The batch: every test event that passes the filters, this one at its place.
    let spec = &rule.spec;
    let mut batch: Vec<Arc<Value>> = Vec::new();
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
            batch.push(Arc::new(test.log.clone()));
        }
    }
    let (batch, at) = match at {
        Some(at) => (batch, at),
        None => (vec![event.clone()], 0),
    };
    let mut inst = match fresh() {
        Ok(inst) => inst,
        Err(e) => {
            fail(e);
            return lines;
        }
    };
    for _ in 0..2 {
        match inst.evaluate_batch(&batch) {
            Ok(results) => {
                if let Some(detail) = disagreement(&results[at], truth) {
                    fail(format!("it {detail}"));
                    break;
                }
            }
            // Another test's event may fail the whole batch: this event alone decides.
            Err(BatchFailure::Call(_)) if batch.len() > 1 => {
                let alone = fresh().and_then(|mut one| {
                    one.evaluate_batch(std::slice::from_ref(event))
                        .map_err(|e| format!("{e:?}"))
                });
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

/// How a rule came out of a test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// Every selected test passed.
    Passed,
    /// A test failed, or the rule broke a `--minimum-tests` requirement.
    Failed,
    /// `--test-names` selected none of its tests.
    Skipped,
}

/// One rule's results.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    /// `RuleID`.
    pub rule_id: String,
    /// The spec file.
    pub path: String,
    /// The verdict.
    pub status: RuleStatus,
    /// Test and scenario results, tests first, in spec order.
    pub cases: Vec<CaseResult>,
    /// Rule-level failures, such as too few tests.
    pub problems: Vec<String>,
}

/// Which tests to run and what a rule must have.
#[derive(Debug, Clone, Default)]
pub struct TestSelection {
    /// Only tests and scenarios with these names (all when empty).
    pub names: Vec<String>,
    /// Fewer `Tests:` than this fails the rule; above 1 it also needs one positive and one
    /// negative test.
    pub minimum_tests: usize,
}

/// Runs a rule's selected tests and scenarios.
pub fn run_rule(rule: &LoadedRule, selection: &TestSelection) -> RuleReport {
    let spec = &rule.spec;
    let wanted =
        |name: &str| selection.names.is_empty() || selection.names.iter().any(|n| n == name);
    let mut cases: Vec<CaseResult> = spec
        .tests
        .iter()
        .filter(|c| wanted(&c.name))
        .map(|c| run_case(rule, c))
        .collect();
    cases.extend(
        spec.scenarios
            .iter()
            .filter(|s| wanted(&s.name))
            .map(|s| run_scenario(rule, s)),
    );
    let mut problems = Vec::new();
    let n = spec.tests.len();
    if n < selection.minimum_tests {
        problems.push(format!(
            "has {n} test(s), needs at least {}",
            selection.minimum_tests
        ));
    }
    if selection.minimum_tests > 1
        && !(spec.tests.iter().any(|t| t.expected_result)
            && spec.tests.iter().any(|t| !t.expected_result))
    {
        problems.push("needs at least one `ExpectedResult: true` and one `false` test".to_owned());
    }
    let status = if !problems.is_empty() || cases.iter().any(|c| !c.passed) {
        RuleStatus::Failed
    } else if cases.is_empty() && !selection.names.is_empty() {
        RuleStatus::Skipped
    } else {
        RuleStatus::Passed
    };
    RuleReport {
        rule_id: spec.rule_id.clone(),
        path: spec.path.display().to_string(),
        status,
        cases,
        problems,
    }
}

/// One `--filter KEY=V1,V2` (or `KEY!=V`): values are ORed and compared case-insensitively
/// with the spec's key; several filters are ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecFilter {
    key: String,
    values: Vec<String>,
    negate: bool,
}

/// The spec keys `--filter` understands.
pub const FILTER_KEYS: &[&str] = &[
    "RuleID",
    "DisplayName",
    "Severity",
    "LogTypes",
    "Tags",
    "Status",
    "Enabled",
    "AnalysisType",
];

impl std::str::FromStr for SpecFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, values, negate) = match s.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match s.split_once('=') {
                Some((k, v)) => (k, v, false),
                None => {
                    return Err(format!(
                        "expected KEY=VALUE[,VALUE] or KEY!=VALUE, got `{s}`"
                    ));
                }
            },
        };
        let Some(key) = FILTER_KEYS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(key.trim()))
        else {
            return Err(format!(
                "unknown filter key `{key}`; expected one of {}",
                FILTER_KEYS.join(", ")
            ));
        };
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!("filter `{s}` has no value"));
        }
        Ok(SpecFilter {
            key: (*key).to_owned(),
            values,
            negate,
        })
    }
}

impl SpecFilter {
    /// Whether the spec passes this filter.
    pub fn matches(&self, spec: &Spec) -> bool {
        let have: Vec<String> = match self.key.as_str() {
            "RuleID" => vec![spec.rule_id.clone()],
            "DisplayName" => spec.display_name.iter().cloned().collect(),
            "Severity" => vec![spec.severity.as_str().to_owned()],
            "LogTypes" => spec.log_types.clone(),
            "Tags" => spec.tags.clone(),
            "Status" => spec.status.iter().cloned().collect(),
            "Enabled" => vec![spec.enabled.to_string()],
            "AnalysisType" => vec!["rule".to_owned()],
            _ => Vec::new(),
        };
        let hit = have.iter().any(|h| self.values.contains(&h.to_lowercase()));
        hit != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec() -> Spec {
        Spec::parse(
            Path::new("r.yml"),
            "AnalysisType: rule\nFilename: r.wasm\nRuleID: A.B\nEnabled: true\n\
             LogTypes: [Databricks.Audit]\nSeverity: Medium\nTags: [Execution, Persistence]\n",
        )
        .unwrap()
    }

    #[test]
    fn subset_match_is_recursive() {
        let got = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        assert!(is_subset(&serde_json::json!({}), &got));
        assert!(is_subset(&serde_json::json!({"b": {"c": 2}}), &got));
        assert!(is_subset(&serde_json::json!({"e": [1]}), &got));
        assert!(!is_subset(&serde_json::json!({"b": {"c": 3}}), &got));
        assert!(!is_subset(&serde_json::json!({"z": null}), &got));
    }

    #[test]
    fn filters_match_case_insensitively_and_invert() {
        let s = spec();
        let f = |t: &str| t.parse::<SpecFilter>().unwrap().matches(&s);
        assert!(f("RuleID=a.b"));
        assert!(f("ruleid=X,A.B"));
        assert!(!f("RuleID=X"));
        assert!(f("RuleID!=X"));
        assert!(!f("Tags!=execution"));
        assert!(f("Severity=medium"));
        assert!(f("LogTypes=Databricks.Audit"));
        assert!(
            "Nope=1"
                .parse::<SpecFilter>()
                .unwrap_err()
                .contains("unknown filter key `Nope`")
        );
        assert!("RuleID".parse::<SpecFilter>().is_err());
    }
}
