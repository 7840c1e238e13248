//! A rule whose every function returns what the event tells it, for the tests of Panther's
//! fallbacks and limits. Field `f` of the event drives function `f`:
//! - `match`: `true`/`false` for `rule`; the string `"raise"` makes `rule` return an error;
//! - `title`, `dedup`, `unique`, `severity`, `description`, `reference`, `runbook`: the
//!   string to return; `"panic"` panics; `"loop"` never returns; `"big"` returns 100 KiB
//!   of `x`; a `dedup` that is
//!   not a string returns the `Value` the rule read, as `{:?}` prints it;
//! - `context`: returned as JSON text (a string value is returned verbatim, so invalid JSON
//!   can be sent); `"big"` returns a 300 KiB object, `"large"` a 199 KiB one (just under
//!   Panther's 200 KiB limit);
//! - `destinations`: a comma-separated list; `""` is the empty list.
//!
//! A missing field returns an empty string (`DEFAULT` for `severity`, `{}` for the context,
//! `["default-destination"]` for destinations).

use rulehost_sdk::{Context, Event, Value, export_rule};

fn text(event: &Event, field: &str) -> String {
    match event.get_str(field).as_deref() {
        Some("panic") => panic!("echo rule: {field} panicked on request"),
        Some("loop") => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Some("big") => "x".repeat(100 << 10),
        Some(s) => s.to_owned(),
        None => String::new(),
    }
}

fn rule(event: &Event) -> Result<bool, String> {
    match event.get("match") {
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::Str(s)) if s == "raise" => Err("echo rule raised on request".to_owned()),
        Some(Value::Str(s)) if s == "panic" => panic!("echo rule: rule panicked on request"),
        _ => Ok(false),
    }
}

fn title(event: &Event) -> String {
    text(event, "title")
}

fn dedup(event: &Event) -> String {
    // A value that is not a string comes back as its `Value` (e.g. `Int(3)`, `Null`), so
    // tests see exactly what the rule read.
    match event.get("dedup") {
        Some(Value::Str(_)) | None => text(event, "dedup"),
        Some(other) => format!("{other:?}"),
    }
}

fn unique(event: &Event) -> String {
    text(event, "unique")
}

fn severity(event: &Event) -> String {
    match event.get("severity") {
        Some(_) => text(event, "severity"),
        None => "DEFAULT".to_owned(),
    }
}

fn description(event: &Event) -> String {
    text(event, "description")
}

fn reference(event: &Event) -> String {
    text(event, "reference")
}

fn runbook(event: &Event) -> String {
    text(event, "runbook")
}

fn alert_context(event: &Event) -> Context {
    let mut ctx = Context::new();
    match event.get("context") {
        Some(Value::Str(s)) if s == "panic" => panic!("echo rule: alert_context panicked"),
        Some(Value::Str(s)) if s == "big" => {
            ctx.insert("big", Some(Value::Str("y".repeat(300 << 10))));
        }
        Some(Value::Str(s)) if s == "large" => {
            ctx.insert("large", Some(Value::Str("y".repeat(199 << 10))));
        }
        Some(Value::Str(raw)) => {
            // Smuggle raw text through as a "JSON" value to test the host's validation.
            ctx.insert("raw", Some(Value::Json(raw)));
        }
        Some(Value::Json(obj)) => {
            ctx.insert("echo", Some(Value::Json(obj)));
        }
        _ => {}
    }
    ctx
}

fn destinations(event: &Event) -> Vec<String> {
    match event.get_str("destinations") {
        Some(list) if list.is_empty() => Vec::new(),
        Some(list) => list.split(',').map(str::to_owned).collect(),
        None => vec!["default-destination".to_owned()],
    }
}

export_rule!(
    rule = rule,
    title = title,
    dedup = dedup,
    unique = unique,
    severity = severity,
    alert_context = alert_context,
    description = description,
    reference = reference,
    runbook = runbook,
    destinations = destinations,
);
