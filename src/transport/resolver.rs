//! Host names resolved once per minute rather than on every request.
//!
//! ureq resolves the host of every request, pooled connection or not, and
//! with a timeout set it does so on a thread of its own: a thread and a
//! lookup for each GetRecords poll of each shard. The agents here keep what
//! a lookup found for [`RESOLVED_TTL`], about the TTL AWS gives its
//! endpoints' DNS records, so a moved endpoint is seen within a minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a lookup's addresses are used.
const RESOLVED_TTL: Duration = Duration::from_secs(60);

/// ureq's resolver, with its answers kept for [`RESOLVED_TTL`].
#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    lookup: DefaultResolver,
    /// Addresses by `host:port`, with when they were looked up.
    resolved: Mutex<HashMap<String, (ResolvedSocketAddrs, Instant)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        // What ureq would refuse (no scheme or host) it refuses itself.
        let Some(key) = key else {
            return self.lookup.resolve(uri, config, timeout);
        };
        if let Some((addrs, at)) = self.resolved.lock().get(&key) {
            if at.elapsed() < RESOLVED_TTL {
                return Ok(addrs.clone());
            }
        }
        // Failures are not kept: the next request looks up again.
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        self.resolved
            .lock()
            .insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(resolver: &CachingResolver, uri: &str) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let config = Config::default();
        let uri: Uri = uri.parse().expect("uri");
        resolver.resolve(&uri, &config, NextTimeout::default())
    }

    #[test]
    fn a_lookup_is_kept_per_host_and_port() {
        let resolver = CachingResolver::default();
        let first = resolve(&resolver, "http://127.0.0.1:4567/").expect("resolved");
        assert_eq!(first.as_ref(), &["127.0.0.1:4567".parse().unwrap()]);
        let again = resolve(&resolver, "http://127.0.0.1:4567/other").expect("resolved");
        assert_eq!(again.as_ref(), first.as_ref());
        let other_port = resolve(&resolver, "http://127.0.0.1:80/").expect("resolved");
        assert_eq!(other_port.as_ref(), &["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(resolver.resolved.lock().len(), 2);
    }

    #[test]
    fn an_old_lookup_is_done_again() {
        let resolver = CachingResolver::default();
        let stale: ResolvedSocketAddrs = {
            let mut addrs = resolver.empty();
            addrs.push("10.9.8.7:443".parse().unwrap());
            addrs
        };
        let long_ago = Instant::now()
            .checked_sub(RESOLVED_TTL + Duration::from_secs(1))
            .expect("the clock reaches back a minute");
        resolver
            .resolved
            .lock()
            .insert("127.0.0.1:443".into(), (stale, long_ago));
        let fresh = resolve(&resolver, "https://127.0.0.1/").expect("resolved");
        assert_eq!(fresh.as_ref(), &["127.0.0.1:443".parse().unwrap()]);
    }
}
