//! A stand-in for the control plane's `ConnectorService`, served over real
//! HTTP on port 0: it records what it receives, deduplicates events on
//! `(session_id, seq)` as the real one does, checks the connector key, and
//! can be told to answer `unavailable` (an outage) or to refuse one event.
//!
//! A test double of a network peer, used until the control plane implements
//! this service (the lead engineer is writing it in `crates/server`).

#![allow(dead_code, refining_impl_trait_internal, refining_impl_trait_reachable)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectrpc::{
    ConnectError, ConnectRpcService, ErrorCode, RequestContext, Response, ServiceRequest, ServiceResult, ServiceStream,
};
use futures::StreamExt;
use gatehouse_connector::event::{EventKind, SessionEnd, SessionEvent, SessionStart, Statement};
use gatehouse_connector::metrics::Metrics;
use gatehouse_connector::report::{
    ControlPlane, Journal, Queue, ReportLoop, ReportOptions, Reporter, Spool, SpoolOptions,
};
use gatehouse_proto::gatehouse::connector::v1 as pb;
use gatehouse_proto::gatehouse::connector::v1::ConnectorService;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "gh_test_connectorkey";

/// What the double saw, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every event received, duplicates included.
    pub received: Vec<(String, u64)>,
    /// Events stored (first receipt of each `(session_id, seq)`).
    pub stored: Vec<(String, u64)>,
    /// `Report` calls that succeeded, and their sizes.
    pub batches: Vec<usize>,
    /// Each `Hello`: its run id and how many events were stored before it.
    pub hellos: Vec<(String, usize)>,
    /// Each `Hello`'s previous runs.
    pub hello_previous: Vec<Vec<String>>,
    /// Each `Hello`'s previous runs said alive: run id, and when in microseconds.
    pub hello_alive: Vec<Vec<(String, i64)>>,
    pub heartbeats: Vec<String>,
    /// Each `Goodbye`'s run id.
    pub goodbyes: Vec<String>,
    /// Run ids of the session starts stored, by session.
    pub start_runs: Vec<(String, String)>,
    /// `VerifyIdentity` calls: `(user, requested_role)`; never the token.
    pub verifications: Vec<(String, String)>,
    /// The session starts stored, in order.
    pub starts: Vec<pb::SessionStart>,
    /// The statements stored, in order: `(session_id, seq, text)`.
    pub statements: Vec<(String, u64, String)>,
    /// `WatchTerminations` calls, refused or not.
    pub watches: usize,
}

pub struct Plane {
    seen: Mutex<Seen>,
    keys: Mutex<HashSet<(String, u64)>>,
    /// Answer `unavailable` to everything.
    pub down: AtomicBool,
    /// Refuse the connector key (`unauthenticated`), as a replica on another store does.
    pub refuse_key: AtomicBool,
    /// Refuse (`invalid_argument`) any batch holding this seq; `u64::MAX` for none.
    pub refuse_seq: AtomicU64,
    /// A `Report` takes this many microseconds per event it holds, as a slow store would.
    pub report_us_per_event: AtomicU64,
    pub heartbeat_seconds: u32,
    terminations: tokio::sync::Mutex<mpsc::UnboundedReceiver<pb::Termination>>,
    terminate: mpsc::UnboundedSender<pb::Termination>,
    /// `VerifyIdentity` answers by `(user, token)`; others get `bad_token`.
    identities: Mutex<HashMap<(String, String), pb::VerifyIdentityResponse>>,
}

impl Plane {
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Streams a termination to the connector.
    pub fn terminate(&self, session_id: &str, termination_id: &str) {
        let t = pb::Termination {
            session_id: session_id.into(),
            termination_id: termination_id.into(),
            reason: "by test".into(),
            ..Default::default()
        };
        self.terminate.send(t).unwrap();
    }

    /// Makes `VerifyIdentity` answer `response` for `user` with `token`.
    pub fn set_identity(&self, user: &str, token: &str, response: pb::VerifyIdentityResponse) {
        self.identities.lock().unwrap().insert((user.into(), token.into()), response);
    }

    fn check(&self, ctx: &RequestContext) -> Result<(), ConnectError> {
        let key = ctx.header("x-api-key").and_then(|v| v.to_str().ok());
        if key != Some(KEY) || self.refuse_key.load(Ordering::SeqCst) {
            return Err(ConnectError::new(ErrorCode::Unauthenticated, "bad key"));
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(ConnectError::new(ErrorCode::Unavailable, "down for the test"));
        }
        Ok(())
    }
}

struct Service(Arc<Plane>);

impl ConnectorService for Service {
    async fn hello(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::HelloRequest>,
    ) -> ServiceResult<pb::HelloResponse> {
        self.0.check(&ctx)?;
        let mut seen = self.0.seen.lock().unwrap();
        let stored = seen.stored.len();
        let request = request.to_owned_message();
        seen.hellos.push((request.run_id, stored));
        seen.hello_previous.push(request.previous_run_ids);
        let alive = request.previous_runs.iter().map(|run| {
            let at = run.alive_at.as_option().expect("a run said alive says when");
            (run.run_id.clone(), at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000)
        });
        seen.hello_alive.push(alive.collect());
        Response::ok(pb::HelloResponse {
            connector_id: "con_test".into(),
            connector_name: "test".into(),
            heartbeat_seconds: self.0.heartbeat_seconds,
            lease_seconds: 60,
            resources: vec![pb::Resource {
                id: "res_a".into(),
                name: "a".into(),
                r#type: "datastore".into(),
                technology: "postgres".into(),
                host: "127.0.0.1".into(),
                port: 5432,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    async fn heartbeat(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::HeartbeatRequest>,
    ) -> ServiceResult<pb::HeartbeatResponse> {
        self.0.check(&ctx)?;
        self.0.seen.lock().unwrap().heartbeats.push(request.to_owned_message().run_id);
        Response::ok(pb::HeartbeatResponse::default())
    }

    async fn goodbye(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::GoodbyeRequest>,
    ) -> ServiceResult<pb::GoodbyeResponse> {
        self.0.check(&ctx)?;
        self.0.seen.lock().unwrap().goodbyes.push(request.to_owned_message().run_id);
        Response::ok(pb::GoodbyeResponse::default())
    }

    async fn report(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::ReportRequest>,
    ) -> ServiceResult<pb::ReportResponse> {
        self.0.check(&ctx)?;
        let events = request.to_owned_message().events;
        let slow = self.0.report_us_per_event.load(Ordering::SeqCst) * events.len() as u64;
        if slow > 0 {
            tokio::time::sleep(Duration::from_micros(slow)).await;
        }
        let refuse = self.0.refuse_seq.load(Ordering::SeqCst);
        if events.iter().any(|e| e.seq == refuse) {
            return Err(ConnectError::new(ErrorCode::InvalidArgument, "refused for the test"));
        }
        let mut seen = self.0.seen.lock().unwrap();
        let mut keys = self.0.keys.lock().unwrap();
        let mut stored = 0;
        seen.batches.push(events.len());
        for event in events {
            let key = (event.session_id.clone(), event.seq);
            seen.received.push(key.clone());
            if keys.insert(key.clone()) {
                stored += 1;
                seen.stored.push(key);
                match &event.kind {
                    Some(pb::event::Kind::Start(start)) => {
                        seen.start_runs.push((event.session_id.clone(), start.run_id.clone()));
                        seen.starts.push(start.as_ref().clone());
                    }
                    Some(pb::event::Kind::Statement(statement)) => {
                        seen.statements.push((event.session_id.clone(), event.seq, statement.text.clone()));
                    }
                    _ => {}
                }
            }
        }
        Response::ok(pb::ReportResponse { stored, ..Default::default() })
    }

    async fn verify_identity(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, pb::VerifyIdentityRequest>,
    ) -> ServiceResult<pb::VerifyIdentityResponse> {
        self.0.check(&ctx)?;
        let request = request.to_owned_message();
        self.0.seen.lock().unwrap().verifications.push((request.user.clone(), request.requested_role.clone()));
        let answer = self.0.identities.lock().unwrap().get(&(request.user, request.token)).cloned();
        Response::ok(answer.unwrap_or_else(|| pb::VerifyIdentityResponse {
            denied_reason: "bad_token".into(),
            cache_seconds: 30,
            ..Default::default()
        }))
    }

    async fn watch_terminations(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, pb::WatchTerminationsRequest>,
    ) -> ServiceResult<ServiceStream<pb::Termination>> {
        self.0.seen.lock().unwrap().watches += 1;
        self.0.check(&ctx)?;
        let plane = Arc::clone(&self.0);
        // One termination per stream, then the stream ends: the connector must reconnect.
        let next = async move {
            let t = plane.terminations.lock().await.recv().await;
            t.map(Ok)
        };
        Response::stream_ok(futures::stream::once(next).filter_map(futures::future::ready))
    }
}

/// A running double.
pub struct Harness {
    pub plane: Arc<Plane>,
    pub url: String,
    stop: CancellationToken,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(1).await
    }

    pub async fn start_with(heartbeat_seconds: u32) -> Self {
        let (terminate, terminations) = mpsc::unbounded_channel();
        let plane = Arc::new(Plane {
            seen: Mutex::default(),
            keys: Mutex::default(),
            down: AtomicBool::new(false),
            refuse_key: AtomicBool::new(false),
            refuse_seq: AtomicU64::new(u64::MAX),
            report_us_per_event: AtomicU64::new(0),
            heartbeat_seconds,
            terminations: tokio::sync::Mutex::new(terminations),
            terminate,
            identities: Mutex::default(),
        });
        let router = connectrpc::Router::new().add_service(Arc::new(Service(Arc::clone(&plane))));
        let app = axum::Router::new().fallback_service(ConnectRpcService::new(router));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned()).into_future());
        Self { plane, url, stop }
    }

    pub fn control(&self) -> ControlPlane {
        ControlPlane::new(&self.url, KEY, None).unwrap().with_timeout(Duration::from_secs(2))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Short waits, so tests run fast.
pub fn options(fail_open: bool) -> ReportOptions {
    ReportOptions {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        flush_timeout: Duration::from_secs(5),
        fail_open,
        ..ReportOptions::default()
    }
}

/// A report loop over the spool in `dir`, running in a task.
pub struct Pipeline {
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<u64>,
    pub hello: tokio::sync::watch::Receiver<Option<Arc<gatehouse_connector::report::resources::HelloInfo>>>,
}

impl Pipeline {
    pub fn start(control: ControlPlane, dir: &std::path::Path, spool: SpoolOptions, options: ReportOptions) -> Self {
        Self::start_ending(control, dir, spool, options, None)
    }

    /// [`start`](Self::start), with the sessions in `live` ended when the spool fills.
    pub fn start_ending(
        control: ControlPlane,
        dir: &std::path::Path,
        spool: SpoolOptions,
        options: ReportOptions,
        live: Option<Arc<gatehouse_connector::live::LiveSessions>>,
    ) -> Self {
        let (mut spool, _) = Spool::open(dir, spool).unwrap();
        let (journal, _) = Journal::open(&journal_dir(dir), &mut spool).unwrap();
        let metrics = Arc::new(Metrics::default());
        let run_id = uuid::Uuid::now_v7().to_string();
        let (reporter, queue): (Reporter, Queue) = Reporter::new(Arc::clone(&metrics), &run_id, journal);
        let mut report = ReportLoop::new(control, run_id, queue, spool, options);
        if let Some(live) = live {
            report = report.ending_sessions(live);
        }
        let hello = report.hello();
        let stop = CancellationToken::new();
        let task = tokio::spawn(report.run(stop.clone()));
        Self { reporter, metrics, stop, task, hello }
    }

    /// Ends the process the hard way (`kill -9`): what is queued or in flight is lost; the spool
    /// and the journal stay as they are.
    pub async fn crash(self) {
        self.task.abort();
        assert!(self.task.await.unwrap_err().is_cancelled());
    }

    /// Stops the loop and waits for it; returns the events left in the spool.
    pub async fn stop(self) -> u64 {
        drop(self.reporter);
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("the loop stops in time").unwrap()
    }

    pub fn backlog(&self) -> u64 {
        self.metrics.report_backlog.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.metrics.events_dropped_total.load(Ordering::Relaxed)
    }
}

/// A session's events: start, `statements` statements, end.
pub fn session(id: &str, statements: u64) -> Vec<SessionEvent> {
    let mut events = vec![SessionEvent {
        session_id: id.into(),
        seq: 0,
        kind: EventKind::Start(SessionStart {
            start_us: 1_000,
            resource_id: "res_a".into(),
            username: "alice".into(),
            ..Default::default()
        }),
    }];
    for seq in 1..=statements {
        events.push(SessionEvent {
            session_id: id.into(),
            seq,
            kind: EventKind::Statement(Statement {
                start_us: 1_000 + seq as i64,
                text: format!("select {seq}"),
                ..Default::default()
            }),
        });
    }
    events.push(SessionEvent {
        session_id: id.into(),
        seq: statements + 1,
        kind: EventKind::End(SessionEnd { end_us: 9_000, reason: gatehouse_connector::event::EndReason::Client }),
    });
    events
}

/// Interleaves sessions' events the way concurrent sessions produce them.
pub fn interleave(sessions: &[Vec<SessionEvent>]) -> Vec<SessionEvent> {
    let longest = sessions.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest).flat_map(|i| sessions.iter().filter_map(move |s| s.get(i).cloned())).collect()
}

pub fn keys(events: &[SessionEvent]) -> Vec<(String, u64)> {
    events.iter().map(|e| (e.session_id.clone(), e.seq)).collect()
}

/// Polls `condition` every 10 ms for up to 10 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Records in the spool's segment files, read without touching them.
pub fn spooled_records(dir: &std::path::Path) -> usize {
    use gatehouse_connector::report::record::{self, Next};
    let mut count = 0;
    for path in segment_files(dir) {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Some(mut rest) = bytes.get(record::SEGMENT_MAGIC.len()..) else { continue };
        loop {
            let remaining = rest.len() as u64;
            match record::read_next(&mut rest, remaining) {
                Ok(Next::Record(_)) => count += 1,
                _ => break,
            }
        }
    }
    count
}

/// Where a [`Pipeline`] over the spool in `dir` journals its events.
pub fn journal_dir(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("journal")
}

/// The spool's segment files, oldest first.
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    files
}
