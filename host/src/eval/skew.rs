//! [`ClockGuard`]: which event times may move the run's event-time clock.
//!
//! Windows close when the clock (the newest event time seen) passes their end, so one
//! line with a time far in the future would close every open window early and lose the
//! alerts that later events would have raised. An event more than the allowed skew ahead
//! of the clock therefore does not move it on its own word:
//! - ahead of the machine's own clock (plus the skew), it never does: no real log comes
//!   from the future;
//! - otherwise it is held until the next event: when that one is within the skew of it
//!   (or later), the stream really moved on (a quiet night between two files) and the held
//!   event is applied at its own time; when it is not, the held event was a lone outlier.
//!
//! An event that does not move the clock is still evaluated, counted and reported with
//! `file:line`, and its matches are windowed at the clock's time, as an event without a
//! readable time is.

use crate::clock::format_ms;

/// The default of `eval --max-clock-skew` (and `serve`'s): one hour.
pub const DEFAULT_MAX_CLOCK_SKEW_MS: i64 = 3_600_000;

/// Which event times may move the event-time clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockGuard {
    /// How far ahead of the clock an event may be and still move it at once; `None` lets
    /// every time move it (no guard).
    pub max_skew_ms: Option<i64>,
    /// Times after this (the machine's clock plus the skew, when the run started) never
    /// move the clock; `None` for no such limit (`rulehost test` scenarios, whose times
    /// are made up).
    pub latest_ms: Option<i64>,
}

impl Default for ClockGuard {
    /// One hour of skew, against the event-time clock and against the machine's clock.
    fn default() -> Self {
        ClockGuard::with_skew(Some(DEFAULT_MAX_CLOCK_SKEW_MS))
    }
}

/// Where an event's matches are windowed, and whether its time moves the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// At its own time, which moves the clock.
    Own(i64),
    /// No readable time: at the clock's time.
    Missing,
    /// Too far ahead: at the clock's time; counted and reported.
    Ahead(i64),
    /// Ahead of the clock, to be decided by the next event ([`ClockGuard::corroborates`]).
    Suspect(i64),
}

impl ClockGuard {
    /// `max_skew_ms` against the event-time clock and the machine's clock now.
    pub fn with_skew(max_skew_ms: Option<i64>) -> Self {
        let now = jiff::Timestamp::now().as_millisecond();
        ClockGuard {
            max_skew_ms,
            latest_ms: max_skew_ms.map(|skew| now.saturating_add(skew)),
        }
    }

    /// No limit against the machine's clock (made-up times).
    pub fn without_machine_clock(self) -> Self {
        ClockGuard {
            latest_ms: None,
            ..self
        }
    }

    /// [`ClockGuard::with_skew`] again, against the machine's clock now (a long run's).
    pub fn refreshed(self) -> Self {
        match self.latest_ms {
            Some(_) => ClockGuard::with_skew(self.max_skew_ms),
            None => self,
        }
    }

    /// Whether a held event at `held` that no event followed may move the clock when
    /// nothing else is to come: its time is not ahead of the machine's clock, so events
    /// after it would be later still.
    pub(super) fn settles(&self, held: i64) -> bool {
        let skew = self.max_skew_ms.unwrap_or(0);
        self.latest_ms
            .is_none_or(|latest| held <= latest.saturating_sub(skew))
    }

    /// The warning for an event at `location` and `time` that is too far ahead of the
    /// clock (at `clock`) to move it.
    pub(super) fn ahead(&self, location: &impl std::fmt::Display, time: i64, clock: i64) -> String {
        format!(
            "`{location}`: event time {} is more than {} ahead of the event-time clock ({}): \
             it is evaluated and windowed at the clock's time, and does not move it",
            format_ms(time),
            skew_text(self.max_skew_ms.unwrap_or(0)),
            format_ms(clock)
        )
    }

    /// Where an event at `time` goes, with the clock at `clock`.
    pub(super) fn place(&self, time: Option<i64>, clock: Option<i64>) -> Placement {
        let Some(time) = time else {
            return Placement::Missing;
        };
        let Some(skew) = self.max_skew_ms else {
            return Placement::Own(time);
        };
        if self.latest_ms.is_some_and(|latest| time > latest) {
            return Placement::Ahead(time);
        }
        match clock {
            Some(clock) if time > clock.saturating_add(skew) => Placement::Suspect(time),
            _ => Placement::Own(time),
        }
    }

    /// Whether the event after a held one (at `next`) shows that the stream really moved
    /// to the held time: it is no more than the skew before it, and itself possible.
    pub(super) fn corroborates(&self, held: i64, next: Option<i64>) -> bool {
        let skew = self.max_skew_ms.unwrap_or(0);
        next.is_some_and(|next| {
            next >= held.saturating_sub(skew) && self.latest_ms.is_none_or(|latest| next <= latest)
        })
    }
}

/// `1h`, `90m`, `30s`, `250ms`.
fn skew_text(ms: i64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn guard() -> ClockGuard {
        ClockGuard {
            max_skew_ms: Some(H),
            latest_ms: Some(1000 * H),
        }
    }

    #[test]
    fn times_within_the_skew_move_the_clock() {
        let g = guard();
        assert_eq!(g.place(Some(5 * H), None), Placement::Own(5 * H));
        assert_eq!(g.place(Some(6 * H), Some(5 * H)), Placement::Own(6 * H));
        // Late events are windowed at their own time (they do not move the clock back).
        assert_eq!(g.place(Some(H), Some(5 * H)), Placement::Own(H));
        assert_eq!(g.place(None, Some(5 * H)), Placement::Missing);
    }

    #[test]
    fn times_past_the_skew_are_held_and_the_future_never_counts() {
        let g = guard();
        assert_eq!(g.place(Some(7 * H), Some(5 * H)), Placement::Suspect(7 * H));
        assert_eq!(
            g.place(Some(1001 * H), Some(5 * H)),
            Placement::Ahead(1001 * H)
        );
        // Even as the first event of a run.
        assert_eq!(g.place(Some(1001 * H), None), Placement::Ahead(1001 * H));
        assert_eq!(
            g.without_machine_clock().place(Some(1001 * H), None),
            Placement::Own(1001 * H)
        );
        let off = ClockGuard::with_skew(None);
        assert_eq!(off.place(Some(i64::MAX), Some(0)), Placement::Own(i64::MAX));
    }

    #[test]
    fn with_no_event_after_it_a_held_time_settles_unless_ahead_of_the_machine() {
        let g = guard();
        // The machine's clock is 999h (the latest allowed, 1000h, less the skew).
        assert!(g.settles(999 * H));
        assert!(!g.settles(999 * H + 1));
        assert!(g.without_machine_clock().settles(1001 * H));
    }

    #[test]
    fn the_next_event_decides_a_held_one() {
        let g = guard();
        assert!(g.corroborates(7 * H, Some(7 * H - H)));
        assert!(g.corroborates(7 * H, Some(9 * H)));
        assert!(!g.corroborates(7 * H, Some(5 * H)));
        assert!(!g.corroborates(7 * H, None));
        // A future time cannot vouch for another.
        assert!(!g.corroborates(7 * H, Some(1001 * H)));
    }
}
