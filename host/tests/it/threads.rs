//! Output is identical for any thread count: the workers only call rules; windows, alerts,
//! counts and quarantine are decided by one ordered stage.

use std::process::Command;

use crate::sandbox::HOSTILE_SPEC;
use crate::util::*;

/// Generated Databricks events (with roaming users, so the threshold rule fires), plus
/// hostile lines and bad lines sprinkled in.
fn input(dir: &std::path::Path) -> std::path::PathBuf {
    let generated = dir.join("generated.jsonl");
    let status = Command::new("python3")
        .arg(repo().join("scripts/gen_databricks.py"))
        .args([
            "--events",
            "6000",
            "--seed",
            "11",
            "--hours",
            "60",
            "--roamers",
            "8",
            "--output",
        ])
        .arg(&generated)
        .status()
        .expect("python3 runs the generator");
    assert!(status.success());
    let text = std::fs::read_to_string(&generated).unwrap();
    let mut mixed = String::new();
    for (i, line) in text.lines().enumerate() {
        mixed.push_str(line);
        mixed.push('\n');
        if i % 997 == 0 {
            mixed.push_str("{\"timestamp\": 1704067200000, \"hostile\": \"panic\"}\n");
            mixed.push_str("not json\n");
        }
    }
    let path = dir.join("mixed.jsonl");
    std::fs::write(&path, mixed).unwrap();
    path
}

#[test]
fn alerts_are_identical_for_any_thread_count() {
    let rules = rule_dir(&[INSTALL, MULTI], &[("hostile.yml", HOSTILE_SPEC)]);
    let data = tempfile::tempdir().unwrap();
    let input = input(data.path());
    let run_with = |threads: &str| {
        let out = run(
            rulehost()
                .args(["eval", "--threads", threads, "--rules"])
                .arg(rules.path())
                .arg(&input),
            "",
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "bad lines and rule errors mean exit 2"
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        // Timing is the one line allowed to differ.
        let summary: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("rulehost eval:"))
            .collect();
        (String::from_utf8(out.stdout).unwrap(), summary.join("\n"))
    };
    let (one, one_summary) = run_with("1");
    let alerts = one
        .lines()
        .filter(|l| l.contains(r#""kind":"alert""#))
        .count();
    assert!(
        alerts >= 8,
        "the generated data should raise alerts, got {alerts}"
    );
    assert!(one.contains(r#""kind":"rule_error""#));
    for threads in ["2", "4"] {
        let (many, many_summary) = run_with(threads);
        assert_eq!(many, one, "--threads {threads} changed the alerts");
        assert_eq!(
            many_summary, one_summary,
            "--threads {threads} changed the summary"
        );
    }
}
