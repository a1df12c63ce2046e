//! The store conformance suite (`conformance/`) against `SqliteStore`: each
//! test opens a fresh database file in its own temporary directory.

mod conformance;

use gatehouse_store::sqlite::SqliteStore;

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
