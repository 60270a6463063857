//! Consumer groups: a named group keeps its own position in the event log and hands
//! each matching event to one of its members at a time; an event not acknowledged within
//! the group's ack deadline (or given back, or held by a member that left) goes to a
//! member again, and after `max_deliveries` deliveries it is set aside as a dead letter.
//! Delivery semantics in one sentence: at-least-once per group, in log order per member,
//! and an acknowledgement the server confirmed is never followed by another delivery of
//! that event to the group.
//!
//! Events come through the [`EventLog`] contract only (`read_after`, `wait_after`), so the
//! engine does not care which log runs. Its own state — positions, pending events with
//! their delivery counts and deadlines, dead letters — lives here, and on the embedded
//! engine also in `groups.jsonl` beside the log ([`store`]); with the in-memory log it
//! lives as long as the process.
//!
//! An account has at most `max_per_account` groups (`WECHAT_QR_MAX_GROUPS_PER_ACCOUNT`),
//! counted where the groups are kept — this process's map, or the deployment's registry
//! in Redis — and checked before a new group is stored.
//!
//! Per group: `position` is the cursor the group has read through; every matching event
//! after reading is *pending* until acknowledged. A pending event is either held by a
//! member (with a deadline) or *ready* to be handed out; members take ready events oldest
//! first, and read more from the log only when none is ready. One reader at a time per
//! group (the `reader` lock) keeps two members from reading the same events.

mod redis;
mod store;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use store::{GROUPS_FILE, StoreError};
use store::{Mirror, Record, Store};

use super::{Cursor, Event, EventKind, EventLog, Filter, LogError, RedisLog};
use crate::metrics::Metrics;
use redis::{RedisGroups, RedisMember};

/// Events read from the log per read.
const READ_BATCH: usize = 256;
/// How often deadlines are checked, so an expired event goes out within this of its
/// deadline.
const REAPER_TICK: Duration = Duration::from_millis(100);
/// Longest ack deadline or extension, in seconds.
pub const MAX_DEADLINE_SECONDS: u32 = 600;
/// Default ack deadline, in seconds.
pub const DEFAULT_DEADLINE_SECONDS: u32 = 30;
/// Default cap on unacknowledged events per member.
pub const DEFAULT_MAX_UNACKED: u32 = 1_000;
/// Largest cap on unacknowledged events per member.
pub const MAX_UNACKED: u32 = 10_000;

/// A group's settings, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// The group's name, unique per account.
    pub name: String,
    /// The AppID whose events it receives.
    pub account: String,
    /// Only these tickets; empty: any.
    pub tickets: Vec<String>,
    /// Only these scenes; empty: any.
    pub scenes: Vec<String>,
    /// Only these kinds (`subscribe`, `scan`, `unsubscribe`); empty: any.
    pub kinds: Vec<String>,
    /// Seconds a member has to acknowledge.
    pub ack_deadline_seconds: u32,
    /// Deliveries before an event becomes a dead letter; 0: never.
    pub max_deliveries: u32,
    /// Unacknowledged events per member at most.
    pub max_unacked_per_member: u32,
    /// When the group was created, Unix milliseconds.
    pub create_ms: u64,
}

impl GroupSpec {
    /// The group's key: account and name.
    pub fn key(&self) -> String {
        format!("{}/{}", self.account, self.name)
    }

    /// The name of a kind as the spec stores it.
    pub fn kind_name(kind: EventKind) -> &'static str {
        match kind {
            EventKind::Subscribe => "subscribe",
            EventKind::Scan => "scan",
            EventKind::Unsubscribe => "unsubscribe",
        }
    }

    /// The kinds the spec names.
    pub fn event_kinds(&self) -> Vec<EventKind> {
        self.kinds
            .iter()
            .filter_map(|k| match k.as_str() {
                "subscribe" => Some(EventKind::Subscribe),
                "scan" => Some(EventKind::Scan),
                "unsubscribe" => Some(EventKind::Unsubscribe),
                _ => None,
            })
            .collect()
    }

    fn filter(&self) -> Filter {
        Filter::new(
            self.tickets.iter().cloned(),
            self.scenes.iter().cloned(),
            self.event_kinds(),
        )
        .with_accounts([self.account.clone()])
    }

    fn ack_deadline(&self) -> Duration {
        Duration::from_secs(u64::from(self.ack_deadline_seconds))
    }
}

/// Where a new group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the newest event.
    Now,
    /// Before the oldest retained event.
    Oldest,
    /// After this cursor.
    After(Cursor),
}

/// Where to move a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTarget {
    /// After this cursor.
    Cursor(Cursor),
    /// Before the first event accepted at or after this time.
    Time(SystemTime),
}

/// Why a group operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    /// No such group.
    #[error("no consumer group {name:?} for account {account}")]
    NotFound {
        /// The AppID.
        account: String,
        /// The name.
        name: String,
    },
    /// The group exists already.
    #[error("consumer group {name:?} already exists for account {account}")]
    AlreadyExists {
        /// The AppID.
        account: String,
        /// The name.
        name: String,
    },
    /// The event log failed or the cursor is outside it.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The groups file cannot be written.
    #[error("consumer group state not saved: {0}")]
    Store(String),
    /// The account has as many groups as it may.
    #[error(
        "account {account} already has {limit} consumer groups, its limit (WECHAT_QR_MAX_GROUPS_PER_ACCOUNT); delete one first"
    )]
    TooMany {
        /// The AppID.
        account: String,
        /// The cap.
        limit: usize,
    },
    /// The operation is not available on this engine.
    #[error("{0} is not available with the Redis event log yet")]
    Unsupported(&'static str),
}

/// One pending event.
#[derive(Debug)]
struct Pending {
    event: Arc<Event>,
    /// Deliveries so far.
    deliveries: u32,
    /// The member holding it, or `None` while it is ready.
    holder: Option<u64>,
    /// When it goes back to ready unless acknowledged or extended.
    deadline: Instant,
}

/// A dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its cursor.
    pub cursor: Cursor,
    /// The event.
    pub event: Arc<Event>,
    /// Deliveries it had.
    pub deliveries: u32,
    /// When it was set aside, Unix milliseconds.
    pub dead_ms: u64,
}

/// A member as listed.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// The name it joined with.
    pub name: String,
    /// Events it holds.
    pub unacked: u32,
}

#[derive(Debug)]
struct MemberState {
    name: String,
    held: u32,
}

/// A group's mutable state.
#[derive(Debug)]
struct State {
    position: Cursor,
    pending: BTreeMap<Cursor, Pending>,
    /// Pending events held by no member, oldest first.
    ready: BTreeSet<Cursor>,
    dead: BTreeMap<Cursor, DeadLetter>,
    members: HashMap<u64, MemberState>,
    next_member: u64,
    redeliveries: u64,
}

/// One group.
#[derive(Debug)]
struct Group {
    spec: GroupSpec,
    key: String,
    filter: Filter,
    state: Mutex<State>,
    /// Bumped on every change a member may be waiting for (events ready, room freed).
    changed: watch::Sender<u64>,
    /// One reader of the log at a time.
    reader: tokio::sync::Mutex<()>,
    /// Cancelled when the group is deleted.
    deleted: CancellationToken,
}

/// A delivery to a member.
#[derive(Debug, Clone)]
pub struct GroupDelivery {
    /// The event's cursor, also its ack id.
    pub cursor: Cursor,
    /// The event.
    pub event: Arc<Event>,
    /// 1 on the first delivery.
    pub deliveries: u32,
    /// When it goes to a member again unless acknowledged.
    pub deadline: SystemTime,
}

/// A group and how far it is.
#[derive(Debug, Clone)]
pub struct GroupStatus {
    /// Its settings.
    pub spec: GroupSpec,
    /// The cursor it has read through.
    pub position: Cursor,
    /// Pending events.
    pub pending: u64,
    /// Pending plus the log's events after the position.
    pub lag: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Redeliveries since start.
    pub redeliveries: u64,
    /// Connected members.
    pub members: Vec<MemberInfo>,
}

/// What acks, extensions and nacks did.
#[derive(Debug, Default, Clone)]
pub struct AckOutcome {
    /// Ids that were pending and are now acknowledged.
    pub acked: Vec<Cursor>,
}

/// Every consumer group of this process.
#[derive(Debug, Clone)]
pub struct Groups {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: Arc<dyn EventLog>,
    /// `None`: state only in memory (the in-memory log), or on Redis.
    store: Option<Store>,
    /// Set on Redis: every operation goes there instead.
    redis: Option<Arc<RedisGroups>>,
    /// Numbers this process's members.
    members: std::sync::atomic::AtomicU64,
    groups: Mutex<BTreeMap<String, Arc<Group>>>,
    /// Groups one account may have.
    max_per_account: usize,
    /// Held by a creation from its checks (the cap, the name free) until the group is
    /// installed. Without it two concurrent CreateGroup calls of one name (replicas
    /// starting together) both pass the check while the first waits for its record to
    /// be durable, and the second's group replaces the first's, orphaning any member
    /// that joined it; two creations could also both pass the cap. A caller told
    /// ALREADY_EXISTS can therefore join at once.
    creating: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn parse_cursor(text: &str) -> Option<Cursor> {
    text.parse().ok()
}

impl Groups {
    /// Groups over `log`: on Redis (`redis`: the log and its URL) as Redis consumer
    /// groups; else remembered in `dir` when given (the embedded engine), only in memory
    /// otherwise. An account may create up to `max_per_account` of them (groups restored
    /// past a lowered cap stay). Reaper tasks and members stop with `shutdown`.
    pub async fn open(
        log: Arc<dyn EventLog>,
        dir: Option<&Path>,
        redis: Option<(Arc<RedisLog>, crate::secret::Secret)>,
        max_per_account: usize,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let (store, mirror) = match dir {
            Some(dir) if redis.is_none() => {
                let (store, mirror) = Store::open(dir)?;
                (Some(store), mirror)
            }
            _ => (None, Mirror::default()),
        };
        let redis = redis.map(|(log, url)| {
            Arc::new(RedisGroups::new(
                log,
                url,
                max_per_account,
                metrics.clone(),
                shutdown.clone(),
            ))
        });
        let groups = Self {
            inner: Arc::new(Inner {
                log,
                store,
                redis,
                members: std::sync::atomic::AtomicU64::new(0),
                groups: Mutex::new(BTreeMap::new()),
                max_per_account,
                creating: tokio::sync::Mutex::new(()),
                metrics,
                shutdown,
            }),
        };
        for (key, persisted) in mirror.groups {
            let Some(position) = parse_cursor(&persisted.position) else {
                tracing::warn!(group = %key, "consumer group with an unreadable position; skipped");
                continue;
            };
            let epoch = position.epoch;
            let wanted: BTreeSet<u64> = persisted
                .pending
                .keys()
                .chain(persisted.dead.keys())
                .copied()
                .collect();
            let events = groups.fetch(epoch, &wanted).await;
            let deadline = Instant::now();
            let mut state = State::new(position);
            for (seq, deliveries) in persisted.pending {
                let cursor = Cursor { epoch, seq };
                match events.get(&seq) {
                    Some(event) => {
                        state.pending.insert(
                            cursor,
                            Pending {
                                event: event.clone(),
                                deliveries,
                                holder: None,
                                deadline,
                            },
                        );
                        state.ready.insert(cursor);
                    }
                    None => {
                        tracing::warn!(group = %key, %cursor, "pending event no longer retained; dropped")
                    }
                }
            }
            for (seq, (deliveries, dead_ms)) in persisted.dead {
                let cursor = Cursor { epoch, seq };
                if let Some(event) = events.get(&seq) {
                    state.dead.insert(
                        cursor,
                        DeadLetter {
                            cursor,
                            event: event.clone(),
                            deliveries,
                            dead_ms,
                        },
                    );
                }
            }
            tracing::info!(
                group = %key,
                position = %position,
                pending = state.pending.len(),
                "consumer group restored"
            );
            groups.install(persisted.spec, state);
        }
        Ok(groups)
    }

    /// The events at these sequence numbers that the log still holds.
    async fn fetch(&self, epoch: u32, wanted: &BTreeSet<u64>) -> HashMap<u64, Arc<Event>> {
        let mut found = HashMap::new();
        let mut next = wanted.iter().next().copied();
        while let Some(seq) = next {
            let after = Cursor {
                epoch,
                seq: seq.saturating_sub(1),
            };
            let entries = match self.inner.log.read_after(after, READ_BATCH).await {
                Ok(entries) => entries,
                Err(LogError::OutOfRange { resume_from, .. }) if resume_from.seq > after.seq => {
                    next = wanted.range(resume_from.seq + 1..).next().copied();
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read pending events of consumer groups");
                    break;
                }
            };
            let Some(last) = entries.last().map(|e| e.cursor.seq) else {
                break;
            };
            for entry in entries {
                if wanted.contains(&entry.cursor.seq) {
                    found.insert(entry.cursor.seq, entry.event);
                }
            }
            next = wanted.range(last + 1..).next().copied();
        }
        found
    }

    fn install(&self, spec: GroupSpec, state: State) -> Arc<Group> {
        let key = spec.key();
        let group = Arc::new(Group {
            filter: spec.filter(),
            key: key.clone(),
            spec,
            state: Mutex::new(state),
            changed: watch::Sender::new(0),
            reader: tokio::sync::Mutex::new(()),
            deleted: CancellationToken::new(),
        });
        self.inner
            .groups
            .lock()
            .expect("groups lock")
            .insert(key, group.clone());
        tokio::spawn(reap(
            Arc::downgrade(&group),
            self.inner.clone(),
            self.inner.shutdown.clone(),
        ));
        group
    }

    fn get(&self, account: &str, name: &str) -> Result<Arc<Group>, GroupError> {
        self.inner
            .groups
            .lock()
            .expect("groups lock")
            .get(&format!("{account}/{name}"))
            .cloned()
            .ok_or_else(|| GroupError::NotFound {
                account: account.to_owned(),
                name: name.to_owned(),
            })
    }

    /// Queues `record` at once; the future resolves when it is durable.
    fn persist(
        &self,
        record: Record,
    ) -> impl Future<Output = Result<(), GroupError>> + Send + 'static {
        let submitted = self.inner.store.as_ref().map(|store| store.submit(record));
        async move {
            match submitted {
                Some(durable) => durable.await.map_err(GroupError::Store),
                None => Ok(()),
            }
        }
    }

    fn persist_later(&self, record: Record) {
        if let Some(store) = &self.inner.store {
            store.send(record);
        }
    }

    /// The cursor before the oldest retained event.
    async fn oldest(&self) -> Result<Cursor, GroupError> {
        let head = self.inner.log.head().await?;
        let start = Cursor {
            epoch: head.epoch,
            seq: 0,
        };
        match self.inner.log.read_after(start, 0).await {
            Ok(_) => Ok(start),
            Err(LogError::OutOfRange { resume_from, .. }) => Ok(resume_from),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a group starting at `start`; returns its position. An account that has
    /// its cap of groups gets [`GroupError::TooMany`] before anything is stored.
    pub async fn create(&self, mut spec: GroupSpec, start: Start) -> Result<Cursor, GroupError> {
        if let Some(redis) = &self.inner.redis {
            spec.create_ms = now_ms();
            return redis.create(spec, start, self.oldest().await?).await;
        }
        let _creating = self.inner.creating.lock().await;
        let position = match start {
            Start::Now => self.inner.log.head().await?,
            Start::Oldest => self.oldest().await?,
            Start::After(cursor) => {
                self.inner.log.read_after(cursor, 0).await?;
                cursor
            }
        };
        spec.create_ms = now_ms();
        let key = spec.key();
        {
            let groups = self.inner.groups.lock().expect("groups lock");
            if groups.contains_key(&key) {
                return Err(GroupError::AlreadyExists {
                    account: spec.account,
                    name: spec.name,
                });
            }
            let held = groups
                .values()
                .filter(|g| g.spec.account == spec.account)
                .count();
            if held >= self.inner.max_per_account {
                return Err(GroupError::TooMany {
                    account: spec.account,
                    limit: self.inner.max_per_account,
                });
            }
        }
        self.persist(Record::Create {
            spec: spec.clone(),
            position: position.to_string(),
        })
        .await?;
        self.install(spec, State::new(position));
        Ok(position)
    }

    /// Deletes a group; its members' streams end.
    pub async fn delete(&self, account: &str, name: &str) -> Result<(), GroupError> {
        if let Some(redis) = &self.inner.redis {
            return redis.delete(account, name).await;
        }
        let group = self.get(account, name)?;
        self.inner
            .groups
            .lock()
            .expect("groups lock")
            .remove(&group.key);
        group.deleted.cancel();
        self.forget_metrics(&group.spec);
        self.persist(Record::Delete {
            group: group.key.clone(),
        })
        .await
    }

    fn forget_metrics(&self, spec: &GroupSpec) {
        let labels = [spec.account.as_str(), spec.name.as_str()];
        let m = &self.inner.metrics;
        let _ = m.group_lag.remove_label_values(&labels);
        let _ = m.group_pending.remove_label_values(&labels);
        let _ = m.group_redeliveries.remove_label_values(&labels);
        let _ = m.group_dead_letters.remove_label_values(&labels);
    }

    /// Every group of the accounts `visible` accepts, by account then name.
    pub async fn list(
        &self,
        visible: impl Fn(&str) -> bool + Sync,
    ) -> Result<Vec<GroupStatus>, GroupError> {
        if let Some(redis) = &self.inner.redis {
            return redis.list(&visible).await;
        }
        let groups: Vec<Arc<Group>> = self
            .inner
            .groups
            .lock()
            .expect("groups lock")
            .values()
            .filter(|g| visible(&g.spec.account))
            .cloned()
            .collect();
        let head = self.inner.log.head().await?;
        Ok(groups.iter().map(|g| g.status(head)).collect())
    }

    /// Moves a group; see the proto's SeekGroup for what happens to pending events.
    pub async fn seek(
        &self,
        account: &str,
        name: &str,
        target: SeekTarget,
    ) -> Result<Cursor, GroupError> {
        if let Some(redis) = &self.inner.redis {
            let position = match target {
                SeekTarget::Cursor(cursor) => {
                    self.inner.log.read_after(cursor, 0).await?;
                    cursor
                }
                SeekTarget::Time(time) => self.cursor_at(time).await?,
            };
            return redis.seek(account, name, position).await;
        }
        let group = self.get(account, name)?;
        let _reading = group.reader.lock().await;
        let position = match target {
            SeekTarget::Cursor(cursor) => {
                self.inner.log.read_after(cursor, 0).await?;
                cursor
            }
            SeekTarget::Time(time) => self.cursor_at(time).await?,
        };
        let durable = {
            let mut state = group.state.lock().expect("group lock");
            state.pending.clear();
            state.ready.clear();
            for member in state.members.values_mut() {
                member.held = 0;
            }
            state.position = position;
            // Queued under the lock, so no record of the old pending events follows it.
            self.persist(Record::Seek {
                group: group.key.clone(),
                position: position.to_string(),
            })
        };
        durable.await?;
        group.changed.send_modify(|v| *v += 1);
        Ok(position)
    }

    /// The cursor before the first retained event accepted at or after `time`.
    async fn cursor_at(&self, time: SystemTime) -> Result<Cursor, GroupError> {
        let mut after = self.oldest().await?;
        loop {
            let entries = self.inner.log.read_after(after, 1024).await?;
            let Some(last) = entries.last().map(|e| e.cursor) else {
                return Ok(after);
            };
            for entry in &entries {
                if entry.event.received_time >= time {
                    return Ok(after);
                }
                after = entry.cursor;
            }
            after = last;
        }
    }

    /// Acknowledges, extends and nacks events of a group; returns once the
    /// acknowledgements are durable.
    pub async fn ack(
        &self,
        account: &str,
        name: &str,
        acks: &[Cursor],
        extend: &[Cursor],
        extend_by: Option<Duration>,
        nacks: &[Cursor],
    ) -> Result<AckOutcome, GroupError> {
        if let Some(redis) = &self.inner.redis {
            let acked = redis
                .ack(account, name, acks, extend, extend_by, nacks)
                .await?;
            return Ok(AckOutcome { acked });
        }
        let group = self.get(account, name)?;
        let (outcome, record) = self.apply_acks(&group, acks, extend, extend_by, nacks);
        if let Some(record) = record {
            self.persist(record).await?;
        }
        Ok(outcome)
    }

    /// The in-memory half of [`Groups::ack`]: what to persist, if anything.
    fn apply_acks(
        &self,
        group: &Group,
        acks: &[Cursor],
        extend: &[Cursor],
        extend_by: Option<Duration>,
        nacks: &[Cursor],
    ) -> (AckOutcome, Option<Record>) {
        let mut outcome = AckOutcome::default();
        let mut state = group.state.lock().expect("group lock");
        for &cursor in acks {
            if let Some(pending) = state.pending.remove(&cursor) {
                state.unhold(pending.holder);
                state.ready.remove(&cursor);
                outcome.acked.push(cursor);
            }
        }
        let by = extend_by.unwrap_or_else(|| group.spec.ack_deadline());
        for cursor in extend {
            if let Some(pending) = state.pending.get_mut(cursor)
                && pending.holder.is_some()
            {
                pending.deadline = Instant::now() + by;
            }
        }
        for &cursor in nacks {
            self.release(group, &mut state, cursor);
        }
        drop(state);
        if !outcome.acked.is_empty() || !nacks.is_empty() {
            group.changed.send_modify(|v| *v += 1);
        }
        let record = (!outcome.acked.is_empty()).then(|| Record::Ack {
            group: group.key.clone(),
            seqs: outcome.acked.iter().map(|c| c.seq).collect(),
        });
        (outcome, record)
    }

    /// Takes a held event back from its member: ready again, or a dead letter once it
    /// had its deliveries.
    fn release(&self, group: &Group, state: &mut State, cursor: Cursor) {
        let Some(pending) = state.pending.get(&cursor) else {
            return;
        };
        let (holder, deliveries) = (pending.holder, pending.deliveries);
        if holder.is_none() {
            return;
        }
        state.unhold(holder);
        let max = group.spec.max_deliveries;
        if max > 0 && deliveries >= max {
            let pending = state.pending.remove(&cursor).expect("present");
            let dead = DeadLetter {
                cursor,
                event: pending.event,
                deliveries: pending.deliveries,
                dead_ms: now_ms(),
            };
            self.persist_later(Record::Dead {
                group: group.key.clone(),
                seq: cursor.seq,
                deliveries: dead.deliveries,
                at_ms: dead.dead_ms,
            });
            tracing::info!(group = %group.key, %cursor, deliveries = dead.deliveries, "event set aside as a dead letter");
            self.inner
                .metrics
                .group_dead_letters
                .with_label_values(&[group.spec.account.as_str(), group.spec.name.as_str()])
                .inc();
            state.dead.insert(cursor, dead);
        } else {
            let pending = state.pending.get_mut(&cursor).expect("present");
            pending.holder = None;
            state.ready.insert(cursor);
        }
    }

    /// Up to `page_size` dead letters, oldest first, and how many there are.
    pub async fn dead_letters(
        &self,
        account: &str,
        name: &str,
        page_size: usize,
    ) -> Result<(Vec<DeadLetter>, u64), GroupError> {
        if let Some(redis) = &self.inner.redis {
            return redis.dead_letters(account, name, page_size).await;
        }
        let group = self.get(account, name)?;
        let state = group.state.lock().expect("group lock");
        Ok((
            state.dead.values().take(page_size).cloned().collect(),
            state.dead.len() as u64,
        ))
    }

    /// Puts dead letters (all when `cursors` is empty) back as ready, their count reset.
    pub async fn replay(
        &self,
        account: &str,
        name: &str,
        cursors: &[Cursor],
    ) -> Result<u32, GroupError> {
        if let Some(redis) = &self.inner.redis {
            return redis.replay(account, name, cursors).await;
        }
        let group = self.get(account, name)?;
        let (replayed, durable) = {
            let mut state = group.state.lock().expect("group lock");
            let chosen: Vec<Cursor> = if cursors.is_empty() {
                state.dead.keys().copied().collect()
            } else {
                cursors
                    .iter()
                    .copied()
                    .filter(|c| state.dead.contains_key(c))
                    .collect()
            };
            for cursor in &chosen {
                let dead = state.dead.remove(cursor).expect("present");
                state.pending.insert(
                    *cursor,
                    Pending {
                        event: dead.event,
                        deliveries: 0,
                        holder: None,
                        deadline: Instant::now(),
                    },
                );
                state.ready.insert(*cursor);
            }
            // Queued under the lock: before any delivery or ack of these events.
            let durable = self.persist(Record::Replay {
                group: group.key.clone(),
                seqs: chosen.iter().map(|c| c.seq).collect(),
            });
            (chosen, durable)
        };
        durable.await?;
        group.changed.send_modify(|v| *v += 1);
        Ok(u32::try_from(replayed.len()).unwrap_or(u32::MAX))
    }

    /// Joins a group as a member named `name`.
    pub async fn join(
        &self,
        account: &str,
        name: &str,
        member: String,
    ) -> Result<Member, GroupError> {
        if let Some(redis) = &self.inner.redis {
            let serial = self
                .inner
                .members
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Member(MemberKind::Redis(Box::new(
                redis.join(account, name, member, serial).await?,
            ))));
        }
        let group = self.get(account, name)?;
        let id = {
            let mut state = group.state.lock().expect("group lock");
            let id = state.next_member;
            state.next_member += 1;
            state.members.insert(
                id,
                MemberState {
                    name: member,
                    held: 0,
                },
            );
            id
        };
        Ok(Member(MemberKind::Local(LocalMember {
            groups: self.clone(),
            changed: group.changed.subscribe(),
            group,
            id,
        })))
    }
}

impl State {
    fn new(position: Cursor) -> Self {
        Self {
            position,
            pending: BTreeMap::new(),
            ready: BTreeSet::new(),
            dead: BTreeMap::new(),
            members: HashMap::new(),
            next_member: 0,
            redeliveries: 0,
        }
    }

    fn unhold(&mut self, holder: Option<u64>) {
        if let Some(member) = holder.and_then(|id| self.members.get_mut(&id)) {
            member.held = member.held.saturating_sub(1);
        }
    }
}

impl Group {
    fn status(&self, head: Cursor) -> GroupStatus {
        let state = self.state.lock().expect("group lock");
        let unread = if head.epoch == state.position.epoch {
            head.seq.saturating_sub(state.position.seq)
        } else {
            0
        };
        let mut members: Vec<MemberInfo> = state
            .members
            .values()
            .map(|m| MemberInfo {
                name: m.name.clone(),
                unacked: m.held,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        GroupStatus {
            spec: self.spec.clone(),
            position: state.position,
            pending: state.pending.len() as u64,
            lag: state.pending.len() as u64 + unread,
            dead_letters: state.dead.len() as u64,
            redeliveries: state.redeliveries,
            members,
        }
    }
}

/// Sends expired events back to ready and keeps the group's metrics current, until the
/// group is gone or the service stops.
async fn reap(group: std::sync::Weak<Group>, inner: Arc<Inner>, shutdown: CancellationToken) {
    let groups = Groups { inner };
    let mut tick = tokio::time::interval(REAPER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let Some(group) = group.upgrade() else { return };
        if group.deleted.is_cancelled() {
            return;
        }
        let now = Instant::now();
        let expired = {
            let mut state = group.state.lock().expect("group lock");
            let expired: Vec<Cursor> = state
                .pending
                .iter()
                .filter(|(_, p)| p.holder.is_some() && p.deadline <= now)
                .map(|(c, _)| *c)
                .collect();
            for &cursor in &expired {
                groups.release(&group, &mut state, cursor);
            }
            !expired.is_empty()
        };
        if expired {
            group.changed.send_modify(|v| *v += 1);
        }
        ticks += 1;
        if ticks.is_multiple_of(10)
            && let Ok(head) = groups.inner.log.head().await
        {
            let status = group.status(head);
            let labels = [group.spec.account.as_str(), group.spec.name.as_str()];
            let m = &groups.inner.metrics;
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            m.group_lag
                .with_label_values(&labels)
                .set(gauge(status.lag));
            m.group_pending
                .with_label_values(&labels)
                .set(gauge(status.pending));
        }
    }
}

/// A member of a group on the embedded or in-memory engine.
#[derive(Debug)]
struct LocalMember {
    groups: Groups,
    group: Arc<Group>,
    id: u64,
    changed: watch::Receiver<u64>,
}

/// What [`Member::next`] brings.
#[derive(Debug)]
pub enum MemberEvent {
    /// Events to send.
    Deliveries(Vec<GroupDelivery>),
    /// The group was deleted.
    Deleted,
    /// The service is stopping.
    ShuttingDown,
}

impl LocalMember {
    /// The group's settings.
    fn spec(&self) -> &GroupSpec {
        &self.group.spec
    }

    /// Waits until there are events for this member (or the group or service ends).
    async fn next(&mut self) -> Result<MemberEvent, GroupError> {
        loop {
            self.changed.borrow_and_update();
            let taken = self.take();
            if !taken.is_empty() {
                return Ok(MemberEvent::Deliveries(taken));
            }
            let room = self.room();
            if room > 0 && self.fill().await? {
                continue;
            }
            let position = self.group.state.lock().expect("group lock").position;
            let log = self.groups.inner.log.clone();
            tokio::select! {
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return Ok(MemberEvent::Deleted);
                    }
                }
                () = log.wait_after(position), if room > 0 => {}
                () = self.group.deleted.cancelled() => return Ok(MemberEvent::Deleted),
                () = self.groups.inner.shutdown.cancelled() => return Ok(MemberEvent::ShuttingDown),
            }
        }
    }

    fn room(&self) -> u32 {
        let state = self.group.state.lock().expect("group lock");
        let held = state.members.get(&self.id).map_or(0, |m| m.held);
        self.group.spec.max_unacked_per_member.saturating_sub(held)
    }

    /// Hands ready events to this member, up to its room.
    fn take(&self) -> Vec<GroupDelivery> {
        let deadline_in = self.group.spec.ack_deadline();
        let mut state = self.group.state.lock().expect("group lock");
        let held = state.members.get(&self.id).map_or(0, |m| m.held);
        let room = self.group.spec.max_unacked_per_member.saturating_sub(held) as usize;
        let chosen: Vec<Cursor> = state.ready.iter().take(room).copied().collect();
        if chosen.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let wall = SystemTime::now() + deadline_in;
        let mut out = Vec::with_capacity(chosen.len());
        let mut redelivered = 0;
        for cursor in chosen {
            state.ready.remove(&cursor);
            let pending = state.pending.get_mut(&cursor).expect("ready is pending");
            pending.holder = Some(self.id);
            pending.deliveries += 1;
            pending.deadline = now + deadline_in;
            if pending.deliveries > 1 {
                redelivered += 1;
                self.groups.persist_later(Record::Delivered {
                    group: self.group.key.clone(),
                    seq: cursor.seq,
                    deliveries: pending.deliveries,
                });
            }
            out.push(GroupDelivery {
                cursor,
                event: pending.event.clone(),
                deliveries: pending.deliveries,
                deadline: wall,
            });
        }
        state.redeliveries += redelivered;
        if redelivered > 0 {
            self.groups
                .inner
                .metrics
                .group_redeliveries
                .with_label_values(&[
                    self.group.spec.account.as_str(),
                    self.group.spec.name.as_str(),
                ])
                .inc_by(redelivered);
        }
        if let Some(member) = state.members.get_mut(&self.id) {
            member.held += u32::try_from(out.len()).unwrap_or(u32::MAX);
        }
        out
    }

    /// Reads the log after the group's position into ready; whether anything was read.
    async fn fill(&self) -> Result<bool, GroupError> {
        let group = &self.group;
        let _reading = group.reader.lock().await;
        let position = {
            let state = group.state.lock().expect("group lock");
            if !state.ready.is_empty() {
                return Ok(true);
            }
            state.position
        };
        let entries = match self.groups.inner.log.read_after(position, READ_BATCH).await {
            Ok(entries) => entries,
            Err(LogError::OutOfRange { resume_from, .. }) => {
                // Retention passed the group by: what it had not read is gone.
                tracing::warn!(group = %group.key, %position, %resume_from, "consumer group fell behind the retained log; skipping to the oldest event");
                group.state.lock().expect("group lock").position = resume_from;
                self.groups.persist_later(Record::Seek {
                    group: group.key.clone(),
                    position: resume_from.to_string(),
                });
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(upto) = entries.last().map(|e| e.cursor) else {
            return Ok(false);
        };
        let matched: Vec<_> = entries
            .into_iter()
            .filter(|e| group.filter.matches(&e.event))
            .collect();
        // Sent before any of these events is handed out, so before any ack of them.
        self.groups.persist_later(Record::Read {
            group: group.key.clone(),
            upto: upto.to_string(),
            seqs: matched.iter().map(|e| e.cursor.seq).collect(),
        });
        let mut state = group.state.lock().expect("group lock");
        state.position = upto;
        let now = Instant::now();
        for entry in matched {
            state.pending.insert(
                entry.cursor,
                Pending {
                    event: entry.event,
                    deliveries: 0,
                    holder: None,
                    deadline: now,
                },
            );
            state.ready.insert(entry.cursor);
        }
        Ok(true)
    }

    /// Applies acks, extensions and nacks at once; the future it returns resolves when
    /// the acknowledgements are durable, with the ids acknowledged.
    fn ack(
        &self,
        acks: &[Cursor],
        extend: &[Cursor],
        extend_by: Option<Duration>,
        nacks: &[Cursor],
    ) -> impl Future<Output = Result<Vec<Cursor>, GroupError>> + Send + 'static {
        let (outcome, record) = self
            .groups
            .apply_acks(&self.group, acks, extend, extend_by, nacks);
        let durable = record.map(|record| self.groups.persist(record));
        async move {
            if let Some(durable) = durable {
                durable.await?;
            }
            Ok(outcome.acked)
        }
    }
}

impl Drop for LocalMember {
    fn drop(&mut self) {
        let mut state = self.group.state.lock().expect("group lock");
        let held: Vec<Cursor> = state
            .pending
            .iter()
            .filter(|(_, p)| p.holder == Some(self.id))
            .map(|(c, _)| *c)
            .collect();
        for cursor in held {
            self.groups.release(&self.group, &mut state, cursor);
        }
        state.members.remove(&self.id);
        drop(state);
        self.group.changed.send_modify(|v| *v += 1);
    }
}

/// A member of a group, on whichever engine runs; leaving (dropping it) gives every
/// event it holds back to the others at once.
#[derive(Debug)]
pub struct Member(MemberKind);

#[derive(Debug)]
enum MemberKind {
    /// The embedded or in-memory engine.
    Local(LocalMember),
    /// Redis.
    Redis(Box<RedisMember>),
}

impl Member {
    /// The group's settings.
    pub fn spec(&self) -> &GroupSpec {
        match &self.0 {
            MemberKind::Local(m) => m.spec(),
            MemberKind::Redis(m) => m.spec(),
        }
    }

    /// Waits until there are events for this member (or the group or service ends).
    pub async fn next(&mut self) -> Result<MemberEvent, GroupError> {
        match &mut self.0 {
            MemberKind::Local(m) => m.next().await,
            MemberKind::Redis(m) => m.next().await,
        }
    }

    /// Applies acks, extensions and nacks; the future resolves once the acknowledgements
    /// are durable, with the ids acknowledged.
    pub fn ack(
        &mut self,
        acks: &[Cursor],
        extend: &[Cursor],
        extend_by: Option<Duration>,
        nacks: &[Cursor],
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Cursor>, GroupError>> + Send + 'static>>
    {
        match &mut self.0 {
            MemberKind::Local(m) => Box::pin(m.ack(acks, extend, extend_by, nacks)),
            MemberKind::Redis(m) => {
                // Redis applies them in order on one connection before the next read.
                let applied = m.ack_commands(acks, extend, extend_by, nacks);
                Box::pin(applied)
            }
        }
    }
}
