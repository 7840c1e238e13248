//! The sandbox: the only module that touches wasmtime.
//!
//! [`Runtime`] owns the one [`Engine`] and the [`Linker`]; [`Runtime::load`] compiles a
//! component once into a [`RuleComponent`]; [`RuleComponent::instantiate`] gives a
//! [`RuleInstance`] with its own [`Store`], because a trap poisons a whole Store
//! (../shared/reference/wasm-costs.md, "Limits and traps"). After a [`RuleFailure`] the
//! caller drops the instance and instantiates a fresh one.

mod limits;

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::rulehost::rules::event_api;
use crate::bindings::{Rule, RulePre, WitValue};

pub use limits::Limits;

/// The host side of the WIT `event` resource. Its handles carry no data: the event a call
/// reads is the one installed in the calling Store ([`HostState::event`]).
pub struct EventHandle;

/// Everything a rule's Store holds.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// The event of the call in progress; `None` between calls.
    event: Option<Arc<Json>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl event_api::Host for HostState {}

impl event_api::HostEvent for HostState {
    fn get(&mut self, _event: Resource<EventHandle>, path: Vec<String>) -> Option<WitValue> {
        let event = self.event.as_deref()?;
        rulehost_event::deep_get(event, &path).map(to_wit)
    }

    fn drop(&mut self, _event: Resource<EventHandle>) -> wasmtime::Result<()> {
        // Rules only ever receive borrows; an owned handle is never handed out.
        Ok(())
    }
}

fn to_wit(value: &Json) -> WitValue {
    match value {
        Json::Null => WitValue::Null,
        Json::Bool(b) => WitValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => WitValue::Integer(i),
            None => WitValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => WitValue::Text(s.clone()),
        Json::Array(_) | Json::Object(_) => WitValue::Json(value.to_string()),
    }
}

/// Why a call into a rule failed. Each is a rule error (for `rule`) or a counted fallback
/// (for the other functions); the instance must be replaced after any but [`Self::Returned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleFailure {
    /// The call ran past the deadline ([`Limits::timeout`]).
    Timeout,
    /// The rule asked for more memory, tables or instances than [`Limits`] allow.
    ResourceLimit(String),
    /// The guest trapped: a Rust panic, an out-of-bounds access, an explicit `unreachable`.
    Trap(String),
    /// `rule` returned `err(message)`: the rule raised an error without crashing.
    Returned(String),
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
        }
    }

    /// Whether the Store is poisoned and the instance must be replaced.
    pub fn needs_fresh_instance(&self) -> bool {
        !matches!(self, RuleFailure::Returned(_))
    }
}

impl std::fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleFailure::Timeout => write!(f, "timed out"),
            RuleFailure::ResourceLimit(m) => write!(f, "resource limit exceeded: {m}"),
            RuleFailure::Trap(m) => write!(f, "trapped: {m}"),
            RuleFailure::Returned(m) => write!(f, "rule error: {m}"),
        }
    }
}

/// A component failed to load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("failed to read component `{}`", path.display())]
    Read {
        /// The component path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid component, or the component does not fit the rule world.
    #[error("invalid rule component `{}`: {message}", path.display())]
    Invalid {
        /// The component path.
        path: PathBuf,
        /// What wasmtime said, flattened.
        message: String,
    },
}

/// Stops the epoch ticker thread when the runtime is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The wasmtime engine, linker and limits shared by every rule.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    _ticker: Ticker,
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Deadlines: epoch interruption costs ~1-2 % per call for thin guests, fuel 2-40 %
        // (wasm-costs.md, "Use epoch interruption for production deadlines").
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| wasm_err(&e))?;

        let mut linker = Linker::new(&engine);
        // WASI with no capabilities: the WasiCtx of every Store is built empty (no preopens,
        // env, args or network). Rust's std imports wasi:cli and wasi:io even in pure code.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| wasm_err(&e))?;
        event_api::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| wasm_err(&e))?;

        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let tick = limits.tick;
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("rulehost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Runtime {
            engine,
            linker,
            limits,
            _ticker: Ticker { stop },
        })
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component file and checks that it fits the `rule` world.
    pub fn load(&self, path: &Path) -> Result<RuleComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(path, &bytes)
    }

    /// Compiles component bytes; `path` names them in errors.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<RuleComponent, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.to_owned(),
            message: flatten(&e),
        };
        let component = Component::from_binary(&self.engine, bytes).map_err(invalid)?;
        let pre = self.linker.instantiate_pre(&component).map_err(invalid)?;
        let pre = RulePre::new(pre).map_err(invalid)?;
        Ok(RuleComponent {
            pre,
            path: path.to_owned(),
            limits: self.limits.clone(),
        })
    }
}

/// A compiled rule component, ready to instantiate (cheap: ~20 µs).
#[derive(Clone)]
pub struct RuleComponent {
    pre: RulePre<HostState>,
    path: PathBuf,
    limits: Limits,
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

    /// A fresh instance in its own Store.
    pub fn instantiate(&self, output: Output) -> anyhow::Result<RuleInstance> {
        let mut wasi = WasiCtx::builder();
        let captured = match output {
            Output::Discard => None,
            Output::Capture => {
                let out = MemoryOutputPipe::new(self.limits.captured_output);
                let err = MemoryOutputPipe::new(self.limits.captured_output);
                wasi.stdout(out.clone()).stderr(err.clone());
                Some((out, err))
            }
        };
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: self.limits.store_limits(),
            event: None,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store.epoch_deadline_trap();
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!(flatten(&e)))?;
        Ok(RuleInstance {
            store,
            bindings,
            captured,
            deadline: self.limits.deadline_ticks(),
        })
    }
}

/// One live instance of a rule, in its own Store.
pub struct RuleInstance {
    store: Store<HostState>,
    bindings: Rule,
    captured: Option<(MemoryOutputPipe, MemoryOutputPipe)>,
    deadline: u64,
}

/// Generates a typed wrapper per optional export: they all share one shape.
macro_rules! optional_exports {
    ($($(#[$doc:meta])* $name:ident -> $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, event: &Arc<Json>) -> Result<Option<$ty>, RuleFailure> {
                self.call(event, |b, s, e| b.rulehost_rules_detection().$name(s, e))
            }
        )*
    };
}

impl RuleInstance {
    /// Calls `rule`.
    pub fn rule(&mut self, event: &Arc<Json>) -> Result<bool, RuleFailure> {
        self.call(event, |b, s, e| {
            b.rulehost_rules_detection().call_rule(s, e)
        })?
        .map_err(RuleFailure::Returned)
    }

    optional_exports! {
        /// Calls `title`.
        call_title -> String;
        /// Calls `dedup`.
        call_dedup -> String;
        /// Calls `unique`.
        call_unique -> String;
        /// Calls `severity`.
        call_severity -> String;
        /// Calls `alert-context`.
        call_alert_context -> String;
        /// Calls `description`.
        call_description -> String;
        /// Calls `reference`.
        call_reference -> String;
        /// Calls `runbook`.
        call_runbook -> String;
        /// Calls `destinations`.
        call_destinations -> Vec<String>;
    }

    /// What the rule printed so far, if output is captured: (stdout, stderr).
    pub fn captured_output(&self) -> Option<(String, String)> {
        self.captured.as_ref().map(|(out, err)| {
            (
                String::from_utf8_lossy(&out.contents()).into_owned(),
                String::from_utf8_lossy(&err.contents()).into_owned(),
            )
        })
    }

    fn call<T>(
        &mut self,
        event: &Arc<Json>,
        f: impl FnOnce(&Rule, &mut Store<HostState>, Resource<EventHandle>) -> wasmtime::Result<T>,
    ) -> Result<T, RuleFailure> {
        self.store.data_mut().event = Some(event.clone());
        // Re-armed before every call: the deadline counts from now, not from instantiation.
        self.store.set_epoch_deadline(self.deadline);
        let result = f(&self.bindings, &mut self.store, Resource::new_borrow(0));
        self.store.data_mut().event = None;
        result.map_err(|e| classify(&e))
    }
}

fn classify(error: &wasmtime::Error) -> RuleFailure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RuleFailure::Timeout,
        Some(Trap::AllocationTooLarge) => RuleFailure::ResourceLimit(flatten(error)),
        Some(_) => RuleFailure::Trap(flatten(error)),
        None if flatten(error).contains("forcing trap when growing") => {
            RuleFailure::ResourceLimit(flatten(error))
        }
        None => RuleFailure::Trap(flatten(error)),
    }
}

/// The error chain on one line: wasmtime nests the useful part ("wasm trap: ...") in the
/// chain, and a guest backtrace after it.
fn flatten(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or_default().trim().to_owned();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

fn wasm_err(error: &wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!(flatten(error))
}
