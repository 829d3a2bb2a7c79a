//! The browser client, embedded in the binary so the server works from any
//! working directory and needs nothing else on disk.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "client/"]
#[exclude = "test/*"]
#[exclude = "*.md"]
struct Client;

/// The client's page.
pub fn index() -> Response {
    file("index.html")
}

/// Any other embedded file, by path.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.is_empty() {
        return index();
    }
    file(path)
}

fn file(path: &str) -> Response {
    match Client::get(path) {
        Some(content) => (
            [
                (header::CONTENT_TYPE, content.metadata.mimetype().to_owned()),
                // Small files, and a new binary may change them: revalidate.
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            content.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no such file: /{path}")).into_response(),
    }
}
