//! The baseline servers, run by this same binary in a child process
//! (`--serve-baseline KIND`), so each is a separate process exactly like the service it
//! is compared with, on the same default multi-threaded tokio runtime:
//!
//! - `hyper`: a bare hyper HTTP/1.1 server that reads the body and answers `success` —
//!   the floor under any webhook: no signature, no XML, no log, no subscriber.
//! - `tonic-echo`: a bare tonic server whose `GetImage` returns a fixed buffer of
//!   `--image-bytes` bytes — the floor under a cached `GetImage`.
//!
//! Each prints `addr=IP:PORT` once listening and exits when its stdin closes, so a
//! harness that dies cannot leave one behind.

use std::{convert::Infallible, io::Write, pin::Pin};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, header::CONTENT_TYPE, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tonic::{Status, transport::server::TcpIncoming};
use wechat_qr::pb::{self, qr_service_server::QrServiceServer};

use crate::Result;

/// Which baseline server to run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum BaselineKind {
    /// The bare hyper `success` server.
    Hyper,
    /// The bare tonic `GetImage` echo.
    TonicEcho,
}

impl BaselineKind {
    /// The name `--serve-baseline` takes.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Self::Hyper => "hyper",
            Self::TonicEcho => "tonic-echo",
        }
    }
}

/// Serves `kind` until stdin closes.
pub(crate) async fn serve(kind: BaselineKind, image_bytes: usize) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("addr={}", listener.local_addr()?);
    std::io::stdout().flush()?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    match kind {
        BaselineKind::Hyper => serve_hyper(listener).await,
        BaselineKind::TonicEcho => {
            let echo = Echo {
                image: Bytes::from(vec![0xA5; image_bytes]),
            };
            // Small answers go out at once (TCP_NODELAY), as tonic does for listeners it
            // binds itself; Nagle's algorithm would hold each answer's last segment until
            // the client's delayed ACK (40 ms on Linux).
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .add_service(QrServiceServer::new(echo))
                .serve_with_incoming(incoming)
                .await?;
            Ok(())
        }
    }
}

async fn serve_hyper(listener: TcpListener) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        // TCP_NODELAY, as the service's webhook sets it.
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                let _ = request.into_body().collect().await;
                let response = Response::builder()
                    .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(Full::new(Bytes::from_static(b"success")))
                    .expect("static response parts are valid");
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `GetImage` answering the same bytes to every request.
struct Echo {
    /// Shared, like a cached image: no copy per call.
    image: Bytes,
}

type NoStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::qr_service_server::QrService for Echo {
    async fn create_ticket(
        &self,
        _request: tonic::Request<pb::CreateTicketRequest>,
    ) -> Result<tonic::Response<pb::CreateTicketResponse>, Status> {
        Err(Status::unimplemented(
            "the echo baseline only answers GetImage",
        ))
    }

    async fn get_image(
        &self,
        _request: tonic::Request<pb::GetImageRequest>,
    ) -> Result<tonic::Response<pb::GetImageResponse>, Status> {
        Ok(tonic::Response::new(pb::GetImageResponse {
            image: self.image.clone(),
            content_type: "image/jpeg".to_owned(),
            ..Default::default()
        }))
    }

    type StreamEventsStream = NoStream;

    async fn stream_events(
        &self,
        _request: tonic::Request<pb::StreamEventsRequest>,
    ) -> Result<tonic::Response<NoStream>, Status> {
        Err(Status::unimplemented(
            "the echo baseline only answers GetImage",
        ))
    }
}
