//! Query: a simple-protocol query string, possibly several statements.

use bytes::{Bytes, BytesMut};

use crate::codec::put_cstr;
use crate::cursor::Cursor;
use crate::{Decode, Encode, FrontendTag, WireError};

/// The SQL text of a simple query, checked as UTF-8 once when decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query string, without its terminator.
    pub sql: String,
}

impl Query {
    /// A query to send.
    pub fn new(sql: impl Into<String>) -> Self {
        Self { sql: sql.into() }
    }
}

impl Decode for Query {
    const TAG: u8 = FrontendTag::Query as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let sql = c.cstr()?;
        c.finish()?;
        Ok(Self { sql })
    }
}

impl Encode for Query {
    const TAG: u8 = FrontendTag::Query as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.sql);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_sql() {
        let q = Query::decode_body(Bytes::from_static(b"SELECT 1; SELECT 2\0")).unwrap();
        assert_eq!(q.sql, "SELECT 1; SELECT 2");
    }

    #[test]
    fn rejects_missing_terminator_trailing_bytes_and_bad_utf8() {
        assert!(Query::decode_body(Bytes::from_static(b"SELECT 1")).is_err());
        assert!(Query::decode_body(Bytes::from_static(b"SELECT 1\0x")).is_err());
        assert!(matches!(Query::decode_body(Bytes::from_static(b"SELECT '\xc3'\0")), Err(WireError::InvalidUtf8(_))));
    }

    #[test]
    fn round_trips() {
        let msg = Query::new("SELECT 'é'").to_message();
        assert_eq!(&msg.frame()[..], b"Q\0\0\0\x10SELECT '\xc3\xa9'\0");
        assert_eq!(msg.decode::<Query>().unwrap(), Query::new("SELECT 'é'"));
    }

    #[test]
    fn encoding_drops_interior_nul() {
        let msg = Query::new("SELECT\0 1").to_message();
        assert_eq!(msg.decode::<Query>().unwrap().sql, "SELECT 1");
    }
}
