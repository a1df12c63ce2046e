//! CancelRequest: the startup packet that asks to cancel another connection's query.
//!
//! The key is 4 bytes in protocol 3.0; protocol 3.2 lets it run to the end of the packet, up to
//! 256 bytes (PostgreSQL 18 sends 32).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::CANCEL_REQUEST_CODE;
use crate::WireError;

/// The longest secret key protocol 3.2 allows.
pub const MAX_CANCEL_KEY_LEN: usize = 256;
/// Protocol 3.0 keys are exactly this long, and 3.2 keys no shorter.
const MIN_CANCEL_KEY_LEN: usize = 4;

/// Checks a secret key length, for CancelRequest and BackendKeyData alike.
pub(crate) fn check_key_len(len: usize) -> Result<(), WireError> {
    if (MIN_CANCEL_KEY_LEN..=MAX_CANCEL_KEY_LEN).contains(&len) {
        Ok(())
    } else {
        Err(WireError::Malformed("cancel key must be 4 to 256 bytes"))
    }
}

/// Process id and secret key of the connection to cancel, as sent in BackendKeyData.
#[derive(Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// Process id of the target backend.
    pub pid: i32,
    /// The secret key, 4 to 256 bytes.
    pub secret_key: Bytes,
}

impl CancelRequest {
    /// Parses a whole packet whose length and code were already checked.
    pub(crate) fn decode(frame: Bytes) -> Result<Self, WireError> {
        let Some(&[_, _, _, _, _, _, _, _, a, b, c, d]) = frame.first_chunk::<12>() else {
            return Err(WireError::Malformed("cancel request shorter than 12 bytes"));
        };
        check_key_len(frame.len() - 12)?;
        Ok(Self { pid: i32::from_be_bytes([a, b, c, d]), secret_key: frame.slice(12..) })
    }

    /// Appends the packet, for a proxy forwarding the cancel to the real server.
    ///
    /// # Panics
    ///
    /// If the key is longer than `i32::MAX` bytes.
    pub fn encode(&self, buf: &mut BytesMut) {
        self.encode_with_code(buf, CANCEL_REQUEST_CODE);
    }

    /// [`encode`](Self::encode), with another request code (a cancel passed between peers).
    ///
    /// # Panics
    ///
    /// If the key is longer than `i32::MAX` bytes.
    pub(crate) fn encode_with_code(&self, buf: &mut BytesMut, code: u32) {
        let len = i32::try_from(12 + self.secret_key.len()).expect("cancel key too long");
        buf.put_i32(len);
        buf.put_u32(code);
        buf.put_i32(self.pid);
        buf.put_slice(&self.secret_key);
    }
}

/// Hides the key: it authorises cancelling the session.
impl fmt::Debug for CancelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelRequest").field("pid", &self.pid).field("secret_key_len", &self.secret_key.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_protocol_3_0_packet() {
        let mut buf = BytesMut::new();
        CancelRequest { pid: 12345, secret_key: Bytes::from_static(b"\xde\xad\xbe\xef") }.encode(&mut buf);
        assert_eq!(&buf[..], b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\x30\x39\xde\xad\xbe\xef");
    }

    #[test]
    fn decode_rejects_bad_key_sizes() {
        assert!(CancelRequest::decode(Bytes::from_static(b"\0\0\0\x0f\x04\xd2\x16\x2e\0\0\0\x01abc")).is_err());
        assert!(CancelRequest::decode(Bytes::from_static(b"short")).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let cancel = CancelRequest { pid: 1, secret_key: Bytes::from_static(b"hush") };
        assert!(!format!("{cancel:?}").contains("hush"));
    }
}
