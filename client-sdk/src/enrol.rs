//! Enrolment: a phone redeems an invitation code for its own device token (`POST /api/v1/enrol`) and keeps it in its
//! store, so later syncs need only the store.

use std::fmt;

use serde::Deserialize;
use uuid::Uuid;

use crate::error::SdkError;
use crate::store::Store;
use crate::sync::{sync, SyncReport};

/// What a redeemed invitation gave this phone. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The server's HTTP base URL, as given to `enrol`.
    pub server_url: String,
    pub device_id: Uuid,
    pub collector_id: Uuid,
    pub(crate) token: String,
    /// When this phone enrolled (RFC 3339).
    pub enrolled_at: String,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolment")
            .field("server_url", &self.server_url)
            .field("device_id", &self.device_id)
            .field("collector_id", &self.collector_id)
            .field("token", &"<redacted>")
            .field("enrolled_at", &self.enrolled_at)
            .finish()
    }
}

impl Enrolment {
    /// The device's bearer token, for `sync`.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The server's sync endpoint: its HTTP base URL with `ws`/`wss` for `http`/`https`, and `/sync`.
    #[must_use]
    pub fn sync_url(&self) -> String {
        sync_url_for(&self.server_url)
    }
}

/// The WebSocket sync endpoint of a server given by its HTTP base URL.
#[must_use]
pub fn sync_url_for(server_http_url: &str) -> String {
    let base = server_http_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}/sync")
}

#[derive(Deserialize)]
struct EnrolResponse {
    device_id: Uuid,
    collector_id: Uuid,
    token: String,
}

/// Redeems an invitation `code` at the server (`server_http_url`, e.g. `http://127.0.0.1:8080`) for a new device
/// with `label` (empty: the invitation's label), and keeps the token in the store. The store's id key goes with the
/// request, so the insights captured from now on have ids only this phone may create on the server. Enrolling again
/// replaces the earlier enrolment; captured insights stay and sync under the new device.
///
/// # Errors
/// `SdkError::Server` with the server's code (`invitation_unknown`, `invitation_expired`, `invitation_used_up`,
/// `invitation_revoked`, `invalid_request`); `SdkError::Network` if the server cannot be reached; a storage failure.
pub async fn enrol(store: &Store, server_http_url: &str, code: &str, label: &str) -> Result<Enrolment, SdkError> {
    let url = format!("{}/api/v1/enrol", server_http_url.trim_end_matches('/'));
    let response = crate::tls::http_client()?
        .post(&url)
        .json(&serde_json::json!({ "code": code, "label": label, "id_key": store.id_key_hex() }))
        .timeout(crate::sync::IDLE_TIMEOUT)
        .send()
        .await
        .map_err(|error| SdkError::Network(format!("{url}: {}", crate::error::with_causes(&error))))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|error| SdkError::Network(format!("{url}: {error}")))?;
    if !status.is_success() {
        return Err(crate::sync::server_refusal(status.as_u16(), &body));
    }
    let enrolled: EnrolResponse = serde_json::from_slice(&body)
        .map_err(|error| SdkError::Network(format!("{url}: not an enrolment answer: {error}")))?;
    let enrolment = Enrolment {
        server_url: server_http_url.trim_end_matches('/').to_owned(),
        device_id: enrolled.device_id,
        collector_id: enrolled.collector_id,
        token: enrolled.token,
        enrolled_at: grapevine_sync_proto::document::format_time(time::OffsetDateTime::now_utc()),
    };
    store.save_enrolment(&enrolment).await?;
    Ok(enrolment)
}

/// Syncs with the server this phone enrolled with, using its stored token.
///
/// # Errors
/// `SdkError::NotEnrolled` if it has not enrolled; otherwise as [`sync`] (a revoked device gets `SdkError::Server`
/// with the code `device_revoked`, and its insights stay on the phone).
pub async fn sync_enrolled(store: &Store) -> Result<SyncReport, SdkError> {
    let enrolment = store.enrolment().await?.ok_or(SdkError::NotEnrolled)?;
    sync(store, &enrolment.sync_url(), enrolment.token()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_url_follows_the_http_url_and_the_token_stays_out_of_debug() {
        assert_eq!(sync_url_for("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/sync");
        assert_eq!(sync_url_for("https://grapevine.example.org/"), "wss://grapevine.example.org/sync");
        let enrolment = Enrolment {
            server_url: "http://localhost:8080".into(),
            device_id: Uuid::nil(),
            collector_id: Uuid::nil(),
            token: "gvd_secret".into(),
            enrolled_at: "2026-11-20T17:45:00Z".into(),
        };
        assert!(!format!("{enrolment:?}").contains("gvd_secret"));
        assert_eq!(enrolment.token(), "gvd_secret");
    }

    #[tokio::test]
    async fn an_unenrolled_phone_says_so_and_enrolment_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(sync_enrolled(&store).await.unwrap_err().code(), Some(grapevine_sync_proto::ErrorCode::NotEnrolled));
        let enrolment = Enrolment {
            server_url: "http://localhost:8080".into(),
            device_id: Uuid::new_v4(),
            collector_id: Uuid::new_v4(),
            token: "gvd_secret".into(),
            enrolled_at: "2026-11-20T17:45:00Z".into(),
        };
        store.save_enrolment(&enrolment).await.unwrap();
        drop(store);
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.enrolment().await.unwrap(), Some(enrolment));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_network_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let error = enrol(&store, &format!("http://127.0.0.1:{port}"), "ABCD-EFGH-JK", "").await.unwrap_err();
        assert!(matches!(error, SdkError::Network(_)), "{error:?}");
        assert_eq!(store.enrolment().await.unwrap(), None);
    }
}
