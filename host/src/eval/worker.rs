//! [`Worker`]: parses lines, applies each rule's `InlineFilters` and calls the rules, with
//! its own instance of every rule; the stage applies what it found in input order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Rule;
use super::runner::{Check, Paths, Runner};
use super::verdict::{Judged, JudgedLines, LineItem, Note, Outcomes, StagedEvent, Verdict};
use crate::clock::Clock;
use crate::event::Event;
use crate::event::{LineParse, WantedPaths};
use crate::filters::FilterIndex;
use crate::input::{BadLine, LineBatch};
use rulehost_event::Wanted;

/// Events gathered per `evaluate-batch` call at most: enough to spread a call's fixed
/// cost thin, few enough that the events stay in cache and a failed batch costs little.
pub(super) const BATCH_EVENTS: usize = 32;

/// In `eval`, the first fast-path call of each rule in one line batch out of this many
/// is checked against one call per function (line batches are numbered in input order,
/// so which calls are checked does not depend on the number of threads).
pub(super) const CHECK_EVERY_BATCHES: u64 = 16;

/// Which fast-path calls a worker checks against one call per function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// A sample: the first call of each rule in every 16th line batch,
    /// or every that-many-thousandth event given one at a time (`eval`).
    #[default]
    Sampled,
    /// Every call (`rulehost test`).
    Every,
}

/// Events of a line batch whose rule calls are gathered, to be made one batch per rule
/// ([`Worker::flush`]).
#[derive(Default)]
struct Pending {
    /// Each event, its call time, and its index among the batch's events.
    events: Vec<(Arc<Event>, i64, usize)>,
    /// Per rule: the events (indices into `events`) that passed its filters, each with
    /// the place of its verdict in the batch's outcomes.
    calls: Vec<Vec<(usize, usize)>>,
}

/// Evaluates events against every rule; owns one instance per rule.
pub(super) struct Worker {
    runners: Vec<Runner>,
    clock: Clock,
    /// Set by the alert stage when it quarantines a rule, so workers stop calling it.
    quarantined: Arc<[AtomicBool]>,
    /// Each rule's `InlineFilters`, as an index into `filter_results`; rules with the same
    /// filters share one ([`FilterGroups`]).
    filters: FilterGroups,
    /// Each distinct filter's result on the current event, computed on first use.
    filter_results: Vec<Option<bool>>,
    verify: Verify,
    /// Events given one at a time so far ([`Worker::events`]), for the sample.
    single_events: u64,
    /// What lines are parsed for: the filters' and the clock's paths, and those the rules
    /// read; shared by the evaluator's workers.
    wanted: Arc<WantedPaths>,
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
    fn new(rules: &[Rule]) -> Self {
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

/// What every worker of one evaluator shares.
#[derive(Clone)]
pub(super) struct WorkerSettings {
    pub paths: Paths,
    pub verify: Verify,
    pub budget: Option<u32>,
}

impl Worker {
    pub fn new(
        rules: &[Rule],
        clock: Clock,
        quarantined: Arc<[AtomicBool]>,
        settings: &WorkerSettings,
    ) -> Self {
        let filters = FilterGroups::new(rules);
        let mut wanted = Wanted::nothing();
        for path in clock.paths() {
            wanted.add(path);
        }
        for filters in rules.iter().filter_map(|r| r.spec.inline_filters.as_ref()) {
            for path in filters.paths() {
                wanted.add(path);
            }
        }
        Worker {
            wanted: Arc::new(WantedPaths::new(wanted)),
            runners: rules
                .iter()
                .cloned()
                .map(|rule| Runner::new(rule, settings.paths, settings.budget))
                .collect(),
            clock,
            quarantined,
            filter_results: vec![None; filters.distinct],
            filters,
            verify: settings.verify,
            single_events: 0,
        }
    }

    /// Another worker of the same rules, with instances of its own.
    pub fn fork(&self, settings: &WorkerSettings) -> Self {
        Worker {
            runners: self
                .runners
                .iter()
                .map(|s| Runner::new(s.rule.clone(), settings.paths, settings.budget))
                .collect(),
            clock: self.clock.clone(),
            quarantined: self.quarantined.clone(),
            filters: self.filters.clone(),
            filter_results: self.filter_results.clone(),
            verify: self.verify,
            single_events: 0,
            wanted: self.wanted.clone(),
        }
    }

    /// Starts a batch of events: the failure budget counts again from zero (the stage
    /// counts the run's total), and a sampled batch checks its first fast-path calls.
    fn begin(&mut self, sampled: bool) {
        let check = match (self.verify, sampled) {
            (Verify::Every, _) => Check::All,
            (Verify::Sampled, true) => Check::Next,
            (Verify::Sampled, false) => Check::Off,
        };
        for runner in &mut self.runners {
            runner.spent = 0;
            runner.check = check;
        }
    }

    /// Appends the verdicts on `event` to `out`, in rule order: none for a rule its filters
    /// rule it out of or that is quarantined; a rule the event must be evaluated by gets a
    /// placeholder, and the event joins `pending` for that rule: [`Worker::flush`] makes the
    /// calls.
    fn defer(
        &mut self,
        event: Arc<Event>,
        time: Option<i64>,
        index: usize,
        out: &mut Outcomes,
        pending: &mut Pending,
    ) {
        self.filter_results.fill(None);
        self.filters.index.apply(&*event, &mut self.filter_results);
        pending.calls.resize_with(self.runners.len(), Vec::new);
        let at = pending.events.len();
        for (rule, group) in self.filters.of_rule.iter().enumerate() {
            // Filters first: with many rules, most rule most events out, and nothing else
            // of such a rule is read.
            if let Some(group) = *group {
                let passes = match self.filter_results[group] {
                    Some(known) => known,
                    // Most results are known here (the filter index made them, or a rule
                    // with the same filters): the rule's spec is read only to make one.
                    None => {
                        let spec = &self.runners[rule].rule.spec;
                        let filters = spec.inline_filters.as_ref();
                        let passes = filters.is_none_or(|filters| filters.matches(&*event));
                        self.filter_results[group] = Some(passes);
                        passes
                    }
                };
                if !passes {
                    // Filtered out: no verdict.
                    continue;
                }
            }
            if self.quarantined[rule].load(Ordering::Relaxed) {
                // Not called, so no verdict either: the stage, which quarantined the rule
                // before this event, counts the event as skipped.
                continue;
            }
            // A placeholder, replaced by `flush`.
            pending.calls[rule].push((at, out.push(rule, Verdict::NoMatch)));
        }
        out.end_event();
        // Rules without a readable event time see the epoch; the stage assigns the real
        // fallback (the newest time seen), which a worker cannot know.
        pending.events.push((event, time.unwrap_or(0), index));
    }

    /// Makes the calls `pending` gathered, one batch per rule, puts each outcome in its
    /// place in `out`, and drops the events.
    fn flush(&mut self, pending: &mut Pending, out: &mut Outcomes, notes: &mut Vec<Note>) {
        let mut events = Vec::new();
        let mut times = Vec::new();
        let mut indices = Vec::new();
        let mut outcomes = Vec::new();
        for (rule, (runner, calls)) in self.runners.iter_mut().zip(&mut pending.calls).enumerate() {
            if calls.is_empty() {
                continue;
            }
            events.clear();
            times.clear();
            indices.clear();
            for &(at, _) in calls.iter() {
                let (event, time, index) = &pending.events[at];
                events.push(event.clone());
                times.push(*time);
                indices.push(*index);
            }
            outcomes.clear();
            runner.evaluate_many(rule, &events, &times, &indices, &mut outcomes, notes);
            debug_assert_eq!(outcomes.len(), calls.len());
            for (&(_, place), outcome) in calls.iter().zip(outcomes.drain(..)) {
                out.set(place, outcome);
            }
            calls.clear();
        }
        pending.events.clear();
    }

    /// Evaluates events given already parsed, in groups of [`BATCH_EVENTS`] (as a line
    /// batch would be); an event without a `time` gets the one its own fields give.
    pub fn events(&mut self, events: Vec<StagedEvent>) -> Judged {
        let sampled = self
            .single_events
            .is_multiple_of(CHECK_EVERY_BATCHES * 1024);
        self.single_events += events.len() as u64;
        self.begin(sampled);
        let mut outcomes = Outcomes::with_capacity(events.len());
        let mut notes = Vec::new();
        let mut pending = Pending::default();
        let mut staged = Vec::with_capacity(events.len());
        for (index, mut event) in events.into_iter().enumerate() {
            event.time = event
                .time
                .or_else(|| self.clock.event_time_ms(&*event.event));
            self.defer(
                event.event.clone(),
                event.time,
                index,
                &mut outcomes,
                &mut pending,
            );
            if pending.events.len() == BATCH_EVENTS {
                self.flush(&mut pending, &mut outcomes, &mut notes);
            }
            staged.push(event);
        }
        self.flush(&mut pending, &mut outcomes, &mut notes);
        notes.sort_by_key(|n| (n.event, n.rule));
        Judged::Events {
            events: staged,
            outcomes,
            notes,
        }
    }

    /// Parses and evaluates a batch of lines; each event is dropped here, on the thread
    /// that allocated it. `sampled` batches check their first fast-path calls.
    pub fn lines(
        &mut self,
        file: Arc<str>,
        batch: LineBatch,
        max_line: usize,
        sampled: bool,
    ) -> Judged {
        self.begin(sampled);
        let mut items = Vec::with_capacity(batch.lines.len());
        let mut outcomes = Outcomes::with_capacity(batch.lines.len());
        let mut notes = Vec::new();
        let mut pending = Pending::default();
        let mut events = 0;
        // A generation no snapshot has: the first update takes one.
        let mut generation = u64::MAX;
        let mut wanted = Arc::new(Wanted::nothing());
        // Events keep the batch to parse their line whole if a rule reads what the pruned
        // parse left out; they are all dropped (by `flush`) before it is handed on.
        let shared = Arc::new(batch);
        let paths = self.wanted.clone();
        let parse_for = |wanted: &Arc<Wanted>| {
            Arc::new(LineParse::new(
                shared.clone(),
                wanted.clone(),
                paths.clone(),
            ))
        };
        paths.update(&mut wanted, &mut generation);
        let mut from = parse_for(&wanted);
        for (index, line) in shared.lines.iter().enumerate() {
            let parsed = if line.too_long {
                Err(BadLine::TooLong(max_line))
            } else {
                if paths.update(&mut wanted, &mut generation) {
                    from = parse_for(&wanted);
                }
                Event::parse(&from, line)
            };
            items.push(match parsed {
                Ok(Some(event)) => {
                    let time = self.clock.event_time_ms(&event);
                    self.defer(Arc::new(event), time, events, &mut outcomes, &mut pending);
                    events += 1;
                    if pending.events.len() == BATCH_EVENTS {
                        self.flush(&mut pending, &mut outcomes, &mut notes);
                    }
                    LineItem::Event { line: index, time }
                }
                Ok(None) => LineItem::Blank {
                    number: line.number,
                },
                Err(reason) => LineItem::Bad {
                    number: line.number,
                    reason: reason.to_string(),
                },
            });
        }
        self.flush(&mut pending, &mut outcomes, &mut notes);
        drop(from);
        notes.sort_by_key(|n| (n.event, n.rule));
        // Every event is dropped: the batch is this worker's again (a copy only if a rule
        // implementation kept an event, which none does).
        let batch = Arc::try_unwrap(shared).unwrap_or_else(|shared| LineBatch::clone(&shared));
        Judged::Lines(JudgedLines {
            file,
            batch,
            items,
            outcomes,
            notes,
        })
    }
}
