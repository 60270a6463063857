//! Memory: the resident set of a `wechat-qr` process (read from `/proc/PID/status`) when
//! idle and with idle subscribers attached, spread over HTTP/2 connections of
//! `grpc::STREAMS_PER_CONNECTION` streams each as a fleet of real clients would be. The
//! difference divided by the subscriber count is what a subscriber costs, its share of
//! its connection included. Afterwards one push must reach every one of them, so the
//! figure is that of live subscribers.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use wechat_qr::pb;

use crate::{
    Outcome, Result, Scale,
    grpc::{self, Tally, Waited},
    http_load::Connection,
    processes::Service,
    pushes::PushFactory,
    report::{self, Row},
};

/// The most a subscriber may cost.
const TARGET_BYTES: f64 = 16.0 * 1024.0;

/// Measures idle, then with `scale.idle_subscribers`.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let service = Service::start(&[]).await?;
    tokio::time::sleep(scale.settle).await;
    let idle = service.process.rss_bytes()?;
    let count = scale.idle_subscribers;
    let streams = grpc::subscribe(service.grpc_addr, count).await?;
    tokio::time::sleep(scale.settle).await;
    let with_subscribers = service.process.rss_bytes()?;
    let per_subscriber = (with_subscribers as f64 - idle as f64) / count as f64;

    let tally = Arc::new(Tally::default());
    let _readers = grpc::read_all(streams, tally.clone(), Arc::new(|_: &pb::Event| {}));
    Connection::open(service.webhook_addr)
        .await?
        .post(&PushFactory::plaintext().push(0))
        .await?;
    let waited = tally
        .wait_for(
            count as u64,
            Duration::from_secs(10),
            Instant::now() + Duration::from_secs(60),
        )
        .await?;
    if waited != Waited::Complete {
        return Err(format!(
            "one push reached {} of {count} subscribers within a minute",
            tally.delivered()
        )
        .into());
    }

    let n = report::thousands(count as u64);
    Ok(Outcome {
        rows: vec![
            Row::plain("memory: RSS idle", report::bytes(idle as f64)),
            Row::plain(
                format!("memory: RSS with {n} idle subscribers"),
                report::bytes(with_subscribers as f64),
            ),
            Row::plain(
                format!("memory: bytes per subscriber ({n})"),
                format!(
                    "{} B ({})",
                    report::thousands(per_subscriber.max(0.0) as u64),
                    report::bytes(per_subscriber)
                ),
            )
            .with_target("≤ 16 KiB", per_subscriber <= TARGET_BYTES),
        ],
        notes: Vec::new(),
    })
}
