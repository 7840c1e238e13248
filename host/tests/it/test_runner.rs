//! `rulehost test` and `rulehost debug`: output assertions, scenarios, selection flags,
//! JSON results and exit codes.

use crate::sandbox::HOSTILE_SPEC;
use crate::semantics::ECHO_SPEC;
use crate::util::*;

const ECHO_TESTS: &str = r#"Tests:
  - Name: passes with assertions
    ExpectedResult: true
    Log: {match: true, title: T, dedup: D, severity: high, unique: u, context: {k: 1, n: [1]}}
    ExpectedTitle: T
    ExpectedDedup: D
    ExpectedSeverity: HIGH
    ExpectedUnique: u
    ExpectedAlertContext: {echo: {k: 1}}
    ExpectedDestinations: [default-destination]
  - Name: wrong title and context
    ExpectedResult: true
    Log: {match: true, title: T, context: {k: 2}}
    ExpectedTitle: other
    ExpectedAlertContext: {echo: {k: 1}}
  - Name: unique error fails the test
    ExpectedResult: true
    Log: {match: true, title: T, unique: panic}
  - Name: negative
    ExpectedResult: false
    Log: {match: false}
Scenarios:
  - Name: expects an alert that never comes
    Events:
      - {Time: "+0m", Log: {match: true, dedup: a}}
      - {Time: "+1m", Log: {match: "raise"}}
    ExpectedAlerts: [{Dedup: a, EventCount: 1}, {Dedup: b}]
"#;

fn echo_dir() -> tempfile::TempDir {
    rule_dir(&[], &[("echo.yml", &format!("{ECHO_SPEC}{ECHO_TESTS}"))])
}

#[test]
fn assertions_scenarios_and_unique_errors_fail_with_exit_1() {
    let dir = echo_dir();
    let out = run(rulehost().arg("test").arg(dir.path()), "");
    assert_golden("test_runner_failures", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn show_failures_only_and_test_names() {
    let dir = echo_dir();
    let out = run(
        rulehost()
            .arg("test")
            .arg(dir.path())
            .arg("--show-failures-only"),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("[PASS] negative"), "{stdout}");
    assert!(
        stdout.contains("[FAIL] wrong title and context"),
        "{stdout}"
    );

    let out = run(
        rulehost().arg("test").arg(dir.path()).args([
            "--test-names",
            "negative",
            "--test-names",
            "passes with assertions",
        ]),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");

    // A rule none of whose tests is named is skipped, not passed.
    let out = run(
        rulehost()
            .arg("test")
            .arg(rules_tests())
            .args(["--test-names", "negative"]),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Skipped Tests Summary") && stdout.contains("\tSkipped: 2"),
        "{stdout}"
    );
}

#[test]
fn minimum_tests_needs_positive_and_negative_cases() {
    let only_positive = format!(
        "{ECHO_SPEC}Tests:\n  - Name: one\n    ExpectedResult: true\n    Log: {{match: true}}\n  \
         - Name: two\n    ExpectedResult: true\n    Log: {{match: true}}\n"
    );
    let dir = rule_dir(&[], &[("echo.yml", &only_positive)]);
    let out = run(
        rulehost()
            .arg("test")
            .arg(dir.path())
            .args(["--minimum-tests", "2"]),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("needs at least one `ExpectedResult: true` and one `false` test"),
        "{stdout}"
    );
    let out = run(
        rulehost()
            .arg("test")
            .arg(dir.path())
            .args(["--minimum-tests", "3"]),
        "",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("has 2 test(s), needs at least 3"));
    let out = run(
        rulehost()
            .arg("test")
            .arg(rules_tests())
            .args(["--minimum-tests", "2"]),
        "",
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn json_format_is_machine_readable() {
    let dir = echo_dir();
    let out = run(
        rulehost()
            .arg("test")
            .arg(dir.path())
            .args(["--format", "json"]),
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["tests_failed"], 3);
    assert_eq!(report["summary"]["tests_passed"], 2);
    let rule = &report["rules"][0];
    assert_eq!(rule["rule_id"], "Test.Echo");
    assert_eq!(rule["status"], "failed");
    let unique = &rule["cases"][2];
    assert_eq!(unique["name"], "unique error fails the test");
    let f = unique["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == "unique")
        .unwrap();
    assert_eq!(f["passed"], false);
    assert!(f["text"].as_str().unwrap().contains("trapped"), "{f}");
    assert_eq!(rule["cases"][4]["kind"], "scenario");
}

#[test]
fn inline_filters_are_honoured_by_tests() {
    let spec = format!(
        "{ECHO_SPEC}InlineFilters:\n  - KeyPath: kind\n    Condition: IsIn\n    Values: [a, b]\n\
         Tests:\n  - Name: filtered out\n    ExpectedResult: false\n    Log: {{match: true, kind: c}}\n  \
         - Name: kept\n    ExpectedResult: true\n    Log: {{match: true, kind: a}}\n"
    );
    let dir = rule_dir(&[], &[("echo.yml", &spec)]);
    let out = run(rulehost().arg("test").arg(dir.path()), "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("[PASS] [rule] false (ruled out by InlineFilters)"),
        "{stdout}"
    );
}

#[test]
fn debug_shows_what_the_rule_printed() {
    let spec = format!(
        "{HOSTILE_SPEC}Tests:\n  - Name: prints\n    ExpectedResult: true\n    Log: {{hostile: print}}\n"
    );
    let dir = rule_dir(&[], &[("hostile.yml", &spec)]);
    let out = run(
        rulehost()
            .args(["debug", "Test.Hostile", "prints", "--path"])
            .arg(dir.path()),
        "",
    );
    assert_golden("debug_prints", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(0));
    let out = run(
        rulehost()
            .args(["debug", "Test.Hostile", "nope", "--path"])
            .arg(dir.path()),
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("rule `Test.Hostile` has no test `nope` (its tests: prints)")
    );
}
