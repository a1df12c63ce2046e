//! `VerifyIdentity` over Connect with a connector key: every allow and deny
//! case, and sessions reported with identities found by the query language.

mod harness;

use std::time::Duration;

use connectrpc::client::{ClientConfig, HttpClient};
use gatehouse_core::OrgId;
use gatehouse_core::time::now_micros;
use gatehouse_proto::gatehouse::connector::v1::{self as wire, ConnectorServiceClient, event::Kind};
use gatehouse_server::convert::timestamp;
use gatehouse_server::identity::{self as identity, NewUser, create_access_token, create_user, outcome_counts};
use gatehouse_server::registry::{create_connector, create_resource};
use gatehouse_store::identity::{NewAccessToken, Principal, RoleGrant, User, UserKind};
use harness::*;
use serde_json::json;
use sha2::Digest;

type Client = ConnectorServiceClient<HttpClient>;

const HOUR: Duration = Duration::from_secs(3600);

fn client(url: &str, key: &str) -> Client {
    let config = ClientConfig::new(url.parse().unwrap()).with_default_header("x-api-key", key);
    ConnectorServiceClient::new(HttpClient::plaintext(), config)
}

fn human(email: &str, groups: &[&str]) -> NewUser {
    NewUser {
        kind: UserKind::Human,
        email: email.into(),
        name: format!("Name of {email}"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        external_ids: vec![format!("okta|{email}")],
        disabled: false,
    }
}

fn machine(name: &str) -> NewUser {
    NewUser {
        kind: UserKind::Machine,
        email: String::new(),
        name: name.into(),
        groups: vec!["etl".into()],
        external_ids: vec![],
        disabled: false,
    }
}

struct Setup {
    h: Harness,
    connector: Client,
    resource_id: String,
    alice: User,
    alice_token: String,
}

/// acme: resource orders-db (default role app_ro; group dba may use app_rw,
/// alice may use admin), a connector, and alice (groups dba) with a token.
async fn setup() -> Setup {
    let h = Harness::start().await;
    let store = h.store.as_ref();
    let resource = create_resource(store, h.org, "orders-db", "postgres", "127.0.0.1", 5432).await.unwrap();
    assert!(store.set_resource_default_role(h.org, &resource.id, "app_ro").await.unwrap());
    let alice = create_user(store, h.org, human("alice@example.com", &["dba"])).await.unwrap();
    grant(&h, &resource.id, Principal::Group("dba".into()), "app_rw").await;
    grant(&h, &resource.id, Principal::User(alice.id.clone()), "admin").await;
    let alice_token = create_access_token(store, h.org, &alice, HOUR, "laptop").await.unwrap().token;
    let created = create_connector(store, h.org, "edge-1").await.unwrap();
    Setup { connector: client(&h.url, &created.key), resource_id: resource.id, alice, alice_token, h }
}

async fn grant(h: &Harness, resource_id: &str, principal: Principal, role: &str) {
    let grant = RoleGrant { resource_id: resource_id.into(), principal, role: role.into() };
    assert!(h.store.grant_role(h.org, &grant, now_micros()).await.unwrap());
}

fn request(resource_id: &str, user_type: &str, user: &str, token: &str, role: &str) -> wire::VerifyIdentityRequest {
    wire::VerifyIdentityRequest {
        resource_id: resource_id.into(),
        user_type: user_type.into(),
        user: user.into(),
        token: token.into(),
        requested_role: role.into(),
        ..Default::default()
    }
}

async fn verify(c: &Client, req: wire::VerifyIdentityRequest) -> wire::VerifyIdentityResponse {
    c.verify_identity(req).await.unwrap().into_owned()
}

/// Asserts a denial for `reason`, carrying nothing else but the cache time.
async fn denied(s: &Setup, req: wire::VerifyIdentityRequest, reason: &str) {
    let before = count(reason);
    let answer = verify(&s.connector, req).await;
    assert!(!answer.allowed, "{answer:?}");
    assert_eq!(answer.denied_reason, reason);
    assert!(answer.native_role.is_empty() && !answer.user.is_set(), "a denial names no user: {answer:?}");
    assert!(answer.cache_seconds > 0 && answer.cache_seconds <= 30);
    assert_eq!(count(reason), before + 1, "denials of {reason} are counted");
}

fn count(reason: &str) -> u64 {
    outcome_counts().find(|(r, _)| *r == reason).map(|(_, n)| n).unwrap()
}

/// Stores a token with a chosen expiry (in the past, for expired tokens).
async fn token_expiring(h: &Harness, org: OrgId, user: &User, prefix: &str, expires: i64) -> String {
    let token = format!("ght_{prefix}_{}", "S".repeat(40));
    h.store
        .insert_access_token(&NewAccessToken {
            org,
            user_id: user.id.clone(),
            prefix: prefix.into(),
            secret_hash: sha2::Sha256::digest(token.as_bytes()).to_vec(),
            name: String::new(),
            created: expires - 1_000_000,
            expires,
        })
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn a_valid_token_gets_the_default_or_a_granted_role() {
    let s = setup().await;
    let answer = verify(&s.connector, request(&s.resource_id, "human", "alice@example.com", &s.alice_token, "")).await;
    assert!(answer.allowed, "{answer:?}");
    assert_eq!(answer.denied_reason, "");
    assert_eq!(answer.native_role, "app_ro", "the resource's default");
    assert_eq!(answer.cache_seconds, 10);
    let user = answer.user.as_option().expect("the user");
    assert_eq!(user.id, s.alice.id);
    assert_eq!((user.email.as_str(), user.r#type.as_str()), ("alice@example.com", "human"));
    assert_eq!(user.name, "Name of alice@example.com");
    assert_eq!(user.groups, vec!["dba"]);
    assert_eq!(user.external_ids, vec!["okta|alice@example.com"]);

    // Granted to her group, to her, the default by name; and any case of her email.
    for role in ["app_rw", "admin", "app_ro"] {
        let answer =
            verify(&s.connector, request(&s.resource_id, "human", "Alice@Example.COM", &s.alice_token, role)).await;
        assert!(answer.allowed, "{role}: {answer:?}");
        assert_eq!(answer.native_role, role);
    }

    // Her token's use is recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tokens = s.h.store.list_access_tokens(s.h.org, &s.alice.id).await.unwrap();
        if tokens[0].last_used.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "last use never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn machines_verify_and_without_a_default_get_their_only_role() {
    let s = setup().await;
    let store = s.h.store.as_ref();
    let etl = create_user(store, s.h.org, machine("etl-nightly")).await.unwrap();
    let token = create_access_token(store, s.h.org, &etl, HOUR, "").await.unwrap().token;
    let bare = create_resource(store, s.h.org, "warehouse", "postgres", "127.0.0.1", 5433).await.unwrap();

    // No default and no grant: no role to use, as a role not granted.
    denied(&s, request(&bare.id, "machine", "etl-nightly", &token, ""), "role_not_allowed").await;
    grant(&s.h, &bare.id, Principal::Group("etl".into()), "loader").await;
    let answer = verify(&s.connector, request(&bare.id, "machine", "etl-nightly", &token, "")).await;
    assert!(answer.allowed, "{answer:?}");
    assert_eq!(answer.native_role, "loader", "the single granted role");
    assert_eq!(answer.user.as_option().unwrap().r#type, "machine");
    // Two granted roles and no default: the connection must choose.
    grant(&s.h, &bare.id, Principal::User(etl.id.clone()), "admin").await;
    denied(&s, request(&bare.id, "machine", "etl-nightly", &token, ""), "no_role").await;
    let answer = verify(&s.connector, request(&bare.id, "machine", "etl-nightly", &token, "admin")).await;
    assert_eq!((answer.allowed, answer.native_role.as_str()), (true, "admin"));
    // A machine is not found as a human, nor a human as a machine.
    denied(&s, request(&bare.id, "human", "etl-nightly", &token, ""), "unknown_user").await;
    denied(&s, request(&s.resource_id, "machine", "alice@example.com", &s.alice_token, ""), "unknown_user").await;
}

#[tokio::test]
async fn wrong_missing_or_someone_elses_tokens_are_bad_tokens() {
    let s = setup().await;
    let store = s.h.store.as_ref();
    let bob = create_user(store, s.h.org, human("bob@example.com", &["dba"])).await.unwrap();
    let bob_token = create_access_token(store, s.h.org, &bob, HOUR, "").await.unwrap().token;
    let r = &s.resource_id;

    denied(&s, request(r, "human", "nobody@example.com", &s.alice_token, ""), "unknown_user").await;
    denied(&s, request(r, "human", "alice@example.com", &bob_token, ""), "bad_token").await;
    denied(&s, request(r, "human", "alice@example.com", "", ""), "bad_token").await;
    denied(&s, request(r, "human", "alice@example.com", "hunter2", ""), "bad_token").await;
    // The right prefix with a wrong secret.
    let mut forged = s.alice_token.clone();
    forged.replace_range(forged.len() - 4.., "abcd");
    assert_ne!(forged, s.alice_token);
    denied(&s, request(r, "human", "alice@example.com", &forged, ""), "bad_token").await;
    // An API key is not an access token.
    denied(&s, request(r, "human", "alice@example.com", &s.h.admin_key, ""), "bad_token").await;
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused() {
    let s = setup().await;
    let r = &s.resource_id;
    let expired = token_expiring(&s.h, s.h.org, &s.alice, "EXPIREDxxx", now_micros() - 1_000_000).await;
    denied(&s, request(r, "human", "alice@example.com", &expired, ""), "expired_token").await;
    let fresh = token_expiring(&s.h, s.h.org, &s.alice, "FRESHxxxxx", now_micros() + 60_000_000).await;
    assert!(verify(&s.connector, request(r, "human", "alice@example.com", &fresh, "")).await.allowed);

    let prefix = identity::token_prefix(&s.alice_token).unwrap().to_owned();
    assert!(s.h.store.revoke_access_token(s.h.org, &prefix, now_micros()).await.unwrap());
    denied(&s, request(r, "human", "alice@example.com", &s.alice_token, ""), "revoked_token").await;
    // Her other token still works.
    assert!(verify(&s.connector, request(r, "human", "alice@example.com", &fresh, "")).await.allowed);
}

#[tokio::test]
async fn disabled_users_and_roles_not_allowed_are_refused() {
    let s = setup().await;
    let store = s.h.store.as_ref();
    let r = &s.resource_id;
    let carol = create_user(store, s.h.org, human("carol@example.com", &["dev"])).await.unwrap();
    let carol_token = create_access_token(store, s.h.org, &carol, HOUR, "").await.unwrap().token;
    // Granted to dba (not her group) and to alice (not her); and unknown roles.
    for role in ["app_rw", "admin", "postgres", "app_ro@x"] {
        denied(&s, request(r, "human", "carol@example.com", &carol_token, role), "role_not_allowed").await;
    }
    assert!(verify(&s.connector, request(r, "human", "carol@example.com", &carol_token, "")).await.allowed);

    let disabled = User { disabled: true, ..carol.clone() };
    identity::update_user(store, s.h.org, disabled).await.unwrap();
    denied(&s, request(r, "human", "carol@example.com", &carol_token, ""), "disabled_user").await;
    // Only the token's holder learns the user is disabled.
    denied(&s, request(r, "human", "carol@example.com", &s.alice_token, ""), "bad_token").await;
    let enabled = User {
        disabled: false,
        ..store.find_user(s.h.org, UserKind::Human, "carol@example.com").await.unwrap().unwrap()
    };
    identity::update_user(store, s.h.org, enabled).await.unwrap();
    assert!(verify(&s.connector, request(r, "human", "carol@example.com", &carol_token, "")).await.allowed);
}

#[tokio::test]
async fn users_and_resources_of_another_org_are_unknown() {
    let s = setup().await;
    let store = s.h.store.as_ref();
    let globex = store.ensure_org("globex").await.unwrap().id;
    let gus = create_user(store, globex, human("gus@globex.example", &["dba"])).await.unwrap();
    let gus_token = create_access_token(store, globex, &gus, HOUR, "").await.unwrap().token;
    let theirs = create_resource(store, globex, "their-db", "postgres", "127.0.0.1", 5432).await.unwrap();
    store.set_resource_default_role(globex, &theirs.id, "app_ro").await.unwrap();

    denied(&s, request(&s.resource_id, "human", "gus@globex.example", &gus_token, ""), "unknown_user").await;
    // The same email in acme, with globex's token for it.
    create_user(store, s.h.org, human("gus@globex.example", &[])).await.unwrap();
    denied(&s, request(&s.resource_id, "human", "gus@globex.example", &gus_token, ""), "bad_token").await;
    // A resource of another organization is not the connector's to ask about.
    let err = s
        .connector
        .verify_identity(request(&theirs.id, "human", "alice@example.com", &s.alice_token, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::NotFound, "{err}");
}

#[tokio::test]
async fn malformed_requests_and_api_keys_are_rejected() {
    let s = setup().await;
    for (req, what) in [
        (request(&s.resource_id, "native", "alice@example.com", &s.alice_token, ""), "user_type"),
        (request("", "human", "alice@example.com", &s.alice_token, ""), "resource_id"),
        (request(&s.resource_id, "human", " ", &s.alice_token, ""), "user"),
    ] {
        let err = s.connector.verify_identity(req).await.unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::InvalidArgument, "{what}: {err}");
    }
    let as_api = client(&s.h.url, &s.h.admin_key);
    let err = as_api
        .verify_identity(request(&s.resource_id, "human", "alice@example.com", &s.alice_token, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code, connectrpc::ErrorCode::PermissionDenied, "{err}");
}

fn formal(id: &str, email: &str, kind: &str, groups: &[&str]) -> wire::FormalUser {
    wire::FormalUser {
        id: id.into(),
        name: format!("Name of {email}"),
        email: email.into(),
        r#type: kind.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        external_ids: vec![format!("ext-{id}")],
        ..Default::default()
    }
}

fn start(
    resource_id: &str,
    username: &str,
    user_type: &str,
    formal_user: Option<wire::FormalUser>,
) -> wire::SessionStart {
    wire::SessionStart {
        start_time: timestamp(now_micros() - 5_000_000).into(),
        run_id: "run-1".into(),
        resource_id: resource_id.into(),
        client_ip_address: "192.0.2.7".into(),
        username: username.into(),
        native_username: "app_rw".into(),
        user_type: user_type.into(),
        formal_user: formal_user.map(Into::into).unwrap_or_default(),
        ..Default::default()
    }
}

async fn report(c: &Client, session_id: &str, start: wire::SessionStart) {
    let event = wire::Event {
        session_id: session_id.into(),
        seq: 0,
        kind: Some(Kind::Start(Box::new(start))),
        ..Default::default()
    };
    let stored = c.report(wire::ReportRequest { events: vec![event], ..Default::default() }).await.unwrap();
    assert_eq!(stored.into_owned().stored, 1);
}

#[tokio::test]
async fn reported_identities_are_recorded_and_searchable() {
    let s = setup().await;
    let r = &s.resource_id;
    let alice = formal(&s.alice.id, "alice@example.com", "human", &["dba", "sre"]);
    report(&s.connector, "s-alice", start(r, "idp:formal:human:alice@example.com@app_rw", "human", Some(alice))).await;
    let mut by_app =
        start(r, "idp:formal:machine:billing@app_rw", "machine", Some(formal("u-m", "", "machine", &["apps"])));
    by_app.end_user = formal("end-1", "zoe@customer.example", "human", &["customers"]).into();
    report(&s.connector, "s-app", by_app).await;
    report(&s.connector, "s-native", start(r, "app", "", None)).await;

    let (status, body) = s.h.call("GetSession", json!({"session_id": "s-alice"})).await;
    assert_eq!(status, 200, "{body}");
    let user = &body["session"]["user"];
    assert_eq!(user["type"], "human");
    assert_eq!(user["username"], "idp:formal:human:alice@example.com@app_rw");
    assert_eq!(user["native"]["username"], "app_rw");
    assert_eq!(user["formal"]["user"]["id"], s.alice.id);
    assert_eq!(user["formal"]["user"]["email"], "alice@example.com");
    assert_eq!(user["formal"]["user"]["groups"], json!(["dba", "sre"]));
    assert!(user["formal"]["endUser"].is_null(), "{user}");

    let (_, body) = s.h.call("GetSession", json!({"session_id": "s-app"})).await;
    let user = &body["session"]["user"];
    assert_eq!(user["type"], "machine");
    assert_eq!(user["formal"]["endUser"]["email"], "zoe@customer.example");
    let (_, body) = s.h.call("GetSession", json!({"session_id": "s-native"})).await;
    assert_eq!(body["session"]["user"]["type"], "native", "no type means native");
    assert!(body["session"]["user"]["formal"].is_null());

    for (query, expected) in [
        ("group:dba AND technology:postgres", vec!["s-alice"]),
        ("user.formal.user.email:alice@example.com", vec!["s-alice"]),
        ("end_user.email:zoe@customer.example", vec!["s-app"]),
        ("user.formal.end_user.groups:customers", vec!["s-app"]),
        ("user.type:machine", vec!["s-app"]),
        ("user.type:native", vec!["s-native"]),
        ("group:apps OR group:sre", vec!["s-app", "s-alice"]),
    ] {
        let (mut ids, _) = s.h.list(json!({"query": query})).await;
        let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected, "{query}");
    }
}

/// An access token is for logging in to a database: the API says so, rather than calling it
/// an API key that is not valid, and tells nothing of the token.
#[tokio::test]
async fn an_access_token_given_to_the_api_is_told_apart_from_an_api_key() {
    let s = setup().await;
    let made_up = format!("ght_{}_{}", "x".repeat(10), "y".repeat(40));
    for token in [s.alice_token.as_str(), made_up.as_str()] {
        let message = expect_error(
            &s.h.call_with_key("GetSession", json!({"session_id": "s"}), token).await,
            401,
            "unauthenticated",
        );
        assert!(message.contains("access token") && message.contains("gatehouse keys create"), "{message}");
        assert!(!message.contains(&token[4..14]), "names nothing of the token: {message}");
    }
}
