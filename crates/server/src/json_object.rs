//! The proto3 JSON form of a message is an object. serde's derived decoders also take a JSON
//! array, field by field in declaration order (`["<session id>"]` was a GetSessionRequest),
//! which would get past the strict-field contract: this middleware refuses a Connect JSON
//! request message that is not an object, in a POST body or a GET's `message` (gzipped or
//! not), before it is decoded.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{Method, StatusCode};

use crate::MAX_REQUEST_BYTES;

const NOT_AN_OBJECT: &str =
    r#"{"code":"invalid_argument","message":"the request message must be a JSON object, such as {\"limit\": 10}"}"#;
const TOO_LARGE: &str = r#"{"code":"resource_exhausted","message":"the request body is over 4 MiB"}"#;

/// Passes other requests through unchanged: other methods and content types, and messages
/// that cannot be read here (left for the decoder to refuse).
pub async fn require(request: Request, next: Next) -> Response {
    if request.method() == Method::GET {
        if get_message(&request).is_some_and(|(message, gzip)| !is_object_or_empty(&message, gzip)) {
            return refuse(StatusCode::BAD_REQUEST, NOT_AN_OBJECT);
        }
        return next.run(request).await;
    }
    let Some(gzip) = json_body_encoding(&request).filter(|_| request.method() == Method::POST) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return refuse(StatusCode::TOO_MANY_REQUESTS, TOO_LARGE);
    };
    if !is_object_or_empty(&bytes, gzip) {
        return refuse(StatusCode::BAD_REQUEST, NOT_AN_OBJECT);
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// For a JSON body: whether it is gzipped. `None` for other content types and encodings.
fn json_body_encoding(request: &Request) -> Option<bool> {
    let headers = request.headers();
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return None;
    }
    match headers.get(CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => Some(false),
        Some(b"gzip") => Some(true),
        Some(_) => None,
    }
}

/// The `message` of a Connect GET in JSON, and whether it is gzipped; `None` for any other GET.
fn get_message(request: &Request) -> Option<(Vec<u8>, bool)> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(request.uri()).ok()?;
    if params.get("encoding").map(String::as_str) != Some("json") {
        return None;
    }
    let gzip = match params.get("compression").map(String::as_str) {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(_) => return None,
    };
    let message = params.get("message")?;
    let message = if params.get("base64").map(String::as_str) == Some("1") {
        let unpadded = message.trim_end_matches('=');
        // Undecodable: left for the decoder to refuse.
        URL_SAFE_NO_PAD.decode(unpadded).or_else(|_| URL_SAFE.decode(message)).ok()?
    } else {
        message.as_bytes().to_vec()
    };
    Some((message, gzip))
}

/// Whether a message starts as an object. An empty one, and a gzipped one that does not
/// decompress, are left to the decoder; of a gzipped one, only the start is decompressed.
fn is_object_or_empty(message: &[u8], gzip: bool) -> bool {
    let first = |bytes: &[u8]| bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    if !gzip {
        return matches!(first(message), None | Some(b'{'));
    }
    let mut decoder = flate2::read::GzDecoder::new(message);
    let mut chunk = [0u8; 256];
    loop {
        match std::io::Read::read(&mut decoder, &mut chunk) {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if let Some(byte) = first(&chunk[..n]) {
                    return byte == b'{';
                }
            }
        }
    }
}

/// A Connect error, its JSON written out: the messages are fixed.
fn refuse(status: StatusCode, error_json: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], error_json).into_response()
}
