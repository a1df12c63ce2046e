//! A bounds-checked reader over a message body, shared by every typed view.
//!
//! Every read returns an error instead of panicking, so decoders can be fed arbitrary bytes.

use std::ffi::CStr;

use bytes::{Buf, Bytes};

use crate::WireError;

const SHORT: WireError = WireError::Malformed("message ends inside a field");

/// Reads fields front to back from a body; slices share the message's allocation.
pub(crate) struct Cursor {
    buf: Bytes,
}

impl Cursor {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, WireError> {
        if self.buf.len() < n {
            return Err(SHORT);
        }
        Ok(self.buf.split_to(n))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        if self.buf.is_empty() {
            return Err(SHORT);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn i16(&mut self) -> Result<i16, WireError> {
        if self.buf.len() < 2 {
            return Err(SHORT);
        }
        Ok(self.buf.get_i16())
    }

    pub(crate) fn i32(&mut self) -> Result<i32, WireError> {
        if self.buf.len() < 4 {
            return Err(SHORT);
        }
        Ok(self.buf.get_i32())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        if self.buf.len() < 4 {
            return Err(SHORT);
        }
        Ok(self.buf.get_u32())
    }

    /// Reads an Int16 element count and checks that `elem_size` bytes per element remain, so a
    /// bogus count is rejected before anything is allocated for it.
    pub(crate) fn count(&mut self, elem_size: usize) -> Result<usize, WireError> {
        let n = usize::try_from(self.i16()?).map_err(|_| WireError::Malformed("negative element count"))?;
        if n * elem_size > self.buf.len() {
            return Err(SHORT);
        }
        Ok(n)
    }

    /// Reads format codes (0 text, 1 binary) as Bind, FunctionCall and the COPY responses send
    /// them: an Int16 count, then that many Int16 codes.
    pub(crate) fn format_codes(&mut self) -> Result<Vec<i16>, WireError> {
        let n = self.count(2)?;
        (0..n).map(|_| self.i16()).collect()
    }

    /// Reads values with their format codes, as Bind (its parameters) and FunctionCall (its
    /// arguments) send them: the codes, then an Int16 count and each value as an Int32 length
    /// (-1 for NULL) and that many bytes, sliced out of the message without a copy. Several
    /// codes must match the values one to one, PostgreSQL's rule.
    pub(crate) fn formatted_values(&mut self) -> Result<(Vec<i16>, Vec<Option<Bytes>>), WireError> {
        let formats = self.format_codes()?;
        let n = self.count(4)?;
        let values: Vec<Option<Bytes>> = (0..n)
            .map(|_| match self.i32()? {
                -1 => Ok(None),
                len => usize::try_from(len)
                    .map_err(|_| WireError::Malformed("negative value length"))
                    .and_then(|len| self.bytes(len))
                    .map(Some),
            })
            .collect::<Result<_, _>>()?;
        if formats.len() > 1 && formats.len() != values.len() {
            return Err(WireError::Malformed("format code count does not match value count"));
        }
        Ok((formats, values))
    }

    /// Reads a NUL-terminated string without its terminator.
    pub(crate) fn cstr_bytes(&mut self) -> Result<Bytes, WireError> {
        // `CStr::from_bytes_until_nul` searches with core's word-at-a-time memchr.
        let len = CStr::from_bytes_until_nul(&self.buf)
            .map_err(|_| WireError::Malformed("string without NUL terminator"))?
            .count_bytes();
        let s = self.buf.split_to(len);
        self.buf.advance(1);
        Ok(s)
    }

    /// Reads a NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self) -> Result<String, WireError> {
        Ok(std::str::from_utf8(&self.cstr_bytes()?)?.to_owned())
    }

    /// Reads a NUL-terminated string, each byte that is not UTF-8 written `\xNN`
    /// ([`escape_invalid_utf8`]).
    pub(crate) fn cstr_escaped(&mut self) -> Result<String, WireError> {
        let bytes = self.cstr_bytes()?;
        Ok(std::str::from_utf8(&bytes).map_or_else(|_| escape_invalid_utf8(&bytes), str::to_owned))
    }

    /// Reads a NUL-terminated string, replacing invalid UTF-8.
    pub(crate) fn cstr_lossy(&mut self) -> Result<String, WireError> {
        Ok(String::from_utf8_lossy(&self.cstr_bytes()?).into_owned())
    }

    /// Takes everything left.
    pub(crate) fn rest(self) -> Bytes {
        self.buf
    }

    /// Fails if bytes are left over, as PostgreSQL's `pq_getmsgend` does.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() { Ok(()) } else { Err(WireError::Malformed("unexpected bytes at end of message")) }
    }
}

/// `bytes` as UTF-8, each byte that is not written `\xNN`: how text a client sent in no
/// encoding we read (or in none at all) is recorded: readable, each such byte shown.
pub fn escape_invalid_utf8(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order() {
        let mut c = Cursor::new(Bytes::from_static(b"ab\0\x00\x01\x00\x00\x00\x02z"));
        assert_eq!(c.cstr().unwrap(), "ab");
        assert_eq!(c.i16().unwrap(), 1);
        assert_eq!(c.i32().unwrap(), 2);
        assert_eq!(c.u8().unwrap(), b'z');
        c.finish().unwrap();
    }

    #[test]
    fn short_reads_are_errors() {
        let mut c = Cursor::new(Bytes::from_static(b"\x00"));
        assert!(c.i16().is_err());
        assert!(c.i32().is_err());
        assert!(c.bytes(2).is_err());
        assert!(c.cstr_bytes().is_ok());
        assert!(c.u8().is_err());
        assert!(Cursor::new(Bytes::from_static(b"abc")).cstr().is_err());
    }

    #[test]
    fn count_rejects_negative_and_oversized() {
        assert!(Cursor::new(Bytes::from_static(b"\xff\xff")).count(1).is_err());
        assert!(Cursor::new(Bytes::from_static(b"\x00\x02\x00\x00")).count(4).is_err());
        assert_eq!(Cursor::new(Bytes::from_static(b"\x00\x02\x00\x00")).count(1).unwrap(), 2);
    }

    #[test]
    fn invalid_utf8_is_reported_or_replaced() {
        let body = Bytes::from_static(b"\xff\0");
        assert!(matches!(Cursor::new(body.clone()).cstr(), Err(WireError::InvalidUtf8(_))));
        assert_eq!(Cursor::new(body).cstr_lossy().unwrap(), "\u{fffd}");
    }

    #[test]
    fn trailing_bytes_fail_finish() {
        assert!(Cursor::new(Bytes::from_static(b"x")).finish().is_err());
    }
}
