//! A request's whole body, read before the RPC layer by the middlewares that must see it (or
//! see it arrive), with one answer for each way that fails.

use axum::body::Body;
use bytes::Bytes;
use connectrpc::{ConnectError, ErrorCode};
use http_body_util::LengthLimitError;

use crate::MAX_REQUEST_BYTES;

/// Reads `body` to its end, up to `limit` bytes.
///
/// # Errors
///
/// `resource_exhausted` for a body over `limit`; `deadline_exceeded` for one that did not
/// arrive within the connection's time for it (see `connection::Deadline`); `invalid_argument`
/// for one whose HTTP/1.1 chunks are malformed; `canceled` for one cut off (its client is gone).
pub async fn whole(body: Body, limit: usize) -> Result<Bytes, ConnectError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        if find::<LengthLimitError>(&error).is_some() {
            return ConnectError::resource_exhausted(format!(
                "the request body is over {} MiB",
                MAX_REQUEST_BYTES >> 20
            ));
        }
        // The reading's own error is wrapped (see `connection::Deadline`): the first of a kind.
        let io_errors = || chain(&error).filter_map(|error| error.downcast_ref::<std::io::Error>());
        if let Some(io) = io_errors().find(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return ConnectError::deadline_exceeded(io.to_string());
        }
        // HTTP/1.1's chunked framing broken (a chunk size that is no number, or overflows): the
        // client sent it so.
        let malformed = |io: &&std::io::Error| {
            matches!(io.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData)
        };
        if let Some(io) = io_errors().find(malformed) {
            return ConnectError::invalid_argument(format!("the request body's HTTP framing is not valid: {io}"));
        }
        ConnectError::new(ErrorCode::Canceled, format!("the request body was cut off: {error}"))
    })
}

/// `error` and its chain of sources.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |error| error.source())
}

/// The first error of type `T` in `error`'s chain of sources.
fn find<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    chain(error).find_map(|error| error.downcast_ref::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a source, as hyper's is.
    #[derive(Debug, thiserror::Error)]
    #[error("error reading a body from connection")]
    struct Wrapped(#[source] std::io::Error);

    fn failing(error: std::io::Error) -> Body {
        let chunks = [Ok(Bytes::from_static(b"{\"limit\":")), Err(error)];
        Body::from_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn each_failure_says_what_it_was() {
        assert_eq!(whole(Body::from("{}"), 10).await.unwrap(), "{}");
        let large = whole(Body::from(vec![b' '; 11]), 10).await.unwrap_err();
        assert_eq!(large.code, ErrorCode::ResourceExhausted);
        let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request's body did not arrive within 30 s");
        let late = whole(failing(late), 1000).await.unwrap_err();
        assert_eq!(
            (late.code, late.message.as_deref()),
            (ErrorCode::DeadlineExceeded, Some("the request's body did not arrive within 30 s"))
        );
        // Wrapped, as `connection::Deadline` passes on what reading the connection failed with.
        let malformed = std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid chunk size line");
        let malformed = whole(failing(std::io::Error::other(Wrapped(malformed))), 1000).await.unwrap_err();
        assert_eq!(malformed.code, ErrorCode::InvalidArgument);
        let cut = whole(failing(std::io::ErrorKind::ConnectionReset.into()), 1000).await.unwrap_err();
        assert_eq!(cut.code, ErrorCode::Canceled);
    }
}
