//! Users, access tokens and role grants: the same statements in both stores.

use gatehouse_core::{Micros, OrgId};

use super::builder::Arg;
use super::exec::{Columns, Exec};
use crate::StoreError;
use crate::identity::*;
use crate::row::json_list;

/// The columns [`user_from_row`] reads.
const USER_COLUMNS: &str = "id, type, email, name, groups, external_ids, disabled, created_us, updated_us";

/// The columns [`token_info_from_row`] reads.
const TOKEN_COLUMNS: &str = "prefix, user_id, name, created_us, expires_us, last_used_us, revoked_us";

fn user_from_row(row: &impl Columns) -> Result<User, StoreError> {
    let list = |col: &'static str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&row.text(col)?).map_err(|e| StoreError::Corrupt(format!("users.{col}: {e}")))
    };
    Ok(User {
        id: row.text("id")?,
        kind: row.text("type")?.parse().map_err(|e: UnknownUserKind| StoreError::Corrupt(e.to_string()))?,
        email: row.text("email")?,
        name: row.text("name")?,
        groups: list("groups")?,
        external_ids: list("external_ids")?,
        disabled: row.flag("disabled")?,
        created: row.int("created_us")?,
        updated: row.int("updated_us")?,
    })
}

fn token_info_from_row(row: &impl Columns) -> Result<AccessTokenInfo, StoreError> {
    Ok(AccessTokenInfo {
        prefix: row.text("prefix")?,
        user_id: row.text("user_id")?,
        name: row.text("name")?,
        created: row.int("created_us")?,
        expires: row.int("expires_us")?,
        last_used: row.opt_int("last_used_us")?,
        revoked: row.opt_int("revoked_us")?,
    })
}

/// A unique-constraint violation, which callers see as a conflict.
fn conflict_on_unique(error: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::from(error),
    }
}

/// The values of `lookup, email, name, groups, external_ids, disabled`, the columns an update
/// rewrites.
fn user_fields(u: &User) -> [Arg; 6] {
    [
        Arg::Text(user_lookup(u.handle())),
        Arg::Text(u.email.clone()),
        Arg::Text(u.name.clone()),
        Arg::Text(json_list(&u.groups)),
        Arg::Text(json_list(&u.external_ids)),
        Arg::Bool(u.disabled),
    ]
}

fn user_exists_already(u: &User) -> String {
    format!("a {} user {:?} exists already", u.kind, u.handle())
}

pub(crate) async fn create_user(db: &impl Exec, org: OrgId, u: &User) -> Result<(), StoreError> {
    let created = db
        .write(
            "INSERT INTO users (org_id, id, type, lookup, email, name, groups, external_ids, disabled, created_us, \
             updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [Arg::Int(org.0), Arg::Text(u.id.clone()), Arg::Text(u.kind.as_str().into())]
                .into_iter()
                .chain(user_fields(u))
                .chain([Arg::Int(u.created), Arg::Int(u.updated)])
                .collect(),
        )
        .await?;
    if created == 0 {
        return Err(StoreError::Conflict(user_exists_already(u)));
    }
    Ok(())
}

pub(crate) async fn find_user(
    db: &impl Exec,
    org: OrgId,
    kind: UserKind,
    handle: &str,
) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE org_id = ? AND type = ? AND lookup = ?");
    let args = vec![Arg::Int(org.0), Arg::Text(kind.as_str().into()), Arg::Text(user_lookup(handle))];
    db.read_optional(&sql, args).await?.as_ref().map(user_from_row).transpose()
}

pub(crate) async fn list_users(db: &impl Exec, org: OrgId) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE org_id = ? ORDER BY type, lookup");
    db.read_all(&sql, vec![Arg::Int(org.0)]).await?.iter().map(user_from_row).collect()
}

pub(crate) async fn update_user(db: &impl Exec, org: OrgId, u: &User) -> Result<bool, StoreError> {
    let updated = db
        .write(
            "UPDATE users SET lookup = ?, email = ?, name = ?, groups = ?, external_ids = ?, disabled = ?, \
             updated_us = ? WHERE org_id = ? AND id = ? AND type = ?",
            user_fields(u)
                .into_iter()
                .chain([
                    Arg::Int(u.updated),
                    Arg::Int(org.0),
                    Arg::Text(u.id.clone()),
                    Arg::Text(u.kind.as_str().into()),
                ])
                .collect(),
        )
        .await
        .map_err(|e| conflict_on_unique(e, || user_exists_already(u)))?;
    Ok(updated > 0)
}

pub(crate) async fn insert_access_token(db: &impl Exec, t: &NewAccessToken) -> Result<(), StoreError> {
    // Only for a user of the token's own organization.
    let inserted = db
        .write(
            "INSERT INTO access_tokens (org_id, user_id, prefix, secret_hash, name, created_us, expires_us) \
             SELECT ?, id, ?, ?, ?, ?, ? FROM users WHERE org_id = ? AND id = ?",
            vec![
                Arg::Int(t.org.0),
                Arg::Text(t.prefix.clone()),
                Arg::Blob(t.secret_hash.clone()),
                Arg::Text(t.name.clone()),
                Arg::Int(t.created),
                Arg::Int(t.expires),
                Arg::Int(t.org.0),
                Arg::Text(t.user_id.clone()),
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("no user {:?}", t.user_id)));
    }
    Ok(())
}

pub(crate) async fn find_access_token(db: &impl Exec, prefix: &str) -> Result<Option<StoredAccessToken>, StoreError> {
    let row = db
        .read_optional(
            "SELECT org_id, user_id, prefix, secret_hash, expires_us, revoked_us FROM access_tokens WHERE prefix = ?",
            vec![Arg::Text(prefix.into())],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(StoredAccessToken {
        org: OrgId(row.int("org_id")?),
        user_id: row.text("user_id")?,
        prefix: row.text("prefix")?,
        secret_hash: row.blob("secret_hash")?,
        expires: row.int("expires_us")?,
        revoked: row.opt_int("revoked_us")?,
    }))
}

pub(crate) async fn list_access_tokens(
    db: &impl Exec,
    org: OrgId,
    user_id: &str,
) -> Result<Vec<AccessTokenInfo>, StoreError> {
    let sql =
        format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE org_id = ? AND user_id = ? ORDER BY created_us, pk");
    let rows = db.read_all(&sql, vec![Arg::Int(org.0), Arg::Text(user_id.into())]).await?;
    rows.iter().map(token_info_from_row).collect()
}

pub(crate) async fn revoke_access_token(
    db: &impl Exec,
    org: OrgId,
    prefix: &str,
    at: Micros,
) -> Result<bool, StoreError> {
    let revoked = db
        .write(
            "UPDATE access_tokens SET revoked_us = ? WHERE org_id = ? AND prefix = ? AND revoked_us IS NULL",
            vec![Arg::Int(at), Arg::Int(org.0), Arg::Text(prefix.into())],
        )
        .await?;
    Ok(revoked > 0)
}

pub(crate) async fn touch_access_token(db: &impl Exec, prefix: &str, at: Micros) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE access_tokens SET last_used_us = {}(COALESCE(last_used_us, 0), ?) WHERE prefix = ?",
        db.dialect().greatest()
    );
    db.write(&sql, vec![Arg::Int(at), Arg::Text(prefix.into())]).await?;
    Ok(())
}

pub(crate) async fn set_resource_default_role(
    db: &impl Exec,
    org: OrgId,
    resource_id: &str,
    role: &str,
) -> Result<bool, StoreError> {
    let set = db
        .write(
            "UPDATE resources SET default_role = ? WHERE org_id = ? AND id = ?",
            vec![Arg::Text(role.into()), Arg::Int(org.0), Arg::Text(resource_id.into())],
        )
        .await?;
    Ok(set > 0)
}

pub(crate) async fn resource_access(
    db: &impl Exec,
    org: OrgId,
    resource_id: &str,
) -> Result<Option<ResourceAccess>, StoreError> {
    let the_resource = || vec![Arg::Int(org.0), Arg::Text(resource_id.into())];
    let row = db.read_optional("SELECT name, default_role FROM resources WHERE org_id = ? AND id = ?", the_resource());
    let Some(row) = row.await? else { return Ok(None) };
    let grants = db
        .read_all(
            "SELECT principal_type, principal, role FROM role_grants WHERE org_id = ? AND resource_id = ? \
             ORDER BY principal_type, principal, role",
            the_resource(),
        )
        .await?
        .iter()
        .map(|g| {
            Ok(RoleGrant {
                resource_id: resource_id.to_owned(),
                principal: Principal::from_parts(&g.text("principal_type")?, g.text("principal")?)?,
                role: g.text("role")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(ResourceAccess {
        resource_id: resource_id.to_owned(),
        resource_name: row.text("name")?,
        default_role: row.text("default_role")?,
        grants,
    }))
}

/// The values of a grant's `org_id, resource_id, principal_type, principal, role`.
fn grant_values(org: OrgId, g: &RoleGrant) -> [Arg; 5] {
    let (kind, principal) = g.principal.parts();
    [
        Arg::Int(org.0),
        Arg::Text(g.resource_id.clone()),
        Arg::Text(kind.into()),
        Arg::Text(principal.into()),
        Arg::Text(g.role.clone()),
    ]
}

/// Grants a role to a user or a group on a resource, both of the organization; false when the
/// grant was there already.
pub(crate) async fn grant_role(db: &impl Exec, org: OrgId, g: &RoleGrant, at: Micros) -> Result<bool, StoreError> {
    let (kind, principal) = g.principal.parts();
    let user_id = match &g.principal {
        Principal::User(id) => Some(id),
        Principal::Group(_) => None,
    };
    // One statement, so that the resource and the user it names are there as it inserts.
    let granted = db
        .write(
            "INSERT INTO role_grants (org_id, resource_id, principal_type, principal, role, created_us) \
             SELECT ?, ?, ?, ?, ?, ? \
             WHERE EXISTS (SELECT 1 FROM resources WHERE org_id = ? AND id = ?) \
             AND (? <> 'user' OR EXISTS (SELECT 1 FROM users WHERE org_id = ? AND id = ?)) \
             ON CONFLICT DO NOTHING",
            grant_values(org, g)
                .into_iter()
                .chain([Arg::Int(at), Arg::Int(org.0), Arg::Text(g.resource_id.clone())])
                .chain([Arg::Text(kind.into()), Arg::Int(org.0), Arg::Text(principal.into())])
                .collect(),
        )
        .await?;
    if granted > 0 {
        return Ok(true);
    }
    // Nothing inserted: the grant was there, or what it names is not.
    let exists = |sql: &'static str, id: &str| db.read_optional(sql, vec![Arg::Int(org.0), Arg::Text(id.into())]);
    if exists("SELECT 1 AS found FROM resources WHERE org_id = ? AND id = ?", &g.resource_id).await?.is_none() {
        return Err(StoreError::Conflict(format!("no resource {:?}", g.resource_id)));
    }
    if let Some(id) = user_id
        && exists("SELECT 1 AS found FROM users WHERE org_id = ? AND id = ?", id).await?.is_none()
    {
        return Err(StoreError::Conflict(format!("no user {id:?}")));
    }
    Ok(false)
}

pub(crate) async fn revoke_role_grant(db: &impl Exec, org: OrgId, g: &RoleGrant) -> Result<bool, StoreError> {
    let revoked = db
        .write(
            "DELETE FROM role_grants WHERE org_id = ? AND resource_id = ? AND principal_type = ? AND principal = ? \
             AND role = ?",
            grant_values(org, g).into(),
        )
        .await?;
    Ok(revoked > 0)
}
