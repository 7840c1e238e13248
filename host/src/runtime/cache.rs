//! [`CodeCache`]: compiled components kept on disk between runs, owned by rulehost.
//!
//! An entry is a wasmtime serialized artifact, stored under a key that hashes together
//! the component's sha256, [`Engine::precompile_compatibility_hash`] (target, CPU
//! features, compiler flags, tunables, wasm features) and the wasmtime version, so a
//! changed component, engine config, CPU or wasmtime upgrade misses instead of loading
//! code compiled for something else. The cache is only an optimisation: an entry that is
//! missing, truncated, corrupt or refused by wasmtime is recompiled and replaced, never an
//! error, and a cache directory that cannot be written costs only compile time.
//!
//! Artifacts are never taken from rule authors: `Filename:` must name a `.wasm`
//! component, and only files this module wrote are deserialized.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The wasmtime version compiled in, part of every key (a unit test checks it against
/// Cargo.lock, so an upgrade that forgets to bump it fails `cargo test`).
const WASMTIME_VERSION: &str = "48.0.8";
/// Bumped when the entry layout changes.
const LAYOUT: &str = "rulehost-code-cache-v1";

/// Where compiled components are cached, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCache {
    /// Compile every component afresh (`--no-cache`, or no cache directory could be found).
    Disabled,
    /// Cache entries in this directory (created on first store).
    Dir(PathBuf),
}

/// What the cache did for one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache: compiled.
    Disabled,
    /// Loaded from the cache: nothing compiled.
    Hit,
    /// Not cached yet: compiled, and stored if the directory is writable.
    Miss,
    /// An entry existed but was unusable (truncated, corrupt, or refused by this engine):
    /// compiled and replaced.
    Replaced,
}

impl CodeCache {
    /// `$RULEHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/rulehost`, else `~/.cache/rulehost`;
    /// [`CodeCache::Disabled`] when none is set. Empty values count as unset, and
    /// `XDG_CACHE_HOME` must be absolute (XDG Base Directory spec).
    pub fn from_env() -> CodeCache {
        Self::from_vars(|name| std::env::var_os(name))
    }

    fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> CodeCache {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("RULEHOST_CACHE_DIR") {
            return CodeCache::Dir(PathBuf::from(dir));
        }
        if let Some(xdg) = var("XDG_CACHE_HOME").map(PathBuf::from)
            && xdg.is_absolute()
        {
            return CodeCache::Dir(xdg.join("rulehost"));
        }
        match var("HOME") {
            Some(home) => CodeCache::Dir(PathBuf::from(home).join(".cache").join("rulehost")),
            None => CodeCache::Disabled,
        }
    }

    /// The entry for a component (by its sha256, lowercase hex) compiled by `engine`.
    fn entry(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let CodeCache::Dir(dir) = self else {
            return None;
        };
        let mut key = DigestHasher(Sha256::new());
        LAYOUT.hash(&mut key);
        sha256.hash(&mut key);
        WASMTIME_VERSION.hash(&mut key);
        engine.precompile_compatibility_hash().hash(&mut key);
        Some(dir.join(format!("{}.cwasm", hex(&key.0.finalize()))))
    }

    /// Looks a component up: the compiled component on a hit, else what to report once it
    /// has been compiled.
    pub(super) fn get(&self, engine: &Engine, sha256: &str) -> Result<Component, CacheOutcome> {
        let Some(path) = self.entry(engine, sha256) else {
            return Err(CacheOutcome::Disabled);
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheOutcome::Miss);
            }
            Err(_) => return Err(CacheOutcome::Replaced),
        };
        deserialize(engine, &bytes).ok_or(CacheOutcome::Replaced)
    }

    /// Stores a compiled component; failures are ignored (see the module docs).
    pub(super) fn put(&self, engine: &Engine, sha256: &str, component: &Component) {
        let Some(path) = self.entry(engine, sha256) else {
            return;
        };
        let Ok(artifact) = component.serialize() else {
            return;
        };
        let _ = write_atomically(&path, &Sha256::digest(&artifact), &artifact);
    }
}

/// An entry is the artifact's sha256 followed by the artifact. The digest is checked
/// before wasmtime sees a byte: a torn or bit-flipped file must be recompiled, not mapped
/// as machine code (wasmtime checks its header, not the code).
fn deserialize(engine: &Engine, entry: &[u8]) -> Option<Component> {
    let (digest, artifact) = entry.split_at_checked(32)?;
    if Sha256::digest(artifact).as_slice() != digest {
        return None;
    }
    // `deserialize` from the bytes just checked rather than `deserialize_file`: a mapped
    // file could change between the check and its use.
    #[expect(
        unsafe_code,
        reason = "wasmtime runs deserialized artifacts as trusted machine code. This one \
                  was written by rulehost itself (`CodeCache::put`) into its own cache, \
                  under a key that hashes the component's sha256, the engine's \
                  compatibility hash and the wasmtime version, and its digest was just \
                  verified; artifacts from rule authors are never deserialized"
    )]
    // SAFETY: see the `expect` reason above.
    let component = unsafe { Component::deserialize(engine, artifact) };
    component.ok()
}

/// Writes `DIR/.NAME.PID.N.tmp`, then renames it over `path`: readers see the old entry,
/// the new one, or none, never half of one, even with several rulehosts at once.
fn write_atomically(path: &Path, digest: &[u8], artifact: &[u8]) -> std::io::Result<()> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create_new(&tmp).and_then(|mut f| {
        f.write_all(digest)?;
        f.write_all(artifact)?;
        f.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The cache holds code that will run: it is created readable by its owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `Hash` impls into sha256, whose output (unlike `DefaultHasher`'s) is the same in
/// every build.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Config;

    /// The smallest valid component: the preamble alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn compile(engine: &Engine) -> Component {
        Component::from_binary(engine, EMPTY_COMPONENT).unwrap()
    }

    #[test]
    fn wasmtime_version_matches_cargo_lock() {
        let lock = include_str!("../../../Cargo.lock");
        let pinned = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .unwrap();
        assert_eq!(pinned.trim_matches('"'), WASMTIME_VERSION);
    }

    #[test]
    fn stored_entries_hit_and_corrupt_ones_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::Dir(dir.path().join("nested/cache"));
        let engine = Engine::default();
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Miss));
        cache.put(&engine, SHA, &compile(&engine));
        assert!(cache.get(&engine, SHA).is_ok());
        // Nothing but the entry is left behind: the temp file was renamed.
        let files: Vec<_> = std::fs::read_dir(dir.path().join("nested/cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with(".cwasm") && !files[0].starts_with('.'));

        let entry = cache.entry(&engine, SHA).unwrap();
        let mut bytes = std::fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&entry, &bytes).unwrap();
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Replaced));
        std::fs::write(&entry, &bytes[..10]).unwrap();
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Replaced));
        cache.put(&engine, SHA, &compile(&engine));
        assert!(cache.get(&engine, SHA).is_ok());
    }

    #[test]
    fn another_engine_config_or_component_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::Dir(dir.path().to_owned());
        let engine = Engine::default();
        cache.put(&engine, SHA, &compile(&engine));
        let mut config = Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(cache.entry(&engine, SHA), cache.entry(&other, SHA));
        assert_eq!(cache.get(&other, SHA).err(), Some(CacheOutcome::Miss));
        let other_sha = SHA.replace('0', "1");
        assert_eq!(
            cache.get(&engine, &other_sha).err(),
            Some(CacheOutcome::Miss)
        );
        // Even an artifact of another engine under this engine's key is not loaded:
        // wasmtime refuses it and it is replaced.
        std::fs::copy(
            cache.entry(&engine, SHA).unwrap(),
            cache.entry(&other, SHA).unwrap(),
        )
        .unwrap();
        assert_eq!(cache.get(&other, SHA).err(), Some(CacheOutcome::Replaced));
    }

    #[test]
    fn disabled_cache_never_touches_disk() {
        let engine = Engine::default();
        assert_eq!(
            CodeCache::Disabled.get(&engine, SHA).err(),
            Some(CacheOutcome::Disabled)
        );
    }

    #[test]
    fn location_follows_rulehost_then_xdg_then_home() {
        let from = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            CodeCache::from_vars(move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
            })
        };
        let dir = |p: &str| CodeCache::Dir(PathBuf::from(p));
        let all = [
            ("RULEHOST_CACHE_DIR", "/r"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(from(&all), dir("/r"));
        assert_eq!(from(&all[1..]), dir("/x/rulehost"));
        assert_eq!(from(&all[2..]), dir("/h/.cache/rulehost"));
        assert_eq!(
            from(&[
                ("RULEHOST_CACHE_DIR", ""),
                ("XDG_CACHE_HOME", "rel"),
                ("HOME", "/h")
            ]),
            dir("/h/.cache/rulehost")
        );
        assert_eq!(from(&[]), CodeCache::Disabled);
    }
}
