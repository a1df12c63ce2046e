//! Sustained ingestion: simulated connectors report sessions over the
//! connector API (`Report`, Connect JSON) as fast as the control plane takes
//! them, each connector one request at a time, as a real one does.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_store::Store;
use serde_json::{Value, json};

/// Statements per reported session: one `Report` carries a session's start,
/// its statements and its end, as a connector's batch would under load.
const STATEMENTS_PER_SESSION: usize = 250;

/// What the run achieved.
pub struct Ingested {
    pub events: u64,
    pub statements: u64,
    pub requests: u64,
    pub elapsed: Duration,
}

/// Registers `connectors` connectors in their own organization (so the
/// listing data set stays as seeded) and has each report for `span`.
pub async fn run(store: &dyn Store, base_url: &str, connectors: usize, span: Duration) -> anyhow::Result<Ingested> {
    let org = store.ensure_org("bench-ingest").await?.id;
    let run = now_micros();
    let mut keys = Vec::new();
    for i in 0..connectors {
        let created = gatehouse_server::registry::create_connector(store, org, &format!("bench-{run}-{i}")).await?;
        keys.push(created.key);
    }
    let url = format!("{base_url}/gatehouse.connector.v1.ConnectorService/Report");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let deadline = started + span;
    let tasks: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(connector, key)| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let (mut events, mut statements, mut requests) = (0u64, 0u64, 0u64);
                let mut session = 0;
                while Instant::now() < deadline {
                    let body = report(run, connector, session);
                    session += 1;
                    let response = http.post(&url).bearer_auth(&key).json(&body).send().await?;
                    let status = response.status();
                    let answer: Value = response.json().await?;
                    if !status.is_success() {
                        bail!("Report answered {status}: {answer}");
                    }
                    let stored = answer["stored"].as_u64().context("Report answered no count")?;
                    if stored != (STATEMENTS_PER_SESSION + 2) as u64 {
                        bail!("Report stored {stored} of {} events", STATEMENTS_PER_SESSION + 2);
                    }
                    events += stored;
                    statements += STATEMENTS_PER_SESSION as u64;
                    requests += 1;
                }
                anyhow::Ok((events, statements, requests))
            })
        })
        .collect();
    let mut total = Ingested { events: 0, statements: 0, requests: 0, elapsed: Duration::ZERO };
    for task in tasks {
        let (events, statements, requests) = task.await??;
        total.events += events;
        total.statements += statements;
        total.requests += requests;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// One session of one connector, start to end, as a `Report` body.
fn report(run: i64, connector: usize, session: usize) -> Value {
    let id = format!("bench-{run}-{connector}-{session}");
    let start = now_micros();
    let mut events = Vec::with_capacity(STATEMENTS_PER_SESSION + 2);
    events.push(json!({
        "sessionId": id, "seq": 0,
        "start": {
            "startTime": format_rfc3339(start), "runId": format!("run-{run}"),
            "clientIpAddress": format!("10.1.{}.{}", connector, session % 250), "serverIpAddress": "10.0.0.5",
            "username": "app", "nativeUsername": "app", "database": "shop", "applicationName": "bench",
        },
    }));
    for seq in 1..=STATEMENTS_PER_SESSION {
        events.push(json!({
            "sessionId": id, "seq": seq,
            "statement": {
                "startTime": format_rfc3339(start + seq as i64 * 100),
                "duration": "0.000250s",
                "text": format!("SELECT id, total FROM orders WHERE customer_id = {} LIMIT 20", seq * 7919 % 100_000),
                "rows": 20, "bytesSent": 900,
            },
        }));
    }
    events.push(json!({
        "sessionId": id, "seq": STATEMENTS_PER_SESSION + 1,
        "end": {"endTime": format_rfc3339(start + (STATEMENTS_PER_SESSION as i64 + 1) * 100), "reason": "client"},
    }));
    json!({ "events": events })
}

/// Prints the run's rates.
pub fn print(ingested: &Ingested, connectors: usize) {
    let secs = ingested.elapsed.as_secs_f64().max(1e-9);
    println!(
        "\ningestion: {:.0} events/s ({:.0} statements/s, {:.0} sessions/s) from {connectors} connectors over {:.1}s \
         ({} Report calls of {} events)",
        ingested.events as f64 / secs,
        ingested.statements as f64 / secs,
        ingested.requests as f64 / secs,
        secs,
        ingested.requests,
        STATEMENTS_PER_SESSION + 2,
    );
}
