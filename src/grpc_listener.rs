//! The gRPC listener's own accept loop, so its connections are bounded like the HTTP
//! listeners': every connection is admitted by a [`Registry`] (a cap sized from the
//! descriptor limit), must complete its HTTP/2 handshake — the client preface and its
//! first frame — within a deadline, and is closed once it has had no call or stream for
//! the idle time. A stream is a call in flight, so a `StreamEvents` open for days (its
//! connection kept alive by HTTP/2 pings) is never cut. At the cap the oldest connection
//! still in its handshake, else the oldest without a call, is closed to make room.
//!
//! tonic serves whatever [`Incoming`] yields; the [`Streams`] layer around the services
//! marks a connection busy for each call, found by the peer address tonic puts in every
//! request. Under TLS the preface is encrypted and cannot be watched: the TLS handshake
//! has tonic's own deadline, and the idle time applies from the connection's start.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{
    body::Body,
    codegen::{Service, http},
    transport::server::{Connected, TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;

use crate::{
    config::ConnectionSettings,
    connections::{Admitted, Busy, Registry},
    metrics::Metrics,
};

/// What a client sends first on an HTTP/2 connection (RFC 9113, 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An HTTP/2 frame header: 3 bytes of length, type, flags, stream id.
const FRAME_HEADER: usize = 9;

/// The gRPC connections: the accept loop's registry and who is on which peer address.
#[derive(Debug, Clone)]
pub(crate) struct GrpcConnections {
    registry: Arc<Registry>,
    /// Admitted connections by peer address, for the [`Streams`] layer.
    peers: Arc<Mutex<HashMap<SocketAddr, Arc<Admitted>>>>,
    /// Whether TLS wraps the connections (the preface cannot be seen).
    tls: bool,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
}

/// The connections tonic serves, as they are admitted.
pub(crate) type Incoming = tokio_stream::wrappers::ReceiverStream<Result<Connection, Infallible>>;

impl GrpcConnections {
    /// Connections of a listener capped at `cap`.
    pub(crate) fn new(
        cap: usize,
        settings: &ConnectionSettings,
        tls: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            // No per-address limit: a caller's many processes behind one NAT are all
            // legitimate, and each connection carries thousands of streams.
            registry: Registry::new("grpc", cap, usize::MAX, Some(metrics)),
            peers: Arc::default(),
            tls,
            handshake_timeout: settings.grpc_handshake_timeout,
            idle_timeout: settings.grpc_idle_timeout,
        }
    }

    /// The layer that marks a connection busy while a call is in flight.
    pub(crate) fn layer(&self) -> StreamsLayer {
        StreamsLayer(self.clone())
    }

    /// Accepts on `listener` until `stop`, yielding admitted connections to tonic; the
    /// stream ends when `end` fires (after the streams have drained), so tonic's own
    /// shutdown decides when connections close.
    pub(crate) fn serve(
        self,
        listener: TcpListener,
        stop: CancellationToken,
        end: CancellationToken,
    ) -> Incoming {
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(self.clone().sweep(end.clone()));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of descriptors and the like: back off instead of spinning.
                            tracing::warn!(listener = "grpc", error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = stop.cancelled() => break,
                };
                // TCP_NODELAY: small replies must not wait ~40 ms for the peer's delayed
                // ACK (tonic applies its own default only to listeners it binds itself).
                let _ = stream.set_nodelay(true);
                let Ok(admitted) = self.registry.admit(None, !self.tls) else {
                    continue;
                };
                let admitted = Arc::new(admitted);
                self.peers
                    .lock()
                    .expect("peer map lock")
                    .insert(peer, admitted.clone());
                let connection = Connection {
                    close: admitted.closed(),
                    closed: Box::pin(admitted.closed().cancelled_owned()),
                    stream,
                    peer,
                    preface: (!self.tls).then(Preface::default),
                    admitted,
                    peers: self.peers.clone(),
                };
                if sender.send(Ok(connection)).await.is_err() {
                    break;
                }
            }
            drop(listener);
            end.cancelled().await;
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }

    /// Closes connections past their handshake deadline or idle time, a few times a
    /// deadline, until `end`.
    async fn sweep(self, end: CancellationToken) {
        let shortest = self.idle_timeout.map_or(self.handshake_timeout, |idle| {
            idle.min(self.handshake_timeout)
        });
        let every = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = end.cancelled() => return,
            }
            self.registry
                .sweep(self.handshake_timeout, self.idle_timeout);
        }
    }

    fn busy(&self, peer: SocketAddr) -> Option<Busy> {
        let admitted = self
            .peers
            .lock()
            .expect("peer map lock")
            .get(&peer)?
            .clone();
        Some(admitted.busy())
    }
}

/// How far into the client preface and first frame a connection has read.
#[derive(Debug, Default)]
struct Preface {
    /// Bytes seen so far.
    seen: usize,
    /// The first frame's payload length, read from its header.
    length: usize,
}

impl Preface {
    /// Takes in newly read bytes; true once the preface and the whole first frame are in.
    fn read(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            let at = self.seen;
            // A wrong preface is hyper's to refuse; here only the count matters.
            if (PREFACE.len()..PREFACE.len() + 3).contains(&at) {
                self.length = (self.length << 8) | usize::from(byte);
            }
            self.seen += 1;
            if self.seen >= PREFACE.len() + FRAME_HEADER + self.length {
                return true;
            }
        }
        false
    }
}

/// One admitted gRPC connection: the TCP stream, closed when the registry says so.
pub(crate) struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Arc<Admitted>,
    /// The registry's close of this connection, checked on every read and write.
    close: CancellationToken,
    /// The same close as a future, polled only when the socket waits.
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// `Some` until the HTTP/2 handshake is seen complete (plaintext only).
    preface: Option<Preface>,
    peers: Arc<Mutex<HashMap<SocketAddr, Arc<Admitted>>>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().expect("peer map lock");
        if peers
            .get(&self.peer)
            .is_some_and(|a| Arc::ptr_eq(a, &self.admitted))
        {
            peers.remove(&self.peer);
        }
    }
}

impl Connection {
    /// Refuses IO once the registry closed this connection. The cancellation is an
    /// atomic load on every call; its waker is registered only when the socket itself
    /// has to wait (HTTP/2 always has a read pending, so a close of an idle connection is
    /// still noticed), not on every read and write of a busy connection.
    fn check_closed(&mut self, cx: &mut Context<'_>, pending: bool) -> std::io::Result<()> {
        let closed = if pending {
            self.closed.as_mut().poll(cx).is_ready()
        } else {
            self.close.is_cancelled()
        };
        if closed {
            Err(std::io::ErrorKind::ConnectionAborted.into())
        } else {
            Ok(())
        }
    }

    /// [`check_closed`](Self::check_closed) around one poll of the socket.
    fn guarded<T>(
        &mut self,
        cx: &mut Context<'_>,
        io: impl FnOnce(&mut Self, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        self.check_closed(cx, false)?;
        let polled = io(self, cx);
        if polled.is_pending() {
            self.check_closed(cx, true)?;
        }
        polled
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // HTTP/2 always has a read pending, so this is where a close is noticed.
        let before = buf.filled().len();
        ready!(self.guarded(cx, |this, cx| Pin::new(&mut this.stream).poll_read(cx, buf)))?;
        let this = &mut *self;
        if let Some(preface) = &mut this.preface
            && preface.read(&buf.filled()[before..])
        {
            this.preface = None;
            this.admitted.handshake_done();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.guarded(cx, |this, cx| {
            Pin::new(&mut this.stream).poll_write(cx, buf)
        })
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.guarded(cx, |this, cx| {
            Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
        })
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Connection {
    // The TCP stream's own, so `remote_addr()` and the TLS peer certificates reach the
    // services exactly as with tonic's own listener.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

/// Wraps the gRPC services so each call marks its connection busy.
#[derive(Debug, Clone)]
pub(crate) struct StreamsLayer(GrpcConnections);

impl<S> Layer<S> for StreamsLayer {
    type Service = Streams<S>;

    fn layer(&self, inner: S) -> Streams<S> {
        Streams {
            inner,
            connections: self.0.clone(),
        }
    }
}

/// The services behind [`StreamsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Streams<S> {
    inner: S,
    connections: GrpcConnections,
}

impl<S> Service<http::Request<Body>> for Streams<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let extensions = request.extensions();
        let peer = extensions
            .get::<TcpConnectInfo>()
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .map(TlsConnectInfo::get_ref)
            })
            .and_then(TcpConnectInfo::remote_addr);
        let busy = peer.and_then(|peer| self.connections.busy(peer));
        // The service that was ready is the one called; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(match busy {
                // Busy until the response, a stream's included, has been sent or dropped.
                Some(busy) => response.map(|body| Body::new(Tracked { body, _busy: busy })),
                None => response,
            })
        })
    }
}

/// A response body that keeps its connection busy until it is dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        HttpBody::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> SizeHint {
        HttpBody::size_hint(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_is_the_preface_and_the_first_frame() {
        let mut settings_frame = PREFACE.to_vec();
        settings_frame.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0]);
        settings_frame.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        let mut preface = Preface::default();
        let (head, tail) = settings_frame.split_at(settings_frame.len() - 1);
        for byte in head {
            assert!(!preface.read(&[*byte]));
        }
        assert!(preface.read(tail));
    }
}
