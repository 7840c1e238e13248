#!/usr/bin/env python3
"""Scaffold a new rule: plugins/rules/NAME (crate) and rules-tests/NAME.yml (spec).

Usage: python3 scripts/new_rule.py NAME [--rule-id Vendor.LogType.Name] [--root DIR]
(or `make new-rule NAME=... RULE_ID=...`)

NAME is snake_case and says what the rule detects (e.g. databricks_token_created).
"""
import argparse
import pathlib
import re
import sys

CARGO = """[package]
name = "{crate}"
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
crate-type = ["cdylib"]

[dependencies]
rulehost-sdk.workspace = true

[lints]
workspace = true
"""

LIB = """//! {rule_id}
//!
//! ## What it detects
//! TODO: one sentence.
//!
//! ## Why it matters
//! TODO: the risk, with MITRE ATT&CK ids.
//!
//! ## Example event
//! ```json
//! {{"actionName": "TODO", "userIdentity": {{"email": "user@example.com"}}}}
//! ```

use rulehost_sdk::{{Event, export_rule}};

fn rule(event: &Event) -> bool {{
    // `get` is Python's `event.get`: `None` when missing. A `Value` compares as Python
    // does (`== "x"`, `== 200` also matches `200.0`) and `truthy()` is `if value:`.
    event.get("actionName").is_some_and(|a| a == "TODO")
}}

fn title(event: &Event) -> String {{
    let actor = event.deep_get_or(&["userIdentity", "email"], "Unknown Actor");
    format!("TODO by {{actor}}")
}}

export_rule!(rule = rule, title = title);

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn matches_the_action() {{
        assert!(rule(&Event::from_json(r#"{{"actionName": "TODO"}}"#).unwrap()));
        assert!(!rule(&Event::from_json(r#"{{"actionName": "other"}}"#).unwrap()));
    }}
}}
"""

SPEC = """AnalysisType: rule
Filename: {name}.wasm
RuleID: "{rule_id}"
DisplayName: "TODO"
Enabled: true
LogTypes:
  - TODO.LogType
Severity: Medium
Description: TODO
Tests:
  - Name: Matches
    ExpectedResult: true
    Log:
      actionName: TODO
      userIdentity:
        email: user@example.com
    ExpectedTitle: "TODO by user@example.com"
  - Name: Other Action
    ExpectedResult: false
    Log:
      actionName: other
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--rule-id", default=None)
    parser.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent, type=pathlib.Path)
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z][a-z0-9_]*", args.name):
        print(f"error: NAME `{args.name}` must be snake_case (a-z, 0-9, _)", file=sys.stderr)
        return 2
    rule_id = args.rule_id or "Custom." + "".join(p.title() for p in args.name.split("_"))
    # Panther's RuleIDs are dotted names; the spec quotes it, so no quotes or spaces.
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", rule_id):
        print(f"error: RULE_ID `{rule_id}` must be a dotted name like Vendor.LogType.Name", file=sys.stderr)
        return 2
    crate_dir = args.root / "plugins" / "rules" / args.name
    spec = args.root / "rules-tests" / f"{args.name}.yml"
    for path in (crate_dir, spec):
        if path.exists():
            print(f"error: `{path}` already exists", file=sys.stderr)
            return 2
    (crate_dir / "src").mkdir(parents=True)
    (crate_dir / "Cargo.toml").write_text(CARGO.format(crate=args.name.replace("_", "-")))
    (crate_dir / "src" / "lib.rs").write_text(LIB.format(rule_id=rule_id))
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(SPEC.format(name=args.name, rule_id=rule_id))
    print(f"created `{crate_dir}` and `{spec}`; edit the TODOs, then "
          f"`cargo test -p {args.name.replace('_', '-')}` and `make plugins rules-test`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
