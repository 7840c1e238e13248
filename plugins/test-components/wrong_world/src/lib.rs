//! A valid WASI 0.2 component of the wrong world: it exports `other:greeter/greet@1.0.0`
//! instead of `rulehost:rules/detection@1.0.0`. On purpose it uses `wit-bindgen` with its
//! own WIT instead of the SDK (house style item 6 does not apply to this test fixture):
//! the host must refuse it at load with a "wrong world" error, not fail later in a call.

#[expect(
    unsafe_code,
    reason = "wit-bindgen's export glue is `unsafe extern` functions; the SDK hides the same glue from rule crates"
)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "greeter",
    });

    struct Greeter;

    impl exports::other::greeter::greet::Guest for Greeter {
        fn hello(name: String) -> String {
            format!("hello, {name}")
        }
    }

    export!(Greeter);
}
