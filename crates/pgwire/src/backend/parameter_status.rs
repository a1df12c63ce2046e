//! ParameterStatus: the server reports a run-time parameter such as `server_version` or
//! `client_encoding`.

use bytes::{Bytes, BytesMut};

use crate::codec::put_cstr;
use crate::cursor::Cursor;
use crate::{BackendTag, Decode, Encode, WireError};

/// One parameter's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus {
    /// Parameter name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl ParameterStatus {
    /// A parameter report to send.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

impl Decode for ParameterStatus {
    const TAG: u8 = BackendTag::ParameterStatus as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let name = c.cstr()?;
        let value = c.cstr()?;
        c.finish()?;
        Ok(Self { name, value })
    }
}

impl Encode for ParameterStatus {
    const TAG: u8 = BackendTag::ParameterStatus as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.name);
        put_cstr(buf, &self.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_name_and_value() {
        let p = ParameterStatus::decode_body(Bytes::from_static(b"server_version\x0017.2\0")).unwrap();
        assert_eq!(p, ParameterStatus::new("server_version", "17.2"));
        assert!(ParameterStatus::decode_body(Bytes::from_static(b"name\0")).is_err());
    }

    #[test]
    fn round_trips() {
        let p = ParameterStatus::new("client_encoding", "UTF8");
        let msg = p.to_message();
        assert_eq!(&msg.frame()[..], b"S\0\0\0\x19client_encoding\0UTF8\0");
        assert_eq!(msg.decode::<ParameterStatus>().unwrap(), p);
    }
}
