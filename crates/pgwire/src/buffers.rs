//! Spare buffers: a connection takes one when bytes arrive or wait to be written, and gives
//! it back when it has none in flight. An idle connection then holds no buffer, and a busy
//! one does not allocate and free one for every round trip (a query takes two reads and two
//! writes through a relay, each of which would otherwise cost an allocation).
//!
//! The spares live per thread, bounded, so idle connections cannot hold memory through them.

use std::cell::RefCell;

use bytes::BytesMut;

/// The size of every buffer handed out, and of the only ones taken back.
pub const BUFFER_SIZE: usize = 8 * 1024;
/// Spares kept per thread (256 KiB): the buffers of the connections busy at one moment.
const SPARES: usize = 32;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for [`BUFFER_SIZE`] bytes, a spare one when there is one.
pub fn take() -> BytesMut {
    let mut buf = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
    buf.reserve(BUFFER_SIZE);
    buf
}

/// Takes the memory of `buf` if nothing is buffered in it, keeping it as a spare if it is one
/// of [`take`]'s: a buffer that grew for a large message is freed, not kept.
pub fn give(buf: &mut BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 {
        return;
    }
    let mut buf = std::mem::take(buf);
    if reusable(&mut buf) {
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < SPARES {
                spare.push(buf);
            }
        });
    }
}

/// Whether the allocation behind the empty `buf`, which nothing else refers to, is exactly
/// [`BUFFER_SIZE`]; if so, `buf` starts at the allocation's start again.
/// (`try_reclaim` never allocates: it says whether the allocation behind the buffer has room.)
fn reusable(buf: &mut BytesMut) -> bool {
    !buf.try_reclaim(BUFFER_SIZE + 1) && buf.try_reclaim(BUFFER_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spares() -> usize {
        SPARE.with_borrow(Vec::len)
    }

    #[test]
    fn a_buffer_given_back_is_taken_again_whole() {
        let mut buf = take();
        let first = buf.as_ptr();
        buf.extend_from_slice(&[7; 100]);
        let frame = buf.split_to(60).freeze();
        let _ = buf.split_to(40);
        drop(frame);
        give(&mut buf);
        assert_eq!(buf.capacity(), 0, "the connection holds nothing");
        assert_eq!(spares(), 1);
        let again = take();
        assert_eq!(again.as_ptr(), first, "the same memory, from its start");
        assert_eq!(again.capacity(), BUFFER_SIZE);
        assert_eq!(spares(), 0);
    }

    #[test]
    fn buffers_still_referred_to_or_grown_are_not_kept() {
        let mut buf = take();
        buf.extend_from_slice(b"row");
        let frame = buf.split().freeze();
        give(&mut buf);
        assert_eq!(spares(), 0, "a frame still refers to it");
        drop(frame);

        let mut grown = take();
        grown.extend_from_slice(&vec![1; 3 * BUFFER_SIZE]);
        grown.clear();
        give(&mut grown);
        assert_eq!(spares(), 0, "a large message's buffer is freed");

        let mut busy = take();
        busy.extend_from_slice(b"half a message");
        give(&mut busy);
        assert_eq!(spares(), 0);
        assert_eq!(&busy[..], b"half a message", "bytes still buffered are kept");
    }

    #[test]
    fn spares_are_bounded() {
        let mut buffers: Vec<_> = (0..SPARES + 5).map(|_| take()).collect();
        for buf in &mut buffers {
            give(buf);
        }
        assert_eq!(spares(), SPARES);
        while spares() > 0 {
            drop(take());
        }
    }
}
