//! kcheck: a synchronous, thread-based consumer of Amazon Kinesis Data Streams
//! that coordinates many processes through DynamoDB leases and checkpoints.
//!
//! The safe Rust API lives in the modules below; `ffi` adapts it to a stable C
//! ABI and is the only module that uses `unsafe`.
#![deny(unsafe_code)]

pub mod checkpoint;
pub mod consumer;
pub mod dynamodb;
pub mod error;
#[allow(unsafe_code, non_camel_case_types)]
pub mod ffi;
pub mod kinesis;
pub mod metrics;
pub mod pipeline;
pub mod producer;
mod random;
pub mod rate;
mod tickets;
pub mod transport;
pub mod writer;

#[cfg(feature = "redis")]
pub use checkpoint::RedisCheckpointer;
pub use checkpoint::{Checkpointer, DynamoDbCheckpointer, MemoryCheckpointer};
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerEvent, ConsumerEventKind, InitialPosition, Record,
};
pub use error::{Error, ErrorCode, Result};
pub use producer::{Producer, ProducerBuilder};
pub use transport::{AwsConfig, Credentials, Environment, RetryPolicy};
pub use writer::{DynamoDbWriter, DynamoDbWriterBuilder};

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
