//! Connector runs and leases, ingestion, statements and terminations,
//! for SQLite.

use std::collections::HashSet;

use gatehouse_core::{Micros, OrgId};
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use crate::StoreError;
use crate::model::*;
use crate::row::{self, RUNNING_CLEARED, RUNNING_COLUMNS};
use crate::sql::rollup::{self, RollupDelta};
use crate::sql::{Dialect, SqlBuilder};

impl SqliteStore {
    pub(super) async fn connector_hello_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        previous: &[PreviousRun],
        at: Micros,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await?;
        known(&mut tx, org, connector_id).await?;
        // The runs this one takes over from are over, now that the statements this run
        // replayed from their spool are in.
        let mut completed = 0;
        for run in PreviousRun::taken_over(previous, run_id) {
            completed += end_run(&mut tx, org, connector_id, &run, at).await?;
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
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await?;
        known(&mut tx, org, connector_id).await?;
        // Heard last now (its sessions left open end now), then over.
        heard(&mut tx, org, connector_id, run_id, at).await?;
        let completed = end_run(&mut tx, org, connector_id, &PreviousRun::named(run_id), at).await?;
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
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await?;
        heard(&mut tx, org, id, run_id, at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn expire_connectors_impl(&self, heard_before: Micros) -> Result<u64, StoreError> {
        // Runs with something to do: sessions still open, or not yet marked lapsed.
        let silent = sqlx::query(
            "SELECT org_id, connector_id, run_id, last_heard_us FROM connector_runs r \
             WHERE last_heard_us < ?1 AND (lapsed_us IS NOT last_heard_us OR EXISTS ( \
                 SELECT 1 FROM sessions s WHERE s.org_id = r.org_id AND s.connector_id = r.connector_id \
                     AND s.run_id = r.run_id AND s.end_us IS NULL))",
        )
        .bind(heard_before)
        .fetch_all(self.pool())
        .await?;
        let mut completed = 0;
        for row in silent {
            let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await?;
            let org = OrgId(row.try_get("org_id")?);
            let (connector_id, run_id): (String, String) = (row.try_get("connector_id")?, row.try_get("run_id")?);
            // Heard since it was read, it is alive.
            let lapsed = sqlx::query(
                "UPDATE connector_runs SET lapsed_us = last_heard_us \
                 WHERE org_id = ? AND connector_id = ? AND run_id = ? AND last_heard_us < ? RETURNING last_heard_us",
            )
            .bind(org.0)
            .bind(&connector_id)
            .bind(&run_id)
            .bind(heard_before)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(lapsed) = lapsed {
                // Its run, if heard again, gets these sessions back (see `heard`).
                let last_heard: i64 = lapsed.try_get("last_heard_us")?;
                completed += complete_open(&mut tx, org, &connector_id, &run_id, last_heard, None).await?;
            }
            tx.commit().await?;
        }
        // A run silent this long is not coming back; its sessions stay as the sweep left them.
        sqlx::query("DELETE FROM connector_runs WHERE lapsed_us < ?1 OR taken_over_us < ?1")
            .bind(heard_before - RUN_MEMORY)
            .execute(self.writer())
            .await?;
        Ok(completed)
    }

    pub(super) async fn ingest_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        events: &[IngestEvent],
    ) -> Result<u64, StoreError> {
        // IMMEDIATE: statements are read before they are written, and a
        // read transaction cannot always become a write one.
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await?;
        // A session's events come in order (start, statements, end), so the
        // report is stored kind by kind, each kind in few statements, rather
        // than event by event: under connect-per-query load the sessions'
        // events interleave, and six statements per session were most of
        // the control plane's work.
        record_runs(&mut tx, org, connector_id, &IngestEvent::runs(events)).await?;
        let mut rollup = RollupDelta::default();
        let mut stored = super::insert_sessions_in(&mut tx, org, &IngestEvent::started(events), &mut rollup).await?;
        stored += super::statements::insert(&mut tx, org, connector_id, events).await?;
        for event in events {
            if let IngestEvent::Running { session_id, statement } = event {
                stored += set_running(&mut tx, org, connector_id, session_id, statement).await?;
            }
        }
        stored += end_sessions(&mut tx, org, connector_id, events).await?;
        // Last, so the rollup's rows stay locked for as short as can be.
        super::apply_rollup(&mut tx, org, &rollup).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(super) async fn statements_page_impl(
        &self,
        org: OrgId,
        session_id: &str,
        page: StatementsPage,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        // One read transaction, so one snapshot: a report that completed a statement and
        // announced the next is read whole.
        let mut conn = self.pool().begin().await?;
        let announced: Option<row::Announced> = sqlx::query_as(&format!(
            "SELECT {RUNNING_COLUMNS}, end_us FROM sessions WHERE org_id = ? AND id = ? AND running_seq IS NOT NULL"
        ))
        .bind(org.0)
        .bind(session_id)
        .fetch_optional(&mut *conn)
        .await?;
        let running = announced.and_then(row::announced_statement);
        let statements = super::statements::read_page(&mut conn, org, session_id, &page, running).await?;
        conn.commit().await?;
        Ok(statements)
    }

    pub(super) async fn create_termination_impl(
        &self,
        org: OrgId,
        t: &TerminationRecord,
        pending_since: Micros,
    ) -> Result<TerminationRecord, StoreError> {
        // IMMEDIATE: read, then written, with no other writer in between.
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await?;
        let earlier = sqlx::query_as::<_, TerminationRecord>(
            "SELECT id, session_id, connector_id, reason, created_us FROM terminations \
             WHERE org_id = ? AND session_id = ? AND created_us >= ? ORDER BY created_us, id LIMIT 1",
        )
        .bind(org.0)
        .bind(&t.session_id)
        .bind(pending_since)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
        sqlx::query(
            "INSERT INTO terminations (id, org_id, session_id, connector_id, reason, created_us) VALUES (?, ?, ?, ?, ?, ?)",
        )
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
        let batch = batch.max(1);
        let orgs: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM organizations ORDER BY id").fetch_all(self.pool()).await?;
        let mut deleted = 0;
        for org in orgs {
            loop {
                // One short write transaction per batch, oldest end first
                // along `sessions_end`, so writers wait at most one batch.
                let mut tx = self.writer().begin().await?;
                let victims = sqlx::query(&format!(
                    "SELECT pk, id, {} FROM sessions WHERE org_id = ? AND end_us IS NOT NULL AND end_us < ? \
                     ORDER BY end_us, id LIMIT ?",
                    rollup::session_columns()
                ))
                .bind(org)
                .bind(before)
                .bind(i64::try_from(batch).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
                let mut pks = Vec::with_capacity(victims.len());
                let mut ids = Vec::with_capacity(victims.len());
                let mut gone = RollupDelta::default();
                for row in &victims {
                    gone.add_row(row, -1)?;
                    pks.push(row.try_get::<i64, _>("pk")?);
                    ids.push(row.try_get::<String, _>("id")?);
                }
                // Bounded lists, well under SQLite's bind limit.
                for table in ["statement_chunks", "session_fingerprints", "terminations"] {
                    for part in ids.chunks(500) {
                        let mut b = SqlBuilder::new(Dialect::Sqlite);
                        b.push("DELETE FROM ").push(table).push(" WHERE org_id = ").bind_int(org);
                        b.push(" AND session_id IN (");
                        for (i, id) in part.iter().enumerate() {
                            b.push(if i == 0 { "" } else { ", " }).bind_text(id.clone());
                        }
                        b.push(")");
                        let (sql, args) = b.into_parts();
                        super::query_with(&sql, args).execute(&mut *tx).await?;
                    }
                }
                for table in ["DELETE FROM session_values WHERE session_pk IN (", "DELETE FROM sessions WHERE pk IN ("]
                {
                    for part in pks.chunks(500) {
                        let mut b = SqlBuilder::new(Dialect::Sqlite);
                        b.push(table);
                        for (i, pk) in part.iter().enumerate() {
                            b.push(if i == 0 { "" } else { ", " }).bind_int(*pk);
                        }
                        b.push(")");
                        let (sql, args) = b.into_parts();
                        super::query_with(&sql, args).execute(&mut *tx).await?;
                    }
                }
                super::apply_rollup(&mut tx, OrgId(org), &gone).await?;
                tx.commit().await?;
                deleted += pks.len() as u64;
                if pks.len() < batch {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

/// Stores the ends among `events`, the first of each session's: a real end
/// replaces one the lease sweep guessed, never another real one, and only
/// the session's own connector ends it. Recorded now (see [`recording_clock`]).
/// One statement per 500 sessions.
async fn end_sessions(
    conn: &mut SqliteConnection,
    org: OrgId,
    connector_id: &str,
    events: &[IngestEvent],
) -> Result<u64, StoreError> {
    let mut seen = HashSet::new();
    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            IngestEvent::End { session_id, end, reason } => Some((session_id.as_str(), *end, reason.as_str())),
            _ => None,
        })
        .filter(|(session_id, _, _)| seen.insert(*session_id))
        .collect();
    let mut ended = 0;
    for part in ends.chunks(500) {
        let mut b = SqlBuilder::new(Dialect::Sqlite);
        b.push("UPDATE sessions SET end_us = MAX(v.column2, start_us), duration_us = MAX(v.column2 - start_us, 0), ");
        b.push("end_recorded_us = MAX(").bind_int(recording_clock()).push(", v.column2, start_us), ");
        b.push("end_reason = v.column3, ").push(RUNNING_CLEARED).push(" FROM (VALUES ");
        for (i, (session_id, end, reason)) in part.iter().enumerate() {
            b.push(if i == 0 { "(" } else { ", (" }).bind_text(*session_id).push(", ").bind_int(*end);
            b.push(", ").bind_text(*reason).push(")");
        }
        b.push(") AS v WHERE sessions.org_id = ").bind_int(org.0).push(" AND sessions.id = v.column1");
        b.push(" AND sessions.connector_id = ").bind_text(connector_id);
        b.push(" AND (sessions.end_us IS NULL OR sessions.end_reason = ").bind_text(LEASE_END_REASON).push(")");
        let (sql, args) = b.into_parts();
        ended += super::query_with(&sql, args).execute(&mut *conn).await?.rows_affected();
    }
    Ok(ended)
}

/// Stores the statement session `session_id` is running: see the PostgreSQL store's `set_running`.
async fn set_running(
    conn: &mut SqliteConnection,
    org: OrgId,
    connector_id: &str,
    session_id: &str,
    running: &StatementRecord,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE sessions SET running_seq = ?1, running_start_us = ?2, running_text = ?3 \
         WHERE org_id = ?4 AND id = ?5 AND connector_id = ?6 AND end_us IS NULL \
         AND (running_seq IS NULL OR running_seq < ?1) AND COALESCE(statement_max_seq, 0) < ?1",
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

/// Records the runs of sessions starting that were never heard, or were forgotten: see the
/// PostgreSQL store's `record_runs`.
async fn record_runs(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: OrgId,
    connector_id: &str,
    runs: &[(&str, Micros)],
) -> Result<(), StoreError> {
    for (run_id, start) in runs {
        sqlx::query(
            "INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us) \
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT DO NOTHING",
        )
        .bind(org.0)
        .bind(connector_id)
        .bind(run_id)
        .bind(start)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A conflict unless `org` has connector `connector_id`.
async fn known(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, org: OrgId, connector_id: &str) -> Result<(), StoreError> {
    let known: Option<i64> = sqlx::query_scalar("SELECT pk FROM connectors WHERE org_id = ? AND id = ?")
        .bind(org.0)
        .bind(connector_id)
        .fetch_optional(&mut **tx)
        .await?;
    match known {
        Some(_) => Ok(()),
        None => Err(StoreError::Conflict(format!("no connector {connector_id:?}"))),
    }
}

/// Run `run` is over at `at` (taken over, or said goodbye): its open sessions end (see
/// [`PreviousRun::ended`]), and those the sweep ended when it lapsed end again, now that the
/// statements it had are in. Marked over, recorded or not: a report of it that comes late does
/// not revive it. Never heard nor said alive, its sessions end at their last statement. Returns
/// how many sessions were completed.
async fn end_run(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: OrgId,
    connector_id: &str,
    run: &PreviousRun,
    at: Micros,
) -> Result<u64, StoreError> {
    let (last_heard, lapsed): (i64, Option<i64>) = sqlx::query_as(
        "INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us, taken_over_us) \
         VALUES (?1, ?2, ?3, 0, 0, ?4) ON CONFLICT (org_id, connector_id, run_id) \
         DO UPDATE SET taken_over_us = COALESCE(taken_over_us, ?4) \
         RETURNING last_heard_us, lapsed_us",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(&run.run_id)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    complete_open(tx, org, connector_id, &run.run_id, run.ended(last_heard, at), lapsed).await
}

/// Run `run_id` of a connector was heard at `at`: recorded if it was not (a run is heard
/// before its Hello while it replays its predecessor's spool, which keeps its predecessor's
/// own time), and given back the sessions the sweep ended if it was taken for gone. A run
/// taken over stays over.
async fn heard(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: OrgId,
    connector_id: &str,
    run_id: &str,
    at: Micros,
) -> Result<(), StoreError> {
    let run: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT lapsed_us, taken_over_us FROM connector_runs WHERE org_id = ? AND connector_id = ? AND run_id = ?",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .fetch_optional(&mut **tx)
    .await?;
    match run {
        Some((_, Some(_taken_over))) => return Ok(()),
        Some((Some(lapsed), None)) => reopen_lapsed(tx, org, connector_id, run_id, lapsed).await?,
        _ => {}
    }
    sqlx::query(
        "INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us) \
         VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (org_id, connector_id, run_id) DO UPDATE \
         SET last_heard_us = MAX(last_heard_us, excluded.last_heard_us), lapsed_us = NULL",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE connectors SET last_heard_us = MAX(COALESCE(last_heard_us, 0), ?1) WHERE org_id = ?2 AND id = ?3",
    )
    .bind(at)
    .bind(org.0)
    .bind(connector_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Opens again the sessions of run `run_id` that the lease sweep ended when it lapsed at
/// `lapsed`: the run was heard again, or its successor completes them with what it replayed.
async fn reopen_lapsed(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: OrgId,
    connector_id: &str,
    run_id: &str,
    lapsed: Micros,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sessions SET end_us = NULL, duration_us = NULL, end_recorded_us = NULL, end_reason = '' \
         WHERE org_id = ? AND connector_id = ? AND run_id = ? AND end_us >= ? AND end_reason = ?",
    )
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .bind(lapsed)
    .bind(LEASE_END_REASON)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Completes the open sessions of a connector's run `run_id` at `at`, never before they started,
/// nor before their last statement ended or the statement they were running started: statements
/// replayed from the spool of a run the control plane stopped hearing from show it was alive
/// after that. (A chunk's statements are in seq order, and a session's statements end in seq
/// order.) The statement a session was running stays, lost with the run (see
/// [`row::RUNNING_COLUMNS`]). Recorded now (see [`recording_clock`]).
///
/// With `lapsed`, the sessions the sweep ended when the run lapsed then are ended again, now
/// that what the run replayed is in, but only those whose end that moves: the others keep their
/// end and when it was recorded, so that a walk that placed them by it does not see them move.
async fn complete_open(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: OrgId,
    connector_id: &str,
    run_id: &str,
    at: Micros,
    lapsed: Option<Micros>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE sessions SET end_us = open.end_us, duration_us = open.end_us - open.start_us, \
             end_recorded_us = MAX(?6, open.end_us), end_reason = ?2 \
         FROM (SELECT s.id, s.start_us, MAX(?1, s.start_us, COALESCE(s.running_start_us, 0), COALESCE(( \
                 SELECT json_extract(c.body, '$[#-1][1]') + json_extract(c.body, '$[#-1][2]') \
                 FROM statement_chunks c WHERE c.org_id = s.org_id AND c.session_id = s.id \
                 ORDER BY c.last_seq DESC LIMIT 1), 0)) AS end_us \
               FROM sessions s WHERE s.org_id = ?3 AND s.connector_id = ?4 AND s.run_id = ?5 \
                 AND (s.end_us IS NULL OR (s.end_reason = ?2 AND s.end_us >= ?7))) \
               AS open \
         WHERE sessions.org_id = ?3 AND sessions.id = open.id \
           AND (sessions.end_us IS NULL OR sessions.end_us <> open.end_us)",
    )
    .bind(at)
    .bind(LEASE_END_REASON)
    .bind(org.0)
    .bind(connector_id)
    .bind(run_id)
    .bind(recording_clock())
    .bind(lapsed)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
