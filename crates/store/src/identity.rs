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
