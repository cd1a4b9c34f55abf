//! `RollupStore` on SQLite, and how a transaction writes roll-up cells there (each cell read, then written: SQLite
//! has one writer at a time).

use anyhow::Context;
use sqlx::{QueryBuilder, Sqlite};

use super::{
    category_point, category_series_statement, rollup_reads, rollups_from_rows, series_point, series_statement,
};
use crate::store::prelude::*;
use crate::store::rollup::{category_counts_query, tile, CellWrite, ContributorSet, PeriodKind, RollupDeltas};
use crate::store::{AreaRollup, CategoryCount, CategoryPoint, DayRange, SeriesPoint, SqliteStore};

/// The columns of a roll-up row, in the order `push_cell_values` binds them.
pub(in crate::store) const CELL_ROW: &str =
    "INSERT INTO rollups (generation_id, period, period_start, area_code, category, n_insights,
     n_contributors, feeling_safe_sum, feeling_safe_n, n_staff, n_barber_hairdresser, n_pupil, n_youth_worker,
     n_other_channel, contributors) ";

/// Binds one roll-up row's values (`CELL_ROW`'s columns).
pub(in crate::store) fn push_cell_values<'args>(
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

/// Writes the summed roll-up deltas of a transaction: for each cell that moves, its stored contributor set is read,
/// the new set worked out here, and the cell written once with its counters; a cell a negative delta may have emptied
/// is pruned. SQLite has one writer at a time, so nothing changes between the read and the write.
pub(in crate::store) async fn apply_deltas(
    tx: &mut sqlx::SqliteConnection,
    deltas: &RollupDeltas,
) -> anyhow::Result<()> {
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

#[async_trait::async_trait]
impl RollupStore for SqliteStore {
    async fn rollup(
        &self,
        generation_id: i64,
        days: DayRange,
        area_code: Option<&str>,
        by_category: bool,
        distinct_contributors: bool,
    ) -> anyhow::Result<Vec<AreaRollup>> {
        let mut reads = rollup_reads::<Sqlite>(generation_id, days, area_code, by_category, distinct_contributors);
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
        let mut tx = self.pool.begin().await?;
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
