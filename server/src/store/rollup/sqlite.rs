//! `RollupStore` on SQLite, and how a transaction writes roll-up cells there.

use anyhow::Context;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::store::prelude::*;
use crate::store::rollup::{
    assemble_rollups, category_counts_query, is_one_cell, push_cells, tile, union_of_contributor_sets, CellWrite,
    ContributorSet, PeriodKind, RollupDeltas, CELL_COLUMNS,
};
use crate::store::{AreaRollup, CategoryCount, DayRange, SeriesPoint, SqliteStore, Sums};

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
