//! Measure 4, `wal`: the log-structured designs of issue 21 against the disk's floor.
//! Subjects: `fsync-floor` (raw bytes appended to one file and `fdatasync`ed under the
//! same group commit, nothing else), `seglog` (the own segment log, segments zero-filled
//! ahead), `seglog-falloc` (the same, segments reserved with `fallocate`) and `okaywal`.
//! Each record is one push: the synthetic event, its de-duplication key and a seal.
//!
//! 1. ingest: `threads` writers each append `batch` records and wait until a sync covers
//!    them, for one slice per round; rounds interleave the subjects (the shared disk's
//!    speed drifts). Records/s, `fdatasync`s per record (the writer's count; okaywal does
//!    not expose one), bytes sent to storage per record (`/proc/self/io`, pre-allocation
//!    included), CPU per record, append-to-durable latency.
//! 2. recovery: `records` appended in durable groups of 1,024, the log closed, then
//!    opened again in the same process (page cache warm): every record read and CRC
//!    checked, the sparse index (or okaywal's positions) and the de-duplication map of
//!    every key rebuilt. The floor reads its file back without parsing it.
//! 3. read from an offset: after that open, `read` records from the middle of the log
//!    are read back and their events copied out.

use std::{
    fmt::Write as _,
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    Result,
    okaywal_log::OkayLog,
    record::Event,
    seglog::{self, Options, Prealloc, SegLog},
    util,
};

/// A subject of this measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Append + `fdatasync`, group commit, no framing.
    Floor,
    /// The own segment log, zero-filled segments.
    SegLog,
    /// The own segment log, `fallocate`d segments.
    SegLogFalloc,
    /// okaywal 0.3.
    OkayWal,
}

impl Subject {
    /// Every subject, in report order.
    pub const ALL: [Self; 4] = [Self::Floor, Self::SegLog, Self::SegLogFalloc, Self::OkayWal];

    /// Its name in the tables.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Floor => "fsync-floor",
            Self::SegLog => "seglog",
            Self::SegLogFalloc => "seglog-falloc",
            Self::OkayWal => "okaywal",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `(writer threads, records per append)` pairs for ingest.
    pub loads: Vec<(usize, usize)>,
    /// Ingest rounds.
    pub rounds: usize,
    /// Wall time of one subject at one load in one round.
    pub slice: Duration,
    /// Records written before the timed open.
    pub records: u64,
    /// Records read from the middle after it.
    pub read: u64,
    /// Segment size of the own log.
    pub segment_bytes: u64,
}

/// One push as the log stores it.
fn push(n: u64) -> Vec<u8> {
    let event = Event::synthetic(n);
    // A seal: timestamp, a ten-digit nonce, kind and the body's SHA-256 (synthetic).
    let mut seal = Vec::with_capacity(51);
    seal.extend_from_slice(&(1_700_000_000 + n / 20_000).to_be_bytes());
    seal.extend_from_slice(format!("{:010}", n % 10_000_000_000).as_bytes());
    seal.push(1);
    seal.extend_from_slice(&[(n % 251) as u8; 32]);
    seglog::payload(&event.record, &event.key, &seal)
}

/// An open log of any subject.
enum Log {
    Seg(SegLog),
    Okay(OkayLog),
}

impl Log {
    fn create(subject: Subject, dir: &Path, segment_bytes: u64) -> Result<Self> {
        let options = |framed, prealloc| Options {
            framed,
            prealloc,
            segment_bytes,
        };
        Ok(match subject {
            Subject::Floor => Self::Seg(SegLog::create(dir, options(false, Prealloc::Zeroed))?),
            Subject::SegLog => Self::Seg(SegLog::create(dir, options(true, Prealloc::Zeroed))?),
            Subject::SegLogFalloc => {
                Self::Seg(SegLog::create(dir, options(true, Prealloc::Fallocate))?)
            }
            Subject::OkayWal => Self::Okay(OkayLog::open(dir)?),
        })
    }

    fn append(&self, payloads: &[&[u8]]) -> Result<()> {
        match self {
            Self::Seg(log) => log.append(payloads),
            Self::Okay(log) => log.append(payloads).map(drop),
        }
    }

    fn syncs(&self) -> Option<u64> {
        match self {
            Self::Seg(log) => Some(log.syncs()),
            Self::Okay(_) => None,
        }
    }

    fn close(self) -> Result<()> {
        match self {
            Self::Seg(_) => Ok(()),
            Self::Okay(log) => log.close(),
        }
    }
}

/// One subject at one load, summed over the rounds.
#[derive(Debug, Clone)]
pub struct IngestRow {
    /// The subject.
    pub subject: Subject,
    /// Writer threads.
    pub threads: usize,
    /// Records per append.
    pub batch: usize,
    /// Records made durable.
    pub records: u64,
    /// Wall time.
    pub wall: Duration,
    /// `fdatasync`s, where counted.
    pub syncs: Option<u64>,
    /// CPU time of the process.
    pub cpu: Duration,
    /// Bytes sent to storage.
    pub written: u64,
    /// Append-to-durable latency of every append, sorted at the end.
    pub latencies: Vec<Duration>,
}

fn ingest_slice(log: &Log, row: &mut IngestRow, next: &AtomicU64, slice: Duration) -> Result<()> {
    let cpu = util::cpu_time();
    let written = util::written_bytes();
    let syncs = log.syncs();
    let latencies = Mutex::new(Vec::new());
    let start = Instant::now();
    let records = std::thread::scope(|scope| -> Result<u64> {
        let workers: Vec<_> = (0..row.threads)
            .map(|_| {
                scope.spawn(|| -> Result<u64> {
                    let mut mine = Vec::new();
                    let mut done = 0;
                    while start.elapsed() < slice {
                        let first = next.fetch_add(row.batch as u64, Ordering::Relaxed);
                        let payloads: Vec<Vec<u8>> =
                            (first..first + row.batch as u64).map(push).collect();
                        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                        let t = Instant::now();
                        log.append(&refs)?;
                        mine.push(t.elapsed());
                        done += row.batch as u64;
                    }
                    latencies.lock().expect("latencies").extend(mine);
                    Ok(done)
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.join().expect("writer thread")?;
        }
        Ok(total)
    })?;
    row.wall += start.elapsed();
    row.records += records;
    row.cpu += util::cpu_time().saturating_sub(cpu);
    row.written += util::written_bytes().saturating_sub(written);
    if let (Some(total), Some(before), Some(after)) = (&mut row.syncs, syncs, log.syncs()) {
        *total += after - before;
    }
    row.latencies
        .extend(latencies.into_inner().expect("latencies"));
    Ok(())
}

/// Runs ingest for every subject and load, interleaved.
pub fn ingest(subjects: &[Subject], config: &Config) -> Result<Vec<IngestRow>> {
    let mut logs = Vec::new();
    let mut dirs = Vec::new();
    for &subject in subjects {
        let dir = util::data_dir(subject.name())?;
        logs.push((
            subject,
            Log::create(subject, dir.path(), config.segment_bytes)?,
        ));
        dirs.push(dir);
    }
    let mut rows: Vec<IngestRow> = logs
        .iter()
        .flat_map(|(subject, log)| {
            config.loads.iter().map(|&(threads, batch)| IngestRow {
                subject: *subject,
                threads,
                batch,
                records: 0,
                wall: Duration::ZERO,
                syncs: log.syncs().map(|_| 0),
                cpu: Duration::ZERO,
                written: 0,
                latencies: Vec::new(),
            })
        })
        .collect();
    let next = AtomicU64::new(0);
    for round in 1..=config.rounds {
        eprintln!("wal ingest: round {round} of {}", config.rounds);
        for (i, (_, log)) in logs.iter().enumerate() {
            for j in 0..config.loads.len() {
                ingest_slice(
                    log,
                    &mut rows[i * config.loads.len() + j],
                    &next,
                    config.slice,
                )?;
            }
        }
    }
    for (_, log) in logs {
        log.close()?;
    }
    for row in &mut rows {
        row.latencies.sort_unstable();
    }
    Ok(rows)
}

/// The ingest results as a markdown table.
#[must_use]
pub fn ingest_table(rows: &[IngestRow]) -> String {
    let mut out = String::from(
        "| subject | threads × batch | records/s | × floor | fdatasync / record | written B/record | CPU µs/record | append p50 | append p99 | append max |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
        let rate = row.records as f64 / row.wall.as_secs_f64();
        let floor = rows
            .iter()
            .find(|r| {
                r.subject == Subject::Floor && r.threads == row.threads && r.batch == row.batch
            })
            .map_or(f64::NAN, |r| r.records as f64 / r.wall.as_secs_f64());
        let _ = writeln!(
            out,
            "| {} | {} × {} | {} | {:.2} | {} | {} | {:.1} | {} | {} | {} |",
            row.subject.name(),
            row.threads,
            row.batch,
            util::thousands(rate as u64),
            rate / floor,
            row.syncs.map_or("n/a".to_owned(), |s| format!(
                "{:.3}",
                s as f64 / row.records as f64
            )),
            util::thousands(row.written / row.records.max(1)),
            row.cpu.as_secs_f64() * 1e6 / row.records as f64,
            util::duration(util::quantile(&row.latencies, 0.5)),
            util::duration(util::quantile(&row.latencies, 0.99)),
            util::duration(util::quantile(&row.latencies, 1.0)),
        );
    }
    out
}

/// Recovery and read-back of one subject.
#[derive(Debug, Clone)]
pub struct RecoveryRow {
    /// The subject.
    pub subject: Subject,
    /// Records written.
    pub written: u64,
    /// Bytes on disk.
    pub disk: u64,
    /// Time to open and rebuild the indexes, right after closing.
    pub open: Duration,
    /// The same, a second time (page cache certainly warm).
    pub again: Duration,
    /// Records found on open.
    pub found: u64,
    /// De-duplication keys rebuilt.
    pub keys: u64,
    /// Records read from the middle, and how long it took.
    pub read: Option<(u64, Duration)>,
}

/// Writes `config.records` records in durable groups of 1,024 and closes the log.
fn fill(subject: Subject, dir: &Path, config: &Config) -> Result<()> {
    let log = Log::create(subject, dir, config.segment_bytes)?;
    let mut n = 0;
    while n < config.records {
        let len = (config.records - n).min(1_024);
        let payloads: Vec<Vec<u8>> = (n..n + len).map(push).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        log.append(&refs)?;
        n += len;
    }
    log.close()
}

/// Writes, reopens and reads back each subject.
pub fn recovery(subjects: &[Subject], config: &Config) -> Result<Vec<RecoveryRow>> {
    let mut rows = Vec::new();
    for &subject in subjects {
        let dir = util::data_dir(subject.name())?;
        eprintln!(
            "wal recovery: {}: writing {} records",
            subject.name(),
            util::thousands(config.records)
        );
        fill(subject, dir.path(), config)?;
        let disk = util::du(dir.path())?;
        let middle = config.records / 2;
        let want = config.read.min(config.records - middle);
        let mut copied = 0usize;
        let first = open_time(subject, dir.path())?;
        let start = Instant::now();
        let row = match subject {
            Subject::Floor => {
                let bytes = std::fs::read(dir.path().join("floor.log"))?;
                let open = start.elapsed();
                std::hint::black_box(&bytes);
                RecoveryRow {
                    subject,
                    written: config.records,
                    disk,
                    open: first,
                    again: open,
                    found: 0,
                    keys: 0,
                    read: None,
                }
            }
            Subject::SegLog | Subject::SegLogFalloc => {
                let opened = seglog::open(dir.path())?;
                let open = start.elapsed();
                if opened.torn > 0 {
                    eprintln!(
                        "wal recovery: {}: {} bytes of torn tail dropped",
                        subject.name(),
                        opened.torn
                    );
                }
                let t = Instant::now();
                let read =
                    opened.read_from(middle, want, |record| copied += record.to_vec().len())?;
                let read_time = t.elapsed();
                RecoveryRow {
                    subject,
                    written: config.records,
                    disk,
                    open: first,
                    again: open,
                    found: opened.records,
                    keys: opened.keys as u64,
                    read: Some((read, read_time)),
                }
            }
            Subject::OkayWal => {
                let log = OkayLog::open(dir.path())?;
                let open = start.elapsed();
                let (found, keys, bad) = log.recovered();
                if bad > 0 {
                    return Err(format!("okaywal: {bad} chunks failed their CRC").into());
                }
                let positions = log.positions(middle, want);
                let t = Instant::now();
                let read = log.read(&positions, |record| copied += record.to_vec().len())?;
                let read_time = t.elapsed();
                log.close()?;
                RecoveryRow {
                    subject,
                    written: config.records,
                    disk,
                    open: first,
                    again: open,
                    found,
                    keys: keys as u64,
                    read: Some((read, read_time)),
                }
            }
        };
        std::hint::black_box(copied);
        if subject != Subject::Floor && (row.found != config.records || row.keys != config.records)
        {
            return Err(format!(
                "{}: reopened with {} records and {} keys of {}",
                subject.name(),
                row.found,
                row.keys,
                config.records
            )
            .into());
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Opens the log of `subject` in `dir` once, dropping what it rebuilt: the first open
/// after the writer closed.
fn open_time(subject: Subject, dir: &Path) -> Result<Duration> {
    let start = Instant::now();
    match subject {
        Subject::Floor => drop(std::hint::black_box(std::fs::read(dir.join("floor.log"))?)),
        Subject::SegLog | Subject::SegLogFalloc => drop(seglog::open(dir)?),
        Subject::OkayWal => {
            let log = OkayLog::open(dir)?;
            let elapsed = start.elapsed();
            log.close()?;
            return Ok(elapsed);
        }
    }
    Ok(start.elapsed())
}

/// The recovery results as a markdown table.
#[must_use]
pub fn recovery_table(rows: &[RecoveryRow]) -> String {
    let mut out = String::from(
        "| subject | records | disk | bytes / record on disk | open + rebuild, first | again | records/s on open (again) | read from the middle | read records/s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.subject.name(),
            util::thousands(row.written),
            util::mib(row.disk),
            util::thousands(row.disk / row.written.max(1)),
            util::duration(row.open),
            util::duration(row.again),
            util::thousands((row.written as f64 / row.again.as_secs_f64()) as u64),
            row.read.map_or("—".to_owned(), |(n, t)| format!(
                "{} in {}",
                util::thousands(n),
                util::duration(t)
            )),
            row.read.map_or("—".to_owned(), |(n, t)| util::thousands(
                (n as f64 / t.as_secs_f64()) as u64
            )),
        );
    }
    out
}
