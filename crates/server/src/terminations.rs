//! Delivers termination requests to the connector streams that watch for
//! them, within this process. (Replicas sharing PostgreSQL relay them with
//! LISTEN/NOTIFY: issue 4.)

use std::collections::HashMap;
use std::sync::Mutex;

use gatehouse_core::OrgId;
use gatehouse_store::TerminationRecord;
use tokio::sync::broadcast;

/// Open channels per connector. A connector with no watcher misses nothing:
/// on (re)connecting it first reads pending terminations from the store.
#[derive(Debug, Default)]
pub struct TerminationBus {
    channels: Mutex<HashMap<(OrgId, String), broadcast::Sender<TerminationRecord>>>,
}

impl TerminationBus {
    pub fn subscribe(&self, org: OrgId, connector_id: &str) -> broadcast::Receiver<TerminationRecord> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry((org, connector_id.to_owned())).or_insert_with(|| broadcast::channel(256).0).subscribe()
    }

    pub fn publish(&self, org: OrgId, termination: TerminationRecord) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let key = (org, termination.connector_id.clone());
        if let Some(sender) = channels.get(&key)
            && sender.send(termination).is_err()
        {
            // Nobody listens any more.
            channels.remove(&key);
        }
    }
}
