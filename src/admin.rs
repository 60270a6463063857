//! The admin listener: `GET /metrics` (Prometheus text) and `GET /healthz` for operators
//! and scrapers, on an address of its own (`WECHAT_QR_ADMIN_ADDR`, loopback by default),
//! as linkerd's admin server does. The webhook listener faces the internet and serves
//! only WeChat's pushes; what the service counts about itself stays off it.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, body::Incoming};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    http_server::{self, HttpResponse, text},
    metrics::Metrics,
};

/// Connections the admin listener holds open at once: scrapers and probes, a handful.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    http_server::serve_capped(
        "admin",
        listener,
        MAX_ADMIN_CONNECTIONS,
        move |request| {
            let metrics = metrics.clone();
            async move { Ok(route(&request, &metrics)) }
        },
        shutdown,
    )
    .await;
}

fn route(request: &Request<Incoming>, metrics: &Metrics) -> HttpResponse {
    match (request.method(), request.uri().path()) {
        // Liveness: the process answers. Readiness (the event log's disk) is gRPC health's
        // NOT_SERVING and the `event_log_writable` gauge.
        (&Method::GET, "/healthz") => text(200, "ok"),
        (&Method::GET, "/metrics") => Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(metrics.render())))
            .expect("static response parts are valid"),
        _ => text(404, "not found"),
    }
}
