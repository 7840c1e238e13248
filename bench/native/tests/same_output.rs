//! `rulehost-native` writes exactly what `rulehost eval` writes: the same alert records, in
//! the same order, byte for byte, with the seed rules alone and with the 48 synthetic
//! no-match rules of `make bench`, on one thread and on several. Run through `make test`,
//! which builds the components and points `RULEHOST_COMPONENTS` at them.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use rulehost::cli::{Cli, ExitStatus};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The seed specs, the rules `make bench` runs (other bundled rules need no native port).
fn seeds() -> PathBuf {
    repo().join("rules-tests/seed")
}

fn components() -> PathBuf {
    let dir = std::env::var_os("RULEHOST_COMPONENTS")
        .map(PathBuf::from)
        .expect("RULEHOST_COMPONENTS is not set: run the tests with `make test`");
    assert!(
        dir.join("synthetic_no_match.wasm").is_file(),
        "`{}` lacks synthetic_no_match.wasm: run `make plugins`",
        dir.display()
    );
    dir
}

/// The seed specs plus `Synthetic.NoMatch.01`..`48`, as `scripts/bench.py` writes them.
fn fifty_rules(dir: &Path) {
    for entry in std::fs::read_dir(seeds()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    for i in 1..=48 {
        let spec = format!(
            "AnalysisType: rule\nFilename: synthetic_no_match.wasm\nRuleID: Synthetic.NoMatch.{i:02}\n\
             Enabled: true\nLogTypes: [Databricks.Audit]\nSeverity: Info\n"
        );
        std::fs::write(dir.join(format!("synthetic_no_match_{i:02}.yml")), spec).unwrap();
    }
}

fn rulehost_eval(rules: &Path, input: &Path, out: &Path) -> Vec<u8> {
    let cli = Cli::try_parse_from([
        "rulehost".as_ref(),
        "eval".as_ref(),
        "--components".as_ref(),
        components().as_os_str(),
        "--rules".as_ref(),
        rules.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        input.as_os_str(),
    ])
    .unwrap();
    assert_eq!(rulehost::cli::run(cli).unwrap(), ExitStatus::Success);
    std::fs::read(out).unwrap()
}

fn native(rules: &Path, input: &Path, out: &Path, threads: u32) -> Vec<u8> {
    let status = Command::new(env!("CARGO_BIN_EXE_rulehost-native"))
        .arg("--rules")
        .arg(rules)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--output")
        .arg(out)
        .arg(input)
        .status()
        .unwrap();
    assert!(status.success(), "rulehost-native failed: {status}");
    std::fs::read(out).unwrap()
}

fn assert_same_output(rules: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let input = repo().join("demo/databricks-audit-sample.jsonl");
    let expected = rulehost_eval(rules, &input, &tmp.path().join("rulehost.jsonl"));
    assert!(
        expected.split(|&b| b == b'\n').count() > 5,
        "the sample must raise alerts"
    );
    for threads in [1, 3] {
        let got = native(rules, &input, &tmp.path().join("native.jsonl"), threads);
        assert!(
            got == expected,
            "output differs with {threads} thread(s):\n--- rulehost\n{}\n--- native\n{}",
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(&got)
        );
    }
}

#[test]
fn seed_rules_give_identical_alerts() {
    assert_same_output(&seeds());
}

#[test]
fn fifty_rules_give_identical_alerts() {
    let dir = tempfile::tempdir().unwrap();
    fifty_rules(dir.path());
    assert_same_output(dir.path());
}
