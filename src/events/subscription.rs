//! One subscriber: a stream of the events its filter matches, in order, each once. The
//! gRPC response polls it directly — no task, no channel in between.
//!
//! A subscription is in one of two modes. *Reading the log*: when it replays
//! (`resume_after`) or has fallen behind, it reads the log from its own cursor at its own
//! pace, exactly as every subscriber once did. *Live*: once a read finds nothing more at
//! position P, it joins the hub's index ([`fanout`](super::fanout)), which puts each
//! matching event into its inbox. The seam holds because joining reads the hub's
//! processed cursor D under the hub's lock: if D > P, the subscription first reads
//! (P, D] from the log itself, and every inbox delivery is after D; if D < P, the slot
//! carries P as its floor and the hub skips entries up to it. A subscriber that stops
//! reading fills its small inbox, is released with the cursor up to which the inbox holds
//! every match, and goes back to reading the log from there: the webhook and the hub never
//! wait for it, and if retention passes it by, its stream ends with its cursor.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use tokio_stream::Stream;

use super::{
    Cursor, Entry, Event, Filter, LogError,
    fanout::{Admission, Joined, Membership, Release, Slot, SubscribeError, Subscribers, Taken},
};

/// Events read from the log per call while replaying or catching up.
const BATCH: usize = 256;

/// A matching event and its cursor.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's position; resuming after it continues with the next one.
    pub cursor: Cursor,
    /// The event.
    pub event: Arc<Event>,
    /// Its wire form, encoded by the first subscriber that sends it: the hub gives every
    /// live subscriber of one event the same cache.
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
    /// Starts reading after `resume_after`, or from the newest event when `None`, as the
    /// stream `admission` counted and charged (see [`Subscribers::admit`]).
    ///
    /// Fails at once with [`LogError::OutOfRange`] when `resume_after` is outside
    /// retention, so the caller can answer the RPC itself.
    pub async fn start(
        admission: Admission,
        filter: Filter,
        resume_after: Option<Cursor>,
        subscribers: &Subscribers,
    ) -> Result<Self, SubscribeError> {
        let hub = &subscribers.hub;
        let membership = admission.0;
        let position = match resume_after {
            Some(cursor) => {
                hub.log.read_after(cursor, 0).await?;
                cursor
            }
            None => hub.log.head().await?,
        };
        let reader = Reader {
            subscribers: subscribers.clone(),
            filter: Arc::new(filter),
            position,
            pending: VecDeque::new(),
            live: None,
            ended: false,
            membership,
        };
        Ok(Self {
            events: Box::pin(futures_util::stream::unfold(reader, Reader::next)),
        })
    }
}

/// A subscription in the live index.
struct Live {
    slot: Arc<Slot>,
    /// Until the subscription has read the log up to here, it reads the log, not the
    /// inbox: the hub dispatched these before the slot existed.
    catch_up_to: Cursor,
}

/// The state of one subscription between two events.
struct Reader {
    subscribers: Subscribers,
    filter: Arc<Filter>,
    /// Everything up to here was delivered or did not match.
    position: Cursor,
    /// Read from the log, not yet looked at.
    pending: VecDeque<Entry>,
    /// `Some` while in the live index.
    live: Option<Live>,
    ended: bool,
    /// Counted against the caps while the stream lives; leaves the index when dropped.
    membership: Membership,
}

impl Reader {
    /// The next matching event, or how the stream ends.
    async fn next(mut self) -> Option<(Result<Delivery, StreamEnd>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(entry) = self.pending.pop_front() {
                if let Some(live) = &self.live
                    && entry.cursor > live.catch_up_to
                {
                    // Caught up: the inbox has the rest.
                    self.pending.clear();
                    continue;
                }
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
            if let Some(live) = &self.live {
                if self.position < live.catch_up_to {
                    match self.read_log().await {
                        Err(end) => return self.end(end),
                        Ok(true) => {}
                        // The log holds everything up to the hub's cursor; should it not,
                        // waiting on the inbox beats spinning.
                        Ok(false) => {
                            if let Some(live) = &mut self.live {
                                live.catch_up_to = self.position;
                            }
                        }
                    }
                    continue;
                }
                match live.slot.take() {
                    Taken::Delivery(delivery) => {
                        if delivery.cursor <= self.position {
                            continue;
                        }
                        self.position = delivery.cursor;
                        return Some((Ok(delivery), self));
                    }
                    Taken::Released(Release::Detached(covered)) => {
                        self.position = self.position.max(covered);
                        self.live = None;
                        self.membership.released();
                    }
                    Taken::Released(Release::Finished(covered)) => {
                        let resume_after = self.position.max(covered);
                        return self.end(StreamEnd::ShuttingDown { resume_after });
                    }
                    Taken::Empty => {
                        let slot = live.slot.clone();
                        slot.ready.notified().await;
                    }
                }
                continue;
            }
            match self.read_log().await {
                Err(end) => return self.end(end),
                Ok(true) => {}
                Ok(false) => match self.membership.join(&self.filter, self.position) {
                    Joined::Live { slot, processed } => {
                        self.live = Some(Live {
                            slot,
                            catch_up_to: processed,
                        });
                    }
                    Joined::Finished => {
                        let resume_after = self.position;
                        return self.end(StreamEnd::ShuttingDown { resume_after });
                    }
                },
            }
        }
    }

    /// Reads the next batch after `position` into `pending`; false when there is none.
    async fn read_log(&mut self) -> Result<bool, StreamEnd> {
        let hub = &self.subscribers.hub;
        match hub.log.read_after(self.position, BATCH).await {
            Ok(batch) if batch.is_empty() => Ok(false),
            Ok(batch) => {
                if batch.len() == BATCH {
                    // Only a full batch means this subscriber is behind; measuring then
                    // keeps the extra head lookup off the caught-up path.
                    if let (Some(last), Ok(head)) = (batch.last(), hub.log.head().await) {
                        hub.lag.observe(
                            head.seq.saturating_sub(last.cursor.seq) as f64 + BATCH as f64,
                        );
                    }
                }
                self.pending.extend(batch);
                Ok(true)
            }
            Err(error) => {
                let resume_after = self.position;
                Err(match error {
                    LogError::OutOfRange { .. } => StreamEnd::FellBehind {
                        resume_after,
                        error,
                    },
                    LogError::Unavailable(_) => StreamEnd::LogFailed {
                        resume_after,
                        error,
                    },
                })
            }
        }
    }

    fn end(mut self, end: StreamEnd) -> Option<(Result<Delivery, StreamEnd>, Self)> {
        self.ended = true;
        Some((Err(end), self))
    }
}
