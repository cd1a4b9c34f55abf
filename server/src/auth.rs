//! Bearer tokens: made here, shown once, stored only as a SHA-256 hash.
//!
//! Unlike invitation codes, tokens are not keyed with a server secret: each carries 256 random bits, so its plain
//! SHA-256 in a stolen database cannot be searched back to the token, and every request can be checked without a
//! secret file on the node.

use axum::http::request::Parts;
use axum::http::HeaderMap;
use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::invitations::InvitationSecret;
use crate::store::{NewDevice, RedeemError, Role, Store};

/// The kind of holder a token is for; it prefixes the token so a leaked one is recognisable in a log or a paste.
#[derive(Debug, Clone, Copy)]
pub enum TokenKind {
    Device,
    Api,
}

/// A new random token: a prefix and 256 bits of randomness in hex.
#[must_use]
pub fn new_token(kind: TokenKind) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let prefix = match kind {
        TokenKind::Device => "gvd_",
        TokenKind::Api => "gva_",
    };
    format!("{prefix}{}", hex(&secret))
}

/// Registers a device (for a new collector, or another device of an existing one); returns it with its token, which
/// is stored only as a hash.
///
/// # Errors
/// The collector does not exist, or the store fails.
pub async fn issue_device(
    store: &dyn Store,
    label: &str,
    collector: Option<Uuid>,
) -> anyhow::Result<(NewDevice, String)> {
    let token = new_token(TokenKind::Device);
    let device = store.add_device(label, &hash_token(&token), collector).await?;
    Ok((device, token))
}

/// Enrols a phone with an invitation code (looked up by its hash under `secret`, or its legacy hash): a new
/// collector and device, and the device's token (stored only as a hash). `label` names the device; empty, it takes
/// the invitation's label. `id_key` is the phone's id key, kept with the device.
///
/// # Errors
/// The code is unknown, expired, used up or revoked, or the store fails.
pub async fn redeem_invitation(
    store: &dyn Store,
    secret: &InvitationSecret,
    code: &str,
    label: &str,
    id_key: Option<&[u8; ID_KEY_BYTES]>,
    now: time::OffsetDateTime,
) -> Result<(NewDevice, String), RedeemError> {
    let token = new_token(TokenKind::Device);
    let device = store.redeem_invitation(&secret.code_hashes(code), label, &hash_token(&token), id_key, now).await?;
    Ok((device, token))
}

/// Creates an API token with a role; returns its id and the token, which is stored only as a hash.
///
/// # Errors
/// The store fails.
pub async fn issue_api_token(store: &dyn Store, role: Role, label: &str) -> anyhow::Result<(Uuid, String)> {
    let token = new_token(TokenKind::Api);
    let id = store.add_api_token(role, label, &hash_token(&token)).await?;
    Ok((id, token))
}

/// The hash under which a token is stored and looked up.
#[must_use]
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The bearer token of a request: the `Authorization: Bearer` header, or else a `token` query parameter (browsers
/// cannot set headers on a WebSocket), percent-decoded as any query value is.
#[must_use]
pub fn bearer_token(parts: &Parts) -> Option<String> {
    from_header(&parts.headers).or_else(|| {
        let query = parts.uri.query()?;
        form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "token").map(|(_, value)| value.into_owned())
    })
}

fn from_header(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, authorization: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder().uri(uri);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_are_unique_prefixed_and_hash_stably() {
        let a = new_token(TokenKind::Device);
        let b = new_token(TokenKind::Device);
        assert_ne!(a, b);
        assert!(a.starts_with("gvd_") && a.len() == 4 + 64);
        assert!(new_token(TokenKind::Api).starts_with("gva_"));
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_header_wins_over_the_query() {
        assert_eq!(bearer_token(&parts("/sync", Some("Bearer abc"))), Some("abc".into()));
        assert_eq!(bearer_token(&parts("/sync", Some("bearer  abc "))), Some("abc".into()));
        assert_eq!(bearer_token(&parts("/sync?x=1&token=q", None)), Some("q".into()));
        assert_eq!(bearer_token(&parts("/sync?token=q", Some("Bearer h"))), Some("h".into()));
        assert_eq!(bearer_token(&parts("/sync?token=gvd%5Fab%2Bc", None)), Some("gvd_ab+c".into()), "percent-decoded");
        assert_eq!(bearer_token(&parts("/sync", Some("Basic abc"))), None);
        assert_eq!(bearer_token(&parts("/sync", None)), None);
    }
}
