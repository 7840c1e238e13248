//! The parsed filter tree ([`Expr`], [`Match`], [`Test`]) and how it is matched against an
//! event: missing fields pass, negations are exact, wildcards match any element.

use std::net::IpAddr;

use serde_json::Value;

use super::ip::{Cidr, is_global, is_private};
use super::key_path::{KeyPath, walk_from};
use super::value::{CmpOp, Num, Scalar, icontains, iends_with, istarts_with};
use crate::event::Lookup;

/// One match expression.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Match(Match),
}

impl Expr {
    /// The key paths this expression reads, each up to its first index or wildcard.
    pub(super) fn paths<'a>(&'a self, out: &mut Vec<&'a [String]>) {
        match self {
            Expr::All(exprs) | Expr::Any(exprs) => exprs.iter().for_each(|e| e.paths(out)),
            Expr::Match(m) => out.push(&m.path.keys),
        }
    }

    pub(super) fn matches<E: Lookup + ?Sized>(&self, event: &E) -> bool {
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
pub(super) struct Match {
    pub(super) path: KeyPath,
    pub(super) test: Test,
    pub(super) negated: bool,
}

impl Match {
    fn matches<E: Lookup + ?Sized>(&self, event: &E) -> bool {
        if let Test::Always = self.test {
            return !self.negated;
        }
        let mut reached = false;
        let hit = walk_from(event, &self.path.keys, &self.path.steps, &mut |v| {
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

/// A condition's positive form, its operand prepared.
#[derive(Debug, Clone)]
pub(super) enum Test {
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

#[cfg(test)]
mod tests {
    use crate::filters::test_util::{check, check_pair, filters, single, single_path};
    use serde_json::{Value, json};

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
}
