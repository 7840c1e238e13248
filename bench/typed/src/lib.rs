//! `rulehost-typed`: the two seed rules as a user would hand-write them in plain Rust, the
//! ceiling of `make bench` (issue 13).
//!
//! The main type is [`windows::Windows`]. Each line is deserialized into
//! [`event::Event`], a struct of the five values the rules and the clock read (serde over
//! `serde_json`, strings borrowed from the line, everything else skipped but validated);
//! [`rules::evaluate`] applies the rules; the windows count matches exactly as rulehost's
//! do. It shares no code with `rulehost`: no sandbox, no `serde_json::Value` per event, no
//! generic alert record. It writes one short record per alert (rule, dedup, window start,
//! counts) and, with `--check`, compares them with the alerts `rulehost eval` wrote.
//!
//! ```no_run
//! use rulehost_typed::{rules::RULES, windows::Windows};
//! let inputs = ["demo/databricks-audit-sample.jsonl".into()];
//! let mut alerts = 0;
//! rulehost_typed::pipeline::run(&inputs, 2, Windows::new(&RULES), &mut |_| {
//!     alerts += 1;
//!     Ok(())
//! })?;
//! eprintln!("{alerts} alerts");
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

pub mod event;
pub mod pipeline;
pub mod rules;
pub mod windows;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::rules::RULES;
use crate::windows::{Alert, Windows};

/// Evaluate JSON-lines files with the two seed rules, hand-written over typed structs.
#[derive(Debug, Parser)]
#[command(name = "rulehost-typed", version, about)]
pub struct Cli {
    /// JSON-lines files.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Write one record per alert here instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Worker threads that parse and match; windows and output stay in input order.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Alerts written by `rulehost eval` on the same input: exit 1 unless the same
    /// windows alerted (rule, dedup, window start, event and unique counts).
    #[arg(long, value_name = "ALERTS")]
    check: Option<PathBuf>,
}

/// What identifies an alert across rulehost and this detector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    /// `RuleID`.
    pub rule_id: String,
    /// The dedup string.
    pub dedup: String,
    /// The window's start, as rulehost prints it (RFC 3339, UTC).
    pub window_start: String,
    /// Matches counted in the window.
    pub event_count: u64,
    /// Distinct unique values, for a rule with `unique`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_count: Option<u64>,
}

impl AlertKey {
    fn of(alert: &Alert) -> Self {
        AlertKey {
            rule_id: RULES[alert.rule].id.to_owned(),
            dedup: alert.dedup.to_string(),
            window_start: format_ms(alert.start_ms),
            event_count: alert.event_count,
            unique_count: alert.unique_count,
        }
    }
}

/// Epoch ms as RFC 3339 UTC, as rulehost prints times.
fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Runs the command: 0 when every line was read (and `--check` agreed), 1 when the check
/// found a difference, 2 when a line or a file could not be read.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut out: Box<dyn Write> = match &cli.output {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| {
                format!("failed to create `{}`", path.display())
            })?))
        }
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let mut keys = Vec::new();
    let totals = pipeline::run(
        &cli.files,
        cli.threads.max(1),
        Windows::new(&RULES),
        &mut |a| {
            let key = AlertKey::of(a);
            serde_json::to_writer(&mut out, &key)?;
            out.write_all(b"\n")?;
            keys.push(key);
            Ok(())
        },
    )
    .context("failed to evaluate the input")?;
    out.flush().context("failed to write the alerts")?;
    let per_rule = count_per_rule(&keys);
    eprintln!(
        "rulehost-typed: {} events from {} file(s) on {} thread(s) in {:.2} s; alerts: {}",
        totals.events,
        totals.files,
        cli.threads.max(1),
        started.elapsed().as_secs_f64(),
        per_rule
            .iter()
            .map(|(rule, n)| format!("`{rule}` {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if totals.bad_lines + totals.blank_lines > 0 {
        eprintln!(
            "  skipped: {} bad line(s), {} blank line(s)",
            totals.bad_lines, totals.blank_lines
        );
    }
    if let Some(path) = &cli.check
        && !check(path, keys)?
    {
        return Ok(ExitCode::from(1));
    }
    Ok(if totals.bad_lines + totals.unreadable > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn count_per_rule(keys: &[AlertKey]) -> BTreeMap<&str, u64> {
    let mut n: BTreeMap<&str, u64> = RULES.iter().map(|r| (r.id, 0)).collect();
    for k in keys {
        *n.entry(&k.rule_id).or_default() += 1;
    }
    n
}

/// Compares `ours` with the alert records of `rulehost eval` in `path`; prints the counts
/// per rule side by side and, on a difference, the first alerts that differ.
fn check(path: &PathBuf, mut ours: Vec<AlertKey>) -> anyhow::Result<bool> {
    let file = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let mut theirs = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("failed to read `{}`", path.display()))?;
        let record: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("`{}:{}` is not JSON", path.display(), n + 1))?;
        if record["kind"] == "alert" {
            theirs.push(
                AlertKey::deserialize(&record)
                    .with_context(|| format!("`{}:{}`", path.display(), n + 1))?,
            );
        }
    }
    let (mine, rulehost) = (count_per_rule(&ours), count_per_rule(&theirs));
    for (rule, n) in &mine {
        eprintln!(
            "check: `{rule}`: {n} alert(s) here, {} from rulehost",
            rulehost.get(rule).unwrap_or(&0)
        );
    }
    ours.sort();
    theirs.sort();
    if ours == theirs {
        eprintln!("check: the same windows alerted, with the same counts");
        return Ok(true);
    }
    let only = |a: &[AlertKey], b: &[AlertKey]| -> Vec<AlertKey> {
        a.iter()
            .filter(|k| b.binary_search(k).is_err())
            .take(5)
            .cloned()
            .collect()
    };
    for k in only(&ours, &theirs) {
        eprintln!("check: only here: {}", serde_json::to_string(&k)?);
    }
    for k in only(&theirs, &ours) {
        eprintln!("check: only in rulehost's: {}", serde_json::to_string(&k)?);
    }
    eprintln!("error: the alerts differ from `{}`", path.display());
    Ok(false)
}
