//! [`Runner`]: one rule in a worker (or in the stage): its instance's calls
//! ([`RuleCalls`]), and what the worker learned about the rule: which functions it defines,
//! whether its batch call still pays, and what its failures cost.

use std::sync::Arc;

use super::Rule;
use super::verdict::{MatchCalls, Note, NoteKind, Verdict, disagreement};
use crate::calls::{BatchFailure, CallResult, Function, RuleCalls, RuleFailure};
use crate::event::Event;

/// Which ways of calling a rule a worker may use. `eval` uses [`Paths::Auto`]; `rulehost
/// test` runs scenarios both ways and compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paths {
    /// The batch call when the rule has one, one call per function after a failure
    /// (what `eval` does).
    #[default]
    Auto,
    /// One call per function only.
    Functions,
}

/// Which batch calls are checked against one call per function.
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
pub(crate) struct Runner {
    pub rule: Rule,
    calls: Box<dyn RuleCalls>,
    /// Whether `title`, `dedup`, `unique` are defined, learned from the first call: a
    /// function's definedness may not depend on the event (wit/rulehost.wit), so an
    /// undefined function is never called again.
    defines_title: Option<bool>,
    defines_dedup: Option<bool>,
    defines_unique: Option<bool>,
    /// Whether events may still go to the batch call: the rule has one, and no batch read
    /// a clock or a random number (whose values depend on the call), timed out, hit a
    /// limit, or failed where one call per function did not.
    batch: bool,
    /// Whether the next batch call is checked.
    pub check: Check,
    /// Costly failures ([`RuleFailure::needs_fresh_instance`]) of calls whose outcome the
    /// stage counts, in the current line batch: at the budget the worker stops calling the
    /// rule, because the stage has quarantined it at or before this event.
    pub spent: u32,
    /// The stage's [`super::Quarantine`] budget.
    pub budget: Option<u32>,
    /// Set after a checked batch call disagreed: the stage quarantines the rule at that
    /// event, so no later event needs its calls.
    stopped: bool,
}

impl Runner {
    pub fn new(rule: Rule, paths: Paths, budget: Option<u32>) -> Self {
        Runner {
            calls: rule.code.instance(),
            defines_title: None,
            defines_dedup: None,
            defines_unique: None,
            batch: rule.spec.create_alert && paths == Paths::Auto && rule.code.has_batch(),
            check: Check::Off,
            spent: 0,
            budget,
            stopped: false,
            rule,
        }
    }

    /// The rule's calls, for the stage's own (the alert fields).
    pub fn calls(&mut self) -> &mut dyn RuleCalls {
        &mut *self.calls
    }

    /// Drops the instance (after quarantine).
    pub fn reset(&mut self) {
        self.calls.reset();
    }

    /// An optional function that returns a string, unless known to be undefined.
    fn optional(
        &mut self,
        defined: fn(&mut Runner) -> &mut Option<bool>,
        function: Function,
        event: &Arc<Event>,
    ) -> CallResult<String> {
        if *defined(self) == Some(false) {
            return Ok(None);
        }
        let result = self.calls.text(function, event);
        if let Ok(value) = &result {
            *defined(self) = Some(value.is_some());
        }
        result
    }

    /// `title`, unless known to be undefined.
    pub fn title(&mut self, event: &Arc<Event>) -> CallResult<String> {
        self.optional(|r| &mut r.defines_title, Function::Title, event)
    }

    /// Whether the rule has spent its failure budget in this line batch.
    fn exhausted(&self) -> bool {
        self.stopped || self.budget.is_some_and(|b| self.spent >= b)
    }

    /// Runs the rule on one event with one call per function: `rule`, then on a match
    /// what every match needs (`dedup`, `unique`, and `title` when it stands in for an
    /// undefined `dedup`). This is the outcome every other path must agree with.
    fn functions(&mut self, event: &Arc<Event>, time_ms: i64) -> Verdict {
        self.calls.set_time(time_ms);
        let outcome = match self.calls.rule(event) {
            Ok(false) => Verdict::NoMatch,
            Err(failure) => Verdict::Failed(Box::new(failure)),
            Ok(true) if !self.rule.spec.create_alert => Verdict::Signal,
            Ok(true) => {
                let dedup = self.optional(|r| &mut r.defines_dedup, Function::Dedup, event);
                let title = match dedup {
                    Ok(None) => Some(self.title(event)),
                    _ => None,
                };
                let unique = self.optional(|r| &mut r.defines_unique, Function::Unique, event);
                Verdict::Match(Box::new(MatchCalls {
                    dedup,
                    title,
                    unique,
                }))
            }
        };
        self.spent += outcome.costly_failures();
        outcome
    }

    /// Clock and random reads of the current instance so far.
    fn reads(&self) -> u64 {
        self.calls.clock_or_random_reads()
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
        events: &[Arc<Event>],
        times: &[i64],
        indices: &[usize],
        out: &mut Vec<Verdict>,
        notes: &mut Vec<Note>,
    ) {
        if self.batch && !self.exhausted() {
            self.calls.set_time(times[0]);
            let batch = self.calls.batch(events);
            match batch {
                Ok(results) if self.take_check() => {
                    let mut mismatch = None;
                    for ((event, &time), (result, &index)) in
                        events.iter().zip(times).zip(results.iter().zip(indices))
                    {
                        if self.exhausted() {
                            out.push(Verdict::Skipped);
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
                    out.extend(results.into_iter().map(Verdict::from_fast));
                    return;
                }
                Err(BatchFailure::Call(failure)) => {
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
                Err(BatchFailure::ReadClockOrRandom) => self.batch = false,
                Err(BatchFailure::TooMany | BatchFailure::Unsupported) => {}
            }
        }
        self.each(events, times, out);
    }

    /// One call per function on each event, until the rule spends its failure budget.
    fn each(&mut self, events: &[Arc<Event>], times: &[i64], out: &mut Vec<Verdict>) {
        for (event, &time) in events.iter().zip(times) {
            out.push(if self.exhausted() {
                Verdict::Skipped
            } else {
                self.functions(event, time)
            });
        }
    }
}
