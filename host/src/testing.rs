//! [`run_rule_tests`]: runs a spec's `Tests:` through its component, with `pat test`'s
//! pass rules, and [`SpecFilter`] for `--filter`.

use std::sync::Arc;

use serde_json::Value;

use crate::ruleset::LoadedRule;
use crate::runtime::{Output, RuleFailure, RuleInstance};
use crate::semantics::{self, Called};
use crate::spec::{Spec, TestCase};

/// The outcome of one function in one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionResult {
    /// `rule`, `title`, `dedup`, `alertContext`, ... (Panther's names).
    pub function: &'static str,
    /// Whether it counts as passing.
    pub passed: bool,
    /// The value shown, or the error.
    pub text: String,
}

/// The outcome of one test case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The test's `Name`.
    pub name: String,
    /// Whether the whole test passed.
    pub passed: bool,
    /// Per-function results, in Panther's display order.
    pub functions: Vec<FunctionResult>,
    /// What the rule printed: (stdout, stderr).
    pub output: (String, String),
}

/// Runs every function of a rule on an event, replacing the instance after a trap (a trap
/// poisons the Store), and keeps what the rule printed.
struct Runner<'a> {
    rule: &'a LoadedRule,
    instance: Option<RuleInstance>,
    stdout: String,
    stderr: String,
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
            && let Some((out, err)) = inst.captured_output()
        {
            self.stdout.push_str(&out);
            self.stderr.push_str(&err);
        }
    }
}

/// Runs one test case the way `pat test` does: every function runs (test mode), and
/// - `ExpectedResult: true` passes when `rule` returns true and no function failed,
///   `unique` included (pat ignores a failing `unique`: a known bug);
/// - `ExpectedResult: false` passes when `rule` returns false without failing.
pub fn run_case(rule: &LoadedRule, case: &TestCase) -> CaseResult {
    let spec = &rule.spec;
    let event = Arc::new(case.log.clone());
    let mut runner = Runner {
        rule,
        instance: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    let matched = runner.call(&event, RuleInstance::rule);
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
            function: "rule",
            passed: *m == case.expected_result,
            text: m.to_string(),
        },
        Err(f) => FunctionResult {
            function: "rule",
            passed: false,
            text: f.to_string(),
        },
    };
    let mut functions = vec![rule_line];
    if case.expected_result {
        let mut push = |function: &'static str, called: Result<Option<String>, String>| match called
        {
            Ok(Some(text)) => functions.push(FunctionResult {
                function,
                passed: true,
                text,
            }),
            Ok(None) => {}
            Err(text) => functions.push(FunctionResult {
                function,
                passed: false,
                text,
            }),
        };
        let plain = |c: &Called<String>| c.clone().map_err(|f| f.to_string());
        push("title", plain(&title));
        // The dedup line always shows, with its fallback, as pat prints it.
        push(
            "dedup",
            match &dedup {
                Err(f) => Err(f.to_string()),
                Ok(_) => Ok(Some(semantics::dedup(spec, &dedup, &title))),
            },
        );
        push(
            "alertContext",
            match &context {
                Ok(None) => Ok(None),
                _ => match semantics::alert_context(&context) {
                    (v, None) => Ok(Some(v.to_string())),
                    (_, Some(e)) => Err(e),
                },
            },
        );
        push("description", plain(&description));
        push("reference", plain(&reference));
        push(
            "severity",
            match &severity {
                Ok(None) => Ok(None),
                _ => match semantics::severity(spec, &severity) {
                    (sev, None) => Ok(Some(sev.as_str().to_owned())),
                    (_, Some(e)) => Err(e),
                },
            },
        );
        push("runbook", plain(&runbook));
        push(
            "destinations",
            destinations
                .map(|d| d.map(|d| format!("{d:?}")))
                .map_err(|f| f.to_string()),
        );
        push("unique", plain(&unique));
    }
    let passed = functions.iter().all(|f| f.passed);
    CaseResult {
        name: case.name.clone(),
        passed,
        functions,
        output: (runner.stdout, runner.stderr),
    }
}

/// Runs every test of a rule, in spec order.
pub fn run_rule_tests(rule: &LoadedRule) -> Vec<CaseResult> {
    rule.spec
        .tests
        .iter()
        .map(|case| run_case(rule, case))
        .collect()
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
