//! NoticeResponse: a warning or notice, with the same fields as an ErrorResponse.

use bytes::Bytes;

use super::error_response::{decode_fields, find, severity};
use crate::{BackendTag, Decode, WireError};

/// A notice, as a list of typed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeResponse {
    /// `(field code, value)` pairs in wire order.
    pub fields: Vec<(u8, String)>,
}

impl NoticeResponse {
    /// The value of a field by its code byte.
    pub fn field(&self, code: u8) -> Option<&str> {
        find(&self.fields, code)
    }

    /// `WARNING`, `NOTICE`, `DEBUG`, `INFO` or `LOG`, untranslated when the server sent both
    /// forms.
    pub fn severity(&self) -> Option<&str> {
        severity(&self.fields)
    }

    /// The SQLSTATE.
    pub fn code(&self) -> Option<&str> {
        self.field(b'C')
    }

    /// The primary message.
    pub fn message(&self) -> Option<&str> {
        self.field(b'M')
    }
}

impl Decode for NoticeResponse {
    const TAG: u8 = BackendTag::NoticeResponse as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        Ok(Self { fields: decode_fields(body)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_notice() {
        let n = NoticeResponse::decode_body(Bytes::from_static(
            b"SWARNING\0VWARNING\0C25001\0Mthere is already a transaction in progress\0\0",
        ))
        .unwrap();
        assert_eq!(n.severity(), Some("WARNING"));
        assert_eq!(n.code(), Some("25001"));
        assert_eq!(n.message(), Some("there is already a transaction in progress"));
        assert!(NoticeResponse::decode_body(Bytes::from_static(b"SWARNING\0")).is_err());
    }
}
