//! The rule contract (`rulehost:rules@1.0.0`) is enough to write a rule without the SDK: a
//! component written with plain `wit-bindgen` that implements only Panther's functions
//! passes the seed spec's Tests and Scenarios and gives the same alerts as the SDK build,
//! one call per function; a component built against 0.x is refused (`audit.rs`).

use crate::util::*;

/// The seed spec of `Databricks.Audit.InstallLibraryAllClusters`, pointed at the plain
/// `wit-bindgen` build of the rule.
fn plain_spec() -> String {
    std::fs::read_to_string(rules_tests().join(INSTALL))
        .unwrap()
        .replace(
            "Filename: databricks_install_library_all_clusters.wasm",
            "Filename: plain_install_library.wasm",
        )
}

#[test]
fn a_plain_wit_bindgen_rule_passes_the_seed_tests_and_scenarios() {
    let spec = plain_spec();
    assert!(spec.contains("plain_install_library.wasm"));
    let dir = rule_dir(&[], &[(INSTALL, &spec)]);
    let out = run(rulehost().arg("test").arg(dir.path()), "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let seed = run(
        rulehost().arg("test").arg(rule_dir(&[INSTALL], &[]).path()),
        "",
    );
    // The same cases pass, with the same lines (paths aside).
    let cases = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with('\t') && !l.starts_with("\tPath:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        cases(&stdout),
        cases(&String::from_utf8_lossy(&seed.stdout))
    );
    assert!(
        stdout.contains("[PASS] Repeats within an hour share one alert"),
        "{stdout}"
    );
}

#[test]
fn a_plain_wit_bindgen_rule_alerts_as_the_sdk_build_does() {
    let runtime = runtime();
    let plain = rule_dir(&[], &[(INSTALL, &plain_spec())]);
    let sdk = rule_dir(&[INSTALL], &[]);
    let plain_rules = load(&runtime, plain.path());
    let sdk_rules = load(&runtime, sdk.path());
    // The plain rule exports only Panther's functions; the SDK adds the batch path.
    assert!(!plain_rules[0].component.has_batch());
    assert!(sdk_rules[0].component.has_batch());

    let eval = |dir: &std::path::Path| {
        run(
            rulehost()
                .args(["eval", "--rules"])
                .arg(dir)
                .arg(repo().join("demo/databricks-audit-sample.jsonl")),
            "",
        )
    };
    let (plain_out, sdk_out) = (eval(plain.path()), eval(sdk.path()));
    assert_eq!(plain_out.status.code(), Some(0));
    let alerts = String::from_utf8(plain_out.stdout).unwrap();
    assert_eq!(alerts.lines().count(), 10, "{alerts}");
    assert_eq!(alerts, String::from_utf8(sdk_out.stdout).unwrap());
}
