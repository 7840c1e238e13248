//! [`RedisSummary`]: what `rulehost state redis://...` shows of the state `rulehost serve`
//! keeps in Redis ([`super::redis`]): the live windows per rule, the offset each source
//! (Kafka partition) is applied up to, and the outbox. It only reads.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{FromRedisValue, Value};
use serde::Serialize;

use super::redis::{RedisSettings, RedisStateError};
use super::redis_link::Link;
use crate::serve::outbox::OUTBOX_GROUP;

/// `serve`'s state in Redis, as `rulehost state` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisSummary {
    /// The server (without a password).
    pub url: String,
    /// The keys' namespace (the group, or `serve --state-namespace`).
    pub namespace: String,
    /// Hash slots read (`serve --state-slots`).
    pub slots: u32,
    /// Per rule with live windows, by `RuleID`.
    pub rules: Vec<RedisRuleSummary>,
    /// Per source (`TOPIC/PARTITION`): the offset of the last message applied; a message
    /// at or before it is skipped if it comes again.
    pub applied: BTreeMap<String, u64>,
    /// Per source: its event-time clock (epoch ms), where the next worker to take it over
    /// starts its clock.
    pub clocks: BTreeMap<String, i64>,
    /// The outbox: records written, and how many are not delivered yet.
    pub outbox: OutboxSummary,
}

/// One rule's live windows in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisRuleSummary {
    /// `RuleID`.
    pub rule_id: String,
    /// Live windows (alerts and rule errors).
    pub windows: u64,
    /// Of them, windows whose alert is written: their `alert_update` follows when they close.
    pub alerted: u64,
    /// Matches counted in them.
    pub events: u64,
    /// Start of the oldest live window, epoch ms.
    pub oldest_window_ms: i64,
    /// End of the window that closes last, epoch ms.
    pub last_end_ms: i64,
}

/// The outbox streams of every slot, together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxSummary {
    /// Records in the streams (delivered ones are trimmed after `--outbox-retention-hours`).
    pub entries: u64,
    /// Records no worker has read yet.
    pub undelivered: u64,
    /// Records read by a worker and not yet acknowledged (not known to be delivered).
    pub unacknowledged: u64,
}

/// Reads the summary of the state `settings` names.
pub fn summary(settings: &RedisSettings) -> Result<RedisSummary, RedisStateError> {
    let fail = |source| RedisStateError::Redis {
        url: settings.shown_url(),
        source,
    };
    let mut conn = Link::open(
        settings.url.as_str(),
        Duration::from_secs(5),
        Duration::from_secs(30),
    )
    .map_err(fail)?;
    let mut rules: BTreeMap<String, RedisRuleSummary> = BTreeMap::new();
    let mut applied: BTreeMap<String, u64> = BTreeMap::new();
    let mut clocks: BTreeMap<String, i64> = BTreeMap::new();
    let mut outbox = OutboxSummary::default();
    for slot in 0..settings.slots {
        let prefix = settings.prefix(slot);
        let hwm: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{prefix}hwm"))
            .query(&mut conn)
            .map_err(fail)?;
        // Each call of a batch's slots records the batch's last offset and the source's
        // clock; a slot a batch did not touch keeps older ones.
        for (field, value) in hwm {
            if let Some(source) = field.strip_prefix("clock:") {
                let Ok(time) = value.parse::<i64>() else {
                    continue;
                };
                let at = clocks.entry(source.to_owned()).or_insert(time);
                *at = (*at).max(time);
            } else if let Ok(offset) = value.parse::<u64>() {
                let at = applied.entry(field).or_default();
                *at = (*at).max(offset);
            }
        }
        read_outbox(&mut conn, &settings.outbox(slot), &mut outbox).map_err(fail)?;
        for window in windows(&mut conn, &prefix).map_err(fail)? {
            let field = |k: &str| window.get(k).map(String::as_str).unwrap_or_default();
            let num = |k: &str| field(k).parse::<i64>().unwrap_or(0);
            let rule = rules
                .entry(field("rule").to_owned())
                .or_insert_with(|| RedisRuleSummary {
                    rule_id: field("rule").to_owned(),
                    windows: 0,
                    alerted: 0,
                    events: 0,
                    oldest_window_ms: i64::MAX,
                    last_end_ms: i64::MIN,
                });
            rule.windows += 1;
            rule.alerted += u64::from(field("alerted") == "1");
            rule.events += num("cnt") as u64;
            rule.oldest_window_ms = rule.oldest_window_ms.min(num("start"));
            rule.last_end_ms = rule.last_end_ms.max(num("end"));
        }
    }
    Ok(RedisSummary {
        url: settings.shown_url(),
        namespace: settings.group.clone(),
        slots: settings.slots,
        rules: rules.into_values().collect(),
        applied,
        clocks,
        outbox,
    })
}

/// The fields of every window hash of a slot (`PREFIX` `w:ID`).
fn windows(conn: &mut Link, prefix: &str) -> redis::RedisResult<Vec<BTreeMap<String, String>>> {
    let pattern = format!("{}w:*", glob_escape(prefix));
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000);
        // On a cluster: the node of the slot's keys.
        let (next, found): (u64, Vec<String>) =
            FromRedisValue::from_redis_value(conn.on_node_of(prefix, &scan)?)?;
        keys.extend(found);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("HGETALL").arg(key);
        }
        let hashes: Vec<BTreeMap<String, String>> = pipe.query(conn)?;
        // A window that expired between the scan and the read is gone.
        out.extend(hashes.into_iter().filter(|h| !h.is_empty()));
    }
    Ok(out)
}

/// Adds a slot's outbox stream to `outbox`.
fn read_outbox(
    conn: &mut Link,
    stream: &str,
    outbox: &mut OutboxSummary,
) -> redis::RedisResult<()> {
    let entries: u64 = redis::cmd("XLEN").arg(stream).query(conn)?;
    outbox.entries += entries;
    if entries == 0 {
        return Ok(());
    }
    let groups: redis::streams::StreamInfoGroupsReply =
        redis::cmd("XINFO").arg("GROUPS").arg(stream).query(conn)?;
    match groups.groups.iter().find(|g| g.name == OUTBOX_GROUP) {
        Some(group) => {
            outbox.unacknowledged += group.pending as u64;
            // Redis 7 counts the records not read yet; before, the records after the last
            // one read are counted here.
            outbox.undelivered += match group.lag {
                Some(lag) => lag as u64,
                None => after(conn, stream, &group.last_delivered_id)?,
            };
        }
        // No worker has read the stream yet.
        None => outbox.undelivered += entries,
    }
    Ok(())
}

/// Records of `stream` after `id`.
fn after(conn: &mut Link, stream: &str, id: &str) -> redis::RedisResult<u64> {
    let ids: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg(format!("({id}"))
        .arg("+")
        .query(conn)?;
    Ok(match ids {
        Value::Array(items) => items.len() as u64,
        _ => 0,
    })
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_of_a_namespace_are_escaped() {
        assert_eq!(
            glob_escape("rulehost:{g*[1]:0}:"),
            "rulehost:{g\\*\\[1\\]:0}:"
        );
    }
}
