//! Shared by the proxy tests: a proxy on port 0 in front of the machine's PostgreSQL
//! (127.0.0.1:5432, trust, database `test`), its events, and raw protocol helpers.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_connector::event::{EventKind, RunningStatement, SessionEnd, SessionEvent, SessionStart, Statement};
use gatehouse_connector::live::LiveSessions;
use gatehouse_connector::metrics::Metrics;
use gatehouse_connector::proxy::{
    CancelMap, IdentityOptions, LARGE_MESSAGE_BUDGET, LARGE_MESSAGE_STALL, ProxyContext, UpstreamTlsConfig, serve,
};
use gatehouse_connector::report::{Record, Reporter};
use gatehouse_pgwire::backend::{BackendKeyData, ErrorResponse};
use gatehouse_pgwire::{LargeMessageBudget, Message, MessageReader, PROTOCOL_3_0, StartupMessage};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

pub const UPSTREAM: &str = "127.0.0.1:5432";
pub const RESOURCE: &str = "res_test";
/// Generous bound for anything that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A proxy serving on 127.0.0.1:0.
pub struct Proxy {
    pub addr: SocketAddr,
    pub events: UnboundedReceiver<Record>,
    pub live: Arc<LiveSessions>,
    pub metrics: Arc<Metrics>,
    pub cancels: Arc<CancelMap>,
    pub shutdown: CancellationToken,
    /// Ends a drain at once, as a second signal does.
    pub end_drain: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
    stash: Vec<SessionEvent>,
    started: HashSet<String>,
}

/// The events of one session, checked to be numbered 0, 1, 2, ...
#[derive(Debug)]
pub struct Recorded {
    pub id: String,
    pub start: SessionStart,
    pub statements: Vec<Statement>,
    /// Statements announced while they ran, with the seq of their announcement.
    pub running: Vec<(u64, RunningStatement)>,
    pub end: SessionEnd,
}

impl Recorded {
    pub fn texts(&self) -> Vec<&str> {
        self.statements.iter().map(|s| s.text.as_str()).collect()
    }
}

impl Proxy {
    pub async fn start() -> Self {
        Self::start_with(None, UPSTREAM).await
    }

    pub async fn start_with(tls: Option<Arc<rustls::ServerConfig>>, upstream: &str) -> Self {
        Self::start_full(tls, upstream, None, IdentityOptions::default()).await
    }

    /// A proxy whose connections may hold `bytes` in large messages, together, and stop sending
    /// one for `stall` at most.
    pub async fn start_with_large_message_budget(bytes: usize, stall: Duration) -> Self {
        let budget = (LargeMessageBudget::new(bytes), stall);
        Self::start_inner(None, UPSTREAM, None, IdentityOptions::default(), budget, usize::MAX, Duration::ZERO).await
    }

    /// A proxy in front of `upstream` whose report queue is full once `bytes` of events were
    /// sent: 0 for always.
    pub async fn start_with_report_bound(upstream: &str, bytes: usize) -> Self {
        let budget = (LargeMessageBudget::new(LARGE_MESSAGE_BUDGET), LARGE_MESSAGE_STALL);
        Self::start_inner(None, upstream, None, IdentityOptions::default(), budget, bytes, Duration::ZERO).await
    }

    /// A proxy whose shutdown lets open sessions go on for `drain`.
    pub async fn start_with_drain(drain: Duration) -> Self {
        let budget = (LargeMessageBudget::new(LARGE_MESSAGE_BUDGET), LARGE_MESSAGE_STALL);
        Self::start_inner(None, UPSTREAM, None, IdentityOptions::default(), budget, usize::MAX, drain).await
    }

    /// A proxy with TLS to the database and identity logins as given.
    pub async fn start_full(
        tls: Option<Arc<rustls::ServerConfig>>,
        upstream: &str,
        upstream_tls: Option<UpstreamTlsConfig>,
        identity: IdentityOptions,
    ) -> Self {
        let budget = (LargeMessageBudget::new(LARGE_MESSAGE_BUDGET), LARGE_MESSAGE_STALL);
        Self::start_inner(tls, upstream, upstream_tls, identity, budget, usize::MAX, Duration::ZERO).await
    }

    async fn start_inner(
        tls: Option<Arc<rustls::ServerConfig>>,
        upstream: &str,
        upstream_tls: Option<UpstreamTlsConfig>,
        identity: IdentityOptions,
        (large_messages, large_message_stall): (Arc<LargeMessageBudget>, Duration),
        report_bound: usize,
        drain: Duration,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, events) = Reporter::channel_bounded(report_bound);
        let live = Arc::new(LiveSessions::new());
        let metrics = Arc::new(Metrics::default());
        let cancels = Arc::new(CancelMap::new());
        let ctx = Arc::new(ProxyContext {
            resource_id: RESOURCE.into(),
            upstream: upstream.into(),
            reporter,
            live: Arc::clone(&live),
            metrics: Arc::clone(&metrics),
            tls,
            cancels: Arc::clone(&cancels),
            upstream_tls,
            identity,
            large_messages,
            large_message_stall,
            drain,
            end_drain: CancellationToken::new(),
        });
        let (shutdown, end_drain) = (CancellationToken::new(), ctx.end_drain.clone());
        let task = tokio::spawn(serve(listener, ctx, shutdown.clone()));
        let started = HashSet::new();
        Self { addr, events, live, metrics, cancels, shutdown, end_drain, task, stash: Vec::new(), started }
    }

    /// A libpq connection string through the proxy.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=test", self.addr.port())
    }

    pub fn config(&self) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = self.conninfo().parse().unwrap();
        config.application_name("gatehouse-test");
        config
    }

    /// A tokio-postgres client through the proxy; its connection runs in a task.
    pub async fn connect(&self) -> (Client, JoinHandle<Result<(), tokio_postgres::Error>>) {
        let (client, connection) = self.config().connect(NoTls).await.unwrap();
        (client, tokio::spawn(connection))
    }

    pub async fn next_event(&mut self) -> SessionEvent {
        let record =
            tokio::time::timeout(PATIENCE, self.events.recv()).await.expect("no event in time").expect("events closed");
        record.decode().expect("an encoded event")
    }

    /// The first session to end, with all its events.
    pub async fn ended_session(&mut self) -> Recorded {
        loop {
            let ended = self.stash.iter().find(|e| matches!(e.kind, EventKind::End(_))).map(|e| e.session_id.clone());
            if let Some(id) = ended {
                let (mine, rest): (Vec<_>, Vec<_>) = self.stash.drain(..).partition(|e| e.session_id == id);
                self.stash = rest;
                return recorded(mine);
            }
            let event = self.next_event().await;
            self.stash.push(event);
        }
    }

    /// The start of the next session, leaving its events for [`ended_session`](Self::ended_session).
    pub async fn started_session(&mut self) -> (String, SessionStart) {
        loop {
            let started = self.stash.iter().find_map(|e| match &e.kind {
                EventKind::Start(start) if !self.started.contains(&e.session_id) => {
                    Some((e.session_id.clone(), start.clone()))
                }
                _ => None,
            });
            if let Some(found) = started {
                self.started.insert(found.0.clone());
                return found;
            }
            let event = self.next_event().await;
            self.stash.push(event);
        }
    }

    /// The next statement announced while it runs, leaving it for [`ended_session`](Self::ended_session).
    pub async fn next_running(&mut self) -> RunningStatement {
        loop {
            let event = self.next_event().await;
            let running = match &event.kind {
                EventKind::Running(running) => Some(running.clone()),
                _ => None,
            };
            self.stash.push(event);
            if let Some(running) = running {
                return running;
            }
        }
    }

    /// Asserts that no event arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(record) = tokio::time::timeout(wait, self.events.recv()).await {
            panic!("unexpected event: {:?}", record.map(|r| r.decode()));
        }
        assert!(self.stash.is_empty(), "unexpected events: {:?}", self.stash);
    }

    pub fn counter(&self, pick: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        pick(&self.metrics).load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn recorded(events: Vec<SessionEvent>) -> Recorded {
    let id = events[0].session_id.clone();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64, "events out of order: {events:?}");
    }
    let mut events = events.into_iter();
    let Some(EventKind::Start(start)) = events.next().map(|e| e.kind) else { panic!("first event is not a start") };
    let (mut statements, mut running) = (Vec::new(), Vec::new());
    for event in events {
        match event.kind {
            EventKind::Statement(s) => statements.push(s),
            EventKind::Running(r) => running.push((event.seq, r)),
            EventKind::End(end) => return Recorded { id, start, statements, running, end },
            EventKind::Start(_) => panic!("a second start"),
        }
    }
    panic!("no end")
}

/// A direct connection to the database, for checks behind the proxy's back.
pub async fn direct() -> Client {
    let (client, connection) =
        tokio_postgres::connect("host=127.0.0.1 port=5432 user=postgres dbname=test", NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A name no other test uses, for tables in the shared database.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    h.finish() as u32
}

/// Waits until `check` holds, polling every 50 ms, up to [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Backends of the real server running a query that contains `marker`.
pub async fn backends_running(direct: &Client, marker: &str) -> Vec<i32> {
    let rows = direct
        .query(
            "select pid from pg_stat_activity where query like '%' || $1 || '%' and pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// A hand-driven protocol connection, for what no client library sends.
pub struct Raw<S> {
    pub stream: S,
    pub reader: MessageReader,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    pub fn new(stream: S) -> Self {
        Self { stream, reader: MessageReader::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next message, or `None` at a clean end of stream.
    pub async fn recv(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.reader.read_message(&mut self.stream))
            .await
            .expect("no message in time")
            .ok()?
    }

    /// Sends a StartupMessage and reads up to ReadyForQuery; returns the key the client got.
    pub async fn startup(&mut self) -> BackendKeyData {
        let params = vec![("user".into(), "postgres".into()), ("database".into(), "test".into())];
        let startup = StartupMessage::new(PROTOCOL_3_0, params).unwrap();
        self.send(startup.frame()).await;
        let mut key = None;
        loop {
            let msg = self.recv().await.expect("closed during startup");
            match msg.tag() {
                b'K' => key = Some(msg.decode::<BackendKeyData>().unwrap()),
                b'E' => panic!("startup failed: {:?}", msg.decode::<ErrorResponse>().unwrap()),
                b'Z' => return key.expect("no BackendKeyData"),
                _ => {}
            }
        }
    }

    /// Reads until an ErrorResponse and returns it.
    pub async fn error(&mut self) -> ErrorResponse {
        loop {
            let msg = self.recv().await.expect("closed before an error");
            if msg.tag() == b'E' {
                return msg.decode::<ErrorResponse>().unwrap();
            }
        }
    }

    /// Runs a simple query and returns the first column of its rows as text.
    pub async fn query(&mut self, sql: &str) -> Vec<String> {
        let mut buf = BytesMut::new();
        gatehouse_pgwire::Encode::encode(&gatehouse_pgwire::frontend::Query::new(sql), &mut buf);
        self.send(&buf).await;
        let mut values = Vec::new();
        loop {
            let msg = self.recv().await.expect("closed during a query");
            match msg.tag() {
                b'D' => {
                    let p = msg.payload();
                    let len = i32::from_be_bytes([p[2], p[3], p[4], p[5]]) as usize;
                    values.push(String::from_utf8(p[6..6 + len].to_vec()).unwrap());
                }
                b'E' => panic!("query failed: {:?}", msg.decode::<ErrorResponse>().unwrap()),
                b'Z' => return values,
                _ => {}
            }
        }
    }
}

impl Raw<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::new(TcpStream::connect(addr).await.unwrap())
    }
}

/// The SQLSTATE of a tokio-postgres error.
pub fn sqlstate(error: &tokio_postgres::Error) -> String {
    error.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no sqlstate: {error}"))
}

/// A PostgreSQL cluster of our own, started from the machine's binaries in a temporary
/// directory with the `pg_hba.conf` a test needs (the shared server trusts every local
/// connection, so password methods cannot be exercised there). Stopped when dropped.
///
/// PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
pub struct PrivateCluster {
    pub port: u16,
    dir: tempfile::TempDir,
    bindir: std::path::PathBuf,
}

impl PrivateCluster {
    pub fn start(hba: &str) -> Self {
        use std::process::Command;
        let out = Command::new("pg_config").arg("--bindir").output().expect("pg_config is needed");
        let bindir = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { port, dir, bindir };
        let status = Command::new("chown").arg("postgres").arg(cluster.dir.path()).status().unwrap();
        assert!(status.success(), "cannot hand the cluster directory to the postgres user");
        let data = cluster.data();
        cluster.run_as_postgres("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"]);
        std::fs::write(cluster.dir.path().join("data/pg_hba.conf"), hba).unwrap();
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", cluster.socket_dir());
        let log = cluster.dir.path().join("log").display().to_string();
        cluster.run_as_postgres("pg_ctl", &["-D", &data, "-o", &options, "-l", &log, "-w", "start"]);
        cluster
    }

    /// `host:port` for the proxy's upstream.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs SQL as the superuser over the Unix socket (trusted).
    pub fn psql(&self, sql: &str) {
        let port = self.port.to_string();
        let out = std::process::Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", &self.socket_dir(), "-p", &port, "-U", "postgres", "-d"])
            .args(["postgres", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn socket_dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn run_as_postgres(&self, program: &str, args: &[&str]) {
        let program = self.bindir.join(program);
        let is_root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        let out = if is_root {
            std::process::Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            std::process::Command::new(&program).args(args).output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bindir.join("pg_ctl");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}
