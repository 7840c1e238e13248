//! [`Replay`]: inputs given in memory.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Input, Source};

/// Inputs given in memory, yielded in order: a line the last run held, or batches a test
/// made. Untracked; it yields [`Input::Started`] only if given one.
pub struct Replay {
    name: Arc<str>,
    items: VecDeque<Input>,
}

impl Replay {
    /// Yields `items`, as the source `name`.
    pub fn new(name: impl Into<Arc<str>>, items: impl IntoIterator<Item = Input>) -> Self {
        Replay {
            name: name.into(),
            items: items.into_iter().collect(),
        }
    }
}

impl Source for Replay {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn read(&mut self) -> Option<Input> {
        self.items.pop_front()
    }
}
