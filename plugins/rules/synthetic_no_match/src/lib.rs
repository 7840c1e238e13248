//! Synthetic.NoMatch (benchmark filler, not a detection)
//!
//! ## What it detects
//! Nothing: it reads `actionName` and compares it with [`NEVER`], an action no Databricks
//! service emits. `make bench` loads this one component under 48 RuleIDs
//! (`Synthetic.NoMatch.01`..`48`) to measure what each extra loaded rule costs per event.
//!
//! ## Why it matters
//! A typical rule rejects almost every event after reading one field. This rule does exactly
//! that work (one `get` crossing that copies a string into the guest, one comparison) and
//! never alerts, so the many-rules benchmark measures per-rule overhead, not alerting.
//!
//! ## Example event
//! ```json
//! {"timestamp": 1704067200000, "serviceName": "clusters", "actionName": "create"}
//! ```

use rulehost_sdk::{Event, export_rule};

/// An `actionName` that never occurs in audit logs.
pub const NEVER: &str = "rulehost.synthetic.neverMatches";

fn rule(event: &Event) -> bool {
    event.get_str("actionName").as_deref() == Some(NEVER)
}

export_rule!(rule = rule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_impossible_action() {
        let event = |json: &str| Event::from_json(json).unwrap();
        assert!(!rule(&event(r#"{"actionName": "create"}"#)));
        assert!(!rule(&event(r#"{"actionName": null}"#)));
        assert!(!rule(&event("{}")));
        assert!(rule(&event(&format!(r#"{{"actionName": "{NEVER}"}}"#))));
    }
}
