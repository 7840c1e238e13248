//! Python rules (issue 14): Panther's rules run unchanged in the Python runtime. Proof on
//! Panther's own Databricks pack (`../shared/panther-analysis`, skipped with a note when it
//! is absent), the event API, `Mocks:`, the sandbox (files, sockets and the network are
//! refused as Python exceptions), a trap's fresh instance, and `rulehost.lock`.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::util::*;

/// Panther's Databricks pack, if this checkout has it beside it (CI always does).
fn panther_analysis() -> Option<PathBuf> {
    let dir = repo().join("../shared/panther-analysis");
    if dir.join("rules/databricks_rules").is_dir() {
        return Some(dir);
    }
    eprintln!(
        "note: skipped: `{}` is absent (Panther's Databricks pack, present in CI)",
        dir.display()
    );
    None
}

/// The deadline of a call in these tests: the deadline is wall time, and the suite runs
/// many processes on 2 cores, where a call that takes microseconds can wait for a core
/// longer than the default 100 ms.
const PATIENT: [&str; 2] = ["--timeout-ms", "5000"];

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn panthers_databricks_pack_passes_all_162_tests() {
    let Some(pack) = panther_analysis() else {
        return;
    };
    python_runtime_cached();
    let out = run(rulehost().arg("test").args(PATIENT).arg(&pack), "");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains("\tPassed: 37\n"), "{text}");
    assert!(text.contains("\tInvalid: 0\n"), "{text}");
    assert!(text.ends_with("\n162 passed, 0 failed\n"), "{text}");

    let out = run(
        rulehost().arg("test").args(PATIENT).arg(&pack).args([
            "--filter",
            "RuleID=Databricks.Audit.AccessToMultipleWorkspaces",
        ]),
        "",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(
        text.starts_with(
            "Databricks.Audit.AccessToMultipleWorkspaces\n\t[PASS] Workspace Access\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\n2 passed, 0 failed\n"), "{text}");
}

/// The alerts of `rulehost eval` on the demo sample, keyed for comparison, for `ids`.
fn alerts(out: &Output, ids: &[&str]) -> Vec<Value> {
    let mut alerts: Vec<Value> = stdout(out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "alert" && ids.iter().any(|id| r["rule_id"] == *id))
        .map(|r| {
            let keep = [
                "rule_id",
                "dedup",
                "title",
                "event_count",
                "unique_count",
                "window_start",
                "window_end",
                "first_event_time",
                "last_event_time",
                "first_event",
                "alert_id",
            ];
            keep.iter()
                .map(|k| ((*k).to_owned(), r[k].clone()))
                .collect()
        })
        .collect();
    alerts.sort_by_key(|a: &Value| a.to_string());
    alerts
}

#[test]
fn panthers_rules_alert_on_the_demo_sample_as_their_rust_ports() {
    let Some(pack) = panther_analysis() else {
        return;
    };
    python_runtime_cached();
    let sample = repo().join("demo/databricks-audit-sample.jsonl");
    let python = run(
        rulehost()
            .arg("eval")
            .args(PATIENT)
            .arg("--rules")
            .arg(pack.join("rules/databricks_rules"))
            .arg(&sample),
        "",
    );
    assert_eq!(python.status.code(), Some(0), "{}", stderr(&python));
    let rust = run(
        rulehost()
            .args(["eval", "--rules"])
            .arg(rules_tests())
            .arg(&sample),
        "",
    );
    assert_eq!(rust.status.code(), Some(0), "{}", stderr(&rust));
    let seeds = [
        "Databricks.Audit.AccessToMultipleWorkspaces",
        "Databricks.Audit.InstallLibraryAllClusters",
    ];
    let (python, rust) = (alerts(&python, &seeds), alerts(&rust, &seeds));
    assert!(!rust.is_empty());
    assert_eq!(python, rust);
}

/// A Panther-style analysis folder of rules written for these tests: `rules/` with
/// `(name, yaml, python)` and `global_helpers/` with `(module, python)`.
fn analysis(rules: &[(&str, &str, &str)], helpers: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    let helpers_dir = dir.path().join("global_helpers");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::create_dir_all(&helpers_dir).unwrap();
    for (name, yaml, python) in rules {
        std::fs::write(rules_dir.join(format!("{name}.yml")), yaml).unwrap();
        std::fs::write(rules_dir.join(format!("{name}.py")), python).unwrap();
    }
    for (module, python) in helpers {
        std::fs::write(helpers_dir.join(format!("{module}.py")), python).unwrap();
        std::fs::write(
            helpers_dir.join(format!("{module}.yml")),
            format!("AnalysisType: global\nFilename: {module}.py\nGlobalID: {module}\n"),
        )
        .unwrap();
    }
    dir
}

fn spec(rule_id: &str, name: &str, tests: &str) -> String {
    format!(
        "AnalysisType: rule\nFilename: {name}.py\nRuleID: {rule_id}\nEnabled: true\n\
         LogTypes: [Test.Log]\nSeverity: Low\nTests:\n{tests}"
    )
}

const API_RULE: &str = r#"
from collections.abc import Mapping
import datetime

def rule(event):
    assert isinstance(event, Mapping)
    assert event.get("Action") == "go" and event["ACTION"] == "go"
    assert event.get("missing", "d") == "d" and event.get("nothing", "d") is None
    assert "action" in event and "missing" not in event
    assert event.deep_get("outer", "Inner", "leaf") == 1
    assert event.deep_get("outer", "absent", default="d") == "d"
    assert event.deep_get("items", "x", default="d") == "d"
    assert event.deep_walk("items", "x") == [1, 2]
    assert event.deep_walk("items", "x", return_val="last") == 2
    assert event.deep_walk("items", "nope", default="d") == "d"
    # Panther's ImmutableList: equal to a list or tuple of equal items, and not hashable.
    items = event["items"]
    assert items == [{"x": 1}, {"x": 2}, {"x": 1}] and not items != ({"x": 1}, {"x": 2}, {"x": 1})
    assert items != [{"x": 1}] and items != "items"
    try:
        items in {"a"}
    except TypeError:
        pass
    else:
        raise AssertionError("an ImmutableList is hashable")
    assert sorted(event) == ["action", "items", "nothing", "outer", "timestamp"]
    copy = event.to_dict()
    copy["outer"]["inner"]["leaf"] = 2
    assert event["outer"]["inner"]["leaf"] == 1
    for change in (
        lambda: event.__setitem__("action", 1),
        lambda: event["outer"].__setitem__("x", 1),
        lambda: event["items"].append(1),
    ):
        try:
            change()
        except (TypeError, AttributeError):
            continue
        raise AssertionError("the event changed")
    # The clock reads the event's time.
    assert datetime.datetime.now(datetime.timezone.utc).year == 2024
    return True

def title(event):
    return 42

def dedup(event):
    return None

def severity(event):
    return "high"

def alert_context(event):
    return {"outer": event.get("outer"), "items": event.get("items")}
"#;

const API_LOG: &str = r#"    Log:
      action: go
      nothing: null
      timestamp: 1704067200000
      outer: { inner: { leaf: 1 } }
      items: [ { x: 1 }, { x: 2 }, { x: 1 } ]
"#;

const SANDBOX_RULES: &[(&str, &str)] = &[
    (
        "files",
        "def rule(event):\n    with open('/etc/passwd') as f:\n        return bool(f.read())\n",
    ),
    (
        "folders",
        "import os\n\ndef rule(event):\n    return len(os.listdir('/')) > 0\n",
    ),
    (
        "sockets",
        "import socket\n\ndef rule(event):\n    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    \
         s.connect(('127.0.0.1', 9))\n    return True\n",
    ),
    (
        "names",
        "import socket\n\ndef rule(event):\n    return bool(socket.getaddrinfo('example.com', 443))\n",
    ),
    (
        "kv_cache",
        "from panther_detection_helpers.caching import increment_counter\n\n\
         def rule(event):\n    return increment_counter('key', 1) > 5\n",
    ),
    (
        "data_model",
        "def rule(event):\n    return event.udm('source_ip') is not None\n",
    ),
    (
        "loops",
        "def rule(event):\n    print('looping')\n    while True:\n        pass\n",
    ),
];

fn python_tests_dir() -> tempfile::TempDir {
    let positive = |log: &str| format!("  - Name: t\n    ExpectedResult: true\n{log}");
    let mut rules: Vec<(String, String, String)> = vec![(
        "api".into(),
        spec("Test.Py.Api", "api", &positive(API_LOG)),
        API_RULE.into(),
    )];
    for (name, python) in SANDBOX_RULES {
        rules.push((
            (*name).into(),
            spec(
                &format!("Test.Py.Sandbox.{name}"),
                name,
                "  - Name: refused\n    ExpectedResult: false\n    Log: { a: 1 }\n",
            ),
            (*python).into(),
        ));
    }
    rules.push((
        "mocks".into(),
        spec(
            "Test.Py.Mocks",
            "mocks",
            "  - Name: mocked owner\n    ExpectedResult: true\n    Log: { user: bob }\n    \
             Mocks:\n      - objectName: owner_of\n        returnValue: admin\n\
             \x20 - Name: real owner\n    ExpectedResult: false\n    Log: { user: bob }\n",
        ),
        "from team_helpers import owner_of\n\ndef rule(event):\n    \
         return owner_of(event.get('user')) == 'admin'\n"
            .into(),
    ));
    rules.push((
        "broken".into(),
        spec(
            "Test.Py.Broken",
            "broken",
            "  - Name: t\n    ExpectedResult: true\n    Log: { a: 1 }\n",
        ),
        "def rule(event)\n    return True\n".into(),
    ));
    let rules: Vec<(&str, &str, &str)> = rules
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    analysis(
        &rules,
        &[(
            "team_helpers",
            "OWNERS = {'alice': 'admin'}\n\ndef owner_of(user):\n    return OWNERS.get(user, 'nobody')\n",
        )],
    )
}

/// The event API, Panther's return-type errors, `Mocks:` and helper imports, and the
/// sandbox: a file, a folder, a socket, a name lookup, the key-value cache and a data
/// model are each a rule error (a Python exception), a loop runs into the deadline, and a
/// syntax error is an invalid spec.
#[test]
fn python_rules_see_panthers_api_and_no_files_or_network() {
    python_runtime_cached();
    let dir = python_tests_dir();
    // 1 s: patient enough for a busy machine, short for the rule that loops.
    let patient = ["test", "--timeout-ms", "1000"];
    let out = run(rulehost().args(patient).arg(dir.path()), "");
    assert_golden("python_rules", &transcript(&out, Some(dir.path())));
}

/// A trap (here the memory cap) replaces the instance; the fresh one is loaded with the
/// rule's source again before its next call, so the next event still alerts.
#[test]
fn a_trapped_python_rule_is_loaded_again_on_a_fresh_instance() {
    python_runtime_cached();
    let dir = analysis(
        &[(
            "bomb",
            spec(
                "Test.Py.Bomb",
                "bomb",
                "  - Name: t\n    ExpectedResult: true\n    Log: { hit: true }\n",
            )
            .as_str(),
            "def rule(event):\n    if event.get('bomb'):\n        \
             return len('x' * (512 << 20)) > 0\n    return event.get('hit') is True\n",
        )],
        &[],
    );
    let events = "{\"bomb\": true, \"timestamp\": 1704067200000}\n\
                  {\"hit\": true, \"timestamp\": 1704067201000}\n";
    let out = run(
        rulehost()
            .args(["eval", "--threads", "1"])
            .args(PATIENT)
            .arg("--rules")
            .arg(dir.path().join("rules")),
        events,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["dedup"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("rule_error", "ResourceLimit"),
            ("alert", "defaultDedupString:Test.Py.Bomb")
        ],
        "{records:?}"
    );
}

fn lock_dir(dir: &Path) -> Output {
    run(rulehost().arg("lock").arg(dir), "")
}

/// `rulehost lock` pins a Python rule by the runtime, its module and the helpers;
/// `--locked` refuses a changed rule or helper before anything is compiled.
#[test]
fn the_lock_pins_the_python_rule_and_its_helpers() {
    python_runtime_cached();
    let dir = analysis(
        &[(
            "owner",
            spec(
                "Test.Py.Owner",
                "owner",
                "  - Name: t\n    ExpectedResult: true\n    Log: { user: alice }\n",
            )
            .as_str(),
            "from team_helpers import owner_of\n\ndef rule(event):\n    \
             return owner_of(event.get('user')) == 'admin'\n",
        )],
        &[(
            "team_helpers",
            "def owner_of(user):\n    return 'admin' if user == 'alice' else 'nobody'\n",
        )],
    );
    let rules = dir.path().join("rules");
    let out = lock_dir(&rules);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let locked = |dir: &Path| {
        run(
            rulehost().args(["test", "--locked"]).args(PATIENT).arg(dir),
            "",
        )
    };
    assert_eq!(locked(&rules).status.code(), Some(0));

    let helper = dir.path().join("global_helpers/team_helpers.py");
    let original = std::fs::read_to_string(&helper).unwrap();
    std::fs::write(&helper, original.replace("'alice'", "'mallory'")).unwrap();
    let out = locked(&rules);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).starts_with("error: rule `Test.Py.Owner`: component `"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&helper, original).unwrap();
    assert_eq!(locked(&rules).status.code(), Some(0));

    let module = rules.join("owner.py");
    let source = std::fs::read_to_string(&module).unwrap();
    std::fs::write(&module, source.replace("== 'admin'", "!= 'admin'")).unwrap();
    assert_eq!(locked(&rules).status.code(), Some(2));
}

/// A rule that reads every kind of value, through every way of reading, in `rule` and in
/// `dedup`: on every event (which the batch path packs into later calls once read often),
/// on a rare branch (read with `get`, never packed), through a case-insensitive key, as
/// nested objects and arrays (packed as JSON), and after the whole event was loaded.
const READS_RULE: &str = r#"
def rule(event):
    kind = event.get("kind")
    n = event.get("n")
    name = event.deep_get("user", "name", default="?")
    if kind == "rare":
        return event.get("extra") == {"a": [1, 2]} and event["extra"]["A"] == [1, 2]
    if kind == "whole":
        return sorted(event) == ["kind", "n", "user"] and event.get("N") == n
    if kind == "tuple":
        return event.get(("user", "name")) is None and event.deep_get("user", "name") == name
    return n is not None and n != 0 and name != "?" and "n" in event

def dedup(event):
    return f"{event.get('kind')}:{event.get('n')!r}:{event.deep_get('user', 'name')}"
"#;

const READS_SCENARIO: &str = r#"Scenarios:
  - Name: values read in batches and one call per function agree
    Events:
      - { Time: "+0m", Repeat: 40, Every: 1s, Log: { kind: plain, n: 1, user: { name: a } } }
      - { Time: "+1m", Repeat: 5, Every: 1s, Log: { Kind: plain, n: 1.5, User: { Name: b } } }
      - { Time: "+2m", Repeat: 5, Every: 1s, Log: { kind: plain, n: true, user: { name: a } } }
      - { Time: "+3m", Repeat: 5, Every: 1s, Log: { kind: plain, n: null, user: { name: a } } }
      - { Time: "+4m", Repeat: 5, Every: 1s, Log: { kind: plain, user: { name: a } } }
      - { Time: "+5m", Repeat: 5, Every: 1s, Log: { kind: plain, n: { x: 1 }, user: { name: a } } }
      - { Time: "+6m", Repeat: 5, Every: 1s, Log: { kind: plain, n: [1, "2"], user: { name: a } } }
      - { Time: "+7m", Repeat: 5, Every: 1s, Log: { kind: plain, n: 0, user: { name: a } } }
      - { Time: "+8m", Repeat: 3, Every: 1s, Log: { kind: rare, extra: { a: [1, 2] } } }
      - { Time: "+9m", Repeat: 3, Every: 1s, Log: { kind: whole, n: "x", user: [] } }
      - { Time: "+10m", Repeat: 3, Every: 1s, Log: { kind: tuple, user: { name: c } } }
      - { Time: "+11m", Repeat: 40, Every: 1s, Log: { kind: plain, n: 2, user: "flat" } }
    ExpectedAlerts:
      - { Dedup: "plain:1:a", EventCount: 40 }
      - { Dedup: "plain:1.5:b", EventCount: 5 }
      - { Dedup: "plain:True:a", EventCount: 5 }
      - { Dedup: "plain:{'x': 1}:a", EventCount: 5 }
      - { Dedup: "plain:(1, '2'):a", EventCount: 5 }
      - { Dedup: "rare:None:None", EventCount: 3 }
      - { Dedup: "whole:'x':None", EventCount: 3 }
      - { Dedup: "tuple:None:c", EventCount: 3 }
"#;

/// The batch path (fields packed once read often, rare reads with `get`, events' caches
/// started from the packed values) gives what one call per function gives, for every kind
/// of value: `rulehost test` runs the scenario both ways and checks every batch.
#[test]
fn python_batch_reads_agree_with_one_call_per_function() {
    python_runtime_cached();
    let yaml = format!(
        "AnalysisType: rule\nFilename: reads.py\nRuleID: Test.Py.Reads\nEnabled: true\n\
         LogTypes: [Test.Log]\nSeverity: Low\n{READS_SCENARIO}"
    );
    let dir = analysis(&[("reads", &yaml, READS_RULE)], &[]);
    let out = run(rulehost().arg("test").args(PATIENT).arg(dir.path()), "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("1 passed, 0 failed"),
        "{}",
        stdout(&out)
    );
}
