//! Keys: generation, storage as hashes, and checking on every request.
//!
//! An API key reads `gh_<prefix>_<secret>`, a connector key
//! `ghc_<prefix>_<secret>`. The prefix is public (it names the key in
//! listings and logs); the secret carries 238 bits of entropy. Only the
//! SHA-256 of the whole key is stored, and hashes are compared in constant
//! time. A fast hash suffices because keys are random, not chosen by people.
//! An API key reads sessions; a connector key reports its own sessions and
//! nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use connectrpc::{ConnectError, ErrorCode};
use gatehouse_core::time::now_micros;
use gatehouse_core::{Caller, Micros, OrgId, Role};
use gatehouse_store::{NewApiKey, Store};
use rand::Rng;
use rand::distributions::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::store_error;

/// The two kinds of keys, told apart by their first letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Api,
    Connector,
}

impl KeyKind {
    fn marker(self) -> &'static str {
        match self {
            KeyKind::Api => "gh_",
            KeyKind::Connector => "ghc_",
        }
    }
}
const PREFIX_LEN: usize = 10;
const SECRET_LEN: usize = 40;
/// Writing `last_used` on every request would turn reads into writes.
const TOUCH_INTERVAL_US: Micros = 60_000_000;

/// A newly created key: shown once and never stored.
#[derive(Clone)]
pub struct CreatedKey {
    pub key: String,
    pub prefix: String,
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.debug_struct("CreatedKey").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Generates a key of `kind`.
pub fn new_key(kind: KeyKind) -> CreatedKey {
    let prefix = random_alphanumeric(PREFIX_LEN);
    let key = format!("{}{prefix}_{}", kind.marker(), random_alphanumeric(SECRET_LEN));
    CreatedKey { hash: hash_key(&key), key, prefix }
}

pub(crate) fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

pub(crate) fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Splits a key into its kind and public prefix, or `None` when the text
/// cannot be a key of ours.
fn key_prefix(key: &str) -> Option<(KeyKind, &str)> {
    let (kind, rest) = [KeyKind::Api, KeyKind::Connector]
        .into_iter()
        .find_map(|kind| key.strip_prefix(kind.marker()).map(|rest| (kind, rest)))?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == PREFIX_LEN && secret.len() == SECRET_LEN).then_some((kind, prefix))
}

/// Whether the token starts as our keys do: meant as a Gatehouse key, well-formed or not.
fn marked_as_gatehouse_key(token: &str) -> bool {
    [KeyKind::Api, KeyKind::Connector].into_iter().any(|kind| token.starts_with(kind.marker()))
}

/// Creates and stores a key for `org`, returning it for display once.
pub async fn create_api_key(
    store: &dyn Store,
    org: OrgId,
    name: &str,
    role: Role,
) -> Result<CreatedKey, gatehouse_store::StoreError> {
    let created = new_key(KeyKind::Api);
    store
        .insert_api_key(&NewApiKey {
            org,
            prefix: created.prefix.clone(),
            secret_hash: created.hash.clone(),
            name: name.to_owned(),
            role,
            created: now_micros(),
        })
        .await?;
    Ok(created)
}

/// A connector calling the connector service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorCaller {
    pub org: OrgId,
    pub connector_id: String,
    pub connector_name: String,
}

/// Checks the API key of every `core.v1.SessionsService` call and puts the
/// [`Caller`] into the request extensions for the handler.
pub struct Authenticator {
    store: Arc<dyn Store>,
    last_touch: Mutex<HashMap<String, Micros>>,
    refusals: RefusalLog,
}

/// Refused calls logged a minute: past these they are only counted (`/metrics` counts every
/// call by its outcome), and how many went unlogged is said once the minute is over, so that a
/// client without a key cannot fill the log.
const LOGGED_REFUSALS_PER_MINUTE: u32 = 20;

/// The minute refusals are logged in: when it began, how many were logged, how many not.
#[derive(Debug)]
struct RefusalLog(Mutex<(std::time::Instant, u32, u64)>);

impl RefusalLog {
    fn new() -> Self {
        Self(Mutex::new((std::time::Instant::now(), 0, 0)))
    }

    /// Whether a refusal is to be logged now.
    fn admit(&self) -> bool {
        let mut window = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (began, logged, unlogged) = &mut *window;
        if began.elapsed() >= std::time::Duration::from_secs(60) {
            if *unlogged > 0 {
                tracing::info!(unlogged = *unlogged, "refused calls left out of the log in the minute before");
            }
            (*began, *logged, *unlogged) = (std::time::Instant::now(), 0, 0);
        }
        if *logged < LOGGED_REFUSALS_PER_MINUTE {
            *logged += 1;
            return true;
        }
        if *unlogged == 0 {
            tracing::info!(
                "over {LOGGED_REFUSALS_PER_MINUTE} refused calls this minute: the rest are counted, not logged"
            );
        }
        *unlogged += 1;
        false
    }
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, last_touch: Mutex::new(HashMap::new()), refusals: RefusalLog::new() }
    }

    /// Resolves the caller of the sessions API from the request headers.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, ConnectError> {
        let key = presented_key(headers)?;
        match key_prefix(key) {
            Some((KeyKind::Api, prefix)) => self.api_key(key, prefix).await,
            // Told apart only once it is known to be one: a revoked or made-up key is not
            // valid, whatever its shape.
            Some((KeyKind::Connector, prefix)) => {
                self.connector_key(key, prefix).await?;
                Err(denied("a connector key cannot read sessions; use an API key"))
            }
            // Said by its shape alone, valid or not: nothing is told of the token itself.
            None if key.starts_with(crate::identity::TOKEN_MARKER) => Err(unauthenticated(
                "this is an access token (ght_...), which logs a user in to a database through a connector; the API \
                 takes an API key (gh_...): create one with `gatehouse keys create`",
            )),
            None => Err(unauthenticated(UNKNOWN_API_KEY)),
        }
    }

    /// The caller an API key (`gh_PREFIX_secret`) stands for.
    async fn api_key(&self, key: &str, prefix: &str) -> Result<Caller, ConnectError> {
        let unknown = || unauthenticated(UNKNOWN_API_KEY);
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

    /// Resolves the connector calling the connector service.
    pub async fn authenticate_connector(&self, headers: &http::HeaderMap) -> Result<ConnectorCaller, ConnectError> {
        let key = presented_key(headers)?;
        match key_prefix(key) {
            Some((KeyKind::Connector, prefix)) => self.connector_key(key, prefix).await,
            Some((KeyKind::Api, prefix)) => {
                self.api_key(key, prefix).await?;
                Err(denied("an API key cannot report sessions; use the connector's key"))
            }
            None => Err(unauthenticated(UNKNOWN_CONNECTOR_KEY)),
        }
    }

    /// The connector a connector key (`ghc_PREFIX_secret`) stands for.
    async fn connector_key(&self, key: &str, prefix: &str) -> Result<ConnectorCaller, ConnectError> {
        let unknown = || unauthenticated(UNKNOWN_CONNECTOR_KEY);
        let stored = self.store.find_connector(prefix).await.map_err(store_error)?.ok_or_else(unknown)?;
        if !bool::from(hash_key(key).ct_eq(&stored.key_hash)) {
            return Err(unknown());
        }
        // Only to whoever holds the key, whose secret was just checked: a made-up key is told
        // no more than `unknown`.
        if stored.revoked.is_some() {
            return Err(unauthenticated(REVOKED_CONNECTOR_KEY));
        }
        if stored.key_until.is_some_and(|until| until <= now_micros()) {
            return Err(unauthenticated(
                "this connector key was replaced (`gatehouse connectors rotate-key`) and its overlap has \
                 ended: use the new key",
            ));
        }
        Ok(ConnectorCaller { org: stored.org, connector_id: stored.id, connector_name: stored.name })
    }

    /// Authenticates a call by its path and records the caller in `extensions`.
    pub(crate) async fn admit(
        &self,
        path: Option<&str>,
        headers: &http::HeaderMap,
        extensions: &mut http::Extensions,
    ) -> Result<(), ConnectError> {
        let admitted = self.check(path, headers, extensions).await;
        if let Err(error) = &admitted {
            // For the security log: which key (its public prefix, when the
            // text is shaped like one of ours) was refused, and why.
            let key = presented_key(headers).ok().and_then(key_prefix).map(|(_, prefix)| prefix);
            let (method, code) = (path.unwrap_or_default(), error.code.as_str());
            let reason = error.message.as_deref().unwrap_or_default();
            // Where a burst of guesses comes from.
            let client = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string());
            let client = client.as_deref().unwrap_or_default();
            // A key that cannot be checked (the store unreachable) is an outage, not a refusal.
            if error.code == ErrorCode::Unavailable || error.code == ErrorCode::DeadlineExceeded {
                tracing::warn!(method, key, code, reason, client, "could not check a call's key");
            } else if self.refusals.admit() {
                tracing::info!(method, key, code, reason, client, "refused a call");
            }
        }
        admitted
    }

    async fn check(
        &self,
        path: Option<&str>,
        headers: &http::HeaderMap,
        extensions: &mut http::Extensions,
    ) -> Result<(), ConnectError> {
        match path.map(Guard::of).unwrap_or(Guard::Open) {
            Guard::Open => {}
            Guard::Api(needed) => {
                let caller = self.authenticate(headers).await?;
                if !caller.role.allows(needed) {
                    return Err(denied(&format!(
                        "this API key has the {} role; this method needs an {} key",
                        caller.role, needed
                    )));
                }
                extensions.insert(caller);
            }
            Guard::Connector => {
                extensions.insert(self.authenticate_connector(headers).await?);
            }
        }
        Ok(())
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

const UNKNOWN_API_KEY: &str = "the API key is not valid: check it, or create one with `gatehouse keys create`";
const UNKNOWN_CONNECTOR_KEY: &str = "the connector key is not valid (never issued, or replaced by \
     `gatehouse connectors rotate-key`): use the connector's latest key, or give it a new one with \
     `gatehouse connectors rotate-key`";
const REVOKED_CONNECTOR_KEY: &str = "this connector key was revoked (`gatehouse connectors revoke`): \
     `gatehouse connectors rotate-key` gives the connector a new one";

fn unauthenticated(message: &str) -> ConnectError {
    ConnectError::new(ErrorCode::Unauthenticated, message)
}

fn denied(message: &str) -> ConnectError {
    ConnectError::new(ErrorCode::PermissionDenied, message)
}

/// The key from `X-API-KEY`, else from `Authorization: Bearer`. Two different keys on one
/// request are refused rather than one of them chosen, whether or not either is valid: whoever
/// added the second meant it to count, and which of them is valid must not decide which counts.
/// Beside an `X-API-KEY`, an `Authorization` that is not meant as a Gatehouse key (an
/// identity-aware proxy's token, another scheme) is someone else's: ignored.
fn presented_key(headers: &http::HeaderMap) -> Result<&str, ConnectError> {
    let mut keys = Vec::with_capacity(1);
    for value in headers.get_all("x-api-key") {
        let value =
            value.to_str().map(str::trim).map_err(|_| unauthenticated("the X-API-KEY header is not valid text"))?;
        // An empty one (a client's default header left unset) holds no key.
        if !value.is_empty() {
            keys.push(value);
        }
    }
    let api_key_headers = keys.len();
    let has_api_key_header = api_key_headers > 0;
    let mut other_scheme = false;
    for value in headers.get_all(http::header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            if has_api_key_header {
                continue;
            }
            return Err(unauthenticated("the Authorization header is not valid text"));
        };
        let bearer = value.trim().split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
        match bearer.map(|(_, token)| token.trim()) {
            Some(token) if !has_api_key_header || marked_as_gatehouse_key(token) => keys.push(token),
            Some(_) => {}
            None => other_scheme |= !has_api_key_header,
        }
    }
    match keys.as_slice() {
        [] if other_scheme => Err(unauthenticated("the Authorization header must read `Bearer <API key>`")),
        [] => {
            Err(unauthenticated("missing API key: send it in the X-API-KEY header or as `Authorization: Bearer <key>`"))
        }
        [key, others @ ..] if others.iter().all(|other| other == key) => Ok(key),
        _ => {
            let headers = match (has_api_key_header, keys.len() > api_key_headers) {
                (true, true) => "in X-API-KEY and in Authorization: Bearer",
                (true, false) => "in several X-API-KEY headers",
                (false, _) => "in several Authorization headers",
            };
            Err(unauthenticated(&format!("the request carries more than one API key, {headers}: send one")))
        }
    }
}

/// Who the admission middleware authenticated for this call (a [`Caller`] or a
/// [`ConnectorCaller`]): every handler of a keyed service starts here.
pub(crate) fn authenticated<T: Clone + Send + Sync + 'static>(
    ctx: &connectrpc::RequestContext,
) -> Result<T, ConnectError> {
    ctx.extensions().get::<T>().cloned().ok_or_else(|| {
        ConnectError::new(ErrorCode::Internal, "request reached a handler unauthenticated (this is a bug)")
    })
}

/// What a path requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Health, reflection, `/metrics` and the console's files.
    Open,
    /// An API service's call (the sessions API, our statements and keys services, and any other
    /// but the connectors'), with the role the method needs.
    Api(Role),
    /// The connector service.
    Connector,
}

impl Guard {
    /// Closed unless listed open: a service added later needs a key from the start, whether
    /// or not whoever adds it thinks of this.
    pub(crate) fn of(path: &str) -> Guard {
        let call = path.strip_prefix('/').and_then(|p| p.split_once('/')).filter(|(service, _)| service.contains('.'));
        let Some((service, method)) = call else {
            // Not a call (`/package.Service/Method`): `/health`, `/metrics`, the console.
            return Guard::Open;
        };
        match service {
            "grpc.health.v1.Health"
            | "grpc.reflection.v1.ServerReflection"
            | "grpc.reflection.v1alpha.ServerReflection" => Guard::Open,
            "gatehouse.connector.v1.ConnectorService" => Guard::Connector,
            "core.v1.SessionsService" if matches!(method, "CreateSessionTermination" | "CancelSession") => {
                Guard::Api(Role::Admin)
            }
            _ => Guard::Api(Role::Reader),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_past_a_minutes_share_are_not_logged() {
        let log = RefusalLog::new();
        let logged = (0..LOGGED_REFUSALS_PER_MINUTE + 5).filter(|_| log.admit()).count();
        assert_eq!(logged, LOGGED_REFUSALS_PER_MINUTE as usize);
        log.0.lock().unwrap().0 -= std::time::Duration::from_secs(61);
        assert!(log.admit(), "a new minute");
    }

    #[test]
    fn every_call_needs_a_key_but_health_and_reflection() {
        for (path, guard) in [
            ("/core.v1.SessionsService/GetSession", Guard::Api(Role::Reader)),
            ("/core.v1.SessionsService/CreateSessionTermination", Guard::Api(Role::Admin)),
            ("/core.v1.SessionsService/CancelSession", Guard::Api(Role::Admin)),
            ("/gatehouse.sessions.v1.StatementsService/ListSessionStatements", Guard::Api(Role::Reader)),
            ("/gatehouse.keys.v1.KeysService/GetCallerKey", Guard::Api(Role::Reader)),
            ("/gatehouse.connector.v1.ConnectorService/Report", Guard::Connector),
            // A service nobody listed: closed.
            ("/gatehouse.audit.v1.AuditService/Export", Guard::Api(Role::Reader)),
            ("/grpc.health.v1.Health/Check", Guard::Open),
            ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Guard::Open),
            ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Guard::Open),
            ("/health", Guard::Open),
            ("/metrics", Guard::Open),
            ("/", Guard::Open),
            ("/console/app.js", Guard::Open),
        ] {
            assert_eq!(Guard::of(path), guard, "{path}");
        }
    }

    #[test]
    fn prefixes_parse_only_from_well_formed_keys() {
        let key = format!("gh_{}_{}", "a".repeat(PREFIX_LEN), "b".repeat(SECRET_LEN));
        assert_eq!(key_prefix(&key), Some((KeyKind::Api, "aaaaaaaaaa")));
        assert_eq!(key_prefix(&format!("ghc{}", &key[2..])), Some((KeyKind::Connector, "aaaaaaaaaa")));
        assert_eq!(key_prefix("gh_short_secret"), None);
        assert_eq!(key_prefix(""), None);
        assert_eq!(key_prefix(&key[1..]), None);
    }

    #[test]
    fn bearer_and_header_forms() {
        let key = |c: &str| format!("gh_{}_{}", c.repeat(PREFIX_LEN), "s".repeat(SECRET_LEN));
        let (k1, k2) = (key("a"), key("b"));
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("bearer  {k1} ").parse().unwrap());
        assert_eq!(presented_key(&headers).unwrap(), k1);
        // The same key both ways is one key; two different ones are refused.
        headers.insert("x-api-key", k1.parse().unwrap());
        assert_eq!(presented_key(&headers).unwrap(), k1);
        headers.insert("x-api-key", k2.parse().unwrap());
        assert!(presented_key(&headers).unwrap_err().message.unwrap().contains("more than one API key"));
        headers.insert("x-api-key", "".parse().unwrap());
        assert_eq!(presented_key(&headers).unwrap(), k1, "an empty X-API-KEY is no key");
        let mut twice = http::HeaderMap::new();
        twice.append("x-api-key", "k1".parse().unwrap());
        twice.append("x-api-key", "k2".parse().unwrap());
        let error = presented_key(&twice).unwrap_err();
        assert_eq!(error.code, ErrorCode::Unauthenticated);
        assert!(error.message.unwrap().contains("more than one API key, in several X-API-KEY headers"));
        let mut basic = http::HeaderMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&basic).unwrap_err().code, ErrorCode::Unauthenticated);
        // Beside an X-API-KEY, another scheme's Authorization is someone else's, and so is a
        // bearer token that is no Gatehouse key (an identity-aware proxy's).
        basic.insert("x-api-key", "k3".parse().unwrap());
        assert_eq!(presented_key(&basic).unwrap(), "k3");
        basic.insert("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.proxy-token".parse().unwrap());
        assert_eq!(presented_key(&basic).unwrap(), "k3");
        let other_key = format!("gh_{}_{}", "a".repeat(PREFIX_LEN), "b".repeat(SECRET_LEN));
        basic.insert("authorization", format!("Bearer {other_key}").parse().unwrap());
        assert!(presented_key(&basic).unwrap_err().message.unwrap().contains("more than one API key"));
        // A bearer key that could never be valid is a second key all the same, as a malformed
        // X-API-KEY beside a valid bearer key is.
        for malformed in ["gh_short", "ghc_AAAAAAAAAA_short", "gh_"] {
            basic.insert("authorization", format!("Bearer {malformed}").parse().unwrap());
            let error = presented_key(&basic).unwrap_err();
            assert!(error.message.unwrap().contains("more than one API key"), "{malformed}");
        }
    }
}
