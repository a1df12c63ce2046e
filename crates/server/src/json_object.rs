//! The proto3 JSON form of a message is an object. serde's derived decoders also take a JSON
//! array, field by field in declaration order (`["<session id>"]` was a GetSessionRequest),
//! which would get past the strict-field contract: this middleware refuses a JSON request
//! message that is not an object before it is decoded: a Connect POST body or GET `message`,
//! or the first message of a gRPC or gRPC-Web call in JSON, compressed (in any compression
//! the API reads) or not.

use std::collections::HashMap;
use std::io::Read;

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use connectrpc::ConnectError;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};

use crate::MAX_REQUEST_BYTES;
use crate::error::json_refusal;

/// Every method's: a field one method has is unknown to another.
macro_rules! not_an_object {
    () => {
        "the request message must be a JSON object of the method's fields ({} for none)"
    };
}
const NOT_AN_OBJECT_MESSAGE: &str = not_an_object!();
const NOT_AN_OBJECT: &str = concat!(r#"{"code":"invalid_argument","message":""#, not_an_object!(), r#""}"#);

/// How a request carries a JSON message.
enum Framing {
    /// A Connect unary body, in its `Content-Encoding`.
    Plain,
    /// gRPC or gRPC-Web: length-prefixed messages, a compressed one in the `grpc-encoding`.
    Enveloped,
}

/// Passes other requests through unchanged: other methods and content types, and messages
/// that cannot be read here (left for the decoder to refuse).
pub async fn require(request: Request, next: Next) -> Response {
    if request.method() == Method::GET {
        if get_message(&request).is_some_and(|(message, encoding)| !is_object_or_empty(&message, encoding.as_deref())) {
            return json_refusal(StatusCode::BAD_REQUEST, NOT_AN_OBJECT);
        }
        return next.run(request).await;
    }
    let Some(framing) = json_framing(request.headers()).filter(|_| request.method() == Method::POST) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let bytes = match crate::body::whole(body, MAX_REQUEST_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => return refuse(&framing, &parts.headers, error),
    };
    let object = match framing {
        Framing::Plain => is_object_or_empty(&bytes, header(CONTENT_ENCODING.as_str())),
        // The first message; one cut short is left to the decoder.
        Framing::Enveloped => match bytes
            .get(..5)
            .map(|prefix| (prefix[0], u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]])))
        {
            Some((flags, len)) => match bytes.get(5..5 + len as usize) {
                Some(message) => {
                    is_object_or_empty(message, (flags & 1 == 1).then(|| header("grpc-encoding")).flatten())
                }
                None => true,
            },
            None => true,
        },
    };
    if !object {
        return refuse(&framing, &parts.headers, ConnectError::invalid_argument(NOT_AN_OBJECT_MESSAGE));
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// `error` in the request's framing: a Connect error, or gRPC's status headers.
fn refuse(framing: &Framing, headers: &HeaderMap, error: ConnectError) -> Response {
    match framing {
        Framing::Plain => error.into_http_response(headers).map(Body::new),
        Framing::Enveloped => {
            let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
            let message = error.message.as_deref().unwrap_or_default();
            crate::error::grpc_refusal(content_type.unwrap_or("application/grpc+json"), error.code, message)
        }
    }
}

/// How a request carries a JSON message, if it does.
fn json_framing(headers: &HeaderMap) -> Option<Framing> {
    let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?.split(';').next()?.trim().to_ascii_lowercase();
    match content_type.as_str() {
        "application/json" => Some(Framing::Plain),
        "application/grpc+json" | "application/grpc-web+json" => Some(Framing::Enveloped),
        _ => None,
    }
}

/// The `message` of a Connect GET in JSON, and its compression; `None` for any other GET.
fn get_message(request: &Request) -> Option<(Vec<u8>, Option<String>)> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(request.uri()).ok()?;
    if params.get("encoding").map(String::as_str) != Some("json") {
        return None;
    }
    let compression = params.get("compression").cloned();
    let message = params.get("message")?;
    let message = if params.get("base64").map(String::as_str) == Some("1") {
        let unpadded = message.trim_end_matches('=');
        // Undecodable: left for the decoder to refuse.
        URL_SAFE_NO_PAD.decode(unpadded).or_else(|_| URL_SAFE.decode(message)).ok()?
    } else {
        message.as_bytes().to_vec()
    };
    Some((message, compression))
}

/// Whether a message starts as an object. An empty one, one in a compression the API does not
/// read, and a compressed one that does not decompress, are left to the decoder; of a
/// compressed one, only the start is decompressed.
fn is_object_or_empty(message: &[u8], encoding: Option<&str>) -> bool {
    let first = |bytes: &[u8]| bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    let provider = match encoding {
        None | Some("identity") => return matches!(first(message), None | Some(b'{')),
        Some(name) => crate::compression::registry().get(name),
    };
    let Some(Ok(mut decoder)) = provider.map(|provider| provider.decompressor(message)) else {
        return true;
    };
    let mut chunk = [0u8; 256];
    loop {
        match decoder.read(&mut chunk) {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if let Some(byte) = first(&chunk[..n]) {
                    return byte == b'{';
                }
            }
        }
    }
}
