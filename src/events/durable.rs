//! The durable event log (the default): a log of the project's own in the data
//! directory's `log/`, one checksummed record per push (the event, its de-duplication key
//! and the replay-guard seals that came with it) appended to segment files, and an
//! acknowledgement only after the `fdatasync` that covers the record (see `segment.rs`
//! for the format). One writer thread writes and syncs one group of appends at a time;
//! appends arriving while it syncs wait in its queue and form the next group, so
//! concurrent pushes share a sync. Every index lives in memory and is rebuilt from the
//! log at start-up: the sparse offset index of each segment, the de-duplication keys of
//! the last [`DEDUP_WINDOW`] and the seals still inside the replay window. Retention
//! (count, age, bytes) moves the log's start event by event and deletes a segment once
//! none of its events is retained. The next segment is created ahead (pre-allocated and
//! synced, on a thread of its own) as `log/next-segment.spare`: a full segment rolls by
//! renaming it, and the first group written into it syncs the directory with its data
//! (its name is durable before any of it is acknowledged), so a push waits for no
//! allocation or file sync of a new segment, only for that directory sync. The epoch,
//! the account and the permanent-scene records, rarely written, stay in a small redb
//! file beside the log (`wechat-qr.redb`, which also held the events before this
//! format: it is migrated once, on first open).
//!
//! Recovery: a damaged record at the end of the newest segment is a write the crash
//! interrupted, never acknowledged: it is cut off, and one warning line says what was
//! dropped. A damaged record anywhere else is corruption: the start is refused, naming
//! the segment and the byte offset, since acknowledged events would otherwise vanish.
//! Recovery reads only segment names: a spare a crash left behind is created afresh,
//! and a renamed spare nothing was synced into is an empty newest segment.
//!
//! A failed write or sync (a full disk, an I/O error) fails the appends of that group
//! with [`LogError::Unavailable`] — the segment is cut back to where the group began, so
//! WeChat's retry is not a duplicate — and marks the log unwritable until a write
//! succeeds again.

use std::{
    collections::{HashMap, VecDeque},
    fs::{File, OpenOptions, TryLockError},
    os::{fd::AsRawFd, unix::fs::FileExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, mpsc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::{
    Appended, Cursor, DedupKey, Entry, Event, EventKind, EventLog, LogError, Seal,
    segment::{self, Frame, INDEX_EVERY, ReadError, Segment},
};
use crate::config::Retention;

/// The log's own facts: account, epoch, next sequence number, format.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Small records the layers above keep beside the log (permanent scenes).
const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
/// Format 1 (before `log/`): sequence number → the stored event (JSON).
const OLD_EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
/// Format 1: de-duplication key → sequence number.
const OLD_DEDUP: TableDefinition<'_, &str, u64> = TableDefinition::new("dedup");
/// Format 1: the replay guard's seals.
const OLD_SEALS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("seals");

/// The format this release writes: events in `log/`, META and RECORDS in the store file.
const FORMAT: u64 = 2;

/// The small store beside the log inside the data directory.
pub const STORE_FILE: &str = "wechat-qr.redb";
/// The lock file: held while an instance runs on the directory.
pub const LOCK_FILE: &str = "LOCK";
/// The log's segments inside the data directory.
pub const LOG_DIR: &str = "log";
/// Where a migration builds the log before it replaces `log/`.
const MIGRATING_DIR: &str = "log.migrating";

/// Recent events kept decoded in memory, so live subscribers never touch the files.
const TAIL_EVENTS: usize = 4096;
/// Appends taken into one group at most.
const MAX_BATCH: usize = 4096;
/// How long a seal whose push has not (yet) appended an event waits for one to ride
/// with, before it is written in a record of its own.
const SEAL_LINGER: Duration = Duration::from_millis(2);
/// How long a push's de-duplication key is remembered (while its event is retained):
/// WeChat retries an unanswered push within about 15 seconds; five minutes covers that
/// and a slow retry with room, and bounds the memory under a flood.
pub(super) const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// The smallest and largest segment; between them an eighth of the byte retention, so
/// retention deletes a segment at a time without holding much more than it promises.
const SEGMENT_BYTES: (u64, u64) = (64 * 1024, 64 * 1024 * 1024);
/// Growth of a segment past its pre-allocation, at least.
const GROW_STEP: u64 = 1024 * 1024;
/// The next segment, created (pre-allocated and synced) ahead of need so that a roll
/// renames it rather than creating a file on a push's path. Not a segment name, so
/// recovery never reads it; one a crash leaves behind is created afresh.
const SPARE_FILE: &str = "next-segment.spare";
/// Why the data directory cannot be used. Each names the path and the cause.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory exists but files cannot be written in it.
    #[error("the data directory {path} is not writable: {source}")]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another running instance holds the directory's lock.
    #[error(
        "the data directory {path} is in use by another running wechat-qr (its lock file {path}/{LOCK_FILE} is held); stop that instance or choose another --data-dir"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The directory holds another account's data.
    #[error(
        "the data directory {path} holds data of AppID {found}, which is not among the configured accounts ({configured}); use another --data-dir for this deployment"
    )]
    OtherAccount {
        /// The directory.
        path: PathBuf,
        /// The AppID in the store.
        found: String,
        /// The configured AppIDs.
        configured: String,
    },
    /// Redis (`WECHAT_QR_REDIS_URL`) cannot be reached or used.
    #[error("cannot use Redis at {url}: {reason}")]
    Redis {
        /// The URL, its password redacted.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The store file is another kind of file: never a store, or not one any more.
    #[error(
        "{path} is not a wechat-qr event store ({reason}); move it out of the data directory or choose another --data-dir"
    )]
    NotAStore {
        /// The store file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// A segment of the log is damaged where acknowledged events are: the start is
    /// refused rather than serving around a hole.
    #[error(
        "the event log is corrupt: {reason}; restore the data directory from a backup, or move that segment and every older one out of {log_dir} to start from the events after it"
    )]
    Corrupt {
        /// The log directory.
        log_dir: PathBuf,
        /// The segment, the byte offset and what is wrong.
        reason: String,
    },
    /// The store file cannot be opened or read.
    #[error("cannot open the event store {path}: {reason}")]
    Store {
        /// The store file.
        path: PathBuf,
        /// The store's error.
        reason: String,
    },
}

/// One event as stored: the event and the key that de-duplicates it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Stored {
    kind: u8,
    openid: String,
    scene: String,
    ticket: String,
    account: String,
    /// Empty in events stored before accounts were recorded: those belong to the
    /// store's own account (its `app_id` in META).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    app_id: String,
    create_time: u64,
    /// Milliseconds since the epoch; also what age-based retention compares.
    received_ms: u64,
    new_follower: bool,
    key: String,
}

impl Stored {
    pub(super) fn new(event: &Event, key: &DedupKey) -> Self {
        Self {
            kind: match event.kind {
                EventKind::Subscribe => 1,
                EventKind::Scan => 2,
                EventKind::Unsubscribe => 3,
            },
            openid: event.openid.clone(),
            scene: event.scene.clone(),
            ticket: event.ticket.clone(),
            account: event.account.clone(),
            app_id: event.app_id.clone(),
            create_time: event.create_time,
            received_ms: millis(event.received_time),
            new_follower: event.new_follower,
            key: key.as_str().to_owned(),
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        serde_json::from_slice(bytes)
            .map_err(|e| LogError::Unavailable(format!("unreadable stored event: {e}")))
    }

    /// The event; `owner` is the store's own account, the AppID of events stored
    /// before each event recorded its own.
    pub(super) fn into_event(self, owner: &str) -> Event {
        Event {
            kind: match self.kind {
                1 => EventKind::Subscribe,
                3 => EventKind::Unsubscribe,
                _ => EventKind::Scan,
            },
            openid: self.openid,
            scene: self.scene,
            ticket: self.ticket,
            account: self.account,
            app_id: if self.app_id.is_empty() {
                owner.to_owned()
            } else {
                self.app_id
            },
            create_time: self.create_time,
            received_time: UNIX_EPOCH + Duration::from_millis(self.received_ms),
            new_follower: self.new_follower,
        }
    }
}
fn millis(time: SystemTime) -> u64 {
    u64::try_from(
        time.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn storage_error(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

fn read_error(e: ReadError) -> LogError {
    if matches!(e, ReadError::Corrupt { .. }) {
        tracing::error!(error = %e, "a stored event failed its checksum: it is not served");
    }
    LogError::Unavailable(e.to_string())
}

/// What readers see of the log: its bounds, its segments and the recent events.
#[derive(Debug)]
struct Shared {
    /// Sequence number of the oldest retained event (or of the next, when empty).
    first_seq: u64,
    /// Sequence number the next event gets.
    next_seq: u64,
    /// The segments holding retained events, oldest first; the last is being written.
    segments: VecDeque<Segment>,
    /// The newest retained events, decoded, oldest first; contiguous up to `next_seq - 1`.
    recent: VecDeque<Entry>,
}

/// A write for the writer thread.
enum Request {
    Append {
        event: Event,
        key: DedupKey,
        reply: oneshot::Sender<Result<Appended, LogError>>,
    },
    /// Remember a replay-guard seal: it rides in the record of the next append.
    Seal {
        seal: Seal,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Stop the thread.
    Close { reply: oneshot::Sender<()> },
}

/// The durable [`EventLog`].
#[derive(Debug)]
pub struct DurableLog {
    epoch: u32,
    /// The store file beside the log.
    file: PathBuf,
    /// The store of META and RECORDS; `None` after [`EventLog::close`], or while it is
    /// reopened after a failed write.
    state: Arc<Mutex<Option<Database>>>,
    shared: Arc<RwLock<Shared>>,
    /// To the writer thread; the thread ends when the log (its last sender) drops.
    writes: Mutex<mpsc::Sender<Request>>,
    head: watch::Sender<u64>,
    writable: watch::Sender<bool>,
    /// Seals found in the log at start-up, until the replay guard takes them.
    recovered_seals: Mutex<Vec<Seal>>,
    /// Held for the life of the log: the directory's lock.
    _lock: File,
}

/// The segment being written, as the writer sees it.
struct Active {
    file: File,
    path: PathBuf,
    /// Where the next record goes: everything before it is synced.
    pos: u64,
    /// Bytes allocated to the file.
    allocated: u64,
    /// Its first event's sequence number.
    first_seq: u64,
}

/// The writer thread's state.
struct Writer {
    log_dir: PathBuf,
    shared: Arc<RwLock<Shared>>,
    epoch: u32,
    retention: Retention,
    /// How long seals are kept past their timestamp.
    seal_keep: Duration,
    segment_bytes: u64,
    active: Active,
    first_seq: u64,
    next_seq: u64,
    /// `(received_ms, stored size)` of each retained event, from `first_seq` on.
    retained: VecDeque<(u64, u64)>,
    /// Bytes of retained events as stored.
    bytes: u64,
    /// The de-duplication keys of the last [`DEDUP_WINDOW`] of retained events.
    dedup: HashMap<DedupKey, u64>,
    /// The same keys in the order they were appended: `(received_ms, seq, key)`.
    dedup_order: VecDeque<(u64, u64, DedupKey)>,
    /// Seals not yet written, with their replies and when they arrived.
    pending: Vec<(Seal, SealReply, Instant)>,
    /// Old segments retention has emptied: deleted once their live seals are carried
    /// into a synced record of the active segment.
    doomed: Vec<Segment>,
    /// The group being written.
    buf: Vec<u8>,
    /// The next segment being created off the push path; a roll takes it.
    spare: Option<std::thread::JoinHandle<std::io::Result<Active>>>,
    /// The active segment's name is not yet synced into the directory (it was renamed
    /// from the spare): the first group written into it syncs the directory too.
    name_unsynced: bool,
    head: watch::Sender<u64>,
    writable: watch::Sender<bool>,
}

/// Where the answer to a seal request goes.
type SealReply = oneshot::Sender<Result<(), LogError>>;

/// What recovery found in `log/`.
struct Recovered {
    segments: VecDeque<Segment>,
    first_seq: u64,
    next_seq: u64,
    retained: VecDeque<(u64, u64)>,
    bytes: u64,
    dedup_order: VecDeque<(u64, u64, DedupKey)>,
    seals: Vec<Seal>,
}

impl DurableLog {
    /// Opens (or creates) the store in `dir` for the accounts `app_ids` (a new store
    /// belongs to the first). Creates the directory, takes its lock and checks that the
    /// store's account is among them; on any failure the directory's data is left
    /// untouched. Migrates a store of the previous format, recovers the log, and starts
    /// the writer thread.
    pub fn open(
        dir: &Path,
        app_ids: &[String],
        retention: Retention,
        seal_keep: Duration,
    ) -> Result<Arc<Self>, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Create {
            path: dir.to_owned(),
            source,
        })?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|source| OpenError::NotWritable {
                path: dir.to_owned(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path: dir.to_owned(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(OpenError::NotWritable {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
        let file = dir.join(STORE_FILE);
        let store_error = |reason: String| OpenError::Store {
            path: file.clone(),
            reason,
        };
        // A file that is no store is named as such (not as an unwritable directory), and
        // left as it was.
        if let Some(reason) = not_a_store(&file) {
            return Err(OpenError::NotAStore { path: file, reason });
        }
        // Another account's data is refused before the file is opened for writing, so
        // that mistake leaves it byte for byte as it was.
        if let Some(found) = stored_app_id(&file).filter(|found| !app_ids.contains(found)) {
            return Err(OpenError::OtherAccount {
                path: dir.to_owned(),
                found,
                configured: app_ids.join(", "),
            });
        }
        let db = open_database(&file).map_err(|e| match e {
            OpenFailure::Io(source) => OpenError::NotWritable {
                path: dir.to_owned(),
                source,
            },
            OpenFailure::Other(reason) => store_error(reason),
        })?;
        let facts = prepare(&db, app_ids).map_err(|e| match e {
            Prepare::OtherAccount(found) => OpenError::OtherAccount {
                path: dir.to_owned(),
                found,
                configured: app_ids.join(", "),
            },
            Prepare::Store(reason) => store_error(reason),
        })?;
        let segment_bytes = (retention.max_bytes / 8).clamp(SEGMENT_BYTES.0, SEGMENT_BYTES.1);
        let mut db = db;
        if facts.format < FORMAT {
            migrate(&mut db, dir, &facts, segment_bytes, seal_keep).map_err(store_error)?;
        }
        let log_dir = dir.join(LOG_DIR);
        let not_writable = |source| OpenError::NotWritable {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(&log_dir).map_err(not_writable)?;
        let now_ms = millis(SystemTime::now());
        let recovered = recover(&log_dir, facts.next_seq, now_ms, seal_keep)?;
        let mut segments = recovered.segments;
        let active = match segments.back() {
            Some(last) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(not_writable)?;
                let allocated = file.metadata().map_err(not_writable)?.len();
                Active {
                    file,
                    path: last.path.clone(),
                    pos: last.end,
                    allocated,
                    first_seq: last.first_seq,
                }
            }
            None => {
                let active = create_segment(&log_dir, recovered.next_seq, segment_bytes)
                    .map_err(not_writable)?;
                segments.push_back(active.reader().map_err(not_writable)?);
                active
            }
        };
        let epoch = facts.epoch;
        let shared = Arc::new(RwLock::new(Shared {
            first_seq: recovered.first_seq,
            next_seq: recovered.next_seq,
            segments,
            recent: VecDeque::new(),
        }));
        let head = watch::Sender::new(recovered.next_seq - 1);
        let writable = watch::Sender::new(true);
        let mut dedup = HashMap::with_capacity(recovered.dedup_order.len());
        for (_, seq, key) in &recovered.dedup_order {
            dedup.insert(key.clone(), *seq);
        }
        let mut writer = Writer {
            log_dir,
            shared: shared.clone(),
            epoch,
            retention,
            seal_keep,
            segment_bytes,
            active,
            first_seq: recovered.first_seq,
            next_seq: recovered.next_seq,
            retained: recovered.retained,
            bytes: recovered.bytes,
            dedup,
            dedup_order: recovered.dedup_order,
            pending: Vec::new(),
            doomed: Vec::new(),
            buf: Vec::with_capacity(1024 * 1024),
            spare: None,
            name_unsynced: false,
            head: head.clone(),
            writable: writable.clone(),
        };
        writer.enforce(now_ms);
        writer.prepare_spare();
        let log = Self {
            epoch,
            file: file.clone(),
            state: Arc::new(Mutex::new(Some(db))),
            shared,
            writes: Mutex::new(mpsc::channel().0),
            head,
            writable,
            recovered_seals: Mutex::new(recovered.seals),
            _lock: lock,
        };
        log.load_tail().map_err(|e| store_error(e.to_string()))?;
        let (writes, requests) = mpsc::channel();
        *log.writes.lock().expect("writer channel lock poisoned") = writes;
        std::thread::Builder::new()
            .name("event-log-writer".to_owned())
            .spawn(move || writer.run(&requests))
            .map_err(|e| store_error(format!("cannot start the writer thread: {e}")))?;
        Ok(Arc::new(log))
    }

    fn cursor(&self, seq: u64) -> Cursor {
        Cursor {
            epoch: self.epoch,
            seq,
        }
    }

    fn send(&self, request: Request) -> Result<(), LogError> {
        self.writes
            .lock()
            .expect("writer channel lock poisoned")
            .send(request)
            .map_err(|_| LogError::Unavailable("the event log writer has stopped".to_owned()))
    }

    /// Decodes the newest retained events into the in-memory tail.
    fn load_tail(&self) -> Result<(), LogError> {
        let (first, next) = {
            let shared = self.shared.read().expect("log lock poisoned");
            (shared.first_seq, shared.next_seq)
        };
        let from = first.max(next.saturating_sub(TAIL_EVENTS as u64));
        let entries = self.read_segments(from, TAIL_EVENTS)?;
        self.shared.write().expect("log lock poisoned").recent = entries.into();
        Ok(())
    }

    /// Runs `f` on the store of records, reopening it first if a failure closed it.
    fn with_state<T>(
        state: &Mutex<Option<Database>>,
        file: &Path,
        f: impl FnOnce(&Database) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let mut guard = state.lock().expect("store lock poisoned");
        if guard.is_none() {
            *guard = Some(open_database(file).map_err(|e| match e {
                OpenFailure::Io(e) => storage_error(e),
                OpenFailure::Other(e) => LogError::Unavailable(e),
            })?);
        }
        let result = f(guard.as_ref().expect("opened above"));
        if result.is_err() {
            // redb refuses every operation after an I/O error until it is reopened.
            *guard = None;
        }
        result
    }

    /// Every record stored with [`put_record`](Self::put_record), as (key, value).
    pub fn records(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        Self::with_state(&self.state, &self.file, |db| {
            let read = db.begin_read().map_err(storage_error)?;
            let table = read.open_table(RECORDS).map_err(storage_error)?;
            let mut records = Vec::new();
            for row in table.iter().map_err(storage_error)? {
                let (key, value) = row.map_err(storage_error)?;
                records.push((key.value().to_owned(), value.value().to_vec()));
            }
            Ok(records)
        })
    }

    /// Stores `value` under `key`, synced before this returns.
    pub async fn put_record(&self, key: String, value: Vec<u8>) -> Result<(), LogError> {
        let (state, file) = (self.state.clone(), self.file.clone());
        tokio::task::spawn_blocking(move || {
            Self::with_state(&state, &file, |db| {
                let write = db.begin_write().map_err(storage_error)?;
                write
                    .open_table(RECORDS)
                    .map_err(storage_error)?
                    .insert(key.as_str(), value.as_slice())
                    .map_err(storage_error)?;
                write.commit().map_err(storage_error)
            })
        })
        .await
        .map_err(storage_error)?
    }

    /// Queues a seal for the log; the receiver answers once a sync covers it.
    pub(super) fn remember_seal(&self, seal: &Seal) -> oneshot::Receiver<Result<(), LogError>> {
        let (reply, answer) = oneshot::channel();
        if let Err(e) = self.send(Request::Seal {
            seal: seal.clone(),
            reply,
        }) {
            let (reply, answer) = oneshot::channel();
            let _ = reply.send(Err(e));
            return answer;
        }
        answer
    }

    /// The seals found in the log at start-up with a timestamp of `oldest` or later.
    pub(super) fn seals_since(&self, oldest: u64) -> Result<Vec<Seal>, LogError> {
        let mut seals = std::mem::take(&mut *self.recovered_seals.lock().expect("seals lock"));
        seals.retain(|s| s.timestamp >= oldest);
        Ok(seals)
    }

    /// The store file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Up to `max` retained events from `from` on, read from the segments.
    fn read_segments(&self, from: u64, max: usize) -> Result<Vec<Entry>, LogError> {
        let views: Vec<(u64, segment::View)> = {
            let shared = self.shared.read().expect("log lock poisoned");
            let start = shared.segments.partition_point(|s| s.next_seq <= from);
            shared
                .segments
                .range(start..)
                .map(|s| (s.next_seq, s.view(from)))
                .collect()
        };
        let mut entries = Vec::with_capacity(max.min(BATCH_HINT));
        let mut from = from;
        for (next_seq, view) in &views {
            if entries.len() >= max {
                break;
            }
            if *next_seq <= from {
                continue;
            }
            view.read_events(from, max - entries.len(), |seq, event| {
                entries.push(Entry {
                    cursor: self.cursor(seq),
                    event: Arc::new(event),
                });
            })
            .map_err(read_error)?;
            from = entries.last().map_or(from, |e| e.cursor.seq + 1);
        }
        Ok(entries)
    }

    fn out_of_range(&self, requested: Cursor, shared: &Shared) -> LogError {
        LogError::OutOfRange {
            requested,
            oldest: (shared.first_seq < shared.next_seq).then(|| self.cursor(shared.first_seq)),
            resume_from: self.cursor(shared.first_seq - 1),
        }
    }
}

/// Capacity reserved for a read from the segments.
const BATCH_HINT: usize = 1024;

/// The first bytes of every store file: redb's file signature (a magic number, as PNG's).
const STORE_SIGNATURE: &[u8] = b"redb\x1a\x0a\xa9\x0d\x0a";

/// Why the existing `file` cannot be a store: a directory, or a file that does not begin
/// with the store signature. `None` for a store, an empty file (a store is created in it)
/// or no file yet; a file that cannot be read is left for the open to report.
fn not_a_store(file: &Path) -> Option<String> {
    use std::io::Read as _;
    let metadata = std::fs::metadata(file).ok()?;
    if metadata.is_dir() {
        return Some("it is a directory".into());
    }
    if metadata.len() == 0 {
        return None;
    }
    let mut start = Vec::with_capacity(STORE_SIGNATURE.len());
    std::fs::File::open(file)
        .ok()?
        .take(STORE_SIGNATURE.len() as u64)
        .read_to_end(&mut start)
        .ok()?;
    (start != STORE_SIGNATURE).then(|| {
        format!(
            "its {} bytes do not begin with a store's signature",
            metadata.len()
        )
    })
}

enum OpenFailure {
    Io(std::io::Error),
    Other(String),
}

fn open_database(file: &Path) -> Result<Database, OpenFailure> {
    // The store holds only a few facts and the permanent scenes: a small cache suffices.
    Database::builder()
        .set_cache_size(4 * 1024 * 1024)
        .create(file)
        .map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => OpenFailure::Io(io),
            other => OpenFailure::Other(other.to_string()),
        })
}

/// The AppID of an existing, cleanly closed store, read without writing anything; `None`
/// when there is no store yet or it needs the repair only a writable open does.
fn stored_app_id(file: &Path) -> Option<String> {
    if !file.exists() {
        return None;
    }
    let db = redb::ReadOnlyDatabase::open(file).ok()?;
    let read = db.begin_read().ok()?;
    let meta = read.open_table(META).ok()?;
    let value = meta.get("app_id").ok()??;
    Some(String::from_utf8_lossy(value.value()).into_owned())
}

enum Prepare {
    OtherAccount(String),
    Store(String),
}

/// What the store says of the log.
struct Facts {
    owner: String,
    epoch: u32,
    next_seq: u64,
    format: u64,
}

/// Reads (or, for a new store, writes) the epoch and account.
fn prepare(db: &Database, app_ids: &[String]) -> Result<Facts, Prepare> {
    let app_id = app_ids.first().map_or("", String::as_str);
    let store = |e: &dyn std::fmt::Display| Prepare::Store(e.to_string());
    let write = db.begin_write().map_err(|e| store(&e))?;
    let (facts, created) = {
        let mut meta = write.open_table(META).map_err(|e| store(&e))?;
        write.open_table(RECORDS).map_err(|e| store(&e))?;
        let stored_app = meta
            .get("app_id")
            .map_err(|e| store(&e))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned());
        match stored_app {
            Some(found) if !app_ids.contains(&found) => return Err(Prepare::OtherAccount(found)),
            Some(owner) => {
                let number = |name: &str| -> Result<u64, Prepare> {
                    let value = meta.get(name).map_err(|e| store(&e))?;
                    Ok(value
                        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                        .map_or(0, u64::from_be_bytes))
                };
                (
                    Facts {
                        owner,
                        epoch: u32::try_from(number("epoch")?).unwrap_or(0),
                        next_seq: number("next_seq")?.max(1),
                        format: number("format")?.max(1),
                    },
                    false,
                )
            }
            None => {
                // A new, empty directory: a new epoch, so cursors of any other log are
                // recognised as foreign.
                let epoch: u32 = rand::random();
                for (name, value) in [
                    ("epoch", u64::from(epoch)),
                    ("next_seq", 1),
                    ("format", FORMAT),
                ] {
                    meta.insert(name, &value.to_be_bytes()[..])
                        .map_err(|e| store(&e))?;
                }
                meta.insert("app_id", app_id.as_bytes())
                    .map_err(|e| store(&e))?;
                (
                    Facts {
                        owner: app_id.to_owned(),
                        epoch,
                        next_seq: 1,
                        format: FORMAT,
                    },
                    true,
                )
            }
        }
    };
    if created {
        write.commit().map_err(|e| store(&e))?;
    } else {
        write.abort().map_err(|e| store(&e))?;
    }
    Ok(facts)
}

/// Moves the events and seals of a format-1 store (all in `wechat-qr.redb`) into `log/`,
/// keeping their sequence numbers and the epoch, so every cursor stays valid. The log is
/// built in `log.migrating/`, synced, renamed to `log/`; only then does the store drop
/// its old tables and record the new format. A crash before that leaves the old tables
/// whole and the next start migrates again from them.
fn migrate(
    db: &mut Database,
    dir: &Path,
    facts: &Facts,
    segment_bytes: u64,
    seal_keep: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let building = dir.join(MIGRATING_DIR);
    let log_dir = dir.join(LOG_DIR);
    let io = |what: &str, e: std::io::Error| format!("migration: cannot {what}: {e}");
    for stale in [&building, &log_dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| io("clear a partial log", e))?;
        }
    }
    std::fs::create_dir_all(&building).map_err(|e| io("create the log directory", e))?;
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let mut count = 0u64;
    let mut next_seq = facts.next_seq;
    let mut active: Option<Active> = None;
    let mut buf = Vec::new();
    let flush = |active: &mut Active, buf: &mut Vec<u8>| -> Result<(), String> {
        active
            .file
            .write_all_at(buf, active.pos)
            .map_err(|e| io("write a segment", e))?;
        active.pos += buf.len() as u64;
        buf.clear();
        Ok(())
    };
    let finish = |active: &Active| -> Result<(), String> {
        active
            .file
            .set_len(active.pos.max(active.allocated))
            .and_then(|()| active.file.sync_all())
            .map_err(|e| io("sync a segment", e))
    };
    let tables: Vec<String> = read
        .list_tables()
        .map_err(|e| e.to_string())?
        .map(|t| t.name().to_owned())
        .collect();
    if tables.iter().any(|t| t == OLD_EVENTS.name()) {
        let events = read.open_table(OLD_EVENTS).map_err(|e| e.to_string())?;
        for row in events.iter().map_err(|e| e.to_string())? {
            let (seq, value) = row.map_err(|e| e.to_string())?;
            let seq = seq.value();
            let stored = Stored::decode(value.value()).map_err(|e| e.to_string())?;
            let key = stored.key.clone();
            let received_ms = stored.received_ms;
            let event = stored.into_event(&facts.owner);
            let roll = active
                .as_ref()
                .is_none_or(|a| a.pos + buf.len() as u64 >= segment_bytes);
            if roll {
                if let Some(a) = active.as_mut() {
                    flush(a, &mut buf)?;
                    finish(a)?;
                }
                active = Some(
                    create_segment(&building, seq, segment_bytes)
                        .map_err(|e| io("create a segment", e))?,
                );
            }
            segment::encode_record(&mut buf, seq, received_ms, Some((&event, &key)), &[]);
            if buf.len() > 1024 * 1024 {
                flush(active.as_mut().expect("created above"), &mut buf)?;
            }
            next_seq = next_seq.max(seq + 1);
            count += 1;
        }
    }
    if active.is_none() {
        active = Some(
            create_segment(&building, next_seq, segment_bytes)
                .map_err(|e| io("create a segment", e))?,
        );
    }
    if tables.iter().any(|t| t == OLD_SEALS.name()) {
        let oldest = (millis(SystemTime::now()) / 1000).saturating_sub(seal_keep.as_secs());
        let table = read.open_table(OLD_SEALS).map_err(|e| e.to_string())?;
        let mut seals = Vec::new();
        for row in table
            .range(&oldest.to_be_bytes()[..]..)
            .map_err(|e| e.to_string())?
        {
            let (key, value) = row.map_err(|e| e.to_string())?;
            seals.extend(super::seals::decode(key.value(), value.value()));
        }
        if !seals.is_empty() {
            segment::encode_record(&mut buf, 0, millis(SystemTime::now()), None, &seals);
        }
    }
    let active = active.as_mut().expect("created above");
    flush(active, &mut buf)?;
    finish(active)?;
    drop(read);
    sync_dir(&building).map_err(|e| io("sync the log directory", e))?;
    std::fs::rename(&building, &log_dir).map_err(|e| io("rename the log directory", e))?;
    sync_dir(dir).map_err(|e| io("sync the data directory", e))?;
    let write = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut meta = write.open_table(META).map_err(|e| e.to_string())?;
        meta.insert("format", &FORMAT.to_be_bytes()[..])
            .map_err(|e| e.to_string())?;
        meta.insert("next_seq", &next_seq.to_be_bytes()[..])
            .map_err(|e| e.to_string())?;
        meta.remove("bytes").map_err(|e| e.to_string())?;
    }
    let has = |name: &str| tables.iter().any(|t| t == name);
    if has(OLD_EVENTS.name()) {
        write.delete_table(OLD_EVENTS).map_err(|e| e.to_string())?;
    }
    if has(OLD_DEDUP.name()) {
        write.delete_table(OLD_DEDUP).map_err(|e| e.to_string())?;
    }
    if has(OLD_SEALS.name()) {
        write.delete_table(OLD_SEALS).map_err(|e| e.to_string())?;
    }
    write.commit().map_err(|e| e.to_string())?;
    // The old events' pages are free now; give them back to the file system.
    if let Err(e) = db.compact() {
        tracing::warn!(error = %e, "migration: the store file could not be compacted");
    }
    tracing::info!(
        events = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "migrated the event log from {STORE_FILE} (format 1) into {LOG_DIR}/ (format {FORMAT}); cursors stay valid"
    );
    Ok(())
}

/// fsync of a directory: makes the names created or removed in it durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates (pre-allocated, synced, its name synced) the segment of `first_seq`.
fn create_segment(log_dir: &Path, first_seq: u64, bytes: u64) -> std::io::Result<Active> {
    create_file(
        log_dir,
        &log_dir.join(segment::segment_name(first_seq)),
        first_seq,
        bytes,
    )
}

/// Creates (pre-allocated, synced, its name synced) the file `path` for a segment.
fn create_file(log_dir: &Path, path: &Path, first_seq: u64, bytes: u64) -> std::io::Result<Active> {
    let path = path.to_owned();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    // Short of space (a nearly full disk), the segment starts smaller and grows with
    // its writes, which then fail (503) while the disk is full, rather than the start.
    let allocated = allocate_up_to(&file, 0, bytes, 0)?;
    file.sync_all()?;
    sync_dir(log_dir)?;
    Ok(Active {
        file,
        path,
        pos: 0,
        allocated,
        first_seq,
    })
}

/// Reserves `len` bytes from `offset` without writing them, so a later write into the
/// range changes no file size and its `fdatasync` need not carry metadata.
fn allocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: fallocate on a file descriptor this `File` owns, with plain integers.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // A file system without fallocate: grow the file instead.
        return file.set_len((offset + len) as u64);
    }
    Err(error)
}

/// Allocates `want` bytes from `offset`, or, short of space, as much of it as a
/// megabyte at a time allows but at least `need`; returns what it allocated.
fn allocate_up_to(file: &File, offset: u64, want: u64, need: u64) -> std::io::Result<u64> {
    match allocate(file, offset, want) {
        Ok(()) => return Ok(want),
        Err(e) if e.raw_os_error() != Some(libc::ENOSPC) => return Err(e),
        Err(_) => {}
    }
    let step = GROW_STEP.min(want).max(need);
    if step > 0 && step < want && allocate(file, offset, step).is_ok() {
        return Ok(step);
    }
    if need > 0 {
        allocate(file, offset, need)?;
    }
    Ok(need)
}

impl Active {
    /// How readers see this segment when it is new.
    fn reader(&self) -> std::io::Result<Segment> {
        Ok(Segment {
            first_seq: self.first_seq,
            next_seq: self.first_seq,
            path: self.path.clone(),
            file: Arc::new(File::open(&self.path)?),
            end: 0,
            index: Vec::new(),
        })
    }
}

/// Scans every segment of `log_dir`: checks each record, cuts a torn tail off the newest
/// segment, and rebuilds the indexes.
fn recover(
    log_dir: &Path,
    stored_next_seq: u64,
    now_ms: u64,
    seal_keep: Duration,
) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    let corrupt = |reason: String| OpenError::Corrupt {
        log_dir: log_dir.to_owned(),
        reason,
    };
    let io = |e: std::io::Error| OpenError::NotWritable {
        path: log_dir.to_owned(),
        source: e,
    };
    let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(log_dir)
        .map_err(io)?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let first = segment::parse_segment_name(entry.file_name().to_str()?)?;
            Some((first, entry.path()))
        })
        .collect();
    names.sort();
    let dedup_from = now_ms.saturating_sub(DEDUP_WINDOW.as_millis() as u64);
    // A seal rides with a push received at most the replay window after its timestamp.
    let seals_from = now_ms.saturating_sub(2 * seal_keep.as_millis() as u64);
    let oldest_seal = (now_ms / 1000).saturating_sub(seal_keep.as_secs());
    let mut found = Recovered {
        segments: VecDeque::new(),
        first_seq: 0,
        next_seq: stored_next_seq,
        retained: VecDeque::new(),
        bytes: 0,
        dedup_order: VecDeque::new(),
        seals: Vec::new(),
    };
    let count = names.len();
    for (i, (first_seq, path)) in names.into_iter().enumerate() {
        let last = i + 1 == count;
        if let Some(previous) = found.segments.back()
            && previous.next_seq != first_seq
        {
            return Err(corrupt(format!(
                "segment {} starts at event {first_seq} but the one before it ends before event {}: a segment is missing",
                path.display(),
                previous.next_seq
            )));
        }
        let bytes = segment::read_whole(&path).map_err(io)?;
        let mut pos = 0usize;
        let mut expected = first_seq;
        let mut index = Vec::new();
        let damage = loop {
            match segment::read_frame(&bytes[pos..]) {
                Frame::Record(record, size) => {
                    if record.is_event {
                        if record.seq != expected {
                            break Some("event out of sequence");
                        }
                        if (record.seq - first_seq).is_multiple_of(INDEX_EVERY) {
                            index.push((record.seq, pos as u64));
                        }
                        found.retained.push_back((record.received_ms, size as u64));
                        found.bytes += size as u64;
                        if record.received_ms >= dedup_from
                            && let Some(key) = record.key()
                        {
                            found.dedup_order.push_back((
                                record.received_ms,
                                record.seq,
                                DedupKey::from_stored(key),
                            ));
                        }
                        expected += 1;
                    }
                    if record.received_ms >= seals_from {
                        found.seals.extend(
                            record
                                .seals()
                                .into_iter()
                                .filter(|s| s.timestamp >= oldest_seal),
                        );
                    }
                    pos += size;
                }
                Frame::End if bytes[pos..].iter().all(|&b| b == 0) => break None,
                Frame::End => break Some("data after the end of the records"),
                Frame::Short => break Some("record cut short"),
                Frame::Bad(why) => break Some(why),
            }
        };
        if let Some(why) = damage {
            if !last {
                return Err(corrupt(format!(
                    "segment {} has a damaged record at byte offset {pos} ({why})",
                    path.display()
                )));
            }
            // The newest segment's tail: a write a crash interrupted, never synced, so
            // never acknowledged. Cut it off (the space stays allocated).
            let dropped =
                bytes.len() - pos - bytes[pos..].iter().rev().take_while(|&&b| b == 0).count();
            let file = OpenOptions::new().write(true).open(&path).map_err(io)?;
            let allocated = bytes.len() as u64;
            file.set_len(pos as u64)
                .and_then(|()| {
                    allocate_up_to(&file, pos as u64, allocated.saturating_sub(pos as u64), 0)
                })
                .and_then(|_| file.sync_all())
                .map_err(io)?;
            tracing::warn!(
                segment = %path.display(),
                offset = pos,
                dropped_bytes = dropped,
                reason = why,
                kept_through_event = expected - 1,
                "event log: cut a torn tail off the newest segment (a write the crash interrupted; never acknowledged)"
            );
        }
        found.segments.push_back(Segment {
            first_seq,
            next_seq: expected,
            file: Arc::new(File::open(&path).map_err(io)?),
            path,
            end: pos as u64,
            index,
        });
    }
    let first = found.segments.front().map(|s| s.first_seq);
    if let Some(last) = found.segments.back() {
        found.next_seq = last.next_seq.max(1);
    }
    found.first_seq = first.unwrap_or(found.next_seq).clamp(1, found.next_seq);
    tracing::info!(
        segments = found.segments.len(),
        events = found.retained.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "event log recovered"
    );
    Ok(found)
}

/// What one synced group changed, applied to readers after the sync.
#[derive(Default)]
struct Group {
    appended: Vec<Entry>,
    /// `(seq, position)` for the sparse index.
    indexed: Vec<(u64, u64)>,
}

/// An answer held until its group is synced.
enum Reply {
    Append(oneshot::Sender<Result<Appended, LogError>>, Appended),
    Seal(oneshot::Sender<Result<(), LogError>>),
}

impl Writer {
    fn run(mut self, requests: &mpsc::Receiver<Request>) {
        self.serve(requests);
        // No thread of the log touches the directory once it is closed.
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }

    fn serve(&mut self, requests: &mpsc::Receiver<Request>) {
        // Age-based retention needs a clock even when no push arrives.
        let period =
            (self.retention.max_age / 10).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let mut batch = Vec::new();
        loop {
            let wait = if self.pending.is_empty() {
                period
            } else {
                SEAL_LINGER
            };
            let timed_out = match requests.recv_timeout(wait) {
                Ok(request) => {
                    batch.push(request);
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => true,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // Everything that queued while the last group was being synced is this group.
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let close = batch
                .iter()
                .position(|r| matches!(r, Request::Close { .. }))
                .map(|at| batch.split_off(at));
            self.commit(std::mem::take(&mut batch), timed_out || close.is_some());
            if let Some(rest) = close {
                let mut rest = rest.into_iter();
                if let Some(Request::Close { reply }) = rest.next() {
                    let _ = reply.send(());
                }
                let closed = || LogError::Unavailable("the event log is closed".to_owned());
                for request in rest.chain(requests.try_iter()) {
                    match request {
                        Request::Append { reply, .. } => {
                            let _ = reply.send(Err(closed()));
                        }
                        Request::Seal { reply, .. } => {
                            let _ = reply.send(Err(closed()));
                        }
                        Request::Close { reply } => {
                            let _ = reply.send(());
                        }
                    }
                }
                return;
            }
        }
    }

    /// Writes one group (`requests`, the seals waiting, and the seals carried out of
    /// segments retention deletes) with one write and one `fdatasync`, then answers.
    /// `flush_seals`: write waiting seals even when no event comes with them.
    fn commit(&mut self, requests: Vec<Request>, flush_seals: bool) {
        let now = Instant::now();
        let now_ms = millis(SystemTime::now());
        self.enforce(now_ms);
        let doomed = std::mem::take(&mut self.doomed);
        self.buf.clear();
        let mut replies = Vec::with_capacity(requests.len());
        let mut group = Group::default();
        let mut fresh_keys = Vec::new();
        let next_before = self.next_seq;
        let retained_before = self.retained.len();
        let bytes_before = self.bytes;
        // Seals not yet written, oldest first, with when each arrived; each rides with
        // the next event.
        let mut seals: Vec<Seal> = Vec::new();
        let mut arrived: Vec<Instant> = Vec::new();
        for (seal, reply, at) in self.pending.drain(..) {
            seals.push(seal);
            arrived.push(at);
            replies.push(Reply::Seal(reply));
        }
        let has_events = requests.iter().any(|r| matches!(r, Request::Append { .. }));
        if has_events
            && self.active.pos >= self.segment_bytes
            && self.active.first_seq < self.next_seq
            && let Err(e) = self.roll()
        {
            self.doomed = doomed;
            self.fail(replies, requests, &e.to_string());
            return;
        }
        for request in requests {
            match request {
                Request::Seal { seal, reply } => {
                    seals.push(seal);
                    arrived.push(now);
                    replies.push(Reply::Seal(reply));
                }
                Request::Append { event, key, reply } => {
                    if let Some(&seq) = self.dedup.get(&key) {
                        replies.push(Reply::Append(reply, Appended::Duplicate(self.cursor(seq))));
                        continue;
                    }
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let received_ms = millis(event.received_time);
                    let at = self.buf.len();
                    segment::encode_record(
                        &mut self.buf,
                        seq,
                        received_ms,
                        Some((&event, key.as_str())),
                        &seals,
                    );
                    seals.clear();
                    arrived.clear();
                    let size = (self.buf.len() - at) as u64;
                    if (seq - self.active.first_seq).is_multiple_of(INDEX_EVERY) {
                        group.indexed.push((seq, self.active.pos + at as u64));
                    }
                    self.retained.push_back((received_ms, size));
                    self.bytes += size;
                    self.dedup.insert(key.clone(), seq);
                    self.dedup_order.push_back((received_ms, seq, key.clone()));
                    fresh_keys.push(key);
                    let cursor = self.cursor(seq);
                    group.appended.push(Entry {
                        cursor,
                        event: Arc::new(event),
                    });
                    replies.push(Reply::Append(reply, Appended::New(cursor)));
                }
                Request::Close { .. } => unreachable!("split off before the group"),
            }
        }
        // Seals of segments about to be deleted that still guard the window.
        let oldest_seal = (now_ms / 1000).saturating_sub(self.seal_keep.as_secs());
        let carried: Vec<Seal> = doomed
            .iter()
            .flat_map(|segment| live_seals(segment, oldest_seal))
            .collect();
        let linger_over = arrived
            .first()
            .is_some_and(|at| now.duration_since(*at) >= SEAL_LINGER);
        if self.buf.is_empty()
            && !seals.is_empty()
            && !flush_seals
            && !linger_over
            && carried.is_empty()
        {
            // Seals alone, just arrived: their pushes' events are probably on their way;
            // wait a moment for them rather than spend a sync on the seals.
            self.doomed = doomed;
            self.park(seals, arrived, replies);
            return;
        }
        seals.extend(carried);
        if !seals.is_empty() {
            segment::encode_record(&mut self.buf, 0, now_ms, None, &seals);
        }
        if self.buf.is_empty() {
            delete(doomed);
            self.answer(replies, Ok(()));
            return;
        }
        match self.write_group() {
            Ok(()) => {
                self.writable
                    .send_if_modified(|w| !std::mem::replace(w, true));
                self.enforce(now_ms);
                self.apply(group);
                delete(doomed);
                self.answer(replies, Ok(()));
            }
            Err(e) => {
                for key in &fresh_keys {
                    self.dedup.remove(key);
                }
                self.dedup_order
                    .truncate(self.dedup_order.len() - fresh_keys.len());
                self.next_seq = next_before;
                self.retained.truncate(retained_before);
                self.bytes = bytes_before;
                self.doomed = doomed;
                let message = e.to_string();
                if self.writable.send_replace(false) {
                    tracing::error!(segment = %self.active.path.display(), error = %message, "event log write failed: pushes are answered 503 until writes succeed again");
                }
                self.answer(replies, Err(message));
            }
        }
    }

    /// Keeps `seals` (with when each arrived) for the next group; the replies to
    /// duplicates among `replies` are answered now (their events are already synced).
    fn park(&mut self, seals: Vec<Seal>, arrived: Vec<Instant>, replies: Vec<Reply>) {
        let mut seal_replies = Vec::new();
        for reply in replies {
            match reply {
                Reply::Seal(tx) => seal_replies.push(tx),
                Reply::Append(tx, appended) => {
                    let _ = tx.send(Ok(appended));
                }
            }
        }
        for ((seal, at), reply) in seals.into_iter().zip(arrived).zip(seal_replies) {
            self.pending.push((seal, reply, at));
        }
    }

    fn cursor(&self, seq: u64) -> Cursor {
        Cursor {
            epoch: self.epoch,
            seq,
        }
    }

    /// Writes the group at the end of the active segment and syncs it; on failure cuts
    /// the segment back to where the group began, so none of it can reappear.
    fn write_group(&mut self) -> std::io::Result<()> {
        let end = self.active.pos + self.buf.len() as u64;
        let result = (|| {
            if end > self.active.allocated {
                let need = end - self.active.allocated;
                let grow = need.max(GROW_STEP.min(self.segment_bytes));
                self.active.allocated +=
                    allocate_up_to(&self.active.file, self.active.allocated, grow, need)?;
                // The file grew: this sync carries its new size too.
                self.active.file.write_all_at(&self.buf, self.active.pos)?;
                return self.active.file.sync_all();
            }
            self.active.file.write_all_at(&self.buf, self.active.pos)?;
            self.active.file.sync_data()
        })()
        .and_then(|()| {
            // A segment renamed from the spare: its name is durable only with this sync
            // of the directory, and its first records must not outlive a crash without it.
            if self.name_unsynced {
                sync_dir(&self.log_dir)?;
                self.name_unsynced = false;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.active.pos = end;
                tracing::debug!(
                    segment = %self.active.path.display(),
                    synced_to = end,
                    newest_event = self.next_seq - 1,
                    "event log synced"
                );
                Ok(())
            }
            Err(e) => {
                // Zeros over whatever part of the group reached the file: a record of a
                // failed group must never be read back.
                let zeros = vec![0; self.buf.len()];
                let _ = self.active.file.write_all_at(&zeros, self.active.pos);
                let _ = self.active.file.sync_data();
                Err(e)
            }
        }
    }

    /// Starts creating the next segment on a thread of its own, off the push path.
    fn prepare_spare(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let (log_dir, bytes) = (self.log_dir.clone(), self.segment_bytes);
        let spawned = std::thread::Builder::new()
            .name("event-log-spare".to_owned())
            .spawn(move || create_file(&log_dir, &log_dir.join(SPARE_FILE), 0, bytes));
        match spawned {
            Ok(handle) => self.spare = Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start creating the next segment ahead: it is created when needed");
            }
        }
    }

    /// The spare segment renamed to the segment of `first_seq`, if it was created.
    fn take_spare(&mut self, first_seq: u64) -> Option<Active> {
        let created = match self.spare.take()?.join() {
            Ok(Ok(spare)) => spare,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the next segment could not be created ahead: it is created now");
                return None;
            }
            Err(_) => return None,
        };
        let path = self.log_dir.join(segment::segment_name(first_seq));
        if let Err(e) = std::fs::rename(&created.path, &path) {
            tracing::warn!(error = %e, "the next segment created ahead could not be renamed: it is created now");
            return None;
        }
        Some(Active {
            path,
            first_seq,
            ..created
        })
    }

    /// Starts a new segment for the next event: the spare, renamed (its name synced
    /// with the first group written into it), or, without one, a segment created now.
    fn roll(&mut self) -> std::io::Result<()> {
        let (active, renamed) = match self.take_spare(self.next_seq) {
            Some(active) => (active, true),
            None => (
                create_segment(&self.log_dir, self.next_seq, self.segment_bytes)?,
                false,
            ),
        };
        // A segment created now has its name synced already.
        self.name_unsynced = renamed;
        let reader = active.reader()?;
        // The old segment keeps its allocation: a few unused bytes, not worth a sync.
        self.active = active;
        self.prepare_spare();
        self.shared
            .write()
            .expect("log lock poisoned")
            .segments
            .push_back(reader);
        Ok(())
    }

    /// Makes a synced group visible to readers, then wakes them.
    fn apply(&self, group: Group) {
        let newest = {
            let mut shared = self.shared.write().expect("log lock poisoned");
            shared.next_seq = self.next_seq;
            shared.first_seq = self.first_seq;
            let active = shared.segments.back_mut().expect("the active segment");
            active.end = self.active.pos;
            active.next_seq = self.next_seq;
            active.index.extend(group.indexed);
            shared.recent.extend(group.appended);
            while shared.recent.len() > TAIL_EVENTS
                || shared
                    .recent
                    .front()
                    .is_some_and(|e| e.cursor.seq < shared.first_seq)
            {
                shared.recent.pop_front();
            }
            shared.next_seq - 1
        };
        self.head.send_if_modified(|head| {
            let moved = *head != newest;
            *head = newest;
            moved
        });
    }

    fn answer(&self, replies: Vec<Reply>, result: Result<(), String>) {
        for reply in replies {
            let error = || LogError::Unavailable(result.clone().unwrap_err());
            match reply {
                Reply::Append(tx, appended) => {
                    let _ = tx.send(match &result {
                        Ok(()) => Ok(appended),
                        Err(_) => Err(error()),
                    });
                }
                Reply::Seal(tx) => {
                    let _ = tx.send(match &result {
                        Ok(()) => Ok(()),
                        Err(_) => Err(error()),
                    });
                }
            }
        }
    }

    fn fail(&mut self, replies: Vec<Reply>, requests: Vec<Request>, message: &str) {
        if self.writable.send_replace(false) {
            tracing::error!(log = %self.log_dir.display(), error = %message, "event log write failed: pushes are answered 503 until writes succeed again");
        }
        self.answer(replies, Err(message.to_owned()));
        for request in requests {
            let error = LogError::Unavailable(message.to_owned());
            match request {
                Request::Append { reply, .. } => {
                    let _ = reply.send(Err(error));
                }
                Request::Seal { reply, .. } => {
                    let _ = reply.send(Err(error));
                }
                Request::Close { reply } => {
                    let _ = reply.send(());
                }
            }
        }
    }

    /// Retention: oldest first, by count, bytes and age (the newest event stays for
    /// bytes); then forgets de-duplication keys past their window or their event, and
    /// marks segments none of whose events is retained for deletion.
    fn enforce(&mut self, now_ms: u64) {
        let max_age_ms = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut moved = false;
        while let Some(&(received_ms, size)) = self.retained.front() {
            let retained = self.retained.len();
            let over_count = retained > self.retention.max_events;
            // One event larger than the whole bound still stays, as the newest.
            let over_bytes = self.bytes > self.retention.max_bytes && retained > 1;
            let aged = now_ms.saturating_sub(received_ms) > max_age_ms;
            if !(over_count || over_bytes || aged) {
                break;
            }
            self.retained.pop_front();
            self.bytes = self.bytes.saturating_sub(size);
            self.first_seq += 1;
            moved = true;
        }
        let dedup_from = now_ms.saturating_sub(DEDUP_WINDOW.as_millis() as u64);
        while let Some((received_ms, seq, _)) = self.dedup_order.front() {
            if *seq >= self.first_seq && *received_ms >= dedup_from {
                break;
            }
            let (_, seq, key) = self.dedup_order.pop_front().expect("front exists");
            if self.dedup.get(&key) == Some(&seq) {
                self.dedup.remove(&key);
            }
        }
        if !moved {
            return;
        }
        let mut shared = self.shared.write().expect("log lock poisoned");
        shared.first_seq = self.first_seq;
        while shared
            .recent
            .front()
            .is_some_and(|e| e.cursor.seq < self.first_seq)
        {
            shared.recent.pop_front();
        }
        while shared.segments.len() > 1
            && shared
                .segments
                .front()
                .is_some_and(|s| s.next_seq <= self.first_seq)
        {
            let segment = shared.segments.pop_front().expect("front exists");
            self.doomed.push(segment);
        }
    }
}

/// Deletes segments retention emptied (their live seals are synced elsewhere).
fn delete(doomed: Vec<Segment>) {
    for segment in doomed {
        if let Err(e) = std::fs::remove_file(&segment.path) {
            tracing::warn!(segment = %segment.path.display(), error = %e, "cannot delete a segment retention emptied");
        }
    }
}

/// The seals in `segment` with a timestamp of `oldest` or later.
fn live_seals(segment: &Segment, oldest: u64) -> Vec<Seal> {
    let Ok(bytes) = segment::read_whole(&segment.path) else {
        return Vec::new();
    };
    let end = usize::try_from(segment.end)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let mut pos = 0;
    let mut seals = Vec::new();
    while pos < end {
        let Frame::Record(record, size) = segment::read_frame(&bytes[pos..end]) else {
            break;
        };
        seals.extend(record.seals().into_iter().filter(|s| s.timestamp >= oldest));
        pos += size;
    }
    seals
}

#[async_trait::async_trait]
impl EventLog for DurableLog {
    async fn append(&self, event: Event, key: DedupKey) -> Result<Appended, LogError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append { event, key, reply })?;
        answer
            .await
            .map_err(|_| LogError::Unavailable("the event log writer has stopped".to_owned()))?
    }

    async fn read_after(&self, after: Cursor, max: usize) -> Result<Vec<Entry>, LogError> {
        {
            let shared = self.shared.read().expect("log lock poisoned");
            // A client's cursor may say anything, `u64::MAX` included: no unchecked
            // arithmetic on it.
            if after.epoch != self.epoch
                || after.seq < shared.first_seq - 1
                || after.seq >= shared.next_seq
            {
                return Err(self.out_of_range(after, &shared));
            }
            // The tail holds the newest events contiguously; a reader inside it (every
            // live subscriber) never touches the files.
            let cached_from = shared
                .recent
                .front()
                .map_or(shared.next_seq, |e| e.cursor.seq);
            if cached_from <= after.seq + 1 {
                let start = usize::try_from(after.seq + 1 - cached_from).unwrap_or(usize::MAX);
                return Ok(shared
                    .recent
                    .iter()
                    .skip(start)
                    .take(max)
                    .cloned()
                    .collect());
            }
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let entries = self.read_segments(after.seq + 1, max)?;
        // Retention may have removed events between the check above and the read.
        let first_seq = self.shared.read().expect("log lock poisoned").first_seq;
        if entries
            .first()
            .is_none_or(|e| e.cursor.seq != after.seq + 1 || e.cursor.seq < first_seq)
        {
            let shared = self.shared.read().expect("log lock poisoned");
            return Err(self.out_of_range(after, &shared));
        }
        Ok(entries)
    }

    async fn head(&self) -> Result<Cursor, LogError> {
        let shared = self.shared.read().expect("log lock poisoned");
        Ok(self.cursor(shared.next_seq - 1))
    }

    async fn wait_after(&self, after: Cursor) {
        super::log::wait_past(&self.head, self.epoch, after).await;
    }

    fn writable(&self) -> watch::Receiver<bool> {
        self.writable.subscribe()
    }

    async fn close(&self) {
        let (reply, closed) = oneshot::channel();
        if self.send(Request::Close { reply }).is_ok() {
            let _ = closed.await;
        }
        // Dropping the store closes it cleanly: the next open needs no repair.
        *self.state.lock().expect("store lock poisoned") = None;
    }
}
