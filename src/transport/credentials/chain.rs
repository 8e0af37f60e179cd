//! The AWS SDKs' default provider chain, uncached.

use super::{
    ChainLink, ContainerProvider, Credentials, EnvironmentProvider, ImdsProvider, Lookup,
    ProfileProvider, ProvideCredentials, WebIdentityProvider,
};
use crate::error::{Error, Result};
use crate::transport::{Environment, HttpOptions};

/// Environment variables, then the shared profile files, then web identity,
/// then container credentials, then EC2 instance metadata.
///
/// The first provider that is configured decides: its credentials, or its
/// error (a misconfigured provider is not skipped, which would silently pick
/// another identity). When none is configured, the error lists what each
/// provider lacked. An unreachable instance metadata service counts as not
/// configured. Every call walks the chain again; wrap it in a
/// [`CachedProvider`](super::CachedProvider) (as `AwsConfig` does).
#[derive(Debug)]
pub struct DefaultChain {
    links: Vec<Box<dyn ChainLink>>,
}

impl DefaultChain {
    /// The chain for `env`; STS calls go to `region`, and HTTP uses `http`'s
    /// limits (instance metadata uses shorter timeouts).
    pub fn new(env: &Environment, region: &str, http: &HttpOptions) -> DefaultChain {
        DefaultChain {
            links: vec![
                Box::new(EnvironmentProvider::new(env)),
                Box::new(ProfileProvider::new(env, region, http)),
                Box::new(WebIdentityProvider::new(env, region, http)),
                Box::new(ContainerProvider::new(env, http)),
                Box::new(ImdsProvider::new(env, http)),
            ],
        }
    }
}

impl ProvideCredentials for DefaultChain {
    fn provide_credentials(&self) -> Result<Credentials> {
        let mut tried = Vec::with_capacity(self.links.len());
        for link in &self.links {
            match link.lookup()? {
                Lookup::Found(credentials) => {
                    log::debug!(
                        "credentials from the {} provider (access key id {})",
                        link.name(),
                        credentials.access_key_id()
                    );
                    return Ok(credentials);
                }
                Lookup::NotConfigured(why) => tried.push(format!("{} ({why})", link.name())),
            }
        }
        Err(Error::Credentials(format!(
            "no credentials found; tried {}",
            tried.join(", ")
        )))
    }
}
