//! Command-line definitions (clap derive). Values are checked here; the
//! commands receive typed arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use gatehouse_core::Role;
use gatehouse_core::time::{FineMicros, MAX_TIME, MIN_TIME, Micros, now_micros};

use crate::address::{HostPort, database_address, host_name, listen_address};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Know and control who touches production data",
    long_about = None,
    after_help = "Environment: GATEHOUSE_URL, GATEHOUSE_API_KEY (and GATEHOUSE_CA_FILE for https) for the `sessions` commands; \
                  GATEHOUSE_DATA_DIR or GATEHOUSE_DATABASE_URL for the commands that talk to the store.\n\
                  Start here: `gatehouse dev --demo`, then `gatehouse sessions list --help`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The relay's worker threads, for `connector` (other commands run on
    /// one per core).
    pub fn relay_workers(&self) -> Option<usize> {
        match &self.command {
            Command::Connector(args) => Some(usize::from(args.workers)),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: the sessions API on one port
    Serve(ServeArgs),
    /// Run a connector: a PostgreSQL proxy that records every session
    Connector(ConnectorArgs),
    /// Run everything on this machine: a local store, an admin key, a ready curl command
    Dev(DevArgs),
    /// Manage API keys (talks to the store directly)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Search, read and terminate sessions through the API
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Register the databases connectors front (talks to the store directly)
    #[command(subcommand)]
    Resources(ResourcesCommand),
    /// Register connectors and create their keys (talks to the store directly)
    #[command(subcommand)]
    Connectors(ConnectorsCommand),
    /// Manage people and machines, their groups and access tokens (talks to the store directly)
    #[command(subcommand)]
    Users(UsersCommand),
    /// Apply a YAML file of users, default roles and grants; idempotent (talks to the store directly)
    #[command(after_long_help = APPLY_EXAMPLE)]
    Apply(ApplyArgs),
    /// Fill a store with synthetic sessions, for demos and benchmarks
    Seed(SeedArgs),
    /// Apply the store's pending schema migrations (or --check for them)
    Migrate(MigrateArgs),
}

/// Where the store is and how to use it. SQLite's directory and PostgreSQL's URL each come from
/// a flag or an environment variable; a flag wins over the other store's variable, so that
/// `--database-url` works in a shell that exports GATEHOUSE_DATA_DIR (clap's `conflicts_with`
/// counts a variable as given). Two flags, or two variables, conflict.
#[derive(Debug, Clone)]
pub struct StoreArgs {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub db_pool_size: u32,
    pub db_statement_timeout: std::time::Duration,
}

/// [`StoreArgs`] as clap reads them, before the choice between the two stores.
#[derive(Debug, Args)]
struct StoreFlags {
    /// Directory holding the embedded SQLite database
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Use PostgreSQL instead of SQLite (postgres://user:password@host:port/database); set
    /// GATEHOUSE_DATABASE_URL instead to keep a password out of `ps`
    #[arg(long, env = "GATEHOUSE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// PostgreSQL connections this process keeps at most
    #[arg(long, default_value_t = 16)]
    db_pool_size: u32,
    /// Longest a store statement may run before it is stopped (0s: no limit;
    /// on SQLite, reads only); a request that hits it gets deadline_exceeded
    #[arg(long, default_value = "30s", value_parser = parse_duration_or_zero)]
    db_statement_timeout: std::time::Duration,
}

impl Args for StoreArgs {
    fn group_id() -> Option<clap::Id> {
        StoreFlags::group_id()
    }

    fn augment_args(command: clap::Command) -> clap::Command {
        StoreFlags::augment_args(command)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        StoreFlags::augment_args_for_update(command)
    }
}

impl FromArgMatches for StoreArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let source = |id: &str| matches.value_source(id);
        let flags = StoreFlags::from_arg_matches(matches)?;
        let database_url = match (source("data_dir"), source("database_url")) {
            (Some(ValueSource::CommandLine), Some(ValueSource::CommandLine)) => {
                return Err(clap::Error::raw(
                    ErrorKind::ArgumentConflict,
                    "--data-dir (SQLite) and --database-url (PostgreSQL) name two stores: pass one",
                ));
            }
            (Some(ValueSource::EnvVariable), Some(ValueSource::EnvVariable)) => {
                return Err(clap::Error::raw(
                    ErrorKind::ArgumentConflict,
                    "GATEHOUSE_DATA_DIR (SQLite) and GATEHOUSE_DATABASE_URL (PostgreSQL) are both set: \
                     unset one, or choose with --data-dir or --database-url",
                ));
            }
            (Some(ValueSource::CommandLine), Some(ValueSource::EnvVariable)) => None,
            _ => flags.database_url,
        };
        Ok(Self {
            data_dir: flags.data_dir,
            database_url,
            db_pool_size: flags.db_pool_size,
            db_statement_timeout: flags.db_statement_timeout,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// Where the SQLite store is when no flag or variable says.
pub const DEFAULT_DATA_DIR: &str = ".gatehouse";
/// Where the control plane listens when no flag or variable says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT, or HOST:PORT for a host name's address (its IPv4 one, if it has one)
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = DEFAULT_LISTEN, value_parser = listen_address)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// Delete completed sessions (and their statements) that ended longer ago than this, e.g.
    /// 90d (at least 1d); off by default
    #[arg(long, value_parser = parse_retention)]
    pub retention: Option<std::time::Duration>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key
    #[arg(long, env = "GATEHOUSE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM); needs --tls-cert
    #[arg(long, env = "GATEHOUSE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only report pending migrations; exit 1 when there are some
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args, Clone)]
pub struct LeaseArgs {
    /// Complete the sessions of a connector process (a run) unheard for this long (e.g. 60s, 5m;
    /// at least 10s); never within this long of the start, or of a failure of the store, which
    /// may have kept heartbeats from being recorded
    #[arg(long, default_value = "60s", value_parser = parse_connector_lease)]
    pub connector_lease: std::time::Duration,
}

/// The shortest `serve --connector-lease`. Connectors heartbeat every sixth of the lease of the
/// control plane they said Hello to, and a live one can go unheard for seconds with nothing
/// failing: a replica that hangs until the connector gives up on it and moves on, a store call
/// waiting up to 5 s for a connection. A shorter lease would take such connectors for gone.
const MIN_CONNECTOR_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

fn parse_connector_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease = parse_duration(text)?;
    if lease < MIN_CONNECTOR_LEASE {
        return Err(format!(
            "{text:?} is too short to be kept: the least is {}s, since a live connector can go unheard for \
             seconds with nothing failing (a replica that hangs until the connector moves on, a store call \
             waiting up to 5s for a connection), and its sessions would be completed",
            MIN_CONNECTOR_LEASE.as_secs()
        ));
    }
    Ok(lease)
}

fn non_empty(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Err("must not be empty".to_owned()),
        _ => Ok(text.to_owned()),
    }
}

/// A resource's name: not one shaped as a resource's id, which a listener or a grant naming
/// it could then mean (ids are looked for first where both are taken, names first elsewhere).
fn resource_name(text: &str) -> Result<String, String> {
    let name = non_empty(text)?;
    match name.trim().to_ascii_lowercase().starts_with("res_") {
        true => Err("must not start with res_, as resource ids do".to_owned()),
        false => Ok(name),
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match gatehouse_query::parse_duration(text).map(FineMicros::floor) {
        Some(us) if us > 0 => Ok(std::time::Duration::from_micros(us as u64)),
        Some(_) => Err(format!("{text:?} is not above zero")),
        None => Err(format!("{text:?} is not a duration such as 30s, 5m, 1h or 7d")),
    }
}

/// `serve --retention`: at least a day. Sessions are an audit trail, and `m` is minutes: a
/// `5m` meant as months would delete nearly every session at once.
fn parse_retention(text: &str) -> Result<std::time::Duration, String> {
    let retention = parse_duration(text)?;
    if retention < std::time::Duration::from_secs(86_400) {
        let months = if text.trim().ends_with('m') { " (m is minutes; 150d is about five months)" } else { "" };
        return Err(format!("{text:?} would delete sessions that soon after they end: the least is 1d{months}"));
    }
    Ok(retention)
}

/// `--since`: a span back from now, in microseconds. A leading `-` (`-1h`) or a trailing `ago`
/// (`1h ago`) means the same. One that reaches back past the year 1 is refused here, as
/// `--from` is, rather than by the control plane in terms of a time nobody typed.
fn parse_since(text: &str) -> Result<Micros, String> {
    let trimmed = text.trim();
    let trimmed = trimmed.strip_suffix("ago").map_or(trimmed, str::trim_end);
    let span = parse_duration(trimmed.strip_prefix('-').unwrap_or(trimmed))?;
    let span = Micros::try_from(span.as_micros()).unwrap_or(Micros::MAX);
    if now_micros().saturating_sub(span) < MIN_TIME {
        return Err(format!("{text:?} reaches back past the year 1"));
    }
    Ok(span)
}

/// `--from` and `--to`: the query language's times, so that a window is written as in a query;
/// taken to the microsecond at or above, as the control plane takes a window's bounds.
fn parse_time(text: &str) -> Result<Micros, String> {
    match gatehouse_query::parse_time(text.trim(), now_micros()).map(FineMicros::ceil) {
        Some(at) if (MIN_TIME..=MAX_TIME).contains(&at) => Ok(at),
        Some(_) => Err(format!("{text:?} is outside the years 1 to 9999")),
        None => Err(format!("{text:?} is not {}", gatehouse_query::TIME_FORMS)),
    }
}

/// `--sort`, checked as the control plane checks `sort_by`, but refused in the CLI's words.
fn parse_sort(text: &str) -> Result<String, String> {
    match gatehouse_server::listing::parse_sort(text) {
        Ok(_) => Ok(text.trim().to_owned()),
        Err(_) => {
            Err(format!("{text:?} is not start_time, end_time or duration, optionally followed by :asc or :desc"))
        }
    }
}

/// The longest overlap of a key rotation, in days (`--overlap`'s help says it too).
const MAX_OVERLAP_DAYS: u64 = 30;

/// A key rotation's overlap: long enough for a rolling restart, not a second key kept for good.
fn parse_overlap(text: &str) -> Result<std::time::Duration, String> {
    let overlap = parse_duration(text)?;
    match overlap > std::time::Duration::from_secs(MAX_OVERLAP_DAYS * 86_400) {
        true => Err(format!("{text:?} is longer than the longest overlap, {MAX_OVERLAP_DAYS}d")),
        false => Ok(overlap),
    }
}

/// `users token create --ttl`: above zero and at most [`MAX_TOKEN_TTL`], told here (exit 2) rather
/// than by the store's check.
///
/// [`MAX_TOKEN_TTL`]: gatehouse_server::identity::MAX_TOKEN_TTL
fn parse_token_ttl(text: &str) -> Result<std::time::Duration, String> {
    let max = gatehouse_server::identity::MAX_TOKEN_TTL;
    let ttl = parse_duration(text)?;
    match ttl > max {
        true => Err(format!("{text:?} is longer than a token may live, {}d", max.as_secs() / 86_400)),
        false => Ok(ttl),
    }
}

fn parse_duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    match text.trim() {
        "0" | "0s" => Ok(std::time::Duration::ZERO),
        _ => parse_duration(text),
    }
}

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// TOML configuration (control plane URL and key, listeners); the
    /// GATEHOUSE_URL, GATEHOUSE_CONNECTOR_KEY, GATEHOUSE_CA_FILE and
    /// GATEHOUSE_CONNECTOR_LISTENERS environment variables override it
    #[arg(long, short, env = "GATEHOUSE_CONNECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Threads that relay traffic. One thread relays tens of thousands of
    /// statements a second and leaves the other cores to the database and
    /// its clients; raise it on a dedicated machine that needs more
    #[arg(long, env = "GATEHOUSE_CONNECTOR_WORKERS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on: IP:PORT, or HOST:PORT for a host name's address (its IPv4 one, if it has one)
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = DEFAULT_LISTEN, value_parser = listen_address)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Fill an empty store with realistic demo sessions
    #[arg(long)]
    pub demo: bool,
    /// How many completed demo sessions to create
    #[arg(long, default_value_t = 40_000, requires = "demo")]
    pub demo_sessions: usize,
    /// The PostgreSQL to put a connector in front of, when one answers there: HOST or HOST:PORT
    /// (port 5432 when left out)
    #[arg(long, value_name = "HOST[:PORT]", default_value = "127.0.0.1:5432", value_parser = database_address)]
    pub upstream: HostPort,
    /// Where the dev connector accepts psql and other clients (IP:PORT or HOST:PORT)
    #[arg(long, default_value = "127.0.0.1:6432", value_parser = listen_address)]
    pub proxy_listen: SocketAddr,
    /// Where the dev connector serves /health and Prometheus /metrics (IP:PORT or HOST:PORT)
    /// [default: 127.0.0.1:6480, or a free port when that one is taken]
    #[arg(long, value_name = "ADDR", value_parser = listen_address)]
    pub proxy_metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub lease: LeaseArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Organization to fill (created if new)
    #[arg(long, default_value = "default", value_parser = non_empty)]
    pub org: String,
    /// Completed sessions to create
    #[arg(long, default_value_t = 40_000)]
    pub sessions: usize,
    /// Active sessions to create
    #[arg(long, default_value_t = 36)]
    pub active: usize,
    /// Spread start times over this many days before now
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Random seed; the same seed gives the same sessions
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it once
    Create {
        /// Organization the key belongs to (created if new)
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// What the key may do
        #[arg(long, value_enum, default_value_t = RoleArg::Reader)]
        role: RoleArg,
        /// A name to recognise the key by
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List an organization's keys: prefixes, names, roles, times; never secrets
    List {
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key at once, by its prefix
    Revoke {
        /// The key's prefix, as `keys list` shows it
        prefix: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResourcesCommand {
    /// Register a database; prints its id
    Create {
        /// Organization the database belongs to (created if new)
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// A unique name, shown in sessions
        #[arg(long, value_parser = resource_name)]
        name: String,
        /// Where the database listens: a host name or an IP address
        #[arg(long, value_parser = host_name)]
        host: String,
        /// Its port
        #[arg(long, default_value_t = 5432, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// What the database is: connectors front PostgreSQL only, so far
        #[arg(long, default_value = "postgres", value_parser = ["postgres"])]
        technology: String,
        /// The native role of identified connections that ask for none
        #[arg(long, value_name = "ROLE")]
        default_role: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List an organization's resources
    List {
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Who may log in as which native role: each resource's default role and grants
    Grants {
        /// One resource, by name or id (default: every resource)
        resource: Option<String>,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Let a user or a group's members use a native role on a resource
    Grant {
        /// The resource's name or id
        resource: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// The database role they may log in as
        #[arg(long)]
        role: String,
        #[command(flatten)]
        to: GrantTarget,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a grant `resources grant` made
    RevokeGrant {
        /// The resource's name or id
        resource: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// The database role the grant names
        #[arg(long)]
        role: String,
        #[command(flatten)]
        to: GrantTarget,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Register a connector; prints its id and its key, once
    Create {
        /// Organization the connector belongs to (created if new)
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// A unique name, shown in sessions
        #[arg(long, value_parser = non_empty)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List an organization's connectors and when each was last heard
    List {
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a connector a new key, printed once; its old key stops working at once, or after
    /// --overlap
    RotateKey {
        /// The connector's name or id, or a key of its own (only its prefix is shown again)
        #[arg(value_parser = non_empty)]
        name: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// Let the old key work on for this long (e.g. 10m, 1h; at most 30d), while the
        /// connector is restarted with the new one; by default it stops at once
        #[arg(long, value_parser = parse_overlap)]
        overlap: Option<std::time::Duration>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Stop a connector's key at once (a leaked key, a retired connector); `rotate-key` gives it a new one
    Revoke {
        /// The connector's name or id, or a key of its own (only its prefix is shown again)
        #[arg(value_parser = non_empty)]
        name: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// List and search sessions, read their transcripts and aggregations
    Reader,
    /// What a reader may, and terminate live sessions
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Reader => Role::Reader,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Control-plane URL (http:// or https://)
    #[arg(long, env = "GATEHOUSE_URL", default_value = "http://127.0.0.1:7400")]
    pub url: String,
    /// Certificate authorities (PEM) an https:// control plane's certificate may be signed by,
    /// besides the Mozilla roots: a private CA
    // Any path, the empty one included: clap's own path parser refuses it with an error about
    // a missing value, confusing for an empty environment variable.
    #[arg(long, env = "GATEHOUSE_CA_FILE", value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    ca_file: Option<PathBuf>,
    /// API key (gh_...): `gatehouse keys create` makes one; `dev` prints one. Better in GATEHOUSE_API_KEY: on the command line, `ps` shows it to every user of the machine
    #[arg(long, env = "GATEHOUSE_API_KEY", hide_env_values = true, default_value = "", hide_default_value = true)]
    pub api_key: String,
    /// Give up on a call to the control plane after this long (e.g. 30s, 2m)
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

impl ApiArgs {
    /// The CA file, if one is named: `GATEHOUSE_CA_FILE=` set empty names none, as unset does.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref().filter(|path| !path.as_os_str().is_empty())
    }
}

/// How `list` commands of the registry print.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    /// A table, its free-text columns (names, emails) cut to fit the terminal
    Table,
    /// One JSON object per line, keyed by the table's column names in snake_case; `json` is an alias
    #[value(alias = "json")]
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// A table fit to the terminal: free text (names, emails, statements) cut, then the least needed columns left out
    Table,
    /// One JSON object per line (the API's JSON form); `json` is an alias
    #[value(alias = "json")]
    Jsonl,
    /// A header row, then one flat row per record (session or statement)
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first
    List(ListArgs),
    /// Follow sessions as they start and end: the active ones first, then a line for each
    /// change, until interrupted
    Watch(WatchArgs),
    /// End a live session now (needs an admin key)
    Terminate {
        /// The session's id (as `sessions list` shows it)
        #[arg(value_parser = non_empty)]
        id: String,
        /// The id of the connector carrying it; looked up when omitted
        #[arg(long, value_parser = non_empty)]
        connector: Option<String>,
        /// How long to wait for the session to be seen ended (0s: not at all). A connector
        /// that is down ends it when it is back, or its lease runs out.
        #[arg(long, default_value = "5s", value_parser = parse_duration_or_zero)]
        wait: std::time::Duration,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print a session's statements, one per line with its time
    Transcript {
        /// The session's id (as `sessions list` shows it)
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List a session's statements with what each did: duration, rows and bytes sent to the
    /// client, the SQLSTATE of an error, and whether it still runs
    Statements {
        /// The session's id (as `sessions list` shows it)
        id: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one session
    Get {
        /// The session's id (as `sessions list` shows it)
        id: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Jsonl)]
        output: OutputFormat,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only sessions this search matches, e.g. 'resource.name:prod' or '-user.type:machine'
    /// (every session when left out)
    #[arg(long, short, default_value = "", hide_default_value = true, allow_hyphen_values = true)]
    pub query: String,
    /// How often to ask the control plane what changed
    #[arg(long, default_value = "2s", value_parser = parse_watch_interval)]
    pub interval: std::time::Duration,
    /// Output format: a line per change, or one JSON object per line
    /// (`{"event": "started", "session": {...}}`)
    #[arg(long, short, value_enum, default_value_t = WatchFormat::Lines)]
    pub output: WatchFormat,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum WatchFormat {
    /// A line per change: time, what happened, the session's id, who, where
    Lines,
    /// One JSON object per line: the event and the session in the API's JSON form; `json` is
    /// an alias
    #[value(alias = "json")]
    Jsonl,
}

/// `watch --interval`: at least a tenth of a second, since each poll lists what changed.
fn parse_watch_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = parse_duration(text)?;
    if interval < std::time::Duration::from_millis(100) {
        return Err(format!("{text:?} is shorter than the shortest interval, 100ms"));
    }
    Ok(interval)
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Search query, e.g. 'user.email:alice.smith@example.com AND technology:postgres' or
    /// '-technology:postgres' (NOT); every session when left out
    #[arg(long, short, default_value = "", hide_default_value = true, allow_hyphen_values = true)]
    pub query: String,
    /// Only sessions overlapping the last DURATION (e.g. 15m, 24h, 7d; "-24h" and "24h ago" mean 24h too)
    #[arg(long, value_name = "DURATION", value_parser = parse_since, allow_hyphen_values = true)]
    #[arg(conflicts_with_all = ["from", "to"])]
    pub since: Option<Micros>,
    /// Window start: RFC 3339, a date (2024-01-31, midnight UTC) or now-24h, as in queries
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<Micros>,
    /// Window end: RFC 3339, a date (2024-01-31, midnight UTC) or now-24h, as in queries
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<Micros>,
    /// Sort: start_time, end_time or duration, optionally followed by :asc or :desc
    #[arg(long, default_value = "start_time:desc", value_parser = parse_sort)]
    pub sort: String,
    /// Sessions per page (1 to 100000)
    // Negative numbers are read as values, so that `--limit -1` hears what the range is rather
    // than that `-1` is an unknown option.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    #[arg(value_parser = clap::value_parser!(i32).range(1..=i64::from(gatehouse_server::listing::MAX_LIMIT)))]
    pub limit: i32,
    /// Walk every page, not just the first. jsonl and csv stream page by page; a table is held
    /// until the last page is in (its columns fit every row), so use them for large exports
    #[arg(long)]
    pub all: bool,
    /// Output format
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a human (--email) or a machine (--machine); prints its id
    #[command(group(clap::ArgGroup::new("who").required(true).args(["email", "machine"])))]
    Create {
        /// Organization the user belongs to (created if new)
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// A person, by email (how they connect: idp:formal:human:<email>)
        #[arg(long)]
        email: Option<String>,
        /// A person's display name
        #[arg(long, requires = "email")]
        name: Option<String>,
        /// A machine, by name (how it connects: idp:formal:machine:<name>)
        #[arg(long, value_name = "NAME")]
        machine: Option<String>,
        /// A group the user belongs to; repeat for several
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// An id of the user elsewhere (an IdP subject, an employee number); repeat for several
        #[arg(long = "external-id", value_name = "ID")]
        external_ids: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List an organization's users, their groups and status
    List {
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a user's name, groups, external ids or status
    #[command(group(
        clap::ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["name", "add_groups", "remove_groups", "add_external_ids", "remove_external_ids", "enable", "disable"])
    ))]
    Update {
        /// An email or a machine name
        user: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// A new display name (an empty one clears it)
        #[arg(long)]
        name: Option<String>,
        /// Add a group; repeat for several
        #[arg(long = "add-group", value_name = "GROUP")]
        add_groups: Vec<String>,
        /// Remove a group; repeat for several
        #[arg(long = "remove-group", value_name = "GROUP")]
        remove_groups: Vec<String>,
        /// Add an external id; repeat for several
        #[arg(long = "add-external-id", value_name = "ID")]
        add_external_ids: Vec<String>,
        /// Remove an external id; repeat for several
        #[arg(long = "remove-external-id", value_name = "ID")]
        remove_external_ids: Vec<String>,
        /// Let the user connect again
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Refuse the user's connections from now on (their tokens stay, unusable)
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Refuse a user's connections from now on (connectors notice within 10 s)
    Disable {
        /// An email or a machine name
        user: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Issue, list and revoke a user's access tokens (their connection passwords)
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print it once, with its expiry
    Create {
        /// An email or a machine name
        user: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// How long the token works, e.g. 12h, 7d (at most 366d)
        #[arg(long, value_parser = parse_token_ttl)]
        ttl: std::time::Duration,
        /// A name to recognise the token by
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a user's tokens: prefixes, names, times and status; never secrets
    List {
        /// An email or a machine name
        user: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        /// Output format
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token, by its prefix (connectors notice within 10 s)
    Revoke {
        /// The token's prefix, as `users token list` shows it
        prefix: String,
        /// The organization
        #[arg(long, value_parser = non_empty)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Who a native role is granted to.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct GrantTarget {
    /// A user, by email or machine name
    #[arg(long)]
    pub user: Option<String>,
    /// Every member of a group
    #[arg(long)]
    pub group: Option<String>,
}

/// An `apply` file, for `apply --help`.
const APPLY_EXAMPLE: &str = "Example (gatehouse apply -f access.yaml --org acme):

  users:
    - email: alice@example.com
      name: Alice
      groups: [dba, sre]
      external_ids: [\"okta|00u1\"]
    - machine: etl-nightly
      groups: [etl]
      disabled: false
  resources:
    - name: orders-db            # registered with `gatehouse resources create`
      default_role: app_ro       # for everyone in the organization; \"\" removes it
      grants:
        - { role: app_rw, group: dba }
        - { role: admin, user: alice@example.com }";

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The YAML file: `users:` (email or machine, name, groups, external_ids,
    /// disabled) and `resources:` (name, default_role, grants of role to user or
    /// group). Fields left out are left alone; listed groups, external ids and
    /// grants are made exactly so. Users and resources not in the file are kept.
    /// `-` reads standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// The organization (created if new, once the whole file is checked and has something to apply)
    #[arg(long, value_parser = non_empty)]
    pub org: String,
    /// Print what would change, and change nothing: the store must exist and be up to date
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use clap::error::ErrorKind;

    use super::*;

    fn list(args: &[&str]) -> Result<ListArgs, clap::Error> {
        let argv = ["gatehouse", "sessions", "list"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Sessions(SessionsCommand::List(list)) => Ok(list),
            other => panic!("parsed as {other:?}"),
        }
    }

    const HOUR: Micros = 3_600_000_000;

    #[test]
    fn since_takes_a_span_with_or_without_a_minus() {
        assert_eq!(list(&["--since", "1h"]).unwrap().since, Some(HOUR));
        assert_eq!(list(&["--since", "-1h"]).unwrap().since, Some(HOUR));
        assert_eq!(list(&["--since=-90m"]).unwrap().since, Some(3 * HOUR / 2));
        assert_eq!(list(&["--since", "24h ago"]).unwrap().since, Some(24 * HOUR));
        let error = list(&["--since", "1000000d"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("\"1000000d\" reaches back past the year 1"), "{error}");
        let error = list(&["--since", "-soon"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("\"soon\" is not a duration"), "{error}");
    }

    #[test]
    fn help_says_which_organizations_are_created_and_the_longest_overlap() {
        let help = |path: &[&str]| {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut sub = &mut command;
            for name in path {
                sub = sub.find_subcommand_mut(name).unwrap();
            }
            sub.render_long_help().to_string()
        };
        for path in [
            &["keys", "create"][..],
            &["users", "create"],
            &["resources", "create"],
            &["connectors", "create"],
            &["seed"],
        ] {
            assert!(help(path).contains("(created if new)"), "{path:?}");
        }
        assert!(help(&["connectors", "rotate-key"]).contains(&format!("at most {MAX_OVERLAP_DAYS}d")));
    }

    #[test]
    fn a_limit_out_of_range_says_what_the_range_is() {
        assert_eq!(list(&["--limit", "100000"]).unwrap().limit, 100_000);
        for limit in ["-1", "0", "100001"] {
            let error = list(&["--limit", limit]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{limit}: {error}");
            assert!(error.to_string().contains("1..=100000"), "{error}");
        }
    }

    #[test]
    fn from_and_to_take_the_times_queries_take() {
        let window = list(&["--from", "2026-11-20", "--to", "2026-11-20T12:00:00+02:00"]).unwrap();
        assert_eq!(window.from, Some(1_795_132_800_000_000));
        assert_eq!(window.to, Some(1_795_132_800_000_000 + 10 * HOUR));
        let relative = list(&["--from", "now-2h"]).unwrap().from.unwrap();
        assert!(relative < now_micros() - HOUR, "{relative}");
        let error = list(&["--from", "yesterday"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("a date such as 2024-01-01"), "{error}");
        assert!(list(&["--from", "2026-11-20", "--since", "1h"]).is_err());
    }
}
