//! [`MatchStage`]: the stage of `rulehost serve`. Where `eval`'s stage applies each
//! outcome to windows in memory, this one turns a line batch of one partition into what a
//! shared state applies: a [`MatchBatch`], with per match its window key, event time,
//! unique value and offset, and, for a match that may open a window, the alert fields
//! frozen from its event (Panther keeps the fields of a window's first match).
//!
//! The state decides which match opens a window; the stage only guesses, from the ends of
//! windows it has learned ([`MatchStage::learn_end`]): a match of a window it does not
//! know, and a match past the end it knows, get their fields. A state that meets an
//! opener without fields changes nothing and names the matches it needs
//! ([`MatchStage::supply_fields`]), so a wrong guess costs a round trip, never an alert.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::runner::{Paths, Runner};
use super::stage::{StageRule, count_aux, count_failed, freeze};
use super::summary::{Quarantine, RuleStats};
use super::verdict::{Judged, LineItem, NoteKind, Verdict};
use super::worker::{Worker, WorkerSettings};
use super::{Rule, Verify};
use crate::alert::AlertFields;
use crate::calls::{CallResult, Function};
use crate::clock::{Clock, format_ms};
use crate::event::Event;
use crate::input::{Line, LineBatch, parse_line};
use crate::semantics;
use crate::source::Position;
use crate::state::{Namespace, alert_id};

/// What a window keeps from its first match, as a shared state stores it: the alert
/// fields after Panther's fallbacks, with the spec's tags and reports, so that whoever
/// delivers the alert needs no rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFields {
    /// Title.
    pub title: String,
    /// Upper-case severity.
    pub severity: String,
    /// Alert context.
    pub alert_context: Value,
    /// Description.
    pub description: String,
    /// Reference.
    pub reference: String,
    /// Runbook.
    pub runbook: String,
    /// Destinations.
    pub destinations: Vec<String>,
    /// `destinations()` returned an empty list.
    pub suppressed: bool,
    /// For rule errors: the error of the first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The spec's tags.
    pub tags: Vec<String>,
    /// The spec's reports.
    pub reports: BTreeMap<String, Vec<String>>,
}

impl StoredFields {
    fn new(fields: AlertFields, rule: &Rule) -> Self {
        StoredFields {
            title: fields.title,
            severity: fields.severity.as_str().to_owned(),
            alert_context: fields.alert_context,
            description: fields.description,
            reference: fields.reference,
            runbook: fields.runbook,
            destinations: fields.destinations,
            suppressed: fields.suppressed,
            error: fields.error,
            tags: rule.spec.tags.clone(),
            reports: rule.spec.reports.clone(),
        }
    }
}

/// A window a batch counts into: its id (a digest of rule, namespace and dedup string,
/// the same for every worker), and what opening it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRef {
    /// 32 hex digits: sha256 of `RuleID`, namespace and dedup string.
    pub id: String,
    /// `RuleID`.
    pub rule_id: String,
    /// Alert or rule-error stream.
    pub namespace: Namespace,
    /// The dedup string (for rule errors: the error kind).
    pub dedup: String,
    /// The rule's `DedupPeriodMinutes`, in ms.
    pub period_ms: i64,
    /// Matches needed (events, or distinct unique values).
    pub threshold: u64,
    /// The window counts distinct unique values.
    pub counts_unique: bool,
    /// Index of the rule in the stage.
    pub rule: usize,
}

/// The id of the window key (`RuleID`, namespace, dedup).
pub fn window_id(rule_id: &str, namespace: Namespace, dedup: &str) -> String {
    // The namespace as `{namespace:?}` writes it (ids are kept in shared state: they never
    // change), without formatting on every match.
    let namespace = match namespace {
        Namespace::Alert => "Alert",
        Namespace::Error => "Error",
    };
    let mut h = Sha256::new();
    for part in [rule_id.as_bytes(), namespace.as_bytes(), dedup.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in &digest[..16] {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 15)] as char);
    }
    id
}

/// One match for the shared state.
#[derive(Debug, Clone)]
pub struct Match {
    /// Index into [`MatchBatch::keys`].
    pub key: usize,
    /// The event's offset in its source.
    pub offset: u64,
    /// Event time, epoch ms.
    pub time_ms: i64,
    /// The `unique` value, when the rule defines it and it returned one.
    pub unique: Option<String>,
    /// When this match may open a window: the alert id it would have and the fields
    /// frozen from its event (JSON of [`StoredFields`]).
    pub opens: Option<Opener>,
    /// Index of the event's line in the batch (to freeze its fields later).
    line: usize,
}

/// What a window opened by a match keeps.
#[derive(Debug, Clone)]
pub struct Opener {
    /// The alert id of a window starting at this match.
    pub alert_id: String,
    /// JSON of [`StoredFields`].
    pub fields: String,
}

/// A match of a `CreateAlert: false` rule: a signal record, delivered like alerts.
#[derive(Debug, Clone)]
pub struct Signal {
    /// The event's offset.
    pub offset: u64,
    /// Index of the rule.
    pub rule: usize,
    /// The record, as JSON.
    pub record: String,
}

/// What one line batch of one source gives a shared state.
pub struct MatchBatch {
    /// The source's name (`topic/partition` for Kafka).
    pub source: Arc<str>,
    /// Offsets of the first and last line of the batch.
    pub first_offset: u64,
    /// See `first_offset`.
    pub last_offset: u64,
    /// The newest event time of the source after this batch: windows of this source
    /// that end at or before it are closed.
    pub watermark: Option<i64>,
    /// The windows counted into.
    pub keys: Vec<WindowRef>,
    /// Matches in input order (offset, then rule).
    pub matches: Vec<Match>,
    /// Signals in input order.
    pub signals: Vec<Signal>,
    /// Lines that were not events, with why.
    pub bad: Vec<(Position, String)>,
    /// Events in the batch.
    pub events: u64,
    batch: LineBatch,
}

/// Counts of a [`MatchStage`] since it started, per rule and in all.
#[derive(Debug, Default, Clone)]
pub struct MatchCounts {
    /// Events evaluated.
    pub events: u64,
    /// Lines that were not events.
    pub bad_lines: u64,
    /// Blank lines.
    pub blank_lines: u64,
    /// Per rule, by `RuleID`.
    pub rules: Vec<(String, RuleStats)>,
}

/// Turns line batches into [`MatchBatch`]es; see the module docs.
pub struct MatchStage {
    worker: Worker,
    rules: Vec<StageRule>,
    quarantined: Arc<[AtomicBool]>,
    quarantine: Quarantine,
    /// Per window id: the end of its live window, as far as this stage knows.
    ends: HashMap<String, i64>,
    /// Per source: the newest event time seen.
    watermarks: HashMap<Arc<str>, i64>,
    events: u64,
    bad_lines: u64,
    blank_lines: u64,
    batches: u64,
    warn: Box<dyn FnMut(&str) + Send>,
}

/// At most this many window ends are remembered; past it the oldest half is forgotten
/// (a forgotten end only costs fields computed for a match that does not need them).
const MAX_KNOWN_ENDS: usize = 1 << 20;

impl MatchStage {
    /// A stage for `rules`, reading event times with `clock`.
    pub fn new(
        rules: Vec<Rule>,
        clock: Clock,
        quarantine: Quarantine,
        warn: Box<dyn FnMut(&str) + Send>,
    ) -> Self {
        let settings = WorkerSettings {
            paths: Paths::Auto,
            verify: Verify::Sampled,
            budget: quarantine.budget(),
        };
        let quarantined: Arc<[AtomicBool]> = rules.iter().map(|_| AtomicBool::new(false)).collect();
        let worker = Worker::new(&rules, clock, quarantined.clone(), &settings);
        let rules = rules
            .into_iter()
            .map(|rule| StageRule::new(Runner::new(rule, Paths::Functions, None)))
            .collect();
        MatchStage {
            worker,
            rules,
            quarantined,
            quarantine,
            ends: HashMap::new(),
            watermarks: HashMap::new(),
            events: 0,
            bad_lines: 0,
            blank_lines: 0,
            batches: 0,
            warn,
        }
    }

    /// The `RuleID`s, in rule order.
    pub fn rule_ids(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| r.runner.rule.spec.rule_id.clone())
            .collect()
    }

    /// What the stage counted so far.
    pub fn counts(&self) -> MatchCounts {
        MatchCounts {
            events: self.events,
            bad_lines: self.bad_lines,
            blank_lines: self.blank_lines,
            rules: self
                .rules
                .iter()
                .map(|r| (r.runner.rule.spec.rule_id.clone(), r.stats.clone()))
                .collect(),
        }
    }

    /// Counts an alert a shared state created for rule `rule`.
    pub fn count_alert(&mut self, rule: usize) {
        if let Some(r) = self.rules.get_mut(rule) {
            r.stats.alerts += 1;
        }
    }

    /// The state says the live window `id` (of `period_ms`) ends at `end_ms`, as of a batch
    /// this stage evaluated before. An end known a period or more past it is kept: a later
    /// batch, evaluated meanwhile, opened the window after that one.
    pub fn learn_end(&mut self, id: &str, end_ms: i64, period_ms: i64) {
        if let Some(end) = self.ends.get_mut(id)
            && *end < end_ms.saturating_add(period_ms)
        {
            *end = end_ms;
        }
    }

    /// Forgets what it knew of `source` (its partition went to another worker): windows
    /// may change meanwhile.
    pub fn forget(&mut self, source: &str) {
        self.watermarks.remove(source);
        self.ends.clear();
    }

    /// Parses and evaluates a batch of lines of `source` (offsets are the lines' numbers).
    pub fn batch(&mut self, source: Arc<str>, batch: LineBatch, max_line: usize) -> MatchBatch {
        let sampled = self
            .batches
            .is_multiple_of(super::worker::CHECK_EVERY_BATCHES);
        self.batches += 1;
        let Judged::Lines(judged) = self.worker.lines(source.clone(), batch, max_line, sampled)
        else {
            unreachable!("a line batch is judged as lines")
        };
        let first_offset = judged.batch.lines.first().map_or(0, |l| l.number);
        let last_offset = judged.batch.lines.last().map_or(0, |l| l.number);
        let mut out = MatchBatch {
            source: source.clone(),
            first_offset,
            last_offset,
            watermark: None,
            keys: Vec::new(),
            matches: Vec::new(),
            signals: Vec::new(),
            bad: Vec::new(),
            events: 0,
            batch: LineBatch::default(),
        };
        let mut key_index: HashMap<String, usize> = HashMap::new();
        let rules = self.rules.len();
        let mut outcomes = judged.outcomes.into_iter();
        let mut notes = judged.notes.into_iter().peekable();
        let mut watermark = self.watermarks.get(&source).copied();
        for item in judged.items {
            match item {
                LineItem::Blank { .. } => self.blank_lines += 1,
                LineItem::Bad { number, reason } => {
                    self.bad_lines += 1;
                    out.bad
                        .push((Position::new(source.clone(), number), reason));
                }
                LineItem::Event { line, time } => {
                    self.events += 1;
                    out.events += 1;
                    if let Some(t) = time {
                        watermark = Some(watermark.map_or(t, |w| w.max(t)));
                    }
                    // An event without a readable time gets the newest time seen, as in `eval`.
                    let time = time.or(watermark).unwrap_or(0);
                    let offset = judged.batch.lines[line].number;
                    let mut parsed: Option<Arc<Event>> = None;
                    let event_index = out.events as usize - 1;
                    for (index, outcome) in outcomes.by_ref().take(rules).enumerate() {
                        // What the worker noted of a fast path, as `eval`'s stage takes it:
                        // a failed fast path is counted, a checked one that disagreed with
                        // one call per function quarantines the rule after this outcome.
                        let mut mismatch = None;
                        while let Some(note) =
                            notes.next_if(|n| n.event == event_index && n.rule <= index)
                        {
                            let position = Position::new(source.clone(), offset);
                            let rule = &mut self.rules[note.rule];
                            match note.what {
                                NoteKind::FastPathFailed { path, failure } => {
                                    count_failed(&mut rule.stats, path, &failure);
                                    if rule.reported < 5 {
                                        rule.reported += 1;
                                        (self.warn)(&format!(
                                            "rule `{}`: `{path}` failed on `{position}`: \
                                             {failure}; one call per function gave the outcome",
                                            rule.runner.rule.spec.rule_id
                                        ));
                                    }
                                }
                                NoteKind::Mismatch { path, detail } => {
                                    mismatch = Some((note.rule, path, detail));
                                }
                            }
                        }
                        self.outcome(
                            index,
                            outcome,
                            (line, offset, time),
                            &judged.batch,
                            &mut parsed,
                            &mut out,
                            &mut key_index,
                        );
                        if let Some((rule, path, detail)) = mismatch {
                            self.quarantine(
                                rule,
                                &Position::new(source.clone(), offset),
                                &format!(
                                    "because its `{path}` results disagree with one call per \
                                     function ({detail})"
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Some(w) = watermark {
            self.watermarks.insert(source, w);
        }
        out.watermark = watermark;
        out.batch = judged.batch;
        if self.ends.len() > MAX_KNOWN_ENDS {
            let mut ends: Vec<i64> = self.ends.values().copied().collect();
            ends.sort_unstable();
            let cut = ends[ends.len() / 2];
            self.ends.retain(|_, end| *end > cut);
        }
        out
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one match's context, passed down once"
    )]
    fn outcome(
        &mut self,
        index: usize,
        outcome: Verdict,
        (line, offset, time): (usize, u64, i64),
        batch: &LineBatch,
        parsed: &mut Option<Arc<Event>>,
        out: &mut MatchBatch,
        key_index: &mut HashMap<String, usize>,
    ) {
        let position = || Position::new(out.source.clone(), offset);
        let rule = &mut self.rules[index];
        if rule.stats.quarantined_at.is_some() {
            rule.stats.skipped += 1;
            return;
        }
        let (namespace, dedup, unique, counts_unique, error) = match outcome {
            Verdict::Filtered => {
                rule.stats.filtered += 1;
                return;
            }
            Verdict::Skipped => {
                rule.stats.skipped += 1;
                return;
            }
            Verdict::NoMatch => return,
            Verdict::Signal => {
                rule.stats.matches += 1;
                rule.stats.signals += 1;
                let event = event_of(batch, line, parsed);
                let record = crate::alert::SignalRecord {
                    kind: "signal",
                    rule_id: &rule.runner.rule.spec.rule_id,
                    severity: rule.runner.rule.spec.severity.as_str(),
                    event_time: format_ms(time),
                    event_location: position().to_string(),
                    event: event.whole_value(),
                };
                let record = serde_json::to_string(&record).expect("a signal is JSON");
                out.signals.push(Signal {
                    offset,
                    rule: index,
                    record,
                });
                return;
            }
            Verdict::Failed(failure) => {
                rule.stats.rule_errors += 1;
                rule.stats.restarts += u64::from(failure.needs_fresh_instance());
                *rule
                    .stats
                    .failed_calls
                    .entry((Function::Rule, failure.kind()))
                    .or_default() += 1;
                rule.spent += u32::from(failure.needs_fresh_instance());
                let error = failure.to_string();
                if rule.reported < 5 {
                    rule.reported += 1;
                    (self.warn)(&format!(
                        "rule `{}` failed on `{}`: {error}",
                        rule.runner.rule.spec.rule_id,
                        position()
                    ));
                }
                (
                    Namespace::Error,
                    failure.kind().to_owned(),
                    None,
                    false,
                    Some(error),
                )
            }
            Verdict::Match(info) => {
                rule.stats.matches += 1;
                for (function, failure) in info.failures() {
                    count_aux(rule, function, failure);
                }
                let no_title: CallResult<String> = Ok(None);
                let dedup = semantics::dedup(
                    &rule.runner.rule.spec,
                    &info.dedup,
                    info.title.as_ref().unwrap_or(&no_title),
                );
                let counts_unique = !matches!(info.unique, Ok(None));
                let unique = semantics::unique(&info.unique);
                (Namespace::Alert, dedup, unique, counts_unique, None)
            }
        };
        let spec = &rule.runner.rule.spec;
        let rule_id = spec.rule_id.clone();
        let id = window_id(&rule_id, namespace, &dedup);
        let key = *key_index.entry(id.clone()).or_insert_with(|| {
            out.keys.push(WindowRef {
                id: id.clone(),
                rule_id: rule_id.clone(),
                namespace,
                dedup: dedup.clone(),
                period_ms: spec.dedup_period_ms().max(1),
                threshold: if namespace == Namespace::Error {
                    1
                } else {
                    spec.threshold.max(1)
                },
                counts_unique,
                rule: index,
            });
            out.keys.len() - 1
        });
        let period = out.keys[key].period_ms;
        // Only a match past the end known, or of a window not known, gets fields (and sets
        // the end it would have). Fields for the first match of each window of every batch
        // cost most of a batch's time under load, and setting their ends hid the ends the
        // state told: a wrong guess costs the state's request for fields, never an alert.
        let may_open = self.ends.get(&id).is_none_or(|&end| time >= end);
        let opens = may_open.then(|| {
            self.ends.insert(id.clone(), time.saturating_add(period));
            self.opener(index, namespace, &dedup, error, time, batch, line, parsed)
        });
        out.matches.push(Match {
            key,
            offset,
            time_ms: time,
            unique,
            opens,
            line,
        });
        self.check_budget(index, &out.source, offset);
    }

    /// The alert id and fields of a window opened by this match: for alerts, the rule's
    /// functions on its event (under one shared deadline, as in `eval`); for rule errors,
    /// the error.
    #[expect(
        clippy::too_many_arguments,
        reason = "one match's context, passed down once"
    )]
    fn opener(
        &mut self,
        index: usize,
        namespace: Namespace,
        dedup: &str,
        error: Option<String>,
        time: i64,
        batch: &LineBatch,
        line: usize,
        parsed: &mut Option<Arc<Event>>,
    ) -> Opener {
        let rule = &mut self.rules[index];
        // Not the whole spec: it holds the tests (their events) too.
        let spec = &rule.runner.rule.spec;
        let fields = match error {
            Some(error) => AlertFields {
                title: format!("{}: {error}", spec.rule_id),
                severity: spec.severity,
                alert_context: Value::Object(Default::default()),
                description: spec.description.clone(),
                reference: spec.reference.clone(),
                runbook: spec.runbook.clone(),
                destinations: spec.output_ids.clone(),
                suppressed: false,
                error: Some(error),
            },
            None => {
                let event = event_of(batch, line, parsed);
                rule.runner.calls().set_time(time);
                rule.runner.calls().share_deadline(true);
                let title = rule.runner.title(&event);
                if let Err(failure) = &title {
                    count_aux(rule, Function::Title, failure);
                }
                let fields = freeze(rule, &event, &title);
                rule.runner.calls().share_deadline(false);
                fields
            }
        };
        let stored = StoredFields::new(fields, &rule.runner.rule);
        Opener {
            alert_id: alert_id(&rule.runner.rule.spec.rule_id, namespace, dedup, time),
            fields: serde_json::to_string(&stored).expect("fields are JSON"),
        }
    }

    /// Freezes the fields of the matches at `indices` of `batch` (the state found that they
    /// open windows).
    pub fn supply_fields(&mut self, batch: &mut MatchBatch, indices: &[usize]) {
        let mut parsed = None;
        let mut last_line = usize::MAX;
        for &i in indices {
            let Some(m) = batch.matches.get(i) else {
                continue;
            };
            if m.opens.is_some() {
                continue;
            }
            let key = &batch.keys[m.key];
            let (rule, namespace, dedup) = (key.rule, key.namespace, key.dedup.clone());
            if m.line != last_line {
                parsed = None;
                last_line = m.line;
            }
            let error = (namespace == Namespace::Error).then(|| dedup.clone());
            let (time, line) = (m.time_ms, m.line);
            let opener = self.opener(
                rule,
                namespace,
                &dedup,
                error,
                time,
                &batch.batch,
                line,
                &mut parsed,
            );
            batch.matches[i].opens = Some(opener);
        }
    }

    /// Quarantines a rule that has spent its failure budget (as `eval`'s stage does).
    fn check_budget(&mut self, index: usize, source: &Arc<str>, offset: u64) {
        let rule = &self.rules[index];
        if let Some(budget) = self.quarantine.budget()
            && rule.spent >= budget
        {
            let reason = format!(
                "after {} calls timed out, hit a limit or trapped",
                rule.spent
            );
            self.quarantine(index, &Position::new(source.clone(), offset), &reason);
        }
    }

    /// Stops calling rule `index` until the rules are loaded again.
    fn quarantine(&mut self, index: usize, at: &Position, reason: &str) {
        let rule = &mut self.rules[index];
        if rule.stats.quarantined_at.is_some() {
            return;
        }
        rule.stats.quarantined_at = Some(at.clone());
        rule.runner.reset();
        self.quarantined[index].store(true, Ordering::Relaxed);
        (self.warn)(&format!(
            "rule `{}` quarantined at `{at}` {reason}: it is not called until the rules are \
             loaded again",
            rule.runner.rule.spec.rule_id
        ));
    }
}

/// The event of a line of the batch, parsed once per line (the worker dropped its own).
fn event_of(batch: &LineBatch, line: usize, parsed: &mut Option<Arc<Event>>) -> Arc<Event> {
    parsed
        .get_or_insert_with(|| match parse_line(batch.bytes_of(&batch.lines[line])) {
            Line::Event(event) => Arc::new(Event::whole(event)),
            _ => unreachable!("the line parsed as an event on the worker"),
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Window ids are kept in the shared state: they never change (sha256 over the
    /// length-prefixed `RuleID`, namespace and dedup string, its first 16 bytes in hex).
    #[test]
    fn window_ids_are_stable() {
        assert_eq!(
            window_id(
                "Databricks.Audit.AccessToMultipleWorkspaces",
                Namespace::Alert,
                "jane@example.com"
            ),
            "230d2225c097e31369c30d84a9bd7a29"
        );
    }
}
