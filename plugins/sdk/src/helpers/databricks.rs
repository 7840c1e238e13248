//! Databricks audit log helpers: a port of Panther's `panther_databricks_helpers`, with
//! Panther's semantics.
//!
//! Each function behaves as its Python original on any event, including the odd ones:
//! values are tested with Python's truthiness ([`Value::truthy`]), found with `deep_get`'s
//! rules (null is missing), compared with Python's `==`, and where the original raises
//! (`"x" in None`, `7.lower()`, `re.match` on a number, an unhashable value looked up in a
//! dict), the port returns the same exception as an [`Error`], which a rule passes on with
//! `?` so that it becomes a rule error (in `rule`) or a fallback (elsewhere), as in Panther.
//! Functions that cannot raise in Python return their value directly.
//!
//! ```
//! use rulehost_sdk::Event;
//! use rulehost_sdk::helpers::databricks;
//!
//! let event = Event::from_json(r#"{"actionName": "addPrincipalToGroup",
//!     "requestParams": {"targetGroupName": "workspace-admins", "targetUserName": "a@example.com"}}"#).unwrap();
//! assert!(databricks::is_admin_privilege_action(&event).unwrap());
//! let target = databricks::extract_target_principal(&event);
//! assert_eq!(databricks::get_principal_type(target.as_ref()).unwrap(), "User");
//! ```

use std::sync::LazyLock;

use crate::regex::{self, Regex};
use crate::{Context, Error, Event, Value};

/// `LOGIN_ACTIONS`: login action names and the kind of authentication each is.
pub const LOGIN_ACTIONS: &[(&str, &str)] = &[
    ("aadBrowserLogin", "AAD Browser Login"),
    ("aadTokenLogin", "AAD Token Login"),
    ("certLogin", "Certificate Login"),
    ("jwtLogin", "JWT Login"),
    ("login", "Standard Login"),
    ("mfaLogin", "MFA Login"),
    ("oidcBrowserLogin", "OIDC Browser Login"),
    ("passwordVerifyAuthentication", "Password Authentication"),
    ("samlLogin", "SAML Login"),
    ("tokenLogin", "Token Login"),
];

/// `ADMIN_PRIVILEGE_ACTIONS["direct"]`: actions that grant or change admin rights directly.
pub const ADMIN_PRIVILEGE_ACTIONS_DIRECT: &[&str] = &[
    "setAdmin",
    "addAdmin",
    "removeAdmin",
    "setAccountAdmin",
    "changeAccountOwner",
];

/// `ADMIN_PRIVILEGE_ACTIONS["group"]`: group membership changes (admin rights when the
/// group is an admin group).
pub const ADMIN_PRIVILEGE_ACTIONS_GROUP: &[&str] = &[
    "addPrincipalToGroup",
    "addPrincipalsToGroup",
    "removePrincipalFromGroup",
];

/// `IP_ACCESS_ACTIONS`: IP access list changes (not `IpAccessDenied`, a login denial).
pub const IP_ACCESS_ACTIONS: &[&str] = &[
    "createIpAccessList",
    "updateIpAccessList",
    "deleteIpAccessList",
];

/// `PRIVILEGE_MODIFICATION_ACTIONS`: the broad set for privilege escalation.
pub const PRIVILEGE_MODIFICATION_ACTIONS: &[&str] = &[
    // Group membership
    "addPrincipalToGroup",
    "removePrincipalFromGroup",
    "addPrincipalsToGroup",
    // Admin privileges
    "setAdmin",
    "removeAdmin",
    "changeAccountOwner",
    "setAccountAdmin",
    // Role management
    "createRole",
    "deleteRole",
    "updateRole",
    "assignRole",
    "unassignRole",
    // Permissions and ownership
    "grant",
    "revoke",
    "updatePermissions",
    "setPermissions",
    "changeOwner",
    "createRoleAssignment",
    "deleteRoleAssignment",
    // Unity Catalog and workspace
    "updateMetastore",
    "updateWorkspaceAssignment",
    "updateCatalog",
    "updateSchema",
    "updateTable",
    "updateVolume",
    "updateFunction",
    "updateConnection",
];

/// `TEMP_CREDENTIAL_ACTIONS`: Unity Catalog temporary credentials.
pub const TEMP_CREDENTIAL_ACTIONS: &[&str] = &[
    "generateTemporaryTableCredential",
    "generateTemporaryVolumeCredential",
    "generateTemporaryPathCredential",
];

/// `DOWNLOAD_ACTIONS`: data downloads.
pub const DOWNLOAD_ACTIONS: &[&str] = &[
    "downloadPreviewResults",
    "downloadLargeResults",
    "filesGet",
    "getModelVersionDownloadUri",
    "getModelVersionSignedDownloadUri",
    "workspaceExport",
    "downloadQueryResult",
];

/// Identities Databricks uses for its own automation; rules exclude them (`SYSTEM_USERS`).
pub const SYSTEM_USERS: &[&str] = &["System-User"];

/// `KNOWN_SERVICE_AGENTS`: user agents of Databricks' own services.
pub const KNOWN_SERVICE_AGENTS: &[&str] = &[
    "Databricks-Service/driver",
    "Databricks-Runtime",
    "Delta-Sharing-SparkStructuredStreaming",
    "RawDBHttpClient",
    "mlflow-python",
    "obsSDK-scala",
    "wsfs",
    "feature-store",
];

/// `MFA_ACTIONS["add"]`.
pub const MFA_ACTIONS_ADD: &[&str] = &["mfaAddKey"];

/// `MFA_ACTIONS["delete"]`.
pub const MFA_ACTIONS_DELETE: &[&str] = &["mfaDeleteKey"];

/// `DATA_MOVEMENT_CREDENTIAL_ACTIONS`: data movement with explicit credentials.
pub const DATA_MOVEMENT_CREDENTIAL_ACTIONS: &[&str] = &[
    "mount",
    "createStorageCredential",
    "updateStorageCredential",
    "createConnection",
    "updateConnection",
];

/// `EXCLUDED_PATHS`: request paths of telemetry and health checks.
pub const EXCLUDED_PATHS: &[&str] = &[
    "/telemetry",
    "/delta-commit",
    "/health",
    "/metrics",
    "/status",
];

/// The keys of `GROUP_ACTIONS`: kinds of group management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupChange {
    /// `"create"`: `createGroup`.
    Create,
    /// `"delete"`: `removeGroup`, `deleteGroup`.
    Delete,
    /// `"modify"`: `updateGroup`, `modifyGroup`.
    Modify,
    /// `"membership"`: principals added to or removed from a group.
    Membership,
}

impl GroupChange {
    /// Every kind, in `GROUP_ACTIONS`'s order.
    pub const ALL: [GroupChange; 4] = [Self::Create, Self::Delete, Self::Modify, Self::Membership];

    /// `GROUP_ACTIONS[kind]`.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Self::Create => &["createGroup"],
            Self::Delete => &["removeGroup", "deleteGroup"],
            Self::Modify => &["updateGroup", "modifyGroup"],
            Self::Membership => ADMIN_PRIVILEGE_ACTIONS_GROUP,
        }
    }
}

/// The keys of `CONFIG_ACTIONS`: where a configuration change happens, each with the
/// `serviceName` its actions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigScope {
    /// `"workspace"`, service `workspace`.
    Workspace,
    /// `"account"`, service `accounts`.
    Account,
    /// `"sso"`, service `ssoConfigBackend`.
    Sso,
}

impl ConfigScope {
    /// Every scope, in `CONFIG_ACTIONS`'s order.
    pub const ALL: [ConfigScope; 3] = [Self::Workspace, Self::Account, Self::Sso];

    /// `CONFIG_ACTIONS[scope]`.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Self::Workspace => &[
                "workspaceConfEdit",
                "updateWorkspaceSettings",
                "modifyWorkspaceConfiguration",
            ],
            Self::Account => &[
                "updateAccountSettings",
                "modifyAccountConfiguration",
                "updateAccountMetastore",
            ],
            Self::Sso => &["create", "update", "delete"],
        }
    }

    /// The `serviceName` whose actions these are.
    pub fn service(self) -> &'static str {
        match self {
            Self::Workspace => "workspace",
            Self::Account => "accounts",
            Self::Sso => "ssoConfigBackend",
        }
    }
}

/// `databricks_alert_context(event)`: the common Databricks fields, with absent and null
/// values dropped. Add rule-specific fields (Python's `additional_fields`) with
/// [`Context::insert`]: a key already there is replaced in place, as `dict.update` does.
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

/// `is_databricks_employee_auth(event)`: `requestParams.authentication_method` is
/// `GENIE_AUTH`.
pub fn is_databricks_employee_auth(event: &Event) -> bool {
    event
        .deep_get(&["requestParams", "authentication_method"])
        .is_some_and(|m| m == "GENIE_AUTH")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| compile(r".+@.+\.[a-zA-Z]{2,}"));
/// Python's `^...$` (its `$` also matches before a final newline).
static UUID_EXACT: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\n?\z")
});
static UUID_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
});

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the helpers' patterns are valid")
}

/// Python's `re.match(pattern, value)`: `TypeError` unless `value` is a string.
fn re_match(pattern: &Regex, value: &Value) -> Result<bool, Error> {
    match value {
        Value::Str(s) => Ok(regex::is_match_at_start(pattern, s)),
        other => Err(Error::type_error(format!(
            "expected string or bytes-like object, got '{}'",
            other.python_type()
        ))),
    }
}

/// `get_principal_type(principal_identifier)`: `"User"` for an email address,
/// `"Service Principal"` for a UUID, `"Group"` otherwise, `"Unknown"` for a falsy value
/// (`None` stands for Python's `None`). A truthy value that is not a string raises
/// `TypeError`, as `re.match` does.
pub fn get_principal_type(principal: Option<&Value>) -> Result<&'static str, Error> {
    let Some(principal) = principal.filter(|p| p.truthy()) else {
        return Ok("Unknown");
    };
    if re_match(&EMAIL, principal)? {
        return Ok("User");
    }
    if re_match(&UUID_EXACT, principal)? {
        return Ok("Service Principal");
    }
    Ok("Group")
}

/// `is_admin_group(group_name)`: the lowercased name contains `admin`, `administrator`,
/// `owner`, `root` or `superuser`; `false` for a falsy value. A truthy value that is not a
/// string raises `AttributeError` (`.lower()`).
pub fn is_admin_group(group: Option<&Value>) -> Result<bool, Error> {
    const ADMIN_INDICATORS: [&str; 5] = ["admin", "administrator", "owner", "root", "superuser"];
    let Some(group) = group.filter(|g| g.truthy()) else {
        return Ok(false);
    };
    let lower = lower(group)?;
    Ok(ADMIN_INDICATORS.iter().any(|i| lower.contains(i)))
}

/// Python's `value.lower()`.
fn lower(value: &Value) -> Result<String, Error> {
    match value {
        Value::Str(s) => Ok(s.to_lowercase()),
        other => Err(Error::no_attribute(other, "lower")),
    }
}

/// The first truthy value of `paths`, as Panther's `for path in ...: if value: return value`.
fn first_truthy(event: &Event, paths: &[[&str; 2]]) -> Option<Value> {
    paths
        .iter()
        .find_map(|path| event.deep_get(path).filter(Value::truthy))
}

/// `extract_target_principal(event)`: the first truthy `requestParams` field of
/// `targetUserName`, `target_user_name`, `principal`, `targetServicePrincipalName`,
/// `targetGroupId`, `targetGroupName` (any type, as Python returns it); `None` if none is.
pub fn extract_target_principal(event: &Event) -> Option<Value> {
    first_truthy(
        event,
        &[
            ["requestParams", "targetUserName"],
            ["requestParams", "target_user_name"],
            ["requestParams", "principal"],
            ["requestParams", "targetServicePrincipalName"],
            ["requestParams", "targetGroupId"],
            ["requestParams", "targetGroupName"],
        ],
    )
}

/// `extract_group_identifier(event)`: for `requestParams.endpoint` `permissionAssignment`
/// or `roleAssignment`, `requestParams.targetUserName` (even a falsy one, as Python returns
/// it); otherwise the first truthy `requestParams` field of `targetGroupName`, `groupName`,
/// `targetGroupId`, `groupId`, `group`; `None` if none is.
pub fn extract_group_identifier(event: &Event) -> Option<Value> {
    let endpoint = event.deep_get(&["requestParams", "endpoint"]);
    if endpoint.is_some_and(|e| e.is_in(&["permissionAssignment", "roleAssignment"])) {
        return event.deep_get(&["requestParams", "targetUserName"]);
    }
    first_truthy(
        event,
        &[
            ["requestParams", "targetGroupName"],
            ["requestParams", "groupName"],
            ["requestParams", "targetGroupId"],
            ["requestParams", "groupId"],
            ["requestParams", "group"],
        ],
    )
}

/// Python's `value in some_dict` for a dict of string keys: `TypeError` for an unhashable
/// value (an array or object), else whether it is one of `keys`.
fn in_dict(
    value: Option<&Value>,
    keys: impl IntoIterator<Item = &'static str>,
) -> Result<bool, Error> {
    match value {
        Some(v @ Value::Json(_)) => Err(Error::type_error(format!(
            "unhashable type: '{}'",
            v.python_type()
        ))),
        Some(Value::Str(s)) => Ok(keys.into_iter().any(|k| k == s)),
        _ => Ok(false),
    }
}

/// Python's `value in some_list` for a list of strings (`None` is in none).
fn in_list(value: Option<&Value>, list: &[&str]) -> bool {
    value.is_some_and(|v| v.is_in(list))
}

/// `is_login_action(event)`: `actionName` is one of [`LOGIN_ACTIONS`]. An array or object
/// `actionName` raises `TypeError` (unhashable), as Python's `in` on a dict does.
pub fn is_login_action(event: &Event) -> Result<bool, Error> {
    in_dict(
        event.get("actionName").as_ref(),
        LOGIN_ACTIONS.iter().map(|(action, _)| *action),
    )
}

/// `is_admin_privilege_action(event)`: a direct admin action, or a group membership change
/// of a group [`is_admin_group`] calls an admin group (whose errors it raises).
pub fn is_admin_privilege_action(event: &Event) -> Result<bool, Error> {
    let action = event.get("actionName");
    if in_list(action.as_ref(), ADMIN_PRIVILEGE_ACTIONS_DIRECT) {
        return Ok(true);
    }
    if in_list(action.as_ref(), ADMIN_PRIVILEGE_ACTIONS_GROUP) {
        let group = extract_group_identifier(event);
        if group.as_ref().is_some_and(Value::truthy) && is_admin_group(group.as_ref())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `is_group_management_action(event, action_category)`: `actionName` is one of the
/// actions of `change` (`Some`), or of any kind (`None`).
pub fn is_group_management_action(event: &Event, change: Option<GroupChange>) -> bool {
    let action = event.get("actionName");
    match change {
        Some(change) => in_list(action.as_ref(), change.actions()),
        None => GroupChange::ALL
            .iter()
            .any(|c| in_list(action.as_ref(), c.actions())),
    }
}

/// Python's `needle in haystack` for each needle: substring, element or key; `TypeError`
/// when the haystack is a number, boolean or `None`.
fn any_in(haystack: &Value, needles: &[&str]) -> Result<bool, Error> {
    for needle in needles {
        if haystack.contains(needle)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `is_service_agent(event)`: `userAgent` contains one of [`KNOWN_SERVICE_AGENTS`]. A
/// missing `userAgent` is `""`; a null or numeric one raises `TypeError`, as
/// `event.get("userAgent", "")` hands Python's `in` a `None` or an `int`.
pub fn is_service_agent(event: &Event) -> Result<bool, Error> {
    let agent = event.get("userAgent").unwrap_or_else(|| Value::from(""));
    any_in(&agent, KNOWN_SERVICE_AGENTS)
}

/// `is_excluded_path(event)`: `requestParams.path` contains one of [`EXCLUDED_PATHS`] (a
/// missing or null path is `""`; a numeric one raises `TypeError`).
pub fn is_excluded_path(event: &Event) -> Result<bool, Error> {
    let path = event
        .deep_get(&["requestParams", "path"])
        .unwrap_or_else(|| Value::from(""));
    any_in(&path, EXCLUDED_PATHS)
}

/// `is_config_change(event, config_category)`: with a scope, the event's `serviceName` is
/// that scope's service and `actionName` one of its actions; without one, `actionName` is
/// one of the actions of the scope whose service `serviceName` names. Without a scope, an
/// array or object `serviceName` raises `TypeError` (unhashable, as a dict lookup).
pub fn is_config_change(event: &Event, scope: Option<ConfigScope>) -> Result<bool, Error> {
    let action = event.get("actionName");
    let service = event.get("serviceName");
    if let Some(scope) = scope {
        let here = service.as_ref().is_some_and(|s| *s == scope.service());
        return Ok(here && in_list(action.as_ref(), scope.actions()));
    }
    if let Some(v @ Value::Json(_)) = &service {
        return Err(Error::type_error(format!(
            "unhashable type: '{}'",
            v.python_type()
        )));
    }
    Ok(ConfigScope::ALL.iter().any(|scope| {
        service.as_ref().is_some_and(|s| *s == scope.service())
            && in_list(action.as_ref(), scope.actions())
    }))
}

/// `get_config_key_value(event)`: `requestParams.workspaceConfKeys` and
/// `requestParams.workspaceConfValues`.
pub fn get_config_key_value(event: &Event) -> (Option<Value>, Option<Value>) {
    (
        event.deep_get(&["requestParams", "workspaceConfKeys"]),
        event.deep_get(&["requestParams", "workspaceConfValues"]),
    )
}

/// `is_critical_config_change(event)`: the configuration key is one of audit logging, MFA
/// and login approval settings, or the action changes an IP access list.
pub fn is_critical_config_change(event: &Event) -> bool {
    const CRITICAL_CONFIGS: [&str; 4] = [
        "enableVerboseAuditLogs",
        "enforceMFA",
        "requireWorkspaceApproval",
        "customerApprovedWSLoginExpirationTime",
    ];
    let (key, _) = get_config_key_value(event);
    in_list(key.as_ref(), &CRITICAL_CONFIGS)
        || in_list(event.get("actionName").as_ref(), IP_ACCESS_ACTIONS)
}

/// `filter_noise(event)`: `true` when the event is noise (a service agent, an excluded
/// path, or a UUID as the user's email, i.e. a service principal). Raises what
/// [`is_service_agent`] and [`is_excluded_path`] raise, and `TypeError` for a non-string
/// email, as `re.match` does.
pub fn filter_noise(event: &Event) -> Result<bool, Error> {
    if is_service_agent(event)? || is_excluded_path(event)? {
        return Ok(true);
    }
    let email = event
        .deep_get(&["userIdentity", "email"])
        .unwrap_or_else(|| Value::from(""));
    re_match(&UUID_PREFIX, &email)
}

/// `should_alert_on_group_change(event, change_type)`: not noise, a group change of that
/// kind, on the `accounts` service.
pub fn should_alert_on_group_change(event: &Event, change: GroupChange) -> Result<bool, Error> {
    if filter_noise(event)? || !is_group_management_action(event, Some(change)) {
        return Ok(false);
    }
    Ok(event.get("serviceName").is_some_and(|s| s == "accounts"))
}

/// `is_metastore_admin_action(event)`: an `updateMetastore` whose `requestParams` has an
/// `owner`, or an admin group membership change of a group named for the metastore, Unity
/// or the catalog. `requestParams` present but null raises `TypeError`, and a non-string
/// group `AttributeError`, as in Python.
pub fn is_metastore_admin_action(event: &Event) -> Result<bool, Error> {
    let action = event.get("actionName");
    if action.as_ref().is_some_and(|a| *a == "updateMetastore") {
        let params = event
            .get("requestParams")
            .unwrap_or_else(|| Value::Json("{}".to_owned()));
        return params.contains("owner");
    }
    if is_admin_privilege_action(event)? {
        let Some(group) = extract_group_identifier(event).filter(Value::truthy) else {
            return Ok(false);
        };
        let lower = lower(&group)?;
        return Ok(["metastore", "unity", "catalog"]
            .iter()
            .any(|k| lower.contains(k)));
    }
    Ok(false)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    //! Each case is what Panther's Python helper returns or raises on the same event
    //! (run through CPython 3.11 with panther-core 0.16.3's `PantherEvent`).

    use super::*;

    fn event(json: &str) -> Event<'static> {
        Event::from_json(json).unwrap()
    }

    fn err(result: Result<impl std::fmt::Debug, Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn drops_absent_and_null_fields() {
        let event = event(
            r#"{"serviceName": "clusters", "workspaceId": null, "userIdentity": {"email": "a@b.c"},
                "response": {"statusCode": 200, "errorMessage": null}}"#,
        );
        assert_eq!(
            alert_context(&event).to_json(),
            r#"{"actor":"a@b.c","service_name":"clusters","status_code":200}"#
        );
    }

    #[test]
    fn principal_types() {
        let t = |v: Value| get_principal_type(Some(&v));
        assert_eq!(t("user@example.com".into()), Ok("User"));
        // re.match is anchored at the start only: trailing text still matches.
        assert_eq!(t("a@b.co and more".into()), Ok("User"));
        assert_eq!(
            t("a@b.c".into()),
            Ok("Group"),
            "a one-letter TLD is not an email"
        );
        assert_eq!(
            t("12345678-1234-1234-1234-123456789abc".into()),
            Ok("Service Principal")
        );
        // `$` matches before one final newline, not two.
        assert_eq!(
            t("12345678-1234-1234-1234-123456789ABC\n".into()),
            Ok("Service Principal")
        );
        assert_eq!(
            t("12345678-1234-1234-1234-123456789abc\n\n".into()),
            Ok("Group")
        );
        assert_eq!(
            t("12345678-1234-1234-1234-123456789abcd".into()),
            Ok("Group")
        );
        assert_eq!(t("admins".into()), Ok("Group"));
        assert_eq!(get_principal_type(None), Ok("Unknown"));
        for falsy in [
            Value::from(""),
            Value::Int(0),
            Value::Json("[]".into()),
            Value::Null,
        ] {
            assert_eq!(t(falsy), Ok("Unknown"));
        }
        assert_eq!(
            err(t(Value::Int(42))),
            "TypeError: expected string or bytes-like object, got 'int'"
        );
        assert_eq!(
            err(t(Value::Json(r#"["a"]"#.into()))),
            "TypeError: expected string or bytes-like object, got 'ImmutableList'"
        );
    }

    #[test]
    fn admin_groups() {
        let g = |v: Value| is_admin_group(Some(&v));
        for name in [
            "admins",
            "Workspace-ADMINISTRATORS",
            "data-owners",
            "ROOT",
            "superusers",
        ] {
            assert_eq!(g(name.into()), Ok(true), "{name}");
        }
        assert_eq!(g("analysts".into()), Ok(false));
        assert_eq!(g("".into()), Ok(false));
        assert_eq!(g(Value::Int(0)), Ok(false));
        assert_eq!(is_admin_group(None), Ok(false));
        assert_eq!(
            err(g(Value::Int(7))),
            "AttributeError: 'int' object has no attribute 'lower'"
        );
        assert_eq!(
            err(g(Value::Json(r#"{"a":1}"#.into()))),
            "AttributeError: 'ImmutableCaseInsensitiveDict' object has no attribute 'lower'"
        );
    }

    #[test]
    fn target_principal_is_the_first_truthy_field() {
        let e = event(
            r#"{"requestParams": {"targetUserName": "", "target_user_name": null,
                "principal": 0, "targetServicePrincipalName": "sp-1", "targetGroupId": "g"}}"#,
        );
        assert_eq!(extract_target_principal(&e), Some(Value::from("sp-1")));
        let e = event(r#"{"requestParams": {"TARGETUSERNAME": 12}}"#);
        assert_eq!(extract_target_principal(&e), Some(Value::Int(12)));
        assert_eq!(
            extract_target_principal(&event(r#"{"requestParams": "x"}"#)),
            None
        );
        assert_eq!(extract_target_principal(&event("{}")), None);
    }

    #[test]
    fn group_identifier() {
        let e = event(
            r#"{"requestParams": {"endpoint": "roleAssignment", "targetUserName": "", "groupName": "g"}}"#,
        );
        // The endpoint branch returns targetUserName as it is, even falsy.
        assert_eq!(extract_group_identifier(&e), Some(Value::from("")));
        let e = event(r#"{"requestParams": {"endpoint": "permissionAssignment"}}"#);
        assert_eq!(extract_group_identifier(&e), None);
        let e = event(
            r#"{"requestParams": {"endpoint": "other", "targetGroupName": "", "groupName": null,
                "targetGroupId": 0, "groupId": 99, "group": "g"}}"#,
        );
        assert_eq!(extract_group_identifier(&e), Some(Value::Int(99)));
        let e = event(r#"{"requestParams": {"endpoint": ["roleAssignment"], "group": "g"}}"#);
        assert_eq!(extract_group_identifier(&e), Some(Value::from("g")));
    }

    #[test]
    fn login_actions() {
        assert_eq!(
            is_login_action(&event(r#"{"actionName": "samlLogin"}"#)),
            Ok(true)
        );
        assert_eq!(
            is_login_action(&event(r#"{"actionName": "logout"}"#)),
            Ok(false)
        );
        assert_eq!(
            is_login_action(&event(r#"{"actionName": null}"#)),
            Ok(false)
        );
        assert_eq!(is_login_action(&event(r#"{"actionName": 1}"#)), Ok(false));
        assert_eq!(is_login_action(&event("{}")), Ok(false));
        assert_eq!(
            err(is_login_action(&event(r#"{"actionName": ["login"]}"#))),
            "TypeError: unhashable type: 'ImmutableList'"
        );
    }

    #[test]
    fn admin_privilege_actions() {
        let a = |json: &str| is_admin_privilege_action(&event(json));
        assert_eq!(a(r#"{"actionName": "setAdmin"}"#), Ok(true));
        assert_eq!(a(r#"{"actionName": "removeAdmin"}"#), Ok(true));
        assert_eq!(
            a(
                r#"{"actionName": "addPrincipalToGroup", "requestParams": {"targetGroupName": "Admins"}}"#
            ),
            Ok(true)
        );
        assert_eq!(
            a(
                r#"{"actionName": "addPrincipalToGroup", "requestParams": {"targetGroupName": "analysts"}}"#
            ),
            Ok(false)
        );
        assert_eq!(a(r#"{"actionName": "addPrincipalToGroup"}"#), Ok(false));
        assert_eq!(
            err(a(
                r#"{"actionName": "addPrincipalsToGroup", "requestParams": {"groupId": 5}}"#
            )),
            "AttributeError: 'int' object has no attribute 'lower'"
        );
        assert_eq!(
            a(r#"{"actionName": "createGroup", "requestParams": {"groupId": 5}}"#),
            Ok(false)
        );
    }

    #[test]
    fn group_management_actions() {
        let e = event(r#"{"actionName": "deleteGroup"}"#);
        assert!(is_group_management_action(&e, None));
        assert!(is_group_management_action(&e, Some(GroupChange::Delete)));
        assert!(!is_group_management_action(&e, Some(GroupChange::Create)));
        assert!(!is_group_management_action(&event("{}"), None));
        let e = event(r#"{"actionName": "addPrincipalsToGroup"}"#);
        assert!(is_group_management_action(
            &e,
            Some(GroupChange::Membership)
        ));
    }

    #[test]
    fn service_agents_and_excluded_paths() {
        assert_eq!(
            is_service_agent(&event(r#"{"userAgent": "wsfs/1.0"}"#)),
            Ok(true)
        );
        assert_eq!(
            is_service_agent(&event(r#"{"userAgent": "curl/8"}"#)),
            Ok(false)
        );
        assert_eq!(is_service_agent(&event("{}")), Ok(false));
        // A list is searched for an equal element, not a substring.
        assert_eq!(
            is_service_agent(&event(r#"{"userAgent": ["wsfs"]}"#)),
            Ok(true)
        );
        assert_eq!(
            is_service_agent(&event(r#"{"userAgent": ["wsfs/1"]}"#)),
            Ok(false)
        );
        assert_eq!(
            err(is_service_agent(&event(r#"{"userAgent": null}"#))),
            "TypeError: argument of type 'NoneType' is not iterable"
        );
        assert_eq!(
            err(is_service_agent(&event(r#"{"userAgent": 3}"#))),
            "TypeError: argument of type 'int' is not iterable"
        );
        let p = |json: &str| is_excluded_path(&event(json));
        assert_eq!(
            p(r#"{"requestParams": {"path": "/api/2.0/health/check"}}"#),
            Ok(true)
        );
        assert_eq!(
            p(r#"{"requestParams": {"path": "/users/status-update"}}"#),
            Ok(true)
        );
        assert_eq!(
            p(r#"{"requestParams": {"path": "/api/2.0/clusters"}}"#),
            Ok(false)
        );
        assert_eq!(p(r#"{"requestParams": {"path": null}}"#), Ok(false));
        assert_eq!(p("{}"), Ok(false));
        assert_eq!(
            err(p(r#"{"requestParams": {"path": 7}}"#)),
            "TypeError: argument of type 'int' is not iterable"
        );
    }

    #[test]
    fn config_changes() {
        let ws = event(r#"{"serviceName": "workspace", "actionName": "workspaceConfEdit"}"#);
        assert_eq!(is_config_change(&ws, None), Ok(true));
        assert_eq!(
            is_config_change(&ws, Some(ConfigScope::Workspace)),
            Ok(true)
        );
        assert_eq!(is_config_change(&ws, Some(ConfigScope::Account)), Ok(false));
        // Generic SSO action names count only on the SSO service.
        let sso = event(r#"{"serviceName": "ssoConfigBackend", "actionName": "update"}"#);
        assert_eq!(is_config_change(&sso, None), Ok(true));
        let other = event(r#"{"serviceName": "clusters", "actionName": "update"}"#);
        assert_eq!(is_config_change(&other, None), Ok(false));
        assert_eq!(is_config_change(&event("{}"), None), Ok(false));
        let listed = event(r#"{"serviceName": ["workspace"], "actionName": "update"}"#);
        assert_eq!(
            err(is_config_change(&listed, None)),
            "TypeError: unhashable type: 'ImmutableList'"
        );
        assert_eq!(is_config_change(&listed, Some(ConfigScope::Sso)), Ok(false));

        let key = event(
            r#"{"requestParams": {"workspaceConfKeys": "enforceMFA", "workspaceConfValues": "true"}}"#,
        );
        assert_eq!(
            get_config_key_value(&key),
            (Some(Value::from("enforceMFA")), Some(Value::from("true")))
        );
        assert!(is_critical_config_change(&key));
        assert!(is_critical_config_change(&event(
            r#"{"actionName": "deleteIpAccessList"}"#
        )));
        assert!(!is_critical_config_change(&event(
            r#"{"requestParams": {"workspaceConfKeys": "enableDbfsFileBrowser"}}"#
        )));
    }

    #[test]
    fn noise() {
        let n = |json: &str| filter_noise(&event(json));
        assert_eq!(n(r#"{"userAgent": "Databricks-Runtime/15"}"#), Ok(true));
        assert_eq!(n(r#"{"requestParams": {"path": "/metrics"}}"#), Ok(true));
        assert_eq!(
            n(r#"{"userIdentity": {"email": "12345678-aaaa-bbbb-cccc-123456789abc"}}"#),
            Ok(true)
        );
        // Anchored at the start only: a UUID followed by anything is a service principal.
        assert_eq!(
            n(r#"{"userIdentity": {"email": "12345678-aaaa-bbbb-cccc-123456789abcdef@x.io"}}"#),
            Ok(true)
        );
        assert_eq!(
            n(r#"{"userIdentity": {"email": "user@example.com"}}"#),
            Ok(false)
        );
        assert_eq!(n("{}"), Ok(false));
        assert_eq!(
            err(n(r#"{"userIdentity": {"email": 5}}"#)),
            "TypeError: expected string or bytes-like object, got 'int'"
        );
        assert_eq!(
            err(n(r#"{"userAgent": null}"#)),
            "TypeError: argument of type 'NoneType' is not iterable"
        );
    }

    #[test]
    fn group_change_alerts() {
        let e = event(r#"{"serviceName": "accounts", "actionName": "removeGroup"}"#);
        assert_eq!(
            should_alert_on_group_change(&e, GroupChange::Delete),
            Ok(true)
        );
        assert_eq!(
            should_alert_on_group_change(&e, GroupChange::Modify),
            Ok(false)
        );
        let e = event(r#"{"serviceName": "workspace", "actionName": "removeGroup"}"#);
        assert_eq!(
            should_alert_on_group_change(&e, GroupChange::Delete),
            Ok(false)
        );
        let e = event(
            r#"{"serviceName": "accounts", "actionName": "removeGroup", "userAgent": "wsfs"}"#,
        );
        assert_eq!(
            should_alert_on_group_change(&e, GroupChange::Delete),
            Ok(false)
        );
    }

    #[test]
    fn metastore_admin_actions() {
        let m = |json: &str| is_metastore_admin_action(&event(json));
        assert_eq!(
            m(r#"{"actionName": "updateMetastore", "requestParams": {"Owner": "x"}}"#),
            Ok(true)
        );
        assert_eq!(
            m(r#"{"actionName": "updateMetastore", "requestParams": {"name": "x"}}"#),
            Ok(false)
        );
        assert_eq!(m(r#"{"actionName": "updateMetastore"}"#), Ok(false));
        assert_eq!(
            m(r#"{"actionName": "updateMetastore", "requestParams": "new owner"}"#),
            Ok(true)
        );
        assert_eq!(
            err(m(
                r#"{"actionName": "updateMetastore", "requestParams": null}"#
            )),
            "TypeError: argument of type 'NoneType' is not iterable"
        );
        assert_eq!(
            m(
                r#"{"actionName": "addPrincipalToGroup", "requestParams": {"targetGroupName": "unity-catalog-admins"}}"#
            ),
            Ok(true)
        );
        assert_eq!(
            m(
                r#"{"actionName": "addPrincipalToGroup", "requestParams": {"targetGroupName": "workspace-admins"}}"#
            ),
            Ok(false)
        );
        assert_eq!(m(r#"{"actionName": "setAdmin"}"#), Ok(false));
        assert_eq!(
            err(m(
                r#"{"actionName": "setAdmin", "requestParams": {"group": 4}}"#
            )),
            "AttributeError: 'int' object has no attribute 'lower'"
        );
    }

    #[test]
    fn employee_auth() {
        let e = event(r#"{"requestParams": {"authentication_method": "GENIE_AUTH"}}"#);
        assert!(is_databricks_employee_auth(&e));
        assert!(!is_databricks_employee_auth(&event("{}")));
    }
}
