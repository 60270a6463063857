//! Logging: `tracing` to stdout, human-readable by default or one JSON object per line
//! (`--log-format json`) for collectors; the request ids that tie together the lines of
//! one RPC or push (the caller's `x-request-id` when it is a plain id, or a fresh one);
//! and [`LogBudget`], which keeps lines an outsider can cause from flooding the log.
//!
//! Values a client supplies reach log lines only as string *values* (`field = value`,
//! never `%value`): both formats then quote and escape them, so a value cannot pose as
//! another field or start a new line.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

// tokio's clock, so tests can pause it.
use tokio::time::Instant;

use tracing_subscriber::{
    EnvFilter, Layer, layer::SubscriberExt, registry::LookupSpan, util::SubscriberInitExt,
};

use crate::telemetry::Traces;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; `RUST_LOG` filters (default `info`). With `traces`,
/// their layer sits beside the log with a filter of its own, so `RUST_LOG` keeps
/// deciding what is logged and the trace spans below it stay out of the log; without,
/// the log's filter is the only one, and spans below it are never created.
pub fn init(format: LogFormat, traces: Option<&Traces>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match traces {
        None => tracing_subscriber::registry()
            .with(filter)
            .with(log_layer(format))
            .init(),
        Some(traces) => tracing_subscriber::registry()
            .with(log_layer(format).with_filter(filter))
            .with(traces.layer())
            .init(),
    }
}

/// The log lines, as `format` says.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer();
    match format {
        LogFormat::Text => layer
            // Colour codes only for a terminal; files and collectors get plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
        LogFormat::Json => layer.json().with_current_span(true).boxed(),
    }
}

/// Longest caller-supplied request id kept, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// The request id for a request carrying `x-request-id: header` (if any): the caller's
/// when it is 1..=[`MAX_REQUEST_ID_BYTES`] bytes of `[A-Za-z0-9._-]`, else a fresh random
/// one. Request ids are written into spans unquoted, so nothing else may pass: a space or
/// a quote would let a caller append fields of its own to every line of the request.
pub fn request_id(header: Option<&str>) -> String {
    header
        .filter(|v| is_plain_id(v))
        .map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned)
}

fn is_plain_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The span over which a [`LogBudget`] counts.
const BUDGET_WINDOW: Duration = Duration::from_secs(1);

/// A budget of log lines per second for lines an outsider can cause at will, such as
/// refused webhook requests: within the budget a line is written; past it, it is only
/// counted, and at the end of that second one summary line says how many were not
/// written. A flood therefore costs at most `per_second + 1` lines a second, and the
/// count stays exact (the metrics count every request anyway).
#[derive(Debug)]
pub struct LogBudget {
    /// What the lines are about, named in the summary line.
    what: &'static str,
    /// Lines written per window before counting starts.
    per_second: u32,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    window_start: Instant,
    written: u32,
    /// Lines not written since the last summary.
    suppressed: u64,
    /// A summary is due at the end of the current window: one timer per window, not one
    /// per suppressed line.
    summary_due: bool,
}

impl LogBudget {
    /// A budget of `per_second` lines about `what`.
    pub fn new(what: &'static str, per_second: u32) -> Arc<Self> {
        Arc::new(Self {
            what,
            per_second,
            state: Mutex::new(BudgetState {
                window_start: Instant::now(),
                written: 0,
                suppressed: 0,
                summary_due: false,
            }),
        })
    }

    /// Whether one more line may be written now. When not, the line is counted and the
    /// summary scheduled; call this within a tokio runtime.
    pub fn admit(self: &Arc<Self>) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().expect("lock poisoned");
        if now.duration_since(state.window_start) >= BUDGET_WINDOW {
            state.window_start = now;
            state.written = 0;
        }
        if state.written < self.per_second {
            state.written += 1;
            return true;
        }
        state.suppressed += 1;
        if !state.summary_due {
            state.summary_due = true;
            let at = state.window_start + BUDGET_WINDOW;
            let budget = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                budget.summarize();
            });
        }
        false
    }

    fn summarize(&self) {
        let suppressed = {
            let mut state = self.state.lock().expect("lock poisoned");
            state.summary_due = false;
            std::mem::take(&mut state.suppressed)
        };
        if suppressed > 0 {
            tracing::warn!(
                suppressed,
                lines = self.what,
                per_second = self.per_second,
                "log lines suppressed by the rate limit"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_request_ids_are_kept() {
        assert_eq!(request_id(Some("req-42_a.b")), "req-42_a.b");
        let forged = "x outcome=\"handshake\" fake=1";
        for bad in [forged, "", "a\nb", "ü", &"a".repeat(65)] {
            let id = request_id(Some(bad));
            assert_ne!(id, bad);
            assert!(is_plain_id(&id), "{id}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_costs_the_budget_and_one_summary() {
        let budget = LogBudget::new("test lines", 5);
        let admitted = (0..1000).filter(|_| budget.admit()).count();
        assert_eq!(admitted, 5);
        assert_eq!(budget.state.lock().unwrap().suppressed, 995);
        tokio::time::sleep(BUDGET_WINDOW * 2).await;
        assert_eq!(budget.state.lock().unwrap().suppressed, 0, "summarized");
        assert!(budget.admit(), "a new second, a new budget");
    }
}
