//! The one stylesheet (`server/static/grapevine.css`, screen and print), compiled in and served under a name that
//! holds its content hash, so browsers may keep it for a year and still get a changed one at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::page::PageError;
use crate::app::AppState;

const CSS: &str = include_str!("../../static/grapevine.css");

/// The stylesheet's name under `/static/`.
pub(crate) struct Stylesheet {
    file: String,
    path: String,
}

impl Stylesheet {
    /// `/static/grapevine.<hash>.css`.
    pub fn path(&'static self) -> &'static str {
        &self.path
    }
}

pub(crate) static STYLESHEET: LazyLock<Stylesheet> = LazyLock::new(|| {
    let digest = Sha256::digest(CSS.as_bytes());
    let hash: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
    let file = format!("grapevine.{hash}.css");
    Stylesheet { path: format!("/static/{file}"), file }
});

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/static/{file}", get(stylesheet))
}

async fn stylesheet(Path(file): Path<String>) -> Response {
    if file != STYLESHEET.file {
        return PageError::not_found().into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
        .into_response()
}
