//! One subscriber: a task that reads the log from the subscriber's cursor, filters, and
//! hands matching events to a small bounded channel that the gRPC stream drains.
//!
//! Because every subscriber pulls from the log instead of being pushed to, a subscriber
//! that stops reading only stalls its own task: the webhook never waits for it, memory is
//! bounded by the log's retention plus the channel, and when it reads again it catches up
//! from the log — or, if retention has passed it by, its stream ends with its cursor.
//! Replay and live delivery are the same loop, so there is no seam to lose events at.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;

use prometheus::{Histogram, IntGauge};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Cursor, Event, EventLog, Filter, LogError};
use crate::metrics::Metrics;

/// Events read from the log per lock acquisition.
const BATCH: usize = 256;
/// Events buffered between the reader task and the client's stream.
const CHANNEL: usize = 16;
/// How long a final status may wait for a stalled client at shutdown.
const FINAL_SEND_GRACE: Duration = Duration::from_secs(1);

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

/// A running subscription; dropping it (the client went away) stops its task.
#[derive(Debug)]
pub struct Subscription {
    /// Matching events in order, then at most one `Err` saying why the stream ended.
    pub events: mpsc::Receiver<Result<Delivery, StreamEnd>>,
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
        // Watch before reading the start position, so an append in between still wakes us.
        let appended = log.watch();
        let start = match resume_after {
            Some(cursor) => {
                log.read_after(cursor, 0).await?;
                cursor
            }
            None => log.head().await?,
        };
        let (tx, rx) = mpsc::channel(CHANNEL);
        let guard = subscribers.enter();
        let lag = subscribers.lag.clone();
        tokio::spawn(async move {
            run(log, filter, start, appended, tx, shutdown, lag).await;
            drop(guard);
        });
        Ok(Self { events: rx })
    }
}

async fn run(
    log: Arc<dyn EventLog>,
    filter: Filter,
    mut position: Cursor,
    mut appended: tokio::sync::watch::Receiver<()>,
    tx: mpsc::Sender<Result<Delivery, StreamEnd>>,
    shutdown: CancellationToken,
    lag: Histogram,
) {
    loop {
        appended.borrow_and_update();
        let batch = match log.read_after(position, BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                let end = match error {
                    LogError::OutOfRange { .. } => StreamEnd::FellBehind {
                        resume_after: position,
                        error,
                    },
                    LogError::Unavailable(_) => StreamEnd::LogFailed {
                        resume_after: position,
                        error,
                    },
                };
                finish(&tx, end).await;
                return;
            }
        };
        let caught_up = batch.len() < BATCH;
        if !caught_up {
            // Only a full batch means this subscriber is behind; measuring then keeps the
            // extra head lookup off the common, caught-up path.
            if let (Some(last), Ok(head)) = (batch.last(), log.head().await) {
                lag.observe(head.seq.saturating_sub(last.cursor.seq) as f64 + BATCH as f64);
            }
        }
        for entry in batch {
            if filter.matches(&entry.event) {
                let delivery = Delivery {
                    cursor: entry.cursor,
                    event: entry.event,
                    wire: entry.wire,
                };
                tokio::select! {
                    sent = tx.send(Ok(delivery)) => if sent.is_err() { return },
                    () = shutdown.cancelled() => {
                        finish(&tx, StreamEnd::ShuttingDown { resume_after: position }).await;
                        return;
                    }
                }
            }
            position = entry.cursor;
        }
        if caught_up {
            tokio::select! {
                changed = appended.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
                () = shutdown.cancelled() => {
                    finish(&tx, StreamEnd::ShuttingDown { resume_after: position }).await;
                    return;
                }
            }
        }
    }
}

/// Queues the final status behind any events still buffered, without waiting forever on
/// a client that stopped reading.
async fn finish(tx: &mpsc::Sender<Result<Delivery, StreamEnd>>, end: StreamEnd) {
    let _ = tokio::time::timeout(FINAL_SEND_GRACE, tx.send(Err(end))).await;
}
