//! The load-time audit: components that read files, open sockets, belong to another world
//! or version, core modules, precompiled artifacts and other bytes are refused at load
//! with an error naming the component and the reason; the seed rules still load.

use std::path::{Path, PathBuf};

use rulehost::runtime::{
    ImportVerdict, Limits, LoadError, Pin, RuleComponent, Runtime, WorldMismatch,
};
use sha2::{Digest, Sha256};

use crate::util::*;

fn spec(filename: &str, id: &str) -> String {
    format!(
        "AnalysisType: rule\nFilename: {filename}\nRuleID: {id}\nEnabled: true\nLogTypes: [X]\nSeverity: Low\n"
    )
}

fn test_component(name: &str) -> PathBuf {
    test_components().join(name)
}

fn seed_component() -> PathBuf {
    components().join("databricks_install_library_all_clusters.wasm")
}

/// Loads a file, expecting a refusal.
fn refusal(path: &Path) -> LoadError {
    match runtime().load(path) {
        Ok(_) => panic!("`{}` was accepted", path.display()),
        Err(e) => e,
    }
}

/// `bytes` with every `from` replaced by `to` (same length, so the binary stays valid).
fn patched(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = bytes.to_vec();
    let mut hits = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            hits += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(hits > 0, "`{}` not found", String::from_utf8_lossy(from));
    out
}

fn imports_of(path: &Path) -> Vec<(String, ImportVerdict)> {
    let inspection = runtime().inspect(path).unwrap();
    inspection.audit.expect("a component").imports
}

#[test]
fn hostile_fixtures_import_and_export_what_they_are_meant_to() {
    let forbidden = |path: &Path| -> Vec<String> {
        imports_of(path)
            .into_iter()
            .filter(|(_, v)| *v == ImportVerdict::Forbidden)
            .map(|(n, _)| n)
            .collect()
    };
    let fs = forbidden(&test_component("reads_file.wasm"));
    assert!(!fs.is_empty(), "reads_file imports nothing forbidden");
    assert!(
        fs.iter().all(|n| n.starts_with("wasi:filesystem/")),
        "{fs:?}"
    );
    let net = forbidden(&test_component("opens_socket.wasm"));
    assert!(!net.is_empty(), "opens_socket imports nothing forbidden");
    assert!(
        net.iter().all(|n| n.starts_with("wasi:sockets/")),
        "{net:?}"
    );
    assert!(
        net.iter().any(|n| n.starts_with("wasi:sockets/tcp@0.2.")),
        "{net:?}"
    );

    let wrong = runtime()
        .inspect(&test_component("wrong_world.wasm"))
        .unwrap();
    let audit = wrong.audit.unwrap();
    assert_eq!(audit.exports, ["other:greeter/greet@1.0.0"]);
    assert!(audit.forbidden().is_empty(), "{:?}", audit.imports);
    assert!(
        !audit
            .imports
            .iter()
            .any(|(n, _)| n.starts_with("rulehost:")),
        "{:?}",
        audit.imports
    );

    // The seed rules and the sandbox's hostile rule import only allowed interfaces.
    for path in [
        seed_component(),
        components().join("databricks_access_to_multiple_workspaces.wasm"),
        test_component("hostile.wasm"),
    ] {
        assert_eq!(forbidden(&path), Vec::<String>::new(), "{}", path.display());
        let imports = imports_of(&path);
        assert!(
            imports
                .iter()
                .any(|(n, v)| n == "rulehost:rules/types@1.0.0" && *v == ImportVerdict::Types),
            "{imports:?}"
        );
    }
}

#[test]
fn a_rule_reading_files_is_refused_naming_the_imports() {
    let path = test_component("reads_file.wasm");
    let err = refusal(&path);
    let LoadError::ForbiddenImports {
        path: named,
        imports,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(named, &path);
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:filesystem/types@0.2.")),
        "{imports:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "rule component `{}` imports `wasi:filesystem/",
            path.display()
        )),
        "{text}"
    );
    assert!(text.ends_with(", which rules may not use"), "{text}");
}

#[test]
fn a_rule_opening_sockets_is_refused_naming_the_imports() {
    let path = test_component("opens_socket.wasm");
    let err = refusal(&path);
    let LoadError::ForbiddenImports { imports, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:sockets/tcp@0.2.")),
        "{imports:?}"
    );
    assert!(err.to_string().contains("`wasi:sockets/tcp@0.2."), "{err}");
}

#[test]
fn a_component_of_another_world_is_refused_as_such() {
    let path = test_component("wrong_world.wasm");
    let err = refusal(&path);
    assert!(
        matches!(
            &err,
            LoadError::WrongWorld { mismatch: WorldMismatch::NoDetection { exports }, .. }
                if exports == &["other:greeter/greet@1.0.0"]
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "rule component `{}` is not a rulehost rule: it does not export \
             `rulehost:rules/detection@1.0.0` (it exports `other:greeter/greet@1.0.0`)",
            path.display()
        )
    );
}

#[test]
fn functions_named_right_but_typed_wrong_are_refused_at_load() {
    // `wrong_types` exports detection@1.0.0 with every function, but `rule` returns a
    // plain `bool`: the audit (names, versions) passes it, and the load must still refuse
    // it rather than fail on every event.
    let path = test_component("wrong_types.wasm");
    let err = refusal(&path);
    assert!(matches!(&err, LoadError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "invalid rule component `{}`: it cannot be instantiated: ",
            path.display()
        )) && text.contains("type mismatch"),
        "{text}"
    );
    let inspection = runtime().inspect(&path).unwrap();
    assert_eq!(inspection.problems.len(), 1, "{:?}", inspection.problems);
}

#[test]
fn a_detection_export_missing_functions_is_the_wrong_world() {
    // Renaming one function everywhere keeps the binary valid but breaks the world.
    let bytes = patched(
        &std::fs::read(seed_component()).unwrap(),
        "destinations",
        "destinationz",
    );
    let err = runtime()
        .load_bytes(Path::new("renamed.wasm"), &bytes, Pin::Unpinned)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "rule component `renamed.wasm` is not a rulehost rule: its \
         `rulehost:rules/detection@1.0.0` lacks `destinations`"
    );
}

#[test]
fn another_version_of_our_interface_is_refused() {
    let seed = std::fs::read(seed_component()).unwrap();
    // A compatible release still loads: wasmtime matches 1.x semver-compatibly.
    let patch = patched(
        &seed,
        "rulehost:rules/detection@1.0.0",
        "rulehost:rules/detection@1.0.7",
    );
    runtime()
        .load_bytes(Path::new("patch.wasm"), &patch, Pin::Unpinned)
        .unwrap();

    for (from, to) in [
        (
            "rulehost:rules/detection@1.0.0",
            "rulehost:rules/detection@2.0.0",
        ),
        (
            "rulehost:rules/detection@1.0.0",
            "rulehost:rules/detection@0.2.0",
        ),
        ("rulehost:rules/types@1.0.0", "rulehost:rules/types@0.9.0"),
    ] {
        let bytes = patched(&seed, from, to);
        let err = runtime()
            .load_bytes(Path::new("next.wasm"), &bytes, Pin::Unpinned)
            .err()
            .unwrap();
        assert!(
            matches!(&err, LoadError::IncompatibleVersion { name, .. } if name == to),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "rule component `next.wasm` was built for `{to}`, but this rulehost speaks \
                 `rulehost:rules@1.x`: rebuild it against this rulehost's `wit/rulehost.wit` \
                 (for a Rust SDK rule, `make plugins`)"
            )
        );
    }
}

#[test]
fn a_rule_built_for_the_0_2_contract_is_refused_and_must_be_rebuilt() {
    // A real component built against rulehost:rules@0.2.0 (before 1.0's explicit events).
    let path = test_component("old_contract.wasm");
    let err = refusal(&path);
    assert_eq!(
        err.to_string(),
        format!(
            "rule component `{}` was built for `rulehost:rules/detection@0.2.0`, but this \
             rulehost speaks `rulehost:rules@1.x`: rebuild it against this rulehost's \
             `wit/rulehost.wit` (for a Rust SDK rule, `make plugins`)",
            path.display()
        )
    );
}

#[test]
fn core_modules_and_other_bytes_are_refused_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = refusal(&core);
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "rule component `{}` is a core WebAssembly module, not a component (build rules \
             for `wasm32-wasip2`)",
            core.display()
        )
    );

    for (name, bytes) in [
        ("text.wasm", &b"(component)"[..]),
        ("empty.wasm", b""),
        ("script.wasm", b"#!/bin/sh\nrm -rf /\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = refusal(&path);
        assert!(matches!(err, LoadError::NotWasm { .. }), "{name}: {err:?}");
        assert_eq!(
            err.to_string(),
            format!("rule component `{}` is not WebAssembly", path.display())
        );
    }
}

/// A real wasmtime artifact of the seed, taken from rulehost's own cache (whose entries
/// are the artifact after a 32-byte MAC).
fn precompiled_seed() -> Vec<u8> {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime().with_cache(cache_at(cache.path()));
    runtime.load(&seed_component()).unwrap();
    let entry = std::fs::read_dir(cache.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read(entry).unwrap()[32..].to_vec()
}

#[test]
fn precompiled_artifacts_from_rule_authors_are_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = precompiled_seed();
    // Named `.cwasm`: refused by name, before a byte is read.
    let cwasm = dir.path().join("seed.cwasm");
    std::fs::write(&cwasm, &artifact).unwrap();
    let err = refusal(&cwasm);
    assert!(matches!(err, LoadError::NotDotWasm { .. }), "{err:?}");
    // Even the genuine component is refused under another extension.
    let renamed = dir.path().join("seed.component");
    std::fs::copy(seed_component(), &renamed).unwrap();
    assert!(matches!(refusal(&renamed), LoadError::NotDotWasm { .. }));
    // Named `.wasm`: refused by content.
    let disguised = dir.path().join("seed.wasm");
    std::fs::write(&disguised, &artifact).unwrap();
    let err = refusal(&disguised);
    assert!(matches!(err, LoadError::Precompiled { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "rule component `{}` is a precompiled wasmtime artifact, not a component; only \
             `.wasm` components are loaded",
            disguised.display()
        )
    );

    // And through a spec: a `.cwasm` in `Filename:` is refused (by spec validation,
    // before the runtime's own check), naming the spec and the file.
    std::fs::write(
        dir.path().join("r.yml"),
        spec("seed.cwasm", "Test.Precompiled"),
    )
    .unwrap();
    for args in [&["eval", "--rules"][..], &["test"]] {
        let out = run(rulehost().args(args).arg(dir.path()), "");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.contains("r.yml") && text.contains("`seed.cwasm`") && text.contains("`.wasm`"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn the_seed_rules_still_load() {
    let set = rulehost::ruleset::load(&runtime(), &rules_tests(), &[components()]).unwrap();
    assert!(set.invalid.is_empty(), "{:?}", set.invalid);
    let ids: Vec<&str> = set.rules.iter().map(|r| r.spec.rule_id.as_str()).collect();
    assert!(
        ids.contains(&"Databricks.Audit.InstallLibraryAllClusters")
            && ids.contains(&"Databricks.Audit.AccessToMultipleWorkspaces"),
        "{ids:?}"
    );
}

#[test]
fn eval_refuses_a_folder_with_a_file_reading_rule() {
    let dir = rule_dir(
        &[INSTALL],
        &[("reads.yml", &spec("reads_file.wasm", "Test.ReadsFile"))],
    );
    let out = run(rulehost().args(["eval", "--rules"]).arg(dir.path()), "");
    assert_golden("eval_forbidden_import", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn eval_and_test_refuse_hostile_components_naming_rule_and_reason() {
    for (file, id, reason) in [
        ("reads_file.wasm", "Test.ReadsFile", "`wasi:filesystem/"),
        ("opens_socket.wasm", "Test.OpensSocket", "`wasi:sockets/"),
        (
            "wrong_world.wasm",
            "Test.WrongWorld",
            "is not a rulehost rule: it does not export `rulehost:rules/detection@1.0.0`",
        ),
    ] {
        let dir = rule_dir(&[INSTALL], &[("hostile.yml", &spec(file, id))]);
        for args in [&["eval", "--rules"][..], &["test"]] {
            let out = run(rulehost().args(args).arg(dir.path()), "");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(2), "{args:?} {file}: {text}");
            assert!(
                text.contains(&format!("failed to load rule `{id}`")) && text.contains(reason),
                "{args:?} {file}: {text}"
            );
            assert!(text.contains(file), "{args:?} {file}: {text}");
        }
    }
}

fn sha256_hex(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A transcript with the size and sha256 of `path` replaced, after checking them.
fn inspect_transcript(path: &Path) -> (String, i32) {
    let out = run(rulehost().arg("inspect").arg(path), "");
    let size = std::fs::metadata(path).unwrap().len();
    let sha = sha256_hex(path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("\nsize: {size} bytes\n")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("\nsha256: {sha}\n")), "{stdout}");
    let text = transcript(&out, None)
        .replace(&format!("size: {size} bytes"), "size: <size> bytes")
        .replace(&sha, "<sha256>");
    (text, out.status.code().unwrap())
}

#[test]
fn inspect_shows_an_accepted_rule() {
    let (text, code) = inspect_transcript(&seed_component());
    assert_golden("inspect_seed", &text);
    assert_eq!(code, 0);
}

#[test]
fn inspect_shows_why_a_component_is_refused() {
    let (text, code) = inspect_transcript(&test_component("reads_file.wasm"));
    assert_golden("inspect_reads_file", &text);
    assert_eq!(code, 2);

    let (text, code) = inspect_transcript(&test_component("wrong_world.wasm"));
    assert_eq!(code, 2);
    assert!(
        text.contains("world: not a rulehost rule\nexports:\n  other:greeter/greet@1.0.0\n"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = run(rulehost().arg("inspect").arg(&core), "");
    assert_golden("inspect_core_module", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(2));
}

/// Every component the suite ships loads or is refused the same way through the CLI and
/// the library.
#[test]
fn inspect_verdict_matches_load() {
    let runtime = Runtime::new(Limits::default()).unwrap();
    for dir in [components(), test_components()] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let loaded: Result<RuleComponent, _> = runtime.load(&path);
            let out = run(rulehost().arg("inspect").arg(&path), "");
            assert_eq!(
                out.status.code(),
                Some(if loaded.is_ok() { 0 } else { 2 }),
                "{}",
                path.display()
            );
        }
    }
}
