//! The PostgreSQL wire format (protocol 3.0 and 3.2), and nothing else.
//!
//! This crate frames messages read from any [`tokio::io::AsyncRead`] and encodes messages into a
//! [`bytes::BytesMut`].
//! It opens no sockets, keeps no session state and logs nothing, so it can be tested and fuzzed
//! on plain bytes.
//!
//! # Layout
//!
//! - [`Message`] is one framed message: the whole wire frame as [`bytes::Bytes`], so a relay
//!   writes it on unchanged.
//! - [`MessageReader`] owns the read buffer of one connection and hands out [`Message`]s without
//!   copying, or lets a relay look at its messages in place ([`MessageRef`]) and pass them on
//!   as one run of bytes; [`try_frame`] is its synchronous core.
//! - [`buffers`] lends read and write buffers to connections while they have bytes in flight.
//! - [`Startup`] is the first packet of a connection, which has no type byte.
//! - [`FrontendTag`] and [`BackendTag`] are the type-byte tables, one per direction.
//! - [`frontend`] and [`backend`] hold typed views, one file per message, built from a
//!   [`Message`] with [`Message::decode`] only when a field is needed.
//! - [`Encode`] is implemented by the messages a proxy sends itself; [`Decode`] by the views.
//! - [`auth`] computes the client's answers to md5 and SCRAM-SHA-256 authentication.
//! - [`WireError`] is the one error type.
#![warn(missing_docs)]

pub mod auth;
pub mod backend;
pub mod buffers;
mod codec;
mod cursor;
mod error;
pub mod frontend;
mod message;
mod reader;
mod startup;
mod tag;

pub use codec::{Decode, Encode};
pub use cursor::escape_invalid_utf8;
pub use error::WireError;
pub use message::{Message, MessageRef};
pub use reader::{DEFAULT_MAX_MESSAGE_LEN, Filled, LargeMessageBudget, MessageReader, SMALL_MESSAGE_LIMIT, try_frame};
pub use startup::{
    CANCEL_REQUEST_CODE, CancelRequest, GSSENC_REQUEST_CODE, MAX_CANCEL_KEY_LEN, MAX_STARTUP_PACKET_LEN,
    PEER_CANCEL_REQUEST_CODE, PROTOCOL_3_0, PROTOCOL_3_2, SSL_REQUEST_CODE, SslResponse, Startup, StartupMessage,
    try_startup,
};
pub use tag::{BackendTag, FrontendTag};
