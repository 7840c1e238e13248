//! [`RuleSet`]: the specs of a rule directory, each with its compiled component.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::lock::{LockMismatch, Lockfile};
use crate::runtime::{LoadError, Pin, RuleComponent, Runtime, sha256_hex};
use crate::spec::{Spec, find_specs};

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

/// Loads every spec under `dir`, resolving `Filename:` against the spec's folder, then
/// `components`. A component shared by several specs is compiled once.
pub fn load(runtime: &Runtime, dir: &Path, components: &[PathBuf]) -> anyhow::Result<RuleSet> {
    load_specs(runtime, dir, components, None)
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
    load_specs(runtime, dir, components, Some(lock))
}

fn load_specs(
    runtime: &Runtime,
    dir: &Path,
    components: &[PathBuf],
    lock: Option<&Lockfile>,
) -> anyhow::Result<RuleSet> {
    let paths = find_specs(dir)
        .with_context(|| format!("failed to read rule directory `{}`", dir.display()))?;
    let mut loader = Loader {
        runtime,
        dir,
        components,
        lock,
        compiled: HashMap::new(),
    };
    let mut rules: Vec<LoadedRule> = Vec::new();
    let mut invalid = Vec::new();
    let mut refused = Vec::new();
    for path in paths {
        let loaded = Spec::load(&path)
            .map_err(|e| Refusal::Load(e.into()))
            .and_then(|spec| {
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
    lock: Option<&'a Lockfile>,
    compiled: HashMap<PathBuf, RuleComponent>,
}

impl Loader<'_> {
    /// The component of `spec`; under a lock, only once the lock pins it and only if its
    /// bytes are the pinned ones.
    fn component(&mut self, spec: &Spec) -> Result<RuleComponent, Refusal> {
        let wasm = spec
            .resolve_component(self.components)
            .map_err(|e| Refusal::Load(e.into()))?;
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

fn load_error(spec: &Spec, error: LoadError) -> Refusal {
    Refusal::Load(
        anyhow::Error::from(error).context(format!("failed to load rule `{}`", spec.rule_id)),
    )
}
