//! The log on redb: table `events` (u64 sequence number → record) and table `dedup`
//! (de-duplication key → sequence number) in one file, one write transaction per batch
//! with `Durability::Immediate`. Retention pops the first events and removes the keys
//! decoded from their records in the same transaction. Variants store the keys time first,
//! and add quick repair, which saves the allocator state on every commit (with a two-phase
//! commit: two syncs) so that opening after a crash needs no full tree walk.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use redb::{
    Builder, Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError,
};

use crate::{
    Result,
    record::{Event, dedup_key_of},
    store::{Bounds, Engine, Store, Window},
};

const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
const DEDUP: TableDefinition<'_, &[u8], u64> = TableDefinition::new("dedup");

/// The redb store.
pub struct RedbStore {
    db: Database,
    engine: Engine,
    window: Window,
    repaired: Arc<AtomicBool>,
}

impl RedbStore {
    /// Opens or creates `dir/events.redb`; a crashed file is repaired here.
    pub fn open(dir: &Path, engine: Engine, retain: u64) -> Result<Self> {
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&repaired);
        let db = Builder::new()
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .create(dir.join("events.redb"))?;
        Ok(Self {
            db,
            engine,
            window: Window::new(retain),
            repaired,
        })
    }
}

impl Store for RedbStore {
    fn commit(&mut self, batch: &[Event]) -> Result<usize> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.set_quick_repair(self.engine == Engine::RedbTkQr);
        let Window {
            mut first,
            mut next,
            retain,
        } = self.window;
        let mut added = 0;
        {
            let mut events = tx.open_table(EVENTS)?;
            let mut dedup = tx.open_table(DEDUP)?;
            for event in batch {
                let key = self.engine.stored_key(&event.key);
                if dedup.get(&key[..])?.is_some() {
                    continue;
                }
                events.insert(next, &event.record[..])?;
                dedup.insert(&key[..], next)?;
                next += 1;
                added += 1;
            }
            for _ in Window::expired(first, next, retain) {
                let key = match events.pop_first()? {
                    Some((_, record)) => {
                        dedup_key_of(record.value()).map(|k| self.engine.stored_key(&k))
                    }
                    None => None,
                };
                if let Some(key) = key {
                    dedup.remove(&key[..])?;
                }
                first += 1;
            }
        }
        tx.commit()?;
        self.window.first = first;
        self.window.next = next;
        Ok(added)
    }

    fn recover_bounds(&mut self) -> Result<Bounds> {
        let tx = self.db.begin_read()?;
        let bounds = match tx.open_table(EVENTS) {
            Ok(events) => Bounds {
                first: events.first()?.map(|(k, _)| k.value()),
                last: events.last()?.map(|(k, _)| k.value()),
            },
            Err(TableError::TableDoesNotExist(_)) => Bounds::default(),
            Err(e) => return Err(e.into()),
        };
        self.window.adopt(bounds);
        Ok(bounds)
    }

    fn read_tail(&self, n: usize) -> Result<usize> {
        let tx = self.db.begin_read()?;
        let events = tx.open_table(EVENTS)?;
        let mut tail = Vec::with_capacity(n);
        for entry in events.range::<u64>(..)?.rev().take(n) {
            let (seq, record) = entry?;
            tail.push((seq.value(), record.value().to_vec()));
        }
        Ok(tail.iter().map(|(_, r)| r.len()).sum())
    }

    fn count(&self) -> Result<(u64, u64)> {
        let tx = self.db.begin_read()?;
        Ok((tx.open_table(EVENTS)?.len()?, tx.open_table(DEDUP)?.len()?))
    }

    fn retained(&self) -> u64 {
        self.window.next - self.window.first
    }

    fn repaired(&self) -> bool {
        self.repaired.load(Ordering::Relaxed)
    }
}
