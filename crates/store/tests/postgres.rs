//! The store conformance suite (`conformance/`) against `PgStore`, plus the
//! PostgreSQL-only checks: concurrent migrations, unavailability, and query
//! plans at a realistic size.
//!
//! Each test gets its own database, `gh_test_<unix seconds>_<pid>_<n>`,
//! created through the admin connection `GATEHOUSE_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when the
//! test ends, pass or fail; so tests run in parallel and never see each
//! other's data. Databases left by a killed run are dropped by a later run
//! once they are a day old.

mod conformance;

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatehouse_core::session::{ConnectorRef, ResourceRef, SessionUser, Sidecar};
use gatehouse_core::{Identity, Session};
use gatehouse_query::Field;
use gatehouse_store::postgres::{PgOptions, PgStore};
use gatehouse_store::{
    AggregateQuery, Facet, HistogramSpec, ListQuery, Position, SortKey, Store, StoreError, TerminationNotice,
    TerminationRecord,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use conformance::StoreUnderTest;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_options() -> PgConnectOptions {
    let url = std::env::var("GATEHOUSE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    PgConnectOptions::from_str(&url).expect("GATEHOUSE_TEST_DATABASE_URL is a PostgreSQL URL")
}

async fn admin() -> PgConnection {
    PgConnection::connect_with(&admin_options())
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL (set GATEHOUSE_TEST_DATABASE_URL): {e}"))
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// A throwaway database, dropped (with any connections still open to it)
/// when this guard is.
struct TestDatabase {
    name: String,
}

impl TestDatabase {
    async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("gh_test_{}_{}_{}", unix_seconds(), std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = admin().await;
        drop_stale_databases(&mut admin).await;
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
        let _ = admin.close().await;
        Self { name }
    }

    fn options(&self) -> PgConnectOptions {
        admin_options().database(&self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a
        // future: do it on a thread with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect_with(&admin_options()).await?;
                admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
                admin.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Drops test databases a day old or more: left by runs that were killed.
async fn drop_stale_databases(admin: &mut PgConnection) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'gh\\_test\\_%'")
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
    let cutoff = unix_seconds().saturating_sub(24 * 3600);
    for name in names {
        let created = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|created| created < cutoff) {
            let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
        }
    }
}

/// Session `s-1` of run `run-1` of connector `c-1`, open since `start`, written as it is stored.
async fn insert_open_session(store: &PgStore, org: gatehouse_core::OrgId, start: i64) {
    sqlx::query(
        "INSERT INTO sessions (org_id, id, start_us, connector_id, run_id) VALUES ($1, 's-1', $2, 'c-1', 'run-1')",
    )
    .bind(org.0)
    .bind(start)
    .execute(store.pool())
    .await
    .unwrap();
}

fn small_pool() -> PgOptions {
    PgOptions { max_connections: 4, ..PgOptions::default() }
}

async fn open_postgres() -> StoreUnderTest {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.expect("connect to the test database");
    // The store is dropped before the database guard.
    StoreUnderTest::new(store, db)
}

conformance::conformance_suite!(open_postgres);

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let db = TestDatabase::create().await;
    let connects = (0..4).map(|_| PgStore::connect_with(db.options(), small_pool()));
    let stores: Vec<PgStore> =
        futures_join_all(connects).await.into_iter().map(|r| r.expect("every replica connects")).collect();
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(stores[0].pool())
        .await
        .unwrap();
    assert!(!applied.is_empty());
    assert!(applied.iter().all(|(_, success)| *success), "{applied:?}");
    let mut versions: Vec<i64> = applied.iter().map(|(v, _)| *v).collect();
    versions.dedup();
    assert_eq!(versions.len(), applied.len(), "a migration was recorded twice");
    for store in &stores {
        assert_eq!(store.pending_migrations().await.unwrap(), vec![]);
    }
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode").fetch_one(stores[2].pool()).await.unwrap();
    assert_eq!(mode, "force_custom_plan");
    // Every replica sees the others' writes at once.
    let org = stores[1].ensure_org("acme").await.unwrap();
    assert_eq!(stores[3].find_org("acme").await.unwrap(), Some(org));
    drop(stores);
}

/// Polls every future to completion (the suite has no `futures` dependency).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

/// A statement past the timeout is stopped and says so; migrations, which
/// may rebuild large tables, run unbounded (here under a 1 ms timeout).
#[tokio::test]
async fn statements_past_the_timeout_are_stopped_and_migrations_are_not() {
    let db = TestDatabase::create().await;
    let options = PgOptions { statement_timeout: Duration::from_millis(1), ..small_pool() };
    let store = PgStore::connect_with(db.options(), options).await.expect("migrations run unbounded");
    let shown: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(store.pool()).await.unwrap();
    assert_eq!(shown, "1ms");

    let options = PgOptions { statement_timeout: Duration::from_millis(300), ..small_pool() };
    let store = PgStore::connect_with(db.options(), options).await.unwrap();
    let org = store.ensure_org("acme").await.unwrap().id;
    // Another connection holds the table: the listing waits, then is stopped.
    let mut other = PgConnection::connect_with(&db.options()).await.unwrap();
    let mut holding = other.begin().await.unwrap();
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE").execute(&mut *holding).await.unwrap();
    match store.list_sessions(org, &ListQuery::newest(10, NOW)).await {
        Err(StoreError::TimedOut(_)) => {}
        other => panic!("expected TimedOut, got {other:?}"),
    }
    holding.rollback().await.unwrap();
    assert!(store.list_sessions(org, &ListQuery::newest(10, NOW)).await.unwrap().is_empty());
}

/// A replica that hangs in the middle of a transaction (stopped, a paused VM, a network cut)
/// holds its locks only until PostgreSQL ends its transaction, idle 10 s: another replica's
/// reads and writes then go on, within their statement timeout (found by a review: a replica
/// stopped mid-write stalled every connector's reports).
#[tokio::test]
async fn a_transaction_left_idle_by_a_hung_replica_is_ended_and_lets_the_others_go_on() {
    let db = TestDatabase::create().await;
    let hung = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let other = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let org = other.ensure_org("acme").await.unwrap().id;
    let mut stuck = hung.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE").execute(&mut *stuck).await.unwrap();
    let waited = std::time::Instant::now();
    assert!(other.list_sessions(org, &ListQuery::newest(10, NOW)).await.unwrap().is_empty());
    let waited = waited.elapsed();
    assert!(waited >= Duration::from_secs(9), "the lock was held until then: {waited:?}");
    assert!(stuck.commit().await.is_err(), "the hung transaction was ended");
}

/// A connection of its own holding `table` locked, in a transaction.
async fn locked(db: &TestDatabase, table: &str) -> PgConnection {
    let mut conn = PgConnection::connect_with(&db.options()).await.unwrap();
    conn.execute(format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE").as_str()).await.unwrap();
    conn
}

/// Lets go of what `conn` holds after `millis`.
async fn release_after(mut conn: PgConnection, millis: u64) {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    conn.execute("ROLLBACK").await.unwrap();
}

/// The statement timeout bounds an aggregation's statements together, not only each: past
/// it the caller hears TimedOut, and what was left is not run. Here each of two statements
/// waits for a table another connection holds, less than the timeout each, more together.
#[tokio::test]
async fn an_aggregation_stops_at_the_statement_timeout_whatever_each_statement_takes() {
    let db = TestDatabase::create().await;
    let options = PgOptions { statement_timeout: Duration::from_millis(1_000), ..small_pool() };
    let store = PgStore::connect_with(db.options(), options).await.unwrap();
    let org = store.ensure_org("acme").await.unwrap().id;
    // A costly filter: its statements run one after another (the host's, then the fingerprints').
    let query = AggregateQuery {
        filter: gatehouse_query::parse("alice", NOW).unwrap(),
        window_start: None,
        window_end: None,
        now: NOW,
        histogram: None,
        facets: vec![Facet::ResourceHost, Facet::QueryFingerprint],
        facet_limit: 10,
    };
    let resources = release_after(locked(&db, "resources").await, 700);
    let fingerprints = release_after(locked(&db, "session_fingerprints").await, 1_400);
    let mut conn = PgConnection::connect_with(&db.options()).await.unwrap();
    let began = Instant::now();
    let aggregation = async {
        let counted = store.aggregate(org, &query).await;
        let took = began.elapsed();
        // While the fingerprints are still held, nothing of it waits for them: the statement
        // running was cancelled (a moment later), and no other began.
        let waiting = "SELECT count(*) FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let mut waited = i64::MAX;
        while waited > 0 && began.elapsed() < Duration::from_millis(1_300) {
            waited = sqlx::query_scalar(waiting).fetch_one(&mut conn).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (counted, took, waited)
    };
    let ((counted, took, waited), (), ()) = tokio::join!(aggregation, resources, fingerprints);
    assert!(matches!(counted, Err(StoreError::TimedOut(_))), "{counted:?} after {took:?}");
    assert!(took < Duration::from_millis(1_300), "took {took:?}");
    assert_eq!(waited, 0, "statements still wait for the fingerprints");
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // Nothing listens on port 1.
    let options = PgConnectOptions::new().host("127.0.0.1").port(1).username("postgres").database("postgres");
    let quick = PgOptions { acquire_timeout: Duration::from_secs(2), ..small_pool() };
    match PgStore::connect_with(options, quick).await {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to port 1"),
    }
}

#[tokio::test]
async fn a_server_that_is_no_postgresql_is_named_so() {
    // An HTTP server answers PostgreSQL's first request (SSLRequest) with `HTTP/1.1 400 ...`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
        }
    });
    let options = PgConnectOptions::new().host("127.0.0.1").port(port).username("postgres").database("r1_gh");
    let quick = PgOptions { acquire_timeout: Duration::from_secs(2), ..small_pool() };
    match PgStore::connect_with(options, quick).await {
        Err(error @ StoreError::NotPostgres(_)) => {
            let said = error.to_string();
            assert!(said.contains("does not speak the PostgreSQL protocol"), "{said}");
            assert!(std::error::Error::source(&error).is_none(), "sqlx's words stay unsaid: {error:?}");
        }
        Err(other) => panic!("expected NotPostgres, got {other:?}"),
        Ok(_) => panic!("an HTTP server taken for PostgreSQL"),
    }
}

#[tokio::test]
async fn a_store_survives_its_connections_being_killed() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let org = store.ensure_org("acme").await.unwrap().id;
    let mut admin = admin().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&mut admin)
    .await
    .unwrap();
    // The pool notices the dead connections and opens new ones; at worst one
    // call fails, as unavailable, never as an internal error.
    let mut ok = false;
    for _ in 0..3 {
        match store.insert_sessions(org, &[synthetic(0, 0)]).await {
            Ok(_) => {
                ok = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => continue,
            Err(e) => panic!("expected success or Unavailable, got {e:?}"),
        }
    }
    assert!(ok, "the store did not recover");
    assert!(store.get_session(org, "syn-000000").await.unwrap().is_some());
    let _ = admin.close().await;
}

/// Found by a review: a store whose role lost its CONNECT privilege (an operator fencing it
/// off) answered `internal`, as if a bug, where it is unavailable until given it back.
#[tokio::test]
async fn a_store_its_role_may_not_connect_to_is_unavailable() {
    let db = TestDatabase::create().await;
    let role = format!("{}_role", db.name);
    let mut admin = admin().await;
    admin.execute(format!("CREATE ROLE {role} LOGIN").as_str()).await.unwrap();
    admin.execute(format!("ALTER DATABASE {} OWNER TO {role}", db.name).as_str()).await.unwrap();
    // The schema is the database's own: its owner is set from within it.
    let mut inside = PgConnection::connect_with(&db.options()).await.unwrap();
    inside.execute(format!("ALTER SCHEMA public OWNER TO {role}").as_str()).await.unwrap();
    let _ = inside.close().await;
    let store = PgStore::connect_with(db.options().username(&role), small_pool()).await.unwrap();
    let org = store.ensure_org("acme").await.unwrap().id;
    admin.execute(format!("REVOKE CONNECT ON DATABASE {} FROM PUBLIC, {role}", db.name).as_str()).await.unwrap();
    kill_connections(&db).await;
    let mut refused = None;
    for _ in 0..5 {
        match store.get_session(org, "s1").await {
            Err(error) => refused = Some(error),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        if refused.is_some() {
            break;
        }
    }
    assert!(matches!(refused, Some(StoreError::Unavailable(_))), "{refused:?}");
    admin.execute(format!("GRANT CONNECT ON DATABASE {} TO {role}", db.name).as_str()).await.unwrap();
    assert!(store.get_session(org, "s1").await.unwrap().is_none(), "available again");
    drop(store);
    kill_connections(&db).await;
    admin.execute(format!("ALTER DATABASE {} OWNER TO postgres", db.name).as_str()).await.unwrap();
    let mut inside = PgConnection::connect_with(&db.options()).await.unwrap();
    inside.execute("ALTER SCHEMA public OWNER TO postgres").await.unwrap();
    inside.execute(format!("REASSIGN OWNED BY {role} TO postgres").as_str()).await.unwrap();
    let _ = inside.close().await;
    admin.execute(format!("DROP ROLE {role}").as_str()).await.unwrap();
    let _ = admin.close().await;
}

const NOW: i64 = 1_717_243_200_000_000;
const SECOND: i64 = 1_000_000;
const SESSIONS: usize = 50_000;
const USERS: usize = 500;
/// Sessions of a rare connector beside the [`SESSIONS`] at fifty thousand.
const RARE: usize = 1_000;

/// Synthetic session `i` of user `user`: one every 30 s going back from NOW,
/// 1 in 50 still active, spread over resources and connectors.
fn synthetic(i: usize, user: usize) -> Session {
    let start = NOW - (SESSIONS - i) as i64 * 30 * SECOND;
    let active = i.is_multiple_of(50);
    let formal = Identity {
        id: format!("u-{user}"),
        name: format!("User {user}"),
        email: format!("user{user}@example.com"),
        kind: "human".into(),
        groups: vec![format!("team-{}", user % 20), "everyone".into()],
        external_ids: vec![],
    };
    Session {
        id: format!("syn-{i:06}"),
        start,
        end: (!active).then_some(start + (60 + (i % 3600) as i64) * SECOND),
        client_ip: format!("10.{}.{}.{}", user % 256, i % 256, (i / 256) % 256),
        server_ip: "10.9.0.1".into(),
        sidecar: Sidecar { id: "sc".into(), name: "sidecar".into(), technology: "multi".into() },
        user: SessionUser {
            kind: "human".into(),
            username: format!("user{user}"),
            formal: Some(formal),
            end_user: None,
            native_username: "app".into(),
        },
        resource: ResourceRef {
            kind: "datastore".into(),
            id: format!("r-{}", i % 40),
            name: format!("db {}", i % 40),
            technology: ["postgres", "mysql", "mongodb", "redis"][i % 4].into(),
        },
        connector: ConnectorRef {
            id: format!("c-{}", i % 8),
            name: format!("connector {}", i % 8),
            ..Default::default()
        },
        parent_session_id: String::new(),
    }
}

fn assert_index_scan(label: &str, plan: &[String]) {
    let text = plan.join("\n");
    assert!(!text.contains("Seq Scan on sessions"), "{label}: scans sessions sequentially:\n{text}");
    assert!(text.contains("Index Scan") || text.contains("Index Only Scan"), "{label}: uses no index scan:\n{text}");
}

/// Stores the [`SESSIONS`] synthetic sessions in organization acme, and a tenth of them in
/// another, so that `org_id` is not a constant for the planner.
async fn fifty_thousand(store: &PgStore) -> (gatehouse_core::OrgId, Vec<Session>) {
    let acme = store.ensure_org("acme").await.unwrap().id;
    let other = store.ensure_org("other").await.unwrap().id;
    let sessions: Vec<Session> = (0..SESSIONS).map(|i| synthetic(i, (i * 7919) % USERS)).collect();
    for chunk in sessions.chunks(10_000) {
        assert_eq!(store.insert_sessions(acme, chunk).await.unwrap(), chunk.len() as u64);
    }
    let few: Vec<Session> = sessions.iter().step_by(10).cloned().collect();
    store.insert_sessions(other, &few).await.unwrap();
    (acme, sessions)
}

#[tokio::test]
async fn listings_use_indexes_at_fifty_thousand_sessions() {
    let began = Instant::now();
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let (acme, sessions) = fifty_thousand(&store).await;
    // The shortest sessions, all of one connector, older than the others.
    let rare: Vec<Session> = (0..RARE)
        .map(|i| {
            let start = sessions[0].start - (RARE - i) as i64 * 30 * SECOND;
            let connector = gatehouse_core::session::ConnectorRef { id: "c-rare".into(), ..Default::default() };
            Session {
                id: format!("rare-{i:04}"),
                start,
                end: Some(start + SECOND),
                connector,
                ..synthetic(i, i % USERS)
            }
        })
        .collect();
    store.insert_sessions(acme, &rare).await.unwrap();
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();

    let parse = |text: &str| gatehouse_query::parse(text, NOW).expect("query parses");
    let first_page = ListQuery::newest(100, NOW);
    let one_user = ListQuery {
        filter: parse("user.email:user42@example.com"),
        window_start: Some(NOW - 7 * 24 * 3600 * SECOND),
        window_end: Some(NOW),
        ..ListQuery::newest(100, NOW)
    };
    let deep = sessions.len() - 40_000;
    let deep_page = ListQuery {
        after: Some(Position { key: sessions[deep].start, id: sessions[deep].id.clone() }),
        ..ListQuery::newest(100, NOW)
    };
    let by_end = ListQuery { sort: SortKey::EndTime, ..ListQuery::newest(100, NOW) };
    let by_duration = ListQuery { sort: SortKey::Duration, ..ListQuery::newest(100, NOW) };
    let broad = ListQuery { filter: parse("technology:postgres"), ..ListQuery::newest(100, NOW) };
    let group = ListQuery { filter: parse("group:team-7"), ..ListQuery::newest(100, NOW) };
    for (label, query) in [
        ("first page", &first_page),
        ("one user, last 7 days", &one_user),
        ("deep page", &deep_page),
        ("end time, first page", &by_end),
        ("duration, first page", &by_duration),
        ("technology, first page", &broad),
        ("group, first page", &group),
    ] {
        let plan = store.explain_list(acme, query).await.unwrap();
        // Shown with `--nocapture`.
        eprintln!("EXPLAIN {label}:\n  {}", plan.join("\n  "));
        assert_index_scan(label, &plan);
        // And the listing returns what the plan promises.
        let rows = store.list_sessions(acme, query).await.unwrap();
        assert!(!rows.is_empty(), "{label}: no rows");
    }
    let deep_rows = store.list_sessions(acme, &deep_page).await.unwrap();
    assert_eq!(deep_rows[0].id, sessions[deep - 1].id, "the deep page continues right after its position");

    // A duration bound is a range of the duration index where sessions have ended, not a
    // filter on every entry the walk reads (the longer half, shortest first, read the shorter
    // half first: 5 s at a million sessions).
    let long_ones = ListQuery {
        filter: parse("duration:>30m"),
        sort: SortKey::Duration,
        direction: gatehouse_store::Direction::Asc,
        ..ListQuery::newest(100, NOW)
    };
    let plan = store.explain_list(acme, &long_ones).await.unwrap();
    let ranged = plan.iter().any(|line| line.contains("Index Cond") && line.contains("duration_us > "));
    assert!(ranged, "the duration bound is no index condition:\n{}", plan.join("\n"));
    let rows = store.list_sessions(acme, &long_ones).await.unwrap();
    assert_eq!(rows.len(), 100);
    assert!(rows.iter().all(|s| s.end.is_some_and(|end| end - s.start > 30 * 60 * SECOND)), "{rows:?}");

    // A filter matching few sessions, all at the far end of the duration index, finds them
    // first: a walk along the index would read every other session before them (8 s at a
    // million sessions), though the planner, taking them to be spread evenly, expects a page
    // within a fiftieth of it.
    let rare_longest = ListQuery { filter: parse("connector.id:c-rare"), ..by_duration.clone() };
    let plan = store.explain_list(acme, &rare_longest).await.unwrap();
    let walked = plan.iter().any(|line| line.contains("using sessions_duration"));
    assert!(!walked, "walks the duration index for a rare connector:\n{}", plan.join("\n"));
    let rows = store.list_sessions(acme, &rare_longest).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|s| s.id.as_str()).collect();
    let mut want: Vec<&str> = rare.iter().map(|s| s.id.as_str()).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, want[..100], "longest first (all alike), ties by id");
    // A filter matching many sessions walks the index still.
    let plan = store.explain_list(acme, &ListQuery { sort: SortKey::Duration, ..broad.clone() }).await.unwrap();
    assert!(plan.iter().any(|line| line.contains("using sessions_duration")), "{}", plan.join("\n"));
    assert!(began.elapsed() < Duration::from_secs(60), "took {:?}", began.elapsed());
}

/// The plans of the statements an aggregation over `query` runs, each joined in one text.
async fn aggregation_plans(store: &PgStore, org: gatehouse_core::OrgId, query: &AggregateQuery) -> Vec<String> {
    let plans = store.explain_aggregate(org, query).await.unwrap();
    plans.into_iter().map(|lines| lines.join("\n")).collect()
}

#[tokio::test]
async fn aggregations_at_fifty_thousand_sessions_read_little() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let (acme, sessions) = fifty_thousand(&store).await;
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    let parse = |text: &str| gatehouse_query::parse(text, NOW).expect("query parses");
    let facets = |text: &str, facets: &[Facet]| AggregateQuery {
        filter: parse(text),
        window_start: None,
        window_end: None,
        now: NOW,
        histogram: None,
        facets: facets.to_vec(),
        facet_limit: 10,
    };

    // Session ids are unique: the top ten are the first ten, read from the id index, not
    // fifty thousand groups of one.
    for text in ["", "technology:postgres"] {
        let query = facets(text, &[Facet::SessionId]);
        let plans = aggregation_plans(&store, acme, &query).await;
        let ids = plans.last().unwrap();
        assert!(!ids.contains("Aggregate") && ids.contains("sessions_id"), "{text:?}: session ids:\n{ids}");
        let mut want: Vec<&str> = sessions
            .iter()
            .filter(|s| text.is_empty() || s.resource.technology == "postgres")
            .map(|s| s.id.as_str())
            .collect();
        want.sort_unstable();
        let counted = store.aggregate(acme, &query).await.unwrap();
        let got: Vec<(&str, u64)> = counted.facets[0].1.iter().map(|k| (k.key.as_str(), k.count)).collect();
        assert_eq!(got, want[..10].iter().map(|id| (*id, 1)).collect::<Vec<_>>(), "{text:?}");
    }

    // The facets with one key per session are counted from one scan of the matching sessions.
    let one_key: Vec<Facet> =
        Facet::ALL.iter().copied().filter(|&f| f != Facet::SessionId && f != Facet::QueryFingerprint).collect();
    for text in ["technology:postgres", "user42"] {
        let plans = aggregation_plans(&store, acme, &facets(text, &one_key)).await;
        // The hit count, and the facets.
        assert_eq!(plans.len(), 2, "{text:?}: {plans:#?}");
        let scans = plans[1].matches(" on sessions ").count() + plans[1].matches(" on agg_matching ").count();
        assert_eq!(
            scans, 1,
            "{text:?}: the facets read the sessions {scans} times:
{}",
            plans[1]
        );
    }

    // A costly filter (a bare term: 8 `LIKE`s no index serves) is evaluated once, and the
    // matched sessions' columns read once: no statement reads the sessions again.
    let costly = AggregateQuery {
        histogram: Some(HistogramSpec { interval: None, group_by: vec![Field::ResourceTechnology, Field::UserGroups] }),
        ..facets("user42", &Facet::ALL)
    };
    for plan in aggregation_plans(&store, acme, &costly).await {
        assert!(!plan.contains(" on sessions "), "reads the sessions again:\n{plan}");
        assert!(plan.contains(" on agg_matching "), "reads no matched sessions:\n{plan}");
    }
    let counted = store.aggregate(acme, &costly).await.unwrap();
    let want = sessions.iter().filter(|s| s.user.username.contains("user42")).count() as u64;
    assert_eq!(counted.num_hits, want);

    // A histogram of more groups than allowed (each session's address and each of its two
    // groups: 100,020) is refused before the rest is counted. Here the fingerprints are held
    // by another connection: their facet would wait for them until the statement timeout.
    let extra: Vec<Session> = (0..10)
        .map(|i| Session { id: format!("extra-{i}"), client_ip: format!("192.0.2.{i}"), ..synthetic(i, i) })
        .collect();
    store.insert_sessions(acme, &extra).await.unwrap();
    let too_many = AggregateQuery {
        histogram: Some(HistogramSpec { interval: None, group_by: vec![Field::ClientIp, Field::UserGroups] }),
        ..facets("", &Facet::ALL)
    };
    let mut holder = PgConnection::connect_with(&db.options()).await.unwrap();
    holder.execute("BEGIN; LOCK TABLE session_fingerprints IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(20), store.aggregate(acme, &too_many)).await;
    holder.execute("ROLLBACK").await.unwrap();
    let refused = refused.expect("refused without waiting for the fingerprints");
    assert!(matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("groups")), "{refused:?}");
}

#[tokio::test]
async fn statistics_are_gathered_where_autovacuum_does_not() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let acme = store.ensure_org("acme").await.unwrap().id;
    let sessions: Vec<Session> = (0..2_000).map(|i| synthetic(i, i % USERS)).collect();
    store.insert_sessions(acme, &sessions).await.unwrap();
    let analyzed = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stats WHERE tablename = 'sessions'")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    assert_eq!(analyzed().await, 0, "nothing gathered them yet");
    // PostgreSQL counts the changes a moment after they commit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.refresh_statistics().await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "the new sessions never made the statistics stale");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(analyzed().await > 0, "ANALYZE sessions ran");
}

/// The next notice on a feed, failing after 5 s.
async fn next_notice(feed: &mut gatehouse_store::TerminationFeed) -> TerminationNotice {
    tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .expect("a notice within 5 s")
        .expect("the feed is open")
}

fn termination(id: &str) -> TerminationRecord {
    TerminationRecord {
        id: id.into(),
        session_id: format!("session-of-{id}"),
        connector_id: "c-1".into(),
        reason: "because".into(),
        created: NOW,
    }
}

async fn kill_connections(db: &TestDatabase) {
    let mut admin = admin().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
}

#[tokio::test]
async fn terminations_stored_by_one_replica_reach_another_and_a_lost_feed_resyncs() {
    let db = TestDatabase::create().await;
    let a = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let b = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let mut feed = b.termination_feed().expect("PostgreSQL stores have a feed");
    assert_eq!(next_notice(&mut feed).await, TerminationNotice::Resync, "a feed starts listening with a resync");
    let org = a.ensure_org("acme").await.unwrap().id;

    a.create_termination(org, &termination("t-1"), NOW).await.unwrap();
    assert_eq!(next_notice(&mut feed).await, TerminationNotice::Requested { org, termination: termination("t-1") });

    // Every connection goes, the feed's included: it reconnects, says so,
    // and hears what is stored afterwards.
    kill_connections(&db).await;
    assert_eq!(next_notice(&mut feed).await, TerminationNotice::Resync);
    let mut stored = false;
    for _ in 0..3 {
        match a.create_termination(org, &termination("t-2"), NOW).await {
            Ok(_) => {
                stored = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => continue,
            Err(e) => panic!("expected success or Unavailable, got {e:?}"),
        }
    }
    assert!(stored, "the store did not recover");
    assert_eq!(next_notice(&mut feed).await, TerminationNotice::Requested { org, termination: termination("t-2") });

    // Asked again while pending: the first stands, and nothing new is announced.
    let again = TerminationRecord { id: "t-3".into(), ..termination("t-2") };
    assert_eq!(a.create_termination(org, &again, NOW).await.unwrap(), termination("t-2"));
    assert!(tokio::time::timeout(Duration::from_millis(300), feed.recv()).await.is_err(), "nothing more");
}

/// A run heard while the sweep waits for its row (its heartbeat committed after the sweep
/// began) is alive: the sweep leaves it and its sessions alone.
#[tokio::test]
async fn a_run_heard_while_the_sweep_waits_keeps_its_sessions() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let org = store.ensure_org("acme").await.unwrap().id;
    let connector = gatehouse_store::NewConnector {
        org,
        id: "c-1".into(),
        name: "one".into(),
        key_prefix: "kp".into(),
        key_hash: vec![0],
        created: NOW,
    };
    store.create_connector(&connector).await.unwrap();
    store.connector_hello(org, "c-1", "run-1", &[], NOW).await.unwrap();
    insert_open_session(&store, org, NOW).await;

    // A heartbeat in flight: the run's row is updated, not yet committed.
    let mut other = PgConnection::connect_with(&db.options()).await.unwrap();
    let mut heartbeat = other.begin().await.unwrap();
    sqlx::query("UPDATE connector_runs SET last_heard_us = $1 WHERE run_id = 'run-1'")
        .bind(NOW + 10 * SECOND)
        .execute(&mut *heartbeat)
        .await
        .unwrap();
    let sweeping = {
        let store = store.clone();
        tokio::spawn(async move { store.expire_connectors(NOW + 5 * SECOND).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sweeping.is_finished(), "the sweep waits for the run's row");
    heartbeat.commit().await.unwrap();
    assert_eq!(sweeping.await.unwrap().unwrap(), 0);
    assert_eq!(store.get_session(org, "s-1").await.unwrap().unwrap().end, None);
    let lapsed: Option<i64> = sqlx::query_scalar("SELECT lapsed_us FROM connector_runs WHERE run_id = 'run-1'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(lapsed, None);
}

#[tokio::test]
async fn one_replica_sweeps_leases_at_a_time() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let org = store.ensure_org("acme").await.unwrap().id;
    sqlx::query(
        "INSERT INTO connector_runs (org_id, connector_id, run_id, started_us, last_heard_us) \
         VALUES ($1, 'c-1', 'run-1', $2, $2)",
    )
    .bind(org.0)
    .bind(NOW)
    .execute(store.pool())
    .await
    .unwrap();
    insert_open_session(&store, org, NOW - SECOND).await;

    // Another replica is sweeping (holds the lock): this one skips its turn.
    let mut other = PgConnection::connect_with(&db.options()).await.unwrap();
    let mut sweeping = other.begin().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(gatehouse_store::postgres::SWEEP_LOCK)
        .fetch_one(&mut *sweeping)
        .await
        .unwrap();
    assert!(locked);
    assert_eq!(store.expire_connectors(NOW + SECOND).await.unwrap(), 0, "skipped while another sweeps");
    let session = store.get_session(org, "s-1").await.unwrap().unwrap();
    assert_eq!(session.end, None);
    sweeping.commit().await.unwrap();
    assert_eq!(store.expire_connectors(NOW + SECOND).await.unwrap(), 1, "swept once the lock is free");

    // Retention likewise; the session's terminations go with it.
    let termination = gatehouse_store::TerminationRecord {
        id: "term-1".into(),
        session_id: "s-1".into(),
        connector_id: "c-1".into(),
        reason: "test".into(),
        created: NOW,
    };
    store.create_termination(org, &termination, NOW).await.unwrap();
    let terminations = async || -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM terminations").fetch_one(store.pool()).await.unwrap()
    };
    let mut sweeping = other.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(gatehouse_store::postgres::RETENTION_LOCK)
        .execute(&mut *sweeping)
        .await
        .unwrap();
    assert_eq!(store.delete_completed_before(NOW + 2 * SECOND, 10).await.unwrap(), 0, "skipped while another deletes");
    sweeping.commit().await.unwrap();
    assert_eq!(terminations().await, 1);
    assert_eq!(store.delete_completed_before(NOW + 2 * SECOND, 10).await.unwrap(), 1);
    assert_eq!(terminations().await, 0);
    let _ = other.close().await;
}

/// Every row of the rollup, in key order.
async fn rollup_rows(store: &PgStore) -> Vec<(i64, i32, i64, String, i64)> {
    sqlx::query_as("SELECT org_id, dim, hour_us, key, n FROM session_rollup ORDER BY org_id, dim, hour_us, key")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_rollup_migration_rebuilds_what_the_writes_kept() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    conformance::rollup::write_everything(&store).await;
    let kept = rollup_rows(&store).await;
    assert!(kept.len() > 1_000, "{}", kept.len());
    assert!(kept.iter().all(|row| row.4 > 0), "a row came to 0 and stayed");
    // Back to a store from before the rollup: its migration has not run.
    for sql in
        ["DROP TABLE session_rollup", "DROP INDEX sessions_backwards", "DELETE FROM _sqlx_migrations WHERE version = 4"]
    {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    assert_eq!(store.pending_migrations().await.unwrap().len(), 1);
    store.migrate().await.unwrap();
    assert_eq!(rollup_rows(&store).await, kept);
}

#[tokio::test]
async fn aggregations_read_the_rollup() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let org = conformance::rollup::load(&store, "rolled").await;
    sqlx::query("UPDATE session_rollup SET n = n + 1000").execute(store.pool()).await.unwrap();
    conformance::rollup::assert_answers_read_the_rollup(&store, org).await;
}

#[tokio::test]
async fn the_session_fingerprints_migration_keeps_what_sessions_ran() {
    use gatehouse_store::{AggregateQuery, Facet, IngestEvent, StatementRecord};

    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let fx = conformance::fixture::Fixture::load(&store).await;
    let statement = |id: &str, seq: u64, text: &str| IngestEvent::Statement {
        session_id: id.into(),
        statement: StatementRecord { seq, text: text.into(), ..Default::default() },
    };
    let eu =
        [statement("s05", 1, "SELECT 1"), statement("s05", 2, "SELECT 2"), statement("s05", 3, "UPDATE t SET n = 3")];
    assert_eq!(store.ingest(fx.acme, "c-eu", &eu).await.unwrap(), 3);
    let us = [statement("s08", 1, "SELECT 9"), statement("s08", 2, "/* only a comment */")];
    assert_eq!(store.ingest(fx.acme, "c-us", &us).await.unwrap(), 2);
    let query = AggregateQuery {
        filter: gatehouse_query::parse("", conformance::fixture::NOW).unwrap(),
        window_start: None,
        window_end: None,
        now: conformance::fixture::NOW,
        histogram: None,
        facets: vec![Facet::QueryFingerprint],
        facet_limit: 10,
    };
    let facets = async |store: &PgStore| store.aggregate(fx.acme, &query).await.unwrap().facets;
    let before = facets(&store).await;
    let counted: Vec<_> = before[0].1.iter().map(|k| (k.key.as_str(), k.count)).collect();
    assert_eq!(counted, [("select ?", 2), ("update t set n = ?", 1)]);

    // Back to before the migration: fingerprints on every statement row.
    let mut conn = store.pool().acquire().await.unwrap();
    conn.execute("ALTER TABLE statements ADD COLUMN fingerprint text NOT NULL DEFAULT ''").await.unwrap();
    for s in eu.into_iter().chain(us) {
        let IngestEvent::Statement { session_id, statement } = s else { unreachable!() };
        sqlx::query("UPDATE statements SET fingerprint = $1 WHERE session_id = $2 AND seq = $3")
            .bind(gatehouse_store::fingerprint::fingerprint(&statement.text))
            .bind(session_id)
            .bind(statement.seq as i64)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    conn.execute("DROP TABLE session_fingerprints; DELETE FROM _sqlx_migrations WHERE version = 5").await.unwrap();
    drop(conn);
    store.pool().close().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    assert_eq!(facets(&store).await, before);
}

#[tokio::test]
async fn fingerprints_stored_with_their_semicolon_lose_it() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    let (org, query) = conformance::migrations::semicolons(&store).await;
    for sql in conformance::migrations::BEFORE_FINGERPRINTS_LOST_THEIR_SEMICOLON {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    store.pool().close().await;
    let store = PgStore::connect_with(db.options(), small_pool()).await.unwrap();
    conformance::migrations::assert_one_per_query(&store, org, &query).await;
}

/// A walk's `now` is read once every end recorded before it is committed (on any replica): an
/// ingest that has read its recording time and not yet committed holds the walk's start back.
/// Otherwise the walk's first page could list as active a session that its later pages find
/// ended before its `now`, and list it again. An end recorded after the walk began is recorded
/// later than its `now`, on the database's clock.
#[tokio::test]
async fn a_walk_begins_after_the_ends_recorded_before_it() {
    let db = TestDatabase::create().await;
    let store = std::sync::Arc::new(PgStore::connect_with(db.options(), small_pool()).await.unwrap());
    let org = store.ensure_org("acme").await.unwrap().id;
    let clock = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8";
    let mut other = PgConnection::connect_with(&db.options()).await.unwrap();
    let mut recording = other.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(gatehouse_store::postgres::RECORDING_GATE)
        .execute(&mut *recording)
        .await
        .unwrap();
    let recorded: i64 = sqlx::query_scalar(clock).fetch_one(&mut *recording).await.unwrap();
    let walk = tokio::spawn({
        let store = store.clone();
        async move { store.listing_clock().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!walk.is_finished(), "the walk waits for the end being recorded");
    recording.commit().await.unwrap();
    let now = tokio::time::timeout(Duration::from_secs(5), walk).await.unwrap().unwrap();
    assert!(now >= recorded, "{now} < {recorded}");

    insert_open_session(&store, org, now - SECOND).await;
    let end = gatehouse_store::IngestEvent::End { session_id: "s-1".into(), end: now - 1, reason: "client".into() };
    assert_eq!(store.ingest(org, "c-1", &[end]).await.unwrap(), 1);
    let end_recorded: i64 = sqlx::query_scalar("SELECT end_recorded_us FROM sessions WHERE id = 's-1'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(end_recorded > now, "an end recorded after the walk began is after its now: {end_recorded} <= {now}");
}
