//! StreamEvents on the wire, encoded once per event instead of once per subscriber.
//!
//! tonic's generated server encodes every response message for every stream. For a scan
//! fanned out to thousands of subscribers that means thousands of identical string copies
//! and protobuf encodings. [`QrServiceRoutes`] therefore answers `StreamEvents` itself,
//! with a codec whose messages are already-encoded [`Bytes`] — each event's
//! `StreamEventsResponse`, encoded by the first subscriber that sends it and cached in the
//! [`Delivery`] the fan-out hub gives every live subscriber of that event — and hands every other method to the generated `QrServiceServer`. The bytes
//! on the wire are exactly what the generated code would send, and both paths enforce the
//! same [`MessageLimits`].

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{BufMut, Bytes};
use prost::Message;
use tokio_stream::{Stream, StreamExt};
use tonic::{
    Request, Response, Status,
    body::Body,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{Service, http},
    server::{Grpc, NamedService, ServerStreamingService},
};

use super::{QrService, to_response};
use crate::{config::MessageLimits, events::Delivery, pb};

/// The full gRPC path of StreamEvents.
const STREAM_EVENTS: &str = "/wechat.qr.v1.QrService/StreamEvents";

/// A response stream of pre-encoded `StreamEventsResponse`s.
pub(crate) type WireStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// The wire form of a delivery: encoded on first use, shared afterwards.
pub(crate) fn encoded(delivery: &Delivery) -> Bytes {
    delivery
        .wire
        .get_or_init(|| Bytes::from(to_response(delivery).encode_to_vec()))
        .clone()
}

/// Decodes `StreamEventsRequest`s; "encodes" responses that already are bytes.
#[derive(Debug, Default, Clone, Copy)]
struct WireCodec;

impl Codec for WireCodec {
    type Encode = Bytes;
    type Decode = pb::StreamEventsRequest;
    type Encoder = WireEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> WireEncoder {
        WireEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

#[derive(Debug)]
struct WireEncoder;

impl Encoder for WireEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        // Events are a few hundred bytes; tonic's 8 KiB default buffer per stream would be
        // most of a subscriber's memory. It still grows when a burst is pending.
        BufferSettings::new(1024, 32 * 1024)
    }
}

#[derive(Debug)]
struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = pb::StreamEventsRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        pb::StreamEventsRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))
    }
}

struct StreamEventsWire(QrService);

impl ServerStreamingService<pb::StreamEventsRequest> for StreamEventsWire {
    type Response = Bytes;
    type ResponseStream = WireStream;
    type Future = Pin<Box<dyn Future<Output = Result<Response<WireStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<pb::StreamEventsRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let deliveries = service.observed_stream(request).await?;
            let stream: WireStream =
                Box::pin(deliveries.map(|item| item.map(|delivery| encoded(&delivery))));
            Ok(Response::new(stream))
        })
    }
}

/// `wechat.qr.v1.QrService`: StreamEvents on the wire path, the rest generated.
#[derive(Debug, Clone)]
pub struct QrServiceRoutes {
    service: QrService,
    generated: pb::qr_service_server::QrServiceServer<QrService>,
    /// Applied to the hand-written StreamEvents path as to the generated one: a request
    /// over the limit is refused (OUT_OF_RANGE) from its length prefix, before its body
    /// is buffered.
    limits: MessageLimits,
}

impl QrServiceRoutes {
    /// Routes for `service`, refusing messages beyond `limits`.
    pub fn new(service: QrService, limits: MessageLimits) -> Self {
        Self {
            generated: pb::qr_service_server::QrServiceServer::new(service.clone())
                .max_decoding_message_size(limits.max_request_bytes)
                .max_encoding_message_size(limits.max_response_bytes),
            service,
            limits,
        }
    }
}

impl NamedService for QrServiceRoutes {
    const NAME: &'static str = "wechat.qr.v1.QrService";
}

impl Service<http::Request<Body>> for QrServiceRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == STREAM_EVENTS {
            let service = StreamEventsWire(self.service.clone());
            let mut grpc = Grpc::new(WireCodec).apply_max_message_size_config(
                Some(self.limits.max_request_bytes),
                Some(self.limits.max_response_bytes),
            );
            Box::pin(async move { Ok(grpc.server_streaming(service, request).await) })
        } else {
            self.generated.call(request)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::*;
    use crate::events::{Cursor, Event, EventKind};

    #[test]
    fn encodes_once_and_exactly_as_the_typed_path() {
        let delivery = Delivery {
            cursor: Cursor { epoch: 1, seq: 2 },
            event: Arc::new(Event {
                kind: EventKind::Scan,
                openid: "o".into(),
                scene: "7".into(),
                ticket: "T".into(),
                account: "gh".into(),
                app_id: "wx".into(),
                create_time: 123,
                received_time: SystemTime::UNIX_EPOCH,
                new_follower: false,
            }),
            wire: Arc::default(),
        };
        let first = encoded(&delivery);
        assert_eq!(first, to_response(&delivery).encode_to_vec());
        let again = encoded(&delivery.clone());
        assert_eq!(first.as_ptr(), again.as_ptr(), "shared, not re-encoded");
    }
}
