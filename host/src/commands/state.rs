//! `rulehost state`: show, or clear rules from, the alert state that `eval --state` keeps;
//! or show the state `serve` keeps in Redis.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::ExitStatus;
use crate::clock::format_ms;
use crate::commands::test::Format;
use crate::state::sqlite::{LockWait, SqliteBackend, SqliteError, StateSummary};

/// Show the alert state kept by `eval --state`: rules, live windows, the oldest window, the
/// inputs read; `--clear` deletes a rule's windows. Given `serve`'s Redis
/// (`redis://HOST:PORT/DB`, `rediss://` for TLS, `redis+cluster://HOST:PORT` for a Redis
/// Cluster) and `--state-namespace`: the live windows,
/// each partition's applied offset and the outbox.
#[derive(Debug, Parser)]
pub struct State {
    /// The state file (`eval --state PATH`), or `serve --state URL`.
    #[arg(value_name = "PATH|URL")]
    path: PathBuf,
    /// With a Redis URL: the namespace of `serve`'s keys (its `--group`, or
    /// `--state-namespace`).
    #[arg(long, alias = "group", value_name = "NAME")]
    state_namespace: Option<String>,
    /// With a Redis URL: `serve --state-slots`.
    #[arg(long, value_name = "N", default_value_t = 16)]
    state_slots: u32,
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
        let url = self.path.to_str().filter(|p| {
            [
                "redis://",
                "rediss://",
                "redis+cluster://",
                "rediss+cluster://",
            ]
            .iter()
            .any(|scheme| p.starts_with(scheme))
        });
        if let Some(url) = url {
            return self.run_redis(url);
        }
        if self.state_namespace.is_some() {
            anyhow::bail!("`--state-namespace` is for `serve`'s state in Redis (a `redis://` URL)");
        }
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

impl State {
    /// `serve`'s state in Redis.
    #[cfg(feature = "serve")]
    fn run_redis(&self, url: &str) -> anyhow::Result<ExitStatus> {
        use crate::state::redis::RedisSettings;
        if !self.clear.is_empty() {
            anyhow::bail!("`--clear` works on `eval`'s state file only, not on Redis");
        }
        let Some(namespace) = &self.state_namespace else {
            anyhow::bail!(
                "`rulehost state {}` needs `--state-namespace NAME` (the `serve --group`)",
                crate::state::redis::shown_url(url)
            );
        };
        let mut settings = RedisSettings::new(url, namespace);
        settings.slots = self.state_slots.max(1);
        let summary = crate::state::redis_summary::summary(&settings)?;
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            Format::Text => print_redis(&summary),
        }
        Ok(ExitStatus::Success)
    }

    #[cfg(not(feature = "serve"))]
    fn run_redis(&self, _url: &str) -> anyhow::Result<ExitStatus> {
        anyhow::bail!("this rulehost was built without Redis (cargo feature `serve`)");
    }
}

#[cfg(feature = "serve")]
fn print_redis(s: &crate::state::redis_summary::RedisSummary) {
    println!(
        "state `{}`, namespace `{}` ({} slots)",
        s.url, s.namespace, s.slots
    );
    println!("  sources applied: {}", s.applied.len());
    for (source, offset) in &s.applied {
        match s.clocks.get(source) {
            Some(&clock) => println!(
                "    `{source}`: up to offset {offset}, event-time clock {}",
                format_ms(clock)
            ),
            None => println!("    `{source}`: up to offset {offset}"),
        }
    }
    let o = &s.outbox;
    println!(
        "  outbox: {} record(s); {} not delivered yet, {} delivered but not acknowledged",
        o.entries, o.undelivered, o.unacknowledged
    );
    let windows: u64 = s.rules.iter().map(|r| r.windows).sum();
    let alerted: u64 = s.rules.iter().map(|r| r.alerted).sum();
    println!(
        "  live windows: {windows} in {} rule(s); {alerted} alerted (their `alert_update` is \
         written when they close)",
        s.rules.len()
    );
    if s.rules.is_empty() {
        return;
    }
    let width = rule_column(s.rules.iter().map(|r| r.rule_id.as_str()));
    println!(
        "  {:width$}  {:>7}  {:>7}  {:>7}  {:24}  {:24}",
        "RULE", "WINDOWS", "ALERTED", "EVENTS", "OLDEST WINDOW START", "LAST WINDOW END"
    );
    for r in &s.rules {
        println!(
            "  {:width$}  {:>7}  {:>7}  {:>7}  {:24}  {:24}",
            r.rule_id,
            r.windows,
            r.alerted,
            r.events,
            format_ms(r.oldest_window_ms),
            format_ms(r.last_end_ms)
        );
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
    let width = rule_column(s.rules.iter().map(|r| r.rule_id.as_str()));
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

/// The width of the RULE column: the longest rule id, at least the heading's.
fn rule_column<'a>(ids: impl Iterator<Item = &'a str>) -> usize {
    ids.map(str::len).max().unwrap_or(0).max("RULE".len())
}
