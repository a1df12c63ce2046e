//! Identity records: users (humans and machines) with their groups and
//! external ids, access tokens, and the native roles users may use on
//! resources.

use std::fmt;
use std::str::FromStr;

use gatehouse_core::{Micros, OrgId};

/// A person or a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserKind {
    Human,
    Machine,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Human => "human",
            UserKind::Machine => "machine",
        }
    }
}

impl fmt::Display for UserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a user type (human or machine)")]
pub struct UnknownUserKind(pub String);

impl FromStr for UserKind {
    type Err = UnknownUserKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "human" => Ok(UserKind::Human),
            "machine" => Ok(UserKind::Machine),
            other => Err(UnknownUserKind(other.to_owned())),
        }
    }
}

/// A user of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `usr_…`, stable for the user's life: grants and tokens refer to it.
    pub id: String,
    pub kind: UserKind,
    /// A human's email; empty for machines.
    pub email: String,
    /// A human's display name, or a machine's name (how it connects).
    pub name: String,
    pub groups: Vec<String>,
    pub external_ids: Vec<String>,
    pub disabled: bool,
    pub created: Micros,
    pub updated: Micros,
}

impl User {
    /// How connections and the CLI name this user: a human's email, a
    /// machine's name.
    pub fn handle(&self) -> &str {
        match self.kind {
            UserKind::Human => &self.email,
            UserKind::Machine => &self.name,
        }
    }
}

/// The case-folded form users are looked up by, so that a user named with
/// different case is still the same user (emails are case-insensitive in
/// practice).
pub fn user_lookup(handle: &str) -> String {
    crate::sql::fold(handle.trim())
}

/// A token to store: only the hash of the whole token is kept.
#[derive(Debug, Clone)]
pub struct NewAccessToken {
    pub org: OrgId,
    pub user_id: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub name: String,
    pub created: Micros,
    pub expires: Micros,
}

/// A token as needed to verify a connection.
#[derive(Debug, Clone)]
pub struct StoredAccessToken {
    pub org: OrgId,
    pub user_id: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub expires: Micros,
    pub revoked: Option<Micros>,
}

/// A token as shown to an administrator: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenInfo {
    pub prefix: String,
    pub user_id: String,
    pub name: String,
    pub created: Micros,
    pub expires: Micros,
    pub last_used: Option<Micros>,
    pub revoked: Option<Micros>,
}

/// Who a role grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// A user, by id.
    User(String),
    /// Every member of a group, by name.
    Group(String),
}

impl Principal {
    pub(crate) fn parts(&self) -> (&'static str, &str) {
        match self {
            Principal::User(id) => ("user", id),
            Principal::Group(name) => ("group", name),
        }
    }

    pub(crate) fn from_parts(kind: &str, value: String) -> Result<Self, crate::StoreError> {
        match kind {
            "user" => Ok(Principal::User(value)),
            "group" => Ok(Principal::Group(value)),
            other => Err(crate::StoreError::Corrupt(format!("unknown grant principal type {other:?}"))),
        }
    }
}

/// A native role a principal may use on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleGrant {
    pub resource_id: String,
    pub principal: Principal,
    pub role: String,
}

/// What decides the native role of a connection to a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAccess {
    pub resource_id: String,
    pub resource_name: String,
    /// Empty when the resource has none.
    pub default_role: String,
    /// In (principal, role) order.
    pub grants: Vec<RoleGrant>,
}

/// The columns [`user_from_row`] reads.
pub(crate) const USER_COLUMNS: &str = "id, type, email, name, groups, external_ids, disabled, created_us, updated_us";

/// The columns [`token_info_from_row`] reads.
pub(crate) const TOKEN_COLUMNS: &str = "prefix, user_id, name, created_us, expires_us, last_used_us, revoked_us";

/// Decodes a row selected with [`USER_COLUMNS`], in either database.
pub(crate) fn user_from_row<'r, R>(row: &'r R) -> Result<User, crate::StoreError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let list = |col: &'static str| -> Result<Vec<String>, crate::StoreError> {
        let json: String = row.try_get(col)?;
        serde_json::from_str(&json).map_err(|e| crate::StoreError::Corrupt(format!("users.{col}: {e}")))
    };
    let kind: String = row.try_get("type")?;
    Ok(User {
        id: row.try_get("id")?,
        kind: kind.parse().map_err(|e: UnknownUserKind| crate::StoreError::Corrupt(e.to_string()))?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        groups: list("groups")?,
        external_ids: list("external_ids")?,
        disabled: row.try_get("disabled")?,
        created: row.try_get("created_us")?,
        updated: row.try_get("updated_us")?,
    })
}

/// Decodes a row selected with [`TOKEN_COLUMNS`], in either database.
pub(crate) fn token_info_from_row<'r, R>(row: &'r R) -> Result<AccessTokenInfo, crate::StoreError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AccessTokenInfo {
        prefix: row.try_get("prefix")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        created: row.try_get("created_us")?,
        expires: row.try_get("expires_us")?,
        last_used: row.try_get("last_used_us")?,
        revoked: row.try_get("revoked_us")?,
    })
}

/// A unique-constraint violation, which callers see as a conflict.
pub(crate) fn conflict_on_unique(error: sqlx::Error, message: impl FnOnce() -> String) -> crate::StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => crate::StoreError::Conflict(message()),
        _ => crate::StoreError::Database(error),
    }
}
