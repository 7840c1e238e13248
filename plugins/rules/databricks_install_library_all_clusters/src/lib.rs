//! Databricks.Audit.InstallLibraryAllClusters
//!
//! ## What it detects
//! The deprecated `installLibraryOnAllClusters` action.
//!
//! ## Why it matters
//! A library installed on every cluster at once skips per-cluster review: one malicious
//! package reaches every notebook and job in the workspace (MITRE T1203, T1543).
//!
//! ## Example event
//! ```json
//! {"timestamp": 1704067200000, "serviceName": "clusters",
//!  "actionName": "installLibraryOnAllClusters", "workspaceId": "1234567890123456",
//!  "userIdentity": {"email": "developer@example.com"},
//!  "requestParams": {"library": {"pypi": {"package": "suspicious-package"}}}}
//! ```

use rulehost_sdk::helpers::databricks;
use rulehost_sdk::{Context, Event, export_rule};

fn rule(event: &Event) -> bool {
    event.get_str("actionName").as_deref() == Some("installLibraryOnAllClusters")
}

fn title(event: &Event) -> String {
    let actor = event.deep_get_or(&["userIdentity", "email"], "Unknown Actor");
    let workspace = event.get_or("workspaceId", "Unknown Workspace");
    format!("Library installed on all clusters in workspace {workspace} by {actor}")
}

fn alert_context(event: &Event) -> Context {
    let mut ctx = databricks::alert_context(event);
    ctx.insert("library_config", event.get("requestParams"));
    ctx
}

export_rule!(rule = rule, title = title, alert_context = alert_context);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event<'static> {
        Event::from_json(json).unwrap()
    }

    #[test]
    fn matches_only_install_on_all_clusters() {
        assert!(rule(&event(
            r#"{"actionName": "installLibraryOnAllClusters"}"#
        )));
        assert!(rule(&event(
            r#"{"ACTIONNAME": "installLibraryOnAllClusters"}"#
        )));
        assert!(!rule(&event(r#"{"actionName": "installLibrary"}"#)));
        assert!(!rule(&event(r#"{}"#)));
    }

    #[test]
    fn title_tells_missing_from_null_workspace() {
        let missing = event(r#"{"userIdentity": {"email": "a@example.com"}}"#);
        assert_eq!(
            title(&missing),
            "Library installed on all clusters in workspace Unknown Workspace by a@example.com"
        );
        let null = event(r#"{"workspaceId": null, "userIdentity": {}}"#);
        assert_eq!(
            title(&null),
            "Library installed on all clusters in workspace None by Unknown Actor"
        );
        let numeric = event(r#"{"workspaceId": 42, "userIdentity": {"email": null}}"#);
        assert_eq!(
            title(&numeric),
            "Library installed on all clusters in workspace 42 by Unknown Actor"
        );
    }

    #[test]
    fn context_adds_library_config() {
        let e = event(
            r#"{"actionName": "installLibraryOnAllClusters", "requestParams": {"library": {"pypi": {"package": "p"}}}}"#,
        );
        assert_eq!(
            alert_context(&e).to_json(),
            r#"{"action":"installLibraryOnAllClusters","library_config":{"library":{"pypi":{"package":"p"}}}}"#
        );
    }
}
