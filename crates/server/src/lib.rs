//! The Gatehouse control plane.
//!
//! One port serves the `core.v1.SessionsService` over Connect (JSON and
//! binary, GET for read methods), gRPC and gRPC-Web, plus the standard gRPC
//! health and reflection services and a plain `GET /health`.
//!
//! # Layout
//! - [`aggregations`]: ListSessionAggregations validation and response.
//! - [`auth`]: API keys, and checking them.
//! - [`admission`]: which calls are served, decided from their headers: keys, and each
//!   organization's reads a few at a time.
//! - `body`: a request's whole body, for the middlewares that must read it first.
//! - [`cursor`]: signed keyset cursors.
//! - [`listing`]: ListSessionsV2 validation and paging.
//! - [`sessions`]: the sessions service handlers.
//! - [`connectors`]: the connector service: reports, leases, terminations.
//! - [`lease`]: the lease sweep, which holds off while the store may have lost heartbeats.
//! - [`identity`]: users, access tokens, and verifying connections' identities.
//! - `keys`: our keys service: the calling key and its organization.
//! - [`console`]: the web console, embedded static files served at `/`.
//! - [`terminations`]: termination requests on their way to connectors.
//! - [`registry`]: creating resources and connectors.
//! - [`convert`]: domain sessions to `core.v1` messages.
//! - [`https`]: the listener of `serve --tls-cert`, TLS handshakes off the accept loop.
//! - [`connection`]: serving one connection, HTTP/1.1 or HTTP/2, with limits on what a client holds.
//! - `private`: no cache keeps an answer of the API.

#![allow(refining_impl_trait_internal, refining_impl_trait_reachable)]

pub mod admission;
pub mod aggregations;
pub mod auth;
mod body;
pub mod clock;
mod compression;
pub mod connection;
pub mod connectors;
pub mod console;
pub mod convert;
pub mod cursor;
mod error;
mod grpc_web_text;
pub mod https;
pub mod identity;
mod json_object;
mod keys;
pub mod lease;
pub mod listing;
pub mod metrics;
mod private;
mod refusals;
pub mod registry;
pub mod sessions;
mod statements;
pub mod terminations;

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use connectrpc::{ConnectRpcService, Limits};
use gatehouse_proto::core::v1::{SESSIONS_SERVICE_SERVICE_NAME, SessionsServiceRegisterMarker};
use gatehouse_proto::gatehouse::sessions::v1::StatementsServiceRegisterMarker;
use gatehouse_store::{Store, StoreError};
use rand::RngCore;
use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::clock::StoreClock;
use crate::connectors::ConnectorApi;
pub use crate::connectors::Lease;
use crate::cursor::CursorCodec;
use crate::keys::KeysApi;
use crate::metrics::{Measure, Metrics};
use crate::sessions::SessionsApi;
use crate::terminations::TerminationBus;

/// Requests larger than this are refused before they are read in full.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
const CURSOR_SECRET: &str = "cursor-signing-key";

/// The HTTP application, and what [`serve`] must end when it shuts down.
pub struct App {
    router: axum::Router,
    /// The connectors' termination streams, which never end by themselves.
    terminations: Arc<TerminationBus>,
    limits: connection::Limits,
    metrics: Arc<Metrics>,
}

impl App {
    /// The same application, served with other limits on what clients may hold.
    pub fn with_limits(mut self, limits: connection::Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// Builds the HTTP application over `store`, with the default connector lease.
pub async fn app(store: Arc<dyn Store>) -> Result<App, StoreError> {
    app_with_lease(store, Lease::default()).await
}

/// Builds the HTTP application and starts the lease sweeper, which completes
/// the sessions of connectors unheard for longer than `lease`.
pub async fn app_with_lease(store: Arc<dyn Store>, lease: Lease) -> Result<App, StoreError> {
    let mut fresh = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut fresh);
    let cursor_key = store.secret_or_init(CURSOR_SECRET, &fresh).await?;

    let metrics = Arc::new(Metrics::default());
    let clock = Arc::new(StoreClock::default());
    clock.measure(store.clock()).await?;
    tokio::spawn({
        let (clock, store) = (clock.clone(), store.clone());
        async move { clock.follow(store.as_ref()).await }
    });
    let bus = Arc::new(TerminationBus::default());
    // Replicas sharing the store hear of each other's terminations.
    if let Some(feed) = store.termination_feed() {
        tokio::spawn(bus.clone().relay(store.clone(), feed, clock.clone()));
    }
    let sessions =
        SessionsApi::new(store.clone(), CursorCodec::new(cursor_key), bus.clone(), clock.clone(), metrics.clone());
    let failures = Arc::new(lease::StoreFailures::default());
    let connectors =
        ConnectorApi::new(store.clone(), bus.clone(), lease, clock.clone(), metrics.clone(), failures.clone());
    let sessions = Arc::new(sessions);
    let router = connectrpc::Router::new()
        .add_service::<_, SessionsServiceRegisterMarker>(Arc::clone(&sessions))
        .add_service::<_, StatementsServiceRegisterMarker>(sessions)
        .add_service(Arc::new(KeysApi::new(store.clone())))
        .add_service(Arc::new(connectors));
    tokio::spawn(lease::sweep(store.clone(), lease.lease, clock, metrics.clone(), failures));
    tokio::spawn(refresh_statistics(store.clone()));
    let (router, grpc_health) = connectrpc_health::install_static(
        router,
        [
            SESSIONS_SERVICE_SERVICE_NAME,
            gatehouse_proto::gatehouse::sessions::v1::STATEMENTS_SERVICE_SERVICE_NAME,
            gatehouse_proto::gatehouse::keys::v1::KEYS_SERVICE_SERVICE_NAME,
            gatehouse_proto::gatehouse::connector::v1::CONNECTOR_SERVICE_SERVICE_NAME,
        ],
    );
    tokio::spawn(report_store_health(store.clone(), grpc_health));
    let mut reflector =
        connectrpc_reflection::Reflector::from_descriptor_set_bytes(gatehouse_proto::FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set is valid");
    reflector
        .add_descriptor_set_bytes(gatehouse_proto::HEALTH_FILE_DESCRIPTOR_SET)
        .expect("the health service's descriptor set is valid");
    let methods = reflector
        .pool()
        .files()
        .iter()
        .flat_map(|file| {
            let package = file.package.as_deref().unwrap_or_default();
            file.service.iter().flat_map(move |service| {
                let service_name = service.name.as_deref().unwrap_or_default();
                service.method.iter().map(move |method| {
                    format!("/{package}.{service_name}/{}", method.name.as_deref().unwrap_or_default())
                })
            })
        })
        .collect();
    let router = connectrpc_reflection::install(router, reflector);
    let limits =
        Limits::default().with_max_request_body_size(MAX_REQUEST_BYTES).with_max_message_size(MAX_REQUEST_BYTES);
    let rpc = ConnectRpcService::new(router)
        .with_limits(limits)
        .with_compression(compression::registry().clone())
        .with_interceptor(Measure(metrics.clone()));
    let admission = Arc::new(Admission::new(Authenticator::new(store.clone()), metrics.clone(), methods));

    let router = axum::Router::new()
        .route("/health", get(move || health(store.clone())))
        .route(
            "/metrics",
            get({
                let metrics = metrics.clone();
                move || std::future::ready(metrics_page(&metrics))
            }),
        )
        .merge(console::routes())
        .fallback_service(rpc)
        .layer(axum::middleware::from_fn(private::no_store))
        .layer(axum::middleware::from_fn(refusals::explain))
        .layer(axum::middleware::from_fn(json_object::require))
        .layer(axum::middleware::from_fn(grpc_web_text::translate))
        // Outermost: the layers inside read whole bodies, which a call must be admitted to send.
        .layer(axum::middleware::from_fn_with_state(admission, admission::admit));
    Ok(App { router, terminations: bus, limits: connection::Limits::default(), metrics })
}

/// `/metrics`, in the Prometheus text format.
fn metrics_page(metrics: &Metrics) -> ([(http::header::HeaderName, &'static str); 1], String) {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

/// How long `/health`, or the lease sweep's probe, waits for the store before taking it for
/// unreachable.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: 200 while the store answers, 503 while it does not (with no
/// detail beyond that: the body is public). Everything else keeps serving
/// meanwhile, failing calls that need the store with `unavailable`.
async fn health(store: Arc<dyn Store>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(HEALTH_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        Ok(Err(err)) => {
            tracing::warn!(%err, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
        Err(_) => {
            tracing::warn!(timeout = ?HEALTH_TIMEOUT, "not ready: the store does not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
    }
}

/// How often the standard gRPC health service's answer is brought up to date.
const GRPC_HEALTH_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps the standard gRPC health service's answer (Check and Watch, for the server and each
/// service) to what `/health` says: NOT_SERVING while the store does not answer, so that
/// gRPC-aware balancers and probes stop sending calls that would fail with `unavailable`.
async fn report_store_health(store: Arc<dyn Store>, health: Arc<connectrpc_health::StaticChecker>) {
    use connectrpc_health::Status;
    let mut tick = tokio::time::interval(GRPC_HEALTH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let answers = matches!(tokio::time::timeout(HEALTH_TIMEOUT, store.ping()).await, Ok(Ok(())));
        let status = if answers { Status::Serving } else { Status::NotServing };
        for service in health.services() {
            // Each was registered; none is removed.
            let _ = health.set_status(&service, status);
        }
    }
}

/// How often the planner's statistics are looked at (see [`Store::refresh_statistics`]): a
/// look is one small query, and a burst of new sessions is planned for within seconds.
const STATISTICS_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// Keeps the planner's statistics fresh where nothing else does, from start on.
async fn refresh_statistics(store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(STATISTICS_PERIOD);
    loop {
        tick.tick().await;
        match store.refresh_statistics().await {
            Ok(0) => {}
            Ok(tables) => tracing::debug!(tables, "refreshed the planner's statistics"),
            Err(err) => tracing::warn!(%err, "refreshing the planner's statistics failed; retrying"),
        }
    }
}

/// How long requests in flight may finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` completes, then ends
/// the connectors' termination streams (they reopen theirs elsewhere) and lets requests in
/// flight finish for at most [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let App { router, terminations, limits, metrics } = app;
    let shutdown = async move {
        shutdown.await;
        terminations.close();
    };
    match tls {
        None => {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| no_delay(tcp));
            serve_until(listener, router, limits, metrics, shutdown).await;
        }
        Some(config) => serve_until(https::TlsListener::new(listener, config), router, limits, metrics, shutdown).await,
    }
}

/// Small writes go out at once: HTTP/2 writes a response's headers, data and trailers
/// apart, and Nagle's algorithm would hold each later one for the client's delayed ACK
/// (some 40 ms a call).
pub(crate) fn no_delay(tcp: &tokio::net::TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

async fn serve_until<L>(
    mut listener: L,
    app: axum::Router,
    limits: connection::Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let builder = connection::builder(&limits);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let (tracker, closing) = (tokio_util::task::TaskTracker::new(), tokio_util::sync::CancellationToken::new());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut at_limit = false;
    loop {
        // At the limit, the next connection waits in the listen queue until one ends.
        let permit = match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !at_limit {
                    tracing::warn!(limit = limits.connections, "at the connection limit: new connections wait");
                    at_limit = true;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    permit = Arc::clone(&connections).acquire_owned() => permit.expect("never closed"),
                }
            }
        };
        let io = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        if connections.available_permits() > 0 {
            at_limit = false;
        }
        let (io, client) = io;
        let serving =
            connection::serve(io, client, app.clone(), builder.clone(), limits, metrics.clone(), closing.clone());
        tracker.spawn(async move {
            serving.await;
            drop(permit);
        });
    }
    drop(listener);
    closing.cancel();
    tracker.close();
    tokio::select! {
        () = tracker.wait() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::info!("closing connections still open after the shutdown grace period");
        }
    }
}
