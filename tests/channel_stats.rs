//! Channel statistics through the real gRPC API: known event sequences pushed to the
//! webhook as WeChat signs them (retries included) give exact counts per scene and
//! bucket in UTC, Asia/Shanghai, Asia/Kolkata (+5:30) and Asia/Kathmandu (+5:45), right
//! at local midnight; the counts survive a restart, a deleted statistics store is
//! rebuilt from the event log, ListScenes pages, bad requests name their field, and the
//! README's grpcurl lines for the service work as written.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{TestService, config, now, push, scan_xml};
use tonic::{Code, transport::Channel};
use wechat_qr::pb::{self, channel_stats_service_client::ChannelStatsServiceClient};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

async fn stats_client(service: &TestService) -> ChannelStatsServiceClient<Channel> {
    ChannelStatsServiceClient::connect(format!("http://{}", service.grpc_addr))
        .await
        .expect("gRPC client connects")
}

fn at(second: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: second as i64,
        nanos: 0,
    }
}

/// UTC midnight ten days ago: inside the statistics' retention whenever the test runs.
fn base_day() -> u64 {
    (now() / DAY - 10) * DAY
}

/// (scans, new_followers, unique_users, unfollows).
type Four = (u64, u64, u64, u64);

fn four(c: Option<&pb::SceneCounts>) -> Four {
    let c = c.expect("counts present");
    (c.scans, c.new_followers, c.unique_users, c.unfollows)
}

fn request(start: u64, end: u64, bucket: pb::Bucket, zone: &str) -> pb::GetSceneStatsRequest {
    pb::GetSceneStatsRequest {
        start_time: Some(at(start)),
        end_time: Some(at(end)),
        bucket: bucket.into(),
        time_zone: zone.to_owned(),
        ..Default::default()
    }
}

/// Per scene: its buckets and totals.
fn table(response: &pb::GetSceneStatsResponse) -> Vec<(String, Vec<Four>, Four)> {
    response
        .scenes
        .iter()
        .map(|s| {
            assert_eq!(s.buckets.len(), response.buckets.len(), "dense buckets");
            (
                s.scene.clone(),
                s.buckets.iter().map(|b| four(Some(b))).collect(),
                four(s.totals.as_ref()),
            )
        })
        .collect()
}

fn starts(response: &pb::GetSceneStatsResponse) -> Vec<i64> {
    response
        .buckets
        .iter()
        .map(|b| b.start_time.unwrap().seconds)
        .collect()
}

/// WeChat's push, sent `deliveries` times (its retries), each with a fresh nonce.
async fn deliver(service: &TestService, xml: &str, deliveries: usize) {
    for _ in 0..deliveries {
        push(service, xml).await;
    }
}

/// The known sequence, around UTC day `b`:
/// - u1 follows through poster-a at 01:00Z (WeChat delivers it 3 times), scans it at
///   02:00Z and 02:20Z, scans poster-b at 03:00Z (attribution stays poster-a), unfollows
///   at 20:00Z (counts for poster-a);
/// - u5 scans poster-a at 02:10Z;
/// - u2 follows through poster-a at 15:59:59Z (Shanghai 23:59:59), scans it at 18:29:59Z
///   (Kolkata 23:59:59, 3 deliveries) and 18:30:00Z (Kolkata midnight);
/// - u3 follows through poster-b at 16:00:00Z (Shanghai midnight);
/// - u4 follows without a code at 05:00Z and unfollows at 06:00Z: no scene's.
async fn push_sequence(service: &TestService, b: u64) {
    let sub = |o: &str, scene: &str, t: u64| {
        scan_xml("subscribe", o, &format!("qrscene_{scene}"), "T", t)
    };
    let scan = |o: &str, scene: &str, t: u64| scan_xml("SCAN", o, scene, "T", t);
    let unsub = |o: &str, t: u64| scan_xml("unsubscribe", o, "", "", t);
    deliver(service, &sub("u1", "poster-a", b + HOUR), 3).await;
    deliver(service, &scan("u1", "poster-a", b + 2 * HOUR), 1).await;
    deliver(service, &scan("u5", "poster-a", b + 2 * HOUR + 600), 1).await;
    deliver(service, &scan("u1", "poster-a", b + 2 * HOUR + 1200), 1).await;
    deliver(service, &scan("u1", "poster-b", b + 3 * HOUR), 1).await;
    deliver(
        service,
        &scan_xml("subscribe", "u4", "", "", b + 5 * HOUR),
        1,
    )
    .await;
    deliver(service, &unsub("u4", b + 6 * HOUR), 1).await;
    deliver(service, &sub("u2", "poster-a", b + 16 * HOUR - 1), 1).await;
    deliver(service, &sub("u3", "poster-b", b + 16 * HOUR), 1).await;
    deliver(service, &scan("u2", "poster-a", b + 18 * HOUR + 1799), 3).await;
    deliver(service, &scan("u2", "poster-a", b + 18 * HOUR + 1800), 1).await;
    deliver(service, &unsub("u1", b + 20 * HOUR), 1).await;
}

/// Every expectation of the known sequence, in four zones.
async fn assert_sequence_counts(service: &TestService, b: u64) {
    let mut client = stats_client(service).await;
    let get = |req: pb::GetSceneStatsRequest| {
        let mut client = client.clone();
        async move { client.get_scene_stats(req).await.unwrap().into_inner() }
    };

    // UTC days: everything on day b.
    let utc = get(request(b, b + 2 * DAY, pb::Bucket::Day, "")).await;
    assert_eq!(utc.time_zone, "UTC");
    assert_eq!(starts(&utc), vec![b as i64, (b + DAY) as i64]);
    assert_eq!(
        table(&utc),
        vec![
            (
                "poster-a".to_owned(),
                vec![(5, 2, 3, 1), (0, 0, 0, 0)],
                (5, 2, 3, 1)
            ),
            (
                "poster-b".to_owned(),
                vec![(1, 1, 2, 0), (0, 0, 0, 0)],
                (1, 1, 2, 0)
            ),
        ]
    );
    assert_eq!(utc.omitted_scenes, 0);
    assert!(!utc.cursor.is_empty());

    // Shanghai (+8): local midnight is 16:00Z; 15:59:59Z is the day before.
    let shanghai = get(request(b, b + 2 * DAY, pb::Bucket::Day, "Asia/Shanghai")).await;
    assert_eq!(
        starts(&shanghai),
        vec![
            (b - 8 * HOUR) as i64,
            (b + 16 * HOUR) as i64,
            (b + 40 * HOUR) as i64
        ]
    );
    assert_eq!(
        table(&shanghai),
        vec![
            (
                "poster-a".to_owned(),
                vec![(3, 2, 3, 0), (2, 0, 1, 1), (0, 0, 0, 0)],
                (5, 2, 3, 1)
            ),
            (
                "poster-b".to_owned(),
                vec![(1, 0, 1, 0), (0, 1, 1, 0), (0, 0, 0, 0)],
                (1, 1, 2, 0)
            ),
        ]
    );

    // Kolkata (+5:30): local midnight is 18:30Z; 18:29:59Z is the day before.
    let kolkata = get(request(b, b + 2 * DAY, pb::Bucket::Day, "Asia/Kolkata")).await;
    assert_eq!(
        starts(&kolkata),
        vec![
            (b - 5 * HOUR - 1800) as i64,
            (b + 18 * HOUR + 1800) as i64,
            (b + 42 * HOUR + 1800) as i64
        ]
    );
    assert_eq!(
        table(&kolkata),
        vec![
            (
                "poster-a".to_owned(),
                vec![(4, 2, 3, 0), (1, 0, 1, 1), (0, 0, 0, 0)],
                (5, 2, 3, 1)
            ),
            (
                "poster-b".to_owned(),
                vec![(1, 1, 2, 0), (0, 0, 0, 0), (0, 0, 0, 0)],
                (1, 1, 2, 0)
            ),
        ]
    );

    // Kathmandu (+5:45) hours: local 07:00 is 01:15Z, so u1's 02:00Z and u5's 02:10Z
    // share a bucket and u1's 02:20Z starts the next; the 01:00Z follow is before both.
    let kathmandu = get(request(
        b + HOUR + 900,
        b + 3 * HOUR + 900,
        pb::Bucket::Hour,
        "Asia/Kathmandu",
    ))
    .await;
    assert_eq!(
        starts(&kathmandu),
        vec![(b + HOUR + 900) as i64, (b + 2 * HOUR + 900) as i64]
    );
    assert_eq!(
        table(&kathmandu),
        vec![
            (
                "poster-a".to_owned(),
                vec![(2, 0, 2, 0), (1, 0, 1, 0)],
                (3, 0, 2, 0)
            ),
            (
                "poster-b".to_owned(),
                vec![(0, 0, 0, 0), (1, 0, 1, 0)],
                (1, 0, 1, 0)
            ),
        ]
    );

    // A filter answers exactly the scenes asked, unseen ones as zeros, top first.
    let mut filtered = request(b, b + DAY, pb::Bucket::Day, "UTC");
    filtered.scenes = vec!["never-seen".into(), "poster-b".into(), "never-seen".into()];
    let filtered = get(filtered).await;
    assert_eq!(
        table(&filtered),
        vec![
            ("poster-b".to_owned(), vec![(1, 1, 2, 0)], (1, 1, 2, 0)),
            ("never-seen".to_owned(), vec![(0, 0, 0, 0)], (0, 0, 0, 0)),
        ]
    );

    // max_scenes keeps the top ones and says how many it left out.
    let mut top = request(b, b + DAY, pb::Bucket::Day, "UTC");
    top.max_scenes = 1;
    let top = get(top).await;
    assert_eq!(top.scenes.len(), 1);
    assert_eq!(top.scenes[0].scene, "poster-a");
    assert_eq!(top.omitted_scenes, 1);

    // Lifetime totals and activity span.
    let listed = client
        .list_scenes(pb::ListScenesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let summary: Vec<(String, Four, i64, i64)> = listed
        .scenes
        .iter()
        .map(|s| {
            (
                s.scene.clone(),
                four(s.totals.as_ref()),
                s.first_activity_time.unwrap().seconds,
                s.last_activity_time.unwrap().seconds,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "poster-a".to_owned(),
                (5, 2, 3, 1),
                (b + HOUR) as i64,
                (b + 20 * HOUR) as i64
            ),
            (
                "poster-b".to_owned(),
                (1, 1, 2, 0),
                (b + 3 * HOUR) as i64,
                (b + 16 * HOUR) as i64
            ),
        ]
    );
    assert!(listed.next_page_token.is_empty());
}

#[tokio::test]
async fn known_sequence_gives_exact_counts_in_every_zone_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let mut cfg = config();
    cfg.data_dir = data.clone();
    let b = base_day();

    let service = TestService::start_with(cfg.clone()).await;
    push_sequence(&service, b).await;
    assert_sequence_counts(&service, b).await;
    service.stop().await;

    // A restart on the same data directory: the counts, not one more.
    let service = TestService::start_with(cfg.clone()).await;
    assert_sequence_counts(&service, b).await;
    service.stop().await;

    // The statistics store removed: rebuilt from the event log, which still holds all.
    let stats_file = data.join(wechat_qr::stats::STATS_FILE);
    assert!(stats_file.exists());
    std::fs::remove_file(&stats_file).unwrap();
    let service = TestService::start_with(cfg.clone()).await;
    assert_sequence_counts(&service, b).await;
    assert!(stats_file.exists(), "the rebuilt store is on disk");

    // Counting goes on after the rebuild: one more scan of poster-b, counted once.
    let scan = scan_xml("SCAN", "u9", "poster-b", "T", b + 4 * HOUR);
    deliver(&service, &scan, 3).await;
    let mut client = stats_client(&service).await;
    let mut req = request(b, b + DAY, pb::Bucket::Day, "UTC");
    req.scenes = vec!["poster-b".into()];
    let answer = client.get_scene_stats(req).await.unwrap().into_inner();
    assert_eq!(table(&answer)[0].2, (2, 1, 3, 0));
    service.stop().await;
}

#[tokio::test]
async fn in_memory_log_keeps_statistics_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.event_log = wechat_qr::config::EventLogKind::Memory;
    cfg.data_dir = dir.path().join("data");
    let service = TestService::start_with(cfg).await;
    let b = base_day();
    push_sequence(&service, b).await;
    assert_sequence_counts(&service, b).await;
    service.stop().await;
    assert!(
        !dir.path()
            .join("data")
            .join(wechat_qr::stats::STATS_FILE)
            .exists(),
        "no statistics file with the in-memory log"
    );
}

#[tokio::test]
async fn list_scenes_pages_in_scene_order() {
    let service = TestService::start().await;
    let b = base_day();
    let names = ["s-03", "s-01", "s-05", "s-02", "s-04"];
    for (i, scene) in names.iter().enumerate() {
        let xml = scan_xml("SCAN", &format!("o{i}"), scene, "T", b + i as u64);
        push(&service, &xml).await;
    }
    let mut client = stats_client(&service).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_scenes(pb::ListScenesRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.scenes.len() <= 2);
        seen.extend(page.scenes.into_iter().map(|s| s.scene));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, vec!["s-01", "s-02", "s-03", "s-04", "s-05"]);

    for (request, field) in [
        (
            pb::ListScenesRequest {
                page_token: "not a token".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListScenesRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListScenesRequest {
                account: "wxsomeoneelse".into(),
                ..Default::default()
            },
            "account",
        ),
    ] {
        let status = client.list_scenes(request).await.unwrap_err();
        // An AppID not served is NOT_FOUND, naming the field like the others.
        let code = if field == "account" {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn bad_requests_name_their_field() {
    let service = TestService::start().await;
    let mut client = stats_client(&service).await;
    let b = base_day();
    let ok = request(b, b + DAY, pb::Bucket::Day, "Asia/Shanghai");
    let cases: Vec<(pb::GetSceneStatsRequest, &str)> = vec![
        (
            pb::GetSceneStatsRequest {
                time_zone: "Mars/Olympus_Mons".into(),
                ..ok.clone()
            },
            "time_zone",
        ),
        (
            pb::GetSceneStatsRequest {
                end_time: Some(at(b - 1)),
                ..ok.clone()
            },
            "end_time",
        ),
        (
            pb::GetSceneStatsRequest {
                end_time: Some(at(b)),
                ..ok.clone()
            },
            "end_time",
        ),
        (
            // Two years of hours: more than 10,000 buckets.
            request(b - 730 * DAY, b, pb::Bucket::Hour, "UTC"),
            "end_time",
        ),
        (
            pb::GetSceneStatsRequest {
                bucket: pb::Bucket::Unspecified.into(),
                ..ok.clone()
            },
            "bucket",
        ),
        (
            pb::GetSceneStatsRequest {
                start_time: None,
                ..ok.clone()
            },
            "start_time",
        ),
        (
            pb::GetSceneStatsRequest {
                account: "wxsomeoneelse".into(),
                ..ok.clone()
            },
            "account",
        ),
        (
            pb::GetSceneStatsRequest {
                max_scenes: 1001,
                ..ok.clone()
            },
            "max_scenes",
        ),
        (
            pb::GetSceneStatsRequest {
                scenes: vec![String::new()],
                ..ok.clone()
            },
            "scenes",
        ),
    ];
    for (request, field) in cases {
        let status = client.get_scene_stats(request).await.unwrap_err();
        let code = if field == "account" {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{field}: {status:?}"
        );
    }
    // The longest hour range that fits answers.
    let widest = client
        .get_scene_stats(request(b - 10_000 * HOUR, b, pb::Bucket::Hour, "UTC"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(widest.buckets.len(), 10_000);
}

/// The grpcurl lines of the README's "Channel statistics" section, run as written
/// against a real service: reflection lists the service and each call answers JSON.
#[tokio::test]
async fn readme_grpcurl_lines_work() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Channel statistics"))
        .expect("README has a Channel statistics section");
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in section.lines() {
        let line = line.trim();
        if line.starts_with("grpcurl ") || !pending.is_empty() {
            match line.strip_suffix('\\') {
                Some(start) => pending.push_str(start),
                None => {
                    pending.push_str(line);
                    commands.push(std::mem::take(&mut pending));
                }
            }
        }
    }
    assert!(commands.len() >= 3, "{commands:?}");

    let service = TestService::start().await;
    let b = base_day();
    push_sequence(&service, b).await;
    let mut dirs = vec![repo.join(".venv/bin")];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(dirs).unwrap();
    let mut outputs = String::new();
    for command in &commands {
        let command = command.replace("127.0.0.1:50051", &service.grpc_addr.to_string());
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new("bash")
                .args(["-c", &command])
                .env("PATH", &path)
                .output(),
        )
        .await
        .expect("grpcurl answers")
        .expect("bash runs");
        assert!(
            output.status.success(),
            "{command}\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    assert!(
        outputs.contains("wechat.qr.v1.ChannelStatsService"),
        "{outputs}"
    );
    assert!(outputs.contains("\"scenes\""), "{outputs}");
}
