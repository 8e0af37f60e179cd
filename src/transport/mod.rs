//! Everything between kcheck and AWS's HTTP APIs: configuration resolution
//! (region, endpoint, credentials) as the AWS SDKs do it, SigV4 signing, the
//! shared JSON-protocol client and its retry policy.

mod body;
mod client;
pub mod credentials;
pub(crate) mod deadline;
mod env;
mod profile;
mod region;
mod resolver;
pub mod retry;
pub mod signing;

use std::fmt;
use std::time::Duration;

pub(crate) use client::JsonClient;
pub use credentials::{Credentials, ProvideCredentials, SharedCredentialsProvider};
pub use env::Environment;
pub use retry::RetryPolicy;

use crate::error::{Error, Result};

/// The AWS services kcheck calls with the JSON protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Kinesis Data Streams (JSON 1.1, `Kinesis_20131202`).
    Kinesis,
    /// DynamoDB (JSON 1.0, `DynamoDB_20120810`).
    DynamoDb,
}

impl Service {
    /// SigV4 service name, also the endpoint prefix.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Kinesis => "kinesis",
            Service::DynamoDb => "dynamodb",
        }
    }

    fn target_prefix(self) -> &'static str {
        match self {
            Service::Kinesis => "Kinesis_20131202",
            Service::DynamoDb => "DynamoDB_20120810",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Service::Kinesis => "application/x-amz-json-1.1",
            Service::DynamoDb => "application/x-amz-json-1.0",
        }
    }

    /// The service-specific endpoint variable, e.g. `AWS_ENDPOINT_URL_KINESIS`.
    fn endpoint_env_var(self) -> &'static str {
        match self {
            Service::Kinesis => "AWS_ENDPOINT_URL_KINESIS",
            Service::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
        }
    }
}

/// HTTP limits of a client. Every wait is finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, sending and receiving included.
    pub request_timeout: Duration,
    /// Largest accepted response body. A full GetRecords page is 10 MiB of
    /// data, 13.4 MiB in base64, plus up to about 5 MiB of keys and
    /// sequence numbers for 10 000 records; a consumer whose pages still do
    /// not fit asks for fewer records per call.
    pub max_response_bytes: u64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_response_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Resolved settings for talking to AWS: region, endpoint override,
/// credentials, HTTP limits and retries. Cheap to clone.
#[derive(Clone)]
pub struct AwsConfig {
    region: String,
    endpoint_url: Option<String>,
    credentials: SharedCredentialsProvider,
    env: Environment,
    http: HttpOptions,
    retry: RetryPolicy,
}

impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("credentials", &self.credentials)
            .field("http", &self.http)
            .field("retry", &self.retry)
            .finish()
    }
}

impl AwsConfig {
    /// A builder; `AwsConfig::builder().build()` resolves everything from the
    /// environment as the AWS SDKs do.
    pub fn builder() -> AwsConfigBuilder {
        AwsConfigBuilder::default()
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The credentials provider.
    pub fn credentials_provider(&self) -> SharedCredentialsProvider {
        self.credentials.clone()
    }

    /// HTTP limits.
    pub fn http_options(&self) -> HttpOptions {
        self.http
    }

    /// The retry policy of single requests.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The same settings with another endpoint override (the consumer and the
    /// checkpointer may point at different hosts).
    pub fn with_endpoint_url(&self, endpoint_url: Option<&str>) -> Result<AwsConfig> {
        let mut config = self.clone();
        config.endpoint_url = endpoint_url.map(validate_endpoint).transpose()?;
        Ok(config)
    }

    /// The settings of a client configured like async-kinesis's objects: an
    /// optional base config with `region_name` and `endpoint_url` on top.
    pub(crate) fn for_client(
        base: Option<AwsConfig>,
        region_name: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<AwsConfig> {
        let mut config = match (base, region_name) {
            (Some(mut config), region) => {
                if let Some(region) = region {
                    config.region = region::resolve(Some(region), &config.env)?;
                }
                config
            }
            // The default credential chain (STS for web identity) then uses
            // the caller's region too.
            (None, Some(region)) => AwsConfig::builder().region(region).build()?,
            (None, None) => AwsConfig::builder().build()?,
        };
        if let Some(url) = endpoint_url {
            config = config.with_endpoint_url(Some(url))?;
        }
        Ok(config)
    }

    /// The endpoint of `service`: the explicit endpoint_url, then
    /// `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, then the
    /// regional https endpoint.
    pub fn endpoint(&self, service: Service) -> Result<String> {
        if let Some(url) = &self.endpoint_url {
            return Ok(url.clone());
        }
        for var in [service.endpoint_env_var(), "AWS_ENDPOINT_URL"] {
            if let Some(url) = self.env.var(var) {
                return validate_endpoint(&url).map_err(|e| Error::Config(format!("{var}: {e}")));
            }
        }
        let suffix = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        Ok(format!(
            "https://{}.{}.{}",
            service.signing_name(),
            self.region,
            suffix
        ))
    }
}

/// Builds an [`AwsConfig`]; anything left unset is resolved from the
/// environment.
#[derive(Default)]
pub struct AwsConfigBuilder {
    region: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    env: Option<Environment>,
    profile: Option<String>,
    http: HttpOptions,
    retry: RetryPolicy,
}

/// The variables that make the default chain use static credentials from
/// the environment instead of a profile.
const ENVIRONMENT_CREDENTIAL_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

impl AwsConfigBuilder {
    /// The region (otherwise AWS_REGION, AWS_DEFAULT_REGION, the profile's
    /// region, then us-east-1).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Send every request to this endpoint, e.g. `http://127.0.0.1:4567`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Use these credentials instead of the default provider chain.
    pub fn credentials(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(std::sync::Arc::new(provider));
        self
    }

    /// Resolve from this environment instead of the process's.
    pub fn environment(mut self, env: Environment) -> Self {
        self.env = Some(env);
        self
    }

    /// Use this profile of the shared config and credentials files, as
    /// the AWS CLI's `--profile` does: it wins over `AWS_PROFILE`, and its
    /// credentials over `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (a
    /// profile that is not defined is an error when credentials are
    /// first needed).
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// HTTP limits.
    pub fn http_options(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Retry policy of single requests.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Resolves region and credentials provider. Credentials themselves are
    /// fetched lazily, at the first request.
    pub fn build(self) -> Result<AwsConfig> {
        let mut env = self.env.unwrap_or_else(Environment::process);
        if let Some(profile) = self.profile {
            env = ENVIRONMENT_CREDENTIAL_VARS
                .iter()
                .fold(env.with_var("AWS_PROFILE", profile), |env, var| {
                    env.without_var(*var)
                });
        }
        let region = region::resolve(self.region.as_deref(), &env)?;
        let endpoint_url = self
            .endpoint_url
            .as_deref()
            .map(validate_endpoint)
            .transpose()?;
        let credentials = match self.credentials {
            Some(provider) => provider,
            None => credentials::default_chain(&env, &region, &self.http),
        };
        Ok(AwsConfig {
            region,
            endpoint_url,
            credentials,
            env,
            http: self.http,
            retry: self.retry,
        })
    }
}

/// Checks that an endpoint is an absolute http(s) URL and drops a trailing `/`.
fn validate_endpoint(url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_owned())
        }
        _ => Err(Error::Config(format!(
            "endpoint_url {} is not an http:// or https:// URL with a host",
            crate::error::excerpt(url)
        ))),
    }
}

/// Where a builder's client connects, set the way async-kinesis's objects
/// take it: an optional base config with `region_name` and `endpoint_url`
/// on top.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSettings {
    pub endpoint_url: Option<String>,
    pub region_name: Option<String>,
    pub aws_config: Option<AwsConfig>,
}

impl ClientSettings {
    /// The config the client uses.
    pub fn resolve(self) -> Result<AwsConfig> {
        AwsConfig::for_client(
            self.aws_config,
            self.region_name.as_deref(),
            self.endpoint_url.as_deref(),
        )
    }
}

/// The `endpoint_url`, `region_name` and `aws_config` setters of a builder
/// whose `client` field is a [`ClientSettings`]; `$service` names the
/// endpoint in the docs.
macro_rules! client_setters {
    ($service:literal) => {
        #[doc = concat!("The ", $service, " endpoint (otherwise resolved as the AWS SDKs do).")]
        pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
            self.client.endpoint_url = Some(url.into());
            self
        }

        /// The region [AWS_REGION, AWS_DEFAULT_REGION or the profile's, as
        /// the AWS SDKs resolve it].
        pub fn region_name(mut self, region: impl Into<String>) -> Self {
            self.client.region_name = Some(region.into());
            self
        }

        /// Region, credentials and HTTP settings; `endpoint_url` and
        /// `region_name` still apply on top.
        pub fn aws_config(mut self, config: $crate::transport::AwsConfig) -> Self {
            self.client.aws_config = Some(config);
            self
        }
    };
}
pub(crate) use client_setters;
