//! Documents and what hangs off them: their chunks and versions, devices' sync states, the catch-up list, the change
//! feed, the insight row decided from each, and the documents the server publishes. The trait, and the statements
//! both backends run alike.

mod postgres;
mod sqlite;

use grapevine_sync_proto::DocumentId;
use uuid::Uuid;

use super::{DocumentChanged, DocumentWrite, InsightRow, SaveError, StoredDocument};

/// Documents, their sync states and change feed, the insights decided from them, and published documents.
#[async_trait::async_trait]
pub trait DocumentStore: Send + Sync {
    /// Loads a document, if it exists.
    async fn load_document(&self, doc_id: DocumentId) -> anyhow::Result<Option<StoredDocument>>;

    /// Saves a document, its insight row and the roll-up delta in one transaction.
    async fn save_document(&self, write: DocumentWrite) -> Result<(), SaveError>;

    /// Saves several documents in one transaction (an import): all of them, or none. Each document at most once.
    async fn save_documents(&self, writes: Vec<DocumentWrite>) -> Result<(), SaveError>;

    /// The persisted sync state of a device for a document, if any.
    async fn load_sync_state(&self, device_id: Uuid, doc_id: DocumentId) -> anyhow::Result<Option<Vec<u8>>>;

    /// Persists a device's sync states for several documents, in one transaction.
    async fn save_sync_states(&self, device_id: Uuid, states: &[(DocumentId, Vec<u8>)]) -> anyhow::Result<()>;

    /// The collector's documents last written by another device after sequence number `since`, oldest first, with
    /// the sequence number of their latest write; at most `limit`.
    async fn catch_up(
        &self,
        collector_id: Uuid,
        device_id: Uuid,
        since: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(DocumentId, i64)>>;

    /// Follows every document saved, by any node over this database, from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocumentChanged>;

    /// The insight row of a document, if it has one.
    async fn insight(&self, id: Uuid) -> anyhow::Result<Option<InsightRow>>;

    /// A document the server publishes to every device (the campaign), with its version.
    async fn load_published(&self, doc_id: DocumentId) -> anyhow::Result<Option<(Vec<u8>, i64)>>;

    /// Stores a published document whole; fails with `SaveError::Conflict` unless the stored version is still
    /// `expected_version` (`None`: not stored yet).
    async fn save_published(
        &self,
        doc_id: DocumentId,
        bytes: Vec<u8>,
        expected_version: Option<i64>,
    ) -> Result<(), SaveError>;
}
