//! The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: no channel
//! binding (`n,,`), and an empty user name in the client-first message (the server takes the
//! user from the StartupMessage).
//!
//! The exchange is three steps, each a pure function of what came before, so it is tested on
//! the RFC's vectors without a server:
//! 1. [`ScramClient::new`] builds the client-first message (sent in SASLInitialResponse);
//! 2. [`ScramClient::client_final`] reads the server-first message (AuthenticationSASLContinue)
//!    and returns the client-final message (SASLResponse) with the proof;
//! 3. [`ScramClient::verify_server_final`] checks the server's signature
//!    (AuthenticationSASLFinal), so a server that does not know the password cannot pose as
//!    one that does.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The mechanism name, as listed in AuthenticationSASL.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Iteration counts above this are refused: a server asking for more is broken or hostile,
/// and would make the connector spend seconds of CPU per login.
const MAX_ITERATIONS: u32 = 1_000_000;

/// The GS2 header without channel binding, and its base64 (`c=` attribute).
const GS2_HEADER: &str = "n,,";
const GS2_HEADER_B64: &str = "biws";

type HmacSha256 = Hmac<Sha256>;

/// Why a SCRAM exchange failed. Carries no secret and no message contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The server's message does not have the RFC's structure.
    #[error("malformed SCRAM message from the server: {0}")]
    Malformed(&'static str),
    /// The server's nonce does not extend ours (a replay or a confused server).
    #[error("the server's SCRAM nonce does not start with the client's")]
    NonceMismatch,
    /// The iteration count is zero or above the limit.
    #[error("SCRAM iteration count {0} is out of range")]
    Iterations(u32),
    /// The server reported an error (`e=`), such as `invalid-proof`.
    #[error("the server refused the SCRAM proof: {0}")]
    Server(String),
    /// The server's signature is wrong: it does not know the password.
    #[error("the server's SCRAM signature is invalid")]
    BadServerSignature,
    /// [`ScramClient::verify_server_final`] before [`ScramClient::client_final`].
    #[error("SCRAM messages out of order")]
    OutOfOrder,
}

/// One SCRAM-SHA-256 exchange, client side.
pub struct ScramClient {
    password: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
    /// Set by [`client_final`](Self::client_final): the signature the server must send.
    server_signature: Option<[u8; 32]>,
}

/// Hides the password and the keys derived from it.
impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient").field("client_nonce", &self.client_nonce).finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `user` (PostgreSQL: empty) with `password` and a fresh random
    /// `nonce` of printable ASCII without commas (base64 of 18 random bytes is typical).
    ///
    /// The password is prepared with SASLprep; like libpq, a password SASLprep refuses is
    /// used as it is.
    pub fn new(user: &str, password: &str, nonce: &str) -> Self {
        let password = match stringprep::saslprep(password) {
            Ok(prepared) => prepared.into_owned().into_bytes(),
            Err(_) => password.as_bytes().to_vec(),
        };
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={user},r={nonce}");
        Self { password, client_nonce: nonce.to_owned(), client_first_bare, server_signature: None }
    }

    /// The client-first message, for SASLInitialResponse.
    pub fn client_first(&self) -> String {
        format!("{GS2_HEADER}{}", self.client_first_bare)
    }

    /// Reads the server-first message and returns the client-final message, with the proof.
    ///
    /// # Errors
    ///
    /// [`ScramError::Malformed`], [`ScramError::NonceMismatch`] or [`ScramError::Iterations`].
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("server-first is not UTF-8"))?;
        let mut parts = server_first.split(',');
        let nonce = attribute(parts.next(), 'r').ok_or(ScramError::Malformed("server-first lacks r="))?;
        let salt = attribute(parts.next(), 's').ok_or(ScramError::Malformed("server-first lacks s="))?;
        let iterations = attribute(parts.next(), 'i').ok_or(ScramError::Malformed("server-first lacks i="))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = STANDARD.decode(salt).map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 =
            iterations.parse().map_err(|_| ScramError::Malformed("iteration count is not a number"))?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(ScramError::Iterations(iterations));
        }

        let salted = hi(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c={GS2_HEADER_B64},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature) {
            *p ^= s;
        }
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// Checks the server-final message.
    ///
    /// # Errors
    ///
    /// [`ScramError::Server`] for an `e=` answer, [`ScramError::BadServerSignature`],
    /// [`ScramError::Malformed`], or [`ScramError::OutOfOrder`].
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = self.server_signature.ok_or(ScramError::OutOfOrder)?;
        let server_final =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("server-final is not UTF-8"))?;
        let first = server_final.split(',').next();
        if let Some(error) = attribute(first, 'e') {
            return Err(ScramError::Server(error.to_owned()));
        }
        let signature = attribute(first, 'v').ok_or(ScramError::Malformed("server-final lacks v="))?;
        let signature = STANDARD.decode(signature).map_err(|_| ScramError::Malformed("signature is not base64"))?;
        if bool::from(signature.ct_eq(&expected)) { Ok(()) } else { Err(ScramError::BadServerSignature) }
    }
}

/// The value of `name=value` if `part` is that attribute.
fn attribute(part: Option<&str>, name: char) -> Option<&str> {
    let part = part?;
    let rest = part.strip_prefix(name)?;
    rest.strip_prefix('=')
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC-SHA-256 and one block of output.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let key = HmacSha256::new_from_slice(password).expect("HMAC takes any key length");
    let mut mac = key.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut result = u;
    for _ in 1..iterations {
        let mut mac = key.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (r, x) in result.iter_mut().zip(u) {
            *r ^= x;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3.
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    #[test]
    fn rfc_7677_test_vector() {
        let mut client = ScramClient::new("user", "pencil", NONCE);
        assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_final(SERVER_FIRST.as_bytes()).unwrap(), CLIENT_FINAL);
        client.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn a_wrong_password_gives_another_proof_and_rejects_the_server() {
        let mut client = ScramClient::new("user", "pencil2", NONCE);
        assert_ne!(client.client_final(SERVER_FIRST.as_bytes()).unwrap(), CLIENT_FINAL);
        assert_eq!(client.verify_server_final(SERVER_FINAL.as_bytes()), Err(ScramError::BadServerSignature));
    }

    #[test]
    fn hostile_or_broken_servers_are_refused() {
        let mut client = ScramClient::new("", "pencil", NONCE);
        assert_eq!(client.verify_server_final(SERVER_FINAL.as_bytes()), Err(ScramError::OutOfOrder));
        assert_eq!(client.client_final(b"r=other,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), Err(ScramError::NonceMismatch));
        assert_eq!(client.client_final(b"r=rOprNGfwEbeRWgbNEkqO,s=AA==,i=1"), Err(ScramError::NonceMismatch));
        assert_eq!(client.client_final(b"r=rOprNGfwEbeRWgbNEkqOx,s=AA==,i=0"), Err(ScramError::Iterations(0)));
        assert_eq!(
            client.client_final(b"r=rOprNGfwEbeRWgbNEkqOx,s=AA==,i=99999999"),
            Err(ScramError::Iterations(99_999_999))
        );
        assert!(matches!(client.client_final(b"s=AA==,i=1"), Err(ScramError::Malformed(_))));
        assert!(matches!(client.client_final(b"r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=1"), Err(ScramError::Malformed(_))));
        assert!(matches!(client.client_final(b"\xff"), Err(ScramError::Malformed(_))));
        client.client_final(b"r=rOprNGfwEbeRWgbNEkqOx,s=AA==,i=1").unwrap();
        assert_eq!(client.verify_server_final(b"e=invalid-proof"), Err(ScramError::Server("invalid-proof".into())));
        assert!(matches!(client.verify_server_final(b"x=1"), Err(ScramError::Malformed(_))));
    }

    #[test]
    fn user_names_are_escaped_and_debug_hides_the_password() {
        let client = ScramClient::new("a=b,c", "hunter2", "n0nce");
        assert_eq!(client.client_first(), "n,,n=a=3Db=2Cc,r=n0nce");
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn hi_matches_pbkdf2_hmac_sha256() {
        // RFC 7914, section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1), first 32 bytes.
        let expected = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc";
        let got: String = hi(b"passwd", b"salt", 1).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expected);
    }
}
