//! The event log contract. The in-memory [`MemoryLog`](super::MemoryLog) implements it
//! for one node; a shared, durable backend (Redis Streams) can implement the same trait
//! without the webhook or the subscribers changing.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use tokio::sync::watch;

use super::{Cursor, DedupKey, Event};

/// An event at its place in the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it sits.
    pub cursor: Cursor,
    /// The event, shared by every subscriber that reads it.
    pub event: Arc<Event>,
    /// The event's wire form, encoded once by whichever subscriber sends it first and
    /// then shared by all: fan-out to thousands of streams copies no strings and encodes
    /// nothing twice. The log only carries it; the gRPC layer decides the encoding.
    pub wire: Arc<OnceLock<Bytes>>,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// A new event, now at this cursor.
    New(Cursor),
    /// The same push was already logged at this cursor; nothing was added.
    Duplicate(Cursor),
}

/// Why the log cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The cursor is older than what the log retains (or from another log instance).
    #[error(
        "cursor {requested} is outside the retained event log; oldest retained event: {}; resume_after={resume_from} replays everything retained",
        oldest.map_or_else(|| "none".to_owned(), |c| c.to_string())
    )]
    OutOfRange {
        /// The cursor asked for.
        requested: Cursor,
        /// The oldest event still held, if any.
        oldest: Option<Cursor>,
        /// The cursor that replays everything still held.
        resume_from: Cursor,
    },
    /// The backend failed.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
}

/// An ordered, bounded, de-duplicating log of events.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `event` unless a push with the same key is retained.
    async fn append(&self, event: Event, key: DedupKey) -> Result<Appended, LogError>;

    /// Up to `max` entries strictly after `after`, oldest first. `max = 0` only checks
    /// that `after` is still within retention.
    async fn read_after(&self, after: Cursor, max: usize) -> Result<Vec<Entry>, LogError>;

    /// The cursor of the newest event: reading after it yields only future events.
    async fn head(&self) -> Result<Cursor, LogError>;

    /// A receiver that changes whenever an event is appended.
    fn watch(&self) -> watch::Receiver<()>;
}

impl std::fmt::Debug for dyn EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLog")
    }
}
