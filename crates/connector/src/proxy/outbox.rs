//! The write side of one direction: frames are appended as they are relayed, and written
//! when the batch they arrived in is done, so one read usually costs one write.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Above this, the relay stops reading from the side that feeds this outbox until it drains,
/// so a slow reader holds back its writer instead of growing memory.
const HIGH_WATER: usize = 256 * 1024;

/// Frames waiting to be written to one side.
pub(crate) struct Outbox {
    buf: BytesMut,
    /// Whether the writer buffers internally (TLS) and must be flushed after a write.
    flushes: bool,
    unflushed: bool,
}

impl Outbox {
    pub(crate) fn new(flushes: bool) -> Self {
        Self { buf: BytesMut::new(), flushes, unflushed: false }
    }

    /// Appends a whole frame.
    pub(crate) fn push(&mut self, frame: &[u8]) {
        self.buf.extend_from_slice(frame);
    }

    /// The buffer, for encoding a message the connector sends itself.
    pub(crate) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Whether the side feeding this outbox may be read.
    pub(crate) fn has_room(&self) -> bool {
        self.buf.len() < HIGH_WATER
    }

    /// Whether [`drive`](Self::drive) has work.
    pub(crate) fn wants_io(&self) -> bool {
        !self.buf.is_empty() || self.unflushed
    }

    /// Writes as much as one write takes, or flushes; returns the bytes written.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: the only awaits are one `write` and one `flush`, and the buffer is
    /// advanced only after a write completed.
    pub(crate) async fn drive<W: AsyncWrite + Unpin + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        if self.buf.is_empty() {
            w.flush().await?;
            self.unflushed = false;
            return Ok(0);
        }
        let n = w.write(&self.buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.buf.advance(n);
        // An idle connection holds no write buffer either.
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
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

    #[test]
    fn fills_up_to_the_high_water_mark() {
        let mut outbox = Outbox::new(false);
        outbox.push(&vec![0; HIGH_WATER - 1]);
        assert!(outbox.has_room());
        outbox.push(b"x");
        assert!(!outbox.has_room());
    }
}
