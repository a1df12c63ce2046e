//! Organizations, their API keys, and the store's secrets: the same statements in both stores.

use std::str::FromStr;

use gatehouse_core::{Micros, OrgId, Role};

use super::builder::Arg;
use super::exec::{Columns, Exec};
use crate::StoreError;
use crate::error::org_vanished;
use crate::model::{ApiKeyInfo, NewApiKey, Org, StoredApiKey};

fn org_from_row(row: &impl Columns) -> Result<Org, StoreError> {
    Ok(Org { id: OrgId(row.int("id")?), name: row.text("name")? })
}

fn role_from_row(row: &impl Columns) -> Result<Role, StoreError> {
    Role::from_str(&row.text("role")?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The organization named `name`, created when there is none, and whether it was.
pub(crate) async fn ensure_org_noting_creation(db: &impl Exec, name: &str) -> Result<(Org, bool), StoreError> {
    let inserted = db
        .write_returning(
            "INSERT INTO organizations (name, created_us) VALUES (?, ?) ON CONFLICT (name) DO NOTHING \
             RETURNING id, name",
            vec![Arg::Text(name.into()), Arg::Int(gatehouse_core::time::now_micros())],
        )
        .await?;
    if let Some(row) = inserted {
        return Ok((org_from_row(&row)?, true));
    }
    Ok((find_org(db, name).await?.ok_or_else(|| org_vanished(name))?, false))
}

pub(crate) async fn find_org(db: &impl Exec, name: &str) -> Result<Option<Org>, StoreError> {
    let row = db.read_optional("SELECT id, name FROM organizations WHERE name = ?", vec![Arg::Text(name.into())]);
    row.await?.as_ref().map(org_from_row).transpose()
}

pub(crate) async fn get_org(db: &impl Exec, id: OrgId) -> Result<Option<Org>, StoreError> {
    let row = db.read_optional("SELECT id, name FROM organizations WHERE id = ?", vec![Arg::Int(id.0)]);
    row.await?.as_ref().map(org_from_row).transpose()
}

pub(crate) async fn list_orgs(db: &impl Exec) -> Result<Vec<Org>, StoreError> {
    let rows = db.read_all("SELECT id, name FROM organizations ORDER BY name", Vec::new()).await?;
    rows.iter().map(org_from_row).collect()
}

pub(crate) async fn insert_api_key(db: &impl Exec, key: &NewApiKey) -> Result<(), StoreError> {
    db.write(
        "INSERT INTO api_keys (org_id, prefix, secret_hash, name, role, created_us) VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            Arg::Int(key.org.0),
            Arg::Text(key.prefix.clone()),
            Arg::Blob(key.secret_hash.clone()),
            Arg::Text(key.name.clone()),
            Arg::Text(key.role.as_str().into()),
            Arg::Int(key.created),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn find_api_key(db: &impl Exec, prefix: &str) -> Result<Option<StoredApiKey>, StoreError> {
    let row = db.read_optional(
        "SELECT org_id, prefix, secret_hash, role, revoked_us FROM api_keys WHERE prefix = ?",
        vec![Arg::Text(prefix.into())],
    );
    let Some(row) = row.await? else { return Ok(None) };
    Ok(Some(StoredApiKey {
        org: OrgId(row.int("org_id")?),
        prefix: row.text("prefix")?,
        secret_hash: row.blob("secret_hash")?,
        role: role_from_row(&row)?,
        revoked: row.opt_int("revoked_us")?.is_some(),
    }))
}

pub(crate) async fn list_api_keys(db: &impl Exec, org: OrgId) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let rows = db
        .read_all(
            "SELECT prefix, name, role, created_us, last_used_us, revoked_us FROM api_keys \
             WHERE org_id = ? ORDER BY created_us, id",
            vec![Arg::Int(org.0)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ApiKeyInfo {
                prefix: row.text("prefix")?,
                name: row.text("name")?,
                role: role_from_row(row)?,
                created: row.int("created_us")?,
                last_used: row.opt_int("last_used_us")?,
                revoked: row.opt_int("revoked_us")?,
            })
        })
        .collect()
}

pub(crate) async fn revoke_api_key(db: &impl Exec, org: OrgId, prefix: &str, at: Micros) -> Result<bool, StoreError> {
    let revoked = db
        .write(
            "UPDATE api_keys SET revoked_us = ? WHERE org_id = ? AND prefix = ? AND revoked_us IS NULL",
            vec![Arg::Int(at), Arg::Int(org.0), Arg::Text(prefix.into())],
        )
        .await?;
    Ok(revoked > 0)
}

/// Records a key's use at `at`; never moves it back (replicas record uses out of order).
pub(crate) async fn touch_api_key(db: &impl Exec, prefix: &str, at: Micros) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE api_keys SET last_used_us = {}(COALESCE(last_used_us, 0), ?) WHERE prefix = ?",
        db.dialect().greatest()
    );
    db.write(&sql, vec![Arg::Int(at), Arg::Text(prefix.into())]).await?;
    Ok(())
}

/// The secret named `name`, `init` stored as it when there is none. Replicas may race here: the
/// first insert wins, everyone reads it.
pub(crate) async fn secret_or_init(db: &impl Exec, name: &str, init: &[u8]) -> Result<Vec<u8>, StoreError> {
    db.write(
        "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        vec![Arg::Text(name.into()), Arg::Blob(init.to_vec())],
    )
    .await?;
    let row = db.read_optional("SELECT value FROM secrets WHERE name = ?", vec![Arg::Text(name.into())]).await?;
    let row = row.ok_or_else(|| StoreError::Corrupt(format!("secret {name:?} vanished after insert")))?;
    Ok(row.blob("value")?)
}
