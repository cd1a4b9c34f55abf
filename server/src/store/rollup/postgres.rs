//! `RollupStore` on PostgreSQL, and how a transaction writes roll-up cells there (set-based, in key order).

use sqlx::{Postgres, Row};
use time::Date;

use super::{
    category_point, category_series_statement, rollup_reads, rollups_from_rows, series_point, series_statement,
};
use crate::store::postgres::classify;
use crate::store::prelude::*;
use crate::store::rollup::{
    category_counts_query, tile, CellDelta, CellKey, CellWrite, ContributorSet, PeriodKind, RollupDeltas,
};
use crate::store::{AreaRollup, CategoryCount, CategoryPoint, DayRange, PostgresStore, SaveError, SeriesPoint};

/// Writes the summed roll-up deltas of a transaction, set-based, in three statements however many cells. Every cell
/// that moves is claimed in one upsert, in the table's key order: a new cell is created empty, an existing one is
/// locked (a no-op update), and either way its contributor set comes back. The new sets are worked out here and
/// written with the counters; cells a negative delta may have emptied are pruned. Claiming and locking in one pass,
/// in one order, is what keeps two nodes from both starting a new cell's set from nothing, and from deadlocking over
/// each other's cells; a cell another writer pruned meanwhile is simply created again.
pub(in crate::store) async fn apply_deltas(
    tx: &mut sqlx::PgConnection,
    deltas: &RollupDeltas,
) -> Result<(), SaveError> {
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

#[async_trait::async_trait]
impl RollupStore for PostgresStore {
    async fn rollup(
        &self,
        generation_id: i64,
        days: DayRange,
        area_code: Option<&str>,
        by_category: bool,
        distinct_contributors: bool,
    ) -> anyhow::Result<Vec<AreaRollup>> {
        let mut reads = rollup_reads::<Postgres>(generation_id, days, area_code, by_category, distinct_contributors);
        let sums = reads.sums.build().fetch_all(&self.pool).await?;
        let sets = match reads.sets.as_mut() {
            Some(sets) => sets.build().fetch_all(&self.pool).await?,
            None => Vec::new(),
        };
        rollups_from_rows(&sums, &sets, reads.one_cell)
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

    async fn export_cells(
        &self,
        generation_id: i64,
        kind: PeriodKind,
        days: DayRange,
        batch: u32,
        sink: tokio::sync::mpsc::Sender<super::CellBatch>,
    ) -> anyhow::Result<()> {
        let (from, to) = days.bounds();
        // One snapshot for every page.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let mut last: Option<super::RollupCell> = None;
        loop {
            let query = match &last {
                None => sqlx::query(super::EXPORT_CELLS),
                Some(_) => sqlx::query(super::EXPORT_CELLS_AFTER),
            }
            .bind(generation_id)
            .bind(kind.as_str())
            .bind(from)
            .bind(to)
            .bind(i64::from(batch));
            let query = match &last {
                None => query,
                Some(cell) => query.bind(cell.category.clone()).bind(cell.period_start).bind(cell.area_code.clone()),
            };
            let cells: Vec<super::RollupCell> = match query.fetch_all(&mut *tx).await {
                Ok(rows) => rows.iter().map(super::export_cell).collect(),
                Err(error) => {
                    let _ = sink.send(Err(anyhow::anyhow!("{error:#}"))).await;
                    return Err(error.into());
                }
            };
            let done = cells.len() < batch as usize;
            last = cells.last().cloned();
            if !cells.is_empty() && sink.send(Ok(cells)).await.is_err() {
                break;
            }
            if done {
                break;
            }
        }
        tx.rollback().await?;
        Ok(())
    }

    async fn series(
        &self,
        generation_id: i64,
        area_code: &str,
        kind: PeriodKind,
        days: DayRange,
    ) -> anyhow::Result<Vec<SeriesPoint>> {
        let (from, to) = days.bounds();
        let rows = sqlx::query(&series_statement())
            .bind(generation_id)
            .bind(area_code)
            .bind(kind.as_str())
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(series_point).collect())
    }

    async fn category_series(
        &self,
        generation_id: i64,
        area_code: &str,
        kind: PeriodKind,
        days: DayRange,
    ) -> anyhow::Result<Vec<CategoryPoint>> {
        let (from, to) = days.bounds();
        let rows = sqlx::query(&category_series_statement())
            .bind(generation_id)
            .bind(area_code)
            .bind(kind.as_str())
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(category_point).collect())
    }
}
