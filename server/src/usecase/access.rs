//! Who is calling: a bearer token becomes a `Principal`, or a refusal with its code.

use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use grapevine_sync_proto::ErrorCode;
use time::OffsetDateTime;

use super::{UseCaseError, UseCases};
use crate::audit::{AuditOutcome, NewAuditEntry};
use crate::auth::hash_token;
use crate::domain::{Authenticated, Principal, RequestContext};
use crate::invitations::InvitationSecret;
use crate::store::{NewDevice, RedeemError};

impl UseCases {
    /// The principal a bearer token stands for, with the request's context. A refused credential is recorded in the
    /// audit trail (which token is never said: only that one was refused, and why).
    ///
    /// # Errors
    /// `Unauthenticated` with `unauthorized` (no such token), `token_expired`, `person_disabled`, or
    /// `device_revoked`; the store fails.
    pub async fn authenticate(&self, token: &str, context: RequestContext) -> Result<Principal, UseCaseError> {
        let refused = |code: ErrorCode, message: &str| UseCaseError::Unauthenticated { code, message: message.into() };
        let refusal = match self.store.authenticate(&hash_token(token)).await? {
            Some(Authenticated::Principal(principal)) => return Ok(Principal { context, ..principal }),
            Some(Authenticated::RevokedDevice { device_id }) => {
                tracing::info!(%device_id, "refused a revoked device");
                refused(
                    ErrorCode::DeviceRevoked,
                    "this device was revoked; its insights stay on the phone, and it needs a new invitation to sync \
                     again",
                )
            }
            Some(Authenticated::Expired) => {
                refused(ErrorCode::TokenExpired, "this token has expired; ask an admin for a new one")
            }
            Some(Authenticated::Disabled) => {
                refused(ErrorCode::PersonDisabled, "the person this token belongs to has been disabled")
            }
            None => UseCaseError::unauthorized(),
        };
        self.record_refused_credential(&refusal, &context).await?;
        Err(refusal)
    }

    /// A refused credential in the audit trail: nobody is known to act, so the actor is `anonymous`; within the
    /// network's budget (`UseCases::record_anonymous_refusal`).
    async fn record_refused_credential(
        &self,
        refusal: &UseCaseError,
        context: &RequestContext,
    ) -> Result<(), UseCaseError> {
        let detail = serde_json::json!({ "code": refusal.code().as_str() });
        self.record_anonymous_refusal(context, "credential.refused", "bearer token", detail).await
    }
}

impl UseCases {
    /// `POST /api/v1/enrol`: a phone trades an invitation code for a new collector, device and token. Anyone may try
    /// (the code is the credential); the adapter holds the per-address budget of unknown codes.
    ///
    /// # Errors
    /// The code is unknown, expired, used up or revoked, or the store fails.
    pub async fn enrol(
        &self,
        secret: &InvitationSecret,
        code: &str,
        label: &str,
        id_key: Option<&[u8; ID_KEY_BYTES]>,
        now: OffsetDateTime,
        context: RequestContext,
    ) -> Result<(NewDevice, String), RedeemError> {
        let redeemed = crate::auth::redeem_invitation(self.store.as_ref(), secret, code, label, id_key, now).await;
        // Recorded once the outcome is known (the new device is the actor); the code itself never is.
        let (actor, role, verb, target, outcome, detail) = match &redeemed {
            Ok((device, _)) => (
                format!("device:{}", device.device_id),
                "collector",
                "device.enrol",
                format!("collector:{}", device.collector_id),
                AuditOutcome::Allowed,
                serde_json::json!({}),
            ),
            Err(RedeemError::Database(_)) => return redeemed,
            Err(refusal) => (
                "anonymous".to_owned(),
                "",
                "enrol.refused",
                "invitation code".to_owned(),
                AuditOutcome::Refused,
                serde_json::json!({ "code": refusal.code().as_str() }),
            ),
        };
        let entry = NewAuditEntry {
            actor,
            role: role.to_owned(),
            action: verb.to_owned(),
            target,
            outcome,
            client_addr: context.client_addr.map(|address| address.to_string()),
            request_id: context.request_id,
            detail,
        };
        self.store.append_audit(entry).await.map_err(RedeemError::Database)?;
        redeemed
    }
}
