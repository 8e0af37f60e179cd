//! Credentials from the selected profile of the shared files
//! (~/.aws/credentials and ~/.aws/config): static keys, a
//! `credential_process`, or a role assumed with a web identity token file or
//! with the credentials of a `source_profile` or a `credential_source`.

use std::fmt;
use std::time::Duration;

use super::web_identity::{default_session_name, StsClient, WebIdentitySettings};
use super::{
    process, provide_from_link, ChainLink, ContainerProvider, Credentials, EnvironmentProvider,
    ImdsProvider, Lookup, ProvideCredentials,
};
use crate::error::{Error, Result};
use crate::transport::profile::{expand_home, Properties, SharedProfiles};
use crate::transport::{Environment, HttpOptions};

const NAME: &str = "profile";

/// Profile settings kcheck cannot act on; a profile using them fails
/// loudly rather than falling through to another identity.
const UNSUPPORTED: [(&str, &str); 2] = [
    ("sso_start_url", "IAM Identity Center (SSO)"),
    ("sso_session", "IAM Identity Center (SSO)"),
];

/// Reads the profile `AWS_PROFILE` selects (else `default`) from
/// `AWS_SHARED_CREDENTIALS_FILE` (else ~/.aws/credentials) and
/// `AWS_CONFIG_FILE` (else ~/.aws/config) at each call.
///
/// In the SDKs' order, a profile's credentials are:
/// - `role_arn` with `web_identity_token_file` (+ `role_session_name`);
/// - `role_arn` with `source_profile` (whose own credentials are resolved
///   the same way, so roles chain; a cycle is an error) or with
///   `credential_source` (`Environment`, `Ec2InstanceMetadata` or
///   `EcsContainer`), through a signed STS `AssumeRole` call with
///   `role_session_name`, `external_id` and `duration_seconds`
///   (`mfa_serial` is refused: no code can be entered);
/// - `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`
///   (in a profile used as a `source_profile`, these win over its own
///   `role_arn`, as in the SDKs);
/// - `credential_process`, run through the shell with the request timeout.
///
/// Credentials-file values win over config-file values of the same
/// profile. A profile named by `AWS_PROFILE` that neither file defines is
/// an error.
#[derive(Clone)]
pub struct ProfileProvider {
    env: Environment,
    http: HttpOptions,
    sts: StsClient,
}

impl ProfileProvider {
    /// A provider reading `env`; roles call STS in `region` with `http`'s
    /// timeouts, and a `credential_process` must finish within
    /// `http.request_timeout`.
    pub fn new(env: &Environment, region: &str, http: &HttpOptions) -> ProfileProvider {
        ProfileProvider {
            env: env.clone(),
            http: *http,
            sts: StsClient::new(env, region, http),
        }
    }

    fn process_timeout(&self) -> Duration {
        self.http.request_timeout
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
        if !profiles.contains(name) {
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
        }
        match self.resolve(&profiles, name, &mut Vec::new())? {
            Some(credentials) => Ok(Lookup::Found(credentials)),
            None => Ok(Lookup::NotConfigured(format!(
                "profile {name:?} has no credentials"
            ))),
        }
    }
}

impl ProfileProvider {
    /// The credentials of profile `name`, `None` when it configures none.
    /// `chain` holds the profiles whose role needs this one's credentials
    /// (empty for the selected profile); errors name the profile at fault.
    fn resolve(
        &self,
        profiles: &SharedProfiles,
        name: &str,
        chain: &mut Vec<String>,
    ) -> Result<Option<Credentials>> {
        let fail = |message: String| Error::Credentials(format!("{NAME} {name:?}: {message}"));
        let Some(properties) = profiles.merged(name) else {
            // Only a source_profile can get here.
            let user = chain.last().map(String::as_str).unwrap_or_default();
            return Err(Error::Credentials(format!(
                "{NAME} {user:?}: source_profile {name:?} is not defined in {}",
                profiles.describe_paths()
            )));
        };
        let as_source = !chain.is_empty();
        let source = profile_source(&self.env, &properties, as_source).map_err(fail)?;
        match source {
            ProfileSource::Static(credentials) => Ok(Some(credentials)),
            ProfileSource::Process(command) => process::run(&command, self.process_timeout())
                .map(Some)
                .map_err(fail),
            ProfileSource::WebIdentity(settings) => self
                .sts
                .assume_role(&settings)
                .map(Some)
                .map_err(|e| fail(format!("web identity: {e}"))),
            ProfileSource::Role { role, source } => {
                let base = match source {
                    RoleSource::Profile(source_name) if source_name == name => {
                        // Its own source: its static keys, as in the SDKs.
                        match profile_source(&self.env, &properties, true) {
                            Ok(ProfileSource::Static(credentials)) => credentials,
                            _ => {
                                return Err(fail(format!(
                                    "source_profile forms a cycle: {name} -> {name}"
                                )))
                            }
                        }
                    }
                    RoleSource::Profile(source_name) => {
                        chain.push(name.to_owned());
                        if chain.contains(&source_name) {
                            let mut cycle = chain.clone();
                            cycle.push(source_name);
                            return Err(fail(format!(
                                "source_profile forms a cycle: {}",
                                cycle.join(" -> ")
                            )));
                        }
                        let base = self.resolve(profiles, &source_name, chain)?;
                        chain.pop();
                        base.ok_or_else(|| {
                            fail(format!(
                                "its source_profile {source_name:?} has no credentials"
                            ))
                        })?
                    }
                    RoleSource::Named(named) => named
                        .credentials(&self.env, &self.http)
                        .map_err(|e| fail(format!("credential_source {}: {e}", named.as_str())))?,
                };
                self.assume(&role, &base).map(Some).map_err(fail)
            }
            ProfileSource::Nothing => Ok(None),
        }
    }

    /// `sts:AssumeRole` signed with `base`.
    fn assume(
        &self,
        role: &RoleSettings,
        base: &Credentials,
    ) -> std::result::Result<Credentials, String> {
        let session_name = role
            .session_name
            .clone()
            .unwrap_or_else(default_session_name);
        let duration = role.duration_seconds.map(|d| d.to_string());
        let mut params = vec![
            ("RoleArn", role.role_arn.as_str()),
            ("RoleSessionName", session_name.as_str()),
        ];
        if let Some(external_id) = &role.external_id {
            params.push(("ExternalId", external_id));
        }
        if let Some(duration) = &duration {
            params.push(("DurationSeconds", duration));
        }
        self.sts.call("AssumeRole", &params, Some(base))
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
    Process(String),
    WebIdentity(WebIdentitySettings),
    Role {
        role: RoleSettings,
        source: RoleSource,
    },
    /// Only other settings (region, output…): not a credentials profile.
    Nothing,
}

/// What one `AssumeRole` call needs besides the source credentials.
struct RoleSettings {
    role_arn: String,
    session_name: Option<String>,
    external_id: Option<String>,
    duration_seconds: Option<u32>,
}

/// Where a role's source credentials come from.
enum RoleSource {
    Profile(String),
    Named(CredentialSource),
}

/// The values of `credential_source`.
#[derive(Clone, Copy)]
enum CredentialSource {
    Environment,
    Ec2InstanceMetadata,
    EcsContainer,
}

impl CredentialSource {
    const ALL: [CredentialSource; 3] = [
        CredentialSource::Environment,
        CredentialSource::Ec2InstanceMetadata,
        CredentialSource::EcsContainer,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Environment => "Environment",
            CredentialSource::Ec2InstanceMetadata => "Ec2InstanceMetadata",
            CredentialSource::EcsContainer => "EcsContainer",
        }
    }

    /// The credentials of that provider (not configured is an error).
    fn credentials(self, env: &Environment, http: &HttpOptions) -> Result<Credentials> {
        match self {
            CredentialSource::Environment => EnvironmentProvider::new(env).provide_credentials(),
            CredentialSource::Ec2InstanceMetadata => {
                ImdsProvider::new(env, http).provide_credentials()
            }
            CredentialSource::EcsContainer => {
                ContainerProvider::new(env, http).provide_credentials()
            }
        }
    }
}

/// Decides what `properties` configure. A role takes precedence over static
/// keys in the same profile, as in the SDKs (the keys then belong to the
/// role's source), except in a profile used as a `source_profile`
/// (`as_source`), where static keys win.
fn profile_source(
    env: &Environment,
    properties: &Properties,
    as_source: bool,
) -> std::result::Result<ProfileSource, String> {
    let get = |key: &str| {
        properties
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let static_keys = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(access_key), Some(secret_key)) => Some(Credentials::new(
            access_key,
            secret_key,
            get("aws_session_token").map(str::to_owned),
            None,
        )),
        (Some(_), None) => {
            return Err("has aws_access_key_id but no aws_secret_access_key".to_owned())
        }
        (None, Some(_)) => {
            return Err("has aws_secret_access_key but no aws_access_key_id".to_owned())
        }
        (None, None) => None,
    };
    if let (Some(credentials), true) = (&static_keys, as_source) {
        return Ok(ProfileSource::Static(credentials.clone()));
    }
    for (key, what) in UNSUPPORTED {
        if get(key).is_some() {
            return Err(format!("uses {what}, which kcheck does not support"));
        }
    }
    if let Some(role_arn) = get("role_arn") {
        if let Some(token_file) = get("web_identity_token_file") {
            return Ok(ProfileSource::WebIdentity(WebIdentitySettings {
                role_arn: role_arn.to_owned(),
                token_file: expand_home(env, token_file),
                session_name: get("role_session_name").map(str::to_owned),
            }));
        }
        if get("mfa_serial").is_some() {
            return Err(
                "has mfa_serial: roles that need an MFA code are not supported (kcheck cannot \
                 ask for a code); use credentials from a session made with the code instead"
                    .to_owned(),
            );
        }
        let source = match (get("source_profile"), get("credential_source")) {
            (Some(_), Some(_)) => {
                return Err(
                    "has both source_profile and credential_source; a role takes one".to_owned(),
                )
            }
            (Some(profile), None) => RoleSource::Profile(profile.to_owned()),
            (None, Some(source)) => RoleSource::Named(
                CredentialSource::ALL
                    .into_iter()
                    .find(|s| s.as_str() == source)
                    .ok_or_else(|| {
                        format!(
                            "credential_source {} is not one of Environment, \
                             Ec2InstanceMetadata, EcsContainer",
                            crate::error::excerpt(source)
                        )
                    })?,
            ),
            (None, None) => {
                return Err("has role_arn without source_profile, credential_source or \
                     web_identity_token_file"
                    .to_owned())
            }
        };
        let duration_seconds = get("duration_seconds")
            .map(|d| {
                d.parse::<u32>()
                    .ok()
                    .filter(|d| (900..=43_200).contains(d))
                    .ok_or_else(|| {
                        format!(
                            "duration_seconds {} is not a number of seconds from 900 to 43200",
                            crate::error::excerpt(d)
                        )
                    })
            })
            .transpose()?;
        return Ok(ProfileSource::Role {
            role: RoleSettings {
                role_arn: role_arn.to_owned(),
                session_name: get("role_session_name").map(str::to_owned),
                external_id: get("external_id").map(str::to_owned),
                duration_seconds,
            },
            source,
        });
    }
    if let Some(credentials) = static_keys {
        return Ok(ProfileSource::Static(credentials));
    }
    if let Some(command) = get("credential_process") {
        return Ok(ProfileSource::Process(command.to_owned()));
    }
    Ok(ProfileSource::Nothing)
}
