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
        StoreError::TimedOut(_) => {
            tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "store statement timed out");
            ConnectError::new(
                ErrorCode::DeadlineExceeded,
                "the store stopped this call's query at its statement timeout: retry (the store may be busy \
                 or locked); a search can narrow its time window, or use fewer bare and prefix terms",
            )
        }
        _ => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), "store error");
            ConnectError::new(ErrorCode::Internal, "an internal error occurred")
        }
    }
}

/// An `invalid_argument` error. Messages quote what the caller sent, which
/// may be of any length: they are cut at [`MAX_MESSAGE_LEN`] bytes.
pub fn invalid(message: impl Into<String>) -> ConnectError {
    let mut message = message.into();
    if message.len() > MAX_MESSAGE_LEN {
        let cut = (0..=MAX_MESSAGE_LEN).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
        message.truncate(cut);
        message.push_str("… (cut)");
    }
    ConnectError::new(ErrorCode::InvalidArgument, message)
}

/// The longest `invalid_argument` message.
const MAX_MESSAGE_LEN: usize = 1024;

/// A Connect error answered before the RPC layer: `status` and `error_json`, the error's JSON
/// written out (the messages are fixed).
pub fn json_refusal(status: http::StatusCode, error_json: &'static str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, [(http::header::CONTENT_TYPE, "application/json")], error_json).into_response()
}

/// A gRPC or gRPC-Web error answered before the RPC layer, as gRPC answers one: HTTP 200 and
/// the status in headers that end the call (Trailers-Only), in the request's `content_type`.
/// `message` is percent-encoded as gRPC asks, past printable ASCII.
pub fn grpc_refusal(content_type: &str, code: ErrorCode, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    use std::fmt::Write as _;
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        match byte {
            b' '..=b'~' if byte != b'%' => encoded.push(char::from(byte)),
            _ => {
                let _ = write!(encoded, "%{byte:02X}");
            }
        }
    }
    let headers = [
        ("content-type", content_type.to_owned()),
        ("grpc-status", code.grpc_code().to_string()),
        ("grpc-message", encoded),
    ];
    (http::StatusCode::OK, headers).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_messages_are_bounded() {
        let long = format!("histogram_interval {:?} is not a duration", "é".repeat(100_000));
        let message = invalid(long).message.unwrap_or_default();
        assert!(message.len() <= MAX_MESSAGE_LEN + "… (cut)".len() && message.ends_with("… (cut)"), "{message}");
        assert_eq!(invalid("short").message.as_deref(), Some("short"));
    }
}
