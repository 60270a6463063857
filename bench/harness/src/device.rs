//! The device's own floor for a durable append: `write` of about one record's bytes at
//! the end of what was written so far in a pre-allocated file, then `fdatasync`, `count`
//! times, on the file system of the service's data directory. The durable event log can
//! acknowledge a push no sooner than this, so its acknowledgement latency is judged
//! against this figure measured in the same run (issue 21: ack p99 ≤ 3× the device's
//! `fdatasync` p99).
//!
//! Two files, as the log could prepare its segments: zero-filled (every block written
//! once and synced before the timed appends, then dropped from the page cache: a sync
//! then carries data only) and
//! `fallocate`d (unwritten extents: on ext4 and XFS the first write into each extent
//! converts it, and that conversion is metadata the `fdatasync` must journal). The
//! difference says whether zero-filling segments ahead would pay.
//!
//! Also the encoded size of the log's records, read from a durable service's segment
//! files (`len | crc | payload` frames, see `src/events/segment.rs`), to judge the bytes
//! the service writes per push against the record itself.

use std::{
    fs::File,
    os::unix::{fs::FileExt, io::AsRawFd},
    path::Path,
    time::{Duration, Instant},
};

use crate::{Result, histogram::Histogram};

/// Bytes of each pre-allocated file: far more than `count` appends need.
const FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How the file was prepared.
#[derive(Clone, Copy)]
pub(crate) enum Prepared {
    /// Zeros written and synced over its whole length.
    ZeroFilled,
    /// `fallocate(2)` mode 0: unwritten extents, as the log creates a segment.
    Fallocated,
}

impl Prepared {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::ZeroFilled => "zero-filled file",
            Self::Fallocated => "fallocate'd file (as the log's segments)",
        }
    }
}

/// `count` appends of `record` bytes, each followed by `fdatasync`, into a fresh file
/// in `dir` prepared as `prepared`; the histogram of append + sync times.
pub(crate) fn append_fdatasync(
    dir: &Path,
    record: usize,
    count: usize,
    prepared: Prepared,
) -> Result<Histogram> {
    let path = dir.join(format!("device-floor-{}.bin", rand::random::<u64>()));
    let result = (|| {
        let file = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        match prepared {
            Prepared::ZeroFilled => {
                let zeros = vec![0u8; 1024 * 1024];
                let mut at = 0;
                while at < FILE_BYTES {
                    file.write_all_at(&zeros, at)?;
                    at += zeros.len() as u64;
                }
            }
            Prepared::Fallocated => {
                // SAFETY: fallocate on a descriptor this `File` owns, with plain integers.
                let rc =
                    unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, FILE_BYTES as libc::off_t) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
            }
        }
        file.sync_all()?;
        if let Prepared::ZeroFilled = prepared {
            // Zeros written in 1 MiB pieces sit in 1 MiB page-cache folios on this kernel,
            // and a small append then dirties (and a sync writes) the whole folio
            // (bench/engines/RESULTS.md): drop the file from the cache, as the log would.
            // SAFETY: posix_fadvise on a descriptor this `File` owns, with plain integers.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
        // A record's bytes: not zeros, so nothing could elide the write.
        let bytes: Vec<u8> = (0..record).map(|i| (i % 251) as u8 + 1).collect();
        let histogram = Histogram::new();
        let mut at = 0u64;
        for _ in 0..count {
            let start = Instant::now();
            file.write_all_at(&bytes, at)?;
            file.sync_data()?;
            histogram.record(start.elapsed());
            at += bytes.len() as u64;
            if at + bytes.len() as u64 > FILE_BYTES {
                at = 0;
            }
        }
        Ok(histogram)
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// The records in a data directory's segments.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct LogRecords {
    /// Event records and their framed bytes.
    pub(crate) events: u64,
    pub(crate) event_bytes: u64,
    /// Records of seals only and their framed bytes.
    pub(crate) seal_records: u64,
    pub(crate) seal_bytes: u64,
}

impl LogRecords {
    /// Framed bytes of an event record, on average.
    pub(crate) fn per_event(&self) -> f64 {
        self.event_bytes as f64 / self.events.max(1) as f64
    }

    /// Every framed byte of the log per event: what an ideal writer writes per push.
    pub(crate) fn log_per_event(&self) -> f64 {
        (self.event_bytes + self.seal_bytes) as f64 / self.events.max(1) as f64
    }
}

/// Walks the frames of every segment in `data_dir/log` (headers only, no checksum).
pub(crate) fn log_records(data_dir: &Path) -> Result<LogRecords> {
    let mut records = LogRecords::default();
    for entry in std::fs::read_dir(data_dir.join("log"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "seg") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let mut at = 0usize;
        while at + 9 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len == 0 || at + 8 + len > bytes.len() {
                break;
            }
            let framed = 8 + len as u64;
            if bytes[at + 8] == 1 {
                records.events += 1;
                records.event_bytes += framed;
            } else {
                records.seal_records += 1;
                records.seal_bytes += framed;
            }
            at += 8 + len;
        }
    }
    Ok(records)
}

/// `p50 / p99` of `h`.
pub(crate) fn summary(h: &Histogram) -> String {
    match (h.quantile(0.5), h.quantile(0.99)) {
        (Some(p50), Some(p99)) => format!(
            "{} / {}",
            crate::report::duration(p50),
            crate::report::duration(p99)
        ),
        _ => "no samples".to_owned(),
    }
}

/// The p99 of `h`, zero when empty.
pub(crate) fn p99(h: &Histogram) -> Duration {
    h.quantile(0.99).unwrap_or_default()
}
