//! A rule whose fast paths can be made to differ from its functions, as a hostile or
//! careless author could write it. It uses `wit-bindgen` directly (the SDK derives the fast
//! paths from the functions, so they cannot differ).
//!
//! The functions: `rule` matches when the event's `match` is `true`; `dedup` is its
//! `user`; nothing else is defined. The fast paths read the event's `evaluate` and `batch`
//! fields (of the first event, for a batch):
//! - `lie`: answer "no match" for every event, dropping every match;
//! - `loop`: never return;
//! - `first` (`batch` only): answer every event with the first one's result, as a batch
//!   that forgets `select-event` does;
//! - anything else: answer as the functions do.

#[expect(
    unsafe_code,
    reason = "wit-bindgen's export glue is `unsafe extern` functions; the SDK hides the same glue from rule crates"
)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "rule",
    });

    use exports::rulehost::rules::detection::{Guest, Matched};
    use rulehost::rules::event_api::{Value, get, select_event};

    fn text(field: &str) -> Option<String> {
        match get(&[field.to_owned()]) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    fn matches() -> bool {
        matches!(get(&["match".to_owned()]), Some(Value::Boolean(true)))
    }

    fn honest() -> Option<Matched> {
        matches().then(|| Matched {
            dedup: text("user"),
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

    impl Guest for SplitPaths {
        fn evaluate(_fields: Vec<u8>) -> Result<Option<Matched>, String> {
            match text("evaluate").as_deref() {
                Some("lie") => Ok(None),
                Some("loop") => spin(),
                _ => Ok(honest()),
            }
        }
        fn evaluate_batch(_fields: Vec<u8>, count: u32) -> Vec<Result<Option<Matched>, String>> {
            match text("batch").as_deref() {
                Some("lie") => (0..count).map(|_| Ok(None)).collect(),
                Some("loop") => spin(),
                Some("first") => (0..count).map(|_| Ok(honest())).collect(),
                _ => (0..count)
                    .map(|i| {
                        select_event(i);
                        Ok(honest())
                    })
                    .collect(),
            }
        }
        fn rule() -> Result<bool, String> {
            Ok(matches())
        }
        fn title() -> Option<String> {
            None
        }
        fn dedup() -> Option<String> {
            text("user")
        }
        fn unique() -> Option<String> {
            None
        }
        fn severity() -> Option<String> {
            None
        }
        fn alert_context() -> Option<String> {
            None
        }
        fn description() -> Option<String> {
            None
        }
        fn reference() -> Option<String> {
            None
        }
        fn runbook() -> Option<String> {
            None
        }
        fn destinations() -> Option<Vec<String>> {
            None
        }
    }

    export!(SplitPaths);
}
