//! Databricks.Audit.AccessToMultipleWorkspaces
//!
//! ## What it detects
//! One user reaching 5 or more distinct workspaces within 24 hours. The rule matches every
//! workspace access by a real user; the host counts distinct `unique` values (workspace ids)
//! per `dedup` key (the user) within the spec's `DedupPeriodMinutes: 1440` and
//! `Threshold: 5`.
//!
//! ## Why it matters
//! Users normally live in one or two workspaces; fanning out across many is typical of
//! lateral movement, reconnaissance or a stolen token (MITRE T1021).
//!
//! ## Example event
//! ```json
//! {"timestamp": 1704067200000, "serviceName": "accounts", "actionName": "login",
//!  "workspaceId": "1234567890123456", "userIdentity": {"email": "user@example.com"}}
//! ```

use rulehost_sdk::helpers::databricks::{self, SYSTEM_USERS};
use rulehost_sdk::{Context, Event, Value, export_rule};

fn rule(event: &Event) -> bool {
    // Python: `user = event.deep_get("userIdentity", "email", default="")`, then
    // `if user in SYSTEM_USERS or user in ("", "unknown"): return False`.
    match event.deep_get(&["userIdentity", "email"]) {
        None => return false,
        Some(Value::Str(user))
            if SYSTEM_USERS.contains(&user.as_str()) || user.is_empty() || user == "unknown" =>
        {
            return false;
        }
        Some(_) => {}
    }
    // Must have workspace context: `event.get("workspaceId") is not None`.
    event.get("workspaceId").is_some_and(|v| !v.is_null())
}

fn dedup(event: &Event) -> String {
    event.deep_get_or(&["userIdentity", "email"], "unknown")
}

fn unique(event: &Event) -> String {
    event.get_or("workspaceId", "unknown")
}

fn title(event: &Event) -> String {
    let user = event.deep_get_or(&["userIdentity", "email"], "Unknown User");
    format!("User accessing multiple workspaces: {user} (≥5 workspaces/day)")
}

fn alert_context(event: &Event) -> Context {
    databricks::alert_context(event)
}

export_rule!(
    rule = rule,
    title = title,
    dedup = dedup,
    unique = unique,
    alert_context = alert_context,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event<'static> {
        Event::from_json(json).unwrap()
    }

    #[test]
    fn needs_a_real_user_and_a_workspace() {
        let ws = r#""workspaceId": "1234567890123456""#;
        assert!(rule(&event(&format!(
            r#"{{{ws}, "userIdentity": {{"email": "u@example.com"}}}}"#
        ))));
        for email in [r#""System-User""#, r#""unknown""#, r#""""#, "null"] {
            let e = event(&format!(
                r#"{{{ws}, "userIdentity": {{"email": {email}}}}}"#
            ));
            assert!(!rule(&e), "email {email} must not match");
        }
        assert!(!rule(&event(&format!(r#"{{{ws}, "userIdentity": {{}}}}"#))));
        assert!(!rule(&event(&format!(r#"{{{ws}}}"#))));
        let user = r#""userIdentity": {"email": "u@example.com"}"#;
        assert!(!rule(&event(&format!(
            r#"{{{user}, "workspaceId": null}}"#
        ))));
        assert!(!rule(&event(&format!(r#"{{{user}}}"#))));
        assert!(rule(&event(&format!(r#"{{{user}, "workspaceId": 0}}"#))));
    }

    #[test]
    fn dedup_unique_and_title() {
        let e = event(r#"{"workspaceId": "42", "userIdentity": {"email": "u@example.com"}}"#);
        assert_eq!(dedup(&e), "u@example.com");
        assert_eq!(unique(&e), "42");
        assert_eq!(
            title(&e),
            "User accessing multiple workspaces: u@example.com (≥5 workspaces/day)"
        );
        let bare = event("{}");
        assert_eq!(dedup(&bare), "unknown");
        assert_eq!(unique(&bare), "unknown");
        assert_eq!(
            title(&bare),
            "User accessing multiple workspaces: Unknown User (≥5 workspaces/day)"
        );
    }
}
