//! Replicas on Redis (`WECHAT_QR_REDIS_URL`), against the embedded store, in the same run:
//!
//! - **Ingest through one replica**: closed-loop signed pushes over `MANY` connections to
//!   one replica on Redis, and to one service on its embedded durable store, each with one
//!   live subscriber that must receive every acknowledged push; interleaved rounds, each
//!   keeps its best. Redis runs with `appendfsync always`, so a `success` is on disk in
//!   both (the embedded store syncs every commit). The CPU each push costs the replica and
//!   the redis-server is read from `/proc/PID/stat` over the measured windows: the inputs
//!   of the capacity model in BENCHMARKS.md.
//! - **Fan-out over two replicas**: pushes at 2,000/s to replica A, the subscribers split
//!   evenly between A and B (each replica reads the stream once and fans out locally),
//!   push → subscriber latency as in the latency scenario; baseline: the same subscribers
//!   on one service on the embedded store.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use wechat_qr::pb;

use crate::{
    Outcome, Result, Scale,
    grpc::{self, Tally, Waited},
    histogram::Histogram,
    http_load::{self, Schedule},
    processes::{RedisServer, Service},
    pushes::{self, PushFactory},
    report::{self, Row},
};

/// Connections of the ingest load, as a multiple of `scale.connections` (as the ingest
/// scenario's high-concurrency rows).
const MANY: usize = 8;
/// Pushes per second of the fan-out runs, as the latency scenario.
const RATE: f64 = 2_000.0;
/// Connections the paced pushes are spread over.
const PUSH_CONNECTIONS: usize = 32;

/// One service with one live subscriber counting what it receives.
struct Subscribed {
    service: Service,
    tally: Arc<Tally>,
    answered: u64,
    best: f64,
    cpu: Duration,
    pushes: u64,
    _reader: JoinSet<()>,
}

impl Subscribed {
    async fn start(env: &[(&str, &str)]) -> Result<Self> {
        let service = Service::start(env).await?;
        let tally = Arc::new(Tally::default());
        let stream = grpc::subscribe(service.grpc_addr, 1).await?;
        let reader = grpc::read_all(stream, tally.clone(), Arc::new(|_: &pb::Event| {}));
        Ok(Self {
            service,
            tally,
            answered: 0,
            best: 0.0,
            cpu: Duration::ZERO,
            pushes: 0,
            _reader: reader,
        })
    }
}

pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let redis = RedisServer::try_start()?;
    let url = redis.url();
    // Nothing is trimmed during the ingest runs, so Redis's memory per event is measured
    // on every event pushed.
    let retain = [("WECHAT_QR_RETAIN_EVENTS", "10000000")];
    let on_redis = [retain[0], ("WECHAT_QR_REDIS_URL", url.as_str())];
    let before = used_memory(&url).await?;
    ingest(scale, &redis, &retain, &on_redis, &mut outcome).await?;
    let (after, events) = (used_memory(&url).await?, stream_length(&url).await?);
    outcome.rows.push(Row::plain(
        "replicas: Redis memory per retained event (stream entry + de-duplication key)",
        format!(
            "{:.0} B ({} events)",
            after.saturating_sub(before) as f64 / events.max(1) as f64,
            report::thousands(events)
        ),
    ));

    let counts: &[usize] = if scale.latency_subscribers.len() > 3 {
        &[100, 1_000]
    } else {
        &[10]
    };
    for &subscribers in counts {
        // A fresh stream per run: each run's replicas start from an empty log.
        let redis = RedisServer::try_start()?;
        let url = redis.url();
        let on_redis = [("WECHAT_QR_REDIS_URL", url.as_str())];
        let a = Service::start(&on_redis).await?;
        let b = Service::start(&on_redis).await?;
        let b_cpu = b.process.cpu_time()?;
        let spread = fan_out(scale, &[&a, &b], a.webhook_addr, subscribers).await?;
        let b_cpu = b.process.cpu_time()? - b_cpu;
        drop((a, b));
        let single = Service::start(&[]).await?;
        let embedded = fan_out(scale, &[&single], single.webhook_addr, subscribers).await?;
        let mut row = Row::plain(
            format!(
                "replicas: push → subscriber p50 / p99, {} pushes/s, {} subscribers over 2 replicas on Redis",
                report::thousands(RATE as u64),
                report::thousands(subscribers as u64)
            ),
            spread.summary(),
        );
        row.baseline = format!("{} (all on 1 service, embedded store)", embedded.summary());
        if let (Some(a), Some(b)) = (spread.p(0.99), embedded.p(0.99)) {
            row.ratio = format!(
                "p99 {}",
                report::times(a.as_secs_f64() / b.as_secs_f64().max(1e-9))
            );
        }
        outcome.rows.push(row);
        outcome.rows.push(Row::plain(
            format!(
                "replicas: CPU per push of replica B (reads the stream, fans out to {} subscribers, ingests nothing)",
                report::thousands((subscribers / 2) as u64)
            ),
            report::duration(b_cpu / (scale.latency_pushes.max(1) as u32)),
        ));
    }
    Ok(outcome)
}

/// `used_memory` of Redis's `INFO memory`.
async fn used_memory(url: &str) -> Result<u64> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .ok_or("no used_memory in INFO")?
        .trim()
        .parse()?)
}

/// Entries of the deployment's stream (default key prefix).
async fn stream_length(url: &str) -> Result<u64> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    Ok(redis::cmd("XLEN")
        .arg("{wechat-qr:events}:stream")
        .query_async(&mut conn)
        .await?)
}

async fn ingest(
    scale: &Scale,
    redis: &RedisServer,
    embedded_env: &[(&str, &str)],
    on_redis: &[(&str, &str)],
    outcome: &mut Outcome,
) -> Result<()> {
    let connections = scale.connections * MANY;
    let mut embedded = Subscribed::start(embedded_env).await?;
    let mut shared = Subscribed::start(on_redis).await?;
    // A second replica on the same Redis that ingests nothing: what reading every push
    // (and handing it to one subscriber) costs a replica at the saturated rate.
    let mut reader = Subscribed::start(on_redis).await?;
    let factory = PushFactory::plaintext();
    let pool_size = if scale.rounds > 1 { 100_000 } else { 2_000 };
    let mut next = 0u64;
    let mut redis_cpu = Duration::ZERO;
    for _round in 0..scale.rounds {
        for on_redis in [false, true] {
            let target = if on_redis { &mut shared } else { &mut embedded };
            let pool = factory.pool(next, pool_size);
            next += pool_size;
            let (cpu_before, redis_before) =
                (target.service.process.cpu_time()?, redis.cpu_time()?);
            let reader_before = reader.service.process.cpu_time()?;
            let done = http_load::closed_loop(
                target.service.webhook_addr,
                pool,
                connections,
                scale.window,
            )
            .await?;
            target.cpu += target.service.process.cpu_time()? - cpu_before;
            if on_redis {
                redis_cpu += redis.cpu_time()? - redis_before;
                reader.cpu += reader.service.process.cpu_time()? - reader_before;
                reader.pushes += done.pushes;
                reader.answered += done.pushes;
            }
            target.pushes += done.pushes;
            target.best = target.best.max(done.rate());
            target.answered += done.pushes;
            let waited = target
                .tally
                .wait_for(
                    target.answered,
                    Duration::from_secs(5),
                    Instant::now() + Duration::from_secs(30),
                )
                .await?;
            if waited != Waited::Complete {
                return Err("the subscriber did not receive every acknowledged push".into());
            }
        }
        let waited = reader
            .tally
            .wait_for(
                reader.answered,
                Duration::from_secs(5),
                Instant::now() + Duration::from_secs(30),
            )
            .await?;
        if waited != Waited::Complete {
            return Err("the reading replica's subscriber missed a push".into());
        }
    }
    let per_push = |cpu: Duration, pushes: u64| cpu / (pushes.max(1) as u32);
    outcome.rows.push(Row::throughput(
        format!("replicas: webhook ingest through 1 replica on Redis, {connections} conns: vs the embedded store"),
        shared.best,
        "embedded store",
        embedded.best,
        None,
    ));
    outcome.rows.push(Row::plain(
        "replicas: CPU per push, replica + redis-server (on Redis) / service (embedded store)",
        format!(
            "{} + {}",
            report::duration(per_push(shared.cpu, shared.pushes)),
            report::duration(per_push(redis_cpu, shared.pushes))
        ),
    ));
    if let Some(row) = outcome.rows.last_mut() {
        row.baseline = format!(
            "{} (embedded store)",
            report::duration(per_push(embedded.cpu, embedded.pushes))
        );
    }
    outcome.rows.push(Row::plain(
        "replicas: CPU per push of a second replica that only reads (1 subscriber), same windows",
        report::duration(per_push(reader.cpu, reader.pushes)),
    ));
    Ok(())
}

/// Push → subscriber latencies with `subscribers` spread evenly over `services`.
struct Latencies {
    histogram: Arc<Histogram>,
    expected: u64,
    complete: bool,
}

impl Latencies {
    fn p(&self, q: f64) -> Option<Duration> {
        self.histogram.quantile_of(q, self.expected)
    }

    fn summary(&self) -> String {
        let show = |q| self.p(q).map_or_else(|| "—".to_owned(), report::duration);
        let mut text = format!("{} / {}", show(0.5), show(0.99));
        if !self.complete {
            text.push_str(" (not all delivered in time)");
        }
        text
    }
}

async fn fan_out(
    scale: &Scale,
    services: &[&Service],
    webhook: SocketAddr,
    subscribers: usize,
) -> Result<Latencies> {
    let mut streams = Vec::new();
    for (i, service) in services.iter().enumerate() {
        let share = subscribers / services.len() + usize::from(i < subscribers % services.len());
        streams.extend(grpc::subscribe(service.grpc_addr, share).await?);
    }
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
    http_load::paced(webhook, pool, schedule, PUSH_CONNECTIONS).await?;
    let expected = count * subscribers as u64;
    let waited = tally
        .wait_for(
            expected,
            Duration::from_secs(5),
            Instant::now() + scale.latency_drain,
        )
        .await?;
    drop(readers);
    Ok(Latencies {
        histogram,
        expected,
        complete: waited == Waited::Complete,
    })
}
