//! [`parse_kept`]: the pruned parse the host runs on every line, and [`Kept`], what it
//! keeps.
//!
//! A fast scanner walks the line, keeping where the values a [`Wanted`] tree reaches are
//! (a string without escapes is copied when read, anything else parsed by `serde_json`
//! when read) and skipping the rest without building anything. It finds the ends of
//! strings in a bitmap of the line's quotes and backslashes, made up front in vector code
//! ([`specials`]). It accepts only
//! the plain JSON of ordinary logs, and always less than `serde_json` does: no control
//! character anywhere (not even a tab between tokens), keys without escapes, strings whose
//! `\u` escapes are not surrogates, numbers without an exponent and with fewer than 300
//! digits, at most 100 levels of nesting. Anything else
//! (including every invalid line) makes it give up, and the line goes through
//! [`parse_pruned`], the `serde_json` parse that fails exactly when a full parse fails, with
//! its error. So a line is refused exactly when a full parse refuses it, and every path
//! [`Wanted::covers`] reads from [`Kept::get`] what [`deep_get`] reads from a full parse.

use std::cell::RefCell;
use std::sync::OnceLock;

use serde_json::Value;
use wide::u8x16;

use crate::prune::{Node, Resolved, parse_pruned};
use crate::{Wanted, deep_get, same_key};

/// Nesting the scanner follows before it gives up: below `serde_json`'s limit (128), so it
/// never accepts a line that limit refuses.
const MAX_DEPTH: usize = 100;
/// Digits of a number the scanner accepts: fewer than make an `f64` overflow (which
/// `serde_json` refuses).
const MAX_DIGITS: usize = 300;

/// The parts of an event a pruned parse keeps. Keys and values the scanner kept are
/// positions in the event's text, which every read takes again: nothing of a line is
/// copied until it is read (an event that no rule matches costs one allocation or two).
#[derive(Debug, Clone, PartialEq)]
pub enum Kept {
    /// An object of which only some keys are wanted: those, in document order, each once
    /// (a repeated key keeps its first place and its last value, as `serde_json` does),
    /// each with the index of the wanted key it was kept for (its child in the tree).
    Object(Vec<(Key, u32, Kept)>),
    /// A value kept whole (boxed: an event holds many [`Kept`]s, most of them small).
    Whole(Box<Value>),
    /// A value kept whole, built from the text when first read.
    Lazy(Lazy),
    /// Not an object where a wanted path goes on: nothing under it can be found.
    Skipped,
}

/// A kept object's key: where it is in the text (the scanner only keeps keys without
/// escapes), or the key itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// `text[start..end]`.
    At(usize, usize),
    /// A key as `serde_json` read it.
    Owned(Box<str>),
}

impl Key {
    fn bytes<'a>(&'a self, text: &'a [u8]) -> &'a [u8] {
        match self {
            Key::At(start, end) => &text[*start..*end],
            Key::Owned(key) => key.as_bytes(),
        }
    }
}

/// A value the scanner validated and did not build: a string without escapes (the text
/// between its quotes), or any other value's text, which `serde_json` parses when read
/// (it accepts everything the scanner accepts).
#[derive(Debug, Clone)]
pub struct Lazy {
    start: usize,
    end: usize,
    plain: bool,
    value: OnceLock<Box<Value>>,
}

impl PartialEq for Lazy {
    /// The same text, read or not.
    fn eq(&self, other: &Self) -> bool {
        (self.start, self.end, self.plain) == (other.start, other.end, other.plain)
    }
}

impl Lazy {
    fn new(start: usize, end: usize, plain: bool) -> Self {
        Lazy {
            start,
            end,
            plain,
            value: OnceLock::new(),
        }
    }

    fn value(&self, text: &[u8]) -> &Value {
        self.value.get_or_init(|| {
            let bytes = &text[self.start..self.end];
            let parsed = match self.plain {
                true => std::str::from_utf8(bytes)
                    .map(|s| Value::String(s.to_owned()))
                    .ok(),
                // The common values, as `serde_json` builds them (an integer that fits: a
                // `u64`), without its deserializer.
                false => match bytes {
                    b"null" => Some(Value::Null),
                    b"true" => Some(Value::Bool(true)),
                    b"false" => Some(Value::Bool(false)),
                    _ => digits_u64(bytes)
                        .map(Value::from)
                        .or_else(|| serde_json::from_slice(bytes).ok()),
                },
            };
            Box::new(
                parsed.expect("a value the scanner validated, read in the text it was scanned in"),
            )
        })
    }
}

/// The number `text` spells when it is only ASCII digits (at least one) and fits a `u64`:
/// what `serde_json` reads from such a number, and `str::parse` from such a string.
pub fn digits_u64(text: &[u8]) -> Option<u64> {
    let digit = |d: u8| Some(u64::from(d.wrapping_sub(b'0'))).filter(|&d| d < 10);
    match text.len() {
        0 => None,
        // 19 digits never overflow: no checked arithmetic, in one pass.
        1..=19 => text.iter().try_fold(0, |n, &d| Some(n * 10 + digit(d)?)),
        _ => text
            .iter()
            .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(digit(d)?)),
    }
}

/// A value read from a [`Kept`] ([`Kept::find`]): a string without escapes as it is in the
/// text, or a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found<'a> {
    /// A string's UTF-8 bytes, straight from the text (which is UTF-8, so they are too).
    Text(&'a [u8]),
    /// Any value.
    Value(&'a Value),
}

/// How a read finds its path's keys ([`Kept::get`] and the others): looked up in the
/// tree the event was parsed for, or resolved against it beforehand.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    /// The [`Wanted`] the event was parsed for.
    Tree(&'a Wanted),
    /// The path, resolved against that tree ([`Wanted::resolve`]).
    Resolved(&'a Resolved),
}

impl<'a> From<&'a Wanted> for Via<'a> {
    fn from(wanted: &'a Wanted) -> Self {
        Via::Tree(wanted)
    }
}

impl<'a> From<&'a Resolved> for Via<'a> {
    fn from(resolved: &'a Resolved) -> Self {
        Via::Resolved(resolved)
    }
}

/// What [`Kept::raw`] finds at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw<'a> {
    /// Nothing: [`Kept::get`] finds nothing there either.
    Missing,
    /// The value's text: a string without escapes between its quotes, any other value as
    /// written. A number and a string of the same digits give the same text.
    Text(&'a [u8]),
    /// A value [`Kept::get`] builds, or one the exact parser kept, or one under a kept
    /// value (`get` may find nothing there).
    Built,
}

/// A read of a path that the [`Wanted`] an event was parsed for does not cover: only a full
/// parse answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uncovered;

impl Kept {
    /// [`deep_get`] on the event, for a path `wanted` (what [`parse_kept`] parsed the
    /// event for) covers; [`Uncovered`] for any other. `text` is the text it parsed.
    pub fn get<'a, 'w, S: AsRef<str>>(
        &'a self,
        text: &[u8],
        via: impl Into<Via<'w>>,
        path: &[S],
    ) -> Result<Option<&'a Value>, Uncovered> {
        let found = self.walk(text, via.into(), path)?;
        Ok(found.and_then(|(node, at)| node.value_under(text, &path[at..])))
    }

    /// [`deep_get`] of `rest` under this node, where a walk stopped: through a value kept
    /// whole; nothing under an object kept in part or a value skipped.
    fn value_under<'a, S: AsRef<str>>(&'a self, text: &[u8], rest: &[S]) -> Option<&'a Value> {
        match self {
            Kept::Whole(value) => deep_get(value, rest),
            Kept::Lazy(lazy) => deep_get(lazy.value(text), rest),
            Kept::Object(_) | Kept::Skipped => None,
        }
    }

    /// [`Kept::get`], with a string that has no escapes read straight from `text` (no
    /// copy).
    pub fn find<'a, 'w, S: AsRef<str>>(
        &'a self,
        text: &'a [u8],
        via: impl Into<Via<'w>>,
        path: &[S],
    ) -> Result<Option<Found<'a>>, Uncovered> {
        Ok(match self.walk(text, via.into(), path)? {
            Some((Kept::Lazy(lazy), at)) if lazy.plain && at == path.len() => {
                Some(Found::Text(&text[lazy.start..lazy.end]))
            }
            // The value where the walk stopped: not walked again.
            Some((node, at)) => node.value_under(text, &path[at..]).map(Found::Value),
            None => None,
        })
    }

    /// The text of the value at `path` (as [`Kept::get`] reads it) as the scan left it
    /// unbuilt ([`Raw`]), found in one walk.
    pub fn raw<'a, 'w, S: AsRef<str>>(
        &'a self,
        text: &'a [u8],
        via: impl Into<Via<'w>>,
        path: &[S],
    ) -> Result<Raw<'a>, Uncovered> {
        Ok(match self.walk(text, via.into(), path)? {
            None => Raw::Missing,
            Some((Kept::Lazy(lazy), at)) if at == path.len() => {
                Raw::Text(&text[lazy.start..lazy.end])
            }
            Some(_) => Raw::Built,
        })
    }

    /// Follows `path` through the kept objects, by `via`: the node where it stops and how
    /// many keys it took (`None`: not in the event), or [`Uncovered`] (what
    /// [`Wanted::covers`] says). Each kept key holds the index of the wanted key it was
    /// kept for, so a level costs a look at those entries, and one lookup in the tree
    /// unless the path was resolved.
    fn walk<S: AsRef<str>>(
        &self,
        text: &[u8],
        via: Via<'_>,
        path: &[S],
    ) -> Result<Option<(&Kept, usize)>, Uncovered> {
        let mut kept = Some(self);
        let mut step = |index: u32, key: &str| {
            kept = match kept {
                Some(Kept::Object(entries)) => lookup(text, entries, index, key),
                // Not an object: nothing under it, but whether the rest is covered still
                // decides where the read is answered.
                _ => None,
            };
        };
        let at = match via {
            Via::Tree(wanted) => wanted.descend(path, step)?,
            Via::Resolved(resolved) => {
                let steps = resolved.steps();
                for (&index, key) in steps.iter().zip(path) {
                    step(index, key.as_ref());
                }
                steps.len()
            }
        };
        Ok(kept.map(|kept| (kept, at)))
    }

    /// The tree of a [`parse_pruned`] value.
    fn from_pruned(value: Value, node: &Node) -> Kept {
        if node.whole {
            return Kept::Whole(Box::new(value));
        }
        match value {
            Value::Object(map) => Kept::Object(
                map.into_iter()
                    .filter_map(|(key, value)| {
                        let (index, child) = node.child(&key)?;
                        Some((
                            Key::Owned(key.into_boxed_str()),
                            index,
                            Kept::from_pruned(value, child),
                        ))
                    })
                    .collect(),
            ),
            _ => Kept::Skipped,
        }
    }
}

/// [`crate::get`]'s rule over kept entries, for `key`, which the tree knows as its child
/// `index`: the exact key first, then the first key in document order that matches
/// case-insensitively. Every key that matches `key` either way was kept for that child, so
/// only its entries are compared.
fn lookup<'a>(
    text: &[u8],
    entries: &'a [(Key, u32, Kept)],
    index: u32,
    key: &str,
) -> Option<&'a Kept> {
    let mut first = None;
    for (k, _, kept) in entries.iter().filter(|(_, i, _)| *i == index) {
        let k = k.bytes(text);
        if same_key(k, key.as_bytes()) {
            return Some(kept);
        }
        if first.is_none() && same_ignoring_case(k, key) {
            first = Some(kept);
        }
    }
    first
}

/// [`crate::get`]'s case-insensitive comparison of a key (`key`, UTF-8 or not) with the
/// key read: ASCII case for an ASCII key, `to_lowercase` for any other. Rare (a log
/// spells a key as its rules do), and kept out of line so that a lookup does not pay for
/// its `String`s.
#[cold]
fn same_ignoring_case(key: &[u8], read: &str) -> bool {
    match read.is_ascii() {
        true => key.eq_ignore_ascii_case(read.as_bytes()),
        false => std::str::from_utf8(key).is_ok_and(|k| k.to_lowercase() == read.to_lowercase()),
    }
}

/// Parses an event (`text`, whose root must be an object), keeping what `wanted` covers.
/// Errors are a full parse's own; a root that is not an object is an error of the caller's
/// (it should parse such a line whole, to say what it is).
pub fn parse_kept(text: &str, wanted: &Wanted) -> Result<Kept, serde_json::Error> {
    if let Some(kept) = scan(text, &wanted.root) {
        return Ok(kept);
    }
    parse_pruned(text, wanted).map(|value| Kept::from_pruned(value, &wanted.root))
}

thread_local! {
    /// Each thread's [`specials`] words, reused from line to line.
    static SPECIALS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The fast scanner's pass over `text`: `None` whenever it is not sure (see the module
/// docs).
fn scan(text: &str, root: &Node) -> Option<Kept> {
    SPECIALS.with_borrow_mut(|words| {
        let (control, ascii) = specials(text.as_bytes(), words);
        // A control character is invalid in a string and rare between tokens (a tab, say):
        // refusing them all here spares every string the check.
        if control {
            return None;
        }
        Scanner {
            text,
            bytes: text.as_bytes(),
            specials: words,
            at: 0,
            depth: 0,
            ascii,
        }
        .event(root)
    })
}

/// One pass over a line in vector code: where its quotes and backslashes are, as bits in
/// `words` (byte `i` is bit `i % 64` of word `i / 64`), so that finding the end of a string
/// is a bit scan; and whether the line holds a control character, and whether it is all
/// ASCII (from its smallest and its largest byte).
fn specials(bytes: &[u8], words: &mut Vec<u64>) -> (bool, bool) {
    words.clear();
    // Spaces, which are neither control characters nor past ASCII, quotes nor backslashes.
    let (mut low, mut high) = (u8x16::splat(b' '), u8x16::splat(b' '));
    let mut chunks = bytes.chunks_exact(64);
    for chunk in &mut chunks {
        let chunk = chunk.try_into().expect("64 bytes");
        words.push(specials_word(chunk, &mut low, &mut high));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padded with spaces.
        let mut last = [b' '; 64];
        last[..rest.len()].copy_from_slice(rest);
        words.push(specials_word(&last, &mut low, &mut high));
    }
    (low.reduce_min() < 0x20, high.reduce_max() < 0x80)
}

/// The quotes and backslashes of 64 bytes, 16 at a time; `low` and `high` take their
/// smallest and largest bytes in.
fn specials_word(chunk: &[u8; 64], low: &mut u8x16, high: &mut u8x16) -> u64 {
    let (quote, backslash) = (u8x16::splat(b'"'), u8x16::splat(b'\\'));
    let mut word = 0;
    for (i, part) in chunk.chunks_exact(16).enumerate() {
        let part = u8x16::new(part.try_into().expect("16 bytes"));
        let found = part.simd_eq(quote) | part.simd_eq(backslash);
        word |= u64::from(found.to_bitmask()) << (16 * i);
        *low = low.min(part);
        *high = high.max(part);
    }
    word
}

/// The fast scanner (see the module docs).
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// [`specials`]' bits of `bytes`.
    specials: &'a [u64],
    at: usize,
    depth: usize,
    /// The line is ASCII: keys need no check before [`Node::ascii_child`].
    ascii: bool,
}

impl<'a> Scanner<'a> {
    fn event(mut self, root: &Node) -> Option<Kept> {
        self.space();
        if self.peek()? != b'{' || root.whole {
            return None;
        }
        let kept = self.object(root)?;
        self.space();
        (self.at == self.bytes.len()).then_some(kept)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// JSON's whitespace: space, tab, newline, carriage return.
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// An object under `node` (not whole), keeping the keys its children want.
    fn object(&mut self, node: &Node) -> Option<Kept> {
        let mut entries: Vec<(Key, u32, Kept)> = Vec::new();
        self.items(b'{', b'}', |scan| {
            let (start, end) = scan.member_key()?;
            let key = &scan.bytes[start..end];
            let child = match scan.ascii {
                true => node.ascii_child(key),
                false => node.child(&scan.text[start..end]),
            };
            match child {
                Some((index, child)) => {
                    let value = scan.kept(child)?;
                    let bytes = scan.bytes;
                    match entries
                        .iter_mut()
                        .find(|(k, i, _)| *i == index && same_key(k.bytes(bytes), key))
                    {
                        Some((_, _, old)) => *old = value,
                        None => {
                            // Room for every wanted key at once: one allocation (a case
                            // variant of a key may need more).
                            if entries.is_empty() {
                                entries.reserve_exact(node.width());
                            }
                            entries.push((Key::At(start, end), index, value));
                        }
                    }
                }
                None => scan.skip()?,
            }
            Some(())
        })?;
        Some(Kept::Object(entries))
    }

    /// The items of an object or array from `open` to `close`, comma-separated, each read
    /// by `item` (which starts at the item, after any whitespace), one level deeper.
    fn items(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        self.enter()?;
        self.space();
        if self.eat(close).is_none() {
            loop {
                self.space();
                item(self)?;
                self.space();
                match self.peek()? {
                    b',' => self.at += 1,
                    b if b == close => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A member's key (where it is) and its colon; the scan stands at its value.
    fn member_key(&mut self) -> Option<(usize, usize)> {
        let key = self.key()?;
        self.space();
        self.eat(b':')?;
        self.space();
        Some(key)
    }

    /// A value under `node`: whole, partly kept, or skipped.
    fn kept(&mut self, node: &Node) -> Option<Kept> {
        if node.whole {
            return self.value();
        }
        if self.peek()? == b'{' {
            self.object(node)
        } else {
            self.skip()?;
            Some(Kept::Skipped)
        }
    }

    /// A value kept whole, left to build when read ([`Lazy`]): a string without escapes
    /// from the text between its quotes, anything else by `serde_json`.
    fn value(&mut self) -> Option<Kept> {
        let start = self.at;
        let plain = match self.peek()? {
            b'"' => self.string()?,
            _ => {
                self.skip()?;
                false
            }
        };
        Some(Kept::Lazy(match plain {
            true => Lazy::new(start + 1, self.at - 1, true),
            false => Lazy::new(start, self.at, false),
        }))
    }

    /// A key without escapes: where it is.
    fn key(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.at;
        let end = self.special(start)?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    /// Any value, validated, without building it. Inlined for a string, most values of a
    /// line: a call costs as much as its scan.
    #[inline(always)]
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            _ => self.skip_other(),
        }
    }

    /// [`Scanner::skip`] for a value that is not a string.
    fn skip_other(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.items(b'{', b'}', |scan| {
                scan.string()?;
                scan.space();
                scan.eat(b':')?;
                scan.space();
                scan.skip()
            }),
            b'[' => self.items(b'[', b']', Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// The first quote or backslash from `at` on: the bit scan of [`specials`].
    fn special(&self, at: usize) -> Option<usize> {
        let mut word = at / 64;
        let mut bits = self.specials.get(word)? & (u64::MAX << (at % 64));
        while bits == 0 {
            word += 1;
            bits = *self.specials.get(word)?;
        }
        Some(word * 64 + bits.trailing_zeros() as usize)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, with fewer than [`MAX_DIGITS`] digits and no
    /// exponent.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let before = self.at;
            self.digits();
            if self.at == before {
                return None;
            }
        }
        match self.peek() {
            Some(b'0'..=b'9' | b'e' | b'E' | b'.') => None,
            _ => (self.at - start < MAX_DIGITS).then_some(()),
        }
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// A string whose escapes are valid and not surrogates; whether it had no escapes.
    /// Inlined: a line has dozens, and a call costs as much as the scan of one.
    #[inline(always)]
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut plain = true;
        loop {
            let end = self.special(self.at)?;
            self.at = end + 1;
            match self.bytes[end] {
                b'"' => return Some(plain),
                b'\\' => plain = false,
                _ => return None,
            }
            match self.peek()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                b'u' => {
                    let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                    let hex = std::str::from_utf8(hex).ok()?;
                    let unit = u16::from_str_radix(hex, 16).ok()?;
                    if hex.starts_with(['+', '-']) || (0xD800..=0xDFFF).contains(&unit) {
                        return None;
                    }
                    self.at += 5;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wanted(paths: &[&[&str]]) -> Wanted {
        let mut w = Wanted::nothing();
        for p in paths {
            w.add(p);
        }
        w
    }

    const EVENT: &str = concat!(
        r#"{"actionName": "login", "userIdentity": {"email": "a@b.c", "id": 7}, "#,
        r#""USERIDENTITY": {"email": "other"}, "requestParams": {"x": [1, {"y": 2}]}, "#,
        r#""workspaceId": null, "big": 18446744073709551615, "f": 1.5, "esc": "\u00e9\n", "#,
        r#""noise": {"deep": [[[{"a": "b"}]]], "s": "text \"quoted\""}, "arr": [1, 2], "#,
        r#""dup": 1, "Dup": 2, "dup": 3, "t": true, "n": -0.25, "huge": 98765432109876543210, "#,
        r#""z": 0, "f0": false, "nil": null}"#,
    );

    #[test]
    fn the_scanner_keeps_what_a_full_parse_holds() {
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
            &["dup"],
            &["DUP"],
            &["t"],
            &["n"],
            &["huge"],
            &["z"],
            &["f0"],
            &["nil"],
        ];
        let w = wanted(paths);
        let scanned = scan(EVENT, &w.root).expect("plain JSON is scanned");
        assert_eq!(scanned, parse_kept(EVENT, &w).unwrap());
        let pruned = Kept::from_pruned(parse_pruned(EVENT, &w).unwrap(), &w.root);
        let text = EVENT.as_bytes();
        for path in paths {
            assert!(w.covers(path), "{path:?}");
            assert_eq!(
                scanned.get(text, &w, path),
                Ok(deep_get(&full, path)),
                "{path:?}"
            );
            assert_eq!(
                pruned.get(text, &w, path).unwrap(),
                deep_get(&full, path),
                "the serde_json parse keeps the same: {path:?}"
            );
            let found = match scanned.find(text, &w, path).unwrap() {
                Some(Found::Text(s)) => Some(Value::from(std::str::from_utf8(s).unwrap())),
                Some(Found::Value(v)) => Some(v.clone()),
                None => None,
            };
            assert_eq!(found.as_ref(), deep_get(&full, path), "{path:?}");
            let resolved = w.resolve(path).unwrap();
            assert_eq!(
                scanned.find(text, &resolved, path),
                scanned.find(text, &w, path),
                "{path:?}"
            );
            assert_eq!(
                scanned.raw(text, &resolved, path),
                scanned.raw(text, &w, path)
            );
        }
        assert_eq!(scanned.get(text, &w, &["dup"]), Ok(Some(&json!(3))));
        assert_eq!(
            scanned.raw(text, &w, &["big"]),
            Ok(Raw::Text(b"18446744073709551615"))
        );
        assert_eq!(
            scanned.raw(text, &w, &["actionName"]),
            Ok(Raw::Text(b"login"))
        );
        assert_eq!(
            scanned.raw(text, &w, &["esc"]),
            Ok(Raw::Text(br#""\u00e9\n""#))
        );
        assert_eq!(scanned.raw(text, &w, &["missing"]), Ok(Raw::Missing));
        assert_eq!(
            scanned.raw(text, &w, &["requestParams", "x"]),
            Ok(Raw::Built)
        );
        assert_eq!(
            scanned.raw(text, &w, &["userIdentity", "x"]),
            Err(Uncovered)
        );
        let pruned_raw = pruned.raw(text, &w, &["actionName"]);
        assert_eq!(pruned_raw, Ok(Raw::Built), "kept by the exact parser");
        assert_eq!(
            scanned.find(text, &w, &["actionName"]),
            Ok(Some(Found::Text(b"login")))
        );
        assert_eq!(
            scanned.find(text, &w, &["esc"]),
            Ok(Some(Found::Value(&json!("\u{e9}\n")))),
            "a string with escapes is unescaped"
        );
        // What the paths do not cover is a full parse's to answer, found or not.
        for path in [
            &["userIdentity"][..],
            &["userIdentity", "id"],
            &["noise"],
            &["arr"],
            &[],
        ] {
            assert!(!w.covers(path), "{path:?}");
            assert_eq!(w.resolve(path), Err(Uncovered), "{path:?}");
            assert_eq!(scanned.get(text, &w, path), Err(Uncovered), "{path:?}");
            assert_eq!(scanned.find(text, &w, path), Err(Uncovered), "{path:?}");
            assert_eq!(scanned.raw(text, &w, path), Err(Uncovered), "{path:?}");
        }
        let Kept::Object(entries) = &scanned else {
            panic!()
        };
        assert!(!entries.iter().any(|(k, _, _)| k.bytes(text) == b"noise"));
        assert!(
            entries.iter().all(|(k, _, _)| matches!(k, Key::At(..))),
            "no key is copied"
        );
    }

    #[test]
    fn digits_read_as_parse_reads_them() {
        let mut texts: Vec<String> = ["0", "7", "1704067200034", "18446744073709551615"]
            .map(str::to_owned)
            .into();
        texts.extend(["18446744073709551616", "99999999999999999999"].map(str::to_owned));
        for len in 17..=23 {
            texts.push("9".repeat(len));
            texts.push(format!("{}1", "0".repeat(len - 1)));
        }
        for text in &texts {
            assert_eq!(digits_u64(text.as_bytes()), text.parse().ok(), "{text}");
        }
        for text in ["", "+1", "-1", "1a", "1.0", " 1", "1/", ":"] {
            assert_eq!(digits_u64(text.as_bytes()), None, "{text}");
        }
    }

    /// Keys that fold to one wanted key in every way `crate::get` tells apart: exact
    /// first, then the first that matches ASCII-case-insensitively (for an ASCII key) or
    /// after `to_lowercase` (otherwise), whichever spelling the rule reads.
    #[test]
    fn case_variants_of_a_wanted_key_read_as_a_full_parse() {
        let texts = [
            "{\"\u{212A}ey\": 1, \"KEY\": 2, \"o\": {\"\u{c9}t\u{c9}\": 3, \"\u{e9}t\u{e9}\": 4}}",
            "{\"KEY\": 2, \"\u{212A}ey\": 1, \"kEy\": 5, \"O\": {\"\u{c9}T\u{c9}\": 3}, \"o\": {}}",
            r#"{"key": 1, "Key": 2, "key": 3, "o": 4, "O": {"x": 5}}"#,
        ];
        let w = wanted(&[&["key"], &["o", "\u{e9}t\u{e9}"]]);
        let paths: &[&[&str]] = &[
            &["key"],
            &["KEY"],
            &["kEy"],
            &["\u{212A}ey"],
            &["\u{212A}EY"],
            &["o", "\u{e9}t\u{e9}"],
            &["O", "\u{c9}t\u{c9}"],
            &["o", "\u{c9}T\u{c9}"],
        ];
        for text in texts {
            let full: Value = serde_json::from_str(text).unwrap();
            let scanned = scan(text, &w.root).expect("plain JSON is scanned");
            let pruned = Kept::from_pruned(parse_pruned(text, &w).unwrap(), &w.root);
            for path in paths {
                let resolved = w.resolve(path).unwrap();
                for kept in [&scanned, &pruned] {
                    assert_eq!(
                        kept.get(text.as_bytes(), &w, path),
                        Ok(deep_get(&full, path)),
                        "{path:?} in {text}"
                    );
                    assert_eq!(
                        kept.get(text.as_bytes(), &resolved, path),
                        Ok(deep_get(&full, path)),
                        "resolved: {path:?} in {text}"
                    );
                }
            }
        }
    }

    /// Strings whose ends fall on every side of the bitmap's 64-byte words, and lines
    /// mutated at random: the scan reads what a full parse reads and fails when it fails.
    #[test]
    fn string_ends_anywhere_in_the_bitmap_read_as_a_full_parse() {
        let w = wanted(&[&["k"], &["o", "s"], &["t"]]);
        let paths: &[&[&str]] = &[&["k"], &["K"], &["o", "s"], &["O", "S"], &["t"]];
        let mut texts = Vec::new();
        for pad in 0..140 {
            let filler = "x".repeat(pad);
            texts.push(format!(
                r#"{{"a": "{filler}", "k": "v\"{filler}", "o": {{"s": "{filler}\\"}}, "t": 1}}"#
            ));
            texts.push(format!(
                r#"{{"{filler}": 1, "K": "{filler}é", "t": "\u00e9{filler}"}}"#
            ));
            texts.push(format!(r#"{{"k": "{filler}"}}"#));
        }
        for text in &texts {
            assert!(scan(text, &w.root).is_some(), "the scanner reads {text}");
        }
        // A small xorshift: the same mutations on every run.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..texts.len() {
            for _ in 0..8 {
                let mut bytes = texts[i].clone().into_bytes();
                let at = (next() % bytes.len() as u64) as usize;
                let pick = b"\"\\{}[]:, x0\t";
                let byte = pick[(next() % pick.len() as u64) as usize];
                match next() % 3 {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => drop(bytes.remove(at)),
                }
                if let Ok(text) = String::from_utf8(bytes) {
                    texts.push(text);
                }
            }
        }
        let mut accepted = 0;
        for text in &texts {
            let full = serde_json::from_str::<Value>(text);
            if !text.starts_with('{') || full.as_ref().is_ok_and(|v| !v.is_object()) {
                continue;
            }
            match (&full, parse_kept(text, &w)) {
                (Ok(full), Ok(kept)) => {
                    accepted += 1;
                    for path in paths {
                        assert_eq!(
                            kept.get(text.as_bytes(), &w, path),
                            Ok(deep_get(full, path)),
                            "{text}"
                        );
                    }
                }
                (Err(f), Err(k)) => assert_eq!(f.to_string(), k.to_string(), "{text}"),
                (f, k) => panic!("{text}: full {f:?}, kept {k:?}"),
            }
        }
        assert!(accepted > 420, "the unmutated texts all parse: {accepted}");
    }

    #[test]
    fn control_characters_and_bytes_past_ascii_are_found_anywhere_in_a_line() {
        // Longer than two 64-byte words: whole words and the padded rest.
        let line = format!(r#"{{"a": "{}"}}"#, "x".repeat(150)).into_bytes();
        let mut words = Vec::new();
        assert_eq!(specials(&line, &mut words), (false, true));
        for at in 0..line.len() {
            for (byte, control, ascii) in [
                (0x00, true, true),
                (0x1f, true, true),
                (b' ', false, true),
                (0x7f, false, true),
                (0x80, false, false),
                (0xff, false, false),
            ] {
                let mut bytes = line.clone();
                bytes[at] = byte;
                let found = specials(&bytes, &mut words);
                assert_eq!(found, (control, ascii), "{byte:#x} at {at}");
            }
        }
    }

    #[test]
    fn anything_unusual_goes_to_the_exact_parser() {
        let w = wanted(&[&["a"]]);
        let gives_up = [
            r#"{"a": 1e5}"#,
            r#"{"b": 1E5}"#,
            r#"{"b": "\ud83d\ude00"}"#,
            r#"{"b\n": 1}"#,
            r#"{"b": 01}"#,
            r#"{"b": 1.}"#,
            r#"{"b": -}"#,
            r#"{"b": [1,]}"#,
            r#"{"b": 1,}"#,
            r#"{"b": tru}"#,
            r#"{"b": "tab	"}"#,
            r#"{"b": "\x"}"#,
            r#"{"b": 1} x"#,
            "{\"a\": 1,\n\"b\": 2}",
            "[1]",
            "\"s\"",
        ];
        for text in gives_up {
            assert_eq!(scan(text, &w.root), None, "{text}");
        }
        let deep = format!(
            "{{\"b\": {}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(scan(&deep, &w.root), None);
        let long = format!("{{\"b\": {}}}", "9".repeat(MAX_DIGITS));
        assert_eq!(scan(&long, &w.root), None);
        // Given up on or not, what is kept is the same.
        for text in [r#"{"a": 1e5, "A": 2}"#, r#"{"a": "\ud83d\ude00"}"#] {
            let full: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                parse_kept(text, &w)
                    .unwrap()
                    .get(text.as_bytes(), &w, &["a"]),
                Ok(deep_get(&full, &["a"]))
            );
        }
        assert!(parse_kept(r#"{"a": 1"#, &w).is_err());
        assert!(parse_kept(r#"{"b": "\ud800"}"#, &w).is_err());
    }
}
