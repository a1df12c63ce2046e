//! Users, access tokens and role grants, for SQLite.

use gatehouse_core::{Micros, OrgId};
use sqlx::Row;

use super::SqliteStore;
use crate::StoreError;
use crate::identity::*;
use crate::row::json_list;

impl SqliteStore {
    pub(super) async fn create_user_impl(&self, org: OrgId, u: &User) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO users (org_id, id, type, lookup, email, name, groups, external_ids, disabled, created_us, \
             updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(org.0)
        .bind(&u.id)
        .bind(u.kind.as_str())
        .bind(user_lookup(u.handle()))
        .bind(&u.email)
        .bind(&u.name)
        .bind(json_list(&u.groups))
        .bind(json_list(&u.external_ids))
        .bind(u.disabled)
        .bind(u.created)
        .bind(u.updated)
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a {} user {:?} exists already", u.kind, u.handle())));
        }
        Ok(())
    }

    pub(super) async fn find_user_impl(
        &self,
        org: OrgId,
        kind: UserKind,
        handle: &str,
    ) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE org_id = ? AND type = ? AND lookup = ?");
        let row = sqlx::query(&sql)
            .bind(org.0)
            .bind(kind.as_str())
            .bind(user_lookup(handle))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(super) async fn list_users_impl(&self, org: OrgId) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE org_id = ? ORDER BY type, lookup");
        let rows = sqlx::query(&sql).bind(org.0).fetch_all(self.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    pub(super) async fn update_user_impl(&self, org: OrgId, u: &User) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET lookup = ?, email = ?, name = ?, groups = ?, external_ids = ?, disabled = ?, \
             updated_us = ? WHERE org_id = ? AND id = ? AND type = ?",
        )
        .bind(user_lookup(u.handle()))
        .bind(&u.email)
        .bind(&u.name)
        .bind(json_list(&u.groups))
        .bind(json_list(&u.external_ids))
        .bind(u.disabled)
        .bind(u.updated)
        .bind(org.0)
        .bind(&u.id)
        .bind(u.kind.as_str())
        .execute(self.writer())
        .await
        .map_err(|e| conflict_on_unique(e, || format!("a {} user {:?} exists already", u.kind, u.handle())))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn insert_access_token_impl(&self, t: &NewAccessToken) -> Result<(), StoreError> {
        // Only for a user of the token's own organization.
        let done = sqlx::query(
            "INSERT INTO access_tokens (org_id, user_id, prefix, secret_hash, name, created_us, expires_us) \
             SELECT ?, id, ?, ?, ?, ?, ? FROM users WHERE org_id = ? AND id = ?",
        )
        .bind(t.org.0)
        .bind(&t.prefix)
        .bind(&t.secret_hash)
        .bind(&t.name)
        .bind(t.created)
        .bind(t.expires)
        .bind(t.org.0)
        .bind(&t.user_id)
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("no user {:?}", t.user_id)));
        }
        Ok(())
    }

    pub(super) async fn find_access_token_impl(&self, prefix: &str) -> Result<Option<StoredAccessToken>, StoreError> {
        let row = sqlx::query(
            "SELECT org_id, user_id, prefix, secret_hash, expires_us, revoked_us FROM access_tokens WHERE prefix = ?",
        )
        .bind(prefix)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredAccessToken {
            org: OrgId(row.try_get("org_id")?),
            user_id: row.try_get("user_id")?,
            prefix: row.try_get("prefix")?,
            secret_hash: row.try_get("secret_hash")?,
            expires: row.try_get("expires_us")?,
            revoked: row.try_get("revoked_us")?,
        }))
    }

    pub(super) async fn list_access_tokens_impl(
        &self,
        org: OrgId,
        user_id: &str,
    ) -> Result<Vec<AccessTokenInfo>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE org_id = ? AND user_id = ? ORDER BY created_us, pk"
        );
        let rows = sqlx::query(&sql).bind(org.0).bind(user_id).fetch_all(self.pool()).await?;
        rows.iter().map(token_info_from_row).collect()
    }

    pub(super) async fn revoke_access_token_impl(
        &self,
        org: OrgId,
        prefix: &str,
        at: Micros,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE access_tokens SET revoked_us = ? WHERE org_id = ? AND prefix = ? AND revoked_us IS NULL",
        )
        .bind(at)
        .bind(org.0)
        .bind(prefix)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn touch_access_token_impl(&self, prefix: &str, at: Micros) -> Result<(), StoreError> {
        sqlx::query("UPDATE access_tokens SET last_used_us = MAX(COALESCE(last_used_us, 0), ?) WHERE prefix = ?")
            .bind(at)
            .bind(prefix)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub(super) async fn set_resource_default_role_impl(
        &self,
        org: OrgId,
        resource_id: &str,
        role: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE resources SET default_role = ? WHERE org_id = ? AND id = ?")
            .bind(role)
            .bind(org.0)
            .bind(resource_id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn resource_access_impl(
        &self,
        org: OrgId,
        resource_id: &str,
    ) -> Result<Option<ResourceAccess>, StoreError> {
        let row = sqlx::query("SELECT name, default_role FROM resources WHERE org_id = ? AND id = ?")
            .bind(org.0)
            .bind(resource_id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let rows = sqlx::query(
            "SELECT principal_type, principal, role FROM role_grants WHERE org_id = ? AND resource_id = ? \
             ORDER BY principal_type, principal, role",
        )
        .bind(org.0)
        .bind(resource_id)
        .fetch_all(self.pool())
        .await?;
        let grants = rows
            .iter()
            .map(|g| {
                Ok(RoleGrant {
                    resource_id: resource_id.to_owned(),
                    principal: Principal::from_parts(g.try_get("principal_type")?, g.try_get("principal")?)?,
                    role: g.try_get("role")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(ResourceAccess {
            resource_id: resource_id.to_owned(),
            resource_name: row.try_get("name")?,
            default_role: row.try_get("default_role")?,
            grants,
        }))
    }

    pub(super) async fn grant_role_impl(&self, org: OrgId, g: &RoleGrant, at: Micros) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        let resource: Option<i64> = sqlx::query_scalar("SELECT org_id FROM resources WHERE org_id = ? AND id = ?")
            .bind(org.0)
            .bind(&g.resource_id)
            .fetch_optional(&mut *tx)
            .await?;
        if resource.is_none() {
            return Err(StoreError::Conflict(format!("no resource {:?}", g.resource_id)));
        }
        if let Principal::User(id) = &g.principal {
            let user: Option<i64> = sqlx::query_scalar("SELECT org_id FROM users WHERE org_id = ? AND id = ?")
                .bind(org.0)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if user.is_none() {
                return Err(StoreError::Conflict(format!("no user {id:?}")));
            }
        }
        let (kind, principal) = g.principal.parts();
        let done = sqlx::query(
            "INSERT INTO role_grants (org_id, resource_id, principal_type, principal, role, created_us) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(org.0)
        .bind(&g.resource_id)
        .bind(kind)
        .bind(principal)
        .bind(&g.role)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn revoke_role_grant_impl(&self, org: OrgId, g: &RoleGrant) -> Result<bool, StoreError> {
        let (kind, principal) = g.principal.parts();
        let done = sqlx::query(
            "DELETE FROM role_grants WHERE org_id = ? AND resource_id = ? AND principal_type = ? AND principal = ? \
             AND role = ?",
        )
        .bind(org.0)
        .bind(&g.resource_id)
        .bind(kind)
        .bind(principal)
        .bind(&g.role)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
