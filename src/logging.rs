//! Logging: `tracing` to stdout, human-readable by default or one JSON object per line
//! (`--log-format json`) for collectors; and the request ids that tie together the lines
//! of one RPC or push (the caller's `x-request-id`, or a fresh one).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            // Colour codes only for a terminal; files and collectors get plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// The request id for a request carrying `x-request-id: header` (if any): the caller's,
/// when it is short enough to be an id, else a fresh random one.
pub fn request_id(header: Option<&str>) -> String {
    header
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned)
}
