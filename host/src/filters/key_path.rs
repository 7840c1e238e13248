//! [`KeyPath`]: a filter's `KeyPath` (`a.b[*].c[-1]`, quoted keys), parsed at load, and
//! [`walk`], which visits the values it reaches in an event.

use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::Value;

use super::parse::ParseVisitor;
use crate::event::Lookup;

/// A parsed `KeyPath`.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyPath {
    pub(super) steps: Vec<Step>,
    /// The keys before the first index or wildcard: what an event must hold for a walk.
    pub(super) keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    Key(String),
    Index(i64),
    Wildcard,
}

impl KeyPath {
    /// `key ( '.' key | '[' (integer | '*') ']' )*`, where a key is a run of characters other
    /// than `.[]"` or a double-quoted string with `\"` and `\\` escapes.
    fn parse(text: &str) -> Result<KeyPath, String> {
        let err = |why: &str| format!("invalid KeyPath `{text}`: {why}");
        let mut steps = Vec::new();
        let mut rest = text;
        let mut want_key = true;
        loop {
            if want_key {
                let key;
                if let Some(quoted) = rest.strip_prefix('"') {
                    let (raw, after) = parse_quoted(quoted).map_err(err)?;
                    key = raw.replace("\\\"", "\"").replace("\\\\", "\\");
                    rest = after;
                } else {
                    let end = rest.find(['.', '[', ']', '"']).unwrap_or(rest.len());
                    key = rest[..end].to_owned();
                    rest = &rest[end..];
                    if key.is_empty() {
                        return Err(err("empty key"));
                    }
                    if key == "*" {
                        return Err(err(
                            "object wildcards (`.*`) are not supported; use `[*]` on a list",
                        ));
                    }
                }
                steps.push(Step::Key(key));
                want_key = false;
            }
            let Some(c) = rest.chars().next() else { break };
            match c {
                '.' => {
                    rest = &rest[1..];
                    want_key = true;
                }
                '[' => {
                    let close = rest.find(']').ok_or_else(|| err("unclosed `[`"))?;
                    let inner = &rest[1..close];
                    steps.push(if inner == "*" {
                        Step::Wildcard
                    } else {
                        Step::Index(inner.parse().map_err(|_| {
                            err(&format!(
                                "`[{inner}]` is not an index: use an integer or `*`"
                            ))
                        })?)
                    });
                    rest = &rest[close + 1..];
                }
                c => return Err(err(&format!("unexpected `{c}`; quote keys holding it"))),
            }
        }
        let keys = leading_keys(&steps);
        Ok(KeyPath { steps, keys })
    }
}

/// The keys `steps` starts with, up to the first index or wildcard.
pub(super) fn leading_keys(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map_while(|step| match step {
            Step::Key(key) => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// Splits `"key"rest` (opening quote removed) into the raw key and the rest.
fn parse_quoted(s: &str) -> Result<(&str, &str), &'static str> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => {
                if c != '"' && c != '\\' {
                    return Err("only `\\\"` and `\\\\` escapes are supported in quoted keys");
                }
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => return Ok((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    Err("unclosed `\"`")
}

impl<'de> Deserialize<'de> for KeyPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseVisitor(KeyPath::parse))
    }
}

/// Calls `f` on each value `steps` reaches from `v`, stopping at the first for which `f`
/// returns true; returns whether it stopped. Visiting instead of collecting keeps the hot
/// path free of allocation.
pub(super) fn walk<'a, F: FnMut(&'a Value) -> bool>(
    v: &'a Value,
    steps: &[Step],
    f: &mut F,
) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return f(v);
    };
    match (step, v) {
        (Step::Key(key), Value::Object(object)) => {
            rulehost_event::get(object, key).is_some_and(|next| walk(next, rest, f))
        }
        (Step::Index(i), Value::Array(items)) => {
            let i = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .is_some_and(|next| walk(next, rest, f))
        }
        (Step::Wildcard, Value::Array(items)) => items.iter().any(|item| walk(item, rest, f)),
        _ => false,
    }
}

/// [`walk`] over `steps` from an event's root, whose leading keys are `keys`
/// ([`leading_keys`]): those are read with [`Lookup::lookup`], so that a pruned event
/// answers them.
pub(super) fn walk_from<'a, E: Lookup + ?Sized, F: FnMut(&'a Value) -> bool>(
    event: &'a E,
    keys: &[String],
    steps: &[Step],
    f: &mut F,
) -> bool {
    event
        .lookup(keys)
        .is_some_and(|value| walk(value, &steps[keys.len()..], f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::test_util::{filters, single_path};
    use serde_json::json;

    #[test]
    fn key_path_syntax() {
        let steps = |p: &str| KeyPath::parse(p).map(|k| k.steps);
        assert_eq!(
            steps("a.b[*].c[2][-1]").unwrap(),
            [
                Step::Key("a".into()),
                Step::Key("b".into()),
                Step::Wildcard,
                Step::Key("c".into()),
                Step::Index(2),
                Step::Index(-1),
            ]
        );
        assert_eq!(
            steps(r#"a."b.c"."x\"y"."#.trim_end_matches('.')).unwrap(),
            [
                Step::Key("a".into()),
                Step::Key("b.c".into()),
                Step::Key("x\"y".into()),
            ]
        );
        assert_eq!(
            steps("p_any-ip:x").unwrap(),
            [Step::Key("p_any-ip:x".into())]
        );
        let event = json!({"b.c": {"d": 1}});
        assert!(single_path(r#""b.c".d"#, "Equals", "1").matches(&event));
        for (bad, why) in [
            ("", "empty key"),
            ("a..b", "empty key"),
            ("a.", "empty key"),
            (".a", "empty key"),
            ("a[", "unclosed `[`"),
            ("a[x]", "`[x]` is not an index"),
            ("a[]", "`[]` is not an index"),
            ("a.*.b", "object wildcards"),
            ("a]b", "unexpected `]`"),
            ("a[0]b", "unexpected `b`"),
            (r#"a."b"#, "unclosed `\"`"),
            (r#"a."b\n""#, "escapes"),
        ] {
            let err = steps(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(
                err.starts_with(&format!("invalid KeyPath `{bad}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn nested_wildcards_and_indices() {
        let event = json!({"a": [
            {"b": [{"c": 1}, {"c": 2}]},
            {"b": [{"c": 3}]},
        ]});
        assert!(single_path("a[*].b[*].c", "Equals", "3").matches(&event));
        assert!(!single_path("a[*].b[*].c", "IsGreaterThan", "3").matches(&event));
        assert!(single_path("a[0].b[1].c", "Equals", "2").matches(&event));
        assert!(!single_path("a[0].b[1].c", "Equals", "1").matches(&event));
        assert!(single_path("a[-1].b[0].c", "Equals", "3").matches(&event));
        let is_in = "- KeyPath: 'a[*].b[*].c'\n  Condition: IsIn\n  Values: [0, 2]\n";
        assert!(filters(is_in).matches(&event));
        assert!(!filters(&is_in.replace("IsIn", "IsNotIn")).matches(&event));
        // Out of range or on a non-list: missing, so the filter passes.
        assert!(single_path("a[5].b[0].c", "Equals", "99").matches(&event));
        assert!(single_path("a[-3].b[0].c", "Equals", "99").matches(&event));
        assert!(single_path("a[0].b.c", "Equals", "99").matches(&event));
        assert!(!single_path("a[5].b[0].c", "Exists", "").matches(&event));
        // `[*]` at the end reaches the elements themselves.
        let tags = json!({"tags": ["prod", "pci"]});
        assert!(single_path("tags[*]", "Equals", "pci").matches(&tags));
        assert!(!single_path("tags[*]", "DoesNotEqual", "pci").matches(&tags));
        assert!(single_path("tags[1]", "Equals", "pci").matches(&tags));
    }

    #[test]
    fn keys_fall_back_to_case_insensitive() {
        let event: Value =
            serde_json::from_str(r#"{"UserIdentity": {"ARN": "a", "arn": "b"}, "Ünï": 1}"#)
                .unwrap();
        assert!(single_path("userIdentity.arn", "Equals", "b").matches(&event));
        assert!(single_path("useridentity.ARN", "Equals", "a").matches(&event));
        assert!(
            single_path("USERIDENTITY.Arn", "Equals", "a").matches(&event),
            "first in order"
        );
        assert!(single_path("ünï", "Equals", "1").matches(&event));
        assert!(!single_path("userIdentity.arn", "DoesNotEqual", "b").matches(&event));
    }
}
