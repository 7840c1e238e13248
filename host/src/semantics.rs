//! Panther's fallbacks and limits for a rule's outputs (reference: panther-semantics.md §1),
//! in one place so that `eval` and `test` agree.

use serde_json::{Map, Value};

use crate::spec::{Severity, Spec};

/// Longest title, dedup, description, reference, runbook or unique value, in characters,
/// including [`TRUNCATION_SUFFIX`] (panther-core `MAX_GENERATED_FIELD_SIZE`).
pub const MAX_FIELD_CHARS: usize = 1000;
/// Appended to a cut value.
pub const TRUNCATION_SUFFIX: &str = "... (truncated)";
/// Largest serialised alert context (panther-core: 200 KiB of characters).
pub const MAX_CONTEXT_CHARS: usize = 204_800;
/// Most destinations an alert may name.
pub const MAX_DESTINATIONS: usize = 10;

/// What a call returned: a value, "not defined", or a failure.
pub use crate::calls::CallResult;

/// Cuts `s` to [`MAX_FIELD_CHARS`] characters, suffix included.
pub fn truncate(s: String) -> String {
    // No more characters than bytes.
    if s.len() <= MAX_FIELD_CHARS || s.chars().count() <= MAX_FIELD_CHARS {
        return s;
    }
    let keep = MAX_FIELD_CHARS - TRUNCATION_SUFFIX.chars().count();
    let mut cut: String = s.chars().take(keep).collect();
    cut.push_str(TRUNCATION_SUFFIX);
    cut
}

/// The alert title: `title()`, else DisplayName, else RuleID; RuleID when `title()` failed.
pub fn title(spec: &Spec, called: &CallResult<String>) -> String {
    match called {
        Ok(Some(t)) => truncate(t.clone()),
        Ok(None) => spec.default_title().to_owned(),
        Err(_) => spec.rule_id.clone(),
    }
}

/// The dedup string (panther-core `_get_dedup`): `dedup()` when it gives a non-empty
/// string; `defaultDedupString:<RuleID>` when it is defined but fails or returns `""`.
/// Only when the rule defines no `dedup()`: the title from `title()` (RuleID if that
/// failed), else `defaultDedupString:<RuleID>`. Never the DisplayName.
pub fn dedup(spec: &Spec, called: CallResult<String>, title_called: &CallResult<String>) -> String {
    let default = || format!("defaultDedupString:{}", spec.rule_id);
    match called {
        Ok(Some(d)) if !d.is_empty() => truncate(d),
        Ok(Some(_)) | Err(_) => default(),
        Ok(None) => match title_called {
            Ok(Some(t)) if !t.is_empty() => truncate(t.clone()),
            Err(_) => spec.rule_id.clone(),
            Ok(_) => default(),
        },
    }
}

/// The severity: `severity()` in any case, `DEFAULT` or no function meaning the YAML
/// Severity. An invalid value also falls back; it is returned as an error to count.
pub fn severity(spec: &Spec, called: &CallResult<String>) -> (Severity, Option<String>) {
    match called {
        Ok(None) => (spec.severity, None),
        Ok(Some(s)) if s.eq_ignore_ascii_case("DEFAULT") => (spec.severity, None),
        Ok(Some(s)) => match Severity::parse(s) {
            Some(sev) => (sev, None),
            None => (
                spec.severity,
                Some(format!(
                    "severity `{s}` is not one of INFO, LOW, MEDIUM, HIGH, CRITICAL, DEFAULT"
                )),
            ),
        },
        Err(f) => (spec.severity, Some(f.to_string())),
    }
}

/// The alert context: a JSON object, `{}` when not defined, or `{"_error": ...}` when the
/// rule failed, returned something that is not a JSON object, or exceeded 200 KiB.
pub fn alert_context(called: &CallResult<String>) -> (Value, Option<String>) {
    let error = |msg: String| {
        let mut m = Map::new();
        m.insert("_error".into(), Value::String(msg.clone()));
        (Value::Object(m), Some(msg))
    };
    match called {
        Ok(None) => (Value::Object(Map::new()), None),
        Err(f) => error(f.to_string()),
        Ok(Some(text)) => {
            let size = text.chars().count();
            if size > MAX_CONTEXT_CHARS {
                return error(format!(
                    "alert_context size is [{size}] characters, bigger than maximum of \
                     [{MAX_CONTEXT_CHARS}] characters"
                ));
            }
            match serde_json::from_str::<Value>(text) {
                Ok(v @ Value::Object(_)) => (v, None),
                Ok(_) => error("alert_context must be a JSON object".into()),
                Err(e) => error(format!("alert_context is not valid JSON: {e}")),
            }
        }
    }
}

/// Description, reference or runbook: the function's value, else the YAML value; `""` when
/// the function failed.
pub fn text(called: &CallResult<String>, yaml: &str) -> String {
    match called {
        Ok(Some(s)) => truncate(s.clone()),
        Ok(None) => yaml.to_owned(),
        Err(_) => String::new(),
    }
}

/// Destinations: the function's list (at most ten; empty means "suppress delivery"), else
/// the YAML `OutputIds`. Returns (destinations, suppressed).
pub fn destinations(spec: &Spec, called: &CallResult<Vec<String>>) -> (Vec<String>, bool) {
    match called {
        Ok(Some(list)) if list.is_empty() => (Vec::new(), true),
        Ok(Some(list)) => (list.iter().take(MAX_DESTINATIONS).cloned().collect(), false),
        Ok(None) | Err(_) => (spec.output_ids.clone(), false),
    }
}

/// The unique value: truncated like the other strings.
pub fn unique(called: CallResult<String>) -> Option<String> {
    match called {
        Ok(Some(u)) => Some(truncate(u)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuleFailure;
    use std::path::Path;

    fn spec(display: Option<&str>) -> Spec {
        let mut text = String::from(
            "AnalysisType: rule\nFilename: r.wasm\nRuleID: R.1\nEnabled: true\nLogTypes: [X]\n\
             Severity: Low\nDescription: yaml description\nOutputIds: [slack]\n",
        );
        if let Some(d) = display {
            text.push_str(&format!("DisplayName: {d}\n"));
        }
        Spec::parse(Path::new("r.yml"), &text).unwrap()
    }

    fn trap() -> RuleFailure {
        RuleFailure::Trap("boom".into())
    }

    #[test]
    fn title_fallbacks() {
        assert_eq!(title(&spec(Some("Nice")), &Ok(None)), "Nice");
        assert_eq!(title(&spec(None), &Ok(None)), "R.1");
        assert_eq!(title(&spec(Some("Nice")), &Err(trap())), "R.1");
        assert_eq!(title(&spec(None), &Ok(Some("t".into()))), "t");
    }

    #[test]
    fn dedup_fallbacks_never_use_display_name() {
        let s = spec(Some("Nice"));
        assert_eq!(dedup(&s, Ok(Some("d".into())), &Ok(None)), "d");
        assert_eq!(
            dedup(&s, Ok(None), &Ok(Some("the title".into()))),
            "the title"
        );
        // A defined dedup() that returns "" or fails never falls back to the title.
        assert_eq!(
            dedup(&s, Ok(Some(String::new())), &Ok(Some("t".into()))),
            "defaultDedupString:R.1"
        );
        assert_eq!(
            dedup(&s, Err(trap()), &Ok(Some("t".into()))),
            "defaultDedupString:R.1"
        );
        assert_eq!(dedup(&s, Ok(None), &Ok(None)), "defaultDedupString:R.1");
        assert_eq!(dedup(&s, Err(trap()), &Ok(None)), "defaultDedupString:R.1");
        assert_eq!(dedup(&s, Ok(None), &Err(trap())), "R.1");
    }

    #[test]
    fn truncation_counts_characters_and_keeps_the_suffix() {
        let long = "é".repeat(1500);
        let cut = truncate(long);
        assert_eq!(cut.chars().count(), MAX_FIELD_CHARS);
        assert!(cut.ends_with(TRUNCATION_SUFFIX));
        let exact = "x".repeat(MAX_FIELD_CHARS);
        assert_eq!(truncate(exact.clone()), exact);
    }

    #[test]
    fn severity_rules() {
        let s = spec(None);
        assert_eq!(
            severity(&s, &Ok(Some("high".into()))),
            (Severity::High, None)
        );
        assert_eq!(
            severity(&s, &Ok(Some("Default".into()))),
            (Severity::Low, None)
        );
        assert_eq!(severity(&s, &Ok(None)), (Severity::Low, None));
        let (sev, err) = severity(&s, &Ok(Some("SUPER".into())));
        assert_eq!(sev, Severity::Low);
        assert!(err.unwrap().contains("`SUPER`"));
    }

    #[test]
    fn context_errors_become_error_objects() {
        assert_eq!(alert_context(&Ok(None)).0, serde_json::json!({}));
        assert_eq!(
            alert_context(&Ok(Some(r#"{"a":1}"#.into()))).0,
            serde_json::json!({"a": 1})
        );
        let (v, e) = alert_context(&Ok(Some("[1]".into())));
        assert!(v["_error"].is_string() && e.is_some());
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_CONTEXT_CHARS));
        let (v, _) = alert_context(&Ok(Some(big)));
        assert!(
            v["_error"]
                .as_str()
                .unwrap()
                .contains("bigger than maximum of [204800]")
        );
    }

    #[test]
    fn text_and_destinations() {
        let s = spec(None);
        assert_eq!(text(&Ok(None), &s.description), "yaml description");
        assert_eq!(text(&Err(trap()), &s.description), "");
        assert_eq!(
            destinations(&s, &Ok(None)),
            (vec!["slack".to_string()], false)
        );
        assert_eq!(destinations(&s, &Ok(Some(vec![]))), (vec![], true));
        let many: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        assert_eq!(destinations(&s, &Ok(Some(many))).0.len(), 10);
    }
}
