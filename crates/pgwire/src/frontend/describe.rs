//! Describe: asks for the parameter and result description of a statement or portal.

use bytes::Bytes;

use super::Target;
use crate::cursor::Cursor;
use crate::{Decode, FrontendTag, WireError};

/// A statement or portal to describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    /// Statement or portal.
    pub target: Target,
    /// Its name; empty for the unnamed one.
    pub name: String,
}

impl Decode for Describe {
    const TAG: u8 = FrontendTag::Describe as u8;

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
    fn decodes_portal() {
        let d = Describe::decode_body(Bytes::from_static(b"Pcur\0")).unwrap();
        assert_eq!((d.target, d.name.as_str()), (Target::Portal, "cur"));
    }

    #[test]
    fn rejects_missing_terminator() {
        assert!(Describe::decode_body(Bytes::from_static(b"Scur")).is_err());
    }
}
