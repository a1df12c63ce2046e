//! One framed message, as it travels on the wire.
//!
//! The relay moves messages byte for byte and inspects only a few, so the whole frame is kept
//! as it came and typed views are built on demand with [`Message::decode`]. A [`Message`] owns
//! its frame as [`Bytes`]; a [`MessageRef`] borrows one from a reader's buffer, where the relay
//! looks at each message before it passes the bytes on.

use std::fmt;

use bytes::Bytes;

use crate::{BackendTag, Decode, FrontendTag, WireError};

/// A complete frame: type byte, Int32 length, payload.
///
/// Invariant: the frame is at least 5 bytes and its length field equals `frame.len() - 1`.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    frame: Bytes,
}

impl Message {
    /// Bytes before the payload: the type byte and the length.
    pub const HEADER_LEN: usize = 5;

    /// Wraps a frame, checking that its length field matches its size.
    ///
    /// # Errors
    ///
    /// [`WireError::Malformed`] if the frame is shorter than a header or its length field does
    /// not match.
    pub fn from_frame(frame: Bytes) -> Result<Self, WireError> {
        check_frame(&frame)?;
        Ok(Self { frame })
    }

    /// For frames this crate built or framed itself.
    pub(crate) fn from_encoded(frame: Bytes) -> Self {
        debug_assert!(check_frame(&frame).is_ok());
        Self { frame }
    }

    /// The type byte.
    pub fn tag(&self) -> u8 {
        self.frame[0]
    }

    /// The type byte looked up in the client's table.
    ///
    /// # Errors
    ///
    /// [`WireError::UnknownTag`] if no frontend message has this byte.
    pub fn frontend_tag(&self) -> Result<FrontendTag, WireError> {
        FrontendTag::from_u8(self.tag()).ok_or(WireError::UnknownTag(self.tag()))
    }

    /// The type byte looked up in the server's table.
    ///
    /// # Errors
    ///
    /// [`WireError::UnknownTag`] if no backend message has this byte.
    pub fn backend_tag(&self) -> Result<BackendTag, WireError> {
        BackendTag::from_u8(self.tag()).ok_or(WireError::UnknownTag(self.tag()))
    }

    /// The whole frame, to write on unchanged.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload after the type byte and length.
    pub fn payload(&self) -> &[u8] {
        &self.frame[Self::HEADER_LEN..]
    }

    /// The payload as [`Bytes`] sharing the frame's allocation.
    pub fn payload_bytes(&self) -> Bytes {
        self.frame.slice(Self::HEADER_LEN..)
    }

    /// Size of the whole frame in bytes.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Always false: a frame has at least a header. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Builds the typed view `T`.
    ///
    /// # Errors
    ///
    /// [`WireError::UnexpectedTag`] if this message is not a `T` (the caller still has to know
    /// the direction, since type bytes collide), otherwise whatever `T`'s decoder reports.
    pub fn decode<T: Decode>(&self) -> Result<T, WireError> {
        expect_tag::<T>(self.tag())?;
        T::decode_body(self.payload_bytes())
    }

    /// The message borrowed, as a reader's [`MessageRef`]s are.
    pub fn as_message_ref(&self) -> MessageRef<'_> {
        MessageRef { frame: &self.frame }
    }
}

/// The invariant of [`Message`] and [`MessageRef`]: a header, and a length field that matches.
fn check_frame(frame: &[u8]) -> Result<(), WireError> {
    let Some(&[_, a, b, c, d]) = frame.first_chunk::<5>() else {
        return Err(WireError::Malformed("frame shorter than its header"));
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    if usize::try_from(len).ok() != Some(frame.len() - 1) {
        return Err(WireError::Malformed("length field does not match frame size"));
    }
    Ok(())
}

fn expect_tag<T: Decode>(tag: u8) -> Result<(), WireError> {
    match tag == T::TAG {
        true => Ok(()),
        false => Err(WireError::UnexpectedTag { expected: T::TAG, actual: tag }),
    }
}

/// A complete frame borrowed from the buffer it was read into
/// ([`MessageReader::message_at`](crate::MessageReader::message_at)).
///
/// Invariant: as for [`Message`], the frame is at least 5 bytes and its length field equals
/// `frame.len() - 1`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    frame: &'a [u8],
}

impl<'a> MessageRef<'a> {
    /// For frames this crate framed itself.
    pub(crate) fn from_encoded(frame: &'a [u8]) -> Self {
        debug_assert!(check_frame(frame).is_ok());
        Self { frame }
    }

    /// The type byte.
    pub fn tag(self) -> u8 {
        self.frame[0]
    }

    /// The whole frame.
    pub fn frame(self) -> &'a [u8] {
        self.frame
    }

    /// The payload after the type byte and length.
    pub fn payload(self) -> &'a [u8] {
        &self.frame[Message::HEADER_LEN..]
    }

    /// Size of the whole frame in bytes.
    pub fn len(self) -> usize {
        self.frame.len()
    }

    /// Always false: a frame has at least a header. Present because `len` is.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Builds the typed view `T` from a copy of the payload: for the few messages whose
    /// fields are needed, not for every one relayed, and not for a large one.
    ///
    /// # Errors
    ///
    /// As [`Message::decode`].
    pub fn decode<T: Decode>(self) -> Result<T, WireError> {
        expect_tag::<T>(self.tag())?;
        T::decode_body(Bytes::copy_from_slice(self.payload()))
    }

    /// A copy that owns its frame.
    pub fn to_message(self) -> Message {
        Message { frame: Bytes::copy_from_slice(self.frame) }
    }
}

/// Shows type and size only, as [`Message`]'s does.
impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRef").field("tag", &char::from(self.tag())).field("len", &self.len()).finish()
    }
}

/// Shows type and size only: payloads hold statement text, row data and passwords.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("tag", &char::from(self.tag())).field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::{Query, Sync};

    #[test]
    fn from_frame_checks_the_header() {
        let m = Message::from_frame(Bytes::from_static(b"S\0\0\0\x04")).unwrap();
        assert_eq!(m.tag(), b'S');
        assert_eq!(m.payload(), b"");
        assert_eq!(m.frontend_tag().unwrap(), FrontendTag::Sync);
        assert_eq!(m.backend_tag().unwrap(), BackendTag::ParameterStatus);
        assert!(Message::from_frame(Bytes::from_static(b"S\0\0\0\x05")).is_err());
        assert!(Message::from_frame(Bytes::from_static(b"S\0\0\0")).is_err());
        assert!(Message::from_frame(Bytes::from_static(b"S\xff\xff\xff\xff")).is_err());
    }

    #[test]
    fn decode_checks_the_tag() {
        let m = Message::from_frame(Bytes::from_static(b"Q\0\0\0\x05\0")).unwrap();
        assert_eq!(m.decode::<Query>().unwrap().sql, "");
        assert!(matches!(m.decode::<Sync>(), Err(WireError::UnexpectedTag { expected: b'S', actual: b'Q' })));
    }

    #[test]
    fn debug_hides_the_payload() {
        let m = Message::from_frame(Bytes::from_static(b"p\0\0\0\x0bsecret\0")).unwrap();
        let shown = format!("{m:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("'p'"), "{shown}");
    }
}
