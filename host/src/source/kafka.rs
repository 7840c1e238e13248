//! [`KafkaSource`]: a Kafka topic read as a member of a consumer group (`rulehost serve`).
//!
//! Each message is one event (a JSON line). A batch holds the messages of one partition,
//! in offset order; its source name is `TOPIC/PARTITION` and each line's offset is the
//! message's Kafka offset, so a position shows as `TOPIC/PARTITION:OFFSET`. Offsets are
//! committed only when the caller says so ([`KafkaSource::commit`]): after the batch's
//! matches are applied to the state. Partitions move between the group's members
//! (rebalancing); [`KafkaSource::take_revoked`] tells the caller which ones left it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use rdkafka::consumer::CommitMode;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{Input, Source};
use crate::input::{BatchLine, LineBatch};

/// Where to read and as whom.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// The consumer group (`group.id`).
    pub group: String,
    /// More librdkafka settings (`--kafka-option KEY=VALUE`), applied last.
    pub options: Vec<(String, String)>,
    /// Most messages read in one poll, all partitions' batches together.
    pub max_batch: usize,
    /// How long a batch waits for more messages once it has one.
    pub linger: Duration,
    /// Longer messages are skipped and reported.
    pub max_line: usize,
}

/// Why Kafka could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// Creating the consumer or subscribing failed.
    #[error("failed to consume topic `{topic}` from `{brokers}`")]
    Consumer {
        /// The topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// The cause.
        #[source]
        source: Box<KafkaError>,
    },
    /// Committing offsets failed.
    #[error("failed to commit offsets of topic `{topic}`")]
    Commit {
        /// The topic.
        topic: String,
        /// The cause.
        #[source]
        source: Box<KafkaError>,
    },
}

/// Partition changes seen in the consumer's callbacks.
#[derive(Default)]
struct Changes {
    revoked: Vec<i32>,
    assigned: Vec<i32>,
}

/// The consumer's context: records rebalances for the serve loop, and the consumer lag
/// per partition from librdkafka's statistics (`statistics.interval.ms`).
pub struct ServeContext {
    changes: Mutex<Changes>,
    lag: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for ServeContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.lag.lock().expect("lag");
        lag.clear();
        for topic in statistics.topics.values() {
            for (&partition, p) in &topic.partitions {
                // -1: not known yet; partition -1 is librdkafka's own bookkeeping.
                if partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert(partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for ServeContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut changes = self.changes.lock().expect("changes");
            changes
                .revoked
                .extend(list.elements().iter().map(|e| e.partition()));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let mut changes = self.changes.lock().expect("changes");
            changes
                .assigned
                .extend(list.elements().iter().map(|e| e.partition()));
        }
    }
}

/// A topic read by a consumer group member; see the module docs.
pub struct KafkaSource {
    consumer: BaseConsumer<ServeContext>,
    settings: KafkaSettings,
    name: Arc<str>,
    /// Batches read but not yet handed out.
    ready: std::collections::VecDeque<Input>,
    /// Partitions this member holds now.
    assigned: HashSet<i32>,
    /// Partitions revoked, not yet told ([`KafkaSource::take_revoked`]).
    revoked: Vec<i32>,
    bytes_read: u64,
}

/// While messages keep coming, [`KafkaSource::next_batch`] reads the clock once per this
/// many messages.
const CLOCK_EVERY: usize = 64;

impl KafkaSource {
    /// Joins `settings.group` and subscribes to `settings.topic`. Offsets are committed
    /// only by [`KafkaSource::commit`]; a group with no committed offset starts at the
    /// earliest message.
    pub fn subscribe(settings: KafkaSettings) -> Result<Self, KafkaSourceError> {
        let fail = |source| KafkaSourceError::Consumer {
            topic: settings.topic.clone(),
            brokers: settings.brokers.clone(),
            source: Box::new(source),
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "1000")
            // A consumer queue past `queued.min.messages` or `queued.max.messages.kbytes`
            // (librdkafka counts the whole queue a partition forwards to) stops fetching every
            // partition for this long: the default 1 s let a worker that reads slower than the
            // broker sends run dry mid-stream (polls of 200 ms with nothing, serve_load).
            .set("fetch.queue.backoff.ms", "10");
        for (key, value) in &settings.options {
            config.set(key, value);
        }
        let context = ServeContext {
            changes: Mutex::new(Changes::default()),
            lag: Mutex::new(HashMap::new()),
        };
        let consumer: BaseConsumer<ServeContext> =
            config.create_with_context(context).map_err(fail)?;
        consumer.subscribe(&[&settings.topic]).map_err(fail)?;
        Ok(KafkaSource {
            consumer,
            name: Arc::from(settings.topic.as_str()),
            settings,
            ready: Default::default(),
            assigned: HashSet::new(),
            revoked: Vec::new(),
            bytes_read: 0,
        })
    }

    /// The source name of partition `p`: `TOPIC/p`.
    pub fn partition_name(&self, partition: i32) -> Arc<str> {
        Arc::from(format!("{}/{partition}", self.settings.topic))
    }

    /// The partition of a source name this source gave.
    pub fn partition_of(&self, name: &str) -> Option<i32> {
        name.strip_prefix(self.settings.topic.as_str())?
            .strip_prefix('/')?
            .parse()
            .ok()
    }

    /// Partitions revoked since the last call (their batches not yet handed out were
    /// dropped: the next owner reads them again from the committed offset).
    pub fn take_revoked(&mut self) -> Vec<i32> {
        self.absorb_changes();
        std::mem::take(&mut self.revoked)
    }

    /// Takes in the rebalances the callbacks saw; returns the partitions revoked.
    fn absorb_changes(&mut self) -> Vec<i32> {
        absorb(
            &self.consumer,
            &self.settings.topic,
            &mut self.assigned,
            &mut self.revoked,
            &mut self.ready,
        )
    }

    /// Partitions held now.
    pub fn assigned(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self.assigned.iter().copied().collect();
        out.sort_unstable();
        out
    }

    /// The next batch of one partition, waiting at most `wait` for messages; `None` when
    /// none came.
    pub fn next_batch(&mut self, wait: Duration) -> Option<Input> {
        if let Some(input) = self.ready.pop_front() {
            return Some(input);
        }
        let mut batches: BTreeMap<i32, LineBatch> = BTreeMap::new();
        let started = Instant::now();
        let mut first_at: Option<Instant> = None;
        let mut count = 0usize;
        // The last poll gave a message: poll again without waiting, and read the clock for
        // the deadline only every `CLOCK_EVERY` messages (librdkafka's poll reads it up to
        // three times itself, one fewer without a timeout).
        let mut flowing = false;
        loop {
            if count >= self.settings.max_batch {
                break;
            }
            let timeout = if flowing && !count.is_multiple_of(CLOCK_EVERY) {
                Duration::ZERO
            } else {
                let deadline = match first_at {
                    Some(first) => first + self.settings.linger,
                    None => started + wait,
                };
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if flowing {
                    Duration::ZERO
                } else {
                    deadline - now
                }
            };
            let polled = self.consumer.poll(timeout);
            // A revoke drops what was read of those partitions: a member that gets one back
            // reads it again from the committed offset, and a batch must stay in order.
            let revoked = absorb(
                &self.consumer,
                &self.settings.topic,
                &mut self.assigned,
                &mut self.revoked,
                &mut self.ready,
            );
            for partition in revoked {
                batches.remove(&partition);
            }
            // Only a message keeps the loop from reading the clock: an error does not.
            flowing = false;
            let Some(polled) = polled else {
                continue;
            };
            let message = match polled {
                Ok(message) => message,
                Err(e) => {
                    eprintln!("warning: kafka: {e}");
                    continue;
                }
            };
            flowing = true;
            first_at.get_or_insert_with(Instant::now);
            count += 1;
            // A dropped batch's buffer when one is spare (grown to what a partition's run of
            // messages needed before): a fresh one is faulted in and zeroed by the kernel.
            let batch = batches
                .entry(message.partition())
                .or_insert_with(|| LineBatch::with_capacity(64 << 10, 64));
            let payload = message.payload().unwrap_or_default();
            self.bytes_read += payload.len() as u64;
            let start = batch.bytes.len();
            let too_long = payload.len() > self.settings.max_line;
            if !too_long {
                batch.bytes.extend_from_slice(payload);
            }
            batch.lines.push(BatchLine {
                number: message.offset().max(0) as u64,
                start,
                end: batch.bytes.len(),
                too_long,
            });
        }
        for (partition, batch) in batches {
            if batch.lines.is_empty() {
                continue;
            }
            self.ready.push_back(Input::Lines {
                source: self.partition_name(partition),
                batch,
                max_line: self.settings.max_line,
            });
        }
        self.ready.pop_front()
    }

    /// Commits, per partition, the offset after `last` (the last offset applied), for the
    /// partitions still held. With [`CommitMode::Sync`], when it returns a member that takes
    /// the partition over starts after `last`; with [`CommitMode::Async`] (the serve loop,
    /// batch after batch) the commit is sent in order without waiting for it, and a member
    /// that takes the partition over before it lands applies a batch again, which the
    /// state skips.
    pub fn commit(
        &self,
        applied: &HashMap<i32, u64>,
        mode: CommitMode,
    ) -> Result<(), KafkaSourceError> {
        let mut list = TopicPartitionList::new();
        for (&partition, &last) in applied {
            if !self.assigned.contains(&partition) {
                continue;
            }
            list.add_partition_offset(
                &self.settings.topic,
                partition,
                Offset::Offset(last as i64 + 1),
            )
            .map_err(|source| self.commit_error(source))?;
        }
        if list.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&list, mode)
            .map_err(|source| self.commit_error(source))
    }

    fn commit_error(&self, source: KafkaError) -> KafkaSourceError {
        KafkaSourceError::Commit {
            topic: self.settings.topic.clone(),
            source: Box::new(source),
        }
    }

    /// Messages between the committed offset and the end of each partition this member
    /// holds, as librdkafka's latest statistics say (every second; no request of its own).
    pub fn lag(&self) -> Vec<(i32, i64)> {
        let lag = self.consumer.context().lag.lock().expect("lag");
        let mut out: Vec<(i32, i64)> = lag
            .iter()
            .filter(|(p, _)| self.assigned.contains(p))
            .map(|(&p, &l)| (p, l))
            .collect();
        out.sort_unstable();
        out
    }

    /// Leaves the group (after the last commit), so that the others take its partitions
    /// over at once.
    pub fn close(self) {
        self.consumer.unsubscribe();
        // Serve the callbacks of leaving the group.
        let _ = self.consumer.poll(Duration::from_millis(100));
    }
}

/// Takes in the rebalances `consumer`'s callbacks saw: updates the partitions held, drops
/// batches of revoked ones, and notes them for [`KafkaSource::take_revoked`]; returns them.
fn absorb(
    consumer: &BaseConsumer<ServeContext>,
    topic: &str,
    held: &mut HashSet<i32>,
    log: &mut Vec<i32>,
    ready: &mut std::collections::VecDeque<Input>,
) -> Vec<i32> {
    let (revoked, assigned) = {
        let mut changes = consumer.context().changes.lock().expect("changes");
        (
            std::mem::take(&mut changes.revoked),
            std::mem::take(&mut changes.assigned),
        )
    };
    for p in &revoked {
        held.remove(p);
    }
    held.extend(assigned);
    if !revoked.is_empty() {
        let gone: HashSet<String> = revoked.iter().map(|p| format!("{topic}/{p}")).collect();
        ready.retain(|input| match input {
            Input::Lines { source, .. } => !gone.contains(&**source),
            _ => true,
        });
        log.extend(revoked.iter().copied());
    }
    revoked
}

impl Source for KafkaSource {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Waits for the next batch; a topic never ends.
    fn read(&mut self) -> Option<Input> {
        loop {
            if let Some(input) = self.next_batch(Duration::from_millis(500)) {
                return Some(input);
            }
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::KafkaSink;

    /// Settings for a broker nobody listens on: creating a client does not connect.
    fn settings(options: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings {
            brokers: "127.0.0.1:1".to_owned(),
            topic: "events".to_owned(),
            group: "g".to_owned(),
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            max_batch: 10,
            linger: Duration::from_millis(1),
            max_line: 1 << 20,
        }
    }

    #[test]
    fn tls_and_sasl_settings_are_accepted_by_the_consumer_and_the_producer() {
        // A build of librdkafka without OpenSSL refuses `SSL` and `SASL_SSL` here ("OpenSSL
        // not available at build time"), and SCRAM needs OpenSSL too.
        let mut cases = vec![vec![("security.protocol", "SSL")]];
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            cases.push(vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", "rulehost"),
                ("sasl.password", "secret"),
            ]);
        }
        for options in cases {
            let settings = settings(&options);
            if let Err(e) = KafkaSource::subscribe(settings.clone()) {
                panic!("{options:?}: {e}: {:?}", std::error::Error::source(&e));
            }
            if let Err(e) = KafkaSink::new(&settings.brokers, "alerts", &settings.options) {
                panic!("{options:?}: {e}");
            }
        }
    }

    #[test]
    fn an_unknown_sasl_mechanism_is_refused() {
        let options = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "ROT13"),
        ];
        let Err(e) = KafkaSource::subscribe(settings(&options)) else {
            panic!("`ROT13` was accepted");
        };
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("ROT13"), "{cause}");
    }
}
