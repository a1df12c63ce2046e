//! The web console: static HTML, CSS and JavaScript modules embedded in the
//! binary and served at `/` and `/console/*`.
//!
//! The console is a plain client of the public API: the browser calls
//! `core.v1.SessionsService` with the key the user typed, so these routes
//! need no authentication and hold no data. What they must get right is the
//! browser's security policy: scripts only from this origin (no inline
//! script, so an injected string can never run), no framing, no sniffing.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The console's files, under `crates/server/console/`, as (name, type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../console/index.html")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../console/style.css")),
    ("icon.svg", "image/svg+xml", include_bytes!("../console/icon.svg")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../console/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../console/api.js")),
    ("view.js", "text/javascript; charset=utf-8", include_bytes!("../console/view.js")),
    ("format.js", "text/javascript; charset=utf-8", include_bytes!("../console/format.js")),
    ("histogram.js", "text/javascript; charset=utf-8", include_bytes!("../console/histogram.js")),
    ("facets.js", "text/javascript; charset=utf-8", include_bytes!("../console/facets.js")),
    ("table.js", "text/javascript; charset=utf-8", include_bytes!("../console/table.js")),
    ("detail.js", "text/javascript; charset=utf-8", include_bytes!("../console/detail.js")),
    ("export.js", "text/javascript; charset=utf-8", include_bytes!("../console/export.js")),
];

/// Scripts, styles, images and API calls from this origin only; nothing
/// inline, no plugins, never inside a frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to merge into the application before the RPC fallback.
pub fn routes() -> Router {
    Router::new().route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) })).route(
        "/console/{file}",
        get(|Path(file): Path<String>, headers: HeaderMap| async move { serve(&file, &headers) }),
    )
}

fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS.iter().find(|(n, _, _)| *n == name).map(|(_, kind, bytes)| (*kind, *bytes))
}

/// A strong validator for the embedded bytes: browsers revalidate on every
/// load (`no-cache`) and get a 304 until a new binary ships new files.
fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some((kind, bytes)) = find(name) else {
        return with_security_headers((StatusCode::NOT_FOUND, "not found\n").into_response());
    };
    let tag = etag(bytes);
    let fresh = request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == tag);
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { bytes.into_response() };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, tag);
    }
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers
        .insert(header::HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> &'static str {
        std::str::from_utf8(find(name).unwrap().1).unwrap()
    }

    /// Every file the page or a module loads is embedded: a missing one
    /// would be a 404 only a browser notices.
    #[test]
    fn every_referenced_asset_is_embedded() {
        let mut referenced = Vec::new();
        for (name, _, bytes) in ASSETS {
            let body = std::str::from_utf8(bytes).unwrap();
            for marker in ["/console/", "from './"] {
                for (at, _) in body.match_indices(marker) {
                    let rest = &body[at + marker.len()..];
                    let end = rest.find(['"', '\'']).unwrap();
                    referenced.push((name.to_string(), rest[..end].to_owned()));
                }
            }
        }
        assert!(referenced.len() > 10, "{referenced:?}");
        for (from, file) in referenced {
            assert!(find(&file).is_some(), "{from} references {file}, which is not embedded");
        }
    }

    /// The policy forbids inline script, so the page must not have any.
    #[test]
    fn no_inline_script_or_handlers() {
        let page = text("index.html");
        for tag in page.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(open.contains("src=\"/console/"), "inline script: <script{open}>");
            assert!(tag[open.len() + 1..].starts_with("</script>"), "script with a body");
        }
        for (name, _, bytes) in ASSETS {
            let body = std::str::from_utf8(bytes).unwrap();
            assert!(!body.contains(" onclick="), "{name} uses an inline handler");
            assert!(!body.contains("innerHTML"), "{name} builds markup from strings; use textContent");
        }
    }

    #[test]
    fn unknown_files_are_not_found_and_known_ones_revalidate() {
        let missing = serve("../Cargo.toml", &HeaderMap::new());
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.headers().contains_key(header::CONTENT_SECURITY_POLICY));

        let page = serve("index.html", &HeaderMap::new());
        assert_eq!(page.status(), StatusCode::OK);
        let tag = page.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve("index.html", &again).status(), StatusCode::NOT_MODIFIED);
    }
}
