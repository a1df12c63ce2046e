//! Bind: binds parameter values to a prepared statement, creating a portal.
//!
//! The relay needs the portal and statement names to map an Execute to its SQL text.
//! Parameter values are sliced out, not decoded.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{Decode, FrontendTag, WireError};

/// A portal created from a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Portal name; empty for the unnamed portal.
    pub portal: String,
    /// Name of the prepared statement; empty for the unnamed one.
    pub statement: String,
    /// Parameter format codes: none (all text), one (for all) or one per parameter.
    pub param_formats: Vec<i16>,
    /// Raw parameter values, `None` for NULL. They share the message's allocation.
    pub params: Vec<Option<Bytes>>,
    /// Result column format codes, with the same convention as `param_formats`.
    pub result_formats: Vec<i16>,
}

impl Decode for Bind {
    const TAG: u8 = FrontendTag::Bind as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let portal = c.cstr()?;
        let statement = c.cstr()?;
        let (param_formats, params) = c.formatted_values()?;
        let result_formats = c.format_codes()?;
        c.finish()?;
        Ok(Self { portal, statement, param_formats, params, result_formats })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_portal_statement_and_params() {
        let b = Bind::decode_body(Bytes::from_static(
            b"p1\0s1\0\0\x01\0\x01\0\x02\0\0\0\x0242\xff\xff\xff\xff\0\x01\0\x01",
        ))
        .unwrap();
        assert_eq!(b.portal, "p1");
        assert_eq!(b.statement, "s1");
        assert_eq!(b.param_formats, [1]);
        assert_eq!(b.params, [Some(Bytes::from_static(b"42")), None]);
        assert_eq!(b.result_formats, [1]);
    }

    #[test]
    fn decodes_unnamed_without_params() {
        let b = Bind::decode_body(Bytes::from_static(b"\0\0\0\0\0\0\0\0")).unwrap();
        assert_eq!((b.portal.as_str(), b.statement.as_str()), ("", ""));
        assert!(b.params.is_empty());
    }

    #[test]
    fn rejects_bad_structure() {
        for body in [
            // Parameter length -2.
            &b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0"[..],
            // Parameter value shorter than its length.
            b"\0\0\0\0\0\x01\0\0\0\x05ab\0\0",
            // Two format codes for one parameter.
            b"\0\0\0\x02\0\0\0\0\0\x01\0\0\0\0\0\0",
            // Missing result format count.
            b"\0\0\0\0\0\0",
            // Trailing byte.
            b"\0\0\0\0\0\0\0\0x",
        ] {
            assert!(Bind::decode_body(Bytes::from_static(body)).is_err(), "{body:?}");
        }
    }
}
