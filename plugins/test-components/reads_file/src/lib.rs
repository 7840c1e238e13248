//! A rule that reads `/etc/passwd` with `std::fs`. Built for `wasm32-wasip2` this imports
//! `wasi:filesystem/*`, which the host's import audit refuses at load, before any call.

use rulehost_sdk::{Event, export_rule};

fn rule(_event: &Event) -> bool {
    std::fs::read_to_string("/etc/passwd").is_ok_and(|text| text.contains("root"))
}

export_rule!(rule = rule);
