//! Accepting clients, the startup phase, and the relay with recording.
//!
//! # Layout
//! - [`serve`]: the accept loop of one listener and its graceful shutdown.
//! - `connection`: one client from accept to close: startup, refusal, cancel, relay.
//! - `client`: the client's startup phase: SSLRequest and GSSENCRequest, TLS, then a
//!   StartupMessage or a CancelRequest.
//! - `upstream`: the connection to the database, TCP or TLS ([`upstream_tls`]).
//! - `login`: identity logins: the client's token checked with the control plane, then the
//!   connector's own login upstream as the mapped native role.
//! - `relay`: the hot path: one task selecting over both sides and the termination.
//! - `outbox`: the write buffer of one side, flushed once per batch.
//! - `recorder`: turns relayed messages into statements; no IO.
//! - `session`: a session's events, in order.
//! - `shutdown`: a listener's shutdown, as each of its connections waits for it.
//! - [`CancelMap`]: the backend keys the connector handed out, for CancelRequests.
//! - [`load_tls`]: the certificate offered to clients.
//!
//! # Sessions
//! A connection becomes a session when the database first sends ReadyForQuery, that is
//! once the login is complete; a failed login (a wrong password, or a refusal after
//! AuthenticationOk such as a database that does not exist) is relayed to the client and
//! leaves no trace. An identity login becomes a session likewise, after the connector's own
//! login upstream; a refused identity never opens an upstream connection.
//! From then on every statement is reported, and the session ends exactly once, with one of
//! the reasons of [`EndReason`](crate::event::EndReason).

mod cancel;
mod client;
mod connection;
mod encoding;
mod login;
mod outbox;
mod recorder;
mod relay;
mod session;
mod shutdown;
mod tls;
mod upstream;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_pgwire::LargeMessageBudget;
use gatehouse_pgwire::backend::ErrorResponse;
use gatehouse_tls::TlsError;
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

pub use cancel::{CancelMap, Peering};
use shutdown::Shutdown;
pub use tls::load_tls;
pub use upstream::{UpstreamTlsConfig, upstream_tls};

use crate::identity::{Credentials, Throttle, Verifier};
use crate::live::LiveSessions;
use crate::metrics::Metrics;
use crate::report::Reporter;
use crate::timer;

/// How long [`serve`] waits, after shutdown, for connections to end before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The first pause after a failed accept (out of file descriptors, say); each further
/// failure in a row doubles it, up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The memory every connection of a connector may hold, together, in messages over 1 MiB
/// while they arrive: one message as large as PostgreSQL takes (1 GiB), or several smaller.
pub const LARGE_MESSAGE_BUDGET: usize = 1 << 30;
/// How long a client may stop sending a message that holds some of that budget before its
/// session is ended: the memory is every other connection's too.
pub const LARGE_MESSAGE_STALL: Duration = Duration::from_secs(60);

/// Everything a listener needs, shared by its connections.
pub struct ProxyContext {
    /// The resource this listener fronts, reported with each session.
    pub resource_id: String,
    /// `host:port` of the database.
    pub upstream: String,
    pub reporter: Reporter,
    pub live: Arc<LiveSessions>,
    pub metrics: Arc<Metrics>,
    /// Offered to clients that send SSLRequest; without it they get `N`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Shared by every listener of the connector, so a CancelRequest may arrive on any port.
    pub cancels: Arc<CancelMap>,
    /// TLS to the database; plain TCP without it.
    pub upstream_tls: Option<UpstreamTlsConfig>,
    /// Identity logins on this listener.
    pub identity: IdentityOptions,
    /// Shared by every listener: see [`LARGE_MESSAGE_BUDGET`].
    pub large_messages: Arc<LargeMessageBudget>,
    /// See [`LARGE_MESSAGE_STALL`].
    pub large_message_stall: Duration,
    /// How long a shutdown lets open sessions end on their own, refusing new clients, before
    /// it ends them: zero ends them at once.
    pub drain: Duration,
    /// Cut the drain short: the sessions left end now (the process was asked again to stop).
    pub end_drain: CancellationToken,
}

/// How a listener treats identity logins (`idp:formal:...` user names).
#[derive(Default)]
pub struct IdentityOptions {
    /// Checks tokens; without it identity logins are refused (fail closed).
    pub verifier: Option<Arc<Verifier>>,
    /// The passwords of native roles.
    pub credentials: Arc<Credentials>,
    /// Refuse other user names.
    pub require_identity: bool,
    /// Which identity logins must come over TLS.
    pub require_tls: TlsForIdentity,
    /// Failed identity logins by address, shared by every listener.
    pub throttle: Arc<Throttle>,
}

/// Which identity logins, whose password is an access token, must come over TLS.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum TlsForIdentity {
    /// None: the connector has no certificate, or `require_tls = false` says so.
    #[default]
    Never,
    /// Those from another host: with a certificate, the default. A token sent in clear across
    /// a network can be read and used again; one from this host never crosses one.
    OffHost,
    /// All (`require_tls = true`).
    Always,
}

impl TlsForIdentity {
    /// Whether an identity login from `peer` is refused for want of TLS.
    pub fn refuses(self, tls: bool, peer: std::net::IpAddr) -> bool {
        !tls && match self {
            Self::Never => false,
            Self::OffHost => !peer.to_canonical().is_loopback(),
            Self::Always => true,
        }
    }
}

/// Errors of the proxy's setup; the relay itself reports through events and logs.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("`{0}` cannot be checked against a certificate: it is not a host name or IP address")]
    ServerName(String),
}

impl From<rustls::Error> for ProxyError {
    fn from(error: rustls::Error) -> Self {
        Self::Tls(TlsError::Rustls(error))
    }
}

/// Accepts clients until `shutdown` is cancelled, then stops accepting (after the
/// [`drain`](ProxyContext::drain), if any, that open sessions may end in on their own), ends
/// the live sessions of this listener (FATAL 57P01 to the client, the upstream query
/// cancelled, [`EndReason::Shutdown`](crate::event::EndReason::Shutdown) at that moment), and
/// returns once their tasks finished, or after [`SHUTDOWN_GRACE`], aborting the rest.
///
/// # Errors
///
/// None today: a failed accept is logged and retried, since it concerns one client (or a
/// passing shortage of file descriptors), not the listener.
pub async fn serve(listener: TcpListener, ctx: Arc<ProxyContext>, shutdown: CancellationToken) -> io::Result<()> {
    let stop = Arc::new(Shutdown::default());
    let mut tasks = JoinSet::new();
    let mut failures = AcceptFailures::default();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_join(joined),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    failures.succeeded();
                    tasks.spawn(connection::run(stream, peer, Arc::clone(&ctx), stop.subscribe()));
                }
                Err(error) => if let Some(pause) = failures.failed(&error) {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = timer::sleep(pause) => {}
                    }
                },
            },
        }
    }
    if !ctx.drain.is_zero() && !tasks.is_empty() {
        drain(&listener, &ctx, &mut tasks).await;
    }
    stop.fire();
    // The clients still in the accept queue hear why, while the sessions end.
    let listeners = [&listener];
    let queued = refuse_queued(&listeners, ctx.tls.clone(), &ctx.metrics);
    let drained = timer::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
    });
    let ((), drained) = tokio::join!(queued, drained);
    drop(listener);
    if drained.is_err() {
        tracing::warn!(remaining = tasks.len(), "aborting connections that did not end in time");
        tasks.shutdown().await;
    }
    Ok(())
}

/// Lets the open sessions (`tasks`) end on their own for up to [`ProxyContext::drain`], as a
/// rolling restart wants, while clients that come are refused (57P03), as PostgreSQL refuses
/// them while it shuts down.
async fn drain(listener: &TcpListener, ctx: &ProxyContext, tasks: &mut JoinSet<()>) {
    tracing::info!(sessions = tasks.len(), drain = ?ctx.drain, "draining: new clients are refused, open sessions may finish");
    let deadline = timer::sleep(ctx.drain);
    tokio::pin!(deadline);
    let mut refusals = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut deadline => {
                tracing::info!(sessions = tasks.len(), "drained for as long as allowed: ending the sessions left");
                break;
            }
            () = ctx.end_drain.cancelled() => {
                tracing::info!(sessions = tasks.len(), "asked again to stop: ending the sessions left now");
                break;
            }
            joined = tasks.join_next() => match joined {
                Some(joined) => log_join(joined),
                None => {
                    tracing::info!("drained: every session ended on its own");
                    break;
                }
            },
            Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let error = ErrorResponse::cannot_connect_now("the Gatehouse connector is shutting down");
                    refuse(&mut refusals, stream, ctx.tls.clone(), error, &ctx.metrics);
                }
                // Out of file descriptors, say: no reason to spin until the drain ends.
                Err(_) => timer::sleep(Duration::from_millis(100)).await,
            },
        }
    }
    let _ = timer::timeout(QUEUED_REFUSAL_LIMIT, async { while refusals.join_next().await.is_some() {} }).await;
}

/// Accepts the clients of `listener` and refuses each with FATAL 57P03 and `message`, until
/// dropped: while the connector cannot serve a listener yet (it does not know where its
/// database is), clients get an answer instead of waiting in the accept queue. (What
/// PostgreSQL tells clients while it starts.)
pub async fn refuse_while_starting(
    listener: &TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    message: &str,
    metrics: &Metrics,
) {
    let mut refusals = JoinSet::new();
    let mut failures = AcceptFailures::default();
    loop {
        tokio::select! {
            Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    failures.succeeded();
                    refuse(&mut refusals, stream, tls.clone(), ErrorResponse::cannot_connect_now(message), metrics);
                }
                Err(error) => if let Some(pause) = failures.failed(&error) {
                    timer::sleep(pause).await;
                },
            },
        }
    }
}

/// How often, at most, failed accepts are logged as warnings: near the limit of file
/// descriptors, runs of failures start and end every few milliseconds.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A run of failed accepts. A shortage of file descriptors lasts: retrying at once would only
/// fill the log, so each failure in a row waits longer, and a run is logged at its start and
/// its end, at most one run a minute (the others at debug level).
#[derive(Default)]
struct AcceptFailures {
    in_a_row: u32,
    /// When the last run was logged as a warning.
    warned_at: Option<std::time::Instant>,
    /// The current run was logged as a warning.
    warned: bool,
}

impl AcceptFailures {
    /// Logs `error` if it starts a run, and returns how long to wait before accepting again:
    /// nothing for a client that left before it was taken, which says nothing of the next.
    fn failed(&mut self, error: &io::Error) -> Option<Duration> {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
        ) {
            tracing::debug!(%error, "a client left before it was accepted");
            return None;
        }
        let quiet = self.warned_at.is_some_and(|at| at.elapsed() < ACCEPT_WARNING_INTERVAL);
        if self.in_a_row == 0 && !quiet {
            tracing::warn!(%error, "accept failed; retrying, less often while it keeps failing");
            self.warned_at = Some(std::time::Instant::now());
            self.warned = true;
        } else {
            tracing::debug!(%error, failures = self.in_a_row + 1, "accept failed again");
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        Some(ACCEPT_BACKOFF.saturating_mul(1 << (self.in_a_row - 1).min(16)).min(ACCEPT_BACKOFF_MAX))
    }

    fn succeeded(&mut self) {
        if self.in_a_row > 0 {
            if std::mem::take(&mut self.warned) {
                tracing::info!(failures = self.in_a_row, "accepting clients again");
            } else {
                tracing::debug!(failures = self.in_a_row, "accepting clients again");
            }
            self.in_a_row = 0;
        }
    }
}

/// How long the clients still in the accept queues at shutdown have, together, to say what
/// they want and hear the refusal.
const QUEUED_REFUSAL_LIMIT: Duration = Duration::from_secs(2);
/// Most clients refused per listener at shutdown: a full accept queue (tokio's backlog).
const QUEUED_REFUSALS_MAX: usize = 1024;

/// Refuses the clients waiting in the accept queues of `listeners` with FATAL 57P01: the
/// connector stops, and closing the listeners would reset their connections without a word.
/// Bounded in time and number, so that clients that keep arriving cannot hold the shutdown up.
pub async fn refuse_queued(listeners: &[&TcpListener], tls: Option<Arc<rustls::ServerConfig>>, metrics: &Metrics) {
    let deadline = tokio::time::Instant::now() + QUEUED_REFUSAL_LIMIT;
    let mut refusals = JoinSet::new();
    for listener in listeners {
        for _ in 0..QUEUED_REFUSALS_MAX {
            // What the queue holds is ready at once; a short wait covers a readiness not yet seen.
            let wait = (tokio::time::Instant::now() + Duration::from_millis(20)).min(deadline);
            let Ok(Ok((stream, _))) = timer::timeout_at(wait, listener.accept()).await else {
                break;
            };
            let error = ErrorResponse::admin_shutdown("terminating connection: the connector is shutting down");
            refuse(&mut refusals, stream, tls.clone(), error, metrics);
        }
    }
    let _ = timer::timeout_at(deadline, async { while refusals.join_next().await.is_some() {} }).await;
}

/// Counts a client refused before it was served and answers it with `error`, in `refusals`.
fn refuse(
    refusals: &mut JoinSet<()>,
    stream: tokio::net::TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    error: ErrorResponse,
    metrics: &Metrics,
) {
    Metrics::add(&metrics.connections_total, 1);
    Metrics::add(&metrics.connections_refused_total, 1);
    refusals.spawn(connection::refuse(stream, tls, error));
}

fn log_join(joined: Result<(), JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::error!(%error, "a connection task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_required_of_identity_logins_as_configured() {
        let (local, mapped, remote) = ("127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3");
        for (requirement, refused) in [
            (TlsForIdentity::Never, [false, false, false]),
            (TlsForIdentity::OffHost, [false, false, true]),
            (TlsForIdentity::Always, [true, true, true]),
        ] {
            let got = [local, mapped, remote].map(|peer| requirement.refuses(false, peer.parse().unwrap()));
            assert_eq!(got, refused, "{requirement:?}");
            assert!(![local, remote].iter().any(|peer| requirement.refuses(true, peer.parse().unwrap())));
        }
    }

    #[test]
    fn failed_accepts_wait_longer_in_a_row_up_to_a_second_and_start_over_after_a_success() {
        let error = io::Error::from_raw_os_error(24); // EMFILE
        let mut failures = AcceptFailures::default();
        let pauses: Vec<u128> = (0..10).map(|_| failures.failed(&error).unwrap().as_millis()).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000]);
        assert!(failures.warned, "the run is logged as a warning");
        for _ in 0..100 {
            failures.failed(&error);
        }
        assert_eq!(failures.failed(&error), Some(ACCEPT_BACKOFF_MAX));
        failures.succeeded();
        assert_eq!(failures.failed(&error), Some(ACCEPT_BACKOFF));
        assert!(!failures.warned, "a run within a minute of the last warning: debug level only");
        let left = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(failures.failed(&left), None, "one client's error: retried at once");
        assert_eq!(failures.failed(&error), Some(2 * ACCEPT_BACKOFF), "and not counted");
    }
}
