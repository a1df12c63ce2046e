//! Access that lasts only while it would still be given: the sessions of identity logins are
//! checked again every [`RECHECK_EVERY`], with the token they logged in with, and a session
//! whose identity may no longer log in as its role (a token revoked or expired, a user
//! disabled or deleted, a grant revoked) is terminated. Offboarding someone ends their open
//! sessions too, not only their next logins.
//!
//! The checks go through the [`Verifier`]'s cache, so sessions sharing a token cost one call,
//! and a change reaches open sessions within the cache's time plus a period; at once when the
//! connector hears a real credential refused (at a login or a check), which also empties the
//! cache. When the control plane cannot answer, sessions carry on: an outage is no revocation.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{IdentityName, Verdict, Verifier};
use crate::config::Secret;
use crate::live::{LiveSessions, Termination};

/// How often the sessions of identity logins are checked again.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// Checks in flight at once: sessions with tokens of their own each cost a call.
const CONCURRENT_CHECKS: usize = 16;

/// What an identity login was allowed with: what to ask again.
#[derive(Debug)]
pub struct Access {
    pub resource_id: String,
    /// The identity, with the native role the session has as the role it asks for: the
    /// question is whether it may still have that one (a user's only grant, taken when no
    /// role was named, stays theirs when another is granted).
    pub name: IdentityName,
    pub token: Secret,
    /// The end user the login named; empty for none.
    pub end_user: String,
}

impl Access {
    pub fn new(resource_id: &str, name: &IdentityName, native_role: &str, token: Secret, end_user: &str) -> Self {
        let name = IdentityName { role: Some(native_role.to_owned()), ..name.clone() };
        Self { resource_id: resource_id.to_owned(), name, token, end_user: end_user.to_owned() }
    }

    fn native_role(&self) -> &str {
        self.name.role.as_deref().unwrap_or_default()
    }
}

/// Checks the sessions of identity logins again every [`RECHECK_EVERY`] until `stop`.
pub async fn recheck(live: Arc<LiveSessions>, verifier: Arc<Verifier>, stop: CancellationToken) {
    let mut ticks = crate::timer::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            // A refusal of a real credential (at a login, or a check) is checked everywhere now.
            () = verifier.access_changed() => {}
            _ = ticks.tick() => {}
        }
        let round = recheck_once(&live, &verifier).await;
        match (round.unchecked, failing) {
            (0, true) => tracing::info!("the access of open sessions is checked again"),
            (n, false) if n > 0 => tracing::warn!(
                sessions = n,
                error = round.error.as_deref().unwrap_or_default(),
                "cannot check the access of open sessions; they carry on meanwhile",
            ),
            _ => {}
        }
        failing = round.unchecked > 0;
    }
}

/// What one round of checks did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Sessions terminated.
    pub revoked: usize,
    /// Sessions whose check failed: they carry on.
    pub unchecked: usize,
    /// The last failure, for the log.
    pub error: Option<String>,
}

/// Checks every session of an identity login once, a few at a time, and terminates those
/// whose access is gone. A check that fails (no answer, or an error for its resource) leaves
/// its session alone, and the others are checked all the same.
pub async fn recheck_once(live: &LiveSessions, verifier: &Verifier) -> Round {
    let sessions = live.identities();
    let checks = futures::stream::iter(sessions).map(|(session_id, access)| async move {
        let verdict = verifier.verify(&access.resource_id, &access.name, access.token.expose(), &access.end_user).await;
        (session_id, access, verdict)
    });
    let mut checks = std::pin::pin!(checks.buffer_unordered(CONCURRENT_CHECKS));
    let mut round = Round::default();
    while let Some((session_id, access, verdict)) = checks.next().await {
        let why = match verdict {
            Ok(Verdict::Allowed { native_role, .. }) if native_role == access.native_role() => continue,
            Ok(Verdict::Allowed { .. }) => denial("role_not_allowed", access.native_role()),
            Ok(Verdict::Denied { reason }) => denial(&reason, access.native_role()),
            Err(error) => {
                round.unchecked += 1;
                round.error = Some(error.to_string());
                continue;
            }
        };
        tracing::info!(session = %session_id, user = access.name.user.as_str(), %why, "access revoked: terminating the session");
        if live.terminate(&session_id, Termination::AccessRevoked { why }) {
            round.revoked += 1;
        }
    }
    round
}

/// Why, for the client, from the control plane's `denied_reason`.
fn denial(reason: &str, role: &str) -> String {
    match reason {
        "revoked_token" => "the access token was revoked".to_owned(),
        "expired_token" => "the access token expired".to_owned(),
        "disabled_user" => "the user was disabled".to_owned(),
        "unknown_user" => "the user no longer exists".to_owned(),
        "role_not_allowed" | "no_role" => format!("role \"{role}\" is no longer granted"),
        _ => "the identity may no longer log in".to_owned(),
    }
}
