//! [`Scalar`]: a filter's `Value`, and how it compares with JSON values: numbers exactly
//! ([`Num`], [`CmpOp`]), strings case-sensitively or lower-cased char by char.

use std::cmp::Ordering;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

// Case-insensitive comparison against a needle lower-cased at load time, char by char so
// that neither side is copied.

fn lower(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

pub(super) fn lower_string(s: &str) -> String {
    lower(s).collect()
}

fn iequals(s: &str, lowered: &str) -> bool {
    lower(s).eq(lowered.chars())
}

pub(super) fn istarts_with(s: &str, lowered: &str) -> bool {
    let mut hay = lower(s);
    lowered.chars().all(|c| hay.next() == Some(c))
}

pub(super) fn iends_with(s: &str, lowered: &str) -> bool {
    let mut hay = s.chars().rev().flat_map(|c| c.to_lowercase().rev());
    lowered.chars().rev().all(|c| hay.next() == Some(c))
}

pub(super) fn icontains(s: &str, lowered: &str) -> bool {
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
pub(super) enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub(super) fn accepts(self, o: Ordering) -> bool {
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
pub(super) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// A JSON number, or a string that parses as a finite number.
    pub(super) fn of(v: &Value) -> Option<Num> {
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

    pub(super) fn compare(self, other: Num) -> Option<Ordering> {
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
pub(super) enum Scalar {
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
    pub(super) fn string(text: String) -> Scalar {
        Scalar::Str {
            num: Num::parse(&text),
            boolean: parse_bool(&text),
            text,
        }
    }

    /// For the `I…` conditions: the text lower-cased once, here.
    pub(super) fn lowered(self) -> Scalar {
        match self {
            Scalar::Str { text, num, boolean } => Scalar::Str {
                text: lower_string(&text),
                num,
                boolean,
            },
            other => other,
        }
    }

    pub(super) fn equals(&self, v: &Value, insensitive: bool) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::test_util::{check, single};
    use serde_json::json;

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
