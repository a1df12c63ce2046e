//! One module per subcommand.

mod apply;
mod connector;
mod dev;
mod keys;
mod migrate;
mod registry;
mod seed;
mod serve;
mod sessions;
mod users;
mod watch;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gatehouse_core::OrgId;
use gatehouse_store::postgres::{PgOptions, PgStore};
use gatehouse_store::sqlite::SqliteStore;
use gatehouse_store::{Org, Store};

use crate::cli::{Cli, Command, StoreArgs};

/// An argument that clap accepted but the command cannot: exits 2, as clap's own usage errors
/// do, so that a script tells a mistake in its call from a failure of the system.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An identity's check refusing what the arguments gave (an email that is none, a role name
/// with a space in it): a usage error. A failure of the store is not.
pub(super) fn usage_if_invalid(error: gatehouse_server::identity::IdentityError) -> anyhow::Error {
    match error {
        gatehouse_server::identity::IdentityError::Invalid(message) => UsageError(message).into(),
        other => other.into(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Connector(args) => connector::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Sessions(command) => sessions::run(command).await,
        Command::Seed(args) => seed::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Resources(command) => registry::resources(command).await,
        Command::Connectors(command) => registry::connectors(command).await,
        Command::Users(command) => users::run(command).await,
        Command::Apply(args) => apply::run(args).await,
    }
}

/// Opens the store the arguments name, creating it or applying migrations as needed (and
/// saying so: a store an older Gatehouse wrote changes under its users' feet).
pub async fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = postgres_url(args)? {
        let store = connect_postgres(url, args).await?;
        migrate_postgres(&store, url).await?;
        return Ok(Arc::new(store));
    }
    let path = sqlite_path(args);
    let pending = match sqlite_exists(&path)? {
        true => SqliteStore::pending_migrations(&path).await.with_context(|| opening(&path))?.len(),
        // A new store: its migrations are its creation, nothing to tell.
        false => 0,
    };
    let store = open_sqlite(args).await?;
    applied_migrations(pending);
    Ok(Arc::new(store))
}

/// Opens (creating if needed) the SQLite store the arguments name, which applies its pending
/// migrations, without a word: for `migrate`, which says what it applies.
pub async fn open_sqlite(args: &StoreArgs) -> anyhow::Result<SqliteStore> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {}", args.data_dir.display()))?;
    warn_if_others_may_write(&args.data_dir);
    let path = sqlite_path(args);
    SqliteStore::open_with(&path, args.db_statement_timeout).await.with_context(|| opening(&path))
}

/// The store's files are its owner's only (the process's umask), but in a directory that others
/// may write to, they can be deleted or replaced (keys, sessions and all): said at each start,
/// as PostgreSQL refuses such a data directory. One made here is the owner's only.
fn warn_if_others_may_write(dir: &Path) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(dir) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode();
        if mode & 0o022 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "others than its owner may write to the data directory, and so delete or replace the store: chmod 700 it",
            );
        }
    }
}

/// Applies the pending migrations of a PostgreSQL store, and says how many there were.
async fn migrate_postgres(store: &PgStore, url: &str) -> anyhow::Result<()> {
    let opening = || opening_postgres(url);
    let pending = match store.is_created().await.with_context(opening)? {
        true => store.pending_migrations().await.with_context(opening)?.len(),
        false => 0,
    };
    store.migrate().await.with_context(opening)?;
    applied_migrations(pending);
    Ok(())
}

/// Says that opening the store applied `count` pending migrations, if it did.
fn applied_migrations(count: usize) {
    if count > 0 {
        note!("Applied {count} pending migration(s) to the store.");
    }
}

/// How an error opening the SQLite store at `path` starts.
pub fn opening(path: &Path) -> String {
    format!("cannot open the store at {}", path.display())
}

/// Whether there is a file at `path`. One that cannot be looked at (in a directory of another
/// user's) is an error that says so, not a store that is not there yet.
pub fn sqlite_exists(path: &Path) -> anyhow::Result<bool> {
    path.try_exists().with_context(|| format!("cannot read {}", path.display()))
}

/// The organization named `name`, created when there is none. Says so on
/// stderr then: a mistyped `--org` shows at once, not when nothing finds what
/// was created in it.
pub async fn ensure_org(store: &dyn Store, name: &str) -> anyhow::Result<Org> {
    if let Some(org) = store.find_org(name).await? {
        return Ok(org);
    }
    refuse_mistyped_org(store, name).await?;
    let (org, created) = store.ensure_org_noting_creation(name).await?;
    // Another command may have created it since `find_org`: only the one that did says so.
    if created {
        note!("Created organization {name:?}: it did not exist yet.");
    }
    Ok(org)
}

/// Refuses `name` for a new organization when it is a slip for an existing one's (a usage
/// error naming it): a key made for a mistyped organization would see none of the sessions it
/// was meant for.
pub async fn refuse_mistyped_org(store: &dyn Store, name: &str) -> anyhow::Result<()> {
    // The name itself may be listed now, made by a command racing this one: that is no typo.
    let orgs = store.list_orgs().await?;
    if let Some(org) = orgs.into_iter().find(|org| org.name != name && mistyped(name, &org.name)) {
        return Err(UsageError(format!(
            "no organization named {name:?}; did you mean {:?}? (a new organization's name must differ \
             from the existing ones by more than letter case, spaces around it or two letters swapped)",
            org.name
        ))
        .into());
    }
    Ok(())
}

/// Whether `typed` is `name` in another case, with spaces around it, or with two neighbouring
/// letters swapped: a slip, never a name of its own (unlike `team-a` beside `team-b`).
fn mistyped(typed: &str, name: &str) -> bool {
    let (typed, name): (Vec<char>, Vec<char>) =
        (typed.trim().to_lowercase().chars().collect(), name.trim().to_lowercase().chars().collect());
    if typed.len() != name.len() {
        return false;
    }
    let differ: Vec<usize> = (0..typed.len()).filter(|&i| typed[i] != name[i]).collect();
    match differ.as_slice() {
        [] => true,
        [a, b] => *b == a + 1 && typed[*a] == name[*b] && typed[*b] == name[*a],
        _ => false,
    }
}

/// The public prefix of a key or token given whole (`gh_PREFIX_secret`), as
/// `gh_PREFIX`, or as the bare prefix. What follows the prefix is a secret,
/// so it is dropped before anything repeats the argument.
pub fn public_prefix(given: &str) -> &str {
    match given.split_once('_') {
        Some((_marker, rest)) => rest.split('_').next().unwrap_or(rest),
        None => given,
    }
}

/// The PostgreSQL store's URL, if the arguments name one. Checked here rather than by clap,
/// whose errors repeat the value, and a URL may hold a password.
pub fn postgres_url(args: &StoreArgs) -> anyhow::Result<Option<&str>> {
    let Some(url) = args.database_url.as_deref() else { return Ok(None) };
    match url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase()).as_deref() {
        Some("postgres" | "postgresql") => Ok(Some(url)),
        _ => Err(UsageError(
            "--database-url is not a PostgreSQL URL: it starts with postgres:// or postgresql:// \
             (SQLite needs none: --data-dir names its directory)"
                .to_owned(),
        )
        .into()),
    }
}

/// Connects to the PostgreSQL store at `url`, applying no migration.
pub async fn connect_postgres(url: &str, args: &StoreArgs) -> anyhow::Result<PgStore> {
    let options = PgOptions {
        max_connections: args.db_pool_size,
        statement_timeout: args.db_statement_timeout,
        migrate: false,
        ..PgOptions::default()
    };
    PgStore::connect(url, options).await.with_context(|| opening_postgres(url))
}

/// How an error opening the PostgreSQL store at `url` starts: the URL may hold a password, so
/// never the URL, only where it points.
pub fn opening_postgres(url: &str) -> String {
    format!("cannot open the PostgreSQL store at {}", postgres_address(url))
}

/// `host:port/database` of a PostgreSQL URL, without its user and password.
pub fn postgres_address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('?').next().unwrap_or(rest)
}

/// Where the SQLite store lives.
pub fn sqlite_path(args: &StoreArgs) -> std::path::PathBuf {
    args.data_dir.join("gatehouse.db")
}

/// Opens a store that must exist already: commands that only read or change
/// what is there should not leave a new, empty store behind a mistyped
/// `--data-dir`. An older store is brought up to date, as `serve` would.
pub async fn open_existing_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    open_existing(args, Pending::Apply).await
}

/// Opens a store that must exist already and be up to date, changing nothing: for a dry run,
/// which must leave the store as it found it, migrations included.
pub async fn open_store_as_is(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    open_existing(args, Pending::Refuse).await
}

/// What opening an existing store does about migrations it has not applied yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Apply,
    Refuse,
}

async fn open_existing(args: &StoreArgs, pending: Pending) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = postgres_url(args)? {
        let store = connect_postgres(url, args).await?;
        if !store.is_created().await? {
            anyhow::bail!(
                "there is no Gatehouse store in the database at {}: `gatehouse migrate --database-url ...` \
                 (or `gatehouse serve`) creates it; nothing was changed",
                postgres_address(url)
            );
        }
        match pending {
            Pending::Apply => migrate_postgres(&store, url).await?,
            Pending::Refuse => {
                refuse_pending(store.pending_migrations().await.with_context(|| opening_postgres(url))?)?
            }
        }
        return Ok(Arc::new(store));
    }
    let path = sqlite_path(args);
    if !sqlite_exists(&path)? {
        anyhow::bail!(
            "there is no store at {}: `gatehouse serve` or `gatehouse dev` creates it (--data-dir or \
             GATEHOUSE_DATA_DIR names another directory, --database-url a PostgreSQL store)",
            path.display()
        );
    }
    if pending == Pending::Refuse {
        // Opening the embedded store applies its migrations: look first.
        let migrations = SqliteStore::pending_migrations(&path).await.with_context(|| opening(&path))?;
        refuse_pending(migrations)?;
    }
    open_store(args).await
}

fn refuse_pending(migrations: Vec<(i64, String)>) -> anyhow::Result<()> {
    if !migrations.is_empty() {
        anyhow::bail!(
            "the store has {} migration(s) to apply first (`gatehouse migrate --check` lists them, \
             `gatehouse migrate` applies them); nothing was changed",
            migrations.len()
        );
    }
    Ok(())
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// The id of the organization named `name`, which must exist.
pub(super) async fn existing_org(store: &dyn Store, name: &str) -> anyhow::Result<OrgId> {
    Ok(existing_org_named(store, name).await?.id)
}

/// The organization named `name`; none is a usage error, which names the one meant when
/// `name` is a slip for it.
pub(super) async fn existing_org_named(store: &dyn Store, name: &str) -> anyhow::Result<Org> {
    if let Some(org) = store.find_org(name).await? {
        return Ok(org);
    }
    let meant = store.list_orgs().await?.into_iter().find(|org| mistyped(name, &org.name));
    let message = match meant {
        Some(org) => format!("no organization named {name:?}; did you mean {:?}?", org.name),
        None => format!("no organization named {name:?}"),
    };
    Err(UsageError(message).into())
}

#[cfg(test)]
mod tests {
    use super::mistyped;

    #[test]
    fn a_mistyped_organization_is_told_from_a_new_one() {
        for (typed, name) in [
            ("defualt", "default"),
            ("Default", "default"),
            ("ACME", "acme"),
            ("amce", "acme"),
            ("default ", "default"),
            (" acme", "acme"),
        ] {
            assert!(mistyped(typed, name), "{typed} {name}");
        }
        for (typed, name) in [("team-b", "team-a"), ("acme2", "acme"), ("globex", "acme"), ("abc", "cba")] {
            assert!(!mistyped(typed, name), "{typed} {name}");
        }
    }
}
