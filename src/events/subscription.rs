//! One subscriber: a stream that reads the log from the subscriber's cursor and yields
//! the events its filter matches. The gRPC response polls it directly — no task, no
//! channel in between — so it reads only as fast as the client takes events.
//!
//! Because every subscriber pulls from the log instead of being pushed to, a subscriber
//! that stops reading only stops its own stream: the webhook never waits for it, its
//! memory is one batch at most, and when it reads again it catches up from the log — or,
//! if retention has passed it by, its stream ends with its cursor. Replay and live
//! delivery are the same loop, so there is no seam to lose events at.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use prometheus::{Histogram, IntGauge};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;

use super::{Cursor, Entry, Event, EventLog, Filter, LogError};
use crate::metrics::Metrics;

/// Events read from the log per lock acquisition.
const BATCH: usize = 256;

/// A matching event and its cursor.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's position; resuming after it continues with the next one.
    pub cursor: Cursor,
    /// The event.
    pub event: Arc<Event>,
    /// Its wire form, shared by every subscriber (see [`Entry::wire`](super::Entry)).
    pub wire: Arc<OnceLock<Bytes>>,
}

/// Why a subscription ended; each carries the cursor to resume after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server is shutting down.
    ShuttingDown {
        /// Everything up to here was delivered (or did not match).
        resume_after: Cursor,
    },
    /// The subscriber read too slowly and retention dropped events it had not read.
    FellBehind {
        /// Everything up to here was delivered.
        resume_after: Cursor,
        /// Why the log refused.
        error: LogError,
    },
    /// The log backend failed.
    LogFailed {
        /// Everything up to here was delivered.
        resume_after: Cursor,
        /// The backend's error.
        error: LogError,
    },
}

/// The subscribers' gauges: how many run (each reader task holds a guard that lowers
/// the count when the task ends, however it ends, so the number stays true) and how far
/// behind the log head they read.
#[derive(Debug, Clone)]
pub struct Subscribers {
    live: IntGauge,
    lag: Histogram,
}

impl Subscribers {
    /// Gauges that report into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            live: metrics.subscribers.clone(),
            lag: metrics.subscriber_lag.clone(),
        }
    }

    /// Subscriptions whose reader task is still running.
    pub fn count(&self) -> usize {
        usize::try_from(self.live.get()).unwrap_or(0)
    }

    fn enter(&self) -> LiveGuard {
        self.live.inc();
        LiveGuard(self.live.clone())
    }
}

struct LiveGuard(IntGauge);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A running subscription: a stream of matching events in order, then at most one
/// `Err` saying why it ended. Dropping it (the client went away) frees everything.
pub struct Subscription {
    /// The events.
    pub events: Pin<Box<dyn Stream<Item = Result<Delivery, StreamEnd>> + Send>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// Starts reading after `resume_after`, or from the newest event when `None`.
    ///
    /// Fails at once with [`LogError::OutOfRange`] when `resume_after` is outside retention,
    /// so the caller can answer the RPC itself with that status.
    pub async fn start(
        log: Arc<dyn EventLog>,
        filter: Filter,
        resume_after: Option<Cursor>,
        shutdown: CancellationToken,
        subscribers: &Subscribers,
    ) -> Result<Self, LogError> {
        let position = match resume_after {
            Some(cursor) => {
                log.read_after(cursor, 0).await?;
                cursor
            }
            None => log.head().await?,
        };
        let reader = Reader {
            log,
            filter,
            position,
            shutdown,
            lag: subscribers.lag.clone(),
            pending: VecDeque::new(),
            ended: false,
            _live: subscribers.enter(),
        };
        Ok(Self {
            events: Box::pin(futures_util::stream::unfold(reader, Reader::next)),
        })
    }
}

/// The state of one subscription between two events.
struct Reader {
    log: Arc<dyn EventLog>,
    filter: Filter,
    /// Everything up to here was delivered or did not match.
    position: Cursor,
    shutdown: CancellationToken,
    lag: Histogram,
    /// Read from the log, not yet looked at.
    pending: VecDeque<Entry>,
    ended: bool,
    _live: LiveGuard,
}

impl Reader {
    /// The next matching event, or how the stream ends.
    async fn next(mut self) -> Option<(Result<Delivery, StreamEnd>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.position = entry.cursor;
                if self.filter.matches(&entry.event) {
                    let delivery = Delivery {
                        cursor: entry.cursor,
                        event: entry.event,
                        wire: Arc::default(),
                    };
                    return Some((Ok(delivery), self));
                }
                continue;
            }
            // At shutdown the webhook has already stopped: deliver what the log holds,
            // then end with the cursor to resume after.
            let draining = self.shutdown.is_cancelled();
            match self.log.read_after(self.position, BATCH).await {
                Ok(batch) if !batch.is_empty() => {
                    if batch.len() == BATCH {
                        // Only a full batch means this subscriber is behind; measuring
                        // then keeps the extra head lookup off the caught-up path.
                        if let (Some(last), Ok(head)) = (batch.last(), self.log.head().await) {
                            self.lag.observe(
                                head.seq.saturating_sub(last.cursor.seq) as f64 + BATCH as f64,
                            );
                        }
                    }
                    self.pending.extend(batch);
                }
                Ok(_) if draining => {
                    let end = StreamEnd::ShuttingDown {
                        resume_after: self.position,
                    };
                    return self.end(end);
                }
                Ok(_) => {
                    let log = self.log.clone();
                    tokio::select! {
                        () = log.wait_after(self.position) => {}
                        () = self.shutdown.cancelled() => {}
                    }
                }
                Err(error) => {
                    let resume_after = self.position;
                    let end = match error {
                        LogError::OutOfRange { .. } => StreamEnd::FellBehind {
                            resume_after,
                            error,
                        },
                        LogError::Unavailable(_) => StreamEnd::LogFailed {
                            resume_after,
                            error,
                        },
                    };
                    return self.end(end);
                }
            }
        }
    }

    fn end(mut self, end: StreamEnd) -> Option<(Result<Delivery, StreamEnd>, Self)> {
        self.ended = true;
        Some((Err(end), self))
    }
}
