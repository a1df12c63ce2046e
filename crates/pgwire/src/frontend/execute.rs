//! Execute: runs a portal, optionally stopping after a number of rows.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{Decode, FrontendTag, WireError};

/// A portal to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    /// Portal name; empty for the unnamed portal.
    pub portal: String,
    /// Row limit; zero (or negative) means no limit.
    pub max_rows: i32,
}

impl Decode for Execute {
    const TAG: u8 = FrontendTag::Execute as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let portal = c.cstr()?;
        let max_rows = c.i32()?;
        c.finish()?;
        Ok(Self { portal, max_rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_portal_and_limit() {
        let e = Execute::decode_body(Bytes::from_static(b"p1\0\0\0\0\x64")).unwrap();
        assert_eq!(e.portal, "p1");
        assert_eq!(e.max_rows, 100);
        let e = Execute::decode_body(Bytes::from_static(b"\0\0\0\0\0")).unwrap();
        assert_eq!((e.portal.as_str(), e.max_rows), ("", 0));
    }

    #[test]
    fn rejects_short_or_long_bodies() {
        assert!(Execute::decode_body(Bytes::from_static(b"\0\0\0\0")).is_err());
        assert!(Execute::decode_body(Bytes::from_static(b"\0\0\0\0\0\0")).is_err());
    }
}
