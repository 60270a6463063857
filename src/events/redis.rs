//! The shared event log on Redis (`WECHAT_QR_REDIS_URL`): every replica behind a load
//! balancer appends to and reads from one Redis Stream, so a push received by any
//! replica reaches the subscribers of every replica, once, in one order.
//!
//! Layout (every key of the log shares one hash tag, so a Redis Cluster keeps them in one
//! slot and one script can touch them all):
//!
//! - `{<prefix>events}:stream` — the stream. An event's entry id is `<seq>-0`: the
//!   cursor's offset *is* the entry id, so a cursor from replica A reads the same entries
//!   on replica B with one `XRANGE`.
//! - `{<prefix>events}:seq` — the last offset handed out (`INCR`).
//! - `{<prefix>events}:epoch` — the cursors' epoch. Created once; if Redis loses its data
//!   (restarted without persistence, flushed) the key is gone, the next script draws a new
//!   epoch and starts the stream over, and every older cursor is recognised as lost
//!   (`OUT_OF_RANGE`) instead of silently skipping or repeating events.
//! - `{<prefix>events}:dedup:<key>` — one key per retained push (the key names the
//!   account: CreateTime, OpenID, event, EventKey and AppID), holding the
//!   offset the push became; deleted with its event when retention drops it (and
//!   expiring with the age retention as a safety net).
//!
//! One Lua script checks the de-duplication key, draws the offset, `XADD`s and sets the
//! key: Redis runs it atomically, so no crash (of a replica, or of Redis with append-only
//! persistence) can keep the event without its key or the key without its event.
//!
//! Waiting: each replica runs one `XREAD BLOCK` loop on a connection of its own and wakes
//! its local waiters (the fan-out hub and the statistics follower) through a watch; no
//! subscriber ever costs Redis a connection or a call of its own. A subscriber resuming
//! far behind reads with ranged `XRANGE`s.
//!
//! Redis unreachable: appends fail (the webhook answers 5xx, WeChat retries), the log
//! reports itself not writable (health NOT_SERVING) and wakes its waiters, so the hub's
//! read fails and every stream ends `UNAVAILABLE` with its cursor. All of it turns back
//! once a call succeeds again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{Script, aio::ConnectionManager};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    Appended, Claim, Cursor, DedupKey, Entry, EventLog, LogError, OpenError, Records,
    durable::Stored,
};
use crate::{config::Retention, secret::Secret};

/// How long one blocking read waits before it checks the head again.
const BLOCK: Duration = Duration::from_secs(2);
/// How long a command may take before it counts as failed (Redis unreachable).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause of the read loop after a failed call; each failure wakes the waiters again.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// How long a claim on a record (a permanent scene being minted) is held at most.
const CLAIM_TTL: Duration = Duration::from_secs(30);

/// The URL with its password replaced, for log lines and errors.
pub fn redact(url: &Secret) -> String {
    match url::Url::parse(url.expose()) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(an unparsable Redis URL)".to_owned(),
    }
}

/// A reconnecting connection to `url`; `response_timeout` bounds each call.
pub async fn connect(
    url: &Secret,
    response_timeout: Duration,
) -> Result<ConnectionManager, OpenError> {
    let failed = |reason: String| OpenError::Redis {
        url: redact(url),
        reason,
    };
    let client = redis::Client::open(url.expose()).map_err(|e| failed(e.to_string()))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| failed(e.to_string()))
}

fn unavailable(e: redis::RedisError) -> LogError {
    LogError::Unavailable(format!("redis: {e}"))
}

fn unix_millis(time: SystemTime) -> u64 {
    u64::try_from(
        time.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// Lua shared by every script: the epoch, drawn from `ARGV[1]` if Redis has none (then
/// whatever offset counter or stream is left belongs to a lost epoch and goes).
const ENSURE_EPOCH: &str = r"
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[3], epoch)
  redis.call('DEL', KEYS[1], KEYS[2])
end
";

/// KEYS: stream, seq, epoch, dedup, bytes. ARGV: epoch candidate, payload, dedup ttl ms,
/// max events, now ms, oldest ms kept, max bytes. Returns {is_new, epoch, seq}.
///
/// Retention is done here rather than with `XADD MAXLEN`, so the de-duplication key of
/// each event dropped goes with it, as in the other logs (their TTL is only a safety net):
/// Redis's memory stays bounded by the retained events, not by a day of pushes. Those keys
/// are not in `KEYS`; they share the stream's hash tag, so they are in its slot.
const APPEND: &str = r"
local seen = redis.call('GET', KEYS[4])
if seen then
  return {0, epoch, tonumber(seen)}
end
local seq = redis.call('INCR', KEYS[2])
-- The stored bytes of the retained events: zero whenever the stream is (a lost or new
-- stream leaves no stale count behind).
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('SET', KEYS[5], 0) end
redis.call('XADD', KEYS[1], seq .. '-0', 'e', ARGV[2], 't', ARGV[5], 'k', KEYS[4])
redis.call('INCRBY', KEYS[5], #ARGV[2])
redis.call('SET', KEYS[4], seq, 'PX', ARGV[3])
local function drop_oldest(oldest)
  local id, fields = oldest[1], oldest[2]
  redis.call('XDEL', KEYS[1], id)
  redis.call('DECRBY', KEYS[5], #fields[2])
  local key = fields[6]
  if key and redis.call('GET', key) == string.match(id, '^(%d+)') then
    redis.call('DEL', key)
  end
end
local max = tonumber(ARGV[4])
while redis.call('XLEN', KEYS[1]) > max do
  drop_oldest(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1])
end
-- Byte retention (WECHAT_QR_RETAIN_BYTES, counted as stored); the newest event stays.
local max_bytes = tonumber(ARGV[7])
while tonumber(redis.call('GET', KEYS[5]) or '0') > max_bytes and redis.call('XLEN', KEYS[1]) > 1 do
  drop_oldest(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1])
end
-- Age retention: a bounded amount per append (the next appends take the rest).
local cutoff = tonumber(ARGV[6])
for _ = 1, 16 do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #oldest == 0 or tonumber(oldest[1][2][4]) >= cutoff then break end
  drop_oldest(oldest[1])
end
return {1, epoch, seq}
";

/// KEYS: stream, seq, epoch. ARGV: epoch candidate, after, max. Returns {epoch, last,
/// first, offsets, payloads}; entries only when `after` is within [first - 1, last].
const READ: &str = r"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = last + 1
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #oldest > 0 then first = tonumber(string.match(oldest[1][1], '^(%d+)')) end
local after = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local seqs, payloads = {}, {}
if max > 0 and after >= first - 1 and after < last then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', '+', 'COUNT', max)) do
    seqs[#seqs + 1] = tonumber(string.match(entry[1], '^(%d+)'))
    payloads[#payloads + 1] = entry[2][2]
  end
end
return {epoch, last, first, seqs, payloads}
";

/// What `READ` answers: epoch, last offset, first offset, offsets, payloads.
type ReadReply = (u32, u64, u64, Vec<u64>, Vec<Vec<u8>>);

/// Keys of one deployment's log.
#[derive(Debug, Clone)]
struct Keys {
    stream: String,
    seq: String,
    epoch: String,
    /// Prefix of the de-duplication keys (each key names its account).
    dedup: String,
    /// The stored bytes of the retained events (`WECHAT_QR_RETAIN_BYTES`).
    bytes: String,
}

/// What the read loop tells local waiters.
#[derive(Debug, Clone, Copy, Default)]
struct Signal {
    epoch: u32,
    /// The newest offset known.
    seq: u64,
    /// Failed Redis calls so far: a change wakes every waiter, so it reads and meets the
    /// failure itself.
    failures: u64,
}

/// The [`EventLog`] on Redis Streams.
pub struct RedisLog {
    keys: Keys,
    /// The deployment's first account: the AppID of an event stored without one.
    owner: String,
    retention: Retention,
    /// Commands (multiplexed; never a blocking one).
    conn: ConnectionManager,
    append: Script,
    read: Script,
    /// The epoch Redis holds, as last seen; for cursors handed out without a round trip.
    epoch: AtomicU32,
    signal: watch::Sender<Signal>,
    writable: watch::Sender<bool>,
    /// Stops the read loop at `close`.
    stop: CancellationToken,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("stream", &self.keys.stream)
            .finish_non_exhaustive()
    }
}

impl RedisLog {
    /// Connects, makes sure the log has an epoch, and starts the replica's read loop.
    pub async fn open(
        url: &Secret,
        prefix: &str,
        app_id: &str,
        retention: Retention,
    ) -> Result<Arc<Self>, OpenError> {
        let tag = format!("{{{prefix}events}}");
        let keys = Keys {
            stream: format!("{tag}:stream"),
            seq: format!("{tag}:seq"),
            epoch: format!("{tag}:epoch"),
            // De-duplication keys carry their account's AppID themselves.
            dedup: format!("{tag}:dedup:"),
            bytes: format!("{tag}:bytes"),
        };
        let conn = connect(url, RESPONSE_TIMEOUT).await?;
        // Blocking reads get a connection of their own: on the shared one they would
        // hold up every other command for the length of the block.
        let blocking = connect(url, BLOCK + RESPONSE_TIMEOUT).await?;
        let log = Arc::new(Self {
            owner: app_id.to_owned(),
            keys,
            retention,
            conn,
            append: Script::new(&format!("{ENSURE_EPOCH}{APPEND}")),
            read: Script::new(&format!("{ENSURE_EPOCH}{READ}")),
            epoch: AtomicU32::new(0),
            signal: watch::Sender::new(Signal::default()),
            writable: watch::Sender::new(true),
            stop: CancellationToken::new(),
        });
        let head = log.head().await.map_err(|e| OpenError::Redis {
            url: redact(url),
            reason: e.to_string(),
        })?;
        tracing::info!(
            redis = %redact(url),
            stream = %log.keys.stream,
            epoch = head.epoch,
            head = head.seq,
            "event log on Redis"
        );
        tokio::spawn(read_loop(Arc::downgrade(&log), blocking));
        Ok(log)
    }

    fn succeeded(&self) {
        self.writable
            .send_if_modified(|w| !std::mem::replace(w, true));
    }

    fn failed(&self, e: &redis::RedisError) {
        if self
            .writable
            .send_if_modified(|w| std::mem::replace(w, false))
        {
            tracing::warn!(error = %e, "Redis unreachable: the event log is not writable");
        }
        self.signal.send_modify(|s| s.failures += 1);
    }

    /// Publishes a newer head to the local waiters.
    fn advance(&self, epoch: u32, seq: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
        self.signal.send_if_modified(|s| {
            if s.epoch != epoch || seq > s.seq {
                s.epoch = epoch;
                s.seq = seq;
                true
            } else {
                false
            }
        });
    }

    /// Runs `READ`: (epoch, last, first, entries).
    async fn read_raw(
        &self,
        after: u64,
        max: usize,
    ) -> Result<(u32, u64, u64, Vec<Entry>), LogError> {
        let mut conn = self.conn.clone();
        let reply: Result<ReadReply, _> = self
            .read
            .key(&self.keys.stream)
            .key(&self.keys.seq)
            .key(&self.keys.epoch)
            .arg(rand::random::<u32>())
            .arg(after)
            // Lua numbers are doubles: a count past 2^53 would not survive the trip.
            .arg(max.min(1 << 32))
            .invoke_async(&mut conn)
            .await;
        let (epoch, last, first, seqs, payloads) = reply.map_err(|e| {
            self.failed(&e);
            unavailable(e)
        })?;
        self.succeeded();
        self.advance(epoch, last);
        let entries = seqs
            .into_iter()
            .zip(payloads)
            .map(|(seq, payload)| {
                Ok(Entry {
                    cursor: Cursor { epoch, seq },
                    event: Arc::new(Stored::decode(&payload)?.into_event(&self.owner)),
                })
            })
            .collect::<Result<_, LogError>>()?;
        Ok((epoch, last, first, entries))
    }
}

/// What consumer groups on Redis (`groups/redis.rs`) need of the log: they read the same
/// stream with `XREADGROUP` and decode its entries here.
impl RedisLog {
    /// The stream's key; the groups' keys share its hash tag.
    pub(crate) fn stream_key(&self) -> &str {
        &self.keys.stream
    }

    /// The command connection.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The entry of the stream record `id` (`<seq>-0`) with the payload `payload`.
    pub(crate) fn entry_of(&self, id: &str, payload: &[u8]) -> Result<Entry, LogError> {
        let seq = id
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LogError::Unavailable(format!("redis: stream id {id:?}")))?;
        Ok(Entry {
            cursor: Cursor {
                epoch: self.epoch.load(Ordering::Relaxed),
                seq,
            },
            event: Arc::new(Stored::decode(payload)?.into_event(&self.owner)),
        })
    }
}

/// The replica's one blocking reader: wakes local waiters when the stream grows, and
/// rechecks the head every [`BLOCK`] (a new epoch restarts offsets below the last seen).
async fn read_loop(log: std::sync::Weak<RedisLog>, mut blocking: ConnectionManager) {
    loop {
        let (stream, from, stop) = {
            let Some(log) = log.upgrade() else { return };
            let from = log.signal.borrow().seq;
            (log.keys.stream.clone(), from, log.stop.clone())
        };
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(format!("{from}-0"));
        let read = xread.query_async::<Option<redis::streams::StreamReadReply>>(&mut blocking);
        let result = tokio::select! {
            result = read => result,
            () = stop.cancelled() => return,
        };
        let Some(log) = log.upgrade() else { return };
        let newer = |reply: &redis::streams::StreamReadReply| {
            let id = &reply.keys.first()?.ids.first()?.id;
            id.split('-').next()?.parse::<u64>().ok()
        };
        match result {
            // A new entry: its offset wakes the waiters at once, whose reads then learn
            // the rest (and move the next XREAD up to the head).
            Ok(Some(reply)) if newer(&reply).is_some() => {
                log.succeeded();
                let epoch = log.epoch.load(Ordering::Relaxed);
                log.advance(epoch, newer(&reply).unwrap_or_default());
            }
            // A quiet stream: check the head, which also notices a new epoch.
            Ok(_) => {
                let _ = log.head().await;
            }
            Err(e) => {
                log.failed(&e);
                drop(log);
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl EventLog for RedisLog {
    async fn append(&self, event: super::Event, key: DedupKey) -> Result<Appended, LogError> {
        let now = unix_millis(SystemTime::now());
        let payload = serde_json::to_vec(&Stored::new(&event, &key)).expect("events encode");
        let age = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        let reply: Result<(u8, u32, u64), _> = self
            .append
            .key(&self.keys.stream)
            .key(&self.keys.seq)
            .key(&self.keys.epoch)
            .key(format!("{}{}", self.keys.dedup, key.as_str()))
            .key(&self.keys.bytes)
            .arg(rand::random::<u32>())
            .arg(payload)
            .arg(age.max(1))
            .arg(self.retention.max_events)
            .arg(now)
            .arg(now.saturating_sub(age))
            .arg(self.retention.max_bytes)
            .invoke_async(&mut conn)
            .await;
        let (new, epoch, seq) = reply.map_err(|e| {
            self.failed(&e);
            unavailable(e)
        })?;
        self.succeeded();
        let cursor = Cursor { epoch, seq };
        if new == 1 {
            self.advance(epoch, seq);
            Ok(Appended::New(cursor))
        } else {
            Ok(Appended::Duplicate(cursor))
        }
    }

    async fn read_after(&self, after: Cursor, max: usize) -> Result<Vec<Entry>, LogError> {
        // Lua numbers are doubles: a cursor beyond 2^53 is no offset this log issued.
        let asked = after.seq.min(1 << 53);
        let (epoch, last, first, entries) = self.read_raw(asked, max).await?;
        if after.epoch != epoch || after.seq < first - 1 || after.seq > last {
            return Err(LogError::OutOfRange {
                requested: after,
                oldest: (first <= last).then_some(Cursor { epoch, seq: first }),
                resume_from: Cursor {
                    epoch,
                    seq: first - 1,
                },
            });
        }
        Ok(entries)
    }

    async fn head(&self) -> Result<Cursor, LogError> {
        let (epoch, last, _, _) = self.read_raw(0, 0).await?;
        Ok(Cursor { epoch, seq: last })
    }

    async fn wait_after(&self, after: Cursor) {
        let mut signal = self.signal.subscribe();
        let failures = signal.borrow().failures;
        // Wakes for an event past `after`, for a failure, or when Redis holds another
        // epoch than `after`'s (it lost its data): the caller's next read meets the
        // failure, or answers OUT_OF_RANGE with where to resume.
        let _ = signal
            .wait_for(|s| s.epoch != after.epoch || s.seq > after.seq || s.failures != failures)
            .await;
    }

    fn writable(&self) -> watch::Receiver<bool> {
        self.writable.subscribe()
    }

    async fn close(&self) {
        self.stop.cancel();
    }
}

/// Records (permanent scenes) on Redis: one hash, `{<prefix>records}:all`, and short-lived
/// claim keys beside it, so two replicas minting the same scene at once spend one code.
pub struct RedisRecords {
    hash: String,
    claims: String,
    conn: ConnectionManager,
    release: Script,
}

impl std::fmt::Debug for RedisRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRecords")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Deletes `KEYS[1]` only if it still holds `ARGV[1]`: a holder whose claim expired
/// cannot release the next holder's.
pub const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

impl RedisRecords {
    /// Records under `prefix` on `url`.
    pub async fn open(url: &Secret, prefix: &str) -> Result<Arc<Self>, OpenError> {
        let tag = format!("{{{prefix}records}}");
        Ok(Arc::new(Self {
            hash: format!("{tag}:all"),
            claims: format!("{tag}:claim:"),
            conn: connect(url, RESPONSE_TIMEOUT).await?,
            release: Script::new(COMPARE_AND_DELETE),
        }))
    }
}

#[async_trait::async_trait]
impl Records for RedisRecords {
    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        let mut conn = self.conn.clone();
        let mut all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&self.hash)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LogError> {
        let mut conn = self.conn.clone();
        redis::cmd("HGET")
            .arg(&self.hash)
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn put(&self, key: String, value: Vec<u8>) -> Result<(), LogError> {
        let mut conn = self.conn.clone();
        redis::cmd("HSET")
            .arg(&self.hash)
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn claim(&self, key: &str) -> Result<Option<Claim>, LogError> {
        let claim_key = format!("{}{key}", self.claims);
        let holder = format!("{:032x}", rand::random::<u128>());
        let mut conn = self.conn.clone();
        let deadline = tokio::time::Instant::now() + CLAIM_TTL;
        loop {
            let taken: Option<String> = redis::cmd("SET")
                .arg(&claim_key)
                .arg(&holder)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if taken.is_some() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LogError::Unavailable(format!(
                    "another replica has held the claim on {key} for {CLAIM_TTL:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let release = self.release.clone();
        let mut conn = self.conn.clone();
        Ok(Some(Claim::new(move || {
            tokio::spawn(async move {
                let released: Result<i64, _> = release
                    .key(&claim_key)
                    .arg(&holder)
                    .invoke_async(&mut conn)
                    .await;
                if let Err(e) = released {
                    tracing::warn!(error = %e, "cannot release a claim; it expires by itself");
                }
            });
        })))
    }
}

/// KEYS: the seal. ARGV: its value, ms to keep. Returns the value already there, or sets
/// this one and returns nothing: one step, so two replicas cannot both find a pair new.
const REMEMBER_SEAL: &str = r"
local before = redis.call('GET', KEYS[1])
if before then return before end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// The webhook's replay guard shared by every replica (`{<prefix>seals}:<timestamp>:<nonce>`,
/// each expiring when its query leaves the replay window): a captured plaintext query
/// replayed with a forged body to another replica is refused as on the first.
pub struct RedisSeals {
    prefix: String,
    conn: ConnectionManager,
    remember: Script,
}

impl std::fmt::Debug for RedisSeals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSeals")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSeals {
    /// Seals under `prefix` on `url`.
    pub async fn open(url: &Secret, prefix: &str) -> Result<Arc<Self>, OpenError> {
        Ok(Arc::new(Self {
            prefix: format!("{{{prefix}seals}}:"),
            conn: connect(url, RESPONSE_TIMEOUT).await?,
            remember: Script::new(REMEMBER_SEAL),
        }))
    }
}

#[async_trait::async_trait]
impl super::SharedSeals for RedisSeals {
    async fn remember(
        &self,
        seal: &super::Seal,
        keep: Duration,
    ) -> Result<Option<([u8; 32], super::SealKind)>, LogError> {
        let (key, value) = super::seals::encode(seal);
        let until = Duration::from_secs(seal.timestamp) + keep;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ttl = until.saturating_sub(now).max(Duration::from_secs(1));
        let mut conn = self.conn.clone();
        let before: Option<Vec<u8>> = self
            .remember
            .key([self.prefix.as_bytes(), &key].concat())
            .arg(value)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(before.and_then(|value| {
            super::seals::decode(&key, &value).map(|seal| (seal.digest, seal.kind))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_is_shown_without_its_password() {
        let url = Secret::new("rediss://user:hunter2@redis.internal:6380/0");
        assert_eq!(redact(&url), "rediss://user:***@redis.internal:6380/0");
        let bare = Secret::new("redis://127.0.0.1:6379");
        assert_eq!(redact(&bare), "redis://127.0.0.1:6379");
        assert!(!redact(&Secret::new("not a url hunter2")).contains("hunter2"));
    }
}
