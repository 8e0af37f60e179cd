//! Status codes and their names.

use std::ffi::{c_char, CStr};

use crate::error::Error;

/// What a kcheck function reports. The numbers are fixed and append-only: a
/// retired number stays reserved. Functions return it as `uint32_t`-sized
/// values; compare with the constants, never assume the list is complete.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kcheck_status {
    /// Success.
    Ok = 0,
    /// An argument is NULL where a value is required, or out of range.
    InvalidArgument = 1,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 2,
    /// The wait ended before a result: no record within the timeout, or an
    /// operation's deadline passed. Not a failure for `kcheck_consumer_next`.
    TimedOut = 3,
    /// The consumer is closed: no record will come. The producer is
    /// closed: it takes no more records.
    Closed = 4,
    /// `idle_timeout` passed without a record: iteration is over, the
    /// consumer is still open.
    IdleTimeout = 5,
    /// An option or parameter is invalid (the message names it).
    InvalidConfig = 6,
    /// The shard's lease belongs to another consumer now; its checkpoint was
    /// refused.
    LeaseLost = 7,
    /// Kinesis or DynamoDB answered with an error (the message has its code).
    ServiceError = 8,
    /// A request could not reach the service.
    TransportError = 9,
    /// No usable AWS credentials.
    CredentialsError = 10,
    /// A service answered with a body kcheck could not read.
    MalformedResponse = 11,
    /// An internal error of kcheck.
    InternalError = 12,
    /// kcheck panicked inside this call; the handle is now poisoned.
    Panic = 13,
    /// The handle is unusable after an earlier panic; free it.
    Poisoned = 14,
    /// The handle was created in another process: this process is a fork
    /// of it. The handle's threads, connections and leases belong to the
    /// parent; create a new one here. `_free` of such a handle leaves it
    /// alone.
    Forked = 15,
    /// A callback of the host returned a failure: `kcheck_pipeline_run`
    /// stopped because its transform returned a status other than
    /// `KCHECK_STATUS_OK` (the message names that status and the record).
    CallbackFailed = 16,
}

impl kcheck_status {
    /// The status a library error maps to.
    pub(crate) fn of(error: &Error) -> kcheck_status {
        match error {
            Error::Service { .. } => kcheck_status::ServiceError,
            Error::Transport { .. } => kcheck_status::TransportError,
            Error::MalformedResponse { .. } | Error::ResponseTooLarge { .. } => {
                kcheck_status::MalformedResponse
            }
            Error::Credentials(_) => kcheck_status::CredentialsError,
            Error::Config(_) => kcheck_status::InvalidConfig,
            Error::InvalidArgument(_) => kcheck_status::InvalidArgument,
            Error::Timeout(_) => kcheck_status::TimedOut,
            Error::LeaseLost { .. } => kcheck_status::LeaseLost,
            _ => kcheck_status::InternalError,
        }
    }
}

/// The name of a status code, e.g. "KCHECK_STATUS_LEASE_LOST", as a static
/// NUL-terminated string; "KCHECK_STATUS_UNKNOWN" for a number this library
/// does not know.
///
/// Thread safety: may be called from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn kcheck_status_name(status: u32) -> *const c_char {
    status_name(status).as_ptr()
}

pub(crate) fn status_name(status: u32) -> &'static CStr {
    match status {
        0 => c"KCHECK_STATUS_OK",
        1 => c"KCHECK_STATUS_INVALID_ARGUMENT",
        2 => c"KCHECK_STATUS_INVALID_UTF8",
        3 => c"KCHECK_STATUS_TIMED_OUT",
        4 => c"KCHECK_STATUS_CLOSED",
        5 => c"KCHECK_STATUS_IDLE_TIMEOUT",
        6 => c"KCHECK_STATUS_INVALID_CONFIG",
        7 => c"KCHECK_STATUS_LEASE_LOST",
        8 => c"KCHECK_STATUS_SERVICE_ERROR",
        9 => c"KCHECK_STATUS_TRANSPORT_ERROR",
        10 => c"KCHECK_STATUS_CREDENTIALS_ERROR",
        11 => c"KCHECK_STATUS_MALFORMED_RESPONSE",
        12 => c"KCHECK_STATUS_INTERNAL_ERROR",
        13 => c"KCHECK_STATUS_PANIC",
        14 => c"KCHECK_STATUS_POISONED",
        15 => c"KCHECK_STATUS_FORKED",
        16 => c"KCHECK_STATUS_CALLBACK_FAILED",
        _ => c"KCHECK_STATUS_UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_name() {
        let statuses = [
            kcheck_status::Ok,
            kcheck_status::InvalidArgument,
            kcheck_status::InvalidUtf8,
            kcheck_status::TimedOut,
            kcheck_status::Closed,
            kcheck_status::IdleTimeout,
            kcheck_status::InvalidConfig,
            kcheck_status::LeaseLost,
            kcheck_status::ServiceError,
            kcheck_status::TransportError,
            kcheck_status::CredentialsError,
            kcheck_status::MalformedResponse,
            kcheck_status::InternalError,
            kcheck_status::Panic,
            kcheck_status::Poisoned,
            kcheck_status::Forked,
            kcheck_status::CallbackFailed,
        ];
        for status in statuses {
            let name = status_name(status as u32).to_str().unwrap();
            let expected =
                format!("{status:?}")
                    .chars()
                    .fold(String::from("KCHECK_STATUS"), |mut name, c| {
                        if c.is_uppercase() {
                            name.push('_');
                        }
                        name.push(c.to_ascii_uppercase());
                        name
                    });
            assert_eq!(name, expected);
        }
        assert_eq!(status_name(17).to_str().unwrap(), "KCHECK_STATUS_UNKNOWN");
    }
}
