//! Cohorts of collectors: invitations and devices (`grapevine invite …`, `grapevine device …`).

use std::path::{Path, PathBuf};

use grapevine_sync_proto::ErrorCode;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{UseCaseError, UseCases};
use crate::domain::{Action, Principal};
use crate::invitations::{self, InvitationSecret};
use crate::store::{DeviceInfo, InvitationInfo, NewDevice, Revoked};

/// A new invitation: its id and the code, which is shown once and stored only as a keyed hash.
#[derive(Debug)]
pub struct NewInvitation {
    pub id: Uuid,
    pub code: String,
    pub expires_at: OffsetDateTime,
}

impl UseCases {
    /// Registers a device for a new collector, or another device of `collector`; returns it with its token.
    ///
    /// # Errors
    /// Refused; the collector does not exist; the store fails.
    pub async fn add_device(
        &self,
        principal: &Principal,
        label: &str,
        collector: Option<Uuid>,
    ) -> Result<(NewDevice, String), UseCaseError> {
        let target = collector.map_or_else(|| "new collector".to_owned(), |id| format!("collector:{id}"));
        self.audited(principal, Action::ManageDevices, "device.add", &target, json!({}), async {
            Ok(crate::auth::issue_device(self.store.as_ref(), label, collector).await?)
        })
        .await
    }

    /// Every device (of one collector, if given).
    ///
    /// # Errors
    /// Refused; the store fails.
    pub async fn devices(
        &self,
        principal: &Principal,
        collector: Option<Uuid>,
    ) -> Result<Vec<DeviceInfo>, UseCaseError> {
        let target = collector.map_or_else(|| "devices".to_owned(), |id| format!("collector:{id}"));
        self.audited_listing(principal, Action::ManageDevices, "device.list", &target, self.store.devices(collector))
            .await
    }

    /// Revokes a device: its next sync is refused. `false`: it was revoked already.
    ///
    /// # Errors
    /// Refused; `NotFound` (`not_found`) for no such device; the store fails.
    pub async fn revoke_device(&self, principal: &Principal, id: Uuid) -> Result<bool, UseCaseError> {
        self.audited(principal, Action::ManageDevices, "device.revoke", &format!("device:{id}"), json!({}), async {
            known(self.store.revoke_device(id).await?, "device", id, "grapevine device list")
        })
        .await
    }

    /// Makes an invitation: `uses` enrolments until `expires_at`, its code hashed with the invitation secret.
    ///
    /// # Errors
    /// Refused; an empty label; the store fails.
    pub async fn create_invitation(
        &self,
        principal: &Principal,
        secret: &InvitationSecret,
        label: &str,
        uses: i64,
        valid_for: std::time::Duration,
    ) -> Result<NewInvitation, UseCaseError> {
        let label = label.trim();
        if label.is_empty() {
            return Err(UseCaseError::Invalid {
                code: ErrorCode::InvalidRequest,
                message: "an invitation needs a label saying who it is for".into(),
            });
        }
        let detail = json!({ "uses": uses, "valid_for_seconds": valid_for.as_secs() });
        self.audited(principal, Action::ManageInvitations, "invitation.create", "invitations", detail, async {
            let code = invitations::new_code();
            let expires_at = OffsetDateTime::now_utc() + valid_for;
            let id = self.store.add_invitation(label, &secret.hash_code(&code), uses, expires_at).await?;
            Ok(NewInvitation { id, code, expires_at })
        })
        .await
    }

    /// Every invitation, newest first.
    ///
    /// # Errors
    /// Refused; the store fails.
    pub async fn invitations(&self, principal: &Principal) -> Result<Vec<InvitationInfo>, UseCaseError> {
        self.audited_listing(
            principal,
            Action::ManageInvitations,
            "invitation.list",
            "invitations",
            self.store.invitations(),
        )
        .await
    }

    /// Revokes an invitation: its code enrols no one from now on. `false`: it was revoked already.
    ///
    /// # Errors
    /// Refused; `NotFound` for no such invitation; the store fails.
    pub async fn revoke_invitation(&self, principal: &Principal, id: Uuid) -> Result<bool, UseCaseError> {
        let target = format!("invitation:{id}");
        self.audited(principal, Action::ManageInvitations, "invitation.revoke", &target, json!({}), async {
            known(self.store.revoke_invitation(id).await?, "invitation", id, "grapevine invite list")
        })
        .await
    }

    /// The invitation secret for `database_url` (`invitations::open_secret`), made on first use.
    ///
    /// # Errors
    /// The secret file cannot be read or made, or belongs to another database.
    pub async fn invitation_secret(
        &self,
        path: Option<&Path>,
        database_url: &str,
    ) -> Result<InvitationSecret, UseCaseError> {
        invitations::open_secret(path, database_url, self.store.as_ref())
            .await
            .map_err(|error| anyhow::Error::from(error).into())
    }

    /// Replaces the invitation secret (`grapevine invite new-secret`); returns where it was written and the secret.
    ///
    /// # Errors
    /// Refused; the file cannot be written; the store fails.
    pub async fn new_invitation_secret(
        &self,
        principal: &Principal,
        path: Option<&Path>,
        database_url: &str,
    ) -> Result<(PathBuf, InvitationSecret), UseCaseError> {
        self.audited(
            principal,
            Action::ManageInvitations,
            "invitation.new_secret",
            "invitation_secret",
            json!({}),
            async {
                invitations::new_secret(path, database_url, self.store.as_ref())
                    .await
                    .map_err(|error| anyhow::Error::from(error).into())
            },
        )
        .await
    }
}

/// Whether a revocation happened now (`false`: it was revoked already, nothing changed); no such thing is the one
/// "not found" answer, naming where to look.
pub(crate) fn known(revoked: Revoked, what: &str, id: Uuid, listing: &str) -> Result<bool, UseCaseError> {
    match revoked {
        Revoked::Now => Ok(true),
        Revoked::Already => Ok(false),
        Revoked::Unknown => Err(UseCaseError::NotFound {
            code: ErrorCode::NotFound,
            message: format!("no {what} has the id {id} (see `{listing}`)"),
        }),
    }
}
