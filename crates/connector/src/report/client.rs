//! The connection to the control plane's `ConnectorService`, with the
//! connector key on every call and a time limit on every unary call. Given
//! several addresses (replicas of one control plane), calls go to one until
//! it cannot be reached, then to the next.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use connectrpc::client::{CallOptions, ClientConfig, ClientTransport, ServerStream};
use connectrpc::{ConnectError, ErrorCode, SpecOrigin};
use gatehouse_proto::gatehouse::connector::v1 as pb;
use gatehouse_proto::gatehouse::connector::v1::__buffa::view::ReportResponseView;
use gatehouse_proto::gatehouse::connector::v1::{CONNECTOR_SERVICE_REPORT_SPEC, ConnectorServiceClient};
use gatehouse_tls::{TlsError, Transport};
use http::Uri;
use http::header::HeaderValue;

use super::resources::{HelloInfo, Resource};
use super::runs::PreviousRun;
use crate::metrics::Metrics;
use crate::timer;

/// Unary calls not answered within this are abandoned (and retried).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The least time a call is made with on another replica, and the least a call's silence is
/// taken for that replica being unreachable in.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// Why a control plane address or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control plane URL `{url}` is not valid: {message}")]
    Url { url: String, message: String },
    #[error("control plane CA file: {0}")]
    Tls(#[from] TlsError),
    #[error("the connector key is empty: set control_plane.key or GATEHOUSE_CONNECTOR_KEY")]
    MissingKey,
    #[error("the connector key contains characters not allowed in an HTTP header")]
    InvalidKey,
}

/// A cheap, cloneable handle on the control plane.
#[derive(Clone)]
pub struct ControlPlane {
    /// One per address, in the order configured.
    clients: Arc<[ConnectorServiceClient<Transport>]>,
    /// The one calls go to; shared by the clones, so that every task moves on together.
    current: Arc<AtomicUsize>,
    /// Woken when calls move on from one replica to the next: a call still waiting on the one
    /// left (a replica that hangs) is made again on the next rather than waited out.
    moved: Arc<tokio::sync::Notify>,
    /// Whether the last call found its control plane unreachable: a move to the next one is
    /// logged as a warning once per outage, not at every retry.
    moving: Arc<AtomicBool>,
    /// Where reachability shows in `/metrics`.
    metrics: Arc<Metrics>,
    /// Woken when a call bound to one replica (the termination stream) found the key refused:
    /// see [`ControlPlane::doubt_key`].
    key_doubted: Arc<tokio::sync::Notify>,
    /// The clients' own, for `Report`, which is sent as an `EncodedReportRequest`.
    transport: Transport,
    timeout: Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        let urls: Vec<_> = self.clients.iter().map(|c| c.config().base_uri().to_string()).collect();
        f.debug_struct("ControlPlane").field("urls", &urls).finish()
    }
}

impl ControlPlane {
    /// A client for `urls` (`http://host:port` or `https://host:port`; several, separated by
    /// commas, for replicas of one control plane) that sends `key` as `X-API-KEY`. Over https
    /// the control plane's certificate is checked against the Mozilla roots, and the
    /// authorities in `ca_file` when given.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] for an unusable URL, key or CA file; nothing is contacted yet.
    pub fn new(urls: &str, key: &str, ca_file: Option<&Path>) -> Result<Self, ClientError> {
        if key.is_empty() {
            return Err(ClientError::MissingKey);
        }
        let mut value = HeaderValue::from_str(key).map_err(|_| ClientError::InvalidKey)?;
        value.set_sensitive(true);
        let transport = gatehouse_tls::transport(ca_file)?;
        let clients = urls
            .split(',')
            .map(|url| {
                let uri = parse_url(url.trim())?;
                if uri.scheme_str() == Some("http") && !is_loopback(uri.host().unwrap_or_default()) {
                    tracing::warn!(
                        url = %uri,
                        "the control plane is reached over plain http: the connector key and users' access \
                         tokens cross the network in cleartext (use https://)"
                    );
                }
                // Binary protobuf, which `report` relies on: an EncodedReportRequest is a
                // ReportRequest in that form only (in JSON its events would be base64 strings).
                let config = ClientConfig::new(uri).proto().with_default_header("x-api-key", value.clone());
                Ok(ConnectorServiceClient::new(transport.clone(), config))
            })
            .collect::<Result<Arc<[_]>, ClientError>>()?;
        Ok(Self {
            clients,
            current: Arc::default(),
            moved: Arc::default(),
            moving: Arc::default(),
            metrics: Arc::default(),
            key_doubted: Arc::default(),
            transport,
            timeout: CALL_TIMEOUT,
        })
    }

    /// Which of its addresses calls go to now (its place in the configured list).
    pub fn current_replica(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.clients.len()
    }

    /// The same client, showing in `metrics` whether it reaches the control plane.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same client with another limit for unary calls.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Makes `call` on the current client, bounded by `timeout` (its options carry what is
    /// left of it). When that control plane cannot be reached, the call is made again on the
    /// next one in the time left, and every later call goes there too; each address is tried
    /// once. Every call here may be repeated: reports are idempotent per session and sequence
    /// number, and the others only state or ask. A replica that hangs (stopped, its machine
    /// overloaded) refuses nothing: `on_silence` says whether no answer in time counts as
    /// unreachable.
    async fn on_current<'a, T, F>(
        &'a self,
        timeout: Duration,
        on_silence: OnSilence,
        call: impl Fn(&'a ConnectorServiceClient<Transport>, CallOptions) -> F,
    ) -> Result<T, ConnectError>
    where
        F: Future<Output = Result<T, ConnectError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut at = self.current.load(Ordering::Relaxed) % self.clients.len();
        let mut tried = 0;
        // The first replica that answered and refused the key: the answer when no other takes it.
        let mut refused: Option<ConnectError> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = bounded(left, call(&self.clients[at], CallOptions::default().with_timeout(left)));
            // Left meanwhile (found hanging by another call): made again on the next one, whether
            // or not this call's own silence would have counted.
            let result = tokio::select! {
                result = attempt => result,
                () = self.moved_from(at) => Err(ConnectError::new(
                    ErrorCode::Unavailable,
                    "the control plane stopped answering the connector's other calls: calls go to the next one",
                )),
            };
            let Err(error) = &result else {
                self.moving.store(false, Ordering::Relaxed);
                self.metrics.control_plane_reachable.store(1, Ordering::Relaxed);
                self.metrics.control_plane_replica.store(at as u64, Ordering::Relaxed);
                return result;
            };
            let unreachable = match error.code {
                ErrorCode::Unavailable | ErrorCode::Unknown => true,
                ErrorCode::DeadlineExceeded => on_silence == OnSilence::NextReplica && left >= MIN_ATTEMPT,
                _ => false,
            };
            // A replica that refuses the key may be one on another store (or one that has not
            // yet seen a rotation): the key counts as refused only when no replica takes it.
            let refuses = refuses_key(error);
            tried += 1;
            if unreachable {
                Metrics::add(&self.metrics.control_plane_unreachable_total, 1);
                if tried == self.clients.len() && refused.is_none() {
                    self.metrics.control_plane_reachable.store(0, Ordering::Relaxed);
                }
            }
            let url = self.clients[at].config().base_uri();
            if refuses {
                self.metrics.control_plane_reachable.store(1, Ordering::Relaxed);
                if refused.is_none() {
                    refused = Some(key_refused_at(url, error));
                }
            }
            if !(unreachable || refuses) || self.clients.len() == 1 {
                return match refused {
                    Some(refused) if refuses || unreachable => Err(refused),
                    _ => result,
                };
            }
            let next = (at + 1) % self.clients.len();
            if self.move_on(at) {
                let to = self.clients[next].config().base_uri();
                // The whole chain, and what to do: a refused certificate is in the sources.
                let advice = gatehouse_tls::advice(error, "control_plane.ca_file (or GATEHOUSE_CA_FILE)");
                let error = gatehouse_tls::chain(error);
                let what = match refuses {
                    true => "control plane refuses this connector's key: trying the next one",
                    false => "control plane unreachable: trying the next one",
                };
                if self.moving.swap(true, Ordering::Relaxed) {
                    tracing::debug!(from = %url, %to, error, advice, "{what}");
                } else {
                    tracing::warn!(from = %url, %to, error, advice, "{what}");
                }
            }
            // A moment is no fair chance: its silence would send the calls back to a replica
            // that hangs.
            if tried == self.clients.len() || deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT {
                return match refused {
                    Some(refused) => Err(refused),
                    None => result,
                };
            }
            at = next;
        }
    }

    /// Moves every later call from `replica` to the next one, when calls still go to `replica`
    /// (another task may have moved them already): it hangs, as `why` says.
    pub fn leave_replica(&self, replica: usize, why: &str) {
        if self.move_on(replica) {
            let next = (replica + 1) % self.clients.len();
            let (from, to) = (self.clients[replica].config().base_uri(), self.clients[next].config().base_uri());
            tracing::warn!(%from, %to, "control plane unresponsive ({why}): trying the next one");
        }
    }

    /// Moves every later call from `replica` to the next one, unless they go elsewhere already
    /// (another task moved them), and wakes the calls waiting on `replica`; returns whether
    /// this moved them.
    fn move_on(&self, replica: usize) -> bool {
        let next = (replica + 1) % self.clients.len();
        let moved = next != replica
            && self.current.compare_exchange(replica, next, Ordering::Relaxed, Ordering::Relaxed).is_ok();
        if moved {
            self.moved.notify_waiters();
        }
        moved
    }

    /// Resolves once calls no longer go to `replica`.
    async fn moved_from(&self, replica: usize) {
        loop {
            // Registered before the check, so that a move between the two is not missed.
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.current_replica() != replica {
                return;
            }
            moved.await;
        }
    }

    /// Says that a call that goes to one replica only (the termination stream) found the key
    /// refused: whether every replica refuses it, which stops new sessions, is the heartbeat's
    /// to ask, now rather than at its next beat (up to 10 s later, letting sessions in meanwhile).
    pub fn doubt_key(&self) {
        self.key_doubted.notify_one();
    }

    /// Resolves at the next [`ControlPlane::doubt_key`] (or at once, for one not yet heard).
    pub async fn key_doubted(&self) {
        self.key_doubted.notified().await;
    }

    /// How many addresses (replicas) calls may go to.
    pub fn replicas(&self) -> usize {
        self.clients.len()
    }

    /// The addresses calls may go to, in the order configured.
    pub fn urls(&self) -> Vec<String> {
        self.clients.iter().map(|c| c.config().base_uri().to_string()).collect()
    }

    /// Announces this run, taking over from the runs in `previous`, and learns the
    /// connector's identity and resources.
    pub async fn hello(&self, run_id: &str, previous: &[PreviousRun]) -> Result<HelloInfo, ConnectError> {
        let request = pb::HelloRequest {
            run_id: run_id.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            previous_run_ids: previous.iter().map(|run| run.run_id.clone()).collect(),
            previous_runs: previous
                .iter()
                .filter_map(|run| {
                    let alive = run.alive_us?;
                    Some(pb::PreviousRun {
                        run_id: run.run_id.clone(),
                        alive_at: super::convert::timestamp(alive).into(),
                        ..Default::default()
                    })
                })
                .collect(),
            ..Default::default()
        };
        let call = self.on_current(self.timeout, OnSilence::NextReplica, |client, options| {
            client.hello_with_options(request.clone(), options)
        });
        let response = call.await?.into_owned();
        Ok(HelloInfo {
            connector_id: response.connector_id,
            connector_name: response.connector_name,
            heartbeat: match (response.heartbeat_millis, response.heartbeat_seconds) {
                (0, 0) => super::heartbeat::DEFAULT_HEARTBEAT,
                (0, seconds) => Duration::from_secs(seconds.into()),
                (millis, _) => Duration::from_millis(millis.into()),
            },
            lease_seconds: response.lease_seconds,
            completed_stale_sessions: response.completed_stale_sessions,
            resources: response.resources.into_iter().filter_map(resource).collect(),
        })
    }

    pub async fn heartbeat(&self, run_id: &str, timeout: Duration) -> Result<(), ConnectError> {
        let request = pb::HeartbeatRequest { run_id: run_id.to_owned(), ..Default::default() };
        self.on_current(timeout, OnSilence::NextReplica, |client, options| {
            client.heartbeat_with_options(request.clone(), options)
        })
        .await?;
        Ok(())
    }

    /// Ends run `run_id`, which stopped cleanly with every event stored.
    pub async fn goodbye(&self, run_id: &str, timeout: Duration) -> Result<(), ConnectError> {
        let request = pb::GoodbyeRequest { run_id: run_id.to_owned(), ..Default::default() };
        self.on_current(timeout, OnSilence::NextReplica, |client, options| {
            client.goodbye_with_options(request.clone(), options)
        })
        .await?;
        Ok(())
    }

    /// Sends one batch for run `run_id`, each event an encoded `pb::Event`; returns how many
    /// events were new to the control plane.
    pub async fn report(&self, run_id: &str, events: Vec<Bytes>) -> Result<u32, ConnectError> {
        let request = pb::EncodedReportRequest { events, run_id: run_id.to_owned(), ..Default::default() };
        let call = self.on_current(self.timeout, OnSilence::NextReplica, |client, options| {
            connectrpc::client::call_unary::<_, _, ReportResponseView<'static>>(
                &self.transport,
                client.config(),
                CONNECTOR_SERVICE_REPORT_SPEC.with_origin(SpecOrigin::Client),
                request.clone(),
                options,
            )
        });
        Ok(call.await?.view().stored)
    }

    /// Asks whether an identity may log in to a resource (bounded by `timeout` and the
    /// client's own limit, whichever is shorter: a client waits on it).
    pub async fn verify_identity(
        &self,
        request: pb::VerifyIdentityRequest,
        timeout: Duration,
    ) -> Result<pb::VerifyIdentityResponse, ConnectError> {
        let timeout = timeout.min(self.timeout);
        let call = self.on_current(timeout, OnSilence::GiveUp, |client, options| {
            client.verify_identity_with_options(request.clone(), options)
        });
        Ok(call.await?.into_owned())
    }

    /// Opens the termination stream (no time limit: it lives as long as the connection).
    pub async fn watch_terminations(
        &self,
        run_id: &str,
    ) -> Result<ServerStream<<Transport as ClientTransport>::ResponseBody, pb::TerminationView<'static>>, ConnectError>
    {
        let request = pb::WatchTerminationsRequest { run_id: run_id.to_owned(), ..Default::default() };
        // Bounded until the stream opens; its options would bound the stream itself.
        self.on_current(self.timeout, OnSilence::NextReplica, |client, _| client.watch_terminations(request.clone()))
            .await
    }
}

/// What a call that got no answer in time says of its control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnSilence {
    /// It is gone: the next one is tried. Calls made in the background, which can wait
    /// their whole time limit.
    NextReplica,
    /// Nothing: a login's short wait for an identity check is no sign a replica is gone (the
    /// heartbeats will tell).
    GiveUp,
}

/// A wall-clock bound on top of the call's own deadline, which covers
/// connection establishment only partly.
async fn bounded<T>(limit: Duration, call: impl Future<Output = Result<T, ConnectError>>) -> Result<T, ConnectError> {
    match timer::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::new(ErrorCode::DeadlineExceeded, "no answer from the control plane in time")),
    }
}

fn parse_url(url: &str) -> Result<Uri, ClientError> {
    let invalid = |message: String| ClientError::Url { url: url.to_owned(), message };
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("expected http://host:port".into()));
    }
    if uri.host().is_none() {
        return Err(invalid("no host".into()));
    }
    Ok(uri)
}

/// Whether `host` names this machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn resource(r: pb::Resource) -> Option<Resource> {
    let Ok(port) = u16::try_from(r.port) else {
        tracing::warn!(resource = %r.id, port = r.port, "ignoring a resource with an invalid port");
        return None;
    };
    Some(Resource { id: r.id, name: r.name, kind: r.r#type, technology: r.technology, host: r.host, port })
}

/// Whether the control plane refused the connector's key. Unauthenticated: no such key;
/// permission denied: a key of another kind (an API key).
pub fn refuses_key(error: &ConnectError) -> bool {
    matches!(error.code, ErrorCode::Unauthenticated | ErrorCode::PermissionDenied)
}

/// `error`, a refusal of the key by the replica at `url`, saying which one and why it may be.
fn key_refused_at(url: &Uri, error: &ConnectError) -> ConnectError {
    let said = error.message.as_deref().unwrap_or("no reason given");
    let message = format!(
        "the control plane at {url} refuses this connector's key (revoked, rotated, or a control plane \
         on a different store): {said}"
    );
    ConnectError::new(error.code, message)
}

/// Whether the control plane refused the content of a batch (so sending it
/// again cannot help), as opposed to not being able to take it now. Only the
/// codes that describe the request itself: a `failed_precondition` could be
/// about the connector (deleted, say) and would drop every event.
pub fn rejects_content(error: &ConnectError) -> bool {
    matches!(error.code, ErrorCode::InvalidArgument | ErrorCode::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys_are_checked_up_front() {
        assert!(ControlPlane::new("http://127.0.0.1:7400", "gh_x_y", None).is_ok());
        assert!(ControlPlane::new("https://cp.example", "k", None).is_ok());
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(matches!(ControlPlane::new("https://cp.example", "k", Some(missing)), Err(ClientError::Tls(_))));
        assert!(matches!(ControlPlane::new("127.0.0.1:7400", "k", None), Err(ClientError::Url { .. })));
        assert!(matches!(ControlPlane::new("http://[::1", "k", None), Err(ClientError::Url { .. })));
        assert!(matches!(ControlPlane::new("http://cp", "", None), Err(ClientError::MissingKey)));
        assert!(matches!(ControlPlane::new("http://cp", "a\nb", None), Err(ClientError::InvalidKey)));
    }

    #[test]
    fn an_encoded_report_is_a_report_on_the_wire() {
        use buffa::Message;
        let event = |seq| pb::Event { session_id: "s".into(), seq, ..Default::default() };
        let report = pb::ReportRequest { events: vec![event(1), event(2)], run_id: "run".into(), ..Default::default() };
        let encoded = pb::EncodedReportRequest {
            events: report.events.iter().map(|e| Bytes::from(e.encode_to_vec())).collect(),
            run_id: "run".into(),
            ..Default::default()
        };
        assert_eq!(encoded.encode_to_vec(), report.encode_to_vec());
        assert_eq!(pb::ReportRequest::decode_from_slice(&encoded.encode_to_vec()).unwrap(), report);
    }

    #[test]
    fn this_machine_is_loopback() {
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("[::1]"));
        assert!(!is_loopback("cp.internal") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let cp = ControlPlane::new("http://cp:1", "gh_secret_value", None).unwrap();
        assert!(!format!("{cp:?}").contains("secret"));
    }
}
