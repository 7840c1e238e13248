//! What an alert is made of and how it is written: [`AlertFields`] (what a window keeps
//! from its first match) and the output records [`AlertRecord`] and [`SignalRecord`],
//! which a [`crate::sink::Sink`] writes. The evaluator and the state backends both use
//! them; neither depends on the other for them. Where an event came from is a source's
//! [`crate::source::Position`].

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::clock::format_ms;
use crate::spec::{Severity, Spec};
use crate::state::{Closed, Namespace, Weigh, alert_id};

/// What an alert keeps from its window's first match, after Panther's fallbacks.
#[derive(Debug, Clone)]
pub struct AlertFields {
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Alert context (a JSON object).
    pub alert_context: Value,
    /// Description.
    pub description: String,
    /// Reference.
    pub reference: String,
    /// Runbook.
    pub runbook: String,
    /// Destinations.
    pub destinations: Vec<String>,
    /// True when `destinations()` returned an empty list.
    pub suppressed: bool,
    /// For rule-error windows: the error of the first event.
    pub error: Option<String>,
}

impl Weigh for AlertFields {
    /// The capacity of its strings (what they hold in memory, which a string parsed or
    /// built by growing may exceed its length by).
    fn weigh(&self) -> u64 {
        let strings = [
            &self.title,
            &self.description,
            &self.reference,
            &self.runbook,
        ];
        let text: usize = strings.iter().map(|s| s.capacity()).sum::<usize>()
            + self
                .destinations
                .iter()
                .map(String::capacity)
                .sum::<usize>()
            + self.error.as_ref().map_or(0, String::capacity);
        text as u64 + json_weight(&self.alert_context)
    }
}

/// The bytes a JSON value holds: its strings' capacity, and a word per scalar and per
/// container.
fn json_weight(value: &Value) -> u64 {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(s) => s.capacity() as u64,
        Value::Array(items) => items.iter().map(json_weight).sum::<u64>() + 8,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.capacity() as u64 + json_weight(v))
                .sum::<u64>()
                + 8
        }
    }
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
    /// Position of the window's first event (`file:line` for files).
    pub first_event: String,
    /// For rule errors: what went wrong on the first event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl<'a> AlertRecord<'a> {
    /// The record of a closed window: an alert, or a rule error for the error namespace.
    /// `L` is where the window's first event came from ([`crate::source::Position`]), as
    /// its `first_event` shows it.
    pub fn from_closed<L: fmt::Display>(
        spec: &'a Spec,
        closed: &'a Closed<L, AlertFields>,
    ) -> Self {
        let w = &closed.window;
        let f = &w.fields;
        AlertRecord {
            kind: match closed.key.namespace {
                Namespace::Alert => "alert",
                Namespace::Error => "rule_error",
            },
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
        }
    }
}

/// A match of a `CreateAlert: false` rule: recorded, never alerted.
#[derive(Debug, Serialize)]
pub struct SignalRecord<'a> {
    /// Always `signal`.
    pub kind: &'static str,
    /// `RuleID`.
    pub rule_id: &'a str,
    /// The YAML severity.
    pub severity: &'static str,
    /// The event's time, RFC 3339.
    pub event_time: String,
    /// Position of the event (`file:line` for files).
    pub event_location: String,
    /// The event itself, for correlation downstream.
    pub event: &'a Value,
}
