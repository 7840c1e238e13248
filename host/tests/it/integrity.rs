//! Integrity pins (`rulehost lock`, `--locked`) and the compiled-code cache: a component
//! that changed after review does not run, and cached code is only ever rulehost's own.

use std::path::{Path, PathBuf};
use std::process::Output;

use rulehost::lock::{LOCK_FILE, Lockfile};
use rulehost::runtime::CacheOutcome;
use sha2::{Digest, Sha256};

use crate::util::*;

const INSTALL_WASM: &str = "databricks_install_library_all_clusters.wasm";
const MULTI_WASM: &str = "databricks_access_to_multiple_workspaces.wasm";
const INSTALL_ID: &str = "Databricks.Audit.InstallLibraryAllClusters";
const MULTI_ID: &str = "Databricks.Audit.AccessToMultipleWorkspaces";

fn sha256_hex(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Both seed specs with their components copied next to them, so a test can change a
/// component without touching `build/`.
fn seeded_dir() -> tempfile::TempDir {
    let dir = rule_dir(&[INSTALL, MULTI], &[]);
    for wasm in [INSTALL_WASM, MULTI_WASM] {
        std::fs::copy(components().join(wasm), dir.path().join(wasm)).unwrap();
    }
    dir
}

fn lock(dir: &Path) -> Output {
    run(rulehost().arg("lock").arg(dir), "")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hint(dir: &Path) -> String {
    format!(
        "\n\nhint: review the rules' components, then run `rulehost lock {}` to pin them\n",
        dir.display()
    )
}

#[test]
fn lock_pins_every_rule_sorted_with_its_component_hash() {
    let dir = seeded_dir();
    let out = lock(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    let expected = format!(
        r#"{{
  "version": 1,
  "rules": [
    {{
      "rule_id": "{MULTI_ID}",
      "filename": "{MULTI_WASM}",
      "sha256": "{}"
    }},
    {{
      "rule_id": "{INSTALL_ID}",
      "filename": "{INSTALL_WASM}",
      "sha256": "{}"
    }}
  ]
}}
"#,
        sha256_hex(&dir.path().join(MULTI_WASM)),
        sha256_hex(&dir.path().join(INSTALL_WASM)),
    );
    assert_eq!(text, expected);
    // Locking twice gives the same file.
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
        expected
    );
}

#[test]
fn locked_runs_when_every_component_matches() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let out = run(
        rulehost()
            .args(["eval", "--locked", "--rules"])
            .arg(dir.path()),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(rulehost().args(["test", "--locked"]).arg(dir.path()), "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn locked_without_a_lock_file_refuses() {
    let dir = seeded_dir();
    for args in [&["eval", "--locked", "--rules"][..], &["test", "--locked"]] {
        let out = run(rulehost().args(args).arg(dir.path()), "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "error: `--locked` needs `{}`, which does not exist{}",
                dir.path().join(LOCK_FILE).display(),
                hint(dir.path())
            ),
            "{args:?}"
        );
    }
    // Without `--locked`, no lock file is needed.
    let out = run(rulehost().args(["eval", "--rules"]).arg(dir.path()), "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn locked_refuses_a_changed_component() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let wasm = dir.path().join(INSTALL_WASM);
    let locked = sha256_hex(&wasm);
    // A different, perfectly valid rule under the pinned name.
    std::fs::copy(test_components().join("hostile.wasm"), &wasm).unwrap();
    let actual = sha256_hex(&wasm);
    let expected = format!(
        "error: rule `{INSTALL_ID}`: component `{}` has sha256 {actual}, but `{}` pins {locked}{}",
        wasm.display(),
        dir.path().join(LOCK_FILE).display(),
        hint(dir.path())
    );
    for args in [&["eval", "--locked", "--rules"][..], &["test", "--locked"]] {
        let out = run(rulehost().args(args).arg(dir.path()), "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), expected, "{args:?}");
        // Nothing ran: no alerts, no test output.
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn debug_honours_locked_too() {
    let dir = seeded_dir();
    let debug = |extra: &[&str]| {
        run(
            rulehost()
                .args([
                    "debug",
                    INSTALL_ID,
                    "Library Installed on All Clusters",
                    "--path",
                ])
                .arg(dir.path())
                .args(extra),
            "",
        )
    };
    let out = debug(&["--locked"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).ends_with(&hint(dir.path())),
        "{}",
        stderr(&out)
    );
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let out = debug(&["--locked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn locked_refuses_a_rule_missing_from_the_lock() {
    let dir = rule_dir(&[INSTALL], &[]);
    std::fs::copy(
        components().join(INSTALL_WASM),
        dir.path().join(INSTALL_WASM),
    )
    .unwrap();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    std::fs::copy(rules_tests().join(MULTI), dir.path().join(MULTI)).unwrap();
    let component = components().join(MULTI_WASM);
    let out = run(
        rulehost()
            .args(["eval", "--locked", "--rules"])
            .arg(dir.path()),
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: rule `{MULTI_ID}` is not in `{}`: its component `{}` has sha256 {}, the \
             lock has none{}",
            dir.path().join(LOCK_FILE).display(),
            component.display(),
            sha256_hex(&component),
            hint(dir.path())
        )
    );
}

#[test]
fn locked_refuses_a_spec_pointing_at_another_file() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let spec = dir.path().join(INSTALL);
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains(INSTALL_WASM));
    std::fs::write(&spec, text.replace(INSTALL_WASM, "hostile.wasm")).unwrap();
    let out = run(rulehost().args(["test", "--locked"]).arg(dir.path()), "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: rule `{INSTALL_ID}`: spec names component `hostile.wasm` (sha256 {}), but \
             `{}` pins `{INSTALL_WASM}` (sha256 {}){}",
            sha256_hex(&test_components().join("hostile.wasm")),
            dir.path().join(LOCK_FILE).display(),
            sha256_hex(&dir.path().join(INSTALL_WASM)),
            hint(dir.path())
        )
    );
}

#[test]
fn a_damaged_lock_file_is_named_with_its_line() {
    let dir = seeded_dir();
    std::fs::write(
        dir.path().join(LOCK_FILE),
        "{\n  \"version\": 1,\n  \"rules\": [\n",
    )
    .unwrap();
    let out = run(rulehost().args(["test", "--locked"]).arg(dir.path()), "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: invalid lock file `{}`\n  Caused by: EOF while parsing a list at line 4",
            dir.path().join(LOCK_FILE).display()
        )),
        "{err}"
    );
    assert!(err.ends_with(&hint(dir.path())), "{err}");
}

#[test]
fn lock_refuses_to_pin_a_folder_that_does_not_load() {
    let dir = rule_dir(
        &[INSTALL],
        &[(
            "reads.yml",
            "AnalysisType: rule\nFilename: reads_file.wasm\nRuleID: Test.ReadsFile\nEnabled: true\nLogTypes: [X]\nSeverity: Low\n",
        )],
    );
    let out = lock(dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("failed to load rule `Test.ReadsFile`") && err.contains("`wasi:filesystem/"),
        "{err}"
    );
    assert!(!dir.path().join(LOCK_FILE).exists());
}

// --- the compiled-code cache ---

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn outcomes(cache: &Path) -> Vec<CacheOutcome> {
    let runtime = runtime().with_cache(cache_at(cache));
    load(&runtime, &rules_tests())
        .iter()
        .map(|r| r.component.cache_outcome())
        .collect()
}

#[test]
fn second_load_hits_the_cache_and_runs_the_same() {
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(outcomes(cache.path()), [CacheOutcome::Miss; 2]);
    assert_eq!(cache_entries(cache.path()).len(), 2);
    assert_eq!(outcomes(cache.path()), [CacheOutcome::Hit; 2]);

    // Code from the cache gives the same alerts as freshly compiled code.
    let events = [serde_json::json!({"timestamp": 1_704_067_200_000_i64,
        "actionName": "installLibraryOnAllClusters", "workspaceId": "7",
        "userIdentity": {"email": "dev@example.com"}})];
    let cached = runtime().with_cache(cache_at(cache.path()));
    let (from_cache, _, _) = evaluate(load(&cached, &rules_tests()), &events);
    let (fresh, _, _) = evaluate(load(&runtime(), &rules_tests()), &events);
    assert_eq!(from_cache.len(), 1);
    assert_eq!(from_cache, fresh);
}

#[test]
fn a_corrupt_cache_entry_is_recompiled_not_an_error() {
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(outcomes(cache.path()), [CacheOutcome::Miss; 2]);
    let entries = cache_entries(cache.path());
    // One entry flipped in the middle of its code, the other truncated.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&entries[0], &bytes).unwrap();
    std::fs::write(&entries[1], b"").unwrap();
    assert_eq!(outcomes(cache.path()), [CacheOutcome::Replaced; 2]);
    assert_eq!(outcomes(cache.path()), [CacheOutcome::Hit; 2]);
}

#[test]
fn a_disabled_cache_compiles_and_writes_nothing() {
    assert_eq!(
        load(&runtime(), &rules_tests())
            .iter()
            .map(|r| r.component.cache_outcome())
            .collect::<Vec<_>>(),
        [CacheOutcome::Disabled; 2]
    );
}

#[test]
fn refused_components_are_never_cached() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime().with_cache(cache_at(cache.path()));
    for name in ["reads_file.wasm", "opens_socket.wasm", "wrong_world.wasm"] {
        assert!(runtime.load(&test_components().join(name)).is_err());
    }
    assert_eq!(cache_entries(cache.path()), Vec::<PathBuf>::new());
}

#[test]
fn cli_cache_location_and_no_cache() {
    let explicit = tempfile::tempdir().unwrap();
    let out = run(
        rulehost()
            .env("RULEHOST_CACHE_DIR", explicit.path())
            .arg("test")
            .arg(rules_tests()),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(cache_entries(explicit.path()).len(), 2);

    let xdg = tempfile::tempdir().unwrap();
    let out = run(
        rulehost()
            .env_remove("RULEHOST_CACHE_DIR")
            .env("XDG_CACHE_HOME", xdg.path())
            .arg("test")
            .arg(rules_tests()),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(cache_entries(&xdg.path().join("rulehost")).len(), 2);

    let home = tempfile::tempdir().unwrap();
    let out = run(
        rulehost()
            .env_remove("RULEHOST_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", home.path())
            .arg("test")
            .arg(rules_tests()),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(cache_entries(&home.path().join(".cache/rulehost")).len(), 2);

    let unused = tempfile::tempdir().unwrap();
    let out = run(
        rulehost()
            .env("RULEHOST_CACHE_DIR", unused.path())
            .args(["test", "--no-cache"])
            .arg(rules_tests()),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(cache_entries(unused.path()), Vec::<PathBuf>::new());
}

#[test]
fn lock_file_round_trips_through_the_library() {
    let dir = seeded_dir();
    let rules = load(&runtime(), dir.path());
    let lock = Lockfile::pin(&rules);
    lock.write(dir.path()).unwrap();
    assert_eq!(Lockfile::read(dir.path()).unwrap(), lock);
    assert!(lock.verify(dir.path(), &rules).is_empty());
}

// --- the cache against whoever can write its folder but is not this user ---

/// Events on which each seed rule alerts once: a library installed on all clusters, and
/// one user in five workspaces within a day.
fn seed_events() -> String {
    let start = 1_704_067_200_000_i64;
    let install = serde_json::json!({"timestamp": start,
        "actionName": "installLibraryOnAllClusters", "workspaceId": "7",
        "userIdentity": {"email": "dev@example.com"}});
    let logins = (1..=5_i64).map(|i| {
        serde_json::json!({"timestamp": start + i * 3_600_000, "serviceName": "accounts",
            "actionName": "login", "workspaceId": format!("ws-{i}"),
            "userIdentity": {"email": "a@example.com"}})
    });
    std::iter::once(install)
        .chain(logins)
        .map(|e| format!("{e}\n"))
        .collect()
}

/// One user's compiled-code cache: a folder, and a key beside it (not in it).
struct UserCache {
    _root: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
}

impl UserCache {
    fn new() -> UserCache {
        let root = tempfile::tempdir().unwrap();
        UserCache {
            dir: root.path().join("cache"),
            key: root.path().join("cache.key"),
            _root: root,
        }
    }

    /// `rulehost` with this cache.
    fn rulehost(&self) -> std::process::Command {
        let mut cmd = rulehost();
        cmd.env("RULEHOST_CACHE_DIR", &self.dir)
            .env("RULEHOST_CACHE_KEY", &self.key);
        cmd
    }

    /// `eval --locked` of the rule folder `dir` over [`seed_events`].
    fn eval_locked(&self, dir: &Path) -> Output {
        run(
            self.rulehost()
                .args(["eval", "--locked", "--rules"])
                .arg(dir),
            &seed_events(),
        )
    }

    /// Has rulehost cache the two seed rules; their entries: (install's, multi's).
    fn seed_entries(&self) -> (PathBuf, PathBuf) {
        let mut entries = Vec::new();
        for spec in [INSTALL, MULTI] {
            let dir = rule_dir(&[spec], &[]);
            let out = run(
                self.rulehost().args(["eval", "--rules"]).arg(dir.path()),
                "",
            );
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            let new: Vec<PathBuf> = cache_entries(&self.dir)
                .into_iter()
                .filter(|e| !entries.contains(e))
                .collect();
            assert_eq!(new.len(), 1, "{new:?}");
            entries.extend(new);
        }
        (entries[0].clone(), entries[1].clone())
    }
}

/// The artifact in a cache entry: past its 32-byte digest (a plain sha256 before
/// entries were authenticated, an HMAC-SHA256 since).
fn artifact(entry: &[u8]) -> &[u8] {
    &entry[32..]
}

/// What anyone who can write the cache folder could make of an entry in the layout
/// before the MAC: `artifact` behind its recomputed sha256.
fn forged_entry(artifact: &[u8]) -> Vec<u8> {
    [Sha256::digest(artifact).as_slice(), artifact].concat()
}

/// `out` is a run of `eval --locked` that gave exactly the alerts of freshly compiled
/// code over [`seed_events`], one from each seed rule.
fn assert_own_alerts(out: &Output, dir: &Path) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    let fresh = run(
        rulehost().args(["eval", "--no-cache", "--rules"]).arg(dir),
        &seed_events(),
    );
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));
    let alerts = String::from_utf8_lossy(&out.stdout);
    assert_eq!(alerts, String::from_utf8_lossy(&fresh.stdout));
    for id in [INSTALL_ID, MULTI_ID] {
        let rule = format!("\"rule_id\":\"{id}\"");
        assert_eq!(alerts.matches(&rule).count(), 1, "{id}: {alerts}");
    }
}

fn warnings(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_rewritten_cache_entry_is_recompiled_not_run() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let cache = UserCache::new();
    let (install, multi) = cache.seed_entries();
    // The install rule's entry now holds the other rule's code; the other's a flipped
    // bit in the middle of its own. Each behind a valid sha256.
    let other = forged_entry(artifact(&std::fs::read(&multi).unwrap()));
    let mut flipped = artifact(&std::fs::read(&multi).unwrap()).to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let flipped = forged_entry(&flipped);
    std::fs::write(&install, &other).unwrap();
    std::fs::write(&multi, &flipped).unwrap();

    let out = cache.eval_locked(dir.path());
    assert_own_alerts(&out, dir.path());
    // Recompiled and replaced.
    assert_ne!(std::fs::read(&install).unwrap(), other);
    assert_ne!(std::fs::read(&multi).unwrap(), flipped);
    assert_eq!(cache.eval_locked(dir.path()).stdout, out.stdout);
}

#[test]
fn swapped_cache_entries_are_recompiled_not_run() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let cache = UserCache::new();
    let (install, multi) = cache.seed_entries();
    let (install_bytes, multi_bytes) = (
        std::fs::read(&install).unwrap(),
        std::fs::read(&multi).unwrap(),
    );
    std::fs::write(&install, &multi_bytes).unwrap();
    std::fs::write(&multi, &install_bytes).unwrap();

    assert_own_alerts(&cache.eval_locked(dir.path()), dir.path());
    assert_ne!(std::fs::read(&install).unwrap(), multi_bytes);
    assert_ne!(std::fs::read(&multi).unwrap(), install_bytes);
}

#[test]
fn entries_copied_from_another_users_cache_are_recompiled() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let (mine, theirs) = (UserCache::new(), UserCache::new());
    let (my_install, my_multi) = mine.seed_entries();
    let (their_install, their_multi) = theirs.seed_entries();
    // Entry names do not depend on the key: their entries land on mine.
    assert_eq!(my_install.file_name(), their_install.file_name());
    for (from, to) in [(&their_install, &my_install), (&their_multi, &my_multi)] {
        std::fs::copy(from, to).unwrap();
    }

    assert_own_alerts(&mine.eval_locked(dir.path()), dir.path());
    for (theirs, mine) in [(&their_install, &my_install), (&their_multi, &my_multi)] {
        assert_ne!(
            std::fs::read(mine).unwrap(),
            std::fs::read(theirs).unwrap(),
            "`{}` was used as it came",
            mine.display()
        );
    }
}

/// Runs `eval --locked` with `cache`, whose folder holds the seed entries swapped and is
/// then made unsafe by `unsafe_folder`: the rules give their own alerts, one warning
/// containing `reason` names the folder, and nothing in it was read or written.
fn assert_unsafe_folder_unused(unsafe_folder: impl FnOnce(&Path), reason: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let cache = UserCache::new();
    let (install, multi) = cache.seed_entries();
    let (install_bytes, multi_bytes) = (
        std::fs::read(&install).unwrap(),
        std::fs::read(&multi).unwrap(),
    );
    std::fs::write(&install, forged_entry(artifact(&multi_bytes))).unwrap();
    std::fs::write(&multi, forged_entry(artifact(&install_bytes))).unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = cache_entries(&cache.dir)
        .into_iter()
        .map(|e| (e.clone(), std::fs::read(e).unwrap()))
        .collect();
    unsafe_folder(&cache.dir);

    let out = cache.eval_locked(dir.path());
    assert_own_alerts(&out, dir.path());
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "{}", stderr(&out));
    assert!(
        warned[0].contains(&format!("`{}`", cache.dir.display())) && warned[0].contains(reason),
        "{}",
        warned[0]
    );
    let after: Vec<(PathBuf, Vec<u8>)> = cache_entries(&cache.dir)
        .into_iter()
        .map(|e| (e.clone(), std::fs::read(e).unwrap()))
        .collect();
    assert_eq!(after, before);
    // Back to private, the folder is used again, its forged entries replaced.
    std::fs::set_permissions(&cache.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&cache.dir, Some(owner_of_new_files()), None).unwrap();
    let out = cache.eval_locked(dir.path());
    assert_own_alerts(&out, dir.path());
    assert_eq!(warnings(&out), Vec::<String>::new());
    assert_ne!(std::fs::read(&install).unwrap(), before[0].1);
}

/// The uid that owns the files this process creates.
fn owner_of_new_files() -> u32 {
    use std::os::unix::fs::MetadataExt;
    tempfile::tempfile().unwrap().metadata().unwrap().uid()
}

#[test]
fn a_cache_folder_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    assert_unsafe_folder_unused(
        |dir| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap(),
        "writable by other users",
    );
}

#[test]
fn a_cache_folder_of_another_user_is_not_used() {
    if owner_of_new_files() != 0 {
        eprintln!("note: not root, so no folder of another user to test with; skipped");
        return;
    }
    assert_unsafe_folder_unused(
        |dir| std::os::unix::fs::chown(dir, Some(65534), None).unwrap(),
        "owned by",
    );
}

#[test]
fn a_cache_key_others_can_read_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let cache = UserCache::new();
    let (install, multi) = cache.seed_entries();
    std::fs::set_permissions(&cache.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let forged = forged_entry(artifact(&std::fs::read(&multi).unwrap()));
    std::fs::write(&install, &forged).unwrap();

    let out = cache.eval_locked(dir.path());
    assert_own_alerts(&out, dir.path());
    let warnings = warnings(&out);
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(
        warnings[0].contains(&format!("`{}`", cache.key.display())),
        "{}",
        warnings[0]
    );
    assert_eq!(
        std::fs::read(&install).unwrap(),
        forged,
        "the cache was used"
    );
}

#[test]
fn locked_refuses_a_changed_component_before_compiling_it() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let wasm = dir.path().join(INSTALL_WASM);
    let locked = sha256_hex(&wasm);
    // Bytes that would fail to compile, and a component that would fail its trial
    // instance: either error would show that they were loaded.
    let not_wasm = b"not WebAssembly at all".to_vec();
    let wrong_types = std::fs::read(test_components().join("wrong_types.wasm")).unwrap();
    for bytes in [not_wasm, wrong_types] {
        std::fs::write(&wasm, &bytes).unwrap();
        let cache = UserCache::new();
        let out = run(
            cache
                .rulehost()
                .args(["eval", "--locked", "--rules"])
                .arg(dir.path()),
            &seed_events(),
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        assert_eq!(
            stderr(&out),
            format!(
                "error: rule `{INSTALL_ID}`: component `{}` has sha256 {}, but `{}` pins \
                 {locked}{}",
                wasm.display(),
                sha256_hex(&wasm),
                dir.path().join(LOCK_FILE).display(),
                hint(dir.path())
            )
        );
        // Only the other rule's component was compiled (and cached).
        assert_eq!(cache_entries(&cache.dir).len(), 1);
    }
}

#[test]
fn locked_refuses_an_unpinned_rule_before_loading_it() {
    let dir = seeded_dir();
    assert_eq!(lock(dir.path()).status.code(), Some(0));
    let wasm = dir.path().join("unpinned.wasm");
    std::fs::write(&wasm, b"not WebAssembly at all").unwrap();
    std::fs::write(
        dir.path().join("unpinned.yml"),
        "AnalysisType: rule\nFilename: unpinned.wasm\nRuleID: Test.Unpinned\nEnabled: true\n\
         LogTypes: [X]\nSeverity: Low\n",
    )
    .unwrap();
    let out = run(
        rulehost()
            .args(["eval", "--locked", "--rules"])
            .arg(dir.path()),
        &seed_events(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        format!(
            "error: rule `Test.Unpinned` is not in `{}`: its component `{}` has sha256 {}, the \
             lock has none{}",
            dir.path().join(LOCK_FILE).display(),
            wasm.display(),
            sha256_hex(&wasm),
            hint(dir.path())
        )
    );
}

#[test]
fn load_locked_checks_each_spec_of_a_shared_component() {
    let text = std::fs::read_to_string(rules_tests().join(INSTALL)).unwrap();
    let copy = text.replace(INSTALL_ID, "Copy.Of.Install");
    let dir = rule_dir(&[INSTALL], &[("copy.yml", &copy)]);
    let components = [components()];
    let pinned = Lockfile::pin(&load(&runtime(), dir.path()));
    let set = rulehost::ruleset::load_locked(&runtime(), dir.path(), &components, &pinned).unwrap();
    assert_eq!((set.rules.len(), set.refused.len()), (2, 0));
    // Whichever spec loads second finds the component compiled for the first: its own
    // pin is still checked.
    for wrong in 0..2 {
        let mut lock = pinned.clone();
        lock.rules[wrong].sha256 = "0".repeat(64);
        let set =
            rulehost::ruleset::load_locked(&runtime(), dir.path(), &components, &lock).unwrap();
        let refused: Vec<&str> = set.refused.iter().map(|m| m.rule_id()).collect();
        assert_eq!(refused, [lock.rules[wrong].rule_id.as_str()]);
        assert!(
            set.refused[0]
                .to_string()
                .contains(&format!("pins {}", "0".repeat(64))),
            "{}",
            set.refused[0]
        );
        assert_eq!(set.rules.len(), 1);
        assert_eq!(set.rules[0].spec.rule_id, lock.rules[1 - wrong].rule_id);
    }
}
