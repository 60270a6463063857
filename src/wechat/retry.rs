//! Bounded retries of one upstream call: only what is safe to repeat (see
//! [`WeChatError::is_retryable`]), with jittered exponential back-off, and never past the
//! deadline — the caller's gRPC deadline or the configured ceiling, whichever is sooner.

use std::{borrow::Cow, time::Duration};

use tokio::time::Instant;
use tracing::{Instrument, Span, field::Empty};

use super::{TransportKind, WeChatError};
use crate::metrics::AccountMetrics;

/// How persistent to be.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Most tries in all.
    pub attempts: u32,
    /// Back-off before the second try; doubles each time.
    pub base: Duration,
    /// Longest back-off.
    pub max: Duration,
}

impl RetryPolicy {
    /// `attempts` tries, backing off 50 ms, 100 ms, ... up to 1 s.
    pub fn new(attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1 << attempt.min(16)).min(self.max);
        // Full jitter between half and the whole: callers that failed together do not
        // come back together.
        exp.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// Runs `call` (given the time left) until it succeeds, fails for good, runs out of
/// tries, or the deadline passes.
pub(crate) async fn with_retries<T, F, Fut>(
    metrics: &AccountMetrics,
    endpoint: &'static str,
    policy: RetryPolicy,
    deadline: Instant,
    idempotent: bool,
    call: F,
) -> Result<T, WeChatError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, WeChatError>>,
{
    // For traces: the call, each attempt a child span whose context the request carries.
    let span = tracing::debug_span!(
        "wechat.call",
        otel.name = %format_args!("wechat {endpoint}"),
        otel.status_code = Empty,
        wechat.endpoint = endpoint,
        wechat.attempts = Empty,
        wechat.result = Empty,
    );
    let result = attempts(metrics, endpoint, policy, deadline, idempotent, call, &span)
        .instrument(span.clone())
        .await;
    if !span.is_disabled() {
        span.record("wechat.result", result_label(&result).as_ref());
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
    }
    result
}

async fn attempts<T, F, Fut>(
    metrics: &AccountMetrics,
    endpoint: &'static str,
    policy: RetryPolicy,
    deadline: Instant,
    idempotent: bool,
    mut call: F,
    traced: &Span,
) -> Result<T, WeChatError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, WeChatError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WeChatError::DeadlineExceeded { endpoint });
        }
        let span = tracing::debug_span!(
            "wechat.attempt",
            otel.name = %format_args!("{endpoint} attempt {attempt}"),
            otel.kind = "client",
            otel.status_code = Empty,
            wechat.endpoint = endpoint,
            wechat.attempt = attempt,
            wechat.result = Empty,
        );
        traced.record("wechat.attempts", attempt);
        // Entered while the request is built too, so its `traceparent` names this attempt.
        let call = span.in_scope(|| call(left)).instrument(span.clone());
        let result = match tokio::time::timeout_at(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(WeChatError::DeadlineExceeded { endpoint }),
        };
        let label = result_label(&result);
        span.record("wechat.result", label.as_ref());
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        metrics.upstream_call(endpoint, &label);
        if let Err(e @ WeChatError::DeadlineExceeded { .. }) = result {
            return Err(e);
        }
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return Err(WeChatError::DeadlineExceeded { endpoint });
        }
        if attempt >= policy.attempts || !error.is_retryable(idempotent) {
            return Err(error);
        }
        let pause = policy.backoff(attempt - 1);
        if Instant::now() + pause >= deadline {
            return Err(error);
        }
        tracing::warn!(%error, attempt, backoff_ms = pause.as_millis() as u64, "retrying WeChat call");
        tokio::time::sleep(pause).await;
    }
}

/// The `result` label of `upstream_calls_total`: borrowed for a success (the hot path
/// allocates nothing), formatted only for an errcode or HTTP status.
fn result_label<T>(result: &Result<T, WeChatError>) -> Cow<'static, str> {
    match result {
        Ok(_) => "0".into(),
        Err(WeChatError::Api { errcode, .. }) => errcode.to_string().into(),
        Err(WeChatError::HttpStatus { status, .. }) => format!("http_{status}").into(),
        Err(WeChatError::TicketNotFound) => "http_404".into(),
        Err(WeChatError::Unreachable { kind, .. }) => match kind {
            TransportKind::Connect => "connect_error".into(),
            TransportKind::Timeout => "timeout".into(),
            TransportKind::Broken => "connection_broken".into(),
        },
        Err(WeChatError::BadResponse { .. }) => "bad_response".into(),
        Err(WeChatError::TooLarge { .. }) => "too_large".into(),
        Err(WeChatError::DeadlineExceeded { .. }) => "deadline".into(),
        Err(WeChatError::PermanentBudgetExhausted { .. }) => "budget_exhausted".into(),
    }
}
