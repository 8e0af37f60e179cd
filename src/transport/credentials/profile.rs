//! Credentials from the selected profile of the shared files
//! (~/.aws/credentials and ~/.aws/config): static keys, or a role assumed
//! with a web identity token file.

use std::fmt;

use super::web_identity::{StsClient, WebIdentitySettings};
use super::{provide_from_link, ChainLink, Credentials, Lookup, ProvideCredentials};
use crate::error::{Error, Result};
use crate::transport::profile::{expand_home, Properties, SharedProfiles};
use crate::transport::{Environment, HttpOptions};

const NAME: &str = "profile";

/// Profile settings kcheck cannot act on; a profile using them fails
/// loudly rather than falling through to another identity.
const UNSUPPORTED: [(&str, &str); 5] = [
    (
        "source_profile",
        "role_arn with source_profile (role chaining)",
    ),
    ("credential_source", "role_arn with credential_source"),
    ("credential_process", "credential_process"),
    ("sso_start_url", "IAM Identity Center (SSO)"),
    ("sso_session", "IAM Identity Center (SSO)"),
];

/// Reads the profile `AWS_PROFILE` selects (else `default`) from
/// `AWS_SHARED_CREDENTIALS_FILE` (else ~/.aws/credentials) and
/// `AWS_CONFIG_FILE` (else ~/.aws/config) at each call.
///
/// Supports `aws_access_key_id`, `aws_secret_access_key`,
/// `aws_session_token`, and `role_arn` + `web_identity_token_file`
/// (+ `role_session_name`). Credentials-file values win over config-file
/// values of the same profile. A profile named by `AWS_PROFILE` that
/// neither file defines is an error.
#[derive(Clone)]
pub struct ProfileProvider {
    env: Environment,
    sts: StsClient,
}

impl ProfileProvider {
    /// A provider reading `env`; web identity profiles call STS in `region`
    /// with `http`'s timeouts.
    pub fn new(env: &Environment, region: &str, http: &HttpOptions) -> ProfileProvider {
        ProfileProvider {
            env: env.clone(),
            sts: StsClient::new(env, region, http),
        }
    }
}

// Not derived: the environment holds secrets.
impl fmt::Debug for ProfileProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileProvider").finish_non_exhaustive()
    }
}

impl ChainLink for ProfileProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn lookup(&self) -> Result<Lookup> {
        let profiles = SharedProfiles::load(&self.env).map_err(|e| match e {
            Error::Config(message) => Error::Credentials(format!("{NAME}: {message}")),
            other => other,
        })?;
        let name = profiles.selected.as_str();
        let Some(properties) = profiles.merged(name) else {
            if profiles.explicitly_selected {
                return Err(Error::Credentials(format!(
                    "{NAME}: profile {name:?} (from AWS_PROFILE) is not defined in {}",
                    profiles.describe_paths()
                )));
            }
            return Ok(Lookup::NotConfigured(format!(
                "no profile {name:?} in {}",
                profiles.describe_paths()
            )));
        };
        let fail = |message: String| Error::Credentials(format!("{NAME} {name:?}: {message}"));
        match profile_source(&self.env, &properties).map_err(fail)? {
            ProfileSource::Static(credentials) => Ok(Lookup::Found(credentials)),
            ProfileSource::WebIdentity(settings) => self
                .sts
                .assume_role(&settings)
                .map(Lookup::Found)
                .map_err(|e| fail(format!("web identity: {e}"))),
            ProfileSource::Nothing => Ok(Lookup::NotConfigured(format!(
                "profile {name:?} has no credentials"
            ))),
        }
    }
}

impl ProvideCredentials for ProfileProvider {
    fn provide_credentials(&self) -> Result<Credentials> {
        provide_from_link(self)
    }
}

/// How a profile supplies credentials.
enum ProfileSource {
    Static(Credentials),
    WebIdentity(WebIdentitySettings),
    /// Only other settings (region, output…): not a credentials profile.
    Nothing,
}

/// Decides what `properties` configure. A role takes precedence over static
/// keys in the same profile, as in the SDKs (the keys then belong to the
/// role's source).
fn profile_source(
    env: &Environment,
    properties: &Properties,
) -> std::result::Result<ProfileSource, String> {
    let get = |key: &str| {
        properties
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    if let Some(role_arn) = get("role_arn") {
        if let Some(token_file) = get("web_identity_token_file") {
            return Ok(ProfileSource::WebIdentity(WebIdentitySettings {
                role_arn: role_arn.to_owned(),
                token_file: expand_home(env, token_file),
                session_name: get("role_session_name").map(str::to_owned),
            }));
        }
    }
    for (key, what) in UNSUPPORTED {
        if get(key).is_some() {
            return Err(format!("uses {what}, which kcheck does not support"));
        }
    }
    if get("role_arn").is_some() {
        return Err(
            "has role_arn without web_identity_token_file; kcheck supports only web identity roles"
                .to_owned(),
        );
    }
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(access_key), Some(secret_key)) => Ok(ProfileSource::Static(Credentials::new(
            access_key,
            secret_key,
            get("aws_session_token").map(str::to_owned),
            None,
        ))),
        (Some(_), None) => Err("has aws_access_key_id but no aws_secret_access_key".to_owned()),
        (None, Some(_)) => Err("has aws_secret_access_key but no aws_access_key_id".to_owned()),
        (None, None) => Ok(ProfileSource::Nothing),
    }
}
