//! Roll-up arithmetic both backends share (docs/geotagging.md): which cells an insight counts in, the deltas a
//! transaction adds to them, and how any period is tiled by the fewest aligned periods.

use std::collections::BTreeMap;

use grapevine_sync_proto::Channel;
use time::{Date, Duration, Month, Weekday};
use uuid::Uuid;

/// The roll-up category under which every insight also counts, whatever its category.
pub(crate) const ALL_CATEGORIES: &str = "*";

/// The calendar periods roll-ups are kept for. Weeks are ISO weeks, starting on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 5] =
        [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Quarter => "quarter",
            PeriodKind::Year => "year",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<PeriodKind> {
        PeriodKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The first day of the period of this kind that holds `day`.
    #[must_use]
    pub fn start_of(self, day: Date) -> Date {
        let month_start = |month: Month| Date::from_calendar_date(day.year(), month, 1).unwrap_or(day);
        match self {
            PeriodKind::Day => day,
            PeriodKind::Week => day - Duration::days(i64::from(day.weekday().number_days_from_monday())),
            PeriodKind::Month => month_start(day.month()),
            PeriodKind::Quarter => {
                let first_month = (u8::from(day.month()) - 1) / 3 * 3 + 1;
                month_start(Month::try_from(first_month).unwrap_or(Month::January))
            }
            PeriodKind::Year => month_start(Month::January),
        }
    }

    /// The first day after the period that starts on `start`.
    #[must_use]
    pub fn end_of(self, start: Date) -> Date {
        let add_months = |months: u8| {
            let index = i32::from(u8::from(start.month()) - 1) + i32::from(months);
            let month = Month::try_from(u8::try_from(index % 12 + 1).unwrap_or(1)).unwrap_or(Month::January);
            Date::from_calendar_date(start.year() + index / 12, month, 1).unwrap_or(Date::MAX)
        };
        match self {
            PeriodKind::Day => start.next_day().unwrap_or(Date::MAX),
            PeriodKind::Week => start.checked_add(Duration::days(7)).unwrap_or(Date::MAX),
            PeriodKind::Month => add_months(1),
            PeriodKind::Quarter => add_months(3),
            PeriodKind::Year => add_months(12),
        }
    }
}

/// A run of consecutive periods of one kind: those starting in `[first_start, last_start]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodRun {
    pub kind: PeriodKind,
    pub first_start: Date,
    pub last_start: Date,
}

/// The earliest and latest days a query reads when a period is open-ended.
pub(crate) const FIRST_DAY: Date = time::macros::date!(1900 - 01 - 01);
pub(crate) const LAST_DAY: Date = time::macros::date!(2200 - 01 - 01);

/// Whether a tiling is a single calendar period (one cell per area and category).
#[must_use]
pub fn is_one_cell(runs: &[PeriodRun]) -> bool {
    matches!(runs, [run] if run.first_start == run.last_start)
}

/// Tiles `[from, to)` with aligned periods, greedily taking the longest that starts at the cursor and fits (a week
/// only when it stays inside one month, so months, quarters and years realign), and merges neighbours of one kind into
/// runs: a year with ragged edges is a handful of runs, so a query reads a few cells per area whatever the number of
/// insights. The runs partition the days exactly, which is what makes distinct contributors over them exact.
#[must_use]
pub fn tile(from: Date, to: Date) -> Vec<PeriodRun> {
    let mut runs: Vec<PeriodRun> = Vec::new();
    let mut cursor = from;
    while cursor < to {
        let fits = |kind: PeriodKind| kind.start_of(cursor) == cursor && kind.end_of(cursor) <= to;
        let kind = [PeriodKind::Year, PeriodKind::Quarter, PeriodKind::Month]
            .into_iter()
            .find(|&kind| fits(kind))
            .or_else(|| {
                let inside_month =
                    PeriodKind::Week.end_of(cursor) <= PeriodKind::Month.end_of(PeriodKind::Month.start_of(cursor));
                (fits(PeriodKind::Week) && (cursor.weekday() == Weekday::Monday) && inside_month)
                    .then_some(PeriodKind::Week)
            })
            .unwrap_or(PeriodKind::Day);
        match runs.last_mut() {
            Some(run) if run.kind == kind && kind.end_of(run.last_start) == cursor => run.last_start = cursor,
            _ => runs.push(PeriodRun { kind, first_start: cursor, last_start: cursor }),
        }
        cursor = kind.end_of(cursor);
    }
    runs
}

/// The index of a channel in the channel-mix columns (`Channel::ALL` order).
fn channel_index(channel: &str) -> Option<usize> {
    Channel::ALL.iter().position(|known| known.as_str() == channel)
}

/// One insight's part in one generation's roll-ups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contribution {
    pub generation_id: i64,
    pub area_code: String,
    pub day: Date,
    pub category: String,
    pub feeling_safe: Option<i64>,
    pub channel: Option<String>,
    pub collector_id: Uuid,
}

/// One roll-up cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CellKey {
    pub generation_id: i64,
    pub kind: PeriodKind,
    pub period_start: Date,
    pub area_code: String,
    pub category: String,
}

/// What a transaction adds to one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CellDelta {
    pub n: i64,
    pub feeling_safe_sum: i64,
    pub feeling_safe_n: i64,
    pub channels: [i64; 5],
    pub contributors: i64,
}

impl Contribution {
    /// The ten cells the insight counts in: every period kind, in its category and in the all-categories row.
    pub(crate) fn cells(&self) -> impl Iterator<Item = CellKey> + '_ {
        PeriodKind::ALL.into_iter().flat_map(move |kind| {
            [self.category.as_str(), ALL_CATEGORIES].into_iter().map(move |category| CellKey {
                generation_id: self.generation_id,
                kind,
                period_start: kind.start_of(self.day),
                area_code: self.area_code.clone(),
                category: category.to_owned(),
            })
        })
    }

    fn delta(&self, sign: i64) -> CellDelta {
        let mut channels = [0; 5];
        if let Some(index) = self.channel.as_deref().and_then(channel_index) {
            channels[index] = sign;
        }
        CellDelta {
            n: sign,
            feeling_safe_sum: sign * self.feeling_safe.unwrap_or(0),
            feeling_safe_n: if self.feeling_safe.is_some() { sign } else { 0 },
            channels,
            contributors: 0,
        }
    }
}

/// The roll-up cells a transaction moves, summed, so each cell is written once per transaction however many of its
/// insights change; and each collector's insights per cell, from which the backends learn whether a collector
/// arrived in a cell or left it. Kept in key order: every writer touches cells in the same order, so two nodes writing
/// at once wait for each other instead of deadlocking.
#[derive(Debug, Default)]
pub(crate) struct RollupDeltas {
    pub cells: BTreeMap<CellKey, CellDelta>,
    pub contributors: BTreeMap<(CellKey, Uuid), i64>,
}

impl RollupDeltas {
    /// Adds (`sign` = 1) or takes out (`sign` = -1) one insight's contribution.
    pub(crate) fn add(&mut self, contribution: &Contribution, sign: i64) {
        let delta = contribution.delta(sign);
        for key in contribution.cells() {
            *self.contributors.entry((key.clone(), contribution.collector_id)).or_default() += sign;
            let cell = self.cells.entry(key).or_default();
            cell.n += delta.n;
            cell.feeling_safe_sum += delta.feeling_safe_sum;
            cell.feeling_safe_n += delta.feeling_safe_n;
            for (total, change) in cell.channels.iter_mut().zip(delta.channels) {
                *total += change;
            }
        }
    }

    /// Records that a collector arrived in a cell (`change` = 1) or left it (-1), once the backend knows.
    pub(crate) fn count_contributor(&mut self, cell: &CellKey, change: i64) {
        self.cells.entry(cell.clone()).or_default().contributors += change;
    }

    /// The contributor rows that move, in key order.
    pub(crate) fn contributor_changes(&self) -> impl Iterator<Item = (&CellKey, Uuid, i64)> {
        self.contributors.iter().filter(|(_, &n)| n != 0).map(|((cell, collector), &n)| (cell, *collector, n))
    }

    /// The cells that move (an edit that leaves an insight where it was moves nothing).
    pub(crate) fn changed_cells(&self) -> impl Iterator<Item = (&CellKey, &CellDelta)> {
        self.cells.iter().filter(|(_, delta)| **delta != CellDelta::default())
    }

    /// For a generation built from scratch (no cell exists yet): every contributor row is new, so each cell's
    /// contributor count is the number of its collectors.
    pub(crate) fn count_all_contributors_as_new(&mut self) {
        let arrivals: Vec<CellKey> =
            self.contributors.iter().filter(|(_, &n)| n > 0).map(|((cell, _), _)| cell.clone()).collect();
        for cell in arrivals {
            self.count_contributor(&cell, 1);
        }
    }
}

/// The columns of a roll-up cell a query sums.
pub(crate) const CELL_COLUMNS: &str = "area_code, category, period_start, n_insights, n_contributors, \
     feeling_safe_sum, feeling_safe_n, n_staff, n_barber_hairdresser, n_pupil, n_youth_worker, n_other_channel";

/// Pushes a `UNION ALL` of the cells a roll-up query reads, one range scan per tiling run: one generation, the
/// all-categories rows (or every row, `by_category`), one area if given.
pub(crate) fn push_cells<'args, DB>(
    builder: &mut sqlx::QueryBuilder<'args, DB>,
    columns: &str,
    table: &str,
    generation_id: i64,
    area_code: Option<&str>,
    by_category: bool,
    runs: &[PeriodRun],
) where
    DB: sqlx::Database,
    i64: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    Date: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    if runs.is_empty() {
        builder.push(format!("SELECT {columns} FROM {table} WHERE 1 = 0"));
    }
    for (index, run) in runs.iter().enumerate() {
        if index > 0 {
            builder.push(" UNION ALL ");
        }
        builder.push(format!("SELECT {columns} FROM {table} WHERE generation_id = ")).push_bind(generation_id);
        if !by_category {
            builder.push(" AND category = ").push_bind(ALL_CATEGORIES.to_owned());
        }
        if let Some(area_code) = area_code {
            builder.push(" AND area_code = ").push_bind(area_code.to_owned());
        }
        builder
            .push(" AND period = ")
            .push_bind(run.kind.as_str().to_owned())
            .push(" AND period_start >= ")
            .push_bind(run.first_start)
            .push(" AND period_start <= ")
            .push_bind(run.last_start);
    }
}

/// The query behind `Store::category_counts`: each area's insight count per category over the tiling runs, the one
/// column of the `rollups_counts` covering index, so the database never reads the table itself. The text is the same
/// on both backends.
pub(crate) fn category_counts_query<'args, DB>(
    generation_id: i64,
    area_code: Option<&str>,
    runs: &[PeriodRun],
) -> sqlx::QueryBuilder<'args, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    Date: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::QueryBuilder::new("SELECT area_code, category, CAST(SUM(n_insights) AS BIGINT) AS n FROM (");
    push_cells(&mut query, "area_code, category, n_insights", "rollups", generation_id, area_code, true, runs);
    query
        .push(") AS cells WHERE category <> ")
        .push_bind(ALL_CATEGORIES.to_owned())
        .push(" GROUP BY area_code, category");
    query
}

/// Builds per-area results from summed rows (area, category, sums) and contributor counts (area, category, n); the
/// all-categories rows give an area's totals.
pub(crate) fn assemble_rollups(
    sums: impl Iterator<Item = (String, String, super::Sums, i64)>,
    contributors: impl Iterator<Item = (String, String, i64)>,
    one_cell: bool,
) -> Vec<super::AreaRollup> {
    let mut areas: BTreeMap<String, super::AreaRollup> = BTreeMap::new();
    fn area<'a>(areas: &'a mut BTreeMap<String, super::AreaRollup>, code: &str) -> &'a mut super::AreaRollup {
        areas
            .entry(code.to_owned())
            .or_insert_with(|| super::AreaRollup { area_code: code.to_owned(), ..Default::default() })
    }
    for (area_code, category, sums, cell_contributors) in sums {
        let entry = area(&mut areas, &area_code);
        // One cell's contributor count is exact; a sum over several cells is not, so it is not used.
        let contributors = one_cell.then_some(cell_contributors);
        if category == ALL_CATEGORIES {
            entry.all = sums;
            entry.contributors = contributors;
        } else {
            entry.by_category.push(super::CategoryRollup { category, sums, contributors });
        }
    }
    for (area_code, category, n) in contributors {
        let entry = area(&mut areas, &area_code);
        if category == ALL_CATEGORIES {
            entry.contributors = Some(n);
        } else if let Some(rollup) = entry.by_category.iter_mut().find(|rollup| rollup.category == category) {
            rollup.contributors = Some(n);
        }
    }
    for entry in areas.values_mut() {
        entry.by_category.sort_by(|a, b| a.category.cmp(&b.category));
    }
    areas.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn periods_start_and_end_on_calendar_boundaries() {
        let day = date!(2026 - 11 - 22); // a Sunday
        assert_eq!(PeriodKind::Week.start_of(day), date!(2026 - 11 - 16));
        assert_eq!(PeriodKind::Month.start_of(day), date!(2026 - 11 - 01));
        assert_eq!(PeriodKind::Quarter.start_of(day), date!(2026 - 10 - 01));
        assert_eq!(PeriodKind::Year.start_of(day), date!(2026 - 01 - 01));
        assert_eq!(PeriodKind::Quarter.end_of(date!(2026 - 10 - 01)), date!(2027 - 01 - 01));
        assert_eq!(PeriodKind::Month.end_of(date!(2026 - 12 - 01)), date!(2027 - 01 - 01));
        assert_eq!(PeriodKind::Week.end_of(date!(2026 - 12 - 28)), date!(2027 - 01 - 04));
        for kind in PeriodKind::ALL {
            assert_eq!(PeriodKind::parse(kind.as_str()), Some(kind));
        }
    }

    fn days_of(runs: &[PeriodRun]) -> Vec<Date> {
        let mut days = Vec::new();
        for run in runs {
            let mut start = run.first_start;
            while start <= run.last_start {
                let mut day = start;
                while day < run.kind.end_of(start) {
                    days.push(day);
                    day = day.next_day().unwrap();
                }
                start = run.kind.end_of(start);
            }
        }
        days
    }

    #[test]
    fn a_tiling_covers_every_day_once_with_few_runs() {
        for (from, to) in [
            (date!(2025 - 11 - 22), date!(2026 - 11 - 22)),
            (date!(2025 - 01 - 01), date!(2027 - 01 - 01)),
            (date!(2025 - 12 - 29), date!(2026 - 02 - 11)),
            (date!(2026 - 03 - 02), date!(2026 - 03 - 05)),
        ] {
            let runs = tile(from, to);
            let days = days_of(&runs);
            let expected: Vec<Date> =
                std::iter::successors(Some(from), |day| day.next_day()).take_while(|day| *day < to).collect();
            assert_eq!(days, expected, "{from}..{to}");
            assert!(runs.len() <= 9, "{from}..{to}: {runs:?}");
        }
        let year = tile(date!(2025 - 01 - 01), date!(2026 - 01 - 01));
        assert_eq!(
            year,
            vec![PeriodRun {
                kind: PeriodKind::Year,
                first_start: date!(2025 - 01 - 01),
                last_start: date!(2025 - 01 - 01)
            }]
        );
        assert_eq!(tile(FIRST_DAY, LAST_DAY).len(), 1, "everything is one run of years");
    }

    #[test]
    fn deltas_sum_per_cell_and_cancel_out() {
        let insight = Contribution {
            generation_id: 1,
            area_code: "E05008737".into(),
            day: date!(2026 - 03 - 04),
            category: "drugs".into(),
            feeling_safe: Some(2),
            channel: Some("pupil".into()),
            collector_id: Uuid::nil(),
        };
        let mut deltas = RollupDeltas::default();
        deltas.add(&insight, 1);
        deltas.add(&insight, 1);
        assert_eq!(deltas.cells.len(), 10);
        let cell = deltas.cells.values().next().unwrap();
        assert_eq!((cell.n, cell.feeling_safe_sum, cell.feeling_safe_n, cell.channels[2]), (2, 4, 2, 2));
        deltas.add(&insight, -1);
        deltas.add(&insight, -1);
        assert_eq!(deltas.changed_cells().count(), 0);
        assert_eq!(deltas.contributor_changes().count(), 0);
    }
}
