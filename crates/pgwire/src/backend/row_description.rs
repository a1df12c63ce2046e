//! RowDescription: names and types of the columns of a result.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{BackendTag, Decode, WireError};

/// Bytes per field after its name.
const FIELD_FIXED_LEN: usize = 18;

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// OID of the source table, or 0.
    pub table_oid: u32,
    /// Attribute number in the source table, or 0.
    pub column_id: i16,
    /// OID of the column's type.
    pub type_oid: u32,
    /// `pg_type.typlen`; negative for variable width.
    pub type_size: i16,
    /// `pg_attribute.atttypmod`.
    pub type_modifier: i32,
    /// 0 for text, 1 for binary.
    pub format: i16,
}

/// The columns of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDescription {
    /// Columns in order.
    pub fields: Vec<FieldDescription>,
}

impl Decode for RowDescription {
    const TAG: u8 = BackendTag::RowDescription as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        // Each field is at least its name's terminator plus the fixed part.
        let n = c.count(1 + FIELD_FIXED_LEN)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(FieldDescription {
                name: c.cstr()?,
                table_oid: c.u32()?,
                column_id: c.i16()?,
                type_oid: c.u32()?,
                type_size: c.i16()?,
                type_modifier: c.i32()?,
                format: c.i16()?,
            });
        }
        c.finish()?;
        Ok(Self { fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fields() {
        let r = RowDescription::decode_body(Bytes::from_static(
            b"\0\x01id\0\0\0\x40\0\0\x01\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
        ))
        .unwrap();
        assert_eq!(
            r.fields,
            [FieldDescription {
                name: "id".into(),
                table_oid: 16384,
                column_id: 1,
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
                format: 0,
            }]
        );
    }

    #[test]
    fn decodes_empty_result() {
        let r = RowDescription::decode_body(Bytes::from_static(b"\0\0")).unwrap();
        assert!(r.fields.is_empty());
    }

    #[test]
    fn rejects_truncated_fields() {
        assert!(RowDescription::decode_body(Bytes::from_static(b"\0\x01id\0\0\0")).is_err());
        assert!(RowDescription::decode_body(Bytes::from_static(b"\0\x05")).is_err());
    }
}
