//! The disk's floor, not a candidate: each commit appends the batch's records to one plain
//! file with a single write and fsyncs it, with no index, no de-duplication and no
//! retention. No log that fsyncs every commit can beat its latency on this disk, so it
//! tells how much of an engine's commit time is the disk's.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::Path,
};

use crate::{
    Result,
    record::Event,
    store::{Bounds, Store},
};

/// The append-and-fsync file.
#[derive(Debug)]
pub struct FloorStore {
    file: File,
    appended: u64,
}

impl FloorStore {
    /// Creates `dir/floor.log`.
    pub fn open(dir: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("floor.log"))?;
        Ok(Self { file, appended: 0 })
    }
}

impl Store for FloorStore {
    fn commit(&mut self, batch: &[Event]) -> Result<usize> {
        let bytes: Vec<u8> = batch
            .iter()
            .flat_map(|e| e.record.iter().copied())
            .collect();
        self.file.write_all(&bytes)?;
        self.file.sync_all()?;
        self.appended += batch.len() as u64;
        Ok(batch.len())
    }

    fn recover_bounds(&mut self) -> Result<Bounds> {
        Ok(Bounds::default())
    }

    fn read_tail(&self, _n: usize) -> Result<usize> {
        Ok(0)
    }

    fn count(&self) -> Result<(u64, u64)> {
        Ok((self.appended, 0))
    }

    fn retained(&self) -> u64 {
        self.appended
    }
}
