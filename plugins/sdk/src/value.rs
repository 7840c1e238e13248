//! [`Value`]: one JSON value read from an event, with Python's truthiness, numbers and
//! equality; [`Object`]: the members of a JSON object.

use std::fmt::Write as _;

use crate::Error;

/// A JSON value read from an event. Arrays and objects arrive as compact JSON text, since
/// rules mostly pass them through (into an alert context) rather than walk them; read them
/// with [`Value::as_list`], [`Value::as_object`], [`Value::get`], [`Value::index`] and
/// [`Value::len`], which split the text one level deep.
///
/// It behaves as the Python value Panther's `event.get` returns:
/// - [`Value::truthy`] is Python's `bool(value)` (`if value:`);
/// - `==` is Python's: `Int(200) == Float(200.0)`, `Bool(true) == Int(1)`, arrays and
///   objects compare by content (`[1] == [1.0]`, key order aside), and a value compares with
///   `i64`, `f64`, `bool` and `&str` directly (`status == 200`);
/// - [`Value::python_type`] names its Python type, for the exceptions a port raises.
///
/// ```
/// use rulehost_sdk::Value;
///
/// assert!(Value::Float(200.0) == 200);
/// assert!(!Value::Json("[]".into()).truthy());
/// let list = Value::Json(r#"["a", {"b": 2}]"#.into());
/// assert_eq!(list.len(), Some(2));
/// assert_eq!(list.index(1).unwrap().get("B"), Some(Value::Int(2)));
/// ```
#[derive(Debug, Clone)]
pub enum Value {
    /// JSON `null`.
    Null,
    /// JSON `true` or `false`.
    Bool(bool),
    /// An integer within the signed 64-bit range.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(String),
    /// An array or object, as JSON text.
    Json(String),
}

impl Value {
    /// Python's truthiness (`bool(value)`): `None`, `False`, `0`, `0.0`, `""`, `[]` and
    /// `{}` are false; everything else (`NaN` too) is true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Json(j) => !crate::json::is_empty_container(j),
        }
    }

    /// The number as an `i64` when it is one exactly: an `Int`, or a `Float` with an
    /// integral value within range (`200.0` gives `200`, `2.5` gives `None`). Not for
    /// booleans or strings (`"200"` gives `None`, as no Python number would come of it
    /// without an explicit `int()`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) => float_as_i64(*f),
            _ => None,
        }
    }

    /// The number as an `f64`: an `Int` (converted, as Python's `float()`), or a `Float`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            // Rounds to the nearest f64, as Python's float(int) does.
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Whether this is a JSON array.
    pub fn is_list(&self) -> bool {
        matches!(self, Value::Json(j) if j.trim_start().starts_with('['))
    }

    /// Whether this is a JSON object.
    pub fn is_object(&self) -> bool {
        matches!(self, Value::Json(j) if j.trim_start().starts_with('{'))
    }

    /// The elements of a JSON array, in order (nested arrays and objects as `Json`); `None`
    /// for anything else.
    pub fn as_list(&self) -> Option<Vec<Value>> {
        match self {
            Value::Json(j) => crate::json::list(j),
            _ => None,
        }
    }

    /// The members of a JSON object, in document order; `None` for anything else.
    pub fn as_object(&self) -> Option<Object> {
        match self {
            Value::Json(j) => crate::json::object(j).map(|entries| Object { entries }),
            _ => None,
        }
    }

    /// Python's `len(value)`: characters of a string, elements of an array, members of an
    /// object; `None` where Python raises `TypeError` (numbers, booleans, `None`).
    #[expect(
        clippy::len_without_is_empty,
        reason = "`truthy` is Python's emptiness test, for every type"
    )]
    pub fn len(&self) -> Option<usize> {
        match self {
            Value::Str(s) => Some(s.chars().count()),
            Value::Json(_) => self
                .as_list()
                .map(|l| l.len())
                .or_else(|| self.as_object().map(|o| o.len())),
            _ => None,
        }
    }

    /// Element `index` of a JSON array (Python's `value[index]`; negative counts from the
    /// end); `None` when out of range or not an array.
    pub fn index(&self, index: isize) -> Option<Value> {
        let mut list = self.as_list()?;
        let at = if index < 0 {
            list.len().checked_sub(index.unsigned_abs())?
        } else {
            index.unsigned_abs()
        };
        (at < list.len()).then(|| list.swap_remove(at))
    }

    /// Member `key` of a JSON object, found as the event's keys are (exact, then
    /// case-insensitive, as Panther's nested dicts do); `None` when absent or not an
    /// object. A present `null` is `Some(Value::Null)`, as with [`Event::get`](crate::Event::get).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.as_object()?.remove(key)
    }

    /// The keys of a JSON object, in document order.
    pub fn keys(&self) -> Option<Vec<String>> {
        Some(
            self.as_object()?
                .entries
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
        )
    }

    /// Python's `item in value`: a substring of a string, an element of an array (by
    /// Python's `==`), a key of an object (case-insensitive, as Panther's dicts); any other
    /// type raises `TypeError: argument of type 'int' is not iterable`, as Python does.
    pub fn contains(&self, item: &str) -> Result<bool, Error> {
        match self {
            Value::Str(s) => Ok(s.contains(item)),
            Value::Json(_) if self.is_list() => Ok(self
                .as_list()
                .unwrap_or_default()
                .iter()
                .any(|v| *v == *item)),
            Value::Json(_) => Ok(self.as_object().is_some_and(|o| o.get(item).is_some())),
            other => Err(Error::type_error(format!(
                "argument of type '{}' is not iterable",
                other.python_type()
            ))),
        }
    }

    /// Whether Python's `value in values` holds for a list of strings: only a string equal
    /// to one of them (a `None` or a number is in no list of strings).
    pub fn is_in(&self, values: &[&str]) -> bool {
        matches!(self, Value::Str(s) if values.contains(&s.as_str()))
    }

    /// The name of the Python type Panther's event gives this value (`NoneType`, `bool`,
    /// `int`, `float`, `str`, `ImmutableList`, `ImmutableCaseInsensitiveDict`), for the
    /// messages of the exceptions a port raises.
    pub fn python_type(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Json(_) if self.is_list() => "ImmutableList",
            Value::Json(_) => "ImmutableCaseInsensitiveDict",
        }
    }

    /// The string, if this is a JSON string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is JSON `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as Python's `str()` prints it, so titles match Panther's f-strings:
    /// `None`, `True`, `False`, `1.0`, strings unquoted. Arrays and objects print as JSON.
    pub fn to_python_string(&self) -> String {
        match self {
            Value::Null => "None".to_owned(),
            Value::Bool(true) => "True".to_owned(),
            Value::Bool(false) => "False".to_owned(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => python_float(*f),
            Value::Str(s) => s.clone(),
            Value::Json(j) => j.clone(),
        }
    }

    /// [`Value::to_python_string`] that moves a string out instead of copying it.
    pub fn into_python_string(self) -> String {
        match self {
            Value::Str(s) | Value::Json(s) => s,
            other => other.to_python_string(),
        }
    }

    /// The value as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            // Event values are always finite: they came from JSON.
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f:?}");
            }
            Value::Float(_) => out.push_str("null"),
            Value::Str(s) => write_json_string(s, out),
            Value::Json(j) => out.push_str(j),
        }
    }
}

/// A number as Python compares it: an integer exactly, or a float.
enum Number {
    Int(i64),
    Float(f64),
}

impl Value {
    fn number(&self) -> Option<Number> {
        Some(match self {
            Value::Bool(b) => Number::Int(i64::from(*b)),
            Value::Int(i) => Number::Int(*i),
            Value::Float(f) => Number::Float(*f),
            _ => return None,
        })
    }
}

/// `f` as an `i64` when it is integral and in range.
fn float_as_i64(f: f64) -> Option<i64> {
    // 2^63 as f64 is exact; every integral f64 in [-2^63, 2^63) converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    // Checked integral and in range, so the cast is exact.
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

impl PartialEq for Value {
    /// Python's `==` (see [`Value`]).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Json(a), Value::Json(b)) => a == b || json_eq(self, other),
            _ => match (self.number(), other.number()) {
                (Some(Number::Int(a)), Some(Number::Int(b))) => a == b,
                (Some(Number::Float(a)), Some(Number::Float(b))) => a == b,
                (Some(Number::Int(i)), Some(Number::Float(f)))
                | (Some(Number::Float(f)), Some(Number::Int(i))) => float_as_i64(f) == Some(i),
                _ => false,
            },
        }
    }
}

/// Arrays element by element, objects key by key (in any order), by Python's `==`.
fn json_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (a.as_list(), b.as_list()) {
        return x == y;
    }
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.entries.iter().all(|(k, v)| {
                    y.entries
                        .iter()
                        .find(|(key, _)| key == k)
                        .is_some_and(|(_, w)| v == w)
                })
        }
        _ => false,
    }
}

impl PartialEq<i64> for Value {
    fn eq(&self, other: &i64) -> bool {
        *self == Value::Int(*other)
    }
}

impl PartialEq<f64> for Value {
    fn eq(&self, other: &f64) -> bool {
        *self == Value::Float(*other)
    }
}

impl PartialEq<bool> for Value {
    fn eq(&self, other: &bool) -> bool {
        *self == Value::Bool(*other)
    }
}

impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        matches!(self, Value::Str(s) if s == other)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

/// The members of a JSON object ([`Value::as_object`]), in document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    entries: Vec<(String, Value)>,
}

impl Object {
    /// Member `key`: the exact key first, else the first key equal to it ignoring case (as
    /// the event's own keys, and Panther's nested dicts).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    fn remove(mut self, key: &str) -> Option<Value> {
        let i = self.position(key)?;
        Some(self.entries.swap_remove(i).1)
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key).or_else(|| {
            let wanted = key.to_lowercase();
            self.entries
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case(key) || k.to_lowercase() == wanted)
        })
    }

    /// The keys, in document order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The members, in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

/// Python's `repr(float)` for the common cases: integral floats keep a `.0`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{f:?}")
    }
}

pub(crate) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strings() {
        assert_eq!(Value::Null.to_python_string(), "None");
        assert_eq!(Value::Bool(true).to_python_string(), "True");
        assert_eq!(Value::Int(-3).to_python_string(), "-3");
        assert_eq!(Value::Float(2.0).to_python_string(), "2.0");
        assert_eq!(Value::Float(0.5).to_python_string(), "0.5");
        assert_eq!(Value::Str("a b".into()).to_python_string(), "a b");
        assert_eq!(Value::Str("a b".into()).into_python_string(), "a b");
        assert_eq!(Value::Json("[1]".into()).into_python_string(), "[1]");
        assert_eq!(Value::Null.into_python_string(), "None");
    }

    #[test]
    fn truthiness_is_pythons() {
        let falsy = [
            Value::Null,
            Value::Bool(false),
            Value::Int(0),
            Value::Float(0.0),
            Value::Float(-0.0),
            Value::Str(String::new()),
            Value::Json("[]".into()),
            Value::Json("{}".into()),
        ];
        for v in falsy {
            assert!(!v.truthy(), "{v:?}");
        }
        let truthy = [
            Value::Bool(true),
            Value::Int(-1),
            Value::Float(0.1),
            Value::Float(f64::NAN),
            Value::Str(" ".into()),
            Value::Str("False".into()),
            Value::Json("[null]".into()),
            Value::Json(r#"{"":0}"#.into()),
        ];
        for v in truthy {
            assert!(v.truthy(), "{v:?}");
        }
    }

    #[test]
    fn numbers_convert_exactly() {
        assert_eq!(Value::Int(-7).as_i64(), Some(-7));
        assert_eq!(Value::Float(200.0).as_i64(), Some(200));
        assert_eq!(Value::Float(2.5).as_i64(), None);
        assert_eq!(Value::Float(9.3e18).as_i64(), None);
        assert_eq!(
            Value::Float(-9_223_372_036_854_775_808.0).as_i64(),
            Some(i64::MIN)
        );
        assert_eq!(Value::Float(f64::NAN).as_i64(), None);
        assert_eq!(Value::Str("200".into()).as_i64(), None);
        assert_eq!(Value::Bool(true).as_i64(), None);
        assert_eq!(Value::Int(3).as_f64(), Some(3.0));
        assert_eq!(Value::Float(0.5).as_f64(), Some(0.5));
        assert_eq!(Value::Null.as_f64(), None);
    }

    #[test]
    fn equality_is_pythons() {
        // Python: 200 == 200.0, True == 1, 1.0 == True, 0 == False, 2**53 + 1 != 2.0**53.
        assert_eq!(Value::Int(200), Value::Float(200.0));
        assert_eq!(Value::Float(200.0), Value::Int(200));
        assert_eq!(Value::Bool(true), Value::Int(1));
        assert_eq!(Value::Float(1.0), Value::Bool(true));
        assert_eq!(Value::Int(0), Value::Bool(false));
        assert_ne!(
            Value::Int((1 << 53) + 1),
            Value::Float(9_007_199_254_740_992.0)
        );
        assert_ne!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        assert_ne!(Value::Int(200), Value::Str("200".into()));
        assert_ne!(Value::Null, Value::Bool(false));
        assert!(Value::Float(200.0) == 200);
        assert!(Value::Int(2) == 2.0);
        assert!(Value::Int(1) == true);
        assert!(Value::Str("a".into()) == "a");
        assert!(Value::Str("a".into()) != "b");
        // Arrays and objects by content: [1, {"a": 2}] == [1.0, {"a": 2.0}], key order aside.
        assert_eq!(
            Value::Json(r#"[1,{"a":2,"b":[]}]"#.into()),
            Value::Json(r#"[1.0, {"b": [], "a": 2.0}]"#.into())
        );
        assert_ne!(Value::Json("[1,2]".into()), Value::Json("[2,1]".into()));
        assert_ne!(
            Value::Json(r#"{"a":1}"#.into()),
            Value::Json(r#"{"A":1}"#.into())
        );
        assert_ne!(Value::Json("[]".into()), Value::Json("{}".into()));
    }

    #[test]
    fn lists_and_objects_read_in_the_guest() {
        let list = Value::Json(r#"["a",{"Key":[1,2]},null]"#.into());
        assert!(list.is_list() && !list.is_object());
        assert_eq!(list.len(), Some(3));
        assert_eq!(list.index(0), Some(Value::from("a")));
        assert_eq!(list.index(-1), Some(Value::Null));
        assert_eq!(list.index(3), None);
        assert_eq!(list.index(-4), None);
        let inner = list.index(1).unwrap();
        assert!(inner.is_object());
        assert_eq!(inner.keys().unwrap(), ["Key"]);
        assert_eq!(inner.get("key").unwrap().len(), Some(2));
        assert_eq!(inner.get("key").unwrap().index(1), Some(Value::Int(2)));
        let items: Vec<Value> = list.as_list().unwrap();
        assert_eq!(items.len(), 3);
        let object = inner.as_object().unwrap();
        assert_eq!(object.iter().count(), 1);
        assert!(!object.is_empty());
        assert_eq!(Value::from("héé").len(), Some(3));
        assert_eq!(Value::Int(1).len(), None);
        assert_eq!(Value::Int(1).as_list(), None);
        assert_eq!(
            Value::from("[]").as_list(),
            None,
            "a string is not an array"
        );
    }

    #[test]
    fn object_keys_match_exactly_then_ignoring_case() {
        let v = Value::Json(r#"{"Owner":1,"owner":2,"ÉTÉ":3}"#.into());
        assert_eq!(v.get("owner"), Some(Value::Int(2)));
        assert_eq!(v.get("OWNER"), Some(Value::Int(1)));
        assert_eq!(v.get("été"), Some(Value::Int(3)));
        assert_eq!(v.get("x"), None);
    }

    #[test]
    fn python_in() {
        assert_eq!(Value::from("/api/health/x").contains("/health"), Ok(true));
        assert_eq!(Value::Json(r#"["a","b"]"#.into()).contains("b"), Ok(true));
        assert_eq!(Value::Json(r#"["ab"]"#.into()).contains("a"), Ok(false));
        assert_eq!(
            Value::Json(r#"{"OWNER":1}"#.into()).contains("owner"),
            Ok(true)
        );
        let err = Value::Null.contains("a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "TypeError: argument of type 'NoneType' is not iterable"
        );
        assert!(Value::Int(3).contains("a").is_err());
        assert!(Value::from("b").is_in(&["a", "b"]));
        assert!(!Value::Null.is_in(&["a", "b"]));
        assert_eq!(Value::Json("[]".into()).python_type(), "ImmutableList");
        assert_eq!(
            Value::Json("{}".into()).python_type(),
            "ImmutableCaseInsensitiveDict"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let v = Value::Str("q\"\\\n\u{1}é".into());
        assert_eq!(v.to_json(), r#""q\"\\\n\u0001é""#);
        let parsed: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
        assert_eq!(parsed, serde_json::json!("q\"\\\n\u{1}é"));
    }
}
