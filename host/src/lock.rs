//! [`Lockfile`]: `rulehost.lock`, the sha256 of every rule's component, pinned by
//! `rulehost lock DIR` and enforced by `--locked`.
//!
//! The file is JSON (sorted by RuleID, one field per line) rather than TOML: serde_json is
//! already a dependency and reports line and column on a bad edit, and the pretty-printed
//! form diffs one line per changed hash in review.
//!
//! `--locked` checks each spec before its component is compiled, deserialized or
//! instantiated ([`crate::ruleset::load_locked`]): its RuleID must be pinned with its
//! `Filename:` ([`Lockfile::pinned_sha256`]), and the runtime hashes the bytes it read and
//! refuses them unless they are the pinned ones
//! ([`Pin::Sha256`](crate::runtime::Pin::Sha256)), before the cache or the compiler sees
//! them. The hash is of exactly the bytes compiled, so a file swapped between the check
//! and the load cannot slip through.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ruleset::LoadedRule;
use crate::spec::Spec;

/// The lock file's name, inside the rule directory.
pub const LOCK_FILE: &str = "rulehost.lock";
/// The format version written and accepted.
const FORMAT: u32 = 1;

/// The contents of `rulehost.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    /// Format version, 1.
    pub version: u32,
    /// One entry per spec, sorted by RuleID.
    pub rules: Vec<LockedRule>,
}

/// One spec's pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRule {
    /// The spec's `RuleID`.
    pub rule_id: String,
    /// The spec's `Filename:`, as written (not the resolved path, which differs between
    /// machines).
    pub filename: String,
    /// sha256 of the component, lowercase hex.
    pub sha256: String,
}

/// The lock file is missing or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// `--locked` without a lock file.
    #[error("`--locked` needs `{}`, which does not exist", path.display())]
    NoLockFile {
        /// The expected lock file.
        path: PathBuf,
    },
    /// The lock file could not be read.
    #[error("failed to read `{}`", path.display())]
    Read {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The lock file is not valid.
    #[error("invalid lock file `{}`", path.display())]
    Invalid {
        /// The lock file.
        path: PathBuf,
        /// The parse error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A lock file of a format this rulehost does not know.
    #[error("lock file `{}` has format version {version}; this rulehost writes version {FORMAT}", path.display())]
    Format {
        /// The lock file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
}

/// How a rule differs from its pin.
#[derive(Debug, thiserror::Error)]
pub enum LockMismatch {
    /// A rule that the lock file does not pin.
    #[error(
        "rule `{rule_id}` is not in `{}`: its component `{}` has sha256 {actual}, the lock has none",
        lock.display(),
        component.display()
    )]
    Unlocked {
        /// The lock file.
        lock: PathBuf,
        /// The rule.
        rule_id: String,
        /// The component file loaded.
        component: PathBuf,
        /// Its sha256.
        actual: String,
    },
    /// A component whose bytes differ from the pin.
    #[error(
        "rule `{rule_id}`: component `{}` has sha256 {actual}, but `{}` pins {locked}",
        component.display(),
        lock.display()
    )]
    Mismatch {
        /// The lock file.
        lock: PathBuf,
        /// The rule.
        rule_id: String,
        /// The component file loaded.
        component: PathBuf,
        /// The pinned sha256.
        locked: String,
        /// The sha256 of the component loaded.
        actual: String,
    },
    /// A spec that now names another component file than the one pinned.
    #[error(
        "rule `{rule_id}`: spec names component `{filename}` (sha256 {actual}), but `{}` pins `{locked_filename}` (sha256 {locked})",
        lock.display()
    )]
    Renamed {
        /// The lock file.
        lock: PathBuf,
        /// The rule.
        rule_id: String,
        /// `Filename:` now.
        filename: String,
        /// `Filename:` when locked.
        locked_filename: String,
        /// The pinned sha256.
        locked: String,
        /// The sha256 of the component loaded.
        actual: String,
    },
}

impl LockMismatch {
    /// The rule that differs.
    pub fn rule_id(&self) -> &str {
        match self {
            LockMismatch::Unlocked { rule_id, .. }
            | LockMismatch::Mismatch { rule_id, .. }
            | LockMismatch::Renamed { rule_id, .. } => rule_id,
        }
    }
}

impl Lockfile {
    /// Pins the components of `rules`, sorted by RuleID.
    pub fn pin(rules: &[LoadedRule]) -> Lockfile {
        let mut pinned: Vec<LockedRule> = rules
            .iter()
            .map(|r| LockedRule {
                rule_id: r.spec.rule_id.clone(),
                filename: r.spec.filename.clone(),
                sha256: r.component.sha256().to_owned(),
            })
            .collect();
        pinned.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        Lockfile {
            version: FORMAT,
            rules: pinned,
        }
    }

    /// The lock file of a rule directory.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LOCK_FILE)
    }

    /// Reads `DIR/rulehost.lock`.
    pub fn read(dir: &Path) -> Result<Lockfile, LockError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LockError::NoLockFile { path });
            }
            Err(source) => return Err(LockError::Read { path, source }),
        };
        let lock: Lockfile = serde_json::from_str(&text).map_err(|source| LockError::Invalid {
            path: path.clone(),
            source,
        })?;
        if lock.version != FORMAT {
            return Err(LockError::Format {
                path,
                version: lock.version,
            });
        }
        Ok(lock)
    }

    /// Writes `DIR/rulehost.lock` atomically (temp file, then rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = Self::path(dir);
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        let tmp = dir.join(format!(".{LOCK_FILE}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
        Ok(path)
    }

    /// The sha256 pinned for `spec`, whose `Filename:` resolved to the file `component`:
    /// an error when the lock does not pin the spec's RuleID, or pins another
    /// `Filename:`. `actual` gives the component's sha256, to name it in the error. `dir`
    /// names the lock file in the errors.
    #[expect(
        clippy::result_large_err,
        reason = "called once per spec at load; the error is what the caller keeps"
    )]
    pub fn pinned_sha256(
        &self,
        dir: &Path,
        spec: &Spec,
        component: &Path,
        actual: impl FnOnce() -> String,
    ) -> Result<&str, LockMismatch> {
        let Some(pin) = self.rules.iter().find(|p| p.rule_id == spec.rule_id) else {
            return Err(LockMismatch::Unlocked {
                lock: Self::path(dir),
                rule_id: spec.rule_id.clone(),
                component: component.to_owned(),
                actual: actual(),
            });
        };
        if pin.filename != spec.filename {
            return Err(LockMismatch::Renamed {
                lock: Self::path(dir),
                rule_id: spec.rule_id.clone(),
                filename: spec.filename.clone(),
                locked_filename: pin.filename.clone(),
                locked: pin.sha256.clone(),
                actual: actual(),
            });
        }
        Ok(&pin.sha256)
    }

    /// The error for rule `rule_id`, whose `component` has sha256 `actual` where the lock
    /// in `dir` pins `locked`.
    pub fn mismatch(
        dir: &Path,
        rule_id: &str,
        component: &Path,
        locked: &str,
        actual: &str,
    ) -> LockMismatch {
        LockMismatch::Mismatch {
            lock: Self::path(dir),
            rule_id: rule_id.to_owned(),
            component: component.to_owned(),
            locked: locked.to_owned(),
            actual: actual.to_owned(),
        }
    }

    /// Every way rules already loaded differ from the pins; empty when all match. `dir`
    /// names the lock file in the errors. Pins of rules that no longer exist are not
    /// errors: they run nothing. (`--locked` checks before loading instead:
    /// [`crate::ruleset::load_locked`].)
    pub fn verify(&self, dir: &Path, rules: &[LoadedRule]) -> Vec<LockMismatch> {
        rules
            .iter()
            .filter_map(|rule| {
                let (component, actual) = (rule.component.path(), rule.component.sha256());
                match self.pinned_sha256(dir, &rule.spec, component, || actual.to_owned()) {
                    Err(mismatch) => Some(mismatch),
                    Ok(locked) if locked != actual => Some(Self::mismatch(
                        dir,
                        &rule.spec.rule_id,
                        component,
                        locked,
                        actual,
                    )),
                    Ok(_) => None,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_lock_reads_back_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Lockfile {
            version: FORMAT,
            rules: vec![LockedRule {
                rule_id: "A".into(),
                filename: "a.wasm".into(),
                sha256: "00".into(),
            }],
        };
        let path = lock.write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(LOCK_FILE));
        assert_eq!(Lockfile::read(dir.path()).unwrap(), lock);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n      \"rule_id\": \"A\",\n"), "{text}");

        std::fs::write(&path, text.replace("\"version\": 1", "\"version\": 2")).unwrap();
        assert!(matches!(
            Lockfile::read(dir.path()),
            Err(LockError::Format { version: 2, .. })
        ));
        std::fs::write(&path, "{\"version\": 1, \"rules\": [}").unwrap();
        let err = Lockfile::read(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Invalid { .. }), "{err}");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            Lockfile::read(dir.path()),
            Err(LockError::NoLockFile { .. })
        ));
    }
}
