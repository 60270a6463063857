//! Prometheus metrics, served as text at `/metrics` on the admin listener. One registry
//! per service instance (not a process-global recorder), so every running service —
//! several in one test process — reports only its own numbers.
//!
//! Every metric about one account carries an `app_id` label, bounded by the configured
//! accounts: [`AccountMetrics`] holds each account's label children, resolved once at
//! start, so counting a push, an upstream call or a delivered event is an atomic add —
//! no label lookup, hashing or formatting on the hot path. Only rare label values (an
//! upstream errcode) are resolved when they happen. The deployed alerts and dashboard
//! (`deploy/`) use these names; `tests/alerts.rs` checks that each one is served.

use std::{sync::Arc, time::Duration};

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
    /// Webhook POSTs (pushes) by account and outcome.
    pub webhook_pushes: IntCounterVec,
    /// Webhook GETs (WeChat's server-URL handshake) by account and outcome: `accepted`
    /// or a refusal.
    pub webhook_handshakes: IntCounterVec,
    /// Webhook answers by account and status class (`2xx`, `4xx`, `5xx`): a 5xx makes
    /// WeChat retry, so a rising rate is what an on-call engineer is paged for.
    pub webhook_responses: IntCounterVec,
    /// Pushes forwarded to the account's existing handler, by account and outcome:
    /// `relayed` (its answer went to WeChat), `timeout`, `unreachable`, `upstream_5xx`,
    /// `oversized`.
    pub webhook_forwards: IntCounterVec,
    /// Passive replies answered to scans, by account.
    pub webhook_replies: IntCounterVec,
    /// Events appended to the log (after de-duplication), by account.
    pub events_emitted: IntCounterVec,
    /// Events delivered to subscribers, by account.
    pub events_delivered: IntCounterVec,
    /// Running StreamEvents subscriptions.
    pub subscribers: IntGauge,
    /// Bytes charged to open StreamEvents streams against `WECHAT_QR_MAX_SUBSCRIPTION_BYTES`.
    pub subscription_bytes: IntGauge,
    /// The subscription memory budget, `WECHAT_QR_MAX_SUBSCRIPTION_BYTES`.
    pub subscription_bytes_limit: IntGauge,
    /// Failed gRPC calls whose log line was left out by the per-kind rate limit (they are
    /// still counted in `grpc_requests_total`), by method and code.
    pub grpc_failures_unlogged: IntCounterVec,
    /// GetImage answered from the memory of tickets WeChat did not know, without a call,
    /// by account.
    pub image_unknown_ticket_hits: IntCounterVec,
    /// Streams that ended before the client hung up, by reason.
    pub subscriber_drops: IntCounterVec,
    /// How far behind the log head a subscriber was when it read a full batch.
    pub subscriber_lag: Histogram,
    /// access_token fetches started, by account.
    pub token_fetches: IntCounterVec,
    /// access_token fetches that failed, by account.
    pub token_fetch_failures: IntCounterVec,
    /// 1 while the account's last token fetch was refused as an invalid credential
    /// (its AppSecret was reset or is wrong); 0 again after a fetch succeeds.
    pub app_secret_rejected: IntGaugeVec,
    /// Upstream calls by account, endpoint and result (`0` = success, an errcode, or a
    /// transport failure such as `http_500`, `unreachable`, `timeout`).
    pub upstream_calls: IntCounterVec,
    /// GetImage answered from the cache, by account.
    pub image_cache_hits: IntCounterVec,
    /// GetImage that had to download, by account.
    pub image_cache_misses: IntCounterVec,
    /// Bytes held by each account's image cache.
    pub image_cache_bytes: IntGaugeVec,
    /// gRPC calls by client (from `[[clients]]`; empty when none was identified),
    /// method and status code; counted only while clients are configured.
    pub grpc_client_requests: IntCounterVec,
    /// Permanent codes minted by this process, by account (answers from the store not
    /// counted).
    pub permanent_minted: IntCounterVec,
    /// Permanent codes each account (`app_id`) may still mint under its `permanent_budget`.
    pub permanent_budget_remaining: IntGaugeVec,
    /// Each account's `permanent_budget` (set only for an account with one), so an alert
    /// can say "nearly spent" as a share of it.
    pub permanent_budget: IntGaugeVec,
    /// 1 while the event log accepts writes; 0 while its disk is full or failing (pushes
    /// are then answered 503 and gRPC health says NOT_SERVING).
    pub event_log_writable: IntGauge,
    /// Connections the service closed, by listener and reason (`per_address`, `full`,
    /// `evicted`, `handshake_timeout`, `idle`).
    pub connections_closed: IntCounterVec,
    /// Connections open, by listener.
    pub connections_open: IntGaugeVec,
    /// With Redis storage: 1 while Redis answers, 0 while it is unreachable (the event
    /// log is then not writable either). `None` (not exported) with the embedded store.
    pub redis_up: Option<IntGauge>,
    /// Consumer group lag by account and group: pending events plus the log's events
    /// after the group's position (refreshed each second).
    pub group_lag: IntGaugeVec,
    /// Consumer group events delivered and not yet acknowledged, by account and group.
    pub group_pending: IntGaugeVec,
    /// Consumer group deliveries after the first, by account and group.
    pub group_redeliveries: IntCounterVec,
    /// Consumer group events set aside as dead letters, by account and group.
    pub group_dead_letters: IntCounterVec,
    /// Each configured account's label children, in configuration order.
    accounts: Arc<Vec<Arc<AccountMetrics>>>,
    /// The `OK` series of the [`HOT_RPCS`], each resolved by its first call: a call then
    /// costs no label hashing or lookup.
    rpc_ok: Arc<[std::sync::OnceLock<(IntCounter, Histogram)>; HOT_RPCS.len()]>,
}

/// The calls made many times a second, whose `OK` series are kept resolved.
const HOT_RPCS: [&str; 3] = ["CreateTicket", "GetImage", "StreamEvents"];

/// Upstream endpoints, whose success counters are resolved per account at start.
const ENDPOINTS: &[&str] = &[
    "stable_token",
    "token",
    "token service",
    "qrcode/create",
    "showqrcode",
];

/// Outcomes of `webhook_pushes_total` (see `PushError::outcome` in `src/webhook/`):
/// resolved at start, so each series exists, at 0, before the first push.
const PUSH_OUTCOMES: &[&str] = &[
    "accepted",
    "duplicate",
    "ignored",
    "bad_signature",
    "stale_timestamp",
    "too_large",
    "body_timeout",
    "malformed",
    "undecryptable",
    "wrong_mode",
    "bad_query",
    "replayed",
    "forward_loop",
    "log_unavailable",
];

/// Outcomes of `webhook_handshakes_total` resolved at start.
const HANDSHAKE_OUTCOMES: &[&str] = &["accepted", "bad_signature", "stale_timestamp", "bad_query"];

/// Outcomes of `webhook_forwards_total` (see `src/webhook/forward.rs`).
const FORWARD_OUTCOMES: &[&str] = &[
    "relayed",
    "timeout",
    "unreachable",
    "upstream_5xx",
    "oversized",
];

/// Status classes of `webhook_responses_total`.
const STATUS_CLASSES: &[&str] = &["2xx", "4xx", "5xx"];

/// Label children of one counter for one account: one per known value of its other
/// label, found by a short scan (a handful of `&'static str` compares, no hashing); an
/// unknown value is resolved through the vector when it happens.
#[derive(Debug, Clone)]
pub struct ByValue {
    app_id: String,
    vec: IntCounterVec,
    known: Vec<(&'static str, IntCounter)>,
}

impl ByValue {
    fn new(vec: &IntCounterVec, app_id: &str, values: &[&'static str]) -> Self {
        Self {
            app_id: app_id.to_owned(),
            vec: vec.clone(),
            known: values
                .iter()
                .map(|&v| (v, vec.with_label_values(&[app_id, v])))
                .collect(),
        }
    }

    /// Adds one to the series of `value`.
    pub fn inc(&self, value: &str) {
        match self.known.iter().find(|(known, _)| *known == value) {
            Some((_, counter)) => counter.inc(),
            None => self.vec.with_label_values(&[&self.app_id, value]).inc(),
        }
    }

    /// The count of `value` (for tests and logs).
    pub fn get(&self, value: &str) -> u64 {
        self.vec.with_label_values(&[&self.app_id, value]).get()
    }
}

/// One account's series, resolved once at start. Accounts cannot be added or removed
/// without a restart, so this set is fixed for the process's life.
#[derive(Debug)]
pub struct AccountMetrics {
    /// The AppID the series are labelled with.
    pub app_id: String,
    /// `webhook_pushes_total` by outcome.
    pub pushes: ByValue,
    /// `webhook_handshakes_total` by outcome.
    pub handshakes: ByValue,
    /// `webhook_responses_total` by status class.
    pub responses: ByValue,
    /// `webhook_forwards_total` by outcome.
    pub forwards: ByValue,
    /// `webhook_replies_total`.
    pub replies: IntCounter,
    /// `events_emitted_total`.
    pub events_emitted: IntCounter,
    /// `events_delivered_total`.
    pub events_delivered: IntCounter,
    /// `token_fetches_total`.
    pub token_fetches: IntCounter,
    /// `token_fetch_failures_total`.
    pub token_fetch_failures: IntCounter,
    /// `app_secret_rejected`.
    pub app_secret_rejected: IntGauge,
    /// `upstream_calls_total{result="0"}` by endpoint; failures are resolved when they
    /// happen (their errcode is only known then).
    upstream_ok: Vec<(&'static str, IntCounter)>,
    upstream_calls: IntCounterVec,
    /// `image_cache_hits_total`.
    pub image_cache_hits: IntCounter,
    /// `image_cache_misses_total`.
    pub image_cache_misses: IntCounter,
    /// `image_unknown_ticket_hits_total`.
    pub image_unknown_ticket_hits: IntCounter,
    /// `image_cache_bytes`.
    pub image_cache_bytes: IntGauge,
    /// `permanent_codes_minted_total`.
    pub permanent_minted: IntCounter,
    /// `permanent_budget_remaining` and `permanent_budget`, set only for an account with
    /// a budget.
    permanent_budget_remaining: IntGaugeVec,
    permanent_budget: IntGaugeVec,
}

impl AccountMetrics {
    /// Counts one upstream call to `endpoint` that ended with `result` (`"0"`: success).
    pub fn upstream_call(&self, endpoint: &str, result: &str) {
        if result == "0"
            && let Some((_, counter)) = self.upstream_ok.iter().find(|(e, _)| *e == endpoint)
        {
            counter.inc();
            return;
        }
        self.upstream_calls
            .with_label_values(&[&self.app_id, endpoint, result])
            .inc();
    }

    /// Sets the account's permanent budget and how much of it is left; `None` (no
    /// budget, or one removed by a reload) drops both series.
    pub fn set_permanent_budget(&self, budget_and_left: Option<(u64, u64)>) {
        let labels = [self.app_id.as_str()];
        match budget_and_left {
            Some((budget, left)) => {
                let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                self.permanent_budget
                    .with_label_values(&labels)
                    .set(gauge(budget));
                self.permanent_budget_remaining
                    .with_label_values(&labels)
                    .set(gauge(left));
            }
            None => {
                // Absent already when the account never had a budget.
                let _ = self.permanent_budget.remove_label_values(&labels);
                let _ = self.permanent_budget_remaining.remove_label_values(&labels);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&[], false)
    }
}

impl Metrics {
    /// A fresh registry with every metric registered, the series of each of `app_ids`
    /// resolved; `redis` exports `redis_up`.
    pub fn new(app_ids: &[String], redis: bool) -> Self {
        let registry =
            Registry::new_custom(Some("wechat_qr".into()), None).expect("a valid metrics prefix");
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("unique metric");
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(c.clone()));
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(g.clone()));
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            register(Box::new(g.clone()));
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
        register(Box::new(grpc_latency.clone()));
        let subscriber_lag = Histogram::with_opts(
            HistogramOpts::new(
                "subscriber_lag_events",
                "events between a subscriber and the log head when it read a full batch",
            )
            .buckets(vec![256.0, 1024.0, 4096.0, 16384.0, 65536.0]),
        )
        .expect("valid metric");
        register(Box::new(subscriber_lag.clone()));
        let account = &["app_id"];
        let mut metrics = Self {
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
            permanent_minted: counter_vec(
                "permanent_codes_minted_total",
                "permanent QR codes minted, by account (answers from the store not counted)",
                account,
            ),
            permanent_budget_remaining: gauge_vec(
                "permanent_budget_remaining",
                "permanent codes the account may still mint under its permanent_budget",
                account,
            ),
            permanent_budget: gauge_vec(
                "permanent_budget",
                "the account's permanent_budget: most permanent codes it may hold",
                account,
            ),
            webhook_pushes: counter_vec(
                "webhook_pushes_total",
                "webhook pushes (POST) by account and outcome",
                &["app_id", "outcome"],
            ),
            webhook_handshakes: counter_vec(
                "webhook_handshakes_total",
                "webhook handshakes (GET with echostr) by account and outcome",
                &["app_id", "outcome"],
            ),
            webhook_responses: counter_vec(
                "webhook_responses_total",
                "webhook answers by account and HTTP status class",
                &["app_id", "class"],
            ),
            webhook_forwards: counter_vec(
                "webhook_forwards_total",
                "pushes forwarded to the existing handler, by account and outcome",
                &["app_id", "outcome"],
            ),
            webhook_replies: counter_vec(
                "webhook_replies_total",
                "passive replies answered to scans, by account",
                account,
            ),
            events_emitted: counter_vec(
                "events_emitted_total",
                "events appended to the event log, by account",
                account,
            ),
            events_delivered: counter_vec(
                "events_delivered_total",
                "events delivered to subscribers, by account",
                account,
            ),
            subscribers: gauge("subscribers", "running StreamEvents subscriptions"),
            subscription_bytes: gauge(
                "subscription_bytes",
                "bytes charged to open StreamEvents streams (filters and buffers)",
            ),
            subscription_bytes_limit: gauge(
                "subscription_bytes_limit",
                "the subscription memory budget (WECHAT_QR_MAX_SUBSCRIPTION_BYTES)",
            ),
            grpc_failures_unlogged: counter_vec(
                "grpc_failures_unlogged_total",
                "failed gRPC calls not logged one by one (rate limit per method and code)",
                &["method", "code"],
            ),
            image_unknown_ticket_hits: counter_vec(
                "image_unknown_ticket_hits_total",
                "GetImage of a ticket WeChat recently did not know, answered without a call, by account",
                account,
            ),
            subscriber_drops: counter_vec(
                "subscriber_drops_total",
                "streams ended by the server, by reason",
                &["reason"],
            ),
            subscriber_lag,
            token_fetches: counter_vec(
                "token_fetches_total",
                "access_token fetches started, by account",
                account,
            ),
            token_fetch_failures: counter_vec(
                "token_fetch_failures_total",
                "access_token fetches that failed, by account",
                account,
            ),
            app_secret_rejected: gauge_vec(
                "app_secret_rejected",
                "1 while the account's AppSecret is refused by WeChat (rotate it)",
                account,
            ),
            upstream_calls: counter_vec(
                "upstream_calls_total",
                "WeChat API calls by account, endpoint and result",
                &["app_id", "endpoint", "result"],
            ),
            image_cache_hits: counter_vec(
                "image_cache_hits_total",
                "GetImage served from the cache, by account",
                account,
            ),
            image_cache_misses: counter_vec(
                "image_cache_misses_total",
                "GetImage that downloaded the image, by account",
                account,
            ),
            image_cache_bytes: gauge_vec(
                "image_cache_bytes",
                "bytes held by the account's image cache",
                account,
            ),
            event_log_writable: gauge(
                "event_log_writable",
                "1 while the event log accepts writes, 0 while its storage fails",
            ),
            connections_closed: counter_vec(
                "connections_closed_total",
                "connections closed by the service, by listener and reason",
                &["listener", "reason"],
            ),
            connections_open: {
                let g = IntGaugeVec::new(
                    Opts::new("connections_open", "connections open, by listener"),
                    &["listener"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            redis_up: redis
                .then(|| gauge("redis_up", "1 while Redis answers, 0 while it does not")),
            accounts: Arc::new(Vec::new()),
            rpc_ok: Arc::default(),
            group_lag: gauge_vec(
                "group_lag_events",
                "consumer group events not yet acknowledged (pending plus unread)",
                &["app_id", "group"],
            ),
            group_pending: gauge_vec(
                "group_pending_events",
                "consumer group events delivered or awaiting redelivery, not yet acknowledged",
                &["app_id", "group"],
            ),
            group_redeliveries: counter_vec(
                "group_redeliveries_total",
                "consumer group deliveries after the first",
                &["app_id", "group"],
            ),
            group_dead_letters: counter_vec(
                "group_dead_letters_total",
                "consumer group events set aside as dead letters",
                &["app_id", "group"],
            ),
            registry,
        };
        // Each reason exists, at 0, from the start: an alert's `increase()` needs it.
        for reason in ["shutdown", "fell_behind", "log_failed"] {
            metrics.subscriber_drops.with_label_values(&[reason]);
        }
        metrics.accounts = Arc::new(
            app_ids
                .iter()
                .map(|app_id| Arc::new(metrics.resolve(app_id)))
                .collect(),
        );
        metrics
    }

    fn resolve(&self, app_id: &str) -> AccountMetrics {
        let one = |vec: &IntCounterVec| vec.with_label_values(&[app_id]);
        let secret_rejected = self.app_secret_rejected.with_label_values(&[app_id]);
        secret_rejected.set(0);
        let image_cache_bytes = self.image_cache_bytes.with_label_values(&[app_id]);
        image_cache_bytes.set(0);
        AccountMetrics {
            app_id: app_id.to_owned(),
            pushes: ByValue::new(&self.webhook_pushes, app_id, PUSH_OUTCOMES),
            handshakes: ByValue::new(&self.webhook_handshakes, app_id, HANDSHAKE_OUTCOMES),
            responses: ByValue::new(&self.webhook_responses, app_id, STATUS_CLASSES),
            forwards: ByValue::new(&self.webhook_forwards, app_id, FORWARD_OUTCOMES),
            replies: one(&self.webhook_replies),
            events_emitted: one(&self.events_emitted),
            events_delivered: one(&self.events_delivered),
            token_fetches: one(&self.token_fetches),
            token_fetch_failures: one(&self.token_fetch_failures),
            app_secret_rejected: secret_rejected,
            upstream_ok: ENDPOINTS
                .iter()
                .map(|&e| (e, self.upstream_calls.with_label_values(&[app_id, e, "0"])))
                .collect(),
            upstream_calls: self.upstream_calls.clone(),
            image_cache_hits: one(&self.image_cache_hits),
            image_cache_misses: one(&self.image_cache_misses),
            image_unknown_ticket_hits: one(&self.image_unknown_ticket_hits),
            image_cache_bytes,
            permanent_minted: one(&self.permanent_minted),
            permanent_budget_remaining: self.permanent_budget_remaining.clone(),
            permanent_budget: self.permanent_budget.clone(),
        }
    }

    /// The series of the configured account `app_id`. An AppID outside the
    /// configuration (a test's own) gets series of its own, so nothing is lost; the
    /// label stays bounded because only configured accounts reach the service.
    pub fn account(&self, app_id: &str) -> Arc<AccountMetrics> {
        self.accounts
            .iter()
            .find(|a| a.app_id == app_id)
            .cloned()
            .unwrap_or_else(|| Arc::new(self.resolve(app_id)))
    }

    /// Counts one event delivered to a subscriber: a short scan of the configured
    /// accounts, no lookup by hashing.
    pub fn event_delivered(&self, app_id: &str) {
        match self.accounts.iter().find(|a| a.app_id == app_id) {
            Some(account) => account.events_delivered.inc(),
            None => self.events_delivered.with_label_values(&[app_id]).inc(),
        }
    }

    /// Records one finished gRPC call.
    pub fn observe_rpc(&self, method: &str, code: tonic::Code, took: Duration) {
        if code == tonic::Code::Ok
            && let Some(hot) = HOT_RPCS.iter().position(|&m| m == method)
        {
            let (requests, latency) = self.rpc_ok[hot].get_or_init(|| {
                let labels = [method, code_name(code)];
                (
                    self.grpc_requests.with_label_values(&labels),
                    self.grpc_latency.with_label_values(&labels),
                )
            });
            requests.inc();
            latency.observe(took.as_secs_f64());
            return;
        }
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
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
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
