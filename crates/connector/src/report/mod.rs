//! Getting events to the control plane without losing any: batching, the
//! spool, replay, heartbeats, and the termination watch.
//!
//! The proxy only ever touches [`Reporter`]: a cheap handle that queues an
//! event without blocking the relay, and says whether new sessions may start.
//! The design of the spool, its recovery and its trade-offs are in
//! `README.md` beside this file.
//!
//! # Layout
//! - [`pipeline`]: the report loop: batches, `Report` calls, spooling and replay, `Hello`.
//! - [`spool`]: the append-only segment files; [`record`]: their framing.
//! - [`client`]: the `ConnectorService` client; [`convert`]: events to wire messages.
//! - [`heartbeat`], [`terminations`]: the lease and the termination stream.
//! - [`resources`]: what `Hello` returns, and its cache in the state directory.

pub mod backoff;
pub mod client;
pub mod convert;
pub mod heartbeat;
pub mod pipeline;
pub mod record;
pub mod resources;
pub mod spool;
pub mod terminations;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

pub use client::ControlPlane;
pub use pipeline::{ReportLoop, ReportOptions};
pub use spool::{Limit, Spool, SpoolOptions};

use crate::event::SessionEvent;
use crate::metrics::Metrics;

/// The proxy's handle to the report pipeline. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Reporter {
    events: mpsc::UnboundedSender<SessionEvent>,
    shared: Arc<Shared>,
}

/// What the report loop tells every [`Reporter`].
#[derive(Debug, Default)]
struct Shared {
    /// The spool is full and the connector does not fail open.
    refusing: AtomicBool,
    /// Counts queued events into the backlog; `None` for a bare channel.
    metrics: Option<Arc<Metrics>>,
}

/// The receiving end of a [`Reporter`]'s queue, for a [`ReportLoop`].
#[derive(Debug)]
pub struct Queue {
    events: mpsc::UnboundedReceiver<SessionEvent>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl Reporter {
    /// A reporter and the receiving end of its queue, with no report loop:
    /// it always admits new sessions and counts nothing. Tests read events
    /// from the receiver directly.
    pub fn channel() -> (Reporter, mpsc::UnboundedReceiver<SessionEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        (Reporter { events, shared: Arc::default() }, receiver)
    }

    /// A reporter for a [`ReportLoop`], which takes the [`Queue`]: queued
    /// events count in `metrics.report_backlog` until the control plane has
    /// them, and the loop decides [`Reporter::admits_new_sessions`].
    pub fn new(metrics: Arc<Metrics>) -> (Reporter, Queue) {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared { refusing: AtomicBool::new(false), metrics: Some(Arc::clone(&metrics)) });
        (Reporter { events, shared: Arc::clone(&shared) }, Queue { events: receiver, shared, metrics })
    }

    /// Whether a new session may start: false while the spool is full and
    /// the connector is not configured to fail open.
    pub fn admits_new_sessions(&self) -> bool {
        !self.shared.refusing.load(Ordering::Relaxed)
    }

    /// Queues an event. Never blocks.
    pub fn send(&self, event: SessionEvent) {
        let metrics = self.shared.metrics.as_deref();
        if let Some(m) = metrics {
            Metrics::add(&m.report_backlog, 1);
        }
        if self.events.send(event).is_err()
            && let Some(m) = metrics
        {
            Metrics::sub(&m.report_backlog, 1);
        }
    }
}
