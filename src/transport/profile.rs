//! Shared config and credentials files (~/.aws/config, ~/.aws/credentials).

use crate::transport::env::Environment;

/// The `region` of the selected profile, if any. (Being written.)
pub(crate) fn profile_region(_env: &Environment) -> Option<String> {
    None
}
