//! Refusals the RPC layer answers without a word: a POST in a content type it does not speak
//! gets a bare 415 (curl's `-d` without `-H 'Content-Type: application/json'` sends a form),
//! and a GET of a method that is not idempotent a 405 without the `Allow` header HTTP asks
//! for. This says what to send instead. And requests it would get wrong: a content type in
//! capitals (media types are case-insensitive, RFC 9110 §8.3.1) is read as in lower case, and
//! a `connect-timeout-ms` that is not a timeout is refused rather than ignored.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};

const CONNECT_TIMEOUT_MS: &str = "connect-timeout-ms";

const UNSUPPORTED: &str = r#"{"code":"invalid_argument","message":"this API takes a request body in application/json (Connect JSON: curl -H 'Content-Type: application/json'), application/proto, application/grpc or application/grpc-web; its Accept-Post header lists them all"}"#;

const BAD_TIMEOUT: &str =
    r#"{"code":"invalid_argument","message":"connect-timeout-ms must be a number of milliseconds, 1 to 10 digits"}"#;

pub async fn explain(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    if let Some(timeout) = headers.get(CONNECT_TIMEOUT_MS)
        && !((1..=10).contains(&timeout.len()) && timeout.as_bytes().iter().all(u8::is_ascii_digit))
    {
        return crate::error::json_refusal(StatusCode::BAD_REQUEST, BAD_TIMEOUT);
    }
    if let Some(lower) = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.bytes().any(|b| b.is_ascii_uppercase()))
        .and_then(|value| HeaderValue::from_str(&value.to_ascii_lowercase()).ok())
    {
        headers.insert(CONTENT_TYPE, lower);
    }
    let method = request.method().clone();
    let mut response = next.run(request).await;
    match response.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE if !response.headers().contains_key(CONTENT_TYPE) => {
            response.headers_mut().remove(CONTENT_LENGTH);
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            *response.body_mut() = Body::from(UNSUPPORTED);
            response
        }
        StatusCode::METHOD_NOT_ALLOWED if method == Method::GET && !response.headers().contains_key(ALLOW) => {
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
            response
        }
        _ => response,
    }
}
