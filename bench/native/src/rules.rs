//! [`NativeRule`]: the rule crates of `plugins/rules/` ported line by line to plain Rust over
//! the host's [`Event`], with the SDK's lookup semantics (`Event::get`, which is
//! `rulehost_event::deep_get` on the event as a full parse gives it).
//!
//! Each port keeps its crate's conditions, title, dedup, unique and alert context, and the
//! SDK's conversions: `get` keeps a JSON `null`, `deep_get` drops it, values print as
//! Python's `str()` would, and alert-context values go through the same mapping as a value
//! crossing the WIT boundary (integers within `i64`, every other number as `f64`).

use rulehost::event::Event;
use serde_json::{Map, Number, Value};

/// One rule's functions. Only `rule` is required; `None` from the others means "not
/// defined", as an SDK rule that leaves the function out of `export_rule!`.
pub trait NativeRule: Send + Sync {
    /// Does this event match?
    fn rule(&self, event: &Event) -> bool;

    /// The alert title.
    fn title(&self, _event: &Event) -> Option<String> {
        None
    }

    /// The deduplication key.
    fn dedup(&self, _event: &Event) -> Option<String> {
        None
    }

    /// The value counted towards `Threshold` as a distinct value.
    fn unique(&self, _event: &Event) -> Option<String> {
        None
    }

    /// Extra alert fields, in insertion order, nulls already dropped.
    fn alert_context(&self, _event: &Event) -> Option<Map<String, Value>> {
        None
    }
}

/// The native port of the component a spec's `Filename:` names, if there is one.
pub fn for_component(filename: &str) -> Option<Box<dyn NativeRule>> {
    Some(match filename {
        "databricks_access_to_multiple_workspaces.wasm" => Box::new(AccessToMultipleWorkspaces),
        "databricks_install_library_all_clusters.wasm" => Box::new(InstallLibraryAllClusters),
        "synthetic_no_match.wasm" => Box::new(SyntheticNoMatch),
        _ => return None,
    })
}

/// `plugins/sdk/src/helpers/databricks.rs`: `SYSTEM_USERS`.
const SYSTEM_USERS: &[&str] = &["System-User"];

/// `plugins/rules/databricks_access_to_multiple_workspaces`.
pub struct AccessToMultipleWorkspaces;

impl NativeRule for AccessToMultipleWorkspaces {
    fn rule(&self, event: &Event) -> bool {
        match deep_get(event, &["userIdentity", "email"]) {
            None => return false,
            Some(Value::String(user))
                if SYSTEM_USERS.contains(&user.as_str())
                    || user.is_empty()
                    || user == "unknown" =>
            {
                return false;
            }
            Some(_) => {}
        }
        get(event, "workspaceId").is_some_and(|v| !v.is_null())
    }

    fn title(&self, event: &Event) -> Option<String> {
        let user = deep_get_or(event, &["userIdentity", "email"], "Unknown User");
        Some(format!(
            "User accessing multiple workspaces: {user} (≥5 workspaces/day)"
        ))
    }

    fn dedup(&self, event: &Event) -> Option<String> {
        Some(deep_get_or(event, &["userIdentity", "email"], "unknown"))
    }

    fn unique(&self, event: &Event) -> Option<String> {
        Some(get_or(event, "workspaceId", "unknown"))
    }

    fn alert_context(&self, event: &Event) -> Option<Map<String, Value>> {
        Some(finish(databricks_alert_context(event)))
    }
}

/// `plugins/rules/databricks_install_library_all_clusters`.
pub struct InstallLibraryAllClusters;

impl NativeRule for InstallLibraryAllClusters {
    fn rule(&self, event: &Event) -> bool {
        get(event, "actionName").and_then(Value::as_str) == Some("installLibraryOnAllClusters")
    }

    fn title(&self, event: &Event) -> Option<String> {
        let actor = deep_get_or(event, &["userIdentity", "email"], "Unknown Actor");
        let workspace = get_or(event, "workspaceId", "Unknown Workspace");
        Some(format!(
            "Library installed on all clusters in workspace {workspace} by {actor}"
        ))
    }

    fn alert_context(&self, event: &Event) -> Option<Map<String, Value>> {
        let mut ctx = databricks_alert_context(event);
        insert(&mut ctx, "library_config", get(event, "requestParams"));
        Some(finish(ctx))
    }
}

/// `plugins/rules/synthetic_no_match`: reads `actionName`, never matches.
pub struct SyntheticNoMatch;

/// `synthetic_no_match::NEVER`.
const NEVER: &str = "rulehost.synthetic.neverMatches";

impl NativeRule for SyntheticNoMatch {
    fn rule(&self, event: &Event) -> bool {
        get(event, "actionName").and_then(Value::as_str) == Some(NEVER)
    }
}

/// Panther's `databricks_alert_context(event)`, before nulls are dropped.
fn databricks_alert_context(event: &Event) -> Map<String, Value> {
    let mut ctx = Map::new();
    let fields: [(&str, Option<&Value>); 11] = [
        ("actor", deep_get(event, &["userIdentity", "email"])),
        ("service_name", get(event, "serviceName")),
        ("action", get(event, "actionName")),
        ("source_ip", get(event, "sourceIPAddress")),
        ("user_agent", get(event, "userAgent")),
        ("audit_level", get(event, "auditLevel")),
        ("workspace_id", get(event, "workspaceId")),
        ("account_id", get(event, "accountId")),
        ("status_code", deep_get(event, &["response", "statusCode"])),
        (
            "error_message",
            deep_get(event, &["response", "errorMessage"]),
        ),
        ("request_id", get(event, "requestId")),
    ];
    for (key, value) in fields {
        insert(&mut ctx, key, value);
    }
    ctx
}

/// `Context::insert`: replaces in place, keeps a placeholder for `None` so that a later
/// insert of the same key keeps the first position (as a Python dict does).
fn insert(ctx: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    ctx.insert(key.to_owned(), value.map_or(Value::Null, wit_value));
}

/// `Context::to_json`: null values are dropped.
fn finish(mut ctx: Map<String, Value>) -> Map<String, Value> {
    ctx.retain(|_, v| !v.is_null());
    ctx
}

/// Python's `event.get(key)`: a JSON `null` is kept.
fn get<'a>(event: &'a Event, key: &str) -> Option<&'a Value> {
    event.get(&[key])
}

/// Panther's `event.deep_get(*path)`: a JSON `null` is "missing".
fn deep_get<'a>(event: &'a Event, path: &[&str]) -> Option<&'a Value> {
    event.get(path).filter(|v| !v.is_null())
}

/// `Event::get_or`: `str(event.get(key, default))`.
fn get_or(event: &Event, key: &str, default: &str) -> String {
    get(event, key).map_or_else(|| default.to_owned(), python_str)
}

/// `Event::deep_get_or`: `str(event.deep_get(*path, default=default))`.
fn deep_get_or(event: &Event, path: &[&str], default: &str) -> String {
    deep_get(event, path).map_or_else(|| default.to_owned(), python_str)
}

/// `Value::to_python_string` of the value the guest would receive.
fn python_str(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{:?}", n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

/// The value an alert context holds after the WIT round trip (host `to_wit`, guest
/// `Value::write_json`, host re-parse): numbers outside `i64` become `f64`.
fn wit_value(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.as_i64().is_none() => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(value: Value) -> Event {
        Event::whole(value)
    }

    #[test]
    fn access_needs_a_real_user_and_a_workspace() {
        let r = AccessToMultipleWorkspaces;
        let ws = json!("1234567890123456");
        assert!(r.rule(&ev(
            json!({"workspaceId": ws, "userIdentity": {"Email": "u@x"}})
        )));
        for email in [
            json!("System-User"),
            json!("unknown"),
            json!(""),
            json!(null),
        ] {
            let e = ev(json!({"workspaceId": ws, "userIdentity": {"email": email}}));
            assert!(!r.rule(&e), "{email}");
        }
        assert!(!r.rule(&ev(
            json!({"workspaceId": null, "userIdentity": {"email": "u@x"}})
        )));
        assert!(r.rule(&ev(json!({"workspaceId": 0, "userIdentity": {"email": 7}}))));
        let bare = ev(json!({}));
        assert_eq!(r.dedup(&bare).unwrap(), "unknown");
        assert_eq!(
            r.title(&bare).unwrap(),
            "User accessing multiple workspaces: Unknown User (≥5 workspaces/day)"
        );
        assert_eq!(r.unique(&ev(json!({"workspaceId": null}))).unwrap(), "None");
    }

    #[test]
    fn install_title_and_context_follow_the_sdk() {
        let r = InstallLibraryAllClusters;
        assert!(r.rule(&ev(json!({"ACTIONNAME": "installLibraryOnAllClusters"}))));
        assert!(!r.rule(&ev(json!({"actionName": "installLibrary"}))));
        let e = ev(json!({"workspaceId": 42, "userIdentity": {"email": null},
                       "actionName": "installLibraryOnAllClusters", "serviceName": null,
                       "requestParams": {"library": {"pypi": {"package": "p"}}},
                       "response": {"statusCode": 1e3}}));
        assert_eq!(
            r.title(&e).unwrap(),
            "Library installed on all clusters in workspace 42 by Unknown Actor"
        );
        assert_eq!(
            Value::Object(r.alert_context(&e).unwrap()).to_string(),
            r#"{"action":"installLibraryOnAllClusters","workspace_id":42,"status_code":1000.0,"library_config":{"library":{"pypi":{"package":"p"}}}}"#
        );
    }

    /// Every rule `make bench` runs has a port: the seed specs (`rules-tests/seed/`) and
    /// the synthetic filler. Other rule crates need none: the bench does not run them.
    #[test]
    fn every_rule_the_bench_runs_has_a_port() {
        let seeds = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules-tests/seed");
        let mut components = vec!["synthetic_no_match.wasm".to_owned()];
        for entry in std::fs::read_dir(seeds).unwrap() {
            let spec = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let filename = spec
                .lines()
                .find_map(|l| l.strip_prefix("Filename:"))
                .expect("a seed spec names its component");
            components.push(filename.trim().to_owned());
        }
        assert_eq!(components.len(), 3, "{components:?}");
        for component in components {
            assert!(for_component(&component).is_some(), "{component}");
        }
    }
}
