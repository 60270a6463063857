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
//! Lag and pending come from `XINFO GROUPS`, members from `XINFO CONSUMERS`.
//!
//! Beside the stream (same hash tag): `:groups`, a hash of each group's settings, and
//! `:dead:<account>/<name>`, a hash of its dead letters (entry id → deliveries and time).
//! Replaying dead letters is not available on Redis yet.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use redis::{
    Value,
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
    dead_prefix: String,
    /// Names this replica's consumers, so two replicas' members never share a name.
    replica: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl RedisGroups {
    pub(super) fn new(
        log: Arc<RedisLog>,
        url: crate::secret::Secret,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        let stream = log.stream_key().to_owned();
        let tag = stream.trim_end_matches(":stream");
        Self {
            conn: log.connection(),
            registry: format!("{tag}:groups"),
            dead_prefix: format!("{tag}:dead:"),
            replica: format!("{:08x}", rand::random::<u32>()),
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
        let added: bool = redis::cmd("HSETNX")
            .arg(&self.registry)
            .arg(&key)
            .arg(serde_json::to_string(&spec).expect("specs encode"))
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        if !added {
            return Err(GroupError::AlreadyExists {
                account: spec.account,
                name: spec.name,
            });
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
                redeliveries: 0,
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
        nacks: &[Cursor],
    ) -> Result<Vec<Cursor>, GroupError> {
        self.spec(account, name).await?;
        let key = format!("{account}/{name}");
        let mut conn = self.conn.clone();
        // Whoever holds them keeps them, with their idle time restarted or pushed past
        // the deadline.
        for (ids, idle) in [(extend, 0), (nacks, RELEASED_IDLE_MS)] {
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
        Ok(RedisMember {
            groups: self.clone(),
            filter: spec.filter(),
            key: spec.key(),
            consumer: format!("{}.{serial}.{member}", self.replica),
            spec,
            blocking,
            held: HashMap::new(),
            claim_from: "0-0".to_owned(),
        })
    }
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
    filter: Filter,
    key: String,
    consumer: String,
    blocking: ConnectionManager,
    /// Events this member holds, with their local deadline (after which another
    /// member may have claimed them).
    held: HashMap<Cursor, Instant>,
    /// Where the next `XAUTOCLAIM` scan continues.
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
            let claimed = match self.claim_expired(room).await {
                Ok(claimed) => claimed,
                Err(e) if is_nogroup(&e) => return Ok(MemberEvent::Deleted),
                Err(e) => return Err(failed(e)),
            };
            if !claimed.is_empty() {
                return Ok(MemberEvent::Deliveries(claimed));
            }
            let shutdown = self.groups.shutdown.clone();
            let read = tokio::select! {
                read = self.read_new(room) => read,
                () = shutdown.cancelled() => return Ok(MemberEvent::ShuttingDown),
            };
            match read {
                Ok(fresh) if !fresh.is_empty() => return Ok(MemberEvent::Deliveries(fresh)),
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

    /// Takes over entries idle past the deadline (expired, nacked, or left by a member
    /// that went away); those past `max_deliveries` become dead letters.
    async fn claim_expired(
        &mut self,
        room: usize,
    ) -> Result<Vec<GroupDelivery>, redis::RedisError> {
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
            groups
                .metrics
                .group_redeliveries
                .with_label_values(&labels)
                .inc();
            out.push(self.deliver(decoded.cursor, decoded.event, deliveries));
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
    async fn read_new(&mut self, room: usize) -> Result<Vec<GroupDelivery>, redis::RedisError> {
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
                    out.push(self.deliver(e.cursor, e.event, 1));
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

    /// Applies acks, extensions (by the group's deadline: Redis restarts the idle time)
    /// and nacks; the future sends them.
    pub(super) fn ack_commands(
        &mut self,
        acks: &[Cursor],
        extend: &[Cursor],
        nacks: &[Cursor],
    ) -> impl Future<Output = Result<Vec<Cursor>, GroupError>> + Send + 'static {
        let deadline = Duration::from_secs(u64::from(self.spec.ack_deadline_seconds));
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
            claim(&mut conn, groups.stream(), &key, &consumer, &extend, 0).await?;
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

    /// Gives every held event back at once (the member leaves).
    pub(super) fn leave(&mut self) {
        let held: Vec<Cursor> = self.held.drain().map(|(c, _)| c).collect();
        if held.is_empty() {
            return;
        }
        let groups = self.groups.clone();
        let (key, consumer) = (self.key.clone(), self.consumer.clone());
        tokio::spawn(async move {
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

impl Drop for RedisMember {
    fn drop(&mut self) {
        self.leave();
    }
}
