//! The panic boundary, through real handles: a panic inside a call returns
//! PANIC with its message, poisons the handle, and the handle is still freed.
//! A handle inherited across fork is refused and left alone; messages stay
//! bounded.

use std::ffi::CStr;
use std::ptr;

use super::boundary::{
    boundary, consume, into_handle, reclaim, take_handle, with_handle, Failure, Handle, HandleState,
};
use super::*;

#[test]
fn a_panic_returns_panic_and_poisons_the_handle() {
    let mut builder = ptr::null_mut();
    let status = unsafe { kcheck_consumer_builder_new(c"stream".as_ptr(), &mut builder) };
    assert_eq!(status, kcheck_status::Ok);

    let status = unsafe {
        with_handle(builder.cast_const(), |_: &kcheck_consumer_builder| {
            panic!("forced for the test")
        })
    };
    assert_eq!(status, kcheck_status::Panic);
    let message = unsafe { CStr::from_ptr(kcheck_last_error_message()) };
    assert_eq!(
        message.to_str().unwrap(),
        "internal error: forced for the test"
    );

    let status = unsafe { kcheck_consumer_builder_set_record_limit(builder, 10) };
    assert_eq!(status, kcheck_status::Poisoned);
    let mut consumer = ptr::null_mut();
    let status = unsafe { kcheck_consumer_builder_build(builder, &mut consumer) };
    assert_eq!(
        status,
        kcheck_status::Poisoned,
        "consumed and freed all the same"
    );
    assert!(consumer.is_null());
}

/// A handle as a forked child sees it: created by its parent.
struct Inherited(HandleState);

impl Handle for Inherited {
    const NAME: &'static str = "test handle";
    fn state(&self) -> &HandleState {
        &self.0
    }
}

#[test]
fn a_handle_from_another_process_is_refused_and_left_alone() {
    let parent = std::process::id() + 1;
    let handle = into_handle(Inherited(HandleState::created_in(parent)));

    let status = unsafe { with_handle(handle.cast_const(), |_| Ok(kcheck_status::Ok)) };
    assert_eq!(status, kcheck_status::Forked);
    let message = unsafe { CStr::from_ptr(kcheck_last_error_message()) };
    assert_eq!(
        message.to_str().unwrap(),
        format!(
            "this test handle was created in process {parent}; create a new test handle after fork"
        )
    );
    assert!(unsafe { consume(handle) }.is_err_and(|f| format!("{f:?}").contains("Forked")));
    assert!(unsafe { reclaim(handle) }.is_none(), "left to the parent");
    // Still allocated: neither consume nor reclaim took it.
    drop(unsafe { take_handle(handle) });
}

#[test]
fn a_message_quoting_a_huge_input_keeps_its_start_and_end() {
    let huge = "x".repeat(1 << 20);
    let status = boundary(|| Err(Failure::invalid_argument(format!("stream {huge} is bad"))));
    assert_eq!(status, kcheck_status::InvalidArgument);
    let message = unsafe { CStr::from_ptr(kcheck_last_error_message()) }
        .to_str()
        .unwrap();
    assert!(message.len() < 2000, "{} bytes", message.len());
    assert!(message.starts_with("stream xxx") && message.ends_with("xxx is bad"));
    assert!(message.contains("bytes omitted"), "{message}");
}
