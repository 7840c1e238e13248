//! [`Limits`]: what one rule instance may use.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Resource limits applied to every rule instance, each with its reason.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one call. Panther allows 15 s per invocation; a rule that
    /// reads a few fields of one event needs microseconds, so 100 ms only stops runaways.
    pub timeout: Duration,
    /// Epoch tick: the deadline's granularity. 10 ms keeps the ticker thread idle.
    pub tick: Duration,
    /// Linear memory per instance, all its memories together. A rule holds one event's
    /// fields at a time: 64 MiB is far above need (instances keep ~30 KiB resident) yet
    /// stops a memory bomb early.
    pub memory_bytes: usize,
    /// Table elements per table: Rust guests use a few hundred for indirect calls.
    pub table_elements: usize,
    /// Core instances, tables and memories per component: a Rust component has a handful.
    pub instances: usize,
    /// Tables per Store.
    pub tables: usize,
    /// Memories per Store.
    pub memories: usize,
    /// Bytes of stdout and of stderr kept per instance when output is captured (by
    /// `rulehost test`); the rest is dropped and counted, never an error. 64 KiB shows
    /// any debugging print in full and bounds a rule that prints in a loop.
    pub captured_output: usize,
    /// Bytes of data one call may hand the host: the strings `rule`'s error, `title`,
    /// `dedup`, `unique`, ... return. Panther keeps 1,000 characters of a title and
    /// 200 KiB of alert context, so 1 MiB only stops a rule that ships its memory out;
    /// a larger result is a `ResourceLimit` failure and the host drops it.
    pub max_returned_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(100),
            tick: Duration::from_millis(10),
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 32,
            tables: 16,
            memories: 4,
            captured_output: 64 << 10,
            max_returned_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// Each limit at least as generous as in `other` (the epoch tick stays this one's).
    pub(crate) fn at_least(&self, other: &Limits) -> Limits {
        Limits {
            timeout: self.timeout.max(other.timeout),
            tick: self.tick,
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            table_elements: self.table_elements.max(other.table_elements),
            instances: self.instances.max(other.instances),
            tables: self.tables.max(other.tables),
            memories: self.memories.max(other.memories),
            captured_output: self.captured_output.max(other.captured_output),
            max_returned_bytes: self.max_returned_bytes.max(other.max_returned_bytes),
        }
    }

    /// The deadline in epoch ticks, rounded up, plus one tick because the current tick may
    /// be about to end.
    pub fn deadline_ticks(&self) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        (self.timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
    }

    /// The limiter of one instance's Store.
    pub(crate) fn limiter(&self) -> StoreLimiter {
        StoreLimiter {
            memory_bytes: self.memory_bytes,
            memory_in_use: 0,
            table_elements: self.table_elements,
            instances: self.instances,
            tables: self.tables,
            memories: self.memories,
        }
    }
}

/// Why [`StoreLimiter`] refused to grow a memory or a table: the guest traps with it, and
/// the call fails with [`super::RuleFailure::ResourceLimit`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum LimitExceeded {
    /// The instance's memories together would pass [`Limits::memory_bytes`].
    #[error(
        "growing a linear memory to {desired} bytes would give the instance {total} bytes of \
         memory; the limit is {limit} bytes"
    )]
    Memory {
        /// The size the memory asked for.
        desired: usize,
        /// All the instance's memories with that growth.
        total: usize,
        /// [`Limits::memory_bytes`].
        limit: usize,
    },
    /// A table would pass [`Limits::table_elements`].
    #[error("growing a table to {desired} elements; the limit is {limit} elements per table")]
    Table {
        /// The size the table asked for.
        desired: usize,
        /// [`Limits::table_elements`].
        limit: usize,
    },
    /// A memory or table would pass the maximum its own type declares.
    #[error("growing a {what} to {desired}, past its declared maximum of {maximum}")]
    Maximum {
        /// `linear memory` (sizes in bytes) or `table` (in elements).
        what: &'static str,
        /// The size asked for.
        desired: usize,
        /// The declared maximum.
        maximum: usize,
    },
    /// wasmtime could not grow a memory or table the limiter allowed (too large for the
    /// memory's index type, or the system refused the memory); the cause is in the chain.
    #[error("growing a {what} failed")]
    GrowFailed {
        /// `linear memory` or `table`.
        what: &'static str,
    },
}

/// The [`ResourceLimiter`] of one rule instance's Store: [`Limits`] applied to the instance
/// as a whole.
///
/// wasmtime's own `StoreLimits` caps each linear memory by itself, so a component with four
/// memories could hold four times [`Limits::memory_bytes`]; this one adds every memory's
/// growth (its initial size included) to one total for the Store, and refuses the growth
/// that would pass the limit (issue 11). Tables, instances and memories are limited as
/// `StoreLimits` does.
///
/// A refused or failed growth traps instead of making `memory.grow` return -1, as
/// `StoreLimits::trap_on_grow_failure` does: a rule that hit a limit does not go on in a
/// state it did not plan for, and the host replaces the instance. So the Store is dropped
/// right after, and the total never needs to go down (wasm memories never shrink).
#[derive(Debug)]
pub(crate) struct StoreLimiter {
    memory_bytes: usize,
    /// Bytes the Store's memories hold, all together.
    memory_in_use: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if let Some(maximum) = maximum.filter(|&m| desired > m) {
            return Err(LimitExceeded::Maximum {
                what: "linear memory",
                desired,
                maximum,
            }
            .into());
        }
        let total = self
            .memory_in_use
            .saturating_add(desired.saturating_sub(current));
        if total > self.memory_bytes {
            return Err(LimitExceeded::Memory {
                desired,
                total,
                limit: self.memory_bytes,
            }
            .into());
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context(LimitExceeded::GrowFailed {
            what: "linear memory",
        }))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if let Some(maximum) = maximum.filter(|&m| desired > m) {
            return Err(LimitExceeded::Maximum {
                what: "table",
                desired,
                maximum,
            }
            .into());
        }
        if desired > self.table_elements {
            return Err(LimitExceeded::Table {
                desired,
                limit: self.table_elements,
            }
            .into());
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context(LimitExceeded::GrowFailed { what: "table" }))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn limiter(memory_mib: usize) -> StoreLimiter {
        Limits {
            memory_bytes: memory_mib * MIB,
            ..Limits::default()
        }
        .limiter()
    }

    fn refusal(result: wasmtime::Result<bool>) -> String {
        let error = result.unwrap_err();
        assert!(error.downcast_ref::<LimitExceeded>().is_some(), "{error:?}");
        error.to_string()
    }

    #[test]
    fn memory_is_capped_for_all_memories_together() {
        let mut limiter = limiter(64);
        // Four memories created at 10 MiB each, then each grown to 15 MiB: 60 MiB in all.
        for _ in 0..4 {
            assert!(limiter.memory_growing(0, 10 * MIB, None).unwrap());
        }
        for _ in 0..4 {
            assert!(limiter.memory_growing(10 * MIB, 15 * MIB, None).unwrap());
        }
        assert_eq!(limiter.memory_in_use, 60 * MIB);
        // Any memory growing past the 4 MiB left is refused, though each is far under 64 MiB.
        assert_eq!(
            refusal(limiter.memory_growing(15 * MIB, 20 * MIB, None)),
            format!(
                "growing a linear memory to {} bytes would give the instance {} bytes of \
                 memory; the limit is {} bytes",
                20 * MIB,
                65 * MIB,
                64 * MIB
            )
        );
        assert_eq!(limiter.memory_in_use, 60 * MIB, "a refusal counts nothing");
        // Up to the limit exactly is fine; one page more is not.
        assert!(limiter.memory_growing(15 * MIB, 19 * MIB, None).unwrap());
        assert_eq!(limiter.memory_in_use, 64 * MIB);
        refusal(limiter.memory_growing(0, 64 << 10, None));
    }

    #[test]
    fn one_memory_alone_still_meets_the_limit_and_its_maximum() {
        let mut limiter = limiter(64);
        refusal(limiter.memory_growing(0, 65 * MIB, None));
        assert_eq!(
            refusal(limiter.memory_growing(0, 2 * MIB, Some(MIB))),
            format!(
                "growing a linear memory to {}, past its declared maximum of {}",
                2 * MIB,
                MIB
            )
        );
        // Sizes near usize::MAX saturate instead of wrapping under the limit.
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        refusal(limiter.memory_growing(0, usize::MAX, None));
    }

    #[test]
    fn tables_and_failed_growths_trap() {
        let mut limiter = limiter(64);
        assert!(limiter.table_growing(0, 20_000, None).unwrap());
        assert_eq!(
            refusal(limiter.table_growing(0, 20_001, None)),
            "growing a table to 20001 elements; the limit is 20000 elements per table"
        );
        refusal(limiter.table_growing(0, 10, Some(5)));
        let failed = limiter
            .memory_grow_failed(wasmtime::Error::msg("mmap failed"))
            .unwrap_err();
        assert!(failed.downcast_ref::<LimitExceeded>().is_some());
        assert_eq!(
            format!("{failed:#}"),
            "growing a linear memory failed: mmap failed"
        );
        assert!(
            limiter
                .table_grow_failed(wasmtime::Error::msg("x"))
                .is_err()
        );
        assert_eq!(
            (limiter.instances(), limiter.tables(), limiter.memories()),
            (32, 16, 4)
        );
    }

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        let mut limits = Limits::default();
        assert_eq!(limits.deadline_ticks(), 11);
        limits.timeout = Duration::from_millis(15);
        assert_eq!(limits.deadline_ticks(), 3);
        limits.timeout = Duration::ZERO;
        assert_eq!(limits.deadline_ticks(), 2);
    }
}
