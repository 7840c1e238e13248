//! A rule cannot make the alert state grow without bound: per-rule caps on live windows,
//! unique values per window and the bytes its windows keep; reaching one is a counted,
//! reported `StateLimit` rule error (exit 2), and the process's memory stays within them.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::semantics::ECHO_SPEC;
use crate::util::*;

const T0: i64 = 1_704_067_200_000;

fn lines(events: impl IntoIterator<Item = Value>) -> String {
    events.into_iter().map(|e| format!("{e}\n")).collect()
}

fn eval(input: &str, flags: &[&str]) -> (i32, Vec<Value>, String) {
    let dir = rule_dir(&[], &[("echo.yml", ECHO_SPEC)]);
    let out = run(
        rulehost()
            .args(["eval", "--rules"])
            .arg(dir.path())
            .args(flags),
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

fn kinds<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

#[test]
fn live_windows_are_capped_per_rule() {
    let input = lines(
        (0..5).map(|i| json!({"timestamp": T0 + i, "match": true, "dedup": format!("d{i}")})),
    );
    let (code, records, stderr) = eval(&input, &["--max-windows", "3"]);
    assert_eq!(code, 2, "{stderr}");
    let alerts: Vec<&Value> = kinds(&records, "alert");
    let dedups: Vec<&str> = alerts
        .iter()
        .map(|a| a["dedup"].as_str().unwrap())
        .collect();
    assert_eq!(dedups, ["d0", "d1", "d2"]);
    let errors = kinds(&records, "rule_error");
    assert_eq!(errors.len(), 1, "{records:#?}");
    assert_eq!(errors[0]["dedup"], "StateLimit");
    assert_eq!(errors[0]["first_event"], "<stdin>:4");
    assert_eq!(errors[0]["event_count"], 2);
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("the rule has 3 live windows, the most allowed (--max-windows)"),
        "{:#}",
        errors[0]
    );
    assert!(
        stderr.contains("state limits: `Test.Echo`: 2 matches hit a cap"),
        "{stderr}"
    );
    // Without the cap: five alerts, clean.
    let (code, records, _) = eval(&input, &[]);
    assert_eq!((code, kinds(&records, "alert").len()), (0, 5));
}

#[test]
fn unique_values_are_capped_per_window() {
    let input = lines((0..4).map(
        |i| json!({"timestamp": T0 + i, "match": true, "dedup": "d", "unique": format!("u{i}")}),
    ));
    let (code, records, stderr) = eval(&input, &["--max-unique-values", "2"]);
    assert_eq!(code, 2, "{stderr}");
    let alerts = kinds(&records, "alert");
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (
            alerts[0]["event_count"].as_u64(),
            alerts[0]["unique_count"].as_u64()
        ),
        (Some(4), Some(2))
    );
    let errors = kinds(&records, "rule_error");
    assert_eq!(errors[0]["dedup"], "StateLimit");
    assert_eq!(errors[0]["event_count"], 2);
}

/// Runs `rulehost eval` on `input` and samples its peak resident memory (VmHWM) until it
/// exits; returns the exit code, the stderr and the last peak read, in MiB.
fn peak_memory_mib(input: String, flags: &[&str]) -> (i32, String, u64) {
    let dir = rule_dir(&[], &[("echo.yml", ECHO_SPEC)]);
    let mut child = rulehost()
        .args(["eval", "--rules"])
        .arg(dir.path())
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut peak_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    writer.join().unwrap().unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_kib >> 10,
    )
}

#[test]
fn memory_stays_within_the_state_cap() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("note: no /proc: the memory of `rulehost eval` cannot be read here; skipped");
        return;
    }
    // The attack: a new dedup string and a 199 KiB alert context per event. 1,500 small
    // lines would keep about 300 MB of frozen contexts.
    let input = lines((0..1500).map(|i| {
        json!({"timestamp": T0 + i, "match": true, "dedup": format!("d{i}"), "context": "large"})
    }));
    let (code, stderr, capped) =
        peak_memory_mib(input.clone(), &["--max-state-mib", "16", "--threads", "2"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("state limits: `Test.Echo`:"), "{stderr}");
    let (_, _, uncapped) = peak_memory_mib(input, &["--max-state-mib", "4096", "--threads", "2"]);
    eprintln!("peak memory: {capped} MiB with a 16 MiB cap, {uncapped} MiB without");
    // The measurement sees the state: without the cap it holds the contexts.
    assert!(uncapped > 250, "{uncapped} MiB uncapped");
    // With it, the process stays near its fixed cost (engine, instances, buffers) plus 16
    // MiB.
    assert!(
        capped < 120,
        "{capped} MiB capped (uncapped: {uncapped} MiB)"
    );
}
