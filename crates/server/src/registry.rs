//! Creating resources and connectors (the CLI's `resources` and `connectors`).

use gatehouse_core::OrgId;
use gatehouse_core::time::now_micros;
use gatehouse_store::{KeyReplacement, NewConnector, Resource, Store, StoreError};

use crate::auth::{KeyKind, new_key};

/// A prefixed, time-ordered id such as `res_0190…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

pub async fn create_resource(
    store: &dyn Store,
    org: OrgId,
    name: &str,
    technology: &str,
    host: &str,
    port: u16,
) -> Result<Resource, StoreError> {
    let resource = Resource {
        id: new_id("res"),
        name: name.to_owned(),
        kind: "datastore".into(),
        technology: technology.to_owned(),
        host: host.to_owned(),
        port,
        created: now_micros(),
    };
    store.create_resource(org, &resource).await?;
    Ok(resource)
}

/// A new connector and its key, which is shown once.
pub struct CreatedConnector {
    pub id: String,
    pub key: String,
}

pub async fn create_connector(store: &dyn Store, org: OrgId, name: &str) -> Result<CreatedConnector, StoreError> {
    let key = new_key(KeyKind::Connector);
    let id = new_id("con");
    store
        .create_connector(&NewConnector {
            org,
            id: id.clone(),
            name: name.to_owned(),
            key_prefix: key.prefix,
            key_hash: key.hash,
            created: now_micros(),
        })
        .await?;
    Ok(CreatedConnector { id, key: key.key })
}

/// Gives connector `name` a new key (shown once, unless `change` revokes its key); the old key
/// stops at once, or works on as `change` says. `None` when the organization has no connector
/// of that name.
pub async fn replace_connector_key(
    store: &dyn Store,
    org: OrgId,
    name: &str,
    change: KeyReplacement,
) -> Result<Option<CreatedConnector>, StoreError> {
    let key = new_key(KeyKind::Connector);
    let id = store.replace_connector_key(org, name, &key.prefix, &key.hash, change).await?;
    Ok(id.map(|id| CreatedConnector { id, key: key.key }))
}
