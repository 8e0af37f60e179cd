//! Hands kcheck's log records (lease changes, retries, throttling) to a
//! host callback, so they appear in the host's own logging.

use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;

use parking_lot::RwLock;

use super::boundary::{boundary, choice, Failure};
use super::status::kcheck_status;

/// Log levels, from most to least severe.
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum kcheck_log_level {
    /// No records (as `max_level`: logging off).
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// Receives one log record: `level` is a `kcheck_log_level`, `target` the
/// kcheck module (e.g. "kcheck::consumer::keeper"), `message` the text. Both
/// strings are NUL-terminated and valid only during the call.
pub type kcheck_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: u32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: the host promises, when it installs the callback, that it may be
// called from any thread with this user data.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

struct CallbackLogger {
    sink: RwLock<Option<Sink>>,
}

static LOGGER: CallbackLogger = CallbackLogger {
    sink: RwLock::new(None),
};

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Copied out so the lock is not held while the host runs.
        let Some(sink) = *self.sink.read() else {
            return;
        };
        let text = |s: String| CString::new(s.replace('\0', "")).unwrap_or_default();
        let target = text(record.target().to_owned());
        let message = text(record.args().to_string());
        // SAFETY: the host supplied a callback valid for these arguments.
        unsafe {
            (sink.callback)(
                sink.user_data,
                record.level() as u32,
                target.as_ptr(),
                message.as_ptr(),
            )
        };
    }

    fn flush(&self) {}
}

/// Sends kcheck's log records up to `max_level` (a `kcheck_log_level`) to
/// `callback` with `user_data`; a NULL callback or `KCHECK_LOG_LEVEL_OFF`
/// stops logging. Records at WARN and above report lease losses, refused
/// checkpoints and failing requests; INFO adds lease gains, releases,
/// hand-overs and resharding; DEBUG adds retries.
///
/// Fails with `KCHECK_STATUS_INTERNAL_ERROR` when another Rust logger is
/// already installed in the process (only possible when kcheck is linked
/// as a Rust library).
///
/// # Safety
/// `callback`, when not NULL, must be safe to call with `user_data` from any
/// thread, concurrently, until it is replaced: calls already under way may
/// finish after this function returns.
///
/// Thread safety: any thread; the callback runs on kcheck's threads and on
/// the caller's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_set_log_callback(
    callback: kcheck_log_callback,
    user_data: *mut c_void,
    max_level: u32,
) -> kcheck_status {
    boundary(|| {
        let level = match choice(max_level, "max_level", 6)? {
            0 => log::LevelFilter::Off,
            1 => log::LevelFilter::Error,
            2 => log::LevelFilter::Warn,
            3 => log::LevelFilter::Info,
            4 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        };
        static INSTALLED: OnceLock<bool> = OnceLock::new();
        if !*INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok()) {
            return Err(Failure::new(
                kcheck_status::InternalError,
                "another Rust logger is already installed in this process",
            ));
        }
        let sink = callback.map(|callback| Sink {
            callback,
            user_data,
        });
        *LOGGER.sink.write() = sink;
        log::set_max_level(if sink.is_some() {
            level
        } else {
            log::LevelFilter::Off
        });
        Ok(kcheck_status::Ok)
    })
}
