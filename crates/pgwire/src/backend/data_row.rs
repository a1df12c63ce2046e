//! DataRow: one result row. The relay only counts columns; values are never decoded here.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{BackendTag, Decode, WireError};

/// The column count of a row; the values stay in the relayed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow {
    /// Number of column values that follow.
    pub columns: u16,
}

impl Decode for DataRow {
    const TAG: u8 = BackendTag::DataRow as u8;

    /// Reads the count only, so that the cost does not grow with the row.
    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let columns =
            u16::try_from(Cursor::new(body).i16()?).map_err(|_| WireError::Malformed("negative column count"))?;
        Ok(Self { columns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_columns() {
        let row = DataRow::decode_body(Bytes::from_static(b"\0\x02\0\0\0\x011\xff\xff\xff\xff")).unwrap();
        assert_eq!(row.columns, 2);
    }

    #[test]
    fn rejects_short_or_negative_counts() {
        assert!(DataRow::decode_body(Bytes::from_static(b"\0")).is_err());
        assert!(DataRow::decode_body(Bytes::from_static(b"\xff\xff")).is_err());
    }
}
