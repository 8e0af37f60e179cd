//! The blocking client for AWS's JSON protocols (`X-Amz-Target` style), shared
//! by Kinesis (JSON 1.1) and DynamoDB (JSON 1.0): one keep-alive ureq agent,
//! SigV4 on every attempt, a capped response body, AWS errors parsed into
//! [`Error::Service`] and retries decided by [`Error::is_retryable`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;
use ureq::unversioned::transport::DefaultConnector;

use crate::error::{Error, ErrorCode, Result};
use crate::transport::body::{read_body, with_request_buffer};
use crate::transport::credentials::SharedCredentialsProvider;
use crate::transport::resolver::CachingResolver;
use crate::transport::retry::RetryPolicy;
use crate::transport::signing::sign_request;
use crate::transport::{AwsConfig, Service};

/// Service messages longer than this are cut (AWS's are a sentence).
const MAX_SERVICE_MESSAGE_CHARS: usize = 1000;

/// Idle connections the pool keeps (ureq keeps 10 in all by default).
const MAX_IDLE_CONNECTIONS: usize = 64;
/// Each connection's input and output buffer (ureq: 128 KiB each). A
/// consumer holds a connection per shard; a page larger than the buffer
/// only takes more reads.
const CONNECTION_BUFFER_BYTES: usize = 16 << 10;

/// A signed JSON-protocol client for one service at one endpoint.
/// Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub(crate) struct JsonClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    agent: ureq::Agent,
    endpoint: String,
    region: String,
    service: Service,
    credentials: SharedCredentialsProvider,
    retry: RetryPolicy,
    request_timeout: Duration,
    max_response_bytes: u64,
}

impl JsonClient {
    /// A client for `service` as `config` resolves it.
    pub(crate) fn new(config: &AwsConfig, service: Service) -> Result<JsonClient> {
        let endpoint = config.endpoint(service)?;
        let http = config.http_options();
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(http.connect_timeout))
            .timeout_global(Some(http.request_timeout))
            .max_idle_connections(MAX_IDLE_CONNECTIONS)
            .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
            .input_buffer_size(CONNECTION_BUFFER_BYTES)
            .output_buffer_size(CONNECTION_BUFFER_BYTES)
            .user_agent(concat!("kcheck/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(
            agent_config,
            DefaultConnector::default(),
            CachingResolver::default(),
        );
        Ok(JsonClient {
            inner: Arc::new(Inner {
                agent,
                endpoint,
                region: config.region().to_owned(),
                service,
                credentials: config.credentials_provider(),
                retry: config.retry_policy(),
                request_timeout: http.request_timeout,
                max_response_bytes: http.max_response_bytes,
            }),
        })
    }

    /// The endpoint requests go to.
    pub(crate) fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The retry policy of [`JsonClient::call`].
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// Calls `operation` with the client's retry policy.
    pub(crate) fn call<Req, Resp>(&self, operation: &'static str, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_with(operation, request, &self.inner.retry)
    }

    /// Calls `operation`, retrying as `retry` allows.
    pub(crate) fn call_with<Req, Resp>(
        &self,
        operation: &'static str,
        request: &Req,
        retry: &RetryPolicy,
    ) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_decoding(operation, request, retry, |body| {
            serde_json::from_slice(body)
        })
    }

    /// Calls `operation`, retrying as `retry` allows, and makes the result
    /// of a successful response's body with `decode`: for bodies decoded
    /// piece by piece as they are parsed rather than into one value.
    pub(crate) fn call_decoding<Req, T>(
        &self,
        operation: &'static str,
        request: &Req,
        retry: &RetryPolicy,
        mut decode: impl FnMut(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T>
    where
        Req: Serialize + ?Sized,
    {
        with_request_buffer(|body| {
            encode_request(operation, request, body)?;
            retry.run(|_| {
                self.send_once(operation, body, |status, bytes| {
                    decode_response_with(operation, status, bytes, &mut decode)
                })
            })
        })
    }

    /// Calls `operation` like [`JsonClient::call_with`], but hands every decoded
    /// response to `inspect` together with its raw body, so a caller can read
    /// service-specific fields of an error body that [`Error::Service`] does
    /// not keep (DynamoDB's `Item` and `CancellationReasons`). What `inspect`
    /// returns is the attempt's result: its retryable errors are retried.
    pub(crate) fn call_inspecting<Req, Resp, T>(
        &self,
        operation: &'static str,
        request: &Req,
        retry: &RetryPolicy,
        mut inspect: impl FnMut(Result<Resp>, &[u8]) -> Result<T>,
    ) -> Result<T>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        with_request_buffer(|body| {
            encode_request(operation, request, body)?;
            retry.run(|_| {
                self.send_once(operation, body, |status, bytes| {
                    inspect(decode_response(operation, status, bytes), bytes)
                })
            })
        })
    }

    /// One signed POST; hands the status and the (capped) body to `handle`.
    fn send_once<T>(
        &self,
        operation: &'static str,
        body: &[u8],
        handle: impl FnOnce(u16, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let inner = &*self.inner;
        let credentials = inner.credentials.provide_credentials()?;
        let mut request = http::Request::post(&inner.endpoint)
            .header("content-type", inner.service.content_type())
            .header(
                "x-amz-target",
                format!("{}.{}", inner.service.target_prefix(), operation),
            )
            .body(body)
            .map_err(|e| Error::Config(format!("{operation}: invalid request: {e}")))?;
        sign_request(
            &mut request,
            &credentials,
            &inner.region,
            inner.service.signing_name(),
            SystemTime::now(),
        )?;
        let transport_error = |message: String| Error::Transport {
            operation,
            endpoint: inner.endpoint.clone(),
            message,
        };
        // Within the thread's deadline, if it has one (lease writes, close).
        let timeout = super::deadline::bounded(inner.request_timeout);
        if timeout.is_zero() {
            return Err(Error::Timeout(format!(
                "{operation}: no time left to send the request"
            )));
        }
        let request = inner
            .agent
            .configure_request(request)
            .timeout_global(Some(timeout))
            .build();
        let mut response = inner
            .agent
            .run(request)
            .map_err(|e| transport_error(e.to_string()))?;
        let status = response.status().as_u16();
        let limit = inner.max_response_bytes;
        let expected = response.body().content_length().unwrap_or(0).min(limit);
        // ureq refuses the read that would see the end once `limit` bytes
        // are in: one byte more lets a body of exactly `limit` through.
        let reader = response
            .body_mut()
            .with_config()
            .limit(limit.saturating_add(1))
            .reader();
        read_body(reader, expected as usize, |bytes| handle(status, bytes)).map_err(|e| {
            match ureq::Error::from(e) {
                ureq::Error::BodyExceedsLimit(_) => Error::ResponseTooLarge { operation, limit },
                other => transport_error(format!("reading the response body: {other}")),
            }
        })?
    }
}

fn encode_request<Req: Serialize + ?Sized>(
    operation: &'static str,
    request: &Req,
    body: &mut Vec<u8>,
) -> Result<()> {
    serde_json::to_writer(body, request)
        .map_err(|e| Error::Config(format!("{operation}: request cannot be encoded: {e}")))
}

/// Turns a status and body into the typed response or the typed error.
pub(crate) fn decode_response<Resp: DeserializeOwned>(
    operation: &'static str,
    status: u16,
    body: &[u8],
) -> Result<Resp> {
    decode_response_with(operation, status, body, |body| serde_json::from_slice(body))
}

/// Like [`decode_response`], with `decode` making the result of a success.
fn decode_response_with<T>(
    operation: &'static str,
    status: u16,
    body: &[u8],
    decode: impl FnOnce(&[u8]) -> serde_json::Result<T>,
) -> Result<T> {
    if (200..300).contains(&status) {
        // An empty 200 body is `{}` for operations without output.
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            body
        };
        return decode(body).map_err(|e| Error::MalformedResponse {
            operation,
            status,
            // serde quotes the offending value whole: bound it too.
            detail: format!(
                "{}; body starts {}",
                crate::error::excerpt(&e.to_string()),
                excerpt(body)
            ),
        });
    }
    #[derive(serde::Deserialize)]
    struct AwsErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    match serde_json::from_slice::<AwsErrorBody>(body) {
        Ok(AwsErrorBody {
            kind: Some(kind),
            message,
        }) => Err(Error::Service {
            operation,
            code: ErrorCode::parse(&kind),
            status,
            message: message.map_or_else(String::new, |m| {
                if m.chars().nth(MAX_SERVICE_MESSAGE_CHARS).is_some() {
                    crate::error::excerpt(&m)
                } else {
                    m
                }
            }),
        }),
        _ => Err(Error::MalformedResponse {
            operation,
            status,
            detail: format!("not an AWS error response; body starts {}", excerpt(body)),
        }),
    }
}

/// The start of a body, lossily decoded and on one line, for error messages.
fn excerpt(body: &[u8]) -> String {
    crate::error::excerpt(&String::from_utf8_lossy(&body[..body.len().min(1024)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Out {
        #[serde(rename = "Value")]
        value: u32,
    }

    #[test]
    fn success_bodies_decode() {
        let out: Out = decode_response("Op", 200, br#"{"Value": 7}"#).unwrap();
        assert_eq!(out.value, 7);
        let empty: std::collections::HashMap<String, u32> =
            decode_response("Op", 200, b"").unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn aws_error_bodies_become_service_errors() {
        let error = decode_response::<Out>(
            "PutItem",
            400,
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
        )
        .unwrap_err();
        match error {
            Error::Service {
                operation,
                code,
                status,
                message,
            } => {
                assert_eq!(operation, "PutItem");
                assert_eq!(code, ErrorCode::ConditionalCheckFailed);
                assert_eq!(status, 400);
                assert_eq!(message, "The conditional request failed");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unparseable_bodies_are_malformed_with_an_excerpt() {
        let error = decode_response::<Out>("Op", 502, b"<html>Bad Gateway</html>").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("HTTP 502") && text.contains("Bad Gateway"),
            "{text}"
        );
        let error = decode_response::<Out>("Op", 200, br#"{"Value": "seven"}"#).unwrap_err();
        assert!(matches!(
            error,
            Error::MalformedResponse { status: 200, .. }
        ));
        let long = vec![b'x'; 10_000];
        let text = decode_response::<Out>("Op", 200, &long)
            .unwrap_err()
            .to_string();
        assert!(text.len() < 400, "excerpts are short: {}", text.len());
    }
}
