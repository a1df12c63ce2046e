//! The write side of one direction. The messages of one read are passed on together when
//! the batch is done, so one read usually costs one write, and that write is made straight
//! from the reader's buffer when nothing waits before it: the usual round trip copies nothing
//! and holds no write buffer. What the socket does not take at once waits here.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use gatehouse_pgwire::{MessageReader, buffers};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Above this, the relay stops reading from the side that feeds this outbox until it drains,
/// so a slow reader holds back its writer instead of growing memory.
const HIGH_WATER: usize = 256 * 1024;
/// Bytes left unwritten from this size on are queued as they are, not copied.
const SHARE_FROM: usize = 64 * 1024;

/// Bytes waiting to be written to one side: small runs copied together into `tail`, large
/// ones queued whole in `sealed`, in order.
pub(crate) struct Outbox {
    /// Written before `tail`: large runs, and the small ones that came before them.
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

    /// Appends whole frames, copied.
    pub(crate) fn push(&mut self, frames: &[u8]) {
        if frames.is_empty() {
            return;
        }
        // A batch is several frames (a result: description, rows, completion, ready): room
        // for them at once, rather than a reallocation and copy at each.
        if self.tail.capacity() == 0 {
            self.tail = buffers::take();
        }
        self.tail.extend_from_slice(frames);
    }

    /// Passes on the messages `run` of the reader's buffer, which ends where a message ends,
    /// and drops the reader's bytes up to its end (those before `run.start` were relayed
    /// already, one by one). When nothing waits here they are written straight from the
    /// reader's buffer, as much as the socket takes at once; the rest waits here. Returns the
    /// bytes written. The run is dropped from the reader whatever happens.
    pub(crate) fn relay<W: AsyncWrite + Unpin>(
        &mut self,
        reader: &mut MessageReader,
        run: Range<usize>,
        w: &mut W,
    ) -> io::Result<usize> {
        if self.wants_io() {
            // Behind what waits, and written with it as far as the socket takes it now.
            self.keep(reader, run);
            return self.drive(w).now_or_never().unwrap_or(Ok(0));
        }
        let written = match run.is_empty() {
            true => 0,
            false => match w.write(&reader.buffered_bytes()[run.clone()]).now_or_never() {
                Some(Ok(0)) => {
                    reader.consume(run.end);
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Some(Ok(n)) => {
                    self.unflushed = self.flushes;
                    n
                }
                // Bytes the socket cannot take are gone as well: not read again.
                Some(Err(error)) => {
                    reader.consume(run.end);
                    return Err(error);
                }
                None => 0,
            },
        };
        self.keep(reader, run.start + written..run.end);
        Ok(written)
    }

    /// Keeps the reader's bytes `rest` to write later, and drops the reader's bytes up to its
    /// end. A large rest is shared, not copied: a 200 MB row would otherwise be in memory
    /// twice, and copying it holds up every other session on the relay's thread.
    fn keep(&mut self, reader: &mut MessageReader, rest: Range<usize>) {
        if rest.len() < SHARE_FROM {
            self.push(&reader.buffered_bytes()[rest.clone()]);
            reader.consume(rest.end);
            return;
        }
        reader.consume(rest.start);
        if !self.tail.is_empty() {
            self.sealed_len += self.tail.len();
            self.sealed.push_back(self.tail.split().freeze());
        }
        self.sealed_len += rest.len();
        self.sealed.push_back(reader.split_to(rest.len()));
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

    /// A reader holding `frames`, read from memory.
    async fn reader_of(frames: &[&[u8]]) -> MessageReader {
        let wire: Vec<u8> = frames.concat();
        let mut reader = MessageReader::new();
        assert_eq!(reader.fill_message(&mut &wire[..]).await.unwrap(), gatehouse_pgwire::Filled::Message);
        while reader.buffered() < wire.len() {
            let rest = wire[reader.buffered()..].to_vec();
            reader.fill_message(&mut &rest[..]).await.unwrap();
        }
        reader
    }

    fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![tag];
        frame.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[tokio::test]
    async fn a_run_the_socket_takes_is_written_from_the_read_buffer() {
        let (mut w, mut r) = tokio::io::duplex(1 << 16);
        let (one, two) = (frame(b'D', b"row"), frame(b'Z', b"I"));
        let mut reader = reader_of(&[&one, &two]).await;
        let mut outbox = Outbox::new(false);
        let run = 0..one.len() + two.len();
        assert_eq!(outbox.relay(&mut reader, run.clone(), &mut w).unwrap(), run.len());
        assert_eq!((reader.buffered(), outbox.wants_io()), (0, false));
        assert_eq!(outbox.tail.capacity(), 0, "no write buffer was taken");
        let mut got = vec![0; run.len()];
        tokio::io::AsyncReadExt::read_exact(&mut r, &mut got).await.unwrap();
        assert_eq!(got, [one, two].concat());
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_waits_in_order_and_large_rests_are_shared() {
        let (mut w, mut r) = tokio::io::duplex(7);
        let mut outbox = Outbox::new(false);
        let large = frame(b'D', &vec![b'L'; SHARE_FROM + 16]);
        let mut reader = reader_of(&[&large]).await;
        let at = reader.buffered_bytes().as_ptr();
        assert_eq!(outbox.relay(&mut reader, 0..large.len(), &mut w).unwrap(), 7, "what the pipe takes");
        assert_eq!(outbox.sealed.len(), 1);
        assert_eq!(outbox.sealed[0].as_ptr(), at.wrapping_add(7), "the rest, not copied");
        assert_eq!(reader.buffered(), 0);

        let small = frame(b'Z', b"I");
        let mut reader = reader_of(&[&small]).await;
        assert_eq!(outbox.relay(&mut reader, 0..small.len(), &mut w).unwrap(), 0, "the pipe is full");
        assert_eq!((outbox.tail.len(), reader.buffered()), (small.len(), 0), "copied behind the large rest");

        let reader_task = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got).await.unwrap();
            got
        });
        assert_eq!(outbox.drain(&mut w).await.unwrap(), large.len() - 7 + small.len());
        drop(w);
        assert_eq!(reader_task.await.unwrap(), [large, small].concat());
        assert!(outbox.has_room() && !outbox.wants_io());
    }

    #[tokio::test]
    async fn a_run_after_messages_taken_one_by_one_keeps_its_place() {
        let (mut w, mut r) = tokio::io::duplex(1 << 16);
        let (login, rest) = (frame(b'K', b"12345678"), frame(b'Z', b"I"));
        let mut reader = reader_of(&[&login, &rest]).await;
        let mut outbox = Outbox::new(true);
        outbox.push(b"rewritten K");
        let run = login.len()..login.len() + rest.len();
        assert_eq!(outbox.relay(&mut reader, run, &mut w).unwrap(), 11 + rest.len(), "one write of both");
        assert!(outbox.wants_io(), "a writer that buffers is flushed after");
        assert_eq!(outbox.drain(&mut w).await.unwrap(), 0);
        drop(w);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got).await.unwrap();
        assert_eq!(got, [&b"rewritten K"[..], &rest].concat());
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
