//! The YAML side: each match expression (`{KeyPath, Condition, Value|Values}`, `All`, `Any`)
//! deserialized into an [`Expr`], its `Condition` looked up in [`CONDITIONS`] and its operand
//! checked against what the condition takes; errors carry the YAML line.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::ip::Cidr;
use super::key_path::KeyPath;
use super::matching::{Expr, Match, Test};
use super::value::{CmpOp, Num, Scalar, lower_string};

/// Deserializes a string through a parse function. Failing inside `visit_str` lets
/// serde_yaml_ng give the scalar's own line, not its mapping's.
pub(super) struct ParseVisitor<T>(pub(super) fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.0)(s).map_err(E::custom)
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
    use crate::filters::InlineFilters;
    use crate::filters::test_util::parse;
    use serde_json::json;

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
}
