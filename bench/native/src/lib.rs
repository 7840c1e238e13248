//! `rulehost-native`: `rulehost eval` with the rules compiled in as plain Rust, the baseline
//! of `make bench` that shares everything with rulehost but the sandbox.
//!
//! It is `rulehost eval` itself ([`rulehost::commands::eval::Eval::run_with`]): the same
//! flags, input, filters, clock, windows, state and output. Only the rule code differs: each
//! spec's `Filename:` picks a native port of the component ([`rules`]), which the evaluator
//! calls through [`rulehost::calls::RuleCode`] where it would call a sandboxed component.
//! So the output is byte-identical to `rulehost eval`'s, and the time difference is the
//! sandbox.
//!
//! ```no_run
//! use clap::Parser;
//! # fn main() -> anyhow::Result<()> {
//! let eval = rulehost::commands::eval::Eval::parse_from([
//!     "rulehost-native", "--rules", "rules-tests/seed", "demo/databricks-audit-sample.jsonl",
//! ]);
//! let status = eval.run_with(rulehost_native::load)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod rules;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rulehost::calls::{CallResult, Function, RuleCalls, RuleCode, RuleFailure};
use rulehost::commands::eval::LoadedRules;
use rulehost::eval::Rule;
use rulehost::event::Event;
use rulehost::spec::{Spec, find_specs};
use serde_json::Value;

use crate::rules::NativeRule;

/// A native port as the evaluator runs it.
pub struct Native(Arc<dyn NativeRule>);

impl RuleCode for Native {
    fn instance(&self) -> Box<dyn RuleCalls> {
        Box::new(NativeCalls(self.0.clone()))
    }
}

/// Calls of a native port: plain function calls, which never fail.
struct NativeCalls(Arc<dyn NativeRule>);

impl RuleCalls for NativeCalls {
    fn set_time(&mut self, _ms: i64) {}

    fn rule(&mut self, event: &Arc<Event>) -> Result<bool, RuleFailure> {
        Ok(self.0.rule(event))
    }

    fn text(&mut self, function: Function, event: &Arc<Event>) -> CallResult<String> {
        Ok(match function {
            Function::Title => self.0.title(event),
            Function::Dedup => self.0.dedup(event),
            Function::Unique => self.0.unique(event),
            // The text an SDK rule returns: the host parses it as it parses the guest's.
            Function::AlertContext => self
                .0
                .alert_context(event)
                .map(|context| Value::Object(context).to_string()),
            _ => None,
        })
    }

    fn destinations(&mut self, _event: &Arc<Event>) -> CallResult<Vec<String>> {
        Ok(None)
    }
}

/// The specs under `dir`, each with the native port of its component, sorted by RuleID
/// (as `rulehost::ruleset::load` sorts them); a spec without a port, or with a RuleID
/// already seen, is invalid.
pub fn load(dir: &Path) -> anyhow::Result<Option<LoadedRules>> {
    let paths = find_specs(dir)
        .with_context(|| format!("failed to read rule directory `{}`", dir.display()))?;
    let mut rules: Vec<Rule> = Vec::new();
    let mut invalid = Vec::new();
    for path in paths {
        let loaded = Spec::load(&path)
            .map_err(anyhow::Error::from)
            .and_then(|spec| {
                let port = rules::for_component(&spec.filename)
                    .with_context(|| format!("no native port of component `{}`", spec.filename))?;
                if rules.iter().any(|r| r.spec.rule_id == spec.rule_id) {
                    anyhow::bail!("duplicate RuleID `{}`", spec.rule_id);
                }
                Ok(Rule {
                    spec,
                    code: Arc::new(Native(Arc::from(port))),
                })
            });
        match loaded {
            Ok(rule) => rules.push(rule),
            Err(e) => invalid.push((path, e)),
        }
    }
    rules.sort_by(|a, b| a.spec.rule_id.cmp(&b.spec.rule_id));
    Ok(Some(LoadedRules {
        rules,
        invalid,
        keep: Box::new(()),
    }))
}
