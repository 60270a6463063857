//! The faults the embedded simulator injects — a setting like any other
//! (`WECHAT_QR_SIM_FAULTS`, or `POST /sim/faults` at run time), so it lives with the
//! configuration and the simulator reads it from there.

use serde::{Deserialize, Serialize};

/// Faults the simulator injects, from configuration (`WECHAT_QR_SIM_FAULTS`) or
/// `POST /sim/faults`. Counts are consumed one per matching request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The next N `qrcode/create` calls answer errcode -1 (system busy).
    pub busy: u32,
    /// The next N `qrcode/create` calls answer errcode 45009 (daily quota reached).
    pub quota: u32,
    /// The next N token fetches answer errcode 40164 (IP not allow-listed).
    pub token_failures: u32,
    /// The next N `cgi-bin` requests answer HTTP 500.
    pub http_500: u32,
    /// The next N `cgi-bin` requests have their connection dropped without an answer.
    pub reset: u32,
    /// Delay added to every `cgi-bin` request, in milliseconds.
    pub latency_ms: u64,
    /// Further delay on `showqrcode`, in milliseconds.
    pub showqrcode_latency_ms: u64,
    /// Lifetime of tokens minted from now on, in seconds (WeChat's is 7,200).
    pub token_ttl_seconds: Option<u64>,
}
