//! A session: one client connection through a connector.

use crate::time::Micros;

/// A recorded session, as stored and served.
///
/// Empty strings mean "not known"; they are omitted on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// Time-ordered (UUIDv7) id.
    pub id: String,
    pub start: Micros,
    /// `None` while the session is active.
    pub end: Option<Micros>,
    pub client_ip: String,
    pub server_ip: String,
    pub sidecar: Sidecar,
    pub user: SessionUser,
    pub resource: ResourceRef,
    pub connector: ConnectorRef,
    pub parent_session_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Completed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Completed => "completed",
        }
    }
}

impl Session {
    pub fn status(&self) -> SessionStatus {
        match self.end {
            None => SessionStatus::Active,
            Some(_) => SessionStatus::Completed,
        }
    }

    /// `end - start`, or for an active session the time elapsed up to `now`.
    pub fn duration(&self, now: Micros) -> Micros {
        (self.end.unwrap_or(now) - self.start).max(0)
    }
}

/// The connector process that carried the session, as the public schema's `sidecar`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sidecar {
    pub id: String,
    pub name: String,
    pub technology: String,
}

/// Who connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionUser {
    /// `human`, `machine` or `native`.
    pub kind: String,
    /// The user name as given at startup.
    pub username: String,
    /// The person or machine behind the connection, once identity is known.
    pub formal: Option<Identity>,
    /// The end user an application named for this session.
    pub end_user: Option<Identity>,
    /// The database role used upstream.
    pub native_username: String,
}

/// A person or machine known to the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub email: String,
    pub kind: String,
    pub groups: Vec<String>,
    pub external_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRef {
    /// `aws`, `datastore` or `instance`.
    pub kind: String,
    pub id: String,
    pub name: String,
    pub technology: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorRef {
    pub id: String,
    pub name: String,
    /// The connector's run (one process, start to stop) that reported the session: its lease
    /// and its successor decide when the session ends if the connector cannot say. Empty for
    /// sessions no connector reported.
    pub run_id: String,
}
