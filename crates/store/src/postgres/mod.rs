//! The PostgreSQL store: many control-plane replicas on one database.
//!
//! Same tables, same SQL (through [`crate::sql`] with [`Dialect::Postgres`]),
//! same semantics as the SQLite store; the conformance suite runs against
//! both. What differs:
//!
//! - Migrations (`migrations/postgres`) run under sqlx's migrator, which takes
//!   a session-level `pg_advisory_lock` (keyed on the database name) before it
//!   even creates `_sqlx_migrations`, so replicas starting together apply each
//!   migration once: the others wait, then find nothing pending.
//! - Bulk writes bind one array per column and insert through `UNNEST`: one
//!   statement shape (prepared once per connection) for any batch size.
//! - Errors that mean "the database cannot be reached" (IO, pool timeouts,
//!   shutdowns, connection exceptions) become [`StoreError::Unavailable`];
//!   the pool tests connections before handing them out and replaces broken
//!   ones, so calls succeed again once the database is back.
//! - Replicas hear of each other's terminations through LISTEN/NOTIFY
//!   (`notify.rs`), and take turns at periodic jobs through advisory locks.
//! - Plans are made for each execution's values (`plan_cache_mode =
//!   force_custom_plan`): a listing's best index depends on its bounds, and a
//!   generic plan cannot see them. Parsing is still done once per connection.

mod abandon;
mod connectors;
mod notify;
mod write;

pub use connectors::{RECORDING_GATE, RETENTION_LOCK, SWEEP_LOCK};

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::{Micros, OrgId, Session};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool, Postgres, Row};

use self::abandon::ReadTransaction;
use crate::model::*;
use crate::row::session_from_row;
use crate::sql::rollup::RollupDelta;
use crate::sql::{
    AggRow, Arg, Dialect, Exec, SESSION_COLUMNS, SqlBuilder, Walk, identity, orgs, push_list, push_listed, registry,
    terminations,
};
use crate::{Store, StoreError, TerminationFeed};

/// Pages' worth of sessions a filter must be expected to match for a listing by end time or
/// duration to walk its index (see [`PgStore::walk`]): then a page is expected within a
/// hundredth of the sessions, and such a walk costs a tenth of a scan of them, so that even a
/// filter matching ten times rarer at the end walked first costs no more than finding its
/// sessions first.
const FILTER_FIRST_PAGES: f64 = 100.0;

/// The PostgreSQL migrations, embedded in the binary.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections this process keeps at most.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long a call waits for a free (or new) connection before failing
    /// with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// Prepared statements kept per connection.
    pub statement_cache_capacity: usize,
    /// Apply pending migrations in [`PgStore::connect`]. Off, connecting
    /// leaves the schema alone (see [`PgStore::pending_migrations`]).
    pub migrate: bool,
    /// The longest any one statement may run before PostgreSQL stops it
    /// ([`StoreError::TimedOut`]), so that no request, however costly its
    /// query, holds a connection and the database's CPU for long; zero for
    /// none. Migrations are not bounded. Default 30 s.
    pub statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            statement_cache_capacity: 256,
            migrate: true,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// One connection of its own for [`Store::ping`]: a pool all busy with long reads is no
    /// sign of a database that cannot answer.
    health: PgPool,
    /// `statement_timeout`, as PostgreSQL reads it (milliseconds).
    statement_timeout: String,
    /// The statement timeout, which bounds an aggregation's statements together too.
    time_limit: Option<Duration>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?...`)
    /// and, unless `options.migrate` is off, applies pending migrations.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
        Self::connect_with(connect, options).await
    }

    /// As [`PgStore::connect`], with parsed connection options.
    pub async fn connect_with(connect: PgConnectOptions, options: PgOptions) -> Result<Self, StoreError> {
        let connect = connect
            .statement_cache_capacity(options.statement_cache_capacity)
            .application_name("gatehouse")
            // sqlx's warning quotes the statement whole (a screenful of ingest SQL); the API's
            // latency histogram in /metrics is where slowness shows.
            .log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1));
        let direct = connect.clone();
        let statement_timeout = options.statement_timeout.as_millis().to_string();
        let timeout = statement_timeout.clone();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            // A connection the database dropped (restart, failover,
            // pg_terminate_backend) is found dead by a ping before any call
            // gets it, and replaced, so a database that comes back serves
            // the next call rather than failing it on a stale connection.
            .test_before_acquire(true)
            // SETs rather than startup options, which some poolers refuse.
            .after_connect(move |conn, _| {
                let timeout = timeout.clone();
                Box::pin(async move {
                    conn.execute("SET plan_cache_mode = force_custom_plan").await?;
                    conn.execute(IDLE_IN_TRANSACTION_TIMEOUT).await?;
                    set_statement_timeout(conn, &timeout).await?;
                    Ok(())
                })
            })
            .connect_with(connect)
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            // The pool retries until its timeout and then says only that: one connection of
            // our own tells why (refused, no such database, authentication, ...).
            Err(sqlx::Error::PoolTimedOut) => {
                let attempt = tokio::time::timeout(options.acquire_timeout, PgConnection::connect_with(&direct)).await;
                return Err(match attempt {
                    Ok(Err(cause)) => classify_connect(cause),
                    _ => StoreError::Unavailable(sqlx::Error::PoolTimedOut),
                });
            }
            Err(error) => return Err(classify_connect(error)),
        };
        let health = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(direct);
        let time_limit = (!options.statement_timeout.is_zero()).then_some(options.statement_timeout);
        let store = Self { pool, health, statement_timeout, time_limit };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies pending migrations, once even when replicas call this
    /// together: sqlx's migrator holds `pg_advisory_lock` while it works.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(classify_sqlx)?;
        // `run_direct` is `run` on a connection (`run` with `&mut PgConnection`
        // yields a future that is not `Send` for every lifetime).
        // A migration may rebuild a large table: it runs unbounded.
        set_statement_timeout(&mut conn, "0").await.map_err(classify_sqlx)?;
        match MIGRATOR.run_direct(&mut *conn).await {
            Ok(()) => set_statement_timeout(&mut conn, &self.statement_timeout).await.map_err(classify_sqlx),
            Err(e) => {
                // A failed run returns without unlocking: close the connection
                // (and with it the advisory lock) rather than pool it.
                let _ = conn.detach().close().await;
                Err(match e {
                    sqlx::migrate::MigrateError::Execute(e) => classify_sqlx(e),
                    e => crate::migrate_error(&MIGRATOR, e),
                })
            }
        }
    }

    /// The migrations not applied yet, as `(version, description)`.
    pub async fn pending_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let applied: Vec<i64> = if self.is_created().await? {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(classify_sqlx)?
        } else {
            Vec::new()
        };
        crate::pending_migrations(&MIGRATOR, &applied)
    }

    /// Whether this database holds a store at all (a migration ever ran here).
    pub async fn is_created(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(classify_sqlx)
    }

    /// The pool, for benchmarks that compare raw queries with the API.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The `EXPLAIN` lines of a listing (the plan PostgreSQL would run with
    /// these values), to check that it uses indexes rather than scanning.
    pub async fn explain_list(&self, org: OrgId, query: &ListQuery) -> Result<Vec<String>, StoreError> {
        async {
            let (sql, args) = self.list_statement(org, query).await?;
            let rows = query_with(&format!("EXPLAIN {sql}"), args).fetch_all(&self.pool).await?;
            rows.iter().map(|row| Ok(row.try_get::<String, _>(0)?)).collect::<Result<Vec<_>, StoreError>>()
        }
        .await
        .map_err(classify)
    }

    /// The `EXPLAIN` lines of each statement an aggregation runs, to check their plans: for a
    /// costly filter, of those that read `agg_matching`, in a transaction that fills it.
    pub async fn explain_aggregate(&self, org: OrgId, query: &AggregateQuery) -> Result<Vec<Vec<String>>, StoreError> {
        async {
            let matched = match crate::sql::is_costly(query) {
                true => {
                    let (select, args) = crate::sql::materialization(self, org, query).await?;
                    Some(crate::sql::Materialize::matched(self, select, args).await?)
                }
                false => None,
            };
            // Built by the runner that runs them: the histogram's first start is read from
            // `agg_matching` too.
            let statements = match &matched {
                Some(matched) => crate::sql::statements(matched, org, query).await?,
                None => crate::sql::statements(self, org, query).await?,
            };
            let mut plans = Vec::new();
            for (sql, args) in statements {
                let explain = format!("EXPLAIN {sql}");
                let rows = match &matched {
                    Some(Matched(transaction)) => transaction.read(&explain, args).await?,
                    None => abandon::read(&self.pool, &explain, args).await?,
                };
                plans.push(rows.iter().map(|row| row.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?);
            }
            Ok(plans)
        }
        .await
        .map_err(classify)
    }

    async fn list_statement(&self, org: OrgId, query: &ListQuery) -> Result<(String, Vec<Arg>), StoreError> {
        let earliest = match query.window_start {
            Some(start) => Some(self.earliest_start(org, start).await?),
            None => None,
        };
        let walk = self.walk(org, query, earliest).await?;
        let mut builder = SqlBuilder::new(Dialect::Postgres);
        push_list(&mut builder, org, query, earliest, walk);
        Ok(builder.into_parts())
    }

    /// How a listing finds its page (see [`Walk`]). By end time or duration, an index walk
    /// reads sessions in an order unrelated to where they are stored, and its filter may match
    /// only at the index's far end: the planner, which takes matches to be spread evenly,
    /// expected to read 30,000 entries for 100 sessions of one connector, all of them among the
    /// shortest, and read a million (8 s, where scanning the table takes 0.5 s). So unless the
    /// planner expects the filter to match many pages' worth of sessions, they are found first
    /// and sorted. (By start time, the order sessions are stored in, a walk costs at worst about
    /// what a scan does.)
    async fn walk(&self, org: OrgId, query: &ListQuery, earliest: Option<Micros>) -> Result<Walk, StoreError> {
        if query.sort == SortKey::StartTime || matches!(query.filter, gatehouse_query::Expr::All) {
            return Ok(Walk::Index);
        }
        let mut builder = SqlBuilder::new(Dialect::Postgres);
        builder.push("EXPLAIN ");
        push_listed(&mut builder, org, query, earliest);
        let (sql, args) = builder.into_parts();
        let top: String = query_with(&sql, args).fetch_one(&self.pool).await?.try_get(0)?;
        // `Seq Scan on sessions s  (cost=0.00..84579.18 rows=932 width=4)`
        let expected = top.split(" rows=").nth(1).and_then(|rest| rest.split(' ').next()?.parse::<f64>().ok());
        Ok(match expected {
            Some(rows) if rows < query.limit as f64 * FILTER_FIRST_PAGES => Walk::FilterFirst,
            _ => Walk::Index,
        })
    }

    /// A lower bound on the start of any session of `org` that overlaps a
    /// window starting at `window_start` (see the SQLite store): two index
    /// probes, the longest completed duration and the oldest active start.
    async fn earliest_start(&self, org: OrgId, window_start: Micros) -> Result<Micros, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT MAX(duration_us) FROM sessions WHERE org_id = $1 AND end_us IS NOT NULL) AS longest, \
                    (SELECT MIN(start_us) FROM sessions WHERE org_id = $1 AND end_us IS NULL) AS oldest_active",
        )
        .bind(org.0)
        .fetch_one(&self.pool)
        .await?;
        let longest: Option<i64> = row.try_get("longest")?;
        let oldest_active: Option<i64> = row.try_get("oldest_active")?;
        let completed_bound = window_start.saturating_sub(longest.unwrap_or(0));
        Ok(oldest_active.map_or(completed_bound, |oldest| oldest.min(completed_bound)))
    }
}

impl crate::sql::AggRunner for PgStore {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn earliest_start(&self, org: OrgId, window_start: Micros) -> Result<Micros, StoreError> {
        Self::earliest_start(self, org, window_start).await
    }

    async fn rows(&self, sql: String, args: Vec<Arg>) -> Result<Vec<AggRow>, StoreError> {
        AggRow::read_all(&abandon::read(&self.pool, &sql, args).await?)
    }
}

impl crate::sql::Materialize for PgStore {
    type Matched = Matched;

    fn time_limit(&self) -> Option<Duration> {
        self.time_limit
    }

    async fn matched(&self, select: String, args: Vec<Arg>) -> Result<Matched, StoreError> {
        // Rolled back when the runner is dropped, and the table with it.
        let create = format!("CREATE TEMP TABLE agg_matching ON COMMIT DROP AS {select}");
        Ok(Matched(ReadTransaction::begin(&self.pool, &create, args).await?))
    }
}

/// Aggregation statements over the sessions a costly filter matched (see
/// [`crate::sql::Materialize`]), one after another in the transaction that holds them.
pub(crate) struct Matched(ReadTransaction);

impl crate::sql::AggRunner for Matched {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn earliest_start(&self, _org: OrgId, window_start: Micros) -> Result<Micros, StoreError> {
        // Never asked: the window was applied when the sessions were matched.
        Ok(window_start)
    }

    async fn rows(&self, sql: String, args: Vec<Arg>) -> Result<Vec<AggRow>, StoreError> {
        AggRow::read_all(&self.0.read(&sql, args).await?)
    }
}

/// Builds a query from built SQL, binding every argument in order.
pub(super) fn query_with(sql: &str, args: Vec<Arg>) -> sqlx::query::Query<'_, Postgres, PgArguments> {
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

/// Turns errors that mean the database cannot be reached right now into
/// [`StoreError::Unavailable`], so that the server answers `unavailable`
/// (retry later) rather than `internal`.
pub(super) fn classify(error: StoreError) -> StoreError {
    match error {
        StoreError::Database(e) => classify_sqlx(e),
        StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => classify_sqlx(e),
        other => other,
    }
}

/// As [`classify_sqlx`], for a failure to connect: there, an answer sqlx cannot read comes from
/// a server that is no PostgreSQL (an HTTP server answers the first request with `H`).
fn classify_connect(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Protocol(_) => StoreError::NotPostgres(error),
        other => classify_sqlx(other),
    }
}

fn classify_sqlx(error: sqlx::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::Unavailable(error)
    } else if matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014")) {
        // query_canceled: the statement timeout (nobody else cancels ours).
        StoreError::TimedOut(error)
    } else {
        StoreError::Database(error)
    }
}

/// Ends a transaction of ours idle this long between two statements, and its connection. Ours
/// wait on nothing but the database between statements (milliseconds), so one idle this long
/// is a replica's that hangs (stopped, a paused VM, a network cut): its locks (a session's row,
/// the rollup's, the recording gate) would hold up the recording and the walks of every other
/// replica until it came back, hours later for a network cut (found by a review: a replica
/// stopped mid-write stalled every connector's reports).
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "SET idle_in_transaction_session_timeout = '10s'";

/// Sets the connection's `statement_timeout` (milliseconds; "0" for none).
async fn set_statement_timeout(conn: &mut PgConnection, millis: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('statement_timeout', $1, false)").bind(millis).execute(conn).await.map(drop)
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01-57P03: admin shutdown, crash
            // shutdown, cannot connect now; 53300: too many connections;
            // 25006: read-only transaction (a standby during failover);
            // 55000: the database does not allow connections (for maintenance); 3D000: no
            // such database, 28000/28P01: refused login, 42501: no CONNECT privilege on it
            // (a misconfigured, dropped or fenced-off store).
            code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "53300" | "25006" | "55000" | "3D000" | "28000" | "28P01" | "42501"
                )
        }),
        _ => false,
    }
}

impl Exec for PgStore {
    type Row = sqlx::postgres::PgRow;

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn write(&self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        let sql = Dialect::Postgres.placeholders(sql);
        Ok(query_with(&sql, args).execute(&self.pool).await?.rows_affected())
    }

    async fn write_returning(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Self::Row>, sqlx::Error> {
        self.read_optional(sql, args).await
    }

    async fn read_optional(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Self::Row>, sqlx::Error> {
        let sql = Dialect::Postgres.placeholders(sql);
        query_with(&sql, args).fetch_optional(&self.pool).await
    }

    async fn read_all(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>, sqlx::Error> {
        let sql = Dialect::Postgres.placeholders(sql);
        query_with(&sql, args).fetch_all(&self.pool).await
    }
}

/// The bodies of the [`Store`] methods; the trait impl below classifies
/// their errors.
impl PgStore {
    async fn insert_sessions_impl(&self, org: OrgId, sessions: &[Session]) -> Result<u64, StoreError> {
        if sessions.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut rollup = RollupDelta::default();
        let inserted = write::insert_sessions(&mut tx, org, sessions, &mut rollup).await?;
        write::apply_rollup(&mut tx, org, &rollup).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn get_session_impl(&self, org: OrgId, id: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.org_id = $1 AND s.id = $2");
        let row = sqlx::query(&sql).bind(org.0).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions_impl(&self, org: OrgId, query: &ListQuery) -> Result<Vec<Session>, StoreError> {
        let (sql, args) = self.list_statement(org, query).await?;
        abandon::read(&self.pool, &sql, args).await?.iter().map(session_from_row).collect()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ensure_org_noting_creation(&self, name: &str) -> Result<(Org, bool), StoreError> {
        orgs::ensure_org_noting_creation(self, name).await.map_err(classify)
    }

    async fn find_org(&self, name: &str) -> Result<Option<Org>, StoreError> {
        orgs::find_org(self, name).await.map_err(classify)
    }

    async fn get_org(&self, id: OrgId) -> Result<Option<Org>, StoreError> {
        orgs::get_org(self, id).await.map_err(classify)
    }

    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        orgs::list_orgs(self).await.map_err(classify)
    }

    async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
        orgs::insert_api_key(self, key).await.map_err(classify)
    }

    async fn find_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, StoreError> {
        orgs::find_api_key(self, prefix).await.map_err(classify)
    }

    async fn list_api_keys(&self, org: OrgId) -> Result<Vec<ApiKeyInfo>, StoreError> {
        orgs::list_api_keys(self, org).await.map_err(classify)
    }

    async fn revoke_api_key(&self, org: OrgId, prefix: &str, at: Micros) -> Result<bool, StoreError> {
        orgs::revoke_api_key(self, org, prefix, at).await.map_err(classify)
    }

    async fn touch_api_key(&self, prefix: &str, at: Micros) -> Result<(), StoreError> {
        orgs::touch_api_key(self, prefix, at).await.map_err(classify)
    }

    async fn secret_or_init(&self, name: &str, init: &[u8]) -> Result<Vec<u8>, StoreError> {
        orgs::secret_or_init(self, name, init).await.map_err(classify)
    }

    async fn insert_sessions(&self, org: OrgId, sessions: &[Session]) -> Result<u64, StoreError> {
        self.insert_sessions_impl(org, sessions).await.map_err(classify)
    }

    async fn get_session(&self, org: OrgId, id: &str) -> Result<Option<Session>, StoreError> {
        self.get_session_impl(org, id).await.map_err(classify)
    }

    async fn list_sessions(&self, org: OrgId, query: &ListQuery) -> Result<Vec<Session>, StoreError> {
        self.list_sessions_impl(org, query).await.map_err(classify)
    }

    async fn listing_clock(&self) -> Result<Micros, StoreError> {
        self.listing_clock_impl().await.map_err(classify)
    }

    async fn clock(&self) -> Result<Micros, StoreError> {
        self.clock_impl().await.map_err(classify)
    }

    async fn aggregate(&self, org: OrgId, query: &AggregateQuery) -> Result<Aggregates, StoreError> {
        crate::sql::aggregate(self, org, query).await.map_err(classify)
    }

    async fn aggregate_raw(&self, org: OrgId, query: &AggregateQuery) -> Result<Aggregates, StoreError> {
        crate::sql::aggregate_raw(self, org, query).await.map_err(classify)
    }

    async fn create_resource(&self, org: OrgId, resource: &Resource) -> Result<(), StoreError> {
        registry::create_resource(self, org, resource).await.map_err(classify)
    }

    async fn list_resources(&self, org: OrgId) -> Result<Vec<Resource>, StoreError> {
        registry::list_resources(self, org).await.map_err(classify)
    }

    async fn create_connector(&self, connector: &NewConnector) -> Result<(), StoreError> {
        registry::create_connector(self, connector).await.map_err(classify)
    }

    async fn list_connectors(&self, org: OrgId) -> Result<Vec<ConnectorInfo>, StoreError> {
        registry::list_connectors(self, org).await.map_err(classify)
    }

    async fn find_connector(&self, key_prefix: &str) -> Result<Option<StoredConnector>, StoreError> {
        registry::find_connector(self, key_prefix).await.map_err(classify)
    }

    async fn replace_connector_key(
        &self,
        org: OrgId,
        name: &str,
        key_prefix: &str,
        key_hash: &[u8],
        change: KeyReplacement,
    ) -> Result<Option<String>, StoreError> {
        registry::replace_connector_key(self, org, name, key_prefix, key_hash, change).await.map_err(classify)
    }

    async fn create_user(&self, org: OrgId, user: &crate::identity::User) -> Result<(), StoreError> {
        identity::create_user(self, org, user).await.map_err(classify)
    }

    async fn find_user(
        &self,
        org: OrgId,
        kind: crate::identity::UserKind,
        handle: &str,
    ) -> Result<Option<crate::identity::User>, StoreError> {
        identity::find_user(self, org, kind, handle).await.map_err(classify)
    }

    async fn list_users(&self, org: OrgId) -> Result<Vec<crate::identity::User>, StoreError> {
        identity::list_users(self, org).await.map_err(classify)
    }

    async fn update_user(&self, org: OrgId, user: &crate::identity::User) -> Result<bool, StoreError> {
        identity::update_user(self, org, user).await.map_err(classify)
    }

    async fn insert_access_token(&self, token: &crate::identity::NewAccessToken) -> Result<(), StoreError> {
        identity::insert_access_token(self, token).await.map_err(classify)
    }

    async fn find_access_token(&self, prefix: &str) -> Result<Option<crate::identity::StoredAccessToken>, StoreError> {
        identity::find_access_token(self, prefix).await.map_err(classify)
    }

    async fn list_access_tokens(
        &self,
        org: OrgId,
        user_id: &str,
    ) -> Result<Vec<crate::identity::AccessTokenInfo>, StoreError> {
        identity::list_access_tokens(self, org, user_id).await.map_err(classify)
    }

    async fn revoke_access_token(&self, org: OrgId, prefix: &str, at: Micros) -> Result<bool, StoreError> {
        identity::revoke_access_token(self, org, prefix, at).await.map_err(classify)
    }

    async fn touch_access_token(&self, prefix: &str, at: Micros) -> Result<(), StoreError> {
        identity::touch_access_token(self, prefix, at).await.map_err(classify)
    }

    async fn set_resource_default_role(&self, org: OrgId, resource_id: &str, role: &str) -> Result<bool, StoreError> {
        identity::set_resource_default_role(self, org, resource_id, role).await.map_err(classify)
    }

    async fn resource_access(
        &self,
        org: OrgId,
        resource_id: &str,
    ) -> Result<Option<crate::identity::ResourceAccess>, StoreError> {
        identity::resource_access(self, org, resource_id).await.map_err(classify)
    }

    async fn grant_role(&self, org: OrgId, grant: &crate::identity::RoleGrant, at: Micros) -> Result<bool, StoreError> {
        identity::grant_role(self, org, grant, at).await.map_err(classify)
    }

    async fn revoke_role_grant(&self, org: OrgId, grant: &crate::identity::RoleGrant) -> Result<bool, StoreError> {
        identity::revoke_role_grant(self, org, grant).await.map_err(classify)
    }

    async fn connector_hello(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        previous: &[PreviousRun],
        at: Micros,
    ) -> Result<u64, StoreError> {
        self.connector_hello_impl(org, connector_id, run_id, previous, at).await.map_err(classify)
    }

    async fn connector_heartbeat(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<(), StoreError> {
        self.connector_heartbeat_impl(org, connector_id, run_id, at).await.map_err(classify)
    }

    async fn connector_goodbye(
        &self,
        org: OrgId,
        connector_id: &str,
        run_id: &str,
        at: Micros,
    ) -> Result<u64, StoreError> {
        self.connector_goodbye_impl(org, connector_id, run_id, at).await.map_err(classify)
    }

    async fn expire_connectors(&self, heard_before: Micros) -> Result<u64, StoreError> {
        self.expire_connectors_impl(heard_before).await.map_err(classify)
    }

    async fn ingest(&self, org: OrgId, connector_id: &str, events: &[IngestEvent]) -> Result<u64, StoreError> {
        self.ingest_impl(org, connector_id, events).await.map_err(classify)
    }

    async fn statements_page(
        &self,
        org: OrgId,
        session_id: &str,
        page: StatementsPage,
    ) -> Result<Vec<StatementRecord>, StoreError> {
        self.statements_page_impl(org, session_id, page).await.map_err(classify)
    }

    async fn create_termination(
        &self,
        org: OrgId,
        termination: &TerminationRecord,
        pending_since: Micros,
    ) -> Result<TerminationRecord, StoreError> {
        self.create_termination_impl(org, termination, pending_since).await.map_err(classify)
    }

    async fn pending_terminations(
        &self,
        org: OrgId,
        connector_id: &str,
        since: Micros,
    ) -> Result<Vec<TerminationRecord>, StoreError> {
        terminations::pending_terminations(self, org, connector_id, since).await.map_err(classify)
    }

    async fn session_may_resume(&self, org: OrgId, session_id: &str) -> Result<bool, StoreError> {
        terminations::session_may_resume(self, org, session_id).await.map_err(classify)
    }

    async fn delete_completed_before(&self, before: Micros, batch: usize) -> Result<u64, StoreError> {
        self.delete_completed_before_impl(before, batch).await.map_err(classify)
    }

    fn termination_feed(&self) -> Option<TerminationFeed> {
        Some(self.termination_feed_impl())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.health).await.map(drop).map_err(classify_sqlx)
    }

    async fn refresh_statistics(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify_sqlx)?;
        // One replica at a time; the others find the work done on their next turn.
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, 0)")
            .bind(STATISTICS_LOCK_CLASS)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify_sqlx)?;
        if !ours {
            return Ok(0);
        }
        // Autovacuum's own rule: 50 rows plus a tenth of the table changed.
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname = ANY($1) \
             AND n_mod_since_analyze > 50 + n_live_tup / 10 ORDER BY relname",
        )
        .bind(PLANNED_TABLES)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify_sqlx)?;
        // Names from our own list, not from input: ANALYZE takes no parameters.
        for table in PLANNED_TABLES.iter().filter(|t| stale.iter().any(|s| s == *t)) {
            sqlx::query(&format!("ANALYZE {table}")).execute(&mut *tx).await.map_err(classify_sqlx)?;
        }
        tx.commit().await.map_err(classify_sqlx)?;
        Ok(stale.len() as u64)
    }
}

/// The tables whose statistics the listing and aggregation plans depend on.
const PLANNED_TABLES: &[&str] = &["session_fingerprints", "session_rollup", "session_values", "sessions", "statements"];
/// The advisory lock class (first key) that [`Store::refresh_statistics`] takes.
const STATISTICS_LOCK_CLASS: i32 = 0x6774_0004;
