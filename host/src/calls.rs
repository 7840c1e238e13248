//! The alerting core's view of a rule: [`RuleCode`] makes instances, [`RuleCalls`] is one
//! instance's calls (Panther's functions on one event, and optionally a batch), with what a
//! call gives ([`CallResult`], [`BatchOutcome`]) and why it failed ([`RuleFailure`]).
//!
//! The evaluator (`crate::eval`) knows rules only through these traits. The WebAssembly
//! sandbox implements them (`crate::runtime::Respawning`, for a `RuleComponent`), so does
//! the native baseline of `make bench` (`bench/native`), and so can a test double: the
//! alerting core runs, and is tested, without compiled components.

use std::sync::Arc;

use crate::event::Event;

/// A function of the rule contract, to attribute failed calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// `rule`.
    Rule,
    /// `title`.
    Title,
    /// `dedup`.
    Dedup,
    /// `unique`.
    Unique,
    /// `severity`.
    Severity,
    /// `alert-context`.
    AlertContext,
    /// `description`.
    Description,
    /// `reference`.
    Reference,
    /// `runbook`.
    Runbook,
    /// `destinations`.
    Destinations,
    /// `evaluate-batch`: `rule`, `dedup`, `title` and `unique` of up to 32 events in one
    /// call (the optional `batch` interface).
    EvaluateBatch,
}

impl Function {
    /// The WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Function::Rule => "rule",
            Function::Title => "title",
            Function::Dedup => "dedup",
            Function::Unique => "unique",
            Function::Severity => "severity",
            Function::AlertContext => "alert-context",
            Function::Description => "description",
            Function::Reference => "reference",
            Function::Runbook => "runbook",
            Function::Destinations => "destinations",
            Function::EvaluateBatch => "evaluate-batch",
        }
    }

    /// Whether this is a fast path: a call that stands for several functions, whose
    /// results must equal theirs.
    pub fn is_fast_path(self) -> bool {
        self == Function::EvaluateBatch
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a call of an optional function gave: `Ok(None)` when the rule does not define it,
/// `Ok(Some(value))`, or the failure (a raised error is [`RuleFailure::Returned`]).
pub type CallResult<T> = Result<Option<T>, RuleFailure>;

/// One event's outcome from a batch call, each field as the rule's function would have
/// given it ([`CallResult`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// `rule` returned false.
    NoMatch,
    /// `rule` returned true.
    Match {
        /// `dedup`.
        dedup: CallResult<String>,
        /// `title`, when `dedup` is not defined (else `Ok(None)`).
        title: CallResult<String>,
        /// `unique`.
        unique: CallResult<String>,
    },
    /// `rule` raised this error.
    RuleError(String),
}

/// Why a call into a rule failed. Each is a rule error (for `rule`) or a counted fallback
/// (for the other functions); the instance must be replaced after any but [`Self::Returned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleFailure {
    /// The call ran past its deadline.
    Timeout,
    /// The rule asked for more memory, tables or instances than its limits allow.
    ResourceLimit(String),
    /// The guest trapped: a Rust panic, an out-of-bounds access, an explicit `unreachable`.
    Trap(String),
    /// `rule` returned `err(message)`: the rule raised an error without crashing.
    Returned(String),
    /// Not called: the deadline it shared with earlier calls had passed
    /// ([`RuleCalls::share_deadline`]).
    DeadlinePassed,
}

/// Why a batch call ([`RuleCalls::batch`]) gave no results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchFailure {
    /// The call failed as any call can.
    Call(RuleFailure),
    /// The rule read a clock or a random number during the call.
    ReadClockOrRandom,
    /// More events or packed bytes than fit the call's `u32`s.
    TooMany,
    /// The rule has no batch call (for a component: no `batch` export).
    Unsupported,
}

impl RuleFailure {
    /// A short name for the failure, used as the dedup key of rule errors (as Panther uses
    /// the exception class name).
    pub fn kind(&self) -> &'static str {
        match self {
            RuleFailure::Timeout => "Timeout",
            RuleFailure::ResourceLimit(_) => "ResourceLimit",
            RuleFailure::Trap(_) => "Trap",
            RuleFailure::Returned(_) => "RuleError",
            RuleFailure::DeadlinePassed => "DeadlinePassed",
        }
    }

    /// Whether the Store is poisoned and the instance must be replaced.
    pub fn needs_fresh_instance(&self) -> bool {
        !matches!(self, RuleFailure::Returned(_) | RuleFailure::DeadlinePassed)
    }
}

impl std::fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleFailure::Timeout => write!(f, "timed out"),
            RuleFailure::ResourceLimit(m) => write!(f, "resource limit exceeded: {m}"),
            RuleFailure::Trap(m) => write!(f, "trapped: {m}"),
            RuleFailure::Returned(m) => write!(f, "rule error: {m}"),
            RuleFailure::DeadlinePassed => write!(
                f,
                "not called: the deadline it shared with the window's other calls had passed"
            ),
        }
    }
}

/// One instance of a rule: the calls the evaluator makes. An implementation replaces its
/// instance after a failure that needs it ([`RuleFailure::needs_fresh_instance`]), so a
/// call after a failure runs on a fresh one.
pub trait RuleCalls: Send {
    /// The time (epoch ms) the rule's clocks report in the next calls: the event's.
    fn set_time(&mut self, ms: i64);

    /// `rule`.
    fn rule(&mut self, event: &Arc<Event>) -> Result<bool, RuleFailure>;

    /// An optional function that returns a string: `title`, `dedup`, `unique`, `severity`,
    /// `alert-context` (JSON text), `description`, `reference` or `runbook`.
    fn text(&mut self, function: Function, event: &Arc<Event>) -> CallResult<String>;

    /// `destinations`.
    fn destinations(&mut self, event: &Arc<Event>) -> CallResult<Vec<String>>;

    /// `rule`, then on a match `dedup`, `title` (when `dedup` is not defined) and `unique`,
    /// for each event in one call: one outcome per event. [`BatchFailure::Unsupported`]
    /// when the rule has no batch call.
    fn batch(&mut self, events: &[Arc<Event>]) -> Result<Vec<BatchOutcome>, BatchFailure> {
        let _ = events;
        Err(BatchFailure::Unsupported)
    }

    /// How many times calls read a clock or a random number so far: what such a call
    /// returns may depend on the call, not only on the event.
    fn clock_or_random_reads(&self) -> u64 {
        0
    }

    /// `true`: the following calls share one call's deadline (the calls that freeze a
    /// window's alert fields); `false`: each call has its own again.
    fn share_deadline(&mut self, shared: bool) {
        let _ = shared;
    }

    /// Drops the instance (a quarantined rule's): the next call, if any, starts a fresh one.
    fn reset(&mut self) {}
}

/// A loaded rule's code: it makes instances, one per worker.
pub trait RuleCode: Send + Sync {
    /// A fresh instance.
    fn instance(&self) -> Box<dyn RuleCalls>;

    /// Whether instances have a batch call ([`RuleCalls::batch`]).
    fn has_batch(&self) -> bool {
        false
    }
}
