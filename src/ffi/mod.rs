//! The stable C ABI of kcheck: `extern "C"` functions prefixed `kcheck_`,
//! opaque handles and status codes. The only module allowed `unsafe`; the
//! safe Rust API knows nothing of C.

use std::ffi::c_char;

/// Version of the C ABI. It changes only when a function is removed or its
/// signature changes; adding functions keeps it.
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
