//! Documents and what hangs off them: their chunks and versions, devices' sync states, the catch-up list, the change
//! feed, the insight row decided from each, and the documents the server publishes. The trait, and the statements
//! both backends run alike.

mod postgres;
mod sqlite;

use anyhow::Context;
use grapevine_sync_proto::DocumentId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AreaTag, DocumentChanged, DocumentWrite, InsightRow, Outcome, SaveError, StoredDocument};

// The statements both backends run as they are (`$n` parameters; see `store::sqlite`'s test of how SQLite binds them).

/// A document's owner and version (`$1` its id).
const DOCUMENT_HEAD: &str = "SELECT collector_id, version FROM documents WHERE doc_id = $1";

/// A document's chunks, in order.
const DOCUMENT_CHUNKS: &str = "SELECT bytes FROM document_chunks WHERE doc_id = $1 ORDER BY seq";

/// The sync state of device `$1` for document `$2`.
const SYNC_STATE: &str = "SELECT state FROM sync_states WHERE device_id = $1 AND doc_id = $2";

/// Stores the sync state `$3` of device `$1` for document `$2`.
const SAVE_SYNC_STATE: &str = "INSERT INTO sync_states (device_id, doc_id, state) VALUES ($1, $2, $3)
    ON CONFLICT (device_id, doc_id) DO UPDATE SET state = excluded.state";

/// The documents of collector `$1` last written by a device other than `$2` after sequence number `$3`, oldest
/// first, at most `$4`.
const CATCH_UP: &str = "SELECT doc_id, change_seq FROM documents
    WHERE collector_id = $1 AND change_seq > $3 AND (last_device_id IS NULL OR last_device_id <> $2)
    ORDER BY change_seq LIMIT $4";

/// The insight row of document `$1` (read as `InsightColumns` and the columns whose types differ).
const INSIGHT: &str = "SELECT captured_at, campaign, category, text, feeling_safe, channel, lat, lon, accuracy_m,
        picked_area_code, status, area_code, reject_code, reject_message, processed_at, postcode, tag_lat, tag_lon
    FROM insights WHERE id = $1";

/// Where insight `$1` lies in each generation, oldest generation first (read as `AreaTag`s).
const INSIGHT_TAGS: &str =
    "SELECT generation_id, area_code, near_boundary FROM insight_areas WHERE insight_id = $1 ORDER BY generation_id";

/// The columns an insight row is written to, in the order both backends bind them (`$1` to `$23`).
const INSIGHT_COLUMNS: &str =
    "id, doc_id, collector_id, device_id, captured_at, captured_day, campaign, category, text,
    feeling_safe, channel, lat, lon, accuracy_m, picked_area_code, status, area_code, reject_code, reject_message,
    processed_at, postcode, tag_lat, tag_lon";

/// What writing an insight row that exists already changes: every column but its id, document and collector.
const INSIGHT_UPSERT: &str = "ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id,
    captured_at = excluded.captured_at, captured_day = excluded.captured_day, campaign = excluded.campaign,
    category = excluded.category, text = excluded.text, feeling_safe = excluded.feeling_safe,
    channel = excluded.channel, lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m,
    picked_area_code = excluded.picked_area_code, status = excluded.status, area_code = excluded.area_code,
    reject_code = excluded.reject_code, reject_message = excluded.reject_message,
    processed_at = excluded.processed_at, postcode = excluded.postcode, tag_lat = excluded.tag_lat,
    tag_lon = excluded.tag_lon";

/// A published document `$1` and its version.
const PUBLISHED: &str = "SELECT bytes, version FROM published_documents WHERE doc_id = $1";

/// Publishes document `$1` as `$2`, version 1, unless it is published already.
const PUBLISH_FIRST: &str =
    "INSERT INTO published_documents (doc_id, version, bytes) VALUES ($1, 1, $2) ON CONFLICT (doc_id) DO NOTHING";

/// Replaces published document `$1` by `$2` if its version is still `$3`.
const PUBLISH_NEXT: &str =
    "UPDATE published_documents SET version = version + 1, bytes = $2 WHERE doc_id = $1 AND version = $3";

/// Publishes document `$1` as `$2`: the first version, or (`expected_version` given) the next if the stored one is
/// still `expected_version`, which is bound as `$3`.
fn publish_statement(expected_version: Option<i64>) -> &'static str {
    if expected_version.is_some() {
        PUBLISH_NEXT
    } else {
        PUBLISH_FIRST
    }
}

/// A write that claims one row: `SaveError::Conflict` unless it did (another writer got there first).
fn claimed_one(rows_affected: u64) -> Result<(), SaveError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(SaveError::Conflict)
    }
}

/// A stored document from its owner, its chunks in order and its version.
fn stored_document(collector_id: Uuid, chunks: Vec<Vec<u8>>, version: i64) -> anyhow::Result<StoredDocument> {
    Ok(StoredDocument { collector_id, n_chunks: i64::try_from(chunks.len())?, bytes: chunks.concat(), version })
}

/// The catch-up list from the rows of `CATCH_UP` (document id, sequence number).
fn catch_up_list(rows: Vec<(String, i64)>) -> anyhow::Result<Vec<(DocumentId, i64)>> {
    rows.into_iter().map(|(doc_id, change_seq)| Ok((doc_id.parse().context("document id")?, change_seq))).collect()
}

/// The columns of an `INSIGHT` row that both backends store as the same types.
#[derive(sqlx::FromRow)]
struct InsightColumns {
    campaign: Option<String>,
    category: Option<String>,
    text: Option<String>,
    channel: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    picked_area_code: Option<String>,
    status: String,
    area_code: Option<String>,
    reject_code: Option<String>,
    reject_message: Option<String>,
    postcode: Option<String>,
    tag_lat: Option<f64>,
    tag_lon: Option<f64>,
}

impl InsightColumns {
    /// The insight row, with the times and the score (which the backends store as different types) and the tags.
    fn into_row(
        self,
        id: Uuid,
        captured_at: Option<OffsetDateTime>,
        feeling_safe: Option<i64>,
        processed_at: OffsetDateTime,
        tags: Vec<AreaTag>,
    ) -> InsightRow {
        InsightRow {
            id,
            captured_at,
            campaign: self.campaign,
            category: self.category,
            text: self.text,
            feeling_safe: feeling_safe.and_then(|score| u8::try_from(score).ok()),
            channel: self.channel,
            gps: self.lat.zip(self.lon).map(|(lat, lon)| (lat, lon, self.accuracy_m.unwrap_or(0.0))),
            picked_area_code: self.picked_area_code,
            postcode: self.postcode,
            tag_point: self.tag_lat.zip(self.tag_lon),
            outcome: Outcome::from_columns(&self.status, self.area_code, self.reject_code, self.reject_message),
            processed_at,
            tags,
        }
    }
}

/// The UTC offset a phone wrote a time with, in minutes, as `captured_offset_minutes` keeps it.
pub(crate) fn offset_minutes(at: OffsetDateTime) -> i16 {
    at.offset().whole_minutes()
}

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
