//! [`CodeCache`]: compiled components kept on disk between runs, owned by rulehost.
//!
//! An entry is a wasmtime serialized artifact, stored under a name that hashes together
//! the component's sha256, [`Engine::precompile_compatibility_hash`] (target, CPU
//! features, compiler flags, tunables, wasm features) and the wasmtime version, so a
//! changed component, engine config, CPU or wasmtime upgrade misses instead of loading
//! code compiled for something else.
//!
//! wasmtime runs an artifact as trusted machine code, so rulehost deserializes only what
//! it wrote itself for that exact component (issue 11: a rewritten or swapped entry with a
//! recomputed sha256 ran under `--locked`). Each entry carries an HMAC-SHA256 over the
//! layout version, the component's sha256, the wasmtime version, the compatibility hash
//! and the artifact, under a per-user secret key kept outside the cache folder
//! ([`CodeCache::from_env`]); it is checked, in constant time, before wasmtime sees a
//! byte. Whoever can write the folder but not read the key can delete entries, but not
//! forge, swap or copy one in from another cache.
//!
//! A folder that other users can write or that another user owns, and a key that is not
//! this user's private regular file, are not used at all ([`CacheProblem`]: the caller
//! warns once, and every component is compiled). Otherwise the cache is only an
//! optimisation: an entry that is missing, truncated, corrupt, forged or refused by
//! wasmtime is recompiled and replaced, never an error, and a cache directory that cannot
//! be created or written costs only compile time.
//!
//! Artifacts are never taken from rule authors: `Filename:` must name a `.wasm`
//! component, and only files this module wrote are deserialized.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::digest::{FixedOutput, Update};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The wasmtime version compiled in, part of every key (a unit test checks it against
/// Cargo.lock, so an upgrade that forgets to bump it fails `cargo test`).
const WASMTIME_VERSION: &str = "48.0.8";
/// Bumped when the entry layout changes. v2: the artifact's sha256 became an HMAC.
const LAYOUT: &str = "rulehost-code-cache-v2";
/// Bytes of the secret key, and of the MAC in front of each entry.
const KEY_LEN: usize = 32;

/// Where compiled components are cached, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCache {
    /// Compile every component afresh (`--no-cache`, or no cache directory or key file
    /// could be found).
    Disabled,
    /// Cache entries in `dir` (created, readable by its owner only, when the cache is
    /// opened), authenticated with the secret key in the file `key` (created, likewise,
    /// on first use).
    Dir {
        /// The folder of entries.
        dir: PathBuf,
        /// The key file: outside `dir`, so that it is not handed out with the entries.
        key: PathBuf,
    },
}

/// What the cache did for one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache: compiled.
    Disabled,
    /// A cache was given but must not be used (its folder or key is not private; see
    /// [`Runtime::cache_problem`](super::Runtime::cache_problem)): compiled, nothing read
    /// or written.
    Unusable,
    /// Loaded from the cache: nothing compiled.
    Hit,
    /// Not cached yet: compiled, and stored if the directory is writable.
    Miss,
    /// An entry existed but was unusable (truncated, corrupt, not authenticated by this
    /// user's key for this component, or refused by this engine): compiled and replaced.
    Replaced,
}

/// Why a compiled-code cache is not used. Its caller warns once and compiles every
/// component instead; [`CacheProblem::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CacheProblem {
    /// Other users may write the folder: they could plant or replace entries, or files
    /// that are no entries at all.
    #[error("compiled-code cache `{}` is writable by other users (mode {mode:04o})", dir.display())]
    SharedDir {
        /// The cache folder.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another user owns the folder.
    #[error(
        "compiled-code cache `{}` is owned by uid {owner}, not by this user (uid {user})",
        dir.display()
    )]
    ForeignDir {
        /// The cache folder.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        user: u32,
    },
    /// The key is a folder, a device, a FIFO...
    #[error("cache key `{}` is not a regular file", path.display())]
    KeyNotFile {
        /// The key file.
        path: PathBuf,
    },
    /// Other users may read or write the key: it may be known to them.
    #[error("cache key `{}` is readable or writable by other users (mode {mode:04o})", path.display())]
    SharedKey {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another user owns the key.
    #[error(
        "cache key `{}` is owned by uid {owner}, not by this user (uid {user})",
        path.display()
    )]
    ForeignKey {
        /// The key file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        user: u32,
    },
    /// Not a key rulehost wrote.
    #[error("cache key `{}` is {len} bytes long, not {KEY_LEN}", path.display())]
    KeyLength {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The key file exists but cannot be read.
    #[error("failed to read cache key `{}`", path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// There is no key file, and none could be made.
    #[error("failed to create cache key `{}`", path.display())]
    CreateKey {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl CacheProblem {
    /// What the user can do about it, for a `hint:` line.
    pub fn hint(&self) -> String {
        match self {
            CacheProblem::SharedDir { dir, .. } => format!(
                "run `chmod go-w {}`, or set `RULEHOST_CACHE_DIR` to a folder only you can \
                 write; `--no-cache` silences this",
                dir.display()
            ),
            CacheProblem::ForeignDir { .. } => "set `RULEHOST_CACHE_DIR` to a folder of your \
                                                own; `--no-cache` silences this"
                .to_owned(),
            CacheProblem::KeyNotFile { path }
            | CacheProblem::SharedKey { path, .. }
            | CacheProblem::ForeignKey { path, .. }
            | CacheProblem::KeyLength { path, .. } => format!(
                "delete `{}`: rulehost then makes a new key, and compiles each cached \
                 component once more",
                path.display()
            ),
            CacheProblem::ReadKey { .. } | CacheProblem::CreateKey { .. } => {
                "set `RULEHOST_CACHE_KEY` to a file of your own (outside the cache folder); \
                 `--no-cache` silences this"
                    .to_owned()
            }
        }
    }
}

impl CodeCache {
    /// Entries in `$RULEHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/rulehost`, else
    /// `~/.cache/rulehost`; their key in `$RULEHOST_CACHE_KEY`, else
    /// `$XDG_CONFIG_HOME/rulehost/cache.key`, else `~/.config/rulehost/cache.key`.
    /// [`CodeCache::Disabled`] when either cannot be placed. Empty values count as unset,
    /// and the `XDG_*` variables must be absolute (XDG Base Directory spec).
    pub fn from_env() -> CodeCache {
        Self::from_vars(|name| std::env::var_os(name))
    }

    fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> CodeCache {
        let var = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = |xdg: &str, dot: &str, rest: &str| match var(xdg).filter(|x| x.is_absolute()) {
            Some(base) => Some(base.join(rest)),
            None => var("HOME").map(|home| home.join(dot).join(rest)),
        };
        let dir =
            var("RULEHOST_CACHE_DIR").or_else(|| home("XDG_CACHE_HOME", ".cache", "rulehost"));
        let key = var("RULEHOST_CACHE_KEY")
            .or_else(|| home("XDG_CONFIG_HOME", ".config", "rulehost/cache.key"));
        match (dir, key) {
            (Some(dir), Some(key)) => CodeCache::Dir { dir, key },
            _ => CodeCache::Disabled,
        }
    }

    /// Checks the folder (creating it) and reads the key (creating it on first use).
    pub(super) fn open(&self) -> OpenCache {
        let CodeCache::Dir { dir, key } = self else {
            return OpenCache::Disabled;
        };
        // Made before the check, so the folder checked is one that exists; an error shows
        // in the metadata.
        let _ = create_private_dir(dir);
        let Ok(meta) = std::fs::metadata(dir) else {
            // No folder, and none can be made: nothing to read, nowhere to write.
            return OpenCache::Disabled;
        };
        if let Err(problem) = check_private_dir(dir, &meta) {
            return OpenCache::Unusable(problem);
        }
        match load_key(key) {
            Ok(key) => OpenCache::Ready {
                dir: dir.clone(),
                key,
            },
            Err(problem) => OpenCache::Unusable(problem),
        }
    }
}

/// The secret key cache entries are authenticated with.
pub(super) struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A [`CodeCache`] once opened: its folder checked, its key read.
#[derive(Debug)]
pub(super) enum OpenCache {
    /// No cache.
    Disabled,
    /// A cache that must not be used.
    Unusable(CacheProblem),
    /// Entries in `dir`, authenticated with `key`.
    Ready {
        /// The folder of entries.
        dir: PathBuf,
        /// The key.
        key: Key,
    },
}

impl OpenCache {
    /// Why the cache given is not used, if that is the case.
    pub(super) fn problem(&self) -> Option<&CacheProblem> {
        match self {
            OpenCache::Unusable(problem) => Some(problem),
            OpenCache::Disabled | OpenCache::Ready { .. } => None,
        }
    }

    /// The folder and key, or what to report for every component.
    fn ready(&self) -> Result<(&Path, &Key), CacheOutcome> {
        match self {
            OpenCache::Disabled => Err(CacheOutcome::Disabled),
            OpenCache::Unusable(_) => Err(CacheOutcome::Unusable),
            OpenCache::Ready { dir, key } => Ok((dir, key)),
        }
    }

    /// Looks a component (by its sha256, lowercase hex) up: the compiled component on a
    /// hit, else what to report once it has been compiled.
    pub(super) fn get(&self, engine: &Engine, sha256: &str) -> Result<Component, CacheOutcome> {
        let (dir, key) = self.ready()?;
        let path = entry(dir, engine, sha256);
        // Regular files only, not followed: a FIFO planted while the folder was shared
        // would block the read, a link to a device never end it.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheOutcome::Miss);
            }
            Ok(_) | Err(_) => return Err(CacheOutcome::Replaced),
        }
        let Ok(bytes) = std::fs::read(&path) else {
            return Err(CacheOutcome::Replaced);
        };
        deserialize(engine, key, sha256, &bytes).ok_or(CacheOutcome::Replaced)
    }

    /// Stores a compiled component; failures are ignored (see the module docs).
    pub(super) fn put(&self, engine: &Engine, sha256: &str, component: &Component) {
        let Ok((dir, key)) = self.ready() else {
            return;
        };
        let Ok(artifact) = component.serialize() else {
            return;
        };
        let tag = mac(key, engine, sha256, &artifact).finalize().into_bytes();
        let _ = write_atomically(&entry(dir, engine, sha256), &tag, &artifact);
    }
}

/// The entry for a component (by its sha256, lowercase hex) compiled by `engine`. The
/// name need not be secret: the MAC inside binds the entry to its component.
fn entry(dir: &Path, engine: &Engine, sha256: &str) -> PathBuf {
    let mut name = Feed(Sha256::new());
    LAYOUT.hash(&mut name);
    sha256.hash(&mut name);
    WASMTIME_VERSION.hash(&mut name);
    engine.precompile_compatibility_hash().hash(&mut name);
    dir.join(format!("{}.cwasm", hex(&name.0.finalize())))
}

/// The MAC of an entry: everything its name hashes, and the artifact, under `key`. An
/// entry authenticated for another component, engine, wasmtime or user does not verify.
fn mac(key: &Key, engine: &Engine, sha256: &str, artifact: &[u8]) -> Hmac<Sha256> {
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0);
    let mut fed = Feed(mac.expect("HMAC takes keys of any length"));
    LAYOUT.hash(&mut fed);
    sha256.hash(&mut fed);
    WASMTIME_VERSION.hash(&mut fed);
    engine.precompile_compatibility_hash().hash(&mut fed);
    // Length first, then the bytes: no field can run into the next.
    artifact.hash(&mut fed);
    fed.0
}

/// An entry is its MAC followed by the artifact. The MAC is checked, in constant time,
/// on the bytes in memory before wasmtime sees one: a torn, bit-flipped, forged, swapped
/// or copied-in file must be recompiled, not mapped as machine code (wasmtime checks its
/// header, not the code).
fn deserialize(engine: &Engine, key: &Key, sha256: &str, entry: &[u8]) -> Option<Component> {
    let (tag, artifact) = entry.split_at_checked(KEY_LEN)?;
    mac(key, engine, sha256, artifact).verify_slice(tag).ok()?;
    // `deserialize` from the bytes just checked rather than `deserialize_file`: a mapped
    // file could change between the check and its use.
    #[expect(
        unsafe_code,
        reason = "wasmtime runs deserialized artifacts as trusted machine code. This one \
                  was written by rulehost itself (`OpenCache::put`) for this component, \
                  engine and wasmtime: its MAC under this user's secret key, which covers \
                  the component's sha256, the engine's compatibility hash and the wasmtime \
                  version, was just verified on these very bytes; artifacts from rule \
                  authors are never deserialized"
    )]
    // SAFETY: see the `expect` reason above.
    let component = unsafe { Component::deserialize(engine, artifact) };
    component.ok()
}

/// The key in `path`, made on first use.
fn load_key(path: &Path) -> Result<Key, CacheProblem> {
    match read_key(path)? {
        Some(key) => Ok(key),
        None => create_key(path),
    }
}

/// The key in `path`; `None` when there is no such file.
fn read_key(path: &Path) -> Result<Option<Key>, CacheProblem> {
    let read_error = |source| CacheProblem::ReadKey {
        path: path.to_owned(),
        source,
    };
    // Before opening: opening a FIFO would block.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
        Ok(meta) if !meta.is_file() => {
            return Err(CacheProblem::KeyNotFile {
                path: path.to_owned(),
            });
        }
        Ok(_) => {}
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    // The metadata of the file read, not of the name, which could change in between.
    let meta = file.metadata().map_err(read_error)?;
    check_private_key(path, &meta)?;
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    file.take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    match <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
        Ok(key) => Ok(Some(Key(key))),
        Err(_) => Err(CacheProblem::KeyLength {
            path: path.to_owned(),
            len: meta.len(),
        }),
    }
}

/// Makes a key of random bytes from the OS in `path`, readable by its owner only (its
/// folder too, when made here). It is written under a temporary name, then linked to
/// `path` only if there is still no key there: a concurrent rulehost's key is never
/// replaced, nor read half-written.
fn create_key(path: &Path) -> Result<Key, CacheProblem> {
    let create_error = |source| CacheProblem::CreateKey {
        path: path.to_owned(),
        source,
    };
    let mut key = [0; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| create_error(std::io::Error::other(e)))?;
    create_private_dir(parent(path)).map_err(create_error)?;
    let tmp = temp_beside(path);
    let linked = create_private_file(&tmp)
        .and_then(|mut f| {
            f.write_all(&key)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Key(key)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(path)?.ok_or_else(|| create_error(e))
        }
        Err(e) => Err(create_error(e)),
    }
}

/// The effective uid: the owner of the files this process creates.
#[cfg(unix)]
fn user() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A folder only its owner, this user, can write.
#[cfg(unix)]
fn check_private_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), CacheProblem> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != user() {
        return Err(CacheProblem::ForeignDir {
            dir: dir.to_owned(),
            owner: meta.uid(),
            user: user(),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CacheProblem::SharedDir {
            dir: dir.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// A key only its owner, this user, can read or write.
#[cfg(unix)]
fn check_private_key(path: &Path, meta: &std::fs::Metadata) -> Result<(), CacheProblem> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != user() {
        return Err(CacheProblem::ForeignKey {
            path: path.to_owned(),
            owner: meta.uid(),
            user: user(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(CacheProblem::SharedKey {
            path: path.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Elsewhere there are no owners and modes to check: the files' ACLs are the user's own.
#[cfg(not(unix))]
fn check_private_dir(_: &Path, _: &std::fs::Metadata) -> Result<(), CacheProblem> {
    Ok(())
}

#[cfg(not(unix))]
fn check_private_key(_: &Path, _: &std::fs::Metadata) -> Result<(), CacheProblem> {
    Ok(())
}

/// The folder a file is in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `DIR/.NAME.PID.N.tmp` for `DIR/NAME`: unique among rulehosts and their threads.
fn temp_beside(path: &Path) -> PathBuf {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    parent(path).join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes a temporary file beside `path`, then renames it over `path`: readers see the
/// old entry, the new one, or none, never half of one, even with several rulehosts at
/// once.
fn write_atomically(path: &Path, tag: &[u8], artifact: &[u8]) -> std::io::Result<()> {
    create_private_dir(parent(path))?;
    let tmp = temp_beside(path);
    let written = create_private_file(&tmp).and_then(|mut f| {
        f.write_all(tag)?;
        f.write_all(artifact)?;
        f.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The cache holds code that will run, and its key must stay secret: folders are created
/// readable by their owner only (existing ones are left as they are).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A new file, readable by its owner only; an error if `path` exists.
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `Hash` impls into a hash function or MAC, whose output (unlike
/// `DefaultHasher`'s) is the same in every build.
struct Feed<D>(D);

impl<D: Update + FixedOutput + Clone> Hasher for Feed<D> {
    fn write(&mut self, bytes: &[u8]) {
        Update::update(&mut self.0, bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize_fixed();
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

    /// A cache in `root/cache` with its key in `root/cache.key`.
    fn cache_in(root: &Path) -> CodeCache {
        CodeCache::Dir {
            dir: root.join("cache"),
            key: root.join("cache.key"),
        }
    }

    fn entry_of(cache: &OpenCache, engine: &Engine, sha256: &str) -> PathBuf {
        let (dir, _) = cache.ready().unwrap();
        entry(dir, engine, sha256)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        files
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
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
        let root = tempfile::tempdir().unwrap();
        let cache = CodeCache::Dir {
            dir: root.path().join("nested/cache"),
            key: root.path().join("config/rulehost/cache.key"),
        }
        .open();
        let engine = Engine::default();
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Miss));
        cache.put(&engine, SHA, &compile(&engine));
        assert!(cache.get(&engine, SHA).is_ok());
        // Nothing but the entry is left behind: the temp file was renamed.
        let files = files(&root.path().join("nested/cache"));
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with(".cwasm") && !files[0].starts_with('.'));

        let entry = entry_of(&cache, &engine, SHA);
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

    #[cfg(unix)]
    #[test]
    fn entries_that_are_not_regular_files_are_not_read() {
        let root = tempfile::tempdir().unwrap();
        let cache = cache_in(root.path()).open();
        let engine = Engine::default();
        cache.put(&engine, SHA, &compile(&engine));
        let entry = entry_of(&cache, &engine, SHA);
        // Even a link to a valid entry: the next `put` replaces the link, not its target.
        let elsewhere = root.path().join("elsewhere.cwasm");
        std::fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Replaced));
        std::fs::remove_file(&entry).unwrap();
        std::fs::create_dir(&entry).unwrap();
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Replaced));
    }

    #[test]
    fn entries_verify_only_under_their_key_and_component() {
        let (mine, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cache = cache_in(mine.path()).open();
        let engine = Engine::default();
        let artifact = compile(&engine).serialize().unwrap();
        let OpenCache::Ready { key, .. } = &cache else {
            panic!("{cache:?}");
        };
        let entry = entry_of(&cache, &engine, SHA);
        let write = |tag: &[u8]| std::fs::write(&entry, [tag, &artifact].concat()).unwrap();

        // The entry `put` writes, made by hand: it hits, so the forgeries below are
        // refused for their MAC alone.
        write(&mac(key, &engine, SHA, &artifact).finalize().into_bytes());
        assert!(cache.get(&engine, SHA).is_ok());
        // A MAC under another user's key.
        let OpenCache::Ready { key: other, .. } = cache_in(theirs.path()).open() else {
            panic!("no second cache");
        };
        write(&mac(&other, &engine, SHA, &artifact).finalize().into_bytes());
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Replaced));
        // The right key, but made for another component.
        let other_sha = SHA.replace('0', "1");
        write(
            &mac(key, &engine, &other_sha, &artifact)
                .finalize()
                .into_bytes(),
        );
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Replaced));
        // The artifact's plain sha256, as entries had it before the MAC.
        write(&Sha256::digest(&artifact));
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Replaced));
    }

    #[test]
    fn another_engine_config_or_component_misses() {
        let root = tempfile::tempdir().unwrap();
        let cache = cache_in(root.path()).open();
        let engine = Engine::default();
        cache.put(&engine, SHA, &compile(&engine));
        let mut config = Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(
            entry_of(&cache, &engine, SHA),
            entry_of(&cache, &other, SHA)
        );
        assert_eq!(cache.get(&other, SHA).err(), Some(CacheOutcome::Miss));
        let other_sha = SHA.replace('0', "1");
        assert_eq!(
            cache.get(&engine, &other_sha).err(),
            Some(CacheOutcome::Miss)
        );
        // Even an entry of another engine under this engine's name is not loaded: its
        // MAC covers the engine's compatibility hash.
        std::fs::copy(
            entry_of(&cache, &engine, SHA),
            entry_of(&cache, &other, SHA),
        )
        .unwrap();
        assert_eq!(cache.get(&other, SHA).err(), Some(CacheOutcome::Replaced));
    }

    #[test]
    fn disabled_cache_never_touches_disk() {
        let engine = Engine::default();
        let cache = CodeCache::Disabled.open();
        assert_eq!(cache.get(&engine, SHA).err(), Some(CacheOutcome::Disabled));
        assert!(cache.problem().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn the_key_is_made_once_readable_by_its_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let key = root.path().join("config/rulehost/cache.key");
        let cache = CodeCache::Dir {
            dir: root.path().join("cache"),
            key: key.clone(),
        };
        let engine = Engine::default();
        cache.open().put(&engine, SHA, &compile(&engine));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(key.parent().unwrap()), 0o700);
        assert_eq!(mode(&root.path().join("cache")), 0o700);
        let bytes = std::fs::read(&key).unwrap();
        assert_eq!(bytes.len(), KEY_LEN);
        assert_ne!(bytes, [0; KEY_LEN]);
        // The next run reads the same key: its entries hit.
        assert!(cache.open().get(&engine, SHA).is_ok());
        assert_eq!(std::fs::read(&key).unwrap(), bytes);
        assert_eq!(files(key.parent().unwrap()), ["cache.key"]);
        // Another user's key file is another key.
        let other = tempfile::tempdir().unwrap();
        let other_key = other.path().join("cache.key");
        let cache = CodeCache::Dir {
            dir: root.path().join("cache"),
            key: other_key.clone(),
        };
        assert_eq!(
            cache.open().get(&engine, SHA).err(),
            Some(CacheOutcome::Replaced)
        );
        assert_ne!(std::fs::read(other_key).unwrap(), bytes);
    }

    /// Opens `cache`, which must be refused for `expected`; nothing is read or written.
    #[cfg(unix)]
    fn assert_unusable(cache: &CodeCache, expected: fn(&CacheProblem) -> bool) {
        let CodeCache::Dir { dir, .. } = cache else {
            panic!("{cache:?}");
        };
        let before = files(dir);
        let engine = Engine::default();
        let open = cache.open();
        let problem = open.problem().expect("the cache was used");
        assert!(expected(problem), "{problem:?}");
        assert_eq!(open.get(&engine, SHA).err(), Some(CacheOutcome::Unusable));
        open.put(&engine, SHA, &compile(&engine));
        assert_eq!(files(dir), before);
    }

    /// Whether this process runs as root, which may give files away.
    #[cfg(unix)]
    fn root() -> bool {
        user() == 0
    }

    #[cfg(unix)]
    #[test]
    fn keys_that_are_not_private_to_this_user_are_not_used() {
        let root_dir = tempfile::tempdir().unwrap();
        let cache = cache_in(root_dir.path());
        let CodeCache::Dir { key, .. } = &cache else {
            unreachable!()
        };
        drop(cache.open());
        chmod(key, 0o640);
        assert_unusable(&cache, |p| {
            matches!(p, CacheProblem::SharedKey { mode: 0o640, .. })
        });
        chmod(key, 0o602);
        assert_unusable(&cache, |p| matches!(p, CacheProblem::SharedKey { .. }));
        chmod(key, 0o600);
        std::fs::write(key, [7; KEY_LEN - 1]).unwrap();
        assert_unusable(&cache, |p| {
            matches!(p, CacheProblem::KeyLength { len: 31, .. })
        });
        std::fs::remove_file(key).unwrap();
        std::fs::create_dir(key).unwrap();
        assert_unusable(&cache, |p| matches!(p, CacheProblem::KeyNotFile { .. }));
        std::fs::remove_dir(key).unwrap();
        if root() {
            drop(cache.open());
            std::os::unix::fs::chown(key, Some(65534), None).unwrap();
            assert_unusable(&cache, |p| {
                matches!(p, CacheProblem::ForeignKey { owner: 65534, .. })
            });
        } else {
            eprintln!("note: not root: a key of another user is not tested");
        }
    }

    #[cfg(unix)]
    #[test]
    fn folders_others_can_write_are_not_used() {
        let root_dir = tempfile::tempdir().unwrap();
        let cache = cache_in(root_dir.path());
        let CodeCache::Dir { dir, .. } = &cache else {
            unreachable!()
        };
        let engine = Engine::default();
        cache.open().put(&engine, SHA, &compile(&engine));
        for shared in [0o777, 0o1777, 0o720, 0o702] {
            chmod(dir, shared);
            assert_unusable(&cache, |p| matches!(p, CacheProblem::SharedDir { .. }));
        }
        // Readable by others is not writable by them.
        chmod(dir, 0o755);
        assert!(cache.open().get(&engine, SHA).is_ok());
        if root() {
            chmod(dir, 0o700);
            std::os::unix::fs::chown(dir, Some(65534), None).unwrap();
            assert_unusable(&cache, |p| {
                matches!(p, CacheProblem::ForeignDir { owner: 65534, .. })
            });
        } else {
            eprintln!("note: not root: a folder of another user is not tested");
        }
    }

    #[test]
    fn a_folder_that_cannot_be_made_disables_the_cache_quietly() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, "").unwrap();
        let cache = CodeCache::Dir {
            dir: file.join("cache"),
            key: root.path().join("cache.key"),
        }
        .open();
        assert!(cache.problem().is_none());
        assert_eq!(
            cache.get(&Engine::default(), SHA).err(),
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
        let at = |dir: &str, key: &str| CodeCache::Dir {
            dir: PathBuf::from(dir),
            key: PathBuf::from(key),
        };
        let all = [
            ("RULEHOST_CACHE_DIR", "/r"),
            ("RULEHOST_CACHE_KEY", "/k"),
            ("XDG_CACHE_HOME", "/x"),
            ("XDG_CONFIG_HOME", "/c"),
            ("HOME", "/h"),
        ];
        assert_eq!(from(&all), at("/r", "/k"));
        assert_eq!(from(&all[2..]), at("/x/rulehost", "/c/rulehost/cache.key"));
        assert_eq!(
            from(&all[4..]),
            at("/h/.cache/rulehost", "/h/.config/rulehost/cache.key")
        );
        assert_eq!(
            from(&[
                ("RULEHOST_CACHE_DIR", ""),
                ("RULEHOST_CACHE_KEY", ""),
                ("XDG_CACHE_HOME", "rel"),
                ("XDG_CONFIG_HOME", "rel"),
                ("HOME", "/h")
            ]),
            at("/h/.cache/rulehost", "/h/.config/rulehost/cache.key")
        );
        assert_eq!(from(&[]), CodeCache::Disabled);
        // A folder without a place for its key is no cache.
        assert_eq!(from(&all[..1]), CodeCache::Disabled);
        assert_eq!(from(&all[..2]), at("/r", "/k"));
    }
}
