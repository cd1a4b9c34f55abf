//! The SQLite backend: one file, WAL, `synchronous=FULL` so that a committed write survives a power cut.
//!
//! Writers take the database lock up front (`BEGIN IMMEDIATE`) so a read-then-write transaction never fails half-way
//! on a lock upgrade; `busy_timeout` queues them.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use grapevine_sync_proto::document::format_time;
use grapevine_sync_proto::DocumentId;
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rollup::{
    assemble_rollups, category_counts_query, is_one_cell, push_cells, tile, union_of_contributor_sets, CellWrite,
    Contribution, ContributorSet, Counted, GenerationRollups, PeriodKind, Phases, RollupDeltas, CELL_COLUMNS,
};
use super::{
    check_not_newer, ensure_distinct, tagged_up_to, ApiTokenInfo, AreaRollup, AreaTag, Authenticated, CategoryCount,
    CodeHashes, DayRange, DeviceInfo, DocumentBytes, DocumentChanged, DocumentWrite, GenerationInfo, ImportedPostcodes,
    InsightRow, InvitationInfo, InvitationState, NewDevice, Outcome, RedeemError, Revoked, Role, SaveError,
    SeriesPoint, Store, StoredArea, StoredDocument, Sums, TaggableInsight, Tagger, CHANGE_FEED_CAPACITY,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// One process owns a SQLite database, so the change feed is in memory.
    changes: tokio::sync::broadcast::Sender<DocumentChanged>,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates.
    ///
    /// # Errors
    /// The file cannot be created or opened, or a migration fails.
    pub async fn open(database_url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = Path::new(options.get_filename()).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating the database directory {}", parent.display()))?;
            }
        }
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE EXISTS
                 (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_optional(&pool)
        .await
        .unwrap_or(None);
        check_not_newer(applied, &MIGRATOR)?;
        MIGRATOR.run(&pool).await.context("applying SQLite migrations")?;
        rebuild_pending_rollups(&pool).await.context("rebuilding roll-ups after a migration")?;
        let (changes, _) = tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY);
        Ok(SqliteStore { pool, changes })
    }
}

/// Rebuilds the roll-ups of every generation a migration left in `rollups_pending`, from the insights' stored tags,
/// each in its own transaction.
async fn rebuild_pending_rollups(pool: &SqlitePool) -> anyhow::Result<()> {
    loop {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
        for_each_packed_page(&mut tx, PACKED_TAGGED, Some(generation_id), |json| {
            n_insights += sum_tagged_page(json, &mut built)?;
            Ok(())
        })
        .await?;
        phases.mark("insights read and summed");
        sqlx::query("DELETE FROM rollups WHERE generation_id = ?1").bind(generation_id).execute(&mut *tx).await?;
        insert_generation_cells(&mut tx, &built.finish()).await?;
        sqlx::query("DELETE FROM rollups_pending WHERE generation_id = ?1")
            .bind(generation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        phases.mark("roll-ups written and committed");
        phases.log(generation_id, n_insights);
    }
}

/// The columns of a roll-up row, in the order `push_cell_values` binds them.
const CELL_ROW: &str = "INSERT INTO rollups (generation_id, period, period_start, area_code, category, n_insights,
     n_contributors, feeling_safe_sum, feeling_safe_n, n_staff, n_barber_hairdresser, n_pupil, n_youth_worker,
     n_other_channel, contributors) ";

/// Binds one roll-up row's values (`CELL_ROW`'s columns).
fn push_cell_values<'args>(
    mut row: sqlx::query_builder::Separated<'_, 'args, Sqlite, &'static str>,
    cell: &'args CellWrite,
) {
    row.push_bind(cell.key.generation_id)
        .push_bind(cell.key.kind.as_str())
        .push_bind(cell.key.period_start)
        .push_bind(cell.key.area_code.as_str())
        .push_bind(cell.key.category.as_str())
        .push_bind(cell.delta.n)
        .push_bind(cell.n_contributors())
        .push_bind(cell.delta.feeling_safe_sum)
        .push_bind(cell.delta.feeling_safe_n);
    for channel in cell.delta.channels {
        row.push_bind(channel);
    }
    row.push_bind(cell.contributors.encode());
}

/// A page of the insights a new generation tags, packed by SQLite into one JSON array of arrays (see
/// `PackedInsight`) after the insight of rowid `?1`, at most `?2` of them, with the page's last rowid. A million
/// insights read as a million rows cost sqlx a hand-off between SQLite's worker thread and the reader for each row,
/// two thirds of a re-tag; as pages they cost a few hundred. Coordinates go as text of 17 significant digits
/// (`%!.17g`), which gives back the stored `f64` exactly; JSON's own numbers keep only 15.
const PACKED_INSIGHTS: &str = "
    SELECT MAX(rowid), '[' || group_concat(insight, ',') || ']' FROM (
        SELECT rowid, json_array(id, collector_id, captured_day, category, feeling_safe, channel,
                                 iif(tag_lat IS NULL, NULL, printf('%!.17g', tag_lat)),
                                 iif(tag_lon IS NULL, NULL, printf('%!.17g', tag_lon)),
                                 iif(accuracy_m IS NULL, NULL, printf('%!.17g', accuracy_m)),
                                 picked_area_code, postcode) AS insight
        FROM insights WHERE rowid > ?1 AND status IN ('filed', 'outside_coverage') ORDER BY rowid LIMIT ?2)";

/// Insights per page of `PACKED_INSIGHTS`: about a megabyte of JSON.
const PACKED_PAGE: i64 = 4_096;

/// How `captured_day` is stored.
const DAY: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// One insight of a `PACKED_INSIGHTS` page, in the order of its `json_array`. Its text borrows from the page where
/// it holds no escapes (always, but for an area code or postcode with quotes or control characters), so a million
/// insights are not a few million allocations.
#[derive(serde::Deserialize)]
struct PackedInsight<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    collector_id: Cow<'a, str>,
    #[serde(borrow)]
    captured_day: Option<Cow<'a, str>>,
    #[serde(borrow)]
    category: Option<Cow<'a, str>>,
    feeling_safe: Option<i64>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag_lat: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag_lon: Option<Cow<'a, str>>,
    #[serde(borrow)]
    accuracy_m: Option<Cow<'a, str>>,
    #[serde(borrow)]
    picked_area_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    postcode: Option<Cow<'a, str>>,
}

impl PackedInsight<'_> {
    fn taggable(&self) -> anyhow::Result<TaggableInsight> {
        let number = |text: &Option<Cow<'_, str>>, what: &str| {
            text.as_deref()
                .map(str::parse::<f64>)
                .transpose()
                .with_context(|| format!("the {what} of insight {}", self.id))
        };
        let tag_lat = number(&self.tag_lat, "latitude")?;
        let tag_lon = number(&self.tag_lon, "longitude")?;
        Ok(TaggableInsight {
            tag_point: tag_lat.zip(tag_lon),
            accuracy_m: number(&self.accuracy_m, "accuracy")?,
            picked_area_code: self.picked_area_code.as_deref().map(str::to_owned),
            postcode: self.postcode.as_deref().map(str::to_owned),
        })
    }
}

/// Tags every insight of a `PACKED_INSIGHTS` page in a new generation, adding it to the generation's roll-ups and its
/// tag to `tags` (insight id, area code, near a border).
fn tag_and_sum_page(
    json: &str,
    tagger: Tagger<'_>,
    built: &mut GenerationRollups,
    tags: &mut Vec<(String, String, bool)>,
) -> anyhow::Result<()> {
    let page: Vec<PackedInsight> =
        serde_json::from_str(json).context("reading a page of insights as SQLite packed it")?;
    for insight in page {
        let (area_code, near_boundary) = tagger(&insight.taggable()?);
        if let (Some(day), Some(category)) = (&insight.captured_day, &insight.category) {
            built.add(&Counted {
                area_code: &area_code,
                day: time::Date::parse(day, DAY).with_context(|| format!("the day of insight {}", insight.id))?,
                category,
                feeling_safe: insight.feeling_safe,
                channel: insight.channel.as_deref(),
                collector_id: insight.collector_id.parse().context("collector id")?,
            });
        }
        tags.push((insight.id.into_owned(), area_code, near_boundary));
    }
    Ok(())
}

/// Reads a packed query (`PACKED_INSIGHTS`, `PACKED_TAGGED`) page by page, `?1` the last rowid read, `?2` the page
/// size and `?3` the generation if any, giving each page's JSON to `read`. SQLite packs the next page on its worker
/// thread while `read` works here: the join polls the query first (`biased`), which sends it to the worker.
async fn for_each_packed_page(
    tx: &mut sqlx::SqliteConnection,
    query: &'static str,
    generation_id: Option<i64>,
    mut read: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let page_after = |after: i64| {
        let query = sqlx::query_as::<_, (Option<i64>, Option<String>)>(query).bind(after).bind(PACKED_PAGE);
        match generation_id {
            Some(generation_id) => query.bind(generation_id),
            None => query,
        }
    };
    let mut page = page_after(0).fetch_one(&mut *tx).await?;
    while let (Some(last), Some(json)) = page {
        let (next, done) = tokio::join!(biased; page_after(last).fetch_one(&mut *tx), async { read(&json) });
        done?;
        page = next?;
    }
    Ok(())
}

/// A page of the insights counted in generation `?3`, as `PACKED_INSIGHTS` packs them: each with its area code in
/// that generation (see `PackedTagged`).
const PACKED_TAGGED: &str = "
    SELECT MAX(r), '[' || group_concat(insight, ',') || ']' FROM (
        SELECT i.rowid AS r,
               json_array(i.collector_id, i.captured_day, i.category, i.feeling_safe, i.channel, t.area_code) AS insight
        FROM insights AS i JOIN insight_areas AS t ON t.insight_id = i.id AND t.generation_id = ?3
        WHERE i.rowid > ?1 AND i.status IN ('filed', 'outside_coverage')
          AND i.captured_day IS NOT NULL AND i.category IS NOT NULL
        ORDER BY i.rowid LIMIT ?2)";

/// One insight of a `PACKED_TAGGED` page, in the order of its `json_array`, its text borrowed from the page.
#[derive(serde::Deserialize)]
struct PackedTagged<'a> {
    #[serde(borrow)]
    collector_id: Cow<'a, str>,
    #[serde(borrow)]
    captured_day: Cow<'a, str>,
    #[serde(borrow)]
    category: Cow<'a, str>,
    feeling_safe: Option<i64>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    area_code: Cow<'a, str>,
}

/// Adds every insight of a `PACKED_TAGGED` page to a generation's roll-ups; how many there were.
fn sum_tagged_page(json: &str, built: &mut GenerationRollups) -> anyhow::Result<usize> {
    let page: Vec<PackedTagged> =
        serde_json::from_str(json).context("reading a page of tagged insights as SQLite packed it")?;
    for insight in &page {
        built.add(&Counted {
            area_code: &insight.area_code,
            day: time::Date::parse(&insight.captured_day, DAY).context("the day of an insight")?,
            category: &insight.category,
            feeling_safe: insight.feeling_safe,
            channel: insight.channel.as_deref(),
            collector_id: insight.collector_id.parse().context("collector id")?,
        });
    }
    Ok(page.len())
}

/// Rows per statement when a whole generation is written: SQLite takes at most 32,766 bound values a statement.
const GENERATION_SLICE: usize = 1_000;

/// Writes a generation built from scratch: plain multi-row inserts, in table order, so each lands beside the last.
async fn insert_generation_cells(tx: &mut sqlx::SqliteConnection, cells: &[CellWrite]) -> anyhow::Result<()> {
    execute_pipelined(
        tx,
        cells.chunks(GENERATION_SLICE).map(|slice| {
            let mut insert = QueryBuilder::<Sqlite>::new(CELL_ROW);
            insert.push_values(slice, |row, cell| push_cell_values(row, cell));
            insert
        }),
    )
    .await
}

/// Runs the statements `statements` builds, in order, each built while SQLite's worker thread runs the one before:
/// the join polls the statement first (`biased`), which sends it to the worker, then builds the next.
async fn execute_pipelined<'args>(
    tx: &mut sqlx::SqliteConnection,
    mut statements: impl Iterator<Item = QueryBuilder<'args, Sqlite>>,
) -> anyhow::Result<()> {
    let Some(mut current) = statements.next() else { return Ok(()) };
    loop {
        let (done, next) = tokio::join!(biased; current.build().execute(&mut *tx), async { statements.next() });
        done?;
        match next {
            Some(next) => current = next,
            None => return Ok(()),
        }
    }
}

impl SqliteStore {
    /// Writes a consistent copy of the database to `path` (`VACUUM INTO`), safe while the server runs.
    ///
    /// # Errors
    /// `path` exists already, or the copy fails.
    pub async fn backup_to(&self, path: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(!path.exists(), "{} exists already; backups never overwrite", path.display());
        let path_text = path.to_str().context("the backup path must be UTF-8")?;
        sqlx::query("VACUUM INTO ?1").bind(path_text).execute(&self.pool).await.context("writing the backup")?;
        Ok(())
    }

    /// Replaces the database at `database_url` with the backup at `from`. The backup is checked (readable, not newer
    /// than this build, migrated to it) on a copy first, so a bad backup leaves the database as it was. The server
    /// must be stopped.
    ///
    /// # Errors
    /// The backup is unreadable or newer than this build, or the files cannot be written.
    pub async fn restore(from: &Path, database_url: &str) -> anyhow::Result<()> {
        let target = SqliteConnectOptions::from_str(database_url)?.get_filename().to_path_buf();
        let staging = target.with_extension("restoring");
        let _ = std::fs::remove_file(&staging);
        if let Some(parent) = target.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &staging).with_context(|| format!("reading the backup {}", from.display()))?;
        let staging_url = format!("sqlite://{}", staging.display());
        let checked = SqliteStore::open(&staging_url).await;
        match checked {
            Ok(store) => {
                // A restored database is a new lineage: phones must re-offer whatever it lacks.
                sqlx::query("UPDATE meta SET value = ?1 WHERE key = 'storage_id'")
                    .bind(Uuid::new_v4().simple().to_string())
                    .execute(&store.pool)
                    .await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&store.pool).await?;
                store.pool.close().await;
            }
            Err(error) => {
                let _ = std::fs::remove_file(&staging);
                return Err(error.context(format!("{} is not a usable backup", from.display())));
            }
        }
        for suffix in ["-wal", "-shm"] {
            let mut side_file = target.clone().into_os_string();
            side_file.push(suffix);
            let _ = std::fs::remove_file(side_file);
        }
        std::fs::rename(&staging, &target).context("moving the restored database into place")?;
        Ok(())
    }
}

fn now_text() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// Writes the summed roll-up deltas of a transaction: for each cell that moves, its stored contributor set is read,
/// the new set worked out here, and the cell written once with its counters; a cell a negative delta may have emptied
/// is pruned. SQLite has one writer at a time, so nothing changes between the read and the write.
async fn apply_deltas(tx: &mut sqlx::SqliteConnection, deltas: &RollupDeltas) -> anyhow::Result<()> {
    let mut stored = std::collections::HashMap::new();
    for (key, _) in deltas.changed_cells() {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT contributors FROM rollups WHERE generation_id = ?1 AND category = ?2 AND period = ?3
               AND period_start = ?4 AND area_code = ?5",
        )
        .bind(key.generation_id)
        .bind(&key.category)
        .bind(key.kind.as_str())
        .bind(key.period_start)
        .bind(&key.area_code)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(bytes) = bytes {
            let set =
                ContributorSet::decode(&bytes).context("the stored contributor set of a roll-up cell is damaged")?;
            stored.insert(key.clone(), set);
        }
    }
    for cell in deltas.writes(stored) {
        let mut upsert = QueryBuilder::<Sqlite>::new(CELL_ROW);
        upsert.push_values([&cell], |row, cell| push_cell_values(row, cell));
        upsert.push(
            " ON CONFLICT (generation_id, category, period, period_start, area_code) DO UPDATE SET
                 n_insights = n_insights + excluded.n_insights,
                 n_contributors = excluded.n_contributors,
                 feeling_safe_sum = feeling_safe_sum + excluded.feeling_safe_sum,
                 feeling_safe_n = feeling_safe_n + excluded.feeling_safe_n,
                 n_staff = n_staff + excluded.n_staff,
                 n_barber_hairdresser = n_barber_hairdresser + excluded.n_barber_hairdresser,
                 n_pupil = n_pupil + excluded.n_pupil,
                 n_youth_worker = n_youth_worker + excluded.n_youth_worker,
                 n_other_channel = n_other_channel + excluded.n_other_channel,
                 contributors = excluded.contributors",
        );
        upsert.build().execute(&mut *tx).await?;
        if cell.shrinks() {
            let key = &cell.key;
            sqlx::query(
                "DELETE FROM rollups WHERE generation_id = ?1 AND period = ?2 AND period_start = ?3
                   AND area_code = ?4 AND category = ?5 AND n_insights = 0",
            )
            .bind(key.generation_id)
            .bind(key.kind.as_str())
            .bind(key.period_start)
            .bind(&key.area_code)
            .bind(&key.category)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Sets `revoked_at` on one row of `table` (`devices` or `invitations`, never input) unless it is set already.
async fn revoke(pool: &SqlitePool, table: &'static str, id: Uuid) -> anyhow::Result<Revoked> {
    let revoked = sqlx::query(&format!("UPDATE {table} SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL"))
        .bind(id.to_string())
        .bind(now_text())
        .execute(pool)
        .await?;
    if revoked.rows_affected() == 1 {
        return Ok(Revoked::Now);
    }
    let exists = sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = ?1"))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?
        .is_some();
    Ok(if exists { Revoked::Already } else { Revoked::Unknown })
}

fn parse_time(text: Option<String>) -> Option<OffsetDateTime> {
    text.and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok())
}

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
    if claimed.rows_affected() != 1 {
        return Err(SaveError::Conflict);
    }
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
    let old = sqlx::query("SELECT status, captured_day, category, feeling_safe, channel FROM insights WHERE id = ?1")
        .bind(&insight_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
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
    sqlx::query(
        "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_at, captured_day, campaign, category,
             text, feeling_safe, channel, lat, lon, accuracy_m, picked_area_code, status, area_code, reject_code,
             reject_message, processed_at, postcode, tag_lat, tag_lon)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
             ?23)
         ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, captured_at = excluded.captured_at,
             captured_day = excluded.captured_day, campaign = excluded.campaign, category = excluded.category,
             text = excluded.text, feeling_safe = excluded.feeling_safe, channel = excluded.channel,
             lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m,
             picked_area_code = excluded.picked_area_code, status = excluded.status,
             area_code = excluded.area_code, reject_code = excluded.reject_code,
             reject_message = excluded.reject_message, processed_at = excluded.processed_at,
             postcode = excluded.postcode, tag_lat = excluded.tag_lat, tag_lon = excluded.tag_lon",
    )
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
    .execute(&mut *tx)
    .await
    .map_err(anyhow::Error::from)?;
    for tag in &row.tags {
        sqlx::query(
            "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&insight_id)
        .bind(tag.generation_id)
        .bind(&tag.area_code)
        .bind(tag.near_boundary)
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
impl Store for SqliteStore {
    async fn add_device(&self, label: &str, token_hash: &str, collector: Option<Uuid>) -> anyhow::Result<NewDevice> {
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: collector.unwrap_or_else(Uuid::new_v4) };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if collector.is_some() {
            let known: Option<String> = sqlx::query_scalar("SELECT id FROM collectors WHERE id = ?1")
                .bind(new.collector_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            anyhow::ensure!(known.is_some(), "no collector has the id {}", new.collector_id);
        } else {
            sqlx::query("INSERT INTO collectors (id, label, created_at) VALUES (?1, ?2, ?3)")
                .bind(new.collector_id.to_string())
                .bind(label)
                .bind(now_text())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO devices (id, collector_id, label, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(new.device_id.to_string())
        .bind(new.collector_id.to_string())
        .bind(label)
        .bind(token_hash)
        .bind(now_text())
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
        sqlx::query("INSERT INTO api_tokens (id, role, label, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(id.to_string())
            .bind(role.as_str())
            .bind(label)
            .bind(token_hash)
            .bind(now_text())
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
            "INSERT INTO meta (key, value) VALUES ('invitation_secret_fingerprint', ?1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        self.invitation_secret_fingerprint().await?.context("the invitation secret's fingerprint was just recorded")
    }

    async fn replace_invitation_secret(&self, fingerprint: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('invitation_secret_fingerprint', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn open_keyed_invitations(&self, now: OffsetDateTime) -> anyhow::Result<i64> {
        // Expiry is compared as a time, not as text: RFC 3339 strings with and without fractions do not sort.
        let expiries: Vec<String> = sqlx::query_scalar(
            "SELECT expires_at FROM invitations
             WHERE code_hash_scheme = 'hmac-sha256' AND revoked_at IS NULL AND uses_left > 0",
        )
        .fetch_all(&self.pool)
        .await?;
        let open = expiries.into_iter().filter(|expiry| parse_time(Some(expiry.clone())).is_none_or(|at| at > now));
        Ok(i64::try_from(open.count())?)
    }

    async fn api_tokens(&self) -> anyhow::Result<Vec<ApiTokenInfo>> {
        super::people::sqlite::api_tokens(&self.pool).await
    }

    async fn revoke_api_token(&self, id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "api_tokens", id).await
    }

    async fn authenticate(&self, token_hash: &str) -> anyhow::Result<Option<Authenticated>> {
        let device = sqlx::query("SELECT id, collector_id, revoked_at FROM devices WHERE token_hash = ?1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = device {
            let device_id: String = row.get("id");
            let device_id = device_id.parse().context("device id")?;
            let revoked_at: Option<String> = row.get("revoked_at");
            if revoked_at.is_some() {
                return Ok(Some(Authenticated::RevokedDevice { device_id }));
            }
            let collector_id: String = row.get("collector_id");
            return Ok(Some(super::people::device_principal(device_id, collector_id.parse().context("collector id")?)));
        }
        super::people::sqlite::authenticate_token(&self.pool, token_hash, OffsetDateTime::now_utc()).await
    }

    async fn devices(&self, collector: Option<Uuid>) -> anyhow::Result<Vec<DeviceInfo>> {
        let rows = sqlx::query(
            "SELECT id, collector_id, label, created_at, revoked_at, invitation_id FROM devices
             WHERE ?1 IS NULL OR collector_id = ?1 ORDER BY created_at, id",
        )
        .bind(collector.map(|id| id.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let uuid = |column: &str| -> anyhow::Result<Option<Uuid>> {
                    let text: Option<String> = row.get(column);
                    text.map(|text| text.parse().with_context(|| format!("{column} {text}"))).transpose()
                };
                Ok(DeviceInfo {
                    device_id: uuid("id")?.context("device id")?,
                    collector_id: uuid("collector_id")?.context("collector id")?,
                    label: row.get("label"),
                    created_at: parse_time(row.get("created_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    revoked_at: parse_time(row.get("revoked_at")),
                    invitation_id: uuid("invitation_id")?,
                })
            })
            .collect()
    }

    async fn revoke_device(&self, device_id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "devices", device_id).await
    }

    async fn device_id_key(&self, device_id: Uuid) -> anyhow::Result<Option<[u8; ID_KEY_BYTES]>> {
        let key: Option<Option<Vec<u8>>> = sqlx::query_scalar("SELECT id_key FROM devices WHERE id = ?1")
            .bind(device_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(key.flatten().and_then(|key| key.try_into().ok()))
    }

    async fn device_revoked(&self, device_id: Uuid) -> anyhow::Result<bool> {
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE id = ?1 AND revoked_at IS NULL")
            .bind(device_id.to_string())
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
            "INSERT INTO invitations (id, label, code_hash, uses, uses_left, expires_at, created_at, code_hash_scheme)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 'hmac-sha256')",
        )
        .bind(id.to_string())
        .bind(label)
        .bind(code_hash)
        .bind(uses)
        .bind(format_time(expires_at.to_offset(time::UtcOffset::UTC)))
        .bind(now_text())
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
        rows.iter()
            .map(|row| {
                let id: String = row.get("id");
                Ok(InvitationInfo {
                    id: id.parse().context("invitation id")?,
                    label: row.get("label"),
                    uses: row.get("uses"),
                    uses_left: row.get("uses_left"),
                    expires_at: parse_time(row.get("expires_at")).context("invitation expiry")?,
                    created_at: parse_time(row.get("created_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    revoked_at: parse_time(row.get("revoked_at")),
                    legacy_hash: row.get::<String, _>("code_hash_scheme") == "sha256",
                })
            })
            .collect()
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
        // The immediate transaction holds the database's write lock from the read on: redemptions serialise, and
        // the use counted is the use checked.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // A legacy hash matches only an invitation stored that way, so a keyed hash can never be found by it.
        let row = sqlx::query(
            "SELECT id, label, uses_left, expires_at, revoked_at FROM invitations
             WHERE (code_hash = ?1 AND code_hash_scheme = 'hmac-sha256') OR (code_hash = ?2 AND code_hash_scheme = 'sha256')",
        )
        .bind(&code_hashes.keyed)
        .bind(&code_hashes.legacy)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(RedeemError::Unknown)?;
        let id: String = row.get("id");
        let revoked_at: Option<String> = row.get("revoked_at");
        let invitation = InvitationState {
            id: id.parse().context("invitation id")?,
            label: row.get("label"),
            uses_left: row.get("uses_left"),
            expires_at: parse_time(row.get("expires_at")).context("invitation expiry")?,
            revoked: revoked_at.is_some(),
        };
        invitation.check(now)?;
        sqlx::query("UPDATE invitations SET uses_left = uses_left - 1 WHERE id = ?1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        let label = if label.is_empty() { invitation.label.as_str() } else { label };
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: Uuid::new_v4() };
        sqlx::query("INSERT INTO collectors (id, label, created_at) VALUES (?1, ?2, ?3)")
            .bind(new.collector_id.to_string())
            .bind(label)
            .bind(now_text())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO devices (id, collector_id, label, token_hash, created_at, invitation_id, id_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(new.device_id.to_string())
        .bind(new.collector_id.to_string())
        .bind(label)
        .bind(token_hash)
        .bind(now_text())
        .bind(&id)
        .bind(id_key.map(|key| key.to_vec()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn load_document(&self, doc_id: DocumentId) -> anyhow::Result<Option<StoredDocument>> {
        let doc_id = doc_id.to_string();
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT collector_id, version FROM documents WHERE doc_id = ?1")
            .bind(&doc_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let chunks: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM document_chunks WHERE doc_id = ?1 ORDER BY seq")
                .bind(&doc_id)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let collector_id: String = row.get("collector_id");
        Ok(Some(StoredDocument {
            collector_id: collector_id.parse().context("collector id")?,
            n_chunks: i64::try_from(chunks.len())?,
            bytes: chunks.concat(),
            version: row.get("version"),
        }))
    }

    async fn save_document(&self, write: DocumentWrite) -> Result<(), SaveError> {
        self.save_documents(vec![write]).await
    }

    async fn save_documents(&self, writes: Vec<DocumentWrite>) -> Result<(), SaveError> {
        ensure_distinct(&writes)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(anyhow::Error::from)?;
        // Tags must cover every generation; a re-tag holds the write lock until it commits, so this sees it whole.
        if let Some(tagged_up_to) = tagged_up_to(&writes) {
            let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM boundary_generations")
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
        Ok(sqlx::query_scalar("SELECT state FROM sync_states WHERE device_id = ?1 AND doc_id = ?2")
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
            sqlx::query(
                "INSERT INTO sync_states (device_id, doc_id, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (device_id, doc_id) DO UPDATE SET state = excluded.state",
            )
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
        let rows = sqlx::query(
            "SELECT doc_id, change_seq FROM documents
             WHERE collector_id = ?1 AND change_seq > ?3
               AND (last_device_id IS NULL OR last_device_id <> ?2)
             ORDER BY change_seq LIMIT ?4",
        )
        .bind(collector_id.to_string())
        .bind(device_id.to_string())
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
        self.changes.subscribe()
    }

    async fn insight(&self, id: Uuid) -> anyhow::Result<Option<InsightRow>> {
        let row = sqlx::query(
            "SELECT captured_at, campaign, category, text, feeling_safe, channel, lat, lon, accuracy_m,
                    picked_area_code, status, area_code, reject_code, reject_message, processed_at, postcode,
                    tag_lat, tag_lon
             FROM insights WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let tags = sqlx::query(
            "SELECT generation_id, area_code, near_boundary FROM insight_areas WHERE insight_id = ?1
             ORDER BY generation_id",
        )
        .bind(id.to_string())
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
        let feeling_safe: Option<i64> = row.get("feeling_safe");
        Ok(Some(InsightRow {
            id,
            captured_at: parse_time(row.get("captured_at")),
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
            processed_at: parse_time(row.get("processed_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            tags,
        }))
    }

    async fn newest_generation_id(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MAX(id) FROM boundary_generations").fetch_one(&self.pool).await?)
    }

    async fn generations(&self) -> anyhow::Result<Vec<GenerationInfo>> {
        let rows = sqlx::query(
            "SELECT g.id, g.set_name, g.generation, g.source, g.imported_at,
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
            sqlx::query("SELECT code, name, geometry FROM boundary_areas WHERE generation_id = ?1 ORDER BY code")
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
        let mut sums = QueryBuilder::<Sqlite>::new(SUMS_SELECT);
        push_cells(&mut sums, CELL_COLUMNS, "rollups", generation_id, area_code, by_category, &runs);
        sums.push(") AS cells GROUP BY area_code, category");
        let sum_rows = sums.build().fetch_all(&self.pool).await?;
        // Distinct collectors over several cells: the union of the tiling cells' contributor sets, when asked.
        let contributors = if distinct_contributors && !one_cell {
            let mut sets = QueryBuilder::<Sqlite>::new("");
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
        // Packed by SQLite into one JSON value: a row each through sqlx's worker thread costs more than the query.
        let mut query = category_counts_query::<Sqlite>(
            "SELECT json_group_array(json_array(area_code, category, n)) FROM (",
            generation_id,
            area_code,
            &tile(from, to),
        );
        query.push(") AS counts");
        let packed: String = query.build_query_scalar().fetch_one(&self.pool).await?;
        let counts: Vec<(String, String, i64)> =
            serde_json::from_str(&packed).context("reading category counts as SQLite packed them")?;
        Ok(counts.into_iter().map(|(area_code, category, n)| CategoryCount { area_code, category, n }).collect())
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
            "{SUMS_SELECT} SELECT {CELL_COLUMNS} FROM rollups WHERE generation_id = ?1 AND area_code = ?2
               AND category = '*' AND period = ?3 AND period_start >= ?4 AND period_start < ?5) AS cells
             GROUP BY period_start ORDER BY period_start"
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
        let row = sqlx::query("SELECT bytes, version FROM published_documents WHERE doc_id = ?1")
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
                "INSERT INTO published_documents (doc_id, version, bytes) VALUES (?1, 1, ?2) ON CONFLICT (doc_id) DO NOTHING",
            )
            .bind(doc_id.to_string())
            .bind(bytes)
            .execute(&self.pool)
            .await,
            Some(version) => sqlx::query(
                "UPDATE published_documents SET version = version + 1, bytes = ?2 WHERE doc_id = ?1 AND version = ?3",
            )
            .bind(doc_id.to_string())
            .bind(bytes)
            .bind(version)
            .execute(&self.pool)
            .await,
        }
        .map_err(anyhow::Error::from)?;
        if written.rows_affected() == 1 {
            Ok(())
        } else {
            Err(SaveError::Conflict)
        }
    }

    async fn postcode_centroid(&self, postcode: &str) -> anyhow::Result<Option<(f64, f64)>> {
        let row = sqlx::query("SELECT lat, lon FROM postcodes WHERE postcode = ?1")
            .bind(postcode)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| (row.get("lat"), row.get("lon"))))
    }

    async fn import_postcodes(&self, rows: &[(String, f64, f64)]) -> anyhow::Result<ImportedPostcodes> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Counted inside the transaction, so the difference is this import's alone.
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postcodes").fetch_one(&mut *tx).await?;
        for (postcode, lat, lon) in rows {
            sqlx::query(
                "INSERT INTO postcodes (postcode, lat, lon) VALUES (?1, ?2, ?3)
                 ON CONFLICT (postcode) DO UPDATE SET lat = excluded.lat, lon = excluded.lon",
            )
            .bind(postcode)
            .bind(lat)
            .bind(lon)
            .execute(&mut *tx)
            .await?;
        }
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postcodes").fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(ImportedPostcodes::from_counts(before, after, rows.len()))
    }
}

/// The sums of roll-up cells, for a subquery selecting `CELL_COLUMNS` to follow, then `) AS cells GROUP BY …`.
const SUMS_SELECT: &str = "SELECT area_code, category, MIN(period_start) AS period_start, SUM(n_insights) AS n,
        SUM(n_contributors) AS n_contributors, SUM(feeling_safe_sum) AS fs_sum, SUM(feeling_safe_n) AS fs_n,
        SUM(n_staff) AS c0, SUM(n_barber_hairdresser) AS c1, SUM(n_pupil) AS c2, SUM(n_youth_worker) AS c3,
        SUM(n_other_channel) AS c4
    FROM (";

fn sums_of(row: &SqliteRow) -> Sums {
    Sums {
        n: row.get("n"),
        feeling_safe_sum: row.get("fs_sum"),
        feeling_safe_n: row.get("fs_n"),
        channels: [row.get("c0"), row.get("c1"), row.get("c2"), row.get("c3"), row.get("c4")],
    }
}

impl SqliteStore {
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let generation: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(generation), 0) + 1 FROM boundary_generations WHERE set_name = ?1")
                .bind(set_name)
                .fetch_one(&mut *tx)
                .await?;
        if first_only && generation > 1 {
            let existing = self.generations().await?.into_iter().find(|info| info.set_name == set_name);
            return Ok((existing.context("the set has a generation")?, false));
        }
        let imported_at = now_text();
        let generation_id: i64 = sqlx::query_scalar(
            "INSERT INTO boundary_generations (set_name, generation, source, imported_at) VALUES (?1, ?2, ?3, ?4)
             RETURNING id",
        )
        .bind(set_name)
        .bind(generation)
        .bind(source)
        .bind(&imported_at)
        .fetch_one(&mut *tx)
        .await?;
        for area in &areas {
            sqlx::query("INSERT INTO boundary_areas (generation_id, code, name, geometry) VALUES (?1, ?2, ?3, ?4)")
                .bind(generation_id)
                .bind(&area.code)
                .bind(&area.name)
                .bind(&area.geometry)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("storing area {}", area.code))?;
        }

        let mut phases = Phases::start();
        // Tag every counted insight in the new generation and sum its roll-ups in memory; nothing of it exists yet,
        // so the rows are plain multi-row inserts, in key order.
        let mut built = GenerationRollups::new(generation_id);
        let mut tags = Vec::new();
        for_each_packed_page(&mut tx, PACKED_INSIGHTS, None, |json| {
            tag_and_sum_page(json, tagger, &mut built, &mut tags)
        })
        .await?;
        phases.mark("insights read, tagged and summed");
        // The roll-ups are sorted into rows on another thread while the tags are sorted and written here.
        let cells = tokio::task::spawn_blocking(move || built.finish());
        tags.sort_unstable();
        let tag_rows = tags.chunks(GENERATION_SLICE * 3).map(|slice| {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary) ",
            );
            insert.push_values(slice, |mut row, (insight_id, area_code, near_boundary)| {
                row.push_bind(insight_id.as_str())
                    .push_bind(generation_id)
                    .push_bind(area_code.as_str())
                    .push_bind(*near_boundary);
            });
            insert
        });
        execute_pipelined(&mut tx, tag_rows).await?;
        phases.mark("tags sorted and written");
        let cells = cells.await?;
        phases.mark("roll-ups sorted (beyond the tags)");
        insert_generation_cells(&mut tx, &cells).await?;
        phases.mark("roll-ups written");
        tx.commit().await?;
        phases.mark("committed");
        phases.log(generation_id, tags.len());
        let info = GenerationInfo {
            id: generation_id,
            set_name: set_name.to_owned(),
            generation,
            source: source.to_owned(),
            imported_at,
            n_areas: i64::try_from(areas.len())?,
        };
        Ok((info, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the migrations as released up to `last`, by a migrator that knows no later ones.
    async fn migrate_up_to(pool: &SqlitePool, dir: &Path, last: i64) {
        let released = dir.join("migrations");
        std::fs::create_dir(&released).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for entry in std::fs::read_dir(source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.get(..4).and_then(|number| number.parse::<i64>().ok()).is_some_and(|number| number <= last) {
                std::fs::copy(&path, released.join(name)).unwrap();
            }
        }
        let migrator = sqlx::migrate::Migrator::new(released.as_path()).await.unwrap();
        assert_eq!(migrator.iter().count(), usize::try_from(last).unwrap());
        migrator.run(pool).await.unwrap();
    }

    /// 0009 keys invitation codes with the invitation secret: an invitation stored before it keeps its plain SHA-256,
    /// is listed as legacy and still enrols; only the legacy hash finds it.
    #[tokio::test]
    async fn an_invitation_made_before_the_secret_still_enrols_after_the_migration() {
        use crate::invitations::{legacy_hash_code, InvitationSecret};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        migrate_up_to(&pool, dir.path(), 8).await;
        let code = "HNLY-7K4Q-PX";
        sqlx::query(
            "INSERT INTO invitations (id, label, code_hash, uses, uses_left, expires_at, created_at)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 'Old cohort', ?1, 2, 2, '2999-01-01T00:00:00Z', 'now')",
        )
        .bind(legacy_hash_code(code))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        assert!(store.invitations().await.unwrap()[0].legacy_hash);
        let secret = InvitationSecret::generate();
        let now = OffsetDateTime::now_utc();
        let keyed_only = CodeHashes { keyed: legacy_hash_code(code), legacy: "0".repeat(64) };
        assert!(
            matches!(store.redeem_invitation(&keyed_only, "", "token-1", None, now).await, Err(RedeemError::Unknown)),
            "a legacy row is not found as if keyed"
        );
        store.redeem_invitation(&secret.code_hashes("hnly 7k4q px"), "", "token-2", None, now).await.unwrap();
        assert_eq!(store.invitations().await.unwrap()[0].uses_left, 1);
        assert_eq!(store.open_keyed_invitations(now).await.unwrap(), 0, "a legacy invitation needs no secret");
    }

    /// 0008 moves contributors into the cells' rows and leaves the roll-ups to be rebuilt: a database written at
    /// 0007, with a contributor row per collector and cell, opens with its roll-ups rebuilt from the stored tags.
    #[tokio::test]
    async fn the_contributor_sets_migration_rebuilds_the_roll_ups() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        migrate_up_to(&pool, dir.path(), 7).await;
        let collector = "00000000-0000-0000-0000-0000000000c1";
        let mut statements = vec![
            format!("INSERT INTO collectors (id, label, created_at) VALUES ('{collector}', 'barber', 'now')"),
            format!(
                "INSERT INTO devices (id, collector_id, label, token_hash, created_at)
                 VALUES ('d1', '{collector}', 'phone', 'hash', 'now')"
            ),
            "INSERT INTO boundary_generations (id, set_name, generation, source, imported_at)
                 VALUES (1, 'wards', 1, 'bundled', 'now')"
                .to_owned(),
        ];
        for (i, (day, category)) in
            [("2026-11-20", "drugs"), ("2026-11-21", "drugs"), ("2026-11-21", "road-safety")].into_iter().enumerate()
        {
            statements.push(format!(
                "INSERT INTO documents (doc_id, collector_id, version, updated_at) VALUES ('doc{i}', '{collector}', 1, 'now')"
            ));
            statements.push(format!(
                "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_at, captured_day, category,
                     feeling_safe, channel, status, area_code, processed_at, tag_lat, tag_lon)
                 VALUES ('i{i}', 'doc{i}', '{collector}', 'd1', '{day}T17:45:00Z', '{day}', '{category}', 2, 'staff',
                     'filed', 'E05008737', 'now', 53.0, -2.1)"
            ));
            statements.push(format!(
                "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary)
                 VALUES ('i{i}', 1, 'E05008737', 0)"
            ));
        }
        // What 0007 held for them (only the year cell, enough to show it is replaced, not kept).
        statements.push(
            "INSERT INTO rollups VALUES (1, 'year', '2026-01-01', 'E05008737', '*', 99, 9, 0, 0, 0, 0, 0, 0, 0)"
                .to_owned(),
        );
        statements.push(format!(
            "INSERT INTO rollup_contributors VALUES (1, 'year', '2026-01-01', 'E05008737', '*', '{collector}', 99)"
        ));
        for statement in &statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let everything = store.rollup(1, DayRange::default(), None, true, true).await.unwrap();
        assert_eq!(everything.len(), 1);
        let area = &everything[0];
        assert_eq!(
            (area.all.n, area.all.feeling_safe_sum, area.all.channels[0], area.contributors),
            (3, 6, 3, Some(1))
        );
        let categories: Vec<(&str, i64)> =
            area.by_category.iter().map(|category| (category.category.as_str(), category.sums.n)).collect();
        assert_eq!(categories, vec![("drugs", 2), ("road-safety", 1)]);
        let days =
            DayRange { from: Some(time::macros::date!(2026 - 11 - 20)), to: Some(time::macros::date!(2026 - 11 - 22)) };
        let two_days = store.rollup(1, days, Some("E05008737"), false, true).await.unwrap();
        assert_eq!((two_days[0].all.n, two_days[0].contributors), (3, Some(1)), "sets are unioned over two day cells");
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM rollups_pending)
                  + (SELECT COUNT(*) FROM sqlite_master WHERE name = 'rollup_contributors')",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "nothing pending, and the old table is gone");
    }

    /// A new generation reads the insights in pages SQLite packs as JSON: every counted insight arrives once, in
    /// pages after the first, with its coordinates exact to the last bit (neighbouring `f64`s, which 15 or 16
    /// significant digits would merge) and its text fields whatever characters they hold.
    #[tokio::test]
    async fn a_new_generation_reads_every_insight_exactly_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
        let collector = "00000000-0000-0000-0000-0000000000c1";
        for statement in [
            format!("INSERT INTO collectors (id, label, created_at) VALUES ('{collector}', 'barber', 'now')"),
            format!(
                "INSERT INTO devices (id, collector_id, label, token_hash, created_at)
                 VALUES ('d1', '{collector}', 'phone', 'hash', 'now')"
            ),
        ] {
            sqlx::query(&statement).execute(&store.pool).await.unwrap();
        }
        let n = usize::try_from(PACKED_PAGE).unwrap() + 1_000;
        let mut expected = Vec::new();
        let mut tx = store.pool.begin().await.unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let mut documents =
                QueryBuilder::<Sqlite>::new("INSERT INTO documents (doc_id, collector_id, version, updated_at) ");
            documents.push_values(chunk, |mut row, i| {
                row.push_bind(format!("doc{i}")).push_bind(collector).push_bind(1).push_bind("now");
            });
            documents.build().execute(&mut *tx).await.unwrap();
            let mut insights = QueryBuilder::<Sqlite>::new(
                "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_day, category, status, processed_at,
                     tag_lat, tag_lon, accuracy_m, picked_area_code, postcode) ",
            );
            insights.push_values(chunk, |mut row, &i| {
                let bits = u64::try_from(i).unwrap();
                let point = (i % 7 != 0)
                    .then(|| (f64::from_bits(52.9_f64.to_bits() + bits), f64::from_bits((-2.1_f64).to_bits() + bits)));
                let accuracy = (i % 3 == 0).then(|| f64::from_bits(12.5_f64.to_bits() + bits));
                let picked = (i % 7 == 0).then(|| format!("Ward \"{i}\", 'north'\n\u{e9},]"));
                let postcode = (i % 14 == 0).then(|| "ST4 2DE".to_owned());
                let status = match i % 11 {
                    0 => "withdrawn",
                    1 => "outside_coverage",
                    2 => "rejected",
                    _ => "filed",
                };
                if matches!(status, "filed" | "outside_coverage") {
                    expected.push((
                        point.map(|(lat, lon)| (lat.to_bits(), lon.to_bits())),
                        accuracy.map(f64::to_bits),
                        picked.clone(),
                        postcode.clone(),
                    ));
                }
                row.push_bind(format!("i{i}"))
                    .push_bind(format!("doc{i}"))
                    .push_bind(collector)
                    .push_bind("d1")
                    .push_bind("2026-11-20")
                    .push_bind("drugs")
                    .push_bind(status)
                    .push_bind("now")
                    .push_bind(point.map(|(lat, _)| lat))
                    .push_bind(point.map(|(_, lon)| lon))
                    .push_bind(accuracy)
                    .push_bind(picked)
                    .push_bind(postcode);
            });
            insights.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();

        let seen = std::sync::Mutex::new(Vec::new());
        let tagger = |insight: &TaggableInsight| {
            seen.lock().unwrap().push((
                insight.tag_point.map(|(lat, lon)| (lat.to_bits(), lon.to_bits())),
                insight.accuracy_m.map(f64::to_bits),
                insight.picked_area_code.clone(),
                insight.postcode.clone(),
            ));
            ("E05008737".to_owned(), false)
        };
        let area = StoredArea { code: "E05008737".into(), name: "Hanley Park".into(), geometry: "{}".into() };
        let generation = store.add_generation("wards", "test", vec![area], &tagger).await.unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        expected.sort();
        assert!(expected.len() > usize::try_from(PACKED_PAGE).unwrap(), "more than one page");
        assert!(
            seen == expected,
            "{} insights read, {} expected; the first difference: {:?}",
            seen.len(),
            expected.len(),
            seen.iter().zip(&expected).find(|(seen, expected)| seen != expected)
        );
        let rolled = store.rollup(generation.id, DayRange::default(), None, false, false).await.unwrap();
        assert_eq!(rolled[0].all.n, i64::try_from(expected.len()).unwrap(), "every insight read is counted");
    }

    /// 0004 rebuilds `insights` (SQLite cannot change a CHECK in place) and sets `insight_areas` aside meanwhile: a
    /// database written at migration 0003 must come through with every row, and then take withdrawn insights.
    #[tokio::test]
    async fn the_withdrawn_migration_keeps_every_insight_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        migrate_up_to(&pool, dir.path(), 3).await;
        for statement in [
            "INSERT INTO collectors (id, label, created_at) VALUES ('00000000-0000-0000-0000-0000000000c1', 'Hanley barbers', '2026-11-20T00:00:00Z')",
            "INSERT INTO devices (id, collector_id, label, token_hash, created_at)
                 VALUES ('d1', '00000000-0000-0000-0000-0000000000c1', 'phone', 'hash', '2026-11-20T00:00:00Z')",
            "INSERT INTO documents (doc_id, collector_id, version, updated_at) VALUES ('doc1', '00000000-0000-0000-0000-0000000000c1', 1, 'now')",
            "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_at, captured_day, category, status,
                 area_code, processed_at, postcode, tag_lat, tag_lon)
                 VALUES ('i1', 'doc1', '00000000-0000-0000-0000-0000000000c1', 'd1', '2026-11-20T17:45:00Z', '2026-11-20', 'drugs', 'filed',
                 'E05008737', '2026-11-20T17:46:00Z', 'ST4 2DE', 53.0, -2.1)",
            "INSERT INTO boundary_generations (id, set_name, generation, source, imported_at)
                 VALUES (1, 'wards', 1, 'bundled', 'now')",
            "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary)
                 VALUES ('i1', 1, 'E05008737', 0)",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let row = sqlx::query("SELECT category, status, postcode, tag_lat FROM insights WHERE id = 'i1'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("category"), "drugs");
        assert_eq!(row.get::<String, _>("status"), "filed");
        assert_eq!(row.get::<String, _>("postcode"), "ST4 2DE");
        assert_eq!(row.get::<f64, _>("tag_lat"), 53.0);
        let tag: String = sqlx::query_scalar("SELECT area_code FROM insight_areas WHERE insight_id = 'i1'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(tag, "E05008737");
        sqlx::query("UPDATE insights SET status = 'withdrawn' WHERE id = 'i1'").execute(&store.pool).await.unwrap();
        let refused = sqlx::query("UPDATE insights SET status = 'lost' WHERE id = 'i1'").execute(&store.pool).await;
        assert!(refused.is_err(), "the CHECK still holds");
        let orphan = sqlx::query("INSERT INTO insight_areas VALUES ('nobody', 1, '', 0)").execute(&store.pool).await;
        assert!(orphan.is_err(), "the tags still refer to insights");
        let kept: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('insights_rebuilt', 'insight_areas_kept')",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(kept, 0, "no scaffolding left behind");
    }
}
