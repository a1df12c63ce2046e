//! `gatehouse migrate`: schema migrations, applied or checked.

use std::process::ExitCode;

use anyhow::Context;
use gatehouse_store::postgres::{PgOptions, PgStore};

use super::open_store;
use crate::cli::MigrateArgs;

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let Some(url) = &args.store.database_url else {
        // The embedded store migrates itself whenever it is opened.
        open_store(&args.store).await?;
        eprintln!("The SQLite store in {} is up to date.", args.store.data_dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    let options = PgOptions { migrate: false, ..PgOptions::default() };
    let store = PgStore::connect(url, options).await.context("cannot connect to the PostgreSQL store")?;
    let pending = store.pending_migrations().await?;
    if pending.is_empty() {
        eprintln!("The PostgreSQL store is up to date.");
        return Ok(ExitCode::SUCCESS);
    }
    for (version, description) in &pending {
        eprintln!("pending: {version} {description}");
    }
    if args.check {
        return Ok(ExitCode::FAILURE);
    }
    store.migrate().await?;
    eprintln!("Applied {} migration(s).", pending.len());
    Ok(ExitCode::SUCCESS)
}
