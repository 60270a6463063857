//! What can go wrong talking to WeChat. Messages keep WeChat's `errcode` and `errmsg`
//! (its `rid` is what WeChat support asks for) and never a URL, since request URLs carry
//! the access_token.

/// Errcodes meaning the access_token is invalid or expired: drop it, refetch, retry once.
pub const TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];

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
    /// `showqrcode` does not know the ticket (or it expired).
    #[error("ticket not found or expired")]
    TicketNotFound,
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
            detail,
        }
    }
}
