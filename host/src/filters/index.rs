//! [`FilterIndex`]: the single string-equality filters of many rules answered with one
//! lookup per key path and event.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use rulehost_event::Found;
use serde_json::Value;

use super::InlineFilters;
use super::key_path::{Step, leading_keys};
use super::matching::{Expr, Test};
use super::value::Scalar;
use crate::event::Lookup;

/// Many rules' [`InlineFilters`] answered with one lookup per key path and event, for the
/// filters that test one key path for equality with strings (a single `Equals` or `IsIn`
/// with string `Value`s: "this rule is about these actions", the common shape). Rules that
/// filter the same field on different values then cost one walk of the path and one hash
/// probe per event instead of one walk each. Filters of any other shape, and events where
/// the field holds something other than a string, are left to [`InlineFilters::matches`].
#[derive(Debug, Clone, Default)]
pub struct FilterIndex {
    paths: Vec<IndexedPath>,
}

#[derive(Debug, Clone)]
struct IndexedPath {
    /// Keys only (see [`InlineFilters::string_equality`]).
    steps: Vec<Step>,
    keys: Vec<String>,
    /// Every indexed filter on this path, by its position in the list given to `new`.
    members: Vec<usize>,
    /// The indexed filters each string value passes, by its UTF-8 bytes.
    by_value: HashMap<Box<[u8]>, Vec<usize>, RandomState>,
}

impl FilterIndex {
    /// Indexes those of `filters` that have the shape described above; the others are left
    /// out (and `apply` leaves their results alone).
    pub fn new<'a>(filters: impl IntoIterator<Item = &'a InlineFilters>) -> Self {
        let mut index = FilterIndex::default();
        for (i, filters) in filters.into_iter().enumerate() {
            let Some((steps, values)) = filters.string_equality() else {
                continue;
            };
            let at = match index.paths.iter().position(|p| p.steps == steps) {
                Some(at) => at,
                None => {
                    index.paths.push(IndexedPath {
                        steps: steps.to_vec(),
                        keys: leading_keys(steps),
                        members: Vec::new(),
                        by_value: HashMap::default(),
                    });
                    index.paths.len() - 1
                }
            };
            let path = &mut index.paths[at];
            path.members.push(i);
            for value in values {
                let passing = path.by_value.entry(value.as_bytes().into()).or_default();
                if passing.last() != Some(&i) {
                    passing.push(i);
                }
            }
        }
        index
    }

    /// Whether no filter is indexed.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Sets `results[i]` to `filters[i].matches(event)` for each indexed filter `i` that
    /// `event` decides here: its field is missing (the filter passes) or a string.
    pub fn apply<E: Lookup + ?Sized>(&self, event: &E, results: &mut [Option<bool>]) {
        for path in &self.paths {
            // The path is keys only: one lookup, as `walk_from` would make it.
            let text = match event.find_text(&path.keys) {
                // A missing field passes (see the module docs).
                None => {
                    path.members.iter().for_each(|&i| results[i] = Some(true));
                    continue;
                }
                Some(Found::Text(text)) => text,
                Some(Found::Value(Value::String(s))) => s.as_bytes(),
                Some(Found::Value(_)) => continue,
            };
            path.members.iter().for_each(|&i| results[i] = Some(false));
            for &i in path.by_value.get(text).into_iter().flatten() {
                results[i] = Some(true);
            }
        }
    }
}

impl InlineFilters {
    /// The key path (keys only, so it reaches at most one value) and the strings of a filter
    /// list that is one positive `Equals` or `IsIn` with string values; for a string field
    /// such a filter holds exactly when the field equals one of them.
    fn string_equality(&self) -> Option<(&[Step], Vec<&str>)> {
        let [Expr::Match(m)] = self.exprs.as_slice() else {
            return None;
        };
        if m.negated
            || m.path.steps.is_empty()
            || !m.path.steps.iter().all(|s| matches!(s, Step::Key(_)))
        {
            return None;
        }
        let scalars = match &m.test {
            Test::Equals(s) => std::slice::from_ref(s),
            Test::IsIn(list) => list.as_slice(),
            _ => return None,
        };
        let values = scalars
            .iter()
            .map(|s| match s {
                Scalar::Str { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some((&m.path.steps, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_agrees_with_matches_and_decides_string_and_missing_fields() {
        let specs = [
            (
                "- {KeyPath: actionName, Condition: Equals, Value: login}",
                true,
            ),
            (
                "- {KeyPath: actionName, Condition: Equals, Value: logout}",
                true,
            ),
            (
                "- {KeyPath: actionName, Condition: IsIn, Values: [login, \"200\"]}",
                true,
            ),
            (
                "- {KeyPath: user.email, Condition: Equals, Value: a@b.c}",
                true,
            ),
            (
                "- {KeyPath: actionName, Condition: Equals, Value: \"200\"}",
                true,
            ),
            // Not indexed: negated, case-insensitive, a number, two filters, an index step.
            (
                "- {KeyPath: actionName, Condition: DoesNotEqual, Value: login}",
                false,
            ),
            (
                "- {KeyPath: actionName, Condition: IEquals, Value: LOGIN}",
                false,
            ),
            (
                "- {KeyPath: actionName, Condition: Equals, Value: 200}",
                false,
            ),
            (
                "- {KeyPath: actionName, Condition: Equals, Value: login}\n\
                 - {KeyPath: user.email, Condition: Exists}",
                false,
            ),
            (
                "- {KeyPath: 'list[0]', Condition: Equals, Value: login}",
                false,
            ),
        ];
        let filters: Vec<InlineFilters> = specs
            .iter()
            .map(|(yaml, _)| serde_yaml_ng::from_str(yaml).unwrap())
            .collect();
        let index = FilterIndex::new(&filters);
        let events = [
            serde_json::json!({"actionName": "login", "user": {"email": "a@b.c"}}),
            serde_json::json!({"ActionName": "logout", "USER": {"Email": "x"}}),
            serde_json::json!({"actionName": "200", "user": "not an object"}),
            serde_json::json!({"actionName": 200, "user": {"email": null}}),
            serde_json::json!({"actionName": null}),
            serde_json::json!({"actionName": ["login"], "list": ["login"]}),
            serde_json::json!({}),
            serde_json::json!({"actionName": "Login"}),
        ];
        for event in &events {
            let mut results = vec![None; filters.len()];
            index.apply(event, &mut results);
            for (i, ((yaml, indexed), filter)) in specs.iter().zip(&filters).enumerate() {
                let decided = event["actionName"].is_string() || event.get("actionName").is_none();
                match results[i] {
                    Some(got) => {
                        assert!(*indexed, "{yaml} is not indexable");
                        assert_eq!(got, filter.matches(event), "{yaml} on {event}");
                    }
                    None if *indexed && i != 3 => {
                        assert!(!decided, "{yaml} left undecided on {event}")
                    }
                    None => {}
                }
            }
        }
        // The nested path is decided when `user.email` is a string or missing.
        let mut results = vec![None; filters.len()];
        index.apply(&events[0], &mut results);
        assert_eq!(results[3], Some(true));
        index.apply(&events[1], &mut results);
        assert_eq!(results[3], Some(false));
        let mut results = vec![None; filters.len()];
        index.apply(&events[3], &mut results);
        assert_eq!(results[3], None, "null is left to `matches`");
    }
}
