//! ReadyForQuery: the server is idle again, and says in which transaction state.
//!
//! For a relay it marks the end of an exchange: the point to flush, and to close out a
//! statement's record.

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::{BackendTag, Decode, Encode, WireError};

/// Transaction state after the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block; statements are rejected until it ends.
    Failed,
}

impl TransactionStatus {
    /// The status byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Idle => b'I',
            Self::InTransaction => b'T',
            Self::Failed => b'E',
        }
    }

    /// The status for a byte, if it is one.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            b'I' => Some(Self::Idle),
            b'T' => Some(Self::InTransaction),
            b'E' => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The server is ready for the next query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery {
    /// Transaction state.
    pub status: TransactionStatus,
}

impl ReadyForQuery {
    /// A ReadyForQuery to send.
    pub fn new(status: TransactionStatus) -> Self {
        Self { status }
    }
}

impl Decode for ReadyForQuery {
    const TAG: u8 = BackendTag::ReadyForQuery as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let status =
            TransactionStatus::from_u8(c.u8()?).ok_or(WireError::Malformed("transaction status must be I, T or E"))?;
        c.finish()?;
        Ok(Self { status })
    }
}

impl Encode for ReadyForQuery {
    const TAG: u8 = BackendTag::ReadyForQuery as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.status.as_u8());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_status() {
        for (byte, status) in [
            (b"I", TransactionStatus::Idle),
            (b"T", TransactionStatus::InTransaction),
            (b"E", TransactionStatus::Failed),
        ] {
            let r = ReadyForQuery::decode_body(Bytes::from_static(byte)).unwrap();
            assert_eq!(r.status, status);
        }
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [&b""[..], b"X", b"II"] {
            assert!(ReadyForQuery::decode_body(Bytes::from_static(body)).is_err());
        }
    }

    #[test]
    fn round_trips() {
        let msg = ReadyForQuery::new(TransactionStatus::Idle).to_message();
        assert_eq!(&msg.frame()[..], b"Z\0\0\0\x05I");
        assert_eq!(msg.decode::<ReadyForQuery>().unwrap().status, TransactionStatus::Idle);
    }
}
