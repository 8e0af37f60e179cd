//! Shared helpers of the integration tests: the emulators of this test binary
//! and clients pointed at them.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use kcheck::transport::{AwsConfig, Credentials, Environment};
use kcheck_emulators::Emulators;

/// The emulators shared by every test of this binary (started once).
pub fn emulators() -> &'static Emulators {
    static EMULATORS: OnceLock<Emulators> = OnceLock::new();
    EMULATORS.get_or_init(Emulators::start)
}

/// A config for `endpoint` with fixed test credentials and an empty
/// environment, so nothing on the machine leaks into the test.
pub fn config_for(endpoint: &str) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(Credentials::new("AKIDTEST", "test-secret", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .build()
        .expect("test config")
}

/// A config pointed at this binary's Kinesis emulator.
pub fn kinesis_config() -> AwsConfig {
    config_for(&emulators().kinesis_url())
}

/// A config pointed at this binary's DynamoDB emulator.
pub fn dynamodb_config() -> AwsConfig {
    config_for(&emulators().dynamodb_url())
}

/// A name no other test of this run uses, e.g. `orders-3-12345`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}
