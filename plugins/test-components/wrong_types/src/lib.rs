//! A component that exports `rulehost:rules/detection@0.2.0` with every function named as
//! the host expects, but `evaluate` and `evaluate-batch` typed differently (its own copy of
//! the WIT, `wit/detection.wit`). Names and version pass the audit; the host must still
//! refuse it at load, not fail on every event. Like `wrong_world`, it uses `wit-bindgen`
//! directly instead of the SDK.

#[expect(
    unsafe_code,
    reason = "wit-bindgen's export glue is `unsafe extern` functions; the SDK hides the same glue from rule crates"
)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "mistyped",
    });

    use exports::rulehost::rules::detection::{Guest, Matched};

    struct Mistyped;

    impl Guest for Mistyped {
        fn evaluate() -> Result<Option<Matched>, String> {
            Ok(None)
        }
        fn evaluate_batch() -> Vec<Result<Option<Matched>, String>> {
            Vec::new()
        }
        fn rule() -> Result<bool, String> {
            Ok(false)
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

    export!(Mistyped);
}
