//! The PostgreSQL backend: for real deployments and for several server nodes over one database.
//!
//! Conflicts between nodes surface as `SaveError::Conflict` (a version check failed, or PostgreSQL aborted a
//! transaction as a deadlock or serialization failure); the sync handler reloads, merges and tries again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use grapevine_sync_proto::DocumentId;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::rollup::{
    assemble_rollups, category_counts_query, is_one_cell, push_cells, tile, union_of_contributor_sets, CellDelta,
    CellKey, CellWrite, Contribution, ContributorSet, Counted, GenerationRollups, PeriodKind, Phases, RollupDeltas,
    CELL_COLUMNS,
};
use super::{
    check_not_newer, ensure_distinct, tagged_up_to, ApiTokenInfo, AreaRollup, AreaTag, Authenticated, CategoryCount,
    CodeHashes, DayRange, DeviceInfo, DocumentBytes, DocumentChanged, DocumentWrite, GenerationInfo, ImportedPostcodes,
    InsightRow, InvitationInfo, InvitationState, NewDevice, Outcome, RedeemError, Revoked, Role, SaveError,
    SeriesPoint, Store, StoredArea, StoredDocument, Sums, TaggableInsight, Tagger, CHANGE_FEED_CAPACITY,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
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
        rebuild_pending_rollups(&pool).await.context("rebuilding roll-ups after a migration")?;
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

/// Rebuilds the roll-ups of every generation a migration left in `rollups_pending`, from the insights' stored tags,
/// each in its own transaction. Nodes starting together take turns under the generations' lock; whoever comes second
/// finds nothing left to do.
async fn rebuild_pending_rollups(pool: &PgPool) -> anyhow::Result<()> {
    loop {
        let mut tx = pool.begin().await?;
        sqlx::query("LOCK TABLE boundary_generations IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        let Some(generation_id) =
            sqlx::query_scalar::<_, i64>("SELECT generation_id FROM rollups_pending ORDER BY generation_id LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(());
        };
        tracing::info!(generation_id, "rebuilding the roll-ups of a boundary generation");
        let mut phases = Phases::start();
        let mut n_insights = 0;
        let mut built = GenerationRollups::new(generation_id);
        {
            use futures_util::TryStreamExt;
            let mut rows = sqlx::query(
                "SELECT i.collector_id, i.captured_day, i.category, i.feeling_safe, i.channel, t.area_code
                 FROM insights AS i JOIN insight_areas AS t ON t.insight_id = i.id AND t.generation_id = $1
                 WHERE i.status IN ('filed', 'outside_coverage')
                   AND i.captured_day IS NOT NULL AND i.category IS NOT NULL",
            )
            .bind(generation_id)
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                n_insights += 1;
                let feeling_safe: Option<i16> = row.get("feeling_safe");
                built.add(&Counted {
                    area_code: row.get("area_code"),
                    day: row.get("captured_day"),
                    category: row.get("category"),
                    feeling_safe: feeling_safe.map(i64::from),
                    channel: row.get("channel"),
                    collector_id: row.get("collector_id"),
                });
            }
        }
        phases.mark("insights read and summed");
        load_generation(&mut tx, generation_id, None, built, &mut phases).await?;
        sqlx::query("DELETE FROM rollups_pending WHERE generation_id = $1")
            .bind(generation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        phases.mark("committed");
        phases.log(generation_id, n_insights);
    }
}

/// An insight's area in a new generation, for `load_generation`: ids, area codes and near-boundary flags.
#[derive(Default)]
struct GenerationTags {
    ids: Vec<Uuid>,
    codes: Vec<String>,
    near: Vec<bool>,
}

/// Loads a generation built from scratch into partitions of its own (migration 0008): each partition is made as a
/// plain table, filled in large slices with no index to maintain and no foreign key checked row by row, then given
/// its keys and indexes in one pass each and attached, which checks the partition bound and the foreign keys
/// set-based. `tags` is `None` when the generation's tags are already stored (a rebuild): then only the roll-ups are
/// (re)made. Runs inside the caller's transaction, so a failure leaves nothing behind.
async fn load_generation(
    tx: &mut sqlx::PgConnection,
    generation_id: i64,
    tags: Option<GenerationTags>,
    built: GenerationRollups,
    phases: &mut Phases,
) -> Result<(), sqlx::Error> {
    // Building an index sorts the whole partition: give it the memory to do so at once.
    sqlx::query("SET LOCAL maintenance_work_mem = '256MB'").execute(&mut *tx).await?;
    if let Some(tags) = tags {
        let partition = format!("insight_areas_g{generation_id}");
        sqlx::query(&format!("CREATE TABLE {partition} (LIKE insight_areas)")).execute(&mut *tx).await?;
        let mut copy = BinaryCopy::new(
            tx,
            &format!(
                "COPY {partition} (insight_id, generation_id, area_code, near_boundary) FROM STDIN (FORMAT binary)"
            ),
        )
        .await?;
        for ((id, code), near) in tags.ids.iter().zip(&tags.codes).zip(&tags.near) {
            copy.row(4).uuid(*id).bigint(generation_id).text(code).boolean(*near);
            copy.flush_if_full().await?;
        }
        copy.finish().await?;
        phases.mark("tags loaded");
        for statement in [
            format!("ALTER TABLE {partition} ADD PRIMARY KEY (insight_id, generation_id)"),
            format!("ALTER TABLE insight_areas ATTACH PARTITION {partition} FOR VALUES IN ({generation_id})"),
        ] {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        phases.mark("tags indexed and attached");
    }
    let partition = format!("rollups_g{generation_id}");
    // Roll-up rows are counters updated in place: room for HOT updates and eager autovacuum, as before 0008. Their
    // contributor sets (UUIDs and counts) do not compress: stored uncompressed, in the row while they are small.
    for statement in [
        format!("DROP TABLE IF EXISTS {partition}"),
        format!(
            "CREATE TABLE {partition} (LIKE rollups) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02,
                 autovacuum_analyze_scale_factor = 0.02)"
        ),
        format!("ALTER TABLE {partition} ALTER COLUMN contributors SET STORAGE EXTERNAL"),
    ] {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    let cells = built.finish();
    phases.mark("roll-ups sorted");
    let mut copy = BinaryCopy::new(
        tx,
        &format!(
            "COPY {partition} (generation_id, period, period_start, area_code, category, n_insights, n_contributors,
                 feeling_safe_sum, feeling_safe_n, n_staff, n_barber_hairdresser, n_pupil, n_youth_worker,
                 n_other_channel, contributors) FROM STDIN (FORMAT binary)"
        ),
    )
    .await?;
    for cell in &cells {
        let (key, delta) = (&cell.key, &cell.delta);
        copy.row(15)
            .bigint(key.generation_id)
            .text(key.kind.as_str())
            .date(key.period_start)
            .text(&key.area_code)
            .text(&key.category)
            .bigint(delta.n)
            .bigint(cell.n_contributors())
            .bigint(delta.feeling_safe_sum)
            .bigint(delta.feeling_safe_n);
        for channel in delta.channels {
            copy.bigint(channel);
        }
        copy.bytea(&cell.contributors.encode());
        copy.flush_if_full().await?;
    }
    copy.finish().await?;
    phases.mark("roll-ups loaded");
    // The same keys and indexes as the partitioned table's, so attaching adopts them instead of building its own.
    for statement in [
        format!("ALTER TABLE {partition} ADD PRIMARY KEY (generation_id, category, period, period_start, area_code)"),
        format!("CREATE INDEX ON {partition} (generation_id, area_code, period, period_start)"),
        format!(
            "CREATE INDEX ON {partition} (generation_id, period, period_start) INCLUDE (area_code, category, n_insights)"
        ),
        format!("ALTER TABLE rollups ATTACH PARTITION {partition} FOR VALUES IN ({generation_id})"),
        format!("ANALYZE {partition}"),
    ] {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    phases.mark("roll-ups indexed and attached");
    Ok(())
}

/// A `COPY … FROM STDIN (FORMAT binary)` in progress: rows encoded in PostgreSQL's binary copy format (a signature,
/// then per row a field count and each field as a length and its bytes in network order; documented with `COPY`),
/// sent in pieces of a few megabytes. The fastest way to load a table: no statement per row, no text to parse.
struct BinaryCopy<'c> {
    copy: sqlx::postgres::PgCopyIn<&'c mut sqlx::PgConnection>,
    buffer: Vec<u8>,
}

impl<'c> BinaryCopy<'c> {
    const SIGNATURE: &'static [u8] = b"PGCOPY\n\xff\r\n\0";
    const PIECE: usize = 4 << 20;

    async fn new(tx: &'c mut sqlx::PgConnection, statement: &str) -> Result<BinaryCopy<'c>, sqlx::Error> {
        let copy = tx.copy_in_raw(statement).await?;
        let mut buffer = Vec::with_capacity(Self::PIECE + 64 * 1024);
        buffer.extend_from_slice(Self::SIGNATURE);
        buffer.extend_from_slice(&0_i32.to_be_bytes()); // flags
        buffer.extend_from_slice(&0_i32.to_be_bytes()); // header extension length
        Ok(BinaryCopy { copy, buffer })
    }

    fn row(&mut self, fields: i16) -> &mut Self {
        self.buffer.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let length = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buffer.extend_from_slice(&length.to_be_bytes());
        self.buffer.extend_from_slice(bytes);
        self
    }

    fn bigint(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    fn bytea(&mut self, value: &[u8]) -> &mut Self {
        self.field(value)
    }

    fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.field(value.as_bytes())
    }

    fn boolean(&mut self, value: bool) -> &mut Self {
        self.field(&[u8::from(value)])
    }

    /// A date: days since 2000-01-01.
    fn date(&mut self, value: Date) -> &mut Self {
        const JULIAN_DAY_OF_2000_01_01: i32 = 2_451_545;
        self.field(&(value.to_julian_day() - JULIAN_DAY_OF_2000_01_01).to_be_bytes())
    }

    async fn flush_if_full(&mut self) -> Result<(), sqlx::Error> {
        if self.buffer.len() >= Self::PIECE {
            self.copy.send(std::mem::take(&mut self.buffer)).await?;
            self.buffer.reserve(Self::PIECE + 64 * 1024);
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, sqlx::Error> {
        self.buffer.extend_from_slice(&(-1_i16).to_be_bytes()); // the trailer
        self.copy.send(self.buffer).await?;
        self.copy.finish().await
    }
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

/// Writes the summed roll-up deltas of a transaction, set-based, in three statements however many cells. Every cell
/// that moves is claimed in one upsert, in the table's key order: a new cell is created empty, an existing one is
/// locked (a no-op update), and either way its contributor set comes back. The new sets are worked out here and
/// written with the counters; cells a negative delta may have emptied are pruned. Claiming and locking in one pass,
/// in one order, is what keeps two nodes from both starting a new cell's set from nothing, and from deadlocking over
/// each other's cells; a cell another writer pruned meanwhile is simply created again.
async fn apply_deltas(tx: &mut sqlx::PgConnection, deltas: &RollupDeltas) -> Result<(), SaveError> {
    let mut keys: Vec<&CellKey> = deltas.changed_cells().map(|(key, _)| key).collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable_by(|a, b| a.table_order().cmp(&b.table_order()));
    let columns = CellColumns::of(keys.iter().copied());
    let rows = sqlx::query(
        "INSERT INTO rollups AS r (generation_id, period, period_start, area_code, category, n_insights,
             n_contributors, feeling_safe_sum, feeling_safe_n, n_staff, n_barber_hairdresser, n_pupil,
             n_youth_worker, n_other_channel, contributors)
         SELECT g, p, s, a, k, 0, 0, 0, 0, 0, 0, 0, 0, 0, ''::bytea
         FROM UNNEST($1::bigint[], $2::text[], $3::date[], $4::text[], $5::text[]) AS e(g, p, s, a, k)
         ON CONFLICT (generation_id, category, period, period_start, area_code)
             DO UPDATE SET n_insights = r.n_insights
         RETURNING generation_id, period, period_start, area_code, category, contributors",
    )
    .bind(&columns.generations)
    .bind(&columns.periods)
    .bind(&columns.starts)
    .bind(&columns.areas)
    .bind(&columns.categories)
    .fetch_all(&mut *tx)
    .await
    .map_err(classify)?;
    let mut stored = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let Some(kind) = PeriodKind::parse(row.get("period")) else { continue };
        let key = CellKey {
            generation_id: row.get("generation_id"),
            kind,
            period_start: row.get("period_start"),
            area_code: row.get("area_code"),
            category: row.get("category"),
        };
        let bytes: Vec<u8> = row.get("contributors");
        let set = ContributorSet::decode(&bytes)
            .ok_or_else(|| anyhow::anyhow!("the stored contributor set of a roll-up cell is damaged"))?;
        stored.insert(key, set);
    }
    let writes = deltas.writes(stored);
    update_cells(tx, &writes).await.map_err(classify)?;
    let shrinking: Vec<&CellKey> = writes.iter().filter(|write| write.shrinks()).map(|write| &write.key).collect();
    if !shrinking.is_empty() {
        let columns = CellColumns::of(shrinking.into_iter());
        sqlx::query(
            "DELETE FROM rollups AS r
             USING UNNEST($1::bigint[], $2::text[], $3::date[], $4::text[], $5::text[]) AS e(g, p, s, a, k)
             WHERE r.generation_id = e.g AND r.period = e.p AND r.period_start = e.s AND r.area_code = e.a
               AND r.category = e.k AND r.n_insights = 0",
        )
        .bind(&columns.generations)
        .bind(&columns.periods)
        .bind(&columns.starts)
        .bind(&columns.areas)
        .bind(&columns.categories)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

/// Writes cells that exist in one statement: adds to their counters and sets their contributor sets.
async fn update_cells(tx: &mut sqlx::PgConnection, cells: &[CellWrite]) -> Result<(), sqlx::Error> {
    let columns = CellColumns::of(cells.iter().map(|cell| &cell.key));
    let field = |pick: fn(&CellDelta) -> i64| cells.iter().map(|cell| pick(&cell.delta)).collect::<Vec<i64>>();
    sqlx::query(
        "UPDATE rollups AS r SET
                 n_insights = r.n_insights + e.n,
                 n_contributors = e.nc,
                 feeling_safe_sum = r.feeling_safe_sum + e.fs_sum,
                 feeling_safe_n = r.feeling_safe_n + e.fs_n,
                 n_staff = r.n_staff + e.c0,
                 n_barber_hairdresser = r.n_barber_hairdresser + e.c1,
                 n_pupil = r.n_pupil + e.c2,
                 n_youth_worker = r.n_youth_worker + e.c3,
                 n_other_channel = r.n_other_channel + e.c4,
                 contributors = e.contributors
             FROM UNNEST($1::bigint[], $2::text[], $3::date[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
                 $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],
                 $14::bigint[], $15::bytea[])
                 AS e(g, p, s, a, k, n, nc, fs_sum, fs_n, c0, c1, c2, c3, c4, contributors)
             WHERE r.generation_id = e.g AND r.period = e.p AND r.period_start = e.s AND r.area_code = e.a
               AND r.category = e.k",
    )
    .bind(&columns.generations)
    .bind(&columns.periods)
    .bind(&columns.starts)
    .bind(&columns.areas)
    .bind(&columns.categories)
    .bind(field(|delta| delta.n))
    .bind(cells.iter().map(|cell| cell.n_contributors()).collect::<Vec<_>>())
    .bind(field(|delta| delta.feeling_safe_sum))
    .bind(field(|delta| delta.feeling_safe_n))
    .bind(field(|delta| delta.channels[0]))
    .bind(field(|delta| delta.channels[1]))
    .bind(field(|delta| delta.channels[2]))
    .bind(field(|delta| delta.channels[3]))
    .bind(field(|delta| delta.channels[4]))
    .bind(cells.iter().map(|cell| cell.contributors.encode()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Cell keys as the column arrays an `UNNEST` takes.
#[derive(Default)]
struct CellColumns {
    generations: Vec<i64>,
    periods: Vec<&'static str>,
    starts: Vec<Date>,
    areas: Vec<String>,
    categories: Vec<String>,
}

impl CellColumns {
    fn of<'a>(cells: impl Iterator<Item = &'a CellKey>) -> Self {
        let mut columns = CellColumns::default();
        for cell in cells {
            columns.generations.push(cell.generation_id);
            columns.periods.push(cell.kind.as_str());
            columns.starts.push(cell.period_start);
            columns.areas.push(cell.area_code.clone());
            columns.categories.push(cell.category.clone());
        }
        columns
    }
}

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
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM boundary_generations")
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
    sqlx::query(
        "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_at, captured_day, campaign, category,
             text, feeling_safe, channel, lat, lon, accuracy_m, picked_area_code, status, area_code, reject_code,
             reject_message, processed_at, postcode, tag_lat, tag_lon)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::timestamptz[], $6::date[],
             $7::text[], $8::text[], $9::text[], $10::smallint[], $11::text[], $12::float8[], $13::float8[],
             $14::float8[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::timestamptz[],
             $21::text[], $22::float8[], $23::float8[])
         ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, captured_at = excluded.captured_at,
             captured_day = excluded.captured_day, campaign = excluded.campaign, category = excluded.category,
             text = excluded.text, feeling_safe = excluded.feeling_safe, channel = excluded.channel,
             lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m,
             picked_area_code = excluded.picked_area_code, status = excluded.status,
             area_code = excluded.area_code, reject_code = excluded.reject_code,
             reject_message = excluded.reject_message, processed_at = excluded.processed_at,
             postcode = excluded.postcode, tag_lat = excluded.tag_lat, tag_lon = excluded.tag_lon",
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
    .bind(rows.iter().map(|row| row.postcode.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.tag_point.map(|(lat, _)| lat)).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.tag_point.map(|(_, lon)| lon)).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    let tags: Vec<(Uuid, &AreaTag)> =
        rows.iter().flat_map(|row| row.tags.iter().map(move |tag| (row.id, tag))).collect();
    if !tags.is_empty() {
        sqlx::query(
            "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary)
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::boolean[])",
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

/// Sets `revoked_at` on one row of `table` (`devices` or `invitations`, never input) unless it is set already.
async fn revoke(pool: &PgPool, table: &'static str, id: Uuid) -> anyhow::Result<Revoked> {
    let revoked = sqlx::query(&format!("UPDATE {table} SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"))
        .bind(id)
        .execute(pool)
        .await?;
    if revoked.rows_affected() == 1 {
        return Ok(Revoked::Now);
    }
    let exists =
        sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1")).bind(id).fetch_optional(pool).await?.is_some();
    Ok(if exists { Revoked::Already } else { Revoked::Unknown })
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

    fn latest_migration(&self) -> i64 {
        super::latest_of(&MIGRATOR)
    }

    fn pool_usage(&self) -> super::PoolUsage {
        super::PoolUsage::of(&self.pool)
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

    async fn invitation_secret_fingerprint(&self) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = 'invitation_secret_fingerprint'")
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn claim_invitation_secret(&self, fingerprint: &str) -> anyhow::Result<String> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('invitation_secret_fingerprint', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        self.invitation_secret_fingerprint().await?.context("the invitation secret's fingerprint was just recorded")
    }

    async fn replace_invitation_secret(&self, fingerprint: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('invitation_secret_fingerprint', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn open_keyed_invitations(&self, now: OffsetDateTime) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM invitations
             WHERE code_hash_scheme = 'hmac-sha256' AND revoked_at IS NULL AND uses_left > 0 AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn api_tokens(&self) -> anyhow::Result<Vec<ApiTokenInfo>> {
        super::people::postgres::api_tokens(&self.pool).await
    }

    async fn revoke_api_token(&self, id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "api_tokens", id).await
    }

    async fn authenticate(&self, token_hash: &str) -> anyhow::Result<Option<Authenticated>> {
        let device = sqlx::query(
            "SELECT id, collector_id, revoked_at IS NOT NULL AS revoked FROM devices WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = device {
            if row.get::<bool, _>("revoked") {
                return Ok(Some(Authenticated::RevokedDevice { device_id: row.get("id") }));
            }
            return Ok(Some(super::people::device_principal(row.get("id"), row.get("collector_id"))));
        }
        super::people::postgres::authenticate_token(&self.pool, token_hash, OffsetDateTime::now_utc()).await
    }

    async fn devices(&self, collector: Option<Uuid>) -> anyhow::Result<Vec<DeviceInfo>> {
        let rows = sqlx::query(
            "SELECT id, collector_id, label, created_at, revoked_at, invitation_id FROM devices
             WHERE $1::uuid IS NULL OR collector_id = $1 ORDER BY created_at, id",
        )
        .bind(collector)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| DeviceInfo {
                device_id: row.get("id"),
                collector_id: row.get("collector_id"),
                label: row.get("label"),
                created_at: row.get("created_at"),
                revoked_at: row.get("revoked_at"),
                invitation_id: row.get("invitation_id"),
            })
            .collect())
    }

    async fn revoke_device(&self, device_id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "devices", device_id).await
    }

    async fn device_id_key(&self, device_id: Uuid) -> anyhow::Result<Option<[u8; ID_KEY_BYTES]>> {
        let key: Option<Option<Vec<u8>>> = sqlx::query_scalar("SELECT id_key FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(key.flatten().and_then(|key| key.try_into().ok()))
    }

    async fn device_revoked(&self, device_id: Uuid) -> anyhow::Result<bool> {
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE id = $1 AND revoked_at IS NULL")
            .bind(device_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(live == 0)
    }

    async fn add_invitation(
        &self,
        label: &str,
        code_hash: &str,
        uses: i64,
        expires_at: OffsetDateTime,
    ) -> anyhow::Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO invitations (id, label, code_hash, uses, uses_left, expires_at, code_hash_scheme)
             VALUES ($1, $2, $3, $4, $4, $5, 'hmac-sha256')",
        )
        .bind(id)
        .bind(label)
        .bind(code_hash)
        .bind(uses)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn invitations(&self) -> anyhow::Result<Vec<InvitationInfo>> {
        let rows = sqlx::query(
            "SELECT id, label, uses, uses_left, expires_at, created_at, revoked_at, code_hash_scheme FROM invitations
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| InvitationInfo {
                id: row.get("id"),
                label: row.get("label"),
                uses: row.get("uses"),
                uses_left: row.get("uses_left"),
                expires_at: row.get("expires_at"),
                created_at: row.get("created_at"),
                revoked_at: row.get("revoked_at"),
                legacy_hash: row.get::<String, _>("code_hash_scheme") == "sha256",
            })
            .collect())
    }

    async fn revoke_invitation(&self, id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "invitations", id).await
    }

    async fn redeem_invitation(
        &self,
        code_hashes: &CodeHashes,
        label: &str,
        token_hash: &str,
        id_key: Option<&[u8; ID_KEY_BYTES]>,
        now: OffsetDateTime,
    ) -> Result<NewDevice, RedeemError> {
        let mut tx = self.pool.begin().await?;
        // The row lock serialises redemptions of one invitation across nodes: a second phone waits here and then
        // reads the use the first one took. A legacy hash matches only an invitation stored that way.
        let row = sqlx::query(
            "SELECT id, label, uses_left, expires_at, revoked_at IS NOT NULL AS revoked FROM invitations
             WHERE (code_hash = $1 AND code_hash_scheme = 'hmac-sha256') OR (code_hash = $2 AND code_hash_scheme = 'sha256')
             FOR UPDATE",
        )
        .bind(&code_hashes.keyed)
        .bind(&code_hashes.legacy)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(RedeemError::Unknown)?;
        let invitation = InvitationState {
            id: row.get("id"),
            label: row.get("label"),
            uses_left: row.get("uses_left"),
            expires_at: row.get("expires_at"),
            revoked: row.get("revoked"),
        };
        invitation.check(now)?;
        sqlx::query("UPDATE invitations SET uses_left = uses_left - 1 WHERE id = $1")
            .bind(invitation.id)
            .execute(&mut *tx)
            .await?;
        let label = if label.is_empty() { invitation.label.as_str() } else { label };
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: Uuid::new_v4() };
        sqlx::query("INSERT INTO collectors (id, label) VALUES ($1, $2)")
            .bind(new.collector_id)
            .bind(label)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO devices (id, collector_id, label, token_hash, invitation_id, id_key) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.device_id)
        .bind(new.collector_id)
        .bind(label)
        .bind(token_hash)
        .bind(invitation.id)
        .bind(id_key.map(|key| key.to_vec()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
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
                    picked_area_code, status, area_code, reject_code, reject_message, processed_at, postcode,
                    tag_lat, tag_lon
             FROM insights WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let tags = sqlx::query(
            "SELECT generation_id, area_code, near_boundary FROM insight_areas WHERE insight_id = $1
             ORDER BY generation_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|tag| AreaTag {
            generation_id: tag.get("generation_id"),
            area_code: tag.get("area_code"),
            near_boundary: tag.get("near_boundary"),
        })
        .collect();
        let lat: Option<f64> = row.get("lat");
        let lon: Option<f64> = row.get("lon");
        let accuracy: Option<f64> = row.get("accuracy_m");
        let tag_lat: Option<f64> = row.get("tag_lat");
        let tag_lon: Option<f64> = row.get("tag_lon");
        let status: String = row.get("status");
        let feeling_safe: Option<i16> = row.get("feeling_safe");
        Ok(Some(InsightRow {
            id,
            captured_at: row.get("captured_at"),
            campaign: row.get("campaign"),
            category: row.get("category"),
            text: row.get("text"),
            feeling_safe: feeling_safe.and_then(|score| u8::try_from(score).ok()),
            channel: row.get("channel"),
            gps: lat.zip(lon).map(|(lat, lon)| (lat, lon, accuracy.unwrap_or(0.0))),
            picked_area_code: row.get("picked_area_code"),
            postcode: row.get("postcode"),
            tag_point: tag_lat.zip(tag_lon),
            outcome: Outcome::from_columns(
                &status,
                row.get("area_code"),
                row.get("reject_code"),
                row.get("reject_message"),
            ),
            processed_at: row.get("processed_at"),
            tags,
        }))
    }

    async fn newest_generation_id(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MAX(id) FROM boundary_generations").fetch_one(&self.pool).await?)
    }

    async fn generations(&self) -> anyhow::Result<Vec<GenerationInfo>> {
        let rows = sqlx::query(
            "SELECT g.id, g.set_name, g.generation, g.source,
                    to_char(g.imported_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS imported_at,
                    (SELECT COUNT(*) FROM boundary_areas AS a WHERE a.generation_id = g.id) AS n_areas
             FROM boundary_generations AS g ORDER BY g.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| GenerationInfo {
                id: row.get("id"),
                set_name: row.get("set_name"),
                generation: row.get("generation"),
                source: row.get("source"),
                imported_at: row.get("imported_at"),
                n_areas: row.get("n_areas"),
            })
            .collect())
    }

    async fn generation_areas(&self, generation_id: i64) -> anyhow::Result<Vec<StoredArea>> {
        let rows =
            sqlx::query("SELECT code, name, geometry FROM boundary_areas WHERE generation_id = $1 ORDER BY code")
                .bind(generation_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|row| StoredArea { code: row.get("code"), name: row.get("name"), geometry: row.get("geometry") })
            .collect())
    }

    async fn add_generation(
        &self,
        set_name: &str,
        source: &str,
        areas: Vec<StoredArea>,
        tagger: Tagger<'_>,
    ) -> anyhow::Result<GenerationInfo> {
        self.import_generation(set_name, source, areas, tagger, false).await.map(|(info, _)| info)
    }

    async fn add_first_generation(
        &self,
        set_name: &str,
        source: &str,
        areas: Vec<StoredArea>,
        tagger: Tagger<'_>,
    ) -> anyhow::Result<bool> {
        self.import_generation(set_name, source, areas, tagger, true).await.map(|(_, added)| added)
    }

    async fn rollup(
        &self,
        generation_id: i64,
        days: DayRange,
        area_code: Option<&str>,
        by_category: bool,
        distinct_contributors: bool,
    ) -> anyhow::Result<Vec<AreaRollup>> {
        let (from, to) = days.bounds();
        let runs = tile(from, to);
        let one_cell = is_one_cell(&runs);
        let mut sums = QueryBuilder::<Postgres>::new(SUMS_SELECT);
        push_cells(&mut sums, CELL_COLUMNS, "rollups", generation_id, area_code, by_category, &runs);
        sums.push(") AS cells GROUP BY area_code, category");
        let sum_rows = sums.build().fetch_all(&self.pool).await?;
        // Distinct collectors over several cells: the union of the tiling cells' contributor sets, when asked.
        let contributors = if distinct_contributors && !one_cell {
            let mut sets = QueryBuilder::<Postgres>::new("");
            let columns = "area_code, category, contributors";
            push_cells(&mut sets, columns, "rollups", generation_id, area_code, by_category, &runs);
            let rows = sets.build().fetch_all(&self.pool).await?;
            union_of_contributor_sets(
                rows.into_iter().map(|row| (row.get("area_code"), row.get("category"), row.get("contributors"))),
            )?
        } else {
            Vec::new()
        };
        Ok(assemble_rollups(
            sum_rows
                .iter()
                .map(|row| (row.get("area_code"), row.get("category"), sums_of(row), row.get("n_contributors"))),
            contributors.into_iter(),
            one_cell,
        ))
    }

    async fn category_counts(
        &self,
        generation_id: i64,
        days: DayRange,
        area_code: Option<&str>,
    ) -> anyhow::Result<Vec<CategoryCount>> {
        let (from, to) = days.bounds();
        let rows = category_counts_query::<Postgres>("", generation_id, area_code, &tile(from, to))
            .build()
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| CategoryCount {
                area_code: row.get("area_code"),
                category: row.get("category"),
                n: row.get("n"),
            })
            .collect())
    }

    async fn series(
        &self,
        generation_id: i64,
        area_code: &str,
        kind: PeriodKind,
        days: DayRange,
    ) -> anyhow::Result<Vec<SeriesPoint>> {
        let (from, to) = days.bounds();
        let rows = sqlx::query(&format!(
            "{SUMS_SELECT} SELECT {CELL_COLUMNS} FROM rollups WHERE generation_id = $1 AND area_code = $2
               AND category = '*' AND period = $3 AND period_start >= $4 AND period_start < $5) AS cells
             GROUP BY area_code, category, period_start ORDER BY period_start"
        ))
        .bind(generation_id)
        .bind(area_code)
        .bind(kind.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| SeriesPoint {
                period_start: row.get("period_start"),
                sums: sums_of(row),
                contributors: row.get("n_contributors"),
            })
            .collect())
    }

    async fn load_published(&self, doc_id: DocumentId) -> anyhow::Result<Option<(Vec<u8>, i64)>> {
        let row = sqlx::query("SELECT bytes, version FROM published_documents WHERE doc_id = $1")
            .bind(doc_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| (row.get("bytes"), row.get("version"))))
    }

    async fn save_published(
        &self,
        doc_id: DocumentId,
        bytes: Vec<u8>,
        expected_version: Option<i64>,
    ) -> Result<(), SaveError> {
        let written = match expected_version {
            None => sqlx::query(
                "INSERT INTO published_documents (doc_id, version, bytes) VALUES ($1, 1, $2) ON CONFLICT (doc_id) DO NOTHING",
            )
            .bind(doc_id.to_string())
            .bind(bytes)
            .execute(&self.pool)
            .await,
            Some(version) => sqlx::query(
                "UPDATE published_documents SET version = version + 1, bytes = $2 WHERE doc_id = $1 AND version = $3",
            )
            .bind(doc_id.to_string())
            .bind(bytes)
            .bind(version)
            .execute(&self.pool)
            .await,
        }
        .map_err(classify)?;
        if written.rows_affected() == 1 {
            Ok(())
        } else {
            Err(SaveError::Conflict)
        }
    }

    async fn postcode_centroid(&self, postcode: &str) -> anyhow::Result<Option<(f64, f64)>> {
        let row = sqlx::query("SELECT lat, lon FROM postcodes WHERE postcode = $1")
            .bind(postcode)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| (row.get("lat"), row.get("lon"))))
    }

    async fn import_postcodes(&self, rows: &[(String, f64, f64)]) -> anyhow::Result<ImportedPostcodes> {
        let mut tx = self.pool.begin().await?;
        // Counted inside the transaction, so the difference is this import's alone.
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postcodes").fetch_one(&mut *tx).await?;
        for slice in rows.chunks(50_000) {
            sqlx::query(
                "INSERT INTO postcodes (postcode, lat, lon)
                 SELECT * FROM UNNEST($1::text[], $2::float8[], $3::float8[])
                 ON CONFLICT (postcode) DO UPDATE SET lat = excluded.lat, lon = excluded.lon",
            )
            .bind(slice.iter().map(|(postcode, _, _)| postcode.as_str()).collect::<Vec<_>>())
            .bind(slice.iter().map(|(_, lat, _)| *lat).collect::<Vec<_>>())
            .bind(slice.iter().map(|(_, _, lon)| *lon).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postcodes").fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(ImportedPostcodes::from_counts(before, after, rows.len()))
    }
}

/// The sums of roll-up cells, for a subquery selecting `CELL_COLUMNS` to follow, then `) AS cells GROUP BY …`.
const SUMS_SELECT: &str = "SELECT area_code, category, MIN(period_start) AS period_start,
        SUM(n_insights)::BIGINT AS n, SUM(n_contributors)::BIGINT AS n_contributors,
        SUM(feeling_safe_sum)::BIGINT AS fs_sum, SUM(feeling_safe_n)::BIGINT AS fs_n, SUM(n_staff)::BIGINT AS c0,
        SUM(n_barber_hairdresser)::BIGINT AS c1, SUM(n_pupil)::BIGINT AS c2, SUM(n_youth_worker)::BIGINT AS c3,
        SUM(n_other_channel)::BIGINT AS c4
    FROM (";

fn sums_of(row: &PgRow) -> Sums {
    Sums {
        n: row.get("n"),
        feeling_safe_sum: row.get("fs_sum"),
        feeling_safe_n: row.get("fs_n"),
        channels: [row.get("c0"), row.get("c1"), row.get("c2"), row.get("c3"), row.get("c4")],
    }
}

impl PostgresStore {
    /// Adds a generation (see `Store::add_generation`); with `first_only`, only if the set has none yet, checked
    /// under the same lock as the insert, so nodes starting together seed the bundled set once.
    async fn import_generation(
        &self,
        set_name: &str,
        source: &str,
        areas: Vec<StoredArea>,
        tagger: Tagger<'_>,
        first_only: bool,
    ) -> anyhow::Result<(GenerationInfo, bool)> {
        let mut tx = self.pool.begin().await?;
        // One import at a time per database: the next generation number must not be taken twice.
        sqlx::query("LOCK TABLE boundary_generations IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        let generation: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(generation), 0) + 1 FROM boundary_generations WHERE set_name = $1")
                .bind(set_name)
                .fetch_one(&mut *tx)
                .await?;
        if first_only && generation > 1 {
            let existing = self.generations().await?.into_iter().find(|info| info.set_name == set_name);
            return Ok((existing.context("the set has a generation")?, false));
        }
        let row = sqlx::query(
            "INSERT INTO boundary_generations (set_name, generation, source) VALUES ($1, $2, $3)
             RETURNING id, to_char(imported_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS imported_at",
        )
        .bind(set_name)
        .bind(generation)
        .bind(source)
        .fetch_one(&mut *tx)
        .await?;
        let generation_id: i64 = row.get("id");
        sqlx::query(
            "INSERT INTO boundary_areas (generation_id, code, name, geometry)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[])",
        )
        .bind(generation_id)
        .bind(areas.iter().map(|area| area.code.as_str()).collect::<Vec<_>>())
        .bind(areas.iter().map(|area| area.name.as_str()).collect::<Vec<_>>())
        .bind(areas.iter().map(|area| area.geometry.as_str()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .context("storing the areas")?;

        let mut phases = Phases::start();
        // Tag every counted insight in the new generation and sum its roll-ups in memory; nothing of it exists yet,
        // so the rows are plain inserts, in large slices.
        let mut built = GenerationRollups::new(generation_id);
        let mut tags = GenerationTags::default();
        {
            use futures_util::TryStreamExt;
            let mut rows = sqlx::query(
                "SELECT id, collector_id, captured_day, category, feeling_safe, channel, tag_lat, tag_lon, accuracy_m,
                        picked_area_code, postcode
                 FROM insights WHERE status IN ('filed', 'outside_coverage')",
            )
            .fetch(&mut *tx);
            // Columns by position (the SELECT's order): a million rows, eleven lookups by name each, add up.
            while let Some(row) = rows.try_next().await? {
                let tag_lat: Option<f64> = row.get(6);
                let tag_lon: Option<f64> = row.get(7);
                let taggable = TaggableInsight {
                    tag_point: tag_lat.zip(tag_lon),
                    accuracy_m: row.get(8),
                    picked_area_code: row.get(9),
                    postcode: row.get(10),
                };
                let (area_code, near_boundary) = tagger(&taggable);
                let day: Option<Date> = row.get(2);
                let category: Option<&str> = row.get(3);
                let feeling_safe: Option<i16> = row.get(4);
                if let (Some(day), Some(category)) = (day, category) {
                    built.add(&Counted {
                        area_code: &area_code,
                        day,
                        category,
                        feeling_safe: feeling_safe.map(i64::from),
                        channel: row.get(5),
                        collector_id: row.get(1),
                    });
                }
                tags.ids.push(row.get::<Uuid, _>(0));
                tags.codes.push(area_code);
                tags.near.push(near_boundary);
            }
        }
        let n_insights = tags.ids.len();
        phases.mark("insights read, tagged and summed");
        load_generation(&mut tx, generation_id, Some(tags), built, &mut phases).await?;
        tx.commit().await?;
        phases.mark("committed");
        phases.log(generation_id, n_insights);
        let info = GenerationInfo {
            id: generation_id,
            set_name: set_name.to_owned(),
            generation,
            source: source.to_owned(),
            imported_at: row.get("imported_at"),
            n_areas: i64::try_from(areas.len())?,
        };
        Ok((info, true))
    }
}
