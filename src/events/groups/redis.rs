//! Consumer groups on Redis: each group is a Redis Streams consumer group on the stream
//! the Redis log already writes, so members connected to different replicas share one
//! group and one pending list, and a dead replica's pending events reach the survivors.
//!
//! The mapping: a member reads new entries with `XREADGROUP ... >` (entries its filter
//! does not match are `XACK`ed at once); an acknowledgement is `XACK`; an event not
//! acknowledged within the ack deadline is taken over by any member with `XAUTOCLAIM`
//! (min-idle = the deadline), which also counts its deliveries; an extension is an
//! `XCLAIM ... JUSTID` to the holder (its idle time restarts); a nack, or a member leaving,
//! sets the entries' idle time past the deadline so the next `XAUTOCLAIM` takes them.
//! Lag and pending come from `XINFO GROUPS`, members from `XINFO CONSUMERS` (a consumer
//! counts as a member while it holds events or was active in the last 10 s, so a member
//! that went away stays listed up to 10 s: Redis keeps no connection state).
//! A dead letter is acknowledged and recorded aside; a replay puts it back in the pending
//! list with `XCLAIM ... RETRYCOUNT 0 FORCE`, idle past the deadline, so the next
//! `XAUTOCLAIM` of any member delivers it afresh (the entry must still be retained).
//!
//! Beside the stream (same hash tag): `:groups`, a hash of each group's settings (the
//! registry: a group is created by one script that counts the account's entries against
//! the cap and adds the new one, so the cap holds for the whole deployment),
//! `:redeliveries`, a hash of each group's redelivery count (`XAUTOCLAIM`s of entries
//! delivered before, counted by every replica), and `:dead:<account>/<name>`, a hash of
//! its dead letters (entry id → deliveries and time).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use redis::{
    Script, Value,
    aio::ConnectionManager,
    streams::{
        StreamAutoClaimReply, StreamInfoConsumersReply, StreamInfoGroupsReply,
        StreamPendingCountReply, StreamReadReply,
    },
};
use tokio_util::sync::CancellationToken;

use super::{
    DeadLetter, GroupDelivery, GroupError, GroupSpec, GroupStatus, MemberEvent, MemberInfo, Start,
    now_ms,
};
use crate::{
    events::{Cursor, EventLog, Filter, LogError, RedisLog},
    metrics::Metrics,
};

/// How long one blocking `XREADGROUP` waits, so expired events are claimed this often.
const BLOCK: Duration = Duration::from_millis(200);
/// Idle time a released entry gets: far past any deadline.
const RELEASED_IDLE_MS: u64 = 1 << 40;
/// A consumer idle this long (and holding nothing) is not listed as a member.
const MEMBER_IDLE: Duration = Duration::from_secs(10);
/// The consumer replayed dead letters are parked on until a member claims them: never a
/// member's name (those are `<replica>.<n>.<name>`), so never listed.
const REPLAY_CONSUMER: &str = "replayed";

/// KEYS: the registry. ARGV: the group's key (`<account>/<name>`), its settings, the
/// account's key prefix (`<account>/`), the cap. Returns 0 if the group exists, -1 if the
/// account has its cap of groups, else adds it and returns 1: one step, so replicas
/// creating at once cannot pass the cap together. Names hold no `/`, so a key with one
/// past the prefix belongs to another account.
const REGISTER: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local prefix = ARGV[3]
local held = 0
for _, key in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(key, 1, #prefix) == prefix and not string.find(key, '/', #prefix + 1, true) then
    held = held + 1
  end
end
if held >= tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

fn failed(e: redis::RedisError) -> GroupError {
    GroupError::Log(LogError::Unavailable(format!("redis: {e}")))
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

fn id_of(cursor: Cursor) -> String {
    format!("{}-0", cursor.seq)
}

/// The groups of one deployment on Redis.
#[derive(Debug)]
pub(super) struct RedisGroups {
    log: Arc<RedisLog>,
    conn: ConnectionManager,
    url: crate::secret::Secret,
    registry: String,
    redeliveries: String,
    dead_prefix: String,
    /// Names this replica's consumers, so two replicas' members never share a name.
    replica: String,
    /// Groups one account may have, counted in the registry.
    max_per_account: usize,
    /// [`REGISTER`]: the cap's check and the new group's entry in one step.
    register: Script,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl RedisGroups {
    pub(super) fn new(
        log: Arc<RedisLog>,
        url: crate::secret::Secret,
        max_per_account: usize,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        let stream = log.stream_key().to_owned();
        let tag = stream.trim_end_matches(":stream");
        Self {
            conn: log.connection(),
            registry: format!("{tag}:groups"),
            redeliveries: format!("{tag}:redeliveries"),
            dead_prefix: format!("{tag}:dead:"),
            replica: format!("{:08x}", rand::random::<u32>()),
            max_per_account,
            register: Script::new(REGISTER),
            log,
            url,
            metrics,
            shutdown,
        }
    }

    fn stream(&self) -> &str {
        self.log.stream_key()
    }

    async fn spec(&self, account: &str, name: &str) -> Result<GroupSpec, GroupError> {
        let mut conn = self.conn.clone();
        let key = format!("{account}/{name}");
        let raw: Option<String> = redis::cmd("HGET")
            .arg(&self.registry)
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        raw.and_then(|r| serde_json::from_str(&r).ok())
            .ok_or_else(|| GroupError::NotFound {
                account: account.to_owned(),
                name: name.to_owned(),
            })
    }

    pub(super) async fn create(
        &self,
        spec: GroupSpec,
        start: Start,
        oldest: Cursor,
    ) -> Result<Cursor, GroupError> {
        let head = self.log.head().await?;
        let position = match start {
            Start::Now => head,
            Start::Oldest => oldest,
            Start::After(cursor) => {
                self.log.read_after(cursor, 0).await?;
                cursor
            }
        };
        let key = spec.key();
        let mut conn = self.conn.clone();
        let registered: i64 = self
            .register
            .key(&self.registry)
            .arg(&key)
            .arg(serde_json::to_string(&spec).expect("specs encode"))
            .arg(format!("{}/", spec.account))
            .arg(self.max_per_account)
            .invoke_async(&mut conn)
            .await
            .map_err(failed)?;
        match registered {
            0 => {
                return Err(GroupError::AlreadyExists {
                    account: spec.account,
                    name: spec.name,
                });
            }
            -1 => {
                return Err(GroupError::TooMany {
                    account: spec.account,
                    limit: self.max_per_account,
                });
            }
            _ => {}
        }
        let created: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream())
            .arg(&key)
            .arg(id_of(position))
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created {
            // BUSYGROUP: a group left by a deletion that did not finish; start it over.
            if e.code() != Some("BUSYGROUP") {
                return Err(failed(e));
            }
            redis::cmd("XGROUP")
                .arg("SETID")
                .arg(self.stream())
                .arg(&key)
                .arg(id_of(position))
                .query_async::<()>(&mut conn)
                .await
                .map_err(failed)?;
        }
        Ok(position)
    }

    pub(super) async fn delete(&self, account: &str, name: &str) -> Result<(), GroupError> {
        self.spec(account, name).await?;
        let key = format!("{account}/{name}");
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("XGROUP")
            .arg("DESTROY")
            .arg(self.stream())
            .arg(&key)
            .ignore()
            .cmd("HDEL")
            .arg(&self.registry)
            .arg(&key)
            .ignore()
            .cmd("HDEL")
            .arg(&self.redeliveries)
            .arg(&key)
            .ignore()
            .cmd("DEL")
            .arg(format!("{}{key}", self.dead_prefix))
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(failed)
    }

    pub(super) async fn list(
        &self,
        visible: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<GroupStatus>, GroupError> {
        let mut conn = self.conn.clone();
        let specs: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.registry)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let mut specs: Vec<GroupSpec> = specs
            .values()
            .filter_map(|s| serde_json::from_str::<GroupSpec>(s).ok())
            .filter(|s| visible(&s.account))
            .collect();
        specs.sort_by_key(GroupSpec::key);
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let head = self.log.head().await?;
        let redeliveries: HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(&self.redeliveries)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let infos: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(self.stream())
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let key = spec.key();
            let Some(info) = infos.groups.iter().find(|g| g.name == key) else {
                continue;
            };
            let seq = info
                .last_delivered_id
                .split('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let unread = info
                .lag
                .map_or_else(|| head.seq.saturating_sub(seq), |lag| lag as u64);
            let consumers: StreamInfoConsumersReply = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(self.stream())
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            let dead: u64 = redis::cmd("HLEN")
                .arg(format!("{}{key}", self.dead_prefix))
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            let mut members: Vec<MemberInfo> = consumers
                .consumers
                .iter()
                .filter(|c| c.name != REPLAY_CONSUMER)
                .filter(|c| c.pending > 0 || (c.idle as u128) < MEMBER_IDLE.as_millis())
                .map(|c| MemberInfo {
                    // `<replica>.<n>.<name>`: the name the member joined with.
                    name: c.name.splitn(3, '.').nth(2).unwrap_or(&c.name).to_owned(),
                    unacked: u32::try_from(c.pending).unwrap_or(u32::MAX),
                })
                .collect();
            members.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(GroupStatus {
                spec,
                position: Cursor {
                    epoch: head.epoch,
                    seq,
                },
                pending: info.pending as u64,
                lag: info.pending as u64 + unread,
                dead_letters: dead,
                redeliveries: redeliveries.get(&key).copied().unwrap_or(0),
                members,
            });
        }
        Ok(out)
    }

    pub(super) async fn seek(
        &self,
        account: &str,
        name: &str,
        position: Cursor,
    ) -> Result<Cursor, GroupError> {
        self.spec(account, name).await?;
        let key = format!("{account}/{name}");
        let mut conn = self.conn.clone();
        redis::cmd("XGROUP")
            .arg("SETID")
            .arg(self.stream())
            .arg(&key)
            .arg(id_of(position))
            .query_async::<()>(&mut conn)
            .await
            .map_err(failed)?;
        // Pending deliveries are dropped: acknowledged, so no one gets them again.
        loop {
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(self.stream())
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            if pending.ids.is_empty() {
                return Ok(position);
            }
            let mut xack = redis::cmd("XACK");
            xack.arg(self.stream()).arg(&key);
            for p in &pending.ids {
                xack.arg(&p.id);
            }
            xack.query_async::<()>(&mut conn).await.map_err(failed)?;
        }
    }

    /// Acks, extensions and nacks from any caller; the number acknowledged.
    pub(super) async fn ack(
        &self,
        account: &str,
        name: &str,
        acks: &[Cursor],
        extend: &[Cursor],
        extend_by: Option<Duration>,
        nacks: &[Cursor],
    ) -> Result<Vec<Cursor>, GroupError> {
        let spec = self.spec(account, name).await?;
        let key = format!("{account}/{name}");
        let mut conn = self.conn.clone();
        // Whoever holds them keeps them, with their idle time set so the deadline falls
        // `extend_by` from now, or pushed past the deadline.
        let extended_idle = extension_idle_ms(&spec, extend_by);
        for (ids, idle) in [(extend, extended_idle), (nacks, RELEASED_IDLE_MS)] {
            for &cursor in ids {
                let id = id_of(cursor);
                let holder: StreamPendingCountReply = redis::cmd("XPENDING")
                    .arg(self.stream())
                    .arg(&key)
                    .arg(&id)
                    .arg(&id)
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .map_err(failed)?;
                if let Some(p) = holder.ids.first() {
                    claim(&mut conn, self.stream(), &key, &p.consumer, &[cursor], idle).await?;
                }
            }
        }
        xack(&mut conn, self.stream(), &key, acks).await
    }

    pub(super) async fn dead_letters(
        &self,
        account: &str,
        name: &str,
        page_size: usize,
    ) -> Result<(Vec<DeadLetter>, u64), GroupError> {
        self.spec(account, name).await?;
        let mut conn = self.conn.clone();
        let raw: HashMap<u64, String> = redis::cmd("HGETALL")
            .arg(format!("{}{account}/{name}", self.dead_prefix))
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let total = raw.len() as u64;
        let mut seqs: Vec<(u64, (u32, u64))> = raw
            .into_iter()
            .filter_map(|(seq, v)| Some((seq, serde_json::from_str(&v).ok()?)))
            .collect();
        seqs.sort_unstable();
        let head = self.log.head().await?;
        let mut out = Vec::new();
        for (seq, (deliveries, dead_ms)) in seqs.into_iter().take(page_size) {
            let after = Cursor {
                epoch: head.epoch,
                seq: seq - 1,
            };
            if let Ok(entries) = self.log.read_after(after, 1).await
                && let Some(entry) = entries.into_iter().next().filter(|e| e.cursor.seq == seq)
            {
                out.push(DeadLetter {
                    cursor: entry.cursor,
                    event: entry.event,
                    deliveries,
                    dead_ms,
                });
            }
        }
        Ok((out, total))
    }

    /// Puts dead letters (all when `cursors` is empty) back in the pending list with no
    /// deliveries, idle past the deadline: the next `XAUTOCLAIM` of any member takes them.
    /// Entries trimmed from the stream since are dropped from the list, not replayed.
    pub(super) async fn replay(
        &self,
        account: &str,
        name: &str,
        cursors: &[Cursor],
    ) -> Result<u32, GroupError> {
        self.spec(account, name).await?;
        let key = format!("{account}/{name}");
        let dead_key = format!("{}{key}", self.dead_prefix);
        let mut conn = self.conn.clone();
        let dead: Vec<u64> = redis::cmd("HKEYS")
            .arg(&dead_key)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let chosen: Vec<u64> = if cursors.is_empty() {
            dead
        } else {
            cursors
                .iter()
                .map(|c| c.seq)
                .filter(|seq| dead.contains(seq))
                .collect()
        };
        if chosen.is_empty() {
            return Ok(0);
        }
        let mut xclaim = redis::cmd("XCLAIM");
        xclaim
            .arg(self.stream())
            .arg(&key)
            .arg(REPLAY_CONSUMER)
            .arg(0);
        for seq in &chosen {
            xclaim.arg(format!("{seq}-0"));
        }
        xclaim
            .arg("IDLE")
            .arg(RELEASED_IDLE_MS)
            .arg("RETRYCOUNT")
            .arg(0)
            .arg("FORCE")
            .arg("JUSTID");
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&dead_key);
        for seq in &chosen {
            hdel.arg(seq);
        }
        // Pending first, then out of the list: a crash between leaves it in both, and a
        // second replay is harmless (FORCE on a pending entry only moves it).
        let claimed: Vec<String> = xclaim.query_async(&mut conn).await.map_err(failed)?;
        hdel.query_async::<u64>(&mut conn).await.map_err(failed)?;
        Ok(u32::try_from(claimed.len()).unwrap_or(u32::MAX))
    }

    pub(super) async fn join(
        self: &Arc<Self>,
        account: &str,
        name: &str,
        member: String,
        serial: u64,
    ) -> Result<RedisMember, GroupError> {
        let spec = self.spec(account, name).await?;
        // Blocking reads need a connection of their own.
        let blocking = crate::events::connect_redis(&self.url, BLOCK + Duration::from_secs(2))
            .await
            .map_err(|e| GroupError::Log(LogError::Unavailable(e.to_string())))?;
        let consumer = format!("{}.{serial}.{member}", self.replica);
        Ok(RedisMember {
            groups: self.clone(),
            key: spec.key(),
            consumer: consumer.clone(),
            held: HashMap::new(),
            reader: Some(Reader {
                groups: self.clone(),
                filter: spec.filter(),
                key: spec.key(),
                consumer,
                spec: spec.clone(),
                blocking,
                claim_from: "0-0".to_owned(),
            }),
            reading: None,
            spec,
        })
    }
}

/// The idle time that puts an entry's deadline `extend_by` from now. Redis measures a
/// deadline as idle time reaching the group's deadline and cannot set an idle time below
/// zero, so an extension longer than the group's deadline restarts the deadline instead.
fn extension_idle_ms(spec: &GroupSpec, extend_by: Option<Duration>) -> u64 {
    let deadline_ms = u64::from(spec.ack_deadline_seconds) * 1000;
    let by_ms = extend_by.map_or(deadline_ms, |by| by.as_millis() as u64);
    deadline_ms.saturating_sub(by_ms)
}

async fn xack(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    ids: &[Cursor],
) -> Result<Vec<Cursor>, GroupError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("XACK");
    cmd.arg(stream).arg(group);
    for &cursor in ids {
        cmd.arg(id_of(cursor));
    }
    cmd.query_async::<u64>(conn).await.map_err(failed)?;
    Ok(ids.to_vec())
}

/// `XCLAIM` of `ids` to `consumer` with idle time `idle`, keeping their delivery count.
async fn claim(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    consumer: &str,
    ids: &[Cursor],
    idle: u64,
) -> Result<(), GroupError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(stream).arg(group).arg(consumer).arg(0);
    for &cursor in ids {
        cmd.arg(id_of(cursor));
    }
    cmd.arg("IDLE").arg(idle).arg("JUSTID");
    cmd.query_async::<Value>(conn).await.map_err(failed)?;
    Ok(())
}

/// A member of a group on Redis: a consumer of the Redis group.
#[derive(Debug)]
pub(super) struct RedisMember {
    groups: Arc<RedisGroups>,
    spec: GroupSpec,
    key: String,
    consumer: String,
    /// Events this member holds, with their local deadline (after which another
    /// member may have claimed them).
    held: HashMap<Cursor, Instant>,
    /// What reads Redis for this member: here between reads, inside `reading` during one.
    reader: Option<Reader>,
    /// The read under way. It runs as a task of its own so that a caller that stops
    /// waiting (the gRPC loop selects between deliveries and incoming acks) loses nothing:
    /// entries Redis handed this consumer are delivered by the next call.
    reading: Option<tokio::task::JoinHandle<(Reader, ReadResult)>>,
}

/// An entry Redis handed this consumer: its cursor, event and delivery count.
type Fetched = (Cursor, Arc<crate::events::Event>, u32);
/// What one read brought.
type ReadResult = Result<Vec<Fetched>, redis::RedisError>;

/// The Redis side of a member's reads: it owns the blocking connection and where the
/// next `XAUTOCLAIM` scan continues.
#[derive(Debug)]
struct Reader {
    groups: Arc<RedisGroups>,
    spec: GroupSpec,
    filter: Filter,
    key: String,
    consumer: String,
    blocking: ConnectionManager,
    claim_from: String,
}

impl RedisMember {
    pub(super) fn spec(&self) -> &GroupSpec {
        &self.spec
    }

    fn room(&mut self) -> usize {
        let now = Instant::now();
        self.held.retain(|_, deadline| *deadline > now);
        (self.spec.max_unacked_per_member as usize).saturating_sub(self.held.len())
    }

    pub(super) async fn next(&mut self) -> Result<MemberEvent, GroupError> {
        loop {
            if self.reading.is_none() {
                if self.groups.shutdown.is_cancelled() {
                    return Ok(MemberEvent::ShuttingDown);
                }
                let room = self.room();
                if room == 0 {
                    tokio::select! {
                        () = tokio::time::sleep(BLOCK) => continue,
                        () = self.groups.shutdown.cancelled() => return Ok(MemberEvent::ShuttingDown),
                    }
                }
                let reader = self.reader.take().expect("a reader between reads");
                self.reading = Some(tokio::spawn(reader.read(room)));
            }
            // Awaiting the handle by reference: dropping this future leaves the task running.
            let handle = self.reading.as_mut().expect("a read under way");
            let joined = handle.await;
            self.reading = None;
            let (reader, read) = match joined {
                Ok(done) => done,
                Err(e) => {
                    return Err(GroupError::Log(LogError::Unavailable(format!(
                        "redis read task: {e}"
                    ))));
                }
            };
            self.reader = Some(reader);
            match read {
                Ok(fetched) if !fetched.is_empty() => {
                    let deliveries = fetched
                        .into_iter()
                        .map(|(cursor, event, deliveries)| self.deliver(cursor, event, deliveries))
                        .collect();
                    return Ok(MemberEvent::Deliveries(deliveries));
                }
                Ok(_) => {}
                Err(e) if is_nogroup(&e) => return Ok(MemberEvent::Deleted),
                Err(e) => return Err(failed(e)),
            }
        }
    }

    fn deliver(
        &mut self,
        cursor: Cursor,
        event: Arc<crate::events::Event>,
        deliveries: u32,
    ) -> GroupDelivery {
        let deadline = Duration::from_secs(u64::from(self.spec.ack_deadline_seconds));
        self.held.insert(cursor, Instant::now() + deadline);
        GroupDelivery {
            cursor,
            event,
            deliveries,
            deadline: SystemTime::now() + deadline,
        }
    }

    /// Applies acks, extensions (`extend_by`, at most the group's deadline: see
    /// [`extension_idle_ms`]) and nacks; the future sends them.
    pub(super) fn ack_commands(
        &mut self,
        acks: &[Cursor],
        extend: &[Cursor],
        extend_by: Option<Duration>,
        nacks: &[Cursor],
    ) -> impl Future<Output = Result<Vec<Cursor>, GroupError>> + Send + 'static {
        let idle = extension_idle_ms(&self.spec, extend_by);
        let deadline = Duration::from_secs(u64::from(self.spec.ack_deadline_seconds))
            .saturating_sub(Duration::from_millis(idle));
        for cursor in extend {
            if let Some(d) = self.held.get_mut(cursor) {
                *d = Instant::now() + deadline;
            }
        }
        for cursor in nacks.iter().chain(acks) {
            self.held.remove(cursor);
        }
        let groups = self.groups.clone();
        let (key, consumer) = (self.key.clone(), self.consumer.clone());
        let (acks, extend, nacks) = (acks.to_vec(), extend.to_vec(), nacks.to_vec());
        async move {
            let mut conn = groups.conn.clone();
            claim(&mut conn, groups.stream(), &key, &consumer, &extend, idle).await?;
            claim(
                &mut conn,
                groups.stream(),
                &key,
                &consumer,
                &nacks,
                RELEASED_IDLE_MS,
            )
            .await?;
            xack(&mut conn, groups.stream(), &key, &acks).await
        }
    }

    /// Gives every held event back at once (the member leaves), and what a read under
    /// way fetches for it.
    pub(super) fn leave(&mut self) {
        let held: Vec<Cursor> = self.held.drain().map(|(c, _)| c).collect();
        let reading = self.reading.take();
        if held.is_empty() && reading.is_none() {
            return;
        }
        let groups = self.groups.clone();
        let (key, consumer) = (self.key.clone(), self.consumer.clone());
        tokio::spawn(async move {
            let mut held = held;
            if let Some(reading) = reading
                && let Ok((_, Ok(fetched))) = reading.await
            {
                held.extend(fetched.into_iter().map(|(cursor, _, _)| cursor));
            }
            let mut conn = groups.conn.clone();
            let _ = claim(
                &mut conn,
                groups.stream(),
                &key,
                &consumer,
                &held,
                RELEASED_IDLE_MS,
            )
            .await;
        });
    }
}

impl Reader {
    /// One read of up to `room` entries: expired ones first, else new ones (blocking up
    /// to [`BLOCK`]).
    async fn read(mut self, room: usize) -> (Self, ReadResult) {
        match self.claim_expired(room).await {
            Ok(claimed) if claimed.is_empty() => {}
            done => return (self, done),
        }
        let shutdown = self.groups.shutdown.clone();
        let read = tokio::select! {
            read = self.read_new(room) => read,
            () = shutdown.cancelled() => Ok(Vec::new()),
        };
        (self, read)
    }

    /// Takes over entries idle past the deadline (expired, nacked, or left by a member
    /// that went away); those past `max_deliveries` become dead letters.
    async fn claim_expired(&mut self, room: usize) -> Result<Vec<Fetched>, redis::RedisError> {
        let groups = self.groups.clone();
        let mut conn = groups.conn.clone();
        let deadline_ms = u64::from(self.spec.ack_deadline_seconds) * 1000;
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(groups.stream())
            .arg(&self.key)
            .arg(&self.consumer)
            .arg(deadline_ms)
            .arg(&self.claim_from)
            .arg("COUNT")
            .arg(room)
            .query_async(&mut conn)
            .await?;
        self.claim_from = reply.next_stream_id;
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        let first = &reply.claimed[0].id;
        let last = &reply.claimed[reply.claimed.len() - 1].id;
        let counts: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(groups.stream())
            .arg(&self.key)
            .arg(first)
            .arg(last)
            .arg(reply.claimed.len())
            .arg(&self.consumer)
            .query_async(&mut conn)
            .await?;
        let counts: HashMap<&str, usize> = counts
            .ids
            .iter()
            .map(|p| (p.id.as_str(), p.times_delivered))
            .collect();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut redelivered = 0u64;
        let (account, name) = (self.spec.account.clone(), self.spec.name.clone());
        let labels = [account.as_str(), name.as_str()];
        for entry in &reply.claimed {
            let Some(Value::BulkString(payload)) = entry.map.get("e") else {
                continue;
            };
            let Ok(decoded) = groups.log.entry_of(&entry.id, payload) else {
                continue;
            };
            let deliveries = counts.get(entry.id.as_str()).copied().unwrap_or(2) as u32;
            let max = self.spec.max_deliveries;
            if max > 0 && deliveries > max {
                dead.push((decoded.cursor, deliveries - 1));
                continue;
            }
            if deliveries > 1 {
                redelivered += 1;
            }
            out.push((decoded.cursor, decoded.event, deliveries));
        }
        if redelivered > 0 {
            groups
                .metrics
                .group_redeliveries
                .with_label_values(&labels)
                .inc_by(redelivered);
            redis::cmd("HINCRBY")
                .arg(&groups.redeliveries)
                .arg(&self.key)
                .arg(redelivered)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if !dead.is_empty() {
            let dead_key = format!("{}{}", groups.dead_prefix, self.key);
            let mut pipe = redis::pipe();
            for (cursor, deliveries) in &dead {
                pipe.cmd("HSET")
                    .arg(&dead_key)
                    .arg(cursor.seq)
                    .arg(serde_json::to_string(&(deliveries, now_ms())).expect("encodes"))
                    .ignore();
                pipe.cmd("XACK")
                    .arg(groups.stream())
                    .arg(&self.key)
                    .arg(id_of(*cursor))
                    .ignore();
                tracing::info!(group = %self.key, %cursor, deliveries, "event set aside as a dead letter");
            }
            pipe.query_async::<()>(&mut conn).await?;
            groups
                .metrics
                .group_dead_letters
                .with_label_values(&labels)
                .inc_by(dead.len() as u64);
        }
        Ok(out)
    }

    /// New entries for this consumer, blocking up to [`BLOCK`]; those the filter does
    /// not match are acknowledged at once.
    async fn read_new(&mut self, room: usize) -> Result<Vec<Fetched>, redis::RedisError> {
        let stream = self.groups.stream().to_owned();
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.key)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(room)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut self.blocking)
            .await?;
        let Some(reply) = reply else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            let decoded = match entry.map.get("e") {
                Some(Value::BulkString(payload)) => {
                    self.groups.log.entry_of(&entry.id, payload).ok()
                }
                _ => None,
            };
            match decoded {
                Some(e) if self.filter.matches(&e.event) => {
                    out.push((e.cursor, e.event, 1));
                }
                Some(e) => skipped.push(e.cursor),
                None => {}
            }
        }
        if !skipped.is_empty() {
            let mut conn = self.groups.conn.clone();
            xack(&mut conn, &stream, &self.key, &skipped)
                .await
                .map_err(|e| {
                    redis::RedisError::from((redis::ErrorKind::Io, "xack", e.to_string()))
                })?;
        }
        Ok(out)
    }
}

impl Drop for RedisMember {
    fn drop(&mut self) {
        self.leave();
    }
}
