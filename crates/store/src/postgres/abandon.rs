//! Reads that PostgreSQL stops when their caller goes away.
//!
//! Dropping a query's future (a client gone, a deadline passed) does not stop the statement
//! on the server: it runs on to its `statement_timeout`. Nor may sqlx's future be dropped
//! halfway: the connection would go back to the pool in a state it cannot always recover (a
//! `BEGIN` not yet answered leaves it inside a transaction for the next user). So a read runs
//! in a task of its own, which always sees its statement through, and answers its caller
//! through a channel. Its statement carries a comment unique to it; when the caller goes away
//! before the answer came, a cancel is sent to the backend that runs a statement so marked,
//! and to no other: the mark, not the backend, chooses, so a backend that has moved on to
//! someone else's statement is left alone. The task then gets the cancel's error, which
//! nobody reads, and its connection goes back to the pool as after any failed statement.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgRow;
use sqlx::{ConnectOptions, Executor, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::query_with;
use crate::sql::Arg;

pub(super) type Rows = Result<Vec<PgRow>, sqlx::Error>;
type Reply = oneshot::Sender<Rows>;

/// Runs a costly read on a connection of `pool`; its statement is cancelled if the caller goes
/// away.
pub(super) async fn read(pool: &PgPool, sql: &str, args: Vec<Arg>) -> Rows {
    let read = Abandonable::new(pool);
    let (reply, answer) = oneshot::channel();
    let (task_pool, sql) = (pool.clone(), read.marked(sql));
    tokio::spawn(async move {
        match task_pool.acquire().await {
            Ok(mut conn) => {
                serve(&mut *conn, &sql, args, reply).await;
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    });
    read.answer(answer).await
}

/// A transaction that reads, one statement after another, for as long as this is held: a task
/// of its own holds it, and rolls it back when this is dropped.
pub(super) struct ReadTransaction {
    requests: mpsc::Sender<(String, Vec<Arg>, Reply)>,
    pool: PgPool,
}

impl ReadTransaction {
    /// Begins a transaction on a connection of `pool` and runs `first` in it.
    pub(super) async fn begin(pool: &PgPool, first: &str, args: Vec<Arg>) -> Result<Self, sqlx::Error> {
        let (requests, mut incoming) = mpsc::channel::<(String, Vec<Arg>, Reply)>(1);
        let read = Abandonable::new(pool);
        let (reply, answer) = oneshot::channel();
        let (task_pool, first) = (pool.clone(), read.marked(first));
        tokio::spawn(async move {
            let mut tx = match task_pool.begin().await {
                Ok(tx) => tx,
                Err(error) => {
                    let _ = reply.send(Err(error));
                    return;
                }
            };
            if serve(&mut *tx, &first, args, reply).await {
                while let Some((sql, args, reply)) = incoming.recv().await {
                    serve(&mut *tx, &sql, args, reply).await;
                }
            }
            if let Err(error) = tx.rollback().await {
                tracing::debug!(%error, "could not roll back a read transaction");
            }
        });
        read.answer(answer).await?;
        Ok(Self { requests, pool: pool.clone() })
    }

    /// Runs `sql` in the transaction.
    pub(super) async fn read(&self, sql: &str, args: Vec<Arg>) -> Rows {
        let read = Abandonable::new(&self.pool);
        let (reply, answer) = oneshot::channel();
        if self.requests.send((read.marked(sql), args, reply)).await.is_err() {
            read.finished();
            return Err(sqlx::Error::WorkerCrashed);
        }
        read.answer(answer).await
    }
}

/// Runs `sql` for the caller waiting on `reply`, unless it has gone already; returns whether
/// it got rows.
async fn serve<'c, E>(executor: E, sql: &str, args: Vec<Arg>, reply: Reply) -> bool
where
    E: Executor<'c, Database = Postgres>,
{
    if reply.is_closed() {
        return false;
    }
    let rows = query_with(sql, args).persistent(false).fetch_all(executor).await;
    let answered = rows.is_ok();
    reply.send(rows).is_ok() && answered
}

/// Marks one read's statement, and cancels it if dropped before its answer came.
struct Abandonable {
    mark: String,
    pool: Option<PgPool>,
}

impl Abandonable {
    fn new(pool: &PgPool) -> Self {
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
    fn marked(&self, sql: &str) -> String {
        format!("{}{sql}", self.mark)
    }

    /// The statement has answered (or failed): nothing to cancel.
    fn finished(mut self) {
        self.pool = None;
    }

    /// Waits for the read's answer; dropped meanwhile, cancels its statement.
    async fn answer(self, answer: oneshot::Receiver<Rows>) -> Rows {
        let rows = answer.await.unwrap_or(Err(sqlx::Error::WorkerCrashed));
        self.finished();
        rows
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

    use super::{ReadTransaction, read};

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
        let left = tokio::time::timeout(Duration::from_millis(300), read(&pool, &sql, Vec::new()));
        assert!(left.await.is_err(), "the read runs for a minute unless cancelled");
        let mut waited = Duration::ZERO;
        while running(&pool, abandoned).await > 0 {
            assert!(waited < Duration::from_secs(10), "the abandoned statement still runs");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert!(bystander.await.unwrap().is_ok(), "a statement not abandoned runs to its end");
        // Its connection came back to the pool.
        let answered = tokio::time::timeout(Duration::from_secs(10), read(&pool, "SELECT 1", Vec::new()));
        assert_eq!(answered.await.expect("a connection is free").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn transactions_their_callers_left_give_their_connections_back() {
        let pool = pool().await;
        // More than the pool holds, left in each way a caller can leave.
        for _ in 0..3 {
            let slow_first = ReadTransaction::begin(&pool, "SELECT pg_sleep(60.000419)", Vec::new());
            assert!(tokio::time::timeout(Duration::from_millis(200), slow_first).await.is_err());
            let tx = ReadTransaction::begin(&pool, "CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1 AS x", Vec::new())
                .await
                .unwrap();
            let slow = tx.read("SELECT pg_sleep(60.000419) FROM t", Vec::new());
            assert!(tokio::time::timeout(Duration::from_millis(200), slow).await.is_err());
            assert_eq!(tx.read("SELECT x FROM t", Vec::new()).await.map(|rows| rows.len()).ok(), None, "aborted");
        }
        let reads = futures::future::join(read(&pool, "SELECT 1", Vec::new()), read(&pool, "SELECT 2", Vec::new()));
        let (a, b) = tokio::time::timeout(Duration::from_secs(10), reads).await.expect("both connections are free");
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(running(&pool, "pg_sleep(60.000419)").await, 0, "every abandoned statement was cancelled");
    }
}
