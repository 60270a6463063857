//! Genuine pushes while others hold the webhook (issue 27): the p99 of pushes sent one
//! after another from 127.0.0.2, first on a quiet service, then while 2,000 connections
//! from 127.0.0.1 trickle header bytes (one byte every 200 ms each, reconnecting when the
//! service closes them). The baseline is the quiet run of the same process in the same
//! run; the target is a ratio of at most 2.
//!
//! The pushes go over fresh connections (no keep-alive), as a push from another WeChat
//! server would, so each one meets the accept loop and its caps.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Outcome, Result, Scale,
    histogram::Histogram,
    processes::Service,
    pushes::PushFactory,
    report::{self, Row},
};

/// Where genuine pushes come from.
const GENUINE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Where the slow connections come from.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The target: p99 under attack at most this many times the quiet p99.
const TARGET_RATIO: f64 = 2.0;

/// Runs the scenario: quiet p99, then p99 under the slow connections.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let (slow, pushes) = if scale.rounds > 1 {
        (2_000, 500)
    } else {
        (200, 50)
    };
    let service = Service::start(&[]).await?;
    let factory = PushFactory::plaintext();
    let quiet = genuine_p99(&factory, service.webhook_addr, pushes, 0).await?;
    let stop = CancellationToken::new();
    let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..slow {
        tokio::spawn(trickle(service.webhook_addr, stop.clone(), held.clone()));
    }
    // Let the slow connections pile up before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = held.load(std::sync::atomic::Ordering::Relaxed);
    let attacked = genuine_p99(&factory, service.webhook_addr, pushes, pushes).await;
    stop.cancel();
    let attacked = attacked?;
    let ratio = attacked.as_secs_f64() / quiet.as_secs_f64().max(1e-9);
    let mut row = Row::plain(
        format!(
            "genuine push p99 (from 127.0.0.2, fresh connection each) with {} slow connections from 127.0.0.1",
            report::thousands(slow as u64)
        ),
        report::duration(attacked),
    );
    row.baseline = format!(
        "{} (same service, no slow connections)",
        report::duration(quiet)
    );
    row.ratio = report::times(ratio);
    row = row.with_target(format!("ratio ≤ {TARGET_RATIO}"), ratio <= TARGET_RATIO);
    Ok(Outcome {
        rows: vec![row],
        notes: vec![format!(
            "slow-clients: {open} of {slow} slow connections were open when the measured pushes \
             began (the rest refused past the per-address limit and reconnecting)"
        )],
    })
}

/// The p99 of `count` pushes sent one after another from [`GENUINE`], each on a fresh
/// connection; any answer but `200 success` fails the run.
async fn genuine_p99(
    factory: &PushFactory,
    webhook: SocketAddr,
    count: u64,
    from: u64,
) -> Result<Duration> {
    let histogram = Histogram::new();
    for index in from..from + count {
        let push = factory.push(index);
        let started = Instant::now();
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(GENUINE, 0))?;
        let stream = socket.connect(webhook).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::post(push.uri)
            .header("host", webhook.to_string())
            .header("connection", "close")
            .body(Full::<Bytes>::new(push.body))?;
        let answer = sender.send_request(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        if status != 200 || body.as_ref() != b"success" {
            return Err(format!(
                "a genuine push was answered {status} {:?}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        histogram.record(started.elapsed());
    }
    histogram
        .quantile(0.99)
        .ok_or_else(|| "no pushes measured".into())
}

/// One slow client: sends a request line, then a header byte every 200 ms, and
/// reconnects whenever the service closes it, until `stop`.
async fn trickle(
    webhook: SocketAddr,
    stop: CancellationToken,
    held: Arc<std::sync::atomic::AtomicUsize>,
) {
    while !stop.is_cancelled() {
        let Ok(socket) = TcpSocket::new_v4() else {
            return;
        };
        if socket.bind(SocketAddr::new(ATTACKER, 0)).is_err() {
            return;
        }
        let Ok(mut stream) = socket.connect(webhook).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if stream.write_all(b"POST /wechat HTTP/1.1\r\n").await.is_ok() {
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { break },
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stream.write_all(b"X").await.is_err() { break }
                    }
                    () = stop.cancelled() => return,
                }
            }
        }
        held.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // A refused client comes back, but not in a tight loop.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
