//! The one error type of kcheck, and the single place that decides which
//! failures are worth retrying.

use std::fmt;

/// Result alias used throughout kcheck.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in kcheck.
///
/// Messages name the operation and what was wrong; they never contain
/// credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service answered with an AWS error (`__type` and `message`).
    #[error("{operation}: {code} (HTTP {status}): {message}")]
    Service {
        /// The API operation, e.g. `GetRecords`.
        operation: &'static str,
        /// The parsed error code.
        code: ErrorCode,
        /// HTTP status of the response.
        status: u16,
        /// The service's message, possibly empty.
        message: String,
    },
    /// The request never produced a response: connect, DNS, TLS, timeout or
    /// a dropped connection.
    #[error("{operation}: request to {endpoint} failed: {message}")]
    Transport {
        /// The API operation.
        operation: &'static str,
        /// Where the request went.
        endpoint: String,
        /// What the HTTP layer reported.
        message: String,
    },
    /// The response could not be understood: not JSON, truncated, wrong types,
    /// an HTML error page from a proxy.
    #[error("{operation}: malformed response (HTTP {status}): {detail}")]
    MalformedResponse {
        /// The API operation.
        operation: &'static str,
        /// HTTP status of the response.
        status: u16,
        /// What was wrong, with a short excerpt of the body.
        detail: String,
    },
    /// The response body was larger than the client accepts.
    #[error("{operation}: response body exceeds the {limit}-byte limit")]
    ResponseTooLarge {
        /// The API operation.
        operation: &'static str,
        /// The configured cap in bytes.
        limit: u64,
    },
    /// No credentials could be found, or a configured provider failed.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A configuration value is missing or invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A call's argument is wrong for this consumer (for example a record it
    /// never returned).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bounded wait ran out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// This consumer no longer holds the shard's lease: another consumer took
    /// it (or it expired), so this consumer may not checkpoint it.
    #[error("lease lost: shard {shard_id} is no longer owned by this consumer")]
    LeaseLost {
        /// The shard whose lease was lost.
        shard_id: String,
    },
    /// A bug in kcheck (a panic caught at a thread or ABI boundary).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether repeating the same request may succeed: throttling, HTTP 5xx
    /// and connection failures. Client errors are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Service { code, status, .. } => code.is_throttling() || *status >= 500,
            Error::Transport { .. } => true,
            // A 5xx HTML page from a proxy or a body cut off mid-stream is a
            // passing fault of the path, not of the request.
            Error::MalformedResponse { status, .. } => *status >= 500 || *status == 0,
            Error::ResponseTooLarge { .. }
            | Error::Credentials(_)
            | Error::Config(_)
            | Error::InvalidArgument(_)
            | Error::Timeout(_)
            | Error::LeaseLost { .. }
            | Error::Internal(_) => false,
        }
    }

    /// Whether a failed request may still have been applied: the answer was
    /// lost (a dropped connection, a timeout, a body cut off) or the service
    /// failed after accepting it (HTTP 5xx). A conditional write that fails
    /// this way is resolved by reading what the table holds, not by
    /// assuming either outcome.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Service { status, .. } | Error::MalformedResponse { status, .. } => {
                *status >= 500 || *status == 0
            }
            _ => false,
        }
    }

    /// Whether this is a problem of configuration or permissions that no
    /// retry fixes (a missing stream or table, access denied, a disabled
    /// key, invalid arguments, no credentials): the caller must hear of it
    /// instead of the consumer spinning on it.
    pub fn is_configuration(&self) -> bool {
        match self {
            Error::Service { code, .. } => {
                code.is_access_or_kms_configuration()
                    || matches!(
                        code,
                        ErrorCode::ResourceNotFound
                            | ErrorCode::InvalidArgument
                            | ErrorCode::Validation
                    )
            }
            Error::Credentials(_) | Error::Config(_) => true,
            _ => false,
        }
    }

    /// Whether this is a throttling error (the caller should slow down).
    pub fn is_throttling(&self) -> bool {
        matches!(self, Error::Service { code, .. } if code.is_throttling())
    }

    /// The AWS error code, when the service returned one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// AWS error codes kcheck acts on; anything else is kept verbatim in `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    ProvisionedThroughputExceeded,
    Throttling,
    LimitExceeded,
    RequestLimitExceeded,
    KmsThrottling,
    ConditionalCheckFailed,
    TransactionCanceled,
    ResourceNotFound,
    ResourceInUse,
    Validation,
    InvalidArgument,
    AccessDenied,
    ExpiredIterator,
    ExpiredNextToken,
    KmsAccessDenied,
    KmsDisabled,
    KmsInvalidState,
    KmsNotFound,
    KmsOptInRequired,
    InternalFailure,
    ServiceUnavailable,
    /// Any other code, as the service spelled it (namespace stripped).
    Other(String),
}

impl ErrorCode {
    /// Parses an AWS `__type` such as
    /// `com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException`
    /// or an `x-amzn-ErrorType` value such as `ThrottlingException:http://…`.
    pub fn parse(raw: &str) -> ErrorCode {
        let name = raw.rsplit('#').next().unwrap_or(raw);
        let name = name.split(':').next().unwrap_or(name).trim();
        match name {
            "ProvisionedThroughputExceededException" => ErrorCode::ProvisionedThroughputExceeded,
            "ThrottlingException" | "Throttling" | "ThrottledException" => ErrorCode::Throttling,
            "LimitExceededException" => ErrorCode::LimitExceeded,
            "RequestLimitExceeded" => ErrorCode::RequestLimitExceeded,
            "KMSThrottlingException" => ErrorCode::KmsThrottling,
            "ConditionalCheckFailedException" => ErrorCode::ConditionalCheckFailed,
            "TransactionCanceledException" => ErrorCode::TransactionCanceled,
            "ResourceNotFoundException" => ErrorCode::ResourceNotFound,
            "ResourceInUseException" => ErrorCode::ResourceInUse,
            "ValidationException" => ErrorCode::Validation,
            "InvalidArgumentException" => ErrorCode::InvalidArgument,
            "AccessDeniedException" | "AccessDenied" => ErrorCode::AccessDenied,
            "ExpiredIteratorException" => ErrorCode::ExpiredIterator,
            "ExpiredNextTokenException" => ErrorCode::ExpiredNextToken,
            "KMSAccessDeniedException" => ErrorCode::KmsAccessDenied,
            "KMSDisabledException" => ErrorCode::KmsDisabled,
            "KMSInvalidStateException" => ErrorCode::KmsInvalidState,
            "KMSNotFoundException" => ErrorCode::KmsNotFound,
            "KMSOptInRequired" => ErrorCode::KmsOptInRequired,
            "InternalFailure" | "InternalServerError" | "InternalFailureException" => {
                ErrorCode::InternalFailure
            }
            "ServiceUnavailable" | "ServiceUnavailableException" => ErrorCode::ServiceUnavailable,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    /// The service's name for this code.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            ErrorCode::Throttling => "ThrottlingException",
            ErrorCode::LimitExceeded => "LimitExceededException",
            ErrorCode::RequestLimitExceeded => "RequestLimitExceeded",
            ErrorCode::KmsThrottling => "KMSThrottlingException",
            ErrorCode::ConditionalCheckFailed => "ConditionalCheckFailedException",
            ErrorCode::TransactionCanceled => "TransactionCanceledException",
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::ResourceInUse => "ResourceInUseException",
            ErrorCode::Validation => "ValidationException",
            ErrorCode::InvalidArgument => "InvalidArgumentException",
            ErrorCode::AccessDenied => "AccessDeniedException",
            ErrorCode::ExpiredIterator => "ExpiredIteratorException",
            ErrorCode::ExpiredNextToken => "ExpiredNextTokenException",
            ErrorCode::KmsAccessDenied => "KMSAccessDeniedException",
            ErrorCode::KmsDisabled => "KMSDisabledException",
            ErrorCode::KmsInvalidState => "KMSInvalidStateException",
            ErrorCode::KmsNotFound => "KMSNotFoundException",
            ErrorCode::KmsOptInRequired => "KMSOptInRequired",
            ErrorCode::InternalFailure => "InternalFailure",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            ErrorCode::Other(name) => name,
        }
    }

    /// Throttling codes: retried with backoff.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            ErrorCode::ProvisionedThroughputExceeded
                | ErrorCode::Throttling
                | ErrorCode::LimitExceeded
                | ErrorCode::RequestLimitExceeded
                | ErrorCode::KmsThrottling
        )
    }

    /// Configuration problems of the stream or key: report, never spin.
    pub fn is_access_or_kms_configuration(&self) -> bool {
        matches!(
            self,
            ErrorCode::AccessDenied
                | ErrorCode::KmsAccessDenied
                | ErrorCode::KmsDisabled
                | ErrorCode::KmsInvalidState
                | ErrorCode::KmsNotFound
                | ErrorCode::KmsOptInRequired
        )
    }
}

/// How many characters of an input or a body an error message quotes.
const EXCERPT_CHARS: usize = 120;

/// `text` quoted for an error message: at most [`EXCERPT_CHARS`]
/// characters, on one line, so a hostile or huge input (a 1 MB name, a
/// response body) never makes a huge message. Never call this on a secret
/// or on a successful credentials response.
pub(crate) fn excerpt(text: &str) -> String {
    let mut short: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        short.push('…');
    }
    format!("{:?}", short.trim())
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, status: u16) -> Error {
        Error::Service {
            operation: "Op",
            code: ErrorCode::parse(code),
            status,
            message: String::new(),
        }
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt("a\nb"), "\"a b\"");
        let huge = excerpt(&"x".repeat(1 << 20));
        assert!(huge.len() < 200 && huge.ends_with("…\""), "{huge}");
    }

    #[test]
    fn codes_parse_with_or_without_namespace_and_suffix() {
        assert_eq!(
            ErrorCode::parse("com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"),
            ErrorCode::ConditionalCheckFailed
        );
        assert_eq!(
            ErrorCode::parse("ThrottlingException:http://internal.amazon.com/coral/"),
            ErrorCode::Throttling
        );
        assert_eq!(
            ErrorCode::parse("SomethingNew"),
            ErrorCode::Other("SomethingNew".into())
        );
        for code in [
            ErrorCode::ProvisionedThroughputExceeded,
            ErrorCode::KmsOptInRequired,
            ErrorCode::ExpiredIterator,
            ErrorCode::ResourceInUse,
        ] {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retried() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "LimitExceededException",
            "RequestLimitExceeded",
            "KMSThrottlingException",
        ] {
            assert!(service(code, 400).is_retryable(), "{code}");
            assert!(service(code, 400).is_throttling(), "{code}");
        }
        assert!(service("InternalFailure", 500).is_retryable());
        assert!(service("ServiceUnavailable", 503).is_retryable());
        let transport = Error::Transport {
            operation: "Op",
            endpoint: "http://x".into(),
            message: "connection refused".into(),
        };
        assert!(transport.is_retryable());
        let proxy_page = Error::MalformedResponse {
            operation: "Op",
            status: 502,
            detail: "html".into(),
        };
        assert!(proxy_page.is_retryable());
        // The write may have landed: only a read can tell.
        assert!(transport.is_ambiguous() && proxy_page.is_ambiguous());
        assert!(service("InternalFailure", 500).is_ambiguous());
        assert!(!service("ThrottlingException", 400).is_ambiguous());
    }

    #[test]
    fn client_errors_are_final() {
        for code in [
            "ConditionalCheckFailedException",
            "ResourceNotFoundException",
            "ValidationException",
            "AccessDeniedException",
            "KMSAccessDeniedException",
            "KMSDisabledException",
            "KMSInvalidStateException",
            "KMSNotFoundException",
            "KMSOptInRequired",
            "InvalidArgumentException",
            "ExpiredIteratorException",
        ] {
            assert!(!service(code, 400).is_retryable(), "{code}");
        }
        assert!(ErrorCode::parse("KMSNotFoundException").is_access_or_kms_configuration());
        let garbled_ok = Error::MalformedResponse {
            operation: "Op",
            status: 200,
            detail: "bad".into(),
        };
        assert!(!garbled_ok.is_retryable());
        assert!(!Error::Config("x".into()).is_retryable());
        assert!(!Error::Credentials("x".into()).is_retryable());
        assert!(service("AccessDeniedException", 400).is_configuration());
        assert!(service("ResourceNotFoundException", 400).is_configuration());
        assert!(!service("ProvisionedThroughputExceededException", 400).is_configuration());
        assert!(!service("ConditionalCheckFailedException", 400).is_ambiguous());
        assert!(!Error::ResponseTooLarge {
            operation: "Op",
            limit: 1
        }
        .is_retryable());
    }
}
