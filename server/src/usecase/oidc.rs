//! Signing in through the organisation's identity provider (OpenID Connect, docs/web.md): begun here, finished by
//! the provider's redirect back, ending in `open_session` like a password sign-in.
//!
//! The pending sign-in (`state`'s hash, `nonce`, PKCE verifier, where to return) is a row of the store, taken once,
//! so any node can finish a sign-in another began and no `state` finishes twice. The person is the ID token's
//! verified `email`; someone nobody added is refused unless the configured role claim maps one of their groups to a
//! role, when they are added with it (unscoped), recorded as added by the identity provider.

use std::sync::Arc;
use std::time::Duration;

use grapevine_sync_proto::ErrorCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use super::sign_in::NewSession;
use super::{UseCaseError, UseCases};
use crate::audit::{AuditOutcome, NewAuditEntry};
use crate::auth::hash_token;
use crate::domain::{shown, RequestContext};
use crate::identity::oidc::{OidcClient, VerifiedIdentity};
use crate::people::PeopleError;
use crate::store::{PendingSignIn, PersonInfo, SignInMethod};

/// How long a begun sign-in may take at the provider.
pub const SIGN_IN_STATE_VALID: Duration = Duration::from_secs(10 * 60);

/// A finished sign-in: the session, and the path of this server the person set out for.
#[derive(Debug)]
pub struct FinishedOidcSignIn {
    pub session: NewSession,
    pub return_to: String,
}

fn refused(code: ErrorCode, message: String) -> UseCaseError {
    UseCaseError::Unauthenticated { code, message }
}

impl UseCases {
    /// The same door, signing people in through the identity provider `client` describes.
    #[must_use]
    pub fn with_oidc(self, client: OidcClient) -> UseCases {
        UseCases { oidc: Some(Arc::new(client)), ..self }
    }

    /// Whether an identity provider is configured (the sign-in page offers it).
    #[must_use]
    pub fn oidc_enabled(&self) -> bool {
        self.oidc.is_some()
    }

    fn oidc_client(&self) -> Result<&OidcClient, UseCaseError> {
        self.oidc
            .as_deref()
            .ok_or_else(|| UseCaseError::Internal(anyhow::anyhow!("no identity provider is configured")))
    }

    /// Begins a sign-in: the provider's authorization URL to send the browser to. `return_to` is a path of this
    /// server to go to once signed in (anything else is `/`).
    ///
    /// # Errors
    /// No provider is configured or reachable; the store fails.
    pub async fn begin_oidc_sign_in(&self, return_to: &str) -> Result<String, UseCaseError> {
        let client = self.oidc_client()?;
        let start = client.begin().await.map_err(|error| UseCaseError::Internal(anyhow::Error::new(error)))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let pending = PendingSignIn {
            state_hash: hash_token(start.state.expose_secret()),
            nonce: start.nonce.expose_secret().to_owned(),
            pkce_verifier: start.pkce_verifier.expose_secret().to_owned(),
            return_to: crate::domain::local_path(return_to).unwrap_or("/").to_owned(),
            expires_at: now + i64::try_from(SIGN_IN_STATE_VALID.as_secs()).unwrap_or(i64::MAX),
        };
        self.store.save_sign_in_state(&pending, now).await?;
        Ok(start.url)
    }

    /// Finishes a sign-in from the provider's redirect (`code`, `state`): the session, and the path the person set
    /// out for when the sign-in began.
    ///
    /// # Errors
    /// `sign_in_state_invalid` (unknown, used or late `state`), `identity_refused` (the ID token does not verify,
    /// or names no verified email), `person_unknown` (nobody added that email), `person_disabled`; the store fails.
    pub async fn finish_oidc_sign_in(
        &self,
        code: &str,
        state: &str,
        context: RequestContext,
    ) -> Result<FinishedOidcSignIn, UseCaseError> {
        let client = self.oidc_client()?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        // Taken (deleted) before anything else, so a state is spent even by a sign-in that fails after.
        let pending = match self.store.take_sign_in_state(&hash_token(state)).await? {
            Some(pending) if now < pending.expires_at => pending,
            _ => {
                self.record_refused_sign_in(&context, "unknown", ErrorCode::SignInStateInvalid, "state").await?;
                return Err(super::sign_in::refused(ErrorCode::SignInStateInvalid));
            }
        };
        let nonce = SecretString::from(pending.nonce);
        let pkce_verifier = SecretString::from(pending.pkce_verifier);
        let identity = match client.finish(code, &nonce, &pkce_verifier).await {
            Ok(identity) => identity,
            Err(error) => {
                tracing::warn!(%error, request_id = ?context.request_id, "refused a sign-in through the identity provider");
                self.record_refused_sign_in(&context, "unknown", ErrorCode::IdentityRefused, error.why()).await?;
                return Err(super::sign_in::refused(ErrorCode::IdentityRefused));
            }
        };
        let Ok(email) = crate::people::normalise_email(&identity.email) else {
            tracing::warn!(email = %shown(&identity.email), "the identity provider's email claim is not an email address");
            self.record_refused_sign_in(&context, &identity.email, ErrorCode::IdentityRefused, "email_invalid").await?;
            return Err(super::sign_in::refused(ErrorCode::IdentityRefused));
        };
        let person = match self.store.person_with_password(&email).await? {
            Some((person, _)) => person,
            None => self.add_from_identity_provider(client, &identity, &email, &context).await?,
        };
        if person.disabled_at.is_some() {
            self.record_refused_sign_in(&context, &email, ErrorCode::PersonDisabled, "disabled").await?;
            return Err(super::sign_in::refused(ErrorCode::PersonDisabled));
        }
        let session = self.open_session(person, SignInMethod::OpenIdConnect, context).await?;
        Ok(FinishedOidcSignIn { session, return_to: pending.return_to })
    }

    /// Someone the provider vouched for whom nobody added: added with their group's role if the configuration maps
    /// one of their groups, else refused.
    async fn add_from_identity_provider(
        &self,
        client: &OidcClient,
        identity: &VerifiedIdentity,
        email: &str,
        context: &RequestContext,
    ) -> Result<PersonInfo, UseCaseError> {
        let Some((group, role)) = client.config().role_for(&identity.groups) else {
            self.record_refused_sign_in(context, email, ErrorCode::PersonUnknown, "not_added").await?;
            return Err(refused(
                ErrorCode::PersonUnknown,
                format!("{email} has no account here; ask an administrator to add you."),
            ));
        };
        let target = format!("person:{email}");
        let detail = json!({ "role": role.as_str(), "areas": null, "group": shown(&group) });
        self.record_identity_provider(client, context, &target, AuditOutcome::Allowed, detail).await?;
        match crate::people::add_person(self.store.as_ref(), email, role.as_str(), None).await {
            Ok(person) => Ok(person),
            // Two first sign-ins at once: the other added them.
            Err(PeopleError::EmailTaken(_)) => self
                .store
                .person_with_password(email)
                .await?
                .map(|(person, _)| person)
                .ok_or_else(|| UseCaseError::Internal(anyhow::anyhow!("{email} was taken, then not found"))),
            Err(error) => {
                let failed = json!({ "code": error.code().as_str() });
                self.record_identity_provider(client, context, &target, AuditOutcome::Failed, failed).await?;
                Err(error.into())
            }
        }
    }

    /// An entry whose actor is the identity provider (`identity_provider:<issuer>`): it, not a person, added someone.
    async fn record_identity_provider(
        &self,
        client: &OidcClient,
        context: &RequestContext,
        target: &str,
        outcome: AuditOutcome,
        detail: serde_json::Value,
    ) -> Result<(), UseCaseError> {
        let entry = NewAuditEntry {
            actor: format!("identity_provider:{}", client.config().issuer),
            role: String::new(),
            action: "person.add".into(),
            target: target.into(),
            outcome,
            client_addr: context.client_addr.map(|address| address.to_string()),
            request_id: context.request_id.clone(),
            detail,
        };
        self.store.append_audit(entry).await?;
        Ok(())
    }
}
