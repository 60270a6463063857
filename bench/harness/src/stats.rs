//! Stats: GetSceneStats over 30 days with a million events behind it. The statistics
//! store of a fresh data directory is filled first, directly through the library's
//! `StatsStore::apply` — the very code the service's follower runs on each batch it
//! reads from the log, minus the webhook and the log (pushing a million signed pushes
//! would take minutes and measure ingest, which `ingest` does) — with synthetic events:
//! 100 scenes of uneven popularity, 300,000 users, 70% scans, 25% follows, 5% unfollows,
//! spread evenly over the last 30 days. Then the real binary starts on that directory
//! and a client times 30-day queries of every scene in day buckets (Asia/Shanghai) and
//! in hour buckets, next to the same query over an empty 30-day range in the same run
//! (the cost of the call itself). The answer's totals are checked against what was
//! generated.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tonic::transport::Channel;
use wechat_qr::{
    events::{Cursor, Entry, Event, EventKind},
    pb::{self, channel_stats_service_client::ChannelStatsServiceClient},
    stats::{STATS_FILE, StatsStore},
};

use crate::{
    Outcome, Result, Scale,
    processes::{DataDir, Service},
    report::{self, Row},
};

/// The wanted answer time of a 30-day query.
const TARGET: Duration = Duration::from_millis(50);
const SCENES: u64 = 100;
const USERS: u64 = 300_000;
const DAYS: u64 = 30;
/// Events per transaction while filling.
const FILL_BATCH: usize = 50_000;

/// A small deterministic generator (xorshift64*): the same events every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What was generated, to check the answers against.
#[derive(Default)]
struct Generated {
    scans: u64,
    new_followers: u64,
}

/// Fills the statistics store in `dir` with `count` events over the last 30 days.
fn fill(dir: &std::path::Path, count: u64, now: u64) -> Result<(Generated, Duration)> {
    let started = Instant::now();
    let (store, _) =
        StatsStore::open_file(&dir.join(STATS_FILE), wechat_qr::config::dev::APP_ID, 400)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut generated = Generated::default();
    let received = SystemTime::now();
    let span = DAYS * 24 * 3600;
    let mut batch = Vec::with_capacity(FILL_BATCH);
    for seq in 1..=count {
        // Uneven popularity: scene k is picked about 1/(k+1) as often as scene 0.
        let scene = {
            let r = rng.below(1 << 20) as f64 / f64::from(1 << 20);
            ((SCENES as f64 + 1.0).powf(r) - 1.0) as u64
        };
        let openid = format!("oBench{:022}", rng.below(USERS));
        let roll = rng.below(100);
        let kind = match roll {
            0..70 => EventKind::Scan,
            70..95 => EventKind::Subscribe,
            _ => EventKind::Unsubscribe,
        };
        match kind {
            EventKind::Scan => generated.scans += 1,
            EventKind::Subscribe => generated.new_followers += 1,
            EventKind::Unsubscribe => {}
        }
        let create_time = now - span + rng.below(span);
        batch.push(Entry {
            // An epoch no log uses: the service, on its new log, keeps these counts and
            // counts its own log from the start (see stats/mod.rs).
            cursor: Cursor {
                epoch: u32::MAX,
                seq,
            },
            event: Arc::new(Event {
                kind,
                openid,
                scene: if kind == EventKind::Unsubscribe {
                    String::new()
                } else {
                    format!("poster-{scene:03}")
                },
                ticket: String::new(),
                account: wechat_qr::config::dev::ACCOUNT.to_owned(),
                app_id: wechat_qr::config::dev::APP_ID.to_owned(),
                create_time,
                received_time: received,
                new_follower: kind == EventKind::Subscribe,
            }),
        });
        if batch.len() == FILL_BATCH || seq == count {
            store.apply(&batch, now as i64, true)?;
            batch.clear();
        }
    }
    store.close();
    Ok((generated, started.elapsed()))
}

async fn timed(
    client: &mut ChannelStatsServiceClient<Channel>,
    request: &pb::GetSceneStatsRequest,
    rounds: usize,
) -> Result<(Vec<Duration>, pb::GetSceneStatsResponse)> {
    let mut times = Vec::with_capacity(rounds);
    let mut last = None;
    for _ in 0..rounds {
        let started = Instant::now();
        let answer = client.get_scene_stats(request.clone()).await?.into_inner();
        times.push(started.elapsed());
        last = Some(answer);
    }
    times.sort();
    Ok((times, last.ok_or("no rounds")?))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Fills, starts the service, times the queries.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let count = scale.stats_events;
    let rounds = usize::try_from(count / 20_000).unwrap_or(50).clamp(5, 50);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let data = DataDir::new()?;
    let dir = data.0.clone();
    let (generated, filled) = tokio::task::spawn_blocking(move || fill(&dir, count, now)).await??;

    let service = Service::start_in(&data.0, &[]).await?;
    let channel = Channel::from_shared(format!("http://{}", service.grpc_addr))?
        .connect()
        .await?;
    let mut client = ChannelStatsServiceClient::new(channel).max_decoding_message_size(16 << 20);
    let query = |start: u64, end: u64, bucket: pb::Bucket| pb::GetSceneStatsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: start as i64,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: end as i64,
            nanos: 0,
        }),
        bucket: bucket.into(),
        time_zone: "Asia/Shanghai".into(),
        ..Default::default()
    };
    let month = DAYS * 24 * 3600;
    let days = query(now - month, now + 1, pb::Bucket::Day);
    let hours = query(now - month, now + 1, pb::Bucket::Hour);
    // The same shape of call where nothing was ever counted: 60 to 30 days before the data.
    let empty = query(now - 3 * month, now - 2 * month, pb::Bucket::Day);

    // Warm up the connection and the store's page cache.
    timed(&mut client, &days, 3).await?;
    timed(&mut client, &empty, 3).await?;
    let (empty_times, empty_answer) = timed(&mut client, &empty, rounds).await?;
    // The service's own CPU per query: what the answer costs whatever else the
    // machine is doing (wall-clock percentiles suffer on a loaded one).
    let cpu_before = service.process.cpu_time()?;
    let (day_times, day_answer) = timed(&mut client, &days, rounds).await?;
    let day_cpu = (service.process.cpu_time()? - cpu_before) / rounds as u32;
    let (hour_times, hour_answer) = timed(&mut client, &hours, rounds).await?;
    drop(service);

    if !empty_answer.scenes.is_empty() {
        return Err("the empty range answered scenes".into());
    }
    for (name, answer) in [("day", &day_answer), ("hour", &hour_answer)] {
        let (scans, new_followers) = answer
            .scenes
            .iter()
            .filter_map(|s| s.totals.as_ref())
            .fold((0, 0), |(s, n), t| (s + t.scans, n + t.new_followers));
        if (scans, new_followers) != (generated.scans, generated.new_followers)
            || answer.scenes.len() as u64 != SCENES
        {
            return Err(format!(
                "{name} buckets: the answer counts {scans} scans and {new_followers} follows over {} scenes; {} and {} over {SCENES} were generated",
                answer.scenes.len(),
                generated.scans,
                generated.new_followers
            )
            .into());
        }
    }

    let events = report::thousands(count);
    let baseline = format!(
        "{} (same call, empty 30-day range)",
        ms(percentile(&empty_times, 0.5))
    );
    let row = |what: &str, times: &[Duration], target: bool| {
        let p50 = percentile(times, 0.5);
        let p99 = percentile(times, 0.99);
        let mut row = Row::plain(
            format!(
                "stats: GetSceneStats, 30 days, {SCENES} scenes, {what}, {events} events: p50 / p99"
            ),
            format!("{} / {}", ms(p50), ms(p99)),
        );
        row.baseline = baseline.clone();
        row.ratio = format!(
            "{:.1}",
            p50.as_secs_f64() / percentile(&empty_times, 0.5).as_secs_f64()
        );
        if target {
            row = row.with_target("p99 < 50 ms", p99 < TARGET);
        }
        row
    };
    Ok(Outcome {
        rows: vec![
            row("day buckets (Asia/Shanghai, 31)", &day_times, true),
            row("hour buckets (720)", &hour_times, false),
        ],
        notes: vec![
            format!(
                "stats: service CPU per 30-day day-bucket query over {events} events: {} (user + system, averaged over {rounds} calls)",
                ms(day_cpu)
            ),
            format!(
                "stats: {events} synthetic events counted straight into the statistics store (StatsStore::apply, the follower's code, without webhook or log) in {} ({}); {rounds} timed calls each",
                report::duration(filled),
                report::rate(count as f64 / filled.as_secs_f64())
            ),
        ],
    })
}
