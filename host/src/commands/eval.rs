//! `rulehost eval`: evaluate JSON-lines files and print alerts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use crate::cli::ExitStatus;
use crate::clock::Clock;
use crate::commands::{RuleArgs, Skew, parse_skew};
use crate::eval::{ClockGuard, Evaluator, Quarantine, Rule, Summary};
use crate::input::DEFAULT_MAX_LINE_BYTES;
use crate::sink::{self, Output};
use crate::source::{self, FileSource, Source};
use crate::state::Caps;
use crate::state::checkpoint::{AtEnd, Checkpointer, DEFAULT_CHECKPOINT_LINES};
use crate::state::sqlite::{LockWait, SqliteBackend, SqliteError};

/// Evaluate JSON-lines event files (or stdin) and print alerts as JSON lines.
///
/// Exit status: 0 when every line was evaluated without rule errors; 1 when alerts were
/// raised and `--fail-on-alerts` is given; 2 when lines were skipped, a rule failed, or
/// rulehost could not run.
#[derive(Debug, Parser)]
pub struct Eval {
    /// Folder of rule specs (YAML, searched recursively).
    #[arg(long, value_name = "DIR")]
    rules: PathBuf,
    /// JSON-lines files, plain or `.gz`; none or `-` reads stdin.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write alerts here instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Event time field (dotted path), tried in order; default `p_event_time`, then
    /// `timestamp`. Numbers are epoch milliseconds; strings RFC 3339 or `YYYY-MM-DD HH:MM:SS`.
    #[arg(long = "time-field", value_name = "PATH")]
    time_fields: Vec<String>,
    /// Lines longer than this many bytes are skipped and reported.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Exit with 1 when any alert was raised.
    #[arg(long)]
    fail_on_alerts: bool,
    /// Worker threads that parse events and call rules (default: one per core). Alerts are
    /// the same, in the same order, for any number.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Keep alert state (windows, counts, unique values) in this SQLite file across runs,
    /// with how far each input file was read: a run per hourly file then gives the alerts of
    /// one run over all of them. Windows still open at the end stay in the state; `-o`
    /// appends.
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    /// With `--state`: at the end, close every live window and write its alert, as a run
    /// without `--state` does (for the last file of a stream).
    #[arg(long, requires = "state")]
    flush: bool,
    /// With `--state`: wait for another run that is using the state instead of failing.
    #[arg(long, requires = "state")]
    wait: bool,
    /// With `--state`: commit the state at least every N input lines; a killed run is
    /// resumed from its last commit.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHECKPOINT_LINES, requires = "state")]
    checkpoint_lines: u64,
    /// An event more than this far ahead of the event-time clock (the newest event time
    /// seen), or of this machine's clock, does not move it: it is evaluated, windowed at
    /// the clock's time and reported, so one bad timestamp cannot close every window early.
    /// `30m`, `1h`, `2d`, ...; `0` turns the guard off.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_skew)]
    max_clock_skew: Skew,
    /// Most live windows per rule; a match that would open another is a `StateLimit` rule
    /// error.
    #[arg(long, value_name = "N", default_value_t = Caps::default().windows)]
    max_windows: u64,
    /// Most distinct unique values counted per window; past it a match counts without its
    /// value, and is a `StateLimit` rule error.
    #[arg(long, value_name = "N", default_value_t = Caps::default().unique_values)]
    max_unique_values: u64,
    /// Most MiB a rule's live windows may keep (dedup strings, alert fields frozen from
    /// their first match, unique values); past it a match that needs more is a
    /// `StateLimit` rule error.
    #[arg(long, value_name = "MIB", default_value_t = Caps::default().bytes >> 20)]
    max_state_mib: u64,
    #[command(flatten)]
    rule_args: RuleArgs,
}

/// What to do about alerts when choosing the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlertExit {
    Ignore,
    Fail,
}

/// [`Eval`] resolved: no raw flags past this point.
struct Settings {
    rules: PathBuf,
    inputs: Vec<PathBuf>,
    output: Output,
    clock: Clock,
    max_line_bytes: usize,
    alert_exit: AlertExit,
    quarantine: Quarantine,
    threads: usize,
    state: Option<StateSettings>,
    clock_guard: ClockGuard,
    caps: Caps,
}

/// The rules of a `--rules` folder, loaded by [`Eval::run_with`]'s caller.
pub struct LoadedRules {
    /// Rules that loaded, sorted by RuleID.
    pub rules: Vec<Rule>,
    /// Files that did not load, each with its full error.
    pub invalid: Vec<(PathBuf, anyhow::Error)>,
    /// What must live as long as the rules run (the wasm runtime, whose ticker drives
    /// their deadlines).
    pub keep: Box<dyn std::any::Any>,
}

/// `--state` and its options.
struct StateSettings {
    path: PathBuf,
    wait: LockWait,
    at_end: AtEnd,
    every_lines: u64,
}

/// Shows at most this many warnings; the rest are only counted in the summary.
const MAX_WARNINGS: usize = 20;

impl Eval {
    fn settings(&self) -> Settings {
        Settings {
            rules: self.rules.clone(),
            inputs: if self.files.is_empty() {
                vec![PathBuf::from("-")]
            } else {
                self.files.clone()
            },
            output: self.output.clone().map_or(Output::Stdout, Output::File),
            clock: if self.time_fields.is_empty() {
                Clock::default()
            } else {
                Clock::new(&self.time_fields)
            },
            max_line_bytes: self.max_line_bytes,
            alert_exit: if self.fail_on_alerts {
                AlertExit::Fail
            } else {
                AlertExit::Ignore
            },
            quarantine: self.rule_args.quarantine(),
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1),
            state: self.state.as_ref().map(|path| StateSettings {
                path: path.clone(),
                wait: if self.wait {
                    LockWait::Wait
                } else {
                    LockWait::Fail
                },
                at_end: if self.flush {
                    AtEnd::CloseWindows
                } else {
                    AtEnd::KeepWindows
                },
                every_lines: self.checkpoint_lines,
            }),
            clock_guard: ClockGuard::with_skew(self.max_clock_skew.0),
            caps: Caps {
                windows: self.max_windows,
                unique_values: self.max_unique_values,
                bytes: self.max_state_mib.saturating_mul(1 << 20),
            },
        }
    }

    /// Runs the command with the rules of `--rules`, as sandboxed components.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let rule_args = &self.rule_args;
        self.run_with(|dir| {
            // The runtime stays alive with the rules: it drives their deadlines.
            let Some((runtime, set)) = rule_args.load_rules(dir)? else {
                return Ok(None);
            };
            Ok(Some(LoadedRules {
                rules: set.rules.into_iter().map(Into::into).collect(),
                invalid: set.invalid,
                keep: Box::new(runtime),
            }))
        })
    }

    /// Runs the command with the rules `load` makes of the `--rules` folder (`None`: it
    /// refused them and said why): the same input, windows, state and output for any rule
    /// code. `rulehost-native` (`bench/native`) runs native ports through it.
    pub fn run_with(
        &self,
        load: impl FnOnce(&Path) -> anyhow::Result<Option<LoadedRules>>,
    ) -> anyhow::Result<ExitStatus> {
        let settings = self.settings();
        let started = Instant::now();
        let Some(loaded) = load(&settings.rules)? else {
            return Ok(ExitStatus::Error);
        };
        let LoadedRules {
            rules,
            invalid,
            keep: _keep,
        } = loaded;
        if !invalid.is_empty() {
            for (_, err) in &invalid {
                eprintln!("error: {err:#}");
            }
            anyhow::bail!(
                "{} rule spec(s) in `{}` failed to load",
                invalid.len(),
                settings.rules.display()
            );
        }
        let (rules, disabled): (Vec<Rule>, Vec<Rule>) =
            rules.into_iter().partition(|r| r.spec.enabled);
        for rule in &disabled {
            eprintln!(
                "note: rule `{}` is disabled (Enabled: false), skipped",
                rule.spec.rule_id
            );
        }
        if rules.is_empty() {
            anyhow::bail!("no enabled rules in `{}`", settings.rules.display());
        }
        let rule_count = rules.len();

        let mut backend = match &settings.state {
            Some(state) => match SqliteBackend::open(&state.path, state.wait) {
                Ok(backend) => Some(backend),
                Err(busy @ SqliteError::Busy { .. }) => {
                    eprintln!(
                        "error: {busy}\n\nhint: wait for that run to finish, or pass `--wait` \
                         to start when it does"
                    );
                    return Ok(ExitStatus::Error);
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        if let Some(backend) = &backend
            && let Some(recorded) = backend.interrupted()?
            && let Some(note) = sink::recover(&recorded, &settings.output)?
        {
            eprintln!("note: {note}");
        }
        let sink = sink::open(&settings.output, backend.is_some())?;
        let sink_target = sink.target();
        let mut shown = 0usize;
        let warn = Box::new(move |msg: &str| {
            shown += 1;
            if shown <= MAX_WARNINGS {
                eprintln!("warning: {msg}");
            } else if shown == MAX_WARNINGS + 1 {
                eprintln!("warning: further problems are counted in the summary, not shown");
            }
        });
        let mut eval = Evaluator::new(rules, settings.clock.clone(), sink, warn)
            .with_quarantine(settings.quarantine)
            .with_clock_guard(settings.clock_guard)
            .with_caps(settings.caps);
        let mut unreadable = 0u64;
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for path in &settings.inputs {
            match FileSource::open(path, settings.max_line_bytes) {
                Ok(source) => sources.push(Box::new(source)),
                Err(e) => {
                    eprintln!("error: failed to open `{}`: {e}", path.display());
                    unreadable += 1;
                }
            }
        }
        if let (Some(mut backend), Some(state)) = (backend.take(), &settings.state) {
            let (kept, tracked) =
                source::track(sources, &backend, &mut |note| eprintln!("note: {note}"))?;
            sources = kept;
            backend.begin_run(sink_target.as_ref())?;
            let checkpoints =
                Checkpointer::new(Box::new(backend), tracked, state.every_lines, state.at_end);
            let (with_state, resumed) = eval.with_checkpoints(checkpoints)?;
            eval = with_state;
            for (rule_id, windows) in resumed.other_rules {
                eprintln!(
                    "note: the state holds {windows} live window(s) of rule `{rule_id}`, which \
                     this run does not load; they are kept"
                );
            }
            // A line the last run held goes first, where it would have been had that run
            // seen the next line.
            if let Some(held) = resumed.held {
                sources.insert(0, Box::new(held.into_source()));
            }
        }
        let summary = run_with_progress(eval, settings.threads, sources)?;
        print_summary(&summary, rule_count, started.elapsed().as_secs_f64());
        Ok(if summary.has_errors() || unreadable > 0 {
            ExitStatus::Error
        } else if settings.alert_exit == AlertExit::Fail && summary.alerts() > 0 {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        })
    }
}

fn print_summary(summary: &Summary, rules: usize, seconds: f64) {
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    eprintln!(
        "rulehost eval: {} from {} with {} in {seconds:.2} s",
        plural(summary.events, "event"),
        plural(summary.files, "file"),
        plural(rules as u64, "rule"),
    );
    eprintln!(
        "  skipped: {}, {}; {} without a readable time",
        plural(summary.bad_lines, "bad line"),
        plural(summary.blank_lines, "blank line"),
        plural(summary.events_without_time, "event"),
    );
    if summary.events_held > 0 {
        eprintln!(
            "  clock: {} held in the state for the next run: too far ahead of the clock to \
             trust, with no event after it to tell",
            plural(summary.events_held, "event")
        );
    }
    if summary.events_ahead_of_clock > 0 {
        eprintln!(
            "  clock: {} too far ahead of the event-time clock to move it (windowed at the \
             clock's time; each is reported above)",
            plural(summary.events_ahead_of_clock, "event")
        );
    }
    let width = summary
        .rules
        .iter()
        .map(|(id, _)| id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    eprintln!(
        "  {:width$}  {:>8}  {:>6}  {:>7}  {:>11}  {:>10}  {:>8}",
        "RULE", "MATCHES", "ALERTS", "SIGNALS", "RULE ERRORS", "AUX ERRORS", "FILTERED"
    );
    for (id, s) in &summary.rules {
        eprintln!(
            "  {id:width$}  {:>8}  {:>6}  {:>7}  {:>11}  {:>10}  {:>8}",
            s.matches, s.alerts, s.signals, s.rule_errors, s.aux_errors, s.filtered
        );
    }
    if let Some(kept) = summary.kept {
        eprintln!(
            "  state: {} kept for the next run ({} reached their threshold: their alerts are \
             written when the window closes, or with --flush)",
            plural(kept.live, "live window"),
            kept.pending_alerts
        );
    }
    for (id, s) in &summary.rules {
        if !s.failed_calls.is_empty() {
            eprintln!("  failed calls: `{id}`: {}", failed_calls_text(s));
        }
        if s.state_limited > 0 {
            let matches = match s.state_limited {
                1 => "1 match".to_owned(),
                n => format!("{n} matches"),
            };
            eprintln!("  state limits: `{id}`: {matches} hit a cap (`StateLimit` rule errors)");
        }
        if s.path_mismatches > 0 {
            eprintln!(
                "  path mismatches: `{id}`: {} whose fast path disagreed with one call per \
                 function",
                plural(s.path_mismatches, "event")
            );
        }
    }
    for (id, s) in &summary.rules {
        if let Some(at) = &s.quarantined_at {
            let in_flight = match s.discarded {
                0 => String::new(),
                n => format!(
                    " ({} more had been evaluated before the workers stopped; their results \
                     were dropped)",
                    plural(n, "event")
                ),
            };
            eprintln!(
                "  quarantined: `{id}` at `{at}`; {} not evaluated{in_flight}",
                plural(s.skipped, "later event")
            );
        }
    }
}

/// `rule: 3 Timeout, 1 Trap; evaluate-batch: 1 Timeout`.
fn failed_calls_text(stats: &crate::eval::RuleStats) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut last = None;
    for (&(function, kind), &n) in &stats.failed_calls {
        if last == Some(function) {
            if let Some(part) = parts.last_mut() {
                part.push_str(&format!(", {n} {kind}"));
            }
        } else {
            parts.push(format!("{function}: {n} {kind}"));
            last = Some(function);
        }
    }
    parts.join("; ")
}

/// Runs `eval` over `sources`, showing progress on stderr when it is a terminal (events/s,
/// bytes read of the total, alerts so far); nothing otherwise, so captured stderr (tests,
/// CI) is only the summary.
fn run_with_progress(
    eval: Evaluator<'_>,
    threads: usize,
    sources: Vec<Box<dyn Source>>,
) -> std::io::Result<Summary> {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return crate::eval::run_parallel(eval, threads, sources);
    }
    let progress = std::sync::Arc::new(crate::eval::Progress::default());
    let eval = eval.with_progress(progress.clone());
    // The total when every source knows its size (stdin does not).
    let total = sources.iter().map(|s| s.size()).sum();
    let display = crate::progress::Display::start(progress, total);
    let summary = crate::eval::run_parallel(eval, threads, sources);
    display.finish();
    summary
}
