//! `DocumentStore` on SQLite: a transaction's documents are written one by one under the database's write lock
//! (`BEGIN IMMEDIATE`), and the change feed is in memory (one process owns a SQLite database).

use anyhow::Context;
use grapevine_sync_proto::document::format_time;
use grapevine_sync_proto::DocumentId;
use sqlx::{FromRow, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::prelude::*;
use crate::store::rollup::sqlite::apply_deltas;
use crate::store::rollup::{Contribution, RollupDeltas};
use crate::store::sqlite::{now_text, parse_time};
use crate::store::{
    ensure_distinct, tagged_up_to, DocumentBytes, DocumentChanged, DocumentWrite, InsightRow, Outcome, SaveError,
    SqliteStore, StoredDocument,
};

/// One document write inside a caller's transaction: claim the version, store the chunk, note how the roll-ups move
/// (the caller writes the summed deltas once for the whole transaction).
async fn write_document(
    tx: &mut sqlx::SqliteConnection,
    write: &DocumentWrite,
    deltas: &mut RollupDeltas,
) -> Result<(), SaveError> {
    let doc_id = write.doc_id.to_string();
    let now = now_text();
    let claimed = match write.expected_version {
        None => {
            sqlx::query(
                "INSERT INTO documents (doc_id, collector_id, version, updated_at) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (doc_id) DO NOTHING",
            )
            .bind(&doc_id)
            .bind(write.collector_id.to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await
        }
        Some(version) => {
            sqlx::query(
                "UPDATE documents SET version = version + 1, updated_at = ?3 WHERE doc_id = ?1 AND version = ?2",
            )
            .bind(&doc_id)
            .bind(version)
            .bind(&now)
            .execute(&mut *tx)
            .await
        }
    }
    .map_err(anyhow::Error::from)?;
    super::claimed_one(claimed.rows_affected())?;
    let new_version = write.expected_version.unwrap_or(0) + 1;
    let chunk = match &write.bytes {
        DocumentBytes::Snapshot(bytes) => {
            sqlx::query("DELETE FROM document_chunks WHERE doc_id = ?1")
                .bind(&doc_id)
                .execute(&mut *tx)
                .await
                .map_err(anyhow::Error::from)?;
            bytes
        }
        DocumentBytes::Changes(bytes) => bytes,
    };
    sqlx::query("INSERT INTO document_chunks (doc_id, seq, bytes) VALUES (?1, ?2, ?3)")
        .bind(&doc_id)
        .bind(new_version)
        .bind(chunk)
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;

    // Number the write in the collector's sequence; updating the collector's row serialises its writes, so the
    // numbers follow commit order and a device's "seen up to" never skips one.
    let seq: i64 =
        sqlx::query_scalar("UPDATE collectors SET change_seq = change_seq + 1 WHERE id = ?1 RETURNING change_seq")
            .bind(write.collector_id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
    sqlx::query("UPDATE documents SET change_seq = ?2, last_device_id = ?3 WHERE doc_id = ?1")
        .bind(&doc_id)
        .bind(seq)
        .bind(write.device_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;

    // Take the old row's contributions (in every generation it was tagged in) out of the roll-ups, put the new ones
    // in: the roll-ups never rescan.
    let insight_id = write.insight.id.to_string();
    let old = sqlx::query(
        "SELECT status, captured_day, category, feeling_safe, channel, seq, text FROM insights WHERE id = ?1",
    )
    .bind(&insight_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(anyhow::Error::from)?;
    // The search index holds the text under the insight's arrival number: take the old text out before it changes.
    let kept_seq: Option<i64> = old.as_ref().and_then(|old| old.get("seq"));
    if let Some(old) = &old {
        let old_text: Option<String> = old.get("text");
        if let (Some(seq), Some(text)) = (kept_seq, old_text) {
            sqlx::query("INSERT INTO insights_fts (insights_fts, rowid, text) VALUES ('delete', ?1, ?2)")
                .bind(seq)
                .bind(text)
                .execute(&mut *tx)
                .await
                .map_err(anyhow::Error::from)?;
        }
    }
    if let Some(old) = old {
        let status: String = old.get("status");
        let tags = sqlx::query("SELECT generation_id, area_code FROM insight_areas WHERE insight_id = ?1")
            .bind(&insight_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
        let day: Option<time::Date> = old.get("captured_day");
        let category: Option<String> = old.get("category");
        if let (true, Some(day), Some(category)) = (Outcome::status_counts(&status), day, category) {
            for tag in tags {
                let contribution = Contribution {
                    generation_id: tag.get("generation_id"),
                    area_code: tag.get("area_code"),
                    day,
                    category: category.clone(),
                    feeling_safe: old.get("feeling_safe"),
                    channel: old.get("channel"),
                    collector_id: write.collector_id,
                };
                deltas.add(&contribution, -1);
            }
        }
        sqlx::query("DELETE FROM insight_areas WHERE insight_id = ?1")
            .bind(&insight_id)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
    }
    let row = &write.insight;
    let captured_day = row.captured_at.map(OffsetDateTime::date);
    let (status, area_code, reject_code, reject_message) = row.outcome.columns();
    // A new insight takes the next arrival number (the write lock is held, so none is taken twice); an edit keeps its.
    let seq: i64 = match kept_seq {
        Some(seq) => seq,
        None => sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM insights")
            .fetch_one(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?,
    };
    sqlx::query(&format!(
        "INSERT INTO insights ({}, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
             ?23, ?24)
         {}",
        super::INSIGHT_COLUMNS,
        super::INSIGHT_UPSERT
    ))
    .bind(row.id.to_string())
    .bind(&doc_id)
    .bind(write.collector_id.to_string())
    .bind(write.device_id.to_string())
    .bind(row.captured_at.map(format_time))
    .bind(captured_day)
    .bind(&row.campaign)
    .bind(&row.category)
    .bind(&row.text)
    .bind(row.feeling_safe.map(i64::from))
    .bind(&row.channel)
    .bind(row.gps.map(|(lat, _, _)| lat))
    .bind(row.gps.map(|(_, lon, _)| lon))
    .bind(row.gps.map(|(_, _, accuracy)| accuracy))
    .bind(&row.picked_area_code)
    .bind(status)
    .bind(area_code)
    .bind(reject_code)
    .bind(reject_message)
    .bind(format_time(row.processed_at))
    .bind(&row.postcode)
    .bind(row.tag_point.map(|(lat, _)| lat))
    .bind(row.tag_point.map(|(_, lon)| lon))
    .bind(seq)
    .execute(&mut *tx)
    .await
    .map_err(anyhow::Error::from)?;
    if let Some(text) = &row.text {
        sqlx::query("INSERT INTO insights_fts (rowid, text) VALUES (?1, ?2)")
            .bind(seq)
            .bind(text)
            .execute(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
    }
    for tag in &row.tags {
        sqlx::query(
            "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary, insight_seq)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&insight_id)
        .bind(tag.generation_id)
        .bind(&tag.area_code)
        .bind(tag.near_boundary)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
    }
    for contribution in row.contributions(write.collector_id) {
        deltas.add(&contribution, 1);
    }
    Ok(())
}

#[async_trait::async_trait]
impl DocumentStore for SqliteStore {
    async fn load_document(&self, doc_id: DocumentId) -> anyhow::Result<Option<StoredDocument>> {
        let doc_id = doc_id.to_string();
        let mut tx = self.pool.begin().await?;
        let head: Option<(String, i64)> =
            sqlx::query_as(super::DOCUMENT_HEAD).bind(&doc_id).fetch_optional(&mut *tx).await?;
        let Some((collector_id, version)) = head else { return Ok(None) };
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(super::DOCUMENT_CHUNKS).bind(&doc_id).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(super::stored_document(collector_id.parse().context("collector id")?, chunks, version)?))
    }

    async fn save_document(&self, write: DocumentWrite) -> Result<(), SaveError> {
        self.save_documents(vec![write]).await
    }

    async fn save_documents(&self, writes: Vec<DocumentWrite>) -> Result<(), SaveError> {
        ensure_distinct(&writes)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(anyhow::Error::from)?;
        // Tags must cover every generation; a re-tag holds the write lock until it commits, so this sees it whole.
        if let Some(tagged_up_to) = tagged_up_to(&writes) {
            let newest: Option<i64> = sqlx::query_scalar(crate::store::generations::NEWEST_GENERATION_ID)
                .fetch_one(&mut *tx)
                .await
                .map_err(anyhow::Error::from)?;
            if newest.is_some_and(|newest| newest > tagged_up_to) {
                return Err(SaveError::StaleBoundaries);
            }
        }
        let mut deltas = RollupDeltas::default();
        for write in &writes {
            write_document(&mut tx, write, &mut deltas).await?;
        }
        apply_deltas(&mut tx, &deltas).await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        // Nobody listening is fine: the send only fails when there are no subscribers.
        for write in writes {
            let _ = self.changes.send(DocumentChanged {
                doc_id: write.doc_id,
                collector_id: write.collector_id,
                writer: write.writer,
            });
        }
        Ok(())
    }

    async fn load_sync_state(&self, device_id: Uuid, doc_id: DocumentId) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(super::SYNC_STATE)
            .bind(device_id.to_string())
            .bind(doc_id.to_string())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn save_sync_states(&self, device_id: Uuid, states: &[(DocumentId, Vec<u8>)]) -> anyhow::Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (doc_id, state) in states {
            sqlx::query(super::SAVE_SYNC_STATE)
                .bind(device_id.to_string())
                .bind(doc_id.to_string())
                .bind(state)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn catch_up(
        &self,
        collector_id: Uuid,
        device_id: Uuid,
        since: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(DocumentId, i64)>> {
        let rows = sqlx::query_as(super::CATCH_UP)
            .bind(collector_id.to_string())
            .bind(device_id.to_string())
            .bind(since)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        super::catch_up_list(rows)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocumentChanged> {
        self.changes.subscribe()
    }

    async fn insight(&self, id: Uuid) -> anyhow::Result<Option<InsightRow>> {
        let row = sqlx::query(super::INSIGHT).bind(id.to_string()).fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let tags = sqlx::query_as(super::INSIGHT_TAGS).bind(id.to_string()).fetch_all(&self.pool).await?;
        let feeling_safe: Option<i64> = row.get("feeling_safe");
        let captured_at = parse_time(row.get("captured_at"));
        let processed_at = parse_time(row.get("processed_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let columns = super::InsightColumns::from_row(&row)?;
        Ok(Some(columns.into_row(id, captured_at, feeling_safe, processed_at, tags)))
    }

    async fn load_published(&self, doc_id: DocumentId) -> anyhow::Result<Option<(Vec<u8>, i64)>> {
        Ok(sqlx::query_as(super::PUBLISHED).bind(doc_id.to_string()).fetch_optional(&self.pool).await?)
    }

    async fn save_published(
        &self,
        doc_id: DocumentId,
        bytes: Vec<u8>,
        expected_version: Option<i64>,
    ) -> Result<(), SaveError> {
        let publish = sqlx::query(super::publish_statement(expected_version)).bind(doc_id.to_string()).bind(bytes);
        let publish = match expected_version {
            Some(version) => publish.bind(version),
            None => publish,
        };
        super::claimed_one(publish.execute(&self.pool).await.map_err(anyhow::Error::from)?.rows_affected())
    }
}
