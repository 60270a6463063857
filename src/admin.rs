//! The admin listener: `GET /metrics` (Prometheus text) and `GET /healthz` for operators
//! and scrapers, on an address of its own (`WECHAT_QR_ADMIN_ADDR`, loopback by default),
//! as linkerd's admin server does. The webhook listener faces the internet and serves
//! only WeChat's pushes; what the service counts about itself stays off it. The web
//! console (`/console/` and its gRPC-Web calls, see [`crate::console`]) lives here too, so
//! it is exactly as exposed as the admin listener.
//!
//! `/metrics` answers only a `Host` that is an IP address or `localhost`, the console's
//! rule: a page another site serves cannot read it through DNS rebinding. A scraper
//! addresses the listener by IP (Prometheus's usual service discovery does) or sends
//! such a `Host`. `/healthz` says only "ok" and stays open to any probe.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    console::{self, Body, Console},
    http_server,
    metrics::Metrics,
};

/// Serves `/metrics`, `/healthz` and the console on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    console: Console,
    limits: http_server::Limits,
    shutdown: CancellationToken,
) {
    let console = Arc::new(console);
    http_server::serve_capped(
        "admin",
        listener,
        limits,
        move |request| {
            let metrics = metrics.clone();
            let console = console.clone();
            async move { Ok(route(request, &metrics, &console).await) }
        },
        shutdown,
    )
    .await;
}

async fn route(request: Request<Incoming>, metrics: &Metrics, console: &Console) -> Response<Body> {
    if Console::owns(request.uri().path()) {
        return console.handle(request).await;
    }
    match (request.method(), request.uri().path()) {
        // Liveness: the process answers. Readiness (the event log's disk) is gRPC health's
        // NOT_SERVING and the `event_log_writable` gauge.
        (&Method::GET, "/healthz") => console::text(StatusCode::OK, "ok"),
        (&Method::GET, "/metrics") if !console::local_host(&request) => console::text(
            StatusCode::FORBIDDEN,
            "/metrics answers only to an IP address or localhost in the Host header",
        ),
        (&Method::GET, "/metrics") => Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(console::full(Bytes::from(metrics.render())))
            .expect("static response parts are valid"),
        _ => console::text(StatusCode::NOT_FOUND, "not found"),
    }
}
