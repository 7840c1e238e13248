//! Shared helpers: where the built components are, rule folders in temp dirs, running the
//! CLI, and golden files.

#![allow(dead_code, reason = "each test module uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rulehost::clock::Clock;
use rulehost::eval::{Evaluator, Location, Summary, run_parallel};
use rulehost::input::{LineBatch, from_reader};
use rulehost::ruleset::{self, LoadedRule};
use rulehost::runtime::{CodeCache, Limits, Pin, Runtime};
use rulehost::sink::JsonLines;
use rulehost::source::{Input, Replay};
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn dir_from_env(var: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with `make test`, which builds the components")
    });
    assert!(
        dir.is_dir(),
        "{var}={} does not exist: run `make test`",
        dir.display()
    );
    dir
}

/// The seed rule components (`make plugins`).
pub fn components() -> PathBuf {
    dir_from_env("RULEHOST_COMPONENTS")
}

/// The hostile test components (`make test-components`).
pub fn test_components() -> PathBuf {
    dir_from_env("RULEHOST_TEST_COMPONENTS")
}

/// The Python runtime (`make python-runtime`): `RULEHOST_PYTHON_RUNTIME`, else the
/// checkout's `build/runtimes/python.wasm` (where the `rulehost` binary finds it too).
pub fn python_runtime() -> PathBuf {
    let path = std::env::var_os("RULEHOST_PYTHON_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("build/runtimes/python.wasm"));
    assert!(
        path.is_file(),
        "the Python runtime `{}` does not exist: run `make test`",
        path.display()
    );
    path
}

/// Compiles the Python runtime into [`test_cache_dir`] once per test run (~11 s on 2
/// cores), before the Python tests' CLI runs, which then share the cached code instead of
/// each compiling it at the same time.
pub fn python_runtime_cached() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let path = python_runtime();
        let bytes = std::fs::read(&path).unwrap();
        Runtime::new(Limits::default())
            .unwrap()
            .with_cache(cache_at(&test_cache_dir()))
            .load_runtime_bytes(&path, &bytes, Pin::Unpinned)
            .unwrap();
    });
}

/// The seed specs (`rules-tests/seed/`): a fixed folder, which goldens and counts pin.
/// Other bundled rules go beside it in `rules-tests/`, which `make test` runs whole.
pub fn rules_tests() -> PathBuf {
    repo().join("rules-tests/seed")
}

/// The rulehost binary built for this test run.
pub fn rulehost() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rulehost"));
    cmd.env(
        "RULEHOST_COMPONENTS",
        format!("{}:{}", components().display(), test_components().display()),
    );
    cmd.env("NO_COLOR", "1");
    // Never the developer's own `~/.cache/rulehost` and `~/.config/rulehost/cache.key`;
    // entries are shared by the whole run.
    cmd.env("RULEHOST_CACHE_DIR", test_cache_dir());
    cmd.env("RULEHOST_CACHE_KEY", test_cache_key());
    cmd
}

/// The compiled-code cache of CLI runs in this test build (under `target/tmp`).
pub fn test_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("rulehost-cache")
}

/// The key of [`test_cache_dir`]'s entries, outside it (created by the first run).
pub fn test_cache_key() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("rulehost-cache.key")
}

/// A compiled-code cache in `dir`, with the key of [`test_cache_dir`] (outside `dir`).
pub fn cache_at(dir: &Path) -> CodeCache {
    CodeCache::Dir {
        dir: dir.to_owned(),
        key: test_cache_key(),
    }
}

/// Runs the CLI with `stdin` and returns its output.
pub fn run(cmd: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rulehost");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A temp folder of rule specs: copies of the bundled ones named in `seeds`, plus
/// `extra` (file name, YAML).
pub fn rule_dir(seeds: &[&str], extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for seed in seeds {
        std::fs::copy(rules_tests().join(seed), dir.path().join(seed)).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Spec file names of the two seeds.
pub const INSTALL: &str = "databricks_install_library_all_clusters.yml";
/// Spec file name of the multi-workspace seed.
pub const MULTI: &str = "databricks_access_to_multiple_workspaces.yml";

/// Loads a rule folder with both component folders on the search path.
pub fn load(runtime: &Runtime, dir: &Path) -> Vec<LoadedRule> {
    let set = ruleset::load(runtime, dir, &[components(), test_components()]).unwrap();
    assert!(set.invalid.is_empty(), "invalid specs: {:?}", set.invalid);
    set.rules
}

/// Runs `feed` on an evaluator of `rules` that writes to memory; returns the records, the
/// summary `feed` returns and the warnings.
fn collect(
    rules: Vec<LoadedRule>,
    feed: impl FnOnce(Evaluator<'_>) -> Summary,
) -> (Vec<Value>, Summary, Vec<String>) {
    let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let mut out = Vec::new();
    let eval = Evaluator::new(
        rules,
        Clock::default(),
        Box::new(JsonLines::new(&mut out)),
        Box::new(move |w: &str| sink.lock().unwrap().push(w.to_owned())),
    );
    let summary = feed(eval);
    let records = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let warnings = warnings.lock().unwrap().clone();
    (records, summary, warnings)
}

/// Like [`evaluate`], by the path `rulehost eval` takes: the events as JSON lines, read in
/// batches of `lines` and evaluated on a worker thread, which hands a rule up to 32 events
/// per `evaluate-batch` call.
pub fn evaluate_batched(
    rules: Vec<LoadedRule>,
    events: &[Value],
    lines: usize,
) -> (Vec<Value>, Summary, Vec<String>) {
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    let mut reader = from_reader(std::io::Cursor::new(text.into_bytes()), 1 << 20);
    let mut inputs = vec![Input::Started];
    loop {
        let mut batch = LineBatch::default();
        let end = reader.read_batch(&mut batch, lines).unwrap();
        if !batch.lines.is_empty() {
            inputs.push(Input::Lines {
                source: "events.jsonl".into(),
                batch,
                max_line: 1 << 20,
            });
        }
        if end {
            break;
        }
    }
    collect(rules, |eval| {
        let source = Replay::new("events.jsonl", inputs);
        run_parallel(eval, 1, vec![Box::new(source)]).unwrap()
    })
}

/// Evaluates events with the library API; returns the output records and the summary.
pub fn evaluate(rules: Vec<LoadedRule>, events: &[Value]) -> (Vec<Value>, Summary, Vec<String>) {
    collect(rules, |mut eval| {
        let file: Arc<str> = "events.jsonl".into();
        for (i, event) in events.iter().enumerate() {
            let location = Location {
                file: file.clone(),
                line: i as u64 + 1,
            };
            eval.event(location, event.clone()).unwrap();
        }
        eval.finish().unwrap()
    })
}

/// Per-rule counts as any path of calling the rules gives them: without the failed calls
/// of fast paths (`evaluate`, `evaluate-batch`), which only the path that made them has.
pub fn path_independent(summary: &Summary) -> Vec<(String, rulehost::eval::RuleStats)> {
    summary
        .rules
        .iter()
        .map(|(id, stats)| {
            let mut stats = stats.clone();
            stats.failed_calls.retain(|(f, _), _| !f.is_fast_path());
            (id.clone(), stats)
        })
        .collect()
}

/// A runtime with default limits.
pub fn runtime() -> Runtime {
    Runtime::new(Limits::default()).unwrap()
}

/// Compares `actual` with the golden file `tests/it/golden/NAME.txt`; `BLESS=1` rewrites it.
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file `{}`: run with BLESS=1", path.display()));
    assert_eq!(
        expected, actual,
        "golden `{name}` differs (BLESS=1 to update)"
    );
}

/// Exit code, stdout and stderr as one block, with the temp dir and timings normalised.
pub fn transcript(output: &Output, temp: Option<&Path>) -> String {
    let mut text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(temp) = temp {
        text = text.replace(&temp.display().to_string(), "<test-dir>");
    }
    text = text.replace(&components().display().to_string(), "<components>");
    text = text.replace(
        &test_components().display().to_string(),
        "<test-components>",
    );
    // Last: the component folders usually sit inside the repository.
    text = text.replace(&repo().display().to_string(), "<repo>");
    // Wall time is the one nondeterministic part of the summary.
    let re_time = |s: &str| -> String {
        s.lines()
            .map(|line| match line.find(" in ").zip(line.rfind(" s")) {
                Some((a, b)) if line.starts_with("rulehost eval:") && b > a => {
                    format!("{} in <time> s", &line[..a])
                }
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    re_time(&text)
}
