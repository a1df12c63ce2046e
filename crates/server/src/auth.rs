//! API keys: generation, storage as hashes, and checking on every request.
//!
//! A key reads `gh_<prefix>_<secret>`. The prefix is public (it names the key
//! in listings and logs); the secret carries 238 bits of entropy. Only the
//! SHA-256 of the whole key is stored, and hashes are compared in constant
//! time. A fast hash suffices because keys are random, not chosen by people.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use connectrpc::interceptor::{UnaryRequest, UnaryResponse};
use connectrpc::{ConnectError, ErrorCode, Interceptor, Next};
use gatehouse_core::time::now_micros;
use gatehouse_core::{Caller, Micros, OrgId, Role};
use gatehouse_store::{NewApiKey, Store};
use rand::Rng;
use rand::distributions::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::store_error;

const KEY_PREFIX: &str = "gh_";
const PREFIX_LEN: usize = 10;
const SECRET_LEN: usize = 40;
/// Writing `last_used` on every request would turn reads into writes.
const TOUCH_INTERVAL_US: Micros = 60_000_000;

/// A newly created key: `secret` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: String,
    pub prefix: String,
}

fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Splits `gh_<prefix>_<secret>` into its public prefix, or `None` when the
/// text cannot be a key of ours.
fn key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == PREFIX_LEN && secret.len() == SECRET_LEN).then_some(prefix)
}

/// Creates and stores a key for `org`, returning it for display once.
pub async fn create_api_key(
    store: &dyn Store,
    org: OrgId,
    name: &str,
    role: Role,
) -> Result<CreatedKey, gatehouse_store::StoreError> {
    let prefix = random_alphanumeric(PREFIX_LEN);
    let key = format!("{KEY_PREFIX}{prefix}_{}", random_alphanumeric(SECRET_LEN));
    store
        .insert_api_key(&NewApiKey {
            org,
            prefix: prefix.clone(),
            secret_hash: hash_key(&key),
            name: name.to_owned(),
            role,
            created: now_micros(),
        })
        .await?;
    Ok(CreatedKey { key, prefix })
}

/// Checks the API key of every `core.v1.SessionsService` call and puts the
/// [`Caller`] into the request extensions for the handler.
pub struct Authenticator {
    store: Arc<dyn Store>,
    last_touch: Mutex<HashMap<String, Micros>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, last_touch: Mutex::new(HashMap::new()) }
    }

    /// Resolves the caller from the request headers.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, ConnectError> {
        let key = presented_key(headers)?;
        let unknown =
            || unauthenticated("the API key is not valid: check it, or create one with `gatehouse keys create`");
        let prefix = key_prefix(key).ok_or_else(unknown)?;
        let stored = self.store.find_api_key(prefix).await.map_err(store_error)?.ok_or_else(unknown)?;
        if !bool::from(hash_key(key).ct_eq(&stored.secret_hash)) {
            return Err(unknown());
        }
        if stored.revoked {
            return Err(unauthenticated("this API key has been revoked"));
        }
        self.touch(&stored.prefix);
        Ok(Caller { org: stored.org, role: stored.role, key_prefix: stored.prefix })
    }

    /// Records the key's last use, at most once a minute per key.
    fn touch(&self, prefix: &str) {
        let now = now_micros();
        {
            let mut last = self.last_touch.lock().unwrap_or_else(|e| e.into_inner());
            match last.get(prefix) {
                Some(at) if now - at < TOUCH_INTERVAL_US => return,
                _ => last.insert(prefix.to_owned(), now),
            };
        }
        let store = self.store.clone();
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            if let Err(err) = store.touch_api_key(&prefix, now).await {
                tracing::warn!(%err, key = %prefix, "could not record key use");
            }
        });
    }
}

fn unauthenticated(message: &str) -> ConnectError {
    ConnectError::new(ErrorCode::Unauthenticated, message)
}

/// The key from `X-API-KEY` or `Authorization: Bearer`.
fn presented_key(headers: &http::HeaderMap) -> Result<&str, ConnectError> {
    if let Some(value) = headers.get("x-api-key") {
        return value.to_str().map(str::trim).map_err(|_| unauthenticated("the X-API-KEY header is not valid text"));
    }
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| unauthenticated("the Authorization header is not valid text"))?;
        let mut parts = value.trim().splitn(2, ' ');
        return match (parts.next(), parts.next()) {
            (Some(scheme), Some(token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
            _ => Err(unauthenticated("the Authorization header must read `Bearer <API key>`")),
        };
    }
    Err(unauthenticated("missing API key: send it in the X-API-KEY header or as `Authorization: Bearer <key>`"))
}

/// The role a method of the sessions service needs, `None` for paths the
/// interceptor does not guard (health, reflection).
fn required_role(path: &str) -> Option<Role> {
    let method = path.strip_prefix("/core.v1.SessionsService/")?;
    Some(match method {
        "CreateSessionTermination" | "CancelSession" => Role::Admin,
        _ => Role::Reader,
    })
}

#[connectrpc::async_trait]
impl Interceptor for Authenticator {
    async fn intercept_unary(&self, mut req: UnaryRequest, next: Next<'_>) -> Result<UnaryResponse, ConnectError> {
        let Some(needed) = req.ctx.path().and_then(required_role) else {
            return next.run(req).await;
        };
        let caller = self.authenticate(req.ctx.headers()).await?;
        if !caller.role.allows(needed) {
            return Err(ConnectError::new(
                ErrorCode::PermissionDenied,
                format!("this API key has the {} role; this method needs an {} key", caller.role, needed),
            ));
        }
        req.ctx.extensions_mut().insert(caller);
        next.run(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_only_from_well_formed_keys() {
        let key = format!("gh_{}_{}", "a".repeat(PREFIX_LEN), "b".repeat(SECRET_LEN));
        assert_eq!(key_prefix(&key), Some("aaaaaaaaaa"));
        assert_eq!(key_prefix("gh_short_secret"), None);
        assert_eq!(key_prefix(""), None);
        assert_eq!(key_prefix(&key[1..]), None);
    }

    #[test]
    fn bearer_and_header_forms() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "bearer  k1 ".parse().unwrap());
        assert_eq!(presented_key(&headers).unwrap(), "k1");
        headers.insert("x-api-key", "k2".parse().unwrap());
        assert_eq!(presented_key(&headers).unwrap(), "k2");
        let mut basic = http::HeaderMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&basic).unwrap_err().code, ErrorCode::Unauthenticated);
    }
}
