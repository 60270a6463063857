//! okaywal 0.3.1 driven as the event log: one entry per append, one chunk per push in it,
//! committed
//! (okaywal's own group commit: the committer whose data is not yet covered becomes the
//! syncer, `fdatasync` on a cloned handle outside the lock). Checkpointing is pushed out
//! of reach (`checkpoint_after_bytes` = 1 TiB): okaywal recycles a segment as soon as it
//! is checkpointed, i.e. it is a log to put in front of a store, not one to keep and read
//! back, so the only way to retain events in it is never to checkpoint. Opening walks the
//! log through a [`LogManager`] that reads every chunk (CRC checked) and keeps each
//! chunk's position and the de-duplication map; reading from an offset uses `read_at`,
//! okaywal's only read API, once per record.

use std::{
    collections::HashMap,
    io::Read,
    path::Path,
    sync::{Arc, Mutex},
};

use okaywal::{
    Configuration, Entry, EntryId, LogManager, LogPosition, ReadChunkResult, SegmentReader,
    WriteAheadLog,
};

use crate::{Result, seglog::parts};

/// What recovery collected.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every chunk's position, in log order.
    pub positions: Vec<LogPosition>,
    /// De-duplication key → record number.
    pub keys: HashMap<Box<[u8]>, u64>,
    /// Entries whose chunk failed its CRC.
    pub bad: u64,
}

#[derive(Debug, Clone, Default)]
struct Manager(Arc<Mutex<Collected>>);

impl LogManager for Manager {
    fn recover(&mut self, entry: &mut Entry<'_>) -> std::io::Result<()> {
        let mut collected = self.0.lock().expect("collected lock");
        loop {
            let mut chunk = match entry.read_chunk()? {
                ReadChunkResult::Chunk(chunk) => chunk,
                ReadChunkResult::EndOfEntry | ReadChunkResult::AbortedEntry => break,
            };
            let position = chunk.log_position();
            let data = chunk.read_all()?;
            // okaywal's own recovery skips chunks without reading them: checking the CRC
            // is the manager's job.
            if !chunk.check_crc()? {
                collected.bad += 1;
                continue;
            }
            if let Some((_, key, _)) = parts(&data) {
                let n = collected.positions.len() as u64;
                collected.keys.insert(key.into(), n);
            }
            collected.positions.push(position);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// An open okaywal log.
pub struct OkayLog {
    wal: WriteAheadLog,
    collected: Arc<Mutex<Collected>>,
}

fn configuration(dir: &Path) -> Configuration {
    Configuration::default_for(dir)
        .preallocate_bytes(64 << 20)
        .checkpoint_after_bytes(1 << 40)
}

impl OkayLog {
    /// Creates or opens the log in `dir` (recovering what it holds).
    pub fn open(dir: &Path) -> Result<Self> {
        let collected = Arc::new(Mutex::new(Collected::default()));
        let wal = configuration(dir).open(Manager(collected.clone()))?;
        Ok(Self { wal, collected })
    }

    /// Appends one entry holding one chunk per payload (okaywal's unit of atomic
    /// commit) and returns once it is synced.
    pub fn append(&self, payloads: &[&[u8]]) -> Result<Vec<LogPosition>> {
        let mut positions = Vec::with_capacity(payloads.len());
        let mut entry = self.wal.begin_entry()?;
        for payload in payloads {
            positions.push(entry.write_chunk(payload)?.position);
        }
        entry.commit()?;
        Ok(positions)
    }

    /// What opening found: records, keys, CRC failures.
    pub fn recovered(&self) -> (u64, usize, u64) {
        let c = self.collected.lock().expect("collected lock");
        (c.positions.len() as u64, c.keys.len(), c.bad)
    }

    /// The positions of `n` records from the `from`th on, as recovery found them.
    pub fn positions(&self, from: u64, n: u64) -> Vec<LogPosition> {
        let c = self.collected.lock().expect("collected lock");
        c.positions
            .iter()
            .skip(from as usize)
            .take(n as usize)
            .copied()
            .collect()
    }

    /// Reads the records at `positions`, CRC checked, calling `each` with every event.
    pub fn read(&self, positions: &[LogPosition], mut each: impl FnMut(&[u8])) -> Result<u64> {
        let mut buf = Vec::new();
        for &position in positions {
            let mut reader = self.wal.read_at(position)?;
            buf.clear();
            reader.read_to_end(&mut buf)?;
            if !reader.crc_is_valid()? {
                return Err("okaywal: checksum mismatch".into());
            }
            let (record, _, _) = parts(&buf).ok_or("malformed payload")?;
            each(record);
        }
        Ok(positions.len() as u64)
    }

    /// Closes the log, waiting for its checkpoint thread.
    pub fn close(self) -> Result<()> {
        self.wal.shutdown()?;
        Ok(())
    }
}
