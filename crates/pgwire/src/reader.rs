//! Framing: cutting messages out of one read buffer per connection.
//!
//! [`try_frame`] is the synchronous core and [`MessageReader`] drives it from an
//! [`AsyncRead`].
//! Frames are split off the buffer with `split_to(..).freeze()`, which does not copy.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{FrontendTag, Message, MessageRef, Startup, WireError, buffers, try_startup};

/// Default for [`MessageReader::max_message_len`]: PostgreSQL's own bound (`MaxAllocSize`, 1 GiB
/// less a byte), so that whatever the database takes or sends passes through a relay too.
/// The reader allocates as bytes arrive, never on a length field alone (a large message its
/// [`LargeMessageBudget`] takes whole is charged for its length, but still allocated as it
/// arrives).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 0x3fff_ffff;

/// The least a read asks for, so that many small messages arrive in one read.
const READ_CHUNK: usize = buffers::BUFFER_SIZE;
/// The most reserved ahead for one message, so that a length field alone cannot make us
/// allocate hundreds of megabytes before the bytes arrive; and the size above which a
/// message is large, and charged to the reader's [`LargeMessageBudget`].
const MAX_RESERVE: usize = 1024 * 1024;
/// The least of a large message that arrives before it is charged whole: see [`shown_real_at`].
const FIRST_GRANT: usize = 4 * MAX_RESERVE;

/// How much of a large message of `total` bytes arrives before it is charged whole: a quarter
/// of it, and at least [`FIRST_GRANT`]. Holding budget costs a client a quarter of it sent
/// (a length field alone takes none), while two messages that fit the budget together with
/// a quarter to spare both go through, one charged whole before the other grows past its
/// quarter.
fn shown_real_at(total: usize) -> usize {
    FIRST_GRANT.max(total / 4)
}

/// PostgreSQL's bound (`PQ_SMALL_MESSAGE_LIMIT`) on the frontend messages that are always
/// small: Close, Describe, Execute, Flush, Sync and Terminate.
pub const SMALL_MESSAGE_LIMIT: usize = 10_000;

fn is_small_frontend(tag: u8) -> bool {
    matches!(tag, b'C' | b'D' | b'E' | b'H' | b'S' | b'X')
}

/// The size of the frame at the front of `buf` (type byte included), once its header is
/// buffered. With `frontend`, the small messages are held to [`SMALL_MESSAGE_LIMIT`].
/// With `frontend`, a type byte no client sends is refused at once, as PostgreSQL does, so
/// that its length field is never waited on (nor its body buffered).
fn frame_len(buf: &[u8], max_len: usize, frontend: bool) -> Result<Option<usize>, WireError> {
    if frontend
        && let Some(&tag) = buf.first()
        && FrontendTag::from_u8(tag).is_none()
    {
        return Err(WireError::UnknownTag(tag));
    }
    let Some(&[tag, a, b, c, d]) = buf.first_chunk::<5>() else {
        return Ok(None);
    };
    let max_len = if frontend && is_small_frontend(tag) { max_len.min(SMALL_MESSAGE_LIMIT) } else { max_len };
    let len = i32::from_be_bytes([a, b, c, d]);
    // Checked while still signed: a negative length widened to usize would be enormous.
    let len = match usize::try_from(len) {
        Ok(len) if len >= 4 => len,
        _ => return Err(WireError::BadLength { len }),
    };
    if len > max_len {
        return Err(WireError::TooLarge { len, max: max_len });
    }
    Ok(Some(len + 1))
}

/// Splits one complete message off the front of `buf`, or returns `Ok(None)` if more bytes are
/// needed.
///
/// `max_len` bounds the length field, which counts itself and the payload but not the type
/// byte.
/// The length is checked as soon as the five header bytes are buffered, so a bad or oversized
/// frame is rejected without waiting for its body.
/// Type bytes are not checked; see [`Message::frontend_tag`] and [`Message::backend_tag`].
///
/// # Errors
///
/// [`WireError::BadLength`] for a length field below 4, [`WireError::TooLarge`] above
/// `max_len`. `buf` is left as it was.
pub fn try_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Message>, WireError> {
    frame(buf, max_len, false)
}

fn frame(buf: &mut BytesMut, max_len: usize, frontend: bool) -> Result<Option<Message>, WireError> {
    match frame_len(buf, max_len, frontend)? {
        Some(total) if buf.len() >= total => Ok(Some(Message::from_encoded(buf.split_to(total).freeze()))),
        _ => Ok(None),
    }
}

/// Memory that large messages (over 1 MiB) may take, together, while they arrive on the
/// readers that share it. A database takes a 1 GiB statement in a process of its own; a relay
/// that buffers such messages for all its connections in one process needs a bound, or a few
/// clients could take all its memory and end every session.
///
/// A large message is charged for the buffer it has until a quarter of it (at least 4 MiB) has
/// arrived, and then for its whole length at once; its buffer still grows only as its bytes
/// arrive. So a length field alone takes nothing, holding budget costs a client a quarter of
/// it sent, and of two messages that do not fit together the first to show it is real gets
/// all it needs while the other is refused having held a quarter of its length at most,
/// rather than both growing until neither can go on. A message whose whole length does not
/// fit in what is left is refused as soon as that is seen, from its header on.
#[derive(Debug)]
pub struct LargeMessageBudget {
    left: AtomicUsize,
}

impl LargeMessageBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Self { left: AtomicUsize::new(bytes) })
    }

    fn take(&self, bytes: usize) -> bool {
        self.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(bytes)).is_ok()
    }

    fn give(&self, bytes: usize) {
        self.left.fetch_add(bytes, Ordering::AcqRel);
    }

    fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }
}

/// What [`MessageReader::fill_message`] brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// The message at the front is whole.
    Message,
    /// The stream ended cleanly between two messages.
    Closed,
    /// More of a message that holds some of the large-message budget, not all of it.
    Part,
}

/// What [`MessageReader::fill_front`] read to.
enum Front {
    Whole(usize),
    Closed,
    Part,
}

/// The read side of one connection: one buffer, from which messages are split off.
pub struct MessageReader {
    buf: BytesMut,
    max_len: usize,
    /// Reading a client: small messages have PostgreSQL's small limit.
    frontend: bool,
    budget: Option<Arc<LargeMessageBudget>>,
    /// What the large message at the front of `buf` took from `budget`: its buffer's size, or
    /// its whole length once [`shown_real_at`] of it has arrived. Never more than its length.
    taken: usize,
}

impl Drop for MessageReader {
    fn drop(&mut self) {
        self.give_back();
        buffers::give(&mut self.buf);
    }
}

impl Default for MessageReader {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageReader {
    /// A reader with [`DEFAULT_MAX_MESSAGE_LEN`].
    pub fn new() -> Self {
        Self::with_max_message_len(DEFAULT_MAX_MESSAGE_LEN)
    }

    /// A reader that rejects length fields above `max_len`.
    pub fn with_max_message_len(max_len: usize) -> Self {
        Self { buf: BytesMut::new(), max_len, frontend: false, budget: None, taken: 0 }
    }

    /// Charges each message over 1 MiB to `budget` while it arrives (see
    /// [`LargeMessageBudget`]) and gives the charge back once the message is taken (or the
    /// reader dropped); one that does not fit is [`WireError::OverBudget`].
    pub fn with_budget(mut self, budget: Arc<LargeMessageBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Whether the message arriving at the front holds some of the budget: a client that stops
    /// sending it holds that from every other connection.
    pub fn holds_budget(&self) -> bool {
        self.taken > 0
    }

    fn give_back(&mut self) {
        if self.taken > 0
            && let Some(budget) = &self.budget
        {
            budget.give(std::mem::take(&mut self.taken));
        }
    }

    /// Splits a complete message off the front, giving back what it took from the budget.
    fn split_front(&mut self, total: usize) -> Message {
        Message::from_encoded(self.split_to(total))
    }

    /// Reads a client, as PostgreSQL does: the messages that are always small (Sync,
    /// Execute, …) are held to [`SMALL_MESSAGE_LIMIT`], and a type byte no client sends is
    /// [`WireError::UnknownTag`]: a huge length there cannot be right, and is refused at once
    /// instead of waited on.
    pub fn frontend(mut self) -> Self {
        self.frontend = true;
        self
    }

    /// The largest length field accepted.
    pub fn max_message_len(&self) -> usize {
        self.max_len
    }

    /// Changes the limit, for example to a few kilobytes while the client is unauthenticated.
    pub fn set_max_message_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Bytes read but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The type byte of the message being read, once it arrived.
    pub fn pending_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Gives the buffer's memory back when nothing is buffered, so that a connection waiting
    /// for its peer holds no read buffer; the next read takes one from [`buffers`].
    pub fn release_if_empty(&mut self) {
        buffers::give(&mut self.buf);
    }

    /// Returns the next message, reading from `r` only if no complete message is buffered.
    ///
    /// Returns `Ok(None)` when the stream ends cleanly between two messages.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: all state lives in the buffer, and the only await is
    /// [`AsyncReadExt::read_buf`], which is cancel-safe. Dropping the future inside
    /// `tokio::select!` loses no bytes; the next call continues where this one stopped.
    ///
    /// # Errors
    ///
    /// [`WireError::UnexpectedEof`] if the stream ends inside a message, the framing errors of
    /// [`try_frame`], and [`WireError::Io`].
    pub async fn read_message<R>(&mut self, r: &mut R) -> Result<Option<Message>, WireError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        loop {
            match self.fill_front(r, false).await? {
                Front::Whole(total) => return Ok(Some(self.split_front(total))),
                Front::Closed => return Ok(None),
                Front::Part => {}
            }
        }
    }

    /// Reads from `r` until the message at the front is whole, without taking it: the relay
    /// looks at the buffered messages in place with [`message_at`](Self::message_at) and
    /// passes them on as one run of bytes, with [`consume`](Self::consume) or
    /// [`split_to`](Self::split_to) once they are relayed. A message that holds some of the
    /// reader's [`LargeMessageBudget`] returns [`Filled::Part`] after each read that brought
    /// more of it, so that the caller can tell a client that stopped sending one.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe, as [`read_message`](Self::read_message).
    ///
    /// # Errors
    ///
    /// As [`read_message`](Self::read_message).
    pub async fn fill_message<R>(&mut self, r: &mut R) -> Result<Filled, WireError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        Ok(match self.fill_front(r, true).await? {
            Front::Whole(_) => Filled::Message,
            Front::Closed => Filled::Closed,
            Front::Part => Filled::Part,
        })
    }

    /// Reads until the front message is whole, or, if `parts`, until a read brought more of a
    /// message that holds budget.
    async fn fill_front<R>(&mut self, r: &mut R, parts: bool) -> Result<Front, WireError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let mut read_part = false;
        loop {
            let room = match frame_len(&self.buf, self.max_len, self.frontend)? {
                Some(total) if self.buf.len() >= total => return Ok(Front::Whole(total)),
                Some(_) if read_part => return Ok(Front::Part),
                // Charged, with room made for its next bytes: reading asks for no more.
                Some(total) if total > MAX_RESERVE && self.budget.is_some() => {
                    self.make_room(total)?;
                    read_part = parts;
                    1
                }
                Some(total) => (total - self.buf.len()).clamp(READ_CHUNK, MAX_RESERVE),
                None => READ_CHUNK,
            };
            if self.fill(r, room).await? == 0 {
                return if self.buf.is_empty() { Ok(Front::Closed) } else { Err(WireError::UnexpectedEof) };
            }
        }
    }

    /// Charges the large message at the front (`total` bytes, not all buffered) to the budget,
    /// and grows its buffer if it is full: see [`LargeMessageBudget`].
    fn make_room(&mut self, total: usize) -> Result<(), WireError> {
        let Some(budget) = &self.budget else { return Ok(()) };
        let len = self.buf.len();
        // Refused as soon as it cannot fit whole, rather than once it holds a share that a
        // message that can fit needs.
        if self.taken < total && budget.left() < total - self.taken {
            return Err(WireError::OverBudget { len: total });
        }
        // Twice what arrived, so that a message is copied a few times at most; never more
        // than its length, nor, before it has shown it is real, more than that showing takes.
        let proof = shown_real_at(total);
        let shown = len >= proof;
        let grow = (self.buf.capacity() == len).then(|| {
            let doubled = len.saturating_mul(2).max(READ_CHUNK);
            if shown { doubled.min(total) } else { doubled.min(total).min(proof) }
        });
        let charge = if shown { total } else { grow.unwrap_or(0) };
        if charge > self.taken {
            if !budget.take(charge - self.taken) {
                return Err(WireError::OverBudget { len: total });
            }
            self.taken = charge;
        }
        if let Some(size) = grow {
            // Exactly that: `reserve` would at least double the buffer, and its last step (to
            // the message's size) would hold twice what is charged.
            let mut grown = BytesMut::with_capacity(size);
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
        }
        Ok(())
    }

    /// The message that starts `offset` bytes into the buffer, if all of it is buffered.
    /// `offset` is 0 or the end of a message this returned.
    ///
    /// # Errors
    ///
    /// The framing errors of [`try_frame`], for that message.
    pub fn message_at(&self, offset: usize) -> Result<Option<MessageRef<'_>>, WireError> {
        let rest = &self.buf[offset..];
        match frame_len(rest, self.max_len, self.frontend)? {
            Some(total) if rest.len() >= total => Ok(Some(MessageRef::from_encoded(&rest[..total]))),
            _ => Ok(None),
        }
    }

    /// The bytes buffered: whole messages, then the start of the next one.
    pub fn buffered_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Drops the first `n` buffered bytes, which the caller has relayed: whole messages, or
    /// the start of a run of them whose rest it then takes with [`split_to`](Self::split_to).
    /// The large message at the front, if any, gives back what it took from the budget.
    ///
    /// # Panics
    ///
    /// If `n` is more than [`buffered`](Self::buffered).
    pub fn consume(&mut self, n: usize) {
        if n > 0 {
            self.give_back();
            self.buf.advance(n);
        }
    }

    /// Splits off the first `n` buffered bytes without copying them; as
    /// [`consume`](Self::consume), for bytes the caller relays.
    ///
    /// # Panics
    ///
    /// If `n` is more than [`buffered`](Self::buffered).
    pub fn split_to(&mut self, n: usize) -> Bytes {
        self.give_back();
        self.buf.split_to(n).freeze()
    }

    /// Reads the first packet of a connection, which has no type byte.
    ///
    /// Returns `Ok(None)` if the stream ends before its first byte, as load-balancer health
    /// checks do.
    /// Bytes after the packet stay buffered for [`read_message`](Self::read_message).
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe, for the same reasons as [`read_message`](Self::read_message).
    ///
    /// # Errors
    ///
    /// The errors of [`try_startup`], [`WireError::UnexpectedEof`] and [`WireError::Io`].
    /// After an SSLRequest or GSSENCRequest the client must wait for the one-byte answer, so
    /// bytes already buffered behind it are [`WireError::Malformed`]: they were sent before
    /// encryption and could have been injected (CVE-2021-23214).
    pub async fn read_startup<R>(&mut self, r: &mut R) -> Result<Option<Startup>, WireError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        loop {
            if let Some(startup) = try_startup(&mut self.buf)? {
                if matches!(startup, Startup::Ssl | Startup::GssEnc) && !self.buf.is_empty() {
                    return Err(WireError::DataAfterEncryptionRequest { gss: startup == Startup::GssEnc });
                }
                return Ok(Some(startup));
            }
            if self.fill(r, READ_CHUNK).await? == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(WireError::UnexpectedEof) };
            }
        }
    }

    /// Reads once, with room for at least `room` bytes.
    async fn fill<R>(&mut self, r: &mut R, room: usize) -> Result<usize, WireError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        // An empty buffer is given back first: one that grew for a large message is freed
        // rather than pinned for the life of the connection.
        buffers::give(&mut self.buf);
        if self.buf.capacity() == 0 {
            self.buf = buffers::take();
        }
        // Progressive reservations still grow the buffer geometrically, so a large message
        // costs O(n) copies in all. A large message charged to a budget has its room already
        // (`room` is 1): asking for more would reallocate past what was charged.
        self.buf.reserve(room);
        Ok(r.read_buf(&mut self.buf).await?)
    }
}

/// Shows sizes only: the buffer holds message contents.
impl fmt::Debug for MessageReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageReader").field("buffered", &self.buf.len()).field("max_len", &self.max_len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_MESSAGE_LEN;

    fn buf(bytes: &[u8]) -> BytesMut {
        BytesMut::from(bytes)
    }

    #[test]
    fn frames_one_message() {
        let mut b = buf(b"Q\0\0\0\x0dSELECT 1\0");
        let m = try_frame(&mut b, MAX).unwrap().unwrap();
        assert_eq!(m.tag(), b'Q');
        assert_eq!(m.payload(), b"SELECT 1\0");
        assert_eq!(&m.frame()[..], b"Q\0\0\0\x0dSELECT 1\0");
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn an_emptied_reader_gives_its_buffer_back() {
        let mut reader = MessageReader::new();
        let mut input: &[u8] = b"Q\0\0\0\x0dSELECT 1\0Q\0\0\0\x05";
        reader.read_message(&mut input).await.unwrap().unwrap();
        reader.release_if_empty();
        assert!(reader.buf.capacity() > 0, "a partial message stays buffered");
        let mut rest: &[u8] = b"\0";
        assert_eq!(reader.read_message(&mut rest).await.unwrap().unwrap().tag(), b'Q');
        reader.release_if_empty();
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn a_granted_large_message_is_allocated_once_at_its_size() {
        let total = 3 * MAX_RESERVE;
        let mut wire = vec![b'D'];
        wire.extend_from_slice(&u32::try_from(total - 1).unwrap().to_be_bytes());
        wire.resize(total - 1, b'x');
        let budget = LargeMessageBudget::new(4 * MAX_RESERVE);
        let mut reader = MessageReader::new().with_budget(Arc::clone(&budget));
        // All but its last byte: the reader holds what came, with room for that byte only.
        let mut input = &wire[..];
        assert!(matches!(reader.read_message(&mut input).await, Err(WireError::UnexpectedEof)));
        assert_eq!(reader.buffered(), total - 1);
        assert!(reader.buf.capacity() < total + READ_CHUNK, "grew to {}", reader.buf.capacity());
        drop(reader);
        assert!(budget.take(4 * MAX_RESERVE), "the budget is whole again");
    }

    #[tokio::test]
    async fn a_large_message_takes_the_budget_as_it_arrives_not_as_it_is_announced() {
        let budget = LargeMessageBudget::new(64 * MAX_RESERVE);
        // Announces 60 MiB and sends a few bytes of it.
        let mut stalled = MessageReader::new().with_budget(Arc::clone(&budget));
        let mut announced = vec![b'Q'];
        announced.extend_from_slice(&u32::try_from(60 * MAX_RESERVE).unwrap().to_be_bytes());
        announced.extend_from_slice(b"select ");
        let mut input = &announced[..];
        assert!(matches!(stalled.read_message(&mut input).await, Err(WireError::UnexpectedEof)));
        assert_eq!(stalled.taken, 0, "a length field alone is charged nothing");
        // Another reader's 8 MiB message fits beside it.
        let total = 8 * MAX_RESERVE;
        let mut wire = vec![b'Q'];
        wire.extend_from_slice(&u32::try_from(total - 1).unwrap().to_be_bytes());
        wire.resize(total, b'x');
        let mut other = MessageReader::new().with_budget(Arc::clone(&budget));
        let mut input = &wire[..];
        assert_eq!(other.read_message(&mut input).await.unwrap().unwrap().len(), total);
        // A buffer holds what was charged for it, not the doubling `reserve` would make of it:
        // 5 MiB of a 6 MiB message has shown it is real and is charged 6 MiB, and holds no more.
        let total = 6 * MAX_RESERVE;
        let mut wire = vec![b'Q'];
        wire.extend_from_slice(&u32::try_from(total - 1).unwrap().to_be_bytes());
        wire.resize(5 * MAX_RESERVE, b'x');
        let mut partial = MessageReader::new().with_budget(Arc::clone(&budget));
        let mut input = &wire[..];
        assert!(matches!(partial.read_message(&mut input).await, Err(WireError::UnexpectedEof)));
        assert_eq!(partial.taken, total);
        assert!(partial.buf.capacity() < total + READ_CHUNK, "grew to {}", partial.buf.capacity());
        drop((stalled, other, partial));
        assert!(budget.take(64 * MAX_RESERVE), "the budget is whole again");
    }

    /// The first `sent` bytes of a `Q` message of `total` bytes, type byte included.
    fn large_query(total: usize, sent: usize) -> Vec<u8> {
        let mut wire = vec![b'Q'];
        wire.extend_from_slice(&u32::try_from(total - 1).unwrap().to_be_bytes());
        wire.resize(sent, b'x');
        wire
    }

    #[tokio::test]
    async fn of_two_large_messages_that_do_not_fit_together_the_first_to_arrive_wins() {
        // A 32 MiB budget and two 20 MiB messages arriving 1 MiB at a time each, in turns.
        // Charged as they arrived (4, 8, 16 MiB each) they would both hold 16 MiB and both be
        // refused at their next step; the first to show it is real is charged whole instead.
        const MIB: usize = MAX_RESERVE;
        let (budget_size, total) = (32 * MIB, 20 * MIB);
        let budget = LargeMessageBudget::new(budget_size);
        let wire = large_query(total, total);
        let mut first = MessageReader::new().with_budget(Arc::clone(&budget));
        let mut second = MessageReader::new().with_budget(Arc::clone(&budget));
        let mut refused = None;
        for (i, chunk) in wire.chunks(MIB).enumerate() {
            let mut input = chunk;
            match first.read_message(&mut input).await {
                Err(WireError::UnexpectedEof) => {}
                Ok(Some(message)) => {
                    assert_eq!((i, message.len(), message.payload().len()), (19, total, total - 5));
                    assert_eq!(first.taken, 0, "taking the message gives its charge back");
                }
                other => panic!("chunk {i}: {other:?}"),
            }
            assert!(first.taken <= total && first.buf.capacity() <= total);
            if refused.is_none() {
                let mut input = chunk;
                match second.read_message(&mut input).await {
                    Err(WireError::UnexpectedEof) => {}
                    Err(WireError::OverBudget { len }) => {
                        assert_eq!(len, total);
                        refused = Some((i, second.buffered(), second.taken));
                    }
                    other => panic!("chunk {i}: {other:?}"),
                }
            }
        }
        // The first is charged whole once a quarter of it (5 MiB) is in; the second, holding
        // 4 MiB in a buffer of its quarter, is refused on its next read.
        assert_eq!(refused, Some((4, 4 * MIB, total / 4)));
        assert_eq!(budget.left(), budget_size - total / 4, "the refused one holds its share until dropped");
        drop(second);
        assert_eq!(budget.left(), budget_size, "the budget is whole again");
    }

    #[tokio::test]
    async fn a_stalled_large_message_is_charged_for_what_arrived_only() {
        const MIB: usize = MAX_RESERVE;
        let budget = LargeMessageBudget::new(64 * MIB);
        // A thousand headers announcing 60 MiB each hold none of the budget, and no more than
        // a read buffer each.
        let mut stalled = Vec::new();
        for _ in 0..1000 {
            let mut reader = MessageReader::new().with_budget(Arc::clone(&budget));
            let header = large_query(60 * MIB, 5);
            let mut input = &header[..];
            assert!(matches!(reader.read_message(&mut input).await, Err(WireError::UnexpectedEof)));
            assert_eq!(reader.taken, 0);
            assert!(reader.buf.capacity() <= READ_CHUNK, "holds {}", reader.buf.capacity());
            stalled.push(reader);
        }
        assert_eq!(budget.left(), 64 * MIB);
        // Nor does one that stalls after 100 kB: it holds a buffer twice what arrived, at most.
        let mut partial = MessageReader::new().with_budget(Arc::clone(&budget));
        let wire = large_query(60 * MIB, 100_000);
        let mut input = &wire[..];
        assert!(matches!(partial.read_message(&mut input).await, Err(WireError::UnexpectedEof)));
        assert!(partial.taken <= 200_000 && partial.buf.capacity() <= partial.taken, "{}", partial.taken);
        // So a 60 MiB message fits beside them all.
        let wire = large_query(60 * MIB, 60 * MIB);
        let mut other = MessageReader::new().with_budget(Arc::clone(&budget));
        let mut input = &wire[..];
        assert_eq!(other.read_message(&mut input).await.unwrap().unwrap().len(), 60 * MIB);
        // One that stalls after 4 MiB has not shown it is real (a quarter of 60 MiB): it is
        // charged its buffer, not the 60 MiB it announced.
        let mut holder = MessageReader::new().with_budget(Arc::clone(&budget));
        let wire = large_query(60 * MIB, 4 * MIB);
        let mut input = &wire[..];
        assert!(matches!(holder.read_message(&mut input).await, Err(WireError::UnexpectedEof)));
        assert!(holder.taken <= 8 * MIB, "{}", holder.taken);
        // One whose whole length does not fit in what is left is refused on its header.
        let mut too_large = MessageReader::new().with_budget(Arc::clone(&budget));
        let header = large_query(64 * MIB, 5);
        let mut input = &header[..];
        let error = too_large.read_message(&mut input).await.unwrap_err();
        assert!(matches!(error, WireError::OverBudget { len } if len == 64 * MIB), "{error:?}");
        drop((stalled, partial, holder, too_large));
        assert_eq!(budget.left(), 64 * MIB);
    }

    #[test]
    fn frames_several_messages_in_one_buffer() {
        let mut b = buf(b"S\0\0\0\x04H\0\0\0\x04X\0\0\0\x04Q\0\0");
        let tags: Vec<u8> = std::iter::from_fn(|| try_frame(&mut b, MAX).unwrap()).map(|m| m.tag()).collect();
        assert_eq!(tags, b"SHX");
        assert_eq!(&b[..], b"Q\0\0");
    }

    #[tokio::test]
    async fn a_client_sync_as_long_as_a_row_is_refused_at_once() {
        let mut huge_sync: &[u8] = b"S\x02\xfa\xf0\x80";
        let error = MessageReader::new().frontend().read_message(&mut huge_sync).await.unwrap_err();
        assert!(matches!(error, WireError::TooLarge { len: 50_000_000, max: SMALL_MESSAGE_LIMIT }), "{error:?}");
        // From the server, `S` is ParameterStatus, and a large Bind is fine from a client.
        let mut b = buf(b"S\x00\x00\x27\x15");
        assert!(try_frame(&mut b, MAX).unwrap().is_none(), "waits for the body");
        let mut bind = buf(b"B\x00\x01\x00\x00");
        assert!(frame(&mut bind, MAX, true).unwrap().is_none(), "waits for the body");
    }

    #[tokio::test]
    async fn a_type_no_client_sends_is_refused_on_its_first_byte() {
        // `\x01` with a 1 GiB length, and an SSLRequest sent after the startup.
        for wire in [&b"\x01"[..], b"\0\0\0\x08\x04\xd2\x16\x2f"] {
            let mut input = wire;
            let error = MessageReader::new().frontend().read_message(&mut input).await.unwrap_err();
            assert!(matches!(error, WireError::UnknownTag(t) if t == wire[0]), "{error:?}");
        }
        // From the server, any type byte is framed (and relayed) as it is.
        assert_eq!(try_frame(&mut buf(b"\x01\0\0\0\x04"), MAX).unwrap().unwrap().tag(), 1);
    }

    #[test]
    fn partial_frame_fed_byte_by_byte() {
        let wire = b"Q\0\0\0\x0dSELECT 1\0";
        let mut b = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            assert!(try_frame(&mut b, MAX).unwrap().is_none(), "complete after {i} bytes");
            b.extend_from_slice(&[*byte]);
        }
        assert_eq!(&try_frame(&mut b, MAX).unwrap().unwrap().frame()[..], wire);
    }

    #[test]
    fn bad_lengths_are_rejected_at_the_header() {
        for (header, expected) in
            [(&b"Q\0\0\0\0"[..], 0), (b"Q\0\0\0\x03", 3), (b"Q\xff\xff\xff\xff", -1), (b"Q\x80\0\0\0", i32::MIN)]
        {
            match try_frame(&mut buf(header), MAX) {
                Err(WireError::BadLength { len }) => assert_eq!(len, expected),
                other => panic!("{header:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_lengths_are_rejected_at_the_header() {
        let mut b = buf(b"d\x7f\xff\xff\xff");
        assert!(matches!(try_frame(&mut b, MAX), Err(WireError::TooLarge { len: 0x7fff_ffff, max: MAX })));
        let mut b = buf(b"d\0\0\0\x09");
        assert!(matches!(try_frame(&mut b, 8), Err(WireError::TooLarge { len: 9, max: 8 })));
        assert!(try_frame(&mut b, 9).unwrap().is_none());
    }

    #[tokio::test]
    async fn reads_until_clean_eof() {
        let mut r: &[u8] = b"S\0\0\0\x04X\0\0\0\x04";
        let mut reader = MessageReader::new();
        assert_eq!(reader.read_message(&mut r).await.unwrap().unwrap().tag(), b'S');
        assert_eq!(reader.buffered(), 5);
        assert_eq!(reader.read_message(&mut r).await.unwrap().unwrap().tag(), b'X', "already buffered");
        assert!(reader.read_message(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn eof_mid_frame_is_an_error() {
        for wire in [&b"Q"[..], b"Q\0\0\0\x0d", b"Q\0\0\0\x0dSELECT"] {
            let mut r = wire;
            let result = MessageReader::new().read_message(&mut r).await;
            assert!(matches!(result, Err(WireError::UnexpectedEof)), "{wire:?}");
        }
    }

    #[tokio::test]
    async fn bad_length_does_not_wait_for_more_bytes() {
        // The writer stays open, so waiting for more bytes would hang the test.
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"Q\xff\xff\xff\xfe").await.unwrap();
        let result = MessageReader::new().read_message(&mut server).await;
        assert!(matches!(result, Err(WireError::BadLength { len: -2 })));
    }

    #[tokio::test]
    async fn reads_a_message_larger_than_one_reservation() {
        let body = vec![7u8; 3 * MAX_RESERVE];
        let mut wire = vec![b'd'];
        wire.extend_from_slice(&(i32::try_from(body.len()).unwrap() + 4).to_be_bytes());
        wire.extend_from_slice(&body);
        let mut r = &wire[..];
        let m = MessageReader::new().read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(m.payload(), &body[..]);
    }

    #[tokio::test]
    async fn startup_then_messages_share_the_buffer() {
        let mut wire = b"\0\0\0\x08\x04\xd2\x16\x30".to_vec(); // GSSENCRequest
        let mut r = &wire[..];
        let mut reader = MessageReader::new();
        assert_eq!(reader.read_startup(&mut r).await.unwrap(), Some(Startup::GssEnc));

        wire = crate::StartupMessage::new(crate::PROTOCOL_3_0, vec![("user".into(), "u".into())])
            .unwrap()
            .frame()
            .to_vec();
        wire.extend_from_slice(b"p\0\0\0\x06x\0");
        let mut r = &wire[..];
        let Some(Startup::Startup(msg)) = reader.read_startup(&mut r).await.unwrap() else {
            panic!("expected a startup message");
        };
        assert_eq!(msg.user(), Some("u"));
        assert_eq!(reader.read_message(&mut r).await.unwrap().unwrap().tag(), b'p');
    }

    #[tokio::test]
    async fn data_behind_ssl_request_is_rejected() {
        let mut r: &[u8] = b"\0\0\0\x08\x04\xd2\x16\x2fQ\0\0\0\x04";
        let result = MessageReader::new().read_startup(&mut r).await;
        assert!(matches!(result, Err(WireError::DataAfterEncryptionRequest { gss: false })), "{result:?}");
        let mut r: &[u8] = b"\0\0\0\x08\x04\xd2\x16\x30Q\0\0\0\x04";
        let error = MessageReader::new().read_startup(&mut r).await.unwrap_err();
        assert_eq!(error.to_string(), "received unencrypted data after GSSAPI encryption request");
    }

    #[tokio::test]
    async fn startup_eof() {
        let mut r: &[u8] = b"";
        assert!(MessageReader::new().read_startup(&mut r).await.unwrap().is_none());
        let mut r: &[u8] = b"\0\0\0\x08\x04\xd2";
        let result = MessageReader::new().read_startup(&mut r).await;
        assert!(matches!(result, Err(WireError::UnexpectedEof)));
    }
}
