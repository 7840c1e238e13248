//! Helpers for the filters' unit tests: filters from YAML, and checks of one condition on
//! `{"f": value}` events.

use serde_json::{Value, json};

use super::InlineFilters;

pub(super) fn parse(yaml: &str) -> Result<InlineFilters, String> {
    serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
}

pub(super) fn filters(yaml: &str) -> InlineFilters {
    parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// One `{KeyPath: f, Condition, Value}` filter; `operand` is the YAML after `Value: `
/// (or a full `Values:` line, or empty).
pub(super) fn single(condition: &str, operand: &str) -> InlineFilters {
    let operand = if operand.is_empty() || operand.starts_with("Values:") {
        operand.to_owned()
    } else {
        format!("Value: {operand}")
    };
    filters(&format!(
        "- KeyPath: f\n  Condition: {condition}\n  {operand}\n"
    ))
}

/// Asserts `condition` gives `expected[i]` on `{"f": values[i]}` and the negation on each.
pub(super) fn check_pair(positive: &str, negative: &str, operand: &str, cases: &[(Value, bool)]) {
    let pos = single(positive, operand);
    let neg = single(negative, operand);
    for (value, expected) in cases {
        let event = json!({ "f": value });
        assert_eq!(
            pos.matches(&event),
            *expected,
            "{positive} {operand} on {value}"
        );
        assert_eq!(
            neg.matches(&event),
            !*expected,
            "{negative} {operand} on {value}"
        );
    }
}

pub(super) fn check(condition: &str, operand: &str, cases: &[(Value, bool)]) {
    let f = single(condition, operand);
    for (value, expected) in cases {
        let event = json!({ "f": value });
        assert_eq!(
            f.matches(&event),
            *expected,
            "{condition} {operand} on {value}"
        );
    }
}

pub(super) fn single_path(path: &str, condition: &str, value: &str) -> InlineFilters {
    let value = if value.is_empty() {
        String::new()
    } else {
        format!("Value: {value}")
    };
    filters(&format!(
        "- KeyPath: '{path}'\n  Condition: {condition}\n  {value}\n"
    ))
}
