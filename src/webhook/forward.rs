//! Forwarding to the account's existing handler (README, "Sharing the server URL"). A
//! push is forwarded **verbatim** — a POST to the handler's URL with the push's own query
//! string appended unchanged, the same body bytes and the same `Content-Type` — so the
//! handler's own signature and safe-mode checks pass as if WeChat had called it. Its
//! status, `Content-Type` and body go back to WeChat as they came: a passive reply (which
//! the handler encrypts itself in safe mode) passes through untouched.
//!
//! Only pushes that passed the webhook's own checks get here, and a QR scan only once it
//! is stored. The whole forward, connecting and reading the answer, has a deadline below
//! WeChat's 5 s. Bodies are never logged; the handler's URL only redacted.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, header::CONTENT_TYPE, header::HeaderValue};
use tracing::{Instrument, field::Empty};

use crate::{
    config::{ForwardFailure, ForwardSettings, redact_url},
    http_server::HttpResponse,
    logging::LogBudget,
    metrics::AccountMetrics,
};

/// Largest answer relayed from the handler. Passive replies are a few KiB; a larger
/// answer is a handler gone wrong, and is a failed forward.
pub(crate) const MAX_RELAYED_BYTES: usize = 256 * 1024;

/// Failed forwards logged per second; every one is counted in `webhook_forwards_total`.
const FAILURES_LOGGED_PER_SECOND: u32 = 5;

/// The `Via` entry every forward carries (RFC 9110 §7.6.3, as proxies add one), so a
/// `forward_url` that leads back to a wechat-qr forwarding too is caught on the first
/// hop instead of bouncing the push between them until WeChat gives up.
const VIA: &str = "1.1 wechat-qr";

/// Whether `headers` carry our own `Via` entry: the push was forwarded by a wechat-qr.
pub(crate) fn forwarded_by_us(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| entry.trim() == VIA)
}

/// What of a push is forwarded: everything the handler needs to verify it itself.
#[derive(Debug, Clone)]
pub(crate) struct Verbatim {
    /// The query string as WeChat sent it (`signature`, `timestamp`, `nonce`, ...).
    pub(crate) query: Option<String>,
    /// WeChat's `Content-Type`, if it sent one.
    pub(crate) content_type: Option<HeaderValue>,
    /// The body bytes as received (in safe mode, the encrypted envelope).
    pub(crate) body: Bytes,
}

/// The handler's answer, to be relayed.
#[derive(Debug)]
pub(crate) struct Relayed {
    status: u16,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl Relayed {
    /// Whether the handler answered without a message: 200 with an empty body or
    /// `success`. For a QR scan a reply rule may then answer instead.
    pub(crate) fn is_silent(&self) -> bool {
        self.status == 200 && matches!(self.body.trim_ascii(), b"" | b"success")
    }

    /// The answer for WeChat, as the handler gave it.
    pub(crate) fn into_response(self) -> HttpResponse {
        let mut response = Response::builder().status(self.status);
        if let Some(content_type) = self.content_type {
            response = response.header(CONTENT_TYPE, content_type);
        }
        response
            .body(Full::new(self.body))
            .expect("a status the handler sent and its own content type are valid")
    }
}

/// Why a forward failed; WeChat is then answered as `forward_failure` says.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// No complete answer within the deadline.
    #[error("the handler did not answer within the deadline")]
    Timeout,
    /// The handler could not be reached, or the connection broke.
    #[error("the handler is unreachable: {0}")]
    Unreachable(reqwest::Error),
    /// The handler answered 5xx.
    #[error("the handler answered {0}")]
    Upstream5xx(u16),
    /// The handler's answer is larger than [`MAX_RELAYED_BYTES`].
    #[error("the handler's answer is larger than {MAX_RELAYED_BYTES} bytes")]
    Oversized,
}

impl ForwardError {
    /// The `outcome` label of `webhook_forwards_total`.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Upstream5xx(_) => "upstream_5xx",
            Self::Oversized => "oversized",
        }
    }
}

/// One account's forwarding: its handler, its deadline and its HTTP client. Accounts do
/// not share a client: each forwards to its own handler, so a shared pool would hold no
/// connection another account could reuse.
#[derive(Debug)]
pub(crate) struct Forwarder {
    settings: ForwardSettings,
    http: reqwest::Client,
    /// The account's series.
    metrics: Arc<AccountMetrics>,
    /// Paces the log lines of failed forwards (see [`FAILURES_LOGGED_PER_SECOND`]).
    failures_logged: Arc<LogBudget>,
}

impl Forwarder {
    /// A forwarder to `settings.url`, counting into `metrics`.
    pub(crate) fn new(settings: ForwardSettings, metrics: Arc<AccountMetrics>) -> Self {
        let mut http = reqwest::Client::builder()
            // A redirect would turn the POST into a GET without the body: relay it instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wechat-qr/", env!("CARGO_PKG_VERSION")));
        if settings.url.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }) {
            // A handler next to us must not be reached through a proxy meant for the world.
            http = http.no_proxy();
        }
        Self {
            http: http
                .build()
                .expect("an HTTP client with the default TLS builds"),
            settings,
            metrics,
            failures_logged: LogBudget::new("push forward failed", FAILURES_LOGGED_PER_SECOND),
        }
    }

    /// Whether a push goes to the handler: every push that is not a QR scan, and scans
    /// too with `forward_scans`.
    pub(crate) fn takes(&self, qr_scan: bool) -> bool {
        !qr_scan || self.settings.scans
    }

    /// What WeChat is answered when a forward fails.
    pub(crate) fn on_failure(&self) -> ForwardFailure {
        self.settings.failure
    }

    /// Forwards `push` and returns the handler's answer, counting the outcome.
    pub(crate) async fn forward(&self, push: Verbatim) -> Result<Relayed, ForwardError> {
        // For traces: the forward as a client span, its context sent to the handler. The
        // handler's host only: its URL may carry credentials.
        let span = tracing::debug_span!(
            "webhook.forward",
            otel.name = "forward to existing handler",
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = "POST",
            server.address = self.settings.url.host_str().unwrap_or_default(),
            http.response.status_code = Empty,
            outcome = Empty,
        );
        let exchange = self.exchange(push).instrument(span.clone());
        let result = match tokio::time::timeout(self.settings.timeout, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(ForwardError::Timeout),
        };
        let outcome = match &result {
            Ok(_) => "relayed",
            Err(e) => e.outcome(),
        };
        span.record("outcome", outcome);
        match &result {
            Ok(relayed) => span.record("http.response.status_code", relayed.status),
            Err(_) => span.record("otel.status_code", "ERROR"),
        };
        self.metrics.forwards.inc(outcome);
        match &result {
            Ok(relayed) => tracing::debug!(status = relayed.status, "forwarded push answered"),
            Err(error) => {
                if self.failures_logged.admit() {
                    tracing::warn!(
                        handler = redact_url(&self.settings.url).as_str(),
                        error = error.to_string().as_str(),
                        outcome,
                        "push forward failed"
                    );
                }
            }
        }
        result
    }

    async fn exchange(&self, push: Verbatim) -> Result<Relayed, ForwardError> {
        let mut request = self
            .http
            .post(self.target(push.query.as_deref()))
            .headers(crate::telemetry::inject())
            .header(hyper::header::VIA, VIA);
        if let Some(content_type) = push.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        // `without_url`: the URL may hold credentials, and errors end up in logs.
        let unreachable = |e: reqwest::Error| ForwardError::Unreachable(e.without_url());
        let mut response = request.body(push.body).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if response.status().is_server_error() {
            return Err(ForwardError::Upstream5xx(status));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_RELAYED_BYTES as u64)
        {
            return Err(ForwardError::Oversized);
        }
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_RELAYED_BYTES {
                return Err(ForwardError::Oversized);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Relayed {
            status,
            content_type,
            body: body.into(),
        })
    }

    /// The handler's URL with the push's query string appended as it came, after the
    /// URL's own query if it has one.
    fn target(&self, query: Option<&str>) -> String {
        let mut url = self.settings.url.clone();
        url.set_fragment(None);
        match query.filter(|q| !q.is_empty()) {
            None => url.into(),
            Some(query) => {
                let separator = if url.query().is_some() { '&' } else { '?' };
                format!("{url}{separator}{query}")
            }
        }
    }
}
