//! A rule built against `rulehost:rules@0.2.0` (`wit/rulehost-0.2.wit`), the contract
//! before 1.0: it matches every event. A 1.x host must refuse it at load, saying that it
//! must be rebuilt.

#[expect(
    unsafe_code,
    reason = "wit-bindgen's export glue is `unsafe extern` functions; the SDK hides the same glue from rule crates"
)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "rule" });

    use exports::rulehost::rules::detection::{Guest, Matched};

    struct Old;

    impl Guest for Old {
        fn evaluate(_fields: Vec<u8>) -> Result<Option<Matched>, String> {
            Ok(Some(Matched {
                dedup: None,
                title: None,
                unique: None,
            }))
        }
        fn evaluate_batch(_fields: Vec<u8>, count: u32) -> Vec<Result<Option<Matched>, String>> {
            (0..count).map(|_| Self::evaluate(Vec::new())).collect()
        }
        fn rule() -> Result<bool, String> {
            Ok(true)
        }
        fn title() -> Option<String> {
            None
        }
        fn dedup() -> Option<String> {
            None
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

    export!(Old);
}
