//! [`Health`]: how both stages, `eval`'s ([`super::stage`]) and `serve`'s
//! ([`super::matches`]), take a rule's failures, in input order: the worker's notes on its
//! fast path, a failed `rule` call, the [`RuleError`]s a rule earns (each stage records
//! them as `rule_error` records its own way: in its windows, or as matches for the shared
//! state), the failure budget and quarantine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::stage::{StageRule, count_failed};
use super::summary::Quarantine;
use super::verdict::{NoteKind, Verdict};
use crate::alert::AlertFields;
use crate::calls::{Function, RuleFailure};
use crate::source::Position;
use crate::spec::Spec;
use crate::state::CapReached;

/// At most this many failures per rule are printed; all are counted.
const MAX_REPORTED_FAILURES: u32 = 5;

/// What a `rule_error` record is about.
pub(super) enum RuleError {
    /// A call to `rule` failed.
    Call(RuleFailure),
    /// The rule's state reached a cap.
    StateLimit(CapReached),
    /// A fast path's results differ from one call per function.
    PathMismatch { path: Function, detail: String },
}

impl RuleError {
    /// The dedup string of its records (Panther uses the exception class name).
    pub fn kind(&self) -> &'static str {
        match self {
            RuleError::Call(f) => f.kind(),
            RuleError::StateLimit(_) => "StateLimit",
            RuleError::PathMismatch { .. } => "PathMismatch",
        }
    }
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleError::Call(failure) => write!(f, "{failure}"),
            RuleError::StateLimit(cap) => write!(f, "state limit: {cap}"),
            RuleError::PathMismatch { path, detail } => write!(
                f,
                "`{path}` disagrees with one call per function: it {detail}"
            ),
        }
    }
}

/// The fields of a `rule_error` record: the spec's, titled with the error.
pub(super) fn error_fields(spec: &Spec, error: String) -> AlertFields {
    AlertFields {
        title: format!("{}: {error}", spec.rule_id),
        severity: spec.severity,
        alert_context: serde_json::Value::Object(Default::default()),
        description: spec.description.clone(),
        reference: spec.reference.clone(),
        runbook: spec.runbook.clone(),
        destinations: spec.output_ids.clone(),
        suppressed: false,
        error: Some(error),
    }
}

/// A rule's outcome on one event that the stage is to apply ([`Health::before`]), with
/// what [`Health::after`] does once it is applied.
pub(super) struct Pending {
    /// A checked fast path disagreed on this event: the outcome is the functions', and the
    /// rule is quarantined after it.
    mismatch: Option<(Function, String)>,
}

/// The rules' failure bookkeeping of one stage; see the module docs.
pub(super) struct Health {
    /// When a failing rule is quarantined.
    pub quarantine: Quarantine,
    /// Per rule: quarantined (the workers stop calling it).
    pub quarantined: Arc<[AtomicBool]>,
    /// Receives one line per reported problem.
    pub warn: Box<dyn FnMut(&str) + Send>,
    /// How long a quarantine lasts, as its warning says it ("for the rest of the run").
    pub lasts: &'static str,
}

impl Health {
    /// Counts the events applied since `rule` was last counted, up to `applied` (the
    /// events applied so far), that have no verdict of it ([`super::verdict::Outcomes`]):
    /// filtered out, the most common outcome with many rules, or skipped once it is
    /// quarantined. A rule that was not called has no notes and cannot fail, so whether it
    /// is quarantined can change only at one of its verdicts, which counts the events
    /// before it first ([`Health::verdict`]).
    pub fn absent(rule: &mut StageRule, applied: u64) {
        let absent = applied - rule.counted_to;
        match rule.stats.quarantined_at {
            Some(_) => rule.stats.skipped += absent,
            None => rule.stats.filtered += absent,
        }
        rule.counted_to = applied;
    }

    /// [`Health::absent`] for every rule: after each batch, so that the counts are whole
    /// between batches.
    pub fn absent_all(rules: &mut [StageRule], applied: u64) {
        for rule in rules {
            Health::absent(rule, applied);
        }
    }

    /// Counts, before `rule`'s verdict on the event applied as the `applied`th, the events
    /// before it without a verdict of it ([`Health::absent`]).
    #[inline]
    pub fn verdict(rule: &mut StageRule, applied: u64) {
        Health::absent(rule, applied - 1);
        rule.counted_to = applied;
    }

    /// Before rule `rule`'s `outcome` on one event at `location` is applied: counts and
    /// reports the failed fast paths the worker noted, and keeps a disagreement for
    /// [`Health::after`]. An outcome that is only counted (of a rule already quarantined)
    /// gives `None`: nothing to apply.
    #[inline]
    pub fn before(
        &mut self,
        rule: &mut StageRule,
        outcome: &Verdict,
        notes: impl Iterator<Item = NoteKind>,
        location: &Position,
    ) -> Option<Pending> {
        let mut mismatch = None;
        for note in notes {
            match note {
                NoteKind::FastPathFailed { path, failure } => {
                    count_failed(&mut rule.stats, path, &failure);
                    let id = &rule.runner.rule.spec.rule_id;
                    self.report(&mut rule.reported, || {
                        format!(
                            "rule `{id}`: `{path}` failed on `{location}`: {failure}; one call \
                             per function gave the outcome"
                        )
                    });
                }
                NoteKind::Mismatch { path, detail } => {
                    mismatch = Some((path, detail));
                }
            }
        }
        if rule.stats.quarantined_at.is_some() {
            // Counted, not applied.
            match outcome {
                Verdict::Skipped => rule.stats.skipped += 1,
                evaluated => {
                    rule.stats.discarded += 1;
                    for (function, failure) in evaluated.failures() {
                        count_failed(&mut rule.stats, function, failure);
                    }
                }
            }
            return None;
        }
        Some(Pending { mismatch })
    }

    /// Counts a failed `rule` call (reported, against the failure budget): the error
    /// to record.
    pub fn failed(
        &mut self,
        rule: &mut StageRule,
        failure: RuleFailure,
        location: &Position,
    ) -> RuleError {
        count_failed(&mut rule.stats, Function::Rule, &failure);
        rule.spent += u32::from(failure.needs_fresh_instance());
        let error = RuleError::Call(failure);
        self.count_error(rule, &error, location);
        error
    }

    /// Counts and reports a rule error; the stage records it.
    pub fn count_error(&mut self, rule: &mut StageRule, error: &RuleError, location: &Position) {
        match error {
            RuleError::Call(failure) => {
                rule.stats.rule_errors += 1;
                rule.stats.restarts += u64::from(failure.needs_fresh_instance());
            }
            RuleError::StateLimit(_) => rule.stats.state_limited += 1,
            RuleError::PathMismatch { .. } => rule.stats.path_mismatches += 1,
        }
        let id = &rule.runner.rule.spec.rule_id;
        self.report(&mut rule.reported, || {
            format!("rule `{id}` failed on `{location}`: {error}")
        });
    }

    /// Once the outcome is applied: quarantines rule `index` when a checked fast path
    /// disagreed (that error, counted, is returned for the stage to record) or when it has
    /// spent its failure budget.
    pub fn after(
        &mut self,
        rule: &mut StageRule,
        index: usize,
        pending: Pending,
        location: &Position,
    ) -> Option<RuleError> {
        if let Some((path, detail)) = pending.mismatch {
            let reason =
                format!("because its `{path}` results disagree with one call per function");
            let error = RuleError::PathMismatch { path, detail };
            self.count_error(rule, &error, location);
            self.quarantine(rule, index, location, &reason);
            return Some(error);
        }
        if let Some(budget) = self.quarantine.budget()
            && rule.spent >= budget
        {
            let reason = format!(
                "after {} calls timed out, hit a limit or trapped",
                rule.spent
            );
            self.quarantine(rule, index, location, &reason);
        }
        None
    }

    fn quarantine(&mut self, rule: &mut StageRule, index: usize, at: &Position, reason: &str) {
        rule.stats.quarantined_at = Some(at.clone());
        rule.runner.reset();
        self.quarantined[index].store(true, Ordering::Relaxed);
        (self.warn)(&format!(
            "rule `{}` quarantined at `{at}` {reason}: it is not called {}",
            rule.runner.rule.spec.rule_id, self.lasts
        ));
    }

    /// Prints a rule's failure, up to [`MAX_REPORTED_FAILURES`] per rule.
    fn report(&mut self, reported: &mut u32, text: impl FnOnce() -> String) {
        if *reported < MAX_REPORTED_FAILURES {
            *reported += 1;
            (self.warn)(&text());
        }
    }
}
