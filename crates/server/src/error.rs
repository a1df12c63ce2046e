//! One mapping from failures to Connect errors, at the API edge.

use connectrpc::{ConnectError, ErrorCode};
use gatehouse_store::StoreError;

/// Turns a store failure into a Connect error without leaking database
/// details: the cause goes to the log, the client gets a generic message.
pub fn store_error(err: StoreError) -> ConnectError {
    match &err {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "store unavailable");
            ConnectError::new(ErrorCode::Unavailable, "the session store is unavailable; retry shortly")
        }
        StoreError::Invalid(message) => invalid(message.clone()),
        _ => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), "store error");
            ConnectError::new(ErrorCode::Internal, "an internal error occurred")
        }
    }
}

pub fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::new(ErrorCode::InvalidArgument, message.into())
}
