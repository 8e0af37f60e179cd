//! Credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`.

use std::fmt;

use super::{
    provide_from_link, provider_error, ChainLink, Credentials, Lookup, ProvideCredentials,
};
use crate::error::Result;
use crate::transport::Environment;

const NAME: &str = "environment";

/// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
/// `AWS_SESSION_TOKEN` at each call.
#[derive(Clone)]
pub struct EnvironmentProvider {
    env: Environment,
}

impl EnvironmentProvider {
    /// A provider reading `env`.
    pub fn new(env: &Environment) -> EnvironmentProvider {
        EnvironmentProvider { env: env.clone() }
    }
}

// Not derived: the environment holds the secret key.
impl fmt::Debug for EnvironmentProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvironmentProvider")
            .finish_non_exhaustive()
    }
}

impl ChainLink for EnvironmentProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn lookup(&self) -> Result<Lookup> {
        let access_key = self.env.var("AWS_ACCESS_KEY_ID");
        let secret_key = self.env.var("AWS_SECRET_ACCESS_KEY");
        match (access_key, secret_key) {
            (None, None) => Ok(Lookup::NotConfigured(
                "AWS_ACCESS_KEY_ID is not set".to_owned(),
            )),
            // Half a key pair is a mistake worth reporting, not a reason to
            // silently use some other identity further down the chain.
            (Some(_), None) => Err(provider_error(
                NAME,
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            )),
            (None, Some(_)) => Err(provider_error(
                NAME,
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
            )),
            (Some(access_key), Some(secret_key)) => Ok(Lookup::Found(Credentials::new(
                access_key.trim(),
                secret_key.trim(),
                self.env
                    .var("AWS_SESSION_TOKEN")
                    .map(|t| t.trim().to_owned()),
                None,
            ))),
        }
    }
}

impl ProvideCredentials for EnvironmentProvider {
    fn provide_credentials(&self) -> Result<Credentials> {
        provide_from_link(self)
    }
}
