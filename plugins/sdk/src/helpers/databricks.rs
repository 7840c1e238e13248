//! Databricks audit log helpers, ported from Panther's `panther_databricks_helpers`.

use crate::{Context, Event};

/// Identities Databricks uses for its own automation; rules exclude them.
pub const SYSTEM_USERS: &[&str] = &["System-User"];

/// Panther's `databricks_alert_context(event)`: the common Databricks fields, with absent
/// and null values dropped. Add rule-specific fields with [`Context::insert`].
pub fn alert_context(event: &Event) -> Context {
    let mut ctx = Context::new();
    ctx.insert("actor", event.deep_get(&["userIdentity", "email"]))
        .insert("service_name", event.get("serviceName"))
        .insert("action", event.get("actionName"))
        .insert("source_ip", event.get("sourceIPAddress"))
        .insert("user_agent", event.get("userAgent"))
        .insert("audit_level", event.get("auditLevel"))
        .insert("workspace_id", event.get("workspaceId"))
        .insert("account_id", event.get("accountId"))
        .insert("status_code", event.deep_get(&["response", "statusCode"]))
        .insert(
            "error_message",
            event.deep_get(&["response", "errorMessage"]),
        )
        .insert("request_id", event.get("requestId"));
    ctx
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn drops_absent_and_null_fields() {
        let event = Event::from_json(
            r#"{"serviceName": "clusters", "workspaceId": null, "userIdentity": {"email": "a@b.c"},
                "response": {"statusCode": 200, "errorMessage": null}}"#,
        )
        .unwrap();
        assert_eq!(
            alert_context(&event).to_json(),
            r#"{"actor":"a@b.c","service_name":"clusters","status_code":200}"#
        );
    }
}
