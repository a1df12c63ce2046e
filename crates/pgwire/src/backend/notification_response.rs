//! NotificationResponse: a NOTIFY delivered to a session that LISTENs.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::{BackendTag, Decode, WireError};

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationResponse {
    /// Process id of the notifying backend.
    pub pid: i32,
    /// Channel name.
    pub channel: String,
    /// Payload; empty if none was given.
    pub payload: String,
}

impl Decode for NotificationResponse {
    const TAG: u8 = BackendTag::NotificationResponse as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let pid = c.i32()?;
        let channel = c.cstr()?;
        let payload = c.cstr()?;
        c.finish()?;
        Ok(Self { pid, channel, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_notification() {
        let n = NotificationResponse::decode_body(Bytes::from_static(b"\0\0\x04\xd2jobs\0done\0")).unwrap();
        assert_eq!(n.pid, 1234);
        assert_eq!(n.channel, "jobs");
        assert_eq!(n.payload, "done");
        assert!(NotificationResponse::decode_body(Bytes::from_static(b"\0\0\x04\xd2jobs\0")).is_err());
    }
}
