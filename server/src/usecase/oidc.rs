//! Signing in through the organisation's identity provider (OpenID Connect, docs/web.md): begun here, finished by
//! the provider's redirect back, ending in `open_session` like a password sign-in.

use super::sign_in::NewSession;
use super::{UseCaseError, UseCases};
use crate::domain::RequestContext;

impl UseCases {
    /// Whether an identity provider is configured (the sign-in page offers it).
    #[must_use]
    pub fn oidc_enabled(&self) -> bool {
        false
    }

    /// Begins a sign-in: the provider's authorization URL to send the browser to. `return_to` is a path of this
    /// server to go to once signed in.
    ///
    /// # Errors
    /// No provider is configured or reachable; the store fails.
    pub async fn begin_oidc_sign_in(&self, return_to: &str) -> Result<String, UseCaseError> {
        let _ = return_to;
        Err(UseCaseError::Internal(anyhow::anyhow!("no identity provider is configured")))
    }

    /// Finishes a sign-in from the provider's redirect (`code`, `state`).
    ///
    /// # Errors
    /// `sign_in_state_invalid` (unknown, used or late `state`), `identity_refused` (the ID token does not verify,
    /// or names no verified email), `person_unknown` (nobody added that email), `person_disabled`; the store fails.
    pub async fn finish_oidc_sign_in(
        &self,
        code: &str,
        state: &str,
        context: RequestContext,
    ) -> Result<NewSession, UseCaseError> {
        let _ = (code, state, context);
        Err(UseCaseError::Internal(anyhow::anyhow!("no identity provider is configured")))
    }
}
