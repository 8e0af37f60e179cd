//! AWS credentials and the provider chain the AWS SDKs use.
//!
//! [`DefaultChain`] tries, in the SDKs' order, [`EnvironmentProvider`],
//! [`ProfileProvider`], [`WebIdentityProvider`], [`ContainerProvider`] and
//! [`ImdsProvider`]; the first that is configured decides. [`CachedProvider`]
//! keeps its answer and refreshes temporary credentials before they expire.
//! `AwsConfig::builder().build()` uses both when no credentials are given.
//!
//! No secret (secret key, session token, web identity token, container
//! authorization token) ever appears in an error, a log line or `Debug`
//! output.

mod cache;
mod chain;
mod container;
mod document;
mod environment;
mod fetch;
mod imds;
mod process;
mod profile;
mod web_identity;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};

pub use cache::CachedProvider;
pub use chain::DefaultChain;
pub use container::ContainerProvider;
pub use environment::EnvironmentProvider;
pub use imds::ImdsProvider;
pub use profile::ProfileProvider;
pub use web_identity::WebIdentityProvider;

/// An access key pair, with a session token and expiry for temporary ones.
///
/// `Debug` never prints the secret key or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiry: Option<SystemTime>,
}

impl Credentials {
    /// Long-lived or temporary credentials.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expiry: Option<SystemTime>,
    ) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            expiry,
        }
    }

    /// The access key id (not secret).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The session token of temporary credentials.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// When temporary credentials stop working.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// Something that yields credentials for signing. Called before every
/// request, so implementations cache.
pub trait ProvideCredentials: Send + Sync + fmt::Debug {
    /// Current credentials, or why there are none.
    fn provide_credentials(&self) -> Result<Credentials>;
}

/// A shared provider, as clients hold it.
pub type SharedCredentialsProvider = Arc<dyn ProvideCredentials>;

impl ProvideCredentials for Credentials {
    fn provide_credentials(&self) -> Result<Credentials> {
        Ok(self.clone())
    }
}

/// The SDKs' default chain for `env`, cached: what `AwsConfig` uses when no
/// credentials are given explicitly.
pub(crate) fn default_chain(
    env: &crate::transport::Environment,
    region: &str,
    http: &crate::transport::HttpOptions,
) -> SharedCredentialsProvider {
    Arc::new(CachedProvider::new(DefaultChain::new(env, region, http)))
}

/// What one provider of the chain found.
pub(crate) enum Lookup {
    /// Credentials.
    Found(Credentials),
    /// The provider's settings are absent, so the chain moves on; the text
    /// says what was missing (never a value).
    NotConfigured(String),
}

/// A provider that can tell "not configured" (the chain tries the next one)
/// from "configured but failed" (the chain stops with its error).
pub(crate) trait ChainLink: Send + Sync + fmt::Debug {
    /// The provider's name in messages, e.g. `web identity`.
    fn name(&self) -> &'static str;

    /// Credentials, "not configured", or the failure of a configured
    /// provider (already prefixed with its name).
    fn lookup(&self) -> Result<Lookup>;
}

/// `ProvideCredentials` for a single link: "not configured" is an error.
fn provide_from_link(link: &dyn ChainLink) -> Result<Credentials> {
    match link.lookup()? {
        Lookup::Found(credentials) => Ok(credentials),
        Lookup::NotConfigured(why) => Err(Error::Credentials(format!(
            "{}: no credentials ({why})",
            link.name()
        ))),
    }
}

/// An `Error::Credentials` prefixed with the provider's name.
fn provider_error(provider: &str, message: impl fmt::Display) -> Error {
    Error::Credentials(format!("{provider}: {message}"))
}
