//! Storage: the one `Store` trait the rest of the server talks to. Only this module knows SQL.
//!
//! Backends: `sqlite` (the embedded default) and `postgres` (production, several nodes). Each owns its migrations under
//! `server/migrations/<backend>/`; both keep the same invariants:
//! - a document is stored as chunks (a snapshot plus appended changes) with a version counter; a write names the version
//!   it loaded and fails with `SaveError::Conflict` if another writer got there first, so no change and no decision is
//!   ever lost between nodes;
//! - the insight row and the roll-up delta commit in the same transaction as the document.

mod postgres;
mod sqlite;

use std::sync::Arc;

use anyhow::Context;
use grapevine_sync_proto::DocumentId;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The database an unconfigured server uses: a SQLite file in `./grapevine-data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://grapevine-data/grapevine.db";

/// The roll-up category under which every insight also counts, whatever its category.
pub(crate) const ALL_CATEGORIES: &str = "*";

/// The roll-up key for insights that lie outside every area (or have no location).
pub const OUTSIDE_COVERAGE: &str = "";

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A collector's phone: may sync that collector's documents.
    Device { device_id: Uuid, collector_id: Uuid },
    /// A person using the HTTP API.
    Api { role: Role },
}

/// Roles of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The commissioner's office: full query access to counts.
    Analyst,
    /// A partnership board: suppressed summaries only.
    Board,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Board => "board",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "analyst" => Some(Role::Analyst),
            "board" => Some(Role::Board),
            _ => None,
        }
    }
}

/// A new device, as created by `grapevine device add`.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub device_id: Uuid,
    pub collector_id: Uuid,
}

/// A stored document with its owner and save counter.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    pub collector_id: Uuid,
    /// Every chunk, concatenated in order: what `AutoCommit::load` takes.
    pub bytes: Vec<u8>,
    pub version: i64,
    /// How many chunks the document is stored as; the sync handler compacts when it grows.
    pub n_chunks: i64,
}

/// A document that was saved: the change feed every node's sync connections follow, so a collector's other devices
/// hear about it wherever they are connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentChanged {
    pub doc_id: DocumentId,
    pub collector_id: Uuid,
    /// The connection that wrote it (it needs no telling).
    pub writer: Uuid,
}

/// How many changes a slow subscriber may fall behind before it misses some (it then catches up at its device's
/// next sync).
pub(crate) const CHANGE_FEED_CAPACITY: usize = 1024;

/// How a write stores a document.
#[derive(Debug, Clone)]
pub enum DocumentBytes {
    /// The whole document (`save()`): replaces every chunk. Used for new documents and to compact.
    Snapshot(Vec<u8>),
    /// Only the changes since the version loaded (`save_after`): appended as one chunk.
    Changes(Vec<u8>),
}

/// The server's decision about one insight document, as a row.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightRow {
    pub id: Uuid,
    pub captured_at: Option<OffsetDateTime>,
    pub campaign: Option<String>,
    pub category: Option<String>,
    pub text: Option<String>,
    pub feeling_safe: Option<u8>,
    pub channel: Option<String>,
    pub gps: Option<(f64, f64, f64)>,
    pub picked_area_code: Option<String>,
    pub outcome: Outcome,
    pub processed_at: OffsetDateTime,
}

impl InsightRow {
    /// The row of a document no insight could be read from: only its id and the decision.
    #[must_use]
    pub fn without_content(id: Uuid, outcome: Outcome, processed_at: OffsetDateTime) -> Self {
        InsightRow {
            id,
            captured_at: None,
            campaign: None,
            category: None,
            text: None,
            feeling_safe: None,
            channel: None,
            gps: None,
            picked_area_code: None,
            outcome,
            processed_at,
        }
    }
}

/// Where an insight counts, if it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Filed { area_code: String },
    OutsideCoverage,
    Rejected { code: String, message: String },
}

/// One save of a document and the insight extracted from it, committed together.
#[derive(Debug, Clone)]
pub struct DocumentWrite {
    pub doc_id: DocumentId,
    pub collector_id: Uuid,
    pub device_id: Uuid,
    /// The connection writing, for the change feed.
    pub writer: Uuid,
    pub bytes: DocumentBytes,
    /// The version loaded, or `None` for a new document: the write fails with `SaveError::Conflict` if another
    /// writer saved in between.
    pub expected_version: Option<i64>,
    pub insight: InsightRow,
}

/// Why a document write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("document was saved by another writer in between")]
    Conflict,
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// Counts for one area over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AreaCounts {
    pub total: i64,
    pub by_category: Vec<(String, i64)>,
    pub feeling_safe_sum: i64,
    pub feeling_safe_n: i64,
}

impl AreaCounts {
    /// Adds one category's sums, as a roll-up query returns them.
    pub(crate) fn add(&mut self, category: String, n: i64, feeling_safe_sum: i64, feeling_safe_n: i64) {
        self.total += n;
        self.feeling_safe_sum += feeling_safe_sum;
        self.feeling_safe_n += feeling_safe_n;
        self.by_category.push((category, n));
    }
}

/// A period of whole days: `from` inclusive, `to` exclusive; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayRange {
    pub from: Option<Date>,
    pub to: Option<Date>,
}

/// The earliest and latest days the roll-ups can hold; an unbounded period is read as running to these.
pub(crate) const FIRST_DAY: Date = time::macros::date!(0001 - 01 - 01);
pub(crate) const LAST_DAY: Date = time::macros::date!(9999 - 12 - 31);

/// How a period is read from the roll-ups: its whole months from `rollup_monthly`, the days at either edge from
/// `rollup_daily`. Every span is `[from, to)`; an unused span is empty. A year's query reads a few thousand monthly rows
/// instead of every daily row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollupSpans {
    pub months: (Date, Date),
    pub leading_days: (Date, Date),
    pub trailing_days: (Date, Date),
}

fn first_of_month(day: Date) -> Date {
    day.replace_day(1).expect("every month has a first day")
}

fn first_of_next_month(day: Date) -> Date {
    let first = first_of_month(day);
    let (year, month) = (first.year(), first.month());
    let next_year = if month == time::Month::December { year + 1 } else { year };
    Date::from_calendar_date(next_year, month.next(), 1).unwrap_or(LAST_DAY)
}

impl DayRange {
    pub(crate) fn spans(self) -> RollupSpans {
        const EMPTY: (Date, Date) = (FIRST_DAY, FIRST_DAY);
        let from = self.from.unwrap_or(FIRST_DAY);
        let to = self.to.unwrap_or(LAST_DAY);
        // Whole months inside [from, to): from the first month start at or after `from` to the last at or before `to`.
        let months_from = if from.day() == 1 { from } else { first_of_next_month(from) };
        let months_to = if self.to.is_none() { LAST_DAY } else { first_of_month(to) };
        if months_from >= months_to {
            return RollupSpans { months: EMPTY, leading_days: (from, to), trailing_days: EMPTY };
        }
        RollupSpans {
            months: (months_from, months_to),
            leading_days: if from < months_from { (from, months_from) } else { EMPTY },
            trailing_days: if months_to < to { (months_to, to) } else { EMPTY },
        }
    }
}

/// Everything the server stores.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Adds a device whose bearer token hashes to `token_hash`: to `collector` if given (which must exist), else to a
    /// new collector.
    async fn add_device(&self, label: &str, token_hash: &str, collector: Option<Uuid>) -> anyhow::Result<NewDevice>;

    /// The id of this database's lineage (new after every restore from backup).
    async fn storage_id(&self) -> anyhow::Result<String>;

    /// The newest migration applied.
    async fn schema_version(&self) -> anyhow::Result<i64>;

    /// Adds an API token with a role.
    async fn add_api_token(&self, role: Role, label: &str, token_hash: &str) -> anyhow::Result<Uuid>;

    /// Who holds the token with this hash, if anyone (revoked tokens hold nothing).
    async fn authenticate(&self, token_hash: &str) -> anyhow::Result<Option<Principal>>;

    /// Loads a document, if it exists.
    async fn load_document(&self, doc_id: DocumentId) -> anyhow::Result<Option<StoredDocument>>;

    /// Saves a document, its insight row and the roll-up delta in one transaction.
    async fn save_document(&self, write: DocumentWrite) -> Result<(), SaveError>;

    /// Saves several documents in one transaction (an import): all of them, or none. Each document at most once.
    async fn save_documents(&self, writes: Vec<DocumentWrite>) -> Result<(), SaveError>;

    /// The persisted sync state of a device for a document, if any.
    async fn load_sync_state(&self, device_id: Uuid, doc_id: DocumentId) -> anyhow::Result<Option<Vec<u8>>>;

    /// Persists a device's sync states for several documents, in one transaction.
    async fn save_sync_states(&self, device_id: Uuid, states: &[(DocumentId, Vec<u8>)]) -> anyhow::Result<()>;

    /// The collector's documents last written by another device after sequence number `since`, oldest first, with
    /// the sequence number of their latest write; at most `limit`.
    async fn catch_up(
        &self,
        collector_id: Uuid,
        device_id: Uuid,
        since: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(DocumentId, i64)>>;

    /// Follows every document saved, by any node over this database, from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocumentChanged>;

    /// The insight row of a document, if it has one.
    async fn insight(&self, id: Uuid) -> anyhow::Result<Option<InsightRow>>;

    /// Counted insights per area code over a period (`OUTSIDE_COVERAGE` for those in no area).
    async fn area_totals(&self, days: DayRange) -> anyhow::Result<Vec<(String, i64)>>;

    /// One area's counts over a period.
    async fn area_counts(&self, area_code: &str, days: DayRange) -> anyhow::Result<AreaCounts>;
}

/// Opens the store a database URL names, creating and migrating it as needed.
///
/// # Errors
/// An unsupported URL scheme, a database that cannot be opened or migrated, or one whose schema is newer than this
/// build.
pub async fn open(database_url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if database_url.starts_with("sqlite:") {
        let store = SqliteStore::open(database_url).await.with_context(|| format!("opening {database_url}"))?;
        return Ok(Arc::new(store));
    }
    if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        let store = PostgresStore::open(database_url).await.with_context(|| "opening the PostgreSQL database")?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("unsupported database URL '{database_url}': expected sqlite://PATH or postgres://…")
}

/// Refuses a database migrated by a newer Grapevine: its schema may mean things this build does not know.
///
/// # Errors
/// The database has a migration this build does not have.
pub(crate) fn check_not_newer(applied: Option<i64>, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
    let known = migrator.iter().map(|migration| migration.version).max().unwrap_or(0);
    match applied {
        Some(applied) if applied > known => anyhow::bail!(
            "the database's schema is at migration {applied}, newer than this grapevine knows (up to {known}): \
             run a newer grapevine, or restore a backup taken before the upgrade"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn periods_split_into_whole_months_and_edge_days() {
        let empty = (FIRST_DAY, FIRST_DAY);
        let year = DayRange { from: Some(date!(2025 - 11 - 01)), to: Some(date!(2026 - 11 - 01)) };
        assert_eq!(
            year.spans(),
            RollupSpans {
                months: (date!(2025 - 11 - 01), date!(2026 - 11 - 01)),
                leading_days: empty,
                trailing_days: empty
            }
        );
        let ragged = DayRange { from: Some(date!(2025 - 12 - 15)), to: Some(date!(2026 - 03 - 10)) };
        assert_eq!(
            ragged.spans(),
            RollupSpans {
                months: (date!(2026 - 01 - 01), date!(2026 - 03 - 01)),
                leading_days: (date!(2025 - 12 - 15), date!(2026 - 01 - 01)),
                trailing_days: (date!(2026 - 03 - 01), date!(2026 - 03 - 10)),
            }
        );
        let within_a_month = DayRange { from: Some(date!(2026 - 03 - 02)), to: Some(date!(2026 - 03 - 20)) };
        assert_eq!(
            within_a_month.spans(),
            RollupSpans {
                months: empty,
                leading_days: (date!(2026 - 03 - 02), date!(2026 - 03 - 20)),
                trailing_days: empty
            }
        );
        let everything = DayRange::default().spans();
        assert_eq!(
            everything,
            RollupSpans { months: (FIRST_DAY, LAST_DAY), leading_days: empty, trailing_days: empty }
        );
        let since = DayRange { from: Some(date!(2026 - 12 - 31)), to: None }.spans();
        assert_eq!(since.leading_days, (date!(2026 - 12 - 31), date!(2027 - 01 - 01)));
        assert_eq!(since.months, (date!(2027 - 01 - 01), LAST_DAY));
    }
}

/// The roll-up cell an insight counts in, if it counts (rejected insights never do).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contribution {
    pub area_code: String,
    pub day: Date,
    pub category: String,
    pub feeling_safe: Option<i64>,
}

impl Contribution {
    pub(crate) fn of(
        outcome: &Outcome,
        captured_day: Option<Date>,
        category: Option<String>,
        feeling_safe: Option<i64>,
    ) -> Option<Contribution> {
        let area_code = match outcome {
            Outcome::Filed { area_code } => area_code.clone(),
            Outcome::OutsideCoverage => OUTSIDE_COVERAGE.to_owned(),
            Outcome::Rejected { .. } => return None,
        };
        Some(Contribution { area_code, day: captured_day?, category: category?, feeling_safe })
    }

    /// The roll-up cells this contribution lands in: table, period column, period, category. Each insight counts in
    /// its category and in the all-categories row (`ALL_CATEGORIES`), daily and monthly, so "every area over a
    /// year" reads one row per area and month.
    pub(crate) fn cells(&self) -> [(&'static str, &'static str, Date, &str); 4] {
        let month = first_of_month(self.day);
        [
            ("rollup_daily", "day", self.day, self.category.as_str()),
            ("rollup_daily", "day", self.day, ALL_CATEGORIES),
            ("rollup_monthly", "month", month, self.category.as_str()),
            ("rollup_monthly", "month", month, ALL_CATEGORIES),
        ]
    }

    /// The deltas to add to (`sign` = 1) or take from (`sign` = -1) a roll-up cell: count, feeling-safe sum and count.
    pub(crate) fn deltas(&self, sign: i64) -> (i64, i64, i64) {
        (sign, sign * self.feeling_safe.unwrap_or(0), if self.feeling_safe.is_some() { sign } else { 0 })
    }
}

/// One roll-up cell: its table, area, period start and category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CellKey {
    pub table: &'static str,
    pub area_code: String,
    pub period: Date,
    pub category: String,
}

/// What a transaction adds to one cell: insights, feeling-safe sum and count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CellDelta {
    pub n: i64,
    pub feeling_safe_sum: i64,
    pub feeling_safe_n: i64,
}

/// The roll-up cells a transaction moves, summed, so each cell is written once per transaction however many of its
/// insights change. Kept in key order: every writer touches cells in the same order, so two nodes writing at once
/// wait for each other instead of deadlocking.
#[derive(Debug, Default)]
pub(crate) struct RollupDeltas {
    cells: std::collections::BTreeMap<CellKey, CellDelta>,
}

impl RollupDeltas {
    /// Adds (`sign` = 1) or takes out (`sign` = -1) one insight's contribution.
    pub(crate) fn add(&mut self, contribution: &Contribution, sign: i64) {
        let (n, feeling_safe_sum, feeling_safe_n) = contribution.deltas(sign);
        for (table, _, period, category) in contribution.cells() {
            let key =
                CellKey { table, area_code: contribution.area_code.clone(), period, category: category.to_owned() };
            let delta = self.cells.entry(key).or_default();
            delta.n += n;
            delta.feeling_safe_sum += feeling_safe_sum;
            delta.feeling_safe_n += feeling_safe_n;
        }
    }

    /// The cells of one table that actually move (an edit that leaves an insight where it was moves nothing).
    pub(crate) fn of_table<'a>(&'a self, table: &'a str) -> impl Iterator<Item = (&'a CellKey, &'a CellDelta)> {
        self.cells.iter().filter(move |(key, delta)| key.table == table && **delta != CellDelta::default())
    }
}

/// Refuses a save that names one document twice: its writes could not both hold the version they claim.
pub(crate) fn ensure_distinct(writes: &[DocumentWrite]) -> Result<(), SaveError> {
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    match writes.iter().find(|write| !seen.insert(write.doc_id)) {
        Some(twice) => Err(SaveError::Database(anyhow::anyhow!("document {} appears twice in one save", twice.doc_id))),
        None => Ok(()),
    }
}

/// The roll-up tables and the name of their period column.
pub(crate) const ROLLUP_TABLES: [(&str, &str); 2] = [("rollup_daily", "day"), ("rollup_monthly", "month")];

impl Outcome {
    /// The stored columns: status, area code, rejection code and message.
    pub(crate) fn columns(&self) -> (&'static str, Option<&str>, Option<&str>, Option<&str>) {
        match self {
            Outcome::Filed { area_code } => ("filed", Some(area_code.as_str()), None, None),
            Outcome::OutsideCoverage => ("outside_coverage", None, None, None),
            Outcome::Rejected { code, message } => ("rejected", None, Some(code.as_str()), Some(message.as_str())),
        }
    }

    /// Rebuilds an outcome from its stored columns.
    pub(crate) fn from_columns(
        status: &str,
        area_code: Option<String>,
        code: Option<String>,
        message: Option<String>,
    ) -> Outcome {
        match status {
            "filed" => Outcome::Filed { area_code: area_code.unwrap_or_default() },
            "outside_coverage" => Outcome::OutsideCoverage,
            _ => Outcome::Rejected { code: code.unwrap_or_default(), message: message.unwrap_or_default() },
        }
    }
}
