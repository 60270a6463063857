//! Recovery: how long a `wechat-qr` killed with `kill -9` takes to serve again on a data
//! directory holding a full retention, and what it holds in memory once back.
//!
//! A durable service is filled past its retention (`scale.recovery_events` retained —
//! 1,000,000 in the full run, issue 21's figure, ten times the default retention — from
//! 1.2 times as many pushes, so retention has pruned the oldest), a cursor of its oldest
//! retained event is read, and its resume is recorded in full. Then, in interleaved
//! rounds: a start on an empty data directory (the baseline), and a `kill -9` of the
//! filled service followed by a restart on its data directory. Each start is timed from
//! spawning the process until gRPC health answers `SERVING`, and until the first event
//! of a `StreamEvents` resuming the old cursor has been decoded (on the empty directory
//! the same call answers `OUT_OF_RANGE`: a new epoch); then, after a pause to settle,
//! its RSS is read from `/proc/PID/status`.
//!
//! After the first restart the old cursor's resume must yield exactly the events it
//! yielded before the kill (same cursors, same users, same order, none missing, none
//! added), and a new push must get the next cursor; anything else fails the run.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use wechat_qr::{events::Cursor, pb};

use crate::{
    Outcome, Result, Scale, grpc,
    http_load::Connection,
    processes::{DataDir, Service},
    pushes::{self, PushFactory},
    report::{self, Row},
};

/// The retention the service has by default (`WECHAT_QR_RETAIN_EVENTS`).
const DEFAULT_RETENTION: u64 = 100_000;
/// The most a restart on a full retention may take until it serves old cursors.
const TARGET: Duration = Duration::from_secs(1);
/// How long any one start, call or read may take before the run fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What one start measured.
struct Start {
    /// Spawn → health `SERVING`.
    serving: Duration,
    /// Spawn → the old cursor's `StreamEvents` answered (first event, or `OUT_OF_RANGE`).
    resumed: Duration,
    /// RSS after settling.
    rss: u64,
}

/// One event of a resumed stream: its cursor and the push it came from.
type Seen = (String, Option<u64>);

/// Fills, then restarts in rounds.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let retained = scale.recovery_events;
    let pushed = retained * 6 / 5;
    let retain = retained.to_string();
    // Room for every retained event (a few hundred bytes each) under the byte retention.
    let retain_bytes = (retained * 1024).max(256 * 1024 * 1024).to_string();
    // The default retention when it is the count wanted; otherwise (the full run's
    // 1,000,000, `--quick`'s small one) a count, with bytes enough to hold it.
    let env: Vec<(&str, &str)> = if retained == DEFAULT_RETENTION {
        Vec::new()
    } else {
        vec![
            ("WECHAT_QR_RETAIN_EVENTS", retain.as_str()),
            ("WECHAT_QR_RETAIN_BYTES", retain_bytes.as_str()),
        ]
    };
    let data = DataDir::new()?;
    let mut service = Service::start_in(&data.0, &env).await?;
    let factory = PushFactory::plaintext();

    // The first event's cursor gives the epoch and the first sequence number.
    let fill_started = Instant::now();
    let first = grpc::fill_log(&service, &factory, pushed, scale.connections, STEP_TIMEOUT).await?;
    let fill_time = fill_started.elapsed();
    let newest = first.seq + pushed - 1;
    // The cursor a client holds for the oldest event still retained.
    let old = Cursor {
        seq: newest - retained + 1,
        ..first
    };
    let expected_count = newest - old.seq;
    let mut client = grpc::connect(service.grpc_addr).await?;
    let expected = read_resume(&mut client, old, expected_count).await?;
    if expected.last().map(|(c, _)| c.as_str())
        != Some(
            &Cursor {
                seq: newest,
                ..first
            }
            .to_string(),
        )
    {
        return Err("before the kill, the resume did not end at the newest event".into());
    }
    let rss_filled = service.process.rss_bytes()?;
    drop(client);
    let on_disk = disk_usage(&data.0)?;

    let rounds = scale.rounds + 1;
    let mut empty_starts = Vec::new();
    let mut full_starts = Vec::new();
    let mut checked = false;
    for _ in 0..rounds {
        // The baseline: the same start on a new, empty data directory.
        {
            let empty = DataDir::new()?;
            let spawned = Instant::now();
            let service = Service::start_in(&empty.0, &[]).await?;
            empty_starts.push(measure(scale, &service, spawned, old, true).await?);
        }
        service.process.kill9()?;
        let spawned = Instant::now();
        service = Service::start_in(&data.0, &env).await?;
        full_starts.push(measure(scale, &service, spawned, old, false).await?);
        if !checked {
            check_after_restart(&service, &factory, old, &expected, pushed).await?;
            checked = true;
        }
    }
    // For comparison, once: a clean stop (SIGTERM, the store closed) and a restart.
    drop(service);
    let spawned = Instant::now();
    let service = Service::start_in(&data.0, &env).await?;
    let clean = measure(scale, &service, spawned, old, false).await?;
    drop(service);
    let on_disk_after = disk_usage(&data.0)?;

    let median = |starts: &[Start], f: fn(&Start) -> Duration| {
        let mut v: Vec<Duration> = starts.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let median_rss = |starts: &[Start]| {
        let mut v: Vec<u64> = starts.iter().map(|s| s.rss).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let n = report::thousands(retained);
    let timed = |what: &str, f: fn(&Start) -> Duration| {
        let (ours, base) = (median(&full_starts, f), median(&empty_starts, f));
        let mut row = Row::plain(
            format!(
                "recovery after kill -9, {n} retained events: spawn → {what} (median of {rounds})"
            ),
            report::duration(ours),
        );
        row.baseline = format!("{} (empty data directory)", report::duration(base));
        row.ratio = report::times(ours.as_secs_f64() / base.as_secs_f64().max(1e-9));
        row.with_target("≤ 1 s", ours <= TARGET)
    };
    let (rss_ours, rss_base) = (median_rss(&full_starts), median_rss(&empty_starts));
    let mut rss_row = Row::plain(
        format!("recovery: RSS after the restart, {n} retained events"),
        report::bytes(rss_ours as f64),
    );
    rss_row.baseline = format!("{} (empty data directory)", report::bytes(rss_base as f64));
    rss_row.ratio = report::times(rss_ours as f64 / (rss_base as f64).max(1.0));
    let disk_row = Row::plain(
        format!("recovery: data directory on disk, {n} retained events"),
        format!(
            "{} allocated ({} B per event); file {} ({} B)",
            report::bytes(on_disk.allocated as f64),
            report::thousands(on_disk.allocated / retained),
            report::bytes(on_disk.apparent as f64),
            report::thousands(on_disk.apparent / retained)
        ),
    );
    let list = |starts: &[Start], f: fn(&Start) -> Duration| {
        starts
            .iter()
            .map(|s| report::duration(f(s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Outcome {
        rows: vec![
            timed("health SERVING", |s| s.serving),
            timed("old cursor's resume answers", |s| s.resumed),
            rss_row,
            disk_row,
        ],
        notes: vec![
            format!(
                "recovery: filled with {} pushes over {} connections in {:.1} s ({}), {n} retained; RSS before the kill {}",
                report::thousands(pushed),
                scale.connections,
                fill_time.as_secs_f64(),
                report::rate(pushed as f64 / fill_time.as_secs_f64()),
                report::bytes(rss_filled as f64),
            ),
            format!(
                "recovery: each round, spawn → SERVING / → resume answers: after kill -9 {} / {}; empty directory {} / {}",
                list(&full_starts, |s| s.serving),
                list(&full_starts, |s| s.resumed),
                list(&empty_starts, |s| s.serving),
                list(&empty_starts, |s| s.resumed),
            ),
            format!(
                "recovery: after a clean stop (SIGTERM) instead: spawn → SERVING {}, → resume answers {}, RSS {}",
                report::duration(clean.serving),
                report::duration(clean.resumed),
                report::bytes(clean.rss as f64),
            ),
            format!(
                "recovery: data directory {} apparent, {} allocated on disk, before the first kill; {} and {} after the last",
                report::bytes(on_disk.apparent as f64),
                report::bytes(on_disk.allocated as f64),
                report::bytes(on_disk_after.apparent as f64),
                report::bytes(on_disk_after.allocated as f64),
            ),
            format!(
                "recovery: after the restart the old cursor resumed with exactly the {} later events, and a new push got the next cursor",
                report::thousands(expected_count),
            ),
        ],
    })
}

/// Times one start from `spawned`: health, then the old cursor's resume (its first event,
/// or on an empty directory its `OUT_OF_RANGE`), then RSS after `scale.settle`.
async fn measure(
    scale: &Scale,
    service: &Service,
    spawned: Instant,
    old: Cursor,
    empty: bool,
) -> Result<Start> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.grpc_addr))?
        .connect()
        .await?;
    let answer = tokio::time::timeout(
        STEP_TIMEOUT,
        HealthClient::new(channel).check(HealthCheckRequest::default()),
    )
    .await
    .map_err(|_| "health did not answer")??;
    if answer.get_ref().status != ServingStatus::Serving as i32 {
        return Err(format!(
            "health answered {:?} after a start",
            answer.get_ref().status
        )
        .into());
    }
    let serving = spawned.elapsed();

    let mut client = grpc::connect(service.grpc_addr).await?;
    let opened = tokio::time::timeout(
        STEP_TIMEOUT,
        client.stream_events(pb::StreamEventsRequest {
            resume_after: old.to_string(),
            ..Default::default()
        }),
    )
    .await
    .map_err(|_| "StreamEvents did not answer")?;
    match (empty, opened) {
        (true, Err(status)) if status.code() == Code::OutOfRange => {}
        (true, other) => {
            return Err(format!(
                "an old cursor on an empty data directory: expected OUT_OF_RANGE, got {:?}",
                other.map(|_| "a stream")
            )
            .into());
        }
        (false, Ok(stream)) => {
            let mut stream = stream.into_inner();
            let first = tokio::time::timeout(STEP_TIMEOUT, stream.message())
                .await
                .map_err(|_| "the resumed stream sent nothing")??
                .ok_or("the resumed stream ended")?;
            if first.cursor
                != (Cursor {
                    seq: old.seq + 1,
                    ..old
                })
                .to_string()
            {
                return Err(format!(
                    "after the restart the resume of {old} began at {}, not at the next event",
                    first.cursor
                )
                .into());
            }
        }
        (false, Err(status)) => {
            return Err(format!("after the restart the resume of {old} failed: {status}").into());
        }
    }
    let resumed = spawned.elapsed();
    drop(client);
    tokio::time::sleep(scale.settle).await;
    Ok(Start {
        serving,
        resumed,
        rss: service.process.rss_bytes()?,
    })
}

/// Resumes after `from` and reads `count` events.
async fn read_resume(
    client: &mut wechat_qr::pb::qr_service_client::QrServiceClient<tonic::transport::Channel>,
    from: Cursor,
    count: u64,
) -> Result<Vec<Seen>> {
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: from.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut seen = Vec::with_capacity(count as usize);
    while (seen.len() as u64) < count {
        let response = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .map_err(|_| format!("the resume stalled after {} of {count} events", seen.len()))??
            .ok_or("the resumed stream ended early")?;
        let user = response
            .event
            .as_ref()
            .and_then(|e| pushes::index_of(&e.openid));
        seen.push((response.cursor, user));
    }
    Ok(seen)
}

/// After the first restart: the old cursor resumes with exactly the events it resumed
/// with before the kill, and the next push continues the log without a gap.
async fn check_after_restart(
    service: &Service,
    factory: &PushFactory,
    old: Cursor,
    expected: &[Seen],
    pushed: u64,
) -> Result<()> {
    let mut client = grpc::connect(service.grpc_addr).await?;
    let after = read_resume(&mut client, old, expected.len() as u64).await?;
    if let Some(at) = (0..expected.len()).find(|&i| after[i] != expected[i]) {
        return Err(format!(
            "after kill -9 and restart, the resume of {old} differs at event {at}: {:?} where {:?} was before the kill",
            after[at], expected[at]
        )
        .into());
    }
    let newest: Cursor = expected.last().ok_or("nothing to resume")?.0.parse()?;
    let mut live = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: newest.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Connection::open(service.webhook_addr)
        .await?
        .post(&factory.push(pushed))
        .await?;
    let next = tokio::time::timeout(STEP_TIMEOUT, live.message())
        .await
        .map_err(|_| "a push after the restart did not arrive")??
        .ok_or("the live stream ended")?;
    let wanted = Cursor {
        seq: newest.seq + 1,
        ..newest
    };
    let user = next
        .event
        .as_ref()
        .and_then(|e| pushes::index_of(&e.openid));
    if next.cursor != wanted.to_string() || user != Some(pushed) {
        return Err(format!(
            "after the restart a new push got cursor {} (user {user:?}), not {wanted} (user {pushed})",
            next.cursor
        )
        .into());
    }
    Ok(())
}

/// Sizes of the files in a directory and its subdirectories (the log's segments).
struct DiskUsage {
    /// What the files say they hold.
    apparent: u64,
    /// Blocks allocated for them.
    allocated: u64,
}

fn disk_usage(dir: &Path) -> Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DiskUsage {
        apparent: 0,
        allocated: 0,
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            let inner = disk_usage(&entry.path())?;
            usage.apparent += inner.apparent;
            usage.allocated += inner.allocated;
        } else if metadata.is_file() {
            usage.apparent += metadata.len();
            usage.allocated += metadata.blocks() * 512;
        }
    }
    Ok(usage)
}
