//! [`Clock`]: which time an event happened at.
//!
//! Panther anchors dedup windows at processing time. rulehost uses the event's own time, so
//! replaying the same logs always gives the same alerts (a deliberate, documented
//! difference; see README "Alert semantics").

use serde_json::Value;

use std::cell::RefCell;

use crate::event::{Lookup, Resolutions};

/// Reads an event's time, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone)]
pub struct Clock {
    /// Paths tried in order; the first that holds a readable time wins.
    fields: Vec<Vec<String>>,
    /// `fields` resolved against the paths events are parsed for.
    resolutions: RefCell<Resolutions>,
}

impl Default for Clock {
    /// `p_event_time` (Panther's normalised time) when present, else Databricks' `timestamp`.
    fn default() -> Self {
        Clock::new(["p_event_time", "timestamp"])
    }
}

impl Clock {
    /// Tries each dotted path in order (`a.b.c`).
    pub fn new<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> Self {
        let fields = fields
            .into_iter()
            .map(|f| f.as_ref().split('.').map(str::to_owned).collect())
            .collect();
        Clock {
            fields,
            resolutions: RefCell::default(),
        }
    }

    /// The event's time, if one of the fields holds a number (epoch milliseconds), a string
    /// of digits (epoch milliseconds), or a timestamp string (RFC 3339, or
    /// `YYYY-MM-DD HH:MM:SS[.fff]` read as UTC).
    pub fn event_time_ms<E: Lookup + ?Sized>(&self, event: &E) -> Option<i64> {
        let resolutions = &mut *self.resolutions.borrow_mut();
        (self.fields.iter().enumerate()).find_map(|(i, path)| event.time_ms(path, i, resolutions))
    }

    /// The paths it reads.
    pub fn paths(&self) -> &[Vec<String>] {
        &self.fields
    }
}

/// A time as a JSON value: a number (epoch milliseconds), a string of digits (epoch
/// milliseconds), RFC 3339, or `YYYY-MM-DD HH:MM:SS[.fff]` read as UTC.
pub fn parse_time_ms(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse().ok();
            }
            if let Ok(ts) = s.parse::<jiff::Timestamp>() {
                return Some(ts.as_millisecond());
            }
            let civil: jiff::civil::DateTime = s.parse().ok()?;
            Some(
                civil
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .ok()?
                    .timestamp()
                    .as_millisecond(),
            )
        }
        _ => None,
    }
}

/// A duration like `90s`, `+5m`, `3h` or `1d`, in milliseconds (a leading `+` is allowed).
pub fn parse_offset_ms(text: &str) -> Option<i64> {
    let text = text.trim().strip_prefix('+').unwrap_or(text.trim());
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    (n >= 0).then(|| n.checked_mul(scale)).flatten()
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2024-01-01T00:00:00Z`).
pub fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.to_string(),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefers_p_event_time_then_timestamp() {
        let clock = Clock::default();
        let both = json!({"p_event_time": "2024-01-01 00:00:01.5", "timestamp": 5});
        assert_eq!(clock.event_time_ms(&both), Some(1_704_067_201_500));
        assert_eq!(
            clock.event_time_ms(&json!({"timestamp": 1_704_067_200_000_i64})),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            clock.event_time_ms(&json!({"timestamp": "1704067200000"})),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            clock.event_time_ms(&json!({"p_event_time": "garbage", "timestamp": 7})),
            Some(7)
        );
        assert_eq!(clock.event_time_ms(&json!({})), None);
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset_ms("+1440m"), Some(86_400_000));
        assert_eq!(parse_offset_ms("1d"), Some(86_400_000));
        assert_eq!(parse_offset_ms("90s"), Some(90_000));
        assert_eq!(parse_offset_ms("+5 minutes"), None);
        assert_eq!(parse_offset_ms("-5m"), None);
        assert_eq!(parse_offset_ms(""), None);
    }

    #[test]
    fn reads_rfc3339_and_custom_fields() {
        let clock = Clock::new(["meta.time"]);
        let e = json!({"meta": {"time": "2024-01-01T01:00:00+01:00"}});
        assert_eq!(clock.event_time_ms(&e), Some(1_704_067_200_000));
        assert_eq!(format_ms(1_704_067_200_000), "2024-01-01T00:00:00Z");
        assert_eq!(format_ms(1_704_067_200_250), "2024-01-01T00:00:00.25Z");
    }
}
