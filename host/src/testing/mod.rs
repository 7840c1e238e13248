//! [`run_rule`]: runs a spec's `Tests:` ([`run_case`]) and `Scenarios:` ([`run_scenario`])
//! through its component, with `pat test`'s pass rules plus output assertions, every case
//! also through the rule's batch call when it has one; [`SpecFilter`] for `--filter`.

mod case;
mod filter;
mod scenario;

use serde::Serialize;

use crate::ruleset::LoadedRule;

pub use case::{is_subset, run_case};
pub use filter::{FILTER_KEYS, SpecFilter};
pub use scenario::{DEFAULT_SCENARIO_START, run_scenario};

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
