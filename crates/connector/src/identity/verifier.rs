//! Asks the control plane whether an identity may log in (`VerifyIdentity`), and keeps each
//! answer briefly, so a burst of connections costs one call, while a revoked token stops
//! working within [`MAX_CACHE`].
//!
//! The cache key is a SHA-256 over the resource, the user type and name, the token and the
//! requested role: the token itself is never kept, and a different token is a different key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use connectrpc::{ConnectError, ErrorCode};
use gatehouse_proto::gatehouse::connector::v1 as pb;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::IdentityName;
use crate::event::FormalUser;
use crate::report::ControlPlane;

/// No answer is reused for longer than this, whatever the control plane allows.
pub const MAX_CACHE: Duration = Duration::from_secs(30);
/// How long a client waits for the control plane before it is refused.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Above this many entries the expired ones are dropped, and if that is not enough, all.
const MAX_ENTRIES: usize = 10_000;

/// The control plane's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        user: FormalUser,
        native_role: String,
        /// The end user the request named, when the organization knows them.
        end_user: Option<Box<FormalUser>>,
    },
    /// One of the contract's reasons (`bad_token`, `revoked_token`, ...); never a secret.
    Denied { reason: String },
}

/// The control plane could not answer; the login fails closed.
#[derive(Debug, thiserror::Error)]
#[error("the control plane did not verify the identity ({code}): {message}")]
pub struct VerifyError {
    pub code: String,
    pub message: String,
}

impl From<ConnectError> for VerifyError {
    fn from(error: ConnectError) -> Self {
        // A transport error's cause (a refused certificate, say) is in its sources.
        let message = match std::error::Error::source(&error) {
            Some(source) => {
                format!("{}: {}", error.message.as_deref().unwrap_or_default(), gatehouse_tls::chain(source))
            }
            None => error.message.clone().unwrap_or_default(),
        };
        Self { code: error.code.as_str().to_owned(), message }
    }
}

/// Verifies identities for one connector; shared by its listeners.
pub struct Verifier {
    control: ControlPlane,
    /// Where the calls run: the control thread's runtime, which has the time driver the HTTP
    /// client's connections need (the relay's runtime has none).
    runtime: Handle,
    cache: Mutex<Cache>,
    /// Told when the control plane refuses a real credential (revoked, expired, disabled, no
    /// longer granted): access has changed somewhere, and open sessions are checked at once.
    access_changed: Notify,
}

impl Verifier {
    pub fn new(control: ControlPlane, runtime: Handle) -> Self {
        Self { control, runtime, cache: Mutex::new(Cache::default()), access_changed: Notify::new() }
    }

    /// Resolves when the control plane has refused a real credential since the last call.
    pub async fn access_changed(&self) {
        self.access_changed.notified().await;
    }

    /// The verdict for `name` with `token` on `resource_id`, naming `end_user` (empty for
    /// none), from the cache or the control plane.
    ///
    /// # Errors
    ///
    /// [`VerifyError`] when the control plane does not answer in time or refuses the call.
    pub async fn verify(
        &self,
        resource_id: &str,
        name: &IdentityName,
        token: &str,
        end_user: &str,
    ) -> Result<Verdict, VerifyError> {
        let key = cache_key(resource_id, name, token, end_user);
        if let Some(verdict) = crate::lock(&self.cache).get(&key, Instant::now()) {
            return Ok(verdict);
        }
        let request = pb::VerifyIdentityRequest {
            resource_id: resource_id.to_owned(),
            user_type: name.user_type.as_str().to_owned(),
            user: name.user.clone(),
            token: token.to_owned(),
            requested_role: name.role.clone().unwrap_or_default(),
            end_user: end_user.to_owned(),
            ..Default::default()
        };
        let control = self.control.clone();
        let call = self.runtime.spawn(async move { control.verify_identity(request, VERIFY_TIMEOUT).await });
        let response = call.await.map_err(|_| VerifyError {
            code: ErrorCode::Unavailable.as_str().to_owned(),
            message: "the connector is stopping".to_owned(),
        })??;
        let ttl = Duration::from_secs(response.cache_seconds.into()).min(MAX_CACHE);
        let verdict = verdict(response);
        let mut cache = crate::lock(&self.cache);
        let now = Instant::now();
        // What was allowed before may be no longer, under other keys (a login's, its session's
        // check): none of it is reused, and open sessions are checked now.
        if let Verdict::Denied { reason } = &verdict
            && !super::throttle::is_guess(reason)
        {
            cache.entries.clear();
            self.access_changed.notify_one();
        }
        // A login that named no role is checked again, while its session lasts, for the role it
        // got (see `access`): that answer is this one.
        if let (None, Verdict::Allowed { native_role, .. }) = (&name.role, &verdict) {
            let named = IdentityName { role: Some(native_role.clone()), ..name.clone() };
            cache.put(cache_key(resource_id, &named, token, end_user), verdict.clone(), ttl, now);
        }
        cache.put(key, verdict.clone(), ttl, now);
        Ok(verdict)
    }
}

fn verdict(response: pb::VerifyIdentityResponse) -> Verdict {
    if !response.allowed {
        let reason = if response.denied_reason.is_empty() { "denied".to_owned() } else { response.denied_reason };
        return Verdict::Denied { reason };
    }
    if response.native_role.is_empty() {
        return Verdict::Denied { reason: "no_role".into() };
    }
    Verdict::Allowed {
        user: formal_user(response.user.into_option().unwrap_or_default()),
        native_role: response.native_role,
        end_user: response.end_user.into_option().map(|user| Box::new(formal_user(user))),
    }
}

fn formal_user(user: pb::FormalUser) -> FormalUser {
    FormalUser {
        id: user.id,
        name: user.name,
        email: user.email,
        kind: user.r#type,
        groups: user.groups,
        external_ids: user.external_ids,
    }
}

/// Length-prefixed fields, so `("ab", "c")` and `("a", "bc")` differ.
fn cache_key(resource_id: &str, name: &IdentityName, token: &str, end_user: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    let role = name.role.as_deref().unwrap_or_default();
    for field in [resource_id, name.user_type.as_str(), &name.user, role, token, end_user] {
        hash.update((field.len() as u64).to_le_bytes());
        hash.update(field);
    }
    hash.update([u8::from(name.role.is_some())]);
    hash.finalize().into()
}

#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], (Verdict, Instant)>,
}

impl Cache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((verdict, expires)) if now < *expires => Some(verdict.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: [u8; 32], verdict: Verdict, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (verdict, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::super::UserType;
    use super::*;

    fn name(user: &str, role: Option<&str>) -> IdentityName {
        IdentityName { user_type: UserType::Human, user: user.into(), role: role.map(Into::into) }
    }

    #[test]
    fn keys_differ_by_every_field() {
        let base = cache_key("res", &name("a@x", None), "ght_1", "");
        assert_eq!(base, cache_key("res", &name("a@x", None), "ght_1", ""));
        for other in [
            cache_key("res2", &name("a@x", None), "ght_1", ""),
            cache_key("res", &name("b@x", None), "ght_1", ""),
            cache_key("res", &name("a@x", Some("r")), "ght_1", ""),
            cache_key("res", &name("a@x", Some("")), "ght_1", ""),
            cache_key("res", &name("a@x", None), "ght_2", ""),
            cache_key("res", &name("a@x", None), "ght_1", "bob@x"),
            cache_key("res", &IdentityName { user_type: UserType::Machine, ..name("a@x", None) }, "ght_1", ""),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn entries_expire_and_zero_ttl_is_not_kept() {
        let mut cache = Cache::default();
        let now = Instant::now();
        let denied = Verdict::Denied { reason: "bad_token".into() };
        cache.put([1; 32], denied.clone(), Duration::from_secs(10), now);
        cache.put([2; 32], denied.clone(), Duration::ZERO, now);
        assert_eq!(cache.get(&[1; 32], now + Duration::from_secs(9)), Some(denied));
        assert_eq!(cache.get(&[2; 32], now), None);
        assert_eq!(cache.get(&[1; 32], now + Duration::from_secs(10)), None);
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let mut cache = Cache::default();
        let now = Instant::now();
        let ok = Verdict::Denied { reason: "x".into() };
        for i in 0..MAX_ENTRIES {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let ttl = if i == 0 { Duration::from_secs(60) } else { Duration::from_secs(1) };
            cache.put(key, ok.clone(), ttl, now);
        }
        cache.put([9; 32], ok.clone(), Duration::from_secs(5), now + Duration::from_secs(2));
        assert_eq!(cache.entries.len(), 2);
    }

    #[test]
    fn answers_become_verdicts() {
        let allowed = pb::VerifyIdentityResponse {
            allowed: true,
            native_role: "analyst".into(),
            user: pb::FormalUser {
                id: "usr_1".into(),
                r#type: "human".into(),
                groups: vec!["dba".into()],
                ..Default::default()
            }
            .into(),
            ..Default::default()
        };
        let Verdict::Allowed { user, native_role, end_user } = verdict(allowed.clone()) else { panic!() };
        assert_eq!(
            (user.id.as_str(), user.groups.as_slice(), native_role.as_str()),
            ("usr_1", &["dba".to_owned()][..], "analyst")
        );
        assert_eq!(end_user, None);
        let known = pb::VerifyIdentityResponse {
            end_user: pb::FormalUser { id: "usr_2".into(), email: "bob@x".into(), ..Default::default() }.into(),
            ..allowed.clone()
        };
        let Verdict::Allowed { end_user, .. } = verdict(known) else { panic!() };
        assert_eq!(end_user.map(|u| u.id), Some("usr_2".to_owned()));
        let no_role = pb::VerifyIdentityResponse { native_role: String::new(), ..allowed };
        assert_eq!(verdict(no_role), Verdict::Denied { reason: "no_role".into() });
        let denied = pb::VerifyIdentityResponse { denied_reason: "revoked_token".into(), ..Default::default() };
        assert_eq!(verdict(denied), Verdict::Denied { reason: "revoked_token".into() });
        assert_eq!(verdict(pb::VerifyIdentityResponse::default()), Verdict::Denied { reason: "denied".into() });
    }
}
