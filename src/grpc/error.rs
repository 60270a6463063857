//! The gRPC boundary's one error type and the one place it becomes a `tonic::Status`.
//! Upstream errcodes map to codes a caller can act on — quota → RESOURCE_EXHAUSTED,
//! account configuration or permission → FAILED_PRECONDITION, busy or unreachable →
//! UNAVAILABLE, the caller's deadline → DEADLINE_EXCEEDED — and every status carries a
//! `google.rpc.ErrorInfo` (a stable `reason`, plus WeChat's errcode and its errmsg, cut
//! to [`crate::wechat::MAX_ERRMSG_BYTES`] where the answer is read) so
//! generated clients in any language can branch on it without parsing messages.
//! Invalid requests also carry a `google.rpc.BadRequest` naming the field. Refused callers
//! (`src/grpc/auth.rs`) get UNAUTHENTICATED, or PERMISSION_DENIED whose ErrorInfo names
//! the client and the permission it lacks.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    events::{LogError, StreamEnd, SubscribeError, groups::GroupError},
    stats::StatsError,
    wechat::WeChatError,
};

/// The `domain` of every ErrorInfo this service sends.
pub const ERROR_DOMAIN: &str = "wechat-qr";

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
    /// A cap on open subscriptions was reached.
    #[error(transparent)]
    TooManySubscriptions(SubscribeError),
    /// Clients are configured and the call names none of them.
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// What was missing or wrong.
        reason: String,
    },
    /// The calling client is not allowed this.
    #[error("client {client:?} lacks the permission: {permission}")]
    PermissionDenied {
        /// The client's name.
        client: String,
        /// What it would need: `method <Name>`, `account <AppID>` or `permanent`.
        permission: String,
    },
    /// The channel statistics cannot answer.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// A consumer group operation failed.
    #[error(transparent)]
    Group(GroupError),
    /// A member's stream ended because its group was deleted.
    #[error("consumer group {name:?} was deleted")]
    GroupDeleted {
        /// The group's name.
        name: String,
    },
    /// A member's stream ended because the server is shutting down.
    #[error("server shutting down; join the group again")]
    GroupShuttingDown,
    /// A request names an AppID this service does not serve.
    #[error("{field}: unknown account {account}; configured: {configured}")]
    UnknownAccount {
        /// The proto field that named it.
        field: &'static str,
        /// The AppID asked for, quoted by [`quote`] (so at most 128 bytes of it).
        account: String,
        /// The configured AppIDs.
        configured: String,
    },
}

impl From<SubscribeError> for ApiError {
    fn from(error: SubscribeError) -> Self {
        match error {
            SubscribeError::Log(e) => Self::Log(e),
            full => Self::TooManySubscriptions(full),
        }
    }
}

/// Most bytes of a caller's value an error quotes: enough to recognise it, never enough
/// to turn a refused call into a large answer or log line.
pub const MAX_QUOTED_BYTES: usize = 128;

/// A caller's value as an error quotes it: in quotes and escaped, cut to
/// [`MAX_QUOTED_BYTES`] (at a character boundary) and then `…` and its length in bytes.
pub fn quote(value: &str) -> String {
    if value.len() <= MAX_QUOTED_BYTES {
        return format!("{value:?}");
    }
    let cut = (0..=MAX_QUOTED_BYTES)
        .rev()
        .find(|&i| value.is_char_boundary(i))
        .unwrap_or(0);
    format!("{:?}…({} bytes)", &value[..cut], value.len())
}

impl From<GroupError> for ApiError {
    fn from(error: GroupError) -> Self {
        match error {
            GroupError::Log(e) => Self::Log(e),
            other => Self::Group(other),
        }
    }
}

impl ApiError {
    /// NOT_FOUND for the unknown AppID `account` named in `field`, quoting it bounded.
    pub fn unknown_account(field: &'static str, account: &str, configured: String) -> Self {
        Self::UnknownAccount {
            field,
            account: quote(account),
            configured,
        }
    }

    /// An invalid-argument error for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

/// The code and ErrorInfo reason of an upstream failure.
fn upstream_code(error: &WeChatError) -> (Code, &'static str) {
    match error {
        WeChatError::Api { errcode, .. } => match errcode {
            -1 => (Code::Unavailable, "WECHAT_BUSY"),
            // Rejected even after a fresh token: WeChat-side trouble, try later.
            40001 | 40014 | 42001 => (Code::Unavailable, "WECHAT_TOKEN_REJECTED"),
            45009 | 45011 => (Code::ResourceExhausted, "WECHAT_QUOTA_EXCEEDED"),
            48001 => (Code::FailedPrecondition, "WECHAT_API_NOT_AUTHORIZED"),
            40002 | 40013 | 40125 | 40164 | 41001 | 41002 | 41004 | 50001 | 50002 => {
                (Code::FailedPrecondition, "WECHAT_ACCOUNT_MISCONFIGURED")
            }
            40097 | 40053 | 47001 => (Code::InvalidArgument, "WECHAT_REJECTED_ARGUMENT"),
            _ => (Code::Unknown, "WECHAT_API_ERROR"),
        },
        WeChatError::Unreachable { .. } => (Code::Unavailable, "WECHAT_UNREACHABLE"),
        WeChatError::HttpStatus { status, .. } if *status >= 500 => {
            (Code::Unavailable, "WECHAT_HTTP_ERROR")
        }
        WeChatError::HttpStatus { .. } => (Code::Internal, "WECHAT_HTTP_ERROR"),
        WeChatError::BadResponse { .. } => (Code::Internal, "WECHAT_BAD_RESPONSE"),
        WeChatError::TooLarge { .. } => (Code::Internal, "WECHAT_ANSWER_TOO_LARGE"),
        WeChatError::DeadlineExceeded { .. } => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        WeChatError::TicketNotFound => (Code::NotFound, "TICKET_NOT_FOUND"),
        WeChatError::PermanentBudgetExhausted { .. } => {
            (Code::ResourceExhausted, "PERMANENT_BUDGET_EXHAUSTED")
        }
    }
}

fn upstream_metadata(error: &WeChatError) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    match error {
        WeChatError::Api {
            endpoint,
            errcode,
            errmsg,
        } => {
            metadata.insert("endpoint".into(), (*endpoint).into());
            metadata.insert("errcode".into(), errcode.to_string());
            metadata.insert("errmsg".into(), errmsg.clone());
        }
        WeChatError::Unreachable { endpoint, .. }
        | WeChatError::BadResponse { endpoint, .. }
        | WeChatError::DeadlineExceeded { endpoint } => {
            metadata.insert("endpoint".into(), (*endpoint).into());
        }
        WeChatError::TooLarge { endpoint, limit } => {
            metadata.insert("endpoint".into(), (*endpoint).into());
            metadata.insert("limit".into(), limit.to_string());
        }
        WeChatError::HttpStatus { endpoint, status } => {
            metadata.insert("endpoint".into(), (*endpoint).into());
            metadata.insert("http_status".into(), status.to_string());
        }
        WeChatError::TicketNotFound => {}
        WeChatError::PermanentBudgetExhausted { budget } => {
            metadata.insert("budget".into(), budget.to_string());
        }
    }
    metadata
}

fn group_metadata(account: &str, name: &str) -> HashMap<String, String> {
    HashMap::from([
        ("account".to_owned(), account.to_owned()),
        ("group".to_owned(), name.to_owned()),
    ])
}

fn resume_metadata(resume_after: impl ToString) -> HashMap<String, String> {
    HashMap::from([("resume_after".to_owned(), resume_after.to_string())])
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let message = error.to_string();
        let (code, reason, metadata, message) = match &error {
            ApiError::InvalidArgument { field, .. } => (
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
                HashMap::from([("field".to_owned(), (*field).to_owned())]),
                message,
            ),
            ApiError::Upstream(e) => {
                let (code, reason) = upstream_code(e);
                (code, reason, upstream_metadata(e), message)
            }
            ApiError::Log(LogError::OutOfRange { resume_from, .. }) => (
                Code::OutOfRange,
                "CURSOR_OUT_OF_RANGE",
                resume_metadata(resume_from),
                message,
            ),
            ApiError::Log(LogError::Unavailable(_)) => (
                Code::Unavailable,
                "EVENT_LOG_UNAVAILABLE",
                HashMap::new(),
                message,
            ),
            ApiError::TooManySubscriptions(e) => {
                let (reason, scope, limit) = match e {
                    SubscribeError::ConnectionFull { limit } => {
                        ("TOO_MANY_SUBSCRIPTIONS", "connection", *limit as u64)
                    }
                    SubscribeError::ServiceFull { limit } => {
                        ("TOO_MANY_SUBSCRIPTIONS", "service", *limit as u64)
                    }
                    SubscribeError::ConnectionBytesFull { limit, .. } => {
                        ("SUBSCRIPTION_MEMORY_BUDGET", "connection", *limit)
                    }
                    SubscribeError::ServiceBytesFull { limit, .. } => {
                        ("SUBSCRIPTION_MEMORY_BUDGET", "service", *limit)
                    }
                    SubscribeError::Log(_) => ("TOO_MANY_SUBSCRIPTIONS", "service", 0),
                };
                (
                    Code::ResourceExhausted,
                    reason,
                    HashMap::from([
                        ("scope".to_owned(), scope.to_owned()),
                        ("limit".to_owned(), limit.to_string()),
                    ]),
                    message,
                )
            }
            ApiError::Stats(_) => (
                Code::Unavailable,
                "STATS_UNAVAILABLE",
                HashMap::new(),
                message,
            ),
            ApiError::Group(e) => {
                let (code, reason, metadata) = match e {
                    GroupError::NotFound { account, name } => (
                        Code::NotFound,
                        "GROUP_NOT_FOUND",
                        group_metadata(account, name),
                    ),
                    GroupError::AlreadyExists { account, name } => (
                        Code::AlreadyExists,
                        "GROUP_ALREADY_EXISTS",
                        group_metadata(account, name),
                    ),
                    GroupError::TooMany { account, limit } => (
                        Code::ResourceExhausted,
                        "TOO_MANY_GROUPS",
                        HashMap::from([
                            ("account".to_owned(), account.clone()),
                            ("limit".to_owned(), limit.to_string()),
                        ]),
                    ),
                    GroupError::Store(_) | GroupError::Log(_) => {
                        (Code::Unavailable, "GROUP_STATE_UNAVAILABLE", HashMap::new())
                    }
                    GroupError::Unsupported(_) => (
                        Code::FailedPrecondition,
                        "GROUPS_UNSUPPORTED",
                        HashMap::new(),
                    ),
                };
                (code, reason, metadata, message)
            }
            ApiError::GroupDeleted { name } => (
                Code::NotFound,
                "GROUP_NOT_FOUND",
                HashMap::from([("group".to_owned(), name.clone())]),
                message,
            ),
            ApiError::GroupShuttingDown => {
                (Code::Unavailable, "SHUTTING_DOWN", HashMap::new(), message)
            }
            ApiError::UnknownAccount { field, account, .. } => (
                Code::NotFound,
                "ACCOUNT_NOT_FOUND",
                HashMap::from([
                    ("field".to_owned(), (*field).to_owned()),
                    ("account".to_owned(), account.clone()),
                ]),
                message,
            ),
            ApiError::Unauthenticated { .. } => (
                Code::Unauthenticated,
                "UNAUTHENTICATED",
                HashMap::new(),
                message,
            ),
            ApiError::PermissionDenied { client, permission } => (
                Code::PermissionDenied,
                "PERMISSION_DENIED",
                HashMap::from([
                    ("client".to_owned(), client.clone()),
                    ("permission".to_owned(), permission.clone()),
                ]),
                message,
            ),
            ApiError::StreamEnded(StreamEnd::ShuttingDown { resume_after }) => (
                Code::Unavailable,
                "SHUTTING_DOWN",
                resume_metadata(resume_after),
                format!("server shutting down; reconnect with resume_after={resume_after}"),
            ),
            ApiError::StreamEnded(StreamEnd::FellBehind {
                resume_after,
                error,
            }) => (
                Code::OutOfRange,
                "SUBSCRIBER_FELL_BEHIND",
                resume_metadata(resume_after),
                format!(
                    "subscriber fell behind the retained event log after cursor {resume_after}: {error}"
                ),
            ),
            ApiError::StreamEnded(StreamEnd::LogFailed {
                resume_after,
                error,
            }) => (
                Code::Unavailable,
                "EVENT_LOG_UNAVAILABLE",
                resume_metadata(resume_after),
                format!("{error}; reconnect with resume_after={resume_after}"),
            ),
        };
        let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
        if let ApiError::InvalidArgument { field, reason } = &error {
            details.add_bad_request_violation(*field, reason.clone());
        }
        Status::with_error_details(code, message, details)
    }
}
