//! Terminations requested at the control plane reach the sessions here: a
//! server stream, reopened with backoff whenever it breaks.

use std::sync::Arc;
use std::time::Duration;

use connectrpc::ConnectError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::client::{ControlPlane, refuses_key};
use super::heartbeat::wait_hello;
use super::resources::HelloInfo;
use crate::live::{LiveSessions, Termination};
use crate::timer;

/// A stream that lived this long was healthy: the next break retries at once.
const HEALTHY_STREAM: Duration = Duration::from_secs(5);

/// How often an open stream checks that the other calls still go to its control plane, and
/// that its control plane still says it is alive.
const REPLICA_CHECK: Duration = Duration::from_secs(1);

/// A control plane says every second that a quiet stream is alive (a termination that names no
/// session). One that said so and then fell silent this long hangs (stopped, overloaded): the
/// stream moves on to the next replica, so that terminations asked of the others still arrive,
/// without waiting for a heartbeat to time out. One that never said so is an older one, whose
/// streams are quiet.
const SILENCE: Duration = Duration::from_secs(3);

/// The first wait after the control plane refused the connector's key, doubling up to
/// [`KEY_REFUSED_RETRY_MAX`]: asking again cannot help until someone fixes the key, and the
/// heartbeat says when they did (see [`run`]).
const KEY_REFUSED_RETRY_MIN: Duration = Duration::from_secs(1);
const KEY_REFUSED_RETRY_MAX: Duration = Duration::from_secs(30);

/// Waits for the first successful `Hello`, then watches terminations until
/// `stop`, ending each named session through [`LiveSessions::terminate`].
/// `backoff` paces the attempts after a break or an outage; while the control plane refuses
/// the key, they slow down to every 30 s, and the next comes at once when `key_refused` (the
/// report loop's view, from reports and heartbeats) says the key is taken again.
pub async fn run(
    control: ControlPlane,
    run_id: String,
    mut hello: watch::Receiver<Option<Arc<HelloInfo>>>,
    mut key_refused: watch::Receiver<bool>,
    live: Arc<LiveSessions>,
    backoff: Backoff,
    stop: CancellationToken,
) {
    if wait_hello(&mut hello, &stop).await.is_none() {
        return;
    }
    let mut reopen = Reopen::new(backoff);
    loop {
        // What the report loop learns from here on tells whether this attempt is out of date.
        key_refused.borrow_and_update();
        let opened = tokio::time::Instant::now();
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = watch(&control, &run_id, &live, &mut reopen) => result,
        };
        if let Err(error) = &result
            && refuses_key(error)
        {
            control.doubt_key();
        }
        let wait = reopen.after(result, opened.elapsed());
        tokio::select! {
            () = stop.cancelled() => return,
            () = timer::sleep(wait) => {}
            () = key_taken_again(&mut key_refused), if reopen.health == Health::KeyRefused => {}
        }
    }
}

/// How the stream fares: only a change is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Open,
    /// An outage, or a break.
    Broken,
    /// The control plane refuses the connector's key (revoked, rotated).
    KeyRefused,
}

/// When to open the stream again, and what to say about it.
#[derive(Debug)]
struct Reopen {
    health: Health,
    /// After a break or an outage: short, so that a termination asked for just after a
    /// control-plane restart arrives soon.
    broken: Backoff,
    /// While the key is refused.
    refused: Backoff,
}

impl Reopen {
    fn new(broken: Backoff) -> Self {
        Self { health: Health::Open, broken, refused: Backoff::new(KEY_REFUSED_RETRY_MIN, KEY_REFUSED_RETRY_MAX) }
    }

    /// The stream is open: it brought a termination, or stayed up for a while. Not as soon as
    /// it is answered: a refusal (of the key, say) comes at the end of a stream answered with
    /// its headers, so a stream refused at once looked open each time, which reset the wait
    /// and logged the refusal again at every attempt.
    fn opened(&mut self) {
        if std::mem::replace(&mut self.health, Health::Open) != Health::Open {
            tracing::info!("termination stream open again");
        }
        self.refused.reset();
    }

    /// The wait before the next attempt, after a stream that ended with `result` having lived
    /// `lived` (nothing for one that never opened).
    fn after(&mut self, result: Result<(), ConnectError>, lived: Duration) -> Duration {
        if lived >= HEALTHY_STREAM {
            self.broken.reset();
        }
        let error = match result {
            Ok(()) => {
                tracing::debug!("termination stream ended; reopening");
                return self.broken.next_wait();
            }
            Err(error) => error,
        };
        let health = if refuses_key(&error) { Health::KeyRefused } else { Health::Broken };
        let changed = std::mem::replace(&mut self.health, health) != health;
        match (health, changed) {
            (Health::KeyRefused, true) => tracing::warn!(
                %error,
                "termination stream refused: the control plane refuses this connector's key; retrying up to \
                 every {KEY_REFUSED_RETRY_MAX:?}, and at once when the key is taken again"
            ),
            // Said once; the report loop repeats the refusal at error level now and then.
            (Health::KeyRefused, false) => {}
            (_, true) => {
                tracing::warn!(code = error.code.as_str(), %error, "termination stream broken; reopening with backoff")
            }
            (_, false) => tracing::debug!(%error, "termination stream still unavailable"),
        }
        match health {
            Health::KeyRefused => self.refused.next_wait(),
            _ => self.broken.next_wait(),
        }
    }
}

/// Resolves when `key_refused` changes to false: the key is taken again, a change the caller
/// had not seen. Never resolves once the report loop is gone.
async fn key_taken_again(key_refused: &mut watch::Receiver<bool>) {
    while key_refused.changed().await.is_ok() {
        if !*key_refused.borrow_and_update() {
            return;
        }
    }
    std::future::pending().await
}

async fn watch(
    control: &ControlPlane,
    run_id: &str,
    live: &LiveSessions,
    reopen: &mut Reopen,
) -> Result<(), ConnectError> {
    let mut stream = control.watch_terminations(run_id).await?;
    let replica = control.current_replica();
    // A replica that hangs keeps the stream open and silent: once it stopped saying it is alive,
    // or the other calls (heartbeats, reports) found it unreachable and moved on, the stream
    // moves too.
    let mut replica_check = timer::interval_at(tokio::time::Instant::now() + REPLICA_CHECK, REPLICA_CHECK);
    let mut last_alive: Option<tokio::time::Instant> = None;
    loop {
        let message = tokio::select! {
            message = stream.message() => message?,
            _ = replica_check.tick() => {
                if last_alive.is_some_and(|at| at.elapsed() >= SILENCE) {
                    control.leave_replica(replica, "its termination stream fell silent");
                    return Ok(());
                }
                if control.current_replica() == replica {
                    reopen.opened();
                    continue;
                }
                tracing::info!("the control plane's other calls moved to another replica: reopening the termination stream there");
                return Ok(());
            }
        };
        let Some(message) = message else { return Ok(()) };
        reopen.opened();
        last_alive = Some(tokio::time::Instant::now());
        if message.session_id().is_empty() {
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_backs_off_to_its_ceiling_and_an_open_stream_starts_over() {
        let ms = Duration::from_millis;
        let mut reopen = Reopen::new(Backoff::new(ms(100), ms(1000)));
        let refused = || Err(ConnectError::new(connectrpc::ErrorCode::Unauthenticated, "revoked"));
        let waits: Vec<_> = (0..7).map(|_| reopen.after(refused(), Duration::ZERO)).collect();
        let s = Duration::from_secs;
        assert_eq!(waits, [s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
        assert_eq!(reopen.health, Health::KeyRefused);
        // An outage is waited out at the pace of outages.
        let down = Err(ConnectError::new(connectrpc::ErrorCode::Unavailable, "down"));
        assert_eq!(reopen.after(down, Duration::ZERO), ms(100));
        assert_eq!(reopen.health, Health::Broken);
        reopen.opened();
        assert_eq!(reopen.health, Health::Open);
        assert_eq!(reopen.after(refused(), Duration::ZERO), s(1), "a new refusal starts over");
    }
}
