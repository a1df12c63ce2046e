//! The proto3 JSON form of a message is an object. serde's derived decoders also take a JSON
//! array, field by field in declaration order (`["<session id>"]` was a GetSessionRequest),
//! which would get past the strict-field contract: this middleware refuses any Connect JSON
//! request body that is not an object, before it is decoded.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode};

use crate::MAX_REQUEST_BYTES;

/// Passes other requests through unchanged: other methods and content types, compressed
/// bodies (decoded later, where the decoder's own checks apply), and bodies of unknown or
/// oversized length (refused later by the size limit).
pub async fn require(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let compressed = headers.get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity");
    let Some(length) = length.filter(|&n| n <= MAX_REQUEST_BYTES) else {
        return next.run(request).await;
    };
    if request.method() != Method::POST || !is_json || compressed {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, length).await else {
        return invalid(
            r#"{"code":"invalid_argument","message":"the request body is longer than its Content-Length"}"#,
        );
    };
    // An empty body is left to the decoder.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None | Some(b'{') => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Some(_) => invalid(
            r#"{"code":"invalid_argument","message":"the request body must be a JSON object, such as {\"sessionId\": \"...\"}"}"#,
        ),
    }
}

/// A Connect error, its JSON written out: the messages are fixed.
fn invalid(error_json: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, [(CONTENT_TYPE, "application/json")], error_json).into_response()
}
