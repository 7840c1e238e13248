//! Panther's event-access semantics, shared by the rulehost host and the SDK's native mode.
//!
//! The main entry point is [`deep_get`]: it walks a parsed JSON event the way Panther's
//! `PantherEvent.deep_get` does, so a rule gives the same answer inside the sandbox and in a
//! native `cargo test`.
//!
//! ```
//! let event: serde_json::Value =
//!     serde_json::from_str(r#"{"userIdentity": {"Email": "a@example.com"}}"#).unwrap();
//! let email = rulehost_event::deep_get(&event, &["userIdentity", "email"]);
//! assert_eq!(email.and_then(|v| v.as_str()), Some("a@example.com"));
//! ```

mod prune;
mod scan;

pub use prune::{Resolved, Wanted, parse_pruned};
pub use scan::{Found, Kept, Key, Lazy, Raw, Uncovered, Via, digits_u64, parse_kept};

use serde_json::{Map, Value};

/// Up to this many keys, an exact lookup compares keys in order instead of hashing `key`:
/// an event object has a few dozen keys at most, and comparing lengths first rejects
/// almost every key in one instruction, while the map's SipHash costs more than the scan.
const LINEAR_SCAN_MAX: usize = 32;

/// Whether two keys are the same bytes: up to 16 bytes long, in two loads of each that
/// may overlap, in line; longer, by `==` (a call to `memcmp`, which costs more than the
/// comparison of a short key).
#[inline]
pub(crate) fn same_key(a: &[u8], b: &[u8]) -> bool {
    fn ends<const N: usize>(s: &[u8]) -> ([u8; N], [u8; N]) {
        let first = s[..N].try_into().expect("N bytes");
        let last = s[s.len() - N..].try_into().expect("N bytes");
        (first, last)
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        0 => true,
        1 => a[0] == b[0],
        2..4 => ends::<2>(a) == ends::<2>(b),
        4..8 => ends::<4>(a) == ends::<4>(b),
        8..=16 => ends::<8>(a) == ends::<8>(b),
        _ => a == b,
    }
}

/// Looks up `key` in an object: the exact key first, then the first key in document order
/// that matches case-insensitively (Panther's `ImmutableCaseInsensitiveDict`).
pub fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let exact = if object.len() <= LINEAR_SCAN_MAX {
        object.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    } else {
        object.get(key)
    };
    if exact.is_some() {
        return exact;
    }
    if key.is_ascii() {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    } else {
        let wanted = key.to_lowercase();
        object
            .iter()
            .find(|(k, _)| k.to_lowercase() == wanted)
            .map(|(_, v)| v)
    }
}

/// Walks `path` through nested objects, each step with [`get`]'s key fallback.
///
/// Returns `None` when a key is missing or a non-object (array, scalar, null) stands on the
/// way. Returns `Some(&Value::Null)` when the final value is JSON `null`: the caller decides
/// whether null means "use the default" (Panther's `deep_get`) or not (Python's `dict.get`).
pub fn deep_get<'a, S: AsRef<str>>(root: &'a Value, path: &[S]) -> Option<&'a Value> {
    let mut current = root;
    for key in path {
        current = get(current.as_object()?, key.as_ref())?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_key_wins_over_case_insensitive_match() {
        let event = json!({"Email": "upper", "email": "lower"});
        assert_eq!(deep_get(&event, &["email"]), Some(&json!("lower")));
        assert_eq!(deep_get(&event, &["Email"]), Some(&json!("upper")));
    }

    #[test]
    fn case_insensitive_fallback_takes_first_key_in_document_order() {
        let event: Value = serde_json::from_str(r#"{"EMAIL": 1, "eMail": 2}"#).unwrap();
        assert_eq!(deep_get(&event, &["email"]), Some(&json!(1)));
    }

    #[test]
    fn non_ascii_keys_fold_case() {
        let event = json!({"Straße": 1, "ÉTÉ": 2});
        assert_eq!(deep_get(&event, &["été"]), Some(&json!(2)));
    }

    #[test]
    fn same_key_is_byte_equality() {
        let key: Vec<u8> = (b'a'..=b'z').collect();
        for len in 0..key.len() {
            let a = &key[..len];
            assert!(same_key(a, a));
            assert!(!same_key(a, &key[..len + 1]), "{len}");
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_key(a, &b), "{len} {at}");
            }
        }
        assert!(
            !same_key(b"a\0", b"\0a"),
            "no byte may be lost to the packing"
        );
    }

    #[test]
    fn walks_objects_only() {
        let event = json!({"a": {"b": [1, 2]}, "s": "x", "n": null});
        assert_eq!(deep_get(&event, &["a", "b"]), Some(&json!([1, 2])));
        assert_eq!(deep_get(&event, &["a", "b", "0"]), None);
        assert_eq!(deep_get(&event, &["s", "x"]), None);
        assert_eq!(deep_get(&event, &["n", "x"]), None);
        assert_eq!(deep_get(&event, &["missing"]), None);
    }

    #[test]
    fn null_is_distinct_from_missing() {
        let event = json!({"workspaceId": null});
        assert_eq!(deep_get(&event, &["workspaceId"]), Some(&Value::Null));
        assert_eq!(deep_get(&event, &["workspaceid"]), Some(&Value::Null));
        assert_eq!(deep_get(&event, &["other"]), None);
    }

    #[test]
    fn empty_path_is_the_root() {
        let event = json!({"a": 1});
        assert_eq!(deep_get::<&str>(&event, &[]), Some(&event));
    }
}
