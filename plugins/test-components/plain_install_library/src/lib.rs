//! `Databricks.Audit.InstallLibraryAllClusters` written with plain `wit-bindgen` against
//! `wit/rulehost.wit`'s `rule` world, without the SDK: Panther's functions, each reading
//! the event it is given, the ones it does not define saying so. It must give the same
//! alerts as the SDK build of the rule (`plugins/rules/databricks_install_library_all_clusters`).

#[expect(
    unsafe_code,
    reason = "wit-bindgen's export glue is `unsafe extern` functions; the SDK hides the same glue from rule crates"
)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "rule" });

    use exports::rulehost::rules::detection::Guest;
    use rulehost::rules::types::{Event, Value};
    use serde_json::{Map, Value as Json};

    type Optional<T> = Option<Result<Option<T>, String>>;

    fn get(event: &Event, path: &[&str]) -> Option<Value> {
        event.get(&path.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>())
    }

    /// Python's `str(value)` of what `event.get` gives, or `default` when missing.
    fn text_or(value: Option<Value>, default: &str) -> String {
        match value {
            None => default.to_owned(),
            Some(Value::Null) => "None".to_owned(),
            Some(Value::Boolean(b)) => if b { "True" } else { "False" }.to_owned(),
            Some(Value::Integer(i)) => i.to_string(),
            Some(Value::Float(f)) => format!("{f:?}"),
            Some(Value::Text(s) | Value::Json(s)) => s,
        }
    }

    fn json(value: Option<Value>) -> Option<Json> {
        Some(match value? {
            Value::Null => return None,
            Value::Boolean(b) => Json::Bool(b),
            Value::Integer(i) => Json::from(i),
            Value::Float(f) => Json::from(f),
            Value::Text(s) => Json::String(s),
            Value::Json(text) => serde_json::from_str(&text).ok()?,
        })
    }

    struct InstallLibrary;

    impl Guest for InstallLibrary {
        fn rule(event: &Event) -> Result<bool, String> {
            let action = get(event, &["actionName"]);
            Ok(matches!(action, Some(Value::Text(a)) if a == "installLibraryOnAllClusters"))
        }

        fn title(event: &Event) -> Optional<String> {
            // Panther's deep_get: a null email counts as missing.
            let actor = match get(event, &["userIdentity", "email"]) {
                Some(Value::Null) => None,
                other => other,
            };
            let actor = text_or(actor, "Unknown Actor");
            let workspace = text_or(get(event, &["workspaceId"]), "Unknown Workspace");
            Some(Ok(Some(format!(
                "Library installed on all clusters in workspace {workspace} by {actor}"
            ))))
        }

        fn alert_context(event: &Event) -> Optional<String> {
            let mut context = Map::new();
            for (key, path) in [
                ("actor", &["userIdentity", "email"][..]),
                ("service_name", &["serviceName"]),
                ("action", &["actionName"]),
                ("source_ip", &["sourceIPAddress"]),
                ("user_agent", &["userAgent"]),
                ("audit_level", &["auditLevel"]),
                ("workspace_id", &["workspaceId"]),
                ("account_id", &["accountId"]),
                ("status_code", &["response", "statusCode"]),
                ("error_message", &["response", "errorMessage"]),
                ("request_id", &["requestId"]),
                ("library_config", &["requestParams"]),
            ] {
                if let Some(value) = json(get(event, path)) {
                    context.insert(key.to_owned(), value);
                }
            }
            Some(Ok(Some(Json::Object(context).to_string())))
        }

        // Not defined: the host applies Panther's fallbacks.
        fn dedup(_: &Event) -> Optional<String> {
            None
        }
        fn unique(_: &Event) -> Optional<String> {
            None
        }
        fn severity(_: &Event) -> Optional<String> {
            None
        }
        fn description(_: &Event) -> Optional<String> {
            None
        }
        fn reference(_: &Event) -> Optional<String> {
            None
        }
        fn runbook(_: &Event) -> Optional<String> {
            None
        }
        fn destinations(_: &Event) -> Optional<Vec<String>> {
            None
        }
    }

    export!(InstallLibrary);
}
