//! gRPC-Web's text mode (`application/grpc-web-text`, the default of the grpc-web JavaScript
//! client): the binary gRPC-Web body, base64-encoded both ways. connectrpc speaks binary
//! gRPC-Web, so this middleware decodes the request body in front of it and encodes the
//! response body, frame by frame, behind it.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use connectrpc::ErrorCode;
use http::HeaderValue;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::error::grpc_refusal;
use http_body_util::BodyExt;

use crate::MAX_REQUEST_BYTES;

const TEXT: &str = "application/grpc-web-text";
/// The largest request body in gRPC-Web's text mode: base64 takes 4 bytes for 3, and the
/// binary limit applies after decoding.
pub const MAX_TEXT_BYTES: usize = MAX_REQUEST_BYTES / 3 * 4 + 4096;

/// Passes other requests through unchanged.
pub async fn translate(request: Request, next: Next) -> Response {
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // `application/grpc-web-text` or `application/grpc-web-text+proto`, parameters aside.
    let Some(suffix) = content_type.split(';').next().and_then(|t| t.trim().strip_prefix(TEXT)) else {
        return next.run(request).await;
    };
    let binary = format!("application/grpc-web{suffix}");
    let (mut parts, body) = request.into_parts();
    let text = match crate::body::whole(body, MAX_TEXT_BYTES).await {
        Ok(text) => text,
        Err(error) => return grpc_refusal(&content_type, error.code, error.message.as_deref().unwrap_or_default()),
    };
    let Some(decoded) = decode(&text) else {
        return grpc_refusal(&content_type, ErrorCode::InvalidArgument, "the grpc-web-text body is not base64");
    };
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_str(&binary).unwrap_or(HeaderValue::from_static(TEXT)));
    parts.headers.remove(CONTENT_LENGTH);
    let response = next.run(Request::from_parts(parts, Body::from(decoded))).await;

    let (mut parts, body) = response.into_parts();
    let answered_binary = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("application/grpc-web"))
        .map(str::to_owned);
    let Some(suffix) = answered_binary else {
        return Response::from_parts(parts, body);
    };
    let text_type = format!("{TEXT}{suffix}");
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_str(&text_type).unwrap_or(HeaderValue::from_static(TEXT)));
    parts.headers.remove(CONTENT_LENGTH);
    // Each chunk is encoded on its own, padding included: clients decode the stream in
    // 4-character groups and accept padding between chunks.
    let encoded = body.map_frame(|frame| frame.map_data(|data| Bytes::from(STANDARD.encode(data))));
    Response::from_parts(parts, Body::new(encoded))
}

/// Base64 that may be several padded chunks one after another, and may hold line breaks.
fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut start = 0;
    for (i, quantum) in text.chunks(4).enumerate() {
        // A quantum with padding ends a chunk.
        if quantum.contains(&b'=') {
            let end = i * 4 + quantum.len();
            STANDARD.decode_vec(&text[start..end], &mut out).ok()?;
            start = end;
        }
    }
    STANDARD.decode_vec(&text[start..], &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_padded_chunks_decode_as_one() {
        let chunks = format!("{}{}\n{}", STANDARD.encode(b"ab"), STANDARD.encode(b"cde"), STANDARD.encode(b"f"));
        assert_eq!(decode(chunks.as_bytes()).unwrap(), b"abcdef");
        assert_eq!(decode(b"").unwrap(), b"");
        assert!(decode(b"not base64!").is_none());
    }
}
