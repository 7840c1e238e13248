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
mod event;
pub mod helpers;
#[cfg(any(target_arch = "wasm32", test))]
mod packed;
mod value;

pub use context::Context;
pub use event::Event;
pub use value::Value;

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
        world: "rule",
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "rulehost_sdk::bindings",
        // Imports borrow their arguments: `get` takes the path as `&[&str]`, so reading a
        // field allocates nothing in the guest.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// The functions of one rule, as [`export_rule!`] collects them. Only `rule` is required.
#[doc(hidden)]
pub struct Rule {
    pub rule: fn(&Event) -> Result<bool, String>,
    pub title: Option<fn(&Event) -> String>,
    pub dedup: Option<fn(&Event) -> String>,
    pub unique: Option<fn(&Event) -> String>,
    pub severity: Option<fn(&Event) -> String>,
    pub alert_context: Option<fn(&Event) -> Context>,
    pub description: Option<fn(&Event) -> String>,
    pub reference: Option<fn(&Event) -> String>,
    pub runbook: Option<fn(&Event) -> String>,
    pub destinations: Option<fn(&Event) -> Vec<String>>,
}

impl Rule {
    /// Only `rule` defined; every other function falls back to the host's default.
    #[doc(hidden)]
    pub const fn new(rule: fn(&Event) -> Result<bool, String>) -> Self {
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

/// The component's `evaluate` exports, for [`export_rule!`].
#[cfg(target_arch = "wasm32")]
impl Rule {
    /// `rule`, then on a match `dedup`, `title` (only when `dedup` is not defined, as it
    /// stands in for it) and `unique`: the body of `evaluate`, per event.
    #[doc(hidden)]
    pub fn evaluate(
        &self,
        event: &Event,
    ) -> Result<Option<bindings::exports::rulehost::rules::detection::Matched>, String> {
        if !(self.rule)(event)? {
            return Ok(None);
        }
        let dedup = self.dedup.map(|f| f(event));
        let title = match dedup {
            None => self.title.map(|f| f(event)),
            Some(_) => None,
        };
        let unique = self.unique.map(|f| f(event));
        Ok(Some(
            bindings::exports::rulehost::rules::detection::Matched {
                dedup,
                title,
                unique,
            },
        ))
    }

    /// `evaluate-batch`: [`Rule::evaluate`] on each of the `count` events whose sections
    /// `fields` holds.
    #[doc(hidden)]
    pub fn evaluate_batch(
        &self,
        fields: &[u8],
        count: u32,
    ) -> Vec<Result<Option<bindings::exports::rulehost::rules::detection::Matched>, String>> {
        packed::sections(fields, count)
            .zip(0..)
            .map(|(section, index)| self.evaluate(&Event::for_batch(section, index)))
            .collect()
    }
}

/// What a `rule` function may return: a `bool`, or a `Result<bool, E>` whose error becomes
/// a rule error (like an exception raised in a Python rule).
pub trait RuleOutcome {
    /// Converts to the WIT result.
    fn into_outcome(self) -> Result<bool, String>;
}

impl RuleOutcome for bool {
    fn into_outcome(self) -> Result<bool, String> {
        Ok(self)
    }
}

impl<E: std::fmt::Display> RuleOutcome for Result<bool, E> {
    fn into_outcome(self) -> Result<bool, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Exports a rule's functions as the component's `detection` interface.
///
/// `rule = path` must come first; then any of `title`, `dedup`, `unique`, `severity`,
/// `alert_context`, `description`, `reference`, `runbook`, `destinations`, each `= path`.
/// Each function takes `&Event`; `rule` returns `bool` or `Result<bool, E: Display>`,
/// `alert_context` returns [`Context`], `destinations` returns `Vec<String>`, the others
/// return `String`. A function left out means "not defined": the host applies Panther's
/// fallback for it.
#[macro_export]
macro_rules! export_rule {
    (rule = $rule:path $(, $name:ident = $func:path)* $(,)?) => {
        const _: () = {
            #[allow(dead_code, reason = "read only by the component exports")]
            const RULE: $crate::Rule = $crate::Rule {
                $($name: ::core::option::Option::Some($func),)*
                ..$crate::Rule::new(|e| $crate::RuleOutcome::into_outcome($rule(e)))
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
        impl $crate::bindings::exports::rulehost::rules::detection::Guest for Component {
            fn evaluate(
                fields: ::std::vec::Vec<u8>,
            ) -> Result<
                Option<$crate::bindings::exports::rulehost::rules::detection::Matched>,
                String,
            > {
                $rule.evaluate(&$crate::Event::for_evaluate(&fields))
            }
            fn evaluate_batch(
                fields: ::std::vec::Vec<u8>,
                count: u32,
            ) -> ::std::vec::Vec<
                Result<
                    Option<$crate::bindings::exports::rulehost::rules::detection::Matched>,
                    String,
                >,
            > {
                $rule.evaluate_batch(&fields, count)
            }
            fn rule() -> Result<bool, String> {
                ($rule.rule)(&$crate::Event::current())
            }
            fn title() -> Option<String> {
                $rule.title.map(|f| f(&$crate::Event::current()))
            }
            fn dedup() -> Option<String> {
                $rule.dedup.map(|f| f(&$crate::Event::current()))
            }
            fn unique() -> Option<String> {
                $rule.unique.map(|f| f(&$crate::Event::current()))
            }
            fn severity() -> Option<String> {
                $rule.severity.map(|f| f(&$crate::Event::current()))
            }
            fn alert_context() -> Option<String> {
                $rule.alert_context.map(|f| f(&$crate::Event::current()).to_json())
            }
            fn description() -> Option<String> {
                $rule.description.map(|f| f(&$crate::Event::current()))
            }
            fn reference() -> Option<String> {
                $rule.reference.map(|f| f(&$crate::Event::current()))
            }
            fn runbook() -> Option<String> {
                $rule.runbook.map(|f| f(&$crate::Event::current()))
            }
            fn destinations() -> Option<Vec<String>> {
                $rule.destinations.map(|f| f(&$crate::Event::current()))
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
