//! [`Windows`]: `rulehost::eval::Evaluator` with native rules in place of components.
//!
//! Evaluation is split in two stages so that the first can run on any thread:
//! [`match_event`] applies each spec's `InlineFilters` and calls the rule's `rule`,
//! `dedup` (and `title` only when `dedup` gives nothing) and `unique` on one event; [`Windows::event`] then takes the events in input
//! order and does exactly what the evaluator does with the answers: the same
//! [`AlertState`] calls, the same `rulehost::semantics` fallbacks, the fields frozen from
//! a window's first match, and the same [`AlertRecord`] JSON lines.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Arc;

use rulehost::clock::format_ms;
use rulehost::eval::{AlertFields, AlertRecord, Location, RuleStats, SignalRecord, Summary};
use rulehost::input::{Line, parse_line};
use rulehost::semantics;
use rulehost::spec::Spec;
use rulehost::state::{AlertState, Closed, Hit, Namespace, WindowKey};
use serde_json::Value;

use crate::rules::NativeRule;

/// A spec and its native port.
pub struct Rule {
    /// The validated YAML.
    pub spec: Spec,
    /// The port of the component its `Filename:` names.
    pub logic: Box<dyn NativeRule>,
}

/// What stage 1 found for one rule on one event.
#[derive(Debug)]
pub enum Match {
    /// The spec's `InlineFilters` ruled the event out; `rule` was not called.
    Filtered {
        /// Index of the rule.
        rule: usize,
    },
    /// A match of a `CreateAlert: false` rule: written as a signal record.
    Signal {
        /// Index of the rule.
        rule: usize,
    },
    /// A match, as far as it can be computed without window state.
    Alert {
        /// Index of the rule.
        rule: usize,
        /// The dedup string, fallbacks applied.
        dedup: String,
        /// The unique value, truncated.
        unique: Option<String>,
        /// Whether the rule defines `unique`.
        counts_unique: bool,
    },
}

/// Stage 1: appends what the rules make of `event` to `out`, in rule order.
pub fn match_event(rules: &[Rule], event: &Value, out: &mut Vec<Match>) {
    for (index, rule) in rules.iter().enumerate() {
        if let Some(filters) = &rule.spec.inline_filters
            && !filters.matches(event)
        {
            out.push(Match::Filtered { rule: index });
            continue;
        }
        let logic = &rule.logic;
        if !logic.rule(event) {
            continue;
        }
        if !rule.spec.create_alert {
            out.push(Match::Signal { rule: index });
            continue;
        }
        let dedup = logic.dedup(event);
        // The title is only needed when dedup gives nothing (Panther's fallback);
        // `rulehost eval` calls it on every match.
        let title = match &dedup {
            Some(d) if !d.is_empty() => None,
            _ => logic.title(event),
        };
        let unique = logic.unique(event);
        out.push(Match::Alert {
            rule: index,
            dedup: semantics::dedup(&rule.spec, &Ok(dedup), &Ok(title)),
            counts_unique: unique.is_some(),
            unique: unique.map(semantics::truncate),
        });
    }
}

/// The event a window may need: parsed, or still the bytes of its line (the parallel
/// pipeline drops parsed events on the worker that parsed them, and parses a line again in
/// the rare case a match opens a window).
#[derive(Debug, Clone, Copy)]
pub enum EventRef<'a> {
    /// Parsed.
    Parsed(&'a Value),
    /// The line, which parsed as a JSON object.
    Line(&'a [u8]),
}

impl<'a> EventRef<'a> {
    fn value(self) -> Cow<'a, Value> {
        match self {
            EventRef::Parsed(v) => Cow::Borrowed(v),
            EventRef::Line(bytes) => match parse_line(bytes) {
                Line::Event(v) => Cow::Owned(v),
                _ => unreachable!("the line parsed as an event before"),
            },
        }
    }
}

/// Stage 2: dedup windows and output, fed events in input order.
pub struct Windows<W: Write> {
    rules: Arc<[Rule]>,
    stats: Vec<RuleStats>,
    state: AlertState<Location, AlertFields>,
    out: W,
    summary: Summary,
}

impl<W: Write> Windows<W> {
    /// Windows for `rules`, writing alert records to `out`.
    pub fn new(rules: Arc<[Rule]>, out: W) -> Self {
        Windows {
            stats: vec![RuleStats::default(); rules.len()],
            rules,
            state: AlertState::default(),
            out,
            summary: Summary::default(),
        }
    }

    /// The rules, in RuleID order.
    pub fn rules(&self) -> &Arc<[Rule]> {
        &self.rules
    }

    /// Counts an input file.
    pub fn file_started(&mut self) {
        self.summary.files += 1;
    }

    /// Counts a blank line.
    pub fn blank_line(&mut self) {
        self.summary.blank_lines += 1;
    }

    /// Counts and reports a skipped line.
    pub fn bad_line(&mut self, location: &Location, reason: &dyn std::fmt::Display) {
        self.summary.bad_lines += 1;
        if self.summary.bad_lines <= 20 {
            eprintln!("warning: `{location}`: skipped: {reason}");
        }
    }

    /// Counts one event at `time` (from the clock, if it had one) with its `matches`;
    /// `event` is read only when a match opens a window.
    pub fn event(
        &mut self,
        location: &Location,
        time: Option<i64>,
        event: EventRef<'_>,
        matches: impl IntoIterator<Item = Match>,
    ) -> io::Result<()> {
        self.summary.events += 1;
        let time = match time {
            Some(t) => t,
            None => {
                self.summary.events_without_time += 1;
                self.state.watermark().unwrap_or(0)
            }
        };
        self.state.advance(time);
        self.write_closed()?;
        for m in matches {
            let (rule, dedup, unique, counts_unique) = match m {
                Match::Filtered { rule } => {
                    self.stats[rule].filtered += 1;
                    continue;
                }
                Match::Signal { rule } => {
                    self.stats[rule].matches += 1;
                    self.signal(rule, location, time, &event.value())?;
                    continue;
                }
                Match::Alert {
                    rule,
                    dedup,
                    unique,
                    counts_unique,
                } => (rule, dedup, unique, counts_unique),
            };
            self.stats[rule].matches += 1;
            let key = WindowKey {
                rule,
                namespace: Namespace::Alert,
                dedup,
            };
            let hit = Hit {
                time_ms: time,
                location: location.clone(),
                unique,
            };
            if !self.state.add(&key, hit.clone()).counted() {
                let spec = &self.rules[rule].spec;
                let (period, threshold) = (spec.dedup_period_ms(), spec.threshold);
                let frozen = self.freeze(rule, &event.value());
                self.state
                    .open(key, hit, period, threshold, counts_unique, frozen)
                    .expect("the baseline's state has no caps");
            }
        }
        Ok(())
    }

    fn signal(
        &mut self,
        rule: usize,
        location: &Location,
        time: i64,
        event: &Value,
    ) -> io::Result<()> {
        self.stats[rule].signals += 1;
        let spec = &self.rules[rule].spec;
        let record = SignalRecord {
            kind: "signal",
            rule_id: &spec.rule_id,
            severity: spec.severity.as_str(),
            event_time: format_ms(time),
            event_location: location.to_string(),
            event,
        };
        serde_json::to_writer(&mut self.out, &record)?;
        self.out.write_all(b"\n")
    }

    fn freeze(&mut self, index: usize, event: &Value) -> AlertFields {
        let Rule { spec, logic } = &self.rules[index];
        // The context goes through the same checks as a component's JSON text (object,
        // at most 200 KiB of characters).
        let context = logic
            .alert_context(event)
            .map(|ctx| Value::Object(ctx).to_string());
        let (alert_context, context_error) = semantics::alert_context(&Ok(context));
        self.stats[index].aux_errors += u64::from(context_error.is_some());
        let (destinations, suppressed) = semantics::destinations(spec, &Ok(None));
        AlertFields {
            title: semantics::title(spec, &Ok(logic.title(event))),
            severity: semantics::severity(spec, &Ok(None)).0,
            alert_context,
            description: semantics::text(&Ok(None), &spec.description),
            reference: semantics::text(&Ok(None), &spec.reference),
            runbook: semantics::text(&Ok(None), &spec.runbook),
            destinations,
            suppressed,
            error: None,
        }
    }

    fn write_closed(&mut self) -> io::Result<()> {
        for closed in self.state.take_closed() {
            self.write(&closed)?;
        }
        Ok(())
    }

    fn write(&mut self, closed: &Closed<Location, AlertFields>) -> io::Result<()> {
        let spec = &self.rules[closed.key.rule].spec;
        let record = AlertRecord::from_closed(spec, closed);
        serde_json::to_writer(&mut self.out, &record)?;
        self.out.write_all(b"\n")?;
        self.stats[closed.key.rule].alerts += 1;
        Ok(())
    }

    /// Closes every window, writes the remaining alerts and returns the totals.
    pub fn finish(mut self) -> io::Result<Summary> {
        self.write_closed()?;
        for closed in self.state.close_all() {
            self.write(&closed)?;
        }
        self.out.flush()?;
        let mut summary = self.summary;
        summary.rules = self
            .rules
            .iter()
            .zip(self.stats)
            .map(|(r, s)| (r.spec.rule_id.clone(), s))
            .collect();
        Ok(summary)
    }
}
