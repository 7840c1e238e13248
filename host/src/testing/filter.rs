//! [`SpecFilter`]: `rulehost test --filter KEY=V1,V2`, matched against a spec.

use crate::spec::Spec;

/// One `--filter KEY=V1,V2` (or `KEY!=V`): values are ORed and compared case-insensitively
/// with the spec's key; several filters are ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecFilter {
    key: String,
    values: Vec<String>,
    negate: bool,
}

/// The spec keys `--filter` understands.
pub const FILTER_KEYS: &[&str] = &[
    "RuleID",
    "DisplayName",
    "Severity",
    "LogTypes",
    "Tags",
    "Status",
    "Enabled",
    "AnalysisType",
];

impl std::str::FromStr for SpecFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, values, negate) = match s.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match s.split_once('=') {
                Some((k, v)) => (k, v, false),
                None => {
                    return Err(format!(
                        "expected KEY=VALUE[,VALUE] or KEY!=VALUE, got `{s}`"
                    ));
                }
            },
        };
        let Some(key) = FILTER_KEYS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(key.trim()))
        else {
            return Err(format!(
                "unknown filter key `{key}`; expected one of {}",
                FILTER_KEYS.join(", ")
            ));
        };
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!("filter `{s}` has no value"));
        }
        Ok(SpecFilter {
            key: (*key).to_owned(),
            values,
            negate,
        })
    }
}

impl SpecFilter {
    /// Whether the spec passes this filter.
    pub fn matches(&self, spec: &Spec) -> bool {
        let have: Vec<String> = match self.key.as_str() {
            "RuleID" => vec![spec.rule_id.clone()],
            "DisplayName" => spec.display_name.iter().cloned().collect(),
            "Severity" => vec![spec.severity.as_str().to_owned()],
            "LogTypes" => spec.log_types.clone(),
            "Tags" => spec.tags.clone(),
            "Status" => spec.status.iter().cloned().collect(),
            "Enabled" => vec![spec.enabled.to_string()],
            "AnalysisType" => vec!["rule".to_owned()],
            _ => Vec::new(),
        };
        let hit = have.iter().any(|h| self.values.contains(&h.to_lowercase()));
        hit != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec() -> Spec {
        Spec::parse(
            Path::new("r.yml"),
            "AnalysisType: rule\nFilename: r.wasm\nRuleID: A.B\nEnabled: true\n\
             LogTypes: [Databricks.Audit]\nSeverity: Medium\nTags: [Execution, Persistence]\n",
        )
        .unwrap()
    }

    #[test]
    fn filters_match_case_insensitively_and_invert() {
        let s = spec();
        let f = |t: &str| t.parse::<SpecFilter>().unwrap().matches(&s);
        assert!(f("RuleID=a.b"));
        assert!(f("ruleid=X,A.B"));
        assert!(!f("RuleID=X"));
        assert!(f("RuleID!=X"));
        assert!(!f("Tags!=execution"));
        assert!(f("Severity=medium"));
        assert!(f("LogTypes=Databricks.Audit"));
        assert!(
            "Nope=1"
                .parse::<SpecFilter>()
                .unwrap_err()
                .contains("unknown filter key `Nope`")
        );
        assert!("RuleID".parse::<SpecFilter>().is_err());
    }
}
