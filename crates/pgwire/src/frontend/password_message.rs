//! The `p` message: a password, or a GSSAPI or SASL response, depending on what the server
//! asked for.
//!
//! Only the authentication exchange knows which, so the body stays opaque here.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::put_cstr;
use crate::{Decode, Encode, FrontendTag, WireError};

/// An authentication response, body untouched.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordMessage {
    /// The body: a NUL-terminated password, or SASL or GSSAPI data.
    pub data: Bytes,
}

impl PasswordMessage {
    /// A cleartext or md5 password: the string and its terminating NUL.
    pub fn password(password: &str) -> Self {
        let mut buf = BytesMut::with_capacity(password.len() + 1);
        put_cstr(&mut buf, password);
        Self { data: buf.freeze() }
    }

    /// SASLInitialResponse: the chosen mechanism, then the length-prefixed client-first data.
    ///
    /// # Panics
    ///
    /// If `data` is longer than `i32::MAX` bytes.
    pub fn sasl_initial(mechanism: &str, data: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(mechanism.len() + 5 + data.len());
        put_cstr(&mut buf, mechanism);
        buf.put_i32(i32::try_from(data.len()).expect("SASL data too long"));
        buf.put_slice(data);
        Self { data: buf.freeze() }
    }

    /// SASLResponse: the data alone.
    pub fn sasl_response(data: &[u8]) -> Self {
        Self { data: Bytes::copy_from_slice(data) }
    }

    /// Reads the body as a NUL-terminated password, as sent after
    /// AuthenticationCleartextPassword.
    ///
    /// # Errors
    ///
    /// [`WireError::Malformed`] without the terminator or with bytes after it,
    /// [`WireError::InvalidUtf8`] for a password that is not UTF-8.
    pub fn cleartext(&self) -> Result<&str, WireError> {
        match self.data.split_last() {
            Some((0, password)) if !password.contains(&0) => Ok(std::str::from_utf8(password)?),
            _ => Err(WireError::Malformed("password is not one NUL-terminated string")),
        }
    }
}

impl Encode for PasswordMessage {
    const TAG: u8 = FrontendTag::Password as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.data);
    }
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
        assert_eq!(p.cleartext().unwrap(), "hunter2");
    }

    #[test]
    fn encodes_passwords_and_sasl_messages() {
        let msg = PasswordMessage::password("pw").to_message();
        assert_eq!(&msg.frame()[..], b"p\0\0\0\x07pw\0");
        assert_eq!(msg.decode::<PasswordMessage>().unwrap().cleartext().unwrap(), "pw");
        let msg = PasswordMessage::sasl_initial("SCRAM-SHA-256", b"n,,n=,r=x").to_message();
        assert_eq!(msg.payload(), b"SCRAM-SHA-256\0\0\0\0\x09n,,n=,r=x");
        assert_eq!(PasswordMessage::sasl_response(b"c=biws").to_message().payload(), b"c=biws");
    }

    #[test]
    fn cleartext_needs_exactly_one_terminator() {
        for body in [&b""[..], b"pw", b"p\0w\0", b"pw\0\0"] {
            let p = PasswordMessage { data: Bytes::copy_from_slice(body) };
            assert!(p.cleartext().is_err(), "{body:?}");
        }
    }
}
