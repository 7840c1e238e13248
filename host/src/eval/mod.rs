//! [`Evaluator`]: runs every rule over a stream of events and turns matches into alerts.
//!
//! Per event: read its time ([`Clock`]), close windows that ended, then for each rule call
//! `rule`; on a match call `dedup` (and `title` for the fallback) and `unique`, and, only
//! when the match opens a window, the functions whose values the alert keeps (title,
//! severity, alert context, description, reference, runbook, destinations). That is
//! Panther's "fields come from the window's first match", at a fraction of the calls.
//!
//! The pipeline, one file each: a worker (`worker.rs`, one per thread, with its own
//! instance of every rule in a `runner.rs`) parses lines and calls the rules, handing the
//! stage (`stage.rs`) one outcome (`outcome.rs`) per rule per event; the one stage applies
//! them in input order (the event-time guard of `skew.rs`, windows, alert fields, the
//! failure budget, output) and keeps the [`Summary`]; [`run_parallel`] reads the
//! [`Source`](crate::source::Source)s and runs workers on threads. Records go to a
//! [`Sink`]; with a state, checkpoints go to a
//! [`StateBackend`](crate::state::backend::StateBackend) through a [`Checkpointer`].

mod health;
mod matches;
mod parallel;
mod runner;
mod skew;
mod stage;
mod summary;
mod verdict;
mod worker;

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

pub use crate::alert::{AlertFields, AlertRecord, SignalRecord};
pub use crate::calls::Function;
pub use crate::source::{Location, Position};
pub use matches::{
    Match, MatchBatch, MatchCounts, MatchStage, Opener, Signal, StoredFields, WindowRef, window_id,
};
pub use parallel::{Progress, run_parallel};
pub use runner::Paths;
pub use skew::{ClockGuard, DEFAULT_MAX_CLOCK_SKEW_MS};
pub use summary::{DEFAULT_QUARANTINE_AFTER, KeptWindows, Quarantine, RuleStats, Summary};
pub(crate) use verdict::{Verdict, disagreement};
pub use worker::Verify;

use crate::calls::RuleCode;
use crate::clock::Clock;
use crate::event::Event;
use crate::ruleset::LoadedRule;
use crate::sink::Sink;
use crate::spec::Spec;
use crate::state::Caps;
use crate::state::backend::{BackendError, HeldLine, Restored};
use crate::state::checkpoint::Checkpointer;
use runner::Runner;
use stage::{Stage, StageRule};
use verdict::StagedEvent;
use worker::{Worker, WorkerSettings};

/// A rule as the evaluator runs it: its spec, and its code, which the evaluator knows only
/// as [`RuleCode`] (a sandboxed component, the native baseline, a test double).
#[derive(Clone)]
pub struct Rule {
    /// The validated YAML.
    pub spec: Spec,
    /// What makes its instances.
    pub code: Arc<dyn RuleCode>,
}

impl From<LoadedRule> for Rule {
    fn from(rule: LoadedRule) -> Self {
        Rule {
            spec: rule.spec,
            code: Arc::new(rule.component),
        }
    }
}

/// What a state holds for a run besides its windows ([`Evaluator::with_checkpoints`]).
#[derive(Debug, Clone, Default)]
pub struct Resumed {
    /// Rules with windows in the state that this run does not load: (RuleID, windows).
    pub other_rules: Vec<(String, u64)>,
    /// A line the last run held undecided ([`ClockGuard`]): evaluate it first.
    pub held: Option<HeldLine>,
}

/// Evaluates events against a set of rules and writes alert records to a [`Sink`].
///
/// [`Evaluator::event`] evaluates in the calling thread; [`run_parallel`] spreads the rule
/// calls over worker threads and gives byte-identical output. `'a` is how long the sink
/// may borrow (a sink writing into a caller's buffer).
pub struct Evaluator<'a> {
    worker: Worker,
    stage: Stage<'a>,
    settings: WorkerSettings,
    progress: Option<Arc<Progress>>,
}

impl<'a> Evaluator<'a> {
    /// Records go to `sink` ([`crate::sink::JsonLines`] for JSON lines to a file, stdout
    /// or a buffer; [`crate::sink::MemorySink`] for values); `warn` receives one line per
    /// reported problem (stderr in the CLI).
    pub fn new<R: Into<Rule>>(
        rules: Vec<R>,
        clock: Clock,
        sink: Box<dyn Sink + 'a>,
        warn: Box<dyn FnMut(&str) + Send>,
    ) -> Self {
        let rules: Vec<Rule> = rules.into_iter().map(Into::into).collect();
        let settings = WorkerSettings {
            paths: Paths::Auto,
            verify: Verify::Sampled,
            budget: Quarantine::default().budget(),
        };
        let quarantined: Arc<[AtomicBool]> = rules.iter().map(|_| AtomicBool::new(false)).collect();
        let worker = Worker::new(&rules, clock, quarantined.clone(), &settings);
        let rules = rules
            .into_iter()
            .map(|rule| StageRule::new(Runner::new(rule, Paths::Functions, None)))
            .collect();
        let mut stage = Stage::new(rules, sink, warn, quarantined);
        stage.state.set_caps(Caps::default());
        Evaluator {
            worker,
            stage,
            settings,
            progress: None,
        }
    }

    /// Rebuilds the worker after a setting changed (it has made no calls yet).
    fn with_settings(mut self, change: impl FnOnce(&mut WorkerSettings)) -> Self {
        change(&mut self.settings);
        self.worker = self.worker.fork(&self.settings);
        self
    }

    /// Sets when a failing rule is quarantined (default: after 10 costly failed calls).
    pub fn with_quarantine(mut self, quarantine: Quarantine) -> Self {
        self.stage.health.quarantine = quarantine;
        self.with_settings(|s| s.budget = quarantine.budget())
    }

    /// Sets which ways of calling the rules the workers use (default [`Paths::Auto`]).
    pub fn with_paths(self, paths: Paths) -> Self {
        self.with_settings(|s| s.paths = paths)
    }

    /// Sets which fast-path calls are checked against one call per function (default
    /// [`Verify::Sampled`]).
    pub fn with_verify(self, verify: Verify) -> Self {
        self.with_settings(|s| s.verify = verify)
    }

    /// Sets which event times may move the event-time clock (default
    /// [`ClockGuard::default`]: one hour of skew).
    pub fn with_clock_guard(mut self, guard: ClockGuard) -> Self {
        self.stage.clock = guard;
        self
    }

    /// Sets what each rule's alert state may hold (default [`Caps::default`]).
    pub fn with_caps(mut self, caps: Caps) -> Self {
        self.stage.state.set_caps(caps);
        self
    }

    /// Counts what [`run_parallel`] reads and applies into `progress`, for a display.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Continues from the state `checkpoints` keeps (`eval --state`) and commits to it as it
    /// goes. Returns what else the state holds for this run: the rules with windows that
    /// this evaluator does not run, and a line the last run held, to evaluate before any
    /// other. Call it after [`Evaluator::with_caps`]: the restored state keeps the caps.
    pub fn with_checkpoints(
        mut self,
        mut checkpoints: Checkpointer,
    ) -> Result<(Self, Resumed), BackendError> {
        let rule_ids = self
            .stage
            .rules
            .iter()
            .map(|r| r.runner.rule.spec.rule_id.clone())
            .collect();
        let Restored {
            mut state,
            other_rules,
            held,
        } = checkpoints.restore(rule_ids)?;
        state.set_caps(self.stage.state.caps());
        self.stage.state = state;
        self.stage.checkpoints = Some(checkpoints);
        Ok((self, Resumed { other_rules, held }))
    }

    /// Counts an input file.
    pub fn file_started(&mut self) {
        self.stage.summary.files += 1;
    }

    /// Counts a blank line at `position` (a [`Position`], or a file's [`Location`]).
    pub fn blank_line(&mut self, position: impl Into<Position>) -> io::Result<()> {
        self.stage.apply(verdict::Judged::Blank(position.into()))
    }

    /// Counts and reports a skipped line.
    pub fn bad_line(
        &mut self,
        position: impl Into<Position>,
        reason: &dyn std::fmt::Display,
    ) -> io::Result<()> {
        self.stage.apply(verdict::Judged::Bad {
            location: position.into(),
            reason: reason.to_string(),
        })
    }

    /// Evaluates one event at the time its own fields give ([`Clock`]).
    pub fn event(&mut self, position: impl Into<Position>, event: Value) -> io::Result<()> {
        self.event_at(position, event, None)
    }

    /// Evaluates one event at `time` (epoch ms) when given, else at the time its own
    /// fields give; an event without either gets the newest time seen (and is counted).
    pub fn event_at(
        &mut self,
        position: impl Into<Position>,
        event: Value,
        time: Option<i64>,
    ) -> io::Result<()> {
        self.events_at(vec![(position.into(), event, time)])
    }

    /// Evaluates several events, in order, as [`Evaluator::event_at`] does one: a rule gets
    /// up to 32 of them per `evaluate-batch` call, as in a line batch of `run_parallel`.
    pub fn events_at<P: Into<Position>>(
        &mut self,
        events: Vec<(P, Value, Option<i64>)>,
    ) -> io::Result<()> {
        let staged = events
            .into_iter()
            .map(|(position, event, time)| StagedEvent {
                location: position.into(),
                event: Arc::new(Event::whole(event)),
                time,
            })
            .collect();
        let evaluated = self.worker.events(staged);
        self.stage.apply(evaluated)
    }

    /// Closes every window, writes the remaining alerts and returns the totals.
    pub fn finish(self) -> io::Result<Summary> {
        self.stage.finish()
    }
}

#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod tests;
