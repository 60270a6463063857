//! Prometheus metrics, served as text at `/metrics` on the admin listener. One registry
//! per service instance (not a process-global recorder), so every running service —
//! several in one test process — reports only its own numbers.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the service exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// gRPC calls by method and status code.
    pub grpc_requests: IntCounterVec,
    /// gRPC call latency by method and status code (for StreamEvents: until the stream
    /// is set up).
    pub grpc_latency: HistogramVec,
    /// Webhook POSTs (pushes) by outcome.
    pub webhook_pushes: IntCounterVec,
    /// Webhook GETs (WeChat's server-URL handshake) by outcome: `accepted` or a refusal.
    pub webhook_handshakes: IntCounterVec,
    /// Pushes forwarded to the account's existing handler, by outcome: `relayed` (its
    /// answer went to WeChat), `timeout`, `unreachable`, `upstream_5xx`, `oversized`.
    pub webhook_forwards: IntCounterVec,
    /// Events appended to the log (after de-duplication).
    pub events_emitted: IntCounter,
    /// Events delivered to subscribers.
    pub events_delivered: IntCounter,
    /// Running StreamEvents subscriptions.
    pub subscribers: IntGauge,
    /// Streams that ended before the client hung up, by reason.
    pub subscriber_drops: IntCounterVec,
    /// How far behind the log head a subscriber was when it read a full batch.
    pub subscriber_lag: Histogram,
    /// access_token fetches started.
    pub token_fetches: IntCounter,
    /// access_token fetches that failed.
    pub token_fetch_failures: IntCounter,
    /// Upstream calls by endpoint and result (`0` = success, an errcode, or a transport
    /// failure such as `http_500`, `unreachable`, `timeout`).
    pub upstream_calls: IntCounterVec,
    /// GetImage answered from the cache.
    pub image_cache_hits: IntCounter,
    /// GetImage that had to download.
    pub image_cache_misses: IntCounter,
    /// Bytes held by the image cache.
    pub image_cache_bytes: IntGauge,
    /// gRPC calls by client (from `[[clients]]`; empty when none was identified),
    /// method and status code; counted only while clients are configured.
    pub grpc_client_requests: IntCounterVec,
    /// Permanent codes minted by this process (answers from the store not counted).
    pub permanent_minted: IntCounter,
    /// Permanent codes each account (`app_id`) may still mint under its `permanent_budget`.
    pub permanent_budget_remaining: IntGaugeVec,
    /// 1 while the event log accepts writes; 0 while its disk is full or failing (pushes
    /// are then answered 503 and gRPC health says NOT_SERVING).
    pub event_log_writable: IntGauge,
    /// Consumer group lag by account and group: pending events plus the log's events
    /// after the group's position (refreshed each second).
    pub group_lag: IntGaugeVec,
    /// Consumer group events delivered and not yet acknowledged, by account and group.
    pub group_pending: IntGaugeVec,
    /// Consumer group deliveries after the first, by account and group.
    pub group_redeliveries: IntCounterVec,
    /// Consumer group events set aside as dead letters, by account and group.
    pub group_dead_letters: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("wechat_qr".into()), None).expect("a valid metrics prefix");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let grpc_latency = HistogramVec::new(
            HistogramOpts::new("grpc_request_duration_seconds", "gRPC call latency").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "code"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(grpc_latency.clone()))
            .expect("unique metric");
        let subscriber_lag = Histogram::with_opts(
            HistogramOpts::new(
                "subscriber_lag_events",
                "events between a subscriber and the log head when it read a full batch",
            )
            .buckets(vec![256.0, 1024.0, 4096.0, 16384.0, 65536.0]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(subscriber_lag.clone()))
            .expect("unique metric");
        Self {
            grpc_requests: counter_vec(
                "grpc_requests_total",
                "gRPC calls by method and status code",
                &["method", "code"],
            ),
            grpc_latency,
            grpc_client_requests: counter_vec(
                "grpc_client_requests_total",
                "gRPC calls by client, method and status code (with [[clients]] configured)",
                &["client", "method", "code"],
            ),
            permanent_minted: counter(
                "permanent_codes_minted_total",
                "permanent QR codes minted (answers from the store not counted)",
            ),
            permanent_budget_remaining: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "permanent_budget_remaining",
                        "permanent codes the account may still mint under its permanent_budget",
                    ),
                    &["app_id"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            webhook_pushes: counter_vec(
                "webhook_pushes_total",
                "webhook pushes (POST) by outcome",
                &["outcome"],
            ),
            webhook_handshakes: counter_vec(
                "webhook_handshakes_total",
                "webhook handshakes (GET with echostr) by outcome",
                &["outcome"],
            ),
            webhook_forwards: counter_vec(
                "webhook_forwards_total",
                "pushes forwarded to the existing handler, by outcome",
                &["outcome"],
            ),
            events_emitted: counter("events_emitted_total", "events appended to the event log"),
            events_delivered: counter("events_delivered_total", "events delivered to subscribers"),
            subscribers: gauge("subscribers", "running StreamEvents subscriptions"),
            subscriber_drops: counter_vec(
                "subscriber_drops_total",
                "streams ended by the server, by reason",
                &["reason"],
            ),
            subscriber_lag,
            token_fetches: counter("token_fetches_total", "access_token fetches started"),
            token_fetch_failures: counter(
                "token_fetch_failures_total",
                "access_token fetches that failed",
            ),
            upstream_calls: counter_vec(
                "upstream_calls_total",
                "WeChat API calls by endpoint and result",
                &["endpoint", "result"],
            ),
            image_cache_hits: counter("image_cache_hits_total", "GetImage served from the cache"),
            image_cache_misses: counter(
                "image_cache_misses_total",
                "GetImage that downloaded the image",
            ),
            image_cache_bytes: gauge("image_cache_bytes", "bytes held by the image cache"),
            event_log_writable: gauge(
                "event_log_writable",
                "1 while the event log accepts writes, 0 while its storage fails",
            ),
            group_lag: gauge_vec(
                "group_lag_events",
                "consumer group events not yet acknowledged (pending plus unread)",
                &["account", "group"],
            ),
            group_pending: gauge_vec(
                "group_pending_events",
                "consumer group events delivered or awaiting redelivery, not yet acknowledged",
                &["account", "group"],
            ),
            group_redeliveries: counter_vec(
                "group_redeliveries_total",
                "consumer group deliveries after the first",
                &["account", "group"],
            ),
            group_dead_letters: counter_vec(
                "group_dead_letters_total",
                "consumer group events set aside as dead letters",
                &["account", "group"],
            ),
            registry,
        }
    }

    /// Records one finished gRPC call.
    pub fn observe_rpc(&self, method: &str, code: tonic::Code, took: Duration) {
        let labels = [method, code_name(code)];
        self.grpc_requests.with_label_values(&labels).inc();
        self.grpc_latency
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records one gRPC call of a configured client (`""`: none identified).
    pub fn observe_client(&self, client: &str, method: &str, code: tonic::Code) {
        self.grpc_client_requests
            .with_label_values(&[client, method, code_name(code)])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The canonical upper-case name of a gRPC code, as in `grpc-status` documentation.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
