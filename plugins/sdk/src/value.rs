//! [`Value`]: one JSON value read from an event.

use std::fmt::Write as _;

/// A JSON value read from an event. Arrays and objects arrive as compact JSON text, since
/// rules mostly pass them through (into an alert context) rather than walk them.
#[derive(Debug, Clone, PartialEq)]
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
    fn json_strings_are_escaped() {
        let v = Value::Str("q\"\\\n\u{1}é".into());
        assert_eq!(v.to_json(), r#""q\"\\\n\u0001é""#);
        let parsed: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
        assert_eq!(parsed, serde_json::json!("q\"\\\n\u{1}é"));
    }
}
