//! The registry, connector runs and leases, ingestion, statements and
//! terminations, for SQLite.

use std::collections::HashMap;

use gatehouse_core::{Micros, OrgId};
use sqlx::Row;

use super::SqliteStore;
use crate::StoreError;
use crate::fingerprint::fingerprint;
use crate::model::*;
use crate::sql::rollup::{self, RollupDelta};
use crate::sql::{Dialect, SqlBuilder};

impl SqliteStore {
    pub(super) async fn create_resource_impl(&self, org: OrgId, r: &Resource) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO resources (org_id, id, name, type, technology, host, port, created_us) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(org.0)
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.kind)
        .bind(&r.technology)
        .bind(&r.host)
        .bind(i64::from(r.port))
        .bind(r.created)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a resource named {:?} exists already", r.name)));
        }
        Ok(())
    }

    pub(super) async fn list_resources_impl(&self, org: OrgId) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, type, technology, host, port, created_us FROM resources WHERE org_id = ? ORDER BY name",
        )
        .bind(org.0)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Resource {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    kind: row.try_get("type")?,
                    technology: row.try_get("technology")?,
                    host: row.try_get("host")?,
                    port: u16::try_from(row.try_get::<i64, _>("port")?)
                        .map_err(|_| StoreError::Corrupt("resource port out of range".into()))?,
                    created: row.try_get("created_us")?,
                })
            })
            .collect()
    }

    pub(super) async fn create_connector_impl(&self, c: &NewConnector) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO connectors (org_id, id, name, key_prefix, key_hash, created_us) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(c.org.0)
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.key_prefix)
        .bind(&c.key_hash)
        .bind(c.created)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a connector named {:?} exists already", c.name)));
        }
        Ok(())
    }

    pub(super) async fn list_connectors_impl(&self, org: OrgId) -> Result<Vec<ConnectorInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, key_prefix, created_us, last_heard_us FROM connectors WHERE org_id = ? ORDER BY name",
        )
        .bind(org.0)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ConnectorInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    key_prefix: row.try_get("key_prefix")?,
                    created: row.try_get("created_us")?,
                    last_heard: row.try_get("last_heard_us")?,
                })
            })
            .collect()
    }

    pub(super) async fn find_connector_impl(&self, key_prefix: &str) -> Result<Option<StoredConnector>, StoreError> {
        let row = sqlx::query("SELECT org_id, id, name, key_hash FROM connectors WHERE key_prefix = ?")
            .bind(key_prefix)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredConnector {
            org: OrgId(row.try_get("org_id")?),
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            key_hash: row.try_get("key_hash")?,
        }))
    }

    pub(super) async fn connector_hello_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let last_heard: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_heard_us FROM connectors WHERE org_id = ? AND id = ?")
                .bind(org.0)
                .bind(connector_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(last_heard) = last_heard else {
            return Err(StoreError::Conflict(format!("no connector {connector_id:?}")));
        };
        // A new run starts with no sessions: whatever is open is its predecessors'.
        let completed = complete_open(&mut tx, org, connector_id, last_heard.unwrap_or(at)).await?;
        sqlx::query("UPDATE connectors SET run_id = ?, last_heard_us = ? WHERE org_id = ? AND id = ?")
            .bind(run_id)
            .bind(at)
            .bind(org.0)
            .bind(connector_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(completed)
    }

    pub(super) async fn connector_heartbeat_impl(&self, org: OrgId, id: &str, at: Micros) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE connectors SET last_heard_us = MAX(COALESCE(last_heard_us, 0), ?) WHERE org_id = ? AND id = ?",
        )
        .bind(at)
        .bind(org.0)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(super) async fn expire_connectors_impl(&self, heard_before: Micros) -> Result<u64, StoreError> {
        let silent = sqlx::query("SELECT org_id, id, last_heard_us FROM connectors WHERE last_heard_us < ?")
            .bind(heard_before)
            .fetch_all(self.pool())
            .await?;
        let mut completed = 0;
        for row in silent {
            let mut tx = self.pool().begin().await?;
            let org = OrgId(row.try_get("org_id")?);
            let id: String = row.try_get("id")?;
            completed += complete_open(&mut tx, org, &id, row.try_get("last_heard_us")?).await?;
            tx.commit().await?;
        }
        Ok(completed)
    }

    pub(super) async fn ingest_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        events: &[IngestEvent],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut stored = 0;
        let mut rollup = RollupDelta::default();
        let mut rest = events;
        while let Some(event) = rest.first() {
            let mut taken = 1;
            stored += match event {
                // With its many-valued fields, so its groups are searchable.
                IngestEvent::Start(session) => {
                    super::insert_sessions_in(&mut tx, org, std::slice::from_ref(session), &mut rollup).await?
                }
                // A run of statements, the bulk of any report, goes in few statements.
                IngestEvent::Statement { .. } => {
                    taken = rest.iter().take_while(|e| matches!(e, IngestEvent::Statement { .. })).count();
                    let mut inserted = 0;
                    for chunk in rest[..taken].chunks(STATEMENT_CHUNK) {
                        inserted += insert_statements(&mut tx, org, chunk).await?;
                    }
                    inserted
                }
                // A real end replaces one the lease sweep guessed.
                IngestEvent::End { session_id, end, reason } => sqlx::query(
                    "UPDATE sessions SET end_us = ?1, duration_us = MAX(?1 - start_us, 0), end_reason = ?2 \
                     WHERE org_id = ?3 AND id = ?4 AND connector_id = ?5 AND (end_us IS NULL OR end_reason = ?6)",
                )
                .bind(end)
                .bind(reason)
                .bind(org.0)
                .bind(session_id)
                .bind(connector_id)
                .bind(LEASE_END_REASON)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            rest = &rest[taken..];
        }
        // Last, so the rollup's rows stay locked for as short as can be.
        super::apply_rollup(&mut tx, org, &rollup).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(super) async fn statements_impl(
        &self,
        org: OrgId,
        session_id: &str,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, start_us, duration_us, text, rows, bytes_sent, sqlstate FROM statements \
             WHERE org_id = ? AND session_id = ? ORDER BY seq",
        )
        .bind(org.0)
        .bind(session_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StatementRecord {
                    seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or_default(),
                    start: row.try_get("start_us")?,
                    duration: row.try_get("duration_us")?,
                    text: row.try_get("text")?,
                    rows: row.try_get("rows")?,
                    bytes_sent: row.try_get("bytes_sent")?,
                    sqlstate: row.try_get("sqlstate")?,
                })
            })
            .collect()
    }

    pub(super) async fn create_termination_impl(&self, org: OrgId, t: &TerminationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO terminations (id, org_id, session_id, connector_id, reason, created_us) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(org.0)
        .bind(&t.session_id)
        .bind(&t.connector_id)
        .bind(&t.reason)
        .bind(t.created)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(super) async fn pending_terminations_impl(
        &self,
        org: OrgId,
        connector_id: &str,
        since: Micros,
    ) -> Result<Vec<TerminationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.session_id, t.connector_id, t.reason, t.created_us FROM terminations t \
             JOIN sessions s ON s.org_id = t.org_id AND s.id = t.session_id \
             WHERE t.org_id = ? AND t.connector_id = ? AND t.created_us >= ? AND s.end_us IS NULL \
             ORDER BY t.created_us",
        )
        .bind(org.0)
        .bind(connector_id)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TerminationRecord {
                    id: row.try_get("id")?,
                    session_id: row.try_get("session_id")?,
                    connector_id: row.try_get("connector_id")?,
                    reason: row.try_get("reason")?,
                    created: row.try_get("created_us")?,
                })
            })
            .collect()
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
                let mut tx = self.pool().begin().await?;
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
                for part in ids.chunks(500) {
                    let mut b = SqlBuilder::new(Dialect::Sqlite);
                    b.push("DELETE FROM statements WHERE org_id = ").bind_int(org).push(" AND session_id IN (");
                    for (i, id) in part.iter().enumerate() {
                        b.push(if i == 0 { "" } else { ", " }).bind_text(id.clone());
                    }
                    b.push(")");
                    let (sql, args) = b.into_parts();
                    super::query_with(&sql, args).execute(&mut *tx).await?;
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

/// Completes a connector's open sessions at `at` (never before they started).
async fn complete_open(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: OrgId,
    connector_id: &str,
    at: Micros,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE sessions SET end_us = MAX(?1, start_us), duration_us = MAX(?1 - start_us, 0), end_reason = ?2 \
         WHERE org_id = ?3 AND connector_id = ?4 AND end_us IS NULL",
    )
    .bind(at)
    .bind(LEASE_END_REASON)
    .bind(org.0)
    .bind(connector_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Statements per INSERT: 10 values each, well under SQLite's bind limit
/// (32,766), and as many as a connector's report holds by default.
const STATEMENT_CHUNK: usize = 500;

/// Inserts statement events in one multi-row statement; retried ones are
/// skipped. The sessions' statement totals grow by what was new: by the
/// events' own figures when every one was new (the rule), else by a recount
/// of the sessions concerned (a retry). Returning the inserted rows instead
/// took a quarter of the control plane's CPU per recorded statement.
///
/// `OR IGNORE` rather than `ON CONFLICT DO NOTHING`: a statement that cannot
/// abort halfway needs no statement journal, which SQLite would otherwise
/// fill with a copy of every page the insert touches (15% of ingestion).
/// Every value bound is non-null, so the primary key is the only constraint
/// it ignores.
async fn insert_statements(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    org: OrgId,
    events: &[IngestEvent],
) -> Result<u64, StoreError> {
    let mut b = SqlBuilder::new(Dialect::Sqlite);
    b.push(
        "INSERT OR IGNORE INTO statements \
         (org_id, session_id, seq, start_us, duration_us, text, rows, bytes_sent, sqlstate, fingerprint) VALUES ",
    );
    let mut totals: HashMap<&str, StatementTotals> = HashMap::new();
    let mut sent = 0;
    for event in events {
        let IngestEvent::Statement { session_id, statement: s } = event else { continue };
        b.push(if sent == 0 { "(" } else { ", (" });
        sent += 1;
        b.bind_int(org.0).push(", ").bind_text(session_id.clone()).push(", ");
        b.bind_int(i64::try_from(s.seq).unwrap_or(i64::MAX)).push(", ").bind_int(s.start).push(", ");
        b.bind_int(s.duration).push(", ").bind_text(s.text.clone()).push(", ").bind_int(s.rows).push(", ");
        b.bind_int(s.bytes_sent).push(", ").bind_text(s.sqlstate.clone()).push(", ");
        b.bind_text(fingerprint(&s.text)).push(")");
        totals.entry(session_id).or_default().add(s.rows, s.bytes_sent);
    }
    let (sql, args) = b.into_parts();
    let inserted = super::query_with(&sql, args).execute(&mut **tx).await?.rows_affected();
    // One statement for every session of the chunk.
    let mut b = SqlBuilder::new(Dialect::Sqlite);
    if inserted == sent {
        b.push(
            "UPDATE sessions SET statement_count = statement_count + v.column2, rows_sent = rows_sent + v.column3, \
             bytes_sent = bytes_sent + v.column4 FROM (VALUES ",
        );
        for (i, (session_id, t)) in totals.iter().enumerate() {
            b.push(if i == 0 { "(" } else { ", (" }).bind_text(*session_id).push(", ").bind_int(t.statements);
            b.push(", ").bind_int(t.rows).push(", ").bind_int(t.bytes).push(")");
        }
        b.push(") AS v WHERE sessions.org_id = ").bind_int(org.0).push(" AND sessions.id = v.column1");
    } else {
        b.push(
            "UPDATE sessions SET (statement_count, rows_sent, bytes_sent) = \
             (SELECT COUNT(*), COALESCE(SUM(MAX(st.rows, 0)), 0), COALESCE(SUM(MAX(st.bytes_sent, 0)), 0) \
              FROM statements st WHERE st.org_id = sessions.org_id AND st.session_id = sessions.id) \
             WHERE org_id = ",
        );
        b.bind_int(org.0).push(" AND id IN (");
        for (i, session_id) in totals.keys().enumerate() {
            b.push(if i == 0 { "" } else { ", " }).bind_text(*session_id);
        }
        b.push(")");
    }
    let (sql, args) = b.into_parts();
    super::query_with(&sql, args).execute(&mut **tx).await?;
    Ok(inserted)
}

/// What a batch of new statements adds to its session's totals.
#[derive(Debug, Default)]
struct StatementTotals {
    statements: i64,
    rows: i64,
    bytes: i64,
}

impl StatementTotals {
    fn add(&mut self, rows: i64, bytes: i64) {
        self.statements += 1;
        self.rows += rows.max(0);
        self.bytes += bytes.max(0);
    }
}
