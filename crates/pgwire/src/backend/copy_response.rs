//! CopyInResponse, CopyOutResponse and CopyBothResponse: the server switches to COPY mode.
//!
//! The three share one layout, so they are one type told apart by its type byte.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{BackendTag, Decode, WireError};

/// The start of a COPY; use the aliases [`CopyInResponse`], [`CopyOutResponse`] and
/// [`CopyBothResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse<const TAG: u8> {
    /// Whether the overall format is binary rather than text.
    pub binary: bool,
    /// Per-column format codes: 0 text, 1 binary.
    pub column_formats: Vec<i16>,
}

/// The server is ready to receive COPY data from the client.
pub type CopyInResponse = CopyResponse<{ BackendTag::CopyInResponse as u8 }>;
/// The server is about to send COPY data.
pub type CopyOutResponse = CopyResponse<{ BackendTag::CopyOutResponse as u8 }>;
/// COPY in both directions, for streaming replication.
pub type CopyBothResponse = CopyResponse<{ BackendTag::CopyBothResponse as u8 }>;

impl<const TAG: u8> Decode for CopyResponse<TAG> {
    const TAG: u8 = TAG;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let binary = match c.u8()? {
            0 => false,
            1 => true,
            _ => return Err(WireError::Malformed("COPY format must be 0 or 1")),
        };
        let column_formats = c.format_codes()?;
        c.finish()?;
        Ok(Self { binary, column_formats })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn decodes_text_copy_in() {
        let c = CopyInResponse::decode_body(Bytes::from_static(b"\0\0\x02\0\0\0\0")).unwrap();
        assert!(!c.binary);
        assert_eq!(c.column_formats, [0, 0]);
    }

    #[test]
    fn aliases_check_their_own_tag() {
        let m = Message::from_frame(Bytes::from_static(b"H\0\0\0\x07\x01\0\0")).unwrap();
        assert!(m.decode::<CopyOutResponse>().unwrap().binary);
        assert!(m.decode::<CopyInResponse>().is_err());
        assert!(m.decode::<CopyBothResponse>().is_err());
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [&b"\x02\0\0"[..], b"\0\0\x01", b"\0\0\0x"] {
            assert!(CopyInResponse::decode_body(Bytes::from_static(body)).is_err());
        }
    }
}
