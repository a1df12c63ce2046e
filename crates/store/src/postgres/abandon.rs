//! Reads that PostgreSQL stops when their caller goes away.
//!
//! Dropping a query's future (a client gone, a deadline passed) does not stop the statement
//! on the server: it runs on to its `statement_timeout`, and its connection is held out of the
//! pool until it ends. A read marks its statement with a comment unique to it; when the read
//! is dropped before its answer came, a cancel is sent to the backend that runs a statement so
//! marked, and to no other: the mark, not the backend, chooses, so a backend that has moved on
//! to someone else's statement is left alone.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{ConnectOptions, PgPool};

/// Marks one read's statement, and cancels it if dropped before [`Abandonable::finished`].
pub(super) struct Abandonable {
    mark: String,
    pool: Option<PgPool>,
}

impl Abandonable {
    pub(super) fn new(pool: &PgPool) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Unique across replicas sharing the database, not only within this process.
        static PROCESS: OnceLock<String> = OnceLock::new();
        let process = PROCESS.get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            format!("{:x}.{nanos:x}", std::process::id())
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self { mark: format!("/* gatehouse read {process}.{n:x} */ "), pool: Some(pool.clone()) }
    }

    /// `sql`, marked as this read's.
    pub(super) fn marked(&self, sql: &str) -> String {
        format!("{}{sql}", self.mark)
    }

    /// The statement has answered (or failed): nothing to cancel.
    pub(super) fn finished(mut self) {
        self.pool = None;
    }
}

impl Drop for Abandonable {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        // `LIKE` with the mark as a prefix: it holds no `%` or `_` of its own.
        let pattern = format!("{}%", self.mark);
        runtime.spawn(async move {
            let cancel = sqlx::query(
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity \
                 WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE $1",
            )
            .bind(&pattern);
            // Abandoned reads may be what holds the pool: then a connection of its own.
            let cancelled = match pool.try_acquire() {
                Some(mut conn) => cancel.fetch_one(&mut *conn).await.map(drop),
                None => match pool.connect_options().connect().await {
                    Ok(mut conn) => cancel.fetch_one(&mut conn).await.map(drop),
                    Err(error) => Err(error),
                },
            };
            if let Err(error) = cancelled {
                tracing::debug!(%error, "could not cancel an abandoned read");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::PgPool;
    use sqlx::postgres::PgPoolOptions;

    use super::super::read_abandonable;

    async fn pool() -> PgPool {
        let url = std::env::var("GATEHOUSE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        PgPoolOptions::new().max_connections(2).connect(&url).await.expect("the test PostgreSQL answers")
    }

    async fn running(pool: &PgPool, text: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1")
            .bind(format!("%{text}%"))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_read_its_caller_left_is_cancelled_and_no_other() {
        let pool = pool().await;
        // Distinct texts, so that tests running at once are not counted.
        let (abandoned, other) = ("pg_sleep(60.000417)", "pg_sleep(1.500417)");
        let other_pool = pool.clone();
        let bystander = tokio::spawn(async move {
            sqlx::query(&format!("SELECT {other}")).execute(&other_pool).await.map(|done| done.rows_affected())
        });
        let sql = format!("SELECT {abandoned}");
        let left = tokio::time::timeout(Duration::from_millis(300), read_abandonable(&pool, &pool, &sql, Vec::new()));
        assert!(left.await.is_err(), "the read runs for a minute unless cancelled");
        let mut waited = Duration::ZERO;
        while running(&pool, abandoned).await > 0 {
            assert!(waited < Duration::from_secs(10), "the abandoned statement still runs");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert!(bystander.await.unwrap().is_ok(), "a statement not abandoned runs to its end");
        // Its connection came back to the pool.
        let answered =
            tokio::time::timeout(Duration::from_secs(10), read_abandonable(&pool, &pool, "SELECT 1", Vec::new()));
        assert_eq!(answered.await.expect("a connection is free").unwrap().len(), 1);
    }
}
