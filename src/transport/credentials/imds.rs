//! EC2 instance metadata (IMDSv2): the instance profile's role credentials.
//!
//! A session token comes from `PUT /latest/api/token` and is reused until
//! shortly before its TTL ends; every metadata GET carries it. IMDSv1 (no
//! token) is deliberately not supported: it is the variant SSRF attacks
//! abuse, and instances can (and should) disable it.
//!
//! Off EC2 nothing answers at 169.254.169.254, so the timeouts are short and
//! an unreachable service is reported as "no credentials here" rather than
//! as a failure: it is the last provider of the chain.

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::document::parse_credentials_json;
use super::fetch::{header_safe, CredentialsHttp, Fetched};
use super::{
    provide_from_link, provider_error, ChainLink, Credentials, Lookup, ProvideCredentials,
};
use crate::error::Result;
use crate::transport::{Environment, HttpOptions};

const NAME: &str = "instance metadata (IMDS)";

const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const DEFAULT_ENDPOINT_IPV6: &str = "http://[fd00:ec2::254]";
const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

/// Session token lifetime asked for (the maximum, six hours).
const TOKEN_TTL: Duration = Duration::from_secs(21_600);
/// A token is replaced this long before its TTL ends, so that one never
/// expires between being read and being used.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// Short, so that a machine off EC2 gives up fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(2);
/// One retry for 5xx and dropped responses; an endpoint that cannot be
/// connected to at all is not retried.
const ATTEMPTS: u32 = 2;

/// A session token and when to stop using it (monotonic: it is our own
/// TTL bookkeeping, not a wall-clock expiry).
struct SessionToken {
    value: String,
    replace_at: Instant,
}

/// Credentials of the EC2 instance profile through IMDSv2.
///
/// The endpoint is `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else
/// `http://[fd00:ec2::254]` when `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` is
/// `IPv6`, else `http://169.254.169.254`;
/// `AWS_EC2_METADATA_DISABLED=true` turns the provider off. These are read
/// once, when the provider is made.
pub struct ImdsProvider {
    /// The endpoint, or why the configured one is invalid.
    endpoint: std::result::Result<String, String>,
    disabled: bool,
    http: CredentialsHttp,
    token: Mutex<Option<SessionToken>>,
}

impl ImdsProvider {
    /// A provider configured by `env`, with `http`'s limits (timeouts capped
    /// at 1 s to connect and 2 s per request).
    pub fn new(env: &Environment, http: &HttpOptions) -> ImdsProvider {
        let disabled = env
            .var("AWS_EC2_METADATA_DISABLED")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let endpoint = match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            Some(url) => crate::transport::validate_endpoint(&url).map_err(|_| {
                format!("AWS_EC2_METADATA_SERVICE_ENDPOINT {url:?} is not an http(s) URL")
            }),
            None => match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
                Some(mode) if mode.trim().eq_ignore_ascii_case("ipv6") => {
                    Ok(DEFAULT_ENDPOINT_IPV6.to_owned())
                }
                Some(mode) if !mode.trim().eq_ignore_ascii_case("ipv4") => Err(format!(
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE {mode:?} is neither IPv4 nor IPv6"
                )),
                _ => Ok(DEFAULT_ENDPOINT.to_owned()),
            },
        };
        ImdsProvider {
            endpoint,
            disabled,
            http: CredentialsHttp::local(CONNECT_TIMEOUT, TOTAL_TIMEOUT, http),
            token: Mutex::new(None),
        }
    }

    /// A cached session token, or a new one.
    fn session_token(&self, endpoint: &str) -> std::result::Result<String, TokenError> {
        // Held across the PUT: concurrent callers wait for one token rather
        // than each asking for their own.
        let mut cached = self.token.lock();
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.replace_at {
                return Ok(token.value.clone());
            }
        }
        let url = format!("{endpoint}{TOKEN_PATH}");
        let requested_at = Instant::now();
        let fetched = self
            .http
            .send_with_retry(ATTEMPTS, || {
                http::Request::put(&url)
                    .header(
                        "x-aws-ec2-metadata-token-ttl-seconds",
                        TOKEN_TTL.as_secs().to_string(),
                    )
                    .body(Vec::new())
            })
            .map_err(|e| TokenError::Unreachable(format!("{url}: {}", e.message)))?;
        match fetched.status {
            200..=299 => {}
            403 => {
                return Err(TokenError::Failed(format!(
                    "the IMDSv2 token request to {url} was refused (HTTP 403): instance metadata \
                     is disabled for this instance; kcheck does not fall back to IMDSv1"
                )))
            }
            404 | 405 => {
                return Err(TokenError::Failed(format!(
                    "{url} does not offer IMDSv2 session tokens (HTTP {}); kcheck does not fall \
                     back to IMDSv1",
                    fetched.status
                )))
            }
            status => {
                return Err(TokenError::Failed(format!(
                    "the IMDSv2 token request to {url} failed (HTTP {status}): {}",
                    crate::error::excerpt(&fetched.body)
                )))
            }
        }
        let value = fetched.body.trim().to_owned();
        if !header_safe(&value) {
            return Err(TokenError::Failed(format!(
                "{url} returned an empty or malformed session token"
            )));
        }
        *cached = Some(SessionToken {
            value: value.clone(),
            replace_at: requested_at + TOKEN_TTL - TOKEN_REFRESH_MARGIN,
        });
        Ok(value)
    }

    /// A metadata GET with the session token; a 401 (token expired or
    /// revoked) gets one more try with a new token.
    fn get(&self, endpoint: &str, path: &str) -> std::result::Result<Fetched, TokenError> {
        let url = format!("{endpoint}{path}");
        for attempt in 0..2 {
            let token = self.session_token(endpoint)?;
            let fetched = self
                .http
                .send_with_retry(ATTEMPTS, || {
                    http::Request::get(&url)
                        .header("x-aws-ec2-metadata-token", token.as_str())
                        .body(())
                })
                .map_err(|e| {
                    TokenError::Failed(format!("request to {url} failed: {}", e.message))
                })?;
            if fetched.status == 401 && attempt == 0 {
                *self.token.lock() = None;
                continue;
            }
            return Ok(fetched);
        }
        Err(TokenError::Failed(format!(
            "{url} rejected a fresh session token (HTTP 401)"
        )))
    }

    fn load(&self, endpoint: &str) -> std::result::Result<Lookup, TokenError> {
        let roles = self.get(endpoint, CREDENTIALS_PATH)?;
        if roles.status == 404 {
            return Ok(Lookup::NotConfigured(format!(
                "{endpoint} reports no IAM role attached to this instance"
            )));
        }
        if !roles.is_success() {
            return Err(TokenError::Failed(format!(
                "{endpoint}{CREDENTIALS_PATH} answered HTTP {}: {}",
                roles.status,
                crate::error::excerpt(&roles.body)
            )));
        }
        let Some(role) = roles.body.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Ok(Lookup::NotConfigured(format!(
                "{endpoint} reports no IAM role attached to this instance"
            )));
        };
        // IAM role names are [\w+=,.@-]; anything else would change the path.
        let valid_role = role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !valid_role {
            return Err(TokenError::Failed(format!(
                "{endpoint}{CREDENTIALS_PATH} returned a malformed role name {role:?}"
            )));
        }
        let path = format!("{CREDENTIALS_PATH}{role}");
        let fetched = self.get(endpoint, &path)?;
        if !fetched.is_success() {
            return Err(TokenError::Failed(format!(
                "{endpoint}{path} answered HTTP {}: {}",
                fetched.status,
                crate::error::excerpt(&fetched.body)
            )));
        }
        parse_credentials_json(&fetched.body)
            .map(Lookup::Found)
            .map_err(|e| TokenError::Failed(format!("{endpoint}{path}: {e}")))
    }
}

/// Why a metadata request failed.
enum TokenError {
    /// Nothing answered the token request: probably not on EC2.
    Unreachable(String),
    /// IMDS answered, but not with what was needed.
    Failed(String),
}

// Not derived: the session token is a credential for the metadata service.
impl fmt::Debug for ImdsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImdsProvider")
            .field("endpoint", &self.endpoint)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl ChainLink for ImdsProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn lookup(&self) -> Result<Lookup> {
        if self.disabled {
            return Ok(Lookup::NotConfigured(
                "disabled by AWS_EC2_METADATA_DISABLED".to_owned(),
            ));
        }
        let endpoint = self
            .endpoint
            .as_deref()
            .map_err(|e| provider_error(NAME, e))?;
        match self.load(endpoint) {
            Ok(lookup) => Ok(lookup),
            Err(TokenError::Unreachable(message)) => Ok(Lookup::NotConfigured(format!(
                "no instance metadata service answered at {message}"
            ))),
            Err(TokenError::Failed(message)) => Err(provider_error(NAME, message)),
        }
    }
}

impl ProvideCredentials for ImdsProvider {
    fn provide_credentials(&self) -> Result<Credentials> {
        provide_from_link(self)
    }
}
