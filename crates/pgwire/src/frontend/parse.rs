//! Parse: prepares a named or unnamed statement in the extended protocol.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{Decode, FrontendTag, WireError};

/// A statement to prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    /// Statement name; empty for the unnamed statement.
    pub name: String,
    /// The SQL text.
    pub query: String,
    /// Parameter type OIDs the client fixed; 0 leaves a type to the server.
    pub param_types: Vec<u32>,
}

impl Decode for Parse {
    const TAG: u8 = FrontendTag::Parse as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let name = c.cstr()?;
        let query = c.cstr()?;
        let n = c.count(4)?;
        let param_types = (0..n).map(|_| c.u32()).collect::<Result<_, _>>()?;
        c.finish()?;
        Ok(Self { name, query, param_types })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_named_statement_with_types() {
        let p = Parse::decode_body(Bytes::from_static(b"s1\0SELECT $1, $2\0\0\x02\0\0\0\x17\0\0\0\0")).unwrap();
        assert_eq!(p.name, "s1");
        assert_eq!(p.query, "SELECT $1, $2");
        assert_eq!(p.param_types, [23, 0]);
    }

    #[test]
    fn decodes_unnamed_statement() {
        let p = Parse::decode_body(Bytes::from_static(b"\0SELECT 1\0\0\0")).unwrap();
        assert_eq!(p.name, "");
        assert!(p.param_types.is_empty());
    }

    #[test]
    fn rejects_bad_counts() {
        for body in [&b"\0SELECT 1\0"[..], b"\0SELECT 1\0\0\x01", b"\0SELECT 1\0\xff\xff", b"\0SELECT 1\0\0\0\0"] {
            assert!(Parse::decode_body(Bytes::from_static(body)).is_err(), "{body:?}");
        }
    }
}
