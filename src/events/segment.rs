//! The on-disk form of the durable event log: segment files of length-prefixed,
//! CRC-checked records. A segment is named after the sequence number of its first event
//! (`log/00000000000000000001.seg`), is pre-allocated when created (so a sync of an
//! append rarely carries metadata) and ends at its first zero length prefix. A record
//! holds one event with its de-duplication key and the replay-guard seals that arrived
//! with it, or seals alone (a handshake's, or seals carried forward out of a segment
//! retention deletes).
//!
//! Frame: `len: u32 LE | crc32(len ++ payload): u32 LE | payload`. Payload: `tag: u8`
//! (1 event, 2 seals only), `seq: u64`, `received_ms: u64`, then for an event its key and
//! fields, then the seals. All integers little-endian; strings `u32` length + UTF-8.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use super::{Event, EventKind, Seal};

/// The frame's header: length and CRC.
pub(super) const FRAME_HEADER: usize = 8;
/// A record longer than this is damage, not data (a push is at most a few KiB).
const MAX_RECORD: usize = 16 * 1024 * 1024;
/// An event record.
const TAG_EVENT: u8 = 1;
/// A record of seals only.
const TAG_SEALS: u8 = 2;
/// The sparse index keeps the position of every this many events.
pub(super) const INDEX_EVERY: u64 = 32;

/// The file name of the segment whose first event is `first_seq`.
pub(super) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first sequence number a segment file's name says, if it is one.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Appends one framed record to `out`: an event (with its key) when `event` is given,
/// seals only otherwise.
pub(super) fn encode_record(
    out: &mut Vec<u8>,
    seq: u64,
    received_ms: u64,
    event: Option<(&Event, &str)>,
    seals: &[Seal],
) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.push(if event.is_some() {
        TAG_EVENT
    } else {
        TAG_SEALS
    });
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&received_ms.to_le_bytes());
    if let Some((event, key)) = event {
        out.push(match event.kind {
            EventKind::Subscribe => 1,
            EventKind::Scan => 2,
            EventKind::Unsubscribe => 3,
        });
        out.push(u8::from(event.new_follower));
        out.extend_from_slice(&event.create_time.to_le_bytes());
        for text in [
            key,
            &event.openid,
            &event.scene,
            &event.ticket,
            &event.account,
            &event.app_id,
        ] {
            put_str(out, text.as_bytes());
        }
    }
    out.extend_from_slice(&u32::try_from(seals.len()).unwrap_or(u32::MAX).to_le_bytes());
    for seal in seals {
        let (key, value) = super::seals::encode(seal);
        put_str(out, &key);
        put_str(out, &value);
    }
    let len = u32::try_from(out.len() - start - FRAME_HEADER).expect("records are small");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// What reading a frame at some position found.
#[derive(Debug)]
pub(super) enum Frame<'a> {
    /// A whole, intact record: its payload and its size with the frame.
    Record(Record<'a>, usize),
    /// A zero length prefix (or the end of the bytes): the end of the segment's data.
    End,
    /// Not enough bytes for the frame its header announces (only at the end of a read).
    Short,
    /// A frame that fails its checks: damage or a torn write.
    Bad(&'static str),
}

/// A checked record, not yet decoded past its header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record<'a> {
    /// The event's sequence number; 0 for seals only.
    pub(super) seq: u64,
    /// When the webhook accepted the push (or the seals were written), ms since the epoch.
    pub(super) received_ms: u64,
    /// Whether the record holds an event.
    pub(super) is_event: bool,
    /// The rest of the payload.
    body: &'a [u8],
}

/// Reads the frame at the start of `bytes`.
pub(super) fn read_frame(bytes: &[u8]) -> Frame<'_> {
    if bytes.len() < 4 {
        return if bytes.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Short
        };
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Frame::End;
    }
    // The header (type, seq, time) and the seal count at least.
    if !(17 + 4..=MAX_RECORD).contains(&len) {
        return Frame::Bad("impossible record length");
    }
    let Some(frame) = bytes.get(..FRAME_HEADER + len) else {
        return Frame::Short;
    };
    let stored_crc = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&frame[..4]);
    crc.update(&frame[FRAME_HEADER..]);
    if crc.finalize() != stored_crc {
        return Frame::Bad("checksum mismatch");
    }
    let payload = &frame[FRAME_HEADER..];
    let is_event = match payload[0] {
        TAG_EVENT => true,
        TAG_SEALS => false,
        _ => return Frame::Bad("unknown record type"),
    };
    Frame::Record(
        Record {
            seq: u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes")),
            received_ms: u64::from_le_bytes(payload[9..17].try_into().expect("8 bytes")),
            is_event,
            body: &payload[17..],
        },
        FRAME_HEADER + len,
    )
}

/// A cursor over a record's body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

/// An event record's fields, borrowed from the bytes.
struct EventFields<'a> {
    kind: u8,
    new_follower: bool,
    create_time: u64,
    key: &'a str,
    texts: [&'a str; 5],
}

impl<'a> Record<'a> {
    fn fields(&self) -> Option<(Option<EventFields<'a>>, Reader<'a>)> {
        let mut reader = Reader(self.body);
        let fields = if self.is_event {
            let kind = reader.u8()?;
            let new_follower = reader.u8()? != 0;
            let create_time = reader.u64()?;
            let key = reader.text()?;
            let texts = [
                reader.text()?,
                reader.text()?,
                reader.text()?,
                reader.text()?,
                reader.text()?,
            ];
            Some(EventFields {
                kind,
                new_follower,
                create_time,
                key,
                texts,
            })
        } else {
            None
        };
        Some((fields, reader))
    }

    /// The event and its de-duplication key; `None` for a record of seals only (or one
    /// whose checked bytes do not decode, which only a bug could write).
    pub(super) fn event(&self) -> Option<(Event, &'a str)> {
        let (fields, _) = self.fields()?;
        let f = fields?;
        let [openid, scene, ticket, account, app_id] = f.texts;
        Some((
            Event {
                kind: match f.kind {
                    1 => EventKind::Subscribe,
                    3 => EventKind::Unsubscribe,
                    _ => EventKind::Scan,
                },
                openid: openid.to_owned(),
                scene: scene.to_owned(),
                ticket: ticket.to_owned(),
                account: account.to_owned(),
                app_id: app_id.to_owned(),
                create_time: f.create_time,
                received_time: UNIX_EPOCH + Duration::from_millis(self.received_ms),
                new_follower: f.new_follower,
            },
            f.key,
        ))
    }

    /// The event's de-duplication key, without decoding the rest.
    pub(super) fn key(&self) -> Option<&'a str> {
        if !self.is_event {
            return None;
        }
        let mut reader = Reader(self.body);
        reader.take(10)?;
        reader.text()
    }

    /// The seals the record carries.
    pub(super) fn seals(&self) -> Vec<Seal> {
        let Some((_, mut reader)) = self.fields() else {
            return Vec::new();
        };
        let count = reader.u32().unwrap_or(0);
        let mut seals = Vec::new();
        for _ in 0..count {
            let (Some(key), Some(value)) = (reader.bytes(), reader.bytes()) else {
                break;
            };
            if let Some(seal) = super::seals::decode(key, value) {
                seals.push(seal);
            }
        }
        seals
    }
}

/// One segment as readers see it.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// Sequence number of its first event (the one its name says).
    pub(super) first_seq: u64,
    /// Sequence number after its last event (`first_seq` while it holds none).
    pub(super) next_seq: u64,
    /// Its file.
    pub(super) path: PathBuf,
    /// A read handle; still readable after retention unlinks the file.
    pub(super) file: Arc<File>,
    /// Bytes of synced records: readers never look past this.
    pub(super) end: u64,
    /// `(seq, position)` of every [`INDEX_EVERY`]th event.
    pub(super) index: Vec<(u64, u64)>,
}

/// Why a segment cannot be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    /// The OS refused the read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The segment.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record fails its checksum (or is otherwise damaged) where synced data must be.
    #[error("corrupt record in segment {path} at byte offset {offset}: {why}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A push's record is about this long: a read of `n` events asks for `n` times it.
const TYPICAL_RECORD: usize = 400;
/// The fewest and most bytes one read asks for.
const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 8 * 1024 * 1024;

impl Segment {
    /// What a reader needs to read the events from `seq` on: taken under the log's lock,
    /// read after it is released.
    pub(super) fn view(&self, seq: u64) -> View {
        let start = match self.index.partition_point(|&(s, _)| s <= seq) {
            0 => 0,
            i => self.index[i - 1].1,
        };
        View {
            path: self.path.clone(),
            file: self.file.clone(),
            start,
            end: self.end,
        }
    }
}

/// A segment's synced bytes from a position the sparse index gave.
#[derive(Debug)]
pub(super) struct View {
    path: PathBuf,
    file: Arc<File>,
    start: u64,
    end: u64,
}

impl View {
    /// Calls `each` for the events from `from` on (at most `max`), in order; returns how
    /// many it passed.
    pub(super) fn read_events(
        &self,
        from: u64,
        max: usize,
        mut each: impl FnMut(u64, Event),
    ) -> Result<usize, ReadError> {
        let mut pos = self.start;
        let mut taken = 0;
        let mut buf = Vec::new();
        while taken < max && pos < self.end {
            let want = usize::try_from(self.end - pos).unwrap_or(usize::MAX).min(
                max.saturating_sub(taken)
                    .saturating_mul(TYPICAL_RECORD)
                    .clamp(MIN_READ, MAX_READ),
            );
            buf.resize(want, 0);
            self.file
                .read_exact_at(&mut buf, pos)
                .map_err(|source| ReadError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            let mut at = 0;
            while taken < max && at < buf.len() {
                match read_frame(&buf[at..]) {
                    Frame::Record(record, size) => {
                        if record.is_event && record.seq >= from {
                            let Some((event, _)) = record.event() else {
                                return Err(self.corrupt(pos + at as u64, "undecodable event"));
                            };
                            each(record.seq, event);
                            taken += 1;
                        }
                        at += size;
                    }
                    Frame::Short if at > 0 => break,
                    Frame::Short => {
                        // One record larger than the chunk: read it whole.
                        if buf.len() < 4 {
                            return Err(self.corrupt(pos, "record runs past the synced end"));
                        }
                        let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
                        if u64::from(len) + FRAME_HEADER as u64 > self.end - pos {
                            return Err(self.corrupt(pos, "record runs past the synced end"));
                        }
                        buf.resize(FRAME_HEADER + len as usize, 0);
                        self.file
                            .read_exact_at(&mut buf, pos)
                            .map_err(|source| ReadError::Io {
                                path: self.path.clone(),
                                source,
                            })?;
                        continue;
                    }
                    Frame::End => return Err(self.corrupt(pos + at as u64, "zeros")),
                    Frame::Bad(why) => return Err(self.corrupt(pos + at as u64, why)),
                }
            }
            pos += at as u64;
            if at == 0 {
                break;
            }
        }
        Ok(taken)
    }

    fn corrupt(&self, offset: u64, why: &'static str) -> ReadError {
        ReadError::Corrupt {
            path: self.path.clone(),
            offset,
            why,
        }
    }
}

/// Reads a whole segment file, for recovery.
pub(super) fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}
