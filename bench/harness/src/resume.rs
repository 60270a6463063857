//! Resume: a subscriber reconnecting with `resume_after` replays the retained events
//! after its cursor. The service first takes `scale.resume_events` fresh pushes (so the
//! log holds that many events); then one stream resumes from before the first of them
//! and is timed from the request until its client has decoded the last one.

use std::time::{Duration, Instant};

use wechat_qr::{events::Cursor, pb};

use crate::{
    Outcome, Result, Scale, grpc,
    processes::Service,
    pushes::PushFactory,
    report::{self, Row},
};

/// The least replay rate wanted (issue 21: at the disk's limit, as before the store).
const TARGET_RATE: f64 = 1_000_000.0;

/// Fills the log, then replays it.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let count = scale.resume_events;
    let retain = count.max(100_000).to_string();
    let service = Service::start(&[("WECHAT_QR_RETAIN_EVENTS", &retain)]).await?;
    let mut client = grpc::connect(service.grpc_addr).await?;
    let factory = PushFactory::plaintext();

    // The replay starts just before the first event.
    let first = grpc::fill_log(
        &service,
        &factory,
        count,
        scale.connections,
        Duration::from_secs(10),
    )
    .await?;
    let before_first = Cursor {
        seq: first.seq - 1,
        ..first
    };

    let start = Instant::now();
    let mut replay = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: before_first.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut received = 0u64;
    let mut last_cursor = String::new();
    while received < count {
        let response = tokio::time::timeout(Duration::from_secs(10), replay.message())
            .await
            .map_err(|_| format!("replay stalled after {received} of {count} events"))??
            .ok_or("the replay stream ended early")?;
        if response.cursor <= last_cursor {
            return Err("replayed events out of order".into());
        }
        last_cursor = response.cursor;
        received += 1;
    }
    let elapsed = start.elapsed();
    let rate = count as f64 / elapsed.as_secs_f64();
    Ok(Outcome {
        rows: vec![
            Row::plain(
                format!(
                    "resume: replay of {} retained events to one subscriber: events/s",
                    report::thousands(count)
                ),
                report::rate(rate),
            )
            .with_target("≥ 1,000,000/s", rate >= TARGET_RATE),
        ],
        notes: vec![format!(
            "resume: {} events replayed in {}",
            report::thousands(count),
            report::duration(elapsed)
        )],
    })
}
