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

    // A web identity profile can be the source of another role.
    let chained = profile_credentials(&vars("chained")).expect("chained credentials");
    assert_eq!(chained.access_key_id(), "ASIAPROFILESTS");
    let requests = sts.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        form_fields(&body_text(&requests[1]))["Action"],
        "AssumeRoleWithWebIdentity"
    );
    let form = form_fields(&body_text(&requests[2]));
    assert_eq!(form["Action"], "AssumeRole");
    assert_eq!(form["RoleArn"], "arn:aws:iam::123456789012:role/x");
    assert!(requests[2]
        .header("authorization")
        .unwrap()
        .contains("Credential=ASIAPROFILESTS/"));
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

// ---------------------------------------------------------------------------
// credential_process.

/// `2026-01-02T03:04:05Z` for `time` (UTC, whole seconds).
fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// An executable shell script `name` in `dir` with `body`.
fn script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.write(name, &format!("#!/bin/sh\n{body}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

/// An environment whose config file is `config` (and no credentials file).
fn config_env(home: &TempDir, config: &str, profile: &str, extra: &[(&str, &str)]) -> Environment {
    let config = home.write("aws/config", config).display().to_string();
    let credentials = home.path().join("aws/no-credentials").display().to_string();
    let mut vars = vec![
        ("AWS_CONFIG_FILE", config.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.as_str()),
        ("AWS_PROFILE", profile),
    ];
    vars.extend_from_slice(extra);
    env_with(home, &vars)
}

#[cfg(unix)]
#[test]
fn credential_process_runs_the_command_and_parses_its_output() {
    let home = TempDir::new();
    let helper = script(
        &home,
        "bin/helper",
        &format!(
            r#"printf '{{"Version": 1, "AccessKeyId": "AKID%s", "SecretAccessKey": "proc-secret", "SessionToken": "proc-session", "Expiration": "{FAR_FUTURE}"}}' "$1""#
        ),
    );
    let config = format!(
        "[profile proc]\ncredential_process = {} \"FROM ARG\"\n\
         [profile both]\naws_access_key_id = AKIDSTATIC\naws_secret_access_key = static-secret\n\
         credential_process = {}\n",
        helper.display(),
        helper.display()
    );
    let credentials = profile_credentials(&config_env(&home, &config, "proc", &[])).unwrap();
    // The shell split the quoted argument as one.
    assert_eq!(credentials.access_key_id(), "AKIDFROM ARG");
    assert_eq!(credentials.secret_access_key(), "proc-secret");
    assert_eq!(credentials.session_token(), Some("proc-session"));
    assert!(credentials.expiry().is_some());
    // Static keys in the same profile come first.
    let credentials = profile_credentials(&config_env(&home, &config, "both", &[])).unwrap();
    assert_eq!(credentials.access_key_id(), "AKIDSTATIC");
    // Long-lived keys: no token, no expiry.
    let plain = script(
        &home,
        "bin/plain",
        r#"echo '{"Version":1,"AccessKeyId":"AKIDPLAIN","SecretAccessKey":"s"}'"#,
    );
    let config = format!("[default]\ncredential_process = {}\n", plain.display());
    let credentials = profile_credentials(&config_env(&home, &config, "default", &[])).unwrap();
    assert_eq!(credentials.access_key_id(), "AKIDPLAIN");
    assert_eq!(
        (credentials.session_token(), credentials.expiry()),
        (None, None)
    );
}

#[cfg(unix)]
#[test]
fn credential_process_failures_name_the_profile_and_never_quote_stdout() {
    let home = TempDir::new();
    let failing = script(
        &home,
        "failing",
        r#"echo '{"Version":1,"AccessKeyId":"A","SecretAccessKey":"STDOUTSECRET"}'
echo "login expired, run sso login" >&2
exit 3"#,
    );
    let garbled = script(&home, "garbled", "echo 'STDOUTSECRET is not JSON'");
    let version2 = script(
        &home,
        "version2",
        r#"echo '{"Version":2,"AccessKeyId":"A","SecretAccessKey":"STDOUTSECRET"}'"#,
    );
    let slow = script(&home, "slow", "exec sleep 10");
    let config = format!(
        "[profile failing]\ncredential_process = {}\n[profile garbled]\ncredential_process = {}\n\
         [profile version2]\ncredential_process = {}\n[profile slow]\ncredential_process = {}\n\
         [profile missing]\ncredential_process = {}/does-not-exist\n",
        failing.display(),
        garbled.display(),
        version2.display(),
        slow.display(),
        home.path().display()
    );
    let message = |profile: &str, http: HttpOptions| {
        credentials_message(
            ProfileProvider::new(
                &config_env(&home, &config, profile, &[]),
                "us-east-1",
                &http,
            )
            .provide_credentials()
            .unwrap_err(),
        )
    };
    let failed = message("failing", http());
    assert!(
        failed.starts_with("profile \"failing\": credential_process failed"),
        "{failed}"
    );
    assert!(
        failed.contains('3') && failed.contains("login expired"),
        "{failed}"
    );
    let not_json = message("garbled", http());
    assert!(
        not_json.contains("not a credentials JSON document"),
        "{not_json}"
    );
    let wrong_version = message("version2", http());
    assert!(wrong_version.contains("Version 2"), "{wrong_version}");
    let not_found = message("missing", http());
    assert!(
        not_found.starts_with("profile \"missing\": credential_process failed"),
        "{not_found}"
    );
    for text in [&failed, &not_json, &wrong_version] {
        assert!(!text.contains("STDOUTSECRET"), "{text}");
    }

    let started = Instant::now();
    let short = HttpOptions {
        request_timeout: Duration::from_millis(300),
        ..http()
    };
    let timed_out = message("slow", short);
    assert!(
        timed_out.contains("did not finish within 300ms"),
        "{timed_out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The default profile's `credential_process`: a script that counts its runs
/// in `home/count` and prints `json` with `%s` replaced by the count.
fn counting_process_env(home: &TempDir, name: &str, json: &str) -> Environment {
    let counter = home.path().join("count");
    let helper = script(
        home,
        name,
        &format!(
            r#"n=$(cat '{counter}' 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > '{counter}'
printf '{json}' "$n""#,
            counter = counter.display()
        ),
    );
    let config = format!("[default]\ncredential_process = {}\n", helper.display());
    config_env(
        home,
        &config,
        "default",
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    )
}

#[cfg(unix)]
#[test]
fn credential_process_credentials_are_refreshed_before_they_expire() {
    let home = TempDir::new();
    let counter = home.path().join("count");
    // Expires in two minutes: inside the five-minute refresh window.
    let expiry = rfc3339(SystemTime::now() + Duration::from_secs(120));
    let env = counting_process_env(
        &home,
        "counting",
        &format!(
            r#"{{"Version":1,"AccessKeyId":"AKID%s","SecretAccessKey":"s","SessionToken":"t","Expiration":"{expiry}"}}"#
        ),
    );
    let provider = CachedProvider::new(DefaultChain::new(&env, "us-east-1", &http()))
        .with_retry_interval(Duration::from_millis(500));
    assert_eq!(
        provider.provide_credentials().unwrap().access_key_id(),
        "AKID1"
    );
    // Within the retry interval the still-valid cached ones are served…
    assert_eq!(
        provider.provide_credentials().unwrap().access_key_id(),
        "AKID1"
    );
    std::thread::sleep(Duration::from_millis(600));
    // …then the next caller runs the process again.
    assert_eq!(
        provider.provide_credentials().unwrap().access_key_id(),
        "AKID2"
    );
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "2");
    // Far from expiry, credentials are not fetched again.
    let env = counting_process_env(
        &home,
        "lasting",
        &format!(
            r#"{{"Version":1,"AccessKeyId":"AKIDLASTING","SecretAccessKey":"s","Expiration":"{FAR_FUTURE}"}}"#
        ),
    );
    let provider = AwsConfig::builder()
        .environment(env)
        .build()
        .unwrap()
        .credentials_provider();
    for _ in 0..3 {
        assert_eq!(
            provider.provide_credentials().unwrap().access_key_id(),
            "AKIDLASTING"
        );
    }
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
}

// ---------------------------------------------------------------------------
// role_arn with source_profile or credential_source (sts:AssumeRole).

fn assume_role_success(key: &str, secret: &str, token: &str) -> String {
    format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><AssumedRoleId>AROA:s</AssumedRoleId><Arn>arn</Arn></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{FAR_FUTURE}</Expiration>
    </Credentials>
  </AssumeRoleResult>
</AssumeRoleResponse>"#
    )
}

/// STS answering AssumeRole for `.../role/NAME` with `ASIANAME`,
/// `NAME-secret` and `NAME-session` (upper-cased), and AccessDenied for
/// the role `denied`.
fn role_sts_stub() -> StubServer {
    StubServer::start(|r| {
        let form = form_fields(&body_text(r));
        if form.get("Action").map(String::as_str) != Some("AssumeRole") {
            return reply(
                400,
                "<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>",
            );
        }
        let role = form["RoleArn"].rsplit('/').next().unwrap().to_uppercase();
        if role == "DENIED" {
            return reply(
                403,
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                 <Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>",
            );
        }
        reply(
            200,
            assume_role_success(
                &format!("ASIA{role}"),
                &format!("{role}-secret"),
                &format!("{role}-session"),
            ),
        )
    })
}

/// Seconds since the epoch of an `X-Amz-Date` such as `20260102T030405Z`.
fn parse_amz_date(text: &str) -> SystemTime {
    let num = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let (y, m, d) = (num(0..4), num(4..6), num(6..8));
    let (hh, mm, ss) = (num(9..11), num(11..13), num(13..15));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    SystemTime::UNIX_EPOCH + Duration::from_secs((days * 86_400 + hh * 3600 + mm * 60 + ss) as u64)
}

/// Checks that `request` carries a valid SigV4 signature for STS in
/// us-east-1 by `signer`: signs the same method, URL, signed headers, body
/// and time again and compares.
fn assert_signed_by(request: &StubRequest, signer: &Credentials) {
    let authorization = request
        .header("authorization")
        .expect("an Authorization header");
    assert!(
        authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={}/",
            signer.access_key_id()
        )),
        "{authorization}"
    );
    assert!(
        authorization.contains("/us-east-1/sts/aws4_request"),
        "{authorization}"
    );
    assert_eq!(
        request.header("x-amz-security-token"),
        signer.session_token()
    );
    let signed_headers = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("SignedHeaders");
    let host = request.header("host").expect("host");
    let mut again = http::Request::post(format!("http://{host}{}", request.path));
    for name in signed_headers.split(';') {
        if !matches!(name, "host" | "x-amz-date" | "x-amz-security-token") {
            again = again.header(name, request.header(name).expect("a signed header"));
        }
    }
    let mut again = again.body(request.body.clone()).unwrap();
    let time = parse_amz_date(request.header("x-amz-date").expect("x-amz-date"));
    kcheck::transport::signing::sign_request(&mut again, signer, "us-east-1", "sts", time)
        .expect("sign");
    assert_eq!(
        again.headers()["authorization"].to_str().unwrap(),
        authorization,
        "the signature does not verify"
    );
}

const ROLE_CONFIG: &str = "\
[profile base]
aws_access_key_id = AKIDBASE
aws_secret_access_key = base-secret
[profile mid]
role_arn = arn:aws:iam::123456789012:role/mid
source_profile = base
[profile top]
role_arn = arn:aws:iam::123456789012:role/top
source_profile = mid
role_session_name = top-session
external_id = ext/123 id
duration_seconds = 1800
[profile selfref]
role_arn = arn:aws:iam::123456789012:role/self
source_profile = selfref
aws_access_key_id = AKIDSELF
aws_secret_access_key = self-secret
[profile a]
role_arn = arn:aws:iam::123456789012:role/a
source_profile = b
[profile b]
role_arn = arn:aws:iam::123456789012:role/b
source_profile = c
[profile c]
role_arn = arn:aws:iam::123456789012:role/c
source_profile = a
[profile loop]
role_arn = arn:aws:iam::123456789012:role/loop
source_profile = loop
[profile mfa]
role_arn = arn:aws:iam::123456789012:role/mfa
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/me
[profile both]
role_arn = arn:aws:iam::123456789012:role/both
source_profile = base
credential_source = Environment
[profile bad-source]
role_arn = arn:aws:iam::123456789012:role/x
credential_source = Laptop
[profile undefined-source]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = nowhere
[profile empty-source]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = region-only
[profile region-only]
region = eu-west-1
[profile bad-duration]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = base
duration_seconds = 60
[profile denied]
role_arn = arn:aws:iam::123456789012:role/denied
source_profile = base
[profile from-env]
role_arn = arn:aws:iam::123456789012:role/envrole
credential_source = Environment
[profile from-ecs]
role_arn = arn:aws:iam::123456789012:role/ecsrole
credential_source = EcsContainer
[profile from-imds]
role_arn = arn:aws:iam::123456789012:role/imdsrole
credential_source = Ec2InstanceMetadata
";

#[test]
fn role_arn_with_source_profile_chains_signed_assume_role_calls() {
    let home = TempDir::new();
    let sts = role_sts_stub();
    let env = |profile: &str| {
        config_env(
            &home,
            ROLE_CONFIG,
            profile,
            &[("AWS_ENDPOINT_URL_STS", sts.url())],
        )
    };
    let credentials = profile_credentials(&env("top")).expect("top credentials");
    assert_eq!(credentials.access_key_id(), "ASIATOP");
    assert_eq!(credentials.secret_access_key(), "TOP-secret");
    assert_eq!(credentials.session_token(), Some("TOP-session"));
    assert!(credentials.expiry().is_some());

    let requests = sts.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }
    // The base profile's keys assume `mid`…
    assert_signed_by(
        &requests[0],
        &Credentials::new("AKIDBASE", "base-secret", None, None),
    );
    let first = form_fields(&body_text(&requests[0]));
    assert_eq!(first["Action"], "AssumeRole");
    assert_eq!(first["Version"], "2011-06-15");
    assert_eq!(first["RoleArn"], "arn:aws:iam::123456789012:role/mid");
    assert!(first["RoleSessionName"].starts_with("kcheck-"), "{first:?}");
    assert!(!first.contains_key("ExternalId") && !first.contains_key("DurationSeconds"));
    // …and `mid`'s temporary credentials assume `top`.
    assert_signed_by(
        &requests[1],
        &Credentials::new("ASIAMID", "MID-secret", Some("MID-session".into()), None),
    );
    let second = form_fields(&body_text(&requests[1]));
    assert_eq!(second["RoleArn"], "arn:aws:iam::123456789012:role/top");
    assert_eq!(second["RoleSessionName"], "top-session");
    assert_eq!(second["ExternalId"], "ext/123 id");
    assert_eq!(second["DurationSeconds"], "1800");

    // A profile that is its own source uses its static keys.
    let credentials = profile_credentials(&env("selfref")).expect("selfref credentials");
    assert_eq!(credentials.access_key_id(), "ASIASELF");
    let requests = sts.requests();
    assert_eq!(requests.len(), 3);
    assert_signed_by(
        &requests[2],
        &Credentials::new("AKIDSELF", "self-secret", None, None),
    );

    // The default chain, cached, finds the same.
    let provider = AwsConfig::builder()
        .environment(env("top"))
        .build()
        .unwrap()
        .credentials_provider();
    assert_eq!(
        provider.provide_credentials().unwrap().access_key_id(),
        "ASIATOP"
    );
    assert_eq!(
        provider.provide_credentials().unwrap().access_key_id(),
        "ASIATOP"
    );
    assert_eq!(sts.requests().len(), 5);
}

#[test]
fn role_misconfigurations_and_sts_errors_name_the_profile() {
    let home = TempDir::new();
    let sts = role_sts_stub();
    let message = |profile: &str| {
        let env = config_env(
            &home,
            ROLE_CONFIG,
            profile,
            &[("AWS_ENDPOINT_URL_STS", sts.url())],
        );
        credentials_message(profile_credentials(&env).unwrap_err())
    };
    for (profile, expected) in [
        ("a", "cycle: a -> b -> c -> a"),
        ("loop", "cycle: loop -> loop"),
        ("mfa", "profile \"mfa\": has mfa_serial"),
        ("both", "both source_profile and credential_source"),
        (
            "bad-source",
            "\"Laptop\" is not one of Environment, Ec2InstanceMetadata",
        ),
        (
            "undefined-source",
            "source_profile \"nowhere\" is not defined",
        ),
        ("empty-source", "\"region-only\" has no credentials"),
        ("bad-duration", "duration_seconds \"60\""),
    ] {
        let text = message(profile);
        assert!(text.contains(expected), "{profile}: {text}");
    }
    assert!(
        sts.requests().is_empty(),
        "nothing reaches STS before the settings are valid"
    );

    let denied = message("denied");
    assert!(
        denied.starts_with("profile \"denied\": STS AssumeRole: AccessDenied (HTTP 403)"),
        "{denied}"
    );
    assert!(!denied.contains("base-secret"), "{denied}");
    assert_eq!(sts.requests().len(), 1);
}

#[test]
fn role_arn_with_credential_source() {
    let home = TempDir::new();
    let sts = role_sts_stub();
    let container = container_stub("ASIACONTAINER");
    let imds = imds_stub("ASIAIMDS");
    let full_uri = format!("{}/creds", container.url());
    let credentials = |profile: &str, extra: &[(&str, &str)]| {
        let mut vars = vec![("AWS_ENDPOINT_URL_STS", sts.url())];
        vars.extend_from_slice(extra);
        profile_credentials(&config_env(&home, ROLE_CONFIG, profile, &vars))
    };

    let from_env = credentials(
        "from-env",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDENVSOURCE"),
            ("AWS_SECRET_ACCESS_KEY", "env-source-secret"),
        ],
    )
    .expect("Environment source");
    assert_eq!(from_env.access_key_id(), "ASIAENVROLE");
    let from_ecs = credentials(
        "from-ecs",
        &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri.as_str())],
    )
    .expect("EcsContainer source");
    assert_eq!(from_ecs.access_key_id(), "ASIAECSROLE");
    let from_imds = credentials(
        "from-imds",
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())],
    )
    .expect("Ec2InstanceMetadata source");
    assert_eq!(from_imds.access_key_id(), "ASIAIMDSROLE");

    let requests = sts.requests();
    assert_eq!(requests.len(), 3);
    assert_signed_by(
        &requests[0],
        &Credentials::new("AKIDENVSOURCE", "env-source-secret", None, None),
    );
    assert_signed_by(
        &requests[1],
        &Credentials::new(
            "ASIACONTAINER",
            "container-secret",
            Some("container-session".into()),
            None,
        ),
    );
    assert_signed_by(
        &requests[2],
        &Credentials::new("ASIAIMDS", "imds-secret", Some("imds-token".into()), None),
    );

    // A source that is not configured is an error naming both.
    let message = credentials_message(credentials("from-env", &[]).unwrap_err());
    assert!(
        message.starts_with("profile \"from-env\": credential_source Environment: "),
        "{message}"
    );
}
