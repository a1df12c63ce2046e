//! What `Hello` tells the connector, and the copy of its resources kept in
//! `state_dir/resources.json`, so a connector restarted while the control
//! plane is down can still find its databases.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The cache file's name under the state directory.
pub const CACHE_FILE: &str = "resources.json";

/// The control plane's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    pub connector_id: String,
    pub connector_name: String,
    /// How often to heartbeat.
    pub heartbeat: std::time::Duration,
    pub lease_seconds: u32,
    pub completed_stale_sessions: u32,
    pub resources: Vec<Resource>,
}

/// A database registered with the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    pub name: String,
    /// `datastore`, ...
    pub kind: String,
    /// `postgres`, ...
    pub technology: String,
    pub host: String,
    pub port: u16,
}

impl Resource {
    /// `host:port`, with an IPv6 host in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a resource cache: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The file format: separate from the domain type, versioned.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    version: u32,
    connector_id: String,
    connector_name: String,
    resources: Vec<CachedResource>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedResource {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    technology: String,
    host: String,
    port: u16,
}

/// Saves the resources of `hello` to `state_dir/resources.json`, atomically.
///
/// # Errors
///
/// [`CacheError::Write`] if the file cannot be written.
pub fn save(state_dir: &Path, hello: &HelloInfo) -> Result<(), CacheError> {
    let path = state_dir.join(CACHE_FILE);
    let file = CacheFile {
        version: 1,
        connector_id: hello.connector_id.clone(),
        connector_name: hello.connector_name.clone(),
        resources: hello
            .resources
            .iter()
            .map(|r| CachedResource {
                id: r.id.clone(),
                name: r.name.clone(),
                kind: r.kind.clone(),
                technology: r.technology.clone(),
                host: r.host.clone(),
                port: r.port,
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&file).expect("plain structs serialize");
    let tmp = state_dir.join(format!("{CACHE_FILE}.tmp"));
    let write = |source| CacheError::Write { path: path.clone(), source };
    std::fs::create_dir_all(state_dir).map_err(write)?;
    std::fs::write(&tmp, json).map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(write)
}

/// Loads the cached resources; `Ok(None)` if there is no cache yet.
///
/// # Errors
///
/// [`CacheError::Read`] or [`CacheError::Parse`] for an unreadable file.
pub fn load(state_dir: &Path) -> Result<Option<Vec<Resource>>, CacheError> {
    let path = state_dir.join(CACHE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CacheError::Read { path, source }),
    };
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|source| CacheError::Parse { path, source })?;
    Ok(Some(
        file.resources
            .into_iter()
            .map(|r| Resource {
                id: r.id,
                name: r.name,
                kind: r.kind,
                technology: r.technology,
                host: r.host,
                port: r.port,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> HelloInfo {
        HelloInfo {
            connector_id: "con_1".into(),
            connector_name: "edge".into(),
            heartbeat: std::time::Duration::from_secs(10),
            lease_seconds: 60,
            completed_stale_sessions: 0,
            resources: vec![
                Resource {
                    id: "res_1".into(),
                    name: "orders".into(),
                    kind: "datastore".into(),
                    technology: "postgres".into(),
                    host: "db.internal".into(),
                    port: 5432,
                },
                Resource {
                    id: "res_2".into(),
                    name: "v6".into(),
                    kind: "datastore".into(),
                    technology: "postgres".into(),
                    host: "::1".into(),
                    port: 5433,
                },
            ],
        }
    }

    #[test]
    fn cache_round_trips_and_is_absent_at_first() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), &hello()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(hello().resources));
    }

    #[test]
    fn a_damaged_cache_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CACHE_FILE), "{").unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("resources.json"), "{error}");
    }

    #[test]
    fn addresses_bracket_ipv6_hosts() {
        let r = hello().resources;
        assert_eq!(r[0].address(), "db.internal:5432");
        assert_eq!(r[1].address(), "[::1]:5433");
    }
}
