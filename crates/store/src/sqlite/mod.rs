//! The embedded default store: one SQLite file under the data directory.

mod connectors;
mod statements;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_core::{Micros, OrgId, Session};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, SqlitePool};

use crate::model::*;
use crate::row::{many_values, session_from_row};
use crate::sql::rollup::{RollupDelta, push_rollup_upsert};
use crate::sql::{
    AggRow, Arg, Dialect, Exec, SqlBuilder, Walk, identity, orgs, push_insert_sessions, push_list, registry,
    terminations,
};
use crate::{Store, StoreError};

/// The SQLite migrations, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// By default, the longest a read (a statement, or a read transaction) may
/// run before it is stopped ([`StoreError::TimedOut`]): no query, however costly, holds
/// a reader and a core for long. Writes are not bounded.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// SQLite virtual-machine instructions between deadline checks.
const PROGRESS_OPS: i32 = 10_000;

/// Sessions per INSERT statement: 44 values each, well under SQLite's bind limit.
const INSERT_CHUNK: usize = 200;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers. SQLite reads concurrently in WAL mode.
    readers: SqlitePool,
    /// One connection of its own for [`Store::ping`]: readers all busy with long reads are no
    /// sign of a store that cannot answer.
    health: SqlitePool,
    /// The one connection that writes. SQLite has one writer at a time
    /// anyway; writes queue here rather than retry on a busy database, and
    /// this connection's page cache stays warm: a connection discards its
    /// whole cache whenever another one has written, and while writes
    /// rotated through the pool, re-reading it made each report a fifth
    /// dearer to store.
    writer: SqlitePool,
    /// How long a read may run (zero: no limit).
    read_timeout: Duration,
}

/// Stops what `conn` runs from now on once `read_timeout` has passed (zero: never): SQLite
/// asks the handler every few thousand instructions whether to go on.
async fn start_read_timeout(conn: &mut SqliteConnection, read_timeout: Duration) -> Result<(), sqlx::Error> {
    if !read_timeout.is_zero() {
        let deadline = Instant::now() + read_timeout;
        let mut handle = conn.lock_handle().await?;
        handle.set_progress_handler(PROGRESS_OPS, move || Instant::now() < deadline);
    }
    Ok(())
}

/// Stops what `conn` runs from now on once `read_timeout` has passed (zero: never), or once
/// the [`Abandon`] returned is dropped: by the read's future when its caller went away (a client
/// gone, its deadline passed). SQLite runs a statement on a thread of its own, which would
/// otherwise go on to its end, or its timeout, on a core nobody waits for.
async fn abandonable(conn: &mut SqliteConnection, read_timeout: Duration) -> Result<Abandon, sqlx::Error> {
    let abandoned = Arc::new(AtomicBool::new(false));
    let deadline = (!read_timeout.is_zero()).then(|| Instant::now() + read_timeout);
    let flag = Arc::clone(&abandoned);
    let mut handle = conn.lock_handle().await?;
    handle.set_progress_handler(PROGRESS_OPS, move || {
        !flag.load(Ordering::Relaxed) && deadline.is_none_or(|deadline| Instant::now() < deadline)
    });
    Ok(Abandon(abandoned))
}

/// Drop it to stop the read it was made for (see [`abandonable`]). Dropped after a read that
/// completed too: the connection's next use sets its handler anew.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations;
    /// reads are stopped after [`READ_TIMEOUT`].
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, READ_TIMEOUT).await
    }

    /// As [`open`](Self::open), with reads stopped after `read_timeout`
    /// (zero: never).
    pub async fn open_with(path: &Path, read_timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Held from the first connection on: turning a new file to WAL takes
        // an exclusive lock SQLite does not wait for, so two processes
        // opening a new store at once would otherwise see "database is locked".
        let lock = migration_lock(path).await?;
        // Writes wait their turn here by design: not worth a warning.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_slow_level(log::LevelFilter::Debug)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await.map_err(|error| crate::migrate_error(&MIGRATOR, error))?;
        // Each use of a reader gets `read_timeout`, a new connection (which the pool hands
        // out without `before_acquire`) as a reused one.
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| Box::pin(start_read_timeout(conn, read_timeout)))
            .before_acquire(move |conn, _| {
                Box::pin(async move {
                    // A read stopped inside a transaction (an aggregation's materializing
                    // INSERT) ends it in SQLite, and sqlx, whose ROLLBACK then fails, still
                    // counts it open: its next transaction there would be a savepoint that
                    // outlives its rollback, a snapshot blind to every later write. Closed.
                    if conn.is_in_transaction() {
                        return Ok(false);
                    }
                    start_read_timeout(conn, read_timeout).await.map(|()| true)
                })
            })
            .connect_with(options.clone())
            .await?;
        let health = SqlitePoolOptions::new().max_connections(1).connect_lazy_with(options);
        drop(lock);
        Ok(Self { readers, writer, health, read_timeout })
    }

    /// The migrations the store at `path` has not applied yet, as
    /// `(version, description)`: all of them when there is no store there.
    /// Reads only: neither the file nor a missing directory is created. A path that cannot be
    /// looked at (a directory of another user's) is an error, not a store yet to create.
    pub async fn pending_migrations(path: &Path) -> Result<Vec<(i64, String)>, StoreError> {
        if !path.try_exists()? {
            return crate::pending_migrations(&MIGRATOR, &[]);
        }
        let options = SqliteConnectOptions::new().filename(path).read_only(true);
        let mut conn = sqlx::ConnectOptions::connect(&options).await?;
        let tracked: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')")
                .fetch_one(&mut conn)
                .await?;
        let applied: Vec<i64> = if tracked {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&mut conn).await?
        } else {
            Vec::new()
        };
        crate::pending_migrations(&MIGRATOR, &applied)
    }

    /// The readers' pool, for benchmarks that compare raw queries with the
    /// API, and tests that look at or change tables directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.readers
    }

    /// The rows of a read that may be costly, each decoded as it comes (a page of 100,000
    /// sessions is never held as rows too), stopped if its future is dropped.
    async fn read_abandonable<T>(
        &self,
        sql: &str,
        args: Vec<Arg>,
        decode: impl Fn(&sqlx::sqlite::SqliteRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        use futures::TryStreamExt;
        let mut conn = self.readers.acquire().await?;
        // After the connection, so dropped before it: the statement is stopped, then the
        // connection goes back to the pool.
        let _abandon = abandonable(&mut conn, self.read_timeout).await?;
        let mut rows = query_with(sql, args).fetch(&mut *conn);
        let mut decoded = Vec::new();
        while let Some(row) = rows.try_next().await? {
            decoded.push(decode(&row)?);
        }
        Ok(decoded)
    }

    /// The writer: every statement that changes something goes here.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The `EXPLAIN QUERY PLAN` lines of a listing, to check that it uses
    /// indexes rather than scanning the table.
    pub async fn explain_list(&self, org: OrgId, query: &ListQuery) -> Result<Vec<String>, StoreError> {
        let (sql, args) = self.list_statement(org, query).await?;
        let rows = query_with(&format!("EXPLAIN QUERY PLAN {sql}"), args).fetch_all(&self.readers).await?;
        rows.iter().map(|row| Ok(row.try_get::<String, _>("detail")?)).collect()
    }

    async fn list_statement(&self, org: OrgId, query: &ListQuery) -> Result<(String, Vec<Arg>), StoreError> {
        let earliest = match query.window_start {
            Some(start) => Some(self.earliest_start(org, start).await?),
            None => None,
        };
        let mut builder = SqlBuilder::new(Dialect::Sqlite);
        push_list(&mut builder, org, query, earliest, Walk::Index);
        Ok(builder.into_parts())
    }

    /// A lower bound on the start of any session of `org` that overlaps a
    /// window starting at `window_start`: completed sessions last at most the
    /// longest stored duration, and active ones started no earlier than the
    /// oldest active start. Both are single index probes. (The covering
    /// `sessions_histogram` is in start order too, and SQLite would find the
    /// oldest active start by walking it from the oldest session on.)
    async fn earliest_start(&self, org: OrgId, window_start: Micros) -> Result<Micros, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT MAX(duration_us) FROM sessions WHERE org_id = ?1) AS longest, \
                    (SELECT MIN(start_us) FROM sessions INDEXED BY sessions_active \
                     WHERE org_id = ?1 AND end_us IS NULL) AS oldest_active",
        )
        .bind(org.0)
        .fetch_one(&self.readers)
        .await?;
        let longest: Option<i64> = row.try_get("longest")?;
        let oldest_active: Option<i64> = row.try_get("oldest_active")?;
        let completed_bound = window_start.saturating_sub(longest.unwrap_or(0));
        Ok(oldest_active.map_or(completed_bound, |oldest| oldest.min(completed_bound)))
    }
}

/// Writes on the one writer, reads on the readers.
impl Exec for SqliteStore {
    type Row = sqlx::sqlite::SqliteRow;

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn write(&self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(query_with(sql, args).execute(self.writer()).await?.rows_affected())
    }

    async fn write_returning(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Self::Row>, sqlx::Error> {
        query_with(sql, args).fetch_optional(self.writer()).await
    }

    async fn read_optional(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Self::Row>, sqlx::Error> {
        query_with(sql, args).fetch_optional(&self.readers).await
    }

    async fn read_all(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>, sqlx::Error> {
        query_with(sql, args).fetch_all(&self.readers).await
    }
}

impl crate::sql::AggRunner for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn earliest_start(&self, org: OrgId, window_start: Micros) -> Result<Micros, StoreError> {
        Self::earliest_start(self, org, window_start).await
    }

    async fn rows(&self, sql: String, args: Vec<Arg>) -> Result<Vec<AggRow>, StoreError> {
        self.read_abandonable(&sql, args, AggRow::read).await
    }
}

impl crate::sql::Materialize for SqliteStore {
    type Matched = Matched;

    fn time_limit(&self) -> Option<Duration> {
        (!self.read_timeout.is_zero()).then_some(self.read_timeout)
    }

    async fn matched(&self, select: String, args: Vec<Arg>) -> Result<Matched, StoreError> {
        // Rolled back when the runner is dropped, and the table with it.
        let mut tx = self.readers.begin().await?;
        let abandon = abandonable(&mut tx, self.read_timeout).await?;
        query_with(&format!("CREATE TEMP TABLE agg_matching AS {select}"), args).execute(&mut *tx).await?;
        Ok(Matched { _abandon: abandon, tx: tokio::sync::Mutex::new(tx) })
    }
}

/// Aggregation statements over the sessions a costly filter matched (see
/// [`crate::sql::Materialize`]), one after another on the connection that holds them.
pub(crate) struct Matched {
    /// First, so dropped first: a statement still running is stopped before the rollback.
    _abandon: Abandon,
    tx: tokio::sync::Mutex<sqlx::Transaction<'static, Sqlite>>,
}

impl crate::sql::AggRunner for Matched {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn earliest_start(&self, _org: OrgId, window_start: Micros) -> Result<Micros, StoreError> {
        // Never asked: the window was applied when the sessions were matched.
        Ok(window_start)
    }

    async fn rows(&self, sql: String, args: Vec<Arg>) -> Result<Vec<AggRow>, StoreError> {
        let mut tx = self.tx.lock().await;
        AggRow::read_all(&query_with(&sql, args).fetch_all(&mut **tx).await?)
    }
}

/// An exclusive lock on `<database>.lock`, held while a store opens. Two
/// processes opening a new store at once (`serve` and a `keys` command, say)
/// would otherwise both apply its migrations, and one would fail: SQLite
/// has no lock that spans sqlx's migration transactions.
async fn migration_lock(database: &Path) -> Result<std::fs::File, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let lock = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        file.lock()?;
        Ok(file)
    });
    match lock.await {
        Ok(Ok(file)) => Ok(file),
        Ok(Err(e)) => Err(StoreError::Unavailable(sqlx::Error::Io(e))),
        Err(e) => Err(StoreError::Unavailable(sqlx::Error::Io(std::io::Error::other(e)))),
    }
}

/// Builds a query from built SQL, binding every argument in order.
pub(super) fn query_with(sql: &str, args: Vec<Arg>) -> sqlx::query::Query<'_, Sqlite, SqliteArguments<'_>> {
    let mut query = sqlx::query(sql);
    for arg in args {
        query = match arg {
            Arg::Null => query.bind(None::<i64>),
            Arg::Int(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Blob(v) => query.bind(v),
        };
    }
    query
}

/// Inserts sessions and their many-valued fields on `conn` (a transaction);
/// an id already stored, or repeated in `sessions`, keeps its first version.
/// Adds the new ones to `rollup`, for [`apply_rollup`] in the same
/// transaction. Returns how many were new.
pub(super) async fn insert_sessions_in(
    conn: &mut SqliteConnection,
    org: OrgId,
    sessions: &[Session],
    rollup: &mut RollupDelta,
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    // Multi-row statements: per-statement overhead dominates row inserts.
    for chunk in sessions.chunks(INSERT_CHUNK) {
        let mut b = SqlBuilder::new(Dialect::Sqlite);
        push_insert_sessions(&mut b, org, chunk);
        let (sql, args) = b.into_parts();
        let rows = query_with(&sql, args).fetch_all(&mut *conn).await?;
        inserted += rows.len() as u64;
        // The first session with an id is the one stored, so index its values.
        let mut by_id: HashMap<&str, &Session> = HashMap::new();
        for s in chunk {
            by_id.entry(s.id.as_str()).or_insert(s);
        }
        let mut values = Vec::new();
        for row in &rows {
            rollup.add_row(row, 1)?;
            let pk: i64 = row.try_get("pk")?;
            let id: String = row.try_get("id")?;
            let session = by_id
                .get(id.as_str())
                .ok_or_else(|| StoreError::Corrupt(format!("insert returned unknown id {id}")))?;
            values.extend(many_values(session).into_iter().map(|(field, value)| (pk, field, value)));
        }
        for part in values.chunks(INSERT_CHUNK * 3) {
            let mut b = SqlBuilder::new(Dialect::Sqlite);
            b.push("INSERT INTO session_values (session_pk, field, value) VALUES ");
            for (i, (pk, field, value)) in part.iter().enumerate() {
                b.push(if i == 0 { "(" } else { ", (" });
                b.bind_int(*pk).push(", ").bind_int(*field).push(", ").bind_text(*value).push(")");
            }
            let (sql, args) = b.into_parts();
            query_with(&sql, args).execute(&mut *conn).await?;
        }
    }
    Ok(inserted)
}

/// Rollup rows per upsert: 5 values each, well under SQLite's bind limit.
const ROLLUP_CHUNK: usize = 1_000;

/// Applies `delta` to `org`'s rollup on `conn` (the transaction that made
/// the change), deleting rows that come to 0.
pub(super) async fn apply_rollup(
    conn: &mut SqliteConnection,
    org: OrgId,
    delta: &RollupDelta,
) -> Result<(), StoreError> {
    let rows: Vec<_> = delta.rows().collect();
    let removes = delta.removes();
    let mut emptied = Vec::new();
    for chunk in rows.chunks(ROLLUP_CHUNK) {
        let mut b = SqlBuilder::new(Dialect::Sqlite);
        push_rollup_upsert(&mut b, org, chunk, removes);
        let (sql, args) = b.into_parts();
        for row in query_with(&sql, args).fetch_all(&mut *conn).await? {
            if row.try_get::<i64, _>("n")? <= 0 {
                emptied.push((
                    row.try_get::<i64, _>("dim")?,
                    row.try_get::<i64, _>("hour_us")?,
                    row.try_get::<String, _>("key")?,
                ));
            }
        }
    }
    for (dim, hour, key) in emptied {
        sqlx::query("DELETE FROM session_rollup WHERE org_id = ? AND dim = ? AND hour_us = ? AND key = ? AND n <= 0")
            .bind(org.0)
            .bind(dim)
            .bind(hour)
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_org_noting_creation(&self, name: &str) -> Result<(Org, bool), StoreError> {
        orgs::ensure_org_noting_creation(self, name).await
    }

    async fn find_org(&self, name: &str) -> Result<Option<Org>, StoreError> {
        orgs::find_org(self, name).await
    }

    async fn get_org(&self, id: OrgId) -> Result<Option<Org>, StoreError> {
        orgs::get_org(self, id).await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        orgs::list_orgs(self).await
    }

    async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
        orgs::insert_api_key(self, key).await
    }

    async fn find_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, StoreError> {
        orgs::find_api_key(self, prefix).await
    }

    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKeyInfo>, StoreError> {
        orgs::list_api_keys(self, org).await
    }

    async fn revoke_api_key(&self, org: OrgId, prefix: &str, at: Micros) -> Result<bool, StoreError> {
        orgs::revoke_api_key(self, org, prefix, at).await
    }

    async fn touch_api_key(&self, prefix: &str, at: Micros) -> Result<(), StoreError> {
        orgs::touch_api_key(self, prefix, at).await
    }

    async fn secret_or_init(&self, name: &str, init: &[u8]) -> Result<Vec<u8>, StoreError> {
        orgs::secret_or_init(self, name, init).await
    }

    async fn insert_sessions(&self, org: OrgId, sessions: &[Session]) -> Result<u64, StoreError> {
        let mut tx = self.writer().begin().await?;
        let mut rollup = RollupDelta::default();
        let inserted = insert_sessions_in(&mut tx, org, sessions, &mut rollup).await?;
        apply_rollup(&mut tx, org, &rollup).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn get_session(&self, org: OrgId, id: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {} FROM sessions s WHERE s.org_id = ? AND s.id = ?", crate::sql::SESSION_COLUMNS);
        let row = sqlx::query(&sql).bind(org.0).bind(id).fetch_optional(&self.readers).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(&self, org: OrgId, query: &ListQuery) -> Result<Vec<Session>, StoreError> {
        let (sql, args) = self.list_statement(org, query).await?;
        self.read_abandonable(&sql, args, |row| session_from_row(row)).await
    }

    async fn listing_clock(&self) -> Result<Micros, StoreError> {
        // Every end is recorded by the one writer, whose clock is read once it holds it: with
        // the writer in hand, no write is between its reading and its commit.
        let _writer = self.writer().acquire().await?;
        Ok(crate::model::recording_clock())
    }

    async fn aggregate(&self, org: OrgId, query: &AggregateQuery) -> Result<Aggregates, StoreError> {
        crate::sql::aggregate(self, org, query).await
    }

    async fn aggregate_raw(&self, org: OrgId, query: &AggregateQuery) -> Result<Aggregates, StoreError> {
        crate::sql::aggregate_raw(self, org, query).await
    }

    async fn create_resource(&self, org: OrgId, resource: &Resource) -> Result<(), StoreError> {
        registry::create_resource(self, org, resource).await
    }

    async fn list_resources(&self, org: OrgId) -> Result<Vec<Resource>, StoreError> {
        registry::list_resources(self, org).await
    }

    async fn create_connector(&self, connector: &NewConnector) -> Result<(), StoreError> {
        registry::create_connector(self, connector).await
    }

    async fn list_connectors(&self, org: OrgId) -> Result<Vec<ConnectorInfo>, StoreError> {
        registry::list_connectors(self, org).await
    }

    async fn find_connector(&self, key_prefix: &str) -> Result<Option<StoredConnector>, StoreError> {
        registry::find_connector(self, key_prefix).await
    }

    async fn replace_connector_key(
        &self,
        org: OrgId,
        name: &str,
        key_prefix: &str,
        key_hash: &[u8],
        change: KeyReplacement,
    ) -> Result<Option<String>, StoreError> {
        registry::replace_connector_key(self, org, name, key_prefix, key_hash, change).await
    }

    async fn create_user(&self, org: OrgId, user: &crate::identity::User) -> Result<(), StoreError> {
        identity::create_user(self, org, user).await
    }

    async fn find_user(
        &self,
        org: OrgId,
        kind: crate::identity::UserKind,
        handle: &str,
    ) -> Result<Option<crate::identity::User>, StoreError> {
        identity::find_user(self, org, kind, handle).await
    }

    async fn list_users(&self, org: OrgId) -> Result<Vec<crate::identity::User>, StoreError> {
        identity::list_users(self, org).await
    }

    async fn update_user(&self, org: OrgId, user: &crate::identity::User) -> Result<bool, StoreError> {
        identity::update_user(self, org, user).await
    }

    async fn insert_access_token(&self, token: &crate::identity::NewAccessToken) -> Result<(), StoreError> {
        identity::insert_access_token(self, token).await
    }

    async fn find_access_token(&self, prefix: &str) -> Result<Option<crate::identity::StoredAccessToken>, StoreError> {
        identity::find_access_token(self, prefix).await
    }

    async fn list_access_tokens(
        &self,
        org: OrgId,
        user_id: &str,
    ) -> Result<Vec<crate::identity::AccessTokenInfo>, StoreError> {
        identity::list_access_tokens(self, org, user_id).await
    }

    async fn revoke_access_token(&self, org: OrgId, prefix: &str, at: Micros) -> Result<bool, StoreError> {
        identity::revoke_access_token(self, org, prefix, at).await
    }

    async fn touch_access_token(&self, prefix: &str, at: Micros) -> Result<(), StoreError> {
        identity::touch_access_token(self, prefix, at).await
    }

    async fn set_resource_default_role(&self, org: OrgId, resource_id: &str, role: &str) -> Result<bool, StoreError> {
        identity::set_resource_default_role(self, org, resource_id, role).await
    }

    async fn resource_access(
        &self,
        org: OrgId,
        resource_id: &str,
    ) -> Result<Option<crate::identity::ResourceAccess>, StoreError> {
        identity::resource_access(self, org, resource_id).await
    }

    async fn grant_role(&self, org: OrgId, grant: &crate::identity::RoleGrant, at: Micros) -> Result<bool, StoreError> {
        identity::grant_role(self, org, grant, at).await
    }

    async fn revoke_role_grant(&self, org: OrgId, grant: &crate::identity::RoleGrant) -> Result<bool, StoreError> {
        identity::revoke_role_grant(self, org, grant).await
    }

    async fn connector_hello(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        previous: &[PreviousRun],
        at: Micros,
    ) -> Result<u64, StoreError> {
        self.connector_hello_impl(org, connector_id, run_id, previous, at).await
    }

    async fn connector_heartbeat(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<(), StoreError> {
        self.connector_heartbeat_impl(org, connector_id, run_id, at).await
    }

    async fn connector_goodbye(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<u64, StoreError> {
        self.connector_goodbye_impl(org, connector_id, run_id, at).await
    }

    async fn expire_connectors(&self, heard_before: Micros) -> Result<u64, StoreError> {
        self.expire_connectors_impl(heard_before).await
    }

    async fn ingest(&self, org: OrgId, connector_id: &str, events: &[IngestEvent]) -> Result<u64, StoreError> {
        self.ingest_impl(org, connector_id, events).await
    }

    async fn statements_page(
        &self,
        org: OrgId,
        session_id: &str,
        page: StatementsPage,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        self.statements_page_impl(org, session_id, page).await
    }

    async fn create_termination(
        &self,
        org: OrgId,
        termination: &TerminationRecord,
        pending_since: Micros,
    ) -> Result<TerminationRecord, StoreError> {
        self.create_termination_impl(org, termination, pending_since).await
    }

    async fn pending_terminations(
        &self,
        org: OrgId,
        connector_id: &str,
        since: Micros,
    ) -> Result<Vec<TerminationRecord>, StoreError> {
        terminations::pending_terminations(self, org, connector_id, since).await
    }

    async fn session_may_resume(&self, org: OrgId, session_id: &str) -> Result<bool, StoreError> {
        terminations::session_may_resume(self, org, session_id).await
    }

    async fn delete_completed_before(&self, before: Micros, batch: usize) -> Result<u64, StoreError> {
        self.delete_completed_before_impl(before, batch).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.health).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs until stopped.
    const ENDLESS: &str = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n";

    #[tokio::test]
    async fn a_read_its_caller_left_stops_and_frees_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        // No timeout: only leaving stops a read.
        let store = SqliteStore::open_with(&dir.path().join("g.db"), Duration::ZERO).await.unwrap();
        // More reads left running than the pool has readers.
        for _ in 0..12 {
            let left = tokio::time::timeout(
                Duration::from_millis(20),
                store.read_abandonable(ENDLESS, Vec::new(), |_| Ok(())),
            )
            .await;
            assert!(left.is_err(), "an endless read ends only when stopped");
        }
        let answered =
            tokio::time::timeout(Duration::from_secs(20), store.read_abandonable("SELECT 1", Vec::new(), |_| Ok(())))
                .await;
        assert_eq!(answered.expect("a reader is free again").unwrap().len(), 1);
    }

    /// SQLite rolls a transaction back itself when it stops a statement that writes in it (an
    /// aggregation's materializing INSERT, its caller gone or its time up). sqlx's ROLLBACK then
    /// fails and it counts the transaction as still open: the connection's next transaction
    /// would be a savepoint whose rollback leaves it open, holding a snapshot that every later
    /// read on that connection would see, blind to new writes.
    #[tokio::test]
    async fn a_transaction_sqlite_ended_itself_leaves_no_reader_blind_to_writes() {
        use crate::sql::Materialize;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(&dir.path().join("g.db"), Duration::from_millis(100)).await.unwrap();
        let endless_rows = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n";
        for round in 0..10 {
            let stopped = store.matched(endless_rows.to_owned(), Vec::new()).await;
            assert!(matches!(stopped, Err(StoreError::TimedOut(_))), "{:?}", stopped.err());
            drop(store.matched("SELECT 1".to_owned(), Vec::new()).await.unwrap());
            let name = format!("written-{round}");
            store.ensure_org(&name).await.unwrap();
            for _ in 0..8 {
                assert!(store.find_org(&name).await.unwrap().is_some(), "a read after round {round} misses a write");
            }
        }
    }
}
