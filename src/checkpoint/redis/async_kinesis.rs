//! async-kinesis's Redis layout (its `RedisCheckPointer`): one string per
//! shard, `pyredis-{NAME}-{SHARD}`, holding the JSON
//! `{"ref": "NAME/ID" or null, "ts": EPOCH_SECONDS or null, "sequence":
//! "…" or null}`. A consumer allocates with `SET NX` (or takes an entry
//! whose `ts` is null or older than its session timeout), heartbeats and
//! checkpoints with `SET`/`GETSET`, and frees with `ref` and `ts` null.
//!
//! The layout cannot hold a stream, parents, sub-sequences, SHARD_END or a
//! pinned start; what it cannot hold is left as it was, with a note. Its
//! heartbeats are unconditional `SET`s, so a forced write cannot fence a
//! running consumer: it writes its own position back at its next beat.

use serde::Deserialize;

use super::{scripts, RedisCheckpointer};
use crate::checkpoint::formats::{
    read_async_kinesis, write_async_kinesis, AsyncKinesisEntry, AsyncKinesisStore, CheckpointTable,
    ReadCheckpoints,
};
use crate::checkpoint::group::{Change, SavedCheckpoint};
use crate::error::{excerpt, Error, Result};

/// What async-kinesis writes under each key (Python's `json.dumps`).
#[derive(Debug, Deserialize)]
struct Value {
    #[serde(rename = "ref")]
    owner: Option<String>,
    ts: Option<f64>,
    sequence: Option<String>,
}

/// An async-kinesis app's checkpoints in Redis, on one stream.
#[derive(Debug, Clone)]
pub struct AsyncKinesisRedisTable {
    redis: RedisCheckpointer,
    stream: String,
}

impl AsyncKinesisRedisTable {
    /// The keys of the async-kinesis app named as `redis` is (its
    /// `RedisCheckPointer(name=…)`) on its server, reading `stream` (the
    /// layout does not say which); an owner that wrote within `redis`'s
    /// session timeout counts as alive.
    pub fn new(redis: &RedisCheckpointer, stream: impl Into<String>) -> AsyncKinesisRedisTable {
        AsyncKinesisRedisTable {
            redis: redis.clone(),
            stream: stream.into(),
        }
    }

    fn prefix(&self) -> String {
        format!("pyredis-{}-", self.redis.name)
    }

    fn key(&self, shard: &str) -> String {
        format!("{}{shard}", self.prefix())
    }

    /// The shard of a key, if it is one of this app's: app `a` must not
    /// read app `a-b`'s keys, so what follows the prefix must be a shard id
    /// (`shardId-…`, as Kinesis names every shard).
    fn shard_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix())
            .filter(|shard| shard.starts_with("shardId-"))
    }

    fn parse(&self, key: &str, raw: String) -> Result<AsyncKinesisEntry> {
        let value: Value = serde_json::from_str(&raw).map_err(|e| {
            Error::InvalidArgument(format!(
                "Redis key {} is not an async-kinesis checkpoint ({e}): {}",
                excerpt(key),
                excerpt(&raw)
            ))
        })?;
        Ok(AsyncKinesisEntry {
            owner: value.owner,
            ts: value.ts,
            sequence: value.sequence,
            observed: Some(raw),
        })
    }
}

impl AsyncKinesisStore for AsyncKinesisRedisTable {
    fn place(&self) -> String {
        format!(
            "async-kinesis app {} at {}",
            self.redis.name,
            self.redis.endpoint()
        )
    }

    fn entries(&self) -> Result<Vec<(String, AsyncKinesisEntry)>> {
        let mut keys = self.redis.keys_under(&self.prefix(), None)?;
        keys.retain(|key| self.shard_of(key).is_some());
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = self.redis.run("MGET", |connection| {
            ::redis::cmd("MGET").arg(&keys).query(connection)
        })?;
        let mut entries = Vec::with_capacity(keys.len());
        for (key, raw) in keys.iter().zip(values) {
            // Deleted since the scan: nothing to read.
            let Some(raw) = raw else { continue };
            let shard = self.shard_of(key).unwrap_or_default().to_owned();
            entries.push((shard, self.parse(key, raw)?));
        }
        Ok(entries)
    }

    fn entry(&self, shard: &str) -> Result<Option<AsyncKinesisEntry>> {
        let key = self.key(shard);
        let raw: Option<String> = self.redis.run("GET", |connection| {
            ::redis::cmd("GET").arg(&key).query(connection)
        })?;
        raw.map(|raw| self.parse(&key, raw)).transpose()
    }

    fn put(
        &self,
        shard: &str,
        sequence: Option<&str>,
        read: Option<&AsyncKinesisEntry>,
    ) -> Result<bool> {
        let key = self.key(shard);
        // As async-kinesis frees a shard: no owner, no time, the position.
        let value = python_json(sequence);
        let observed = read.and_then(|e| e.observed.as_deref()).unwrap_or("");
        let swapped: i64 = self.redis.run("write checkpoint", |connection| {
            scripts()
                .swap
                .key(&key)
                .arg(observed)
                .arg(&value)
                .invoke(connection)
        })?;
        Ok(swapped == 1)
    }
}

/// A free entry as Python's `json.dumps` writes it (its separators), so
/// the value looks like one async-kinesis wrote.
fn python_json(sequence: Option<&str>) -> String {
    let sequence = serde_json::to_string(&sequence).unwrap_or_else(|_| "null".to_owned());
    format!(r#"{{"ref": null, "ts": null, "sequence": {sequence}}}"#)
}

impl CheckpointTable for AsyncKinesisRedisTable {
    fn read(&self) -> Result<ReadCheckpoints> {
        read_async_kinesis(self, &self.redis.name, &self.stream)
    }

    fn write(&self, saved: &[SavedCheckpoint], force: bool) -> Result<Vec<Change>> {
        let mut changes = write_async_kinesis(
            self,
            &self.stream,
            self.redis.settings.session_timeout,
            &None,
            saved,
            force,
        )?;
        for change in &mut changes {
            if let Some(owner) = &change.fenced {
                change.note = Some(format!(
                    "async-kinesis heartbeats overwrite unconditionally: stop {owner}, or it writes its own position back"
                ));
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_entries_look_like_async_kinesis_wrote_them() {
        assert_eq!(
            python_json(Some("4959")),
            r#"{"ref": null, "ts": null, "sequence": "4959"}"#
        );
        assert_eq!(
            python_json(None),
            r#"{"ref": null, "ts": null, "sequence": null}"#
        );
    }

    #[test]
    fn only_the_apps_own_shard_keys_are_read() {
        let redis = RedisCheckpointer::builder("app")
            .url("redis://localhost")
            .build()
            .unwrap();
        let table = AsyncKinesisRedisTable::new(&redis, "orders");
        assert_eq!(
            table.shard_of("pyredis-app-shardId-000000000001"),
            Some("shardId-000000000001")
        );
        assert_eq!(table.shard_of("pyredis-app-b-shardId-000000000001"), None);
        assert_eq!(table.shard_of("kcheck:{app}:orders"), None);
    }
}
