//! The replay guard's memory: every `(timestamp, nonce)` the webhook accepted under a
//! valid signature, with a digest of the body it came with, for as long as that query
//! could still pass the replay window. A plaintext push's `signature` covers the token,
//! timestamp and nonce but not the body, so without this memory one captured query string
//! would carry any number of forged bodies. With it, the same query with the same body is
//! WeChat's retry; with another body, or a handshake's query on a push, it is refused.
//!
//! The memory is bounded by a count. When it is full it forgets its oldest seal and
//! shortens the window it accepts instead of refusing genuine pushes: from then on every
//! timestamp not newer than the newest forgotten seal's is refused as stale, so a query it
//! no longer remembers can still not be replayed. Each seal costs a fixed few dozen bytes:
//! a keyed 64-bit hash of the pair, 15 bytes of the body's SHA-256 and its kind in a hash
//! map, and the hash again in a per-second queue for expiry (no allocation per seal).
//! On the durable backend the seals are written to the same store as the events, in the
//! same queue: a push's seal is on disk no later than its event, so it survives a restart
//! exactly when the event does. With several replicas on Redis each keeps its own memory
//! and also asks the shared one ([`SharedSeals`]), so a captured query replayed to another
//! replica is caught too.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::oneshot;

use super::{DurableLog, LogError};

/// A verified request's `(timestamp, nonce)` and what it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The query's `timestamp`, Unix seconds.
    pub timestamp: u64,
    /// The query's `nonce`.
    pub nonce: String,
    /// SHA-256 of the body (of `echostr` for a handshake).
    pub digest: [u8; 32],
    /// Push or handshake.
    pub kind: SealKind,
}

/// Which request a seal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    /// A plaintext push: only the query is signed, not the body.
    Plaintext,
    /// An encrypted push: `msg_signature` also covers the ciphertext, so its body is
    /// authenticated (and WeChat may re-encrypt a retry under the same query).
    Encrypted,
    /// A GET handshake (`echostr`).
    Handshake,
}

/// What the memory says of a seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealCheck {
    /// Never seen: remembered now.
    Fresh,
    /// Seen with the same body (or, for an encrypted push, whose body its own signature
    /// authenticates, at all): WeChat's retry.
    Retry,
    /// Seen with another body, or on another kind of request: a captured query string
    /// carrying a forged body.
    Reused,
    /// Not remembered, and not newer than a seal the full memory had to forget: the
    /// window accepted has shortened past this timestamp, so it is refused as stale.
    Stale,
}

/// The outcome of [`SealBook::check`], and a way to wait until the seal is durable.
#[derive(Debug)]
pub struct Sealed {
    /// What the memory said.
    pub check: SealCheck,
    durable: Option<oneshot::Receiver<Result<(), LogError>>>,
}

impl Sealed {
    /// Resolves once the seal is on disk (at once on the in-memory backend). A push's
    /// event appended after the check is committed with or after its seal, so awaiting
    /// this after the append costs nothing.
    pub async fn durable(self) -> Result<(), LogError> {
        match self.durable {
            None => Ok(()),
            Some(written) => written.await.map_err(|_| {
                LogError::Unavailable("the event log writer has stopped".to_owned())
            })?,
        }
    }
}

/// A memory of seals shared by every replica of a deployment.
#[async_trait::async_trait]
pub trait SharedSeals: Send + Sync + std::fmt::Debug + 'static {
    /// Remembers `seal` for `keep` past its timestamp unless the pair is already
    /// remembered; answers what was remembered before (`None`: nothing, now this).
    async fn remember(
        &self,
        seal: &Seal,
        keep: Duration,
    ) -> Result<Option<([u8; 32], SealKind)>, LogError>;
}

/// What a seal already remembered for the same pair makes of a new one.
fn compare(existing: ([u8; 32], SealKind), seal: &Seal) -> SealCheck {
    let (digest, kind) = existing;
    judge(kind, digest == seal.digest, seal)
}

/// The rule behind [`compare`], given the remembered seal's kind and whether it was made
/// for the same body.
fn judge(kind: SealKind, same_body: bool, seal: &Seal) -> SealCheck {
    // A handshake's query can never carry a push, nor a push's a handshake.
    if (kind == SealKind::Handshake) != (seal.kind == SealKind::Handshake) {
        return SealCheck::Reused;
    }
    // Its own signature authenticates an encrypted body; a plaintext body (or echostr)
    // under a query already used is WeChat's retry only with the very same bytes.
    if seal.kind == SealKind::Encrypted || (same_body && kind == seal.kind) {
        SealCheck::Retry
    } else {
        SealCheck::Reused
    }
}

/// The default number of seals held: 20,000 pushes a second for 90 s, or 6,000 a second
/// for a whole 300-second window. The hash map grows with the seals held, to 2^21 slots
/// of 25 bytes at this count, so about 67 MB once full, 37 bytes a seal
/// ([`SealBook::heap_bytes`]). The
/// number is the setting's default, so it is defined with the settings (layers run down).
pub const DEFAULT_MAX_SEALS: usize = crate::config::DEFAULT_REPLAY_GUARD_SEALS;

/// The bounded memory of seals.
#[derive(Debug)]
pub struct SealBook {
    /// How long a seal is kept past its timestamp: the replay window.
    keep: Duration,
    /// Most seals held.
    max: usize,
    /// The key of the pair hashes: random per process, so nobody outside can aim
    /// collisions (seals read back from the store are hashed again on start).
    hasher: RandomState,
    inner: Mutex<Inner>,
    /// Where seals are made durable, when the backend is.
    store: Option<Arc<DurableLog>>,
    /// The deployment's memory, when several replicas share one (Redis).
    shared: Option<Arc<dyn SharedSeals>>,
}

/// What is remembered of a seal besides its pair's hash: its kind in the first byte,
/// then the first 15 bytes of its body's SHA-256 (a forged body matching them would take
/// about 2^120 tries).
type Mark = [u8; 16];

fn mark(seal: &Seal) -> Mark {
    let mut mark = [0; 16];
    mark[0] = kind_byte(seal.kind);
    mark[1..].copy_from_slice(&seal.digest[..15]);
    mark
}

/// The keys are already keyed SipHash outputs: the map uses them as they are.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a `u64`); fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Pair hash → mark.
    seals: HashMap<u64, Mark, BuildHasherDefault<PassThrough>>,
    /// The same hashes by timestamp (one vector a second, not one allocation a seal),
    /// for expiry and for forgetting the oldest when full.
    order: BTreeMap<u64, Vec<u64>>,
    /// The newest timestamp the full memory had to forget: nothing at or before it is
    /// accepted any more unless still remembered.
    forgot_through: Option<u64>,
}

impl Inner {
    fn insert(&mut self, timestamp: u64, key: u64, mark: Mark, max: usize) {
        while self.seals.len() >= max {
            let Some(mut oldest) = self.order.first_entry() else {
                break;
            };
            let second = *oldest.key();
            if let Some(forgotten) = oldest.get_mut().pop() {
                self.seals.remove(&forgotten);
                self.forgot_through = Some(self.forgot_through.map_or(second, |t| t.max(second)));
            }
            if oldest.get().is_empty() {
                oldest.remove();
            }
        }
        if self.seals.insert(key, mark).is_none() {
            if !self.order.contains_key(&timestamp) {
                // A new second: the one before it is (nearly always) complete, so give
                // back what its vector over-allocated while growing.
                if let Some((_, previous)) = self.order.range_mut(..timestamp).next_back() {
                    previous.shrink_to_fit();
                }
            }
            self.order.entry(timestamp).or_default().push(key);
        }
    }

    fn expire(&mut self, before: u64) {
        while let Some(oldest) = self.order.first_entry() {
            if *oldest.key() >= before {
                break;
            }
            for key in oldest.remove() {
                self.seals.remove(&key);
            }
        }
        // After a burst, give the table back once it is mostly empty (a rehash of what
        // is left, rarely: only past 64 Ki slots and below an eighth full).
        let capacity = self.seals.capacity();
        if capacity > 65_536 && self.seals.len() < capacity / 8 {
            self.seals.shrink_to(self.seals.len() * 2);
        }
    }
}

/// Seals stored on disk: `timestamp (8 bytes, big-endian) ++ nonce` → `kind ++ digest`.
pub(super) fn encode(seal: &Seal) -> (Vec<u8>, Vec<u8>) {
    let mut key = seal.timestamp.to_be_bytes().to_vec();
    key.extend_from_slice(seal.nonce.as_bytes());
    let mut value = vec![kind_byte(seal.kind)];
    value.extend_from_slice(&seal.digest);
    (key, value)
}

/// The inverse of [`encode`]; `None` for a record that is not a seal.
pub(super) fn decode(key: &[u8], value: &[u8]) -> Option<Seal> {
    let timestamp = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let nonce = std::str::from_utf8(key.get(8..)?).ok()?.to_owned();
    let kind = kind_of(*value.first()?)?;
    let digest = value.get(1..33)?.try_into().ok()?;
    Some(Seal {
        timestamp,
        nonce,
        digest,
        kind,
    })
}

fn kind_byte(kind: SealKind) -> u8 {
    match kind {
        SealKind::Plaintext => 1,
        SealKind::Handshake => 2,
        SealKind::Encrypted => 3,
    }
}

fn kind_of(byte: u8) -> Option<SealKind> {
    Some(match byte {
        1 => SealKind::Plaintext,
        2 => SealKind::Handshake,
        3 => SealKind::Encrypted,
        _ => return None,
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl SealBook {
    /// A memory keeping seals for `keep` past their timestamp, at most `max` of them,
    /// starting from what `store` holds.
    pub fn new(
        keep: Duration,
        max: usize,
        store: Option<Arc<DurableLog>>,
    ) -> Result<Self, LogError> {
        let max = max.max(1);
        let mut book = Self {
            keep,
            max,
            hasher: RandomState::new(),
            inner: Mutex::new(Inner {
                // Not sized for `max` up front: the table's pages would become resident
                // one random slot at a time, so a quiet service would end up holding the
                // whole 67 MB for a few thousand seals. It grows with the traffic instead,
                // to the same table at `max`.
                seals: HashMap::with_hasher(BuildHasherDefault::default()),
                ..Inner::default()
            }),
            store: None,
            shared: None,
        };
        if let Some(store) = &store {
            let oldest = now_secs().saturating_sub(keep.as_secs());
            let mut seals = store.seals_since(oldest)?;
            seals.sort_by_key(|seal| seal.timestamp);
            let inner = book.inner.get_mut().expect("seal lock poisoned");
            for seal in &seals {
                let key = book.hasher.hash_one((seal.timestamp, seal.nonce.as_str()));
                inner.insert(seal.timestamp, key, mark(seal), max);
            }
        }
        book.store = store;
        Ok(book)
    }

    /// Also asks `shared`, the memory every replica shares ([`SealBook::check_shared`]).
    pub fn with_shared(mut self, shared: Arc<dyn SharedSeals>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Checks `seal` against the deployment's shared memory, after [`SealBook::check`]
    /// found it fresh or a retry here: `Fresh` when there is none. A failure to reach it
    /// is an error (the push is answered 503 and WeChat retries), not a pass.
    pub async fn check_shared(&self, seal: &Seal) -> Result<SealCheck, LogError> {
        let Some(shared) = &self.shared else {
            return Ok(SealCheck::Fresh);
        };
        Ok(match shared.remember(seal, self.keep).await? {
            None => SealCheck::Fresh,
            Some(existing) => compare(existing, seal),
        })
    }

    /// How many seals are held.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("seal lock poisoned").seals.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest timestamp the full memory had to forget, if it ever had to: pairs at or
    /// before it that are not remembered are refused as [`SealCheck::Stale`].
    pub fn forgot_through(&self) -> Option<u64> {
        self.inner
            .lock()
            .expect("seal lock poisoned")
            .forgot_through
    }

    /// Whether [`SealBook::check`] would refuse `seal` as [`SealCheck::Stale`]: asked
    /// before the shared memory, so a query refused here leaves nothing there.
    pub fn is_stale(&self, seal: &Seal) -> bool {
        let inner = self.inner.lock().expect("seal lock poisoned");
        inner.forgot_through.is_some_and(|t| seal.timestamp <= t)
            && !inner.seals.contains_key(&self.key(seal))
    }

    fn key(&self, seal: &Seal) -> u64 {
        self.hasher.hash_one((seal.timestamp, seal.nonce.as_str()))
    }

    /// Heap bytes the memory holds now: the hash map's table and the per-second queues. An estimate from capacities, checked against
    /// a counting allocator in `tests/seal_memory.rs`.
    pub fn heap_bytes(&self) -> usize {
        let inner = self.inner.lock().expect("seal lock poisoned");
        // hashbrown: a power-of-two number of slots at most 7/8 full, each slot the entry
        // plus one control byte.
        let slots = (inner.seals.capacity() * 8 / 7).next_power_of_two();
        let table = slots * (size_of::<(u64, Mark)>() + 1);
        let queues: usize = inner
            .order
            .values()
            .map(|keys| keys.capacity() * size_of::<u64>() + 48)
            .sum();
        table + queues
    }

    /// Checks `seal` against the memory and remembers it when fresh.
    pub fn check(&self, seal: Seal) -> Sealed {
        let key = self.key(&seal);
        let check = {
            let mut inner = self.inner.lock().expect("seal lock poisoned");
            inner.expire(now_secs().saturating_sub(self.keep.as_secs()));
            match inner.seals.get(&key) {
                Some(existing) => {
                    let kind = kind_of(existing[0]).unwrap_or(SealKind::Handshake);
                    judge(kind, existing[1..] == seal.digest[..15], &seal)
                }
                None if inner.forgot_through.is_some_and(|t| seal.timestamp <= t) => {
                    SealCheck::Stale
                }
                None => {
                    inner.insert(seal.timestamp, key, mark(&seal), self.max);
                    SealCheck::Fresh
                }
            }
        };
        let durable = match (&self.store, check) {
            (Some(store), SealCheck::Fresh) => Some(store.remember_seal(&seal)),
            _ => None,
        };
        Sealed { check, durable }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(timestamp: u64, nonce: &str, body: u8, kind: SealKind) -> Seal {
        Seal {
            timestamp,
            nonce: nonce.to_owned(),
            digest: [body; 32],
            kind,
        }
    }

    #[test]
    fn same_body_is_a_retry_another_body_or_kind_a_reuse_and_the_memory_is_bounded() {
        let book = SealBook::new(Duration::from_secs(300), 2, None).unwrap();
        let now = now_secs();
        assert_eq!(
            book.check(seal(now, "a", 1, SealKind::Plaintext)).check,
            SealCheck::Fresh
        );
        assert_eq!(
            book.check(seal(now, "a", 1, SealKind::Plaintext)).check,
            SealCheck::Retry
        );
        assert_eq!(
            book.check(seal(now, "a", 2, SealKind::Plaintext)).check,
            SealCheck::Reused
        );
        assert_eq!(
            book.check(seal(now, "h", 3, SealKind::Handshake)).check,
            SealCheck::Fresh
        );
        assert_eq!(
            book.check(seal(now, "h", 3, SealKind::Plaintext)).check,
            SealCheck::Reused
        );
        assert_eq!(book.len(), 2);
        // Seals past the window make room without shortening it.
        let roomy = SealBook::new(Duration::from_secs(300), 2, None).unwrap();
        roomy.check(seal(now - 1_000, "old", 1, SealKind::Plaintext));
        roomy.check(seal(now, "x", 1, SealKind::Plaintext));
        assert_eq!(
            roomy.check(seal(now, "y", 1, SealKind::Plaintext)).check,
            SealCheck::Fresh
        );
        assert_eq!(roomy.len(), 2);
        assert_eq!(roomy.forgot_through(), None);
    }

    #[test]
    fn a_full_memory_forgets_its_oldest_and_refuses_what_it_forgot_as_stale() {
        let book = SealBook::new(Duration::from_secs(300), 3, None).unwrap();
        let now = now_secs();
        for (age, nonce) in [(50, "a"), (40, "b"), (30, "c")] {
            assert_eq!(
                book.check(seal(now - age, nonce, 1, SealKind::Plaintext))
                    .check,
                SealCheck::Fresh
            );
        }
        // Full: the newest pair still gets in, the oldest is forgotten and the window
        // now starts after its second.
        assert_eq!(
            book.check(seal(now, "d", 1, SealKind::Plaintext)).check,
            SealCheck::Fresh
        );
        assert_eq!(book.len(), 3);
        assert_eq!(book.forgot_through(), Some(now - 50));
        // The forgotten query, with its body or another: stale, never accepted again.
        for body in [1, 2] {
            assert_eq!(
                book.check(seal(now - 50, "a", body, SealKind::Plaintext))
                    .check,
                SealCheck::Stale
            );
        }
        // Another pair from that second is stale too; a newer one is fresh.
        assert!(book.is_stale(&seal(now - 50, "f", 1, SealKind::Plaintext)));
        assert!(!book.is_stale(&seal(now - 49, "f", 1, SealKind::Plaintext)));
        assert_eq!(
            book.check(seal(now - 45, "e", 1, SealKind::Plaintext))
                .check,
            SealCheck::Fresh
        );
        // Pairs still remembered keep their answers.
        assert_eq!(
            book.check(seal(now, "d", 1, SealKind::Plaintext)).check,
            SealCheck::Retry
        );
        assert_eq!(
            book.check(seal(now, "d", 2, SealKind::Plaintext)).check,
            SealCheck::Reused
        );
    }

    #[test]
    fn seals_round_trip_through_their_stored_form() {
        let original = seal(1_700_000_000, "nonce-1", 7, SealKind::Handshake);
        let (key, value) = encode(&original);
        assert_eq!(decode(&key, &value), Some(original));
    }
}
