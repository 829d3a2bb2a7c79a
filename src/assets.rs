//! The browser client, embedded in the binary so the server works from any
//! working directory and needs nothing else on disk.
//!
//! Every file is served with a validator (an `ETag` from rust-embed's
//! SHA-256 of the file) and `Cache-Control: no-cache`: browsers keep a copy
//! and revalidate it, and an unchanged file costs a `304 Not Modified`. The
//! tag is weak (`W/"…"`) because the compression layer may send the same
//! file gzip- or brotli-encoded, which is not byte-for-byte the same.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "client/"]
#[exclude = "test/*"]
#[exclude = "*.md"]
struct Client;

/// The client's page.
pub fn index(request: &HeaderMap) -> Response {
    file("index.html", request)
}

/// Any other embedded file, by path.
pub async fn serve(uri: Uri, request: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.is_empty() {
        return index(&request);
    }
    file(path, &request)
}

fn file(path: &str, request: &HeaderMap) -> Response {
    let Some(content) = Client::get(path) else {
        let shown = crate::protocol::truncate(path, 100);
        return (StatusCode::NOT_FOUND, format!("no such file: /{shown}")).into_response();
    };
    let etag = etag(&content.metadata.sha256_hash());
    let validators = [
        (header::ETAG, etag.clone()),
        // Small files, and a new binary may change them: revalidate.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if let Some(wanted) = request.get(header::IF_NONE_MATCH) {
        if none_match_hits(wanted.as_bytes(), &etag) {
            return (StatusCode::NOT_MODIFIED, validators).into_response();
        }
    }
    let mime = HeaderValue::from_str(content.metadata.mimetype())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, mime)], validators, content.data).into_response()
}

/// `W/"<first 16 bytes of the SHA-256, hex>"`.
fn etag(hash: &[u8; 32]) -> HeaderValue {
    let mut tag = String::with_capacity(38);
    tag.push_str("W/\"");
    for b in &hash[..16] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    // Hex digits and quotes are always a valid header value.
    HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("W/\"\""))
}

/// Whether an `If-None-Match` list names `etag`: `*`, or any tag equal to
/// it under the weak comparison (RFC 9110 §13.1.2: `W/` is ignored).
fn none_match_hits(list: &[u8], etag: &HeaderValue) -> bool {
    let ours = opaque(etag.as_bytes());
    list.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .any(|t| t == b"*" || opaque(t) == ours)
}

fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_the_weak_comparison() {
        let tag = etag(&[0xab; 32]);
        let s = tag.to_str().unwrap().to_owned();
        assert_eq!(s, format!("W/\"{}\"", "ab".repeat(16)));
        let strong = s.trim_start_matches("W/").to_owned();
        assert!(none_match_hits(s.as_bytes(), &tag));
        assert!(none_match_hits(strong.as_bytes(), &tag));
        assert!(none_match_hits(format!("\"x\", {s}").as_bytes(), &tag));
        assert!(none_match_hits(b"*", &tag));
        assert!(!none_match_hits(b"W/\"other\"", &tag));
        assert!(!none_match_hits(b"", &tag));
    }
}
