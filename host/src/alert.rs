//! What an alert is made of and how it is written: [`AlertFields`] (what a window keeps
//! from its first match; [`WindowFields`]: until the window alerts, that match itself) and
//! the output records [`AlertRecord`] and [`SignalRecord`],
//! which a [`crate::sink::Sink`] writes. The evaluator and the state backends both use
//! them; neither depends on the other for them. Where an event came from is a source's
//! [`crate::source::Position`].

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::clock::format_ms;
use crate::event::Event;
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

/// What a window keeps for its alert. Its fields come from its first match, but they are
/// worth computing (one call per alert function) only once the window alerts: a window
/// whose threshold is 1 freezes them when it opens, any other keeps its first match until
/// the match that reaches the threshold, which freezes them from it, at its time. Most
/// windows of a threshold never reach it and cost no calls.
#[derive(Debug, Clone)]
pub enum WindowFields {
    /// The alert's fields.
    Frozen(AlertFields),
    /// The window has not alerted yet: the match to freeze the fields from.
    Pending(Opener),
}

/// A window's first match, kept until the window alerts ([`WindowFields::Pending`]).
#[derive(Debug, Clone)]
pub struct Opener {
    /// The event: its line, parsed again when the fields are frozen.
    pub event: OpenerEvent,
    /// The alert's title when the match came with it (the rule defines no `dedup`, so its
    /// title was called as the dedup string), after Panther's fallbacks.
    pub title: Option<String>,
}

/// A window's first event ([`Opener`]).
#[derive(Debug, Clone)]
pub enum OpenerEvent {
    /// Its line (JSON text).
    Line(Box<str>),
    /// An event that came parsed, without a line.
    Parsed(Arc<Event>),
}

impl OpenerEvent {
    /// The event as text: its line, or its value written as JSON.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            OpenerEvent::Line(line) => std::borrow::Cow::Borrowed(line),
            OpenerEvent::Parsed(event) => event.whole_value().to_string().into(),
        }
    }
}

impl WindowFields {
    /// The frozen fields, if they are.
    pub fn frozen(&self) -> Option<&AlertFields> {
        match self {
            WindowFields::Frozen(fields) => Some(fields),
            WindowFields::Pending(_) => None,
        }
    }
}

impl Weigh for WindowFields {
    /// The fields' bytes, or the first match's: its line (or its value), and its title.
    fn weigh(&self) -> u64 {
        match self {
            WindowFields::Frozen(fields) => fields.weigh(),
            WindowFields::Pending(opener) => {
                let event = match &opener.event {
                    OpenerEvent::Line(line) => line.len() as u64,
                    OpenerEvent::Parsed(event) => json_weight(event.whole_value()),
                };
                event + opener.title.as_ref().map_or(0, String::capacity) as u64
            }
        }
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
    /// its `first_event` shows it. The window alerted, so its fields are frozen.
    pub fn from_closed<L: fmt::Display>(
        spec: &'a Spec,
        closed: &'a Closed<L, WindowFields>,
    ) -> Self {
        let w = &closed.window;
        let f = w
            .fields
            .frozen()
            .expect("a window froze its fields when it alerted");
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
