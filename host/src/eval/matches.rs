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
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

// Window ids come from events: foldhash, seeded per process, as the state's windows
// (SipHash of these maps was up to 3% of a worker's time).
use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::health::{Health, RuleError, error_fields};
use super::runner::{Paths, Runner};
use super::skew::{ClockGuard, Placement};
use super::stage::{StageRule, freeze};
use super::summary::{Quarantine, RuleStats};
use super::verdict::{Judged, JudgedLines, LineItem, Note, Verdict};
use super::worker::{Worker, WorkerSettings};
use super::{Rule, Verify};
use crate::alert::AlertFields;
use crate::clock::Clock;
use crate::event::{Event, LineParse, WantedPaths};
use crate::input::{BatchLine, LineBatch};
use crate::source::Position;
use crate::state::{Namespace, alert_id};
use rulehost_event::Wanted;

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
    /// For a rule error: the error (its fields' title).
    error: Option<String>,
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
    /// Events whose time was too far ahead of their source's clock to move it: evaluated
    /// and windowed at the clock's time (each reported with its offset).
    pub ahead_of_clock: u64,
    /// Events held now, each the last of its source so far, until the source's next
    /// event decides whether their time moves the clock.
    pub held: u64,
    /// Per rule, by `RuleID`.
    pub rules: Vec<(String, RuleStats)>,
}

/// Turns line batches into [`MatchBatch`]es; see the module docs.
pub struct MatchStage {
    worker: Worker,
    rules: Vec<StageRule>,
    /// Failures, rule errors and quarantine, as `eval`'s stage takes them.
    health: Health,
    /// Per window id: the end of its live window, as far as this stage knows.
    ends: HashMap<String, i64, RandomState>,
    /// Per source: its event-time clock, the newest event time that moved it.
    watermarks: HashMap<Arc<str>, i64>,
    /// Which event times may move a source's clock.
    clock: ClockGuard,
    /// Per source: an event held for its time at the end of its last batch, to evaluate
    /// first in its next ([`MatchStage::batch`]).
    carried: HashMap<Arc<str>, Carried>,
    /// Events too far ahead of their source's clock to move it.
    ahead_of_clock: u64,
    events: u64,
    bad_lines: u64,
    blank_lines: u64,
    batches: u64,
    /// Of the batch being built, per rule and namespace (`2 * rule + namespace`): dedup
    /// string → index into its keys (a window's id is hashed once per batch, not per match).
    key_index: Vec<HashMap<String, usize, RandomState>>,
    /// Parses the lines whose fields the stage freezes or records.
    lines: LineEvents,
}

/// At most this many window ends are remembered; past it the oldest half is forgotten
/// (a forgotten end only costs fields computed for a match that does not need them).
const MAX_KNOWN_ENDS: usize = 1 << 20;

/// An event of the batch whose time is ahead of its source's clock, waiting for the next
/// event to decide where it goes ([`ClockGuard`]).
struct Held {
    line: usize,
    time: i64,
    outcomes: Vec<(usize, Verdict)>,
    notes: Vec<Note>,
}

/// The line of an event held at the end of its source's batch.
struct Carried {
    offset: u64,
    bytes: Vec<u8>,
    /// When it was held.
    since: Instant,
}

/// The event an outcome is about: its line in the batch, its offset and its time.
struct At {
    line: usize,
    offset: u64,
    time: i64,
}

/// What a match counts into its window.
struct Counted {
    namespace: Namespace,
    /// The dedup string (for rule errors: the error kind).
    dedup: String,
    unique: Option<String>,
    counts_unique: bool,
    /// For rule errors: the error.
    error: Option<String>,
}

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
        let key_index = (0..2 * rules.len()).map(|_| HashMap::default()).collect();
        let rules = rules
            .into_iter()
            .map(|rule| StageRule::new(Runner::new(rule, Paths::Functions, None)))
            .collect();
        MatchStage {
            worker,
            rules,
            health: Health {
                quarantine,
                quarantined,
                warn,
                lasts: "until the rules are loaded again",
            },
            ends: HashMap::default(),
            watermarks: HashMap::new(),
            clock: ClockGuard::default(),
            carried: HashMap::new(),
            ahead_of_clock: 0,
            events: 0,
            bad_lines: 0,
            blank_lines: 0,
            batches: 0,
            key_index,
            lines: LineEvents::new(),
        }
    }

    /// Sets which event times may move a source's clock (default [`ClockGuard::default`]:
    /// one hour of skew, as `eval`).
    pub fn with_clock_guard(mut self, guard: ClockGuard) -> Self {
        self.clock = guard;
        self
    }

    /// Takes over what `old` (the stage of the rules before a reload) knew of each source:
    /// its clock, and a held event, which is evaluated again with these rules.
    pub fn taking_over(mut self, old: MatchStage) -> Self {
        self.watermarks = old.watermarks;
        self.carried = old.carried;
        self
    }

    /// The sources with an event held at the end of their last batch for at least `after`:
    /// when they have nothing more to read, an empty batch of each decides its event.
    pub fn quiet_sources(&self, after: Duration) -> Vec<Arc<str>> {
        let mut quiet: Vec<Arc<str>> = self
            .carried
            .iter()
            .filter(|(_, held)| held.since.elapsed() >= after)
            .map(|(source, _)| source.clone())
            .collect();
        quiet.sort_unstable();
        quiet
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
            ahead_of_clock: self.ahead_of_clock,
            held: self.carried.len() as u64,
            rules: self
                .rules
                .iter()
                .map(|r| (r.runner.rule.spec.rule_id.clone(), r.stats.clone()))
                .collect(),
        }
    }

    /// Counts a record a shared state created for rule `rule`: an alert, or a
    /// `rule_error` record.
    pub fn count_created(&mut self, rule: usize, namespace: Namespace) {
        if let Some(r) = self.rules.get_mut(rule) {
            match namespace {
                Namespace::Alert => r.stats.alerts += 1,
                Namespace::Error => r.stats.error_records += 1,
            }
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

    /// Starts `source`'s event-time clock at `time` (the clock the state kept for it), so
    /// that its first events are guarded as the last owner's next ones would have been.
    pub fn start_clock(&mut self, source: Arc<str>, time: i64) {
        self.watermarks.entry(source).or_insert(time);
    }

    /// Forgets what it knew of `source` (its partition went to another worker): windows
    /// may change meanwhile.
    pub fn forget(&mut self, source: &str) {
        self.watermarks.remove(source);
        self.carried.remove(source);
        self.ends.clear();
    }

    /// Parses and evaluates a batch of lines of `source` (offsets are the lines' numbers).
    ///
    /// An event whose time is too far ahead of the source's clock ([`ClockGuard`]) waits
    /// for the source's next event to decide whether it moves the clock, as in `eval`; when
    /// it is the batch's last event, the batch ends before it (its offset is neither
    /// applied nor committed) and it is evaluated again at the start of the source's next
    /// batch. An empty batch of a source that has nothing more to read
    /// ([`MatchStage::quiet_sources`]) decides it by the machine's clock: applied at its own
    /// time when that is not ahead of the machine's clock (events after it would be later
    /// still), else held again.
    pub fn batch(&mut self, source: Arc<str>, batch: LineBatch, max_line: usize) -> MatchBatch {
        let sampled = self
            .batches
            .is_multiple_of(super::worker::CHECK_EVERY_BATCHES);
        self.batches += 1;
        self.clock = self.clock.refreshed();
        let quiet = batch.lines.is_empty();
        let batch = match self.carried.remove(&source) {
            Some(held) if batch.lines.first().is_none_or(|l| l.number > held.offset) => {
                prepend(held, &batch)
            }
            _ => batch,
        };
        let Judged::Lines(judged) = self.worker.lines(source.clone(), batch, max_line, sampled)
        else {
            unreachable!("a line batch is judged as lines")
        };
        let JudgedLines {
            batch,
            items,
            outcomes,
            notes,
            ..
        } = judged;
        let mut out = MatchBatch {
            source: source.clone(),
            first_offset: batch.lines.first().map_or(0, |l| l.number),
            last_offset: batch.lines.last().map_or(0, |l| l.number),
            watermark: None,
            keys: Vec::new(),
            matches: Vec::new(),
            signals: Vec::new(),
            bad: Vec::new(),
            events: 0,
            batch,
        };
        self.key_index.iter_mut().for_each(HashMap::clear);
        let mut outcomes = outcomes.into_events();
        let mut notes = notes.into_iter().peekable();
        let mut watermark = self.watermarks.get(&source).copied();
        let mut held: Option<Held> = None;
        let mut events = 0;
        for item in items {
            match item {
                LineItem::Blank { .. } => self.blank_lines += 1,
                LineItem::Bad { number, reason } => {
                    self.bad_lines += 1;
                    out.bad
                        .push((Position::new(source.clone(), number), reason));
                }
                LineItem::Event { line, time } => {
                    let event = events;
                    events += 1;
                    let these = outcomes.next_event();
                    let notes = std::iter::from_fn(|| notes.next_if(|n| n.event == event));
                    if let Some(held) = held.take() {
                        let placement = if self.clock.corroborates(held.time, time) {
                            Placement::Own(held.time)
                        } else {
                            Placement::Ahead(held.time)
                        };
                        let (outcomes, notes) = (held.outcomes.into_iter(), held.notes);
                        let at = (held.line, placement);
                        self.event(at, outcomes, notes.into_iter(), &mut watermark, &mut out);
                    }
                    match self.clock.place(time, watermark) {
                        Placement::Suspect(time) => {
                            let (outcomes, notes) = (these.collect(), notes.collect());
                            held = Some(Held {
                                line,
                                time,
                                outcomes,
                                notes,
                            });
                        }
                        placement => {
                            self.event((line, placement), these, notes, &mut watermark, &mut out);
                        }
                    }
                }
            }
        }
        if let Some(held) = held {
            if quiet && self.clock.settles(held.time) {
                let (outcomes, notes) = (held.outcomes.into_iter(), held.notes.into_iter());
                let at = (held.line, Placement::Own(held.time));
                self.event(at, outcomes, notes, &mut watermark, &mut out);
            } else {
                // No event after it in the batch: the batch ends before it.
                let line = out.batch.lines[held.line];
                let carried = Carried {
                    offset: line.number,
                    bytes: out.batch.bytes_of(&line).to_vec(),
                    since: Instant::now(),
                };
                self.carried.insert(source.clone(), carried);
                out.last_offset = (line.number.checked_sub(1))
                    .expect("an event held for its time follows another event of its source");
            }
        }
        if let Some(w) = watermark {
            self.watermarks.insert(source, w);
        }
        // Whole counts between batches ([`MatchStage::counts`]).
        Health::absent_all(&mut self.rules, self.events);
        out.watermark = watermark;
        if self.ends.len() > MAX_KNOWN_ENDS {
            let mut ends: Vec<i64> = self.ends.values().copied().collect();
            ends.sort_unstable();
            let cut = ends[ends.len() / 2];
            self.ends.retain(|_, end| *end > cut);
        }
        out
    }

    /// Applies the outcomes of the event of `line` where `placement` puts it, moving the
    /// source's clock (`watermark`) when its time may.
    fn event(
        &mut self,
        (line, placement): (usize, Placement),
        outcomes: impl Iterator<Item = (usize, Verdict)>,
        notes: impl Iterator<Item = Note>,
        watermark: &mut Option<i64>,
        out: &mut MatchBatch,
    ) {
        self.events += 1;
        out.events += 1;
        let offset = out.batch.lines[line].number;
        let location = Position::new(out.source.clone(), offset);
        // An event without a readable time, or too far ahead, gets the clock's time.
        let clock = watermark.unwrap_or(0);
        let time = match placement {
            Placement::Own(time) => {
                *watermark = Some(watermark.map_or(time, |w| w.max(time)));
                time
            }
            Placement::Missing => clock,
            Placement::Ahead(time) | Placement::Suspect(time) => {
                self.ahead_of_clock += 1;
                (self.health.warn)(&self.clock.ahead(&location, time, clock));
                clock
            }
        };
        let at = At { line, offset, time };
        let mut parsed: Option<Arc<Event>> = None;
        let mut notes = notes.peekable();
        for (index, outcome) in outcomes {
            let rule_notes =
                std::iter::from_fn(|| notes.next_if(|n| n.rule == index)).map(|note| note.what);
            let rule = &mut self.rules[index];
            Health::verdict(rule, self.events);
            let Some(pending) = self.health.before(rule, &outcome, rule_notes, &location) else {
                continue;
            };
            self.outcome(index, outcome, &at, &location, &mut parsed, out);
            if let Some(error) =
                self.health
                    .after(&mut self.rules[index], index, pending, &location)
            {
                self.push(index, error_counted(&error), &at, &mut parsed, out);
            }
        }
    }

    /// Applies one rule's outcome on one event (after [`Health::before`]).
    fn outcome(
        &mut self,
        index: usize,
        outcome: Verdict,
        at: &At,
        location: &Position,
        parsed: &mut Option<Arc<Event>>,
        out: &mut MatchBatch,
    ) {
        let rule = &mut self.rules[index];
        let counted = match outcome {
            // Counted by `Health::before`.
            Verdict::NoMatch => return,
            Verdict::Skipped => {
                rule.stats.skipped += 1;
                return;
            }
            Verdict::Signal => {
                let event = self.lines.event(&out.batch, at.line, parsed);
                let record = rule.signal(event.whole_value(), at.time, location);
                let record = serde_json::to_string(&record).expect("a signal is JSON");
                out.signals.push(Signal {
                    offset: at.offset,
                    rule: index,
                    record,
                });
                return;
            }
            Verdict::Failed(failure) => {
                error_counted(&self.health.failed(rule, *failure, location))
            }
            Verdict::Match(mut info) => {
                let (dedup, unique, counts_unique) = rule.matched(&mut info);
                Counted {
                    namespace: Namespace::Alert,
                    dedup,
                    unique,
                    counts_unique,
                    error: None,
                }
            }
        };
        self.push(index, counted, at, parsed, out);
    }

    /// Adds a match of rule `index` to the batch, with the fields of the window it opens
    /// when it may open one.
    fn push(
        &mut self,
        index: usize,
        counted: Counted,
        at: &At,
        parsed: &mut Option<Arc<Event>>,
        out: &mut MatchBatch,
    ) {
        let (namespace, dedup) = (counted.namespace, &counted.dedup);
        let spec = &self.rules[index].runner.rule.spec;
        let slot = 2 * index + usize::from(namespace == Namespace::Error);
        let key = match self.key_index[slot].get(dedup.as_str()) {
            Some(&key) => key,
            None => {
                out.keys.push(WindowRef {
                    id: window_id(&spec.rule_id, namespace, dedup),
                    rule_id: spec.rule_id.clone(),
                    namespace,
                    dedup: dedup.clone(),
                    period_ms: spec.dedup_period_ms().max(1),
                    threshold: if namespace == Namespace::Error {
                        1
                    } else {
                        spec.threshold.max(1)
                    },
                    counts_unique: counted.counts_unique,
                    rule: index,
                });
                self.key_index[slot].insert(dedup.clone(), out.keys.len() - 1);
                out.keys.len() - 1
            }
        };
        let id = &out.keys[key].id;
        let period = out.keys[key].period_ms;
        // Only a match past the end known, or of a window not known, gets fields (and sets
        // the end it would have). Fields for the first match of each window of every batch
        // cost most of a batch's time under load, and setting their ends hid the ends the
        // state told: a wrong guess costs the state's request for fields, never an alert.
        let may_open = self.ends.get(id).is_none_or(|&end| at.time >= end);
        let opens = may_open.then(|| {
            self.ends.insert(id.clone(), at.time.saturating_add(period));
            let error = counted.error.clone();
            self.opener(
                index, namespace, dedup, error, at.time, &out.batch, at.line, parsed,
            )
        });
        out.matches.push(Match {
            key,
            offset: at.offset,
            time_ms: at.time,
            unique: counted.unique,
            opens,
            line: at.line,
            error: counted.error,
        });
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
        let alert_id = alert_id(&rule.runner.rule.spec.rule_id, namespace, dedup, time);
        let fields = match error {
            Some(error) => error_fields(&rule.runner.rule.spec, error),
            None => freeze(rule, &self.lines.event(batch, line, parsed), time, None),
        };
        let stored = StoredFields::new(fields, &rule.runner.rule);
        Opener {
            alert_id,
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
            let (error, time, line) = (m.error.clone(), m.time_ms, m.line);
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
}

/// The line of `held` followed by the lines of `batch`.
fn prepend(held: Carried, batch: &LineBatch) -> LineBatch {
    let Carried {
        offset: number,
        bytes,
        ..
    } = held;
    let shift = bytes.len();
    let mut out = LineBatch::with_capacity(shift + batch.bytes.len(), batch.lines.len() + 1);
    out.push_line(number, &bytes);
    out.bytes.extend_from_slice(&batch.bytes);
    out.lines.extend(batch.lines.iter().map(|l| BatchLine {
        start: l.start + shift,
        end: l.end + shift,
        ..*l
    }));
    out
}

/// What a rule error counts into: its kind's window of the error namespace.
fn error_counted(error: &RuleError) -> Counted {
    Counted {
        namespace: Namespace::Error,
        dedup: error.kind().to_owned(),
        unique: None,
        counts_unique: false,
        error: Some(error.to_string()),
    }
}

/// Parses the lines of the events whose alert fields the stage freezes (a window's first
/// match) or records (a signal), once per line. Pruned, as on the workers, to the paths
/// these calls read: none at first, then those learned from their reads, kept apart from
/// the workers' so that no event's parse keeps what only openers read. A read of a path
/// not kept parses the line whole (the first opener's, and any after a new path), as
/// every such line was before (a whole parse was 3.4% of a worker's time under load).
struct LineEvents {
    paths: Arc<WantedPaths>,
    wanted: Arc<Wanted>,
    generation: u64,
}

impl LineEvents {
    fn new() -> Self {
        LineEvents {
            paths: Arc::new(WantedPaths::new(Wanted::nothing())),
            wanted: Arc::new(Wanted::nothing()),
            // A generation no snapshot has: the first parse takes one.
            generation: u64::MAX,
        }
    }

    /// The event on `line` of `batch`, parsed on the first call for that line.
    fn event(
        &mut self,
        batch: &LineBatch,
        line: usize,
        parsed: &mut Option<Arc<Event>>,
    ) -> Arc<Event> {
        parsed
            .get_or_insert_with(|| {
                self.paths.update(&mut self.wanted, &mut self.generation);
                // The event keeps its line, not the whole batch.
                let mut copy = LineBatch::default();
                let at = &batch.lines[line];
                copy.push_line(at.number, batch.bytes_of(at));
                let one = copy.lines[0];
                let from = LineParse::new(Arc::new(copy), self.wanted.clone(), self.paths.clone());
                match Event::parse(&Arc::new(from), &one) {
                    Ok(Some(event)) => Arc::new(event),
                    _ => unreachable!("the line parsed as an event on the worker"),
                }
            })
            .clone()
    }
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

    /// An opener's line is parsed for the paths the stage's calls read: none at first (a
    /// read parses it whole), then those read before.
    #[test]
    fn opener_lines_are_parsed_for_the_paths_read_before() {
        let text = r#"{"user": {"email": "a@b.c", "id": 7}, "workspaceId": "w1"}"#;
        let mut batch = LineBatch::default();
        batch.push_line(9, text.as_bytes());
        let mut lines = LineEvents::new();
        let first = lines.event(&batch, 0, &mut None);
        assert!(!lines.wanted.covers(&["user", "email"]));
        assert_eq!(first.get(&["user", "email"]), Some(&Value::from("a@b.c")));
        let mut parsed = None;
        let second = lines.event(&batch, 0, &mut parsed);
        assert!(
            lines.wanted.covers(&["user", "email"]),
            "learned from the first read"
        );
        assert!(!lines.wanted.covers(&["workspaceId"]), "never read");
        assert_eq!(second.get(&["user", "email"]), Some(&Value::from("a@b.c")));
        assert_eq!(second.get(&["workspaceId"]), Some(&Value::from("w1")));
        assert_eq!(second.get(&["user", "id"]), Some(&Value::from(7)));
        // The same line again in one batch: parsed once.
        assert!(Arc::ptr_eq(&second, &lines.event(&batch, 0, &mut parsed)));
    }
}
