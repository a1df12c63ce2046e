//! The connector service and what it feeds: sessions reported by a
//! connector appear in the API, with transcripts; retries change nothing;
//! silent connectors' sessions are completed; terminations reach the
//! connector's stream at once.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use connectrpc::client::{ClientConfig, HttpClient};
use gatehouse_core::Role;
use gatehouse_core::time::now_micros;
use gatehouse_proto::gatehouse::connector::v1::{self as wire, ConnectorServiceClient, event::Kind};
use gatehouse_server::auth::create_api_key;
use gatehouse_server::convert::{duration, timestamp};
use gatehouse_server::registry::{create_connector, create_resource, replace_connector_key};
use gatehouse_store::postgres::{PgOptions, PgStore};
use gatehouse_store::{KeyReplacement, Store};
use harness::*;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

type Client = ConnectorServiceClient<HttpClient>;

fn client(url: &str, key: &str) -> Client {
    let config = ClientConfig::new(url.parse().unwrap()).with_default_header("x-api-key", key);
    ConnectorServiceClient::new(HttpClient::plaintext(), config)
}

struct Setup {
    h: Harness,
    connector: Client,
    connector_id: String,
    resource_id: String,
}

async fn setup(h: Harness) -> Setup {
    let resource = create_resource(h.store.as_ref(), h.org, "orders-db", "postgres", "127.0.0.1", 5432).await.unwrap();
    let created = create_connector(h.store.as_ref(), h.org, "edge-1").await.unwrap();
    let connector = client(&h.url, &created.key);
    Setup { connector, connector_id: created.id, resource_id: resource.id, h }
}

fn event(session: &str, seq: u64, kind: Kind) -> wire::Event {
    wire::Event { session_id: session.into(), seq, kind: Some(kind), ..Default::default() }
}

fn start(resource_id: &str, at: i64) -> Kind {
    Kind::Start(Box::new(wire::SessionStart {
        start_time: timestamp(at).into(),
        run_id: "run-1".into(),
        resource_id: resource_id.into(),
        client_ip_address: "192.0.2.7".into(),
        server_ip_address: "127.0.0.1".into(),
        username: "app".into(),
        native_username: "app".into(),
        database: "test".into(),
        ..Default::default()
    }))
}

fn statement(text: &str, at: i64) -> Kind {
    Kind::Statement(Box::new(wire::Statement {
        start_time: timestamp(at).into(),
        duration: duration(1500).into(),
        text: text.into(),
        rows: 1,
        bytes_sent: 64,
        ..Default::default()
    }))
}

fn end(at: i64) -> Kind {
    Kind::End(Box::new(wire::SessionEnd {
        end_time: timestamp(at).into(),
        reason: "client".into(),
        ..Default::default()
    }))
}

async fn report(c: &Client, events: Vec<wire::Event>) -> u32 {
    c.report(wire::ReportRequest { events, ..Default::default() }).await.unwrap().into_owned().stored
}

fn heartbeat() -> wire::HeartbeatRequest {
    wire::HeartbeatRequest { run_id: "run-1".into(), ..Default::default() }
}

fn hello(run: &str, previous: &[&str]) -> wire::HelloRequest {
    wire::HelloRequest {
        run_id: run.into(),
        previous_run_ids: previous.iter().map(|run| (*run).to_owned()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn reported_sessions_appear_with_transcripts_and_retries_change_nothing() {
    let s = setup(Harness::start().await).await;
    let hello = s.connector.hello(wire::HelloRequest { run_id: "run-1".into(), ..Default::default() }).await.unwrap();
    let hello = hello.into_owned();
    assert_eq!(hello.connector_id, s.connector_id);
    assert_eq!(hello.resources.len(), 1);
    assert_eq!(hello.resources[0].port, 5432);

    let t0 = now_micros() - 10_000_000;
    let batch = vec![
        event("sess-1", 0, start(&s.resource_id, t0)),
        event("sess-1", 1, statement("select 1", t0 + 1_000)),
        event("sess-1", 2, statement("select\r\n'a\\nb'", t0 + 2_000)),
    ];
    assert_eq!(report(&s.connector, batch.clone()).await, 3);
    assert_eq!(report(&s.connector, batch).await, 0, "a retried batch stores nothing new");

    let (status, body) = s.h.call("GetSession", json!({"session_id": "sess-1"})).await;
    assert_eq!(status, 200, "{body}");
    let session = &body["session"];
    assert_eq!(session["sessionStatus"], "active");
    assert_eq!(session["resource"]["name"], "orders-db");
    assert_eq!(session["connector"]["name"], "edge-1");
    assert_eq!(session["sidecar"]["technology"], "postgres");
    assert_eq!(session["user"]["type"], "native");
    assert_eq!(session["user"]["native"]["username"], "app");
    assert_eq!(session["network"]["clientIpAddress"], "192.0.2.7");

    let (_, transcript) = s.h.call("GetSessionTranscript", json!({"session_id": "sess-1"})).await;
    let lines: Vec<&str> = transcript["transcript"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 2);
    // Line breaks and backslashes are escaped, so a literal backslash-n stays distinguishable.
    assert!(lines[0].ends_with("\tselect 1") && lines[1].ends_with("\tselect\\r\\n'a\\\\nb'"), "{lines:?}");

    assert_eq!(report(&s.connector, vec![event("sess-1", 3, end(t0 + 5_000_000))]).await, 1);
    assert_eq!(report(&s.connector, vec![event("sess-1", 3, end(t0 + 9_000_000))]).await, 0, "ends once");
    let (_, body) = s.h.call("GetSession", json!({"session_id": "sess-1"})).await;
    assert_eq!(body["session"]["sessionStatus"], "completed");
    assert_eq!(body["session"]["duration"], "5s");
}

/// `gatehouse.sessions.v1.StatementsService` gives what the transcript leaves out: each
/// statement's rows, bytes, SQLSTATE, and whether it still runs. (One whose connector was lost
/// while it ran is `unreported`: see the store's conformance tests.)
#[tokio::test]
async fn statements_carry_their_outcomes() {
    let s = setup(Harness::start().await).await;
    let t0 = now_micros() - 10_000_000;
    let Kind::Statement(mut failed) = statement("select 1/0", t0 + 2_000) else { unreachable!() };
    (failed.rows, failed.bytes_sent, failed.sqlstate) = (0, 90, "22012".into());
    let running = Kind::Running(Box::new(wire::StatementRunning {
        start_time: timestamp(t0 + 3_000).into(),
        text: "select pg_sleep(60)".into(),
        ..Default::default()
    }));
    let batch = vec![
        event("sess-1", 0, start(&s.resource_id, t0)),
        event("sess-1", 1, statement("select 1", t0 + 1_000)),
        event("sess-1", 2, Kind::Statement(failed)),
        event("sess-1", 3, running),
    ];
    assert_eq!(report(&s.connector, batch).await, 4);
    let url = format!("{}/gatehouse.sessions.v1.StatementsService/ListSessionStatements", s.h.url);
    let list = |key: String, id: &str| {
        let (h, url, body) = (&s.h, url.clone(), json!({"session_id": id}));
        async move { h.post(&url, body, &key).await }
    };

    let (status, body) = list(s.h.reader_key.clone(), "sess-1").await;
    assert_eq!(status, 200, "{body}");
    let statements = body["statements"].as_array().unwrap();
    let fields = |i: usize, names: &[&str]| names.iter().map(|name| statements[i][name].clone()).collect::<Vec<_>>();
    let names = ["seq", "text", "rows", "bytesSent", "sqlstate", "status", "duration"];
    assert_eq!(
        fields(0, &names),
        [json!("1"), json!("select 1"), json!("1"), json!("64"), json!(null), json!("completed"), json!("0.001500s")]
    );
    assert_eq!(
        fields(1, &names[..6]),
        [json!("2"), json!("select 1/0"), json!(null), json!("90"), json!("22012"), json!("completed")]
    );
    assert_eq!(
        fields(2, &names[..6]),
        [json!("3"), json!("select pg_sleep(60)"), json!(null), json!(null), json!(null), json!("running")]
    );
    let ran = statements[2]["duration"].as_str().unwrap().trim_end_matches('s').parse::<f64>().unwrap();
    assert!((9.0..60.0).contains(&ran), "a running statement lasts until the response: {ran}");

    // In pages, each after the last of the one before; and by Connect GET, as a read.
    let page = |size: i32, token: &str| {
        let (h, url) = (&s.h, url.clone());
        let body = json!({"session_id": "sess-1", "page_size": size, "page_token": token});
        async move { h.post(&url, body, &h.reader_key).await }
    };
    let (status, first) = page(2, "").await;
    assert_eq!(status, 200, "{first}");
    let texts = |body: &serde_json::Value| {
        body["statements"].as_array().unwrap().iter().map(|s| s["text"].clone()).collect::<Vec<_>>()
    };
    assert_eq!(texts(&first), [json!("select 1"), json!("select 1/0")]);
    let token = first["nextPageToken"].as_str().unwrap().to_owned();
    let (_, second) = page(2, &token).await;
    assert_eq!(texts(&second), [json!("select pg_sleep(60)")]);
    assert_eq!(second["statements"][0]["seq"], "3", "numbered by place across pages");
    assert_eq!(second["nextPageToken"], json!(null), "the last page says so: {second}");
    // A token is its session's, and cannot be made up.
    let forged = token.rsplit_once('.').unwrap().0.to_owned() + ".AAAAAAAAAAAAAAAAAAAAAA";
    for bad in [forged.as_str(), "1.2", &token[..token.len() - 1]] {
        let (status, body) = page(2, bad).await;
        assert_eq!((status, &body["code"]), (400, &json!("invalid_argument")), "{bad}: {body}");
    }

    // The running statement completes (a later event) and another follows: numbered 1 to 4,
    // the completed one where it ran.
    let batch = vec![
        event("sess-1", 4, statement("select pg_sleep(60)", t0 + 3_000)),
        event("sess-1", 5, statement("select 2", t0 + 4_000)),
    ];
    assert_eq!(report(&s.connector, batch).await, 2);
    let (_, body) = list(s.h.reader_key.clone(), "sess-1").await;
    let numbered: Vec<_> = body["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["seq"].as_str().unwrap().to_owned(), s["text"].as_str().unwrap().to_owned(), s["status"].clone()))
        .collect();
    let completed = json!("completed");
    assert_eq!(
        numbered,
        [
            ("1".to_owned(), "select 1".to_owned(), completed.clone()),
            ("2".to_owned(), "select 1/0".to_owned(), completed.clone()),
            ("3".to_owned(), "select pg_sleep(60)".to_owned(), completed.clone()),
            ("4".to_owned(), "select 2".to_owned(), completed),
        ]
    );
    expect_error(&page(2, "garbage").await, 400, "invalid_argument");
    expect_error(&page(-1, "").await, 400, "invalid_argument");
    expect_error(&page(100_001, "").await, 400, "invalid_argument");
    let message = json!({"sessionId": "sess-1", "pageSize": 1}).to_string();
    let got =
        s.h.http
            .get(&url)
            .query(&[("encoding", "json"), ("message", message.as_str())])
            .header("X-API-KEY", &s.h.reader_key)
            .send()
            .await
            .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(texts(&got.json().await.unwrap()), [json!("select 1")]);

    // Scoped and checked like the sessions API.
    expect_error(&list(s.h.reader_key.clone(), "nope").await, 404, "not_found");
    expect_error(&list(s.h.reader_key.clone(), " ").await, 400, "invalid_argument");
    expect_error(&list("gh_wrong".into(), "sess-1").await, 401, "unauthenticated");
    let other = s.h.store.ensure_org("globex").await.unwrap().id;
    let other_key = create_api_key(s.h.store.as_ref(), other, "", Role::Admin).await.unwrap().key;
    expect_error(&list(other_key, "sess-1").await, 404, "not_found");
    let created = create_connector(s.h.store.as_ref(), s.h.org, "edge-2").await.unwrap();
    expect_error(&list(created.key, "sess-1").await, 403, "permission_denied");
}

/// A page of statements holds at most 3 MiB of them (a gRPC client takes 4 MiB by default),
/// however many were asked for, and always one; a transcript holds 64 MiB, then says where it
/// stops. Nothing is left out without a token or a mark.
#[tokio::test]
async fn pages_and_transcripts_of_long_statements_are_cut_by_their_text_with_a_mark() {
    let s = setup(Harness::start().await).await;
    let t0 = now_micros() - 10_000_000;
    assert_eq!(report(&s.connector, vec![event("sess-1", 0, start(&s.resource_id, t0))]).await, 1);
    // 70 statements of 1,000,000 bytes, then a short one.
    let long = |seq: u64| format!("select '{}' -- {seq:02}", "x".repeat(999_984));
    let mut texts: Vec<String> = (1..=70).map(long).collect();
    texts.push("select 71".into());
    let events: Vec<_> = texts
        .iter()
        .zip(1u64..)
        .map(|(text, seq)| gatehouse_store::IngestEvent::Statement {
            session_id: "sess-1".into(),
            statement: gatehouse_store::StatementRecord {
                seq,
                start: t0 + seq as i64,
                text: text.clone(),
                ..Default::default()
            },
        })
        .collect();
    assert_eq!(s.h.store.ingest(s.h.org, &s.connector_id, &events).await.unwrap(), 71);

    let url = format!("{}/gatehouse.sessions.v1.StatementsService/ListSessionStatements", s.h.url);
    let (mut token, mut walked, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        let body = json!({"session_id": "sess-1", "page_size": 0, "page_token": token});
        let (status, page) = s.h.post(&url, body, &s.h.reader_key).await;
        assert_eq!(status, 200);
        let statements = page["statements"].as_array().unwrap();
        let text: usize = statements.iter().map(|s| s["text"].as_str().unwrap().len()).sum();
        assert!(text <= 3 << 20, "a page of {} statements, {text} bytes", statements.len());
        walked.extend(statements.iter().map(|s| (s["seq"].clone(), s["text"].as_str().unwrap().to_owned())));
        pages += 1;
        match page["nextPageToken"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    let expected: Vec<_> =
        texts.iter().zip(1..).map(|(text, n): (_, u64)| (json!(n.to_string()), text.clone())).collect();
    assert!(walked == expected, "every statement once, in order, numbered on");
    assert_eq!(pages, 24, "three of 1 MB to a page, the last with the short one too");

    let (_, body) = s.h.call("GetSessionTranscript", json!({"session_id": "sess-1"})).await;
    let transcript = body["transcript"].as_str().unwrap();
    let lines: Vec<&str> = transcript.lines().collect();
    assert_eq!(lines.len(), 68, "the 67 statements that fit in 64 MiB, then the mark");
    assert!(lines[66].ends_with(&texts[66]), "{}", &lines[66][..40]);
    let mark = lines[67].split_once('\t').unwrap().1;
    assert!(mark.starts_with("-- [Gatehouse: the transcript stops here, at 64 MiB"), "{mark}");
    assert!(mark.contains("ListSessionStatements"), "{mark}");
}

/// Values no store could index, or PostgreSQL's text hold, are kept as every store can keep
/// them, so that one report cannot fail on one store and pass on another, or fail forever.
#[tokio::test]
async fn reported_values_are_kept_as_every_store_can_keep_them() {
    let s = setup(Harness::start().await).await;
    let t0 = now_micros() - 10_000_000;
    let Kind::Start(mut long) = start(&s.resource_id, t0) else { unreachable!() };
    long.username = format!("u\0{}", "é".repeat(5000));
    let Kind::Statement(mut huge) = statement("select '\0'", t0 + 1) else { unreachable!() };
    huge.rows = i64::MAX;
    let batch = vec![event("long", 0, Kind::Start(long)), event("long", 1, Kind::Statement(huge.clone()))];
    assert_eq!(report(&s.connector, batch).await, 2);
    let two = vec![event("long", 2, Kind::Statement(huge.clone())), event("long", 3, Kind::Statement(huge))];
    assert_eq!(report(&s.connector, two).await, 2, "totals stay in range");

    let (status, body) = s.h.call("GetSession", json!({"session_id": "long"})).await;
    assert_eq!(status, 200, "{body}");
    let username = body["session"]["user"]["username"].as_str().unwrap();
    assert!(username.starts_with("u\u{FFFD}é") && username.len() <= 1024 && username.len() > 1000, "{username}");
    let (_, transcript) = s.h.call("GetSessionTranscript", json!({"session_id": "long"})).await;
    assert!(transcript["transcript"].as_str().unwrap().contains("select '\u{FFFD}'"), "{transcript}");

    // Times and durations no clock gives are refused, not wrapped.
    let Kind::Statement(mut endless) = statement("select 1", t0 + 2) else { unreachable!() };
    endless.duration = buffa_types::google::protobuf::Duration { seconds: i64::MAX, ..Default::default() }.into();
    let Kind::Statement(mut far) = statement("select 1", t0 + 2) else { unreachable!() };
    far.start_time =
        buffa_types::google::protobuf::Timestamp { seconds: i64::MAX, nanos: 999_999_999, ..Default::default() }.into();
    for bad in [endless, far] {
        let request =
            wire::ReportRequest { events: vec![event("long", 9, Kind::Statement(bad))], ..Default::default() };
        let refused = s.connector.report(request).await.unwrap_err();
        assert_eq!(refused.code, connectrpc::ErrorCode::InvalidArgument, "{refused:?}");
    }

    // A start no connection could have made: another organization's resource, an address or
    // user type that is none, a clock before 2000 or a day ahead.
    let other = s.h.store.ensure_org("globex").await.unwrap().id;
    let foreign = create_resource(s.h.store.as_ref(), other, "theirs", "postgres", "db", 5432).await.unwrap().id;
    let starts: [fn(&mut wire::SessionStart); 5] = [
        |s| s.client_ip_address = "not an ip <script>".into(),
        |s| s.server_ip_address = "::1::".into(),
        |s| s.user_type = "<b>".into(),
        |s| s.start_time = timestamp(-62_135_596_800_000_000).into(),
        |s| s.start_time = timestamp(now_micros() + 2 * 86_400_000_000).into(),
    ];
    let mut bad_starts: Vec<Kind> = starts
        .iter()
        .map(|change| {
            let Kind::Start(mut bad) = start(&s.resource_id, t0) else { unreachable!() };
            change(&mut bad);
            Kind::Start(bad)
        })
        .collect();
    bad_starts.push(start(&foreign, t0));
    for bad in bad_starts {
        let request = wire::ReportRequest { events: vec![event("odd", 0, bad)], ..Default::default() };
        let refused = s.connector.report(request).await.unwrap_err();
        assert_eq!(refused.code, connectrpc::ErrorCode::InvalidArgument, "{refused:?}");
    }
    assert_eq!(s.h.call("GetSession", json!({"session_id": "odd"})).await.0, 404, "nothing was stored");

    for id in ["x".repeat(129), "a\nb".to_owned()] {
        let request =
            wire::ReportRequest { events: vec![event(&id, 0, start(&s.resource_id, t0))], ..Default::default() };
        let refused = s.connector.report(request).await.unwrap_err();
        assert_eq!(refused.code, connectrpc::ErrorCode::InvalidArgument, "{refused:?}");
    }
}

/// A connector whose clock runs ahead reports times that have not come yet: they are moved
/// back together, none after the report's arrival, so a session that ended is listed as
/// completed whatever the order, and keeps its duration.
#[tokio::test]
async fn times_from_a_clock_ahead_are_moved_back_together() {
    let s = setup(Harness::start().await).await;
    let ahead = now_micros() + 600_000_000;
    let events = vec![
        event("ahead", 0, start(&s.resource_id, ahead)),
        event("ahead", 1, statement("select 1", ahead + 1_000)),
        event("ahead", 2, end(ahead + 2_000)),
    ];
    assert_eq!(report(&s.connector, events).await, 3);
    let after = now_micros();
    let (_, body) = s.h.call("GetSession", json!({"session_id": "ahead"})).await;
    let end_time = body["session"]["endTime"].as_str().expect("ended");
    let end = gatehouse_core::time::parse_rfc3339(end_time).unwrap().floor();
    assert!(end <= after, "{end_time} is in the future");
    assert_eq!(body["session"]["duration"], "0.002s", "{body}");
    for sort in ["start_time", "end_time", "duration"] {
        let body = json!({"query": "id:ahead", "sortBy": format!("{sort}:desc")});
        let (_, page) = s.h.call("ListSessionsV2", body).await;
        assert_eq!(page["sessions"][0]["sessionStatus"], "completed", "by {sort}: {page}");
        assert_eq!(page["sessions"][0]["endTime"], end_time, "by {sort}: {page}");
    }
}

#[tokio::test]
async fn keys_stay_in_their_lane() {
    let s = setup(Harness::start().await).await;
    let as_api = client(&s.h.url, &s.h.admin_key);
    let err = as_api.heartbeat(heartbeat()).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::PermissionDenied, "{err}");
    let created = create_connector(s.h.store.as_ref(), s.h.org, "edge-2").await.unwrap();
    let result = s.h.call_with_key("ListSessionsV2", json!({}), &created.key).await;
    expect_error(&result, 403, "permission_denied");
    let bogus = client(&s.h.url, "ghc_AAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    let err = bogus.heartbeat(heartbeat()).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::Unauthenticated);
    // A key of the other kind that is not valid is refused as such, not for its kind.
    let made_up = client(&s.h.url, "gh_AAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    assert_eq!(made_up.heartbeat(heartbeat()).await.unwrap_err().code, connectrpc::ErrorCode::Unauthenticated);
    let result =
        s.h.call_with_key("ListSessionsV2", json!({}), "ghc_AAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB").await;
    expect_error(&result, 401, "unauthenticated");
}

#[tokio::test]
async fn a_replaced_connector_key_stops_at_once() {
    let s = setup(Harness::start().await).await;
    s.connector.heartbeat(heartbeat()).await.unwrap();
    let err = s.connector.heartbeat(wire::HeartbeatRequest::default()).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::InvalidArgument, "a heartbeat names its run: {err}");
    let replaced =
        replace_connector_key(s.h.store.as_ref(), s.h.org, "edge-1", KeyReplacement::Rotate).await.unwrap().unwrap();
    assert_eq!(replaced.id, s.connector_id, "the same connector");
    let err = s.connector.heartbeat(heartbeat()).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::Unauthenticated, "{err}");
    let current = client(&s.h.url, &replaced.key);
    current.heartbeat(heartbeat()).await.unwrap();
    assert!(
        replace_connector_key(s.h.store.as_ref(), s.h.org, "edge-9", KeyReplacement::Rotate).await.unwrap().is_none()
    );

    // Rotated with an overlap, the old key works on until it ends; then it is refused, saying why.
    let until = now_micros() + 1_500_000;
    let newer = replace_connector_key(s.h.store.as_ref(), s.h.org, "edge-1", KeyReplacement::Overlap { until })
        .await
        .unwrap()
        .unwrap();
    current.heartbeat(heartbeat()).await.unwrap();
    client(&s.h.url, &newer.key).heartbeat(heartbeat()).await.unwrap();
    tokio::time::sleep(Duration::from_micros((until - now_micros()).max(0) as u64 + 100_000)).await;
    let err = current.heartbeat(heartbeat()).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::Unauthenticated, "{err}");
    assert!(err.message.as_deref().unwrap_or_default().contains("overlap has ended"), "{err}");
    client(&s.h.url, &newer.key).heartbeat(heartbeat()).await.unwrap();
}

/// A revoked key is told so, and what gives the connector a new one; a key made up with its
/// prefix, or any other, hears only that it is not valid, as before.
#[tokio::test]
async fn a_revoked_connector_key_is_told_to_its_holder_only() {
    let h = Harness::start().await;
    let created = create_connector(h.store.as_ref(), h.org, "edge-1").await.unwrap();
    let connector = client(&h.url, &created.key);
    connector.heartbeat(heartbeat()).await.unwrap();
    let revoke = KeyReplacement::Revoke { at: now_micros() };
    replace_connector_key(h.store.as_ref(), h.org, "edge-1", revoke).await.unwrap().unwrap();
    let err = connector.heartbeat(heartbeat()).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::Unauthenticated, "{err}");
    let told = err.message.unwrap_or_default();
    assert!(told.contains("was revoked") && told.contains("`gatehouse connectors rotate-key`"), "{told}");
    assert!(!told.contains("edge-1") && !told.contains(&created.id), "{told}");
    // The revoked key's prefix with another secret, or a key never issued: not valid, as before.
    let unknown = "the connector key is not valid (never issued, or replaced by `gatehouse connectors rotate-key`): use the connector's latest key, or give it a new one with `gatehouse connectors rotate-key`";
    let prefix = created.key.split('_').nth(1).unwrap();
    let secret_len = created.key.rsplit('_').next().unwrap().len();
    for made_up in
        [format!("ghc_{prefix}_{}", "B".repeat(secret_len)), format!("ghc_AAAAAAAAAA_{}", "B".repeat(secret_len))]
    {
        let err = client(&h.url, &made_up).heartbeat(heartbeat()).await.unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::Unauthenticated, "{err}");
        assert_eq!(err.message.as_deref(), Some(unknown), "{made_up}");
    }
    // Given a new key, the revoked one is an old key like any other: not valid.
    let new = replace_connector_key(h.store.as_ref(), h.org, "edge-1", KeyReplacement::Rotate).await.unwrap().unwrap();
    client(&h.url, &new.key).heartbeat(heartbeat()).await.unwrap();
    let err = connector.heartbeat(heartbeat()).await.unwrap_err();
    assert_eq!(err.message.as_deref(), Some(unknown), "{err}");
}

#[tokio::test]
async fn a_new_run_completes_the_sessions_of_the_runs_it_takes_over_from() {
    let s = setup(Harness::start().await).await;
    let status = |id: &'static str| {
        let h = &s.h;
        async move { h.call("GetSession", json!({"session_id": id})).await.1["session"]["sessionStatus"].clone() }
    };
    s.connector.hello(hello("run-1", &[])).await.unwrap();
    // Sessions start with the run named in their start (`start` names run-1).
    report(&s.connector, vec![event("ghost", 0, start(&s.resource_id, now_micros() - 1_000_000))]).await;
    // Another process with the same key (a replica on a state directory of its own).
    s.connector.hello(hello("replica", &[])).await.unwrap();
    assert_eq!(status("ghost").await, "active", "a replica starting leaves run-1's sessions alone");

    // A session must belong to a run (its own or the report's): it would never end otherwise.
    let mut orphan = event("orphan", 0, start(&s.resource_id, now_micros()));
    if let Some(Kind::Start(start)) = &mut orphan.kind {
        start.run_id.clear();
    }
    let request = wire::ReportRequest { events: vec![orphan.clone()], ..Default::default() };
    let err = s.connector.report(request).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::InvalidArgument, "{err}");
    let request = wire::ReportRequest { events: vec![orphan], run_id: "run-1".into(), ..Default::default() };
    assert_eq!(s.connector.report(request).await.unwrap().into_owned().stored, 1, "the report's run");
    let too_many: Vec<String> = (0..65).map(|i| format!("run-{i}")).collect();
    let names: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let err = s.connector.hello(hello("run-2", &names)).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::InvalidArgument, "{err}");

    let restarted = s.connector.hello(hello("run-2", &["run-1"])).await.unwrap().into_owned();
    assert_eq!(restarted.completed_stale_sessions, 2, "ghost and orphan");
    assert_eq!(status("ghost").await, "completed");
}

/// A new run may say when each run it takes over from was last alive: their sessions end then,
/// though the control plane last heard them earlier (it was down). A time no clock reads is no
/// sign of life, left out rather than refused.
#[tokio::test]
async fn the_runs_taken_over_end_when_they_were_last_alive() {
    let s = setup(Harness::start().await).await;
    s.connector.hello(hello("run-1", &[])).await.unwrap();
    report(&s.connector, vec![event("cut", 0, start(&s.resource_id, now_micros() - 1_000_000))]).await;
    // Of a run never heard, replayed by its successor.
    let mut stray = event("stray", 0, start(&s.resource_id, now_micros() - 2_000_000));
    if let Some(Kind::Start(start)) = &mut stray.kind {
        start.run_id = "run-0".into();
    }
    report(&s.connector, vec![stray]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alive = now_micros() - 100_000;
    let said = |run: &str, at: i64| wire::PreviousRun {
        run_id: run.into(),
        alive_at: timestamp(at).into(),
        ..Default::default()
    };
    // 1999-01-01.
    let request = wire::HelloRequest {
        previous_runs: vec![said("run-1", alive), said("run-0", 915_148_800_000_000)],
        ..hello("run-2", &["run-1", "run-0"])
    };
    assert_eq!(s.connector.hello(request).await.unwrap().into_owned().completed_stale_sessions, 2);
    let session = async |id: &str| s.h.store.get_session(s.h.org, id).await.unwrap().unwrap();
    assert_eq!(session("cut").await.end, Some(alive));
    let stray = session("stray").await;
    assert_eq!(stray.end, Some(stray.start), "when it was last heard: its start");
}

#[tokio::test]
async fn goodbye_ends_the_run_that_says_it() {
    let s = setup(Harness::start().await).await;
    let goodbye = |run: &str| wire::GoodbyeRequest { run_id: run.into(), ..Default::default() };
    s.connector.hello(hello("run-1", &[])).await.unwrap();
    report(&s.connector, vec![event("left", 0, start(&s.resource_id, now_micros() - 1_000_000))]).await;
    let err = s.connector.goodbye(goodbye(" ")).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::InvalidArgument, "a goodbye names its run: {err}");
    let err = client(&s.h.url, &s.h.admin_key).goodbye(goodbye("run-1")).await.unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::PermissionDenied, "an API key ends no run: {err}");
    let status = s.h.call("GetSession", json!({"session_id": "left"})).await.1["session"]["sessionStatus"].clone();
    assert_eq!(status, "active");

    let answer = s.connector.goodbye(goodbye("run-1")).await.unwrap().into_owned();
    assert_eq!(answer.completed_sessions, 1, "a session whose end never came");
    let status = s.h.call("GetSession", json!({"session_id": "left"})).await.1["session"]["sessionStatus"].clone();
    assert_eq!(status, "completed");
    let listed = s.h.store.list_connectors(s.h.org).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.running).sum::<i64>(), 0, "no process left running: {listed:?}");
}

#[tokio::test]
async fn silent_connectors_lose_their_sessions_after_the_lease() {
    let h = Harness::start_with_lease(Duration::from_millis(600)).await;
    let s = setup(h).await;
    let answer = s.connector.hello(hello("run-1", &[])).await.unwrap().into_owned();
    // A lease under a second heartbeats more than once a second; a connector that reads only
    // the seconds heartbeats every second rather than taking 0 for "unsaid".
    assert_eq!((answer.heartbeat_millis, answer.heartbeat_seconds), (200, 1));
    report(&s.connector, vec![event("quiet", 0, start(&s.resource_id, now_micros()))]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = s.h.call("GetSession", json!({"session_id": "quiet"})).await;
        if body["session"]["sessionStatus"] == "completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ghost session was never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The connector may only be cut off, its session live behind the partition: a termination
    // asked now is recorded, and reaches the connector when it is heard again (rv23: refused
    // as `failed_precondition`, the client ran on).
    let request = json!({"session_id": "quiet", "connector_id": s.connector_id});
    let (status, body) = s.h.call_with_key("CreateSessionTermination", request.clone(), &s.h.admin_key).await;
    assert_eq!(status, 200, "{body}");
    s.connector.heartbeat(heartbeat()).await.unwrap();
    let mut stream = s.connector.watch_terminations(wire::WatchTerminationsRequest::default()).await.unwrap();
    let received = next_termination(&mut stream, Duration::from_secs(2)).await.expect("sent as the stream opens");
    assert_eq!(received.unwrap().expect("a termination").session_id, "quiet");

    // A successor run completes it for good: nothing is left to terminate.
    s.connector.hello(hello("run-2", &["run-1"])).await.unwrap();
    let (_, body) = s.h.call("GetSession", json!({"session_id": "quiet"})).await;
    assert_eq!(body["session"]["sessionStatus"], "completed");
    let taken_over = s.h.call_with_key("CreateSessionTermination", request, &s.h.admin_key).await;
    expect_error(&taken_over, 400, "failed_precondition");
}

/// A fresh PostgreSQL database, owned by a role of its own so that it can be refused the
/// database as the review did (superusers are never refused): dropped, role too, with this
/// guard. Named like the store tests' databases, whose cleanup of day-old leftovers covers it.
struct OwnDatabase {
    name: String,
}

impl OwnDatabase {
    const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    fn admin_options() -> PgConnectOptions {
        let url = std::env::var("GATEHOUSE_TEST_DATABASE_URL").unwrap_or_else(|_| Self::ADMIN_URL.into());
        url.parse().expect("GATEHOUSE_TEST_DATABASE_URL is a PostgreSQL URL")
    }

    /// Runs `statements` on the admin connection.
    async fn admin(statements: &[String]) {
        let mut admin = PgConnection::connect_with(&Self::admin_options())
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL (set GATEHOUSE_TEST_DATABASE_URL): {e}"));
        for statement in statements {
            admin.execute(statement.as_str()).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        let _ = admin.close().await;
    }

    async fn create() -> Self {
        let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let name = format!("gh_test_{seconds}_{}_lease", std::process::id());
        Self::admin(&[format!("CREATE ROLE {name} LOGIN"), format!("CREATE DATABASE {name} OWNER {name}")]).await;
        Self { name }
    }

    /// The store, connected as the database's own role.
    async fn store(&self) -> Arc<dyn Store> {
        let options = Self::admin_options().database(&self.name).username(&self.name);
        Arc::new(PgStore::connect_with(options, PgOptions::default()).await.unwrap())
    }

    /// Refuses the role new connections, and ends those it has.
    async fn refuse(&self) {
        let name = &self.name;
        Self::admin(&[
            format!("REVOKE CONNECT ON DATABASE {name} FROM PUBLIC, {name}"),
            format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"),
        ])
        .await;
    }

    async fn admit(&self) {
        Self::admin(&[format!("GRANT CONNECT ON DATABASE {0} TO {0}", self.name)]).await;
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(Self::admin(&[
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                format!("DROP ROLE IF EXISTS {name}"),
            ]));
        })
        .join();
    }
}

/// A store that refuses the control plane for longer than the lease takes no connector for
/// gone when it answers again, though its refusal (CONNECT revoked, as a review did) is neither
/// "unreachable" nor "timed out": the sweep's own failed passes hold it off a lease from the
/// store's return, so a connector still heartbeating keeps its session. One that then falls
/// silent loses it a lease later.
#[tokio::test]
async fn a_store_refusing_the_control_plane_past_the_lease_completes_no_live_session() {
    const LEASE: Duration = Duration::from_secs(3);
    let db = OwnDatabase::create().await;
    let s = setup(Harness::start_on(db.store().await, LEASE).await).await;
    s.connector.hello(hello("run-1", &[])).await.unwrap();
    report(&s.connector, vec![event("live", 0, start(&s.resource_id, now_micros()))]).await;
    let status = async || {
        let (_, body) = s.h.call("GetSession", json!({"session_id": "live"})).await;
        body["session"]["sessionStatus"].as_str().map(str::to_owned)
    };
    // Past the hold that follows the start, the sweep completes what it finds silent.
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    s.connector.heartbeat(heartbeat()).await.unwrap();

    db.refuse().await;
    tokio::time::sleep(LEASE * 2).await;
    db.admit().await;
    // Heartbeats come a while after the store is back (the connector retries at its own pace).
    let back = tokio::time::Instant::now();
    while back.elapsed() < LEASE / 2 {
        assert_ne!(status().await.as_deref(), Some("completed"), "{:?} after the store came back", back.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.connector.heartbeat(heartbeat()).await.unwrap();
    assert_eq!(status().await.as_deref(), Some("active"));

    // Silent from now, the connector is taken for gone a lease later.
    let silent = tokio::time::Instant::now();
    while status().await.as_deref() != Some("completed") {
        assert!(silent.elapsed() < LEASE * 3, "the session of a silent connector was never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The termination stream's next message that is not a keepalive (a termination that names
/// no session), or its end; `None` if there is none within `wait`.
async fn next_termination(
    stream: &mut connectrpc::client::ServerStream<
        <HttpClient as connectrpc::client::ClientTransport>::ResponseBody,
        wire::TerminationView<'static>,
    >,
    wait: Duration,
) -> Option<Result<Option<wire::Termination>, connectrpc::ConnectError>> {
    tokio::time::timeout(wait, async {
        loop {
            match stream.message().await {
                Ok(Some(message)) if message.session_id().is_empty() => continue,
                other => return other.map(|message| message.map(|m| m.to_owned_message())),
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn terminations_reach_the_connector_stream_at_once() {
    let s = setup(Harness::start().await).await;
    report(&s.connector, vec![event("live", 0, start(&s.resource_id, now_micros()))]).await;
    let mut stream = s.connector.watch_terminations(wire::WatchTerminationsRequest::default()).await.unwrap();

    let request = json!({"session_id": "live", "connector_id": s.connector_id});
    expect_error(&s.h.call("CreateSessionTermination", request.clone()).await, 403, "permission_denied");
    let asked = std::time::Instant::now();
    let (status, body) = s.h.call_with_key("CreateSessionTermination", request.clone(), &s.h.admin_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessionShutdown"]["sessionId"], "live");
    assert_eq!(body["sessionShutdown"]["connectorId"], s.connector_id);
    assert!(body["sessionShutdown"]["createdAt"].is_string());

    let received = next_termination(&mut stream, Duration::from_secs(1)).await.expect("within a second");
    let termination = received.unwrap().expect("a termination");
    assert_eq!(termination.session_id, "live");
    assert!(termination.termination_id.starts_with("term_"));
    assert!(asked.elapsed() < Duration::from_secs(1));
    // Asked again while on its way (the older name too): the same termination, not another.
    let (status, again) = s.h.call_with_key("CancelSession", request, &s.h.admin_key).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["sessionShutdown"], body["sessionShutdown"]);
    assert!(next_termination(&mut stream, Duration::from_millis(200)).await.is_none(), "sent once");

    let other = json!({"session_id": "nope", "connector_id": s.connector_id});
    expect_error(&s.h.call_with_key("CancelSession", other, &s.h.admin_key).await, 404, "not_found");
    report(&s.connector, vec![event("live", 1, end(now_micros()))]).await;
    let done = json!({"session_id": "live", "connector_id": s.connector_id});
    expect_error(&s.h.call_with_key("CancelSession", done, &s.h.admin_key).await, 400, "failed_precondition");
}

/// A quiet stream says at once, then every second, that it is alive, with a termination naming
/// no session: a connector that stops hearing it takes the replica for hung.
#[tokio::test]
async fn a_quiet_termination_stream_says_it_is_alive() {
    let s = setup(Harness::start().await).await;
    let mut stream = s.connector.watch_terminations(wire::WatchTerminationsRequest::default()).await.unwrap();
    for wait in [200, 3000] {
        let alive = tokio::time::timeout(Duration::from_millis(wait), stream.message()).await.expect("said in time");
        assert_eq!(alive.unwrap().expect("a message").to_owned_message(), wire::Termination::default());
    }
}

/// `CancelSession`, the older name, may leave out the connector (the spec requires it only of
/// `CreateSessionTermination`): the session's own is taken. One given must still be the session's.
#[tokio::test]
async fn cancel_session_without_a_connector_takes_the_sessions_own() {
    let s = setup(Harness::start().await).await;
    report(&s.connector, vec![event("live", 0, start(&s.resource_id, now_micros()))]).await;
    let mut stream = s.connector.watch_terminations(wire::WatchTerminationsRequest::default()).await.unwrap();
    let session_alone = json!({"sessionId": "live"});

    expect_error(&s.h.call("CancelSession", session_alone.clone()).await, 403, "permission_denied");
    let newer = s.h.call_with_key("CreateSessionTermination", session_alone.clone(), &s.h.admin_key).await;
    let message = expect_error(&newer, 400, "invalid_argument");
    assert!(message.contains("connector_id"), "{message}");
    let elsewhere = json!({"sessionId": "live", "connectorId": "con_other"});
    let message =
        expect_error(&s.h.call_with_key("CancelSession", elsewhere, &s.h.admin_key).await, 400, "invalid_argument");
    assert!(message.contains(&s.connector_id), "names the session's connector: {message}");
    let other_org = s.h.store.ensure_org("globex").await.unwrap().id;
    let other_admin = create_api_key(s.h.store.as_ref(), other_org, "", Role::Admin).await.unwrap().key;
    expect_error(&s.h.call_with_key("CancelSession", session_alone.clone(), &other_admin).await, 404, "not_found");
    let unknown = json!({"sessionId": "nope"});
    expect_error(&s.h.call_with_key("CancelSession", unknown, &s.h.admin_key).await, 404, "not_found");
    let message =
        expect_error(&s.h.call_with_key("CancelSession", json!({}), &s.h.admin_key).await, 400, "invalid_argument");
    assert!(message.contains("session_id"), "{message}");

    let (status, body) = s.h.call_with_key("CancelSession", session_alone.clone(), &s.h.admin_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessionShutdown"]["sessionId"], "live");
    assert_eq!(body["sessionShutdown"]["connectorId"], s.connector_id);
    let received = next_termination(&mut stream, Duration::from_secs(1)).await.expect("within a second");
    assert_eq!(received.unwrap().expect("a termination").session_id, "live");

    report(&s.connector, vec![event("live", 1, end(now_micros()))]).await;
    expect_error(&s.h.call_with_key("CancelSession", session_alone, &s.h.admin_key).await, 400, "failed_precondition");
}

/// A stream lasts as long as its connector: a key revoked while it is open ends it, as the key
/// is refused for any other call.
#[tokio::test]
async fn revoking_the_key_ends_its_open_termination_stream() {
    let s = setup(Harness::start().await).await;
    let mut stream = s.connector.watch_terminations(wire::WatchTerminationsRequest::default()).await.unwrap();
    assert!(next_termination(&mut stream, Duration::from_millis(300)).await.is_none(), "open, quiet");
    let revoked = KeyReplacement::Revoke { at: now_micros() };
    replace_connector_key(s.h.store.as_ref(), s.h.org, "edge-1", revoked).await.unwrap().unwrap();
    let ended = next_termination(&mut stream, Duration::from_secs(15)).await.expect("the stream ends");
    let Err(error) = ended else { panic!("ended by the refusal") };
    assert_eq!(error.code, connectrpc::ErrorCode::Unauthenticated, "{error:?}");
}

#[tokio::test]
async fn shutting_down_ends_the_termination_streams_cleanly() {
    let mut s = setup(Harness::start().await).await;
    let mut stream = s.connector.watch_terminations(wire::WatchTerminationsRequest::default()).await.unwrap();
    let serving = s.h.shut_down();
    // Streams never end by themselves: without the server ending them, this waits forever.
    let ended = next_termination(&mut stream, Duration::from_secs(10)).await.expect("the stream ends");
    assert!(ended.expect("an end, not an error").is_none());
    tokio::time::timeout(Duration::from_secs(10), serving).await.expect("serve returns").unwrap();
}

/// `/metrics` counts the API's calls by method and outcome (refused ones too), their latency,
/// and the events connectors stored; it names no organization, key or session.
#[tokio::test]
async fn metrics_count_calls_by_outcome_and_what_connectors_stored() {
    let s = setup(Harness::start().await).await;
    let t0 = now_micros() - 10_000_000;
    let batch = vec![event("sess-m", 0, start(&s.resource_id, t0)), event("sess-m", 1, statement("select 1", t0))];
    assert_eq!(report(&s.connector, batch.clone()).await, 2);
    assert_eq!(report(&s.connector, batch).await, 0, "a retry stores nothing");
    assert_eq!(s.h.call("GetSession", json!({"session_id": "sess-m"})).await.0, 200);
    assert_eq!(s.h.call("GetSession", json!({"session_id": "nope"})).await.0, 404);
    assert_eq!(s.h.call_with_key("GetSession", json!({"session_id": "sess-m"}), "gh_wrong").await.0, 401);

    let response = s.h.http.get(format!("{}/metrics", s.h.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let get = r#"service="core.v1.SessionsService",method="GetSession""#;
    for line in [
        format!(r#"gatehouse_api_calls_total{{{get},code="ok"}} 1"#),
        format!(r#"gatehouse_api_calls_total{{{get},code="not_found"}} 1"#),
        format!(r#"gatehouse_api_calls_total{{{get},code="unauthenticated"}} 1"#),
        format!(r#"gatehouse_api_call_duration_seconds_count{{{get}}} 3"#),
        r#"gatehouse_api_calls_total{service="gatehouse.connector.v1.ConnectorService",method="Report",code="ok"} 2"#
            .to_owned(),
        "gatehouse_events_stored_total 2".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
    // Process-wide counts (other tests verify identities too): each outcome has its line.
    for outcome in ["allowed", "bad_token", "role_not_allowed", "no_role"] {
        let line = format!(r#"gatehouse_identity_verifications_total{{outcome="{outcome}"}} "#);
        assert!(text.lines().any(|l| l.starts_with(&line)), "{line} not in:\n{text}");
    }
    assert!(!text.contains("sess-m") && !text.contains(&s.h.reader_key[..10]), "{text}");
}
