//! Checkpointers for C: one builder for every kind, so the lease settings
//! they share have one setter each. The Redis entry points are exported
//! whether or not the library was built with the `redis` feature (a stable
//! ABI); without it they fail with `KCHECK_STATUS_INVALID_CONFIG`.

use std::ffi::c_char;
use std::sync::Arc;

use parking_lot::Mutex;

use super::boundary::{
    boundary, boundary_value, consume, flag, into_handle, millis, reclaim, text, with_handle,
    Failure, Handle, HandleState, Out,
};
use super::status::kcheck_status;
use crate::checkpoint::{
    Checkpointer, DynamoDbCheckpointer, DynamoDbCheckpointerBuilder, LeaseSettings,
    MemoryCheckpointer,
};

/// Parameters of a checkpointer being built.
pub struct kcheck_checkpointer_builder {
    draft: Mutex<Draft>,
    state: HandleState,
}

struct Draft {
    settings: LeaseSettings,
    kind: Kind,
}

enum Kind {
    Memory,
    DynamoDb(Box<DynamoDbCheckpointerBuilder>),
    #[cfg(feature = "redis")]
    Redis(Box<crate::checkpoint::RedisCheckpointerBuilder>),
}

impl Handle for kcheck_checkpointer_builder {
    const NAME: &'static str = "checkpointer builder";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

/// A lease and checkpoint store, shared by the consumers given it. Its
/// HTTP connections and credentials belong to the process that built it:
/// a forked child gets `KCHECK_STATUS_FORKED` from the copy.
pub struct kcheck_checkpointer {
    pub(crate) inner: Arc<dyn Checkpointer>,
    /// The same checkpointer when it is a DynamoDB one, for the group
    /// tools (`kcheck_group_new`).
    dynamodb: Option<Arc<DynamoDbCheckpointer>>,
    state: HandleState,
}

impl kcheck_checkpointer {
    /// The DynamoDB checkpointer behind this handle; None for a memory one.
    pub(crate) fn dynamodb(&self) -> Option<&DynamoDbCheckpointer> {
        self.dynamodb.as_deref()
    }
}

impl Handle for kcheck_checkpointer {
    const NAME: &'static str = "checkpointer";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

fn new_builder(kind: Kind) -> *mut kcheck_checkpointer_builder {
    into_handle(kcheck_checkpointer_builder {
        draft: Mutex::new(Draft {
            settings: LeaseSettings::default(),
            kind,
        }),
        state: HandleState::new(),
    })
}

/// Applies `change` to a DynamoDB builder; a memory builder refuses.
///
/// # Safety
/// `builder` is NULL or a live builder.
unsafe fn update_dynamodb(
    builder: *const kcheck_checkpointer_builder,
    parameter: &str,
    change: impl FnOnce(DynamoDbCheckpointerBuilder) -> Result<DynamoDbCheckpointerBuilder, Failure>,
) -> kcheck_status {
    unsafe {
        with_handle(builder, |builder| {
            let mut draft = builder.draft.lock();
            let Kind::DynamoDb(dynamodb) = &mut draft.kind else {
                return Err(Failure::invalid_argument(format!(
                    "{parameter} applies only to a DynamoDB checkpointer"
                )));
            };
            let updated = change((**dynamodb).clone())?;
            **dynamodb = updated;
            Ok(kcheck_status::Ok)
        })
    }
}

/// Applies `change` to a Redis builder; other kinds refuse.
///
/// # Safety
/// `builder` is NULL or a live builder.
#[cfg(feature = "redis")]
unsafe fn update_redis(
    builder: *const kcheck_checkpointer_builder,
    parameter: &str,
    change: impl FnOnce(
        crate::checkpoint::RedisCheckpointerBuilder,
    ) -> Result<crate::checkpoint::RedisCheckpointerBuilder, Failure>,
) -> kcheck_status {
    unsafe {
        with_handle(builder, |builder| {
            let mut draft = builder.draft.lock();
            let Kind::Redis(redis) = &mut draft.kind else {
                return Err(Failure::invalid_argument(format!(
                    "{parameter} applies only to a Redis checkpointer"
                )));
            };
            let updated = change((**redis).clone())?;
            **redis = updated;
            Ok(kcheck_status::Ok)
        })
    }
}

/// The failure of a Redis entry point in a library built without it.
#[cfg(not(feature = "redis"))]
fn without_redis() -> Failure {
    crate::Error::Config("built without Redis support (cargo feature `redis`)".into()).into()
}

/// Applies `change` to the lease settings of either kind.
///
/// # Safety
/// `builder` is NULL or a live builder.
unsafe fn update_settings(
    builder: *const kcheck_checkpointer_builder,
    change: impl FnOnce(&mut LeaseSettings) -> Result<(), Failure>,
) -> kcheck_status {
    unsafe {
        with_handle(builder, |builder| {
            change(&mut builder.draft.lock().settings)?;
            Ok(kcheck_status::Ok)
        })
    }
}

/// Starts a DynamoDB checkpointer for consumer group `name` (async-kinesis's
/// DynamoDBCheckPointer). Defaults: table `kinesis-checkpoints-{name}`,
/// session timeout 60 s, heartbeat every 15 s, automatic checkpoints,
/// table created when missing, region from the environment, TTL 24 h.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_new_dynamodb(
    name: *const c_char,
    out: *mut *mut kcheck_checkpointer_builder,
) -> kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let name = unsafe { text(name, "name") }?;
        out.write(new_builder(Kind::DynamoDb(Box::new(
            DynamoDbCheckpointer::builder(name),
        ))))
    })
}

/// Starts a Redis checkpointer for consumer group `name` (async-kinesis's
/// RedisCheckPointer). Defaults: the server from `REDIS_HOST`
/// [localhost], `REDIS_PORT` [6379], `REDIS_PASSWORD` and `REDIS_DB` [0]
/// (see `kcheck_checkpointer_builder_set_url`), session timeout 60 s,
/// heartbeat every 15 s, automatic checkpoints, TTL 24 h. In a library
/// built without the `redis` feature: `KCHECK_STATUS_INVALID_CONFIG`,
/// "built without Redis support".
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_new_redis(
    name: *const c_char,
    out: *mut *mut kcheck_checkpointer_builder,
) -> kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let name = unsafe { text(name, "name") }?;
        #[cfg(feature = "redis")]
        {
            out.write(new_builder(Kind::Redis(Box::new(
                crate::checkpoint::RedisCheckpointer::builder(name),
            ))))
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = (out, name);
            Err(without_redis())
        }
    })
}

/// The Redis server: `redis://[[user]:password@]host[:port][/db]`, or
/// `rediss://…` for TLS [from the `REDIS_*` environment variables]. The
/// password never appears in an error message.
///
/// # Safety
/// `builder` is NULL or a live builder; `url` is NULL or a NUL-terminated
/// string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_url(
    builder: *mut kcheck_checkpointer_builder,
    url: *const c_char,
) -> kcheck_status {
    #[cfg(feature = "redis")]
    unsafe {
        update_redis(builder, "url", |b| Ok(b.url(text(url, "url")?)))
    }
    #[cfg(not(feature = "redis"))]
    boundary(|| {
        let _ = (builder, url);
        Err(without_redis())
    })
}

/// Starts an in-process checkpointer (async-kinesis's MemoryCheckPointer):
/// consumers given the same one share its leases.
///
/// # Safety
/// `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_new_memory(
    out: *mut *mut kcheck_checkpointer_builder,
) -> kcheck_status {
    boundary(|| unsafe { Out::new(out, "out") }?.write(new_builder(Kind::Memory)))
}

/// A lease seen unchanged this long is dead, and an owner that could not
/// renew for this long stops the shard itself [60 000 ms].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_session_timeout_ms(
    builder: *mut kcheck_checkpointer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe {
        update_settings(builder, |s| {
            s.session_timeout = millis(milliseconds);
            Ok(())
        })
    }
}

/// How often owned leases are renewed [15 000 ms]; shorter than the session
/// timeout.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_heartbeat_frequency_ms(
    builder: *mut kcheck_checkpointer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe {
        update_settings(builder, |s| {
            s.heartbeat_frequency = millis(milliseconds);
            Ok(())
        })
    }
}

/// 1: processed records are checkpointed automatically [default]; 0: only
/// `kcheck_consumer_checkpoint*` writes, and close writes nothing pending.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_auto_checkpoint(
    builder: *mut kcheck_checkpointer_builder,
    enabled: u32,
) -> kcheck_status {
    unsafe {
        update_settings(builder, |s| {
            s.auto_checkpoint = flag(enabled, "auto_checkpoint")?;
            Ok(())
        })
    }
}

/// The DynamoDB table [`kinesis-checkpoints-{name}`]; groups may share one.
///
/// # Safety
/// `builder` is NULL or a live builder; `table_name` is NULL or a
/// NUL-terminated string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_table_name(
    builder: *mut kcheck_checkpointer_builder,
    table_name: *const c_char,
) -> kcheck_status {
    unsafe {
        update_dynamodb(builder, "table_name", |b| {
            Ok(b.table_name(text(table_name, "table_name")?))
        })
    }
}

/// 1: create the table when missing [default]; 0: a missing table is an
/// error naming it.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_create_table(
    builder: *mut kcheck_checkpointer_builder,
    enabled: u32,
) -> kcheck_status {
    unsafe {
        update_dynamodb(builder, "create_table", |b| {
            Ok(b.create_table(flag(enabled, "create_table")?))
        })
    }
}

/// The DynamoDB endpoint, e.g. a local emulator [resolved as the AWS SDKs do].
///
/// # Safety
/// `builder` is NULL or a live builder; `url` is NULL or a NUL-terminated
/// string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_endpoint_url(
    builder: *mut kcheck_checkpointer_builder,
    url: *const c_char,
) -> kcheck_status {
    unsafe {
        update_dynamodb(builder, "endpoint_url", |b| {
            Ok(b.endpoint_url(text(url, "endpoint_url")?))
        })
    }
}

/// The DynamoDB region [AWS_DEFAULT_REGION, the profile, or us-east-1].
///
/// # Safety
/// `builder` is NULL or a live builder; `region` is NULL or a NUL-terminated
/// string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_region_name(
    builder: *mut kcheck_checkpointer_builder,
    region: *const c_char,
) -> kcheck_status {
    unsafe {
        update_dynamodb(builder, "region_name", |b| {
            Ok(b.region_name(text(region, "region_name")?))
        })
    }
}

/// Hours after its shard left the stream that a lease may be deleted (by
/// DynamoDB's TTL, or a Redis key expiry) [24]; 0 keeps leases for good.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_set_ttl_hours(
    builder: *mut kcheck_checkpointer_builder,
    hours: u32,
) -> kcheck_status {
    unsafe {
        with_handle(builder, |builder| {
            let mut draft = builder.draft.lock();
            match &mut draft.kind {
                Kind::DynamoDb(dynamodb) => **dynamodb = (**dynamodb).clone().ttl_hours(hours),
                #[cfg(feature = "redis")]
                Kind::Redis(redis) => **redis = (**redis).clone().ttl_hours(hours),
                Kind::Memory => {
                    return Err(Failure::invalid_argument(
                        "ttl_hours applies only to a DynamoDB or Redis checkpointer".to_owned(),
                    ))
                }
            }
            Ok(kcheck_status::Ok)
        })
    }
}

/// Consumes the builder, whether or not it succeeds, and makes the
/// checkpointer (free it with `kcheck_checkpointer_free`). The DynamoDB
/// table is checked, or created, when a consumer starts.
///
/// # Safety
/// `builder` is NULL or a live builder, not used afterwards; `out` is NULL
/// or writable.
///
/// Thread safety: no other call may use the builder at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_build(
    builder: *mut kcheck_checkpointer_builder,
    out: *mut *mut kcheck_checkpointer,
) -> kcheck_status {
    boundary(|| {
        let builder = unsafe { consume(builder) }?;
        let out = unsafe { Out::new(out, "out") }?;
        let Draft { settings, kind } = builder.draft.into_inner();
        let (inner, dynamodb): (Arc<dyn Checkpointer>, _) = match kind {
            Kind::Memory => (Arc::new(MemoryCheckpointer::with_settings(settings)?), None),
            Kind::DynamoDb(dynamodb) => {
                let dynamodb = Arc::new(
                    dynamodb
                        .session_timeout(settings.session_timeout)
                        .heartbeat_frequency(settings.heartbeat_frequency)
                        .auto_checkpoint(settings.auto_checkpoint)
                        .build()?,
                );
                (dynamodb.clone(), Some(dynamodb))
            }
            #[cfg(feature = "redis")]
            Kind::Redis(redis) => (
                Arc::new(
                    redis
                        .session_timeout(settings.session_timeout)
                        .heartbeat_frequency(settings.heartbeat_frequency)
                        .auto_checkpoint(settings.auto_checkpoint)
                        .build()?,
                ),
                None,
            ),
        };
        out.write(into_handle(kcheck_checkpointer {
            inner,
            dynamodb,
            state: HandleState::new(),
        }))
    })
}

/// Frees a builder that was not built. NULL does nothing.
///
/// # Safety
/// `builder` is NULL or a live builder, not used afterwards.
///
/// Thread safety: no other call may use the builder at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_builder_free(
    builder: *mut kcheck_checkpointer_builder,
) {
    boundary_value((), || drop(unsafe { reclaim(builder) }))
}

/// Frees a checkpointer. Consumers built with it keep their own reference,
/// so it may be freed right after `kcheck_consumer_builder_set_checkpointer`.
/// NULL does nothing; in a process forked from the one that built it, the
/// copy is left alone.
///
/// # Safety
/// `checkpointer` is NULL or a live checkpointer, not used afterwards.
///
/// Thread safety: no other call may use the checkpointer at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_checkpointer_free(checkpointer: *mut kcheck_checkpointer) {
    boundary_value((), || drop(unsafe { reclaim(checkpointer) }))
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::ptr;

    use super::*;
    use crate::ffi::boundary::kcheck_last_error_message;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(kcheck_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn redis_entry_points_exist_without_the_feature_and_say_so() {
        let mut builder = ptr::null_mut();
        let status =
            unsafe { kcheck_checkpointer_builder_new_redis(c"app".as_ptr(), &mut builder) };
        assert_eq!(status, kcheck_status::InvalidConfig);
        assert!(builder.is_null());
        assert!(
            last_error().contains("built without Redis support"),
            "{}",
            last_error()
        );
        let status =
            unsafe { kcheck_checkpointer_builder_set_url(ptr::null_mut(), c"redis://x".as_ptr()) };
        assert_eq!(status, kcheck_status::InvalidConfig);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_builder_takes_a_url_and_refuses_dynamodb_parameters() {
        let mut builder = ptr::null_mut();
        let status =
            unsafe { kcheck_checkpointer_builder_new_redis(c"app".as_ptr(), &mut builder) };
        assert_eq!(status, kcheck_status::Ok);
        let url = c"redis://:s3cr3t@127.0.0.1:1/0";
        assert_eq!(
            unsafe { kcheck_checkpointer_builder_set_url(builder, url.as_ptr()) },
            kcheck_status::Ok
        );
        assert_eq!(
            unsafe { kcheck_checkpointer_builder_set_ttl_hours(builder, 1) },
            kcheck_status::Ok
        );
        let status = unsafe { kcheck_checkpointer_builder_set_table_name(builder, c"t".as_ptr()) };
        assert_ne!(status, kcheck_status::Ok);
        assert!(last_error().contains("DynamoDB"), "{}", last_error());
        let mut checkpointer = ptr::null_mut();
        let status = unsafe { kcheck_checkpointer_builder_build(builder, &mut checkpointer) };
        assert_eq!(status, kcheck_status::Ok);
        let debug = format!("{:?}", unsafe { &*checkpointer }.inner);
        assert!(!debug.contains("s3cr3t"), "{debug}");
        unsafe { kcheck_checkpointer_free(checkpointer) };

        let mut dynamodb = ptr::null_mut();
        unsafe { kcheck_checkpointer_builder_new_dynamodb(c"app".as_ptr(), &mut dynamodb) };
        let status = unsafe { kcheck_checkpointer_builder_set_url(dynamodb, url.as_ptr()) };
        assert_ne!(status, kcheck_status::Ok);
        assert!(!last_error().contains("s3cr3t"), "{}", last_error());
        unsafe { kcheck_checkpointer_builder_free(dynamodb) };
    }
}
