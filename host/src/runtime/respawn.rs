//! [`Respawning`]: a rule component's calls on an instance that is replaced after a
//! failure that poisons it (a trap poisons the whole Store), and made again on the next
//! call. It is the sandbox's [`RuleCalls`], for `eval` and `rulehost test` alike.

use std::sync::Arc;

use super::{CapturedOutput, Deadline, Output, RuleComponent, RuleInstance};
use crate::calls::{
    BatchFailure, BatchOutcome, CallResult, Function, RuleCalls, RuleCode, RuleFailure,
};
use crate::event::Event;

/// A component's calls, on an instance made when needed.
pub struct Respawning {
    component: RuleComponent,
    output: Output,
    instance: Option<RuleInstance>,
    time_ms: i64,
    /// Set while calls share one deadline.
    deadline: Option<Deadline>,
    /// What dropped instances printed (with [`Output::Capture`]).
    printed: CapturedOutput,
}

impl Respawning {
    /// Calls of `component`, whose output goes to `output`; no instance is made yet.
    pub fn new(component: RuleComponent, output: Output) -> Self {
        Respawning {
            component,
            output,
            instance: None,
            time_ms: 0,
            deadline: None,
            printed: CapturedOutput::default(),
        }
    }

    /// The instance, made now if there is none, set to the current time and deadline.
    fn instance(&mut self) -> Result<&mut RuleInstance, RuleFailure> {
        if self.instance.is_none() {
            let instance = self
                .component
                .instantiate(self.output)
                .map_err(|e| RuleFailure::Trap(format!("failed to instantiate: {e:#}")))?;
            self.instance = Some(instance);
        }
        let instance = self.instance.as_mut().expect("made above");
        instance.set_event_time(self.time_ms);
        instance.share_deadline(self.deadline);
        Ok(instance)
    }

    /// Makes one call; a failure that poisons the Store drops the instance.
    fn call<T>(
        &mut self,
        call: impl FnOnce(&mut RuleInstance) -> Result<T, RuleFailure>,
    ) -> Result<T, RuleFailure> {
        let result = self.instance().and_then(call);
        if result
            .as_ref()
            .is_err_and(RuleFailure::needs_fresh_instance)
        {
            self.drop_instance();
        }
        result
    }

    fn drop_instance(&mut self) {
        if let Some(instance) = self.instance.take()
            && let Some(printed) = instance.captured_output()
        {
            self.printed.stdout.push_str(&printed.stdout);
            self.printed.stderr.push_str(&printed.stderr);
            self.printed.stdout_dropped += printed.stdout_dropped;
            self.printed.stderr_dropped += printed.stderr_dropped;
        }
    }

    /// What every instance so far printed, with [`Output::Capture`] (the live one's
    /// included; it is then dropped).
    pub fn take_output(&mut self) -> CapturedOutput {
        self.drop_instance();
        std::mem::take(&mut self.printed)
    }
}

impl RuleCalls for Respawning {
    fn set_time(&mut self, ms: i64) {
        self.time_ms = ms;
    }

    fn rule(&mut self, event: &Arc<Event>) -> Result<bool, RuleFailure> {
        self.call(|i| i.rule(event))
    }

    fn text(&mut self, function: Function, event: &Arc<Event>) -> CallResult<String> {
        let call: fn(&mut RuleInstance, &Arc<Event>) -> CallResult<String> = match function {
            Function::Title => RuleInstance::call_title,
            Function::Dedup => RuleInstance::call_dedup,
            Function::Unique => RuleInstance::call_unique,
            Function::Severity => RuleInstance::call_severity,
            Function::AlertContext => RuleInstance::call_alert_context,
            Function::Description => RuleInstance::call_description,
            Function::Reference => RuleInstance::call_reference,
            Function::Runbook => RuleInstance::call_runbook,
            Function::Rule | Function::Destinations | Function::EvaluateBatch => {
                unreachable!("`{function}` does not return a string")
            }
        };
        self.call(|i| call(i, event))
    }

    fn destinations(&mut self, event: &Arc<Event>) -> CallResult<Vec<String>> {
        self.call(|i| i.call_destinations(event))
    }

    fn batch(&mut self, events: &[Arc<Event>]) -> Result<Vec<BatchOutcome>, BatchFailure> {
        if !self.component.has_batch() {
            return Err(BatchFailure::Unsupported);
        }
        let result = self
            .instance()
            .map_err(BatchFailure::Call)
            .and_then(|i| i.evaluate_batch(events));
        match &result {
            Err(BatchFailure::Call(failure)) if failure.needs_fresh_instance() => {
                self.drop_instance()
            }
            // Its reads moved the instance's random generators: start afresh.
            Err(BatchFailure::ReadClockOrRandom) => self.drop_instance(),
            _ => {}
        }
        result
    }

    fn clock_or_random_reads(&self) -> u64 {
        self.instance
            .as_ref()
            .map_or(0, RuleInstance::clock_or_random_reads)
    }

    fn share_deadline(&mut self, shared: bool) {
        self.deadline = shared.then(|| self.component.deadline());
    }

    fn reset(&mut self) {
        self.drop_instance();
    }
}

impl RuleCode for RuleComponent {
    fn instance(&self) -> Box<dyn RuleCalls> {
        Box::new(Respawning::new(self.clone(), Output::Discard))
    }

    fn has_batch(&self) -> bool {
        RuleComponent::has_batch(self)
    }
}
