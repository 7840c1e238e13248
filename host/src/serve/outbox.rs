//! [`Forwarder`]: delivers the outbox streams that the state's script appends alerts to.
//!
//! Every worker runs one, all in one Redis consumer group (`rulehost-outbox`), so each entry
//! goes to one of them: it reads new entries (`XREADGROUP`), writes them to its sinks,
//! syncs them (a file's fsync, the Kafka producer's flush) and only then acknowledges them
//! (`XACK`). Entries a worker read but never acknowledged (it was killed) are claimed by
//! another after `claim_idle` (`XAUTOCLAIM`). Delivery is therefore at least once, each
//! record with its stable `alert_id`; the outbox itself holds each alert once. Acknowledged
//! entries are trimmed once older than the retention.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use serde_json::Value as Json;

use crate::alert::{AlertRecord, SignalRecord};
use crate::eval::StoredFields;
use crate::sink::{Record, Sink};
use crate::state::redis::{RedisSettings, RedisStateError};
use crate::state::redis_link::Link;

/// The consumer group of the outbox streams.
pub const OUTBOX_GROUP: &str = "rulehost-outbox";

/// Delivers outbox entries to sinks; see the module docs.
pub struct Forwarder {
    settings: RedisSettings,
    conn: Option<Link>,
    consumer: String,
    sinks: Vec<Box<dyn Sink>>,
    claim_idle: Duration,
    retention: Duration,
    last_claim: Option<Instant>,
    last_trim: Option<Instant>,
    /// Records delivered so far.
    pub delivered: u64,
}

impl Forwarder {
    /// A forwarder named `consumer` (unique per worker) delivering to `sinks`.
    pub fn new(
        settings: RedisSettings,
        consumer: String,
        sinks: Vec<Box<dyn Sink>>,
        claim_idle: Duration,
        retention: Duration,
    ) -> Result<Self, RedisStateError> {
        Ok(Forwarder {
            settings,
            conn: None,
            consumer,
            sinks,
            claim_idle,
            retention,
            last_claim: None,
            last_trim: None,
            delivered: 0,
        })
    }

    fn connection(&mut self) -> Result<&mut Link, RedisStateError> {
        if self.conn.is_none() {
            let mut conn = Link::open(
                &self.settings.url,
                Duration::from_secs(2),
                Duration::from_secs(30),
            )
            .map_err(|e| err(&self.settings, e))?;
            for slot in 0..self.settings.slots {
                let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(self.settings.outbox(slot))
                    .arg(OUTBOX_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query(&mut conn);
                if let Err(e) = created
                    && e.code() != Some("BUSYGROUP")
                {
                    return Err(err(&self.settings, e));
                }
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Delivers what is waiting, waiting at most `block` for new entries; returns how many
    /// records were delivered. On an error nothing unacknowledged is lost: it is read again.
    pub fn pump(&mut self, block: Duration) -> Result<usize, RedisStateError> {
        let result = self.try_pump(block);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn try_pump(&mut self, block: Duration) -> Result<usize, RedisStateError> {
        let mut delivered = 0;
        if self
            .last_claim
            .is_none_or(|t| t.elapsed() >= self.claim_idle / 2)
        {
            self.last_claim = Some(Instant::now());
            let mut claims = Vec::new();
            for slot in 0..self.settings.slots {
                let stream = self.settings.outbox(slot);
                let idle = self.claim_idle.as_millis() as u64;
                let consumer = self.consumer.clone();
                let conn = self.connection()?;
                let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(OUTBOX_GROUP)
                    .arg(&consumer)
                    .arg(idle)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(1000)
                    .query(conn)
                    .map_err(|e| err(&self.settings, e))?;
                claims.push((stream, claimed.claimed));
            }
            delivered += self.deliver(claims)?;
        }
        let streams: Vec<String> = (0..self.settings.slots)
            .map(|s| self.settings.outbox(s))
            .collect();
        let consumer = self.consumer.clone();
        let settings = self.settings.clone();
        let conn = self.connection()?;
        let read = |streams: &[String], block: Option<Duration>| {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(OUTBOX_GROUP)
                .arg(&consumer)
                .arg("COUNT")
                .arg(1000);
            if let Some(block) = block {
                read.arg("BLOCK").arg(block.as_millis() as u64);
            }
            read.arg("STREAMS").arg(streams);
            for _ in streams {
                read.arg(">");
            }
            read
        };
        let mut got = Vec::new();
        if conn.is_cluster() {
            // A command may not span slots: each stream is read on its own, without
            // blocking, and the forwarder sleeps when all were empty.
            for stream in &streams {
                let reply: Option<StreamReadReply> = read(std::slice::from_ref(stream), None)
                    .query(conn)
                    .map_err(|e| err(&settings, e))?;
                got.extend(reply.into_iter().flat_map(|r| r.keys));
            }
            if got.iter().all(|k| k.ids.is_empty()) {
                std::thread::sleep(block.min(Duration::from_millis(100)));
            }
        } else {
            let reply: Option<StreamReadReply> = read(&streams, Some(block))
                .query(conn)
                .map_err(|e| err(&settings, e))?;
            got.extend(reply.into_iter().flat_map(|r| r.keys));
        }
        delivered += self.deliver(got.into_iter().map(|k| (k.key, k.ids)).collect())?;
        if self
            .last_trim
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_trim = Some(Instant::now());
            self.trim()?;
        }
        Ok(delivered)
    }

    /// Writes the entries read of each stream to every sink, syncs the sinks once, then
    /// acknowledges them all in one round trip.
    fn deliver(&mut self, read: Vec<(String, Vec<StreamId>)>) -> Result<usize, RedisStateError> {
        let count: usize = read.iter().map(|(_, entries)| entries.len()).sum();
        if count == 0 {
            return Ok(0);
        }
        let io = |e: std::io::Error| RedisStateError::Reply {
            url: self.settings.shown_url(),
            reply: format!("failed to deliver an outbox entry: {e}"),
        };
        for entry in read.iter().flat_map(|(_, entries)| entries) {
            let fields: HashMap<&str, String> = entry
                .map
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), text(v)?)))
                .collect();
            for sink in &mut self.sinks {
                write_entry(&mut **sink, &fields).map_err(io)?;
            }
        }
        for sink in &mut self.sinks {
            sink.sync().map_err(io)?;
        }
        let mut acks = Vec::new();
        for (stream, entries) in read.iter().filter(|(_, entries)| !entries.is_empty()) {
            let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            let mut ack = redis::cmd("XACK");
            ack.arg(stream).arg(OUTBOX_GROUP).arg(&ids);
            acks.push(ack);
        }
        let conn = self.connection()?;
        conn.query_each(acks).map_err(|e| err(&self.settings, e))?;
        self.delivered += count as u64;
        Ok(count)
    }

    /// Trims acknowledged entries older than the retention from every outbox stream: never
    /// past the oldest entry still pending or not yet read by the group.
    fn trim(&mut self) -> Result<(), RedisStateError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let keep_from = now.saturating_sub(self.retention.as_millis() as u64);
        let settings = self.settings.clone();
        let err = |e| err(&settings, e);
        for slot in 0..self.settings.slots {
            let stream = self.settings.outbox(slot);
            let conn = self.connection()?;
            // The oldest pending entry, if any.
            let pending: Value = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(OUTBOX_GROUP)
                .query(conn)
                .map_err(err)?;
            let oldest_pending = match &pending {
                Value::Array(items) => items.get(1).and_then(text),
                _ => None,
            };
            let groups: Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&stream)
                .query(conn)
                .map_err(err)?;
            let Some(delivered) = last_delivered(&groups) else {
                continue;
            };
            let mut min = id_ms(&delivered);
            if let Some(p) = oldest_pending {
                min = min.min(id_ms(&p));
            }
            let cut = min.min(keep_from);
            let _: Value = redis::cmd("XTRIM")
                .arg(&stream)
                .arg("MINID")
                .arg(format!("{cut}-0"))
                .query(conn)
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The ms part of a stream id (`1700000000000-3`).
fn id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// `last-delivered-id` of the outbox group in an `XINFO GROUPS` reply.
fn last_delivered(reply: &Value) -> Option<String> {
    let Value::Array(groups) = reply else {
        return None;
    };
    for group in groups {
        let pairs: Vec<(String, &Value)> = match group {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|c| Some((text(&c[0])?, c.get(1)?)))
                .collect(),
            Value::Map(items) => items
                .iter()
                .filter_map(|(k, v)| Some((text(k)?, v)))
                .collect(),
            _ => continue,
        };
        let name = pairs
            .iter()
            .find(|(k, _)| k == "name")
            .and_then(|(_, v)| text(v));
        if name.as_deref() == Some(OUTBOX_GROUP) {
            return pairs
                .iter()
                .find(|(k, _)| k == "last-delivered-id")
                .and_then(|(_, v)| text(v));
        }
    }
    None
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Writes one outbox entry as its record.
fn write_entry(sink: &mut dyn Sink, fields: &HashMap<&str, String>) -> std::io::Result<()> {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let num = |k: &str| get(k).parse::<i64>().unwrap_or(0);
    let bad = |what: &str| std::io::Error::other(format!("outbox entry with a bad {what}"));
    if get("k") == "signal" {
        let record: Json = serde_json::from_str(get("j")).map_err(|_| bad("signal"))?;
        let field = |k: &str| record.get(k).and_then(Json::as_str).unwrap_or_default();
        let severity = crate::spec::Severity::parse(field("severity"))
            .map_or("INFO", crate::spec::Severity::as_str);
        let signal = SignalRecord {
            kind: "signal",
            rule_id: field("rule_id"),
            severity,
            event_time: field("event_time").to_owned(),
            event_location: field("event_location").to_owned(),
            event: record.get("event").unwrap_or(&Json::Null),
        };
        return sink.write(&Record::Signal(&signal));
    }
    let stored: StoredFields = serde_json::from_str(get("x")).map_err(|_| bad("fields"))?;
    let kind = match get("k") {
        "alert" => "alert",
        "rule_error" => "rule_error",
        _ => "alert_update",
    };
    let severity = crate::spec::Severity::parse(&stored.severity)
        .map_or("INFO", crate::spec::Severity::as_str);
    let unique_count = match get("u") {
        "" => None,
        u => u.parse().ok(),
    };
    let ms = crate::clock::format_ms;
    let record = AlertRecord {
        kind,
        alert_id: get("a").to_owned(),
        rule_id: get("r"),
        severity,
        title: &stored.title,
        dedup: get("d"),
        first_event_time: ms(num("f")),
        last_event_time: ms(num("l")),
        window_start: ms(num("s")),
        window_end: ms(num("e")),
        created_at: ms(num("cr")),
        event_count: num("c") as u64,
        unique_count,
        threshold: num("t") as u64,
        alert_context: &stored.alert_context,
        description: &stored.description,
        runbook: &stored.runbook,
        reference: &stored.reference,
        tags: &stored.tags,
        reports: &stored.reports,
        destinations: &stored.destinations,
        suppressed: stored.suppressed,
        first_event: get("p").to_owned(),
        error: stored.error.as_deref(),
    };
    sink.write(&Record::Alert(&record))
}

fn err(settings: &RedisSettings, source: redis::RedisError) -> RedisStateError {
    RedisStateError::Redis {
        url: settings.shown_url(),
        source,
    }
}
