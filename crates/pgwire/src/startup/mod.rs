//! The first packet of a connection, which has no type byte: an Int32 length, an Int32 code,
//! then a body that depends on the code.
//!
//! Lengths are checked against the code as soon as eight bytes are buffered, so a bogus
//! packet is refused without waiting for its body.

mod cancel_request;
mod ssl_response;
mod startup_message;

use bytes::{BufMut, BytesMut};

pub(crate) use cancel_request::check_key_len;
pub use cancel_request::{CancelRequest, MAX_CANCEL_KEY_LEN};
pub use ssl_response::SslResponse;
pub use startup_message::StartupMessage;

use crate::WireError;

/// Code of an SSLRequest (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// Code of a GSSENCRequest (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Code of a CancelRequest (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Code of a CancelRequest that a Gatehouse connector passes to another of its group, which
/// holds the session's key (1234.5778): not PostgreSQL's, so that it is never passed on again.
pub const PEER_CANCEL_REQUEST_CODE: u32 = 80_877_202;
/// The "major version" of the request codes (SSLRequest is 1234.5679).
const REQUEST_CODE_MAJOR: u32 = 1234;
/// Protocol 3.0, the version sent by every client before PostgreSQL 18.
pub const PROTOCOL_3_0: u32 = 3 << 16;
/// Protocol 3.2 (PostgreSQL 18): cancel keys of up to 256 bytes.
pub const PROTOCOL_3_2: u32 = (3 << 16) | 2;
/// The largest startup packet PostgreSQL accepts, length field included: its
/// `MAX_STARTUP_PACKET_LENGTH` (10,000) bounds what follows the length field.
pub const MAX_STARTUP_PACKET_LEN: usize = 10_004;

/// The first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Asks for TLS; answer with [`SslResponse`].
    Ssl,
    /// Asks for GSSAPI encryption; a proxy without GSSAPI answers [`SslResponse::Reject`].
    GssEnc,
    /// Asks to cancel the query running on another connection.
    Cancel(CancelRequest),
    /// A cancel passed on by a connector of the group (see [`PEER_CANCEL_REQUEST_CODE`]).
    PeerCancel(CancelRequest),
    /// Opens a session.
    Startup(StartupMessage),
}

impl Startup {
    /// Appends the packet as a client would send it.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::Ssl => encode_request(buf, SSL_REQUEST_CODE),
            Self::GssEnc => encode_request(buf, GSSENC_REQUEST_CODE),
            Self::Cancel(cancel) => cancel.encode(buf),
            Self::PeerCancel(cancel) => cancel.encode_with_code(buf, PEER_CANCEL_REQUEST_CODE),
            Self::Startup(msg) => buf.put_slice(msg.frame()),
        }
    }
}

fn encode_request(buf: &mut BytesMut, code: u32) {
    buf.put_i32(8);
    buf.put_u32(code);
}

/// Splits the startup packet off the front of `buf`, or returns `Ok(None)` if more bytes are
/// needed.
///
/// # Errors
///
/// [`WireError::BadLength`] for a length below 8, [`WireError::TooLarge`] above
/// [`MAX_STARTUP_PACKET_LEN`], [`WireError::UnknownStartupCode`] for a request code we do not
/// know, [`WireError::UnsupportedProtocol`] for a protocol other than 3.x, and [`WireError::Malformed`] for a length that does not fit the
/// code or a body that does not parse.
pub fn try_startup(buf: &mut BytesMut) -> Result<Option<Startup>, WireError> {
    let Some(&[a, b, c, d]) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    let len = match usize::try_from(len) {
        Ok(len) if len >= 8 => len,
        _ => return Err(WireError::BadLength { len }),
    };
    if len > MAX_STARTUP_PACKET_LEN {
        return Err(WireError::TooLarge { len, max: MAX_STARTUP_PACKET_LEN });
    }
    let Some(&[_, _, _, _, a, b, c, d]) = buf.first_chunk::<8>() else {
        return Ok(None);
    };
    let code = u32::from_be_bytes([a, b, c, d]);
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if len != 8 => {
            return Err(WireError::Malformed("encryption request must be 8 bytes"));
        }
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {}
        // `len` may be below the 12 bytes before the key; saturating makes that a zero-length key.
        CANCEL_REQUEST_CODE | PEER_CANCEL_REQUEST_CODE => check_key_len(len.saturating_sub(12))?,
        _ if code >> 16 == 3 => {}
        _ if code >> 16 == REQUEST_CODE_MAJOR => return Err(WireError::UnknownStartupCode(code)),
        _ => return Err(WireError::UnsupportedProtocol { major: (code >> 16) as u16, minor: code as u16 }),
    }
    if buf.len() < len {
        return Ok(None);
    }
    let frame = buf.split_to(len).freeze();
    Ok(Some(match code {
        SSL_REQUEST_CODE => Startup::Ssl,
        GSSENC_REQUEST_CODE => Startup::GssEnc,
        CANCEL_REQUEST_CODE => Startup::Cancel(CancelRequest::decode(frame)?),
        PEER_CANCEL_REQUEST_CODE => Startup::PeerCancel(CancelRequest::decode(frame)?),
        _ => Startup::Startup(StartupMessage::decode(frame)?),
    }))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<Startup>, WireError> {
        try_startup(&mut BytesMut::from(bytes))
    }

    #[test]
    fn ssl_and_gssenc_requests() {
        assert_eq!(parse(b"\0\0\0\x08\x04\xd2\x16\x2f").unwrap(), Some(Startup::Ssl));
        assert_eq!(parse(b"\0\0\0\x08\x04\xd2\x16\x30").unwrap(), Some(Startup::GssEnc));
        assert!(matches!(parse(b"\0\0\0\x0c\x04\xd2\x16\x2f"), Err(WireError::Malformed(_))));
    }

    #[test]
    fn cancel_request_protocol_3_0() {
        let startup = parse(b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\x30\x39\xde\xad\xbe\xef").unwrap();
        let Some(Startup::Cancel(cancel)) = startup else {
            panic!("{startup:?}");
        };
        assert_eq!(cancel.pid, 12345);
        assert_eq!(&cancel.secret_key[..], b"\xde\xad\xbe\xef");
    }

    #[test]
    fn a_cancel_passed_between_peers_is_told_from_a_clients() {
        let request = CancelRequest { pid: 7, secret_key: Bytes::from_static(b"\x02key") };
        let mut wire = BytesMut::new();
        Startup::PeerCancel(request.clone()).encode(&mut wire);
        assert_eq!(&wire[4..8], PEER_CANCEL_REQUEST_CODE.to_be_bytes());
        assert_eq!(try_startup(&mut wire).unwrap(), Some(Startup::PeerCancel(request)));
    }

    #[test]
    fn cancel_request_protocol_3_2_with_32_byte_key() {
        let key = [0xab; 32];
        let mut wire = BytesMut::new();
        Startup::Cancel(CancelRequest { pid: 7, secret_key: Bytes::copy_from_slice(&key) }).encode(&mut wire);
        assert_eq!(&wire[..8], b"\0\0\0\x2c\x04\xd2\x16\x2e");
        let Some(Startup::Cancel(cancel)) = try_startup(&mut wire).unwrap() else {
            panic!("not a cancel request");
        };
        assert_eq!(cancel.pid, 7);
        assert_eq!(&cancel.secret_key[..], &key);
    }

    #[test]
    fn cancel_key_sizes_are_checked_at_the_header() {
        // No room for pid and key, a key of 3 bytes, and of 257 bytes: rejected before the
        // body arrives.
        assert!(parse(b"\0\0\0\x08\x04\xd2\x16\x2e").is_err());
        assert!(parse(b"\0\0\0\x0b\x04\xd2\x16\x2e").is_err());
        assert!(parse(b"\0\0\0\x0f\x04\xd2\x16\x2e").is_err());
        assert!(parse(b"\0\0\x01\x0d\x04\xd2\x16\x2e").is_err());
        // Key of 256 bytes: waits for the body.
        assert!(parse(b"\0\0\x01\x0c\x04\xd2\x16\x2e").unwrap().is_none());
    }

    #[test]
    fn startup_with_params() {
        let wire = b"\0\0\0\x37\0\x03\0\0user\0alice\0database\0app\0application_name\0psql\0\0";
        let startup = parse(wire).unwrap();
        let Some(Startup::Startup(msg)) = startup else {
            panic!("{startup:?}");
        };
        assert_eq!(msg.protocol(), PROTOCOL_3_0);
        assert_eq!(msg.user(), Some("alice"));
        assert_eq!(msg.database(), Some("app"));
        assert_eq!(msg.application_name(), Some("psql"));
        assert_eq!(&msg.frame()[..], wire);
    }

    #[test]
    fn partial_packets_wait() {
        let wire = b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\x30\x39\xde\xad\xbe\xef";
        for end in 0..wire.len() {
            assert!(parse(&wire[..end]).unwrap().is_none(), "{end}");
        }
    }

    #[test]
    fn bad_lengths() {
        assert!(matches!(parse(b"\0\0\0\x07"), Err(WireError::BadLength { len: 7 })));
        assert!(matches!(parse(b"\xff\xff\xff\xf0"), Err(WireError::BadLength { len: -16 })));
        assert!(matches!(parse(b"\0\0\x27\x15"), Err(WireError::TooLarge { len: 10_005, max: 10_004 })));
        assert!(parse(b"\0\0\x27\x14\0\x03\0\0").unwrap().is_none(), "10,004 bytes: waits for the rest");
        // A TLS ClientHello sent without SSLRequest looks like a huge length.
        assert!(matches!(parse(b"\x16\x03\x01\x02\0"), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn unknown_codes() {
        // Protocol 2.0, and an unassigned 1234.x code.
        let old = parse(b"\0\0\0\x09\0\x02\0\0\0").unwrap_err();
        assert!(matches!(old, WireError::UnsupportedProtocol { major: 2, minor: 0 }), "{old:?}");
        assert_eq!(old.to_string(), "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
        assert!(matches!(parse(b"\0\0\0\x08\x04\xd2\x16\x31"), Err(WireError::UnknownStartupCode(80_877_105))));
    }

    #[test]
    fn truncated_startup_body_is_malformed() {
        // Length says 16, body lacks the final terminator.
        assert!(matches!(parse(b"\0\0\0\x10\0\x03\0\0user\0bob\0"), Err(WireError::Malformed(_))));
        // Bytes after the terminator.
        assert!(matches!(parse(b"\0\0\0\x0d\0\x03\0\0\0abc\0"), Err(WireError::Malformed(_))));
    }

    #[test]
    fn requests_round_trip() {
        for startup in [Startup::Ssl, Startup::GssEnc] {
            let mut buf = BytesMut::new();
            startup.encode(&mut buf);
            assert_eq!(try_startup(&mut buf).unwrap(), Some(startup));
        }
    }
}
