//! [`MemorySink`]: records kept in memory as JSON values, for tests and library callers.

use std::io;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{Delivery, Record, Sink, SinkMark};

/// Keeps every record as a JSON value; clones share them, so a test keeps one clone and
/// gives the evaluator another. Nothing outlives the process: after a crash the resumed
/// run writes the records after the last checkpoint again ([`Delivery::AtLeastOnce`]),
/// with the same `alert_id`s.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    records: Arc<Mutex<Vec<Value>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records written so far, in order.
    pub fn records(&self) -> Vec<Value> {
        self.records.lock().expect("not poisoned").clone()
    }
}

impl Sink for MemorySink {
    fn write(&mut self, record: &Record<'_>) -> io::Result<()> {
        let value = serde_json::to_value(record)?;
        self.records.lock().expect("not poisoned").push(value);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The mark is the number of records.
    fn sync(&mut self) -> io::Result<SinkMark> {
        Ok(SinkMark(
            self.records.lock().expect("not poisoned").len() as u64
        ))
    }

    fn delivery(&self) -> Delivery {
        Delivery::AtLeastOnce
    }
}
