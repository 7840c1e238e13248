//! [`Event`]: the event a rule function reads.

use crate::Value;

/// The event under evaluation.
///
/// Inside the sandbox it stands for the event the host lent the call; a read is a call to
/// the host, unless the host packed the field's value into the call (`evaluate-batch`'s
/// `fields`). Natively (in `cargo test`) it wraps parsed JSON and applies the same lookup
/// semantics through `rulehost-event`.
pub struct Event<'a> {
    /// The host's event.
    #[cfg(target_arch = "wasm32")]
    source: Source<'a>,
    /// This event's section of `evaluate-batch`'s `fields`: values the host read ahead
    /// (empty in other calls).
    #[cfg(target_arch = "wasm32")]
    packed: &'a [u8],
    /// Values already read during this export call, when several rule functions run in
    /// one call (`evaluate-batch`): `dedup` reading a field `rule` read costs no second
    /// host call. Lives only as long as the call, so rules stay stateless.
    #[cfg(target_arch = "wasm32")]
    memo: Option<Memo>,
    #[cfg(not(target_arch = "wasm32"))]
    json: std::borrow::Cow<'a, serde_json::Value>,
}

/// Where the host's event is: lent alone, or one of a batch.
#[cfg(target_arch = "wasm32")]
enum Source<'a> {
    One(&'a crate::bindings::rulehost::rules::types::Event),
    Batch(&'a crate::bindings::rulehost::rules::types::Events, u32),
}

/// Each field read during one call (by its `field` id), and what it gave.
#[cfg(target_arch = "wasm32")]
type Memo = std::cell::RefCell<Vec<(u32, Option<Value>)>>;

/// Paths this SDK registers with the host's `field` per instance; past it a path is read
/// with `get`. The list is searched on every read, so it stays short.
#[cfg(target_arch = "wasm32")]
const MAX_FIELDS: usize = 64;

/// A registered path and the id the host gave it.
#[cfg(target_arch = "wasm32")]
type Registered = (Box<[Box<str>]>, Option<u32>);

#[cfg(target_arch = "wasm32")]
thread_local! {
    /// The paths registered in this instance and the id the host gave each (`None`: the
    /// host refused, read with `get`). An instance is replaced with its memory after a
    /// trap, so the ids always belong to the instance that registered them.
    static FIELDS: std::cell::RefCell<Vec<Registered>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The id of `path` for `get-field`, registering it on first use.
#[cfg(target_arch = "wasm32")]
fn field_id(path: &[&str]) -> Option<u32> {
    FIELDS.with_borrow_mut(|fields| {
        let known = fields
            .iter()
            .find(|(p, _)| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| same(a, b)));
        if let Some((_, id)) = known {
            return *id;
        }
        if fields.len() >= MAX_FIELDS {
            return None;
        }
        let id = crate::bindings::rulehost::rules::types::field(path);
        fields.push((path.iter().map(|k| Box::from(*k)).collect(), id));
        id
    })
}

/// `a == b` in a few word loads: on wasm32 `==` calls a `memcmp` that compares one byte at
/// a time, and every read compares the keys of its path. Eight bytes at a time, then the
/// last eight (which may overlap the words before); a key shorter than eight bytes is read
/// as two loads of four, two or one byte(s) that may overlap.
#[cfg(any(target_arch = "wasm32", test))]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn load<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
        bytes[at..at + N].try_into().expect("N bytes")
    }
    fn ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        let n = a.len();
        load::<N>(a, 0) == load::<N>(b, 0) && load::<N>(a, n - N) == load::<N>(b, n - N)
    }
    match n {
        0 => true,
        1 => a[0] == b[0],
        2..4 => ends::<2>(a, b),
        4..8 => ends::<4>(a, b),
        _ => {
            (0..n - 8)
                .step_by(8)
                .all(|at| u64::from_le_bytes(load(a, at)) == u64::from_le_bytes(load(b, at)))
                && load::<8>(a, n - 8) == load::<8>(b, n - 8)
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl<'a> Event<'a> {
    /// The event of a call of one rule function (`rule`, `title`, ...).
    #[doc(hidden)]
    pub fn for_call(handle: &'a crate::bindings::rulehost::rules::types::Event) -> Self {
        Event {
            source: Source::One(handle),
            packed: &[],
            memo: None,
        }
    }

    /// Event `index` of an `evaluate-batch` call, which runs several rule functions, with
    /// its section of `fields`: every value read is remembered for the life of the `Event`.
    #[doc(hidden)]
    pub fn for_batch(
        events: &'a crate::bindings::rulehost::rules::types::Events,
        index: u32,
        fields: &'a [u8],
    ) -> Self {
        Event {
            source: Source::Batch(events, index),
            packed: fields,
            memo: Some(Default::default()),
        }
    }

    fn get_path(&self, path: &[&str]) -> Option<crate::bindings::rulehost::rules::types::Value> {
        match self.source {
            Source::One(event) => event.get(path),
            Source::Batch(events, index) => events.get(index, path),
        }
    }

    fn get_id(&self, id: u32) -> Option<crate::bindings::rulehost::rules::types::Value> {
        match self.source {
            Source::One(event) => event.get_field(id),
            Source::Batch(events, index) => events.get_field(index, id),
        }
    }

    fn lookup(&self, path: &[&str]) -> Option<Value> {
        let Some(id) = field_id(path) else {
            return from_wit(self.get_path(path));
        };
        if let Some(value) = crate::packed::find(self.packed, id) {
            return value;
        }
        let Some(memo) = &self.memo else {
            return from_wit(self.get_id(id));
        };
        if let Some((_, value)) = memo.borrow().iter().find(|(i, _)| *i == id) {
            return value.clone();
        }
        let value = from_wit(self.get_id(id));
        memo.borrow_mut().push((id, value.clone()));
        value
    }
}

#[cfg(target_arch = "wasm32")]
fn from_wit(value: Option<crate::bindings::rulehost::rules::types::Value>) -> Option<Value> {
    use crate::bindings::rulehost::rules::types::Value as Wit;
    Some(match value? {
        Wit::Null => Value::Null,
        Wit::Boolean(b) => Value::Bool(b),
        Wit::Integer(i) => Value::Int(i),
        Wit::Float(f) => Value::Float(f),
        Wit::Text(s) => Value::Str(s),
        Wit::Json(j) => Value::Json(j),
    })
}

#[cfg(not(target_arch = "wasm32"))]
impl Event<'static> {
    /// Parses one JSON event, for native tests of rule logic.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        Ok(Self::from_value(serde_json::from_str(json)?))
    }

    /// Wraps an already parsed JSON event, for native tests of rule logic.
    pub fn from_value(json: serde_json::Value) -> Self {
        Event {
            json: std::borrow::Cow::Owned(json),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Event<'_> {
    fn lookup(&self, path: &[&str]) -> Option<Value> {
        use serde_json::Value as Json;
        Some(match rulehost_event::deep_get(&self.json, path)? {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Value::Str(s.clone()),
            other => Value::Json(other.to_string()),
        })
    }
}

impl Event<'_> {
    /// Python's `event.get(key)`: `None` when the key is missing, `Some(Value::Null)` when it
    /// is present with a null value. The key falls back to a case-insensitive match.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.lookup(&[key])
    }

    /// Panther's `event.deep_get(*path)`: walks nested objects; `None` when any key is
    /// missing, a non-object is on the way, or the value is null.
    pub fn deep_get(&self, path: &[&str]) -> Option<Value> {
        self.lookup(path).filter(|v| !v.is_null())
    }

    /// `get(key)` when the value is a string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `deep_get(path)` when the value is a string.
    pub fn deep_get_str(&self, path: &[&str]) -> Option<String> {
        match self.deep_get(path)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python's `str(event.get(key, default))`: the default when the key is missing,
    /// `"None"` when it is null, as an f-string would print it.
    pub fn get_or(&self, key: &str, default: &str) -> String {
        self.get(key)
            .map_or_else(|| default.to_owned(), Value::into_python_string)
    }

    /// Python's `str(event.deep_get(*path, default=default))`: the default when the value is
    /// missing or null.
    pub fn deep_get_or(&self, path: &[&str], default: &str) -> String {
        self.deep_get(path)
            .map_or_else(|| default.to_owned(), Value::into_python_string)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn same_is_byte_equality() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "email",
            "Email",
            "userIdentity",
            "userIdentitx",
            "workspaceId",
            "workspaceIdd",
            "0123456789abcdef",
            "0123456789abcdeF",
            "é",
            "e\u{301}",
        ];
        for a in words {
            for b in words {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
        // Every length a load size covers, and a difference at each position of it.
        let text = "abcdefghijklmnopqrstuvwx";
        for n in 0..=text.len() {
            let a = &text[..n];
            assert!(same(a, a));
            for at in 0..n {
                let mut b = a.as_bytes().to_vec();
                b[at] = b'-';
                let b = std::str::from_utf8(&b).unwrap();
                assert!(!same(a, b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn get_and_deep_get_follow_python() {
        let e = Event::from_json(r#"{"ws": null, "User": {"Email": "a@b.c"}, "n": 4}"#).unwrap();
        assert_eq!(e.get("ws"), Some(Value::Null));
        assert_eq!(e.deep_get(&["ws"]), None);
        assert_eq!(e.get_or("ws", "dflt"), "None");
        assert_eq!(e.get_or("missing", "dflt"), "dflt");
        assert_eq!(e.deep_get_or(&["ws"], "dflt"), "dflt");
        assert_eq!(e.deep_get_str(&["user", "email"]).as_deref(), Some("a@b.c"));
        assert_eq!(e.get("N"), Some(Value::Int(4)));
        assert_eq!(e.get_str("n"), None);
    }
}
