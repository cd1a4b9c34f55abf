//! Who a browser's user is: passwords for local accounts (`password`) and, where an organisation has one, its
//! identity provider (OpenID Connect, `oidc`). Neither knows HTTP or the store; the sign-in use cases
//! (`usecase::sign_in`) put them together with sessions and the audit trail.

pub mod oidc;
pub mod password;
