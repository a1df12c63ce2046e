//! Terminations requested at the control plane reach the sessions here: a
//! server stream, reopened with backoff whenever it breaks.

use std::sync::Arc;
use std::time::Duration;

use connectrpc::ConnectError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::client::ControlPlane;
use super::heartbeat::wait_hello;
use super::resources::HelloInfo;
use crate::live::{LiveSessions, Termination};
use crate::timer;

/// A stream that lived this long was healthy: the next break retries at once.
const HEALTHY_STREAM: Duration = Duration::from_secs(5);

/// How often an open stream checks that the other calls still go to its control plane.
const REPLICA_CHECK: Duration = Duration::from_secs(1);

/// Waits for the first successful `Hello`, then watches terminations until
/// `stop`, ending each named session through [`LiveSessions::terminate`].
pub async fn run(
    control: ControlPlane,
    run_id: String,
    mut hello: watch::Receiver<Option<Arc<HelloInfo>>>,
    live: Arc<LiveSessions>,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
    if wait_hello(&mut hello, &stop).await.is_none() {
        return;
    }
    let mut failing = false;
    loop {
        let opened = tokio::time::Instant::now();
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = watch(&control, &run_id, &live, &mut failing) => result,
        };
        if opened.elapsed() >= HEALTHY_STREAM {
            backoff.reset();
        }
        match result {
            Ok(()) => tracing::debug!("termination stream ended; reopening"),
            Err(error) if !failing => {
                tracing::warn!(code = error.code.as_str(), %error, "termination stream broken; reopening with backoff");
                failing = true;
            }
            Err(error) => tracing::debug!(%error, "termination stream still unavailable"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = timer::sleep(backoff.next_wait()) => {}
        }
    }
}

async fn watch(
    control: &ControlPlane,
    run_id: &str,
    live: &LiveSessions,
    failing: &mut bool,
) -> Result<(), ConnectError> {
    let mut stream = control.watch_terminations(run_id).await?;
    let replica = control.current_replica();
    if std::mem::take(failing) {
        tracing::info!("termination stream open again");
    }
    // A replica that hangs keeps the stream open and silent: once the other calls (heartbeats,
    // reports) found it unreachable and moved on, the stream follows them.
    let mut replica_check = timer::interval_at(tokio::time::Instant::now() + REPLICA_CHECK, REPLICA_CHECK);
    loop {
        let message = tokio::select! {
            message = stream.message() => message?,
            _ = replica_check.tick() => {
                if control.current_replica() == replica {
                    continue;
                }
                tracing::info!("the control plane's other calls moved to another replica: reopening the termination stream there");
                return Ok(());
            }
        };
        let Some(message) = message else { return Ok(()) };
        let t = message.to_owned_message();
        let termination = Termination::Requested { termination_id: t.termination_id.clone(), reason: t.reason };
        let found = live.terminate(&t.session_id, termination);
        if found {
            tracing::info!(session_id = %t.session_id, termination_id = %t.termination_id, "terminating session");
        } else {
            tracing::debug!(session_id = %t.session_id, termination_id = %t.termination_id, "termination for a session not live here");
        }
    }
}
