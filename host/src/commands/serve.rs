//! `rulehost serve`: a long-running detection service on Kafka and Redis.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::cli::ExitStatus;
use crate::clock::Clock;
use crate::commands::{RuleArgs, Skew, parse_skew};
use crate::eval::ClockGuard;
use crate::input::DEFAULT_MAX_LINE_BYTES;
use crate::serve::{ServeSettings, serve};
use crate::source::kafka::KafkaSettings;
use crate::state::redis::RedisSettings;

/// Run the rules on a Kafka topic as one worker of a consumer group, with the alert state
/// shared in Redis; alerts go out through a Redis outbox to `-o` files and/or a Kafka topic.
///
/// Start N workers with the same `--group`: they share the topic's partitions and one
/// state. An alert is written when its window first reaches the threshold, and an
/// `alert_update` with the final counts when the window closes. SIGTERM finishes the batch
/// in hand, commits and exits 0; SIGHUP (or a changed rules folder) loads the rules again.
#[derive(Debug, Parser)]
pub struct Serve {
    /// Folder of rule specs (YAML, searched recursively).
    #[arg(long, value_name = "DIR")]
    rules: PathBuf,
    /// Kafka bootstrap servers (`host:port,...`), any Kafka-API broker.
    #[arg(long, value_name = "BROKERS")]
    kafka_brokers: String,
    /// The topic of events, one JSON object per message.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// The consumer group; workers with the same group share the partitions and the state.
    #[arg(long, value_name = "GROUP")]
    group: String,
    /// The shared alert state: `redis://HOST:PORT/DB` (Redis or Valkey; `rediss://` for
    /// TLS), or a Redis Cluster: `redis+cluster://HOST:PORT[,HOST:PORT...]` (seed nodes).
    #[arg(long, value_name = "URL")]
    state: String,
    /// The namespace of the state's keys (default: the group). A new `--group` with an old
    /// group's namespace reads the topic again from the start into that state: what was
    /// applied already is skipped (each partition's offsets are kept in the state).
    #[arg(long, value_name = "NAME")]
    state_namespace: Option<String>,
    /// Produce alerts to this Kafka topic (idempotent producer, keyed by `alert_id`).
    #[arg(long, value_name = "TOPIC")]
    alerts_topic: Option<String>,
    /// Append alerts to this JSON-lines file (as this worker delivers them).
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Serve Prometheus metrics at `/metrics` and liveness at `/healthz` on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// More librdkafka settings for the consumer and producer (`security.protocol=SSL`, ...).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = key_value)]
    kafka_options: Vec<(String, String)>,
    /// Most messages read per poll, all partitions' batches together: larger polls mean
    /// fewer Redis round trips per event.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    batch_size: usize,
    /// How long a batch waits for more messages once it has one, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    linger_ms: u64,
    /// Hash slots the windows are spread over (keys `rulehost:{GROUP:N}:...`); every worker
    /// of a group must use the same number.
    #[arg(long, value_name = "N", default_value_t = 16)]
    state_slots: u32,
    /// A window's Redis keys expire this many minutes past its period after its last match
    /// (should a window never be closed by a later event).
    #[arg(long, value_name = "MINUTES", default_value_t = 1440)]
    window_grace_minutes: u64,
    /// An outbox entry read by a worker that died is delivered by another after this long.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    outbox_claim_ms: u64,
    /// Delivered outbox entries are kept this long (hours) before they are trimmed.
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    outbox_retention_hours: u64,
    /// Check the rules folder for changes this often, in seconds (0: only on SIGHUP).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    watch_seconds: u64,
    /// Event time field (dotted path), tried in order; default `p_event_time`, then
    /// `timestamp`.
    #[arg(long = "time-field", value_name = "PATH")]
    time_fields: Vec<String>,
    /// An event more than this far ahead of its partition's event-time clock (the newest
    /// event time of the partition), or of this machine's clock, does not move it: it is
    /// evaluated, windowed at the clock's time and reported, so one bad timestamp cannot
    /// close a partition's windows early. One ahead of the partition's clock waits for the
    /// partition's next event, which moves the clock with it when it is as late.
    /// `30m`, `1h`, `2d`, ...; `0` turns the guard off.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_skew)]
    max_clock_skew: Skew,
    /// Messages longer than this many bytes are skipped and reported.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    #[command(flatten)]
    rule_args: RuleArgs,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

impl Serve {
    fn settings(&self) -> ServeSettings {
        let namespace = self.state_namespace.as_deref().unwrap_or(&self.group);
        let mut redis = RedisSettings::new(&self.state, namespace);
        redis.slots = self.state_slots.max(1);
        redis.grace_ms = (self.window_grace_minutes as i64).saturating_mul(60_000);
        ServeSettings {
            rules: self.rules.clone(),
            kafka: KafkaSettings {
                brokers: self.kafka_brokers.clone(),
                topic: self.topic.clone(),
                group: self.group.clone(),
                options: self.kafka_options.clone(),
                max_batch: self.batch_size.max(1),
                linger: Duration::from_millis(self.linger_ms),
                max_line: self.max_line_bytes,
            },
            redis,
            outputs: self.output.iter().cloned().collect(),
            alerts_topic: self.alerts_topic.clone(),
            metrics_addr: self.metrics_addr,
            clock: if self.time_fields.is_empty() {
                Clock::default()
            } else {
                Clock::new(&self.time_fields)
            },
            clock_guard: ClockGuard::with_skew(self.max_clock_skew.0),
            quarantine: self.rule_args.quarantine(),
            consumer: format!(
                "{}-{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "rulehost".into()),
                std::process::id(),
                SystemClock::nanos()
            ),
            claim_idle: Duration::from_millis(self.outbox_claim_ms.max(1)),
            retention: Duration::from_secs(self.outbox_retention_hours * 3600),
            watch: (self.watch_seconds > 0).then(|| Duration::from_secs(self.watch_seconds)),
        }
    }

    /// Runs until SIGTERM.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        if self.output.is_none() && self.alerts_topic.is_none() {
            anyhow::bail!("`rulehost serve` needs `--alerts-topic TOPIC` or `-o PATH` (or both)");
        }
        let settings = self.settings();
        let rules = self.rules.clone();
        let rule_args = &self.rule_args;
        serve(settings, || {
            let Some((runtime, set)) = rule_args.load_rules(&rules)? else {
                return Ok(None);
            };
            if !set.invalid.is_empty() {
                for (_, err) in &set.invalid {
                    eprintln!("error: {err:#}");
                }
                anyhow::bail!(
                    "{} rule spec(s) in `{}` failed to load",
                    set.invalid.len(),
                    rules.display()
                );
            }
            let rules = set.rules.into_iter().map(Into::into).collect();
            Ok(Some((rules, Box::new(runtime) as Box<dyn std::any::Any>)))
        })?;
        Ok(ExitStatus::Success)
    }
}

/// Nanoseconds of the wall clock, to tell two workers of one host and pid apart.
struct SystemClock;

impl SystemClock {
    fn nanos() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    }
}
