//! The durable event log (the default): events, their de-duplication keys, the log's
//! epoch and the permanent-scene records live in one redb file in the data directory, and
//! an append is acknowledged only after its transaction is committed and synced. One
//! writer thread takes every append waiting at that moment into one transaction (group
//! commit), so concurrent pushes share one sync. Reads of recent events come from an
//! in-memory tail; older ones from the file. Recovery after a crash opens the file (redb
//! repairs only what the retained log holds) and reads a few keys: no replay.
//!
//! A failed commit (a full disk, an I/O error) fails the appends of that batch with
//! [`LogError::Unavailable`] — nothing of the batch is kept, so WeChat's retry is not a
//! duplicate — marks the log unwritable, and reopens the file before the next batch, so
//! the service resumes by itself when writes succeed again.

use std::{
    collections::{HashMap, VecDeque},
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, mpsc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::{Appended, Cursor, DedupKey, Entry, Event, EventKind, EventLog, LogError};
use crate::config::Retention;

/// Sequence number → the stored event.
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
/// De-duplication key → the sequence number of the retained event it became.
const DEDUP: TableDefinition<'_, &str, u64> = TableDefinition::new("dedup");
/// The log's own facts: epoch, AppID, next sequence number, retained bytes.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Small records the layers above keep beside the log (permanent scenes).
const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
/// The replay guard's seals (see `seals.rs`), keyed timestamp first so expiry trims the
/// start of the tree.
const SEALS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("seals");

/// The store's file inside the data directory.
pub const STORE_FILE: &str = "wechat-qr.redb";
/// The lock file: held while an instance runs on the directory.
pub const LOCK_FILE: &str = "LOCK";

/// Recent events kept decoded in memory, so live subscribers never touch the file.
const TAIL_EVENTS: usize = 4096;
/// Appends and record writes taken into one transaction at most.
const MAX_BATCH: usize = 1024;
/// A batch smaller than this waits a little for more (see [`Writer::gather`]).
const GATHER_TARGET: usize = 64;
/// The longest that wait, whatever the disk.
const MAX_GATHER: Duration = Duration::from_millis(1);
/// redb's page cache.
const STORE_CACHE_BYTES: usize = 32 * 1024 * 1024;

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

/// What readers see of the log: its bounds and the recent events, decoded.
#[derive(Debug)]
struct Tail {
    /// Sequence number of the oldest retained event (or of the next, when empty).
    first_seq: u64,
    /// Sequence number the next event gets.
    next_seq: u64,
    /// The newest retained events, oldest first; contiguous up to `next_seq - 1`.
    recent: VecDeque<Entry>,
}

/// A write for the writer thread.
enum Request {
    Append {
        event: Event,
        key: DedupKey,
        reply: oneshot::Sender<Result<Appended, LogError>>,
    },
    Record {
        key: String,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Remember a replay-guard seal.
    Seal {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Close the store and stop the thread.
    Close { reply: oneshot::Sender<()> },
}

/// The durable [`EventLog`].
#[derive(Debug)]
pub struct DurableLog {
    epoch: u32,
    /// The account the store was created for; several accounts may share it.
    owner: String,
    file: PathBuf,
    /// `None` only while the writer reopens the file after a failed commit. A std lock:
    /// readers hold it for one short read transaction.
    db: Arc<RwLock<Option<Database>>>,
    tail: Arc<RwLock<Tail>>,
    /// To the writer thread; the thread ends when the log (its last sender) drops.
    writes: Mutex<mpsc::Sender<Request>>,
    head: watch::Sender<u64>,
    writable: watch::Sender<bool>,
    /// Held for the life of the log: the directory's lock.
    _lock: File,
}

/// How the writer thread sees the store.
struct Writer {
    file: PathBuf,
    db: Arc<RwLock<Option<Database>>>,
    tail: Arc<RwLock<Tail>>,
    epoch: u32,
    retention: Retention,
    /// How long seals are kept past their timestamp.
    seal_keep: Duration,
    /// Bytes of retained events as stored.
    bytes: u64,
    head: watch::Sender<u64>,
    writable: watch::Sender<bool>,
}

impl DurableLog {
    /// Opens (or creates) the store in `dir` for the accounts `app_ids` (a new store
    /// belongs to the first). Creates the directory, takes its lock and checks that the
    /// store's account is among them; on any failure the directory's data is left
    /// untouched. Starts the writer thread.
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
        let (owner, (epoch, next_seq, bytes)) = prepare(&db, app_ids).map_err(|e| match e {
            Prepare::OtherAccount(found) => OpenError::OtherAccount {
                path: dir.to_owned(),
                found,
                configured: app_ids.join(", "),
            },
            Prepare::Store(reason) => store_error(reason),
        })?;
        let tail = load_tail(&db, next_seq, &owner).map_err(|e| store_error(e.to_string()))?;
        let newest = tail.next_seq - 1;
        let db = Arc::new(RwLock::new(Some(db)));
        let tail = Arc::new(RwLock::new(tail));
        let head = watch::Sender::new(newest);
        let writable = watch::Sender::new(true);
        let (writes, requests) = mpsc::channel();
        let writer = Writer {
            file: file.clone(),
            db: db.clone(),
            tail: tail.clone(),
            epoch,
            retention,
            seal_keep,
            bytes,
            head: head.clone(),
            writable: writable.clone(),
        };
        std::thread::Builder::new()
            .name("event-log-writer".to_owned())
            .spawn(move || writer.run(&requests))
            .map_err(|e| store_error(format!("cannot start the writer thread: {e}")))?;
        Ok(Arc::new(Self {
            epoch,
            owner,
            file,
            db,
            tail,
            writes: Mutex::new(writes),
            head,
            writable,
            _lock: lock,
        }))
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

    /// Every record stored with [`put_record`](Self::put_record), as (key, value).
    pub fn records(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        let guard = self.db.read().expect("store lock poisoned");
        let db = guard
            .as_ref()
            .ok_or_else(|| LogError::Unavailable("the event store is reopening".to_owned()))?;
        let read = db.begin_read().map_err(storage_error)?;
        let table = read.open_table(RECORDS).map_err(storage_error)?;
        let mut records = Vec::new();
        for row in table.iter().map_err(storage_error)? {
            let (key, value) = row.map_err(storage_error)?;
            records.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(records)
    }

    /// Stores `value` under `key`, synced before this returns.
    pub async fn put_record(&self, key: String, value: Vec<u8>) -> Result<(), LogError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Record { key, value, reply })?;
        answer
            .await
            .map_err(|_| LogError::Unavailable("the event log writer has stopped".to_owned()))?
    }

    /// Queues a seal for the store; the receiver answers once it is committed.
    pub(super) fn remember_seal(
        &self,
        seal: &super::Seal,
    ) -> oneshot::Receiver<Result<(), LogError>> {
        let (key, value) = super::seals::encode(seal);
        let (reply, answer) = oneshot::channel();
        if let Err(e) = self.send(Request::Seal { key, value, reply }) {
            let (reply, answer) = oneshot::channel();
            let _ = reply.send(Err(e));
            return answer;
        }
        answer
    }

    /// The stored seals with a timestamp of `oldest` or later.
    pub(super) fn seals_since(&self, oldest: u64) -> Result<Vec<super::Seal>, LogError> {
        let guard = self.db.read().expect("store lock poisoned");
        let db = guard
            .as_ref()
            .ok_or_else(|| LogError::Unavailable("the event store is reopening".to_owned()))?;
        let read = db.begin_read().map_err(storage_error)?;
        let table = read.open_table(SEALS).map_err(storage_error)?;
        let mut seals = Vec::new();
        for row in table
            .range(&oldest.to_be_bytes()[..]..)
            .map_err(storage_error)?
        {
            let (key, value) = row.map_err(storage_error)?;
            if let Some(seal) = super::seals::decode(key.value(), value.value()) {
                seals.push(seal);
            }
        }
        Ok(seals)
    }

    /// The store file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Retained events read from the file, for a reader behind the in-memory tail.
    fn read_file(&self, after: u64, max: usize) -> Result<Vec<Entry>, LogError> {
        let guard = self.db.read().expect("store lock poisoned");
        let db = guard
            .as_ref()
            .ok_or_else(|| LogError::Unavailable("the event store is reopening".to_owned()))?;
        let read = db.begin_read().map_err(storage_error)?;
        let table = read.open_table(EVENTS).map_err(storage_error)?;
        let mut entries = Vec::with_capacity(max.min(BATCH_HINT));
        for row in table.range(after + 1..).map_err(storage_error)?.take(max) {
            let (seq, value) = row.map_err(storage_error)?;
            entries.push(Entry {
                cursor: self.cursor(seq.value()),
                event: Arc::new(Stored::decode(value.value())?.into_event(&self.owner)),
            });
        }
        Ok(entries)
    }

    fn out_of_range(&self, requested: Cursor, tail: &Tail) -> LogError {
        LogError::OutOfRange {
            requested,
            oldest: (tail.first_seq < tail.next_seq).then(|| self.cursor(tail.first_seq)),
            resume_from: self.cursor(tail.first_seq - 1),
        }
    }
}

/// Capacity reserved for a read from the file.
const BATCH_HINT: usize = 256;

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
    // redb's default cache is 1 GiB; a crash repair walks the whole file through it. The
    // retained log is bounded by bytes, and live readers use the in-memory tail, so a
    // small cache keeps RSS bounded without slowing appends.
    Database::builder()
        .set_cache_size(STORE_CACHE_BYTES)
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

/// Reads (or, for a new store, writes) the epoch and account; returns the store's account,
/// and the epoch, the next sequence number and the retained bytes.
fn prepare(db: &Database, app_ids: &[String]) -> Result<(String, (u32, u64, u64)), Prepare> {
    let app_id = app_ids.first().map_or("", String::as_str);
    let store = |e: &dyn std::fmt::Display| Prepare::Store(e.to_string());
    let write = db.begin_write().map_err(|e| store(&e))?;
    // What the store says, and whether this open created it (then it must be committed).
    let (found, created) = {
        let mut meta = write.open_table(META).map_err(|e| store(&e))?;
        write.open_table(EVENTS).map_err(|e| store(&e))?;
        write.open_table(DEDUP).map_err(|e| store(&e))?;
        write.open_table(RECORDS).map_err(|e| store(&e))?;
        write.open_table(SEALS).map_err(|e| store(&e))?;
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
                let epoch = u32::try_from(number("epoch")?).unwrap_or(0);
                (
                    (owner, (epoch, number("next_seq")?.max(1), number("bytes")?)),
                    false,
                )
            }
            None => {
                // A new, empty directory: a new epoch, so cursors of any other log are
                // recognised as foreign.
                let epoch: u32 = rand::random();
                meta.insert("app_id", app_id.as_bytes())
                    .map_err(|e| store(&e))?;
                meta.insert("epoch", &u64::from(epoch).to_be_bytes()[..])
                    .map_err(|e| store(&e))?;
                meta.insert("next_seq", &1u64.to_be_bytes()[..])
                    .map_err(|e| store(&e))?;
                meta.insert("bytes", &0u64.to_be_bytes()[..])
                    .map_err(|e| store(&e))?;
                ((app_id.to_owned(), (epoch, 1, 0)), true)
            }
        }
    };
    if created {
        write.commit().map_err(|e| store(&e))?;
    } else {
        write.abort().map_err(|e| store(&e))?;
    }
    Ok(found)
}

/// The bounds of the retained log and its newest events.
fn load_tail(db: &Database, next_seq: u64, owner: &str) -> Result<Tail, LogError> {
    let read = db.begin_read().map_err(storage_error)?;
    let table = read.open_table(EVENTS).map_err(storage_error)?;
    let first_seq = match table.first().map_err(storage_error)? {
        Some((seq, _)) => seq.value(),
        None => next_seq,
    };
    let mut recent = VecDeque::with_capacity(TAIL_EVENTS);
    // The epoch is filled in by the caller's cursors; the tail keeps sequence numbers.
    for row in table
        .range::<u64>(..)
        .map_err(storage_error)?
        .rev()
        .take(TAIL_EVENTS)
    {
        let (seq, value) = row.map_err(storage_error)?;
        recent.push_front(Entry {
            cursor: Cursor {
                epoch: 0,
                seq: seq.value(),
            },
            event: Arc::new(Stored::decode(value.value())?.into_event(owner)),
        });
    }
    Ok(Tail {
        first_seq,
        next_seq,
        recent,
    })
}

/// What one committed batch changed, applied to the tail after the commit.
#[derive(Default)]
struct Batch {
    appended: Vec<Entry>,
    /// How many of the oldest events retention removed.
    removed: u64,
    /// Whether expired seals were removed (the transaction must then be committed).
    removed_seals: bool,
}

/// An answer held until its transaction is committed.
enum Reply {
    Append(oneshot::Sender<Result<Appended, LogError>>, Appended),
    Record(oneshot::Sender<Result<(), LogError>>),
}

impl Writer {
    fn run(mut self, requests: &mpsc::Receiver<Request>) {
        // Age-based retention needs a clock even when no push arrives.
        let period =
            (self.retention.max_age / 10).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let mut last_commit = Duration::ZERO;
        loop {
            let first = match requests.recv_timeout(period) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch: Vec<Request> = first.into_iter().collect();
            if !batch.is_empty() {
                Self::gather(requests, &mut batch, last_commit);
            }
            let started = std::time::Instant::now();
            let close = batch
                .iter()
                .position(|r| matches!(r, Request::Close { .. }))
                .map(|at| batch.split_off(at));
            self.commit(batch);
            last_commit = started.elapsed();
            if let Some(rest) = close {
                // Dropping the database closes it cleanly: the next open needs no repair.
                *self.db.write().expect("store lock poisoned") = None;
                let mut rest = rest.into_iter();
                if let Some(Request::Close { reply }) = rest.next() {
                    let _ = reply.send(());
                }
                fail_all(rest.collect(), "the event log is closed");
                while let Ok(request) = requests.try_recv() {
                    fail_all(vec![request], "the event log is closed");
                }
                return;
            }
        }
    }

    /// Takes every request already waiting; if that is a small group, waits up to half the
    /// last commit's time (at most [`MAX_GATHER`]) for more. Pushes arriving during that
    /// wait share the next sync instead of each waiting for a sync of their own: a commit
    /// costs a sync and a path of pages per table whatever its size, so a bigger group is
    /// nearly free throughput, bought with a fraction of one sync's latency.
    fn gather(requests: &mpsc::Receiver<Request>, batch: &mut Vec<Request>, last_commit: Duration) {
        let take_waiting = |batch: &mut Vec<Request>| {
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
        };
        take_waiting(batch);
        let deadline = std::time::Instant::now() + (last_commit / 2).min(MAX_GATHER);
        while batch.len() < GATHER_TARGET {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                break;
            };
            match requests.recv_timeout(left) {
                Ok(request) => {
                    batch.push(request);
                    take_waiting(batch);
                }
                Err(_) => break,
            }
        }
    }

    /// One transaction for `requests` (possibly none: then only retention runs).
    fn commit(&mut self, requests: Vec<Request>) {
        if self.db.read().expect("store lock poisoned").is_none() && !self.reopen() {
            fail_all(requests, "the event store cannot be reopened");
            return;
        }
        let bytes_before = self.bytes;
        let mut replies = Vec::with_capacity(requests.len());
        let result = self.write(requests, &mut replies);
        match result {
            Ok(batch) => {
                self.apply(batch);
                self.writable
                    .send_if_modified(|w| !std::mem::replace(w, true));
                for reply in replies {
                    match reply {
                        Reply::Append(tx, appended) => {
                            let _ = tx.send(Ok(appended));
                        }
                        Reply::Record(tx) => {
                            let _ = tx.send(Ok(()));
                        }
                    }
                }
            }
            Err(error) => {
                self.bytes = bytes_before;
                let message = error.to_string();
                let was_writable = self.writable.send_replace(false);
                if was_writable {
                    tracing::error!(file = %self.file.display(), error = %message, "event log write failed: pushes are answered 503 until writes succeed again");
                }
                for reply in replies {
                    match reply {
                        Reply::Append(tx, _) => {
                            let _ = tx.send(Err(LogError::Unavailable(message.clone())));
                        }
                        Reply::Record(tx) => {
                            let _ = tx.send(Err(LogError::Unavailable(message.clone())));
                        }
                    }
                }
                // redb refuses every operation after an I/O error until it is reopened.
                *self.db.write().expect("store lock poisoned") = None;
                self.reopen();
            }
        }
    }

    fn reopen(&mut self) -> bool {
        match open_database(&self.file) {
            Ok(db) => {
                *self.db.write().expect("store lock poisoned") = Some(db);
                true
            }
            Err(OpenFailure::Io(e)) => {
                tracing::debug!(error = %e, "event store still cannot be reopened");
                false
            }
            Err(OpenFailure::Other(e)) => {
                tracing::debug!(error = %e, "event store still cannot be reopened");
                false
            }
        }
    }

    /// Writes `requests` and retention in one transaction and commits it.
    fn write(
        &mut self,
        requests: Vec<Request>,
        replies: &mut Vec<Reply>,
    ) -> Result<Batch, LogError> {
        let guard = self.db.read().expect("store lock poisoned");
        let db = guard
            .as_ref()
            .ok_or_else(|| LogError::Unavailable("the event store is reopening".to_owned()))?;
        let (first_seq, mut next_seq) = {
            let tail = self.tail.read().expect("tail lock poisoned");
            (tail.first_seq, tail.next_seq)
        };
        let mut batch = Batch::default();
        let now_ms = millis(SystemTime::now());
        let write = db.begin_write().map_err(storage_error)?;
        {
            let mut events = write.open_table(EVENTS).map_err(storage_error)?;
            let mut dedup = write.open_table(DEDUP).map_err(storage_error)?;
            let mut records = write.open_table(RECORDS).map_err(storage_error)?;
            let mut seals = write.open_table(SEALS).map_err(storage_error)?;
            // Keys appended in this batch: two deliveries of one push in the same batch.
            let mut fresh: HashMap<DedupKey, u64> = HashMap::new();
            for request in requests {
                match request {
                    Request::Append { event, key, reply } => {
                        let known = match fresh.get(&key) {
                            Some(&seq) => Some(seq),
                            None => dedup
                                .get(key.as_str())
                                .map_err(storage_error)?
                                .map(|v| v.value()),
                        };
                        if let Some(seq) = known {
                            replies.push(Reply::Append(
                                reply,
                                Appended::Duplicate(Cursor {
                                    epoch: self.epoch,
                                    seq,
                                }),
                            ));
                            continue;
                        }
                        let seq = next_seq;
                        next_seq += 1;
                        let encoded =
                            serde_json::to_vec(&Stored::new(&event, &key)).expect("events encode");
                        events
                            .insert(seq, encoded.as_slice())
                            .map_err(storage_error)?;
                        dedup.insert(key.as_str(), seq).map_err(storage_error)?;
                        self.bytes += encoded.len() as u64;
                        let cursor = Cursor {
                            epoch: self.epoch,
                            seq,
                        };
                        fresh.insert(key, seq);
                        batch.appended.push(Entry {
                            cursor,
                            event: Arc::new(event),
                        });
                        replies.push(Reply::Append(reply, Appended::New(cursor)));
                    }
                    Request::Record { key, value, reply } => {
                        records
                            .insert(key.as_str(), value.as_slice())
                            .map_err(storage_error)?;
                        replies.push(Reply::Record(reply));
                    }
                    Request::Seal { key, value, reply } => {
                        seals
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(storage_error)?;
                        replies.push(Reply::Record(reply));
                    }
                    Request::Close { .. } => unreachable!("split off before the batch"),
                }
            }
            // Retention: oldest first, by count, bytes and age; the newest event stays.
            let max_age_ms = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
            loop {
                let retained = next_seq - (first_seq + batch.removed);
                if retained == 0 {
                    break;
                }
                let over_count = retained > self.retention.max_events as u64;
                // One event larger than the whole bound still stays, as the newest.
                let over_bytes = self.bytes > self.retention.max_bytes && retained > 1;
                let Some((_, oldest)) = events.first().map_err(storage_error)? else {
                    break;
                };
                let stored = Stored::decode(oldest.value())?;
                let aged = now_ms.saturating_sub(stored.received_ms) > max_age_ms;
                let size = oldest.value().len() as u64;
                drop(oldest);
                if !(over_count || over_bytes || aged) {
                    break;
                }
                let Some((seq, _)) = events.pop_first().map_err(storage_error)? else {
                    break;
                };
                let seq = seq.value();
                if dedup
                    .get(stored.key.as_str())
                    .map_err(storage_error)?
                    .map(|v| v.value())
                    == Some(seq)
                {
                    dedup.remove(stored.key.as_str()).map_err(storage_error)?;
                }
                self.bytes = self.bytes.saturating_sub(size);
                batch.removed += 1;
            }
            // Seals past the replay window guard nothing any more.
            let expired = (now_ms / 1000).saturating_sub(self.seal_keep.as_secs());
            loop {
                let Some((key, _)) = seals.first().map_err(storage_error)? else {
                    break;
                };
                let old = key
                    .value()
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .is_some_and(|b| u64::from_be_bytes(b) < expired);
                drop(key);
                if !old {
                    break;
                }
                seals.pop_first().map_err(storage_error)?;
                batch.removed_seals = true;
            }
            let mut meta = write.open_table(META).map_err(storage_error)?;
            meta.insert("next_seq", &next_seq.to_be_bytes()[..])
                .map_err(storage_error)?;
            meta.insert("bytes", &self.bytes.to_be_bytes()[..])
                .map_err(storage_error)?;
        }
        if batch.appended.is_empty()
            && batch.removed == 0
            && !batch.removed_seals
            && replies.is_empty()
        {
            write.abort().map_err(storage_error)?;
            return Ok(batch);
        }
        write.commit().map_err(storage_error)?;
        Ok(batch)
    }

    /// Makes a committed batch visible to readers, then wakes them.
    fn apply(&self, batch: Batch) {
        let newest = {
            let mut tail = self.tail.write().expect("tail lock poisoned");
            tail.first_seq += batch.removed;
            tail.next_seq += batch.appended.len() as u64;
            tail.recent.extend(batch.appended);
            while tail.recent.len() > TAIL_EVENTS
                || tail
                    .recent
                    .front()
                    .is_some_and(|e| e.cursor.seq < tail.first_seq)
            {
                tail.recent.pop_front();
            }
            tail.next_seq - 1
        };
        self.head.send_if_modified(|head| {
            let moved = *head != newest;
            *head = newest;
            moved
        });
    }
}

fn fail_all(requests: Vec<Request>, why: &str) {
    for request in requests {
        let error = LogError::Unavailable(why.to_owned());
        match request {
            Request::Append { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Record { reply, .. } => {
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
            let tail = self.tail.read().expect("tail lock poisoned");
            // A client's cursor may say anything, `u64::MAX` included: no unchecked
            // arithmetic on it.
            if after.epoch != self.epoch
                || after.seq < tail.first_seq - 1
                || after.seq >= tail.next_seq
            {
                return Err(self.out_of_range(after, &tail));
            }
            // The tail holds the newest events contiguously; a reader inside it (every
            // live subscriber) never touches the file.
            let cached_from = tail.recent.front().map_or(tail.next_seq, |e| e.cursor.seq);
            if cached_from <= after.seq + 1 {
                let start = usize::try_from(after.seq + 1 - cached_from).unwrap_or(usize::MAX);
                return Ok(tail
                    .recent
                    .iter()
                    .skip(start)
                    .take(max)
                    .map(|e| Entry {
                        cursor: self.cursor(e.cursor.seq),
                        event: e.event.clone(),
                    })
                    .collect());
            }
        }
        let entries = self.read_file(after.seq, max)?;
        // Retention may have removed events between the check above and the read.
        if entries
            .first()
            .is_some_and(|e| e.cursor.seq != after.seq + 1)
        {
            let tail = self.tail.read().expect("tail lock poisoned");
            return Err(self.out_of_range(after, &tail));
        }
        Ok(entries)
    }

    async fn head(&self) -> Result<Cursor, LogError> {
        let tail = self.tail.read().expect("tail lock poisoned");
        Ok(self.cursor(tail.next_seq - 1))
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
    }
}
