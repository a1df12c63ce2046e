//! What a session produces, in order: one start, statements, one end. A statement that runs
//! long is announced while it runs, before its own event.
//!
//! The proxy reports these through [`crate::report::Reporter`], which encodes
//! them as the control plane's wire messages at once. Times are microseconds
//! since the Unix epoch.

/// One event of one session, as read back from its encoding
/// ([`crate::report::Record::decode`]). `seq` is 0 for the start and grows by
/// one per event, so the control plane can store each exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub session_id: String,
    pub seq: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Start(SessionStart),
    Statement(Statement),
    /// A statement still running: shown in the transcript until its [`Statement`] comes.
    Running(RunningStatement),
    End(SessionEnd),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionStart {
    pub start_us: i64,
    pub resource_id: String,
    pub client_ip: String,
    pub server_ip: String,
    /// The user name as given at startup.
    pub username: String,
    /// The role used upstream: the user name for a native login, the mapped role for an
    /// identity login.
    pub native_username: String,
    pub database: String,
    pub application_name: String,
    /// `human`, `machine` or `native`.
    pub user_type: String,
    /// The verified person or machine behind an identity login. Boxed, like `end_user`, so
    /// that the start does not make every event (statements included) larger.
    pub formal_user: Option<Box<FormalUser>>,
    /// The end user a machine named for this session.
    pub end_user: Option<Box<FormalUser>>,
}

/// A person or machine, as the control plane describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormalUser {
    pub id: String,
    pub name: String,
    pub email: String,
    /// `human` or `machine`.
    pub kind: String,
    pub groups: Vec<String>,
    pub external_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Statement {
    pub start_us: i64,
    pub duration_us: i64,
    pub text: String,
    pub rows: i64,
    pub bytes_sent: i64,
    /// SQLSTATE of the error; empty on success.
    pub sqlstate: String,
    /// Rows inserted, updated, deleted, merged or copied in, by its commands' tags.
    pub rows_changed: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunningStatement {
    pub start_us: i64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionEnd {
    pub end_us: i64,
    pub reason: EndReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client closed the connection or sent Terminate.
    Client,
    /// The server closed the connection.
    Server,
    /// An administrator terminated the session.
    Terminated,
    /// The identity it logged in as may no longer log in.
    Revoked,
    /// The connector shut down.
    Shutdown,
    /// A protocol or IO error ended it.
    Error,
}

impl EndReason {
    const ALL: [EndReason; 6] = [
        EndReason::Client,
        EndReason::Server,
        EndReason::Terminated,
        EndReason::Revoked,
        EndReason::Shutdown,
        EndReason::Error,
    ];

    /// The reason [`as_str`](Self::as_str) names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Client => "client",
            EndReason::Server => "server",
            EndReason::Terminated => "terminated",
            EndReason::Revoked => "revoked",
            EndReason::Shutdown => "shutdown",
            EndReason::Error => "error",
        }
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default()
}
