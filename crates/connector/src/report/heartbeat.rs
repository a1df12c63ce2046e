//! Renews the connector's lease while it runs, so the control plane does not
//! complete its sessions as ghosts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::client::ControlPlane;
use super::pipeline::{KeyCheck, refuses_key};
use super::resources::HelloInfo;
use crate::timer;

/// Used when the control plane does not say.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// Waits for the first successful `Hello`, then heartbeats as often as it said until `stop`.
/// Failures are logged once per outage; what each answer says of the key goes to `key_checks`.
pub async fn run(
    control: ControlPlane,
    run_id: String,
    mut hello: watch::Receiver<Option<Arc<HelloInfo>>>,
    key_checks: mpsc::UnboundedSender<KeyCheck>,
    stop: CancellationToken,
) {
    let Some(info) = wait_hello(&mut hello, &stop).await else { return };
    let period = info.heartbeat;
    let mut ticker = timer::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
            // A key refused where the termination stream goes: asked of every replica now.
            () = control.key_doubted() => ticker.reset(),
        }
        match control.heartbeat(&run_id, period).await {
            Ok(()) => {
                let _ = key_checks.send(KeyCheck::Accepted);
                if failing {
                    tracing::info!("heartbeats reach the control plane again");
                }
                failing = false;
            }
            Err(error) if refuses_key(&error) => {
                let _ = key_checks.send(KeyCheck::Refused(error));
                failing = true;
            }
            Err(error) => {
                if !failing {
                    // How many addresses were tried: with one, there is no replica to move to.
                    tracing::warn!(
                        code = error.code.as_str(),
                        error = gatehouse_tls::chain(&error),
                        replicas = control.replicas(),
                        "heartbeat failed; retrying every {period:?}"
                    );
                }
                failing = true;
            }
        }
    }
}

/// The first `Hello` answer, or `None` if `stop` comes first.
pub async fn wait_hello(
    hello: &mut watch::Receiver<Option<Arc<HelloInfo>>>,
    stop: &CancellationToken,
) -> Option<Arc<HelloInfo>> {
    tokio::select! {
        () = stop.cancelled() => None,
        info = hello.wait_for(Option::is_some) => info.ok().and_then(|info| info.clone()),
    }
}
