//! Who is calling: a bearer token becomes a `Principal`, or a refusal with its code.

use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use grapevine_sync_proto::ErrorCode;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{UseCaseError, UseCases};
use crate::auth::hash_token;
use crate::domain::{Actor, Principal, RequestContext, Role, Scope};
use crate::invitations::InvitationSecret;
use crate::store::{NewDevice, RedeemError};

impl UseCases {
    /// The principal a bearer token stands for.
    ///
    /// # Errors
    /// `Unauthenticated` (`unauthorized`) for no such token; (`device_revoked`) for a revoked device's; the store
    /// fails.
    pub async fn authenticate(&self, token: &str, context: RequestContext) -> Result<Principal, UseCaseError> {
        use crate::store::Principal as Found;
        let principal = |actor, role| Principal { actor, role, scope: Scope::Everything, context: context.clone() };
        match self.store.authenticate(&hash_token(token)).await? {
            Some(Found::Device { device_id, collector_id }) => {
                Ok(principal(Actor::Device { device_id, collector_id }, Role::Collector))
            }
            Some(Found::Api { role }) => {
                Ok(principal(Actor::ServiceAccount { token_id: Uuid::nil(), label: String::new() }, role))
            }
            Some(Found::RevokedDevice { device_id }) => {
                tracing::info!(%device_id, "refused a revoked device");
                Err(UseCaseError::Unauthenticated {
                    code: ErrorCode::DeviceRevoked,
                    message: "this device was revoked; its insights stay on the phone, and it needs a new invitation \
                              to sync again"
                        .into(),
                })
            }
            None => Err(UseCaseError::unauthorized()),
        }
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
    ) -> Result<(NewDevice, String), RedeemError> {
        crate::auth::redeem_invitation(self.store.as_ref(), secret, code, label, id_key, now).await
    }
}
