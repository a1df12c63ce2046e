//! The spool's on-disk framing: a segment header, then length-prefixed,
//! checksummed records. See `README.md` in this directory for the layout.
//!
//! Pure functions over bytes and readers: no file handling, so the format is
//! tested on byte literals.

use std::io::{self, Read};

/// The first bytes of every segment file: a name and a format version.
pub const SEGMENT_MAGIC: &[u8; 8] = b"GHSPOOL1";
/// Bytes before a record's payload: its length and checksum, little endian.
pub const RECORD_HEADER: u64 = 8;
/// A longer length prefix cannot have been written by us: it is damage.
pub const MAX_RECORD: u32 = 64 * 1024 * 1024;

/// Appends one framed record to `out`: `len: u32`, `crc32(len ++ payload): u32`, payload.
///
/// # Panics
///
/// If `payload` is empty or longer than [`MAX_RECORD`]; the spool only frames
/// encoded events, which are neither.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + framed_len(payload.len()) as usize, 0);
    encode_into(payload, &mut out[start..]);
}

/// Writes one framed record (see [`encode`]) over `out`, which is exactly
/// [`framed_len`]`(payload.len())` bytes long.
///
/// # Panics
///
/// As [`encode`], or if `out` has another length.
pub fn encode_into(payload: &[u8], out: &mut [u8]) {
    assert!(!payload.is_empty() && payload.len() <= MAX_RECORD as usize, "record of {} bytes", payload.len());
    let len = (payload.len() as u32).to_le_bytes();
    let (header, body) = out.split_at_mut(RECORD_HEADER as usize);
    header[..4].copy_from_slice(&len);
    header[4..].copy_from_slice(&checksum(len, payload).to_le_bytes());
    body.copy_from_slice(payload);
}

/// The bytes a payload of `len` bytes takes on disk.
pub fn framed_len(len: usize) -> u64 {
    RECORD_HEADER + len as u64
}

fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

/// What the next bytes of a segment hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole record whose checksum matches.
    Record(Vec<u8>),
    /// The segment ends here, cleanly.
    End,
    /// The segment ends inside a record: a write cut short by a crash.
    Torn,
    /// The bytes are not a record: a zero or impossible length, or a checksum
    /// that does not match. Nothing after them can be trusted.
    Corrupt(&'static str),
}

/// Reads the record at the reader's position; `remaining` is how many bytes
/// the segment holds from there. Reads at most `remaining` bytes.
///
/// # Errors
///
/// Only the reader's own IO errors; damage is a [`Next`] value.
pub fn read_next(reader: &mut impl Read, remaining: u64) -> io::Result<Next> {
    if remaining == 0 {
        return Ok(Next::End);
    }
    if remaining < RECORD_HEADER {
        return Ok(Next::Torn);
    }
    let mut header = [0u8; RECORD_HEADER as usize];
    reader.read_exact(&mut header)?;
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let len = u32::from_le_bytes(len_bytes);
    let expected = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return Ok(Next::Corrupt("zero length"));
    }
    if len > MAX_RECORD {
        return Ok(Next::Corrupt("impossible length"));
    }
    if framed_len(len as usize) > remaining {
        return Ok(Next::Torn);
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    if checksum(len_bytes, &payload) != expected {
        return Ok(Next::Corrupt("checksum mismatch"));
    }
    Ok(Next::Record(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(p, &mut out);
        }
        out
    }

    fn read_all(bytes: &[u8]) -> Vec<Next> {
        let mut reader = bytes;
        let mut out = Vec::new();
        loop {
            let remaining = reader.len() as u64;
            let next = read_next(&mut reader, remaining).unwrap();
            let stop = !matches!(next, Next::Record(_));
            out.push(next);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn layout_is_length_checksum_payload() {
        let bytes = framed(&[b"abc"]);
        assert_eq!(&bytes[..4], &[3, 0, 0, 0]);
        assert_eq!(&bytes[4..8], &crc32fast::hash(b"\x03\0\0\0abc").to_le_bytes());
        assert_eq!(&bytes[8..], b"abc");
        assert_eq!(framed_len(3), 11);
    }

    #[test]
    fn records_read_back_in_order() {
        let bytes = framed(&[b"one", b"two", b"three"]);
        assert_eq!(
            read_all(&bytes),
            [Next::Record(b"one".to_vec()), Next::Record(b"two".to_vec()), Next::Record(b"three".to_vec()), Next::End]
        );
    }

    #[test]
    fn a_tail_cut_anywhere_is_torn() {
        let bytes = framed(&[b"first", b"second"]);
        let first = framed_len(5) as usize;
        for cut in first + 1..bytes.len() {
            assert_eq!(read_all(&bytes[..cut]), [Next::Record(b"first".to_vec()), Next::Torn], "cut at {cut}");
        }
    }

    #[test]
    fn damage_is_corrupt_not_a_record() {
        let mut flipped = framed(&[b"payload"]);
        flipped[10] ^= 0x01;
        assert_eq!(read_all(&flipped), [Next::Corrupt("checksum mismatch")]);

        let mut bad_len = framed(&[b"payload", b"next"]);
        bad_len[0] = 6; // still within the segment: only the checksum can tell
        assert_eq!(read_all(&bad_len), [Next::Corrupt("checksum mismatch")]);

        assert_eq!(read_all(&[0u8; 32]), [Next::Corrupt("zero length")]);
        assert_eq!(read_all(b"\xff\xff\xff\xff\0\0\0\0"), [Next::Corrupt("impossible length")]);
    }
}
