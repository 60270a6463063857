//! The events a push becomes, and the log that delivers them. Delivery semantics in one
//! sentence: every event the webhook accepts is appended once (re-sent pushes are
//! de-duplicated) to an ordered log, and every subscriber sees each matching event after
//! its cursor once, in order, across reconnects, at its own pace — live subscribers
//! through the fan-out hub's index, replaying or lagging ones from the log itself.

mod cursor;
mod durable;
mod fanout;
mod filter;
pub mod groups;
mod log;
mod memory;
mod redis;
mod seals;
mod segment;
mod subscription;

use std::{sync::Arc, time::SystemTime};

pub use cursor::{Cursor, CursorParseError};
pub use durable::{DurableLog, LOCK_FILE, LOG_DIR, OpenError, STORE_FILE};
pub use fanout::{Admission, STREAM_OVERHEAD_BYTES, SubscribeError, Subscribers};
pub use filter::{ENTRY_OVERHEAD_BYTES, Filter};
pub use log::{Appended, Entry, EventLog, LogError};
pub use memory::MemoryLog;
pub use redis::{
    COMPARE_AND_DELETE, RedisLog, RedisRecords, RedisSeals, connect as connect_redis, redact,
};
pub use seals::{DEFAULT_MAX_SEALS, Seal, SealBook, SealCheck, SealKind, Sealed, SharedSeals};
pub use subscription::{Delivery, StreamEnd, Subscription};

use crate::config::{Retention, Storage};

/// Small records the layers above keep in the same store as the log, so the service has
/// one place of state (today: permanent scenes). Keys are the caller's; values opaque.
#[async_trait::async_trait]
pub trait Records: Send + Sync + std::fmt::Debug + 'static {
    /// Every record, in key order.
    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>, LogError>;

    /// Stores a record; durable before this returns, where the backend is.
    async fn put(&self, key: String, value: Vec<u8>) -> Result<(), LogError>;

    /// One record as the store holds it now. Only a store shared by several processes
    /// can hold one this process has not seen; the others answer `None`.
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, LogError> {
        Ok(None)
    }

    /// Waits for, then holds, the deployment-wide right to create the record `key` (until
    /// the [`Claim`] drops). `None`: this process is the only writer, its own lock suffices.
    async fn claim(&self, _key: &str) -> Result<Option<Claim>, LogError> {
        Ok(None)
    }
}

/// A held [`Records::claim`]; dropping it releases the claim.
pub struct Claim(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Claim {
    /// A claim that runs `release` when dropped.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(release)))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim")
    }
}

/// Records of the in-memory backend: nothing outlives the process, so nothing is kept
/// here (the caller's own map is the only copy).
#[derive(Debug)]
pub struct NoRecords;

#[async_trait::async_trait]
impl Records for NoRecords {
    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        Ok(Vec::new())
    }

    async fn put(&self, _key: String, _value: Vec<u8>) -> Result<(), LogError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl Records for DurableLog {
    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        self.records()
    }

    async fn put(&self, key: String, value: Vec<u8>) -> Result<(), LogError> {
        self.put_record(key, value).await
    }
}

/// The state backend chosen at start-up: the one place that knows which runs.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// Records kept beside it.
    pub records: Arc<dyn Records>,
    /// The replay guard's memory of accepted `(timestamp, nonce)` pairs.
    pub seals: Arc<SealBook>,
    /// The log again when it is on Redis, with its URL: consumer groups read its stream
    /// as Redis consumer groups.
    pub redis: Option<(Arc<RedisLog>, crate::secret::Secret)>,
}

impl Backend {
    /// Opens the backend `storage` names, for the accounts `app_ids` (the data belongs to
    /// the deployment, so any of them may have created it); seals are kept for
    /// `seal_keep` (the replay window), at most `max_seals` of them.
    pub async fn open(
        storage: &Storage,
        app_ids: &[String],
        retention: Retention,
        seal_keep: std::time::Duration,
        max_seals: usize,
    ) -> Result<Self, OpenError> {
        Ok(match storage {
            Storage::Durable { dir } => {
                let log = DurableLog::open(dir, app_ids, retention, seal_keep)?;
                let seals =
                    SealBook::new(seal_keep, max_seals, Some(log.clone())).map_err(|e| {
                        OpenError::Store {
                            path: log.file().to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
                Self {
                    log: log.clone(),
                    records: log,
                    seals: Arc::new(seals),
                    redis: None,
                }
            }
            // Each replica remembers seals and asks the deployment's memory in Redis.
            Storage::Redis { url, prefix } => {
                let log = RedisLog::open(url, prefix, &app_ids[0], retention).await?;
                Self {
                    log: log.clone(),
                    redis: Some((log, url.clone())),
                    records: RedisRecords::open(url, prefix).await?,
                    seals: Arc::new(
                        SealBook::new(seal_keep, max_seals, None)
                            .expect("no store to read")
                            .with_shared(RedisSeals::open(url, prefix).await?),
                    ),
                }
            }
            Storage::Memory => Self {
                log: MemoryLog::new(retention),
                records: Arc::new(NoRecords),
                seals: Arc::new(
                    SealBook::new(seal_keep, max_seals, None).expect("no store to read"),
                ),
                redis: None,
            },
        })
    }
}

/// The kinds of push the service emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// WeChat `subscribe`: the user followed (with a scene: through a QR code).
    Subscribe,
    /// WeChat `SCAN`: a follower scanned a QR code.
    Scan,
    /// WeChat `unsubscribe`.
    Unsubscribe,
}

/// One user event, as WeChat pushed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The user's OpenID (`FromUserName`).
    pub openid: String,
    /// The scanned code's scene without the `qrscene_` prefix; empty when none.
    pub scene: String,
    /// The scanned code's ticket; empty when none.
    pub ticket: String,
    /// The account's original ID (`ToUserName`).
    pub account: String,
    /// The AppID of the account whose webhook received the push.
    pub app_id: String,
    /// WeChat's `CreateTime`, Unix seconds.
    pub create_time: u64,
    /// When the webhook accepted the push.
    pub received_time: SystemTime,
    /// True for a `subscribe`: the user has just followed.
    pub new_follower: bool,
}

impl Event {
    /// Bytes this event counts for against `WECHAT_QR_RETAIN_BYTES` in memory: its text
    /// plus a fixed overhead for the rest (the durable log counts its encoded size).
    pub fn stored_size(&self) -> u64 {
        (self.openid.len()
            + self.scene.len()
            + self.ticket.len()
            + self.account.len()
            + self.app_id.len()
            + 64) as u64
    }
}

/// What makes two pushes the same push re-sent: WeChat events carry no MsgId, so
/// `FromUserName` + `CreateTime` + `Event` + `EventKey` (see the API notes, §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey(Box<str>);

impl DedupKey {
    /// The key of a push with these fields.
    pub fn new(openid: &str, create_time: u64, event: &str, event_key: &str) -> Self {
        // A separator that cannot occur in XML text keeps field boundaries unambiguous.
        // `CreateTime` first, fixed width: keys then sort roughly by arrival, so the
        // durable store's de-duplication B-tree grows at its end and retention trims its
        // start, instead of touching a random page per push (3.4–4.6x the ingest, see
        // bench/engines/RESULTS.md).
        Self(format!("{create_time:020}\u{0}{openid}\u{0}{event}\u{0}{event_key}").into_boxed_str())
    }

    /// The key of this push received for the account `app_id`: the same push at two
    /// accounts' webhooks is two events. The AppID goes last, so keys still sort by time.
    pub fn for_account(self, app_id: &str) -> Self {
        Self(format!("{}\u{0}{app_id}", self.0).into_boxed_str())
    }

    /// The key as the durable log stored it.
    pub(super) fn from_stored(key: &str) -> Self {
        Self(key.into())
    }

    /// The key as text, as the durable log stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
