//! Termination notices across replicas, over LISTEN/NOTIFY.
//!
//! `create_termination` inserts the row and calls `pg_notify` in the same
//! statement, so a notice goes out exactly when (and only if) the row
//! commits. Each replica's feed LISTENs on a connection of its own, from a
//! one-connection pool beside the store's, so that the feed never takes one
//! of the store's connections and the configured pool size means what it says.
//!
//! NOTIFY is fire-and-forget: a notice sent while a listener is disconnected
//! (database restart, `pg_terminate_backend`, network) is lost. So every
//! (re)connection starts with [`TerminationNotice::Resync`], after LISTEN took
//! effect, and the relay re-reads pending terminations from the table.

use std::time::Duration;

use gatehouse_core::OrgId;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Executor, PgPool};
use tokio::sync::mpsc;

use super::PgStore;
use crate::model::TerminationRecord;
use crate::{TerminationFeed, TerminationNotice};

/// The channel terminations are announced on; the payload is a JSON object
/// (see [`parse`]), well under PostgreSQL's 8000-byte payload limit since the
/// reason is cut to 1000 characters in the payload (the row keeps it whole).
pub(super) const CHANNEL: &str = "gatehouse_terminations";

/// `pg_notify` arguments for an inserted termination row `t`.
pub(super) const NOTIFY_PAYLOAD_SQL: &str = "json_build_object('id', t.id, 'org', t.org_id, \
     'session', t.session_id, 'connector', t.connector_id, 'reason', left(t.reason, 1000), \
     'created', t.created_us)::text";

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the listening connection may stay quiet before it is asked to answer, and how
/// long it then has.
const PROBE_AFTER: Duration = Duration::from_secs(15);
const PROBE_PATIENCE: Duration = Duration::from_secs(5);

impl PgStore {
    pub(super) fn termination_feed_impl(&self) -> TerminationFeed {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(run(self.pool.connect_options(), sender));
        receiver
    }
}

/// Listens until the receiver is dropped, reconnecting with backoff.
async fn run(options: std::sync::Arc<PgConnectOptions>, sender: mpsc::Sender<TerminationNotice>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        // A pool of its own at each attempt: a connection that died without a word may hold
        // the last one's only slot for as long as TCP takes to give up on it.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with((*options).clone());
        let outcome = tokio::select! {
            outcome = listen(&pool, &sender, &mut backoff) => outcome,
            () = sender.closed() => return,
        };
        match outcome {
            Ok(Ended::ReceiverGone) => return,
            Ok(Ended::ConnectionLost) => tracing::warn!("termination feed lost its connection; reconnecting"),
            Err(err) => tracing::warn!(%err, retry_in = ?backoff, "termination feed cannot listen; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Ended {
    ReceiverGone,
    ConnectionLost,
}

async fn listen(
    pool: &PgPool,
    sender: &mpsc::Sender<TerminationNotice>,
    backoff: &mut Duration,
) -> Result<Ended, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Reconnecting is ours to do, so that each new connection sends a Resync.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    *backoff = MIN_BACKOFF;
    tracing::debug!("termination feed listening");
    if sender.send(TerminationNotice::Resync).await.is_err() {
        return Ok(Ended::ReceiverGone);
    }
    loop {
        // A connection that died without a word (a partition, a dropped NAT entry) would wait
        // for notices forever while they go elsewhere: one that stays quiet is asked to answer.
        let notification = match tokio::time::timeout(PROBE_AFTER, listener.try_recv()).await {
            Ok(received) => received?,
            Err(_quiet) => match tokio::time::timeout(PROBE_PATIENCE, listener.execute("SELECT 1")).await {
                Ok(answered) => {
                    answered?;
                    continue;
                }
                Err(_) => return Ok(Ended::ConnectionLost),
            },
        };
        let Some(notification) = notification else {
            return Ok(Ended::ConnectionLost);
        };
        let Some(notice) = parse(notification.payload()) else {
            tracing::warn!(payload = notification.payload(), "ignoring an unreadable termination notice");
            continue;
        };
        if sender.send(notice).await.is_err() {
            return Ok(Ended::ReceiverGone);
        }
    }
}

/// Reads a payload built by [`NOTIFY_PAYLOAD_SQL`].
fn parse(payload: &str) -> Option<TerminationNotice> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let text = |key: &str| value.get(key)?.as_str().map(str::to_owned);
    Some(TerminationNotice::Requested {
        org: OrgId(value.get("org")?.as_i64()?),
        termination: TerminationRecord {
            id: text("id")?,
            session_id: text("session")?,
            connector_id: text("connector")?,
            reason: text("reason")?,
            created: value.get("created")?.as_i64()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        let payload = r#"{"id":"term_1","org":7,"session":"s","connector":"c","reason":"why","created":42}"#;
        let Some(TerminationNotice::Requested { org, termination }) = parse(payload) else { panic!("unparsed") };
        assert_eq!(org, OrgId(7));
        assert_eq!(termination.id, "term_1");
        assert_eq!(termination.session_id, "s");
        assert_eq!(termination.connector_id, "c");
        assert_eq!(termination.reason, "why");
        assert_eq!(termination.created, 42);
        assert_eq!(parse("not json"), None);
        assert_eq!(parse(r#"{"id":"term_1","org":"7"}"#), None);
    }
}
