//! `gatehouse.keys.v1.KeysService`: the key a call is made with, and its organization, which
//! the public `core.v1` schema has no method for. Keys are the sessions API's.

use std::sync::Arc;

use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};
use gatehouse_proto::gatehouse::keys::v1::*;
use gatehouse_store::{Store, StoreError};

use crate::error::store_error;
use crate::sessions::caller;

pub struct KeysApi {
    store: Arc<dyn Store>,
}

impl KeysApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

impl KeysService for KeysApi {
    async fn get_caller_key(
        &self,
        ctx: RequestContext,
        _req: ServiceRequest<'_, GetCallerKeyRequest>,
    ) -> ServiceResult<GetCallerKeyResponse> {
        let caller = caller(&ctx)?;
        let store = &self.store;
        let (org, keys) =
            tokio::try_join!(store.get_org(caller.org), store.list_api_keys(caller.org)).map_err(store_error)?;
        let key = keys.into_iter().find(|key| key.prefix == caller.key_prefix);
        // Both were found when the key was checked, and neither is ever deleted.
        let (Some(org), Some(key)) = (org, key) else {
            return Err(store_error(StoreError::Corrupt(format!(
                "API key {} or its organization {} vanished after it was checked",
                caller.key_prefix, caller.org.0
            ))));
        };
        Response::ok(GetCallerKeyResponse {
            organization: org.name,
            role: caller.role.as_str().to_owned(),
            prefix: key.prefix,
            name: key.name,
            ..Default::default()
        })
    }
}
