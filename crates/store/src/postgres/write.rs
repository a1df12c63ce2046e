//! Bulk writes for PostgreSQL: one array per column, inserted through
//! `UNNEST`, so a batch of any size is one statement of one shape (prepared
//! once per connection) instead of a VALUES list per batch size.

use std::collections::HashSet;
use std::sync::LazyLock;

use gatehouse_core::{OrgId, Session};
use sqlx::PgConnection;

use crate::StoreError;
use crate::fingerprint::fingerprint;
use crate::ip;
use crate::model::{StatementRecord, stored_end};
use crate::row::{json_list, many_values, running_completed_by};
use crate::sql::fold;
use crate::sql::rollup::{self, RollupDelta};

/// Sessions per statement: bounds the size of one statement's arrays.
const CHUNK: usize = 5_000;

// language=PostgreSQL
// Returns what the rollup counts of each new session (`{rollup}`, replaced
// by [`rollup::session_columns`]). A session stored already ended counts as
// recorded at its end (`end_recorded_us`, $44): no walk saw it open.
const INSERT_SESSIONS: &str = "\
WITH ins AS (
    INSERT INTO sessions (org_id, id, start_us, end_us, duration_us, client_ip, client_ip_bin,
        server_ip, server_ip_bin, sidecar_id, sidecar_name, sidecar_technology, user_type, user_username,
        user_id, user_name, user_email, user_formal_type, user_groups, user_external_ids, end_user_id,
        end_user_name, end_user_email, end_user_type, end_user_groups, end_user_external_ids, native_username,
        resource_type, resource_id, resource_name, resource_technology, connector_id, connector_name,
        parent_session_id, user_username_fold, user_name_fold, user_email_fold, end_user_name_fold,
        end_user_email_fold, native_username_fold, resource_name_fold, connector_name_fold, run_id,
        end_recorded_us)
    SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::bytea[],
        $8::text[], $9::bytea[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
        $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
        $22::text[], $23::text[], $24::text[], $25::text[], $26::text[], $27::text[],
        $28::text[], $29::text[], $30::text[], $31::text[], $32::text[], $33::text[],
        $34::text[], $35::text[], $36::text[], $37::text[], $38::text[],
        $39::text[], $40::text[], $41::text[], $42::text[], $43::text[], $44::int8[])
    ON CONFLICT (org_id, id) DO NOTHING
    RETURNING pk, id, {rollup}
), vals AS (
    INSERT INTO session_values (session_pk, field, value)
    SELECT ins.pk, v.field, v.value
    FROM ins JOIN UNNEST($45::text[], $46::int8[], $47::text[]) AS v (id, field, value) ON v.id = ins.id
)
SELECT {rollup} FROM ins";

static INSERT_SESSIONS_SQL: LazyLock<String> =
    LazyLock::new(|| INSERT_SESSIONS.replace("{rollup}", &rollup::session_columns()));

// language=PostgreSQL
// Rows are upserted in the order given, which is the same for every writer
// (see `RollupDelta`), so concurrent transactions lock them in one order.
const UPSERT_ROLLUP: &str = "\
WITH up AS (
    INSERT INTO session_rollup (org_id, hour_us, dim, key, n)
    SELECT $1, * FROM UNNEST($2::int8[], $3::int4[], $4::text[], $5::int8[])
    ON CONFLICT (org_id, dim, hour_us, key) DO UPDATE SET n = session_rollup.n + excluded.n
    RETURNING dim, hour_us, key, n
)
SELECT dim, hour_us, key FROM up WHERE n <= 0";

// language=PostgreSQL
const DELETE_EMPTY_ROLLUP: &str = "\
DELETE FROM session_rollup WHERE org_id = $1 AND n <= 0
    AND (dim, hour_us, key) IN (SELECT * FROM UNNEST($2::int4[], $3::int8[], $4::text[]))";

/// Applies `delta` to `org`'s rollup on `conn` (the transaction that made
/// the change), deleting rows that come to 0.
pub(super) async fn apply_rollup(conn: &mut PgConnection, org: OrgId, delta: &RollupDelta) -> Result<(), StoreError> {
    let (mut dims, mut hours, mut keys, mut counts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (dim, hour, key, n) in delta.rows() {
        dims.push(i32::try_from(dim).map_err(|_| StoreError::Corrupt(format!("rollup dim {dim}")))?);
        hours.push(hour);
        keys.push(key);
        counts.push(n);
    }
    if dims.is_empty() {
        return Ok(());
    }
    let emptied: Vec<(i32, i64, String)> = sqlx::query_as(UPSERT_ROLLUP)
        .bind(org.0)
        .bind(hours)
        .bind(dims)
        .bind(keys)
        .bind(counts)
        .fetch_all(&mut *conn)
        .await?;
    if !emptied.is_empty() {
        let (mut dims, mut hours, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for (dim, hour, key) in emptied {
            dims.push(dim);
            hours.push(hour);
            keys.push(key);
        }
        sqlx::query(DELETE_EMPTY_ROLLUP).bind(org.0).bind(dims).bind(hours).bind(keys).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts sessions and their many-valued fields; an id already stored (or
/// repeated in `sessions`) keeps its first version. Adds the new ones to
/// `rollup`, for [`apply_rollup`] in the same transaction. Returns how many
/// were new.
pub(super) async fn insert_sessions(
    conn: &mut PgConnection,
    org: OrgId,
    sessions: &[Session],
    rollup: &mut RollupDelta,
) -> Result<u64, StoreError> {
    // Within a batch the first occurrence of an id wins, as across batches.
    // Deduplicating here keeps that independent of the order in which one
    // statement happens to insert its rows.
    let mut seen = HashSet::with_capacity(sessions.len());
    let unique: Vec<&Session> = sessions.iter().filter(|s| seen.insert(s.id.as_str())).collect();
    let mut inserted = 0;
    for chunk in unique.chunks(CHUNK) {
        inserted += insert_chunk(conn, org, chunk, rollup).await?;
    }
    Ok(inserted)
}

async fn insert_chunk(
    conn: &mut PgConnection,
    org: OrgId,
    sessions: &[&Session],
    rollup: &mut RollupDelta,
) -> Result<u64, StoreError> {
    let n = sessions.len();
    let mut texts: Vec<Vec<String>> = (0..37).map(|_| Vec::with_capacity(n)).collect();
    let mut starts = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut client_bins = Vec::with_capacity(n);
    let mut server_bins = Vec::with_capacity(n);
    let (mut value_ids, mut value_fields, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for s in sessions {
        let formal = s.user.formal.clone().unwrap_or_default();
        let end_user = s.user.end_user.clone().unwrap_or_default();
        starts.push(s.start);
        let end = stored_end(s);
        ends.push(end);
        durations.push(end.map(|end| end - s.start));
        client_bins.push(ip::parse_bytes(&s.client_ip));
        server_bins.push(ip::parse_bytes(&s.server_ip));
        // In column order, leaving out the non-text columns above.
        let row = [
            s.id.clone(),
            s.client_ip.clone(),
            s.server_ip.clone(),
            s.sidecar.id.clone(),
            s.sidecar.name.clone(),
            s.sidecar.technology.clone(),
            s.user.kind.clone(),
            s.user.username.clone(),
            formal.id.clone(),
            formal.name.clone(),
            formal.email.clone(),
            formal.kind.clone(),
            json_list(&formal.groups),
            json_list(&formal.external_ids),
            end_user.id.clone(),
            end_user.name.clone(),
            end_user.email.clone(),
            end_user.kind.clone(),
            json_list(&end_user.groups),
            json_list(&end_user.external_ids),
            s.user.native_username.clone(),
            s.resource.kind.clone(),
            s.resource.id.clone(),
            s.resource.name.clone(),
            s.resource.technology.clone(),
            s.connector.id.clone(),
            s.connector.name.clone(),
            s.parent_session_id.clone(),
            fold(&s.user.username),
            fold(&formal.name),
            fold(&formal.email),
            fold(&end_user.name),
            fold(&end_user.email),
            fold(&s.user.native_username),
            fold(&s.resource.name),
            fold(&s.connector.name),
            s.connector.run_id.clone(),
        ];
        for (column, value) in texts.iter_mut().zip(row) {
            column.push(value);
        }
        for (field, value) in many_values(s) {
            value_ids.push(s.id.as_str());
            value_fields.push(field);
            values.push(value);
        }
    }
    let mut text = texts.into_iter();
    let mut next = || text.next().unwrap_or_default();
    let (id, client_ip, server_ip) = (next(), next(), next());
    let mut query = sqlx::query(&INSERT_SESSIONS_SQL)
        .bind(org.0)
        .bind(id)
        .bind(starts)
        .bind(ends.clone())
        .bind(durations)
        .bind(client_ip)
        .bind(client_bins)
        .bind(server_ip)
        .bind(server_bins);
    // $10 to $43: the remaining text columns, in order.
    for _ in 10..=43 {
        query = query.bind(next());
    }
    // $44: when their ends count as recorded, at their ends.
    let inserted = query.bind(ends).bind(value_ids).bind(value_fields).bind(values).fetch_all(&mut *conn).await?;
    for row in &inserted {
        rollup.add_row(row, 1)?;
    }
    Ok(inserted.len() as u64)
}

// language=PostgreSQL
// The sessions' statement totals grow by what was new, their fingerprints by
// what they had not run yet, and a statement announced running that a later
// one completed is forgotten, in the same statement.
const INSERT_STATEMENTS: &str = concat!(
    "\
WITH others AS (
    SELECT id FROM sessions WHERE org_id = $1 AND connector_id <> $11 AND id = ANY($2::text[])
), inserted AS (
    INSERT INTO statements (org_id, session_id, seq, start_us, duration_us, text, rows, bytes_sent, sqlstate,
        rows_changed)
    SELECT $1, u.* FROM UNNEST($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int8[], $8::int8[],
        $9::text[], $12::int8[]) AS u (session_id)
    WHERE u.session_id NOT IN (SELECT id FROM others)
    ON CONFLICT DO NOTHING
    RETURNING session_id, seq, rows, bytes_sent
), fingerprints AS (
    INSERT INTO session_fingerprints (org_id, session_id, fingerprint)
    SELECT DISTINCT $1::int8, session_id, fingerprint FROM UNNEST($2::text[], $10::text[]) AS f (session_id, fingerprint)
    WHERE fingerprint <> '' AND session_id NOT IN (SELECT id FROM others)
    ORDER BY 2, 3
    ON CONFLICT DO NOTHING
), totals AS (
    SELECT session_id, COUNT(*) AS n, SUM(GREATEST(rows, 0))::int8 AS r, SUM(GREATEST(bytes_sent, 0))::int8 AS bytes,
        MAX(seq) AS max_seq
    FROM inserted GROUP BY session_id
), counted AS (
    UPDATE sessions s SET statement_count = s.statement_count + t.n, rows_sent = s.rows_sent + t.r,
        bytes_sent = s.bytes_sent + t.bytes, ",
    running_completed_by!("t.max_seq"),
    "
    FROM totals t WHERE s.org_id = $1 AND s.id = t.session_id
)
SELECT COUNT(*) FROM inserted");

/// Inserts statements, except those of sessions another connector reported: a connector
/// records its own sessions and nothing else. (A session not stored yet may be this one's: a
/// replay may bring statements before their start.) One already stored (by session and
/// sequence number) is left as it is. Returns how many were new.
pub(super) async fn insert_statements(
    conn: &mut PgConnection,
    org: OrgId,
    connector_id: &str,
    statements: &[(&str, &StatementRecord)],
) -> Result<u64, StoreError> {
    let mut seen = foldhash::HashSet::with_capacity_and_hasher(statements.len(), Default::default());
    let unique: Vec<_> = statements.iter().filter(|(id, s)| seen.insert((*id, s.seq))).collect();
    let mut stored = 0;
    for chunk in unique.chunks(CHUNK) {
        let done: i64 = sqlx::query_scalar(INSERT_STATEMENTS)
            .bind(org.0)
            .bind(chunk.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| i64::try_from(s.seq).unwrap_or(i64::MAX)).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| s.start).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| s.duration).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| s.text.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| s.rows).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| s.bytes_sent).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| s.sqlstate.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, s)| fingerprint(&s.text)).collect::<Vec<_>>())
            .bind(connector_id)
            .bind(chunk.iter().map(|(_, s)| s.rows_changed).collect::<Vec<_>>())
            .fetch_one(&mut *conn)
            .await?;
        stored += u64::try_from(done).unwrap_or_default();
    }
    Ok(stored)
}
