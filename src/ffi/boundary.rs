//! What every exported function shares: the panic boundary, the calling
//! thread's last error, handle poisoning, and checked arguments.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::status::kcheck_status;
use crate::error::{panic_message, Error};

/// Why an exported call failed: its status and the text that
/// `kcheck_last_error_message` returns.
#[derive(Debug)]
pub(crate) struct Failure {
    status: kcheck_status,
    message: String,
    /// The AWS error code of a service error.
    code: Option<String>,
}

impl Failure {
    pub fn new(status: kcheck_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            code: None,
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Failure {
        Failure::new(kcheck_status::InvalidArgument, message)
    }

    fn null(name: &str) -> Failure {
        Failure::invalid_argument(format!("{name} is NULL"))
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            code: error.code().map(|code| code.as_str().to_owned()),
            ..Failure::new(kcheck_status::of(&error), error.to_string())
        }
    }
}

/// A call's result: a status that is not a failure (OK, or TIMED_OUT and
/// CLOSED from `next`), or a failure to record.
pub(crate) type Outcome = Result<kcheck_status, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_ERROR_CODE: RefCell<CString> = RefCell::new(CString::default());
}

/// The most of a message kept from its start and from its end: a message
/// quoting a huge input (a 1 MB stream name) keeps its explanation
/// without echoing the input whole.
const MESSAGE_HEAD: usize = 1024;
const MESSAGE_TAIL: usize = 256;

fn bounded(message: &str) -> String {
    if message.len() <= MESSAGE_HEAD + MESSAGE_TAIL {
        return message.to_owned();
    }
    let mut head = MESSAGE_HEAD;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - MESSAGE_TAIL;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} [... {} bytes omitted ...] {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

fn remember(message: &str, code: Option<&str>) {
    // Server text can hold NUL bytes; a C string cannot.
    let c_string = |text: &str| CString::new(bounded(text).replace('\0', "")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = c_string(message));
    let _ = LAST_ERROR_CODE.try_with(|last| *last.borrow_mut() = c_string(code.unwrap_or("")));
}

/// The text of the last failure on this thread; empty when none.
///
/// Valid until the next failing kcheck call on the same thread.
///
/// Thread safety: each thread has its own last error.
#[unsafe(no_mangle)]
pub extern "C" fn kcheck_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The AWS error code of the last failure on this thread, when it was an
/// error answer of AWS (`ResourceNotFoundException`,
/// `ProvisionedThroughputExceededException`, ...); empty otherwise. Set
/// together with `kcheck_last_error_message`, for programs that act on the
/// code rather than parse the message.
///
/// Valid until the next failing kcheck call on the same thread.
///
/// Thread safety: each thread has its own last error.
#[unsafe(no_mangle)]
pub extern "C" fn kcheck_last_error_code() -> *const c_char {
    LAST_ERROR_CODE
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs an exported function's body: failures are recorded for
/// `kcheck_last_error_message`, and a panic becomes `KCHECK_STATUS_PANIC`
/// instead of unwinding into C.
pub(crate) fn boundary(body: impl FnOnce() -> Outcome) -> kcheck_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => {
            remember(&failure.message, failure.code.as_deref());
            failure.status
        }
        Err(payload) => {
            remember(
                &format!("internal error: {}", panic_message(&*payload)),
                None,
            );
            kcheck_status::Panic
        }
    }
}

/// The same boundary for functions that return a value instead of a status:
/// `fallback` on a panic.
pub(crate) fn boundary_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        remember(
            &format!("internal error: {}", panic_message(&*payload)),
            None,
        );
        fallback
    })
}

/// Applies a setter to the options of a builder handle (`options` picks
/// them out). On a refused value the options stay as they were; `None`
/// options only follow a panic inside a setter, which also poisons.
///
/// # Safety
/// `builder` is NULL or points to a live handle of type `H`.
pub(crate) unsafe fn update_options<H: Handle, B: Clone>(
    builder: *const H,
    options: impl FnOnce(&H) -> &parking_lot::Mutex<Option<B>>,
    change: impl FnOnce(B) -> Result<B, Failure>,
) -> kcheck_status {
    unsafe {
        with_handle(builder, |builder| {
            let mut draft = options(builder).lock();
            let current = draft.take().expect("a builder without options is poisoned");
            *draft = Some(match change(current.clone()) {
                Ok(updated) => updated,
                Err(failure) => {
                    *draft = Some(current);
                    return Err(failure);
                }
            });
            Ok(kcheck_status::Ok)
        })
    }
}

/// What every handle carries: whether a panic left it unusable, and the
/// process that created it. A forked child inherits a copy of the handle
/// but not the threads, connections and locks behind it.
pub(crate) struct HandleState {
    poisoned: AtomicBool,
    process: u32,
}

impl HandleState {
    pub fn new() -> HandleState {
        HandleState::created_in(std::process::id())
    }

    pub fn created_in(process: u32) -> HandleState {
        HandleState {
            poisoned: AtomicBool::new(false),
            process,
        }
    }

    fn inherited(&self) -> bool {
        self.process != std::process::id()
    }
}

/// A handle that a panic leaves unusable and a fork leaves to its parent.
pub(crate) trait Handle {
    /// The handle's name in messages, e.g. "consumer".
    const NAME: &'static str;
    fn state(&self) -> &HandleState;
}

/// Runs `body` on a live handle: NULL, poisoned and inherited handles are
/// refused, and a panic inside `body` poisons the handle.
///
/// # Safety
/// `handle` is NULL or points to a live handle of type `H`.
pub(crate) unsafe fn with_handle<H: Handle>(
    handle: *const H,
    body: impl FnOnce(&H) -> Outcome,
) -> kcheck_status {
    boundary(|| poisoning_on_panic(unsafe { live(handle) }?, body))
}

/// `with_handle` for a handle made by `into_shared_handle`: the call holds
/// its own reference, so a `_free` in another thread while the call runs
/// drops only the caller's reference and the handle outlives the call.
///
/// # Safety
/// `handle` is NULL or a live handle made by `into_shared_handle`.
pub(crate) unsafe fn with_shared_handle<H: Handle>(
    handle: *const H,
    body: impl FnOnce(&H) -> Outcome,
) -> kcheck_status {
    boundary(|| {
        let in_flight = unsafe { in_flight(handle) }?;
        poisoning_on_panic(&*in_flight, body)
    })
}

/// `with_shared_handle` for a call on two shared handles: both are held
/// for the call, and a panic inside `body` poisons both.
///
/// # Safety
/// `first` and `second` are NULL or live handles made by
/// `into_shared_handle`.
pub(crate) unsafe fn with_two_shared_handles<A: Handle, B: Handle>(
    first: *const A,
    second: *const B,
    body: impl FnOnce(&A, &B) -> Outcome,
) -> kcheck_status {
    boundary(|| {
        let first = unsafe { in_flight(first) }?;
        let second = unsafe { in_flight(second) }?;
        poisoning_on_panic(&*first, |first| {
            poisoning_on_panic(&*second, |second| body(first, second))
        })
    })
}

/// The call's own references to the `count` shared handles of `array`
/// (NULL with a count of 0: none); any NULL, poisoned or inherited handle
/// refuses the whole call.
///
/// # Safety
/// `array` is NULL or holds `count` pointers, each NULL or a live handle
/// made by `into_shared_handle`.
pub(crate) unsafe fn shared_handles<H: Handle>(
    array: *const *const H,
    count: usize,
    name: &str,
) -> Result<Vec<Arc<H>>, Failure> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if array.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: the caller promised `count` readable pointers.
    let pointers = unsafe { std::slice::from_raw_parts(array, count) };
    pointers
        .iter()
        .map(|&handle| unsafe { in_flight(handle) })
        .collect()
}

/// The call's own reference to a live shared handle.
///
/// # Safety
/// `handle` is NULL or a live handle made by `into_shared_handle`.
unsafe fn in_flight<H: Handle>(handle: *const H) -> Result<Arc<H>, Failure> {
    unsafe { live(handle) }?;
    // SAFETY: `handle` came from `Arc::into_raw` and is live.
    Ok(unsafe {
        Arc::increment_strong_count(handle);
        Arc::from_raw(handle)
    })
}

fn poisoning_on_panic<H: Handle>(handle: &H, body: impl FnOnce(&H) -> Outcome) -> Outcome {
    let poison_on_unwind = PoisonOnUnwind(&handle.state().poisoned);
    let outcome = body(handle);
    std::mem::forget(poison_on_unwind);
    outcome
}

/// The handle behind `handle`, unless it is NULL, poisoned, or was created
/// in another process.
///
/// # Safety
/// `handle` is NULL or points to a live handle of type `H`.
pub(crate) unsafe fn live<'a, H: Handle>(handle: *const H) -> Result<&'a H, Failure> {
    let handle = unsafe { handle.as_ref() }.ok_or_else(|| Failure::null(H::NAME))?;
    this_process(handle)?;
    unpoisoned(handle)?;
    Ok(handle)
}

fn this_process<H: Handle>(handle: &H) -> Result<(), Failure> {
    let state = handle.state();
    if state.inherited() {
        return Err(Failure::new(
            kcheck_status::Forked,
            format!(
                "this {name} was created in process {}; create a new {name} after fork",
                state.process,
                name = H::NAME,
            ),
        ));
    }
    Ok(())
}

fn unpoisoned<H: Handle>(handle: &H) -> Result<(), Failure> {
    if handle.state().poisoned.load(Ordering::Acquire) {
        return Err(Failure::new(
            kcheck_status::Poisoned,
            format!(
                "this {} is unusable after an earlier internal error; free it",
                H::NAME
            ),
        ));
    }
    Ok(())
}

/// Marks a handle poisoned if dropped while unwinding (forgotten otherwise).
struct PoisonOnUnwind<'a>(&'a AtomicBool);

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Whether a handle about to be freed belongs to this process. A forked
/// child's copy is left alone (leaked): dropping it would join threads and
/// take locks that exist only in the parent.
///
/// # Safety
/// `handle` is NULL or points to a live handle of type `H`.
unsafe fn owned_here<H: Handle>(handle: *const H) -> bool {
    unsafe { handle.as_ref() }.is_some_and(|h| !h.state().inherited())
}

/// Takes back ownership of a record or batch; NULL gives None.
///
/// # Safety
/// `handle` is NULL or came from `into_handle` and is not used afterwards.
pub(crate) unsafe fn take_handle<H>(handle: *mut H) -> Option<Box<H>> {
    (!handle.is_null()).then(|| unsafe { Box::from_raw(handle) })
}

/// Takes back ownership of a handle made by `into_handle`; None for NULL
/// and for a handle inherited across fork (left to the parent).
///
/// # Safety
/// `handle` is NULL or came from `into_handle` and is not used afterwards.
pub(crate) unsafe fn reclaim<H: Handle>(handle: *mut H) -> Option<Box<H>> {
    unsafe { owned_here(handle) }.then(|| unsafe { Box::from_raw(handle) })
}

/// Takes back the caller's reference to a handle made by
/// `into_shared_handle`; None for NULL and for an inherited handle.
///
/// # Safety
/// `handle` is NULL or came from `into_shared_handle`; the caller's
/// reference is not used afterwards.
pub(crate) unsafe fn reclaim_shared<H: Handle>(handle: *const H) -> Option<Arc<H>> {
    unsafe { owned_here(handle) }.then(|| unsafe { Arc::from_raw(handle) })
}

/// Takes back ownership of a handle that a call consumes (a builder):
/// refused, and freed, when NULL or poisoned; refused and left alone when
/// inherited across fork.
///
/// # Safety
/// `handle` is NULL or came from `into_handle` and is not used afterwards.
pub(crate) unsafe fn consume<H: Handle>(handle: *mut H) -> Result<Box<H>, Failure> {
    let borrowed = unsafe { handle.as_ref() }.ok_or_else(|| Failure::null(H::NAME))?;
    this_process(borrowed)?;
    // SAFETY: non-NULL, made by `into_handle`, and ours to take.
    let handle = unsafe { Box::from_raw(handle) };
    unpoisoned(&*handle)?;
    Ok(handle)
}

/// Gives a handle to C; freed by `reclaim` (or `take_handle` for records
/// and batches).
pub(crate) fn into_handle<H>(handle: H) -> *mut H {
    Box::into_raw(Box::new(handle))
}

/// Gives C a handle that calls in flight share with the caller; the
/// caller's reference is dropped by `reclaim_shared`.
pub(crate) fn into_shared_handle<H>(handle: H) -> *mut H {
    Arc::into_raw(Arc::new(handle)).cast_mut()
}

/// An out-param, checked for NULL before any work, written only on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// # Safety
    /// `out` is NULL or valid for writing a `T`.
    pub unsafe fn new(out: *mut T, name: &str) -> Result<Out<T>, Failure> {
        if out.is_null() {
            return Err(Failure::null(name));
        }
        Ok(Out(out))
    }

    pub fn write(self, value: T) -> Outcome {
        // SAFETY: checked non-NULL in `new`; the caller promised validity.
        unsafe { self.0.write(value) };
        Ok(kcheck_status::Ok)
    }
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `text` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn text<'a>(text: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if text.is_null() {
        return Err(Failure::null(name));
    }
    unsafe { CStr::from_ptr(text) }.to_str().map_err(|_| {
        Failure::new(
            kcheck_status::InvalidUtf8,
            format!("{name} is not valid UTF-8"),
        )
    })
}

/// A boolean passed as an integer: only 0 and 1 are accepted.
pub(crate) fn flag(value: u32, name: &str) -> Result<bool, Failure> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Failure::invalid_argument(format!(
            "{name} must be 0 or 1, got {other}"
        ))),
    }
}

/// One of `count` enumerated values passed as an integer (0 to count - 1).
pub(crate) fn choice(value: u32, name: &str, count: u32) -> Result<u32, Failure> {
    if value < count {
        Ok(value)
    } else {
        Err(Failure::invalid_argument(format!(
            "{name} must be 0 to {}, got {value}",
            count - 1
        )))
    }
}

/// A duration passed in milliseconds.
pub(crate) fn millis(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// A timeout passed in milliseconds; None when the deadline it sets is too
/// far to represent (e.g. `UINT64_MAX`), which means no limit.
pub(crate) fn deadline_after(timeout_ms: u64) -> Option<Duration> {
    let timeout = millis(timeout_ms);
    Instant::now().checked_add(timeout).map(|_| timeout)
}

/// A string kcheck allocated for C, freed with `kcheck_string_free`.
pub(crate) fn owned_string(text: String) -> *mut c_char {
    CString::new(text.replace('\0', ""))
        .unwrap_or_default()
        .into_raw()
}

/// Frees a string that kcheck returned (e.g. from
/// `kcheck_consumer_stats_json`). NULL does nothing.
///
/// # Safety
/// `text` is NULL or a string returned by kcheck and not yet freed.
///
/// Thread safety: any thread, once no other thread uses the string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_string_free(text: *mut c_char) {
    boundary_value((), || {
        if !text.is_null() {
            drop(unsafe { CString::from_raw(text) });
        }
    })
}
