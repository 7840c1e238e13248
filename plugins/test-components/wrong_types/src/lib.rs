//! A component that exports `rulehost:rules/detection@1.0.0` with every function named as
//! the host expects, but `rule` typed differently (its own copy of the WIT,
//! `wit/detection.wit`). Names and version pass the audit; the host must still refuse it at
//! load, not fail on every event. Like `wrong_world`, it uses `wit-bindgen` directly
//! instead of the SDK.

#[expect(
    unsafe_code,
    reason = "wit-bindgen's export glue is `unsafe extern` functions; the SDK hides the same glue from rule crates"
)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "mistyped",
    });

    use exports::rulehost::rules::detection::Guest;
    use rulehost::rules::types::Event;

    type Optional<T> = Option<Result<Option<T>, String>>;

    struct Mistyped;

    impl Guest for Mistyped {
        fn rule(_: &Event) -> bool {
            false
        }
        fn title(_: &Event) -> Optional<String> {
            None
        }
        fn dedup(_: &Event) -> Optional<String> {
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

    export!(Mistyped);
}
