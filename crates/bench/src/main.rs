//! Measures ListSessionsV2 end to end over HTTP (JSON) and the same listings
//! straight against the store, in one process and one run, and prints the
//! ratios and the query plans, then measures sustained ingestion from
//! simulated connectors. Fill the store first with `gatehouse seed` (SQLite
//! with `--data-dir`, PostgreSQL with `--database-url`).

mod backend;
mod ingest;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_core::{OrgId, Role};
use gatehouse_store::{AggregateQuery, Direction, Facet, HistogramSpec, ListQuery, Position, SortKey, Store};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Directory of the seeded SQLite store
    #[arg(long, required_unless_present = "database_url")]
    data_dir: Option<PathBuf>,
    /// The seeded PostgreSQL store instead
    #[arg(long, conflicts_with = "data_dir")]
    database_url: Option<String>,
    /// Organization the sessions were seeded into
    #[arg(long, default_value = "default")]
    org: String,
    /// Timed requests per case
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Pages to walk before timing the deep page
    #[arg(long, default_value_t = 500)]
    deep_pages: usize,
    /// Concurrent clients for the throughput run
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of the throughput run
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Simulated connectors for the ingestion run (0 skips it)
    #[arg(long, default_value_t = 8)]
    connectors: usize,
    /// Seconds of the ingestion run
    #[arg(long, default_value_t = 10)]
    ingest_seconds: u64,
    /// Timed requests per aggregation case (default: a tenth of --iterations, plus 5)
    #[arg(long)]
    aggregation_iterations: Option<usize>,
    /// Aggregations also counted from the sessions alone, without the rollup, to compare
    /// (0 skips the comparison: at 10M sessions one raw count of every facet takes minutes)
    #[arg(long, default_value_t = 3)]
    raw_iterations: usize,
}

/// One listing, as an API request body and as a store query.
struct Case {
    name: &'static str,
    body: Value,
    query: ListQuery,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backend = backend::Backend::open(args.data_dir.as_deref(), args.database_url.as_deref()).await?;
    let store = backend.store();
    let org =
        store.find_org(&args.org).await?.with_context(|| format!("no organization {:?}: seed first", args.org))?;
    let key = gatehouse_server::auth::create_api_key(store.as_ref(), org.id, "bench", Role::Reader).await?.key;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let url = format!("{base_url}/core.v1.SessionsService/ListSessionsV2");
    let app = gatehouse_server::app(store.clone()).await?;
    tokio::spawn(gatehouse_server::serve(listener, None, app, std::future::pending()));
    let http = reqwest::Client::new();
    let api = Api { http, url, key };

    let now = now_micros();
    // The newest person (machines have no email) is the selective filter's user.
    let newest = store.list_sessions(org.id, &ListQuery::newest(1000, now)).await?;
    let email = newest
        .iter()
        .filter_map(|s| s.user.formal.as_ref().map(|f| f.email.clone()))
        .find(|email| !email.is_empty())
        .context("no session with a user email: seed the store first")?;
    let week_ago = now - 7 * 86_400_000_000;
    let cases = [
        Case { name: "first page", body: json!({"limit": 100}), query: store_query("", None, now) },
        Case {
            name: "selective: one user, 7 days",
            body: json!({"limit": 100, "query": format!("user.email:{email}"), "startTimestamp": format_rfc3339(week_ago)}),
            query: store_query(&format!("user.email:{email}"), Some(week_ago), now),
        },
        Case {
            name: "broad: postgres or dba",
            body: json!({"limit": 100, "query": "technology:postgres OR group:dba"}),
            query: store_query("technology:postgres OR group:dba", None, now),
        },
    ];

    println!("sessions API benchmark: {} ({} timed requests per case)", backend.name(), args.iterations);
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "case", "API p50", "API p95", "store p50", "store p95", "ratio"
    );
    for case in &cases {
        report(case.name, &api, &case.body, store.as_ref(), org.id, &case.query, args.iterations).await?;
    }
    let (body, query) = deep_page(&api, store.as_ref(), org.id, args.deep_pages, now).await?;
    let name = format!("deep page ({} x 100 in)", args.deep_pages);
    report(&name, &api, &body, store.as_ref(), org.id, &query, args.iterations).await?;

    if args.connectors > 0 {
        let span = Duration::from_secs(args.ingest_seconds);
        let ingested = ingest::run(store.as_ref(), &base_url, args.connectors, span).await?;
        ingest::print(&ingested, args.connectors);
    }

    println!("\nquery plans ({}):", backend.name());
    for (name, query) in cases.iter().map(|c| (c.name, &c.query)).chain([("deep page", &query)]) {
        println!("  {name}:");
        for line in backend.explain(org.id, query).await? {
            println!("    {line}");
        }
    }

    if let Some(dir) = &args.data_dir {
        read_timeout_cost(&dir.join("gatehouse.db"), store.as_ref(), org.id, &newest[0].id, args.iterations).await?;
    }

    let iterations = args.aggregation_iterations.unwrap_or(args.iterations / 10 + 5);
    aggregations(&api, store.as_ref(), org.id, now, iterations, args.raw_iterations).await?;

    let rps = throughput(&api, &cases[0].body, args.clients, Duration::from_secs(args.seconds)).await?;
    println!("\nthroughput: {rps:.0} requests/s with {} concurrent clients (first page, JSON)", args.clients);

    Ok(())
}

/// ListSessionAggregations over the last 30 days, split by technology: the
/// console's histogram and facets. The API against the store's own call,
/// and the store's call counting the sessions alone (no hourly rollup, as
/// before it existed), whose answer must be the same.
async fn aggregations(
    api: &Api,
    store: &dyn Store,
    org: OrgId,
    now: i64,
    iterations: usize,
    raw_iterations: usize,
) -> anyhow::Result<()> {
    let month_ago = now - 30 * 86_400_000_000;
    let url = api.url.replace("ListSessionsV2", "ListSessionAggregations");
    let api = Api { http: api.http.clone(), url, key: api.key.clone() };
    let raw_iterations = raw_iterations.min(iterations + 2);
    println!(
        "\naggregations, 30 days, group by technology ({iterations} timed requests per case, \
         {raw_iterations} without the rollup)"
    );
    let rolled_up: Vec<Facet> = gatehouse_store::sql::rollup::DIMS.iter().filter_map(|dim| dim.facet).collect();
    for (name, mode, facets, filter) in [
        ("histogram only", Some("histogram"), vec![], ""),
        ("histogram + rolled-up facets", None, rolled_up, ""),
        ("histogram + facets", None, Facet::ALL.to_vec(), ""),
        // Filtered: no rollup, the filter in every statement or matched once.
        ("filtered: group:dba", None, Facet::ALL.to_vec(), "group:dba"),
        ("filtered: alice OR bob", None, Facet::ALL.to_vec(), "alice OR bob"),
    ] {
        let mut body = json!({
            "startTimestamp": format_rfc3339(month_ago),
            "histogramGroupByFields": ["technology"],
            "query": filter,
        });
        if let Some(mode) = mode {
            body["mode"] = json!(mode);
        }
        if mode.is_none() && facets.len() < Facet::ALL.len() {
            // The API has no way to ask for some facets: time the store alone.
            body = Value::Null;
        }
        let query = AggregateQuery {
            filter: gatehouse_query::parse(filter, now).expect("benchmark queries parse"),
            window_start: Some(month_ago),
            window_end: None,
            now,
            histogram: Some(HistogramSpec {
                interval: None,
                group_by: vec![gatehouse_query::Field::ResourceTechnology],
            }),
            facets,
            facet_limit: 10,
        };
        let (mut api_times, mut store_times, mut raw_times) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..iterations + 2 {
            let started = Instant::now();
            let response = if body.is_null() { Value::Null } else { api.list(&body).await? };
            let api_time = started.elapsed();
            let started = Instant::now();
            let counted = store.aggregate(org, &query).await?;
            let store_time = started.elapsed();
            if i == 0 {
                println!("  {name}: {} hits, {} buckets", counted.num_hits, counted.histogram.len());
                if !response.is_null() && response["numHits"] != json!(counted.num_hits.to_string()) {
                    bail!("{name}: the API counted {} hits", response["numHits"]);
                }
            }
            if i >= 2 {
                api_times.push(api_time);
                store_times.push(store_time);
            }
            if i < raw_iterations {
                let started = Instant::now();
                let raw = store.aggregate_raw(org, &query).await?;
                raw_times.push(started.elapsed());
                if raw != counted {
                    bail!("{name}: the rollup's answer differs from counting the sessions");
                }
            }
        }
        let (a50, a95) = percentiles(&mut api_times);
        let (s50, _) = percentiles(&mut store_times);
        let raw = if raw_times.is_empty() {
            "not measured".to_owned()
        } else {
            format!("{:.1}ms", ms(percentiles(&mut raw_times).0))
        };
        let api = if body.is_null() {
            format!("{:>34}", "")
        } else {
            format!("API p50 {:>8.1}ms p95 {:>8.1}ms,", ms(a50), ms(a95))
        };
        println!("  {name:<30} {api} store p50 {:>8.1}ms, without the rollup p50 {raw}", ms(s50));
    }
    Ok(())
}

fn store_query(text: &str, window_start: Option<i64>, now: i64) -> ListQuery {
    ListQuery {
        filter: gatehouse_query::parse(text, now).expect("benchmark queries parse"),
        window_start,
        window_end: None,
        sort: SortKey::StartTime,
        direction: Direction::Desc,
        after: None,
        reverse: false,
        now,
        limit: 101,
    }
}

struct Api {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Api {
    async fn list(&self, body: &Value) -> anyhow::Result<Value> {
        let response = self.http.post(&self.url).header("X-API-KEY", &self.key).json(body).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("API answered {status}: {body}");
        }
        Ok(body)
    }
}

/// Walks `pages` pages through the API and the store, returning the next page's request for both.
async fn deep_page(
    api: &Api,
    store: &dyn Store,
    org: OrgId,
    pages: usize,
    now: i64,
) -> anyhow::Result<(Value, ListQuery)> {
    let mut body = json!({"limit": 100});
    let mut query = store_query("", None, now);
    query.limit = 100;
    for _ in 0..pages {
        let page = api.list(&body).await?;
        let cursor = page["listMetadata"]["nextCursor"].as_str().context("ran out of pages")?.to_owned();
        body["cursor"] = json!(cursor);
        let rows = store.list_sessions(org, &query).await?;
        let last = rows.last().context("ran out of rows")?;
        query.after = Some(Position { key: query.key_of(last), id: last.id.clone() });
    }
    query.limit = 101;
    Ok((body, query))
}

async fn report(
    name: &str,
    api: &Api,
    body: &Value,
    store: &dyn Store,
    org: OrgId,
    query: &ListQuery,
    iterations: usize,
) -> anyhow::Result<()> {
    // Interleave API and store calls so that drift on a busy machine hits both alike.
    let (mut api_times, mut store_times) = (Vec::new(), Vec::new());
    for i in 0..iterations + 10 {
        let started = Instant::now();
        let page = api.list(body).await?;
        let api_time = started.elapsed();
        let started = Instant::now();
        let rows = store.list_sessions(org, query).await?;
        let store_time = started.elapsed();
        if i == 0 && page["sessions"].as_array().map_or(0, Vec::len) != rows.len().min(100) {
            bail!("{name}: API and store disagree on the page size");
        }
        if i >= 10 {
            api_times.push(api_time);
            store_times.push(store_time);
        }
    }
    let (a50, a95) = percentiles(&mut api_times);
    let (s50, s95) = percentiles(&mut store_times);
    println!(
        "{name:<32} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}",
        ms(a50),
        ms(a95),
        ms(s50),
        ms(s95),
        ms(a50) / ms(s50)
    );
    Ok(())
}

/// What SQLite's read timeout costs: the same small reads through the store
/// (a progress handler set on every use of a reader) and through a second
/// store on the same file opened without the timeout, interleaved.
async fn read_timeout_cost(
    path: &std::path::Path,
    timed: &dyn Store,
    org: OrgId,
    id: &str,
    iterations: usize,
) -> anyhow::Result<()> {
    let untimed = gatehouse_store::sqlite::SqliteStore::open_with(path, Duration::ZERO).await?;
    let iterations = iterations * 10;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..iterations + 100 {
        let started = Instant::now();
        timed.get_session(org, id).await?.context("the newest session vanished")?;
        let with_time = started.elapsed();
        let started = Instant::now();
        untimed.get_session(org, id).await?.context("the newest session vanished")?;
        if i >= 100 {
            with.push(with_time);
            without.push(started.elapsed());
        }
    }
    let (w50, _) = percentiles(&mut with);
    let (n50, _) = percentiles(&mut without);
    println!(
        "
SQLite read timeout: GetSession from the store p50 {:.1} µs with it, {:.1} µs without \
         ({iterations} each, interleaved): ratio {:.2}",
        w50.as_secs_f64() * 1e6,
        n50.as_secs_f64() * 1e6,
        w50.as_secs_f64() / n50.as_secs_f64()
    );
    Ok(())
}

fn percentiles(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() * 95 / 100])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn throughput(api: &Api, body: &Value, clients: usize, span: Duration) -> anyhow::Result<f64> {
    let api = Arc::new(Api { http: api.http.clone(), url: api.url.clone(), key: api.key.clone() });
    let deadline = Instant::now() + span;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let api = api.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    api.list(&body).await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / span.as_secs_f64())
}
