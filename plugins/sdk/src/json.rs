//! Reading the JSON text of a [`Value::Json`] one level deep, in the guest.
//!
//! The host parses each event once and hands arrays and objects to the rule as compact JSON
//! text (`Value::Json`), which most rules only pass through into an alert context. When a
//! rule does look inside one, this module splits the text into its elements or members:
//! scalars are decoded, nested arrays and objects stay as the JSON text of their slice, so
//! a rule pays only for the level it reads. No `serde_json` in the component: its maps
//! would pull a random-number import (std's `RandomState`) into every rule.

use crate::Value;

/// The elements of a JSON array, as values; `None` when `text` is not an array.
pub fn list(text: &str) -> Option<Vec<Value>> {
    let mut scan = Scanner::new(text);
    scan.open(b'[')?;
    let mut out = Vec::new();
    if scan.close(b']') {
        return scan.end().then_some(out);
    }
    loop {
        out.push(scan.value()?);
        if scan.close(b']') {
            return scan.end().then_some(out);
        }
        scan.expect(b',')?;
    }
}

/// The members of a JSON object, in document order; `None` when `text` is not an object.
pub fn object(text: &str) -> Option<Vec<(String, Value)>> {
    let mut scan = Scanner::new(text);
    scan.open(b'{')?;
    let mut out = Vec::new();
    if scan.close(b'}') {
        return scan.end().then_some(out);
    }
    loop {
        scan.skip_ws();
        let key = scan.string()?;
        scan.expect(b':')?;
        out.push((key, scan.value()?));
        if scan.close(b'}') {
            return scan.end().then_some(out);
        }
        scan.expect(b',')?;
    }
}

/// Whether `text` is an empty array or object (`[]`, `{ }`).
pub fn is_empty_container(text: &str) -> bool {
    let inner = text.trim();
    (inner.starts_with('[') && inner.ends_with(']')
        || inner.starts_with('{') && inner.ends_with('}'))
        && inner[1..inner.len() - 1].trim().is_empty()
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn open(&mut self, byte: u8) -> Option<()> {
        self.expect(byte)
    }

    /// Consumes `byte` if it comes next.
    fn close(&mut self, byte: u8) -> bool {
        self.skip_ws();
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.text.len()
    }

    /// One value: a decoded scalar, or the JSON text of a nested array or object.
    fn value(&mut self) -> Option<Value> {
        self.skip_ws();
        let start = self.pos;
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'[' | b'{' => {
                self.skip_container()?;
                Some(Value::Json(self.text[start..self.pos].to_owned()))
            }
            b'n' => self.word("null").map(|()| Value::Null),
            b't' => self.word("true").map(|()| Value::Bool(true)),
            b'f' => self.word("false").map(|()| Value::Bool(false)),
            _ => self.number(),
        }
    }

    fn word(&mut self, word: &str) -> Option<()> {
        self.text[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }

    /// A number: within `i64` and without fraction or exponent an `Int`, else a `Float`,
    /// as the host maps them.
    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        let literal = &self.text[start..self.pos];
        if literal.is_empty() {
            return None;
        }
        if !literal.contains(['.', 'e', 'E'])
            && let Ok(i) = literal.parse::<i64>()
        {
            return Some(Value::Int(i));
        }
        literal.parse::<f64>().ok().map(Value::Float)
    }

    /// A JSON string at the cursor, unescaped.
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let stop = rest.find(['"', '\\'])?;
            out.push_str(&rest[..stop]);
            self.pos += stop;
            if self.peek()? == b'"' {
                self.pos += 1;
                return Some(out);
            }
            self.pos += 1;
            let escape = self.peek()?;
            self.pos += 1;
            out.push(match escape {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => return None,
            });
        }
    }

    /// The code point of `\uXXXX` (the `\u` already read), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) && self.text[self.pos..].starts_with("\\u") {
            self.pos += 2;
            let second = self.hex4()?;
            if (0xDC00..0xE000).contains(&second) {
                let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return char::from_u32(code);
            }
            return None;
        }
        // A lone surrogate cannot be a Rust `char`: U+FFFD, as lossy decoding gives.
        Some(char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// Moves past the array or object at the cursor, strings included.
    fn skip_container(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_arrays_one_level_deep() {
        let got =
            list(r#"[1, -2.5, "a\"b", null, true, [1, [2]], {"k": "]"}, 9223372036854775808]"#)
                .unwrap();
        assert_eq!(
            got,
            [
                Value::Int(1),
                Value::Float(-2.5),
                Value::Str("a\"b".into()),
                Value::Null,
                Value::Bool(true),
                Value::Json("[1, [2]]".into()),
                Value::Json(r#"{"k": "]"}"#.into()),
                Value::Float(9_223_372_036_854_775_808.0),
            ]
        );
        assert!(list("[]").unwrap().is_empty());
        assert!(list(" [ ] ").unwrap().is_empty());
        assert_eq!(list("{}"), None);
        assert_eq!(list("[1,"), None);
        assert_eq!(list("[1] x"), None);
    }

    #[test]
    fn splits_objects_in_document_order() {
        let got = object(r#"{"b":1,"a":{"x":[1]},"é\n":"\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(
            got,
            [
                ("b".to_owned(), Value::Int(1)),
                ("a".to_owned(), Value::Json(r#"{"x":[1]}"#.into())),
                ("é\n".to_owned(), Value::Str("é😀".into())),
            ]
        );
        assert!(object("{}").unwrap().is_empty());
        assert_eq!(object("[]"), None);
        assert_eq!(object(r#"{"a" 1}"#), None);
    }

    #[test]
    fn agrees_with_serde_json_on_what_the_host_sends() {
        let text = r#"{"a":[1,2.0,1e3,-0,"x\u0001\\"],"b":{"c":null,"d":false},"e":""}"#;
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        let compact = parsed.to_string();
        let members = object(&compact).unwrap();
        let serde = parsed.as_object().unwrap();
        assert_eq!(members.len(), serde.len());
        for ((key, value), (skey, svalue)) in members.iter().zip(serde) {
            assert_eq!(key, skey);
            match value {
                Value::Json(text) => assert_eq!(text, &svalue.to_string()),
                other => assert_eq!(other.to_json(), svalue.to_string()),
            }
        }
    }

    #[test]
    fn empty_containers() {
        for text in ["[]", "{}", " [ ] ", "{\n}"] {
            assert!(is_empty_container(text), "{text}");
        }
        for text in ["[0]", "{\"a\":1}", "\"[]\"", ""] {
            assert!(!is_empty_container(text), "{text}");
        }
    }
}
