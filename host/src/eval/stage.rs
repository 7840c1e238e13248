//! [`Stage`]: applies the workers' outcomes in input order: the event-time clock, windows,
//! alert fields, counts, the failure budget and quarantine, and the output. Every decision
//! that depends on order is made here, so the output does not depend on the thread count.
//! Records go to a [`Sink`]; checkpoints go through a [`Checkpointer`] to whatever state
//! backend it was given.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

use super::health::{Health, RuleError, error_fields};
use super::runner::Runner;
use super::skew::{ClockGuard, Placement};
use super::summary::{KeptWindows, Quarantine, RuleStats, Summary};
use super::verdict::{Judged, MatchCalls, Note, Verdict};
use crate::alert::{AlertFields, AlertRecord, Opener, OpenerEvent, SignalRecord, WindowFields};
use crate::calls::{CallResult, Function, RuleFailure};
use crate::clock::format_ms;
use crate::event::Event;
use crate::input::{Line, parse_line};
use crate::semantics;
use crate::sink::{Record, Sink};
use crate::source::Position;
use crate::state::backend::HeldLine;
use crate::state::checkpoint::{AtEnd, Checkpointer};
use crate::state::{Added, AlertState, CapReached, Closed, Hit, Namespace, WindowKey};

/// Per-rule bookkeeping of the alert stage.
pub(super) struct StageRule {
    /// The rule, and the instance that freezes alert fields when a window opens.
    pub runner: Runner,
    pub stats: RuleStats,
    /// Failures already printed to stderr (the rest are only counted).
    pub reported: u32,
    /// Costly failed calls so far, in input order: the failure budget ([`Quarantine`]).
    pub spent: u32,
    /// The events applied up to which those without a verdict of this rule (filtered out)
    /// are counted ([`Health::absent`]).
    pub counted_to: u64,
}

impl StageRule {
    pub fn new(runner: Runner) -> Self {
        StageRule {
            runner,
            stats: RuleStats::default(),
            reported: 0,
            spent: 0,
            counted_to: 0,
        }
    }

    /// Counts a match and its failed calls: its dedup string, its unique value, and
    /// whether its window counts unique values. Takes `dedup`'s and `unique`'s strings
    /// out of `info` (its title stays, for the alert).
    pub fn matched(&mut self, info: &mut MatchCalls) -> (String, Option<String>, bool) {
        self.stats.matches += 1;
        for (function, failure) in info.failures() {
            count_aux(self, function, failure);
        }
        let no_title: CallResult<String> = Ok(None);
        let title = info.title.as_ref().unwrap_or(&no_title);
        let called = std::mem::replace(&mut info.dedup, Ok(None));
        let dedup = semantics::dedup(&self.runner.rule.spec, called, title);
        // A rule defines `unique` when the call returned a value or failed; a failed call
        // counts the event but adds no value (Panther: `None`).
        let counts_unique = !matches!(info.unique, Ok(None));
        let unique = std::mem::replace(&mut info.unique, Ok(None));
        (dedup, semantics::unique(unique), counts_unique)
    }

    /// Counts a signal: its record.
    pub fn signal<'e>(
        &'e mut self,
        event: &'e Value,
        time: i64,
        location: &Position,
    ) -> SignalRecord<'e> {
        self.stats.matches += 1;
        self.stats.signals += 1;
        let spec = &self.runner.rule.spec;
        SignalRecord {
            kind: "signal",
            rule_id: &spec.rule_id,
            severity: spec.severity.as_str(),
            event_time: format_ms(time),
            event_location: location.to_string(),
            event,
        }
    }
}

/// An event whose time is ahead of the clock, waiting for the next event to decide where
/// it goes ([`ClockGuard`]).
struct Held {
    location: Position,
    line: Vec<u8>,
    parsed: Option<Arc<Event>>,
    time: i64,
    outcomes: Vec<(usize, Verdict)>,
    notes: Vec<Note>,
    /// Lines applied after it meanwhile (blank or bad): checkpoints count lines in order.
    lines_after: Vec<Position>,
}

/// The event the stage hands to rule calls: parsed already, or its line, parsed on first
/// use.
pub(super) struct StageEvent<'a> {
    pub line: &'a [u8],
    pub parsed: Option<Arc<Event>>,
}

impl StageEvent<'_> {
    /// The event kept as a window's first match: its line, as read.
    fn opener(&self) -> OpenerEvent {
        match &self.parsed {
            Some(event) if self.line.is_empty() => OpenerEvent::Parsed(event.clone()),
            // The line was checked as UTF-8 when read: checked again here in vector code
            // (`from_utf8_lossy`'s check was ~1% of a run where many windows open).
            _ => OpenerEvent::Line(match simdutf8::basic::from_utf8(self.line) {
                Ok(text) => text.into(),
                Err(_) => String::from_utf8_lossy(self.line).into(),
            }),
        }
    }

    fn get(&mut self) -> &Arc<Event> {
        let line = self.line;
        self.parsed.get_or_insert_with(|| match parse_line(line) {
            Line::Event(event) => Arc::new(Event::whole(event)),
            _ => unreachable!("the line parsed as an event on the worker"),
        })
    }
}

/// Applies workers' outcomes in input order: windows, alerts, counts, quarantine.
pub(super) struct Stage<'a> {
    pub rules: Vec<StageRule>,
    pub state: AlertState<Position, WindowFields>,
    pub sink: Box<dyn Sink + 'a>,
    /// With `--state`: commits the state every so many lines and at the end.
    pub checkpoints: Option<Checkpointer>,
    pub summary: Summary,
    /// Failures, rule errors and quarantine, as `serve`'s stage takes them too.
    pub health: Health,
    pub clock: ClockGuard,
    held: Option<Held>,
}

impl<'a> Stage<'a> {
    pub fn new(
        rules: Vec<StageRule>,
        sink: Box<dyn Sink + 'a>,
        warn: Box<dyn FnMut(&str) + Send>,
        quarantined: Arc<[AtomicBool]>,
    ) -> Self {
        Stage {
            rules,
            state: AlertState::default(),
            sink,
            checkpoints: None,
            summary: Summary::default(),
            health: Health {
                quarantine: Quarantine::default(),
                quarantined,
                warn,
                lasts: "for the rest of the run",
            },
            clock: ClockGuard::default(),
            held: None,
        }
    }

    pub fn apply(&mut self, item: Judged) -> io::Result<()> {
        match item {
            Judged::FileStarted => self.summary.files += 1,
            Judged::Blank(location) => {
                self.summary.blank_lines += 1;
                self.line_done(&location)?;
            }
            Judged::Bad { location, reason } => {
                self.summary.bad_lines += 1;
                (self.health.warn)(&format!("`{location}`: skipped: {reason}"));
                self.line_done(&location)?;
            }
            Judged::Events {
                events,
                outcomes,
                notes,
            } => {
                let mut outcomes = outcomes.into_events();
                let mut notes = notes.into_iter().peekable();
                for (index, staged) in events.into_iter().enumerate() {
                    let these: Vec<Note> =
                        std::iter::from_fn(|| notes.next_if(|n| n.event == index)).collect();
                    let event = StageEvent {
                        line: &[],
                        parsed: Some(staged.event),
                    };
                    let outcomes = outcomes.next_event();
                    self.event(staged.location, event, staged.time, outcomes, these)?;
                }
                Health::absent_all(&mut self.rules, self.summary.events);
            }
            Judged::Lines(lines) => {
                let mut outcomes = lines.outcomes.into_events();
                let mut notes = lines.notes.into_iter().peekable();
                let mut events = 0;
                for item in lines.items {
                    let location = |offset| Position {
                        source: lines.file.clone(),
                        offset,
                    };
                    match item {
                        crate::eval::verdict::LineItem::Event { line, time } => {
                            let these: Vec<Note> =
                                std::iter::from_fn(|| notes.next_if(|n| n.event == events))
                                    .collect();
                            events += 1;
                            let batch_line = &lines.batch.lines[line];
                            let event = StageEvent {
                                line: lines.batch.bytes_of(batch_line),
                                parsed: None,
                            };
                            let outcomes = outcomes.next_event();
                            self.event(location(batch_line.number), event, time, outcomes, these)?;
                        }
                        crate::eval::verdict::LineItem::Blank { number } => {
                            self.summary.blank_lines += 1;
                            self.line_done(&location(number))?;
                        }
                        crate::eval::verdict::LineItem::Bad { number, reason } => {
                            self.apply(Judged::Bad {
                                location: location(number),
                                reason,
                            })?;
                        }
                    }
                }
                Health::absent_all(&mut self.rules, self.summary.events);
            }
        }
        Ok(())
    }

    /// Counts a line as applied; commits the state when a checkpoint is due. While an
    /// event is held, later lines wait for it: the state records lines in input order.
    fn line_done(&mut self, location: &Position) -> io::Result<()> {
        let Some(checkpoints) = &mut self.checkpoints else {
            return Ok(());
        };
        if let Some(held) = &mut self.held {
            held.lines_after.push(location.clone());
            return Ok(());
        }
        if checkpoints.saw(location) {
            self.checkpoint(false)?;
        }
        Ok(())
    }

    /// Syncs the records written so far and commits the state with the sink's mark.
    fn checkpoint(&mut self, finished: bool) -> io::Result<()> {
        let Some(checkpoints) = &mut self.checkpoints else {
            return Ok(());
        };
        let mark = self.sink.sync()?;
        checkpoints
            .commit(&mut self.state, mark, finished)
            .map_err(io::Error::other)
    }

    /// One event in input order: decides where its time puts it ([`ClockGuard`]), which
    /// may hold it until the next event, then applies it.
    fn event(
        &mut self,
        location: Position,
        event: StageEvent<'_>,
        time: Option<i64>,
        outcomes: impl Iterator<Item = (usize, Verdict)>,
        notes: Vec<Note>,
    ) -> io::Result<()> {
        if let Some(held) = self.held.take() {
            let placement = if self.clock.corroborates(held.time, time) {
                Placement::Own(held.time)
            } else {
                Placement::Ahead(held.time)
            };
            self.apply_held(held, placement)?;
        }
        let placement = self.clock.place(time, self.state.watermark());
        if let Placement::Suspect(time) = placement {
            self.held = Some(Held {
                location,
                line: event.line.to_vec(),
                parsed: event.parsed,
                time,
                outcomes: outcomes.collect(),
                notes,
                lines_after: Vec::new(),
            });
            return Ok(());
        }
        self.apply_event(&location, event, placement, outcomes, notes)?;
        self.line_done(&location)
    }

    fn apply_held(&mut self, held: Held, placement: Placement) -> io::Result<()> {
        let Held {
            location,
            line,
            parsed,
            outcomes,
            notes,
            lines_after,
            ..
        } = held;
        let event = StageEvent {
            line: &line,
            parsed,
        };
        self.apply_event(&location, event, placement, outcomes.into_iter(), notes)?;
        self.line_done(&location)?;
        for location in &lines_after {
            self.line_done(location)?;
        }
        Ok(())
    }

    fn apply_event(
        &mut self,
        location: &Position,
        mut event: StageEvent<'_>,
        placement: Placement,
        outcomes: impl Iterator<Item = (usize, Verdict)>,
        notes: Vec<Note>,
    ) -> io::Result<()> {
        self.summary.events += 1;
        let clock = self.state.watermark().unwrap_or(0);
        let time = match placement {
            Placement::Own(time) => {
                self.state.advance(time);
                time
            }
            Placement::Missing => {
                self.summary.events_without_time += 1;
                clock
            }
            // A suspect event is held by `event` until it is decided, never applied as such.
            Placement::Ahead(time) | Placement::Suspect(time) => {
                self.summary.events_ahead_of_clock += 1;
                (self.health.warn)(&self.clock.ahead(location, time, clock));
                clock
            }
        };
        self.write_closed()?;
        let mut notes = notes.into_iter().peekable();
        for (index, outcome) in outcomes {
            let rule = &mut self.rules[index];
            Health::verdict(rule, self.summary.events);
            let rule_notes =
                std::iter::from_fn(|| notes.next_if(|n| n.rule == index)).map(|note| note.what);
            let Some(pending) = self.health.before(rule, &outcome, rule_notes, location) else {
                continue;
            };
            self.apply_outcome(index, outcome, &mut event, time, location)?;
            if let Some(error) = self
                .health
                .after(&mut self.rules[index], index, pending, location)
            {
                self.record_error(index, &error, time, location);
            }
        }
        Ok(())
    }

    fn apply_outcome(
        &mut self,
        index: usize,
        outcome: Verdict,
        event: &mut StageEvent<'_>,
        time: i64,
        location: &Position,
    ) -> io::Result<()> {
        let rule = &mut self.rules[index];
        match outcome {
            Verdict::Skipped => {
                // A worker skips a rule only once it has spent its failure budget in the
                // line batch, which spends it here too (a quarantined rule gets no verdict).
                debug_assert!(false, "skipped before the quarantine");
                rule.stats.skipped += 1;
            }
            Verdict::NoMatch => {}
            Verdict::Failed(failure) => {
                let error = self.health.failed(rule, *failure, location);
                self.record_error(index, &error, time, location);
            }
            Verdict::Signal => {
                let record = rule.signal(event.get().whole_value(), time, location);
                self.sink.write(&Record::Signal(&record))?;
            }
            Verdict::Match(mut info) => self.apply_match(index, &mut info, event, time, location),
        }
        Ok(())
    }

    fn apply_match(
        &mut self,
        index: usize,
        info: &mut MatchCalls,
        event: &mut StageEvent<'_>,
        time: i64,
        location: &Position,
    ) {
        let (dedup, unique, counts_unique) = self.rules[index].matched(info);
        let key = WindowKey {
            rule: index,
            namespace: Namespace::Alert,
            dedup,
        };
        let hit = Hit {
            time_ms: time,
            location: location.clone(),
            unique,
        };
        let hit = match self.state.add(&key, hit) {
            Ok(Added::Counted) => return,
            Ok(Added::Alerted) => return self.freeze_alerted(index, &key),
            Ok(Added::CountedWithoutUnique(cap)) => {
                self.state_limit(index, cap, time, location);
                return;
            }
            Err(hit) => hit,
        };
        if let Err(cap) = self.state.can_open(&key) {
            self.state_limit(index, cap, time, location);
            return;
        }
        let rule = &mut self.rules[index];
        let spec = &rule.runner.rule.spec;
        let (period, threshold) = (spec.dedup_period_ms(), spec.threshold);
        let given = info.title.as_ref().map(|t| semantics::title(spec, t));
        // A window of threshold 1 alerts at its first match (or, counting unique values,
        // at its first value): its fields are frozen now. One of a higher threshold keeps
        // its first match, and freezes them from it when it alerts, if ever
        // (`freeze_alerted`).
        let fields = match threshold <= 1 {
            true => WindowFields::Frozen(freeze(rule, event.get(), time, given)),
            false => WindowFields::Pending(Opener {
                event: event.opener(),
                title: given,
            }),
        };
        if let Err(cap) = self
            .state
            .open(key, hit, period, threshold, counts_unique, fields)
        {
            self.state_limit(index, cap, time, location);
        }
    }

    /// Freezes the alert fields of the window for `key`, which has just alerted, from its
    /// first match, at that match's time (as the window would have when it opened).
    fn freeze_alerted(&mut self, index: usize, key: &WindowKey) {
        let Some(window) = self.state.live(key) else {
            return;
        };
        let WindowFields::Pending(opener) = &window.fields else {
            return;
        };
        let (time, title) = (window.start_ms, opener.title.clone());
        let event = match &opener.event {
            OpenerEvent::Parsed(event) => event.clone(),
            OpenerEvent::Line(line) => StageEvent {
                line: line.as_bytes(),
                parsed: None,
            }
            .get()
            .clone(),
        };
        let frozen = freeze(&mut self.rules[index], &event, time, title);
        let replaced = self.state.replace_fields(key, WindowFields::Frozen(frozen));
        debug_assert!(replaced.is_ok(), "the window is live");
    }

    /// A state limit: counted, reported and recorded.
    fn state_limit(&mut self, index: usize, cap: CapReached, time: i64, location: &Position) {
        let error = RuleError::StateLimit(cap);
        self.health
            .count_error(&mut self.rules[index], &error, location);
        self.record_error(index, &error, time, location);
    }

    /// Records a rule error (counted already): its window of the error namespace.
    fn record_error(&mut self, index: usize, error: &RuleError, time: i64, location: &Position) {
        let rule = &self.rules[index];
        let key = WindowKey {
            rule: index,
            namespace: Namespace::Error,
            dedup: error.kind().to_owned(),
        };
        let hit = Hit {
            time_ms: time,
            location: location.clone(),
            unique: None,
        };
        if let Err(hit) = self.state.add(&key, hit) {
            let spec = &rule.runner.rule.spec;
            let frozen = WindowFields::Frozen(error_fields(spec, error.to_string()));
            // Rule errors alert at the first occurrence, within the rule's period. Their
            // windows (one per kind) are not capped.
            let opened = self
                .state
                .open(key, hit, spec.dedup_period_ms(), 1, false, frozen);
            debug_assert!(opened.is_ok(), "rule-error windows are not capped");
        }
    }

    fn write_closed(&mut self) -> io::Result<()> {
        for closed in self.state.take_closed() {
            self.write(&closed)?;
        }
        Ok(())
    }

    fn write(&mut self, closed: &Closed<Position, WindowFields>) -> io::Result<()> {
        let rule = &mut self.rules[closed.key.rule];
        let is_error = closed.key.namespace == Namespace::Error;
        let record = AlertRecord::from_closed(&rule.runner.rule.spec, closed);
        self.sink.write(&Record::Alert(&record))?;
        if is_error {
            rule.stats.error_records += 1;
        } else {
            rule.stats.alerts += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<Summary> {
        let at_end = self
            .checkpoints
            .as_ref()
            .map_or(AtEnd::CloseWindows, Checkpointer::at_end);
        if let Some(held) = self.held.take() {
            // No event came after it to decide it. When every window closes now, its time
            // closes none early; when they stay for the next run, so does it, for that
            // run's first event to decide.
            match (at_end, &mut self.checkpoints) {
                (AtEnd::KeepWindows, Some(checkpoints)) => {
                    let text = match &held.parsed {
                        Some(event) if held.line.is_empty() => event.whole_value().to_string(),
                        _ => String::from_utf8_lossy(&held.line).into_owned(),
                    };
                    checkpoints.hold(HeldLine {
                        position: held.location.clone(),
                        text,
                    });
                    for location in std::iter::once(&held.location).chain(&held.lines_after) {
                        checkpoints.saw(location);
                    }
                    self.summary.events_held += 1;
                }
                _ => {
                    let time = held.time;
                    self.apply_held(held, Placement::Own(time))?;
                }
            }
        }
        self.write_closed()?;
        if at_end == AtEnd::CloseWindows {
            for closed in self.state.close_all() {
                self.write(&closed)?;
            }
        }
        self.sink.flush()?;
        self.checkpoint(true)?;
        Health::absent_all(&mut self.rules, self.summary.events);
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
            .map(|r| (r.runner.rule.spec.rule_id.clone(), r.stats))
            .collect();
        Ok(summary)
    }
}

/// Counts a failed call.
pub(super) fn count_failed(stats: &mut RuleStats, function: Function, failure: &RuleFailure) {
    *stats
        .failed_calls
        .entry((function, failure.kind()))
        .or_default() += 1;
}

/// Counts a failed call to a function whose fallback replaces its value.
pub(super) fn count_aux(rule: &mut StageRule, function: Function, failure: &RuleFailure) {
    rule.stats.aux_errors += 1;
    rule.stats.restarts += u64::from(failure.needs_fresh_instance());
    rule.spent += u32::from(failure.needs_fresh_instance());
    count_failed(&mut rule.stats, function, failure);
}

/// Calls the functions whose values an alert keeps, for the match at `time` that opened a
/// window (`title` too, unless given: the title the match came with, after Panther's
/// fallbacks), and applies Panther's fallbacks; failed calls and invalid values are
/// counted. All calls share one call's deadline, so that a stage (which every event waits
/// for) is held up by at most one deadline per window.
pub(super) fn freeze(
    rule: &mut StageRule,
    event: &Arc<Event>,
    time: i64,
    title: Option<String>,
) -> AlertFields {
    rule.runner.calls().set_time(time);
    rule.runner.calls().share_deadline(true);
    let called = title.is_none().then(|| rule.runner.title(event));
    let calls = rule.runner.calls();
    let severity = calls.text(Function::Severity, event);
    let context = calls.text(Function::AlertContext, event);
    let description = calls.text(Function::Description, event);
    let reference = calls.text(Function::Reference, event);
    let runbook = calls.text(Function::Runbook, event);
    let destinations = calls.destinations(event);
    calls.share_deadline(false);
    // A title given was counted with its match.
    for (function, failure) in [
        (
            Function::Title,
            called.as_ref().and_then(|t| t.as_ref().err()),
        ),
        (Function::Severity, severity.as_ref().err()),
        (Function::AlertContext, context.as_ref().err()),
        (Function::Description, description.as_ref().err()),
        (Function::Reference, reference.as_ref().err()),
        (Function::Runbook, runbook.as_ref().err()),
        (Function::Destinations, destinations.as_ref().err()),
    ] {
        if let Some(failure) = failure {
            count_aux(rule, function, failure);
        }
    }
    let spec = &rule.runner.rule.spec;
    let title = title.unwrap_or_else(|| semantics::title(spec, called.as_ref().expect("called")));
    let (severity_value, severity_error) = semantics::severity(spec, &severity);
    let (alert_context, context_error) = semantics::alert_context(&context);
    // Failed calls were counted above; invalid values returned are errors too.
    let invalid = u64::from(severity.is_ok() && severity_error.is_some())
        + u64::from(context.is_ok() && context_error.is_some());
    rule.stats.aux_errors += invalid;
    let (destinations, suppressed) = semantics::destinations(spec, &destinations);
    AlertFields {
        title,
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
