//! Request and response bodies live in buffers each thread keeps between calls.
//! A fetch thread reading 10 MB GetRecords pages five times a second then
//! pays neither for fresh pages from the kernel nor for zeroing them again on
//! every call; a thread whose responses turn small gives the buffer back.

use std::cell::Cell;
use std::io::{self, Read};
use std::thread::LocalKey;

/// Buffers up to this size are always kept.
const ALWAYS_KEPT_BYTES: usize = 64 << 10;

thread_local! {
    static RESPONSE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static REQUEST_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Lends the thread's buffer in `slot` to `use_buffer`, which says how many
/// bytes of it it used. The buffer is kept for the next call unless it is
/// large and was mostly idle.
fn with_kept_buffer<T>(
    slot: &'static LocalKey<Cell<Vec<u8>>>,
    use_buffer: impl FnOnce(&mut Vec<u8>) -> (usize, T),
) -> T {
    // Taken out rather than borrowed, so a nested call on this thread simply
    // starts with a buffer of its own.
    let mut buffer = slot.take();
    let (used, result) = use_buffer(&mut buffer);
    if buffer.capacity() <= ALWAYS_KEPT_BYTES || used >= buffer.capacity() / 4 {
        slot.set(buffer);
    }
    result
}

/// Reads `reader` to its end and hands the body to `use_body`. `expected`
/// (Content-Length, already capped) sizes the buffer up front.
pub(crate) fn read_body<T>(
    mut reader: impl Read,
    expected: usize,
    use_body: impl FnOnce(&[u8]) -> T,
) -> io::Result<T> {
    with_kept_buffer(&RESPONSE_BUFFER, |buffer| {
        match read_into(&mut reader, buffer, expected) {
            Ok(filled) => (filled, Ok(use_body(&buffer[..filled]))),
            Err(e) => (0, Err(e)),
        }
    })
}

/// Hands `write` an empty buffer to build a request body in, kept between
/// calls like the response buffer: a 5 MB PutRecords body is then neither
/// grown by doubling nor faulted in afresh on every request.
pub(crate) fn with_request_buffer<T>(write: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    with_kept_buffer(&REQUEST_BUFFER, |buffer| {
        buffer.clear();
        let result = write(buffer);
        (buffer.len(), result)
    })
}

/// Reads to the end into `buffer`, whose whole length stays initialised so
/// that reads need no zeroing; returns how many bytes the body has.
fn read_into(reader: &mut impl Read, buffer: &mut Vec<u8>, expected: usize) -> io::Result<usize> {
    // Room beyond the expected length, so the end is seen without growing,
    // and a next body a little larger than this one fits too.
    let wanted = expected.saturating_add(expected / 8 + 1).max(8 << 10);
    if buffer.len() < wanted {
        buffer.resize(wanted, 0);
    }
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len().saturating_mul(2), 0);
        }
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, like a socket.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.0.len()).min(1000);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn bodies_of_any_size_are_read_whole_whatever_was_expected() {
        for (len, expected) in [
            (0, 0),
            (10, 10),
            (100_000, 0),
            (100_000, 5),
            (30_000, 90_000),
        ] {
            let data = body(len);
            let read = read_body(Trickle(&data), expected, <[u8]>::to_vec).unwrap();
            assert_eq!(read, data, "{len} bytes, {expected} expected");
        }
    }

    #[test]
    fn a_large_buffer_is_kept_while_bodies_stay_large_and_dropped_after_a_small_one() {
        let kept = || RESPONSE_BUFFER.with(|b| b.replace(Vec::new())).len();
        read_body(Trickle(&body(1 << 20)), 1 << 20, |_| ()).unwrap();
        let size = kept();
        assert!(size > 1 << 20, "{size}");
        RESPONSE_BUFFER.set(vec![0; size]);
        read_body(Trickle(&body(1 << 19)), 1 << 19, |_| ()).unwrap();
        assert_eq!(kept(), size, "a body of half the buffer keeps it");
        RESPONSE_BUFFER.set(vec![0; size]);
        read_body(Trickle(&body(100)), 100, |_| ()).unwrap();
        assert_eq!(kept(), 0, "a small body gives the large buffer back");
    }

    #[test]
    fn a_request_buffer_starts_empty_and_keeps_its_room() {
        let room = with_request_buffer(|buffer| {
            buffer.extend_from_slice(&[7; 100_000]);
            buffer.capacity()
        });
        with_request_buffer(|buffer| {
            assert!(buffer.is_empty(), "a kept buffer is handed out empty");
            assert_eq!(buffer.capacity(), room, "and with the room it had");
        });
    }

    #[test]
    fn a_nested_read_gets_its_own_buffer() {
        let outer = body(50_000);
        let inner = body(70_000);
        let (a, b) = read_body(Trickle(&outer), 0, |o| {
            let i = read_body(Trickle(&inner), 0, <[u8]>::to_vec).unwrap();
            (o.to_vec(), i)
        })
        .unwrap();
        assert_eq!((a, b), (outer, inner));
    }

    #[test]
    fn read_errors_are_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let error = read_body(Broken, 10, |_| ()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }
}
