//! The event log contract, in the domain's terms: append a push once, read after a
//! cursor, and wait until something after a cursor exists. Two backends implement it —
//! the durable embedded store ([`DurableLog`](super::DurableLog), the default) and the
//! in-memory ring ([`MemoryLog`](super::MemoryLog)) — and a shared one (Redis Streams) can
//! implement the same trait without the webhook or the subscribers changing. How an event
//! is encoded for gRPC is the gRPC layer's business, not the log's.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Cursor, DedupKey, Event};

/// An event at its place in the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it sits.
    pub cursor: Cursor,
    /// The event, shared by every subscriber that reads it.
    pub event: Arc<Event>,
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
    /// The backend failed (a full or failing disk, a lost connection): nothing was
    /// written, and the caller may try again.
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

    /// Resolves once the log holds an event after `after` — at once if it already does.
    /// Never resolves for a cursor of another epoch, except on a shared backend, which
    /// also resolves when it fails or its store lost its data (the next read says so);
    /// callers race it against shutdown.
    async fn wait_after(&self, after: Cursor);

    /// Whether appends currently succeed: `false` while the disk is full or failing. The
    /// value changes as soon as an append fails or succeeds again.
    fn writable(&self) -> watch::Receiver<bool>;

    /// Closes the backend at shutdown, after the webhook has drained: what was appended
    /// is already durable; this releases the store cleanly, so the next start needs no
    /// repair. Appends after it fail.
    async fn close(&self) {}
}

/// [`EventLog::wait_after`] for a backend that publishes the sequence number of its newest
/// event in `head`: resolves once it passes `after`; never for a cursor of another epoch,
/// nor once the log itself is gone (nothing more will come).
pub(super) async fn wait_past(head: &watch::Sender<u64>, epoch: u32, after: Cursor) {
    if after.epoch != epoch {
        return std::future::pending().await;
    }
    let mut head = head.subscribe();
    if head.wait_for(|&seq| seq > after.seq).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl std::fmt::Debug for dyn EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLog")
    }
}
