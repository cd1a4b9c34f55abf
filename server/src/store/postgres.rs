//! The PostgreSQL backend: for real deployments and for several server nodes over one database.
//!
//! Conflicts between nodes surface as `SaveError::Conflict` (a version check failed, or PostgreSQL aborted a
//! transaction as a deadlock or serialization failure); the sync handler reloads, merges and tries again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grapevine_sync_proto::DocumentId;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Row;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{
    check_not_newer, ensure_distinct, AreaCounts, Contribution, DayRange, DocumentBytes, DocumentChanged,
    DocumentWrite, InsightRow, NewDevice, Outcome, Principal, Role, RollupDeltas, SaveError, Store, StoredDocument,
    CHANGE_FEED_CAPACITY, ROLLUP_TABLES,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Fed by one `LISTEN` connection, started on the first subscription, so every node hears every node's writes.
    changes: tokio::sync::broadcast::Sender<DocumentChanged>,
    listening: Arc<AtomicBool>,
}

/// The channel writes are announced on, in the transaction that makes them (PostgreSQL delivers on commit).
const CHANGES_CHANNEL: &str = "grapevine_documents";

impl PostgresStore {
    /// Connects and migrates.
    ///
    /// # Errors
    /// The database cannot be reached, is newer than this build, or a migration fails.
    pub async fn open(database_url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(database_url)
            .await
            .context("connecting to PostgreSQL")?;
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE to_regclass('_sqlx_migrations') IS NOT NULL",
        )
        .fetch_optional(&pool)
        .await
        .unwrap_or(None);
        check_not_newer(applied, &MIGRATOR)?;
        MIGRATOR.run(&pool).await.context("applying PostgreSQL migrations")?;
        let (changes, _) = tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY);
        Ok(PostgresStore { pool, changes, listening: Arc::new(AtomicBool::new(false)) })
    }

    /// Relays notifications into the broadcast channel. `PgListener` reconnects on its own; what is announced while
    /// it is reconnecting is missed, and devices catch up at their next sync.
    async fn listen(pool: PgPool, changes: tokio::sync::broadcast::Sender<DocumentChanged>) {
        let mut listener = loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener.listen(CHANGES_CHANNEL).await {
                    Ok(()) => break listener,
                    Err(error) => tracing::warn!(%error, "LISTEN failed; retrying"),
                },
                Err(error) => tracing::warn!(%error, "cannot open the LISTEN connection; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    if let Some(change) = parse_change(notification.payload()) {
                        let _ = changes.send(change);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

fn parse_change(payload: &str) -> Option<DocumentChanged> {
    let mut parts = payload.split(' ');
    let collector_id = parts.next()?.parse().ok()?;
    let doc_id = parts.next()?.parse().ok()?;
    let writer = parts.next()?.parse().ok()?;
    Some(DocumentChanged { doc_id, collector_id, writer })
}

/// Deadlocks and serialization failures are another writer winning a race: retry, like a version conflict.
fn classify(error: sqlx::Error) -> SaveError {
    if let sqlx::Error::Database(database_error) = &error {
        if matches!(database_error.code().as_deref(), Some("40001" | "40P01")) {
            return SaveError::Conflict;
        }
    }
    SaveError::Database(error.into())
}

/// Writes the summed roll-up deltas of a transaction: one upsert per table, then the cells that may have emptied are
/// pruned (only a negative delta can empty a cell).
async fn apply_deltas(tx: &mut sqlx::PgConnection, deltas: &RollupDeltas) -> Result<(), sqlx::Error> {
    for (table, period) in ROLLUP_TABLES {
        let (mut areas, mut periods, mut categories) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ns, mut sums, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        let mut shrinking = (Vec::new(), Vec::new(), Vec::new());
        for (key, delta) in deltas.of_table(table) {
            areas.push(key.area_code.as_str());
            periods.push(key.period);
            categories.push(key.category.as_str());
            ns.push(delta.n);
            sums.push(delta.feeling_safe_sum);
            counts.push(delta.feeling_safe_n);
            if delta.n < 0 {
                shrinking.0.push(key.area_code.as_str());
                shrinking.1.push(key.period);
                shrinking.2.push(key.category.as_str());
            }
        }
        if areas.is_empty() {
            continue;
        }
        let upsert = format!(
            "INSERT INTO {table} (area_code, {period}, category, n_insights, feeling_safe_sum, feeling_safe_n)
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
             ON CONFLICT (area_code, {period}, category) DO UPDATE SET
                 n_insights = {table}.n_insights + excluded.n_insights,
                 feeling_safe_sum = {table}.feeling_safe_sum + excluded.feeling_safe_sum,
                 feeling_safe_n = {table}.feeling_safe_n + excluded.feeling_safe_n"
        );
        sqlx::query(&upsert)
            .bind(&areas)
            .bind(&periods)
            .bind(&categories)
            .bind(&ns)
            .bind(&sums)
            .bind(&counts)
            .execute(&mut *tx)
            .await?;
        if !shrinking.0.is_empty() {
            let prune = format!(
                "DELETE FROM {table} AS cell USING UNNEST($1::text[], $2::date[], $3::text[]) AS emptied(a, p, c)
                 WHERE cell.area_code = emptied.a AND cell.{period} = emptied.p AND cell.category = emptied.c
                   AND cell.n_insights = 0"
            );
            sqlx::query(&prune).bind(&shrinking.0).bind(&shrinking.1).bind(&shrinking.2).execute(&mut *tx).await?;
        }
    }
    Ok(())
}

/// The writes of one transaction, set-based: a fixed number of statements however many documents (an import of a
/// thousand documents costs about what one costs in round trips). Claim every version, store the chunks, number the
/// writes in their collectors' sequences, swap each insight's old contribution to the roll-ups for its new one.
async fn write_documents(tx: &mut sqlx::PgConnection, writes: &[DocumentWrite]) -> Result<(), SaveError> {
    let doc_ids: Vec<String> = writes.iter().map(|write| write.doc_id.to_string()).collect();
    ensure_distinct(writes)?;

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
    let mut deltas = RollupDeltas::default();
    let old_rows =
        sqlx::query("SELECT status, area_code, captured_day, category, feeling_safe FROM insights WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
    for old in old_rows {
        let status: String = old.get("status");
        let feeling_safe: Option<i16> = old.get("feeling_safe");
        let outcome = Outcome::from_columns(&status, old.get("area_code"), None, None);
        let old_day: Option<Date> = old.get("captured_day");
        if let Some(cell) = Contribution::of(&outcome, old_day, old.get("category"), feeling_safe.map(i64::from)) {
            deltas.add(&cell, -1);
        }
    }
    let rows: Vec<&InsightRow> = writes.iter().map(|write| &write.insight).collect();
    let captured_days: Vec<Option<Date>> = rows.iter().map(|row| row.captured_at.map(OffsetDateTime::date)).collect();
    let columns: Vec<_> = rows.iter().map(|row| row.outcome.columns()).collect();
    sqlx::query(
        "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_at, captured_day, campaign, category,
             text, feeling_safe, channel, lat, lon, accuracy_m, picked_area_code, status, area_code, reject_code,
             reject_message, processed_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::timestamptz[], $6::date[],
             $7::text[], $8::text[], $9::text[], $10::smallint[], $11::text[], $12::float8[], $13::float8[],
             $14::float8[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::timestamptz[])
         ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, captured_at = excluded.captured_at,
             captured_day = excluded.captured_day, campaign = excluded.campaign, category = excluded.category,
             text = excluded.text, feeling_safe = excluded.feeling_safe, channel = excluded.channel,
             lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m,
             picked_area_code = excluded.picked_area_code, status = excluded.status,
             area_code = excluded.area_code, reject_code = excluded.reject_code,
             reject_message = excluded.reject_message, processed_at = excluded.processed_at",
    )
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
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    for (row, captured_day) in rows.iter().zip(&captured_days) {
        if let Some(cell) =
            Contribution::of(&row.outcome, *captured_day, row.category.clone(), row.feeling_safe.map(i64::from))
        {
            deltas.add(&cell, 1);
        }
    }
    apply_deltas(tx, &deltas).await.map_err(classify)?;

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
impl Store for PostgresStore {
    async fn add_device(&self, label: &str, token_hash: &str, collector: Option<Uuid>) -> anyhow::Result<NewDevice> {
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: collector.unwrap_or_else(Uuid::new_v4) };
        let mut tx = self.pool.begin().await?;
        if collector.is_some() {
            let known: Option<Uuid> = sqlx::query_scalar("SELECT id FROM collectors WHERE id = $1")
                .bind(new.collector_id)
                .fetch_optional(&mut *tx)
                .await?;
            anyhow::ensure!(known.is_some(), "no collector has the id {}", new.collector_id);
        } else {
            sqlx::query("INSERT INTO collectors (id, label) VALUES ($1, $2)")
                .bind(new.collector_id)
                .bind(label)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO devices (id, collector_id, label, token_hash) VALUES ($1, $2, $3, $4)")
            .bind(new.device_id)
            .bind(new.collector_id)
            .bind(label)
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn storage_id(&self) -> anyhow::Result<String> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = 'storage_id'").fetch_one(&self.pool).await?)
    }

    async fn schema_version(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations").fetch_one(&self.pool).await?)
    }

    async fn add_api_token(&self, role: Role, label: &str, token_hash: &str) -> anyhow::Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO api_tokens (id, role, label, token_hash) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(role.as_str())
            .bind(label)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    async fn authenticate(&self, token_hash: &str) -> anyhow::Result<Option<Principal>> {
        let device = sqlx::query("SELECT id, collector_id FROM devices WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = device {
            return Ok(Some(Principal::Device { device_id: row.get("id"), collector_id: row.get("collector_id") }));
        }
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(role.and_then(|role| Role::parse(&role)).map(|role| Principal::Api { role }))
    }

    async fn load_document(&self, doc_id: DocumentId) -> anyhow::Result<Option<StoredDocument>> {
        let doc_id = doc_id.to_string();
        // One snapshot of both tables: REPEATABLE READ, so the version matches the chunks read.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let Some(row) = sqlx::query("SELECT collector_id, version FROM documents WHERE doc_id = $1")
            .bind(&doc_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let chunks: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM document_chunks WHERE doc_id = $1 ORDER BY seq")
                .bind(&doc_id)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(StoredDocument {
            collector_id: row.get("collector_id"),
            n_chunks: i64::try_from(chunks.len())?,
            bytes: chunks.concat(),
            version: row.get("version"),
        }))
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
        Ok(sqlx::query_scalar("SELECT state FROM sync_states WHERE device_id = $1 AND doc_id = $2")
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
            sqlx::query(
                "INSERT INTO sync_states (device_id, doc_id, state) VALUES ($1, $2, $3)
                 ON CONFLICT (device_id, doc_id) DO UPDATE SET state = excluded.state",
            )
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
        let rows = sqlx::query(
            "SELECT doc_id, change_seq FROM documents
             WHERE collector_id = $1 AND change_seq > $3
               AND (last_device_id IS NULL OR last_device_id <> $2)
             ORDER BY change_seq LIMIT $4",
        )
        .bind(collector_id)
        .bind(device_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let doc_id: String = row.get("doc_id");
                Ok((doc_id.parse().context("document id")?, row.get("change_seq")))
            })
            .collect()
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocumentChanged> {
        let receiver = self.changes.subscribe();
        if !self.listening.swap(true, Ordering::SeqCst) {
            tokio::spawn(PostgresStore::listen(self.pool.clone(), self.changes.clone()));
        }
        receiver
    }

    async fn insight(&self, id: Uuid) -> anyhow::Result<Option<InsightRow>> {
        let row = sqlx::query(
            "SELECT captured_at, campaign, category, text, feeling_safe, channel, lat, lon, accuracy_m,
                    picked_area_code, status, area_code, reject_code, reject_message, processed_at
             FROM insights WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| {
            let lat: Option<f64> = row.get("lat");
            let lon: Option<f64> = row.get("lon");
            let accuracy: Option<f64> = row.get("accuracy_m");
            let status: String = row.get("status");
            let feeling_safe: Option<i16> = row.get("feeling_safe");
            InsightRow {
                id,
                captured_at: row.get("captured_at"),
                campaign: row.get("campaign"),
                category: row.get("category"),
                text: row.get("text"),
                feeling_safe: feeling_safe.and_then(|score| u8::try_from(score).ok()),
                channel: row.get("channel"),
                gps: lat.zip(lon).map(|(lat, lon)| (lat, lon, accuracy.unwrap_or(0.0))),
                picked_area_code: row.get("picked_area_code"),
                outcome: Outcome::from_columns(
                    &status,
                    row.get("area_code"),
                    row.get("reject_code"),
                    row.get("reject_message"),
                ),
                processed_at: row.get("processed_at"),
            }
        }))
    }

    async fn area_totals(&self, days: DayRange) -> anyhow::Result<Vec<(String, i64)>> {
        let spans = days.spans();
        let rows = sqlx::query(
            "SELECT area_code, SUM(n)::BIGINT AS total FROM (
                 SELECT area_code, n_insights AS n FROM rollup_monthly WHERE category = '*' AND month >= $1 AND month < $2
                 UNION ALL SELECT area_code, n_insights FROM rollup_daily WHERE category = '*' AND day >= $3 AND day < $4
                 UNION ALL SELECT area_code, n_insights FROM rollup_daily WHERE category = '*' AND day >= $5 AND day < $6
             ) AS cells GROUP BY area_code",
        )
        .bind(spans.months.0)
        .bind(spans.months.1)
        .bind(spans.leading_days.0)
        .bind(spans.leading_days.1)
        .bind(spans.trailing_days.0)
        .bind(spans.trailing_days.1)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.get("area_code"), row.get("total"))).collect())
    }

    async fn area_counts(&self, area_code: &str, days: DayRange) -> anyhow::Result<AreaCounts> {
        let spans = days.spans();
        let rows = sqlx::query(
            "SELECT category, SUM(n)::BIGINT AS n, SUM(fs_sum)::BIGINT AS fs_sum, SUM(fs_n)::BIGINT AS fs_n FROM (
                 SELECT category, n_insights AS n, feeling_safe_sum AS fs_sum, feeling_safe_n AS fs_n
                 FROM rollup_monthly WHERE area_code = $1 AND category <> '*' AND month >= $2 AND month < $3
                 UNION ALL SELECT category, n_insights, feeling_safe_sum, feeling_safe_n
                 FROM rollup_daily WHERE area_code = $1 AND category <> '*' AND day >= $4 AND day < $5
                 UNION ALL SELECT category, n_insights, feeling_safe_sum, feeling_safe_n
                 FROM rollup_daily WHERE area_code = $1 AND category <> '*' AND day >= $6 AND day < $7
             ) AS cells GROUP BY category ORDER BY category",
        )
        .bind(area_code)
        .bind(spans.months.0)
        .bind(spans.months.1)
        .bind(spans.leading_days.0)
        .bind(spans.leading_days.1)
        .bind(spans.trailing_days.0)
        .bind(spans.trailing_days.1)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = AreaCounts::default();
        for row in rows {
            counts.add(row.get("category"), row.get("n"), row.get("fs_sum"), row.get("fs_n"));
        }
        Ok(counts)
    }
}
