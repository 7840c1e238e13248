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

// One file per concept: at load, `parse.rs` turns the YAML into the tree of `matching.rs`;
// per event, its tests compare `value.rs` scalars and `ip.rs` networks with the values a
// `key_path.rs` path reaches; `index.rs` answers the single string-equality filters of many
// rules with one lookup.
mod index;
mod ip;
mod key_path;
mod matching;
mod parse;
#[cfg(test)]
mod test_util;
mod value;

use serde::{Deserialize, Deserializer};

pub use index::FilterIndex;

use crate::event::Lookup;
use matching::Expr;

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
    pub fn matches<E: Lookup + ?Sized>(&self, event: &E) -> bool {
        self.exprs.iter().all(|e| e.matches(event))
    }

    /// The key paths the filters read, each up to its first index or wildcard: an event
    /// parsed for these (whole under each) answers the filters as the whole event would.
    pub fn paths(&self) -> Vec<&[String]> {
        let mut out = Vec::new();
        self.exprs.iter().for_each(|e| e.paths(&mut out));
        out
    }

    /// Whether there are no filters (every event passes).
    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }
}

impl<'de> Deserialize<'de> for InlineFilters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(InlineFilters {
            exprs: Vec::deserialize(d)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::test_util::filters;
    use serde_json::json;

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
}
