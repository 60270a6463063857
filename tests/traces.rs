//! Issue 25, traces: the real binary exports its spans over OTLP to a receiver built here
//! from OpenTelemetry's own protobufs (`opentelemetry-proto`, served by tonic on a
//! loopback port), and a caller's W3C `traceparent` continues through the service — into
//! its gRPC and webhook spans and out on the requests it makes to WeChat (the simulator,
//! behind a recording proxy) and to an account's existing handler. Without an OTLP
//! endpoint nothing is read or sent.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{TestService, binary::Binary, now, scan_xml, signed_query};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::{Span, span::SpanKind},
};
use tokio::net::TcpListener;
use wechat_qr::{config::dev, pb};

/// One exported span and the service that sent it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

impl Exported {
    fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    fn parent_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }

    fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|value| match value {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                other => format!("{other:?}"),
            })
    }
}

/// An OTLP/gRPC trace receiver on loopback, keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(Exported {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Serves on a loopback port; returns its endpoint URL.
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    /// The spans of `trace_id` once `wanted` of their names are all there (10 s).
    async fn trace(&self, trace_id: &str, wanted: &[&str]) -> Vec<Exported> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let trace: Vec<Exported> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id() == trace_id)
                .cloned()
                .collect();
            if wanted
                .iter()
                .all(|name| trace.iter().any(|s| s.span.name == *name))
            {
                return trace;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} lacks some of {wanted:?}; it has {:?}",
                trace.iter().map(|s| &s.span.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What a recording HTTP hop saw: each request's path and `traceparent`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An HTTP server on loopback that records each request's path and `traceparent`, then
/// relays it to `target` (and the answer back) — or, without a target, answers
/// `success` as a silent existing handler does.
async fn recording_hop(target: Option<String>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (seen, http, target) = (seen.clone(), http.clone(), target.clone());
                let serve = service_fn(move |request: Request<Incoming>| {
                    let (seen, http, target) = (seen.clone(), http.clone(), target.clone());
                    async move {
                        let path_and_query = request
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_default();
                        let traceparent = request
                            .headers()
                            .get("traceparent")
                            .map(|v| v.to_str().unwrap().to_owned());
                        seen.lock()
                            .unwrap()
                            .push((request.uri().path().to_owned(), traceparent));
                        let Some(target) = target else {
                            return Ok::<_, hyper::Error>(Response::new(Full::new(
                                Bytes::from_static(b"success"),
                            )));
                        };
                        let method = request.method().clone();
                        let content_type = request.headers().get("content-type").cloned();
                        let body = request.into_body().collect().await?.to_bytes();
                        let mut relayed = http
                            .request(method, format!("{target}{path_and_query}"))
                            .body(body);
                        if let Some(content_type) = content_type {
                            relayed = relayed.header("content-type", content_type);
                        }
                        let answer = relayed.send().await.unwrap();
                        let mut response = Response::builder().status(answer.status());
                        if let Some(content_type) = answer.headers().get("content-type") {
                            response = response.header("content-type", content_type);
                        }
                        Ok(response
                            .body(Full::new(answer.bytes().await.unwrap()))
                            .unwrap())
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), serve),
                );
            }
        });
    }
    (format!("http://{addr}"), seen)
}

/// The binary on real credentials against `upstream`, in a data directory of its own,
/// with `env` (OTEL_* from the test's own environment removed).
async fn start_binary(upstream: &str, data: &std::path::Path, env: &[(&str, &str)]) -> Binary {
    let mut command = Binary::command();
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
        .env("WECHAT_QR_GRPC_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_HTTP_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_ADMIN_ADDR", "127.0.0.1:0")
        .env("WECHAT_QR_DATA_DIR", data)
        .env("WECHAT_APP_ID", dev::APP_ID)
        .env("WECHAT_APP_SECRET", dev::APP_SECRET)
        .env("WECHAT_TOKEN", dev::TOKEN)
        .env("WECHAT_API_BASE", upstream)
        .env("WECHAT_MP_BASE", upstream)
        .envs(env.iter().copied());
    Binary::spawn(command).await
}

/// A fresh W3C trace context: (traceparent, trace id, parent span id).
fn caller_context() -> (String, String, String) {
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let parent_id = format!("{:016x}", rand::random::<u64>() | 1);
    (format!("00-{trace_id}-{parent_id}-01"), trace_id, parent_id)
}

/// Every span of `trace` hangs from `root` (its parent is in the trace), and `root`
/// from the caller's span.
fn assert_one_tree(trace: &[Exported], root: &Exported, caller_span: &str) {
    assert_eq!(
        root.parent_id(),
        caller_span,
        "the root is the caller's child"
    );
    let ids: Vec<String> = trace.iter().map(Exported::span_id).collect();
    for span in trace {
        if span.span_id() != root.span_id() {
            assert!(
                ids.contains(&span.parent_id()),
                "{} hangs from a span outside the trace",
                span.span.name
            );
        }
    }
}

/// Whether `span` descends from `ancestor` within `trace`.
fn descends(trace: &[Exported], span: &Exported, ancestor: &Exported) -> bool {
    let by_id: HashMap<String, &Exported> = trace.iter().map(|s| (s.span_id(), s)).collect();
    let mut at = span;
    while let Some(parent) = by_id.get(&at.parent_id()) {
        if parent.span_id() == ancestor.span_id() {
            return true;
        }
        at = parent;
    }
    false
}

/// No attribute of any exported span holds `needle`.
fn assert_nowhere(spans: &[Exported], needle: &str, what: &str) {
    for span in spans {
        for kv in &span.span.attributes {
            let value = format!("{:?}", kv.value);
            assert!(
                !value.contains(needle),
                "{what} in attribute {} of {}",
                kv.key,
                span.span.name
            );
        }
        assert!(!span.span.name.contains(needle), "{what} in a span name");
    }
}

fn span<'a>(trace: &'a [Exported], name: &str) -> &'a Exported {
    trace
        .iter()
        .find(|s| s.span.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

#[tokio::test]
async fn a_callers_trace_continues_through_create_ticket_to_wechat() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let wechat = TestService::start().await;
    let (upstream, seen) = recording_hop(Some(wechat.simulator_url())).await;
    let data = tempfile::tempdir().unwrap();
    let binary = start_binary(
        &upstream,
        data.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    binary.logged("exporting traces over OTLP").await;

    let (traceparent, trace_id, caller_span) = caller_context();
    let mut request = tonic::Request::new(pb::CreateTicketRequest {
        expire_seconds: 600,
        scene: Some(pb::create_ticket_request::Scene::SceneId(42)),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let ticket = binary
        .client()
        .await
        .create_ticket(request)
        .await
        .unwrap()
        .into_inner()
        .ticket;

    let trace = receiver
        .trace(
            &trace_id,
            &[
                "wechat.qr.v1.QrService/CreateTicket",
                "wechat stable_token",
                "stable_token attempt 1",
                "wechat qrcode/create",
                "qrcode/create attempt 1",
            ],
        )
        .await;
    let root = span(&trace, "wechat.qr.v1.QrService/CreateTicket");
    assert_eq!(root.service, "wechat-qr");
    assert_eq!(root.span.kind, SpanKind::Server as i32);
    assert_eq!(
        root.attribute("rpc.method").as_deref(),
        Some("CreateTicket")
    );
    assert_eq!(root.attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_one_tree(&trace, root, &caller_span);
    let call = span(&trace, "wechat qrcode/create");
    let attempt = span(&trace, "qrcode/create attempt 1");
    assert!(descends(&trace, call, root));
    assert_eq!(
        attempt.parent_id(),
        call.span_id(),
        "an attempt is the call's child"
    );
    assert_eq!(attempt.span.kind, SpanKind::Client as i32);
    assert_eq!(attempt.attribute("wechat.result").as_deref(), Some("0"));
    assert!(descends(
        &trace,
        span(&trace, "stable_token attempt 1"),
        root
    ));

    // What reached WeChat carried the attempt's context: the same trace, onward.
    let seen = seen.lock().unwrap().clone();
    let sent = |path: &str| {
        seen.iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, traceparent)| traceparent.clone())
            .unwrap_or_else(|| panic!("{path} reached WeChat without a traceparent: {seen:?}"))
    };
    assert_eq!(
        sent("/cgi-bin/qrcode/create"),
        format!("00-{trace_id}-{}-01", attempt.span_id())
    );
    assert!(sent("/cgi-bin/stable_token").starts_with(&format!("00-{trace_id}-")));

    // Nothing secret or personal in what was exported.
    let all = receiver.spans.lock().unwrap().clone();
    assert_nowhere(&all, dev::APP_SECRET, "the AppSecret");
    assert_nowhere(&all, &ticket, "the ticket");
    binary.stop().await;
}

#[tokio::test]
async fn a_push_is_traced_through_verify_decode_append_sync_and_the_forward() {
    // Over http/protobuf this time, the other standard transport.
    let receiver = Receiver::default();
    let http_endpoint = HttpReceiver(receiver.clone()).start().await;
    let wechat = TestService::start().await;
    let (handler, handled) = recording_hop(None).await;
    let data = tempfile::tempdir().unwrap();
    let binary = start_binary(
        &wechat.simulator_url(),
        data.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &http_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("WECHAT_QR_FORWARD_URL", &handler),
            ("WECHAT_QR_FORWARD_SCANS", "true"),
        ],
    )
    .await;

    let (traceparent, trace_id, caller_span) = caller_context();
    let openid = "o-traced-user";
    let ticket = "gQtraced-ticket";
    let xml = scan_xml("SCAN", openid, "7", ticket, now());
    let timestamp = now().to_string();
    let query = signed_query(dev::TOKEN, &timestamp, "traced-nonce");
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}?{query}", binary.webhook_url))
        .header("traceparent", &traceparent)
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "success");

    let trace = receiver
        .trace(
            &trace_id,
            &[
                "webhook POST",
                "webhook.verify",
                "webhook.decode",
                "webhook.append",
                "webhook.sync",
                "webhook.answer",
                "forward to existing handler",
            ],
        )
        .await;
    let root = span(&trace, "webhook POST");
    assert_eq!(root.span.kind, SpanKind::Server as i32);
    assert_eq!(
        root.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_one_tree(&trace, root, &caller_span);
    let forward = span(&trace, "forward to existing handler");
    assert_eq!(forward.span.kind, SpanKind::Client as i32);
    assert!(descends(&trace, forward, span(&trace, "webhook.answer")));
    let handled = handled.lock().unwrap().clone();
    assert_eq!(
        handled.first().and_then(|(_, t)| t.clone()),
        Some(format!("00-{trace_id}-{}-01", forward.span_id())),
        "the forwarded push carries the forward's context"
    );

    let all = receiver.spans.lock().unwrap().clone();
    assert_nowhere(&all, openid, "the openid");
    assert_nowhere(&all, ticket, "the ticket");
    assert_nowhere(&all, dev::TOKEN, "the webhook token");
    binary.stop().await;
}

#[tokio::test]
async fn without_an_otlp_endpoint_no_traceparent_is_read_or_sent() {
    let wechat = TestService::start().await;
    let (upstream, seen) = recording_hop(Some(wechat.simulator_url())).await;
    let data = tempfile::tempdir().unwrap();
    let binary = start_binary(&upstream, data.path(), &[]).await;
    let (traceparent, _, _) = caller_context();
    let mut request = tonic::Request::new(pb::CreateTicketRequest {
        expire_seconds: 600,
        scene: Some(pb::create_ticket_request::Scene::SceneId(7)),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    binary.client().await.create_ticket(request).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(path, _)| path == "/cgi-bin/qrcode/create"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, traceparent)| traceparent.is_none()),
        "a traceparent went upstream with traces off: {seen:?}"
    );
    assert_eq!(binary.count("exporting traces"), 0);
    binary.stop().await;
}

/// The same receiver over OTLP/HTTP: `POST /v1/traces` with a protobuf body.
struct HttpReceiver(Receiver);

impl HttpReceiver {
    async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = self.0;
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let receiver = receiver.clone();
                let serve = service_fn(move |request: Request<Incoming>| {
                    let receiver = receiver.clone();
                    async move {
                        assert_eq!(request.uri().path(), "/v1/traces");
                        let body = request.into_body().collect().await?.to_bytes();
                        let export =
                            <ExportTraceServiceRequest as prost::Message>::decode(body).unwrap();
                        receiver.export(tonic::Request::new(export)).await.unwrap();
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), serve),
                );
            }
        });
        format!("http://{addr}")
    }
}
