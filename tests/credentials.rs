//! The credential provider chain against loopback stubs of STS, the container
//! credentials endpoint and EC2 instance metadata, shared files in temporary
//! directories, and the refreshing cache against fake providers.
//!
//! Every environment is injected with `Environment::from_vars` (the process
//! environment is never read or changed), and every wait is bounded.

#[path = "support/stub_server.rs"]
mod stub_server;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kcheck::transport::credentials::{
    CachedProvider, ContainerProvider, DefaultChain, EnvironmentProvider, ImdsProvider,
    ProfileProvider, WebIdentityProvider,
};
use kcheck::transport::{AwsConfig, Credentials, Environment, HttpOptions, ProvideCredentials};
use kcheck::Error;
use stub_server::{StubRequest, StubResponse, StubServer};

/// A canned plain-text answer of the loopback stub.
fn reply(status: u16, body: impl Into<String>) -> StubResponse {
    StubResponse::Full {
        status,
        content_type: "text/plain",
        body: body.into().into_bytes(),
    }
}

/// A recorded request's body as text.
fn body_text(request: &StubRequest) -> String {
    String::from_utf8_lossy(&request.body).into_owned()
}

/// A loopback URL where nothing listens (connections are refused at once).
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------
// Fixtures.

const FAR_FUTURE: &str = "2099-01-01T00:00:00Z";

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kcheck-credentials-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An environment from pairs, with HOME pointing into `home` so that no
/// real ~/.aws file is read.
fn env_with(home: &TempDir, vars: &[(&str, &str)]) -> Environment {
    let mut all: Vec<(String, String)> = vec![("HOME".into(), home.path().display().to_string())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Environment::from_vars(all)
}

fn http() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    }
}

fn json_credentials(key: &str, secret: &str, token: &str) -> String {
    format!(
        r#"{{"AccessKeyId":"{key}","SecretAccessKey":"{secret}","Token":"{token}","Expiration":"{FAR_FUTURE}"}}"#
    )
}

fn sts_success(key: &str, secret: &str, token: &str) -> String {
    format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{FAR_FUTURE}</Expiration>
      <AccessKeyId>{key}</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#
    )
}

/// An STS stub answering every call with `key`.
fn sts_stub(key: &'static str) -> StubServer {
    StubServer::start(move |_| reply(200, sts_success(key, "sts-secret", "sts-session")))
}

/// A container credentials stub answering `/creds` with `key`.
fn container_stub(key: &'static str) -> StubServer {
    StubServer::start(move |r| {
        if r.path == "/creds" {
            reply(
                200,
                json_credentials(key, "container-secret", "container-session"),
            )
        } else {
            reply(404, "not found")
        }
    })
}

/// An IMDSv2 stub: token `imds-session-token`, role `my-role`, `key`.
fn imds_stub(key: &'static str) -> StubServer {
    StubServer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => reply(200, "imds-session-token"),
        (_, path) if r.header("x-aws-ec2-metadata-token") != Some("imds-session-token") => {
            reply(401, format!("unauthorized {path}"))
        }
        ("GET", "/latest/meta-data/iam/security-credentials/") => reply(200, "my-role\n"),
        ("GET", "/latest/meta-data/iam/security-credentials/my-role") => reply(
            200,
            format!(
                r#"{{"Code":"Success","LastUpdated":"2024-01-01T00:00:00Z","Type":"AWS-HMAC",
                "AccessKeyId":"{key}","SecretAccessKey":"imds-secret","Token":"imds-token",
                "Expiration":"{FAR_FUTURE}"}}"#
            ),
        ),
        _ => reply(404, "not found"),
    })
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn form_fields(body: &str) -> HashMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn credentials_message(error: Error) -> String {
    match error {
        Error::Credentials(message) => message,
        other => panic!("expected Error::Credentials, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The chain.

#[test]
fn chain_order_env_profile_web_identity_container_imds() {
    let home = TempDir::new();
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n",
    );
    let token_file = home.write("token", "web-identity-token");
    let sts = sts_stub("ASIASTS");
    let container = container_stub("ASIACONTAINER");
    let imds = imds_stub("ASIAIMDS");
    let container_uri = format!("{}/creds", container.url());
    let token_path = token_file.display().to_string();

    let env_vars = [
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ];
    let web_identity_vars = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
        ("AWS_ENDPOINT_URL_STS", sts.url()),
    ];
    let container_vars = [("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_uri.as_str())];
    let imds_vars = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())];

    let resolve = |with_env: bool, with_profile: bool, with_web: bool, with_container: bool| {
        let mut vars: Vec<(&str, &str)> = Vec::new();
        if with_env {
            vars.extend(env_vars);
        }
        if !with_profile {
            vars.push((
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/kcheck/credentials",
            ));
        }
        if with_web {
            vars.extend(web_identity_vars);
        }
        if with_container {
            vars.extend(container_vars);
        }
        vars.extend(imds_vars);
        let env = env_with(&home, &vars);
        DefaultChain::new(&env, "us-east-1", &http())
            .provide_credentials()
            .expect("credentials")
            .access_key_id()
            .to_owned()
    };

    assert_eq!(resolve(true, true, true, true), "AKIDENV");
    assert_eq!(resolve(false, true, true, true), "AKIDPROFILE");
    assert!(sts.requests().is_empty() && container.requests().is_empty());
    assert!(imds.requests().is_empty());
    assert_eq!(resolve(false, false, true, true), "ASIASTS");
    assert!(container.requests().is_empty() && imds.requests().is_empty());
    assert_eq!(resolve(false, false, false, true), "ASIACONTAINER");
    assert!(imds.requests().is_empty());
    assert_eq!(resolve(false, false, false, false), "ASIAIMDS");
    assert_eq!(sts.requests().len(), 1);
    assert_eq!(container.requests().len(), 1);
}

#[test]
fn aws_config_uses_the_cached_default_chain() {
    let home = TempDir::new();
    let env = env_with(
        &home,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDCONFIG"),
            ("AWS_SECRET_ACCESS_KEY", "config-secret"),
            ("AWS_SESSION_TOKEN", "config-session"),
            ("AWS_REGION", "eu-west-1"),
        ],
    );
    let config = AwsConfig::builder()
        .environment(env)
        .build()
        .expect("config");
    let provider = config.credentials_provider();
    let credentials = provider.provide_credentials().expect("credentials");
    assert_eq!(credentials.access_key_id(), "AKIDCONFIG");
    assert_eq!(credentials.secret_access_key(), "config-secret");
    assert_eq!(credentials.session_token(), Some("config-session"));
    let debug = format!("{config:?} {provider:?}");
    assert!(
        !debug.contains("config-secret") && !debug.contains("config-session"),
        "{debug}"
    );
}

#[test]
fn a_configured_provider_that_fails_stops_the_chain() {
    let home = TempDir::new();
    let imds = imds_stub("ASIAIMDS");
    // Web identity is configured, but its token file is missing: the chain
    // must report that rather than quietly use the instance role.
    let env = env_with(
        &home,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/kcheck/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url()),
        ],
    );
    let error = DefaultChain::new(&env, "us-east-1", &http())
        .provide_credentials()
        .unwrap_err();
    let message = credentials_message(error);
    assert!(message.starts_with("web identity: "), "{message}");
    assert!(message.contains("/nonexistent/kcheck/token"), "{message}");
    assert!(imds.requests().is_empty());

    let env = env_with(&home, &[("AWS_ACCESS_KEY_ID", "AKIDHALF")]);
    let message = credentials_message(
        DefaultChain::new(&env, "us-east-1", &http())
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(message.contains("AWS_SECRET_ACCESS_KEY"), "{message}");
}

#[test]
fn no_credentials_lists_every_provider() {
    let home = TempDir::new();
    let started = Instant::now();
    let env = env_with(&home, &[("AWS_EC2_METADATA_DISABLED", "true")]);
    let message = credentials_message(
        DefaultChain::new(&env, "us-east-1", &http())
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(
        message.starts_with("no credentials found; tried "),
        "{message}"
    );
    for provider in [
        "environment (AWS_ACCESS_KEY_ID is not set)",
        "profile (no profile \"default\"",
        "web identity (",
        "container (",
        "instance metadata (IMDS) (disabled by AWS_EC2_METADATA_DISABLED)",
    ] {
        assert!(
            message.contains(provider),
            "{provider} missing from {message}"
        );
    }

    // IMDS at a closed port: unreachable is "not here", and quickly so.
    let closed = closed_port_url();
    let env = env_with(
        &home,
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", closed.as_str())],
    );
    let error = DefaultChain::new(&env, "us-east-1", &http())
        .provide_credentials()
        .unwrap_err();
    let display = error.to_string();
    assert!(
        display.starts_with("credentials: no credentials found;"),
        "{display}"
    );
    assert!(
        display.contains(&format!(
            "no instance metadata service answered at {closed}"
        )),
        "{display}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// Environment.

#[test]
fn environment_provider() {
    let env = Environment::from_vars([
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "env-session"),
    ]);
    let credentials = EnvironmentProvider::new(&env)
        .provide_credentials()
        .expect("credentials");
    assert_eq!(credentials.access_key_id(), "AKIDENV");
    assert_eq!(credentials.secret_access_key(), "env-secret");
    assert_eq!(credentials.session_token(), Some("env-session"));
    assert_eq!(credentials.expiry(), None);

    let empty = Environment::from_vars([("AWS_ACCESS_KEY_ID", "  ")]);
    let message = credentials_message(
        EnvironmentProvider::new(&empty)
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(
        message.contains("AWS_ACCESS_KEY_ID is not set"),
        "{message}"
    );

    let half = Environment::from_vars([("AWS_SECRET_ACCESS_KEY", "half-secret")]);
    let message = credentials_message(
        EnvironmentProvider::new(&half)
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(message.contains("AWS_ACCESS_KEY_ID is not"), "{message}");
    assert!(!message.contains("half-secret"));
}

// ---------------------------------------------------------------------------
// Shared profile files.

const CONFIG_FILE: &str = "\
# kcheck test config
[default]
region = eu-west-1

[profile dev]
region = us-west-2
aws_access_key_id = AKIDDEVCONFIG
aws_secret_access_key = dev-config-secret

[profile config-only]
AWS_ACCESS_KEY_ID=AKIDCONFIGONLY   ; uppercase keys are accepted
Aws_Secret_Access_Key  =  config-only-secret
aws_session_token = config-only-session # trailing comment

[prod]
aws_access_key_id = AKIDIGNORED
aws_secret_access_key = ignored-secret

[profile region-only]
region = ap-south-1
";

const CREDENTIALS_FILE: &str = "\
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[dev]
aws_access_key_id = AKIDDEVCREDS
aws_secret_access_key = dev-creds-secret

[profile prod]
aws_access_key_id = AKIDWRONGSYNTAX
aws_secret_access_key = wrong-syntax-secret

[creds-region]
region = sa-east-1
";

fn profile_env(home: &TempDir, profile: Option<&str>) -> Environment {
    let config = home.write("aws/config", CONFIG_FILE);
    let credentials = home.write("aws/credentials", CREDENTIALS_FILE);
    let config = config.display().to_string();
    let credentials = credentials.display().to_string();
    let mut vars = vec![
        ("AWS_CONFIG_FILE", config.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.as_str()),
    ];
    if let Some(profile) = profile {
        vars.push(("AWS_PROFILE", profile));
    }
    env_with(home, &vars)
}

fn profile_credentials(env: &Environment) -> kcheck::Result<Credentials> {
    ProfileProvider::new(env, "us-east-1", &http()).provide_credentials()
}

#[test]
fn profile_selection_syntax_and_precedence() {
    let home = TempDir::new();

    let default = profile_credentials(&profile_env(&home, None)).unwrap();
    assert_eq!(default.access_key_id(), "AKIDDEFAULT");
    assert_eq!(default.secret_access_key(), "default-secret");

    // Both files define `dev`: the credentials file wins.
    let dev = profile_credentials(&profile_env(&home, Some("dev"))).unwrap();
    assert_eq!(dev.access_key_id(), "AKIDDEVCREDS");
    assert_eq!(dev.secret_access_key(), "dev-creds-secret");

    let config_only = profile_credentials(&profile_env(&home, Some("config-only"))).unwrap();
    assert_eq!(config_only.access_key_id(), "AKIDCONFIGONLY");
    assert_eq!(config_only.secret_access_key(), "config-only-secret");
    assert_eq!(config_only.session_token(), Some("config-only-session"));

    // `[prod]` in the config file and `[profile prod]` in the credentials
    // file are both the wrong syntax: there is no profile `prod`.
    let message =
        credentials_message(profile_credentials(&profile_env(&home, Some("prod"))).unwrap_err());
    assert!(message.contains("\"prod\""), "{message}");
    assert!(message.contains("AWS_PROFILE"), "{message}");
    assert!(!message.contains("secret"), "{message}");

    let message =
        credentials_message(profile_credentials(&profile_env(&home, Some("missing"))).unwrap_err());
    assert!(message.starts_with("profile: "), "{message}");
    assert!(message.contains("\"missing\""), "{message}");

    // A profile without credentials is not an error: the chain goes on.
    let env = profile_env(&home, Some("region-only"));
    let message = credentials_message(profile_credentials(&env).unwrap_err());
    assert!(message.contains("has no credentials"), "{message}");
    let chain_env = {
        let config = home.path().join("aws/config").display().to_string();
        let credentials = home.path().join("aws/credentials").display().to_string();
        env_with(
            &home,
            &[
                ("AWS_CONFIG_FILE", config.as_str()),
                ("AWS_SHARED_CREDENTIALS_FILE", credentials.as_str()),
                ("AWS_PROFILE", "region-only"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
    };
    let message = credentials_message(
        DefaultChain::new(&chain_env, "us-east-1", &http())
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(message.starts_with("no credentials found"), "{message}");
}

#[test]
fn profile_files_default_to_home_and_a_missing_default_is_not_an_error() {
    let home = TempDir::new();
    let env = env_with(&home, &[]);
    let message = credentials_message(profile_credentials(&env).unwrap_err());
    assert!(message.contains("no credentials"), "{message}");

    home.write(
        ".aws/config",
        "[profile default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = home-secret\n",
    );
    assert_eq!(
        profile_credentials(&env).unwrap().access_key_id(),
        "AKIDHOME"
    );
}

#[test]
fn malformed_profile_files_are_reported_without_their_content() {
    let home = TempDir::new();
    let path = home.write(
        "credentials",
        "[default]\naws_access_key_id = AKIDBROKEN\nthis-line-is-SECRETSTUFF\n",
    );
    let path = path.display().to_string();
    let env = env_with(&home, &[("AWS_SHARED_CREDENTIALS_FILE", path.as_str())]);
    let message = credentials_message(profile_credentials(&env).unwrap_err());
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains(&path), "{message}");
    assert!(!message.contains("SECRETSTUFF"), "{message}");
}

#[test]
fn profile_region() {
    let home = TempDir::new();
    let region = |profile: Option<&str>| {
        AwsConfig::builder()
            .environment(profile_env(&home, profile))
            .credentials(Credentials::new("a", "b", None, None))
            .build()
            .expect("config")
            .region()
            .to_owned()
    };
    assert_eq!(region(None), "eu-west-1");
    assert_eq!(region(Some("dev")), "us-west-2");
    assert_eq!(region(Some("region-only")), "ap-south-1");
    // Only the credentials file has a region for this one.
    assert_eq!(region(Some("creds-region")), "sa-east-1");
    // No region anywhere: the default.
    assert_eq!(region(Some("config-only")), "us-east-1");
    assert_eq!(region(Some("missing")), "us-east-1");
}

#[test]
fn profile_with_web_identity() {
    let home = TempDir::new();
    let sts = sts_stub("ASIAPROFILESTS");
    let token = home.write("profile-token", "profile-web-token\n");
    let config = home.write(
        "config",
        &format!(
            "[profile web]\nrole_arn = arn:aws:iam::123456789012:role/profile-role\n\
             web_identity_token_file = {}\nrole_session_name = profile-session\n\
             [profile chained]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = web\n",
            token.display()
        ),
    );
    let config = config.display().to_string();
    let vars = |profile: &'static str| {
        env_with(
            &home,
            &[
                ("AWS_CONFIG_FILE", config.as_str()),
                ("AWS_PROFILE", profile),
                ("AWS_ENDPOINT_URL_STS", sts.url()),
            ],
        )
    };
    let credentials = profile_credentials(&vars("web")).expect("credentials");
    assert_eq!(credentials.access_key_id(), "ASIAPROFILESTS");
    let requests = sts.requests();
    assert_eq!(requests.len(), 1);
    let form = form_fields(&body_text(&requests[0]));
    assert_eq!(
        form["RoleArn"],
        "arn:aws:iam::123456789012:role/profile-role"
    );
    assert_eq!(form["RoleSessionName"], "profile-session");
    assert_eq!(form["WebIdentityToken"], "profile-web-token");

    let message = credentials_message(profile_credentials(&vars("chained")).unwrap_err());
    assert!(message.contains("source_profile"), "{message}");
}

// ---------------------------------------------------------------------------
// Web identity.

#[test]
fn web_identity_calls_sts_with_the_current_token() {
    let home = TempDir::new();
    let sts = sts_stub("ASIAWEB");
    let token_file = home.write("token", "first-token\n");
    let token_path = token_file.display().to_string();
    let env = env_with(
        &home,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web role"),
            ("AWS_ENDPOINT_URL", sts.url()),
        ],
    );
    let provider = WebIdentityProvider::new(&env, "us-east-1", &http());
    let credentials = provider.provide_credentials().expect("credentials");
    assert_eq!(credentials.access_key_id(), "ASIAWEB");
    assert_eq!(credentials.secret_access_key(), "sts-secret");
    assert_eq!(credentials.session_token(), Some("sts-session"));
    assert!(credentials.expiry().is_some());

    // The platform rotates the token: the next call reads the new one.
    std::fs::write(&token_file, "second-token").unwrap();
    provider.provide_credentials().expect("credentials");

    let requests = sts.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/");
    assert_eq!(
        first.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        first.header("authorization"),
        None,
        "STS web identity is unsigned"
    );
    // The space and the slashes are percent-encoded on the wire.
    assert!(
        body_text(first).contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fweb%20role")
    );
    let form = form_fields(&body_text(first));
    assert_eq!(form["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(form["Version"], "2011-06-15");
    assert_eq!(form["RoleArn"], "arn:aws:iam::123456789012:role/web role");
    assert!(form["RoleSessionName"].starts_with("kcheck-"), "{form:?}");
    assert_eq!(form["WebIdentityToken"], "first-token");
    assert_eq!(
        form_fields(&body_text(&requests[1]))["WebIdentityToken"],
        "second-token"
    );
}

#[test]
fn web_identity_session_name_and_sts_errors() {
    let home = TempDir::new();
    let sts = StubServer::start(|_| {
        reply(
            400,
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
             <Type>Sender</Type><Code>InvalidIdentityToken</Code>\
             <Message>Incorrect token audience</Message></Error>\
             <RequestId>r-1</RequestId></ErrorResponse>",
        )
    });
    let token_file = home.write("token", "SECRET-WEB-IDENTITY-TOKEN");
    let token_path = token_file.display().to_string();
    let env = env_with(
        &home,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
            ("AWS_ROLE_SESSION_NAME", "my-session"),
            ("AWS_ENDPOINT_URL_STS", sts.url()),
        ],
    );
    let provider = WebIdentityProvider::new(&env, "us-east-1", &http());
    let error = provider.provide_credentials().unwrap_err();
    let display = error.to_string();
    let debug = format!("{error:?} {provider:?}");
    assert!(display.contains("InvalidIdentityToken"), "{display}");
    assert!(display.contains("Incorrect token audience"), "{display}");
    assert!(display.contains("web identity"), "{display}");
    assert!(!display.contains("SECRET-WEB-IDENTITY-TOKEN"), "{display}");
    assert!(!debug.contains("SECRET-WEB-IDENTITY-TOKEN"), "{debug}");
    // A 4xx is not retried.
    let requests = sts.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        form_fields(&body_text(&requests[0]))["RoleSessionName"],
        "my-session"
    );

    // Half a configuration is an error, not "not configured".
    let env = env_with(
        &home,
        &[("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web")],
    );
    let message = credentials_message(
        WebIdentityProvider::new(&env, "us-east-1", &http())
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(message.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{message}");
}

// ---------------------------------------------------------------------------
// Container credentials.

#[test]
fn container_full_uri_with_authorization_token() {
    let home = TempDir::new();
    let container = container_stub("ASIACONTAINER");
    let uri = format!("{}/creds", container.url());
    let env = env_with(
        &home,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Basic container-auth"),
        ],
    );
    let credentials = ContainerProvider::new(&env, &http())
        .provide_credentials()
        .expect("credentials");
    assert_eq!(credentials.access_key_id(), "ASIACONTAINER");
    assert_eq!(credentials.secret_access_key(), "container-secret");
    assert_eq!(credentials.session_token(), Some("container-session"));
    assert!(credentials.expiry().is_some());
    let requests = container.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/creds");
    assert_eq!(
        requests[0].header("authorization"),
        Some("Basic container-auth")
    );
}

#[test]
fn container_token_file_wins_and_is_reread() {
    let home = TempDir::new();
    let container = container_stub("ASIACONTAINER");
    // `localhost` is allowed too.
    let uri = format!(
        "{}/creds",
        container.url().replace("127.0.0.1", "localhost")
    );
    let token_file = home.write("eks-token", "file-token-1\n");
    let token_path = token_file.display().to_string();
    let env = env_with(
        &home,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_path.as_str(),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "variable-token"),
        ],
    );
    let provider = ContainerProvider::new(&env, &http());
    provider.provide_credentials().expect("credentials");
    std::fs::write(&token_file, "file-token-2").unwrap();
    provider.provide_credentials().expect("credentials");
    let tokens: Vec<_> = container
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(tokens, ["file-token-1", "file-token-2"]);
}

#[test]
fn container_errors_and_disallowed_hosts() {
    let home = TempDir::new();
    let started = Instant::now();
    for uri in [
        "http://192.0.2.10/creds",
        "http://example.com/creds",
        "http://127.0.0.1@example.com/creds",
    ] {
        let env = env_with(
            &home,
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                    "SECRET-CONTAINER-TOKEN",
                ),
            ],
        );
        let message = credentials_message(
            ContainerProvider::new(&env, &http())
                .provide_credentials()
                .unwrap_err(),
        );
        assert!(message.starts_with("container: "), "{message}");
        assert!(message.contains(uri), "{message}");
        assert!(!message.contains("SECRET-CONTAINER-TOKEN"), "{message}");
    }
    // Rejected before any connection attempt.
    assert!(started.elapsed() < Duration::from_secs(1));

    let container =
        StubServer::start(|_| reply(403, r#"{"code":"AccessDenied","message":"bad token"}"#));
    let uri = format!("{}/creds", container.url());
    let env = env_with(
        &home,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "SECRET-CONTAINER-TOKEN",
            ),
        ],
    );
    let provider = ContainerProvider::new(&env, &http());
    let error = provider.provide_credentials().unwrap_err();
    let text = format!("{error} {error:?} {provider:?}");
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(!text.contains("SECRET-CONTAINER-TOKEN"), "{text}");

    // A token that cannot be a header value is refused without quoting it.
    let env = env_with(
        &home,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "SECRET\r\nInjected: yes",
            ),
        ],
    );
    let message = credentials_message(
        ContainerProvider::new(&env, &http())
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(
        message.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        "{message}"
    );
    assert!(!message.contains("SECRET"), "{message}");
}

#[test]
fn container_malformed_success_body_is_not_quoted() {
    let home = TempDir::new();
    let container = StubServer::start(|_| {
        reply(
            200,
            r#"{"AccessKeyId":"ASIA","SecretAccessKey":"LEAKED-SECRET","Token":"#,
        )
    });
    let uri = format!("{}/creds", container.url());
    let env = env_with(
        &home,
        &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str())],
    );
    let message = credentials_message(
        ContainerProvider::new(&env, &http())
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(
        message.contains("not a credentials JSON document"),
        "{message}"
    );
    assert!(!message.contains("LEAKED-SECRET"), "{message}");
}

// ---------------------------------------------------------------------------
// EC2 instance metadata.

#[test]
fn imds_v2_token_flow() {
    let home = TempDir::new();
    let imds = imds_stub("ASIAIMDS");
    let env = env_with(&home, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())]);
    let provider = ImdsProvider::new(&env, &http());
    let credentials = provider.provide_credentials().expect("credentials");
    assert_eq!(credentials.access_key_id(), "ASIAIMDS");
    assert_eq!(credentials.secret_access_key(), "imds-secret");
    assert_eq!(credentials.session_token(), Some("imds-token"));
    assert!(credentials.expiry().is_some());

    let requests = imds.requests();
    let calls: Vec<_> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/my-role",
        ]
    );
    assert_eq!(
        requests[0].header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    assert_eq!(requests[0].header("x-aws-ec2-metadata-token"), None);
    // An empty, length-framed body (not chunked), as IMDS expects.
    assert_eq!(requests[0].header("content-length"), Some("0"));
    for get in &requests[1..] {
        assert_eq!(
            get.header("x-aws-ec2-metadata-token"),
            Some("imds-session-token")
        );
    }

    // The session token is reused.
    provider.provide_credentials().expect("credentials");
    let puts = imds.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 1);
    assert_eq!(imds.requests().len(), 5);
    let debug = format!("{provider:?}");
    assert!(!debug.contains("imds-session-token"), "{debug}");
}

#[test]
fn imds_replaces_a_rejected_session_token() {
    let home = TempDir::new();
    let puts = Arc::new(AtomicU32::new(0));
    let counter = puts.clone();
    let imds = StubServer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", _) => {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            reply(200, format!("token-{n}"))
        }
        // The first token is considered expired by the service.
        (_, _) if r.header("x-aws-ec2-metadata-token") != Some("token-1") => reply(401, ""),
        (_, "/latest/meta-data/iam/security-credentials/") => reply(200, "role"),
        (_, _) => reply(200, json_credentials("ASIAROTATED", "s", "t")),
    });
    let env = env_with(&home, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())]);
    let credentials = ImdsProvider::new(&env, &http())
        .provide_credentials()
        .expect("credentials");
    assert_eq!(credentials.access_key_id(), "ASIAROTATED");
    assert_eq!(puts.load(Ordering::SeqCst), 2);
}

#[test]
fn imds_errors() {
    let home = TempDir::new();
    let provider_for = |stub: &StubServer| {
        let env = env_with(&home, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", stub.url())]);
        ImdsProvider::new(&env, &http())
    };

    // IMDSv2 unavailable: an error that says IMDSv1 is not used.
    for status in [403, 404, 405] {
        let stub = StubServer::start(move |_| reply(status, ""));
        let message = credentials_message(provider_for(&stub).provide_credentials().unwrap_err());
        assert!(
            message.starts_with("instance metadata (IMDS): "),
            "{message}"
        );
        assert!(message.contains(&format!("HTTP {status}")), "{message}");
        assert!(message.contains("IMDSv1"), "{message}");
        assert_eq!(stub.requests().len(), 1, "not retried");
    }

    // No role attached: "no credentials", which lets the chain say so.
    let no_role = StubServer::start(|r| match r.method.as_str() {
        "PUT" => reply(200, "t"),
        _ => reply(404, ""),
    });
    let message = credentials_message(provider_for(&no_role).provide_credentials().unwrap_err());
    assert!(message.contains("no IAM role"), "{message}");

    // A failed credentials document names IMDS's code.
    let failing = StubServer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", _) => reply(200, "t"),
        (_, "/latest/meta-data/iam/security-credentials/") => reply(200, "role"),
        _ => reply(
            200,
            r#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"denied"}"#,
        ),
    });
    let message = credentials_message(provider_for(&failing).provide_credentials().unwrap_err());
    assert!(
        message.contains("AssumeRoleUnauthorizedAccess"),
        "{message}"
    );

    // 5xx is retried once.
    let flaky = Arc::new(AtomicU32::new(0));
    let counter = flaky.clone();
    let stub = StubServer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", _) if counter.fetch_add(1, Ordering::SeqCst) == 0 => reply(503, "busy"),
        ("PUT", _) => reply(200, "t"),
        (_, "/latest/meta-data/iam/security-credentials/") => reply(200, "role"),
        _ => reply(200, json_credentials("ASIAFLAKY", "s", "t")),
    });
    assert_eq!(
        provider_for(&stub)
            .provide_credentials()
            .unwrap()
            .access_key_id(),
        "ASIAFLAKY"
    );

    // Disabled: no request at all.
    let untouched = imds_stub("ASIAUNUSED");
    let env = env_with(
        &home,
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", untouched.url()),
            ("AWS_EC2_METADATA_DISABLED", "TRUE"),
        ],
    );
    let message = credentials_message(
        ImdsProvider::new(&env, &http())
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(message.contains("AWS_EC2_METADATA_DISABLED"), "{message}");
    assert!(untouched.requests().is_empty());
}

// ---------------------------------------------------------------------------
// The cache.

/// A provider whose answers the test scripts: each call takes the next
/// answer; an optional gate holds calls after the first until released.
#[derive(Debug)]
struct Scripted {
    calls: AtomicU32,
    answers: Mutex<Vec<kcheck::Result<Credentials>>>,
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl Scripted {
    fn new(answers: Vec<kcheck::Result<Credentials>>) -> Arc<Scripted> {
        Arc::new(Scripted {
            calls: AtomicU32::new(0),
            answers: Mutex::new(answers.into_iter().rev().collect()),
            gate: Mutex::new(None),
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ProvideCredentials for Scripted {
    fn provide_credentials(&self) -> kcheck::Result<Credentials> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n > 0 {
            if let Some((started, release)) = &*self.gate.lock().unwrap() {
                started.send(()).unwrap();
                release
                    .recv_timeout(Duration::from_secs(10))
                    .expect("released in time");
            }
        }
        self.answers
            .lock()
            .unwrap()
            .pop()
            .unwrap_or_else(|| Err(Error::Credentials("script exhausted".into())))
    }
}

fn expiring_in(key: &str, seconds: u64) -> kcheck::Result<Credentials> {
    Ok(Credentials::new(
        key,
        format!("{key}-secret"),
        Some(format!("{key}-session")),
        Some(SystemTime::now() + Duration::from_secs(seconds)),
    ))
}

fn expired(key: &str) -> kcheck::Result<Credentials> {
    Ok(Credentials::new(
        key,
        format!("{key}-secret"),
        Some(format!("{key}-session")),
        Some(SystemTime::now() - Duration::from_secs(1)),
    ))
}

fn key_of(provider: &CachedProvider) -> String {
    provider
        .provide_credentials()
        .expect("credentials")
        .access_key_id()
        .to_owned()
}

#[test]
fn cache_keeps_fresh_credentials_and_refreshes_inside_the_window() {
    let inner = Scripted::new(vec![
        expiring_in("FAR", 3600),
        expiring_in("SOON", 120),
        expiring_in("NEW", 3600),
    ]);
    let cache = CachedProvider::from_shared(inner.clone())
        .with_refresh_window(Duration::from_secs(300))
        .with_retry_interval(Duration::ZERO);
    assert_eq!(key_of(&cache), "FAR");
    assert_eq!(key_of(&cache), "FAR");
    assert_eq!(inner.calls(), 1, "fresh credentials are not refetched");

    // A wider window puts FAR inside it: the next call refreshes.
    let inner = Scripted::new(vec![expiring_in("SOON", 120), expiring_in("NEW", 3600)]);
    let cache = CachedProvider::from_shared(inner.clone())
        .with_refresh_window(Duration::from_secs(300))
        .with_retry_interval(Duration::ZERO);
    assert_eq!(key_of(&cache), "SOON");
    assert_eq!(key_of(&cache), "NEW");
    assert_eq!(key_of(&cache), "NEW");
    assert_eq!(inner.calls(), 2);
}

#[test]
fn cache_does_not_block_callers_during_a_slow_refresh() {
    let inner = Scripted::new(vec![expiring_in("OLD", 60), expiring_in("NEW", 3600)]);
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    *inner.gate.lock().unwrap() = Some((started_tx, release_rx));
    let cache = Arc::new(
        CachedProvider::from_shared(inner.clone())
            .with_refresh_window(Duration::from_secs(300))
            .with_retry_interval(Duration::ZERO),
    );
    assert_eq!(key_of(&cache), "OLD");

    // OLD is inside the window: this caller refreshes, and is held.
    let refresher = {
        let cache = cache.clone();
        std::thread::spawn(move || key_of(&cache))
    };
    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("refresh started");

    // Others get OLD at once while the refresh is in flight.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(key_of(&cache), "OLD");
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(inner.calls(), 2, "one refresh at a time");

    release_tx.send(()).unwrap();
    assert_eq!(refresher.join().unwrap(), "NEW");
    assert_eq!(key_of(&cache), "NEW");
    assert_eq!(inner.calls(), 2);
}

#[test]
fn cache_keeps_valid_credentials_when_a_refresh_fails_and_paces_retries() {
    let inner = Scripted::new(vec![
        expiring_in("OLD", 60),
        Err(Error::Credentials("sts is down".into())),
        expiring_in("NEW", 3600),
    ]);
    let cache = CachedProvider::from_shared(inner.clone())
        .with_refresh_window(Duration::from_secs(300))
        .with_retry_interval(Duration::from_millis(300));
    assert_eq!(key_of(&cache), "OLD");
    // The refresh is attempted only after the retry interval since the last
    // attempt (the initial fetch).
    assert_eq!(key_of(&cache), "OLD");
    assert_eq!(inner.calls(), 1);
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(key_of(&cache), "OLD", "the failure is hidden");
    assert_eq!(inner.calls(), 2);
    // Not retried on every call...
    for _ in 0..5 {
        assert_eq!(key_of(&cache), "OLD");
    }
    assert_eq!(inner.calls(), 2);
    // ...but again after the interval.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(key_of(&cache), "NEW");
    assert_eq!(inner.calls(), 3);
}

#[test]
fn cache_blocks_on_expired_credentials_and_reports_failures() {
    let inner = Scripted::new(vec![
        expired("STALE"),
        expiring_in("NEW", 3600),
        Err(Error::Credentials("boom".into())),
    ]);
    let cache = CachedProvider::from_shared(inner.clone());
    // Whatever the provider returns is handed out (the server judges).
    assert_eq!(key_of(&cache), "STALE");
    // Expired: the next caller waits for a refresh, whatever the interval.
    assert_eq!(key_of(&cache), "NEW");
    assert_eq!(inner.calls(), 2);

    let inner = Scripted::new(vec![
        expired("STALE"),
        Err(Error::Credentials("boom".into())),
    ]);
    let cache = CachedProvider::from_shared(inner.clone());
    assert_eq!(key_of(&cache), "STALE");
    let message = credentials_message(cache.provide_credentials().unwrap_err());
    assert_eq!(message, "boom");
}

// ---------------------------------------------------------------------------
// Secrets stay out of Debug and Display.

#[test]
fn secrets_never_appear_in_debug_output() {
    let home = TempDir::new();
    let credentials = Credentials::new(
        "AKIDVISIBLE",
        "SECRET-KEY-VALUE",
        Some("SECRET-SESSION".into()),
        None,
    );
    let env = env_with(
        &home,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDVISIBLE"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET-KEY-VALUE"),
            ("AWS_SESSION_TOKEN", "SECRET-SESSION"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "SECRET-CONTAINER"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let chain = DefaultChain::new(&env, "us-east-1", &http());
    let cache = CachedProvider::new(DefaultChain::new(&env, "us-east-1", &http()));
    assert_eq!(key_of(&cache), "AKIDVISIBLE");
    let debug = format!(
        "{credentials:?} {chain:?} {cache:?} {:?} {:?} {:?} {:?} {:?}",
        EnvironmentProvider::new(&env),
        ProfileProvider::new(&env, "us-east-1", &http()),
        WebIdentityProvider::new(&env, "us-east-1", &http()),
        ContainerProvider::new(&env, &http()),
        ImdsProvider::new(&env, &http()),
    );
    assert!(debug.contains("AKIDVISIBLE"), "{debug}");
    for secret in ["SECRET-KEY-VALUE", "SECRET-SESSION", "SECRET-CONTAINER"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn a_profile_chosen_on_the_builder_wins_over_aws_profile_and_environment_keys() {
    let home = TempDir::new();
    let env = profile_env(&home, Some("prod")).with_var("AWS_ACCESS_KEY_ID", "AKIDENV");
    let env = env.with_var("AWS_SECRET_ACCESS_KEY", "env-secret");
    let config = AwsConfig::builder()
        .environment(env.clone())
        .profile("dev")
        .build()
        .expect("config");
    // The profile's region and credentials, not AWS_PROFILE's nor the keys'.
    assert_eq!(config.region(), "us-west-2");
    let credentials = config.credentials_provider().provide_credentials().unwrap();
    assert_eq!(credentials.access_key_id(), "AKIDDEVCREDS");
    // Without it, the environment's keys come first.
    let config = AwsConfig::builder().environment(env).build().unwrap();
    let credentials = config.credentials_provider().provide_credentials().unwrap();
    assert_eq!(credentials.access_key_id(), "AKIDENV");
    // A profile that is not defined is an error naming it.
    let config = AwsConfig::builder()
        .environment(profile_env(&home, None))
        .profile("nowhere")
        .build()
        .unwrap();
    let error = credentials_message(
        config
            .credentials_provider()
            .provide_credentials()
            .unwrap_err(),
    );
    assert!(error.contains("nowhere"), "{error}");
}
