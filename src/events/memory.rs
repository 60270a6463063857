//! The in-memory event log (`WECHAT_QR_EVENT_LOG=memory`): a bounded ring of events,
//! indexed by sequence number, with a de-duplication index of the pushes it holds. Bounded
//! by count, bytes and age (oldest dropped first); a background task drops aged events
//! even when no push arrives. Everything is lost when the process ends, so each start is a
//! new epoch.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, RwLock, Weak},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{Appended, Cursor, DedupKey, Entry, Event, EventLog, LogError};
use crate::config::Retention;

/// The in-memory [`EventLog`].
#[derive(Debug)]
pub struct MemoryLog {
    /// Distinguishes this log's cursors from those of a previous process.
    epoch: u32,
    retention: Retention,
    /// A std lock: every critical section is short and never awaits.
    inner: RwLock<Inner>,
    /// The sequence number of the newest event, for [`EventLog::wait_after`].
    head: watch::Sender<u64>,
    /// Always `true`: memory does not fill up the way a disk does (retention bounds it).
    writable: watch::Sender<bool>,
}

#[derive(Debug)]
struct Inner {
    entries: VecDeque<Stored>,
    /// Sequence number of `entries[0]` (or of the next event, when empty).
    first_seq: u64,
    /// Which retained event each retained push became.
    by_key: HashMap<DedupKey, u64>,
    /// Bytes of the retained events, as [`Event::stored_size`] counts them.
    bytes: u64,
}

#[derive(Debug)]
struct Stored {
    entry: Entry,
    key: DedupKey,
    appended_at: Instant,
    size: u64,
}

impl Inner {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.first_seq += 1;
            self.bytes -= old.size;
            if self.by_key.get(&old.key) == Some(&old.entry.cursor.seq) {
                self.by_key.remove(&old.key);
            }
        }
    }

    fn enforce(&mut self, retention: Retention, now: Instant) {
        while self.entries.len() > retention.max_events
            || (self.bytes > retention.max_bytes && self.entries.len() > 1)
        {
            self.drop_oldest();
        }
        while self
            .entries
            .front()
            .is_some_and(|s| now.duration_since(s.appended_at) > retention.max_age)
        {
            self.drop_oldest();
        }
    }
}

impl MemoryLog {
    /// An empty log. Spawns the task that drops aged events, so it needs a tokio runtime.
    pub fn new(retention: Retention) -> Arc<Self> {
        let log = Arc::new(Self {
            epoch: rand::random(),
            retention,
            inner: RwLock::new(Inner {
                entries: VecDeque::new(),
                first_seq: 1,
                by_key: HashMap::new(),
                bytes: 0,
            }),
            head: watch::Sender::new(0),
            writable: watch::Sender::new(true),
        });
        tokio::spawn(expire_aged(Arc::downgrade(&log)));
        log
    }

    fn cursor(&self, seq: u64) -> Cursor {
        Cursor {
            epoch: self.epoch,
            seq,
        }
    }

    fn prune(&self) {
        let mut inner = self.inner.write().expect("log lock poisoned");
        inner.enforce(self.retention, Instant::now());
    }

    /// How many events are retained.
    pub fn len(&self) -> usize {
        self.inner.read().expect("log lock poisoned").entries.len()
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs while the log lives; holding only a `Weak` lets the log drop when its users do.
async fn expire_aged(log: Weak<MemoryLog>) {
    let period = {
        let Some(log) = log.upgrade() else { return };
        (log.retention.max_age / 10).clamp(Duration::from_millis(50), Duration::from_secs(10))
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        match log.upgrade() {
            Some(log) => log.prune(),
            None => return,
        }
    }
}

#[async_trait::async_trait]
impl EventLog for MemoryLog {
    async fn append(&self, event: Event, key: DedupKey) -> Result<Appended, LogError> {
        let appended = {
            let mut inner = self.inner.write().expect("log lock poisoned");
            let now = Instant::now();
            inner.enforce(self.retention, now);
            if let Some(&seq) = inner.by_key.get(&key) {
                return Ok(Appended::Duplicate(self.cursor(seq)));
            }
            let cursor = self.cursor(inner.next_seq());
            let size = event.stored_size();
            inner.by_key.insert(key.clone(), cursor.seq);
            inner.bytes += size;
            inner.entries.push_back(Stored {
                entry: Entry {
                    cursor,
                    event: Arc::new(event),
                },
                key,
                appended_at: now,
                size,
            });
            inner.enforce(self.retention, now);
            Appended::New(cursor)
        };
        if let Appended::New(cursor) = appended {
            self.head.send_replace(cursor.seq);
        }
        Ok(appended)
    }

    async fn read_after(&self, after: Cursor, max: usize) -> Result<Vec<Entry>, LogError> {
        let inner = self.inner.read().expect("log lock poisoned");
        let next_seq = inner.next_seq();
        // `after.seq + 1` is the first event the reader has not seen; it must still be held
        // (or be the next to come), and the cursor must come from this log. A client's
        // cursor may say anything, `u64::MAX` included, so no unchecked arithmetic on it.
        if after.epoch != self.epoch || after.seq < inner.first_seq - 1 || after.seq >= next_seq {
            return Err(LogError::OutOfRange {
                requested: after,
                oldest: inner.entries.front().map(|s| s.entry.cursor),
                resume_from: self.cursor(inner.first_seq - 1),
            });
        }
        let start = (after.seq + 1 - inner.first_seq) as usize;
        Ok(inner
            .entries
            .range(start..)
            .take(max)
            .map(|s| s.entry.clone())
            .collect())
    }

    async fn head(&self) -> Result<Cursor, LogError> {
        let inner = self.inner.read().expect("log lock poisoned");
        Ok(self.cursor(inner.next_seq() - 1))
    }

    async fn wait_after(&self, after: Cursor) {
        super::log::wait_past(&self.head, self.epoch, after).await;
    }

    fn writable(&self) -> watch::Receiver<bool> {
        self.writable.subscribe()
    }
}
