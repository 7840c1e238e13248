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

use redis::{ConnectionLike, Value};

use super::redis_link::Link;

use crate::eval::{MatchBatch, MatchStage};

/// The apply script.
const APPLY: &str = include_str!("redis_apply.lua");

/// Why Redis could not be used; each names the server.
#[derive(Debug, thiserror::Error)]
pub enum RedisStateError {
    /// Connecting or a command failed.
    #[error("redis `{url}`{}", cluster_hint(.source))]
    Redis {
        /// The server (its URL without a password).
        url: String,
        /// The cause.
        #[source]
        source: redis::RedisError,
    },
    /// One node of a Redis Cluster was named as one server.
    #[error(
        "redis `{url}` is a node of a Redis Cluster: name it `redis+cluster://HOST:PORT` \
         (one server holds every slot's keys; a cluster node only its own)"
    )]
    ClusterNode {
        /// The server.
        url: String,
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

/// What to do when one node of a Redis Cluster was named as one server: it answers
/// `MOVED` (or `ASK`) for the keys of the slots it does not own.
fn cluster_hint(e: &redis::RedisError) -> &'static str {
    match e.code() {
        Some("MOVED" | "ASK") => {
            " (it is a node of a Redis Cluster: name it `redis+cluster://HOST:PORT`)"
        }
        _ => "",
    }
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
    /// Whether a fresh batch's matches are sent aggregated, a segment per window and
    /// guessed boundary (see [`RedisState`]); `false`: always match by match.
    pub aggregate: bool,
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
            aggregate: true,
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

/// What applying batches did.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Records created, by rule index: alerts and `rule_error` records.
    pub alerts: Vec<(usize, crate::state::Namespace)>,
    /// Windows closed.
    pub closed: u64,
    /// Round trips to Redis.
    pub round_trips: u64,
}

/// Batches handed to [`RedisState::send`], applied by [`RedisState::finish`].
///
/// They are applied in waves: a wave holds at most one batch of each source, so that a
/// source's batches are applied one after the other, in order, each wave's calls in one
/// pipelined round trip; a call that asks for fields is made again, with them, before the
/// next wave is sent. Only the first wave is sent by [`RedisState::send`].
pub struct InFlight {
    batches: Vec<MatchBatch>,
    /// Batches (indices) of the waves not applied yet, in order.
    waves: std::collections::VecDeque<Vec<usize>>,
    /// The calls of the first wave, when they were sent and their replies are unread.
    sent: Option<Vec<Call>>,
    applied: Applied,
}

impl InFlight {
    /// The batches, in the order given.
    pub fn batches(&self) -> &[MatchBatch] {
        &self.batches
    }

    /// Takes the batches back (once applied).
    pub fn into_batches(self) -> Vec<MatchBatch> {
        self.batches
    }
}

/// One script call: a batch's matches and signals in one slot.
struct Call {
    batch: usize,
    slot: u32,
    matches: Vec<usize>,
    signals: Vec<usize>,
    /// Sent match by match (the script's mode `m`), not aggregated.
    by_match: bool,
}

/// The alert state in Redis; see the module docs.
pub struct RedisState {
    settings: RedisSettings,
    conn: Option<Link>,
    /// A cluster link's replies to the calls sent, read by [`RedisState::receive`].
    replies: Option<Vec<Value>>,
    sha: String,
    /// Per (source, slot): the earliest end of the source's windows in the slot, as the
    /// last call said (`None`: no window); a slot not in it is called on the next batch.
    next_end: BTreeMap<(String, u32), Option<i64>>,
    /// Round trips so far.
    pub round_trips: u64,
    /// Calls made again with the fields they asked for, so far.
    pub field_requests: u64,
    /// Aggregated calls made again match by match, so far.
    pub detail_requests: u64,
}

impl RedisState {
    /// Connects to `settings.url` and loads the script.
    pub fn connect(settings: RedisSettings) -> Result<Self, RedisStateError> {
        let sha = redis::Script::new(APPLY).get_hash().to_owned();
        let mut state = RedisState {
            settings,
            conn: None,
            replies: None,
            sha,
            next_end: BTreeMap::new(),
            round_trips: 0,
            field_requests: 0,
            detail_requests: 0,
        };
        if let Link::One(conn) = state.connection()? {
            // A server that cannot say (`INFO` renamed away) is taken at its word.
            let info: redis::RedisResult<String> = redis::cmd("INFO").arg("cluster").query(conn);
            if info.is_ok_and(|info| info.contains("cluster_enabled:1")) {
                return Err(RedisStateError::ClusterNode {
                    url: state.settings.shown_url(),
                });
            }
        }
        Ok(state)
    }

    /// The settings.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    fn connection(&mut self) -> Result<&mut Link, RedisStateError> {
        if self.conn.is_none() {
            let conn = Link::open(
                &self.settings.url,
                Duration::from_secs(2),
                Duration::from_secs(30),
            )
            .map_err(|e| error(&self.settings, e))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// The event-time clocks of `sources` as the state keeps them (each the newest
    /// watermark applied, by any worker), so that a worker that takes a partition over, or
    /// starts again, guards its clock as the last owner did; one round trip on one server.
    /// Call it with nothing in flight.
    pub fn clocks_of(
        &mut self,
        sources: &[std::sync::Arc<str>],
    ) -> Result<Vec<Option<i64>>, RedisStateError> {
        let slots = self.settings.slots as usize;
        let cmds = sources
            .iter()
            .flat_map(|source| (0..self.settings.slots).map(move |slot| (source, slot)))
            .map(|(source, slot)| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(format!("{}hwm", self.settings.prefix(slot)))
                    .arg(format!("clock:{source}"));
                cmd
            })
            .collect();
        self.round_trips += 1;
        let replies = self
            .connection()?
            .query_each(cmds)
            .map_err(|e| error(&self.settings, e));
        if replies.is_err() {
            self.conn = None;
        }
        let clock = |v: &Value| redis::from_redis_value_ref::<Option<i64>>(v).ok().flatten();
        Ok(replies?
            .chunks(slots.max(1))
            .map(|of_source| of_source.iter().filter_map(clock).max())
            .collect())
    }

    /// Forgets what it learned of `source`'s windows (its partition was revoked).
    pub fn forget(&mut self, source: &str) {
        self.next_end.retain(|(s, _), _| s != source);
    }

    /// Applies `batch`: [`RedisState::send`] then [`RedisState::finish`]. On an error
    /// nothing is known to be applied: apply the same batch again (it is idempotent).
    pub fn apply(
        &mut self,
        stage: &mut MatchStage,
        batch: MatchBatch,
    ) -> (MatchBatch, Result<Applied, RedisStateError>) {
        let mut flight = self.send(stage, vec![batch]);
        let result = self.finish(stage, &mut flight);
        let batch = flight.into_batches().pop().expect("one batch");
        (batch, result)
    }

    /// Starts applying `batches` (each of one source, a source's batches in order): sends
    /// the calls of the first wave (see [`InFlight`]) and returns without reading their
    /// replies, so that the caller can evaluate the next batches meanwhile. A send that
    /// fails is made again by [`RedisState::finish`].
    pub fn send(&mut self, stage: &MatchStage, batches: Vec<MatchBatch>) -> InFlight {
        let mut waves: std::collections::VecDeque<Vec<usize>> = Default::default();
        let mut wave_of: std::collections::HashMap<&str, usize> = Default::default();
        for (i, batch) in batches.iter().enumerate() {
            let wave = wave_of.entry(&*batch.source).or_insert(0);
            if waves.len() <= *wave {
                waves.push_back(Vec::new());
            }
            waves[*wave].push(i);
            *wave += 1;
        }
        let mut flight = InFlight {
            batches,
            waves,
            sent: None,
            applied: Applied::default(),
        };
        if self.send_wave(stage, &mut flight).is_err() {
            self.conn = None;
        }
        flight
    }

    /// Applies what `flight` holds, wave by wave: reads the replies of the wave sent, makes
    /// again (with their fields, asked of `stage`) the calls that asked for them, then
    /// sends and reads the next wave. Returns what was applied. On an error nothing more
    /// is known to be applied: call it again with the same `flight` (it sends its current
    /// wave again; the state skips what it applied already).
    pub fn finish(
        &mut self,
        stage: &mut MatchStage,
        flight: &mut InFlight,
    ) -> Result<Applied, RedisStateError> {
        let result = self.try_finish(stage, flight);
        if result.is_err() {
            // The connection may be broken, and the replies of what was sent are lost.
            self.conn = None;
            self.replies = None;
            flight.sent = None;
        }
        result
    }

    fn try_finish(
        &mut self,
        stage: &mut MatchStage,
        flight: &mut InFlight,
    ) -> Result<Applied, RedisStateError> {
        while !flight.waves.is_empty() {
            if flight.sent.is_none() {
                self.send_wave(stage, flight)?;
            }
            let calls = flight.sent.as_ref().map_or(0, Vec::len);
            let mut replies = self.receive(calls)?;
            if replies.iter().any(is_noscript) {
                // Redis lost its scripts (restarted): load the script, send the wave again
                // (any call of it that did run is skipped by the state the second time).
                self.load_script()?;
                flight.sent = None;
                continue;
            }
            let mut calls = flight.sent.take().expect("a wave was sent");
            loop {
                let mut again = Vec::new();
                for (call, reply) in calls.into_iter().zip(replies) {
                    let batch = &mut flight.batches[call.batch];
                    match parse_reply(&reply) {
                        Some(Reply::Need(local)) => {
                            let global: Vec<usize> = local
                                .iter()
                                .filter_map(|&i| call.matches.get(i).copied())
                                .collect();
                            stage.supply_fields(batch, &global);
                            self.field_requests += 1;
                            again.push(call);
                        }
                        Some(Reply::Detail) => {
                            self.detail_requests += 1;
                            again.push(Call {
                                by_match: true,
                                ..call
                            });
                        }
                        Some(Reply::Ok {
                            closed,
                            next_end,
                            ends,
                            alerts,
                        }) => {
                            flight.applied.closed += closed;
                            self.next_end
                                .insert((batch.source.to_string(), call.slot), next_end);
                            let keys = slot_keys(batch, &call.matches);
                            for (&k, end) in keys.iter().zip(ends) {
                                if end > 0 {
                                    let key = &batch.keys[k];
                                    stage.learn_end(&key.id, end, key.period_ms);
                                }
                            }
                            for local in alerts {
                                if let Some(&k) = keys.get(local) {
                                    flight
                                        .applied
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
                if again.is_empty() {
                    break;
                }
                // Calls that asked for fields, or to be sent match by match, changed
                // nothing: made again before anything later of their sources is sent.
                self.send_calls(&flight.batches, &again)?;
                replies = self.receive(again.len())?;
                if replies.iter().any(is_noscript) {
                    self.load_script()?;
                    self.send_calls(&flight.batches, &again)?;
                    replies = self.receive(again.len())?;
                }
                calls = again;
            }
            flight.waves.pop_front();
        }
        let mut applied = std::mem::take(&mut flight.applied);
        applied.round_trips = self.round_trips;
        Ok(applied)
    }

    /// Plans and sends the calls of `flight`'s first wave: every slot its batches' matches
    /// touch, and every slot with windows of their sources that their watermarks passed.
    fn send_wave(
        &mut self,
        stage: &MatchStage,
        flight: &mut InFlight,
    ) -> Result<(), RedisStateError> {
        flight.sent = None;
        let Some(wave) = flight.waves.front() else {
            return Ok(());
        };
        let mut calls = Vec::new();
        for &b in wave {
            calls.extend(self.plan(stage, b, &flight.batches[b]));
        }
        self.send_calls(&flight.batches, &calls)?;
        flight.sent = Some(calls);
        Ok(())
    }

    /// The calls that apply one batch.
    fn plan(&self, stage: &MatchStage, index: usize, batch: &MatchBatch) -> Vec<Call> {
        let source = batch.source.to_string();
        let mut slots: BTreeMap<u32, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, m) in batch.matches.iter().enumerate() {
            let slot = self.settings.slot_of(&batch.keys[m.key].id);
            slots.entry(slot).or_default().0.push(i);
        }
        if !batch.signals.is_empty() {
            let rule_ids = stage.rule_ids();
            for (i, signal) in batch.signals.iter().enumerate() {
                let slot = self.settings.slot_of(&crate::eval::window_id(
                    &rule_ids[signal.rule],
                    crate::state::Namespace::Alert,
                    "",
                ));
                slots.entry(slot).or_default().1.push(i);
            }
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
        slots
            .into_iter()
            .map(|(slot, (matches, signals))| Call {
                batch: index,
                slot,
                matches: by_window(batch, matches),
                signals,
                by_match: !self.settings.aggregate,
            })
            .collect()
    }

    /// Writes `calls`, pipelined, without reading their replies (on a cluster: sends them
    /// and keeps the replies for [`RedisState::receive`]).
    fn send_calls(
        &mut self,
        batches: &[MatchBatch],
        calls: &[Call],
    ) -> Result<(), RedisStateError> {
        self.replies = None;
        if self.connection()?.is_cluster() {
            return self.call_cluster(batches, calls);
        }
        let packed = self.transaction(batches, calls.iter());
        self.round_trips += 1;
        let conn = match self.connection()? {
            Link::One(conn) => conn,
            Link::Cluster(_) => unreachable!("checked above"),
        };
        conn.send_packed_command(&packed)
            .map_err(|e| error(&self.settings, e))
    }

    /// `calls` as one transaction: Redis runs them in one go, so that their writes reach
    /// the append-only file (fsynced with `appendfsync always`) together, once.
    fn transaction<'c>(
        &self,
        batches: &[MatchBatch],
        calls: impl Iterator<Item = &'c Call>,
    ) -> Vec<u8> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for call in calls {
            let mut cmd = redis::cmd("EVALSHA");
            self.script_args(&mut cmd, &batches[call.batch], call);
            pipe.add_command(cmd);
        }
        pipe.get_packed_pipeline()
    }

    /// On a cluster: one transaction per slot (a transaction may not span slots), each
    /// sent to the node that owns its slot; the replies, in the order of `calls`, are kept.
    fn call_cluster(
        &mut self,
        batches: &[MatchBatch],
        calls: &[Call],
    ) -> Result<(), RedisStateError> {
        let mut replies = vec![Value::Nil; calls.len()];
        let mut slots: Vec<u32> = calls.iter().map(|c| c.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            let of_slot: Vec<usize> = (0..calls.len())
                .filter(|&i| calls[i].slot == slot)
                .collect();
            let packed = self.transaction(batches, of_slot.iter().map(|&i| &calls[i]));
            // `MULTI`'s `OK` and a `QUEUED` per call are skipped: `EXEC`'s array is read.
            // The cluster client answers a `NOSCRIPT` in it as an error: the node lost the
            // script (or never had it); it is loaded on every node and the transaction
            // sent again (a call of it that did run is skipped by the state).
            let mut loaded = false;
            let mut exec = loop {
                self.round_trips += 1;
                let conn = self.connection()?;
                match conn.req_packed_commands(&packed, of_slot.len() + 1, 1) {
                    Err(e) if e.code() == Some("NOSCRIPT") && !loaded => {
                        self.load_script()?;
                        loaded = true;
                    }
                    sent => break sent.map_err(|e| error(&self.settings, e))?,
                }
            };
            match exec.pop() {
                Some(Value::Array(got)) if got.len() == of_slot.len() => {
                    for (i, reply) in of_slot.into_iter().zip(got) {
                        replies[i] = reply;
                    }
                }
                other => {
                    return Err(RedisStateError::Reply {
                        url: self.settings.shown_url(),
                        reply: format!("{other:?}"),
                    });
                }
            }
        }
        self.replies = Some(replies);
        Ok(())
    }

    /// Reads the replies of `n` calls sent by [`RedisState::send_calls`] (an error reply
    /// is a reply, returned as it is).
    fn receive(&mut self, n: usize) -> Result<Vec<Value>, RedisStateError> {
        if let Some(replies) = self.replies.take() {
            debug_assert_eq!(replies.len(), n);
            return Ok(replies);
        }
        let conn = match self.connection()? {
            Link::One(conn) => conn,
            Link::Cluster(_) => {
                return Err(RedisStateError::Reply {
                    url: self.settings.shown_url(),
                    reply: "no replies: the calls were not sent".to_owned(),
                });
            }
        };
        // `MULTI`'s `OK`, a `QUEUED` per call, then `EXEC`'s array of their replies.
        let mut last = Ok(Value::Nil);
        for _ in 0..n + 2 {
            last = conn.recv_response();
            if last.is_err() {
                break;
            }
        }
        let last = last.map_err(|e| error(&self.settings, e))?;
        match last {
            Value::Array(replies) if replies.len() == n => Ok(replies),
            other => Err(RedisStateError::Reply {
                url: self.settings.shown_url(),
                reply: format!("{other:?}"),
            }),
        }
    }

    /// Loads the script (Redis answered `NOSCRIPT`).
    fn load_script(&mut self) -> Result<(), RedisStateError> {
        let conn = self.connection()?;
        let loaded: Result<String, _> = redis::cmd("SCRIPT").arg("LOAD").arg(APPLY).query(conn);
        let loaded = loaded.map_err(|e| error(&self.settings, e))?;
        debug_assert_eq!(loaded, self.sha);
        Ok(())
    }

    fn script_args(&self, cmd: &mut redis::Cmd, batch: &MatchBatch, call: &Call) {
        let prefix = self.settings.prefix(call.slot);
        let keys = slot_keys(batch, &call.matches);
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
            .arg(batch.first_offset)
            .arg(batch.last_offset)
            .arg(batch.watermark.map(|w| w.to_string()).unwrap_or_default())
            .arg(self.settings.grace_ms)
            .arg(self.settings.keep_ms)
            .arg(&prefix)
            .arg(keys.len())
            .arg(call.signals.len())
            .arg(if call.by_match { "m" } else { "a" });
        // The matches are grouped by window, in the order of `keys`.
        let mut rest = &call.matches[..];
        let mut unique = Vec::new();
        for &k in &keys {
            let key = &batch.keys[k];
            let n = rest
                .iter()
                .take_while(|&&i| batch.matches[i].key == k)
                .count();
            let (matches, after) = rest.split_at(n);
            rest = after;
            if !call.by_match {
                aggregated_args(cmd, batch, key, matches);
                continue;
            }
            let openers = matches
                .iter()
                .filter(|&&i| batch.matches[i].opens.is_some())
                .count();
            window_args(cmd, key).arg(n).arg(openers);
            for &i in matches {
                let m = &batch.matches[i];
                cmd.arg(m.offset).arg(m.time_ms);
                if key.counts_unique {
                    unique.clear();
                    match &m.unique {
                        Some(u) => {
                            unique.push(b'+');
                            unique.extend_from_slice(u.as_bytes());
                        }
                        None => unique.push(b'-'),
                    }
                    cmd.arg(&unique[..]);
                }
            }
            for (j, &i) in matches.iter().enumerate() {
                if let Some(o) = &batch.matches[i].opens {
                    cmd.arg(j + 1).arg(&o.alert_id).arg(&o.fields);
                }
            }
        }
        for &i in &call.signals {
            let s = &batch.signals[i];
            cmd.arg(s.offset).arg(&s.record);
        }
    }
}

/// One window's `matches` (indices into the batch's matches, in input order) as the
/// script's mode `a` takes them: segments, each from a match the stage gave fields (it
/// guessed that it opens the window) to the next, the first one continuing the live window
/// when its first match has none; per segment its count, times and the items that find the
/// match crossing the threshold (the distinct unique values, or the first threshold times).
fn aggregated_args(
    cmd: &mut redis::Cmd,
    batch: &MatchBatch,
    key: &crate::eval::WindowRef,
    matches: &[usize],
) {
    struct Segment<'a> {
        first: &'a crate::eval::Match,
        count: u64,
        least: i64,
        greatest: i64,
        /// Mode `a`'s items, flattened.
        items: Vec<Item<'a>>,
        seen: std::collections::HashSet<&'a str, foldhash::fast::RandomState>,
    }
    enum Item<'a> {
        Time(i64),
        Value(&'a str, u64, i64, i64, i64),
    }
    let mut segments: Vec<Segment> = Vec::new();
    for &i in matches {
        let m = &batch.matches[i];
        if m.opens.is_some() || segments.is_empty() {
            segments.push(Segment {
                first: m,
                count: 0,
                least: m.time_ms,
                greatest: m.time_ms,
                items: Vec::new(),
                seen: Default::default(),
            });
        }
        let s = segments.last_mut().expect("pushed above");
        s.count += 1;
        s.least = s.least.min(m.time_ms);
        s.greatest = s.greatest.max(m.time_ms);
        if key.counts_unique {
            if let Some(u) = &m.unique
                && s.seen.insert(u)
            {
                s.items
                    .push(Item::Value(u, s.count, m.time_ms, s.least, s.greatest));
            }
        } else if s.count <= key.threshold {
            s.items.push(Item::Time(m.time_ms));
        }
    }
    window_args(cmd, key).arg(segments.len());
    for s in &segments {
        match &s.first.opens {
            Some(o) => cmd.arg(&o.alert_id).arg(&o.fields),
            None => cmd.arg("").arg(""),
        };
        cmd.arg(s.first.offset)
            .arg(s.first.time_ms)
            .arg(s.count)
            .arg(s.least)
            .arg(s.greatest)
            .arg(s.items.len());
        for item in &s.items {
            match *item {
                Item::Time(t) => cmd.arg(t),
                Item::Value(v, n, t, least, greatest) => {
                    cmd.arg(v).arg(n).arg(t).arg(least).arg(greatest)
                }
            };
        }
    }
}

/// A window's arguments, as both modes of the script read them first.
fn window_args<'c>(cmd: &'c mut redis::Cmd, key: &crate::eval::WindowRef) -> &'c mut redis::Cmd {
    cmd.arg(&key.id)
        .arg(&key.rule_id)
        .arg(namespace_name(key.namespace))
        .arg(&key.dedup)
        .arg(key.period_ms)
        .arg(key.threshold)
        .arg(if key.counts_unique { "1" } else { "0" })
}

/// `namespace` as the script stores it (its `Debug` name).
fn namespace_name(namespace: crate::state::Namespace) -> &'static str {
    match namespace {
        crate::state::Namespace::Alert => "Alert",
        crate::state::Namespace::Error => "Error",
    }
}

/// `matches` (indices into the batch's matches) grouped by window, the windows in the order
/// of their first match, each window's matches in input order.
fn by_window(batch: &MatchBatch, mut matches: Vec<usize>) -> Vec<usize> {
    // Per window (a dense index into the batch's keys): its rank in first-use order.
    let mut first_use = vec![usize::MAX; batch.keys.len()];
    let mut next = 0;
    for &i in &matches {
        let rank = &mut first_use[batch.matches[i].key];
        if *rank == usize::MAX {
            *rank = next;
            next += 1;
        }
    }
    matches.sort_by_key(|&i| first_use[batch.matches[i].key]);
    matches
}

/// Whether `reply` is Redis' `NOSCRIPT` error.
fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// The distinct windows (indices into the batch's keys) of `matches`, in first-use order.
fn slot_keys(batch: &MatchBatch, matches: &[usize]) -> Vec<usize> {
    let mut seen = vec![false; batch.keys.len()];
    matches
        .iter()
        .map(|&i| batch.matches[i].key)
        .filter(|&k| !std::mem::replace(&mut seen[k], true))
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
    /// An aggregated call to send again match by match.
    Detail,
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
        "detail" => Some(Reply::Detail),
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
