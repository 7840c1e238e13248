//! `rulehost serve`: a long-running detection service, one worker of many.
//!
//! The loop, in one thread, is a two-stage pipeline. Each turn it reads what one poll of
//! Kafka gives ([`KafkaSource`]: at most one batch per partition), parses it and calls the
//! rules ([`MatchStage`]) while Redis applies the batches sent the turn before; then it
//! reads Redis' replies to those ([`RedisState::finish`]: one Lua call per batch and hash
//! slot, all pipelined in one round trip; a call that asks for the fields of a window's
//! first match is made again with them), commits their offsets (sent in order without
//! waiting; the last commit waits), and only then sends the new batches
//! ([`RedisState::send`]). So at most one turn's batches are in flight, a partition's
//! batches are applied in order, and a batch's offsets are committed only after it is
//! applied. Before a rebalance's revoked partitions are forgotten, and before a rule set
//! is swapped in (SIGHUP, or a changed rules folder), the batches in flight are applied
//! and committed; SIGTERM stops the loop there too. So are they before a partition new to
//! the worker is evaluated, whose event-time clock is then read from the state (where the
//! apply script keeps it) so that it goes on from the last owner's. On a Redis Cluster the
//! calls of a turn are one transaction per slot, sent and read at once (no overlap). A
//! [`Forwarder`] thread delivers the outbox the state's script appends alerts to;
//! [`Metrics`] are served from another.

pub mod metrics;
pub mod outbox;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::Clock;
use crate::eval::{ClockGuard, MatchBatch, MatchStage, Quarantine, Rule};
use crate::sink::{JsonLines, KafkaSink, Sink};
use crate::source::Input;
use crate::source::kafka::{CommitMode, KafkaSettings, KafkaSource};
use crate::state::redis::{InFlight, RedisSettings, RedisState, RedisStateError};
use metrics::{LoopNumbers, Metrics};
use outbox::Forwarder;

/// `rulehost serve`, resolved from its flags.
pub struct ServeSettings {
    /// The rules folder (watched for changes).
    pub rules: PathBuf,
    /// Where events come from.
    pub kafka: KafkaSettings,
    /// The shared state.
    pub redis: RedisSettings,
    /// `-o`: JSON-lines files the forwarder appends alerts to.
    pub outputs: Vec<PathBuf>,
    /// `--alerts-topic`: a Kafka topic the forwarder produces alerts to.
    pub alerts_topic: Option<String>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Event time fields.
    pub clock: Clock,
    /// Which event times may move a partition's clock (`--max-clock-skew`).
    pub clock_guard: ClockGuard,
    /// When a failing rule is quarantined.
    pub quarantine: Quarantine,
    /// This worker's name in the outbox's consumer group.
    pub consumer: String,
    /// How long an outbox entry read by a worker that died waits before another takes it.
    pub claim_idle: Duration,
    /// How long delivered outbox entries are kept.
    pub retention: Duration,
    /// How often the rules folder is checked for changes (`None`: only on SIGHUP).
    pub watch: Option<Duration>,
}

/// Rules as a loader gives them, and what must live as long as they run.
pub type Loaded = (Vec<Rule>, Box<dyn std::any::Any>);

/// Runs the serve loop until SIGTERM (or SIGINT): drains the batch in hand, commits,
/// delivers what the outbox holds, and returns. `load` loads the rules folder (`None`:
/// refused, and it said why).
pub fn serve(
    settings: ServeSettings,
    mut load: impl FnMut() -> anyhow::Result<Option<Loaded>>,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;

    let Some((rules, mut keep)) = load()? else {
        anyhow::bail!("the rules in `{}` did not load", settings.rules.display());
    };
    let mut fingerprint = folder_fingerprint(&settings.rules);
    let mut stage = new_stage(rules, &settings);

    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = settings.metrics_addr {
        let bound = metrics.serve(addr)?;
        eprintln!("rulehost serve: metrics on http://{bound}/metrics");
    }

    let mut state = connect_redis(&settings.redis, &stop)?;
    let forwarder_stop = Arc::new(AtomicBool::new(false));
    let forwarder = start_forwarder(&settings, forwarder_stop.clone())?;
    let mut source = KafkaSource::subscribe(settings.kafka.clone())?;
    metrics.ready.store(true, Ordering::Relaxed);
    eprintln!(
        "rulehost serve: consuming `{}` as group `{}` ({} rules), state in `{}`",
        settings.kafka.topic,
        settings.kafka.group,
        stage.rule_ids().len(),
        settings.redis.shown_url()
    );

    let mut pipeline = Pipeline::default();
    // The partitions whose clock was read from the state since they were assigned.
    let mut clocks_read: HashSet<Arc<str>> = HashSet::new();
    let mut last_render = Instant::now();
    let mut last_watch = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // What one poll read: at most one batch per partition.
        let mut inputs = Vec::new();
        if let Some(first) = source.next_batch(Duration::from_millis(200)) {
            inputs.push(first);
            while let Some(more) = source.next_batch(Duration::ZERO) {
                inputs.push(more);
            }
        } else {
            // When nothing comes, the events held for their time are decided, all at once
            // (`MatchStage::batch`); one partition per poll left a finished topic's last
            // events waiting a poll each (64 partitions: 13 s).
            for name in stage.quiet_sources(Duration::from_secs(1)) {
                inputs.push(Input::Lines {
                    source: name,
                    batch: Default::default(),
                    max_line: settings.kafka.max_line,
                });
            }
        }
        let revoked = source.take_revoked();
        let changed = settings.watch.is_some_and(|every| {
            last_watch.elapsed() >= every && {
                last_watch = Instant::now();
                let now = folder_fingerprint(&settings.rules);
                now != fingerprint
            }
        });
        let reloading = reload.swap(false, Ordering::Relaxed) || changed;
        // Nothing read before a rebalance, nor evaluated by the old rules, stays in flight.
        if (!revoked.is_empty() || reloading)
            && !pipeline.drain(&mut state, &mut stage, &source, &stop)
        {
            break;
        }
        for partition in revoked {
            pipeline.last_applied.remove(&partition);
            let name = source.partition_name(partition);
            stage.forget(&name);
            state.forget(&name);
            clocks_read.remove(&*name);
        }
        if reloading {
            fingerprint = folder_fingerprint(&settings.rules);
            match load() {
                Ok(Some((rules, kept))) => {
                    stage = new_stage(rules, &settings).taking_over(stage);
                    keep = kept;
                    pipeline.numbers.reloads += 1;
                    eprintln!(
                        "rulehost serve: loaded {} rules from `{}`",
                        stage.rule_ids().len(),
                        settings.rules.display()
                    );
                }
                Ok(None) => {
                    pipeline.numbers.failed_reloads += 1;
                    eprintln!("warning: the new rule set was refused; the old one runs on");
                }
                Err(e) => {
                    pipeline.numbers.failed_reloads += 1;
                    eprintln!(
                        "warning: the new rule set did not load ({e:#}); the old one runs on"
                    );
                }
            }
        }
        // A partition new to this worker (assigned, or the worker started) gets the
        // event-time clock the state kept for it, before its first batch is evaluated:
        // after those in flight are applied, which also moves it.
        let new_sources: Vec<Arc<str>> = inputs
            .iter()
            .filter_map(|input| match input {
                Input::Lines { source: name, .. } if !clocks_read.contains(name) => {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        if !new_sources.is_empty() {
            if !pipeline.drain(&mut state, &mut stage, &source, &stop) {
                break;
            }
            // The clocks the state keeps for them.
            let read = || state.clocks_of(&new_sources);
            let Some(clocks) = retrying(&stop, "the read of the clocks", read) else {
                break;
            };
            for (name, clock) in new_sources.into_iter().zip(clocks) {
                if let Some(clock) = clock {
                    stage.start_clock(name.clone(), clock);
                }
                clocks_read.insert(name);
            }
        }
        // These batches are evaluated while Redis applies those in flight.
        let mut batches = Vec::with_capacity(inputs.len());
        for input in inputs {
            let Input::Lines {
                source: name,
                batch,
                max_line,
            } = input
            else {
                continue;
            };
            let started = Instant::now();
            let matches = stage.batch(name, batch, max_line);
            pipeline.numbers.eval_seconds += started.elapsed().as_secs_f64();
            pipeline.numbers.batches += 1;
            for (position, reason) in &matches.bad {
                eprintln!("warning: `{position}`: skipped: {reason}");
            }
            batches.push(matches);
        }
        // The batches in flight are applied and committed before these are sent, so a
        // partition's batches are applied in order, one round trip after the other.
        if !pipeline.drain(&mut state, &mut stage, &source, &stop) {
            break;
        }
        pipeline.send(&mut state, &stage, batches);
        if last_render.elapsed() >= Duration::from_millis(500) {
            last_render = Instant::now();
            pipeline.numbers.lag = source.lag();
            pipeline.numbers.delivered = forwarder.delivered();
            metrics.update(&stage.counts(), &pipeline.numbers);
        }
    }
    // SIGTERM: the batches in flight are applied (unless Redis fails meanwhile: then they
    // are neither applied nor committed, and read again later).
    pipeline.drain(&mut state, &mut stage, &source, &stop);
    // The commits of the loop were sent without waiting: this one waits for them all.
    if let Err(e) = source.commit(&pipeline.last_applied, CommitMode::Sync) {
        eprintln!("warning: {e}: {}", error_chain(&e));
    }
    eprintln!("rulehost serve: stopping: the last batch is applied and committed");
    source.close();
    forwarder_stop.store(true, Ordering::Relaxed);
    let delivered = forwarder.join();
    let counts = stage.counts();
    eprintln!(
        "rulehost serve: {} events, {} bad lines, {} alerts created, {delivered} records delivered",
        counts.events,
        counts.bad_lines,
        counts.rules.iter().map(|(_, s)| s.alerts).sum::<u64>()
    );
    drop(keep);
    Ok(())
}

/// The loop's second stage: the batches sent to Redis and not yet applied, what was
/// applied, and the loop's numbers.
#[derive(Default)]
struct Pipeline {
    /// The batches sent to Redis whose replies are not read yet.
    in_flight: Option<InFlight>,
    /// Per partition held: the last offset applied to the state.
    last_applied: HashMap<i32, u64>,
    numbers: LoopNumbers,
}

impl Pipeline {
    /// Sends `batches` to Redis (none: nothing is in flight after). Only after
    /// [`Pipeline::drain`]: at most one turn's batches are in flight.
    fn send(&mut self, state: &mut RedisState, stage: &MatchStage, batches: Vec<MatchBatch>) {
        debug_assert!(
            self.in_flight.is_none(),
            "sent before the last turn was drained"
        );
        if !batches.is_empty() {
            let started = Instant::now();
            self.in_flight = Some(state.send(stage, batches));
            self.numbers.redis_seconds += started.elapsed().as_secs_f64();
        }
    }

    /// Applies the batches in flight (while Redis fails, again every half second, unless
    /// stopped) and commits their offsets (sent without waiting). `false`: stopped before
    /// they were applied; nothing of them is committed.
    fn drain(
        &mut self,
        state: &mut RedisState,
        stage: &mut MatchStage,
        source: &KafkaSource,
        stop: &AtomicBool,
    ) -> bool {
        let Some(mut flight) = self.in_flight.take() else {
            return true;
        };
        let numbers = &mut self.numbers;
        let started = Instant::now();
        let applied = retrying(stop, "the batch", || state.finish(stage, &mut flight));
        numbers.redis_seconds += started.elapsed().as_secs_f64();
        let Some(applied) = applied else {
            return false;
        };
        numbers.redis_round_trips = state.round_trips;
        numbers.redis_field_requests = state.field_requests;
        numbers.redis_detail_requests = state.detail_requests;
        numbers.windows_closed += applied.closed;
        for (rule, namespace) in applied.alerts {
            stage.count_created(rule, namespace);
        }
        let mut done = HashMap::new();
        for batch in flight.batches() {
            if let Some(partition) = source.partition_of(&batch.source) {
                // A partition's batches are in order: the last one wins.
                done.insert(partition, batch.last_offset);
            }
        }
        self.last_applied.extend(&done);
        if let Err(e) = source.commit(&done, CommitMode::Async) {
            // The next owner applies the batches again; the state skips them.
            eprintln!("warning: {e}: {}", error_chain(&e));
        }
        true
    }
}

/// `attempt`'s result: while it fails (Redis), it is made again every half second, each
/// failure logged as "retrying `what`"; `None`: stopped first.
fn retrying<T>(
    stop: &AtomicBool,
    what: &str,
    mut attempt: impl FnMut() -> Result<T, RedisStateError>,
) -> Option<T> {
    loop {
        match attempt() {
            Ok(done) => return Some(done),
            Err(e) => {
                eprintln!("warning: {e}: {}; retrying {what}", error_chain(&e));
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn new_stage(rules: Vec<Rule>, settings: &ServeSettings) -> MatchStage {
    let rules = rules.into_iter().filter(|r| r.spec.enabled).collect();
    MatchStage::new(
        rules,
        settings.clock.clone(),
        settings.quarantine,
        Box::new(|w| eprintln!("warning: {w}")),
    )
    .with_clock_guard(settings.clock_guard)
}

/// Connects to Redis, retrying until it answers or the loop is stopped.
fn connect_redis(settings: &RedisSettings, stop: &AtomicBool) -> anyhow::Result<RedisState> {
    loop {
        match RedisState::connect(settings.clone()) {
            Ok(state) => return Ok(state),
            Err(e @ RedisStateError::ClusterNode { .. }) => return Err(e.into()),
            Err(e) if !stop.load(Ordering::Relaxed) => {
                eprintln!("warning: {e}: {}; retrying", error_chain(&e));
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The forwarder's thread.
struct ForwarderThread {
    handle: std::thread::JoinHandle<u64>,
    delivered: Arc<std::sync::atomic::AtomicU64>,
}

impl ForwarderThread {
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn join(self) -> u64 {
        self.handle.join().unwrap_or_default()
    }
}

fn start_forwarder(
    settings: &ServeSettings,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ForwarderThread> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for path in &settings.outputs {
        sinks.push(Box::new(JsonLines::append(path)?));
    }
    if let Some(topic) = &settings.alerts_topic {
        sinks.push(Box::new(KafkaSink::new(
            &settings.kafka.brokers,
            topic,
            &settings.kafka.options,
        )?));
    }
    let mut forwarder = Forwarder::new(
        settings.redis.clone(),
        settings.consumer.clone(),
        sinks,
        settings.claim_idle,
        settings.retention,
    )?;
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = delivered.clone();
    let handle = std::thread::Builder::new()
        .name("forwarder".into())
        .spawn(move || {
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                match forwarder.pump(Duration::from_millis(200)) {
                    // After SIGTERM: deliver what is there, then stop.
                    Ok(0) if stopping => break,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("warning: outbox: {e}: {}; retrying", error_chain(&e));
                        if stopping {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                count.store(forwarder.delivered, Ordering::Relaxed);
            }
            forwarder.delivered
        })?;
    Ok(ForwarderThread { handle, delivered })
}

/// The causes of an error, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push(cause.to_string());
        source = cause.source();
    }
    out.join(": ")
}

/// What tells a changed rules folder: every file's path, length and modification time.
fn folder_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // Links are followed, each folder read once (a link loop ends here).
        if !std::fs::canonicalize(&dir).is_ok_and(|real| seen.insert(real)) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}
