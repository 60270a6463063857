//! The log on fjall: keyspace `events` (big-endian u64 sequence number → record) and
//! keyspace `dedup` (de-duplication key → sequence number) in one database, one atomic
//! `WriteBatch` per commit persisted with `PersistMode::SyncAll` (fsync of the journal)
//! before it returns. Retention reads each expiring record to decode its key, then writes
//! tombstones for both in the same batch. Variants store the keys time first, and shrink
//! the memtables to 8 MiB. Everything else is fjall's defaults (64 MiB memtables, 512 MiB journal cap, LZ4 for journal batches
//! over 4 KiB and for tables, leveled compaction, background flush and compaction workers).

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::{
    Result,
    record::{Event, dedup_key_of},
    store::{Bounds, Engine, Store, Window},
};

/// The fjall store.
pub struct FjallStore {
    db: Database,
    events: Keyspace,
    dedup: Keyspace,
    engine: Engine,
    window: Window,
}

fn seq_of(key: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(key.try_into()?))
}

impl FjallStore {
    /// Opens or creates the database in `dir`; after a crash, the journal is replayed here.
    pub fn open(dir: &Path, engine: Engine, retain: u64) -> Result<Self> {
        let db = Database::builder(dir).open()?;
        let options = || {
            let options = KeyspaceCreateOptions::default();
            if engine == Engine::FjallTk8m {
                options.max_memtable_size(8 << 20)
            } else {
                options
            }
        };
        let events = db.keyspace("events", options)?;
        let dedup = db.keyspace("dedup", options)?;
        Ok(Self {
            db,
            events,
            dedup,
            engine,
            window: Window::new(retain),
        })
    }
}

impl Store for FjallStore {
    fn commit(&mut self, batch: &[Event]) -> Result<usize> {
        let mut write = self.db.batch().durability(Some(PersistMode::SyncAll));
        let Window {
            first,
            mut next,
            retain,
        } = self.window;
        let mut added = 0;
        for event in batch {
            let key = self.engine.stored_key(&event.key);
            if self.dedup.contains_key(&key)? {
                continue;
            }
            let seq = next.to_be_bytes();
            write.insert(&self.events, seq, event.record.clone());
            write.insert(&self.dedup, key, seq);
            next += 1;
            added += 1;
        }
        let expired = Window::expired(first, next, retain);
        let new_first = expired.end;
        for seq in expired {
            let seq = seq.to_be_bytes();
            if let Some(key) = self.events.get(seq)?.as_deref().and_then(dedup_key_of) {
                write.remove(&self.dedup, self.engine.stored_key(&key));
            }
            write.remove(&self.events, seq);
        }
        write.commit()?;
        self.window.first = new_first;
        self.window.next = next;
        Ok(added)
    }

    fn recover_bounds(&mut self) -> Result<Bounds> {
        let first = self
            .events
            .first_key_value()
            .map(fjall::Guard::key)
            .transpose()?;
        let last = self
            .events
            .last_key_value()
            .map(fjall::Guard::key)
            .transpose()?;
        let bounds = Bounds {
            first: first.as_deref().map(seq_of).transpose()?,
            last: last.as_deref().map(seq_of).transpose()?,
        };
        self.window.adopt(bounds);
        Ok(bounds)
    }

    fn read_tail(&self, n: usize) -> Result<usize> {
        let mut tail = Vec::with_capacity(n);
        for entry in self.events.iter().rev().take(n) {
            let (seq, record) = entry.into_inner()?;
            tail.push((seq_of(&seq)?, record.to_vec()));
        }
        Ok(tail.iter().map(|(_, r)| r.len()).sum())
    }

    fn count(&self) -> Result<(u64, u64)> {
        Ok((self.events.len()? as u64, self.dedup.len()? as u64))
    }

    fn retained(&self) -> u64 {
        self.window.next - self.window.first
    }
}
