//! [`RuleSet`]: the specs of a rule directory, each with its compiled component (for a
//! Python rule, the Python runtime with the rule's source, `crate::python`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::lock::{LockMismatch, Lockfile};
use crate::python::{self, PythonSettings};
use crate::runtime::{LoadError, Modules, Pin, RuleComponent, RuleSource, Runtime, sha256_hex};
use crate::spec::{RuleLanguage, Spec, SpecError, find_specs};

/// A spec and its compiled component.
#[derive(Clone)]
pub struct LoadedRule {
    /// The validated YAML.
    pub spec: Spec,
    /// The compiled component.
    pub component: RuleComponent,
}

/// Everything loaded from one or more rule directories.
pub struct RuleSet {
    /// Rules that loaded, sorted by RuleID.
    pub rules: Vec<LoadedRule>,
    /// Files that did not load, each with its full error.
    pub invalid: Vec<(PathBuf, anyhow::Error)>,
    /// Specs that `rulehost.lock` refused ([`load_locked`] only), sorted by RuleID; their
    /// components were not compiled.
    pub refused: Vec<LockMismatch>,
}

/// Where a spec's `Filename:` and a Python rule's helpers are looked for.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Folders searched for `Filename:` after the spec's own folder.
    pub components: Vec<PathBuf>,
    /// The Python runtime and helpers.
    pub python: PythonSettings,
}

/// Loads every spec under `dir`, resolving `Filename:` against the spec's folder, then
/// `components`. A component shared by several specs is compiled once; so is the Python
/// runtime, shared by every Python rule. Specs of another `AnalysisType` than `rule`
/// are Panther's helpers (`global`), which are skipped, or are invalid.
pub fn load(runtime: &Runtime, dir: &Path, components: &[PathBuf]) -> anyhow::Result<RuleSet> {
    let search = Search {
        components: components.to_vec(),
        ..Search::default()
    };
    load_specs(runtime, dir, &search, None)
}

/// [`load`] or [`load_locked`] (when `lock` is given) with every search setting.
pub fn load_with(
    runtime: &Runtime,
    dir: &Path,
    search: &Search,
    lock: Option<&Lockfile>,
) -> anyhow::Result<RuleSet> {
    load_specs(runtime, dir, search, lock)
}

/// Like [`load`], but each spec must match `lock` (the lock file of `dir`), and is checked
/// before its component is compiled, taken from the cache or instantiated: a spec whose
/// RuleID the lock does not pin, whose `Filename:` changed or whose component's bytes
/// differ from the pin joins [`RuleSet::refused`] instead.
pub fn load_locked(
    runtime: &Runtime,
    dir: &Path,
    components: &[PathBuf],
    lock: &Lockfile,
) -> anyhow::Result<RuleSet> {
    let search = Search {
        components: components.to_vec(),
        ..Search::default()
    };
    load_specs(runtime, dir, &search, Some(lock))
}

fn load_specs(
    runtime: &Runtime,
    dir: &Path,
    search: &Search,
    lock: Option<&Lockfile>,
) -> anyhow::Result<RuleSet> {
    let paths = find_specs(dir)
        .with_context(|| format!("failed to read rule directory `{}`", dir.display()))?;
    let mut loader = Loader {
        runtime,
        dir,
        components: &search.components,
        python: &search.python,
        lock,
        compiled: HashMap::new(),
        python_runtime: None,
        helpers: None,
    };
    let mut rules: Vec<LoadedRule> = Vec::new();
    let mut invalid = Vec::new();
    let mut refused = Vec::new();
    for path in paths {
        let spec = match Spec::load(&path) {
            // Panther's helpers: found through `global_helpers/`, not loaded as rules.
            Err(SpecError::NotARule { analysis_type, .. }) if analysis_type == "global" => {
                continue;
            }
            spec => spec,
        };
        let loaded = spec.map_err(|e| Refusal::Load(e.into())).and_then(|spec| {
            let component = loader.component(&spec)?;
            Ok(LoadedRule { spec, component })
        });
        match loaded {
            Ok(rule) => match rules.iter().find(|r| r.spec.rule_id == rule.spec.rule_id) {
                Some(first) => invalid.push((
                    path,
                    anyhow::anyhow!(
                        "duplicate RuleID `{}`: already defined in `{}`",
                        rule.spec.rule_id,
                        first.spec.path.display()
                    ),
                )),
                None => rules.push(rule),
            },
            Err(Refusal::Load(e)) => invalid.push((path, e)),
            Err(Refusal::Lock(mismatch)) => refused.push(*mismatch),
        }
    }
    rules.sort_by(|a, b| a.spec.rule_id.cmp(&b.spec.rule_id));
    refused.sort_by(|a, b| a.rule_id().cmp(b.rule_id()));
    Ok(RuleSet {
        rules,
        invalid,
        refused,
    })
}

/// Why a spec has no component.
enum Refusal {
    /// The lock refused it (boxed: a mismatch is large, and rare).
    Lock(Box<LockMismatch>),
    /// It did not load.
    Load(anyhow::Error),
}

impl From<LockMismatch> for Refusal {
    fn from(mismatch: LockMismatch) -> Self {
        Refusal::Lock(Box::new(mismatch))
    }
}

/// Loads the components of specs, each file once.
struct Loader<'a> {
    runtime: &'a Runtime,
    dir: &'a Path,
    components: &'a [PathBuf],
    python: &'a PythonSettings,
    lock: Option<&'a Lockfile>,
    compiled: HashMap<PathBuf, RuleComponent>,
    /// The Python runtime: its file, its bytes' sha256, and the component once compiled
    /// (after the first Python rule's pin is checked); read at the first Python rule.
    python_runtime: Option<Result<PythonRuntime, String>>,
    /// The helper modules, read at the first Python rule.
    helpers: Option<Result<Arc<Modules>, String>>,
}

/// The Python runtime as read, then compiled.
struct PythonRuntime {
    path: PathBuf,
    sha256: String,
    bytes: Vec<u8>,
    /// Compiled once; a failure is kept, not tried again for each rule.
    compiled: Option<Result<RuleComponent, String>>,
}

impl Loader<'_> {
    /// The component of `spec`; under a lock, only once the lock pins it and only if its
    /// bytes are the pinned ones.
    fn component(&mut self, spec: &Spec) -> Result<RuleComponent, Refusal> {
        let wasm = spec
            .resolve_component(self.components)
            .map_err(|e| Refusal::Load(e.into()))?;
        if spec.language() == RuleLanguage::Python {
            return self.python_rule(spec, &wasm);
        }
        let loaded = match (self.lock, self.compiled.get(&wasm)) {
            (None, Some(component)) => return Ok(component.clone()),
            (None, None) => self.runtime.load(&wasm),
            (Some(lock), Some(component)) => {
                let actual = component.sha256();
                let pinned = lock.pinned_sha256(self.dir, spec, &wasm, || actual.to_owned())?;
                if pinned != actual {
                    let mismatch =
                        Lockfile::mismatch(self.dir, &spec.rule_id, &wasm, pinned, actual);
                    return Err(mismatch.into());
                }
                return Ok(component.clone());
            }
            (Some(lock), None) => {
                let bytes = Runtime::read_component(&wasm).map_err(|e| load_error(spec, e))?;
                let pinned = lock.pinned_sha256(self.dir, spec, &wasm, || sha256_hex(&bytes))?;
                self.runtime.load_bytes(&wasm, &bytes, Pin::Sha256(pinned))
            }
        };
        let component = loaded.map_err(|e| match e {
            LoadError::PinMismatch { pinned, actual, .. } => {
                Lockfile::mismatch(self.dir, &spec.rule_id, &wasm, &pinned, &actual).into()
            }
            e => load_error(spec, e),
        })?;
        self.compiled.insert(wasm, component.clone());
        Ok(component)
    }
}

impl Loader<'_> {
    /// The Python rule of `spec`, whose module is the file `file`: the runtime with the
    /// module's source and the helpers. Under a lock, its [`python::digest`] must be the
    /// pinned one before the runtime is compiled. One trial instance loads the module, so
    /// that a syntax error or a failed import is a load error, not an error per event.
    fn python_rule(&mut self, spec: &Spec, file: &Path) -> Result<RuleComponent, Refusal> {
        let failed = |e: anyhow::Error| {
            Refusal::Load(e.context(format!("failed to load rule `{}`", spec.rule_id)))
        };
        let source = python::read_source(file).map_err(|e| failed(e.into()))?;
        let name = python::module_name(file);
        let helpers = self.helpers().map_err(|e| failed(anyhow::anyhow!(e)))?;
        let (runtime_sha256, runtime_path) = {
            let runtime = self
                .python_runtime()
                .map_err(|e| failed(anyhow::anyhow!(e)))?;
            (runtime.sha256.clone(), runtime.path.clone())
        };
        let digest = python::digest(&runtime_sha256, &name, &source, &helpers);
        if let Some(lock) = self.lock {
            let pinned = lock.pinned_sha256(self.dir, spec, file, || digest.clone())?;
            if pinned != digest {
                return Err(
                    Lockfile::mismatch(self.dir, &spec.rule_id, file, pinned, &digest).into(),
                );
            }
        }
        let runtime = self.compiled_python_runtime().map_err(|e| {
            failed(anyhow::anyhow!(e).context(format!(
                "failed to load the Python runtime `{}`",
                runtime_path.display()
            )))
        })?;
        let rule_source = RuleSource {
            name,
            source,
            modules: helpers,
            mocks: Vec::new(),
        };
        let rule = runtime
            .with_source(file, digest, rule_source)
            .ok_or_else(|| {
                failed(anyhow::anyhow!(
                    "`{}` is not a rule runtime",
                    runtime_path.display()
                ))
            })?;
        rule.trial().map_err(failed)?;
        Ok(rule)
    }

    /// The helper modules of the rules of `dir` (none when there is no helpers' folder).
    fn helpers(&mut self) -> Result<Arc<Modules>, String> {
        let dir = self.dir;
        let python = self.python;
        self.helpers
            .get_or_insert_with(|| match python.helpers(dir) {
                None => Ok(Arc::default()),
                Some(folder) => python::read_helpers(&folder)
                    .map(Arc::new)
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e))),
            })
            .clone()
    }

    /// The Python runtime's file and sha256, read once.
    fn python_runtime(&mut self) -> Result<&mut PythonRuntime, String> {
        let python = self.python;
        self.python_runtime
            .get_or_insert_with(|| {
                let path = python.runtime().map_err(|e| match e.hint() {
                    Some(hint) => format!("{e}\n\nhint: {hint}"),
                    None => e.to_string(),
                })?;
                let bytes = Runtime::read_component(&path)
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
                Ok(PythonRuntime {
                    sha256: sha256_hex(&bytes),
                    path,
                    bytes,
                    compiled: None,
                })
            })
            .as_mut()
            .map_err(|e| e.clone())
    }

    /// The Python runtime compiled (or taken from the cache), once: the very bytes whose
    /// sha256 went into the pins.
    fn compiled_python_runtime(&mut self) -> Result<RuleComponent, String> {
        let runtime = self.runtime;
        let python = self.python_runtime()?;
        if python.compiled.is_none() {
            let compiled = runtime
                .load_runtime_bytes(&python.path, &python.bytes, Pin::Sha256(&python.sha256))
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)));
            python.bytes = Vec::new();
            python.compiled = Some(compiled);
        }
        python.compiled.clone().expect("compiled above")
    }
}

fn load_error(spec: &Spec, error: LoadError) -> Refusal {
    Refusal::Load(
        anyhow::Error::from(error).context(format!("failed to load rule `{}`", spec.rule_id)),
    )
}
