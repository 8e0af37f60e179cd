//! The HTTP plumbing the credential providers share: a ureq agent with the
//! right timeouts, one request with a capped body and a small retry loop.
//! Messages quote only error bodies (a successful body holds the secret).

use std::time::Duration;

use crate::transport::HttpOptions;

/// Credential documents are a few kilobytes; anything much larger is not one.
pub(crate) const MAX_CREDENTIALS_BODY: u64 = 1024 * 1024;

/// A status and a UTF-8 body.
pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Fetched {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request produced no response.
#[derive(Debug)]
pub(crate) struct FetchError {
    /// What the HTTP layer reported (never a header value or body).
    pub(crate) message: String,
    /// Refused, unresolvable or no connection in time: the endpoint is
    /// probably not there at all.
    pub(crate) unreachable: bool,
}

/// One blocking HTTP client for a credential endpoint.
#[derive(Clone)]
pub(crate) struct CredentialsHttp {
    agent: ureq::Agent,
    max_body: u64,
}

impl std::fmt::Debug for CredentialsHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsHttp")
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl CredentialsHttp {
    /// For remote services (STS): the client's timeouts and the usual proxy
    /// settings.
    pub(crate) fn remote(http: &HttpOptions) -> CredentialsHttp {
        Self::build(http.connect_timeout, http.request_timeout, http, true)
    }

    /// For link-local and loopback endpoints (ECS, EKS, IMDS): never through
    /// a proxy, which could not reach them and must not see the token.
    pub(crate) fn local(connect: Duration, total: Duration, http: &HttpOptions) -> CredentialsHttp {
        Self::build(
            connect.min(http.connect_timeout),
            total.min(http.request_timeout),
            http,
            false,
        )
    }

    fn build(connect: Duration, total: Duration, http: &HttpOptions, proxy: bool) -> Self {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(connect))
            .timeout_global(Some(total))
            // Credential endpoints do not redirect; following one could carry
            // an authorization token somewhere else.
            .max_redirects(0)
            .user_agent(concat!("kcheck/", env!("CARGO_PKG_VERSION")));
        if !proxy {
            config = config.proxy(None);
        }
        CredentialsHttp {
            agent: config.build().into(),
            max_body: MAX_CREDENTIALS_BODY.min(http.max_response_bytes),
        }
    }

    /// Sends one request and reads the whole (capped) body.
    pub(crate) fn send(
        &self,
        request: http::Request<impl ureq::AsSendBody>,
    ) -> Result<Fetched, FetchError> {
        let mut response = self.agent.run(request).map_err(|e| FetchError {
            unreachable: is_unreachable(&e),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .read_to_vec()
            .map_err(|e| FetchError {
                message: match e {
                    ureq::Error::BodyExceedsLimit(_) => {
                        format!("response body exceeds {} bytes", self.max_body)
                    }
                    other => format!("reading the response body: {other}"),
                },
                unreachable: false,
            })?;
        let body = String::from_utf8(bytes).map_err(|_| FetchError {
            message: format!("HTTP {status}: response body is not UTF-8"),
            unreachable: false,
        })?;
        Ok(Fetched { status, body })
    }

    /// `send` up to `attempts` times while it fails with a 5xx or without a
    /// response (but not when the endpoint is unreachable), pausing briefly
    /// in between. `make` builds each attempt's
    /// request (token files are re-read by the caller beforehand).
    pub(crate) fn send_with_retry<B: ureq::AsSendBody>(
        &self,
        attempts: u32,
        mut make: impl FnMut() -> Result<http::Request<B>, http::Error>,
    ) -> Result<Fetched, FetchError> {
        let mut attempt = 1;
        loop {
            // A request that cannot be built will not build on a retry either.
            let request = make().map_err(|e| FetchError {
                message: format!("invalid request: {e}"),
                unreachable: false,
            })?;
            let outcome = self.send(request);
            let retry = match &outcome {
                Ok(fetched) => fetched.status >= 500,
                Err(e) => !e.unreachable,
            };
            if !retry || attempt >= attempts {
                return outcome;
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether a ureq error means nothing is listening there at all: refused,
/// unresolvable, unroutable, or no connection within the connect timeout.
/// Such a failure is not worth an immediate retry.
fn is_unreachable(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Timeout(timeout) => {
            matches!(timeout, ureq::Timeout::Connect | ureq::Timeout::Resolve)
        }
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
        ),
        _ => false,
    }
}

/// Checks that a token may be sent as a header value, without ever saying
/// what it is.
pub(crate) fn header_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}
