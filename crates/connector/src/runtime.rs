//! `gatehouse connector` as a library call: [`run`] wires the configuration,
//! the listeners, the report pipeline and the admin port together, and shuts
//! them down in order.
//!
//! # Startup
//! 1. Check the control plane address and key; load TLS; bind every listener
//!    and the admin port (a taken port fails here, naming it).
//! 2. Open the spool in `state_dir/spool` (recovering an earlier run's) and the
//!    journal in `state_dir/journal` (whose events go to the spool), start
//!    the report loop (which replays it, then says `Hello`), the heartbeat, the
//!    termination watch and the admin server, on a thread of their own (see
//!    [`ControlThread`]).
//! 3. Resolve each listener's upstream from `Hello`'s resources; if the
//!    control plane does not answer within [`HELLO_WAIT`], from
//!    `state_dir/resources.json`; without either, from the listeners'
//!    `upstream` overrides if all have one, or else wait for `Hello`.
//!    A resource id that is not known is an error.
//! 4. Serve every listener; `/health` turns 200.
//!
//! # Shutdown
//! When `shutdown` completes: stop accepting, end the sessions (reason
//! `shutdown`), flush the report queue to the control plane or the spool
//! (bounded by the report loop's flush timeout), say `Goodbye` if nothing is
//! left undelivered, stop the rest. The clients
//! still waiting in the listeners' accept queues, served yet or not, are
//! refused with FATAL 57P01 rather than reset.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_pgwire::LargeMessageBudget;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Health};
use crate::config::{Config, Credential, Listener};
use crate::identity::{Credentials, Throttle, Verifier};
use crate::live::LiveSessions;
use crate::metrics::Metrics;
use crate::proxy::{self, CancelMap, IdentityOptions, Peering, ProxyContext, ProxyError, TlsForIdentity};
use crate::report::backoff::Backoff;
use crate::report::client::ClientError;
use crate::report::resources::{self, HelloInfo, Resource};
use crate::report::{
    ControlPlane, Journal, ReportLoop, ReportOptions, Reporter, RunLog, RunLogError, Spool, SpoolOptions, heartbeat,
    terminations,
};
use crate::timer;

/// How long startup waits for `Hello` before falling back to the cached resources.
pub const HELLO_WAIT: Duration = Duration::from_secs(5);
/// How long clients wait for the listeners to be resolved before they are refused.
pub const REFUSE_AFTER: Duration = Duration::from_secs(10);
/// The longest wait between attempts to reopen the termination stream: a termination asked
/// for just after a control-plane restart reaches its session within about this. (An attempt
/// is one small call.)
const TERMINATION_RETRY_MAX: Duration = Duration::from_secs(1);
/// Extra time, beyond the report loop's own flush timeout, before it is abandoned.
const FLUSH_MARGIN: Duration = Duration::from_secs(2);

/// Why the connector could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    ControlPlane(#[from] ClientError),
    #[error("TLS certificate: {0}")]
    Tls(#[from] ProxyError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot use the state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error(
        "the state directory {path} is a file, not a directory: set state_dir (or \
         GATEHOUSE_CONNECTOR_STATE_DIR) to a directory, or to a path where one can be made"
    )]
    StateDirNotADirectory { path: PathBuf },
    #[error(
        "the state directory {path} is in use by another connector process: give each process a \
         state directory of its own (state_dir, or GATEHOUSE_CONNECTOR_STATE_DIR)"
    )]
    StateDirInUse { path: PathBuf },
    #[error(
        "listener {listen}: resource `{resource}` is not the id or the name of one of this connector's resources \
         (known from {from}: {known})"
    )]
    UnknownResource { listen: SocketAddr, resource: String, from: String, known: String },
    #[error(
        "listener {listen}: resource `{resource}` names {ids} (known from {from}): set the listener's resource to \
         the id of the one meant"
    )]
    AmbiguousResource { listen: SocketAddr, resource: String, from: String, ids: String },
    #[error("listener {listen}: upstream TLS: {source}")]
    UpstreamTls { listen: SocketAddr, source: ProxyError },
    #[error(
        "the control plane at {url} refused this connector's key: set control_plane.key (or \
         GATEHOUSE_CONNECTOR_KEY) to the connector key (ghc_...) `gatehouse connectors create` or \
         `connectors rotate-key` printed; an API key (gh_...) cannot report sessions"
    )]
    KeyRefused { url: String },
    #[error("listener {listen} stopped: {message}")]
    Listener { listen: SocketAddr, message: String },
    #[error("cannot start the control thread: {0}")]
    ControlThread(std::io::Error),
    #[error("cannot start the timer thread: {0}")]
    TimerThread(std::io::Error),
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(std::io::Error),
}

/// At each SIGHUP, reads the TLS certificate's files again, and the configuration file for
/// the native roles' passwords (a rotated `password_file`): logins from then on use them. A
/// file that cannot be used changes nothing; other settings it changes are named, as taking a
/// restart.
#[cfg(unix)]
fn reload_at_hangup(
    running: &Config,
    tls: Option<gatehouse_tls::ServerTls>,
    credentials: Arc<Credentials>,
) -> std::io::Result<()> {
    let running = running.clone();
    gatehouse_tls::on_hangup(move || {
        gatehouse_tls::reload_logged(tls.as_ref());
        reload_credentials(&running, &credentials);
    })
}

fn reload_credentials(running: &Config, credentials: &Credentials) {
    let Some(path) = &running.source else {
        tracing::info!("SIGHUP: no configuration file to read the native roles' passwords from again");
        return;
    };
    match Config::load(Some(path)) {
        Ok(newer) => {
            credentials.replace(&newer.credentials);
            tracing::info!(
                path = %path.display(),
                roles = newer.credentials.len(),
                "SIGHUP: native roles' passwords read again; logins from now on use them"
            );
            let changed = running.restart_only_changes(&newer);
            if !changed.is_empty() {
                tracing::warn!(
                    settings = changed.join(", "),
                    "SIGHUP: the configuration file changes settings read only at start: they apply at the next restart"
                );
            }
        }
        Err(error) => {
            tracing::error!(%error, "SIGHUP: the configuration file cannot be used; kept the passwords in use")
        }
    }
}

/// Runs the connector until `shutdown` completes (see the module docs).
///
/// # Errors
///
/// A [`RunError`] for a configuration that cannot work (address, key, TLS,
/// ports, state directory, unknown resource) before anything is served, or
/// for a listener that stopped on its own.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let run_id = uuid::Uuid::now_v7().to_string();
    timer::start().map_err(RunError::TimerThread)?;
    let control_thread = ControlThread::start().await.map_err(RunError::ControlThread)?;
    let control_rt = control_thread.handle.clone();
    let metrics = Arc::new(Metrics::default());
    let control = ControlPlane::new(
        &config.control_plane.url,
        &config.control_plane.key,
        config.control_plane.ca_file.as_deref(),
    )?
    .with_metrics(Arc::clone(&metrics));
    metrics.control_plane_replicas.store(control.replicas() as u64, std::sync::atomic::Ordering::Relaxed);
    log_sources(&config, &control);
    let verify_control = control.clone();
    // First of what the process holds: a second process started with the same configuration
    // is told that, rather than that its ports are taken.
    let runs = lock_state(&config, &run_id).await?;
    let reloadable_tls = match &config.tls {
        Some(tls) => Some(proxy::load_tls(&tls.cert, &tls.key)?),
        None => None,
    };
    let credentials = Arc::new(Credentials::new(&config.credentials));
    #[cfg(unix)]
    reload_at_hangup(&config, reloadable_tls.clone(), Arc::clone(&credentials)).map_err(RunError::Signal)?;
    let tls = reloadable_tls.map(|tls| tls.config());
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        listeners.push((listener.clone(), bind("listener", listener.listen).await?));
    }
    // On the control thread's runtime, which serves it.
    let admin_listener = control_rt
        .spawn(bind("admin", config.admin_listen))
        .await
        .map_err(|error| RunError::ControlThread(std::io::Error::other(error)))??;
    // The bound address: port 0 in the configuration (tests, `dev`) becomes a real one.
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin_listen);
    let (spool, journal) = open_state(&config).await?;

    let live = Arc::new(LiveSessions::new());
    let (reporter, queue) = Reporter::new(Arc::clone(&metrics), &run_id, journal);
    let options = ReportOptions { fail_open: config.fail_open, ..ReportOptions::default() };
    let flush_limit = options.flush_timeout + FLUSH_MARGIN;
    let backoff = Backoff::new(options.backoff_min, TERMINATION_RETRY_MAX);
    let runs = Arc::new(runs);
    let report = ReportLoop::new(control.clone(), run_id.clone(), queue, spool, options)
        .taking_over(Arc::clone(&runs))
        .ending_sessions(Arc::clone(&live));
    let hello = report.hello();
    let mut key_refused = report.key_refused();
    let key_checks = report.key_checks();
    let refusing_key = report.refusing_key();

    let stop_reports = CancellationToken::new();
    let background = CancellationToken::new();
    let report_task = control_rt.spawn(report.run(stop_reports.clone()));
    let health = Health::new();
    let admin_app = admin::router(Arc::clone(&metrics), health.clone(), reporter.clone());
    let admin_task = control_rt.spawn(admin::serve(admin_listener, admin_app, background.clone()));
    control_rt.spawn(heartbeat::run(control.clone(), run_id.clone(), hello.clone(), key_checks, background.clone()));
    control_rt.spawn(crate::report::runs::keep_alive(Arc::clone(&runs), background.clone()));
    control_rt.spawn(terminations::run(
        control,
        run_id.clone(),
        hello.clone(),
        refusing_key,
        Arc::clone(&live),
        backoff,
        background.clone(),
    ));
    control_rt.spawn(crate::live::announce_running(Arc::clone(&live), background.clone()));
    // Started once the listeners are resolved: a resource they name that does not exist is
    // refused at start, not also reported as a change.
    let save = save_resources(config.clone(), hello.clone(), background.clone());
    let rechecks_stop = background.clone();
    let background =
        Background { stop_reports, report_task, flush_limit, background, admin_task, control_thread, runs };

    let mut shutdown = std::pin::pin!(shutdown);
    let upstreams = tokio::select! {
        resolved = resolve(&config, hello) => resolved,
        () = refuse_while_unresolved(&listeners, &tls, &config.control_plane.url, &metrics) => unreachable!("refuses until dropped"),
        // A wrong key at startup is a configuration error, as a wrong address is: retrying
        // cannot fix it. (A key revoked later only stops reports; sessions then spool.)
        // (The guard `wait_for` returns is not `Send`: dropped inside.)
        Ok(()) = async { key_refused.wait_for(|refused| *refused).await.map(drop) } => {
            Err(RunError::KeyRefused { url: config.control_plane.url.clone() })
        }
        () = &mut shutdown => {
            tracing::info!("shutdown before the listeners were ready");
            health.set_stopping();
            let queued: Vec<&TcpListener> = listeners.iter().map(|(_, tcp)| tcp).collect();
            proxy::refuse_queued(&queued, tls.clone(), &metrics).await;
            drop(reporter);
            background.stop().await;
            return Ok(());
        }
    };
    let upstreams = upstreams.and_then(|upstreams| {
        let tls = upstream_tls(&listeners, &upstreams)?;
        Ok((upstreams, tls))
    });
    let (upstreams, upstream_tls) = match upstreams {
        Ok(upstreams) => upstreams,
        Err(error) => {
            drop(reporter);
            background.stop().await;
            return Err(error);
        }
    };
    control_rt.spawn(save);

    let stop_proxies = CancellationToken::new();
    let end_drain = CancellationToken::new();
    let peers = config.peers.iter().map(|peer| (peer.id, peer.address.clone())).collect();
    let cancels = Arc::new(CancelMap::with_peering(Peering { own: config.peer_id, peers }));
    let verifier = Arc::new(Verifier::new(verify_control, control_rt.clone()));
    control_rt.spawn(crate::identity::recheck(Arc::clone(&live), Arc::clone(&verifier), rechecks_stop));
    let throttle = Arc::new(Throttle::default());
    let mut serving = JoinSet::new();
    let large_messages = LargeMessageBudget::new(proxy::LARGE_MESSAGE_BUDGET);
    for (((listener, tcp), resolved), upstream_tls) in listeners.into_iter().zip(upstreams).zip(upstream_tls) {
        log_listening(&config, &listener, &tcp, &resolved);
        let Resolved { resource_id, upstream } = resolved;
        let identity = IdentityOptions {
            verifier: Some(Arc::clone(&verifier)),
            credentials: Arc::clone(&credentials),
            require_identity: listener.require_identity,
            require_tls: config.tls_for_identity(),
            throttle: Arc::clone(&throttle),
        };
        let context = Arc::new(ProxyContext {
            resource_id,
            upstream,
            reporter: reporter.clone(),
            live: Arc::clone(&live),
            metrics: Arc::clone(&metrics),
            tls: tls.clone(),
            cancels: Arc::clone(&cancels),
            upstream_tls,
            identity,
            large_messages: Arc::clone(&large_messages),
            large_message_stall: proxy::LARGE_MESSAGE_STALL,
            drain: Duration::from_secs(config.shutdown_drain_seconds),
            end_drain: end_drain.clone(),
        });
        let token = stop_proxies.clone();
        let listen = listener.listen;
        serving.spawn(async move { (listen, proxy::serve(tcp, context, token).await) });
    }
    // The proxies hold the only reporters that send now (the admin port's only asks whether
    // sessions are admitted): once they are done, `stop_reports` flushes the queue.
    drop(reporter);
    health.set_running();
    tracing::info!(run_id, admin = %admin_addr, "connector running");

    let drains = config.shutdown_drain_seconds > 0;
    let result = serve_until_stopped(serving, shutdown, &health, stop_proxies, drains.then_some(end_drain)).await;
    background.stop().await;
    tracing::info!("connector stopped");
    result
}

/// Serves until `shutdown`, or until a listener stops on its own (its error is the result);
/// then stops the proxies, which end their sessions after the drain, and waits for them.
async fn serve_until_stopped(
    mut serving: JoinSet<(SocketAddr, std::io::Result<()>)>,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    health: &Health,
    stop_proxies: CancellationToken,
    end_drain: Option<CancellationToken>,
) -> Result<(), RunError> {
    let stopped_early = tokio::select! {
        () = shutdown => None,
        Some(joined) = serving.join_next() => Some(joined),
    };
    health.set_stopping();
    // Listening from now on: the signal that asked to stop is not a second one.
    let second_signal = end_drain.map(end_drain_at_next_signal);
    tracing::info!(
        "shutting down: no new clients; open sessions end after the drain (shutdown_drain_seconds), \
         or at once if asked again (Ctrl-C or SIGTERM)"
    );
    stop_proxies.cancel();
    let mut result = Ok(());
    if let Some(joined) = stopped_early {
        result = Err(listener_error(joined));
        tracing::error!(error = %result.as_ref().unwrap_err(), "a listener stopped; shutting down");
    }
    while let Some(joined) = serving.join_next().await {
        if let Ok((_, Ok(()))) = joined {
            continue;
        }
        let error = listener_error(joined);
        tracing::error!(%error, "listener failed while shutting down");
    }
    if let Some(listening) = second_signal {
        listening.abort();
    }
    result
}

/// Cancels `end_drain` at the next Ctrl-C or SIGTERM, as a second signal hurries PostgreSQL's
/// shutdown: an operator need not wait out a long drain, nor `kill -9` (which leaves the open
/// sessions to the next run).
fn end_drain_at_next_signal(end_drain: CancellationToken) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (terminate, interrupt) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    tokio::spawn(async move {
        let (Ok(mut terminate), Ok(mut interrupt)) = (terminate, interrupt) else { return };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        end_drain.cancel();
    })
}

/// Says which control plane addresses and listeners are used, warning of an environment
/// variable that replaces the configuration file's.
fn log_sources(config: &Config, control: &ControlPlane) {
    match &config.control_plane.url_from_file {
        // A shell set up for the CLI's `sessions` commands (one URL) would otherwise point the
        // connector at one replica without a word, and it could never move to another.
        Some(file) => tracing::warn!(
            urls = ?control.urls(),
            config_file_url = %file,
            "GATEHOUSE_URL replaces control_plane.url from the configuration file: calls go only to \
             the control plane addresses it names (unset it to use the file's)"
        ),
        None => tracing::info!(urls = ?control.urls(), "control plane addresses (replicas, tried in turn)"),
    }
    if !config.listeners_from_file.is_empty() {
        tracing::warn!(
            listeners = ?config.listeners.iter().map(|l| l.listen).collect::<Vec<_>>(),
            config_file_listeners = ?config.listeners_from_file,
            "GATEHOUSE_CONNECTOR_LISTENERS replaces [[listeners]] from the configuration file: only the \
             listeners it names are served (unset it to use the file's)"
        );
    }
}

/// The TLS each listener's database connections use, in the listeners' order.
fn upstream_tls(
    listeners: &[(Listener, TcpListener)],
    upstreams: &[Resolved],
) -> Result<Vec<Option<proxy::UpstreamTlsConfig>>, RunError> {
    listeners
        .iter()
        .zip(upstreams)
        .map(|((listener, _), resolved)| {
            proxy::upstream_tls(listener.upstream_tls, listener.upstream_ca_file.as_deref(), &resolved.upstream)
                .map_err(|source| RunError::UpstreamTls { listen: listener.listen, source })
        })
        .collect()
}

/// Says what a listener serves, warning when identity logins there may cross the network
/// without TLS.
fn log_listening(config: &Config, listener: &Listener, tcp: &TcpListener, resolved: &Resolved) {
    tracing::info!(
        listen = %tcp.local_addr().unwrap_or(listener.listen),
        resource = %resolved.resource_id,
        upstream = %resolved.upstream,
        upstream_tls = ?listener.upstream_tls,
        require_identity = listener.require_identity,
        "listening",
    );
    // Any user name may be an identity's, whose password is an access token.
    if config.tls_for_identity() == TlsForIdentity::Never && !listener.listen.ip().to_canonical().is_loopback() {
        let why = if config.tls.is_none() { "without a [tls] section" } else { "with require_tls = false" };
        tracing::warn!(
            listen = %listener.listen,
            "{why}, identity logins here may send their access tokens unencrypted across the network",
        );
    }
}

/// After [`REFUSE_AFTER`] without knowing where the listeners' databases are (no answer from
/// the control plane, no cache), their clients are refused with a reason instead of left
/// waiting; before it, they wait in the accept queue and are served once resolved.
async fn refuse_while_unresolved(
    listeners: &[(Listener, TcpListener)],
    tls: &Option<Arc<rustls::ServerConfig>>,
    url: &str,
    metrics: &Metrics,
) {
    timer::sleep(REFUSE_AFTER).await;
    let refusals = listeners.iter().map(|(listener, tcp)| {
        let message = format!(
            "the Gatehouse connector is starting: the control plane ({url}) has not told it yet where resource {} is",
            listener.resource
        );
        async move { proxy::refuse_while_starting(tcp, tls.clone(), &message, metrics).await }
    });
    futures::future::join_all(refusals).await;
}

/// A runtime on a thread of its own for the tasks that work in the background: the report
/// loop, heartbeats, the termination watch, the resource cache and the admin server, and the
/// calls of identity checks. The relay's thread then parks (twice per transaction) without
/// their work, and its runtime needs no time driver (see [`timer`]); the HTTP client and
/// server here have one.
struct ControlThread {
    handle: Handle,
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<()>,
}

impl ControlThread {
    async fn start() -> std::io::Result<Self> {
        let (started, handle) = oneshot::channel();
        let (stop, stop_received) = oneshot::channel::<()>();
        let (stopped_sender, stopped) = oneshot::channel();
        std::thread::Builder::new().name("gatehouse-control".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => return drop(started.send(Err(error))),
            };
            _ = started.send(Ok(runtime.handle().clone()));
            runtime.block_on(async { _ = stop_received.await });
            // A spool append under way (the report loop aborted at its flush limit) completes.
            runtime.shutdown_timeout(FLUSH_MARGIN);
            _ = stopped_sender.send(());
        })?;
        let handle = handle.await.map_err(|_| std::io::Error::other("the control thread ended as it started"))??;
        Ok(Self { handle, stop, stopped })
    }

    /// Stops what still runs on the thread and waits for it to end.
    async fn stop(self) {
        drop(self.stop);
        _ = self.stopped.await;
    }
}

/// The tasks that outlive the listeners, stopped in order.
struct Background {
    stop_reports: CancellationToken,
    report_task: JoinHandle<u64>,
    flush_limit: Duration,
    background: CancellationToken,
    admin_task: JoinHandle<std::io::Result<()>>,
    control_thread: ControlThread,
    /// The state directory's lock: released once everything else has stopped, so that the
    /// next process finds the spool as this one left it.
    runs: Arc<RunLog>,
}

impl Background {
    /// Flushes the report queue (bounded), then stops heartbeat, watch, admin and the control
    /// thread.
    async fn stop(self) {
        self.stop_reports.cancel();
        let mut report_task = self.report_task;
        match timer::timeout(self.flush_limit, &mut report_task).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "the report loop failed"),
            Err(_) => {
                tracing::error!("the report loop did not finish in time; queued events may be lost");
                report_task.abort();
            }
        }
        self.background.cancel();
        match self.admin_task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "admin server failed"),
            Err(error) => tracing::warn!(%error, "admin server task failed"),
        }
        self.control_thread.stop().await;
        drop(self.runs);
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr).await.map_err(|source| RunError::Bind { what, addr, source })
}

/// Locks the state directory for this run.
async fn lock_state(config: &Config, run_id: &str) -> Result<RunLog, RunError> {
    let state_dir = config.state_dir.clone();
    let run_id = run_id.to_owned();
    let runs = tokio::task::spawn_blocking(move || {
        // Else "File exists (os error 17)", which names neither the file nor what to do.
        if std::fs::metadata(&state_dir).is_ok_and(|found| !found.is_dir()) {
            return Err(RunError::StateDirNotADirectory { path: state_dir.clone() });
        }
        std::fs::create_dir_all(&state_dir).map_err(|source| RunError::StateDir { path: state_dir.clone(), source })?;
        RunLog::begin(&state_dir, &run_id).map_err(|error| match error {
            RunLogError::InUse => RunError::StateDirInUse { path: state_dir.clone() },
            RunLogError::Io(source) => RunError::StateDir { path: state_dir.clone(), source },
        })
    })
    .await
    .expect("locking the state directory does not panic")?;
    if !runs.previous.is_empty() {
        let previous: Vec<&str> = runs.previous.iter().map(|run| run.run_id.as_str()).collect();
        tracing::info!(previous_runs = %previous.join(", "), "taking over from earlier runs on this state directory");
    }
    Ok(runs)
}

/// Opens the locked state directory's spool and journal: the events an earlier run journaled
/// go to the spool, behind what it spooled. (Reading a large journal takes seconds: the
/// listeners are bound before, so that clients wait in their accept queues meanwhile rather
/// than find the port closed.)
async fn open_state(config: &Config) -> Result<(Spool, Journal), RunError> {
    let state_dir = config.state_dir.clone();
    let options = SpoolOptions::with_max_bytes(config.spool_max_bytes);
    let opened = tokio::task::spawn_blocking(move || {
        let unusable = |path: &Path| {
            let path = path.to_owned();
            move |source| RunError::StateDir { path, source }
        };
        let dir = state_dir.join("spool");
        let (mut spool, recovery) = Spool::open(&dir, options).map_err(unusable(&dir))?;
        let journal_dir = state_dir.join("journal");
        let (journal, journaled) = Journal::open(&journal_dir, &mut spool).map_err(unusable(&journal_dir))?;
        Ok::<_, RunError>(((spool, recovery), (journal, journaled)))
    })
    .await
    .expect("opening the state directory does not panic")?;
    let ((spool, recovery), (journal, journaled)) = opened;
    if recovery.records > 0 {
        tracing::info!(
            records = recovery.records,
            segments = recovery.segments,
            "the spool holds events of an earlier run: replaying them first",
        );
    }
    if journaled > 0 {
        tracing::warn!(
            events = journaled,
            "the journal holds events of an earlier run (one that did not shut down cleanly): \
             replaying them first (the control plane ignores those it has)",
        );
    }
    Ok((spool, journal))
}

/// Where a listener's sessions go: the id of its resource (its `resource` may name it by
/// name) and the database's `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    resource_id: String,
    upstream: String,
}

/// Each listener's resource and upstream, in the order of `config.listeners`.
async fn resolve(
    config: &Config,
    mut hello: watch::Receiver<Option<Arc<HelloInfo>>>,
) -> Result<Vec<Resolved>, RunError> {
    let fresh = match timer::timeout(HELLO_WAIT, hello.wait_for(Option::is_some)).await {
        Ok(Ok(info)) => info.clone(),
        _ => None,
    };
    let known = match fresh {
        Some(info) => Some((info.resources.clone(), "the control plane".to_owned())),
        None => {
            let cache = config.state_dir.join(resources::CACHE_FILE);
            match resources::load(&config.state_dir) {
                Ok(Some(cached)) => {
                    tracing::warn!(cache = %cache.display(), "no answer from the control plane yet: using the cached resources");
                    Some((cached, format!("the cache {}", cache.display())))
                }
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%error, "ignoring the resource cache");
                    None
                }
            }
        }
    };
    let (known, from) = match known {
        Some(known) => known,
        None if config.listeners.iter().all(|l| l.upstream.is_some()) => {
            tracing::warn!(
                "no answer from the control plane yet and no cached resources: using the listeners' upstreams unchecked"
            );
            // The resource as written: an id, since a name cannot be looked up yet.
            let unchecked = |l: &Listener| {
                let upstream = l.upstream.clone()?;
                Some(Resolved { resource_id: l.resource.trim().to_owned(), upstream })
            };
            return Ok(config.listeners.iter().filter_map(unchecked).collect());
        }
        None => {
            tracing::warn!(
                "no answer from the control plane yet and no cached resources: waiting for it to resolve the listeners"
            );
            let info = hello.wait_for(Option::is_some).await.ok().and_then(|info| info.clone());
            match info {
                Some(info) => (info.resources.clone(), "the control plane".to_owned()),
                // The report loop ended, so no Hello will come; it only ends after shutdown.
                None => std::future::pending().await,
            }
        }
    };
    warn_of_unknown_credentials(&config.credentials, &known, &from);
    upstreams(&config.listeners, &known, &from)
}

/// Warns of each `[[credentials]]` whose `resource` is none of this connector's: its password
/// is never used, which an identity login would show only as a role with no password.
fn warn_of_unknown_credentials(credentials: &[Credential], known: &[Resource], from: &str) {
    for (i, credential) in credentials.iter().enumerate() {
        let Some(wanted) = &credential.resource else { continue };
        if known.iter().any(|r| r.id == *wanted) {
            continue;
        }
        let hint = match known.iter().find(|r| r.name == *wanted) {
            Some(named) => format!("credentials name a resource by its id: write `{}`", named.id),
            None => "its password is never used".to_owned(),
        };
        tracing::warn!(
            credential = i,
            role = %credential.role,
            resource = %wanted,
            known = %known_list(known),
            from,
            "credentials[{i}]: resource `{wanted}` is not the id of one of this connector's resources: {hint}"
        );
    }
}

/// The resources `known`, as messages name them: `name (id), ...`, or `none`.
fn known_list(known: &[Resource]) -> String {
    match known.is_empty() {
        true => "none".to_owned(),
        false => known.iter().map(|r| format!("{} ({})", r.name, r.id)).collect::<Vec<_>>().join(", "),
    }
}

/// Matches listeners to resources, by id or else by name: the listener's `upstream` wins,
/// else the resource's registered address.
fn upstreams(listeners: &[Listener], known: &[Resource], from: &str) -> Result<Vec<Resolved>, RunError> {
    listeners
        .iter()
        .map(|listener| {
            let wanted = listener.resource.trim();
            let resource = match known.iter().find(|r| r.id == wanted) {
                Some(resource) => resource,
                None => {
                    let named: Vec<&Resource> = known.iter().filter(|r| r.name == wanted).collect();
                    match named.as_slice() {
                        [resource] => *resource,
                        [] => {
                            return Err(RunError::UnknownResource {
                                listen: listener.listen,
                                resource: listener.resource.clone(),
                                from: from.to_owned(),
                                known: known_list(known),
                            });
                        }
                        several => {
                            let ids: Vec<&str> = several.iter().map(|r| r.id.as_str()).collect();
                            return Err(RunError::AmbiguousResource {
                                listen: listener.listen,
                                resource: listener.resource.clone(),
                                from: from.to_owned(),
                                ids: format!("{} resources: {}", ids.len(), ids.join(", ")),
                            });
                        }
                    }
                }
            };
            if !resource.technology.is_empty() && resource.technology != "postgres" {
                tracing::warn!(resource = %resource.id, technology = %resource.technology, "resource is not a PostgreSQL database");
            }
            let upstream = listener.upstream.clone().unwrap_or_else(|| resource.address());
            Ok(Resolved { resource_id: resource.id.clone(), upstream })
        })
        .collect()
}

/// Saves `Hello`'s resources to `state_dir/resources.json` and warns if they
/// no longer match the listeners (which keep the upstream they started with).
async fn save_resources(config: Config, mut hello: watch::Receiver<Option<Arc<HelloInfo>>>, stop: CancellationToken) {
    let Some(info) = heartbeat::wait_hello(&mut hello, &stop).await else { return };
    if let Err(error) = resources::save(&config.state_dir, &info) {
        tracing::warn!(%error, "cannot cache the resources");
    }
    if let Err(error) = upstreams(&config.listeners, &info.resources, "the control plane") {
        tracing::warn!(%error, "the control plane's resources changed: restart the connector to follow them");
    }
}

fn listener_error(joined: Result<(SocketAddr, std::io::Result<()>), tokio::task::JoinError>) -> RunError {
    match joined {
        Ok((listen, Ok(()))) => RunError::Listener { listen, message: "stopped accepting".into() },
        Ok((listen, Err(error))) => RunError::Listener { listen, message: error.to_string() },
        Err(error) => RunError::Listener { listen: SocketAddr::from(([0, 0, 0, 0], 0)), message: error.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(id: &str, host: &str) -> Resource {
        Resource {
            id: id.into(),
            name: format!("name-{id}"),
            kind: "datastore".into(),
            technology: "postgres".into(),
            host: host.into(),
            port: 5432,
        }
    }

    fn listener(port: u16, resource: &str, upstream: Option<&str>) -> Listener {
        Listener::new(SocketAddr::from(([127, 0, 0, 1], port)), resource, upstream)
    }

    fn resolved(resource_id: &str, upstream: &str) -> Resolved {
        Resolved { resource_id: resource_id.into(), upstream: upstream.into() }
    }

    #[test]
    fn upstream_override_wins_and_unknown_resources_are_named() {
        let known = [resource("res_a", "db-a"), resource("res_b", "db-b")];
        let got = upstreams(&[listener(1, "res_a", None), listener(2, "res_b", Some("127.0.0.1:5433"))], &known, "x");
        assert_eq!(got.unwrap(), [resolved("res_a", "db-a:5432"), resolved("res_b", "127.0.0.1:5433")]);

        let error = upstreams(&[listener(3, "res_c", Some("h:1"))], &known, "the cache /s/resources.json").unwrap_err();
        assert_eq!(
            error.to_string(),
            "listener 127.0.0.1:3: resource `res_c` is not the id or the name of one of this connector's resources \
             (known from the cache /s/resources.json: name-res_a (res_a), name-res_b (res_b))"
        );
    }

    #[test]
    fn a_resource_is_named_by_its_id_or_its_name_and_a_shared_name_is_refused() {
        let named = |id: &str, name: &str| Resource { name: name.into(), ..resource(id, &format!("db-{id}")) };
        let known =
            [named("res_1", "testdb"), named("res_2", "orders"), named("res_3", "orders"), named("res_4", "res_1")];
        let got = upstreams(&[listener(1, "testdb", None), listener(2, " res_2 ", None)], &known, "x").unwrap();
        assert_eq!(got, [resolved("res_1", "db-res_1:5432"), resolved("res_2", "db-res_2:5432")]);
        // An id wins over a name that is the same text.
        assert_eq!(
            upstreams(&[listener(3, "res_1", None)], &known, "x").unwrap(),
            [resolved("res_1", "db-res_1:5432")]
        );
        let error = upstreams(&[listener(4, "orders", None)], &known, "the control plane").unwrap_err();
        assert_eq!(
            error.to_string(),
            "listener 127.0.0.1:4: resource `orders` names 2 resources: res_2, res_3 (known from the control plane): \
             set the listener's resource to the id of the one meant"
        );
        let error = upstreams(&[listener(5, "nope", None)], &known[..2], "the control plane").unwrap_err();
        assert!(
            error.to_string().ends_with("(known from the control plane: testdb (res_1), orders (res_2))"),
            "{error}"
        );
    }
}
