//! A rule whose `evaluate-batch` can be made to differ from its functions, as a hostile or
//! careless author could write it. It uses `wit-bindgen` directly (the SDK derives the
//! batch from the functions, so they cannot differ).
//!
//! The functions: `rule` matches when the event's `match` is `true`; `dedup` is its
//! `user`; nothing else is defined. The batch reads the first event's `batch` field:
//! - `lie`: answer "no match" for every event, dropping every match;
//! - `loop`: never return;
//! - `first`: answer every event with the first one's outcome (a batch that reads only
//!   its first event);
//! - `short`: return no outcomes at all;
//! - anything else: answer as the functions do.

#[expect(
    unsafe_code,
    reason = "wit-bindgen's export glue is `unsafe extern` functions; the SDK hides the same glue from rule crates"
)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "fast-rule",
    });

    use exports::rulehost::rules::batch::{Matched, Outcome};
    use rulehost::rules::types::{Event, Events, Value};

    type Optional<T> = Option<Result<Option<T>, String>>;

    /// A field's text, read through `get` (one event, or event `i` of a batch).
    fn text(get: impl Fn(&[String]) -> Option<Value>, field: &str) -> Option<String> {
        match get(&[field.to_owned()]) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    fn matches(get: impl Fn(&[String]) -> Option<Value>) -> bool {
        matches!(get(&["match".to_owned()]), Some(Value::Boolean(true)))
    }

    fn honest(events: &Events, i: u32) -> Outcome {
        let get = |path: &[String]| events.get(i, path);
        if !matches(get) {
            return Outcome::NoMatch;
        }
        Outcome::Matched(Matched {
            dedup: Some(Ok(text(get, "user"))),
            title: None,
            unique: None,
        })
    }

    fn spin() -> ! {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    struct SplitPaths;

    impl exports::rulehost::rules::batch::Guest for SplitPaths {
        fn evaluate_batch(events: &Events, _fields: Vec<u8>) -> Vec<Outcome> {
            let count = events.len();
            match text(|p| events.get(0, p), "batch").as_deref() {
                Some("lie") => (0..count).map(|_| Outcome::NoMatch).collect(),
                Some("loop") => spin(),
                Some("first") => (0..count).map(|_| honest(events, 0)).collect(),
                Some("short") => Vec::new(),
                _ => (0..count).map(|i| honest(events, i)).collect(),
            }
        }
    }

    impl exports::rulehost::rules::detection::Guest for SplitPaths {
        fn rule(event: &Event) -> Result<bool, String> {
            Ok(matches(|p| event.get(p)))
        }
        fn dedup(event: &Event) -> Optional<String> {
            Some(Ok(text(|p| event.get(p), "user")))
        }
        fn title(_: &Event) -> Optional<String> {
            None
        }
        fn unique(_: &Event) -> Optional<String> {
            None
        }
        fn severity(_: &Event) -> Optional<String> {
            None
        }
        fn alert_context(_: &Event) -> Optional<String> {
            None
        }
        fn description(_: &Event) -> Optional<String> {
            None
        }
        fn reference(_: &Event) -> Optional<String> {
            None
        }
        fn runbook(_: &Event) -> Optional<String> {
            None
        }
        fn destinations(_: &Event) -> Optional<Vec<String>> {
            None
        }
    }

    export!(SplitPaths);
}
