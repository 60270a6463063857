//! Channel statistics: which scene brought which followers. A follower task reads the
//! event log from the statistics' own durable cursor — like the fan-out hub, through
//! `read_after` and `wait_after` — and counts each event into a store of its own
//! (`stats.redb` in the data directory; redb's in-memory backend when the log is in
//! memory), writing the cursor it has counted up to in the same transaction as the
//! counts: a restart continues exactly where counting stopped, and a push WeChat re-sent
//! (one event in the log) counts once. `ChannelStatsService` answers from the store.
//!
//! Counting rules: an event counts at WeChat's `CreateTime` (`buckets::event_second`);
//! a `SCAN` is a scan, a `subscribe` with a scene a new follower, both reach a (distinct)
//! user; an `unsubscribe` counts for the scene of the `subscribe` that began that
//! follow. What is counted is kept for `WECHAT_QR_STATS_RETAIN_DAYS` (400 by default),
//! independently of the event log's retention.
//!
//! Start-up reconciles the store with the log, and logs what it did. A missing store (first
//! start, or the file was removed) is rebuilt from what the log retains. Counts already
//! made are never thrown away for the log's sake: a log that is a new one (another
//! epoch: its file was replaced) is counted from its start on top of them; a log that
//! moved past the cursor (its retention dropped events before they were counted) is
//! counted from its oldest event, with a warning naming how many were missed; a cursor
//! ahead of the log (a log restored from an older backup) continues from the log's head.

mod buckets;
mod store;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use buckets::{
    BucketError, BucketSize, DAY_SECONDS, MAX_BUCKETS, MAX_FUTURE_SKEW_SECONDS, SLOT_SECONDS, edges,
};
pub use store::{EmptyBecause, Found, StatsStore};

use crate::{
    config::Storage,
    events::{Cursor, EventLog, LogError},
};

/// The store's file inside the data directory.
pub const STATS_FILE: &str = "stats.redb";
/// Events counted per transaction at most.
const BATCH: usize = 4096;
/// After a batch smaller than [`BATCH`], how long the follower lets events gather before
/// its next transaction: under load one transaction then counts hundreds of events
/// instead of a handful (a transaction per few events was the largest cost of ours on the
/// ingest path), and a count is at most this much later.
const LINGER: Duration = Duration::from_millis(20);
/// The longest a counted batch stays in a non-durable commit: at most this much counting
/// is redone from the log after a crash.
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// Pause before reading or writing again after a failure.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// How often old days and scenes are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// How long a query waits for the statistics to count what the log held when it came.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Why the statistics cannot answer (or open).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StatsError {
    /// The store file cannot be opened.
    #[error("cannot open the statistics store {path}: {reason}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// The store's error.
        reason: String,
    },
    /// The store failed (a full or failing disk) or is closed.
    #[error("channel statistics unavailable: {0}")]
    Store(String),
    /// The event log could not be read at start-up.
    #[error("channel statistics cannot read the event log: {0}")]
    Log(#[from] LogError),
}

/// The four counts of a scene over a bucket or a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `SCAN` events: a follower scanned the scene's code.
    pub scans: u64,
    /// `subscribe` events with the scene: users who followed through it.
    pub new_followers: u64,
    /// Distinct users among those scans and follows.
    pub unique_users: u64,
    /// Unfollows of users whose follow began with this scene.
    pub unfollows: u64,
}

/// What GetSceneStats asks, validated.
#[derive(Debug, Clone)]
pub struct SceneQuery {
    /// Bucket edges, Unix seconds, ascending (see [`edges`]); at least two.
    pub edges: Vec<i64>,
    /// Only these scenes, distinct; empty means every scene active in the range.
    pub scenes: Vec<String>,
    /// At most this many scenes in the answer (the top ones).
    pub max_scenes: usize,
}

/// One scene over a query's buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneSeries {
    /// The scene.
    pub scene: String,
    /// One entry per bucket, zeros included.
    pub buckets: Vec<Counts>,
    /// Over the range; `unique_users` counts each user once.
    pub totals: Counts,
}

/// The answer to a [`SceneQuery`].
#[derive(Debug, Clone)]
pub struct SceneStats {
    /// The top scenes: most new followers, then most scans, then by name.
    pub scenes: Vec<SceneSeries>,
    /// Active scenes left out by `max_scenes`.
    pub omitted: usize,
    /// The log cursor the counts include.
    pub counted: Cursor,
}

/// A scene with its lifetime totals.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneSummary {
    /// The scene.
    pub scene: String,
    /// Since the statistics first saw it.
    pub totals: Counts,
    /// Its first event, Unix seconds.
    pub first_activity: i64,
    /// Its latest event, Unix seconds.
    pub last_activity: i64,
}

/// The statistics of a running service; cloning shares them.
#[derive(Debug, Clone)]
pub struct ChannelStats {
    store: Arc<StatsStore>,
    log: Arc<dyn EventLog>,
    /// Up to where the follower has counted.
    counted: watch::Receiver<Cursor>,
}

impl ChannelStats {
    /// Opens the statistics beside the log `storage` names, reconciles them with `log`
    /// (see the module docs) and returns them with the follower that keeps them
    /// counting; run (spawn) it until `shutdown`.
    ///
    /// Each account has statistics of its own, counting only its events: the first
    /// account's in `stats.redb`, the others' in `stats-<app_id>.redb`.
    pub async fn start(
        storage: &Storage,
        app_id: &str,
        first: bool,
        retain_days: u32,
        log: Arc<dyn EventLog>,
        shutdown: CancellationToken,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), StatsError> {
        let (store, found) = match storage {
            Storage::Durable { dir } => {
                let file = if first {
                    STATS_FILE.to_owned()
                } else {
                    format!("stats-{app_id}.redb")
                };
                StatsStore::open_file(&dir.join(file), app_id, retain_days)?
            }
            // Every replica follows the whole shared log, so each counts everything,
            // rebuilt from the retained events at start.
            Storage::Memory | Storage::Redis { .. } => {
                StatsStore::open_memory(app_id, retain_days)?
            }
        };
        let store = Arc::new(store);
        let head = log.head().await?;
        let start = match found {
            Found::Empty { why } => {
                let from = oldest(&log, head.epoch).await?;
                if head.seq > from.seq {
                    match why {
                        EmptyBecause::New => tracing::info!(
                            events = head.seq - from.seq,
                            "channel statistics: no statistics store yet; rebuilding it from the retained event log"
                        ),
                        EmptyBecause::Replaced => tracing::warn!(
                            events = head.seq - from.seq,
                            "channel statistics: the statistics store held another account's data or layout; rebuilt it from the retained event log"
                        ),
                    }
                }
                from
            }
            Found::Counted(cursor) if cursor.epoch != head.epoch => {
                tracing::warn!(
                    counted = %cursor,
                    "channel statistics: the event log is a new one (its store was replaced); keeping the counts made so far and counting the new log from its start"
                );
                oldest(&log, head.epoch).await?
            }
            Found::Counted(cursor) if cursor.seq > head.seq => {
                tracing::warn!(
                    counted = %cursor,
                    head = %head,
                    "channel statistics: counted further than the event log holds (a log restored from an older backup?); keeping the counts and continuing from the log's head"
                );
                head
            }
            Found::Counted(cursor) => cursor,
        };
        let (counted_tx, counted) = watch::channel(start);
        let stats = Self {
            store: store.clone(),
            log: log.clone(),
            counted,
        };
        let follower = Follower {
            app_id: app_id.to_owned(),
            store,
            log,
            counted: counted_tx,
        };
        Ok((stats, follower.run(shutdown)))
    }

    /// Counts per scene and bucket. Waits (briefly) until every event the log held when
    /// the call came is counted, so a push acknowledged before the call is in the answer.
    pub async fn scene_stats(&self, query: SceneQuery) -> Result<SceneStats, StatsError> {
        let counted = self.caught_up().await;
        let store = self.store.clone();
        let (scenes, omitted) = tokio::task::spawn_blocking(move || store.scene_stats(&query))
            .await
            .map_err(|e| StatsError::Store(e.to_string()))??;
        Ok(SceneStats {
            scenes,
            omitted,
            counted,
        })
    }

    /// Up to `limit` scenes after `after`, in byte order, and whether more follow.
    pub async fn list_scenes(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<SceneSummary>, bool), StatsError> {
        self.caught_up().await;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.list_scenes(after.as_deref(), limit))
            .await
            .map_err(|e| StatsError::Store(e.to_string()))?
    }

    /// Closes the store at shutdown, once the follower has stopped.
    pub fn close(&self) {
        self.store.close();
    }

    /// The counted cursor, once it covers the log's head of now (or after [`CATCH_UP`]).
    async fn caught_up(&self) -> Cursor {
        let mut counted = self.counted.clone();
        if let Ok(head) = self.log.head().await {
            let covered = move |c: &Cursor| c.epoch == head.epoch && c.seq >= head.seq;
            let _ = tokio::time::timeout(CATCH_UP, counted.wait_for(covered)).await;
        }
        *counted.borrow()
    }
}

/// The position before the oldest event the log retains in `epoch`.
async fn oldest(log: &Arc<dyn EventLog>, epoch: u32) -> Result<Cursor, LogError> {
    let before_all = Cursor { epoch, seq: 0 };
    match log.read_after(before_all, 0).await {
        Ok(_) => Ok(before_all),
        Err(LogError::OutOfRange { resume_from, .. }) => Ok(resume_from),
        Err(e) => Err(e),
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The task that keeps the statistics counting.
struct Follower {
    /// The account counted; other accounts' events pass by.
    app_id: String,
    store: Arc<StatsStore>,
    log: Arc<dyn EventLog>,
    counted: watch::Sender<Cursor>,
}

impl Follower {
    async fn run(self, shutdown: CancellationToken) {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        // When the last synced commit was made, and whether one not synced followed it.
        let mut synced_at = Instant::now();
        let mut unsynced = false;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let after = *self.counted.borrow();
            match self.log.read_after(after, BATCH).await {
                Ok(mut batch) if !batch.is_empty() => {
                    let last = batch.last().expect("not empty").cursor;
                    batch.retain(|entry| entry.event.app_id == self.app_id);
                    if batch.is_empty() {
                        // Nothing of ours: the store's cursor stays on our last event,
                        // and these are passed by again after a restart.
                        self.counted.send_replace(last);
                        continue;
                    }
                    let full = batch.len() >= BATCH;
                    let durable = synced_at.elapsed() >= DURABLE_EVERY;
                    let store = self.store.clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        store.apply(&batch, now_seconds(), durable)
                    })
                    .await
                    .map_err(|e| StatsError::Store(e.to_string()))
                    .and_then(|r| r);
                    match applied {
                        Ok(()) => {
                            self.counted.send_replace(last);
                            if durable {
                                synced_at = Instant::now();
                            }
                            unsynced = !durable;
                            if !full {
                                tokio::select! {
                                    () = tokio::time::sleep(LINGER) => {}
                                    () = shutdown.cancelled() => return,
                                }
                            }
                        }
                        Err(error) => {
                            // Nothing of the batch was kept: it is counted on the retry.
                            tracing::warn!(%error, "channel statistics cannot count events; retrying");
                            if self.pause(&shutdown).await {
                                return;
                            }
                        }
                    }
                }
                Ok(_) => {
                    if unsynced {
                        // Caught up: make what was counted permanent before waiting.
                        let store = self.store.clone();
                        match tokio::task::spawn_blocking(move || store.flush()).await {
                            Ok(Ok(())) => {
                                synced_at = Instant::now();
                                unsynced = false;
                            }
                            Ok(Err(error)) => {
                                tracing::warn!(%error, "channel statistics cannot sync their store; retrying");
                            }
                            Err(_) => {}
                        }
                    }
                    tokio::select! {
                        () = self.log.wait_after(after) => {}
                        _ = sweep.tick() => self.sweep().await,
                        () = shutdown.cancelled() => return,
                    }
                }
                Err(LogError::OutOfRange { resume_from, .. }) => {
                    let missed = if resume_from.epoch == after.epoch {
                        resume_from.seq.saturating_sub(after.seq)
                    } else {
                        0
                    };
                    tracing::warn!(
                        missed,
                        counted = %after,
                        resume_from = %resume_from,
                        "channel statistics fell behind the event log's retention: the events in between are not counted"
                    );
                    let store = self.store.clone();
                    let moved = tokio::task::spawn_blocking(move || store.set_cursor(resume_from))
                        .await
                        .map_err(|e| StatsError::Store(e.to_string()))
                        .and_then(|r| r);
                    match moved {
                        Ok(()) => {
                            self.counted.send_replace(resume_from);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "channel statistics cannot record their cursor; retrying");
                            if self.pause(&shutdown).await {
                                return;
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "channel statistics cannot read the event log; retrying");
                    if self.pause(&shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits before a retry; true when the service is shutting down instead.
    async fn pause(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = tokio::time::sleep(RETRY_AFTER) => false,
            () = shutdown.cancelled() => true,
        }
    }

    async fn sweep(&self) {
        let store = self.store.clone();
        let swept = tokio::task::spawn_blocking(move || store.sweep(now_seconds())).await;
        if let Ok(Err(error)) = swept {
            tracing::warn!(%error, "channel statistics cannot drop old days");
        }
    }
}
