//! Write rulehost detection rules as plain Rust functions.
//!
//! A rule is a `cdylib` crate with functions that take an [`Event`] and one call to
//! [`export_rule!`]. Built for `wasm32-wasip2` it becomes a WebAssembly component that the
//! rulehost host runs in a sandbox; built natively, the same functions run under `cargo test`
//! against JSON, with the host's lookup semantics.
//!
//! ```
//! use rulehost_sdk::{Event, export_rule};
//!
//! fn rule(event: &Event) -> bool {
//!     event.get_str("actionName").as_deref() == Some("deleteCluster")
//! }
//!
//! fn title(event: &Event) -> String {
//!     format!("Cluster deleted by {}", event.deep_get_or(&["userIdentity", "email"], "someone"))
//! }
//!
//! export_rule!(rule = rule, title = title);
//!
//! let event = Event::from_json(r#"{"actionName": "deleteCluster"}"#).unwrap();
//! assert!(rule(&event));
//! assert_eq!(title(&event), "Cluster deleted by someone");
//! ```
#![deny(missing_docs)]

#[cfg(any(target_arch = "wasm32", test))]
mod alloc;
mod context;
mod error;
mod event;
pub mod helpers;
mod json;
#[cfg(any(target_arch = "wasm32", test))]
mod packed;
pub mod regex;
mod value;

pub use context::Context;
pub use error::Error;
pub use event::Event;
pub use value::{Object, Value};

#[doc(hidden)]
pub use wit_bindgen;

/// Every rule component allocates through [`alloc::RuleAlloc`]: free lists per size class,
/// several times cheaper than the default `dlmalloc` for the short strings of each call.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOC: alloc::RuleAlloc = alloc::RuleAlloc::new();

/// The component bindings, generated once from `wit/rulehost.wit`.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "fast-rule",
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "rulehost_sdk::bindings",
        // Imports borrow their arguments: `get` takes the path as `&[&str]`, so reading a
        // field allocates nothing in the guest.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// What a rule function returns, in Panther's terms: a value (`String`, `bool`, ...), or a
/// `Result` whose error becomes the exception Python would have raised there (a rule error
/// for `rule`, the function's fallback for the others).
pub trait Returns<T> {
    /// The value, or the error's message.
    fn into_result(self) -> Result<T, String>;
}

macro_rules! returns {
    ($($ty:ty),*) => {
        $(
            impl Returns<$ty> for $ty {
                fn into_result(self) -> Result<$ty, String> {
                    Ok(self)
                }
            }
            impl<E: std::fmt::Display> Returns<$ty> for Result<$ty, E> {
                fn into_result(self) -> Result<$ty, String> {
                    self.map_err(|e| e.to_string())
                }
            }
        )*
    };
}

returns!(bool, String, Vec<String>, Context);

/// A rule function as [`Rule`] keeps it: what it returned, or the error it raised.
#[doc(hidden)]
pub type Function<T> = fn(&Event) -> Result<T, String>;

/// The functions of one rule, as [`export_rule!`] collects them. Only `rule` is required.
#[doc(hidden)]
pub struct Rule {
    pub rule: Function<bool>,
    pub title: Option<Function<String>>,
    pub dedup: Option<Function<String>>,
    pub unique: Option<Function<String>>,
    pub severity: Option<Function<String>>,
    pub alert_context: Option<Function<Context>>,
    pub description: Option<Function<String>>,
    pub reference: Option<Function<String>>,
    pub runbook: Option<Function<String>>,
    pub destinations: Option<Function<Vec<String>>>,
}

impl Rule {
    /// Only `rule` defined; every other function falls back to the host's default.
    #[doc(hidden)]
    pub const fn new(rule: Function<bool>) -> Self {
        Rule {
            rule,
            title: None,
            dedup: None,
            unique: None,
            severity: None,
            alert_context: None,
            description: None,
            reference: None,
            runbook: None,
            destinations: None,
        }
    }
}

/// What a `detection` export returns for an optional function: `None` when the rule does
/// not define it, else what it returned or raised.
#[doc(hidden)]
pub fn optional<T, U>(
    function: Option<Function<T>>,
    event: &Event,
    into: impl FnOnce(T) -> U,
) -> Option<Result<Option<U>, String>> {
    function.map(|f| f(event).map(|value| Some(into(value))))
}

/// The component's `batch` export, for [`export_rule!`].
#[cfg(target_arch = "wasm32")]
impl Rule {
    /// `rule`, then on a match `dedup`, `title` (only when `dedup` is not defined, as it
    /// stands in for it) and `unique`: one event's outcome in `evaluate-batch`.
    fn outcome(&self, event: &Event) -> bindings::exports::rulehost::rules::batch::Outcome {
        use bindings::exports::rulehost::rules::batch::{Matched, Outcome};
        match (self.rule)(event) {
            Err(error) => Outcome::RuleError(error),
            Ok(false) => Outcome::NoMatch,
            Ok(true) => {
                let dedup = optional(self.dedup, event, |d| d);
                let title = match dedup {
                    None => optional(self.title, event, |t| t),
                    Some(_) => None,
                };
                let unique = optional(self.unique, event, |u| u);
                Outcome::Matched(Matched {
                    dedup,
                    title,
                    unique,
                })
            }
        }
    }

    /// `evaluate-batch`: [`Rule::outcome`] on each event, with its section of `fields`.
    #[doc(hidden)]
    pub fn evaluate_batch(
        &self,
        events: &bindings::rulehost::rules::types::Events,
        fields: &[u8],
    ) -> Vec<bindings::exports::rulehost::rules::batch::Outcome> {
        let count = events.len();
        packed::sections(fields, count)
            .zip(0..count)
            .map(|(section, index)| self.outcome(&Event::for_batch(events, index, section)))
            .collect()
    }
}

/// Exports a rule's functions as the component's `detection` interface.
///
/// `rule = path` must come first; then any of `title`, `dedup`, `unique`, `severity`,
/// `alert_context`, `description`, `reference`, `runbook`, `destinations`, each `= path`.
/// Each function takes `&Event`; `rule` returns `bool`, `alert_context` returns
/// [`Context`], `destinations` returns `Vec<String>`, the others return `String`; each may
/// instead return a `Result` of that type with any `E: Display` error, which the host
/// treats as Python's exception in that function ([`Returns`]). A function left out means
/// "not defined": the host applies Panther's fallback for it.
///
/// The component exports Panther's functions (`detection`) and the `batch` speed path.
#[macro_export]
macro_rules! export_rule {
    (rule = $rule:path $(, $name:ident = $func:path)* $(,)?) => {
        const _: () = {
            #[allow(dead_code, reason = "read only by the component exports")]
            const RULE: $crate::Rule = $crate::Rule {
                $($name: ::core::option::Option::Some(|e| $crate::Returns::into_result($func(e))),)*
                ..$crate::Rule::new(|e| $crate::Returns::into_result($rule(e)))
            };
            $crate::__export_component!(RULE);
        };
    };
    ($($other:tt)*) => {
        ::core::compile_error!(
            "export_rule! expects `rule = my_rule` first, then optional `title = ..`, `dedup = ..`, \
             `unique = ..`, `severity = ..`, `alert_context = ..`, `description = ..`, \
             `reference = ..`, `runbook = ..`, `destinations = ..`"
        );
    };
}

/// Wires a [`Rule`] to the generated component exports (wasm only).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($rule:ident) => {
        struct Component;
        type Handle = $crate::bindings::rulehost::rules::types::Event;
        type Optional<T> = ::core::option::Option<
            ::core::result::Result<::core::option::Option<T>, ::std::string::String>,
        >;
        impl $crate::bindings::exports::rulehost::rules::detection::Guest for Component {
            fn rule(event: &Handle) -> ::core::result::Result<bool, ::std::string::String> {
                ($rule.rule)(&$crate::Event::for_call(event))
            }
            fn title(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.title, &$crate::Event::for_call(event), |v| v)
            }
            fn dedup(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.dedup, &$crate::Event::for_call(event), |v| v)
            }
            fn unique(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.unique, &$crate::Event::for_call(event), |v| v)
            }
            fn severity(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.severity, &$crate::Event::for_call(event), |v| v)
            }
            fn alert_context(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.alert_context, &$crate::Event::for_call(event), |c| {
                    c.to_json()
                })
            }
            fn description(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.description, &$crate::Event::for_call(event), |v| v)
            }
            fn reference(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.reference, &$crate::Event::for_call(event), |v| v)
            }
            fn runbook(event: &Handle) -> Optional<::std::string::String> {
                $crate::optional($rule.runbook, &$crate::Event::for_call(event), |v| v)
            }
            fn destinations(
                event: &Handle,
            ) -> Optional<::std::vec::Vec<::std::string::String>> {
                $crate::optional($rule.destinations, &$crate::Event::for_call(event), |v| v)
            }
        }
        impl $crate::bindings::exports::rulehost::rules::batch::Guest for Component {
            fn evaluate_batch(
                events: &$crate::bindings::rulehost::rules::types::Events,
                fields: ::std::vec::Vec<u8>,
            ) -> ::std::vec::Vec<$crate::bindings::exports::rulehost::rules::batch::Outcome> {
                $rule.evaluate_batch(events, &fields)
            }
        }
        $crate::bindings::__export_rule_world!(Component with_types_in $crate::bindings);
    };
}

/// Natively there is no component to export; the functions are still type-checked above.
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($rule:ident) => {};
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every function may return `Result`, with the SDK's `Error` or any `E: Display`: this
    // rule compiles only if `export_rule!` accepts a `Result` in every slot.
    fn rule(event: &Event) -> Result<bool, Error> {
        Ok(event
            .get("ok")
            .ok_or_else(|| Error::new("KeyError", "'ok'"))?
            .truthy())
    }
    fn text(event: &Event) -> Result<String, Error> {
        match event.get("ok") {
            Some(Value::Bool(true)) => Ok("fine".to_owned()),
            Some(other) => Err(Error::no_attribute(&other, "lower")),
            None => Err(Error::type_error("no value")),
        }
    }
    fn context(event: &Event) -> Result<Context, String> {
        text(event).map_err(|e| e.to_string())?;
        Ok(Context::new())
    }
    fn destinations(event: &Event) -> Result<Vec<String>, std::fmt::Error> {
        text(event).map(|t| vec![t]).map_err(|_| std::fmt::Error)
    }
    export_rule!(
        rule = rule,
        title = text,
        dedup = text,
        unique = text,
        severity = text,
        alert_context = context,
        description = text,
        reference = text,
        runbook = text,
        destinations = destinations,
    );

    #[test]
    fn every_function_may_raise() {
        let ok = Event::from_json(r#"{"ok": true}"#).unwrap();
        let bad = Event::from_json(r#"{"ok": 3}"#).unwrap();
        let missing = Event::from_json("{}").unwrap();
        assert_eq!(rule(&ok).into_result(), Ok(true));
        assert_eq!(rule(&bad).into_result(), Ok(true));
        assert_eq!(
            rule(&missing).into_result(),
            Err("KeyError: 'ok'".to_owned())
        );
        let title: Function<String> = |e| text(e).into_result();
        assert_eq!(
            optional(Some(title), &ok, |t| t),
            Some(Ok(Some("fine".to_owned())))
        );
        assert_eq!(
            optional(Some(title), &bad, |t| t),
            Some(Err(
                "AttributeError: 'int' object has no attribute 'lower'".to_owned()
            ))
        );
        assert_eq!(optional(None, &bad, |t: String| t), None);
        let ctx: Function<Context> = |e| context(e).into_result();
        assert_eq!(
            optional(Some(ctx), &missing, |c| c.to_json()),
            Some(Err("TypeError: no value".to_owned()))
        );
        let dest: Function<Vec<String>> = |e| destinations(e).into_result();
        assert_eq!(
            optional(Some(dest), &bad, |d| d),
            Some(Err(
                "an error occurred when formatting an argument".to_owned()
            ))
        );
    }
}
