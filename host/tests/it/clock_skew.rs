//! One line with a poisoned timestamp must not move the event-time clock: it would close
//! every open window early and lose the alerts later events raise. Such a line is still
//! evaluated (at the clock's time), counted and reported with `file:line`, with and without
//! `--state`; a real jump of the stream (a quiet night) still moves the clock.

use std::path::Path;

use serde_json::{Value, json};

use crate::util::*;

const T0: i64 = 1_704_067_200_000; // 2024-01-01
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 9999-01-01: ahead of any machine's clock.
const YEAR_9999: i64 = 253_370_764_800_000;

fn login(t: i64, user: &str, workspace: usize) -> Value {
    json!({"timestamp": t, "actionName": "login", "workspaceId": format!("ws-{workspace}"),
        "userIdentity": {"email": user}})
}

/// `roamer` logs into five workspaces over four hours: one threshold alert of the
/// multi-workspace rule, raised only if all five land in one window.
fn roaming(start: i64) -> Vec<Value> {
    (0..5)
        .map(|i| login(start + i as i64 * HOUR, "roamer@example.com", i))
        .collect()
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

fn eval(dir: &Path, input: &str, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let out = run(
        rulehost()
            .current_dir(dir)
            .args(["eval", "--rules"])
            .arg(rules_tests())
            .args(extra),
        input,
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

fn alerts_of_roamer(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "alert" && r["dedup"] == "roamer@example.com")
        .cloned()
        .collect()
}

/// The roaming events with `poison` inserted after the third.
fn poisoned(poison: Value) -> Vec<Value> {
    let mut events = roaming(T0);
    events.insert(3, poison);
    events
}

#[test]
fn a_year_9999_line_neither_loses_nor_delays_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clean, _) = eval(dir.path(), &lines(&roaming(T0)), &[]);
    let expected = alerts_of_roamer(&clean);
    assert_eq!(expected.len(), 1);

    let events = poisoned(login(YEAR_9999, "mallory@example.com", 9));
    let (code, records, stderr) = eval(dir.path(), &lines(&events), &[]);
    assert_eq!(alerts_of_roamer(&records), expected, "{stderr}");
    // Counted and reported with its line; not a failure of the run.
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "warning: `<stdin>:4`: event time 9999-01-01T00:00:00Z is more than 1h ahead of \
             the event-time clock (2024-01-01T02:00:00Z): it is evaluated and windowed at the \
             clock's time, and does not move it"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("  clock: 1 event too far ahead of the event-time clock to move it"),
        "{stderr}"
    );
    // Its own match is windowed at the clock's time.
    let mallory = records.iter().find(|r| r["dedup"] == "mallory@example.com");
    assert!(mallory.is_none(), "one workspace is below the threshold");

    // Without the guard the line closes the roamer's window after three workspaces.
    let (_, unguarded, _) = eval(dir.path(), &lines(&events), &["--max-clock-skew", "0"]);
    assert_eq!(alerts_of_roamer(&unguarded), Vec::<Value>::new());
}

#[test]
fn a_lone_line_days_ahead_of_the_stream_does_not_move_the_clock() {
    // In the past for this machine, but two days ahead of the events around it: only the
    // event after it shows it was an outlier.
    let dir = tempfile::tempdir().unwrap();
    let (_, clean, _) = eval(dir.path(), &lines(&roaming(T0)), &[]);
    let events = poisoned(login(T0 + 2 * DAY, "mallory@example.com", 9));
    let (code, records, stderr) = eval(dir.path(), &lines(&events), &[]);
    assert_eq!(
        alerts_of_roamer(&records),
        alerts_of_roamer(&clean),
        "{stderr}"
    );
    assert_eq!(code, 0);
    assert!(
        stderr.contains("`<stdin>:4`: event time 2024-01-03T00:00:00Z is more than 1h ahead"),
        "{stderr}"
    );
}

#[test]
fn a_quiet_night_still_moves_the_clock() {
    // Two bursts eight hours apart, each followed by more events: the second burst is a
    // real move of the stream, applied at its own time, as without the guard.
    let dir = tempfile::tempdir().unwrap();
    let mut events: Vec<Value> = (0..3)
        .map(|i| login(T0 + i * MIN, "early@example.com", 1))
        .collect();
    events.extend(roaming(T0 + 8 * HOUR));
    events.push(login(T0 + DAY + 9 * HOUR, "late@example.com", 1));
    let (_, guarded, stderr) = eval(dir.path(), &lines(&events), &[]);
    let (_, unguarded, _) = eval(dir.path(), &lines(&events), &["--max-clock-skew", "0"]);
    assert_eq!(guarded, unguarded);
    assert!(
        !stderr.contains("ahead of the event-time clock"),
        "{stderr}"
    );
    assert_eq!(alerts_of_roamer(&guarded).len(), 1);
}

fn state_runs(files: &[Vec<Value>]) -> Vec<(Vec<Value>, String)> {
    let dir = tempfile::tempdir().unwrap();
    files
        .iter()
        .enumerate()
        .map(|(i, events)| {
            let name = format!("hour-{i}.jsonl");
            std::fs::write(dir.path().join(&name), lines(events)).unwrap();
            let (code, records, stderr) = eval(dir.path(), "", &["--state", "state.db", &name]);
            assert_eq!(code, 0, "{stderr}");
            (alerts_of_roamer(&records), stderr)
        })
        .collect()
}

#[test]
fn with_state_a_poisoned_line_neither_loses_nor_delays_an_alert() {
    // Hourly runs on one state: the first file has three roaming logins (and the poisoned
    // line, last), the second the other two, the third (a day later) closes the window:
    // the alert is written by the third run, as without the line.
    let files = |poison: Option<Value>| -> Vec<Vec<Value>> {
        let events = roaming(T0);
        let mut first: Vec<Value> = events[..3].to_vec();
        first.extend(poison);
        vec![
            first,
            events[3..].to_vec(),
            vec![
                login(T0 + 2 * DAY, "late@example.com", 1),
                login(T0 + 2 * DAY + MIN, "late@example.com", 1),
            ],
        ]
    };
    let alerts = |files: &[Vec<Value>]| -> Vec<Vec<Value>> {
        state_runs(files).into_iter().map(|(a, _)| a).collect()
    };
    let clean = alerts(&files(None));
    assert_eq!(clean.iter().map(Vec::len).collect::<Vec<_>>(), [0, 0, 1]);
    for poison in [
        login(YEAR_9999, "mallory@example.com", 9),
        login(T0 + 2 * DAY, "mallory@example.com", 9),
    ] {
        assert_eq!(alerts(&files(Some(poison.clone()))), clean, "{poison}");
    }
}

#[test]
fn a_run_that_ends_on_an_undecided_line_leaves_it_to_the_next() {
    // The second file holds one event, two days ahead: nothing after it in that run says
    // whether the stream moved on. The state keeps it, and the next run's first event
    // decides it (here: it did, so the roamer's window closes and alerts).
    let runs = state_runs(&[
        roaming(T0),
        vec![login(T0 + 2 * DAY, "late@example.com", 1)],
        vec![login(T0 + 2 * DAY + MIN, "late@example.com", 1)],
    ]);
    let counts: Vec<usize> = runs.iter().map(|(a, _)| a.len()).collect();
    assert_eq!(counts, [0, 0, 1]);
    assert!(
        runs[1]
            .1
            .contains("  clock: 1 event held in the state for the next run"),
        "{}",
        runs[1].1
    );
    assert!(
        runs[2].1.contains("rulehost eval: 2 events from 1 file"),
        "{}",
        runs[2].1
    );
}
