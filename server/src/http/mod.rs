//! The HTTP API: only this module (and `sync`) knows HTTP and JSON. `areas` and `priorities` are the analysts';
//! `enrol` is the phones' way in.

pub mod areas;
pub mod enrol;
pub mod error;
pub mod priorities;
pub mod query;

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
            Some(Principal::RevokedDevice { .. }) => Err(ApiError::device_revoked()),
            Some(_) => Err(ApiError::forbidden("analyst")),
            None => Err(ApiError::unauthorized()),
        }
    }
}
