//! The in-memory baseline: the service's `MemoryLog` reduced to its data structures (a
//! ring of records, a hash map from de-duplication key to sequence number), doing the same
//! work per commit as the durable engines, with nothing written anywhere.

use std::collections::{HashMap, VecDeque};

use crate::{
    Result,
    record::Event,
    store::{Bounds, Store, Window},
};

/// A retained record and its de-duplication key.
type Stored = (Box<[u8]>, Box<[u8]>);

/// The baseline store.
#[derive(Debug)]
pub struct MemoryStore {
    window: Window,
    entries: VecDeque<Stored>,
    by_key: HashMap<Box<[u8]>, u64>,
}

impl MemoryStore {
    /// An empty log keeping at most `retain` events.
    #[must_use]
    pub fn new(retain: u64) -> Self {
        Self {
            window: Window::new(retain),
            entries: VecDeque::new(),
            by_key: HashMap::new(),
        }
    }
}

impl Store for MemoryStore {
    fn commit(&mut self, batch: &[Event]) -> Result<usize> {
        let mut added = 0;
        for event in batch {
            if self.by_key.contains_key(&event.key[..]) {
                continue;
            }
            let key: Box<[u8]> = event.key.as_slice().into();
            self.by_key.insert(key.clone(), self.window.next);
            self.entries
                .push_back((event.record.as_slice().into(), key));
            self.window.next += 1;
            added += 1;
        }
        let Window {
            first,
            next,
            retain,
        } = self.window;
        for _ in Window::expired(first, next, retain) {
            if let Some((_, key)) = self.entries.pop_front() {
                self.by_key.remove(&key);
            }
            self.window.first += 1;
        }
        Ok(added)
    }

    fn recover_bounds(&mut self) -> Result<Bounds> {
        Ok(Bounds {
            first: (!self.entries.is_empty()).then_some(self.window.first),
            last: (!self.entries.is_empty()).then_some(self.window.next - 1),
        })
    }

    fn read_tail(&self, n: usize) -> Result<usize> {
        let tail: Vec<Vec<u8>> = self
            .entries
            .iter()
            .rev()
            .take(n)
            .map(|(r, _)| r.to_vec())
            .collect();
        Ok(tail.iter().map(Vec::len).sum())
    }

    fn count(&self) -> Result<(u64, u64)> {
        Ok((self.entries.len() as u64, self.by_key.len() as u64))
    }

    fn retained(&self) -> u64 {
        self.window.next - self.window.first
    }
}
