//! The admin port (8080 by default): `GET /health` (readiness), `GET /live` (liveness) and
//! Prometheus `GET /metrics`.
//! It serves no connector data beyond the counters, and needs no key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::report::Reporter;

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the connector is in its life, as `/health` reports it.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicU8>);

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const STOPPING: u8 = 2;

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every listener accepts clients.
    pub fn set_running(&self) {
        self.0.store(RUNNING, Ordering::Relaxed);
    }

    /// Shutdown began: no new clients.
    pub fn set_stopping(&self) {
        self.0.store(STOPPING, Ordering::Relaxed);
    }

    pub fn is_running(&self) -> bool {
        self.0.load(Ordering::Relaxed) == RUNNING
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    health: Health,
    /// Says whether new sessions are admitted: a running connector that refuses every client
    /// is no place to send one.
    reporter: Reporter,
}

/// The admin application: `/health` answers 200 `ok` while the connector runs and admits
/// new sessions, and 503 with the reason otherwise (`starting`, `stopping`, or refusing new
/// sessions while its report spool is full or its key is refused): whether to send it
/// clients. `/live` answers 200 while the process serves at all: a liveness probe on
/// `/health` would restart a connector that waits out a control-plane outage, and end every
/// session it carries.
/// `/metrics` renders [`Metrics`].
pub fn router(metrics: Arc<Metrics>, health: Health, reporter: Reporter) -> Router {
    let state = AdminState { metrics, health, reporter };
    Router::new()
        .route("/health", get(health_handler))
        .route("/live", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn health_handler(State(state): State<AdminState>) -> impl IntoResponse {
    match state.health.0.load(Ordering::Relaxed) {
        RUNNING if let Some(refusal) = state.reporter.refusal() => {
            let reachable = state.metrics.control_plane_reachable.load(Ordering::Relaxed) == 1;
            (StatusCode::SERVICE_UNAVAILABLE, state.reporter.health_message(refusal, reachable))
        }
        RUNNING => (StatusCode::OK, "ok\n".to_owned()),
        STARTING => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned()),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned()),
    }
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], state.metrics.render())
}

/// Serves `app` on `listener` until `shutdown` is cancelled.
///
/// # Errors
///
/// IO errors of the server itself.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
