//! Identities: users, their access tokens, and verifying a connection's
//! identity for a connector (`VerifyIdentity`).
//!
//! An access token reads `ght_<prefix>_<secret>` (10 and 40 alphanumerics).
//! As with API keys, only the SHA-256 of the whole token is stored and hashes
//! are compared in constant time; the prefix is public and names the token in
//! listings and logs.
//!
//! A connection names a user (a human's email or a machine's name) and gives
//! a token as its password. It is allowed when the user exists in the
//! connector's organization and is enabled, and the token is that user's,
//! unexpired and unrevoked. The native role is the one asked for, if it is the
//! resource's default or granted to the user or one of their groups; with none
//! asked for, the resource's default, or else the user's only granted role.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connectrpc::{ConnectError, ErrorCode};
use gatehouse_core::names::{self, MAX_NAME_LEN, MAX_ROLE_LEN};
use gatehouse_core::time::now_micros;
use gatehouse_core::{Identity, Micros, OrgId};
use gatehouse_proto::gatehouse::connector::v1 as wire;
use gatehouse_store::identity::{NewAccessToken, Principal, ResourceAccess, User, UserKind};
use gatehouse_store::{Store, StoreError};
use subtle::ConstantTimeEq;

use crate::auth::{ConnectorCaller, hash_key, random_alphanumeric};
use crate::error::{invalid, store_error};

pub(crate) const TOKEN_MARKER: &str = "ght_";
const TOKEN_PREFIX_LEN: usize = 10;
const TOKEN_SECRET_LEN: usize = 40;
/// Tokens are for people and jobs, renewed often; a year is the most a token
/// may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// How long a connector may reuse an answer. Short, so that a revoked token
/// or a disabled user stops working within seconds.
pub const CACHE_SECONDS: u32 = 10;
/// Writing `last_used` on every connection would turn verification into writes.
const TOUCH_INTERVAL_US: Micros = 60_000_000;

/// Why an identity or a request to change one is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid_input(message: impl Into<String>) -> IdentityError {
    IdentityError::Invalid(message.into())
}

/// How long a connector may reuse an allowed answer: [`CACHE_SECONDS`], and
/// never past the token's expiry (rounded down, so an expired token is
/// refused from its printed expiry on).
fn cache_seconds(now: Micros, expires: Micros) -> u32 {
    let left = expires.saturating_sub(now).max(0) / 1_000_000;
    u32::try_from(left).unwrap_or(u32::MAX).min(CACHE_SECONDS)
}

/// Checks a human's email: one `@` with text on both sides, no spaces.
pub fn check_email(email: &str) -> Result<(), IdentityError> {
    if !names::is_email(email) {
        return Err(invalid_input(format!("{email:?} is not an email address")));
    }
    Ok(())
}

/// Checks a machine's name. It has no `@`: connections append `@<role>` to
/// it, and the CLI tells machines from humans by the `@` of an email.
pub fn check_machine_name(name: &str) -> Result<(), IdentityError> {
    if !names::is_machine_name(name) {
        return Err(invalid_input(format!(
            "{name:?} is not a machine name: use up to {MAX_NAME_LEN} printable characters without spaces or `@`"
        )));
    }
    Ok(())
}

/// Checks a group name or an external id: non-empty, printable, no spaces
/// at either end.
pub fn check_label(what: &str, value: &str) -> Result<(), IdentityError> {
    if !names::is_label(value) {
        return Err(invalid_input(format!(
            "{value:?} is not a valid {what}: use up to {MAX_NAME_LEN} printable characters, without spaces at either end"
        )));
    }
    Ok(())
}

/// Checks a group name: a label without `,` or `;`, which separate groups
/// in listings and exports.
pub fn check_group(group: &str) -> Result<(), IdentityError> {
    if group.contains([',', ';']) {
        return Err(invalid_input(format!("{group:?} is not a valid group name: `,` and `;` separate groups")));
    }
    check_label("group name", group)
}

/// Checks a native role name: a PostgreSQL identifier-sized name without
/// spaces, quotes or `@` (which separates it in connection user names).
pub fn check_role(role: &str) -> Result<(), IdentityError> {
    if !names::is_role_name(role) {
        return Err(invalid_input(format!(
            "{role:?} is not a role name: use up to {MAX_ROLE_LEN} bytes without spaces, quotes or `@`"
        )));
    }
    Ok(())
}

/// Sorted and deduplicated, so that stored lists compare as sets.
pub fn normalized(values: impl IntoIterator<Item = String>) -> Vec<String> {
    values.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Which kind of user a handle names: a human when it holds an `@` (an
/// email), a machine otherwise (machine names never do).
pub fn kind_of_handle(handle: &str) -> UserKind {
    if handle.contains('@') { UserKind::Human } else { UserKind::Machine }
}

/// The user of `org` a handle (email or machine name) names.
pub async fn find_user(store: &dyn Store, org: OrgId, handle: &str) -> Result<Option<User>, StoreError> {
    store.find_user(org, kind_of_handle(handle), handle).await
}

/// What a new user is made of.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub kind: UserKind,
    /// Humans only.
    pub email: String,
    /// A human's display name (optional) or a machine's name.
    pub name: String,
    pub groups: Vec<String>,
    pub external_ids: Vec<String>,
    pub disabled: bool,
}

/// Checks every field of a user about to be stored.
pub fn check_user(user: &User) -> Result<(), IdentityError> {
    match user.kind {
        UserKind::Human => check_email(&user.email)?,
        UserKind::Machine => {
            check_machine_name(&user.name)?;
            if !user.email.is_empty() {
                return Err(invalid_input("machines have no email"));
            }
        }
    }
    if !names::is_display_name(&user.name) {
        return Err(invalid_input(format!(
            "{:?} is not a valid name: use up to {MAX_NAME_LEN} printable characters",
            user.name
        )));
    }
    for group in &user.groups {
        check_group(group)?;
    }
    for id in &user.external_ids {
        check_label("external id", id)?;
    }
    Ok(())
}

/// Creates a user, with a new id.
pub async fn create_user(store: &dyn Store, org: OrgId, new: NewUser) -> Result<User, IdentityError> {
    let now = now_micros();
    let user = User {
        id: crate::registry::new_id("usr"),
        kind: new.kind,
        email: new.email.trim().to_owned(),
        name: new.name.trim().to_owned(),
        groups: normalized(new.groups),
        external_ids: normalized(new.external_ids),
        disabled: new.disabled,
        created: now,
        updated: now,
    };
    check_user(&user)?;
    store.create_user(org, &user).await?;
    Ok(user)
}

/// Stores a changed user (checked, lists normalized, update time now).
/// Returns the stored version.
pub async fn update_user(store: &dyn Store, org: OrgId, mut user: User) -> Result<User, IdentityError> {
    user.groups = normalized(user.groups);
    user.external_ids = normalized(user.external_ids);
    user.updated = now_micros();
    check_user(&user)?;
    if !store.update_user(org, &user).await? {
        return Err(invalid_input(format!("no user {:?}", user.handle())));
    }
    Ok(user)
}

/// A newly created token: shown once and never stored.
#[derive(Clone)]
pub struct CreatedToken {
    pub token: String,
    pub prefix: String,
    pub expires: Micros,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.debug_struct("CreatedToken").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Issues a token for `user`, valid for `ttl`.
pub async fn create_access_token(
    store: &dyn Store,
    org: OrgId,
    user: &User,
    ttl: Duration,
    name: &str,
) -> Result<CreatedToken, IdentityError> {
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(invalid_input("a token lives at most 366 days (--ttl)"));
    }
    let prefix = random_alphanumeric(TOKEN_PREFIX_LEN);
    let token = format!("{TOKEN_MARKER}{prefix}_{}", random_alphanumeric(TOKEN_SECRET_LEN));
    let created = now_micros();
    let expires = created.saturating_add(ttl.as_micros() as i64);
    store
        .insert_access_token(&NewAccessToken {
            org,
            user_id: user.id.clone(),
            prefix: prefix.clone(),
            secret_hash: hash_key(&token),
            name: name.to_owned(),
            created,
            expires,
        })
        .await?;
    Ok(CreatedToken { token, prefix, expires })
}

/// The public prefix of a well-formed token, or `None`.
pub fn token_prefix(token: &str) -> Option<&str> {
    let (prefix, secret) = token.strip_prefix(TOKEN_MARKER)?.split_once('_')?;
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    (prefix.len() == TOKEN_PREFIX_LEN && secret.len() == TOKEN_SECRET_LEN && alnum(prefix) && alnum(secret))
        .then_some(prefix)
}

/// Why a connection's identity was refused; the names are the contract's
/// `denied_reason` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    UnknownUser,
    BadToken,
    ExpiredToken,
    RevokedToken,
    DisabledUser,
    /// The role asked for is not granted, or none was asked for and none is granted at all.
    RoleNotAllowed,
    /// None was asked for, the resource has no default, and several are granted: the user must
    /// name one (`no_role` on the wire).
    AmbiguousRole,
}

impl Denial {
    pub const ALL: [Denial; 7] = [
        Denial::UnknownUser,
        Denial::BadToken,
        Denial::ExpiredToken,
        Denial::RevokedToken,
        Denial::DisabledUser,
        Denial::RoleNotAllowed,
        Denial::AmbiguousRole,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Denial::UnknownUser => "unknown_user",
            Denial::BadToken => "bad_token",
            Denial::ExpiredToken => "expired_token",
            Denial::RevokedToken => "revoked_token",
            Denial::DisabledUser => "disabled_user",
            Denial::RoleNotAllowed => "role_not_allowed",
            Denial::AmbiguousRole => "no_role",
        }
    }
}

/// Verification outcomes since the process started, for `/metrics`: allowed, then one counter
/// per [`Denial`] in [`Denial::ALL`] order.
static OUTCOMES: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// How many verifications had each outcome since the process started: `allowed`, then each
/// denial by its reason.
pub fn outcome_counts() -> impl Iterator<Item = (&'static str, u64)> {
    let outcomes = std::iter::once("allowed").chain(Denial::ALL.iter().map(|d| d.as_str()));
    outcomes.zip(OUTCOMES.iter().map(|count| count.load(Ordering::Relaxed)))
}

fn count_denial(denial: Denial) {
    let index = Denial::ALL.iter().position(|d| *d == denial).unwrap_or(0) + 1;
    OUTCOMES[index].fetch_add(1, Ordering::Relaxed);
}

fn wire_user(user: &User) -> wire::FormalUser {
    wire::FormalUser {
        id: user.id.clone(),
        name: user.name.clone(),
        email: user.email.clone(),
        r#type: user.kind.as_str().to_owned(),
        groups: user.groups.clone(),
        external_ids: user.external_ids.clone(),
        ..Default::default()
    }
}

/// A formal user reported by a connector, or `None` when it names nobody.
pub fn identity_from_wire(user: &wire::FormalUser) -> Option<Identity> {
    let identity = Identity {
        id: user.id.clone(),
        name: user.name.clone(),
        email: user.email.clone(),
        kind: user.r#type.clone(),
        groups: user.groups.clone(),
        external_ids: user.external_ids.clone(),
    };
    (identity != Identity::default()).then_some(identity)
}

/// The native role a user gets on a resource, or why none.
pub fn resolve_role(access: &ResourceAccess, user: &User, requested: &str) -> Result<String, Denial> {
    let granted: BTreeSet<&str> = access
        .grants
        .iter()
        .filter(|g| match &g.principal {
            Principal::User(id) => *id == user.id,
            Principal::Group(group) => user.groups.iter().any(|g| g == group),
        })
        .map(|g| g.role.as_str())
        .collect();
    if !requested.is_empty() {
        let allowed = requested == access.default_role || granted.contains(requested);
        return if allowed { Ok(requested.to_owned()) } else { Err(Denial::RoleNotAllowed) };
    }
    if !access.default_role.is_empty() {
        return Ok(access.default_role.clone());
    }
    match granted.into_iter().collect::<Vec<_>>().as_slice() {
        [only] => Ok((*only).to_owned()),
        // No role at all is a role not granted, whichever one it would have named.
        [] => Err(Denial::RoleNotAllowed),
        _ => Err(Denial::AmbiguousRole),
    }
}

/// Answers `VerifyIdentity` for connectors.
pub struct Verifier {
    last_touch: Mutex<HashMap<String, Micros>>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self { last_touch: Mutex::new(HashMap::new()) }
    }

    /// Checks one connection's identity for `caller`'s organization.
    pub async fn verify(
        &self,
        store: &std::sync::Arc<dyn Store>,
        caller: &ConnectorCaller,
        req: &wire::VerifyIdentityRequest,
    ) -> Result<wire::VerifyIdentityResponse, ConnectError> {
        let kind: UserKind = match req.user_type.as_str() {
            "human" => UserKind::Human,
            "machine" => UserKind::Machine,
            other => return Err(invalid(format!("user_type must be human or machine, not {other:?}"))),
        };
        if req.resource_id.is_empty() {
            return Err(invalid("resource_id is required"));
        }
        if req.user.trim().is_empty() {
            return Err(invalid("user is required"));
        }
        // A resource the connector's organization does not have is a
        // configuration error, not a refused identity.
        let access =
            store.resource_access(caller.org, &req.resource_id).await.map_err(store_error)?.ok_or_else(|| {
                ConnectError::new(
                    ErrorCode::NotFound,
                    format!("no resource {:?} in this organization", req.resource_id),
                )
            })?;
        let outcome = self.decide(store, caller.org, kind, req, &access).await.map_err(store_error)?;
        match outcome {
            Ok((user, role, expires)) => {
                OUTCOMES[0].fetch_add(1, Ordering::Relaxed);
                let end_user = match req.end_user.as_str() {
                    "" => None,
                    named if !names::is_label(named) => None,
                    named => find_user(store.as_ref(), caller.org, named).await.map_err(store_error)?,
                };
                tracing::debug!(
                    connector = %caller.connector_name,
                    resource = %access.resource_name,
                    user = %user.handle(),
                    role = %role,
                    "identity verified"
                );
                Ok(wire::VerifyIdentityResponse {
                    allowed: true,
                    user: wire_user(&user).into(),
                    native_role: role,
                    cache_seconds: cache_seconds(now_micros(), expires),
                    end_user: end_user.as_ref().map(wire_user).into(),
                    ..Default::default()
                })
            }
            Err(denial) => {
                count_denial(denial);
                // The user name is the client's own text: shown escaped and
                // bounded. The token is never logged, only its public prefix.
                let user: String = req.user.chars().take(200).collect();
                tracing::warn!(
                    connector = %caller.connector_name,
                    resource = %access.resource_name,
                    user_type = kind.as_str(),
                    user = ?user,
                    token_prefix = token_prefix(&req.token).unwrap_or(""),
                    requested_role = ?req.requested_role.chars().take(64).collect::<String>(),
                    reason = denial.as_str(),
                    "identity refused"
                );
                Ok(wire::VerifyIdentityResponse {
                    allowed: false,
                    denied_reason: denial.as_str().to_owned(),
                    cache_seconds: CACHE_SECONDS,
                    ..Default::default()
                })
            }
        }
    }

    async fn decide(
        &self,
        store: &std::sync::Arc<dyn Store>,
        org: OrgId,
        kind: UserKind,
        req: &wire::VerifyIdentityRequest,
        access: &ResourceAccess,
    ) -> Result<Result<(User, String, Micros), Denial>, StoreError> {
        // The user and the token are both looked up and the hash computed whatever either
        // lookup found, so that how long a refusal takes does not tell a guesser whether the
        // user exists.
        let user = store.find_user(org, kind, &req.user).await?;
        let stored = match token_prefix(&req.token) {
            Some(prefix) => store.find_access_token(prefix).await?,
            None => None,
        };
        let hash = hash_key(&req.token);
        let Some(user) = user else {
            return Ok(Err(Denial::UnknownUser));
        };
        // In constant time; a token of anyone else (another user, another organization) is bad.
        let Some(stored) = stored.filter(|stored| bool::from(hash.ct_eq(&stored.secret_hash))) else {
            return Ok(Err(Denial::BadToken));
        };
        if stored.org != org || stored.user_id != user.id {
            return Ok(Err(Denial::BadToken));
        }
        // Only a holder of the token learns more than "bad token".
        if stored.revoked.is_some() {
            return Ok(Err(Denial::RevokedToken));
        }
        let now = now_micros();
        if now >= stored.expires {
            return Ok(Err(Denial::ExpiredToken));
        }
        if user.disabled {
            return Ok(Err(Denial::DisabledUser));
        }
        let role = match resolve_role(access, &user, &req.requested_role) {
            Ok(role) => role,
            Err(denial) => return Ok(Err(denial)),
        };
        self.touch(store, &stored.prefix, now);
        Ok(Ok((user, role, stored.expires)))
    }

    /// Records the token's last use, at most once a minute per token.
    fn touch(&self, store: &std::sync::Arc<dyn Store>, prefix: &str, now: Micros) {
        {
            let mut last = self.last_touch.lock().unwrap_or_else(|e| e.into_inner());
            match last.get(prefix) {
                Some(at) if now - at < TOUCH_INTERVAL_US => return,
                _ => last.insert(prefix.to_owned(), now),
            };
        }
        let store = store.clone();
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            if let Err(err) = store.touch_access_token(&prefix, now).await {
                tracing::warn!(%err, token = %prefix, "could not record token use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_store::identity::RoleGrant;

    use super::*;

    #[test]
    fn an_answer_is_never_reused_past_the_tokens_expiry() {
        const S: Micros = 1_000_000;
        assert_eq!(cache_seconds(0, 3600 * S), CACHE_SECONDS);
        assert_eq!(cache_seconds(0, 4 * S + S / 2), 4);
        assert_eq!(cache_seconds(0, S / 2), 0);
        assert_eq!(cache_seconds(10 * S, 0), 0);
    }

    #[test]
    fn token_prefixes_parse_only_from_well_formed_tokens() {
        let token = format!("ght_{}_{}", "a".repeat(10), "b".repeat(40));
        assert_eq!(token_prefix(&token), Some("aaaaaaaaaa"));
        assert_eq!(token_prefix(&token[1..]), None);
        assert_eq!(token_prefix(&format!("gh_{}_{}", "a".repeat(10), "b".repeat(40))), None, "an API key");
        assert_eq!(token_prefix(&format!("ght_{}_{}", "a".repeat(10), "b".repeat(39))), None);
        assert_eq!(token_prefix(&format!("ght_{}_{}!", "a".repeat(10), "b".repeat(39))), None);
        assert_eq!(token_prefix(""), None);
    }

    fn user(groups: &[&str]) -> User {
        User {
            id: "u1".into(),
            kind: UserKind::Human,
            email: "a@example.com".into(),
            name: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            external_ids: vec![],
            disabled: false,
            created: 0,
            updated: 0,
        }
    }

    fn access(default_role: &str, grants: &[(Principal, &str)]) -> ResourceAccess {
        ResourceAccess {
            resource_id: "r".into(),
            resource_name: "r".into(),
            default_role: default_role.into(),
            grants: grants
                .iter()
                .map(|(p, role)| RoleGrant { resource_id: "r".into(), principal: p.clone(), role: role.to_string() })
                .collect(),
        }
    }

    #[test]
    fn roles_resolve_from_the_default_and_grants_to_the_user_or_their_groups() {
        let dba = Principal::Group("dba".into());
        let me = Principal::User("u1".into());
        let other = Principal::User("u2".into());
        let a = access("app_ro", &[(dba.clone(), "app_rw"), (me.clone(), "admin"), (other.clone(), "root")]);
        assert_eq!(resolve_role(&a, &user(&[]), ""), Ok("app_ro".into()));
        assert_eq!(resolve_role(&a, &user(&[]), "app_ro"), Ok("app_ro".into()));
        assert_eq!(resolve_role(&a, &user(&[]), "admin"), Ok("admin".into()));
        assert_eq!(resolve_role(&a, &user(&[]), "app_rw"), Err(Denial::RoleNotAllowed));
        assert_eq!(resolve_role(&a, &user(&["dba"]), "app_rw"), Ok("app_rw".into()));
        assert_eq!(resolve_role(&a, &user(&["dba"]), "root"), Err(Denial::RoleNotAllowed), "another user's grant");
        // No default: the only granted role, else none.
        let single = access("", &[(dba.clone(), "app_rw"), (other, "root")]);
        assert_eq!(resolve_role(&single, &user(&["dba"]), ""), Ok("app_rw".into()));
        assert_eq!(resolve_role(&single, &user(&[]), ""), Err(Denial::RoleNotAllowed), "none granted");
        let two = access("", &[(dba, "app_rw"), (me, "admin")]);
        assert_eq!(resolve_role(&two, &user(&["dba"]), ""), Err(Denial::AmbiguousRole));
        assert_eq!(resolve_role(&two, &user(&[]), ""), Ok("admin".into()));
    }

    #[test]
    fn handles_and_names_are_checked() {
        assert_eq!(kind_of_handle("alice@example.com"), UserKind::Human);
        assert_eq!(kind_of_handle("etl-nightly"), UserKind::Machine);
        assert!(check_email("alice@example.com").is_ok());
        for bad in ["alice", "@example.com", "alice@", "a b@example.com", "a@b@c"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_machine_name("etl-nightly").is_ok());
        assert!(check_machine_name("etl@x").is_err());
        assert!(check_role("app_rw").is_ok());
        for bad in ["", "a b", "a@b", "x\"y", &"r".repeat(64)] {
            assert!(check_role(bad).is_err(), "{bad}");
        }
        assert_eq!(normalized(["b".to_string(), "a".into(), "b".into()]), vec!["a", "b"]);
    }
}
