//! `eval --state`: alert state that survives across runs, in SQLite.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rulehost::sink::{SinkMark, SinkTarget};
use rulehost::state::sqlite::{LockWait, SqliteBackend};

use crate::util::*;

/// Runs the seeded generator into `dir/name`.
fn generate(dir: &Path, name: &str, events: u32, seed: u32, hours: u32) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("python3")
        .arg(repo().join("scripts/gen_databricks.py"))
        .args(["--events", &events.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--hours", &hours.to_string()])
        .args(["--roamers", "12", "--output"])
        .arg(&path)
        .status()
        .expect("python3 runs the generator");
    assert!(status.success());
    path
}

/// Splits generated events into one file per hour of `timestamp`, as hourly log drops.
fn hourly_files(dir: &Path, events: u32, seed: u32, hours: u32) -> Vec<PathBuf> {
    let all = generate(dir, "all.jsonl", events, seed, hours);
    let mut files: Vec<(i64, String)> = Vec::new();
    for line in std::fs::read_to_string(all).unwrap().lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let hour = event["timestamp"].as_i64().unwrap() / 3_600_000;
        match files.last_mut() {
            Some((h, text)) if *h == hour => {
                text.push_str(line);
                text.push('\n');
            }
            _ => files.push((hour, format!("{line}\n"))),
        }
    }
    files
        .into_iter()
        .enumerate()
        .map(|(i, (_, text))| {
            let path = dir.join(format!("hour-{i:03}.jsonl"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

fn eval_cmd(dir: &Path) -> Command {
    let mut cmd = rulehost();
    // The deadline is wall time; these runs share two cores with the rest of the suite,
    // and a call that times out under load would make the alerts differ.
    cmd.current_dir(dir)
        .args(["eval", "--timeout-ms", "10000", "--rules"])
        .arg(rules_tests());
    cmd
}

/// `eval` with `--state STATE`.
fn state_cmd(dir: &Path, state: &Path) -> Command {
    let mut cmd = eval_cmd(dir);
    cmd.arg("--state").arg(state);
    cmd
}

/// The last line of the state's summary as `rulehost state --format json` prints it.
fn summary(state: &Path) -> serde_json::Value {
    let out = run(
        rulehost().args(["state", "--format", "json"]).arg(state),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The per-rule entries of a summary.
fn rules(summary: &serde_json::Value) -> &[serde_json::Value] {
    summary["rules"].as_array().unwrap()
}

/// The summary's entry for `rule_id`, if the rule has live windows.
fn rule<'a>(summary: &'a serde_json::Value, rule_id: &str) -> Option<&'a serde_json::Value> {
    rules(summary).iter().find(|r| r["rule_id"] == rule_id)
}

fn live_windows(summary: &serde_json::Value) -> u64 {
    rules(summary)
        .iter()
        .map(|r| r["windows"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_run_per_hourly_file_gives_the_alerts_of_one_run_over_all_files() {
    let dir = tempfile::tempdir().unwrap();
    // 72 hours: the 1440-minute windows of the multi-workspace rule span many files.
    let files = hourly_files(dir.path(), 12_000, 21, 72);
    assert_eq!(files.len(), 72);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();

    let one = run(eval_cmd(dir.path()).args(&names), "");
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let one_alerts = String::from_utf8(one.stdout).unwrap();
    assert!(
        one_alerts.lines().count() > 20,
        "the data should alert: {one_alerts}"
    );
    // Some alerted windows cross a file boundary (the point of the test).
    let crossing = one_alerts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| {
            a["window_start"].as_str().unwrap()[..13]
                != a["last_event_time"].as_str().unwrap()[..13]
        })
        .count();
    assert!(
        crossing > 5,
        "only {crossing} alerts span more than one hour"
    );
    // Some windows of a threshold (5 workspaces) alert in a later file than the one they
    // opened in: their state keeps the first match until then, to take the fields from.
    let alerted_later = one_alerts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| {
            a["rule_id"] == "Databricks.Audit.AccessToMultipleWorkspaces"
                && a["window_start"].as_str().unwrap()[..13]
                    != a["created_at"].as_str().unwrap()[..13]
        })
        .count();
    assert!(
        alerted_later > 0,
        "no window of a threshold alerts in a later file"
    );

    let state = dir.path().join("state.db");
    let mut split_alerts = String::new();
    for (i, name) in names.iter().enumerate() {
        let mut cmd = state_cmd(dir.path(), &state);
        cmd.arg(name);
        if i + 1 == names.len() {
            cmd.arg("--flush");
        }
        let out = run(&mut cmd, "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        split_alerts.push_str(std::str::from_utf8(&out.stdout).unwrap());
        if i == 30 {
            // Mid-stream, windows are left open for later runs.
            let s = summary(&state);
            assert!(live_windows(&s) > 0);
            assert!(String::from_utf8_lossy(&out.stderr).contains("kept for the next run"));
        }
    }
    assert_eq!(split_alerts, one_alerts, "split runs differ from one run");
    let s = summary(&state);
    assert_eq!(live_windows(&s), 0, "--flush closed every window");
    assert_eq!(s["inputs"], 72);
    assert_eq!(s["input_lines"], 12_000);
}

#[test]
fn the_same_file_twice_is_evaluated_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = generate(dir.path(), "events.jsonl", 3_000, 4, 24);
    let state = dir.path().join("state.db");
    let first = run(state_cmd(dir.path(), &state).arg(&file), "");
    assert!(first.status.success());
    let again = run(state_cmd(dir.path(), &state).arg(&file), "");
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("lines 1-3000 are already in the state"),
        "{stderr}"
    );
    assert!(stderr.contains("rulehost eval: 0 events"), "{stderr}");
    assert!(again.stdout.is_empty());

    // A different file at the same path (a rotated log) is evaluated from its start.
    std::fs::copy(generate(dir.path(), "other.jsonl", 500, 5, 24), &file).unwrap();
    let rotated = run(state_cmd(dir.path(), &state).arg(&file), "");
    let stderr = String::from_utf8_lossy(&rotated.stderr);
    assert!(
        stderr.contains("changed since it was evaluated"),
        "{stderr}"
    );
    assert!(stderr.contains("rulehost eval: 500 events"), "{stderr}");
}

/// Starts `eval --state` with output to `out`, waits until it has committed at least
/// `lines` lines, and kills it with SIGKILL.
fn kill_after(dir: &Path, input: &Path, state: &Path, out: &Path, lines: u64) {
    let mut child = state_cmd(dir, state)
        .args(["--threads", "1", "--checkpoint-lines", "2000"])
        .arg("-o")
        .arg(out)
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = SqliteBackend::open_read_only(state)
            .ok()
            .and_then(|s| s.summary().ok())
            .map_or(0, |s| s.input_lines);
        if committed >= lines {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "killed, not finished");
}

#[test]
fn a_run_killed_mid_file_and_rerun_loses_and_repeats_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "events.jsonl", 100_000, 5, 48);
    let expected_path = dir.path().join("expected.jsonl");
    let clean = run(
        state_cmd(dir.path(), &dir.path().join("clean.db"))
            .arg("--flush")
            .arg("-o")
            .arg(&expected_path)
            .arg(&input),
        "",
    );
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    assert!(expected.lines().count() > 100);

    for (case, kill_at) in [(0, 10_000), (1, 40_000)] {
        let state = dir.path().join(format!("state-{case}.db"));
        let out = dir.path().join(format!("alerts-{case}.jsonl"));
        kill_after(dir.path(), &input, &state, &out, kill_at);
        let s = SqliteBackend::open_read_only(&state)
            .unwrap()
            .summary()
            .unwrap();
        assert!(s.interrupted);
        assert!(s.input_lines < 100_000, "killed mid-file");
        if case == 1 {
            // As if the killed run had written half an alert after its last checkpoint.
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
            file.write_all(br#"{"kind":"alert","alert_id":"#).unwrap();
        }

        // Rerun the same command: it resumes after the last checkpoint.
        let rerun = run(
            state_cmd(dir.path(), &state)
                .arg("--flush")
                .arg("-o")
                .arg(&out)
                .arg(&input),
            "",
        );
        let stderr = String::from_utf8_lossy(&rerun.stderr);
        assert!(rerun.status.success(), "{stderr}");
        assert!(stderr.contains("are already in the state"), "{stderr}");
        if case == 1 {
            assert!(
                stderr.contains("after its last checkpoint (they are written again)"),
                "{stderr}"
            );
        }
        let got = std::fs::read_to_string(&out).unwrap();
        // Byte for byte: nothing lost, nothing twice, same ids.
        assert_eq!(
            got, expected,
            "case {case}: alerts after kill + rerun differ"
        );
        assert!(
            !SqliteBackend::open_read_only(&state)
                .unwrap()
                .summary()
                .unwrap()
                .interrupted
        );
    }

    // Rerun into a different file: the killed run's file is left as it is (only this run's
    // own output is ever cut), and its part up to the last checkpoint and the new file
    // together hold each alert once.
    let state = dir.path().join("state-2.db");
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    kill_after(dir.path(), &input, &state, &first, 25_000);
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&first)
            .unwrap();
        file.write_all(br#"{"kind":"alert","alert_id":"#).unwrap();
    }
    let recorded = SqliteBackend::open_read_only(&state)
        .unwrap()
        .interrupted()
        .unwrap()
        .unwrap();
    assert_eq!(recorded.kind, "jsonl");
    let (recorded, committed) = (PathBuf::from(recorded.target), recorded.mark.0);
    assert_eq!(recorded, std::fs::canonicalize(&first).unwrap());
    let killed = std::fs::read(&first).unwrap();
    let rerun = run(
        state_cmd(dir.path(), &state)
            .arg("--flush")
            .arg("-o")
            .arg(&second)
            .arg(&input),
        "",
    );
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the {} byte(s) of alerts it wrote to `{}` after its last checkpoint are left \
             there, as this run writes to `{}`",
            killed.len() as u64 - committed,
            recorded.display(),
            second.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&first).unwrap(), killed, "left as it is");
    let both = String::from_utf8(killed[..committed as usize].to_vec()).unwrap()
        + &std::fs::read_to_string(&second).unwrap();
    assert_eq!(both, expected);
}

#[test]
fn only_this_runs_own_output_is_ever_cut() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    // A state that says its last run was interrupted while writing `victim`, with nothing
    // of it committed: as a tampered (or merely stale) state would.
    let record = |output: &Path| {
        let mut store = SqliteBackend::open(&state, LockWait::Fail).unwrap();
        let sink = SinkTarget {
            kind: "jsonl".to_owned(),
            target: output.to_string_lossy().into_owned(),
            mark: SinkMark(0),
        };
        store.begin_run(Some(&sink)).unwrap();
    };
    record(&victim);
    let event = r#"{"timestamp": 1704067200000, "actionName": "installLibraryOnAllClusters", "serviceName": "clusters", "userIdentity": {"email": "a@example.com"}, "workspaceId": "1"}"#;
    let out = dir.path().join("alerts.jsonl");
    for output in [None, Some(&out)] {
        let mut cmd = state_cmd(dir.path(), &state);
        if let Some(path) = output {
            cmd.arg("-o").arg(path);
        }
        let rerun = run(&mut cmd, event);
        let stderr = String::from_utf8_lossy(&rerun.stderr);
        assert!(rerun.status.success(), "{stderr}");
        let here = output.map_or("stdout".to_owned(), |p| format!("`{}`", p.display()));
        assert!(
            stderr.contains(&format!(
                "the 9 byte(s) of alerts it wrote to `{}` after its last checkpoint are left \
                 there, as this run writes to {here}: they may be duplicated",
                victim.display()
            )),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        record(&victim);
    }

    // Through another name (a link) to the recorded file, this run's output is that file:
    // cut back to the committed length as before.
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let rerun = run(state_cmd(dir.path(), &state).arg("-o").arg(&link), "");
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "removed 9 byte(s) of alerts it wrote to `{}` after its last checkpoint",
            link.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "");
}

#[test]
fn expired_windows_are_purged_so_the_database_follows_live_windows() {
    let dir = tempfile::tempdir().unwrap();
    // A week of hourly files: many more windows open and close than are ever live at once.
    let files = hourly_files(dir.path(), 20_000, 9, 168);
    let state = dir.path().join("state.db");
    let mut sizes = Vec::new();
    let mut windows = Vec::new();
    for file in &files {
        let out = run(state_cmd(dir.path(), &state).arg(file), "");
        assert!(out.status.success());
        // The write-ahead log is folded into the database at the end of each run.
        let wal = dir.path().join("state.db-wal");
        assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0);
        sizes.push(std::fs::metadata(&state).unwrap().len());
        let s = summary(&state);
        // No stored window has ended: every one is live at the newest event time.
        let watermark = s["watermark_ms"].as_i64().unwrap();
        for rule in rules(&s) {
            assert!(rule["last_end_ms"].as_i64().unwrap() > watermark);
        }
        windows.push(live_windows(&s));
    }
    let total_opened: u64 = {
        // Every alert window of the multi-workspace rule is one user-day; far more than live.
        let out = run(
            eval_cmd(dir.path()).args(files.iter().map(|f| f.file_name().unwrap())),
            "",
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr
            .lines()
            .find(|l| l.contains("AccessToMultipleWorkspaces"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    let max_live = *windows.iter().max().unwrap();
    assert!(
        total_opened > 20 * max_live,
        "matches {total_opened}, live at most {max_live}"
    );
    // After the first day the size stops growing with the input.
    let day_one = sizes[23];
    let last = *sizes.last().unwrap();
    assert!(
        last <= day_one * 2,
        "database grew from {day_one} to {last} bytes over a week: {sizes:?}"
    );
}

#[test]
fn a_second_process_on_the_same_state_fails_clearly_or_waits() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    // The first run reads stdin, so it holds the state until stdin closes.
    let mut holder = state_cmd(dir.path(), &state)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join("state.db.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let event = r#"{"timestamp": 1704067200000, "actionName": "installLibraryOnAllClusters", "serviceName": "clusters", "userIdentity": {"email": "a@example.com"}, "workspaceId": "1"}"#;

    let second = run(&mut state_cmd(dir.path(), &state), event);
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let pid = holder.id();
    assert!(
        stderr.contains(&format!(
            "state `{}` is in use by another rulehost run (pid {pid})",
            state.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: wait for that run to finish, or pass `--wait`"));
    let clear = run(
        rulehost().arg("state").arg(&state).args(["--clear", "X"]),
        "",
    );
    assert_eq!(clear.status.code(), Some(2));

    // With --wait it blocks until the first run is done, then runs.
    let mut waiter = state_cmd(dir.path(), &state)
        .arg("--wait")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = waiter.stdin.take().unwrap();
        stdin.write_all(event.as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(waiter.try_wait().unwrap().is_none(), "--wait did not wait");
    {
        use std::io::Write;
        let mut stdin = holder.stdin.take().unwrap();
        stdin.write_all(event.as_bytes()).unwrap();
    }
    assert!(holder.wait().unwrap().success());
    let waited = waiter.wait_with_output().unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    // Both events went into the same window, one after the other.
    let s = summary(&state);
    let install = rule(&s, "Databricks.Audit.InstallLibraryAllClusters").unwrap();
    assert_eq!(install["windows"], 1);
    assert_eq!(install["pending_alerts"], 1);
}

#[test]
fn a_link_planted_at_the_state_or_its_lock_file_is_refused_and_its_target_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let lock = dir.path().join("state.db.lock");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let event = r#"{"timestamp": 1704067200000, "actionName": "installLibraryOnAllClusters", "serviceName": "clusters", "userIdentity": {"email": "a@example.com"}, "workspaceId": "1"}"#;
    let refused = |path: &Path, reason: &str| {
        let out = run(&mut state_cmd(dir.path(), &state), event);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "error: refusing to use `{}`: {reason}",
                path.display()
            )),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    };

    // The lock file as a symbolic link: followed, the victim was cut to the run's pid.
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    refused(&lock, "it is a symbolic link");
    assert!(!state.exists(), "nothing is created before the checks");
    // As a second hard link to the victim: the same file under another name.
    std::fs::remove_file(&lock).unwrap();
    std::fs::hard_link(&victim, &lock).unwrap();
    refused(&lock, "it has 2 hard links");
    // The database itself as a symbolic link.
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &state).unwrap();
    refused(&state, "it is a symbolic link");
    std::fs::remove_file(&state).unwrap();

    // A lock file of another user's is not written either (the tests run as root in CI,
    // where the owner can be changed).
    std::fs::write(&lock, "").unwrap();
    if std::os::unix::fs::chown(&lock, Some(65534), None).is_ok() {
        let out = run(&mut state_cmd(dir.path(), &state), event);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("it belongs to uid 65534, not to this user"),
            "{stderr}"
        );
        std::fs::remove_file(&lock).unwrap();
    }

    // A plain lock file, left by an earlier run or not there yet, is used as before.
    for _ in 0..2 {
        let out = run(&mut state_cmd(dir.path(), &state), event);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = summary(&state);
    let install = rule(&s, "Databricks.Audit.InstallLibraryAllClusters").unwrap();
    assert_eq!(install["windows"], 1);
}

#[test]
fn state_prints_a_summary_and_clears_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = generate(dir.path(), "events.jsonl", 2_000, 4, 12);
    let state = dir.path().join("state.db");
    let out = run(state_cmd(dir.path(), &state).arg(&file), "");
    assert!(out.status.success());

    let text = run(rulehost().arg("state").arg(&state), "");
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("inputs: 1 file(s), 2000 line(s) evaluated"),
        "{text}"
    );
    assert!(text.contains("last run: finished"), "{text}");
    assert!(
        text.contains("Databricks.Audit.AccessToMultipleWorkspaces"),
        "{text}"
    );
    assert!(text.contains("OLDEST WINDOW START"), "{text}");

    let before = summary(&state);
    let multi = rule(&before, "Databricks.Audit.AccessToMultipleWorkspaces").unwrap()["windows"]
        .as_u64()
        .unwrap();
    assert!(multi > 0);
    let cleared = run(
        rulehost()
            .arg("state")
            .arg(&state)
            .args(["--clear", "Databricks.Audit.AccessToMultipleWorkspaces"]),
        "",
    );
    assert!(cleared.status.success());
    assert!(String::from_utf8_lossy(&cleared.stderr).contains(&format!(
        "cleared {multi} live window(s) of rule `Databricks.Audit.AccessToMultipleWorkspaces`"
    )));
    let after = summary(&state);
    assert!(rule(&after, "Databricks.Audit.AccessToMultipleWorkspaces").is_none());

    let missing = run(rulehost().arg("state").arg(dir.path().join("nope.db")), "");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no state at"));
}
