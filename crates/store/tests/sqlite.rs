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
