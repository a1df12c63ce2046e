//! Cancel keys: the client gets the backend's pid with the connector's own secret, and a
//! CancelRequest carrying it is forwarded, with the real secret, to the backend that runs the
//! session.
//!
//! Clients never learn the database's secrets, so a cancel cannot bypass the connector, and a
//! key is forgotten as soon as its session ends. The pid stays the backend's, so what clients
//! compare it with (`pg_backend_pid()`, a notification's sender) still matches.
//!
//! Connectors that clients reach at one address (a load balancer) form a group: each key's
//! first byte is its connector's `peer_id`, and a cancel for another connector's session
//! (the client's cancel is a new connection, which may land anywhere) is passed to it, as
//! pgbouncer's peers do. Once only: what a peer passes on is marked so.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatehouse_pgwire::backend::BackendKeyData;
use gatehouse_pgwire::{CancelRequest, MAX_CANCEL_KEY_LEN, Startup};
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::timer;

/// How long forwarding one cancel may take, connection included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a cancel goes: the backend's address and its real key.
#[derive(Clone)]
pub(crate) struct CancelTarget {
    pub upstream: SocketAddr,
    pub key: CancelRequest,
}

struct Issued {
    secret: Bytes,
    target: CancelTarget,
}

/// Who sent a CancelRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    Client,
    /// Another connector of the group, which passed on a client's cancel for this one.
    Peer,
}

/// This connector's place in a group behind one address (see
/// [`Config::peer_id`](crate::config::Config::peer_id)).
#[derive(Debug, Clone, Default)]
pub struct Peering {
    /// This connector's number: the first byte of every key it issues.
    pub own: Option<u8>,
    /// The others' numbers and `host:port`.
    pub peers: HashMap<u8, String>,
}

/// The keys handed to clients, by pid: backends of different databases may share one. Shared
/// by all listeners.
#[derive(Default)]
pub struct CancelMap {
    keys: Mutex<HashMap<i32, Vec<Issued>>>,
    peering: Peering,
}

impl CancelMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// A map whose keys name this connector among its `peering` group.
    pub fn with_peering(peering: Peering) -> Self {
        Self { peering, ..Self::default() }
    }

    /// Number of sessions that can be cancelled now.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers the backend's real key and returns the key to give the client instead: the
    /// same pid and a random secret as long as the real one (4 bytes in protocol 3.0, up to
    /// 256 in 3.2), unlike any other issued for that pid; in a group, its first byte is this
    /// connector's number.
    pub(crate) fn issue(&self, upstream: SocketAddr, real: &BackendKeyData) -> BackendKeyData {
        let mut rng = rand::thread_rng();
        let target =
            CancelTarget { upstream, key: CancelRequest { pid: real.pid, secret_key: real.secret_key.clone() } };
        let mut keys = self.lock();
        let issued = keys.entry(real.pid).or_default();
        loop {
            let mut secret = vec![0u8; real.secret_key.len()];
            rng.fill_bytes(&mut secret);
            if let (Some(own), Some(first)) = (self.peering.own, secret.first_mut()) {
                *first = own;
            }
            if issued.iter().all(|i| i.secret != secret) {
                let secret = Bytes::from(secret);
                issued.push(Issued { secret: secret.clone(), target });
                return BackendKeyData { pid: real.pid, secret_key: secret };
            }
        }
    }

    /// Forgets a key whose session ended.
    pub(crate) fn remove(&self, key: &BackendKeyData) {
        let mut keys = self.lock();
        if let Some(issued) = keys.get_mut(&key.pid) {
            issued.retain(|i| i.secret != key.secret_key);
            if issued.is_empty() {
                keys.remove(&key.pid);
            }
        }
    }

    /// The backend a client's CancelRequest names, if its secret matches (compared in
    /// constant time).
    pub(crate) fn find(&self, request: &CancelRequest) -> Option<CancelTarget> {
        let keys = self.lock();
        let issued = keys.get(&request.pid)?;
        issued
            .iter()
            .find(|i| bool::from(i.secret.as_ref().ct_eq(request.secret_key.as_ref())))
            .map(|i| i.target.clone())
    }

    /// The peer whose key `request` carries, when it is another connector's of the group.
    fn peer_of(&self, request: &CancelRequest) -> Option<(u8, &str)> {
        let id = *request.secret_key.first()?;
        let address = self.peering.peers.get(&id).filter(|_| self.peering.own != Some(id))?;
        Some((id, address))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Vec<Issued>>> {
        crate::lock(&self.keys)
    }
}

/// Shows the count only: the map holds secrets.
impl fmt::Debug for CancelMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelMap").field("len", &self.len()).finish()
    }
}

/// Handles a CancelRequest: forwards it if the key is one of ours, or passes a client's to the
/// peer whose key it is. Unknown keys are ignored without a word, as PostgreSQL does.
pub(crate) async fn forward(map: &CancelMap, request: &CancelRequest, sender: Sender) {
    if let Some(target) = map.find(request) {
        return send(&target).await;
    }
    match map.peer_of(request) {
        Some((id, address)) if sender == Sender::Client => {
            tracing::debug!(peer = id, "cancel request passed to the connector whose key it is");
            deliver(address, Startup::PeerCancel(request.clone())).await;
        }
        _ => tracing::debug!(pid = request.pid, "cancel request with an unknown key ignored"),
    }
}

/// Sends a CancelRequest with the real key to the backend's server. Failures are logged: a
/// cancel is best effort, in PostgreSQL too.
pub(crate) async fn send(target: &CancelTarget) {
    deliver(target.upstream, Startup::Cancel(target.key.clone())).await;
}

/// Sends `packet` to `address` and waits until the other end closes the connection, which it
/// does once the cancel was processed.
async fn deliver(address: impl ToSocketAddrs + fmt::Display + Copy, packet: Startup) {
    let result = timer::timeout(FORWARD_TIMEOUT, async {
        let mut stream = TcpStream::connect(address).await?;
        let mut bytes = BytesMut::with_capacity(12 + MAX_CANCEL_KEY_LEN);
        packet.encode(&mut bytes);
        stream.write_all(&bytes).await?;
        let mut sink = [0u8; 64];
        while stream.read(&mut sink).await? != 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
    match result {
        Ok(Ok(())) => tracing::debug!(to = %address, "cancel forwarded"),
        Ok(Err(error)) => tracing::warn!(to = %address, %error, "cannot forward a cancel request"),
        Err(_) => tracing::warn!(to = %address, "forwarding a cancel request timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(len: usize) -> BackendKeyData {
        BackendKeyData { pid: 4242, secret_key: Bytes::from(vec![7u8; len]) }
    }

    #[test]
    fn issued_key_finds_the_real_one_and_is_forgotten() {
        let map = CancelMap::new();
        let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let ours = map.issue(upstream, &real(4));
        assert_eq!(ours.pid, 4242, "clients see the backend's own pid");
        assert_eq!(ours.secret_key.len(), 4);
        assert_ne!(ours.secret_key, real(4).secret_key);

        let target = map.find(&CancelRequest { pid: ours.pid, secret_key: ours.secret_key.clone() }).unwrap();
        assert_eq!(target.upstream, upstream);
        assert_eq!(target.key, CancelRequest { pid: 4242, secret_key: real(4).secret_key });

        map.remove(&ours);
        assert!(map.find(&CancelRequest { pid: ours.pid, secret_key: ours.secret_key }).is_none());
        assert!(map.is_empty());
    }

    #[test]
    fn wrong_secret_or_pid_finds_nothing() {
        let map = CancelMap::new();
        let ours = map.issue("127.0.0.1:1".parse().unwrap(), &real(4));
        let mut wrong = ours.secret_key.to_vec();
        wrong[0] ^= 1;
        assert!(map.find(&CancelRequest { pid: ours.pid, secret_key: Bytes::from(wrong) }).is_none());
        assert!(map.find(&CancelRequest { pid: ours.pid ^ 1, secret_key: ours.secret_key.clone() }).is_none());
        // The real secret is no secret at the connector.
        assert!(map.find(&CancelRequest { pid: 4242, secret_key: real(4).secret_key }).is_none());
    }

    #[test]
    fn backends_of_two_databases_with_one_pid_are_told_apart() {
        let map = CancelMap::new();
        let first: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let second: SocketAddr = "127.0.0.1:5433".parse().unwrap();
        let a = map.issue(first, &real(4));
        let b = map.issue(second, &real(4));
        assert_eq!((a.pid, b.pid), (4242, 4242));
        assert_ne!(a.secret_key, b.secret_key);
        let find = |key: &BackendKeyData| {
            map.find(&CancelRequest { pid: key.pid, secret_key: key.secret_key.clone() }).map(|t| t.upstream)
        };
        assert_eq!((find(&a), find(&b)), (Some(first), Some(second)));
        map.remove(&a);
        assert_eq!((find(&a), find(&b)), (None, Some(second)));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn keys_of_a_group_name_their_connector() {
        let peers = HashMap::from([(9, "10.0.0.9:6432".to_owned())]);
        let map = CancelMap::with_peering(Peering { own: Some(7), peers });
        let keys: Vec<_> = (0..50).map(|_| map.issue("127.0.0.1:1".parse().unwrap(), &real(4))).collect();
        assert!(keys.iter().all(|key| key.secret_key[0] == 7));
        assert_eq!(map.len(), 50, "still unlike each other");
        let request = |first: u8| CancelRequest { pid: 4242, secret_key: Bytes::from(vec![first, 1, 2, 3]) };
        assert_eq!(map.peer_of(&request(9)), Some((9, "10.0.0.9:6432")));
        // Its own (a session ended since), or no peer's: nowhere to pass it.
        assert_eq!(map.peer_of(&request(7)), None);
        assert_eq!(map.peer_of(&request(8)), None);
        // Outside a group, keys are random throughout.
        assert_eq!(CancelMap::new().peer_of(&request(9)), None);
    }

    #[test]
    fn protocol_3_2_keys_keep_their_length() {
        let map = CancelMap::new();
        let ours = map.issue("127.0.0.1:1".parse().unwrap(), &real(32));
        assert_eq!(ours.secret_key.len(), 32);
        assert!(map.find(&CancelRequest { pid: ours.pid, secret_key: ours.secret_key.clone() }).is_some());
        // A 4-byte prefix of the 32-byte secret does not match.
        assert!(map.find(&CancelRequest { pid: ours.pid, secret_key: ours.secret_key.slice(..4) }).is_none());
    }
}
