//! Several replicas of the real binary sharing one real Redis (`WECHAT_QR_REDIS_URL`),
//! behind no load balancer but the test, which spreads pushes and calls over them: one
//! log (pushes to A reach subscribers on B and C once, in one order; WeChat's retries on
//! other replicas emit once; cursors move between replicas), one access_token (100 cold
//! calls, one fetch; a rejected token expired compare-and-delete), one permanent code per
//! scene; Redis killed mid-load and restarted, and a replica killed with `kill -9`, lose
//! no acknowledged push and break no cursor. The fake WeChat upstream is an in-process
//! service's simulator. Redis is a real `redis-server` each test starts and kills.

mod common;

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    TOKEN, TestService, binary::Binary, now, redis_server::RedisServer, scan_xml, signed_query,
};
use tonic::{Code, Streaming};
use tonic_types::StatusExt;
use wechat_qr::pb::{self, create_ticket_request::Scene};

/// One replica: the real binary on loopback port 0 with its own data directory, the
/// shared Redis and the shared fake upstream.
struct Replica {
    binary: Binary,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Replica {
    type Target = Binary;

    fn deref(&self) -> &Binary {
        &self.binary
    }
}

impl Replica {
    async fn start(redis: &RedisServer, upstream: &TestService) -> Self {
        Self::start_with(redis, upstream, &[]).await
    }

    async fn start_with(redis: &RedisServer, upstream: &TestService, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = command(&redis.url(), upstream, dir.path());
        command.envs(env.iter().copied());
        Self {
            binary: Binary::spawn(command).await,
            _dir: dir,
        }
    }

    async fn kill9(self) {
        self.binary.kill9().await;
    }

    async fn subscribe(&self, resume_after: &str) -> Streaming<pb::StreamEventsResponse> {
        self.client()
            .await
            .stream_events(pb::StreamEventsRequest {
                resume_after: resume_after.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("stream opens: {s:?}\n{}", self.log.lock().unwrap()))
            .into_inner()
    }

    /// POSTs a push; `None` when no answer came (connection refused or reset).
    async fn post(&self, query: &str, body: &str) -> Option<(u16, String)> {
        let response = http()
            .post(format!("{}?{query}", self.webhook_url))
            .body(body.to_owned())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }
}

/// The binary with a clean environment, every listener on port 0, on the shared Redis at
/// `redis_url` and the fake upstream, in `dir`.
fn command(redis_url: &str, upstream: &TestService, dir: &Path) -> std::process::Command {
    let sim = upstream.simulator_url();
    let mut command = Binary::command();
    command
        .current_dir(dir)
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", dir.join("data"))
        .env("WECHAT_QR_REDIS_URL", redis_url)
        .env("WECHAT_APP_ID", wechat_qr::config::dev::APP_ID)
        .env("WECHAT_APP_SECRET", wechat_qr::config::dev::APP_SECRET)
        .env("WECHAT_TOKEN", TOKEN)
        .env("WECHAT_API_BASE", &sim)
        .env("WECHAT_MP_BASE", &sim);
    command
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A push of `openid` and the query WeChat signs it with (`n` makes the nonce unique).
fn push_for(openid: &str, n: u64) -> (String, String) {
    let query = signed_query(TOKEN, &now().to_string(), &format!("nonce{n}"));
    (
        query,
        scan_xml("SCAN", openid, "42", "shared-ticket", now()),
    )
}

/// The next `n` events of `stream` as (cursor, openid), each within `wait`.
async fn take(
    stream: &mut Streaming<pb::StreamEventsResponse>,
    n: usize,
    wait: Duration,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let message = tokio::time::timeout(wait, stream.message())
            .await
            .unwrap_or_else(|_| panic!("event {} of {n} missing", out.len()))
            .unwrap()
            .expect("stream open");
        out.push((message.cursor, message.event.unwrap().openid));
    }
    out
}

/// Nothing more arrives within `quiet`.
async fn stays_quiet(stream: &mut Streaming<pb::StreamEventsResponse>, quiet: Duration) {
    if let Ok(Ok(Some(extra))) = tokio::time::timeout(quiet, stream.message()).await {
        panic!("unexpected extra event {extra:?}");
    }
}

/// The cursor before the first event of `cursor`'s epoch: replays everything retained.
fn epoch_start(cursor: &str) -> String {
    format!("{}{:016x}", &cursor[..8], 0)
}

async fn poll_until<F: Future<Output = bool>>(
    what: &str,
    wait: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + wait;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {wait:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_log_retries_emit_once_and_cursors_move_between_replicas() {
    let redis = RedisServer::start();
    let upstream = TestService::start().await;
    let replicas = [
        Replica::start(&redis, &upstream).await,
        Replica::start(&redis, &upstream).await,
        Replica::start(&redis, &upstream).await,
    ];
    let mut streams = Vec::new();
    for replica in &replicas {
        streams.push(replica.subscribe("").await);
    }

    const PUSHES: u64 = 60;
    for i in 0..PUSHES {
        let (query, body) = push_for(&format!("o{i}"), i);
        let first = &replicas[(i % 3) as usize];
        assert_eq!(
            first.post(&query, &body).await,
            Some((200, "success".to_owned()))
        );
        // WeChat's retry of the same push lands on another replica: acknowledged, not
        // emitted again.
        let retry = &replicas[((i + 1) % 3) as usize];
        assert_eq!(
            retry.post(&query, &body).await,
            Some((200, "success".to_owned()))
        );
    }

    let expected: Vec<String> = (0..PUSHES).map(|i| format!("o{i}")).collect();
    let mut seen = Vec::new();
    for stream in &mut streams {
        let events = take(stream, PUSHES as usize, Duration::from_secs(5)).await;
        let openids: Vec<String> = events.iter().map(|(_, o)| o.clone()).collect();
        assert_eq!(openids, expected, "every push once, in push order");
        seen.push(events);
    }
    for stream in &mut streams {
        stays_quiet(stream, Duration::from_millis(500)).await;
    }
    assert_eq!(seen[0], seen[1], "the same cursors on A and B");
    assert_eq!(seen[0], seen[2], "the same cursors on A and C");

    // A cursor A handed out resumes exactly on B, and a replay from the start on C.
    let (cursor, _) = &seen[0][29];
    let mut resumed = replicas[1].subscribe(cursor).await;
    assert_eq!(
        take(&mut resumed, 30, Duration::from_secs(5)).await,
        seen[0][30..].to_vec()
    );
    stays_quiet(&mut resumed, Duration::from_millis(300)).await;
    let mut replay = replicas[2].subscribe(&epoch_start(cursor)).await;
    assert_eq!(
        take(&mut replay, PUSHES as usize, Duration::from_secs(5)).await,
        seen[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_access_token_and_one_permanent_code_per_scene() {
    let redis = RedisServer::start();
    let upstream = TestService::start().await;
    let replicas = [
        Replica::start(&redis, &upstream).await,
        Replica::start(&redis, &upstream).await,
        Replica::start(&redis, &upstream).await,
    ];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(replica.client().await);
    }
    assert_eq!(upstream.simulator().stats().token_fetches, 0, "cold");

    // 100 concurrent cold CreateTicket calls spread over the replicas: one fetch.
    let calls = (0..100u32).map(|i| {
        let mut client = clients[i as usize % 3].clone();
        tokio::spawn(async move {
            client
                .create_ticket(pb::CreateTicketRequest {
                    scene: Some(Scene::SceneId(i + 1)),
                    expire_seconds: 60,
                    ..Default::default()
                })
                .await
        })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().expect("CreateTicket succeeds");
    }
    assert_eq!(
        upstream.simulator().stats().token_fetches,
        1,
        "one upstream token fetch for the whole cluster:\n{}",
        replicas
            .iter()
            .map(|r| r.log.lock().unwrap().clone())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );

    // WeChat stops accepting the token: the first replica to see 40001 expires it in
    // Redis and refetches; the next one finds the fresh token there (its own
    // compare-and-delete of the old one deletes nothing) and fetches nothing.
    http()
        .post(format!("{}/sim/invalidate-token", upstream.simulator_url()))
        .send()
        .await
        .unwrap();
    for client in &mut clients[..2] {
        client
            .create_ticket(pb::CreateTicketRequest {
                scene: Some(Scene::SceneId(500)),
                expire_seconds: 60,
                ..Default::default()
            })
            .await
            .expect("CreateTicket after the token was rejected");
    }
    assert_eq!(
        upstream.simulator().stats().token_fetches,
        2,
        "one refetch for the cluster after a rejection"
    );

    // Two replicas race the same permanent scene: one code is spent.
    let before = upstream.simulator().stats().qrcode_creates;
    let calls = (0..16).map(|i| {
        let mut client = clients[i % 2].clone();
        tokio::spawn(async move {
            client
                .create_ticket(pb::CreateTicketRequest {
                    scene: Some(Scene::SceneStr("raced-permanent".into())),
                    permanent: true,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().ticket)
        })
    });
    let tickets: HashSet<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|c| c.unwrap().expect("permanent CreateTicket succeeds"))
        .collect();
    assert_eq!(tickets.len(), 1, "every caller got the one ticket");
    assert_eq!(
        upstream.simulator().stats().qrcode_creates - before,
        1,
        "one permanent code minted upstream"
    );
    // The third replica, which never minted it, answers it from Redis.
    let third = clients[2]
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(Scene::SceneStr("raced-permanent".into())),
            permanent: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket;
    assert!(tickets.contains(&third));
    assert_eq!(upstream.simulator().stats().qrcode_creates - before, 1);
}

/// What the pushers of a load test sent and got acknowledged.
#[derive(Default)]
struct Load {
    acked: Mutex<Vec<String>>,
    /// Answers that were not `success` (5xx) or no answer at all.
    refused: AtomicU64,
    stop: AtomicBool,
}

/// A worker sending unique pushes round-robin over `urls` as WeChat does: a push that
/// is not acknowledged is sent again (same query and body) until it is.
async fn pusher(worker: u64, replicas: Vec<(String, reqwest::Client)>, load: Arc<Load>) {
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let openid = format!("w{worker}-{n}");
        let (query, body) = push_for(&openid, worker * 1_000_000 + n);
        let mut attempt = 0usize;
        loop {
            let (url, http) = &replicas[(n as usize + attempt) % replicas.len()];
            let answer = http
                .post(format!("{url}?{query}"))
                .body(body.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let ok = match answer {
                Ok(response) if response.status() == 200 => {
                    response.text().await.is_ok_and(|t| t == "success")
                }
                _ => false,
            };
            if ok {
                load.acked.lock().unwrap().push(openid.clone());
                break;
            }
            load.refused.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_load_answers_5xx_and_not_serving_then_loses_nothing_acknowledged() {
    let mut redis = RedisServer::start();
    let upstream = TestService::start().await;
    let a = Replica::start(&redis, &upstream).await;
    let b = Replica::start(&redis, &upstream).await;
    let mut stream = b.subscribe("").await;

    let load = Arc::new(Load::default());
    let targets = vec![
        (a.webhook_url.clone(), http()),
        (b.webhook_url.clone(), http()),
    ];
    let workers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(pusher(w, targets.clone(), load.clone())))
        .collect();

    // The subscriber reads until Redis dies under it.
    let mut received: Vec<(String, String)> = Vec::new();
    let reading = Instant::now();
    while received.len() < 50 {
        assert!(reading.elapsed() < Duration::from_secs(20), "events flow");
        received.extend(take(&mut stream, 1, Duration::from_secs(5)).await);
    }
    redis.kill();
    let refused_before = load.refused.load(Ordering::Relaxed);
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ends while Redis is down")
        {
            Ok(Some(message)) => received.push((message.cursor, message.event.unwrap().openid)),
            Ok(None) => panic!("stream closed without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    let info = end.get_error_details().error_info().cloned().unwrap();
    let resume_after = info.metadata["resume_after"].clone();
    assert_eq!(
        &resume_after,
        &received.last().unwrap().0,
        "the stream ends with the cursor of the last event it delivered"
    );
    for replica in [&a, &b] {
        poll_until("NOT_SERVING", Duration::from_secs(10), || async {
            replica.health().await == 2
        })
        .await;
        assert_eq!(replica.metric("wechat_qr_event_log_writable").await, 0.0);
    }
    poll_until(
        "pushes refused while Redis is down",
        Duration::from_secs(10),
        || {
            let refused = load.refused.load(Ordering::Relaxed);
            async move { refused > refused_before + 4 }
        },
    )
    .await;
    let (query, body) = push_for("while-down", 99_999_999);
    let (status, _) = a.post(&query, &body).await.expect("the webhook answers");
    assert!(
        status >= 500,
        "a push is refused with 5xx while Redis is down: {status}"
    );
    // The metrics count it.
    let refused =
        r#"wechat_qr_webhook_pushes_total{app_id="wx0000000000devsim",outcome="log_unavailable"}"#;
    assert!(a.metric(refused).await + b.metric(refused).await >= 1.0);
    let dropped = r#"wechat_qr_subscriber_drops_total{reason="log_failed"}"#;
    assert_eq!(b.metric(dropped).await, 1.0);

    redis.restart();
    for replica in [&a, &b] {
        poll_until("SERVING again", Duration::from_secs(15), || async {
            replica.health().await == 1
        })
        .await;
    }
    // The subscriber comes back (to the other replica) with its cursor.
    let mut resumed = a.subscribe(&resume_after).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("pushers finish once Redis is back")
            .unwrap();
    }
    let acked = load.acked.lock().unwrap().clone();
    let first = &received[0].0;
    let mut whole = a.subscribe(&epoch_start(first)).await;
    let log = take(&mut whole, acked.len(), Duration::from_secs(5)).await;
    stays_quiet(&mut whole, Duration::from_millis(500)).await;
    let logged: Vec<&String> = log.iter().map(|(_, o)| o).collect();
    let unique: HashSet<&String> = logged.iter().copied().collect();
    assert_eq!(unique.len(), logged.len(), "no push duplicated");
    let acked_set: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique, acked_set, "every acknowledged push, nothing else");

    // Before and after the outage, the subscriber saw the whole log exactly once.
    let position = log.iter().position(|(c, _)| *c == resume_after).unwrap();
    let rest = take(
        &mut resumed,
        log.len() - position - 1,
        Duration::from_secs(5),
    )
    .await;
    stays_quiet(&mut resumed, Duration::from_millis(300)).await;
    let mut together = received.clone();
    together.extend(rest);
    assert_eq!(
        together, log,
        "the subscriber missed nothing and saw nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_with_kill_9_mid_stream_its_subscriber_resumes_on_another() {
    let redis = RedisServer::start();
    let upstream = TestService::start().await;
    let a = Replica::start(&redis, &upstream).await;
    let b = Replica::start(&redis, &upstream).await;
    let mut stream = a.subscribe("").await;

    let load = Arc::new(Load::default());
    let workers: Vec<_> = (0..2)
        .map(|w| {
            tokio::spawn(pusher(
                w,
                vec![(b.webhook_url.clone(), http())],
                load.clone(),
            ))
        })
        .collect();
    let mut received = take(&mut stream, 40, Duration::from_secs(10)).await;
    a.kill9().await;
    // What the dead replica had already sent is all the subscriber has.
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream breaks when its replica dies")
    {
        received.push((message.cursor, message.event.unwrap().openid));
    }
    let cursor = received.last().unwrap().0.clone();
    let mut resumed = b.subscribe(&cursor).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(
        load.refused.load(Ordering::Relaxed),
        0,
        "B kept acknowledging"
    );
    let acked = load.acked.lock().unwrap().clone();
    let rest = take(
        &mut resumed,
        acked.len() - received.len(),
        Duration::from_secs(5),
    )
    .await;
    stays_quiet(&mut resumed, Duration::from_millis(500)).await;
    received.extend(rest);
    let cursors: Vec<&String> = received.iter().map(|(c, _)| c).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "in log order");
    let mut got: Vec<&String> = received.iter().map(|(_, o)| o).collect();
    let mut want: Vec<&String> = acked.iter().collect();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "every acknowledged push exactly once across the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rediss_with_a_password_serves_and_the_password_never_reaches_the_output() {
    const PASSWORD: &str = "s3cret-redis-pw";
    let redis = RedisServer::start_tls(PASSWORD);
    let upstream = TestService::start().await;
    // The test CA is trusted as a private CA is: through SSL_CERT_FILE.
    let ca = redis.ca_file();
    let trust = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let a = Replica::start_with(&redis, &upstream, &trust).await;
    let b = Replica::start_with(&redis, &upstream, &trust).await;
    let mut stream = b.subscribe("").await;
    let (query, body) = push_for("over-tls", 1);
    assert_eq!(
        a.post(&query, &body).await,
        Some((200, "success".to_owned()))
    );
    assert_eq!(
        take(&mut stream, 1, Duration::from_secs(5)).await[0].1,
        "over-tls"
    );
    for replica in [&a, &b] {
        let log = replica.log.lock().unwrap().clone();
        assert!(
            log.contains(&format!("rediss://:***@127.0.0.1:{}", redis.port)),
            "the URL is logged, redacted:\n{log}"
        );
        assert!(!log.contains(PASSWORD), "no password in the log:\n{log}");
    }

    // A wrong password stops the start; the message names the URL, not the password.
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("rediss://:wrong-s3cret@127.0.0.1:{}", redis.port);
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::from(command(&wrong, &upstream, dir.path()))
            .envs(trust)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a start with a wrong password fails promptly")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "cannot use Redis at rediss://:***@127.0.0.1:{}",
            redis.port
        )),
        "{text}"
    );
    assert!(!text.contains("wrong-s3cret"), "{text}");
}

#[tokio::test]
async fn retention_on_redis_drops_events_with_their_de_duplication_keys() {
    let redis = RedisServer::start();
    let mut config = common::config();
    config.redis_url = Some(wechat_qr::secret::Secret::new(redis.url()));
    config.retain_events = 5;
    let service = TestService::start_with(config).await;
    for i in 0..12 {
        common::push(
            &service,
            &scan_xml("SCAN", &format!("r{i}"), "42", "t", now()),
        )
        .await;
    }
    assert_eq!(service.retained().await, 5, "the newest 5 events");
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("{wechat-qr:events}:dedup:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        keys.len(),
        5,
        "one de-duplication key per retained event: {keys:?}"
    );
}

#[tokio::test]
async fn two_accounts_on_two_replicas_one_token_each_and_one_log() {
    const A: &str = "wxredisaccount0a01";
    const B: &str = "wxredisaccount0b02";
    let redis = RedisServer::start();
    // The fake WeChat knows both accounts.
    let mut upstream_config = common::config();
    upstream_config.simulator = true;
    upstream_config.event_log = wechat_qr::config::EventLogKind::Memory;
    upstream_config.accounts = [A, B]
        .into_iter()
        .map(|app_id| wechat_qr::config::AccountConfig {
            token: Some(wechat_qr::secret::Secret::new(TOKEN)),
            ..wechat_qr::config::AccountConfig::new(app_id, "redis-secret")
        })
        .collect();
    let upstream = TestService::start_with(upstream_config).await;
    let sim = upstream.simulator_url();
    let mut replicas = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("wechat-qr.toml");
        let accounts: String = [A, B]
            .iter()
            .map(|app_id| {
                format!(
                    "\n[[accounts]]\napp_id = \"{app_id}\"\napp_secret = \"redis-secret\"\ntoken = \"{TOKEN}\"\napi_base = \"{sim}\"\nmp_base = \"{sim}\"\n"
                )
            })
            .collect();
        std::fs::write(
            &config,
            format!(
                "grpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nredis_url = \"{}\"\n{accounts}",
                dir.path().join("data").display(),
                redis.url()
            ),
        )
        .unwrap();
        replicas.push(Binary::start(&config, &[]).await);
        dirs.push(dir);
    }

    // 40 cold CreateTicket calls, both accounts, both replicas: one fetch per account.
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(replica.client().await);
    }
    let calls = (0..40u32).map(|i| {
        let mut client = clients[i as usize % 2].clone();
        let account = if i % 4 < 2 { A } else { B };
        tokio::spawn(async move {
            client
                .create_ticket(pb::CreateTicketRequest {
                    scene: Some(Scene::SceneId(i + 1)),
                    expire_seconds: 60,
                    account: account.into(),
                    ..Default::default()
                })
                .await
        })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().expect("CreateTicket succeeds");
    }
    let fetches = upstream.simulator();
    assert_eq!(
        (fetches.token_fetches_of(A), fetches.token_fetches_of(B)),
        (1, 1),
        "one token per account for the whole cluster"
    );

    // Pushes for each account at either replica, one log; B's retry lands elsewhere.
    let only_a = |replica: &Binary| {
        let addr = replica.grpc_addr.clone();
        async move {
            pb::qr_service_client::QrServiceClient::connect(format!("http://{addr}"))
                .await
                .unwrap()
                .stream_events(pb::StreamEventsRequest {
                    accounts: vec![A.into()],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut a_on_second = only_a(&replicas[1]).await;
    let mut all_on_first = clients[0]
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let post = |replica: &Binary, app_id: &str, query: &str, body: &str| {
        let url = format!("{}/wechat/{app_id}?{query}", replica.http_base());
        let body = body.to_owned();
        async move {
            http()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (query_a, body_a) = push_for("o-a", 1);
    let (query_b, body_b) = push_for("o-b", 2);
    assert_eq!(post(&replicas[0], A, &query_a, &body_a).await, 200);
    assert_eq!(post(&replicas[1], B, &query_b, &body_b).await, 200);
    assert_eq!(post(&replicas[0], B, &query_b, &body_b).await, 200, "retry");
    let all = common::exactly(&mut all_on_first, 2).await;
    assert_eq!(
        all.iter()
            .map(|e| (e.app_id.as_str(), e.openid.as_str()))
            .collect::<Vec<_>>(),
        [(A, "o-a"), (B, "o-b")]
    );
    let theirs = common::exactly(&mut a_on_second, 1).await;
    assert_eq!(
        (theirs[0].app_id.as_str(), theirs[0].openid.as_str()),
        (A, "o-a")
    );
    for replica in replicas {
        replica.stop().await;
    }
    drop(dirs);
    upstream.stop().await;
}

/// A stream entry as XRANGE answers it: its id and its field-value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

#[tokio::test]
async fn retention_by_bytes_on_redis_keeps_the_stored_size_under_the_limit() {
    let redis = RedisServer::start();
    let mut config = common::config();
    config.redis_url = Some(wechat_qr::secret::Secret::new(redis.url()));
    config.retain_bytes = 2_000;
    let service = TestService::start_with(config).await;
    for i in 0..30 {
        common::push(
            &service,
            &scan_xml("SCAN", &format!("bytes-{i:02}"), "42", "t", now()),
        )
        .await;
    }
    let mut conn = redis.connection().await;
    let counted: u64 = redis::cmd("GET")
        .arg("{wechat-qr:events}:bytes")
        .query_async(&mut conn)
        .await
        .unwrap();
    // What the stream really holds, summed here.
    let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
        .arg("{wechat-qr:events}:stream")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let held: u64 = entries
        .iter()
        .map(|(_, fields)| fields[0].1.len() as u64)
        .sum();
    assert_eq!(counted, held, "the running count is the stream's real size");
    assert!(held <= 2_000, "{held} bytes retained");
    let retained = service.retained().await;
    assert!(
        (3..30).contains(&retained) && retained == entries.len(),
        "{retained} events retained"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_permanent_budget_holds_for_the_whole_cluster() {
    let redis = RedisServer::start();
    let upstream = TestService::start().await;
    let budget = [("WECHAT_QR_PERMANENT_BUDGET", "2")];
    let a = Replica::start_with(&redis, &upstream, &budget).await;
    let b = Replica::start_with(&redis, &upstream, &budget).await;
    let clients = [a.client().await, b.client().await];
    // Six different scenes at once over both replicas: two codes, the rest refused
    // before WeChat is called.
    let calls = (0..6u32).map(|i| {
        let mut client = clients[i as usize % 2].clone();
        tokio::spawn(async move {
            client
                .create_ticket(pb::CreateTicketRequest {
                    scene: Some(Scene::SceneId(100 + i)),
                    permanent: true,
                    ..Default::default()
                })
                .await
        })
    });
    let mut minted = 0;
    for call in futures_util::future::join_all(calls).await {
        match call.unwrap() {
            Ok(_) => minted += 1,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert_eq!(minted, 2);
    assert_eq!(upstream.simulator().stats().qrcode_creates, 2);
    a.binary.stop().await;
    b.binary.stop().await;
}

#[tokio::test]
async fn a_captured_plaintext_query_replayed_to_another_replica_is_refused() {
    let redis = RedisServer::start();
    let upstream = TestService::start().await;
    let a = Replica::start(&redis, &upstream).await;
    let b = Replica::start(&redis, &upstream).await;
    let mut events = a.subscribe("").await;
    let query = signed_query(TOKEN, &now().to_string(), "captured-nonce");
    let genuine = scan_xml("SCAN", "o-genuine", "42", "t", now());
    let forged = scan_xml("SCAN", "o-forged", "42", "t", now());
    assert_eq!(a.post(&query, &genuine).await.unwrap().0, 200);
    // The same signed query with another body, at the other replica: a forgery.
    let (status, body) = b.post(&query, &forged).await.unwrap();
    assert_eq!(status, 403, "{body}");
    // WeChat's retry of the genuine push there is still a retry, emitted once.
    assert_eq!(b.post(&query, &genuine).await.unwrap().0, 200);
    let got = common::exactly(&mut events, 1).await;
    assert_eq!(got[0].openid, "o-genuine");
    a.binary.stop().await;
    b.binary.stop().await;
}
