//! The fan-out hub: the one live reader of the event log, and the index that finds the
//! subscriptions each event matches. A subscription filtered on `tickets` is indexed under
//! each of its tickets (else one filtered on `scenes` under each scene); the rest (a
//! `types` filter or none) sit in a broadcast set. For every event the hub looks up its
//! ticket and scene and walks the broadcast set, so an event costs the subscriptions it
//! may match, never the idle ones waiting for other codes. Each match gets one
//! [`Delivery`] in its subscription's small inbox, all sharing one wire-encoding cache.
//!
//! The hub never waits for a subscriber: an inbox that fills up (a client that stopped
//! reading) is released from the index with the cursor up to which it holds every match,
//! and its subscription reads the log from there at its own pace, as a replaying one does,
//! then joins again (see `subscription.rs` for the seam). The hub also owns the caps on
//! open subscriptions — counts, and the memory budget in bytes each stream is charged
//! against (its filter and its buffers, per connection and in all) before its filter is
//! built — and every subscription leaves it in `Drop`, so the counts, the bytes, the
//! gauges and the index stay true and empty index keys give their memory back.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use prometheus::{Histogram, IntGauge};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Cursor, Delivery, Entry, EventLog, Filter, LogError};
use crate::{config::SubscriptionLimits, metrics::Metrics};

/// Events the hub reads from the log per lock acquisition.
const BATCH: usize = 256;
/// Deliveries an inbox holds before its subscription is released to read the log itself:
/// a burst this long is absorbed, a client that stopped reading costs at most this much.
const INBOX_CAPACITY: usize = 256;
/// An empty inbox whose buffer grew past this gives it back (a burst is over).
const INBOX_KEEP: usize = 16;
/// Pause before the hub reads again after the log failed.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// Bytes every stream is charged beside its filter: its slot, its inbox when full
/// (`INBOX_CAPACITY` deliveries), its reader, and its HTTP/2 stream and response state,
/// measured with the bench's `memory` scenario (RSS per one-ticket stream) and rounded up.
pub const STREAM_OVERHEAD_BYTES: u64 = 16 * 1024;

/// Why a subscription was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The start cursor is outside retention, or the log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The connection already holds its share of subscriptions.
    #[error(
        "this connection already has {limit} StreamEvents subscriptions open, its limit (WECHAT_QR_MAX_STREAMS_PER_CONNECTION); open another connection or close a stream"
    )]
    ConnectionFull {
        /// The cap.
        limit: usize,
    },
    /// The service already holds its cap of subscriptions.
    #[error(
        "the service already has {limit} StreamEvents subscriptions open, its limit (WECHAT_QR_MAX_SUBSCRIPTIONS); retry later"
    )]
    ServiceFull {
        /// The cap.
        limit: usize,
    },
    /// The stream would take the connection's streams past their share of the memory
    /// budget.
    #[error(
        "this stream needs {needed} bytes and this connection's streams already hold {used} of its {limit}-byte share of the subscription memory budget (a quarter of WECHAT_QR_MAX_SUBSCRIPTION_BYTES); use fewer or smaller filters, or another connection"
    )]
    ConnectionBytesFull {
        /// The stream's charge.
        needed: u64,
        /// Bytes the connection's streams hold.
        used: u64,
        /// The connection's share.
        limit: u64,
    },
    /// The stream would take all streams past the memory budget.
    #[error(
        "this stream needs {needed} bytes and open streams already hold {used} of the {limit}-byte subscription memory budget (WECHAT_QR_MAX_SUBSCRIPTION_BYTES); retry later"
    )]
    ServiceBytesFull {
        /// The stream's charge.
        needed: u64,
        /// Bytes all streams hold.
        used: u64,
        /// The budget.
        limit: u64,
    },
}

/// Every StreamEvents subscription of one service: the hub that delivers to them, their
/// caps and their gauges. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Subscribers {
    pub(super) hub: Arc<Hub>,
}

impl Subscribers {
    /// The hub over `log`, dispatching from the log's current head. The returned future
    /// is the hub's reader; run it (spawn it) until `shutdown`, after which it delivers
    /// what the log holds, ends every live subscription with its cursor, and returns.
    pub async fn start(
        log: Arc<dyn EventLog>,
        limits: SubscriptionLimits,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), LogError> {
        let head = log.head().await?;
        metrics
            .subscription_bytes_limit
            .set(gauge(limits.max_subscription_bytes));
        let hub = Arc::new(Hub {
            log,
            limits,
            state: Mutex::new(State {
                processed: head,
                by_ticket: HashMap::new(),
                by_scene: HashMap::new(),
                broadcast: HashMap::new(),
                finished: false,
                open: 0,
                bytes: 0,
                per_peer: HashMap::new(),
                next_id: 0,
            }),
            live: metrics.subscribers.clone(),
            bytes: metrics.subscription_bytes.clone(),
            lag: metrics.subscriber_lag.clone(),
        });
        Ok((Self { hub: hub.clone() }, hub.run(shutdown)))
    }

    /// Subscriptions open now, replaying or live.
    pub fn count(&self) -> usize {
        usize::try_from(self.hub.live.get()).unwrap_or(0)
    }

    /// Entries of the live index: ticket and scene keys plus broadcast members. Zero once
    /// every subscription has ended: cancelled streams leave nothing behind.
    pub fn index_size(&self) -> usize {
        let state = self.hub.lock();
        state.by_ticket.len() + state.by_scene.len() + state.broadcast.len()
    }

    /// The caps the service enforces.
    pub fn limits(&self) -> SubscriptionLimits {
        self.hub.limits
    }

    /// Bytes charged to open streams now.
    pub fn bytes(&self) -> u64 {
        self.hub.lock().bytes
    }

    /// Admits a new stream from `peer` whose filter costs `filter_bytes` (see
    /// [`Filter::charge`]), counting it and charging it against the caps; the charge is
    /// given back when the admission (or the subscription started with it) drops.
    pub fn admit(
        &self,
        peer: Option<SocketAddr>,
        filter_bytes: u64,
    ) -> Result<Admission, SubscribeError> {
        self.hub
            .admit(peer, filter_bytes.saturating_add(STREAM_OVERHEAD_BYTES))
            .map(Admission)
    }
}

/// A stream counted and charged against the caps, not yet started: what
/// [`crate::events::Subscription::start`] takes.
pub struct Admission(pub(super) Membership);

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("bytes", &self.0.bytes)
            .finish_non_exhaustive()
    }
}

/// The hub's shared half: what subscriptions join, leave and are counted by.
pub(super) struct Hub {
    pub(super) log: Arc<dyn EventLog>,
    limits: SubscriptionLimits,
    /// A std lock: no section awaits. Held by the reader for one batch at a time, so a
    /// join sees a consistent `processed` cursor (see [`Hub::join`]).
    state: Mutex<State>,
    live: IntGauge,
    /// Bytes charged to open streams, in all.
    bytes: IntGauge,
    pub(super) lag: Histogram,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

struct State {
    /// Every event up to here has been offered to every slot registered at the time.
    processed: Cursor,
    /// Slots of subscriptions filtered on tickets, under each of their tickets; the key
    /// is the filter's own `Arc`, so a ticket's text is held once however many index it.
    by_ticket: HashMap<Arc<str>, Vec<Arc<Slot>>>,
    /// Slots of subscriptions filtered on scenes (and not tickets), under each scene.
    by_scene: HashMap<Arc<str>, Vec<Arc<Slot>>>,
    /// Slots of subscriptions with a `types` filter or none, by id.
    broadcast: HashMap<u64, Arc<Slot>>,
    /// The log was drained at shutdown: no slot will get more.
    finished: bool,
    /// Subscriptions open, for the service-wide cap.
    open: usize,
    /// Bytes charged to open subscriptions, for the memory budget.
    bytes: u64,
    /// Subscriptions open and bytes charged per connection (its peer address), for the
    /// per-connection caps.
    per_peer: HashMap<SocketAddr, Usage>,
    next_id: u64,
}

/// What one connection's streams hold.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    streams: usize,
    bytes: u64,
}

type Keys = std::collections::HashSet<Arc<str>>;

/// Which part of the index a filter lives in.
enum Key<'a> {
    Tickets(&'a Keys),
    Scenes(&'a Keys),
    Broadcast,
}

fn key_of(filter: &Filter) -> Key<'_> {
    if !filter.tickets().is_empty() {
        Key::Tickets(filter.tickets())
    } else if !filter.scenes().is_empty() {
        Key::Scenes(filter.scenes())
    } else {
        Key::Broadcast
    }
}

impl State {
    fn insert(&mut self, slot: &Arc<Slot>) {
        match key_of(&slot.filter) {
            Key::Tickets(keys) => add(&mut self.by_ticket, keys, slot),
            Key::Scenes(keys) => add(&mut self.by_scene, keys, slot),
            Key::Broadcast => {
                self.broadcast.insert(slot.id, slot.clone());
            }
        }
    }

    /// Takes `slot` out of the index; a slot already gone is fine.
    fn remove(&mut self, slot: &Arc<Slot>) {
        match key_of(&slot.filter) {
            Key::Tickets(keys) => drop_from(&mut self.by_ticket, keys, slot),
            Key::Scenes(keys) => drop_from(&mut self.by_scene, keys, slot),
            Key::Broadcast => {
                self.broadcast.remove(&slot.id);
                shrink(&mut self.broadcast);
            }
        }
    }

    /// Releases every slot (shutdown, or a log failure the hub cannot dispatch past).
    fn release_all(&mut self, release: Release) {
        let slots = self
            .by_ticket
            .drain()
            .chain(self.by_scene.drain())
            .flat_map(|(_, slots)| slots)
            .chain(self.broadcast.drain().map(|(_, slot)| slot));
        for slot in slots {
            slot.release(release);
        }
        self.by_ticket.shrink_to_fit();
        self.by_scene.shrink_to_fit();
        self.broadcast.shrink_to_fit();
    }
}

fn add(index: &mut HashMap<Arc<str>, Vec<Arc<Slot>>>, keys: &Keys, slot: &Arc<Slot>) {
    for key in keys {
        match index.get_mut(&**key) {
            Some(slots) => slots.push(slot.clone()),
            None => {
                index.insert(key.clone(), vec![slot.clone()]);
            }
        }
    }
}

fn drop_from(index: &mut HashMap<Arc<str>, Vec<Arc<Slot>>>, keys: &Keys, slot: &Arc<Slot>) {
    for key in keys {
        if let Some(slots) = index.get_mut(&**key) {
            slots.retain(|s| s.id != slot.id);
            if slots.is_empty() {
                index.remove(&**key);
            } else if slots.capacity() > 4 * slots.len() {
                slots.shrink_to_fit();
            }
        }
    }
    shrink(index);
}

/// A map that emptied out gives most of its table back; amortised, as it halves at most
/// once per quarter of its capacity removed.
fn shrink<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// One live subscription as the hub sees it: its filter and its inbox. A new slot is made
/// each time a subscription joins, so `floor` never changes.
pub(super) struct Slot {
    id: u64,
    filter: Arc<Filter>,
    /// The subscription read everything up to here from the log itself.
    floor: Cursor,
    inbox: Mutex<Inbox>,
    /// Wakes the subscription's stream; a notification sent while it is not waiting is
    /// kept, so none is lost between its check of the inbox and its wait.
    pub(super) ready: Notify,
}

#[derive(Default)]
struct Inbox {
    deliveries: VecDeque<Delivery>,
    released: Option<Release>,
}

/// How the hub let go of a slot; each carries the cursor up to which the inbox holds
/// every matching event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// The inbox filled up (or the log failed under the hub): read the log from there.
    Detached(Cursor),
    /// Shutdown: the log is drained, and everything up to there was offered.
    Finished(Cursor),
}

/// What became of an offer.
enum Offered {
    /// In the inbox; `was_empty` means the subscription may be waiting for it.
    Queued { was_empty: bool },
    /// The inbox was full: the slot is released.
    Full,
}

/// What a subscription finds in its inbox.
pub(super) enum Taken {
    Delivery(Delivery),
    Released(Release),
    Empty,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().expect("inbox lock poisoned")
    }

    /// Queues `delivery`; `covered` is the hub's cursor before it. Does not wake the
    /// subscription: the hub wakes each slot once per batch, after queueing, and only
    /// the slots whose inbox was empty (a subscription only waits on an empty inbox, and
    /// a [`Notify`] keeps a permit for one that is about to wait).
    fn offer(&self, delivery: Delivery, covered: Cursor) -> Offered {
        let mut inbox = self.lock();
        if inbox.released.is_some() {
            return Offered::Queued { was_empty: false };
        }
        if inbox.deliveries.len() >= INBOX_CAPACITY {
            inbox.released = Some(Release::Detached(covered));
            drop(inbox);
            self.ready.notify_one();
            return Offered::Full;
        }
        let was_empty = inbox.deliveries.is_empty();
        inbox.deliveries.push_back(delivery);
        Offered::Queued { was_empty }
    }

    fn release(&self, release: Release) {
        self.lock().released.get_or_insert(release);
        self.ready.notify_one();
    }

    /// The oldest queued delivery; then, if released, how.
    pub(super) fn take(&self) -> Taken {
        let mut inbox = self.lock();
        match inbox.deliveries.pop_front() {
            Some(delivery) => {
                if inbox.deliveries.is_empty() && inbox.deliveries.capacity() > INBOX_KEEP {
                    inbox.deliveries = VecDeque::new();
                }
                Taken::Delivery(delivery)
            }
            None => inbox.released.map_or(Taken::Empty, Taken::Released),
        }
    }
}

/// What joining the live index gave.
pub(super) enum Joined {
    /// Registered. Everything up to `processed` was dispatched before the slot existed:
    /// the subscription reads what it has not read of that from the log; later events
    /// come to the slot.
    Live { slot: Arc<Slot>, processed: Cursor },
    /// The hub has drained the log at shutdown; nothing more comes.
    Finished,
}

/// A subscription's place in the hub: counted against the caps while it lives, and in the
/// index while it holds a slot. Dropping it leaves both.
pub(super) struct Membership {
    hub: Arc<Hub>,
    peer: Option<SocketAddr>,
    /// Bytes charged against the budgets, given back in `Drop`.
    bytes: u64,
    slot: Option<Arc<Slot>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("hub lock poisoned")
    }

    /// Counts a new subscription from `peer` against the caps and charges it `bytes`.
    fn admit(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
        bytes: u64,
    ) -> Result<Membership, SubscribeError> {
        let mut state = self.lock();
        let limits = self.limits;
        if state.open >= limits.max_subscriptions {
            return Err(SubscribeError::ServiceFull {
                limit: limits.max_subscriptions,
            });
        }
        if state.bytes.saturating_add(bytes) > limits.max_subscription_bytes {
            return Err(SubscribeError::ServiceBytesFull {
                needed: bytes,
                used: state.bytes,
                limit: limits.max_subscription_bytes,
            });
        }
        if let Some(peer) = peer {
            let usage = state.per_peer.get(&peer).copied().unwrap_or_default();
            let limit = limits.max_streams_per_connection as usize;
            if usage.streams >= limit {
                return Err(SubscribeError::ConnectionFull { limit });
            }
            let share = limits.connection_bytes();
            if usage.bytes.saturating_add(bytes) > share {
                return Err(SubscribeError::ConnectionBytesFull {
                    needed: bytes,
                    used: usage.bytes,
                    limit: share,
                });
            }
            let usage = state.per_peer.entry(peer).or_default();
            usage.streams += 1;
            usage.bytes += bytes;
        }
        state.open += 1;
        state.bytes += bytes;
        self.live.inc();
        self.bytes.set(gauge(state.bytes));
        Ok(Membership {
            hub: self.clone(),
            peer,
            bytes,
            slot: None,
        })
    }

    /// The reader: dispatches every event after `processed`, until shutdown has drained
    /// the log.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            // At shutdown the webhook has already stopped: the log is complete.
            let draining = shutdown.is_cancelled();
            let after = self.lock().processed;
            match self.log.read_after(after, BATCH).await {
                Ok(batch) if !batch.is_empty() => self.dispatch(batch),
                Ok(_) if draining => {
                    let mut state = self.lock();
                    state.finished = true;
                    let processed = state.processed;
                    state.release_all(Release::Finished(processed));
                    return;
                }
                Ok(_) => {
                    tokio::select! {
                        () = self.log.wait_after(after) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(error) => {
                    // Every live subscription reads the log itself from where the hub
                    // stopped, so each meets this error (or gets past it) on its own.
                    tracing::warn!(%error, "fan-out cannot read the event log; subscribers read it themselves");
                    {
                        let mut state = self.lock();
                        let processed = state.processed;
                        state.release_all(Release::Detached(processed));
                        if let LogError::OutOfRange { resume_from, .. } = error {
                            state.processed = resume_from;
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Offers each entry to the slots it may match, in order.
    fn dispatch(&self, batch: Vec<Entry>) {
        let mut state = self.lock();
        let mut full = Vec::new();
        // Slots to wake once the whole batch is queued: one wake-up per subscription and
        // batch, not per event, so a burst costs each subscriber one scheduling.
        let mut to_wake: Vec<Arc<Slot>> = Vec::new();
        for entry in batch {
            let covered = state.processed;
            if entry.cursor <= covered {
                continue;
            }
            let event = &entry.event;
            // One wire cache per event, made only if some slot takes it.
            let mut wire: Option<Arc<OnceLock<Bytes>>> = None;
            let mut offer = |slot: &Arc<Slot>| {
                if entry.cursor <= slot.floor || !slot.filter.matches(event) {
                    return;
                }
                let delivery = Delivery {
                    cursor: entry.cursor,
                    event: entry.event.clone(),
                    wire: wire.get_or_insert_with(Arc::default).clone(),
                };
                match slot.offer(delivery, covered) {
                    Offered::Queued { was_empty: true } => to_wake.push(slot.clone()),
                    Offered::Queued { was_empty: false } => {}
                    Offered::Full => full.push(slot.clone()),
                }
            };
            if let Some(slots) = state.by_ticket.get(event.ticket.as_str()) {
                slots.iter().for_each(&mut offer);
            }
            if let Some(slots) = state.by_scene.get(event.scene.as_str()) {
                slots.iter().for_each(&mut offer);
            }
            state.broadcast.values().for_each(&mut offer);
            for slot in full.drain(..) {
                state.remove(&slot);
            }
            state.processed = entry.cursor;
        }
        drop(state);
        for slot in to_wake {
            slot.ready.notify_one();
        }
    }
}

impl Membership {
    /// Joins the live index, having read the log up to `position` and found nothing more.
    pub(super) fn join(&mut self, filter: &Arc<Filter>, position: Cursor) -> Joined {
        let mut state = self.hub.lock();
        if state.finished {
            return Joined::Finished;
        }
        let slot = Arc::new(Slot {
            id: state.next_id,
            filter: filter.clone(),
            floor: position,
            inbox: Mutex::new(Inbox::default()),
            ready: Notify::new(),
        });
        state.next_id += 1;
        state.insert(&slot);
        self.slot = Some(slot.clone());
        Joined::Live {
            slot,
            processed: state.processed,
        }
    }

    /// Forgets the slot the hub released (it is no longer in the index).
    pub(super) fn released(&mut self) {
        self.slot = None;
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        if let Some(slot) = self.slot.take() {
            state.remove(&slot);
        }
        state.open -= 1;
        state.bytes -= self.bytes;
        if let Some(peer) = self.peer
            && let Some(usage) = state.per_peer.get_mut(&peer)
        {
            usage.streams -= 1;
            usage.bytes -= self.bytes;
            if usage.streams == 0 {
                state.per_peer.remove(&peer);
                shrink(&mut state.per_peer);
            }
        }
        let bytes = state.bytes;
        drop(state);
        self.hub.live.dec();
        self.hub.bytes.set(gauge(bytes));
    }
}

/// A byte count as a gauge value.
fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
