//! The HTTP API: only this module (and `sync`) knows HTTP and JSON.

pub mod areas;
pub mod error;
pub mod priorities;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::auth::{bearer_token, hash_token};
use crate::store::{Principal, Role};
use error::ApiError;

/// An API caller holding an analyst token.
#[derive(Debug, Clone, Copy)]
pub struct Analyst;

impl FromRequestParts<AppState> for Analyst {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(ApiError::unauthorized)?;
        match state.store.authenticate(&hash_token(&token)).await? {
            Some(Principal::Api { role: Role::Analyst }) => Ok(Analyst),
            Some(_) => Err(ApiError::forbidden("analyst")),
            None => Err(ApiError::unauthorized()),
        }
    }
}
