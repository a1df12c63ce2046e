//! The two codec traits: typed views decode a message body, and messages the proxy sends
//! itself encode one.
//!
//! As in sqlx, a message handles only its body; [`Encode::encode`] adds the type byte and the
//! length, and [`Message::decode`] checks the type byte before [`Decode::decode_body`] runs.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Message, WireError};

/// A typed view of one message type, built from a [`Message`] with [`Message::decode`].
pub trait Decode: Sized {
    /// The type byte, taken from [`FrontendTag`](crate::FrontendTag) or
    /// [`BackendTag`](crate::BackendTag).
    const TAG: u8;

    /// Parses a message body (the payload after type byte and length).
    ///
    /// # Errors
    ///
    /// [`WireError::Malformed`] or [`WireError::InvalidUtf8`] when the body does not have the
    /// structure of this message type; never panics, whatever the bytes.
    fn decode_body(body: Bytes) -> Result<Self, WireError>;
}

/// A message the proxy can send itself.
pub trait Encode {
    /// The type byte, taken from [`FrontendTag`](crate::FrontendTag) or
    /// [`BackendTag`](crate::BackendTag).
    const TAG: u8;

    /// Appends the message body, without type byte and length.
    fn encode_body(&self, buf: &mut BytesMut);

    /// Appends the whole frame: type byte, length, body.
    ///
    /// # Panics
    ///
    /// If the body exceeds `i32::MAX` bytes, which no message built by a proxy comes near.
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(Self::TAG);
        let start = buf.len();
        buf.put_i32(0);
        self.encode_body(buf);
        let len = i32::try_from(buf.len() - start).expect("message body exceeds i32::MAX bytes");
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Encodes into a new [`Message`], for code that sends `Message`s.
    fn to_message(&self) -> Message {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        Message::from_encoded(buf.freeze())
    }
}

/// Appends a NUL-terminated string.
///
/// A NUL inside `s` would end the string early and shift every later field, so it is dropped.
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &str) {
    if s.as_bytes().contains(&0) {
        buf.extend(s.bytes().filter(|&b| b != 0));
    } else {
        buf.put_slice(s.as_bytes());
    }
    buf.put_u8(0);
}
