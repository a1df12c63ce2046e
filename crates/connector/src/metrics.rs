//! Counters for `/metrics`, in the Prometheus text format. Relaxed atomics:
//! they are statistics, not synchronization.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_active: AtomicU64,
    pub connections_refused_total: AtomicU64,
    pub bytes_from_clients_total: AtomicU64,
    pub bytes_to_clients_total: AtomicU64,
    pub statements_total: AtomicU64,
    pub errors_total: AtomicU64,
    pub sessions_terminated_total: AtomicU64,
    /// Events waiting to reach the control plane (in memory and spooled).
    pub report_backlog: AtomicU64,
    /// Events dropped: the spool was full in fail-open mode, a spool write
    /// failed, or the control plane refused the event as malformed.
    pub events_dropped_total: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 10] = [
            ("connections_total", "counter", "Client connections accepted", &self.connections_total),
            ("connections_active", "gauge", "Client connections open now", &self.connections_active),
            (
                "connections_refused_total",
                "counter",
                "Connections refused (spool full, shutdown)",
                &self.connections_refused_total,
            ),
            ("bytes_from_clients_total", "counter", "Bytes received from clients", &self.bytes_from_clients_total),
            ("bytes_to_clients_total", "counter", "Bytes sent to clients", &self.bytes_to_clients_total),
            ("statements_total", "counter", "Statements recorded", &self.statements_total),
            ("errors_total", "counter", "Sessions ended by a protocol or IO error", &self.errors_total),
            (
                "sessions_terminated_total",
                "counter",
                "Sessions ended by a termination",
                &self.sessions_terminated_total,
            ),
            ("report_backlog", "gauge", "Events not yet accepted by the control plane", &self.report_backlog),
            (
                "events_dropped_total",
                "counter",
                "Events dropped: spool full (fail-open), disk write failed, or refused by the control plane",
                &self.events_dropped_total,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP gatehouse_connector_{name} {help}");
            let _ = writeln!(out, "# TYPE gatehouse_connector_{name} {kind}");
            let _ = writeln!(out, "gatehouse_connector_{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
