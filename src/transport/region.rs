//! Region resolution in the AWS SDKs' order.

use crate::error::{Error, Result};
use crate::transport::env::Environment;
use crate::transport::profile;

/// Longer than any AWS region name, with room to spare: a longer name is
/// refused here rather than failing later as an oversized request.
const MAX_REGION_LEN: usize = 64;

/// Explicit, then AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`,
/// then us-east-1.
pub(crate) fn resolve(explicit: Option<&str>, env: &Environment) -> Result<String> {
    let region = explicit
        .map(str::to_owned)
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| env.var("AWS_DEFAULT_REGION"))
        .or_else(|| profile::profile_region(env))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let region = region.trim().to_owned();
    if region.len() > MAX_REGION_LEN {
        return Err(Error::Config(format!(
            "region name is {} bytes long, not a valid AWS region name (at most {MAX_REGION_LEN})",
            region.len()
        )));
    }
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(region)
    } else {
        Err(Error::Config(format!(
            "region {region:?} is not a valid AWS region name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_region_is_refused_without_quoting_it() {
        let huge = "a".repeat(1 << 20);
        let error = resolve(Some(&huge), &Environment::default()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Config(_)), "{message}");
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("1048576 bytes"), "{message}");
    }
}
