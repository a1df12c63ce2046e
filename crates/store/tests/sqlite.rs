//! The store conformance suite (`conformance/`) against `SqliteStore`: each
//! test opens a fresh database file in its own temporary directory.

mod conformance;

use std::time::Duration;

use gatehouse_store::sqlite::SqliteStore;
use gatehouse_store::{Direction, ListQuery, SortKey, Store, StoreError};

use conformance::StoreUnderTest;

async fn open_sqlite() -> StoreUnderTest {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("gatehouse.db")).await.expect("open SQLite store");
    // The directory is removed when the test's StoreUnderTest is dropped.
    StoreUnderTest::new(store, dir)
}

conformance::conformance_suite!(open_sqlite);

/// Every row of the rollup, in key order.
async fn rollup_rows(store: &SqliteStore) -> Vec<(i64, i64, i64, String, i64)> {
    sqlx::query_as("SELECT org_id, dim, hour_us, key, n FROM session_rollup ORDER BY org_id, dim, hour_us, key")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_rollup_migration_rebuilds_what_the_writes_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.db");
    let store = SqliteStore::open(&path).await.unwrap();
    conformance::rollup::write_everything(&store).await;
    let kept = rollup_rows(&store).await;
    assert!(kept.len() > 1_000, "{}", kept.len());
    assert!(kept.iter().all(|row| row.4 > 0), "a row came to 0 and stayed");
    // Back to a store from before the rollup: its migration has not run.
    for sql in
        ["DROP TABLE session_rollup", "DROP INDEX sessions_backwards", "DELETE FROM _sqlx_migrations WHERE version = 5"]
    {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    store.pool().close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(rollup_rows(&store).await, kept);
}

#[tokio::test]
async fn aggregations_read_the_rollup() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("gatehouse.db")).await.unwrap();
    let org = conformance::rollup::load(&store, "rolled").await;
    sqlx::query("UPDATE session_rollup SET n = n + 1000").execute(store.pool()).await.unwrap();
    conformance::rollup::assert_answers_read_the_rollup(&store, org).await;
}

/// The statements table as it was before migration 6 packed statements into
/// chunks, with its rows rebuilt from what `statements` returns.
async fn back_to_statement_rows(store: &SqliteStore, org: gatehouse_core::OrgId, sessions: &[&str]) {
    sqlx::query(
        "CREATE TABLE statements (org_id INTEGER NOT NULL, session_id TEXT NOT NULL, seq INTEGER NOT NULL, \
         start_us INTEGER NOT NULL, duration_us INTEGER NOT NULL, text TEXT NOT NULL, rows INTEGER NOT NULL, \
         bytes_sent INTEGER NOT NULL, sqlstate TEXT NOT NULL, fingerprint TEXT NOT NULL DEFAULT '', \
         PRIMARY KEY (org_id, session_id, seq)) WITHOUT ROWID",
    )
    .execute(store.pool())
    .await
    .unwrap();
    for id in sessions {
        for s in store.statements(org, id).await.unwrap() {
            sqlx::query("INSERT INTO statements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(org.0)
                .bind(*id)
                .bind(s.seq as i64)
                .bind(s.start)
                .bind(s.duration)
                .bind(&s.text)
                .bind(s.rows)
                .bind(s.bytes_sent)
                .bind(&s.sqlstate)
                .bind(gatehouse_store::fingerprint::fingerprint(&s.text))
                .execute(store.pool())
                .await
                .unwrap();
        }
    }
    for sql in [
        "DROP TABLE statement_chunks",
        "DROP TABLE session_fingerprints",
        "ALTER TABLE sessions DROP COLUMN statement_max_seq",
        // And the migration that adds to its table.
        "DELETE FROM _sqlx_migrations WHERE version IN (6, 15)",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
}

/// Folds stored before final sigma was written σ are mended by the migration, so that a
/// prefix finds the sessions it names whenever they were stored.
#[tokio::test]
async fn the_final_sigma_migration_mends_the_folds_stored_before() {
    use conformance::fixture::{NOW, completed, listing};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let org = store.ensure_org("greek").await.unwrap().id;
    let session = completed("g1", 30, 5).person("ΣΊΣΥΦΟΣ", "Σίσυφος", "s@example.gr", &[]).build();
    store.insert_sessions(org, &[session]).await.unwrap();
    // As the Gatehouse before it stored them.
    for sql in [
        "UPDATE sessions SET user_username_fold = 'σίσυφος', user_name_fold = 'σίσυφος'",
        "DELETE FROM _sqlx_migrations WHERE version = 16",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    for text in ["user:ΣΊΣ*", "user.name:σίσ*", "user:ΣΊΣΥΦΟΣ"] {
        let rows = store.list_sessions(org, &listing(text, NOW)).await.unwrap();
        assert_eq!(rows.len(), 1, "{text}");
    }
}

#[tokio::test]
async fn the_statement_chunks_migration_keeps_every_statement_once() {
    use gatehouse_store::{AggregateQuery, Facet, IngestEvent, StatementRecord};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let fx = conformance::fixture::Fixture::load(&store).await;
    let statement = |id: &str, seq: u64| IngestEvent::Statement {
        session_id: id.into(),
        statement: StatementRecord {
            seq,
            start: conformance::fixture::NOW + seq as i64,
            duration: 3,
            text: if seq.is_multiple_of(2) { format!("SELECT {seq}") } else { format!("UPDATE t SET n = {seq}") },
            rows: 1,
            bytes_sent: 10,
            sqlstate: if seq == 7 { "42P01".into() } else { String::new() },
            ..Default::default()
        },
    };
    // More than a chunk's 500 for one session, a few for another.
    let events: Vec<_> = (1..=1_200).map(|n| statement("s05", n)).collect();
    store.ingest(fx.acme, "c-eu", &events).await.unwrap();
    let events: Vec<_> = (1..=3).map(|n| statement("s08", n)).collect();
    store.ingest(fx.acme, "c-us", &events).await.unwrap();
    let query = AggregateQuery {
        filter: gatehouse_query::parse("", conformance::fixture::NOW).unwrap(),
        window_start: None,
        window_end: None,
        now: conformance::fixture::NOW,
        histogram: None,
        facets: vec![Facet::QueryFingerprint, Facet::Statements],
        facet_limit: 10,
    };
    let transcripts = async |store: &SqliteStore| {
        (store.statements(fx.acme, "s05").await.unwrap(), store.statements(fx.acme, "s08").await.unwrap())
    };
    let before = (transcripts(&store).await, store.aggregate(fx.acme, &query).await.unwrap().facets);
    assert_eq!(before.0.0.len(), 1_200);

    back_to_statement_rows(&store, fx.acme, &["s05", "s08"]).await;
    store.pool().close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!((transcripts(&store).await, store.aggregate(fx.acme, &query).await.unwrap().facets), before);
    // The highest seq stored came along: a replay adds only what is new.
    let replay: Vec<_> = (1_100..=1_250).map(|n| statement("s05", n)).collect();
    assert_eq!(store.ingest(fx.acme, "c-eu", &replay).await.unwrap(), 50);
    assert_eq!(store.statements(fx.acme, "s05").await.unwrap().len(), 1_250);
}

#[tokio::test]
async fn fingerprints_stored_with_their_semicolon_lose_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (org, query) = conformance::migrations::semicolons(&store).await;
    for sql in conformance::migrations::BEFORE_FINGERPRINTS_LOST_THEIR_SEMICOLON {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    store.pool().close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    conformance::migrations::assert_one_per_query(&store, org, &query).await;
}

#[tokio::test]
async fn stores_opened_together_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.db");
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("every store opens");
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
}

/// Writes from many tasks at once queue for the one writer connection: none
/// fails with "database is locked", not even transactions that read before
/// they write, which SQLite cannot wait for when writers share a file.
#[tokio::test]
async fn concurrent_writes_all_succeed() {
    use gatehouse_store::{IngestEvent, NewConnector, StatementRecord};

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("gatehouse.db")).await.unwrap();
    let fx = conformance::fixture::Fixture::load(&store).await;
    let connector = NewConnector {
        org: fx.acme,
        id: "c".into(),
        name: "c".into(),
        key_prefix: "c".into(),
        key_hash: vec![0; 32],
        created: 0,
    };
    store.create_connector(&connector).await.unwrap();
    let writers: Vec<_> = (0..16u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..10u64 {
                    let seq = task * 10 + round + 1;
                    let run = format!("run-{task}");
                    store.connector_hello(fx.acme, "c", &run, &[], conformance::fixture::NOW).await?;
                    let statement = StatementRecord { seq, text: format!("SELECT {seq}"), ..Default::default() };
                    store
                        .ingest(fx.acme, "c-eu", &[IngestEvent::Statement { session_id: "s05".into(), statement }])
                        .await?;
                    store.connector_heartbeat(fx.acme, "c", &run, conformance::fixture::NOW + seq as i64).await?;
                }
                Ok::<_, gatehouse_store::StoreError>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().expect("every write succeeds");
    }
    assert_eq!(store.statements(fx.acme, "s05").await.unwrap().len(), 160);
}

/// A read past the timeout is stopped and says so, on every reader connection, the pool's
/// new ones as its reused ones; the next read on the same connection gets a fresh deadline.
#[tokio::test]
async fn reads_past_the_timeout_are_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(&dir.path().join("gatehouse.db"), Duration::from_millis(100)).await.unwrap();
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) \
                   SELECT count(*) FROM c";
    // At once, so that the pool opens connections for them.
    let reads = (0..8).map(|_| sqlx::query_scalar::<_, i64>(endless).fetch_one(store.pool()));
    let results = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(reads))
        .await
        .expect("every read is stopped");
    for result in results {
        assert!(matches!(StoreError::from(result.unwrap_err()), StoreError::TimedOut(_)));
    }
    let org = store.ensure_org("acme").await.unwrap().id;
    assert!(store.list_sessions(org, &ListQuery::newest(10, 0)).await.unwrap().is_empty());
}

#[tokio::test]
async fn end_time_and_duration_pages_read_their_own_index_in_order() {
    // A first page must read its index in the listing's order and stop at the limit, not
    // read every completed session into a temporary B-tree to sort it.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("gatehouse.db")).await.unwrap();
    let org = store.ensure_org("acme").await.unwrap().id;
    for (sort, index) in [(SortKey::EndTime, "sessions_end"), (SortKey::Duration, "sessions_duration")] {
        for direction in [Direction::Asc, Direction::Desc] {
            let query = ListQuery { sort, direction, ..ListQuery::newest(100, 1_700_000_000_000_000) };
            let plan = store.explain_list(org, &query).await.unwrap().join("\n");
            let arm = plan.lines().find(|line| line.contains("SEARCH s USING")).unwrap_or_default();
            assert!(arm.contains(index), "{sort:?} {direction:?} reads {arm:?}:\n{plan}");
        }
    }
}

/// Readers all busy (long aggregations, say) are no store down: a ping still answers.
#[tokio::test]
async fn a_ping_answers_while_every_reader_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("gatehouse.db")).await.unwrap();
    let mut held = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_millis(200), store.pool().acquire()).await {
        held.push(conn);
    }
    assert!(!held.is_empty());
    tokio::time::timeout(Duration::from_secs(2), store.ping()).await.expect("answered").unwrap();
}
