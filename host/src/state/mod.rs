//! [`AlertState`]: Panther's dedup windows, thresholds and unique-value counts, owned by
//! the host so that rules stay pure.
//!
//! A window is keyed by (rule, namespace, dedup string). It opens at the first match with
//! no live window, is fixed (not sliding), and covers `[start, start + period)` in event
//! time. It raises one alert when its match count (or, when the rule defines `unique`, its
//! number of distinct unique values, counted exactly) reaches the threshold; later matches
//! in the window count into that alert. Alert fields come from the window's first match.
//! A window closes when the newest event time seen reaches its end; closed windows are
//! dropped, so memory follows live windows, not input size.
//!
//! A rule cannot make the state grow without bound: [`Caps`] limit each rule's live
//! windows, the unique values of each window and the bytes its windows keep (dedup strings,
//! frozen alert fields, unique values). What a cap refuses is reported by the caller.
//!
//! With `eval --state` the live windows outlive a run: [`AlertState::track_changes`] makes
//! the state remember which windows changed, a [`checkpoint::Checkpointer`] hands just those
//! to a [`backend::StateBackend`] at each checkpoint ([`sqlite`], [`memory`]), and
//! [`AlertState::restore`] rebuilds the state from what it kept.

pub mod backend;
pub mod checkpoint;
mod lock;
pub mod memory;
#[cfg(feature = "serve")]
pub mod redis;
#[cfg(feature = "serve")]
pub mod redis_link;
#[cfg(feature = "serve")]
pub mod redis_summary;
pub mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};

// The hasher of windows and unique values: foldhash (hashbrown's own), seeded per process, as
// the keys come from events. SipHash, the standard one, cost 0.6k instructions per event.
use foldhash::fast::RandomState;
use sha2::{Digest, Sha256};

/// Which stream a window belongs to: rule errors dedup apart from alerts (Panther keys them
/// separately, by error type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// Matches of the rule.
    Alert,
    /// Errors raised by `rule`.
    Error,
}

/// Identifies a window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowKey {
    /// Index of the rule in the rule set.
    pub rule: usize,
    /// Alert or rule-error stream.
    pub namespace: Namespace,
    /// The dedup string (for errors: the error kind).
    pub dedup: String,
}

/// One match, as the state sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<L> {
    /// Event time, epoch ms.
    pub time_ms: i64,
    /// Where the event came from (file and line).
    pub location: L,
    /// The `unique` value, when the rule defines it and it returned one.
    pub unique: Option<String>,
}

/// A window and what it counted.
#[derive(Debug, Clone)]
pub struct Window<L, F> {
    /// Window start (the first match's time), epoch ms.
    pub start_ms: i64,
    /// Exclusive end, epoch ms.
    pub end_ms: i64,
    /// Matches needed (events, or distinct unique values).
    pub threshold: u64,
    /// Fields frozen from the first match.
    pub fields: F,
    /// Location of the first match.
    pub first_location: L,
    /// Earliest and latest event time counted.
    pub first_event_ms: i64,
    /// Latest event time counted.
    pub last_event_ms: i64,
    /// Matches counted.
    pub event_count: u64,
    /// Distinct unique values, when the window counts them.
    pub uniques: Option<HashSet<String, RandomState>>,
    /// Set once the threshold is reached: the order in which alerts were created.
    pub alert_seq: Option<u64>,
    /// Time of the match that reached the threshold.
    pub created_ms: Option<i64>,
    /// Opening order: windows that end at the same time close in this order.
    pub seq: u64,
}

impl<L, F: Weigh> Window<L, F> {
    /// What this window counts against [`Caps::bytes`], with its key's dedup string.
    fn weight(&self, key: &WindowKey) -> u64 {
        let uniques: u64 = self.uniques.iter().flatten().map(|u| u.len() as u64).sum();
        WINDOW_OVERHEAD + key.dedup.len() as u64 + self.fields.weigh() + uniques
    }
}

impl<L, F> Window<L, F> {
    /// What the threshold is compared with.
    pub fn count(&self) -> u64 {
        match &self.uniques {
            Some(set) => set.len() as u64,
            None => self.event_count,
        }
    }

    /// Whether this window raised its alert.
    pub fn alerted(&self) -> bool {
        self.alert_seq.is_some()
    }
}

/// The size of what a window keeps, for [`Caps::bytes`]: the bytes of its strings, not of
/// the allocations around them.
pub trait Weigh {
    /// Bytes held.
    fn weigh(&self) -> u64;
}

impl Weigh for &str {
    fn weigh(&self) -> u64 {
        self.len() as u64
    }
}

/// Per-rule limits on the alert state (`eval --max-windows`, `--max-unique-values`,
/// `--max-state-mib`). Rule-error windows (one per error kind per period) are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Live windows of one rule.
    pub windows: u64,
    /// Distinct unique values counted in one window.
    pub unique_values: u64,
    /// Bytes the live windows of one rule keep: dedup strings, frozen alert fields and
    /// unique values ([`Weigh`]), plus [`WINDOW_OVERHEAD`] per window.
    pub bytes: u64,
}

/// The defaults: far above what a rule needs (a seed rule keeps a few hundred windows of
/// a few hundred bytes), low enough that a rule minting a new dedup string and a 200 KiB
/// alert context per event stops at 64 MiB instead of exhausting the host.
impl Default for Caps {
    fn default() -> Self {
        Caps {
            windows: 100_000,
            unique_values: 10_000,
            bytes: 64 << 20,
        }
    }
}

impl Caps {
    /// No limits.
    pub const UNLIMITED: Caps = Caps {
        windows: u64::MAX,
        unique_values: u64::MAX,
        bytes: u64::MAX,
    };
}

/// Bytes counted per window besides its strings, for the map entries and counters.
pub const WINDOW_OVERHEAD: u64 = 256;

/// Which [`Caps`] limit refused a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapReached {
    /// The rule has as many live windows as allowed: the match would open another.
    Windows(u64),
    /// The window counts as many unique values as allowed: the match's value is not added.
    UniqueValues(u64),
    /// The rule's windows keep as many bytes as allowed.
    Bytes(u64),
}

impl std::fmt::Display for CapReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapReached::Windows(n) => write!(
                f,
                "the rule has {n} live windows, the most allowed (--max-windows): the match was not counted"
            ),
            CapReached::UniqueValues(n) => write!(
                f,
                "the window counts {n} unique values, the most allowed (--max-unique-values): \
                 the match was counted without its unique value"
            ),
            CapReached::Bytes(n) => write!(
                f,
                "the rule's live windows keep {} MiB, the most allowed (--max-state-mib): the \
                 match was not counted",
                n >> 20
            ),
        }
    }
}

/// What [`AlertState::add`] did with a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Counted into the live window.
    Counted,
    /// Counted into the live window, which this hit made reach its threshold: its alert
    /// was created.
    Alerted,
    /// Counted, but its unique value was dropped ([`Caps::unique_values`]).
    CountedWithoutUnique(CapReached),
}

/// What one rule's live windows use, against [`Caps`].
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    windows: u64,
    bytes: u64,
}

/// A closed window that raised an alert.
#[derive(Debug, Clone)]
pub struct Closed<L, F> {
    /// Its key.
    pub key: WindowKey,
    /// Its counts and fields.
    pub window: Window<L, F>,
}

/// All live windows.
#[derive(Debug)]
pub struct AlertState<L, F> {
    windows: HashMap<WindowKey, Window<L, F>, RandomState>,
    /// (end, seq) → key: the close order.
    by_end: BTreeMap<(i64, u64), WindowKey>,
    watermark: Option<i64>,
    next_seq: u64,
    next_alert: u64,
    /// Closed windows that alerted, waiting to be taken.
    ready: Vec<Closed<L, F>>,
    /// Windows opened and closed without reaching their threshold.
    pub expired_without_alert: u64,
    /// Keys whose window was opened, counted into or closed since the last
    /// [`AlertState::take_changed`]; `None` unless [`AlertState::track_changes`] was called.
    changed: Option<HashSet<WindowKey, RandomState>>,
    caps: Caps,
    /// Per rule index: what its alert windows use.
    usage: Vec<Usage>,
}

/// What [`AlertState::restore`] needs besides the windows: the counters that decide the
/// order of later windows and alerts, so that a resumed run orders them as one run would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// The newest event time seen.
    pub watermark: Option<i64>,
    /// The next window's opening order.
    pub next_seq: u64,
    /// The next alert's creation order.
    pub next_alert: u64,
}

impl<L, F> Default for AlertState<L, F> {
    fn default() -> Self {
        AlertState {
            windows: HashMap::default(),
            by_end: BTreeMap::new(),
            watermark: None,
            next_seq: 0,
            next_alert: 0,
            ready: Vec::new(),
            expired_without_alert: 0,
            changed: None,
            caps: Caps::UNLIMITED,
            usage: Vec::new(),
        }
    }
}

impl<L: Clone, F: Weigh> AlertState<L, F> {
    /// Limits what each rule's windows may hold (none by default).
    pub fn set_caps(&mut self, caps: Caps) {
        self.caps = caps;
    }

    /// The caps in force.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    fn usage(&mut self, key: &WindowKey) -> Option<&mut Usage> {
        if key.namespace != Namespace::Alert {
            return None;
        }
        if self.usage.len() <= key.rule {
            self.usage.resize(key.rule + 1, Usage::default());
        }
        Some(&mut self.usage[key.rule])
    }

    /// Whether a window for `key` may open under the caps ([`AlertState::open`] checks the
    /// bytes of its fields again): ask before computing the fields.
    pub fn can_open(&self, key: &WindowKey) -> Result<(), CapReached> {
        if key.namespace != Namespace::Alert {
            return Ok(());
        }
        let usage = self.usage.get(key.rule).copied().unwrap_or_default();
        if usage.windows >= self.caps.windows {
            return Err(CapReached::Windows(self.caps.windows));
        }
        if usage
            .bytes
            .saturating_add(WINDOW_OVERHEAD + key.dedup.len() as u64)
            > self.caps.bytes
        {
            return Err(CapReached::Bytes(self.caps.bytes));
        }
        Ok(())
    }

    /// Moves event time forward to `time_ms` (never back), closing windows that ended.
    pub fn advance(&mut self, time_ms: i64) {
        if self.watermark.is_some_and(|w| w >= time_ms) {
            return;
        }
        self.watermark = Some(time_ms);
        while let Some(entry) = self.by_end.first_entry() {
            if entry.key().0 > time_ms {
                break;
            }
            let key = entry.remove();
            self.close(key);
        }
    }

    /// The newest event time seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The live window for `key`, if any.
    pub fn live(&self, key: &WindowKey) -> Option<&Window<L, F>> {
        self.windows.get(key)
    }

    /// Counts a match into the live window for `key`. Gives the hit back (and changes
    /// nothing) when there is none: the caller then computes the alert fields and calls
    /// [`Self::open`] with it.
    pub fn add(&mut self, key: &WindowKey, mut hit: Hit<L>) -> Result<Added, Hit<L>> {
        let Some(window) = self.windows.get_mut(key) else {
            return Err(hit);
        };
        let mut added = Added::Counted;
        if let (Some(set), Some(value)) = (&window.uniques, &hit.unique)
            && !set.contains(value)
            && key.namespace == Namespace::Alert
        {
            let usage = self.usage.get(key.rule).copied().unwrap_or_default();
            let cap = if set.len() as u64 >= self.caps.unique_values {
                Some(CapReached::UniqueValues(self.caps.unique_values))
            } else if usage.bytes.saturating_add(value.len() as u64) > self.caps.bytes {
                Some(CapReached::Bytes(self.caps.bytes))
            } else {
                None
            };
            match cap {
                Some(cap) => {
                    hit.unique = None;
                    added = Added::CountedWithoutUnique(cap);
                }
                None => self.usage[key.rule].bytes += value.len() as u64,
            }
        }
        if Self::count_into(window, hit, &mut self.next_alert) {
            // A hit whose unique value was dropped counts nothing toward the threshold.
            added = Added::Alerted;
        }
        if let Some(changed) = &mut self.changed {
            changed.insert(key.clone());
        }
        Ok(added)
    }

    /// Replaces the fields of the live window for `key` (its caps usage follows their
    /// bytes, which may pass [`Caps::bytes`]: the window is open already); gives the old
    /// ones back, or `fields` when there is no such window.
    pub fn replace_fields(&mut self, key: &WindowKey, fields: F) -> Result<F, F> {
        let Some(window) = self.windows.get_mut(key) else {
            return Err(fields);
        };
        let (new, old) = (fields.weigh(), window.fields.weigh());
        let old_fields = std::mem::replace(&mut window.fields, fields);
        if let Some(changed) = &mut self.changed {
            changed.insert(key.clone());
        }
        if let Some(usage) = self.usage(key) {
            usage.bytes = usage.bytes.saturating_sub(old).saturating_add(new);
        }
        Ok(old_fields)
    }

    /// Opens a window for `key` at the hit's time and counts the hit. `counts_unique` makes
    /// the window count distinct unique values instead of events. Refused (nothing
    /// changes) when the rule's windows would pass [`Caps::windows`] or [`Caps::bytes`].
    pub fn open(
        &mut self,
        key: WindowKey,
        hit: Hit<L>,
        period_ms: i64,
        threshold: u64,
        counts_unique: bool,
        fields: F,
    ) -> Result<(), CapReached> {
        self.can_open(&key)?;
        let first_unique = match (&hit.unique, counts_unique) {
            (Some(u), true) => u.len() as u64,
            _ => 0,
        };
        let weight = WINDOW_OVERHEAD + key.dedup.len() as u64 + fields.weigh() + first_unique;
        let caps = self.caps;
        if let Some(usage) = self.usage(&key) {
            if usage.bytes.saturating_add(weight) > caps.bytes {
                return Err(CapReached::Bytes(caps.bytes));
            }
            usage.windows += 1;
            usage.bytes += weight;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let start = hit.time_ms;
        let mut window = Window {
            start_ms: start,
            end_ms: start.saturating_add(period_ms.max(1)),
            threshold: threshold.max(1),
            fields,
            first_location: hit.location.clone(),
            first_event_ms: start,
            last_event_ms: start,
            event_count: 0,
            uniques: counts_unique.then(HashSet::default),
            alert_seq: None,
            created_ms: None,
            seq,
        };
        Self::count_into(&mut window, hit, &mut self.next_alert);
        self.by_end.insert((window.end_ms, seq), key.clone());
        if let Some(changed) = &mut self.changed {
            changed.insert(key.clone());
        }
        if let Some(old) = self.windows.insert(key.clone(), window) {
            // Only reachable if a caller opens over a live window; keep its alert anyway.
            self.by_end.remove(&(old.end_ms, old.seq));
            self.release(&key, &old);
            self.finish(None, old);
        }
        Ok(())
    }

    /// Gives back what a window counted against the caps.
    fn release(&mut self, key: &WindowKey, window: &Window<L, F>) {
        let weight = window.weight(key);
        if let Some(usage) = self.usage(key) {
            usage.windows = usage.windows.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(weight);
        }
    }

    /// Counts `hit` into `window`; whether that made it alert.
    fn count_into(window: &mut Window<L, F>, hit: Hit<L>, next_alert: &mut u64) -> bool {
        window.event_count += 1;
        window.first_event_ms = window.first_event_ms.min(hit.time_ms);
        window.last_event_ms = window.last_event_ms.max(hit.time_ms);
        if let (Some(set), Some(value)) = (window.uniques.as_mut(), hit.unique) {
            set.insert(value);
        }
        if window.alert_seq.is_none() && window.count() >= window.threshold {
            window.alert_seq = Some(*next_alert);
            window.created_ms = Some(hit.time_ms);
            *next_alert += 1;
            return true;
        }
        false
    }

    fn close(&mut self, key: WindowKey) {
        if let Some(window) = self.windows.remove(&key) {
            self.release(&key, &window);
            if let Some(changed) = &mut self.changed {
                changed.insert(key.clone());
            }
            self.finish(Some(key), window);
        }
    }

    fn finish(&mut self, key: Option<WindowKey>, window: Window<L, F>) {
        match key {
            Some(key) if window.alerted() => self.ready.push(Closed { key, window }),
            _ => self.expired_without_alert += 1,
        }
    }

    /// Alerts whose windows have closed, in the order they closed.
    pub fn take_closed(&mut self) -> Vec<Closed<L, F>> {
        std::mem::take(&mut self.ready)
    }

    /// Closes every live window (end of input): alerted ones are returned in the order
    /// their alerts were created.
    pub fn close_all(&mut self) -> Vec<Closed<L, F>> {
        let keys: Vec<WindowKey> = std::mem::take(&mut self.by_end).into_values().collect();
        for key in keys {
            self.close(key);
        }
        let mut closed = self.take_closed();
        closed.sort_by_key(|c| c.window.alert_seq);
        closed
    }

    /// Number of live windows.
    pub fn live_windows(&self) -> usize {
        self.windows.len()
    }

    /// Live windows that have reached their threshold: their alerts are written when they
    /// close.
    pub fn pending_alerts(&self) -> usize {
        self.windows.values().filter(|w| w.alerted()).count()
    }

    /// Every live window.
    pub fn windows(&self) -> impl Iterator<Item = (&WindowKey, &Window<L, F>)> {
        self.windows.iter()
    }

    /// Starts remembering which windows change (see [`AlertState::take_changed`]).
    pub fn track_changes(&mut self) {
        self.changed.get_or_insert_with(HashSet::default);
    }

    /// The keys whose window was opened, counted into or closed since the last call: each is
    /// now either live ([`AlertState::live`]) or gone.
    pub fn take_changed(&mut self) -> Vec<WindowKey> {
        self.changed
            .as_mut()
            .map(|c| c.drain().collect())
            .unwrap_or_default()
    }

    /// The counters a later run needs to continue this one ([`AlertState::restore`]).
    pub fn counters(&self) -> Counters {
        Counters {
            watermark: self.watermark,
            next_seq: self.next_seq,
            next_alert: self.next_alert,
        }
    }

    /// A state holding `windows`, continuing from `counters`: what a run that had seen the
    /// same events would hold. (A saved state never holds a window that ends at or before its
    /// watermark: [`AlertState::advance`] closed it.)
    pub fn restore(
        windows: impl IntoIterator<Item = (WindowKey, Window<L, F>)>,
        counters: Counters,
    ) -> Self {
        let mut state = AlertState::default();
        for (key, window) in windows {
            state
                .by_end
                .insert((window.end_ms, window.seq), key.clone());
            let weight = window.weight(&key);
            if let Some(usage) = state.usage(&key) {
                usage.windows += 1;
                usage.bytes += weight;
            }
            state.windows.insert(key, window);
        }
        state.watermark = counters.watermark;
        state.next_seq = counters.next_seq;
        state.next_alert = counters.next_alert;
        state
    }
}

/// A stable alert id: the same rule, namespace, dedup string and window start always give
/// the same id, across runs and thread counts.
pub fn alert_id(rule_id: &str, namespace: Namespace, dedup: &str, start_ms: i64) -> String {
    let mut h = Sha256::new();
    for part in [
        rule_id.as_bytes(),
        format!("{namespace:?}").as_bytes(),
        dedup.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(start_ms.to_le_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const DAY: i64 = 1440 * MIN;

    type State = AlertState<u32, &'static str>;

    fn key(dedup: &str) -> WindowKey {
        WindowKey {
            rule: 0,
            namespace: Namespace::Alert,
            dedup: dedup.into(),
        }
    }

    /// Feeds (time, dedup, unique) matches like the evaluator does; returns alerts as
    /// (dedup, event_count, unique_count, start).
    fn run(
        matches: &[(i64, &str, Option<&str>)],
        period: i64,
        threshold: u64,
        unique: bool,
    ) -> Vec<(String, u64, u64, i64)> {
        let mut state = State::default();
        let mut out = Vec::new();
        for (line, &(t, dedup, u)) in matches.iter().enumerate() {
            state.advance(t);
            out.extend(state.take_closed());
            let hit = Hit {
                time_ms: t,
                location: line as u32 + 1,
                unique: u.map(str::to_owned),
            };
            if let Err(hit) = state.add(&key(dedup), hit) {
                state
                    .open(key(dedup), hit, period, threshold, unique, "fields")
                    .unwrap();
            }
        }
        out.extend(state.close_all());
        out.into_iter()
            .map(|c| {
                (
                    c.key.dedup,
                    c.window.event_count,
                    c.window.count(),
                    c.window.start_ms,
                )
            })
            .collect()
    }

    #[test]
    fn threshold_one_alerts_once_per_window() {
        let got = run(
            &[(0, "a", None), (MIN, "a", None), (61 * MIN, "a", None)],
            60 * MIN,
            1,
            false,
        );
        assert_eq!(
            got,
            vec![("a".into(), 2, 2, 0), ("a".into(), 1, 1, 61 * MIN)]
        );
    }

    #[test]
    fn four_distinct_workspaces_in_a_day_do_not_alert() {
        let m: Vec<_> = ["w1", "w2", "w3", "w4"]
            .iter()
            .enumerate()
            .map(|(i, w)| (i as i64 * 60 * MIN, "u", Some(*w)))
            .collect();
        assert!(run(&m, DAY, 5, true).is_empty());
    }

    #[test]
    fn fifth_distinct_workspace_inside_the_window_alerts_once() {
        let mut m: Vec<_> = ["w1", "w2", "w3", "w4", "w5"]
            .iter()
            .enumerate()
            .map(|(i, w)| (i as i64 * 60 * MIN, "u", Some(*w)))
            .collect();
        m.push((DAY - 1, "u", Some("w6")));
        assert_eq!(run(&m, DAY, 5, true), vec![("u".into(), 6, 6, 0)]);
    }

    #[test]
    fn fifth_workspace_exactly_at_window_end_opens_a_new_window() {
        let mut m: Vec<_> = ["w1", "w2", "w3", "w4"]
            .iter()
            .enumerate()
            .map(|(i, w)| (i as i64 * MIN, "u", Some(*w)))
            .collect();
        m.push((DAY, "u", Some("w5")));
        assert!(run(&m, DAY, 5, true).is_empty());
    }

    #[test]
    fn repeated_unique_value_does_not_count() {
        let m: Vec<_> = (0..10).map(|i| (i * MIN, "u", Some("same"))).collect();
        assert!(run(&m, DAY, 5, true).is_empty());
        // ...but the same events without unique() do reach an event-count threshold.
        let m: Vec<_> = (0..10).map(|i| (i * MIN, "u", None)).collect();
        assert_eq!(run(&m, DAY, 5, false), vec![("u".into(), 10, 10, 0)]);
    }

    #[test]
    fn dedup_keys_are_independent() {
        let m = [
            (0, "a", Some("1")),
            (1, "b", Some("1")),
            (2, "a", Some("2")),
        ];
        assert_eq!(run(&m, DAY, 2, true), vec![("a".into(), 2, 2, 0)]);
    }

    #[test]
    fn expired_windows_are_evicted() {
        let mut state = State::default();
        for i in 0..1000 {
            let t = i * 2 * MIN;
            state.advance(t);
            let hit = Hit {
                time_ms: t,
                location: 0,
                unique: None,
            };
            state
                .open(key(&format!("k{i}")), hit, MIN, 5, false, "f")
                .unwrap();
            assert!(state.live_windows() <= 1);
        }
        assert_eq!(state.expired_without_alert, 999);
    }

    #[test]
    fn a_restored_state_continues_as_one_run_would() {
        // Matches of two keys whose windows cross the split point, with uniques.
        let matches: Vec<(i64, &str, Option<&str>)> = (0..40)
            .map(|i| {
                let dedup = if i % 3 == 0 { "a" } else { "b" };
                (
                    i * 20 * MIN,
                    dedup,
                    Some(["w1", "w2", "w3"][(i % 3) as usize]),
                )
            })
            .collect();
        let feed = |state: &mut State, part: &[(i64, &str, Option<&str>)], out: &mut Vec<_>| {
            for &(t, dedup, u) in part {
                state.advance(t);
                out.extend(state.take_closed());
                let hit = Hit {
                    time_ms: t,
                    location: 0,
                    unique: u.map(str::to_owned),
                };
                if let Err(hit) = state.add(&key(dedup), hit) {
                    state
                        .open(key(dedup), hit, 3 * 60 * MIN, 2, true, "f")
                        .unwrap();
                }
            }
        };
        let summarize = |closed: Vec<Closed<u32, &str>>| -> Vec<_> {
            closed
                .into_iter()
                .map(|c| (c.key.dedup, c.window.start_ms, c.window.count()))
                .collect()
        };
        let mut one = State::default();
        let mut out_one = Vec::new();
        feed(&mut one, &matches, &mut out_one);
        out_one.extend(one.close_all());

        for split in [1, 7, 20, 39] {
            let mut first = State::default();
            first.track_changes();
            let mut out = Vec::new();
            feed(&mut first, &matches[..split], &mut out);
            assert!(!first.take_changed().is_empty());
            let saved: Vec<_> = first
                .windows()
                .map(|(k, w)| (k.clone(), w.clone()))
                .collect();
            let mut second = State::restore(saved, first.counters());
            feed(&mut second, &matches[split..], &mut out);
            out.extend(second.close_all());
            assert_eq!(
                summarize(out),
                summarize(out_one.clone()),
                "split at {split}"
            );
        }
    }

    #[test]
    fn changes_name_opened_counted_and_closed_windows() {
        let mut state = State::default();
        state.track_changes();
        let hit = |t| Hit {
            time_ms: t,
            location: 0,
            unique: None,
        };
        state.open(key("a"), hit(0), MIN, 5, false, "f").unwrap();
        state
            .open(key("b"), hit(0), 10 * MIN, 5, false, "f")
            .unwrap();
        let mut changed = state.take_changed();
        changed.sort_by(|x, y| x.dedup.cmp(&y.dedup));
        assert_eq!(changed, vec![key("a"), key("b")]);
        assert!(state.take_changed().is_empty());
        state.advance(2 * MIN); // closes `a`
        assert!(state.add(&key("b"), hit(2 * MIN)).is_ok());
        let mut changed = state.take_changed();
        changed.sort_by(|x, y| x.dedup.cmp(&y.dedup));
        assert_eq!(changed, vec![key("a"), key("b")]);
        assert!(state.live(&key("a")).is_none());
        assert_eq!(state.live(&key("b")).unwrap().event_count, 2);
    }

    fn hit(t: i64, unique: Option<&str>) -> Hit<u32> {
        Hit {
            time_ms: t,
            location: 0,
            unique: unique.map(str::to_owned),
        }
    }

    #[test]
    fn caps_refuse_windows_values_and_bytes_and_give_them_back_on_close() {
        let mut state = State::default();
        state.set_caps(Caps {
            windows: 2,
            unique_values: 2,
            bytes: 2 * WINDOW_OVERHEAD + 100,
        });
        state
            .open(key("a"), hit(0, Some("1")), MIN, 5, true, "f")
            .unwrap();
        state
            .open(key("b"), hit(0, None), MIN, 5, false, "f")
            .unwrap();
        assert_eq!(state.can_open(&key("c")), Err(CapReached::Windows(2)));
        assert_eq!(
            state.open(key("c"), hit(0, None), MIN, 5, false, "f"),
            Err(CapReached::Windows(2))
        );
        assert_eq!(state.live_windows(), 2);
        // Values: the second distinct one fits, the third is dropped, a repeat is free.
        assert_eq!(state.add(&key("a"), hit(1, Some("2"))), Ok(Added::Counted));
        assert_eq!(
            state.add(&key("a"), hit(2, Some("3"))),
            Ok(Added::CountedWithoutUnique(CapReached::UniqueValues(2)))
        );
        assert_eq!(state.add(&key("a"), hit(3, Some("1"))), Ok(Added::Counted));
        let a = state.live(&key("a")).unwrap();
        assert_eq!((a.event_count, a.count()), (4, 2));
        // Closing gives the room back.
        state.advance(MIN);
        assert_eq!(state.live_windows(), 0);
        assert_eq!(state.can_open(&key("c")), Ok(()));
        // Bytes: a window whose fields pass the budget is refused, and changes nothing.
        let big: &'static str = Box::leak("x".repeat(400).into_boxed_str());
        assert_eq!(
            state.open(key("c"), hit(MIN, None), MIN, 1, false, big),
            Err(CapReached::Bytes(2 * WINDOW_OVERHEAD + 100))
        );
        assert_eq!(state.live_windows(), 0);
        state
            .open(key("c"), hit(MIN, None), MIN, 1, false, "f")
            .unwrap();
        // Rule-error windows are not capped.
        let error = WindowKey {
            namespace: Namespace::Error,
            ..key("Timeout")
        };
        state
            .open(error, hit(MIN, None), MIN, 1, false, big)
            .unwrap();
        assert_eq!(state.live_windows(), 2);
    }

    #[test]
    fn the_hit_that_reaches_the_threshold_says_so_and_fields_replaced_are_weighed_again() {
        let mut state = State::default();
        state.set_caps(Caps {
            windows: 10,
            unique_values: 10,
            bytes: 2 * WINDOW_OVERHEAD + 10,
        });
        state
            .open(key("a"), hit(0, Some("1")), MIN, 3, true, "f")
            .unwrap();
        assert_eq!(state.add(&key("a"), hit(1, Some("1"))), Ok(Added::Counted));
        assert_eq!(state.add(&key("a"), hit(2, Some("2"))), Ok(Added::Counted));
        assert_eq!(state.add(&key("a"), hit(3, Some("3"))), Ok(Added::Alerted));
        assert_eq!(state.add(&key("a"), hit(4, Some("4"))), Ok(Added::Counted));
        // Fields that weigh more are kept (the window is open), and counted: the next
        // window does not fit.
        let bigger: &'static str = Box::leak("x".repeat(40).into_boxed_str());
        assert_eq!(state.replace_fields(&key("a"), bigger), Ok("f"));
        assert_eq!(state.live(&key("a")).unwrap().fields, bigger);
        assert_eq!(
            state.can_open(&key("b")),
            Err(CapReached::Bytes(2 * WINDOW_OVERHEAD + 10))
        );
        assert_eq!(state.replace_fields(&key("a"), "f"), Ok(bigger));
        assert_eq!(state.can_open(&key("b")), Ok(()));
        assert_eq!(state.replace_fields(&key("none"), "g"), Err("g"));
    }

    #[test]
    fn a_restored_state_counts_against_the_caps() {
        let mut first = State::default();
        first
            .open(key("a"), hit(0, None), MIN, 5, false, "f")
            .unwrap();
        let saved: Vec<_> = first
            .windows()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        let mut second = State::restore(saved, first.counters());
        second.set_caps(Caps {
            windows: 1,
            ..Caps::default()
        });
        assert_eq!(second.can_open(&key("b")), Err(CapReached::Windows(1)));
    }

    #[test]
    fn alert_ids_are_stable_and_distinct() {
        let a = alert_id("R", Namespace::Alert, "d", 5);
        assert_eq!(a, alert_id("R", Namespace::Alert, "d", 5));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id("R", Namespace::Error, "d", 5));
        assert_ne!(a, alert_id("R", Namespace::Alert, "d", 6));
        assert_ne!(
            alert_id("ab", Namespace::Alert, "c", 0),
            alert_id("a", Namespace::Alert, "bc", 0)
        );
    }
}
