//! Every answer of the API is one organization's, for one key: no cache may keep it. Connect
//! GETs are made to be cached by shared caches, and the key travels in `X-API-KEY`, which
//! such caches do not know to keep answers apart by (RFC 9111 §3.5 covers `Authorization`
//! only).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, VARY};

pub async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        headers.append(VARY, HeaderValue::from_static("X-API-KEY, Authorization, Accept-Encoding"));
    }
    response
}
