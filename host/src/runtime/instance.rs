//! [`RuleInstance`]: one live instance of a rule in its own Store, and the calls into it:
//! each function of `detection`, and the optional `evaluate-batch`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

use super::bindings::{batch, detection, types};
use super::host::{HostState, handle_rep, pack};
use super::{Limits, flatten, limits, wasi};
use crate::calls::{BatchFailure, BatchOutcome, CallResult, RuleFailure};
use crate::event::{Event, Resolutions};

/// What a rule printed, when its output is captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    /// The first [`Limits::captured_output`] bytes of stdout (invalid UTF-8 replaced).
    pub stdout: String,
    /// The first [`Limits::captured_output`] bytes of stderr.
    pub stderr: String,
    /// Bytes of stdout dropped past the limit.
    pub stdout_dropped: u64,
    /// Bytes of stderr dropped past the limit.
    pub stderr_dropped: u64,
}

/// A point in time (in epoch ticks) by which calls must end: several calls can share one
/// call's deadline, so that together they cost at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub(super) u64);

/// One live instance of a rule, in its own Store.
pub struct RuleInstance {
    store: Store<HostState>,
    detection: detection::Guest,
    batch: Option<batch::Guest>,
    captured: Option<(wasi::BoundedOutput, wasi::BoundedOutput)>,
    epoch: Arc<AtomicU64>,
    /// Set by [`RuleInstance::share_deadline`]: every call ends by then.
    shared_deadline: Option<Deadline>,
    /// Ticks of one call's own deadline.
    deadline: u64,
    max_returned_bytes: usize,
    /// `evaluate-batch`'s `fields`, kept to reuse the buffer.
    packed: Vec<u8>,
    /// The fields' paths resolved against the paths events are parsed for.
    resolutions: Resolutions,
    /// The optional functions that answered "not defined" (bit `i`: the `i`th in
    /// `optional_functions!`). The contract says that does not depend on the event, so they
    /// are not called again: a window's alert fields cost a call per function the rule
    /// defines, not one per function of the contract (each call costs ~3k instructions).
    undefined: u16,
}

/// What an optional function's `None` means (Panther: the type the function must return).
#[derive(Clone, Copy)]
enum NoneMeans {
    /// The same as not defining it (`destinations`: fall back to the YAML `OutputIds`).
    Fallback,
    /// An empty string (`dedup`: `defaultDedupString:RuleID`, as for `""`).
    Empty,
    /// A wrong type: an error, as if the function raised one.
    Error,
}

/// [`CallResult`] from what the guest returned for function `name`.
fn called<T: Default>(
    raw: Option<Result<Option<T>, String>>,
    name: &str,
    none: NoneMeans,
) -> CallResult<T> {
    match raw {
        None => Ok(None),
        Some(Ok(Some(value))) => Ok(Some(value)),
        Some(Err(message)) => Err(RuleFailure::Returned(message)),
        Some(Ok(None)) => match none {
            NoneMeans::Fallback => Ok(None),
            NoneMeans::Empty => Ok(Some(T::default())),
            NoneMeans::Error => Err(RuleFailure::Returned(format!(
                "`{name}` returned None, expected a string"
            ))),
        },
    }
}

/// The handle of a one-event call `call` lends the guest.
fn lend(call: u32) -> Resource<types::Event> {
    Resource::new_borrow(handle_rep(call, 0))
}

/// Generates a typed wrapper per optional function of `detection`: they share one shape.
macro_rules! optional_functions {
    ($($(#[$doc:meta])* $name:ident => $call:ident, $bit:literal, $wit:literal, $ty:ty, $none:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, event: &Arc<Event>) -> CallResult<$ty> {
                const BIT: u16 = 1 << $bit;
                if self.undefined & BIT != 0 {
                    return Ok(None);
                }
                let raw = self.call(std::slice::from_ref(event), |store, guest, call| {
                    guest.0.$call(store, lend(call))
                })?;
                if raw.is_none() {
                    self.undefined |= BIT;
                }
                called(raw, $wit, $none)
            }
        )*
    };
}

impl RuleInstance {
    pub(super) fn new(
        store: Store<HostState>,
        detection: detection::Guest,
        batch: Option<batch::Guest>,
        captured: Option<(wasi::BoundedOutput, wasi::BoundedOutput)>,
        epoch: Arc<AtomicU64>,
        limits: &Limits,
    ) -> Self {
        RuleInstance {
            store,
            detection,
            batch,
            captured,
            epoch,
            shared_deadline: None,
            deadline: limits.deadline_ticks(),
            max_returned_bytes: limits.max_returned_bytes,
            packed: Vec::new(),
            resolutions: Resolutions::default(),
            undefined: 0,
        }
    }

    /// Makes every following call end by `deadline` (its own deadline when `None`): a call
    /// made after it has passed fails with [`RuleFailure::DeadlinePassed`] without running.
    pub fn share_deadline(&mut self, deadline: Option<Deadline>) {
        self.shared_deadline = deadline;
    }

    /// How many times this instance's calls read a clock or a random number so far: the
    /// values such a call returns may depend on the call, not only on the event.
    pub fn clock_or_random_reads(&self) -> u64 {
        self.store.data().virt.reads()
    }

    /// Sets the time the rule's wall and monotonic clocks report, in milliseconds since
    /// the Unix epoch: the time of the event the next calls are about (0 until set).
    pub fn set_event_time(&mut self, ms: i64) {
        self.store.data().virt.set_event_time(ms);
    }

    /// Whether the instance has the optional `evaluate-batch`.
    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// Calls `rule`.
    pub fn rule(&mut self, event: &Arc<Event>) -> Result<bool, RuleFailure> {
        self.call(std::slice::from_ref(event), |store, guest, call| {
            guest.0.call_rule(store, lend(call))
        })?
        .map_err(RuleFailure::Returned)
    }

    optional_functions! {
        /// Calls `title`.
        call_title => call_title, 0, "title", String, NoneMeans::Error;
        /// Calls `dedup`.
        call_dedup => call_dedup, 1, "dedup", String, NoneMeans::Empty;
        /// Calls `unique`.
        call_unique => call_unique, 2, "unique", String, NoneMeans::Error;
        /// Calls `severity`.
        call_severity => call_severity, 3, "severity", String, NoneMeans::Error;
        /// Calls `alert-context`.
        call_alert_context => call_alert_context, 4, "alert-context", String, NoneMeans::Error;
        /// Calls `description`.
        call_description => call_description, 5, "description", String, NoneMeans::Error;
        /// Calls `reference`.
        call_reference => call_reference, 6, "reference", String, NoneMeans::Error;
        /// Calls `runbook`.
        call_runbook => call_runbook, 7, "runbook", String, NoneMeans::Error;
        /// Calls `destinations`.
        call_destinations => call_destinations, 8, "destinations", Vec<String>, NoneMeans::Fallback;
    }

    /// Calls `evaluate-batch` on `events` (one deadline and one call for all of them): one
    /// outcome per event, as `detection`'s functions would give it. Fails as a whole, like
    /// any call, when the component has no `batch` export ([`BatchFailure::Unsupported`]),
    /// and with [`BatchFailure::ReadClockOrRandom`] when the rule read a clock or a random
    /// number, whose values depend on the call: then the caller must call the functions
    /// event by event, and need not try batches of this rule again.
    pub fn evaluate_batch(
        &mut self,
        events: &[Arc<Event>],
    ) -> Result<Vec<BatchOutcome>, BatchFailure> {
        if self.batch.is_none() {
            return Err(BatchFailure::Unsupported);
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        u32::try_from(events.len()).map_err(|_| BatchFailure::TooMany)?;
        let mut packed = std::mem::take(&mut self.packed);
        packed.clear();
        let state = self.store.data();
        for event in events {
            // The section's length, then its entries, packed in place.
            let at = packed.len();
            packed.extend_from_slice(&[0; 4]);
            let (fields, ids) = (&state.fields, &state.prefetch);
            pack(event, fields, ids, &mut self.resolutions, &mut packed);
            let Ok(len) = u32::try_from(packed.len() - at - 4) else {
                self.packed = packed;
                return Err(BatchFailure::TooMany);
            };
            packed[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        let reads = state.virt.reads();
        self.store.data_mut().in_batch = true;
        let result = self.call(events, |store, guest, call| {
            let batch = guest.1.expect("checked above");
            // One handle for the whole batch, read by index.
            let all = Resource::<types::Events>::new_borrow(handle_rep(call, 0));
            batch.call_evaluate_batch(store, all, &packed)
        });
        self.store.data_mut().in_batch = false;
        self.packed = packed;
        let outcomes = result.map_err(BatchFailure::Call)?;
        if self.store.data().virt.reads() != reads {
            return Err(BatchFailure::ReadClockOrRandom);
        }
        if outcomes.len() != events.len() {
            return Err(BatchFailure::Call(RuleFailure::Returned(format!(
                "`evaluate-batch` returned {} outcomes for {} events",
                outcomes.len(),
                events.len()
            ))));
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                batch::Outcome::NoMatch => BatchOutcome::NoMatch,
                batch::Outcome::RuleError(message) => BatchOutcome::RuleError(message),
                batch::Outcome::Matched(m) => BatchOutcome::Match {
                    dedup: called(m.dedup, "dedup", NoneMeans::Empty),
                    title: called(m.title, "title", NoneMeans::Error),
                    unique: called(m.unique, "unique", NoneMeans::Error),
                },
            })
            .collect())
    }

    /// What the rule printed so far, if output is captured.
    pub fn captured_output(&self) -> Option<CapturedOutput> {
        self.captured.as_ref().map(|(out, err)| {
            let (stdout, stdout_dropped) = out.contents();
            let (stderr, stderr_dropped) = err.contents();
            CapturedOutput {
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                stdout_dropped,
                stderr_dropped,
            }
        })
    }

    /// Makes one call about `events`, under the deadline and the returned-data cap. `f`
    /// gets the call's number, which the handles it lends the guest carry
    /// ([`handle_rep`]).
    fn call<T: Returned>(
        &mut self,
        events: &[Arc<Event>],
        f: impl FnOnce(
            &mut Store<HostState>,
            (&detection::Guest, Option<&batch::Guest>),
            u32,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, RuleFailure> {
        // Re-armed before every call: the deadline counts from now, not from instantiation,
        // unless the call shares an earlier one.
        let ticks = match self.shared_deadline {
            None => self.deadline,
            Some(Deadline(at)) => match at.checked_sub(self.epoch.load(Ordering::Relaxed)) {
                Some(left) if left > 0 => left,
                _ => return Err(RuleFailure::DeadlinePassed),
            },
        };
        let state = self.store.data_mut();
        state.call = (state.call + 1) & 0xff_ffff;
        let call = state.call;
        state.events.clear();
        state.events.extend_from_slice(events);
        state.virt.begin_call();
        // Parses before this call are not this call's to give back.
        crate::event::take_full_parse_time();
        self.store.set_epoch_deadline(ticks);
        let result = f(
            &mut self.store,
            (&self.detection, self.batch.as_ref()),
            call,
        );
        self.store.data_mut().events.clear();
        let value = result.map_err(|e| classify(&e))?;
        // The value is already copied out of the guest; over the cap it is dropped here.
        let size = value.returned_bytes();
        if size > self.max_returned_bytes {
            return Err(RuleFailure::ResourceLimit(format!(
                "returned {size} bytes in one call; the limit is {} bytes",
                self.max_returned_bytes
            )));
        }
        Ok(value)
    }
}

/// The bytes of data a call's result hands the host, checked against
/// [`Limits::max_returned_bytes`]. A list element counts its 8-byte pointer and length as
/// well, so a list of a million empty strings is not free.
trait Returned {
    fn returned_bytes(&self) -> usize;
}

impl Returned for bool {
    fn returned_bytes(&self) -> usize {
        0
    }
}

impl Returned for String {
    fn returned_bytes(&self) -> usize {
        self.len()
    }
}

impl Returned for batch::Outcome {
    fn returned_bytes(&self) -> usize {
        match self {
            batch::Outcome::NoMatch => 0,
            batch::Outcome::RuleError(message) => message.len(),
            batch::Outcome::Matched(m) => {
                m.dedup.returned_bytes() + m.title.returned_bytes() + m.unique.returned_bytes()
            }
        }
    }
}

impl<T: Returned> Returned for Option<T> {
    fn returned_bytes(&self) -> usize {
        self.as_ref().map_or(0, T::returned_bytes)
    }
}

impl<T: Returned> Returned for Vec<T> {
    fn returned_bytes(&self) -> usize {
        self.iter().map(|item| 8 + item.returned_bytes()).sum()
    }
}

impl<T: Returned, E: Returned> Returned for Result<T, E> {
    fn returned_bytes(&self) -> usize {
        match self {
            Ok(v) => v.returned_bytes(),
            Err(e) => e.returned_bytes(),
        }
    }
}

fn classify(error: &wasmtime::Error) -> RuleFailure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RuleFailure::Timeout,
        Some(Trap::AllocationTooLarge) => RuleFailure::ResourceLimit(flatten(error)),
        Some(_) => RuleFailure::Trap(flatten(error)),
        None if error.downcast_ref::<limits::LimitExceeded>().is_some() => {
            RuleFailure::ResourceLimit(flatten(error))
        }
        None => RuleFailure::Trap(flatten(error)),
    }
}
