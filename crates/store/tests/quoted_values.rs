//! Values the query grammar would split, listed on both stores: a quoted bound of a comparison
//! or range (`user.name:>"Judy Jones"`), which a review found listing nothing, or every session
//! with a name, on either store; and a time in a term, which needs no quotes. `gatehouse-query`'s
//! tests hold what these parse to; this holds what each store lists by it, over the
//! conformance fixture (see the table in `conformance/fixture.rs`).

// Only the fixture is used here: the suite itself runs in `sqlite.rs` and `postgres.rs`.
#[allow(unused)]
mod conformance;

use std::str::FromStr;

use gatehouse_store::postgres::{PgOptions, PgStore};
use gatehouse_store::sqlite::SqliteStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use conformance::fixture::{Case, Fixture};

const CASES: &[Case] = &[
    // Names compare ignoring case: after "judy jones" come karl, mallory, nina and oscar.
    (r#"user.name:>"Judy Jones""#, &["s12", "s20", "s21", "s22"]),
    (r#"user.name:>="judy jones""#, &["s11", "s12", "s20", "s21", "s22"]),
    (r"user.name:>Judy\ Jones", &["s12", "s20", "s21", "s22"]),
    (
        r#"user.name:>"Judy Jones" OR technology:redis"#,
        &["s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22"],
    ),
    (
        r#"resource.name:<"prod db""#,
        &[
            "s02", "s03", "s06", "s08", "s09", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19",
            "s22",
        ],
    ),
    (r#"user.name:["Bob Brown" TO "Dave Dunn"]"#, &["s02", "s03", "s04"]),
    (r#"user.name:{'Bob Brown' TO "Dave Dunn"}"#, &["s03"]),
    (r#"start_time:>"2024-06-01 11:40:00Z""#, &["s18", "s19"]),
    ("start_time:2024-06-01T04:00:00Z", &["s03", "s04"]),
    ("end_time:2024-06-01T10:10:00Z", &["s07", "s09"]),
];

#[tokio::test]
async fn on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("gatehouse.db")).await.unwrap();
    Fixture::load(&store).await.check_all(CASES).await;
}

#[tokio::test]
async fn on_postgres() {
    let url = std::env::var("GATEHOUSE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin_options = PgConnectOptions::from_str(&url).expect("GATEHOUSE_TEST_DATABASE_URL is a PostgreSQL URL");
    let name = format!("api_quoted_values_{}", std::process::id());
    let mut admin = PgConnection::connect_with(&admin_options).await.expect("the test PostgreSQL answers");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    // In a task of its own, so that the database is dropped whether the checks pass or not.
    let options = admin_options.clone().database(&name);
    let checked = tokio::spawn(async move {
        let store = PgStore::connect_with(options, PgOptions { max_connections: 4, ..PgOptions::default() })
            .await
            .expect("connect to the test database");
        Fixture::load(&store).await.check_all(CASES).await;
        store.pool().close().await;
    })
    .await;
    admin.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await.unwrap();
    if let Err(failed) = checked {
        std::panic::resume_unwind(failed.into_panic());
    }
}
