//! The one HTTP error type: a status, a stable code and a message, as `{"code": "…", "message": "…"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use grapevine_sync_proto::ErrorCode;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "a valid bearer token is required")
    }

    pub fn forbidden(needed: &str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, format!("this needs a token with the role {needed}"))
    }

    pub fn device_revoked() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::DeviceRevoked,
            "this device was revoked; its insights stay on the phone, and it needs a new invitation to sync again",
        )
    }

    pub fn invalid_query(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidQuery, message)
    }
}

/// Internal failures become an opaque 500; the detail goes to the log, never to the client.
impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
        (self.status, Json(body)).into_response()
    }
}
