//! A rule that loops, panics, exhausts memory or overflows its stack costs only itself:
//! it gets a rule-error record and a fresh instance, and the seed rules' alerts are the
//! same as without it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

pub const HOSTILE_SPEC: &str = "AnalysisType: rule
Filename: hostile.wasm
RuleID: Test.Hostile
DisplayName: Hostile test rule
Enabled: true
LogTypes: [Databricks.Audit]
Severity: High
DedupPeriodMinutes: 60
";

const T0: i64 = 1_704_067_200_000;

fn seed_events() -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..6 {
        events.push(json!({"timestamp": T0 + i * 1000, "actionName": "login",
            "workspaceId": format!("ws-{i}"), "userIdentity": {"email": "roamer@example.com"}}));
    }
    events.push(
        json!({"timestamp": T0 + 7000, "actionName": "installLibraryOnAllClusters",
        "workspaceId": "42", "userIdentity": {"email": "dev@example.com"}}),
    );
    events
}

fn hostile(t: i64, mode: &str) -> Value {
    json!({"timestamp": t, "hostile": mode, "actionName": "noop"})
}

/// Seed events with hostile triggers interleaved.
fn mixed_events() -> Vec<Value> {
    let mut events = Vec::new();
    let modes = [
        "loop", "panic", "alloc", "recurse", "error", "panic", "match",
    ];
    for (i, e) in seed_events().into_iter().enumerate() {
        events.push(hostile(T0 + i as i64 * 1000, modes[i % modes.len()]));
        events.push(e);
    }
    events
}

fn alerts_of(records: &[Value], rule: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["rule_id"] == rule && r["kind"] == "alert")
        .cloned()
        .collect()
}

#[test]
fn hostile_rule_is_stopped_and_the_others_keep_working() {
    let runtime = runtime();
    let baseline_dir = rule_dir(&[INSTALL, MULTI], &[]);
    let (baseline, _, _) = evaluate(load(&runtime, baseline_dir.path()), &seed_events());
    assert_eq!(baseline.len(), 2, "{baseline:#?}");

    let dir = rule_dir(&[INSTALL, MULTI], &[("hostile.yml", HOSTILE_SPEC)]);
    let started = Instant::now();
    let (records, summary, warnings) = evaluate(load(&runtime, dir.path()), &mixed_events());
    // One infinite loop costs one deadline (100 ms), not the run.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    for rule in [
        "Databricks.Audit.AccessToMultipleWorkspaces",
        "Databricks.Audit.InstallLibraryAllClusters",
    ] {
        let strip = |v: Vec<Value>| -> Vec<Value> {
            v.into_iter()
                .map(|mut a| {
                    // Line numbers differ because hostile events are interleaved.
                    a.as_object_mut().unwrap().remove("first_event");
                    a
                })
                .collect()
        };
        assert_eq!(
            strip(alerts_of(&records, rule)),
            strip(alerts_of(&baseline, rule)),
            "{rule}"
        );
    }

    let stats = &summary
        .rules
        .iter()
        .find(|(id, _)| id == "Test.Hostile")
        .unwrap()
        .1;
    // loop, panic, alloc, recurse, error, panic fail; match matches.
    assert_eq!(stats.rule_errors, 6, "{stats:?}");
    assert_eq!(stats.matches, 1);
    // Every trap replaced the instance; a returned error did not need to.
    assert_eq!(stats.restarts, 5, "{stats:?}");

    let mut kinds: Vec<(String, u64)> = records
        .iter()
        .filter(|r| r["kind"] == "rule_error")
        .map(|r| {
            (
                r["dedup"].as_str().unwrap().to_owned(),
                r["event_count"].as_u64().unwrap(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("ResourceLimit".to_owned(), 1),
            ("RuleError".to_owned(), 1),
            ("Timeout".to_owned(), 1),
            ("Trap".to_owned(), 3),
        ]
    );
    let timeout = records.iter().find(|r| r["dedup"] == "Timeout").unwrap();
    assert_eq!(timeout["rule_id"], "Test.Hostile");
    assert_eq!(timeout["first_event"], "events.jsonl:1");
    assert_eq!(timeout["error"], "timed out");
    let panic = records.iter().find(|r| r["dedup"] == "Trap").unwrap();
    assert!(
        panic["error"].as_str().unwrap().contains("unreachable"),
        "{panic}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("rule `Test.Hostile` failed on `events.jsonl:1`: timed out")),
        "{warnings:?}"
    );
    assert!(summary.has_errors());
}

#[test]
fn a_huge_title_is_cut_to_panthers_limit() {
    let runtime = runtime();
    let dir = rule_dir(&[], &[("hostile.yml", HOSTILE_SPEC)]);
    let (records, summary, _) = evaluate(load(&runtime, dir.path()), &[hostile(T0, "big-title")]);
    assert_eq!(records.len(), 1);
    let title = records[0]["title"].as_str().unwrap();
    assert_eq!(title.chars().count(), 1000);
    assert!(title.ends_with("... (truncated)"));
    assert_eq!(records[0]["dedup"], title);
    assert!(!summary.has_errors());
}
