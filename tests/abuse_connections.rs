//! Connections and descriptors under abuse (issue 27, findings 2, 3 and 7), through the
//! real binary on loopback: silent gRPC connections against a 1,024-descriptor soft
//! limit, connections that never finish their handshake or never call, thousands of
//! trickling or idle webhook connections from one address while genuine pushes come from
//! another (127.0.0.2), the admin listener held by idle connections, a trusted proxy, an
//! explicit cap that does not fit the limit, heads trickling past the header deadline, TLS
//! handshakes that never finish, and the console's and `/metrics`' rules with
//! `[[clients]]`. Counts are bounded for CI; every wait polls with a deadline.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{TOKEN, binary::Binary, scan_xml, signed_query};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinSet,
};
use wechat_qr::pb;

/// Where genuine pushes come from: another loopback address than the attackers'.
const GENUINE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// What "well under a second" means for one genuine push on a loaded CI machine.
const ACK_WITHIN: Duration = Duration::from_millis(1_000);

/// One flood at a time: thousands of connections from tests running side by side would
/// measure each other, not the service.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary with its own data directory, every listener on port 0, `args` added and,
/// with `nofile`, its descriptor limit set to `(soft, hard)` before it starts.
async fn start(args: &[&str], nofile: Option<(u64, u64)>) -> (Binary, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_wechat-qr");
    let mut command = match nofile {
        // The shell sets the limits, then becomes the service (same pid).
        Some((soft, hard)) => {
            let mut c = std::process::Command::new("sh");
            c.args([
                "-c",
                &format!("ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" \"$@\""),
                binary,
            ]);
            c
        }
        None => std::process::Command::new(binary),
    };
    for (key, _) in std::env::vars() {
        if key.starts_with("WECHAT_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", data.path().join("data"))
        .stdin(Stdio::null());
    (Binary::spawn(command).await, data)
}

/// This test process opens thousands of sockets itself.
fn raise_own_limit() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// An HTTP client whose connections come from `from`.
fn http_from(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(from)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// One genuine signed push from `http`'s address: its answer and how long it took.
async fn genuine_push(
    http: &reqwest::Client,
    webhook_url: &str,
    n: usize,
) -> (u16, String, Duration) {
    let nonce = format!("n{}", rand::random::<u64>());
    let query = signed_query(TOKEN, &common::now().to_string(), &nonce);
    let started = Instant::now();
    let answer = http
        .post(format!("{webhook_url}?{query}"))
        .body(scan_xml(
            "SCAN",
            &format!("o-genuine-{n}"),
            "genuine",
            &format!("genuine-ticket-{n}"),
            common::now(),
        ))
        .send()
        .await;
    match answer {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            (status, body, started.elapsed())
        }
        Err(e) => (0, e.to_string(), started.elapsed()),
    }
}

/// `count` genuine pushes one after another, each answered `success` within [`ACK_WITHIN`].
async fn genuine_pushes_are_acknowledged(webhook_url: &str, count: usize, what: &str) {
    let http = http_from(GENUINE);
    let mut took = Vec::new();
    for n in 0..count {
        let (status, body, elapsed) = genuine_push(&http, webhook_url, n).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "success"),
            "{what}: push {n}"
        );
        took.push(elapsed);
    }
    let slowest = took.iter().max().unwrap();
    eprintln!("{what}: {count} genuine pushes, slowest {slowest:?}");
    assert!(
        *slowest < ACK_WITHIN,
        "{what}: genuine pushes took {took:?}"
    );
}

/// Connections held against the service.
struct Flood {
    /// Connections established.
    open: Arc<AtomicUsize>,
    /// Of those, how many the service closed.
    closed: Arc<AtomicUsize>,
    /// The tasks holding them; dropped, every connection closes.
    _tasks: JoinSet<()>,
}

impl Flood {
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }

    /// Established and not (yet) closed by the service.
    fn held(&self) -> usize {
        self.open() - self.closed()
    }

    /// Waits until the service holds at most `most` of them (what the kernel queued is
    /// accepted, and what the service closed is seen closed), and at least `least`.
    async fn settles_within(&self, least: usize, most: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.held() > most && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let held = self.held();
        assert!(
            (least..=most).contains(&held),
            "{held} held, expected {least}..={most}"
        );
    }
}

/// Opens `count` connections to `to` from `from` that send `first` and then, with
/// `trickle`, one more header byte every 200 ms each; returns once every connection
/// attempt has finished (bounded).
async fn hold(
    from: IpAddr,
    to: SocketAddr,
    count: usize,
    first: &'static [u8],
    trickle: bool,
) -> Flood {
    let open = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let attempted = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let (open, closed, attempted) = (open.clone(), closed.clone(), attempted.clone());
        tasks.spawn(async move {
            let connected = connect_from(from, to).await;
            attempted.fetch_add(1, Ordering::Relaxed);
            let Ok(mut stream) = connected else {
                return;
            };
            open.fetch_add(1, Ordering::Relaxed);
            if !first.is_empty() && stream.write_all(first).await.is_err() {
                closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut buf = [0u8; 64];
            loop {
                if trickle {
                    tokio::select! {
                        read = stream.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { break },
                        () = tokio::time::sleep(Duration::from_millis(200)) => {
                            if stream.write_all(b"X").await.is_err() { break }
                        }
                    }
                } else if matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {
                    break;
                }
            }
            closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while attempted.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the service take in what the kernel queued for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flood = Flood {
        open,
        closed,
        _tasks: tasks,
    };
    eprintln!(
        "flood of {count} to {to}: {} established, {} held, {} closed by the service",
        flood.open(),
        flood.held(),
        flood.closed()
    );
    flood
}

async fn create_ticket(binary: &Binary) -> Result<String, String> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", binary.grpc_addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    pb::qr_service_client::QrServiceClient::new(channel)
        .create_ticket(pb::CreateTicketRequest {
            scene: Some(pb::create_ticket_request::Scene::SceneStr("silent".into())),
            expire_seconds: 60,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().ticket)
        .map_err(|e| e.to_string())
}

/// Finding 2: 1,100 silent gRPC connections against a soft limit of 1,024 descriptors.
/// The process raises the soft limit to the hard one and logs both; every listener's cap
/// fits; pushes and CreateTicket are answered while the connections are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_grpc_connections_under_a_1024_soft_limit_starve_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    raise_own_limit();
    let (binary, _data) = start(&[], Some((1024, 4096))).await;
    binary.logged("soft_before=1024").await;
    let raised = binary
        .log_lines()
        .into_iter()
        .find(|l| l.contains("soft_before=1024"))
        .unwrap();
    assert!(
        raised.contains("soft=4096") && raised.contains("hard=4096"),
        "{raised}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", binary.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("4096")),
        "{limits}"
    );

    let grpc: SocketAddr = binary.grpc_addr.parse().unwrap();
    let flood = hold(ATTACKER, grpc, 1_100, b"", false).await;
    assert!(flood.open() >= 1_000, "the flood is real");

    let ticket = create_ticket(&binary)
        .await
        .expect("CreateTicket is answered while 1,100 silent connections are held");
    assert!(!ticket.is_empty());
    genuine_pushes_are_acknowledged(&binary.webhook_url, 5, "1,100 silent gRPC connections").await;
    assert_eq!(
        binary.count("Too many open files"),
        0,
        "{}",
        binary.log_lines().join("\n")
    );
    drop(flood);
    binary.stop().await;
}

/// Finding 2, where the limit cannot be raised (soft = hard = 1,024): the gRPC cap is sized
/// from it, and at the cap the oldest connection still in its handshake makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_grpc_connections_under_a_1024_hard_limit_make_room() {
    let _one = ONE_AT_A_TIME.lock().await;
    raise_own_limit();
    let (binary, _data) = start(&[], Some((1024, 1024))).await;
    let grpc: SocketAddr = binary.grpc_addr.parse().unwrap();
    let flood = hold(ATTACKER, grpc, 1_100, b"", false).await;
    assert!(flood.open() >= 1_000, "the flood is real");
    let ticket = create_ticket(&binary)
        .await
        .expect("CreateTicket is answered at the gRPC cap");
    assert!(!ticket.is_empty());
    genuine_pushes_are_acknowledged(&binary.webhook_url, 5, "gRPC cap under a hard 1,024").await;
    let files = binary.open_files();
    assert!(files < 1_024, "{files} descriptors open");
    assert_eq!(binary.count("Too many open files"), 0);
    assert!(
        binary
            .metrics()
            .await
            .contains("wechat_qr_connections_closed_total{listener=\"grpc\",reason=\"evicted\"}"),
        "evictions are counted"
    );
    drop(flood);
    binary.stop().await;
}

/// Finding 2: a connection that does not complete its HTTP/2 handshake within the
/// deadline is closed, one that completes it and never calls is closed after the idle
/// time, and a stream kept open past both keeps its connection and gets its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshakes_and_idle_connections_are_closed_but_streams_stay() {
    let _one = ONE_AT_A_TIME.lock().await;
    raise_own_limit();
    let (binary, _data) = start(
        &[
            "--grpc-handshake-timeout-ms=1000",
            "--grpc-idle-timeout-seconds=2",
        ],
        None,
    )
    .await;
    let grpc: SocketAddr = binary.grpc_addr.parse().unwrap();
    let mut client = binary.client().await;
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            tickets: vec!["kept-ticket".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let started = Instant::now();
    let silent = hold(ATTACKER, grpc, 200, b"", false).await;
    // Half a preface: still in the handshake.
    let half = hold(ATTACKER, grpc, 50, b"PRI * HTTP/2.0\r\n", false).await;
    // A whole handshake (preface and an empty SETTINGS frame), then nothing.
    let mut idle = connect_from(ATTACKER, grpc).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (silent.closed() < 200 || half.closed() < 50) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handshake_closed = started.elapsed();
    assert_eq!(silent.closed(), 200, "silent connections closed");
    assert_eq!(half.closed(), 50, "half prefaces closed");
    assert!(
        handshake_closed >= Duration::from_millis(900),
        "{handshake_closed:?}"
    );

    // The idle one: the server's SETTINGS, maybe more, then EOF after the idle time.
    let mut buf = [0u8; 1024];
    let idle_closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a connection without a call is closed after the idle time");
    assert!(idle_closed >= Duration::from_secs(2), "{idle_closed:?}");

    // The stream has outlived both deadlines and still gets its event.
    let http = http_from(GENUINE);
    let nonce = format!("n{}", rand::random::<u64>());
    let query = signed_query(TOKEN, &common::now().to_string(), &nonce);
    let answer = http
        .post(format!("{}?{query}", binary.webhook_url))
        .body(scan_xml(
            "SCAN",
            "o-kept",
            "kept",
            "kept-ticket",
            common::now(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream is still open")
        .unwrap()
        .expect("an event, not the end of the stream");
    assert_eq!(event.event.unwrap().ticket, "kept-ticket");
    binary.stop().await;
}

/// Finding 3: a few thousand connections from one address trickling header bytes, then
/// as many idle ones: genuine pushes from another address are each acknowledged within
/// a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickling_and_idle_connections_from_one_address_do_not_delay_genuine_pushes() {
    let _one = ONE_AT_A_TIME.lock().await;
    raise_own_limit();
    let (binary, _data) = start(&[], None).await;
    let webhook = addr_of(&binary.webhook_url);

    let trickling = hold(ATTACKER, webhook, 3_000, b"POST /wechat HTTP/1.1\r\n", true).await;
    assert!(trickling.open() >= 2_500, "the flood is real");
    // The address holds its share, no more.
    trickling.settles_within(200, 256).await;
    genuine_pushes_are_acknowledged(&binary.webhook_url, 10, "3,000 trickling connections").await;
    drop(trickling);

    let idle = hold(ATTACKER, webhook, 3_000, b"", false).await;
    assert!(idle.open() >= 2_500, "the flood is real");
    genuine_pushes_are_acknowledged(&binary.webhook_url, 10, "3,000 idle connections").await;
    drop(idle);
    assert!(
        binary.metrics().await.contains(
            "wechat_qr_connections_closed_total{listener=\"webhook\",reason=\"per_address\"}"
        ),
        "refusals past the per-address limit are counted"
    );
    binary.stop().await;
}

/// How long `to` keeps a connection that sends `first` and then, with `trickle`, one more
/// header byte every 100 ms: from the first write until the service closes it (reading
/// whatever it answers meanwhile); `None` if it is still open after 20 s.
async fn kept_for(to: SocketAddr, first: &[u8], trickle: bool) -> Option<Duration> {
    let mut stream = connect_from(ATTACKER, to).await.unwrap();
    let started = Instant::now();
    stream.write_all(first).await.unwrap();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) {
                    return started.elapsed();
                },
                () = tokio::time::sleep(Duration::from_millis(100)), if trickle => {
                    if stream.write_all(b"X").await.is_err() {
                        return started.elapsed();
                    }
                }
            }
        }
    })
    .await
    .ok()
}

/// `WECHAT_QR_HEADER_READ_TIMEOUT_MS` set to 500: a head trickling in a byte at a time is
/// cut off at the deadline on the webhook and the admin listener alike, and so is a
/// keep-alive connection that sends nothing after its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trickling_head_and_an_idle_keep_alive_are_closed_at_the_header_deadline() {
    const DEADLINE: Duration = Duration::from_millis(500);
    let _one = ONE_AT_A_TIME.lock().await;
    let (binary, _data) = start(&["--header-read-timeout-ms=500"], None).await;
    let within = |what: &str, kept: Option<Duration>| {
        let kept = kept.unwrap_or_else(|| panic!("{what}: still open after 20 s"));
        eprintln!("{what}: closed after {kept:?}");
        assert!(
            kept >= DEADLINE - Duration::from_millis(50) && kept < DEADLINE * 4,
            "{what}: closed after {kept:?}, the deadline is {DEADLINE:?}"
        );
    };
    let webhook = addr_of(&binary.webhook_url);
    let admin = addr_of(&binary.admin_url);
    within(
        "trickling webhook head",
        kept_for(webhook, b"POST /wechat HTTP/1.1\r\n", true).await,
    );
    within(
        "trickling admin head",
        kept_for(admin, b"GET /metrics HTTP/1.1\r\n", true).await,
    );
    // A whole request, answered, then silence on the kept-alive connection.
    within(
        "idle keep-alive after an answer",
        kept_for(
            webhook,
            b"GET /wechat HTTP/1.1\r\nHost: localhost\r\n\r\n",
            false,
        )
        .await,
    );
    binary.stop().await;
}

/// gRPC over TLS: a connection that stays silent, and one that sends only the start of a
/// ClientHello, are closed at the TLS handshake deadline (10 s), long before the idle time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_handshakes_that_never_finish_are_closed_at_ten_seconds() {
    const DEADLINE: Duration = Duration::from_secs(10);
    let _one = ONE_AT_A_TIME.lock().await;
    let certs = tempfile::tempdir().unwrap();
    common::certificates(certs.path(), "client", "client.internal");
    let cert = format!("--tls-cert={}", certs.path().join("server.pem").display());
    let key = format!("--tls-key={}", certs.path().join("server.key").display());
    let (binary, _data) = start(&[&cert, &key], None).await;
    let grpc: SocketAddr = binary.grpc_addr.parse().unwrap();
    // A TLS record header announcing a 255-byte handshake message, then nothing.
    let (silent, partial) = tokio::join!(
        kept_for(grpc, b"", false),
        kept_for(grpc, b"\x16\x03\x01\x00\xff\x01", false)
    );
    for (what, kept) in [("silent", silent), ("partial ClientHello", partial)] {
        let kept = kept.unwrap_or_else(|| panic!("{what}: still open after 20 s"));
        eprintln!("{what}: closed after {kept:?}");
        assert!(
            kept >= DEADLINE - Duration::from_millis(200)
                && kept < DEADLINE + Duration::from_secs(3),
            "{what}: closed after {kept:?}"
        );
    }
    binary.stop().await;
}

/// Finding 3, at the cap: with the per-address limit out of the way, 1,500 idle
/// connections fill a cap of 300, and each genuine push closes the oldest of them instead
/// of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_the_cap_the_oldest_waiting_connection_makes_room() {
    let _one = ONE_AT_A_TIME.lock().await;
    raise_own_limit();
    let (binary, _data) = start(
        &[
            "--max-webhook-connections=300",
            "--max-connections-per-address=100000",
        ],
        None,
    )
    .await;
    let webhook = addr_of(&binary.webhook_url);
    let idle = hold(
        ATTACKER,
        webhook,
        1_500,
        b"POST /wechat HTTP/1.1\r\n",
        false,
    )
    .await;
    assert!(idle.open() >= 1_200, "the flood is real");
    // The cap is full of them when the genuine pushes come.
    idle.settles_within(250, 300).await;
    genuine_pushes_are_acknowledged(&binary.webhook_url, 10, "webhook cap of 300 held").await;
    drop(idle);
    binary.stop().await;
}

/// Finding 3, the admin listener: its 64 connections held idle from the scraper's own
/// address do not stop `/metrics` from answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_listener_answers_while_its_connections_are_held() {
    let _one = ONE_AT_A_TIME.lock().await;
    raise_own_limit();
    let (binary, _data) = start(&[], None).await;
    let admin = addr_of(&binary.admin_url);
    let idle = hold(ATTACKER, admin, 500, b"GET /metrics HTTP/1.1\r\n", false).await;
    assert!(idle.open() >= 400, "the flood is real");
    idle.settles_within(50, 64).await;
    let http = http_from(ATTACKER);
    for _ in 0..5 {
        let started = Instant::now();
        let answer = http
            .get(format!("{}/metrics", binary.admin_url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let took = started.elapsed();
        assert!(took < ACK_WITHIN, "/metrics took {took:?}");
    }
    drop(idle);
    binary.stop().await;
}

/// Finding 3: a trusted proxy's connections are counted against the address it forwards
/// for, not its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_counted_by_the_address_it_forwards_for() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (binary, _data) = start(
        &[
            "--trusted-proxies=127.0.0.1",
            "--max-connections-per-address=2",
        ],
        None,
    )
    .await;
    let webhook = addr_of(&binary.webhook_url);
    // One request on a kept-alive connection: its answer, or None when closed unanswered.
    async fn ask(stream: &mut TcpStream, client: &str) -> Option<String> {
        let request = format!("GET /wechat HTTP/1.1\r\nHost: hook\r\nX-Real-IP: {client}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer or a close")
            .ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    let mut held = Vec::new();
    // More connections from the proxy than the per-address limit, for two clients.
    for client in ["10.0.0.9", "10.0.0.9", "10.0.0.10", "10.0.0.10"] {
        let mut stream = connect_from(ATTACKER, webhook).await.unwrap();
        let answer = ask(&mut stream, client).await;
        assert!(
            answer.is_some_and(|a| a.starts_with("HTTP/1.1 4")),
            "{client} within its share is answered"
        );
        held.push(stream);
    }
    let mut third = connect_from(ATTACKER, webhook).await.unwrap();
    assert_eq!(
        ask(&mut third, "10.0.0.9").await,
        None,
        "a third for 10.0.0.9 is closed"
    );
    // X-Forwarded-For: the last entry is the one the proxy appended.
    let mut other = connect_from(ATTACKER, webhook).await.unwrap();
    let request =
        "GET /wechat HTTP/1.1\r\nHost: hook\r\nX-Forwarded-For: 10.0.0.9, 10.0.0.11\r\n\r\n";
    other.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = other.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 4"));
    binary.stop().await;
}

/// Finding 2: an explicit cap that does not fit the descriptor limit is refused at start
/// and by `check-config`, which prints the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_that_does_not_fit_the_descriptor_limit_is_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wechat-qr.toml");
    std::fs::write(&config, "max_webhook_connections = 5000\n").unwrap();
    let config = config.to_str().unwrap();
    let run = |args: Vec<String>| async move {
        let mut command = tokio::process::Command::new("sh");
        command
            .args([
                "-c",
                "ulimit -S -n 1024 && ulimit -H -n 1024 && exec \"$0\" \"$@\"",
                env!("CARGO_BIN_EXE_wechat-qr"),
            ])
            .args(args)
            .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_SIMULATOR_ADDR", "127.0.0.1:0")
            .env("WECHAT_QR_EVENT_LOG", "memory")
            .stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("WECHAT_") {
                command.env_remove(key);
            }
        }
        let output = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .unwrap()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, out) = run(vec!["check-config".into(), config.into()]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("WECHAT_QR_MAX_WEBHOOK_CONNECTIONS=5000"),
        "{out}"
    );
    assert!(out.contains("limit 1024 descriptors = reserve"), "{out}");
    let (ok, out) = run(vec!["--config".into(), config.into()]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("WECHAT_QR_MAX_WEBHOOK_CONNECTIONS=5000"),
        "{out}"
    );

    // Without the explicit cap: valid, and the plan is printed.
    let fits = dir.path().join("fits.toml");
    std::fs::write(&fits, "max_grpc_connections = 300\n").unwrap();
    let (ok, out) = run(vec!["check-config".into(), fits.to_str().unwrap().into()]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("# descriptors: limit 1024 descriptors"),
        "{out}"
    );
    assert!(out.contains("gRPC 300"), "{out}");
}

fn client_table(name: &str, token: &str, extra: &str) -> String {
    format!(
        "\n[[clients]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n{extra}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
}

/// Finding 7: with `[[clients]]`, the console's simulate-scan needs a caller token of a
/// client allowed CreateTicket, and `/metrics` applies the console's Host rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_and_metrics_honour_clients_and_host() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wechat-qr.toml");
    std::fs::write(
        &config,
        client_table("full", "full-token", "")
            + &client_table("images", "images-token", "methods = [\"GetImage\"]\n"),
    )
    .unwrap();
    let (binary, _data) = start(&["--config", config.to_str().unwrap()], None).await;
    let mut client = binary.client().await;
    let mut request = tonic::Request::new(pb::CreateTicketRequest {
        scene: Some(pb::create_ticket_request::Scene::SceneStr("console".into())),
        expire_seconds: 60,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer full-token".parse().unwrap());
    let ticket = client
        .create_ticket(request)
        .await
        .unwrap()
        .into_inner()
        .ticket;
    let mut request = tonic::Request::new(pb::StreamEventsRequest {
        tickets: vec![ticket.clone()],
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer full-token".parse().unwrap());
    let mut stream = client.stream_events(request).await.unwrap().into_inner();

    let http = http_from(ATTACKER);
    let scan = |token: Option<&str>| {
        let mut post = http
            .post(format!("{}/console/simulate-scan", binary.admin_url))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"ticket":"{ticket}","openid":"o-console","new_follower":false}}"#
            ));
        if let Some(token) = token {
            post = post.header("authorization", format!("Bearer {token}"));
        }
        post.send()
    };
    let anonymous = scan(None).await.unwrap();
    assert_eq!(anonymous.status(), 401, "{:?}", anonymous.text().await);
    assert_eq!(scan(Some("wrong-token")).await.unwrap().status(), 401);
    let limited = scan(Some("images-token")).await.unwrap();
    assert_eq!(limited.status(), 403);
    assert!(limited.text().await.unwrap().contains("CreateTicket"));
    let allowed = scan(Some("full-token")).await.unwrap();
    assert_eq!(allowed.status(), 200, "{:?}", allowed.text().await);
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let event = event.event.unwrap();
    assert_eq!(event.openid, "o-console");
    // Only the allowed scan reached the stream.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.message())
            .await
            .is_err()
    );

    let metrics = |host: &'static str| {
        http.get(format!("{}/metrics", binary.admin_url))
            .header("host", host)
            .send()
    };
    assert_eq!(metrics("evil.example:9090").await.unwrap().status(), 403);
    assert_eq!(metrics("127.0.0.1:9090").await.unwrap().status(), 200);
    assert_eq!(metrics("localhost").await.unwrap().status(), 200);
    binary.stop().await;
}
