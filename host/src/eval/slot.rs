//! [`Slot`]: one rule's instance in a worker (or in the stage), and what the worker learned
//! about the rule: which functions it defines and which fast paths still pay.

use std::sync::Arc;

use serde_json::Value;

use super::outcome::{MatchInfo, Note, NoteKind, Outcome, disagreement};
use super::summary::Function;
use crate::ruleset::LoadedRule;
use crate::runtime::{BatchFailure, Deadline, Output, RuleFailure, RuleInstance};
use crate::semantics::Called;

/// Which ways of calling a rule a worker may use. `eval` uses [`Paths::Auto`]; `rulehost
/// test` runs scenarios both ways and compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paths {
    /// `evaluate-batch` when the component has it, one call per function after a failure
    /// (what `eval` does).
    #[default]
    Auto,
    /// One call per function only.
    Functions,
}

/// Which fast-path calls are checked against one call per function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// None.
    Off,
    /// The next one (a sampled line batch).
    Next,
    /// Every one (tests).
    All,
}

/// One rule's instance inside a worker, and what the worker learned about it.
pub(crate) struct Slot {
    pub rule: LoadedRule,
    instance: Option<RuleInstance>,
    /// Whether `title`, `dedup`, `unique` are defined, learned from the first call: a
    /// function's definedness may not depend on the event (wit/rulehost.wit), so an
    /// undefined function is never called again.
    pub defines_title: Option<bool>,
    defines_dedup: Option<bool>,
    defines_unique: Option<bool>,
    /// Whether events may still go to `evaluate-batch`: the component has it, and no
    /// batch read a clock or a random number (whose values depend on the call), timed out,
    /// hit a limit, or failed where one call per function did not.
    batch: bool,
    /// Whether the next fast-path call is checked.
    pub check: Check,
    /// Costly failures ([`RuleFailure::needs_fresh_instance`]) of calls whose outcome the
    /// stage counts, in the current line batch: at the budget the worker stops calling the
    /// rule, because the stage has quarantined it at or before this event.
    pub spent: u32,
    /// The stage's [`super::Quarantine`] budget.
    pub budget: Option<u32>,
    /// Set after a checked fast-path call disagreed: the stage quarantines the rule at
    /// that event, so no later event needs its calls.
    stopped: bool,
    /// When set, calls share this deadline ([`RuleInstance::share_deadline`]).
    deadline: Option<Deadline>,
}

impl Slot {
    pub fn new(rule: LoadedRule, paths: Paths, budget: Option<u32>) -> Self {
        Slot {
            instance: None,
            defines_title: None,
            defines_dedup: None,
            defines_unique: None,
            batch: rule.spec.create_alert && paths == Paths::Auto && rule.component.has_batch(),
            check: Check::Off,
            spent: 0,
            budget,
            stopped: false,
            deadline: None,
            rule,
        }
    }

    /// Drops the instance (after quarantine).
    pub fn drop_instance(&mut self) {
        self.instance = None;
    }

    /// Makes the following calls share one call's deadline, until `end_shared_deadline`.
    pub fn share_deadline(&mut self) {
        self.deadline = Some(self.rule.component.deadline());
    }

    /// Gives each following call its own deadline again.
    pub fn end_shared_deadline(&mut self) {
        self.deadline = None;
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
        inst.share_deadline(self.deadline);
        Ok(inst)
    }

    /// Calls one export; a failure that poisons the Store drops the instance.
    pub fn call<T>(
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
    pub fn optional(
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

    /// `title`, unless known to be undefined.
    pub fn title(&mut self, event: &Arc<Value>, time_ms: i64) -> Called<String> {
        self.optional(
            |s| &mut s.defines_title,
            event,
            time_ms,
            RuleInstance::call_title,
        )
    }

    /// Whether the rule has spent its failure budget in this line batch.
    fn exhausted(&self) -> bool {
        self.stopped || self.budget.is_some_and(|b| self.spent >= b)
    }

    /// Runs the rule on one event with one call per function: `rule`, then on a match
    /// what every match needs (`dedup`, `unique`, and `title` when it stands in for an
    /// undefined `dedup`). This is the outcome every other path must agree with.
    fn functions(&mut self, event: &Arc<Value>, time_ms: i64) -> Outcome {
        let outcome = match self.call(event, time_ms, RuleInstance::rule) {
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
                    Ok(None) => Some(self.title(event, time_ms)),
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
        };
        self.spent += outcome.costly_failures();
        outcome
    }

    /// Clock and random reads of the current instance so far (0 without one).
    fn reads(&self) -> u64 {
        self.instance
            .as_ref()
            .map_or(0, RuleInstance::clock_or_random_reads)
    }

    /// Whether this call of a fast path is checked, consuming a [`Check::Next`].
    fn take_check(&mut self) -> bool {
        match self.check {
            Check::Off => false,
            Check::Next => {
                self.check = Check::Off;
                true
            }
            Check::All => true,
        }
    }

    /// Runs the rule on `events` (each has passed its filters; `indices` are their indices
    /// in the line batch), appending one outcome per event to `out`: one `evaluate-batch`
    /// call when the rule allows it, else (and when that call fails) one call per function
    /// on each event. A batch only saves the cost of calls: its outcomes are the same,
    /// which checks verify ([`Check`]).
    pub fn evaluate_many(
        &mut self,
        rule: usize,
        events: &[Arc<Value>],
        times: &[i64],
        indices: &[usize],
        out: &mut Vec<Outcome>,
        notes: &mut Vec<Note>,
    ) {
        if self.batch && !self.exhausted() {
            let batch = self
                .instance(times[0])
                .map_err(BatchFailure::Call)
                .and_then(|inst| inst.evaluate_batch(events));
            match batch {
                Ok(results) if self.take_check() => {
                    let mut mismatch = None;
                    for ((event, &time), (result, &index)) in
                        events.iter().zip(times).zip(results.iter().zip(indices))
                    {
                        if self.exhausted() {
                            out.push(Outcome::Skipped);
                            continue;
                        }
                        let reads = self.reads();
                        let truth = self.functions(event, time);
                        // Functions that read a clock or a random number may give what only
                        // that call gives: there is nothing to compare.
                        let comparable = self.reads() == reads;
                        if mismatch.is_none()
                            && comparable
                            && let Some(detail) = disagreement(result, &truth)
                        {
                            self.stopped = true;
                            mismatch = Some(Note {
                                event: index,
                                rule,
                                what: NoteKind::Mismatch {
                                    path: Function::EvaluateBatch,
                                    detail,
                                },
                            });
                        }
                        out.push(truth);
                    }
                    notes.extend(mismatch);
                    return;
                }
                Ok(results) => {
                    out.extend(results.into_iter().map(Outcome::from_fast));
                    return;
                }
                Err(BatchFailure::Call(failure)) => {
                    if failure.needs_fresh_instance() {
                        self.instance = None;
                    }
                    // A rule slow or big enough to hit a limit on a batch gains little from
                    // batching, and would waste a batch's work on every later one.
                    let costly = matches!(
                        failure,
                        RuleFailure::Timeout | RuleFailure::ResourceLimit(_)
                    );
                    notes.push(Note {
                        event: indices[0],
                        rule,
                        what: NoteKind::FastPathFailed {
                            path: Function::EvaluateBatch,
                            failure,
                        },
                    });
                    let start = out.len();
                    self.each(events, times, out);
                    let path_only = out[start..].iter().all(|o| o.failures().is_empty());
                    if costly || path_only {
                        self.batch = false;
                    }
                    return;
                }
                Err(BatchFailure::ReadClockOrRandom) => {
                    self.batch = false;
                    self.instance = None;
                }
                Err(BatchFailure::TooMany | BatchFailure::Unsupported) => {}
            }
        }
        self.each(events, times, out);
    }

    /// One call per function on each event, until the rule spends its failure budget.
    fn each(&mut self, events: &[Arc<Value>], times: &[i64], out: &mut Vec<Outcome>) {
        for (event, &time) in events.iter().zip(times) {
            out.push(if self.exhausted() {
                Outcome::Skipped
            } else {
                self.functions(event, time)
            });
        }
    }
}
