//! `rulehost eval`: evaluate JSON-lines files and print alerts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;

use crate::cli::ExitStatus;
use crate::clock::Clock;
use crate::commands::{self, LockCheck, RuleArgs};
use crate::eval::{Evaluator, Input, Location, Quarantine, Summary, run_parallel};
use crate::input::{DEFAULT_MAX_LINE_BYTES, LineBatch, LineReader};
use crate::ruleset;

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
    output: Option<PathBuf>,
    clock: Clock,
    max_line_bytes: usize,
    alert_exit: AlertExit,
    quarantine: Quarantine,
    threads: usize,
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
            output: self.output.clone(),
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
        }
    }

    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let settings = self.settings();
        let started = Instant::now();
        let runtime = self.rule_args.runtime()?;
        let set = ruleset::load(&runtime, &settings.rules, &self.rule_args.components)?;
        let lock = self.rule_args.lock_policy();
        if commands::check_lock(lock, &settings.rules, &set.rules) == LockCheck::Refused {
            return Ok(ExitStatus::Error);
        }
        if !set.invalid.is_empty() {
            for (_, err) in &set.invalid {
                eprintln!("error: {err:#}");
            }
            anyhow::bail!(
                "{} rule spec(s) in `{}` failed to load",
                set.invalid.len(),
                settings.rules.display()
            );
        }
        let (rules, disabled): (Vec<_>, Vec<_>) =
            set.rules.into_iter().partition(|r| r.spec.enabled);
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

        let out: Box<dyn Write + Send> = match &settings.output {
            Some(path) => {
                Box::new(BufWriter::new(File::create(path).with_context(|| {
                    format!("failed to create `{}`", path.display())
                })?))
            }
            None => Box::new(BufWriter::new(std::io::stdout())),
        };
        let mut shown = 0usize;
        let warn = Box::new(move |msg: &str| {
            shown += 1;
            if shown <= MAX_WARNINGS {
                eprintln!("warning: {msg}");
            } else if shown == MAX_WARNINGS + 1 {
                eprintln!("warning: further problems are counted in the summary, not shown");
            }
        });
        let eval = Evaluator::new(rules, settings.clock.clone(), out, warn)
            .with_quarantine(settings.quarantine);
        let mut unreadable = 0u64;
        let mut readers = Vec::new();
        for path in &settings.inputs {
            match LineReader::open(path, settings.max_line_bytes) {
                Ok(reader) => readers.push((Arc::<str>::from(path.display().to_string()), reader)),
                Err(e) => {
                    eprintln!("error: failed to open `{}`: {e}", path.display());
                    unreadable += 1;
                }
            }
        }
        let summary = run_parallel(
            eval,
            settings.threads,
            inputs(readers, settings.max_line_bytes),
        )?;
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
    for (id, s) in &summary.rules {
        if let Some(at) = &s.quarantined_at {
            eprintln!(
                "  quarantined: `{id}` at `{at}`; {} not evaluated",
                plural(s.skipped, "later event")
            );
        }
    }
}

/// Lines per [`Input::Lines`] batch: large enough to amortise channels and allocations,
/// small enough to keep every worker busy on short inputs.
const BATCH_LINES: usize = 1024;

/// Every line of every opened file, in order, in batches of [`Input`] for the workers.
fn inputs(readers: Vec<(Arc<str>, LineReader)>, max_line: usize) -> impl Iterator<Item = Input> {
    readers.into_iter().flat_map(move |(file, mut reader)| {
        let mut error = None;
        let mut done = false;
        std::iter::once(Input::FileStarted).chain(std::iter::from_fn(move || {
            if !done {
                let mut batch = LineBatch::default();
                match reader.read_batch(&mut batch, BATCH_LINES) {
                    Ok(end) => done = end,
                    Err(e) => (done, error) = (true, Some(e)),
                }
                if !batch.lines.is_empty() {
                    return Some(Input::Lines {
                        file: file.clone(),
                        batch,
                        max_line,
                    });
                }
            }
            // The lines read before an I/O error go first, then the error.
            error.take().map(|(line, e)| {
                let location = Location {
                    file: file.clone(),
                    line,
                };
                Input::Bad(location, format!("read error, rest of file skipped: {e}"))
            })
        }))
    })
}
