//! The durable event log, shown with the real binary: `kill -9` under load loses no
//! acknowledged push and breaks no cursor; retention bounds disk and memory; a data
//! directory that cannot be used stops the start with a message naming path and cause;
//! a full disk answers 503 and NOT_SERVING, then heals by itself. Full-disk and
//! read-only cases mount small tmpfs file systems, which needs root (CI runs as root):
//! without it they fail, never skip.

mod common;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    TOKEN,
    data_dir::{command, epoch_by_push, event_store_bytes, post, start, whole_log},
    now, scan_xml, signed_query,
};
use tonic::Code;
use wechat_qr::{events::STORE_FILE, pb};

/// One push the test sent: its body and what became of it.
#[derive(Debug, Clone)]
struct Sent {
    openid: String,
    query: String,
    body: String,
    /// Test-wide clock ticks: when it was sent and when `success` came back.
    sent_tick: u64,
    acked_tick: Option<u64>,
}

/// A unique push for `openid`, with its own nonce (a fresh query per push).
fn push_for(openid: &str, n: u64) -> (String, String) {
    let body = scan_xml("SCAN", openid, "42", "durable-ticket", now());
    let query = signed_query(TOKEN, &now().to_string(), &format!("nonce{n}"));
    (query, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_push_and_breaks_no_cursor() {
    const ROUNDS: usize = 12;
    const WORKERS: usize = 8;
    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    // What every round's subscriber received, in order, each resuming after the last
    // cursor the previous one received before its process was killed.
    let mut streamed: Vec<(String, String)> = Vec::new();
    let mut last_cursor: Option<String> = None;
    let mut push_number = 0u64;
    for round in 0..ROUNDS {
        let binary = start(data.path(), &[]).await;
        let mut client = binary.client().await;
        let mut stream = client
            .stream_events(pb::StreamEventsRequest {
                resume_after: last_cursor.clone().unwrap_or_default(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("round {round}: resume after {last_cursor:?}: {s:?}"))
            .into_inner();
        let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let reader = {
            let received = received.clone();
            tokio::spawn(async move {
                while let Ok(Some(response)) = stream.message().await {
                    received
                        .lock()
                        .unwrap()
                        .push((response.event.unwrap().openid, response.cursor));
                }
            })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..WORKERS {
            let (sent, clock, stop, url) = (
                sent.clone(),
                clock.clone(),
                stop.clone(),
                binary.webhook_url.clone(),
            );
            let first = push_number + worker as u64 * 100_000;
            workers.push(tokio::spawn(async move {
                let http = reqwest::Client::builder().no_proxy().build().unwrap();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let openid = format!("o-r{round}-w{worker}-{i}");
                    let (query, body) = push_for(&openid, first + i);
                    let index = {
                        let mut sent = sent.lock().unwrap();
                        sent.push(Sent {
                            openid,
                            query: query.clone(),
                            body: body.clone(),
                            sent_tick: clock.fetch_add(1, Ordering::SeqCst),
                            acked_tick: None,
                        });
                        sent.len() - 1
                    };
                    match post(&http, &url, &query, &body).await {
                        Some((200, answer)) if answer == "success" => {
                            sent.lock().unwrap()[index].acked_tick =
                                Some(clock.fetch_add(1, Ordering::SeqCst));
                        }
                        Some((status, answer)) => panic!("push answered {status} {answer}"),
                        // The process died with the push in flight: not acknowledged.
                        None => return,
                    }
                }
            }));
        }
        push_number += 1_000_000;
        tokio::time::sleep(Duration::from_millis(150 + rand::random_range(0..350))).await;
        let killed_with = binary.log.lock().unwrap().len();
        binary.kill9().await;
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.await.unwrap();
        }
        reader.await.unwrap();
        let received = std::mem::take(&mut *received.lock().unwrap());
        if let Some((_, cursor)) = received.last() {
            last_cursor = Some(cursor.clone());
        }
        assert!(killed_with > 0);
        streamed.extend(received);
    }

    let binary = start(data.path(), &[]).await;
    // The last cursor, taken before the last kill, resumes exactly too.
    let mut client = binary.client().await;
    let mut rest = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: last_cursor.clone().expect("events were streamed"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Ok(Ok(Some(response))) =
        tokio::time::timeout(Duration::from_millis(700), rest.message()).await
    {
        streamed.push((response.event.unwrap().openid, response.cursor));
    }
    let epoch = &last_cursor.unwrap()[..8];
    let log = whole_log(&binary, epoch).await;
    assert_eq!(
        streamed, log,
        "the streams of all rounds, each resumed after the previous one's last cursor, \
         are the whole log: no gap, no duplicate"
    );

    let sent = sent.lock().unwrap().clone();
    let acked: Vec<&Sent> = sent.iter().filter(|s| s.acked_tick.is_some()).collect();
    eprintln!(
        "{ROUNDS} kill -9 rounds: {} pushes sent, {} acknowledged, {} events logged",
        sent.len(),
        acked.len(),
        log.len()
    );
    assert!(
        acked.len() >= ROUNDS * 20,
        "enough pushes acknowledged to mean something: {}",
        acked.len()
    );
    let mut positions: HashMap<&str, usize> = HashMap::new();
    for (position, (openid, _)) in log.iter().enumerate() {
        assert!(
            positions.insert(openid.as_str(), position).is_none(),
            "{openid} is in the log twice"
        );
    }
    for push in &acked {
        assert!(
            positions.contains_key(push.openid.as_str()),
            "acknowledged push {} is lost",
            push.openid
        );
    }
    // Acknowledgement order: a push sent after another was acknowledged sits after it.
    let mut by_position: Vec<(usize, &Sent)> = acked
        .iter()
        .map(|s| (positions[s.openid.as_str()], *s))
        .collect();
    by_position.sort_by_key(|(position, _)| *position);
    let mut earliest_ack_after = u64::MAX;
    for (_, push) in by_position.iter().rev() {
        assert!(
            earliest_ack_after > push.sent_tick,
            "{} was sent after a later-logged push was acknowledged",
            push.openid
        );
        earliest_ack_after = earliest_ack_after.min(push.acked_tick.unwrap());
    }

    // WeChat's retries of acknowledged pushes, after the restart, add nothing.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for push in acked.iter().step_by((acked.len() / 50).max(1)) {
        let answer = post(&http, &binary.webhook_url, &push.query, &push.body).await;
        assert_eq!(answer, Some((200, "success".to_owned())));
    }
    assert_eq!(whole_log(&binary, epoch).await.len(), log.len());
    binary.stop().await;
}

/// The channel statistics sync their store at most once a second (their counting is
/// redone from the log after a crash): `kill -9` under load, several times, and every
/// event the log holds is counted exactly once after the last restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_leaves_statistics_counting_each_logged_event_once() {
    const ROUNDS: usize = 4;
    let data = tempfile::tempdir().unwrap();
    let mut push_number = 0u64;
    for round in 0..ROUNDS {
        let binary = start(data.path(), &[]).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..6u64 {
            let (stop, url) = (stop.clone(), binary.webhook_url.clone());
            let first = push_number + worker * 100_000;
            workers.push(tokio::spawn(async move {
                let http = reqwest::Client::builder().no_proxy().build().unwrap();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (query, body) = push_for(&format!("o-s{round}-w{worker}-{i}"), first + i);
                    if post(&http, &url, &query, &body).await.is_none() {
                        return;
                    }
                }
            }));
        }
        // Long enough for several of the statistics' unsynced commits and a synced one.
        tokio::time::sleep(Duration::from_millis(700 + rand::random_range(0..900))).await;
        binary.kill9().await;
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.await.unwrap();
        }
        push_number += 1_000_000;
    }
    let binary = start(data.path(), &[]).await;
    let epoch = {
        let (query, body) = push_for("o-stats-last", push_number);
        epoch_by_push(&binary, &query, &body).await
    };
    let logged = whole_log(&binary, &epoch).await.len() as u64;
    assert!(logged > 100, "only {logged} events were logged under load");
    let mut stats = pb::channel_stats_service_client::ChannelStatsServiceClient::connect(format!(
        "http://{}",
        binary.grpc_addr
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scenes = stats
            .list_scenes(pb::ListScenesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .scenes;
        let scans: u64 = scenes
            .iter()
            .filter(|s| s.scene == "42")
            .map(|s| s.totals.as_ref().map_or(0, |t| t.scans))
            .sum();
        assert!(
            scans <= logged,
            "{scans} scans counted of {logged} logged events: some counted twice"
        );
        if scans == logged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "statistics stuck at {scans} scans of {logged} logged events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    binary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_by_bytes_bounds_disk_and_memory_under_a_flood() {
    let data = tempfile::tempdir().unwrap();
    let binary = start(
        data.path(),
        &[
            ("WECHAT_QR_RETAIN_BYTES", "1048576"),
            ("WECHAT_QR_RETAIN_EVENTS", "1000000"),
            // The replay guard's memory is bounded by the window, not by bytes: a short
            // window lets it turn over within the test, as it does every five minutes.
            ("WECHAT_QR_REPLAY_WINDOW_SECONDS", "2"),
        ],
    )
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // Long fields, so a few thousand pushes are many times the byte bound.
    let scene = "s".repeat(60);
    let mut sizes = Vec::new();
    let mut n = 0u64;
    for phase in 0..4 {
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let (http, url, scene) = (http.clone(), binary.webhook_url.clone(), scene.clone());
            let base = n + worker * 10_000;
            tasks.push(tokio::spawn(async move {
                for i in 0..375 {
                    let openid = format!("o{}-{}", base + i, "x".repeat(100));
                    let body = scan_xml("SCAN", &openid, &scene, &"t".repeat(100), now());
                    let query = signed_query(TOKEN, &now().to_string(), &format!("n{}", base + i));
                    let answer = post(&http, &url, &query, &body).await;
                    assert_eq!(answer, Some((200, "success".to_owned())));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        n += 100_000;
        sizes.push((phase, event_store_bytes(data.path()), binary.rss_kib()));
    }
    eprintln!("retention by bytes: (phase, disk bytes, RSS KiB) {sizes:?}");
    // 12,000 pushes of ~500 bytes: six times the bound went through.
    let (_, disk_1, rss_1) = sizes[1];
    let (_, disk_3, rss_3) = sizes[3];
    assert!(
        disk_3 <= disk_1 + disk_1 / 5,
        "disk keeps growing: {sizes:?} (phase, bytes, RSS KiB)"
    );
    assert!(
        rss_3 <= rss_1 + rss_1 / 5,
        "memory keeps growing: {sizes:?} (phase, bytes, RSS KiB)"
    );
    let epoch = {
        let (query, body) = push_for("o-last", 999_999);
        epoch_by_push(&binary, &query, &body).await
    };
    let mut client = binary.client().await;
    let status = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: format!("{epoch}{:016x}", 0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::OutOfRange,
        "the oldest events are gone"
    );
    binary.stop().await;
}

/// The binary's start on `data_dir` fails: its exit status and what it printed.
async fn failed_start(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::from(command(data_dir, env))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("a failed start exits promptly")
    .unwrap();
    assert!(!output.status.success(), "the start must fail: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn file_digest(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn an_unusable_data_directory_stops_the_start_naming_path_and_cause() {
    let dir = tempfile::tempdir().unwrap();

    // Cannot be created: its parent is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let below_file = file.join("data");
    let message = failed_start(&below_file, &[]).await;
    assert!(
        message.contains("cannot create the data directory")
            && message.contains(&below_file.display().to_string()),
        "{message}"
    );

    // Locked: a second instance on a directory in use.
    let data = dir.path().join("data");
    let first = start(&data, &[]).await;
    let store = data.join(STORE_FILE);
    let message = failed_start(&data, &[]).await;
    assert!(
        message.contains("in use by another running wechat-qr")
            && message.contains(&data.display().to_string()),
        "{message}"
    );
    first.stop().await;

    // Another account's data: left untouched.
    let before = file_digest(&store);
    let message = failed_start(
        &data,
        &[
            ("WECHAT_APP_ID", "wx-another-account"),
            ("WECHAT_APP_SECRET", "another-secret"),
            ("WECHAT_TOKEN", "another-token"),
        ],
    )
    .await;
    assert!(
        message.contains("holds data of AppID")
            && message.contains("wx-another-account")
            && message.contains(&data.display().to_string()),
        "{message}"
    );
    assert!(
        !message.contains("another-secret"),
        "no secret in the message"
    );
    assert_eq!(file_digest(&store), before, "the data is untouched");

    // Not writable: a read-only file system.
    let readonly = Mount::tmpfs(&dir.path().join("ro"), "size=1m,ro");
    let message = failed_start(&readonly.path.join("data"), &[]).await;
    assert!(
        message.contains(&readonly.path.join("data").display().to_string())
            && (message.contains("Read-only file system") || message.contains("not writable")),
        "{message}"
    );
    let mounted_ro = Mount::tmpfs(&dir.path().join("ro2"), "size=1m");
    std::fs::create_dir(mounted_ro.path.join("data")).unwrap();
    mounted_ro.remount("ro");
    let message = failed_start(&mounted_ro.path.join("data"), &[]).await;
    assert!(
        message.contains("is not writable") && message.contains("Read-only file system"),
        "{message}"
    );
}

#[tokio::test]
async fn a_store_file_that_is_not_a_store_is_named_as_such_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("short", &b"not a database"[..]),
        ("long", &[b'x'; 64 * 1024][..]),
    ] {
        let data = dir.path().join(name);
        std::fs::create_dir(&data).unwrap();
        let store = data.join(STORE_FILE);
        std::fs::write(&store, content).unwrap();
        let message = failed_start(&data, &[]).await;
        assert!(
            message.contains(&format!(
                "{} is not a wechat-qr event store",
                store.display()
            )) && message.contains("do not begin with a store's signature")
                && !message.contains("not writable"),
            "{message}"
        );
        assert_eq!(file_digest(&store), content, "the file is untouched");
    }

    // A directory where the store file belongs.
    let data = dir.path().join("directory");
    std::fs::create_dir_all(data.join(STORE_FILE)).unwrap();
    let message = failed_start(&data, &[]).await;
    assert!(
        message.contains("is not a wechat-qr event store (it is a directory)"),
        "{message}"
    );
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(path: &Path, options: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root): {status}"
        );
        Self {
            path: path.to_owned(),
        }
    }

    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_and_not_serving_then_heals_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::tmpfs(&dir.path().join("small"), "size=4m");
    let data = mount.path.join("data");
    let binary = start(&data, &[]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut acked = HashSet::new();
    let mut n = 0u64;
    let mut next_push = || {
        n += 1;
        let openid = format!("o-full-{n}-{}", "x".repeat(100));
        let (query, body) = push_for(&openid, n);
        (openid, query, body)
    };
    for _ in 0..20 {
        let (openid, query, body) = next_push();
        let answer = post(&http, &binary.webhook_url, &query, &body).await;
        assert_eq!(answer, Some((200, "success".to_owned())));
        acked.insert(openid);
    }
    assert_eq!(binary.health().await, 1, "SERVING");

    // Fill the file system to the last byte.
    let filler = mount.path.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0u8; 1]);
        let _ = file.sync_all();
    }
    // The log's segment was allocated ahead (a megabyte, on a disk this small): pushes
    // fill that room first, then are refused.
    let mut refused = None;
    for _ in 0..20_000 {
        let (openid, query, body) = next_push();
        match post(&http, &binary.webhook_url, &query, &body).await {
            Some((200, answer)) if answer == "success" => {
                acked.insert(openid);
            }
            Some((status, _)) => {
                assert!(
                    status >= 500,
                    "a full disk is WeChat's cue to retry: {status}"
                );
                refused = Some((openid, query, body));
                break;
            }
            None => panic!("the service died:\n{}", binary.log.lock().unwrap()),
        }
    }
    let (refused_openid, refused_query, refused_body) =
        refused.expect("a push is refused once the disk is full");
    assert_eq!(
        binary.health().await,
        2,
        "NOT_SERVING while the disk is full"
    );
    assert_eq!(binary.metric("wechat_qr_event_log_writable").await, 0.0);
    assert!(
        binary
            .log
            .lock()
            .unwrap()
            .contains("event log write failed"),
        "the log says why"
    );
    // gRPC keeps serving reads meanwhile.
    binary
        .client()
        .await
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneStr("full".into())),
            expire_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap();

    // Room again: WeChat's retry of the refused push is taken, and the service recovers
    // without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match post(&http, &binary.webhook_url, &refused_query, &refused_body).await {
            Some((200, answer)) if answer == "success" => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("no recovery: {other:?}"),
        }
    }
    acked.insert(refused_openid);
    // Health follows the log's writability through a watch channel, a moment after the
    // write that succeeded: poll for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while binary.health().await != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(binary.health().await, 1, "SERVING again");
    assert_eq!(binary.metric("wechat_qr_event_log_writable").await, 1.0);

    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (openid, query, body) = next_push();
    assert_eq!(
        post(&http, &binary.webhook_url, &query, &body).await,
        Some((200, "success".to_owned()))
    );
    acked.insert(openid);
    let epoch = stream.message().await.unwrap().unwrap().cursor[..8].to_owned();
    let log = whole_log(&binary, &epoch).await;
    let logged: HashSet<String> = log.iter().map(|(openid, _)| openid.clone()).collect();
    assert_eq!(logged.len(), log.len(), "no duplicate");
    for openid in &acked {
        assert!(logged.contains(openid), "acknowledged {openid} lost");
    }
    binary.kill9().await;
    drop(mount);
}

#[tokio::test]
async fn a_cursor_at_u64_max_is_out_of_range_in_either_log() {
    for backend in [
        wechat_qr::config::EventLogKind::Durable,
        wechat_qr::config::EventLogKind::Memory,
    ] {
        let mut config = common::config();
        config.event_log = backend;
        let service = common::TestService::start_with(config).await;
        let mut stream = common::subscribe(&service, pb::StreamEventsRequest::default()).await;
        common::push(&service, &scan_xml("SCAN", "o-max", "1", "t", now())).await;
        let cursor = common::next(&mut stream).await.unwrap().cursor;
        for seq in [u64::MAX, u64::MAX - 1] {
            let status = service
                .client()
                .await
                .stream_events(pb::StreamEventsRequest {
                    resume_after: format!("{}{seq:016x}", &cursor[..8]),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::OutOfRange, "{backend:?}: {status:?}");
        }
        service.stop().await;
    }
}
