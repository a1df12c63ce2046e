//! The admin port over real HTTP: `/health` follows the connector's life,
//! `/metrics` speaks the Prometheus text format.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gatehouse_connector::admin::{self, Health};
use gatehouse_connector::metrics::Metrics;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn health_and_metrics() {
    let metrics = Arc::new(Metrics::default());
    metrics.statements_total.store(3, Ordering::Relaxed);
    metrics.report_backlog.store(7, Ordering::Relaxed);
    let health = Health::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server =
        tokio::spawn(admin::serve(listener, admin::router(Arc::clone(&metrics), health.clone()), stop.clone()));
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    let starting = get("/health").await.unwrap();
    assert_eq!(starting.status(), 503);
    assert_eq!(starting.text().await.unwrap(), "starting\n");

    health.set_running();
    let ok = get("/health").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "ok\n");

    let scraped = get("/metrics").await.unwrap();
    assert_eq!(scraped.status(), 200);
    let content_type = scraped.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let body = scraped.text().await.unwrap();
    assert!(body.contains("# TYPE gatehouse_connector_statements_total counter\n"), "{body}");
    assert!(body.contains("\ngatehouse_connector_statements_total 3\n"), "{body}");
    assert!(body.contains("\ngatehouse_connector_report_backlog 7\n"), "{body}");

    health.set_stopping();
    assert_eq!(get("/health").await.unwrap().status(), 503);
    assert_eq!(get("/nope").await.unwrap().status(), 404);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}
