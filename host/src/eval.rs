//! [`Evaluator`]: runs every rule over a stream of events and turns matches into alerts.
//!
//! Per event: read its time ([`Clock`]), close windows that ended, then for each rule call
//! `rule`; on a match call `dedup` (and `title` for the fallback) and `unique`, and, only
//! when the match opens a window, the functions whose values the alert keeps (title,
//! severity, alert context, description, reference, runbook, destinations). That is
//! Panther's "fields come from the window's first match", at a fraction of the calls.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;

use crate::clock::{Clock, format_ms};
use crate::filters::FilterIndex;
use crate::input::{BadLine, Line, LineBatch, parse_line};
use crate::ruleset::LoadedRule;
use crate::runtime::{BatchFailure, Matched, Output, RuleFailure, RuleInstance};
use crate::semantics::{self, Called};
use crate::spec::{Severity, Spec};
use crate::state::{AlertState, Closed, Hit, Namespace, WindowKey, alert_id};
use crate::store::{AtEnd, Checkpointer, Restored, StoreError};

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
    /// Events ruled out by the spec's `InlineFilters` before `rule` was called.
    pub filtered: u64,
    /// Signal records written (matches of a `CreateAlert: false` rule).
    pub signals: u64,
    /// Alerts written.
    pub alerts: u64,
    /// Events on which `rule` failed (trap, timeout, returned error).
    pub rule_errors: u64,
    /// Failed calls to the other functions, replaced by defaults.
    pub aux_errors: u64,
    /// Times the instance was replaced after a trap.
    pub restarts: u64,
    /// Where the rule was quarantined ([`Quarantine`]), if it was.
    pub quarantined_at: Option<Location>,
    /// Events the rule was not called on because it was quarantined.
    pub skipped: u64,
}

/// When a failing rule stops being called, so that a broken or hostile rule cannot spend
/// a deadline on every event of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantine {
    /// Never: the rule is called on every event however often it fails.
    Never,
    /// After this many consecutive events on which a call into the rule failed (trap,
    /// timeout, resource limit, returned error); an event whose calls all succeed resets
    /// the count. The rule is then skipped for the rest of the run.
    After(NonZeroU32),
}

/// The default of [`Quarantine::After`] (`--quarantine-after`).
pub const DEFAULT_QUARANTINE_AFTER: u32 = 10;

impl Quarantine {
    /// `After(n)`, or `Never` for 0 (the CLI's `--quarantine-after 0`).
    pub fn after(n: u32) -> Self {
        NonZeroU32::new(n).map_or(Quarantine::Never, Quarantine::After)
    }
}

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine::after(DEFAULT_QUARANTINE_AFTER)
    }
}

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

impl<'a> AlertRecord<'a> {
    /// The record of a closed window: an alert, or a rule error for the error namespace.
    pub fn from_closed(spec: &'a Spec, closed: &'a Closed<Location, AlertFields>) -> Self {
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
    /// File and line of the event.
    pub event_location: String,
    /// The event itself, for correlation downstream.
    pub event: &'a Value,
}

/// One rule's instance inside a worker, and what the worker learned about it.
struct Slot {
    rule: LoadedRule,
    instance: Option<RuleInstance>,
    /// Whether `title`, `dedup`, `unique` are defined, learned from the first call: a
    /// function's definedness may not depend on the event (wit/rulehost.wit), so an
    /// undefined function is never called again.
    defines_title: Option<bool>,
    defines_dedup: Option<bool>,
    defines_unique: Option<bool>,
    /// Whether events may go to `evaluate-batch`: alert rules, until a batch reads a clock
    /// or a random number (whose values depend on the call), times out or hits a limit.
    batchable: bool,
}

impl Slot {
    fn new(rule: LoadedRule) -> Self {
        Slot {
            instance: None,
            defines_title: None,
            defines_dedup: None,
            defines_unique: None,
            batchable: rule.spec.create_alert,
            rule,
        }
    }

    fn instance(&mut self, time_ms: i64) -> Result<&mut RuleInstance, RuleFailure> {
        if self.instance.is_none() {
            let inst = self
                .rule
                .component
                .instantiate(Output::Discard)
                .map_err(|e| RuleFailure::Trap(format!("failed to instantiate: {e:#}")))?;
            self.instance = Some(inst);
        }
        let inst = self.instance.as_mut().expect("instantiated above");
        inst.set_event_time(time_ms);
        Ok(inst)
    }

    /// Calls one export; a failure that poisons the Store drops the instance.
    fn call<T>(
        &mut self,
        event: &Arc<Value>,
        time_ms: i64,
        call: impl FnOnce(&mut RuleInstance, &Arc<Value>) -> Result<T, RuleFailure>,
    ) -> Result<T, RuleFailure> {
        let result = self.instance(time_ms).and_then(|inst| call(inst, event));
        if result
            .as_ref()
            .is_err_and(RuleFailure::needs_fresh_instance)
        {
            self.instance = None;
        }
        result
    }

    /// Calls an optional export unless it is known to be undefined.
    fn optional(
        &mut self,
        defined: fn(&mut Slot) -> &mut Option<bool>,
        event: &Arc<Value>,
        time_ms: i64,
        call: fn(&mut RuleInstance, &Arc<Value>) -> Called<String>,
    ) -> Called<String> {
        if *defined(self) == Some(false) {
            return Ok(None);
        }
        let result = self.call(event, time_ms, call);
        if let Ok(value) = &result {
            *defined(self) = Some(value.is_some());
        }
        result
    }

    /// Runs the rule on one event: `rule`, then on a match what every match needs
    /// (`dedup`, `unique`, and `title` when it stands in for an undefined `dedup`).
    /// The caller has applied the rule's `InlineFilters` ([`Worker::defer`]).
    fn evaluate(&mut self, event: &Arc<Value>, time_ms: i64) -> Outcome {
        if self.rule.spec.create_alert {
            // The fast path: one call instead of one per function.
            // On a failure, which function failed is unknown: `self.call` dropped the
            // instance, and the calls below, one by one on a fresh instance, attribute it.
            if let Ok(result) = self.call(event, time_ms, RuleInstance::evaluate) {
                return evaluated(result);
            }
        }
        match self.call(event, time_ms, RuleInstance::rule) {
            Ok(false) => Outcome::NoMatch,
            Err(failure) => Outcome::Failed(Box::new(failure)),
            Ok(true) if !self.rule.spec.create_alert => Outcome::Signal,
            Ok(true) => {
                let dedup = self.optional(
                    |s| &mut s.defines_dedup,
                    event,
                    time_ms,
                    RuleInstance::call_dedup,
                );
                let title = match dedup {
                    Ok(None) => Some(self.optional(
                        |s| &mut s.defines_title,
                        event,
                        time_ms,
                        RuleInstance::call_title,
                    )),
                    _ => None,
                };
                let unique = self.optional(
                    |s| &mut s.defines_unique,
                    event,
                    time_ms,
                    RuleInstance::call_unique,
                );
                Outcome::Match(Box::new(MatchInfo {
                    dedup,
                    title,
                    unique,
                }))
            }
        }
    }

    /// Runs the rule on `events` (each has passed its filters), appending one outcome per
    /// event to `out`: one `evaluate-batch` call when the rule allows it, else, and when
    /// that call fails, [`Slot::evaluate`] on each event. Rules are pure, so the outcomes
    /// are the same either way; a batch only saves the cost of a call per event.
    fn evaluate_many(&mut self, events: &[Arc<Value>], times: &[i64], out: &mut Vec<Outcome>) {
        if self.batchable && events.len() > 1 {
            let batch = self
                .instance(times[0])
                .map_err(BatchFailure::Call)
                .and_then(|inst| inst.evaluate_batch(events));
            match batch {
                Ok(results) => {
                    out.extend(results.into_iter().map(evaluated));
                    return;
                }
                Err(BatchFailure::Call(failure)) => {
                    if failure.needs_fresh_instance() {
                        self.instance = None;
                    }
                    // A rule slow or big enough to hit a limit on a batch gains little from
                    // batching, and would waste a batch's work on every later one.
                    if matches!(
                        failure,
                        RuleFailure::Timeout | RuleFailure::ResourceLimit(_)
                    ) {
                        self.batchable = false;
                    }
                }
                Err(BatchFailure::ReadClockOrRandom) => {
                    self.batchable = false;
                    self.instance = None;
                }
                Err(BatchFailure::TooMany) => {}
            }
        }
        for (event, &time) in events.iter().zip(times) {
            out.push(self.evaluate(event, time));
        }
    }
}

/// The outcome of one event's `evaluate` result.
fn evaluated(result: Result<Option<Matched>, String>) -> Outcome {
    match result {
        Ok(None) => Outcome::NoMatch,
        Err(message) => Outcome::Failed(Box::new(RuleFailure::Returned(message))),
        Ok(Some(m)) => {
            let title = m.dedup.is_none().then_some(Ok(m.title));
            Outcome::Match(Box::new(MatchInfo {
                dedup: Ok(m.dedup),
                title,
                unique: Ok(m.unique),
            }))
        }
    }
}

/// Events of a line batch whose rule calls are gathered, to be made one batch per rule
/// ([`Worker::flush`]).
#[derive(Default)]
struct Pending {
    /// Each event, its call time, and where its outcomes start in the batch's outcomes.
    events: Vec<(Arc<Value>, i64, usize)>,
    /// Per rule: the events (indices into `events`) that passed its filters.
    calls: Vec<Vec<usize>>,
}

/// Events gathered per `evaluate-batch` call at most: enough to spread a call's fixed
/// cost thin, few enough that the events stay in cache and a failed batch costs little.
const BATCH_EVENTS: usize = 32;

/// What one rule made of one event, in a worker.
enum Outcome {
    /// Ruled out by `InlineFilters`; the rule was not called.
    Filtered,
    /// `rule` returned false.
    NoMatch,
    /// `rule` failed (boxed, like a match, to keep every outcome small: a worker sends one
    /// per rule per event).
    Failed(Box<RuleFailure>),
    /// A match of a `CreateAlert: false` rule.
    Signal,
    /// A match.
    Match(Box<MatchInfo>),
    /// Not evaluated: the rule is quarantined.
    Skipped,
}

/// The calls every match needs. `title` is `None` when it was not needed (the rule's
/// `dedup` gave a value): the alert stage calls it only if the match opens a window.
struct MatchInfo {
    dedup: Called<String>,
    title: Option<Called<String>>,
    unique: Called<String>,
}

impl MatchInfo {
    fn failures(&self) -> impl Iterator<Item = &RuleFailure> {
        [Some(&self.dedup), self.title.as_ref(), Some(&self.unique)]
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_ref().err())
    }
}

/// One input item after a worker has seen it.
enum Evaluated {
    /// An event and each rule's outcome, in rule order.
    Event {
        location: Location,
        event: Arc<Value>,
        time: Option<i64>,
        outcomes: Vec<Outcome>,
    },
    /// A batch of lines of one file.
    Lines(EvaluatedLines),
    /// A line that was not an event.
    Bad { location: Location, reason: String },
    /// A blank line.
    Blank(Location),
    /// A new input file.
    FileStarted,
}

/// A [`LineBatch`] after a worker has seen it. The parsed events were dropped on the
/// worker that allocated them; the stage parses a line again in the rare case it needs
/// the event (a match that opens a window, a signal).
struct EvaluatedLines {
    file: Arc<str>,
    batch: LineBatch,
    items: Vec<LineItem>,
    /// Each event's outcomes, one per rule, events in order.
    outcomes: Vec<Outcome>,
}

/// What a worker made of one line of a batch.
enum LineItem {
    /// An event: index of its line in the batch, and its time if it had one.
    Event { line: usize, time: Option<i64> },
    /// A blank line.
    Blank { number: u64 },
    /// A line that was not an event.
    Bad { number: u64, reason: String },
}

/// The event the stage hands to rule calls: parsed already, or its line, parsed on first
/// use.
struct StageEvent<'a> {
    line: &'a [u8],
    parsed: Option<Arc<Value>>,
}

impl StageEvent<'_> {
    fn get(&mut self) -> &Arc<Value> {
        let line = self.line;
        self.parsed.get_or_insert_with(|| match parse_line(line) {
            Line::Event(event) => Arc::new(event),
            _ => unreachable!("the line parsed as an event on the worker"),
        })
    }
}

/// Evaluates events against every rule; owns one instance per rule.
struct Worker {
    slots: Vec<Slot>,
    clock: Clock,
    /// Set by the alert stage when it quarantines a rule, so workers stop calling it.
    quarantined: Arc<[AtomicBool]>,
    /// Each rule's `InlineFilters`, as an index into `filter_results`; rules with the same
    /// filters share one ([`FilterGroups`]).
    filters: FilterGroups,
    /// Each distinct filter's result on the current event, computed on first use.
    filter_results: Vec<Option<bool>>,
}

/// Which rules have the same `InlineFilters`: a filter depends only on the event, so rules
/// that share one (the same log type, action or service) evaluate it once per event. The
/// distinct filters that test one field for string equality are answered together, one
/// lookup of the field per event ([`FilterIndex`]).
#[derive(Clone)]
struct FilterGroups {
    /// Per rule: the index of its filters among the distinct ones, or `None` without filters.
    of_rule: Arc<[Option<usize>]>,
    distinct: usize,
    index: Arc<FilterIndex>,
}

impl FilterGroups {
    fn new(rules: &[LoadedRule]) -> Self {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut distinct = Vec::new();
        let of_rule = rules
            .iter()
            .map(|rule| {
                let filters = rule.spec.inline_filters.as_ref()?;
                // The derived `Debug` shows every field of the parsed filters, so equal text
                // means equal filters.
                let next = seen.len();
                let group = *seen.entry(format!("{filters:?}")).or_insert(next);
                if group == next {
                    distinct.push(filters);
                }
                Some(group)
            })
            .collect();
        FilterGroups {
            of_rule,
            distinct: seen.len(),
            index: Arc::new(FilterIndex::new(distinct)),
        }
    }
}

impl Worker {
    fn new(rules: &[LoadedRule], clock: Clock, quarantined: Arc<[AtomicBool]>) -> Self {
        let filters = FilterGroups::new(rules);
        Worker {
            slots: rules.iter().cloned().map(Slot::new).collect(),
            clock,
            quarantined,
            filter_results: vec![None; filters.distinct],
            filters,
        }
    }

    /// Appends each rule's outcome on `event`, in rule order, to `out`, as far as filters
    /// and quarantine decide it; a rule the event must be evaluated by gets a placeholder,
    /// and the event joins `pending` for that rule: [`Worker::flush`] makes the calls.
    fn defer(
        &mut self,
        event: Arc<Value>,
        time: Option<i64>,
        out: &mut Vec<Outcome>,
        pending: &mut Pending,
    ) {
        self.filter_results.fill(None);
        self.filters.index.apply(&event, &mut self.filter_results);
        pending.calls.resize_with(self.slots.len(), Vec::new);
        let at = pending.events.len();
        let base = out.len();
        let rules = self
            .slots
            .iter()
            .zip(self.quarantined.iter())
            .zip(self.filters.of_rule.iter())
            .zip(pending.calls.iter_mut());
        for (((slot, quarantined), group), calls) in rules {
            let outcome = if quarantined.load(Ordering::Relaxed) {
                Outcome::Skipped
            } else if let Some(group) = *group
                && let Some(filters) = &slot.rule.spec.inline_filters
                && !*self.filter_results[group].get_or_insert_with(|| filters.matches(&event))
            {
                Outcome::Filtered
            } else {
                calls.push(at);
                // A placeholder, replaced by `flush`.
                Outcome::NoMatch
            };
            out.push(outcome);
        }
        // Rules without a readable event time see the epoch; the stage assigns the real
        // fallback (the newest time seen), which a worker cannot know.
        pending.events.push((event, time.unwrap_or(0), base));
    }

    /// Makes the calls `pending` gathered, one batch per rule, puts each outcome in its
    /// place in `out`, and drops the events.
    fn flush(&mut self, pending: &mut Pending, out: &mut [Outcome]) {
        let mut events = Vec::new();
        let mut times = Vec::new();
        let mut outcomes = Vec::new();
        for (rule, (slot, calls)) in self.slots.iter_mut().zip(&mut pending.calls).enumerate() {
            if calls.is_empty() {
                continue;
            }
            events.clear();
            times.clear();
            for &at in calls.iter() {
                let (event, time, _) = &pending.events[at];
                events.push(event.clone());
                times.push(*time);
            }
            outcomes.clear();
            slot.evaluate_many(&events, &times, &mut outcomes);
            debug_assert_eq!(outcomes.len(), calls.len());
            for (&at, outcome) in calls.iter().zip(outcomes.drain(..)) {
                out[pending.events[at].2 + rule] = outcome;
            }
            calls.clear();
        }
        pending.events.clear();
    }

    fn event(&mut self, location: Location, event: Value, time: Option<i64>) -> Evaluated {
        let time = time.or_else(|| self.clock.event_time_ms(&event));
        let event = Arc::new(event);
        let mut outcomes = Vec::with_capacity(self.slots.len());
        let mut pending = Pending::default();
        self.defer(event.clone(), time, &mut outcomes, &mut pending);
        // One event: each rule gets one `evaluate` call (`Slot::evaluate_many`).
        self.flush(&mut pending, &mut outcomes);
        Evaluated::Event {
            location,
            event,
            time,
            outcomes,
        }
    }

    /// Parses and evaluates a batch of lines; each event is dropped here, on the thread
    /// that allocated it.
    fn lines(&mut self, file: Arc<str>, batch: LineBatch, max_line: usize) -> Evaluated {
        let mut items = Vec::with_capacity(batch.lines.len());
        let mut outcomes = Vec::with_capacity(batch.lines.len() * self.slots.len());
        let mut pending = Pending::default();
        for (index, line) in batch.lines.iter().enumerate() {
            let parsed = if line.too_long {
                Line::Bad(BadLine::TooLong(max_line))
            } else {
                parse_line(batch.bytes_of(line))
            };
            items.push(match parsed {
                Line::Event(event) => {
                    let time = self.clock.event_time_ms(&event);
                    self.defer(Arc::new(event), time, &mut outcomes, &mut pending);
                    if pending.events.len() == BATCH_EVENTS {
                        self.flush(&mut pending, &mut outcomes);
                    }
                    LineItem::Event { line: index, time }
                }
                Line::Blank => LineItem::Blank {
                    number: line.number,
                },
                Line::Bad(reason) => LineItem::Bad {
                    number: line.number,
                    reason: reason.to_string(),
                },
            });
        }
        self.flush(&mut pending, &mut outcomes);
        Evaluated::Lines(EvaluatedLines {
            file,
            batch,
            items,
            outcomes,
        })
    }
}

/// Per-rule bookkeeping of the alert stage.
struct StageRule {
    /// Instance used to freeze alert fields when a window opens.
    slot: Slot,
    stats: RuleStats,
    /// Failures already printed to stderr (the rest are only counted).
    reported: u32,
    /// Consecutive events on which a call failed ([`Quarantine`]).
    failing_streak: u32,
}

/// At most this many failures per rule are printed; all are counted.
const MAX_REPORTED_FAILURES: u32 = 5;

/// Applies workers' outcomes in input order: windows, alerts, counts, quarantine.
struct Stage<W: Write> {
    rules: Vec<StageRule>,
    state: AlertState<Location, AlertFields>,
    out: Counted<W>,
    /// With `--state`: commits the state every so many lines and at the end.
    checkpoints: Option<Checkpointer>,
    summary: Summary,
    warn: Box<dyn FnMut(&str) + Send>,
    quarantine: Quarantine,
    quarantined: Arc<[AtomicBool]>,
}

impl<W: Write> Stage<W> {
    fn apply(&mut self, item: Evaluated) -> io::Result<()> {
        match item {
            Evaluated::FileStarted => self.summary.files += 1,
            Evaluated::Blank(location) => {
                self.summary.blank_lines += 1;
                self.line_done(&location)?;
            }
            Evaluated::Bad { location, reason } => {
                self.summary.bad_lines += 1;
                (self.warn)(&format!("`{location}`: skipped: {reason}"));
                self.line_done(&location)?;
            }
            Evaluated::Event {
                location,
                event,
                time,
                outcomes,
            } => {
                let event = StageEvent {
                    line: &[],
                    parsed: Some(event),
                };
                self.apply_event(&location, event, time, outcomes)?;
                self.line_done(&location)?;
            }
            Evaluated::Lines(lines) => {
                let mut outcomes = lines.outcomes.into_iter();
                for item in lines.items {
                    let number = |line: usize| lines.batch.lines[line].number;
                    match item {
                        LineItem::Event { line, time } => {
                            let location = Location {
                                file: lines.file.clone(),
                                line: number(line),
                            };
                            let event = StageEvent {
                                line: lines.batch.bytes_of(&lines.batch.lines[line]),
                                parsed: None,
                            };
                            let n = self.rules.len();
                            self.apply_event(&location, event, time, outcomes.by_ref().take(n))?;
                            self.line_done(&location)?;
                        }
                        LineItem::Blank { number } => {
                            self.summary.blank_lines += 1;
                            self.line_done(&Location {
                                file: lines.file.clone(),
                                line: number,
                            })?;
                        }
                        LineItem::Bad { number, reason } => {
                            let location = Location {
                                file: lines.file.clone(),
                                line: number,
                            };
                            self.apply(Evaluated::Bad { location, reason })?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts a line as applied; commits the state when a checkpoint is due.
    fn line_done(&mut self, location: &Location) -> io::Result<()> {
        if let Some(checkpoints) = &mut self.checkpoints
            && checkpoints.saw(location)
        {
            self.checkpoint(false)?;
        }
        Ok(())
    }

    /// Flushes the alerts written so far and commits the state with them.
    fn checkpoint(&mut self, finished: bool) -> io::Result<()> {
        let Some(checkpoints) = &mut self.checkpoints else {
            return Ok(());
        };
        self.out.flush()?;
        checkpoints
            .commit(&mut self.state, self.out.written, finished)
            .map_err(io::Error::other)
    }

    fn apply_event(
        &mut self,
        location: &Location,
        mut event: StageEvent<'_>,
        time: Option<i64>,
        outcomes: impl IntoIterator<Item = Outcome>,
    ) -> io::Result<()> {
        self.summary.events += 1;
        let time = match time {
            Some(t) => t,
            None => {
                self.summary.events_without_time += 1;
                self.state.watermark().unwrap_or(0)
            }
        };
        self.state.advance(time);
        self.write_closed()?;
        for (index, outcome) in outcomes.into_iter().enumerate() {
            if let Outcome::Filtered = outcome {
                // The most common outcome with many rules, counted here. Only an event on
                // which the rule was called moves its failure streak, so the quarantine
                // cannot change either.
                let stats = &mut self.rules[index].stats;
                match stats.quarantined_at {
                    Some(_) => stats.skipped += 1,
                    None => stats.filtered += 1,
                }
                continue;
            }
            self.apply_outcome(index, outcome, &mut event, time, location)?;
        }
        Ok(())
    }

    fn apply_outcome(
        &mut self,
        index: usize,
        outcome: Outcome,
        event: &mut StageEvent<'_>,
        time: i64,
        location: &Location,
    ) -> io::Result<()> {
        let rule = &mut self.rules[index];
        if rule.stats.quarantined_at.is_some() {
            rule.stats.skipped += 1;
            return Ok(());
        }
        let mut failed = false;
        match outcome {
            Outcome::Skipped => {
                unreachable!("a rule is skipped only after the stage quarantines it")
            }
            Outcome::Filtered => unreachable!("counted by `apply_event`"),
            Outcome::NoMatch => {}
            Outcome::Failed(failure) => {
                failed = true;
                self.rule_error(index, &failure, time, location);
            }
            Outcome::Signal => {
                rule.stats.matches += 1;
                rule.stats.signals += 1;
                let record = SignalRecord {
                    kind: "signal",
                    rule_id: &rule.slot.rule.spec.rule_id,
                    severity: rule.slot.rule.spec.severity.as_str(),
                    event_time: format_ms(time),
                    event_location: location.to_string(),
                    event: event.get(),
                };
                serde_json::to_writer(&mut self.out, &record)?;
                self.out.write_all(b"\n")?;
            }
            Outcome::Match(info) => {
                failed = self.apply_match(index, &info, event, time, location);
            }
        }
        let rule = &mut self.rules[index];
        rule.failing_streak = if failed { rule.failing_streak + 1 } else { 0 };
        if let Quarantine::After(n) = self.quarantine
            && rule.failing_streak >= n.get()
        {
            rule.stats.quarantined_at = Some(location.clone());
            rule.slot.instance = None;
            self.quarantined[index].store(true, Ordering::Relaxed);
            (self.warn)(&format!(
                "rule `{}` quarantined at `{location}` after failing on {} events in a row: \
                 it is not called for the rest of the run",
                rule.slot.rule.spec.rule_id, rule.failing_streak
            ));
        }
        Ok(())
    }

    /// Returns whether any call for this match failed.
    fn apply_match(
        &mut self,
        index: usize,
        info: &MatchInfo,
        event: &mut StageEvent<'_>,
        time: i64,
        location: &Location,
    ) -> bool {
        let rule = &mut self.rules[index];
        rule.stats.matches += 1;
        let mut failed = false;
        for failure in info.failures() {
            failed |= count_aux(&mut rule.stats, Some(failure));
        }
        let no_title: Called<String> = Ok(None);
        let dedup = semantics::dedup(
            &rule.slot.rule.spec,
            &info.dedup,
            info.title.as_ref().unwrap_or(&no_title),
        );
        // A rule defines `unique` when the call returned a value or failed; a failed call
        // counts the event but adds no value (Panther: `None`).
        let counts_unique = !matches!(info.unique, Ok(None));
        let key = WindowKey {
            rule: index,
            namespace: Namespace::Alert,
            dedup,
        };
        let hit = Hit {
            time_ms: time,
            location: location.clone(),
            unique: semantics::unique(&info.unique),
        };
        if self.state.add(&key, hit.clone()) {
            return failed;
        }
        // This match opens a window: freeze the alert's fields from it.
        let event = event.get();
        let title = match &info.title {
            Some(t) => t.clone(),
            None => {
                let t = rule.slot.optional(
                    |s| &mut s.defines_title,
                    event,
                    time,
                    RuleInstance::call_title,
                );
                failed |= count_aux(&mut rule.stats, t.as_ref().err());
                t
            }
        };
        let (frozen, freeze_failed) = freeze(rule, event, time, &title);
        let spec = &rule.slot.rule.spec;
        let (period, threshold) = (spec.dedup_period_ms(), spec.threshold);
        self.state
            .open(key, hit, period, threshold, counts_unique, frozen);
        failed || freeze_failed
    }

    fn rule_error(&mut self, index: usize, failure: &RuleFailure, time: i64, location: &Location) {
        let rule = &mut self.rules[index];
        rule.stats.rule_errors += 1;
        rule.stats.restarts += u64::from(failure.needs_fresh_instance());
        if rule.reported < MAX_REPORTED_FAILURES {
            rule.reported += 1;
            (self.warn)(&format!(
                "rule `{}` failed on `{location}`: {failure}",
                rule.slot.rule.spec.rule_id
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
            let spec = &rule.slot.rule.spec;
            let frozen = AlertFields {
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
    }

    fn write_closed(&mut self) -> io::Result<()> {
        for closed in self.state.take_closed() {
            self.write(&closed)?;
        }
        Ok(())
    }

    fn write(&mut self, closed: &Closed<Location, AlertFields>) -> io::Result<()> {
        let rule = &mut self.rules[closed.key.rule];
        let is_error = closed.key.namespace == Namespace::Error;
        let record = AlertRecord::from_closed(&rule.slot.rule.spec, closed);
        serde_json::to_writer(&mut self.out, &record)?;
        self.out.write_all(b"\n")?;
        if !is_error {
            rule.stats.alerts += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<Summary> {
        self.write_closed()?;
        let at_end = self
            .checkpoints
            .as_ref()
            .map_or(AtEnd::CloseWindows, Checkpointer::at_end);
        if at_end == AtEnd::CloseWindows {
            for closed in self.state.close_all() {
                self.write(&closed)?;
            }
        }
        self.out.flush()?;
        self.checkpoint(true)?;
        let mut summary = self.summary;
        if self.checkpoints.is_some() {
            summary.kept = Some(KeptWindows {
                live: self.state.live_windows() as u64,
                pending_alerts: self.state.pending_alerts() as u64,
            });
        }
        summary.rules = self
            .rules
            .into_iter()
            .map(|r| (r.slot.rule.spec.rule_id.clone(), r.stats))
            .collect();
        Ok(summary)
    }
}

/// Counts a failed aux call; true if it failed.
fn count_aux(stats: &mut RuleStats, failure: Option<&RuleFailure>) -> bool {
    match failure {
        Some(f) => {
            stats.aux_errors += 1;
            stats.restarts += u64::from(f.needs_fresh_instance());
            true
        }
        None => false,
    }
}

/// Calls the functions whose values an alert keeps, for the match that opens a window.
/// Returns the fields and whether any call failed or returned an invalid value (counted).
fn freeze(
    rule: &mut StageRule,
    event: &Arc<Value>,
    time: i64,
    title: &Called<String>,
) -> (AlertFields, bool) {
    let slot = &mut rule.slot;
    let severity = slot.call(event, time, RuleInstance::call_severity);
    let context = slot.call(event, time, RuleInstance::call_alert_context);
    let description = slot.call(event, time, RuleInstance::call_description);
    let reference = slot.call(event, time, RuleInstance::call_reference);
    let runbook = slot.call(event, time, RuleInstance::call_runbook);
    let destinations = slot.call(event, time, RuleInstance::call_destinations);
    let mut failed = false;
    for failure in [
        severity.as_ref().err(),
        context.as_ref().err(),
        description.as_ref().err(),
        reference.as_ref().err(),
        runbook.as_ref().err(),
        destinations.as_ref().err(),
    ] {
        failed |= count_aux(&mut rule.stats, failure);
    }
    let spec = &slot.rule.spec;
    let (severity_value, severity_error) = semantics::severity(spec, &severity);
    let (alert_context, context_error) = semantics::alert_context(&context);
    // Failed calls were counted above; invalid values returned are errors too.
    let invalid = u64::from(severity.is_ok() && severity_error.is_some())
        + u64::from(context.is_ok() && context_error.is_some());
    rule.stats.aux_errors += invalid;
    let (destinations, suppressed) = semantics::destinations(spec, &destinations);
    let frozen = AlertFields {
        title: semantics::title(spec, title),
        severity: severity_value,
        alert_context,
        description: semantics::text(&description, &spec.description),
        reference: semantics::text(&reference, &spec.reference),
        runbook: semantics::text(&runbook, &spec.runbook),
        destinations,
        suppressed,
        error: None,
    };
    (frozen, failed || invalid > 0)
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
    /// With a persistent state: the windows left open for the next run.
    pub kept: Option<KeptWindows>,
}

/// Windows a run with `--state` left in the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptWindows {
    /// Live windows.
    pub live: u64,
    /// Of them, windows that reached their threshold: their alerts are written when they
    /// close (in a later run, or with `--flush`).
    pub pending_alerts: u64,
}

/// A writer that counts the bytes written through it: the output length each checkpoint
/// records.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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
///
/// [`Evaluator::event`] evaluates in the calling thread; [`run_parallel`] spreads the rule
/// calls over worker threads and gives byte-identical output.
pub struct Evaluator<W: Write> {
    worker: Worker,
    stage: Stage<W>,
}

impl<W: Write> Evaluator<W> {
    /// `warn` receives one line per reported problem (stderr in the CLI).
    pub fn new(
        rules: Vec<LoadedRule>,
        clock: Clock,
        out: W,
        warn: Box<dyn FnMut(&str) + Send>,
    ) -> Self {
        let quarantined: Arc<[AtomicBool]> = rules.iter().map(|_| AtomicBool::new(false)).collect();
        let worker = Worker::new(&rules, clock, quarantined.clone());
        let stage = Stage {
            rules: rules
                .into_iter()
                .map(|rule| StageRule {
                    slot: Slot::new(rule),
                    stats: RuleStats::default(),
                    reported: 0,
                    failing_streak: 0,
                })
                .collect(),
            state: AlertState::default(),
            out: Counted {
                inner: out,
                written: 0,
            },
            checkpoints: None,
            summary: Summary::default(),
            warn,
            quarantine: Quarantine::default(),
            quarantined,
        };
        Evaluator { worker, stage }
    }

    /// Sets when a failing rule is quarantined (default: after 10 failing events).
    pub fn with_quarantine(mut self, quarantine: Quarantine) -> Self {
        self.stage.quarantine = quarantine;
        self
    }

    /// Continues from the state `checkpoints` keeps (`eval --state`) and commits to it as it
    /// goes. Returns the rules with windows in the state that this evaluator does not run.
    pub fn with_checkpoints(
        mut self,
        mut checkpoints: Checkpointer,
    ) -> Result<(Self, Vec<(String, u64)>), StoreError> {
        let rule_ids = self
            .stage
            .rules
            .iter()
            .map(|r| r.slot.rule.spec.rule_id.clone())
            .collect();
        let Restored { state, other_rules } = checkpoints.restore(rule_ids)?;
        self.stage.state = state;
        self.stage.checkpoints = Some(checkpoints);
        Ok((self, other_rules))
    }

    /// Counts an input file.
    pub fn file_started(&mut self) {
        self.stage.summary.files += 1;
    }

    /// Counts a blank line.
    pub fn blank_line(&mut self, location: &Location) -> io::Result<()> {
        self.stage.apply(Evaluated::Blank(location.clone()))
    }

    /// Counts and reports a skipped line.
    pub fn bad_line(&mut self, location: &Location, reason: &dyn fmt::Display) -> io::Result<()> {
        self.stage.apply(Evaluated::Bad {
            location: location.clone(),
            reason: reason.to_string(),
        })
    }

    /// Evaluates one event at the time its own fields give ([`Clock`]).
    pub fn event(&mut self, location: &Location, event: Value) -> io::Result<()> {
        self.event_at(location, event, None)
    }

    /// Evaluates one event at `time` (epoch ms) when given, else at the time its own
    /// fields give; an event without either gets the newest time seen (and is counted).
    pub fn event_at(
        &mut self,
        location: &Location,
        event: Value,
        time: Option<i64>,
    ) -> io::Result<()> {
        let evaluated = self.worker.event(location.clone(), event, time);
        self.stage.apply(evaluated)
    }

    /// Closes every window, writes the remaining alerts and returns the totals.
    pub fn finish(self) -> io::Result<Summary> {
        self.stage.finish()
    }
}

/// One item of input for [`run_parallel`].
#[derive(Debug)]
pub enum Input {
    /// A new file begins.
    FileStarted,
    /// Lines of the current file, to parse and evaluate ([`LineReader::read_batch`]:
    /// a few hundred lines in one buffer, so that channels and allocations are per batch).
    ///
    /// [`LineReader::read_batch`]: crate::input::LineReader::read_batch
    Lines {
        /// The file's name as given.
        file: Arc<str>,
        /// The lines.
        batch: LineBatch,
        /// The cap the reader applied, for the message of a line that was too long.
        max_line: usize,
    },
    /// A line already classified (unreadable).
    Bad(Location, String),
}

/// Evaluates `input` with `threads` worker threads (at least 1) and an ordered alert stage:
/// the output is byte-identical to [`Evaluator::event`] over the same input.
pub fn run_parallel<W: Write + Send>(
    evaluator: Evaluator<W>,
    threads: usize,
    input: impl Iterator<Item = Input>,
) -> io::Result<Summary> {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::mpsc::sync_channel;

    let Evaluator { worker, mut stage } = evaluator;
    let threads = threads.max(1);
    let (work_tx, work_rx) = sync_channel::<(u64, Input)>(threads * 4);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<(u64, Evaluated)>(threads * 4);
    std::thread::scope(|scope| -> io::Result<Summary> {
        for _ in 0..threads {
            let mut worker = Worker {
                slots: worker
                    .slots
                    .iter()
                    .map(|s| Slot::new(s.rule.clone()))
                    .collect(),
                clock: worker.clock.clone(),
                quarantined: worker.quarantined.clone(),
                filters: worker.filters.clone(),
                filter_results: worker.filter_results.clone(),
            };
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = rx.lock().expect("worker queue").recv();
                    let Ok((seq, item)) = next else { break };
                    let evaluated = match item {
                        Input::FileStarted => Evaluated::FileStarted,
                        Input::Bad(location, reason) => Evaluated::Bad { location, reason },
                        Input::Lines {
                            file,
                            batch,
                            max_line,
                        } => worker.lines(file, batch, max_line),
                    };
                    if tx.send((seq, evaluated)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let stage_thread = scope.spawn(move || -> io::Result<Summary> {
            let mut pending: BTreeMap<u64, Evaluated> = BTreeMap::new();
            let mut next = 0u64;
            for (seq, item) in done_rx {
                pending.insert(seq, item);
                while let Some(item) = pending.remove(&next) {
                    stage.apply(item)?;
                    next += 1;
                }
            }
            stage.finish()
        });
        for (seq, item) in (0u64..).zip(input) {
            if work_tx.send((seq, item)).is_err() {
                break;
            }
        }
        drop(work_tx);
        stage_thread.join().expect("alert stage thread")
    })
}
