//! ListSessionAggregations as a client meets it: its counts agree with a walk
//! of ListSessionsV2 over the same query and window.

mod harness;

use std::collections::BTreeMap;

use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_core::{Role, Session};
use gatehouse_server::auth::create_api_key;
use gatehouse_store::{IngestEvent, StatementRecord};
use harness::*;
use serde_json::{Value, json};

/// 300 sessions over ~5 hours with varied technologies, people, groups and
/// addresses; every ninth still active.
fn varied() -> Vec<Session> {
    let technologies = ["postgres", "mysql", "mongodb"];
    let people = ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"];
    (0..300)
        .map(|i| {
            let mut s = session(&format!("v{i:04}"), 300 - i as i64, Some((i % 13) as i64 + 1), people[i % 4]);
            if i % 9 == 0 {
                s.end = None;
            }
            s.resource.technology = technologies[i % 3].into();
            s.resource.name = format!("db-{}", i % 5);
            s.client_ip = format!("10.0.{}.{}", i % 2, i % 6);
            if let Some(formal) = &mut s.user.formal {
                formal.groups = match i % 4 {
                    0 => vec!["dba".into(), "oncall".into()],
                    1 => vec!["eng".into()],
                    _ => vec![],
                };
            }
            s
        })
        .collect()
}

/// Every session object a full ListSessionsV2 walk returns.
async fn walk_sessions(h: &Harness, mut body: Value) -> Vec<Value> {
    body["limit"] = json!(37);
    let mut all = Vec::new();
    loop {
        let (status, page) = h.call("ListSessionsV2", body.clone()).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["sessions"].as_array().cloned().unwrap_or_default());
        match page["listMetadata"]["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => body["cursor"] = json!(next),
            _ => return all,
        }
    }
}

async fn aggregate(h: &Harness, body: Value) -> Value {
    let (status, response) = h.call("ListSessionAggregations", body).await;
    assert_eq!(status, 200, "{response}");
    response
}

fn hits(response: &Value) -> u64 {
    response["numHits"].as_str().map_or(0, |n| n.parse().unwrap())
}

/// `[{key, count}]` as a map.
fn buckets(list: &Value) -> BTreeMap<String, u64> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|b| (b["key"].as_str().unwrap_or_default().to_owned(), b["count"].as_u64().unwrap_or(0)))
        .collect()
}

/// The ten most frequent values of `f` in `sessions`, ties by value.
fn top10(sessions: &[Value], f: impl Fn(&Value) -> Option<String>) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for s in sessions {
        if let Some(key) = f(s).filter(|k| !k.is_empty()) {
            *counts.entry(key).or_default() += 1;
        }
    }
    let mut ranked: Vec<_> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.into_iter().take(10).collect()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

#[tokio::test]
async fn counts_equal_a_walk_of_the_listing() {
    let h = Harness::start().await;
    h.insert(&varied()).await;
    let now = now_micros();
    let windows = [
        json!({}),
        json!({"startTimestamp": format_rfc3339(now - 120 * MINUTE)}),
        json!({"startTimestamp": format_rfc3339(now - 200 * MINUTE), "endTimestamp": format_rfc3339(now - 100 * MINUTE)}),
    ];
    let queries = [
        "",
        "technology:postgres",
        "user.email:alice@example.com OR group:dba",
        "session_status:active",
        "NOT client_ip:\"10.0.1.0/24\"",
        "resource.name:nothing",
    ];
    for window in &windows {
        for query in queries {
            let mut body = window.clone();
            body["query"] = json!(query);
            let walked = walk_sessions(&h, body.clone()).await;
            let counted = aggregate(&h, body.clone()).await;
            let context = format!("query {query:?} window {window}");
            assert_eq!(hits(&counted), walked.len() as u64, "{context}");
            let a = &counted["aggregations"];
            let histogram: u64 =
                a["logsOverTime"].as_array().into_iter().flatten().map(|d| d["count"].as_u64().unwrap_or(0)).sum();
            assert_eq!(histogram, walked.len() as u64, "the histogram adds up to the hits: {context}");
            assert_eq!(
                buckets(&a["sessionTypes"]),
                top10(&walked, |s| text(&s["resource"]["technology"])),
                "{context}"
            );
            assert_eq!(buckets(&a["resourceTechnologies"]), buckets(&a["sessionTypes"]));
            assert_eq!(
                buckets(&a["userEmails"]),
                top10(&walked, |s| text(&s["user"]["formal"]["user"]["email"])),
                "{context}"
            );
            assert_eq!(buckets(&a["resourceNames"]), top10(&walked, |s| text(&s["resource"]["name"])), "{context}");
            assert_eq!(
                buckets(&a["sessionClientIpAddresses"]),
                top10(&walked, |s| text(&s["network"]["clientIpAddress"]).or_else(|| text(&s["clientIpAddress"]))),
                "{context}"
            );
            assert_eq!(buckets(&a["sessionIds"]).len(), walked.len().min(10), "{context}");
        }
    }
}

#[tokio::test]
async fn histogram_buckets_cover_the_window_and_split_by_fields() {
    let h = Harness::start().await;
    h.insert(&varied()).await;
    let hour = 60 * MINUTE;
    // Whole hours, so the buckets line up with the window.
    let end = (now_micros() / hour + 1) * hour;
    let start = end - 8 * hour;
    let body = json!({
        "startTimestamp": format_rfc3339(start),
        "endTimestamp": format_rfc3339(end),
        "histogramInterval": "1h",
        "histogramGroupByFields": ["technology", "group"],
    });
    let response = aggregate(&h, body).await;
    let dates = response["aggregations"]["logsOverTime"].as_array().unwrap().clone();
    assert_eq!(dates.len(), 8, "one bucket per hour, empty ones included");
    for (i, date) in dates.iter().enumerate() {
        assert_eq!(date["datetime"], format_rfc3339(start + i as i64 * hour));
    }
    assert!(dates.iter().any(|d| d.get("count").is_none()), "hours before the data are empty: {dates:?}");
    let mut total = 0;
    for date in &dates {
        let count = date["count"].as_u64().unwrap_or(0);
        total += count;
        let technologies = date["buckets"].as_array().cloned().unwrap_or_default();
        let split: u64 = technologies.iter().map(|t| t["count"].as_u64().unwrap()).sum();
        assert_eq!(split, count, "technology is single-valued: {date}");
        for t in &technologies {
            let groups = buckets(&t["buckets"]);
            // A session in two groups counts under each; one in none under "".
            assert!(groups.values().sum::<u64>() >= t["count"].as_u64().unwrap(), "{t}");
            assert!(groups.keys().all(|g| ["", "dba", "oncall", "eng"].contains(&g.as_str())), "{t}");
        }
    }
    assert_eq!(total, hits(&response));

    let automatic = aggregate(&h, json!({"startTimestamp": format_rfc3339(now_micros() - 30 * 24 * hour)})).await;
    let n = automatic["aggregations"]["logsOverTime"].as_array().unwrap().len();
    assert!((30..=101).contains(&n), "about 100 buckets at most: {n}");

    // Epoch-aligned buckets can begin before year 1; their labels stay RFC 3339.
    let ancient = json!({
        "startTimestamp": "0001-01-01T00:00:00Z",
        "endTimestamp": "0010-01-01T00:00:00Z",
        "histogramInterval": "1000d",
    });
    let dates = aggregate(&h, ancient).await["aggregations"]["logsOverTime"].as_array().unwrap().clone();
    assert_eq!(dates[0]["datetime"], "0001-01-01T00:00:00Z", "{dates:?}");
    assert!(dates.iter().all(|d| d["datetime"].as_str().unwrap().starts_with("000")), "{dates:?}");
}

#[tokio::test]
async fn statements_feed_fingerprints_and_volumes() {
    let h = Harness::start().await;
    let sessions = varied();
    h.insert(&sessions[..3]).await;
    let statement = |seq, text: &str| StatementRecord {
        seq,
        start: now_micros(),
        duration: 10,
        text: text.into(),
        rows: 5,
        bytes_sent: 2_000,
        sqlstate: String::new(),
        ..Default::default()
    };
    let mut events = Vec::new();
    for (i, s) in sessions[..2].iter().enumerate() {
        for seq in 1..=12 {
            let text = format!("SELECT * FROM orders WHERE id = {}", seq * 7 + i as u64);
            events.push(IngestEvent::Statement { session_id: s.id.clone(), statement: statement(seq, &text) });
        }
    }
    events.push(IngestEvent::Statement { session_id: sessions[0].id.clone(), statement: statement(13, "select 1") });
    h.store.ingest(h.org, "con_1", &events).await.unwrap();
    // A retried report changes no total.
    h.store.ingest(h.org, "con_1", &events).await.unwrap();

    let a = aggregate(&h, json!({})).await["aggregations"].clone();
    assert_eq!(
        buckets(&a["queryFingerprints"]),
        BTreeMap::from([("select * from orders where id = ?".into(), 2), ("select ?".into(), 1)])
    );
    assert_eq!(buckets(&a["queryReceived"]), BTreeMap::from([("10-99".into(), 2), ("0".into(), 1)]));
    assert_eq!(a["queryReceived"], a["querySent"]);
    // 24,000 and 26,000 bytes, and none.
    assert_eq!(buckets(&a["responseDataVolumes"]), BTreeMap::from([("10000-99999".into(), 2), ("0".into(), 1)]));
    assert_eq!(buckets(&a["responseRowsSent"]), BTreeMap::from([("10-99".into(), 2), ("0".into(), 1)]));
}

#[tokio::test]
async fn organizations_count_only_their_own() {
    let h = Harness::start().await;
    h.insert(&varied()).await;
    let other = h.store.ensure_org("globex").await.unwrap().id;
    let key = create_api_key(h.store.as_ref(), other, "k", Role::Reader).await.unwrap().key;
    h.store.insert_sessions(other, &many(7)).await.unwrap();
    let (status, response) = h.call_with_key("ListSessionAggregations", json!({}), &key).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(hits(&response), 7);
    assert_eq!(buckets(&response["aggregations"]["sessionTypes"]), BTreeMap::from([("postgres".into(), 7)]));
    assert_eq!(hits(&aggregate(&h, json!({})).await), 300);
}

#[tokio::test]
async fn modes_compute_only_what_is_asked() {
    let h = Harness::start().await;
    h.insert(&many(20)).await;
    let histogram = aggregate(&h, json!({"mode": "histogram"})).await;
    assert_eq!(hits(&histogram), 20);
    assert!(histogram["aggregations"].get("sessionTypes").is_none(), "{histogram}");
    assert!(histogram["aggregations"]["logsOverTime"].as_array().is_some_and(|d| !d.is_empty()));
    let facets = aggregate(&h, json!({"mode": "facets"})).await;
    assert_eq!(hits(&facets), 20);
    assert!(facets["aggregations"].get("logsOverTime").is_none(), "{facets}");
    assert_eq!(buckets(&facets["aggregations"]["sessionTypes"]), BTreeMap::from([("postgres".into(), 20)]));
}

#[tokio::test]
async fn invalid_requests_are_explained() {
    let h = Harness::start().await;
    h.insert(&many(5)).await;
    let now = now_micros();
    let cases = [
        (json!({"histogramInterval": "soon"}), "not a duration"),
        (json!({"histogramInterval": "10ms"}), "too short"),
        (json!({"histogramInterval": "1s", "startTimestamp": format_rfc3339(now - 30 * 24 * 60 * MINUTE)}), "buckets"),
        (json!({"histogramGroupByFields": ["technology", "user.email", "group", "resource.name"]}), "at most 3"),
        (json!({"histogramGroupByFields": ["tecnology"]}), "no such field"),
        (json!({"histogramGroupByFields": ["duration"]}), "cannot group by"),
        (json!({"histogramGroupByFields": ["technology", "technology"]}), "twice"),
        (json!({"query": "user.email:("}), "invalid query"),
        (json!({"startTimestamp": "yesterday"}), "RFC 3339"),
        (json!({"startTimestamp": "0000-12-31T00:00:00Z"}), "year 1 to 9999"),
        (json!({"startTimestamp": format_rfc3339(now), "endTimestamp": format_rfc3339(now - MINUTE)}), "after"),
        (json!({"histogramGroupBy": ["technology"]}), ""),
        (json!({"mode": "garbage"}), "unknown mode \"garbage\": use \"histogram\" or \"facets\""),
        (json!({"mode": "both"}), "unknown mode"),
        (json!({"mode": "Facets"}), "unknown mode"),
    ];
    for (body, words) in cases {
        let message = expect_error(&h.call("ListSessionAggregations", body.clone()).await, 400, "invalid_argument");
        assert!(message.contains(words), "{body}: {message}");
    }
    expect_error(&h.call_with_key("ListSessionAggregations", json!({}), "gh_nope").await, 401, "unauthenticated");
}
