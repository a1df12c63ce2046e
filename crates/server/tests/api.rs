//! The sessions API as an outside client meets it: real HTTP against a real
//! server and store.

mod harness;

use std::io::Write;

use buffa::Message;
use gatehouse_core::Role;
use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_proto::core::v1::{ListSessionsV2Request, ListSessionsV2Response};
use gatehouse_server::auth::create_api_key;
use harness::*;
use serde_json::json;

#[tokio::test]
async fn json_follows_the_public_shape() {
    let h = Harness::start().await;
    h.insert(&[session("done", 30, Some(2), "alice@example.com"), session("live", 10, None, "bob@example.com")]).await;
    let (status, body) = h.call("ListSessionsV2", json!({"limit": 5})).await;
    assert_eq!(status, 200, "{body}");
    let done = body["sessions"].as_array().unwrap().iter().find(|s| s["id"] == "done").unwrap();
    assert!(done["startTime"].as_str().unwrap().ends_with('Z'), "{done}");
    assert_eq!(done["duration"], "120s");
    assert_eq!(done["sessionStatus"], "completed");
    assert_eq!(done["user"]["formal"]["user"]["email"], "alice@example.com");
    assert_eq!(done["user"]["native"]["username"], "app_rw");
    assert_eq!(done["resource"]["technology"], "postgres");
    assert!(done.get("parentSessionId").is_none(), "empty fields are omitted: {done}");
    assert_eq!(body["listMetadata"]["count"], 2);

    let live = body["sessions"].as_array().unwrap().iter().find(|s| s["id"] == "live").unwrap();
    assert!(live.get("endTime").is_none());
    assert_eq!(live["sessionStatus"], "active");
    let elapsed: f64 = live["duration"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    assert!((599.0..700.0).contains(&elapsed), "active duration is elapsed time: {elapsed}");
}

#[tokio::test]
async fn get_session_and_its_errors() {
    let h = Harness::start().await;
    h.insert(&[session("one", 5, Some(1), "a@example.com")]).await;
    let (status, body) = h.call("GetSession", json!({"session_id": "one"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["session"]["id"], "one");
    expect_error(&h.call("GetSession", json!({"sessionId": "two"})).await, 404, "not_found");
    expect_error(&h.call("GetSession", json!({})).await, 400, "invalid_argument");
}

#[tokio::test]
async fn a_session_uuid_is_found_in_any_case() {
    // As `id:` queries find it: connectors write UUIDs in lowercase, people paste them in either.
    let h = Harness::start().await;
    let id = "0192f3a4-7b1e-7c3d-9a2b-1f2e3d4c5b6a";
    h.insert(&[session(id, 5, None, "a@example.com")]).await;
    let upper = id.to_ascii_uppercase();
    let (status, body) = h.call("GetSession", json!({"session_id": upper})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["id"], id);
    let (status, body) = h.call("GetSessionTranscript", json!({"session_id": upper})).await;
    assert_eq!(status, 200, "{body}");
    let request = json!({"session_id": upper, "connector_id": "con_1"});
    let (status, body) = h.call_with_key("CreateSessionTermination", request, &h.admin_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessionShutdown"]["sessionId"], id, "the shutdown names the session as stored");
    // Only UUIDs: other ids are compared as written.
    h.insert(&[session("Mixed", 5, Some(1), "a@example.com")]).await;
    expect_error(&h.call("GetSession", json!({"session_id": "mixed"})).await, 404, "not_found");
    // A UUID stored in capitals (another writer's) is still found as written.
    let shouting = "0192F3A4-7B1E-7C3D-9A2B-1F2E3D4C5B6B";
    h.insert(&[session(shouting, 5, Some(1), "a@example.com")]).await;
    let (status, body) = h.call("GetSession", json!({"session_id": shouting})).await;
    assert_eq!((status, body["session"]["id"].as_str()), (200, Some(shouting)), "{body}");
}

#[tokio::test]
async fn binary_proto_requests() {
    let h = Harness::start().await;
    h.insert(&many(5)).await;
    let request = ListSessionsV2Request { limit: 3, ..Default::default() };
    let response = h
        .http
        .post(h.method_url("ListSessionsV2"))
        .header("Content-Type", "application/proto")
        .header("X-API-KEY", &h.reader_key)
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/proto");
    let decoded = ListSessionsV2Response::decode_from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded.sessions.len(), 3);
    assert_eq!(decoded.list_metadata.count, 3);
    assert!(!decoded.list_metadata.next_cursor.is_empty());
}

#[tokio::test]
async fn connect_get_for_read_methods() {
    let h = Harness::start().await;
    h.insert(&many(3)).await;
    let response = h
        .http
        .get(h.method_url("ListSessionsV2"))
        .query(&[("encoding", "json"), ("message", r#"{"limit":2}"#)])
        .header("X-API-KEY", &h.reader_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn gzip_request_and_response() {
    let h = Harness::start().await;
    h.insert(&many(50)).await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(br#"{"limit": 40}"#).unwrap();
    let response = h
        .http
        .post(h.method_url("ListSessionsV2"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .header("Accept-Encoding", "gzip")
        .header("X-API-KEY", &h.reader_key)
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let body = std::io::read_to_string(flate2::read::GzDecoder::new(&response.bytes().await.unwrap()[..])).unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["listMetadata"]["count"], 40);
}

#[tokio::test]
async fn grpc_web_framing() {
    let h = Harness::start().await;
    h.insert(&many(4)).await;
    let message = ListSessionsV2Request { limit: 2, ..Default::default() }.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let response = h
        .http
        .post(h.method_url("ListSessionsV2"))
        .header("Content-Type", "application/grpc-web+proto")
        .header("X-API-KEY", &h.reader_key)
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(body[0], 0, "first frame is the message");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let decoded = ListSessionsV2Response::decode_from_slice(&body[5..5 + len]).unwrap();
    assert_eq!(decoded.sessions.len(), 2);
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]);
    assert!(trailers.replace(' ', "").contains("grpc-status:0"), "{trailers}");
}

#[tokio::test]
async fn authentication_and_roles() {
    let h = Harness::start().await;
    let body = json!({});
    let url = h.method_url("ListSessionsV2");
    let missing = h.http.post(&url).header("Content-Type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(missing.status(), 401);
    for key in ["", "nonsense", "gh_AAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"] {
        expect_error(&h.call_with_key("ListSessionsV2", body.clone(), key).await, 401, "unauthenticated");
    }
    // A real prefix with a wrong secret is still unknown.
    let last = if h.reader_key.ends_with('x') { "y" } else { "x" };
    let forged = format!("{}{last}", &h.reader_key[..h.reader_key.len() - 1]);
    let message = expect_error(&h.call_with_key("ListSessionsV2", body.clone(), &forged).await, 401, "unauthenticated");
    assert!(!message.contains(&forged), "errors never echo keys");

    let bearer = h
        .http
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {}", h.reader_key))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    // Two different keys are refused alike, whichever of them is the valid one.
    let both = |api_key: &str, bearer: &str| {
        h.http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-API-KEY", api_key)
            .header("Authorization", format!("Bearer {bearer}"))
            .body("{}")
            .send()
    };
    for (api_key, bearer) in [(h.reader_key.as_str(), "gh_invalid"), ("gh_invalid", h.reader_key.as_str())] {
        let response = both(api_key, bearer).await.unwrap();
        assert_eq!(response.status(), 401, "{api_key} and {bearer}");
        let message = response.json::<serde_json::Value>().await.unwrap()["message"].to_string();
        assert!(message.contains("more than one API key"), "{message}");
    }
    assert_eq!(both(&h.reader_key, &h.reader_key).await.unwrap().status(), 200, "the same key in both");

    let termination = json!({"session_id": "s", "connector_id": "c"});
    expect_error(&h.call("CreateSessionTermination", termination.clone()).await, 403, "permission_denied");
    expect_error(&h.call("CancelSession", termination).await, 403, "permission_denied");

    let prefix = h.reader_key.split('_').nth(1).unwrap();
    assert!(h.store.revoke_api_key(h.org, prefix, now_micros()).await.unwrap());
    let revoked = expect_error(&h.call("ListSessionsV2", body).await, 401, "unauthenticated");
    assert!(revoked.contains("revoked"), "{revoked}");
}

/// `gatehouse.keys.v1.KeysService/GetCallerKey` tells a key's holder whose sessions it reads
/// and what it may do, without trying (the console asks it): never the secret.
#[tokio::test]
async fn the_caller_learns_its_key_and_organization() {
    let h = Harness::start().await;
    let url = format!("{}/gatehouse.keys.v1.KeysService/GetCallerKey", h.url);
    let prefix = |key: &str| key.split('_').nth(1).unwrap().to_owned();
    for (key, role) in [(&h.reader_key, "reader"), (&h.admin_key, "admin")] {
        let (status, body) = h.post(&url, json!({}), key).await;
        assert_eq!(status, 200, "{body}");
        let expected = json!({"organization": "acme", "role": role, "prefix": prefix(key), "name": role});
        assert_eq!(body, expected, "the harness names each key after its role");
    }
    // Another organization's key is told its own; an empty name is left out, as proto3 JSON does.
    let other = h.store.ensure_org("globex").await.unwrap().id;
    let other_key = create_api_key(h.store.as_ref(), other, "", Role::Reader).await.unwrap().key;
    let (status, body) = h.post(&url, json!({}), &other_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"organization": "globex", "role": "reader", "prefix": prefix(&other_key)}));
    // A read: Connect GET too.
    let got = h
        .http
        .get(&url)
        .query(&[("encoding", "json"), ("message", "{}")])
        .header("X-API-KEY", &h.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<serde_json::Value>().await.unwrap()["role"], "admin");

    // Refused as every method of the API refuses them.
    let connector = gatehouse_server::registry::create_connector(h.store.as_ref(), h.org, "edge").await.unwrap();
    expect_error(&h.post(&url, json!({}), &connector.key).await, 403, "permission_denied");
    expect_error(&h.post(&url, json!({}), "").await, 401, "unauthenticated");
    let missing = h.http.post(&url).header("Content-Type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let last = if h.reader_key.ends_with('x') { "y" } else { "x" };
    let forged = format!("{}{last}", &h.reader_key[..h.reader_key.len() - 1]);
    expect_error(&h.post(&url, json!({}), &forged).await, 401, "unauthenticated");
    expect_error(&h.post(&url, json!({"organization": "globex"}), &h.reader_key).await, 400, "invalid_argument");
    assert!(h.store.revoke_api_key(h.org, &prefix(&h.reader_key), now_micros()).await.unwrap());
    expect_error(&h.post(&url, json!({}), &h.reader_key).await, 401, "unauthenticated");
}

#[tokio::test]
async fn terminating_a_session_no_registered_connector_carries_ends_it_at_once() {
    // As `gatehouse seed` and the demo make them: their connector `con_1` was never registered.
    let h = Harness::start().await;
    h.insert(&[session("live", 5, None, "alice@example.com")]).await;
    let request = json!({"session_id": "live", "connector_id": "con_1"});
    let (status, body) = h.call_with_key("CreateSessionTermination", request.clone(), &h.admin_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessionShutdown"]["sessionId"], "live");
    let (_, body) = h.call("GetSession", json!({"session_id": "live"})).await;
    assert_eq!(body["session"]["sessionStatus"], "completed", "{body}");
    expect_error(&h.call_with_key("CancelSession", request, &h.admin_key).await, 400, "failed_precondition");
}

#[tokio::test]
async fn organizations_never_see_each_other() {
    let h = Harness::start().await;
    h.insert(&many(20)).await;
    let other = h.store.ensure_org("globex").await.unwrap().id;
    let other_key = create_api_key(h.store.as_ref(), other, "", Role::Admin).await.unwrap().key;
    let (status, body) = h.call_with_key("ListSessionsV2", json!({"query": "alice"}), &other_key).await;
    assert_eq!(status, 200);
    // proto3 JSON omits zero values: no sessions, count 0.
    assert!(body["listMetadata"].get("count").is_none(), "{body}");
    assert!(body.get("sessions").is_none());
    expect_error(&h.call_with_key("GetSession", json!({"session_id": "s00001"}), &other_key).await, 404, "not_found");
    // A cursor of one organization is refused by another, as not valid for this request: the
    // same message as for another query, which says nothing of the organization it came from.
    let (_, meta) = h.list(json!({"limit": 5})).await;
    let foreign =
        h.call_with_key("ListSessionsV2", json!({"limit": 5, "cursor": meta["nextCursor"]}), &other_key).await;
    let message = expect_error(&foreign, 400, "invalid_argument");
    assert!(message.contains("not valid for this request") && message.contains("organization"), "{message}");
    let other_query = h.call("ListSessionsV2", json!({"limit": 5, "query": "x", "cursor": meta["nextCursor"]})).await;
    assert_eq!(expect_error(&other_query, 400, "invalid_argument"), message);
}

#[tokio::test]
async fn invalid_requests_are_explained() {
    let h = Harness::start().await;
    let cases = [
        json!({"limit": -1}),
        json!({"limit": 100_001}),
        json!({"unknownField": 1}),
        json!({"query": "duration:abc"}),
        json!({"query": "client_ip:not-an-ip"}),
        json!({"query": "nosuchfield:x"}),
        json!({"query": "(unclosed"}),
        json!({"sortBy": "name"}),
        json!({"sortBy": "start_time:sideways"}),
        json!({"sortBy": ":asc"}),
        json!({"query": "user:alice\""}),
        json!({"startTimestamp": "yesterday"}),
        json!({"startTimestamp": "2024-02-01T00:00:00Z", "endTimestamp": "2024-01-01T00:00:00Z"}),
        json!({"cursor": "garbage"}),
        // Proto3 JSON is an object: serde would otherwise take an array field by field.
        json!([1, "status:active"]),
        json!([]),
        json!("limit"),
    ];
    for case in cases {
        let message = expect_error(&h.call("ListSessionsV2", case.clone()).await, 400, "invalid_argument");
        assert!(message.len() > 15, "{case}: {message}");
    }
    let big = "a".repeat(5 * 1024 * 1024);
    let response = h
        .http
        .post(h.method_url("ListSessionsV2"))
        .header("Content-Type", "application/json")
        .header("X-API-KEY", &h.reader_key)
        .body(big)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
}

#[tokio::test]
async fn requests_in_a_form_the_api_does_not_take_say_what_it_takes() {
    let h = Harness::start().await;
    // curl -d without a Content-Type sends a form.
    for content_type in [Some("application/x-www-form-urlencoded"), Some("text/plain"), None] {
        let mut request = h.http.post(h.method_url("ListSessionsV2")).header("X-API-KEY", &h.reader_key).body("{}");
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415);
        assert!(response.headers().contains_key("accept-post"));
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["code"], "invalid_argument", "{content_type:?}");
        assert!(error["message"].as_str().unwrap().contains("application/json"), "{error}");
    }
    let url = format!("{}?encoding=json&message=%7B%7D", h.method_url("CreateSessionTermination"));
    let response = h.http.get(url).header("X-API-KEY", &h.admin_key).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn limit_defaults_and_bounds() {
    let h = Harness::start().await;
    h.insert(&many(130)).await;
    assert_eq!(h.list(json!({})).await.0.len(), 100);
    assert_eq!(h.list(json!({"limit": 0})).await.0.len(), 100);
    assert_eq!(h.list(json!({"limit": 1})).await.0.len(), 1);
    assert_eq!(h.list(json!({"limit": 100000})).await.0.len(), 130);
}

/// Walks every page; returns the ids in order.
async fn walk(h: &Harness, body: serde_json::Value) -> Vec<String> {
    let mut all = Vec::new();
    let mut body = body;
    let mut first = true;
    loop {
        let (ids, meta) = h.list(body.clone()).await;
        assert_eq!(meta["count"].as_u64().unwrap_or(0) as usize, ids.len());
        assert_eq!(meta["after"], meta["nextCursor"]);
        assert_eq!(first, meta.get("before").is_none(), "before is empty only on the first page: {meta}");
        first = false;
        all.extend(ids);
        match meta["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => body["cursor"] = json!(next),
            _ => return all,
        }
    }
}

#[tokio::test]
async fn paging_returns_every_session_once_while_new_ones_arrive() {
    let h = Harness::start().await;
    let existing = many(250);
    h.insert(&existing).await;
    let store = h.store.clone();
    let org = h.org;
    let writer = tokio::spawn(async move {
        for i in 0..40 {
            let fresh = session(&format!("new{i:03}"), 0, None, "late@example.com");
            store.insert_sessions(org, &[fresh]).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let walked = walk(&h, json!({"limit": 7})).await;
    writer.await.unwrap();
    let mut expected: Vec<String> = existing.iter().map(|s| s.id.clone()).collect();
    expected.reverse();
    let old: Vec<String> = walked.iter().filter(|id| id.starts_with('s')).cloned().collect();
    assert_eq!(old, expected, "every existing session exactly once, newest first");
}

#[tokio::test]
async fn every_sort_order_pages_consistently() {
    let h = Harness::start().await;
    h.insert(&many(60)).await;
    for sort in ["start_time", "start_time:asc", "end_time:desc", "end_time:asc", "duration:desc", "duration:asc"] {
        let one_page = h.list(json!({"limit": 1000, "sortBy": sort})).await.0;
        assert_eq!(one_page.len(), 60);
        assert_eq!(walk(&h, json!({"limit": 9, "sortBy": sort})).await, one_page, "{sort}");
    }
    // A field in any case, as a direction is.
    for (spelled, canonical) in
        [("START_TIME:ASC", "start_time:asc"), ("endTime", "end_time"), ("Duration:Asc", "duration:asc")]
    {
        let want = h.list(json!({"limit": 1000, "sortBy": canonical})).await.0;
        assert_eq!(h.list(json!({"limit": 1000, "sortBy": spelled})).await.0, want, "{spelled}");
    }
    // Durations come back ordered, active sessions by their elapsed time.
    let (_, body) = h.call("ListSessionsV2", json!({"limit": 1000, "sortBy": "duration:desc"})).await;
    let durations: Vec<f64> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["duration"].as_str().unwrap().trim_end_matches('s').parse().unwrap())
        .collect();
    assert!(durations.windows(2).all(|w| w[0] >= w[1] - 1.0), "{durations:?}");
}

#[tokio::test]
async fn before_cursor_returns_the_previous_page() {
    let h = Harness::start().await;
    h.insert(&many(30)).await;
    let (first, meta1) = h.list(json!({"limit": 10})).await;
    let (second, meta2) = h.list(json!({"limit": 10, "cursor": meta1["nextCursor"]})).await;
    assert_ne!(first, second);
    let (back, meta_back) = h.list(json!({"limit": 10, "cursor": meta2["before"]})).await;
    assert_eq!(back, first);
    assert!(meta_back.get("before").is_none(), "the first page has no before: {meta_back}");
    let (forward_again, _) = h.list(json!({"limit": 10, "cursor": meta_back["after"]})).await;
    assert_eq!(forward_again, second);
}

#[tokio::test]
async fn cursors_are_bound_to_their_listing() {
    let h = Harness::start().await;
    h.insert(&many(30)).await;
    let (_, meta) = h.list(json!({"limit": 5, "query": "alice"})).await;
    let cursor = meta["nextCursor"].as_str().unwrap().to_owned();
    for other in [
        json!({"limit": 5, "query": "bob", "cursor": cursor}),
        json!({"limit": 5, "query": "alice", "sortBy": "duration", "cursor": cursor}),
        json!({"limit": 5, "query": "alice", "startTimestamp": "2020-01-01T00:00:00Z", "cursor": cursor}),
    ] {
        expect_error(&h.call("ListSessionsV2", other).await, 400, "invalid_argument");
    }
    // Changing the page size mid-walk is fine.
    assert_eq!(h.list(json!({"limit": 3, "query": "alice", "cursor": cursor})).await.0.len(), 3);
    let mut tampered = cursor.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    expect_error(
        &h.call("ListSessionsV2", json!({"limit": 5, "query": "alice", "cursor": tampered})).await,
        400,
        "invalid_argument",
    );
}

#[tokio::test]
async fn windows_select_overlapping_sessions() {
    let h = Harness::start().await;
    h.insert(&[
        session("before", 300, Some(10), "a@example.com"), // ended before the window
        session("across", 200, Some(150), "a@example.com"), // started before, ended inside
        session("inside", 90, Some(5), "a@example.com"),
        session("still-open", 500, None, "a@example.com"), // active since long before
        session("after", 10, Some(1), "a@example.com"),    // starts after the window
    ])
    .await;
    let start = format_rfc3339(now_micros() - 120 * MINUTE);
    let end = format_rfc3339(now_micros() - 60 * MINUTE);
    let (mut ids, _) = h.list(json!({"startTimestamp": start, "endTimestamp": end})).await;
    ids.sort();
    assert_eq!(ids, ["across", "inside", "still-open"]);
    let (mut open_ended, _) = h.list(json!({"startTimestamp": start})).await;
    open_ended.sort();
    assert_eq!(open_ended, ["across", "after", "inside", "still-open"]);
}

#[tokio::test]
async fn bounds_finer_than_a_microsecond_compare_exactly() {
    let h = Harness::start().await;
    // 2026-12-06T15:08:52.702869Z to 15:09:54.083245Z, 61.380376s.
    let mut lasting = session("lasting", 0, None, "a@example.com");
    lasting.start = 1_796_569_732_702_869;
    lasting.end = Some(lasting.start + 61_380_376);
    h.insert(&[lasting]).await;
    let hits = |window: &serde_json::Value| {
        let h = &h;
        let window = window.clone();
        async move {
            let (status, response) = h.call("ListSessionAggregations", window).await;
            assert_eq!(status, 200, "{response}");
            response["numHits"].as_str().map_or(0, |n| n.parse::<u64>().unwrap())
        }
    };
    for (window, expected) in [
        // Ended before the window's start, by a nanosecond.
        (json!({"startTimestamp": "2026-12-06T15:09:54.083245001Z"}), 0),
        (json!({"startTimestamp": "2026-12-06T15:09:54.083245Z"}), 1),
        // Started before the window's end, by a tenth of a microsecond.
        (json!({"endTimestamp": "2026-12-06T15:08:52.7028691Z"}), 1),
        (json!({"endTimestamp": "2026-12-06T15:08:52.702869Z"}), 0),
        (json!({"startTimestamp": "2026-12-06T15:09:54.0832449Z", "endTimestamp": "2026-12-06T15:09:54.0832449Z"}), 1),
        (json!({"query": "start_time:>=2026-12-06T15:08:52.702869001Z"}), 0),
        (json!({"query": "start_time:<2026-12-06T15:08:52.702869001Z"}), 1),
        (json!({"query": "end_time:<2026-12-06T15:09:54.083245001Z"}), 1),
        (json!({"query": "duration:>=61.380376001s"}), 0),
        (json!({"query": "duration:<=61.3803760001s"}), 1),
    ] {
        let (ids, _) = h.list(window.clone()).await;
        assert_eq!(ids.len(), expected, "{window}: {ids:?}");
        assert_eq!(hits(&window).await, expected as u64, "{window}");
    }
}

#[tokio::test]
async fn queries_compile_to_filters() {
    let h = Harness::start().await;
    let mut bob = session("bob1", 20, Some(45), "Bob@Example.com");
    bob.client_ip = "192.168.7.9".into();
    bob.resource.technology = "mysql".into();
    h.insert(&[
        session("alice1", 30, Some(5), "alice@example.com"),
        bob,
        session("live", 5, None, "carol@example.com"),
    ])
    .await;
    let cases: &[(&str, &[&str])] = &[
        ("user.email:bob@example.com", &["bob1"]),
        ("email:BOB@EXAMPLE.COM", &["bob1"]),
        ("technology:IN [mysql redis]", &["bob1"]),
        ("client_ip:192.168.0.0/16", &["bob1"]),
        ("duration:>30m", &["bob1"]),
        ("session_status:active", &["live"]),
        ("end_time:* AND NOT bob", &["alice1"]),
        ("start_time:>=now-25m", &["bob1", "live"]),
        (r#"user:"x' OR 1=1 --""#, &[]),
    ];
    for (query, expected) in cases {
        let (mut ids, _) = h.list(json!({"query": query})).await;
        ids.sort();
        assert_eq!(&ids, expected, "{query}");
    }
}

/// Answers are for one key: a GET (which Connect lets caches keep) tells every cache not to.
#[tokio::test]
async fn no_cache_keeps_an_answer() {
    let h = Harness::start().await;
    let url = format!("{}?encoding=json&message=%7B%7D", h.method_url("ListSessionsV2"));
    let response = h.http.get(url).header("X-API-KEY", &h.reader_key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert!(response.headers()["vary"].to_str().unwrap().contains("X-API-KEY"));
}

/// A content type in capitals is the same type; a timeout that is not one is refused.
#[tokio::test]
async fn content_types_in_any_case_and_timeouts_that_are_numbers() {
    let h = Harness::start().await;
    let post = |content_type: &str, timeout: Option<&str>| {
        let mut request = h
            .http
            .post(h.method_url("ListSessionsV2"))
            .header("X-API-KEY", &h.reader_key)
            .header("Content-Type", content_type)
            .body("{}");
        if let Some(timeout) = timeout {
            request = request.header("connect-timeout-ms", timeout);
        }
        request.send()
    };
    assert_eq!(post("APPLICATION/JSON", None).await.unwrap().status(), 200);
    assert_eq!(post("application/json", Some("5000")).await.unwrap().status(), 200);
    for bad in ["abc", "-1", "99999999999", ""] {
        let response = post("application/json", Some(bad)).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_argument", "{bad}");
    }
}

/// A JSON array is no message, however it comes: compressed, or in a gRPC envelope.
#[tokio::test]
async fn a_json_array_is_refused_compressed_or_enveloped() {
    use std::io::Write;
    let h = Harness::start().await;
    let array = br#"["x"]"#;
    let mut deflated = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    deflated.write_all(array).unwrap();
    let deflated = deflated.finish().unwrap();
    let response = h
        .http
        .post(h.method_url("GetSession"))
        .header("X-API-KEY", &h.reader_key)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "deflate")
        .body(deflated.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("must be a JSON object"));

    for (content_type, flags, message, encoding) in [
        ("application/grpc+json", 0u8, &array[..], None),
        ("application/grpc-web+json", 0, &array[..], None),
        ("application/grpc+json", 1, &deflated[..], Some("deflate")),
    ] {
        let mut body = vec![flags];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        let mut request = h
            .http
            .post(h.method_url("GetSession"))
            .header("X-API-KEY", &h.reader_key)
            .header("Content-Type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("grpc-encoding", encoding);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers().get("grpc-status").map(|v| v.to_str().unwrap()), Some("3"), "{content_type}");
    }
    // gRPC-Web text that is not base64: a gRPC error too, which grpc-web clients read.
    let response = h
        .http
        .post(h.method_url("GetSession"))
        .header("X-API-KEY", &h.reader_key)
        .header("Content-Type", "application/grpc-web-text")
        .body("not base64!")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "3");
}

/// Limits short enough for a test.
fn short_limits(connections: usize) -> gatehouse_server::connection::Limits {
    let second = std::time::Duration::from_secs(1);
    gatehouse_server::connection::Limits { first_bytes: second, body: second, idle: second, stall: second, connections }
}

/// A client that asks for answers and takes none of them is cut off once it has taken nothing
/// for the stall limit: the read slots its answers held are its organization's again.
#[tokio::test]
async fn a_client_that_takes_none_of_its_answers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start_with_limits(short_limits(100)).await;
    // A page of several MiB: more than the kernel's buffers hold between the two ends.
    h.insert(&many(10_000)).await;
    let addr: std::net::SocketAddr = h.url.trim_start_matches("http://").parse().unwrap();
    let request = format!(
        "POST /core.v1.SessionsService/ListSessionsV2 HTTP/1.1\r\nHost: x\r\nX-API-KEY: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{{\"limit\":10000}}",
        h.reader_key
    );
    let mut unread = Vec::new();
    for _ in 0..gatehouse_server::admission::READS_PER_ORG {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        // The answer has begun, so it holds its read slot; the rest of it is never read.
        let mut status = [0; 12];
        stream.read_exact(&mut status).await.unwrap();
        assert_eq!(&status, b"HTTP/1.1 200");
        unread.push(stream);
    }

    let (status, body) = h.call("ListSessionsV2", json!({"limit": 1})).await;
    assert_eq!(status, 200, "the organization's reads are served again: {body}");
    // Each of the two is cut off once its own limit has passed.
    let stalled = async || {
        let metrics = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
        let line = metrics.lines().find_map(|line| line.strip_prefix("gatehouse_connections_stalled_total "));
        line.expect("the counter is on the page").to_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stalled().await != "2" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stalled().await, "2");
    drop(unread);
}

/// Found by a review: on HTTP/2, a client that gives its streams no flow-control window takes
/// none of their answers while its connection goes on (it answers pings), and held its
/// organization's read slots for as long as it liked. The connection is closed once an answer
/// has waited the stall limit.
#[tokio::test]
async fn an_http2_client_that_takes_none_of_its_answers_is_cut_off() {
    let h = Harness::start_with_limits(short_limits(100)).await;
    h.insert(&many(100)).await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake::<_, String>(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let mut unread = Vec::new();
    for _ in 0..gatehouse_server::admission::READS_PER_ORG {
        let request = http::Request::post(h.method_url("ListSessionsV2"))
            .header("X-API-KEY", &h.reader_key)
            .header("Content-Type", "application/json")
            .body(r#"{"limit":100}"#.to_owned())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        // The answer has begun, so it holds its read slot; none of its body can come.
        assert_eq!(response.status(), 200);
        unread.push(response);
    }

    let (status, body) = h.call("ListSessionsV2", json!({"limit": 1})).await;
    assert_eq!(status, 200, "the organization's reads are served again: {body}");
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), connection).await;
    closed.expect("the connection is closed").unwrap().ok();
    let metrics = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|line| line == "gatehouse_connections_stalled_total 1"), "{metrics}");
    drop(unread);
}

/// A request whose body stops halfway (HTTP/1.1, or a stream of HTTP/2) is answered with an
/// error and its connection closed; an HTTP/2 connection with no request is closed too.
#[tokio::test]
async fn stalled_bodies_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start_with_limits(short_limits(100)).await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let read_to_end = async |stream: &mut tokio::net::TcpStream| {
        let mut seen = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut seen)).await;
        read.expect("closed within the limit").unwrap();
        String::from_utf8_lossy(&seen).into_owned()
    };

    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /core.v1.SessionsService/ListSessionsV2 HTTP/1.1\r\nHost: x\r\nX-API-KEY: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        h.reader_key
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_end(&mut stalled).await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");

    // HTTP/2 with prior knowledge: the preface and empty SETTINGS, then no request. The server
    // says GOAWAY, pings to see the client has it, and closes.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
    let frames = async {
        let mut kinds = Vec::new();
        let mut header = [0; 9];
        while idle.read_exact(&mut header).await.is_ok() {
            let mut payload = vec![0; usize::from(header[1]) << 8 | usize::from(header[2])];
            idle.read_exact(&mut payload).await.unwrap();
            kinds.push(header[3]);
            if header[3] == 6 && header[4] & 1 == 0 {
                idle.write_all(&[&[0, 0, 8, 6, 1, 0, 0, 0, 0][..], &payload].concat()).await.unwrap();
            }
        }
        kinds
    };
    let kinds =
        tokio::time::timeout(std::time::Duration::from_secs(10), frames).await.expect("closed within the limit");
    assert!(kinds.contains(&7), "a GOAWAY: {kinds:?}");

    let (status, _) = h.call("ListSessionsV2", json!({})).await;
    assert_eq!(status, 200, "others are served all along");
}

/// At the connection limit, a new connection waits until one ends, then is served.
#[tokio::test]
async fn past_the_connection_limit_connections_wait_their_turn() {
    let h = Harness::start_with_limits(short_limits(1)).await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let url = h.method_url("ListSessionsV2");
    let call = h.http.post(url).header("X-API-KEY", &h.reader_key).json(&json!({})).send();
    let waiting = tokio::spawn(call);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served while the silent connection held the only place");
    let status = waiting.await.unwrap().unwrap().status();
    assert_eq!(status, 200, "served once the silent connection was closed");
    drop(silent);
}

/// A connection that says nothing (before its first request, or halfway through its headers)
/// is closed after the idle limit, while other clients are served all along.
#[tokio::test]
async fn silent_connections_are_closed_and_hold_no_one_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (status, _) = h.call("ListSessionsV2", json!({})).await;
    assert_eq!(status, 200, "served beside them");
    let limit = gatehouse_server::connection::CLIENT_PATIENCE + std::time::Duration::from_secs(5);
    for stream in [&mut silent, &mut half] {
        let read = tokio::time::timeout(limit, stream.read(&mut [0; 64])).await.expect("closed within the limit");
        assert_eq!(read.unwrap(), 0, "closed without an answer");
    }
}
