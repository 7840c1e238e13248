//! [`parse_pruned`]: parses a JSON event keeping only the parts a set of paths can reach
//! ([`Wanted`]), so that an event whose rules read ten fields does not cost the strings,
//! maps and hashing of the hundred it has.
//!
//! The promise: for every path [`Wanted::covers`], [`deep_get`](crate::deep_get) on the
//! pruned value gives exactly what it gives on the full parse (the same key, by the same
//! exact-then-case-insensitive rule, in the same order, duplicate keys resolved the same
//! way). At each object level every key that a wanted key could match, exactly or
//! case-insensitively, is kept; the rest is skipped. A value under a path that is not
//! wanted whole may be replaced by `null` when it is not an object (a lookup through it
//! finds nothing either way). A path that is not covered must be read from a full parse.
//!
//! Validation is not skipped: the skipped parts go through the same parser code as a full
//! parse (strings unescaped, numbers read, the nesting limit counted), without building
//! values, so a line is rejected with the same error either way.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::same_key;
use crate::scan::Uncovered;

/// A path a [`Wanted`] covers, resolved against it ([`Wanted::resolve`]): the index of
/// the child it takes at each level, down to the value kept whole. A read of that path
/// with it ([`Kept::get`](crate::Kept::get) and the others, given the path it was
/// resolved from) makes no lookups in the tree. It holds for events parsed for that same
/// tree only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved(Vec<u32>);

impl Resolved {
    /// The child indices, level by level.
    pub(crate) fn steps(&self) -> &[u32] {
        &self.0
    }
}

/// The paths whose values a pruned parse keeps, as a tree of lowercased keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub(crate) root: Node,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// Keep the value here whole (a path ends here).
    pub(crate) whole: bool,
    /// The keys wanted under this one, and what to keep under them.
    children: Vec<Child>,
    /// Bit `min(len, 63)` set for the length of each child's key: an ASCII key of any
    /// other length matches none of them.
    lengths: u64,
    /// Each child's index + 1 in the slot its [`signature`] hashes to, or in the next free
    /// one (0: free; at least half are), so that an ASCII key meets only the children with
    /// its signature (and those that probe past them), not every child.
    slots: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Child {
    /// The key's [`signature`]: an ASCII key matches only a child with its own.
    signature: u32,
    /// The key as first added: logs mostly spell a key as rules do, and an exact
    /// comparison is the cheap one.
    spelled: String,
    /// The key lowercased (Unicode `to_lowercase`).
    lower: String,
    node: Node,
}

impl Node {
    /// The child a JSON key may be looked up by, with its index among the children:
    /// compared ASCII-case-insensitively with each lowercased wanted key, or lowercased
    /// first when it is not ASCII. That keeps every key [`crate::get`] could match (and a
    /// few it could not, which costs nothing).
    #[inline]
    pub(crate) fn child(&self, key: &str) -> Option<(u32, &Node)> {
        match key.is_ascii() {
            true => self.ascii_child(key.as_bytes()),
            false => self.unicode_child(key),
        }
    }

    /// [`Node::child`] for a key that is not ASCII: rare, and kept out of line so that
    /// the common lookup does not pay for its `String`.
    #[cold]
    fn unicode_child(&self, key: &str) -> Option<(u32, &Node)> {
        let lower = key.to_lowercase();
        let index = self.children.iter().position(|c| c.lower == lower)?;
        Some((index as u32, &self.children[index].node))
    }

    /// [`Node::child`] for a key known to be ASCII (its bytes). Inlined into the scanner,
    /// which calls it for every key of a line.
    #[inline(always)]
    pub(crate) fn ascii_child(&self, key: &[u8]) -> Option<(u32, &Node)> {
        if self.lengths & length_bit(key) == 0 {
            return None;
        }
        let signature = signature(key);
        let mask = self.slots.len().wrapping_sub(1);
        let mut at = slot(signature, mask);
        loop {
            // A free slot ends the probe.
            let index = self.slots.get(at)?.checked_sub(1)?;
            let c = &self.children[index as usize];
            if c.signature == signature
                && (same_key(c.spelled.as_bytes(), key)
                    || c.lower.as_bytes().eq_ignore_ascii_case(key))
            {
                return Some((index, &c.node));
            }
            at = (at + 1) & mask;
        }
    }

    /// Fills [`Node::slots`] anew for the children.
    fn index(&mut self) {
        let len = (self.children.len() * 2).next_power_of_two().max(8);
        self.slots = vec![0; len];
        for (index, child) in self.children.iter().enumerate() {
            let mut at = slot(child.signature, len - 1);
            while self.slots[at] != 0 {
                at = (at + 1) & (len - 1);
            }
            self.slots[at] = u32::try_from(index + 1).expect("fewer than 2^32 keys");
        }
    }

    /// How many keys are wanted here.
    pub(crate) fn width(&self) -> usize {
        self.children.len()
    }
}

/// The first slot a [`signature`] probes, of a table of `mask + 1` (a power of two) slots.
fn slot(signature: u32, mask: usize) -> usize {
    (signature.wrapping_mul(0x9e37_79b9) >> 16) as usize & mask
}

fn length_bit(key: &[u8]) -> u64 {
    1 << key.len().min(63)
}

/// A key's length with its first and last bytes, ASCII letters lowercased (`| 0x20`, which
/// keeps every two bytes that are equal ignoring ASCII case equal): two keys that are equal
/// ignoring ASCII case have the same signature.
fn signature(key: &[u8]) -> u32 {
    match key {
        [] => 0,
        [first, .., last] | [first @ last] => {
            ((key.len().min(0xffff) as u32) << 16)
                | (u32::from(first | 0x20) << 8)
                | u32::from(last | 0x20)
        }
    }
}

impl Wanted {
    /// Nothing wanted: a pruned parse keeps an empty object.
    pub fn nothing() -> Self {
        Wanted::default()
    }

    /// Everything wanted: a pruned parse is a full parse.
    pub fn everything() -> Self {
        Wanted {
            root: Node {
                whole: true,
                ..Node::default()
            },
        }
    }

    /// Keeps the value at `path` whole, and everything on the way to it. Returns whether
    /// that changed anything.
    pub fn add<S: AsRef<str>>(&mut self, path: &[S]) -> bool {
        let mut node = &mut self.root;
        for key in path {
            if node.whole {
                return false;
            }
            let spelled = key.as_ref();
            let key = spelled.to_lowercase();
            let at = match node.children.iter().position(|c| c.lower == key) {
                Some(at) => at,
                None => {
                    node.lengths |= length_bit(key.as_bytes());
                    node.children.push(Child {
                        signature: signature(key.as_bytes()),
                        spelled: spelled.to_owned(),
                        lower: key,
                        node: Node::default(),
                    });
                    node.index();
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at].node;
        }
        let changed = !node.whole;
        node.whole = true;
        node.children.clear();
        node.lengths = 0;
        node.slots.clear();
        changed
    }

    /// Whether `deep_get(path)` on a pruned parse gives what it gives on a full one: the
    /// path reaches a value kept whole.
    pub fn covers<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.descend(path, |_, _| {}).is_ok()
    }

    /// `path`, which the tree covers, resolved against it ([`Resolved`]).
    pub fn resolve<S: AsRef<str>>(&self, path: &[S]) -> Result<Resolved, Uncovered> {
        let mut steps = Vec::new();
        self.descend(path, |index, _| steps.push(index))?;
        Ok(Resolved(steps))
    }

    /// Follows `path` down the tree to a value kept whole, calling `step` with the index
    /// of each child it takes and its key: how many keys that took, or [`Uncovered`].
    /// The keys kept at each level are those [`Node::child`] finds, so a key covers what
    /// `child` finds it under (by the same comparison, without allocating).
    pub(crate) fn descend<S: AsRef<str>>(
        &self,
        path: &[S],
        mut step: impl FnMut(u32, &str),
    ) -> Result<usize, Uncovered> {
        let mut node = &self.root;
        for (at, key) in path.iter().enumerate() {
            if node.whole {
                return Ok(at);
            }
            let (index, child) = node.child(key.as_ref()).ok_or(Uncovered)?;
            step(index, key.as_ref());
            node = child;
        }
        match node.whole {
            true => Ok(path.len()),
            false => Err(Uncovered),
        }
    }

    /// Whether everything is wanted (a pruned parse would be a full one).
    pub fn is_everything(&self) -> bool {
        self.root.whole
    }

    /// How many paths end in a value kept whole.
    pub fn len(&self) -> usize {
        fn count(node: &Node) -> usize {
            if node.whole {
                1
            } else {
                node.children.iter().map(|c| count(&c.node)).sum()
            }
        }
        count(&self.root)
    }

    /// Whether nothing is wanted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses `text`, keeping what `wanted` covers. A root that is not an object comes back
/// as a value of its kind (an array empty), for the caller to refuse; errors are the full
/// parser's own.
pub fn parse_pruned(text: &str, wanted: &Wanted) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Pruned(&wanted.root).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The value at one node of the tree.
struct Pruned<'a>(&'a Node);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(PrunedVisitor(self.0))
    }
}

struct PrunedVisitor<'a>(&'a Node);

impl<'de> Visitor<'de> for PrunedVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.child(key.as_str()) {
                Some((_, child)) => {
                    let value = map.next_value_seed(Pruned(child))?;
                    kept.insert(key.into_string(), value);
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(kept))
    }

    // Not an object where a path goes on: nothing under it can be found, so it is not
    // kept (validated all the same).
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Skip.visit_seq(seq)?;
        Ok(Value::Array(Vec::new()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Value, E> {
        Ok(Value::String(String::new()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// An object key, borrowed from the input when it has no escapes.
enum KeyText<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl KeyText<'_> {
    fn as_str(&self) -> &str {
        match self {
            KeyText::Borrowed(s) => s,
            KeyText::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            KeyText::Borrowed(s) => s.to_owned(),
            KeyText::Owned(s) => s,
        }
    }
}

struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = KeyText<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyText<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = KeyText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Owned(v.to_owned()))
    }
}

/// A value read (so validated exactly as a full parse validates it, the nesting limit
/// included) and dropped, without building it.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(SkipKey)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A key skipped with its value.
struct SkipKey;

impl<'de> DeserializeSeed<'de> for SkipKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deep_get;
    use serde_json::json;

    fn wanted(paths: &[&[&str]]) -> Wanted {
        let mut w = Wanted::nothing();
        for p in paths {
            w.add(p);
        }
        w
    }

    const EVENT: &str = r#"{"actionName": "login", "userIdentity": {"email": "a@b.c", "id": 7},
        "USERIDENTITY": {"email": "other"}, "requestParams": {"x": [1, {"y": 2}]},
        "workspaceId": null, "big": 18446744073709551615, "f": 1.5e3, "esc": "\u00e9\n",
        "noise": {"deep": [[[{"a": "b"}]]], "s": "text \"quoted\""}, "arr": [1, 2]}"#;

    #[test]
    fn covered_paths_read_as_in_a_full_parse() {
        let full: Value = serde_json::from_str(EVENT).unwrap();
        let paths: &[&[&str]] = &[
            &["actionName"],
            &["userIdentity", "email"],
            &["useridentity", "EMAIL"],
            &["requestParams"],
            &["workspaceId"],
            &["big"],
            &["f"],
            &["esc"],
            &["missing"],
            &["arr", "x"],
        ];
        let w = wanted(paths);
        let pruned = parse_pruned(EVENT, &w).unwrap();
        for path in paths {
            assert!(w.covers(path), "{path:?}");
            assert_eq!(deep_get(&pruned, path), deep_get(&full, path), "{path:?}");
        }
        // What no path wants is not kept.
        assert!(pruned.get("noise").is_none());
        assert!(!w.covers(&["noise"]));
        assert!(!w.covers(&["userIdentity"]), "kept in part only");
        assert!(!w.covers(&["userIdentity", "id"]));
    }

    #[test]
    fn every_case_variant_and_duplicate_is_kept_in_order() {
        let text = r#"{"EMAIL": 1, "eMail": 2, "email": 3, "email": 4, "other": 5}"#;
        let full: Value = serde_json::from_str(text).unwrap();
        let pruned = parse_pruned(text, &wanted(&[&["Email"]])).unwrap();
        for key in ["email", "Email", "EMAIL", "eMail", "emaiL"] {
            assert_eq!(deep_get(&pruned, &[key]), deep_get(&full, &[key]), "{key}");
        }
        assert_eq!(pruned.as_object().unwrap().len(), 3);
        // Non-ASCII keys fold as `get` folds them.
        let text = r#"{"ÉTÉ": 1, "été": 2}"#;
        let full: Value = serde_json::from_str(text).unwrap();
        let pruned = parse_pruned(text, &wanted(&[&["Été"]])).unwrap();
        assert_eq!(deep_get(&pruned, &["Été"]), deep_get(&full, &["Été"]));
        assert_eq!(deep_get(&pruned, &["été"]), Some(&json!(2)));
    }

    #[test]
    fn bad_lines_fail_the_same_way() {
        let deep = format!("{{\"noise\": {}{}}}", "[".repeat(200), "]".repeat(200));
        let cases = [
            r#"{"a": 1"#.to_owned(),
            r#"{"noise": [1, 2,]}"#.to_owned(),
            "{\"noise\": \"tab\there\"}".to_owned(),
            r#"{"noise": "\x"}"#.to_owned(),
            r#"{"noise": 01}"#.to_owned(),
            r#"{"a": 1} trailing"#.to_owned(),
            deep,
            r#"{"noise": {"k" 1}}"#.to_owned(),
        ];
        for text in cases {
            let full = serde_json::from_str::<Value>(&text).map_err(|e| e.to_string());
            let pruned = parse_pruned(&text, &wanted(&[&["a"]])).map_err(|e| e.to_string());
            assert!(full.is_err(), "{text}");
            assert_eq!(pruned.err(), full.err(), "{text}");
        }
    }

    #[test]
    fn roots_that_are_not_objects_keep_their_kind() {
        let w = wanted(&[&["a"]]);
        assert!(parse_pruned("[1, 2]", &w).unwrap().is_array());
        assert!(parse_pruned("\"s\"", &w).unwrap().is_string());
        assert!(parse_pruned("3", &w).unwrap().is_number());
        assert!(parse_pruned("null", &w).unwrap().is_null());
        assert_eq!(
            parse_pruned(EVENT, &Wanted::everything()).unwrap(),
            serde_json::from_str::<Value>(EVENT).unwrap()
        );
    }

    #[test]
    fn children_that_share_a_signature_are_all_found() {
        // "a0z".."a9z" and "A0Z".. share one signature; 40 keys fill many probe chains.
        let keys: Vec<String> = (0..40).map(|i| format!("a{i}z")).collect();
        let mut w = Wanted::nothing();
        for key in &keys {
            w.add(&[key.as_str()]);
        }
        for key in &keys {
            let (index, node) = w.root.ascii_child(key.as_bytes()).expect(key);
            assert!(node.whole, "{key}");
            assert_eq!(w.root.children[index as usize].lower, *key);
            let upper = key.to_uppercase();
            let (same, by_upper) = w.root.ascii_child(upper.as_bytes()).unwrap();
            assert!(same == index && std::ptr::eq(by_upper, node), "{key}");
        }
        for missing in ["a40z", "a0y", "b0z", "a", ""] {
            assert!(
                w.root.ascii_child(missing.as_bytes()).is_none(),
                "{missing}"
            );
        }
        assert!(Wanted::nothing().root.ascii_child(b"a").is_none());
    }

    #[test]
    fn adding_a_path_under_a_whole_one_changes_nothing() {
        let mut w = wanted(&[&["a"]]);
        assert!(!w.add(&["a", "b"]));
        assert!(w.covers(&["A", "b", "c"]));
        assert!(w.add(&["c", "d"]));
        assert!(!w.add(&["c", "d"]));
        // Wanting a parent whole absorbs its children.
        assert!(w.add(&["c"]));
        assert!(w.covers(&["c", "x"]));
    }
}
