//! A device's sync session (`/sync`): opened once per connection, for a principal allowed to sync its own documents,
//! and from then on able to reach only what that device may: its own sync states, its collector's documents and
//! change feed, and the documents the server publishes. Document writes go through the ingest service
//! (`ingest::Service`), which checks ownership per document.

use std::sync::Arc;

use grapevine_sync_proto::DocumentId;
use uuid::Uuid;

use super::{UseCaseError, UseCases};
use crate::domain::{Action, Actor, Principal};
use crate::store::{DocumentChanged, Store, StoredDocument};

/// What one device's connection may read and keep.
#[derive(Debug, Clone)]
pub struct DeviceSession {
    store: Arc<dyn Store>,
    pub device_id: Uuid,
    pub collector_id: Uuid,
}

impl UseCases {
    /// Opens a device's sync session.
    ///
    /// # Errors
    /// `Forbidden` (recorded) for a principal that is not a device allowed to sync; the refusal cannot be recorded.
    pub async fn sync_session(&self, principal: &Principal) -> Result<DeviceSession, UseCaseError> {
        self.authorize_audited(principal, Action::SyncOwnDocuments, "sync.open", "sync").await?;
        match principal.actor {
            Actor::Device { device_id, collector_id } => {
                Ok(DeviceSession { store: self.store.clone(), device_id, collector_id })
            }
            // A person given the collector role has no phone and no documents to sync.
            _ => Err(UseCaseError::Forbidden { role: principal.role, action: Action::SyncOwnDocuments }),
        }
    }
}

impl DeviceSession {
    /// The device's persisted sync state for a document.
    ///
    /// # Errors
    /// The store fails.
    pub async fn sync_state(&self, doc_id: DocumentId) -> anyhow::Result<Option<Vec<u8>>> {
        self.store.load_sync_state(self.device_id, doc_id).await
    }

    /// Persists the device's sync states, in one transaction.
    ///
    /// # Errors
    /// The store fails.
    pub async fn save_sync_states(&self, states: &[(DocumentId, Vec<u8>)]) -> anyhow::Result<()> {
        self.store.save_sync_states(self.device_id, states).await
    }

    /// The collector's documents written by its other devices since `since`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// The store fails.
    pub async fn catch_up(&self, since: i64, limit: i64) -> anyhow::Result<Vec<(DocumentId, i64)>> {
        self.store.catch_up(self.collector_id, self.device_id, since, limit).await
    }

    /// Every document saved from now on (the caller keeps its collector's: `DocumentChanged::collector_id`).
    #[must_use]
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<DocumentChanged> {
        self.store.subscribe()
    }

    /// Whether the device has been revoked since the session opened (an open connection re-checks).
    ///
    /// # Errors
    /// The store fails.
    pub async fn revoked(&self) -> anyhow::Result<bool> {
        self.store.device_revoked(self.device_id).await
    }

    /// A stored document of this device's collector, to offer it; another collector's is `None`, as a missing one.
    ///
    /// # Errors
    /// The store fails.
    pub async fn own_document(&self, doc_id: DocumentId) -> anyhow::Result<Option<StoredDocument>> {
        let stored = self.store.load_document(doc_id).await?;
        Ok(stored.filter(|stored| stored.collector_id == self.collector_id))
    }

    /// A document the server publishes to every device (the campaign).
    ///
    /// # Errors
    /// The store fails.
    pub async fn published(&self, doc_id: DocumentId) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.store.load_published(doc_id).await?.map(|(bytes, _)| bytes))
    }

    /// The campaign's document id if the phone's copy (its fingerprint `held`) is not the published one.
    ///
    /// # Errors
    /// The store fails, or the campaign cannot be read.
    pub async fn stale_campaign(&self, held: &str) -> anyhow::Result<Option<DocumentId>> {
        crate::campaign::stale_for(self.store.as_ref(), held).await
    }
}
