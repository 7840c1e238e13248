//! rulehost runs security detection rules as sandboxed WebAssembly components.
//!
//! The main type is [`eval::Evaluator`]: give it the [`ruleset::LoadedRule`]s of a rule
//! directory and feed it events; it calls each rule's component through
//! [`runtime::RuleInstance`] and keeps Panther's alert windows in [`state::AlertState`].
//!
//! ```no_run
//! use rulehost::{clock::Clock, eval::{Evaluator, Location}, runtime::{Limits, Runtime}, sink::JsonLines};
//! # fn main() -> anyhow::Result<()> {
//! let runtime = Runtime::new(Limits::default())?;
//! let rules = rulehost::ruleset::load(&runtime, "rules-tests".as_ref(), &["build/components".into()])?;
//! let sink = Box::new(JsonLines::new(std::io::stdout()));
//! let mut eval = Evaluator::new(rules.rules, Clock::default(), sink, Box::new(|w| eprintln!("{w}")));
//! let event = serde_json::json!({"actionName": "installLibraryOnAllClusters", "timestamp": 0});
//! eval.event(&Location { file: "example".into(), line: 1 }, event)?;
//! let summary = eval.finish()?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod alert;
pub mod allocator;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod eval;
pub mod event;
pub mod filters;
pub mod input;
pub mod lock;
pub mod progress;
pub mod python;
pub mod ruleset;
pub mod runtime;
pub mod semantics;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sink;
pub mod source;
pub mod spec;
pub mod state;
pub mod testing;
