//! A session's statements on SQLite, stored a report at a time: one row per
//! session and report (`statement_chunks`, see
//! `migrations/sqlite/0006_statement_chunks.sql`), not one per statement.
//!
//! Each statement is still stored once per (session, seq). Statements above
//! the highest seq stored for their session (`sessions.statement_max_seq`)
//! are new, the rule for a connector that reports in order; for any other
//! (a replay, or a session whose highest seq is not known yet) the chunks
//! that may hold them are read first and what they hold is left out.

use std::collections::{HashMap, HashSet};

use gatehouse_core::OrgId;
use sqlx::{Row, SqliteConnection};

use crate::StoreError;
use crate::fingerprint::fingerprint;
use crate::model::{IngestEvent, StatementRecord, StatementsPage};
use crate::row::running_completed_by;
use crate::sql::{Dialect, SqlBuilder};

/// Statements per chunk row at most, so that no row grows without bound.
const CHUNK_STATEMENTS: usize = 500;

/// Statement text per chunk row at most (but one statement, however long): a page of long
/// statements unpacks little more than itself.
const CHUNK_TEXT_BYTES: usize = 1 << 20;

/// Rows (or sessions) per statement: at most 7 values each, well under
/// SQLite's bind limit (32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// A chunk's statement: `[seq, start_us, duration_us, rows, bytes_sent, sqlstate, text,
/// rows_changed]`. Chunks stored before `rows_changed` was recorded end at `text`.
struct Packed(StatementRecord);

impl<'de> serde::Deserialize<'de> for Packed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = Packed;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a statement's 7 or 8 items")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Packed, A::Error> {
                let missing = |n| serde::de::Error::invalid_length(n, &self);
                let mut s = StatementRecord {
                    seq: items.next_element()?.ok_or_else(|| missing(0))?,
                    start: items.next_element()?.ok_or_else(|| missing(1))?,
                    duration: items.next_element()?.ok_or_else(|| missing(2))?,
                    rows: items.next_element()?.ok_or_else(|| missing(3))?,
                    bytes_sent: items.next_element()?.ok_or_else(|| missing(4))?,
                    sqlstate: items.next_element()?.ok_or_else(|| missing(5))?,
                    text: items.next_element()?.ok_or_else(|| missing(6))?,
                    ..StatementRecord::default()
                };
                s.rows_changed = items.next_element()?.unwrap_or_default();
                Ok(Packed(s))
            }
        }
        deserializer.deserialize_seq(Items)
    }
}

/// One row of `statement_chunks`: a session and up to [`CHUNK_STATEMENTS`]
/// of its statements.
type Chunk<'a> = (&'a str, &'a [&'a StatementRecord]);

/// One session's statements of a report, in seq order, each seq once.
struct SessionStatements<'a> {
    session_id: &'a str,
    statements: Vec<&'a StatementRecord>,
    /// The highest seq stored for the session once these are in.
    max_seq: i64,
}

/// Stores the statement events of a report (the others are ignored) for the sessions
/// `connector_id` reported, and grows their totals by the new ones. Returns how many were new.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    org: OrgId,
    connector_id: &str,
    events: &[IngestEvent],
) -> Result<u64, StoreError> {
    let mut sessions = by_session(events);
    let (known, others) = stored_max_seqs(conn, org, connector_id, &sessions).await?;
    // A connector records its own sessions and nothing else. (A session not stored yet may be
    // its own: a replay may bring statements before their start.)
    sessions.retain(|s| !others.contains(s.session_id));
    for session in &mut sessions {
        let first = seq(session.statements[0]);
        let last = seq(session.statements[session.statements.len() - 1]);
        session.max_seq = match known.get(session.session_id) {
            Some(&Some(max)) if first > max => last,
            _ => leave_out_stored(conn, org, session).await?.max(last),
        };
    }

    let chunks: Vec<Chunk<'_>> =
        sessions.iter().flat_map(|s| chunked(&s.statements).map(|statements| (s.session_id, statements))).collect();
    for part in chunks.chunks(ROWS_PER_STATEMENT) {
        insert_chunks(conn, org, part).await?;
    }
    insert_fingerprints(conn, org, &sessions).await?;
    add_to_totals(conn, org, &sessions).await?;
    Ok(chunks.iter().map(|(_, statements)| statements.len() as u64).sum())
}

/// The `page` of a session's statements (in the order they started), the one it is `running`
/// among them. Only the chunks that may hold the page are unpacked: those that reach past its
/// start, in the order of their earliest start, until the page is full and the next chunk
/// starts past its last statement.
pub(super) async fn read_page(
    conn: &mut SqliteConnection,
    org: OrgId,
    session_id: &str,
    page: &StatementsPage,
    running: Option<StatementRecord>,
) -> Result<Vec<StatementRecord>, StoreError> {
    // Which chunks, from the index alone; then their bodies one at a time, as long as the page
    // may need them.
    let chunks: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT first_seq, min_start_us FROM statement_chunks INDEXED BY statement_chunks_by_start \
         WHERE org_id = ? AND session_id = ? AND (max_start_us IS NULL OR max_start_us >= ?) \
         ORDER BY min_start_us, first_seq",
    )
    .bind(org.0)
    .bind(session_id)
    .bind(page.after.map_or(i64::MIN, |(start, _)| start))
    .fetch_all(&mut *conn)
    .await?;
    let mut held: Vec<StatementRecord> = running.into_iter().filter(|s| page.follows(s)).collect();
    let (mut bytes, mut full) = (held.iter().map(StatementsPage::size).sum::<usize>(), false);
    for (first_seq, earliest) in chunks {
        // Full, the page is sorted: a chunk that starts past its last statement holds none of it.
        if full && earliest.is_some_and(|earliest| held.last().is_none_or(|last| earliest > last.start)) {
            break;
        }
        let body: String = sqlx::query_scalar(
            "SELECT body FROM statement_chunks WHERE org_id = ? AND session_id = ? AND first_seq = ?",
        )
        .bind(org.0)
        .bind(session_id)
        .bind(first_seq)
        .fetch_one(&mut *conn)
        .await?;
        for statement in unpack(&body)?.into_iter().filter(|s| page.follows(s)) {
            bytes = bytes.saturating_add(StatementsPage::size(&statement));
            held.push(statement);
        }
        // Sorted and cut once the page may be full (and then it stays small), not as a whole
        // session is read.
        if full || held.len() >= page.limit || bytes > page.bytes {
            held.sort_by_key(StatementRecord::key);
            held.truncate(page.fitting(&held));
            bytes = held.iter().map(StatementsPage::size).sum();
            full = true;
        }
    }
    held.sort_by_key(StatementRecord::key);
    held.truncate(page.fitting(&held));
    Ok(held)
}

/// The statement events grouped by session, in the order sessions first
/// appear, each session's in seq order without repeats.
fn by_session(events: &[IngestEvent]) -> Vec<SessionStatements<'_>> {
    let mut index: foldhash::HashMap<&str, usize> = foldhash::HashMap::default();
    let mut sessions: Vec<SessionStatements<'_>> = Vec::new();
    for event in events {
        let IngestEvent::Statement { session_id, statement } = event else { continue };
        let i = *index.entry(session_id).or_insert_with(|| {
            sessions.push(SessionStatements { session_id, statements: Vec::new(), max_seq: 0 });
            sessions.len() - 1
        });
        sessions[i].statements.push(statement);
    }
    for session in &mut sessions {
        session.statements.sort_by_key(|s| s.seq);
        session.statements.dedup_by_key(|s| s.seq);
    }
    sessions
}

/// The highest seq stored of each stored session (`None` while not known): `statement_max_seq`,
/// else 0 when it has no chunks at all, as a session reporting its first statements has not.
/// And apart, the sessions another connector than `connector_id` reported.
async fn stored_max_seqs(
    conn: &mut SqliteConnection,
    org: OrgId,
    connector_id: &str,
    sessions: &[SessionStatements<'_>],
) -> Result<(HashMap<String, Option<i64>>, HashSet<String>), StoreError> {
    let mut known = HashMap::with_capacity(sessions.len());
    let mut others = HashSet::new();
    for part in sessions.chunks(ROWS_PER_STATEMENT) {
        let mut b = SqlBuilder::new(Dialect::Sqlite);
        b.push(
            "SELECT id, connector_id, COALESCE(statement_max_seq, CASE WHEN EXISTS (SELECT 1 FROM statement_chunks c \
             WHERE c.org_id = sessions.org_id AND c.session_id = sessions.id) THEN NULL ELSE 0 END) AS max_seq \
             FROM sessions WHERE org_id = ",
        );
        b.bind_int(org.0).push(" AND id IN (");
        for (i, session) in part.iter().enumerate() {
            b.push(if i == 0 { "" } else { ", " }).bind_text(session.session_id);
        }
        b.push(")");
        let (sql, args) = b.into_parts();
        for row in super::query_with(&sql, args).fetch_all(&mut *conn).await? {
            if row.try_get::<&str, _>("connector_id")? != connector_id {
                others.insert(row.try_get("id")?);
            }
            known.insert(row.try_get("id")?, row.try_get("max_seq")?);
        }
    }
    Ok((known, others))
}

/// Drops from `session` the statements its chunks hold already; returns the
/// highest seq they hold (0 for none).
async fn leave_out_stored(
    conn: &mut SqliteConnection,
    org: OrgId,
    session: &mut SessionStatements<'_>,
) -> Result<i64, StoreError> {
    let first = seq(session.statements[0]);
    let last = seq(session.statements[session.statements.len() - 1]);
    // Only the chunks whose range meets the new statements' are unpacked.
    let rows = sqlx::query(
        "SELECT last_seq, CASE WHEN first_seq <= ?1 AND last_seq >= ?2 THEN body ELSE '[]' END AS body \
         FROM statement_chunks WHERE org_id = ?3 AND session_id = ?4",
    )
    .bind(last)
    .bind(first)
    .bind(org.0)
    .bind(session.session_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut max = 0;
    let mut held = HashSet::new();
    for row in &rows {
        max = max.max(row.try_get::<i64, _>("last_seq")?);
        held.extend(unpack(row.try_get::<&str, _>("body")?)?.into_iter().map(|s| s.seq));
    }
    session.statements.retain(|s| !held.contains(&s.seq));
    Ok(max)
}

/// `statements` in chunks of at most [`CHUNK_STATEMENTS`] and [`CHUNK_TEXT_BYTES`] of text.
fn chunked<'s, 'a>(statements: &'s [&'a StatementRecord]) -> impl Iterator<Item = &'s [&'a StatementRecord]> {
    let mut rest = statements;
    std::iter::from_fn(move || {
        let mut text = 0;
        let fitting = rest.iter().take(CHUNK_STATEMENTS).take_while(|statement| {
            text += statement.text.len();
            text <= CHUNK_TEXT_BYTES
        });
        let (chunk, tail) = rest.split_at(fitting.count().max(1).min(rest.len()));
        rest = tail;
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// Inserts chunk rows in one statement. `OR IGNORE` only because a
/// statement that cannot abort halfway needs no statement journal (SQLite
/// would otherwise copy every page it touches into one): a chunk never starts
/// at a seq stored already, so every row must go in.
async fn insert_chunks(conn: &mut SqliteConnection, org: OrgId, chunks: &[Chunk<'_>]) -> Result<(), StoreError> {
    let mut b = SqlBuilder::new(Dialect::Sqlite);
    b.push(
        "INSERT OR IGNORE INTO statement_chunks (org_id, session_id, first_seq, last_seq, min_start_us, max_start_us, \
         body) VALUES ",
    );
    for (i, (session_id, statements)) in chunks.iter().enumerate() {
        b.push(if i == 0 { "(" } else { ", (" }).bind_int(org.0).push(", ").bind_text(*session_id).push(", ");
        b.bind_int(seq(statements[0])).push(", ").bind_int(seq(statements[statements.len() - 1])).push(", ");
        let starts = statements.iter().map(|s| s.start);
        b.bind_int(starts.clone().min().unwrap_or_default()).push(", ");
        b.bind_int(starts.max().unwrap_or_default()).push(", ");
        b.bind_text(pack(statements)).push(")");
    }
    let (sql, args) = b.into_parts();
    let inserted = super::query_with(&sql, args).execute(&mut *conn).await?.rows_affected();
    if inserted != chunks.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} of {} statement chunks started at a seq stored already",
            chunks.len() as u64 - inserted,
            chunks.len()
        )));
    }
    Ok(())
}

/// Records which fingerprints the sessions ran, for the `query.fingerprint` facet.
async fn insert_fingerprints(
    conn: &mut SqliteConnection,
    org: OrgId,
    sessions: &[SessionStatements<'_>],
) -> Result<(), StoreError> {
    let mut pairs = foldhash::HashSet::default();
    for session in sessions {
        for statement in &session.statements {
            let fingerprint = fingerprint(&statement.text);
            if !fingerprint.is_empty() {
                pairs.insert((session.session_id, fingerprint));
            }
        }
    }
    let pairs: Vec<_> = pairs.into_iter().collect();
    for part in pairs.chunks(ROWS_PER_STATEMENT) {
        let mut b = SqlBuilder::new(Dialect::Sqlite);
        b.push("INSERT OR IGNORE INTO session_fingerprints (org_id, session_id, fingerprint) VALUES ");
        for (i, (session_id, fingerprint)) in part.iter().enumerate() {
            b.push(if i == 0 { "(" } else { ", (" }).bind_int(org.0).push(", ").bind_text(*session_id);
            b.push(", ").bind_text(fingerprint.clone()).push(")");
        }
        let (sql, args) = b.into_parts();
        super::query_with(&sql, args).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Grows each session's totals by its new statements and records the
/// highest seq now stored, in one statement per 500 sessions.
async fn add_to_totals(
    conn: &mut SqliteConnection,
    org: OrgId,
    sessions: &[SessionStatements<'_>],
) -> Result<(), StoreError> {
    for part in sessions.chunks(ROWS_PER_STATEMENT) {
        let mut b = SqlBuilder::new(Dialect::Sqlite);
        b.push(concat!(
            "UPDATE sessions SET statement_count = statement_count + v.column2, rows_sent = rows_sent + v.column3, \
                 bytes_sent = bytes_sent + v.column4, \
                 statement_max_seq = MAX(COALESCE(statement_max_seq, 0), v.column5), ",
            running_completed_by!("v.column5"),
            " FROM (VALUES "
        ));
        for (i, session) in part.iter().enumerate() {
            let statements = &session.statements;
            let rows: i64 = statements.iter().map(|s| s.rows.max(0)).sum();
            let bytes: i64 = statements.iter().map(|s| s.bytes_sent.max(0)).sum();
            b.push(if i == 0 { "(" } else { ", (" }).bind_text(session.session_id);
            b.push(", ").bind_int(statements.len() as i64).push(", ").bind_int(rows);
            b.push(", ").bind_int(bytes).push(", ").bind_int(session.max_seq).push(")");
        }
        b.push(") AS v WHERE sessions.org_id = ").bind_int(org.0).push(" AND sessions.id = v.column1");
        let (sql, args) = b.into_parts();
        super::query_with(&sql, args).execute(&mut *conn).await?;
    }
    Ok(())
}

fn seq(statement: &StatementRecord) -> i64 {
    i64::try_from(statement.seq).unwrap_or(i64::MAX)
}

fn pack(statements: &[&StatementRecord]) -> String {
    let rows: Vec<_> = statements
        .iter()
        .map(|s| {
            (s.seq, s.start, s.duration, s.rows, s.bytes_sent, s.sqlstate.as_str(), s.text.as_str(), s.rows_changed)
        })
        .collect();
    serde_json::to_string(&rows).expect("tuples of numbers and strings always serialize")
}

fn unpack(body: &str) -> Result<Vec<StatementRecord>, StoreError> {
    let rows: Vec<Packed> =
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("statement_chunks.body: {e}")))?;
    Ok(rows.into_iter().map(|Packed(statement)| statement).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_500_statements_or_1_mib_of_text_but_always_one() {
        let statement = |seq: u64, len: usize| StatementRecord { seq, text: "x".repeat(len), ..Default::default() };
        let mut statements: Vec<_> = (1..=1200).map(|seq| statement(seq, 10)).collect();
        statements.extend((1201..=1205).map(|seq| statement(seq, 600_000)));
        statements.push(statement(1206, 3 << 20));
        statements.push(statement(1207, 10));
        let borrowed: Vec<&StatementRecord> = statements.iter().collect();
        let sizes: Vec<usize> = chunked(&borrowed).map(<[_]>::len).collect();
        assert_eq!(sizes, [500, 500, 201, 1, 1, 1, 1, 1, 1]);
        assert_eq!(chunked(&borrowed).flatten().count(), statements.len());
        assert_eq!(chunked(&[]).count(), 0);
    }

    #[test]
    fn chunks_read_back_what_they_were_written_with_and_older_ones_without_rows_changed() {
        let statement = StatementRecord {
            seq: 7,
            start: 1,
            duration: 2,
            text: "delete from t".into(),
            rows: 0,
            bytes_sent: 17,
            sqlstate: String::new(),
            rows_changed: 5000,
            ..StatementRecord::default()
        };
        assert_eq!(unpack(&pack(&[&statement])).unwrap(), std::slice::from_ref(&statement));
        let older = r#"[[7,1,2,0,17,"","delete from t"]]"#;
        assert_eq!(unpack(older).unwrap(), [StatementRecord { rows_changed: 0, ..statement }]);
        assert!(matches!(unpack(r#"[[7,1,2,0,17,""]]"#), Err(StoreError::Corrupt(_))));
    }
}
