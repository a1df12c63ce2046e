//! Connector runs and leases, ingestion, statements, terminations and
//! retention, for PostgreSQL.
//!
//! Several replicas may run any of these at once. Each write is one statement
//! or one transaction whose outcome does not depend on who runs it first:
//! completing open sessions re-checks `end_us IS NULL` on the locked row, so
//! a lease sweep run by every replica completes each session once. The
//! periodic jobs (lease sweep, retention) moreover take turns through
//! transaction-level advisory locks, so replicas do not repeat each other's work.

use gatehouse_core::{Micros, OrgId};
use sqlx::{PgConnection, Row};

use super::{PgStore, notify, write};
use crate::StoreError;
use crate::model::*;
use crate::row::{self, RUNNING_CLEARED};
use crate::sql::rollup::{self, RollupDelta};

impl PgStore {
    pub(super) async fn connector_hello_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        previous: &[PreviousRun],
        at: Micros,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let recorded = recording_time(&mut tx).await?;
        known(&mut tx, org, connector_id).await?;
        // Hello, heartbeats and the sweep lock run rows in key order, then the connector's row:
        // the sweep, a heartbeat and a Hello naming the same runs through different replicas take
        // turns.
        let gone = PreviousRun::taken_over(previous, run_id);
        let mut runs: Vec<&str> = gone.iter().map(|run| run.run_id.as_str()).chain([run_id]).collect();
        runs.sort_unstable();
        sqlx::query(
            "SELECT 1 FROM connector_runs WHERE org_id = $1 AND connector_id = $2 AND run_id = ANY($3) \
             ORDER BY run_id FOR UPDATE",
        )
        .bind(org.0)
        .bind(connector_id)
        .bind(&runs)
        .execute(&mut *tx)
        .await?;
        // The runs this one takes over from are over, now that the statements this run
        // replayed from their spool are in.
        let mut completed = 0;
        for run in &gone {
            completed += end_run(&mut tx, org, connector_id, run, at, recorded).await?;
        }
        heard(&mut tx, org, connector_id, run_id, at).await?;
        tx.commit().await?;
        Ok(completed)
    }

    pub(super) async fn connector_goodbye_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let recorded = recording_time(&mut tx).await?;
        known(&mut tx, org, connector_id).await?;
        // Heard last now (its sessions left open end now), then over.
        heard(&mut tx, org, connector_id, run_id, at).await?;
        let completed = end_run(&mut tx, org, connector_id, &PreviousRun::named(run_id), at, recorded).await?;
        tx.commit().await?;
        Ok(completed)
    }

    pub(super) async fn connector_heartbeat_impl(
        &self,
        org: OrgId,
        id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<(), StoreError> {
        // The common case in one statement: a run heard before, not taken for gone.
        let heard_now = sqlx::query(&format!(
            "WITH run AS (UPDATE connector_runs SET last_heard_us = GREATEST(last_heard_us, $1) \
                 WHERE org_id = $2 AND connector_id = $3 AND run_id = $4 AND lapsed_us IS NULL \
                     AND taken_over_us IS NULL RETURNING 1) \
             {HEARD_CONNECTOR} AND EXISTS (SELECT 1 FROM run)"
        ))
        .bind(at)
        .bind(org.0)
        .bind(id)
        .bind(run_id)
        .execute(self.pool())
        .await?;
        if heard_now.rows_affected() > 0 {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        heard(&mut tx, org, id, run_id, at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn expire_connectors_impl(&self, heard_before: Micros) -> Result<u64, StoreError> {
        // Every replica sweeps on its own timer, but one at a time: a replica
        // that finds the sweep lock taken skips its turn rather than queueing
        // behind the same rows. (Were two to run anyway, each re-checks
        // `end_us IS NULL` on the locked rows, so a session is still
        // completed, and counted, once.)
        let mut tx = self.pool().begin().await?;
        if !try_xact_lock(&mut tx, SWEEP_LOCK).await? {
            return Ok(0);
        }
        let recorded = recording_time(&mut tx).await?;
        // The silent runs are locked, and read as locked: a run heard while the sweep waited
        // for its row is not silent any more, and is left alone. They are marked lapsed at the
        // time their sessions end, so that a run heard again gets those sessions back (see
        // `heard`).
        let done = sqlx::query(&format!(
            "WITH silent AS ( \
                 SELECT org_id, connector_id, run_id, last_heard_us FROM connector_runs r \
                 WHERE last_heard_us < $2 AND (lapsed_us IS DISTINCT FROM last_heard_us OR EXISTS ( \
                     SELECT 1 FROM sessions s WHERE s.org_id = r.org_id AND s.connector_id = r.connector_id \
                         AND s.run_id = r.run_id AND s.end_us IS NULL)) \
                 ORDER BY org_id, connector_id, run_id FOR UPDATE OF r \
             ), lapsed AS ( \
                 UPDATE connector_runs r SET lapsed_us = silent.last_heard_us FROM silent \
                 WHERE r.org_id = silent.org_id AND r.connector_id = silent.connector_id \
                     AND r.run_id = silent.run_id AND r.lapsed_us IS DISTINCT FROM silent.last_heard_us \
             ), ended AS ( \
                 SELECT s.org_id, s.id, s.start_us, GREATEST(silent.last_heard_us, {NO_EARLIER_THAN}) AS end_us \
                 FROM silent JOIN sessions s ON s.org_id = silent.org_id \
                     AND s.connector_id = silent.connector_id AND s.run_id = silent.run_id \
                 WHERE s.end_us IS NULL \
             ) \
             UPDATE sessions SET end_us = e.end_us, duration_us = e.end_us - e.start_us, \
                 end_recorded_us = GREATEST($3, e.end_us), end_reason = $1 \
             FROM ended e WHERE sessions.org_id = e.org_id AND sessions.id = e.id AND sessions.end_us IS NULL",
        ))
        .bind(LEASE_END_REASON)
        .bind(heard_before)
        .bind(recorded)
        .execute(&mut *tx)
        .await?;
        // A run silent this long is not coming back; its sessions stay as the sweep left them.
        sqlx::query("DELETE FROM connector_runs WHERE lapsed_us < $1 OR taken_over_us < $1")
            .bind(heard_before - RUN_MEMORY)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn ingest_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        events: &[IngestEvent],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        // Ends are recorded under the recording gate, taken before any row lock.
        let recorded = match events.iter().any(|e| matches!(e, IngestEvent::End { .. })) {
            true => recording_time(&mut tx).await?,
            false => 0,
        };
        record_runs(&mut tx, org, connector_id, &IngestEvent::runs(events)).await?;
        let mut rollup = RollupDelta::default();
        // A session's events come in order (start, statements, end), so the
        // report is stored kind by kind, each kind in few statements, rather
        // than event by event: the sessions' events interleave.
        let mut stored = write::insert_sessions(&mut tx, org, &IngestEvent::started(events), &mut rollup).await?;
        let statements: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                IngestEvent::Statement { session_id, statement } => Some((session_id.as_str(), statement)),
                _ => None,
            })
            .collect();
        stored += write::insert_statements(&mut tx, org, connector_id, &statements).await?;
        for event in events {
            match event {
                IngestEvent::Running { session_id, statement } => {
                    stored += set_running(&mut tx, org, connector_id, session_id, statement).await?;
                }
                IngestEvent::End { session_id, end, reason } => {
                    stored += end_session(&mut tx, org, connector_id, session_id, *end, reason, recorded).await?;
                }
                _ => {}
            }
        }
        // Last, so the rollup's rows stay locked for as short as can be.
        write::apply_rollup(&mut tx, org, &rollup).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(super) async fn statements_page_impl(
        &self,
        org: OrgId,
        session_id: &str,
        page: StatementsPage,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        let (after_start, after_seq) =
            page.after.map_or((i64::MIN, i64::MIN), |(start, seq)| (start, i64::try_from(seq).unwrap_or(i64::MAX)));
        let bound = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        // One statement, so one snapshot: a report that completed a statement and announced
        // the next is read whole, never the announcement without the statement before it.
        // The stored ones come from `statements_by_start`, from the page's first on.
        // `octet_length` reads a long text's size from its TOAST pointer: texts past the
        // page's bytes are never read. (See `StatementsPage::size`.)
        let sql = format!(
            "SELECT * FROM ( \
                 SELECT *, row_number() OVER w AS place, \
                     sum(octet_length(text) + {field_bytes}) OVER w AS bytes_so_far FROM ( \
                     (SELECT seq, start_us, duration_us, text, rows, bytes_sent, sqlstate, rows_changed, \
                         false AS running, NULL::int8 AS session_end FROM statements \
                     WHERE org_id = $1 AND session_id = $2 AND (start_us, seq) > ($3, $4) \
                     ORDER BY start_us, seq LIMIT $5) \
                     UNION ALL SELECT running_seq, running_start_us, 0, running_text, 0, 0, '', 0, true, end_us \
                     FROM sessions WHERE org_id = $1 AND id = $2 AND running_seq IS NOT NULL \
                         AND (running_start_us, running_seq) > ($3, $4) \
                     ORDER BY start_us, seq LIMIT $5) next \
                 WINDOW w AS (ORDER BY start_us, seq ROWS UNBOUNDED PRECEDING)) sized \
             WHERE place = 1 OR bytes_so_far <= $6 ORDER BY start_us, seq",
            field_bytes = StatementsPage::FIELD_BYTES
        );
        let rows = sqlx::query(&sql)
            .bind(org.0)
            .bind(session_id)
            .bind(after_start)
            .bind(after_seq)
            .bind(bound(page.limit))
            .bind(bound(page.bytes))
            .fetch_all(self.pool())
            .await?;
        let mut statements = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let (start, text) = (row.try_get("start_us")?, row.try_get("text")?);
            if row.try_get("running")? {
                statements.extend(row::announced_statement((seq, start, text, row.try_get("session_end")?)));
                continue;
            }
            statements.push(StatementRecord {
                seq: u64::try_from(seq).unwrap_or_default(),
                start,
                duration: row.try_get("duration_us")?,
                text,
                rows: row.try_get("rows")?,
                bytes_sent: row.try_get("bytes_sent")?,
                sqlstate: row.try_get("sqlstate")?,
                status: StatementStatus::Completed,
                rows_changed: row.try_get("rows_changed")?,
            });
        }
        Ok(statements)
    }

    pub(super) async fn create_termination_impl(
        &self,
        org: OrgId,
        t: &TerminationRecord,
        pending_since: Micros,
    ) -> Result<TerminationRecord, StoreError> {
        let mut tx = self.pool().begin().await?;
        // Two replicas asked at once would both find nothing pending: they
        // take turns per session (collisions of the hash only wait).
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(TERMINATION_LOCK_CLASS)
            .bind(&t.session_id)
            .execute(&mut *tx)
            .await?;
        let earlier = sqlx::query_as::<_, TerminationRecord>(
            "SELECT id, session_id, connector_id, reason, created_us FROM terminations \
             WHERE org_id = $1 AND session_id = $2 AND created_us >= $3 ORDER BY created_us, id LIMIT 1",
        )
        .bind(org.0)
        .bind(&t.session_id)
        .bind(pending_since)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
        // The notice is part of the statement: every replica's feed hears of
        // the row when it commits, and never of a row that did not.
        let sql = format!(
            "WITH t AS ( \
                 INSERT INTO terminations (id, org_id, session_id, connector_id, reason, created_us) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING * \
             ) \
             SELECT pg_notify('{}', {}) FROM t",
            notify::CHANNEL,
            notify::NOTIFY_PAYLOAD_SQL
        );
        sqlx::query(&sql)
            .bind(&t.id)
            .bind(org.0)
            .bind(&t.session_id)
            .bind(&t.connector_id)
            .bind(&t.reason)
            .bind(t.created)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(t.clone())
    }

    pub(super) async fn delete_completed_before_impl(&self, before: Micros, batch: usize) -> Result<u64, StoreError> {
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let orgs: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM organizations ORDER BY id").fetch_all(self.pool()).await?;
        let mut deleted = 0;
        for org in orgs {
            loop {
                // One short transaction per batch, oldest end first along
                // `sessions_end`, under the retention lock: while another
                // replica holds it, this pass ends and leaves the work to it.
                let mut tx = self.pool().begin().await?;
                if !try_xact_lock(&mut tx, RETENTION_LOCK).await? {
                    return Ok(deleted);
                }
                // The deleted sessions come back, to be taken from the rollup.
                let columns = rollup::session_columns();
                let gone = sqlx::query(&format!(
                    "WITH victims AS ( \
                         SELECT pk, id FROM sessions \
                         WHERE org_id = $1 AND end_us IS NOT NULL AND end_us < $2 \
                         ORDER BY end_us, id LIMIT $3 FOR UPDATE SKIP LOCKED \
                     ), stmts AS ( \
                         DELETE FROM statements WHERE org_id = $1 AND session_id IN (SELECT id FROM victims) \
                     ), fps AS ( \
                         DELETE FROM session_fingerprints WHERE org_id = $1 AND session_id IN (SELECT id FROM victims) \
                     ), terms AS ( \
                         DELETE FROM terminations WHERE org_id = $1 AND session_id IN (SELECT id FROM victims) \
                     ), vals AS ( \
                         DELETE FROM session_values WHERE session_pk IN (SELECT pk FROM victims) \
                     ), gone AS ( \
                         DELETE FROM sessions WHERE pk IN (SELECT pk FROM victims) RETURNING {columns} \
                     ) \
                     SELECT {columns} FROM gone",
                ))
                .bind(org)
                .bind(before)
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
                let mut delta = RollupDelta::default();
                for row in &gone {
                    delta.add_row(row, -1)?;
                }
                write::apply_rollup(&mut tx, OrgId(org), &delta).await?;
                tx.commit().await?;
                deleted += gone.len() as u64;
                if (gone.len() as i64) < batch {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

/// Key of the transaction-level advisory lock that makes replicas take turns
/// at the lease sweep (arbitrary, distinct from sqlx's migration lock, which
/// is derived from the database name).
pub const SWEEP_LOCK: i64 = 0x6761_7465_0001;
/// Key of the advisory lock each retention batch takes.
pub const RETENTION_LOCK: i64 = 0x6761_7465_0002;
/// The first key of the per-session locks taken while a termination is
/// created (the two-key form: a keyspace apart from the locks above).
const TERMINATION_LOCK_CLASS: i32 = 0x6774_0003;

/// The lock that orders recording ends before the walks that begin after them (see
/// [`recording_time`]).
pub const RECORDING_GATE: i64 = 0x6761_7465_0004;

/// The database's clock, in microseconds since the epoch.
const DATABASE_CLOCK: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::int8";

/// The database's clock, as a transaction that records ends reads it: holding the recording
/// gate, shared, until it commits. A walk takes the gate alone to read its `now`
/// ([`PgStore::listing_clock_impl`]), so every end recorded before that `now` has been
/// committed by then, on every replica, and every later one is recorded after it: the
/// database's clock is one for all replicas. Taken first in its transaction, before any row
/// lock, so that a walk waiting for the gate waits on nothing else of ours.
async fn recording_time(conn: &mut PgConnection) -> Result<Micros, StoreError> {
    Ok(sqlx::query_scalar(&format!(
        "WITH gate AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared($1)) SELECT {DATABASE_CLOCK} FROM gate"
    ))
    .bind(RECORDING_GATE)
    .fetch_one(conn)
    .await?)
}

impl PgStore {
    pub(super) async fn clock_impl(&self) -> Result<Micros, StoreError> {
        Ok(sqlx::query_scalar(&format!("SELECT {DATABASE_CLOCK}")).fetch_one(self.pool()).await?)
    }

    pub(super) async fn listing_clock_impl(&self) -> Result<Micros, StoreError> {
        let mut tx = self.pool().begin().await?;
        let now = sqlx::query_scalar(&format!(
            "WITH gate AS MATERIALIZED (SELECT pg_advisory_xact_lock($1)) SELECT {DATABASE_CLOCK} FROM gate"
        ))
        .bind(RECORDING_GATE)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(now)
    }
}

/// Takes `key` until `conn`'s transaction ends, unless another holds it.
async fn try_xact_lock(conn: &mut PgConnection, key: i64) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(key).fetch_one(&mut *conn).await?)
}

/// Ends a session of this connector; a real end replaces one the lease sweep guessed. Recorded
/// at `recorded` (see [`recording_time`]).
async fn end_session(
    conn: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    session_id: &str,
    end: Micros,
    reason: &str,
    recorded: Micros,
) -> Result<u64, StoreError> {
    let done = sqlx::query(&format!(
        "UPDATE sessions SET end_us = GREATEST($1, start_us), duration_us = GREATEST($1 - start_us, 0), \
         end_recorded_us = GREATEST($7, $1, start_us), end_reason = $2, {RUNNING_CLEARED} \
         WHERE org_id = $3 AND id = $4 AND connector_id = $5 AND (end_us IS NULL OR end_reason = $6)",
    ))
    .bind(end)
    .bind(reason)
    .bind(org.0)
    .bind(session_id)
    .bind(connector_id)
    .bind(LEASE_END_REASON)
    .bind(recorded)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Stores the statement session `session_id` is running, unless the session ended or a statement
/// at or after it is stored already (a replay); only the session's own connector can. (A session
/// the lease sweep ended is open again by then: a report's run is heard before its events.)
async fn set_running(
    conn: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    session_id: &str,
    running: &StatementRecord,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE sessions SET running_seq = $1, running_start_us = $2, running_text = $3 \
         WHERE org_id = $4 AND id = $5 AND connector_id = $6 AND end_us IS NULL \
         AND (running_seq IS NULL OR running_seq < $1) \
         AND NOT EXISTS (SELECT 1 FROM statements WHERE org_id = $4 AND session_id = $5 AND seq >= $1)",
    )
    .bind(i64::try_from(running.seq).unwrap_or(i64::MAX))
    .bind(running.start)
    .bind(&running.text)
    .bind(org.0)
    .bind(session_id)
    .bind(connector_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// What a session `s` its connector's lapse or next run completes ends no earlier than, in a
/// `GREATEST` (which skips NULLs): its start, when the statement it was running started, and
/// when its last statement ended. Statements replayed from the spool of a run the control plane
/// stopped hearing from show it was alive after that.
const NO_EARLIER_THAN: &str = "s.start_us, s.running_start_us, (SELECT st.start_us + st.duration_us \
     FROM statements st WHERE st.org_id = s.org_id AND st.session_id = s.id ORDER BY st.seq DESC LIMIT 1)";

// language=PostgreSQL
/// The connector's last-heard time, shown in its listing, follows its runs'.
const HEARD_CONNECTOR: &str =
    "UPDATE connectors SET last_heard_us = GREATEST(COALESCE(last_heard_us, 0), $1) WHERE org_id = $2 AND id = $3";

/// A conflict unless `org` has connector `connector_id`.
async fn known(tx: &mut PgConnection, org: OrgId, connector_id: &str) -> Result<(), StoreError> {
    let known: Option<i64> = sqlx::query_scalar("SELECT pk FROM connectors WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(connector_id)
        .fetch_optional(&mut *tx)
        .await?;
    match known {
        Some(_) => Ok(()),
        None => Err(StoreError::Conflict(format!("no connector {connector_id:?}"))),
    }
}

/// Run `run` is over at `at` (taken over, or said goodbye): its open sessions end (see
/// [`PreviousRun::ended`]), and those the sweep ended when it lapsed end again, now that the
/// statements it had are in. Marked over, recorded or not: a report of it that comes late
/// (through another replica) does not revive it. Never heard nor said alive, its sessions end
/// at their last statement. Returns how many sessions were completed.
async fn end_run(
    tx: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    run: &PreviousRun,
    at: Micros,
    recorded: Micros,
) -> Result<u64, StoreError> {
    let (last_heard, lapsed): (i64, Option<i64>) = sqlx::query_as(
        "INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us, taken_over_us) \
         VALUES ($1, $2, $3, 0, 0, $4) ON CONFLICT (org_id, connector_id, run_id) \
         DO UPDATE SET taken_over_us = COALESCE(connector_runs.taken_over_us, $4) \
         RETURNING last_heard_us, lapsed_us",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(&run.run_id)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    complete_open(tx, org, connector_id, &run.run_id, run.ended(last_heard, at), lapsed, recorded).await
}

/// Run `run_id` of a connector was heard at `at`: recorded if it was not (a run is heard
/// before its Hello while it replays its predecessor's spool, which keeps its predecessor's
/// own time), and given back the sessions the sweep ended if it was taken for gone. A run
/// taken over stays over.
async fn heard(
    tx: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    run_id: &str,
    at: Micros,
) -> Result<(), StoreError> {
    let run: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT lapsed_us, taken_over_us FROM connector_runs \
         WHERE org_id = $1 AND connector_id = $2 AND run_id = $3 FOR UPDATE",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await?;
    match run {
        Some((_, Some(_taken_over))) => return Ok(()),
        Some((Some(lapsed), None)) => reopen_lapsed(tx, org, connector_id, run_id, lapsed).await?,
        _ => {}
    }
    sqlx::query(
        "INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (org_id, connector_id, run_id) DO UPDATE \
         SET last_heard_us = GREATEST(connector_runs.last_heard_us, $4), lapsed_us = NULL",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(HEARD_CONNECTOR).bind(at).bind(org.0).bind(connector_id).execute(&mut *tx).await?;
    Ok(())
}

/// Records the runs of sessions starting that were never heard (a run that never reached the
/// control plane, replayed by its successor), or were forgotten after [`RUN_MEMORY`]: the
/// sweep ends their sessions when their lease runs out from their latest start, unless a
/// Hello names them first. Runs recorded already, taken over ones too, are left as they are:
/// a replay is no sign of life.
async fn record_runs(
    conn: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    runs: &[(&str, Micros)],
) -> Result<(), StoreError> {
    if runs.is_empty() {
        return Ok(());
    }
    let (ids, starts): (Vec<&str>, Vec<Micros>) = runs.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us) \
         SELECT $1, $2, run.id, run.start_us, run.start_us FROM UNNEST($3::text[], $4::int8[]) AS run (id, start_us) \
         ON CONFLICT DO NOTHING",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(ids)
    .bind(starts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Opens again the sessions of run `run_id` that the lease sweep ended when it lapsed at
/// `lapsed`: the run was heard again, or its successor completes them with what it replayed.
async fn reopen_lapsed(
    conn: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    run_id: &str,
    lapsed: Micros,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sessions SET end_us = NULL, duration_us = NULL, end_recorded_us = NULL, end_reason = '' \
         WHERE org_id = $1 AND connector_id = $2 AND run_id = $3 AND end_us >= $4 AND end_reason = $5",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .bind(lapsed)
    .bind(LEASE_END_REASON)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Completes the open sessions of a connector's run `run_id` at `at`, never before
/// [`NO_EARLIER_THAN`]. The statement a session was running stays, lost with the run (see
/// [`row::RUNNING_COLUMNS`]). Recorded at `recorded` (see [`recording_time`]).
///
/// With `lapsed`, the sessions the sweep ended when the run lapsed then are ended again, now
/// that what the run replayed is in, but only those whose end that moves: the others keep their
/// end and when it was recorded, so that a walk that placed them by it does not see them move.
async fn complete_open(
    conn: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    run_id: &str,
    at: Micros,
    lapsed: Option<Micros>,
    recorded: Micros,
) -> Result<u64, StoreError> {
    let done = sqlx::query(&format!(
        "UPDATE sessions SET end_us = open.end_us, duration_us = open.end_us - open.start_us, \
             end_recorded_us = GREATEST($6, open.end_us), end_reason = $2 \
         FROM (SELECT s.id, s.start_us, GREATEST($1, {NO_EARLIER_THAN}) AS end_us \
               FROM sessions s WHERE s.org_id = $3 AND s.connector_id = $4 AND s.run_id = $5 \
                 AND (s.end_us IS NULL OR (s.end_reason = $2 AND s.end_us >= $7::int8))) \
               AS open \
         WHERE sessions.org_id = $3 AND sessions.id = open.id \
           AND (sessions.end_us IS NULL OR sessions.end_us <> open.end_us)",
    ))
    .bind(at)
    .bind(LEASE_END_REASON)
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .bind(recorded)
    .bind(lapsed)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
