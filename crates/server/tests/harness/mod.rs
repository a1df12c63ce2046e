//! Starts a real control plane on an ephemeral port over a fresh SQLite file (or a store given).

#![allow(dead_code)]

use std::sync::Arc;

use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::time::now_micros;
use gatehouse_core::{Identity, OrgId, Role, Session};
use gatehouse_server::auth::create_api_key;
use gatehouse_store::Store;
use gatehouse_store::sqlite::SqliteStore;
use serde_json::Value;

pub struct Harness {
    pub url: String,
    pub store: Arc<dyn Store>,
    pub org: OrgId,
    pub admin_key: String,
    pub reader_key: String,
    pub http: reqwest::Client,
    /// Shuts the server down when sent to (or dropped); `serving` then ends.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
    /// The SQLite store's directory, when the harness made the store.
    _dir: Option<tempfile::TempDir>,
}

pub const MINUTE: i64 = 60_000_000;

impl Harness {
    pub async fn start() -> Self {
        Self::start_with_lease(gatehouse_server::Lease::default().lease).await
    }

    /// A server whose connectors lose their sessions after `lease` of silence.
    pub async fn start_with_lease(lease: std::time::Duration) -> Self {
        Self::start_with(lease, gatehouse_server::connection::Limits::default()).await
    }

    /// A server with other limits on what clients may hold.
    pub async fn start_with_limits(limits: gatehouse_server::connection::Limits) -> Self {
        Self::start_with(gatehouse_server::Lease::default().lease, limits).await
    }

    async fn start_with(lease: std::time::Duration, limits: gatehouse_server::connection::Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("g.db")).await.unwrap());
        Self::serve(store, lease, limits, Some(dir)).await
    }

    /// A server over `store`, an empty one of the caller's, whose connectors lose their sessions
    /// after `lease` of silence.
    pub async fn start_on(store: Arc<dyn Store>, lease: std::time::Duration) -> Self {
        Self::serve(store, lease, gatehouse_server::connection::Limits::default(), None).await
    }

    async fn serve(
        store: Arc<dyn Store>,
        lease: std::time::Duration,
        limits: gatehouse_server::connection::Limits,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let org = store.ensure_org("acme").await.unwrap().id;
        let admin_key = create_api_key(store.as_ref(), org, "admin", Role::Admin).await.unwrap().key;
        let reader_key = create_api_key(store.as_ref(), org, "reader", Role::Reader).await.unwrap().key;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lease = gatehouse_server::Lease { heartbeat: lease / 3, lease };
        let app = gatehouse_server::app_with_lease(store.clone(), lease).await.unwrap().with_limits(limits);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(gatehouse_server::serve(listener, None, app, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().no_gzip().build().unwrap();
        Self { url, store, org, admin_key, reader_key, http, stop: Some(stop), serving: Some(serving), _dir: dir }
    }

    /// Asks the server to shut down; the returned task ends when `serve` returns.
    pub fn shut_down(&mut self) -> tokio::task::JoinHandle<()> {
        drop(self.stop.take());
        self.serving.take().expect("shut down once")
    }

    pub fn method_url(&self, method: &str) -> String {
        format!("{}/core.v1.SessionsService/{method}", self.url)
    }

    /// POSTs Connect JSON with the reader key; returns (HTTP status, body).
    pub async fn call(&self, method: &str, body: Value) -> (u16, Value) {
        self.call_with_key(method, body, &self.reader_key).await
    }

    pub async fn call_with_key(&self, method: &str, body: Value, key: &str) -> (u16, Value) {
        self.post(&self.method_url(method), body, key).await
    }

    /// POSTs Connect JSON to `url` with `key`; returns (HTTP status, body).
    pub async fn post(&self, url: &str, body: Value, key: &str) -> (u16, Value) {
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-API-KEY", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Calls ListSessionsV2 and returns the session ids and metadata, panicking on errors.
    pub async fn list(&self, body: Value) -> (Vec<String>, Value) {
        let (status, response) = self.call("ListSessionsV2", body).await;
        assert_eq!(status, 200, "{response}");
        let ids = response["sessions"]
            .as_array()
            .map(|a| a.iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        (ids, response["listMetadata"].clone())
    }

    pub async fn insert(&self, sessions: &[Session]) {
        self.store.insert_sessions(self.org, sessions).await.unwrap();
    }
}

/// Asserts a Connect error: HTTP status and code, and returns the message.
pub fn expect_error(result: &(u16, Value), status: u16, code: &str) -> String {
    assert_eq!(result.0, status, "{}", result.1);
    assert_eq!(result.1["code"], code, "{}", result.1);
    let message = result.1["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty(), "error without a message: {}", result.1);
    message
}

/// A completed session `minutes_ago` minutes before now, lasting `minutes`.
pub fn session(id: &str, minutes_ago: i64, minutes: Option<i64>, email: &str) -> Session {
    let start = now_micros() - minutes_ago * MINUTE;
    Session {
        id: id.into(),
        start,
        end: minutes.map(|m| start + m * MINUTE),
        client_ip: "10.1.2.3".into(),
        server_ip: "10.9.9.9".into(),
        sidecar: Sidecar { id: "con_1".into(), name: "edge".into(), technology: "postgres".into() },
        user: SessionUser {
            kind: "human".into(),
            username: format!("idp:formal:human:{email}"),
            formal: Some(Identity {
                id: "u1".into(),
                email: email.into(),
                name: "Alice".into(),
                kind: "human".into(),
                groups: vec!["dba".into()],
                ..Default::default()
            }),
            end_user: None,
            native_username: "app_rw".into(),
        },
        resource: ResourceRef {
            kind: "datastore".into(),
            id: "res_1".into(),
            name: "orders-db".into(),
            technology: "postgres".into(),
        },
        connector: ConnectorRef { id: "con_1".into(), name: "edge".into(), run_id: String::new() },
        parent_session_id: String::new(),
    }
}

/// `count` sessions one minute apart, with ids that sort like their start.
pub fn many(count: usize) -> Vec<Session> {
    (0..count)
        .map(|i| {
            // Every end is in the past (up to 7 minutes long, starting at least 8 minutes ago),
            // as the control plane sees ends: a listing takes one after its `now` as not yet.
            let minutes_ago = (count - i) as i64 + 7;
            let mut s = session(&format!("s{i:05}"), minutes_ago, Some((i % 7) as i64 + 1), "alice@example.com");
            if i % 10 == 0 {
                s.end = None;
            }
            s
        })
        .collect()
}
