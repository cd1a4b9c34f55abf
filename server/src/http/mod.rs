//! The HTTP API: only this module (and `sync`) knows HTTP and JSON. `areas` and `priorities` are the analysts'
//! (their query strings are read by `query`), and so are `insights` and `exports` (files streamed through `stream`,
//! which the pages' downloads use too); `enrol` is the phones' way in; `error` is the one error type and the JSON
//! answers for unknown routes and refused bodies.

pub mod areas;
pub mod audit;
pub mod enrol;
pub mod error;
pub mod exports;
pub mod insights;
pub mod openapi;
pub mod priorities;
pub mod query;
pub mod stream;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use grapevine_sync_proto::ErrorCode;

use crate::app::AppState;
use crate::auth::bearer_token;
use crate::domain::{Principal, RequestContext};
use error::ApiError;

/// Every route of the API, each refusing a token in its query string.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(areas::router())
        .merge(audit::router())
        .merge(insights::router())
        .merge(exports::router())
        .merge(openapi::router())
        .merge(priorities::router())
        .merge(enrol::router())
        .route_layer(middleware::from_fn(refuse_token_in_query))
}

/// A token in a URL ends up in proxy logs, browser history and `Referer` headers, so the API takes tokens only in
/// the `Authorization` header and refuses one in the query string (a mistaken `?token=` is told where to put it,
/// rather than "unknown parameter"). `?token=` stays valid on the `/sync` WebSocket alone, where browsers cannot
/// set headers.
async fn refuse_token_in_query(request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or_default();
    if form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "token") {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "the API does not take a token in the query string; send it in the header Authorization: Bearer <token>",
        )
        .into_response();
    }
    next.run(request).await
}

/// Whoever a request's bearer token stands for; what they may do is the use case's to decide.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(ApiError::unauthorized)?;
        Ok(Caller(state.usecases.authenticate(&token, request_context(parts, &state.config.trusted_proxies)).await?))
    }
}

/// The request id (from `telemetry`) and the client's address (as `X-Forwarded-For` says, from a trusted proxy), for
/// the audit trail.
#[must_use]
pub fn request_context(parts: &Parts, trusted_proxies: &[std::net::IpAddr]) -> RequestContext {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip());
    RequestContext {
        request_id: parts.extensions.get::<crate::telemetry::RequestId>().map(ToString::to_string),
        client_addr: peer.map(|peer| enrol::client_address(peer, &parts.headers, trusted_proxies)),
    }
}
