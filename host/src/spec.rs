//! [`Spec`]: a rule's YAML metadata in Panther's format, validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Panther's default `Threshold`.
pub const DEFAULT_THRESHOLD: u64 = 1;
/// Panther's default `DedupPeriodMinutes`.
pub const DEFAULT_DEDUP_PERIOD_MINUTES: u64 = 60;

/// An alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// `INFO`
    Info,
    /// `LOW`
    Low,
    /// `MEDIUM`
    Medium,
    /// `HIGH`
    High,
    /// `CRITICAL`
    Critical,
}

impl Severity {
    /// Parses a severity in any case (`medium`, `Medium`, `MEDIUM`), as Panther's `.upper()`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "INFO" => Severity::Info,
            "LOW" => Severity::Low,
            "MEDIUM" => Severity::Medium,
            "HIGH" => Severity::High,
            "CRITICAL" => Severity::Critical,
            _ => return None,
        })
    }

    /// The upper-case name alerts carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Panther's schema: `Info`..`Critical`, or the upper-case forms.
        let ok = matches!(s.as_str(), "Info" | "Low" | "Medium" | "High" | "Critical")
            || s.chars().all(|c| c.is_ascii_uppercase());
        match Severity::parse(&s) {
            Some(sev) if ok => Ok(sev),
            _ => Err(serde::de::Error::custom(format!(
                "invalid Severity `{s}`: expected one of Info, Low, Medium, High, Critical"
            ))),
        }
    }
}

/// One `Tests:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TestCase {
    /// The test's name.
    pub name: String,
    /// Whether `rule` must return true.
    pub expected_result: bool,
    /// The event.
    pub log: serde_json::Value,
    /// Legacy Panther field, ignored (as Panther ignores it).
    #[serde(default)]
    pub log_type: Option<String>,
}

/// The YAML keys rulehost reads, in Panther's spelling. Unknown keys are errors, as in
/// Panther's schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawSpec {
    analysis_type: String,
    filename: String,
    #[serde(rename = "RuleID")]
    rule_id: String,
    #[serde(default)]
    display_name: Option<String>,
    enabled: bool,
    #[serde(default)]
    status: Option<String>,
    log_types: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    reports: BTreeMap<String, Vec<String>>,
    severity: Severity,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    runbook: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    summary_attributes: Vec<String>,
    #[serde(default)]
    threshold: Option<u64>,
    #[serde(default)]
    dedup_period_minutes: Option<u64>,
    #[serde(default)]
    output_ids: Vec<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    tests: Vec<TestCase>,
}

/// A validated rule spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The YAML file.
    pub path: PathBuf,
    /// `RuleID`.
    pub rule_id: String,
    /// `DisplayName`.
    pub display_name: Option<String>,
    /// `Enabled`.
    pub enabled: bool,
    /// `Status`.
    pub status: Option<String>,
    /// `Filename`: the component, as written.
    pub filename: String,
    /// `LogTypes`.
    pub log_types: Vec<String>,
    /// `Tags`.
    pub tags: Vec<String>,
    /// `Reports`.
    pub reports: BTreeMap<String, Vec<String>>,
    /// `Severity`.
    pub severity: Severity,
    /// `Description`.
    pub description: String,
    /// `Runbook`.
    pub runbook: String,
    /// `Reference`.
    pub reference: String,
    /// `SummaryAttributes`.
    pub summary_attributes: Vec<String>,
    /// `Threshold`, defaulted (0 or absent means 1).
    pub threshold: u64,
    /// `DedupPeriodMinutes`, defaulted (0 or absent means 60).
    pub dedup_period_minutes: u64,
    /// `OutputIds`.
    pub output_ids: Vec<String>,
    /// `Tests`.
    pub tests: Vec<TestCase>,
}

/// A spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("failed to read rule spec `{}`", path.display())]
    Read {
        /// The spec.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema; the source names line and column.
    #[error("invalid rule spec `{}`", path.display())]
    Parse {
        /// The spec.
        path: PathBuf,
        /// The YAML error, with its location.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A value is out of its allowed range.
    #[error("invalid rule spec `{}`: {message}", path.display())]
    Invalid {
        /// The spec.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// `Filename:` names a component that is not there.
    #[error("rule spec `{}`: component `{filename}` not found; looked for {}", path.display(), looked.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "))]
    MissingComponent {
        /// The spec.
        path: PathBuf,
        /// `Filename:` as written.
        filename: String,
        /// Every path tried.
        looked: Vec<PathBuf>,
    },
}

impl Spec {
    /// Reads and validates one spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        Spec::parse(path, &text)
    }

    /// Parses and validates spec text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = serde_yaml_ng::from_str(text).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| SpecError::Invalid {
            path: path.to_owned(),
            message,
        };
        if raw.analysis_type != "rule" {
            return Err(invalid(format!(
                "AnalysisType `{}` is not supported: rulehost runs `rule` specs",
                raw.analysis_type
            )));
        }
        if raw.rule_id.is_empty() || raw.rule_id.contains(['<', '>', '&', '"', '%']) {
            return Err(invalid(format!(
                "RuleID `{}` must be non-empty and must not contain <, >, &, \" or %",
                raw.rule_id
            )));
        }
        if !raw.filename.ends_with(".wasm") {
            return Err(invalid(format!(
                "Filename `{}` must name a WebAssembly component (`.wasm`)",
                raw.filename
            )));
        }
        if raw.log_types.is_empty() {
            return Err(invalid("LogTypes must list at least one log type".into()));
        }
        let mut names = std::collections::HashSet::new();
        for test in &raw.tests {
            if !names.insert(test.name.as_str()) {
                return Err(invalid(format!(
                    "Tests: duplicate test name `{}`",
                    test.name
                )));
            }
            if !test.log.is_object() {
                return Err(invalid(format!(
                    "Tests: `{}`: Log must be a mapping",
                    test.name
                )));
            }
        }
        let _ = raw.created_by;
        Ok(Spec {
            path: path.to_owned(),
            rule_id: raw.rule_id,
            display_name: raw.display_name,
            enabled: raw.enabled,
            status: raw.status,
            filename: raw.filename,
            log_types: raw.log_types,
            tags: raw.tags,
            reports: raw.reports,
            severity: raw.severity,
            description: raw.description.unwrap_or_default(),
            runbook: raw.runbook.unwrap_or_default(),
            reference: raw.reference.unwrap_or_default(),
            summary_attributes: raw.summary_attributes,
            threshold: raw
                .threshold
                .filter(|&t| t > 0)
                .unwrap_or(DEFAULT_THRESHOLD),
            dedup_period_minutes: raw
                .dedup_period_minutes
                .filter(|&m| m > 0)
                .unwrap_or(DEFAULT_DEDUP_PERIOD_MINUTES),
            output_ids: raw.output_ids,
            tests: raw.tests,
        })
    }

    /// Finds the component: `Filename` relative to the spec's folder, then in each of
    /// `search` in order.
    pub fn resolve_component(&self, search: &[PathBuf]) -> Result<PathBuf, SpecError> {
        let name = Path::new(&self.filename);
        let mut looked = Vec::new();
        let base = self.path.parent().unwrap_or(Path::new("."));
        for dir in std::iter::once(base).chain(search.iter().map(PathBuf::as_path)) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate);
        }
        Err(SpecError::MissingComponent {
            path: self.path.clone(),
            filename: self.filename.clone(),
            looked,
        })
    }

    /// The alert title when the rule defines no `title`: DisplayName, else RuleID.
    pub fn default_title(&self) -> &str {
        self.display_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.rule_id)
    }

    /// The window length in milliseconds.
    pub fn dedup_period_ms(&self) -> i64 {
        (self.dedup_period_minutes as i64).saturating_mul(60_000)
    }
}

/// Every `*.yml`/`*.yaml` file under `dir`, recursively, sorted by path.
pub fn find_specs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "AnalysisType: rule\nFilename: r.wasm\nRuleID: A.B\nEnabled: true\n\
                           LogTypes: [X]\nSeverity: Medium\n";

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("r.yml"), text)
    }

    fn chain(e: &SpecError) -> String {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(c) = src {
            s.push_str(&format!(": {c}"));
            src = c.source();
        }
        s
    }

    #[test]
    fn defaults_follow_panther() {
        let spec = parse(MINIMAL).unwrap();
        assert_eq!(spec.threshold, 1);
        assert_eq!(spec.dedup_period_minutes, 60);
        assert_eq!(spec.default_title(), "A.B");
        let zero = parse(&format!("{MINIMAL}Threshold: 0\nDedupPeriodMinutes: 0\n")).unwrap();
        assert_eq!((zero.threshold, zero.dedup_period_minutes), (1, 60));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse(&format!("{MINIMAL}Treshold: 5\n")).unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains("invalid rule spec `r.yml`"), "{msg}");
        assert!(msg.contains("unknown field `Treshold`"), "{msg}");
        assert!(msg.contains("line 7"), "{msg}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let err = parse("AnalysisType: rule\nFilename: r.wasm\nRuleID: A.B\nEnabled: true\n")
            .unwrap_err();
        assert!(
            chain(&err).contains("missing field `LogTypes`"),
            "{}",
            chain(&err)
        );
    }

    #[test]
    fn wrong_type_and_bad_severity_are_errors() {
        let err = parse(&MINIMAL.replace("Enabled: true", "Enabled: maybe")).unwrap_err();
        assert!(chain(&err).contains("line 4"), "{}", chain(&err));
        let err = parse(&MINIMAL.replace("Medium", "Severe")).unwrap_err();
        assert!(
            chain(&err).contains("invalid Severity `Severe`"),
            "{}",
            chain(&err)
        );
        assert!(parse(&MINIMAL.replace("Medium", "MEDIUM")).is_ok());
    }

    #[test]
    fn missing_component_lists_paths_tried() {
        let spec = parse(MINIMAL).unwrap();
        let err = spec
            .resolve_component(&[PathBuf::from("/nowhere")])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule spec `r.yml`: component `r.wasm` not found; looked for `r.wasm`, `/nowhere/r.wasm`"
        );
    }

    #[test]
    fn severity_parses_any_case() {
        assert_eq!(Severity::parse("hIgH"), Some(Severity::High));
        assert_eq!(Severity::parse("DEFAULT"), None);
    }
}
