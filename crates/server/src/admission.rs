//! Admission of RPC calls, decided from their headers before their bodies are read.
//!
//! - The caller's key is checked first: a request without a valid key costs the server its
//!   headers, not the body of up to 4 MiB the RPC layer would otherwise read (and hold until
//!   the last byte came) before any interceptor ran.
//! - An organization's reads (every method a reader key may call) run [`READS_PER_ORG`] at a time, each until its answer is sent: a
//!   page may be tens of MiB, and one key asking for many at once, or reading them slowly,
//!   would otherwise take the memory and cores every other organization and the connectors
//!   need. More wait their turn, up to [`READ_WAIT`]. A read takes its turn once its request
//!   has come whole: one whose body is slow to come, or never does, holds none.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use connectrpc::ConnectError;
use gatehouse_core::{Caller, OrgId, Role};
use tokio::sync::Semaphore;

use crate::auth::{Authenticator, Guard};
use crate::connection::Held;
use crate::grpc_web_text::MAX_TEXT_BYTES;
use crate::metrics::Metrics;

/// The refusal, in the protocol of the request: this runs before gRPC-Web's text mode is
/// turned into its binary form, and a refusal there is all in headers, as in gRPC.
fn refusal(error: ConnectError, headers: &http::HeaderMap) -> Response {
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/grpc-web-text") {
        return crate::error::grpc_refusal(content_type, error.code, error.message.as_deref().unwrap_or_default());
    }
    error.into_http_response(headers).map(Body::new)
}

/// Reads what of a refused request's body comes at once, keeping none of it: a request of the
/// API is one small message, which an HTTP/1.1 client then sees answered, not cut off. A larger
/// or slower body is not waited for.
async fn discard(body: Body) {
    use http_body_util::BodyExt as _;
    const AT_ONCE: usize = 64 * 1024;
    const WAIT: Duration = Duration::from_millis(500);
    let mut body = body;
    let mut seen = 0;
    let _ = tokio::time::timeout(WAIT, async {
        while seen <= AT_ONCE {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, bytes::Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

/// Reads of one organization served at once.
pub const READS_PER_ORG: usize = 2;
/// How long a read waits for its organization's turn before it is refused.
pub const READ_WAIT: Duration = Duration::from_secs(30);

pub struct Admission {
    auth: Authenticator,
    reads_per_org: usize,
    read_wait: Duration,
    metrics: Arc<Metrics>,
    /// `/package.Service/Method` of every method served: refusals of others are not counted
    /// under their path, which anyone could make up.
    methods: HashSet<String>,
    reads: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
}

impl Admission {
    pub fn new(auth: Authenticator, metrics: Arc<Metrics>, methods: HashSet<String>) -> Self {
        Self {
            auth,
            reads_per_org: READS_PER_ORG,
            read_wait: READ_WAIT,
            metrics,
            methods,
            reads: Mutex::new(HashMap::new()),
        }
    }

    /// Other turns than [`READS_PER_ORG`] and [`READ_WAIT`].
    pub fn with_reads(mut self, per_org: usize, wait: Duration) -> Self {
        (self.reads_per_org, self.read_wait) = (per_org, wait);
        self
    }

    /// The turns of `org`'s reads.
    fn reads_of(&self, org: OrgId) -> Arc<Semaphore> {
        let mut reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(reads.entry(org).or_insert_with(|| Arc::new(Semaphore::new(self.reads_per_org))))
    }
}

/// The middleware: admits the call, or answers it with the refusal in its own protocol.
pub async fn admit(State(admission): State<Arc<Admission>>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let (mut parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let guard = Guard::of(&path);
    let refused = |error: ConnectError, headers: &http::HeaderMap| {
        if admission.methods.contains(&path) {
            admission.metrics.call(&path, error.code.as_str(), Some(started.elapsed().as_secs_f64()));
        }
        refusal(error, headers)
    };
    if let Err(error) = admission.auth.admit(Some(&path), &parts.headers, &mut parts.extensions).await {
        // Read and dropped, not kept: an HTTP/1.1 client still sending its body when the
        // answer came and the connection closed would see a broken pipe, not the refusal.
        discard(body).await;
        return refused(error, &parts.headers);
    }
    let turn = match (guard == Guard::Api(Role::Reader), parts.extensions.get::<Caller>()) {
        (true, Some(caller)) => {
            // The request whole first (within the connection's time for a body): a turn held
            // while a body trickles in, or never comes, would be taken from the organization.
            match crate::body::whole(body, MAX_TEXT_BYTES).await {
                Ok(bytes) => body = Body::from(bytes),
                Err(error) => return refused(error, &parts.headers),
            }
            let reads = admission.reads_of(caller.org);
            match tokio::time::timeout(admission.read_wait, reads.acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    let error = ConnectError::resource_exhausted(format!(
                        "this organization has {} reads running, each until its answer is read, and this \
                         one waited {} s for its turn: try again, or ask for smaller pages",
                        admission.reads_per_org,
                        admission.read_wait.as_secs_f64()
                    ));
                    return refused(error, &parts.headers);
                }
            }
        }
        _ => None,
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    match turn {
        Some(turn) => response.map(|body| Body::new(Held::new(body, turn))),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::post;
    use futures::StreamExt as _;
    use gatehouse_store::sqlite::SqliteStore;
    use tempfile::TempDir;
    use tokio::sync::Notify;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
    use tower::ServiceExt as _;

    use super::*;
    use crate::auth::create_api_key;

    const LIST: &str = "/core.v1.SessionsService/ListSessionsV2";

    fn call(path: &str, key: Option<&str>) -> Request {
        let mut request = http::Request::post(path).header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.body(Body::from("{}")).unwrap()
    }

    /// A service whose reads say when they start, then wait for `release`, behind the
    /// admission of `reads_per_org`; and a key of two organizations.
    async fn service(reads_per_org: usize) -> (axum::Router, [String; 2], UnboundedReceiver<()>, Arc<Notify>, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn gatehouse_store::Store> =
            Arc::new(SqliteStore::open(&dir.path().join("g.db")).await.unwrap());
        let mut keys = Vec::new();
        for org in ["acme", "globex"] {
            let org = store.ensure_org(org).await.unwrap().id;
            keys.push(create_api_key(store.as_ref(), org, "k", Role::Reader).await.unwrap().key);
        }
        let admission = Admission::new(Authenticator::new(store), Arc::default(), HashSet::from([LIST.to_owned()]))
            .with_reads(reads_per_org, Duration::from_millis(50));
        let (started, starts) = unbounded_channel();
        let release = Arc::new(Notify::new());
        let read = {
            let release = release.clone();
            move || async move {
                let released = release.notified();
                let mut released = std::pin::pin!(released);
                released.as_mut().enable();
                started.send(()).unwrap();
                released.await;
            }
        };
        let app = axum::Router::new()
            .route(LIST, post(read))
            .layer(axum::middleware::from_fn_with_state(Arc::new(admission), admit));
        (app, keys.try_into().unwrap(), starts, release, dir)
    }

    #[tokio::test]
    async fn a_call_without_a_valid_key_is_refused_without_its_body_being_kept() {
        let (app, _, _, _, _dir) = service(1).await;
        // A body that never ends: buffering it would exhaust memory, and waiting for its end never answer.
        let chunk = || Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1 << 20]));
        let body = Body::from_stream(futures::stream::repeat_with(chunk));
        let request = http::Request::post(LIST).header("content-type", "application/json").body(body).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request)).await;
        assert_eq!(response.expect("answered without the body").unwrap().status(), http::StatusCode::UNAUTHORIZED);
        let response = app.oneshot(call(LIST, Some("gh_nope_nope"))).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
    }

    /// Found by a review: two requests whose bodies never came held an organization's two
    /// turns, and every other read of it waited 30 s, for as long as the two were sent again.
    #[tokio::test]
    async fn a_read_whose_body_has_not_come_holds_no_turn() {
        let (app, [acme, _], mut starts, release, _dir) = service(1).await;
        let never_ends = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"limit\":"))])
            .chain(futures::stream::pending());
        let request = http::Request::post(LIST)
            .header("content-type", "application/json")
            .header("x-api-key", &acme)
            .body(Body::from_stream(never_ends))
            .unwrap();
        let stalled = tokio::spawn(app.clone().oneshot(request));
        let read = tokio::spawn(app.clone().oneshot(call(LIST, Some(&acme))));
        tokio::time::timeout(Duration::from_secs(5), starts.recv()).await.expect("the whole read got the turn");
        release.notify_waiters();
        assert_eq!(read.await.unwrap().unwrap().status(), http::StatusCode::OK);
        assert!(!stalled.is_finished(), "still waiting for its body");
        stalled.abort();
    }

    #[tokio::test]
    async fn an_organizations_reads_take_turns_and_leave_others_alone() {
        let (app, [acme, globex], mut starts, release, _dir) = service(1).await;
        let first = tokio::spawn(app.clone().oneshot(call(LIST, Some(&acme))));
        starts.recv().await.unwrap();
        let waited = app.clone().oneshot(call(LIST, Some(&acme))).await.unwrap();
        assert_eq!(waited.status(), http::StatusCode::TOO_MANY_REQUESTS, "acme's one turn is taken");
        let other = tokio::spawn(app.clone().oneshot(call(LIST, Some(&globex))));
        starts.recv().await.unwrap();
        // globex's read started while acme's held its turn.
        release.notify_waiters();
        assert_eq!(other.await.unwrap().unwrap().status(), http::StatusCode::OK);
        assert_eq!(first.await.unwrap().unwrap().status(), http::StatusCode::OK);
    }
}
