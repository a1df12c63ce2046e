//! StartupMessage: protocol version and `name\0value\0` pairs that open a session.
//!
//! The frame is kept, so a relay forwards the packet unchanged; a proxy that rewrites a
//! parameter builds a new one with [`StartupMessage::new`].

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::MAX_STARTUP_PACKET_LEN;
use crate::WireError;
use crate::cursor::Cursor;

/// A parsed StartupMessage and the packet it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct StartupMessage {
    protocol: u32,
    params: Vec<(String, String)>,
    frame: Bytes,
}

impl StartupMessage {
    /// Builds and encodes a StartupMessage.
    ///
    /// # Errors
    ///
    /// [`WireError::UnknownStartupCode`] if `protocol` is not 3.x, [`WireError::Malformed`] for
    /// an empty name or a NUL in a name or value, [`WireError::TooLarge`] if the packet would
    /// exceed [`MAX_STARTUP_PACKET_LEN`].
    pub fn new(protocol: u32, params: Vec<(String, String)>) -> Result<Self, WireError> {
        if protocol >> 16 != 3 {
            return Err(WireError::UnknownStartupCode(protocol));
        }
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        buf.put_u32(protocol);
        for (name, value) in &params {
            if name.is_empty() {
                return Err(WireError::Malformed("empty startup parameter name"));
            }
            for s in [name, value] {
                if s.as_bytes().contains(&0) {
                    return Err(WireError::Malformed("NUL in startup parameter"));
                }
                buf.put_slice(s.as_bytes());
                buf.put_u8(0);
            }
        }
        buf.put_u8(0);
        if buf.len() > MAX_STARTUP_PACKET_LEN {
            return Err(WireError::TooLarge { len: buf.len(), max: MAX_STARTUP_PACKET_LEN });
        }
        let len = i32::try_from(buf.len()).expect("bounded by MAX_STARTUP_PACKET_LEN");
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(Self { protocol, params, frame: buf.freeze() })
    }

    /// Parses a whole packet whose length and code were already checked.
    pub(crate) fn decode(frame: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(frame.clone());
        let _len = c.i32()?;
        let protocol = c.u32()?;
        let mut params = Vec::new();
        loop {
            // An empty name is the terminator, which must be the last byte. PostgreSQL takes
            // any bytes here (a role named in LATIN1, an `application_name` from a program's
            // name): the packet goes on unchanged, and what is read from it shows such a byte
            // as `\xNN`.
            let name = c.cstr_escaped()?;
            if name.is_empty() {
                break;
            }
            params.push((name, c.cstr_escaped()?));
        }
        c.finish()?;
        Ok(Self { protocol, params, frame })
    }

    /// The protocol version, such as [`PROTOCOL_3_0`](crate::PROTOCOL_3_0).
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// All parameters in the order sent, duplicates included.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The value of a parameter; if it was sent twice, the last one, as PostgreSQL does.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `user` parameter, which PostgreSQL requires.
    pub fn user(&self) -> Option<&str> {
        self.param("user")
    }

    /// The database the session opens: the `database` parameter, or, as PostgreSQL does when
    /// it is absent or empty, the user name.
    pub fn database(&self) -> Option<&str> {
        self.param("database").filter(|db| !db.is_empty()).or_else(|| self.user())
    }

    /// The `application_name` parameter.
    pub fn application_name(&self) -> Option<&str> {
        self.param("application_name")
    }

    /// The packet as received or encoded, to forward unchanged.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

/// Omits the frame, which repeats the parameters.
impl fmt::Debug for StartupMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartupMessage")
            .field("protocol", &format_args!("{}.{}", self.protocol >> 16, self.protocol & 0xffff))
            .field("params", &self.params)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PROTOCOL_3_0, PROTOCOL_3_2};

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn encodes_the_wire_layout() {
        let msg = StartupMessage::new(PROTOCOL_3_0, params(&[("user", "bob")])).unwrap();
        assert_eq!(&msg.frame()[..], b"\0\0\0\x12\0\x03\0\0user\0bob\0\0");
    }

    #[test]
    fn round_trips_through_decode() {
        let msg =
            StartupMessage::new(PROTOCOL_3_2, params(&[("user", "bob"), ("database", ""), ("_pq_.x", "1")])).unwrap();
        let decoded = StartupMessage::decode(msg.frame().clone()).unwrap();
        assert_eq!(decoded, msg);
        assert_eq!(decoded.protocol(), PROTOCOL_3_2);
        assert_eq!(decoded.database(), Some("bob"));
        assert_eq!(decoded.param("_pq_.x"), Some("1"));
        assert_eq!(decoded.application_name(), None);
    }

    #[test]
    fn last_duplicate_wins() {
        let msg = StartupMessage::new(PROTOCOL_3_0, params(&[("user", "a"), ("user", "b")])).unwrap();
        assert_eq!(msg.user(), Some("b"));
        assert_eq!(msg.params().len(), 2);
    }

    #[test]
    fn rejects_what_cannot_be_encoded() {
        assert!(StartupMessage::new(PROTOCOL_3_0, params(&[("", "x")])).is_err());
        assert!(StartupMessage::new(PROTOCOL_3_0, params(&[("user", "a\0b")])).is_err());
        assert!(StartupMessage::new(2 << 16, vec![]).is_err());
        let huge = "x".repeat(MAX_STARTUP_PACKET_LEN);
        assert!(matches!(
            StartupMessage::new(PROTOCOL_3_0, params(&[("options", &huge)])),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_as_escapes_and_forwarded_unchanged() {
        let frame = Bytes::from_static(b"\0\0\0\x2b\0\x03\0\0user\0j\xfcrgen\0application_name\0caf\xe9\0\0");
        let msg = StartupMessage::decode(frame.clone()).unwrap();
        assert_eq!(msg.user(), Some("j\\xfcrgen"));
        assert_eq!(msg.application_name(), Some("caf\\xe9"));
        assert_eq!(msg.frame(), &frame);
    }
}
