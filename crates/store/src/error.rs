//! Store errors. Database details stay in the source chain, out of messages
//! that reach API clients.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("an internal database error occurred")]
    Database(#[source] sqlx::Error),
    /// A statement ran past the store's statement timeout and was stopped.
    #[error("the database stopped a statement that ran too long")]
    TimedOut(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store holds migrations past the newest this binary knows: a newer Gatehouse wrote it,
    /// and this one cannot know what they changed.
    #[error("its schema is version {version}, newer than this gatehouse knows (up to {known}): upgrade gatehouse")]
    NewerSchema { version: i64, known: i64 },
    /// The store's file or directory cannot be looked at (a directory of another user's).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Conflict(String),
    /// A request the store cannot answer as asked; the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0} (this is a bug)")]
    Corrupt(String),
    /// A server answered at the store's address, but not in PostgreSQL's protocol: another
    /// service listens there. Its garbled answer (sqlx's words) is kept for debugging, not said.
    #[error("the server there does not speak the PostgreSQL protocol: is this another service's address?")]
    NotPostgres(sqlx::Error),
}

/// An organization neither inserted nor found: only a delete between the two could cause it,
/// and nothing deletes organizations.
pub(crate) fn org_vanished(name: &str) -> StoreError {
    StoreError::Corrupt(format!("organization {name:?} vanished after insert"))
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        // SQLITE_INTERRUPT: a reader's statement ran past its deadline
        // (`sqlite::READ_TIMEOUT`); nothing else interrupts ours.
        match &error {
            sqlx::Error::Database(db)
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && db.code().as_deref() == Some("9") =>
            {
                Self::TimedOut(error)
            }
            _ => Self::Database(error),
        }
    }
}
