//! `runtime::run` end to end against the control plane stand-in: startup,
//! the resource cache, startup errors, and a graceful stop.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

mod double;
mod proxy_harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use double::*;
use gatehouse_connector::config::{Config, Peer};
use gatehouse_connector::runtime::{self, RunError};
use gatehouse_pgwire::backend::ErrorResponse;
use gatehouse_pgwire::frontend::Query;
use gatehouse_pgwire::{CancelRequest, Encode, Startup};
use proxy_harness::{Raw, backends_running, direct, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn config(h: &Harness, state_dir: &Path, listeners: &str, admin: SocketAddr) -> Config {
    let env: HashMap<&str, String> = HashMap::from([
        ("GATEHOUSE_URL", h.url.clone()),
        ("GATEHOUSE_CONNECTOR_KEY", KEY.to_owned()),
        ("GATEHOUSE_CONNECTOR_LISTENERS", listeners.to_owned()),
        ("GATEHOUSE_CONNECTOR_ADMIN_LISTEN", admin.to_string()),
        ("GATEHOUSE_CONNECTOR_STATE_DIR", state_dir.display().to_string()),
    ]);
    Config::load_with_env(None, |name| env.get(name).cloned()).unwrap()
}

struct Running {
    admin: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RunError>>,
}

fn start(config: Config) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let admin = config.admin_listen;
    let task = tokio::spawn(runtime::run(config, async move {
        let _ = stopped.await;
    }));
    Running { admin, stop, task }
}

impl Running {
    async fn wait_healthy(&self) {
        let url = format!("http://{}/health", self.admin);
        for _ in 0..1500 {
            assert!(!self.task.is_finished(), "the connector stopped while starting");
            if let Ok(response) = reqwest::get(&url).await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the connector did not become healthy");
    }

    async fn shutdown(self) -> Result<(), RunError> {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("stops in time").unwrap()
    }
}

#[tokio::test]
async fn serves_until_shutdown_and_caches_the_resources() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let running = start(config(&h, dir.path(), &format!("{listen}=res_a"), free_addr()));
    running.wait_healthy().await;

    assert_eq!(h.plane.seen().hellos.len(), 1);
    // Written off the relay's thread, possibly just after the connector reports healthy.
    let mut cached = String::new();
    for _ in 0..100 {
        cached = std::fs::read_to_string(dir.path().join("resources.json")).unwrap_or_default();
        if !cached.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cached.contains("\"res_a\""), "{cached}");
    tokio::net::TcpStream::connect(listen).await.expect("the listener accepts");
    let metrics = reqwest::get(format!("http://{}/metrics", running.admin)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_connector_connections_total"), "{metrics}");

    let admin = running.admin;
    running.shutdown().await.unwrap();
    assert!(reqwest::get(format!("http://{admin}/health")).await.is_err(), "the admin port is closed");
    assert!(tokio::net::TcpStream::connect(listen).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn restarts_with_the_control_plane_down_from_the_cached_resources() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listeners = format!("{}=res_a", free_addr());
    let running = start(config(&h, dir.path(), &listeners, free_addr()));
    running.wait_healthy().await;
    running.shutdown().await.unwrap();

    h.plane.set_down(true);
    let started = now_us();
    let running = start(config(&h, dir.path(), &listeners, free_addr()));
    running.wait_healthy().await;
    assert_eq!(h.plane.seen().hellos.len(), 1, "the second run has not said Hello");
    // Never heard, it knows itself alive all the same.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.shutdown().await.unwrap();
    let stopped = now_us();
    assert_eq!(h.plane.seen().goodbyes.len(), 1, "only the first run could say goodbye");

    // The second run stopped without a word with the control plane: the third takes over
    // from it, and from it only, and says when it was last alive.
    h.plane.set_down(false);
    let running = start(config(&h, dir.path(), &listeners, free_addr()));
    running.wait_healthy().await;
    let seen = h.plane.seen();
    assert_eq!(seen.hello_previous.len(), 2);
    assert_eq!(seen.hello_previous[1].len(), 1, "{:?}", seen.hello_previous);
    assert_ne!(seen.hello_previous[1][0], seen.hellos[0].0);
    let [(run, alive)] = &seen.hello_alive[1][..] else { panic!("{:?}", seen.hello_alive) };
    assert_eq!(run, &seen.hello_previous[1][0]);
    assert!((started + 1_000_000..=stopped).contains(alive), "{alive} not within the run's last second");
    running.shutdown().await.unwrap();
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// A clean stop tells the control plane the run is over, so the next has nothing to take
/// over; a run whose goodbye went unheard is taken over by the next.
#[tokio::test]
async fn a_clean_stop_says_goodbye() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listeners = format!("{}=res_a", free_addr());
    for _ in 0..2 {
        let running = start(config(&h, dir.path(), &listeners, free_addr()));
        running.wait_healthy().await;
        running.shutdown().await.unwrap();
    }
    let seen = h.plane.seen();
    let runs: Vec<&String> = seen.hellos.iter().map(|(run, _)| run).collect();
    assert_eq!(seen.goodbyes.iter().collect::<Vec<_>>(), runs, "each run said goodbye");
    assert_eq!(seen.hello_previous, [Vec::<String>::new(), Vec::new()], "nothing to take over");

    // Registered, then the control plane goes away before the goodbye.
    let running = start(config(&h, dir.path(), &listeners, free_addr()));
    running.wait_healthy().await;
    let unheard = h.plane.seen().hellos[2].0.clone();
    h.plane.set_down(true);
    running.shutdown().await.unwrap();
    h.plane.set_down(false);
    let running = start(config(&h, dir.path(), &listeners, free_addr()));
    running.wait_healthy().await;
    assert_eq!(h.plane.seen().hello_previous[3], [unheard]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_resource_is_a_startup_error() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let result =
        runtime::run(config(&h, dir.path(), &format!("{listen}=res_zzz"), free_addr()), std::future::pending()).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains(&listen.to_string()) && error.contains("res_zzz") && error.contains("res_a"), "{error}");
}

#[tokio::test]
async fn a_taken_port_is_a_startup_error_naming_it() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let result =
        runtime::run(config(&h, dir.path(), &format!("{addr}=res_a"), free_addr()), std::future::pending()).await;
    let error = result.unwrap_err().to_string();
    assert!(error.starts_with(&format!("cannot listen on {addr} (listener)")), "{error}");
}

#[tokio::test]
async fn a_state_dir_that_is_a_file_is_named_so() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state");
    std::fs::write(&file, "").unwrap();
    let result =
        runtime::run(config(&h, &file, &format!("{}=res_a", free_addr()), free_addr()), std::future::pending()).await;
    let error = result.unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "the state directory {} is a file, not a directory: set state_dir (or GATEHOUSE_CONNECTOR_STATE_DIR) \
             to a directory, or to a path where one can be made",
            file.display()
        )
    );
}

/// A first start with the control plane down and nothing cached cannot know where a
/// listener's database is: clients wait a while (it may answer), then are refused with a
/// reason, as PostgreSQL refuses them while it starts, instead of hanging.
#[tokio::test]
async fn clients_of_an_unresolved_listener_are_refused_with_a_reason() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let running = start(config(&h, dir.path(), &format!("{listen}=res_a"), free_addr()));
    tokio::time::sleep(runtime::REFUSE_AFTER + Duration::from_millis(500)).await;
    let url = format!("host={} port={} user=alice dbname=db connect_timeout=5", listen.ip(), listen.port());
    let error = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.err().expect("refused");
    let error = error.as_db_error().expect("a PostgreSQL error");
    assert_eq!(error.code().code(), "57P03");
    assert!(error.message().contains("res_a") && error.message().contains("starting"), "{}", error.message());
    let metrics = reqwest::get(format!("http://{}/metrics", running.admin)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_connector_connections_refused_total 1"), "{metrics}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn clients_waiting_when_the_connector_stops_while_starting_are_told_why() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let running = start(config(&h, dir.path(), &format!("{listen}=res_a"), free_addr()));
    // The admin port is bound after the listeners: once it answers, clients queue.
    let health = format!("http://{}/health", running.admin);
    while reqwest::get(&health).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = format!("host={} port={} user=alice dbname=db connect_timeout=10", listen.ip(), listen.port());
    let client = tokio::spawn(async move { tokio_postgres::connect(&url, tokio_postgres::NoTls).await.err() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.shutdown().await.unwrap();
    let error = client.await.unwrap().expect("refused");
    let error = error.as_db_error().unwrap_or_else(|| panic!("a PostgreSQL error, not {error}"));
    assert_eq!(error.code().code(), "57P01");
    assert!(error.message().contains("shutting down"), "{}", error.message());
}

/// Sends `packet` (a CancelRequest) to `to` and waits until the connection closes, as libpq
/// does: the cancel was handled by then.
async fn cancel(to: SocketAddr, packet: Startup) {
    let mut bytes = BytesMut::new();
    packet.encode(&mut bytes);
    let mut stream = tokio::net::TcpStream::connect(to).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await.unwrap().unwrap();
}

/// Connectors behind one address (a load balancer): a client's cancel, on a connection of its
/// own, may land on another connector of the group than its session's. That one passes it to
/// the connector whose key it is (the key's first byte), once: what a peer passed on is not
/// passed again, so that peers configured wrong cannot bounce it between them.
#[tokio::test]
async fn a_cancel_reaching_another_connector_of_the_group_is_passed_to_its_sessions() {
    let h = Harness::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (listen_a, listen_b) = (free_addr(), free_addr());
    let mut config_a = config(&h, dir_a.path(), &format!("{listen_a}=res_a"), free_addr());
    (config_a.peer_id, config_a.peers) = (Some(1), vec![Peer { id: 2, address: listen_b.to_string() }]);
    let mut config_b = config(&h, dir_b.path(), &format!("{listen_b}=res_a"), free_addr());
    (config_b.peer_id, config_b.peers) = (Some(2), vec![Peer { id: 1, address: listen_a.to_string() }]);
    let (a, b) = (start(config_a), start(config_b));
    a.wait_healthy().await;
    b.wait_healthy().await;

    let mut raw = Raw::connect(listen_a).await;
    let key = raw.startup().await;
    assert_eq!(key.secret_key[0], 1, "a key names its connector");
    let marker = unique("gh_peer_cancel");
    let mut query = BytesMut::new();
    Query::new(format!("select pg_sleep(30) /* {marker} */")).encode(&mut query);
    raw.send(&query).await;
    let check = direct().await;
    while backends_running(&check, &marker).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = CancelRequest { pid: key.pid, secret_key: key.secret_key.clone() };

    // As a peer would pass it: B does not pass it on, and the query runs on.
    cancel(listen_b, Startup::PeerCancel(request.clone())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!backends_running(&check, &marker).await.is_empty(), "a cancel passed on was passed again");

    // As a client sends it, to B: passed to A, which cancels the query.
    cancel(listen_b, Startup::Cancel(request)).await;
    let error = loop {
        let msg = raw.recv().await.expect("the session goes on");
        if msg.tag() == b'E' {
            break msg.decode::<ErrorResponse>().unwrap();
        }
    };
    assert_eq!(error.code(), Some("57014"), "{error:?}");
    drop(raw);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
