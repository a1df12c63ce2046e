//! Authentication (`R`): one type byte for every step of every method, told apart by an Int32
//! code.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::put_cstr;
use crate::cursor::Cursor;
use crate::{BackendTag, Decode, Encode, WireError};

/// An authentication request, or the final `Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthenticationRequest {
    /// Code 0: authentication succeeded.
    Ok,
    /// Code 2: Kerberos V5, unsupported by PostgreSQL since 9.4.
    KerberosV5,
    /// Code 3: send the password in clear text.
    CleartextPassword,
    /// Code 5: send the MD5-hashed password with this salt.
    Md5Password {
        /// The salt to hash with.
        salt: [u8; 4],
    },
    /// Code 7: start GSSAPI.
    Gss,
    /// Code 8: GSSAPI or SSPI data.
    GssContinue(Bytes),
    /// Code 9: start SSPI.
    Sspi,
    /// Code 10: start SASL with one of these mechanisms, such as `SCRAM-SHA-256`.
    Sasl {
        /// Mechanism names in the server's order of preference.
        mechanisms: Vec<String>,
    },
    /// Code 11: a SASL challenge.
    SaslContinue(Bytes),
    /// Code 12: the SASL outcome, with additional data.
    SaslFinal(Bytes),
}

impl AuthenticationRequest {
    fn code(&self) -> i32 {
        match self {
            Self::Ok => 0,
            Self::KerberosV5 => 2,
            Self::CleartextPassword => 3,
            Self::Md5Password { .. } => 5,
            Self::Gss => 7,
            Self::GssContinue(_) => 8,
            Self::Sspi => 9,
            Self::Sasl { .. } => 10,
            Self::SaslContinue(_) => 11,
            Self::SaslFinal(_) => 12,
        }
    }
}

impl Decode for AuthenticationRequest {
    const TAG: u8 = BackendTag::Authentication as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        let mut c = Cursor::new(body);
        let request = match c.i32()? {
            0 => Self::Ok,
            2 => Self::KerberosV5,
            3 => Self::CleartextPassword,
            5 => {
                let salt = c.bytes(4)?;
                Self::Md5Password { salt: [salt[0], salt[1], salt[2], salt[3]] }
            }
            7 => Self::Gss,
            8 => return Ok(Self::GssContinue(c.rest())),
            9 => Self::Sspi,
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    // The list ends with an empty name.
                    let name = c.cstr()?;
                    if name.is_empty() {
                        break;
                    }
                    mechanisms.push(name);
                }
                Self::Sasl { mechanisms }
            }
            11 => return Ok(Self::SaslContinue(c.rest())),
            12 => return Ok(Self::SaslFinal(c.rest())),
            _ => return Err(WireError::Malformed("unknown authentication request code")),
        };
        c.finish()?;
        Ok(request)
    }
}

impl Encode for AuthenticationRequest {
    const TAG: u8 = BackendTag::Authentication as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i32(self.code());
        match self {
            Self::Md5Password { salt } => buf.put_slice(salt),
            Self::GssContinue(data) | Self::SaslContinue(data) | Self::SaslFinal(data) => {
                buf.put_slice(data);
            }
            Self::Sasl { mechanisms } => {
                for name in mechanisms {
                    put_cstr(buf, name);
                }
                buf.put_u8(0);
            }
            Self::Ok | Self::KerberosV5 | Self::CleartextPassword | Self::Gss | Self::Sspi => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &'static [u8]) -> Result<AuthenticationRequest, WireError> {
        AuthenticationRequest::decode_body(Bytes::from_static(body))
    }

    #[test]
    fn decodes_each_kind() {
        assert_eq!(decode(b"\0\0\0\0").unwrap(), AuthenticationRequest::Ok);
        assert_eq!(decode(b"\0\0\0\x03").unwrap(), AuthenticationRequest::CleartextPassword);
        assert_eq!(
            decode(b"\0\0\0\x05\x01\x02\x03\x04").unwrap(),
            AuthenticationRequest::Md5Password { salt: [1, 2, 3, 4] }
        );
        assert_eq!(
            decode(b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").unwrap(),
            AuthenticationRequest::Sasl { mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()] }
        );
        assert_eq!(
            decode(b"\0\0\0\x0br=abc,s=xyz,i=4096").unwrap(),
            AuthenticationRequest::SaslContinue(Bytes::from_static(b"r=abc,s=xyz,i=4096"))
        );
        assert_eq!(decode(b"\0\0\0\x0cv=sig").unwrap(), AuthenticationRequest::SaslFinal(Bytes::from_static(b"v=sig")));
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [&b"\0\0\0"[..], b"\0\0\0\0x", b"\0\0\0\x05\x01\x02", b"\0\0\0\x0aSCRAM-SHA-256\0", b"\0\0\0\x63"] {
            assert!(decode(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn round_trips() {
        for request in [
            AuthenticationRequest::Ok,
            AuthenticationRequest::CleartextPassword,
            AuthenticationRequest::Md5Password { salt: *b"salt" },
            AuthenticationRequest::Sasl { mechanisms: vec!["SCRAM-SHA-256".into()] },
            AuthenticationRequest::SaslFinal(Bytes::from_static(b"v=x")),
        ] {
            let msg = request.to_message();
            assert_eq!(msg.decode::<AuthenticationRequest>().unwrap(), request);
        }
        assert_eq!(&AuthenticationRequest::Ok.to_message().frame()[..], b"R\0\0\0\x08\0\0\0\0");
    }
}
