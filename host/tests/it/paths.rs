//! A rule's speed path (`evaluate-batch`) must give what one call per function gives:
//! `rulehost test` runs every test and scenario through each path `eval` may use and fails
//! the one that differs, by name; `eval` checks a sample of batches and turns a difference
//! into a `PathMismatch` rule error that quarantines the rule. A batch that only fails or
//! loops costs one failed call per worker, counted.

use rulehost::eval::{Function, Position};
use serde_json::{Value, json};

use crate::util::*;

/// The rule of the `split_paths` test component (also used by `serve`'s tests).
pub const SPEC: &str = "AnalysisType: rule
Filename: split_paths.wasm
RuleID: Test.SplitPaths
Enabled: true
LogTypes: [Test]
Severity: High
Threshold: 1
DedupPeriodMinutes: 60
";

const T0: i64 = 1_704_067_200_000;

/// A spec whose tests and scenario match `user` a and b on events that set the batch's
/// `mode` field (`batch: lie`, `batch: first`, ...).
fn spec_with_tests(modes: &str) -> String {
    format!(
        "{SPEC}Tests:
  - Name: matches a
    ExpectedResult: true
    Log: {{match: true, user: a, {modes}}}
    ExpectedDedup: a
  - Name: does not match
    ExpectedResult: false
    Log: {{match: false, user: x, {modes}}}
  - Name: matches b
    ExpectedResult: true
    Log: {{match: true, user: b, {modes}}}
    ExpectedDedup: b
Scenarios:
  - Name: two users
    Events:
      - {{Time: '+0m', Log: {{match: true, user: a, {modes}}}}}
      - {{Time: '+1m', Log: {{match: false, user: x, {modes}}}}}
      - {{Time: '+2m', Log: {{match: true, user: b, {modes}}}}}
    ExpectedAlerts: [{{Dedup: a}}, {{Dedup: b}}]
"
    )
}

fn test_json(modes: &str) -> (i32, Value) {
    let dir = rule_dir(&[], &[("split.yml", &spec_with_tests(modes))]);
    let out = run(
        rulehost()
            .arg("test")
            .arg(dir.path())
            .args(["--format", "json"]),
        "",
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), report)
}

/// `(case, function, text)` of every failing line of the only rule.
fn failures(report: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for rule in report["rules"].as_array().unwrap() {
        for case in rule["cases"].as_array().unwrap() {
            for f in case["functions"].as_array().unwrap() {
                if f["passed"] == false {
                    found.push((
                        case["name"].as_str().unwrap().to_owned(),
                        f["function"].as_str().unwrap().to_owned(),
                        f["text"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn honest_fast_paths_pass() {
    let (code, report) = test_json("batch: ok");
    assert_eq!(failures(&report), Vec::new());
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn a_batch_that_drops_matches_fails_its_tests_naming_evaluate_batch() {
    let (code, report) = test_json("batch: lie");
    assert_eq!(code, 1, "{report:#}");
    let failed = failures(&report);
    let named = |case: &str| {
        failed
            .iter()
            .filter(|(c, f, _)| c == case && f == "evaluate-batch")
            .count()
    };
    // Both positive tests and the scenario; nothing else is blamed.
    assert_eq!(named("matches a"), 1, "{failed:#?}");
    assert_eq!(named("matches b"), 1, "{failed:#?}");
    assert!(named("two users") >= 1, "{failed:#?}");
    assert!(
        failed
            .iter()
            .all(|(c, f, _)| f == "evaluate-batch" && c != "does not match"),
        "{failed:#?}"
    );
    let (_, _, text) = failed.iter().find(|(c, _, _)| c == "matches a").unwrap();
    assert_eq!(
        text, "it gave no match where `rule` returns true",
        "{failed:#?}"
    );
}

#[test]
fn a_batch_that_forgets_select_event_fails_its_tests() {
    // Every result is the first event's: the first test agrees, the others do not.
    let (code, report) = test_json("batch: first");
    assert_eq!(code, 1);
    let failed = failures(&report);
    assert!(
        failed.iter().any(|(c, f, t)| c == "does not match"
            && f == "evaluate-batch"
            && t.contains("`rule` returns false")),
        "{failed:#?}"
    );
    assert!(
        failed.iter().any(|(c, f, t)| c == "matches b"
            && f == "evaluate-batch"
            && t.contains("gave dedup \"a\" where `dedup` gives \"b\"")),
        "{failed:#?}"
    );
}

#[test]
fn debug_shows_the_path_that_differs() {
    let dir = rule_dir(&[], &[("split.yml", &spec_with_tests("batch: lie"))]);
    let out = run(
        rulehost()
            .args(["debug", "Test.SplitPaths", "matches a", "--path"])
            .arg(dir.path()),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("[evaluate-batch] it gave no match where `rule` returns true\n"),
        "{stdout}"
    );
}

fn events(n: usize, modes: Value) -> String {
    (0..n)
        .map(|i| {
            let mut e = json!({"timestamp": T0 + i as i64 * 1000, "match": true,
                "user": format!("u{i}")});
            for (k, v) in modes.as_object().unwrap() {
                e[k] = v.clone();
            }
            format!("{e}\n")
        })
        .collect()
}

fn eval(modes: Value, n: usize, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let dir = rule_dir(&[], &[("split.yml", SPEC)]);
    let out = run(
        rulehost()
            .args(["eval", "--rules"])
            .arg(dir.path())
            .args(extra),
        &events(n, modes),
    );
    let records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code().unwrap(),
        records,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_catches_a_batch_that_drops_matches() {
    // Before: every match dropped, exit 0. Now the first batch is checked: its events get
    // their true outcomes, the rule gets a `PathMismatch` error and is quarantined there.
    for threads in ["1", "2"] {
        let (code, records, stderr) = eval(json!({"batch": "lie"}), 100, &["--threads", threads]);
        assert_eq!(code, 2, "{stderr}");
        let mismatch: Vec<&Value> = records
            .iter()
            .filter(|r| r["kind"] == "rule_error")
            .collect();
        assert_eq!(mismatch.len(), 1, "{records:#?}");
        assert_eq!(mismatch[0]["dedup"], "PathMismatch");
        assert_eq!(mismatch[0]["first_event"], "<stdin>:1");
        assert_eq!(
            mismatch[0]["error"],
            "`evaluate-batch` disagrees with one call per function: it gave no match where \
             `rule` returns true"
        );
        // The first event's match is kept (the checked batch's outcomes are the functions').
        let alerts: Vec<&Value> = records.iter().filter(|r| r["kind"] == "alert").collect();
        assert_eq!(alerts.len(), 1, "{records:#?}");
        assert_eq!(alerts[0]["dedup"], "u0");
        assert!(
            stderr.contains(
                "rule `Test.SplitPaths` quarantined at `<stdin>:1` because its \
                             `evaluate-batch` results disagree with one call per function"
            ),
            "{stderr}"
        );
        // The worker stops calling the rule at the mismatch, as the stage quarantines it.
        assert!(
            stderr.contains(
                "quarantined: `Test.SplitPaths` at `<stdin>:1`; 99 later events not evaluated\n"
            ),
            "{stderr}"
        );
    }
}

#[test]
fn eval_with_honest_paths_is_clean() {
    let (code, records, stderr) = eval(json!({}), 100, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records.len(), 100);
}

#[test]
fn a_fast_path_that_only_loops_costs_one_deadline_per_worker_and_is_counted() {
    // `evaluate-batch` loops, the functions do not: a deadline per worker, then one call
    // per function; the alerts are all there, and the failure is counted (exit 2).
    let (code, records, stderr) = eval(
        json!({"batch": "loop"}),
        200,
        &["--threads", "2", "--timeout-ms", "20"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(records.len(), 200, "{stderr}");
    let failed = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("failed calls: `Test.SplitPaths`: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let timeouts: u64 = failed
        .strip_prefix("evaluate-batch: ")
        .and_then(|s| s.strip_suffix(" Timeout"))
        .unwrap_or_else(|| panic!("{failed}"))
        .parse()
        .unwrap();
    assert!((1..=2).contains(&timeouts), "{stderr}");

    // Given one event at a time through the library, each is a batch of one: one
    // deadline in all, then one call per function.
    let runtime = runtime();
    let dir = rule_dir(&[], &[("split.yml", SPEC)]);
    let evs: Vec<Value> = events(40, json!({"batch": "loop"}))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (records, summary, warnings) = evaluate(load(&runtime, dir.path()), &evs);
    assert_eq!(records.len(), 40);
    let stats = &summary.rules[0].1;
    assert_eq!(
        stats
            .failed_calls
            .get(&(Function::EvaluateBatch, "Timeout")),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(stats.failed(), 1, "{stats:?}");
    assert!(summary.has_errors());
    assert_eq!(stats.quarantined_at, None::<Position>);
    assert!(
        warnings.iter().any(|w| w
            == "rule `Test.SplitPaths`: `evaluate-batch` failed on `events.jsonl:1`: timed out; \
                one call per function gave the outcome"),
        "{warnings:?}"
    );
}
