//! Signing in through an organisation's identity provider with OpenID Connect (docs/web.md): the authorization code
//! flow with PKCE, `state` and `nonce`, the ID token verified by the `openidconnect` crate (signature against the
//! provider's published keys, issuer, audience, expiry, nonce). Nothing here is hand-rolled validation: this module
//! only says which checks to ask for and reads the verified claims.
//!
//! The provider is described by its discovery document, read at the first sign-in rather than at start, so the
//! server starts while the provider is down; a failed read is retried at the next sign-in, and a good one is kept
//! for `DESCRIPTION_FRESH_FOR` (then read again, so rotated signing keys are picked up).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::Role;

/// The path of this server the provider sends the browser back to.
pub const CALLBACK_PATH: &str = "/sign-in/oidc/callback";

/// How long a read discovery document (and the signing keys it names) is used before it is read again.
const DESCRIPTION_FRESH_FOR: Duration = Duration::from_secs(60 * 60);

/// How long one request to the provider may take (discovery, keys, the code exchange).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the identity provider (`--oidc-issuer`, `--oidc-client-id`, `--oidc-client-secret`, and the optional
/// group-to-role mapping). Its `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL; its `/.well-known/openid-configuration` is read at the first sign-in.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The ID token claim holding the person's groups (`groups`, say): with `role_map`, a person not added by an admin
    /// is added on first sign-in with the role their group maps to. `None`: only people an admin added sign in.
    pub role_claim: Option<String>,
    /// `GROUP=ROLE` pairs, first match wins.
    pub role_map: Vec<(String, Role)>,
    /// Take an `email` claim that comes without `email_verified` as verified: for a provider that only issues
    /// addresses its own organisation controls (a single-tenant Microsoft Entra ID sends no `email_verified`). An
    /// explicit `email_verified: false` is refused all the same.
    pub trust_email: bool,
}

impl OidcConfig {
    /// The role a person with these groups is added with at first sign-in: the first pair of `role_map` naming one of
    /// their groups, with that group. `None` when no claim or map is configured, or no group matches.
    #[must_use]
    pub fn role_for(&self, groups: &[String]) -> Option<(String, Role)> {
        self.role_claim.as_ref()?;
        self.role_map.iter().find(|(group, _)| groups.iter().any(|held| held == group)).cloned()
    }
}

/// Why a sign-in through the provider did not give a verified person. The detail is for the log; a person is told
/// only that the provider's answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The discovery document (or the keys it names) could not be read or made no sense.
    #[error("the identity provider at {issuer} cannot be used: {detail}")]
    ProviderUnavailable { issuer: String, detail: String },
    /// The token endpoint refused the code (or could not be reached).
    #[error("the identity provider did not exchange the code: {0}")]
    Exchange(String),
    /// The ID token is missing or does not verify (signature, issuer, audience, expiry, nonce, access token hash).
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    /// The ID token names no email address, or one the provider has not verified.
    #[error("the ID token has no verified email address ({0})")]
    EmailUnverified(String),
}

impl OidcError {
    /// A word for the audit trail (which never holds the detail).
    #[must_use]
    pub fn why(&self) -> &'static str {
        match self {
            OidcError::ProviderUnavailable { .. } => "provider_unavailable",
            OidcError::Exchange(_) => "code_exchange",
            OidcError::IdToken(_) => "id_token",
            OidcError::EmailUnverified(_) => "email_unverified",
        }
    }
}

/// A sign-in begun: the URL to send the browser to, and what to keep until it comes back (the `state` to find this
/// again by, the `nonce` the ID token must carry, the PKCE verifier the code exchange must show).
pub struct AuthorizationStart {
    pub url: String,
    pub state: SecretString,
    pub nonce: SecretString,
    pub pkce_verifier: SecretString,
}

/// The person the provider vouched for, from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The `email` claim, which the provider said it verified.
    pub email: String,
    /// The provider's stable id for the person (`sub`), for the log.
    pub subject: String,
    /// The groups in the configured role claim (empty without one).
    pub groups: Vec<String>,
}

/// Every claim of the ID token that OpenID Connect does not name itself; the role claim is read from here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct OtherClaims(HashMap<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

type IdTokenFieldsWithOthers = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The crate's core client, reading the other claims too, as discovery makes it (authorization endpoint known,
/// token and userinfo endpoints as the provider says).
type ProviderClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdTokenFieldsWithOthers, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The provider as last described.
struct Described {
    client: ProviderClient,
    read_at: Instant,
}

/// This server as a client of the organisation's identity provider.
pub struct OidcClient {
    config: OidcConfig,
    issuer: IssuerUrl,
    redirect_url: RedirectUrl,
    http: openidconnect::reqwest::Client,
    described: tokio::sync::Mutex<Option<Arc<Described>>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OidcClient")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .field("redirect_url", &self.redirect_url.as_str())
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// A client for the provider `config` names, whose browsers come back to `<public_base>/sign-in/oidc/callback`
    /// (`public_base`: the public URL, or `http://` and the bound address). Reads nothing from the provider yet.
    ///
    /// # Errors
    /// The issuer or the redirect URL is not a URL; the HTTP client cannot be built.
    pub fn new(config: OidcConfig, public_base: &str) -> anyhow::Result<OidcClient> {
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|error| anyhow::anyhow!("--oidc-issuer '{}' is not a URL: {error}", config.issuer))?;
        let redirect = format!("{}{CALLBACK_PATH}", public_base.trim_end_matches('/'));
        let redirect_url = RedirectUrl::new(redirect.clone())
            .map_err(|error| anyhow::anyhow!("the sign-in callback '{redirect}' is not a URL: {error}"))?;
        // The provider's answers are never followed elsewhere: a redirect from it could point the server at an
        // address of its own network (the crate's advice against server-side request forgery).
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|error| anyhow::anyhow!("building the identity provider's HTTP client: {error}"))?;
        tracing::info!(
            issuer = %config.issuer,
            callback = %redirect_url.as_str(),
            "sign-in through the identity provider is on; its discovery document is read at the first sign-in"
        );
        Ok(OidcClient { config, issuer, redirect_url, http, described: tokio::sync::Mutex::new(None) })
    }

    #[must_use]
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Where the provider sends browsers back to.
    #[must_use]
    pub fn redirect_url(&self) -> &str {
        self.redirect_url.as_str()
    }

    /// The provider as described by its discovery document, read now if never read, or read long enough ago.
    async fn described(&self) -> Result<Arc<Described>, OidcError> {
        let mut described = self.described.lock().await;
        if let Some(known) = described.as_ref().filter(|known| known.read_at.elapsed() < DESCRIPTION_FRESH_FOR) {
            return Ok(known.clone());
        }
        match self.discover().await {
            Ok(client) => {
                tracing::info!(issuer = %self.config.issuer, "read the identity provider's discovery document");
                let fresh = Arc::new(Described { client, read_at: Instant::now() });
                *described = Some(fresh.clone());
                Ok(fresh)
            }
            Err(error) => match described.as_ref() {
                // Keys the provider published an hour ago still verify today's tokens, most likely.
                Some(stale) => {
                    tracing::warn!(%error, "cannot read the identity provider's discovery document again; using the one read before");
                    Ok(stale.clone())
                }
                None => {
                    tracing::error!(%error, "cannot read the identity provider's discovery document; sign-in through it fails until it can");
                    Err(error)
                }
            },
        }
    }

    async fn discover(&self) -> Result<ProviderClient, OidcError> {
        let metadata =
            CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await.map_err(|error| {
                OidcError::ProviderUnavailable { issuer: self.config.issuer.clone(), detail: error_chain(&error) }
            })?;
        let secret = ClientSecret::new(self.config.client_secret.expose_secret().to_owned());
        Ok(ProviderClient::from_provider_metadata(metadata, ClientId::new(self.config.client_id.clone()), Some(secret))
            .set_redirect_uri(self.redirect_url.clone()))
    }

    /// Begins a sign-in: the provider's authorization URL (code flow, scopes `openid email profile`, PKCE S256, a
    /// fresh `state` and `nonce`; the role claim asked for by the `claims` parameter when one is configured).
    ///
    /// # Errors
    /// The provider cannot be described.
    pub async fn begin(&self) -> Result<AuthorizationStart, OidcError> {
        let described = self.described().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = described
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        if let Some(claim) = &self.config.role_claim {
            let claims = serde_json::json!({ "id_token": { claim.as_str(): null } });
            request = request.add_extra_param("claims", claims.to_string());
        }
        let (url, state, nonce) = request.url();
        Ok(AuthorizationStart {
            url: url.to_string(),
            state: SecretString::from(state.secret().clone()),
            nonce: SecretString::from(nonce.secret().clone()),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Finishes a sign-in: exchanges `code` (with the client secret and the PKCE verifier) and verifies the ID token
    /// it brings (signature against the provider's keys, issuer, audience, expiry, `nonce`, and the access token's
    /// hash where the token has one). The person is the token's `email`, which must be verified.
    ///
    /// # Errors
    /// The provider cannot be described or will not exchange the code; the ID token is missing or does not verify;
    /// it names no verified email address.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &SecretString,
        pkce_verifier: &SecretString,
    ) -> Result<VerifiedIdentity, OidcError> {
        let described = self.described().await?;
        let client = &described.client;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| OidcError::Exchange(error_chain(&error)))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose_secret().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|error| OidcError::Exchange(error_chain(&error)))?;
        let id_token =
            response.id_token().ok_or_else(|| OidcError::IdToken("the token response holds no ID token".into()))?;
        let verifier = client.id_token_verifier();
        let expected_nonce = Nonce::new(nonce.expose_secret().to_owned());
        let claims =
            id_token.claims(&verifier, &expected_nonce).map_err(|error| OidcError::IdToken(error_chain(&error)))?;
        if let Some(expected_hash) = claims.access_token_hash() {
            let algorithm = id_token.signing_alg().map_err(|error| OidcError::IdToken(error_chain(&error)))?;
            let key = id_token.signing_key(&verifier).map_err(|error| OidcError::IdToken(error_chain(&error)))?;
            let actual_hash = AccessTokenHash::from_token(response.access_token(), algorithm, key)
                .map_err(|error| OidcError::IdToken(error_chain(&error)))?;
            if actual_hash != *expected_hash {
                return Err(OidcError::IdToken("the access token does not match the ID token's at_hash".into()));
            }
        }
        let subject = claims.subject().as_str().to_owned();
        let Some(email) = claims.email() else {
            return Err(OidcError::EmailUnverified(format!("subject {subject} has no email claim")));
        };
        let verified = match claims.email_verified() {
            Some(verified) => verified,
            None => self.config.trust_email,
        };
        if !verified {
            return Err(OidcError::EmailUnverified(format!("subject {subject}: email_verified is not true")));
        }
        let groups = match &self.config.role_claim {
            Some(claim) => groups_in(claims.additional_claims().0.get(claim)),
            None => Vec::new(),
        };
        Ok(VerifiedIdentity { email: email.as_str().to_owned(), subject, groups })
    }
}

/// A groups claim as providers write it: a list of names, or one name.
fn groups_in(claim: Option<&serde_json::Value>) -> Vec<String> {
    match claim {
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect()
        }
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// An error with its causes, for the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(role_claim: Option<&str>) -> OidcConfig {
        OidcConfig {
            issuer: "https://login.example.org/tenant".into(),
            client_id: "grapevine".into(),
            client_secret: SecretString::from("not-for-logs"),
            role_claim: role_claim.map(str::to_owned),
            role_map: vec![("analysts".into(), Role::Analyst), ("board".into(), Role::Board)],
            trust_email: false,
        }
    }

    #[test]
    fn the_first_pair_of_the_map_naming_a_group_of_the_person_gives_their_role() {
        let groups = vec!["board".to_owned(), "analysts".to_owned()];
        assert_eq!(config(Some("groups")).role_for(&groups), Some(("analysts".into(), Role::Analyst)));
        assert_eq!(config(Some("groups")).role_for(&["staff".to_owned()]), None);
        assert_eq!(config(None).role_for(&groups), None, "without a role claim nobody is added");
    }

    #[test]
    fn groups_are_a_list_or_one_name() {
        assert_eq!(groups_in(Some(&serde_json::json!(["a", 3, "b"]))), vec!["a", "b"]);
        assert_eq!(groups_in(Some(&serde_json::json!("a"))), vec!["a"]);
        assert!(groups_in(None).is_empty());
    }

    #[test]
    fn the_callback_is_under_the_public_url_and_the_secret_is_not_shown() {
        let client = OidcClient::new(config(None), "https://grapevine.example.org/").unwrap();
        assert_eq!(client.redirect_url(), "https://grapevine.example.org/sign-in/oidc/callback");
        let shown = format!("{client:?} {:?}", client.config());
        assert!(!shown.contains("not-for-logs"), "{shown}");
    }
}
