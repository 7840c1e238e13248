//! [`Event`]: the five values the seed rules and the clock read, deserialized straight from
//! a line, with Panther's lookup semantics; everything else in the line is skipped (but
//! still validated: the line must be one JSON object).
//!
//! Panther's `event.get(key)` takes the exact key, else the first key in document order
//! that matches case-insensitively; a duplicated key keeps its first position and its last
//! value (Python's `json` into a dict). JSON `null` is kept apart from a missing key:
//! `get` returns `None` for both, `deep_get` treats `null` as missing, and `str()` of a
//! present `null` is `"None"`.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One looked-up value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<'a> {
    /// No such key (or, on a nested path, a non-object on the way).
    #[default]
    Missing,
    /// JSON `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer within `i64`.
    Int(i64),
    /// Any other number, as the host's `serde_json::Value` holds it.
    Float(f64),
    /// A string; borrowed from the line unless it had escapes.
    Str(Cow<'a, str>),
    /// An array or object, as compact JSON in document order (what rulehost prints for it).
    Json(String),
}

impl Field<'_> {
    /// Present and not `null` (Panther's `deep_get` answers `None` for both).
    pub fn is_some(&self) -> bool {
        !matches!(self, Field::Missing | Field::Null)
    }

    /// `str(event.get(key, default))`: a present `null` prints as `None`.
    pub fn str_or(&self, default: &str) -> Cow<'_, str> {
        match self {
            Field::Missing => Cow::Owned(default.to_owned()),
            other => other.python_str(),
        }
    }

    /// `str(event.deep_get(*path, default=default))`: `null` is the default too.
    pub fn deep_str_or(&self, default: &str) -> Cow<'_, str> {
        match self {
            Field::Missing | Field::Null => Cow::Owned(default.to_owned()),
            other => other.python_str(),
        }
    }

    /// The value as the SDK prints it (`Value::to_python_string`).
    fn python_str(&self) -> Cow<'_, str> {
        match self {
            Field::Missing | Field::Null => Cow::Borrowed("None"),
            Field::Bool(true) => Cow::Borrowed("True"),
            Field::Bool(false) => Cow::Borrowed("False"),
            Field::Int(i) => Cow::Owned(i.to_string()),
            Field::Float(f) => Cow::Owned(format!("{f:?}")),
            Field::Str(s) => Cow::Borrowed(s),
            Field::Json(j) => Cow::Borrowed(j),
        }
    }

    /// The event time this value holds, as rulehost's clock reads it: a number (epoch ms),
    /// a string of digits (epoch ms), RFC 3339, or `YYYY-MM-DD HH:MM:SS[.fff]` in UTC.
    pub fn time_ms(&self) -> Option<i64> {
        match self {
            Field::Int(i) => Some(*i),
            Field::Float(f) => Some(*f as i64),
            Field::Str(s) => {
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
}

/// What the rules and the clock read from one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event<'a> {
    /// `p_event_time`: the clock's first choice.
    pub p_event_time: Field<'a>,
    /// `timestamp`: the clock's second choice.
    pub timestamp: Field<'a>,
    /// `workspaceId`.
    pub workspace_id: Field<'a>,
    /// `actionName`.
    pub action_name: Field<'a>,
    /// `userIdentity.email`.
    pub email: Field<'a>,
}

impl Event<'_> {
    /// The event's time: `p_event_time` when it holds a time, else `timestamp`.
    pub fn time_ms(&self) -> Option<i64> {
        self.p_event_time
            .time_ms()
            .or_else(|| self.timestamp.time_ms())
    }
}

/// What one line holds.
#[derive(Debug)]
pub enum Line<'a> {
    /// Empty or whitespace only.
    Blank,
    /// A JSON object.
    Event(Event<'a>),
    /// Not UTF-8, not JSON, or not an object: why.
    Bad(String),
}

impl<'a> Line<'a> {
    /// Parses one line (without its newline) as rulehost does: UTF-8, trimmed, one object.
    pub fn parse(bytes: &'a [u8]) -> Line<'a> {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Line::Bad("not UTF-8".into());
        };
        let text = text.trim();
        if text.is_empty() {
            return Line::Blank;
        }
        // serde_json rather than sonic-rs: through serde (so with the skipped values
        // validated), sonic-rs 0.5.10 took 15-20% more CPU on the bench file, even built
        // with `-C target-cpu=native`.
        match serde_json::from_str::<Event>(text) {
            Ok(event) => Line::Event(event),
            Err(e) => Line::Bad(e.to_string()),
        }
    }
}

/// Which of its wanted keys a key names: exactly, or only case-insensitively.
#[derive(Clone, Copy)]
enum Hit {
    Exact(usize),
    Folded(usize),
}

/// Looks `key` up among `wanted` (ASCII names: a case-insensitive match then has the same
/// length, as `rulehost_event::get` compares ASCII keys).
fn find(wanted: &[&str], key: &str) -> Option<Hit> {
    if let Some(i) = wanted.iter().position(|w| *w == key) {
        return Some(Hit::Exact(i));
    }
    wanted
        .iter()
        .position(|w| w.len() == key.len() && w.eq_ignore_ascii_case(key))
        .map(Hit::Folded)
}

/// One wanted key of an object: the exact key's last value, and the first
/// case-insensitive key (in document order) with that key's last value.
struct Slot<'a, T> {
    exact: Option<T>,
    folded: Option<(Cow<'a, str>, T)>,
}

impl<T> Default for Slot<'_, T> {
    fn default() -> Self {
        Slot {
            exact: None,
            folded: None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Slot<'de, T> {
    /// Reads the value of `key` into the slot, or skips it when an earlier key already
    /// answers a case-insensitive lookup.
    fn offer<A: MapAccess<'de>>(
        &mut self,
        hit: Hit,
        key: Cow<'de, str>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match hit {
            Hit::Exact(_) => self.exact = Some(map.next_value()?),
            Hit::Folded(_) => match &mut self.folded {
                None => self.folded = Some((key, map.next_value()?)),
                Some((first, value)) if *first == key => *value = map.next_value()?,
                Some(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            },
        }
        Ok(())
    }

    fn take(self) -> Option<T> {
        self.exact.or(self.folded.map(|(_, v)| v))
    }
}

/// An object key, borrowed unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field<'de>, E> {
                Ok(Field::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
                // Beyond i64 the host's value is printed as a float, as here.
                Ok(i64::try_from(v).map_or(Field::Float(v as f64), Field::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(Field::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            // Rare (a rule printing an object): keep it as the host would print it.
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
                let v = serde_json::Value::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Field::Json(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
                let v = serde_json::Value::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Field::Json(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `userIdentity`: only its `email`, and only when it is an object.
struct UserIdentity<'a> {
    email: Field<'a>,
}

impl<'de> Deserialize<'de> for UserIdentity<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UserIdentity<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut email = Slot::default();
                while let Some(Key(key)) = map.next_key()? {
                    match find(&["email"], &key) {
                        Some(hit) => email.offer(hit, key, &mut map)?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(UserIdentity {
                    email: email.take().unwrap_or_default(),
                })
            }
            // Anything else has no `email`: `deep_get` stops at a non-object.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(UserIdentity::NONE)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(UserIdentity::NONE)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(UserIdentity::NONE)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(UserIdentity::NONE)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(UserIdentity::NONE)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(UserIdentity::NONE)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(UserIdentity::NONE)
            }
        }
        d.deserialize_any(V)
    }
}

impl UserIdentity<'_> {
    const NONE: Self = UserIdentity {
        email: Field::Missing,
    };
}

/// The top-level keys read, in [`Event`]'s order.
const TOP: [&str; 5] = [
    "p_event_time",
    "timestamp",
    "workspaceId",
    "actionName",
    "userIdentity",
];

impl<'de> Deserialize<'de> for Event<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Event<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event<'de>, A::Error> {
                let mut fields: [Slot<Field>; 4] = Default::default();
                let mut user = Slot::<UserIdentity>::default();
                while let Some(Key(key)) = map.next_key()? {
                    match find(&TOP, &key) {
                        Some(hit @ (Hit::Exact(4) | Hit::Folded(4))) => {
                            user.offer(hit, key, &mut map)?
                        }
                        Some(hit @ (Hit::Exact(i) | Hit::Folded(i))) => {
                            fields[i].offer(hit, key, &mut map)?
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let [p_event_time, timestamp, workspace_id, action_name] =
                    fields.map(|s| s.take().unwrap_or_default());
                Ok(Event {
                    p_event_time,
                    timestamp,
                    workspace_id,
                    action_name,
                    email: user.take().map_or(Field::Missing, |u| u.email),
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event<'_> {
        match Line::parse(json.as_bytes()) {
            Line::Event(e) => e,
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn exact_key_first_then_first_case_insensitive_key() {
        let e = event(r#"{"WorkspaceId": 1, "WORKSPACEID": 2, "workspaceId": 3}"#);
        assert_eq!(e.workspace_id, Field::Int(3));
        let e = event(r#"{"WorkspaceId": 1, "WORKSPACEID": 2, "WorkspaceId": 4}"#);
        assert_eq!(
            e.workspace_id,
            Field::Int(4),
            "a duplicate keeps its position"
        );
        let e = event(r#"{"userIdentity": {"EMAIL": "a"}, "USERIDENTITY": {"email": "b"}}"#);
        assert_eq!(e.email, Field::Str("a".into()));
        let e = event(r#"{"workspaceId": 1, "workspaceId": null}"#);
        assert_eq!(e.workspace_id, Field::Null, "the last duplicate wins");
    }

    #[test]
    fn null_is_not_missing() {
        let e = event(r#"{"workspaceId": null, "userIdentity": "x"}"#);
        assert_eq!(e.workspace_id.str_or("Unknown"), "None");
        assert_eq!(e.action_name.str_or("Unknown"), "Unknown");
        assert_eq!(e.email, Field::Missing);
        assert_eq!(e.workspace_id.deep_str_or("d"), "d");
    }

    #[test]
    fn values_print_as_the_sdk_prints_them() {
        let e = event(
            r#"{"workspaceId": {"b": 1, "a": [true, null]}, "actionName": 1e3,
                "userIdentity": {"email": "\u00e9t\u00e9"}, "timestamp": 18446744073709551615}"#,
        );
        assert_eq!(e.workspace_id.str_or(""), r#"{"b":1,"a":[true,null]}"#);
        assert_eq!(e.action_name.str_or(""), "1000.0");
        assert_eq!(e.email.str_or(""), "été");
        assert_eq!(e.timestamp.str_or(""), "1.8446744073709552e19");
        assert_eq!(Field::Bool(false).str_or(""), "False");
    }

    #[test]
    fn times_as_the_clock_reads_them() {
        let t = |json: &str| event(json).time_ms();
        assert_eq!(
            t(r#"{"timestamp": 1704067200000}"#),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            t(r#"{"timestamp": "1704067200000"}"#),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            t(r#"{"p_event_time": "2024-01-01 00:00:01.5", "timestamp": 5}"#),
            Some(1_704_067_201_500)
        );
        assert_eq!(
            t(r#"{"p_event_time": "garbage", "TIMESTAMP": "2024-01-01T01:00:00+01:00"}"#),
            Some(1_704_067_200_000)
        );
        assert_eq!(t(r#"{"timestamp": null}"#), None);
    }

    #[test]
    fn bad_lines_are_rejected_even_in_skipped_values() {
        for line in [
            r#"{"a": [1, 2}"#,
            r#"{"a": tru}"#,
            "[1]",
            r#"{"a": 1} x"#,
            r#""s""#,
        ] {
            assert!(
                matches!(Line::parse(line.as_bytes()), Line::Bad(_)),
                "{line}"
            );
        }
        assert!(matches!(Line::parse(b"\xff{}"), Line::Bad(_)));
        assert!(matches!(Line::parse(b" \t\r"), Line::Blank));
    }
}
