//! Refusals the RPC layer answers without a word: a POST in a content type it does not speak
//! gets a bare 415 (curl's `-d` without `-H 'Content-Type: application/json'` sends a form),
//! and a GET of a method that is not idempotent a 405 without the `Allow` header HTTP asks
//! for. This says what to send instead.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};

const UNSUPPORTED: &str = r#"{"code":"invalid_argument","message":"this API takes a request body in application/json (Connect JSON: curl -H 'Content-Type: application/json'), application/proto, application/grpc or application/grpc-web; its Accept-Post header lists them all"}"#;

pub async fn explain(request: Request, next: Next) -> Response {
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
