//! The write side of one direction: frames are appended as they are relayed, and written
//! when the batch they arrived in is done, so one read usually costs one write.

use std::collections::VecDeque;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use gatehouse_pgwire::buffers;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Above this, the relay stops reading from the side that feeds this outbox until it drains,
/// so a slow reader holds back its writer instead of growing memory.
const HIGH_WATER: usize = 256 * 1024;
/// Frames from this size on are queued as they are, not copied: a 200 MB row would otherwise
/// be in memory twice, and copying it holds up every other session on the relay's thread.
const SHARE_FROM: usize = 64 * 1024;

/// Frames waiting to be written to one side: small ones copied together into `tail`, large
/// ones queued whole in `sealed`, in order.
pub(crate) struct Outbox {
    /// Written before `tail`: large frames, and the small ones that came before them.
    sealed: VecDeque<Bytes>,
    tail: BytesMut,
    /// Bytes in `sealed`.
    sealed_len: usize,
    /// Whether the writer buffers internally (TLS) and must be flushed after a write.
    flushes: bool,
    unflushed: bool,
}

impl Outbox {
    pub(crate) fn new(flushes: bool) -> Self {
        Self { sealed: VecDeque::new(), tail: BytesMut::new(), sealed_len: 0, flushes, unflushed: false }
    }

    /// Appends a whole frame.
    pub(crate) fn push(&mut self, frame: &[u8]) {
        // A batch is several frames (a result: description, rows, completion, ready): room
        // for them at once, rather than a reallocation and copy at each.
        if self.tail.capacity() == 0 {
            self.tail = buffers::take();
        }
        self.tail.extend_from_slice(frame);
    }

    /// Appends a frame relayed from the other side; a large one is shared, not copied.
    pub(crate) fn push_frame(&mut self, frame: &Bytes) {
        if frame.len() < SHARE_FROM {
            return self.push(frame);
        }
        if !self.tail.is_empty() {
            self.sealed_len += self.tail.len();
            self.sealed.push_back(self.tail.split().freeze());
        }
        self.sealed_len += frame.len();
        self.sealed.push_back(frame.clone());
    }

    /// The buffer, for encoding a message the connector sends itself.
    pub(crate) fn buf_mut(&mut self) -> &mut BytesMut {
        if self.tail.capacity() == 0 {
            self.tail = buffers::take();
        }
        &mut self.tail
    }

    /// Whether the side feeding this outbox may be read.
    pub(crate) fn has_room(&self) -> bool {
        self.sealed_len + self.tail.len() < HIGH_WATER
    }

    /// Whether [`drive`](Self::drive) has work.
    pub(crate) fn wants_io(&self) -> bool {
        !self.sealed.is_empty() || !self.tail.is_empty() || self.unflushed
    }

    /// Writes as much as one write takes, or flushes; returns the bytes written.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: the only awaits are one `write` and one `flush`, and the buffer is
    /// advanced only after a write completed.
    pub(crate) async fn drive<W: AsyncWrite + Unpin + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        let n = match self.sealed.front_mut() {
            Some(front) => {
                let n = w.write(front).await?;
                front.advance(n);
                self.sealed_len -= n;
                if front.is_empty() {
                    self.sealed.pop_front();
                }
                n
            }
            None if self.tail.is_empty() => {
                w.flush().await?;
                self.unflushed = false;
                return Ok(0);
            }
            None => {
                let n = w.write(&self.tail).await?;
                self.tail.advance(n);
                // An idle connection holds no write buffer either.
                buffers::give(&mut self.tail);
                n
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.unflushed = self.flushes;
        Ok(n)
    }

    /// Writes everything and flushes.
    pub(crate) async fn drain<W: AsyncWrite + Unpin + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut total = 0;
        while self.wants_io() {
            total += self.drive(w).await?;
        }
        Ok(total)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        buffers::give(&mut self.tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_in_order_through_a_small_pipe() {
        let (mut w, mut r) = tokio::io::duplex(7);
        let mut outbox = Outbox::new(true);
        outbox.push(b"hello ");
        outbox.push(b"world");
        assert!(outbox.has_room() && outbox.wants_io());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got).await.unwrap();
            got
        });
        assert_eq!(outbox.drain(&mut w).await.unwrap(), 11);
        assert!(!outbox.wants_io());
        drop(w);
        assert_eq!(reader.await.unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn large_frames_are_shared_and_keep_their_place() {
        let (mut w, mut r) = tokio::io::duplex(1 << 20);
        let mut outbox = Outbox::new(false);
        let large = Bytes::from(vec![b'L'; SHARE_FROM]);
        outbox.push_frame(&Bytes::from_static(b"a"));
        outbox.push_frame(&large);
        outbox.push_frame(&Bytes::from_static(b"b"));
        assert_eq!(outbox.sealed.len(), 2, "the small frame before it, then the large one");
        assert_eq!(outbox.sealed[1].as_ptr(), large.as_ptr(), "not copied");
        assert!(!outbox.has_room() || SHARE_FROM < HIGH_WATER);
        assert_eq!(outbox.drain(&mut w).await.unwrap(), SHARE_FROM + 2);
        drop(w);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got).await.unwrap();
        assert_eq!(got.len(), SHARE_FROM + 2);
        assert_eq!((got[0], got[1], got[SHARE_FROM], got[SHARE_FROM + 1]), (b'a', b'L', b'L', b'b'));
        assert!(outbox.has_room() && !outbox.wants_io());
    }

    #[test]
    fn fills_up_to_the_high_water_mark() {
        let mut outbox = Outbox::new(false);
        outbox.push(&vec![0; HIGH_WATER - 1]);
        assert!(outbox.has_room());
        outbox.push(b"x");
        assert!(!outbox.has_room());
    }
}
