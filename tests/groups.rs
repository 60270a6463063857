//! Consumer groups with real parts: the real binary on its durable data directory, group
//! members as separate processes (tests/group_member.py on the generated Python stubs, and
//! the Python and Go worker examples), pushes through the real webhook. Every event is
//! acknowledged once across the group and none goes to two healthy members; replicas
//! creating one group at once all join that one group; a member killed holding events has
//! them redelivered to the others in time; the service killed with `kill -9` halfway
//! delivers no confirmed acknowledgement again and every unacknowledged event again; a
//! poison event becomes a dead letter after its deliveries and can be replayed. The bounds
//! hold at their edges: an account's cap of groups (on Redis for the whole deployment),
//! each setting and the ids of one acknowledgement one past their limit, 500 events per
//! response.

mod common;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{TOKEN, binary::Binary, now, scan_xml, signed_query};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;
use wechat_qr::pb::{self, consumer_group_service_client::ConsumerGroupServiceClient};

/// The binary with a clean environment, every listener on port 0, and `data_dir`.
async fn start(data_dir: &Path) -> Binary {
    let mut command = Binary::command();
    command
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", data_dir);
    Binary::spawn(command).await
}

async fn groups_client(binary: &Binary) -> ConsumerGroupServiceClient<Channel> {
    ConsumerGroupServiceClient::connect(format!("http://{}", binary.grpc_addr))
        .await
        .unwrap()
}

async fn create(binary: &Binary, request: pb::CreateGroupRequest) -> pb::CreateGroupResponse {
    groups_client(binary)
        .await
        .create_group(request)
        .await
        .unwrap()
        .into_inner()
}

async fn status(binary: &Binary, name: &str) -> pb::GroupStatus {
    groups_client(binary)
        .await
        .list_groups(pb::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups
        .into_iter()
        .find(|g| g.group.as_ref().unwrap().name == name)
        .unwrap()
}

/// Pushes a scan for each openid through the webhook, `workers` at a time; the openids
/// whose push was answered `success`.
async fn push_all(webhook_url: &str, openids: Vec<String>, workers: usize) -> Vec<String> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let queue = Arc::new(Mutex::new(openids));
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, queue, accepted) = (http.clone(), queue.clone(), accepted.clone());
        let url = webhook_url.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(openid) = queue.lock().unwrap().pop() else {
                    return;
                };
                let body = scan_xml("SCAN", &openid, "7", "group-ticket", now());
                let query = signed_query(TOKEN, &now().to_string(), &format!("n-{openid}"));
                let ok = match http.post(format!("{url}?{query}")).body(body).send().await {
                    Ok(response) => {
                        response.status().is_success()
                            && response.text().await.is_ok_and(|t| t == "success")
                    }
                    Err(_) => false,
                };
                if ok {
                    accepted.lock().unwrap().push(openid);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(accepted).unwrap().into_inner().unwrap()
}

/// The Python with grpcio: `$WECHAT_QR_PYTHON`, else the repo's `.venv/bin/python`.
fn python() -> PathBuf {
    std::env::var_os("WECHAT_QR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// A group member as its own Python process, its output lines collected.
struct PyMember {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl PyMember {
    async fn start(binary: &Binary, group: &str, name: &str, mode: &str) -> Self {
        Self::start_working(binary, group, name, mode, 0).await
    }

    /// A member that works `work_ms` on each response before acknowledging it.
    async fn start_working(
        binary: &Binary,
        group: &str,
        name: &str,
        mode: &str,
        work_ms: u32,
    ) -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = tokio::process::Command::new(python())
            .arg(repo.join("tests/group_member.py"))
            .args([&binary.grpc_addr, group, name, mode, &work_ms.to_string()])
            .env("PYTHONPATH", repo.join("clients/python"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} not runnable ({e}): run ./scripts/test, which installs grpcio into .venv/",
                    python().display()
                )
            });
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let lines = lines.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = out.next_line().await {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let member = Self { child, lines };
        member.wait_for(|l| l.iter().any(|l| l == "joined")).await;
        member
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The ids of lines `<word> <id> ...`.
    fn ids(&self, word: &str) -> Vec<String> {
        ids(&self.lines(), word)
    }

    /// Polls until `done` holds for the output lines (60 s at most).
    async fn wait_for(&self, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if done(&self.lines()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member output:\n{:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

fn ids(lines: &[String], word: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            (parts.next() == Some(word)).then(|| parts.next().unwrap().to_owned())
        })
        .collect()
}

/// `got` lines as (ack id, delivery count, openid).
fn deliveries(lines: &[String]) -> Vec<(String, u32, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (parts[0] == "got").then(|| {
                (
                    parts[1].to_owned(),
                    parts[2].parse().unwrap(),
                    parts[3].to_owned(),
                )
            })
        })
        .collect()
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn openids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_python_members_acknowledge_every_event_exactly_once() {
    const EVENTS: usize = 10_000;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    create(
        &binary,
        pb::CreateGroupRequest {
            name: "coupons".into(),
            ..Default::default()
        },
    )
    .await;
    let mut members = Vec::new();
    for name in ["a", "b", "c"] {
        members.push(PyMember::start(&binary, "coupons", name, "ack").await);
    }
    let pushed = push_all(&binary.webhook_url, openids("user", EVENTS), 16).await;
    assert_eq!(pushed.len(), EVENTS, "every push accepted");
    eventually(Duration::from_secs(120), "every event acknowledged", || {
        members.iter().map(|m| m.ids("acked").len()).sum::<usize>() >= EVENTS
    })
    .await;

    let mut delivered_to: HashMap<String, usize> = HashMap::new();
    let mut openid_of: HashMap<String, String> = HashMap::new();
    let mut acked: HashMap<String, usize> = HashMap::new();
    for (i, member) in members.iter().enumerate() {
        let lines = member.lines();
        for (id, count, openid) in deliveries(&lines) {
            assert_eq!(count, 1, "healthy members get first deliveries only: {id}");
            assert!(
                delivered_to.insert(id.clone(), i).is_none(),
                "{id} delivered to two members"
            );
            openid_of.insert(id, openid);
        }
        for id in ids(&lines, "acked") {
            *acked.entry(id).or_default() += 1;
        }
    }
    assert_eq!(acked.len(), EVENTS);
    assert!(acked.values().all(|&n| n == 1), "an ack confirmed twice");
    let acked_openids: HashSet<&String> = acked.keys().map(|id| &openid_of[id]).collect();
    assert_eq!(acked_openids, pushed.iter().collect::<HashSet<_>>());
    // Each member did a share of the work.
    for member in &members {
        assert!(!member.ids("acked").is_empty(), "a member got nothing");
    }
    let status = status(&binary, "coupons").await;
    assert_eq!((status.pending, status.lag), (0, 0));
    assert_eq!(status.members.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_killed_holding_events_has_them_redelivered_to_the_others_in_time() {
    const DEADLINE: u32 = 2;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    create(
        &binary,
        pb::CreateGroupRequest {
            name: "crm".into(),
            ack_deadline_seconds: DEADLINE,
            max_unacked_per_member: 40,
            ..Default::default()
        },
    )
    .await;
    // The first member takes its share of 40 and never acknowledges.
    let mut holder = PyMember::start(&binary, "crm", "holder", "hold").await;
    let pushed = push_all(&binary.webhook_url, openids("crm", 100), 8).await;
    assert_eq!(pushed.len(), 100);
    holder.wait_for(|l| ids(l, "got").len() == 40).await;
    let held: HashSet<String> = holder.ids("got").into_iter().collect();
    // Two healthy members take the other 60 and acknowledge them.
    let b = PyMember::start(&binary, "crm", "b", "ack").await;
    let c = PyMember::start(&binary, "crm", "c", "ack").await;
    eventually(Duration::from_secs(30), "the other 60 acknowledged", || {
        b.ids("acked").len() + c.ids("acked").len() == 60
    })
    .await;
    let acked_before: HashSet<String> = b.ids("acked").into_iter().chain(c.ids("acked")).collect();
    assert!(acked_before.is_disjoint(&held));

    let killed = Instant::now();
    holder.kill9().await;
    eventually(
        Duration::from_secs(u64::from(DEADLINE) + 10),
        "the held events acknowledged by the others",
        || b.ids("acked").len() + c.ids("acked").len() == 100,
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(u64::from(DEADLINE) + 1),
        "redelivered {took:?} after the kill; the deadline is {DEADLINE} s"
    );
    let mut redelivered = HashSet::new();
    for member in [&b, &c] {
        let lines = member.lines();
        let got = deliveries(&lines);
        for (id, count, _) in got {
            if held.contains(&id) {
                assert_eq!(
                    count, 2,
                    "a held event comes with its second delivery count"
                );
                assert!(redelivered.insert(id), "redelivered twice");
            } else {
                assert_eq!(count, 1);
            }
        }
    }
    assert_eq!(redelivered, held, "every held event redelivered");
    // Nothing acknowledged came again: each id was delivered to b or c once.
    let all: Vec<String> = b.ids("got").into_iter().chain(c.ids("got")).collect();
    assert_eq!(all.len(), 100);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_stops_acknowledging_loses_its_events_at_the_deadline() {
    const DEADLINE: u32 = 1;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    create(
        &binary,
        pb::CreateGroupRequest {
            name: "slow".into(),
            ack_deadline_seconds: DEADLINE,
            max_unacked_per_member: 10,
            ..Default::default()
        },
    )
    .await;
    let holder = PyMember::start(&binary, "slow", "holder", "hold").await;
    push_all(&binary.webhook_url, openids("slow", 10), 4).await;
    holder.wait_for(|l| ids(l, "got").len() == 10).await;
    let given = Instant::now();
    // The holder stays connected; only its deadline passes. The other member is an
    // in-process client, so the time measured is the service's, not a Python start-up.
    // An expired event goes to any member, the holder included (it has room again).
    let mut client = groups_client(&binary).await;
    let mut other = receive(&mut client, "slow").await;
    let others: Arc<Mutex<Vec<pb::GroupDelivery>>> = Arc::default();
    let collect = {
        let others = others.clone();
        tokio::spawn(async move {
            while let Ok(Some(response)) = other.message().await {
                others.lock().unwrap().extend(response.deliveries);
            }
        })
    };
    let held: HashSet<String> = holder.ids("got").into_iter().collect();
    eventually(
        Duration::from_secs(u64::from(DEADLINE) + 10),
        "every held event delivered again",
        || {
            let again: HashSet<String> = deliveries(&holder.lines())
                .into_iter()
                .filter(|(_, count, _)| *count == 2)
                .map(|(id, _, _)| id)
                .chain(
                    others
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|d| d.delivery_count == 2)
                        .map(|d| d.ack_id.clone()),
                )
                .collect();
            again == held
        },
    )
    .await;
    let took = given.elapsed();
    assert!(
        took <= Duration::from_secs(u64::from(DEADLINE) + 1),
        "redelivered after {took:?}"
    );
    collect.abort();
    let status = status(&binary, "slow").await;
    assert!(status.redeliveries >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_halfway_redelivers_every_unacknowledged_event_and_no_confirmed_one() {
    const EVENTS: usize = 4_000;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    create(
        &binary,
        pb::CreateGroupRequest {
            name: "binds".into(),
            // Small batches: many round trips, so the kill lands mid-way.
            max_unacked_per_member: 10,
            ..Default::default()
        },
    )
    .await;
    // A backlog for the group, and more pushes arriving while it works through it.
    let mut accepted = push_all(&binary.webhook_url, openids("bind", EVENTS), 16).await;
    let pusher = tokio::spawn({
        let url = binary.webhook_url.clone();
        async move { push_all(&url, openids("late", EVENTS / 4), 4).await }
    });
    let mut members = Vec::new();
    for name in ["a", "b", "c"] {
        members.push(PyMember::start_working(&binary, "binds", name, "ack", 20).await);
    }
    eventually(Duration::from_secs(120), "half acknowledged", || {
        members.iter().map(|m| m.ids("acked").len()).sum::<usize>() >= EVENTS / 2
    })
    .await;
    binary.kill9().await;
    accepted.extend(pusher.await.unwrap());
    for member in &mut members {
        // Their streams broke with the service; the processes end by themselves.
        let _ = tokio::time::timeout(Duration::from_secs(10), member.child.wait()).await;
    }
    let mut confirmed = HashSet::new();
    let mut sent = HashSet::new();
    for member in &members {
        confirmed.extend(member.ids("acked"));
        sent.extend(member.ids("sent"));
    }
    assert!(confirmed.len() >= EVENTS / 2);
    assert!(
        confirmed.len() < EVENTS,
        "the group was halfway when the service died: {} confirmed",
        confirmed.len()
    );

    let binary = start(data.path()).await;
    let after: Vec<PyMember> = {
        let mut after = Vec::new();
        for name in ["a2", "b2", "c2"] {
            after.push(PyMember::start(&binary, "binds", name, "ack").await);
        }
        after
    };
    // Every event the log holds, by cursor, read with a plain subscriber.
    let logged = whole_log(&binary).await;
    let accepted: HashSet<&String> = accepted.iter().collect();
    assert!(
        accepted.iter().all(|o| logged.values().any(|l| l == *o)),
        "an accepted push is missing from the log"
    );
    let must_come: HashSet<&String> = logged.keys().filter(|id| !sent.contains(*id)).collect();
    eventually(
        Duration::from_secs(60),
        "every unacknowledged event acknowledged after the restart",
        || {
            let acked: HashSet<String> = after.iter().flat_map(|m| m.ids("acked")).collect();
            must_come.iter().all(|id| acked.contains(*id))
        },
    )
    .await;
    let again: Vec<String> = after.iter().flat_map(|m| m.ids("got")).collect();
    let repeated: Vec<&String> = again.iter().filter(|id| confirmed.contains(*id)).collect();
    assert!(
        repeated.is_empty(),
        "confirmed acknowledgements delivered again: {repeated:?}"
    );
    let status = status(&binary, "binds").await;
    assert_eq!(status.members.len(), 3);
}

/// Every event the log holds: cursor → openid, read with StreamEvents from the start.
async fn whole_log(binary: &Binary) -> HashMap<String, String> {
    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            resume_after: format!("{}{:016x}", epoch(binary).await, 0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = HashMap::new();
    while let Ok(Ok(Some(response))) =
        tokio::time::timeout(Duration::from_millis(1500), stream.message()).await
    {
        events.insert(response.cursor, response.event.unwrap().openid);
    }
    events
}

/// The log's epoch, from a group's position.
async fn epoch(binary: &Binary) -> String {
    status(binary, "binds").await.position[..8].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_becomes_a_dead_letter_and_is_replayed() {
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    poison_dead_letter_replay(&binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_redis_a_poison_event_becomes_a_dead_letter_and_is_replayed() {
    let redis = common::redis_server::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = start_replica(&redis, dir.path()).await;
    poison_dead_letter_replay(&binary).await;
}

/// Poison → nacked `max_deliveries` times → dead letter (counted as redeliveries) →
/// replayed to a fixed consumer as a first delivery; the same on either engine.
async fn poison_dead_letter_replay(binary: &Binary) {
    create(
        binary,
        pb::CreateGroupRequest {
            name: "careful".into(),
            max_deliveries: 3,
            ..Default::default()
        },
    )
    .await;
    let mut member = PyMember::start(binary, "careful", "m", "poison").await;
    let mut ids_pushed = openids("fine", 5);
    ids_pushed.push("poison-1".into());
    push_all(&binary.webhook_url, ids_pushed, 2).await;
    member
        .wait_for(|l| ids(l, "acked").len() == 5 && ids(l, "nacked").len() == 3)
        .await;
    let mut client = groups_client(binary).await;
    let dead = loop {
        let dead = client
            .list_dead_letters(pb::ListDeadLettersRequest {
                name: "careful".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if dead.total == 1 {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let letter = &dead.dead_letters[0];
    assert_eq!(letter.event.as_ref().unwrap().openid, "poison-1");
    assert_eq!(letter.delivery_count, 3);
    let counts: Vec<u32> = deliveries(&member.lines())
        .into_iter()
        .filter(|(_, _, openid)| openid == "poison-1")
        .map(|(_, count, _)| count)
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    let parked = status(binary, "careful").await;
    assert_eq!(
        (parked.dead_letters, parked.redeliveries, parked.pending),
        (1, 2, 0)
    );

    // Fixed consumer: the replayed letter is delivered afresh and acknowledged.
    member.kill9().await;
    let fixed = PyMember::start(binary, "careful", "fixed", "ack").await;
    let replayed = client
        .replay_dead_letters(pb::ReplayDeadLettersRequest {
            name: "careful".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.replayed, 1);
    fixed
        .wait_for(|l| ids(l, "acked") == [letter.cursor.clone()])
        .await;
    assert_eq!(deliveries(&fixed.lines())[0].1, 1);
    let status = status(binary, "careful").await;
    assert_eq!((status.dead_letters, status.pending), (0, 0));
}

/// A replica on the shared Redis: the real binary with its own simulator and data dir.
async fn start_replica(redis: &common::redis_server::RedisServer, dir: &Path) -> Binary {
    start_replica_with(redis, dir, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_redis_members_of_two_replicas_share_a_group_and_survive_a_replica() {
    const DEADLINE: u32 = 2;
    let redis = common::redis_server::RedisServer::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_replica(&redis, dir_a.path()).await;
    let b = start_replica(&redis, dir_b.path()).await;
    create(
        &a,
        pb::CreateGroupRequest {
            name: "shared".into(),
            ack_deadline_seconds: DEADLINE,
            max_unacked_per_member: 10,
            ..Default::default()
        },
    )
    .await;
    // The group made on A is B's too.
    assert_eq!(
        status(&b, "shared")
            .await
            .group
            .unwrap()
            .ack_deadline_seconds,
        DEADLINE
    );
    let mut holder = PyMember::start(&a, "shared", "holder", "hold").await;
    let pushed = push_all(&a.webhook_url, openids("shared", 50), 4).await;
    assert_eq!(pushed.len(), 50);
    holder.wait_for(|l| ids(l, "got").len() == 10).await;
    let held: HashSet<String> = holder.ids("got").into_iter().collect();
    // Members that work a while on each batch, so both have a share.
    let on_a = PyMember::start_working(&a, "shared", "on-a", "ack", 300).await;
    let on_b = PyMember::start_working(&b, "shared", "on-b", "ack", 300).await;
    eventually(Duration::from_secs(30), "the other 40 acknowledged", || {
        on_a.ids("acked").len() + on_b.ids("acked").len() == 40
    })
    .await;
    let confirmed: HashSet<String> = on_a
        .ids("acked")
        .into_iter()
        .chain(on_b.ids("acked"))
        .collect();
    assert!(confirmed.is_disjoint(&held));
    assert!(
        !on_b.ids("acked").is_empty(),
        "the member on B shares the work"
    );
    let first: Vec<String> = on_a.ids("got").into_iter().chain(on_b.ids("got")).collect();
    assert_eq!(first.len(), 40, "no event went to two healthy members");

    // Replica A dies with its members; what its holder held reaches the member on B.
    let killed = Instant::now();
    a.kill9().await;
    holder.kill9().await;
    let before = on_b.ids("got").len();
    eventually(
        Duration::from_secs(u64::from(DEADLINE) + 10),
        "the held events acknowledged on B",
        || held.iter().all(|id| on_b.ids("acked").contains(id)),
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(u64::from(DEADLINE) + 1),
        "redelivered {took:?} after the replica died"
    );
    let again: Vec<String> = on_b.ids("got")[before..].to_vec();
    assert!(
        again.iter().all(|id| !confirmed.contains(id)),
        "an acknowledged event came again"
    );
    let status = status(&b, "shared").await;
    assert_eq!(status.pending, 0);
}

async fn receive(
    client: &mut ConsumerGroupServiceClient<Channel>,
    group: &str,
) -> tonic::Streaming<pb::ReceiveGroupResponse> {
    client
        .receive_group(pb::ReceiveGroupRequest {
            group: group.into(),
            member: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next `n` deliveries of a ReceiveGroup stream.
async fn take(
    stream: &mut tonic::Streaming<pb::ReceiveGroupResponse>,
    n: usize,
) -> Vec<pb::GroupDelivery> {
    let mut out = Vec::new();
    while out.len() < n {
        let response = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("deliveries in time")
            .unwrap()
            .unwrap();
        out.extend(response.deliveries);
    }
    assert_eq!(out.len(), n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receive_ack_and_seek_for_callers_that_cannot_stream_both_ways() {
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    // Events from before the group: it starts at the oldest.
    let mut pushed = openids("early", 5);
    pushed.sort();
    for openid in &pushed {
        assert_eq!(
            push_all(&binary.webhook_url, vec![openid.clone()], 1)
                .await
                .len(),
            1
        );
    }
    let mut client = groups_client(&binary).await;
    let created = client
        .create_group(pb::CreateGroupRequest {
            name: "web".into(),
            start: pb::GroupStart::Oldest.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.group.unwrap().ack_deadline_seconds,
        30,
        "the default deadline"
    );
    let again = client
        .create_group(pb::CreateGroupRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
    let bad = client
        .create_group(pb::CreateGroupRequest {
            name: "no spaces".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("name:"), "{}", bad.message());

    let mut stream = receive(&mut client, "web").await;
    let got = take(&mut stream, 5).await;
    let openids_got: Vec<String> = got
        .iter()
        .map(|d| d.event.as_ref().unwrap().openid.clone())
        .collect();
    assert_eq!(openids_got, pushed, "log order to one member");
    let ack = |ids: Vec<String>| pb::AckGroupEventsRequest {
        group: "web".into(),
        ack_ids: ids,
        ..Default::default()
    };
    let ids: Vec<String> = got.iter().map(|d| d.ack_id.clone()).collect();
    let acked = client
        .ack_group_events(ack(ids[..3].to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.acked, 3);
    let twice = client
        .ack_group_events(ack(ids[..3].to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(twice.acked, 0, "an ack is idempotent");
    let listed = status(&binary, "web").await;
    assert_eq!((listed.pending, listed.lag), (2, 2));
    assert_eq!(listed.members[0].name, "web");
    assert_eq!(listed.members[0].unacked, 2);

    // Seek back to after the first event: the pending two are dropped, and everything
    // after the cursor comes again, acknowledged or not.
    let position = client
        .seek_group(pb::SeekGroupRequest {
            name: "web".into(),
            target: Some(pb::seek_group_request::Target::Cursor(ids[0].clone())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .position;
    assert_eq!(position, ids[0]);
    let redone = take(&mut stream, 4).await;
    assert_eq!(
        redone.iter().map(|d| d.ack_id.clone()).collect::<Vec<_>>(),
        ids[1..].to_vec()
    );
    assert!(redone.iter().all(|d| d.delivery_count == 1));
    let acked = client
        .ack_group_events(ack(ids[1..].to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.acked, 4);

    // Seek to a time after every event: nothing is left to deliver.
    let future = std::time::SystemTime::now() + Duration::from_secs(3600);
    client
        .seek_group(pb::SeekGroupRequest {
            name: "web".into(),
            target: Some(pb::seek_group_request::Target::Time(future.into())),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = status(&binary, "web").await;
    assert_eq!((listed.pending, listed.lag), (0, 0));

    client
        .delete_group(pb::DeleteGroupRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code(), tonic::Code::NotFound, "{ended:?}");
    let gone = client
        .list_dead_letters(pb::ListDeadLettersRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_are_scoped_by_account_and_clients_permissions_apply() {
    use sha2::{Digest, Sha256};
    use wechat_qr::config::{AccountConfig, ClientConfig};
    const PLAIN: &str = "wxplain000000000a1";
    const OTHER: &str = "wxother000000000b2";
    let client_config =
        |name: &str, accounts: Option<Vec<String>>, methods: Option<Vec<String>>| ClientConfig {
            name: name.into(),
            token_sha256: Some(hex::encode(Sha256::digest(
                format!("{name}-token").as_bytes(),
            ))),
            subject: None,
            methods,
            accounts,
            permanent: false,
        };
    let mut cfg = common::config();
    cfg.simulator = true;
    cfg.accounts = vec![
        AccountConfig {
            token: Some(wechat_qr::secret::Secret::new("plain-webhook-token")),
            ..AccountConfig::new(PLAIN, "plain-secret")
        },
        AccountConfig {
            token: Some(wechat_qr::secret::Secret::new("other-webhook-token")),
            ..AccountConfig::new(OTHER, "other-secret")
        },
    ];
    cfg.clients = vec![
        client_config("ops", None, None),
        client_config("plain", Some(vec![PLAIN.into()]), None),
        client_config("member", None, Some(vec!["ConsumeGroup".into()])),
    ];
    let service = common::TestService::start_with(cfg).await;
    let mut client = ConsumerGroupServiceClient::connect(format!("http://{}", service.grpc_addr))
        .await
        .unwrap();
    let group = |name: &str, account: &str| pb::CreateGroupRequest {
        name: name.into(),
        account: account.into(),
        ..Default::default()
    };
    // With two accounts, a group names its account.
    let unnamed = client
        .create_group(as_caller("ops", group("g", "")))
        .await
        .unwrap_err();
    assert_eq!(unnamed.code(), tonic::Code::InvalidArgument);
    assert!(
        unnamed.message().starts_with("account:"),
        "{}",
        unnamed.message()
    );
    client
        .create_group(as_caller("ops", group("g", OTHER)))
        .await
        .unwrap();
    client
        .create_group(as_caller("plain", group("g", PLAIN)))
        .await
        .unwrap();
    // The same name in two accounts is two groups; each client sees only its accounts'.
    let denied = client
        .create_group(as_caller("plain", group("h", OTHER)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let seen = |groups: pb::ListGroupsResponse| {
        groups
            .groups
            .into_iter()
            .map(|g| g.group.unwrap().account)
            .collect::<Vec<_>>()
    };
    let all = client
        .list_groups(as_caller("ops", pb::ListGroupsRequest::default()))
        .await
        .unwrap();
    assert_eq!(seen(all.into_inner()), [OTHER, PLAIN]);
    let mine = client
        .list_groups(as_caller("plain", pb::ListGroupsRequest::default()))
        .await
        .unwrap();
    assert_eq!(seen(mine.into_inner()), [PLAIN]);
    let join = client
        .receive_group(as_caller(
            "plain",
            pb::ReceiveGroupRequest {
                group: "g".into(),
                account: OTHER.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(join.code(), tonic::Code::PermissionDenied);
    // A client allowed only ConsumeGroup cannot delete a group.
    let delete = client
        .delete_group(as_caller(
            "member",
            pb::DeleteGroupRequest {
                name: "g".into(),
                account: PLAIN.into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(delete.code(), tonic::Code::PermissionDenied);
    assert!(
        delete.message().contains("method DeleteGroup"),
        "{}",
        delete.message()
    );
}

fn as_caller<T>(name: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {name}-token").parse().unwrap(),
    );
    request
}

/// On Redis an extension sets the deadline `extend_seconds` from now (within the group's
/// deadline): an event extended by 1 s in a group with a 30 s deadline comes again soon,
/// one extended by the full deadline does not; ListGroups counts the redelivery, and a
/// member counts once however it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_redis_an_extension_sets_the_deadline_and_redeliveries_are_counted() {
    let redis = common::redis_server::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = start_replica(&redis, dir.path()).await;
    create(
        &binary,
        pb::CreateGroupRequest {
            name: "extended".into(),
            ..Default::default()
        },
    )
    .await;
    let mut client = groups_client(&binary).await;
    let mut stream = receive(&mut client, "extended").await;
    push_all(&binary.webhook_url, openids("ext", 2), 2).await;
    let got = take(&mut stream, 2).await;
    assert!(got.iter().all(|d| d.delivery_count == 1));
    let extend = |id: &str, seconds: u32| pb::AckGroupEventsRequest {
        group: "extended".into(),
        extend_ack_ids: vec![id.to_owned()],
        extend_seconds: seconds,
        ..Default::default()
    };
    let (short, long) = (&got[0].ack_id, &got[1].ack_id);
    client.ack_group_events(extend(short, 1)).await.unwrap();
    client.ack_group_events(extend(long, 30)).await.unwrap();
    let again = take(&mut stream, 1).await;
    assert_eq!(
        (&again[0].ack_id, again[0].delivery_count),
        (short, 2),
        "the event extended by 1 s came again well before the 30 s deadline"
    );
    let listed = status(&binary, "extended").await;
    assert_eq!((listed.redeliveries, listed.pending), (1, 2));
    assert_eq!(listed.members.len(), 1, "{:?}", listed.members);
    assert_eq!(listed.members[0].unacked, 2);
    let acked = client
        .ack_group_events(pb::AckGroupEventsRequest {
            group: "extended".into(),
            ack_ids: vec![short.clone(), long.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.acked, 2);
    assert_eq!(status(&binary, "extended").await.pending, 0);
}

/// The README's worked example, `examples/python/group_worker.py`, run as a user runs it:
/// two workers (two replicas) create-or-join one group, and every scan is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_group_worker_example_handles_each_scan_once_across_two_workers() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    two_workers_handle_each_scan_once(|addr, n| {
        let mut command = tokio::process::Command::new(python());
        command
            .arg(repo.join("examples/python/group_worker.py"))
            .args(["--addr", addr, "--group", "coupons"])
            .args(["--name", &format!("worker-{n}")]);
        command
    })
    .await;
}

/// The Go example, `examples/go/group_worker`, built as its doc says (`examples/go/build`)
/// and run as two replicas started together. Go starts in milliseconds, so both workers
/// call CreateGroup at once: this is the test that caught creation racing with itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_go_group_worker_example_handles_each_scan_once_across_two_workers() {
    let scratch = tempfile::tempdir().unwrap();
    let worker = scratch.path().join("group_worker");
    common::go::build_example("group_worker", &worker).await;
    two_workers_handle_each_scan_once(|addr, n| {
        let mut command = tokio::process::Command::new(&worker);
        command
            .args(["-addr", addr, "-group", "coupons"])
            .args(["-name", &format!("worker-{n}")]);
        command
    })
    .await;
}

/// Replicas starting together all create one group: exactly one creation succeeds, the
/// others are told ALREADY_EXISTS only once the group can be joined, and every replica
/// joins that one group. (A second creation used to pass the name check while the first
/// waited for its record to be durable, then replaced the first group, orphaning whoever
/// had joined it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_creating_one_group_at_once_all_join_the_same_group() {
    const REPLICAS: usize = 8;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    let together = Arc::new(tokio::sync::Barrier::new(REPLICAS));
    let mut replicas = Vec::new();
    for n in 0..REPLICAS {
        let mut client = groups_client(&binary).await;
        let together = together.clone();
        replicas.push(tokio::spawn(async move {
            together.wait().await;
            let created = match client
                .create_group(pb::CreateGroupRequest {
                    name: "replicas".into(),
                    ..Default::default()
                })
                .await
            {
                Ok(_) => true,
                Err(status) if status.code() == tonic::Code::AlreadyExists => false,
                Err(status) => panic!("replica {n}: CreateGroup: {status}"),
            };
            let stream = client
                .receive_group(pb::ReceiveGroupRequest {
                    group: "replicas".into(),
                    member: format!("replica-{n}"),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("replica {n} (created: {created}) cannot join: {s}"))
                .into_inner();
            (created, stream)
        }));
    }
    let mut joined = Vec::new();
    for replica in replicas {
        joined.push(replica.await.unwrap());
    }
    let created = joined.iter().filter(|(created, _)| *created).count();
    assert_eq!(created, 1, "one CreateGroup succeeds");
    let listed = status(&binary, "replicas").await;
    assert_eq!(listed.members.len(), REPLICAS, "{listed:?}");
    let records = std::fs::read_to_string(data.path().join("groups.jsonl")).unwrap();
    assert_eq!(records.matches(r#""op":"create""#).count(), 1, "{records}");
}

/// Two workers made by `worker(grpc address, n)` join the "coupons" group; 40 scans are
/// each handled once, as a first delivery, and all acknowledged.
async fn two_workers_handle_each_scan_once(
    worker: impl Fn(&str, usize) -> tokio::process::Command,
) {
    const EVENTS: usize = 40;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    let workers: Vec<(tokio::process::Child, Arc<Mutex<Vec<String>>>)> = (1..=2)
        .map(|n| {
            let mut child = worker(&binary.grpc_addr, n)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("worker {n} not runnable: {e}"));
            let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
            let lines: Arc<Mutex<Vec<String>>> = Arc::default();
            let collected = lines.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = out.next_line().await {
                    collected.lock().unwrap().push(line);
                }
            });
            tokio::spawn(async move {
                while let Ok(Some(line)) = err.next_line().await {
                    eprintln!("worker {n}: {line}");
                }
            });
            (child, lines)
        })
        .collect();
    // Both joined before the scans: the group starts at "now".
    let mut client = groups_client(&binary).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = client
            .list_groups(pb::ListGroupsRequest::default())
            .await
            .unwrap()
            .into_inner();
        if listed.groups.first().is_some_and(|g| g.members.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "two workers joined: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pushed = push_all(&binary.webhook_url, openids("coupon", EVENTS), 4).await;
    assert_eq!(pushed.len(), EVENTS);
    let handled = || -> Vec<String> {
        workers
            .iter()
            .flat_map(|(_, lines)| lines.lock().unwrap().clone())
            .collect()
    };
    eventually(Duration::from_secs(60), "every scan handled", || {
        handled().len() >= EVENTS
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&binary, "coupons").await.pending > 0 {
        assert!(Instant::now() < deadline, "every handling acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = handled();
    let mut got: Vec<String> = lines
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            assert_eq!(parts[0], "handled", "{l}");
            assert_eq!(parts[2], "EVENT_TYPE_SCAN", "{l}");
            assert_eq!(parts[3], "delivery=1", "{l}");
            parts[1].to_owned()
        })
        .collect();
    got.sort();
    let mut want = pushed.clone();
    want.sort();
    assert_eq!(got, want, "each scan handled exactly once");
    drop(workers);
}

/// A replica on the shared Redis with `env` added.
async fn start_replica_with(
    redis: &common::redis_server::RedisServer,
    dir: &Path,
    env: &[(&str, &str)],
) -> Binary {
    let mut command = Binary::command();
    command
        .current_dir(dir)
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", dir.join("data"))
        .env("WECHAT_QR_REDIS_URL", redis.url())
        .envs(env.iter().copied());
    Binary::spawn(command).await
}

/// CreateGroup of `name` with every other setting at its default.
async fn create_named(
    client: &mut ConsumerGroupServiceClient<Channel>,
    name: &str,
) -> Result<pb::CreateGroupResponse, tonic::Status> {
    client
        .create_group(pb::CreateGroupRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The names of the groups `binary` lists, sorted.
async fn group_names(binary: &Binary) -> Vec<String> {
    let mut names: Vec<String> = groups_client(binary)
        .await
        .list_groups(pb::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups
        .into_iter()
        .map(|g| g.group.unwrap().name)
        .collect();
    names.sort();
    names
}

/// A refusal for the cap: RESOURCE_EXHAUSTED naming the limit and its setting.
fn assert_cap_refusal(refused: &tonic::Status, limit: usize) {
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused
            .message()
            .contains(&format!("{limit} consumer groups"))
            && refused
                .message()
                .contains("WECHAT_QR_MAX_GROUPS_PER_ACCOUNT"),
        "names the limit and its setting: {}",
        refused.message()
    );
}

/// The default cap, 100 groups per account, on the embedded engine: the 101st is refused
/// before anything is stored (it is not there after a restart either), a deletion frees a
/// place, and `check-config` shows the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_has_at_most_its_cap_of_groups_and_a_deletion_frees_a_place() {
    const CAP: usize = 100;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    let mut client = groups_client(&binary).await;
    let name = |i: usize| format!("g-{i:03}");
    for i in 0..CAP {
        create_named(&mut client, &name(i)).await.unwrap();
    }
    let refused = create_named(&mut client, &name(CAP)).await.unwrap_err();
    assert_cap_refusal(&refused, CAP);
    assert_eq!(group_names(&binary).await.len(), CAP);

    client
        .delete_group(pb::DeleteGroupRequest {
            name: name(0),
            ..Default::default()
        })
        .await
        .unwrap();
    create_named(&mut client, &name(CAP)).await.unwrap();
    let again = create_named(&mut client, &name(CAP + 1)).await.unwrap_err();
    assert_cap_refusal(&again, CAP);

    // What the data directory holds: the hundred, none of the refused.
    binary.stop().await;
    let binary = start(data.path()).await;
    let names = group_names(&binary).await;
    assert_eq!(names, (1..=CAP).map(name).collect::<Vec<_>>());
    binary.stop().await;

    let config = tempfile::NamedTempFile::new().unwrap();
    let output = Binary::command()
        .env("WECHAT_QR_MAX_GROUPS_PER_ACCOUNT", "7")
        .arg("check-config")
        .arg(config.path())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.contains("max_groups_per_account = \"7\"  # environment"),
        "{shown}"
    );
}

/// On Redis the cap counts the deployment's groups: creations at once on two replicas
/// stop at the cap together, and a deletion on one frees a place on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_redis_the_cap_of_groups_holds_for_the_whole_deployment() {
    const CAP: usize = 3;
    let redis = common::redis_server::RedisServer::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("WECHAT_QR_MAX_GROUPS_PER_ACCOUNT", "3")];
    let a = start_replica_with(&redis, dir_a.path(), &env).await;
    let b = start_replica_with(&redis, dir_b.path(), &env).await;
    let clients = [groups_client(&a).await, groups_client(&b).await];
    let calls = (0..8usize).map(|i| {
        let mut client = clients[i % 2].clone();
        tokio::spawn(async move { create_named(&mut client, &format!("r-{i}")).await })
    });
    let mut created = 0;
    for call in futures_util::future::join_all(calls).await {
        match call.unwrap() {
            Ok(_) => created += 1,
            Err(refused) => assert_cap_refusal(&refused, CAP),
        }
    }
    assert_eq!(created, CAP);
    let names = group_names(&a).await;
    assert_eq!(names.len(), CAP);
    assert_eq!(group_names(&b).await, names);

    let mut on_b = clients[1].clone();
    on_b.delete_group(pb::DeleteGroupRequest {
        name: names[0].clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut on_a = clients[0].clone();
    create_named(&mut on_a, "r-after").await.unwrap();
    assert_cap_refusal(&create_named(&mut on_a, "r-more").await.unwrap_err(), CAP);
}

/// Each bound of CreateGroup and AckGroupEvents at its edge: one past it is
/// INVALID_ARGUMENT naming the field, the bound itself is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_settings_and_acknowledgements_are_bounded_naming_the_field() {
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    let mut client = groups_client(&binary).await;
    let refused = |status: tonic::Status, field: &str| {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "names {field}: {}",
            status.message()
        );
    };
    let creator = client.clone();
    let create = |request: pb::CreateGroupRequest| {
        let mut client = creator.clone();
        async move {
            client
                .create_group(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let deadline = |seconds: u32| pb::CreateGroupRequest {
        name: format!("deadline-{seconds}"),
        ack_deadline_seconds: seconds,
        ..Default::default()
    };
    refused(
        create(deadline(601)).await.unwrap_err(),
        "ack_deadline_seconds",
    );
    let longest = create(deadline(600)).await.unwrap();
    assert_eq!(longest.group.unwrap().ack_deadline_seconds, 600);

    let unacked = |n: u32| pb::CreateGroupRequest {
        name: format!("unacked-{n}"),
        max_unacked_per_member: n,
        ..Default::default()
    };
    refused(
        create(unacked(10_001)).await.unwrap_err(),
        "max_unacked_per_member",
    );
    let largest = create(unacked(10_000)).await.unwrap();
    assert_eq!(largest.group.unwrap().max_unacked_per_member, 10_000);

    // Names count bytes: 65 refused, none refused, 64 accepted.
    refused(
        create_named(&mut client, &"n".repeat(65))
            .await
            .unwrap_err(),
        "name",
    );
    refused(create_named(&mut client, "").await.unwrap_err(), "name");
    create_named(&mut client, &"n".repeat(64)).await.unwrap();

    let mut names = group_names(&binary).await;
    names.sort();
    let mut expected = vec![
        "deadline-600".to_owned(),
        "n".repeat(64),
        "unacked-10000".to_owned(),
    ];
    expected.sort();
    assert_eq!(names, expected, "only the accepted groups exist");

    // Ids in one acknowledgement: 10,001 refused, 10,000 taken (none of them pending).
    let epoch = "00000001";
    let ids = |n: usize| -> Vec<String> { (1..=n).map(|i| format!("{epoch}{i:016x}")).collect() };
    let ack = |n: usize| pb::AckGroupEventsRequest {
        group: "deadline-600".into(),
        ack_ids: ids(n),
        ..Default::default()
    };
    refused(
        client.ack_group_events(ack(10_001)).await.unwrap_err(),
        "ack_ids",
    );
    let taken = client.ack_group_events(ack(10_000)).await.unwrap();
    assert_eq!(taken.into_inner().acked, 0);
}

/// One response of a member carries at most 500 events: 600 events handed back at once
/// (nacked together) go out as 500 and 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_group_response_carries_at_most_500_events() {
    const EVENTS: usize = 600;
    let data = tempfile::tempdir().unwrap();
    let binary = start(data.path()).await;
    let mut client = groups_client(&binary).await;
    client
        .create_group(pb::CreateGroupRequest {
            name: "bulk".into(),
            max_unacked_per_member: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stream = receive(&mut client, "bulk").await;
    let pushed = push_all(&binary.webhook_url, openids("bulk", EVENTS), 8).await;
    assert_eq!(pushed.len(), EVENTS);
    let first = take(&mut stream, EVENTS).await;
    client
        .ack_group_events(pb::AckGroupEventsRequest {
            group: "bulk".into(),
            nack_ids: first.iter().map(|d| d.ack_id.clone()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < EVENTS {
        let response = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the redeliveries in time")
            .unwrap()
            .unwrap();
        assert!(response.deliveries.iter().all(|d| d.delivery_count == 2));
        sizes.push(response.deliveries.len());
    }
    assert_eq!(sizes, [500, 100]);
}
