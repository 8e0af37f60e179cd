//! DynamoDB operations (being written).
