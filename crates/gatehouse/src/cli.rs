//! Command-line definitions (clap derive). Values are checked here; the
//! commands receive typed arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gatehouse_core::Role;

#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about = "Know and control who touches production data", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    /// Fill a store with synthetic sessions, for demos and benchmarks
    Seed(SeedArgs),
    /// Apply the store's pending schema migrations (or --check for them)
    Migrate(MigrateArgs),
}

#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Directory holding the embedded SQLite database
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = ".gatehouse")]
    pub data_dir: PathBuf,
    /// Use PostgreSQL instead of SQLite (postgres://user:password@host:port/database)
    #[arg(long, env = "GATEHOUSE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL connections this process keeps at most
    #[arg(long, default_value_t = 16)]
    pub db_pool_size: u32,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// Delete completed sessions (and their statements) older than this, e.g. 90d; off by default
    #[arg(long, value_parser = parse_duration)]
    pub retention: Option<std::time::Duration>,
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
    /// Complete the sessions of a connector unheard for this long (e.g. 60s, 5m)
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub connector_lease: std::time::Duration,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    gatehouse_query::parse_duration(text)
        .filter(|us| *us > 0)
        .map(|us| std::time::Duration::from_micros(us as u64))
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 5m or 1h"))
}

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// TOML configuration (control plane URL and key, listeners); the
    /// GATEHOUSE_URL, GATEHOUSE_CONNECTOR_KEY and GATEHOUSE_CONNECTOR_LISTENERS
    /// environment variables override it
    #[arg(long, short, env = "GATEHOUSE_CONNECTOR_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Fill an empty store with realistic demo sessions
    #[arg(long)]
    pub demo: bool,
    /// How many completed demo sessions to create
    #[arg(long, default_value_t = 40_000, requires = "demo")]
    pub demo_sessions: usize,
    /// The PostgreSQL to put a connector in front of, when one answers there
    #[arg(long, default_value = "127.0.0.1:5432")]
    pub upstream: String,
    /// Where the dev connector accepts psql and other clients
    #[arg(long, default_value = "127.0.0.1:6432")]
    pub proxy_listen: SocketAddr,
    #[command(flatten)]
    pub lease: LeaseArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Organization to fill
    #[arg(long, default_value = "default")]
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
        #[arg(long)]
        org: String,
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
        #[arg(long)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key at once, by its prefix
    Revoke {
        /// The key's prefix, as `keys list` shows it
        prefix: String,
        #[arg(long)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResourcesCommand {
    /// Register a database; prints its id
    Create {
        #[arg(long)]
        org: String,
        /// A unique name, shown in sessions
        #[arg(long)]
        name: String,
        /// Where the database listens
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 5432)]
        port: u16,
        #[arg(long, default_value = "postgres")]
        technology: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List an organization's resources
    List {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Register a connector; prints its id and its key, once
    Create {
        #[arg(long)]
        org: String,
        /// A unique name, shown in sessions
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List an organization's connectors and when each was last heard
    List {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Reader,
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
    /// Control-plane URL
    #[arg(long, env = "GATEHOUSE_URL", default_value = "http://127.0.0.1:7400")]
    pub url: String,
    /// API key
    #[arg(long, env = "GATEHOUSE_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// A table that fits the terminal
    Table,
    /// One JSON object per line (the API's JSON form)
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first
    List(ListArgs),
    /// End a live session now (needs an admin key)
    Terminate {
        id: String,
        /// The connector carrying it; looked up when omitted
        #[arg(long)]
        connector: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print a session's statements, one per line with its time
    Transcript {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one session
    Get {
        id: String,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Json)]
        output: OutputFormat,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Search query, e.g. 'user.email:alice@example.com AND technology:postgres'
    #[arg(long, short, default_value = "")]
    pub query: String,
    /// Only sessions overlapping the last DURATION (e.g. 15m, 24h, 7d)
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// Window start (RFC 3339)
    #[arg(long)]
    pub from: Option<String>,
    /// Window end (RFC 3339)
    #[arg(long)]
    pub to: Option<String>,
    /// Sort: start_time, end_time or duration, optionally :asc or :desc
    #[arg(long, default_value = "start_time:desc")]
    pub sort: String,
    /// Sessions per page (1 to 100000)
    #[arg(long, default_value_t = 100)]
    pub limit: i32,
    /// Walk every page, not just the first
    #[arg(long)]
    pub all: bool,
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub api: ApiArgs,
}
