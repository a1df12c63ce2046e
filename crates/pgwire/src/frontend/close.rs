//! Close: drops a prepared statement or a portal.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{Decode, FrontendTag, WireError};

/// What a Close or Describe names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `S`: a prepared statement.
    Statement,
    /// `P`: a portal.
    Portal,
}

impl Target {
    pub(crate) fn decode(c: &mut Cursor) -> Result<Self, WireError> {
        match c.u8()? {
            b'S' => Ok(Self::Statement),
            b'P' => Ok(Self::Portal),
            _ => Err(WireError::Malformed("target must be S or P")),
        }
    }
}

/// A statement or portal to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Statement or portal.
    pub target: Target,
    /// Its name; empty for the unnamed one.
    pub name: String,
}

impl Decode for Close {
    const TAG: u8 = FrontendTag::Close as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let target = Target::decode(&mut c)?;
        let name = c.cstr()?;
        c.finish()?;
        Ok(Self { target, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_statement_and_portal() {
        let close = Close::decode_body(Bytes::from_static(b"Ss1\0")).unwrap();
        assert_eq!((close.target, close.name.as_str()), (Target::Statement, "s1"));
        let close = Close::decode_body(Bytes::from_static(b"P\0")).unwrap();
        assert_eq!((close.target, close.name.as_str()), (Target::Portal, ""));
    }

    #[test]
    fn rejects_unknown_target() {
        assert!(Close::decode_body(Bytes::from_static(b"Xs1\0")).is_err());
        assert!(Close::decode_body(Bytes::from_static(b"")).is_err());
    }
}
