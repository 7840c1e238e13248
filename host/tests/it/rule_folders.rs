//! A third-party rules folder cannot stall loading or reach for components elsewhere: a
//! symlink loop is an error naming the link, and `Filename:` stays inside the spec's folder
//! and the `--components` folders, links followed (issue 11).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Runs `eval --rules RULES` on empty input; kills it and fails the test if it is still
/// running after 60 s (loading a few specs takes well under a second).
fn eval_within_deadline(rules: &Path) -> Output {
    let mut child = rulehost()
        .args(["eval", "--rules"])
        .arg(rules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "`rulehost eval` still loading `{}` after 60 s",
                rules.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn spec(filename: &str, rule_id: &str) -> String {
    format!(
        "AnalysisType: rule\nFilename: {filename}\nRuleID: {rule_id}\nEnabled: true\n\
         LogTypes: [X]\nSeverity: Low\n"
    )
}

/// A temp folder, canonical so that the paths errors print (links followed) read as
/// `<test-dir>` in transcripts.
fn temp_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    (dir, root)
}

#[test]
fn a_symlink_loop_in_the_rules_folder_is_an_error_not_a_hang() {
    let dir = rule_dir(&[INSTALL], &[]);
    let sub = dir.path().join("pack/sub");
    std::fs::create_dir_all(&sub).unwrap();
    // Two links back up: followed blindly they make 2^40 paths, so `eval` never starts.
    std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
    std::os::unix::fs::symlink("../..", sub.join("top")).unwrap();
    let out = eval_within_deadline(dir.path());
    assert_golden("eval_symlink_loop", &transcript(&out, Some(dir.path())));
    assert_eq!(out.status.code(), Some(2));

    // Without the loop, a linked folder of specs loads like any other.
    std::fs::remove_file(sub.join("up")).unwrap();
    std::fs::remove_file(sub.join("top")).unwrap();
    let shared = rule_dir(&[MULTI], &[]);
    std::os::unix::fs::symlink(shared.path(), sub.join("shared")).unwrap();
    let out = eval_within_deadline(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("with 2 rules"), "{stderr}");
}

#[test]
fn filename_cannot_leave_the_specs_folder_or_the_components_folders() {
    let (_dir, root) = temp_root();
    let (rules, outside) = (root.join("rules"), root.join("outside"));
    std::fs::create_dir_all(rules.join("sub/dir")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let echo = test_components().join("echo.wasm");
    std::fs::copy(&echo, outside.join("echo.wasm")).unwrap();
    let absolute = outside.join("echo.wasm");
    for (name, text) in [
        (
            "absolute.yml",
            spec(absolute.to_str().unwrap(), "Escape.Absolute"),
        ),
        ("parent.yml", spec("../outside/echo.wasm", "Escape.Parent")),
        ("linked.yml", spec("linked.wasm", "Escape.Linked")),
    ] {
        std::fs::write(rules.join(name), text).unwrap();
    }
    std::os::unix::fs::symlink(outside.join("echo.wasm"), rules.join("linked.wasm")).unwrap();
    let out = eval_within_deadline(&rules);
    assert_golden("eval_filename_escapes", &transcript(&out, Some(&root)));
    assert_eq!(out.status.code(), Some(2));

    // A relative path below the spec's folder, and a link that stays inside it, still load.
    for name in ["absolute.yml", "parent.yml", "linked.yml", "linked.wasm"] {
        std::fs::remove_file(rules.join(name)).unwrap();
    }
    std::fs::copy(&echo, rules.join("sub/dir/echo.wasm")).unwrap();
    std::os::unix::fs::symlink("sub/dir/echo.wasm", rules.join("alias.wasm")).unwrap();
    std::fs::write(rules.join("below.yml"), spec("sub/dir/echo.wasm", "Below")).unwrap();
    std::fs::write(rules.join("alias.yml"), spec("alias.wasm", "Alias")).unwrap();
    let out = eval_within_deadline(&rules);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("with 2 rules"), "{stderr}");
}
