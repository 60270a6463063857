//! The statistics store: one redb database of its own (`stats.redb` in the data
//! directory, or redb's in-memory backend beside the in-memory log), holding per UTC day
//! and scene one record of its 15-minute slots, the scenes with their lifetime totals,
//! and per user the follow a later unfollow is attributed to. A batch of events and the
//! log cursor it ends at are written in one transaction, so after any crash the counts
//! and the cursor agree and no event is counted twice or lost.
//!
//! Layout, and why:
//! - `days`: (UTC day, scene id) → the day's non-empty slots, each with its three counters
//!   and the sorted ids of the distinct users it reached. One record per scene and day
//!   keeps a 30-day query to ~31 reads per scene, while 15-minute slots fit every IANA
//!   zone's hours (see `buckets.rs`). Users are stored as dense interned ids, 4 bytes
//!   each, so distinct users over any range are counted with one stamp array per query.
//! - `scenes`: scene → its id, lifetime totals, first and last activity (ListScenes).
//! - `scene_names`: id → scene, for answers; `scene_users`: (scene id, user id), the
//!   lifetime distinct users.
//! - `users`: OpenID → user id and the scene of the `subscribe` that began the current
//!   follow (first-touch attribution). Kept for as long as the user follows: an unfollow
//!   years later still counts for the scene that brought the user.
//! - `meta`: format, AppID, the counted cursor, the next ids.

use std::{
    collections::{HashMap, hash_map::Entry as MapEntry},
    ops::Bound,
    path::Path,
    sync::RwLock,
};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction, backends::InMemoryBackend,
};

use super::{
    Counts, SceneQuery, SceneSeries, SceneSummary, StatsError,
    buckets::{DAY_SECONDS, SLOT_SECONDS, event_second},
};
use crate::events::{Cursor, Entry, EventKind};

const DAYS: TableDefinition<'_, (u32, u32), &[u8]> = TableDefinition::new("days");
const SCENES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("scenes");
const SCENE_NAMES: TableDefinition<'_, u32, &str> = TableDefinition::new("scene_names");
const SCENE_USERS: TableDefinition<'_, (u32, u32), ()> = TableDefinition::new("scene_users");
const USERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("users");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// The layout version; a store of another one is rebuilt.
const FORMAT: u32 = 1;
/// Slots in a UTC day.
const SLOTS_PER_DAY: i64 = DAY_SECONDS / SLOT_SECONDS;

fn store_error(e: impl std::fmt::Display) -> StatsError {
    StatsError::Store(e.to_string())
}

/// One slot of a day record.
#[derive(Debug, Default, Clone, PartialEq)]
struct Slot {
    index: u8,
    scans: u32,
    new_followers: u32,
    unfollows: u32,
    /// Distinct user ids, sorted.
    users: Vec<u32>,
}

/// A day record: its non-empty slots in order. Encoded as, per slot, `index u8, scans
/// u32, new_followers u32, unfollows u32, n u32, n × user u32`, little-endian.
#[derive(Debug, Default, Clone, PartialEq)]
struct Day(Vec<Slot>);

impl Day {
    fn decode(mut bytes: &[u8]) -> Self {
        let mut slots = Vec::new();
        while let Some(slot) = next_slot(&mut bytes) {
            slots.push(Slot {
                index: slot.index,
                scans: slot.scans,
                new_followers: slot.new_followers,
                unfollows: slot.unfollows,
                users: slot.users().collect(),
            });
        }
        Self(slots)
    }

    fn encode(&self) -> Vec<u8> {
        let size: usize = self.0.iter().map(|s| 17 + 4 * s.users.len()).sum();
        let mut out = Vec::with_capacity(size);
        for slot in &self.0 {
            out.push(slot.index);
            for n in [
                slot.scans,
                slot.new_followers,
                slot.unfollows,
                u32::try_from(slot.users.len()).unwrap_or(u32::MAX),
            ] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            for user in &slot.users {
                out.extend_from_slice(&user.to_le_bytes());
            }
        }
        out
    }

    fn slot(&mut self, index: u8) -> &mut Slot {
        let at = match self.0.binary_search_by_key(&index, |s| s.index) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(
                    at,
                    Slot {
                        index,
                        ..Slot::default()
                    },
                );
                at
            }
        };
        &mut self.0[at]
    }
}

/// A slot read in place from a stored record, without copying its users.
struct SlotView<'a> {
    index: u8,
    scans: u32,
    new_followers: u32,
    unfollows: u32,
    users: &'a [u8],
}

impl SlotView<'_> {
    fn users(&self) -> impl Iterator<Item = u32> + '_ {
        self.users
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The next slot of a record, advancing `bytes`; `None` at the end (or at a torn tail,
/// which a committed record never has).
fn next_slot<'a>(bytes: &mut &'a [u8]) -> Option<SlotView<'a>> {
    if bytes.len() < 17 {
        return None;
    }
    let n = le32(bytes, 13) as usize;
    let end = 17 + n * 4;
    if bytes.len() < end {
        return None;
    }
    let view = SlotView {
        index: bytes[0],
        scans: le32(bytes, 1),
        new_followers: le32(bytes, 5),
        unfollows: le32(bytes, 9),
        users: &bytes[17..end],
    };
    *bytes = &bytes[end..];
    Some(view)
}

/// A scene's row: its id, lifetime totals and activity span.
#[derive(Debug, Clone, Copy, Default)]
struct SceneRow {
    id: u32,
    totals: Counts,
    first: i64,
    last: i64,
}

impl SceneRow {
    fn encode(&self) -> [u8; 52] {
        let mut out = [0u8; 52];
        out[..4].copy_from_slice(&self.id.to_le_bytes());
        let t = &self.totals;
        for (i, n) in [t.scans, t.new_followers, t.unique_users, t.unfollows]
            .into_iter()
            .enumerate()
        {
            out[4 + i * 8..12 + i * 8].copy_from_slice(&n.to_le_bytes());
        }
        out[36..44].copy_from_slice(&self.first.to_le_bytes());
        out[44..52].copy_from_slice(&self.last.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Self {
        let u = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        Self {
            id: le32(bytes, 0),
            totals: Counts {
                scans: u(4),
                new_followers: u(12),
                unique_users: u(20),
                unfollows: u(28),
            },
            first: u(36) as i64,
            last: u(44) as i64,
        }
    }

    fn touch(&mut self, second: i64) {
        self.first = self.first.min(second);
        self.last = self.last.max(second);
    }
}

/// A user's row: the interned id and the scene of the follow in progress (0: none).
#[derive(Debug, Clone, Copy)]
struct UserRow {
    id: u32,
    follow: u32,
}

impl UserRow {
    fn encode(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&self.id.to_le_bytes());
        out[4..].copy_from_slice(&self.follow.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Self {
        Self {
            id: le32(bytes, 0),
            follow: le32(bytes, 4),
        }
    }
}

/// The store. Reads run in parallel with the one writer (the follower).
#[derive(Debug)]
pub struct StatsStore {
    /// `None` once closed.
    db: RwLock<Option<Database>>,
    /// Days of statistics kept.
    retain_days: u32,
}

/// What [`StatsStore::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Statistics counted up to this cursor.
    Counted(Cursor),
    /// Nothing counted yet: a new store (or one just emptied, see `why`).
    Empty {
        /// Why it is empty.
        why: EmptyBecause,
    },
}

/// Why a store starts empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBecause {
    /// The file did not exist (first start, or it was removed), or the backend is memory.
    New,
    /// It held another account's statistics, or another layout; they were dropped.
    Replaced,
}

/// The page cache of the statistics file.
const STATS_CACHE_BYTES: usize = 8 * 1024 * 1024;

impl StatsStore {
    /// Opens (or creates) the store file at `path` for the account `app_id`.
    pub fn open_file(
        path: &Path,
        app_id: &str,
        retain_days: u32,
    ) -> Result<(Self, Found), StatsError> {
        let existed = path.exists();
        // redb's default page cache is 1 GiB, filled as the file grows: the users table
        // grows with every distinct OpenID, so without a bound the cache would follow it
        // into memory. The store's reads are a few dozen records per query.
        let db = Database::builder()
            .set_cache_size(STATS_CACHE_BYTES)
            .create(path)
            .map_err(|e| StatsError::Open {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        Self::prepare(db, app_id, retain_days, existed)
    }

    /// A store in memory, gone when the process ends.
    pub fn open_memory(app_id: &str, retain_days: u32) -> Result<(Self, Found), StatsError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(store_error)?;
        Self::prepare(db, app_id, retain_days, false)
    }

    fn prepare(
        db: Database,
        app_id: &str,
        retain_days: u32,
        existed: bool,
    ) -> Result<(Self, Found), StatsError> {
        let write = db.begin_write().map_err(store_error)?;
        let found = {
            let mut meta = write.open_table(META).map_err(store_error)?;
            let format = meta
                .get("format")
                .map_err(store_error)?
                .map(|v| le32(v.value(), 0));
            let account = meta
                .get("app_id")
                .map_err(store_error)?
                .map(|v| v.value().to_vec());
            let cursor = meta
                .get("cursor")
                .map_err(store_error)?
                .and_then(|v| decode_cursor(v.value()));
            let ours = format == Some(FORMAT) && account.as_deref() == Some(app_id.as_bytes());
            match cursor {
                Some(cursor) if ours => Found::Counted(cursor),
                _ => {
                    let why = if existed && format.is_some() && !ours {
                        EmptyBecause::Replaced
                    } else {
                        EmptyBecause::New
                    };
                    meta.retain(|_, _| false).map_err(store_error)?;
                    meta.insert("format", &FORMAT.to_le_bytes()[..])
                        .map_err(store_error)?;
                    meta.insert("app_id", app_id.as_bytes())
                        .map_err(store_error)?;
                    Found::Empty { why }
                }
            }
        };
        if let Found::Empty { .. } = found {
            write
                .open_table(DAYS)
                .map_err(store_error)?
                .retain(|_, _| false)
                .map_err(store_error)?;
            write
                .open_table(SCENES)
                .map_err(store_error)?
                .retain(|_, _| false)
                .map_err(store_error)?;
            write
                .open_table(SCENE_NAMES)
                .map_err(store_error)?
                .retain(|_, _| false)
                .map_err(store_error)?;
            write
                .open_table(SCENE_USERS)
                .map_err(store_error)?
                .retain(|_, _| false)
                .map_err(store_error)?;
            write
                .open_table(USERS)
                .map_err(store_error)?
                .retain(|_, _| false)
                .map_err(store_error)?;
        }
        write.commit().map_err(store_error)?;
        Ok((
            Self {
                db: RwLock::new(Some(db)),
                retain_days,
            },
            found,
        ))
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StatsError>,
    ) -> Result<T, StatsError> {
        let guard = self.db.read().expect("stats store lock poisoned");
        let db = guard
            .as_ref()
            .ok_or_else(|| StatsError::Store("the statistics store is closed".to_owned()))?;
        f(db)
    }

    /// Closes the file: the next open needs no repair. Calls after it fail.
    pub fn close(&self) {
        *self.db.write().expect("stats store lock poisoned") = None;
    }

    /// The first UTC day still kept, at `now` (Unix seconds).
    fn cutoff_day(&self, now: i64) -> i64 {
        now.div_euclid(DAY_SECONDS) - i64::from(self.retain_days)
    }

    /// Records that everything up to `cursor` is counted, with nothing to add: the log
    /// moved on without events for the statistics (or they were lost to its retention).
    pub fn set_cursor(&self, cursor: Cursor) -> Result<(), StatsError> {
        self.with_db(|db| {
            let write = db.begin_write().map_err(store_error)?;
            write
                .open_table(META)
                .map_err(store_error)?
                .insert("cursor", &encode_cursor(cursor)[..])
                .map_err(store_error)?;
            write.commit().map_err(store_error)
        })
    }

    /// Counts `entries` (in log order) and records the last one's cursor, in one
    /// transaction. `now` (Unix seconds) decides what is too old to keep.
    ///
    /// `durable`: the commit is synced before this returns. Otherwise it is redb's
    /// non-durable commit (no sync): a crash may roll it back, together with the cursor
    /// it wrote, and the events are counted again from the log; the next durable commit
    /// (or [`StatsStore::flush`], or closing the store) makes it permanent.
    pub fn apply(&self, entries: &[Entry], now: i64, durable: bool) -> Result<(), StatsError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        self.with_db(|db| {
            let mut write = db.begin_write().map_err(store_error)?;
            if !durable {
                write
                    .set_durability(Durability::None)
                    .map_err(store_error)?;
            }
            let cutoff = self.cutoff_day(now);
            {
                let mut batch = Batch::open(&write)?;
                for entry in entries {
                    batch.count(entry, cutoff)?;
                }
                batch.finish(encode_cursor(last.cursor))?;
            }
            write.commit().map_err(store_error)
        })
    }

    /// Makes every commit so far durable (one synced empty commit).
    pub fn flush(&self) -> Result<(), StatsError> {
        self.with_db(|db| {
            let write = db.begin_write().map_err(store_error)?;
            write.commit().map_err(store_error)
        })
    }

    /// Drops days and scenes older than the retention at `now` (Unix seconds).
    pub fn sweep(&self, now: i64) -> Result<(), StatsError> {
        let cutoff = self.cutoff_day(now);
        let Ok(cutoff_key) = u32::try_from(cutoff) else {
            return Ok(());
        };
        self.with_db(|db| {
            let write = db.begin_write().map_err(store_error)?;
            {
                let mut days = write.open_table(DAYS).map_err(store_error)?;
                days.retain_in((0, 0)..(cutoff_key, 0), |_, _| false)
                    .map_err(store_error)?;
                let mut scenes = write.open_table(SCENES).map_err(store_error)?;
                let mut gone = Vec::new();
                for row in scenes.iter().map_err(store_error)? {
                    let (name, value) = row.map_err(store_error)?;
                    let scene = SceneRow::decode(value.value());
                    if scene.last.div_euclid(DAY_SECONDS) < cutoff {
                        gone.push((name.value().to_owned(), scene.id));
                    }
                }
                let mut names = write.open_table(SCENE_NAMES).map_err(store_error)?;
                let mut scene_users = write.open_table(SCENE_USERS).map_err(store_error)?;
                for (name, id) in &gone {
                    scenes.remove(name.as_str()).map_err(store_error)?;
                    names.remove(*id).map_err(store_error)?;
                    scene_users
                        .retain_in((*id, 0)..=(*id, u32::MAX), |_, ()| false)
                        .map_err(store_error)?;
                }
                if !gone.is_empty() {
                    tracing::info!(
                        scenes = gone.len(),
                        "channel statistics: forgot scenes inactive for longer than the retention"
                    );
                }
            }
            write.commit().map_err(store_error)
        })
    }

    /// Counts per scene and bucket for `query`: the top `query.max_scenes` scenes, and
    /// how many active ones were left out.
    pub fn scene_stats(&self, query: &SceneQuery) -> Result<(Vec<SceneSeries>, usize), StatsError> {
        let edges = &query.edges;
        let (Some(&start), Some(&end)) = (edges.first(), edges.last()) else {
            return Ok((Vec::new(), 0));
        };
        let clamp = |d: i64| u32::try_from(d.max(0)).unwrap_or(u32::MAX);
        let first_day = clamp(start.div_euclid(DAY_SECONDS));
        let last_day = clamp((end - 1).div_euclid(DAY_SECONDS));
        self.with_db(|db| {
            let read = db.begin_read().map_err(store_error)?;
            let days = read.open_table(DAYS).map_err(store_error)?;
            let users = read
                .open_table(META)
                .map_err(store_error)?
                .get("next_user")
                .map_err(store_error)?
                .map_or(1, |v| le32(v.value(), 0));
            let mut tally = Tally::new(edges, users);
            let mut named: Vec<(String, SceneTally)> = Vec::new();
            if query.scenes.is_empty() {
                // One range read over every scene's records of the range (day-major),
                // then each scene's days in order.
                let mut records: Vec<(u32, u32, Vec<u8>)> = Vec::new();
                for row in days
                    .range((first_day, 0)..=(last_day, u32::MAX))
                    .map_err(store_error)?
                {
                    let (key, value) = row.map_err(store_error)?;
                    let (day, scene) = key.value();
                    records.push((scene, day, value.value().to_vec()));
                }
                records.sort_by_key(|(scene, day, _)| (*scene, *day));
                let names = read.open_table(SCENE_NAMES).map_err(store_error)?;
                for group in records.chunk_by(|a, b| a.0 == b.0) {
                    let id = group[0].0;
                    let sums = tally.scene(group.iter().map(|(_, day, v)| (*day, v.as_slice())));
                    if let Some(name) = names.get(id).map_err(store_error)? {
                        named.push((name.value().to_owned(), sums));
                    }
                }
            } else {
                // Point reads of the asked scenes' days.
                let scenes = read.open_table(SCENES).map_err(store_error)?;
                for name in &query.scenes {
                    let mut records = Vec::new();
                    if let Some(row) = scenes.get(name.as_str()).map_err(store_error)? {
                        let id = SceneRow::decode(row.value()).id;
                        for day in first_day..=last_day {
                            if let Some(value) = days.get((day, id)).map_err(store_error)? {
                                records.push((day, value.value().to_vec()));
                            }
                        }
                    }
                    let sums = tally.scene(records.iter().map(|(day, v)| (*day, v.as_slice())));
                    named.push((name.clone(), sums));
                }
            }
            named.sort_by(|(a_name, a), (b_name, b)| {
                b.totals
                    .new_followers
                    .cmp(&a.totals.new_followers)
                    .then(b.totals.scans.cmp(&a.totals.scans))
                    .then_with(|| a_name.cmp(b_name))
            });
            let omitted = named.len().saturating_sub(query.max_scenes);
            named.truncate(query.max_scenes);
            Ok((
                named
                    .into_iter()
                    .map(|(name, sums)| sums.finish(name))
                    .collect(),
                omitted,
            ))
        })
    }

    /// Up to `limit` scenes after `after` (in byte order), and whether more follow.
    pub fn list_scenes(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SceneSummary>, bool), StatsError> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(store_error)?;
            let scenes = read.open_table(SCENES).map_err(store_error)?;
            let lower = match after {
                Some(name) => Bound::Excluded(name),
                None => Bound::Unbounded,
            };
            let mut page = Vec::with_capacity(limit.min(1024));
            let mut more = false;
            for row in scenes
                .range::<&str>((lower, Bound::Unbounded))
                .map_err(store_error)?
            {
                if page.len() == limit {
                    more = true;
                    break;
                }
                let (name, value) = row.map_err(store_error)?;
                let row = SceneRow::decode(value.value());
                page.push(SceneSummary {
                    scene: name.value().to_owned(),
                    totals: row.totals,
                    first_activity: row.first,
                    last_activity: row.last,
                });
            }
            Ok((page, more))
        })
    }
}

fn encode_cursor(cursor: Cursor) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&cursor.epoch.to_be_bytes());
    out[4..].copy_from_slice(&cursor.seq.to_be_bytes());
    out
}

fn decode_cursor(bytes: &[u8]) -> Option<Cursor> {
    let bytes: [u8; 12] = bytes.try_into().ok()?;
    Some(Cursor {
        epoch: u32::from_be_bytes(bytes[..4].try_into().ok()?),
        seq: u64::from_be_bytes(bytes[4..].try_into().ok()?),
    })
}

/// One write transaction's view: the rows a batch touches, kept decoded until the end.
struct Batch<'t> {
    days: Table<'t, (u32, u32), &'static [u8]>,
    scenes: Table<'t, &'static str, &'static [u8]>,
    names: Table<'t, u32, &'static str>,
    scene_users: Table<'t, (u32, u32), ()>,
    users: Table<'t, &'static str, &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    touched_days: HashMap<(u32, u32), Day>,
    touched_scenes: HashMap<String, SceneRow>,
    touched_users: HashMap<String, UserRow>,
    /// Scene names by id, for unfollows.
    names_by_id: HashMap<u32, Option<String>>,
    next_user: u32,
    next_scene: u32,
}

impl<'t> Batch<'t> {
    fn open(write: &'t WriteTransaction) -> Result<Self, StatsError> {
        let meta = write.open_table(META).map_err(store_error)?;
        let counter = |name: &str| -> Result<u32, StatsError> {
            Ok(meta
                .get(name)
                .map_err(store_error)?
                .map_or(1, |v| le32(v.value(), 0)))
        };
        let next_user = counter("next_user")?;
        let next_scene = counter("next_scene")?;
        Ok(Self {
            days: write.open_table(DAYS).map_err(store_error)?,
            scenes: write.open_table(SCENES).map_err(store_error)?,
            names: write.open_table(SCENE_NAMES).map_err(store_error)?,
            scene_users: write.open_table(SCENE_USERS).map_err(store_error)?,
            users: write.open_table(USERS).map_err(store_error)?,
            meta,
            touched_days: HashMap::new(),
            touched_scenes: HashMap::new(),
            touched_users: HashMap::new(),
            names_by_id: HashMap::new(),
            next_user,
            next_scene,
        })
    }

    fn count(&mut self, entry: &Entry, cutoff_day: i64) -> Result<(), StatsError> {
        let event = &entry.event;
        let received = event
            .received_time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let second = event_second(event.create_time, received);
        let day = second.div_euclid(DAY_SECONDS);
        // Too old for the retention: only the user's follow state is kept.
        let kept = day >= cutoff_day;
        let key = (
            u32::try_from(day).unwrap_or(u32::MAX),
            u8::try_from(second.rem_euclid(DAY_SECONDS) / SLOT_SECONDS).unwrap_or(0),
        );
        match event.kind {
            EventKind::Subscribe | EventKind::Scan if !event.scene.is_empty() => {
                let followed = event.kind == EventKind::Subscribe;
                let user = self.user(&event.openid, true)?.expect("created");
                let scene = self.scene(&event.scene, second)?;
                if followed {
                    self.touched_users
                        .get_mut(event.openid.as_str())
                        .expect("just touched")
                        .follow = scene;
                }
                if kept {
                    let slot = self.day(key.0, scene)?.slot(key.1);
                    if followed {
                        slot.new_followers += 1;
                    } else {
                        slot.scans += 1;
                    }
                    if let Err(at) = slot.users.binary_search(&user.id) {
                        slot.users.insert(at, user.id);
                    }
                    let first_time = self
                        .scene_users
                        .insert((scene, user.id), ())
                        .map_err(store_error)?
                        .is_none();
                    let row = self
                        .touched_scenes
                        .get_mut(event.scene.as_str())
                        .expect("just touched");
                    if followed {
                        row.totals.new_followers += 1;
                    } else {
                        row.totals.scans += 1;
                    }
                    row.totals.unique_users += u64::from(first_time);
                    row.touch(second);
                }
            }
            EventKind::Subscribe => {
                // Followed without a code: a later unfollow belongs to no scene.
                if self.user(&event.openid, false)?.is_some() {
                    self.touched_users
                        .get_mut(event.openid.as_str())
                        .expect("just touched")
                        .follow = 0;
                }
            }
            EventKind::Scan => {}
            EventKind::Unsubscribe => {
                let Some(user) = self.user(&event.openid, false)? else {
                    return Ok(());
                };
                self.touched_users
                    .get_mut(event.openid.as_str())
                    .expect("just touched")
                    .follow = 0;
                if user.follow == 0 || !kept {
                    return Ok(());
                }
                let Some(name) = self.name_of(user.follow)? else {
                    return Ok(());
                };
                self.scene(&name, second)?;
                self.day(key.0, user.follow)?.slot(key.1).unfollows += 1;
                let row = self
                    .touched_scenes
                    .get_mut(name.as_str())
                    .expect("just touched");
                row.totals.unfollows += 1;
                row.touch(second);
            }
        }
        Ok(())
    }

    /// The user's row (created when `create`), loaded into the batch.
    fn user(&mut self, openid: &str, create: bool) -> Result<Option<UserRow>, StatsError> {
        if let Some(row) = self.touched_users.get(openid) {
            return Ok(Some(*row));
        }
        let stored = self
            .users
            .get(openid)
            .map_err(store_error)?
            .map(|v| UserRow::decode(v.value()));
        let row = match stored {
            Some(row) => row,
            None if create => {
                let row = UserRow {
                    id: self.next_user,
                    follow: 0,
                };
                self.next_user += 1;
                row
            }
            None => return Ok(None),
        };
        self.touched_users.insert(openid.to_owned(), row);
        Ok(Some(row))
    }

    /// The scene's id, its row loaded (or created at `second`) into the batch.
    fn scene(&mut self, name: &str, second: i64) -> Result<u32, StatsError> {
        if let Some(row) = self.touched_scenes.get(name) {
            return Ok(row.id);
        }
        let row = match self.scenes.get(name).map_err(store_error)? {
            Some(v) => SceneRow::decode(v.value()),
            None => {
                let id = self.next_scene;
                self.next_scene += 1;
                self.names.insert(id, name).map_err(store_error)?;
                SceneRow {
                    id,
                    totals: Counts::default(),
                    first: second,
                    last: second,
                }
            }
        };
        self.names_by_id.insert(row.id, Some(name.to_owned()));
        self.touched_scenes.insert(name.to_owned(), row);
        Ok(row.id)
    }

    fn name_of(&mut self, id: u32) -> Result<Option<String>, StatsError> {
        if let Some(name) = self.names_by_id.get(&id) {
            return Ok(name.clone());
        }
        let name = self
            .names
            .get(id)
            .map_err(store_error)?
            .map(|v| v.value().to_owned());
        self.names_by_id.insert(id, name.clone());
        Ok(name)
    }

    fn day(&mut self, day: u32, scene: u32) -> Result<&mut Day, StatsError> {
        Ok(match self.touched_days.entry((day, scene)) {
            MapEntry::Occupied(e) => e.into_mut(),
            MapEntry::Vacant(e) => {
                let stored = self
                    .days
                    .get((day, scene))
                    .map_err(store_error)?
                    .map(|v| Day::decode(v.value()))
                    .unwrap_or_default();
                e.insert(stored)
            }
        })
    }

    /// Writes every touched row, the next ids and the cursor.
    fn finish(mut self, cursor: [u8; 12]) -> Result<(), StatsError> {
        for (key, day) in &self.touched_days {
            self.days
                .insert(*key, day.encode().as_slice())
                .map_err(store_error)?;
        }
        for (name, row) in &self.touched_scenes {
            self.scenes
                .insert(name.as_str(), &row.encode()[..])
                .map_err(store_error)?;
        }
        for (openid, row) in &self.touched_users {
            self.users
                .insert(openid.as_str(), &row.encode()[..])
                .map_err(store_error)?;
        }
        self.meta
            .insert("next_user", &self.next_user.to_le_bytes()[..])
            .map_err(store_error)?;
        self.meta
            .insert("next_scene", &self.next_scene.to_le_bytes()[..])
            .map_err(store_error)?;
        self.meta
            .insert("cursor", &cursor[..])
            .map_err(store_error)?;
        Ok(())
    }
}

/// A query's sums, one scene at a time. Distinct users are counted with stamps: one
/// slot per user id (ids are dense, from 1), holding the bucket (or scene) pass that last
/// saw the user, so each stored user id costs two array reads — no sorting, no hashing.
struct Tally<'e> {
    edges: &'e [i64],
    /// Per user id: the last bucket pass that counted it.
    bucket_seen: Vec<u32>,
    /// Per user id: the last scene pass that counted it.
    scene_seen: Vec<u32>,
    bucket_pass: u32,
    scene_pass: u32,
}

/// One scene's sums: its non-empty buckets in order, and its totals.
struct SceneTally {
    /// (bucket index, counts), buckets ascending.
    buckets: Vec<(usize, Counts)>,
    totals: Counts,
    buckets_total: usize,
}

impl<'e> Tally<'e> {
    fn new(edges: &'e [i64], users: u32) -> Self {
        let users = users as usize + 1;
        Self {
            edges,
            bucket_seen: vec![0; users],
            scene_seen: vec![0; users],
            bucket_pass: 0,
            scene_pass: 0,
        }
    }

    /// Sums one scene's day records, given in day order.
    fn scene<'r>(&mut self, days: impl IntoIterator<Item = (u32, &'r [u8])>) -> SceneTally {
        let edges = self.edges;
        let (start, end) = (edges[0], edges[edges.len() - 1]);
        self.scene_pass += 1;
        let mut tally = SceneTally {
            buckets: Vec::new(),
            totals: Counts::default(),
            buckets_total: edges.len() - 1,
        };
        for (day, mut record) in days {
            let day_start = i64::from(day) * DAY_SECONDS;
            while let Some(slot) = next_slot(&mut record) {
                let at = day_start + i64::from(slot.index) * SLOT_SECONDS;
                if at < start || at >= end || i64::from(slot.index) >= SLOTS_PER_DAY {
                    continue;
                }
                let bucket = edges.partition_point(|&e| e <= at) - 1;
                if tally.buckets.last().is_none_or(|(b, _)| *b != bucket) {
                    self.bucket_pass += 1;
                    tally.buckets.push((bucket, Counts::default()));
                }
                let counts = &mut tally.buckets.last_mut().expect("just pushed").1;
                counts.scans += u64::from(slot.scans);
                counts.new_followers += u64::from(slot.new_followers);
                counts.unfollows += u64::from(slot.unfollows);
                tally.totals.scans += u64::from(slot.scans);
                tally.totals.new_followers += u64::from(slot.new_followers);
                tally.totals.unfollows += u64::from(slot.unfollows);
                for user in slot.users() {
                    let user = user as usize;
                    if user >= self.bucket_seen.len() {
                        self.bucket_seen.resize(user + 1, 0);
                        self.scene_seen.resize(user + 1, 0);
                    }
                    if self.bucket_seen[user] != self.bucket_pass {
                        self.bucket_seen[user] = self.bucket_pass;
                        counts.unique_users += 1;
                    }
                    if self.scene_seen[user] != self.scene_pass {
                        self.scene_seen[user] = self.scene_pass;
                        tally.totals.unique_users += 1;
                    }
                }
            }
        }
        tally
    }
}

impl SceneTally {
    fn finish(self, scene: String) -> SceneSeries {
        let mut dense = vec![Counts::default(); self.buckets_total];
        for (bucket, counts) in self.buckets {
            dense[bucket] = counts;
        }
        SceneSeries {
            scene,
            buckets: dense,
            totals: self.totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_records_round_trip() {
        let mut day = Day::default();
        day.slot(40).scans = 3;
        day.slot(2).users = vec![1, 5, 9];
        day.slot(95).unfollows = 1;
        let bytes = day.encode();
        assert_eq!(Day::decode(&bytes), day);
        assert_eq!(
            day.0.iter().map(|s| s.index).collect::<Vec<_>>(),
            vec![2, 40, 95]
        );
    }
}
