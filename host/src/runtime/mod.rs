//! The sandbox: the only module that touches wasmtime.
//!
//! [`Runtime`] owns the one [`Engine`] and the [`Linker`]; [`Runtime::load`] compiles a
//! component once into a [`RuleComponent`]; [`RuleComponent::instantiate`] gives a
//! [`RuleInstance`] with its own [`Store`], because a trap poisons a whole Store
//! (../shared/reference/wasm-costs.md, "Limits and traps"). After a [`RuleFailure`] the
//! caller drops the instance and instantiates a fresh one.
//!
//! At run time a rule sees a virtual WASI (`wasi.rs`): no environment, arguments, files or
//! network; clocks that read the event's time ([`RuleInstance::set_event_time`]); random
//! numbers from a fixed seed; bounded captured output. Each call is bounded by [`Limits`].
//!
//! Loading refuses what a third party could slip in: files that are not `.wasm`
//! components, components of another world or version, and imports beyond the short list
//! in [`audit`]. Compiled code is kept in rulehost's own [`CodeCache`].

pub mod audit;
mod cache;
mod limits;
mod wasi;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use crate::bindings::exports::rulehost::rules::detection::Matched;
use crate::bindings::rulehost::rules::event_api;
use crate::bindings::{Rule, RulePre, WitValue};

pub use audit::{Audit, ImportVerdict, Provision, WorldMismatch};
pub use cache::{CacheOutcome, CacheProblem, CodeCache};
pub use limits::Limits;

/// Everything a rule's Store holds.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: limits::StoreLimiter,
    /// The event of the call in progress; `None` between calls.
    event: Option<Arc<Json>>,
    /// The event time and call count the virtual clocks and random generators read.
    virt: wasi::Virtual,
    /// Paths registered with `field`, indexed by id; they live as long as the instance.
    fields: Vec<Vec<String>>,
    /// Bytes of path keys in `fields`, against [`MAX_FIELD_BYTES`].
    field_bytes: usize,
    /// Ids of the fields `evaluate` calls of this instance read with `get-field`, in the
    /// order first read: each `evaluate` call gets their values up front ([`pack`]).
    prefetch: Vec<u32>,
    /// Whether the call in progress is `evaluate` or `evaluate-batch` (whose reads join
    /// `prefetch`).
    in_evaluate: bool,
    /// The events of the `evaluate-batch` call in progress (`select-event` picks one).
    batch: Vec<Arc<Json>>,
}

/// Paths one instance may register with `field`. A rule reads a few dozen fields; the cap
/// bounds what a hostile guest makes the host keep (and the linear search of `field`,
/// which runs once per path and instance, not per event). Past it `field` gives `none` and
/// the SDK reads with `get`.
const MAX_FIELDS: usize = 256;
/// Bytes of path keys one instance may register, for the same reason: 256 paths of 256
/// bytes.
const MAX_FIELD_BYTES: usize = 64 << 10;
/// Fields packed into each `evaluate` call at most. A rule that reads some fields only on
/// rare branches gets them on every call once read; the cap bounds that waste.
const MAX_PREFETCH: usize = 16;

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl event_api::Host for HostState {
    fn field(&mut self, path: Vec<String>) -> Option<u32> {
        if let Some(id) = self.fields.iter().position(|p| *p == path) {
            return u32::try_from(id).ok();
        }
        let bytes: usize = path.iter().map(String::len).sum();
        if self.fields.len() >= MAX_FIELDS || self.field_bytes + bytes > MAX_FIELD_BYTES {
            return None;
        }
        self.field_bytes += bytes;
        self.fields.push(path);
        u32::try_from(self.fields.len() - 1).ok()
    }

    fn get_field(&mut self, id: u32) -> Option<WitValue> {
        let event = self.event.as_deref()?;
        let path = self.fields.get(usize::try_from(id).ok()?)?;
        if self.in_evaluate && self.prefetch.len() < MAX_PREFETCH && !self.prefetch.contains(&id) {
            self.prefetch.push(id);
        }
        rulehost_event::deep_get(event, path).map(to_wit)
    }

    fn get(&mut self, path: Vec<String>) -> Option<WitValue> {
        let event = self.event.as_deref()?;
        rulehost_event::deep_get(event, &path).map(to_wit)
    }

    fn select_event(&mut self, index: u32) {
        if let Some(event) = self.batch.get(index as usize) {
            self.event = Some(event.clone());
        }
    }
}

/// Writes the values of the fields `ids` (registered `paths`) of `event` into `out`, in
/// the format `evaluate`'s `fields` documents (wit/rulehost.wit): per field its id, a tag
/// and a payload, each value exactly what [`to_wit`] gives `get-field`.
fn pack(event: &Json, paths: &[Vec<String>], ids: &[u32], out: &mut Vec<u8>) {
    out.clear();
    for &id in ids {
        let Some(path) = paths.get(id as usize) else {
            continue;
        };
        let start = out.len();
        out.extend_from_slice(&id.to_le_bytes());
        let text = |out: &mut Vec<u8>, tag: u8, s: &str| match u32::try_from(s.len()) {
            Ok(len) => {
                out.push(tag);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            // Not representable: left out, so the rule reads it with `get-field`.
            Err(_) => out.truncate(start),
        };
        match rulehost_event::deep_get(event, path) {
            None => out.push(0),
            Some(Json::Null) => out.push(1),
            Some(Json::Bool(b)) => out.push(2 + u8::from(*b)),
            Some(Json::Number(n)) => match n.as_i64() {
                Some(i) => {
                    out.push(4);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                None => {
                    out.push(5);
                    out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
                }
            },
            Some(Json::String(s)) => text(out, 6, s),
            Some(value) => text(out, 7, &value.to_string()),
        }
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
    /// Not called: the deadline it shared with earlier calls ([`Deadline`]) had passed.
    DeadlinePassed,
}

/// Why [`RuleInstance::evaluate_batch`] gave no results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchFailure {
    /// The call failed as any call can.
    Call(RuleFailure),
    /// The rule read a clock or a random number during the call.
    ReadClockOrRandom,
    /// More events or packed bytes than fit the call's `u32`s.
    TooMany,
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

/// A component failed to load, or was refused.
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
    /// The file name does not end in `.wasm`. rulehost compiles components itself and
    /// never loads precompiled code (`.cwasm`) from rule authors.
    #[error(
        "rule component `{}` is not a `.wasm` file; rulehost compiles components itself and never loads precompiled artifacts",
        path.display()
    )]
    NotDotWasm {
        /// The component path.
        path: PathBuf,
    },
    /// The bytes do not hash to the sha256 pinned for them ([`Pin::Sha256`]); nothing was
    /// compiled.
    #[error(
        "rule component `{}` has sha256 {actual}, but {pinned} is pinned for it",
        path.display()
    )]
    PinMismatch {
        /// The component path.
        path: PathBuf,
        /// The sha256 pinned.
        pinned: String,
        /// The sha256 of the bytes.
        actual: String,
    },
    /// The bytes are a wasmtime precompiled artifact, whatever the file is called.
    #[error(
        "rule component `{}` is a precompiled wasmtime artifact, not a component; only `.wasm` components are loaded",
        path.display()
    )]
    Precompiled {
        /// The component path.
        path: PathBuf,
    },
    /// The bytes are not WebAssembly.
    #[error("rule component `{}` is not WebAssembly", path.display())]
    NotWasm {
        /// The component path.
        path: PathBuf,
    },
    /// A core WebAssembly module, not a component.
    #[error(
        "rule component `{}` is a core WebAssembly module, not a component (build rules for `wasm32-wasip2`)",
        path.display()
    )]
    CoreModule {
        /// The component path.
        path: PathBuf,
    },
    /// A component of another world: no `rulehost:rules/detection@0.2.x` export with the
    /// rule functions.
    #[error("rule component `{}` is not a rulehost rule: {mismatch}", path.display())]
    WrongWorld {
        /// The component path.
        path: PathBuf,
        /// What does not fit.
        mismatch: WorldMismatch,
    },
    /// `rulehost:rules` imported or exported at a version line this host does not speak.
    #[error(
        "rule component `{}` was built for `{name}`, but this rulehost speaks `rulehost:rules@0.2.x`",
        path.display()
    )]
    IncompatibleVersion {
        /// The component path.
        path: PathBuf,
        /// The first incompatible import or export.
        name: String,
    },
    /// Imports outside the allowed list ([`audit::WASI_ALLOWED`] and `event-api`). The
    /// allowed `wasi:clocks` and `wasi:random` are virtualised to the event's time and a
    /// fixed seed; the other allowed WASI interfaces carry no capability.
    #[error(
        "rule component `{}` imports {}, which rules may not use",
        path.display(),
        audit::backticked(imports)
    )]
    ForbiddenImports {
        /// The component path.
        path: PathBuf,
        /// Every refused import, sorted.
        imports: Vec<String>,
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
    cache: cache::OpenCache,
    /// Epoch ticks so far: wasmtime does not expose the engine's epoch, so the ticker
    /// counts them here too, for shared deadlines ([`Deadline`]).
    epoch: Arc<AtomicU64>,
    _ticker: Ticker,
}

impl Runtime {
    /// Creates the engine and starts its epoch ticker.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Deadlines: epoch interruption costs ~1-2 % per call for thin guests, fuel 2-40 %
        // (wasm-costs.md, "Use epoch interruption for production deadlines").
        config.epoch_interruption(true);
        // `RULEHOST_PERFMAP=1` (developers): write /tmp/perf-PID.map so that `perf report`
        // names the rules' compiled functions.
        if std::env::var_os("RULEHOST_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| wasm_err(&e))?;

        let mut linker = Linker::new(&engine);
        // WASI with no capabilities: the WasiCtx of every Store is built empty (no preopens,
        // env, args or network). Rust's std imports wasi:cli and wasi:io even in pure code.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| wasm_err(&e))?;
        event_api::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| wasm_err(&e))?;
        wasi::shadow_sleep(&mut linker).map_err(|e| wasm_err(&e))?;

        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let tick = limits.tick;
        let flag = stop.clone();
        let epoch = Arc::new(AtomicU64::new(0));
        let ticks = epoch.clone();
        std::thread::Builder::new()
            .name("rulehost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => {
                            engine.increment_epoch();
                            ticks.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
            })?;
        Ok(Runtime {
            engine,
            linker,
            limits,
            cache: cache::OpenCache::Disabled,
            epoch,
            _ticker: Ticker { stop },
        })
    }

    /// Keeps compiled components in `cache` (none by default), once its folder and key
    /// are checked (and made, on first use); when they must not be used,
    /// [`Runtime::cache_problem`] says why and every component is compiled.
    pub fn with_cache(mut self, cache: CodeCache) -> Self {
        self.cache = cache.open();
        self
    }

    /// Why the cache given to [`Runtime::with_cache`] is not used, if it is not: for the
    /// caller to report once.
    pub fn cache_problem(&self) -> Option<&CacheProblem> {
        self.cache.problem()
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a `.wasm` component file (or takes it from the cache), audits its imports
    /// and checks that it fits the `rule` world.
    pub fn load(&self, path: &Path) -> Result<RuleComponent, LoadError> {
        self.load_bytes(path, &Self::read_component(path)?, Pin::Unpinned)
    }

    /// The bytes of a component file, to hand to [`Runtime::load_bytes`]: only `.wasm`
    /// files are read.
    pub fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
        check_extension(path)?;
        read(path)
    }

    /// Compiles component bytes (or takes them from the cache), audits their imports and
    /// checks that they fit the `rule` world; `path` names them in errors. Bytes that do
    /// not hash to `pin` are refused first, before the cache, the compiler or wasmtime
    /// sees them (`--locked`).
    pub fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        pin: Pin<'_>,
    ) -> Result<RuleComponent, LoadError> {
        let sha256 = sha256_hex(bytes);
        if let Pin::Sha256(pinned) = pin
            && pinned != sha256
        {
            return Err(LoadError::PinMismatch {
                path: path.to_owned(),
                pinned: pinned.to_owned(),
                actual: sha256,
            });
        }
        audit::check_header(path, bytes)?;
        let (component, cache) = match self.cache.get(&self.engine, &sha256) {
            Ok(component) => (component, CacheOutcome::Hit),
            Err(outcome) => (self.compile(path, bytes)?, outcome),
        };
        // Before linking: a refused import must be named as such, not as a link error.
        Audit::of(&self.engine, &component).check(path)?;
        let pre = self.link(path, &component)?;
        if matches!(cache, CacheOutcome::Miss | CacheOutcome::Replaced) {
            // Only accepted components are stored.
            self.cache.put(&self.engine, &sha256, &component);
        }
        Ok(RuleComponent {
            pre,
            path: path.to_owned(),
            limits: self.limits.clone(),
            sha256,
            cache,
            epoch: self.epoch.clone(),
        })
    }

    /// Describes a component file and the load verdict, without the cache; only a file
    /// that cannot be read is an error.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, LoadError> {
        let bytes = read(path)?;
        let mut inspection = Inspection {
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            audit: None,
            problems: Vec::new(),
        };
        let checked = check_extension(path)
            .and(audit::check_header(path, &bytes))
            .and_then(|()| self.compile(path, &bytes));
        match checked {
            Ok(component) => {
                let audit = Audit::of(&self.engine, &component);
                inspection.problems = audit.problems(path);
                if inspection.problems.is_empty()
                    && let Err(e) = self.link(path, &component)
                {
                    inspection.problems.push(e);
                }
                inspection.audit = Some(audit);
            }
            Err(e) => inspection.problems.push(e),
        }
        Ok(inspection)
    }

    fn compile(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
        Component::from_binary(&self.engine, bytes).map_err(|e| invalid(path, &e))
    }

    fn link(&self, path: &Path, component: &Component) -> Result<RulePre<HostState>, LoadError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| invalid(path, &e))?;
        let pre = RulePre::new(pre).map_err(|e| invalid(path, &e))?;
        // wasmtime checks the exports' types when it makes an instance, not here: make one
        // now, so that a component whose functions are named right but typed wrong is
        // refused at load instead of failing on every event. Under limits at least as
        // generous as the defaults: a rule that needs more than tighter `--max-*` limits
        // allow stays a rule error at run time, as documented.
        let trial = RuleComponent {
            pre: pre.clone(),
            path: path.to_owned(),
            limits: self.limits.at_least(&Limits::default()),
            sha256: String::new(),
            cache: CacheOutcome::Disabled,
            epoch: self.epoch.clone(),
        };
        trial
            .instantiate(Output::Discard)
            .map_err(|e| LoadError::Invalid {
                path: path.to_owned(),
                message: format!("it cannot be instantiated: {e:#}"),
            })?;
        Ok(pre)
    }
}

/// What the bytes given to [`Runtime::load_bytes`] must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin<'a> {
    /// Anything (no `--locked`).
    Unpinned,
    /// This sha256, lowercase hex: the one `rulehost.lock` pins.
    Sha256(&'a str),
}

/// sha256 of component bytes, lowercase hex: what `rulehost.lock` pins and
/// [`RuleComponent::sha256`] reports.
pub fn sha256_hex(bytes: &[u8]) -> String {
    cache::hex(&Sha256::digest(bytes))
}

/// What `rulehost inspect` shows about a component file.
#[derive(Debug)]
pub struct Inspection {
    /// File size in bytes.
    pub size: u64,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
    /// Imports and exports, when the file compiled as a component.
    pub audit: Option<Audit>,
    /// Every reason the component is refused; empty when it loads.
    pub problems: Vec<LoadError>,
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Only `.wasm` files: a `.cwasm` (or anything else) named in `Filename:` is refused.
fn check_extension(path: &Path) -> Result<(), LoadError> {
    match path.extension() {
        Some(ext) if ext.eq_ignore_ascii_case("wasm") => Ok(()),
        _ => Err(LoadError::NotDotWasm {
            path: path.to_owned(),
        }),
    }
}

fn invalid(path: &Path, error: &wasmtime::Error) -> LoadError {
    LoadError::Invalid {
        path: path.to_owned(),
        message: flatten(error),
    }
}

/// A compiled rule component, ready to instantiate (cheap: ~20 µs).
#[derive(Clone)]
pub struct RuleComponent {
    pre: RulePre<HostState>,
    path: PathBuf,
    limits: Limits,
    sha256: String,
    cache: CacheOutcome,
    epoch: Arc<AtomicU64>,
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
        let state = HostState {
            wasi: wasi::context(&virt, captured.as_ref().map(|(o, e)| (o, e))),
            table: ResourceTable::new(),
            limits: self.limits.limiter(),
            event: None,
            virt,
            fields: Vec::new(),
            field_bytes: 0,
            prefetch: Vec::new(),
            in_evaluate: false,
            batch: Vec::new(),
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
            epoch: self.epoch.clone(),
            shared_deadline: None,
            deadline: self.limits.deadline_ticks(),
            max_returned_bytes: self.limits.max_returned_bytes,
            packed: Vec::new(),
        })
    }
}

/// One live instance of a rule, in its own Store.
pub struct RuleInstance {
    store: Store<HostState>,
    bindings: Rule,
    captured: Option<(wasi::BoundedOutput, wasi::BoundedOutput)>,
    epoch: Arc<AtomicU64>,
    /// Set by [`RuleInstance::share_deadline`]: every call ends by then.
    shared_deadline: Option<Deadline>,
    /// Ticks of one call's own deadline.
    deadline: u64,
    max_returned_bytes: usize,
    /// `evaluate`'s `fields`, kept to reuse the buffer.
    packed: Vec<u8>,
}

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

/// Generates a typed wrapper per optional export: they all share one shape.
macro_rules! optional_exports {
    ($($(#[$doc:meta])* $name:ident -> $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, event: &Arc<Json>) -> Result<Option<$ty>, RuleFailure> {
                self.call(event, |b, s| b.rulehost_rules_detection().$name(s))
            }
        )*
    };
}

/// A point in time (in epoch ticks) by which calls must end: several calls can share one
/// call's deadline, so that together they cost at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(u64);

impl RuleInstance {
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

    /// Calls `rule`.
    pub fn rule(&mut self, event: &Arc<Json>) -> Result<bool, RuleFailure> {
        self.call(event, |b, s| b.rulehost_rules_detection().call_rule(s))?
            .map_err(RuleFailure::Returned)
    }

    /// Calls `evaluate`: `rule`, then on a match `dedup`, `title` (when `dedup` is not
    /// defined) and `unique`, in one call. `Ok(Err(_))` is `rule`'s error; a failure does
    /// not say which function failed, so callers redo the calls one by one on a fresh
    /// instance.
    pub fn evaluate(
        &mut self,
        event: &Arc<Json>,
    ) -> Result<Result<Option<Matched>, String>, RuleFailure> {
        let mut packed = std::mem::take(&mut self.packed);
        let state = self.store.data();
        pack(event, &state.fields, &state.prefetch, &mut packed);
        self.call_packed(event, packed, |b, s, fields| {
            b.rulehost_rules_detection().call_evaluate(s, fields)
        })
    }

    /// [`RuleInstance::call`] for `evaluate` and `evaluate-batch`: hands `f` the packed
    /// `fields`, has the call's `get-field` reads join the prefetch list, and keeps the
    /// buffer for the next call.
    fn call_packed<T: Returned>(
        &mut self,
        event: &Arc<Json>,
        packed: Vec<u8>,
        f: impl FnOnce(&Rule, &mut Store<HostState>, &[u8]) -> wasmtime::Result<T>,
    ) -> Result<T, RuleFailure> {
        self.store.data_mut().in_evaluate = true;
        let result = self.call(event, |b, s| f(b, s, &packed));
        self.store.data_mut().in_evaluate = false;
        self.packed = packed;
        result
    }

    /// Calls `evaluate-batch` on `events` (one deadline and one call for all of them): one
    /// result per event, as `evaluate` would give it. Fails as a whole, like any call, and
    /// also with [`BatchFailure::ReadClockOrRandom`] when the rule read a clock or a random
    /// number, whose values depend on the call: then the caller must evaluate the events
    /// one by one, and need not try batches of this rule again.
    pub fn evaluate_batch(
        &mut self,
        events: &[Arc<Json>],
    ) -> Result<Vec<Result<Option<Matched>, String>>, BatchFailure> {
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        let count = u32::try_from(events.len()).map_err(|_| BatchFailure::TooMany)?;
        let mut packed = std::mem::take(&mut self.packed);
        packed.clear();
        let mut section = Vec::new();
        let state = self.store.data_mut();
        for event in events {
            pack(event, &state.fields, &state.prefetch, &mut section);
            let Ok(len) = u32::try_from(section.len()) else {
                self.packed = packed;
                return Err(BatchFailure::TooMany);
            };
            packed.extend_from_slice(&len.to_le_bytes());
            packed.extend_from_slice(&section);
        }
        state.batch = events.to_vec();
        let reads = state.virt.reads();
        let result = self.call_packed(first, packed, |b, s, fields| {
            b.rulehost_rules_detection()
                .call_evaluate_batch(s, fields, count)
        });
        let state = self.store.data_mut();
        state.batch.clear();
        let read_clock_or_random = state.virt.reads() != reads;
        let results = result.map_err(BatchFailure::Call)?;
        if read_clock_or_random {
            return Err(BatchFailure::ReadClockOrRandom);
        }
        if results.len() != events.len() {
            return Err(BatchFailure::Call(RuleFailure::Trap(format!(
                "`evaluate-batch` returned {} results for {} events",
                results.len(),
                events.len()
            ))));
        }
        Ok(results)
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

    fn call<T: Returned>(
        &mut self,
        event: &Arc<Json>,
        f: impl FnOnce(&Rule, &mut Store<HostState>) -> wasmtime::Result<T>,
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
        self.store.data_mut().event = Some(event.clone());
        self.store.data().virt.begin_call();
        self.store.set_epoch_deadline(ticks);
        let result = f(&self.bindings, &mut self.store);
        self.store.data_mut().event = None;
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

impl Returned for Matched {
    fn returned_bytes(&self) -> usize {
        self.dedup.returned_bytes() + self.title.returned_bytes() + self.unique.returned_bytes()
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

/// The error chain on one line: wasmtime nests the useful part ("wasm trap: ...") in the
/// chain, and a guest backtrace after it.
fn flatten(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches(':');
        // The backtrace preamble says nothing the trap message below it does not.
        if first.starts_with("error while executing at wasm backtrace") {
            continue;
        }
        let first = first.to_owned();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

fn wasm_err(error: &wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!(flatten(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_api::Host;

    fn state(event: &str) -> HostState {
        let virt = wasi::Virtual::default();
        HostState {
            wasi: wasi::context(&virt, None),
            table: ResourceTable::new(),
            limits: Limits::default().limiter(),
            event: Some(Arc::new(serde_json::from_str(event).unwrap())),
            virt,
            fields: Vec::new(),
            field_bytes: 0,
            prefetch: Vec::new(),
            in_evaluate: false,
            batch: Vec::new(),
        }
    }

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn fields_are_registered_once_and_read_like_get() {
        let mut s = state(r#"{"User": {"Email": "a@b.c"}, "n": null}"#);
        let email = s.field(path(&["user", "email"])).unwrap();
        assert_eq!(s.field(path(&["n"])), Some(email + 1));
        assert_eq!(s.field(path(&["user", "email"])), Some(email));
        let by_id = s.get_field(email);
        let by_path = s.get(path(&["user", "email"]));
        assert!(matches!(&by_id, Some(WitValue::Text(t)) if t == "a@b.c"));
        assert_eq!(format!("{by_id:?}"), format!("{by_path:?}"));
        let null = s.get_field(email + 1);
        assert!(matches!(null, Some(WitValue::Null)));
        assert!(s.get_field(99).is_none());
    }

    #[test]
    fn evaluate_reads_are_prefetched_once_each_up_to_a_cap() {
        let mut s = state(r#"{"a": 1}"#);
        let ids: Vec<u32> = (0..MAX_PREFETCH + 2)
            .map(|i| s.field(path(&[&i.to_string()])).unwrap())
            .collect();
        s.get_field(ids[0]);
        assert!(
            s.prefetch.is_empty(),
            "reads outside `evaluate` are not prefetched"
        );
        s.in_evaluate = true;
        for &id in ids.iter().rev().chain(&ids) {
            s.get_field(id);
        }
        let expected: Vec<u32> = ids.iter().rev().take(MAX_PREFETCH).copied().collect();
        assert_eq!(s.prefetch, expected);
    }

    #[test]
    fn pack_writes_each_kind_of_value_as_documented() {
        let event: Json = serde_json::from_str(
            r#"{"s": "h\u00e9", "i": -2, "f": 1.5, "t": true, "n": null, "o": {"k": [1]},
                "b": false, "big": 18446744073709551615}"#,
        )
        .unwrap();
        let paths: Vec<Vec<String>> = ["s", "i", "f", "t", "n", "o", "b", "missing", "big"]
            .iter()
            .map(|k| path(&[k]))
            .collect();
        let mut out = vec![9, 9];
        pack(&event, &paths, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 42], &mut out);
        let mut want = Vec::new();
        let mut entry = |id: u32, tag: u8, payload: &[u8]| {
            want.extend_from_slice(&id.to_le_bytes());
            want.push(tag);
            want.extend_from_slice(payload);
        };
        let text = |s: &str| [&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat();
        entry(0, 6, &text("hé"));
        entry(1, 4, &(-2i64).to_le_bytes());
        entry(2, 5, &1.5f64.to_le_bytes());
        entry(3, 3, &[]);
        entry(4, 1, &[]);
        entry(5, 7, &text(r#"{"k":[1]}"#));
        entry(6, 2, &[]);
        entry(7, 0, &[]);
        // Past i64: a float, as `get-field` gives it. Id 42 is not registered: left out.
        entry(8, 5, &18446744073709551615f64.to_le_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn fields_are_capped() {
        let mut s = state("{}");
        for i in 0..MAX_FIELDS {
            assert!(s.field(path(&[&i.to_string()])).is_some());
        }
        assert_eq!(s.field(path(&["one more"])), None);
        assert_eq!(s.field(path(&["0"])), Some(0), "known paths keep their id");
        let mut s = state("{}");
        let long = "k".repeat(MAX_FIELD_BYTES);
        assert!(s.field(path(&[&long])).is_some());
        assert_eq!(s.field(path(&["k"])), None);
    }
}
