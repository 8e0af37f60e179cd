//! Signing, error mapping over HTTP, malformed responses and retries, with a
//! misbehaving loopback proxy standing in for the network.

#[path = "support/stub_server.rs"]
mod stub_server;
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kcheck::kinesis::{KinesisClient, StreamRef};
use kcheck::transport::signing::sign_request;
use kcheck::transport::{AwsConfig, Credentials, Environment, HttpOptions, RetryPolicy};
use kcheck::{Error, ErrorCode};
use stub_server::{StubResponse, StubServer};

/// 2026-01-01T00:00:00Z
fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn describe_table_request() -> http::Request<Vec<u8>> {
    http::Request::post("https://dynamodb.us-east-1.amazonaws.com/")
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", "DynamoDB_20120810.DescribeTable")
        .body(br#"{"TableName":"checkpoints"}"#.to_vec())
        .unwrap()
}

// The expected Authorization values were computed outside aws-sigv4, with
// Python's hashlib/hmac following the SigV4 specification step by step:
// canonical request "POST\n/\n\n<sorted headers>\n<signed names>\n<sha256(body)>",
// string to sign over scope 20260101/us-east-1/dynamodb/aws4_request, and the
// kSecret→kDate→kRegion→kService→kSigning HMAC chain.
#[test]
fn signature_matches_an_independent_sigv4_computation() {
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
    );
    let mut request = describe_table_request();
    sign_request(
        &mut request,
        &credentials,
        "us-east-1",
        "dynamodb",
        fixed_time(),
    )
    .unwrap();
    assert_eq!(request.headers()["x-amz-date"], "20260101T000000Z");
    assert_eq!(
        request.headers()["authorization"],
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/dynamodb/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
         Signature=916d7976d092ce4bd79bf729f06a7974b49b9b72c5ea1126339e4be220e6b0f4"
    );
    assert!(request.headers().get("x-amz-security-token").is_none());
}

#[test]
fn temporary_credentials_sign_the_session_token() {
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session-token-example".into()),
        None,
    );
    let mut request = describe_table_request();
    sign_request(
        &mut request,
        &credentials,
        "us-east-1",
        "dynamodb",
        fixed_time(),
    )
    .unwrap();
    assert_eq!(
        request.headers()["x-amz-security-token"],
        "session-token-example"
    );
    assert_eq!(
        request.headers()["authorization"],
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/dynamodb/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
         Signature=a70986d0f0c9a888dbf9b2cebe51c935a632c699ee037e4f25855395e9a0a340"
    );
}

fn client_for(url: &str, attempts: u32, max_response_bytes: u64) -> KinesisClient {
    let config = AwsConfig::builder()
        .region("eu-west-1")
        .endpoint_url(url)
        .credentials(Credentials::new("AKIDTEST", "super-secret-key", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .retry_policy(RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        })
        .http_options(HttpOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_response_bytes,
        })
        .build()
        .unwrap();
    KinesisClient::new(&config).unwrap()
}

fn stream() -> StreamRef {
    StreamRef::from("orders")
}

/// A stub that answers every request the same way and counts them.
fn always(response: StubResponse) -> (StubServer, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let counter = count.clone();
    let server = StubServer::start(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        response.clone()
    });
    (server, count)
}

#[test]
fn requests_are_signed_json_posts_with_the_target_header() {
    let (server, _) = always(StubResponse::json(200, r#"{"Shards":[]}"#));
    client_for(server.url(), 1, 1 << 20)
        .list_shards(&stream(), None)
        .unwrap();
    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/");
    assert_eq!(
        request.header("x-amz-target"),
        Some("Kinesis_20131202.ListShards")
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    let auth = request.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "{auth}"
    );
    assert!(auth.contains("/eu-west-1/kinesis/aws4_request"), "{auth}");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["StreamName"], "orders");
}

#[test]
fn throttling_is_retried_until_success() {
    let count = Arc::new(AtomicU32::new(0));
    let counter = count.clone();
    let server = StubServer::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            StubResponse::json(
                400,
                r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}"#,
            )
        } else {
            StubResponse::json(200, r#"{"Shards":[{"ShardId":"shardId-000000000000"}]}"#)
        }
    });
    let shards = client_for(server.url(), 5, 1 << 20)
        .list_shards(&stream(), None)
        .unwrap();
    assert_eq!(shards[0].shard_id, "shardId-000000000000");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn retryable_errors_stop_after_max_attempts() {
    for body in [
        r#"{"__type":"ThrottlingException","message":"slow down"}"#,
        r#"{"__type":"LimitExceededException","message":"too many"}"#,
        r#"{"__type":"KMSThrottlingException","message":"kms busy"}"#,
    ] {
        let (server, count) = always(StubResponse::json(400, body));
        let error = client_for(server.url(), 4, 1 << 20)
            .list_shards(&stream(), None)
            .unwrap_err();
        assert!(error.is_throttling(), "{error}");
        assert_eq!(count.load(Ordering::SeqCst), 4, "{body}");
    }
}

#[test]
fn server_errors_are_retried() {
    let (server, count) = always(StubResponse::json(
        500,
        r#"{"__type":"InternalFailure","message":"oops"}"#,
    ));
    let error = client_for(server.url(), 3, 1 << 20)
        .list_shards(&stream(), None)
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::InternalFailure));
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn client_errors_are_final_and_keep_the_service_message() {
    for (body, code) in [
        (
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
            ErrorCode::ConditionalCheckFailed,
        ),
        (
            r#"{"__type":"ResourceNotFoundException","message":"Stream orders under account 1 not found."}"#,
            ErrorCode::ResourceNotFound,
        ),
        (
            r#"{"__type":"ValidationException","Message":"1 validation error detected"}"#,
            ErrorCode::Validation,
        ),
        (
            r#"{"__type":"AccessDeniedException","message":"User is not authorized"}"#,
            ErrorCode::AccessDenied,
        ),
        (
            r#"{"__type":"KMSDisabledException","message":"key disabled"}"#,
            ErrorCode::KmsDisabled,
        ),
    ] {
        let (server, count) = always(StubResponse::json(400, body));
        let error = client_for(server.url(), 5, 1 << 20)
            .list_shards(&stream(), None)
            .unwrap_err();
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "{body} must not be retried"
        );
        assert_eq!(error.code(), Some(&code));
        let text = error.to_string();
        assert!(text.starts_with("ListShards: "), "{text}");
        let message: serde_json::Value = serde_json::from_str(body).unwrap();
        let message = message
            .get("message")
            .or_else(|| message.get("Message"))
            .unwrap()
            .as_str()
            .unwrap();
        assert!(text.contains(message), "{text}");
    }
}

#[test]
fn an_html_502_from_a_proxy_is_a_clear_retryable_error() {
    let (server, count) = always(StubResponse::text(
        502,
        "text/html",
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    ));
    let error = client_for(server.url(), 2, 1 << 20)
        .list_shards(&stream(), None)
        .unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    match &error {
        Error::MalformedResponse { status, detail, .. } => {
            assert_eq!(*status, 502);
            assert!(detail.contains("502 Bad Gateway"), "{detail}");
        }
        other => panic!("expected MalformedResponse, got {other:?}"),
    }
}

#[test]
fn malformed_success_bodies_are_errors_not_panics() {
    for body in [
        "this is not json",
        r#"{"Shards": "should be a list"}"#,
        r#"{"Shards": [{"ShardId": 42}]}"#,
        r#"{"Shards": ["#,
    ] {
        let (server, count) = always(StubResponse::json(200, body));
        let error = client_for(server.url(), 3, 1 << 20)
            .list_shards(&stream(), None)
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::MalformedResponse {
                    status: 200,
                    operation: "ListShards",
                    ..
                }
            ),
            "{body}: {error:?}"
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "a 200 that cannot be parsed is not retried"
        );
    }
}

#[test]
fn get_records_with_bad_base64_is_malformed() {
    let (server, _) = always(StubResponse::json(
        200,
        r#"{"Records":[{"SequenceNumber":"1","Data":"***","PartitionKey":"k"}],"NextShardIterator":"it"}"#,
    ));
    let error = client_for(server.url(), 1, 1 << 20)
        .get_records("iterator", 10)
        .unwrap_err();
    assert!(error.to_string().contains("base64"), "{error}");
}

#[test]
fn truncated_bodies_and_dropped_connections_are_retried_transport_errors() {
    for response in [
        StubResponse::Truncated {
            declared_len: 500,
            body: br#"{"Shards":[{"Sha"#.to_vec(),
        },
        StubResponse::Drop,
    ] {
        let (server, count) = always(response.clone());
        let error = client_for(server.url(), 3, 1 << 20)
            .list_shards(&stream(), None)
            .unwrap_err();
        assert!(
            matches!(error, Error::Transport { .. }),
            "{response:?}: {error:?}"
        );
        assert!(error.is_retryable());
        assert_eq!(count.load(Ordering::SeqCst), 3, "{response:?}");
    }
}

#[test]
fn bodies_over_the_cap_are_refused() {
    let big = format!(r#"{{"Shards":[],"Padding":"{}"}}"#, "x".repeat(4096));
    let (server, count) = always(StubResponse::json(200, &big));
    let error = client_for(server.url(), 3, 1024)
        .list_shards(&stream(), None)
        .unwrap_err();
    assert!(
        matches!(error, Error::ResponseTooLarge { limit: 1024, .. }),
        "{error:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_closed_port_fails_fast_as_a_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = client_for(&format!("http://127.0.0.1:{port}"), 2, 1 << 20)
        .list_shards(&stream(), None)
        .unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    let (server, _) = always(StubResponse::json(
        400,
        r#"{"__type":"AccessDeniedException","message":"denied"}"#,
    ));
    let client = client_for(server.url(), 1, 1 << 20);
    let error = client.list_shards(&stream(), None).unwrap_err();
    for text in [
        error.to_string(),
        format!("{error:?}"),
        format!("{client:?}"),
    ] {
        assert!(!text.contains("super-secret-key"), "{text}");
    }
}

#[test]
fn endpoint_resolution_follows_the_sdk_order() {
    let build = |vars: Vec<(&str, &str)>, explicit: Option<&str>| {
        let mut builder = AwsConfig::builder()
            .credentials(Credentials::new("a", "b", None, None))
            .environment(Environment::from_vars(vars));
        if let Some(url) = explicit {
            builder = builder.endpoint_url(url);
        }
        builder.build().unwrap()
    };
    use kcheck::transport::Service::{DynamoDb, Kinesis};
    let config = build(vec![], None);
    assert_eq!(config.region(), "us-east-1");
    assert_eq!(
        config.endpoint(Kinesis).unwrap(),
        "https://kinesis.us-east-1.amazonaws.com"
    );
    let config = build(vec![("AWS_REGION", "cn-north-1")], None);
    assert_eq!(
        config.endpoint(DynamoDb).unwrap(),
        "https://dynamodb.cn-north-1.amazonaws.com.cn"
    );
    let config = build(
        vec![
            ("AWS_DEFAULT_REGION", "eu-west-2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"),
        ],
        None,
    );
    assert_eq!(config.region(), "eu-west-2");
    assert_eq!(config.endpoint(Kinesis).unwrap(), "http://127.0.0.1:1");
    let config = build(
        vec![
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:2"),
        ],
        None,
    );
    assert_eq!(config.region(), "eu-west-1");
    assert_eq!(config.endpoint(Kinesis).unwrap(), "http://127.0.0.1:2");
    assert_eq!(config.endpoint(DynamoDb).unwrap(), "http://127.0.0.1:1");
    let config = build(
        vec![("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:2")],
        Some("http://localhost:3"),
    );
    assert_eq!(config.endpoint(Kinesis).unwrap(), "http://localhost:3");
}

#[test]
fn bad_endpoints_and_regions_are_named_in_the_error() {
    let error = AwsConfig::builder()
        .endpoint_url("localhost:4567")
        .credentials(Credentials::new("a", "b", None, None))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("localhost:4567"), "{error}");
    let error = AwsConfig::builder()
        .region("US East")
        .credentials(Credentials::new("a", "b", None, None))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("US East"), "{error}");
}

// ferrokinesis answers ListShards in one page and ignores NextToken, ARNs and
// filters there, so pagination and those fields are checked against the
// API's documented shapes with a stub.
#[test]
fn list_shards_follows_next_token_and_sends_stream_arn_and_filter() {
    let server = StubServer::start(|request| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        match body.get("NextToken").and_then(|t| t.as_str()) {
            None => StubResponse::json(
                200,
                r#"{"Shards":[{"ShardId":"shardId-000000000000"}],"NextToken":"page-2"}"#,
            ),
            Some("page-2") => StubResponse::json(
                200,
                r#"{"Shards":[{"ShardId":"shardId-000000000001","ParentShardId":"shardId-000000000000"}],"NextToken":"page-3"}"#,
            ),
            Some(_) => {
                StubResponse::json(200, r#"{"Shards":[{"ShardId":"shardId-000000000002"}]}"#)
            }
        }
    });
    let arn = StreamRef::from("arn:aws:kinesis:eu-west-1:123456789012:stream/orders");
    let filter = kcheck::kinesis::ShardFilter {
        filter_type: kcheck::kinesis::ShardFilterType::AtLatest,
        shard_id: None,
        timestamp: None,
    };
    let shards = client_for(server.url(), 1, 1 << 20)
        .list_shards(&arn, Some(&filter))
        .unwrap();
    let ids: Vec<_> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002"
        ]
    );
    assert_eq!(
        shards[1].parent_shard_id.as_deref(),
        Some("shardId-000000000000")
    );
    let bodies: Vec<serde_json::Value> = server
        .requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 3);
    assert_eq!(
        bodies[0]["StreamARN"],
        "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
    );
    assert_eq!(bodies[0]["ShardFilter"]["Type"], "AT_LATEST");
    assert!(bodies[0].get("StreamName").is_none());
    // Follow-up pages carry only the token, as the API requires.
    assert_eq!(bodies[1]["NextToken"], "page-2");
    assert!(bodies[1].get("StreamARN").is_none() && bodies[1].get("ShardFilter").is_none());
    assert_eq!(bodies[2]["NextToken"], "page-3");
}
