//! `rulehost state`: show, or clear rules from, the alert state that `eval --state` keeps.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::ExitStatus;
use crate::clock::format_ms;
use crate::commands::test::Format;
use crate::state::sqlite::{LockWait, SqliteBackend, SqliteError, StateSummary};

/// Show the alert state kept by `eval --state`: rules, live windows, the oldest window, the
/// inputs read; `--clear` deletes a rule's windows.
#[derive(Debug, Parser)]
pub struct State {
    /// The state file (`eval --state PATH`).
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Delete every live window of this rule (repeatable), e.g. after changing its logic.
    /// Waits for no one: fails if a run is using the state.
    #[arg(long, value_name = "RULE_ID")]
    clear: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl State {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let store = if self.clear.is_empty() {
            SqliteBackend::open_read_only(&self.path)?
        } else {
            let mut store = match SqliteBackend::open_existing(&self.path, LockWait::Fail) {
                Ok(store) => store,
                Err(busy @ SqliteError::Busy { .. }) => {
                    eprintln!("error: {busy}\n\nhint: clear rules when no run is using the state");
                    return Ok(ExitStatus::Error);
                }
                Err(e) => return Err(e.into()),
            };
            for rule_id in &self.clear {
                let n = store.clear_rule(rule_id)?;
                eprintln!("cleared {n} live window(s) of rule `{rule_id}`");
            }
            store
        };
        let summary = store.summary()?;
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            Format::Text => print_text(&self.path, &summary),
        }
        Ok(ExitStatus::Success)
    }
}

fn print_text(path: &std::path::Path, s: &StateSummary) {
    let windows: u64 = s.rules.iter().map(|r| r.windows).sum();
    let pending: u64 = s.rules.iter().map(|r| r.pending_alerts).sum();
    println!("state `{}`", path.display());
    println!(
        "  newest event time: {}",
        s.watermark_ms.map_or("none".to_owned(), format_ms)
    );
    println!(
        "  inputs: {} file(s), {} line(s) evaluated",
        s.inputs, s.input_lines
    );
    println!(
        "  last run: {}",
        if s.interrupted {
            "interrupted (the next run with this state resumes it)"
        } else {
            "finished"
        }
    );
    println!(
        "  live windows: {windows} in {} rule(s); {pending} reached their threshold (alert \
         written when the window closes)",
        s.rules.len()
    );
    if s.rules.is_empty() {
        return;
    }
    let width = s
        .rules
        .iter()
        .map(|r| r.rule_id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "  {:width$}  {:>7}  {:>7}  {:24}  {:24}",
        "RULE", "WINDOWS", "PENDING", "OLDEST WINDOW START", "LAST WINDOW END"
    );
    for r in &s.rules {
        println!(
            "  {:width$}  {:>7}  {:>7}  {:24}  {:24}",
            r.rule_id,
            r.windows,
            r.pending_alerts,
            format_ms(r.oldest_window_ms),
            format_ms(r.last_end_ms)
        );
    }
}
