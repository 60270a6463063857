//! The gRPC boundary's one error type and the one place it becomes a `tonic::Status`.
//! Upstream errcodes map to codes a caller can act on, and the errcode stays in the
//! message: quota → RESOURCE_EXHAUSTED, account configuration or permission →
//! FAILED_PRECONDITION, busy or unreachable → UNAVAILABLE.

use tonic::{Code, Status};

use crate::{
    events::{LogError, StreamEnd},
    wechat::WeChatError,
};

/// Everything a QrService call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is invalid; `field` names the offending field.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The proto field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// WeChat (or the way to it) failed.
    #[error(transparent)]
    Upstream(#[from] WeChatError),
    /// The event log refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A stream ended before the client hung up.
    #[error("{0:?}")]
    StreamEnded(StreamEnd),
}

impl ApiError {
    /// An invalid-argument error for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

fn upstream_code(error: &WeChatError) -> Code {
    match error {
        WeChatError::Api { errcode, .. } => match errcode {
            -1 => Code::Unavailable,
            // Token rejected even after a fresh one: WeChat-side trouble, try later.
            40001 | 40014 | 42001 => Code::Unavailable,
            45009 | 45011 => Code::ResourceExhausted,
            40002 | 40013 | 40125 | 40164 | 41001 | 41002 | 41004 | 48001 | 50001 | 50002 => {
                Code::FailedPrecondition
            }
            40097 | 40053 => Code::InvalidArgument,
            _ => Code::Unknown,
        },
        WeChatError::Unreachable { .. } => Code::Unavailable,
        WeChatError::HttpStatus { status, .. } if *status >= 500 => Code::Unavailable,
        WeChatError::HttpStatus { .. } | WeChatError::BadResponse { .. } => Code::Internal,
        WeChatError::TicketNotFound => Code::NotFound,
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match &error {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            ApiError::Upstream(e) => Status::new(upstream_code(e), e.to_string()),
            ApiError::Log(e @ LogError::OutOfRange { .. }) => Status::out_of_range(e.to_string()),
            ApiError::Log(e @ LogError::Unavailable(_)) => Status::unavailable(e.to_string()),
            ApiError::StreamEnded(StreamEnd::ShuttingDown { resume_after }) => Status::unavailable(
                format!("server shutting down; reconnect with resume_after={resume_after}"),
            ),
            ApiError::StreamEnded(StreamEnd::FellBehind {
                resume_after,
                error,
            }) => Status::out_of_range(format!(
                "subscriber fell behind the retained event log after cursor {resume_after}: {error}"
            )),
            ApiError::StreamEnded(StreamEnd::LogFailed {
                resume_after,
                error,
            }) => Status::unavailable(format!(
                "{error}; reconnect with resume_after={resume_after}"
            )),
        }
    }
}
