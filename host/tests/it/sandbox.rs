//! A rule that loops, panics, exhausts memory, overflows its stack, returns too much data,
//! prints megabytes or sleeps costs only itself: it gets a rule-error record (or a counted
//! fallback) and a fresh instance, and the seed rules' alerts are the same as without it.
//! It sees no environment, and its clocks and random numbers depend only on the event.
//! One that keeps failing is quarantined.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rulehost::eval::{Position, RuleStats, Summary};
use rulehost::runtime::{Limits, Output, Runtime};
use serde_json::{Value, json};

use crate::util::*;

pub const HOSTILE_SPEC: &str = "AnalysisType: rule
Filename: hostile.wasm
RuleID: Test.Hostile
DisplayName: Hostile test rule
Enabled: true
LogTypes: [Databricks.Audit]
Severity: High
DedupPeriodMinutes: 60
";

const T0: i64 = 1_704_067_200_000;
const HOSTILE_ID: &str = "Test.Hostile";
const SEED_IDS: [&str; 2] = [
    "Databricks.Audit.AccessToMultipleWorkspaces",
    "Databricks.Audit.InstallLibraryAllClusters",
];
/// A whole run with a hostile rule in it stays under this, whatever the rule does: each
/// runaway call costs one deadline (100 ms), not the run.
const RUN_BUDGET: Duration = Duration::from_secs(20);

fn seed_events() -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..6 {
        events.push(json!({"timestamp": T0 + i * 1000, "actionName": "login",
            "workspaceId": format!("ws-{i}"), "userIdentity": {"email": "roamer@example.com"}}));
    }
    events.push(
        json!({"timestamp": T0 + 7000, "actionName": "installLibraryOnAllClusters",
        "workspaceId": "42", "userIdentity": {"email": "dev@example.com"}}),
    );
    events
}

fn hostile(t: i64, mode: &str) -> Value {
    json!({"timestamp": t, "hostile": mode, "actionName": "noop"})
}

/// Hostile events (one per mode) interleaved with the seed events, hostile first: the
/// hostile event `i` is on line `2i + 1` while there are seed events to interleave.
fn interleaved(modes: &[&str]) -> Vec<Value> {
    let seeds = seed_events();
    let mut events = Vec::new();
    for i in 0..modes.len().max(seeds.len()) {
        if let Some(mode) = modes.get(i) {
            events.push(hostile(T0 + i as i64 * 1000, mode));
        }
        if let Some(seed) = seeds.get(i) {
            events.push(seed.clone());
        }
    }
    events
}

fn alerts_of(records: &[Value], rule: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["rule_id"] == rule && r["kind"] == "alert")
        .map(|r| {
            let mut r = r.clone();
            // Line numbers differ when hostile events are interleaved.
            r.as_object_mut().unwrap().remove("first_event");
            r
        })
        .collect()
}

/// The seed rules' alerts without any hostile rule or event.
fn baseline() -> &'static [Value] {
    static BASELINE: OnceLock<Vec<Value>> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let dir = rule_dir(&[INSTALL, MULTI], &[]);
        let (records, summary, _) = evaluate(load(&runtime(), dir.path()), &seed_events());
        assert_eq!(records.len(), 2, "{records:#?}");
        assert!(!summary.has_errors());
        records
    })
}

/// What a run of the seed rules and the hostile rule gave.
struct Run {
    records: Vec<Value>,
    summary: Summary,
    warnings: Vec<String>,
}

impl Run {
    fn hostile(&self) -> &RuleStats {
        &self
            .summary
            .rules
            .iter()
            .find(|(id, _)| id == HOSTILE_ID)
            .unwrap()
            .1
    }

    fn hostile_records(&self, kind: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| r["rule_id"] == HOSTILE_ID && r["kind"] == kind)
            .collect()
    }

    /// The one rule-error record, checked to be of `kind`.
    fn rule_error(&self, kind: &str) -> &Value {
        let errors = self.hostile_records("rule_error");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0]["dedup"], kind, "{:#}", errors[0]);
        errors[0]
    }
}

/// Evaluates `events` with the seed rules and the hostile rule under `limits`, and checks
/// what every hostile test needs: the run finished within [`RUN_BUDGET`] and the seed
/// rules' alerts are exactly the baseline's.
fn run_with(limits: Limits, events: &[Value]) -> Run {
    let runtime = Runtime::new(limits).unwrap();
    let dir = rule_dir(&[INSTALL, MULTI], &[("hostile.yml", HOSTILE_SPEC)]);
    let started = Instant::now();
    let (records, summary, warnings) = evaluate(load(&runtime, dir.path()), events);
    assert!(
        started.elapsed() < RUN_BUDGET,
        "took {:?}",
        started.elapsed()
    );
    for rule in SEED_IDS {
        assert_eq!(
            alerts_of(&records, rule),
            alerts_of(baseline(), rule),
            "{rule}"
        );
    }
    for (id, stats) in &summary.rules {
        if id != HOSTILE_ID {
            assert_eq!((stats.rule_errors, stats.aux_errors), (0, 0), "{id}");
        }
    }
    // The path `rulehost eval` takes (line batches on a worker thread, up to 32 events per
    // `evaluate-batch` call, one by one after a batch fails) gives the same records and
    // counts, whatever the rule did.
    let started = Instant::now();
    let (batched, batched_summary, _) = evaluate_batched(load(&runtime, dir.path()), events, 50);
    assert!(
        started.elapsed() < RUN_BUDGET,
        "batched: took {:?}",
        started.elapsed()
    );
    assert_eq!(batched, records, "batched records");
    assert_eq!(
        path_independent(&batched_summary),
        path_independent(&summary),
        "batched counts"
    );
    Run {
        records,
        summary,
        warnings,
    }
}

fn run(modes: &[&str]) -> Run {
    run_with(Limits::default(), &interleaved(modes))
}

#[test]
fn an_infinite_loop_times_out() {
    let run = run(&["loop"]);
    let error = run.rule_error("Timeout");
    assert_eq!(error["first_event"], "events.jsonl:1");
    assert_eq!(error["error"], "timed out");
    assert_eq!(error["severity"], "HIGH");
    let stats = run.hostile();
    assert_eq!((stats.rule_errors, stats.restarts), (1, 1), "{stats:?}");
    assert!(
        run.warnings
            .iter()
            .any(|w| w == "rule `Test.Hostile` failed on `events.jsonl:1`: timed out"),
        "{:?}",
        run.warnings
    );
    assert!(run.summary.has_errors());
}

#[test]
fn a_panic_traps() {
    let run = run(&["panic"]);
    let error = run.rule_error("Trap");
    assert!(
        error["error"].as_str().unwrap().contains("unreachable"),
        "{error}"
    );
    assert_eq!(run.hostile().restarts, 1);
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let run = run(&["alloc"]);
    let error = run.rule_error("ResourceLimit");
    assert!(
        error["error"].as_str().unwrap().contains("memory"),
        "{error}"
    );
    assert_eq!(run.hostile().restarts, 1);
}

/// A rule with four linear memories, which no Rust guest has: memory 0 holds the canonical
/// ABI's results, and each `rule` call grows the three others by 20 MiB each (320 pages).
/// Every function returns zeros from address 0: `ok(false)` for `rule`, `none` ("not
/// defined") for the others. Each drops the borrowed event handle it is given, as the
/// component model requires before a call returns.
const FOUR_MEMORIES: &str = r#"
(module
  (import "rulehost:rules/types@1.0.0" "[resource-drop]event" (func $drop (param i32)))
  (memory (export "memory") 2)
  (memory $a 0)
  (memory $b 0)
  (memory $c 0)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (if (i32.gt_u (local.get 3) (i32.const 65536)) (then unreachable))
    (i32.const 65536))
  (func (export "rulehost:rules/detection@1.0.0#rule") (param i32) (result i32)
    (call $drop (local.get 0))
    (if (i32.eq (memory.grow $a (i32.const 320)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $b (i32.const 320)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $c (i32.const 320)) (i32.const -1)) (then unreachable))
    (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#title") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#dedup") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#unique") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#severity") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#alert-context") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#description") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#reference") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#runbook") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
  (func (export "rulehost:rules/detection@1.0.0#destinations") (param i32) (result i32)
    (call $drop (local.get 0)) (i32.const 0))
)
"#;

/// [`FOUR_MEMORIES`] as a component of `wit/rulehost.wit`'s `rule` world.
fn four_memories() -> Vec<u8> {
    let mut module = wat::parse_str(FOUR_MEMORIES).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_file(repo().join("wit/rulehost.wit")).unwrap();
    let world = resolve.select_world(&[package], Some("rule")).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[test]
fn the_memory_cap_holds_for_all_memories_of_an_instance_together() {
    let event = std::sync::Arc::new(rulehost::event::Event::whole(json!({})));
    let bytes = four_memories();
    let path = std::path::Path::new("four_memories.wasm");
    let runtime = Runtime::new(Limits::default()).unwrap();
    let mut instance = runtime
        .load_bytes(path, &bytes, rulehost::runtime::Pin::Unpinned)
        .unwrap()
        .instantiate(Output::Discard)
        .unwrap();
    // 60 MiB in three memories and 128 KiB in memory 0: under the 64 MiB cap.
    assert_eq!(instance.rule(&event), Ok(false));
    // Each memory would hold 40 MiB, under the cap by itself; all four, 80 MiB and more.
    let failure = instance.rule(&event).unwrap_err();
    assert_eq!(failure.kind(), "ResourceLimit", "{failure}");
    assert!(
        failure.to_string().contains(&format!(
            "growing a linear memory to {} bytes would give the instance {} bytes of memory; \
             the limit is {} bytes",
            40 << 20,
            (80 << 20) + (128 << 10),
            64 << 20
        )),
        "{failure}"
    );

    // With room for the total, the same calls succeed: the total was what was refused.
    let runtime = Runtime::new(Limits {
        memory_bytes: 256 << 20,
        ..Limits::default()
    })
    .unwrap();
    let mut instance = runtime
        .load_bytes(path, &bytes, rulehost::runtime::Pin::Unpinned)
        .unwrap()
        .instantiate(Output::Discard)
        .unwrap();
    // Four calls: 240 MiB; a fifth would make 300.
    for _ in 0..4 {
        assert_eq!(instance.rule(&event), Ok(false));
    }
    assert_eq!(instance.rule(&event).unwrap_err().kind(), "ResourceLimit");
}

#[test]
fn deep_recursion_overflows_the_stack_and_traps() {
    let run = run(&["recurse"]);
    let error = run.rule_error("Trap");
    // Rust keeps its stack at the bottom of linear memory: overflowing it runs below
    // address 0, which wasm catches as an out-of-bounds access.
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("out of bounds memory access"),
        "{error}"
    );
    assert_eq!(run.hostile().restarts, 1);
}

#[test]
fn a_returned_error_is_a_rule_error_and_keeps_the_instance() {
    let run = run(&["error"]);
    let error = run.rule_error("RuleError");
    assert_eq!(error["error"], "rule error: hostile rule raised an error");
    // Nothing trapped: the Store is intact and the instance is kept.
    assert_eq!(run.hostile().restarts, 0);
}

#[test]
fn every_kind_of_failure_in_one_run_leaves_the_other_rules_alone() {
    let run = run(&[
        "loop", "panic", "alloc", "recurse", "error", "panic", "match",
    ]);
    let stats = run.hostile();
    // loop, panic, alloc, recurse, error, panic fail; match matches. The seed events in
    // between succeed, so the rule is never quarantined.
    assert_eq!((stats.rule_errors, stats.matches), (6, 1), "{stats:?}");
    assert_eq!(stats.restarts, 5, "{stats:?}");
    assert_eq!(stats.quarantined_at, None);
    let mut kinds: Vec<(String, u64)> = run
        .hostile_records("rule_error")
        .iter()
        .map(|r| {
            (
                r["dedup"].as_str().unwrap().to_owned(),
                r["event_count"].as_u64().unwrap(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("ResourceLimit".to_owned(), 1),
            ("RuleError".to_owned(), 1),
            ("Timeout".to_owned(), 1),
            ("Trap".to_owned(), 3),
        ]
    );
}

#[test]
fn a_title_over_the_returned_data_cap_is_dropped_for_the_rule_id() {
    let run = run(&["big-title"]);
    let alerts = run.hostile_records("alert");
    assert_eq!(alerts.len(), 1);
    // The 4 MiB title was refused (ResourceLimit, counted); Panther's fallback for a
    // failed `title` is the RuleID.
    assert_eq!(alerts[0]["title"], HOSTILE_ID);
    assert_eq!(alerts[0]["dedup"], HOSTILE_ID);
    let stats = run.hostile();
    assert!(stats.aux_errors >= 1, "{stats:?}");
    assert!(run.summary.has_errors());
}

#[test]
fn a_rule_error_over_the_returned_data_cap_is_a_resource_limit() {
    let run = run(&["big-error"]);
    let error = run.rule_error("ResourceLimit");
    assert_eq!(
        error["error"],
        "resource limit exceeded: returned 2097152 bytes in one call; the limit is 1048576 bytes"
    );
}

#[test]
fn the_returned_data_cap_is_configurable() {
    let limits = Limits {
        max_returned_bytes: 8 << 20,
        ..Limits::default()
    };
    let run = run_with(limits, &interleaved(&["big-title"]));
    let alerts = run.hostile_records("alert");
    assert_eq!(alerts.len(), 1);
    // Accepted, then cut to Panther's 1,000 characters.
    let title = alerts[0]["title"].as_str().unwrap();
    assert_eq!(title.chars().count(), 1000);
    assert!(title.starts_with("xxx") && title.ends_with("... (truncated)"));
    assert!(!run.summary.has_errors());
}

#[test]
fn a_long_title_is_cut_to_panthers_limit() {
    let run = run(&["long-title"]);
    let alerts = run.hostile_records("alert");
    let title = alerts[0]["title"].as_str().unwrap();
    assert_eq!(title.chars().count(), 1000);
    assert!(title.ends_with("... (truncated)"));
    assert_eq!(alerts[0]["dedup"], title);
    assert!(!run.summary.has_errors());
}

#[test]
fn a_rule_sees_no_environment_variables_or_arguments() {
    // The test process itself has both; the rule must see neither.
    assert!(std::env::vars_os().count() > 0 && std::env::args_os().count() > 0);
    let run = run(&["env"]);
    let alerts = run.hostile_records("alert");
    assert_eq!(alerts[0]["title"], "env=0 args=0");
}

/// The hostile rule's title for `clock` events: `(wall_ms, elapsed_ns, hash)`.
fn clock_titles(run: &Run) -> Vec<(i64, u64, String)> {
    run.hostile_records("alert")
        .iter()
        .map(|a| {
            let title = a["title"].as_str().unwrap();
            let field = |name: &str| {
                title
                    .split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("no {name} in {title}"))
                    .to_owned()
            };
            (
                field("wall_ms").parse().unwrap(),
                field("elapsed_ns").parse().unwrap(),
                field("hash"),
            )
        })
        .collect()
}

#[test]
fn clocks_read_the_event_time_and_random_is_seeded() {
    // Two clock events an hour apart (different dedup windows: distinct titles).
    let mut events = vec![
        hostile(T0 + 250, "clock"),
        json!({"timestamp": "2024-01-01 01:00:00.5", "hostile": "clock"}),
    ];
    events.extend(seed_events());
    let first = run_with(Limits::default(), &events);
    let titles = clock_titles(&first);
    assert_eq!(titles.len(), 2, "{:#?}", first.records);
    // The wall clock is the event's time; the monotonic clock does not move in a call.
    assert_eq!((titles[0].0, titles[0].1), (T0 + 250, 0));
    assert_eq!((titles[1].0, titles[1].1), (T0 + 3_600_500, 0));

    // A separate run, with its own runtime and instances, gives the same records: the
    // hash keyed by std's random `HashMap` seed included.
    let second = run_with(Limits::default(), &events);
    assert_eq!(first.records, second.records);
    assert_eq!(clock_titles(&second), titles);
}

#[test]
fn the_test_runner_gives_the_rule_its_logs_time() {
    let spec = format!(
        "{HOSTILE_SPEC}Tests:\n  - Name: clock\n    ExpectedResult: true\n    \
         Log: {{hostile: clock, p_event_time: \"2024-01-01 00:00:00.250\"}}\n"
    );
    let dir = rule_dir(&[], &[("hostile.yml", &spec)]);
    let rules = load(&runtime(), dir.path());
    let title = || {
        let case = rulehost::testing::run_case(&rules[0], &rules[0].spec.tests[0]);
        assert!(case.passed, "{case:#?}");
        let title = case.functions.iter().find(|f| f.function == "title");
        title.unwrap().text.clone()
    };
    let first = title();
    assert!(
        first.starts_with(&format!("wall_ms={} elapsed_ns=0 hash=", T0 + 250)),
        "{first}"
    );
    assert_eq!(title(), first);
}

#[test]
fn sleeping_returns_at_once_instead_of_blocking_the_host() {
    // An hour, then `Duration::MAX`: a host wait that the epoch deadline could not stop.
    let run = run(&["sleep", "sleep-forever"]);
    let stats = run.hostile();
    assert_eq!((stats.matches, stats.rule_errors), (2, 0), "{stats:?}");
}

#[test]
fn printing_megabytes_never_traps() {
    // `eval` discards a rule's output. The flood is some 16,000 host calls (~40 ms here), so
    // on a loaded 2-core CI machine it can outlast the 100 ms wall-time deadline: this test
    // is about output, so both runs get a deadline no machine reaches.
    let generous = Limits {
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let run = run_with(generous, &interleaved(&["flood"]));
    assert_eq!(run.hostile().matches, 1);
    assert_eq!(run.hostile_records("alert").len(), 1);
    assert!(!run.summary.has_errors());

    // `test` captures 64 KiB per stream, shows it, and says how much was dropped.
    let spec = format!(
        "{HOSTILE_SPEC}Tests:\n  - Name: floods\n    ExpectedResult: true\n    Log: {{hostile: flood}}\n"
    );
    let dir = rule_dir(&[], &[("hostile.yml", &spec)]);
    let out = crate::util::run(
        rulehost()
            .args(["test", "--timeout-ms", "30000"])
            .arg(dir.path()),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\t[PASS] floods\n"), "{stdout}");
    // 4096 lines of 1,024 bytes per stream; 64 lines (65,536 bytes) are kept.
    for stream in ["stdout", "stderr"] {
        let shown = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("\t({stream}) xxx")))
            .count();
        assert_eq!(shown, 64, "{stream}");
        assert!(
            stdout.contains(&format!(
                "\t({stream}) [truncated: {} more bytes dropped]\n",
                4096 * 1024 - 65_536
            )),
            "{stream}"
        );
    }
}

#[test]
fn a_rule_that_keeps_failing_is_quarantined() {
    // 20 failing events in a row (loops and panics), then the seed events.
    let modes: Vec<&str> = ["loop", "panic"].into_iter().cycle().take(20).collect();
    let mut events: Vec<Value> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| hostile(T0 + i as i64, m))
        .collect();
    events.extend(seed_events());
    let run = run_with(Limits::default(), &events);
    let stats = run.hostile();
    assert_eq!(stats.rule_errors, 10, "{stats:?}");
    assert_eq!(
        stats.quarantined_at,
        Some(Position::new("events.jsonl", 10))
    );
    // Ten hostile events and the seven seed events were not given to it.
    assert_eq!(stats.skipped, 17);
    let quarantined: Vec<&String> = run
        .warnings
        .iter()
        .filter(|w| w.contains("quarantined"))
        .collect();
    assert_eq!(
        quarantined,
        [
            "rule `Test.Hostile` quarantined at `events.jsonl:10` after 10 calls timed out, \
             hit a limit or trapped: it is not called for the rest of the run"
        ]
    );
    assert_eq!(run.hostile_records("rule_error").len(), 2);
}

#[test]
fn successes_in_between_do_not_reset_the_failure_budget() {
    // Traps, each followed by an event the rule handles (it does not match): the budget
    // counts failed calls, not a streak, so alternating does not dodge it.
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(hostile(T0 + i, "panic"));
        events.push(hostile(T0 + i, "none"));
    }
    events.extend(seed_events());
    let run = run_with(Limits::default(), &events);
    let stats = run.hostile();
    assert_eq!(stats.rule_errors, 10);
    assert_eq!(
        stats.quarantined_at,
        Some(Position::new("events.jsonl", 19))
    );
    assert_eq!(stats.skipped, 21 + 7);
}

#[test]
fn returned_errors_cost_a_call_and_do_not_spend_the_budget() {
    // A rule that raises (a Panther exception) on every event costs no more than one that
    // does not: it is never quarantined, and every error is counted.
    let mut events: Vec<Value> = (0..30).map(|i| hostile(T0 + i, "error")).collect();
    events.extend(seed_events());
    let run = run_with(Limits::default(), &events);
    let stats = run.hostile();
    assert_eq!(stats.rule_errors, 30);
    assert_eq!((stats.quarantined_at.as_ref(), stats.skipped), (None, 0));
    assert_eq!(stats.restarts, 0);
}

fn panic_lines(n: usize) -> String {
    (0..n)
        .map(|i| format!("{}\n", hostile(T0 + i as i64, "panic")))
        .collect()
}

#[test]
fn quarantine_after_is_set_on_the_command_line_and_summarised() {
    let dir = rule_dir(&[], &[("hostile.yml", HOSTILE_SPEC)]);
    let eval = || {
        let mut cmd = rulehost();
        cmd.args(["eval", "--rules"]).arg(dir.path());
        cmd
    };
    let out = crate::util::run(eval().args(["--quarantine-after", "3"]), &panic_lines(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.matches("quarantined at `<stdin>:3`").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "\n  quarantined: `Test.Hostile` at `<stdin>:3`; 2 later events not evaluated\n"
        ),
        "{stderr}"
    );

    // 0 disables it: all 12 events reach the rule.
    let out = crate::util::run(eval().args(["--quarantine-after", "0"]), &panic_lines(12));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("quarantined"), "{stderr}");
    assert_eq!(summary_cell(&stderr, "Test.Hostile", "RULE ERRORS"), "12");
}

/// One cell of `eval`'s per-rule summary table (columns are separated by 2+ spaces).
fn summary_cell(stderr: &str, rule: &str, column: &str) -> String {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let header = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("RULE  "))
        .unwrap_or_else(|| panic!("no summary table in {stderr}"));
    let index = cells(header).iter().position(|c| c == column).unwrap();
    let row = stderr
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{rule} ")))
        .unwrap_or_else(|| panic!("no row for {rule} in {stderr}"));
    cells(row)[index].clone()
}
