//! Databricks.Audit.WorkspaceAdminPrivilegedRoleAssignment
//!
//! ## What it detects
//! Workspace-level admin rights granted, or attempted: a direct admin grant (`setAdmin`,
//! `addAdmin`, ...) or a principal added to a group whose name says admin (`admins`,
//! `workspace-administrators`, `data-owners`, ...). Removals are not grants and are left
//! out; account-level events belong to the account-level rule.
//!
//! ## Why it matters
//! A workspace admin controls clusters, jobs, secrets and every notebook: a new admin is
//! how an intruder keeps access and widens it (MITRE T1098 Account Manipulation). A refused
//! grant (`statusCode` other than 200) still shows someone trying.
//!
//! ## Example event
//! ```json
//! {"timestamp": 1704067200000, "auditLevel": "WORKSPACE_LEVEL", "serviceName": "accounts",
//!  "actionName": "addPrincipalToGroup", "workspaceId": "1234567890123456",
//!  "userIdentity": {"email": "owner@example.com"},
//!  "requestParams": {"targetUserName": "new@example.com", "targetGroupName": "admins"},
//!  "response": {"statusCode": 200}}
//! ```
//!
//! A port of Panther's Python rule of the same RuleID: the same conditions, strings and
//! exceptions, through `rulehost_sdk::helpers::databricks`. Panther's own tests run against
//! this component in `host/tests/it/ports.rs`.

use rulehost_sdk::helpers::databricks;
use rulehost_sdk::{Context, Error, Event, Value, export_rule};

/// Removals change admin rights too, but this rule is about grants.
const REMOVAL_ACTIONS: &[&str] = &["removeAdmin", "removePrincipalFromGroup"];

/// The actions the title calls a direct grant; any other is titled as a group membership.
const DIRECT_GRANTS: &[&str] = &["setAdmin", "addAdmin"];

fn rule(event: &Event) -> Result<bool, Error> {
    // Workspace level only: the account-level rule covers the rest.
    if event
        .get("auditLevel")
        .is_none_or(|l| l != "WORKSPACE_LEVEL")
    {
        return Ok(false);
    }
    if event
        .get("actionName")
        .is_some_and(|a| a.is_in(REMOVAL_ACTIONS))
    {
        return Ok(false);
    }
    databricks::is_admin_privilege_action(event)
}

/// `statusCode == 200`, as Python compares (`200.0` counts).
fn granted(event: &Event) -> bool {
    event
        .deep_get(&["response", "statusCode"])
        .is_some_and(|s| s == 200)
}

fn severity(event: &Event) -> String {
    if granted(event) { "HIGH" } else { "MEDIUM" }.to_owned()
}

/// `extract_target_principal(event) or default`, as an f-string prints it.
fn target_or(event: &Event, default: &str) -> String {
    databricks::extract_target_principal(event)
        .map_or_else(|| default.to_owned(), Value::into_python_string)
}

fn title(event: &Event) -> String {
    let actor = event.deep_get_or(&["userIdentity", "email"], "Unknown Actor");
    let target = target_or(event, "Unknown Principal");
    let workspace = event.get_or("workspaceId", "Unknown Workspace");
    let status = if granted(event) {
        "Granted"
    } else {
        "Attempted to grant"
    };
    // A null `actionName` is `None`, which is not a direct admin action.
    let direct = event
        .get("actionName")
        .is_some_and(|a| a.is_in(DIRECT_GRANTS));
    if direct {
        return format!(
            "{status} workspace admin privileges to {target} in workspace {workspace} by {actor}"
        );
    }
    let group = databricks::extract_group_identifier(event)
        .map_or_else(|| "None".to_owned(), Value::into_python_string);
    format!(
        "{status} admin group membership ({group}) to {target} in workspace {workspace} by {actor}"
    )
}

fn dedup(event: &Event) -> String {
    let target = target_or(event, "unknown");
    let workspace = event.get_or("workspaceId", "unknown");
    format!("workspace_admin_privilege_{workspace}_{target}")
}

fn alert_context(event: &Event) -> Result<Context, Error> {
    let target = databricks::extract_target_principal(event);
    // Python: `get_principal_type(target) if target else "Unknown"`; a target that is not
    // a string raises TypeError there, and the context falls back, as in Panther.
    let principal_type = databricks::get_principal_type(target.as_ref())?;
    let group = databricks::extract_group_identifier(event).filter(Value::truthy);
    let system_admins = match &group {
        // Python: `group.lower() == "admins"`, an AttributeError for a non-string.
        Some(Value::Str(g)) => g.to_lowercase() == "admins",
        Some(other) => return Err(Error::no_attribute(other, "lower")),
        None => false,
    };
    let mut ctx = databricks::alert_context(event);
    ctx.insert("privilege_scope", Some("WORKSPACE_LEVEL".into()))
        .insert("target_principal", target)
        .insert("principal_type", Some(principal_type.into()))
        .insert("target_group", databricks::extract_group_identifier(event))
        .insert("is_system_admins_group", Some(system_admins.into()))
        .insert(
            "detection_note",
            Some("Direct grants only - nested group resolution requires correlation rule".into()),
        );
    Ok(ctx)
}

export_rule!(
    rule = rule,
    title = title,
    dedup = dedup,
    severity = severity,
    alert_context = alert_context,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event<'static> {
        Event::from_json(json).unwrap()
    }

    const WS: &str = r#""auditLevel": "WORKSPACE_LEVEL", "workspaceId": "77""#;

    #[test]
    fn grants_at_workspace_level_only() {
        let e = |rest: &str| event(&format!("{{{WS}, {rest}}}"));
        assert_eq!(rule(&e(r#""actionName": "addAdmin""#)), Ok(true));
        assert_eq!(
            rule(&e(
                r#""actionName": "addPrincipalToGroup", "requestParams": {"groupName": "Owners"}"#
            )),
            Ok(true)
        );
        assert_eq!(
            rule(&e(
                r#""actionName": "addPrincipalToGroup", "requestParams": {"groupName": "analysts"}"#
            )),
            Ok(false)
        );
        assert_eq!(rule(&e(r#""actionName": "removeAdmin""#)), Ok(false));
        assert_eq!(
            rule(&event(
                r#"{"auditLevel": "ACCOUNT_LEVEL", "actionName": "setAdmin"}"#
            )),
            Ok(false)
        );
        assert_eq!(rule(&event(r#"{"actionName": "setAdmin"}"#)), Ok(false));
        // A numeric group name raises, as `.lower()` does in Python.
        let err = rule(&e(
            r#""actionName": "addPrincipalToGroup", "requestParams": {"groupId": 12}"#,
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "AttributeError: 'int' object has no attribute 'lower'"
        );
    }

    #[test]
    fn status_200_as_python_compares_it() {
        let ok = event(r#"{"response": {"statusCode": 200.0}}"#);
        assert_eq!(severity(&ok), "HIGH");
        let refused = event(r#"{"response": {"statusCode": "200"}}"#);
        assert_eq!(severity(&refused), "MEDIUM");
        assert_eq!(severity(&event("{}")), "MEDIUM");
    }

    #[test]
    fn titles_and_dedup() {
        let direct = event(&format!(
            r#"{{{WS}, "actionName": "setAdmin", "userIdentity": {{"email": "a@x.io"}},
                "requestParams": {{"targetUserName": "t@x.io"}}, "response": {{"statusCode": 200}}}}"#
        ));
        assert_eq!(
            title(&direct),
            "Granted workspace admin privileges to t@x.io in workspace 77 by a@x.io"
        );
        assert_eq!(dedup(&direct), "workspace_admin_privilege_77_t@x.io");
        let group = event(
            r#"{"actionName": "addPrincipalToGroup", "workspaceId": null,
                "requestParams": {"targetGroupName": "admins"}}"#,
        );
        assert_eq!(
            title(&group),
            "Attempted to grant admin group membership (admins) to admins in workspace None by Unknown Actor"
        );
        assert_eq!(dedup(&group), "workspace_admin_privilege_None_admins");
        let bare = event(r#"{"actionName": "setAccountAdmin"}"#);
        assert_eq!(
            title(&bare),
            "Attempted to grant admin group membership (None) to Unknown Principal in workspace Unknown Workspace by Unknown Actor"
        );
        assert_eq!(dedup(&bare), "workspace_admin_privilege_unknown_unknown");
    }

    #[test]
    fn context_names_the_principal_and_group() {
        let e = event(
            r#"{"actionName": "addPrincipalToGroup", "requestParams":
                {"targetUserName": "12345678-aaaa-bbbb-cccc-123456789abc", "targetGroupName": "Admins"}}"#,
        );
        assert_eq!(
            alert_context(&e).unwrap().to_json(),
            r#"{"action":"addPrincipalToGroup","privilege_scope":"WORKSPACE_LEVEL","target_principal":"12345678-aaaa-bbbb-cccc-123456789abc","principal_type":"Service Principal","target_group":"Admins","is_system_admins_group":true,"detection_note":"Direct grants only - nested group resolution requires correlation rule"}"#
        );
        let ctx = alert_context(&event("{}")).unwrap();
        assert_eq!(ctx.get("principal_type"), Some(&Value::from("Unknown")));
        assert_eq!(ctx.get("is_system_admins_group"), Some(&Value::Bool(false)));
        let numeric = event(r#"{"requestParams": {"targetGroupId": 5}}"#);
        assert_eq!(
            alert_context(&numeric).unwrap_err().to_string(),
            "TypeError: expected string or bytes-like object, got 'int'"
        );
    }
}
