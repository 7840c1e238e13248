//! Every event matches; its dedup lists what each of `rulehost_sdk::helpers::databricks`
//! answers for it, in the form `host/tests/it/ports.rs`'s Python twin prints Panther's
//! `panther_databricks_helpers` (`name=type:value`, `None`, or the exception's type where
//! the helper raises: its message depends on the Python version), and its alert context is
//! `databricks_alert_context(event)`. Two runs that give the same alerts gave the same
//! answers on every event.

use rulehost_sdk::helpers::databricks::{self, ConfigScope, GroupChange};
use rulehost_sdk::{Context, Error, Event, Value, export_rule};

fn rule(_: &Event) -> bool {
    true
}

/// A value as the Python twin shows it: its type, and for a scalar its `str()`.
fn value(v: Option<Value>) -> String {
    match v {
        None => "None".to_owned(),
        Some(Value::Null) => "None".to_owned(),
        Some(v @ Value::Json(_)) => v.python_type().to_owned(),
        Some(v) => format!("{}:{}", v.python_type(), v.to_python_string()),
    }
}

fn answer<T>(result: Result<T, Error>, show: impl FnOnce(T) -> String) -> String {
    result.map_or_else(|e| e.kind().to_owned(), show)
}

fn boolean(b: bool) -> String {
    value(Some(Value::Bool(b)))
}

fn group_name(change: GroupChange) -> &'static str {
    match change {
        GroupChange::Create => "create",
        GroupChange::Delete => "delete",
        GroupChange::Modify => "modify",
        GroupChange::Membership => "membership",
    }
}

fn scope_name(scope: ConfigScope) -> &'static str {
    match scope {
        ConfigScope::Workspace => "workspace",
        ConfigScope::Account => "account",
        ConfigScope::Sso => "sso",
    }
}

fn report(event: &Event) -> String {
    let target = databricks::extract_target_principal(event);
    let group = databricks::extract_group_identifier(event);
    let (key, val) = databricks::get_config_key_value(event);
    let mut out = vec![
        format!(
            "employee_auth={}",
            boolean(databricks::is_databricks_employee_auth(event))
        ),
        format!("target={}", value(target.clone())),
        format!(
            "principal_type={}",
            answer(databricks::get_principal_type(target.as_ref()), |t| {
                format!("str:{t}")
            })
        ),
        format!("group={}", value(group.clone())),
        format!(
            "admin_group={}",
            answer(databricks::is_admin_group(group.as_ref()), boolean)
        ),
        format!(
            "login={}",
            answer(databricks::is_login_action(event), boolean)
        ),
        format!(
            "admin_privilege={}",
            answer(databricks::is_admin_privilege_action(event), boolean)
        ),
        format!(
            "group_management={}",
            boolean(databricks::is_group_management_action(event, None))
        ),
        format!(
            "service_agent={}",
            answer(databricks::is_service_agent(event), boolean)
        ),
        format!(
            "excluded_path={}",
            answer(databricks::is_excluded_path(event), boolean)
        ),
        format!(
            "config_change={}",
            answer(databricks::is_config_change(event, None), boolean)
        ),
        format!("config_key={}", value(key)),
        format!("config_value={}", value(val)),
        format!(
            "critical_config={}",
            boolean(databricks::is_critical_config_change(event))
        ),
        format!("noise={}", answer(databricks::filter_noise(event), boolean)),
        format!(
            "metastore_admin={}",
            answer(databricks::is_metastore_admin_action(event), boolean)
        ),
    ];
    for change in GroupChange::ALL {
        let name = group_name(change);
        out.push(format!(
            "group_management_{name}={}",
            boolean(databricks::is_group_management_action(event, Some(change)))
        ));
        out.push(format!(
            "alert_on_group_{name}={}",
            answer(
                databricks::should_alert_on_group_change(event, change),
                boolean
            )
        ));
    }
    for scope in ConfigScope::ALL {
        out.push(format!(
            "config_change_{}={}",
            scope_name(scope),
            answer(databricks::is_config_change(event, Some(scope)), boolean)
        ));
    }
    out.join("; ")
}

fn alert_context(event: &Event) -> Context {
    databricks::alert_context(event)
}

export_rule!(rule = rule, dedup = report, alert_context = alert_context);
