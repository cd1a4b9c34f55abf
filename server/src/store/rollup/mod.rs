//! Roll-ups (docs/geotagging.md): the `RollupStore` trait the analyst reads go through, and the arithmetic both
//! backends share: which cells an insight counts in, the deltas a transaction adds to them, how any period is tiled
//! by the fewest aligned periods, and the statements that read the cells.

pub(super) mod postgres;
pub(super) mod sqlite;

use std::collections::BTreeMap;

use grapevine_sync_proto::Channel;
use time::{Date, Weekday};
use uuid::Uuid;

use sqlx::{ColumnIndex, Decode, Encode, QueryBuilder, Row, Type};

use super::{AreaRollup, CategoryCount, CategoryPoint, DayRange, SeriesPoint, Sums};

/// The analyst reads: counts per area, category and period, from the roll-up cells.
#[async_trait::async_trait]
pub trait RollupStore: Send + Sync {
    /// Every area's roll-up over a period on one generation (areas with nothing are absent), or one area's; with
    /// `by_category`, each area's categories too. Distinct contributors come free when the period is one calendar
    /// period (one cell); over several cells they are the union of the cells' contributor sets, read only when
    /// `distinct_contributors` is set (a set per cell read: about 20 bytes per collector in each).
    async fn rollup(
        &self,
        generation_id: i64,
        days: DayRange,
        area_code: Option<&str>,
        by_category: bool,
        distinct_contributors: bool,
    ) -> anyhow::Result<Vec<AreaRollup>>;

    /// Each area's insight count per category over a period on one generation (or one area's), categories with none
    /// absent: the priorities table's one number per cell, read from a covering index alone.
    async fn category_counts(
        &self,
        generation_id: i64,
        days: DayRange,
        area_code: Option<&str>,
    ) -> anyhow::Result<Vec<CategoryCount>>;

    /// Every cell of one generation and period kind whose period starts inside `days`, the all-categories cells
    /// (`ALL_CATEGORIES`) included, by category, period and area, read from one snapshot and sent `batch` at a time;
    /// stops early when the receiver is dropped.
    async fn export_cells(
        &self,
        generation_id: i64,
        kind: PeriodKind,
        days: DayRange,
        batch: u32,
        sink: tokio::sync::mpsc::Sender<CellBatch>,
    ) -> anyhow::Result<()>;

    /// One area's all-categories counts per period of a kind, for the periods that start inside `days`.
    async fn series(
        &self,
        generation_id: i64,
        area_code: &str,
        kind: PeriodKind,
        days: DayRange,
    ) -> anyhow::Result<Vec<SeriesPoint>>;

    /// One area's insight count per category per period of a kind, for the periods that start inside `days`
    /// (periods and categories with none absent), oldest first: its trend by category.
    async fn category_series(
        &self,
        generation_id: i64,
        area_code: &str,
        kind: PeriodKind,
        days: DayRange,
    ) -> anyhow::Result<Vec<CategoryPoint>>;
}

/// The roll-up category under which every insight also counts, whatever its category.
pub const ALL_CATEGORIES: &str = "*";

/// One roll-up cell as an export reads it: an area's counts in one category (or `ALL_CATEGORIES`) over one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupCell {
    pub area_code: String,
    pub category: String,
    pub period_start: Date,
    pub sums: Sums,
    /// Distinct collectors with insights in the cell.
    pub contributors: i64,
}

/// Cells an export receives at a time.
pub type CellBatch = anyhow::Result<Vec<RollupCell>>;

/// The cells of an export (generation `$1`, period kind `$2`, periods starting from `$3` up to, not including, `$4`)
/// in the table's key order, a page of `$5`; `EXPORT_CELLS_AFTER` pages on after the last cell read (`$6`, `$7`,
/// `$8`: its category, period start and area). Read by `export_cell`.
pub(super) const EXPORT_CELLS: &str = "SELECT area_code, category, period_start, n_insights AS n,
        n_contributors, feeling_safe_sum AS fs_sum, feeling_safe_n AS fs_n, n_staff AS c0, n_barber_hairdresser AS c1,
        n_pupil AS c2, n_youth_worker AS c3, n_other_channel AS c4
    FROM rollups WHERE generation_id = $1 AND period = $2 AND period_start >= $3 AND period_start < $4
    ORDER BY category, period_start, area_code LIMIT $5";
pub(super) const EXPORT_CELLS_AFTER: &str = "SELECT area_code, category, period_start, n_insights AS n,
        n_contributors, feeling_safe_sum AS fs_sum, feeling_safe_n AS fs_n, n_staff AS c0, n_barber_hairdresser AS c1,
        n_pupil AS c2, n_youth_worker AS c3, n_other_channel AS c4
    FROM rollups WHERE generation_id = $1 AND period = $2 AND period_start >= $3 AND period_start < $4
      AND (category, period_start, area_code) > ($6, $7, $8)
    ORDER BY category, period_start, area_code LIMIT $5";

/// A cell from a row of `EXPORT_CELLS`.
fn export_cell<R>(row: &R) -> RollupCell
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Date: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    RollupCell {
        area_code: row.get("area_code"),
        category: row.get("category"),
        period_start: row.get("period_start"),
        sums: sums_of(row),
        contributors: row.get("n_contributors"),
    }
}

pub use crate::domain::period::PeriodKind;

/// A run of consecutive periods of one kind: those starting in `[first_start, last_start]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodRun {
    pub kind: PeriodKind,
    pub first_start: Date,
    pub last_start: Date,
}

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

impl CellKey {
    /// The order of the roll-up table's primary key (generation, category, period, period start, area): the order
    /// PostgreSQL writers lock cells in, and the order a whole generation is written in.
    pub(crate) fn table_order(&self) -> (i64, &str, &'static str, Date, &str) {
        (self.generation_id, &self.category, self.kind.as_str(), self.period_start, &self.area_code)
    }
}

/// What a transaction adds to one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CellDelta {
    pub n: i64,
    pub feeling_safe_sum: i64,
    pub feeling_safe_n: i64,
    pub channels: [i64; 5],
}

impl CellDelta {
    fn add(&mut self, other: &CellDelta) {
        self.n += other.n;
        self.feeling_safe_sum += other.feeling_safe_sum;
        self.feeling_safe_n += other.feeling_safe_n;
        for (total, change) in self.channels.iter_mut().zip(other.channels) {
            *total += change;
        }
    }
}

/// The collectors with insights in one cell, each with how many, in collector order. Stored in the cell's own row
/// (`rollups.contributors`) as 20 bytes per collector: the collector's UUID, then the count as a big-endian `u32`.
/// Distinct contributors over a period are the union of the sets of the cells that tile it, exact however small, so
/// small-number suppression stays exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContributorSet(Vec<(Uuid, u32)>);

const CONTRIBUTOR_BYTES: usize = 20;

impl ContributorSet {
    /// Reads a stored set; `None` if the bytes are not one.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<ContributorSet> {
        if !bytes.len().is_multiple_of(CONTRIBUTOR_BYTES) {
            return None;
        }
        let entries: Vec<(Uuid, u32)> = bytes
            .chunks_exact(CONTRIBUTOR_BYTES)
            .map(|entry| {
                let (id, count) = entry.split_at(16);
                (Uuid::from_slice(id).unwrap_or_default(), u32::from_be_bytes(count.try_into().unwrap_or_default()))
            })
            .collect();
        let ordered = entries.windows(2).all(|pair| pair[0].0 < pair[1].0);
        (ordered && entries.iter().all(|&(_, count)| count > 0)).then_some(ContributorSet(entries))
    }

    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.0.len() * CONTRIBUTOR_BYTES);
        for (collector, count) in &self.0 {
            bytes.extend_from_slice(collector.as_bytes());
            bytes.extend_from_slice(&count.to_be_bytes());
        }
        bytes
    }

    /// Adds `change` insights of one collector (negative: takes them out; a collector left with none leaves).
    pub fn apply(&mut self, collector: Uuid, change: i64) {
        match self.0.binary_search_by_key(&collector, |&(id, _)| id) {
            Ok(index) => {
                let count = i64::from(self.0[index].1) + change;
                if count > 0 {
                    self.0[index].1 = u32::try_from(count).unwrap_or(u32::MAX);
                } else {
                    self.0.remove(index);
                }
            }
            Err(index) if change > 0 => self.0.insert(index, (collector, u32::try_from(change).unwrap_or(u32::MAX))),
            Err(_) => {}
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn collectors(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.0.iter().map(|&(collector, _)| collector)
    }
}

/// A cell as written: its key, its counters, and its contributors.
pub(crate) struct CellWrite {
    pub key: CellKey,
    pub delta: CellDelta,
    pub contributors: ContributorSet,
}

impl CellWrite {
    /// The contributor count a row stores beside its set.
    pub(crate) fn n_contributors(&self) -> i64 {
        i64::try_from(self.contributors.len()).unwrap_or(i64::MAX)
    }

    /// Whether the write takes insights out of the cell, which may leave it empty (to be pruned).
    pub(crate) fn shrinks(&self) -> bool {
        self.delta.n < 0
    }
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
        CellDelta::of(self.feeling_safe, self.channel.as_deref(), sign)
    }
}

impl CellDelta {
    /// One insight's part in a cell: `sign` = 1 counts it, -1 takes it out.
    fn of(feeling_safe: Option<i64>, channel: Option<&str>, sign: i64) -> CellDelta {
        let mut channels = [0; 5];
        if let Some(index) = channel.and_then(channel_index) {
            channels[index] = sign;
        }
        CellDelta {
            n: sign,
            feeling_safe_sum: sign * feeling_safe.unwrap_or(0),
            feeling_safe_n: if feeling_safe.is_some() { sign } else { 0 },
            channels,
        }
    }
}

/// The roll-up cells a transaction moves, summed, so each cell is written once per transaction however many of its
/// insights change; and each collector's change of insights per cell, which moves the cell's contributor set. Kept
/// in key order: every writer touches cells in the same order, so two nodes writing at once wait for each other
/// instead of deadlocking.
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
            self.cells.entry(key).or_default().add(&delta);
        }
    }

    /// The cells that move (an edit that leaves an insight where it was moves nothing), in key order.
    pub(crate) fn changed_cells(&self) -> impl Iterator<Item = (&CellKey, &CellDelta)> {
        self.cells.iter().filter(|(_, delta)| **delta != CellDelta::default())
    }

    /// The writes for the cells that move, given the contributor sets stored for them now (a cell with none stored
    /// is new): the counters to add, and each cell's set after this transaction's collectors arrive and leave.
    pub(crate) fn writes(&self, mut stored: std::collections::HashMap<CellKey, ContributorSet>) -> Vec<CellWrite> {
        self.changed_cells()
            .map(|(key, delta)| {
                let mut contributors = stored.remove(key).unwrap_or_default();
                let first = (key.clone(), Uuid::nil());
                for ((_, collector), &change) in
                    self.contributors.range(first..).take_while(|((cell, _), _)| cell == key)
                {
                    contributors.apply(*collector, change);
                }
                CellWrite { key: key.clone(), delta: *delta, contributors }
            })
            .collect()
    }
}

/// The phases of loading a generation, logged when it is done: a re-tag is rare and long enough to explain itself.
pub(crate) struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, std::time::Duration)>,
}

impl Phases {
    pub(crate) fn start() -> Phases {
        Phases { last: std::time::Instant::now(), done: Vec::new() }
    }

    /// Ends the phase running now under `name`.
    pub(crate) fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    pub(crate) fn log(&self, generation_id: i64, n_insights: usize) {
        let phases: Vec<String> =
            self.done.iter().map(|(name, took)| format!("{name} {:.1} s", took.as_secs_f64())).collect();
        tracing::info!(generation_id, n_insights, "generation loaded: {}", phases.join(", "));
    }
}

/// A generation's roll-ups built from scratch in memory (a re-tag, or a rebuild after a migration): every insight's
/// ten cells summed with compact keys (areas, categories and collectors interned as small integers), then written
/// once, in table order, as plain inserts.
pub(crate) struct GenerationRollups {
    generation_id: i64,
    areas: Interned<String>,
    categories: Interned<String>,
    collectors: Interned<Uuid>,
    cell_index: FastMap<CellCode, usize>,
    cells: Vec<(CellDelta, Vec<u32>)>,
}

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A cell in a generation build: the period kind's index in `PeriodKind::ALL`, the period start's Julian day, and
/// the area's and category's interned numbers.
type CellCode = (u8, i32, u32, u32);

/// Where a cell sorts in the table: the category's rank, the period kind's rank by name, the start, the area's rank.
type TableRank = (u32, usize, i32, u32);

/// Values numbered in the order they are first seen.
struct Interned<T> {
    values: Vec<T>,
    numbers: FastMap<T, u32>,
}

impl<T: std::hash::Hash + Eq + Clone> Interned<T> {
    fn new() -> Self {
        Interned { values: Vec::new(), numbers: FastMap::default() }
    }

    fn number<Q>(&mut self, value: &Q) -> u32
    where
        T: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = T> + ?Sized,
    {
        if let Some(&known) = self.numbers.get(value) {
            return known;
        }
        let next = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.values.push(value.to_owned());
        self.numbers.insert(value.to_owned(), next);
        next
    }

    fn value(&self, number: u32) -> &T {
        &self.values[number as usize]
    }

    /// Each value's rank in the values' own order, by number.
    fn ranks(&self) -> Vec<u32>
    where
        T: Ord,
    {
        let mut by_value: Vec<u32> = (0..u32::try_from(self.values.len()).unwrap_or(u32::MAX)).collect();
        by_value.sort_unstable_by(|&a, &b| self.value(a).cmp(self.value(b)));
        let mut ranks = vec![0; by_value.len()];
        for (rank, number) in (0u32..).zip(by_value) {
            ranks[number as usize] = rank;
        }
        ranks
    }
}

/// One insight as a generation build counts it, borrowed from the row it was read from.
pub(crate) struct Counted<'a> {
    pub area_code: &'a str,
    pub day: Date,
    pub category: &'a str,
    pub feeling_safe: Option<i64>,
    pub channel: Option<&'a str>,
    pub collector_id: Uuid,
}

impl GenerationRollups {
    pub(crate) fn new(generation_id: i64) -> GenerationRollups {
        let mut categories = Interned::new();
        categories.number(ALL_CATEGORIES);
        GenerationRollups {
            generation_id,
            areas: Interned::new(),
            categories,
            collectors: Interned::new(),
            cell_index: FastMap::default(),
            cells: Vec::new(),
        }
    }

    /// Counts one insight in its ten cells.
    pub(crate) fn add(&mut self, insight: &Counted<'_>) {
        let area = self.areas.number(insight.area_code);
        let category = self.categories.number(insight.category);
        let collector = self.collectors.number(&insight.collector_id);
        let delta = CellDelta::of(insight.feeling_safe, insight.channel, 1);
        for (kind_index, kind) in (0u8..).zip(PeriodKind::ALL) {
            let start = kind.start_of(insight.day).to_julian_day();
            for category in [category, 0] {
                let next = self.cells.len();
                let index = *self.cell_index.entry((kind_index, start, area, category)).or_insert(next);
                if index == next {
                    self.cells.push((CellDelta::default(), Vec::new()));
                }
                let (cell, collectors) = &mut self.cells[index];
                cell.add(&delta);
                collectors.push(collector);
            }
        }
    }

    /// Every cell, in table order (sorted by the ranks of the interned keys, so no text is compared per cell), each
    /// with its contributor set (collectors renumbered by rank, so sorting their numbers sorts their UUIDs).
    pub(crate) fn finish(self) -> Vec<CellWrite> {
        let GenerationRollups { generation_id, areas, categories, collectors, cell_index, mut cells } = self;
        let (area_rank, category_rank, collector_rank) = (areas.ranks(), categories.ranks(), collectors.ranks());
        let mut by_rank = vec![Uuid::nil(); collector_rank.len()];
        for (number, &rank) in collector_rank.iter().enumerate() {
            by_rank[rank as usize] = collectors.values[number];
        }
        // Periods in the order of their names, as the table's key has them.
        let kind_rank = |kind: u8| {
            let name = PeriodKind::ALL[usize::from(kind)].as_str();
            PeriodKind::ALL.iter().filter(|other| other.as_str() < name).count()
        };
        let mut order: Vec<(TableRank, CellCode, usize)> = cell_index
            .into_iter()
            .map(|(key @ (kind, start, area, category), index)| {
                ((category_rank[category as usize], kind_rank(kind), start, area_rank[area as usize]), key, index)
            })
            .collect();
        order.sort_unstable_by_key(|(rank, _, _)| *rank);
        order
            .into_iter()
            .map(|(_, (kind, start, area, category), index)| {
                let (delta, numbers) = std::mem::take(&mut cells[index]);
                let mut ranks: Vec<u32> = numbers.into_iter().map(|number| collector_rank[number as usize]).collect();
                ranks.sort_unstable();
                let mut entries: Vec<(Uuid, u32)> = Vec::new();
                for rank in ranks {
                    let collector = by_rank[rank as usize];
                    match entries.last_mut() {
                        Some((last, count)) if *last == collector => *count += 1,
                        _ => entries.push((collector, 1)),
                    }
                }
                CellWrite {
                    key: CellKey {
                        generation_id,
                        kind: PeriodKind::ALL[usize::from(kind)],
                        period_start: Date::from_julian_day(start).unwrap_or(Date::MIN),
                        area_code: areas.value(area).clone(),
                        category: categories.value(category).clone(),
                    },
                    delta,
                    contributors: ContributorSet(entries),
                }
            })
            .collect()
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
/// on both backends, after `prefix` (where a backend wraps the query in one of its own).
pub(crate) fn category_counts_query<'args, DB>(
    prefix: &str,
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
    let mut query = sqlx::QueryBuilder::new(prefix);
    query.push("SELECT area_code, category, CAST(SUM(n_insights) AS BIGINT) AS n FROM (");
    push_cells(&mut query, "area_code, category, n_insights", "rollups", generation_id, area_code, true, runs);
    query
        .push(") AS cells WHERE category <> ")
        .push_bind(ALL_CATEGORIES.to_owned())
        .push(" GROUP BY area_code, category");
    query
}

/// Distinct contributors per area and category over the cells that tile a period: the union of the cells' sets.
pub(crate) fn union_of_contributor_sets(
    cells: impl Iterator<Item = (String, String, Vec<u8>)>,
) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut unions: BTreeMap<(String, String), std::collections::HashSet<Uuid>> = BTreeMap::new();
    for (area_code, category, bytes) in cells {
        let set = ContributorSet::decode(&bytes)
            .ok_or_else(|| anyhow::anyhow!("a stored contributor set of {area_code}/{category} is damaged"))?;
        unions.entry((area_code, category)).or_default().extend(set.collectors());
    }
    Ok(unions
        .into_iter()
        .map(|((area_code, category), collectors)| {
            (area_code, category, i64::try_from(collectors.len()).unwrap_or(i64::MAX))
        })
        .collect())
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

// The statements both backends run as they are (`$n` parameters; see `store::sqlite`'s test of how SQLite binds them).

/// The sums of roll-up cells, for a subquery selecting `CELL_COLUMNS` to follow, then `) AS cells GROUP BY …` (read
/// by `sums_of`).
pub(super) const SUMS_SELECT: &str = "SELECT area_code, category, MIN(period_start) AS period_start,
        CAST(SUM(n_insights) AS BIGINT) AS n, CAST(SUM(n_contributors) AS BIGINT) AS n_contributors,
        CAST(SUM(feeling_safe_sum) AS BIGINT) AS fs_sum, CAST(SUM(feeling_safe_n) AS BIGINT) AS fs_n,
        CAST(SUM(n_staff) AS BIGINT) AS c0, CAST(SUM(n_barber_hairdresser) AS BIGINT) AS c1,
        CAST(SUM(n_pupil) AS BIGINT) AS c2, CAST(SUM(n_youth_worker) AS BIGINT) AS c3,
        CAST(SUM(n_other_channel) AS BIGINT) AS c4
    FROM (";

/// The summed counters of a row that `SUMS_SELECT` begins.
fn sums_of<R>(row: &R) -> Sums
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    Sums {
        n: row.get("n"),
        feeling_safe_sum: row.get("fs_sum"),
        feeling_safe_n: row.get("fs_n"),
        channels: [row.get("c0"), row.get("c1"), row.get("c2"), row.get("c3"), row.get("c4")],
    }
}

/// The statements `RollupStore::rollup` runs, built alike for either backend.
struct RollupReads<'args, DB: sqlx::Database> {
    /// Each area's (and category's) sums over the cells tiling the period.
    sums: QueryBuilder<'args, DB>,
    /// The tiling cells' contributor sets, when distinct contributors are asked for over several cells.
    sets: Option<QueryBuilder<'args, DB>>,
    /// The period is one calendar period (one cell), whose contributor count is exact.
    one_cell: bool,
}

/// Builds the reads of `RollupStore::rollup` (which see).
fn rollup_reads<'args, DB>(
    generation_id: i64,
    days: DayRange,
    area_code: Option<&str>,
    by_category: bool,
    distinct_contributors: bool,
) -> RollupReads<'args, DB>
where
    DB: sqlx::Database,
    i64: Encode<'args, DB> + Type<DB>,
    String: Encode<'args, DB> + Type<DB>,
    Date: Encode<'args, DB> + Type<DB>,
{
    let (from, to) = days.bounds();
    let runs = tile(from, to);
    let one_cell = is_one_cell(&runs);
    let mut sums = QueryBuilder::new(SUMS_SELECT);
    push_cells(&mut sums, CELL_COLUMNS, "rollups", generation_id, area_code, by_category, &runs);
    sums.push(") AS cells GROUP BY area_code, category");
    // Distinct collectors over several cells: the union of the tiling cells' contributor sets, when asked.
    let sets = (distinct_contributors && !one_cell).then(|| {
        let mut sets = QueryBuilder::new("");
        let columns = "area_code, category, contributors";
        push_cells(&mut sets, columns, "rollups", generation_id, area_code, by_category, &runs);
        sets
    });
    RollupReads { sums, sets, one_cell }
}

/// What `RollupStore::rollup` returns, from the rows its reads (`rollup_reads`) gave.
fn rollups_from_rows<R>(sums: &[R], sets: &[R], one_cell: bool) -> anyhow::Result<Vec<AreaRollup>>
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    let contributors = union_of_contributor_sets(
        sets.iter().map(|row| (row.get("area_code"), row.get("category"), row.get("contributors"))),
    )?;
    Ok(assemble_rollups(
        sums.iter().map(|row| (row.get("area_code"), row.get("category"), sums_of(row), row.get("n_contributors"))),
        contributors.into_iter(),
        one_cell,
    ))
}

/// One area's all-categories sums per period: generation `$1`, area `$2`, period kind `$3`, the periods starting
/// from `$4` up to (not including) `$5` (read by `series_point`).
fn series_statement() -> String {
    format!(
        "{SUMS_SELECT} SELECT {CELL_COLUMNS} FROM rollups WHERE generation_id = $1 AND area_code = $2
           AND category = '*' AND period = $3 AND period_start >= $4 AND period_start < $5) AS cells
         GROUP BY area_code, category, period_start ORDER BY period_start"
    )
}

/// The statement behind `RollupStore::category_series`, the same on both backends: one range scan of one area's
/// cells of one period kind.
fn category_series_statement() -> String {
    format!(
        "SELECT period_start, category, n_insights FROM rollups WHERE generation_id = $1 AND area_code = $2
           AND category <> '{ALL_CATEGORIES}' AND period = $3 AND period_start >= $4 AND period_start < $5
         ORDER BY period_start, category"
    )
}

/// One period and category of a trend, from a row of `category_series_statement`.
fn category_point<R>(row: &R) -> CategoryPoint
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Date: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    CategoryPoint { period_start: row.get("period_start"), category: row.get("category"), n: row.get("n_insights") }
}

/// One period of a series, from a row of `series_statement`.
fn series_point<R>(row: &R) -> SeriesPoint
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Date: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    SeriesPoint { period_start: row.get("period_start"), sums: sums_of(row), contributors: row.get("n_contributors") }
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
        use crate::domain::period::{FIRST_DAY, LAST_DAY};
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
        assert!(deltas.writes(std::collections::HashMap::new()).is_empty());
    }

    fn insight_of(collector: u128, area: &str, day: Date, category: &str) -> Contribution {
        Contribution {
            generation_id: 7,
            area_code: area.into(),
            day,
            category: category.into(),
            feeling_safe: Some(3),
            channel: Some("staff".into()),
            collector_id: Uuid::from_u128(collector),
        }
    }

    #[test]
    fn contributor_sets_count_collectors_and_round_trip() {
        let mut set = ContributorSet::default();
        set.apply(Uuid::from_u128(9), 2);
        set.apply(Uuid::from_u128(3), 1);
        set.apply(Uuid::from_u128(9), -1);
        assert_eq!(set.collectors().collect::<Vec<_>>(), vec![Uuid::from_u128(3), Uuid::from_u128(9)]);
        let bytes = set.encode();
        assert_eq!(bytes.len(), 40);
        assert_eq!(ContributorSet::decode(&bytes), Some(set.clone()));
        set.apply(Uuid::from_u128(9), -1);
        set.apply(Uuid::from_u128(5), -1);
        assert_eq!(set.collectors().collect::<Vec<_>>(), vec![Uuid::from_u128(3)], "a collector with none leaves");
        assert_eq!(ContributorSet::decode(&bytes[..39]), None, "a torn set is refused");
        let mut unordered = bytes[20..].to_vec();
        unordered.extend_from_slice(&bytes[..20]);
        assert_eq!(ContributorSet::decode(&unordered), None, "so is one out of order");
    }

    #[test]
    fn a_generation_built_at_once_matches_the_incremental_deltas() {
        let insights = [
            insight_of(1, "E05008737", date!(2026 - 03 - 04), "drugs"),
            insight_of(1, "E05008737", date!(2026 - 03 - 05), "drugs"),
            insight_of(2, "E05008737", date!(2026 - 03 - 04), "road-safety"),
            insight_of(2, "E05008738", date!(2025 - 12 - 31), "drugs"),
        ];
        let mut deltas = RollupDeltas::default();
        let mut built = GenerationRollups::new(7);
        for insight in &insights {
            deltas.add(insight, 1);
            built.add(&Counted {
                area_code: &insight.area_code,
                day: insight.day,
                category: &insight.category,
                feeling_safe: insight.feeling_safe,
                channel: insight.channel.as_deref(),
                collector_id: insight.collector_id,
            });
        }
        let incremental: BTreeMap<CellKey, (CellDelta, ContributorSet)> = deltas
            .writes(std::collections::HashMap::new())
            .into_iter()
            .map(|write| (write.key, (write.delta, write.contributors)))
            .collect();
        let built = built.finish();
        assert!(built.windows(2).all(|pair| pair[0].key.table_order() < pair[1].key.table_order()));
        let at_once: BTreeMap<CellKey, (CellDelta, ContributorSet)> =
            built.into_iter().map(|write| (write.key, (write.delta, write.contributors))).collect();
        assert_eq!(incremental, at_once);
        let year_all = CellKey {
            generation_id: 7,
            kind: PeriodKind::Year,
            period_start: date!(2026 - 01 - 01),
            area_code: "E05008737".into(),
            category: ALL_CATEGORIES.into(),
        };
        let (delta, contributors) = &at_once[&year_all];
        assert_eq!((delta.n, contributors.len()), (3, 2));
    }
}
