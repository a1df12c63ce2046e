//! The store under benchmark: the SQLite file `gatehouse seed --data-dir`
//! filled, or the PostgreSQL database `gatehouse seed --database-url` did.

use std::path::Path;
use std::sync::Arc;

use gatehouse_core::OrgId;
use gatehouse_store::postgres::{PgOptions, PgStore};
use gatehouse_store::sqlite::SqliteStore;
use gatehouse_store::{ListQuery, Store};

pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Backend {
    pub async fn open(data_dir: Option<&Path>, database_url: Option<&str>) -> anyhow::Result<Self> {
        Ok(match (data_dir, database_url) {
            (_, Some(url)) => Self::Postgres(Arc::new(PgStore::connect(url, PgOptions::default()).await?)),
            (Some(dir), None) => Self::Sqlite(Arc::new(SqliteStore::open(&dir.join("gatehouse.db")).await?)),
            (None, None) => anyhow::bail!("name the store: --data-dir or --database-url"),
        })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// The plan of a listing, with a marker on every full table scan.
    pub async fn explain(&self, org: OrgId, query: &ListQuery) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Self::Sqlite(store) => store
                .explain_list(org, query)
                .await?
                .into_iter()
                .map(|line| {
                    let scan = line.starts_with("SCAN") && !line.contains("INDEX");
                    if scan { format!("{line}   <-- table scan") } else { line }
                })
                .collect(),
            Self::Postgres(store) => store
                .explain_list(org, query)
                .await?
                .into_iter()
                .map(|line| if line.contains("Seq Scan") { format!("{line}   <-- table scan") } else { line })
                .collect(),
        })
    }
}
