//! The crate's one error type.
//!
//! Variants carry no message contents, only sizes and codes, so an error can be logged without
//! leaking statement text or secrets.
//! Nothing here is boxed: these errors are returned on the relay's hot path.

use std::str::Utf8Error;

/// Everything that can go wrong while framing or decoding PostgreSQL messages.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A length field below the minimum for its packet (4 for a message, 8 for a startup
    /// packet), negative lengths included.
    #[error("invalid message length {len}")]
    BadLength {
        /// The length field as sent.
        len: i32,
    },
    /// A length field above the configured maximum.
    #[error("message length {len} exceeds the maximum of {max}")]
    TooLarge {
        /// The length field as sent.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// The stream ended in the middle of a message.
    #[error("unexpected end of stream inside a message")]
    UnexpectedEof,
    /// A string field is not valid UTF-8.
    #[error("invalid UTF-8 in message: {0}")]
    InvalidUtf8(#[from] Utf8Error),
    /// The message body does not have the structure its type requires.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A startup packet with a request code or protocol version we do not know.
    #[error("unknown startup code {0}")]
    UnknownStartupCode(u32),
    /// A type byte that is not in the table asked for.
    #[error("unknown message type {:?}", char::from(*.0))]
    UnknownTag(u8),
    /// A message was decoded as a type it is not.
    #[error("expected message type {:?}, got {:?}", char::from(*.expected), char::from(*.actual))]
    UnexpectedTag {
        /// The type byte of the view asked for.
        expected: u8,
        /// The type byte of the message.
        actual: u8,
    },
    /// The underlying reader failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
