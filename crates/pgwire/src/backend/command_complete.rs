//! CommandComplete: a statement finished, with a tag such as `INSERT 0 12` or `CREATE TABLE`.

use bytes::{Bytes, BytesMut};

use crate::codec::put_cstr;
use crate::cursor::Cursor;
use crate::{BackendTag, Decode, Encode, WireError};

/// The command tag of a finished statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    /// The tag as sent, such as `SELECT 5`.
    pub tag: String,
}

impl CommandComplete {
    /// A CommandComplete to send.
    pub fn new(tag: impl Into<String>) -> Self {
        Self { tag: tag.into() }
    }

    /// The number of rows processed, for the commands whose tag carries one.
    ///
    /// `INSERT oid rows` carries an OID first (always 0 since PostgreSQL 12); `SELECT`,
    /// `UPDATE`, `DELETE`, `MERGE`, `MOVE`, `FETCH` and `COPY` carry the count alone.
    /// `CREATE TABLE AS` and `SELECT INTO` report as `SELECT n`.
    pub fn rows(&self) -> Option<u64> {
        let (command, rest) = self.tag.split_once(' ')?;
        let count = match command {
            "INSERT" => rest.split_once(' ')?.1,
            "SELECT" | "UPDATE" | "DELETE" | "MERGE" | "MOVE" | "FETCH" | "COPY" => rest,
            _ => return None,
        };
        // `u64::from_str` would accept a leading `+`; a tag never has one.
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        count.parse().ok()
    }

    /// The command without its counts: `INSERT` for `INSERT 0 12`, and the whole tag for
    /// tags without counts, such as `CREATE TABLE`.
    pub fn command(&self) -> &str {
        match self.rows() {
            Some(_) => self.tag.split(' ').next().unwrap_or_default(),
            None => &self.tag,
        }
    }
}

impl Decode for CommandComplete {
    const TAG: u8 = BackendTag::CommandComplete as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let tag = c.cstr()?;
        c.finish()?;
        Ok(Self { tag })
    }
}

impl Encode for CommandComplete {
    const TAG: u8 = BackendTag::CommandComplete as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &'static [u8]) -> CommandComplete {
        CommandComplete::decode_body(Bytes::from_static(body)).unwrap()
    }

    #[test]
    fn insert_counts_rows_after_the_oid() {
        let c = decode(b"INSERT 0 1214\0");
        assert_eq!(c.tag, "INSERT 0 1214");
        assert_eq!(c.rows(), Some(1214));
        assert_eq!(c.command(), "INSERT");
    }

    #[test]
    fn counted_commands() {
        for (body, rows, command) in [
            (&b"SELECT 5\0"[..], 5, "SELECT"),
            (b"UPDATE 3\0", 3, "UPDATE"),
            (b"DELETE 0\0", 0, "DELETE"),
            (b"MERGE 7\0", 7, "MERGE"),
            (b"COPY 10\0", 10, "COPY"),
            (b"FETCH 100\0", 100, "FETCH"),
            (b"MOVE 2\0", 2, "MOVE"),
            (b"SELECT 18446744073709551615\0", u64::MAX, "SELECT"),
        ] {
            let c = CommandComplete::decode_body(Bytes::from_static(body)).unwrap();
            assert_eq!(c.rows(), Some(rows), "{}", c.tag);
            assert_eq!(c.command(), command);
        }
    }

    #[test]
    fn tags_without_counts() {
        for body in [
            &b"CREATE TABLE\0"[..],
            b"BEGIN\0",
            b"SET\0",
            b"INSERT 12\0",
            b"SELECT +5\0",
            b"SELECT 5 6\0",
            b"SELECT \0",
            b"\0",
        ] {
            let c = CommandComplete::decode_body(Bytes::from_static(body)).unwrap();
            assert_eq!(c.rows(), None, "{}", c.tag);
            assert_eq!(c.command(), c.tag);
        }
    }

    #[test]
    fn rejects_missing_terminator() {
        assert!(CommandComplete::decode_body(Bytes::from_static(b"SELECT 1")).is_err());
    }

    #[test]
    fn round_trips() {
        let msg = CommandComplete::new("SELECT 1").to_message();
        assert_eq!(&msg.frame()[..], b"C\0\0\0\x0dSELECT 1\0");
        assert_eq!(msg.decode::<CommandComplete>().unwrap().rows(), Some(1));
    }
}
