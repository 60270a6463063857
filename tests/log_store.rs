//! The event log's own store, shown on the real binary's data directories: a simulated
//! power loss (the log cut back to the last sync the writer reported) keeps every
//! acknowledged push exactly once; a torn tail, cut at every byte of the newest records,
//! is dropped with one log line and nothing acknowledged goes with it; a flipped byte in
//! an older segment refuses the start naming segment and offset, and is never served; a
//! well-formed record over 16 MiB is damage, never served; a data directory of the
//! previous release (a fixture its binary wrote) is migrated once, its cursors still
//! valid.

mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::{
    TOKEN,
    binary::logged_field,
    data_dir::{command, epoch_by_push, post, start, whole_log},
    now, scan_xml, signed_query,
};
use wechat_qr::{
    config::{Retention, dev},
    events::{
        Appended, Cursor, DedupKey, DurableLog, Event, EventKind, EventLog, LOG_DIR, STORE_FILE,
    },
    pb,
};

/// The writer's per-sync debug line, which names the offset each sync covered.
const SYNC_LOG: &str = "info,wechat_qr::events::durable=debug";

/// A unique push with its own nonce.
fn push(openid: &str, n: u64) -> (String, String) {
    let body = scan_xml("SCAN", openid, "7", "log-store-ticket", now());
    let query = signed_query(TOKEN, &now().to_string(), &format!("ls-nonce-{n}"));
    (query, body)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Pushes `count` scans from openids `{prefix}-0`, `{prefix}-1`, … one at a time, each
/// answered `success`; returns the openids in order.
async fn push_acknowledged(
    http: &reqwest::Client,
    webhook_url: &str,
    prefix: &str,
    count: u64,
) -> Vec<String> {
    let mut acked = Vec::new();
    for n in 0..count {
        let openid = format!("{prefix}-{n}");
        let (query, body) = push(&openid, n);
        assert_eq!(
            post(http, webhook_url, &query, &body).await,
            Some((200, "success".to_owned()))
        );
        acked.push(openid);
    }
    acked
}

/// The segment files of `data`, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join(LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// `(start, end, holds an event)` of every record in a segment, read from the frames'
/// length prefixes and type bytes (a record of seals alone holds none).
fn records(segment: &Path) -> Vec<(usize, usize, bool)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = 0;
    let mut spans = Vec::new();
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        spans.push((at, at + 8 + len, bytes[at + 8] == 1));
        at += 8 + len;
    }
    spans
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The openids of every event the store in `data` serves, opened by the library itself.
async fn served(data: &Path) -> Vec<String> {
    let log = DurableLog::open(
        data,
        &[dev::APP_ID.to_owned()],
        Retention {
            max_events: 1_000_000,
            max_age: Duration::from_secs(86_400),
            max_bytes: 1 << 30,
        },
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let head = log.head().await.unwrap();
    let events = log
        .read_after(Cursor { seq: 0, ..head }, 1_000_000)
        .await
        .unwrap();
    log.close().await;
    events.into_iter().map(|e| e.event.openid.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_loss_after_the_last_reported_sync_keeps_every_acknowledged_push_once() {
    const ROUNDS: usize = 3;
    let data = tempfile::tempdir().unwrap();
    let http = http();
    let counter = Arc::new(AtomicU64::new(0));
    let mut acked: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let binary = start(data.path(), &[("RUST_LOG", SYNC_LOG)]).await;
        let stop = Arc::new(AtomicBool::new(false));
        let round_acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (http, url, stop, counter, round_acked) = (
                http.clone(),
                binary.webhook_url.clone(),
                stop.clone(),
                counter.clone(),
                round_acked.clone(),
            );
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let openid = format!("power-{n}");
                    let (query, body) = push(&openid, n);
                    match post(&http, &url, &query, &body).await {
                        Some((200, answer)) if answer == "success" => {
                            round_acked.lock().unwrap().push(openid);
                        }
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        // The power fails: the process dies, and the disk keeps only what was synced.
        let log = binary.log.clone();
        binary.kill9().await;
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.await.unwrap();
        }
        let acked_now = round_acked.lock().unwrap().clone();
        assert!(
            acked_now.len() > 10,
            "round {round}: too few pushes acknowledged"
        );
        acked.extend(acked_now);
        // The last sync reported (every `success` came after the sync covering it).
        let last = {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let text = log.lock().unwrap().clone();
                let line = text
                    .lines()
                    .rev()
                    .find(|l| l.contains("event log synced"))
                    .map(str::to_owned);
                if let Some(line) = line {
                    break line;
                }
                assert!(std::time::Instant::now() < deadline, "no sync reported");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let segment = PathBuf::from(logged_field(&last, "segment").expect("segment field"));
        let synced: u64 = logged_field(&last, "synced_to")
            .expect("synced_to field")
            .parse()
            .unwrap();
        for later in segments(data.path()).into_iter().filter(|s| *s > segment) {
            std::fs::remove_file(later).unwrap();
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.set_len(synced).unwrap();
        drop(file);
        let served = served(data.path()).await;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for openid in &served {
            *seen.entry(openid).or_default() += 1;
        }
        for openid in &acked {
            assert_eq!(
                seen.get(openid.as_str()),
                Some(&1),
                "round {round}: acknowledged push {openid} not served exactly once ({} served)",
                served.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_torn_tail_is_cut_with_one_log_line_and_nothing_acknowledged_goes() {
    const PUSHES: u64 = 12;
    let data = tempfile::tempdir().unwrap();
    // Small segments (an eighth of the byte bound, at least 64 KiB): quick to copy.
    let env = [("WECHAT_QR_RETAIN_BYTES", "524288")];
    let binary = start(data.path(), &env).await;
    let http = http();
    let acked = push_acknowledged(&http, &binary.webhook_url, "torn", PUSHES).await;
    binary.kill9().await;
    let segment = segments(data.path()).pop().unwrap();
    let spans = records(&segment);
    let events: Vec<(usize, usize, bool)> = spans.iter().copied().filter(|r| r.2).collect();
    assert_eq!(events.len(), PUSHES as usize, "one event record per push");
    let torn = tempfile::tempdir().unwrap();
    copy_dir(data.path(), torn.path());
    let copied = torn.path().join(LOG_DIR).join(segment.file_name().unwrap());
    let original = std::fs::read(&segment).unwrap();
    // Every byte offset inside the last two records: what a crash in the middle of
    // writing them leaves (their bytes up to the offset, zeros after, as allocated).
    let (from, end) = (spans[spans.len() - 2].0, spans.last().unwrap().1);
    assert_eq!(
        original[end..].iter().max(),
        Some(&0),
        "after the records: allocated zeros"
    );
    for cut in from..end {
        let mut bytes = original.clone();
        bytes[cut..end].fill(0);
        std::fs::write(&copied, &bytes).unwrap();
        let whole = events.iter().filter(|(_, e, _)| *e <= cut).count();
        assert_eq!(
            served(torn.path()).await,
            acked[..whole],
            "cut at byte {cut}: serves exactly the whole records before it"
        );
    }
    // The real binary on a tail cut inside the last record: one line says what it
    // dropped; it serves everything before; a new push follows on.
    let (last_start, _, _) = *events.last().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[last_start + 11..].fill(0);
    std::fs::write(&segment, &bytes).unwrap();
    let binary = start(data.path(), &env).await;
    let lines: Vec<String> = binary
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("torn tail"))
        .collect();
    assert_eq!(lines.len(), 1, "one line about the torn tail: {lines:?}");
    assert!(
        lines[0].contains(&format!("offset={last_start}"))
            && lines[0].contains(&format!("kept_through_event={}", PUSHES - 1)),
        "it names where it cut and what it kept: {}",
        lines[0]
    );
    let epoch = {
        let (query, body) = push("torn-after", PUSHES);
        epoch_by_push(&binary, &query, &body).await
    };
    let all: Vec<String> = whole_log(&binary, &epoch)
        .await
        .into_iter()
        .map(|(openid, _)| openid)
        .collect();
    let mut expected = acked[..acked.len() - 1].to_vec();
    expected.push("torn-after".to_owned());
    assert_eq!(all, expected);
    binary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_in_an_older_segment_is_never_served_and_refuses_the_start() {
    let data = tempfile::tempdir().unwrap();
    // Segments of 512 KiB (the byte bound over eight).
    let env = [("WECHAT_QR_RETAIN_BYTES", "4194304")];
    let binary = start(data.path(), &env).await;
    let http = http();
    // More events than the service keeps decoded in memory (4,096), so a reader from the
    // start reads the oldest segment from the file.
    let mut workers = Vec::new();
    for worker in 0..8u64 {
        let (http, url) = (http.clone(), binary.webhook_url.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..625 {
                let n = worker * 1_000 + i;
                let (query, body) = push(&format!("flip-{n}-{}", "x".repeat(100)), n);
                assert_eq!(
                    post(&http, &url, &query, &body).await,
                    Some((200, "success".to_owned()))
                );
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let n = 10_000;
    assert!(
        segments(data.path()).len() >= 3,
        "the log rolled over segments"
    );
    let oldest = segments(data.path()).remove(0);
    let spans = records(&oldest);
    let middle = spans.len() / 2;
    let (start_of, end_of, _) = spans[middle];
    let offset = (start_of + end_of) / 2;
    let before = spans[..middle].iter().filter(|r| r.2).count();
    flip(&oldest, offset);
    // While running: a reader reaching the damaged record gets an error, not the event.
    let epoch = {
        let (query, body) = push("flip-last", n);
        epoch_by_push(&binary, &query, &body).await
    };
    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: format!("{epoch}{:016x}", 0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut delivered = 0;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream answers")
        {
            Ok(Some(_)) => delivered += 1,
            Ok(None) => panic!("the stream ended without an error after {delivered} events"),
            Err(status) => break status,
        }
    };
    assert!(
        delivered <= before,
        "no event at or after the damaged record is served: {delivered}"
    );
    assert!(status.message().contains("corrupt"), "{status:?}");
    binary.kill9().await;
    // At start-up: refused, naming the segment and the offset of the damaged record.
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::from(command(data.path(), &env))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success(), "the start must fail");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(&oldest.display().to_string())
            && message.contains(&format!("byte offset {start_of}"))
            && message.contains("checksum"),
        "{message}"
    );
}

/// A record longer than 16 MiB is damage, not data: a well-formed event record (its
/// checksum right, its sequence number the next) with a 16 MiB OpenID, written after the
/// newest record of a stopped service, is cut off as a damaged tail at the next start —
/// never decoded nor served — and the service starts and serves what was before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_over_16_mib_is_damage_and_never_served() {
    const PUSHES: u64 = 3;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path(), &[]).await;
    let http = http();
    let mut acked = push_acknowledged(&http, &binary.webhook_url, "before-huge", PUSHES).await;
    binary.stop().await;

    let segment = segments(data.path()).pop().unwrap();
    let spans = records(&segment);
    let first_seq: u64 = segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let next_seq = first_seq + spans.iter().filter(|r| r.2).count() as u64;
    let end = spans.last().unwrap().1;
    // The frame as the log writes one (src/events/segment.rs): len, crc32(len ++ payload),
    // payload = tag 1, seq, received ms, kind, new follower, CreateTime, six strings
    // (key, openid, scene, ticket, account, AppID), no seals.
    let huge = "o".repeat(16 * 1024 * 1024);
    let mut payload = vec![1u8];
    payload.extend_from_slice(&next_seq.to_le_bytes());
    payload.extend_from_slice(&(now() * 1000).to_le_bytes());
    payload.extend_from_slice(&[2, 0]);
    payload.extend_from_slice(&now().to_le_bytes());
    for text in [
        "huge-key",
        &huge,
        "7",
        "log-store-ticket",
        "gh_test",
        dev::APP_ID,
    ] {
        payload.extend_from_slice(&(text.len() as u32).to_le_bytes());
        payload.extend_from_slice(text.as_bytes());
    }
    payload.extend_from_slice(&0u32.to_le_bytes());
    assert!(payload.len() > 16 * 1024 * 1024);
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(&payload);
    let mut frame = len.to_vec();
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    frame.extend_from_slice(&payload);
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.write_all_at(&frame, end as u64).unwrap();
        file.write_all_at(&[0; 8], (end + frame.len()) as u64)
            .unwrap();
    }
    drop(frame);

    let binary = start(data.path(), &[]).await;
    let lines: Vec<String> = binary
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("torn tail"))
        .collect();
    assert_eq!(lines.len(), 1, "one line about the damage: {lines:?}");
    assert!(
        lines[0].contains("impossible record length")
            && lines[0].contains(&format!("offset={end}")),
        "{}",
        lines[0]
    );
    let epoch = {
        let (query, body) = push("after-huge", PUSHES);
        epoch_by_push(&binary, &query, &body).await
    };
    let all: Vec<String> = whole_log(&binary, &epoch)
        .await
        .into_iter()
        .map(|(openid, _)| openid)
        .collect();
    acked.push("after-huge".to_owned());
    assert_eq!(all, acked, "the huge record is not served");
    binary.stop().await;
}

/// Flips one bit of the byte at `offset`, in place.
fn flip(file: &Path, offset: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset as u64).unwrap();
    byte[0] ^= 0x20;
    file.write_all_at(&byte, offset as u64).unwrap();
}

/// The fixture: a data directory the previous release's binary wrote (see its README).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_directory_of_the_previous_release_is_migrated_once_and_cursors_stay_valid() {
    let data = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("data"), data.path());
    // What the old binary served: `openid cursor` per line, oldest first.
    let expected: Vec<(String, String)> = std::fs::read_to_string(fixture().join("served.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (openid, cursor) = l.split_once(' ').unwrap();
            (openid.to_owned(), cursor.to_owned())
        })
        .collect();
    let epoch = expected[0].1[..8].to_owned();
    let binary = start(data.path(), &[]).await;
    assert_eq!(binary.count("migrated the event log"), 1);
    assert_eq!(whole_log(&binary, &epoch).await, expected);
    // A cursor the old binary handed out resumes where it was.
    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: expected[1].1.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let next = stream.message().await.unwrap().unwrap();
    assert_eq!(next.cursor, expected[2].1);
    // New pushes follow the old ones in the same epoch.
    let http = http();
    let (query, body) = push("after-upgrade", 1);
    assert_eq!(
        post(&http, &binary.webhook_url, &query, &body).await,
        Some((200, "success".to_owned()))
    );
    binary.stop().await;
    let binary = start(data.path(), &[]).await;
    assert_eq!(binary.count("migrated the event log"), 0, "migrated once");
    let after = whole_log(&binary, &epoch).await;
    assert_eq!(after[..expected.len()], expected[..]);
    assert_eq!(after.len(), expected.len() + 1);
    assert_eq!(after.last().unwrap().0, "after-upgrade");
    binary.stop().await;
    assert!(
        data.path().join(STORE_FILE).exists(),
        "the store of records stays"
    );
}

/// A log whose segments are the smallest (64 KiB), so a few hundred pushes roll it.
fn small_segments(data: &Path) -> Arc<DurableLog> {
    DurableLog::open(
        data,
        &[dev::APP_ID.to_owned()],
        Retention {
            max_events: 1_000_000,
            max_age: Duration::from_secs(86_400),
            max_bytes: 512 * 1024,
        },
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn append_many(log: &DurableLog, from: u64, count: u64) {
    for n in from..from + count {
        let openid = format!("roll-{n}-{}", "x".repeat(200));
        let event = Event {
            kind: EventKind::Scan,
            openid: openid.clone(),
            scene: "7".to_owned(),
            ticket: "t".repeat(200),
            account: "gh_test".to_owned(),
            app_id: dev::APP_ID.to_owned(),
            create_time: n,
            received_time: std::time::SystemTime::now(),
            new_follower: false,
        };
        let key = DedupKey::new(&openid, n, "SCAN", "7");
        let appended = log.append(event, key).await.unwrap();
        assert!(matches!(appended, Appended::New(_)), "{appended:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segments_roll_into_the_spare_made_ahead_and_a_left_over_spare_breaks_nothing() {
    let data = tempfile::tempdir().unwrap();
    let log = small_segments(data.path());
    // ~500 bytes a record: 400 of them fill three 64 KiB segments and start a fourth.
    append_many(&log, 0, 400).await;
    log.close().await;
    drop(log);
    let rolled = segments(data.path());
    assert!(rolled.len() >= 4, "the log rolled: {rolled:?}");
    let spare = data.path().join(LOG_DIR).join("next-segment.spare");
    assert!(spare.exists(), "the next segment is made ahead");
    assert_eq!(served(data.path()).await.len(), 400);

    // A crash while the spare was being made leaves anything in it: it is never read,
    // and made afresh.
    std::fs::write(&spare, b"not a segment at all").unwrap();
    // A crash right after a roll renamed the spare leaves an empty newest segment.
    let next = served(data.path()).await.len() as u64 + 1;
    let empty = data.path().join(LOG_DIR).join(format!("{next:020}.seg"));
    std::fs::write(&empty, vec![0u8; 64 * 1024]).unwrap();
    let log = small_segments(data.path());
    append_many(&log, 400, 400).await;
    log.close().await;
    drop(log);
    let served = served(data.path()).await;
    assert_eq!(served.len(), 800, "every event once, in order");
    for (n, openid) in served.iter().enumerate() {
        assert!(openid.starts_with(&format!("roll-{n}-")), "{n}: {openid}");
    }
    assert!(segments(data.path()).len() >= 7);
}
