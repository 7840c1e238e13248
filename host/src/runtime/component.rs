//! [`RuleComponent`]: a compiled, linked rule, ready to instantiate; whether it has the
//! optional `batch` export was found at load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::{batch, detection};
use super::host::HostState;
use super::instance::{Deadline, RuleInstance};
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

    /// One call's deadline from now, to share between several calls
    /// ([`RuleInstance::share_deadline`]).
    pub fn deadline(&self) -> Deadline {
        Deadline(self.epoch.load(Ordering::Relaxed) + self.limits.deadline_ticks())
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
        store.epoch_deadline_trap();
        let fail = |e: wasmtime::Error| anyhow::anyhow!(flatten(&e));
        let instance = self.pre.instantiate(&mut store).map_err(fail)?;
        // `load` checks the exports' types against the WIT.
        let detection = self.detection.load(&mut store, &instance).map_err(fail)?;
        let batch = match &self.batch {
            Some(indices) => Some(indices.load(&mut store, &instance).map_err(fail)?),
            None => None,
        };
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
