//! The one map from failures to gRPC statuses.
//!
//! Handlers and the tenant layer return [`ApiError`]. Each variant becomes a status with a short
//! public message and `google.rpc` details: `ErrorInfo` with an UPPER_SNAKE reason, `BadRequest`
//! field violations, `QuotaFailure` or `RetryInfo`. Internal failures are logged once with
//! their cause, and the caller sees only a generic message.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
use tracing::error;

use crate::db::DbError;

/// The `ErrorInfo.domain` of every error Ally returns.
pub const ERROR_DOMAIN: &str = "ally.v1";

/// A failure that a handler reports to its caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    #[error("{resource} already exists")]
    AlreadyExists {
        resource: &'static str,
        field: &'static str,
    },
    #[error("{message}")]
    Unauthenticated {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    #[error("the tenant is suspended: {reason}")]
    TenantSuspended { reason: String },
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    Aborted {
        reason: &'static str,
        message: String,
    },
    #[error("{description}")]
    QuotaExceeded {
        subject: String,
        description: String,
    },
    #[error("{message}")]
    RetryLater {
        reason: &'static str,
        message: String,
        retry_after: Duration,
    },
    #[error("the tenant's rate limit is exceeded; retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// Text of the QuotaFailure violation, naming the plan's limit.
        description: String,
        retry_after: Duration,
    },
    #[error("service unavailable")]
    Unavailable(#[source] DbError),
    #[error("internal error")]
    Database(#[from] diesel::result::Error),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// Builds an INVALID_ARGUMENT error for one field, for example `("email", "must contain @")`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn permission_denied(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::PermissionDenied {
            reason,
            message: message.into(),
        }
    }

    pub fn unauthenticated(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Unauthenticated {
            reason,
            message: message.into(),
        }
    }

    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError::Internal(error.into())
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Query(error) => ApiError::from(error),
            other => ApiError::Unavailable(other),
        }
    }
}

impl crate::db::retry::Transient for ApiError {
    fn is_transient(&self) -> bool {
        match self {
            ApiError::Database(error) => error.is_transient(),
            _ => false,
        }
    }
}

fn info(code: Code, message: String, reason: &str) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
    )
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let message = error.to_string();
        match error {
            ApiError::InvalidArgument(violations) => {
                let summary = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("invalid request: {summary}"),
                    ErrorDetails::with_bad_request(violations),
                )
            }
            ApiError::NotFound { .. } => info(Code::NotFound, message, "NOT_FOUND"),
            ApiError::AlreadyExists { field, .. } => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_error_info(
                    "ALREADY_EXISTS",
                    ERROR_DOMAIN,
                    [("field".to_string(), field.to_string())],
                ),
            ),
            ApiError::Unauthenticated { reason, .. } => {
                info(Code::Unauthenticated, message, reason)
            }
            ApiError::PermissionDenied { reason, .. } => {
                info(Code::PermissionDenied, message, reason)
            }
            ApiError::TenantSuspended { reason } => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(
                    "TENANT_SUSPENDED",
                    ERROR_DOMAIN,
                    [("suspended_reason".to_string(), reason)],
                ),
            ),
            ApiError::FailedPrecondition { reason, .. } => {
                info(Code::FailedPrecondition, message, reason)
            }
            ApiError::Aborted { reason, .. } => info(Code::Aborted, message, reason),
            ApiError::QuotaExceeded {
                subject,
                description,
            } => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_quota_failure_violation(subject, description),
            ),
            ApiError::RetryLater {
                reason,
                retry_after,
                ..
            } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.set_error_info(reason, ERROR_DOMAIN, []);
                Status::with_error_details(Code::Unavailable, message, details)
            }
            ApiError::RateLimited {
                description,
                retry_after,
            } => {
                let mut details = ErrorDetails::with_quota_failure_violation(
                    "tenant:requests_per_second",
                    description,
                );
                details.set_retry_info(Some(retry_after));
                details.set_error_info("RATE_LIMITED", ERROR_DOMAIN, []);
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ApiError::Unavailable(cause) => {
                error!(error = %cause, "the database is unavailable");
                info(Code::Unavailable, message, "DATABASE_UNAVAILABLE")
            }
            ApiError::Database(cause) => {
                error!(error = %cause, "database query failed");
                info(Code::Internal, message, "INTERNAL")
            }
            ApiError::Internal(cause) => {
                error!(error = %cause, "request failed");
                info(Code::Internal, message, "INTERNAL")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(status: &Status) -> Option<String> {
        status.get_details_error_info().map(|info| info.reason)
    }

    #[test]
    fn codes_and_reasons() {
        let cases: Vec<(ApiError, Code, &str)> = vec![
            (
                ApiError::invalid("email", "must contain @"),
                Code::InvalidArgument,
                "",
            ),
            (
                ApiError::NotFound { resource: "user" },
                Code::NotFound,
                "NOT_FOUND",
            ),
            (
                ApiError::AlreadyExists {
                    resource: "user",
                    field: "email",
                },
                Code::AlreadyExists,
                "ALREADY_EXISTS",
            ),
            (
                ApiError::unauthenticated("INVALID_CREDENTIALS", "bad"),
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
            ),
            (
                ApiError::permission_denied("ROLE_TOO_LOW", "no"),
                Code::PermissionDenied,
                "ROLE_TOO_LOW",
            ),
            (
                ApiError::failed_precondition("LAST_OWNER", "no"),
                Code::FailedPrecondition,
                "LAST_OWNER",
            ),
            (
                ApiError::Aborted {
                    reason: "ETAG_MISMATCH",
                    message: "stale".into(),
                },
                Code::Aborted,
                "ETAG_MISMATCH",
            ),
            (
                ApiError::internal(std::io::Error::other("disk on fire")),
                Code::Internal,
                "INTERNAL",
            ),
            (
                ApiError::Unavailable(DbError::PoolTimedOut(Duration::from_secs(1))),
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
            ),
        ];
        for (error, code, expected_reason) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{status:?}");
            if !expected_reason.is_empty() {
                assert_eq!(
                    reason(&status).as_deref(),
                    Some(expected_reason),
                    "{status:?}"
                );
            }
        }
    }

    #[test]
    fn invalid_argument_names_fields() {
        let status = Status::from(ApiError::invalid("email", "must contain @"));

        assert!(
            status.message().contains("email: must contain @"),
            "{}",
            status.message()
        );
        let bad_request = status.get_details_bad_request().expect("BadRequest detail");
        assert_eq!(bad_request.field_violations[0].field, "email");
    }

    #[test]
    fn internal_hides_cause() {
        let status = Status::from(ApiError::internal(std::io::Error::other(
            "password=hunter2",
        )));

        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn quota_failure_detail() {
        let status = Status::from(ApiError::QuotaExceeded {
            subject: "tenant:users".into(),
            description: "the free plan allows 5 users".into(),
        });

        assert_eq!(status.code(), Code::ResourceExhausted);
        let quota = status
            .get_details_quota_failure()
            .expect("QuotaFailure detail");
        assert_eq!(quota.violations[0].subject, "tenant:users");
    }

    #[test]
    fn rate_limited_details() {
        let status = Status::from(ApiError::RateLimited {
            description: "the free plan allows 5 requests per second".into(),
            retry_after: Duration::from_millis(150),
        });

        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason(&status).as_deref(), Some("RATE_LIMITED"));
        let quota = status
            .get_details_quota_failure()
            .expect("QuotaFailure detail");
        assert_eq!(quota.violations[0].subject, "tenant:requests_per_second");
        let retry = status.get_details_retry_info().expect("RetryInfo detail");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(150)));
    }
}
