//! `POST /api/v1/enrol`: a phone redeems an invitation code for its own device token (docs/sync-protocol.md,
//! "Enrolment"). No bearer token: the code is the credential.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use grapevine_sync_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use crate::app::AppState;
use crate::store::RedeemError;

/// The longest device label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/enrol", post(enrol))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolRequest {
    code: String,
    /// A label for the device, e.g. "Sam's phone"; absent or empty, the invitation's label.
    #[serde(default)]
    label: String,
}

#[derive(Debug, Serialize)]
struct EnrolResponse {
    device_id: Uuid,
    collector_id: Uuid,
    /// The device's bearer token for `/sync`, shown only now.
    token: String,
}

async fn enrol(
    State(state): State<AppState>,
    request: Result<Json<EnrolRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<EnrolResponse>), ApiError> {
    let Json(request) = request.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            format!("expected a JSON body {{\"code\": \"…\", \"label\": \"…\"}}: {}", rejection.body_text()),
        )
    })?;
    let label = request.label.trim();
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            format!("label: at most {MAX_LABEL_CHARS} characters on one line"),
        ));
    }
    let now = time::OffsetDateTime::now_utc();
    match crate::auth::redeem_invitation(state.store.as_ref(), &request.code, label, now).await {
        Ok((device, token)) => {
            tracing::info!(device = %device.device_id, collector = %device.collector_id, "enrolled a device");
            Ok((
                StatusCode::CREATED,
                Json(EnrolResponse { device_id: device.device_id, collector_id: device.collector_id, token }),
            ))
        }
        Err(RedeemError::Database(error)) => Err(ApiError::from(error)),
        Err(RedeemError::Unknown) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::InvitationUnknown,
            "no invitation has this code; check it character by character",
        )),
        Err(RedeemError::Expired) => Err(gone(ErrorCode::InvitationExpired, "this invitation has expired")),
        Err(RedeemError::UsedUp) => Err(gone(ErrorCode::InvitationUsedUp, "every use of this invitation is taken")),
        Err(RedeemError::Revoked) => Err(gone(ErrorCode::InvitationRevoked, "this invitation was withdrawn")),
    }
}

fn gone(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(StatusCode::GONE, code, format!("{message}; ask for a new one"))
}
