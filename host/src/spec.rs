//! [`Spec`]: a rule's YAML metadata in Panther's format, validated.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::filters::InlineFilters;

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

/// One `Tests:` entry: Panther's fields plus optional assertions on the outputs
/// (pypanther's `expected_*`, which `pat test` lacks).
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
    /// Panther's `Mocks:`: names of a Python rule's module replaced for this test (refused
    /// for a component rule, which has no globals to patch).
    #[serde(default)]
    pub mocks: Vec<MockSpec>,
    /// The title the alert must have.
    #[serde(default)]
    pub expected_title: Option<String>,
    /// The dedup string the alert must have (after fallbacks).
    #[serde(default)]
    pub expected_dedup: Option<String>,
    /// The severity the alert must have (any case; after `DEFAULT` and fallbacks).
    #[serde(default)]
    pub expected_severity: Option<Severity>,
    /// The value `unique` must return.
    #[serde(default)]
    pub expected_unique: Option<String>,
    /// Keys the alert context must contain with these values (a subset match).
    #[serde(default)]
    pub expected_alert_context: Option<serde_json::Value>,
    /// The destinations the alert must have.
    #[serde(default)]
    pub expected_destinations: Option<Vec<String>>,
}

impl TestCase {
    /// Whether the case asserts anything beyond `ExpectedResult`.
    pub fn has_output_assertions(&self) -> bool {
        self.expected_title.is_some()
            || self.expected_dedup.is_some()
            || self.expected_severity.is_some()
            || self.expected_unique.is_some()
            || self.expected_alert_context.is_some()
            || self.expected_destinations.is_some()
    }
}

/// One of Panther's `Mocks:`: calling `ObjectName` in the rule's module returns
/// `ReturnValue`, as written in the YAML (a string stays a string, as in `pat test`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MockSpec {
    /// The name in the rule's module.
    pub object_name: String,
    /// What calling it returns.
    pub return_value: serde_json::Value,
}

/// What `Filename:` names: a WebAssembly component, or a Python rule's module that the
/// Python runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleLanguage {
    /// A `.wasm` component, one rule.
    Component,
    /// A `.py` module, run by the Python runtime.
    Python,
}

/// One `Scenarios:` entry: a sequence of events with times, and the alerts the rule's
/// windows must produce from them. Panther has no equivalent; thresholds, dedup periods
/// and `unique` need one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// Time that `+offset` event times count from; default `2024-01-01T00:00:00Z`.
    #[serde(default)]
    pub start: Option<serde_json::Value>,
    /// The events, in order.
    pub events: Vec<ScenarioEvent>,
    /// Every alert the run must write, in any order; no others may appear.
    pub expected_alerts: Vec<ExpectedAlert>,
}

/// One event of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ScenarioEvent {
    /// When it happened: RFC 3339, epoch milliseconds, or `+N[s|m|h|d]` after `Start`.
    /// Without it the event's own time fields are read, as `rulehost eval` does.
    #[serde(default)]
    pub time: Option<serde_json::Value>,
    /// Send the same event this many times (default 1), each `Every` apart.
    #[serde(default)]
    pub repeat: Option<u32>,
    /// Spacing of repeats, `N[s|m|h|d]` (default 0).
    #[serde(default)]
    pub every: Option<String>,
    /// The event.
    pub log: serde_json::Value,
}

/// What one expected alert must look like; absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ExpectedAlert {
    /// The dedup string.
    #[serde(default)]
    pub dedup: Option<String>,
    /// The title.
    #[serde(default)]
    pub title: Option<String>,
    /// The severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Matches counted in the window.
    #[serde(default)]
    pub event_count: Option<u64>,
    /// Distinct unique values counted.
    #[serde(default)]
    pub unique_count: Option<u64>,
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
    create_alert: Option<bool>,
    #[serde(default)]
    inline_filters: Option<InlineFilters>,
    #[serde(default)]
    tests: Vec<TestCase>,
    #[serde(default)]
    scenarios: Vec<Scenario>,
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
    /// `CreateAlert` (default true): false makes the rule a signal: its matches are
    /// recorded, but no alert is raised.
    pub create_alert: bool,
    /// `InlineFilters`: evaluated by the host before `rule`; an event they rule out is no
    /// match.
    pub inline_filters: Option<InlineFilters>,
    /// `Tests`.
    pub tests: Vec<TestCase>,
    /// `Scenarios` (rulehost's multi-event tests).
    pub scenarios: Vec<Scenario>,
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
    /// A spec of another `AnalysisType` than `rule` (Panther's `global` helpers, data
    /// models, policies, ...).
    #[error(
        "rule spec `{}`: AnalysisType `{analysis_type}` is not supported: rulehost runs `rule` specs",
        path.display()
    )]
    NotARule {
        /// The spec.
        path: PathBuf,
        /// Its `AnalysisType`.
        analysis_type: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid rule spec `{}`: {message}", path.display())]
    Invalid {
        /// The spec.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// `Filename:` leads, through a symbolic link, out of the folder it was found in.
    #[error(
        "rule spec `{}`: component `{filename}` is `{}` through a symbolic link, outside `{}` where it was found",
        path.display(),
        resolved.display(),
        folder.display()
    )]
    OutsideFolder {
        /// The spec.
        path: PathBuf,
        /// `Filename:` as written.
        filename: String,
        /// The file the link leads to.
        resolved: PathBuf,
        /// The folder `Filename:` was found in.
        folder: PathBuf,
    },
    /// The component's real path could not be found (it vanished, or a folder is
    /// unreadable).
    #[error("rule spec `{}`: failed to resolve component `{}`", path.display(), component.display())]
    Resolve {
        /// The spec.
        path: PathBuf,
        /// The component file found.
        component: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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
        /// `AnalysisType` alone: other types have other keys, which `RawSpec` refuses.
        #[derive(Deserialize)]
        struct Kind {
            #[serde(rename = "AnalysisType")]
            analysis_type: Option<String>,
        }
        if let Ok(Kind {
            analysis_type: Some(analysis_type),
        }) = serde_yaml_ng::from_str(text)
            && analysis_type != "rule"
        {
            return Err(SpecError::NotARule {
                path: path.to_owned(),
                analysis_type,
            });
        }
        let raw: RawSpec = serde_yaml_ng::from_str(text).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| SpecError::Invalid {
            path: path.to_owned(),
            message,
        };
        if raw.analysis_type != "rule" {
            return Err(SpecError::NotARule {
                path: path.to_owned(),
                analysis_type: raw.analysis_type,
            });
        }
        if raw.rule_id.is_empty() || raw.rule_id.contains(['<', '>', '&', '"', '%']) {
            return Err(invalid(format!(
                "RuleID `{}` must be non-empty and must not contain <, >, &, \" or %",
                raw.rule_id
            )));
        }
        let language = match raw.filename.rsplit_once('.').map(|(_, ext)| ext) {
            Some("wasm") => RuleLanguage::Component,
            Some("py") => RuleLanguage::Python,
            _ => {
                return Err(invalid(format!(
                    "Filename `{}` must name a WebAssembly component (`.wasm`) or a Python \
                     rule (`.py`)",
                    raw.filename
                )));
            }
        };
        // A third-party spec must not reach for components elsewhere on the machine
        // (issue 11): `Filename:` stays below the folders it is looked up in.
        if Path::new(&raw.filename)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(invalid(format!(
                "Filename `{}` must be a relative path inside the spec's folder or a \
                 components folder: no absolute path and no `..`",
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
            if !test.mocks.is_empty() && language == RuleLanguage::Component {
                return Err(invalid(format!(
                    "Tests: `{}`: Mocks are not supported for a component rule: it has no \
                     globals to patch; put the value in the Log instead",
                    test.name
                )));
            }
            if test
                .expected_alert_context
                .as_ref()
                .is_some_and(|c| !c.is_object())
            {
                return Err(invalid(format!(
                    "Tests: `{}`: ExpectedAlertContext must be a mapping",
                    test.name
                )));
            }
        }
        for scenario in &raw.scenarios {
            if !names.insert(scenario.name.as_str()) {
                return Err(invalid(format!(
                    "Scenarios: duplicate test name `{}`",
                    scenario.name
                )));
            }
            let bad = |what: String| invalid(format!("Scenarios: `{}`: {what}", scenario.name));
            if let Some(start) = &scenario.start
                && crate::clock::parse_time_ms(start).is_none()
            {
                return Err(bad(format!(
                    "Start `{start}` is not RFC 3339 or epoch milliseconds"
                )));
            }
            for event in &scenario.events {
                if !event.log.is_object() {
                    return Err(bad("Log must be a mapping".into()));
                }
                if let Some(time) = &event.time
                    && crate::clock::parse_time_ms(time).is_none()
                    && time
                        .as_str()
                        .and_then(crate::clock::parse_offset_ms)
                        .is_none()
                {
                    return Err(bad(format!(
                        "Time `{time}` is not RFC 3339, epoch milliseconds or +N[s|m|h|d]"
                    )));
                }
                if let Some(every) = &event.every
                    && crate::clock::parse_offset_ms(every).is_none()
                {
                    return Err(bad(format!("Every `{every}` is not N[s|m|h|d]")));
                }
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
            create_alert: raw.create_alert.unwrap_or(true),
            inline_filters: raw.inline_filters.filter(|f| !f.is_empty()),
            tests: raw.tests,
            scenarios: raw.scenarios,
        })
    }

    /// Finds the component: `Filename` relative to the spec's folder, then in each of
    /// `search` in order. The file found must lie inside the folder it was found in once
    /// symbolic links are followed ([`SpecError::OutsideFolder`]); [`Spec::parse`] already
    /// refused absolute paths and `..`.
    pub fn resolve_component(&self, search: &[PathBuf]) -> Result<PathBuf, SpecError> {
        let name = Path::new(&self.filename);
        let mut looked = Vec::new();
        let base = self.path.parent().unwrap_or(Path::new("."));
        for dir in std::iter::once(base).chain(search.iter().map(PathBuf::as_path)) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                self.check_inside(&candidate, dir)?;
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

    /// Refuses a `component` that a symbolic link (of it or of a folder below `folder`)
    /// takes out of `folder`. Links inside it are fine; so is a `folder` that is itself a
    /// link, since both sides are compared with their links followed.
    fn check_inside(&self, component: &Path, folder: &Path) -> Result<(), SpecError> {
        let canonical = |p: &Path| {
            std::fs::canonicalize(p).map_err(|source| SpecError::Resolve {
                path: self.path.clone(),
                component: component.to_owned(),
                source,
            })
        };
        let resolved = canonical(component)?;
        if resolved.starts_with(canonical(folder)?) {
            Ok(())
        } else {
            Err(SpecError::OutsideFolder {
                path: self.path.clone(),
                filename: self.filename.clone(),
                resolved,
                folder: folder.to_owned(),
            })
        }
    }

    /// What `Filename:` names: a component, or a Python module.
    pub fn language(&self) -> RuleLanguage {
        match self.filename.ends_with(".py") {
            true => RuleLanguage::Python,
            false => RuleLanguage::Component,
        }
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

/// A rule folder's symbolic links would make [`find_specs`] read a folder twice: the error
/// inside the [`std::io::Error`] it returns.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// A link leads back to a folder that contains it: following it would never end.
    #[error("symlink loop at `{}`: it leads back to `{}`", path.display(), target.display())]
    Loop {
        /// The link, as reached from the rule folder.
        path: PathBuf,
        /// The folder it leads back to, as first reached.
        target: PathBuf,
    },
    /// A link leads to a folder already read by another path: its specs would load twice.
    #[error(
        "`{}` is the folder `{}` again, through a symbolic link: each folder is read once",
        path.display(),
        first.display()
    )]
    Twice {
        /// The second path.
        path: PathBuf,
        /// The path the folder was first read by.
        first: PathBuf,
    },
}

/// What tells two folders apart, whatever path leads to them: (device, inode).
#[cfg(unix)]
type FolderId = (u64, u64);
/// What tells two folders apart, whatever path leads to them: the canonical path.
#[cfg(not(unix))]
type FolderId = PathBuf;

#[cfg(unix)]
fn folder_id(path: &Path) -> std::io::Result<FolderId> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn folder_id(path: &Path) -> std::io::Result<FolderId> {
    std::fs::canonicalize(path)
}

/// Every `*.yml`/`*.yaml` file under `dir`, recursively, sorted by path.
///
/// Symbolic links are followed, to spec files and to folders, so a rule folder may link in a
/// shared pack of specs. Each folder is read once: a link back to a folder that contains it
/// (a loop, which would never end) or to a folder already read by another path (whose specs
/// would load twice) is an error, a [`FolderError`] naming the link (issue 11). Folders are
/// read in path order, so the same tree always gives the same error.
pub fn find_specs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut seen: std::collections::HashMap<FolderId, PathBuf> = Default::default();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        if let Some(first) = seen.insert(folder_id(&d)?, d.clone()) {
            // Depth first: every path under `first` is read before any other, so a path
            // that reaches its folder again from below it has gone round a loop.
            let error = if d.starts_with(&first) {
                FolderError::Loop {
                    path: d,
                    target: first,
                }
            } else {
                FolderError::Twice { path: d, first }
            };
            return Err(std::io::Error::other(error));
        }
        let mut entries = std::fs::read_dir(&d)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        entries.sort();
        let mut folders = Vec::new();
        for path in entries {
            if path.is_dir() {
                folders.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                found.push(path);
            }
        }
        // Popped in path order.
        stack.extend(folders.into_iter().rev());
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
    fn filename_must_stay_below_its_folders() {
        for bad in [
            "/etc/x.wasm",
            "../x.wasm",
            "sub/../../x.wasm",
            "sub/../x.wasm",
        ] {
            let err = parse(&MINIMAL.replace("r.wasm", bad)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid rule spec `r.yml`: Filename `{bad}` must be a relative path inside \
                     the spec's folder or a components folder: no absolute path and no `..`"
                )
            );
        }
        for good in ["sub/dir/x.wasm", "./x.wasm", "x..y.wasm"] {
            assert_eq!(
                parse(&MINIMAL.replace("r.wasm", good)).unwrap().filename,
                good
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_component_linked_from_outside_its_folder_is_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (rules, comps, outside) = (
            dir.path().join("rules"),
            dir.path().join("comps"),
            dir.path().join("outside"),
        );
        for d in [
            &rules,
            &comps,
            &outside.join("pack"),
            &rules.join("sub/dir"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            outside.join("x.wasm"),
            outside.join("pack/p.wasm"),
            rules.join("sub/dir/z.wasm"),
        ] {
            std::fs::write(f, b"").unwrap();
        }
        let spec_in = |folder: &Path, filename: &str| {
            Spec::parse(&folder.join("r.yml"), &MINIMAL.replace("r.wasm", filename)).unwrap()
        };
        let search = [comps.clone()];
        // Plain files and links that stay inside: found where they are.
        let spec = spec_in(&rules, "sub/dir/z.wasm");
        assert_eq!(
            spec.resolve_component(&search).unwrap(),
            rules.join("sub/dir/z.wasm")
        );
        symlink("sub/dir/z.wasm", rules.join("alias.wasm")).unwrap();
        let spec = spec_in(&rules, "alias.wasm");
        assert_eq!(
            spec.resolve_component(&search).unwrap(),
            rules.join("alias.wasm")
        );
        // A linked folder of specs keeps its components beside them.
        symlink(outside.join("pack"), rules.join("pack")).unwrap();
        let spec = spec_in(&rules.join("pack"), "p.wasm");
        assert_eq!(
            spec.resolve_component(&search).unwrap(),
            rules.join("pack/p.wasm")
        );
        // A link to a file outside, next to the spec or in a components folder: refused.
        symlink(outside.join("x.wasm"), rules.join("x.wasm")).unwrap();
        let spec = spec_in(&rules, "x.wasm");
        let err = spec.resolve_component(&search).unwrap_err();
        let real = std::fs::canonicalize(outside.join("x.wasm")).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "rule spec `{}`: component `x.wasm` is `{}` through a symbolic link, outside \
                 `{}` where it was found",
                rules.join("r.yml").display(),
                real.display(),
                rules.display()
            )
        );
        std::fs::remove_file(rules.join("x.wasm")).unwrap();
        symlink(&outside, comps.join("linked")).unwrap();
        let spec = spec_in(&rules, "linked/x.wasm");
        assert!(matches!(
            spec.resolve_component(&search),
            Err(SpecError::OutsideFolder { folder, .. }) if folder == comps
        ));
    }

    #[test]
    fn mocks_are_refused_with_a_reason() {
        let text = format!(
            "{MINIMAL}Tests:\n  - Name: t\n    ExpectedResult: true\n    Log: {{a: 1}}\n    \
             Mocks:\n      - objectName: f\n        returnValue: x\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("Mocks are not supported"), "{err}");
        let python = text.replace("Filename: r.wasm", "Filename: r.py");
        let spec = parse(&python).unwrap();
        assert_eq!(spec.language(), RuleLanguage::Python);
        assert_eq!(spec.tests[0].mocks[0].object_name, "f");
        assert_eq!(spec.tests[0].mocks[0].return_value, serde_json::json!("x"));
    }

    #[test]
    fn other_analysis_types_are_told_apart() {
        let global = "AnalysisType: global\nFilename: h.py\nGlobalID: h\n";
        assert!(matches!(
            parse(global),
            Err(SpecError::NotARule { analysis_type, .. }) if analysis_type == "global"
        ));
    }

    #[test]
    fn assertions_and_scenarios_parse_and_validate() {
        let text = format!(
            "{MINIMAL}CreateAlert: false\nTests:\n  - Name: t\n    ExpectedResult: true\n    \
             Log: {{a: 1}}\n    ExpectedTitle: x\n    ExpectedSeverity: HIGH\n    \
             ExpectedAlertContext: {{k: v}}\nScenarios:\n  - Name: s\n    Events:\n      \
             - Time: +5m\n        Repeat: 3\n        Every: 1h\n        Log: {{a: 1}}\n    \
             ExpectedAlerts:\n      - EventCount: 3\n"
        );
        let spec = parse(&text).unwrap();
        assert!(!spec.create_alert);
        assert_eq!(spec.tests[0].expected_severity, Some(Severity::High));
        assert!(spec.tests[0].has_output_assertions());
        assert_eq!(spec.scenarios[0].events[0].repeat, Some(3));
        let bad = text.replace("+5m", "+5 minutes");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("Time `\"+5 minutes\"`"), "{err}");
        let dup = text.replace("Name: s", "Name: t");
        assert!(
            parse(&dup)
                .unwrap_err()
                .to_string()
                .contains("duplicate test name `t`")
        );
    }

    /// Runs `f` on another thread and fails the test if it takes longer than 20 s: the
    /// walks below would never end without loop detection.
    fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("still walking after 20 s")
    }

    #[cfg(unix)]
    #[test]
    fn find_specs_stops_at_a_symlink_loop() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        std::fs::create_dir_all(root.join("pack/sub")).unwrap();
        std::fs::write(root.join("pack/sub/r.yml"), MINIMAL).unwrap();
        // Two links back up: followed blindly, they make 2^40 paths (Linux stops resolving
        // a path after 40 links).
        symlink("..", root.join("pack/sub/up")).unwrap();
        symlink("../..", root.join("pack/sub/top")).unwrap();
        let walk = within_deadline({
            let root = root.clone();
            move || find_specs(&root)
        });
        let err = walk.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "symlink loop at `{}`: it leads back to `{}`",
                root.join("pack/sub/top").display(),
                root.display()
            )
        );
        assert!(matches!(
            err.get_ref().and_then(|e| e.downcast_ref::<FolderError>()),
            Some(FolderError::Loop { .. })
        ));
        // One link back up: followed blindly, the spec is found 40 times over.
        std::fs::remove_file(root.join("pack/sub/top")).unwrap();
        let err = find_specs(&root).unwrap_err().to_string();
        assert!(err.starts_with("symlink loop at `"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn find_specs_follows_links_to_specs_and_folders_once() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (root, shared) = (dir.path().join("rules"), dir.path().join("shared"));
        std::fs::create_dir_all(root.join("own")).unwrap();
        std::fs::create_dir_all(shared.join("pack")).unwrap();
        std::fs::write(root.join("own/a.yml"), MINIMAL).unwrap();
        std::fs::write(shared.join("pack/b.yaml"), MINIMAL).unwrap();
        std::fs::write(shared.join("c.yml"), MINIMAL).unwrap();
        symlink(shared.join("pack"), root.join("pack")).unwrap();
        symlink(shared.join("c.yml"), root.join("c.yml")).unwrap();
        assert_eq!(
            find_specs(&root).unwrap(),
            [
                root.join("c.yml"),
                root.join("own/a.yml"),
                root.join("pack/b.yaml")
            ]
        );
        // A second link to the linked folder: its specs would load twice.
        symlink(shared.join("pack"), root.join("own/again")).unwrap();
        assert_eq!(
            find_specs(&root).unwrap_err().to_string(),
            format!(
                "`{}` is the folder `{}` again, through a symbolic link: each folder is read once",
                root.join("pack").display(),
                root.join("own/again").display()
            )
        );
    }

    #[test]
    fn severity_parses_any_case() {
        assert_eq!(Severity::parse("hIgH"), Some(Severity::High));
        assert_eq!(Severity::parse("DEFAULT"), None);
    }
}
