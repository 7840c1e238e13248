//! [`Evaluator`]: runs every rule over a stream of events and turns matches into alerts.
//!
//! Per event: read its time ([`Clock`]), close windows that ended, then for each rule call
//! `rule`; on a match call `dedup` (and `title` for the fallback) and `unique`, and, only
//! when the match opens a window, the functions whose values the alert keeps (title,
//! severity, alert context, description, reference, runbook, destinations). That is
//! Panther's "fields come from the window's first match", at a fraction of the calls.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::clock::{Clock, format_ms};
use crate::ruleset::LoadedRule;
use crate::runtime::{Output, RuleFailure, RuleInstance};
use crate::semantics::{self, Called};
use crate::spec::{Severity, Spec};
use crate::state::{AlertState, Closed, Hit, Namespace, WindowKey, alert_id};

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The input's name as given (`-` shows as `<stdin>`).
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = if &*self.file == "-" {
            "<stdin>"
        } else {
            &self.file
        };
        write!(f, "{file}:{}", self.line)
    }
}

/// Counts for one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Events for which `rule` returned true.
    pub matches: u64,
    /// Alerts written.
    pub alerts: u64,
    /// Events on which `rule` failed (trap, timeout, returned error).
    pub rule_errors: u64,
    /// Failed calls to the other functions, replaced by defaults.
    pub aux_errors: u64,
    /// Times the instance was replaced after a trap.
    pub restarts: u64,
}

/// What the alert keeps from the window's first match.
#[derive(Debug, Clone)]
struct Frozen {
    title: String,
    severity: Severity,
    alert_context: Value,
    description: String,
    reference: String,
    runbook: String,
    destinations: Vec<String>,
    suppressed: bool,
    /// For rule-error windows: the error of the first event.
    error: Option<String>,
}

/// One alert (or rule-error) record, as written to the output.
#[derive(Debug, Serialize)]
pub struct AlertRecord<'a> {
    /// `alert` or `rule_error`.
    pub kind: &'static str,
    /// Stable id: rule, namespace, dedup and window start.
    pub alert_id: String,
    /// `RuleID`.
    pub rule_id: &'a str,
    /// Upper-case severity.
    pub severity: &'static str,
    /// Title (from the window's first match).
    pub title: &'a str,
    /// Dedup string (the error kind for rule errors).
    pub dedup: &'a str,
    /// Earliest event time counted, RFC 3339.
    pub first_event_time: String,
    /// Latest event time counted, RFC 3339.
    pub last_event_time: String,
    /// Window start.
    pub window_start: String,
    /// Window end (exclusive).
    pub window_end: String,
    /// Time of the match that reached the threshold.
    pub created_at: String,
    /// Matches counted in the window.
    pub event_count: u64,
    /// Distinct unique values, when the rule defines `unique`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_count: Option<u64>,
    /// The threshold that was reached.
    pub threshold: u64,
    /// Alert context (from the window's first match).
    pub alert_context: &'a Value,
    /// Description.
    pub description: &'a str,
    /// Runbook.
    pub runbook: &'a str,
    /// Reference.
    pub reference: &'a str,
    /// Spec tags.
    pub tags: &'a [String],
    /// Spec reports (e.g. MITRE ATT&CK).
    pub reports: &'a std::collections::BTreeMap<String, Vec<String>>,
    /// Destinations (the rule's, else `OutputIds`).
    pub destinations: &'a [String],
    /// True when `destinations()` returned an empty list: do not deliver.
    pub suppressed: bool,
    /// File and line of the window's first event.
    pub first_event: String,
    /// For rule errors: what went wrong on the first event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

struct Slot {
    rule: LoadedRule,
    instance: Option<RuleInstance>,
    stats: RuleStats,
    /// Failures already printed to stderr (the rest are only counted).
    reported: u32,
}

/// At most this many failures per rule are printed; all are counted.
const MAX_REPORTED_FAILURES: u32 = 5;

impl Slot {
    fn instance(&mut self) -> Result<&mut RuleInstance, RuleFailure> {
        if self.instance.is_none() {
            let inst = self
                .rule
                .component
                .instantiate(Output::Discard)
                .map_err(|e| RuleFailure::Trap(format!("failed to instantiate: {e:#}")))?;
            self.instance = Some(inst);
        }
        Ok(self.instance.as_mut().expect("instantiated above"))
    }

    fn after_failure(&mut self, failure: &RuleFailure) {
        if failure.needs_fresh_instance() {
            self.instance = None;
            self.stats.restarts += 1;
        }
    }

    /// Calls an optional export; a failure is counted and the instance replaced.
    fn aux<T>(
        &mut self,
        event: &Arc<Value>,
        call: impl FnOnce(&mut RuleInstance, &Arc<Value>) -> Called<T>,
    ) -> Called<T> {
        let result = self.instance().and_then(|inst| call(inst, event));
        if let Err(f) = &result {
            self.stats.aux_errors += 1;
            self.after_failure(f);
        }
        result
    }

    fn freeze(&mut self, event: &Arc<Value>, title: &Called<String>) -> Frozen {
        let severity = self.aux(event, RuleInstance::call_severity);
        let context = self.aux(event, RuleInstance::call_alert_context);
        let description = self.aux(event, RuleInstance::call_description);
        let reference = self.aux(event, RuleInstance::call_reference);
        let runbook = self.aux(event, RuleInstance::call_runbook);
        let destinations = self.aux(event, RuleInstance::call_destinations);
        let spec = &self.rule.spec;
        let (severity_value, severity_error) = semantics::severity(spec, &severity);
        let (alert_context, context_error) = semantics::alert_context(&context);
        // Failed calls were counted by `aux`; invalid values returned are errors too.
        self.stats.aux_errors += u64::from(severity.is_ok() && severity_error.is_some())
            + u64::from(context.is_ok() && context_error.is_some());
        let (destinations, suppressed) = semantics::destinations(spec, &destinations);
        Frozen {
            title: semantics::title(spec, title),
            severity: severity_value,
            alert_context,
            description: semantics::text(&description, &spec.description),
            reference: semantics::text(&reference, &spec.reference),
            runbook: semantics::text(&runbook, &spec.runbook),
            destinations,
            suppressed,
            error: None,
        }
    }
}

/// Totals over a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Input files read.
    pub files: u64,
    /// Events evaluated.
    pub events: u64,
    /// Blank lines skipped.
    pub blank_lines: u64,
    /// Lines skipped as unreadable (bad JSON, not an object, too long, bad UTF-8, I/O).
    pub bad_lines: u64,
    /// Events without a readable time (they were given the newest time seen).
    pub events_without_time: u64,
    /// Per rule, in rule order: (RuleID, counts).
    pub rules: Vec<(String, RuleStats)>,
}

impl Summary {
    /// Whether anything was skipped or failed.
    pub fn has_errors(&self) -> bool {
        self.bad_lines > 0
            || self
                .rules
                .iter()
                .any(|(_, s)| s.rule_errors > 0 || s.aux_errors > 0)
    }

    /// Total alerts.
    pub fn alerts(&self) -> u64 {
        self.rules.iter().map(|(_, s)| s.alerts).sum()
    }
}

/// Evaluates events against a set of rules and writes alert records as JSON lines.
pub struct Evaluator<W: Write> {
    slots: Vec<Slot>,
    state: AlertState<Location, Frozen>,
    clock: Clock,
    out: W,
    summary: Summary,
    warn: Box<dyn FnMut(&str) + Send>,
}

impl<W: Write> Evaluator<W> {
    /// `warn` receives one line per reported problem (stderr in the CLI).
    pub fn new(
        rules: Vec<LoadedRule>,
        clock: Clock,
        out: W,
        warn: Box<dyn FnMut(&str) + Send>,
    ) -> Self {
        let slots = rules
            .into_iter()
            .map(|rule| Slot {
                rule,
                instance: None,
                stats: RuleStats::default(),
                reported: 0,
            })
            .collect();
        Evaluator {
            slots,
            state: AlertState::default(),
            clock,
            out,
            summary: Summary::default(),
            warn,
        }
    }

    /// Counts an input file.
    pub fn file_started(&mut self) {
        self.summary.files += 1;
    }

    /// Counts a blank line.
    pub fn blank_line(&mut self) {
        self.summary.blank_lines += 1;
    }

    /// Counts and reports a skipped line.
    pub fn bad_line(&mut self, location: &Location, reason: &dyn fmt::Display) {
        self.summary.bad_lines += 1;
        (self.warn)(&format!("`{location}`: skipped: {reason}"));
    }

    /// Evaluates one event.
    pub fn event(&mut self, location: &Location, event: Value) -> io::Result<()> {
        self.summary.events += 1;
        let time = match self.clock.event_time_ms(&event) {
            Some(t) => t,
            None => {
                self.summary.events_without_time += 1;
                self.state.watermark().unwrap_or(0)
            }
        };
        self.state.advance(time);
        self.write_closed()?;
        let event = Arc::new(event);
        for index in 0..self.slots.len() {
            self.evaluate(index, &event, time, location);
        }
        Ok(())
    }

    fn evaluate(&mut self, index: usize, event: &Arc<Value>, time: i64, location: &Location) {
        let slot = &mut self.slots[index];
        let matched = slot.instance().and_then(|inst| inst.rule(event));
        match matched {
            Ok(false) => return,
            Ok(true) => {}
            Err(failure) => {
                slot.stats.rule_errors += 1;
                slot.after_failure(&failure);
                if slot.reported < MAX_REPORTED_FAILURES {
                    slot.reported += 1;
                    (self.warn)(&format!(
                        "rule `{}` failed on `{location}`: {failure}",
                        slot.rule.spec.rule_id
                    ));
                }
                let key = WindowKey {
                    rule: index,
                    namespace: Namespace::Error,
                    dedup: failure.kind().to_owned(),
                };
                let hit = Hit {
                    time_ms: time,
                    location: location.clone(),
                    unique: None,
                };
                if !self.state.add(&key, hit.clone()) {
                    let spec = &slot.rule.spec;
                    let frozen = Frozen {
                        title: format!("{}: {failure}", spec.rule_id),
                        severity: spec.severity,
                        alert_context: Value::Object(Default::default()),
                        description: spec.description.clone(),
                        reference: spec.reference.clone(),
                        runbook: spec.runbook.clone(),
                        destinations: spec.output_ids.clone(),
                        suppressed: false,
                        error: Some(failure.to_string()),
                    };
                    // Rule errors alert at the first occurrence, within the rule's period.
                    self.state
                        .open(key, hit, spec.dedup_period_ms(), 1, false, frozen);
                }
                return;
            }
        }
        slot.stats.matches += 1;
        let title = slot.aux(event, RuleInstance::call_title);
        let dedup = slot.aux(event, RuleInstance::call_dedup);
        let dedup = semantics::dedup(&slot.rule.spec, &dedup, &title);
        let unique = slot.aux(event, RuleInstance::call_unique);
        // A rule defines `unique` when the call returned a value or failed; a failed call
        // counts the event but adds no value (Panther: `None`).
        let counts_unique = !matches!(unique, Ok(None));
        let key = WindowKey {
            rule: index,
            namespace: Namespace::Alert,
            dedup,
        };
        let hit = Hit {
            time_ms: time,
            location: location.clone(),
            unique: semantics::unique(&unique),
        };
        if !self.state.add(&key, hit.clone()) {
            let frozen = slot.freeze(event, &title);
            let spec = &slot.rule.spec;
            let (period, threshold) = (spec.dedup_period_ms(), spec.threshold);
            self.state
                .open(key, hit, period, threshold, counts_unique, frozen);
        }
    }

    fn write_closed(&mut self) -> io::Result<()> {
        for closed in self.state.take_closed() {
            self.write(&closed)?;
        }
        Ok(())
    }

    fn write(&mut self, closed: &Closed<Location, Frozen>) -> io::Result<()> {
        let slot = &mut self.slots[closed.key.rule];
        let spec: &Spec = &slot.rule.spec;
        let w = &closed.window;
        let f = &w.fields;
        let is_error = closed.key.namespace == Namespace::Error;
        let record = AlertRecord {
            kind: if is_error { "rule_error" } else { "alert" },
            alert_id: alert_id(
                &spec.rule_id,
                closed.key.namespace,
                &closed.key.dedup,
                w.start_ms,
            ),
            rule_id: &spec.rule_id,
            severity: f.severity.as_str(),
            title: &f.title,
            dedup: &closed.key.dedup,
            first_event_time: format_ms(w.first_event_ms),
            last_event_time: format_ms(w.last_event_ms),
            window_start: format_ms(w.start_ms),
            window_end: format_ms(w.end_ms),
            created_at: format_ms(w.created_ms.unwrap_or(w.start_ms)),
            event_count: w.event_count,
            unique_count: w.uniques.as_ref().map(|u| u.len() as u64),
            threshold: w.threshold,
            alert_context: &f.alert_context,
            description: &f.description,
            runbook: &f.runbook,
            reference: &f.reference,
            tags: &spec.tags,
            reports: &spec.reports,
            destinations: &f.destinations,
            suppressed: f.suppressed,
            first_event: w.first_location.to_string(),
            error: f.error.as_deref(),
        };
        serde_json::to_writer(&mut self.out, &record)?;
        self.out.write_all(b"\n")?;
        if !is_error {
            slot.stats.alerts += 1;
        }
        Ok(())
    }

    /// Closes every window, writes the remaining alerts and returns the totals.
    pub fn finish(mut self) -> io::Result<Summary> {
        self.write_closed()?;
        for closed in self.state.close_all() {
            self.write(&closed)?;
        }
        self.out.flush()?;
        let mut summary = self.summary;
        summary.rules = self
            .slots
            .into_iter()
            .map(|s| (s.rule.spec.rule_id.clone(), s.stats))
            .collect();
        Ok(summary)
    }
}
