//! `rulehost lock`: pin the sha256 of every rule's component in `DIR/rulehost.lock`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use crate::cli::ExitStatus;
use crate::lock::Lockfile;
use crate::ruleset;
use crate::runtime::{CodeCache, Limits};

/// Pin the sha256 of every rule's component in `DIR/rulehost.lock`, for `eval --locked`
/// and `test --locked`. A Python rule's pin covers the Python runtime's sha256, the
/// rule's module and every helper module it could import.
///
/// Every spec must load first, its component passing the import audit: a lock pins what
/// you reviewed and can run. Exit status: 0 when the lock was written; 2 when a spec or
/// component could not be loaded (nothing is written).
#[derive(Debug, Parser)]
pub struct Lock {
    /// Folder of rule specs (searched recursively); the lock file is written here.
    #[arg(value_name = "DIR", default_value = ".")]
    path: PathBuf,
    /// Folders searched for a spec's `Filename:` component after the spec's own folder.
    #[arg(
        long = "components",
        value_name = "DIR",
        env = "RULEHOST_COMPONENTS",
        value_delimiter = ':'
    )]
    components: Vec<PathBuf>,
    /// Compile every component afresh instead of using the compiled-code cache.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    python: super::PythonArgs,
}

impl Lock {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let cache = if self.no_cache {
            CodeCache::Disabled
        } else {
            CodeCache::from_env()
        };
        let runtime = super::runtime(Limits::default(), cache)?;
        let search = ruleset::Search {
            components: self.components.clone(),
            python: self.python.settings(),
        };
        let set = ruleset::load_with(&runtime, &self.path, &search, None)?;
        if !set.invalid.is_empty() {
            for (_, err) in &set.invalid {
                eprintln!("error: {err:#}");
            }
            eprintln!(
                "error: {} rule spec(s) in `{}` failed to load; `{}` not written",
                set.invalid.len(),
                self.path.display(),
                Lockfile::path(&self.path).display()
            );
            return Ok(ExitStatus::Error);
        }
        if set.rules.is_empty() {
            anyhow::bail!("no rule specs in `{}`", self.path.display());
        }
        let lock = Lockfile::pin(&set.rules);
        let written = lock.write(&self.path).with_context(|| {
            format!("failed to write `{}`", Lockfile::path(&self.path).display())
        })?;
        eprintln!(
            "wrote `{}`: {} rule(s) pinned",
            written.display(),
            lock.rules.len()
        );
        Ok(ExitStatus::Success)
    }
}
