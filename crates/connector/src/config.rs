//! Connector configuration: a TOML file, with environment overrides.
//!
//! ```toml
//! [control_plane]
//! url = "http://127.0.0.1:7400"  # or GATEHOUSE_URL; https:// too; replicas: "http://a:7400, http://b:7400"
//! key = "gh_..."                 # or GATEHOUSE_CONNECTOR_KEY
//! ca_file = "/etc/gatehouse/ca.pem"  # or GATEHOUSE_CA_FILE: a private CA for https://
//!
//! [[listeners]]                  # or GATEHOUSE_CONNECTOR_LISTENERS=127.0.0.1:6432=res_...[@host:port],...
//! listen = "127.0.0.1:6432"
//! resource = "res_..."           # a resource's id from `gatehouse resources create`, or its name
//! require_identity = false       # refuse user names other than idp:formal:...
//! upstream_tls = "disable"       # or "require", or "verify-full" with upstream_ca_file
//!
//! [identity]
//! require_tls = true             # refuse identity logins (token as password) without TLS;
//!                                # unset: those from another host, when [tls] is set
//!
//! [[credentials]]                # a native role the connector logs in as
//! resource = "res_..."           # optional: every resource when absent
//! role = "analyst"
//! password_env = "ANALYST_PASSWORD"   # or password = "...", or password_file = "/path"
//!
//! peer_id = 1                    # connectors behind one address (a load balancer): each a
//! [[peers]]                      # number of its own, and where the others accept clients,
//! id = 2                         # so that a cancel reaching the wrong one is passed on
//! address = "10.0.0.12:6432"
//! ```
//!
//! [`Config::load`] reads the file (if any), then applies the environment,
//! then checks the result. Relative paths are relative to the working
//! directory. At SIGHUP the connector reads the file again for the native roles'
//! passwords (and its TLS certificate's files); the rest takes a restart.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::proxy::TlsForIdentity;

/// Control plane URL (`control_plane.url`).
pub const ENV_URL: &str = "GATEHOUSE_URL";
/// Connector key (`control_plane.key`).
pub const ENV_KEY: &str = "GATEHOUSE_CONNECTOR_KEY";
/// `control_plane.ca_file`.
pub const ENV_CA_FILE: &str = "GATEHOUSE_CA_FILE";
/// Listeners, replacing the file's: `addr=resource[@host:port],...`.
pub const ENV_LISTENERS: &str = "GATEHOUSE_CONNECTOR_LISTENERS";
/// `admin_listen`.
pub const ENV_ADMIN_LISTEN: &str = "GATEHOUSE_CONNECTOR_ADMIN_LISTEN";
/// `state_dir`.
pub const ENV_STATE_DIR: &str = "GATEHOUSE_CONNECTOR_STATE_DIR";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub control_plane: ControlPlane,
    /// Ports to accept clients on, each in front of one resource.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Serves `/health` and `/metrics`. Default 127.0.0.1:8080.
    #[serde(default = "Config::default_admin_listen", deserialize_with = "deserialize_address")]
    pub admin_listen: SocketAddr,
    /// Holds the spool and the last known resources. Default `.gatehouse-connector`.
    #[serde(default = "Config::default_state_dir")]
    pub state_dir: PathBuf,
    /// The spool's size limit in bytes; it grows past it by its reserve at most (a tenth, at
    /// least 64 KiB). Default 256 MiB.
    #[serde(default = "Config::default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// With a full spool, let sessions through with their statements unaudited (counting
    /// dropped events; starts and ends are still kept within the reserve) instead of refusing
    /// new connections and ending the open ones. Default false.
    #[serde(default)]
    pub fail_open: bool,
    /// On SIGTERM, how long open sessions may go on, while new clients are refused, before
    /// they are ended: what a rolling restart wants. Default 0: ended at once.
    #[serde(default)]
    pub shutdown_drain_seconds: u64,
    /// TLS offered to clients that send SSLRequest; without it they get `N`.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Identity logins (`idp:formal:human:<email>`, `idp:formal:machine:<name>`).
    #[serde(default)]
    pub identity: Identity,
    /// Passwords of the native roles the connector logs in as after an identity login.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// This connector's number (1 to 255) among connectors that clients reach at one address
    /// (a load balancer): the cancel keys it gives clients carry it, so that the others pass
    /// a cancel for its sessions to it. A client sends its cancel on a new connection, which
    /// the load balancer may send to any of them.
    #[serde(default)]
    pub peer_id: Option<u8>,
    /// The other connectors of the group: where each accepts clients.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// The file this was read from, read again at SIGHUP.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The addresses of the configuration file's `[[listeners]]` when
    /// `GATEHOUSE_CONNECTOR_LISTENERS` replaced them with others: the connector says so at
    /// start, as it does of `GATEHOUSE_URL` (see [`ControlPlane::url_from_file`]).
    #[serde(skip)]
    pub listeners_from_file: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Refuse identity logins over connections without TLS, since their password is an
    /// access token: `true` for all, `false` for none. Unset, those from another host when
    /// the connector has a certificate (see [`Config::tls_for_identity`]).
    #[serde(default)]
    pub require_tls: Option<bool>,
}

/// A secret from the configuration: never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, to use it; never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The password of a native role, from the file itself, an environment variable, or a file
/// (read at startup and at each SIGHUP). Stays on the connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The resource id; absent: every resource.
    #[serde(default)]
    pub resource: Option<String>,
    /// The native role.
    pub role: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// The password, resolved by [`Config::load`].
    #[serde(skip)]
    pub secret: Secret,
}

impl Credential {
    /// A credential with its password given directly (tests, embedding).
    pub fn new(resource: Option<&str>, role: &str, password: &str) -> Self {
        Self {
            resource: resource.map(Into::into),
            role: role.to_owned(),
            password: None,
            password_env: None,
            password_file: None,
            secret: Secret::new(password),
        }
    }
}

/// How the connector talks to the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS, without checking the certificate (libpq's `sslmode=require`).
    Require,
    /// TLS with the certificate checked against `upstream_ca_file` and the host name.
    VerifyFull,
}

/// The addresses in a `url` setting, as compared: spaces around the commas do not count.
fn urls(setting: &str) -> Vec<&str> {
    setting.split(',').map(str::trim).collect()
}

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// `http://host:port` of the control plane. Required. Several, separated by commas, for
    /// replicas: calls go to the first that can be reached.
    #[serde(default)]
    pub url: String,
    /// The connector key printed by `gatehouse connectors create`. Required.
    #[serde(default)]
    pub key: String,
    /// Certificate authorities (PEM) an `https://` control plane's certificate may be signed
    /// by, besides the Mozilla roots: a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The configuration file's `url` when `GATEHOUSE_URL` replaced it with another: the
    /// connector says so at start. The CLI's `sessions` commands read the same variable, so a
    /// shell set up for them would otherwise point a connector started from it at one replica
    /// without a word.
    #[serde(skip)]
    pub url_from_file: Option<String>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("ControlPlane")
            .field("url", &self.url)
            .field("key", &key)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    #[serde(deserialize_with = "deserialize_address")]
    pub listen: SocketAddr,
    /// The resource this port fronts: its id, or its name when no other resource has it.
    pub resource: String,
    /// `host:port` of the database, overriding the resource's registered address.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Refuse user names that are not identities (`idp:formal:...`). Default false.
    #[serde(default)]
    pub require_identity: bool,
    /// TLS to the database. Default `disable`.
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// PEM CA certificates for `upstream_tls = "verify-full"`.
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
}

impl Listener {
    /// A listener with the defaults (tests, the environment variable).
    pub fn new(listen: SocketAddr, resource: &str, upstream: Option<&str>) -> Self {
        Self {
            listen,
            resource: resource.to_owned(),
            upstream: upstream.map(Into::into),
            require_identity: false,
            upstream_tls: UpstreamTls::Disable,
            upstream_ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Another connector behind the same address as this one (see [`Config::peer_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its `peer_id`.
    pub id: u8,
    /// `host:port` of one of its listeners (any: a cancel names its session by its key).
    pub address: String,
}

/// Why a configuration cannot be used. Each names the file or variable and
/// the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The TOML parser's message and where, never the text there: the line
    /// may hold a key or a password.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error(
        "no configuration: pass --config FILE (TOML: `[control_plane]` with `url` and `key`, and \
         `[[listeners]]` with `listen` and `resource`), or set GATEHOUSE_URL, GATEHOUSE_CONNECTOR_KEY \
         and GATEHOUSE_CONNECTOR_LISTENERS"
    )]
    Nothing,
    #[error("{source_name}: {field} is not set ({hint})")]
    Missing { source_name: String, field: &'static str, hint: &'static str },
    #[error("{source_name}: {field}: {message}")]
    Invalid { source_name: String, field: String, message: String },
}

impl Config {
    /// Reads `path` (TOML) if given, applies the environment overrides
    /// ([`ENV_URL`], [`ENV_KEY`], [`ENV_LISTENERS`], [`ENV_ADMIN_LISTEN`],
    /// [`ENV_STATE_DIR`]; an empty variable counts as unset), and checks the result.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file or variable and the field.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment given as a lookup function (tests
    /// pass a map instead of changing the process environment).
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_with_env(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config: Config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                let config: Config = toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: parse_message(&text, &e) })?;
                config.warn_if_others_may_read(path);
                config
            }
            None => toml::from_str("").expect("every field has a default"),
        };
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if path.is_none() && [ENV_URL, ENV_KEY, ENV_LISTENERS].iter().all(|name| env(name).is_none()) {
            return Err(ConfigError::Nothing);
        }
        if let Some(url) = env(ENV_URL) {
            let url = url.trim().to_owned();
            let file = std::mem::replace(&mut config.control_plane.url, url);
            if !file.is_empty() && urls(&file) != urls(&config.control_plane.url) {
                config.control_plane.url_from_file = Some(file);
            }
        }
        if let Some(key) = env(ENV_KEY) {
            config.control_plane.key = key.trim().to_owned();
        }
        if let Some(ca_file) = env(ENV_CA_FILE) {
            config.control_plane.ca_file = Some(PathBuf::from(ca_file.trim()));
        }
        if let Some(listeners) = env(ENV_LISTENERS) {
            let file = std::mem::replace(&mut config.listeners, parse_listeners(&listeners)?);
            if file != config.listeners {
                config.listeners_from_file = file.iter().map(|listener| listener.listen).collect();
            }
        }
        if let Some(addr) = env(ENV_ADMIN_LISTEN) {
            config.admin_listen =
                socket_address(&addr).map_err(|message| ConfigError::Env { var: ENV_ADMIN_LISTEN, message })?;
        }
        if let Some(dir) = env(ENV_STATE_DIR) {
            config.state_dir = PathBuf::from(dir);
        }
        for (i, credential) in config.credentials.iter_mut().enumerate() {
            credential.secret = resolve_secret(credential, &env).map_err(|message| ConfigError::Invalid {
                source_name: path
                    .map_or_else(|| "configuration".to_owned(), |p| format!("config file {}", p.display())),
                field: format!("credentials[{i}]"),
                message,
            })?;
        }
        config.check(&path.map_or_else(|| "configuration".to_owned(), |p| format!("config file {}", p.display())))?;
        config.source = path.map(Path::to_owned);
        Ok(config)
    }

    /// The settings that differ in `newer`, of those read only at start: all but the native
    /// roles' passwords (and the TLS certificate's files, read again where they are).
    pub fn restart_only_changes(&self, newer: &Config) -> Vec<&'static str> {
        [
            ("control_plane", self.control_plane == newer.control_plane),
            ("listeners", self.listeners == newer.listeners),
            ("admin_listen", self.admin_listen == newer.admin_listen),
            ("state_dir", self.state_dir == newer.state_dir),
            ("spool_max_bytes", self.spool_max_bytes == newer.spool_max_bytes),
            ("fail_open", self.fail_open == newer.fail_open),
            ("shutdown_drain_seconds", self.shutdown_drain_seconds == newer.shutdown_drain_seconds),
            ("tls", self.tls == newer.tls),
            ("identity", self.identity == newer.identity),
            ("peer_id", self.peer_id == newer.peer_id),
            ("peers", self.peers == newer.peers),
        ]
        .into_iter()
        .filter_map(|(name, same)| (!same).then_some(name))
        .collect()
    }

    /// Warns when the file at `path`, which this configuration was read from, holds a secret
    /// (the connector key, a password) and others than its owner may read it, as ssh does of
    /// a private key: it is a mistake, but one the connector can still run with.
    fn warn_if_others_may_read(&self, path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
            if self.exposes_secrets(mode) {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the config file holds a key or a password and others than its owner may read it: chmod 600 it",
                );
            }
        }
    }

    /// Whether a file of this configuration with permissions `mode` lets others than its owner
    /// read a secret.
    fn exposes_secrets(&self, mode: u32) -> bool {
        let holds_secret = !self.control_plane.key.is_empty() || self.credentials.iter().any(|c| c.password.is_some());
        holds_secret && mode & 0o077 != 0
    }

    /// The checks [`Config::load`] makes once the sources are merged.
    fn check(&self, source_name: &str) -> Result<(), ConfigError> {
        let missing = |field, hint| ConfigError::Missing { source_name: source_name.to_owned(), field, hint };
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            source_name: source_name.to_owned(),
            field: field.to_owned(),
            message,
        };
        if self.control_plane.url.is_empty() {
            return Err(missing("control_plane.url", "or GATEHOUSE_URL"));
        }
        for url in self.control_plane.url.split(',').map(str::trim) {
            let shown = gatehouse_tls::shown_url(url);
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(invalid("control_plane.url", format!("`{shown}` is not an http:// or https:// URL")));
            }
            // The key is what authenticates: a password in the URL would go nowhere but the log.
            if shown != url.split(['?', '#']).next().unwrap_or(url) {
                return Err(invalid(
                    "control_plane.url",
                    format!(
                        "`{shown}` is written with a user name and password: remove them (control_plane.key authenticates the connector)"
                    ),
                ));
            }
        }
        if self.control_plane.key.is_empty() {
            return Err(missing("control_plane.key", "or GATEHOUSE_CONNECTOR_KEY"));
        }
        if self.listeners.is_empty() {
            return Err(missing("listeners", "add [[listeners]] or set GATEHOUSE_CONNECTOR_LISTENERS"));
        }
        let mut seen = HashSet::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.resource.trim().is_empty() {
                return Err(invalid(&format!("listeners[{i}].resource"), "is empty".into()));
            }
            if !seen.insert(listener.listen) {
                return Err(invalid(&format!("listeners[{i}].listen"), format!("{} is listed twice", listener.listen)));
            }
            if let Some(upstream) = &listener.upstream {
                check_host_port(upstream).map_err(|m| invalid(&format!("listeners[{i}].upstream"), m))?;
            }
            if listener.upstream_tls == UpstreamTls::VerifyFull && listener.upstream_ca_file.is_none() {
                return Err(invalid(
                    &format!("listeners[{i}].upstream_ca_file"),
                    "is required with upstream_tls = \"verify-full\"".into(),
                ));
            }
        }
        if self.identity.require_tls == Some(true) && self.tls.is_none() {
            return Err(invalid(
                "identity.require_tls",
                "needs a [tls] section: without a certificate no client can connect with TLS".into(),
            ));
        }
        let mut roles = HashSet::new();
        for (i, credential) in self.credentials.iter().enumerate() {
            if credential.role.trim().is_empty() {
                return Err(invalid(&format!("credentials[{i}].role"), "is empty".into()));
            }
            if !roles.insert((credential.resource.clone(), credential.role.clone())) {
                return Err(invalid(
                    &format!("credentials[{i}]"),
                    format!("role `{}` is listed twice", credential.role),
                ));
            }
        }
        if self.spool_max_bytes == 0 {
            return Err(invalid("spool_max_bytes", "must be above 0".into()));
        }
        if self.peer_id == Some(0) {
            return Err(invalid("peer_id", "must be 1 to 255".into()));
        }
        let mut ids = HashSet::from([self.peer_id]);
        for (i, peer) in self.peers.iter().enumerate() {
            let Some(own) = self.peer_id else {
                return Err(invalid(
                    "peer_id",
                    "must be set with [[peers]]: this connector's own number, 1 to 255".into(),
                ));
            };
            match peer.id {
                0 => return Err(invalid(&format!("peers[{i}].id"), "must be 1 to 255".into())),
                id if id == own => {
                    return Err(invalid(&format!("peers[{i}].id"), format!("{id} is this connector's own peer_id")));
                }
                id if !ids.insert(Some(id)) => {
                    return Err(invalid(&format!("peers[{i}].id"), format!("{id} is listed twice")));
                }
                _ => {}
            }
            check_host_port(&peer.address).map_err(|m| invalid(&format!("peers[{i}].address"), m))?;
        }
        Ok(())
    }

    /// Which identity logins must come over TLS: as `identity.require_tls` says, or when it
    /// does not, those from another host if clients can have TLS at all.
    pub fn tls_for_identity(&self) -> TlsForIdentity {
        match (self.identity.require_tls, &self.tls) {
            (Some(true), _) => TlsForIdentity::Always,
            (Some(false), _) | (None, None) => TlsForIdentity::Never,
            (None, Some(_)) => TlsForIdentity::OffHost,
        }
    }

    fn default_admin_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    fn default_state_dir() -> PathBuf {
        PathBuf::from(".gatehouse-connector")
    }

    fn default_spool_max_bytes() -> u64 {
        256 * 1024 * 1024
    }
}

/// Exactly one of `password`, `password_env` (read through `env`) and `password_file` (its
/// first line, so a trailing newline does not count).
fn resolve_secret(credential: &Credential, env: &impl Fn(&str) -> Option<String>) -> Result<Secret, String> {
    match (&credential.password, &credential.password_env, &credential.password_file) {
        (Some(password), None, None) => Ok(password.clone()),
        (None, Some(var), None) => {
            env(var).map(Secret).ok_or_else(|| format!("password_env: environment variable {var} is not set"))
        }
        (None, None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("password_file: cannot read {}: {e}", file.display()))?;
            Ok(Secret(text.lines().next().unwrap_or_default().to_owned()))
        }
        (None, None, None) => Err("set one of password, password_env or password_file".into()),
        _ => Err("set only one of password, password_env or password_file".into()),
    }
}

/// `127.0.0.1:6432=res_x,127.0.0.1:6433=res_y@db.internal:5432`.
fn parse_listeners(value: &str) -> Result<Vec<Listener>, ConfigError> {
    let error = |message: String| ConfigError::Env { var: ENV_LISTENERS, message };
    let mut listeners = Vec::new();
    for item in value.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (listen, target) = item
            .split_once('=')
            .ok_or_else(|| error(format!("`{item}`: expected listen_address=resource_id[@host:port]")))?;
        let listen = socket_address(listen).map_err(|message| error(format!("`{item}`: {message}")))?;
        let (resource, upstream) = match target.split_once('@') {
            Some((resource, upstream)) => {
                check_host_port(upstream.trim()).map_err(|m| error(format!("`{item}`: upstream {m}")))?;
                (resource, Some(upstream.trim().to_owned()))
            }
            None => (target, None),
        };
        let resource = resource.trim();
        if resource.is_empty() {
            return Err(error(format!("`{item}`: no resource id")));
        }
        listeners.push(Listener { upstream, ..Listener::new(listen, resource, None) });
    }
    if listeners.is_empty() {
        return Err(error("no listeners in it".into()));
    }
    Ok(listeners)
}

/// An address to listen on: an IP address and a port (`127.0.0.1:6432`, `[::1]:6432`). A host
/// name is refused with what to write rather than std's "invalid socket address syntax": a
/// name may stand for several addresses, and the connector listens on one.
fn socket_address(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("`{}` is not an IP address and port: write one, e.g. 127.0.0.1:6432 ([::1]:6432 for IPv6)", text.trim())
    })
}

/// [`socket_address`], for serde.
fn deserialize_address<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    socket_address(&text).map_err(serde::de::Error::custom)
}

/// `host:port` or `[v6]:port`, with a port number.
fn check_host_port(value: &str) -> Result<(), String> {
    let bad = || format!("`{value}` is not host:port");
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("`{value}`: an IPv6 host needs brackets, as in [::1]:5432"));
    }
    Ok(())
}

/// The settings of the file's top level, before its first `[section]`.
const TOP_LEVEL: [&str; 6] =
    ["admin_listen", "state_dir", "spool_max_bytes", "fail_open", "shutdown_drain_seconds", "peer_id"];

/// Where the TOML parser stopped and why, without quoting the file: the line may hold a
/// secret (a mistyped `password` field, a key left unquoted).
fn parse_message(text: &str, error: &toml::de::Error) -> String {
    let mut message = error.message().trim_end().replace('\n', " ");
    // A top-level setting written under a section belongs to that section in TOML, which
    // then does not know it: say where it goes.
    let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')).map(|(name, _)| name);
    if let Some(name) = unknown.filter(|name| TOP_LEVEL.contains(name)) {
        message = format!(
            "{message} (`{name}` is a top-level setting: in TOML a key belongs to the [section] above it, so put \
             it before the first one)"
        );
    }
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before.len() - line_start + 1;
            // The key is named (a field name is no secret), never the value.
            let key = text[line_start..].split_once('=').map(|(key, _)| key.trim()).filter(|key| {
                !key.is_empty()
                    && key.len() <= 64
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'))
            });
            match key {
                Some(key) => format!("line {line}, column {column}, at `{key}`: {message}"),
                None => format!("line {line}, column {column}: {message}"),
            }
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connector.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_with_env(file.map(|_| path.as_path()), |name| env.get(name).cloned())
    }

    fn error(file: Option<&str>, env: &[(&str, &str)]) -> String {
        load(file, env).unwrap_err().to_string()
    }

    const FILE: &str = r#"
        state_dir = "/var/lib/gh"
        fail_open = true
        shutdown_drain_seconds = 30
        [control_plane]
        url = "http://cp:7400"
        key = "gh_abc_def"
        [[listeners]]
        listen = "127.0.0.1:6432"
        resource = "res_a"
        [[listeners]]
        listen = "127.0.0.1:6433"
        resource = "res_b"
        upstream = "db.internal:5432"
    "#;

    #[test]
    fn parse_errors_say_where_without_quoting_the_line() {
        let message = error(
            Some(&format!("{FILE}\n[[credentials]]\nresource = \"res_a\"\nrole = \"r\"\npasswd = \"LEAKME\"\n")),
            &[],
        );
        assert!(message.contains("line") && message.contains("passwd"), "{message}");
        assert!(!message.contains("LEAKME"), "{message}");
        let message = error(Some("[control_plane]\nkey = gh_secret_value\n"), &[]);
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains("secret_value"), "{message}");
    }

    #[test]
    fn file_with_defaults() {
        let c = load(Some(FILE), &[]).unwrap();
        assert_eq!(c.control_plane.url, "http://cp:7400");
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.listeners[1].upstream.as_deref(), Some("db.internal:5432"));
        assert_eq!(c.admin_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/gh"));
        assert_eq!(c.spool_max_bytes, 256 * 1024 * 1024);
        assert!(c.fail_open);
        assert_eq!(c.shutdown_drain_seconds, 30);
        assert!(c.tls.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load(
            Some(FILE),
            &[
                (ENV_URL, "http://other:1"),
                (ENV_KEY, "gh_k_s"),
                (ENV_LISTENERS, "127.0.0.1:7000=res_x, [::1]:7001=res_y@[::1]:5432"),
                (ENV_ADMIN_LISTEN, "0.0.0.0:9090"),
                (ENV_STATE_DIR, "/tmp/state"),
            ],
        )
        .unwrap();
        assert_eq!((c.control_plane.url.as_str(), c.control_plane.key.as_str()), ("http://other:1", "gh_k_s"));
        assert_eq!(c.control_plane.url_from_file.as_deref(), Some("http://cp:7400"));
        assert_eq!(
            c.listeners,
            [
                Listener::new("127.0.0.1:7000".parse().unwrap(), "res_x", None),
                Listener::new("[::1]:7001".parse().unwrap(), "res_y", Some("[::1]:5432")),
            ]
        );
        assert_eq!(c.admin_listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(c.state_dir, PathBuf::from("/tmp/state"));
        let file_listeners: Vec<SocketAddr> =
            vec!["127.0.0.1:6432".parse().unwrap(), "127.0.0.1:6433".parse().unwrap()];
        assert_eq!(c.listeners_from_file, file_listeners, "remembered, for the warning at start");
        let c = load(None, &[(ENV_URL, "http://cp:1"), (ENV_KEY, "k"), (ENV_LISTENERS, "127.0.0.1:7000=res_x")]);
        assert_eq!(c.unwrap().listeners_from_file, [], "no file, nothing replaced");
    }

    #[test]
    fn environment_alone_is_enough_and_empty_variables_are_unset() {
        let c =
            load(None, &[(ENV_URL, "http://cp:1"), (ENV_KEY, "k"), (ENV_LISTENERS, "127.0.0.1:6432=res_a")]).unwrap();
        assert_eq!(c.listeners[0].resource, "res_a");
        let c = load(Some(FILE), &[(ENV_URL, ""), (ENV_STATE_DIR, " ")]).unwrap();
        assert_eq!(c.control_plane.url, "http://cp:7400");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/gh"));
    }

    #[test]
    fn a_url_from_the_environment_that_replaces_the_files_is_remembered() {
        // The reviewer's stuck connector: two replicas in the file, one in a GATEHOUSE_URL set
        // for the CLI. The connector says so at start.
        let file = FILE.replace("http://cp:7400", "http://a:1, http://b:2");
        let c = load(Some(&file), &[(ENV_URL, "http://a:1")]).unwrap();
        assert_eq!(c.control_plane.url, "http://a:1");
        assert_eq!(c.control_plane.url_from_file.as_deref(), Some("http://a:1, http://b:2"));
        // The same addresses, spaced otherwise: nothing to say.
        let c = load(Some(&file), &[(ENV_URL, "http://a:1,http://b:2")]).unwrap();
        assert_eq!(c.control_plane.url_from_file, None);
        assert_eq!(load(Some(&file), &[]).unwrap().control_plane.url_from_file, None);
    }

    #[test]
    fn a_top_level_setting_in_a_section_is_told_where_it_goes() {
        let values = ["\"127.0.0.1:1\"", "\"/s\"", "1", "true", "1", "1"];
        for (name, value) in TOP_LEVEL.iter().zip(values) {
            // Each is one indeed.
            let _: Config = toml::from_str(&format!("{name} = {value}")).unwrap_or_else(|e| panic!("{name}: {e}"));
            let e = error(Some(&format!("[control_plane]\nurl = \"http://cp\"\n{name} = {value}\n")), &[]);
            assert!(
                e.contains(&format!("line 3, column 1, at `{name}`: unknown field `{name}`"))
                    && e.contains(&format!("(`{name}` is a top-level setting:"))
                    && e.contains("put it before the first one)"),
                "{e}"
            );
        }
        let e = error(Some("[control_plane]\nurl = \"http://cp\"\nkee = \"k\"\n"), &[]);
        assert!(e.contains("unknown field `kee`") && !e.contains("top-level"), "{e}");
    }

    #[test]
    fn file_errors_name_the_file_and_field() {
        let e = error(
            Some("[control_plane]\nurl = \"http://cp\"\nkey = \"k\"\n[[listeners]]\nlisten = \"x\"\nresource = \"r\""),
            &[],
        );
        assert!(e.contains("connector.toml") && e.contains("listen"), "{e}");
        let e = error(Some("[[listeners]]\nlisten = \"localhost:6432\"\nresource = \"r\""), &[]);
        assert!(
            e.contains(
                "line 2, column 10, at `listen`: `localhost:6432` is not an IP address and port: write one, \
                        e.g. 127.0.0.1:6432"
            ) && !e.contains("invalid socket address syntax"),
            "{e}"
        );
        let e = error(Some("admin_listen = \"localhost:8080\""), &[]);
        assert!(e.contains("at `admin_listen`: `localhost:8080` is not an IP address and port"), "{e}");
        let e = error(Some(FILE), &[(ENV_ADMIN_LISTEN, "localhost:8080")]);
        assert!(e.contains("`localhost:8080` is not an IP address and port"), "{e}");
        let e = error(Some("spool_max_byte = 1"), &[]);
        assert!(e.contains("connector.toml") && e.contains("spool_max_byte"), "{e}");
        let e = error(Some("[[listeners]]\nlisten = \"127.0.0.1:1\""), &[]);
        assert!(e.contains("missing field `resource`"), "{e}");
        let missing = tempfile::tempdir().unwrap().path().join("nope.toml");
        let e = Config::load_with_env(Some(&missing), |_| None).unwrap_err().to_string();
        assert!(e.starts_with("cannot read config file") && e.contains("nope.toml"), "{e}");
    }

    #[test]
    fn a_file_with_secrets_should_be_its_owners_only() {
        let with_key: Config = toml::from_str(FILE).unwrap();
        assert!(with_key.exposes_secrets(0o644) && with_key.exposes_secrets(0o640));
        assert!(!with_key.exposes_secrets(0o600));
        let password = "[[credentials]]\nrole = \"r\"\npassword = \"p\"\n";
        assert!(toml::from_str::<Config>(password).unwrap().exposes_secrets(0o644));
        let from_env = "[[credentials]]\nrole = \"r\"\npassword_env = \"P\"\n";
        assert!(!toml::from_str::<Config>(from_env).unwrap().exposes_secrets(0o644));
    }

    #[test]
    fn peers_are_numbered_once_each() {
        let with = |own: &str, peers: &[(&str, &str)]| {
            let peers: String =
                peers.iter().map(|(id, address)| format!("[[peers]]\nid = {id}\naddress = \"{address}\"\n")).collect();
            format!("{own}\n{FILE}\n{peers}")
        };
        let config = load(Some(&with("peer_id = 1", &[("2", "10.0.0.12:6432"), ("3", "edge-3:6432")])), &[]).unwrap();
        assert_eq!(config.peer_id, Some(1));
        assert_eq!(config.peers[1], Peer { id: 3, address: "edge-3:6432".into() });
        assert!(load(Some(FILE), &[]).unwrap().peers.is_empty());

        let e = error(Some(&with("", &[("2", "10.0.0.12:6432")])), &[]);
        assert!(e.contains("peer_id: must be set with [[peers]]"), "{e}");
        let e = error(Some(&with("peer_id = 2", &[("2", "10.0.0.12:6432")])), &[]);
        assert!(e.contains("peers[0].id: 2 is this connector's own peer_id"), "{e}");
        let e = error(Some(&with("peer_id = 1", &[("2", "a:1"), ("2", "b:1")])), &[]);
        assert!(e.contains("peers[1].id: 2 is listed twice"), "{e}");
        let e = error(Some(&with("peer_id = 0", &[])), &[]);
        assert!(e.contains("peer_id: must be 1 to 255"), "{e}");
        let e = error(Some(&with("peer_id = 256", &[])), &[]);
        assert!(e.contains("peer_id"), "{e}");
        let e = error(Some(&with("peer_id = 1", &[("2", "10.0.0.12")])), &[]);
        assert!(e.contains("peers[0].address"), "{e}");
    }

    #[test]
    fn merged_config_is_checked() {
        let e = error(None, &[]);
        assert!(e.starts_with("no configuration: pass --config FILE"), "{e}");
        let e = error(None, &[(ENV_KEY, "k")]);
        assert_eq!(e, "configuration: control_plane.url is not set (or GATEHOUSE_URL)");
        let e = error(Some(FILE), &[(ENV_URL, "cp:7400")]);
        assert!(e.contains("control_plane.url") && e.contains("cp:7400"), "{e}");
        // Replicas: each address is checked.
        let e = error(Some(FILE), &[(ENV_URL, "http://a:7400, b:7400")]);
        assert!(e.contains("`b:7400` is not an http"), "{e}");
        // A password in the URL authenticates nothing, and is never repeated.
        let e = error(Some(FILE), &[(ENV_URL, "http://a:7400, https://u:URLPW77@b:7400/cp")]);
        assert!(e.contains("`https://b:7400/cp` is written with a user name and password"), "{e}");
        assert!(!e.contains("URLPW77"), "{e}");
        let e = error(Some(FILE), &[(ENV_URL, "ftp://u:URLPW78@b")]);
        assert!(e.contains("`ftp://b` is not an http") && !e.contains("URLPW78"), "{e}");
        let e = error(
            Some("[control_plane]\nurl = \"http://cp\"\n[[listeners]]\nlisten = \"127.0.0.1:1\"\nresource = \"r\""),
            &[],
        );
        assert!(e.contains("connector.toml") && e.contains("control_plane.key is not set"), "{e}");
        let e = error(None, &[(ENV_URL, "http://cp"), (ENV_KEY, "k")]);
        assert!(e.contains("listeners is not set"), "{e}");
        let e = error(Some(FILE), &[(ENV_LISTENERS, "127.0.0.1:1=a,127.0.0.1:1=b")]);
        assert!(e.contains("listeners[1].listen") && e.contains("twice"), "{e}");
    }

    #[test]
    fn listener_variable_errors_name_the_item() {
        let base = [(ENV_URL, "http://cp"), (ENV_KEY, "k")];
        let with = |value: &'static str| {
            let mut env = base.to_vec();
            env.push((ENV_LISTENERS, value));
            error(None, &env)
        };
        assert!(with("127.0.0.1:6432").contains("expected listen_address=resource_id"));
        let e = with("localhost:6432=res");
        assert!(e.contains("`localhost:6432` is not an IP address and port: write one, e.g. 127.0.0.1:6432"), "{e}");
        assert!(with("127.0.0.1:6432=").contains("no resource id"));
        assert!(with("127.0.0.1:6432=res@db").contains("`db` is not host:port"));
        assert!(with("127.0.0.1:6432=res@::1:5432").contains("brackets"));
        assert!(with(" , ").contains("no listeners"));
        assert!(with("127.0.0.1:6432=a,x").contains("`x`: expected"));
    }

    #[test]
    fn identity_tls_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = format!(
            "{FILE}\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n[identity]\nrequire_tls = true\n\
             [[listeners]]\nlisten = \"127.0.0.1:6434\"\nresource = \"res_c\"\nrequire_identity = true\n\
             upstream_tls = \"verify-full\"\nupstream_ca_file = \"/ca.pem\"\n\
             [[credentials]]\nrole = \"analyst\"\npassword = \"inline-secret\"\n\
             [[credentials]]\nresource = \"res_c\"\nrole = \"analyst\"\npassword_env = \"PW\"\n\
             [[credentials]]\nrole = \"etl\"\npassword_file = \"{}\"\n",
            file.display()
        );
        let c = load(Some(&text), &[("PW", "env-secret")]).unwrap();
        assert_eq!(c.tls_for_identity(), TlsForIdentity::Always);
        assert!(!c.listeners[0].require_identity && c.listeners[0].upstream_tls == UpstreamTls::Disable);
        assert!(c.listeners[2].require_identity && c.listeners[2].upstream_tls == UpstreamTls::VerifyFull);
        let secrets: Vec<&str> = c.credentials.iter().map(|c| c.secret.expose()).collect();
        assert_eq!(secrets, ["inline-secret", "env-secret", "from-file"]);
        let debug = format!("{c:?}");
        for secret in ["inline-secret", "env-secret", "from-file"] {
            assert!(!debug.contains(secret), "{debug}");
        }

        let e = load(Some(&text), &[]).unwrap_err().to_string();
        assert!(e.contains("credentials[1]") && e.contains("PW is not set"), "{e}");
        // Unset, TLS is required off this host once clients can have it.
        let tls = "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n";
        for (text, expected) in [
            (FILE.to_owned(), TlsForIdentity::Never),
            (format!("{FILE}\n{tls}"), TlsForIdentity::OffHost),
            (format!("{FILE}\n{tls}[identity]\nrequire_tls = false\n"), TlsForIdentity::Never),
        ] {
            assert_eq!(load(Some(&text), &[]).unwrap().tls_for_identity(), expected, "{text}");
        }
        let e = error(Some(&format!("{FILE}\n[identity]\nrequire_tls = true\n")), &[]);
        assert!(e.contains("identity.require_tls") && e.contains("[tls]"), "{e}");
        let e = error(Some(&format!("{FILE}\n[[credentials]]\nrole = \"r\"\n")), &[]);
        assert!(e.contains("credentials[0]") && e.contains("set one of"), "{e}");
        let e = error(
            Some(&format!("{FILE}\n[[credentials]]\nrole = \"r\"\npassword = \"a\"\npassword_env = \"B\"\n")),
            &[],
        );
        assert!(e.contains("only one"), "{e}");
        let e = error(
            Some(&format!(
                "{FILE}\n[[credentials]]\nrole = \"r\"\npassword = \"a\"\n[[credentials]]\nrole = \"r\"\npassword = \"b\"\n"
            )),
            &[],
        );
        assert!(e.contains("twice"), "{e}");
        let e = error(
            Some(&format!(
                "{FILE}\n[[listeners]]\nlisten = \"127.0.0.1:1\"\nresource = \"r\"\nupstream_tls = \"verify-full\"\n"
            )),
            &[],
        );
        assert!(e.contains("listeners[2].upstream_ca_file"), "{e}");
        let e = error(
            Some(&format!(
                "{FILE}\n[[listeners]]\nlisten = \"127.0.0.1:1\"\nresource = \"r\"\nupstream_tls = \"maybe\"\n"
            )),
            &[],
        );
        assert!(e.contains("maybe"), "{e}");
    }

    #[test]
    fn debug_redacts_the_key() {
        let c = load(Some(FILE), &[]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("gh_abc_def") && debug.contains("<redacted>"), "{debug}");
    }
}
