//! A minimal segment log of the shape issue 21 proposes, and the `append + fdatasync`
//! floor it is measured against (the same writer with every extra switched off).
//!
//! A record is `len: u32 | crc32c: u32 | seq: u64 | payload`, the CRC-32C over `seq` and
//! the payload; the payload is the event, its de-duplication key and its replay-guard
//! seal, so one append is the only write a push costs. Records go to segment files of a
//! fixed size, prepared one ahead by a helper thread (zero-filled and synced, or reserved
//! with `fallocate`), so a sync rarely carries metadata. Group commit overlaps: appenders
//! queue their encoded record in a shared buffer; whoever finds no sync in flight takes the
//! buffer, writes it with one `pwrite` and `fdatasync`s the segment outside the lock;
//! records queued meanwhile form the next group. Opening reads every segment, checks each
//! record's length, CRC and sequence number, stops at the first bad record of the last
//! segment (a torn tail) and refuses a bad record in an older one, and rebuilds a sparse
//! index (one position per [`SPARSE_EVERY`] records) and the de-duplication map.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use std::os::fd::AsRawFd;

use crate::Result;

/// Record header: length, CRC, sequence number.
pub const HEADER: usize = 16;

/// One sparse index entry per this many records.
pub const SPARSE_EVERY: u64 = 256;

/// How a segment's space is reserved before records are written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prealloc {
    /// Zeros written and synced by the helper thread, then dropped from the page cache:
    /// later `fdatasync`s flush data only.
    Zeroed,
    /// `fallocate`: no bytes written up front, but ext4 marks the extents unwritten and
    /// converting them is a journalled metadata change on the first sync of each block.
    Fallocate,
}

/// What the writer does besides appending bytes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Frame records (header + CRC) and pre-allocate segments; `false` is the floor: raw
    /// bytes appended to one growing file, `fdatasync`ed, nothing else.
    pub framed: bool,
    /// How segments are reserved (framed only).
    pub prealloc: Prealloc,
    /// Bytes per segment.
    pub segment_bytes: u64,
}

/// The group-commit writer.
pub struct SegLog {
    dir: PathBuf,
    options: Options,
    state: Mutex<State>,
    synced: Condvar,
    syncs: AtomicU64,
}

struct State {
    /// Encoded records queued for the next group.
    queued: Vec<u8>,
    /// Sequence number of the next record appended.
    next: u64,
    /// Every record below this is covered by a completed sync.
    synced_below: u64,
    /// Whether a leader is writing and syncing a group.
    syncing: bool,
    /// The segment being written (taken by the leader while it syncs).
    segment: Option<Segment>,
    /// The first record's sequence number of each segment, oldest first.
    segments: Vec<u64>,
    error: Option<String>,
}

struct Segment {
    file: File,
    /// Bytes written so far.
    len: u64,
    /// The next segment, being prepared by a helper thread.
    next: Option<JoinHandle<std::io::Result<File>>>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// Creates a segment file of `bytes`, reserved as `prealloc` says, and syncs it and
/// its directory.
fn prepare(dir: &Path, name: &str, bytes: u64, prealloc: Prealloc) -> std::io::Result<File> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    match prealloc {
        Prealloc::Zeroed => {
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < bytes {
                let n = (bytes - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            // Written in 1 MiB pieces, the zeros sit in 1 MiB page-cache folios (ext4 on
            // recent kernels); a record appended into one would dirty, and the next sync
            // write, the whole MiB. Dropped from the cache once on disk, the pages come
            // back one at a time as records land in them.
            file.sync_all()?;
            // SAFETY: a valid open descriptor; advice only.
            let rc =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
        }
        Prealloc::Fallocate => {
            // SAFETY: a valid open descriptor; mode 0 reserves and extends the file.
            let len = libc::off_t::try_from(bytes).map_err(std::io::Error::other)?;
            // SAFETY: as above.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    file.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

impl SegLog {
    /// Creates an empty log in `dir`.
    pub fn create(dir: &Path, options: Options) -> Result<Self> {
        let segment = if options.framed {
            // Both the first segment and the next are ready before the first append.
            let file = prepare(dir, "next.seg", options.segment_bytes, options.prealloc)?;
            fs::rename(dir.join("next.seg"), segment_path(dir, 0))?;
            let next = prepare(dir, "next.seg", options.segment_bytes, options.prealloc)?;
            Segment {
                file,
                len: 0,
                next: Some(std::thread::spawn(move || Ok(next))),
            }
        } else {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("floor.log"))?;
            Segment {
                file,
                len: 0,
                next: None,
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            options,
            state: Mutex::new(State {
                queued: Vec::with_capacity(1 << 20),
                next: 0,
                synced_below: 0,
                syncing: false,
                segment: Some(segment),
                segments: vec![0],
                error: None,
            }),
            synced: Condvar::new(),
            syncs: AtomicU64::new(0),
        })
    }

    fn segment_with_next(dir: &Path, options: Options, file: File) -> Segment {
        let dir = dir.to_owned();
        let next = std::thread::spawn(move || {
            prepare(&dir, "next.seg", options.segment_bytes, options.prealloc)
        });
        Segment {
            file,
            len: 0,
            next: Some(next),
        }
    }

    /// Completed `fdatasync`s.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Appends one record per payload and returns once a sync covers them all.
    pub fn append(&self, payloads: &[&[u8]]) -> Result<()> {
        let mut state = self.state.lock().expect("log lock");
        for payload in payloads {
            let seq = state.next;
            state.next += 1;
            if self.options.framed {
                encode(&mut state.queued, seq, payload);
            } else {
                state.queued.extend_from_slice(payload);
            }
        }
        let mine = state.next;
        loop {
            if let Some(error) = &state.error {
                return Err(error.clone().into());
            }
            if state.synced_below >= mine {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).expect("log lock");
                continue;
            }
            // Lead the next group: everything queued so far.
            state.syncing = true;
            let group = std::mem::replace(&mut state.queued, Vec::with_capacity(1 << 20));
            let through = state.next;
            let mut segment = state.segment.take().expect("segment present");
            drop(state);
            let written = self.write_group(&mut segment, &group, through);
            state = self.state.lock().expect("log lock");
            match written {
                Ok(rotated) => {
                    if let Some(first) = rotated {
                        state.segments.push(first);
                    }
                    state.synced_below = through;
                }
                Err(e) => state.error = Some(e.to_string()),
            }
            state.segment = Some(segment);
            state.syncing = false;
            self.synced.notify_all();
        }
    }

    /// Writes `group` (records below `through`) and syncs it; returns the first sequence
    /// number of a segment it rotated to, if it did.
    fn write_group(
        &self,
        segment: &mut Segment,
        group: &[u8],
        through: u64,
    ) -> std::io::Result<Option<u64>> {
        let mut rotated = None;
        if self.options.framed && segment.len + group.len() as u64 > self.options.segment_bytes {
            // A group never straddles segments: the rest of this one stays zero, which a
            // reader takes as its end.
            let first = first_seq(group).unwrap_or(through);
            let file = segment
                .next
                .take()
                .expect("next segment prepared")
                .join()
                .expect("prepare thread")?;
            fs::rename(self.dir.join("next.seg"), segment_path(&self.dir, first))?;
            File::open(&self.dir)?.sync_all()?;
            *segment = Self::segment_with_next(&self.dir, self.options, file);
            rotated = Some(first);
        }
        if self.options.framed {
            segment.file.write_all_at(group, segment.len)?;
        } else {
            segment.file.write_all(group)?;
        }
        segment.len += group.len() as u64;
        segment.file.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(rotated)
    }
}

/// The sequence number of the first record in an encoded group.
fn first_seq(group: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(group.get(8..16)?.try_into().ok()?))
}

/// Appends the framed record `seq → payload` to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let mut crc = crc32c::crc32c(&seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A parsed record: sequence number, payload, bytes it took.
pub type Decoded<'a> = (u64, &'a [u8], usize);

/// Parses the record at the start of `bytes`: `Ok(Some((seq, payload, size)))`, `Ok(None)`
/// at the zeros past the last record, `Err` for a record whose CRC or length is wrong.
pub fn decode(bytes: &[u8]) -> std::result::Result<Option<Decoded<'_>>, &'static str> {
    let Some(header) = bytes.get(..HEADER) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len == 0 && crc == 0 {
        return Ok(None);
    }
    let seq_bytes = &header[8..16];
    let payload = bytes
        .get(HEADER..HEADER + len)
        .ok_or("length past the end")?;
    let actual = crc32c::crc32c_append(crc32c::crc32c(seq_bytes), payload);
    if actual != crc {
        return Err("checksum mismatch");
    }
    let seq = u64::from_le_bytes(seq_bytes.try_into().expect("8 bytes"));
    Ok(Some((seq, payload, HEADER + len)))
}

/// A log opened for reading: the sparse index and what rebuilding it found.
pub struct Opened {
    /// `(seq, segment first seq, byte offset)` of every [`SPARSE_EVERY`]th record.
    pub sparse: Vec<(u64, u64, u64)>,
    /// Records found.
    pub records: u64,
    /// De-duplication keys indexed.
    pub keys: usize,
    /// Bytes dropped at a torn tail.
    pub torn: u64,
    /// The first sequence number of every segment, oldest first.
    segments: Vec<u64>,
    dir: PathBuf,
}

/// Splits a payload built by [`payload`] into its event, key and seal.
pub fn parts(payload: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let record_len = u16::from_le_bytes(payload.get(0..2)?.try_into().ok()?) as usize;
    let key_len = u16::from_le_bytes(payload.get(2..4)?.try_into().ok()?) as usize;
    let rest = payload.get(4..)?;
    let (record, rest) = rest.split_at_checked(record_len)?;
    let (key, seal) = rest.split_at_checked(key_len)?;
    Some((record, key, seal))
}

/// One push's record: event, de-duplication key and seal, with two length prefixes.
pub fn payload(record: &[u8], key: &[u8], seal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + record.len() + key.len() + seal.len());
    out.extend_from_slice(&(record.len() as u16).to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(record);
    out.extend_from_slice(key);
    out.extend_from_slice(seal);
    out
}

/// Opens the framed log in `dir`: reads every segment, checks every record and rebuilds
/// the sparse index and the de-duplication map (key → seq).
pub fn open(dir: &Path) -> Result<Opened> {
    let mut firsts: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    firsts.sort_unstable();
    let mut sparse = Vec::new();
    let mut dedup: HashMap<Box<[u8]>, u64> = HashMap::new();
    let mut records = 0;
    let mut torn = 0;
    let mut expected: Option<u64> = None;
    for (i, &first) in firsts.iter().enumerate() {
        let bytes = fs::read(segment_path(dir, first))?;
        let last_segment = i + 1 == firsts.len();
        let mut at = 0;
        loop {
            match decode(&bytes[at..]) {
                Ok(Some((seq, payload, size))) => {
                    if expected.is_some_and(|e| e != seq) {
                        return Err(format!("segment {first}: record {seq} out of order").into());
                    }
                    expected = Some(seq + 1);
                    if seq % SPARSE_EVERY == 0 {
                        sparse.push((seq, first, at as u64));
                    }
                    let (_, key, _) = parts(payload).ok_or("malformed payload")?;
                    dedup.insert(key.into(), seq);
                    records += 1;
                    at += size;
                }
                Ok(None) => break,
                Err(_) if last_segment => {
                    // A torn tail: what follows was never acknowledged.
                    torn = bytes[at..]
                        .iter()
                        .rposition(|&b| b != 0)
                        .map_or(0, |p| p + 1) as u64;
                    break;
                }
                Err(why) => {
                    return Err(format!("segment {first} offset {at}: {why}").into());
                }
            }
        }
    }
    Ok(Opened {
        sparse,
        records,
        keys: dedup.len(),
        torn,
        segments: firsts,
        dir: dir.to_owned(),
    })
}

impl Opened {
    /// Reads the records from `from` onwards, `n` at most, calling `each` with every event;
    /// returns how many were read.
    pub fn read_from(&self, from: u64, n: u64, mut each: impl FnMut(&[u8])) -> Result<u64> {
        let start = self.sparse.partition_point(|&(seq, _, _)| seq <= from);
        let Some(&(_, mut segment, mut offset)) = start.checked_sub(1).map(|i| &self.sparse[i])
        else {
            return Ok(0);
        };
        let mut read = 0;
        let mut buf = Vec::new();
        loop {
            let mut file = File::open(segment_path(&self.dir, segment))?;
            file.seek(SeekFrom::Start(offset))?;
            buf.clear();
            file.read_to_end(&mut buf)?;
            let mut at = 0;
            while let Ok(Some((seq, payload, size))) = decode(&buf[at..]) {
                at += size;
                if seq < from {
                    continue;
                }
                let (record, _, _) = parts(payload).ok_or("malformed payload")?;
                each(record);
                read += 1;
                if read == n {
                    return Ok(read);
                }
            }
            // The next segment, if any.
            let next = self.segments.iter().copied().find(|&s| s > segment);
            match next {
                Some(s) => {
                    segment = s;
                    offset = 0;
                }
                None => return Ok(read),
            }
        }
    }
}
