//! Resources and connectors as registered, and connectors' keys: the same statements in both
//! stores. (A connector's runs, leases and reports are each store's own: `connectors.rs`.)

use gatehouse_core::OrgId;

use super::builder::Arg;
use super::exec::{Columns, Exec};
use crate::StoreError;
use crate::model::{ConnectorInfo, KeyReplacement, NewConnector, Resource, StoredConnector};

pub(crate) async fn create_resource(db: &impl Exec, org: OrgId, r: &Resource) -> Result<(), StoreError> {
    let created = db
        .write(
            "INSERT INTO resources (org_id, id, name, type, technology, host, port, created_us) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            vec![
                Arg::Int(org.0),
                Arg::Text(r.id.clone()),
                Arg::Text(r.name.clone()),
                Arg::Text(r.kind.clone()),
                Arg::Text(r.technology.clone()),
                Arg::Text(r.host.clone()),
                Arg::Int(i64::from(r.port)),
                Arg::Int(r.created),
            ],
        )
        .await?;
    if created == 0 {
        return Err(StoreError::Conflict(format!("a resource named {:?} exists already", r.name)));
    }
    Ok(())
}

pub(crate) async fn list_resources(db: &impl Exec, org: OrgId) -> Result<Vec<Resource>, StoreError> {
    let rows = db
        .read_all(
            "SELECT id, name, type, technology, host, port, created_us FROM resources WHERE org_id = ? ORDER BY name",
            vec![Arg::Int(org.0)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Resource {
                id: row.text("id")?,
                name: row.text("name")?,
                kind: row.text("type")?,
                technology: row.text("technology")?,
                host: row.text("host")?,
                port: u16::try_from(row.int("port")?)
                    .map_err(|_| StoreError::Corrupt("resource port out of range".into()))?,
                created: row.int("created_us")?,
            })
        })
        .collect()
}

pub(crate) async fn create_connector(db: &impl Exec, c: &NewConnector) -> Result<(), StoreError> {
    let created = db
        .write(
            "INSERT INTO connectors (org_id, id, name, key_prefix, key_hash, created_us) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
            vec![
                Arg::Int(c.org.0),
                Arg::Text(c.id.clone()),
                Arg::Text(c.name.clone()),
                Arg::Text(c.key_prefix.clone()),
                Arg::Blob(c.key_hash.clone()),
                Arg::Int(c.created),
            ],
        )
        .await?;
    if created == 0 {
        return Err(StoreError::Conflict(format!("a connector named {:?} exists already", c.name)));
    }
    Ok(())
}

/// An organization's connectors by name, with their runs still counted as running.
pub(crate) async fn list_connectors(db: &impl Exec, org: OrgId) -> Result<Vec<ConnectorInfo>, StoreError> {
    let rows = db
        .read_all(
            "SELECT c.id, c.name, c.key_prefix, c.created_us, c.last_heard_us, \
                 CASE WHEN c.revoked_us IS NULL THEN c.old_key_prefix END AS old_key_prefix, \
                 CASE WHEN c.revoked_us IS NULL THEN c.old_key_until_us END AS old_key_until_us, c.revoked_us, \
                 (SELECT COUNT(*) FROM connector_runs r WHERE r.org_id = c.org_id AND r.connector_id = c.id \
                     AND r.lapsed_us IS NULL AND r.taken_over_us IS NULL) AS running \
             FROM connectors c WHERE c.org_id = ? ORDER BY c.name",
            vec![Arg::Int(org.0)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ConnectorInfo {
                id: row.text("id")?,
                name: row.text("name")?,
                key_prefix: row.text("key_prefix")?,
                created: row.int("created_us")?,
                last_heard: row.opt_int("last_heard_us")?,
                running: row.int("running")?,
                old_key_prefix: row.opt_text("old_key_prefix")?,
                old_key_until: row.opt_int("old_key_until_us")?,
                revoked: row.opt_int("revoked_us")?,
            })
        })
        .collect()
}

/// Gives the connector named `name` a new key; its id, or `None` when there is no such connector.
pub(crate) async fn replace_connector_key(
    db: &impl Exec,
    org: OrgId,
    name: &str,
    key_prefix: &str,
    key_hash: &[u8],
    change: KeyReplacement,
) -> Result<Option<String>, StoreError> {
    // The old key is kept (from the row as it was) while it may still work; a revoked one too,
    // as having worked until its revocation, so that whoever holds it can be told it was
    // revoked (`find_connector`). A revoked connector's key is one nobody was given, with
    // nothing to overlap: revoked again, it keeps the key first revoked; given a new key, none.
    let kept_until = change.old_key_until().or(change.revoked());
    // What the old slot's `column` becomes, kept as `kept`.
    let old = |column: &str, kept: &str| match (kept_until.is_some(), change.revoked().is_some()) {
        (true, true) => format!("CASE WHEN revoked_us IS NULL THEN {kept} ELSE {column} END"),
        (true, false) => format!("CASE WHEN revoked_us IS NULL THEN {kept} END"),
        (false, _) => "NULL".to_owned(),
    };
    let (old_prefix, old_hash) = (old("old_key_prefix", "key_prefix"), old("old_key_hash", "key_hash"));
    let old_until = old("old_key_until_us", "?");
    // Every right-hand side reads the row as it was.
    let sql = format!(
        "UPDATE connectors SET old_key_prefix = {old_prefix}, old_key_hash = {old_hash}, \
             old_key_until_us = {old_until}, key_prefix = ?, key_hash = ?, revoked_us = ? \
         WHERE org_id = ? AND name = ? RETURNING id"
    );
    let opt_int = |at: Option<i64>| at.map_or(Arg::Null, Arg::Int);
    let mut args = Vec::with_capacity(6);
    if let Some(until) = kept_until {
        args.push(Arg::Int(until));
    }
    args.extend([
        Arg::Text(key_prefix.into()),
        Arg::Blob(key_hash.to_vec()),
        opt_int(change.revoked()),
        Arg::Int(org.0),
        Arg::Text(name.into()),
    ]);
    let row = db.write_returning(&sql, args).await?;
    Ok(row.map(|row| row.text("id")).transpose()?)
}

/// The connector whose key, or previous key, has this prefix.
pub(crate) async fn find_connector(db: &impl Exec, key_prefix: &str) -> Result<Option<StoredConnector>, StoreError> {
    let row = db
        .read_optional(
            "SELECT org_id, id, name, \
                 CASE WHEN key_prefix = ? THEN key_hash ELSE old_key_hash END AS key_hash, \
                 CASE WHEN key_prefix = ? THEN NULL ELSE old_key_until_us END AS key_until_us, \
                 CASE WHEN key_prefix = ? THEN NULL ELSE revoked_us END AS revoked_us \
             FROM connectors WHERE key_prefix = ? OR old_key_prefix = ?",
            vec![Arg::Text(key_prefix.into()); 5],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(StoredConnector {
        org: OrgId(row.int("org_id")?),
        id: row.text("id")?,
        name: row.text("name")?,
        key_hash: row.blob("key_hash")?,
        key_until: row.opt_int("key_until_us")?,
        revoked: row.opt_int("revoked_us")?,
    }))
}
