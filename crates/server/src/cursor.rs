//! Signed keyset cursors.
//!
//! A cursor carries a position in a listing (sort key value and session id),
//! the instant the walk started (so `now-…` and active durations stay fixed
//! across pages), the direction, and a fingerprint of the query, sort and
//! window it belongs to. It is signed with HMAC-SHA256 under a secret kept in
//! the store, so replicas sharing a database accept each other's cursors and
//! nobody can forge or retarget one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_store::StatementKey;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const FINGERPRINT_LEN: usize = 16;
const MAX_ID_LEN: usize = 256;

/// Where a page walk stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Whether this cursor fetches the page before `id` rather than after.
    pub backward: bool,
    pub now: i64,
    pub key: i64,
    pub id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("the cursor is malformed; pass a cursor exactly as an earlier response returned it")]
    Malformed,
    #[error("the cursor was not issued by this server or was altered")]
    BadSignature,
    // One message whatever differs, so that it tells a key nothing of another organization.
    #[error(
        "the cursor is not valid for this request: it was issued for a different query, sort, \
         time window or organization; repeat the request without a cursor"
    )]
    OtherQuery,
}

/// Signs and checks cursors.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

/// Identifies the listing a cursor belongs to.
pub fn fingerprint(parts: &[&str]) -> [u8; FINGERPRINT_LEN] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut out = [0; FINGERPRINT_LEN];
    out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    out
}

/// Where a page of a session's statements starts: after the statement at `after`, the
/// `listed`-th, so that the page's are numbered on from it without counting those before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementsPosition {
    pub after: StatementKey,
    pub listed: u64,
}

impl CursorCodec {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// The page token of a session's statements after `position`: signed with the session's
    /// id, so that one session's token is refused on another, and none can be made up.
    pub fn encode_statements_page(&self, session_id: &str, position: StatementsPosition) -> String {
        let StatementsPosition { after: (start, seq), listed } = position;
        let position = format!("{start}.{seq}.{listed}");
        format!("{position}.{}", URL_SAFE_NO_PAD.encode(self.statements_page_tag(session_id, &position)))
    }

    /// The position a page token of `session_id`'s statements names, if it is one.
    pub fn decode_statements_page(&self, session_id: &str, token: &str) -> Option<StatementsPosition> {
        let (position, tag) = token.rsplit_once('.')?;
        let given = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !bool::from(given.as_slice().ct_eq(&self.statements_page_tag(session_id, position))) {
            return None;
        }
        let mut parts = position.splitn(3, '.');
        let start = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let listed = parts.next()?.parse().ok()?;
        Some(StatementsPosition { after: (start, seq), listed })
    }

    fn statements_page_tag(&self, session_id: &str, position: &str) -> [u8; TAG_LEN] {
        // Told apart from a listing cursor's body, which starts with its version byte.
        self.tag(&[b"statements\0", session_id.as_bytes(), b"\0", position.as_bytes()].concat())
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut out = [0; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    pub fn encode(&self, cursor: &Cursor, listing: &[u8; FINGERPRINT_LEN]) -> String {
        let mut body = Vec::with_capacity(64 + cursor.id.len());
        body.push(VERSION);
        body.push(u8::from(cursor.backward));
        body.extend_from_slice(&cursor.now.to_be_bytes());
        body.extend_from_slice(&cursor.key.to_be_bytes());
        body.extend_from_slice(listing);
        body.extend_from_slice(cursor.id.as_bytes());
        let tag = self.tag(&body);
        body.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(body)
    }

    pub fn decode(&self, text: &str, listing: &[u8; FINGERPRINT_LEN]) -> Result<Cursor, CursorError> {
        const HEADER: usize = 2 + 8 + 8 + FINGERPRINT_LEN;
        if text.len() > 4 * (HEADER + MAX_ID_LEN + TAG_LEN) {
            return Err(CursorError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| CursorError::Malformed)?;
        if raw.len() < HEADER + TAG_LEN || raw[0] != VERSION {
            return Err(CursorError::Malformed);
        }
        let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
        let expected = self.tag(body);
        if !bool::from(expected.as_slice().ct_eq(tag)) {
            return Err(CursorError::BadSignature);
        }
        if &body[18..HEADER] != listing {
            return Err(CursorError::OtherQuery);
        }
        let backward = match body[1] {
            0 => false,
            1 => true,
            _ => return Err(CursorError::Malformed),
        };
        let int = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let id = std::str::from_utf8(&body[HEADER..]).map_err(|_| CursorError::Malformed)?;
        Ok(Cursor { backward, now: int(2), key: int(10), id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        Cursor { backward: true, now: 1_700_000_000_000_000, key: -5, id: "0190-abc".into() }
    }

    #[test]
    fn round_trip() {
        let codec = CursorCodec::new(b"secret".to_vec());
        let listing = fingerprint(&["user:alice", "start_time:desc"]);
        let text = codec.encode(&sample(), &listing);
        assert_eq!(codec.decode(&text, &listing), Ok(sample()));
    }

    #[test]
    fn rejects_other_listing_tampering_and_foreign_keys() {
        let codec = CursorCodec::new(b"secret".to_vec());
        let listing = fingerprint(&["a"]);
        let text = codec.encode(&sample(), &listing);
        assert_eq!(codec.decode(&text, &fingerprint(&["b"])), Err(CursorError::OtherQuery));
        let foreign = CursorCodec::new(b"other".to_vec());
        assert_eq!(foreign.decode(&text, &listing), Err(CursorError::BadSignature));
        let mut raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        raw[12] ^= 1;
        assert_eq!(codec.decode(&URL_SAFE_NO_PAD.encode(raw), &listing), Err(CursorError::BadSignature));
        assert_eq!(codec.decode("not a cursor!", &listing), Err(CursorError::Malformed));
        assert_eq!(codec.decode("", &listing), Err(CursorError::Malformed));
    }

    #[test]
    fn fingerprint_separates_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
