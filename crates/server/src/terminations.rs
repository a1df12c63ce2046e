//! Delivers termination requests to the connector streams that watch for
//! them.
//!
//! Within a process, `CreateSessionTermination` publishes straight onto the
//! [`TerminationBus`]. When the store is shared by several replicas
//! (PostgreSQL), [`TerminationBus::relay`] also publishes what the store's
//! feed announces, so a termination requested at one replica reaches a
//! connector watching through another. A replica thus hears of its own
//! terminations twice (directly, then through the feed); the bus delivers
//! each termination id once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::StoreClock;
use gatehouse_core::{Micros, OrgId};
use gatehouse_store::{Store, TerminationFeed, TerminationNotice, TerminationRecord};
use tokio::sync::broadcast;

/// Termination ids remembered for de-duplication: far more than can be in
/// flight between a direct publish and its echo through the feed.
const REMEMBERED: usize = 4096;

/// How far back a resync looks: as far as a connector that reconnects does.
const RESYNC_WINDOW_US: Micros = 3_600_000_000;

/// Open channels per connector. A connector with no watcher misses nothing:
/// on (re)connecting it first reads pending terminations from the store.
#[derive(Debug, Default)]
pub struct TerminationBus {
    channels: Mutex<HashMap<(OrgId, String), broadcast::Sender<TerminationRecord>>>,
    delivered: Mutex<Delivered>,
    /// The server is shutting down: watches end, and new ones end at once. (Read and set
    /// under the `channels` lock.)
    closed: AtomicBool,
}

/// The most recent termination ids published, oldest first.
#[derive(Debug, Default)]
struct Delivered {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Delivered {
    /// Remembers `id`; false when it was remembered already.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        true
    }
}

impl TerminationBus {
    pub fn subscribe(&self, org: OrgId, connector_id: &str) -> broadcast::Receiver<TerminationRecord> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Acquire) {
            // Its sender is dropped here: the watch ends after what is pending.
            return broadcast::channel(1).1;
        }
        channels.entry((org, connector_id.to_owned())).or_insert_with(|| broadcast::channel(256).0).subscribe()
    }

    /// Sends `termination` to the watchers of its connector, unless this bus
    /// has published it already.
    pub fn publish(&self, org: OrgId, termination: TerminationRecord) {
        if !self.delivered.lock().unwrap_or_else(|e| e.into_inner()).insert(&termination.id) {
            return;
        }
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let key = (org, termination.connector_id.clone());
        if let Some(sender) = channels.get(&key)
            && sender.send(termination).is_err()
        {
            // Nobody listens any more.
            channels.remove(&key);
        }
    }

    /// Ends every watch, cleanly, and those that start later at once: the server is shutting
    /// down, and a stream never ends by itself. The connectors reopen theirs, elsewhere.
    pub fn close(&self) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::Release);
        channels.clear();
    }

    /// Publishes what a shared store's feed announces, until the feed ends.
    pub async fn relay(self: Arc<Self>, store: Arc<dyn Store>, mut feed: TerminationFeed, clock: Arc<StoreClock>) {
        while let Some(notice) = feed.recv().await {
            match notice {
                TerminationNotice::Requested { org, termination } => self.publish(org, termination),
                TerminationNotice::Resync => self.resync(store.as_ref(), &clock).await,
            }
        }
        tracing::warn!("the store's termination feed ended; terminations now reach only this replica's connectors");
    }

    /// Re-reads the pending terminations of every connector watching here:
    /// the feed was away, and what it announced meanwhile is lost.
    async fn resync(&self, store: &dyn Store, clock: &StoreClock) {
        let watched: Vec<(OrgId, String)> = {
            let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            channels.iter().filter(|(_, sender)| sender.receiver_count() > 0).map(|(key, _)| key.clone()).collect()
        };
        for (org, connector_id) in watched {
            // The feed just reconnected, so the database is back; a few
            // retries cover a pool still replacing its dead connections.
            let mut attempt = 0;
            loop {
                match store.pending_terminations(org, &connector_id, clock.now() - RESYNC_WINDOW_US).await {
                    Ok(pending) => {
                        for termination in pending {
                            self.publish(org, termination);
                        }
                        break;
                    }
                    Err(err) if attempt < 5 => {
                        attempt += 1;
                        tracing::debug!(%err, attempt, "cannot re-read pending terminations yet");
                        tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                    }
                    Err(err) => {
                        tracing::warn!(%err, connector = connector_id, "cannot re-read pending terminations; the connector gets them when it reconnects");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn termination(id: &str) -> TerminationRecord {
        TerminationRecord {
            id: id.into(),
            session_id: "s".into(),
            connector_id: "c".into(),
            reason: "r".into(),
            created: 0,
        }
    }

    #[test]
    fn each_termination_is_delivered_once() {
        let bus = TerminationBus::default();
        let mut watcher = bus.subscribe(OrgId(1), "c");
        bus.publish(OrgId(1), termination("t1"));
        bus.publish(OrgId(1), termination("t1"));
        bus.publish(OrgId(1), termination("t2"));
        assert_eq!(watcher.try_recv().unwrap().id, "t1");
        assert_eq!(watcher.try_recv().unwrap().id, "t2");
        assert!(watcher.try_recv().is_err());
    }

    #[test]
    fn closing_ends_every_watch_and_later_ones_at_once() {
        use tokio::sync::broadcast::error::TryRecvError;
        let bus = TerminationBus::default();
        let mut watcher = bus.subscribe(OrgId(1), "c");
        bus.publish(OrgId(1), termination("t1"));
        bus.close();
        assert_eq!(watcher.try_recv().unwrap().id, "t1", "what was sent is still read");
        assert_eq!(watcher.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(bus.subscribe(OrgId(1), "c").try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn the_memory_of_delivered_ids_is_bounded() {
        let mut delivered = Delivered::default();
        for i in 0..REMEMBERED + 10 {
            assert!(delivered.insert(&i.to_string()));
        }
        assert_eq!(delivered.ids.len(), REMEMBERED);
        assert!(delivered.insert("0"), "the oldest ids are forgotten");
        assert!(!delivered.insert(&(REMEMBERED + 9).to_string()));
    }
}
