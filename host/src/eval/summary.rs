//! [`Summary`]: what a run did, per rule ([`RuleStats`]), and the failure budget that
//! quarantines a rule ([`Quarantine`]).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use crate::calls::Function;
use crate::source::Position;

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
    /// `rule_error` records written (one per error kind per `DedupPeriodMinutes`).
    pub error_records: u64,
    /// Events on which `rule` failed (trap, timeout, limit, returned error): each is in a
    /// `rule_error` record.
    pub rule_errors: u64,
    /// Failed calls to the other functions, and invalid values they returned, replaced by
    /// Panther's defaults.
    pub aux_errors: u64,
    /// Every failed call, in any path, by function and failure kind (`Timeout`,
    /// `ResourceLimit`, `Trap`, `RuleError`), including calls made for events after the
    /// rule was quarantined (see [`RuleStats::discarded`]).
    pub failed_calls: BTreeMap<(Function, &'static str), u64>,
    /// Times an instance was replaced after a failure.
    pub restarts: u64,
    /// Matches refused because the rule's state reached a cap ([`crate::state::Caps`]),
    /// each a `rule_error` record of kind `StateLimit`.
    pub state_limited: u64,
    /// Sampled fast-path calls whose results differed from one call per function, each a
    /// `rule_error` record of kind `PathMismatch`; the rule is quarantined at the first.
    pub path_mismatches: u64,
    /// Where the rule was quarantined ([`Quarantine`]), if it was.
    pub quarantined_at: Option<Position>,
    /// Events after the quarantine that the rule was not called on.
    pub skipped: u64,
    /// Events after the quarantine that a worker had already evaluated: the calls were
    /// made (and their failures counted in [`RuleStats::failed_calls`]), the results dropped.
    pub discarded: u64,
}

impl RuleStats {
    /// Failed calls in all.
    pub fn failed(&self) -> u64 {
        self.failed_calls.values().sum()
    }

    /// Whether anything went wrong with this rule.
    pub fn has_errors(&self) -> bool {
        self.rule_errors > 0
            || self.aux_errors > 0
            || !self.failed_calls.is_empty()
            || self.state_limited > 0
            || self.path_mismatches > 0
    }
}

/// When a failing rule stops being called, so that a broken or hostile rule cannot spend
/// a deadline on every event of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantine {
    /// Never: the rule is called on every event however often it fails.
    Never,
    /// After this many calls (of any function, in input order) timed out, hit a limit or
    /// trapped: the failures that cost a deadline or a fresh instance. They need not be
    /// consecutive, so alternating with successes does not reset the budget. A rule that
    /// returns an error (a Panther exception) costs no more than a call and is not
    /// quarantined for it. The rule is skipped for the rest of the run.
    After(NonZeroU32),
}

/// The default of [`Quarantine::After`] (`--quarantine-after`).
pub const DEFAULT_QUARANTINE_AFTER: u32 = 10;

impl Quarantine {
    /// `After(n)`, or `Never` for 0 (the CLI's `--quarantine-after 0`).
    pub fn after(n: u32) -> Self {
        NonZeroU32::new(n).map_or(Quarantine::Never, Quarantine::After)
    }

    /// The budget in failed calls, if any.
    pub fn budget(self) -> Option<u32> {
        match self {
            Quarantine::Never => None,
            Quarantine::After(n) => Some(n.get()),
        }
    }
}

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine::after(DEFAULT_QUARANTINE_AFTER)
    }
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
    /// Events whose time was too far ahead of the event-time clock to move it: evaluated,
    /// windowed at the clock's time (each reported with `file:line`).
    pub events_ahead_of_clock: u64,
    /// Events whose time was too far ahead of the clock to trust, with no event after
    /// them to decide: kept in the state for the next run to evaluate first (`--state`).
    pub events_held: u64,
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

impl Summary {
    /// Whether anything was skipped or failed.
    pub fn has_errors(&self) -> bool {
        self.bad_lines > 0 || self.rules.iter().any(|(_, s)| s.has_errors())
    }

    /// Total alerts.
    pub fn alerts(&self) -> u64 {
        self.rules.iter().map(|(_, s)| s.alerts).sum()
    }
}
