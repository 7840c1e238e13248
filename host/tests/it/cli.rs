//! The command line, pinned by golden transcripts (`BLESS=1` rewrites them).

use std::io::Write;

use crate::util::*;

#[test]
fn test_command_runs_the_bundled_specs() {
    let out = run(rulehost().arg("test").arg(rules_tests()), "");
    assert_golden("test_bundled", &transcript(&out, None));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn test_command_filters_by_rule_id() {
    let out = run(
        rulehost().arg("test").arg(rules_tests()).args([
            "--filter",
            "RuleID=Databricks.Audit.InstallLibraryAllClusters",
        ]),
        "",
    );
    assert_golden("test_filtered", &transcript(&out, None));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn failing_and_invalid_specs_are_reported() {
    let failing = std::fs::read_to_string(rules_tests().join(INSTALL))
        .unwrap()
        .replace(
            "Name: Normal Library Install\n    ExpectedResult: false",
            "Name: Normal Library Install\n    ExpectedResult: true",
        )
        .replace(
            "RuleID: \"Databricks.Audit.InstallLibraryAllClusters\"",
            "RuleID: Failing.Copy",
        );
    assert!(failing.contains("RuleID: Failing.Copy"));
    let dir = rule_dir(
        &[MULTI],
        &[
            ("failing.yml", &failing),
            (
                "missing.yml",
                &sandbox_spec("nowhere.wasm", "Missing.Component"),
            ),
            (
                "typo.yml",
                "AnalysisType: rule\nFilename: x.wasm\nRuleID: Typo\nEnabled: true\nLogTypes: [X]\nSeverity: Low\nTresholds: 3\n",
            ),
        ],
    );
    let out = run(rulehost().arg("test").arg(dir.path()), "");
    assert_golden("test_failing_invalid", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(2));

    // Without the invalid specs, a failing test alone exits 1.
    std::fs::remove_file(dir.path().join("missing.yml")).unwrap();
    std::fs::remove_file(dir.path().join("typo.yml")).unwrap();
    let out = run(rulehost().arg("test").arg(dir.path()), "");
    assert_eq!(out.status.code(), Some(1));
}

fn sandbox_spec(filename: &str, id: &str) -> String {
    format!(
        "AnalysisType: rule\nFilename: {filename}\nRuleID: {id}\nEnabled: true\nLogTypes: [X]\nSeverity: Low\n"
    )
}

const GOOD: &str = r#"{"timestamp": 1704067200000, "actionName": "installLibraryOnAllClusters", "workspaceId": "7", "userIdentity": {"email": "dev@example.com"}, "requestParams": {"library": {"jar": "dbfs:/x.jar"}}}"#;

#[test]
fn eval_reads_stdin_and_gzip() {
    let stdin = format!("{GOOD}\n");
    let out = run(
        rulehost().args(["eval", "--rules"]).arg(rules_tests()),
        &stdin,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_stdin = String::from_utf8(out.stdout).unwrap();
    assert_eq!(from_stdin.lines().count(), 1);

    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("events.jsonl.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), Default::default());
    enc.write_all(stdin.as_bytes()).unwrap();
    enc.finish().unwrap();
    let out = run(
        rulehost()
            .args(["eval", "--rules"])
            .arg(rules_tests())
            .arg(&gz),
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_gz = String::from_utf8(out.stdout).unwrap();
    // Same alert; only the location differs.
    assert_eq!(
        from_gz.replace(&format!("{}:1", gz.display()), "<stdin>:1"),
        from_stdin
    );
}

#[test]
fn eval_fail_on_alerts_and_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("alerts.jsonl");
    let out = run(
        rulehost()
            .args(["eval", "--fail-on-alerts", "--rules"])
            .arg(rules_tests())
            .arg("-o")
            .arg(&out_path),
        &format!("{GOOD}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&out_path).unwrap();
    let alert: serde_json::Value = serde_json::from_str(written.trim()).unwrap();
    assert_eq!(
        alert["alert_context"]["library_config"],
        serde_json::json!({"library": {"jar": "dbfs:/x.jar"}})
    );
}

#[test]
fn eval_refuses_a_rule_folder_with_an_invalid_spec() {
    let dir = rule_dir(
        &[INSTALL],
        &[(
            "missing.yml",
            &sandbox_spec("nowhere.wasm", "Missing.Component"),
        )],
    );
    let out = run(rulehost().args(["eval", "--rules"]).arg(dir.path()), "");
    assert_golden("eval_invalid_spec", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn eval_demo_sample_fires_both_seed_rules() {
    let out = run(
        rulehost()
            .args(["eval", "--rules"])
            .arg(rules_tests())
            .arg(repo().join("demo/databricks-audit-sample.jsonl")),
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    let alerts: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for rule in [
        "Databricks.Audit.AccessToMultipleWorkspaces",
        "Databricks.Audit.InstallLibraryAllClusters",
    ] {
        assert!(
            alerts.iter().any(|a| a["rule_id"] == rule),
            "{rule} did not fire"
        );
    }
}

#[test]
fn instance_and_table_caps_are_configurable() {
    // A Rust component needs more than one core instance: a cap of 1 refuses to instantiate
    // it, which the run reports as rule errors instead of crashing.
    let out = run(
        rulehost()
            .args(["eval", "--max-instances", "1", "--rules"])
            .arg(rules_tests()),
        &format!("{GOOD}\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("failed to instantiate"), "{stderr}");
    let out = run(
        rulehost()
            .args(["eval", "--max-table-elements", "1", "--rules"])
            .arg(rules_tests()),
        &format!("{GOOD}\n"),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The defaults run it.
    let out = run(
        rulehost().args(["eval", "--rules"]).arg(rules_tests()),
        &format!("{GOOD}\n"),
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn the_demo_sample_is_what_the_seeded_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    let generate = |name: &str| {
        let path = dir.path().join(name);
        let status = std::process::Command::new("python3")
            .arg(repo().join("scripts/gen_databricks.py"))
            .args([
                "--events",
                "2000",
                "--seed",
                "7",
                "--hours",
                "48",
                "--roamers",
                "3",
                "--output",
            ])
            .arg(&path)
            .status()
            .expect("python3 runs the generator");
        assert!(status.success());
        std::fs::read(path).unwrap()
    };
    let first = generate("a.jsonl");
    assert_eq!(first, generate("b.jsonl"), "same seed, different output");
    // `make demo-data` regenerates the committed sample with exactly these arguments.
    assert_eq!(
        first,
        std::fs::read(repo().join("demo/databricks-audit-sample.jsonl")).unwrap()
    );
}
