//! Panther's fallbacks, limits, rule errors, signals and inline filters, end to end through
//! the `echo` test component (each function returns what the event says).

use serde_json::{Value, json};

use crate::util::*;

pub const ECHO_SPEC: &str = "AnalysisType: rule
Filename: echo.wasm
RuleID: Test.Echo
DisplayName: Echo rule
Enabled: true
LogTypes: [Test]
Severity: Low
Description: yaml description
Reference: yaml reference
Runbook: yaml runbook
OutputIds: [yaml-destination]
";

const T0: i64 = 1_704_067_200_000;

fn eval_echo(spec: &str, events: &[Value]) -> (Vec<Value>, rulehost::eval::RuleStats) {
    let runtime = runtime();
    let dir = rule_dir(&[], &[("echo.yml", spec)]);
    let (records, summary, _) = evaluate(load(&runtime, dir.path()), events);
    // `rulehost eval`'s path (batches of events per call) gives the same.
    let (batched, batched_summary, _) = evaluate_batched(load(&runtime, dir.path()), events, 50);
    assert_eq!(batched, records, "batched records");
    assert_eq!(
        path_independent(&batched_summary),
        path_independent(&summary),
        "batched counts"
    );
    (records, summary.rules[0].1.clone())
}

fn by_dedup<'a>(records: &'a [Value], dedup: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["dedup"] == dedup)
        .unwrap_or_else(|| panic!("no {dedup}: {records:#?}"))
}

fn hit(extra: Value) -> Value {
    let mut e = json!({"timestamp": T0, "match": true, "title": "a title"});
    e.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    e
}

#[test]
fn values_read_ahead_by_the_host_are_the_values_the_rule_would_read() {
    // One instance evaluates every event (one thread): the first `evaluate` reads `dedup`
    // with `get-field`; from the second on the host packs it into the call (`fields`).
    // Each kind of value must read the same either way, twice over.
    let values = [
        (json!("text é"), "text é"),
        (json!(-7), "Int(-7)"),
        (json!(2.5), "Float(2.5)"),
        (
            json!(18446744073709551615u64),
            "Float(1.8446744073709552e19)",
        ),
        (json!(true), "Bool(true)"),
        (json!(false), "Bool(false)"),
        (json!(null), "Null"),
        (json!({"k": [1, "x"]}), r#"Json("{\"k\":[1,\"x\"]}")"#),
        (json!([]), r#"Json("[]")"#),
    ];
    let mut events = Vec::new();
    for round in 0..2 {
        for (i, (value, _)) in values.iter().enumerate() {
            let mut e = hit(json!({"dedup": value}));
            e["timestamp"] = json!(T0 + (round * values.len() + i) as i64);
            events.push(e);
        }
        // Missing: not in the event at all.
        events.push(hit(json!({})));
    }
    let (records, stats) = eval_echo(ECHO_SPEC, &events);
    assert_eq!(stats.matches, events.len() as u64);
    for (_, dedup) in &values {
        assert_eq!(by_dedup(&records, dedup)["event_count"], 2, "{dedup}");
    }
    assert_eq!(
        by_dedup(&records, "defaultDedupString:Test.Echo")["event_count"],
        2
    );
    assert_eq!(records.len(), values.len() + 1, "{records:#?}");
}

#[test]
fn a_defined_dedup_that_fails_or_is_empty_gives_the_default_string() {
    let (records, stats) = eval_echo(
        ECHO_SPEC,
        &[
            hit(json!({"dedup": "", "title": "not used as dedup"})),
            hit(json!({"dedup": "panic", "title": "t2"})),
            hit(json!({"dedup": "d3", "title": "panic"})),
        ],
    );
    // panther-core `_get_dedup`: the title is the fallback only when dedup() is not defined.
    let default = by_dedup(&records, "defaultDedupString:Test.Echo");
    assert_eq!(default["event_count"], 2);
    assert_eq!(default["title"], "not used as dedup");
    // A failing title() becomes the RuleID (panther-core `_get_title`).
    assert_eq!(by_dedup(&records, "d3")["title"], "Test.Echo");
    assert_eq!(stats.aux_errors, 2, "{stats:?}");
    assert_eq!(stats.rule_errors, 0);
}

#[test]
fn a_window_of_a_threshold_takes_its_fields_from_its_first_match_once_it_alerts() {
    // The echo rule defines `unique`: 2 distinct values.
    let spec = format!("{ECHO_SPEC}Threshold: 2\n");
    let (records, stats) = eval_echo(
        &spec,
        &[
            hit(
                json!({"dedup": "a", "unique": "1", "title": "first", "severity": "high",
                "context": {"n": 1}}),
            ),
            // Its alert functions fail, but the window never alerts: they are never called.
            hit(
                json!({"dedup": "b", "unique": "1", "title": "panic", "severity": "panic",
                "context": "panic"}),
            ),
            hit(
                json!({"dedup": "a", "unique": "2", "title": "second", "severity": "low",
                "context": {"n": 2}}),
            ),
            // Fails too, and alerts: counted, once per function.
            hit(json!({"dedup": "c", "unique": "1", "severity": "panic", "context": "panic"})),
            hit(json!({"dedup": "c", "unique": "2"})),
        ],
    );
    assert_eq!(records.len(), 2, "{records:#?}");
    let a = by_dedup(&records, "a");
    assert_eq!(a["title"], "first");
    assert_eq!(a["severity"], "HIGH");
    assert_eq!(a["alert_context"], json!({"echo": {"n": 1}}));
    assert_eq!(a["event_count"], 2);
    let c = by_dedup(&records, "c");
    assert_eq!(c["severity"], "LOW");
    assert!(c["alert_context"]["_error"].is_string(), "{c}");
    assert_eq!(stats.aux_errors, 2, "{stats:?}");
    assert_eq!(stats.rule_errors, 0);
}

#[test]
fn severity_is_case_insensitive_with_default_and_invalid_falling_back() {
    let (records, stats) = eval_echo(
        ECHO_SPEC,
        &[
            hit(json!({"dedup": "high", "severity": "high"})),
            hit(json!({"dedup": "default", "severity": "DEFAULT"})),
            hit(json!({"dedup": "invalid", "severity": "SUPER"})),
        ],
    );
    assert_eq!(by_dedup(&records, "high")["severity"], "HIGH");
    assert_eq!(by_dedup(&records, "default")["severity"], "LOW");
    assert_eq!(by_dedup(&records, "invalid")["severity"], "LOW");
    assert_eq!(stats.aux_errors, 1, "an invalid severity is counted");
}

#[test]
fn oversized_and_invalid_outputs_are_cut_or_replaced() {
    let (records, stats) = eval_echo(
        ECHO_SPEC,
        &[
            hit(json!({"dedup": "big", "description": "big"})),
            hit(json!({"dedup": "ctx-invalid", "context": "not json"})),
            hit(json!({"dedup": "ctx-big", "context": "big"})),
            hit(json!({"dedup": "ctx-ok", "context": {"k": [1, {"n": null}]}})),
        ],
    );
    let big = records
        .iter()
        .find(|r| r["dedup"].as_str().unwrap().starts_with("xxx"))
        .unwrap();
    for field in ["dedup", "description"] {
        let s = big[field].as_str().unwrap();
        assert_eq!(s.chars().count(), 1000, "{field}");
        assert!(s.ends_with("... (truncated)"), "{field}");
    }
    let invalid = &by_dedup(&records, "ctx-invalid")["alert_context"];
    assert!(
        invalid["_error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{invalid}"
    );
    let too_big = &by_dedup(&records, "ctx-big")["alert_context"];
    assert!(
        too_big["_error"]
            .as_str()
            .unwrap()
            .contains("bigger than maximum of [204800] characters"),
        "{too_big}"
    );
    assert_eq!(
        by_dedup(&records, "ctx-ok")["alert_context"],
        json!({"echo": {"k": [1, {"n": null}]}})
    );
    assert_eq!(stats.aux_errors, 2, "{stats:?}");
}

#[test]
fn description_reference_runbook_and_destinations() {
    let (records, _) = eval_echo(
        ECHO_SPEC,
        &[
            hit(json!({"dedup": "own", "description": "d", "reference": "r", "runbook": "rb"})),
            hit(json!({"dedup": "failing", "description": "panic"})),
            hit(json!({"dedup": "suppress", "destinations": ""})),
            hit(json!({"dedup": "routed", "destinations": "a,b"})),
        ],
    );
    let own = by_dedup(&records, "own");
    assert_eq!(
        (
            own["description"].as_str(),
            own["reference"].as_str(),
            own["runbook"].as_str()
        ),
        (Some("d"), Some("r"), Some("rb"))
    );
    assert_eq!(by_dedup(&records, "failing")["description"], "");
    let suppressed = by_dedup(&records, "suppress");
    assert_eq!(suppressed["suppressed"], true);
    assert_eq!(suppressed["destinations"], json!([]));
    assert_eq!(
        by_dedup(&records, "routed")["destinations"],
        json!(["a", "b"])
    );
    assert_eq!(
        by_dedup(&records, "own")["destinations"],
        json!(["default-destination"])
    );
}

#[test]
fn yaml_fallbacks_when_functions_are_not_defined() {
    // The install seed defines neither dedup, severity, description nor destinations.
    let runtime = runtime();
    let dir = rule_dir(&[INSTALL], &[]);
    let event = json!({"timestamp": T0, "actionName": "installLibraryOnAllClusters"});
    let (records, _, _) = evaluate(load(&runtime, dir.path()), &[event]);
    let a = &records[0];
    assert_eq!(a["dedup"], a["title"]);
    assert_eq!(a["severity"], "MEDIUM");
    assert!(
        a["description"]
            .as_str()
            .unwrap()
            .starts_with("Detects use of the deprecated")
    );
    assert_eq!(a["destinations"], json!([]));
}

#[test]
fn rule_errors_are_a_separate_stream_keyed_by_error_kind() {
    let spec = format!("{ECHO_SPEC}Threshold: 5\nDedupPeriodMinutes: 10\n");
    let minute = 60_000;
    let events = [
        json!({"timestamp": T0, "match": "raise"}),
        json!({"timestamp": T0 + minute, "match": "raise"}),
        json!({"timestamp": T0 + 2 * minute, "match": "panic"}),
        json!({"timestamp": T0 + 3 * minute, "match": true, "dedup": "same"}),
        // After the rule's 10-minute period, the same error kind opens a new record.
        json!({"timestamp": T0 + 11 * minute, "match": "raise"}),
    ];
    let (records, stats) = eval_echo(&spec, &events);
    let errors: Vec<(String, u64)> = records
        .iter()
        .filter(|r| r["kind"] == "rule_error")
        .map(|r| {
            (
                r["dedup"].as_str().unwrap().to_owned(),
                r["event_count"].as_u64().unwrap(),
            )
        })
        .collect();
    // Threshold 5 applies to alerts, never to rule errors.
    assert_eq!(
        errors,
        vec![
            ("RuleError".into(), 2),
            ("Trap".into(), 1),
            ("RuleError".into(), 1)
        ]
    );
    assert!(
        records.iter().all(|r| r["kind"] != "alert"),
        "one match is below Threshold 5"
    );
    assert_eq!(stats.rule_errors, 4);
    let first = &records[0];
    assert_eq!(first["error"], "rule error: echo rule raised on request");
    assert_eq!(first["first_event"], "events.jsonl:1");
    assert_eq!(first["window_end"], "2024-01-01T00:10:00Z");
}

#[test]
fn create_alert_false_writes_signals_and_no_alerts() {
    let spec = format!("{ECHO_SPEC}CreateAlert: false\n");
    let (records, stats) = eval_echo(
        &spec,
        &[hit(json!({"dedup": "a"})), hit(json!({"dedup": "a"}))],
    );
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|r| r["kind"] == "signal"),
        "{records:#?}"
    );
    assert_eq!(records[1]["event_location"], "events.jsonl:2");
    assert_eq!(records[0]["event"]["dedup"], "a");
    assert_eq!((stats.signals, stats.alerts), (2, 0));
}

#[test]
fn inline_filters_run_in_the_host_before_the_rule() {
    let spec = format!(
        "{ECHO_SPEC}InlineFilters:\n  - KeyPath: source.kind\n    Condition: Equals\n    Value: keep\n"
    );
    let events = [
        json!({"timestamp": T0, "match": true, "dedup": "kept", "source": {"kind": "keep"}}),
        // Ruled out before the rule runs: the panic never happens.
        json!({"timestamp": T0, "match": "panic", "source": {"kind": "drop"}}),
    ];
    let (records, stats) = eval_echo(&spec, &events);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["dedup"], "kept");
    assert_eq!(
        (stats.filtered, stats.rule_errors, stats.matches),
        (1, 0, 1)
    );
}
