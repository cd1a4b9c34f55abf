//! Signing in through an organisation's identity provider with OpenID Connect (docs/web.md): the authorization code
//! flow with PKCE, `state` and `nonce`, the ID token verified by the `openidconnect` crate.

use secrecy::SecretString;

use crate::domain::Role;

/// How to reach the identity provider (`--oidc-issuer`, `--oidc-client-id`, `--oidc-client-secret`, and the optional
/// group-to-role mapping). Its `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL; its `/.well-known/openid-configuration` is read at start.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The ID token claim holding the person's groups (`groups`, say): with `role_map`, a person not added by an admin
    /// is added on first sign-in with the role their group maps to. `None`: only people an admin added sign in.
    pub role_claim: Option<String>,
    /// `GROUP=ROLE` pairs, first match wins.
    pub role_map: Vec<(String, Role)>,
}
