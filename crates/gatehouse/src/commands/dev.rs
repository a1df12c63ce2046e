//! `gatehouse dev`: the whole product on one laptop, with a ready API key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use gatehouse_connector::config::{Config, ControlPlane, Listener};
use gatehouse_core::time::{Micros, now_micros};
use gatehouse_core::{OrgId, Role};
use gatehouse_server::auth::create_api_key;
use gatehouse_server::registry::{create_connector, create_resource};
use gatehouse_store::{ListQuery, Store, StoreError};
use tokio::net::TcpListener;

use super::seed::seed;
use super::serve::serve_on;
use super::{open_store, postgres_address, public_prefix, shutdown_signal};
use crate::address::HostPort;
use crate::cli::{DEFAULT_DATA_DIR, DEFAULT_LISTEN, DevArgs, StoreArgs};

pub const DEV_ORG: &str = "default";
/// The dev admin key is kept in the data directory (mode 0600) so that every
/// `gatehouse dev` run can print it; the store itself holds only its hash.
const DEV_KEY_FILE: &str = "dev-admin.key";
const DEV_CONNECTOR_KEY_FILE: &str = "dev-connector.key";
const DEV_RESOURCE: &str = "local-postgres";
const DEMO_ACTIVE: usize = 36;
const DEMO_DAYS: i64 = 30;

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let data_dir = &dev_dir(&args.store);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    // A taken port fails before anything is created or seeded.
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let upstream_answers = answers(&args.upstream).await;
    if upstream_answers {
        // Before the banner offers a psql command that would reach whatever holds the port. The
        // connector binds it again at once.
        std::net::TcpListener::bind(args.proxy_listen).with_context(|| {
            format!("cannot listen on {} for the dev connector (--proxy-listen chooses another)", args.proxy_listen)
        })?;
    }
    let metrics_listen = if upstream_answers { Some(metrics_address(args.proxy_metrics_listen)?) } else { None };
    let store = open_store(&args.store).await?;
    let org = store.ensure_org(DEV_ORG).await?;
    let key = dev_key(store.as_ref(), org.id, data_dir).await?;
    let gatehouse = this_command();
    if args.demo {
        let demo = match DemoMark::read(data_dir) {
            Some(demo) => {
                say!("An earlier `dev --demo` was stopped before it added every demo session: adding the rest.");
                Some(demo)
            }
            None if has_sessions(store.as_ref(), org.id).await? => {
                say!(
                    "The store already holds sessions, so no demo sessions were added (`{gatehouse} seed{}` adds \
                     more).",
                    store_flags(&args)
                );
                None
            }
            None => Some(DemoMark { now: now_micros(), sessions: args.demo_sessions }),
        };
        if let Some(demo) = demo {
            tokio::select! {
                seeded = demo.seed(store.as_ref(), org.id, data_dir) => seeded?,
                () = shutdown_signal() => {
                    note!("\nStopped with the demo partly added: `{}` adds the rest.", demo_command(&gatehouse, &args));
                    return Ok(ExitCode::from(130));
                }
            }
        }
    }
    let url = format!("http://{}", listener.local_addr()?);
    let connector = match metrics_listen {
        Some(metrics_listen) => {
            Some(dev_connector(store.as_ref(), org.id, &args, data_dir, &url, metrics_listen).await?)
        }
        None => None,
    };
    say!(
        "\nGatehouse is running at {url}\n\
         \n  organization:  {DEV_ORG}\
         \n  admin API key: {key}\
         \n  {}\n\
         \nTry it:\n\
         \n  curl -s {url}/core.v1.SessionsService/ListSessionsV2 \\\
         \n    -H 'Content-Type: application/json' -H 'X-API-KEY: {key}' \\\
         \n    -d '{{\"limit\": 3, \"query\": \"session_status:active\"}}'\n\
         \n  export GATEHOUSE_URL={url} GATEHOUSE_API_KEY={key}\
         \n  {gatehouse} sessions list --since 24h\n",
        where_kept(&args.store, data_dir)
    );
    let connector = match connector {
        Some(config) => {
            let listen = config.listeners[0].listen;
            say!(
                "A connector fronts the PostgreSQL at {}. Connect through it and watch your session appear:\n\
                 \n  psql \"host={} port={} user=postgres dbname=postgres sslmode=disable\"\
                 \n  {gatehouse} sessions list -q session_status:active\n\
                 \nIts health and Prometheus metrics: http://{admin}/health, http://{admin}/metrics\n",
                args.upstream,
                listen.ip(),
                listen.port(),
                admin = config.admin_listen,
            );
            Some(gatehouse_connector::runtime::run(config, shutdown_signal()))
        }
        None => {
            say!(
                "No PostgreSQL answered at {}: start one, or pass --upstream HOST[:PORT], and `gatehouse dev` \
                 puts a connector in front of it.\n",
                args.upstream
            );
            None
        }
    };
    if !args.demo && !has_sessions(store.as_ref(), org.id).await? {
        say!("The store is empty: run `{}` to fill it with demo sessions.\n", demo_command(&gatehouse, &args));
    }
    // On Ctrl-C the connector stops first, and ends its sessions through the control
    // plane, which stops only then: the other way round, their ends would wait in the
    // connector's spool for the next run.
    let (connector_running, mut connector_stopped) = tokio::sync::watch::channel(());
    let connector = async move {
        let result = match connector {
            Some(run) => run.await.context("the dev connector failed"),
            None => Ok(()),
        };
        drop(connector_running);
        result
    };
    let api_shutdown = async move {
        shutdown_signal().await;
        // Errs once the connector has stopped: the wait is over.
        let _ = connector_stopped.changed().await;
    };
    let (served, connected) = tokio::join!(serve_on(listener, None, store, &args.lease, api_shutdown), connector);
    served.and(connected)?;
    Ok(ExitCode::SUCCESS)
}

/// The demo seeding this data directory's store is getting: written before its first session
/// is stored, removed after its last, so that a `dev --demo` stopped halfway (Ctrl-C) is
/// completed by the next, which makes the same sessions (the same `now`) and adds those
/// missing, rather than taken for a store that holds sessions of its own.
struct DemoMark {
    /// The `now` the demo's sessions are drawn for.
    now: Micros,
    /// Its completed sessions.
    sessions: usize,
}

impl DemoMark {
    const FILE: &str = "demo-seeding";

    /// The mark in `data_dir`, if a demo seeding there has not completed.
    fn read(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(data_dir.join(Self::FILE)).ok()?;
        let (now, sessions) = text.trim().split_once(' ')?;
        Some(Self { now: now.parse().ok()?, sessions: sessions.parse().ok()? })
    }

    /// Stores the demo's sessions (those missing, after a seeding cut short), marked as
    /// under way until they all are.
    async fn seed(&self, store: &dyn Store, org: OrgId, data_dir: &Path) -> anyhow::Result<()> {
        let path = data_dir.join(Self::FILE);
        write_private(&path, &format!("{} {}\n", self.now, self.sessions))
            .with_context(|| format!("cannot write {}", path.display()))?;
        seed(store, org, self.sessions, DEMO_ACTIVE, DEMO_DAYS * 86_400_000_000, 1, self.now).await?;
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
    }
}

/// The `dev --demo` command for this run's store and address.
fn demo_command(gatehouse: &str, args: &DevArgs) -> String {
    let listen = match args.listen.to_string() {
        listen if listen == DEFAULT_LISTEN => String::new(),
        listen => format!(" --listen {listen}"),
    };
    format!("{gatehouse} dev --demo{}{listen}", store_flags(args))
}

/// Whether something accepts connections at `upstream` within half a second.
async fn answers(upstream: &HostPort) -> bool {
    let connect = tokio::net::TcpStream::connect((upstream.host.as_str(), upstream.port));
    tokio::time::timeout(Duration::from_millis(500), connect).await.is_ok_and(|connected| connected.is_ok())
}

/// Registers the local PostgreSQL and a dev connector (once) and returns the
/// connector's configuration, its key and state in `data_dir` (see [`dev_dir`]).
async fn dev_connector(
    store: &dyn Store,
    org: OrgId,
    args: &DevArgs,
    data_dir: &Path,
    api_url: &str,
    metrics_listen: SocketAddr,
) -> anyhow::Result<Config> {
    let (host, port) = (args.upstream.host.as_str(), args.upstream.port);
    // One dev resource per address, so that sessions name the database they really reached.
    let registered =
        store.list_resources(org).await?.into_iter().find(|r| {
            r.name.starts_with(DEV_RESOURCE) && r.host == host && r.port == port && r.technology == "postgres"
        });
    let resource = match registered {
        Some(resource) => resource,
        None => {
            let create = |name: String| async move { create_resource(store, org, &name, "postgres", host, port).await };
            create_with_free_name(DEV_RESOURCE, create).await?
        }
    };
    let key = dev_connector_key(store, org, data_dir).await?;
    Ok(Config {
        control_plane: ControlPlane { url: api_url.to_owned(), key, ca_file: None, url_from_file: None },
        listeners: vec![Listener::new(args.proxy_listen, &resource.id, Some(&args.upstream.to_string()))],
        admin_listen: metrics_listen,
        state_dir: data_dir.join("connector"),
        spool_max_bytes: 256 * 1024 * 1024,
        fail_open: false,
        shutdown_drain_seconds: 0,
        tls: None,
        identity: Default::default(),
        credentials: Vec::new(),
        peer_id: None,
        peers: Vec::new(),
        source: None,
        listeners_from_file: Vec::new(),
    })
}

/// How to run this binary from the shell `dev` was started in: `gatehouse` when that is what
/// the PATH finds, else its path (`target/release/gatehouse` after `cargo run --release`), so
/// that the commands the banner prints work as pasted.
fn this_command() -> String {
    let Ok(exe) = std::env::current_exe() else { return "gatehouse".to_owned() };
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("gatehouse")).find(|f| f.is_file()));
    command_for(&exe, on_path.as_deref(), std::env::current_dir().ok().as_deref())
}

fn command_for(exe: &Path, on_path: Option<&Path>, cwd: Option<&Path>) -> String {
    let real = |path: &Path| path.canonicalize().unwrap_or_else(|_| path.to_owned());
    if on_path.is_some_and(|found| real(found) == real(exe)) {
        return "gatehouse".to_owned();
    }
    shell_word(&cwd.and_then(|cwd| exe.strip_prefix(cwd).ok()).unwrap_or(exe).display().to_string())
}

/// `text` as one word of a shell command: quoted when it holds what the shell would split or
/// act on.
fn shell_word(text: &str) -> String {
    match text.is_empty() || text.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>()*?[]#~".contains(c)) {
        true => format!("'{}'", text.replace('\'', r"'\''")),
        false => text.to_owned(),
    }
}

/// The store flags of a command the banner suggests, so that it acts on this `dev`'s store,
/// not the default one: `--data-dir` unless it is the default, and `--database-url` for a
/// PostgreSQL store (its URL not repeated: it may hold a password).
fn store_flags(args: &DevArgs) -> String {
    let mut flags = String::new();
    if args.store.data_dir != Path::new(DEFAULT_DATA_DIR) {
        flags.push_str(&format!(" --data-dir {}", shell_word(&args.store.data_dir.display().to_string())));
    }
    if args.store.database_url.is_some() {
        flags.push_str(" --database-url URL");
    }
    flags
}

/// Where the dev connector serves `/health` and `/metrics` by default: beside the API's 7400
/// and the connector's 6432 (not the connector's own default 8080, which anything may hold).
const DEFAULT_METRICS_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6480);

/// Where the dev connector serves `/health` and `/metrics`: the address asked for, which must
/// be free; else [`DEFAULT_METRICS_LISTEN`] when free, else a free port the system picks (a
/// second `dev`). Chosen here rather than by the connector so that the banner can say where.
fn metrics_address(asked: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    if let Some(addr) = asked {
        std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "cannot listen on {addr} for the dev connector's health and metrics (--proxy-metrics-listen \
                 chooses another)"
            )
        })?;
        return Ok(addr);
    }
    if std::net::TcpListener::bind(DEFAULT_METRICS_LISTEN).is_ok() {
        return Ok(DEFAULT_METRICS_LISTEN);
    }
    let picked = std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|listener| listener.local_addr());
    picked.context("cannot find a free port for the dev connector's metrics")
}

/// Where `dev` keeps its own files (its keys, its connector's state, the demo mark, its
/// lock): the data directory; with a PostgreSQL store, a folder in it named after the
/// database, so that a dev on each store run from one directory keeps its own keys, and its
/// connector never takes the other store's runs for its own.
fn dev_dir(store: &StoreArgs) -> PathBuf {
    match &store.database_url {
        None => store.data_dir.clone(),
        Some(url) => {
            let safe = |c: char| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') { c } else { '_' };
            store.data_dir.join("postgres").join(postgres_address(url).chars().map(safe).collect::<String>())
        }
    }
}

/// The banner's line on where the sessions and `dev`'s own files are.
fn where_kept(store: &StoreArgs, dev_dir: &Path) -> String {
    match &store.database_url {
        None => format!("data:          {}", dev_dir.display()),
        Some(url) => {
            format!("store:         PostgreSQL at {}\n  dev files:     {}", postgres_address(url), dev_dir.display())
        }
    }
}

/// Reuses the saved dev connector key while it is valid, else registers a
/// new dev connector.
async fn dev_connector_key(store: &dyn Store, org: OrgId, data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEV_CONNECTOR_KEY_FILE);
    if let Some(saved) = read_saved_key(&path)
        && let Some(found) = store.find_connector(public_prefix(&saved)).await?
        && found.org == org
    {
        return Ok(saved);
    }
    // A lost key file leaves its connector behind: take the next free name.
    let created =
        create_with_free_name("dev-connector", |name| async move { create_connector(store, org, &name).await }).await?;
    write_private(&path, &created.key)
        .with_context(|| format!("cannot save the dev connector key to {}", path.display()))?;
    Ok(created.key)
}

/// Creates something named `base`, or `base-2`, `base-3`, ... while the name is taken.
async fn create_with_free_name<T, F, Fut>(base: &str, mut create: F) -> Result<T, StoreError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        let name = if attempt == 1 { base.to_owned() } else { format!("{base}-{attempt}") };
        match create(name).await {
            Err(StoreError::Conflict(_)) if attempt < 100 => attempt += 1,
            result => return result,
        }
    }
}

fn read_saved_key(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|key| key.trim().to_owned())
}

/// Reuses the saved dev key while it is still valid, else creates one.
async fn dev_key(store: &dyn Store, org: OrgId, data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEV_KEY_FILE);
    if let Some(saved) = read_saved_key(&path)
        && let Some(stored) = store.find_api_key(public_prefix(&saved)).await?
        && !stored.revoked
        && stored.org == org
    {
        return Ok(saved);
    }
    let created = create_api_key(store, org, "dev admin", Role::Admin).await?;
    write_private(&path, &created.key).with_context(|| format!("cannot save the dev key to {}", path.display()))?;
    Ok(created.key)
}

/// Holds `dev.lock` in the data directory while this process runs: a second
/// `gatehouse dev` there would take the first one's connector for its own
/// earlier run, and complete its live sessions.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("dev.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `gatehouse dev` is running on {}: stop it, or pass another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // The mode above is for a file created now; one an earlier run left may be open to others.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

async fn has_sessions(store: &dyn Store, org: OrgId) -> anyhow::Result<bool> {
    Ok(!store.list_sessions(org, &ListQuery::newest(1, now_micros())).await?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_command_is_one_the_shell_finds() {
        let exe = Path::new("/work/app/target/release/gatehouse");
        assert_eq!(command_for(exe, None, Some(Path::new("/work/app"))), "target/release/gatehouse");
        assert_eq!(command_for(exe, None, Some(Path::new("/tmp"))), "/work/app/target/release/gatehouse");
        assert_eq!(command_for(exe, Some(exe), Some(Path::new("/tmp"))), "gatehouse");
        let other = Path::new("/usr/local/bin/gatehouse");
        assert_eq!(command_for(exe, Some(other), None), "/work/app/target/release/gatehouse");
        let spaced = Path::new("/home/my app/gatehouse");
        assert_eq!(command_for(spaced, None, None), "'/home/my app/gatehouse'");
        assert_eq!(shell_word("/tmp/data"), "/tmp/data");
        assert_eq!(shell_word("it's here"), r"'it'\''s here'");
        assert_eq!(shell_word("a;b"), "'a;b'");
        assert_eq!(shell_word(""), "''");
    }
}
