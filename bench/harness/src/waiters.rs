//! Waiters: what idle ticket-filtered streams (login pages waiting for their scan) cost
//! the service, and how fast the one a scan matches hears of it.
//!
//! *CPU per push.* One `wechat-qr` process gets N idle `StreamEvents` filtered each on a
//! ticket of its own (N = 0, 1,000, 10,000, 100,000; opened cumulatively on the same
//! process, `STREAMS_PER_CONNECTION` to an HTTP/2 connection so the client does not drown
//! the two cores), then pushes for another ticket at 2,000/s. The service's CPU time
//! (`utime + stime` of `/proc/PID/stat`, all threads) before and after, divided by the
//! pushes, is its CPU per push; each N is shown as a ratio to N = 0 of the same process.
//! The RSS difference divided by N is what an idle filtered stream costs, its share of
//! its connection included.
//!
//! *Latency.* A fresh process gets 10,000 waiters; pushes at 2,000/s (open loop, 32
//! connections) each scan one waiter's ticket (push i scans waiter i mod 10,000), and
//! latency runs from when the push's `200 success` was read until that waiter's client
//! has decoded the event (0 when the event came first). The same deliveries are also
//! shown from when each push was due, which adds the webhook's answer (the durable log's
//! sync) to the figure.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tonic::Streaming;
use wechat_qr::pb;

use crate::{
    Outcome, Result, Scale,
    grpc::{self, Tally, Waited},
    histogram::Histogram,
    http_load::{self, Connection, Schedule},
    processes::Service,
    pushes::{self, PushFactory},
    report::{self, Row},
};

/// Pushes per second.
const RATE: f64 = 2_000.0;
/// Connections the pushes are spread over (as in the latency scenario).
const PUSH_CONNECTIONS: usize = 32;
/// Waiting streams multiplexed on one HTTP/2 connection; the service is started with
/// this as its per-connection cap.
const STREAMS_PER_CONNECTION: usize = 10_000;
/// Streams being opened at once.
const OPENING: usize = 2_000;
/// The most CPU per push with the most waiters, as a multiple of none.
const TARGET_RATIO: f64 = 1.5;
/// The most an idle filtered stream may cost.
const TARGET_BYTES: f64 = 8.0 * 1024.0;
/// The matched waiter's p99.
const TARGET_P99: Duration = Duration::from_millis(5);

/// Sizes from the scale: the memory scenario's idle count is the middle step (10,000 in
/// the full run, 100 with `--quick`).
struct Sizes {
    counts: [usize; 4],
    cpu_pushes: u64,
    latency_waiters: usize,
    latency_pushes: u64,
}

impl Sizes {
    fn of(scale: &Scale) -> Self {
        let unit = scale.idle_subscribers;
        Self {
            counts: [0, unit / 10, unit, unit * 10],
            cpu_pushes: scale.latency_pushes * 5 / 2,
            latency_waiters: unit,
            latency_pushes: scale.latency_pushes * 5 / 2,
        }
    }
}

/// Runs both parts.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let sizes = Sizes::of(scale);
    let mut outcome = Outcome::default();
    cpu_and_memory(scale, &sizes, &mut outcome).await?;
    latency(scale, &sizes, &mut outcome).await?;
    Ok(outcome)
}

fn env() -> [(&'static str, String); 1] {
    [(
        "WECHAT_QR_MAX_STREAMS_PER_CONNECTION",
        STREAMS_PER_CONNECTION.to_string(),
    )]
}

async fn start() -> Result<Service> {
    let env = env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start(&env).await
}

/// Opens waiters `from..to`, each filtered on its own ticket `{prefix}{i}`, onto the
/// connections in `clients` (adding connections as needed).
async fn open_waiters(
    addr: SocketAddr,
    clients: &mut Vec<pb::qr_service_client::QrServiceClient<tonic::transport::Channel>>,
    prefix: &str,
    from: usize,
    to: usize,
) -> Result<Vec<Streaming<pb::StreamEventsResponse>>> {
    while clients.len() < to.div_ceil(STREAMS_PER_CONNECTION) {
        clients.push(grpc::connect(addr).await?);
    }
    let mut streams = Vec::with_capacity(to - from);
    let mut opening = JoinSet::new();
    for i in from..to {
        if opening.len() >= OPENING
            && let Some(opened) = opening.join_next().await
        {
            streams.push(opened??);
        }
        let mut client = clients[i / STREAMS_PER_CONNECTION].clone();
        let request = pb::StreamEventsRequest {
            tickets: vec![format!("{prefix}{i}")],
            ..Default::default()
        };
        opening.spawn(async move {
            let stream = client.stream_events(request).await?.into_inner();
            Ok::<_, crate::BoxError>(stream)
        });
    }
    while let Some(opened) = opening.join_next().await {
        streams.push(opened??);
    }
    Ok(streams)
}

async fn cpu_and_memory(scale: &Scale, sizes: &Sizes, outcome: &mut Outcome) -> Result<()> {
    let service = start().await?;
    let factory = PushFactory::plaintext();
    // Warm up: the log, the allocator and the connections' first pushes.
    let warmup = (sizes.cpu_pushes / 4).max(1);
    http_load::paced(
        service.webhook_addr,
        factory.pool(0, warmup),
        Schedule::new(RATE, Duration::from_millis(50)),
        PUSH_CONNECTIONS,
    )
    .await?;
    tokio::time::sleep(scale.settle).await;
    let idle_rss = service.process.rss_bytes()?;

    let mut clients = Vec::new();
    let mut streams = Vec::new();
    let mut next_push = warmup;
    let mut per_push = Vec::new();
    for &count in &sizes.counts {
        let more = open_waiters(service.grpc_addr, &mut clients, "W", streams.len(), count).await?;
        streams.extend(more);
        tokio::time::sleep(scale.settle).await;
        let rss = service.process.rss_bytes()?;

        let pool = factory.pool(next_push, sizes.cpu_pushes);
        next_push += sizes.cpu_pushes;
        let before = service.process.cpu_time()?;
        let started = Instant::now();
        http_load::paced(
            service.webhook_addr,
            pool,
            Schedule::new(RATE, Duration::from_millis(50)),
            PUSH_CONNECTIONS,
        )
        .await?;
        // The hub's share of the last pushes lands just after their answers.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let cpu = service.process.cpu_time()? - before;
        let wall = started.elapsed();
        let cpu_per_push = cpu / u32::try_from(sizes.cpu_pushes)?;
        per_push.push((count, cpu_per_push, rss));
        outcome.notes.push(format!(
            "waiters, {}: {} of service CPU over {} for {} pushes ({:.0}% of one core)",
            report::thousands(count as u64),
            report::duration(cpu),
            report::duration(wall),
            report::thousands(sizes.cpu_pushes),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
        ));
    }
    if streams.len() != sizes.counts[3] {
        return Err(format!("{} of {} waiters open", streams.len(), sizes.counts[3]).into());
    }

    let (_, none, _) = per_push[0];
    let most = sizes.counts[3];
    for &(count, cpu, _) in &per_push[1..] {
        let ratio = cpu.as_secs_f64() / none.as_secs_f64().max(1e-9);
        let mut row = Row::plain(
            format!(
                "waiters: service CPU per push, 2,000 pushes/s for other tickets, {} idle ticket-filtered streams",
                report::thousands(count as u64)
            ),
            report::duration(cpu),
        );
        row.baseline = format!("{} (no streams, same process)", report::duration(none));
        row.ratio = report::times(ratio);
        if count == most {
            row = row.with_target("≤ ×1.5", ratio <= TARGET_RATIO);
        }
        outcome.rows.push(row);
    }
    let (_, _, rss) = per_push[3];
    let per_stream = (rss as f64 - idle_rss as f64) / most as f64;
    outcome.rows.push(
        Row::plain(
            format!(
                "waiters: bytes per idle ticket-filtered stream ({}, {} per connection)",
                report::thousands(most as u64),
                report::thousands(STREAMS_PER_CONNECTION.min(most) as u64)
            ),
            format!(
                "{} B ({})",
                report::thousands(per_stream.max(0.0) as u64),
                report::bytes(per_stream)
            ),
        )
        .with_target("≤ 8 KiB", per_stream <= TARGET_BYTES),
    );
    drop(streams);
    Ok(())
}

async fn latency(scale: &Scale, sizes: &Sizes, outcome: &mut Outcome) -> Result<()> {
    let service = start().await?;
    let waiters = sizes.latency_waiters;
    let mut clients = Vec::new();
    let streams = open_waiters(service.grpc_addr, &mut clients, "L", 0, waiters).await?;

    let count = sizes.latency_pushes as usize;
    let factory = PushFactory::plaintext();
    let pool: Arc<Vec<_>> = Arc::new(
        (0..count)
            .map(|i| factory.push_of(i as u64, &format!("L{}", i % waiters)))
            .collect(),
    );
    // Nanoseconds after `origin` at which each push was acknowledged and its event
    // decoded by its waiter; 0 = not (yet).
    let origin = Instant::now();
    let stamps = || Arc::new((0..count).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let (acked, received) = (stamps(), stamps());
    let since = move || u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let tally = Arc::new(Tally::default());
    let readers = {
        let received = received.clone();
        grpc::read_all(
            streams,
            tally.clone(),
            Arc::new(move |event: &pb::Event| {
                if let Some(i) = pushes::index_of(&event.openid) {
                    received[i as usize].store(since(), Ordering::Relaxed);
                }
            }),
        )
    };
    // Open loop: connection k sends pushes k, k + C, … each when due, and notes when its
    // `200 success` was read.
    let schedule = Schedule::new(RATE, Duration::from_millis(100));
    let mut senders = JoinSet::new();
    for k in 0..PUSH_CONNECTIONS {
        let (pool, acked) = (pool.clone(), acked.clone());
        let mut connection = Connection::open(service.webhook_addr).await?;
        senders.spawn(async move {
            for i in (k..count).step_by(PUSH_CONNECTIONS) {
                tokio::time::sleep_until(schedule.due(i).into()).await;
                connection.post(&pool[i]).await?;
                acked[i].store(since(), Ordering::Relaxed);
            }
            Ok::<_, crate::BoxError>(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent??;
    }
    let waited = tally
        .wait_for(
            count as u64,
            Duration::from_secs(5),
            Instant::now() + scale.latency_drain,
        )
        .await?;
    drop(readers);

    let (from_ack, from_due) = (Histogram::new(), Histogram::new());
    let mut late_acks = Duration::ZERO;
    for i in 0..count {
        let due = u64::try_from(schedule.due(i).saturating_duration_since(origin).as_nanos())
            .unwrap_or(0);
        let (ack, got) = (
            acked[i].load(Ordering::Relaxed),
            received[i].load(Ordering::Relaxed),
        );
        late_acks = late_acks.max(Duration::from_nanos(ack.saturating_sub(due)));
        if got != 0 {
            // An event may reach its waiter before the pusher has read the answer.
            from_ack.record(Duration::from_nanos(got.saturating_sub(ack)));
            from_due.record(Duration::from_nanos(got.saturating_sub(due)));
        }
    }
    let show = |histogram: &Histogram, q| {
        histogram
            .quantile_of(q, count as u64)
            .map_or_else(|| "not delivered".to_owned(), report::duration)
    };
    let p99 = from_ack.quantile_of(0.99, count as u64);
    let mut ours = format!("{} / {}", show(&from_ack, 0.5), show(&from_ack, 0.99));
    if waited == Waited::OutOfTime {
        ours.push_str(&format!(
            " ({:.0}% delivered in time)",
            100.0 * from_ack.count() as f64 / count as f64
        ));
    }
    let n = report::thousands(waiters as u64);
    outcome.rows.push(
        Row::plain(
            format!(
                "waiters: push acknowledged → matched waiter p50 / p99, 2,000 pushes/s, each for one of {n} ticket-filtered waiters"
            ),
            ours,
        )
        .with_target("p99 ≤ 5 ms", p99.is_some_and(|p| p <= TARGET_P99)),
    );
    outcome.rows.push(Row::plain(
        format!(
            "waiters: push due → matched waiter p50 / p99 (the same run, the webhook's answer included), {n} waiters"
        ),
        format!("{} / {}", show(&from_due, 0.5), show(&from_due, 0.99)),
    ));
    outcome.notes.push(format!(
        "waiters latency: the slowest push was acknowledged {} after it was due",
        report::duration(late_acks)
    ));
    Ok(())
}
