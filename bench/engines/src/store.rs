//! The event log's storage contract as the benchmark drives it, and the engines that
//! implement it. A commit appends a batch of events (skipping any whose de-duplication key
//! is retained), then drops the oldest events and their keys beyond retention, all in one
//! atomic commit that is durable (fsynced) when it returns. Sequence numbers start at 1 and
//! the store keeps `first..next` in memory, recovered from the first and last key on open.

use std::{fmt, path::Path, str::FromStr};

use crate::{
    Result,
    record::{self, Event},
};

/// A storage engine (or baseline) under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The service's current log: a ring and a hash map, nothing on disk.
    Memory,
    /// The disk's floor: each batch appended to a plain file and fsynced, no index.
    Floor,
    /// redb, `Durability::Immediate` on every commit, keys as `DedupKey` builds them.
    Redb,
    /// redb with time-first de-duplication keys.
    RedbTk,
    /// redb with time-first keys and `set_quick_repair(true)`.
    RedbTkQr,
    /// fjall, `PersistMode::SyncAll` on every batch, keys as `DedupKey` builds them.
    Fjall,
    /// fjall with time-first de-duplication keys.
    FjallTk,
    /// fjall with time-first keys and 8 MiB memtables (default 64 MiB): less journal to
    /// replay after a crash, more flushes and compactions.
    FjallTk8m,
}

impl Engine {
    /// Every variant, in report order.
    pub const ALL: [Self; 8] = [
        Self::Memory,
        Self::Floor,
        Self::Redb,
        Self::RedbTk,
        Self::RedbTkQr,
        Self::Fjall,
        Self::FjallTk,
        Self::FjallTk8m,
    ];

    /// The name used on the command line and in the tables.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Floor => "fsync-floor",
            Self::Redb => "redb",
            Self::RedbTk => "redb-tk",
            Self::RedbTkQr => "redb-tk-qr",
            Self::Fjall => "fjall",
            Self::FjallTk => "fjall-tk",
            Self::FjallTk8m => "fjall-tk-8m",
        }
    }

    /// A real storage engine, as opposed to a baseline: only these are measured for
    /// recovery and disk.
    #[must_use]
    pub fn is_candidate(self) -> bool {
        !matches!(self, Self::Memory | Self::Floor)
    }

    /// Whether de-duplication keys are stored time first (see [`record::time_first`]).
    #[must_use]
    pub fn time_keys(self) -> bool {
        matches!(
            self,
            Self::RedbTk | Self::RedbTkQr | Self::FjallTk | Self::FjallTk8m
        )
    }

    /// The key this engine stores for a de-duplication key as `DedupKey` builds it.
    #[must_use]
    pub fn stored_key(self, key: &[u8]) -> Vec<u8> {
        if self.time_keys() {
            record::time_first(key)
        } else {
            key.to_vec()
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|e| e.name()).collect();
                format!("unknown engine {s:?}: one of {}", names.join(", "))
            })
    }
}

/// What a recovering reader found at the ends of the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// The oldest retained sequence number.
    pub first: Option<u64>,
    /// The newest retained sequence number.
    pub last: Option<u64>,
}

/// An event log on one engine.
pub trait Store {
    /// Appends the new events of `batch` and enforces retention in one durable commit;
    /// returns how many were new.
    fn commit(&mut self, batch: &[Event]) -> Result<usize>;

    /// Reads the first and last keys and adopts them as the log's range (what a reopened
    /// log does before it can append).
    fn recover_bounds(&mut self) -> Result<Bounds>;

    /// Reads the newest `n` events, newest first, copying them out; returns the bytes read.
    fn read_tail(&self, n: usize) -> Result<usize>;

    /// Counts the events and the de-duplication keys (a full scan where the engine has
    /// no cheap count): the two must match.
    fn count(&self) -> Result<(u64, u64)>;

    /// How many events are retained.
    fn retained(&self) -> u64;

    /// Whether opening the store had to repair it (only redb reports this).
    fn repaired(&self) -> bool {
        false
    }
}

/// Opens (creating if needed) a store of `engine` in `dir` without reading anything:
/// call [`Store::recover_bounds`] before committing.
pub fn open(engine: Engine, dir: &Path, retain: u64) -> Result<Box<dyn Store>> {
    Ok(match engine {
        Engine::Memory => Box::new(crate::memory::MemoryStore::new(retain)),
        Engine::Floor => Box::new(crate::floor::FloorStore::open(dir)?),
        Engine::Redb | Engine::RedbTk | Engine::RedbTkQr => {
            Box::new(crate::redb_store::RedbStore::open(dir, engine, retain)?)
        }
        Engine::Fjall | Engine::FjallTk | Engine::FjallTk8m => {
            Box::new(crate::fjall_store::FjallStore::open(dir, engine, retain)?)
        }
    })
}

/// Opens a store ready to append.
pub fn open_for_writing(engine: Engine, dir: &Path, retain: u64) -> Result<Box<dyn Store>> {
    let mut store = open(engine, dir, retain)?;
    store.recover_bounds()?;
    Ok(store)
}

/// The range `first..next` a store keeps in memory, and the retention rule over it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) first: u64,
    pub(crate) next: u64,
    pub(crate) retain: u64,
}

impl Window {
    pub(crate) fn new(retain: u64) -> Self {
        Self {
            first: 1,
            next: 1,
            retain,
        }
    }

    /// Adopts the range found on disk.
    pub(crate) fn adopt(&mut self, bounds: Bounds) {
        if let (Some(first), Some(last)) = (bounds.first, bounds.last) {
            self.first = first;
            self.next = last + 1;
        }
    }

    /// The sequence numbers retention drops once the log holds `first..next`.
    pub(crate) fn expired(first: u64, next: u64, retain: u64) -> std::ops::Range<u64> {
        first..next.saturating_sub(retain).max(first)
    }
}
