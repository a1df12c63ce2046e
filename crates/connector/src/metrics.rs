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
    /// Logins for which the database could not be reached.
    pub upstream_connect_failures_total: AtomicU64,
    pub sessions_terminated_total: AtomicU64,
    pub sessions_revoked_total: AtomicU64,
    /// Events waiting to reach the control plane (in memory and spooled).
    pub report_backlog: AtomicU64,
    /// Bytes of the spool on disk.
    pub spool_bytes: AtomicU64,
    /// 1 while the last call to the control plane reached one, 0 once none could be reached.
    pub control_plane_reachable: AtomicU64,
    /// Which of the configured control-plane addresses calls go to (0 for the first).
    pub control_plane_replica: AtomicU64,
    /// How many control-plane addresses calls may go to: 1 means no other replica to move to.
    pub control_plane_replicas: AtomicU64,
    /// Calls that found a control plane unreachable (each address tried counts once).
    pub control_plane_unreachable_total: AtomicU64,
    /// Events dropped: the spool was full in fail-open mode, a spool write
    /// failed, or the control plane refused the event as malformed.
    pub events_dropped_total: AtomicU64,
    /// Identity logins that reached the database.
    pub identity_logins_total: AtomicU64,
    /// Logins the database refused (a wrong password, an unknown role or database).
    pub database_login_refusals_total: AtomicU64,
    /// Connections whose first messages could not be read as PostgreSQL's, or did not come in
    /// time: scanners, other protocols, broken clients.
    pub startup_failures_total: AtomicU64,
    /// Logins the connector refused, by reason.
    pub auth_failures: AuthFailures,
}

/// Why the connector refused a login: the control plane's reasons, then the connector's own.
pub const AUTH_FAILURE_REASONS: [&str; 17] = [
    "unknown_user",
    "bad_token",
    "expired_token",
    "revoked_token",
    "disabled_user",
    "role_not_allowed",
    "no_role",
    "throttled",
    "identity_required",
    "tls_required",
    "bad_user_name",
    "bad_end_user",
    "bad_password_message",
    "control_plane_unavailable",
    "no_credentials",
    "upstream_login",
    "other",
];

/// One counter per entry of [`AUTH_FAILURE_REASONS`].
#[derive(Debug, Default)]
pub struct AuthFailures([AtomicU64; AUTH_FAILURE_REASONS.len()]);

impl AuthFailures {
    /// Counts a failure; a reason not in the list counts as `other`.
    pub fn count(&self, reason: &str) {
        let i = AUTH_FAILURE_REASONS.iter().position(|r| *r == reason).unwrap_or(AUTH_FAILURE_REASONS.len() - 1);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: &str) -> u64 {
        AUTH_FAILURE_REASONS.iter().position(|r| *r == reason).map_or(0, |i| self.0[i].load(Ordering::Relaxed))
    }
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
        let rows: [(&str, &str, &str, &AtomicU64); 20] = [
            ("connections_total", "counter", "Client connections accepted", &self.connections_total),
            ("connections_active", "gauge", "Client connections open now", &self.connections_active),
            (
                "connections_refused_total",
                "counter",
                "Connections refused before their session began: the report spool full (fail-closed), the \
                 connector's key refused by the control plane, the listener not ready while starting, or the \
                 connector shutting down",
                &self.connections_refused_total,
            ),
            ("bytes_from_clients_total", "counter", "Bytes received from clients", &self.bytes_from_clients_total),
            ("bytes_to_clients_total", "counter", "Bytes sent to clients", &self.bytes_to_clients_total),
            ("statements_total", "counter", "Statements recorded", &self.statements_total),
            (
                "errors_total",
                "counter",
                "Sessions ended with reason error: a message from the client or the database that could not \
                 be read, the connection to the database failing, or a full report spool (fail-closed); a \
                 client that closed, reset or vanished ends with reason client and is not counted",
                &self.errors_total,
            ),
            (
                "upstream_connect_failures_total",
                "counter",
                "Logins for which the database could not be reached",
                &self.upstream_connect_failures_total,
            ),
            (
                "sessions_terminated_total",
                "counter",
                "Sessions ended by a termination",
                &self.sessions_terminated_total,
            ),
            (
                "sessions_revoked_total",
                "counter",
                "Sessions of identities ended because their access was revoked",
                &self.sessions_revoked_total,
            ),
            ("report_backlog", "gauge", "Events not yet accepted by the control plane", &self.report_backlog),
            (
                "spool_bytes",
                "gauge",
                "Bytes of events spooled on disk while the control plane is away",
                &self.spool_bytes,
            ),
            (
                "control_plane_reachable",
                "gauge",
                "1 while the last call reached the control plane, 0 once none of its addresses could be",
                &self.control_plane_reachable,
            ),
            (
                "control_plane_replica",
                "gauge",
                "Which configured control-plane address calls go to (0: the first)",
                &self.control_plane_replica,
            ),
            (
                "control_plane_replicas",
                "gauge",
                "How many control-plane addresses are configured (1: no replica to move to)",
                &self.control_plane_replicas,
            ),
            (
                "control_plane_unreachable_total",
                "counter",
                "Calls that found a control-plane address unreachable",
                &self.control_plane_unreachable_total,
            ),
            (
                "events_dropped_total",
                "counter",
                "Events dropped: spool full (fail-open), disk write failed, or refused by the control plane",
                &self.events_dropped_total,
            ),
            (
                "identity_logins_total",
                "counter",
                "Identity logins that reached the database",
                &self.identity_logins_total,
            ),
            (
                "database_login_refusals_total",
                "counter",
                "Logins the database refused (wrong password, unknown role or database)",
                &self.database_login_refusals_total,
            ),
            (
                "startup_failures_total",
                "counter",
                "Connections whose startup could not be read (not PostgreSQL's protocol, a broken packet, a TLS \
                 handshake that failed) or did not come within 60 s",
                &self.startup_failures_total,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP gatehouse_connector_{name} {help}");
            let _ = writeln!(out, "# TYPE gatehouse_connector_{name} {kind}");
            let _ = writeln!(out, "gatehouse_connector_{name} {}", value.load(Ordering::Relaxed));
        }
        let _ =
            writeln!(out, "# HELP gatehouse_connector_auth_failures_total Logins refused by the connector, by reason");
        let _ = writeln!(out, "# TYPE gatehouse_connector_auth_failures_total counter");
        for (reason, value) in AUTH_FAILURE_REASONS.iter().zip(&self.auth_failures.0) {
            let _ = writeln!(
                out,
                "gatehouse_connector_auth_failures_total{{reason=\"{reason}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_render_by_reason() {
        let metrics = Metrics::default();
        metrics.auth_failures.count("revoked_token");
        metrics.auth_failures.count("revoked_token");
        metrics.auth_failures.count("something new");
        assert_eq!(metrics.auth_failures.get("revoked_token"), 2);
        assert_eq!(metrics.auth_failures.get("other"), 1);
        let text = metrics.render();
        assert!(text.contains("gatehouse_connector_auth_failures_total{reason=\"revoked_token\"} 2\n"), "{text}");
        assert!(text.contains("gatehouse_connector_auth_failures_total{reason=\"bad_token\"} 0\n"), "{text}");
        assert!(text.contains("gatehouse_connector_identity_logins_total 0\n"), "{text}");
    }

    /// Each help says every reason its counter counts, and no more.
    #[test]
    fn helps_say_what_their_counters_count() {
        let text = Metrics::default().render();
        let help = |name: &str| {
            let line = format!("# HELP gatehouse_connector_{name} ");
            text.lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .unwrap_or_else(|| panic!("{name}: {text}"))
                .to_owned()
        };
        let refused = help("connections_refused_total");
        for reason in ["spool full", "key refused", "starting", "shutting down"] {
            assert!(refused.contains(reason), "{reason}: {refused}");
        }
        let errors = help("errors_total");
        assert!(errors.contains("reason error") && errors.contains("full report spool"), "{errors}");
        assert!(errors.contains("vanished ends with reason client and is not counted"), "{errors}");
    }
}
