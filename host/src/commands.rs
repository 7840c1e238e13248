//! One module per subcommand, each a clap struct with `run`.

pub mod debug;
pub mod eval;
pub mod inspect;
pub mod lock;
#[cfg(feature = "serve")]
pub mod serve;
pub mod state;
pub mod test;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::eval::{DEFAULT_QUARANTINE_AFTER, Quarantine};
use crate::lock::Lockfile;
use crate::python::PythonSettings;
use crate::ruleset::{self, RuleSet, Search};
use crate::runtime::{CodeCache, Limits, Runtime};

/// `--max-clock-skew` (`eval`, `serve`): a duration, `0` for no guard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Skew(pub Option<i64>);

pub(crate) fn parse_skew(text: &str) -> Result<Skew, String> {
    if text.trim() == "0" {
        return Ok(Skew(None));
    }
    match crate::clock::parse_offset_ms(text) {
        Some(ms) if ms > 0 => Ok(Skew(Some(ms))),
        _ => Err(format!(
            "expected a duration such as `30m`, `1h` or `2d` (or `0` for none), got `{text}`"
        )),
    }
}

/// Where Python rules' runtime and helpers are (specs whose `Filename:` is a `.py`).
#[derive(Debug, Args)]
pub struct PythonArgs {
    /// The Python runtime component (`make python-runtime` builds
    /// `build/runtimes/python.wasm`); by default `runtimes/python.wasm` beside the binary,
    /// then `build/runtimes/python.wasm` of the checkout it was built in.
    #[arg(long, value_name = "FILE", env = "RULEHOST_PYTHON_RUNTIME")]
    pub python_runtime: Option<PathBuf>,
    /// Panther's global helpers (modules Python rules import); by default the
    /// `global_helpers/` folder of the rules folder or of the nearest folder above it.
    #[arg(long, value_name = "DIR")]
    pub helpers: Option<PathBuf>,
}

impl PythonArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> PythonSettings {
        PythonSettings {
            runtime: self.python_runtime.clone(),
            helpers: self.helpers.clone(),
        }
    }
}

/// Options shared by commands that load rules.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Folders searched for a spec's `Filename:` component after the spec's own folder.
    #[arg(
        long = "components",
        value_name = "DIR",
        env = "RULEHOST_COMPONENTS",
        value_delimiter = ':'
    )]
    pub components: Vec<PathBuf>,
    /// Deadline for one call into a rule, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub timeout_ms: u64,
    /// Linear memory cap per rule instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub memory_mib: usize,
    /// Most bytes one call may hand back (a title, dedup, error message, ...); a larger
    /// result is a `ResourceLimit` failure.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_returned_bytes)]
    pub max_returned_bytes: usize,
    /// Most elements one table of a rule instance may hold (indirect-call tables).
    #[arg(long, value_name = "N", default_value_t = Limits::default().table_elements)]
    pub max_table_elements: usize,
    /// Most core instances, tables and memories each, per rule instance.
    #[arg(long, value_name = "N", default_value_t = Limits::default().instances)]
    pub max_instances: usize,
    /// Stop calling a rule after it failed on this many events in a row (0: never).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QUARANTINE_AFTER)]
    pub quarantine_after: u32,
    /// Refuse to run unless every rule's component matches `DIR/rulehost.lock` (written by
    /// `rulehost lock DIR`), checked before any component is compiled.
    #[arg(long)]
    pub locked: bool,
    /// Compile every component afresh instead of using the compiled-code cache
    /// (`$RULEHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/rulehost`, else `~/.cache/rulehost`;
    /// its key: `$RULEHOST_CACHE_KEY`, else `~/.config/rulehost/cache.key`).
    #[arg(long)]
    pub no_cache: bool,
    /// Python rules' runtime and helpers.
    #[command(flatten)]
    pub python: PythonArgs,
}

/// Whether rules must match `rulehost.lock` before they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPolicy {
    /// No check (the default).
    Ignore,
    /// `--locked`: every rule must be pinned, with the same component file and sha256.
    Enforce,
}

impl RuleArgs {
    /// The sandbox limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_millis(self.timeout_ms),
            memory_bytes: self.memory_mib.saturating_mul(1 << 20),
            max_returned_bytes: self.max_returned_bytes,
            table_elements: self.max_table_elements,
            instances: self.max_instances,
            ..Limits::default()
        }
    }

    /// When a failing rule is quarantined (`eval`; `test` runs every case regardless).
    pub fn quarantine(&self) -> Quarantine {
        Quarantine::after(self.quarantine_after)
    }

    /// The compiled-code cache these flags describe.
    pub fn cache(&self) -> CodeCache {
        if self.no_cache {
            CodeCache::Disabled
        } else {
            CodeCache::from_env()
        }
    }

    /// Whether `--locked` was given.
    pub fn lock_policy(&self) -> LockPolicy {
        if self.locked {
            LockPolicy::Enforce
        } else {
            LockPolicy::Ignore
        }
    }

    /// The runtime these flags describe: limits and cache (see [`runtime`]).
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        runtime(self.limits(), self.cache())
    }

    /// Loads the specs of `dir` with [`RuleArgs::runtime`]: `None` when `--locked` refused
    /// them (every problem was printed). Under `--locked`, `DIR/rulehost.lock` is read
    /// first and each spec is checked against it before its component is compiled, taken
    /// from the cache or instantiated ([`ruleset::load_locked`]). Keep the runtime as long
    /// as the rules: its ticker drives their deadlines.
    pub fn load_rules(&self, dir: &Path) -> anyhow::Result<Option<(Runtime, RuleSet)>> {
        let lock = match self.lock_policy() {
            LockPolicy::Ignore => None,
            LockPolicy::Enforce => match Lockfile::read(dir) {
                Ok(lock) => Some(lock),
                Err(e) => {
                    report_lock_refusal(dir, &[&e]);
                    return Ok(None);
                }
            },
        };
        let runtime = self.runtime()?;
        let search = Search {
            components: self.components.clone(),
            python: self.python.settings(),
        };
        let set = ruleset::load_with(&runtime, dir, &search, lock.as_ref())?;
        if !set.refused.is_empty() {
            let problems: Vec<&dyn std::error::Error> =
                set.refused.iter().map(|m| m as _).collect();
            report_lock_refusal(dir, &problems);
            return Ok(None);
        }
        Ok(Some((runtime, set)))
    }
}

/// A runtime with `limits` and `cache`. A cache that must not be used (a folder others
/// can write, a key others can read, ...) gets one warning on stderr, with a hint, and
/// every component is compiled instead.
pub fn runtime(limits: Limits, cache: CodeCache) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(limits)?.with_cache(cache);
    if let Some(problem) = runtime.cache_problem() {
        eprintln!("warning: {problem}; compiling instead");
        let mut source = std::error::Error::source(problem);
        while let Some(cause) = source {
            eprintln!("  Caused by: {cause}");
            source = cause.source();
        }
        eprintln!();
        eprintln!("hint: {}", problem.hint());
    }
    Ok(runtime)
}

/// Prints why `--locked` refused the rules of `dir`: each problem with its causes, then
/// a hint, on stderr.
fn report_lock_refusal(dir: &Path, problems: &[&dyn std::error::Error]) {
    for problem in problems {
        eprintln!("error: {problem}");
        let mut source = problem.source();
        while let Some(cause) = source {
            eprintln!("  Caused by: {cause}");
            source = cause.source();
        }
    }
    eprintln!();
    eprintln!(
        "hint: review the rules' components, then run `rulehost lock {}` to pin them",
        dir.display()
    );
}
