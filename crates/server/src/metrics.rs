//! `/metrics` of the control plane, in the Prometheus text format: the API's calls by method
//! and outcome, with their latency, and what the connectors' reports and the lease sweep did.
//! Only methods a service serves are counted (unknown paths never reach [`Measure`]), and no
//! label names an organization, a key or a session: the page is as public as `/health`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use connectrpc::interceptor::{StreamRequest, StreamResponse, UnaryRequest, UnaryResponse};
use connectrpc::{ConnectError, Interceptor, Next, NextStream, PayloadStream};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
pub struct Metrics {
    /// By method path, then by outcome (`ok` or a Connect code).
    calls: Mutex<BTreeMap<String, Method>>,
    /// Events the connectors reported that were new (a retry's are not).
    pub events_stored_total: AtomicU64,
    /// Sessions the lease sweep completed, their connector silent past its lease.
    pub lease_sessions_completed_total: AtomicU64,
    /// Terminations asked for through the API.
    pub terminations_requested_total: AtomicU64,
    /// Connections closed because their client took nothing written to it for too long.
    pub connections_stalled_total: AtomicU64,
}

#[derive(Debug, Default)]
struct Method {
    by_outcome: BTreeMap<&'static str, u64>,
    /// Unary calls only: a stream lasts as long as its client keeps it.
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn call(&self, path: &str, outcome: &'static str, took: Option<f64>) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let method = match calls.get_mut(path) {
            Some(method) => method,
            None => calls.entry(path.to_owned()).or_default(),
        };
        *method.by_outcome.entry(outcome).or_default() += 1;
        if let Some(seconds) = took {
            let latency = &mut method.latency;
            latency.count += 1;
            latency.sum += seconds;
            for (bound, count) in BUCKETS.iter().zip(&mut latency.counts) {
                if seconds <= *bound {
                    *count += 1;
                }
            }
        }
    }

    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            ("events_stored_total", "Events connectors reported that were new", &self.events_stored_total),
            (
                "lease_sessions_completed_total",
                "Sessions completed by the lease sweep, their connector silent past its lease",
                &self.lease_sessions_completed_total,
            ),
            ("terminations_requested_total", "Session terminations asked for", &self.terminations_requested_total),
            (
                "connections_stalled_total",
                "Connections closed because their client took nothing written to it for too long",
                &self.connections_stalled_total,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP gatehouse_{name} {help}");
            let _ = writeln!(out, "# TYPE gatehouse_{name} counter");
            let _ = writeln!(out, "gatehouse_{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_identity_verifications_total Identity logins connectors asked about, by outcome"
        );
        let _ = writeln!(out, "# TYPE gatehouse_identity_verifications_total counter");
        for (outcome, count) in crate::identity::outcome_counts() {
            let _ = writeln!(out, "gatehouse_identity_verifications_total{{outcome=\"{outcome}\"}} {count}");
        }
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP gatehouse_api_calls_total API calls by service, method and outcome");
        let _ = writeln!(out, "# TYPE gatehouse_api_calls_total counter");
        for (path, method) in calls.iter() {
            let labels = labels(path);
            for (outcome, count) in &method.by_outcome {
                let _ = writeln!(out, "gatehouse_api_calls_total{{{labels},code=\"{outcome}\"}} {count}");
            }
        }
        let _ = writeln!(out, "# HELP gatehouse_api_call_duration_seconds Time to answer a unary API call");
        let _ = writeln!(out, "# TYPE gatehouse_api_call_duration_seconds histogram");
        for (path, method) in calls.iter().filter(|(_, method)| method.latency.count > 0) {
            let (labels, latency) = (labels(path), &method.latency);
            for (bound, count) in BUCKETS.iter().zip(latency.counts) {
                let _ = writeln!(out, "gatehouse_api_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ =
                writeln!(out, "gatehouse_api_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", latency.count);
            let _ = writeln!(out, "gatehouse_api_call_duration_seconds_sum{{{labels}}} {}", latency.sum);
            let _ = writeln!(out, "gatehouse_api_call_duration_seconds_count{{{labels}}} {}", latency.count);
        }
        out
    }
}

/// `service="core.v1.SessionsService",method="GetSession"` of a method's path. Paths are those
/// of methods served, whose names hold no quote or backslash.
fn labels(path: &str) -> String {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    format!("service=\"{service}\",method=\"{method}\"")
}

fn outcome<T>(result: &Result<T, ConnectError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error.code.as_str(),
    }
}

/// Counts every call, the refused ones too: registered first, it runs outermost.
pub struct Measure(pub std::sync::Arc<Metrics>);

#[connectrpc::async_trait]
impl Interceptor for Measure {
    async fn intercept_unary(&self, req: UnaryRequest, next: Next<'_>) -> Result<UnaryResponse, ConnectError> {
        let path = req.ctx.path().map(str::to_owned).unwrap_or_default();
        let started = Instant::now();
        let result = next.run(req).await;
        self.0.call(&path, outcome(&result), Some(started.elapsed().as_secs_f64()));
        result
    }

    async fn intercept_streaming(
        &self,
        req: StreamRequest,
        inbound: PayloadStream,
        next: NextStream<'_>,
    ) -> Result<StreamResponse, ConnectError> {
        let path = req.ctx.path().map(str::to_owned).unwrap_or_default();
        let result = next.run(req, inbound).await;
        self.0.call(&path, outcome(&result), None);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_calls_by_outcome_with_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.call("/core.v1.SessionsService/GetSession", "ok", Some(0.003));
        metrics.call("/core.v1.SessionsService/GetSession", "not_found", Some(0.5));
        metrics.call("/gatehouse.connector.v1.ConnectorService/WatchTerminations", "ok", None);
        let text = metrics.render();
        let get = "service=\"core.v1.SessionsService\",method=\"GetSession\"";
        for line in [
            format!("gatehouse_api_calls_total{{{get},code=\"ok\"}} 1"),
            format!("gatehouse_api_calls_total{{{get},code=\"not_found\"}} 1"),
            format!("gatehouse_api_call_duration_seconds_bucket{{{get},le=\"0.0025\"}} 0"),
            format!("gatehouse_api_call_duration_seconds_bucket{{{get},le=\"0.005\"}} 1"),
            format!("gatehouse_api_call_duration_seconds_bucket{{{get},le=\"+Inf\"}} 2"),
            format!("gatehouse_api_call_duration_seconds_count{{{get}}} 2"),
            "gatehouse_api_calls_total{service=\"gatehouse.connector.v1.ConnectorService\",method=\"WatchTerminations\",code=\"ok\"} 1".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("WatchTerminations\"}"), "streams have no latency:\n{text}");
    }
}
