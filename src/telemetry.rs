//! Traces: the service's own `tracing` spans, exported over OTLP to the collector an
//! operator already runs — only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Without it no OpenTelemetry layer is
//! installed at all: the spans that exist only for traces are at DEBUG, below the log
//! filter, so their call sites are switched off once and cost a branch each; W3C
//! `traceparent` is neither read nor written.
//!
//! With it, a caller's trace continues through the service: [`GrpcTraceLayer`] takes the
//! `traceparent` of every gRPC call (the webhook does the same for pushes, [`extract`]),
//! and every outgoing request — to WeChat and to an account's existing handler — carries
//! the current span's ([`inject`]). The standard `OTEL_*` variables configure the
//! exporter (protocol `grpc` or `http/protobuf`, headers, timeout), the batching
//! (`OTEL_BSP_*`), the sampler (`OTEL_TRACES_SAMPLER`) and the resource
//! (`OTEL_SERVICE_NAME`, default `wechat-qr`; `OTEL_RESOURCE_ATTRIBUTES`).
//!
//! Only spans are exported, never log events, and span fields are chosen so that no
//! secret, token, openid with its ticket, or message body is recorded (SECURITY.md,
//! "What traces record").

use std::{
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
    task::{Context, Poll},
};

use futures_util::future::Either;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    resource::{EnvResourceDetector, TelemetryResourceDetector},
    trace::SdkTracerProvider,
};
use tonic::codegen::{Service, http};
use tower_layer::Layer;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    Layer as _,
    filter::{FilterExt, Targets, filter_fn},
    registry::LookupSpan,
};

/// Whether traces are exported: set once, before the service starts.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported. When not, nothing reads or writes `traceparent`.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The service name in the exported resource unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "wechat-qr";

/// The OTLP exporter and its batching, while traces are exported.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The exporter the standard `OTEL_*` variables describe, or `None` when no OTLP
    /// endpoint is set (or `OTEL_SDK_DISABLED=true`). Call within a tokio runtime: the
    /// gRPC transport runs its connection on it.
    pub fn from_env() -> Result<Option<Self>, String> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if disabled
            || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        {
            return Ok(None);
        }
        // The protocol (grpc, http/protobuf), endpoint, headers and timeout all come from
        // the environment, as every OpenTelemetry SDK reads them.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .build()
            .map_err(|e| format!("cannot build the OTLP trace exporter: {e}"))?;
        let mut resource = Resource::builder_empty()
            .with_detectors(&[Box::new(TelemetryResourceDetector)])
            .with_service_name(SERVICE_NAME)
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_detectors(&[Box::new(EnvResourceDetector::new())]);
        if let Ok(name) = std::env::var("OTEL_SERVICE_NAME")
            && !name.trim().is_empty()
        {
            resource = resource.with_service_name(name);
        }
        // The batch processor exports from a thread of its own: a slow or absent
        // collector costs a bounded queue (OTEL_BSP_MAX_QUEUE_SIZE), never a request.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Some(Self { provider }))
    }

    /// The layer that turns this crate's spans into OpenTelemetry spans: spans only (log
    /// events stay in the log), of `wechat_qr` only, down to DEBUG whatever `RUST_LOG`
    /// says about the log.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.tracer(SERVICE_NAME);
        let ours = Targets::new().with_target("wechat_qr", tracing::Level::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(ours.and(filter_fn(|meta| meta.is_span())))
    }

    /// Exports what is still queued and stops the exporter; call before the runtime ends.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("wechat-qr: traces not all exported at shutdown: {error}");
        }
    }
}

/// Where the exporter sends, as configured (the traces variable first). It may carry
/// userinfo or a query: log it only through `config::redact_url`.
pub fn endpoint() -> String {
    std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The trace context a request carries in its W3C `traceparent` / `tracestate` headers,
/// as the parent of `span`. Nothing happens when traces are off.
pub fn extract(headers: &http::HeaderMap, span: &Span) {
    if !enabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when the span is disabled; it is then not exported either.
    let _ = span.set_parent(parent);
}

/// The current span's trace context as W3C `traceparent` / `tracestate` headers, for an
/// outgoing request. Empty when traces are off.
pub fn inject() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if enabled() {
        TraceContextPropagator::new().inject_context(
            &Span::current().context(),
            &mut HeaderInjector(&mut headers),
        );
    }
    headers
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Longest gRPC path named in a span; anything longer or odder is `unknown`, so a
/// caller cannot write what it likes into span names.
const MAX_PATH_BYTES: usize = 128;

/// A server span for every gRPC call, the caller's `traceparent` as its parent; the
/// spans of the call (access check, the method, upstream calls) are its children.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTraced<S>;

    fn layer(&self, inner: S) -> GrpcTraced<S> {
        GrpcTraced { inner }
    }
}

/// A gRPC server behind [`GrpcTraceLayer`].
#[derive(Debug, Clone)]
pub struct GrpcTraced<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for GrpcTraced<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<Result<http::Response<R>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !enabled() {
            return Either::Left(self.inner.call(request));
        }
        let (service, method) = grpc_names(request.uri().path());
        let span = tracing::debug_span!(
            "grpc.server",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
        );
        extract(request.headers(), &span);
        // The inner service's own span (the access check) is created in `call`.
        let call = span.in_scope(|| self.inner.call(request));
        let recorded = span.clone();
        Either::Right(Box::pin(
            async move {
                let response = call.await?;
                // A call that fails before its first message answers trailers-only, the
                // status in the headers; otherwise it is OK as far as headers tell.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                recorded.record("rpc.grpc.status_code", code);
                if code != 0 {
                    recorded.record("otel.status_code", "ERROR");
                }
                Ok(response)
            }
            .instrument(span),
        ))
    }
}

/// `(service, method)` of a gRPC path `/package.Service/Method`, or `unknown` for both.
fn grpc_names(path: &str) -> (&str, &str) {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'))
    };
    path.strip_prefix('/')
        .filter(|_| path.len() <= MAX_PATH_BYTES)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(service, method)| plain(service) && plain(method))
        .unwrap_or(("unknown", "unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_grpc_paths_name_spans() {
        assert_eq!(
            grpc_names("/wechat.qr.v1.QrService/CreateTicket"),
            ("wechat.qr.v1.QrService", "CreateTicket")
        );
        for odd in [
            "",
            "/",
            "/a",
            "/a/",
            "/a b/c",
            "/a/b/c",
            &format!("/a/{}", "b".repeat(200)),
        ] {
            assert_eq!(grpc_names(odd), ("unknown", "unknown"), "{odd:?}");
        }
    }

    #[test]
    fn a_traceparent_survives_extract_and_inject() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let mut out = http::HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut out));
        assert_eq!(out.get("traceparent"), headers.get("traceparent"));
    }
}
