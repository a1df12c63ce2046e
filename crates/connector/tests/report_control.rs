//! Heartbeats and the termination stream against the control plane stand-in.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

mod double;

use std::sync::Arc;
use std::time::Duration;

use connectrpc::ErrorCode;
use double::*;
use gatehouse_connector::live::{LiveSessions, Termination};
use gatehouse_connector::report::backoff::Backoff;
use gatehouse_connector::report::client::ControlPlane;
use gatehouse_connector::report::pipeline::KeyCheck;
use gatehouse_connector::report::resources::HelloInfo;
use gatehouse_connector::report::{heartbeat, terminations};
use gatehouse_connector::stop::{self, StopReason};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn hello(heartbeat_seconds: u32) -> Option<Arc<HelloInfo>> {
    Some(Arc::new(HelloInfo {
        connector_id: "con_test".into(),
        connector_name: "test".into(),
        heartbeat: Duration::from_secs(heartbeat_seconds.into()),
        lease_seconds: 60,
        completed_stale_sessions: 0,
        resources: Vec::new(),
    }))
}

#[tokio::test]
async fn calls_go_to_the_next_control_plane_when_one_cannot_be_reached() {
    let (first, second) = (Harness::start().await, Harness::start().await);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let urls = format!("http://{closed}, {},{}", first.url, second.url);
    let control = ControlPlane::new(&urls, KEY, None).unwrap().with_timeout(Duration::from_secs(2));
    let beat = |control: &ControlPlane| {
        let control = control.clone();
        async move { control.heartbeat("run-1", Duration::from_secs(2)).await }
    };
    // Nothing listens on the first address: the call goes on to the next, and so does every
    // later call.
    beat(&control).await.unwrap();
    beat(&control).await.unwrap();
    assert_eq!(first.plane.seen().heartbeats, ["run-1", "run-1"]);
    // One that cannot serve: the call is made again on the next, and every clone moves on.
    first.plane.set_down(true);
    beat(&control).await.unwrap();
    beat(&control.clone()).await.unwrap();
    assert_eq!(second.plane.seen().heartbeats, ["run-1", "run-1"]);
    // And round again to the first, past the closed address, when the last cannot either.
    first.plane.set_down(false);
    second.plane.set_down(true);
    beat(&control).await.unwrap();
    assert_eq!(first.plane.seen().heartbeats, ["run-1", "run-1", "run-1"]);
    // When none can, each is tried once and the call fails.
    first.plane.set_down(true);
    let failed = beat(&control).await.unwrap_err();
    assert_eq!(failed.code, ErrorCode::Unavailable, "{failed:?}");
    first.plane.set_down(false);
    beat(&control).await.unwrap();
    assert_eq!(first.plane.seen().heartbeats.len(), 4);
}

#[tokio::test]
async fn heartbeats_start_after_hello_and_carry_the_run_id() {
    let h = Harness::start().await;
    let (tx, rx) = watch::channel(None);
    let stop = CancellationToken::new();
    let (checks, mut verdicts) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(heartbeat::run(h.control(), "run-1".into(), rx, checks, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(h.plane.seen().heartbeats.is_empty(), "no heartbeat before Hello");

    tx.send_replace(hello(1));
    eventually("two heartbeats", || h.plane.seen().heartbeats.len() >= 2).await;
    assert!(h.plane.seen().heartbeats.iter().all(|run| run == "run-1"));
    assert!(matches!(verdicts.try_recv(), Ok(KeyCheck::Accepted)), "each says the key was taken");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn terminations_reach_live_sessions_across_reconnects_and_outages() {
    let h = Harness::start().await;
    let live = Arc::new(LiveSessions::new());
    let [first, second, third] = ["s1", "s2", "s3"].map(|id| {
        let (stopper, stop) = stop::signal();
        live.register(id, stopper, None);
        stop
    });
    let terminated = |reason| match reason {
        StopReason::Terminated(termination) => termination,
        other => panic!("stopped for {other:?}"),
    };
    let stop = CancellationToken::new();
    let (task, _hello, _key) = watch_terminations(&h, &live, &stop);
    let within_a_second = Duration::from_secs(1);

    h.plane.terminate("s1", "t1");
    let got = terminated(tokio::time::timeout(within_a_second, first).await.expect("in time"));
    assert_eq!(got, Termination::Requested { termination_id: "t1".into(), reason: "by test".into() });

    // The stand-in ends each stream after one termination: the watch reopens it.
    h.plane.terminate("s2", "t2");
    let got = terminated(tokio::time::timeout(within_a_second, second).await.expect("in time"));
    assert_eq!(got, Termination::Requested { termination_id: "t2".into(), reason: "by test".into() });

    // An outage, then the stream comes back.
    h.plane.set_down(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.plane.set_down(false);
    h.plane.terminate("gone", "t3");
    h.plane.terminate("s3", "t4");
    let got = terminated(tokio::time::timeout(Duration::from_secs(2), third).await.expect("in time"));
    assert_eq!(got, Termination::Requested { termination_id: "t4".into(), reason: "by test".into() });
    assert!(live.is_empty());

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), task).await.unwrap().unwrap();
}

/// The termination stream of run `run-1` into `live`, with the short backoff of outages the
/// tests use; the senders of its Hello and of whether its key is refused.
fn watch_terminations(
    h: &Harness,
    live: &Arc<LiveSessions>,
    stop: &CancellationToken,
) -> (tokio::task::JoinHandle<()>, watch::Sender<Option<Arc<HelloInfo>>>, watch::Sender<bool>) {
    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    let (hello_tx, rx) = watch::channel(hello(1));
    let (key, refusing) = watch::channel(false);
    let task = tokio::spawn(terminations::run(
        h.control(),
        "run-1".into(),
        rx,
        refusing,
        Arc::clone(live),
        backoff,
        stop.clone(),
    ));
    (task, hello_tx, key)
}

/// A key the control plane refuses (revoked) cannot be fixed by asking again: the termination
/// stream is reopened less and less often (up to every 30 s), and at once when the key is
/// taken again (as the heartbeat finds it).
#[tokio::test]
async fn a_refused_key_slows_the_termination_stream_until_it_is_taken_again() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = Harness::start().await;
    h.plane.refuse_key.store(true, SeqCst);
    let live = Arc::new(LiveSessions::new());
    let (stopper, terminated) = stop::signal();
    live.register("s1", stopper, None);
    let stop = CancellationToken::new();
    let (task, _hello, key) = watch_terminations(&h, &live, &stop);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let attempts = h.plane.seen().watches;
    // At 0 s, 1 s and 3 s.
    assert_eq!(attempts, 2, "{attempts} attempts in 2.5 s with the key refused");

    // The heartbeat finds the key refused; later, taken again: the stream reopens at once, not
    // at the next attempt (3 s).
    key.send_replace(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.plane.refuse_key.store(false, SeqCst);
    key.send_replace(false);
    h.plane.terminate("s1", "t1");
    tokio::time::timeout(Duration::from_millis(300), terminated).await.expect("the stream reopens at once");
    assert_eq!(h.plane.seen().watches, 3);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), task).await.unwrap().unwrap();
}
