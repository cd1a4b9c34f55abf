//! `DocumentStore` on PostgreSQL: set-based writes (a fixed number of statements however many documents) and a
//! change feed over `LISTEN/NOTIFY`, so every node hears every node's writes.

use grapevine_sync_proto::DocumentId;
use sqlx::{FromRow, Row};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::store::postgres::{classify, CHANGES_CHANNEL};
use crate::store::prelude::*;
use crate::store::rollup::postgres::apply_deltas;
use crate::store::rollup::{Contribution, RollupDeltas};
use crate::store::{
    ensure_distinct, tagged_up_to, AreaTag, DocumentBytes, DocumentChanged, DocumentWrite, InsightRow, PostgresStore,
    SaveError, StoredDocument,
};
use std::sync::atomic::Ordering;

/// The writes of one transaction, set-based: a fixed number of statements however many documents (an import of a
/// thousand documents costs about what one costs in round trips). Claim every version, store the chunks, number the
/// writes in their collectors' sequences, swap each insight's old contribution to the roll-ups for its new one.
async fn write_documents(tx: &mut sqlx::PgConnection, writes: &[DocumentWrite]) -> Result<(), SaveError> {
    let doc_ids: Vec<String> = writes.iter().map(|write| write.doc_id.to_string()).collect();
    ensure_distinct(writes)?;
    // Tags must cover every generation. A re-tag holds the generations' table in EXCLUSIVE mode until it commits;
    // ROW SHARE waits for that, so the newest generation read next is one the re-tag has finished with.
    if let Some(tagged_up_to) = tagged_up_to(writes) {
        sqlx::query("LOCK TABLE boundary_generations IN ROW SHARE MODE").execute(&mut *tx).await.map_err(classify)?;
        let newest: Option<i64> = sqlx::query_scalar(crate::store::generations::NEWEST_GENERATION_ID)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        if newest.is_some_and(|newest| newest > tagged_up_to) {
            return Err(SaveError::StaleBoundaries);
        }
    }

    // 1. Claim: create the new documents, bump the version of the others if it is still the one loaded. Either count
    // falling short means another writer got there first.
    let (fresh, loaded): (Vec<usize>, Vec<usize>) =
        (0..writes.len()).partition(|&i| writes[i].expected_version.is_none());
    if !fresh.is_empty() {
        let ids: Vec<&str> = fresh.iter().map(|&i| doc_ids[i].as_str()).collect();
        let collectors: Vec<Uuid> = fresh.iter().map(|&i| writes[i].collector_id).collect();
        let created = sqlx::query(
            "INSERT INTO documents (doc_id, collector_id, version)
             SELECT doc_id, collector_id, 1 FROM UNNEST($1::text[], $2::uuid[]) AS new(doc_id, collector_id)
             ON CONFLICT (doc_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&collectors)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if created.rows_affected() != fresh.len() as u64 {
            return Err(SaveError::Conflict);
        }
    }
    if !loaded.is_empty() {
        let ids: Vec<&str> = loaded.iter().map(|&i| doc_ids[i].as_str()).collect();
        let versions: Vec<i64> = loaded.iter().filter_map(|&i| writes[i].expected_version).collect();
        let claimed = sqlx::query(
            "UPDATE documents AS d SET version = d.version + 1, updated_at = now()
             FROM UNNEST($1::text[], $2::bigint[]) AS loaded(doc_id, version)
             WHERE d.doc_id = loaded.doc_id AND d.version = loaded.version",
        )
        .bind(&ids)
        .bind(&versions)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if claimed.rows_affected() != loaded.len() as u64 {
            return Err(SaveError::Conflict);
        }
    }

    // 2. Chunks: a snapshot replaces every chunk, changes append one.
    let snapshots: Vec<&str> = writes
        .iter()
        .zip(&doc_ids)
        .filter(|(write, _)| matches!(write.bytes, DocumentBytes::Snapshot(_)))
        .map(|(_, doc_id)| doc_id.as_str())
        .collect();
    if !snapshots.is_empty() {
        sqlx::query("DELETE FROM document_chunks WHERE doc_id = ANY($1::text[])")
            .bind(&snapshots)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    let seqs: Vec<i64> = writes.iter().map(|write| write.expected_version.unwrap_or(0) + 1).collect();
    let chunks: Vec<&[u8]> = writes
        .iter()
        .map(|write| match &write.bytes {
            DocumentBytes::Snapshot(bytes) | DocumentBytes::Changes(bytes) => bytes.as_slice(),
        })
        .collect();
    sqlx::query(
        "INSERT INTO document_chunks (doc_id, seq, bytes) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])",
    )
    .bind(&doc_ids)
    .bind(&seqs)
    .bind(&chunks)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;

    // 3. Number the writes in their collectors' sequences; updating a collector's row serialises its writes, so the
    // numbers follow commit order and a device's "seen up to" never skips one. Collectors in id order: two nodes
    // take their locks in the same order.
    let mut by_collector: std::collections::BTreeMap<Uuid, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, write) in writes.iter().enumerate() {
        by_collector.entry(write.collector_id).or_default().push(i);
    }
    let mut change_seqs = vec![0_i64; writes.len()];
    for (collector_id, indices) in &by_collector {
        let n = i64::try_from(indices.len()).map_err(anyhow::Error::from)?;
        let last: i64 =
            sqlx::query_scalar("UPDATE collectors SET change_seq = change_seq + $2 WHERE id = $1 RETURNING change_seq")
                .bind(collector_id)
                .bind(n)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
        for (k, &i) in (0_i64..).zip(indices) {
            change_seqs[i] = last - n + 1 + k;
        }
    }
    let devices: Vec<Uuid> = writes.iter().map(|write| write.device_id).collect();
    sqlx::query(
        "UPDATE documents AS d SET change_seq = w.seq, last_device_id = w.device
         FROM UNNEST($1::text[], $2::bigint[], $3::uuid[]) AS w(doc_id, seq, device) WHERE d.doc_id = w.doc_id",
    )
    .bind(&doc_ids)
    .bind(&change_seqs)
    .bind(&devices)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;

    // 4. Take each old row's contribution out of the roll-ups, put the new one in: the roll-ups never rescan. The
    // version claim above holds each document's row lock, so no other writer moves these rows meanwhile.
    let ids: Vec<Uuid> = writes.iter().map(|write| write.insight.id).collect();
    let collector_of: std::collections::HashMap<Uuid, Uuid> =
        writes.iter().map(|write| (write.insight.id, write.collector_id)).collect();
    let mut deltas = RollupDeltas::default();
    let old_rows = sqlx::query(
        "SELECT i.id, i.captured_day, i.category, i.feeling_safe, i.channel, t.generation_id, t.area_code
         FROM insights AS i JOIN insight_areas AS t ON t.insight_id = i.id
         WHERE i.id = ANY($1) AND i.status IN ('filed', 'outside_coverage')",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(classify)?;
    for old in old_rows {
        let id: Uuid = old.get("id");
        let day: Option<Date> = old.get("captured_day");
        let category: Option<String> = old.get("category");
        let feeling_safe: Option<i16> = old.get("feeling_safe");
        if let (Some(day), Some(category), Some(collector_id)) = (day, category, collector_of.get(&id)) {
            let contribution = Contribution {
                generation_id: old.get("generation_id"),
                area_code: old.get("area_code"),
                day,
                category,
                feeling_safe: feeling_safe.map(i64::from),
                channel: old.get("channel"),
                collector_id: *collector_id,
            };
            deltas.add(&contribution, -1);
        }
    }
    sqlx::query("DELETE FROM insight_areas WHERE insight_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    let rows: Vec<&InsightRow> = writes.iter().map(|write| &write.insight).collect();
    let captured_days: Vec<Option<Date>> = rows.iter().map(|row| row.captured_at.map(OffsetDateTime::date)).collect();
    let columns: Vec<_> = rows.iter().map(|row| row.outcome.columns()).collect();
    sqlx::query(&format!(
        "INSERT INTO insights ({}, captured_offset_minutes)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::timestamptz[], $6::date[],
             $7::text[], $8::text[], $9::text[], $10::smallint[], $11::text[], $12::float8[], $13::float8[],
             $14::float8[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::timestamptz[],
             $21::text[], $22::float8[], $23::float8[], $24::smallint[])
         {}, captured_offset_minutes = excluded.captured_offset_minutes",
        super::INSIGHT_COLUMNS,
        super::INSIGHT_UPSERT
    ))
    .bind(&ids)
    .bind(&doc_ids)
    .bind(writes.iter().map(|write| write.collector_id).collect::<Vec<_>>())
    .bind(&devices)
    .bind(rows.iter().map(|row| row.captured_at).collect::<Vec<_>>())
    .bind(&captured_days)
    .bind(rows.iter().map(|row| row.campaign.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.category.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.text.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.feeling_safe.map(i16::from)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.channel.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.gps.map(|(lat, _, _)| lat)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.gps.map(|(_, lon, _)| lon)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.gps.map(|(_, _, accuracy)| accuracy)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.picked_area_code.as_deref()).collect::<Vec<_>>())
    .bind(columns.iter().map(|columns| columns.0).collect::<Vec<_>>())
    .bind(columns.iter().map(|columns| columns.1).collect::<Vec<_>>())
    .bind(columns.iter().map(|columns| columns.2).collect::<Vec<_>>())
    .bind(columns.iter().map(|columns| columns.3).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.processed_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.postcode.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.tag_point.map(|(lat, _)| lat)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.tag_point.map(|(_, lon)| lon)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.captured_at.map(super::offset_minutes)).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    let tags: Vec<(Uuid, &AreaTag)> =
        rows.iter().flat_map(|row| row.tags.iter().map(move |tag| (row.id, tag))).collect();
    if !tags.is_empty() {
        sqlx::query(
            "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary, insight_seq)
             SELECT t.*, i.seq FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::boolean[])
                 AS t (insight_id, generation_id, area_code, near_boundary)
                 JOIN insights AS i ON i.id = t.insight_id",
        )
        .bind(tags.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(tags.iter().map(|(_, tag)| tag.generation_id).collect::<Vec<_>>())
        .bind(tags.iter().map(|(_, tag)| tag.area_code.as_str()).collect::<Vec<_>>())
        .bind(tags.iter().map(|(_, tag)| tag.near_boundary).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    for write in writes {
        for contribution in write.insight.contributions(write.collector_id) {
            deltas.add(&contribution, 1);
        }
    }
    apply_deltas(tx, &deltas).await?;

    // 5. Announce every write; PostgreSQL delivers the notifications when (and only if) the transaction commits.
    let payloads: Vec<String> = writes
        .iter()
        .zip(&doc_ids)
        .map(|(write, doc_id)| format!("{} {} {}", write.collector_id, doc_id, write.writer))
        .collect();
    sqlx::query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS payload")
        .bind(CHANGES_CHANNEL)
        .bind(&payloads)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    Ok(())
}

#[async_trait::async_trait]
impl DocumentStore for PostgresStore {
    async fn load_document(&self, doc_id: DocumentId) -> anyhow::Result<Option<StoredDocument>> {
        let doc_id = doc_id.to_string();
        // One snapshot of both tables: REPEATABLE READ, so the version matches the chunks read.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let head: Option<(Uuid, i64)> =
            sqlx::query_as(super::DOCUMENT_HEAD).bind(&doc_id).fetch_optional(&mut *tx).await?;
        let Some((collector_id, version)) = head else { return Ok(None) };
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(super::DOCUMENT_CHUNKS).bind(&doc_id).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(super::stored_document(collector_id, chunks, version)?))
    }

    async fn save_document(&self, write: DocumentWrite) -> Result<(), SaveError> {
        self.save_documents(vec![write]).await
    }

    async fn save_documents(&self, writes: Vec<DocumentWrite>) -> Result<(), SaveError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(classify)?;
        write_documents(&mut tx, &writes).await?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn load_sync_state(&self, device_id: Uuid, doc_id: DocumentId) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(super::SYNC_STATE)
            .bind(device_id)
            .bind(doc_id.to_string())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn save_sync_states(&self, device_id: Uuid, states: &[(DocumentId, Vec<u8>)]) -> anyhow::Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (doc_id, state) in states {
            sqlx::query(super::SAVE_SYNC_STATE)
                .bind(device_id)
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
            .bind(collector_id)
            .bind(device_id)
            .bind(since)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        super::catch_up_list(rows)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocumentChanged> {
        let receiver = self.changes.subscribe();
        if !self.listening.swap(true, Ordering::SeqCst) {
            tokio::spawn(PostgresStore::listen(self.pool.clone(), self.changes.clone()));
        }
        receiver
    }

    async fn insight(&self, id: Uuid) -> anyhow::Result<Option<InsightRow>> {
        let row = sqlx::query(&super::INSIGHT.replacen("SELECT ", "SELECT captured_offset_minutes, ", 1))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let tags = sqlx::query_as(super::INSIGHT_TAGS).bind(id).fetch_all(&self.pool).await?;
        let feeling_safe: Option<i16> = row.get("feeling_safe");
        let feeling_safe = feeling_safe.map(i64::from);
        let captured_at =
            crate::store::insights::with_offset(row.get("captured_at"), row.get("captured_offset_minutes"));
        let processed_at = row.get("processed_at");
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
        super::claimed_one(publish.execute(&self.pool).await.map_err(classify)?.rows_affected())
    }
}
