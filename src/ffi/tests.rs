//! The panic boundary, through real handles: a panic inside a call returns
//! PANIC with its message, poisons the handle, and the handle is still freed.

use std::ffi::CStr;
use std::ptr;

use super::boundary::with_handle;
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
