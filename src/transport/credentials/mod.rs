//! AWS credentials and the provider chain the AWS SDKs use.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::Result;

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

/// The SDKs' default chain for `env`, cached. (Being written.)
pub(crate) fn default_chain(
    env: &crate::transport::Environment,
    _region: &str,
    _http: &crate::transport::HttpOptions,
) -> SharedCredentialsProvider {
    let _ = env;
    Arc::new(Credentials::new("unset", "unset", None, None))
}
