//! What a worker hands the alert stage: per event, each rule's [`Verdict`], and [`Note`]s
//! on calls off the one-call-per-function path (a fast path that failed, or whose results
//! differed in a sampled check).

use std::sync::Arc;

use crate::calls::{BatchOutcome, CallResult, Function, RuleFailure};
use crate::event::Event;
use crate::input::LineBatch;
use crate::source::Position;

/// What one rule made of one event, in a worker.
///
/// A rule that was not called on an event has no verdict on it ([`Outcomes`]): its
/// `InlineFilters` ruled the event out (with many rules the most common outcome, so nothing
/// is kept or read for it), or it is quarantined.
pub(crate) enum Verdict {
    /// `rule` returned false.
    NoMatch,
    /// `rule` failed (boxed, like a match, to keep every outcome small: a worker sends one
    /// per rule per event).
    Failed(Box<RuleFailure>),
    /// A match of a `CreateAlert: false` rule.
    Signal,
    /// A match.
    Match(Box<MatchCalls>),
    /// Not evaluated: the rule has spent its failure budget in this line batch (then the
    /// stage has quarantined it at or before this event).
    Skipped,
}

/// The calls every match needs. `title` is `None` when it was not needed (the rule's
/// `dedup` gave a value): the alert stage calls it only if the match opens a window.
pub(crate) struct MatchCalls {
    pub dedup: CallResult<String>,
    pub title: Option<CallResult<String>>,
    pub unique: CallResult<String>,
}

impl MatchCalls {
    /// The failed calls, each with its function.
    pub fn failures(&self) -> impl Iterator<Item = (Function, &RuleFailure)> {
        [
            (Function::Dedup, Some(&self.dedup)),
            (Function::Title, self.title.as_ref()),
            (Function::Unique, Some(&self.unique)),
        ]
        .into_iter()
        .filter_map(|(function, called)| Some((function, called?.as_ref().err()?)))
    }
}

impl Verdict {
    /// The outcome an `evaluate-batch` result for one event stands for.
    pub fn from_fast(result: BatchOutcome) -> Verdict {
        match result {
            BatchOutcome::NoMatch => Verdict::NoMatch,
            BatchOutcome::RuleError(message) => {
                Verdict::Failed(Box::new(RuleFailure::Returned(message)))
            }
            BatchOutcome::Match {
                dedup,
                title,
                unique,
            } => Verdict::Match(Box::new(MatchCalls {
                title: matches!(dedup, Ok(None)).then_some(title),
                dedup,
                unique,
            })),
        }
    }

    /// The outcome of an alert rule's one-by-one calls: `rule`, then (on a match) `dedup`,
    /// `title` (used only when `dedup` is not defined) and `unique`.
    pub fn from_calls(
        rule: &Result<bool, RuleFailure>,
        dedup: &CallResult<String>,
        title: &CallResult<String>,
        unique: &CallResult<String>,
    ) -> Verdict {
        match rule {
            Ok(false) => Verdict::NoMatch,
            Err(failure) => Verdict::Failed(Box::new(failure.clone())),
            Ok(true) => Verdict::Match(Box::new(MatchCalls {
                dedup: dedup.clone(),
                title: matches!(dedup, Ok(None)).then(|| title.clone()),
                unique: unique.clone(),
            })),
        }
    }

    /// Every failed call behind this outcome, with its function.
    pub fn failures(&self) -> Vec<(Function, &RuleFailure)> {
        match self {
            Verdict::Failed(f) => vec![(Function::Rule, f)],
            Verdict::Match(info) => info.failures().collect(),
            _ => Vec::new(),
        }
    }

    /// The failures that count against the rule's failure budget ([`super::Quarantine`]):
    /// calls that cost a deadline or a fresh instance.
    pub fn costly_failures(&self) -> u32 {
        self.failures()
            .iter()
            .filter(|(_, f)| f.needs_fresh_instance())
            .count() as u32
    }
}

/// How a function's result shows in a disagreement.
fn shown(called: &CallResult<String>) -> String {
    match called {
        Ok(Some(value)) => format!("{value:?}"),
        Ok(None) => "nothing (not defined)".to_owned(),
        Err(failure) => format!("a failure ({failure})"),
    }
}

/// Why an `evaluate-batch` result for one event is not what one call per function gives
/// (`truth`), or `None` when they agree. A batch may fail where the functions do (the host
/// then calls them one by one), but it must not succeed where one of them fails, nor
/// return other values.
pub(crate) fn disagreement(fast: &BatchOutcome, truth: &Verdict) -> Option<String> {
    let gave = match fast {
        BatchOutcome::NoMatch => "no match".to_owned(),
        BatchOutcome::Match {
            dedup,
            title,
            unique,
        } => format!(
            "a match (dedup {}, title {}, unique {})",
            shown(dedup),
            shown(title),
            shown(unique)
        ),
        BatchOutcome::RuleError(e) => format!("the error {e:?}"),
    };
    match (truth, fast) {
        (Verdict::NoMatch, BatchOutcome::NoMatch) => None,
        (Verdict::NoMatch, _) => Some(format!("gave {gave} where `rule` returns false")),
        (Verdict::Failed(f), BatchOutcome::RuleError(e)) if matches!(&**f, RuleFailure::Returned(m) if m == e) => {
            None
        }
        (Verdict::Failed(f), _) => Some(match &**f {
            RuleFailure::Returned(m) => format!("gave {gave} where `rule` raises {m:?}"),
            other => format!("gave {gave} where `rule` fails ({other})"),
        }),
        (
            Verdict::Match(info),
            BatchOutcome::Match {
                dedup,
                title,
                unique,
            },
        ) => {
            let differs = |name: &str, want: &CallResult<String>, got: &CallResult<String>| {
                (want != got).then(|| {
                    format!(
                        "gave {name} {} where `{name}` gives {}",
                        shown(got),
                        shown(want)
                    )
                })
            };
            let title = match (&info.dedup, &info.title) {
                (Ok(None), Some(want)) => differs("title", want, title),
                _ => None,
            };
            differs("dedup", &info.dedup, dedup)
                .or(title)
                .or_else(|| differs("unique", &info.unique, unique))
        }
        (Verdict::Match(_), _) => Some(format!("gave {gave} where `rule` returns true")),
        (Verdict::Signal | Verdict::Skipped, _) => None,
    }
}

/// Something about one rule's calls on one event besides its outcome.
pub(crate) struct Note {
    /// Index of the event among the events of its batch (or 0 for one event).
    pub event: usize,
    /// Index of the rule.
    pub rule: usize,
    /// What happened.
    pub what: NoteKind,
}

/// What a [`Note`] says.
pub(crate) enum NoteKind {
    /// A fast-path call failed; the outcome comes from one call per function. For
    /// `evaluate-batch` the note is on the batch's first event.
    FastPathFailed {
        /// `evaluate-batch`.
        path: Function,
        /// How it failed.
        failure: RuleFailure,
    },
    /// A checked fast-path call gave results that differ from one call per function (the
    /// outcome is theirs).
    Mismatch {
        /// `evaluate-batch`.
        path: Function,
        /// What differed.
        detail: String,
    },
}

/// The verdicts of a batch's events, event after event: each event's in rule order, only
/// of the rules called on it. The alert stage counts an event without a verdict of a rule
/// as filtered out, or as skipped once the rule is quarantined
/// ([`super::health::Health::absent`]).
#[derive(Default)]
pub(crate) struct Outcomes {
    /// Each verdict, with the index of its rule.
    verdicts: Vec<(usize, Verdict)>,
    /// Where each event's verdicts end in `verdicts`.
    ends: Vec<usize>,
}

impl Outcomes {
    /// Room for `events` events.
    pub fn with_capacity(events: usize) -> Self {
        Outcomes {
            verdicts: Vec::with_capacity(events),
            ends: Vec::with_capacity(events),
        }
    }

    /// Adds rule `rule`'s verdict on the event being added: its place, for [`Outcomes::set`].
    pub fn push(&mut self, rule: usize, verdict: Verdict) -> usize {
        self.verdicts.push((rule, verdict));
        self.verdicts.len() - 1
    }

    /// Replaces the verdict at `place` (a placeholder, until the rule was called).
    pub fn set(&mut self, place: usize, verdict: Verdict) {
        self.verdicts[place].1 = verdict;
    }

    /// Ends the event being added.
    pub fn end_event(&mut self) {
        self.ends.push(self.verdicts.len());
    }

    /// The verdicts, event by event.
    pub fn into_events(self) -> EventVerdicts {
        EventVerdicts {
            verdicts: self.verdicts.into_iter(),
            ends: self.ends.into_iter(),
            at: 0,
        }
    }
}

/// [`Outcomes`] read event by event.
pub(crate) struct EventVerdicts {
    verdicts: std::vec::IntoIter<(usize, Verdict)>,
    ends: std::vec::IntoIter<usize>,
    at: usize,
}

impl EventVerdicts {
    /// The next event's verdicts, each with the index of its rule.
    pub fn next_event(&mut self) -> std::iter::Take<&mut std::vec::IntoIter<(usize, Verdict)>> {
        let end = self.ends.next().unwrap_or(self.at);
        let count = end - self.at;
        self.at = end;
        self.verdicts.by_ref().take(count)
    }
}

/// One input item after a worker has seen it.
pub(crate) enum Judged {
    /// Events evaluated one call at a time ([`super::Evaluator::event_at`]), with their
    /// verdicts.
    Events {
        events: Vec<StagedEvent>,
        outcomes: Outcomes,
        notes: Vec<Note>,
    },
    /// A batch of lines of one file.
    Lines(JudgedLines),
    /// A line that was not an event.
    Bad { location: Position, reason: String },
    /// A blank line.
    Blank(Position),
    /// A new input file.
    FileStarted,
}

/// An event given to the evaluator already parsed.
pub(crate) struct StagedEvent {
    pub location: Position,
    pub event: Arc<Event>,
    pub time: Option<i64>,
}

/// A [`LineBatch`] after a worker has seen it. The parsed events were dropped on the
/// worker that allocated them; the stage parses a line again in the rare case it needs
/// the event (a match that opens a window, a signal).
pub(crate) struct JudgedLines {
    pub file: Arc<str>,
    pub batch: LineBatch,
    pub items: Vec<LineItem>,
    /// Each event's verdicts, events in order.
    pub outcomes: Outcomes,
    /// Sorted by event, then rule.
    pub notes: Vec<Note>,
}

/// What a worker made of one line of a batch.
pub(crate) enum LineItem {
    /// An event: index of its line in the batch, and its time if it had one.
    Event { line: usize, time: Option<i64> },
    /// A blank line.
    Blank { number: u64 },
    /// A line that was not an event.
    Bad { number: u64, reason: String },
}
