//! Bad input costs only itself: every unreadable line (malformed JSON, invalid UTF-8, a
//! 10 MB line, 10,000 levels of nesting, a line that is not an object) and every unreadable
//! file (truncated gzip, missing) is counted, reported on stderr with `file:line`, and
//! `eval` goes on: the good lines around it are still evaluated and alert as usual.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::util::*;

/// An event the bundled `InstallLibraryAllClusters` rule alerts on, once per workspace.
fn good(workspace: &str) -> String {
    json!({"timestamp": 1_704_067_200_000_i64, "actionName": "installLibraryOnAllClusters",
        "workspaceId": workspace, "userIdentity": {"email": "dev@example.com"},
        "requestParams": {"library": {"jar": "dbfs:/x.jar"}}})
    .to_string()
}

/// Runs `rulehost eval` with the bundled rules over `files`.
fn eval(files: &[PathBuf], extra: &[&str]) -> Output {
    run(
        rulehost()
            .args(["eval", "--rules"])
            .arg(rules_tests())
            .args(extra)
            .args(files),
        "",
    )
}

/// The `InstallLibraryAllClusters` alerts written, as (workspace, first event's
/// `file:line`), sorted.
fn alerts(out: &Output, dir: &Path) -> Vec<(String, String)> {
    let mut alerts: Vec<(String, String)> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| {
            a["kind"] == "alert" && a["rule_id"] == "Databricks.Audit.InstallLibraryAllClusters"
        })
        .map(|a| {
            (
                a["alert_context"]["workspace_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                a["first_event"]
                    .as_str()
                    .unwrap()
                    .replace(&dir.display().to_string(), "<dir>"),
            )
        })
        .collect();
    alerts.sort();
    alerts
}

fn pair(workspace: &str, location: &str) -> (String, String) {
    (workspace.to_owned(), location.to_owned())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Evaluates `good a`, `bad`, `good b` and checks that the bad line is skipped, counted
/// and reported as `events.jsonl:2: skipped: {reason}`, and both good lines alert.
fn assert_skipped_between_good_lines(bad: &[u8], reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = format!("{}\n", good("a")).into_bytes();
    bytes.extend_from_slice(bad);
    bytes.extend_from_slice(format!("\n{}\n", good("b")).as_bytes());
    let input = write(dir.path(), "events.jsonl", &bytes);
    let out = eval(std::slice::from_ref(&input), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: `{}:2`: skipped: {reason}\n",
            input.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("rulehost eval: 2 events from 1 file")
            && stderr.contains("  skipped: 1 bad line, 0 blank lines;"),
        "{stderr}"
    );
    assert_eq!(
        alerts(&out, dir.path()),
        [
            pair("a", "<dir>/events.jsonl:1"),
            pair("b", "<dir>/events.jsonl:3")
        ]
    );
}

#[test]
fn bad_lines_are_skipped_and_reported_and_evaluation_goes_on() {
    // Several kinds in one file, pinned as a whole.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, "{}", good("7")).unwrap();
    writeln!(f, "{{not json").unwrap();
    writeln!(f).unwrap();
    writeln!(f, "[1, 2]").unwrap();
    writeln!(f, "42").unwrap();
    f.write_all(b"{\"a\": \"\xff\"}\n").unwrap();
    writeln!(f, "{}", good("8")).unwrap();
    drop(f);
    let out = eval(&[input], &[]);
    assert_golden("eval_bad_lines", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn malformed_json() {
    assert_skipped_between_good_lines(
        br#"{"actionName": "installLibraryOnAllClusters", "#,
        "invalid JSON: EOF while parsing a value at line 1 column 45",
    );
}

#[test]
fn invalid_utf8() {
    assert_skipped_between_good_lines(b"{\"workspaceId\": \"\xc3\x28\"}", "not valid UTF-8");
}

#[test]
fn json_nested_10000_deep() {
    let deep = format!("{{\"a\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_skipped_between_good_lines(
        deep.as_bytes(),
        "invalid JSON: recursion limit exceeded at line 1 column 133",
    );
}

#[test]
fn a_line_that_is_an_array() {
    assert_skipped_between_good_lines(
        format!("[{}]", good("c")).as_bytes(),
        "expected a JSON object, found an array",
    );
}

#[test]
fn a_line_that_is_a_number() {
    assert_skipped_between_good_lines(b"1704067200000", "expected a JSON object, found a number");
}

/// A good event padded past 10 MB.
fn huge_line() -> String {
    let line = json!({"timestamp": 1_704_067_200_000_i64,
        "actionName": "installLibraryOnAllClusters", "workspaceId": "huge",
        "userIdentity": {"email": "dev@example.com"}, "padding": "p".repeat(10 << 20)})
    .to_string();
    assert!(line.len() > 10_000_000);
    line
}

#[test]
fn a_10_mb_line_is_skipped_under_the_default_cap() {
    assert_skipped_between_good_lines(huge_line().as_bytes(), "line longer than 1048576 bytes");
}

#[test]
fn a_10_mb_line_is_evaluated_under_a_larger_cap() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}\n{}\n{}\n", good("a"), huge_line(), good("b"));
    let input = write(dir.path(), "events.jsonl", text.as_bytes());
    let out = eval(&[input], &["--max-line-bytes", "16777216"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        alerts(&out, dir.path()),
        [
            pair("a", "<dir>/events.jsonl:1"),
            pair("b", "<dir>/events.jsonl:3"),
            pair("huge", "<dir>/events.jsonl:2"),
        ]
    );
}

/// Reads not covered by the pruned parse make the host parse the whole line inside the
/// rule's call: that is the host's time, given back on the deadline, so a rule is not timed
/// out for it however long the parse. Here a 4 MB line of a million small values, whose
/// whole parse takes longer than the 50 ms deadline (it fails without the give-back).
#[test]
fn the_hosts_parse_of_a_long_line_is_not_charged_to_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let line = json!({"timestamp": 1_704_067_200_000_i64,
        "actionName": "installLibraryOnAllClusters", "workspaceId": "long",
        "userIdentity": {"email": "dev@example.com"}, "padding": vec!["p"; 1 << 20]});
    let text = format!("{line}\n{}\n", good("b"));
    let input = write(dir.path(), "events.jsonl", text.as_bytes());
    let out = eval(
        &[input],
        &[
            "--max-line-bytes",
            "16777216",
            "--timeout-ms",
            "50",
            "--threads",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("failed"), "{stderr}");
    assert_eq!(
        alerts(&out, dir.path()),
        [
            pair("b", "<dir>/events.jsonl:2"),
            pair("long", "<dir>/events.jsonl:1"),
        ]
    );
}

#[test]
fn an_empty_file_is_read_as_no_events() {
    // Not an error: a log file may be empty. It is counted as a file read.
    let dir = tempfile::tempdir().unwrap();
    let files = [
        write(dir.path(), "a.jsonl", format!("{}\n", good("a")).as_bytes()),
        write(dir.path(), "empty.jsonl", b""),
        write(dir.path(), "b.jsonl", format!("{}\n", good("b")).as_bytes()),
    ];
    let out = eval(&files, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("rulehost eval: 2 events from 3 files"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(
        alerts(&out, dir.path()),
        [pair("a", "<dir>/a.jsonl:1"), pair("b", "<dir>/b.jsonl:1")]
    );
}

#[test]
fn a_truncated_gzip_is_reported_with_its_line_and_the_next_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), Default::default());
    for i in 0..200 {
        writeln!(enc, "{}", good(&format!("gz-{i}"))).unwrap();
    }
    let bytes = enc.finish().unwrap();
    let gz = write(dir.path(), "events.jsonl.gz", &bytes[..bytes.len() - 20]);
    let next = write(
        dir.path(),
        "next.jsonl",
        format!("{}\n", good("next")).as_bytes(),
    );
    let out = eval(&[gz.clone(), next], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The line being read when the stream broke, near the end of the file.
    let prefix = format!("warning: `{}:", gz.display());
    let damaged: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_once("`: skipped: read error, rest of file skipped: "))
        .map(|(line, _)| line)
        .unwrap_or_else(|| panic!("no read error reported: {stderr}"))
        .parse()
        .unwrap();
    assert!((150..=200).contains(&damaged), "{stderr}");
    assert!(stderr.contains("1 bad line"), "{stderr}");
    // Every complete line before the damage was evaluated, then the next file.
    let alerts = alerts(&out, dir.path());
    let mut expected: Vec<(String, String)> = (0..damaged - 1)
        .map(|i| {
            pair(
                &format!("gz-{i}"),
                &format!("<dir>/events.jsonl.gz:{}", i + 1),
            )
        })
        .collect();
    expected.push(pair("next", "<dir>/next.jsonl:1"));
    expected.sort();
    assert_eq!(alerts, expected);
}

#[test]
fn a_missing_file_is_reported_and_the_others_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let good_file = write(dir.path(), "b.jsonl", format!("{}\n", good("b")).as_bytes());
    let out = eval(&[missing.clone(), good_file], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("error: failed to open `{}`", missing.display())),
        "{stderr}"
    );
    assert_eq!(alerts(&out, dir.path()), [pair("b", "<dir>/b.jsonl:1")]);
}
