//! Kinesis operations (being written).
