//! [`KafkaSink`]: records to a Kafka topic (`rulehost serve --alerts-topic`), with an
//! idempotent producer, each keyed by its `alert_id` (signals by their rule), so that a
//! topic compacted or deduplicated by key keeps one record per alert and kind.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use super::{Delivery, Record, Sink, SinkMark};

/// Counts failed deliveries, so that [`Sink::sync`] can tell.
struct Context {
    failed: Arc<AtomicU64>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            eprintln!("warning: kafka: an alert was not delivered: {error}");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Records to a Kafka topic; see the module docs.
pub struct KafkaSink {
    producer: ThreadedProducer<Context>,
    topic: String,
    failed: Arc<AtomicU64>,
    failed_at_sync: u64,
    written: u64,
    buf: Vec<u8>,
}

impl KafkaSink {
    /// An idempotent producer to `topic` on `brokers`; `options` are more librdkafka
    /// settings.
    pub fn new(
        brokers: &str,
        topic: &str,
        options: &[(String, String)],
    ) -> Result<Self, KafkaError> {
        let failed = Arc::new(AtomicU64::new(0));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        for (key, value) in options {
            config.set(key, value);
        }
        let producer = config.create_with_context(Context {
            failed: failed.clone(),
        })?;
        Ok(KafkaSink {
            producer,
            topic: topic.to_owned(),
            failed,
            failed_at_sync: 0,
            written: 0,
            buf: Vec::new(),
        })
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, record: &Record<'_>) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, record)?;
        let key = match record {
            Record::Alert(alert) => alert.alert_id.clone(),
            Record::Signal(signal) => signal.rule_id.to_owned(),
        };
        let mut message = BaseRecord::to(&self.topic).key(&key).payload(&self.buf);
        loop {
            match self.producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(io::Error::other(e)),
            }
        }
        self.written += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sync().map(|_| ())
    }

    /// Waits until every record written is acknowledged by the brokers (`acks=all`); an
    /// error if any was not.
    fn sync(&mut self) -> io::Result<SinkMark> {
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(io::Error::other)?;
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > self.failed_at_sync {
            self.failed_at_sync = failed;
            return Err(io::Error::other(format!(
                "kafka topic `{}`: records were not delivered",
                self.topic
            )));
        }
        Ok(SinkMark(self.written))
    }

    fn delivery(&self) -> Delivery {
        Delivery::AtLeastOnce
    }
}
