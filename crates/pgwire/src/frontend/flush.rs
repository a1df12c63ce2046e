//! Flush: asks the server to send what it holds back in an extended-query exchange, at once,
//! rather than at the Sync. It has no answer of its own.

use bytes::{Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::{Decode, Encode, FrontendTag, WireError};

/// A request to send pending output. Its body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flush;

impl Decode for Flush {
    const TAG: u8 = FrontendTag::Flush as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        Cursor::new(body).finish()?;
        Ok(Self)
    }
}

impl Encode for Flush {
    const TAG: u8 = FrontendTag::Flush as u8;

    fn encode_body(&self, _buf: &mut BytesMut) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let msg = Flush.to_message();
        assert_eq!(&msg.frame()[..], b"H\0\0\0\x04");
        assert_eq!(msg.decode::<Flush>().unwrap(), Flush);
        assert!(Flush::decode_body(Bytes::from_static(b"x")).is_err());
    }
}
