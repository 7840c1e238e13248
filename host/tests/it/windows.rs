//! Panther's windows with the real AccessToMultipleWorkspaces component: Threshold 5 on
//! distinct workspaces per user, DedupPeriodMinutes 1440.

use serde_json::{Value, json};

use crate::util::*;

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const MIN: i64 = 60_000;
const DAY: i64 = 1440 * MIN;

fn access(t: i64, email: Value, workspace: Value) -> Value {
    json!({
        "timestamp": t, "serviceName": "accounts", "actionName": "login",
        "workspaceId": workspace, "userIdentity": {"email": email},
        "response": {"statusCode": 200}
    })
}

fn alerts_for(events: &[Value]) -> Vec<Value> {
    let runtime = runtime();
    let dir = rule_dir(&[MULTI], &[]);
    let (records, summary, warnings) = evaluate(load(&runtime, dir.path()), events);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!summary.has_errors());
    records
}

fn workspaces(user: &str, n: usize, step: i64) -> Vec<Value> {
    (0..n)
        .map(|i| access(T0 + i as i64 * step, json!(user), json!(format!("ws-{i}"))))
        .collect()
}

#[test]
fn four_distinct_workspaces_in_a_day_raise_nothing() {
    assert!(alerts_for(&workspaces("a@example.com", 4, 5 * 60 * MIN)).is_empty());
}

#[test]
fn fifth_distinct_workspace_inside_1440_minutes_raises_one_alert() {
    let mut events = workspaces("a@example.com", 4, 5 * 60 * MIN);
    events.push(access(T0 + DAY - 1, json!("a@example.com"), json!("ws-4")));
    // Later accesses in the window count into the same alert.
    events.push(access(T0 + DAY - 1, json!("a@example.com"), json!("ws-0")));
    let alerts = alerts_for(&events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a["kind"], "alert");
    assert_eq!(a["rule_id"], "Databricks.Audit.AccessToMultipleWorkspaces");
    assert_eq!(a["dedup"], "a@example.com");
    assert_eq!(
        a["title"],
        "User accessing multiple workspaces: a@example.com (≥5 workspaces/day)"
    );
    assert_eq!(a["severity"], "MEDIUM");
    assert_eq!(a["event_count"], 6);
    assert_eq!(a["unique_count"], 5);
    assert_eq!(a["threshold"], 5);
    assert_eq!(a["first_event_time"], "2024-01-01T00:00:00Z");
    assert_eq!(a["window_end"], "2024-01-02T00:00:00Z");
    assert_eq!(a["created_at"], "2024-01-01T23:59:59.999Z");
    assert_eq!(a["first_event"], "events.jsonl:1");
    // Fields come from the window's first match.
    assert_eq!(a["alert_context"]["workspace_id"], "ws-0");
    assert_eq!(a["alert_context"]["actor"], "a@example.com");
    assert_eq!(
        a["tags"],
        json!(["Databricks", "Lateral Movement", "Reconnaissance"])
    );
    assert_eq!(a["reports"]["MITRE ATT&CK"], json!(["TA0008:T1021"]));
}

#[test]
fn fifth_workspace_exactly_at_start_plus_1440_minutes_opens_a_new_window() {
    let mut events = workspaces("a@example.com", 4, 5 * 60 * MIN);
    events.push(access(T0 + DAY, json!("a@example.com"), json!("ws-4")));
    assert!(alerts_for(&events).is_empty());
}

#[test]
fn the_same_workspace_repeated_does_not_count() {
    let events: Vec<Value> = (0..20)
        .map(|i| access(T0 + i * MIN, json!("a@example.com"), json!("ws-same")))
        .collect();
    assert!(alerts_for(&events).is_empty());
}

#[test]
fn system_unknown_empty_and_missing_emails_never_match() {
    let mut events = Vec::new();
    for email in [
        json!("System-User"),
        json!("unknown"),
        json!(""),
        Value::Null,
    ] {
        for i in 0..6 {
            events.push(access(
                T0 + i * MIN,
                email.clone(),
                json!(format!("ws-{i}")),
            ));
        }
    }
    for i in 0..6 {
        let mut e = access(T0 + i * MIN, json!("x"), json!(format!("ws-{i}")));
        e["userIdentity"] = json!({});
        events.push(e);
    }
    let runtime = runtime();
    let dir = rule_dir(&[MULTI], &[]);
    let (records, summary, _) = evaluate(load(&runtime, dir.path()), &events);
    assert!(records.is_empty(), "{records:#?}");
    assert_eq!(summary.rules[0].1.matches, 0);
}

#[test]
fn null_or_missing_workspace_never_matches() {
    let mut events = Vec::new();
    for i in 0..6 {
        events.push(access(T0 + i * MIN, json!("a@example.com"), Value::Null));
        let mut e = access(T0 + i * MIN, json!("a@example.com"), json!("x"));
        e.as_object_mut().unwrap().remove("workspaceId");
        events.push(e);
    }
    assert!(alerts_for(&events).is_empty());
}

#[test]
fn users_are_counted_apart() {
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(access(
            T0 + i * MIN,
            json!("a@example.com"),
            json!(format!("ws-{i}")),
        ));
        events.push(access(
            T0 + i * MIN,
            json!("b@example.com"),
            json!(format!("ws-{}", i % 3)),
        ));
    }
    let alerts = alerts_for(&events);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["dedup"], "a@example.com");
}

#[test]
fn a_second_burst_after_the_window_raises_a_second_alert_with_a_new_id() {
    let mut events = workspaces("a@example.com", 5, MIN);
    events.extend((0..5).map(|i| {
        access(
            T0 + DAY + 10 * MIN + i * MIN,
            json!("a@example.com"),
            json!(format!("v-{i}")),
        )
    }));
    let alerts = alerts_for(&events);
    assert_eq!(alerts.len(), 2);
    assert_ne!(alerts[0]["alert_id"], alerts[1]["alert_id"]);
    assert_eq!(alerts[1]["window_start"], "2024-01-02T00:10:00Z");
}

#[test]
fn install_rule_alerts_per_title_window_with_threshold_one() {
    let runtime = runtime();
    let dir = rule_dir(&[INSTALL], &[]);
    let install = |t: i64, ws: &str| {
        json!({"timestamp": t, "serviceName": "clusters", "actionName": "installLibraryOnAllClusters",
               "workspaceId": ws, "userIdentity": {"email": "dev@example.com"}})
    };
    let events = [
        install(T0, "1"),
        install(T0 + MIN, "1"),
        install(T0 + 2 * MIN, "2"),
        install(T0 + 61 * MIN, "1"),
    ];
    let (alerts, _, _) = evaluate(load(&runtime, dir.path()), &events);
    let summary: Vec<(String, u64)> = alerts
        .iter()
        .map(|a| {
            (
                a["dedup"].as_str().unwrap().to_owned(),
                a["event_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let t1 = "Library installed on all clusters in workspace 1 by dev@example.com".to_owned();
    let t2 = "Library installed on all clusters in workspace 2 by dev@example.com".to_owned();
    // Windows close in end order: ws 1 [T0, T0+60m), ws 2, then ws 1 again from T0+61m.
    assert_eq!(summary, vec![(t1.clone(), 2), (t2, 1), (t1, 1)]);
    assert!(alerts.iter().all(|a| a.get("unique_count").is_none()));
    assert_eq!(alerts[0]["alert_context"]["library_config"], Value::Null);
}
