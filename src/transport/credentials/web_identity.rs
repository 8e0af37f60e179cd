//! `sts:AssumeRoleWithWebIdentity` with a token file (EKS IRSA, GitHub
//! Actions OIDC and the like), configured by `AWS_WEB_IDENTITY_TOKEN_FILE` and
//! `AWS_ROLE_ARN`, or by a profile's `web_identity_token_file` and `role_arn`.
//!
//! The call is STS's query protocol: an unsigned form-encoded POST and an XML
//! response. [`StsClient::call`] also makes the signed `AssumeRole` calls of
//! profile roles. The token file is read at every refresh because the platform
//! rotates it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::document::parse_expiration;
use super::fetch::CredentialsHttp;
use super::{
    provide_from_link, provider_error, ChainLink, Credentials, Lookup, ProvideCredentials,
};
use crate::error::{Error, Result};
use crate::transport::profile::expand_home;
use crate::transport::{Environment, HttpOptions};

const NAME: &str = "web identity";

/// What one AssumeRoleWithWebIdentity call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebIdentitySettings {
    pub(crate) role_arn: String,
    pub(crate) token_file: PathBuf,
    pub(crate) session_name: Option<String>,
}

/// Calls STS for one region; shared by the environment and profile flavours
/// of web identity and by profile roles (`AssumeRole`).
#[derive(Debug, Clone)]
pub(crate) struct StsClient {
    http: CredentialsHttp,
    /// The endpoint, or why the environment's override is invalid.
    endpoint: std::result::Result<String, String>,
    /// The region `AssumeRole` requests are signed for.
    region: String,
}

impl StsClient {
    /// STS at `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, or the regional
    /// endpoint.
    pub(crate) fn new(env: &Environment, region: &str, http: &HttpOptions) -> StsClient {
        StsClient {
            http: CredentialsHttp::remote(http),
            endpoint: sts_endpoint(env, region),
            region: region.to_owned(),
        }
    }

    /// Reads the token file and exchanges it for credentials. Errors are
    /// plain text for the caller to prefix.
    pub(crate) fn assume_role(
        &self,
        settings: &WebIdentitySettings,
    ) -> std::result::Result<Credentials, String> {
        // Checked before the token file is read.
        self.endpoint.as_ref().map_err(Clone::clone)?;
        let token = read_token_file(&settings.token_file)?;
        let session_name = settings
            .session_name
            .clone()
            .unwrap_or_else(default_session_name);
        self.call(
            "AssumeRoleWithWebIdentity",
            &[
                ("RoleArn", &settings.role_arn),
                ("RoleSessionName", &session_name),
                ("WebIdentityToken", &token),
            ],
            None,
        )
    }

    /// One STS query-protocol call, `Action=action&Version=2011-06-15` and
    /// `params` as a form POST, SigV4-signed with `signer` when given
    /// (AssumeRoleWithWebIdentity is unsigned); returns the response's
    /// `<Credentials>`.
    pub(crate) fn call(
        &self,
        action: &str,
        params: &[(&str, &str)],
        signer: Option<&Credentials>,
    ) -> std::result::Result<Credentials, String> {
        let endpoint = self.endpoint.as_ref().map_err(Clone::clone)?;
        let mut pairs = vec![("Action", action), ("Version", "2011-06-15")];
        pairs.extend_from_slice(params);
        let body = form_encode(&pairs);
        let url = format!("{endpoint}/");
        let mut signing_error = None;
        let fetched = self
            .http
            .send_with_retry(2, || {
                let mut request = http::Request::post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "text/xml")
                    .body(body.clone().into_bytes())?;
                if let Some(credentials) = signer {
                    // Signed at each attempt: the signature carries the time.
                    if let Err(e) = crate::transport::signing::sign_request(
                        &mut request,
                        credentials,
                        &self.region,
                        "sts",
                        SystemTime::now(),
                    ) {
                        signing_error = Some(e.to_string());
                    }
                }
                Ok(request)
            })
            .map_err(|e| format!("request to {url} failed: {}", e.message))?;
        if let Some(e) = signing_error {
            return Err(e);
        }
        if !fetched.is_success() {
            return Err(describe_sts_error(action, fetched.status, &fetched.body));
        }
        parse_sts_credentials(&fetched.body)
    }
}

/// Credentials from `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN` and the
/// optional `AWS_ROLE_SESSION_NAME`, exchanged with STS.
///
/// The STS endpoint is `AWS_ENDPOINT_URL_STS`, then `AWS_ENDPOINT_URL`, then
/// `https://sts.{region}.amazonaws.com` (`.amazonaws.com.cn` in China).
#[derive(Clone)]
pub struct WebIdentityProvider {
    env: Environment,
    sts: StsClient,
}

impl WebIdentityProvider {
    /// A provider reading `env`, calling STS in `region` with `http`'s
    /// timeouts.
    pub fn new(env: &Environment, region: &str, http: &HttpOptions) -> WebIdentityProvider {
        WebIdentityProvider {
            env: env.clone(),
            sts: StsClient::new(env, region, http),
        }
    }

    /// The settings from the environment, `None` when neither variable is
    /// set.
    fn settings(&self) -> Result<Option<WebIdentitySettings>> {
        let token_file = self.env.var("AWS_WEB_IDENTITY_TOKEN_FILE");
        let role_arn = self.env.var("AWS_ROLE_ARN");
        match (token_file, role_arn) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(provider_error(
                NAME,
                "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not",
            )),
            (None, Some(_)) => Err(provider_error(
                NAME,
                "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not",
            )),
            (Some(token_file), Some(role_arn)) => Ok(Some(WebIdentitySettings {
                role_arn: role_arn.trim().to_owned(),
                token_file: expand_home(&self.env, token_file.trim()),
                session_name: self
                    .env
                    .var("AWS_ROLE_SESSION_NAME")
                    .map(|s| s.trim().to_owned()),
            })),
        }
    }
}

// Not derived: the environment holds secrets.
impl fmt::Debug for WebIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentityProvider")
            .field("endpoint", &self.sts.endpoint)
            .finish_non_exhaustive()
    }
}

impl ChainLink for WebIdentityProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn lookup(&self) -> Result<Lookup> {
        let Some(settings) = self.settings()? else {
            return Ok(Lookup::NotConfigured(
                "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are not set".to_owned(),
            ));
        };
        self.sts
            .assume_role(&settings)
            .map(Lookup::Found)
            .map_err(|e| provider_error(NAME, e))
    }
}

impl ProvideCredentials for WebIdentityProvider {
    fn provide_credentials(&self) -> Result<Credentials> {
        provide_from_link(self)
    }
}

/// The STS endpoint for `region` under `env`'s overrides.
fn sts_endpoint(env: &Environment, region: &str) -> std::result::Result<String, String> {
    for var in ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"] {
        if let Some(url) = env.var(var) {
            return crate::transport::validate_endpoint(&url).map_err(|e| match e {
                Error::Config(message) => format!("{var}: {message}"),
                other => format!("{var}: {other}"),
            });
        }
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Ok(format!("https://sts.{region}.{suffix}"))
}

/// The token, trimmed; its content never appears in an error.
fn read_token_file(path: &Path) -> std::result::Result<String, String> {
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// `kcheck-<milliseconds since the epoch>-<random>`: tells sessions apart in
/// CloudTrail, and fits STS's 2–64 characters of `[\w+=,.@-]`.
pub(crate) fn default_session_name() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("kcheck-{millis}-{:08x}", crate::random::random_u64() as u32)
}

/// `application/x-www-form-urlencoded`: unreserved characters as they are,
/// everything else percent-encoded byte by byte.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, text: &str) {
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, key);
        out.push('=');
        encode(&mut out, value);
    }
    out
}

/// The credentials of a successful AssumeRoleWithWebIdentity response.
fn parse_sts_credentials(xml: &str) -> std::result::Result<Credentials, String> {
    let block =
        xml_tag(xml, "Credentials").ok_or("the STS response has no <Credentials> element")?;
    let field = |tag: &str| {
        xml_tag(block, tag)
            .map(xml_unescape)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("the STS response lacks <{tag}>"))
    };
    let access_key_id = field("AccessKeyId")?;
    let secret_access_key = field("SecretAccessKey")?;
    let session_token = field("SessionToken")?;
    let expiry = parse_expiration(&field("Expiration")?)?;
    Ok(Credentials::new(
        access_key_id.trim(),
        secret_access_key.trim(),
        Some(session_token.trim().to_owned()),
        Some(expiry),
    ))
}

/// `STS AssumeRoleWithWebIdentity: InvalidIdentityToken (HTTP 400): message`,
/// from an XML `<Error>` or, failing that, an excerpt of the error body.
fn describe_sts_error(action: &str, status: u16, body: &str) -> String {
    let error = xml_tag(body, "Error").unwrap_or(body);
    match xml_tag(error, "Code") {
        Some(code) => {
            let message = xml_tag(error, "Message")
                .map(xml_unescape)
                .unwrap_or_default();
            format!(
                "STS {action}: {} (HTTP {status}): {}",
                xml_unescape(code).trim(),
                message.trim()
            )
        }
        None => format!(
            "STS {action} failed (HTTP {status}); body starts {}",
            crate::error::excerpt(body)
        ),
    }
}

/// The text between `<tag ...>` and `</tag>` (first occurrence), enough for
/// STS's flat responses. `<tag/>` and nested same-name tags are not handled.
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut from = 0;
    while let Some(found) = xml.get(from..)?.find(&open) {
        let start = from + found + open.len();
        // `<Credentials>` or `<Credentials xmlns=…>`, but not `<CredentialsX>`.
        match xml[start..].chars().next() {
            Some('>') | Some(' ') | Some('\t') | Some('\n') | Some('\r') => {
                let content_start = start + xml[start..].find('>')? + 1;
                let end = xml[content_start..].find(&close)?;
                return Some(&xml[content_start..content_start + end]);
            }
            _ => from = start,
        }
    }
    None
}

/// Resolves the five predefined entities and numeric character references.
fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(semi) = after.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("RoleArn", "arn:aws:iam::1:role/a b"), ("T", "x+y=z&~")]),
            "RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b&T=x%2By%3Dz%26~"
        );
    }

    #[test]
    fn xml_extraction() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>sub</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>tok&amp;en</SessionToken>
      <SecretAccessKey>secret</SecretAccessKey>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
      <AccessKeyId>ASIAX</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let creds = parse_sts_credentials(xml).unwrap();
        assert_eq!(creds.access_key_id(), "ASIAX");
        assert_eq!(creds.session_token(), Some("tok&en"));
        assert!(creds.expiry().is_some());
        assert!(parse_sts_credentials("<x/>").is_err());
        assert!(parse_sts_credentials("<Credentials><AccessKeyId>A</AccessKeyId>").is_err());
    }

    #[test]
    fn xml_errors() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                    <Message>Token &lt;expired&gt;</Message></Error></ErrorResponse>";
        assert_eq!(
            describe_sts_error("AssumeRoleWithWebIdentity", 400, body),
            "STS AssumeRoleWithWebIdentity: InvalidIdentityToken (HTTP 400): Token <expired>"
        );
        assert!(
            describe_sts_error("AssumeRole", 502, "<html>bad gateway</html>").contains("HTTP 502")
        );
    }

    #[test]
    fn unescape_edge_cases() {
        assert_eq!(xml_unescape("a&#65;&#x42;&bogus;&"), "aAB&bogus;&");
        assert_eq!(xml_unescape("é&amp;"), "é&");
    }

    #[test]
    fn endpoints() {
        let env = Environment::from_vars(Vec::<(String, String)>::new());
        assert_eq!(
            sts_endpoint(&env, "eu-west-1").unwrap(),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            sts_endpoint(&env, "cn-north-1").unwrap(),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        let env = Environment::from_vars([
            ("AWS_ENDPOINT_URL", "http://a:1/"),
            ("AWS_ENDPOINT_URL_STS", "http://b:2/"),
        ]);
        assert_eq!(sts_endpoint(&env, "x").unwrap(), "http://b:2");
        let env = Environment::from_vars([("AWS_ENDPOINT_URL", "ftp://x")]);
        assert!(sts_endpoint(&env, "x")
            .unwrap_err()
            .starts_with("AWS_ENDPOINT_URL:"));
    }
}
