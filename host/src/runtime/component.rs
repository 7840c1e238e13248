//! [`RuleComponent`]: a compiled, linked rule, ready to instantiate; whether it has the
//! optional `batch` export was found at load. A language runtime's component becomes one
//! rule with [`RuleComponent::with_source`]: each of its instances is `load`ed with that
//! rule's source before any other call (`python.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::InstancePre;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::{batch, detection, rule_source};
use super::host::HostState;
use super::instance::{Deadline, RuleInstance};
use super::python::{self, RuleSource};
use super::{CacheOutcome, Limits, flatten, wasi};

/// A compiled rule component, ready to instantiate (cheap: ~20 µs).
#[derive(Clone)]
pub struct RuleComponent {
    pub(super) pre: InstancePre<HostState>,
    pub(super) detection: detection::GuestIndices,
    /// `Some` when the component exports the optional `batch` interface.
    pub(super) batch: Option<batch::GuestIndices>,
    pub(super) path: PathBuf,
    pub(super) limits: Limits,
    pub(super) sha256: String,
    pub(super) cache: CacheOutcome,
    pub(super) epoch: Arc<AtomicU64>,
    /// `Some` for a language runtime (it exports `rule-source`).
    pub(super) rule_source: Option<rule_source::GuestIndices>,
    /// The rule a runtime's instances are made into ([`RuleComponent::with_source`]).
    pub(super) source: Option<Arc<RuleSource>>,
}

/// Where a rule's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Discarded (evaluation).
    Discard,
    /// Kept in memory, up to [`Limits::captured_output`] bytes (tests, debugging).
    Capture,
}

impl RuleComponent {
    /// The component file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 of exactly the bytes that were compiled, lowercase hex (what
    /// `rulehost.lock` pins).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether the compiled code came from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Whether the component exports the optional `batch` interface (`evaluate-batch`).
    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// Whether this is a language runtime (it exports `rule-source`).
    pub fn is_rule_runtime(&self) -> bool {
        self.rule_source.is_some()
    }

    /// The rule whose source this runtime's instances are loaded with, if any.
    pub fn source(&self) -> Option<&RuleSource> {
        self.source.as_deref()
    }

    /// This language runtime as the rule `source`, named `path` (its source file) and
    /// pinned as `sha256` (a digest of the runtime and the sources,
    /// `crate::python::digest`): every instance is `load`ed with `source` before any other
    /// call. `None` when the component is not a language runtime.
    pub fn with_source(&self, path: &Path, sha256: String, source: RuleSource) -> Option<Self> {
        self.rule_source.as_ref()?;
        Some(RuleComponent {
            path: path.to_owned(),
            sha256,
            source: Some(Arc::new(source)),
            ..self.clone()
        })
    }

    /// The same rule with `mocks` in place of its mocks (one test's `Mocks:`); a rule that
    /// is not a language runtime's is returned as it is.
    pub fn with_mocks(&self, mocks: Vec<python::Mock>) -> Self {
        let mut rule = self.clone();
        if let Some(source) = &self.source {
            rule.source = Some(Arc::new(RuleSource {
                mocks,
                ..(**source).clone()
            }));
        }
        rule
    }

    /// One call's deadline from now, to share between several calls
    /// ([`RuleInstance::share_deadline`]).
    pub fn deadline(&self) -> Deadline {
        Deadline(self.epoch.load(Ordering::Relaxed) + self.limits.deadline_ticks())
    }

    /// Makes one instance and drops it: a language runtime's rule `load`s its source
    /// (a syntax error or a failed import is an error here, at load). Under limits at
    /// least as generous as the defaults, as the trial instance of any component.
    pub fn trial(&self) -> anyhow::Result<()> {
        let trial = RuleComponent {
            limits: self.limits.at_least(&Limits::default()),
            ..self.clone()
        };
        trial.instantiate(Output::Discard).map(drop)
    }

    /// A fresh instance in its own Store.
    pub fn instantiate(&self, output: Output) -> anyhow::Result<RuleInstance> {
        let captured = match output {
            Output::Discard => None,
            Output::Capture => Some((
                wasi::BoundedOutput::new(self.limits.captured_output),
                wasi::BoundedOutput::new(self.limits.captured_output),
            )),
        };
        let virt = wasi::Virtual::default();
        let context = wasi::context(&virt, captured.as_ref().map(|(o, e)| (o, e)));
        let state = HostState::new(virt, context, self.limits.limiter());
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        // The deadline traps, less the time the host spent parsing whole lines for the
        // rule's reads (`event::take_full_parse_time`), which it gives back.
        let tick = self.limits.tick.as_nanos().max(1);
        store.epoch_deadline_callback(move |_| {
            let owed = crate::event::take_full_parse_time()
                .as_nanos()
                .div_ceil(tick);
            Ok(match u64::try_from(owed) {
                Ok(0) => UpdateDeadline::Interrupt,
                Ok(ticks) => UpdateDeadline::Continue(ticks),
                Err(_) => UpdateDeadline::Continue(u64::MAX),
            })
        });
        let fail = |e: wasmtime::Error| anyhow::anyhow!(flatten(&e));
        let instance = self.pre.instantiate(&mut store).map_err(fail)?;
        // `load` checks the exports' types against the WIT.
        let detection = self.detection.load(&mut store, &instance).map_err(fail)?;
        let batch = match &self.batch {
            Some(indices) => Some(indices.load(&mut store, &instance).map_err(fail)?),
            None => None,
        };
        if let (Some(indices), Some(source)) = (&self.rule_source, &self.source) {
            let guest = indices.load(&mut store, &instance).map_err(fail)?;
            store.data_mut().modules = source.modules.clone();
            store.set_epoch_deadline(python::load_deadline_ticks(&self.limits));
            let main = rule_source::Module {
                name: source.name.clone(),
                source: source.source.clone(),
            };
            let mocks: Vec<rule_source::Mock> = source
                .mocks
                .iter()
                .map(|m| rule_source::Mock {
                    name: m.name.clone(),
                    value: m.value.clone(),
                })
                .collect();
            guest
                .call_load(&mut store, &main, &mocks)
                .map_err(fail)?
                .map_err(|message| {
                    anyhow::anyhow!("`{}` did not load: {message}", self.path.display())
                })?;
            store.set_epoch_deadline(self.limits.deadline_ticks());
        }
        Ok(RuleInstance::new(
            store,
            detection,
            batch,
            captured,
            self.epoch.clone(),
            &self.limits,
        ))
    }
}
