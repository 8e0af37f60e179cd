//! The stable C ABI of kcheck: `extern "C"` functions prefixed `kcheck_`,
//! opaque handles and status codes, generated into `include/kcheck.h`. The
//! only module allowed `unsafe`; the safe Rust API knows nothing of C.
//!
//! Conventions: fallible functions return a `kcheck_status` and write their
//! results through out-params only on success; every `_new` or `_build` has
//! one `_free`, and `_free(NULL)` does nothing; `kcheck_last_error_message()`
//! explains the last failure on the calling thread; a panic inside kcheck
//! returns `KCHECK_STATUS_PANIC` and poisons the handle, never unwinding into
//! C. Strings are NUL-terminated UTF-8; durations are milliseconds; flags are
//! 0 or 1. A handle belongs to the process that created it: in a forked
//! child, calls with it return `KCHECK_STATUS_FORKED` and its `_free` leaves
//! it alone.

use std::ffi::c_char;

mod boundary;
mod checkpointer;
mod consumer;
mod group;
mod log;
mod metrics;
mod pipeline;
mod producer;
mod record;
mod status;
mod writer;

pub use boundary::{kcheck_last_error_code, kcheck_last_error_message, kcheck_string_free};
pub use checkpointer::*;
pub use consumer::*;
pub use group::*;
pub use log::*;
pub use metrics::*;
pub use pipeline::*;
pub use producer::*;
pub use record::*;
pub use status::*;
pub use writer::*;

/// Version of the C ABI. It changes only when a function is removed or its
/// signature changes; adding functions keeps it. The library's SONAME is
/// `libkcheck.so.<this number>`.
pub const KCHECK_ABI_VERSION: u32 = 1;

/// The library version as a static NUL-terminated string, e.g. "0.1.0".
///
/// Thread safety: may be called from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn kcheck_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The C ABI version this library implements (see `KCHECK_ABI_VERSION`).
/// Bindings compare it with the version they were written for.
///
/// Thread safety: may be called from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn kcheck_abi_version() -> u32 {
    KCHECK_ABI_VERSION
}

#[cfg(test)]
mod tests;
