//! `rulehost-native`: `rulehost eval` with the rules compiled in as plain Rust, the baseline
//! of `make bench`.
//!
//! The main type is [`engine::Windows`]. Everything but the rules comes from the `rulehost`
//! library: specs ([`rulehost::spec`]), input ([`rulehost::input::LineReader`]), event time
//! ([`rulehost::clock::Clock`]), windows ([`rulehost::state::AlertState`]), fallbacks
//! ([`rulehost::semantics`]) and the alert record ([`rulehost::eval::AlertRecord`]). The rules
//! are ports of `plugins/rules/*` ([`rules`]), chosen by each spec's `Filename:`. So the
//! output is byte-identical to `rulehost eval`'s, and the time difference is the sandbox.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let rules = rulehost_native::load_rules("rules-tests".as_ref())?;
//! let settings = rulehost_native::pipeline::Settings {
//!     inputs: vec!["demo/databricks-audit-sample.jsonl".into()],
//!     clock: rulehost::clock::Clock::default(),
//!     max_line_bytes: rulehost::input::DEFAULT_MAX_LINE_BYTES,
//!     threads: 1,
//! };
//! let outcome = rulehost_native::pipeline::run(rules, &settings, std::io::stdout())?;
//! eprintln!("{} events", outcome.summary.events);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod engine;
pub mod pipeline;
pub mod rules;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use rulehost::cli::ExitStatus;
use rulehost::clock::Clock;
use rulehost::input::DEFAULT_MAX_LINE_BYTES;
use rulehost::spec::{Spec, find_specs};

use crate::engine::Rule;
use crate::pipeline::{Outcome, Settings};

/// Evaluate JSON-lines files with the native ports of the rules and print alerts exactly as
/// `rulehost eval` does.
#[derive(Debug, Parser)]
#[command(name = "rulehost-native", version, about)]
pub struct Cli {
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
    /// `timestamp`.
    #[arg(long = "time-field", value_name = "PATH")]
    time_fields: Vec<String>,
    /// Lines longer than this many bytes are skipped and reported.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Worker threads that parse and match events; windows and output stay in input order.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

/// Loads the enabled specs under `dir`, each with the native port of its component, in
/// RuleID order (as `rulehost::ruleset::load` orders them).
pub fn load_rules(dir: &Path) -> anyhow::Result<Vec<Rule>> {
    let paths = find_specs(dir)
        .with_context(|| format!("failed to read rule directory `{}`", dir.display()))?;
    let mut rules: Vec<Rule> = Vec::new();
    for path in paths {
        let spec = Spec::load(&path)?;
        let logic = rules::for_component(&spec.filename).with_context(|| {
            format!(
                "rule spec `{}`: no native port of component `{}`",
                path.display(),
                spec.filename
            )
        })?;
        if rules.iter().any(|r| r.spec.rule_id == spec.rule_id) {
            anyhow::bail!(
                "rule spec `{}`: duplicate RuleID `{}`",
                path.display(),
                spec.rule_id
            );
        }
        if spec.enabled {
            rules.push(Rule { spec, logic });
        } else {
            eprintln!(
                "note: rule `{}` is disabled (Enabled: false), skipped",
                spec.rule_id
            );
        }
    }
    if rules.is_empty() {
        anyhow::bail!("no enabled rules in `{}`", dir.display());
    }
    rules.sort_by(|a, b| a.spec.rule_id.cmp(&b.spec.rule_id));
    Ok(rules)
}

/// Runs the command: exit status as `rulehost eval` chooses it.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    let settings = Settings {
        inputs: if cli.files.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            cli.files
        },
        clock: if cli.time_fields.is_empty() {
            Clock::default()
        } else {
            Clock::new(&cli.time_fields)
        },
        max_line_bytes: cli.max_line_bytes,
        threads: cli.threads.max(1),
    };
    let rules = load_rules(&cli.rules)?;
    let rule_count = rules.len();
    let out: Box<dyn Write> = match &cli.output {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| {
                format!("failed to create `{}`", path.display())
            })?))
        }
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    let Outcome {
        summary,
        unreadable,
    } = pipeline::run(rules, &settings, out)?;
    eprintln!(
        "rulehost-native: {} events from {} files with {rule_count} rules on {} threads in {:.2} s; \
         {} alerts, {} bad lines",
        summary.events,
        summary.files,
        settings.threads,
        started.elapsed().as_secs_f64(),
        summary.alerts(),
        summary.bad_lines,
    );
    Ok(if summary.has_errors() || unreadable > 0 {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}
