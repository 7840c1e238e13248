//! [`RedisState`]: `rulehost serve`'s alert state, shared by every worker of a consumer
//! group, in Redis (or Valkey).
//!
//! A batch of matches of one source (a Kafka partition, [`MatchBatch`]) is applied by a Lua
//! script (`redis_apply.lua`), one call per hash slot the batch touches, all calls of a
//! batch in one pipelined round trip. Each call is atomic: it opens, resets and counts the
//! windows of its slot (unique values exactly, in a set per window), and when a window
//! first reaches its threshold it appends the alert to the slot's outbox stream in the same
//! step; when a window closes (a later match past its end, or the source's event time
//! passing it) an `alert_update` with the final counts follows. It is idempotent: each slot
//! keeps, per source, the offset of the last line it applied, and skips matches at or
//! before it, so a batch applied again after a crash (before its offsets were committed)
//! changes nothing.
//!
//! Keys carry a hash tag per slot (`rulehost:{GROUP:N}:...`), so every key a call touches
//! is in one Redis Cluster slot. Windows expire (`PEXPIRE`) their period plus a grace after
//! their last match, so Redis memory follows the live windows even if nothing closes them.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{Client, Connection, Value};

use crate::eval::{MatchBatch, MatchStage};

/// The apply script.
const APPLY: &str = include_str!("redis_apply.lua");

/// Why Redis could not be used; each names the server.
#[derive(Debug, thiserror::Error)]
pub enum RedisStateError {
    /// Connecting or a command failed.
    #[error("redis `{url}`")]
    Redis {
        /// The server (its URL without a password).
        url: String,
        /// The cause.
        #[source]
        source: redis::RedisError,
    },
    /// The script answered something it never answers.
    #[error("redis `{url}`: unexpected reply from the apply script: {reply}")]
    Reply {
        /// The server.
        url: String,
        /// What came back.
        reply: String,
    },
}

/// How windows and bookkeeping expire, and how keys are spread.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// Namespace of the keys: the consumer group.
    pub group: String,
    /// Hash slots (tags) the windows are spread over.
    pub slots: u32,
    /// A window's key lives this long past its period after its last match.
    pub grace_ms: i64,
    /// How long the per-source offsets and window ends live after their last change.
    pub keep_ms: i64,
}

impl RedisSettings {
    /// Defaults for `url` and `group`: 16 slots, a day of grace, a week of bookkeeping.
    pub fn new(url: &str, group: &str) -> Self {
        RedisSettings {
            url: url.to_owned(),
            group: group.to_owned(),
            slots: 16,
            grace_ms: 24 * 3_600_000,
            keep_ms: 7 * 24 * 3_600_000,
        }
    }

    /// The key prefix of slot `n`: `rulehost:{GROUP:n}:` (braces in the group are replaced,
    /// so that the hash tag is the whole `{...}`).
    pub fn prefix(&self, slot: u32) -> String {
        let group: String = self
            .group
            .chars()
            .map(|c| if c == '{' || c == '}' { '_' } else { c })
            .collect();
        format!("rulehost:{{{group}:{slot}}}:")
    }

    /// The outbox stream of slot `n`.
    pub fn outbox(&self, slot: u32) -> String {
        format!("{}outbox", self.prefix(slot))
    }

    /// The slot of a window id.
    pub fn slot_of(&self, id: &str) -> u32 {
        let head = id.get(..8).unwrap_or("0");
        u32::from_str_radix(head, 16).unwrap_or(0) % self.slots.max(1)
    }

    /// The URL as shown in messages: without a password.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }
}

/// `url` without its password.
pub fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// What applying a batch did.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Records created, by rule index: alerts and `rule_error` records.
    pub alerts: Vec<(usize, crate::state::Namespace)>,
    /// Windows closed.
    pub closed: u64,
    /// Round trips to Redis.
    pub round_trips: u64,
}

/// The alert state in Redis; see the module docs.
pub struct RedisState {
    settings: RedisSettings,
    client: Client,
    conn: Option<Connection>,
    sha: String,
    /// Per (source, slot): the earliest end of the source's windows in the slot, as the
    /// last call said (`None`: no window); a slot not in it is called on the next batch.
    next_end: BTreeMap<(String, u32), Option<i64>>,
    /// Round trips so far.
    pub round_trips: u64,
}

impl RedisState {
    /// Connects to `settings.url` and loads the script.
    pub fn connect(settings: RedisSettings) -> Result<Self, RedisStateError> {
        let client = Client::open(settings.url.as_str()).map_err(|e| error(&settings, e))?;
        let sha = redis::Script::new(APPLY).get_hash().to_owned();
        let mut state = RedisState {
            settings,
            client,
            conn: None,
            sha,
            next_end: BTreeMap::new(),
            round_trips: 0,
        };
        state.connection()?;
        Ok(state)
    }

    /// The settings.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    fn connection(&mut self) -> Result<&mut Connection, RedisStateError> {
        if self.conn.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(Duration::from_secs(2))
                .map_err(|e| error(&self.settings, e))?;
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| error(&self.settings, e))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Forgets what it learned of `source`'s windows (its partition was revoked).
    pub fn forget(&mut self, source: &str) {
        self.next_end.retain(|(s, _), _| s != source);
    }

    /// Applies `batch`: every slot its matches touch, and every slot with windows of its
    /// source that its watermark has passed. Asks `stage` for the fields of matches that
    /// turn out to open windows. On an error nothing is known to be applied: apply the
    /// same batch again (it is idempotent).
    pub fn apply(
        &mut self,
        stage: &mut MatchStage,
        batch: &mut MatchBatch,
    ) -> Result<Applied, RedisStateError> {
        let result = self.try_apply(stage, batch);
        if result.is_err() {
            // The connection may be broken; the next call opens another.
            self.conn = None;
        }
        result
    }

    fn try_apply(
        &mut self,
        stage: &mut MatchStage,
        batch: &mut MatchBatch,
    ) -> Result<Applied, RedisStateError> {
        let source = batch.source.to_string();
        let mut slots: BTreeMap<u32, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, m) in batch.matches.iter().enumerate() {
            let slot = self.settings.slot_of(&batch.keys[m.key].id);
            slots.entry(slot).or_default().0.push(i);
        }
        for (i, signal) in batch.signals.iter().enumerate() {
            let rule_id = &stage.rule_ids()[signal.rule];
            let slot = self.settings.slot_of(&crate::eval::window_id(
                rule_id,
                crate::state::Namespace::Alert,
                "",
            ));
            slots.entry(slot).or_default().1.push(i);
        }
        for slot in 0..self.settings.slots {
            let due = match self.next_end.get(&(source.clone(), slot)) {
                None => true,
                Some(None) => false,
                Some(Some(end)) => batch.watermark.is_some_and(|w| w >= *end),
            };
            if due {
                slots.entry(slot).or_default();
            }
        }
        let mut applied = Applied::default();
        let mut pending: Vec<u32> = slots.keys().copied().collect();
        while !pending.is_empty() {
            let replies = self.call(batch, &slots, &pending)?;
            let mut again = Vec::new();
            for (slot, reply) in pending.iter().zip(replies) {
                let (matches, _) = &slots[slot];
                match parse_reply(&reply) {
                    Some(Reply::Need(local)) => {
                        let global: Vec<usize> = local
                            .iter()
                            .filter_map(|&i| matches.get(i).copied())
                            .collect();
                        stage.supply_fields(batch, &global);
                        again.push(*slot);
                    }
                    Some(Reply::Ok {
                        closed,
                        next_end,
                        ends,
                        alerts,
                    }) => {
                        applied.closed += closed;
                        self.next_end.insert((source.clone(), *slot), next_end);
                        let keys = slot_keys(batch, matches);
                        for (&k, end) in keys.iter().zip(ends) {
                            if end > 0 {
                                stage.learn_end(&batch.keys[k].id, end);
                            }
                        }
                        for local in alerts {
                            if let Some(&k) = keys.get(local) {
                                applied
                                    .alerts
                                    .push((batch.keys[k].rule, batch.keys[k].namespace));
                            }
                        }
                    }
                    None => {
                        return Err(RedisStateError::Reply {
                            url: self.settings.shown_url(),
                            reply: format!("{reply:?}"),
                        });
                    }
                }
            }
            pending = again;
        }
        applied.round_trips = self.round_trips;
        Ok(applied)
    }

    /// One pipelined round trip: the script on each of `which` slots.
    fn call(
        &mut self,
        batch: &MatchBatch,
        slots: &BTreeMap<u32, (Vec<usize>, Vec<usize>)>,
        which: &[u32],
    ) -> Result<Vec<Value>, RedisStateError> {
        let mut pipe = redis::pipe();
        for slot in which {
            let (matches, signals) = &slots[slot];
            let mut cmd = redis::cmd("EVALSHA");
            self.script_args(&mut cmd, batch, *slot, matches, signals);
            pipe.add_command(cmd);
        }
        for attempt in 0..2 {
            self.round_trips += 1;
            let sha = self.sha.clone();
            let conn = self.connection()?;
            match pipe.query::<Vec<Value>>(conn) {
                Ok(replies) => return Ok(replies),
                Err(e) if attempt == 0 && e.code() == Some("NOSCRIPT") => {
                    let loaded: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(APPLY)
                        .query(conn)
                        .map_err(|e| error(&self.settings, e))?;
                    debug_assert_eq!(loaded, sha);
                }
                Err(e) => return Err(error(&self.settings, e)),
            }
        }
        unreachable!("the second attempt returns")
    }

    fn script_args(
        &self,
        cmd: &mut redis::Cmd,
        batch: &MatchBatch,
        slot: u32,
        matches: &[usize],
        signals: &[usize],
    ) {
        let prefix = self.settings.prefix(slot);
        let keys = slot_keys(batch, matches);
        let local: BTreeMap<usize, usize> =
            keys.iter().enumerate().map(|(i, &k)| (k, i + 1)).collect();
        cmd.arg(&self.sha).arg(3 + 2 * keys.len());
        cmd.arg(format!("{prefix}hwm"))
            .arg(format!("{prefix}outbox"))
            .arg(format!("{prefix}ends:{}", batch.source));
        for &k in &keys {
            let id = &batch.keys[k].id;
            cmd.arg(format!("{prefix}w:{id}"))
                .arg(format!("{prefix}u:{id}"));
        }
        cmd.arg(&*batch.source)
            .arg(batch.last_offset)
            .arg(batch.watermark.map(|w| w.to_string()).unwrap_or_default())
            .arg(self.settings.grace_ms)
            .arg(self.settings.keep_ms)
            .arg(&prefix)
            .arg(keys.len())
            .arg(matches.len())
            .arg(signals.len());
        for &k in &keys {
            let key = &batch.keys[k];
            cmd.arg(&key.id)
                .arg(&key.rule_id)
                .arg(format!("{:?}", key.namespace))
                .arg(&key.dedup)
                .arg(key.period_ms)
                .arg(key.threshold)
                .arg(if key.counts_unique { "1" } else { "0" });
        }
        for &i in matches {
            let m = &batch.matches[i];
            let unique = match &m.unique {
                Some(u) => format!("+{u}"),
                None => "-".to_owned(),
            };
            let (aid, fields) = match &m.opens {
                Some(o) => (o.alert_id.as_str(), o.fields.as_str()),
                None => ("", ""),
            };
            cmd.arg(local[&m.key])
                .arg(m.offset)
                .arg(m.time_ms)
                .arg(unique)
                .arg(aid)
                .arg(fields);
        }
        for &i in signals {
            let s = &batch.signals[i];
            cmd.arg(s.offset).arg(&s.record);
        }
    }
}

/// The distinct windows (indices into the batch's keys) of `matches`, in first-use order.
fn slot_keys(batch: &MatchBatch, matches: &[usize]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    matches
        .iter()
        .map(|&i| batch.matches[i].key)
        .filter(|k| seen.insert(*k))
        .collect()
}

fn error(settings: &RedisSettings, source: redis::RedisError) -> RedisStateError {
    RedisStateError::Redis {
        url: settings.shown_url(),
        source,
    }
}

enum Reply {
    Need(Vec<usize>),
    Ok {
        closed: u64,
        next_end: Option<i64>,
        ends: Vec<i64>,
        alerts: Vec<usize>,
    },
}

fn parse_reply(value: &Value) -> Option<Reply> {
    let Value::Array(items) = value else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    };
    let (head, rest) = items.split_first()?;
    match text(head)?.as_str() {
        "need" => Some(Reply::Need(
            rest.iter()
                .map(|v| int(v).map(|i| i as usize))
                .collect::<Option<_>>()?,
        )),
        "ok" => {
            let closed = int(rest.first()?)? as u64;
            let alerted = int(rest.get(1)?)? as usize;
            let next_end = int(rest.get(2)?)?;
            let body = &rest[3..];
            let keys = body.len().checked_sub(alerted)?;
            Some(Reply::Ok {
                closed,
                next_end: (next_end >= 0).then_some(next_end),
                ends: body[..keys].iter().map(int).collect::<Option<_>>()?,
                alerts: body[keys..]
                    .iter()
                    .map(|v| int(v).map(|i| i as usize))
                    .collect::<Option<_>>()?,
            })
        }
        _ => None,
    }
}
