//! Consumer groups (issue 24), on one `wechat-qr` with its default durable log: how fast
//! a group of three acknowledging members drains the log next to one plain `StreamEvents`
//! subscriber replaying the same events, what acknowledging costs the service in CPU per
//! event, and how soon the events a dead member held reach the survivors.
//!
//! Delivery is measured on a backlog, so that delivery, not the webhook, is the
//! bottleneck: the log is first filled with `scale.group_events` fresh pushes; then, in
//! interleaved rounds, one `StreamEvents` replays them from before the first
//! (`resume_after`), and a new group created to start at the same cursor is drained by
//! three `ConsumeGroup` members, each on its own HTTP/2 connection as three replicas
//! would be, each acknowledging every event it receives (one request per response, with
//! all of its ack ids) and waiting for nothing else. The plain replay counts until its
//! client has decoded the last event; the group counts until the service has confirmed
//! the last acknowledgement (`acked_ids`), so acknowledging is inside the figure, as it
//! is inside a group's steady throughput (flow control lets a member hold only
//! `max_unacked_per_member` events). The service's CPU time (`/proc/PID/stat`) over the
//! drains of all rounds, divided by their events, gives the CPU per event of either path;
//! their difference is the overhead of a group with acknowledgements. That CPU time counts
//! in clock ticks (10 ms), which is why the full run drains 100,000 events per round. The
//! harness's own CPU over each drain is noted too: service and members share the cores,
//! and a harness near a whole core would be bounding the figure it reports.
//!
//! Redelivery: a group with a 2 s ack deadline; one member joins and receives the next
//! pushes without acknowledging them, two more join, and the first is dropped (its task
//! aborted: its stream and its connection close, as when a worker process dies). The
//! figure is, for each event it held, the time from the drop until a survivor's client
//! has it; the target is the ack deadline plus 1 s.
//!
//! Broken promises fail the run: an event delivered twice as a first delivery, delivered
//! again after its acknowledgement was confirmed, or confirmed twice; an event that never
//! arrives (deliveries stall); a held event that reaches no survivor.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinSet};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use wechat_qr::{
    events::Cursor,
    pb::{self, consumer_group_service_client::ConsumerGroupServiceClient},
};

use crate::{
    Outcome, Result, Scale, grpc, http_load,
    processes::Service,
    pushes::PushFactory,
    report::{self, Row},
};

/// Members of the measured group, as issue 24 sets it.
const MEMBERS: usize = 3;
/// The redelivery measurement's member that is dropped; the others survive it.
const DOOMED: usize = 0;
/// The least ratio of the group's rate to the plain subscriber's.
const TARGET_RATIO: f64 = 0.8;
/// The drained groups' ack deadline: long enough that nothing is redelivered while
/// draining, even in a debug build on busy cores.
const DRAIN_DEADLINE_SECONDS: u32 = 120;
/// The redelivery group's ack deadline.
const SHORT_DEADLINE_SECONDS: u32 = 2;
/// Deliveries stopping for this long while some are missing is a lost event.
const STALL: Duration = Duration::from_secs(15);

/// Fills the log, compares the drains, then measures redelivery after a drop.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let count = scale.group_events;
    // Room for the drained events and the redelivery's, with no retention cut meanwhile.
    let retain = (2 * count).max(100_000).to_string();
    let service = Service::start(&[("WECHAT_QR_RETAIN_EVENTS", &retain)]).await?;
    let factory = PushFactory::plaintext();
    let first = grpc::fill_log(
        &service,
        &factory,
        count,
        scale.connections,
        Duration::from_secs(10),
    )
    .await?;
    // The cursor just before the first event: a replay or a group from it gets them all.
    let before_first = Cursor {
        seq: first.seq - 1,
        ..first
    };

    let mut plain = Vec::new();
    let mut group = Vec::new();
    for round in 0..scale.rounds {
        plain.push(plain_replay(&service, before_first, count).await?);
        group.push(group_drain(&service, before_first, count, &format!("drain-{round}")).await?);
    }
    let best = |drains: &[Drained]| {
        drains
            .iter()
            .map(|d| count as f64 / d.elapsed.as_secs_f64())
            .fold(0.0, f64::max)
    };
    let per_event = |drains: &[Drained]| {
        let cpu: Duration = drains.iter().map(|d| d.cpu).sum();
        cpu.as_secs_f64() * 1e6 / (count as f64 * drains.len() as f64)
    };
    let (plain_cpu, group_cpu) = (per_event(&plain), per_event(&group));

    let mut rows = vec![Row::throughput(
        format!(
            "groups: drain of {} retained events by a group of {MEMBERS} members, each acknowledging every event: events/s",
            report::thousands(count)
        ),
        best(&group),
        "one StreamEvents subscriber replaying them",
        best(&plain),
        Some(TARGET_RATIO),
    )];
    let mut overhead = Row::plain(
        "groups: service CPU per event acknowledged by a group member, minus per event to a plain subscriber",
        format!("{:.1} µs", group_cpu - plain_cpu),
    );
    overhead.baseline = format!("{plain_cpu:.1} µs per event (plain subscriber)");
    // CPU time comes in clock ticks (10 ms): a tiny run may see none for the plain path.
    if plain_cpu > 0.0 {
        overhead.ratio = format!("total {}", report::times(group_cpu / plain_cpu));
    }
    rows.push(overhead);

    let redelivery = redelivery_after_drop(&service, &factory, count, scale.group_held).await?;
    let target = Duration::from_secs(u64::from(SHORT_DEADLINE_SECONDS) + 1);
    let mut row = Row::plain(
        format!(
            "groups: a member holding {} unacknowledged events dropped: drop → survivor, max (ack deadline {SHORT_DEADLINE_SECONDS} s)",
            redelivery.held
        ),
        report::duration(redelivery.max),
    );
    row = row.with_target(
        format!("≤ {}", report::duration(target)),
        redelivery.max <= target,
    );
    rows.push(row);

    Ok(Outcome {
        rows,
        notes: vec![
            format!(
                "groups: plain replays of {} events took {}; group drains (to the last confirmed acknowledgement) {}",
                report::thousands(count),
                drain_times(&plain),
                drain_times(&group)
            ),
            format!(
                "groups: the dropped member held its events {} before it was dropped; they reached the survivors {} (p50) to {} (max) after the drop",
                report::duration(redelivery.held_for),
                report::duration(redelivery.p50),
                report::duration(redelivery.max)
            ),
        ],
    })
}

/// Each drain's wall time, with how busy the service and the harness were over it (in
/// cores: on two cores shared by both, a side near 1 may be what bounds the other).
fn drain_times(drains: &[Drained]) -> String {
    drains
        .iter()
        .map(|d| {
            let busy = |cpu: Duration| cpu.as_secs_f64() / d.elapsed.as_secs_f64().max(1e-9);
            format!(
                "{} (service {:.2} cores, harness {:.2})",
                report::duration(d.elapsed),
                busy(d.cpu),
                busy(d.client_cpu)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One drain: its wall time, and the CPU time of the service and of this process (the
/// subscriber or the members) over it.
struct Drained {
    elapsed: Duration,
    cpu: Duration,
    client_cpu: Duration,
}

/// CPU time this process has used, user and system, to the microsecond.
fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given, which is plain data that
    // zeroes are a valid value of.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.try_into().unwrap_or(0))
            + Duration::from_micros(t.tv_usec.try_into().unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// One `StreamEvents` replaying the `count` events after `after`.
async fn plain_replay(service: &Service, after: Cursor, count: u64) -> Result<Drained> {
    let mut client = grpc::connect(service.grpc_addr).await?;
    let cpu_before = service.process.cpu_time()?;
    let client_cpu_before = own_cpu();
    let start = Instant::now();
    let mut replay = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: after.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut received = 0u64;
    let mut last_cursor = String::new();
    while received < count {
        let response = tokio::time::timeout(STALL, replay.message())
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
    Ok(Drained {
        elapsed,
        cpu: service.process.cpu_time()?.saturating_sub(cpu_before),
        client_cpu: own_cpu().saturating_sub(client_cpu_before),
    })
}

/// A new group `name` starting after `after`, drained by [`MEMBERS`] acknowledging
/// members until all `count` acknowledgements are confirmed.
async fn group_drain(service: &Service, after: Cursor, count: u64, name: &str) -> Result<Drained> {
    let addr = service.grpc_addr;
    groups_client(addr)
        .await?
        .create_group(pb::CreateGroupRequest {
            name: name.to_owned(),
            start_after: after.to_string(),
            ack_deadline_seconds: DRAIN_DEADLINE_SECONDS,
            ..Default::default()
        })
        .await?;
    let ledger = Arc::new(Ledger::default());
    let cpu_before = service.process.cpu_time()?;
    let client_cpu_before = own_cpu();
    let start = Instant::now();
    let mut members = JoinSet::new();
    for i in 0..MEMBERS {
        members.spawn(member(addr, name.to_owned(), i, ledger.clone(), true));
    }
    let waited = ledger.wait_for_confirmed(count, &mut members).await;
    let elapsed = start.elapsed();
    let cpu = service.process.cpu_time()?.saturating_sub(cpu_before);
    let client_cpu = own_cpu().saturating_sub(client_cpu_before);
    members.abort_all();
    waited?;
    let redelivered = ledger.redelivered();
    if redelivered > 0 {
        return Err(format!(
            "{redelivered} events of group {name} were delivered again within its {DRAIN_DEADLINE_SECONDS} s deadline, every one acknowledged"
        )
        .into());
    }
    Ok(Drained {
        elapsed,
        cpu,
        client_cpu,
    })
}

/// What the redelivery measurement saw.
struct Redelivery {
    held: u64,
    /// How long the dropped member held its events before it was dropped.
    held_for: Duration,
    p50: Duration,
    max: Duration,
}

/// A member holds `held` unacknowledged events; two others join; it is dropped.
async fn redelivery_after_drop(
    service: &Service,
    factory: &PushFactory,
    first_index: u64,
    held: u64,
) -> Result<Redelivery> {
    const GROUP: &str = "redelivery";
    let addr = service.grpc_addr;
    let mut admin = groups_client(addr).await?;
    admin
        .create_group(pb::CreateGroupRequest {
            name: GROUP.into(),
            ack_deadline_seconds: SHORT_DEADLINE_SECONDS,
            start: pb::GroupStart::Now.into(),
            ..Default::default()
        })
        .await?;
    let ledger = Arc::new(Ledger::default());
    let mut victim = JoinSet::new();
    victim.spawn(member(addr, GROUP.into(), DOOMED, ledger.clone(), false));
    wait_for_members(&mut admin, GROUP, 1).await?;
    let pushed = http_load::closed_loop(
        service.webhook_addr,
        factory.pool(first_index, held),
        4,
        Duration::from_secs(60),
    )
    .await?;
    if pushed.pushes != held {
        return Err(format!("only {} of {held} pushes were sent", pushed.pushes).into());
    }
    let deadline = Instant::now() + STALL;
    while ledger.delivered_to(DOOMED) < held {
        if let Some(ended) = victim.try_join_next() {
            return Err(format!("the member to drop ended early: {:?}", ended?).into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the member to drop received {} of {held} events",
                ledger.delivered_to(DOOMED)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let held_since = ledger.first_delivery_time().ok_or("no delivery")?;
    let mut survivors = JoinSet::new();
    for i in 1..MEMBERS {
        survivors.spawn(member(addr, GROUP.into(), i, ledger.clone(), true));
    }
    wait_for_members(&mut admin, GROUP, 3).await?;
    let dropped = Instant::now();
    victim.abort_all();
    let waited = ledger.wait_for_confirmed(held, &mut survivors).await;
    survivors.abort_all();
    waited?;
    let mut latencies = ledger.redelivery_latencies(DOOMED, dropped)?;
    if latencies.len() as u64 != held {
        return Err(format!(
            "{} of the {held} events the dropped member held reached a survivor",
            latencies.len()
        )
        .into());
    }
    latencies.sort_unstable();
    Ok(Redelivery {
        held,
        held_for: dropped - held_since,
        p50: latencies[latencies.len() / 2],
        max: *latencies.last().expect("held > 0"),
    })
}

async fn groups_client(addr: SocketAddr) -> Result<ConsumerGroupServiceClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(ConsumerGroupServiceClient::new(channel))
}

/// Polls ListGroups until `group` has `members` members.
async fn wait_for_members(
    admin: &mut ConsumerGroupServiceClient<Channel>,
    group: &str,
    members: usize,
) -> Result<()> {
    let deadline = Instant::now() + STALL;
    loop {
        let listed = admin
            .list_groups(pb::ListGroupsRequest::default())
            .await?
            .into_inner();
        let joined = listed
            .groups
            .iter()
            .find(|g| g.group.as_ref().is_some_and(|s| s.name == group))
            .map_or(0, |g| g.members.len());
        if joined == members {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("group {group} has {joined} members, not {members}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Member `index` on its own connection: joins `group`, records every delivery in
/// `ledger` and, if `acks`, acknowledges each response's deliveries in one request.
/// Runs until aborted; returns only on an error or the stream ending.
async fn member(
    addr: SocketAddr,
    group: String,
    index: usize,
    ledger: Arc<Ledger>,
    acks: bool,
) -> Result<()> {
    let mut client = groups_client(addr).await?;
    let (requests, outgoing) = mpsc::unbounded_channel();
    requests.send(pb::ConsumeGroupRequest {
        group,
        member: format!("member-{index}"),
        ..Default::default()
    })?;
    let mut responses = client
        .consume_group(UnboundedReceiverStream::new(outgoing))
        .await?
        .into_inner();
    while let Some(response) = responses.message().await? {
        ledger.confirm(&response.acked_ids);
        let ids = ledger.deliver(index, &response.deliveries);
        if acks && !ids.is_empty() {
            requests.send(pb::ConsumeGroupRequest {
                ack_ids: ids,
                ..Default::default()
            })?;
        }
    }
    Err(format!("member-{index}'s stream ended").into())
}

/// Every delivery and confirmed acknowledgement of one group, checked as they come.
#[derive(Default)]
struct Ledger {
    state: Mutex<LedgerState>,
    /// Acknowledgements confirmed, for waiting without the lock.
    confirmed: AtomicU64,
}

#[derive(Default)]
struct LedgerState {
    /// Per ack id, its deliveries.
    deliveries: HashMap<String, Deliveries>,
    confirmed: HashSet<String>,
    failure: Option<String>,
}

/// The deliveries of one event: nearly always one, so the rest allocate only if needed.
struct Deliveries {
    first: Delivery,
    again: Vec<Delivery>,
}

impl Deliveries {
    fn all(&self) -> impl Iterator<Item = &Delivery> {
        std::iter::once(&self.first).chain(&self.again)
    }
}

/// One delivery: to which member, which delivery of the event it was, when it arrived.
#[derive(Clone, Copy)]
struct Delivery {
    member: usize,
    count: u32,
    at: Instant,
}

impl Ledger {
    /// Records `deliveries` to member `member`; returns their ack ids.
    fn deliver(&self, member: usize, deliveries: &[pb::GroupDelivery]) -> Vec<String> {
        let at = Instant::now();
        let mut state = self.state.lock().expect("ledger lock");
        let state = &mut *state;
        for d in deliveries {
            let delivery = Delivery {
                member,
                count: d.delivery_count,
                at,
            };
            let broken = if state.confirmed.contains(&d.ack_id) {
                Some("delivered after its acknowledgement was confirmed")
            } else {
                match state.deliveries.get_mut(&d.ack_id) {
                    Some(_) if d.delivery_count == 1 => Some("delivered twice as a first delivery"),
                    Some(earlier) => {
                        earlier.again.push(delivery);
                        None
                    }
                    None => {
                        state.deliveries.insert(
                            d.ack_id.clone(),
                            Deliveries {
                                first: delivery,
                                again: Vec::new(),
                            },
                        );
                        None
                    }
                }
            };
            if let Some(why) = broken {
                state
                    .failure
                    .get_or_insert(format!("{} {why} (to member-{member})", d.ack_id));
            }
        }
        deliveries.iter().map(|d| d.ack_id.clone()).collect()
    }

    /// Records acknowledgements the service confirmed.
    fn confirm(&self, acked: &[String]) {
        if acked.is_empty() {
            return;
        }
        let mut state = self.state.lock().expect("ledger lock");
        for id in acked {
            let why = if !state.deliveries.contains_key(id) {
                format!("{id} confirmed acknowledged but never delivered")
            } else if !state.confirmed.insert(id.clone()) {
                format!("{id} acknowledged twice")
            } else {
                self.confirmed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            state.failure.get_or_insert(why);
        }
    }

    /// Waits until `count` acknowledgements are confirmed; fails on a broken promise, a
    /// member ending, or nothing confirmed for [`STALL`] while some are missing.
    async fn wait_for_confirmed(
        &self,
        count: u64,
        members: &mut JoinSet<Result<()>>,
    ) -> Result<()> {
        let mut last = 0;
        let mut progress = Instant::now();
        loop {
            if let Some(why) = self.state.lock().expect("ledger lock").failure.clone() {
                return Err(why.into());
            }
            if let Some(ended) = members.try_join_next() {
                ended??;
            }
            let now = self.confirmed.load(Ordering::Relaxed);
            if now >= count {
                return Ok(());
            }
            if now > last {
                (last, progress) = (now, Instant::now());
            } else if progress.elapsed() > STALL {
                let delivered = self.state.lock().expect("ledger lock").deliveries.len();
                return Err(format!(
                    "group deliveries stopped: {delivered} of {count} events delivered, {now} acknowledged (nothing for {STALL:?})"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Events delivered to `member`.
    fn delivered_to(&self, member: usize) -> u64 {
        let state = self.state.lock().expect("ledger lock");
        state
            .deliveries
            .values()
            .filter(|d| d.all().any(|d| d.member == member))
            .count() as u64
    }

    /// When the first delivery arrived.
    fn first_delivery_time(&self) -> Option<Instant> {
        let state = self.state.lock().expect("ledger lock");
        state.deliveries.values().map(|d| d.first.at).min()
    }

    /// Deliveries after the first.
    fn redelivered(&self) -> usize {
        let state = self.state.lock().expect("ledger lock");
        state.deliveries.values().map(|d| d.again.len()).sum()
    }

    /// For each event `dropped` held, the time from `since` until it first reached
    /// another member; an event that went out again before `since` is a measurement
    /// gone wrong (the drop came after its deadline).
    fn redelivery_latencies(&self, dropped: usize, since: Instant) -> Result<Vec<Duration>> {
        let state = self.state.lock().expect("ledger lock");
        let mut latencies = Vec::new();
        for (id, deliveries) in &state.deliveries {
            if !deliveries.all().any(|d| d.member == dropped) {
                continue;
            }
            if deliveries.all().any(|d| d.count > 1 && d.at < since) {
                return Err(format!(
                    "{id} went out again before the member holding it was dropped: the harness took longer than the {SHORT_DEADLINE_SECONDS} s ack deadline to drop it"
                )
                .into());
            }
            if let Some(survivor) = deliveries.all().find(|d| d.member != dropped) {
                latencies.push(survivor.at.duration_since(since));
            }
        }
        Ok(latencies)
    }
}
