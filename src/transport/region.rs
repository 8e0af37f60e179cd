//! Region resolution in the AWS SDKs' order.

use crate::error::{Error, Result};
use crate::transport::env::Environment;
use crate::transport::profile;

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
