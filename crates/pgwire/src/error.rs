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
    /// A large message that the reader's [`LargeMessageBudget`](crate::LargeMessageBudget)
    /// has no room for now.
    #[error("a message of {len} bytes does not fit in the memory left for large messages now")]
    OverBudget {
        /// The message's size, type byte included.
        len: usize,
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
    /// Bytes that came behind an SSLRequest (or a GSSENCRequest, `gss`) before its one-byte
    /// answer, as an attacker in the middle would inject them; in PostgreSQL's words.
    #[error("received unencrypted data after {}", if *gss { "GSSAPI encryption request" } else { "SSL request" })]
    DataAfterEncryptionRequest {
        /// Whether the request was a GSSENCRequest.
        gss: bool,
    },
    /// A request code (1234.x) we do not know.
    #[error("unknown startup code {0}")]
    UnknownStartupCode(u32),
    /// A protocol version other than 3.x, in PostgreSQL's words. Those of PostgreSQL 17 and
    /// older: PostgreSQL 18 says `3.0 to 3.2`, but which one is behind a proxy is not known
    /// before it connects there.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol {
        /// The major version asked for.
        major: u16,
        /// The minor version asked for.
        minor: u16,
    },
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
