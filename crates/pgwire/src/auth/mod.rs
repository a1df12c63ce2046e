//! The client side of PostgreSQL's password authentication, for a proxy that logs in to the
//! database itself: the md5 answer and a SCRAM-SHA-256 exchange. Pure functions of their
//! inputs (the caller supplies the nonce), so they are tested on published vectors.

mod scram;

pub use scram::{SCRAM_SHA_256, ScramClient, ScramError};

use md5::{Digest, Md5};

/// The answer to AuthenticationMD5Password: `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&Md5::new().chain_update(password).chain_update(user).finalize());
    let outer = Md5::new().chain_update(inner).chain_update(salt).finalize();
    format!("md5{}", hex(&outer))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_answer_matches_postgres() {
        // SELECT 'md5' || md5(md5('secret' || 'alice') || 'abcd'), computed by PostgreSQL.
        assert_eq!(md5_password("alice", "secret", *b"abcd"), "md5c90bcafc0a2b54511742383e34d5dc9d");
    }
}
