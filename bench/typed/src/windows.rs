//! [`Windows`]: Panther's dedup windows as rulehost keeps them, written out by hand.
//!
//! A window is keyed by (rule, dedup string). It opens at a match with no live window,
//! covers `[start, start + period)` in event time, and raises its alert once its match
//! count (or, for a rule with `unique`, its number of distinct unique values) reaches the
//! threshold. It closes when the newest event time seen, of any event, reaches its end; an
//! event without a time counts at that newest time. Windows still open at the end of the
//! input close then.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::rules::RuleSpec;

/// A live window.
#[derive(Debug)]
struct Window {
    start_ms: i64,
    end_ms: i64,
    seq: u64,
    event_count: u64,
    uniques: Option<FxHashSet<Box<str>>>,
    alert_seq: Option<u64>,
}

/// A closed window that reached its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Index of the rule.
    pub rule: usize,
    /// The dedup string.
    pub dedup: Box<str>,
    /// The window's start: the time of its first match, epoch ms.
    pub start_ms: i64,
    /// Matches counted.
    pub event_count: u64,
    /// Distinct unique values, for a rule with `unique`.
    pub unique_count: Option<u64>,
    /// Creation order of the alert.
    alert_seq: u64,
}

/// Every live window of every rule.
#[derive(Debug)]
pub struct Windows {
    specs: Vec<RuleSpec>,
    /// Per rule: dedup string → window.
    live: Vec<FxHashMap<Box<str>, Window>>,
    /// (end, opening order) → (rule, dedup): the close order.
    by_end: BTreeMap<(i64, u64), (usize, Box<str>)>,
    watermark: Option<i64>,
    next_seq: u64,
    next_alert: u64,
    closed: Vec<Alert>,
}

impl Windows {
    /// No windows yet, for these rules.
    pub fn new(specs: &[RuleSpec]) -> Self {
        Windows {
            specs: specs.to_vec(),
            live: specs.iter().map(|_| FxHashMap::default()).collect(),
            by_end: BTreeMap::new(),
            watermark: None,
            next_seq: 0,
            next_alert: 0,
            closed: Vec::new(),
        }
    }

    /// The newest event time seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// An event at `time_ms` was seen: closes the windows that end at or before it.
    pub fn advance(&mut self, time_ms: i64) {
        if self.watermark.is_some_and(|w| w >= time_ms) {
            return;
        }
        self.watermark = Some(time_ms);
        while let Some(entry) = self.by_end.first_entry() {
            if entry.key().0 > time_ms {
                break;
            }
            let (rule, dedup) = entry.remove();
            let window = self.live[rule]
                .remove(&dedup)
                .expect("every closing entry has its window");
            self.close(rule, dedup, window);
        }
    }

    /// A match of `rule` by an event at `time_ms` (`None`: at the newest time seen).
    pub fn matched(
        &mut self,
        time_ms: Option<i64>,
        rule: usize,
        dedup: &str,
        unique: Option<&str>,
    ) {
        let time = time_ms.unwrap_or(self.watermark.unwrap_or(0));
        self.advance(time);
        let spec = self.specs[rule];
        let window = match self.live[rule].get_mut(dedup) {
            Some(window) => window,
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let end_ms = time.saturating_add(spec.period_ms.max(1));
                self.by_end.insert((end_ms, seq), (rule, dedup.into()));
                self.live[rule].entry(dedup.into()).or_insert(Window {
                    start_ms: time,
                    end_ms,
                    seq,
                    event_count: 0,
                    uniques: spec.counts_unique.then(FxHashSet::default),
                    alert_seq: None,
                })
            }
        };
        window.event_count += 1;
        if let (Some(set), Some(value)) = (&mut window.uniques, unique)
            && !set.contains(value)
        {
            set.insert(value.into());
        }
        let count = match &window.uniques {
            Some(set) => set.len() as u64,
            None => window.event_count,
        };
        if window.alert_seq.is_none() && count >= spec.threshold.max(1) {
            window.alert_seq = Some(self.next_alert);
            self.next_alert += 1;
        }
    }

    fn close(&mut self, rule: usize, dedup: Box<str>, window: Window) {
        debug_assert!(window.end_ms > window.start_ms && window.seq < self.next_seq);
        if let Some(alert_seq) = window.alert_seq {
            self.closed.push(Alert {
                rule,
                dedup,
                start_ms: window.start_ms,
                event_count: window.event_count,
                unique_count: window.uniques.map(|u| u.len() as u64),
                alert_seq,
            });
        }
    }

    /// Alerts whose windows have closed, in the order they closed.
    pub fn take_closed(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.closed)
    }

    /// Closes every window (end of input): the alerts not yet taken, those that closed
    /// now in the order they were created.
    pub fn finish(mut self) -> Vec<Alert> {
        let mut alerts = self.take_closed();
        for (_, (rule, dedup)) in std::mem::take(&mut self.by_end) {
            let window = self.live[rule].remove(&dedup).expect("live");
            self.close(rule, dedup, window);
        }
        let mut rest = self.take_closed();
        rest.sort_by_key(|a| a.alert_seq);
        alerts.extend(rest);
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{ACCESS, INSTALL, RULES};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    /// (time, rule, dedup, unique) matches → alerts as (rule, dedup, start, events, uniques).
    fn run(
        matches: &[(Option<i64>, usize, &str, Option<&str>)],
    ) -> Vec<(usize, String, i64, u64, Option<u64>)> {
        let mut w = Windows::new(&RULES);
        for &(t, rule, dedup, unique) in matches {
            w.matched(t, rule, dedup, unique);
        }
        w.finish()
            .into_iter()
            .map(|a| {
                (
                    a.rule,
                    a.dedup.into(),
                    a.start_ms,
                    a.event_count,
                    a.unique_count,
                )
            })
            .collect()
    }

    fn access(
        t: i64,
        ws: &'static str,
    ) -> (Option<i64>, usize, &'static str, Option<&'static str>) {
        (Some(t), ACCESS, "a@example.com", Some(ws))
    }

    #[test]
    fn four_workspaces_raise_nothing_a_fifth_inside_the_day_alerts_once() {
        let four = [
            access(0, "1"),
            access(2 * HOUR, "2"),
            access(4 * HOUR, "3"),
            access(6 * HOUR, "4"),
        ];
        assert!(run(&four).is_empty());
        let mut day = four.to_vec();
        day.push(access(1439 * MIN, "5"));
        day.extend([access(1439 * MIN, "1"), access(1439 * MIN + 10_000, "1")]);
        assert_eq!(run(&day), [(ACCESS, "a@example.com".into(), 0, 7, Some(5))]);
    }

    #[test]
    fn a_match_at_start_plus_period_opens_a_new_window() {
        let late = [
            access(0, "1"),
            access(HOUR, "2"),
            access(2 * HOUR, "3"),
            access(3 * HOUR, "4"),
            access(1440 * MIN, "5"),
        ];
        assert!(run(&late).is_empty());
    }

    #[test]
    fn repeats_of_one_workspace_count_events_not_uniques() {
        let same: Vec<_> = (0..48).map(|i| access(i * 30 * MIN, "1")).collect();
        assert!(run(&same).is_empty());
    }

    #[test]
    fn threshold_one_alerts_per_window_anchored_at_the_first_match() {
        let t = |m: i64| (Some(m * MIN), INSTALL, "title", None);
        let alerts = run(&[t(0), t(30), t(59), t(60), t(61), t(200)]);
        let starts: Vec<_> = alerts.iter().map(|a| (a.2 / MIN, a.3)).collect();
        assert_eq!(starts, [(0, 3), (60, 2), (200, 1)]);
    }

    #[test]
    fn any_event_closes_windows_and_timeless_matches_count_at_the_newest_time() {
        let mut w = Windows::new(&RULES);
        w.matched(Some(0), INSTALL, "x", None);
        w.matched(None, INSTALL, "x", None);
        assert!(w.take_closed().is_empty());
        // A later event that matches nothing still moves time past the window's end.
        w.advance(HOUR);
        let closed = w.take_closed();
        assert_eq!((closed.len(), closed[0].event_count), (1, 2));
        // Time never goes back: an older match joins the live window at its own time.
        w.matched(Some(2 * HOUR), INSTALL, "x", None);
        w.matched(Some(HOUR), INSTALL, "x", None);
        let alerts = w.finish();
        assert_eq!(
            (alerts.len(), alerts[0].start_ms, alerts[0].event_count),
            (1, 2 * HOUR, 2)
        );
    }

    #[test]
    fn open_windows_close_at_the_end_in_alert_order() {
        let alerts = run(&[
            (Some(0), INSTALL, "b", None),
            (Some(1), INSTALL, "a", None),
            access(2, "1"),
        ]);
        let keys: Vec<_> = alerts.iter().map(|a| a.1.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
    }
}
