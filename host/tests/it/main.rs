//! Host integration tests: one binary, one module per area. Run through `make test`, which
//! builds the components and points `RULEHOST_COMPONENTS`/`RULEHOST_TEST_COMPONENTS` at them.

/// The `rulehost` command line, pinned by golden transcripts.
mod cli;
/// The library API as the crate docs show it.
mod library;
/// Hostile rules: loops, panics, memory bombs cost only themselves.
mod sandbox;
/// Shared helpers.
mod util;
/// Panther's dedup windows, thresholds and unique counts with the real seed components.
mod windows;
