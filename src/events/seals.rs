//! The replay guard's memory: every `(timestamp, nonce)` the webhook accepted under a
//! valid signature, with a digest of the body it came with, for as long as that query
//! could still pass the replay window. A plaintext push's `signature` covers the token,
//! timestamp and nonce but not the body, so without this memory one captured query string
//! would carry any number of forged bodies. With it, the same query with the same body is
//! WeChat's retry; with another body, or a handshake's query on a push, it is refused.
//!
//! The memory is bounded (by the window and a count) and, on the durable backend, written
//! to the same store as the events, in the same queue: a push's seal is on disk no later
//! than its event, so it survives a restart exactly when the event does. With several
//! replicas on Redis each keeps its own memory and also asks the shared one
//! ([`SharedSeals`]), so a captured query replayed to another replica is caught too.

use std::{
    collections::{BTreeSet, HashMap},
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
    /// The memory is full of seals still inside the window; try again later.
    Full,
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
    // A handshake's query can never carry a push, nor a push's a handshake.
    if (kind == SealKind::Handshake) != (seal.kind == SealKind::Handshake) {
        return SealCheck::Reused;
    }
    // Its own signature authenticates an encrypted body; a plaintext body (or echostr)
    // under a query already used is WeChat's retry only with the very same bytes.
    if seal.kind == SealKind::Encrypted || (digest == seal.digest && kind == seal.kind) {
        SealCheck::Retry
    } else {
        SealCheck::Reused
    }
}

/// The bounded memory of seals.
#[derive(Debug)]
pub struct SealBook {
    /// How long a seal is kept past its timestamp: the replay window.
    keep: Duration,
    /// Most seals held.
    max: usize,
    inner: Mutex<Inner>,
    /// Where seals are made durable, when the backend is.
    store: Option<Arc<DurableLog>>,
    /// The deployment's memory, when several replicas share one (Redis).
    shared: Option<Arc<dyn SharedSeals>>,
}

#[derive(Debug, Default)]
struct Inner {
    seals: HashMap<(u64, Box<str>), ([u8; 32], SealKind)>,
    /// The same keys by timestamp, oldest first, for expiry.
    order: BTreeSet<(u64, Box<str>)>,
}

/// Seals stored on disk: `timestamp (8 bytes, big-endian) ++ nonce` → `kind ++ digest`.
pub(super) fn encode(seal: &Seal) -> (Vec<u8>, Vec<u8>) {
    let mut key = seal.timestamp.to_be_bytes().to_vec();
    key.extend_from_slice(seal.nonce.as_bytes());
    let mut value = vec![match seal.kind {
        SealKind::Plaintext => 1,
        SealKind::Handshake => 2,
        SealKind::Encrypted => 3,
    }];
    value.extend_from_slice(&seal.digest);
    (key, value)
}

/// The inverse of [`encode`]; `None` for a record that is not a seal.
pub(super) fn decode(key: &[u8], value: &[u8]) -> Option<Seal> {
    let timestamp = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let nonce = std::str::from_utf8(key.get(8..)?).ok()?.to_owned();
    let kind = match value.first()? {
        1 => SealKind::Plaintext,
        2 => SealKind::Handshake,
        3 => SealKind::Encrypted,
        _ => return None,
    };
    let digest = value.get(1..33)?.try_into().ok()?;
    Some(Seal {
        timestamp,
        nonce,
        digest,
        kind,
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
        let mut inner = Inner::default();
        if let Some(store) = &store {
            let oldest = now_secs().saturating_sub(keep.as_secs());
            for seal in store.seals_since(oldest)? {
                let key = (seal.timestamp, seal.nonce.into_boxed_str());
                inner.order.insert(key.clone());
                inner.seals.insert(key, (seal.digest, seal.kind));
            }
        }
        Ok(Self {
            keep,
            max: max.max(1),
            inner: Mutex::new(inner),
            store,
            shared: None,
        })
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

    /// Checks `seal` against the memory and remembers it when fresh.
    pub fn check(&self, seal: Seal) -> Sealed {
        let check = {
            let mut inner = self.inner.lock().expect("seal lock poisoned");
            let expired_before = now_secs().saturating_sub(self.keep.as_secs());
            while let Some(oldest) = inner.order.first().cloned() {
                if oldest.0 >= expired_before {
                    break;
                }
                inner.order.pop_first();
                inner.seals.remove(&oldest);
            }
            let key = (seal.timestamp, Box::<str>::from(seal.nonce.as_str()));
            match inner.seals.get(&key) {
                Some(&existing) => compare(existing, &seal),
                None if inner.seals.len() >= self.max => SealCheck::Full,
                None => {
                    inner.order.insert(key.clone());
                    inner.seals.insert(key, (seal.digest, seal.kind));
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
        assert_eq!(
            book.check(seal(now, "c", 1, SealKind::Plaintext)).check,
            SealCheck::Full
        );
        // Seals past the window make room.
        assert_eq!(
            book.check(seal(now - 1_000, "old", 1, SealKind::Plaintext))
                .check,
            SealCheck::Full
        );
        let roomy = SealBook::new(Duration::from_secs(300), 2, None).unwrap();
        roomy.check(seal(now - 1_000, "old", 1, SealKind::Plaintext));
        roomy.check(seal(now, "x", 1, SealKind::Plaintext));
        assert_eq!(
            roomy.check(seal(now, "y", 1, SealKind::Plaintext)).check,
            SealCheck::Fresh
        );
        assert_eq!(roomy.len(), 2);
    }

    #[test]
    fn seals_round_trip_through_their_stored_form() {
        let original = seal(1_700_000_000, "nonce-1", 7, SealKind::Handshake);
        let (key, value) = encode(&original);
        assert_eq!(decode(&key, &value), Some(original));
    }
}
