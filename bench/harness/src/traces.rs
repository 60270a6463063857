//! What exporting traces costs (issue 25): CreateTicket calls/s and p50 through a service
//! exporting every span over OTLP (http/protobuf, batched as deployed) to a sink in this
//! process, next to the same calls through a service with traces off, in the same run.
//! Each service runs on its own embedded simulator, so both pay the same upstream call.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wechat_qr::pb;

use crate::{
    Outcome, Result, Scale, grpc,
    processes::Service,
    report::{self, Row},
    rpc_load::{self, Call},
};

/// Lifetime of the minted temporary codes.
const EXPIRE_SECONDS: u32 = 3_600;

/// An OTLP/HTTP sink on loopback: answers every export 200 and counts the bytes, so the
/// run can tell that spans did leave the service. Returns its endpoint.
async fn sink(received: Arc<AtomicU64>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = received.clone();
            let serve = service_fn(move |request: Request<Incoming>| {
                let received = received.clone();
                async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    received.fetch_add(body.len() as u64, Ordering::Relaxed);
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), serve),
            );
        }
    });
    Ok(format!("http://{addr}"))
}

/// CreateTicket calls, a distinct scene each, through the service at `grpc_addr`.
async fn calls(service: &Service) -> Result<Call> {
    let client = grpc::connect(service.grpc_addr).await?;
    let request = |i: u64| pb::CreateTicketRequest {
        scene: Some(pb::create_ticket_request::Scene::SceneId(
            (i % u64::from(u32::MAX)) as u32 + 1,
        )),
        expire_seconds: EXPIRE_SECONDS,
        ..Default::default()
    };
    // Warm the token cache: every measured call finds a valid access_token.
    client.clone().create_ticket(request(0)).await?;
    Ok(Arc::new(move |i| {
        let mut client = client.clone();
        Box::pin(async move {
            let minted = client.create_ticket(request(i)).await?.into_inner();
            if minted.ticket.is_empty() {
                return Err("CreateTicket answered no ticket".into());
            }
            Ok(())
        })
    }))
}

/// Runs both services.
pub(crate) async fn run(scale: &Scale) -> Result<Outcome> {
    let received = Arc::new(AtomicU64::new(0));
    let endpoint = sink(received.clone()).await?;
    let traced = Service::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        // Exports every second rather than every 5: more often than deployed, not less.
        ("OTEL_BSP_SCHEDULE_DELAY", "1000"),
    ])
    .await?;
    let plain = Service::start(&[("OTEL_SDK_DISABLED", "true")]).await?;
    let on = calls(&traced).await?;
    let off = calls(&plain).await?;

    let measured =
        rpc_load::best_of(&[&on, &off], scale.rounds, scale.concurrency, scale.window).await?;
    let (on, off) = (&measured[0], &measured[1]);
    // The last batch leaves within a second of the last call.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let exported = received.load(Ordering::Relaxed);
    if exported == 0 {
        return Err("traces on, yet nothing reached the OTLP sink".into());
    }
    let p50 = |m: &rpc_load::Measured| m.latency.quantile(0.5).unwrap_or(Duration::ZERO);
    let mut latency = Row::plain(
        "CreateTicket, traces exported over OTLP: p50",
        report::duration(p50(on)),
    );
    latency.baseline = format!("{} (traces off)", report::duration(p50(off)));
    latency.ratio = report::times(p50(on).as_secs_f64() / p50(off).as_secs_f64().max(1e-9));
    Ok(Outcome {
        rows: vec![
            Row::throughput(
                format!(
                    "CreateTicket, traces exported over OTLP: calls/s ({} in flight)",
                    scale.concurrency
                ),
                on.rate(),
                "traces off",
                off.rate(),
                None,
            ),
            latency,
        ],
        notes: vec![format!(
            "traces: {} of OTLP/HTTP protobuf reached the sink",
            report::bytes(exported as f64)
        )],
    })
}
