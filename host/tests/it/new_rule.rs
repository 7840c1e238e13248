//! `make new-rule NAME=... RULE_ID=...` (`scripts/new_rule.py`): what it writes is what the
//! README's "Adding a rule" says a new rule needs, and it works as written: the crate builds
//! into a component for `wasm32-wasip2` with the plugin profile, and `rulehost test` passes
//! its spec. The scaffold goes into a temporary folder (`--root`), never into the checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// The rule the test scaffolds. Its build outputs stay in the shared target folder under
/// this name (the same files every run), beside the workspace's own.
const NAME: &str = "new_rule_scaffold_check";
const CRATE: &str = "new-rule-scaffold-check";
const RULE_ID: &str = "Test.Scaffold.NewRule";

/// The cargo target folder of this test build (`CARGO_TARGET_TMPDIR` is its `tmp/`), which
/// holds the SDK's dependencies already built for the plugin profile by `make plugins`:
/// building one more rule there compiles only the SDK and the rule.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A workspace at `root` for the scaffolded crate: the repository's `Cargo.toml` (its
/// profiles, lints and shared dependency versions) with `plugins/rules/*` as the only
/// members and path dependencies pointing into the repository, and its `Cargo.lock`.
fn workspace(root: &Path) {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let start = manifest
        .find("members = [")
        .expect("the root manifest lists its members");
    let end = start + manifest[start..].find(']').unwrap() + 1;
    assert!(
        manifest[start..end].contains("\"plugins/rules/*\""),
        "a crate under plugins/rules/ is a workspace member through the glob"
    );
    let repo = repo();
    let manifest = format!(
        "{}members = [\"plugins/rules/*\"]{}",
        &manifest[..start],
        &manifest[end..]
    )
    .replace("exclude = [\"fuzz\"]\n", "")
    .replace("{ path = \"", &format!("{{ path = \"{}/", repo.display()));
    std::fs::write(root.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(repo.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// The scaffold writes the crate and the spec (nothing else), in the shape the README
/// describes; the crate builds for `wasm32-wasip2` and its spec's `Tests:` pass unedited.
/// Costs one build of the SDK and the rule (a few seconds; the SDK's dependencies are the
/// ones `make plugins` built).
#[test]
fn the_new_rule_scaffold_builds_and_passes_its_tests() {
    let root = tempfile::tempdir().unwrap();
    let out = run(
        Command::new("python3")
            .arg(repo().join("scripts/new_rule.py"))
            .args([NAME, "--rule-id", RULE_ID, "--root"])
            .arg(root.path()),
        "",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        files(root.path()),
        [
            format!("plugins/rules/{NAME}/Cargo.toml"),
            format!("plugins/rules/{NAME}/src/lib.rs"),
            format!("rules-tests/{NAME}.yml"),
        ]
    );
    let crate_dir = root.path().join("plugins/rules").join(NAME);
    let cargo = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    for line in [
        &format!("name = \"{CRATE}\""),
        "crate-type = [\"cdylib\"]",
        "[dependencies]\nrulehost-sdk.workspace = true\n\n[lints]\nworkspace = true\n",
    ] {
        assert!(cargo.contains(line), "{line:?} not in\n{cargo}");
    }
    let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    for part in [
        &format!("//! {RULE_ID}\n"),
        "//! ## What it detects",
        "//! ## Why it matters",
        "//! ## Example event",
        "export_rule!(",
        "#[cfg(test)]",
    ] {
        assert!(lib.contains(part), "{part:?} not in\n{lib}");
    }
    assert!(!lib.contains("global_allocator"), "the SDK brings its own");
    let spec_path = root.path().join(format!("rules-tests/{NAME}.yml"));
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    for line in [
        &format!("Filename: {NAME}.wasm\n"),
        &format!("RuleID: \"{RULE_ID}\"\n"),
        "Tests:\n",
    ] {
        assert!(spec.contains(line), "{line:?} not in\n{spec}");
    }

    // Built as `make plugins` builds every crate under plugins/rules/.
    workspace(root.path());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = target_dir();
    let out = run(
        Command::new(cargo)
            .current_dir(root.path())
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "build",
                "--offline",
                "--quiet",
                "--profile",
                "plugin",
                "--target",
                "wasm32-wasip2",
                "-p",
                CRATE,
            ]),
        "",
    );
    assert!(
        out.status.success(),
        "the scaffolded crate does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let components = root.path().join("components");
    std::fs::create_dir(&components).unwrap();
    std::fs::copy(
        target.join(format!("wasm32-wasip2/plugin/{NAME}.wasm")),
        components.join(format!("{NAME}.wasm")),
    )
    .unwrap();

    // `make test` runs `rulehost test` on the spec with the built components.
    let out = run(
        rulehost()
            .arg("test")
            .arg("--components")
            .arg(&components)
            .arg(root.path().join("rules-tests")),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{out:?}");
    assert!(stdout.contains(&format!("{RULE_ID}\n")), "{stdout}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}
