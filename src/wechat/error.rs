//! What can go wrong talking to WeChat. Messages keep WeChat's `errcode` and `errmsg`
//! (its `rid` is what WeChat support asks for) and never a URL, since request URLs carry
//! the access_token.

/// Errcodes meaning the access_token is invalid or expired: drop it, refetch, retry once.
pub const TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];

/// Errcodes a token fetch answers when the account's credentials are refused: 40001
/// (invalid credential), 40125 (invalid AppSecret), 40013 (invalid AppID), 41004
/// (AppSecret missing). WeChat stops accepting an AppSecret the moment an admin resets it,
/// so these mean the service needs the new one.
pub const CREDENTIAL_ERRCODES: [i64; 4] = [40001, 40125, 40013, 41004];

/// Most bytes of WeChat's `errmsg` (or of any detail taken from an answer) kept in an
/// error. WeChat's own are under 100 bytes; an upstream that answers a megabyte would
/// otherwise overflow the gRPC status headers and hide the real error behind tonic's
/// "metadata size exceeds".
pub const MAX_ERRMSG_BYTES: usize = 256;

/// An upstream failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeChatError {
    /// WeChat answered `{"errcode": N, "errmsg": "..."}` with N != 0.
    #[error("WeChat {endpoint} failed: errcode {errcode}: {errmsg}")]
    Api {
        /// Which API answered.
        endpoint: &'static str,
        /// WeChat's error code.
        errcode: i64,
        /// WeChat's message, with its request id.
        errmsg: String,
    },
    /// No answer: connection refused or reset, DNS, timeout.
    #[error("WeChat {endpoint} unreachable: {detail}")]
    Unreachable {
        /// Which API was called.
        endpoint: &'static str,
        /// Whether the request can have reached WeChat.
        kind: TransportKind,
        /// The transport error, without the URL.
        detail: String,
    },
    /// The caller's deadline (or the configured ceiling) passed first.
    #[error("WeChat {endpoint} did not answer before the deadline")]
    DeadlineExceeded {
        /// Which API was being called.
        endpoint: &'static str,
    },
    /// An HTTP status WeChat does not use for API errors (5xx from its edge, ...).
    #[error("WeChat {endpoint} answered HTTP {status}")]
    HttpStatus {
        /// Which API answered.
        endpoint: &'static str,
        /// The HTTP status code.
        status: u16,
    },
    /// A 200 whose body is not what the API documents.
    #[error("WeChat {endpoint} answered an unexpected body: {detail}")]
    BadResponse {
        /// Which API answered.
        endpoint: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The answer was longer than its limit; reading stopped there, so a huge answer
    /// costs no memory.
    #[error("WeChat {endpoint} answered more than the {limit}-byte limit")]
    TooLarge {
        /// Which API answered.
        endpoint: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// `showqrcode` does not know the ticket (or it expired).
    #[error("ticket not found or expired")]
    TicketNotFound,
    /// The account's `permanent_budget` is spent; refused here, before calling WeChat.
    #[error(
        "the permanent budget of this account ({budget} codes) is spent: no new permanent code is minted; scenes minted before still answer"
    )]
    PermanentBudgetExhausted {
        /// The configured budget.
        budget: u64,
    },
}

/// How a transport failure happened, which decides whether a retry is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connection was never made: nothing reached WeChat.
    Connect,
    /// No answer in time: WeChat may have acted on the request.
    Timeout,
    /// The connection broke mid-request (reset, closed): WeChat may have acted.
    Broken,
}

impl WeChatError {
    /// Whether trying the same call again is safe and may help: WeChat busy (-1), no
    /// connection, 5xx; timeouts and broken connections only for idempotent calls.
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Api { errcode: -1, .. } => true,
            Self::Unreachable {
                kind: TransportKind::Connect,
                ..
            } => true,
            Self::Unreachable { .. } => idempotent,
            Self::HttpStatus { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// WeChat's errcode, when WeChat gave one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Whether the access_token used was rejected (invalid or expired).
    pub fn is_token_rejected(&self) -> bool {
        self.errcode().is_some_and(|c| TOKEN_ERRCODES.contains(&c))
    }

    /// Whether a token fetch was refused because the account's credentials are (see
    /// [`CREDENTIAL_ERRCODES`]): the AppSecret was reset or is wrong.
    pub fn is_credential_rejected(&self) -> bool {
        self.errcode()
            .is_some_and(|c| CREDENTIAL_ERRCODES.contains(&c))
    }

    /// A 200 whose body is not what the API documents; `detail` is bounded, since parse
    /// errors quote the answer.
    pub(crate) fn bad_response(endpoint: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::BadResponse {
            endpoint,
            detail: truncated(&detail.to_string(), MAX_ERRMSG_BYTES),
        }
    }

    pub(crate) fn transport(endpoint: &'static str, err: reqwest::Error) -> Self {
        // `without_url`: the URL of qrcode/create carries the access_token.
        let err = err.without_url();
        let kind = if err.is_connect() {
            TransportKind::Connect
        } else if err.is_timeout() {
            TransportKind::Timeout
        } else {
            TransportKind::Broken
        };
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Unreachable {
            endpoint,
            kind,
            detail: truncated(&detail, MAX_ERRMSG_BYTES),
        }
    }
}

/// At most `max` bytes of `text`, cut on a character boundary and marked with `…` when cut.
pub(crate) fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::truncated;

    #[test]
    fn truncation_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(truncated("ok", 4), "ok");
        assert_eq!(truncated("abcdef", 4), "abcd…");
        // "中" is 3 bytes: 4 bytes hold one of them, not one and a third.
        assert_eq!(truncated("中中中", 4), "中…");
    }
}
