//! The sandbox: the only module that touches wasmtime.
//!
//! [`Runtime`] owns the one [`Engine`] and the [`Linker`]; [`Runtime::load`] compiles a
//! component once into a [`RuleComponent`]; [`RuleComponent::instantiate`] gives a
//! [`RuleInstance`] with its own `Store`, because a trap poisons a whole Store
//! (../shared/reference/wasm-costs.md, "Limits and traps"). After a [`RuleFailure`] the
//! caller drops the instance and instantiates a fresh one.
//!
//! A rule exports `rulehost:rules/detection@1.x`: Panther's functions, each called with the
//! event it is about (`host.rs` lends the parsed event as a `borrow<event>` resource). A
//! component may also export the `batch` speed path, found at load ([`RuleComponent::has_batch`]).
//!
//! At run time a rule sees a virtual WASI (`wasi.rs`): no environment, arguments, files or
//! network; clocks that read the event's time ([`RuleInstance::set_event_time`]); random
//! numbers from a fixed seed; bounded captured output. Each call is bounded by [`Limits`].
//!
//! One component may serve many rules: a language runtime (world `rule-runtime`, the
//! Python runtime of `python/`) is loaded once with [`Runtime::load_runtime_bytes`] and
//! becomes each rule with [`RuleComponent::with_source`] (`python.rs`).
//!
//! Loading refuses what a third party could slip in: files that are not `.wasm`
//! components, components of another world or version, and imports beyond the short list
//! in [`audit`]. Compiled code is kept in rulehost's own [`CodeCache`].

pub mod audit;
pub mod bindings;
mod cache;
mod component;
mod host;
mod instance;
mod limits;
mod python;
mod respawn;
mod wasi;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use bindings::{batch, detection, rule_source, types};
use host::HostState;

pub use crate::calls::{BatchFailure, BatchOutcome, CallResult, RuleFailure};
pub use audit::{Audit, ComponentKind, ImportVerdict, Provision, WorldMismatch};
pub use cache::{CacheOutcome, CacheProblem, CodeCache};
pub use component::{Output, RuleComponent};
pub use instance::{CapturedOutput, Deadline, RuleInstance};
pub use limits::Limits;
pub use python::{LOAD_DEADLINE_CALLS, Mock, Modules, RUNTIME_MIN_INSTANCES, RuleSource};
pub use respawn::Respawning;

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
    /// A component of another world: no `rulehost:rules/detection@1.x` export with the
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
        "rule component `{}` was built for `{name}`, but this rulehost speaks `rulehost:rules@1.x`: rebuild it against this rulehost's `wit/rulehost.wit` (for a Rust SDK rule, `make plugins`)",
        path.display()
    )]
    IncompatibleVersion {
        /// The component path.
        path: PathBuf,
        /// The first incompatible import or export.
        name: String,
    },
    /// Imports outside the allowed list ([`audit::WASI_ALLOWED`] and `types`). The
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
        types::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
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
        self.load_kind(path, bytes, pin, ComponentKind::Rule)
    }

    /// [`Runtime::load_bytes`] for a language runtime (world `rule-runtime`, the Python
    /// runtime): audited as one ([`ComponentKind::RuleRuntime`]), linked with `modules`
    /// and with stubs that refuse its file and socket imports, its instances made under
    /// at least [`RUNTIME_MIN_INSTANCES`] core instances. Compiled through the same cache
    /// and checks as any component; it becomes a rule with [`RuleComponent::with_source`].
    pub fn load_runtime_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        pin: Pin<'_>,
    ) -> Result<RuleComponent, LoadError> {
        self.load_kind(path, bytes, pin, ComponentKind::RuleRuntime)
    }

    fn load_kind(
        &self,
        path: &Path,
        bytes: &[u8],
        pin: Pin<'_>,
        kind: ComponentKind,
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
        Audit::of_kind(&self.engine, &component, kind).check(path)?;
        let rule = self.link(path, &component, sha256, cache, kind)?;
        if matches!(cache, CacheOutcome::Miss | CacheOutcome::Replaced) {
            // Only accepted components are stored.
            self.cache.put(&self.engine, &rule.sha256, &component);
        }
        Ok(rule)
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
                // A component that exports `rule-source` is judged as a language runtime.
                let kind = match component
                    .component_type()
                    .exports(&self.engine)
                    .any(|(name, _)| name.starts_with("rulehost:rules/rule-source@"))
                {
                    true => ComponentKind::RuleRuntime,
                    false => ComponentKind::Rule,
                };
                let audit = Audit::of_kind(&self.engine, &component, kind);
                inspection.problems = audit.problems(path);
                if inspection.problems.is_empty()
                    && let Err(e) = self.link(
                        path,
                        &component,
                        String::new(),
                        CacheOutcome::Disabled,
                        kind,
                    )
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

    /// Links `component` and makes one trial instance of it: the rule as loaded.
    fn link(
        &self,
        path: &Path,
        component: &Component,
        sha256: String,
        cache: CacheOutcome,
        kind: ComponentKind,
    ) -> Result<RuleComponent, LoadError> {
        let (pre, limits) = match kind {
            ComponentKind::Rule => (self.linker.instantiate_pre(component), self.limits.clone()),
            ComponentKind::RuleRuntime => (
                python::runtime_linker(&self.linker, &self.engine, component)
                    .and_then(|linker| linker.instantiate_pre(component)),
                python::runtime_limits(&self.limits),
            ),
        };
        let pre = pre.map_err(|e| invalid(path, &e))?;
        let detection = detection::GuestIndices::new(&pre).map_err(|e| invalid(path, &e))?;
        // Optional: a component without it is called one function at a time.
        let batch = batch::GuestIndices::new(&pre).ok();
        let rule_source = match kind {
            ComponentKind::Rule => None,
            ComponentKind::RuleRuntime => {
                Some(rule_source::GuestIndices::new(&pre).map_err(|e| invalid(path, &e))?)
            }
        };
        let rule = RuleComponent {
            pre,
            detection,
            batch,
            path: path.to_owned(),
            limits,
            sha256,
            cache,
            epoch: self.epoch.clone(),
            rule_source,
            source: None,
        };
        // wasmtime checks the exports' types when it makes an instance, not here: make one
        // now, so that a component whose functions are named right but typed wrong is
        // refused at load instead of failing on every event. Under limits at least as
        // generous as the defaults: a rule that needs more than tighter `--max-*` limits
        // allow stays a rule error at run time, as documented.
        let trial = RuleComponent {
            limits: rule.limits.at_least(&Limits::default()),
            ..rule.clone()
        };
        trial
            .instantiate(Output::Discard)
            .map_err(|e| LoadError::Invalid {
                path: path.to_owned(),
                message: format!("it cannot be instantiated: {e:#}"),
            })?;
        Ok(rule)
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
