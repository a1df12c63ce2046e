//! The `p` message: a password, or a GSSAPI or SASL response, depending on what the server
//! asked for.
//!
//! Only the authentication exchange knows which, so the body stays opaque here.

use std::fmt;

use bytes::Bytes;

use crate::{Decode, FrontendTag, WireError};

/// An authentication response, body untouched.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordMessage {
    /// The body: a NUL-terminated password, or SASL or GSSAPI data.
    pub data: Bytes,
}

impl Decode for PasswordMessage {
    const TAG: u8 = FrontendTag::Password as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        Ok(Self { data: body })
    }
}

/// Shows the size only: the body is a credential.
impl fmt::Debug for PasswordMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordMessage").field("len", &self.data.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_body_and_hides_it_from_debug() {
        let p = PasswordMessage::decode_body(Bytes::from_static(b"hunter2\0")).unwrap();
        assert_eq!(&p.data[..], b"hunter2\0");
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
