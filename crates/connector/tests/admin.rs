//! The admin port over real HTTP: `/health` follows the connector's life and whether it
//! admits new sessions, `/metrics` speaks the Prometheus text format.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

mod double;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use double::*;
use gatehouse_connector::admin::{self, Health};
use gatehouse_connector::metrics::Metrics;
use gatehouse_connector::report::{Reporter, SpoolOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An admin port on 127.0.0.1:0.
struct Admin {
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Admin {
    async fn start(metrics: Arc<Metrics>, health: Health, reporter: Reporter) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn(admin::serve(listener, admin::router(metrics, health, reporter), stop.clone()));
        Self { base, http: reqwest::Client::new(), stop, server }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    /// `/health`'s status and body.
    async fn health(&self) -> (u16, String) {
        let response = self.get("/health").await;
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.server).await.unwrap().unwrap().unwrap();
    }
}

#[tokio::test]
async fn health_and_metrics() {
    let metrics = Arc::new(Metrics::default());
    metrics.statements_total.store(3, Ordering::Relaxed);
    metrics.report_backlog.store(7, Ordering::Relaxed);
    let health = Health::new();
    let admin = Admin::start(Arc::clone(&metrics), health.clone(), Reporter::channel().0).await;
    let get = |path: &'static str| admin.get(path);

    assert_eq!(admin.health().await, (503, "starting\n".into()));
    health.set_running();
    assert_eq!(admin.health().await, (200, "ok\n".into()));

    let scraped = get("/metrics").await;
    assert_eq!(scraped.status(), 200);
    let content_type = scraped.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let body = scraped.text().await.unwrap();
    assert!(body.contains("# TYPE gatehouse_connector_statements_total counter\n"), "{body}");
    assert!(body.contains("\ngatehouse_connector_statements_total 3\n"), "{body}");
    assert!(body.contains("\ngatehouse_connector_report_backlog 7\n"), "{body}");

    health.set_stopping();
    assert_eq!(admin.health().await, (503, "stopping\n".into()));
    assert_eq!(get("/nope").await.status(), 404);
    admin.stop().await;
}

#[tokio::test]
async fn health_fails_while_a_full_spool_refuses_new_sessions() {
    let control = Harness::start().await;
    control.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let spool = SpoolOptions { max_bytes: 4096, segment_bytes: 1024 };
    let pipeline = Pipeline::start(control.control(), dir.path(), spool, options(false));
    let health = Health::new();
    health.set_running();
    let admin = Admin::start(Arc::new(Metrics::default()), health, pipeline.reporter.clone()).await;
    assert_eq!(admin.health().await, (200, "ok\n".into()));

    for event in session("long", 200) {
        pipeline.reporter.send(&event.session_id, event.seq, &event.kind);
    }
    eventually("new sessions refused", || !pipeline.reporter.admits_new_sessions()).await;
    let refusing = "refusing new sessions: report spool full, control plane unreachable\n";
    assert_eq!(admin.health().await, (503, refusing.into()), "a load balancer sends no clients here");
    let live = admin.get("/live").await;
    assert_eq!(live.status(), 200, "a liveness probe does not restart it, ending its sessions");

    control.plane.set_down(false);
    eventually("new sessions admitted again", || pipeline.reporter.admits_new_sessions()).await;
    assert_eq!(admin.health().await, (200, "ok\n".into()));
    admin.stop().await;
    assert_eq!(pipeline.stop().await, 0);
}
