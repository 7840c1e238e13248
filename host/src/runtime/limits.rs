//! [`Limits`]: what one rule instance may use.

use std::time::Duration;

use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// Resource limits applied to every rule instance, each with its reason.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one call. Panther allows 15 s per invocation; a rule that
    /// reads a few fields of one event needs microseconds, so 100 ms only stops runaways.
    pub timeout: Duration,
    /// Epoch tick: the deadline's granularity. 10 ms keeps the ticker thread idle.
    pub tick: Duration,
    /// Linear memory per instance. A rule holds one event's fields at a time: 64 MiB is
    /// far above need (instances keep ~30 KiB resident) yet stops a memory bomb early.
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

    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .table_elements(self.table_elements)
            .instances(self.instances)
            .tables(self.tables)
            .memories(self.memories)
            .trap_on_grow_failure(true)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
