//! The one-byte answer to an SSLRequest or GSSENCRequest; it has no type byte or length.

use bytes::{BufMut, BytesMut};

/// Whether the server goes on to a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslResponse {
    /// `S`: the TLS handshake follows.
    Accept,
    /// `N`: the client continues unencrypted (or gives up). Also the refusal of a
    /// GSSENCRequest.
    Reject,
}

impl SslResponse {
    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Accept => b'S',
            Self::Reject => b'N',
        }
    }

    /// Reads a server's answer; anything else (an old server may send an ErrorResponse) is
    /// `None`.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            b'S' => Some(Self::Accept),
            b'N' => Some(Self::Reject),
            _ => None,
        }
    }

    /// Appends the byte.
    pub fn encode(self, buf: &mut BytesMut) {
        buf.put_u8(self.as_u8());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_round_trip() {
        for response in [SslResponse::Accept, SslResponse::Reject] {
            let mut buf = BytesMut::new();
            response.encode(&mut buf);
            assert_eq!(buf.len(), 1);
            assert_eq!(SslResponse::from_u8(buf[0]), Some(response));
        }
        assert_eq!(SslResponse::Accept.as_u8(), b'S');
        assert_eq!(SslResponse::Reject.as_u8(), b'N');
        assert_eq!(SslResponse::from_u8(b'E'), None);
    }
}
