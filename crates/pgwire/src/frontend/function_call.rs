//! FunctionCall: the fast-path interface, a function called by its oid with argument values.
//!
//! The recorder shows the call with its arguments: they are what the function runs on (the
//! query `query_to_xml` executes, the data `lo_write` stores). Values are sliced out, not
//! decoded.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{Decode, FrontendTag, WireError};

/// A fast-path function call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    /// The function's oid.
    pub oid: u32,
    /// Argument format codes: none (all text), one (for all) or one per argument.
    pub arg_formats: Vec<i16>,
    /// Raw argument values, `None` for NULL. They share the message's allocation.
    pub args: Vec<Option<Bytes>>,
    /// The result's format code.
    pub result_format: i16,
}

impl FunctionCall {
    /// Whether argument `i` is in binary format.
    pub fn is_binary(&self, i: usize) -> bool {
        match self.arg_formats.as_slice() {
            [] => false,
            [all] => *all == 1,
            each => each.get(i) == Some(&1),
        }
    }
}

impl Decode for FunctionCall {
    const TAG: u8 = FrontendTag::FunctionCall as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let oid = c.u32()?;
        let (arg_formats, args) = c.formatted_values()?;
        let result_format = c.i16()?;
        c.finish()?;
        Ok(Self { oid, arg_formats, args, result_format })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_oid_formats_and_arguments() {
        // query_to_xml(text, bool, bool, text): all text, one NULL.
        let f = FunctionCall::decode_body(Bytes::from_static(
            b"\0\0\x0b\x6c\0\0\0\x04\0\0\0\x08select 1\0\0\0\x04true\xff\xff\xff\xff\0\0\0\0\0\0",
        ))
        .unwrap();
        assert_eq!(f.oid, 2924);
        assert!(f.arg_formats.is_empty() && !f.is_binary(0));
        assert_eq!(
            f.args,
            [Some(Bytes::from_static(b"select 1")), Some(Bytes::from_static(b"true")), None, Some(Bytes::new())]
        );
        assert_eq!(f.result_format, 0);
    }

    #[test]
    fn format_codes_apply_to_all_or_to_each() {
        let one = FunctionCall::decode_body(Bytes::from_static(b"\0\0\x03\xb8\0\x01\0\x01\0\x01\0\0\0\x01\x07\0\x01"))
            .unwrap();
        assert!(one.is_binary(0) && one.is_binary(5));
        let each = FunctionCall { arg_formats: vec![0, 1], ..one };
        assert!(!each.is_binary(0) && each.is_binary(1) && !each.is_binary(2));
    }

    #[test]
    fn rejects_truncated_and_inconsistent_calls() {
        assert!(FunctionCall::decode_body(Bytes::from_static(b"\0\0")).is_err());
        assert!(FunctionCall::decode_body(Bytes::from_static(b"\0\0\0\x01\0\0\0\x01\0\0\0\x09ab\0\0")).is_err());
        // Two format codes for one argument.
        assert!(FunctionCall::decode_body(Bytes::from_static(b"\0\0\0\x01\0\x02\0\0\0\0\0\x01\0\0\0\0\0\0")).is_err());
    }
}
