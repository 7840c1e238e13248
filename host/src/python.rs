//! Panther's Python rules, unchanged (issue 14): where the Python runtime and the helper
//! modules are found, and what `rulehost.lock` pins for a Python rule.
//!
//! A spec whose `Filename:` is a `.py` file resolves like a `.wasm` one (the spec's
//! folder, then `--components`, never outside them). Its source runs in one shared
//! runtime component, `python.wasm` (componentize-py, built by `make python-runtime` from
//! `python/`), compiled once through the same cache and checks as any component; each rule
//! is that component with the rule's source ([`crate::runtime::RuleSource`]), `load`ed
//! into every instance before any other call.
//!
//! Helpers are found as `pat` finds them: the `global_helpers/` folder of the analysis
//! root, the first folder up from the rules folder that has one, or `--helpers DIR`. Every
//! `.py` file there is a module the rules may import, read once at load.
//!
//! A Python rule's pin ([`digest`]) covers the runtime's sha256, the rule's module and
//! every helper module it could import, so `--locked` refuses a changed rule, helper or
//! runtime alike, before anything is compiled.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::runtime::Modules;

/// The runtime's file name.
pub const RUNTIME_FILE: &str = "python.wasm";
/// The helpers' folder at an analysis root, as in panther-analysis.
pub const HELPERS_FOLDER: &str = "global_helpers";

/// Where the Python runtime and the helpers come from, once the flags are read.
#[derive(Debug, Clone, Default)]
pub struct PythonSettings {
    /// `--python-runtime`: the runtime component; else [`default_runtime`].
    pub runtime: Option<PathBuf>,
    /// `--helpers`: the helpers' folder; else [`find_helpers`] from the rules folder.
    pub helpers: Option<PathBuf>,
}

/// Python rules could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// No runtime component where it was looked for.
    #[error(
        "the Python runtime `{RUNTIME_FILE}` was not found; looked for {}",
        looked.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    RuntimeNotFound {
        /// Every path tried.
        looked: Vec<PathBuf>,
    },
    /// A source file could not be read.
    #[error("failed to read Python module `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl PythonError {
    /// How to fix it, when known.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            PythonError::RuntimeNotFound { .. } => Some(
                "build it with `make python-runtime`, then pass `--python-runtime FILE` or set \
                 `RULEHOST_PYTHON_RUNTIME`",
            ),
            PythonError::Read { .. } => None,
        }
    }
}

impl PythonSettings {
    /// The runtime component: `--python-runtime`, else the first of [`default_runtime`]
    /// that exists.
    pub fn runtime(&self) -> Result<PathBuf, PythonError> {
        if let Some(path) = &self.runtime {
            return Ok(path.clone());
        }
        let looked = default_runtime();
        looked
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or(PythonError::RuntimeNotFound { looked })
    }

    /// The helpers' folder for the rules in `rules`: `--helpers`, else [`find_helpers`].
    pub fn helpers(&self, rules: &Path) -> Option<PathBuf> {
        self.helpers.clone().or_else(|| find_helpers(rules))
    }
}

/// Where the runtime is looked for without `--python-runtime`: `runtimes/python.wasm`
/// beside the `rulehost` binary (an install), then `build/runtimes/python.wasm` in the
/// checkout it was built in (`target/release/rulehost`, two folders down).
pub fn default_runtime() -> Vec<PathBuf> {
    let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    else {
        return Vec::new();
    };
    let mut looked = vec![exe_dir.join("runtimes").join(RUNTIME_FILE)];
    if let Some(checkout) = exe_dir.parent().and_then(Path::parent) {
        looked.push(checkout.join("build").join("runtimes").join(RUNTIME_FILE));
    }
    looked
}

/// The `global_helpers/` folder of the analysis root `rules` lies in: `rules` itself or
/// the nearest folder above it that has one.
pub fn find_helpers(rules: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(rules).ok()?;
    start
        .ancestors()
        .map(|dir| dir.join(HELPERS_FOLDER))
        .find(|helpers| helpers.is_dir())
}

/// Every `.py` file directly in `dir`, as a module named by its stem.
pub fn read_helpers(dir: &Path) -> Result<Modules, PythonError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| PythonError::Read { path, source }
    };
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let path = entry.map_err(read_error(dir))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".py"))
        else {
            continue;
        };
        if !path.is_file() {
            continue;
        }
        let source = std::fs::read_to_string(&path).map_err(read_error(&path))?;
        modules.push((name.to_owned(), source));
    }
    Ok(Modules::new(modules))
}

/// Reads a rule's module source.
pub fn read_source(path: &Path) -> Result<String, PythonError> {
    std::fs::read_to_string(path).map_err(|source| PythonError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The module name of a rule's file: its stem, as Panther names it.
pub fn module_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What `rulehost.lock` pins for a Python rule, lowercase hex: sha256 over the runtime's
/// sha256, the rule's module (name and source) and every helper module (name and source,
/// sorted by name), each length-prefixed so that no two inputs give the same bytes.
pub fn digest(runtime_sha256: &str, name: &str, source: &str, modules: &Modules) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(b"rulehost python rule 1");
    field(runtime_sha256.as_bytes());
    field(name.as_bytes());
    field(source.as_bytes());
    for (module, text) in modules.iter() {
        field(module.as_bytes());
        field(text.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_runtime_rule_and_every_helper() {
        let helpers = Modules::new([("h".to_owned(), "X = 1".to_owned())]);
        let base = digest("aa", "r", "def rule(e): return True", &helpers);
        assert_eq!(base.len(), 64);
        assert_ne!(
            base,
            digest("ab", "r", "def rule(e): return True", &helpers)
        );
        assert_ne!(
            base,
            digest("aa", "r", "def rule(e): return False", &helpers)
        );
        let changed = Modules::new([("h".to_owned(), "X = 2".to_owned())]);
        assert_ne!(
            base,
            digest("aa", "r", "def rule(e): return True", &changed)
        );
        // Lengths are part of it: moving bytes between fields changes the digest.
        assert_ne!(
            digest("aa", "rd", "ef", &helpers),
            digest("aa", "r", "def", &helpers)
        );
    }

    #[test]
    fn helpers_are_found_up_from_the_rules_folder() {
        let root = tempfile::tempdir().unwrap();
        let rules = root.path().join("rules").join("pack");
        std::fs::create_dir_all(&rules).unwrap();
        assert_eq!(find_helpers(&rules), None);
        let helpers = root.path().join(HELPERS_FOLDER);
        std::fs::create_dir(&helpers).unwrap();
        std::fs::write(helpers.join("h.py"), "X = 1\n").unwrap();
        std::fs::write(helpers.join("h.yml"), "AnalysisType: global\n").unwrap();
        let found = find_helpers(&rules).unwrap();
        assert_eq!(found, std::fs::canonicalize(&helpers).unwrap());
        let modules = read_helpers(&found).unwrap();
        assert_eq!(modules.iter().collect::<Vec<_>>(), [("h", "X = 1\n")]);
    }
}
