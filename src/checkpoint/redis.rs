//! Leases and checkpoints in Redis (async-kinesis's `RedisCheckPointer`),
//! with the same counter-based fencing as the DynamoDB checkpointer.
//!
//! Keys: one hash per lease, `kcheck:{GROUP}:STREAM:SHARD`, and one set per
//! group and stream, `kcheck:{GROUP}:STREAM`, listing its shards. The group
//! is a hash tag, so all keys of a group share one Redis Cluster slot. The
//! hash has the DynamoDB item's attributes (`app`, `stream`, `shard`, `ref`,
//! `lease_counter`, `sequence`, `sub_sequence`, `parents` as a JSON list,
//! `handoff_to`, `start_sequence` or `start_timestamp`, `ts`, `ttl`) plus
//! `write_id`, the id of the last counter-bumping write.
//!
//! Every read-modify-write is one Lua script the server runs atomically
//! (`redis/*.lua`). A write whose answer is lost (a dropped connection, a
//! timeout) is sent again with the same `write_id`: a script that finds the
//! counter one past the expected one and its own id on the lease knows the
//! earlier run landed, and answers with success.

mod async_kinesis;

pub use async_kinesis::AsyncKinesisRedisTable;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::{Client, Connection, ConnectionInfo, IntoConnectionInfo, Script, Value};
use parking_lot::Mutex;

use super::dynamodb::{parse_lease, SHARD_END};
use super::formats::{CheckpointTable, ReadCheckpoints};
use super::group::{self, Change, LeaseStore, SavedCheckpoint, StoredLease, Target};
use super::{Checkpoint, Checkpointer, Lease, LeaseScope, LeaseSettings};
use crate::dynamodb::{AttributeValue, Item};
use crate::error::{Error, ErrorCode, Result};
use crate::kinesis::IteratorPosition;
use crate::transport::{deadline, Environment, RetryPolicy};

/// The scripts, loaded once per process (EVALSHA, EVAL when the server
/// does not know them, e.g. after a restart).
struct Scripts {
    write: Script,
    create: Script,
    handoff: Script,
    expiry: Script,
    prune: Script,
    swap: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        write: Script::new(include_str!("redis/write.lua")),
        create: Script::new(include_str!("redis/create.lua")),
        handoff: Script::new(include_str!("redis/handoff.lua")),
        expiry: Script::new(include_str!("redis/expiry.lua")),
        prune: Script::new(include_str!("redis/prune.lua")),
        swap: Script::new(include_str!("redis/swap.lua")),
    })
}

/// Builds a [`RedisCheckpointer`]; the parameters of async-kinesis's
/// `RedisCheckPointer`.
#[derive(Clone)]
pub struct RedisCheckpointerBuilder {
    name: String,
    url: Option<String>,
    environment: Environment,
    settings: LeaseSettings,
    ttl_hours: u32,
    connect_timeout: Duration,
    command_timeout: Duration,
    retry_policy: RetryPolicy,
}

/// Never shows the URL: it may hold the password.
impl std::fmt::Debug for RedisCheckpointerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheckpointerBuilder")
            .field("name", &self.name)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("settings", &self.settings)
            .field("ttl_hours", &self.ttl_hours)
            .finish_non_exhaustive()
    }
}

impl RedisCheckpointerBuilder {
    /// The server: `redis://[[user]:password@]host[:port][/db]` or
    /// `rediss://…` for TLS [from `REDIS_HOST`, `REDIS_PORT`,
    /// `REDIS_PASSWORD` and `REDIS_DB`, as async-kinesis reads them].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Reads the server from `REDIS_HOST` [localhost], `REDIS_PORT` [6379],
    /// `REDIS_PASSWORD` [none] and `REDIS_DB` [0] (the default when no
    /// `url` is given).
    pub fn from_env(mut self) -> Self {
        self.url = None;
        self
    }

    /// The environment `from_env` reads [the process's].
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    super::lease_setters!();

    /// Leases of shards that have left the stream expire this many hours
    /// after a consumer noticed; 0 keeps them [24]. Leases of shards still
    /// in the stream never expire.
    pub fn ttl_hours(mut self, hours: u32) -> Self {
        self.ttl_hours = hours;
        self
    }

    /// How long connecting may take [5 s] (shortened to a lease write's
    /// deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may wait for its answer [10 s] (shortened to a
    /// lease write's deadline).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How failed commands are repeated [8 tries, 50 ms to 5 s backoff].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Validates the parameters; connects when first used.
    pub fn build(self) -> Result<RedisCheckpointer> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(Error::Config("RedisCheckPointer name is empty".into()));
        }
        if self.name.contains([':', '{', '}']) {
            return Err(Error::Config(format!(
                "RedisCheckPointer name {} must not contain ':', '{{' or '}}'",
                crate::error::excerpt(&self.name)
            )));
        }
        self.settings.validate()?;
        if self.connect_timeout.is_zero() || self.command_timeout.is_zero() {
            return Err(Error::Config(
                "Redis connect_timeout and command_timeout must be positive".into(),
            ));
        }
        let (info, endpoint, password) = match &self.url {
            Some(url) => {
                let redacted = redact_url(url);
                let info = url.as_str().into_connection_info().map_err(|_| {
                    Error::Config(format!(
                        "Redis url {} is not valid (redis://[[user]:password@]host[:port][/db] or rediss://…)",
                        crate::error::excerpt(&redacted)
                    ))
                })?;
                let password = info.redis_settings().password().map(str::to_owned);
                (info, redacted, password)
            }
            None => self.info_from_env()?,
        };
        let client = Client::open(info).map_err(|error| {
            Error::Config(format!(
                "Redis server {endpoint}: {}",
                scrub(&error.to_string(), password.as_deref())
            ))
        })?;
        Ok(RedisCheckpointer {
            inner: Arc::new(Inner {
                client,
                endpoint,
                password,
                pool: Mutex::new(Vec::new()),
            }),
            name: self.name,
            settings: self.settings,
            ttl_hours: self.ttl_hours,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            retry_policy: self.retry_policy,
        })
    }

    /// The server of `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`, `REDIS_DB`.
    fn info_from_env(&self) -> Result<(ConnectionInfo, String, Option<String>)> {
        let env = &self.environment;
        let host = env.var("REDIS_HOST").unwrap_or_else(|| "localhost".into());
        let port = match env.var("REDIS_PORT") {
            None => 6379,
            Some(port) => port.trim().parse::<u16>().map_err(|_| {
                Error::Config(format!(
                    "REDIS_PORT {} is not a port number",
                    crate::error::excerpt(&port)
                ))
            })?,
        };
        let db = match env.var("REDIS_DB") {
            None => 0,
            Some(db) => db.trim().parse::<i64>().map_err(|_| {
                Error::Config(format!(
                    "REDIS_DB {} is not a database number",
                    crate::error::excerpt(&db)
                ))
            })?,
        };
        let password = env.var("REDIS_PASSWORD");
        let mut redis = ::redis::RedisConnectionInfo::default().set_db(db);
        if let Some(password) = &password {
            redis = redis.set_password(password);
        }
        let info = (host.as_str(), port)
            .into_connection_info()
            .map_err(|_| {
                Error::Config(format!(
                    "REDIS_HOST {} is not valid",
                    crate::error::excerpt(&host)
                ))
            })?
            .set_redis_settings(redis);
        Ok((info, format!("redis://{host}:{port}/{db}"), password))
    }
}

/// Leases and checkpoints of a consumer group in Redis. Clones share the
/// connections.
#[derive(Clone)]
pub struct RedisCheckpointer {
    inner: Arc<Inner>,
    name: String,
    settings: LeaseSettings,
    ttl_hours: u32,
    connect_timeout: Duration,
    command_timeout: Duration,
    retry_policy: RetryPolicy,
}

struct Inner {
    client: Client,
    /// The server without credentials, for messages.
    endpoint: String,
    /// Scrubbed from every message.
    password: Option<String>,
    /// Idle connections; a connection that failed is dropped, not returned.
    pool: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for RedisCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheckpointer")
            .field("name", &self.name)
            .field("endpoint", &self.inner.endpoint)
            .field("settings", &self.settings)
            .field("ttl_hours", &self.ttl_hours)
            .finish_non_exhaustive()
    }
}

/// What a conditional lease write found.
enum Written {
    /// Applied (now, or by an earlier run of the same write).
    Applied(Lease),
    /// Refused: someone else changed the lease.
    Refused,
    /// No such lease.
    Missing,
}

impl RedisCheckpointer {
    /// A builder for consumer group `name`.
    pub fn builder(name: impl Into<String>) -> RedisCheckpointerBuilder {
        RedisCheckpointerBuilder {
            name: name.into(),
            url: None,
            environment: Environment::process(),
            settings: LeaseSettings::default(),
            ttl_hours: 24,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            retry_policy: RetryPolicy::default(),
        }
    }

    /// The server, without credentials (e.g. `redis://localhost:6379/0`).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The hash of a shard's lease.
    pub fn lease_key(&self, scope: &LeaseScope, shard_id: &str) -> String {
        format!("kcheck:{{{}}}:{}:{}", scope.group, scope.stream, shard_id)
    }

    /// The set listing the shards of a scope.
    pub fn shards_key(&self, scope: &LeaseScope) -> String {
        format!("kcheck:{{{}}}:{}", scope.group, scope.stream)
    }

    fn now_seconds() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Runs `command` on a connection, retried as the policy allows within
    /// the thread's deadline. Each attempt's connect and command timeouts
    /// are shortened to that deadline, so a hung server never holds a lease
    /// write past it.
    fn run<T>(
        &self,
        operation: &'static str,
        mut command: impl FnMut(&mut Connection) -> ::redis::RedisResult<T>,
    ) -> Result<T> {
        self.retry_policy.run(|_| {
            let mut connection = self.connection(operation)?;
            let timeout = deadline::bounded(self.command_timeout);
            if timeout.is_zero() {
                return Err(Error::Timeout(format!(
                    "{operation}: the deadline passed before Redis answered"
                )));
            }
            let result = connection
                .set_read_timeout(Some(timeout))
                .and_then(|()| connection.set_write_timeout(Some(timeout)))
                .and_then(|()| command(&mut connection));
            match result {
                Ok(value) => {
                    self.inner.pool.lock().push(connection);
                    Ok(value)
                }
                Err(error) => Err(self.error(operation, &error)),
            }
        })
    }

    fn connection(&self, operation: &'static str) -> Result<Connection> {
        if let Some(connection) = self.inner.pool.lock().pop() {
            return Ok(connection);
        }
        let timeout = deadline::bounded(self.connect_timeout);
        if timeout.is_zero() {
            return Err(Error::Timeout(format!(
                "{operation}: the deadline passed before connecting to Redis"
            )));
        }
        self.inner
            .client
            .get_connection_with_timeout(timeout)
            .map_err(|error| self.error(operation, &error))
    }

    /// A Redis failure as kcheck's error, without the password.
    fn error(&self, operation: &'static str, error: &::redis::RedisError) -> Error {
        use ::redis::{ErrorKind, ServerErrorKind};
        let message = scrub(&error.to_string(), self.inner.password.as_deref());
        let kind = error.kind();
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || kind == ErrorKind::Io
            || kind == ErrorKind::Parse
        {
            // The answer may have been lost after the server ran the command.
            return Error::Transport {
                operation,
                endpoint: self.inner.endpoint.clone(),
                message,
            };
        }
        match kind {
            ErrorKind::AuthenticationFailed => Error::Config(format!(
                "{operation}: Redis at {} refused the credentials: {message}",
                self.inner.endpoint
            )),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly,
            ) => Error::Service {
                operation,
                code: ErrorCode::Other(error.code().unwrap_or("BUSY").to_owned()),
                status: 503,
                message,
            },
            ErrorKind::Server(_) | ErrorKind::Extension => {
                let code = error.code().unwrap_or("ERR");
                if code == "NOAUTH" || code == "WRONGPASS" || code == "NOPERM" {
                    return Error::Config(format!(
                        "{operation}: Redis at {} refused the credentials: {message}",
                        self.inner.endpoint
                    ));
                }
                Error::Service {
                    operation,
                    code: ErrorCode::Other(code.to_owned()),
                    status: 400,
                    message,
                }
            }
            _ => Error::MalformedResponse {
                operation,
                status: 200,
                detail: message,
            },
        }
    }

    /// Runs the write script: `mode` "take" or "owner", fields to set and
    /// to delete. Every retry sends the same write id.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        operation: &'static str,
        scope: &LeaseScope,
        shard_id: &str,
        mode: &str,
        owner: &str,
        expected_counter: u64,
        set: &[(&str, String)],
        delete: &[&str],
    ) -> Result<Written> {
        let key = self.lease_key(scope, shard_id);
        let write_id = format!("{:016x}", crate::random::random_u64());
        let now = Self::now_seconds();
        let reply: Value = self.run(operation, |connection| {
            let mut invocation = scripts().write.key(&key);
            invocation
                .arg(mode)
                .arg(owner)
                .arg(expected_counter)
                .arg(expected_counter + 1)
                .arg(&write_id)
                .arg(now)
                .arg(set.len());
            for (field, value) in set {
                invocation.arg(*field).arg(value);
            }
            for field in delete {
                invocation.arg(*field);
            }
            invocation.invoke(connection)
        })?;
        let (status, fields) = parse_reply(operation, reply)?;
        match status {
            1 | 2 => {
                if status == 2 {
                    log::debug!("{operation} of {shard_id}: an earlier attempt had landed");
                }
                Ok(Written::Applied(lease_from_hash(&key, fields)?))
            }
            0 => Ok(Written::Refused),
            _ => Ok(Written::Missing),
        }
    }

    /// An owner write: refused or missing means the lease is lost.
    fn owner_write(
        &self,
        operation: &'static str,
        scope: &LeaseScope,
        lease: &Lease,
        set: &[(&str, String)],
        delete: &[&str],
    ) -> Result<Lease> {
        let lost = || Error::LeaseLost {
            shard_id: lease.shard_id.clone(),
        };
        let owner = lease.owner.as_deref().ok_or_else(lost)?;
        match self.write(
            operation,
            scope,
            &lease.shard_id,
            "owner",
            owner,
            lease.counter,
            set,
            delete,
        )? {
            Written::Applied(lease) => Ok(lease),
            Written::Refused | Written::Missing => Err(lost()),
        }
    }

    /// Every lease of `scope` with its last write; drops from the scope's
    /// set the shards whose lease expired.
    fn scope_leases(&self, scope: &LeaseScope) -> Result<Vec<(Lease, Option<SystemTime>)>> {
        let set = self.shards_key(scope);
        let mut shards: Vec<String> = self.run("SMEMBERS", |connection| {
            ::redis::cmd("SMEMBERS").arg(&set).query(connection)
        })?;
        shards.sort_unstable();
        let keys: Vec<String> = shards.iter().map(|s| self.lease_key(scope, s)).collect();
        let hashes: Vec<HashMap<String, String>> = if keys.is_empty() {
            Vec::new()
        } else {
            self.run("HGETALL", |connection| {
                let mut pipeline = ::redis::pipe();
                for key in &keys {
                    pipeline.cmd("HGETALL").arg(key);
                }
                pipeline.query(connection)
            })?
        };
        let mut leases = Vec::with_capacity(hashes.len());
        let mut expired = Vec::new();
        for ((shard, key), hash) in shards.iter().zip(&keys).zip(hashes) {
            if hash.is_empty() {
                expired.push((shard, key));
            } else {
                let renewed_at = renewed_at(&hash);
                leases.push((lease_from_hash(key, hash)?, renewed_at));
            }
        }
        if !expired.is_empty() {
            self.run("prune", |connection| {
                let mut invocation = scripts().prune.key(&set);
                for (shard, key) in &expired {
                    invocation.key(*key).arg(*shard);
                }
                invocation.invoke::<i64>(connection)
            })?;
        }
        Ok(leases)
    }

    fn scope(&self, stream: &str) -> LeaseScope {
        LeaseScope {
            group: self.name.clone(),
            stream: stream.to_owned(),
        }
    }

    /// The streams the group has leases on: the names of its scopes' sets.
    fn streams(&self) -> Result<Vec<String>> {
        let prefix = format!("kcheck:{{{}}}:", self.name);
        Ok(self
            .keys_under(&prefix, Some("set"))?
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    /// Every key starting with `prefix` (of `kind` only, if given: SCAN
    /// with TYPE, Redis 6 or later), sorted.
    fn keys_under(&self, prefix: &str, kind: Option<&str>) -> Result<Vec<String>> {
        let pattern = format!("{}*", glob_escape(prefix));
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = self.run("SCAN", |connection| {
                let mut scan = ::redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                if let Some(kind) = kind {
                    scan.arg("TYPE").arg(kind);
                }
                scan.query(connection)
            })?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key twice.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    fn read_hash(&self, key: &str) -> Result<HashMap<String, String>> {
        self.run("HGETALL", |connection| {
            ::redis::cmd("HGETALL").arg(key).query(connection)
        })
    }
}

impl Checkpointer for RedisCheckpointer {
    fn group(&self) -> &str {
        &self.name
    }

    fn settings(&self) -> LeaseSettings {
        self.settings
    }

    /// Checks that the server answers (and the credentials work).
    fn prepare(&self) -> Result<()> {
        self.run("PING", |connection| {
            ::redis::cmd("PING").query::<String>(connection)
        })
        .map(drop)
    }

    fn leases(&self, scope: &LeaseScope) -> Result<Vec<Lease>> {
        Ok(self
            .scope_leases(scope)?
            .into_iter()
            .map(|(lease, _)| lease)
            .collect())
    }

    fn lease(&self, scope: &LeaseScope, shard_id: &str) -> Result<Option<Lease>> {
        let key = self.lease_key(scope, shard_id);
        let hash = self.read_hash(&key)?;
        if hash.is_empty() {
            return Ok(None);
        }
        lease_from_hash(&key, hash).map(Some)
    }

    fn create_lease(&self, scope: &LeaseScope, shard_id: &str, parents: &[String]) -> Result<()> {
        let key = self.lease_key(scope, shard_id);
        let set = self.shards_key(scope);
        let parents = serde_json::to_string(parents).map_err(|e| Error::Internal(e.to_string()))?;
        let now = Self::now_seconds();
        self.run("create lease", |connection| {
            scripts()
                .create
                .key(&key)
                .key(&set)
                .arg(&scope.group)
                .arg(&scope.stream)
                .arg(shard_id)
                .arg(&parents)
                .arg(now)
                .invoke::<i64>(connection)
        })
        .map(drop)
    }

    fn take(
        &self,
        scope: &LeaseScope,
        shard_id: &str,
        owner: &str,
        observed_counter: u64,
    ) -> Result<Option<Lease>> {
        match self.write(
            "take lease",
            scope,
            shard_id,
            "take",
            owner,
            observed_counter,
            &[],
            &["handoff_to"],
        )? {
            Written::Applied(lease) => Ok(Some(lease)),
            Written::Refused | Written::Missing => Ok(None),
        }
    }

    fn renew(&self, scope: &LeaseScope, lease: &Lease) -> Result<Lease> {
        self.owner_write("renew lease", scope, lease, &[], &[])
    }

    fn checkpoint(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease> {
        self.owner_write(
            "checkpoint",
            scope,
            lease,
            &checkpoint_fields(checkpoint),
            &[],
        )
    }

    fn release(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: Option<&Checkpoint>,
        to: Option<&str>,
    ) -> Result<()> {
        let mut set = checkpoint.map(checkpoint_fields).unwrap_or_default();
        let mut delete = vec!["handoff_to"];
        match to {
            Some(to) => set.push(("ref", to.to_owned())),
            None => delete.push("ref"),
        }
        self.owner_write("release lease", scope, lease, &set, &delete)
            .map(drop)
    }

    fn request_handoff(&self, scope: &LeaseScope, lease: &Lease, asker: &str) -> Result<bool> {
        let Some(owner) = lease.owner.as_deref() else {
            return Ok(false);
        };
        let key = self.lease_key(scope, &lease.shard_id);
        let recorded: i64 = self.run("request handoff", |connection| {
            scripts()
                .handoff
                .key(&key)
                .arg(owner)
                .arg(asker)
                .invoke(connection)
        })?;
        Ok(recorded == 1)
    }

    fn pin_start(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        start: &IteratorPosition,
    ) -> Result<Lease> {
        let (set, delete) = match start {
            IteratorPosition::AtSequenceNumber(sequence) => {
                (("start_sequence", sequence.clone()), "start_timestamp")
            }
            IteratorPosition::AtTimestamp(time) => {
                let millis = time
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                (("start_timestamp", millis.to_string()), "start_sequence")
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "a pinned start is a sequence number or a timestamp, not {other:?}"
                )))
            }
        };
        self.owner_write("pin start", scope, lease, &[set], &[delete])
    }

    fn set_expiry(&self, scope: &LeaseScope, shard_id: &str, expire: bool) -> Result<()> {
        if expire && self.ttl_hours == 0 {
            return Ok(());
        }
        let key = self.lease_key(scope, shard_id);
        let at = if expire {
            (Self::now_seconds() + u64::from(self.ttl_hours) * 3600).to_string()
        } else {
            String::new()
        };
        self.run("set expiry", |connection| {
            scripts()
                .expiry
                .key(&key)
                .arg(&at)
                .invoke::<i64>(connection)
        })
        .map(drop)
    }
}

/// The group seen from outside its consumers, as [`super::ConsumerGroup`]
/// sees a DynamoDB table: the same export, import and refusal of live
/// leases, through the same scripts the consumers run.
impl LeaseStore for RedisCheckpointer {
    fn group(&self) -> &str {
        &self.name
    }

    fn session_timeout(&self) -> Duration {
        self.settings.session_timeout
    }

    fn stored(&self) -> Result<Vec<StoredLease>> {
        let mut stored = Vec::new();
        for stream in self.streams()? {
            let scope = LeaseScope {
                group: self.name.clone(),
                stream,
            };
            for (lease, renewed_at) in self.scope_leases(&scope)? {
                stored.push((scope.stream.clone(), lease, renewed_at));
            }
        }
        Ok(stored)
    }

    fn current(&self, stream: &str, shard: &str) -> Result<Option<(Lease, Option<SystemTime>)>> {
        let key = self.lease_key(&self.scope(stream), shard);
        let hash = self.read_hash(&key)?;
        if hash.is_empty() {
            return Ok(None);
        }
        let renewed_at = renewed_at(&hash);
        Ok(Some((lease_from_hash(&key, hash)?, renewed_at)))
    }

    fn put(&self, target: &Target, observed: Option<u64>) -> Result<bool> {
        let scope = self.scope(&target.stream);
        if observed.is_none() {
            // A new lease starts free at counter 0, listed in its scope's
            // set; the write below then holds only if nobody took it since.
            let parents = target.parents.as_deref().unwrap_or_default();
            self.create_lease(&scope, &target.shard, parents)?;
        }
        let mut set = target
            .checkpoint
            .as_ref()
            .map(checkpoint_fields)
            .unwrap_or_default();
        let mut delete = vec!["ref", "handoff_to"];
        if target.checkpoint.is_none() {
            delete.extend(["sequence", "sub_sequence"]);
        }
        match &target.start {
            Some(IteratorPosition::AtSequenceNumber(sequence)) => {
                set.push(("start_sequence", sequence.clone()));
                delete.push("start_timestamp");
            }
            Some(IteratorPosition::AtTimestamp(time)) => {
                set.push(("start_timestamp", group::epoch_millis(*time).to_string()));
                delete.push("start_sequence");
            }
            _ => delete.extend(["start_sequence", "start_timestamp"]),
        }
        if let Some(parents) = &target.parents {
            let parents =
                serde_json::to_string(parents).map_err(|e| Error::Internal(e.to_string()))?;
            set.push(("parents", parents));
        }
        let written = self.write(
            "import checkpoint",
            &scope,
            &target.shard,
            "free",
            "",
            observed.unwrap_or(0),
            &set,
            &delete,
        )?;
        Ok(matches!(written, Written::Applied(_)))
    }
}

/// The group's checkpoints in kcheck's Redis layout: every stream's.
impl CheckpointTable for RedisCheckpointer {
    fn read(&self) -> Result<ReadCheckpoints> {
        Ok(ReadCheckpoints {
            checkpoints: group::export_of(self)?,
            notes: Vec::new(),
        })
    }

    fn write(&self, saved: &[SavedCheckpoint], force: bool) -> Result<Vec<Change>> {
        group::write_all(self, &group::targets_of(saved)?, force, &None, |_| None)
    }
}

/// A lease hash's last write (its `ts`, whole seconds).
fn renewed_at(hash: &HashMap<String, String>) -> Option<SystemTime> {
    hash.get("ts")
        .and_then(|ts| ts.parse::<u64>().ok())
        .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds))
}

/// `text` matching only itself in a SCAN pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn checkpoint_fields(checkpoint: &Checkpoint) -> Vec<(&'static str, String)> {
    let (sequence, sub) = match checkpoint {
        Checkpoint::At(position) => (
            position.sequence_number.clone(),
            position.sub_sequence_number,
        ),
        Checkpoint::ShardEnd => (SHARD_END.to_owned(), 0),
    };
    vec![("sequence", sequence), ("sub_sequence", sub.to_string())]
}

/// The status and the flat field/value list of a write script's answer.
fn parse_reply(operation: &'static str, reply: Value) -> Result<(i64, HashMap<String, String>)> {
    let malformed = |detail: &str| Error::MalformedResponse {
        operation,
        status: 200,
        detail: detail.to_owned(),
    };
    let Value::Array(items) = reply else {
        return Err(malformed("the script's answer is not a list"));
    };
    let mut items = items.into_iter();
    let status = match items.next() {
        Some(Value::Int(status)) => status,
        _ => return Err(malformed("the script's answer has no status")),
    };
    let mut fields = HashMap::new();
    while let Some(field) = items.next() {
        let (Value::BulkString(field), Some(Value::BulkString(value))) = (field, items.next())
        else {
            return Err(malformed("the script's answer has a bad field"));
        };
        fields.insert(
            String::from_utf8_lossy(&field).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        );
    }
    Ok((status, fields))
}

/// Reads a lease hash with the DynamoDB item reader, so both stores accept
/// and refuse the same values.
fn lease_from_hash(key: &str, hash: HashMap<String, String>) -> Result<Lease> {
    let mut item = Item::new();
    item.insert("shard_id".into(), AttributeValue::s(key));
    for (field, value) in hash {
        let value = match field.as_str() {
            "lease_counter" | "sub_sequence" | "start_timestamp" | "ttl" => {
                AttributeValue::n(value)
            }
            "parents" => match serde_json::from_str::<Vec<String>>(&value) {
                Ok(parents) => AttributeValue::l(parents.into_iter().map(AttributeValue::s)),
                // Not a list: parse_lease names it.
                Err(_) => AttributeValue::s(value),
            },
            _ => AttributeValue::s(value),
        };
        item.insert(field, value);
    }
    parse_lease(&item)
}

/// `url` without its password, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(an unparsable url)".to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// `message` with every occurrence of the password masked.
fn scrub(message: &str, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() => message.replace(password, "***"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/2"),
            "redis://:***@host:6379/2"
        );
        assert_eq!(
            redact_url("rediss://user:s3cret@host/0"),
            "rediss://user:***@host/0"
        );
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert!(!redact_url("nonsense s3cret").contains("s3cret"));
        assert_eq!(
            scrub("auth s3cret failed", Some("s3cret")),
            "auth *** failed"
        );
    }

    #[test]
    fn names_that_would_break_the_hash_tag_are_refused() {
        for name in ["", "a:b", "a{b", "a}b"] {
            let error = RedisCheckpointer::builder(name)
                .url("redis://localhost")
                .build()
                .unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{name}: {error}");
        }
    }

    #[test]
    fn the_environment_names_the_server() {
        let env = Environment::from_vars([
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "s3cret"),
            ("REDIS_DB", "3"),
        ]);
        let checkpointer = RedisCheckpointer::builder("app")
            .environment(env.clone())
            .build()
            .unwrap();
        assert_eq!(checkpointer.endpoint(), "redis://cache.internal:6380/3");
        assert!(!format!("{checkpointer:?}").contains("s3cret"));
        let bad = RedisCheckpointer::builder("app")
            .environment(env.with_var("REDIS_PORT", "http"))
            .build()
            .unwrap_err();
        assert!(bad.to_string().contains("REDIS_PORT"), "{bad}");
        let defaults = RedisCheckpointer::builder("app")
            .environment(Environment::from_vars(Vec::<(String, String)>::new()))
            .build()
            .unwrap();
        assert_eq!(defaults.endpoint(), "redis://localhost:6379/0");
    }

    #[test]
    fn a_bad_url_is_a_configuration_error_without_the_password() {
        let error = RedisCheckpointer::builder("app")
            .url("http://:s3cret@host")
            .build()
            .unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn tls_urls_are_accepted() {
        let checkpointer = RedisCheckpointer::builder("app")
            .url("rediss://:s3cret@cache.example:6380/1")
            .build()
            .unwrap();
        assert_eq!(
            checkpointer.endpoint(),
            "rediss://:***@cache.example:6380/1"
        );
    }
}
