//! Who holds a listener's connections, so that no caller can hold them all: every open
//! connection of a listener is registered here, counted against its client address, and
//! ordered by how long it has been evictable (nginx's `limit_conn` and "close the oldest
//! idle" in one place). A connection is evictable while it is waiting — for its HTTP/2
//! handshake, for a request head, or idle between calls — and not while a request or
//! stream is in flight. At the cap, the oldest waiting connection is closed to make room,
//! so a newcomer never waits behind connections that are doing nothing; past the
//! per-address limit, the newcomer from that address is closed at once.
//!
//! The accept loops ([`crate::http_server`], [`crate::grpc_listener`]) admit and release;
//! the request paths mark a connection busy for as long as they hold a [`Busy`] guard.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Why a connection was closed by the service rather than its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Its address already held its share of connections.
    PerAddress,
    /// The cap was reached and nothing was waiting to be closed instead.
    Full,
    /// Closed at the cap to make room for a newcomer.
    Evicted,
    /// It did not complete its HTTP/2 handshake in time.
    Handshake,
    /// It had no call or stream for the idle time.
    Idle,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Self::PerAddress => "per_address",
            Self::Full => "full",
            Self::Evicted => "evicted",
            Self::Handshake => "handshake_timeout",
            Self::Idle => "idle",
        }
    }
}

/// What a waiting connection is waiting for; connections in a handshake are closed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Waiting {
    /// The HTTP/2 client preface and first frame (gRPC only).
    Handshake,
    /// A request (HTTP: its head; gRPC: any call).
    Request,
}

/// One listener's connections.
#[derive(Debug)]
pub(crate) struct Registry {
    /// The listener's name, for logs and metrics.
    name: &'static str,
    /// Connections open at once.
    cap: usize,
    /// Connections one address may hold.
    per_address: usize,
    inner: Mutex<Inner>,
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    connections: HashMap<u64, Entry>,
    by_address: HashMap<IpAddr, usize>,
    /// Waiting connections, oldest handshakes first, then the oldest idle.
    waiting: BTreeSet<(Waiting, Instant, u64)>,
    /// Connections told to close that have not yet gone: they still hold a descriptor,
    /// but no longer count against the cap, since they are leaving.
    closing: usize,
    /// Whether the last admission found the listener at its cap (logged once a burst).
    saturated: bool,
}

#[derive(Debug)]
struct Entry {
    /// The address it counts against; `None` for a trusted proxy not yet attributed.
    address: Option<IpAddr>,
    /// Requests or streams in flight.
    busy: usize,
    /// Since when, and for what, it has been waiting (when `busy` is 0).
    waiting: Option<(Waiting, Instant)>,
    /// Told to close: the connection's task drops it when this fires.
    close: CancellationToken,
    closing: bool,
}

/// An admitted connection; dropping it (when the connection ends) releases its place.
#[derive(Debug)]
pub(crate) struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    close: CancellationToken,
    /// Requests or streams in flight on this connection. Counted here, outside the
    /// registry's lock: only a change between none and some takes the lock (an HTTP/2
    /// connection with many calls in flight takes it rarely).
    calls: Arc<AtomicUsize>,
}

/// A request or stream in flight on a connection: it is not evictable until dropped.
#[derive(Debug)]
pub(crate) struct Busy {
    registry: Arc<Registry>,
    id: u64,
    calls: Arc<AtomicUsize>,
}

impl Registry {
    /// A registry for `name` with a `cap` and a `per_address` limit.
    pub(crate) fn new(
        name: &'static str,
        cap: usize,
        per_address: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            cap: cap.max(1),
            per_address: per_address.max(1),
            inner: Mutex::default(),
            metrics,
        })
    }

    /// Admits a connection from `address` (`None`: a trusted proxy, counted later by the
    /// address it forwards for), closing the oldest waiting connection if the listener is
    /// at its cap. `handshake`: it starts in its HTTP/2 handshake.
    pub(crate) fn admit(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        handshake: bool,
    ) -> Result<Admitted, Closed> {
        let mut inner = self.lock();
        if let Some(address) = address
            && inner.by_address.get(&address).copied().unwrap_or(0) >= self.per_address
        {
            drop(inner);
            self.count(Closed::PerAddress);
            return Err(Closed::PerAddress);
        }
        if inner.connections.len() - inner.closing >= self.cap {
            let Some(&oldest) = inner.waiting.first() else {
                drop(inner);
                self.count(Closed::Full);
                return Err(Closed::Full);
            };
            if !inner.saturated {
                inner.saturated = true;
                tracing::warn!(
                    listener = self.name,
                    cap = self.cap,
                    "connection cap reached: closing the oldest waiting connections to make room"
                );
            }
            inner.close(oldest.2);
            self.count(Closed::Evicted);
        } else {
            inner.saturated = false;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let now = Instant::now();
        let waiting = if handshake {
            Waiting::Handshake
        } else {
            Waiting::Request
        };
        let close = CancellationToken::new();
        inner.connections.insert(
            id,
            Entry {
                address,
                busy: 0,
                waiting: Some((waiting, now)),
                close: close.clone(),
                closing: false,
            },
        );
        inner.waiting.insert((waiting, now, id));
        if let Some(address) = address {
            *inner.by_address.entry(address).or_default() += 1;
        }
        let open = inner.connections.len();
        drop(inner);
        self.set_open(open);
        Ok(Admitted {
            registry: self.clone(),
            id,
            close,
            calls: Arc::default(),
        })
    }

    /// Closes connections that waited too long: handshakes older than `handshake`, idle
    /// connections older than `idle`. Returns how many.
    pub(crate) fn sweep(&self, handshake: Duration, idle: Option<Duration>) -> usize {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut inner = self.lock();
        for &(waiting, since, id) in &inner.waiting {
            let limit = match waiting {
                Waiting::Handshake => Some(handshake),
                Waiting::Request => idle,
            };
            if limit.is_some_and(|limit| now.duration_since(since) >= limit) {
                expired.push((waiting, id));
            }
        }
        for &(_, id) in &expired {
            inner.close(id);
        }
        drop(inner);
        for &(waiting, _) in &expired {
            self.count(match waiting {
                Waiting::Handshake => Closed::Handshake,
                Waiting::Request => Closed::Idle,
            });
        }
        expired.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("connection registry lock")
    }

    fn count(&self, why: Closed) {
        if let Some(metrics) = &self.metrics {
            metrics
                .connections_closed
                .with_label_values(&[self.name, why.label()])
                .inc();
        }
    }

    fn set_open(&self, open: usize) {
        if let Some(metrics) = &self.metrics {
            metrics
                .connections_open
                .with_label_values(&[self.name])
                .set(i64::try_from(open).unwrap_or(i64::MAX));
        }
    }
}

impl Inner {
    /// Tells connection `id` to close and stops counting it against the cap.
    fn close(&mut self, id: u64) {
        let Some(entry) = self.connections.get_mut(&id) else {
            return;
        };
        if let Some((waiting, since)) = entry.waiting.take() {
            self.waiting.remove(&(waiting, since, id));
        }
        if !entry.closing {
            entry.closing = true;
            entry.close.cancel();
            self.closing += 1;
        }
    }

    fn set_waiting(&mut self, id: u64, waiting: Waiting) {
        let Some(entry) = self.connections.get_mut(&id) else {
            return;
        };
        if entry.closing || entry.busy > 0 {
            return;
        }
        if let Some((old, since)) = entry.waiting.take() {
            self.waiting.remove(&(old, since, id));
        }
        let now = Instant::now();
        entry.waiting = Some((waiting, now));
        self.waiting.insert((waiting, now, id));
    }
}

impl Admitted {
    /// Fires when the service closes this connection; its task then drops it.
    pub(crate) fn closed(&self) -> CancellationToken {
        self.close.clone()
    }

    /// Its HTTP/2 handshake is complete: from now on it waits for calls.
    pub(crate) fn handshake_done(&self) {
        let mut inner = self.registry.lock();
        let waiting_handshake = inner
            .connections
            .get(&self.id)
            .is_some_and(|e| matches!(e.waiting, Some((Waiting::Handshake, _))));
        if waiting_handshake {
            inner.set_waiting(self.id, Waiting::Request);
        }
    }

    /// Marks a request or stream in flight until the guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        if self.calls.fetch_add(1, Ordering::AcqRel) == 0 {
            self.registry.sync_busy(self.id, &self.calls);
        }
        Busy {
            registry: self.registry.clone(),
            id: self.id,
            calls: self.calls.clone(),
        }
    }

    /// Counts a trusted proxy's connection against `address`, the client it forwards
    /// for; refused when that address already holds its share.
    pub(crate) fn attribute(&self, address: IpAddr) -> Result<(), Closed> {
        let registry = &self.registry;
        let mut inner = registry.lock();
        let Some(current) = inner.connections.get(&self.id).map(|e| e.address) else {
            return Ok(());
        };
        if current == Some(address) {
            return Ok(());
        }
        if inner.by_address.get(&address).copied().unwrap_or(0) >= registry.per_address {
            drop(inner);
            registry.count(Closed::PerAddress);
            return Err(Closed::PerAddress);
        }
        if let Some(current) = current {
            inner.uncount(current);
        }
        *inner.by_address.entry(address).or_default() += 1;
        if let Some(entry) = inner.connections.get_mut(&self.id) {
            entry.address = Some(address);
        }
        Ok(())
    }
}

impl Inner {
    fn uncount(&mut self, address: IpAddr) {
        if let Some(count) = self.by_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.by_address.remove(&address);
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(entry) = inner.connections.remove(&self.id) {
            if let Some((waiting, since)) = entry.waiting {
                inner.waiting.remove(&(waiting, since, self.id));
            }
            if entry.closing {
                inner.closing -= 1;
            }
            if let Some(address) = entry.address {
                inner.uncount(address);
            }
        }
        let open = inner.connections.len();
        drop(inner);
        self.registry.set_open(open);
    }
}

impl Registry {
    /// Brings the entry's busy mark up to date with its count of calls, after the count
    /// went from none to some or back. Read under the lock, the count is the latest: of
    /// two such changes racing, whichever takes the lock last sees the final count.
    fn sync_busy(&self, id: u64, calls: &AtomicUsize) {
        let mut inner = self.lock();
        let busy = calls.load(Ordering::Acquire);
        let Some(entry) = inner.connections.get_mut(&id) else {
            return;
        };
        entry.busy = busy;
        if busy > 0 {
            if let Some((waiting, since)) = entry.waiting.take() {
                inner.waiting.remove(&(waiting, since, id));
            }
        } else {
            inner.set_waiting(id, Waiting::Request);
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.registry.sync_busy(self.id, &self.calls);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_connection_makes_room() {
        let registry = Registry::new("test", 2, 10, None);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let first = registry.admit(Some(a), false).unwrap();
        let second = registry.admit(Some(a), false).unwrap();
        let busy = second.busy();
        let third = registry.admit(Some(a), false).unwrap();
        assert!(first.closed().is_cancelled(), "the oldest waiting one goes");
        assert!(!second.closed().is_cancelled(), "a busy one stays");
        // Both left are busy or new; `third` waits, so it is the next to go.
        let _busy_third = third.busy();
        assert_eq!(registry.admit(Some(a), false).unwrap_err(), Closed::Full);
        drop(busy);
        drop(first);
        registry.admit(Some(a), false).unwrap();
        assert!(second.closed().is_cancelled());
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let registry = Registry::new("test", 100, 2, None);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let _one = registry.admit(Some(a), false).unwrap();
        let two = registry.admit(Some(a), false).unwrap();
        assert_eq!(
            registry.admit(Some(a), false).unwrap_err(),
            Closed::PerAddress
        );
        let _other = registry.admit(Some(b), false).unwrap();
        drop(two);
        let _again = registry.admit(Some(a), false).unwrap();
        // A proxy's connection counts against the address it forwards for.
        let proxied = registry.admit(None, false).unwrap();
        assert_eq!(proxied.attribute(a).unwrap_err(), Closed::PerAddress);
        proxied.attribute(b).unwrap();
    }
}
