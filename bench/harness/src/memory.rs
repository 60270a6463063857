//! Memory: the resident set of a `wechat-qr` process (read from `/proc/PID/status`) when
//! idle and with idle subscribers attached, spread over HTTP/2 connections of
//! `grpc::STREAMS_PER_CONNECTION` streams each as a fleet of real clients would be. The
//! difference divided by the subscriber count is what a subscriber costs, its share of
//! its connection included. Afterwards one push must reach every one of them, so the
//! figure is that of live subscribers.
//!
//! Then the filter's share (issue 27): a fresh process each for streams that wait for one
//! ticket (the login page) and for streams whose filter is at the caps (1,000 tickets of
//! 240 bytes, the request that cost ~650 KB of RSS each before the subscription budget).

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

/// Tickets in a filter at the caps, and the bytes of each.
const CAP_TICKETS: usize = 1_000;
const CAP_TICKET_BYTES: usize = 240;

/// RSS per stream of `count` streams, each asking for `filter(i)`, on a fresh process.
async fn per_filtered_stream(
    count: usize,
    settle: Duration,
    filter: impl Fn(usize) -> pb::StreamEventsRequest,
) -> Result<f64> {
    let service = Service::start(&[]).await?;
    tokio::time::sleep(settle).await;
    let idle = service.process.rss_bytes()?;
    let mut clients = Vec::new();
    for _ in 0..count.div_ceil(grpc::STREAMS_PER_CONNECTION) {
        clients.push(grpc::connect(service.grpc_addr).await?);
    }
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let mut client = clients[i / grpc::STREAMS_PER_CONNECTION].clone();
        streams.push(client.stream_events(filter(i)).await?.into_inner());
    }
    tokio::time::sleep(settle).await;
    let with_streams = service.process.rss_bytes()?;
    drop(streams);
    Ok((with_streams as f64 - idle as f64).max(0.0) / count as f64)
}

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

    drop(service);

    // One-ticket waiters: as many as the unfiltered subscribers above.
    let one_ticket = per_filtered_stream(count, scale.settle, |i| pb::StreamEventsRequest {
        tickets: vec![format!(
            "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xLzAy{i:08}"
        )],
        ..Default::default()
    })
    .await?;
    // Filters at the caps: fewer of them (each request is ~243 KB).
    let capped_count = (count / 100).clamp(10, 100);
    let capped = per_filtered_stream(capped_count, scale.settle, |i| pb::StreamEventsRequest {
        tickets: (0..CAP_TICKETS)
            .map(|t| format!("{i:06}-{t:06}-{}", "t".repeat(CAP_TICKET_BYTES - 14)))
            .collect(),
        ..Default::default()
    })
    .await?;

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
            Row::plain(
                format!("memory: bytes per one-ticket stream ({n})"),
                format!(
                    "{} B ({})",
                    report::thousands(one_ticket as u64),
                    report::bytes(one_ticket)
                ),
            ),
            Row::plain(
                format!(
                    "memory: bytes per 1,000-ticket stream ({capped_count}; before the budget ~650 KB)"
                ),
                report::bytes(capped),
            ),
        ],
        notes: Vec::new(),
    })
}
