//! [`RULES`]: the two seed rules, written by hand over [`Event`]: their conditions, dedup
//! strings (with Panther's fallbacks) and unique values, and their specs' windows.

use std::borrow::Cow;

use crate::event::{Event, Field};

/// What the windows need to know of a rule (its YAML spec in `rules-tests/seed/`).
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    /// `RuleID`.
    pub id: &'static str,
    /// `DedupPeriodMinutes` in ms (Panther's default: 60 minutes).
    pub period_ms: i64,
    /// `Threshold` (default 1).
    pub threshold: u64,
    /// Whether the rule defines `unique`: the threshold then counts distinct values.
    pub counts_unique: bool,
}

const MINUTE_MS: i64 = 60_000;

/// Index of `Databricks.Audit.AccessToMultipleWorkspaces` in [`RULES`].
pub const ACCESS: usize = 0;
/// Index of `Databricks.Audit.InstallLibraryAllClusters` in [`RULES`].
pub const INSTALL: usize = 1;

/// The rules, in RuleID order (as rulehost orders them).
pub const RULES: [RuleSpec; 2] = [
    RuleSpec {
        id: "Databricks.Audit.AccessToMultipleWorkspaces",
        period_ms: 1440 * MINUTE_MS,
        threshold: 5,
        counts_unique: true,
    },
    RuleSpec {
        id: "Databricks.Audit.InstallLibraryAllClusters",
        period_ms: 60 * MINUTE_MS,
        threshold: 1,
        counts_unique: false,
    },
];

/// `panther_databricks_helpers.SYSTEM_USERS`.
const SYSTEM_USERS: &[&str] = &["System-User"];

/// Panther's longest generated field, in characters, suffix included.
const MAX_FIELD_CHARS: usize = 1000;
const TRUNCATION_SUFFIX: &str = "... (truncated)";

/// Calls `matched(rule, dedup, unique)` for each rule that matches `event`, in rule order.
pub fn evaluate(event: &Event, mut matched: impl FnMut(usize, &str, Option<&str>)) {
    if access_matches(event) {
        // `dedup`: `deep_get("userIdentity", "email", default="unknown")`; `unique`:
        // `get("workspaceId", "unknown")`. Neither is empty here (the rule refused "").
        let dedup = dedup(ACCESS, truncate(event.email.deep_str_or("unknown")));
        let unique = truncate(event.workspace_id.str_or("unknown"));
        matched(ACCESS, &dedup, Some(&unique));
    }
    if matches!(&event.action_name, Field::Str(a) if a == "installLibraryOnAllClusters") {
        // No `dedup`: Panther dedups on the title.
        let actor = event.email.deep_str_or("Unknown Actor");
        let workspace = event.workspace_id.str_or("Unknown Workspace");
        let title =
            format!("Library installed on all clusters in workspace {workspace} by {actor}");
        matched(INSTALL, &dedup(INSTALL, truncate(title.into())), None);
    }
}

/// `databricks_access_to_multiple_workspaces.rule`.
fn access_matches(event: &Event) -> bool {
    match &event.email {
        Field::Missing | Field::Null => return false,
        Field::Str(user)
            if SYSTEM_USERS.contains(&&**user) || user.is_empty() || user == "unknown" =>
        {
            return false;
        }
        _ => {}
    }
    event.workspace_id.is_some()
}

/// Panther's `_get_dedup`: an empty string falls back to `defaultDedupString:<RuleID>`.
fn dedup(rule: usize, value: Cow<'_, str>) -> Cow<'_, str> {
    if value.is_empty() {
        Cow::Owned(format!("defaultDedupString:{}", RULES[rule].id))
    } else {
        value
    }
}

/// Cuts to [`MAX_FIELD_CHARS`] characters, suffix included.
fn truncate(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.len() <= MAX_FIELD_CHARS || s.chars().count() <= MAX_FIELD_CHARS {
        return s;
    }
    let keep = MAX_FIELD_CHARS - TRUNCATION_SUFFIX.chars().count();
    let mut cut: String = s.chars().take(keep).collect();
    cut.push_str(TRUNCATION_SUFFIX);
    Cow::Owned(cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Line;

    fn matches(json: &str) -> Vec<(usize, String, Option<String>)> {
        let Line::Event(event) = Line::parse(json.as_bytes()) else {
            panic!("{json}");
        };
        let mut out = Vec::new();
        evaluate(&event, |r, d, u| {
            out.push((r, d.to_owned(), u.map(str::to_owned)))
        });
        out
    }

    #[test]
    fn access_needs_a_real_user_and_a_workspace() {
        let m = matches(r#"{"workspaceId": "42", "userIdentity": {"Email": "u@x"}}"#);
        assert_eq!(m, [(ACCESS, "u@x".into(), Some("42".into()))]);
        for email in [r#""System-User""#, r#""unknown""#, r#""""#, "null"] {
            let e = format!(r#"{{"workspaceId": "1", "userIdentity": {{"email": {email}}}}}"#);
            assert!(matches(&e).is_empty(), "{email}");
        }
        assert!(matches(r#"{"workspaceId": null, "userIdentity": {"email": "u"}}"#).is_empty());
        assert!(matches(r#"{"userIdentity": {"email": "u"}}"#).is_empty());
        let m = matches(r#"{"workspaceId": 0, "userIdentity": {"email": 7}}"#);
        assert_eq!(m, [(ACCESS, "7".into(), Some("0".into()))]);
    }

    #[test]
    fn install_dedups_on_its_title() {
        let m = matches(r#"{"ACTIONNAME": "installLibraryOnAllClusters", "workspaceId": null}"#);
        assert_eq!(
            m,
            [(
                INSTALL,
                "Library installed on all clusters in workspace None by Unknown Actor".into(),
                None
            )]
        );
        let m = matches(
            r#"{"actionName": "installLibraryOnAllClusters", "userIdentity": {"email": "a"}}"#,
        );
        assert_eq!(
            m[0].1,
            "Library installed on all clusters in workspace Unknown Workspace by a"
        );
        assert!(matches(r#"{"actionName": "installLibrary"}"#).is_empty());
    }

    #[test]
    fn long_values_are_cut_as_panther_cuts_them() {
        let long = "é".repeat(1200);
        let m = matches(&format!(
            r#"{{"workspaceId": "{long}", "userIdentity": {{"email": "{long}"}}}}"#
        ));
        let (_, dedup, unique) = &m[0];
        assert_eq!(dedup.chars().count(), MAX_FIELD_CHARS);
        assert!(dedup.ends_with(TRUNCATION_SUFFIX));
        assert_eq!(unique.as_deref(), Some(dedup.as_str()));
    }
}
