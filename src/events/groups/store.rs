//! The embedded engine's memory of its consumer groups: one append-only file,
//! `groups.jsonl` in the data directory, of JSON records (a group created, events read
//! into pending, acknowledged, redelivered, set aside, replayed, a seek, a deletion).
//!
//! One writer thread appends the records in the order they are sent, so a record that is
//! durable implies every earlier one is: an acknowledgement can never be on disk without
//! the read that made its event pending. It writes whatever has queued up, syncs once and
//! then answers every waiter of the batch (group commit): an acknowledgement costs a share
//! of one `fdatasync`, not one of its own. Reads need not wait for a sync: losing one
//! loses only pending events, which the group then reads again.
//!
//! The writer also applies every record to a mirror of the state, so when the file grows
//! past [`COMPACT_BYTES`] it writes the state as a fresh file and renames it over the old
//! one. At start-up a torn last line (a crash mid-write) is cut off.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::mpsc,
};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::GroupSpec;

/// The file's name in the data directory.
pub const GROUPS_FILE: &str = "groups.jsonl";

/// File size past which the writer rewrites it as a snapshot of the state.
const COMPACT_BYTES: u64 = 64 * 1024 * 1024;

/// One change to the groups' state. Sequence numbers belong to the epoch of the group's
/// position.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Record {
    /// A group was created at `position`.
    Create { spec: GroupSpec, position: String },
    /// A group was deleted.
    Delete { group: String },
    /// The group read the log through `upto`; `seqs` matched and are now pending.
    Read {
        group: String,
        upto: String,
        seqs: Vec<u64>,
    },
    /// These pending events were acknowledged.
    Ack { group: String, seqs: Vec<u64> },
    /// A pending event was delivered for the `deliveries`th time (recorded from the
    /// second delivery on).
    Delivered {
        group: String,
        seq: u64,
        deliveries: u32,
    },
    /// A pending event became a dead letter.
    Dead {
        group: String,
        seq: u64,
        deliveries: u32,
        at_ms: u64,
    },
    /// Dead letters were put back into pending.
    Replay { group: String, seqs: Vec<u64> },
    /// The group moved to `position`, dropping its pending events.
    Seek { group: String, position: String },
}

/// A group as the file remembers it.
#[derive(Debug, Clone)]
pub(super) struct Persisted {
    pub(super) spec: GroupSpec,
    pub(super) position: String,
    /// Pending sequence numbers and their delivery counts.
    pub(super) pending: BTreeMap<u64, u32>,
    /// Dead letters: sequence number → (deliveries, when).
    pub(super) dead: BTreeMap<u64, (u32, u64)>,
}

/// The state the records add up to, by group key.
#[derive(Debug, Default)]
pub(super) struct Mirror {
    pub(super) groups: BTreeMap<String, Persisted>,
}

impl Mirror {
    fn apply(&mut self, record: &Record) {
        match record {
            Record::Create { spec, position } => {
                self.groups.insert(
                    spec.key(),
                    Persisted {
                        spec: spec.clone(),
                        position: position.clone(),
                        pending: BTreeMap::new(),
                        dead: BTreeMap::new(),
                    },
                );
            }
            Record::Delete { group } => {
                self.groups.remove(group);
            }
            Record::Read { group, upto, seqs } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.position.clone_from(upto);
                    g.pending.extend(seqs.iter().map(|&s| (s, 1)));
                }
            }
            Record::Ack { group, seqs } => {
                if let Some(g) = self.groups.get_mut(group) {
                    for seq in seqs {
                        g.pending.remove(seq);
                    }
                }
            }
            Record::Delivered {
                group,
                seq,
                deliveries,
            } => {
                if let Some(count) = self
                    .groups
                    .get_mut(group)
                    .and_then(|g| g.pending.get_mut(seq))
                {
                    *count = *deliveries;
                }
            }
            Record::Dead {
                group,
                seq,
                deliveries,
                at_ms,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.pending.remove(seq);
                    g.dead.insert(*seq, (*deliveries, *at_ms));
                }
            }
            Record::Replay { group, seqs } => {
                if let Some(g) = self.groups.get_mut(group) {
                    for seq in seqs {
                        if g.dead.remove(seq).is_some() {
                            g.pending.insert(*seq, 0);
                        }
                    }
                }
            }
            Record::Seek { group, position } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.position.clone_from(position);
                    g.pending.clear();
                }
            }
        }
    }

    /// Records that rebuild this state from nothing.
    fn snapshot(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for (key, g) in &self.groups {
            records.push(Record::Create {
                spec: g.spec.clone(),
                position: g.position.clone(),
            });
            records.push(Record::Read {
                group: key.clone(),
                upto: g.position.clone(),
                seqs: g.pending.keys().copied().collect(),
            });
            for (&seq, &deliveries) in &g.pending {
                if deliveries != 1 {
                    records.push(Record::Delivered {
                        group: key.clone(),
                        seq,
                        deliveries,
                    });
                }
            }
            for (&seq, &(deliveries, at_ms)) in &g.dead {
                records.push(Record::Dead {
                    group: key.clone(),
                    seq,
                    deliveries,
                    at_ms,
                });
            }
        }
        records
    }
}

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("consumer groups file {path}: {reason}")]
pub struct StoreError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// A queued record and, when the sender waits for it, who to tell once it is durable.
type Job = (Record, Option<oneshot::Sender<Result<(), String>>>);

/// The writer's handle.
#[derive(Debug, Clone)]
pub(super) struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (or creates) the file in `dir`, reads what it holds and starts the writer.
    pub(super) fn open(dir: &Path) -> Result<(Self, Mirror), StoreError> {
        let path = dir.join(GROUPS_FILE);
        let failed = |e: std::io::Error| StoreError {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut mirror = Mirror::default();
        let mut good_len = 0u64;
        if let Ok(file) = File::open(&path) {
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(failed)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                match serde_json::from_str::<Record>(&line) {
                    Ok(record) => mirror.apply(&record),
                    // Only the last write can be torn; whatever follows it never was
                    // acknowledged.
                    Err(_) => break,
                }
                good_len += n as u64;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(failed)?;
        if file.metadata().map_err(failed)?.len() > good_len {
            tracing::warn!(path = %path.display(), "consumer groups file had a torn tail; cut off");
            file.set_len(good_len).map_err(failed)?;
        }
        let (jobs, queue) = mpsc::channel();
        let mut writer = Writer {
            path: path.clone(),
            file,
            len: good_len,
            mirror: Mirror {
                groups: mirror.groups.clone(),
            },
        };
        std::thread::Builder::new()
            .name("groups-writer".into())
            .spawn(move || writer.run(&queue))
            .map_err(failed)?;
        Ok((Self { jobs }, mirror))
    }

    /// Queues `record`; it is durable with the next sync.
    pub(super) fn send(&self, record: Record) {
        let _ = self.jobs.send((record, None));
    }

    /// Queues `record` now; the future resolves once it (and everything queued before
    /// it) is durable. Queuing at once keeps the file in the order of the changes even
    /// when the caller never awaits the future.
    pub(super) fn submit(
        &self,
        record: Record,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self.jobs.send((record, Some(done))).is_ok();
        async move {
            if !sent {
                return Err("the groups writer has stopped".to_owned());
            }
            wait.await
                .map_err(|_| "the groups writer has stopped".to_owned())?
        }
    }
}

struct Writer {
    path: PathBuf,
    file: File,
    len: u64,
    mirror: Mirror,
}

impl Writer {
    fn run(&mut self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            batch.extend(queue.try_iter());
            let mut bytes = Vec::new();
            for (record, _) in &batch {
                serde_json::to_writer(&mut bytes, record).expect("records serialize");
                bytes.push(b'\n');
                self.mirror.apply(record);
            }
            let result = self
                .file
                .write_all(&bytes)
                .and_then(|()| self.file.sync_data())
                .map_err(|e| format!("{}: {e}", self.path.display()));
            if let Err(e) = &result {
                tracing::error!(error = %e, "consumer groups file write failed");
            } else {
                self.len += bytes.len() as u64;
            }
            for (_, done) in batch {
                if let Some(done) = done {
                    let _ = done.send(result.clone());
                }
            }
            if result.is_ok()
                && self.len > COMPACT_BYTES
                && let Err(e) = self.compact()
            {
                tracing::warn!(error = %e, "consumer groups file not compacted");
            }
        }
    }

    /// Rewrites the file as the records of the current state.
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut bytes = Vec::new();
        for record in self.mirror.snapshot() {
            serde_json::to_writer(&mut bytes, &record).expect("records serialize");
            bytes.push(b'\n');
        }
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GroupSpec {
        GroupSpec {
            name: "g".into(),
            account: "wx1".into(),
            tickets: vec![],
            scenes: vec![],
            kinds: vec![],
            ack_deadline_seconds: 30,
            max_deliveries: 0,
            max_unacked_per_member: 10,
            create_ms: 0,
        }
    }

    #[test]
    fn snapshot_rebuilds_the_same_state() {
        let mut mirror = Mirror::default();
        let key = spec().key();
        for record in [
            Record::Create {
                spec: spec(),
                position: "a".into(),
            },
            Record::Read {
                group: key.clone(),
                upto: "b".into(),
                seqs: vec![1, 2, 3, 4],
            },
            Record::Ack {
                group: key.clone(),
                seqs: vec![2],
            },
            Record::Delivered {
                group: key.clone(),
                seq: 3,
                deliveries: 4,
            },
            Record::Dead {
                group: key.clone(),
                seq: 4,
                deliveries: 5,
                at_ms: 9,
            },
        ] {
            mirror.apply(&record);
        }
        let mut rebuilt = Mirror::default();
        for record in mirror.snapshot() {
            rebuilt.apply(&record);
        }
        let (a, b) = (&mirror.groups[&key], &rebuilt.groups[&key]);
        assert_eq!(a.position, b.position);
        assert_eq!(a.pending, b.pending);
        assert_eq!(a.pending, BTreeMap::from([(1, 1), (3, 4)]));
        assert_eq!(a.dead, b.dead);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GROUPS_FILE);
        let create = serde_json::to_string(&Record::Create {
            spec: spec(),
            position: "a".into(),
        })
        .unwrap();
        std::fs::write(&path, format!("{create}\n{{\"op\":\"ack\",\"gro")).unwrap();
        let (_store, mirror) = Store::open(dir.path()).unwrap();
        assert_eq!(mirror.groups.len(), 1);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            create.len() as u64 + 1
        );
    }
}
