//! A third-party rules folder cannot stall loading: a symlink loop is an error naming the
//! link (issue 11).

use std::path::Path;
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
