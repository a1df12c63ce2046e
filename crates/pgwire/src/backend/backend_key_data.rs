//! BackendKeyData: the process id and secret key a client needs to cancel its queries.
//!
//! The key is 4 bytes in protocol 3.0 and up to 256 in 3.2, running to the end of the message.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::startup::check_key_len;
use crate::{BackendTag, Decode, Encode, WireError};

/// Cancellation credentials; a proxy may replace them with its own.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    /// Backend process id.
    pub pid: i32,
    /// Secret key, 4 to 256 bytes.
    pub secret_key: Bytes,
}

impl Decode for BackendKeyData {
    const TAG: u8 = BackendTag::BackendKeyData as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let pid = c.i32()?;
        let secret_key = c.rest();
        check_key_len(secret_key.len())?;
        Ok(Self { pid, secret_key })
    }
}

impl Encode for BackendKeyData {
    const TAG: u8 = BackendTag::BackendKeyData as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i32(self.pid);
        buf.put_slice(&self.secret_key);
    }
}

/// Hides the key: it authorises cancelling the session.
impl fmt::Debug for BackendKeyData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendKeyData")
            .field("pid", &self.pid)
            .field("secret_key_len", &self.secret_key.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_protocol_3_0_key() {
        let k = BackendKeyData::decode_body(Bytes::from_static(b"\0\0\x30\x39\xde\xad\xbe\xef")).unwrap();
        assert_eq!(k.pid, 12345);
        assert_eq!(&k.secret_key[..], b"\xde\xad\xbe\xef");
        assert!(!format!("{k:?}").contains("xde"));
    }

    #[test]
    fn round_trips_protocol_3_2_key() {
        let k = BackendKeyData { pid: 42, secret_key: Bytes::from(vec![9u8; 32]) };
        let msg = k.to_message();
        assert_eq!(&msg.frame()[..9], b"K\0\0\0\x28\0\0\0\x2a");
        assert_eq!(msg.decode::<BackendKeyData>().unwrap(), k);
    }

    #[test]
    fn rejects_bad_key_sizes() {
        assert!(BackendKeyData::decode_body(Bytes::from_static(b"\0\0\0\x01abc")).is_err());
        assert!(BackendKeyData::decode_body(Bytes::from(vec![0u8; 4 + 257])).is_err());
        assert!(BackendKeyData::decode_body(Bytes::from_static(b"\0\0")).is_err());
    }
}
