//! People, their roles and scopes, and API tokens (`grapevine user …`, `grapevine token …`). The rules for each input
//! (an email, a role, a scope, an expiry) are `crate::people`'s; this is the door: checked, recorded, then done.

use serde_json::json;
use time::Duration;
use uuid::Uuid;

use super::{UseCaseError, UseCases};
use crate::domain::{Action, Principal, Role};
use crate::people::{self, IssuedToken, PeopleError};
use crate::store::{ApiTokenInfo, PersonInfo, Revoked};

impl From<PeopleError> for UseCaseError {
    fn from(error: PeopleError) -> Self {
        let code = error.code();
        match error {
            PeopleError::Database(error) => UseCaseError::Internal(error),
            PeopleError::PersonUnknown(_) => UseCaseError::NotFound { code, message: error.to_string() },
            refusal => UseCaseError::Invalid { code, message: refusal.to_string() },
        }
    }
}

impl UseCases {
    /// Adds a person with a role and a scope (`areas`: `SET:CODE,…`; `None`, everything).
    ///
    /// # Errors
    /// Refused; a bad email, role or scope, or an email taken (nothing written); the store fails.
    pub async fn add_person(
        &self,
        principal: &Principal,
        email: &str,
        role: &str,
        areas: Option<&str>,
    ) -> Result<PersonInfo, UseCaseError> {
        let target = format!("person:{}", email.trim().to_lowercase());
        let detail = json!({ "role": role, "areas": areas });
        self.audited(principal, Action::ManagePeople, "person.add", &target, detail, async {
            Ok(people::add_person(self.store.as_ref(), email, role, areas).await?)
        })
        .await
    }

    /// Everyone, in the order they were added.
    ///
    /// # Errors
    /// Refused; the store fails.
    pub async fn people(&self, principal: &Principal) -> Result<Vec<PersonInfo>, UseCaseError> {
        self.audited_listing(principal, Action::ManagePeople, "person.list", "people", self.store.people()).await
    }

    /// Gives a person a new role and, with `areas`, a new scope.
    ///
    /// # Errors
    /// Refused; a bad role or scope; no such person; the store fails.
    pub async fn set_role(
        &self,
        principal: &Principal,
        email: &str,
        role: &str,
        areas: Option<&str>,
    ) -> Result<PersonInfo, UseCaseError> {
        let target = format!("person:{}", email.trim().to_lowercase());
        let detail = json!({ "role": role, "areas": areas });
        self.audited(principal, Action::ManagePeople, "person.set_role", &target, detail, async {
            Ok(people::set_role(self.store.as_ref(), email, role, areas).await?)
        })
        .await
    }

    /// Disables a person: their tokens are refused from the next request on every node. `false`: disabled already.
    ///
    /// # Errors
    /// Refused; no such person; the store fails.
    pub async fn disable_person(&self, principal: &Principal, email: &str) -> Result<bool, UseCaseError> {
        let target = format!("person:{}", email.trim().to_lowercase());
        self.audited(principal, Action::ManagePeople, "person.disable", &target, json!({}), async {
            Ok(people::disable(self.store.as_ref(), email).await? == Revoked::Now)
        })
        .await
    }

    /// Issues a token of a person, expiring after `expires` if given.
    ///
    /// # Errors
    /// Refused; no such person, or a disabled one; the store fails.
    pub async fn issue_person_token(
        &self,
        principal: &Principal,
        email: &str,
        label: &str,
        expires: Option<Duration>,
    ) -> Result<IssuedToken, UseCaseError> {
        let target = format!("person:{}", email.trim().to_lowercase());
        let detail = json!({ "expires_in_hours": expires.map(Duration::whole_hours) });
        self.audited(principal, Action::ManageTokens, "token.add", &target, detail, async {
            Ok(people::issue_person_token(self.store.as_ref(), email, label, expires).await?)
        })
        .await
    }

    /// Issues a token of an unscoped service account with `role` (`grapevine token add --role R --label L`).
    ///
    /// # Errors
    /// Refused; the store fails.
    pub async fn issue_service_token(
        &self,
        principal: &Principal,
        role: Role,
        label: &str,
    ) -> Result<(Uuid, String), UseCaseError> {
        let detail = json!({ "role": role.as_str(), "label": label });
        self.audited(principal, Action::ManageTokens, "token.add", "service account", detail, async {
            Ok(crate::auth::issue_api_token(self.store.as_ref(), role, label).await?)
        })
        .await
    }

    /// Every API token (never the token itself), with whose it is.
    ///
    /// # Errors
    /// Refused; the store fails.
    pub async fn api_tokens(&self, principal: &Principal) -> Result<Vec<ApiTokenInfo>, UseCaseError> {
        self.audited_listing(principal, Action::ManageTokens, "token.list", "api_tokens", self.store.api_tokens()).await
    }

    /// Revokes an API token. `false`: it was revoked already.
    ///
    /// # Errors
    /// Refused; no such token; the store fails.
    pub async fn revoke_api_token(&self, principal: &Principal, id: Uuid) -> Result<bool, UseCaseError> {
        self.audited(principal, Action::ManageTokens, "token.revoke", &format!("token:{id}"), json!({}), async {
            super::cohorts::known(self.store.revoke_api_token(id).await?, "API token", id, "grapevine token list")
        })
        .await
    }
}
