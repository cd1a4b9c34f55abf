//! The one HTTP error type: a status, a stable code and a message, as `{"code": "…", "message": "…"}`; and the
//! answers every route falls back on (an unknown path, a method a route does not take, a body that is not JSON), so
//! no error the server sends is empty or plain text.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::Request;
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use grapevine_sync_proto::ErrorCode;

pub(crate) use crate::domain::shown;

/// How much of a plain-text error body from axum or a layer is read to become a JSON message.
const PLAIN_BODY_LIMIT: usize = 1024;

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
        ApiError::from(crate::usecase::UseCaseError::unauthorized())
    }

    pub fn invalid_query(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidQuery, message)
    }

    /// A JSON body the `Json` extractor refused, said without the extractor's wording: what was wrong with the body
    /// (serde's words for which field, and where), and what the endpoint expects.
    pub fn json_body(rejection: &JsonRejection, expected: &str) -> Self {
        let (status, message) = match rejection {
            JsonRejection::MissingJsonContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("send the body as JSON with the header Content-Type: application/json; expected {expected}"),
            ),
            JsonRejection::JsonSyntaxError(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the body is not JSON ({}); expected {expected}", innermost(rejection)),
            ),
            JsonRejection::JsonDataError(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, format!("the body is not {expected}: {}", innermost(rejection)))
            }
            // The body could not be read at all: too large, or cut off.
            other => (other.status(), format!("the body could not be read: {}", innermost(rejection))),
        };
        ApiError::new(status, ErrorCode::InvalidRequest, message)
    }
}

/// A use case's refusal, with the status its code calls for.
impl From<crate::usecase::UseCaseError> for ApiError {
    fn from(error: crate::usecase::UseCaseError) -> Self {
        use crate::usecase::UseCaseError as E;
        match error {
            E::Internal(error) => ApiError::from(error),
            E::Forbidden { role, action } => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!("the role {role} may not {} (docs/access.md)", action.as_str().replace('_', " ")),
            ),
            E::Unauthenticated { code, message } => {
                let status =
                    if code == ErrorCode::DeviceRevoked { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
                ApiError::new(status, code, message)
            }
            E::NotFound { code, message } => ApiError::new(StatusCode::NOT_FOUND, code, message),
            E::Invalid { code, message } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            E::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            limited @ E::RateLimited { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, limited.to_string())
            }
        }
    }
}

/// Internal failures become an opaque 500; the detail goes to the log, never to the client.
impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error")
    }
}

/// A path parameter axum could not decode (percent-encoding that is not UTF-8).
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            format!("the path could not be read: {}", innermost(&rejection)),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// The last error in a chain: axum's rejections wrap the words that say what was wrong (serde's, with the field's
/// path) in their own.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    error.to_string()
}

/// What the server answers for a path no route has.
pub async fn no_such_route(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("nothing is at {}; the API is under /api/v1 (docs/geotagging.md)", shown(uri.path())),
    )
}

/// What the server answers for a method a route does not take; axum adds the `Allow` header listing those it does.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!(
            "{} {} is not served; the Allow header lists the methods that are",
            shown(method.as_str()),
            shown(uri.path())
        ),
    )
}

/// The safety net under every route: an error response that is not JSON (one an extractor or layer wrote as plain
/// text, such as the WebSocket upgrade's) becomes `{code, message}` with the same status and headers. A server error
/// keeps its words out of the body, as every 500 does. The web pages' own error pages (HTML) pass as they are.
pub async fn json_error_bodies(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json") || value.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        status if status.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let text = axum::body::to_bytes(body, PLAIN_BODY_LIMIT)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    let message = if status.is_server_error() {
        if !text.is_empty() {
            tracing::error!(%status, body = %shown(&text), "a layer answered with a server error");
        }
        "internal error".to_owned()
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let (json_parts, json_body) = ApiError::new(status, code, message).into_response().into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_repeats_at_most_a_short_escaped_piece_of_what_was_sent() {
        assert_eq!(shown("wards"), "wards");
        assert_eq!(shown(&"x".repeat(500)), format!("{}…", "x".repeat(40)));
        assert_eq!(shown("\u{1b}[31mred\nline"), "\\u{1b}[31mred\\nline");
    }
}
