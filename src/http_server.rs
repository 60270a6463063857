//! The accept loop shared by the webhook, the admin listener and the simulator: HTTP/1.1
//! on hyper, every connection registered with the listener's [`Registry`] (a cap, a
//! per-address limit, and at the cap the oldest idle or still-reading connection closed
//! to make room, so a newcomer never waits behind clients doing nothing), a deadline for
//! each request's head, and graceful shutdown that stops accepting and lets in-flight
//! requests finish.

use std::{
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response,
    body::{Body, Frame, Incoming, SizeHint},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    connections::{Busy, Registry},
    metrics::Metrics,
};

/// How long in-flight requests may take to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections a listener without a configured cap (the simulator) holds open at once.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The request-head deadline of a listener without a configured one (the simulator).
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A response with a fully buffered body: every answer here is small.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// Tells the accept loop to drop the connection without answering (the simulator's
/// "connection reset" fault).
#[derive(Debug, thiserror::Error)]
#[error("connection aborted on purpose")]
pub(crate) struct AbortConnection;

/// What a handler returns: a buffered response by default; the admin listener's
/// console streams gRPC-Web responses, so the body type is the handler's choice.
pub(crate) type HandlerResult<B = Full<Bytes>> = Result<Response<B>, AbortConnection>;

/// A plain-text response.
pub(crate) fn text(status: u16, body: impl Into<Bytes>) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

/// What bounds one HTTP listener's connections.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Connections open at once.
    pub(crate) cap: usize,
    /// Connections one client address may hold.
    pub(crate) per_address: usize,
    /// Proxies whose connections count against the address they forward for.
    pub(crate) trusted_proxies: Vec<IpAddr>,
    /// Deadline for a request's head, from the connection's start or its last answer.
    pub(crate) header_read_timeout: Duration,
    /// Where the closed and open connections are counted.
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl Limits {
    /// A cap of `cap` and no per-address limit beyond it (the simulator: every client is
    /// the service itself, on loopback).
    pub(crate) fn cap(cap: usize) -> Self {
        Self {
            cap,
            per_address: usize::MAX,
            trusted_proxies: Vec::new(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            metrics: None,
        }
    }
}

/// Serves `handler` on `listener` with [`DEFAULT_MAX_CONNECTIONS`]; see [`serve_capped`].
pub(crate) async fn serve<H, F, B>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HandlerResult<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_capped(
        name,
        listener,
        Limits::cap(DEFAULT_MAX_CONNECTIONS),
        handler,
        shutdown,
    )
    .await;
}

/// Serves `handler` on `listener` until `shutdown`, then drains in-flight requests.
///
/// Every accepted connection is admitted by the listener's [`Registry`] or closed at
/// once: past the per-address limit, or at the cap with every connection busy. At the
/// cap the oldest connection that is idle or still reading its request head is closed
/// to make room. The caps are sized from the descriptor limit
/// ([`crate::descriptors::ConnectionPlan`]), so accepting never runs the process out of
/// descriptors; should it happen anyway, the loop backs off instead of spinning.
pub(crate) async fn serve_capped<H, F, B>(
    name: &'static str,
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HandlerResult<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let registry = Registry::new(name, limits.cap, limits.per_address, limits.metrics.clone());
    let trusted = Arc::new(limits.trusted_proxies.clone());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let proxy = trusted.contains(&peer.ip());
        // Refused: dropping the stream closes it at once.
        let Ok(admitted) = registry.admit((!proxy).then_some(peer.ip()), false) else {
            continue;
        };
        let closed = admitted.closed();
        let admitted = Arc::new(admitted);
        // Answers are small; do not let them wait for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let handler = handler.clone();
            let admitted = admitted.clone();
            async move {
                let busy = admitted.busy();
                if proxy {
                    // A proxy's connection counts against the client it forwards for; one
                    // over its share is closed without an answer.
                    if let Some(client) = forwarded_for(&request) {
                        admitted.attribute(client).map_err(|_| AbortConnection)?;
                    }
                }
                let response = handler(request).await?;
                // The connection stays busy until the whole answer is written (the
                // console's event streams last as long as the page watches).
                Ok::<_, AbortConnection>(response.map(|body| Tracked { body, _busy: busy }))
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                },
                // Closed to make room: dropping the connection closes its socket.
                () = closed.cancelled() => {}
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!(listener = name, "in-flight requests did not finish in time");
        }
    }
}

/// The client a trusted proxy forwards for: `X-Real-IP`, else the last `X-Forwarded-For`
/// entry (the one the proxy itself appended; earlier entries are the client's word).
fn forwarded_for(request: &Request<Incoming>) -> Option<IpAddr> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ip) = header("x-real-ip").and_then(|v| v.parse().ok()) {
        return Some(ip);
    }
    header("x-forwarded-for")?
        .rsplit(',')
        .next()
        .and_then(|last| last.trim().parse().ok())
}

/// A response body that keeps its connection marked busy until it is dropped.
struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
