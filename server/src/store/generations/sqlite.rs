//! `GenerationStore` on SQLite: a new generation reads the insights in pages SQLite packs as JSON, and writes its
//! tags and roll-ups as multi-row inserts, pipelined; the rebuild of roll-ups a migration asks for.

use std::borrow::Cow;

use anyhow::Context;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::store::prelude::*;
use crate::store::rollup::sqlite::{push_cell_values, CELL_ROW};
use crate::store::rollup::{CellWrite, Counted, GenerationRollups, Phases};
use crate::store::sqlite::now_text;
use crate::store::{GenerationInfo, SqliteStore, StoredArea, TaggableInsight, Tagger};

/// Rebuilds the roll-ups of every generation a migration left in `rollups_pending`, from the insights' stored tags,
/// each in its own transaction.
pub(in crate::store) async fn rebuild_pending_rollups(pool: &SqlitePool) -> anyhow::Result<()> {
    loop {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(generation_id) =
            sqlx::query_scalar::<_, i64>(super::NEXT_PENDING_ROLLUP).fetch_optional(&mut *tx).await?
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
        sqlx::query(super::PENDING_ROLLUP_DONE).bind(generation_id).execute(&mut *tx).await?;
        tx.commit().await?;
        phases.mark("roll-ups written and committed");
        phases.log(generation_id, n_insights);
    }
}

/// A page of the insights a new generation tags, packed by SQLite into one JSON array of arrays (see
/// `PackedInsight`) after the insight of rowid `?1`, at most `?2` of them, with the page's last rowid. A million
/// insights read as a million rows cost sqlx a hand-off between SQLite's worker thread and the reader for each row,
/// two thirds of a re-tag; as pages they cost a few hundred. Coordinates go as text of 17 significant digits
/// (`%!.17g`), which gives back the stored `f64` exactly; JSON's own numbers keep only 15.
const PACKED_INSIGHTS: &str = "
    SELECT MAX(rowid), '[' || group_concat(insight, ',') || ']' FROM (
        SELECT rowid, json_array(id, seq, collector_id, captured_day, category, feeling_safe, channel,
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
    seq: i64,
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
/// tag to `tags` (insight id, area code, near a border, the insight's `seq`).
fn tag_and_sum_page(
    json: &str,
    tagger: Tagger<'_>,
    built: &mut GenerationRollups,
    tags: &mut Vec<(String, String, bool, i64)>,
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
        tags.push((insight.id.into_owned(), area_code, near_boundary, insight.seq));
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

#[async_trait::async_trait]
impl GenerationStore for SqliteStore {
    async fn newest_generation_id(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(super::NEWEST_GENERATION_ID).fetch_one(&self.pool).await?)
    }

    async fn generations(&self) -> anyhow::Result<Vec<GenerationInfo>> {
        Ok(sqlx::query_as(&super::list_generations("g.imported_at")).fetch_all(&self.pool).await?)
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

impl SqliteStore {
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let generation: i64 = sqlx::query_scalar(super::NEXT_GENERATION).bind(set_name).fetch_one(&mut *tx).await?;
        if first_only && generation > 1 {
            return super::set_has_generation(self.generations().await?, set_name);
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
                "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary, insight_seq) ",
            );
            insert.push_values(slice, |mut row, (insight_id, area_code, near_boundary, seq)| {
                row.push_bind(insight_id.as_str())
                    .push_bind(generation_id)
                    .push_bind(area_code.as_str())
                    .push_bind(*near_boundary)
                    .push_bind(*seq);
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
        super::imported_generation(generation_id, set_name, generation, source, imported_at, areas.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::{collector_and_device, FIXTURE_COLLECTOR};
    use crate::store::DayRange;

    /// A new generation reads the insights in pages SQLite packs as JSON: every counted insight arrives once, in
    /// pages after the first, with its coordinates exact to the last bit (neighbouring `f64`s, which 15 or 16
    /// significant digits would merge) and its text fields whatever characters they hold.
    #[tokio::test]
    async fn a_new_generation_reads_every_insight_exactly_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
        let collector = FIXTURE_COLLECTOR;
        for statement in collector_and_device() {
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
                     tag_lat, tag_lon, accuracy_m, picked_area_code, postcode, seq) ",
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
                    .push_bind(postcode)
                    .push_bind(i64::try_from(i).unwrap() + 1);
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
        let unordered: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM insight_areas a JOIN insights i ON i.id = a.insight_id
             WHERE a.generation_id = $1 AND a.insight_seq IS NOT i.seq",
        )
        .bind(generation.id)
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(unordered, 0, "every tag carries its insight's seq");
    }
}
