//! Container credentials: the ECS task role endpoint
//! (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`) and any full URI
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, e.g. EKS Pod Identity, Greengrass)
//! with an optional authorization token.
//!
//! Over plain http the full URI may only point at loopback or at the
//! ECS/EKS link-local agents, as in the SDKs: anything else would send the
//! authorization token, and trust credentials from, an arbitrary host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::document::parse_credentials_json;
use super::fetch::{header_safe, CredentialsHttp};
use super::{
    provide_from_link, provider_error, ChainLink, Credentials, Lookup, ProvideCredentials,
};
use crate::error::Result;
use crate::transport::profile::expand_home;
use crate::transport::{Environment, HttpOptions};

const NAME: &str = "container";

/// The ECS agent that serves relative URIs.
const ECS_HOST: &str = "http://169.254.170.2";

/// Link-local agents allowed over http besides loopback: ECS, and EKS Pod
/// Identity over IPv4 and IPv6.
const ALLOWED_IPV4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
];
const ALLOWED_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23);

/// The local agents answer at once; these only bound a stuck agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Credentials from the container credentials endpoint:
/// `http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` with the `Authorization` header from
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at each call) or
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
///
/// A full `http://` URI must name a loopback host (127.0.0.0/8, `[::1]`,
/// `localhost`) or the ECS/EKS agents (169.254.170.2, 169.254.170.23,
/// `[fd00:ec2::23]`); `https://` may name any host.
#[derive(Clone)]
pub struct ContainerProvider {
    env: Environment,
    http: CredentialsHttp,
}

impl ContainerProvider {
    /// A provider reading `env`, with `http`'s limits (and short timeouts:
    /// the endpoint is local).
    pub fn new(env: &Environment, http: &HttpOptions) -> ContainerProvider {
        ContainerProvider {
            env: env.clone(),
            http: CredentialsHttp::local(CONNECT_TIMEOUT, TOTAL_TIMEOUT, http),
        }
    }

    /// The URL to ask, `None` when neither variable is set.
    fn url(&self) -> std::result::Result<Option<String>, String> {
        if let Some(relative) = self.env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            let relative = relative.trim();
            let separator = if relative.starts_with('/') { "" } else { "/" };
            return Ok(Some(format!("{ECS_HOST}{separator}{relative}")));
        }
        match self.env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            Some(full) => check_full_uri(full.trim()).map(|()| Some(full.trim().to_owned())),
            None => Ok(None),
        }
    }

    /// The `Authorization` value, if configured; the file wins over the
    /// variable and is re-read each time (it rotates).
    fn authorization(&self) -> std::result::Result<Option<String>, String> {
        let (token, source) =
            if let Some(path) = self.env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
                let path: PathBuf = expand_home(&self.env, path.trim());
                let token = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "cannot read the authorization token file {}: {e}",
                        path.display()
                    )
                })?;
                (token, format!("the token file {}", path.display()))
            } else if let Some(token) = self.env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
                (token, "AWS_CONTAINER_AUTHORIZATION_TOKEN".to_owned())
            } else {
                return Ok(None);
            };
        let token = token.trim();
        if !header_safe(token) {
            return Err(format!(
                "the authorization token from {source} is empty or not a valid HTTP header value"
            ));
        }
        Ok(Some(token.to_owned()))
    }
}

// Not derived: the environment holds the authorization token.
impl fmt::Debug for ContainerProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerProvider").finish_non_exhaustive()
    }
}

impl ChainLink for ContainerProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn lookup(&self) -> Result<Lookup> {
        let fail = |message: String| provider_error(NAME, message);
        let Some(url) = self.url().map_err(fail)? else {
            return Ok(Lookup::NotConfigured(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI are not set"
                    .to_owned(),
            ));
        };
        let authorization = self.authorization().map_err(fail)?;
        let fetched = self
            .http
            .send_with_retry(2, || {
                let mut request = http::Request::get(&url).header("accept", "application/json");
                if let Some(token) = &authorization {
                    request = request.header("authorization", token);
                }
                request.body(())
            })
            .map_err(|e| fail(format!("request to {url} failed: {}", e.message)))?;
        if !fetched.is_success() {
            return Err(fail(format!(
                "{url} answered HTTP {}: {}",
                fetched.status,
                crate::error::excerpt(&fetched.body)
            )));
        }
        parse_credentials_json(&fetched.body)
            .map(Lookup::Found)
            .map_err(|e| fail(format!("{url}: {e}")))
    }
}

impl ProvideCredentials for ContainerProvider {
    fn provide_credentials(&self) -> Result<Credentials> {
        provide_from_link(self)
    }
}

/// Accepts `https://` anything, and `http://` only to the allowed hosts.
fn check_full_uri(uri: &str) -> std::result::Result<(), String> {
    let invalid =
        || format!("AWS_CONTAINER_CREDENTIALS_FULL_URI {uri:?} is not an http(s) URL with a host");
    let (scheme, rest) = uri.split_once("://").ok_or_else(invalid)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo would make `http://127.0.0.1@evil.example/` look local.
    if authority.contains('@') {
        return Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI {uri:?} must not contain user information"
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(invalid());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_allowed_http_host(host) => Ok(()),
        "http" => Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI {uri:?}: over http only loopback hosts \
             (127.0.0.0/8, [::1], localhost) and the ECS/EKS agents (169.254.170.2, \
             169.254.170.23, [fd00:ec2::23]) are allowed; use https for other hosts"
        )),
        _ => Err(invalid()),
    }
}

/// Loopback, or one of the ECS/EKS link-local agents.
fn is_allowed_http_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ALLOWED_IPV4.contains(&ip),
        Ok(IpAddr::V6(ip)) => ip.is_loopback() || ip == ALLOWED_IPV6,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_uri_hosts() {
        for ok in [
            "http://127.0.0.1:8080/creds",
            "http://127.1.2.3/x",
            "http://localhost/x",
            "http://LOCALHOST:80",
            "http://[::1]:9/x",
            "http://169.254.170.2/v2/credentials",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "https://credentials.example.com/x",
        ] {
            assert_eq!(check_full_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com/x",
            "http://10.0.0.1/x",
            "http://169.254.169.254/x",
            "http://127.0.0.1@evil.example/x",
            "http://localhost.evil.example/x",
            "ftp://127.0.0.1/x",
            "127.0.0.1/x",
            "http:///x",
        ] {
            assert!(check_full_uri(bad).is_err(), "{bad}");
        }
    }
}
