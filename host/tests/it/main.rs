//! Host integration tests: one binary, one module per area. Run through `make test`, which
//! builds the components and points `RULEHOST_COMPONENTS`/`RULEHOST_TEST_COMPONENTS` at them.

/// The load-time audit: forbidden imports, wrong worlds and versions, core modules and
/// precompiled artifacts are refused with clear errors; `rulehost inspect`.
mod audit;
/// Bad input (malformed, oversized, deeply nested or non-object lines, empty, truncated
/// or missing files) is counted and reported, and the good lines around it still alert.
mod bad_input;
/// What a failing rule may cost: the failure budget, quarantine within a few events for
/// any thread count, exact counts, one deadline for the calls that freeze a window.
mod budget;
/// Per-rule caps on the alert state: windows, unique values, bytes; measured memory.
mod caps;
/// The `rulehost` command line, pinned by golden transcripts.
mod cli;
/// A poisoned timestamp does not move the event-time clock: no alert lost or delayed.
mod clock_skew;
/// The 1.0 contract is enough: a plain `wit-bindgen` rule alerts as the SDK build does.
mod contract;
/// `rulehost lock` and `--locked`, and the compiled-code cache.
mod integrity;
/// The library API as the crate docs show it.
mod library;
/// `make new-rule`'s scaffold builds into a component and passes its own tests.
mod new_rule;
/// Fast paths give what one call per function gives: `test` fails a path that differs,
/// `eval` checks a sample; a path that only fails costs one failed call per worker.
mod paths;
/// Rust ports of Panther's rules pass Panther's own tests, read in place, and alert as the
/// Python originals; a port that uses regular expressions imports no random numbers.
mod ports;
/// Panther's Python rules, unchanged: the Databricks pack's 162 tests, the event API,
/// `Mocks:`, no files or network, a trap's fresh instance, the lock.
mod python;
/// A rules folder cannot stall loading (symlink loops) or reach components outside it.
mod rule_folders;
/// Hostile rules: loops, panics, memory bombs cost only themselves.
mod sandbox;
/// The I/O seams without files: a memory sink and state backend, and a toy source with
/// its own positions.
mod seams;
/// Panther's fallbacks, limits, rule errors, signals and inline filters.
mod semantics;
/// `rulehost serve` on librdkafka's mock cluster and a `redis-server` per test: 1 worker,
/// 3 workers on 6 partitions, a killed worker, a rebalance, Redis restarted, batches
/// delivered twice; each against one `rulehost eval`.
#[cfg(feature = "serve")]
mod serve;
/// `eval --state`: split runs equal one run, crash safety with a killed process, expiry,
/// locking, `rulehost state`.
mod state;
/// `rulehost test` and `rulehost debug`: assertions, scenarios, selection, JSON.
mod test_runner;
/// `--threads N` gives the same alerts as one thread.
mod threads;
/// Shared helpers.
mod util;
/// Panther's dedup windows, thresholds and unique counts with the real seed components.
mod windows;
