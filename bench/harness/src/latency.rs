//! Push → subscriber latency at a fixed 2,000 pushes/s: from the moment a push is due on
//! the schedule until each subscriber's client has decoded its event, with 1, 100, 1,000
//! and 10,000 subscribers that all match every event, on the default durable log and (up
//! to 1,000 subscribers) on the in-memory log, whose 1-subscriber p99 must stay within
//! twice the floor's (issue 22).
//!
//! The pushes are sent open-loop (on a schedule, however slow the answers) and latency
//! counts from when a push was due, not from when it could be written: a saturated
//! service shows up as growing latency, never as a gentler load (no coordinated
//! omission). Each subscriber count gets a fresh `wechat-qr` process. Events not
//! delivered within the drain bound after the last push count as slower than every
//! delivered one.
//!
//! The baseline is the floor of fan-out: a `tokio::sync::broadcast` of the same events
//! (`Arc`-shared responses) to as many receivers in this process, on the same schedule,
//! with no network and no serialization.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{sync::broadcast, task::JoinSet};
use wechat_qr::{config::dev, pb};

use crate::{
    Outcome, Result, Scale,
    grpc::{self, Tally, Waited},
    histogram::Histogram,
    http_load::{self, Schedule},
    processes::Service,
    pushes::{self, PushFactory},
    report::{self, Row},
};

/// Pushes per second, as the issue fixes it.
const RATE: f64 = 2_000.0;
/// Connections the pushes are spread over: enough that a push waiting for its answer
/// does not delay the next one on the schedule unless answers take over 16 ms.
const PUSH_CONNECTIONS: usize = 32;
/// The subscriber count the target applies to, and the target.
const TARGET_SUBSCRIBERS: usize = 1_000;
const TARGET_P99: Duration = Duration::from_millis(5);

/// Latencies of one run, and how many deliveries were expected.
struct Latencies {
    histogram: Arc<Histogram>,
    expected: u64,
    /// The delivery deadline passed with deliveries missing.
    out_of_time: bool,
    /// How long the last push had been due when waiting stopped: every event not
    /// delivered by then took longer than this.
    waited: Duration,
}

impl Latencies {
    fn quantile(&self, q: f64) -> Option<Duration> {
        self.histogram.quantile_of(q, self.expected)
    }

    /// `p50 / p99`, with `>` for a quantile among the events not delivered in time.
    fn summary(&self) -> String {
        let show = |q| {
            self.quantile(q).map_or_else(
                || format!("> {}", report::duration(self.waited)),
                report::duration,
            )
        };
        let mut text = format!("{} / {}", show(0.5), show(0.99));
        if self.out_of_time {
            let share = 100.0 * self.histogram.count() as f64 / self.expected as f64;
            text.push_str(&format!(" ({share:.0}% delivered in time)"));
        }
        text
    }
}

/// Runs every subscriber count of `scale`, on the default (durable) log and, up to
/// [`MEMORY_UP_TO`] subscribers, on the in-memory log as well: the in-memory rows are
/// fan-out's own cost, the durable ones add the log's.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for &subscribers in scale.latency_subscribers {
        let floor = broadcast_floor(scale, subscribers).await?;
        for log in [Log::Durable, Log::Memory] {
            if log == Log::Memory && subscribers > MEMORY_UP_TO {
                continue;
            }
            let ours = through_service(scale, subscribers, log, &mut outcome.notes).await?;
            let mut row = Row::plain(
                format!(
                    "push → subscriber latency p50 / p99, {} pushes/s, {} subscriber{}{}",
                    report::thousands(RATE as u64),
                    report::thousands(subscribers as u64),
                    if subscribers == 1 { "" } else { "s" },
                    log.suffix(),
                ),
                ours.summary(),
            );
            row.baseline = format!("{} (tokio broadcast, in-process)", floor.summary());
            if let (Some(a), Some(b)) = (ours.quantile(0.99), floor.quantile(0.99)) {
                row.ratio = format!(
                    "p99 {}",
                    report::times(a.as_secs_f64() / b.as_secs_f64().max(1e-9))
                );
            }
            if subscribers == TARGET_SUBSCRIBERS && log == Log::Durable {
                let met = ours.quantile(0.99).is_some_and(|p99| p99 <= TARGET_P99);
                row = row.with_target("p99 ≤ 5 ms", met);
            }
            if subscribers == 1 && log == Log::Memory {
                let met = match (ours.quantile(0.99), floor.quantile(0.99)) {
                    (Some(a), Some(b)) => a <= 2 * b,
                    _ => false,
                };
                row = row.with_target("p99 ≤ 2× floor", met);
            }
            outcome.rows.push(row);
        }
    }
    Ok(outcome)
}

/// The event log a latency run's service keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// The default: durable, on disk.
    Durable,
    /// `WECHAT_QR_EVENT_LOG=memory`.
    Memory,
}

impl Log {
    fn suffix(self) -> &'static str {
        match self {
            Self::Durable => "",
            Self::Memory => ", in-memory log",
        }
    }

    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Durable => &[],
            Self::Memory => &[("WECHAT_QR_EVENT_LOG", "memory")],
        }
    }
}

/// The largest subscriber count also run on the in-memory log (10,000 takes minutes).
const MEMORY_UP_TO: usize = 1_000;

/// Pushes through a fresh service to `subscribers` gRPC subscribers.
async fn through_service(
    scale: &Scale,
    subscribers: usize,
    log: Log,
    notes: &mut Vec<String>,
) -> Result<Latencies> {
    let service = Service::start(log.env()).await?;
    let streams = grpc::subscribe(service.grpc_addr, subscribers).await?;
    let count = scale.latency_pushes;
    let factory = PushFactory::plaintext();
    let pool = factory.pool(0, count);
    let schedule = Schedule::new(RATE, Duration::from_millis(100));
    let histogram = Arc::new(Histogram::new());
    let tally = Arc::new(Tally::default());
    let readers = {
        let histogram = histogram.clone();
        grpc::read_all(
            streams,
            tally.clone(),
            Arc::new(move |event: &pb::Event| {
                if let Some(i) = pushes::index_of(&event.openid) {
                    histogram.record(schedule.due(i as usize).elapsed());
                }
            }),
        )
    };
    let paced = http_load::paced(service.webhook_addr, pool, schedule, PUSH_CONNECTIONS).await?;
    let expected = count * subscribers as u64;
    let waited = tally
        .wait_for(
            expected,
            Duration::from_secs(5),
            Instant::now() + scale.latency_drain,
        )
        .await?;
    drop(readers);
    let latencies = Latencies {
        histogram,
        expected,
        out_of_time: waited == Waited::OutOfTime,
        waited: schedule.due(count as usize - 1).elapsed(),
    };
    let n = format!("{}{}", report::thousands(subscribers as u64), log.suffix());
    if paced.max_lag > Duration::from_millis(5) {
        notes.push(format!(
            "latency, {n} subscribers: pushes went out up to {} after they were due, all {PUSH_CONNECTIONS} connections waiting for the webhook's answers (counted in the latency)",
            report::duration(paced.max_lag)
        ));
    }
    if latencies
        .quantile(0.99)
        .is_none_or(|p99| p99 > Duration::from_millis(100))
    {
        let span = schedule.start.elapsed().as_secs_f64();
        notes.push(format!(
            "latency, {n} subscribers: fan-out fell behind: {} deliveries in {span:.1} s = {} where the schedule needs {}",
            report::thousands(tally.delivered()),
            report::rate(tally.delivered() as f64 / span),
            report::rate(RATE * subscribers as f64),
        ));
    }
    Ok(latencies)
}

/// The same schedule and count of events through a tokio broadcast channel.
async fn broadcast_floor(scale: &Scale, subscribers: usize) -> Result<Latencies> {
    let count = scale.latency_pushes as usize;
    // Room for every event: no receiver can lag, so none loses events, only time.
    let (tx, _) = broadcast::channel::<Arc<pb::StreamEventsResponse>>(count.max(1));
    let schedule = Schedule::new(RATE, Duration::from_millis(10));
    let histogram = Arc::new(Histogram::new());
    let delivered = Arc::new(AtomicU64::new(0));
    let mut receivers = JoinSet::new();
    for _ in 0..subscribers {
        let mut rx = tx.subscribe();
        let (histogram, delivered) = (histogram.clone(), delivered.clone());
        receivers.spawn(async move {
            while let Ok(response) = rx.recv().await {
                let openid = response.event.as_ref().map_or("", |e| e.openid.as_str());
                if let Some(i) = pushes::index_of(openid) {
                    histogram.record(schedule.due(i as usize).elapsed());
                }
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Sent from a blocking-pool thread, for the reason `http_load::paced` gives.
    tokio::task::spawn_blocking(move || {
        let factory_id = rand::random::<u32>();
        for i in 0..count {
            schedule.sleep_until(i);
            let _ = tx.send(Arc::new(event_response(factory_id, i as u64)));
        }
    })
    .await?;
    let expected = (count * subscribers) as u64;
    let bound = Instant::now() + scale.latency_drain;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < bound {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    receivers.abort_all();
    Ok(Latencies {
        histogram,
        expected,
        out_of_time: delivered.load(Ordering::Relaxed) < expected,
        waited: schedule.due(count - 1).elapsed(),
    })
}

/// What the service would send for the `index`th push.
fn event_response(factory_id: u32, index: u64) -> pb::StreamEventsResponse {
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    pb::StreamEventsResponse {
        event: Some(pb::Event {
            r#type: pb::EventType::Scan.into(),
            openid: pushes::openid(factory_id, index),
            scene: pushes::SCENE.to_owned(),
            ticket: pushes::TICKET.to_owned(),
            account: dev::ACCOUNT.to_owned(),
            create_time: Some(now),
            received_time: Some(now),
            ..Default::default()
        }),
        cursor: format!("{factory_id:08x}{:016x}", index + 1),
    }
}
