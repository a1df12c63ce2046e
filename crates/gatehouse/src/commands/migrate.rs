//! `gatehouse migrate`: schema migrations, applied or checked.

use std::process::ExitCode;

use anyhow::Context;
use gatehouse_store::sqlite::SqliteStore;

use super::{connect_postgres, open_sqlite, opening, opening_postgres, postgres_url, sqlite_exists, sqlite_path};
use crate::cli::MigrateArgs;

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    // Look before applying anything: `--check` must change nothing. A store a newer Gatehouse
    // wrote fails here, as it would every other command: no migration of ours mends it.
    let (name, postgres, pending) = match postgres_url(&args.store)? {
        None => {
            let path = sqlite_path(&args.store);
            let exists = sqlite_exists(&path)?;
            let pending = SqliteStore::pending_migrations(&path).await.with_context(|| opening(&path))?;
            if !exists {
                note!("There is no SQLite store at {} yet.", path.display());
            }
            (format!("The SQLite store at {}", path.display()), None, pending)
        }
        Some(url) => {
            let store = connect_postgres(url, &args.store).await?;
            let pending = store.pending_migrations().await.with_context(|| opening_postgres(url))?;
            ("The PostgreSQL store".to_owned(), Some(store), pending)
        }
    };
    if pending.is_empty() {
        note!("{name} is up to date.");
        return Ok(ExitCode::SUCCESS);
    }
    for (version, description) in &pending {
        // What `--check` was asked for goes to stdout; progress to stderr.
        match args.check {
            true => say!("pending: {version} {description}"),
            false => note!("applying: {version} {description}"),
        }
    }
    if args.check {
        return Ok(ExitCode::FAILURE);
    }
    match postgres {
        Some(store) => store.migrate().await?,
        // The embedded store migrates itself whenever it is opened.
        None => drop(open_sqlite(&args.store).await?),
    }
    note!("Applied {} migration(s). {name} is up to date.", pending.len());
    Ok(ExitCode::SUCCESS)
}
