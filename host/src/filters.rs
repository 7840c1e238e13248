//! [`InlineFilters`]: a rule's Panther `InlineFilters:` (reference: panther-semantics.md §5),
//! parsed once when the spec loads and evaluated against every event before the rule runs.
//!
//! The filters are a YAML list of match expressions, all of which must hold (implicit `All`):
//! `{KeyPath, Condition}`, `{KeyPath, Condition, Value}`, `{KeyPath, Condition, Values}`,
//! `{All: [...]}` and `{Any: [...]}`. Key paths, CIDRs and lower-cased needles are prepared at
//! load time, so [`InlineFilters::matches`] does not allocate per event (except where
//! [`rulehost_event::get`] lower-cases a non-ASCII key for its case-insensitive fallback).
//!
//! ```
//! use rulehost::filters::InlineFilters;
//!
//! let filters: InlineFilters = serde_yaml_ng::from_str(
//!     "
//! - KeyPath: eventSource
//!   Condition: Equals
//!   Value: s3.amazonaws.com
//! - Any:
//!     - KeyPath: sourceIPAddress
//!       Condition: IsIPAddressPublic
//!     - KeyPath: userIdentity.type
//!       Condition: IEquals
//!       Value: root
//! ",
//! )
//! .unwrap();
//! let event = serde_json::json!({
//!     "eventSource": "s3.amazonaws.com",
//!     "sourceIPAddress": "10.0.0.1",
//!     "userIdentity": {"Type": "Root"},
//! });
//! assert!(filters.matches(&event));
//! ```
//!
//! # Semantics
//!
//! Panther documents only some of these; the rest are rulehost's decisions.
//!
//! - **Missing field**: a filter whose `KeyPath` reaches nothing *passes*, whatever its
//!   condition (Panther's documented rule). A path that runs into a non-object, a non-list, a
//!   `null` or an out-of-range index on the way counts as missing.
//! - **Existence conditions** are the exception: they see a missing field as `null`, as
//!   JMESPath does. `Exists`/`IsNotNull` mean "present and not null", `DoesNotExist`/`IsNull`
//!   mean "missing or null", `IsNullOrEmpty` means "missing, null, `""`, `[]` or `{}`" and
//!   `IsNotNullOrEmpty` is its negation. Numbers and booleans are never empty.
//! - **Null field**: positive conditions are false, negated ones (`DoesNot*`, `IDoesNot*`,
//!   `IsNot*`, `IsIPAddressNotInCIDR`) true (Panther's documented rule).
//! - **Conditions that do not apply** to a value's type (`StartsWith` on a number, `IsGreaterThan`
//!   on a string that is not a number, `Equals` on a list, an IP condition on a non-address) are
//!   false, and their negations true, as for null.
//! - **Negated conditions are exact negations** of their positive partner on the same values.
//! - **Wildcards** (`a[*].b`): a positive condition holds if it holds for *any* element reached;
//!   a negated one holds if the positive holds for *no* element ("no element matches").
//!   Elements without the rest of the path are skipped; if no element reaches a value the field
//!   is missing (so the filter passes). Indices (`a[2]`, `a[-1]` from the end) pick one element.
//! - **Keys** match exactly first, then case-insensitively, as [`rulehost_event::get`].
//!   Quote a key holding `.`, `[`, `]` or `"`: `a."b.c"`.
//! - **Equality** (`Equals`, `IsIn`, list membership in `Contains`): strings compare as
//!   strings, numbers numerically (`200 == 200.0`, exact for 64-bit integers), booleans as
//!   booleans. A string and a number are equal when the string parses as that number
//!   (`Value: "200"` matches JSON `200`, and `Value: 200` matches JSON `"200"`), and a string
//!   and a boolean when the string is `true`/`false` in any case: YAML authors quote
//!   inconsistently, and a type mismatch that silently never matches is the worst failure for
//!   a filter. Two strings never compare numerically (`"200"` ≠ `"200.0"`); numbers never
//!   equal booleans.
//! - **`I…` conditions** lower-case both sides (Unicode, char by char); between a string and a
//!   number or boolean they behave as their case-sensitive forms.
//! - **`StartsWith`/`EndsWith`/`Contains`** apply to strings and need a string `Value` (quote
//!   it). `Contains` on a list tests membership (some element equals the `Value`), as Python's
//!   `in` does.
//! - **`IsGreaterThan`, `IsGreaterThanOrEqual`, `IsLessThan`, `IsLessThanOrEqual`** compare
//!   numbers; a string field or `Value` counts when it parses as a finite number.
//! - **`IsIPAddressPrivate`/`IsIPAddressPublic`** are Python 3.13's
//!   `ipaddress.ip_address(x).is_private`/`.is_global` (the IANA special-purpose registries),
//!   which Panther's Python helpers use: `100.64.0.0/10` (shared address space) is neither, and
//!   an IPv4-mapped IPv6 address is classified by its IPv4 address.
//! - **`IsIPAddressInCIDR`/`IsIPAddressNotInCIDR`** take one CIDR in `Value` or several in
//!   `Values` (any matches). A CIDR with host bits set (`10.0.0.1/8`) is a load error, as in
//!   Python's `ip_network`; a bare address means a single host; an IPv4 address is never in an
//!   IPv6 network and vice versa.
//! - **`All: []`** holds and **`Any: []`** does not; an empty filter list matches every event.
//! - **`AlwaysTrue`/`AlwaysFalse`** ignore the event; their `KeyPath` is optional.
//! - **Rejected at load**: unknown keys and conditions, `Value`/`Values` on the wrong condition,
//!   `null`, list or mapping `Value`s, `Enrichment` expressions (they need Panther's enrichment
//!   data), and list comprehensions and multi-key forms (not allowed in `InlineFilters`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// A rule's `InlineFilters:`: match expressions that must all hold for the rule to run.
///
/// Deserialize it from the YAML list; evaluate it with [`InlineFilters::matches`]. The
/// [module docs](self) list the semantics.
#[derive(Debug, Clone, Default)]
pub struct InlineFilters {
    exprs: Vec<Expr>,
}

impl InlineFilters {
    /// Whether `event` passes every filter, so that the rule should run on it.
    pub fn matches(&self, event: &Value) -> bool {
        self.exprs.iter().all(|e| e.matches(event))
    }

    /// Whether there are no filters (every event passes).
    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }
}

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
    steps: Vec<Step>,
    /// Every indexed filter on this path, by its position in the list given to `new`.
    members: Vec<usize>,
    /// The indexed filters each string value passes.
    by_value: HashMap<String, Vec<usize>>,
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
                        members: Vec::new(),
                        by_value: HashMap::new(),
                    });
                    index.paths.len() - 1
                }
            };
            let path = &mut index.paths[at];
            path.members.push(i);
            for value in values {
                let passing = path.by_value.entry(value.to_owned()).or_default();
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
    pub fn apply(&self, event: &Value, results: &mut [Option<bool>]) {
        for path in &self.paths {
            let mut found = None;
            walk(event, &path.steps, &mut |v| {
                found = Some(v);
                true
            });
            match found {
                // A missing field passes (see the module docs).
                None => path.members.iter().for_each(|&i| results[i] = Some(true)),
                Some(Value::String(s)) => {
                    path.members.iter().for_each(|&i| results[i] = Some(false));
                    for &i in path.by_value.get(s.as_str()).into_iter().flatten() {
                        results[i] = Some(true);
                    }
                }
                Some(_) => {}
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

impl<'de> Deserialize<'de> for InlineFilters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(InlineFilters {
            exprs: Vec::deserialize(d)?,
        })
    }
}

/// One match expression.
#[derive(Debug, Clone)]
enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Match(Match),
}

impl Expr {
    fn matches(&self, event: &Value) -> bool {
        match self {
            Expr::All(exprs) => exprs.iter().all(|e| e.matches(event)),
            Expr::Any(exprs) => exprs.iter().any(|e| e.matches(event)),
            Expr::Match(m) => m.matches(event),
        }
    }
}

/// `{KeyPath, Condition, Value|Values}`, with the condition reduced to a positive [`Test`]
/// and a negation flag.
#[derive(Debug, Clone)]
struct Match {
    path: KeyPath,
    test: Test,
    negated: bool,
}

impl Match {
    fn matches(&self, event: &Value) -> bool {
        if let Test::Always = self.test {
            return !self.negated;
        }
        let mut reached = false;
        let hit = walk(event, &self.path.steps, &mut |v| {
            reached = true;
            self.test.holds(v)
        });
        if reached {
            hit != self.negated
        } else if self.test.is_existence() {
            self.test.holds(&Value::Null) != self.negated
        } else {
            // Panther: "If an event does not contain the field the filter is evaluating, the
            // filter will pass." (docs.panther.com/detections/rules/inline-filters)
            true
        }
    }
}

/// Calls `f` on each value `steps` reaches from `v`, stopping at the first for which `f`
/// returns true; returns whether it stopped. Visiting instead of collecting keeps the hot
/// path free of allocation.
fn walk<'a, F: FnMut(&'a Value) -> bool>(v: &'a Value, steps: &[Step], f: &mut F) -> bool {
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

/// A condition's positive form, its operand prepared.
#[derive(Debug, Clone)]
enum Test {
    Equals(Scalar),
    /// The operand's text is lower-cased.
    IEquals(Scalar),
    StartsWith(String),
    IStartsWith(String),
    EndsWith(String),
    IEndsWith(String),
    /// Always a [`Scalar::Str`].
    Contains(Scalar),
    IContains(Scalar),
    Compare(CmpOp, Num),
    IsIn(Vec<Scalar>),
    IIsIn(Vec<Scalar>),
    Exists,
    IsNull,
    IsNullOrEmpty,
    IsIp,
    IsIpv4,
    IsIpv6,
    IsIpPublic,
    IsIpPrivate,
    InCidr(Vec<Cidr>),
    Always,
}

impl Test {
    /// Whether the test asks about presence, so that a missing field is `null` to it rather
    /// than a pass.
    fn is_existence(&self) -> bool {
        matches!(self, Test::Exists | Test::IsNull | Test::IsNullOrEmpty)
    }

    fn holds(&self, v: &Value) -> bool {
        match self {
            Test::Equals(s) => s.equals(v, false),
            Test::IEquals(s) => s.equals(v, true),
            Test::StartsWith(t) => v.as_str().is_some_and(|s| s.starts_with(t.as_str())),
            Test::IStartsWith(t) => v.as_str().is_some_and(|s| istarts_with(s, t)),
            Test::EndsWith(t) => v.as_str().is_some_and(|s| s.ends_with(t.as_str())),
            Test::IEndsWith(t) => v.as_str().is_some_and(|s| iends_with(s, t)),
            Test::Contains(s) => contains(s, v, false),
            Test::IContains(s) => contains(s, v, true),
            Test::Compare(op, rhs) => Num::of(v)
                .and_then(|lhs| lhs.compare(*rhs))
                .is_some_and(|o| op.accepts(o)),
            Test::IsIn(list) => list.iter().any(|s| s.equals(v, false)),
            Test::IIsIn(list) => list.iter().any(|s| s.equals(v, true)),
            Test::Exists => !v.is_null(),
            Test::IsNull => v.is_null(),
            Test::IsNullOrEmpty => match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Bool(_) | Value::Number(_) => false,
            },
            Test::IsIp => ip(v).is_some(),
            Test::IsIpv4 => matches!(ip(v), Some(IpAddr::V4(_))),
            Test::IsIpv6 => matches!(ip(v), Some(IpAddr::V6(_))),
            Test::IsIpPublic => ip(v).is_some_and(is_global),
            Test::IsIpPrivate => ip(v).is_some_and(is_private),
            Test::InCidr(cidrs) => ip(v).is_some_and(|a| cidrs.iter().any(|c| c.contains(a))),
            Test::Always => true,
        }
    }
}

/// Substring for strings, membership for lists.
fn contains(needle: &Scalar, v: &Value, insensitive: bool) -> bool {
    match v {
        Value::String(s) => match needle {
            Scalar::Str { text, .. } if insensitive => icontains(s, text),
            Scalar::Str { text, .. } => s.contains(text.as_str()),
            _ => false,
        },
        Value::Array(items) => items.iter().any(|item| needle.equals(item, insensitive)),
        _ => false,
    }
}

fn ip(v: &Value) -> Option<IpAddr> {
    v.as_str()?.parse().ok()
}

// Case-insensitive comparison against a needle lower-cased at load time, char by char so
// that neither side is copied.

fn lower(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

fn lower_string(s: &str) -> String {
    lower(s).collect()
}

fn iequals(s: &str, lowered: &str) -> bool {
    lower(s).eq(lowered.chars())
}

fn istarts_with(s: &str, lowered: &str) -> bool {
    let mut hay = lower(s);
    lowered.chars().all(|c| hay.next() == Some(c))
}

fn iends_with(s: &str, lowered: &str) -> bool {
    let mut hay = s.chars().rev().flat_map(|c| c.to_lowercase().rev());
    lowered.chars().rev().all(|c| hay.next() == Some(c))
}

fn icontains(s: &str, lowered: &str) -> bool {
    if lowered.is_empty() {
        return true;
    }
    if s.is_ascii() && lowered.is_ascii() {
        let needle = lowered.as_bytes();
        return s
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle));
    }
    s.char_indices()
        .any(|(i, _)| istarts_with(&s[i..], lowered))
}

/// `IsGreaterThan` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn accepts(self, o: Ordering) -> bool {
        match self {
            CmpOp::Gt => o.is_gt(),
            CmpOp::Ge => o.is_ge(),
            CmpOp::Lt => o.is_lt(),
            CmpOp::Le => o.is_le(),
        }
    }
}

/// A number, integers kept exact (JSON's `u64` and `i64` both fit).
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// A JSON number, or a string that parses as a finite number.
    fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Number(n) => Some(Num::from_json(n)),
            Value::String(s) => Num::parse(s),
            _ => None,
        }
    }

    fn from_json(n: &serde_json::Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i.into())
        } else if let Some(u) = n.as_u64() {
            Num::Int(u.into())
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn parse(s: &str) -> Option<Num> {
        if let Ok(i) = s.parse::<i128>() {
            return Some(Num::Int(i));
        }
        // Rust's float syntax also takes `inf` and `NaN`; those are words, not numbers, here.
        s.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Num::Float)
    }

    fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
        }
    }
}

/// Compares exactly: `i as f64` would round integers above 2^53.
fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    let whole = f.trunc();
    // Beyond i128's range (about ±1.7e38) the float wins outright.
    if whole >= 1.7e38 {
        return Some(Ordering::Less);
    }
    if whole <= -1.7e38 {
        return Some(Ordering::Greater);
    }
    match i.cmp(&(whole as i128)) {
        // Same whole part: the fraction decides.
        Ordering::Equal => 0.0.partial_cmp(&(f - whole)),
        o => Some(o),
    }
}

/// A YAML `Value`: a string, number or boolean.
#[derive(Debug, Clone)]
enum Scalar {
    Bool(bool),
    Num(Num),
    /// `num` and `boolean` are the text read as a number or boolean, for equality with JSON
    /// numbers and booleans.
    Str {
        text: String,
        num: Option<Num>,
        boolean: Option<bool>,
    },
}

impl Scalar {
    fn string(text: String) -> Scalar {
        Scalar::Str {
            num: Num::parse(&text),
            boolean: parse_bool(&text),
            text,
        }
    }

    /// For the `I…` conditions: the text lower-cased once, here.
    fn lowered(self) -> Scalar {
        match self {
            Scalar::Str { text, num, boolean } => Scalar::Str {
                text: lower_string(&text),
                num,
                boolean,
            },
            other => other,
        }
    }

    fn equals(&self, v: &Value, insensitive: bool) -> bool {
        match (self, v) {
            (Scalar::Str { text, .. }, Value::String(s)) => {
                if insensitive {
                    iequals(s, text)
                } else {
                    s == text
                }
            }
            (Scalar::Str { num: Some(n), .. }, Value::Number(x)) => num_eq(*n, Num::from_json(x)),
            (
                Scalar::Str {
                    boolean: Some(b), ..
                },
                Value::Bool(x),
            ) => b == x,
            (Scalar::Num(n), Value::Number(x)) => num_eq(*n, Num::from_json(x)),
            (Scalar::Num(n), Value::String(s)) => Num::parse(s).is_some_and(|x| num_eq(*n, x)),
            (Scalar::Bool(b), Value::Bool(x)) => b == x,
            (Scalar::Bool(b), Value::String(s)) => parse_bool(s) == Some(*b),
            _ => false,
        }
    }
}

fn num_eq(a: Num, b: Num) -> bool {
    a.compare(b) == Some(Ordering::Equal)
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Scalar, E> {
                Ok(Scalar::Num(Num::Int(i.into())))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Scalar, E> {
                Ok(Scalar::Num(Num::Int(u.into())))
            }
            fn visit_i128<E: de::Error>(self, i: i128) -> Result<Scalar, E> {
                Ok(Scalar::Num(Num::Int(i)))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Scalar, E> {
                if f.is_finite() {
                    Ok(Scalar::Num(Num::Float(f)))
                } else {
                    Err(E::custom(format!("`{f}` is not a finite number")))
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::string(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar, E> {
                Ok(Scalar::string(s))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Err(E::custom(
                    "a `Value` must be a string, number or boolean, not null; \
                     test for null with `Condition: IsNull`",
                ))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                self.visit_unit()
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// A parsed `KeyPath`.
#[derive(Debug, Clone, Default)]
struct KeyPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
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
        Ok(KeyPath { steps })
    }
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

/// Deserializes a string through a parse function. Failing inside `visit_str` lets
/// serde_yaml_ng give the scalar's own line, not its mapping's.
struct ParseVisitor<T>(fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.0)(s).map_err(E::custom)
    }
}

/// An IP network.
#[derive(Debug, Clone, Copy)]
enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    const fn v4(a: [u8; 4], prefix: u32) -> Cidr {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Cidr::V4 {
            net: u32::from_be_bytes(a) & mask,
            mask,
        }
    }

    const fn v6(s: [u16; 8], prefix: u32) -> Cidr {
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        let addr = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
        Cidr::V6 {
            net: addr.to_bits() & mask,
            mask,
        }
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(a)) => a.to_bits() & mask == net,
            (Cidr::V6 { net, mask }, IpAddr::V6(a)) => a.to_bits() & mask == net,
            _ => false,
        }
    }

    /// `addr/prefix` or a bare address (one host). Host bits must be zero, as in Python's
    /// `ipaddress.ip_network`.
    fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid CIDR `{s}`: `{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= max && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("invalid CIDR `{s}`: prefix must be 0 to {max}"))?,
        };
        let cidr = match addr {
            IpAddr::V4(a) => Cidr::v4(a.octets(), prefix),
            IpAddr::V6(a) => Cidr::v6(a.segments(), prefix),
        };
        let net = match cidr {
            Cidr::V4 { net, .. } => IpAddr::V4(Ipv4Addr::from_bits(net)),
            Cidr::V6 { net, .. } => IpAddr::V6(Ipv6Addr::from_bits(net)),
        };
        if net != addr {
            return Err(format!(
                "invalid CIDR `{s}`: host bits are set; the network is `{net}/{prefix}`"
            ));
        }
        Ok(cidr)
    }
}

// Python 3.13 `ipaddress`: `_IPv4Constants` / `_IPv6Constants` (`_private_networks`,
// `_private_networks_exceptions`, `_public_network`), from the IANA special-purpose registries.

const V4_PRIVATE: [Cidr; 14] = [
    Cidr::v4([0, 0, 0, 0], 8),
    Cidr::v4([10, 0, 0, 0], 8),
    Cidr::v4([127, 0, 0, 0], 8),
    Cidr::v4([169, 254, 0, 0], 16),
    Cidr::v4([172, 16, 0, 0], 12),
    Cidr::v4([192, 0, 0, 0], 24),
    Cidr::v4([192, 0, 0, 170], 31),
    Cidr::v4([192, 0, 2, 0], 24),
    Cidr::v4([192, 168, 0, 0], 16),
    Cidr::v4([198, 18, 0, 0], 15),
    Cidr::v4([198, 51, 100, 0], 24),
    Cidr::v4([203, 0, 113, 0], 24),
    Cidr::v4([240, 0, 0, 0], 4),
    Cidr::v4([255, 255, 255, 255], 32),
];
const V4_PRIVATE_EXCEPTIONS: [Cidr; 2] =
    [Cidr::v4([192, 0, 0, 9], 32), Cidr::v4([192, 0, 0, 10], 32)];
/// Shared address space (carrier-grade NAT): neither private nor global.
const V4_SHARED: Cidr = Cidr::v4([100, 64, 0, 0], 10);
const V6_PRIVATE: [Cidr; 11] = [
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
    Cidr::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
    Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
];
const V6_PRIVATE_EXCEPTIONS: [Cidr; 6] = [
    Cidr::v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128),
    Cidr::v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128),
    Cidr::v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32),
    Cidr::v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48),
    Cidr::v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
    Cidr::v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28),
];

fn in_table(ip: IpAddr, included: &[Cidr], excepted: &[Cidr]) -> bool {
    included.iter().any(|c| c.contains(ip)) && !excepted.iter().any(|c| c.contains(ip))
}

/// Python's `is_private`.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => in_table(ip, &V4_PRIVATE, &V4_PRIVATE_EXCEPTIONS),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => in_table(ip, &V6_PRIVATE, &V6_PRIVATE_EXCEPTIONS),
        },
    }
}

/// Python's `is_global`.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => !V4_SHARED.contains(ip) && !is_private(ip),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_global(IpAddr::V4(v4)),
            None => !is_private(ip),
        },
    }
}

/// What a condition takes besides its `KeyPath`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Equals,
    IEquals,
    StartsWith,
    IStartsWith,
    EndsWith,
    IEndsWith,
    Contains,
    IContains,
    Compare(CmpOp),
    IsIn,
    IIsIn,
    Exists,
    IsNull,
    IsNullOrEmpty,
    IsIp,
    IsIpv4,
    IsIpv6,
    IsIpPublic,
    IsIpPrivate,
    InCidr,
    Always,
}

/// Every supported `Condition`: its name, its positive form, and whether it negates it.
const CONDITIONS: &[(&str, Kind, bool)] = &[
    ("Equals", Kind::Equals, false),
    ("DoesNotEqual", Kind::Equals, true),
    ("IEquals", Kind::IEquals, false),
    ("IDoesNotEqual", Kind::IEquals, true),
    ("StartsWith", Kind::StartsWith, false),
    ("DoesNotStartWith", Kind::StartsWith, true),
    ("IStartsWith", Kind::IStartsWith, false),
    ("IDoesNotStartWith", Kind::IStartsWith, true),
    ("EndsWith", Kind::EndsWith, false),
    ("DoesNotEndWith", Kind::EndsWith, true),
    ("IEndsWith", Kind::IEndsWith, false),
    ("IDoesNotEndWith", Kind::IEndsWith, true),
    ("Contains", Kind::Contains, false),
    ("DoesNotContain", Kind::Contains, true),
    ("IContains", Kind::IContains, false),
    ("IDoesNotContain", Kind::IContains, true),
    ("IsGreaterThan", Kind::Compare(CmpOp::Gt), false),
    ("IsGreaterThanOrEqual", Kind::Compare(CmpOp::Ge), false),
    ("IsLessThan", Kind::Compare(CmpOp::Lt), false),
    ("IsLessThanOrEqual", Kind::Compare(CmpOp::Le), false),
    ("IsIn", Kind::IsIn, false),
    ("IsNotIn", Kind::IsIn, true),
    ("IIsIn", Kind::IIsIn, false),
    ("IIsNotIn", Kind::IIsIn, true),
    ("Exists", Kind::Exists, false),
    ("DoesNotExist", Kind::Exists, true),
    ("IsNull", Kind::IsNull, false),
    ("IsNotNull", Kind::IsNull, true),
    ("IsNullOrEmpty", Kind::IsNullOrEmpty, false),
    ("IsNotNullOrEmpty", Kind::IsNullOrEmpty, true),
    ("IsIPAddress", Kind::IsIp, false),
    ("IsIPv4Address", Kind::IsIpv4, false),
    ("IsIPv6Address", Kind::IsIpv6, false),
    ("IsIPAddressPublic", Kind::IsIpPublic, false),
    ("IsIPAddressPrivate", Kind::IsIpPrivate, false),
    ("IsIPAddressInCIDR", Kind::InCidr, false),
    ("IsIPAddressNotInCIDR", Kind::InCidr, true),
    ("AlwaysTrue", Kind::Always, false),
    ("AlwaysFalse", Kind::Always, true),
];

/// A `Condition:` name, looked up in [`CONDITIONS`].
#[derive(Debug, Clone, Copy)]
struct Condition {
    name: &'static str,
    kind: Kind,
    negated: bool,
}

impl Condition {
    fn parse(name: &str) -> Result<Condition, String> {
        if let Some(&(name, kind, negated)) = CONDITIONS.iter().find(|(n, ..)| *n == name) {
            return Ok(Condition {
                name,
                kind,
                negated,
            });
        }
        let why = match name {
            "AnyElement" | "AllElements" | "OnlyOneElement" | "NoElement" => {
                "list comprehensions are not allowed in InlineFilters".to_owned()
            }
            "CIDRContainsIPAddresses" | "CIDRDoesNotContainIPAddresses" => {
                "it is not supported by rulehost".to_owned()
            }
            _ => match CONDITIONS
                .iter()
                .find(|(n, ..)| n.eq_ignore_ascii_case(name.trim_end_matches('s')))
                .or_else(|| {
                    CONDITIONS
                        .iter()
                        .find(|(n, ..)| n.eq_ignore_ascii_case(name))
                }) {
                Some((n, ..)) => format!("did you mean `{n}`?"),
                None => "see the supported conditions in the `rulehost::filters` docs".to_owned(),
            },
        };
        Err(format!("unknown Condition `{name}`: {why}"))
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseVisitor(Condition::parse))
    }
}

impl Match {
    fn new(
        path: Option<KeyPath>,
        condition: Condition,
        value: Option<Scalar>,
        values: Option<Vec<Scalar>>,
    ) -> Result<Match, String> {
        let name = condition.name;
        let operand = Operand {
            name,
            value,
            values,
        };
        let test = match condition.kind {
            Kind::Equals => Test::Equals(operand.one()?),
            Kind::IEquals => Test::IEquals(operand.one()?.lowered()),
            Kind::StartsWith => Test::StartsWith(operand.text()?),
            Kind::IStartsWith => Test::IStartsWith(lower_string(&operand.text()?)),
            Kind::EndsWith => Test::EndsWith(operand.text()?),
            Kind::IEndsWith => Test::IEndsWith(lower_string(&operand.text()?)),
            Kind::Contains => Test::Contains(Scalar::string(operand.text()?)),
            Kind::IContains => Test::IContains(Scalar::string(operand.text()?).lowered()),
            Kind::Compare(op) => Test::Compare(op, operand.number()?),
            Kind::IsIn => Test::IsIn(operand.list()?),
            Kind::IIsIn => Test::IIsIn(operand.list()?.into_iter().map(Scalar::lowered).collect()),
            Kind::Exists => operand.none(Test::Exists)?,
            Kind::IsNull => operand.none(Test::IsNull)?,
            Kind::IsNullOrEmpty => operand.none(Test::IsNullOrEmpty)?,
            Kind::IsIp => operand.none(Test::IsIp)?,
            Kind::IsIpv4 => operand.none(Test::IsIpv4)?,
            Kind::IsIpv6 => operand.none(Test::IsIpv6)?,
            Kind::IsIpPublic => operand.none(Test::IsIpPublic)?,
            Kind::IsIpPrivate => operand.none(Test::IsIpPrivate)?,
            Kind::InCidr => Test::InCidr(operand.cidrs()?),
            Kind::Always => operand.none(Test::Always)?,
        };
        let path = match path {
            Some(path) => path,
            None if matches!(test, Test::Always) => KeyPath::default(),
            None => return Err(format!("`{name}` needs a `KeyPath`")),
        };
        Ok(Match {
            path,
            test,
            negated: condition.negated,
        })
    }
}

/// A condition's `Value`/`Values`, checked against what the condition takes.
struct Operand {
    name: &'static str,
    value: Option<Scalar>,
    values: Option<Vec<Scalar>>,
}

impl Operand {
    fn one(self) -> Result<Scalar, String> {
        let name = self.name;
        match (self.value, self.values) {
            (Some(v), None) => Ok(v),
            (_, Some(_)) => Err(format!(
                "`{name}` takes a single `Value`, not `Values`; to match any of a list use `IsIn`"
            )),
            (None, None) => Err(format!("`{name}` needs a `Value`")),
        }
    }

    fn text(self) -> Result<String, String> {
        let name = self.name;
        match self.one()? {
            Scalar::Str { text, .. } => Ok(text),
            _ => Err(format!(
                "`{name}` needs a string `Value`; quote numbers and booleans in YAML"
            )),
        }
    }

    fn number(self) -> Result<Num, String> {
        let name = self.name;
        match self.one()? {
            Scalar::Num(n) | Scalar::Str { num: Some(n), .. } => Ok(n),
            _ => Err(format!("`{name}` needs a numeric `Value`")),
        }
    }

    fn list(self) -> Result<Vec<Scalar>, String> {
        let name = self.name;
        match (self.value, self.values) {
            (None, Some(vs)) => Ok(vs),
            (Some(_), _) => Err(format!(
                "`{name}` takes a list in `Values`, not a single `Value`"
            )),
            (None, None) => Err(format!("`{name}` needs `Values` (a list)")),
        }
    }

    fn none(self, test: Test) -> Result<Test, String> {
        if self.value.is_some() || self.values.is_some() {
            return Err(format!("`{}` takes no `Value` or `Values`", self.name));
        }
        Ok(test)
    }

    fn cidrs(self) -> Result<Vec<Cidr>, String> {
        let name = self.name;
        let list = match (self.value, self.values) {
            (Some(v), None) => vec![v],
            (None, Some(vs)) => vs,
            (Some(_), Some(_)) => {
                return Err(format!("`{name}` takes `Value` or `Values`, not both"));
            }
            (None, None) => return Err(format!("`{name}` needs a CIDR in `Value` or `Values`")),
        };
        list.into_iter()
            .map(|v| match v {
                Scalar::Str { text, .. } => {
                    Cidr::parse(&text).map_err(|e| format!("`{name}`: {e}"))
                }
                _ => Err(format!("`{name}` needs CIDR strings such as `10.0.0.0/8`")),
            })
            .collect()
    }
}

/// The keys a match expression may hold; serde names the rest "unknown field".
#[derive(Deserialize)]
#[serde(field_identifier)]
enum Field {
    KeyPath,
    Condition,
    Value,
    Values,
    All,
    Any,
    Enrichment,
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ExprVisitor)
    }
}

struct ExprVisitor;

impl<'de> Visitor<'de> for ExprVisitor {
    type Value = Expr;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an InlineFilters match expression (a mapping)")
    }

    // Checks run inside `visit_map` so that serde_yaml_ng tags errors with the mapping's line.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Expr, A::Error> {
        fn set<T, E: de::Error>(slot: &mut Option<T>, v: T, key: &'static str) -> Result<(), E> {
            if slot.replace(v).is_some() {
                return Err(E::duplicate_field(key));
            }
            Ok(())
        }
        let mut key_path = None;
        let mut condition = None;
        let mut value = None;
        let mut values = None;
        let mut all = None;
        let mut any = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::KeyPath => set(&mut key_path, map.next_value()?, "KeyPath")?,
                Field::Condition => set(&mut condition, map.next_value()?, "Condition")?,
                Field::Value => set(&mut value, map.next_value()?, "Value")?,
                Field::Values => set(&mut values, map.next_value()?, "Values")?,
                Field::All => set(&mut all, map.next_value()?, "All")?,
                Field::Any => set(&mut any, map.next_value()?, "Any")?,
                Field::Enrichment => {
                    return Err(de::Error::custom(
                        "`Enrichment` match expressions are not supported: \
                         they need Panther's enrichment data (lookup tables)",
                    ));
                }
            }
        }
        let has_match_keys =
            key_path.is_some() || condition.is_some() || value.is_some() || values.is_some();
        match (all, any) {
            (Some(_), Some(_)) => Err(de::Error::custom(
                "a match expression holds `All` or `Any`, not both; nest one inside the other",
            )),
            (Some(_), None) | (None, Some(_)) if has_match_keys => Err(de::Error::custom(
                "`All`/`Any` stands alone in its match expression; \
                 move `KeyPath`/`Condition` into its list",
            )),
            (Some(exprs), None) => Ok(Expr::All(exprs)),
            (None, Some(exprs)) => Ok(Expr::Any(exprs)),
            (None, None) => {
                let condition = condition.ok_or_else(|| de::Error::missing_field("Condition"))?;
                Match::new(key_path, condition, value, values)
                    .map(Expr::Match)
                    .map_err(de::Error::custom)
            }
        }
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
    use serde_json::json;

    fn parse(yaml: &str) -> Result<InlineFilters, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    fn filters(yaml: &str) -> InlineFilters {
        parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    /// One `{KeyPath: f, Condition, Value}` filter; `operand` is the YAML after `Value: `
    /// (or a full `Values:` line, or empty).
    fn single(condition: &str, operand: &str) -> InlineFilters {
        let operand = if operand.is_empty() || operand.starts_with("Values:") {
            operand.to_owned()
        } else {
            format!("Value: {operand}")
        };
        filters(&format!(
            "- KeyPath: f\n  Condition: {condition}\n  {operand}\n"
        ))
    }

    /// Asserts `condition` gives `expected[i]` on `{"f": values[i]}` and the negation on each.
    fn check_pair(positive: &str, negative: &str, operand: &str, cases: &[(Value, bool)]) {
        let pos = single(positive, operand);
        let neg = single(negative, operand);
        for (value, expected) in cases {
            let event = json!({ "f": value });
            assert_eq!(
                pos.matches(&event),
                *expected,
                "{positive} {operand} on {value}"
            );
            assert_eq!(
                neg.matches(&event),
                !*expected,
                "{negative} {operand} on {value}"
            );
        }
    }

    fn check(condition: &str, operand: &str, cases: &[(Value, bool)]) {
        let f = single(condition, operand);
        for (value, expected) in cases {
            let event = json!({ "f": value });
            assert_eq!(
                f.matches(&event),
                *expected,
                "{condition} {operand} on {value}"
            );
        }
    }

    #[test]
    fn equals_and_does_not_equal() {
        check_pair(
            "Equals",
            "DoesNotEqual",
            "abc",
            &[
                (json!("abc"), true),
                (json!("ABC"), false),
                (json!("abcd"), false),
                (json!(["abc"]), false),
                (json!({"abc": 1}), false),
                (Value::Null, false),
            ],
        );
        check_pair(
            "Equals",
            "DoesNotEqual",
            "true",
            &[
                (json!(true), true),
                (json!(false), false),
                (json!(1), false),
            ],
        );
        check_pair(
            "Equals",
            "DoesNotEqual",
            "1.5",
            &[(json!(1.5), true), (json!(1), false), (json!("1.5"), true)],
        );
    }

    #[test]
    fn equals_between_strings_numbers_and_booleans() {
        // Quoted YAML number vs JSON number: numeric.
        check(
            "Equals",
            "\"200\"",
            &[
                (json!(200), true),
                (json!(200.0), true),
                (json!(201), false),
                (json!("200"), true),
                // Two strings compare as strings.
                (json!("200.0"), false),
            ],
        );
        // YAML number vs JSON string: numeric when the string parses.
        check(
            "Equals",
            "200",
            &[
                (json!("200"), true),
                (json!("200.0"), true),
                (json!("2e2"), true),
                (json!("two hundred"), false),
                (json!(true), false),
            ],
        );
        check(
            "Equals",
            "\"TRUE\"",
            &[(json!(true), true), (json!(false), false)],
        );
        check(
            "Equals",
            "false",
            &[
                (json!("False"), true),
                (json!("no"), false),
                (json!(0), false),
            ],
        );
        // Large integers stay exact.
        check(
            "Equals",
            "9007199254740993",
            &[
                (json!(9007199254740993u64), true),
                (json!(9007199254740992u64), false),
            ],
        );
        check(
            "Equals",
            "\"18446744073709551615\"",
            &[(json!(u64::MAX), true)],
        );
    }

    #[test]
    fn iequals_and_idoesnotequal() {
        check_pair(
            "IEquals",
            "IDoesNotEqual",
            "Admin",
            &[
                (json!("admin"), true),
                (json!("ADMIN"), true),
                (json!("admins"), false),
                (json!(1), false),
                (Value::Null, false),
            ],
        );
        check_pair(
            "IEquals",
            "IDoesNotEqual",
            "ÉTÉ",
            &[
                (json!("été"), true),
                (json!("Été"), true),
                (json!("ete"), false),
            ],
        );
        // Numbers compare as with Equals.
        check(
            "IEquals",
            "\"42\"",
            &[(json!(42), true), (json!(43), false)],
        );
    }

    #[test]
    fn starts_with_family() {
        let cases = [
            (json!("arn:aws:iam::1"), true),
            (json!("ARN:AWS:iam"), false),
            (json!("xarn:aws"), false),
            (json!(12), false),
            (Value::Null, false),
        ];
        check_pair("StartsWith", "DoesNotStartWith", "\"arn:aws\"", &cases);
        check_pair(
            "IStartsWith",
            "IDoesNotStartWith",
            "\"ARN:aws\"",
            &[
                (json!("arn:aws:iam::1"), true),
                (json!("ARN:AWS:iam"), true),
                (json!("Arn:Aw"), false),
                (json!("xarn:aws"), false),
                (json!(12), false),
                (Value::Null, false),
            ],
        );
        check(
            "StartsWith",
            "\"\"",
            &[(json!("x"), true), (json!(""), true)],
        );
    }

    #[test]
    fn ends_with_family() {
        check_pair(
            "EndsWith",
            "DoesNotEndWith",
            ".exe",
            &[
                (json!("evil.exe"), true),
                (json!("EVIL.EXE"), false),
                (json!("exe"), false),
                (json!(1), false),
                (Value::Null, false),
            ],
        );
        check_pair(
            "IEndsWith",
            "IDoesNotEndWith",
            ".EXE",
            &[
                (json!("evil.exe"), true),
                (json!("EVIL.Exe"), true),
                (json!("evil.exe2"), false),
                (json!(1), false),
                (Value::Null, false),
            ],
        );
        check("IEndsWith", "STRASSE", &[(json!("Hauptstrasse"), true)]);
    }

    #[test]
    fn contains_family_on_strings_and_lists() {
        check_pair(
            "Contains",
            "DoesNotContain",
            "admin",
            &[
                (json!("superadmin-role"), true),
                (json!("SuperAdmin"), false),
                (json!("adm"), false),
                // A list: membership, not substring.
                (json!(["user", "admin"]), true),
                (json!(["administrator"]), false),
                (json!(5), false),
                (Value::Null, false),
            ],
        );
        check_pair(
            "IContains",
            "IDoesNotContain",
            "ADMIN",
            &[
                (json!("superAdmin-role"), true),
                (json!("adm"), false),
                (json!(["User", "Admin"]), true),
                (json!(["administrator"]), false),
                (json!("Ünïcode ADMIN"), true),
                (json!("Ünïcode"), false),
                (Value::Null, false),
            ],
        );
        // List membership uses Equals' number rules.
        check(
            "Contains",
            "\"22\"",
            &[(json!([22, 443]), true), (json!([80]), false)],
        );
    }

    #[test]
    fn numeric_comparisons() {
        let f = |c: &str, v: &str| single(c, v);
        let gt = f("IsGreaterThan", "10");
        let ge = f("IsGreaterThanOrEqual", "\"10\"");
        let lt = f("IsLessThan", "10.5");
        let le = f("IsLessThanOrEqual", "10");
        let cases: &[(Value, [bool; 4])] = &[
            (json!(11), [true, true, false, false]),
            (json!(10), [false, true, true, true]),
            (json!(10.25), [true, true, true, false]),
            (json!(-3), [false, false, true, true]),
            (json!("11"), [true, true, false, false]),
            (json!("9.5"), [false, false, true, true]),
            (json!("eleven"), [false; 4]),
            (json!("NaN"), [false; 4]),
            (json!(true), [false; 4]),
            (json!([11]), [false; 4]),
            (Value::Null, [false; 4]),
        ];
        for (v, [g, ge_, l, le_]) in cases {
            let e = json!({ "f": v });
            assert_eq!(gt.matches(&e), *g, "> 10 on {v}");
            assert_eq!(ge.matches(&e), *ge_, ">= 10 on {v}");
            assert_eq!(lt.matches(&e), *l, "< 10.5 on {v}");
            assert_eq!(le.matches(&e), *le_, "<= 10 on {v}");
        }
        // Exact beyond 2^53.
        check(
            "IsGreaterThan",
            "9007199254740992",
            &[
                (json!(9007199254740993u64), true),
                (json!(9007199254740992.0), false),
            ],
        );
        assert_eq!(cmp_int_float(2, 2.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(-2, -2.5), Some(Ordering::Greater));
        assert_eq!(cmp_int_float(3, f64::INFINITY), Some(Ordering::Less));
        assert_eq!(cmp_int_float(3, f64::NAN), None);
    }

    #[test]
    fn is_in_and_is_not_in() {
        check_pair(
            "IsIn",
            "IsNotIn",
            "Values: [ConsoleLogin, 443, true]",
            &[
                (json!("ConsoleLogin"), true),
                (json!("consolelogin"), false),
                (json!(443), true),
                (json!("443"), true),
                (json!(true), true),
                (json!(80), false),
                (json!(["ConsoleLogin"]), false),
                (Value::Null, false),
            ],
        );
        check_pair(
            "IIsIn",
            "IIsNotIn",
            "Values: [ConsoleLogin, AssumeRole]",
            &[
                (json!("consolelogin"), true),
                (json!("ASSUMEROLE"), true),
                (json!("Other"), false),
                (Value::Null, false),
            ],
        );
        check_pair("IsIn", "IsNotIn", "Values: []", &[(json!("x"), false)]);
    }

    #[test]
    fn existence_conditions_on_present_null_empty_and_missing() {
        // (event, Exists, IsNull, IsNullOrEmpty); negations are checked by check_pair.
        let events = [
            (json!({"f": "x"}), true, false, false),
            (json!({"f": 0}), true, false, false),
            (json!({"f": false}), true, false, false),
            (json!({"f": null}), false, true, true),
            (json!({"f": ""}), true, false, true),
            (json!({"f": []}), true, false, true),
            (json!({"f": {}}), true, false, true),
            (json!({"f": [null]}), true, false, false),
            (json!({}), false, true, true),
            (json!({"g": 1}), false, true, true),
        ];
        let pairs = [
            ("Exists", "DoesNotExist"),
            ("IsNull", "IsNotNull"),
            ("IsNullOrEmpty", "IsNotNullOrEmpty"),
        ];
        for (event, exists, null, null_or_empty) in &events {
            for ((pos, neg), expected) in pairs.iter().zip([exists, null, null_or_empty]) {
                assert_eq!(
                    single(pos, "").matches(event),
                    *expected,
                    "{pos} on {event}"
                );
                assert_eq!(
                    single(neg, "").matches(event),
                    !*expected,
                    "{neg} on {event}"
                );
            }
        }
    }

    #[test]
    fn ip_address_types() {
        let cases = [
            ("1.2.3.4", true, true, false),
            ("2001:db8::1", true, false, true),
            ("::ffff:10.0.0.1", true, false, true),
            ("1.2.3", false, false, false),
            ("010.0.0.1", false, false, false),
            ("1.2.3.4/32", false, false, false),
            ("example.com", false, false, false),
        ];
        for (s, ip, v4, v6) in cases {
            let e = json!({ "f": s });
            assert_eq!(single("IsIPAddress", "").matches(&e), ip, "{s}");
            assert_eq!(single("IsIPv4Address", "").matches(&e), v4, "{s}");
            assert_eq!(single("IsIPv6Address", "").matches(&e), v6, "{s}");
        }
        for c in ["IsIPAddress", "IsIPv4Address", "IsIPv6Address"] {
            assert!(!single(c, "").matches(&json!({"f": null})));
            assert!(!single(c, "").matches(&json!({"f": 16909060})));
            assert!(single(c, "").matches(&json!({})), "missing passes");
        }
    }

    #[test]
    fn ip_address_public_and_private_follow_python() {
        // (address, is_private, is_global) as Python 3.13's ipaddress reports them.
        let cases = [
            ("8.8.8.8", false, true),
            ("10.1.2.3", true, false),
            ("172.16.0.1", true, false),
            ("172.32.0.1", false, true),
            ("192.168.1.1", true, false),
            ("127.0.0.1", true, false),
            ("169.254.169.254", true, false),
            ("0.1.2.3", true, false),
            ("100.64.0.1", false, false),
            ("192.0.0.9", false, true),
            ("192.0.0.8", true, false),
            ("192.0.0.171", true, false),
            ("198.19.255.255", true, false),
            ("203.0.113.7", true, false),
            ("255.255.255.255", true, false),
            ("224.0.0.1", false, true),
            ("2606:4700::1111", false, true),
            ("::1", true, false),
            ("::", true, false),
            ("fd00::1", true, false),
            ("fe80::1", true, false),
            ("2001:db8::1", true, false),
            ("2001:3::1", false, true),
            ("2002::1", true, false),
            ("::ffff:8.8.8.8", false, true),
            ("::ffff:192.168.0.1", true, false),
        ];
        for (s, private, public) in cases {
            let e = json!({ "f": s });
            assert_eq!(single("IsIPAddressPrivate", "").matches(&e), private, "{s}");
            assert_eq!(single("IsIPAddressPublic", "").matches(&e), public, "{s}");
        }
        for c in ["IsIPAddressPrivate", "IsIPAddressPublic"] {
            assert!(!single(c, "").matches(&json!({"f": "not an ip"})));
            assert!(!single(c, "").matches(&json!({"f": null})));
        }
    }

    #[test]
    fn ip_address_in_cidr() {
        check_pair(
            "IsIPAddressInCIDR",
            "IsIPAddressNotInCIDR",
            "10.0.0.0/8",
            &[
                (json!("10.255.0.1"), true),
                (json!("11.0.0.1"), false),
                (json!("::ffff:10.0.0.1"), false),
                (json!("nope"), false),
                (json!(10), false),
                (Value::Null, false),
            ],
        );
        check_pair(
            "IsIPAddressInCIDR",
            "IsIPAddressNotInCIDR",
            "Values: [\"192.168.0.0/16\", \"2001:db8::/32\", 1.2.3.4, 0.0.0.0/0]",
            &[
                (json!("192.168.7.7"), true),
                (json!("2001:db8:1::5"), true),
                (json!("1.2.3.4"), true),
                (json!("8.8.8.8"), true),
                (json!("2001:db9::1"), false),
            ],
        );
        check(
            "IsIPAddressInCIDR",
            "1.2.3.4",
            &[(json!("1.2.3.4"), true), (json!("1.2.3.5"), false)],
        );
    }

    #[test]
    fn always_true_and_always_false_ignore_the_event() {
        let t = filters("- Condition: AlwaysTrue\n");
        let f = filters("- Condition: AlwaysFalse\n");
        for e in [json!({}), json!({"f": null})] {
            assert!(t.matches(&e));
            assert!(!f.matches(&e));
        }
        // A KeyPath is allowed and ignored, even when missing.
        assert!(!single("AlwaysFalse", "").matches(&json!({})));
        assert!(single("AlwaysTrue", "").matches(&json!({"f": null})));
    }

    #[test]
    fn all_and_any_nest() {
        let f = filters(
            "
- KeyPath: eventSource
  Condition: Equals
  Value: iam.amazonaws.com
- Any:
    - KeyPath: eventName
      Condition: StartsWith
      Value: Create
    - All:
        - KeyPath: eventName
          Condition: Equals
          Value: AttachUserPolicy
        - KeyPath: user
          Condition: IsNotIn
          Values: [ci-bot]
",
        );
        let ev = |src: &str, name: &str, user: &str| json!({"eventSource": src, "eventName": name, "user": user});
        assert!(f.matches(&ev("iam.amazonaws.com", "CreateUser", "ci-bot")));
        assert!(f.matches(&ev("iam.amazonaws.com", "AttachUserPolicy", "alice")));
        assert!(!f.matches(&ev("iam.amazonaws.com", "AttachUserPolicy", "ci-bot")));
        assert!(!f.matches(&ev("iam.amazonaws.com", "DeleteUser", "alice")));
        assert!(!f.matches(&ev("s3.amazonaws.com", "CreateBucket", "alice")));
    }

    #[test]
    fn empty_lists() {
        let none = filters("[]");
        assert!(none.is_empty());
        assert!(none.matches(&json!({})));
        assert!(InlineFilters::default().matches(&json!({})));
        assert!(!filters("- Condition: AlwaysTrue\n").is_empty());
        assert!(filters("- All: []\n").matches(&json!({})));
        assert!(!filters("- Any: []\n").matches(&json!({})));
    }

    #[test]
    fn wildcards_match_any_element_and_negations_none() {
        let event = json!({"users": [
            {"name": "alice", "ip": "10.0.0.1"},
            {"name": "bob"},
            {"name": null},
            "not an object",
        ]});
        let on = |cond: &str, operand: &str| {
            let operand = if operand.is_empty() {
                String::new()
            } else {
                format!("Value: {operand}")
            };
            filters(&format!(
                "- KeyPath: users[*].name\n  Condition: {cond}\n  {operand}\n"
            ))
            .matches(&event)
        };
        assert!(on("Equals", "bob"));
        assert!(!on("DoesNotEqual", "bob"), "an element matches");
        assert!(!on("Equals", "carol"));
        assert!(on("DoesNotEqual", "carol"), "no element matches");
        assert!(on("IStartsWith", "AL"));
        assert!(!on("IDoesNotStartWith", "AL"));
        // Existence: positive = some element, negated = no element.
        assert!(on("Exists", ""));
        assert!(!on("DoesNotExist", ""));
        assert!(on("IsNull", ""), "the null name");
        assert!(!on("IsNotNull", ""));
        // Elements without the key are skipped; the key on one element decides.
        let ip = filters("- KeyPath: users[*].ip\n  Condition: IsIPAddressPrivate\n");
        assert!(ip.matches(&event));
        // No element reaches a value: missing, so the filter passes.
        let empty = json!({"users": []});
        assert!(single_path("users[*].name", "Equals", "x").matches(&empty));
        assert!(single_path("users[*].name", "DoesNotEqual", "x").matches(&empty));
        assert!(!single_path("users[*].name", "Exists", "").matches(&empty));
        assert!(
            single_path("users[*].name", "Equals", "x").matches(&json!({"users": {"name": "y"}}))
        );
    }

    fn single_path(path: &str, condition: &str, value: &str) -> InlineFilters {
        let value = if value.is_empty() {
            String::new()
        } else {
            format!("Value: {value}")
        };
        filters(&format!(
            "- KeyPath: '{path}'\n  Condition: {condition}\n  {value}\n"
        ))
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

    #[test]
    fn missing_passes_null_fails_positive() {
        let conds = [
            ("Equals", "x"),
            ("IEquals", "x"),
            ("StartsWith", "x"),
            ("IEndsWith", "x"),
            ("Contains", "x"),
            ("IsGreaterThan", "1"),
            ("IsLessThanOrEqual", "1"),
            ("IsIPAddress", ""),
            ("IsIPAddressPublic", ""),
            ("IsIPAddressInCIDR", "10.0.0.0/8"),
        ];
        let negated = [
            ("DoesNotEqual", "x"),
            ("IDoesNotEqual", "x"),
            ("DoesNotStartWith", "x"),
            ("IDoesNotEndWith", "x"),
            ("DoesNotContain", "x"),
            ("IsIPAddressNotInCIDR", "10.0.0.0/8"),
        ];
        for (c, v) in conds.iter().chain(&negated) {
            let missing = single_path("a.b", c, v);
            assert!(missing.matches(&json!({})), "{c}: missing root key");
            assert!(missing.matches(&json!({"a": {}})), "{c}: missing leaf");
            assert!(missing.matches(&json!({"a": null})), "{c}: null on the way");
            assert!(
                missing.matches(&json!({"a": "str"})),
                "{c}: scalar on the way"
            );
        }
        for (c, v) in conds {
            assert!(
                !single_path("a.b", c, v).matches(&json!({"a": {"b": null}})),
                "{c} on null"
            );
        }
        for (c, v) in negated {
            assert!(
                single_path("a.b", c, v).matches(&json!({"a": {"b": null}})),
                "{c} on null"
            );
        }
        let is_in = filters("- KeyPath: a\n  Condition: IsIn\n  Values: [x]\n");
        let not_in = filters("- KeyPath: a\n  Condition: IsNotIn\n  Values: [x]\n");
        assert!(is_in.matches(&json!({})) && not_in.matches(&json!({})));
        assert!(!is_in.matches(&json!({"a": null})) && not_in.matches(&json!({"a": null})));
    }

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

    fn parse_err(yaml: &str) -> String {
        match parse(yaml) {
            Ok(f) => panic!("parsed: {f:?}\n{yaml}"),
            Err(e) => e,
        }
    }

    #[test]
    fn unknown_condition_is_an_error_with_its_line() {
        let err = parse_err(
            "- KeyPath: a\n  Condition: Equals\n  Value: x\n- KeyPath: b\n  Condition: Equalz\n  Value: y\n",
        );
        assert!(err.contains("unknown Condition `Equalz`"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        let err = parse_err("- KeyPath: a\n  Condition: equals\n  Value: x\n");
        assert!(err.contains("did you mean `Equals`?"), "{err}");
        let err = parse_err("- KeyPath: a\n  Condition: IsGreaterThanOrEquals\n  Value: 1\n");
        assert!(
            err.contains("did you mean `IsGreaterThanOrEqual`?"),
            "{err}"
        );
        let err = parse_err("- KeyPath: a\n  Condition: AnyElement\n");
        assert!(err.contains("list comprehensions are not allowed"), "{err}");
        let err =
            parse_err("- KeyPath: a\n  Condition: CIDRContainsIPAddresses\n  Value: 1.2.3.4\n");
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn unknown_and_misplaced_keys_are_errors() {
        let err = parse_err("- KeyPath: a\n  Condition: Exists\n  Key: a\n");
        assert!(err.contains("unknown field `Key`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let err = parse_err("- None:\n    - Condition: AlwaysTrue\n");
        assert!(err.contains("unknown field `None`"), "{err}");
        let err = parse_err("- All: []\n  KeyPath: a\n  Condition: Exists\n");
        assert!(err.contains("`All`/`Any` stands alone"), "{err}");
        let err = parse_err("- All: []\n  Any: []\n");
        assert!(err.contains("not both"), "{err}");
        let err = parse_err("- KeyPath: a\n  Value: x\n");
        assert!(err.contains("missing field `Condition`"), "{err}");
        let err = parse_err("- KeyPath: a\n  Condition: Equals\n  KeyPath: b\n  Value: x\n");
        assert!(err.contains("duplicate field `KeyPath`"), "{err}");
        let err = parse_err("- KeyPath: a\n");
        assert!(err.contains("missing field `Condition`"), "{err}");
        let err = parse_err("- just a string\n");
        assert!(
            err.contains("expected an InlineFilters match expression"),
            "{err}"
        );
        let err = parse_err("KeyPath: a\n");
        assert!(err.contains("expected a sequence"), "{err}");
    }

    #[test]
    fn value_and_values_must_fit_the_condition() {
        let cases = [
            (
                "Condition: Equals\n  Values: [a]",
                "`Equals` takes a single `Value`, not `Values`",
            ),
            ("Condition: Equals", "`Equals` needs a `Value`"),
            (
                "Condition: Equals\n  Value: a\n  Values: [b]",
                "takes a single `Value`",
            ),
            (
                "Condition: IsIn\n  Value: a",
                "`IsIn` takes a list in `Values`",
            ),
            ("Condition: IsNotIn", "`IsNotIn` needs `Values`"),
            ("Condition: IsIn\n  Values: a", "expected a sequence"),
            (
                "Condition: Exists\n  Value: a",
                "`Exists` takes no `Value` or `Values`",
            ),
            ("Condition: IsIPAddress\n  Values: [a]", "takes no `Value`"),
            (
                "Condition: StartsWith\n  Value: 10.",
                "`StartsWith` needs a string `Value`",
            ),
            (
                "Condition: IContains\n  Value: true",
                "needs a string `Value`",
            ),
            (
                "Condition: IsGreaterThan\n  Value: ten",
                "`IsGreaterThan` needs a numeric `Value`",
            ),
            (
                "Condition: IsLessThan\n  Value: .nan",
                "not a finite number",
            ),
            (
                "Condition: Equals\n  Value: null",
                "not null; test for null with `Condition: IsNull`",
            ),
            (
                "Condition: Equals\n  Value: [a]",
                "expected a string, number or boolean",
            ),
            (
                "Condition: IsIn\n  Values: [a, {b: c}]",
                "expected a string, number or boolean",
            ),
            ("Condition: IsIPAddressInCIDR", "needs a CIDR"),
            (
                "Condition: IsIPAddressInCIDR\n  Value: 10.0.0/8",
                "`10.0.0` is not an IP address",
            ),
            (
                "Condition: IsIPAddressInCIDR\n  Value: 10.0.0.0/33",
                "prefix must be 0 to 32",
            ),
            (
                "Condition: IsIPAddressInCIDR\n  Value: 10.0.0.0/+8",
                "prefix must be 0 to 32",
            ),
            (
                "Condition: IsIPAddressInCIDR\n  Value: 10.1.2.3/8",
                "host bits are set; the network is `10.0.0.0/8`",
            ),
            (
                "Condition: IsIPAddressNotInCIDR\n  Values: [1]",
                "needs CIDR strings",
            ),
        ];
        for (body, want) in cases {
            let err = parse_err(&format!("- KeyPath: a\n  {body}\n"));
            assert!(err.contains(want), "{body}: {err}");
        }
        let err = parse_err("- Condition: Equals\n  Value: x\n");
        assert!(err.contains("`Equals` needs a `KeyPath`"), "{err}");
        let err = parse_err("- KeyPath: 'a..b'\n  Condition: Exists\n");
        assert!(err.contains("invalid KeyPath `a..b`: empty key"), "{err}");
        assert!(err.contains("line 1 column 12"), "{err}");
    }

    #[test]
    fn enrichment_is_rejected() {
        let err = parse_err(
            "- Any:\n    - Enrichment:\n        Table: t\n        Selector: s\n        FieldPath: f\n      Condition: Equals\n      Value: x\n",
        );
        assert!(
            err.contains("`Enrichment` match expressions are not supported"),
            "{err}"
        );
        assert!(err.contains("Panther's enrichment data"), "{err}");
    }

    #[test]
    fn deserializes_from_a_yaml_value() {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "- KeyPath: a\n  Condition: IsIn\n  Values: [1, 2]\n- Any:\n    - Condition: AlwaysFalse\n    - KeyPath: b\n      Condition: Exists\n",
        )
        .unwrap();
        let f: InlineFilters = serde_yaml_ng::from_value(value).unwrap();
        assert!(f.matches(&json!({"a": 2, "b": 0})));
        assert!(!f.matches(&json!({"a": 3, "b": 0})));
        assert!(!f.matches(&json!({"a": 2})));
        let bad: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("- KeyPath: a\n  Condition: Nope\n").unwrap();
        let err = serde_yaml_ng::from_value::<InlineFilters>(bad).unwrap_err();
        assert!(
            err.to_string().contains("unknown Condition `Nope`"),
            "{err}"
        );
    }

    #[test]
    fn deserializes_as_a_struct_field() {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Spec {
            #[serde(default)]
            inline_filters: InlineFilters,
        }
        let spec: Spec = serde_yaml_ng::from_str(
            "InlineFilters:\n  - KeyPath: a\n    Condition: Equals\n    Value: 1\n",
        )
        .unwrap();
        assert!(spec.inline_filters.matches(&json!({"a": 1})));
        assert!(!spec.inline_filters.matches(&json!({"a": 2})));
        let spec: Spec = serde_yaml_ng::from_str("{}").unwrap();
        assert!(spec.inline_filters.is_empty());
    }

    /// The module docs' example (the crate has `doctest = false`).
    #[test]
    fn module_example() {
        let f = filters(
            "
- KeyPath: eventSource
  Condition: Equals
  Value: s3.amazonaws.com
- Any:
    - KeyPath: sourceIPAddress
      Condition: IsIPAddressPublic
    - KeyPath: userIdentity.type
      Condition: IEquals
      Value: root
",
        );
        let event = json!({
            "eventSource": "s3.amazonaws.com",
            "sourceIPAddress": "10.0.0.1",
            "userIdentity": {"Type": "Root"},
        });
        assert!(f.matches(&event));
        // A missing `userIdentity.type` passes, so the `Any` holds.
        let no_identity = json!({"eventSource": "s3.amazonaws.com", "sourceIPAddress": "10.0.0.1"});
        assert!(f.matches(&no_identity));
        let user = json!({"eventSource": "s3.amazonaws.com", "sourceIPAddress": "10.0.0.1",
                          "userIdentity": {"type": "IAMUser"}});
        assert!(!f.matches(&user));
    }

    #[test]
    fn case_insensitive_helpers() {
        assert!(iequals("STRASSE", "strasse"));
        assert!(!iequals("STRASS", "strasse"));
        assert!(istarts_with("ÀBC", "àb"));
        assert!(!istarts_with("À", "àb"));
        assert!(iends_with("xÀBC", "àbc"));
        assert!(!iends_with("BC", "àbc"));
        assert!(icontains("xxÀBCxx", "àbc"));
        assert!(icontains("xxABCxx", "abc"));
        assert!(!icontains("ab", "abc"));
        assert!(icontains("", ""));
        // The Kelvin sign lower-cases to an ASCII `k`.
        assert!(iequals("\u{212A}ey", "key"));
    }
}
