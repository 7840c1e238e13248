//! Rust ports of Panther's rules (issue 14): every bundled spec whose RuleID is one of
//! Panther's passes Panther's own `Tests:`, read from `../shared/panther-analysis` as they
//! are (only `Filename:` is pointed at the port's component), and alerts on generated events
//! exactly as Panther's Python rule does in the Python runtime. Panther's pack is test data
//! we do not copy: without it these tests are skipped with a note, and fail under `CI=true`,
//! where it is always there. A port whose helpers use regular expressions imports no
//! random numbers (its batch path stays on).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::util::*;

/// Panther's pack beside this checkout; `None` (with a note) where it is absent, a failure
/// under `CI=true`.
fn panther_analysis() -> Option<PathBuf> {
    let dir = repo().join("../shared/panther-analysis");
    if dir.join("rules").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "`{}` is absent: CI must run Panther's tests against the ports",
        dir.display()
    );
    eprintln!(
        "note: skipped: `{}` is absent (Panther's rules, present in CI)",
        dir.display()
    );
    None
}

/// The value of a top-level `Key:` line of a YAML spec, unquoted.
fn top_level(yaml: &str, key: &str) -> Option<String> {
    yaml.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml") {
            out.push(path);
        }
    }
}

/// A bundled Rust rule that ports one of Panther's.
struct Port {
    rule_id: String,
    /// The bundled spec's component.
    component: String,
    /// Panther's spec of the same RuleID.
    panther_spec: PathBuf,
}

/// Every spec under `rules-tests/` whose RuleID is one of Panther's rules.
fn ports(pack: &Path) -> Vec<Port> {
    let mut panther = BTreeMap::new();
    let mut files = Vec::new();
    yaml_files(&pack.join("rules"), &mut files);
    for path in files {
        let yaml = std::fs::read_to_string(&path).unwrap();
        if let Some(id) = top_level(&yaml, "RuleID") {
            panther.insert(id, path);
        }
    }
    let mut bundled = Vec::new();
    yaml_files(&repo().join("rules-tests"), &mut bundled);
    bundled.sort();
    bundled
        .into_iter()
        .filter_map(|path| {
            let yaml = std::fs::read_to_string(&path).unwrap();
            let rule_id = top_level(&yaml, "RuleID")?;
            Some(Port {
                component: top_level(&yaml, "Filename")?,
                panther_spec: panther.get(&rule_id)?.clone(),
                rule_id,
            })
        })
        .collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn panthers_own_tests_pass_against_the_rust_ports() {
    let Some(pack) = panther_analysis() else {
        return;
    };
    let ports = ports(&pack);
    let ids: Vec<&str> = ports.iter().map(|p| p.rule_id.as_str()).collect();
    for expected in [
        "Databricks.Audit.AccessToMultipleWorkspaces",
        "Databricks.Audit.InstallLibraryAllClusters",
        "Databricks.Audit.WorkspaceAdminPrivilegedRoleAssignment",
    ] {
        assert!(ids.contains(&expected), "no port of {expected}: {ids:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cases = 0;
    for port in &ports {
        // Panther's spec as it is, but for the file that implements it.
        let yaml = std::fs::read_to_string(&port.panther_spec).unwrap();
        let python = top_level(&yaml, "Filename").unwrap();
        assert!(python.ends_with(".py"), "{}", port.panther_spec.display());
        let line = |f: &str| format!("\nFilename: {f}\n");
        assert!(yaml.contains(&line(&python)));
        let yaml = yaml.replacen(&line(&python), &line(&port.component), 1);
        cases += yaml.matches("\n  - Name:").count();
        let name = port.panther_spec.file_name().unwrap();
        std::fs::write(dir.path().join(name), yaml).unwrap();
    }
    let out = run(rulehost().arg("test").arg(dir.path()), "");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.ends_with(&format!("\n{cases} passed, 0 failed\n")),
        "expected {cases} of Panther's tests:\n{text}"
    );
    assert!(text.contains("\tInvalid: 0\n"), "{text}");
}

/// The alerts of an `eval` run for `rule_id`, keyed by everything but where they came
/// from, sorted.
fn alerts(out: &Output, rule_id: &str) -> Vec<String> {
    let keep = [
        "rule_id",
        "alert_id",
        "dedup",
        "title",
        "severity",
        "event_count",
        "unique_count",
        "window_start",
        "window_end",
        "alert_context",
        "first_event",
    ];
    let mut alerts: Vec<String> = stdout(out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["rule_id"] == rule_id)
        .map(|r| {
            let kept: serde_json::Map<String, Value> = keep
                .iter()
                .map(|k| ((*k).to_owned(), r[k].clone()))
                .collect();
            Value::Object(kept).to_string()
        })
        .collect();
    alerts.sort();
    alerts
}

/// Every `Log:` of the tests of these Panther specs as a JSON line, a day apart (each one's
/// own dedup window, so each match is an alert of its own with its own title and context).
fn panthers_test_logs<'a>(specs: impl IntoIterator<Item = &'a Path>) -> String {
    const DAY_MS: i64 = 86_400_000;
    let mut lines = String::new();
    let mut day = 0;
    for spec in specs {
        let yaml = std::fs::read_to_string(spec).unwrap();
        let spec: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        for test in spec["Tests"].as_sequence().unwrap() {
            let mut log: Value = serde_json::to_value(&test["Log"]).unwrap();
            day += 1;
            log["timestamp"] = Value::from(1_704_067_200_000 + day * DAY_MS);
            lines.push_str(&log.to_string());
            lines.push('\n');
        }
    }
    lines
}

/// `rulehost eval` of `rules` over `events`, which must succeed.
fn eval(rules: &Path, events: &Path, extra: &[&std::ffi::OsStr]) -> Output {
    let out = run(
        rulehost()
            .args(["eval", "--timeout-ms", "5000"])
            .args(extra)
            .arg("--rules")
            .arg(rules)
            .arg(events),
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_ports_alert_as_panthers_python_rules() {
    let Some(pack) = panther_analysis() else {
        return;
    };
    python_runtime_cached();
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("generated.jsonl");
    let status = std::process::Command::new("python3")
        .arg(repo().join("scripts/gen_databricks.py"))
        .args(["--events", "20000", "--seed", "3", "--hours", "24"])
        .args(["--roamers", "3", "--output"])
        .arg(&generated)
        .status()
        .unwrap();
    assert!(status.success());
    let python_rules = dir.path().join("python");
    std::fs::create_dir(&python_rules).unwrap();
    let ports = ports(&pack);
    for port in &ports {
        let name = port.panther_spec.file_name().unwrap();
        std::fs::copy(&port.panther_spec, python_rules.join(name)).unwrap();
        let py = top_level(
            &std::fs::read_to_string(&port.panther_spec).unwrap(),
            "Filename",
        )
        .unwrap();
        let source = port.panther_spec.with_file_name(&py);
        std::fs::copy(&source, python_rules.join(&py)).unwrap();
    }
    // Generated traffic, and the events Panther wrote its tests with: the second reaches
    // the branches (refused grants, service principals, odd group names) the generator
    // rarely makes.
    let test_logs = dir.path().join("panther-test-logs.jsonl");
    let specs = ports.iter().map(|p| p.panther_spec.as_path());
    std::fs::write(&test_logs, panthers_test_logs(specs)).unwrap();
    let helpers = pack.join("global_helpers");
    let helpers = [std::ffi::OsStr::new("--helpers"), helpers.as_os_str()];
    // Both inputs together give every port's alerts something to compare.
    let mut alerted = vec![false; ports.len()];
    for events in [&generated, &test_logs] {
        let python = eval(&python_rules, events, &helpers);
        let rust = eval(&repo().join("rules-tests"), events, &[]);
        for (port, alerted) in ports.iter().zip(&mut alerted) {
            let (py, rs) = (alerts(&python, &port.rule_id), alerts(&rust, &port.rule_id));
            assert_eq!(rs, py, "{} on `{}`", port.rule_id, events.display());
            *alerted |= !rs.is_empty();
        }
    }
    for (port, alerted) in ports.iter().zip(alerted) {
        assert!(alerted, "{} raised no alert", port.rule_id);
    }
}

/// `plugins/test-components/databricks_helpers`'s twin: a Python rule that shows what each
/// of Panther's helpers answers, in the same form.
const HELPERS_TWIN: &str = r#"
import panther_databricks_helpers as h

def show(v):
    if v is None:
        return "None"
    if isinstance(v, (bool, int, float, str)):
        return f"{type(v).__name__}:{v}"
    return type(v).__name__

def answer(f, *args):
    try:
        return show(f(*args))
    except Exception as e:
        return type(e).__name__

def rule(event):
    return True

def dedup(event):
    target = h.extract_target_principal(event)
    group = h.extract_group_identifier(event)
    key, val = h.get_config_key_value(event)
    out = [
        f"employee_auth={answer(h.is_databricks_employee_auth, event)}",
        f"target={show(target)}",
        f"principal_type={answer(h.get_principal_type, target)}",
        f"group={show(group)}",
        f"admin_group={answer(h.is_admin_group, group)}",
        f"login={answer(h.is_login_action, event)}",
        f"admin_privilege={answer(h.is_admin_privilege_action, event)}",
        f"group_management={answer(h.is_group_management_action, event)}",
        f"service_agent={answer(h.is_service_agent, event)}",
        f"excluded_path={answer(h.is_excluded_path, event)}",
        f"config_change={answer(h.is_config_change, event)}",
        f"config_key={show(key)}",
        f"config_value={show(val)}",
        f"critical_config={answer(h.is_critical_config_change, event)}",
        f"noise={answer(h.filter_noise, event)}",
        f"metastore_admin={answer(h.is_metastore_admin_action, event)}",
    ]
    for change in ("create", "delete", "modify", "membership"):
        out.append(f"group_management_{change}={answer(h.is_group_management_action, event, change)}")
        out.append(f"alert_on_group_{change}={answer(h.should_alert_on_group_change, event, change)}")
    for scope in ("workspace", "account", "sso"):
        out.append(f"config_change_{scope}={answer(h.is_config_change, event, scope)}")
    return "; ".join(out)

def alert_context(event):
    return h.databricks_alert_context(event)
"#;

/// Events that make Panther's helpers raise or take their rare branches: numbers, lists,
/// objects, nulls and empty strings where names go.
const ODD_EVENTS: &[&str] = &[
    // An array is not hashable in Panther: `x in SOME_SET` raises TypeError.
    r#"{"actionName": ["login"]}"#,
    r#"{"actionName": "addPrincipalToGroup", "requestParams": {"targetGroupName": 12}}"#,
    r#"{"actionName": "addPrincipalToGroup", "requestParams": {"groupName": ["admins"]}}"#,
    r#"{"actionName": "addPrincipalsToGroup", "requestParams": {"targetGroupName": {"n": "admins"}}}"#,
    r#"{"actionName": "setAdmin", "requestParams": {"targetUserName": 42}}"#,
    r#"{"actionName": {"a": 1}, "serviceName": "accounts"}"#,
    r#"{"userAgent": 5}"#,
    r#"{"userAgent": null, "requestParams": {"path": 7}}"#,
    r#"{"userAgent": ["databricks"], "requestParams": {"path": ["/health"]}}"#,
    r#"{"userAgent": "databricks-service-agent/1.0 x", "requestParams": {"path": "/api/health"}}"#,
    r#"{"requestParams": {"path": null}, "userIdentity": {"email": 3}}"#,
    r#"{"userIdentity": {"email": "12345678-1234-1234-1234-123456789012"}}"#,
    r#"{"actionName": "updateMetastore", "requestParams": {"owner": "x"}}"#,
    r#"{"actionName": "updateMetastore", "requestParams": {"OWNER": 1}}"#,
    r#"{"actionName": "updateMetastore", "requestParams": "text"}"#,
    r#"{"actionName": "updateMetastore"}"#,
    r#"{"actionName": "addPrincipalToGroup", "requestParams": {"endpoint": "roleAssignment", "targetUserName": "Metastore-Admins"}}"#,
    r#"{"actionName": "workspaceConfEdit", "serviceName": "workspace", "requestParams": {"workspaceConfKeys": "enforceMFA", "workspaceConfValues": 1.0}}"#,
    r#"{"actionName": "create", "serviceName": "ssoConfigBackend"}"#,
    r#"{"actionName": "removeGroup", "serviceName": "accounts", "requestParams": {"targetGroupName": ""}}"#,
    r#"{"requestParams": {"authentication_method": "GENIE_AUTH"}, "actionName": "tokenLogin"}"#,
    r#"{"requestParams": {"targetUserName": 0, "principal": "p@x.io", "targetGroupId": 7}}"#,
    r#"{"requestParams": {"targetUserName": true}}"#,
    r#"{"requestParams": {"targetUserName": 2.5}}"#,
];

/// A spec for the helpers' report, implemented by `filename`.
fn helpers_spec(filename: &str) -> String {
    format!(
        "AnalysisType: rule\nFilename: {filename}\nRuleID: Test.DatabricksHelpers\n\
         Enabled: true\nLogTypes: [Databricks.Audit]\nSeverity: Info\n"
    )
}

#[test]
fn the_sdk_databricks_helpers_answer_as_panthers() {
    let Some(pack) = panther_analysis() else {
        return;
    };
    python_runtime_cached();
    let dir = tempfile::tempdir().unwrap();
    let (python, rust) = (dir.path().join("python"), dir.path().join("rust"));
    std::fs::create_dir(&python).unwrap();
    std::fs::create_dir(&rust).unwrap();
    std::fs::write(python.join("helpers.py"), HELPERS_TWIN).unwrap();
    std::fs::write(python.join("helpers.yml"), helpers_spec("helpers.py")).unwrap();
    std::fs::write(
        rust.join("helpers.yml"),
        helpers_spec("databricks_helpers.wasm"),
    )
    .unwrap();
    // Generated traffic, and the Logs of every test of Panther's Databricks rules: the odd
    // events (numbers where names go, empty groups, UUIDs, service agents) are there.
    let generated = dir.path().join("generated.jsonl");
    let status = std::process::Command::new("python3")
        .arg(repo().join("scripts/gen_databricks.py"))
        .args(["--events", "5000", "--seed", "5", "--hours", "12"])
        .args(["--roamers", "2", "--output"])
        .arg(&generated)
        .status()
        .unwrap();
    assert!(status.success());
    let mut specs = Vec::new();
    yaml_files(&pack.join("rules/databricks_rules"), &mut specs);
    specs.sort();
    let test_logs = dir.path().join("panther-test-logs.jsonl");
    std::fs::write(
        &test_logs,
        panthers_test_logs(specs.iter().map(PathBuf::as_path)),
    )
    .unwrap();
    let odd = dir.path().join("odd.jsonl");
    let lines: Vec<String> = (0..)
        .zip(ODD_EVENTS)
        .map(|(day, line)| {
            let mut event: Value = serde_json::from_str(line).unwrap();
            event["timestamp"] = Value::from(1_704_067_200_000_i64 + day * 86_400_000);
            event.to_string() + "\n"
        })
        .collect();
    std::fs::write(&odd, lines.concat()).unwrap();
    let helpers = pack.join("global_helpers");
    let helpers = [std::ffi::OsStr::new("--helpers"), helpers.as_os_str()];
    for events in [&generated, &test_logs, &odd] {
        let (py, rs) = (eval(&python, events, &helpers), eval(&rust, events, &[]));
        let (py, rs) = (
            alerts(&py, "Test.DatabricksHelpers"),
            alerts(&rs, "Test.DatabricksHelpers"),
        );
        // Distinct answers are distinct alerts: a few dozen, not one.
        assert!(
            rs.len() > 20,
            "{} alerts on `{}`",
            rs.len(),
            events.display()
        );
        assert!(rs.iter().all(|a| !a.contains("(truncated)")), "{rs:?}");
        assert_eq!(rs, py, "on `{}`", events.display());
    }
}

#[test]
fn a_port_that_uses_regular_expressions_imports_no_random_numbers() {
    // get_principal_type's patterns run in its alert context.
    let component = components().join("databricks_workspace_admin_privileged_role_assignment.wasm");
    let out = run(rulehost().arg("inspect").arg(&component), "");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("\nimports:\n"), "{text}");
    assert!(!text.contains("wasi:random"), "{text}");
}
