//! Terminate: the client closes the connection politely.

use bytes::{Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::{Decode, Encode, FrontendTag, WireError};

/// The end of a session. Its body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminate;

impl Decode for Terminate {
    const TAG: u8 = FrontendTag::Terminate as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        Cursor::new(body).finish()?;
        Ok(Self)
    }
}

impl Encode for Terminate {
    const TAG: u8 = FrontendTag::Terminate as u8;

    fn encode_body(&self, _buf: &mut BytesMut) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let msg = Terminate.to_message();
        assert_eq!(&msg.frame()[..], b"X\0\0\0\x04");
        assert_eq!(msg.decode::<Terminate>().unwrap(), Terminate);
        assert!(Terminate::decode_body(Bytes::from_static(b"\0")).is_err());
    }
}
