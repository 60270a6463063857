//! The accept loop shared by the webhook, the admin listener and the simulator: HTTP/1.1
//! on hyper, a cap on open connections taken before accepting (as mini-redis does), a
//! header read timeout against idle or slow clients, and graceful shutdown that stops
//! accepting and lets in-flight requests finish.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long in-flight requests may take to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections a listener without a configured cap (the simulator) holds open at once.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

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

/// Serves `handler` on `listener` with [`DEFAULT_MAX_CONNECTIONS`]; see [`serve_capped`].
pub(crate) async fn serve<H, F, B>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HandlerResult<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_capped(name, listener, DEFAULT_MAX_CONNECTIONS, handler, shutdown).await;
}

/// Serves `handler` on `listener` until `shutdown`, then drains in-flight requests.
///
/// At most `max_connections` connections are open at once. The permit is taken *before*
/// `accept`, so past the cap a flood waits in the kernel's listen backlog (then in the
/// clients' SYN retries) instead of costing a file descriptor each: the process keeps
/// the descriptors its other listeners, the event log and the upstream client need.
/// Idle connections give their permit back within [`HEADER_READ_TIMEOUT`].
pub(crate) async fn serve_capped<H, F, B>(
    name: &'static str,
    listener: TcpListener,
    max_connections: usize,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HandlerResult<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    // Logged once per episode of saturation, not once per waiting connection.
    let mut saturated = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                saturated = false;
                permit
            }
            Err(_) => {
                if !saturated {
                    saturated = true;
                    tracing::warn!(
                        listener = name,
                        max_connections,
                        "connection cap reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => {
                        permit.expect("the semaphore is never closed")
                    }
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
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
        // Answers are small; do not let them wait for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            handler(request)
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(listener = name, error = %e, "connection ended with an error");
            }
            drop(permit);
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
