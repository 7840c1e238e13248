//! What a failing rule may cost: every failed call is counted against its function; a rule
//! is quarantined after a budget of costly failures (timeouts, limits, traps) that
//! successes in between do not reset, within a few events of the budget whatever the
//! thread count, with exact figures; and the calls that freeze an alert's fields share one
//! deadline, so the ordered stage waits at most one deadline per window.

use rulehost::eval::Function;
use serde_json::{Value, json};

use crate::sandbox::HOSTILE_SPEC;
use crate::semantics::ECHO_SPEC;
use crate::util::*;

const T0: i64 = 1_704_067_200_000;

/// The number after `label` in `text` (`... 12 later events ...`).
fn number_before(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {text}"));
    text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_rule_that_loops_on_every_event_is_stopped_within_its_budget() {
    // Before: every event of every in-flight batch cost a deadline (325 s for 3,000
    // lines), and the summary said most had not been evaluated.
    let lines: String = (0..3000)
        .map(|i| format!("{}\n", json!({"timestamp": T0 + i, "hostile": "loop"})))
        .collect();
    let dir = rule_dir(&[], &[("hostile.yml", HOSTILE_SPEC)]);
    for threads in ["1", "2"] {
        let out = run(
            rulehost()
                .args(["eval", "--rules"])
                .arg(dir.path())
                .args(["--timeout-ms", "20", "--quarantine-after", "3"])
                .args(["--threads", threads]),
            &lines,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        // Quarantined at the third failing event, in input order, for any thread count.
        assert!(
            stderr.contains(
                "rule `Test.Hostile` quarantined at `<stdin>:3` after 3 calls timed out, hit a \
                 limit or trapped"
            ),
            "{stderr}"
        );
        // Exact: every later event was either not evaluated or evaluated and dropped.
        let quarantined = stderr
            .lines()
            .find(|l| l.contains("quarantined: `Test.Hostile`"))
            .unwrap();
        let skipped = number_before(quarantined, " later event");
        let discarded = if quarantined.contains("more had been evaluated") {
            number_before(quarantined, " more had been evaluated")
        } else {
            0
        };
        assert_eq!(skipped + discarded, 2997, "{quarantined}");
        // Each of the 3 line batches stops its calls after 3 failing events: at most one
        // failed `evaluate-batch`, then `rule` on 3 events. The first batch always makes
        // them; how many later ones start before the quarantine reaches the workers depends
        // on timing.
        assert!(discarded <= 6, "{quarantined}");
        let failed = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("failed calls: `Test.Hostile`: "))
            .unwrap_or_else(|| panic!("{stderr}"));
        let total: u64 = failed
            .split([';', ','])
            .map(|part| number_before(part.trim(), " Timeout"))
            .sum();
        assert!((4..=12).contains(&total), "{failed}");
    }
}

const ECHO_DEDUP_PER_EVENT: usize = 4;

fn echo_events(fields: Value) -> Vec<Value> {
    (0..ECHO_DEDUP_PER_EVENT)
        .map(|i| {
            let mut e = json!({"timestamp": T0 + i as i64, "match": true,
                "dedup": format!("d{i}")});
            for (k, v) in fields.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        })
        .collect()
}

#[test]
fn the_calls_that_freeze_a_window_share_one_deadline() {
    // `title` loops; it is called only when a match opens a window (the rule defines
    // `dedup`). Before, each of the 7 alert-field calls had its own deadline on the one
    // stage thread; now the calls after the loop are not made at all.
    let runtime = runtime();
    let dir = rule_dir(&[], &[("echo.yml", ECHO_SPEC)]);
    let events = echo_events(json!({"title": "loop"}));
    let (records, summary, _) = evaluate(load(&runtime, dir.path()), &events);
    let (batched, batched_summary, _) = evaluate_batched(load(&runtime, dir.path()), &events, 10);
    assert_eq!(batched, records);
    assert_eq!(
        path_independent(&batched_summary),
        path_independent(&summary)
    );

    let stats = &summary.rules[0].1;
    let n = ECHO_DEDUP_PER_EVENT as u64;
    assert_eq!(
        stats.failed_calls.get(&(Function::Title, "Timeout")),
        Some(&n)
    );
    for function in [
        Function::Severity,
        Function::AlertContext,
        Function::Description,
        Function::Reference,
        Function::Runbook,
        Function::Destinations,
    ] {
        assert_eq!(
            stats.failed_calls.get(&(function, "DeadlinePassed")),
            Some(&n),
            "{function}: {stats:?}"
        );
    }
    assert_eq!(stats.failed(), 7 * n, "{stats:?}");
    // Every field fell back, and the alerts were still written.
    assert_eq!(stats.aux_errors, 7 * n);
    assert_eq!(stats.alerts, n);
    let alert = &records[0];
    assert_eq!(alert["title"], "Test.Echo");
    assert_eq!(alert["severity"], "LOW");
    // Only the loops count against the failure budget: no quarantine.
    assert_eq!(stats.quarantined_at, None);
}

#[test]
fn a_rule_whose_alert_fields_keep_looping_is_quarantined() {
    let runtime = runtime();
    let dir = rule_dir(&[], &[("echo.yml", ECHO_SPEC)]);
    let mut events = Vec::new();
    for i in 0..15 {
        events.push(
            json!({"timestamp": T0 + i, "match": true, "dedup": format!("d{i}"),
            "severity": "loop"}),
        );
    }
    let (_, summary, warnings) = evaluate(load(&runtime, dir.path()), &events);
    let stats = &summary.rules[0].1;
    assert_eq!(
        stats.failed_calls.get(&(Function::Severity, "Timeout")),
        Some(&10)
    );
    assert_eq!(stats.alerts, 10);
    assert_eq!(stats.skipped, 5);
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "rule `Test.Echo` quarantined at `events.jsonl:10` after 10 calls timed out"
        )),
        "{warnings:?}"
    );
}
