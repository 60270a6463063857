//! The measured operations: each scenario starts the real service in-process
//! (`app::start`, on the embedded simulator) on a current-thread runtime, prepares all
//! its inputs, warms up, then performs `ops` operations through real clients (a hyper
//! HTTP/1 connection for pushes, a tonic channel for gRPC). Everything but the `ops`
//! operations is the same whatever `ops` is, so the difference between the callgrind
//! totals of a run with `ops` and one with none is the cost of `ops` operations, client
//! side included.

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wechat_qr::{
    app::{self, Running},
    config::{EncryptMode, ServeConfig, dev},
    pb::{self, qr_service_client::QrServiceClient},
    protocol::push::{self, Scan, Signer},
    secret::Secret,
    webhook,
};

/// Operations before the measured ones: connections, caches, the token and the
/// allocator reach their steady state.
pub(crate) const WARM_UP: u64 = 20;

/// The EncodingAESKey of the safe-mode scenario.
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// A ticket shaped like WeChat's; the webhook does not look it up.
const TICKET: &str =
    "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyYmVuY2gzAAIEbenchAMEPAAAAA==";

/// One counted operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// A plaintext push through the webhook into the in-memory log.
    PlaintextPush,
    /// A safe-mode (encrypted) push through the webhook into the in-memory log.
    SafePush,
    /// A plaintext push through the webhook into the durable (segment) log.
    DurablePush,
    /// CreateTicket with the access token already cached.
    CreateTicket,
    /// GetImage of a ticket whose image is cached.
    GetImage,
    /// A plaintext push (in-memory log) delivered to one StreamEvents subscriber.
    #[value(name = "deliver-1")]
    Deliver1,
    /// A plaintext push (in-memory log) delivered to 100 StreamEvents subscribers.
    #[value(name = "deliver-100")]
    Deliver100,
}

impl Scenario {
    /// Every scenario, in budget-file order.
    pub(crate) const ALL: [Scenario; 7] = [
        Scenario::PlaintextPush,
        Scenario::SafePush,
        Scenario::DurablePush,
        Scenario::CreateTicket,
        Scenario::GetImage,
        Scenario::Deliver1,
        Scenario::Deliver100,
    ];

    /// The name in the budget file and on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::PlaintextPush => "plaintext-push",
            Scenario::SafePush => "safe-push",
            Scenario::DurablePush => "durable-push",
            Scenario::CreateTicket => "create-ticket",
            Scenario::GetImage => "get-image",
            Scenario::Deliver1 => "deliver-1",
            Scenario::Deliver100 => "deliver-100",
        }
    }

    /// How many operations the measured run performs: enough that the per-operation
    /// quotient hides rounding, few enough that callgrind finishes in seconds.
    pub(crate) fn ops(self) -> u64 {
        match self {
            Scenario::Deliver100 => 20,
            _ => 100,
        }
    }

    /// StreamEvents subscribers open during the run.
    fn subscribers(self) -> usize {
        match self {
            Scenario::Deliver1 => 1,
            Scenario::Deliver100 => 100,
            _ => 0,
        }
    }
}

/// Parses a `serve` configuration from flags only, as the binary would.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    serve: ServeConfig,
}

/// Runs `scenario`: start, prepare, warm up, `ops` operations, stop.
pub(crate) fn run(scenario: Scenario, ops: u64) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(run_in(scenario, ops))
}

async fn run_in(scenario: Scenario, ops: u64) -> Result<(), String> {
    let data = tempfile::tempdir().map_err(|e| format!("data directory: {e}"))?;
    let data_dir = data.path().join("data");
    let mut args: Vec<String> = [
        "wechat-qr",
        "--grpc-addr=127.0.0.1:0",
        "--http-addr=127.0.0.1:0",
        "--admin-addr=127.0.0.1:0",
        "--simulator-addr=127.0.0.1:0",
    ]
    .map(String::from)
    .into();
    args.push(format!("--data-dir={}", data_dir.display()));
    args.push(
        match scenario {
            Scenario::DurablePush => "--event-log=durable",
            _ => "--event-log=memory",
        }
        .into(),
    );
    if scenario == Scenario::SafePush {
        args.push(format!("--encoding-aes-key={AES_KEY}"));
        args.push("--encrypt-mode=safe".into());
    }
    let config = Flags::try_parse_from(&args)
        .map_err(|e| format!("configuration: {e}"))?
        .serve;
    let settings = config
        .resolve()
        .map_err(|e| format!("configuration: {e}"))?;
    let shutdown = CancellationToken::new();
    let running = app::start(settings, shutdown.clone())
        .await
        .map_err(|e| format!("start: {e}"))?;

    let outcome = match scenario {
        Scenario::PlaintextPush
        | Scenario::SafePush
        | Scenario::DurablePush
        | Scenario::Deliver1
        | Scenario::Deliver100 => pushes(scenario, &running, ops).await,
        Scenario::CreateTicket => create_tickets(&running, ops).await,
        Scenario::GetImage => get_images(&running, ops).await,
    };

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .map_err(|_| "the service did not stop within 30 s".to_owned())?;
    outcome
}

/// Signed pushes, `WARM_UP + scenario.ops()` of them whatever `ops` is, so signing
/// costs every run the same.
fn signed_pushes(scenario: Scenario) -> Vec<(String, Bytes)> {
    let safe = scenario == Scenario::SafePush;
    let signer = Signer {
        token: Secret::new(dev::TOKEN),
        mode: if safe {
            EncryptMode::Safe
        } else {
            EncryptMode::Plaintext
        },
        aes_key: safe.then(|| AES_KEY.parse().expect("a valid EncodingAESKey")),
        app_id: dev::APP_ID.to_owned(),
        account: dev::ACCOUNT.to_owned(),
    };
    let mut seen = std::collections::HashSet::new();
    (0..WARM_UP + scenario.ops())
        .map(|i| {
            let scan = Scan {
                openid: format!("oBudget{i:021}"),
                ticket: TICKET.to_owned(),
                scene: "budget".to_owned(),
                new_follower: false,
            };
            let xml = push::scan_xml(dev::ACCOUNT, &scan, push::now_secs());
            // The replay guard refuses a (timestamp, nonce) pair seen with another body.
            loop {
                let signed = signer.sign(&xml, &scan.openid);
                let nonce = signed
                    .query
                    .split('&')
                    .find(|p| p.starts_with("nonce="))
                    .unwrap_or_default()
                    .to_owned();
                if seen.insert(nonce) {
                    return (
                        format!("{}?{}", webhook::PATH, signed.query),
                        Bytes::from(signed.body),
                    );
                }
            }
        })
        .collect()
}

async fn pushes(scenario: Scenario, running: &Running, ops: u64) -> Result<(), String> {
    let pushes = signed_pushes(scenario);
    let mut streams = Vec::new();
    if scenario.subscribers() > 0 {
        let client = grpc_client(running).await?;
        for _ in 0..scenario.subscribers() {
            // Once the response headers are in, every accepted push reaches the stream.
            let stream = client
                .clone()
                .stream_events(pb::StreamEventsRequest::default())
                .await
                .map_err(|e| format!("StreamEvents: {e}"))?
                .into_inner();
            streams.push(stream);
        }
    }
    let mut sender = webhook_connection(running).await?;
    for (uri, body) in pushes.iter().take((WARM_UP + ops) as usize) {
        let answer = post(&mut sender, running, uri, body.clone()).await?;
        if answer != "success" {
            return Err(format!("the webhook answered {answer:?}, not success"));
        }
        for stream in &mut streams {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Err("a stream ended".into()),
                Err(e) => return Err(format!("a stream failed: {e}")),
            }
        }
    }
    Ok(())
}

async fn webhook_connection(running: &Running) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(running.http_addr)
        .await
        .map_err(|e| format!("connect to the webhook: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP/1 handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    running: &Running,
    uri: &str,
    body: Bytes,
) -> Result<String, String> {
    let request = Request::post(uri)
        .header(hyper::header::HOST, running.http_addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "text/xml")
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("push: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("answer: {e}"))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(format!("the webhook answered {status}: {body}"));
    }
    Ok(body)
}

async fn grpc_client(running: &Running) -> Result<QrServiceClient<Channel>, String> {
    QrServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .map_err(|e| format!("gRPC connect: {e}"))
}

fn ticket_request(i: u64) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        scene: Some(pb::create_ticket_request::Scene::SceneId(i as u32 + 1)),
        expire_seconds: 3_600,
        ..Default::default()
    }
}

async fn create_tickets(running: &Running, ops: u64) -> Result<(), String> {
    let mut client = grpc_client(running).await?;
    // The first call fetches the token; the warm-up makes every measured one a cache hit.
    for i in 0..WARM_UP + ops {
        client
            .create_ticket(ticket_request(i))
            .await
            .map_err(|e| format!("CreateTicket: {e}"))?;
    }
    Ok(())
}

async fn get_images(running: &Running, ops: u64) -> Result<(), String> {
    let mut client = grpc_client(running).await?;
    let ticket = client
        .create_ticket(ticket_request(0))
        .await
        .map_err(|e| format!("CreateTicket: {e}"))?
        .into_inner()
        .ticket;
    // The first call fetches the image; every later one is a cache hit.
    for _ in 0..WARM_UP + ops {
        let image = client
            .get_image(pb::GetImageRequest {
                ticket: ticket.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("GetImage: {e}"))?
            .into_inner()
            .image;
        if image.is_empty() {
            return Err("GetImage answered no bytes".into());
        }
    }
    Ok(())
}
