//! Sync: ends an extended-query exchange; the server answers with ReadyForQuery.

use bytes::{Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::{Decode, Encode, FrontendTag, WireError};

/// The end of an extended-query exchange. Its body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sync;

impl Decode for Sync {
    const TAG: u8 = FrontendTag::Sync as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        Cursor::new(body).finish()?;
        Ok(Self)
    }
}

impl Encode for Sync {
    const TAG: u8 = FrontendTag::Sync as u8;

    fn encode_body(&self, _buf: &mut BytesMut) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let msg = Sync.to_message();
        assert_eq!(&msg.frame()[..], b"S\0\0\0\x04");
        assert_eq!(msg.decode::<Sync>().unwrap(), Sync);
        assert!(Sync::decode_body(Bytes::from_static(b"x")).is_err());
    }
}
