//! `GenerationStore` on PostgreSQL: a new generation is loaded into partitions of its own by binary `COPY`, then
//! indexed and attached; the rebuild of roll-ups a migration asks for.

use anyhow::Context;
use sqlx::postgres::PgPool;
use sqlx::Row;
use time::Date;
use uuid::Uuid;

use crate::store::prelude::*;
use crate::store::rollup::{Counted, GenerationRollups, Phases};
use crate::store::{GenerationInfo, PostgresStore, StoredArea, TaggableInsight, Tagger};

/// A generation's `imported_at` (of the generation aliased `g`) as the RFC 3339 text `GenerationInfo` lists.
const IMPORTED_AT_TEXT: &str = "to_char(g.imported_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

/// Rebuilds the roll-ups of every generation a migration left in `rollups_pending`, from the insights' stored tags,
/// each in its own transaction. Nodes starting together take turns under the generations' lock; whoever comes second
/// finds nothing left to do.
pub(in crate::store) async fn rebuild_pending_rollups(pool: &PgPool) -> anyhow::Result<()> {
    loop {
        let mut tx = pool.begin().await?;
        sqlx::query("LOCK TABLE boundary_generations IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        let Some(generation_id) =
            sqlx::query_scalar::<_, i64>(super::NEXT_PENDING_ROLLUP).fetch_optional(&mut *tx).await?
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
        sqlx::query(super::PENDING_ROLLUP_DONE).bind(generation_id).execute(&mut *tx).await?;
        tx.commit().await?;
        phases.mark("committed");
        phases.log(generation_id, n_insights);
    }
}

/// An insight's area in a new generation, for `load_generation`: ids, area codes and near-boundary flags.
#[derive(Default)]
struct GenerationTags {
    ids: Vec<Uuid>,
    /// The insights' `seq`, kept beside each tag (migration 0017).
    seqs: Vec<i64>,
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
                "COPY {partition} (insight_id, generation_id, area_code, near_boundary, insight_seq)
                 FROM STDIN (FORMAT binary)"
            ),
        )
        .await?;
        for (((id, code), near), seq) in tags.ids.iter().zip(&tags.codes).zip(&tags.near).zip(&tags.seqs) {
            copy.row(5).uuid(*id).bigint(generation_id).text(code).boolean(*near).bigint(*seq);
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

#[async_trait::async_trait]
impl GenerationStore for PostgresStore {
    async fn newest_generation_id(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(super::NEWEST_GENERATION_ID).fetch_one(&self.pool).await?)
    }

    async fn generations(&self) -> anyhow::Result<Vec<GenerationInfo>> {
        Ok(sqlx::query_as(&super::list_generations(IMPORTED_AT_TEXT)).fetch_all(&self.pool).await?)
    }

    async fn generation_areas(&self, generation_id: i64) -> anyhow::Result<Vec<StoredArea>> {
        Ok(sqlx::query_as(super::GENERATION_AREAS).bind(generation_id).fetch_all(&self.pool).await?)
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
}

impl PostgresStore {
    /// Adds a generation (see `GenerationStore::add_generation`); with `first_only`, only if the set has none yet, checked
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
        let generation: i64 = sqlx::query_scalar(super::NEXT_GENERATION).bind(set_name).fetch_one(&mut *tx).await?;
        if first_only && generation > 1 {
            return super::set_has_generation(self.generations().await?, set_name);
        }
        let row = sqlx::query(&format!(
            "INSERT INTO boundary_generations AS g (set_name, generation, source) VALUES ($1, $2, $3)
             RETURNING g.id, {IMPORTED_AT_TEXT} AS imported_at"
        ))
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
                        picked_area_code, postcode, seq
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
                tags.seqs.push(row.get::<i64, _>(11));
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
        super::imported_generation(generation_id, set_name, generation, source, row.get("imported_at"), areas.len())
    }
}
