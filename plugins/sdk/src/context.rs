//! [`Context`]: the alert context a rule returns.

use crate::Value;

/// An alert context under construction: an ordered JSON object.
///
/// It behaves like the Python dict that Panther helpers build: inserting an existing key
/// replaces its value in place, and `None`/null values are dropped when the context is
/// serialised (the "remove None values" step of `databricks_alert_context`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    entries: Vec<(String, Value)>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`; `None` records the key as null (dropped on output).
    pub fn insert(&mut self, key: &str, value: Option<Value>) -> &mut Self {
        let value = value.unwrap_or(Value::Null);
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.entries.push((key.to_owned(), value)),
        }
        self
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The non-null entries, in insertion order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The context as the text of one JSON object, without null values.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.entries().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::value::write_json_string(key, &mut out);
            out.push(':');
            value.write_json(&mut out);
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_place_and_drops_nulls() {
        let mut ctx = Context::new();
        ctx.insert("a", Some(Value::Int(1)))
            .insert("b", None)
            .insert("c", Some(Value::Json(r#"{"x":[1,2]}"#.into())))
            .insert("a", Some(Value::from("one")));
        assert_eq!(ctx.to_json(), r#"{"a":"one","c":{"x":[1,2]}}"#);
        assert_eq!(Context::new().to_json(), "{}");
    }
}
